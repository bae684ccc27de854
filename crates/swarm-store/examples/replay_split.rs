//! Where the time of a replay goes: the bench's log (per task `task:created`,
//! `task:assigned`, `task:completed`) replayed four ways: the segment files
//! read and their records checksummed only; read and decoded
//! (`FileLogReader`, no state); the decoded events applied to a
//! `SystemState` only; and the whole `SystemState::replay`. A measurement
//! for the notes, not a benchmark.
//!
//! ```text
//! cargo run --release -p swarm-store --example replay_split -- [TASKS] [ROUNDS]
//! ```
//!
//! Defaults: 333 334 tasks (1 000 002 events), 3 rounds (medians printed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_core::event::{TaskAssigned, TaskCompleted, TaskCreated};
use swarm_core::{AgentId, Payload, Priority, Task};
use swarm_store::{
    Durability, EventStore, FileLogReader, FileStore, FileStoreOptions, StoredEvent, SystemState,
};

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Reads every segment and checks every record's checksum, by the
/// documented framing (length, CRC32C of length and body).
fn read_and_checksum(dir: &std::path::Path) -> std::io::Result<u64> {
    let mut records = 0;
    let mut paths: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    paths.sort();
    for path in paths {
        let b = std::fs::read(&path)?;
        let mut at = 28;
        while at + 8 <= b.len() {
            let len = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize;
            let crc = u32::from_le_bytes([b[at + 4], b[at + 5], b[at + 6], b[at + 7]]);
            let body = &b[at + 8..at + 8 + len];
            let want = crc32c::crc32c_append(crc32c::crc32c(&b[at..at + 4]), body);
            if want != crc {
                return Err(std::io::Error::other(format!("bad record at {at}")));
            }
            records += 1;
            at += 8 + len;
        }
    }
    Ok(records)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let tasks: u64 = args.next().map_or(Ok(333_334), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(3), |a| a.parse())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let options = FileStoreOptions::default().durability(Durability::None);
    rt.block_on(async {
        let store = FileStore::open_with(dir.path(), options.clone())?;
        let kind: Arc<str> = Arc::from("replayed");
        let mut batch = Vec::with_capacity(3000);
        for i in 0..tasks {
            let task = Task::builder(Arc::clone(&kind)).build()?;
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
                store.append(std::mem::take(&mut batch), None).await?;
            }
        }
        if !batch.is_empty() {
            store.append(batch, None).await?;
        }
        store.close().await?;
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    let events = tasks * 3;
    let bytes: u64 = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "{events} events, {bytes} bytes of log ({:.1} bytes/event)",
        bytes as f64 / events as f64
    );

    let (mut crc, mut decode, mut apply, mut whole) = (vec![], vec![], vec![], vec![]);
    let reader = FileLogReader::open(dir.path())?;
    let mut decoded: Vec<StoredEvent> = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        assert_eq!(read_and_checksum(dir.path())?, events);
        crc.push(t.elapsed());

        let t = Instant::now();
        decoded = reader.read(1).collect::<Result<_, _>>()?;
        decode.push(t.elapsed());
        assert_eq!(decoded.len() as u64, events);

        let t = Instant::now();
        let mut state = SystemState::new();
        for stored in &decoded {
            state.apply(stored);
        }
        apply.push(t.elapsed());
        assert_eq!(state.last_seq(), events);
        drop(state);

        let store = FileStore::open_with(dir.path(), options.clone())?;
        let t = Instant::now();
        let state = rt.block_on(SystemState::replay(&store))?;
        whole.push(t.elapsed());
        assert_eq!(state.last_seq(), events);
        drop(state);
        rt.block_on(store.close())?;
    }
    drop(decoded);
    let per = |d: Duration| d.as_nanos() as f64 / events as f64;
    let (crc, decode, apply, whole) = (median(crc), median(decode), median(apply), median(whole));
    println!(
        "read + checksum only:        {:>8.1} ms  {:>6.0} ns/event",
        crc.as_secs_f64() * 1e3,
        per(crc)
    );
    println!(
        "read + checksum + decode:    {:>8.1} ms  {:>6.0} ns/event",
        decode.as_secs_f64() * 1e3,
        per(decode)
    );
    println!(
        "apply only (decoded events): {:>8.1} ms  {:>6.0} ns/event",
        apply.as_secs_f64() * 1e3,
        per(apply)
    );
    println!(
        "SystemState::replay:         {:>8.1} ms  {:>6.0} ns/event  {:.2} M events/s",
        whole.as_secs_f64() * 1e3,
        per(whole),
        events as f64 / whole.as_secs_f64() / 1e6
    );
    Ok(())
}
