//! The reference's experiment, time-scaled: N agents, Poisson arrivals,
//! exponential task durations, polling every 2 s (before scaling) against
//! event-driven dispatch.
//!
//! Reference time (unscaled): 4 agents, 150 tasks/min offered (Poisson), task
//! durations exponential with a 1 s mean, the poller waking every 2 s and
//! taking 10 tasks. Everything runs [`SCALE`] times faster; latencies and
//! throughput are reported converted back to reference time (ms × SCALE,
//! tasks/min ÷ SCALE). CPU percent is what the process used during the
//! compressed run (SCALE times the reference's event rate).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use swarm::{DurationDist, SchedulerMode, SimConfig, Swarm};
use swarm_core::rng::SplitMix64;

use super::{Result, Waits, ms, task};
use crate::sys::{CpuMeter, exp, r3};
use crate::{Options, Outcome};

/// How many times faster than the reference the experiment runs.
pub(crate) const SCALE: f64 = 20.0;
const AGENTS: usize = 4;
const OFFERED_PER_MIN: f64 = 150.0;
const MEAN_DURATION: Duration = Duration::from_secs(1);
const POLL_INTERVAL: Duration = Duration::from_secs(2);
const POLL_BATCH: usize = 10;

fn scaled(d: Duration) -> Duration {
    d.div_f64(SCALE)
}

pub(crate) async fn run(options: &Options) -> Result<Outcome> {
    // Scaled run length per mode; twice this in total.
    let window = if options.quick {
        Duration::from_secs(6)
    } else {
        Duration::from_secs(30)
    };
    let polling = run_mode(
        SchedulerMode::Polling {
            interval: scaled(POLL_INTERVAL),
            batch: POLL_BATCH,
        },
        window,
    )
    .await?;
    let event = run_mode(SchedulerMode::Event, window).await?;

    let mut outcome = Outcome::default();
    outcome
        .values
        .insert("polling".into(), Value::Object(polling.values));
    outcome
        .values
        .insert("event".into(), Value::Object(event.values));
    outcome.details = json!({
        "time_scale": SCALE,
        "window_s_per_mode": window.as_secs_f64(),
        "reference_time_s_per_mode": window.as_secs_f64() * SCALE,
        "agents": AGENTS,
        "offered_tasks_per_min_reference": OFFERED_PER_MIN,
        "task_duration": "exponential, mean 1 s (reference time)",
        "polling": "every 2 s (reference time), 10 tasks per wake-up, run one after another",
        "latency": "submit → start (task:assigned queue_wait), tasks started within the window",
        "units": "latency and throughput in reference time; cpu_percent measured during the compressed run",
        "polling_extra": polling.extra,
        "event_extra": event.extra,
        "reference": {
            "polling": {"avg_latency_ms": 1000, "cpu_percent": 15, "throughput_per_min": 50},
            "event": {"avg_latency_ms": 50, "cpu_percent": 9, "throughput_per_min": 150},
        },
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    outcome.series.insert(
        "queue_wait_cdf_ms".into(),
        json!({ "polling": polling.cdf, "event": event.cdf }),
    );
    Ok(outcome)
}

struct ModeResult {
    values: Map<String, Value>,
    extra: Value,
    cdf: Vec<[f64; 2]>,
}

async fn run_mode(mode: SchedulerMode, window: Duration) -> Result<ModeResult> {
    let config = SimConfig::fixed(Duration::ZERO)
        .with_duration(DurationDist::Exponential {
            mean: scaled(MEAN_DURATION),
        })
        .with_seed(7);
    let swarm = Swarm::builder()
        .sim_agents(AGENTS, config)
        .mode(mode)
        .autoscale(false)
        .memory_store()
        .seed(11)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let waits = Waits::default();
    let _subscription = waits.attach(&swarm);
    let kind: Arc<str> = Arc::from("seed");
    let mean_gap = scaled(Duration::from_secs_f64(60.0 / OFFERED_PER_MIN));
    let mut rng = SplitMix64::new(42);

    let meter = CpuMeter::start();
    let start = tokio::time::Instant::now();
    let end = start + window;
    let mut next = start;
    let mut submitted = 0u64;
    loop {
        next += exp(&mut rng, mean_gap);
        if next >= end {
            break;
        }
        tokio::time::sleep_until(next).await;
        // Dropping the handle does not cancel the task.
        drop(
            swarm
                .submit(task(&kind)?)
                .await
                .map_err(|e| e.to_string())?,
        );
        submitted += 1;
    }
    tokio::time::sleep_until(end).await;
    let (cpu, wall) = meter.read();
    let stats = swarm.stats();
    let mut started: Vec<Duration> = waits.take().into_iter().map(|(_, _, w)| w).collect();
    // The backlog stays queued; a running attempt gets a short grace.
    swarm
        .shutdown(Duration::from_millis(300))
        .await
        .map_err(|e| e.to_string())?;

    started.sort();
    let n = started.len().max(1) as f64;
    let avg = started.iter().map(|d| ms(*d)).sum::<f64>() / n;
    let max = started.last().map_or(0.0, |d| ms(*d));
    let per_min = stats.completed as f64 / wall.as_secs_f64() * 60.0;
    let values = json!({
        "avg_latency_ms": r3(avg * SCALE),
        "max_latency_ms": r3(max * SCALE),
        "cpu_percent": r3(cpu.as_secs_f64() / wall.as_secs_f64() * 100.0),
        "throughput_per_min": r3(per_min / SCALE),
    });
    let extra = json!({
        "submitted": submitted,
        "started": started.len(),
        "completed": stats.completed,
        "queued_at_end": stats.queued,
        "wakeups": stats.wakeups,
        "measured_avg_latency_ms": r3(avg),
        "measured_max_latency_ms": r3(max),
        "measured_throughput_per_min": r3(per_min),
        "cpu_ms": r3(ms(cpu)),
        "wall_ms": r3(ms(wall)),
    });
    Ok(ModeResult {
        values: values.as_object().cloned().unwrap_or_default(),
        extra,
        cdf: cdf(&started, SCALE),
    })
}

/// Up to 200 points (wait in reference ms, fraction at or below), from sorted waits.
pub(crate) fn cdf(sorted: &[Duration], scale: f64) -> Vec<[f64; 2]> {
    let n = sorted.len();
    if n == 0 {
        return Vec::new();
    }
    let points = n.min(200);
    (1..=points)
        .map(|i| {
            let idx = (i * n).div_ceil(points) - 1;
            [r3(ms(sorted[idx]) * scale), (idx + 1) as f64 / n as f64]
        })
        .collect()
}
