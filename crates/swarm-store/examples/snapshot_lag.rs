//! How far the snapshotter falls behind a log appended as fast as possible:
//! task lifecycles (created, assigned, completed: 3 events a task) appended
//! in batches to a `MemoryStore` on a 2-worker runtime, with the lag (log end
//! minus newest snapshot) sampled after every append, and
//! `Snapshotter::lag_events` (what the snapshotter took from the log minus its
//! newest snapshot). A measurement for the
//! notes, not a benchmark.
//!
//! ```text
//! cargo run --release -p swarm-store --example snapshot_lag -- [EVENTS] [EVERY] [BATCH] [RATE]
//! ```
//!
//! Defaults: 1 000 000 events, a snapshot every `DEFAULT_SNAPSHOT_EVERY`
//! events (and the default time trigger), batches of 100 events, as fast as
//! possible (`RATE` 0; otherwise appends are paced to `RATE` events/s).

use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_core::event::{TaskAssigned, TaskCompleted, TaskCreated};
use swarm_core::{AgentId, Event, Priority, Task};
use swarm_store::{DEFAULT_SNAPSHOT_EVERY, EventStore, MemoryStore, Snapshotter};

/// The events of `tasks` tasks, each created, assigned and completed.
fn lifecycles(tasks: u64) -> Result<Vec<Event>, Box<dyn std::error::Error>> {
    let mut events = Vec::with_capacity(3 * tasks as usize);
    for n in 0..tasks {
        let task = Task::builder("summarize").payload(vec![0u8; 64]).build()?;
        let id = task.id();
        let agent_id = AgentId::new(n % 8);
        events.push(TaskCreated { task }.into());
        events.push(
            TaskAssigned {
                task_id: id,
                agent_id,
                attempt: 1,
                priority: Priority::Normal,
                queue_wait: Duration::from_micros(5),
            }
            .into(),
        );
        events.push(
            TaskCompleted {
                task_id: id,
                agent_id,
                attempt: 1,
                duration: Duration::from_micros(20),
                output: "done".into(),
            }
            .into(),
        );
    }
    Ok(events)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let total: u64 = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let every: u64 = args
        .next()
        .map_or(Ok(DEFAULT_SNAPSHOT_EVERY), |a| a.parse())?;
    let batch: usize = args.next().map_or(Ok(100), |a| a.parse())?;
    let rate: u64 = args.next().map_or(Ok(0), |a| a.parse())?;
    let events = lifecycles(total.div_ceil(3))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let store = Arc::new(MemoryStore::new());
        let snapshotter = Snapshotter::spawn(Arc::clone(&store), every);
        let mut max_lag = 0;
        let mut max_lag_events = 0;
        let mut lag_sum = 0u128;
        let mut samples = 0u128;
        let started = Instant::now();
        for chunk in events.chunks(batch) {
            let range = store.append(chunk.to_vec(), None).await?;
            let lag = range.end - 1 - snapshotter.last_snapshot().min(range.end - 1);
            max_lag = max_lag.max(lag);
            max_lag_events = max_lag_events.max(snapshotter.lag_events());
            lag_sum += u128::from(lag);
            samples += 1;
            if rate > 0 {
                let due = started + Duration::from_secs_f64((range.end - 1) as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
        let appended = started.elapsed();
        let last = store.last_seq().await?;
        let at_end = last - snapshotter.last_snapshot().min(last);
        let mut snapshots = 0;
        let mut at = u64::MAX;
        while let Some(s) = store.latest_snapshot(at).await? {
            snapshots += 1;
            match s.seq.checked_sub(1) {
                Some(before) => at = before,
                None => break,
            }
        }
        println!(
            "lag_events (what the snapshotter took from the log past its newest snapshot): max {max_lag_events}"
        );
        let stopping = Instant::now();
        snapshotter.stop().await?;
        println!(
            "{last} events in {:.2?} ({:.0} events/s), snapshot every {every}, batches of {batch}, rate {rate}/s (0: unpaced)",
            appended,
            last as f64 / appended.as_secs_f64()
        );
        println!(
            "lag: max {max_lag}, mean {}, at the end {at_end}; {snapshots} snapshots during the run; stop took {:.2?}",
            lag_sum / samples.max(1),
            stopping.elapsed()
        );
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
