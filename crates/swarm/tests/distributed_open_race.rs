//! Nodes starting at the same moment on a new swarm: every one binds to the
//! same streams, bucket and consumers, none fails because another created
//! them first (`subjects overlap with an existing stream`, error 10065, or
//! `stream name already in use`, 10058, as two `swarm worker` processes
//! started together did in about 1 of 10 tries).
//!
//! Needs `SWARM_NATS_URL` (skipped without it, except under `SWARM_CI=1`).
#![cfg(feature = "nats")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use swarm::distributed::{TaskQueue, TaskQueueConfig};
use swarm_store::{NatsStore, NatsStoreOptions};
use swarm_testkit::nats::{server_url, unique_name};

/// How many nodes open the same new swarm at once, and how many new swarms.
const NODES: usize = 6;
const ROUNDS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_opening_a_new_swarm_together_all_bind() {
    let Some(url) = server_url() else { return };
    for round in 0..ROUNDS {
        let swarm = unique_name("race", &format!("r{round}"));
        let config = TaskQueueConfig::new(&swarm);
        let store_options = NatsStoreOptions::new(&url, &swarm);
        // Connect first, so the opens themselves start together.
        let mut clients = Vec::new();
        for _ in 0..NODES {
            clients.push(async_nats::connect(&url).await.unwrap());
        }
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(NODES));
        let opens: Vec<_> = clients
            .into_iter()
            .map(|client| {
                let (config, store_options, barrier) =
                    (config.clone(), store_options.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let (queue, store) = tokio::join!(
                        TaskQueue::open(client, config),
                        NatsStore::connect(store_options)
                    );
                    (
                        queue.map_err(|e| e.to_string()),
                        store.map_err(|e| e.to_string()),
                    )
                })
            })
            .collect();
        let mut failures = Vec::new();
        let mut bound = None;
        for open in opens {
            match open.await.unwrap() {
                (Ok(queue), Ok(store)) => bound = Some((queue, store)),
                (queue, store) => failures.push(format!("{:?} / {:?}", queue.err(), store.err())),
            }
        }
        if let Some((queue, store)) = bound {
            let _ = queue.destroy().await;
            let _ = store.destroy().await;
        }
        assert!(
            failures.is_empty(),
            "round {round}: {} of {NODES} nodes failed to open swarm {swarm}: {failures:#?}",
            failures.len()
        );
    }
}
