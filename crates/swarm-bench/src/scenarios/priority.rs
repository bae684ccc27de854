//! A backlog of 100 000 low-priority tasks, then one critical task: how long
//! the critical one waits for an agent (acceptance → start). Repeated a few
//! times behind the same backlog; the median is reported.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use swarm::{Priority, SimConfig, Swarm, Task};

use super::{Result, Waits, ms};
use crate::sys::{median, r3};
use crate::{Options, Outcome};

const AGENTS: usize = 2;
const TASK_DURATION: Duration = Duration::from_millis(5);
const BACKLOG: usize = 100_000;

pub(crate) async fn run(options: &Options) -> Result<Outcome> {
    let trials = if options.quick { 5 } else { 15 };
    let swarm = Swarm::builder()
        .sim_agents(AGENTS, SimConfig::fixed(TASK_DURATION))
        .autoscale(false)
        .memory_store()
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let waits = Waits::default();
    let _subscription = waits.attach(&swarm);
    let kind: Arc<str> = Arc::from("low");
    let mut left = BACKLOG;
    while left > 0 {
        let n = left.min(4096);
        let batch = (0..n)
            .map(|_| {
                Task::builder(Arc::clone(&kind))
                    .priority(Priority::Low)
                    .build()
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>>>()?;
        // Handles dropped: the tasks stay queued.
        drop(swarm.submit_batch(batch).await.map_err(|e| e.to_string())?);
        left -= n;
    }
    // Let the burst of `task:created`/`task:enqueued` events reach the store
    // first: the critical task arrives behind a standing backlog, not a burst.
    let mut stored = swarm.stats().events_stored;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = swarm.stats().events_stored;
        if now - stored < 2_000 {
            break;
        }
        stored = now;
    }
    let critical_kind: Arc<str> = Arc::from("critical");
    let mut measured = Vec::new();
    let mut backlog = Vec::new();
    for _ in 0..trials {
        backlog.push(swarm.stats().queued);
        let critical = Task::builder(Arc::clone(&critical_kind))
            .priority(Priority::Critical)
            .build()
            .map_err(|e| e.to_string())?;
        let id = critical.id();
        let handle = swarm.submit(critical).await.map_err(|e| e.to_string())?;
        if !handle.await.is_completed() {
            return Err("the critical task did not complete".into());
        }
        let wait = waits
            .find(id)
            .ok_or("no task:assigned for the critical task")?;
        measured.push(ms(wait));
        // Let a random part of a low task pass before the next trial.
        tokio::time::sleep(Duration::from_micros(1700)).await;
    }
    let report = swarm
        .shutdown(Duration::from_millis(200))
        .await
        .map_err(|e| e.to_string())?;
    let max = measured.iter().copied().fold(0.0, f64::max);
    let all: Vec<f64> = measured.iter().map(|x| r3(*x)).collect();
    let mut backlog_f: Vec<f64> = backlog.iter().map(|b| *b as f64).collect();
    let values = json!({
        "critical_wait_ms": r3(median(&mut measured)),
        "backlog": median(&mut backlog_f) as u64,
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    let details = json!({
        "agents": AGENTS,
        "task_duration_ms": ms(TASK_DURATION),
        "aim_ms": ms(TASK_DURATION) + 0.1,
        "trials": trials,
        "critical_waits_ms": all,
        "critical_wait_max_ms": r3(max),
        "backlog_submitted": BACKLOG,
        "pending_at_shutdown": report.pending,
        "measure": "task:assigned queue_wait of the critical task (acceptance → start); median of the trials",
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
