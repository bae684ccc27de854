//! `swarm admin list|delete`: a distributed swarm's four streams are listed
//! with their sizes and deleted only when confirmed.
//!
//! Needs `SWARM_NATS_URL` (skipped without it, except under `SWARM_CI=1`).
#![cfg(feature = "nats")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use swarm::distributed::{TaskQueue, TaskQueueConfig};
use swarm::event::TaskCreated;
use swarm::{EventStore, Task};
use swarm_store::{NatsStore, NatsStoreOptions};
use swarm_testkit::nats::{server_url, unique_name};

use support::{assert_fails, code, json, run, stderr};

/// The swarm's entry in `swarm admin list --json`, if it is listed.
fn listed(url: &str, swarm: &str) -> Option<serde_json::Value> {
    let out = run(&["admin", "list", "--nats", url, "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    json(&out)["swarms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["swarm"] == swarm)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swarm_is_listed_then_deleted_only_when_confirmed() {
    let Some(url) = server_url() else { return };
    let swarm = unique_name("cli", "admin");
    let log = NatsStore::connect(NatsStoreOptions::new(&url, &swarm))
        .await
        .unwrap();
    let queue = TaskQueue::open(log.client().clone(), TaskQueueConfig::new(&swarm))
        .await
        .unwrap();
    for _ in 0..2 {
        let task = Task::builder("admin").build().unwrap();
        log.append(vec![TaskCreated { task }.into()], None)
            .await
            .unwrap();
    }
    log.flush().await.unwrap();

    let entry = listed(&url, &swarm).expect("the new swarm is listed");
    let streams = &entry["streams"];
    assert_eq!(streams["events"]["stream"], format!("SWARM_{swarm}_EVENTS"));
    assert_eq!(streams["events"]["messages"], 2, "{entry}");
    assert_eq!(streams["tasks"]["stream"], format!("SWARM_{swarm}_TASKS"));
    assert_eq!(streams["dead"]["stream"], format!("SWARM_{swarm}_DEAD"));
    assert_eq!(
        streams["snapshots"]["stream"],
        format!("KV_SWARM_{swarm}_SNAPSHOTS")
    );

    // No terminal to confirm on and no --yes: refused, nothing deleted.
    let out = run(&["admin", "delete", "--nats", &url, "--swarm", &swarm]);
    assert_fails(&out, 2, &["confirmation", "--yes"]);
    assert!(
        listed(&url, &swarm).is_some(),
        "deleted without a confirmation"
    );

    let out = run(&[
        "admin", "delete", "--nats", &url, "--swarm", &swarm, "--yes",
    ]);
    let deleted = code(&out) == 0;
    if !deleted {
        let _ = queue.destroy().await;
        let _ = log.destroy().await;
    }
    assert!(deleted, "{}", stderr(&out));
    assert!(listed(&url, &swarm).is_none(), "still listed after delete");
    let reopened =
        NatsStore::connect(NatsStoreOptions::new(&url, &swarm).existing_only(true)).await;
    assert!(matches!(reopened, Err(swarm::StoreError::NoStream { .. })));

    let out = run(&[
        "admin", "delete", "--nats", &url, "--swarm", &swarm, "--yes",
    ]);
    assert_fails(&out, 2, &["no swarm", "admin list"]);
}
