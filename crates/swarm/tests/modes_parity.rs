//! The same seeded workload reaches the same final state in event and polling
//! mode; only timings differ.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::ScriptedAgent;
use swarm::{Priority, RetryPolicy, SchedulerMode, Swarm, Task, TaskOutcome};

/// A seeded workload: priorities and which tasks fail come from the seed, so
/// both modes get the very same tasks whatever agent runs which.
fn workload(seed: u64, n: u64) -> Vec<Task> {
    let mut x = seed;
    (0..n)
        .map(|i| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let kind = match (x >> 33) % 10 {
                0 => "fail",
                1 => "permanent",
                _ => "ok",
            };
            Task::builder(kind)
                .id(swarm::TaskId::from_u64(i + 1))
                .priority(Priority::ALL[((x >> 40) % 4) as usize])
                .build()
                .unwrap()
        })
        .collect()
}

async fn run(mode: SchedulerMode) -> (u64, u64, u64, Vec<(u64, bool)>) {
    let swarm = Swarm::builder()
        .agents(4)
        .max_agents(4)
        .autoscale(false)
        .agent_factory(|_| ScriptedAgent)
        .mode(mode)
        .retry(RetryPolicy {
            max_attempts: 2,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(20),
        })
        .build()
        .await
        .unwrap();
    let handles = swarm.submit_batch(workload(42, 80)).await.unwrap();
    let mut outcomes = Vec::new();
    for h in handles {
        let id = h.id().as_u64();
        outcomes.push((id, matches!(h.await, TaskOutcome::Completed { .. })));
    }
    let stats = swarm.stats();
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
    (
        stats.completed,
        stats.dead_lettered,
        stats.failed_attempts,
        outcomes,
    )
}

#[tokio::test(start_paused = true)]
async fn event_and_polling_modes_reach_the_same_final_state() {
    let event = run(SchedulerMode::Event).await;
    let polling = run(SchedulerMode::Polling {
        interval: Duration::from_millis(100),
        batch: 10,
    })
    .await;
    assert_eq!(event, polling);
    assert_eq!(event.0 + event.1, 80);
    assert!(event.1 > 0, "the workload has failures");
}
