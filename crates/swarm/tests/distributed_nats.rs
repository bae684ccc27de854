//! Distributed mode against a real nats-server: three worker nodes and a
//! submitter share one task queue and one event log; one node is killed
//! mid-run and every task still completes (at-least-once), none is lost, and
//! the state replayed from the log is the same from every connection.
//!
//! Needs `SWARM_NATS_URL`; without it the tests print that they are skipped
//! and pass; with it set but unreachable they fail. Streams are named after
//! the process id and a counter and deleted at the end.
#![cfg(feature = "nats")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use swarm::distributed::{Node, TaskQueue, TaskQueueConfig};
use swarm_agents::{Agent, AgentPool, ExecuteError, PoolConfig, TaskOutput};
use swarm_core::event::TaskCreated;
use swarm_core::{Event, EventBus, Priority, Task, TaskId};
use swarm_store::{EventStore, NatsStore, NatsStoreOptions, SystemState, TaskStatus};

fn server_url() -> Option<String> {
    match std::env::var("SWARM_NATS_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "skipped: SWARM_NATS_URL not set");
            None
        }
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique_swarm(tag: &str) -> String {
    format!(
        "dist_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        tag
    )
}

/// Sleeps a little: long enough that a node is killed with tasks in flight.
struct Work;

impl Agent for Work {
    async fn execute(&self, task: &Task) -> Result<TaskOutput, ExecuteError> {
        let ms = task.payload().as_bytes().first().copied().unwrap_or(1);
        tokio::time::sleep(Duration::from_millis(u64::from(ms))).await;
        Ok(TaskOutput::empty())
    }
}

async fn start_node(
    url: &str,
    config: &TaskQueueConfig,
    store_options: &NatsStoreOptions,
) -> swarm::distributed::NodeHandle {
    let client = async_nats::connect(url).await.unwrap();
    let queue = TaskQueue::open(client, config.clone()).await.unwrap();
    let store = NatsStore::connect(store_options.clone()).await.unwrap();
    let pool = AgentPool::new(
        |_id| Work,
        EventBus::new(),
        PoolConfig {
            initial_agents: 4,
            ..PoolConfig::default()
        },
    )
    .unwrap();
    Node::start(queue, Arc::new(pool), store).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_completes_when_a_node_dies() {
    let Some(url) = server_url() else { return };
    const TASKS: usize = 3000;
    let swarm_name = unique_swarm("kill");
    let mut config = TaskQueueConfig::new(&swarm_name);
    config.ack_wait = Duration::from_secs(2);
    config.prefetch = 8;
    let store_options = NatsStoreOptions::new(&url, &swarm_name);

    let submitter_client = async_nats::connect(&url).await.unwrap();
    let queue = TaskQueue::open(submitter_client, config.clone())
        .await
        .unwrap();
    let log = NatsStore::connect(store_options.clone()).await.unwrap();

    let result = tokio::spawn({
        let url = url.clone();
        let config = config.clone();
        let queue = queue.clone();
        let log = log.clone();
        async move {
            let mut nodes = Vec::new();
            for _ in 0..3 {
                nodes.push(start_node(&url, &config, &store_options).await);
            }
            let mut ids = HashSet::new();
            let mut tasks = Vec::new();
            for i in 0..TASKS {
                let task = Task::builder("work")
                    .id(TaskId::from_u64(i as u64 + 1))
                    .priority(Priority::ALL[i % 4])
                    .payload(vec![1 + (i % 3) as u8])
                    .build()
                    .unwrap();
                ids.insert(task.id());
                tasks.push(task);
            }
            // The submitter journals task:created, then queues the tasks.
            let created: Vec<_> = tasks
                .iter()
                .map(|t| log.append(vec![TaskCreated { task: t.clone() }.into()], None))
                .collect();
            for r in futures::future::join_all(created).await {
                r.unwrap();
            }
            let mut acks = Vec::new();
            for task in &tasks {
                acks.push(queue.submit_pipelined(task).await.unwrap());
            }
            for ack in acks {
                ack.await.unwrap();
            }

            // Kill one node while tasks are in flight.
            let mut live = log.subscribe(1);
            let mut completed: HashSet<TaskId> = HashSet::new();
            let mut killed = false;
            let mut victim = Some(nodes.remove(0));
            let mut completions = 0usize;
            while completed.len() < TASKS {
                let e = tokio::time::timeout(Duration::from_secs(60), live.next())
                    .await
                    .expect("tasks stopped completing")
                    .expect("log subscription ended")
                    .unwrap();
                if let Event::TaskCompleted(c) = &e.event {
                    completions += 1;
                    completed.insert(c.task_id);
                    if !killed && completed.len() >= TASKS / 4 {
                        victim.take().unwrap().abort();
                        killed = true;
                    }
                }
            }
            assert!(killed);
            assert_eq!(completed, ids, "every task completed");
            assert!(completions >= TASKS);
            for node in nodes {
                node.stop().await;
            }
            // Nothing waits on the queue (bounded wait for the last acks).
            let mut pending = u64::MAX;
            for _ in 0..100 {
                pending = queue.pending().await.unwrap();
                if pending == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(pending, 0, "no task left on the queue");
            assert_eq!(queue.dead_lettered().await.unwrap(), 0);

            // The state replayed from the log is the same from any connection.
            let a = SystemState::replay(&log).await.unwrap();
            let other = NatsStore::connect(store_options.clone()).await.unwrap();
            let b = SystemState::replay(&other).await.unwrap();
            for id in &ids {
                assert_eq!(a.task(*id).map(|t| t.status), Some(TaskStatus::Completed));
                assert_eq!(a.task(*id).map(|t| t.status), b.task(*id).map(|t| t.status));
            }
            assert_eq!(a.counters(), b.counters());
            assert_eq!(
                log.last_seq().await.unwrap(),
                other.last_seq().await.unwrap()
            );
        }
    })
    .await;

    let _ = queue.destroy().await;
    let _ = log.destroy().await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}
