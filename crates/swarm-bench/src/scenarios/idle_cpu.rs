//! 8 idle agents: process CPU per second of wall time (getrusage deltas) and
//! scheduler wake-ups, event mode against the polling baseline.

use std::time::Duration;

use serde_json::json;
use swarm::{SchedulerMode, SimConfig, Swarm};

use super::{Result, ms, shutdown};
use crate::sys::{CpuMeter, r3};
use crate::{Options, Outcome};

const AGENTS: usize = 8;
/// The polling interval of the time-scaled seed comparison (2 s ÷ 20).
const POLL_INTERVAL: Duration = Duration::from_millis(100);

pub(crate) async fn run(options: &Options) -> Result<Outcome> {
    let period = if options.quick {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(10)
    };
    let event = idle(SchedulerMode::Event, period).await?;
    let polling = idle(
        SchedulerMode::Polling {
            interval: POLL_INTERVAL,
            batch: 10,
        },
        period,
    )
    .await?;
    let values = json!({
        "event_cpu_ms_per_s": r3(event.0),
        "polling_cpu_ms_per_s": r3(polling.0),
        "event_wakeups": event.1,
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    let details = json!({
        "agents": AGENTS,
        "period_s": period.as_secs_f64(),
        "polling_interval_ms": ms(POLL_INTERVAL),
        "polling_wakeups": polling.1,
        "measure": "getrusage(RUSAGE_SELF) user+system delta over the idle period, whole process (tokio runtime, metrics recorder, store writer, snapshotter)",
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

async fn idle(mode: SchedulerMode, period: Duration) -> Result<(f64, u64)> {
    let swarm = Swarm::builder()
        .sim_agents(AGENTS, SimConfig::instant())
        .mode(mode)
        .autoscale(false)
        .memory_store()
        .build()
        .await
        .map_err(|e| e.to_string())?;
    // Let start-up work (agent loops, the first snapshot check) finish.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let wakeups = swarm.stats().wakeups;
    let meter = CpuMeter::start();
    tokio::time::sleep(period).await;
    let (cpu, wall) = meter.read();
    let wakeups = swarm.stats().wakeups - wakeups;
    shutdown(&swarm).await?;
    Ok((ms(cpu) / wall.as_secs_f64(), wakeups))
}
