//! Bytes per queued task, measured directly in the scheduler's queue.
//!
//! The swarm's global queue holds the scheduler's own entry type (a task, the
//! moment its wait began, its place in the order of arrival); this scenario
//! fills that queue, with those entries (`swarm::GlobalQueueProbe`), with
//! tasks carrying a unique 16-byte payload and measures the growth of the
//! resident set (`/proc/self/statm`), minus the payload bytes. What remains
//! is the entry itself (`details.size_of_queued_entry`) and the payload's
//! allocation header (its `Arc` counts and the allocator's rounding,
//! `details.payload_allocation_overhead_bytes`).
//!
//! Why the queue and not a whole swarm with blocked agents: a submitted task
//! also costs its `TaskHandle` channel, its entry in the live-task map, and its
//! events in the store and the bus. Those are the cost of a *submitted* task,
//! not of a *queued* one, and with a MemoryStore they would dominate (every
//! event is kept). `details.swarm_bytes_per_pending_task` measures that
//! whole-swarm figure at a smaller count, for comparison.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use swarm::{GlobalQueueProbe, Payload, Priority, SimConfig, Swarm, Task};
use swarm_core::rng::SplitMix64;

use super::Result;
use crate::sys::{r3, rss_bytes};
use crate::{Options, Outcome};

const PAYLOAD: usize = 16;

pub(crate) fn run(options: &Options) -> Result<Outcome> {
    let tasks: usize = if options.quick { 1_000_000 } else { 10_000_000 };
    let kind: Arc<str> = Arc::from("queued");
    let mut rng = SplitMix64::new(5);
    let mut queue = GlobalQueueProbe::new();
    // Reading the clock once before the baseline reading keeps its setup out
    // of the delta.
    let _ = tokio::time::Instant::now();
    let before = rss_bytes();
    for i in 0..tasks {
        let priority = Priority::from_level((rng.next_u64() % 4) as usize).unwrap_or(Priority::Low);
        let mut payload = [0u8; PAYLOAD];
        payload[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let task = Task::builder(Arc::clone(&kind))
            .priority(priority)
            .payload(Payload::from(payload.to_vec()))
            .build()
            .map_err(|e| e.to_string())?;
        queue.push(task);
    }
    let after = rss_bytes();
    let queued = queue.len();
    if queued != tasks {
        return Err(format!(
            "the unbounded queue holds {queued} of {tasks} tasks"
        ));
    }
    let per_task = after.saturating_sub(before) as f64 / tasks as f64;
    drop(queue);
    let entry = GlobalQueueProbe::entry_size();

    let swarm_tasks = if options.quick { 50_000 } else { 200_000 };
    let swarm_per_task = swarm_pending_bytes(swarm_tasks)?;

    let values = json!({
        "bytes_per_queued_task": r3(per_task - PAYLOAD as f64),
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    let details = json!({
        "queued_tasks": queued,
        "payload_bytes": PAYLOAD,
        "rss_delta_bytes": after.saturating_sub(before),
        "rss_bytes_per_task_with_payload": r3(per_task),
        "size_of_queued_entry": entry,
        "size_of_task": std::mem::size_of::<Task>(),
        "payload_allocation_overhead_bytes": r3(per_task - PAYLOAD as f64 - entry as f64),
        "where": "swarm::GlobalQueueProbe: the scheduler's global queue (strict) holding its own entry type",
        "swarm_pending_tasks": swarm_tasks,
        "swarm_bytes_per_pending_task": r3(swarm_per_task),
        "swarm_measure": "whole swarm, 1 agent blocked on a 1 h task, MemoryStore, metrics on: RSS delta per submitted pending task (queue entry + handle + live map + stored events), payload included",
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

/// RSS growth per pending task of a whole swarm whose only agent is busy.
fn swarm_pending_bytes(tasks: usize) -> Result<f64> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(super::workers())
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let swarm = Swarm::builder()
            .sim_agents(1, SimConfig::fixed(Duration::from_secs(3600)))
            .autoscale(false)
            .default_timeout(None)
            .memory_store()
            .build()
            .await
            .map_err(|e| e.to_string())?;
        let kind: Arc<str> = Arc::from("pending");
        // The blocker, then a warm-up batch so lazily grown structures exist.
        let mut handles = Vec::new();
        handles.extend(
            swarm
                .submit_batch(vec![
                    Task::builder(Arc::clone(&kind))
                        .build()
                        .map_err(|e| e.to_string())?,
                ])
                .await
                .map_err(|e| e.to_string())?,
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = rss_bytes();
        let mut left = tasks;
        while left > 0 {
            let n = left.min(4096);
            let batch = (0..n)
                .map(|i| {
                    Task::builder(Arc::clone(&kind))
                        .payload(Payload::from((i as u128).to_le_bytes().to_vec()))
                        .build()
                        .map_err(|e| e.to_string())
                })
                .collect::<Result<Vec<_>>>()?;
            handles.extend(swarm.submit_batch(batch).await.map_err(|e| e.to_string())?);
            left -= n;
        }
        // Let the journal writer store everything.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_bytes();
        let _ = swarm.shutdown(Duration::from_millis(10)).await;
        drop(handles);
        Ok(after.saturating_sub(before) as f64 / tasks as f64)
    })
}
