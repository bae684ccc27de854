//! Replay: `replay()` == `replay_to(last)` == folding every event from zero,
//! with and without snapshots, on every store; plus the state's semantics, the
//! snapshotter and the projections.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use proptest::prelude::*;
use swarm_core::event::*;
use swarm_core::testing::strategy;
use swarm_core::{AgentId, Event, EventKind, Priority, Task, TaskId};
use swarm_store::{
    AgentPerformance, Durability, EventStore, FileStore, FileStoreOptions, MemoryStore, Projection,
    Snapshotter, StoredEvent, SystemState, TaskCompletion, TaskStatus, project,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Events over a small pool of task ids, so that they act on the same tasks.
fn events() -> impl Strategy<Value = Vec<Event>> {
    let ids = prop::sample::select((1..=6).map(TaskId::from_u64).collect::<Vec<_>>()).boxed();
    let one = (0..EventKind::COUNT + 4).prop_flat_map(move |i| {
        // Weigh task:created up, so most events meet a known task.
        let kind = if i >= EventKind::COUNT {
            EventKind::TaskCreated
        } else {
            EventKind::ALL[i]
        };
        strategy::event_of_with_ids(kind, ids.clone())
    });
    prop::collection::vec(one, 0..60)
}

fn fold(stored: &[StoredEvent]) -> SystemState {
    let mut state = SystemState::new();
    for e in stored {
        state.apply(e);
    }
    state
}

async fn read_all(store: &impl EventStore) -> Vec<StoredEvent> {
    store.read(1).map(|e| e.unwrap()).collect().await
}

async fn check_replay(
    store: &impl EventStore,
    events: &[Event],
    batch: usize,
    snapshots_at: &[usize],
) {
    for chunk in events.chunks(batch.max(1)) {
        store.append(chunk.to_vec(), None).await.unwrap();
    }
    let stored = read_all(store).await;
    assert_eq!(stored.len(), events.len());
    let last = stored.len() as u64;
    for &at in snapshots_at {
        let at = at.min(stored.len());
        let state = fold(&stored[..at]);
        assert_eq!(
            SystemState::from_snapshot(&state.to_snapshot().unwrap()).unwrap(),
            state
        );
        store
            .save_snapshot(state.to_snapshot().unwrap())
            .await
            .unwrap();
    }
    let full = fold(&stored);
    assert_eq!(full.last_seq(), last);
    assert_eq!(SystemState::replay(store).await.unwrap(), full);
    assert_eq!(SystemState::replay_to(store, last).await.unwrap(), full);
    for k in [0, last / 3, last / 2, last.saturating_sub(1)] {
        assert_eq!(
            SystemState::replay_to(store, k).await.unwrap(),
            fold(&stored[..k as usize]),
            "replay_to({k})"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn memory_replay_equals_fold(
        events in events(),
        batch in 1usize..8,
        snapshots in prop::collection::vec(0usize..60, 0..4),
    ) {
        runtime().block_on(async {
            check_replay(&MemoryStore::new(), &events, batch, &[]).await;
            check_replay(&MemoryStore::new(), &events, batch, &snapshots).await;
        });
    }

    #[test]
    fn file_replay_equals_fold(
        events in events(),
        batch in 1usize..8,
        snapshots in prop::collection::vec(0usize..60, 0..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let options = FileStoreOptions::default().durability(Durability::None).segment_size(2048);
        runtime().block_on(async {
            let store = FileStore::open_with(dir.path(), options.clone()).unwrap();
            check_replay(&store, &events, batch, &snapshots).await;
            store.close().await.unwrap();
            // And again after reopening, from the files alone.
            let reopened = FileStore::open_with(dir.path(), options).unwrap();
            let stored = read_all(&reopened).await;
            assert_eq!(SystemState::replay(&reopened).await.unwrap(), fold(&stored));
        });
    }
}

fn task(n: u64, priority: Priority) -> Task {
    Task::builder("resize")
        .id(TaskId::from_u64(n))
        .priority(priority)
        .build()
        .unwrap()
}

fn lifecycle() -> Vec<Event> {
    let a = AgentId::new(1);
    let t1 = task(1, Priority::Low);
    let t2 = task(2, Priority::Critical);
    let t3 = task(3, Priority::Normal);
    let t4 = task(4, Priority::High);
    let t5 = task(5, Priority::Normal);
    let assigned = |t: &Task, attempt| TaskAssigned {
        task_id: t.id(),
        agent_id: a,
        attempt,
        priority: t.priority(),
        queue_wait: Duration::ZERO,
    };
    vec![
        AgentCreated {
            agent_id: a,
            reserve: false,
        }
        .into(),
        TaskCreated { task: t1.clone() }.into(),
        TaskCreated { task: t2.clone() }.into(),
        TaskCreated { task: t3.clone() }.into(),
        TaskCreated { task: t4.clone() }.into(),
        TaskCreated { task: t5.clone() }.into(),
        TaskEnqueued {
            task_id: t1.id(),
            priority: Priority::Low,
            queue: QueueLocation::Global,
        }
        .into(),
        // t2: runs, fails with a retry due.
        assigned(&t2, 1).into(),
        AgentBusy {
            agent_id: a,
            task_id: t2.id(),
        }
        .into(),
        TaskFailed {
            task_id: t2.id(),
            agent_id: Some(a),
            attempt: 1,
            reason: FailureReason::Error,
            error: "flaky".into(),
            will_retry: true,
            retry_in: Some(Duration::from_millis(5)),
        }
        .into(),
        // t3: completes.
        assigned(&t3, 1).into(),
        TaskCompleted {
            task_id: t3.id(),
            agent_id: a,
            attempt: 1,
            duration: Duration::from_millis(3),
            output: "ok".into(),
        }
        .into(),
        // t4: running at the "crash", on its second attempt.
        assigned(&t4, 2).into(),
        // t5: dead-lettered.
        TaskDeadLettered {
            task_id: t5.id(),
            attempts: 3,
            errors: vec!["x".into()],
        }
        .into(),
        AgentError {
            agent_id: a,
            reason: FailureReason::Timeout,
            error: "slow".into(),
            health: AgentHealth::Degraded,
        }
        .into(),
    ]
}

#[test]
fn state_tracks_tasks_agents_and_counters() {
    let mut state = SystemState::new();
    for e in lifecycle() {
        state.apply_event(&e);
    }
    let status = |n| state.task(TaskId::from_u64(n)).unwrap().status;
    assert_eq!(status(1), TaskStatus::Queued);
    assert_eq!(status(2), TaskStatus::Failed);
    assert_eq!(status(3), TaskStatus::Completed);
    assert_eq!(status(4), TaskStatus::Running);
    assert_eq!(status(5), TaskStatus::DeadLettered);
    let t4 = state.task(TaskId::from_u64(4)).unwrap();
    assert_eq!((t4.attempts, t4.task.attempt()), (2, 2));
    assert_eq!(state.count(TaskStatus::Completed), 1);

    // Re-queued after a restart: pending/queued/running, and failed with a retry due;
    // most urgent first.
    let requeue: Vec<u64> = state
        .tasks_to_requeue()
        .iter()
        .map(|t| t.id().as_u64())
        .collect();
    assert_eq!(requeue, vec![2, 4, 1]);

    let agent = state.agent(AgentId::new(1)).unwrap();
    assert_eq!(agent.health, AgentHealth::Degraded);
    assert_eq!((agent.completed, agent.failed), (1, 1));
    let c = state.counters();
    assert_eq!(
        (
            c.tasks_created,
            c.tasks_completed,
            c.attempts_failed,
            c.retries,
            c.tasks_dead_lettered
        ),
        (5, 1, 1, 1, 1)
    );
    assert_eq!(c.events, lifecycle().len() as u64);
}

#[test]
fn snapshotter_snapshots_every_n_events_and_replay_uses_them() {
    runtime().block_on(async {
        let store = Arc::new(MemoryStore::new());
        let snapshotter = Snapshotter::spawn(Arc::clone(&store), 10);
        let events = lifecycle();
        for _ in 0..3 {
            for chunk in events.chunks(4) {
                store.append(chunk.to_vec(), None).await.unwrap();
            }
        }
        let last = store.last_seq().await.unwrap();
        assert_eq!(last, 45);
        // Wait (bounded) for the snapshotter to follow the log.
        for _ in 0..500 {
            if snapshotter.last_snapshot() >= 40 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(snapshotter.last_snapshot() >= 40, "no snapshot at 40");
        let state = snapshotter.stop().await.unwrap();
        assert_eq!(state.last_seq(), last);
        assert_eq!(
            store.latest_snapshot(u64::MAX).await.unwrap().unwrap().seq,
            last
        );
        // The first falls on the count boundary; later ones coalesce the
        // events that arrived while one was in flight.
        assert!(store.latest_snapshot(9).await.unwrap().is_none());
        let snap = store.latest_snapshot(10).await.unwrap().unwrap();
        assert_eq!(snap.seq, 10, "the first snapshot after 10 events");
        let stored = read_all(&*store).await;
        assert_eq!(SystemState::replay(&*store).await.unwrap(), fold(&stored));
        assert_eq!(state, fold(&stored));
    });
}

#[test]
fn a_damaged_snapshot_is_skipped() {
    runtime().block_on(async {
        let store = MemoryStore::new();
        store.append(lifecycle(), None).await.unwrap();
        store
            .save_snapshot(swarm_store::Snapshot {
                seq: 5,
                data: vec![0xc1, 0xff],
            })
            .await
            .unwrap();
        let stored = read_all(&store).await;
        assert_eq!(SystemState::replay(&store).await.unwrap(), fold(&stored));
    });
}

#[test]
fn projections_count_outcomes_and_agent_percentiles() {
    let mut events = Vec::new();
    for n in 1..=100u64 {
        let t = Task::builder(if n % 2 == 0 { "even" } else { "odd" })
            .id(TaskId::from_u64(n))
            .build()
            .unwrap();
        events.push(TaskCreated { task: t }.into());
        events.push(
            TaskCompleted {
                task_id: TaskId::from_u64(n),
                agent_id: AgentId::new(1),
                attempt: 1,
                duration: Duration::from_millis(n),
                output: Default::default(),
            }
            .into(),
        );
    }
    // Failures of tasks that did not complete (a finished task's kind is
    // forgotten by the projection, which holds only live tasks).
    for n in 101..=103u64 {
        let t = Task::builder(if n % 2 == 0 { "even" } else { "odd" })
            .id(TaskId::from_u64(n))
            .build()
            .unwrap();
        events.push(TaskCreated { task: t }.into());
        events.push(
            TaskFailed {
                task_id: TaskId::from_u64(n),
                agent_id: Some(AgentId::new(2)),
                attempt: 2,
                reason: FailureReason::Error,
                error: "e".into(),
                will_retry: false,
                retry_in: None,
            }
            .into(),
        );
    }
    events.push(
        TaskDeadLettered {
            task_id: TaskId::from_u64(101),
            attempts: 2,
            errors: vec![],
        }
        .into(),
    );
    events.push(
        TaskCancelled {
            task_id: TaskId::from_u64(999),
            was_running: false,
        }
        .into(),
    );

    runtime().block_on(async {
        let store = MemoryStore::new();
        store.append(events, None).await.unwrap();
        let mut completion = TaskCompletion::new();
        let mut perf = AgentPerformance::new();
        let last = project(&store, &mut completion, 1).await.unwrap();
        assert_eq!(project(&store, &mut perf, 1).await.unwrap(), last);

        assert_eq!(completion.total("completed"), 100);
        assert_eq!(completion.by_kind("even", "completed"), 50);
        assert_eq!(completion.by_kind("odd", "failed"), 2);
        assert_eq!(completion.by_kind("even", "failed"), 1);
        assert_eq!(completion.by_kind("odd", "dead_lettered"), 1);
        assert_eq!(
            completion.by_kind(swarm_store::UNKNOWN_KIND, "cancelled"),
            1
        );

        let a1 = perf.agent(AgentId::new(1)).unwrap();
        assert_eq!((a1.completed, a1.failed), (100, 0));
        let near = |d: Duration, ms: u64| d.as_micros().abs_diff(u128::from(ms) * 1000) <= 100;
        assert!(near(a1.p50(), 50), "p50 {:?}", a1.p50());
        assert!(near(a1.p99(), 99), "p99 {:?}", a1.p99());
        let a2 = perf.agent(AgentId::new(2)).unwrap();
        assert_eq!((a2.completed, a2.failed), (0, 3));
    });
}

#[test]
fn system_state_is_a_projection() {
    let mut state = SystemState::new();
    let e = StoredEvent {
        seq: 7,
        timestamp: swarm_core::Timestamp::from_micros(1),
        event: AgentCreated {
            agent_id: AgentId::new(3),
            reserve: true,
        }
        .into(),
    };
    Projection::apply(&mut state, &e);
    assert_eq!(state.last_seq(), 7);
    assert!(state.agent(AgentId::new(3)).unwrap().reserve);
}

#[test]
fn a_task_dead_lettered_twice_is_counted_once() {
    use swarm_core::event::{TaskCreated, TaskDeadLettered};
    let task = swarm_core::Task::builder("k").build().unwrap();
    let id = task.id();
    let mut state = SystemState::new();
    state.apply_event(&TaskCreated { task }.into());
    for _ in 0..2 {
        state.apply_event(
            &TaskDeadLettered {
                task_id: id,
                attempts: 3,
                errors: vec!["boom".into()],
            }
            .into(),
        );
    }
    assert_eq!(state.counters().tasks_dead_lettered, 1);
    assert_eq!(
        state.task(id).unwrap().status,
        swarm_store::TaskStatus::DeadLettered
    );
}

/// A failure with a back-off records when its retry is due (the stored time
/// of the `task:failed` plus `retry_in`), kept by a snapshot, so a restart
/// can wait for it; the retry's start ends it.
#[test]
fn a_pending_back_off_is_recorded_until_the_retry_starts() {
    let t = task(1, Priority::Normal);
    let id = t.id();
    let at = swarm_core::Timestamp::from_micros(1_000_000);
    let stored = |seq: u64, event: Event| StoredEvent {
        seq,
        timestamp: at,
        event,
    };
    let failed = |will_retry: bool, retry_in: Option<Duration>| TaskFailed {
        task_id: id,
        agent_id: None,
        attempt: 1,
        reason: FailureReason::Error,
        error: "flaky".into(),
        will_retry,
        retry_in,
    };
    let assigned = |t: &Task, attempt| TaskAssigned {
        task_id: t.id(),
        agent_id: AgentId::new(1),
        attempt,
        priority: t.priority(),
        queue_wait: Duration::ZERO,
    };
    let mut state = SystemState::new();
    state.apply(&stored(1, TaskCreated { task: t.clone() }.into()));
    state.apply(&stored(2, assigned(&t, 1).into()));
    state.apply(&stored(
        3,
        failed(true, Some(Duration::from_millis(2500))).into(),
    ));
    let due = swarm_core::Timestamp::from_micros(3_500_000);
    assert_eq!(state.task(id).unwrap().retry_at, Some(due));
    let snapshot = state.to_snapshot().unwrap();
    let restored = SystemState::from_snapshot(&snapshot).unwrap();
    assert_eq!(restored.task(id).unwrap().retry_at, Some(due));

    state.apply(&stored(4, assigned(&t, 2).into()));
    assert_eq!(state.task(id).unwrap().retry_at, None, "the retry started");
    // No back-off announced (a lost attempt), or no retry: nothing to wait for.
    state.apply(&stored(5, failed(true, None).into()));
    assert_eq!(state.task(id).unwrap().retry_at, None);
    state.apply(&stored(
        6,
        failed(false, Some(Duration::from_secs(1))).into(),
    ));
    assert_eq!(state.task(id).unwrap().retry_at, None);
}
