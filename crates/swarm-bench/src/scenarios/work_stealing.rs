//! Every task (1 ms of simulated I/O) affine to agent 0 of 8: the makespan with
//! stealing on (the default threshold) and off (`steal_threshold(usize::MAX)`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use swarm::{AgentId, SimConfig, Swarm, Task};

use super::{Result, ms, shutdown};
use crate::sys::{median, r3};
use crate::{Options, Outcome};

const AGENTS: usize = 8;
const TASK_DURATION: Duration = Duration::from_millis(1);

pub(crate) async fn run(options: &Options) -> Result<Outcome> {
    let (tasks, rounds) = if options.quick { (800, 1) } else { (2_000, 3) };
    let (mut on, mut off) = (Vec::new(), Vec::new());
    let mut steals = Vec::new();
    for _ in 0..rounds {
        let (makespan, stolen) = makespan(tasks, 3).await?;
        on.push(makespan);
        steals.push(stolen);
        off.push(makespan_off(tasks).await?);
    }
    let settings = json!({
        "agents": AGENTS,
        "tasks": tasks,
        "task_duration_ms": ms(TASK_DURATION),
        "rounds": rounds,
        "steal_on_rounds_ms": on.iter().map(|x| r3(*x)).collect::<Vec<_>>(),
        "steal_off_rounds_ms": off.iter().map(|x| r3(*x)).collect::<Vec<_>>(),
        "stolen_tasks": steals,
        "steal_threshold_on": 3,
        "ideal_speedup": AGENTS,
        "measure": "submit_batch of every task (affinity agent 0, not pinned) → last handle resolved; median of rounds",
    });
    let (on, off) = (median(&mut on), median(&mut off));
    let values = json!({
        "makespan_ms_steal_on": r3(on),
        "makespan_ms_steal_off": r3(off),
        "speedup": r3(off / on),
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    let details = settings.as_object().cloned().unwrap_or_default();
    Ok(Outcome {
        values,
        details,
        series: serde_json::Map::new(),
    })
}

async fn makespan_off(tasks: usize) -> Result<f64> {
    makespan(tasks, usize::MAX).await.map(|(m, _)| m)
}

async fn makespan(tasks: usize, threshold: usize) -> Result<(f64, u64)> {
    let swarm = Swarm::builder()
        .sim_agents(AGENTS, SimConfig::fixed(TASK_DURATION))
        .autoscale(false)
        .steal_threshold(threshold)
        .memory_store()
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let kind: Arc<str> = Arc::from("io");
    let batch = (0..tasks)
        .map(|_| {
            Task::builder(Arc::clone(&kind))
                .affinity(AgentId::new(0))
                .build()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>>>()?;
    let started = Instant::now();
    let handles = swarm.submit_batch(batch).await.map_err(|e| e.to_string())?;
    for handle in handles {
        if !handle.await.is_completed() {
            return Err("an I/O task did not complete".into());
        }
    }
    let elapsed = started.elapsed();
    let stolen = swarm.stats().stolen_tasks;
    shutdown(&swarm).await?;
    Ok((ms(elapsed), stolen))
}
