//! No-op tasks as fast as possible: the full scheduler (metrics on, a
//! MemoryStore) against `tokio::spawn` per task and a channel feeding a worker
//! pool, interleaved in the same process and run; medians of the rounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use swarm::{SimConfig, Swarm};
use tokio::sync::{mpsc, oneshot};

use super::{Result, shutdown, task, workers};
use crate::sys::{median, r3};
use crate::{Options, Outcome};

const AGENTS: usize = 4;
const BATCH: usize = 1024;

pub(crate) async fn run(options: &Options) -> Result<Outcome> {
    let (tasks, rounds) = if options.quick {
        (100_000, 3)
    } else {
        (300_000, 5)
    };
    // Warm-up: allocator, runtime threads, metric registration.
    swarm_round(tasks / 10).await?;
    spawn_round(tasks / 10).await?;
    channel_round(tasks / 10).await?;
    let (mut event, mut spawn, mut channel) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        event.push(tasks as f64 / swarm_round(tasks).await?.as_secs_f64());
        spawn.push(tasks as f64 / spawn_round(tasks).await?.as_secs_f64());
        channel.push(tasks as f64 / channel_round(tasks).await?.as_secs_f64());
    }
    let settings = json!({
        "tasks_per_round": tasks,
        "rounds": rounds,
        "agents": AGENTS,
        "runtime_workers": workers(),
        "submit": format!("submit_batch of {BATCH}, then await every TaskHandle"),
        "swarm_config": "event mode, SimConfig::instant agents, metrics on (Prometheus recorder, no listener), MemoryStore, default 60 s attempt timeout, autoscale off",
        "baseline_spawn": "tokio::spawn per task, then await every JoinHandle",
        "baseline_channel": format!("unbounded mpsc feeding {AGENTS} workers, a oneshot reply per task"),
        "event_rounds": event.iter().map(|x| r3(*x)).collect::<Vec<_>>(),
        "spawn_rounds": spawn.iter().map(|x| r3(*x)).collect::<Vec<_>>(),
        "channel_rounds": channel.iter().map(|x| r3(*x)).collect::<Vec<_>>(),
    });
    let (event, spawn, channel) = (median(&mut event), median(&mut spawn), median(&mut channel));
    let values = json!({
        "event_tasks_per_sec": r3(event),
        "baseline_spawn_tasks_per_sec": r3(spawn),
        "baseline_channel_tasks_per_sec": r3(channel),
        "ratio_vs_spawn": r3(event / spawn),
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

async fn swarm_round(tasks: usize) -> Result<Duration> {
    let swarm = Swarm::builder()
        .sim_agents(AGENTS, SimConfig::instant())
        .autoscale(false)
        .memory_store()
        .record_metrics(true)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let kind: Arc<str> = Arc::from("noop");
    let started = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    let mut left = tasks;
    while left > 0 {
        let n = left.min(BATCH);
        let batch = (0..n).map(|_| task(&kind)).collect::<Result<Vec<_>>>()?;
        handles.extend(swarm.submit_batch(batch).await.map_err(|e| e.to_string())?);
        left -= n;
    }
    for handle in handles {
        if !handle.await.is_completed() {
            return Err("a no-op task did not complete".into());
        }
    }
    let elapsed = started.elapsed();
    shutdown(&swarm).await?;
    Ok(elapsed)
}

async fn spawn_round(tasks: usize) -> Result<Duration> {
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|i| tokio::spawn(async move { std::hint::black_box(i) }))
        .collect();
    for handle in handles {
        handle.await.map_err(|e| e.to_string())?;
    }
    Ok(started.elapsed())
}

type Job = (usize, oneshot::Sender<usize>);

pub(crate) fn channel_pool(workers: usize) -> mpsc::UnboundedSender<Job> {
    let (sender, receiver) = mpsc::unbounded_channel::<Job>();
    let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
    for _ in 0..workers {
        let receiver = Arc::clone(&receiver);
        tokio::spawn(async move {
            loop {
                let job = receiver.lock().await.recv().await;
                match job {
                    Some((x, reply)) => {
                        let _ = reply.send(std::hint::black_box(x));
                    }
                    None => return,
                }
            }
        });
    }
    sender
}

async fn channel_round(tasks: usize) -> Result<Duration> {
    let pool = channel_pool(AGENTS);
    let started = Instant::now();
    let mut replies = Vec::with_capacity(tasks);
    for i in 0..tasks {
        let (reply, receiver) = oneshot::channel();
        pool.send((i, reply))
            .map_err(|_| "the worker pool stopped")?;
        replies.push(receiver);
    }
    for reply in replies {
        reply.await.map_err(|e| e.to_string())?;
    }
    Ok(started.elapsed())
}
