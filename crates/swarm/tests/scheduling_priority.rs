//! Event mode: priority order under backlog, and a critical task behind a
//! deep backlog of low ones.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{RecordingAgent, task};
use swarm::{Priority, Swarm, TaskOutcome};

#[tokio::test(start_paused = true)]
async fn agents_start_queued_tasks_in_priority_order_fifo_within_a_level() {
    let agent = RecordingAgent::new(Duration::from_millis(10));
    let started = agent.started.clone();
    let swarm = Swarm::builder()
        .agents(1)
        .max_agents(1)
        .autoscale(false)
        .agent_factory(move |_| agent.clone())
        .build()
        .await
        .unwrap();

    // The first task occupies the only agent; the rest queue up behind it.
    let first = swarm.submit(task("first", Priority::Low)).await.unwrap();
    let mut handles = Vec::new();
    for (kind, p) in [
        ("low-1", Priority::Low),
        ("normal-1", Priority::Normal),
        ("high-1", Priority::High),
        ("low-2", Priority::Low),
        ("critical-1", Priority::Critical),
        ("normal-2", Priority::Normal),
        ("high-2", Priority::High),
        ("critical-2", Priority::Critical),
    ] {
        handles.push(swarm.submit(task(kind, p)).await.unwrap());
    }
    assert!(first.await.is_completed());
    for h in handles {
        assert!(h.await.is_completed());
    }
    assert_eq!(
        *started.lock(),
        [
            "first",
            "critical-1",
            "critical-2",
            "high-1",
            "high-2",
            "normal-1",
            "normal-2",
            "low-1",
            "low-2"
        ]
    );
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_critical_task_behind_ten_thousand_low_ones_starts_next() {
    let agent = RecordingAgent::new(Duration::from_millis(1));
    let started = agent.started.clone();
    let swarm = Swarm::builder()
        .agents(2)
        .max_agents(2)
        .autoscale(false)
        // Snapshots of a 10 000-task state every 1000 events dominate a debug
        // build's run time; this test is about dispatch order.
        .snapshot_every(1_000_000)
        .agent_factory(move |_| agent.clone())
        .build()
        .await
        .unwrap();

    let low: Vec<_> = (0..10_000).map(|_| task("low", Priority::Low)).collect();
    let low_handles = swarm.submit_batch(low).await.unwrap();
    // Both agents take the first two low tasks at once; let them start.
    while started.lock().len() < 2 {
        tokio::task::yield_now().await;
    }
    let before = started.lock().len();
    assert_eq!(before, 2, "two agents took the first two low tasks at once");
    let critical = swarm
        .submit(task("critical", Priority::Critical))
        .await
        .unwrap();

    assert!(matches!(critical.await, TaskOutcome::Completed { .. }));
    let order = started.lock().clone();
    let position = order.iter().position(|k| k == "critical").unwrap();
    assert_eq!(
        position, before,
        "the critical task is the next one started after those already running"
    );
    for h in low_handles {
        assert!(h.await.is_completed());
    }
    let stats = swarm.stats();
    assert_eq!(stats.completed, 10_001);
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}
