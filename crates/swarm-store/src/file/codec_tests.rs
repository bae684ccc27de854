// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use proptest::prelude::*;
use swarm_core::event::{AgentAvailable, CoordinatorOverload, TaskCompleted};
use swarm_core::testing::strategy;

use super::*;

fn encoded(event: &Event) -> Vec<u8> {
    let mut buf = Vec::new();
    encode(&mut buf, event).unwrap();
    buf
}

fn decoded(bytes: &[u8], revision: u16) -> Result<Event, DecodeError> {
    decode(bytes, revision, &mut Interner::default())
}

#[test]
fn every_kind_of_the_catalog_has_its_own_tag() {
    let mut seen = HashSet::new();
    for kind in EventKind::ALL {
        let tag =
            tag_of(kind).unwrap_or_else(|| panic!("`{kind}` has no tag in file/codec.rs: add one"));
        assert!(seen.insert(tag), "tag {tag} is given twice");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_event_round_trips(event in strategy::event()) {
        let bytes = encoded(&event);
        prop_assert_eq!(decoded(&bytes, SCHEMA_REVISION), Ok(event.clone()));
        // Smaller than the named MessagePack it replaces.
        let named = rmp_serde::to_vec_named(&event).unwrap();
        prop_assert!(bytes.len() < named.len(), "{} >= {} bytes", bytes.len(), named.len());
    }

    #[test]
    fn a_cut_or_lengthened_event_is_damage(event in strategy::event(), extra in 1u8..=255) {
        let bytes = encoded(&event);
        for cut in 0..bytes.len() {
            let got = decoded(&bytes[..cut], SCHEMA_REVISION);
            prop_assert!(matches!(got, Err(DecodeError::Bad(_))), "cut at {}: {:?}", cut, got);
        }
        let mut longer = bytes.clone();
        longer.push(extra);
        let got = decoded(&longer, SCHEMA_REVISION);
        prop_assert!(matches!(got, Err(DecodeError::Bad(_))), "{:?}", got);
        // Written by a newer revision: its trailing fields are skipped.
        prop_assert_eq!(decoded(&longer, SCHEMA_REVISION + 1), Ok(event));
    }

    #[test]
    fn any_bytes_decode_to_an_error_or_an_event_that_round_trips(
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
        revision in 1u16..3,
    ) {
        if let Ok(event) = decoded(&bytes, revision) {
            let again = encoded(&event);
            let back = decoded(&again, SCHEMA_REVISION).unwrap();
            // By bytes: an f64 field may hold a NaN.
            prop_assert_eq!(encoded(&back), again);
        }
    }
}

#[test]
fn an_unknown_tag_is_damage_unless_a_newer_revision_wrote_it() {
    let bytes = [99u8, 1, 2, 3];
    assert!(matches!(
        decoded(&bytes, SCHEMA_REVISION),
        Err(DecodeError::Bad(_))
    ));
    assert_eq!(
        decoded(&bytes, SCHEMA_REVISION + 1),
        Err(DecodeError::Unknown(format!(
            "#99 (schema revision {})",
            SCHEMA_REVISION + 1
        )))
    );
}

#[test]
fn the_layout_is_the_documented_one() {
    // tag 12, agent 300 as a varint.
    let available: Event = AgentAvailable {
        agent_id: AgentId::new(300),
    }
    .into();
    assert_eq!(encoded(&available), [12, 0xac, 0x02]);
    // tag 6, task id fixed 8 bytes, agent 3, attempt 1, 1234 µs, empty output.
    let completed: Event = TaskCompleted {
        task_id: TaskId::from_u64(0x0102_0304_0506_0708),
        agent_id: AgentId::new(3),
        attempt: 1,
        duration: Duration::from_micros(1234),
        output: Payload::empty(),
    }
    .into();
    assert_eq!(
        encoded(&completed),
        [6, 8, 7, 6, 5, 4, 3, 2, 1, 3, 1, 0xd2, 0x09, 0]
    );
    let overload: Event = CoordinatorOverload {
        busy: 1,
        total: 2,
        load: 0.5,
    }
    .into();
    let mut want = vec![17, 1, 2];
    want.extend_from_slice(&0.5f64.to_bits().to_le_bytes());
    assert_eq!(encoded(&overload), want);
}

#[test]
fn invalid_values_are_named() {
    // A boolean of 2 (task:cancelled's `was_running`).
    let mut bytes = vec![9];
    bytes.extend_from_slice(&[0; 8]);
    bytes.push(2);
    let Err(DecodeError::Bad(reason)) = decoded(&bytes, SCHEMA_REVISION) else {
        panic!("a bad boolean decoded");
    };
    assert!(reason.contains("neither 0 nor 1"), "{reason}");
    // A varint past 64 bits (agent:available's agent id).
    let bytes = [
        12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
    ];
    let Err(DecodeError::Bad(reason)) = decoded(&bytes, SCHEMA_REVISION) else {
        panic!("an overflowing varint decoded");
    };
    assert!(reason.contains("overflows"), "{reason}");
    // The largest one is fine.
    let bytes = [
        12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ];
    assert_eq!(
        decoded(&bytes, SCHEMA_REVISION),
        Ok(AgentAvailable {
            agent_id: AgentId::new(u64::MAX)
        }
        .into())
    );
}

#[test]
fn tasks_of_one_kind_share_the_kind_string() {
    let task = |i| {
        Event::from(TaskCreated {
            task: Task::builder("same")
                .id(TaskId::from_u64(i))
                .build()
                .unwrap(),
        })
    };
    let mut interner = Interner::default();
    let a = decode(&encoded(&task(1)), SCHEMA_REVISION, &mut interner).unwrap();
    let b = decode(&encoded(&task(2)), SCHEMA_REVISION, &mut interner).unwrap();
    let (Event::TaskCreated(a), Event::TaskCreated(b)) = (a, b) else {
        panic!("not task:created");
    };
    assert_eq!(b.task.id(), TaskId::from_u64(2));
    assert!(std::ptr::eq(a.task.kind(), b.task.kind()));
}
