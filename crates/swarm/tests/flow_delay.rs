//! Delayed tasks (`TaskBuilder::delay`, `TaskBuilder::not_before`): accepted at
//! once, never started before their due time, started when due, in due order;
//! cancellable while they wait; no wake-up while nothing is due; a restart
//! keeps their due time. On tokio's paused clock, except the restart (a real
//! FileStore on the real clock).
//!
//! The scheduler turns a wall-clock due time into a tokio deadline when the
//! task arrives: `due - wall_now`, rounded up to a whole millisecond. Under the
//! paused clock the wall clock barely moves, so the bounds asserted here are
//! exact: a task submitted at tokio time `t0` starts no sooner than
//! `t0 + (due - wall after submit)` and no later than
//! `t0 + (due - wall before build) + 1 ms`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use swarm::{
    Agent, ExecuteError, SchedulerMode, Swarm, SystemState, Task, TaskOutcome, TaskOutput,
    Timestamp,
};
use tokio::time::Instant;

/// Records, per task kind, the tokio instant and wall-clock time it started.
#[derive(Clone, Default)]
struct StartClock {
    starts: Arc<Mutex<Vec<(String, Instant, Timestamp)>>>,
}

impl Agent for StartClock {
    async fn execute(&self, task: &Task) -> Result<TaskOutput, ExecuteError> {
        self.starts
            .lock()
            .push((task.kind().to_owned(), Instant::now(), Timestamp::now()));
        Ok(TaskOutput::from("ok"))
    }
}

impl StartClock {
    fn kinds(&self) -> Vec<String> {
        self.starts
            .lock()
            .iter()
            .map(|(k, _, _)| k.clone())
            .collect()
    }

    fn start_of(&self, kind: &str) -> Option<Instant> {
        self.starts
            .lock()
            .iter()
            .find(|(k, _, _)| k == kind)
            .map(|(_, at, _)| *at)
    }
}

async fn swarm_with(agent: StartClock, mode: SchedulerMode) -> Swarm {
    Swarm::builder()
        .agents(1)
        .max_agents(1)
        .autoscale(false)
        .mode(mode)
        .agent_factory(move |_| agent.clone())
        .build()
        .await
        .unwrap()
}

fn delayed(kind: &str, delay: Duration) -> Task {
    Task::builder(kind).delay(delay).build().unwrap()
}

/// Submits `task` and returns its handle, the tokio instant of the submit and
/// the bounds (from that instant) within which it must start.
async fn submit_timed(
    swarm: &Swarm,
    task: Task,
) -> (swarm::TaskHandle, Instant, Duration, Duration) {
    let due = task.not_before().unwrap();
    let built_at = task.created_at();
    let t0 = Instant::now();
    let handle = swarm.submit(task).await.unwrap();
    let earliest = due.saturating_duration_since(Timestamp::now());
    let latest = due.saturating_duration_since(built_at) + Duration::from_millis(1);
    (handle, t0, earliest, latest)
}

#[tokio::test(start_paused = true)]
async fn a_delayed_task_is_accepted_at_once_never_starts_early_and_starts_when_due() {
    for mode in [
        SchedulerMode::Event,
        SchedulerMode::Polling {
            interval: Duration::from_millis(500),
            batch: 10,
        },
    ] {
        let agent = StartClock::default();
        let swarm = swarm_with(agent.clone(), mode).await;
        let (handle, t0, earliest, latest) =
            submit_timed(&swarm, delayed("later", Duration::from_secs(10))).await;
        // Accepted at once: submit did not wait for the due time.
        assert_eq!(Instant::now(), t0, "{mode:?}: submit waited");
        let stats = swarm.stats();
        assert_eq!((stats.delayed, stats.queued), (1, 0), "{mode:?}");
        assert!(matches!(handle.await, TaskOutcome::Completed { .. }));
        let started = agent.start_of("later").unwrap() - t0;
        assert!(
            started >= earliest,
            "{mode:?}: started {started:?}, due {earliest:?}"
        );
        // Event mode starts it when due; polling mode at its next tick after.
        let slack = match mode {
            SchedulerMode::Event => Duration::ZERO,
            SchedulerMode::Polling { interval, .. } => interval,
        };
        assert!(
            started <= latest + slack,
            "{mode:?}: started {started:?}, due {latest:?}"
        );
        assert_eq!(swarm.stats().delayed, 0);
        swarm.shutdown(Duration::from_secs(1)).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn delayed_tasks_start_in_due_order_and_an_earlier_arrival_re_arms_the_timer() {
    let agent = StartClock::default();
    let swarm = swarm_with(agent.clone(), SchedulerMode::Event).await;
    let mut handles = Vec::new();
    let mut bounds = Vec::new();
    // The latest first: each later submit with an earlier due time must
    // re-arm the one timer, or "d10" would wait for "d30".
    for (kind, secs) in [("d30", 30), ("d10", 10), ("d20", 20), ("d10b", 10)] {
        let (h, t0, earliest, latest) =
            submit_timed(&swarm, delayed(kind, Duration::from_secs(secs))).await;
        handles.push(h);
        bounds.push((kind, t0, earliest, latest));
    }
    handles.push(
        swarm
            .submit(Task::builder("now").build().unwrap())
            .await
            .unwrap(),
    );
    for h in handles {
        assert!(matches!(h.await, TaskOutcome::Completed { .. }));
    }
    assert_eq!(agent.kinds(), ["now", "d10", "d10b", "d20", "d30"]);
    for (kind, t0, earliest, latest) in bounds {
        let started = agent.start_of(kind).unwrap() - t0;
        assert!(
            started >= earliest && started <= latest,
            "{kind}: {started:?} not in [{earliest:?}, {latest:?}]"
        );
    }
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_delayed_task_can_be_cancelled_and_never_starts() {
    let agent = StartClock::default();
    let swarm = swarm_with(agent.clone(), SchedulerMode::Event).await;
    let first = swarm
        .submit(delayed("first", Duration::from_secs(5)))
        .await
        .unwrap();
    let second = swarm
        .submit(delayed("second", Duration::from_secs(8)))
        .await
        .unwrap();
    swarm.cancel(first.id()).unwrap();
    assert_eq!(first.await, TaskOutcome::Cancelled { was_running: false });
    assert_eq!(swarm.stats().delayed, 1);
    assert!(matches!(second.await, TaskOutcome::Completed { .. }));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        agent.kinds(),
        ["second"],
        "a cancelled delayed task started"
    );
    assert_eq!(swarm.stats().cancelled, 1);
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn nothing_wakes_while_nothing_is_due() {
    let agent = StartClock::default();
    let swarm = swarm_with(agent.clone(), SchedulerMode::Event).await;
    let handle = swarm
        .submit(delayed("late", Duration::from_secs(3600)))
        .await
        .unwrap();
    // The earliest task, cancelled: its timer must go with it, and the
    // remaining one's be armed instead (no wake-up at the cancelled time).
    let early = swarm
        .submit(delayed("early", Duration::from_secs(60)))
        .await
        .unwrap();
    swarm.cancel(early.id()).unwrap();
    tokio::task::yield_now().await;
    let before = swarm.stats().wakeups;
    tokio::time::sleep(Duration::from_secs(3590)).await;
    assert_eq!(swarm.stats().wakeups, before, "woke while nothing was due");
    assert!(agent.kinds().is_empty());
    assert!(matches!(handle.await, TaskOutcome::Completed { .. }));
    let after_due = swarm.stats().wakeups;
    assert!(
        after_due > before,
        "the due task did not wake the scheduler"
    );
    // Nothing delayed any more: no timer, no wake-up.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(
        swarm.stats().wakeups,
        after_due,
        "woke with nothing delayed"
    );
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_due_time_in_the_past_starts_at_once() {
    let agent = StartClock::default();
    let swarm = swarm_with(agent.clone(), SchedulerMode::Event).await;
    let past = SystemTime::now() - Duration::from_secs(60);
    let t0 = Instant::now();
    let handle = swarm
        .submit(Task::builder("past").not_before(past).build().unwrap())
        .await
        .unwrap();
    assert!(matches!(handle.await, TaskOutcome::Completed { .. }));
    assert_eq!(agent.start_of("past").unwrap(), t0);
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

/// A real FileStore on the real clock: a delayed task accepted by one swarm,
/// which shuts down before it is due, is started by the next swarm on the
/// same log no sooner than its due time, which the log kept.
#[tokio::test]
async fn a_restart_keeps_a_delayed_tasks_due_time() {
    let dir = tempfile::tempdir().unwrap();
    let build = |agent: StartClock| {
        Swarm::builder()
            .agents(1)
            .max_agents(1)
            .autoscale(false)
            .agent_factory(move |_| agent.clone())
            .file_store(dir.path())
            .build()
    };
    let first = StartClock::default();
    let swarm = build(first.clone()).await.unwrap();
    let task = Task::builder("later")
        .key("tenant-a")
        .cost(7)
        .delay(Duration::from_millis(1500))
        .build()
        .unwrap();
    let (id, due) = (task.id(), task.not_before().unwrap());
    let handle = swarm.submit(task).await.unwrap();
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
    assert_eq!(handle.await, TaskOutcome::Interrupted);
    assert!(first.kinds().is_empty(), "started before the restart");

    let log = swarm::FileStore::open(dir.path()).unwrap();
    let state = SystemState::replay(&log).await.unwrap();
    drop(log);
    let recorded = state.task(id).expect("the log lost the delayed task");
    assert_eq!(recorded.task.not_before(), Some(due));
    assert_eq!(
        (recorded.task.key(), recorded.task.cost()),
        (Some("tenant-a"), 7)
    );

    let second = StartClock::default();
    let swarm = build(second.clone()).await.unwrap();
    assert_eq!(swarm.stats().delayed, 1, "the restart lost the delay");
    let started = loop {
        if let Some((_, _, wall)) = second.starts.lock().first().cloned() {
            break wall;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(started >= due, "started at {started}, due {due}");
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}
