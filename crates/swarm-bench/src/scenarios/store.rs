//! The event store alone: in-memory appends, fsync'd file appends from 64
//! concurrent appenders (group commit), replay of a long log, replay from a
//! snapshot of that log (every task finished), and replay from a snapshot of
//! [`LIVE_TASKS`] live tasks plus a short tail (`replay_from_snapshot_ms`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;
use swarm::event::{TaskAssigned, TaskCompleted, TaskCreated};
use swarm::{AgentId, Event, EventStore, Payload, Priority, Task};
use swarm_store::{Durability, FileStore, FileStoreOptions, MemoryStore, SystemState};

use super::{Result, ms};
use crate::sys::{median, r3};
use crate::{Options, Outcome};

const APPENDERS: usize = 64;
/// Live (pending) tasks in the snapshot of `replay_from_snapshot_ms`.
const LIVE_TASKS: u64 = 100_000;
/// Tasks of that snapshot assigned and completed in the tail after it (two
/// events each).
const TAIL_TASKS: u64 = 500;

pub(crate) async fn run(options: &Options) -> Result<Outcome> {
    let quick = options.quick;
    let memory_events = if quick { 400_000 } else { 2_000_000 };
    let fsync_for = if quick {
        Duration::from_secs(3)
    } else {
        Duration::from_secs(10)
    };
    let replay_events: u64 = if quick { 300_000 } else { 1_000_000 };
    std::fs::create_dir_all(&options.work_dir).map_err(|e| e.to_string())?;
    let dir = tempfile::Builder::new()
        .prefix("swarm-bench-store")
        .tempdir_in(&options.work_dir)
        .map_err(|e| {
            format!(
                "cannot make a directory in {}: {e}",
                options.work_dir.display()
            )
        })?;

    let template = completed_event();
    let memory = memory_appends(memory_events, &template).await?;
    let (fsync_rate, fsync_total, hist) =
        fsync_appends(&dir.path().join("fsync"), fsync_for, &template).await?;
    let sync = fdatasync_times(
        &dir.path().join("fdatasync"),
        if quick { 200 } else { 1000 },
    )?;
    // 64 appenders, each waiting for its own append to be on disk: at most
    // 64 appends per flush, whatever the batching.
    let fsync_limit = APPENDERS as f64 / sync.median_s;
    let (write_s, replay_s, snapshot_ms, snapshot_bytes, tasks) =
        replay(&dir.path().join("replay"), replay_events).await?;
    let live = replay_live(&dir.path().join("live"), if quick { 3 } else { 7 }).await?;

    let values = json!({
        "memory_appends_per_sec": r3(memory),
        "file_fsync_appends_per_sec": r3(fsync_rate),
        "fsync_limit_appends_per_sec": r3(fsync_limit),
        "fsync_ratio": r3(fsync_rate / fsync_limit),
        "file_append_p99_us": r3(hist.value_at_quantile(0.99) as f64 / 1e3),
        "replay_events_per_sec": r3((tasks * 3) as f64 / replay_s),
        "replay_from_snapshot_ms": r3(live.median_ms),
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    let details = json!({
        "appenders": APPENDERS,
        "events_per_append": 1,
        "memory_events": memory_events,
        "fsync_seconds": fsync_for.as_secs_f64(),
        "fsync_appends": fsync_total,
        "file_append_p50_us": r3(hist.value_at_quantile(0.5) as f64 / 1e3),
        "file_append_max_us": r3(hist.max() as f64 / 1e3),
        "fdatasync_p50_us": r3(sync.median_s * 1e6),
        "fdatasync_p99_us": r3(sync.p99_s * 1e6),
        "fdatasync_samples": sync.samples,
        "fsync_limit": "the disk's own bound for the 64 single-event appenders: 64 / the median time of one fdatasync after a 4 KiB append to a file in the same directory, measured in this run; fsync_ratio is file_fsync_appends_per_sec over it",
        "file_dir": dir.path().display().to_string(),
        "replay_events": tasks * 3,
        "replay_tasks": tasks,
        "replay_log_write_s": r3(write_s),
        "replay_mix": "per task: task:created, task:assigned, task:completed",
        "finished_snapshot_bytes": snapshot_bytes,
        "replay_from_finished_snapshot_ms": r3(snapshot_ms),
        "replay_from_finished_snapshot": "snapshot of the replay log at its last event (every task completed; the state keeps the default retention window of 10 000 finished tasks, the counters count all), then SystemState::replay on a reopened store, once",
        "live_snapshot_tasks": LIVE_TASKS,
        "live_snapshot_bytes": live.snapshot_bytes,
        "live_tail_events": TAIL_TASKS * 2,
        "replay_from_snapshot_ms_rounds": live.rounds_ms.iter().copied().map(r3).collect::<Vec<_>>(),
        "replay_from_snapshot": "SystemState::replay on a reopened store holding a snapshot of 100 000 pending tasks (16-byte payloads) and a tail of 1 000 events after it (500 of them assigned and completed); median of the rounds",
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    Ok(Outcome {
        values,
        details,
        series: serde_json::Map::new(),
    })
}

/// How long one `fdatasync` takes here.
struct SyncTimes {
    median_s: f64,
    p99_s: f64,
    samples: usize,
}

/// Appends 4 KiB (about one group commit of 64 events) to a file in `dir` and
/// `fdatasync`s it, `n` times: the disk's own time per flush, which bounds
/// appenders that each wait for their append to be on disk.
fn fdatasync_times(dir: &std::path::Path, n: usize) -> Result<SyncTimes> {
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("probe");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let block = [0x5au8; 4096];
    let mut times = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        file.write_all(&block)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let started = Instant::now();
        file.sync_data()
            .map_err(|e| format!("fdatasync {}: {e}", path.display()))?;
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Ok(SyncTimes {
        median_s: at(0.5).max(1e-9),
        p99_s: at(0.99),
        samples: times.len(),
    })
}

/// What [`replay_live`] measured.
struct LiveReplay {
    median_ms: f64,
    rounds_ms: Vec<f64>,
    snapshot_bytes: usize,
}

/// Writes [`LIVE_TASKS`] `task:created` events, snapshots the state they
/// replay to, appends the tail, then times `SystemState::replay` on a
/// reopened store `rounds` times.
async fn replay_live(dir: &std::path::Path, rounds: usize) -> Result<LiveReplay> {
    let options = FileStoreOptions::default().durability(Durability::None);
    let store = FileStore::open_with(dir, options.clone()).map_err(|e| e.to_string())?;
    let kind: Arc<str> = Arc::from("live");
    let mut ids = Vec::with_capacity(TAIL_TASKS as usize);
    let mut batch = Vec::with_capacity(5000);
    for i in 0..LIVE_TASKS {
        let mut payload = [0u8; 16];
        payload[..8].copy_from_slice(&i.to_le_bytes());
        let task = Task::builder(Arc::clone(&kind))
            .priority(Priority::from_level((i % 4) as usize).unwrap_or(Priority::Normal))
            .payload(Payload::from(payload.to_vec()))
            .build()
            .map_err(|e| e.to_string())?;
        if i < TAIL_TASKS {
            ids.push((task.id(), task.priority()));
        }
        batch.push(TaskCreated { task }.into());
        if batch.len() >= 5000 {
            store
                .append(std::mem::take(&mut batch), None)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    if !batch.is_empty() {
        store.append(batch, None).await.map_err(|e| e.to_string())?;
    }
    let state = SystemState::replay(&store)
        .await
        .map_err(|e| e.to_string())?;
    let snapshot = state.to_snapshot().map_err(|e| e.to_string())?;
    let snapshot_bytes = snapshot.data.len();
    store
        .save_snapshot(snapshot)
        .await
        .map_err(|e| e.to_string())?;
    drop(state);
    let mut tail = Vec::with_capacity(ids.len() * 2);
    for (i, (task_id, priority)) in ids.iter().copied().enumerate() {
        let agent_id = AgentId::new(i as u64 % 8);
        tail.push(
            TaskAssigned {
                task_id,
                agent_id,
                attempt: 1,
                priority,
                queue_wait: Duration::from_micros(40),
            }
            .into(),
        );
        tail.push(
            TaskCompleted {
                task_id,
                agent_id,
                attempt: 1,
                duration: Duration::from_micros(900),
                output: Payload::empty(),
            }
            .into(),
        );
    }
    store.append(tail, None).await.map_err(|e| e.to_string())?;
    store.close().await.map_err(|e| e.to_string())?;

    let store = FileStore::open_with(dir, options).map_err(|e| e.to_string())?;
    let mut rounds_ms = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        let started = Instant::now();
        let state = SystemState::replay(&store)
            .await
            .map_err(|e| e.to_string())?;
        rounds_ms.push(ms(started.elapsed()));
        let pending = state.count(swarm::TaskStatus::Pending) as u64;
        let completed = state.count(swarm::TaskStatus::Completed) as u64;
        if pending != LIVE_TASKS - TAIL_TASKS || completed != TAIL_TASKS {
            return Err(format!(
                "the live snapshot replayed to {pending} pending and {completed} completed tasks, not {} and {TAIL_TASKS}",
                LIVE_TASKS - TAIL_TASKS
            ));
        }
    }
    store.close().await.map_err(|e| e.to_string())?;
    let median_ms = median(&mut rounds_ms.clone());
    Ok(LiveReplay {
        median_ms,
        rounds_ms,
        snapshot_bytes,
    })
}

fn completed_event() -> Event {
    TaskCompleted {
        task_id: swarm::TaskId::generate(),
        agent_id: AgentId::new(3),
        attempt: 1,
        duration: Duration::from_micros(1234),
        output: Payload::empty(),
    }
    .into()
}

async fn memory_appends(events: usize, template: &Event) -> Result<f64> {
    let store = Arc::new(MemoryStore::new());
    let per = events / APPENDERS;
    let started = Instant::now();
    let mut joins = Vec::new();
    for _ in 0..APPENDERS {
        let store = Arc::clone(&store);
        let event = template.clone();
        joins.push(tokio::spawn(async move {
            for _ in 0..per {
                store.append(vec![event.clone()], None).await?;
            }
            Ok::<(), swarm_store::StoreError>(())
        }));
    }
    for join in joins {
        join.await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    Ok((per * APPENDERS) as f64 / started.elapsed().as_secs_f64())
}

async fn fsync_appends(
    dir: &std::path::Path,
    run_for: Duration,
    template: &Event,
) -> Result<(f64, u64, Histogram<u64>)> {
    let store = Arc::new(
        FileStore::open_with(
            dir,
            FileStoreOptions::default().durability(Durability::Fsync),
        )
        .map_err(|e| e.to_string())?,
    );
    let started = Instant::now();
    let deadline = started + run_for;
    let mut joins = Vec::new();
    for _ in 0..APPENDERS {
        let store = Arc::clone(&store);
        let event = template.clone();
        joins.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
                .map_err(|e| e.to_string())?;
            while Instant::now() < deadline {
                let t = Instant::now();
                store
                    .append(vec![event.clone()], None)
                    .await
                    .map_err(|e| e.to_string())?;
                hist.saturating_record(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
            }
            Ok::<Histogram<u64>, String>(hist)
        }));
    }
    let mut total =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())?;
    for join in joins {
        let hist = join.await.map_err(|e| e.to_string())??;
        total.add(&hist).map_err(|e| e.to_string())?;
    }
    let elapsed = started.elapsed();
    store.close().await.map_err(|e| e.to_string())?;
    Ok((
        total.len() as f64 / elapsed.as_secs_f64(),
        total.len(),
        total,
    ))
}

/// Writes `events` events, then replays them from a reopened store, then
/// snapshots and replays again. Returns (write s, replay s, snapshot replay ms,
/// snapshot bytes, tasks).
async fn replay(dir: &std::path::Path, events: u64) -> Result<(f64, f64, f64, usize, u64)> {
    let options = FileStoreOptions::default().durability(Durability::None);
    let tasks = events / 3;
    let write_started = Instant::now();
    {
        let store = FileStore::open_with(dir, options.clone()).map_err(|e| e.to_string())?;
        let kind: Arc<str> = Arc::from("replayed");
        let mut batch = Vec::with_capacity(3000);
        for i in 0..tasks {
            let task = Task::builder(Arc::clone(&kind))
                .priority(Priority::Normal)
                .build()
                .map_err(|e| e.to_string())?;
            let task_id = task.id();
            let agent_id = AgentId::new(i % 8);
            batch.push(TaskCreated { task }.into());
            batch.push(
                TaskAssigned {
                    task_id,
                    agent_id,
                    attempt: 1,
                    priority: Priority::Normal,
                    queue_wait: Duration::from_micros(40),
                }
                .into(),
            );
            batch.push(
                TaskCompleted {
                    task_id,
                    agent_id,
                    attempt: 1,
                    duration: Duration::from_micros(900),
                    output: Payload::empty(),
                }
                .into(),
            );
            if batch.len() >= 3000 {
                store
                    .append(std::mem::take(&mut batch), None)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        if !batch.is_empty() {
            store.append(batch, None).await.map_err(|e| e.to_string())?;
        }
        store.close().await.map_err(|e| e.to_string())?;
    }
    let write_s = write_started.elapsed().as_secs_f64();

    let store = FileStore::open_with(dir, options.clone()).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let state = SystemState::replay(&store)
        .await
        .map_err(|e| e.to_string())?;
    let replay_s = started.elapsed().as_secs_f64();
    if state.last_seq() + 1 < tasks * 3 {
        return Err(format!(
            "replay stopped at sequence {} of {}",
            state.last_seq(),
            tasks * 3
        ));
    }
    let snapshot = state.to_snapshot().map_err(|e| e.to_string())?;
    let snapshot_bytes = snapshot.data.len();
    store
        .save_snapshot(snapshot)
        .await
        .map_err(|e| e.to_string())?;
    store.close().await.map_err(|e| e.to_string())?;
    drop(state);

    let store = FileStore::open_with(dir, options).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let state = SystemState::replay(&store)
        .await
        .map_err(|e| e.to_string())?;
    let snapshot_ms = ms(started.elapsed());
    // The state keeps the default retention window of finished tasks; the
    // counters still count every one.
    if state.counters().tasks_completed != tasks {
        return Err(format!(
            "the snapshot replay counts {} completed tasks of {tasks}",
            state.counters().tasks_completed
        ));
    }
    store.close().await.map_err(|e| e.to_string())?;
    Ok((write_s, replay_s, snapshot_ms, snapshot_bytes, tasks))
}
