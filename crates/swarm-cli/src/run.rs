//! `swarm run JOBS.jsonl`: runs shell jobs on a durable store; re-running on
//! the same store resumes.
//!
//! Resume rules: a job whose id is already in the log is never submitted
//! again. If it completed (or was dead-lettered or cancelled) it is skipped;
//! if it was pending, queued, waiting for a retry or running when the last run
//! stopped, the swarm re-queues it on start (a job that was running runs
//! again: at-least-once).
//!
//! A job runs in the directory of the `swarm run` that first submitted it
//! (recorded in its payload), whichever directory a resume starts from.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use swarm::event::{TaskCancelled, TaskCompleted, TaskDeadLettered};
use swarm::{EventBus, Retention, SubmitError, Swarm, SystemState, TaskId, TaskStatus};
use tokio::sync::Notify;

use crate::RunArgs;
use crate::error::CliError;
use crate::jobs::{JobPayload, ShellAgent, parse_jobs};
use crate::output::{print_json, print_stdout, progress_bar};

/// How a job ended, as far as this run knows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ended {
    Completed,
    DeadLettered(String),
    Cancelled,
}

#[derive(Debug, Default)]
struct Finished {
    ended: HashMap<TaskId, Ended>,
}

pub(crate) async fn run(args: RunArgs) -> Result<(), CliError> {
    let name = args.jobs.display().to_string();
    let text = std::fs::read_to_string(&args.jobs)
        .map_err(|e| CliError::BadInput(format!("cannot read the jobs file {name}: {e}")))?;
    // The whole file is checked before the store is even opened.
    let jobs = parse_jobs(&name, &text)?;
    // New jobs run where this `swarm run` started; the directory goes into
    // their payload, so a resume from elsewhere runs them here again.
    let cwd = std::env::current_dir().map_err(|e| {
        CliError::Runtime(format!(
            "cannot tell the current directory (new jobs run in it): {e}"
        ))
    })?;
    let tasks = jobs
        .iter()
        .map(|j| j.to_task(&cwd))
        .collect::<Result<Vec<_>, _>>()?;

    // Terminal events, recorded from before the swarm starts: recovered jobs
    // may finish (or be dead-lettered at recovery) while `build` runs.
    let finished = Arc::new(Mutex::new(Finished::default()));
    let notify = Arc::new(Notify::new());
    let bus = EventBus::new();
    let record = |finished: &Arc<Mutex<Finished>>, notify: &Arc<Notify>, id: TaskId, how: Ended| {
        if let Ok(mut f) = finished.lock() {
            f.ended.insert(id, how);
        }
        notify.notify_one();
    };
    let (f, n) = (Arc::clone(&finished), Arc::clone(&notify));
    let _completed = bus.on::<TaskCompleted>(move |e| record(&f, &n, e.task_id, Ended::Completed));
    let (f, n) = (Arc::clone(&finished), Arc::clone(&notify));
    let _dead = bus.on::<TaskDeadLettered>(move |e| {
        let last = e.errors.last().cloned().unwrap_or_default();
        record(&f, &n, e.task_id, Ended::DeadLettered(last));
    });
    let (f, n) = (Arc::clone(&finished), Arc::clone(&notify));
    let _cancelled = bus.on::<TaskCancelled>(move |e| record(&f, &n, e.task_id, Ended::Cancelled));

    let agents = args.agents as usize;
    let mut builder = Swarm::builder()
        .agents(agents)
        .max_agents(agents)
        .autoscale(false)
        .agent_factory(|_| ShellAgent)
        // The job's own timeout_ms, or none: a build may take hours.
        .default_timeout(None)
        .file_store(&args.store)
        // A run is a finite batch resumed by job id: the state (and its
        // snapshots) must remember every job that ended, however many, or a
        // resumed run would run long-finished jobs again. Memory is O(jobs).
        .retention(Retention::unbounded())
        .bus(bus);
    if let Some(addr) = args.metrics {
        builder = builder.metrics(addr);
    }
    let swarm = args.flow.apply(builder).build().await?;
    if let Some(addr) = swarm.metrics_addr() {
        tracing::info!(%addr, "serving Prometheus metrics on /metrics");
    }
    let board = match crate::dashboard::start_if_asked(&swarm, &args.dashboard).await {
        Ok(board) => board,
        Err(e) => {
            let _ = swarm.shutdown(Duration::from_secs(2)).await;
            return Err(e);
        }
    };

    // What the log already knows. Ids in it are never submitted again.
    let state = SystemState::replay_with(&**swarm.store(), Retention::unbounded()).await?;
    let mut ended_before: HashMap<TaskId, Ended> = HashMap::new();
    let mut to_submit = Vec::new();
    let mut resumed = 0usize;
    for (job, task) in jobs.iter().zip(tasks) {
        match state.task(job.task_id) {
            None => to_submit.push(task),
            Some(record) => {
                let same = match (
                    record.task.payload().to_json::<JobPayload>(),
                    task.payload().to_json::<JobPayload>(),
                ) {
                    // The store's directory stands too: it is where the job
                    // was submitted, wherever this run started.
                    (Ok(stored), Ok(now)) => stored.same_job(&now),
                    _ => false,
                };
                if !same {
                    tracing::warn!(
                        job = %job.id,
                        line = job.line,
                        "the job changed since it was first submitted to this store; the store's version stands"
                    );
                }
                match record.status {
                    TaskStatus::Completed => {
                        ended_before.insert(job.task_id, Ended::Completed);
                    }
                    TaskStatus::DeadLettered => {
                        ended_before.insert(
                            job.task_id,
                            Ended::DeadLettered(record.last_error.clone().unwrap_or_default()),
                        );
                    }
                    TaskStatus::Cancelled => {
                        ended_before.insert(job.task_id, Ended::Cancelled);
                    }
                    // Failed for good without a dead letter (should not happen):
                    // nothing will run it again, so do not wait for it.
                    _ if !record.needs_requeue() => {
                        ended_before.insert(
                            job.task_id,
                            Ended::DeadLettered(record.last_error.clone().unwrap_or_default()),
                        );
                    }
                    _ => resumed += 1,
                }
            }
        }
    }
    let skipped = ended_before.len();
    if skipped > 0 || resumed > 0 {
        tracing::info!(
            skipped,
            resumed,
            "resuming: jobs already finished in the store are skipped"
        );
    }
    let submitted = to_submit.len();
    if !to_submit.is_empty() {
        // One durable write for the whole file.
        let handles = swarm
            .submit_batch(to_submit)
            .await
            .map_err(|e| match e.reason() {
                // Name the job, not its task id.
                SubmitError::ExceedsLimit {
                    task,
                    limit,
                    capacity,
                } => CliError::BadInput(format!(
                    "job {:?} costs {} units, over the {capacity} that {limit} holds: it could never start; raise that rate's burst or lower the job's cost (nothing was run)",
                    task.payload()
                        .to_json::<JobPayload>()
                        .map_or_else(|_| task.id().to_string(), |p| p.id),
                    task.cost(),
                )),
                _ => CliError::from(e),
            })?;
        // Outcomes are collected from the bus.
        drop(handles);
    }

    let want: HashSet<TaskId> = jobs.iter().map(|j| j.task_id).collect();
    let total = want.len() as u64;
    let bar = progress_bar(total, args.json, "jobs");
    let mut interrupted = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let done = {
            let f = finished
                .lock()
                .map_err(|_| CliError::Runtime("the job recorder panicked".into()))?;
            want.iter()
                .filter(|id| ended_before.contains_key(id) || f.ended.contains_key(id))
                .count() as u64
        };
        bar.set_position(done);
        if done >= total {
            break;
        }
        tokio::select! {
            _ = notify.notified() => {}
            // A lost wake-up cannot stall the loop for long.
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = &mut ctrl_c => {
                interrupted = true;
                break;
            }
        }
    }
    bar.finish_and_clear();
    crate::dashboard::stop(board).await;
    let report = swarm
        .shutdown(if interrupted {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(10)
        })
        .await?;

    let f = finished
        .lock()
        .map_err(|_| CliError::Runtime("the job recorder panicked".into()))?;
    let mut completed = 0usize;
    let mut cancelled = 0usize;
    let mut dead: Vec<(&str, String)> = Vec::new();
    for job in &jobs {
        match f.ended.get(&job.task_id).or(ended_before.get(&job.task_id)) {
            Some(Ended::Completed) => completed += 1,
            Some(Ended::Cancelled) => cancelled += 1,
            Some(Ended::DeadLettered(error)) => dead.push((&job.id, error.clone())),
            None => {}
        }
    }
    let unfinished = jobs.len() - completed - cancelled - dead.len();
    if args.json {
        print_json(&json!({
            "jobs": jobs.len(),
            "completed": completed,
            "dead_lettered": dead.len(),
            "cancelled": cancelled,
            "unfinished": unfinished,
            "submitted": submitted,
            "resumed": resumed,
            "skipped": skipped,
            "dead_lettered_ids": dead.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        }))?;
    } else {
        print_stdout(&format!(
            "{} jobs: {completed} completed, {} dead-lettered, {cancelled} cancelled, {unfinished} unfinished ({submitted} submitted, {resumed} resumed, {skipped} finished before)\n",
            jobs.len(),
            dead.len()
        ))?;
    }
    for (id, error) in &dead {
        eprintln!("dead-lettered: job {id:?}: {error}");
    }
    if interrupted {
        return Err(CliError::JobsFailed(format!(
            "interrupted: {unfinished} jobs unfinished ({} left queued, {} attempts dropped); run again with --store {} to resume",
            report.pending,
            report.interrupted,
            args.store.display()
        )));
    }
    if !dead.is_empty() {
        return Err(CliError::JobsFailed(format!(
            "{} of {} jobs were dead-lettered (their attempts are in `swarm events --store {} --event task:failed`)",
            dead.len(),
            jobs.len(),
            args.store.display()
        )));
    }
    Ok(())
}
