//! Seed corpora from real logs: a `FileStore` writes the life of a few
//! tasks (with small segments, so there are several, and a snapshot), and
//! its files, records and events become the seeds of each target.

use std::fs;
use std::path::Path;
use std::time::Duration;

use swarm_core::event::{
    AgentAvailable, AgentBusy, AgentCreated, AgentError, AgentHealth, AgentRemoved, FailureReason,
    QueueLocation, TaskAssigned, TaskCompleted, TaskCreated, TaskEnqueued, TaskFailed, WorkStolen,
};
use swarm_core::{AgentId, Event, Priority, Task, Timestamp};
use swarm_store::{EventStore, FileStore, FileStoreOptions, StoredEvent, SystemState};

use crate::model;

/// The events of a few tasks' lives: created, queued, assigned, failed,
/// retried, completed; agents created, busy, in error, removed; a steal.
pub fn life(tasks: u64) -> Vec<Event> {
    let mut out: Vec<Event> = vec![
        AgentCreated {
            agent_id: AgentId::new(1),
            reserve: false,
        }
        .into(),
        AgentCreated {
            agent_id: AgentId::new(2),
            reserve: true,
        }
        .into(),
    ];
    for n in 0..tasks {
        let priority = [
            Priority::Low,
            Priority::Normal,
            Priority::High,
            Priority::Critical,
        ][(n % 4) as usize];
        let task = Task::builder(if n % 2 == 0 { "summarize" } else { "job" })
            .priority(priority)
            .json(&serde_json::json!({"id": format!("job-{n}"), "cmd": "make test"}))
            .and_then(|b| b.timeout(Duration::from_secs(30)).build())
            .unwrap_or_else(|e| panic!("a seed task: {e}"));
        let id = task.id();
        let agent = AgentId::new(1 + n % 2);
        out.push(TaskCreated { task }.into());
        out.push(
            TaskEnqueued {
                task_id: id,
                priority,
                queue: if n % 3 == 0 {
                    QueueLocation::Local(agent)
                } else {
                    QueueLocation::Global
                },
            }
            .into(),
        );
        out.push(
            TaskAssigned {
                task_id: id,
                agent_id: agent,
                attempt: 1,
                priority,
                queue_wait: Duration::from_micros(150 + n),
            }
            .into(),
        );
        out.push(
            AgentBusy {
                agent_id: agent,
                task_id: id,
            }
            .into(),
        );
        if n % 3 == 1 {
            out.push(
                TaskFailed {
                    task_id: id,
                    agent_id: Some(agent),
                    attempt: 1,
                    reason: FailureReason::Error,
                    error: "exit status 1: make: *** [test] Error 1".into(),
                    will_retry: true,
                    retry_in: Some(Duration::from_millis(100)),
                }
                .into(),
            );
            out.push(
                TaskAssigned {
                    task_id: id,
                    agent_id: agent,
                    attempt: 2,
                    priority,
                    queue_wait: Duration::from_millis(101),
                }
                .into(),
            );
        }
        out.push(
            TaskCompleted {
                task_id: id,
                agent_id: agent,
                attempt: 1 + u32::from(n % 3 == 1),
                duration: Duration::from_millis(20 + n),
                output: swarm_core::Payload::default(),
            }
            .into(),
        );
        out.push(AgentAvailable { agent_id: agent }.into());
    }
    out.push(
        WorkStolen {
            from: AgentId::new(1),
            to: AgentId::new(2),
            count: 2,
            task_ids: Vec::new(),
        }
        .into(),
    );
    out.push(
        AgentError {
            agent_id: AgentId::new(2),
            reason: FailureReason::Panic,
            error: "panicked: index out of bounds".into(),
            health: AgentHealth::Unhealthy,
        }
        .into(),
    );
    out.push(
        AgentRemoved {
            agent_id: AgentId::new(2),
            reason: "unhealthy".into(),
        }
        .into(),
    );
    out
}

/// A clean one-segment log of the first `count` events of [`life`], with
/// fixed timestamps, and its events as stored. A format 1 segment (encoding
/// 1, MessagePack with named fields), as earlier builds wrote: the model
/// encodes no other.
pub fn clean_log(count: usize) -> (Vec<u8>, Vec<StoredEvent>) {
    let mut log = model::segment_header_v1(1).to_vec();
    let mut stored = Vec::new();
    for (i, event) in life(4).into_iter().take(count).enumerate() {
        let seq = i as u64 + 1;
        let timestamp = 1_700_000_000_000_000 + seq;
        model::push_record(&mut log, seq, timestamp, &model::event_bytes(&event));
        stored.push(StoredEvent {
            seq,
            timestamp: Timestamp::from_micros(timestamp),
            event,
        });
    }
    (log, stored)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::write(dir.join(name), bytes)
}

/// Writes the seed corpus of every target under `root/<target>/`.
pub fn write_corpora(root: &Path) -> Result<(), Box<dyn std::error::Error>> {
    // A real log, written by the store.
    let tmp = tempfile::tempdir()?;
    let events = life(12);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store =
            FileStore::open_with(tmp.path(), FileStoreOptions::default().segment_size(2048))?;
        for (i, chunk) in events.chunks(3).enumerate() {
            store.append(chunk.to_vec(), None).await?;
            if i == 5 {
                let state = SystemState::replay(&store).await?;
                store.save_snapshot(state.to_snapshot()?).await?;
            }
        }
        store.close().await?;
        Ok::<(), swarm_store::StoreError>(())
    })?;
    let mut segments = Vec::new();
    let mut snapshots = Vec::new();
    for entry in fs::read_dir(tmp.path())? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".log") {
            segments.push((name, fs::read(entry.path())?));
        } else if name.ends_with(".snap") {
            snapshots.push(fs::read(entry.path())?);
        }
    }
    segments.sort();

    let one = root.join("log_one_segment");
    let two = root.join("log_two_segments");
    for (i, (_, bytes)) in segments.iter().enumerate() {
        // Each segment renamed to start at 1: the first one as it is; later
        // ones keep their bytes (their header then disagrees, a seed of damage).
        write(&one, &format!("segment-{i}"), bytes)?;
    }
    let (small, _) = clean_log(8);
    write(&one, "clean-8", &small)?;
    write(&one, "header-only", &model::segment_header(1))?;
    if let [(_, a), (_, b), ..] = segments.as_slice() {
        let split = u16::try_from(a.len())?;
        let mut input = split.to_le_bytes().to_vec();
        input.push(0);
        input.extend_from_slice(a);
        input.extend_from_slice(b);
        write(&two, "first-two-segments", &input)?;
    }
    let (a, _) = clean_log(5);
    let mut b = model::segment_header_v1(6).to_vec();
    for (i, stored) in clean_log(9).1.into_iter().skip(5).enumerate() {
        model::push_record(&mut b, 6 + i as u64, 7, &model::event_bytes(&stored.event));
    }
    let mut input = u16::try_from(a.len())?.to_le_bytes().to_vec();
    input.push(0);
    input.extend_from_slice(&a);
    input.extend_from_slice(&b);
    write(&two, "clean-5-and-4", &input)?;
    // A store whose first segment is format 1 and whose appends went on in
    // a format 2 one.
    let mixed = tempfile::tempdir()?;
    fs::write(mixed.path().join(format!("{:020}.log", 1)), &a)?;
    runtime.block_on(async {
        let store = FileStore::open(mixed.path())?;
        let more: Vec<Event> = clean_log(9).1.into_iter().skip(5).map(|s| s.event).collect();
        store.append(more, None).await?;
        store.close().await
    })?;
    let b = fs::read(mixed.path().join(format!("{:020}.log", 6)))?;
    let mut input = u16::try_from(a.len())?.to_le_bytes().to_vec();
    input.push(0);
    input.extend_from_slice(&a);
    input.extend_from_slice(&b);
    write(&two, "format-1-then-2", &input)?;

    // Snapshots: the store's file as is (mode 0) and its data (mode 1), and
    // one of the state after 5 events of the target's own log.
    let snap = root.join("snapshot_load");
    for (i, file) in snapshots.iter().enumerate() {
        let mut raw = vec![0u8];
        raw.extend_from_slice(file);
        write(&snap, &format!("store-file-{i}"), &raw)?;
        if let Some(data) = model::snapshot_data(
            u64::from_le_bytes(file.get(12..20).unwrap_or(&[0; 8]).try_into()?),
            file,
        ) {
            let mut wrapped = vec![1u8];
            wrapped.extend_from_slice(data);
            write(&snap, &format!("store-data-{i}"), &wrapped)?;
        }
    }
    let mut state = SystemState::new();
    for stored in clean_log(5).1 {
        state.apply(&stored);
    }
    let mut at5 = vec![1u8];
    at5.extend_from_slice(&state.to_snapshot()?.data);
    write(&snap, "state-at-5", &at5)?;
    let mut file5 = vec![0u8];
    file5.extend_from_slice(&model::snapshot_file(5, &state.to_snapshot()?.data));
    write(&snap, "file-at-5", &file5)?;

    // Jobs files.
    let jobs = root.join("jobs_lines");
    write(
        &jobs,
        "full",
        b"{\"id\": \"build\", \"cmd\": \"make\", \"priority\": \"high\", \"max_attempts\": 3, \"timeout_ms\": 60000}\n\n{\"id\": \"test\", \"cmd\": \"make test\"}\n",
    )?;
    write(&jobs, "array", b"[\"1Ia\",\"priority\"]\n")?;
    write(
        &jobs,
        "duplicate",
        b"{\"id\":\"a\",\"cmd\":\"true\"}\n{\"id\":\"a\",\"cmd\":\"false\"}\n",
    )?;
    write(
        &jobs,
        "timeout",
        b"{\"id\":\"a\",\"cmd\":\"true\",\"timeout_ms\":18446744073709551}\n",
    )?;

    // Positional events, from the real log's records: revision 1 (the
    // first byte), and two of a newer revision (an unknown tag; a known
    // event with a trailing field).
    let positional = root.join("event_positional");
    for (i, (_, bytes)) in segments.iter().enumerate() {
        let mut at = model::SEGMENT_HEADER_LEN;
        while let Some(record) = model::frame_at(bytes, at) {
            let mut input = vec![1u8];
            input.extend_from_slice(&record.payload);
            write(&positional, &format!("segment-{i}-seq-{}", record.seq), &input)?;
            at = record.end;
        }
    }
    write(&positional, "future-tag", &[2, 99, 1, 2, 3])?;
    write(&positional, "future-field", &[2, 12, 7, 1])?;

    // Events, from the real log: JSON and MessagePack.
    let json = root.join("event_json");
    let msgpack = root.join("event_msgpack");
    for (i, event) in events.iter().enumerate() {
        write(&json, &format!("event-{i}"), &serde_json::to_vec(event)?)?;
        write(&msgpack, &format!("event-{i}"), &model::event_bytes(event))?;
    }
    let stored = StoredEvent {
        seq: 7,
        timestamp: Timestamp::from_micros(1_700_000_000_000_000),
        event: events[2].clone(),
    };
    write(&json, "stored", &serde_json::to_vec(&stored)?)?;
    write(
        &msgpack,
        "future-kind",
        &rmp_serde::to_vec_named(
            &serde_json::json!({"event": "task:paused", "data": {"task_id": 7}}),
        )?,
    )?;
    Ok(())
}
