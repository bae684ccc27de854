// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::state::Retired;
use swarm_core::TaskId;

/// A layout-1 snapshot of `state`, as earlier versions wrote it.
fn legacy(state: &SystemState) -> Snapshot {
    Snapshot {
        seq: state.last_seq,
        data: encode_legacy(state),
    }
}

#[test]
fn an_empty_state_round_trips_in_both_layouts() {
    let state = SystemState::new();
    let new = state.to_snapshot().unwrap();
    assert!(new.data.starts_with(&MAGIC));
    assert_eq!(SystemState::from_snapshot(&new).unwrap(), state);
    assert_eq!(SystemState::from_snapshot(&legacy(&state)).unwrap(), state);
}

#[test]
fn a_newer_layout_is_refused_by_name() {
    let mut data = MAGIC.to_vec();
    data.push(3);
    let err = SystemState::from_snapshot(&Snapshot { seq: 0, data }).unwrap_err();
    assert!(
        matches!(err, StoreError::BadSnapshot { seq: 0, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("layout 3"), "{err}");
}

#[test]
fn data_of_neither_layout_is_refused() {
    for data in [vec![], vec![0x00], b"not a snapshot".to_vec()] {
        let err = SystemState::from_snapshot(&Snapshot { seq: 0, data }).unwrap_err();
        assert!(matches!(err, StoreError::BadSnapshot { .. }), "{err:?}");
    }
}

#[test]
fn a_wrong_stale_count_in_an_old_snapshot_is_counted_again() {
    // Layout 1 stored the stale count; one larger than the queue made
    // `live()` underflow.
    let mut state = SystemState::new();
    state.finished.stale = 5;
    let decoded = SystemState::from_snapshot(&legacy(&state)).unwrap();
    assert_eq!(decoded.finished.stale, 0);
}

#[test]
fn queue_entries_out_of_order_are_refused() {
    let mut state = SystemState::new();
    state.retire_no = 9;
    for no in [4, 2] {
        state.finished.entries.push_back(Retired {
            id: TaskId::from_u64(no),
            no,
            at: None,
        });
    }
    let err = SystemState::from_snapshot(&state.to_snapshot().unwrap()).unwrap_err();
    assert!(err.to_string().contains("out of order"), "{err}");
    // Numbered above the state's counter.
    state.finished.entries.pop_back();
    state.retire_no = 3;
    let err = SystemState::from_snapshot(&state.to_snapshot().unwrap()).unwrap_err();
    assert!(err.to_string().contains("out of order"), "{err}");
}
