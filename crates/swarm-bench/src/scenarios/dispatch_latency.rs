//! One task at a time to idle agents: from the call that hands the task over
//! to the moment the agent's code runs. Swarm (event mode) against a raw
//! channel feeding idle workers, in alternating blocks so both see the same noise.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{Value, json};
use swarm::{Agent, ExecuteError, Payload, Swarm, Task, TaskOutput};
use swarm_core::AgentId;
use tokio::sync::{mpsc, oneshot};

use super::{Result, shutdown, task};
use crate::sys::r3;
use crate::{Options, Outcome};

const AGENTS: usize = 4;
const BLOCK: usize = 500;

/// Writes the moment its code starts into a shared slot.
struct StampAgent {
    started: Arc<Mutex<Option<Instant>>>,
}

impl Agent for StampAgent {
    async fn execute(&self, _task: &Task) -> std::result::Result<TaskOutput, ExecuteError> {
        *self.started.lock() = Some(Instant::now());
        Ok(Payload::empty())
    }
}

pub(crate) async fn run(options: &Options) -> Result<Outcome> {
    let samples = if options.quick { 5_000 } else { 20_000 };
    let started = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&started);
    let swarm = Swarm::builder()
        .agents(AGENTS)
        .agent_factory(move |_id: AgentId| StampAgent {
            started: Arc::clone(&slot),
        })
        .autoscale(false)
        .memory_store()
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let workers = worker_pool(AGENTS);
    let kind: Arc<str> = Arc::from("ping");

    let new_hist =
        || Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string());
    let (mut event, mut channel) = (new_hist()?, new_hist()?);
    // Warm-up block of each, not recorded.
    for _ in 0..BLOCK {
        swarm_once(&swarm, &kind, &started).await?;
        channel_once(&workers).await?;
    }
    let mut done = 0;
    while done < samples {
        for _ in 0..BLOCK {
            let d = swarm_once(&swarm, &kind, &started).await?;
            event.saturating_record(nanos(d));
        }
        for _ in 0..BLOCK {
            let d = channel_once(&workers).await?;
            channel.saturating_record(nanos(d));
        }
        done += BLOCK;
    }
    shutdown(&swarm).await?;

    let summary = |h: &Histogram<u64>| -> Value {
        json!({
            "p50_us": us(h.value_at_quantile(0.5)),
            "p99_us": us(h.value_at_quantile(0.99)),
            "p999_us": us(h.value_at_quantile(0.999)),
            "max_us": us(h.max()),
        })
    };
    let ratio =
        |q: f64| r3(event.value_at_quantile(q) as f64 / channel.value_at_quantile(q).max(1) as f64);
    let values = json!({
        "event": summary(&event),
        "baseline_channel": summary(&channel),
        "ratio_p50": ratio(0.5),
        "ratio_p99": ratio(0.99),
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    let details = json!({
        "samples_each": samples,
        "agents": AGENTS,
        "event": "Swarm::submit (MemoryStore, metrics on) → agent code starts; timed from before submit",
        "baseline_channel": format!("mpsc send → one of {AGENTS} idle workers (sharing the receiver) starts"),
        "order": format!("alternating blocks of {BLOCK}, after a warm-up block of each"),
        "event_mean_us": r3(event.mean() / 1e3),
        "channel_mean_us": r3(channel.mean() / 1e3),
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

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

fn us(nanos: u64) -> f64 {
    r3(nanos as f64 / 1e3)
}

async fn swarm_once(
    swarm: &Swarm,
    kind: &Arc<str>,
    started: &Arc<Mutex<Option<Instant>>>,
) -> Result<Duration> {
    let task = task(kind)?;
    let sent = Instant::now();
    let handle = swarm.submit(task).await.map_err(|e| e.to_string())?;
    if !handle.await.is_completed() {
        return Err("a ping task did not complete".into());
    }
    let start = started
        .lock()
        .take()
        .ok_or("the agent did not record its start")?;
    settle().await;
    Ok(start.saturating_duration_since(sent))
}

type Ping = oneshot::Sender<Instant>;

fn worker_pool(workers: usize) -> mpsc::UnboundedSender<Ping> {
    let (sender, receiver) = mpsc::unbounded_channel::<Ping>();
    let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
    for _ in 0..workers {
        let receiver = Arc::clone(&receiver);
        tokio::spawn(async move {
            loop {
                let job = receiver.lock().await.recv().await;
                match job {
                    Some(reply) => {
                        let _ = reply.send(Instant::now());
                    }
                    None => return,
                }
            }
        });
    }
    sender
}

async fn channel_once(workers: &mpsc::UnboundedSender<Ping>) -> Result<Duration> {
    let (reply, receiver) = oneshot::channel();
    let sent = Instant::now();
    workers.send(reply).map_err(|_| "the worker pool stopped")?;
    let start = receiver.await.map_err(|e| e.to_string())?;
    settle().await;
    Ok(start.saturating_duration_since(sent))
}

/// Lets the agent (or worker) go back to sleep before the next sample, so every
/// sample finds it idle.
async fn settle() {
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
}
