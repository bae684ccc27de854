//! The snapshot codec: a state decodes equal to itself from the compact
//! layout and from the first (MessagePack) layout, goes on folding events
//! exactly as the original does, and damaged data is a typed error, never a
//! panic.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use swarm_core::testing::strategy;
use swarm_core::{Event, EventKind, TaskId, Timestamp};
use swarm_store::{Retention, Snapshot, StoreError, StoredEvent, SystemState};

/// Events over a few task ids, so that tasks finish, come back, are retried
/// and retire (task:created weighed up).
fn events() -> impl Strategy<Value = Vec<Event>> {
    let ids = prop::sample::select((1..=8).map(TaskId::from_u64).collect::<Vec<_>>()).boxed();
    let one = (0..EventKind::COUNT + 6).prop_flat_map(move |i| {
        let kind = if i >= EventKind::COUNT {
            EventKind::TaskCreated
        } else {
            EventKind::ALL[i]
        };
        strategy::event_of_with_ids(kind, ids.clone())
    });
    prop::collection::vec(one, 0..120)
}

/// A window small enough that the generated events retire tasks.
fn retention() -> impl Strategy<Value = Retention> {
    (0usize..4, prop::option::of(1u64..20), 0usize..3).prop_map(|(n, age, dead)| {
        Retention::default()
            .finished(n)
            .finished_for(age.map(Duration::from_secs))
            .dead_letters(dead)
    })
}

/// Stored events: sequences from 1, a second apart.
fn stored(events: &[Event], from: u64) -> Vec<StoredEvent> {
    events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let seq = from + i as u64;
            StoredEvent {
                seq,
                timestamp: Timestamp::from_micros(1_700_000_000_000_000 + seq * 1_000_000),
                event: event.clone(),
            }
        })
        .collect()
}

/// A snapshot of `state` in the first layout, as earlier versions wrote it.
fn legacy(state: &SystemState) -> Snapshot {
    #[derive(serde::Serialize)]
    struct Envelope<'a> {
        version: u32,
        state: &'a SystemState,
    }
    Snapshot {
        seq: state.last_seq(),
        data: rmp_serde::to_vec_named(&Envelope { version: 1, state }).unwrap(),
    }
}

/// Decodes `snapshot` into a state with `retention` (a snapshot carries no
/// configuration).
fn decode(snapshot: &Snapshot, retention: Retention) -> SystemState {
    let mut state = SystemState::from_snapshot(snapshot).unwrap();
    state.set_retention(retention);
    state
}

fn fold(state: &mut SystemState, events: &[StoredEvent]) {
    for e in events {
        state.apply(e);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn a_state_decodes_equal_from_both_layouts_and_folds_on_the_same(
        before in events(),
        after in events(),
        retention in retention(),
    ) {
        let mut state = SystemState::with_retention(retention);
        fold(&mut state, &stored(&before, 1));
        let new = state.to_snapshot().unwrap();
        let old = legacy(&state);
        prop_assert_eq!(new.seq, state.last_seq());
        let mut from_new = decode(&new, retention);
        let mut from_old = decode(&old, retention);
        prop_assert_eq!(&from_new, &state);
        prop_assert_eq!(&from_old, &state);
        // The compact layout is the smaller.
        prop_assert!(new.data.len() <= old.data.len(), "{} > {}", new.data.len(), old.data.len());

        // The decoded states go on exactly as the original (the retention
        // queues' bookkeeping included).
        let tail = stored(&after, state.last_seq() + 1);
        fold(&mut state, &tail);
        fold(&mut from_new, &tail);
        fold(&mut from_old, &tail);
        prop_assert_eq!(&from_new, &state);
        prop_assert_eq!(&from_old, &state);
        prop_assert_eq!(decode(&state.to_snapshot().unwrap(), retention), state);
    }

    #[test]
    fn damaged_data_is_a_typed_error_or_a_state_that_works(
        events in events(),
        at in any::<prop::sample::Index>(),
        bits in 1u8..=255,
        more in events(),
    ) {
        let mut state = SystemState::with_retention(Retention::default().finished(2));
        fold(&mut state, &stored(&events, 1));
        let mut snapshot = state.to_snapshot().unwrap();
        let i = at.index(snapshot.data.len());
        snapshot.data[i] ^= bits;
        match SystemState::from_snapshot(&snapshot) {
            Err(StoreError::BadSnapshot { seq, message }) => {
                prop_assert_eq!(seq, snapshot.seq);
                prop_assert!(!message.is_empty());
            }
            Err(other) => prop_assert!(false, "not BadSnapshot: {other:?}"),
            // A flip inside a value (a payload byte, a counter) can decode:
            // the state it gives must still fold events without panicking
            // and encode again.
            Ok(mut decoded) => {
                decoded.set_retention(Retention::default().finished(1).dead_letters(1));
                fold(&mut decoded, &stored(&more, snapshot.seq + 1));
                let again = decoded.to_snapshot().unwrap();
                prop_assert!(SystemState::from_snapshot(&again).is_ok());
            }
        }
    }
}

/// A state with something in every section.
fn busy_state() -> SystemState {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    loop {
        let events = events().new_tree(&mut runner).unwrap().current();
        let mut state = SystemState::with_retention(Retention::default().finished(3));
        fold(&mut state, &stored(&events, 1));
        if state.task_count() >= 3 && state.agents().count() >= 1 {
            return state;
        }
    }
}

#[test]
fn every_truncation_is_a_typed_error() {
    let state = busy_state();
    let snapshot = state.to_snapshot().unwrap();
    assert!(snapshot.data.len() > 100, "{} bytes", snapshot.data.len());
    for len in 0..snapshot.data.len() {
        let cut = Snapshot {
            seq: snapshot.seq,
            data: snapshot.data[..len].to_vec(),
        };
        match SystemState::from_snapshot(&cut) {
            Err(StoreError::BadSnapshot { seq, .. }) => assert_eq!(seq, snapshot.seq),
            other => panic!("cut at {len}: {other:?}"),
        }
    }
    // And bytes after the end.
    let mut longer = snapshot.clone();
    longer.data.push(0);
    let err = SystemState::from_snapshot(&longer).unwrap_err();
    assert!(err.to_string().contains("1 bytes follow"), "{err}");
}

#[test]
fn a_snapshot_at_another_sequence_than_its_state_is_refused() {
    let state = busy_state();
    let mut snapshot = state.to_snapshot().unwrap();
    snapshot.seq += 1;
    let err = SystemState::from_snapshot(&snapshot).unwrap_err();
    assert!(
        err.to_string().contains("the state inside is at sequence"),
        "{err}"
    );
}

#[test]
fn a_huge_count_is_refused_without_allocating_it() {
    // An empty state's data, its task count replaced by 2^60.
    let state = SystemState::new();
    let data = state.to_snapshot().unwrap().data;
    // magic, layout, last_seq, retire_no, paused, 13 counters (+ count),
    // no kinds, no agents, no task kinds: then the task count.
    let at = 8 + 1 + 1 + 1 + 1 + 1 + 13 + 1 + 1 + 1;
    assert_eq!(data[at], 0, "{data:?}");
    let mut damaged = data[..at].to_vec();
    let mut n = 1u64 << 60;
    while n >= 0x80 {
        damaged.push((n as u8) | 0x80);
        n >>= 7;
    }
    damaged.push(n as u8);
    damaged.extend_from_slice(&data[at + 1..]);
    let err = SystemState::from_snapshot(&Snapshot {
        seq: 0,
        data: damaged,
    })
    .unwrap_err();
    assert!(err.to_string().contains("the tasks"), "{err}");
}
