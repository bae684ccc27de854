//! Panicking, hanging and failing agents: retries, replacement, dead letters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{ScriptedAgent, task};
use swarm::event::{AgentCreated, AgentRemoved, TaskDeadLettered, TaskFailed};
use swarm::{Priority, RetryPolicy, Swarm, TaskOutcome};
use swarm_core::testing::EventRecorder;

fn retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base: Duration::from_millis(10),
        cap: Duration::from_millis(100),
    }
}

#[tokio::test(start_paused = true)]
async fn every_task_ends_completed_or_dead_lettered_exactly() {
    let swarm = Swarm::builder()
        .agents(4)
        .max_agents(4)
        .autoscale(false)
        .agent_factory(|_| ScriptedAgent)
        .retry(retry())
        .default_timeout(Some(Duration::from_secs(1)))
        .build()
        .await
        .unwrap();
    let recorder = EventRecorder::attach(swarm.bus());

    let kinds = ["ok", "fail", "permanent", "panic", "hang"];
    let mut tasks = Vec::new();
    for i in 0..50 {
        tasks.push(task(kinds[i % kinds.len()], Priority::Normal));
    }
    let handles = swarm.submit_batch(tasks.clone()).await.unwrap();
    let mut completed = 0;
    let mut dead = 0;
    for (h, t) in handles.into_iter().zip(&tasks) {
        match h.await {
            TaskOutcome::Completed { .. } => {
                assert_eq!(t.kind(), "ok");
                completed += 1;
            }
            TaskOutcome::DeadLettered { errors } => {
                dead += 1;
                match t.kind() {
                    "permanent" => assert_eq!(errors.len(), 1, "permanent errors are not retried"),
                    "fail" | "panic" | "hang" => {
                        assert_eq!(errors.len(), 3, "{}: {errors:?}", t.kind())
                    }
                    other => panic!("{other} should not dead-letter"),
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(completed, 10);
    assert_eq!(dead, 40);
    let stats = swarm.stats();
    assert_eq!(stats.completed + stats.dead_lettered, 50);
    assert_eq!(stats.completed, 10);
    assert_eq!(recorder.count::<TaskDeadLettered>(), 40);
    // fail/panic/hang: 3 failed attempts each; permanent: 1.
    assert_eq!(recorder.count::<TaskFailed>(), 30 * 3 + 10);
    // Panics and timeouts make agents unhealthy at once: they are replaced.
    let removed = recorder.count::<AgentRemoved>();
    assert!(
        removed >= 20,
        "panicking and hanging agents are replaced: {removed}"
    );
    assert_eq!(recorder.count::<AgentCreated>(), removed);
    assert_eq!(
        stats.idle_agents + stats.busy_agents,
        4,
        "the pool keeps its size"
    );
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_hanging_task_is_timed_out_and_retried_with_back_off() {
    let swarm = Swarm::builder()
        .agents(2)
        .autoscale(false)
        .agent_factory(|_| ScriptedAgent)
        .retry(retry())
        .default_timeout(Some(Duration::from_millis(500)))
        .build()
        .await
        .unwrap();
    let recorder = EventRecorder::attach(swarm.bus());
    let started = tokio::time::Instant::now();
    let outcome = swarm
        .submit(task("hang", Priority::High))
        .await
        .unwrap()
        .await;
    assert!(matches!(outcome, TaskOutcome::DeadLettered { .. }));
    let failed = recorder.of::<TaskFailed>();
    assert_eq!(failed.len(), 3);
    assert!(
        failed
            .iter()
            .all(|f| f.reason == swarm::event::FailureReason::Timeout)
    );
    assert!(failed[0].will_retry && failed[1].will_retry && !failed[2].will_retry);
    // Three timeouts of 500 ms plus two back-offs within the cap.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1500), "{elapsed:?}");
    assert!(elapsed <= Duration::from_millis(1700), "{elapsed:?}");
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}
