//! Fair share between tenants: 4 agents run 1 ms tasks; tenant "a" queues a
//! large backlog (100 000; quick: 10 000), then tenant "b" submits 100 tasks.
//! How long b's tasks wait (acceptance → start, p99), with
//! `SwarmBuilder::fair_share(true)` and, for comparison, without.
//!
//! With fair share, deficit round robin alternates a and b within the level,
//! so b's i-th task starts after about 2·i starts: 100 tasks over 4 agents of
//! 1 ms are done in about 50 ms. Without it, b waits for a's whole backlog.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use swarm::{SimConfig, Swarm, Task};

use super::{Result, Waits, ms, percentile};
use crate::sys::r3;
use crate::{Options, Outcome};

const AGENTS: usize = 4;
const TASK_DURATION: Duration = Duration::from_millis(1);
const SMALL: usize = 100;
pub(crate) const AIM_MS: f64 = 100.0;

pub(crate) async fn run(options: &Options) -> Result<Outcome> {
    let backlog = if options.quick { 10_000 } else { 100_000 };
    let on = small_tenant_waits(true, backlog).await?;
    let off = small_tenant_waits(false, backlog).await?;
    let values = json!({
        "small_tenant_p99_wait_ms": r3(on.p99_ms),
        "small_tenant_p99_wait_ms_off": r3(off.p99_ms),
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    let details = json!({
        "agents": AGENTS,
        "task_duration_ms": ms(TASK_DURATION),
        "big_tenant_backlog": backlog,
        "small_tenant_tasks": SMALL,
        "aim_ms": AIM_MS,
        "small_tenant_p99_start_rank": on.p99_start_rank,
        "small_tenant_p99_start_rank_off": off.p99_start_rank,
        // What a "1 ms" task really took here: b's last wait without fair
        // share is a's whole backlog over the agents.
        "observed_task_ms": r3(off.max_ms * AGENTS as f64 / off.backlog_at_arrival.max(1) as f64),
        "small_tenant_max_wait_ms": r3(on.max_ms),
        "small_tenant_max_wait_ms_off": r3(off.max_ms),
        "big_tenant_queued_when_small_arrived": on.backlog_at_arrival,
        "big_tenant_queued_when_small_arrived_off": off.backlog_at_arrival,
        "measure": "task:assigned queue_wait of the small tenant's tasks (acceptance → start), p99; fair share on, then off",
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

struct Measured {
    p99_ms: f64,
    p99_start_rank: f64,
    max_ms: f64,
    backlog_at_arrival: u64,
}

async fn small_tenant_waits(fair: bool, backlog: usize) -> Result<Measured> {
    let swarm = Swarm::builder()
        .sim_agents(AGENTS, SimConfig::fixed(TASK_DURATION))
        .autoscale(false)
        .memory_store()
        .fair_share(fair)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let waits = Waits::default();
    let _subscription = waits.attach(&swarm);
    let kind: Arc<str> = Arc::from("work");
    let big: Arc<str> = Arc::from("a");
    let small: Arc<str> = Arc::from("b");
    let keyed = |key: &Arc<str>| {
        Task::builder(Arc::clone(&kind))
            .key(Arc::clone(key))
            .build()
            .map_err(|e| e.to_string())
    };
    let mut left = backlog;
    while left > 0 {
        let n = left.min(4096);
        let batch = (0..n).map(|_| keyed(&big)).collect::<Result<Vec<_>>>()?;
        // Handles dropped: the tasks stay queued.
        drop(swarm.submit_batch(batch).await.map_err(|e| e.to_string())?);
        left -= n;
    }
    let backlog_at_arrival = swarm.stats().queued;
    // From here on, only the starts since b arrived.
    drop(waits.take());
    let batch = (0..SMALL)
        .map(|_| keyed(&small))
        .collect::<Result<Vec<_>>>()?;
    let ids: Vec<_> = batch.iter().map(Task::id).collect();
    let handles = swarm.submit_batch(batch).await.map_err(|e| e.to_string())?;
    for handle in handles {
        if !handle.await.is_completed() {
            return Err("a task of the small tenant did not complete".into());
        }
    }
    let order = waits.take();
    let wait_of = |id: &swarm::TaskId| {
        order
            .iter()
            .find(|(t, _, _)| t == id)
            .map(|(_, _, w)| ms(*w))
    };
    let mut measured = ids
        .iter()
        .map(wait_of)
        .collect::<Option<Vec<f64>>>()
        .ok_or("no task:assigned for a task of the small tenant")?;
    // Machine-independent: how many starts (either tenant) since b arrived
    // came before each of b's tasks. Fair share: about 2·i for b's i-th.
    let mut ranks: Vec<f64> = order
        .iter()
        .enumerate()
        .filter(|(_, (id, _, _))| ids.contains(id))
        .map(|(rank, _)| rank as f64)
        .collect();
    // The rest of the big backlog stays pending: not part of the measure.
    swarm
        .shutdown(Duration::from_millis(100))
        .await
        .map_err(|e| e.to_string())?;
    let max_ms = measured.iter().copied().fold(0.0, f64::max);
    Ok(Measured {
        p99_start_rank: percentile(&mut ranks, 0.99),
        p99_ms: percentile(&mut measured, 0.99),
        max_ms,
        backlog_at_arrival,
    })
}
