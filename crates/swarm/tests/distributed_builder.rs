//! A distributed node is a `Swarm`: `Swarm::builder().nats(url)` gives the
//! same agents, retries, journal, metrics, handles and shutdown as a local
//! swarm, with its work from the shared JetStream queue. Against a real
//! nats-server (`SWARM_NATS_URL`; under `SWARM_CI=1` a missing one fails).
#![cfg(feature = "nats")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use swarm::distributed::{TaskQueue, TaskQueueConfig};
use swarm::{Agent, ExecuteError, Priority, Swarm, Task, TaskOutcome, TaskOutput};
use swarm_store::{NatsStore, NatsStoreOptions, SystemState, TaskStatus};
use swarm_testkit::nats::{server_url, unique_name};
/// A swarm name no other test or test process uses.
fn unique_swarm(tag: &str) -> String {
    unique_name("node", tag)
}

/// Fails kind "flaky" on its first attempt; sleeps 1 ms otherwise.
#[derive(Clone)]
struct Work;

impl Agent for Work {
    async fn execute(&self, task: &Task) -> Result<TaskOutput, ExecuteError> {
        if task.kind() == "flaky" && task.attempt() == 1 {
            return Err(ExecuteError::retryable("first attempt fails"));
        }
        if task.kind() == "never" {
            return Err(ExecuteError::permanent("never works"));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(TaskOutput::from(task.kind()))
    }
}

async fn node(url: &str, name: &str, agents: usize) -> Swarm {
    let mut queue = TaskQueueConfig::new(name);
    queue.ack_wait = Duration::from_secs(5);
    queue.prefetch = 4;
    Swarm::builder()
        .agents(agents)
        .max_agents(agents)
        .autoscale(false)
        .agent_factory(|_| Work)
        .retry(swarm::RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(10),
        })
        .nats(url)
        .task_queue(queue)
        .build()
        .await
        .unwrap()
}

async fn cleanup(url: &str, name: &str) {
    let client = async_nats::connect(url).await.unwrap();
    if let Ok(queue) = TaskQueue::open(client, TaskQueueConfig::new(name)).await {
        let _ = queue.destroy().await;
    }
    if let Ok(log) = NatsStore::connect(NatsStoreOptions::new(url, name)).await {
        let _ = log.destroy().await;
    }
}

fn finished_total(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("swarm_tasks_finished_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_the_queue_and_every_handle_resolves() {
    let Some(url) = server_url() else { return };
    let name = unique_swarm("two");
    const TASKS: usize = 300;
    let result = tokio::time::timeout(Duration::from_secs(120), async {
        let a = node(&url, &name, 3).await;
        let b = node(&url, &name, 3).await;
        let tasks: Vec<Task> = (0..TASKS)
            .map(|i| {
                let kind = match i % 50 {
                    0 => "flaky",
                    1 => "never",
                    _ => "work",
                };
                Task::builder(kind)
                    .priority(Priority::ALL[i % 4])
                    .build()
                    .unwrap()
            })
            .collect();
        let handles = a.submit_batch(tasks).await.unwrap();
        let (mut completed, mut dead) = (0, 0);
        for h in handles {
            match h.await {
                TaskOutcome::Completed { .. } => completed += 1,
                TaskOutcome::DeadLettered { errors } => {
                    assert!(
                        errors.iter().any(|e| e.contains("never works")),
                        "{errors:?}"
                    );
                    dead += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((completed, dead), (TASKS - TASKS / 50, TASKS / 50));
        // Both nodes worked, each counted what it ran; together, everything.
        let (sa, sb) = (a.stats(), b.stats());
        assert_eq!(
            sa.completed + sb.completed,
            completed as u64,
            "{sa:?} {sb:?}"
        );
        assert!(sa.completed > 0 && sb.completed > 0, "{sa:?} {sb:?}");
        assert!(sa.retries + sb.retries >= (TASKS / 50) as u64);
        let total = finished_total(&a.render_metrics().unwrap())
            + finished_total(&b.render_metrics().unwrap());
        // completed + dead_lettered (+ failed attempts, which the metric also counts)
        assert!(
            total >= TASKS as f64,
            "swarm_tasks_finished_total sums to {total}"
        );
        let report = a.shutdown(Duration::from_secs(5)).await.unwrap();
        assert!(report.finished_in_time);
        b.shutdown(Duration::from_secs(5)).await.unwrap();

        // The shared log says the same.
        let log = NatsStore::connect(NatsStoreOptions::new(&url, &name))
            .await
            .unwrap();
        let state = SystemState::replay(&log).await.unwrap();
        assert_eq!(state.count(TaskStatus::Completed), completed);
        assert_eq!(state.count(TaskStatus::DeadLettered), dead);
    })
    .await;
    cleanup(&url, &name).await;
    result.expect("the distributed swarm did not finish in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_what_a_distributed_swarm_cannot_do() {
    let Some(url) = server_url() else { return };
    let err = Swarm::builder()
        .nats(&url)
        .mode(swarm::SchedulerMode::polling())
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("polling mode"), "{err}");
    let err = Swarm::builder()
        .nats(&url)
        .file_store("/tmp/never-used")
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("file_store"), "{err}");
    let err = Swarm::builder().nats_swarm("x").build().await.unwrap_err();
    assert!(err.to_string().contains("nats(url)"), "{err}");
}
