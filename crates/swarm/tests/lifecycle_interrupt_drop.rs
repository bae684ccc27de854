//! The edges of a task's life: an attempt interrupted by a graceful shutdown,
//! a cancel before the attempt's first poll, durations at their maximum, an
//! attempt that panics outside the agent, and a swarm dropped without shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use support::{ScriptedAgent, task};
use swarm::event::{AgentRemoved, FailureReason, TaskCancelled, TaskFailed};
use swarm::{
    Agent, ExecuteError, Priority, Swarm, SystemState, Task, TaskOutcome, TaskOutput, TaskStatus,
};
use swarm_core::testing::EventRecorder;

/// Hangs on kind "hang" until the test flips `release`, completes anything else.
#[derive(Clone, Default)]
struct GateAgent {
    starts: Arc<Mutex<Vec<String>>>,
}

impl Agent for GateAgent {
    async fn execute(&self, task: &Task) -> Result<TaskOutput, ExecuteError> {
        self.starts.lock().push(task.kind().to_owned());
        if task.kind() == "hang" {
            std::future::pending::<()>().await;
        }
        Ok(TaskOutput::from("ok"))
    }
}

// ---------------------------------------------------------------- item 2

/// Opens the store once the previous swarm has let go of it (its lock).
async fn open_when_released(dir: &std::path::Path) -> swarm::FileStore {
    for _ in 0..500 {
        if let Ok(store) = swarm::FileStore::open(dir) {
            return store;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the store stayed locked after its swarm was shut down and dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_does_not_charge_the_interrupted_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let agent = GateAgent::default();
    let starts = agent.starts.clone();
    let swarm = Swarm::builder()
        .agents(1)
        .autoscale(false)
        .default_timeout(None)
        .agent_factory(move |_| agent.clone())
        .file_store(dir.path())
        .build()
        .await
        .unwrap();
    let once = Task::builder("hang").max_attempts(1).build().unwrap();
    let id = once.id();
    let handle = swarm.submit(once).await.unwrap();
    while starts.lock().is_empty() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let report = swarm.shutdown(Duration::from_millis(50)).await.unwrap();
    assert_eq!(report.interrupted, 1);
    assert_eq!(handle.await, TaskOutcome::Interrupted);
    drop(swarm);

    // The log says: back to pending, no attempt used.
    let store = open_when_released(dir.path()).await;
    let state = SystemState::replay(&store).await.unwrap();
    let record = state.task(id).unwrap();
    assert_eq!(record.status, TaskStatus::Pending, "{record:?}");
    assert_eq!(record.attempts, 0, "the interrupted attempt was charged");
    swarm::EventStore::close(&store).await.unwrap();

    // The next start runs it (its one attempt), not a dead letter. The
    // recorder listens from the start: recovery happens inside `build`.
    let bus = swarm::EventBus::new();
    let recorder = EventRecorder::attach(&bus);
    let swarm = Swarm::builder()
        .bus(bus)
        .agents(1)
        .autoscale(false)
        .agent_factory(|_| ScriptedAgent)
        .file_store(dir.path())
        .build()
        .await
        .unwrap();
    // The recovered task is of kind "hang" for ScriptedAgent too: wait until it starts.
    let mut waited = 0;
    while swarm.stats().running == 0 && waited < 5_000 {
        tokio::time::sleep(Duration::from_millis(1)).await;
        waited += 1;
    }
    assert_eq!(swarm.stats().running, 1, "the recovered task did not start");
    assert_eq!(swarm.stats().dead_lettered, 0);
    assert!(
        recorder
            .of::<TaskFailed>()
            .iter()
            .all(|f| f.reason != FailureReason::Lost),
        "a graceful stop was recovered as a lost attempt"
    );
    swarm.shutdown(Duration::from_millis(10)).await.unwrap();
}

// ---------------------------------------------------------------- item 3

#[tokio::test(start_paused = true)]
async fn cancel_before_the_first_poll_frees_the_agent_and_says_it_never_ran() {
    let agent = GateAgent::default();
    let starts = agent.starts.clone();
    let swarm = Swarm::builder()
        .agents(1)
        .max_agents(1)
        .autoscale(false)
        .agent_factory(move |_| agent.clone())
        .build()
        .await
        .unwrap();
    let recorder = EventRecorder::attach(swarm.bus());
    // No yield between submit and cancel: on this current-thread runtime the
    // agent's loop has not polled the attempt yet.
    let first = swarm.submit(task("first", Priority::Normal)).await.unwrap();
    swarm.cancel(first.id()).unwrap();
    assert_eq!(first.await, TaskOutcome::Cancelled { was_running: false });

    let second = swarm
        .submit(task("second", Priority::Normal))
        .await
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("the only agent leaked: the next task never ran");
    assert!(outcome.is_completed());
    assert_eq!(*starts.lock(), ["second"]);
    let cancelled = recorder.of::<TaskCancelled>();
    assert_eq!(cancelled.len(), 1);
    assert!(!cancelled[0].was_running);
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

// ---------------------------------------------------------------- item 7

#[tokio::test(start_paused = true)]
async fn maximal_durations_saturate_instead_of_panicking() {
    let swarm = Swarm::builder()
        .agents(1)
        .autoscale(false)
        .agent_factory(|_| ScriptedAgent)
        .build()
        .await
        .unwrap();
    let forever = Task::builder("ok").timeout(Duration::MAX).build().unwrap();
    let handle = swarm.submit(forever).await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("the attempt with timeout(Duration::MAX) never ended");
    assert!(outcome.is_completed(), "{outcome:?}");
    // The swarm still works after it.
    let next = swarm.submit(task("ok", Priority::Normal)).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(10), next)
            .await
            .unwrap()
            .is_completed()
    );
    let report = swarm.shutdown(Duration::MAX).await.unwrap();
    assert!(report.finished_in_time);
}

/// An attempt future that panics when it is dropped: a timeout drops it
/// outside the agent's `execute`, so the panic escapes the attempt.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("the agent's future panicked while being dropped");
        }
    }
}

#[derive(Clone, Default)]
struct DropPanicAgent {
    created: Arc<AtomicUsize>,
}

impl Agent for DropPanicAgent {
    async fn execute(&self, task: &Task) -> Result<TaskOutput, ExecuteError> {
        if task.kind() == "drop-panic" {
            let _guard = PanicOnDrop;
            std::future::pending::<()>().await;
        }
        Ok(TaskOutput::from("ok"))
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_that_escapes_an_attempt_replaces_the_agent_and_resolves_the_task() {
    let agent = DropPanicAgent::default();
    let created = agent.created.clone();
    let swarm = Swarm::builder()
        .agents(1)
        .max_agents(1)
        .autoscale(false)
        .agent_factory(move |_| {
            created.fetch_add(1, Ordering::Relaxed);
            agent.clone()
        })
        .build()
        .await
        .unwrap();
    let recorder = EventRecorder::attach(swarm.bus());
    let bad = Task::builder("drop-panic")
        .timeout(Duration::from_millis(10))
        .max_attempts(1)
        .build()
        .unwrap();
    let bad = swarm.submit(bad).await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), bad)
        .await
        .expect("the task of the panicking attempt never resolved");
    assert!(
        matches!(outcome, TaskOutcome::DeadLettered { .. }),
        "{outcome:?}"
    );
    // The swarm goes on: the next task runs (on the same agent or its replacement).
    let next = swarm.submit(task("ok", Priority::Normal)).await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), next)
        .await
        .expect("the swarm stopped after a panic escaped an attempt");
    assert!(outcome.is_completed());
    let _ = recorder.of::<AgentRemoved>();
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

// ---------------------------------------------------------------- item 8

/// Counts starts; holds a token so the test sees when every agent is gone.
#[derive(Clone)]
struct TokenAgent {
    starts: Arc<AtomicUsize>,
    _token: Arc<()>,
}

impl Agent for TokenAgent {
    async fn execute(&self, _task: &Task) -> Result<TaskOutput, ExecuteError> {
        self.starts.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(TaskOutput::from("ok"))
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_a_swarm_without_shutdown_stops_its_agents() {
    let token = Arc::new(());
    let starts = Arc::new(AtomicUsize::new(0));
    let agent = TokenAgent {
        starts: Arc::clone(&starts),
        _token: Arc::clone(&token),
    };
    let swarm = Swarm::builder()
        .agents(2)
        .autoscale(false)
        .agent_factory(move |_| agent.clone())
        .retry(swarm::RetryPolicy {
            max_attempts: 3,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(1),
        })
        .build()
        .await
        .unwrap();
    let handles = swarm
        .submit_batch((0..20).map(|_| task("work", Priority::Normal)).collect())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started_before_drop = starts.load(Ordering::Relaxed);
    assert!(started_before_drop >= 2);
    drop(swarm);
    // Give any surviving loop every chance to run more tasks.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        starts.load(Ordering::Relaxed),
        started_before_drop,
        "agents kept running tasks after the swarm was dropped"
    );
    assert_eq!(
        Arc::strong_count(&token),
        1,
        "agents are still alive after the swarm was dropped"
    );
    // Every handle resolves (interrupted: the tasks were not finished).
    for h in handles {
        let outcome = tokio::time::timeout(Duration::from_secs(1), h)
            .await
            .expect("a handle never resolved after the swarm was dropped");
        assert!(
            matches!(
                outcome,
                TaskOutcome::Interrupted | TaskOutcome::Completed { .. }
            ),
            "{outcome:?}"
        );
    }
}
