use proptest::prelude::*;

use super::*;

/// Every kind, through an exhaustive match: adding a variant to the catalog
/// without deciding its place here fails to compile, and a kind missing from
/// `ALL` fails `all_lists_every_kind_once`.
fn position(kind: EventKind) -> usize {
    match kind {
        EventKind::TaskCreated => 0,
        EventKind::TaskEnqueued => 1,
        EventKind::TaskDequeued => 2,
        EventKind::TaskCritical => 3,
        EventKind::TaskAssigned => 4,
        EventKind::TaskCompleted => 5,
        EventKind::TaskFailed => 6,
        EventKind::TaskDeadLettered => 7,
        EventKind::TaskCancelled => 8,
        EventKind::AgentCreated => 9,
        EventKind::AgentRemoved => 10,
        EventKind::AgentAvailable => 11,
        EventKind::AgentBusy => 12,
        EventKind::AgentError => 13,
        EventKind::WorkStolen => 14,
        EventKind::QueueBacklog => 15,
        EventKind::CoordinatorOverload => 16,
        EventKind::PerformanceDegraded => 17,
        EventKind::SystemShutdown => 18,
        EventKind::TaskInterrupted => 19,
        EventKind::TaskDeadLetterRetried => 20,
        EventKind::TaskDiscarded => 21,
        EventKind::SwarmPaused => 22,
        EventKind::SwarmResumed => 23,
        EventKind::TaskThrottled => 24,
        EventKind::TaskUnthrottled => 25,
    }
}

#[test]
fn all_lists_every_kind_once() {
    assert_eq!(EventKind::ALL.len(), 26);
    for (i, kind) in EventKind::ALL.into_iter().enumerate() {
        assert_eq!(
            position(kind),
            i,
            "{kind} is out of place in EventKind::ALL"
        );
        assert_eq!(kind.index(), i);
    }
}

#[test]
fn names_are_entity_action_and_unique() {
    let mut seen = std::collections::HashSet::new();
    for kind in EventKind::ALL {
        let name = kind.name();
        let (entity, action) = name.split_once(':').expect("entity:action");
        assert!(!entity.is_empty() && !action.is_empty(), "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c == ':' || c == '_'),
            "{name}"
        );
        assert!(seen.insert(name), "{name} appears twice");
        assert_eq!(name.parse::<EventKind>(), Ok(kind));
    }
    assert!("task:exploded".parse::<EventKind>().is_err());
}

#[test]
fn every_kind_is_documented_in_docs_events_md() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/events.md");
    let doc = std::fs::read_to_string(path).expect("docs/events.md is readable");
    for kind in EventKind::ALL {
        let heading = format!("## `{}`", kind.name());
        assert!(
            doc.lines().any(|l| l.trim() == heading),
            "docs/events.md has no section {heading:?}"
        );
    }
    // And documents nothing that is not in the catalog.
    for line in doc.lines().filter(|l| l.starts_with("## `")) {
        let name = line.trim_start_matches("## `").trim_end_matches('`');
        assert!(
            name.parse::<EventKind>().is_ok(),
            "docs/events.md documents {name:?}, which is not in the catalog"
        );
    }
}

#[test]
fn serialized_form_is_tagged_by_name() {
    let event: Event = TaskCritical {
        task_id: crate::TaskId::from_u64(7),
    }
    .into();
    let json = serde_json::to_string(&event).unwrap();
    assert_eq!(json, r#"{"event":"task:critical","data":{"task_id":7}}"#);
}

#[test]
fn an_added_optional_field_keeps_old_records_readable() {
    // A record written before `reserve` existed, and one with a field this
    // version does not know: both read.
    let old = r#"{"event":"agent:created","data":{"agent_id":3}}"#;
    let newer = r#"{"event":"agent:created","data":{"agent_id":3,"reserve":true,"zone":"eu"}}"#;
    let old: Event = serde_json::from_str(old).unwrap();
    let newer: Event = serde_json::from_str(newer).unwrap();
    assert_eq!(
        old,
        Event::AgentCreated(AgentCreated {
            agent_id: crate::AgentId::new(3),
            reserve: false
        })
    );
    assert_eq!(newer.kind(), EventKind::AgentCreated);
}

fn any_kind() -> impl Strategy<Value = EventKind> {
    (0..EventKind::COUNT).prop_map(|i| EventKind::ALL[i])
}

proptest! {
    #[test]
    fn every_kind_round_trips_through_json(
        event in any_kind().prop_flat_map(crate::testing::strategy::event_of)
    ) {
        let json = serde_json::to_string(&event).unwrap();
        let back: Event = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &event);
        prop_assert_eq!(back.kind().name(), event.name());
    }

    #[test]
    fn typed_access_matches_the_kind(event in crate::testing::strategy::event()) {
        let kind = event.kind();
        prop_assert_eq!(TaskCompleted::from_event(&event).is_some(), kind == TaskCompleted::KIND);
        prop_assert_eq!(AgentError::from_event(&event).is_some(), kind == AgentError::KIND);
        prop_assert_eq!(WorkStolen::from_event(&event).is_some(), kind == WorkStolen::KIND);
    }
}
