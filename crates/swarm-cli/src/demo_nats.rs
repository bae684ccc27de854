//! `swarm demo --store nats://HOST:PORT`: the demo workload submitted to a
//! distributed swarm (feature `nats`).
//!
//! The demo journals each task's `task:created` to the swarm's NATS event log,
//! puts it on the JetStream task queue, runs one node in-process (unless
//! `--no-local-worker`), and follows the log until every task it submitted
//! completed or was dead-lettered. The summary comes from the log, so it
//! counts the work of every node.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use swarm::distributed::TaskQueue;
use swarm::event::TaskCreated;
use swarm::{Event, EventStore, Swarm, Task, TaskId};
use swarm_store::NatsStore;

use crate::DemoArgs;
use crate::demo::{Outcomes, Summary, due_batch, print_summary, wait_histograms};
use crate::error::CliError;
use crate::output::progress_bar;
use crate::worker::{connect, queue_config, sim_node};

/// How often the demo asks the server whether the queue is empty once every
/// task is submitted: the fallback for tasks that leave the queue without a
/// terminal event (dead-lettered by the node after `max_deliver`).
const QUEUE_CHECK: Duration = Duration::from_secs(1);

pub(crate) async fn run(args: DemoArgs, url: String) -> Result<(), CliError> {
    if args.mode != crate::ModeArg::Event {
        return Err(CliError::BadInput(
            "--mode polling is not available with a nats:// store (the nodes pull from the queue)"
                .into(),
        ));
    }
    if args.enqueue_first {
        return Err(CliError::BadInput(
            "--enqueue-first pauses a local swarm while it submits: with a nats:// store, submit with --no-local-worker first and start the `swarm worker` processes after".into(),
        ));
    }
    if args.metrics.is_some() && args.no_local_worker {
        return Err(CliError::BadInput(
            "--metrics serves the local worker's metrics: drop --no-local-worker, or scrape the `swarm worker --metrics` processes".into(),
        ));
    }
    if args.no_local_worker && !args.given.is_empty() {
        return Err(CliError::BadInput(format!(
            "{} shape the local worker, and --no-local-worker runs none: give them to the `swarm worker` processes, or drop --no-local-worker",
            args.given.join(", ")
        )));
    }
    if args.dashboard.dashboard.is_some() && args.no_local_worker {
        return Err(CliError::BadInput(
            "--dashboard serves the local worker's swarm: drop --no-local-worker, or use `swarm worker --dashboard` on a worker".into(),
        ));
    }
    let prefetch = if args.prefetch == 0 {
        16
    } else {
        args.prefetch
    };
    let (store, queue) = connect(&url, &args.queue, prefetch).await?;
    let result = submit_and_wait(&args, &url, &store, &queue, prefetch).await;
    if let Err(error) = store.close().await {
        tracing::warn!(%error, "closing the event log");
    }
    result
}

async fn submit_and_wait(
    args: &DemoArgs,
    url: &str,
    store: &NatsStore,
    queue: &TaskQueue,
    prefetch: usize,
) -> Result<(), CliError> {
    let node: Option<Swarm> = if args.no_local_worker {
        None
    } else {
        Some(
            sim_node(
                url,
                queue_config(&args.queue, prefetch),
                args.agents,
                (args.duration_ms, args.fail_rate, args.seed),
                args.metrics,
            )
            .await?,
        )
    };
    let board = match &node {
        Some(node) => match crate::dashboard::start_if_asked(node, &args.dashboard).await {
            Ok(board) => board,
            Err(e) => {
                let _ = node.shutdown(Duration::from_secs(2)).await;
                return Err(e);
            }
        },
        None => None,
    };
    let outcome = drive(args, store, queue).await;
    if let Some(board) = &board {
        eprintln!(
            "the demo workload is done; the dashboard stays up at {} until SIGTERM or Ctrl-C",
            board.url()
        );
        crate::dashboard::shutdown_signal().await;
    }
    crate::dashboard::stop(board).await;
    if let Some(node) = node {
        if let Err(error) = node.shutdown(Duration::from_secs(30)).await {
            tracing::warn!(%error, "stopping the local worker");
        }
    }
    let (outcomes, waits, elapsed, retries, failed_attempts) = outcome?;
    let mode_name = "distributed";
    let workers = if args.no_local_worker {
        "the swarm's workers".to_owned()
    } else {
        format!("{} local agents and the swarm's workers", args.agents)
    };
    let header = format!(
        "swarm demo: {} tasks on {workers}, distributed mode, store {url} (swarm {})\n\n",
        args.tasks, args.queue.swarm
    );
    let mut extra = serde_json::Map::new();
    extra.insert("swarm".into(), args.queue.swarm.clone().into());
    extra.insert("local_worker".into(), (!args.no_local_worker).into());
    print_summary(&Summary {
        json: args.json,
        header,
        mode_name,
        agents: if args.no_local_worker { 0 } else { args.agents },
        tasks: args.tasks,
        store: url.to_owned(),
        inspect_hint: None,
        outcomes: &outcomes,
        recovered: 0,
        waits: &waits,
        elapsed,
        retries,
        failed_attempts,
        steals: 0,
        stolen_tasks: 0,
        extra,
    })
}

type Drive = (
    Outcomes,
    Vec<hdrhistogram::Histogram<u64>>,
    Duration,
    u64,
    u64,
);

/// Submits the workload at `--rate` and follows the log until every task
/// submitted finished.
async fn drive(args: &DemoArgs, store: &NatsStore, queue: &TaskQueue) -> Result<Drive, CliError> {
    let mut waits = wait_histograms()?;
    // Only events after this point are ours.
    let from = store.last_seq().await?.saturating_add(1);
    let mut live = store.subscribe(from);
    let bar = progress_bar(args.tasks, args.json, "tasks");
    let started = Instant::now();
    let mut ours: HashSet<TaskId> = HashSet::new();
    let mut finished: HashSet<TaskId> = HashSet::new();
    let mut outcomes = Outcomes::default();
    let (mut retries, mut failed_attempts) = (0u64, 0u64);
    let mut rng = swarm::rng::SplitMix64::new(args.seed ^ 0x5eed);
    let mut submitted = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut check = tokio::time::interval(QUEUE_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Set once the queue is empty: read the log up to here, then stop.
    let mut drain_to: Option<u64> = None;
    let mut seen_seq = from.saturating_sub(1);
    loop {
        let all_submitted = submitted >= args.tasks;
        if all_submitted && finished.len() as u64 >= args.tasks {
            break;
        }
        if drain_to.is_some_and(|to| seen_seq >= to) {
            break;
        }
        tokio::select! {
            _ = tick.tick(), if !all_submitted => {
                let batch = due_batch(args, started, submitted, &mut rng, false)?;
                if batch.is_empty() {
                    continue;
                }
                let count = batch.len() as u64;
                submit(store, queue, &batch).await?;
                ours.extend(batch.iter().map(Task::id));
                submitted += count;
            }
            _ = check.tick(), if all_submitted && drain_to.is_none() => {
                if queue.pending().await.map_err(crate::worker::distributed_error)? == 0 {
                    // Every task was acked or terminated: their events are in
                    // the log (a node journals before it acks).
                    drain_to = Some(store.last_seq().await?);
                }
            }
            next = live.next() => {
                let stored = match next {
                    Some(Ok(stored)) => stored,
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err(CliError::Runtime("the event log subscription ended".into())),
                };
                seen_seq = stored.seq;
                match &stored.event {
                    Event::TaskAssigned(a) if ours.contains(&a.task_id) => {
                        let micros = u64::try_from(a.queue_wait.as_micros()).unwrap_or(u64::MAX);
                        if let Some(h) = waits.get_mut(a.priority.level()) {
                            h.saturating_record(micros);
                        }
                    }
                    Event::TaskCompleted(c)
                        if ours.contains(&c.task_id) && finished.insert(c.task_id) =>
                    {
                        outcomes.completed += 1;
                        bar.inc(1);
                    }
                    Event::TaskDeadLettered(d)
                        if ours.contains(&d.task_id) && finished.insert(d.task_id) =>
                    {
                        outcomes.dead_lettered += 1;
                        bar.inc(1);
                    }
                    Event::TaskFailed(f) if ours.contains(&f.task_id) => {
                        failed_attempts += 1;
                        if f.will_retry {
                            retries += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    // Tasks that left the queue without a terminal event were dead-lettered
    // by a node once their deliveries were used up.
    let unaccounted = args.tasks.saturating_sub(finished.len() as u64);
    if unaccounted > 0 {
        tracing::info!(
            unaccounted,
            "tasks left the queue without a terminal event: counted as dead-lettered"
        );
        outcomes.dead_lettered += unaccounted;
    }
    Ok((outcomes, waits, elapsed, retries, failed_attempts))
}

/// Journals `task:created` for each task, then queues them; resolves once the
/// server stored all of them.
async fn submit(store: &NatsStore, queue: &TaskQueue, batch: &[Task]) -> Result<(), CliError> {
    let created: Vec<_> = batch
        .iter()
        .map(|t| store.append(vec![TaskCreated { task: t.clone() }.into()], None))
        .collect();
    for r in futures::future::join_all(created).await {
        r?;
    }
    let mut acks = Vec::with_capacity(batch.len());
    for task in batch {
        acks.push(
            queue
                .submit_pipelined(task)
                .await
                .map_err(crate::worker::distributed_error)?,
        );
    }
    for (task, ack) in batch.iter().zip(acks) {
        ack.await.map_err(|e| {
            CliError::Runtime(format!("the server did not store task {}: {e}", task.id()))
        })?;
    }
    Ok(())
}
