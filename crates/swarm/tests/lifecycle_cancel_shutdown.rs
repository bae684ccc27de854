//! Cancellation (queued and running), shutdown with a deadline, and no
//! wake-ups while idle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{RecordingAgent, ScriptedAgent, task};
use swarm::event::{SystemShutdown, TaskCancelled};
use swarm::{CancelError, Priority, Swarm, TaskOutcome};
use swarm_core::testing::EventRecorder;

#[tokio::test(start_paused = true)]
async fn cancel_removes_a_queued_task_and_drops_a_running_one() {
    let agent = RecordingAgent::new(Duration::from_secs(10));
    let started = agent.started.clone();
    let swarm = Swarm::builder()
        .agents(1)
        .max_agents(1)
        .autoscale(false)
        .agent_factory(move |_| agent.clone())
        .default_timeout(None)
        .build()
        .await
        .unwrap();
    let recorder = EventRecorder::attach(swarm.bus());

    let running = swarm
        .submit(task("running", Priority::Normal))
        .await
        .unwrap();
    let queued = swarm
        .submit(task("queued", Priority::Normal))
        .await
        .unwrap();
    let next = swarm.submit(task("next", Priority::Low)).await.unwrap();
    while started.lock().is_empty() {
        tokio::task::yield_now().await;
    }

    swarm.cancel(queued.id()).unwrap();
    assert_eq!(queued.await, TaskOutcome::Cancelled { was_running: false });

    let running_id = running.id();
    swarm.cancel(running_id).unwrap();
    assert_eq!(running.await, TaskOutcome::Cancelled { was_running: true });

    // The freed agent goes on with the next task; the cancelled one never ran.
    assert!(next.await.is_completed());
    assert_eq!(*started.lock(), ["running", "next"]);

    let cancelled = recorder.of::<TaskCancelled>();
    assert_eq!(cancelled.len(), 2);
    assert!(!cancelled[0].was_running && cancelled[1].was_running);
    assert_eq!(
        swarm.cancel(running_id),
        Err(CancelError::NotFound(running_id)),
        "a finished task cannot be cancelled"
    );
    assert_eq!(swarm.stats().cancelled, 2);
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_a_task_waiting_for_its_retry() {
    let swarm = Swarm::builder()
        .agents(1)
        .autoscale(false)
        .agent_factory(|_| ScriptedAgent)
        .retry(swarm::RetryPolicy {
            max_attempts: 5,
            base: Duration::from_secs(60),
            cap: Duration::from_secs(60),
        })
        .build()
        .await
        .unwrap();
    let handle = swarm.submit(task("fail", Priority::Normal)).await.unwrap();
    while swarm.stats().waiting_retry == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    swarm.cancel(handle.id()).unwrap();
    assert_eq!(handle.await, TaskOutcome::Cancelled { was_running: false });
    assert_eq!(swarm.stats().waiting_retry, 0);
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_running_tasks_finish_within_the_deadline_and_leaves_queued_ones_pending() {
    let agent = RecordingAgent::new(Duration::from_millis(200));
    let swarm = Swarm::builder()
        .agents(2)
        .max_agents(2)
        .autoscale(false)
        .agent_factory(move |_| agent.clone())
        .build()
        .await
        .unwrap();
    let recorder = EventRecorder::attach(swarm.bus());
    let handles = swarm
        .submit_batch((0..6).map(|_| task("work", Priority::Normal)).collect())
        .await
        .unwrap();
    tokio::task::yield_now().await;

    let started = tokio::time::Instant::now();
    let report = swarm.shutdown(Duration::from_secs(1)).await.unwrap();
    assert!(started.elapsed() <= Duration::from_secs(1));
    assert!(report.finished_in_time);
    assert_eq!(report.interrupted, 0);
    assert_eq!(report.pending, 4);
    let shutdown = recorder.of::<SystemShutdown>();
    assert_eq!(shutdown.len(), 1);
    assert_eq!(shutdown[0].pending, 4);

    let mut completed = 0;
    let mut interrupted = 0;
    for h in handles {
        match h.await {
            TaskOutcome::Completed { .. } => completed += 1,
            TaskOutcome::Interrupted => interrupted += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((completed, interrupted), (2, 4));
    let err = swarm
        .submit(task("late", Priority::High))
        .await
        .unwrap_err();
    assert!(matches!(err, swarm::SubmitError::ShuttingDown(_)));
    assert_eq!(
        err.into_task().map(|t| t.kind().to_owned()),
        Some("late".into())
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_drops_attempts_still_running_at_the_deadline() {
    let swarm = Swarm::builder()
        .agents(1)
        .autoscale(false)
        .agent_factory(|_| ScriptedAgent)
        .default_timeout(None)
        .build()
        .await
        .unwrap();
    let hanging = swarm.submit(task("hang", Priority::Normal)).await.unwrap();
    tokio::task::yield_now().await;
    let started = tokio::time::Instant::now();
    let report = swarm.shutdown(Duration::from_millis(300)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!report.finished_in_time);
    assert_eq!(report.interrupted, 1);
    assert_eq!(hanging.await, TaskOutcome::Interrupted);
}

#[tokio::test(start_paused = true)]
async fn an_idle_event_mode_swarm_does_not_wake_up() {
    let swarm = Swarm::builder().agents(8).build().await.unwrap();
    // Some work first, so every part has run at least once.
    let handles = swarm
        .submit_batch((0..100).map(|_| task("noop", Priority::Normal)).collect())
        .await
        .unwrap();
    for h in handles {
        assert!(h.await.is_completed());
    }
    // Let the tail of that work (tasks it spawned) run out: yields, no timer.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    let before = swarm.stats().wakeups;
    // An hour of paused time: the clock jumps from timer to timer, so any
    // timer the idle swarm kept (a poll, a balancer) would fire and be counted.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let after = swarm.stats().wakeups;
    assert_eq!(
        after,
        before,
        "the idle scheduler woke up {} times",
        after - before
    );
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_idle_polling_swarm_wakes_up_every_interval() {
    // The contrast that makes the previous test meaningful: the counter does count.
    let swarm = Swarm::builder()
        .agents(2)
        .mode(swarm::SchedulerMode::Polling {
            interval: Duration::from_millis(50),
            batch: 10,
        })
        .build()
        .await
        .unwrap();
    let before = swarm.stats().wakeups;
    // Ten intervals of paused time: exactly ten polls, each counted.
    tokio::time::sleep(Duration::from_millis(501)).await;
    let woke = swarm.stats().wakeups - before;
    assert_eq!(woke, 10, "polling woke {woke} times in 10 intervals");
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_missed_latency_objective_is_reported_and_answered_with_more_agents() {
    use swarm::event::{AgentCreated, PerformanceDegraded};
    let agent = RecordingAgent::new(Duration::from_millis(10));
    let swarm = Swarm::builder()
        .agents(1)
        .max_agents(4)
        .agent_factory(move |_| agent.clone())
        .latency_objective(Duration::from_millis(1))
        .build()
        .await
        .unwrap();
    let recorder = EventRecorder::attach(swarm.bus());
    let handles = swarm
        .submit_batch((0..300).map(|_| task("slow", Priority::Normal)).collect())
        .await
        .unwrap();
    for h in handles {
        assert!(h.await.is_completed());
    }
    let degraded = recorder.of::<PerformanceDegraded>();
    assert!(
        !degraded.is_empty(),
        "the objective was missed and not reported"
    );
    assert_eq!(degraded[0].objective, Duration::from_millis(1));
    assert!(degraded[0].p99_queue_wait > degraded[0].objective);
    let created = recorder.count::<AgentCreated>();
    assert!(created >= 1, "no agent was added");
    let stats = swarm.stats();
    assert!(
        stats.idle_agents + stats.busy_agents <= 4,
        "grew past max_agents"
    );
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn polling_mode_shutdown_lets_the_running_attempt_finish_and_resolves_every_handle() {
    let agent = RecordingAgent::new(Duration::from_millis(300));
    let swarm = Swarm::builder()
        .agents(1)
        .autoscale(false)
        .agent_factory(move |_| agent.clone())
        .mode(swarm::SchedulerMode::Polling {
            interval: Duration::from_millis(100),
            batch: 10,
        })
        .build()
        .await
        .unwrap();
    let handles = swarm
        .submit_batch((0..5).map(|_| task("work", Priority::Normal)).collect())
        .await
        .unwrap();
    // Let the first poll start the first attempt of the batch.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let report = swarm.shutdown(Duration::from_secs(1)).await.unwrap();
    assert!(report.finished_in_time);
    assert_eq!(report.interrupted, 0);
    let mut completed = 0;
    let mut interrupted = 0;
    for h in handles {
        match h.await {
            TaskOutcome::Completed { .. } => completed += 1,
            TaskOutcome::Interrupted => interrupted += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((completed, interrupted), (1, 4));
}
