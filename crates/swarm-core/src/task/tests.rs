use std::time::{Duration, UNIX_EPOCH};

use super::*;

#[test]
fn payload_at_the_limit_is_accepted_and_over_it_refused() {
    let ok = Task::builder("k")
        .payload(vec![1u8; 10])
        .max_payload(10)
        .build();
    assert_eq!(ok.unwrap().payload().len(), 10);
    let err = Task::builder("k")
        .payload(vec![1u8; 11])
        .max_payload(10)
        .build();
    assert_eq!(
        err.unwrap_err(),
        TaskError::PayloadTooLarge {
            size: 11,
            limit: 10
        }
    );
}

#[test]
fn default_limit_is_one_mebibyte() {
    assert!(
        Task::builder("k")
            .payload(vec![0u8; DEFAULT_MAX_PAYLOAD])
            .build()
            .is_ok()
    );
    assert!(
        Task::builder("k")
            .payload(vec![0u8; DEFAULT_MAX_PAYLOAD + 1])
            .build()
            .is_err()
    );
}

#[test]
fn payload_serde_round_trips_text_and_binary() {
    for p in [
        Payload::from("{\"a\":1}"),
        Payload::from(vec![0xff, 0x00, 0x80]),
        Payload::empty(),
    ] {
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Payload>(&json).unwrap(), p);
    }
    assert_eq!(
        serde_json::to_string(&Payload::from("hi")).unwrap(),
        "\"hi\""
    );
}

#[test]
fn old_task_records_without_optional_fields_still_read() {
    let json = r#"{"id":1,"priority":"high","kind":"k","created_at":5}"#;
    let task: Task = serde_json::from_str(json).unwrap();
    assert_eq!(task.priority(), Priority::High);
    assert_eq!(task.attempt(), 0);
    assert!(task.payload().is_empty());
    assert_eq!(task.timeout(), None);
    assert_eq!(task.key(), None);
    assert_eq!(task.cost(), DEFAULT_COST);
    assert_eq!(task.not_before(), None);
}

#[test]
fn flow_fields_round_trip_and_defaults_are_not_written() {
    let plain = Task::builder("k").build().unwrap();
    let json = serde_json::to_string(&plain).unwrap();
    assert!(!json.contains("cost") && !json.contains("key") && !json.contains("not_before"));
    let at = UNIX_EPOCH + Duration::from_secs(4_000_000_000);
    let task = Task::builder("k")
        .key("tenant-a")
        .cost(250)
        .not_before(at)
        .build()
        .unwrap();
    assert_eq!(
        task.not_before(),
        Some(Timestamp::from_micros(4_000_000_000_000_000))
    );
    let json = serde_json::to_string(&task).unwrap();
    let back: Task = serde_json::from_str(&json).unwrap();
    assert_eq!(back, task);
    assert_eq!(back.key(), Some("tenant-a"));
    assert_eq!(back.cost(), 250);
}

#[test]
fn a_delay_counts_from_build_and_the_last_start_setting_wins() {
    let before = Timestamp::now();
    let task = Task::builder("k")
        .not_before(UNIX_EPOCH)
        .delay(Duration::from_secs(60))
        .build()
        .unwrap();
    let due = task.not_before().unwrap();
    assert!(due.saturating_duration_since(before) >= Duration::from_secs(60));
    assert!(due.saturating_duration_since(task.created_at()) == Duration::from_secs(60));
    let past = Task::builder("k")
        .delay(Duration::from_secs(1))
        .not_before(UNIX_EPOCH)
        .build()
        .unwrap();
    assert_eq!(past.not_before(), Some(Timestamp::from_micros(0)));
}

#[test]
fn attempts_count_up() {
    let mut t = Task::builder("k").build().unwrap();
    assert_eq!(t.begin_attempt(), 1);
    assert_eq!(t.begin_attempt(), 2);
    assert_eq!(t.attempt(), 2);
}

/// A task with every field set, built the way the stores rebuild one.
fn every_field_set() -> Task {
    Task::from_parts(every_field_set_parts())
}

const EVERY_FIELD_JSON: &str = r#"{"id":7,"priority":"high","kind":"k","payload":"p","attempt":2,"created_at":5,"affinity":3,"pinned":true,"timeout":2000000,"max_attempts":5,"key":"t","cost":9,"not_before":10000000}"#;

#[test]
fn the_json_form_is_the_flat_record_in_its_historical_order() {
    let task = every_field_set();
    assert_eq!(serde_json::to_string(&task).unwrap(), EVERY_FIELD_JSON);
    assert_eq!(
        serde_json::from_str::<Task>(EVERY_FIELD_JSON).unwrap(),
        task
    );
    let plain = Task::from_parts(no_option_parts());
    assert_eq!(
        serde_json::to_string(&plain).unwrap(),
        r#"{"id":7,"priority":"high","kind":"k","payload":"p","attempt":2,"created_at":5}"#
    );
}

/// [`every_field_set_parts`] with every option at its default.
fn no_option_parts() -> TaskParts {
    TaskParts {
        affinity: None,
        pinned: false,
        timeout: None,
        max_attempts: None,
        key: None,
        cost: DEFAULT_COST,
        not_before: None,
        ..every_field_set_parts()
    }
}

fn every_field_set_parts() -> TaskParts {
    TaskParts {
        id: TaskId::from_u64(7),
        priority: Priority::High,
        kind: Arc::from("k"),
        payload: Payload::from("p"),
        attempt: 2,
        created_at: Timestamp::from_micros(5),
        affinity: Some(AgentId::new(3)),
        pinned: true,
        timeout: Some(Duration::from_secs(2)),
        max_attempts: Some(5),
        key: Some(Arc::from("t")),
        cost: 9,
        not_before: Some(Timestamp::from_micros(10_000_000)),
    }
}

#[test]
fn each_option_alone_reads_back_and_defaults_compare_equal_however_written() {
    let base = no_option_parts();
    let full = every_field_set_parts();
    let singles = [
        TaskParts {
            affinity: full.affinity,
            ..base.clone()
        },
        TaskParts {
            pinned: true,
            ..base.clone()
        },
        TaskParts {
            timeout: full.timeout,
            ..base.clone()
        },
        TaskParts {
            max_attempts: full.max_attempts,
            ..base.clone()
        },
        TaskParts {
            key: full.key.clone(),
            ..base.clone()
        },
        TaskParts {
            cost: 0,
            ..base.clone()
        },
        TaskParts {
            not_before: full.not_before,
            ..base.clone()
        },
    ];
    let plain = Task::from_parts(base.clone());
    for parts in singles {
        let task = Task::from_parts(parts.clone());
        assert_ne!(task, plain, "{parts:?}");
        assert_eq!(task.affinity(), parts.affinity);
        assert_eq!(task.pinned(), parts.pinned);
        assert_eq!(task.timeout(), parts.timeout);
        assert_eq!(task.max_attempts(), parts.max_attempts);
        assert_eq!(task.key(), parts.key.as_deref());
        assert_eq!(task.cost(), parts.cost);
        assert_eq!(task.not_before(), parts.not_before);
        let json = serde_json::to_string(&task).unwrap();
        assert_eq!(serde_json::from_str::<Task>(&json).unwrap(), task);
    }
    // Defaults written out explicitly read as the plain task.
    let explicit = r#"{"id":7,"priority":"high","kind":"k","payload":"p","attempt":2,"created_at":5,"affinity":null,"pinned":false,"timeout":null,"cost":1}"#;
    assert_eq!(serde_json::from_str::<Task>(explicit).unwrap(), plain);
}

#[test]
fn clearing_the_only_option_gives_back_the_plain_task() {
    let plain = Task::builder("k").build().unwrap();
    let mut task = plain.clone();
    task.set_affinity(Some(AgentId::new(1)));
    assert_eq!(task.affinity(), Some(AgentId::new(1)));
    assert_ne!(task, plain);
    task.set_affinity(None);
    assert_eq!(task, plain);
    // Clearing affinity keeps the options that are still set.
    let mut keyed = Task::builder("k")
        .key("a")
        .affinity(AgentId::new(2))
        .build()
        .unwrap();
    keyed.set_affinity(None);
    assert_eq!((keyed.affinity(), keyed.key()), (None, Some("a")));
}

#[test]
fn debug_lists_every_field_as_before() {
    let text = format!("{:?}", every_field_set());
    assert_eq!(
        text,
        "Task { id: task-0000000000000007, priority: High, kind: \"k\", payload: Payload(\"p\"), \
         attempt: 2, created_at: Timestamp(5), affinity: Some(agent-3), pinned: true, \
         timeout: Some(2s), max_attempts: Some(5), key: Some(\"t\"), cost: 9, \
         not_before: Some(Timestamp(10000000)) }"
    );
}

#[cfg(target_pointer_width = "64")]
#[test]
fn a_task_without_options_is_small() {
    // id 8, created_at 8, kind 16, payload 16, the options' box 8, attempt 4,
    // priority 1, padding 3. The queues hold millions of these.
    assert_eq!(std::mem::size_of::<Task>(), 64);
}
