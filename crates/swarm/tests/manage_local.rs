//! The management API on a local swarm, each test run on a `MemoryStore` and
//! on a `FileStore` (the restart tests on a `FileStore` only): task lookup
//! and listing, dead-letter retry and discard (journaled, and what a restart
//! replays), pause and resume, scale_to, the overview, a task's events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use swarm::{
    Agent, Event, ExecuteError, ManageError, Priority, Swarm, SwarmBuilder, Task, TaskFilter,
    TaskId, TaskOutcome, TaskOutput, TaskStatus,
};
use tokio::sync::Semaphore;

/// `"ok"` succeeds; `"flaky"` fails for good while `broken` is set;
/// `"block"` waits for a permit of `release`. Counts the attempts it starts.
#[derive(Clone)]
struct TestAgent {
    broken: Arc<AtomicBool>,
    started: Arc<AtomicUsize>,
    release: Arc<Semaphore>,
}

impl TestAgent {
    fn new() -> Self {
        TestAgent {
            broken: Arc::new(AtomicBool::new(true)),
            started: Arc::new(AtomicUsize::new(0)),
            release: Arc::new(Semaphore::new(0)),
        }
    }
}

impl Agent for TestAgent {
    async fn execute(&self, task: &Task) -> Result<TaskOutput, ExecuteError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        match task.kind() {
            "flaky" if self.broken.load(Ordering::SeqCst) => {
                Err(ExecuteError::permanent("the service is broken"))
            }
            "block" => {
                self.release.acquire().await.unwrap().forget();
                Ok(TaskOutput::from("released"))
            }
            _ => Ok(TaskOutput::from("ok")),
        }
    }
}

/// Where a test's swarm keeps its log.
enum Store {
    Memory,
    File(tempfile::TempDir),
}

impl Store {
    fn all() -> Vec<Store> {
        vec![Store::Memory, Store::File(tempfile::tempdir().unwrap())]
    }

    fn name(&self) -> &'static str {
        match self {
            Store::Memory => "memory",
            Store::File(_) => "file",
        }
    }

    fn apply(&self, builder: SwarmBuilder) -> SwarmBuilder {
        match self {
            Store::Memory => builder.memory_store(),
            Store::File(dir) => builder.file_store(dir.path()),
        }
    }
}

fn builder(agent: &TestAgent, agents: usize) -> SwarmBuilder {
    let agent = agent.clone();
    Swarm::builder()
        .agents(agents)
        .min_agents(1)
        .max_agents(4)
        .autoscale(false)
        .default_timeout(None)
        .agent_factory(move |_| agent.clone())
}

async fn build(store: &Store, agent: &TestAgent, agents: usize) -> Swarm {
    store.apply(builder(agent, agents)).build().await.unwrap()
}

/// Builds on `dir` once the previous swarm let go of its lock.
async fn reopen(dir: &Path, agent: &TestAgent) -> Swarm {
    for _ in 0..500 {
        if let Ok(swarm) = builder(agent, 1).file_store(dir).build().await {
            return swarm;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the store stayed locked after its swarm was dropped");
}

fn task(kind: &str, id: u64) -> Task {
    Task::builder(kind)
        .id(TaskId::from_u64(id))
        .max_attempts(2)
        .build()
        .unwrap()
}

/// A dead letter: a flaky task submitted while broken.
async fn dead_letter(swarm: &Swarm, id: u64) -> TaskId {
    let handle = swarm.submit(task("flaky", id)).await.unwrap();
    assert!(matches!(handle.await, TaskOutcome::DeadLettered { .. }));
    swarm.sync_view().await.unwrap();
    TaskId::from_u64(id)
}

/// Waits for `task:completed` of `id` on `events`.
async fn completed(events: &mut swarm::EventStream, id: TaskId) {
    while let Some(event) = events.next().await {
        if let Ok(Event::TaskCompleted(e)) = event
            && e.task_id == id
        {
            return;
        }
    }
    panic!("the event stream ended before task {id} completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_task_lookup_and_paginated_listing() {
    for store in Store::all() {
        let agent = TestAgent::new();
        let swarm = build(&store, &agent, 2).await;
        let mut handles = Vec::new();
        for id in 1..=5 {
            handles.push(swarm.submit(task("ok", id)).await.unwrap());
        }
        for handle in handles {
            assert!(handle.await.is_completed());
        }
        let dead = dead_letter(&swarm, 9).await;

        let info = swarm.task(TaskId::from_u64(3)).unwrap();
        assert_eq!(info.status, TaskStatus::Completed, "{}", store.name());
        assert_eq!(
            (info.kind.as_str(), info.priority),
            ("ok", Priority::Normal)
        );
        assert_eq!((info.attempts, info.max_attempts), (1, 2));
        assert!(info.agent.is_some() && info.created_seq > 0);
        let info = swarm.task(dead).unwrap();
        assert_eq!(info.status, TaskStatus::DeadLettered);
        assert_eq!(info.errors, vec!["the service is broken".to_owned()]);
        assert!(swarm.task(TaskId::from_u64(77)).is_none());

        // Pages of two in ascending id order, then the kind filter.
        let mut seen = Vec::new();
        let mut filter = TaskFilter::new().status(TaskStatus::Completed).limit(2);
        loop {
            let page = swarm.tasks(&filter);
            assert!(page.tasks.len() <= 2);
            seen.extend(page.tasks.iter().map(|t| t.id.as_u64()));
            match page.next {
                Some(next) => filter = filter.after(next),
                None => break,
            }
        }
        assert_eq!(seen, vec![1, 2, 3, 4, 5], "{}", store.name());
        let flaky = swarm.tasks(&TaskFilter::new().kind("flaky"));
        assert_eq!(flaky.tasks.len(), 1);
        assert_eq!(flaky.next, None);
        let dead_letters = swarm.dead_letters(&TaskFilter::new());
        assert_eq!(
            dead_letters.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
            vec![dead]
        );
        swarm.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_retry_dead_letter_runs_it_again_with_fresh_attempts() {
    for store in Store::all() {
        let agent = TestAgent::new();
        let swarm = build(&store, &agent, 1).await;
        let dead = dead_letter(&swarm, 1).await;
        let ok = swarm.submit(task("ok", 2)).await.unwrap();
        assert!(ok.await.is_completed());
        swarm.sync_view().await.unwrap();

        assert!(matches!(
            swarm.retry_dead_letter(TaskId::from_u64(2)).await,
            Err(ManageError::NotDeadLettered {
                status: TaskStatus::Completed,
                ..
            })
        ));
        assert!(matches!(
            swarm.retry_dead_letter(TaskId::from_u64(99)).await,
            Err(ManageError::UnknownTask(_))
        ));

        agent.broken.store(false, Ordering::SeqCst);
        let handle = swarm.retry_dead_letter(dead).await.unwrap();
        assert_eq!(handle.id(), dead);
        match handle.await {
            TaskOutcome::Completed { attempt, .. } => {
                assert_eq!(attempt, 1, "the retry's attempts are fresh")
            }
            other => panic!("{}: the retried task ended {other:?}", store.name()),
        }
        swarm.sync_view().await.unwrap();
        let info = swarm.task(dead).unwrap();
        assert_eq!(info.status, TaskStatus::Completed);
        assert_eq!(info.attempts, 1);
        assert!(
            info.errors.is_empty(),
            "{}: errors of the dead letter kept: {:?}",
            store.name(),
            info.errors
        );
        assert!(swarm.dead_letters(&TaskFilter::new()).tasks.is_empty());
        // Not a dead letter any more.
        assert!(matches!(
            swarm.retry_dead_letter(dead).await,
            Err(ManageError::NotDeadLettered { .. })
        ));
        swarm.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_discard_dead_letter_is_journaled_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    for store in [Store::Memory, Store::File(tempfile::tempdir().unwrap())] {
        let agent = TestAgent::new();
        let swarm = build(&store, &agent, 1).await;
        let dead = dead_letter(&swarm, 1).await;
        let kept = dead_letter(&swarm, 2).await;
        swarm.discard_dead_letter(dead).await.unwrap();
        let listed: Vec<TaskId> = swarm
            .dead_letters(&TaskFilter::new())
            .tasks
            .iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(listed, vec![kept], "{}", store.name());
        assert!(swarm.discard_dead_letter(dead).await.is_err());
        let events = swarm.task_events(kept, 100).await.unwrap();
        assert!(matches!(
            events.last().map(|e| &e.event),
            Some(Event::TaskDeadLettered(_))
        ));
        swarm.shutdown(Duration::from_secs(5)).await.unwrap();
    }

    // Replayed after a restart: the discarded one is not a dead letter.
    let agent = TestAgent::new();
    let swarm = builder(&agent, 1)
        .file_store(dir.path())
        .build()
        .await
        .unwrap();
    let dead = dead_letter(&swarm, 1).await;
    swarm.discard_dead_letter(dead).await.unwrap();
    swarm.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(swarm);
    let swarm = reopen(dir.path(), &agent).await;
    assert!(swarm.dead_letters(&TaskFilter::new()).tasks.is_empty());
    let log = swarm.store().read(1).collect::<Vec<_>>().await;
    assert!(log.iter().any(
        |e| matches!(&e.as_ref().unwrap().event, Event::TaskDiscarded(d) if d.task_id == dead)
    ));
    swarm.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// The retry is in the log before the task is queued again: a swarm that
/// dies right after it (here paused, so the task never ran) comes back with
/// the task pending, re-queues it, and runs it with fresh attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_retry_survives_a_crash_and_restart_requeues_it() {
    let dir = tempfile::tempdir().unwrap();
    let agent = TestAgent::new();
    let swarm = builder(&agent, 1)
        .file_store(dir.path())
        .build()
        .await
        .unwrap();
    let dead = dead_letter(&swarm, 1).await;
    swarm.pause().await.unwrap();
    agent.broken.store(false, Ordering::SeqCst);
    let handle = swarm.retry_dead_letter(dead).await.unwrap();
    let started = agent.started.load(Ordering::SeqCst);
    // The log: the retry before the task's next enqueue.
    let log: Vec<_> = swarm.store().read(1).map(|e| e.unwrap()).collect().await;
    let retried = log
        .iter()
        .position(|e| matches!(&e.event, Event::TaskDeadLetterRetried(r) if r.task_id == dead && r.attempts == 1))
        .expect("task:dead_letter_retried is in the log");
    let dead_at = log
        .iter()
        .position(|e| matches!(&e.event, Event::TaskDeadLettered(d) if d.task_id == dead))
        .unwrap();
    assert!(dead_at < retried);
    assert!(
        log[dead_at..retried]
            .iter()
            .all(|e| !matches!(&e.event, Event::TaskEnqueued(q) if q.task_id == dead)),
        "the task was queued before its retry was recorded"
    );
    // Crash: drop without shutdown.
    drop(swarm);
    assert_eq!(handle.await, TaskOutcome::Interrupted);
    assert_eq!(
        agent.started.load(Ordering::SeqCst),
        started,
        "it ran while paused"
    );

    let swarm = reopen(dir.path(), &agent).await;
    assert!(
        swarm.is_paused(),
        "a swarm paused in its log comes back paused"
    );
    let info = swarm.task(dead).unwrap();
    assert!(
        matches!(info.status, TaskStatus::Pending | TaskStatus::Queued),
        "after replay the retried task is {:?}",
        info.status
    );
    assert_eq!(info.attempts, 0);
    let mut events = swarm.events();
    swarm.resume().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), completed(&mut events, dead))
        .await
        .expect("the re-queued retry completes after the resume");
    swarm.sync_view().await.unwrap();
    assert_eq!(swarm.task(dead).unwrap().attempts, 1);
    swarm.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_pause_lets_running_finish_and_starts_nothing_until_resume() {
    for store in Store::all() {
        let agent = TestAgent::new();
        let swarm = build(&store, &agent, 2).await;
        let running = swarm.submit(task("block", 1)).await.unwrap();
        while agent.started.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        swarm.pause().await.unwrap();
        assert!(swarm.is_paused() && swarm.overview().paused);
        // Submit still accepts; nothing starts, though an agent is idle.
        let mut waiting = Vec::new();
        for id in 2..=4 {
            waiting.push(swarm.submit(task("ok", id)).await.unwrap());
        }
        // The running task finishes.
        agent.release.add_permits(1);
        assert!(running.await.is_completed(), "{}", store.name());
        swarm.sync_view().await.unwrap();
        let wakeups = swarm.stats().wakeups;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            agent.started.load(Ordering::SeqCst),
            1,
            "a task started while paused"
        );
        assert_eq!(swarm.stats().queued, 3);
        assert_eq!(
            swarm.stats().wakeups,
            wakeups,
            "something woke while paused"
        );
        swarm.sync_view().await.unwrap();
        let overview = swarm.overview();
        assert_eq!(overview.tasks.queued, 3);
        assert_eq!(overview.queues["normal"], 3);
        // Pausing again records nothing.
        swarm.pause().await.unwrap();

        swarm.resume().await.unwrap();
        assert!(!swarm.is_paused());
        for handle in waiting {
            assert!(handle.await.is_completed());
        }
        swarm.resume().await.unwrap();
        let log: Vec<_> = swarm
            .store()
            .read(1)
            .map(|e| e.unwrap().event)
            .collect()
            .await;
        let pauses = log
            .iter()
            .filter(|e| matches!(e, Event::SwarmPaused(_)))
            .count();
        let resumes = log
            .iter()
            .filter(|e| matches!(e, Event::SwarmResumed(_)))
            .count();
        assert_eq!((pauses, resumes), (1, 1), "{}", store.name());
        swarm.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_a_paused_swarm_restarts_paused_and_resumes_its_queue() {
    let dir = tempfile::tempdir().unwrap();
    let agent = TestAgent::new();
    let swarm = builder(&agent, 1)
        .file_store(dir.path())
        .build()
        .await
        .unwrap();
    swarm.pause().await.unwrap();
    let _queued = swarm.submit(task("ok", 1)).await.unwrap();
    swarm.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(swarm);

    let swarm = reopen(dir.path(), &agent).await;
    assert!(swarm.is_paused());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        agent.started.load(Ordering::SeqCst),
        0,
        "a recovered task started while paused"
    );
    let mut events = swarm.events();
    swarm.resume().await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        completed(&mut events, TaskId::from_u64(1)),
    )
    .await
    .expect("the recovered task runs after the resume");
    swarm.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(swarm);
    let swarm = reopen(dir.path(), &agent).await;
    assert!(
        !swarm.is_paused(),
        "resumed in the log, yet restarted paused"
    );
    swarm.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_scale_to_is_bounded_by_min_and_max_agents() {
    for store in Store::all() {
        let agent = TestAgent::new();
        let swarm = build(&store, &agent, 2).await;
        assert_eq!(swarm.scale_to(4).await.unwrap(), 4);
        assert_eq!(swarm.overview().agents.len(), 4);
        assert_eq!(swarm.scale_to(1).await.unwrap(), 1);
        assert_eq!(swarm.overview().agents.len(), 1);
        for wrong in [0, 5] {
            match swarm.scale_to(wrong).await {
                Err(ManageError::Scale {
                    requested,
                    min: 1,
                    max: 4,
                }) => assert_eq!(requested, wrong),
                other => panic!("scale_to({wrong}) gave {other:?}"),
            }
        }
        // The agents scaled to run tasks.
        assert_eq!(swarm.scale_to(3).await.unwrap(), 3);
        let handle = swarm.submit(task("ok", 1)).await.unwrap();
        assert!(handle.await.is_completed(), "{}", store.name());
        swarm.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_overview_counts_tasks_agents_and_throughput() {
    for store in Store::all() {
        let agent = TestAgent::new();
        let swarm = build(&store, &agent, 2).await;
        let mut handles = Vec::new();
        for id in 1..=6 {
            handles.push(swarm.submit(task("ok", id)).await.unwrap());
        }
        for handle in handles {
            assert!(handle.await.is_completed());
        }
        dead_letter(&swarm, 7).await;
        let overview = swarm.overview();
        assert_eq!(overview.tasks.completed, 6, "{}", store.name());
        assert_eq!(
            (overview.tasks.dead_lettered, overview.tasks.dead_letters),
            (1, 1)
        );
        assert_eq!(
            overview.tasks.queued + overview.tasks.running + overview.tasks.pending,
            0
        );
        assert_eq!(overview.queues.len(), 4);
        assert_eq!(overview.queue_wait_ms.len(), 4);
        assert!(overview.queue_wait_ms["normal"].p99_ms >= overview.queue_wait_ms["normal"].p50_ms);
        assert_eq!(overview.agents.len(), 2);
        let done: u64 = overview.agents.iter().map(|a| a.completed).sum();
        let failed: u64 = overview.agents.iter().map(|a| a.failed).sum();
        assert_eq!((done, failed), (6, 1));
        assert!(overview.throughput_per_sec > 0.0);
        assert!(!overview.paused);
        // The JSON shape the HTTP API serves.
        let json = serde_json::to_value(&overview).unwrap();
        assert_eq!(json["tasks"]["completed"], 6);
        assert_eq!(json["agents"][0]["state"], "idle");
        assert!(json["queue_wait_ms"]["critical"]["p50_ms"].is_number());
        swarm.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_task_events_follow_a_task_through_its_retry() {
    for store in Store::all() {
        let agent = TestAgent::new();
        let swarm = build(&store, &agent, 1).await;
        let dead = dead_letter(&swarm, 1).await;
        let other = swarm.submit(task("ok", 2)).await.unwrap();
        assert!(other.await.is_completed());
        agent.broken.store(false, Ordering::SeqCst);
        assert!(
            swarm
                .retry_dead_letter(dead)
                .await
                .unwrap()
                .await
                .is_completed()
        );
        swarm.sync_view().await.unwrap();

        let events = swarm.task_events(dead, 100).await.unwrap();
        let names: Vec<&str> = events.iter().map(|e| e.event.name()).collect();
        assert_eq!(
            names.first(),
            Some(&"task:created"),
            "{}: {names:?}",
            store.name()
        );
        assert_eq!(names.last(), Some(&"task:completed"), "{names:?}");
        for name in [
            "task:dead_lettered",
            "task:dead_letter_retried",
            "task:assigned",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(events[0].seq, swarm.task(dead).unwrap().created_seq);
        let firsts = swarm.task_events(dead, 2).await.unwrap();
        assert_eq!(firsts, events[..2].to_vec());
        assert!(matches!(
            swarm.task_events(TaskId::from_u64(50), 10).await,
            Err(ManageError::UnknownTask(_))
        ));
        swarm.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

/// Tasks with an affinity for an idle agent wait in its local queue while
/// paused, and that agent takes them at the resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_resume_starts_tasks_queued_by_affinity_while_paused() {
    let agent = TestAgent::new();
    let swarm = build(&Store::Memory, &agent, 2).await;
    let target = swarm.overview().agents[1].id;
    swarm.pause().await.unwrap();
    let mut handles = Vec::new();
    for id in 1..=3 {
        let task = Task::builder("ok")
            .id(TaskId::from_u64(id))
            .affinity(target)
            .pinned(true)
            .build()
            .unwrap();
        handles.push(swarm.submit(task).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(agent.started.load(Ordering::SeqCst), 0);
    assert_eq!(swarm.stats().queued, 3);
    swarm.resume().await.unwrap();
    for handle in handles {
        let outcome = tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .expect("the resume left the pinned tasks waiting");
        match outcome {
            TaskOutcome::Completed { agent_id, .. } => assert_eq!(agent_id, target),
            other => panic!("a pinned task ended {other:?}"),
        }
    }
    swarm.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// The polling baseline honours the pause too: its ticks take nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_pause_holds_the_polling_baseline() {
    let agent = TestAgent::new();
    let swarm = builder(&agent, 2)
        .memory_store()
        .mode(swarm::SchedulerMode::Polling {
            interval: Duration::from_millis(5),
            batch: 10,
        })
        .build()
        .await
        .unwrap();
    swarm.pause().await.unwrap();
    let mut handles = Vec::new();
    for id in 1..=4 {
        handles.push(swarm.submit(task("ok", id)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        agent.started.load(Ordering::SeqCst),
        0,
        "a polling tick ran a task while paused"
    );
    swarm.resume().await.unwrap();
    for handle in handles {
        assert!(handle.await.is_completed());
    }
    swarm.shutdown(Duration::from_secs(5)).await.unwrap();
}
