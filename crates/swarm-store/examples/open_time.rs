//! How long `FileStore::open` takes on a long log with a snapshot near its
//! end: checking only the segments from the snapshot's on (the default)
//! against checking every segment (`verify_all_on_open`, what open did
//! before lazy verification). A measurement for the notes, not a benchmark.
//!
//! ```text
//! cargo run --release -p swarm-store --example open_time -- [EVENTS] [SEGMENT_MIB]
//! ```
//!
//! Defaults: 1 000 000 events in 4 MiB segments. The log is written to a
//! temporary directory (about 150 bytes an event) and deleted at the end.

use std::time::{Duration, Instant};

use swarm_core::event::AgentRemoved;
use swarm_core::{AgentId, Event};
use swarm_store::{Durability, EventStore, FileStore, FileStoreOptions, StoreError, SystemState};

const BATCH: u64 = 1000;
const RUNS: usize = 5;

fn event(n: u64) -> Event {
    AgentRemoved {
        agent_id: AgentId::new(n % 10_000),
        reason: format!("example event {n} with a payload of ordinary size, like a task's"),
    }
    .into()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let events: u64 = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let segment_mib: u64 = args.next().map_or(Ok(4), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let options = FileStoreOptions::default()
        .durability(Durability::Buffered)
        .segment_size(segment_mib << 20);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let written = Instant::now();
    let segments = runtime.block_on(async {
        let store = FileStore::open_with(dir.path(), options.clone())?;
        let mut n = 0;
        while n < events {
            let count = BATCH.min(events - n);
            store
                .append((n..n + count).map(event).collect(), None)
                .await?;
            n += count;
        }
        // A snapshot 1 000 events before the end.
        let at = events.saturating_sub(1000).max(1);
        let state = SystemState::replay_to(&store, at).await?;
        store.save_snapshot(state.to_snapshot()?).await?;
        let segments = store.segment_paths().len();
        store.close().await?;
        Ok::<_, StoreError>(segments)
    })?;
    let bytes: u64 = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "log: {events} events, {segments} segments of {segment_mib} MiB, {:.0} MB, written in {:.1?}",
        bytes as f64 / 1e6,
        written.elapsed()
    );

    for (name, options) in [
        (
            "check every segment (verify_all_on_open)",
            options.clone().verify_all_on_open(true),
        ),
        ("check from the newest snapshot (default)", options.clone()),
    ] {
        let mut times = Vec::new();
        let mut verified = 0;
        for _ in 0..RUNS {
            let started = Instant::now();
            let store = FileStore::open_with(dir.path(), options.clone())?;
            times.push(started.elapsed());
            verified = store.open_report().segments_verified;
            drop(store);
        }
        println!(
            "open, {name}: median {:.2?} of {RUNS} (min {:.2?}), {verified} segments checked",
            median(times.clone()),
            times.iter().min().copied().unwrap_or_default()
        );
    }
    Ok(())
}
