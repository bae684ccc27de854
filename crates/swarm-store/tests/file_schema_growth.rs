//! Schema growth: a log written by the previous shape of the events (before
//! optional fields were added) still reads, with the new fields defaulted.
//!
//! `fixtures/previous-shape/` was written by `previous_shape_log()` below; the
//! first test checks that the fixture is byte-for-byte what that shape encodes
//! (regenerate with `SWARM_STORE_WRITE_FIXTURES=1`), the second opens it.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use support::segment_header;
use swarm_core::event::{AgentCreated, FailureReason, TaskCompleted, TaskCreated, TaskFailed};
use swarm_core::{AgentId, Event, Priority, TaskId, Timestamp};
use swarm_store::{EventStore, FileStore};

mod support;

/// The events as an earlier version declared them.
mod previous {
    use serde::Serialize;

    #[derive(Serialize)]
    pub struct Task {
        pub id: u64,
        pub priority: &'static str,
        pub kind: &'static str,
        pub created_at: u64,
    }

    #[derive(Serialize)]
    pub struct TaskCreated {
        pub task: Task,
    }

    /// Before `output` was added.
    #[derive(Serialize)]
    pub struct TaskCompleted {
        pub task_id: u64,
        pub agent_id: u64,
        pub attempt: u32,
        pub duration: u64,
    }

    /// Before `agent_id` and `retry_in` were added.
    #[derive(Serialize)]
    pub struct TaskFailed {
        pub task_id: u64,
        pub attempt: u32,
        pub reason: &'static str,
        pub error: &'static str,
        pub will_retry: bool,
    }

    /// Before `reserve` was added.
    #[derive(Serialize)]
    pub struct AgentCreated {
        pub agent_id: u64,
    }

    #[derive(Serialize)]
    #[serde(tag = "event", content = "data")]
    pub enum Event {
        #[serde(rename = "task:created")]
        TaskCreated(TaskCreated),
        #[serde(rename = "task:completed")]
        TaskCompleted(TaskCompleted),
        #[serde(rename = "task:failed")]
        TaskFailed(TaskFailed),
        #[serde(rename = "agent:created")]
        AgentCreated(AgentCreated),
    }
}

fn previous_events() -> Vec<previous::Event> {
    vec![
        previous::Event::AgentCreated(previous::AgentCreated { agent_id: 4 }),
        previous::Event::TaskCreated(previous::TaskCreated {
            task: previous::Task {
                id: 17,
                priority: "high",
                kind: "resize",
                created_at: 1_000,
            },
        }),
        previous::Event::TaskFailed(previous::TaskFailed {
            task_id: 17,
            attempt: 1,
            reason: "timeout",
            error: "slow",
            will_retry: true,
        }),
        previous::Event::TaskCompleted(previous::TaskCompleted {
            task_id: 17,
            agent_id: 4,
            attempt: 2,
            duration: 2_500,
        }),
    ]
}

/// Frames records the way the log format does (see `src/file/format.rs` of the store).
fn frame<T: Serialize>(out: &mut Vec<u8>, seq: u64, timestamp: u64, event: &T) {
    let mut body = Vec::new();
    body.extend_from_slice(&seq.to_le_bytes());
    body.extend_from_slice(&timestamp.to_le_bytes());
    rmp_serde::encode::write_named(&mut body, event).unwrap();
    let len = (body.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), &body);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&body);
}

fn previous_shape_log() -> Vec<u8> {
    let mut log = segment_header(1).to_vec();
    for (i, e) in previous_events().iter().enumerate() {
        frame(&mut log, i as u64 + 1, 1_700_000_000_000_000 + i as u64, e);
    }
    log
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/previous-shape/00000000000000000001.log")
}

#[test]
fn the_fixture_is_what_the_previous_shape_wrote() {
    let bytes = previous_shape_log();
    if std::env::var_os("SWARM_STORE_WRITE_FIXTURES").is_some() {
        fs::create_dir_all(fixture().parent().unwrap()).unwrap();
        fs::write(fixture(), &bytes).unwrap();
    }
    assert_eq!(fs::read(fixture()).unwrap(), bytes);
}

#[tokio::test]
async fn a_log_of_the_previous_shape_reads_with_new_fields_defaulted() {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(fixture(), dir.path().join("00000000000000000001.log")).unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.open_report().last_seq, 4);
    assert_eq!(store.open_report().bytes_cut, 0);
    let read: Vec<_> = store.read(1).map(|e| e.unwrap()).collect().await;
    assert_eq!(
        read[0].timestamp,
        Timestamp::from_micros(1_700_000_000_000_000)
    );
    let events: Vec<Event> = read.into_iter().map(|e| e.event).collect();

    assert_eq!(
        events[0],
        AgentCreated {
            agent_id: AgentId::new(4),
            reserve: false
        }
        .into()
    );
    let Event::TaskCreated(TaskCreated { task }) = &events[1] else {
        panic!("{:?}", events[1])
    };
    assert_eq!(task.id(), TaskId::from_u64(17));
    assert_eq!(task.priority(), Priority::High);
    assert_eq!(task.kind(), "resize");
    assert!(task.payload().is_empty());
    assert_eq!(
        (task.attempt(), task.pinned(), task.timeout()),
        (0, false, None)
    );
    assert_eq!(
        events[2],
        TaskFailed {
            task_id: TaskId::from_u64(17),
            agent_id: None,
            attempt: 1,
            reason: FailureReason::Timeout,
            error: "slow".into(),
            will_retry: true,
            retry_in: None,
        }
        .into()
    );
    assert_eq!(
        events[3],
        TaskCompleted {
            task_id: TaskId::from_u64(17),
            agent_id: AgentId::new(4),
            attempt: 2,
            duration: Duration::from_micros(2_500),
            output: Default::default(),
        }
        .into()
    );
    // New events append after the old ones.
    let r = store.append(events[..1].to_vec(), Some(4)).await.unwrap();
    assert_eq!(r.start, 5);
    store.close().await.unwrap();
}
