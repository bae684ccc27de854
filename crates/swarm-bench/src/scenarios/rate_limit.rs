//! A rate-limited kind beside an unlimited one: kind `llm` limited to 500/s
//! (burst 50) with a backlog of several seconds, and a stream of instant
//! tasks of another kind. Measures the most `llm` starts in any window of one
//! second (aim: at most 500 + burst) and the other kind's throughput beside
//! the same stream on a swarm without limits or `llm` tasks, interleaved in
//! the same run (aim: at least 0.9 of it). Medians of the rounds.
//!
//! A start is the moment the scheduler assigned the task (`task:assigned`,
//! whose handlers run synchronously where the limit admitted it), the
//! instant the bound is about. The agent's own clock reading, later by a
//! wake-up on a loaded machine, is reported beside it
//! (`details.max_window_agent_side_rounds`): two admissions a few
//! microseconds more than a second apart may be read inside one second there.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::json;
use swarm::event::TaskAssigned;
use swarm::{Agent, ExecuteError, Rate, Selector, Swarm, Task, TaskId, TaskOutput};

use super::{Result, shutdown, task, workers};
use crate::sys::{median, r3};
use crate::{Options, Outcome};

const AGENTS: usize = 4;
const BATCH: usize = 1024;
const RATE: u32 = 500;
const BURST: u32 = 50;
const WINDOW: Duration = Duration::from_secs(1);

/// Finishes at once; notes when each `llm` task started.
#[derive(Clone, Default)]
struct Recorder {
    llm_starts: Arc<Mutex<Vec<Instant>>>,
}

impl Agent for Recorder {
    async fn execute(&self, task: &Task) -> std::result::Result<TaskOutput, ExecuteError> {
        if task.kind() == "llm" {
            self.llm_starts.lock().push(Instant::now());
        }
        Ok(TaskOutput::from("ok"))
    }
}

/// The most starts within any closed window of `WINDOW`.
fn max_window(starts: &mut [Instant]) -> usize {
    starts.sort_unstable();
    let mut end = 0;
    let mut most = 0;
    for start in 0..starts.len() {
        while end < starts.len() && starts[end] <= starts[start] + WINDOW {
            end += 1;
        }
        most = most.max(end - start);
    }
    most
}

struct Round {
    other_per_sec: f64,
    llm_max_window: usize,
    llm_max_window_agent_side: usize,
    llm_span: Duration,
}

async fn round(others: usize, llm: usize) -> Result<Round> {
    let agent = Recorder::default();
    let factory_agent = agent.clone();
    let mut builder = Swarm::builder()
        .agents(AGENTS)
        .autoscale(false)
        .memory_store()
        .agent_factory(move |_| factory_agent.clone());
    if llm > 0 {
        builder = builder.rate_limit(Selector::kind("llm"), Rate::per_second(RATE).burst(BURST));
    }
    let swarm = builder.build().await.map_err(|e| e.to_string())?;
    // Every assignment, timed where the scheduler made it.
    let assigned: Arc<Mutex<Vec<(TaskId, Instant)>>> = Arc::default();
    let sink = Arc::clone(&assigned);
    let _assigned = swarm
        .bus()
        .on::<TaskAssigned>(move |e| sink.lock().push((e.task_id, Instant::now())));
    let llm_kind: Arc<str> = Arc::from("llm");
    let other_kind: Arc<str> = Arc::from("other");
    let mut llm_handles = Vec::with_capacity(llm);
    let mut llm_ids = HashSet::with_capacity(llm);
    let mut left = llm;
    while left > 0 {
        let n = left.min(BATCH);
        let batch = (0..n)
            .map(|_| task(&llm_kind))
            .collect::<Result<Vec<_>>>()?;
        llm_ids.extend(batch.iter().map(Task::id));
        llm_handles.extend(swarm.submit_batch(batch).await.map_err(|e| e.to_string())?);
        left -= n;
    }
    let started = Instant::now();
    let mut handles = Vec::with_capacity(others);
    let mut left = others;
    while left > 0 {
        let n = left.min(BATCH);
        let batch = (0..n)
            .map(|_| task(&other_kind))
            .collect::<Result<Vec<_>>>()?;
        handles.extend(swarm.submit_batch(batch).await.map_err(|e| e.to_string())?);
        left -= n;
    }
    for handle in handles {
        if !handle.await.is_completed() {
            return Err("a task of the unlimited kind did not complete".into());
        }
    }
    let other_per_sec = others as f64 / started.elapsed().as_secs_f64();
    for handle in llm_handles {
        if !handle.await.is_completed() {
            return Err("an llm task did not complete".into());
        }
    }
    shutdown(&swarm).await?;
    let mut agent_side = agent.llm_starts.lock().clone();
    let mut starts: Vec<Instant> = assigned
        .lock()
        .iter()
        .filter(|(id, _)| llm_ids.contains(id))
        .map(|(_, at)| *at)
        .collect();
    if starts.len() != llm || agent_side.len() != llm {
        return Err(format!(
            "{} llm assignments and {} agent starts recorded, {llm} submitted",
            starts.len(),
            agent_side.len()
        ));
    }
    let llm_max_window = max_window(&mut starts);
    let llm_max_window_agent_side = max_window(&mut agent_side);
    let llm_span = match (starts.first(), starts.last()) {
        (Some(first), Some(last)) => *last - *first,
        _ => Duration::ZERO,
    };
    Ok(Round {
        other_per_sec,
        llm_max_window,
        llm_max_window_agent_side,
        llm_span,
    })
}

pub(crate) async fn run(options: &Options) -> Result<Outcome> {
    // The llm backlog lasts a few seconds at 500/s, so several windows fill.
    let (others, llm, rounds) = if options.quick {
        (100_000, 1_500, 2)
    } else {
        (300_000, 3_000, 3)
    };
    // Warm-up: allocator, runtime threads, metric registration.
    round(others / 10, 0).await?;
    let (mut baseline, mut limited, mut windows, mut spans) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut agent_windows = Vec::new();
    for _ in 0..rounds {
        baseline.push(round(others, 0).await?.other_per_sec);
        let r = round(others, llm).await?;
        limited.push(r.other_per_sec);
        windows.push(r.llm_max_window);
        agent_windows.push(r.llm_max_window_agent_side);
        spans.push(r.llm_span.as_secs_f64());
    }
    let details = json!({
        "agents": AGENTS,
        "runtime_workers": workers(),
        "rounds": rounds,
        "other_tasks_per_round": others,
        "llm_tasks_per_round": llm,
        "limit": format!("rate_limit(Selector::kind(\"llm\"), Rate::per_second({RATE}).burst({BURST}))"),
        "aim_max_window_rate": RATE + BURST,
        "aim_ratio": 0.9,
        "measure": "llm: most starts (task:assigned, timed in its synchronous handler where the limit admitted the task) in any closed 1 s window; other: tasks / time from its first submit to its last outcome, the llm backlog queued first; baseline: the same stream on a swarm without limits or llm tasks, rounds interleaved",
        "baseline_rounds": baseline.iter().map(|x| r3(*x)).collect::<Vec<_>>(),
        "limited_rounds": limited.iter().map(|x| r3(*x)).collect::<Vec<_>>(),
        "max_window_rounds": windows,
        "max_window_agent_side_rounds": agent_windows,
        "llm_span_s_rounds": spans.iter().map(|x| r3(*x)).collect::<Vec<_>>(),
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    let max_window_rate = windows.iter().copied().max().unwrap_or(0);
    let (baseline, limited) = (median(&mut baseline), median(&mut limited));
    let values = json!({
        "max_window_rate": max_window_rate,
        "other_kind_tasks_per_sec": r3(limited),
        "baseline_tasks_per_sec": r3(baseline),
        "other_kind_ratio": r3(limited / baseline),
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
