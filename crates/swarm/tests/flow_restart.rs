//! Flow control across a restart, on a durable FileStore, in both scheduling
//! modes, after a graceful shutdown and after a SIGKILL (a child process runs
//! the first swarm, as in `recovery_crash.rs`):
//!
//! - delayed tasks keep their due time: each starts once, after the restart,
//!   no sooner than the due time the log kept (not re-counted from the
//!   restart); one whose due time passed while the swarm was down starts
//!   promptly;
//! - a retry back-off keeps its due time: the retry of an attempt that failed
//!   before the stop is not early after the restart;
//! - throttled tasks keep their place: a backlog held by a concurrency limit
//!   is held by it again (never more than its bound running), each task
//!   starts in submission order within its priority, none is lost, and only
//!   a task running at a kill runs twice.
//!
//! Real clock and real processes (the store and the kill need them). Due
//! times are wall-clock: lower bounds are asserted exactly, upper bounds with
//! a slack that a loaded 2-core machine stays within, yet shorter than the
//! downtime, so a due time re-counted from the restart still fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use swarm::rng::SplitMix64;
use swarm::{
    Agent, Event, EventStore, ExecuteError, FileStore, Priority, RetryPolicy, SchedulerMode,
    Selector, StoredEvent, Swarm, SwarmBuilder, SystemState, Task, TaskId, TaskOutput, TaskStatus,
    Timestamp,
};

const CHILD_DIR: &str = "SWARM_FLOW_RESTART_DIR";
const CHILD_MODE: &str = "SWARM_FLOW_RESTART_MODE";

/// The task whose first attempt fails and waits for its back-off.
const FLAKY: u64 = 201;
/// The backlog of the concurrency limit (odd ids high, even ids normal).
const LLM: std::ops::RangeInclusive<u64> = 101..=110;
const LLM_SLOTS: usize = 2;
const LLM_RUNS: Duration = Duration::from_millis(150);
/// Delayed tasks: id and due time after the submit. The first is due while
/// the swarm is down; the others after the restart.
const DELAYED: [(u64, u64); 4] = [(1, 1000), (2, 3000), (3, 3400), (4, 3800)];
/// How long after the first delayed task's due time the swarm restarts.
const DOWN_AFTER_FIRST_DUE: Duration = Duration::from_millis(700);
/// The back-off ceiling, and the least first back-off the seed must draw
/// (the retry must fall due after the restart to prove anything).
const BACKOFF: Duration = Duration::from_millis(4000);
const LEAST_BACKOFF: Duration = Duration::from_millis(2500);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Event,
    Polling,
}

impl Mode {
    fn scheduler(self) -> SchedulerMode {
        match self {
            Mode::Event => SchedulerMode::Event,
            Mode::Polling => SchedulerMode::Polling {
                interval: POLL_INTERVAL,
                batch: 10,
            },
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Event => "event",
            Mode::Polling => "polling",
        }
    }

    /// How late a task may start after it is due (polling: a tick, and
    /// the tasks ahead of it in the FIFO, run one after another).
    fn slack(self) -> Duration {
        match self {
            Mode::Event => Duration::from_millis(1000),
            Mode::Polling => Duration::from_millis(1300),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Stop {
    /// `Swarm::shutdown`: running tasks finish, the rest stays pending.
    Graceful,
    /// SIGKILL of the child process that runs the first swarm.
    Kill,
}

/// Appends `<what> <id> <wall µs>` lines to a marker file (shared by the
/// child and the parent), and counts the `llm` tasks running at once.
#[derive(Clone)]
struct Marking {
    markers: PathBuf,
    llm_now: Arc<AtomicUsize>,
    llm_max: Arc<AtomicUsize>,
}

/// Counts an `llm` task out however its attempt ends (the future dropped).
struct LlmSlot(Arc<AtomicUsize>);

impl Drop for LlmSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Marking {
    fn new(dir: &Path) -> Marking {
        Marking {
            markers: dir.join("markers.log"),
            llm_now: Arc::default(),
            llm_max: Arc::default(),
        }
    }

    fn mark(&self, what: &str, id: u64) {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.markers)
            .unwrap();
        // One small write per line: O_APPEND keeps lines whole.
        let line = format!("{what} {id} {}\n", Timestamp::now().as_micros());
        file.write_all(line.as_bytes()).unwrap();
    }
}

impl Agent for Marking {
    async fn execute(&self, task: &Task) -> Result<TaskOutput, ExecuteError> {
        let id = task.id().as_u64();
        self.mark("start", id);
        match task.kind() {
            "llm" => {
                let now = self.llm_now.fetch_add(1, Ordering::SeqCst) + 1;
                self.llm_max.fetch_max(now, Ordering::SeqCst);
                let _slot = LlmSlot(Arc::clone(&self.llm_now));
                tokio::time::sleep(LLM_RUNS).await;
            }
            "flaky" if task.attempt() <= 1 => {
                // Marked before the failure is reported: its back-off
                // starts no sooner than this.
                self.mark("fail", id);
                return Err(ExecuteError::retryable("the first attempt fails"));
            }
            _ => {}
        }
        Ok(TaskOutput::from("ok"))
    }
}

/// One marker line.
#[derive(Clone, Debug)]
struct Mark {
    what: String,
    id: u64,
    at: Timestamp,
}

fn marks(dir: &Path) -> Vec<Mark> {
    let text = std::fs::read_to_string(dir.join("markers.log")).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split(' ');
            let what = parts.next()?.to_owned();
            let id = parts.next()?.parse().ok()?;
            let at = Timestamp::from_micros(parts.next()?.parse().ok()?);
            Some(Mark { what, id, at })
        })
        .collect()
}

/// The first seed whose first back-off is at least [`LEAST_BACKOFF`] (the
/// pool draws it from `SplitMix64::new(seed)`; the test checks the
/// `retry_in` the log recorded, so a change there fails loudly, not silently).
fn seed() -> u64 {
    let policy = retry_policy();
    (0..)
        .find(|&seed| policy.delay(1, &mut SplitMix64::new(seed)) >= LEAST_BACKOFF)
        .unwrap()
}

fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base: BACKOFF,
        cap: BACKOFF,
    }
}

fn builder(dir: &Path, mode: Mode, agent: Marking) -> SwarmBuilder {
    Swarm::builder()
        .agents(3)
        .max_agents(3)
        .autoscale(false)
        .default_timeout(None)
        .agent_factory(move |_| agent.clone())
        .file_store(dir.join("log"))
        .mode(mode.scheduler())
        .concurrency_limit(Selector::kind("llm"), LLM_SLOTS)
        .retry(retry_policy())
        .seed(seed())
}

/// The flaky task, the delayed tasks, then the backlog, in that order.
fn workload(base: SystemTime) -> Vec<Task> {
    let id = TaskId::from_u64;
    let mut tasks = vec![Task::builder("flaky").id(id(FLAKY)).build().unwrap()];
    for (n, ms) in DELAYED {
        let due = base + Duration::from_millis(ms);
        tasks.push(
            Task::builder("delayed")
                .id(id(n))
                .not_before(due)
                .build()
                .unwrap(),
        );
    }
    for n in LLM {
        let priority = if n % 2 == 1 {
            Priority::High
        } else {
            Priority::Normal
        };
        tasks.push(
            Task::builder("llm")
                .id(id(n))
                .priority(priority)
                .build()
                .unwrap(),
        );
    }
    tasks
}

fn task_count() -> u64 {
    (1 + DELAYED.len() + LLM.count()) as u64
}

async fn events_of(store: &dyn EventStore) -> Vec<StoredEvent> {
    let mut read = store.read(1);
    let mut out = Vec::new();
    while let Some(stored) = read.next().await {
        out.push(stored.unwrap());
    }
    out
}

fn has_failed(events: &[StoredEvent], id: u64) -> bool {
    events
        .iter()
        .any(|e| matches!(&e.event, Event::TaskFailed(f) if f.task_id.as_u64() == id))
}

/// Runs the first swarm until the backlog is held (two `llm` tasks started)
/// and the flaky task's failure is in the log, then returns it, still running.
async fn first_run(dir: &Path, mode: Mode) -> (Swarm, Vec<swarm::TaskHandle>) {
    let swarm = builder(dir, mode, Marking::new(dir)).build().await.unwrap();
    let handles = swarm
        .submit_batch(workload(SystemTime::now()))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = marks(dir);
        let failed = m.iter().any(|m| m.what == "fail");
        let llm_started = m
            .iter()
            .filter(|m| m.what == "start" && LLM.contains(&m.id))
            .count();
        if failed && llm_started >= 2 && has_failed(&events_of(&**swarm.store()).await, FLAKY) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{mode:?}: the first swarm made no progress: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (swarm, handles)
}

/// The child: runs the first swarm, says `ready` in the markers, then works
/// until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the `..._after_a_kill_...` tests as a child process"]
async fn flow_restart_child() {
    let (Ok(dir), Ok(mode)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_MODE)) else {
        return;
    };
    let mode = if mode == "polling" {
        Mode::Polling
    } else {
        Mode::Event
    };
    let dir = Path::new(&dir);
    let (_swarm, _handles) = first_run(dir, mode).await;
    Marking::new(dir).mark("ready", 0);
    std::future::pending::<()>().await;
}

/// Stops the first swarm the way `stop` says; returns the log's last
/// sequence at the stop.
async fn run_and_stop(dir: &Path, mode: Mode, stop: Stop) -> u64 {
    match stop {
        Stop::Graceful => {
            let (swarm, handles) = first_run(dir, mode).await;
            swarm.shutdown(Duration::from_secs(5)).await.unwrap();
            drop(handles);
        }
        Stop::Kill => {
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "flow_restart_child", "--ignored", "--nocapture"])
                .env(CHILD_DIR, dir)
                .env(CHILD_MODE, mode.name())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while !marks(dir).iter().any(|m| m.what == "ready") {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{mode:?}: the child made no progress"
                );
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "{mode:?}: the child exited early"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            // SIGKILL (what `Child::kill` sends on Unix): no chance to clean up.
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
    let store = FileStore::open(dir.join("log")).unwrap();
    store.last_seq().await.unwrap()
}

async fn restart_keeps_flow_state(mode: Mode, stop: Stop) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let boundary = run_and_stop(dir, mode, stop).await;

    // What the log says at the stop.
    let at_stop = {
        let store = FileStore::open(dir.join("log")).unwrap();
        SystemState::replay(&store).await.unwrap()
    };
    assert_eq!(
        at_stop.tasks().count() as u64,
        task_count(),
        "{mode:?} {stop:?}"
    );
    let due: HashMap<u64, Timestamp> = DELAYED
        .iter()
        .map(|(id, _)| {
            let record = at_stop.task(TaskId::from_u64(*id)).unwrap();
            (
                *id,
                record.task.not_before().expect("the log lost a due time"),
            )
        })
        .collect();
    let completed_at_stop: Vec<u64> = at_stop
        .tasks_with_status(TaskStatus::Completed)
        .map(|t| t.task.id().as_u64())
        .collect();
    let first_starts = marks(dir);
    // A shutdown leaves the backlog pending (only running tasks finish): a
    // slot freed while it drains must not start the next throttled task.
    let backlog_left = LLM.filter(|id| !completed_at_stop.contains(id)).count();
    assert!(
        backlog_left >= LLM.count() - 4,
        "{mode:?} {stop:?}: only {backlog_left} of the backlog were left for the restart"
    );
    for (id, _) in DELAYED {
        assert!(
            !first_starts.iter().any(|m| m.what == "start" && m.id == id),
            "{mode:?} {stop:?}: delayed task {id} started before the stop"
        );
    }

    // Down until the first delayed task is past due.
    let first_due = due[&DELAYED[0].0];
    let wait = first_due.saturating_duration_since(Timestamp::now()) + DOWN_AFTER_FIRST_DUE;
    tokio::time::sleep(wait).await;

    let restarted_at = Timestamp::now();
    let agent = Marking::new(dir);
    let swarm = builder(dir, mode, agent.clone()).build().await.unwrap();
    let to_finish = task_count() - completed_at_stop.len() as u64;
    assert_eq!(swarm.stats().recovered, to_finish, "{mode:?} {stop:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while swarm.stats().completed < to_finish {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{mode:?} {stop:?}: the restarted swarm stalled: {:?}",
            swarm.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    swarm.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(swarm);

    let store = FileStore::open(dir.join("log")).unwrap();
    let end = SystemState::replay(&store).await.unwrap();
    assert_eq!(
        end.count(TaskStatus::Completed) as u64,
        task_count(),
        "{mode:?} {stop:?}: a task was lost"
    );
    let events = events_of(&store).await;
    let all = marks(dir);
    let starts_of = |id: u64| -> Vec<Timestamp> {
        all.iter()
            .filter(|m| m.what == "start" && m.id == id)
            .map(|m| m.at)
            .collect()
    };
    let ctx = format!("{mode:?} {stop:?}");
    let slack = mode.slack();
    // Re-counting the delays from the restart would make them this late.
    let recount =
        restarted_at.saturating_duration_since(first_due) + Duration::from_millis(DELAYED[0].1);
    assert!(recount > slack, "{ctx}: the restart came too early to tell");

    check_delays(&ctx, &due, restarted_at, slack, &starts_of);
    check_back_off(&ctx, &all, &events, restarted_at, slack, &starts_of);
    check_backlog(
        &ctx,
        mode,
        &events,
        boundary,
        &completed_at_stop,
        &first_starts,
        &agent,
        &starts_of,
    );
}

/// Every delayed task started once, after the restart, no sooner than its
/// due time, and no later than the slack after its due time (or after the
/// restart, for the one due while the swarm was down).
fn check_delays(
    ctx: &str,
    due: &HashMap<u64, Timestamp>,
    restarted_at: Timestamp,
    slack: Duration,
    starts_of: &dyn Fn(u64) -> Vec<Timestamp>,
) {
    for (id, _) in DELAYED {
        let starts = starts_of(id);
        assert_eq!(
            starts.len(),
            1,
            "{ctx}: delayed task {id} started {starts:?}"
        );
        let (start, due) = (starts[0], due[&id]);
        assert!(
            start >= due,
            "{ctx}: delayed task {id} started at {start}, due {due}"
        );
        let from = due.max(restarted_at);
        let late = start.saturating_duration_since(from);
        assert!(
            late <= slack,
            "{ctx}: delayed task {id} started {late:?} after {from} (due {due}, restart {restarted_at})"
        );
    }
}

/// The retry of the attempt that failed before the stop started after the
/// restart, no sooner than the failure plus the back-off the log recorded.
fn check_back_off(
    ctx: &str,
    marks: &[Mark],
    events: &[StoredEvent],
    restarted_at: Timestamp,
    slack: Duration,
    starts_of: &dyn Fn(u64) -> Vec<Timestamp>,
) {
    let failed_at = marks
        .iter()
        .filter(|m| m.what == "fail")
        .map(|m| m.at)
        .collect::<Vec<_>>();
    assert_eq!(
        failed_at.len(),
        1,
        "{ctx}: the flaky task failed {failed_at:?}"
    );
    let retry_in = events
        .iter()
        .find_map(|e| match &e.event {
            Event::TaskFailed(f) if f.task_id.as_u64() == FLAKY => Some(f.retry_in),
            _ => None,
        })
        .flatten()
        .expect("the failure records its back-off");
    assert!(
        retry_in >= LEAST_BACKOFF,
        "{ctx}: the seed drew {retry_in:?}"
    );
    let retry_due = Timestamp::from_micros(
        failed_at[0].as_micros() + u64::try_from(retry_in.as_micros()).unwrap(),
    );
    assert!(
        retry_due > restarted_at,
        "{ctx}: the retry was due before the restart, proving nothing"
    );
    let starts = starts_of(FLAKY);
    assert_eq!(starts.len(), 2, "{ctx}: the flaky task started {starts:?}");
    assert!(starts[0] < restarted_at, "{ctx}");
    assert!(
        starts[1] >= retry_due,
        "{ctx}: the retry started at {}, {:?} before its back-off ended at {retry_due}",
        starts[1],
        retry_due.saturating_duration_since(starts[1]),
    );
    let late = starts[1].saturating_duration_since(retry_due);
    assert!(late <= slack, "{ctx}: the retry started {late:?} late");
}

/// The backlog was held by the limit again after the restart, never more
/// than its bound ran, every task first started in submission order within
/// its priority, and only a task running at a kill ran twice.
#[allow(clippy::too_many_arguments)]
fn check_backlog(
    ctx: &str,
    mode: Mode,
    events: &[StoredEvent],
    boundary: u64,
    completed_at_stop: &[u64],
    first_starts: &[Mark],
    agent: &Marking,
    starts_of: &dyn Fn(u64) -> Vec<Timestamp>,
) {
    let most = agent.llm_max.load(Ordering::SeqCst);
    assert!(
        (1..=LLM_SLOTS).contains(&most),
        "{ctx}: {most} llm tasks ran at once"
    );
    let held_after_restart = events.iter().any(|e| {
        e.seq > boundary
            && matches!(&e.event, Event::TaskThrottled(t) if LLM.contains(&t.task_id.as_u64()))
    });
    // Polling mode runs one task at a time: the limit never has to hold one.
    if mode == Mode::Event {
        assert!(
            held_after_restart,
            "{ctx}: the limit held nothing after the restart"
        );
        assert_eq!(
            most, LLM_SLOTS,
            "{ctx}: the restarted swarm ran the backlog below its bound"
        );
    }
    let mut first_assigned: Vec<u64> = Vec::new();
    for e in events {
        if let Event::TaskAssigned(a) = &e.event {
            let id = a.task_id.as_u64();
            if LLM.contains(&id) && !first_assigned.contains(&id) {
                first_assigned.push(id);
            }
        }
    }
    for parity in [1, 0] {
        let order: Vec<u64> = first_assigned
            .iter()
            .copied()
            .filter(|id| id % 2 == parity)
            .collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(
            order, sorted,
            "{ctx}: a priority's backlog started out of submission order"
        );
        assert_eq!(order.len(), LLM.count() / 2, "{ctx}");
    }
    for id in LLM {
        let runs = starts_of(id).len();
        let started_before = first_starts.iter().any(|m| m.what == "start" && m.id == id);
        let expected_max = if started_before && !completed_at_stop.contains(&id) {
            2 // running at the stop: at-least-once
        } else {
            1
        };
        assert!(
            (1..=expected_max).contains(&runs),
            "{ctx}: llm task {id} ran {runs} times"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_mode_keeps_delays_back_off_and_backlog_across_a_shutdown() {
    restart_keeps_flow_state(Mode::Event, Stop::Graceful).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_mode_keeps_delays_back_off_and_backlog_across_a_shutdown() {
    restart_keeps_flow_state(Mode::Polling, Stop::Graceful).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_mode_keeps_delays_back_off_and_backlog_after_a_kill() {
    restart_keeps_flow_state(Mode::Event, Stop::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_mode_keeps_delays_back_off_and_backlog_after_a_kill() {
    restart_keeps_flow_state(Mode::Polling, Stop::Kill).await;
}
