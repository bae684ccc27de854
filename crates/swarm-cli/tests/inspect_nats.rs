//! `swarm events|replay|stats --store nats://HOST:PORT --swarm NAME` read a
//! distributed swarm's NATS log (they used to take the URL for a directory:
//! "the directory does not exist"), and create nothing when the swarm does
//! not exist.
//!
//! Needs `SWARM_NATS_URL` (skipped without it, except under `SWARM_CI=1`).
#![cfg(feature = "nats")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use swarm::event::{TaskAssigned, TaskCompleted, TaskCreated};
use swarm::{AgentId, Event, EventStore, Payload, Priority, Task};
use swarm_store::{NatsStore, NatsStoreOptions};
use swarm_testkit::nats::{server_url, unique_name};

use support::{code, json, run, stderr, stdout, swarm};

/// The three events of a task that ran once and completed.
fn completed_task(i: u64) -> Vec<Event> {
    let task = Task::builder("inspect")
        .priority(Priority::High)
        .build()
        .unwrap();
    let task_id = task.id();
    let agent_id = AgentId::new(i);
    vec![
        TaskCreated { task }.into(),
        TaskAssigned {
            task_id,
            agent_id,
            attempt: 1,
            priority: Priority::High,
            queue_wait: Duration::from_micros(10),
        }
        .into(),
        TaskCompleted {
            task_id,
            agent_id,
            attempt: 1,
            duration: Duration::from_micros(500),
            output: Payload::empty(),
        }
        .into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_replay_and_stats_read_a_nats_log() {
    let Some(url) = server_url() else { return };
    let name = unique_name("cli", "inspect");
    let log = NatsStore::connect(NatsStoreOptions::new(&url, &name))
        .await
        .unwrap();
    for i in 0..3 {
        log.append(completed_task(i), None).await.unwrap();
    }
    let result = std::panic::AssertUnwindSafe(check(&url, &name, &log));
    let outcome = futures::FutureExt::catch_unwind(result).await;
    let _ = log.destroy().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn check(url: &str, name: &str, log: &NatsStore) {
    let store = ["--store", url, "--swarm", name];
    let out = run(&[&["events"][..], &store].concat());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=9).collect::<Vec<_>>());

    let out = run(&[&["replay", "--json"][..], &store].concat());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let state = json(&out);
    assert_eq!(state["last_seq"], 9);
    assert_eq!(state["tasks_by_status"]["completed"], 3, "{state}");

    let out = run(&[&["stats", "--json"][..], &store].concat());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let stats = json(&out);
    assert_eq!(stats["outcomes"]["completed"], 3, "{stats}");
    assert_eq!(stats["by_kind"]["inspect"]["completed"], 3, "{stats}");

    // --follow: what is there, then each new event as it is stored.
    let mut follow = swarm()
        .args([&["events", "--follow", "--from", "8"][..], &store].concat())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let seq = |line: Option<std::io::Result<String>>| -> u64 {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap().unwrap()).unwrap();
        v["seq"].as_u64().unwrap()
    };
    assert_eq!(seq(lines.next()), 8);
    assert_eq!(seq(lines.next()), 9);
    log.append(completed_task(9), None).await.unwrap();
    let rest =
        tokio::task::spawn_blocking(move || (0..3).map(|_| seq(lines.next())).collect::<Vec<_>>());
    let rest = tokio::time::timeout(Duration::from_secs(20), rest)
        .await
        .expect("the follower printed the new events")
        .unwrap();
    assert_eq!(rest, vec![10, 11, 12]);
    let _ = follow.kill();
    let _ = follow.wait();

    // A swarm that never ran there: a clear refusal, and nothing created.
    let missing = unique_name("cli", "nosuch");
    let out = run(&["events", "--store", url, "--swarm", &missing]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not exist") && stderr(&out).contains("--swarm"),
        "{}",
        stderr(&out)
    );
    let still_missing =
        NatsStore::connect(NatsStoreOptions::new(url, &missing).existing_only(true)).await;
    assert!(
        matches!(still_missing, Err(swarm::StoreError::NoStream { .. })),
        "reading a missing swarm created its stream: {:?}",
        still_missing.map(|_| ())
    );
}
