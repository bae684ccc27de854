//! The retention contract of `SystemState`: live tasks are always kept, a
//! finished task stays queryable inside the window (by count and by age, on
//! the log's own timestamps), is gone beyond it with its aggregates counted;
//! dead letters stay until acted on, bounded, with a count of those dropped.
//! Checked by hand and as a property against a simple model, and through
//! snapshots and replays.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use swarm_core::event::*;
use swarm_core::{AgentId, Event, Priority, Task, TaskId, Timestamp};
use swarm_store::{EventStore, MemoryStore, Retention, StoredEvent, SystemState, TaskStatus};

const AGENT: AgentId = AgentId::new(1);

fn task(id: u64, kind: &str) -> Task {
    Task::builder(kind.to_owned())
        .id(TaskId::from_u64(id))
        .build()
        .unwrap()
}

fn created(id: u64, kind: &str) -> Event {
    Event::TaskCreated(TaskCreated {
        task: task(id, kind),
    })
}

fn assigned(id: u64) -> Event {
    Event::TaskAssigned(TaskAssigned {
        task_id: TaskId::from_u64(id),
        agent_id: AGENT,
        attempt: 1,
        priority: Priority::Normal,
        queue_wait: Duration::ZERO,
    })
}

fn completed(id: u64) -> Event {
    Event::TaskCompleted(TaskCompleted {
        task_id: TaskId::from_u64(id),
        agent_id: AGENT,
        attempt: 1,
        duration: Duration::ZERO,
        output: Default::default(),
    })
}

fn dead(id: u64) -> Event {
    Event::TaskDeadLettered(TaskDeadLettered {
        task_id: TaskId::from_u64(id),
        attempts: 1,
        errors: vec!["boom".to_owned()],
    })
}

fn cancelled(id: u64) -> Event {
    Event::TaskCancelled(TaskCancelled {
        task_id: TaskId::from_u64(id),
        was_running: false,
    })
}

/// Folds `events`, the i-th stored at `seq = i + 1` and at second `at[i]`.
struct Log {
    stored: Vec<StoredEvent>,
}

impl Log {
    fn new() -> Self {
        Log { stored: Vec::new() }
    }

    fn push(&mut self, event: Event, at_secs: u64) {
        let seq = self.stored.len() as u64 + 1;
        self.stored.push(StoredEvent {
            seq,
            timestamp: Timestamp::from_micros(at_secs * 1_000_000),
            event,
        });
    }

    fn fold(&self, retention: Retention) -> SystemState {
        let mut state = SystemState::with_retention(retention);
        for e in &self.stored {
            state.apply(e);
        }
        state
    }
}

fn has(state: &SystemState, id: u64) -> bool {
    state.task(TaskId::from_u64(id)).is_some()
}

#[test]
fn a_finished_task_is_kept_inside_the_count_window_and_gone_beyond_it() {
    let mut log = Log::new();
    for id in 1..=50 {
        log.push(created(id, if id % 2 == 0 { "even" } else { "odd" }), 0);
        log.push(assigned(id), 0);
        log.push(completed(id), 0);
    }
    let state = log.fold(Retention::default().finished(10));
    for id in 1..=40 {
        assert!(!has(&state, id), "task {id} is beyond the window");
    }
    for id in 41..=50 {
        let t = state.task(TaskId::from_u64(id)).expect("inside the window");
        assert_eq!(t.status, TaskStatus::Completed);
        assert!(t.updated_at.is_some());
    }
    assert_eq!(state.task_count(), 10);
    // The aggregates still count every task.
    let c = state.counters();
    assert_eq!(c.tasks_created, 50);
    assert_eq!(c.tasks_completed, 50);
    assert_eq!(c.tasks_retired, 40);
    let kinds: BTreeMap<&str, u64> = state.kinds().map(|(k, c)| (k, c.completed)).collect();
    assert_eq!(kinds, BTreeMap::from([("even", 25), ("odd", 25)]));
}

#[test]
fn a_finished_task_leaves_after_the_age_window_measured_on_the_log() {
    let mut log = Log::new();
    log.push(created(1, "k"), 0);
    log.push(completed(1), 10);
    log.push(created(2, "k"), 50);
    log.push(completed(2), 60);
    let retention = Retention::default().finished_for(Some(Duration::from_secs(60)));
    // At second 60, task 1 finished 50 s ago: kept.
    let state = log.fold(retention);
    assert!(has(&state, 1) && has(&state, 2));
    // Any event 61 s after task 1 finished retires it, not task 2.
    log.push(created(3, "k"), 71);
    let state = log.fold(retention);
    assert!(!has(&state, 1), "finished 61 s before the newest event");
    assert!(has(&state, 2) && has(&state, 3));
    assert_eq!(state.counters().tasks_retired, 1);
    // Without an age limit both stay.
    let state = log.fold(Retention::default().finished_for(None));
    assert!(has(&state, 1) && has(&state, 2));
}

#[test]
fn live_tasks_are_never_retired() {
    let mut log = Log::new();
    for id in 1..=20 {
        log.push(created(id, "k"), 0);
    }
    for id in 1..=10 {
        log.push(assigned(id), 0);
    }
    // Years later, with a window of nothing.
    log.push(created(21, "k"), 100_000_000);
    let state = log.fold(
        Retention::default()
            .finished(0)
            .finished_for(Some(Duration::from_secs(1))),
    );
    assert_eq!(state.task_count(), 21);
    assert_eq!(state.count(TaskStatus::Running), 10);
    assert_eq!(state.tasks_to_requeue().len(), 21);
}

#[test]
fn dead_letters_outlive_the_finished_window_and_are_bounded() {
    let mut log = Log::new();
    for id in 1..=5 {
        log.push(created(id, "k"), 0);
        log.push(dead(id), id);
    }
    log.push(created(6, "k"), 0);
    log.push(cancelled(6), 1_000_000);
    let state = log.fold(
        Retention::default()
            .finished(0)
            .finished_for(Some(Duration::from_secs(1)))
            .dead_letters(3),
    );
    // The cancelled task is gone at once; of five dead letters the newest three stay.
    assert!(!has(&state, 6));
    assert_eq!(
        state
            .tasks_with_status(TaskStatus::DeadLettered)
            .map(|t| t.task.id().as_u64())
            .collect::<std::collections::BTreeSet<_>>(),
        [3, 4, 5].into()
    );
    assert_eq!(state.counters().dead_letters_dropped, 2);
    assert_eq!(state.counters().tasks_dead_lettered, 5);
    assert_eq!(state.counters().tasks_retired, 1);
}

#[test]
fn a_resubmitted_id_is_a_new_task_in_the_window() {
    let mut log = Log::new();
    log.push(created(1, "k"), 0);
    log.push(completed(1), 0);
    log.push(created(1, "k"), 1);
    log.push(created(2, "k"), 1);
    log.push(completed(2), 1);
    // Window of one: task 2 finished last; task 1 is live again.
    let state = log.fold(Retention::default().finished(1));
    assert_eq!(
        state.task(TaskId::from_u64(1)).unwrap().status,
        TaskStatus::Pending
    );
    assert!(has(&state, 2));
    // Task 1 finishes again: now it is the newest, task 2 retires.
    log.push(completed(1), 2);
    let state = log.fold(Retention::default().finished(1));
    assert!(has(&state, 1) && !has(&state, 2));
}

#[test]
fn a_tighter_retention_retires_at_once_and_snapshots_keep_the_window() {
    let mut log = Log::new();
    for id in 1..=30 {
        log.push(created(id, "k"), 0);
        log.push(completed(id), 0);
    }
    let mut state = log.fold(Retention::unbounded());
    assert_eq!(state.task_count(), 30);
    let bytes_all = state.to_snapshot().unwrap().data.len();
    state.set_retention(Retention::default().finished(5));
    assert_eq!(state.task_count(), 5);
    let snapshot = state.to_snapshot().unwrap();
    assert!(
        snapshot.data.len() * 3 < bytes_all,
        "a snapshot costs the window: {} vs {bytes_all} bytes",
        snapshot.data.len()
    );
    let mut back = SystemState::from_snapshot(&snapshot).unwrap();
    back.set_retention(state.retention());
    assert_eq!(back, state);
}

#[test]
fn replay_with_a_retention_equals_the_fold_with_it() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = MemoryStore::new();
        let mut events = Vec::new();
        for id in 1..=40 {
            events.push(created(id, "k"));
            events.push(completed(id));
        }
        store.append(events[..40].to_vec(), None).await.unwrap();
        let retention = Retention::default().finished(7);
        // A snapshot halfway, made by a state with the same window.
        let half = SystemState::replay_with(&store, retention).await.unwrap();
        store
            .save_snapshot(half.to_snapshot().unwrap())
            .await
            .unwrap();
        store.append(events[40..].to_vec(), None).await.unwrap();
        let replayed = SystemState::replay_with(&store, retention).await.unwrap();
        let mut folded = SystemState::with_retention(retention);
        let mut stream = store.read(1);
        while let Some(e) = futures::StreamExt::next(&mut stream).await {
            folded.apply(&e.unwrap());
        }
        assert_eq!(replayed, folded);
        assert_eq!(replayed.task_count(), 7);
        assert_eq!(replayed.counters().tasks_completed, 40);
    });
}

/// What the model knows of one id.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Model {
    Live,
    Finished { no: u64, at: u64 },
    Dead { no: u64 },
}

#[derive(Clone, Debug)]
enum Op {
    Create(u64),
    Assign(u64),
    Complete(u64),
    Cancel(u64),
    DeadLetter(u64),
    Wait(u64),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let id = 1..=8u64;
    let op = prop_oneof![
        3 => id.clone().prop_map(Op::Create),
        1 => id.clone().prop_map(Op::Assign),
        2 => id.clone().prop_map(Op::Complete),
        1 => id.clone().prop_map(Op::Cancel),
        1 => id.prop_map(Op::DeadLetter),
        1 => (0..40u64).prop_map(Op::Wait),
    ];
    prop::collection::vec(op, 0..120)
}

proptest! {
    /// The state holds exactly what the model says the window holds, however
    /// ids are created again, redelivered, finished twice or dead-lettered.
    #[test]
    fn the_window_matches_a_model(
        ops in ops(),
        cap in 0..5usize,
        age in prop::option::of(1..60u64),
        dead_cap in 0..4usize,
    ) {
        let retention = Retention::default()
            .finished(cap)
            .finished_for(age.map(Duration::from_secs))
            .dead_letters(dead_cap);
        let mut state = SystemState::with_retention(retention);
        let mut model: BTreeMap<u64, Model> = BTreeMap::new();
        let (mut now, mut no, mut seq) = (0u64, 0u64, 0u64);
        let (mut retired, mut dropped) = (0u64, 0u64);
        for op in ops {
            let event = match op {
                Op::Wait(s) => { now += s; created(1_000 + seq, "tick") }
                Op::Create(id) => {
                    if matches!(model.get(&id), Some(Model::Live)) { continue; }
                    model.insert(id, Model::Live);
                    created(id, "k")
                }
                Op::Assign(id) => {
                    if model.contains_key(&id) { model.insert(id, Model::Live); }
                    assigned(id)
                }
                Op::Complete(id) | Op::Cancel(id) => {
                    if matches!(model.get(&id), Some(Model::Live)) {
                        no += 1;
                        model.insert(id, Model::Finished { no, at: now });
                    }
                    if matches!(op, Op::Complete(_)) { completed(id) } else { cancelled(id) }
                }
                Op::DeadLetter(id) => {
                    if matches!(model.get(&id), Some(Model::Live | Model::Finished { .. })) {
                        no += 1;
                        model.insert(id, Model::Dead { no });
                    }
                    dead(id)
                }
            };
            if let Op::Wait(_) = op {
                model.insert(1_000 + seq, Model::Live);
            }
            seq += 1;
            state.apply(&StoredEvent { seq, timestamp: Timestamp::from_micros(now * 1_000_000), event });
            // The model's retirement: oldest finished first.
            let mut finished: Vec<(u64, u64, u64)> = model.iter()
                .filter_map(|(id, m)| match m { Model::Finished { no, at } => Some((*no, *at, *id)), _ => None })
                .collect();
            finished.sort();
            let excess = finished.len().saturating_sub(cap);
            for (i, (_, at, id)) in finished.iter().enumerate() {
                let old = age.is_some_and(|a| at + a < now);
                if i < excess || old { model.remove(id); retired += 1; }
            }
            let mut deads: Vec<(u64, u64)> = model.iter()
                .filter_map(|(id, m)| match m { Model::Dead { no } => Some((*no, *id)), _ => None })
                .collect();
            deads.sort();
            for (_, id) in deads.iter().take(deads.len().saturating_sub(dead_cap)) {
                model.remove(id);
                dropped += 1;
            }
            let held: BTreeMap<u64, TaskStatus> =
                state.tasks().map(|t| (t.task.id().as_u64(), t.status)).collect();
            prop_assert_eq!(held.keys().collect::<Vec<_>>(), model.keys().collect::<Vec<_>>());
            for (id, m) in &model {
                let status = held[id];
                match m {
                    Model::Live => prop_assert!(!status.is_terminal(), "{id} live, state says {status:?}"),
                    Model::Finished { .. } => prop_assert!(matches!(status, TaskStatus::Completed | TaskStatus::Cancelled)),
                    Model::Dead { .. } => prop_assert_eq!(status, TaskStatus::DeadLettered),
                }
            }
            prop_assert_eq!(state.counters().tasks_retired, retired);
            prop_assert_eq!(state.counters().dead_letters_dropped, dropped);
        }
        // A snapshot round trip keeps the window exactly.
        let mut back = SystemState::from_snapshot(&state.to_snapshot().unwrap()).unwrap();
        back.set_retention(retention);
        prop_assert_eq!(back, state);
    }
}
