//! `swarm demo`: simulated agents on a generated workload with mixed priorities.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use serde_json::json;
use swarm::event::TaskAssigned;
use swarm::rng::SplitMix64;
use swarm::{Priority, SchedulerMode, SimConfig, Swarm, Task, TaskHandle, TaskOutcome};

use crate::error::CliError;
use crate::output::{ms, print_json, print_stdout, progress_bar};
use crate::{DemoArgs, ModeArg};

/// Queue waits per priority level, in microseconds.
type WaitHistograms = Arc<Mutex<Vec<Histogram<u64>>>>;

/// The workload's priority mix: 5% critical, 20% high, 50% normal, 25% low.
pub(crate) fn priority_of(draw: u64) -> Priority {
    match draw % 100 {
        0..5 => Priority::Critical,
        5..25 => Priority::High,
        25..75 => Priority::Normal,
        _ => Priority::Low,
    }
}

pub(crate) const KINDS: [&str; 4] = ["summarize", "classify", "translate", "extract"];

/// The tasks of the generated workload due by now at `args.rate` (all at once
/// with rate 0), at most 5000 per call, numbered from `submitted`.
pub(crate) fn due_batch(
    args: &DemoArgs,
    started: Instant,
    submitted: u64,
    rng: &mut SplitMix64,
    all_at_once: bool,
) -> Result<Vec<Task>, CliError> {
    let due = if all_at_once || args.rate == 0.0 {
        args.tasks
    } else {
        ((started.elapsed().as_secs_f64() * args.rate) as u64)
            .max(1)
            .min(args.tasks)
    };
    let count = due.saturating_sub(submitted).min(5000);
    (submitted..submitted + count)
        .map(|i| {
            let draw = rng.next_u64();
            Task::builder(KINDS[(draw >> 32) as usize % KINDS.len()])
                .priority(priority_of(draw))
                .payload(format!("demo task {i}"))
                .build()
                .map_err(|e| CliError::Runtime(e.to_string()))
        })
        .collect()
}

#[derive(Debug, Default)]
pub(crate) struct Outcomes {
    pub(crate) completed: u64,
    pub(crate) dead_lettered: u64,
    pub(crate) cancelled: u64,
    pub(crate) interrupted: u64,
}

impl Outcomes {
    fn add(&mut self, outcome: &TaskOutcome) {
        match outcome {
            TaskOutcome::Completed { .. } => self.completed += 1,
            TaskOutcome::DeadLettered { .. } => self.dead_lettered += 1,
            TaskOutcome::Cancelled { .. } => self.cancelled += 1,
            _ => self.interrupted += 1,
        }
    }
}

/// The URL when `--store` names a NATS server (`nats://` or `tls://`).
fn nats_url(args: &DemoArgs) -> Option<String> {
    crate::nats_store_url(&args.store).map(str::to_owned)
}

pub(crate) async fn run(args: DemoArgs) -> Result<(), CliError> {
    if !args.rate.is_finite() || args.rate < 0.0 {
        return Err(CliError::BadInput(format!(
            "--rate {} is invalid: give tasks per second, or 0 for all at once",
            args.rate
        )));
    }
    if let Some(url) = nats_url(&args).filter(|_| !args.memory) {
        #[cfg(feature = "nats")]
        return crate::demo_nats::run(args, url).await;
        #[cfg(not(feature = "nats"))]
        return Err(CliError::BadInput(format!(
            "--store {url}: this swarm binary was built without the `nats` feature"
        )));
    }
    if args.no_local_worker {
        return Err(CliError::BadInput(
            "--no-local-worker needs a distributed store (--store nats://HOST:PORT)".into(),
        ));
    }
    let sim = SimConfig::fixed(Duration::ZERO)
        .with_duration(args.duration_ms)
        .with_error_rate(args.fail_rate)
        .with_seed(args.seed);
    let mode = match args.mode {
        ModeArg::Event => SchedulerMode::Event,
        ModeArg::Polling => SchedulerMode::Polling {
            interval: Duration::from_millis(args.poll_interval_ms),
            batch: usize::try_from(args.poll_batch).unwrap_or(usize::MAX),
        },
    };
    let agents = args.agents as usize;
    let mut builder = Swarm::builder()
        .sim_agents(agents, sim)
        .max_agents(agents)
        .autoscale(false)
        .mode(mode)
        .prefetch(args.prefetch)
        .seed(args.seed);
    builder = if args.memory {
        builder.memory_store()
    } else {
        builder.file_store(&args.store)
    };
    if let Some(addr) = args.metrics {
        builder = builder.metrics(addr);
    }

    // Queue waits by priority, from task:assigned. Registered before build so
    // that recovered tasks are counted too.
    let bus = swarm::EventBus::new();
    let waits: WaitHistograms = Arc::new(Mutex::new(wait_histograms()?));
    let sink = Arc::clone(&waits);
    let _assigned = bus.on::<TaskAssigned>(move |e| {
        let micros = u64::try_from(e.queue_wait.as_micros()).unwrap_or(u64::MAX);
        if let Ok(mut h) = sink.lock() {
            if let Some(h) = h.get_mut(e.priority.level()) {
                h.saturating_record(micros);
            }
        }
    });
    let swarm = builder.bus(bus).build().await?;
    let recovered = swarm.stats().recovered;
    if recovered > 0 {
        tracing::info!(
            recovered,
            "resuming tasks left unfinished in the store by an earlier run"
        );
    }
    if let Some(addr) = swarm.metrics_addr() {
        tracing::info!(%addr, "serving Prometheus metrics on /metrics");
        if !args.json {
            eprintln!("metrics: http://{addr}/metrics");
        }
    }

    let board = crate::dashboard::start_if_asked(&swarm, &args.dashboard).await;
    let board = match board {
        Ok(board) => board,
        Err(e) => {
            let _ = swarm.shutdown(Duration::from_secs(2)).await;
            return Err(e);
        }
    };

    let bar = progress_bar(args.tasks, args.json, "tasks");
    let mut pending: FuturesUnordered<TaskHandle> = FuturesUnordered::new();
    let mut outcomes = Outcomes::default();
    let mut rng = SplitMix64::new(args.seed ^ 0x5eed);
    let mut submitted = 0u64;
    let paused = swarm.is_paused();
    if args.enqueue_first {
        // Paused, every task is accepted and queued, none starts; the drain
        // is timed from the resume.
        if !paused {
            swarm.pause().await.map_err(manage_error)?;
        }
        let all = Instant::now();
        while submitted < args.tasks {
            let batch = due_batch(&args, all, submitted, &mut rng, true)?;
            submitted += batch.len() as u64;
            pending.extend(swarm.submit_batch(batch).await?);
        }
        tracing::info!(
            tasks = submitted,
            enqueue_ms = all.elapsed().as_millis() as u64,
            "every task is queued: releasing them"
        );
    }
    if swarm.is_paused() {
        if paused && !args.enqueue_first {
            // A log left paused (an interrupted --enqueue-first run, or the
            // dashboard's pause) would hold the demo's tasks for ever.
            tracing::warn!("the swarm in this store was paused: resuming it to run the demo");
        }
        swarm.resume().await.map_err(manage_error)?;
    }
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while submitted < args.tasks || !pending.is_empty() {
        tokio::select! {
            _ = tick.tick(), if submitted < args.tasks => {
                let batch = due_batch(&args, started, submitted, &mut rng, false)?;
                if batch.is_empty() {
                    continue;
                }
                let count = batch.len() as u64;
                for handle in swarm.submit_batch(batch).await? {
                    pending.push(handle);
                }
                submitted += count;
            }
            Some(outcome) = pending.next(), if !pending.is_empty() => {
                outcomes.add(&outcome);
                bar.inc(1);
            }
        }
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let stats = swarm.stats();
    if let Some(board) = &board {
        eprintln!(
            "the demo workload is done; the dashboard stays up at {} until SIGTERM or Ctrl-C",
            board.url()
        );
        crate::dashboard::shutdown_signal().await;
    }
    crate::dashboard::stop(board).await;
    let report = swarm.shutdown(Duration::from_secs(5)).await?;
    if report.pending > 0 || report.interrupted > 0 {
        tracing::warn!(
            pending = report.pending,
            interrupted = report.interrupted,
            "tasks left unfinished in the store; they resume on the next run"
        );
    }

    let waits = waits
        .lock()
        .map_err(|_| CliError::Runtime("the queue-wait recorder panicked".into()))?;
    let store = if args.memory {
        "memory".to_owned()
    } else {
        args.store.display().to_string()
    };
    let mode_name = match args.mode {
        ModeArg::Event => "event",
        ModeArg::Polling => "polling",
    };
    let header = format!(
        "swarm demo: {} tasks on {} agents, {mode_name} mode, store {store}{}\n\n",
        args.tasks,
        args.agents,
        if args.enqueue_first {
            ", all enqueued first (drain timed from their release)"
        } else {
            ""
        }
    );
    let mut extra = serde_json::Map::new();
    extra.insert("enqueue_first".into(), args.enqueue_first.into());
    print_summary(&Summary {
        json: args.json,
        header,
        mode_name,
        agents: args.agents,
        tasks: args.tasks,
        inspect_hint: (!args.memory).then(|| store.clone()),
        store,
        outcomes: &outcomes,
        recovered,
        waits: &waits,
        elapsed,
        retries: stats.retries,
        failed_attempts: stats.failed_attempts,
        steals: stats.steals,
        stolen_tasks: stats.stolen_tasks,
        extra,
    })
}

fn manage_error(e: swarm::ManageError) -> CliError {
    CliError::Runtime(format!("could not pause or resume the swarm: {e}"))
}

/// What the demo prints at the end, in either mode.
pub(crate) struct Summary<'a> {
    pub(crate) json: bool,
    /// The first lines of the text summary.
    pub(crate) header: String,
    pub(crate) mode_name: &'a str,
    pub(crate) agents: u32,
    pub(crate) tasks: u64,
    pub(crate) store: String,
    /// The store to name in the closing "inspect the log" line, if any.
    pub(crate) inspect_hint: Option<String>,
    pub(crate) outcomes: &'a Outcomes,
    pub(crate) recovered: u64,
    /// Queue waits by priority level, in microseconds.
    pub(crate) waits: &'a [Histogram<u64>],
    pub(crate) elapsed: Duration,
    pub(crate) retries: u64,
    pub(crate) failed_attempts: u64,
    pub(crate) steals: u64,
    pub(crate) stolen_tasks: u64,
    /// More fields of the JSON summary.
    pub(crate) extra: serde_json::Map<String, serde_json::Value>,
}

/// One empty queue-wait histogram per priority level (1 µs to an hour at 3
/// significant digits; longer waits saturate).
pub(crate) fn wait_histograms() -> Result<Vec<Histogram<u64>>, CliError> {
    (0..Priority::ALL.len())
        .map(|_| Histogram::new_with_bounds(1, 3_600_000_000, 3))
        .collect::<Result<_, _>>()
        .map_err(|e| CliError::Runtime(format!("could not create a histogram: {e}")))
}

pub(crate) fn print_summary(s: &Summary<'_>) -> Result<(), CliError> {
    let outcomes = s.outcomes;
    let elapsed = s.elapsed;
    let finished = outcomes.completed + outcomes.dead_lettered + outcomes.cancelled;
    let throughput = if elapsed.as_secs_f64() > 0.0 {
        finished as f64 / elapsed.as_secs_f64()
    } else {
        0.0
    };
    let waits = s.waits;
    let quantile = |h: &Histogram<u64>, q: f64| ms(Duration::from_micros(h.value_at_quantile(q)));
    let mut wait_json = serde_json::Map::new();
    for p in Priority::ALL {
        let h = &waits[p.level()];
        wait_json.insert(
            p.as_str().to_owned(),
            json!({
                "count": h.len(),
                "p50": quantile(h, 0.5),
                "p99": quantile(h, 0.99),
                "max": ms(Duration::from_micros(h.max())),
            }),
        );
    }
    if s.json {
        let mut v = json!({
            "mode": s.mode_name,
            "agents": s.agents,
            "tasks": s.tasks,
            "store": s.store,
            "outcomes": {
                "completed": outcomes.completed,
                "dead_lettered": outcomes.dead_lettered,
                "cancelled": outcomes.cancelled,
                "interrupted": outcomes.interrupted,
            },
            "recovered": s.recovered,
            "queue_wait_ms": wait_json,
            "queue_wait_from": "acceptance",
            "elapsed_s": elapsed.as_secs_f64(),
            "throughput_per_s": throughput,
            "retries": s.retries,
            "failed_attempts": s.failed_attempts,
            "steals": s.steals,
            "stolen_tasks": s.stolen_tasks,
        });
        if let Some(map) = v.as_object_mut() {
            map.extend(s.extra.clone());
        }
        return print_json(&v);
    }
    let mut text = s.header.clone();
    text.push_str(&format!(
        "  completed       {:>8}\n  dead-lettered   {:>8}\n",
        outcomes.completed, outcomes.dead_lettered
    ));
    if outcomes.cancelled + outcomes.interrupted > 0 {
        text.push_str(&format!(
            "  cancelled       {:>8}\n  interrupted     {:>8}\n",
            outcomes.cancelled, outcomes.interrupted
        ));
    }
    let recovered = s.recovered;
    if recovered > 0 {
        text.push_str(&format!(
            "  recovered       {recovered:>8}  (left unfinished by an earlier run)\n"
        ));
    }
    text.push_str(&format!(
        "  throughput      {throughput:>8.0} tasks/s over {:.2} s\n  retries         {:>8}  ({} failed attempts)\n  steals          {:>8}  ({} tasks moved)\n\n",
        elapsed.as_secs_f64(),
        s.retries,
        s.failed_attempts,
        s.steals,
        s.stolen_tasks
    ));
    // Both modes count from acceptance: a local swarm from the durable
    // submit, a distributed one from the server storing the task's message.
    text.push_str(
        "  queue wait (ms)     count       p50       p99       max   (acceptance to start)\n",
    );
    for p in Priority::ALL {
        let h = &waits[p.level()];
        text.push_str(&format!(
            "  {:<14} {:>10} {:>9.3} {:>9.3} {:>9.3}\n",
            p.as_str(),
            h.len(),
            quantile(h, 0.5),
            quantile(h, 0.99),
            ms(Duration::from_micros(h.max()))
        ));
    }
    if let Some(store) = &s.inspect_hint {
        text.push_str(&format!(
            "\ninspect the log: swarm replay --store {store} | swarm stats --store {store} | swarm events --store {store}\n"
        ));
    }
    print_stdout(&text).map(|_| ())
}
