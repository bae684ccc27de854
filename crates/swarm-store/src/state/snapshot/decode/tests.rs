//! The two-thread decoding of task records against the one-thread one: the
//! same state from every valid snapshot (and no fallback: the walk over the
//! first part must agree with its decoding), and the same error, word for
//! word, from every damaged one.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use swarm_core::testing::strategy;
use swarm_core::{Event, EventKind, TaskId, Timestamp};

use super::*;
use crate::state::Retention;
use crate::store::StoredEvent;

/// Events over 40 task ids, task:created weighed up, so that states hold
/// dozens of records with every optional field somewhere.
fn events() -> impl Strategy<Value = Vec<Event>> {
    let ids = prop::sample::select((1..=40).map(TaskId::from_u64).collect::<Vec<_>>()).boxed();
    let one = (0..EventKind::COUNT * 2).prop_flat_map(move |i| {
        let kind = EventKind::ALL
            .get(i)
            .copied()
            .unwrap_or(EventKind::TaskCreated);
        strategy::event_of_with_ids(kind, ids.clone())
    });
    prop::collection::vec(one, 0..200)
}

/// A window small enough that the generated events retire tasks.
const RETENTION: Retention = Retention::DEFAULT.finished(8);

fn state_of(events: &[Event]) -> SystemState {
    let mut state = SystemState::with_retention(RETENTION);
    for (i, event) in events.iter().enumerate() {
        let seq = i as u64 + 1;
        state.apply(&StoredEvent {
            seq,
            timestamp: Timestamp::from_micros(1_700_000_000_000_000 + seq * 1_000_000),
            event: event.clone(),
        });
    }
    state
}

/// Decodes `data` (a layout-2 snapshot's data) in one thread, or in two
/// from 2 records on; with how often the two-thread decoding fell back.
fn decode_as(data: &[u8], two: bool) -> (std::result::Result<SystemState, String>, usize) {
    let before = FELL_BACK.with(|n| n.get());
    let parallel_from = if two { 2 } else { usize::MAX };
    let got = decode(&mut Reader::new(data, MAGIC.len()), parallel_from)
        .map(|mut state| {
            // A snapshot carries no configuration: the retention of `state_of`.
            state.retention = RETENTION;
            state
        })
        .map_err(|e| e.to_string())
        .and_then(|mut state| {
            // What `from_snapshot` does after decoding.
            super::super::check_and_count(&mut state)?;
            Ok(state)
        });
    (got, FELL_BACK.with(|n| n.get()) - before)
}

/// Where each task record starts in `data`, and where the section ends.
fn record_starts(data: &[u8]) -> (Vec<usize>, usize) {
    let state = decode_as(data, false).0.unwrap();
    // Find the tasks section by walking a second decode up to it: the
    // counts before it are re-read here the way `decode` reads them.
    let mut r = Reader::new(data, MAGIC.len());
    r.varint("layout").unwrap();
    for _ in 0..3 {
        r.varint("header").unwrap();
    }
    for _ in 0..r.count("counters", 1).unwrap() {
        r.varint("counter").unwrap();
    }
    for _ in 0..r.count("kinds", 1).unwrap() {
        r.str("kind").unwrap();
        for _ in 0..4 {
            r.varint("kind count").unwrap();
        }
    }
    for _ in 0..r.count("agents", 1).unwrap() {
        r.varint("id").unwrap();
        r.u8("health").unwrap();
        if r.u8("flags").unwrap() & BUSY != 0 {
            r.u64_le("busy").unwrap();
        }
        r.varint("completed").unwrap();
        r.varint("failed").unwrap();
    }
    for _ in 0..r.count("task kinds", 1).unwrap() {
        r.str("task kind").unwrap();
    }
    let n = r.count("tasks", 1).unwrap();
    assert_eq!(n, state.task_count());
    let mut starts = Vec::with_capacity(n);
    for _ in 0..n {
        starts.push(r.pos());
        skip_record(&mut r).unwrap();
    }
    (starts, r.pos())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn two_threads_decode_every_valid_snapshot_to_the_same_state(events in events()) {
        let state = state_of(&events);
        let data = super::super::encode::encode(&state);
        let (one, _) = decode_as(&data, false);
        let (two, fell_back) = decode_as(&data, true);
        let one = one.unwrap();
        prop_assert_eq!(&one, &state);
        prop_assert_eq!(&two.unwrap(), &state);
        prop_assert_eq!(fell_back, 0, "the walk over the first part disagreed with its decoding");
    }

    #[test]
    fn two_threads_fail_on_damage_exactly_as_one_does(
        events in events(),
        at in any::<prop::sample::Index>(),
        bits in 1u8..=255,
    ) {
        let mut data = super::super::encode::encode(&state_of(&events));
        let i = at.index(data.len());
        data[i] ^= bits;
        let (one, _) = decode_as(&data, false);
        let (two, _) = decode_as(&data, true);
        prop_assert_eq!(one, two);
    }
}

#[test]
fn a_duplicate_id_anywhere_is_named_as_one_thread_names_it() {
    let events: Vec<Event> = (1..=8)
        .map(|id| {
            let task = Task::builder("k").id(TaskId::from_u64(id)).build().unwrap();
            swarm_core::event::TaskCreated { task }.into()
        })
        .collect();
    let data = super::super::encode::encode(&state_of(&events));
    let (starts, _) = record_starts(&data);
    // 8 records: the helper takes the first 6. Pairs inside its part,
    // across the two parts, and inside this thread's part.
    for (from, to) in [(0, 1), (4, 5), (2, 7), (5, 6), (6, 7)] {
        let mut bad = data.clone();
        let id: [u8; 8] = data[starts[from]..starts[from] + 8].try_into().unwrap();
        bad[starts[to]..starts[to] + 8].copy_from_slice(&id);
        let (one, _) = decode_as(&bad, false);
        let (two, fell_back) = decode_as(&bad, true);
        let one = one.unwrap_err();
        assert!(one.contains("appears twice"), "{one}");
        assert_eq!(two.unwrap_err(), one, "records {from} and {to}");
        assert_eq!(fell_back, 1);
    }
}

#[test]
fn a_large_snapshot_takes_the_two_thread_path_by_default() {
    let events: Vec<Event> = (1..=PARALLEL_FROM as u64)
        .map(|id| {
            let task = Task::builder("k")
                .id(TaskId::from_u64(id))
                .key(format!("tenant-{}", id % 3))
                .build()
                .unwrap();
            swarm_core::event::TaskCreated { task }.into()
        })
        .collect();
    let state = state_of(&events);
    let snapshot = state.to_snapshot().unwrap();
    let before = FELL_BACK.with(|n| n.get());
    let mut decoded = SystemState::from_snapshot(&snapshot).unwrap();
    decoded.retention = RETENTION;
    assert_eq!(decoded, state);
    assert_eq!(FELL_BACK.with(|n| n.get()), before);
}
