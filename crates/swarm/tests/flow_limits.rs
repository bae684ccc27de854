//! Rate and concurrency limits (`SwarmBuilder::rate_limit`,
//! `SwarmBuilder::concurrency_limit`), on tokio's paused clock: checked
//! against a simple model (never more than n running per concurrency
//! selector; in every window of length `per` at most `count + burst` units
//! started per rate selector), a throttled kind never delays an admissible
//! one, held tasks are not failed and are charged no attempt, slots come back
//! on every end of an attempt, nothing wakes while nothing can be admitted,
//! and bad configurations are refused with typed errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use proptest::prelude::*;
use swarm::event::TaskThrottled;
use swarm::{
    Agent, BuildError, ExecuteError, LimitError, Rate, SchedulerMode, Selector, SubmitError, Swarm,
    Task, TaskId, TaskOutcome, TaskOutput,
};
use tokio::time::Instant;

/// One start, as the agent saw it.
#[derive(Clone, Debug)]
struct Start {
    kind: String,
    cost: u32,
    at: Instant,
}

/// Records every start and how many tasks run at once per kind and per key
/// (the highest ever), then behaves as its plan for the task says.
#[derive(Clone, Default)]
struct Probe {
    starts: Arc<Mutex<Vec<Start>>>,
    running: Arc<Mutex<HashMap<String, (usize, usize)>>>,
    /// How long each task runs (default: no time at all).
    plans: Arc<Mutex<HashMap<TaskId, Duration>>>,
}

/// Counts a task out of `running` when its attempt ends, however it ends
/// (returned, timed out, cancelled, panicked: the future is dropped).
struct Running {
    probe: Probe,
    groups: Vec<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut running = self.probe.running.lock();
        for group in &self.groups {
            if let Some((now, _)) = running.get_mut(group) {
                *now -= 1;
            }
        }
    }
}

impl Probe {
    fn enter(&self, task: &Task) -> Running {
        let mut groups = vec![format!("kind={}", task.kind())];
        if let Some(key) = task.key() {
            groups.push(format!("key={key}"));
        }
        let mut running = self.running.lock();
        for group in &groups {
            let entry = running.entry(group.clone()).or_default();
            entry.0 += 1;
            entry.1 = entry.1.max(entry.0);
        }
        self.starts.lock().push(Start {
            kind: task.kind().to_owned(),
            cost: task.cost(),
            at: Instant::now(),
        });
        Running {
            probe: self.clone(),
            groups,
        }
    }

    fn max_running(&self, group: &str) -> usize {
        self.running.lock().get(group).map_or(0, |(_, max)| *max)
    }

    fn starts(&self) -> Vec<Start> {
        self.starts.lock().clone()
    }

    fn plan(&self, task: &Task, runs: Duration) {
        self.plans.lock().insert(task.id(), runs);
    }
}

impl Agent for Probe {
    async fn execute(&self, task: &Task) -> Result<TaskOutput, ExecuteError> {
        let _running = self.enter(task);
        let runs = self.plans.lock().get(&task.id()).copied();
        if let Some(runs) = runs {
            tokio::time::sleep(runs).await;
        }
        match task.kind() {
            "fail" => Err(ExecuteError::retryable("scripted failure")),
            "permanent" => Err(ExecuteError::permanent("scripted permanent failure")),
            "panic" => panic!("scripted panic"),
            "hang" => {
                std::future::pending::<()>().await;
                Ok(TaskOutput::from("unreachable"))
            }
            _ => Ok(TaskOutput::from("ok")),
        }
    }
}

fn builder(probe: &Probe, agents: usize) -> swarm::SwarmBuilder {
    let probe = probe.clone();
    Swarm::builder()
        .agents(agents)
        .max_agents(agents)
        .autoscale(false)
        .default_timeout(None)
        .agent_factory(move |_| probe.clone())
}

/// The most units started in any closed window `[t, t + per]` among `starts`.
fn max_window(starts: &[&Start], per: Duration) -> u64 {
    let mut times: Vec<(Instant, u32)> = starts.iter().map(|s| (s.at, s.cost)).collect();
    times.sort_by_key(|(at, _)| *at);
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|(at, _)| *at <= times[i].0 + per)
                .map(|(_, cost)| u64::from(*cost))
                .sum()
        })
        .max()
        .unwrap_or(0)
}

/// Counts `task:throttled` events.
fn count_throttled(swarm: &Swarm) -> (Arc<Mutex<u64>>, impl Sized) {
    let seen = Arc::new(Mutex::new(0u64));
    let counter = Arc::clone(&seen);
    let subscription = swarm
        .bus()
        .on::<TaskThrottled>(move |_| *counter.lock() += 1);
    (seen, subscription)
}

#[tokio::test(start_paused = true)]
async fn a_throttled_kind_never_delays_an_admissible_one() {
    for mode in [SchedulerMode::Event, SchedulerMode::polling()] {
        let probe = Probe::default();
        let swarm = builder(&probe, 1)
            .mode(mode)
            .rate_limit(Selector::kind("llm"), Rate::new(1, Duration::from_secs(10)))
            .build()
            .await
            .unwrap();
        let (throttled, _subscription) = count_throttled(&swarm);
        let t0 = Instant::now();
        let mut handles = Vec::new();
        // The llm backlog is queued first, ahead of the other kind.
        for _ in 0..20 {
            handles.push(
                swarm
                    .submit(Task::builder("llm").build().unwrap())
                    .await
                    .unwrap(),
            );
        }
        for _ in 0..5 {
            let task = Task::builder("other").build().unwrap();
            probe.plan(&task, Duration::from_millis(10));
            handles.push(swarm.submit(task).await.unwrap());
        }
        for handle in handles {
            match handle.await {
                // Held, not failed: every task completes on its first attempt.
                TaskOutcome::Completed { attempt, .. } => assert_eq!(attempt, 1, "{mode:?}"),
                other => panic!("{mode:?}: {other:?}"),
            }
        }
        let starts = probe.starts();
        let second_llm = starts.iter().filter(|s| s.kind == "llm").nth(1).unwrap().at;
        let last_other = starts.iter().rfind(|s| s.kind == "other").unwrap().at;
        assert!(
            last_other < second_llm,
            "{mode:?}: the other kind waited for the llm rate"
        );
        let slack = match mode {
            SchedulerMode::Event => Duration::ZERO,
            SchedulerMode::Polling { interval, .. } => interval,
        };
        assert!(
            last_other - t0 <= Duration::from_millis(40) + slack,
            "{mode:?}: the other kind started at {:?}",
            last_other - t0
        );
        // One llm task per 10 s, the first at once.
        let llm: Vec<&Start> = starts.iter().filter(|s| s.kind == "llm").collect();
        assert_eq!(llm.len(), 20);
        assert!(max_window(&llm, Duration::from_secs(10)) <= 2, "{mode:?}");
        assert!(llm[19].at - t0 >= Duration::from_secs(190), "{mode:?}");
        assert!(*throttled.lock() >= 19, "{mode:?}");
        let stats = swarm.stats();
        assert_eq!((stats.failed_attempts, stats.throttled), (0, 0), "{mode:?}");
        swarm.shutdown(Duration::from_secs(1)).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn nothing_wakes_while_no_limit_can_admit_and_one_timer_wakes_when_tokens_are_due() {
    // A concurrency limit whose one slot is held by a task that never ends:
    // the parked tasks wait for a release, and nothing polls meanwhile.
    let probe = Probe::default();
    let swarm = builder(&probe, 2)
        .concurrency_limit(Selector::kind("hang"), 1)
        .rate_limit(
            Selector::kind("slow"),
            Rate::new(1, Duration::from_secs(3600)),
        )
        .build()
        .await
        .unwrap();
    let hanging = swarm
        .submit(Task::builder("hang").build().unwrap())
        .await
        .unwrap();
    let mut parked = Vec::new();
    for _ in 0..3 {
        parked.push(Task::builder("hang").build().unwrap());
    }
    for task in &parked {
        drop(swarm.submit(task.clone()).await.unwrap());
    }
    let first_slow = swarm
        .submit(Task::builder("slow").build().unwrap())
        .await
        .unwrap();
    let second_slow = swarm
        .submit(Task::builder("slow").build().unwrap())
        .await
        .unwrap();
    assert!(matches!(first_slow.await, TaskOutcome::Completed { .. }));
    let t0 = Instant::now();
    let before = swarm.stats();
    assert_eq!(before.throttled, 4);
    tokio::time::sleep(Duration::from_secs(1800)).await;
    let after = swarm.stats();
    assert_eq!(
        after.wakeups, before.wakeups,
        "something woke while nothing was admissible"
    );
    // The rate limit's one timer fires when the next token is due, once.
    assert!(matches!(second_slow.await, TaskOutcome::Completed { .. }));
    assert!(Instant::now() - t0 >= Duration::from_secs(1799));
    // Two wake-ups: the timer, and the idle agent it hands the task to.
    assert_eq!(swarm.stats().wakeups, after.wakeups + 2);
    assert_eq!(probe.max_running("kind=hang"), 1);
    // Cancelling a parked task takes it off its limit's list.
    swarm.cancel(parked[0].id()).unwrap();
    assert_eq!(swarm.stats().throttled, 2);
    // Cancelling the running one frees the slot: the next parked one starts.
    swarm.cancel(hanging.id()).unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    let stats = swarm.stats();
    assert_eq!((stats.running, stats.throttled), (1, 1));
    assert_eq!(probe.max_running("kind=hang"), 1);
    swarm.shutdown(Duration::from_millis(10)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn concurrency_slots_come_back_on_every_end_of_an_attempt() {
    let probe = Probe::default();
    let swarm = builder(&probe, 3)
        .concurrency_limit(Selector::key("x"), 1)
        .build()
        .await
        .unwrap();
    let task = |kind: &str| {
        Task::builder(kind)
            .key("x")
            .max_attempts(2)
            .build()
            .unwrap()
    };
    let mut handles = Vec::new();
    // Retried then dead-lettered; dead-lettered at once; timed out twice;
    // an agent that panics (lost and replaced).
    handles.push(swarm.submit(task("fail")).await.unwrap());
    handles.push(swarm.submit(task("permanent")).await.unwrap());
    let timeout = Task::builder("hang")
        .key("x")
        .max_attempts(2)
        .timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    handles.push(swarm.submit(timeout).await.unwrap());
    handles.push(swarm.submit(task("panic")).await.unwrap());
    for handle in handles {
        let outcome = tokio::time::timeout(Duration::from_secs(600), handle).await;
        assert!(
            matches!(outcome, Ok(TaskOutcome::DeadLettered { .. })),
            "{outcome:?} {:?}",
            swarm.stats()
        );
    }
    // Cancelled while running (it holds the one slot until then: another
    // task of the key waits).
    let cancelled = task("hang");
    let cancelled_id = cancelled.id();
    let cancelled = swarm.submit(cancelled).await.unwrap();
    let waiting = swarm.submit(task("ok")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    let stats = swarm.stats();
    assert_eq!((stats.running, stats.throttled), (1, 1));
    swarm.cancel(cancelled_id).unwrap();
    assert!(matches!(
        cancelled.await,
        TaskOutcome::Cancelled { was_running: true }
    ));
    assert!(matches!(
        waiting.await,
        TaskOutcome::Completed { attempt: 1, .. }
    ));
    // Every slot came back: one more task of the key runs at once.
    let last = swarm.submit(task("ok")).await.unwrap();
    assert!(matches!(
        last.await,
        TaskOutcome::Completed { attempt: 1, .. }
    ));
    assert_eq!(probe.max_running("key=x"), 1);
    let stats = swarm.stats();
    assert_eq!((stats.running, stats.throttled), (0, 0));
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn limits_combine_and_each_key_has_its_own_budget() {
    let probe = Probe::default();
    let swarm = builder(&probe, 8)
        .concurrency_limit(Selector::each_key(), 1)
        .concurrency_limit(Selector::kind("llm"), 3)
        .rate_limit(
            Selector::kind("llm"),
            Rate::new(10, Duration::from_secs(1)).burst(4),
        )
        .build()
        .await
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..40 {
        let task = Task::builder("llm")
            .key(format!("tenant-{}", i % 5))
            .cost(1 + (i % 3))
            .build()
            .unwrap();
        probe.plan(&task, Duration::from_millis(30));
        handles.push(swarm.submit(task).await.unwrap());
    }
    for handle in handles {
        let outcome = tokio::time::timeout(Duration::from_secs(600), handle).await;
        assert!(
            matches!(outcome, Ok(TaskOutcome::Completed { attempt: 1, .. })),
            "{outcome:?} {:?}",
            swarm.stats()
        );
    }
    for tenant in 0..5 {
        assert_eq!(probe.max_running(&format!("key=tenant-{tenant}")), 1);
    }
    assert!(probe.max_running("kind=llm") <= 3);
    let starts = probe.starts();
    let llm: Vec<&Start> = starts.iter().collect();
    assert!(max_window(&llm, Duration::from_secs(1)) <= 14);
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn waits_are_counted_by_limit_in_the_metrics() {
    let probe = Probe::default();
    let swarm = builder(&probe, 1)
        .rate_limit(Selector::kind("llm"), Rate::new(1, Duration::from_secs(1)))
        .build()
        .await
        .unwrap();
    let a = swarm
        .submit(Task::builder("llm").build().unwrap())
        .await
        .unwrap();
    let b = swarm
        .submit(Task::builder("llm").build().unwrap())
        .await
        .unwrap();
    a.await;
    b.await;
    let text = swarm.render_metrics().unwrap();
    assert!(
        text.contains(r#"swarm_limit_waits_total{limit="rate(kind=llm, 1/1s)"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"swarm_limit_wait_seconds_count{limit="rate(kind=llm, 1/1s)"} 1"#),
        "{text}"
    );
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn bad_limits_are_refused_with_typed_errors() {
    type Expected = fn(&LimitError) -> bool;
    let cases: Vec<(swarm::SwarmBuilder, Expected)> = vec![
        (
            Swarm::builder().rate_limit(Selector::kind("a"), Rate::new(0, Duration::from_secs(1))),
            |e| matches!(e, LimitError::ZeroCount { .. }),
        ),
        (
            Swarm::builder().rate_limit(Selector::kind("a"), Rate::new(5, Duration::ZERO)),
            |e| matches!(e, LimitError::ZeroPeriod { .. }),
        ),
        (
            Swarm::builder().rate_limit(Selector::key("t"), Rate::per_second(5).burst(0)),
            |e| matches!(e, LimitError::ZeroBurst { .. }),
        ),
        (
            Swarm::builder().concurrency_limit(Selector::each_key(), 0),
            |e| matches!(e, LimitError::ZeroConcurrency { .. }),
        ),
    ];
    for (builder, expected) in cases {
        match builder.build().await {
            Err(BuildError::Limit(e)) => {
                assert!(expected(&e), "{e}");
                assert!(!e.to_string().contains('\n'), "{e}");
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("built"),
        }
    }
}

#[tokio::test]
async fn a_task_whose_cost_is_over_the_bucket_is_refused_at_submit() {
    let swarm = Swarm::builder()
        .rate_limit(Selector::kind("llm"), Rate::per_minute(90_000).burst(8_000))
        .build()
        .await
        .unwrap();
    let task = Task::builder("llm").cost(8_001).build().unwrap();
    let id = task.id();
    let error = swarm.submit(task).await.unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(
            &error,
            SubmitError::ExceedsLimit {
                capacity: 8_000,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        message.contains("rate(kind=llm, 90000/60s burst 8000)"),
        "{message}"
    );
    assert_eq!(error.into_task().map(|t| t.id()), Some(id));
    // At the size of the bucket it is accepted, and another kind is not limited.
    let fits = swarm
        .submit(Task::builder("llm").cost(8_000).build().unwrap())
        .await
        .unwrap();
    assert!(matches!(fits.await, TaskOutcome::Completed { .. }));
    let other = swarm
        .submit(Task::builder("other").cost(9_000).build().unwrap())
        .await
        .unwrap();
    assert!(matches!(other.await, TaskOutcome::Completed { .. }));
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[cfg(feature = "nats")]
#[tokio::test]
async fn a_distributed_swarm_refuses_limits_at_build() {
    // Refused before any connection is tried: no server is needed.
    let built = Swarm::builder()
        .nats("nats://127.0.0.1:1")
        .concurrency_limit(Selector::kind("llm"), 2)
        .build()
        .await;
    match built {
        Err(BuildError::Limit(LimitError::Distributed { limit })) => {
            assert_eq!(limit, "concurrency(kind=llm, 2)");
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("built"),
    }
}

// ------------------------------------------------------------------ model

/// One generated workload: limits on kinds `a` (concurrency) and `b` (rate),
/// optionally a concurrency bound per key, and tasks of kinds `a`, `b`, `c`
/// (`c` is unlimited) with keys, costs, run times and submit times.
#[derive(Clone, Debug)]
struct Workload {
    agents: usize,
    polling: bool,
    concurrency_a: usize,
    rate_b: (u32, u64, u32),
    per_key: Option<usize>,
    tasks: Vec<(usize, usize, u32, u64, u64)>,
}

fn workload() -> impl Strategy<Value = Workload> {
    (
        1usize..5,
        proptest::bool::weighted(0.2),
        1usize..4,
        (1u32..6, 50u64..500, 1u32..4),
        proptest::option::of(1usize..3),
    )
        .prop_flat_map(|(agents, polling, concurrency_a, rate_b, per_key)| {
            let burst = rate_b.2;
            let tasks = proptest::collection::vec(
                (0usize..3, 0usize..3, 0u32..=burst, 0u64..40, 0u64..300),
                1..40,
            );
            tasks.prop_map(move |tasks| Workload {
                agents,
                polling,
                concurrency_a,
                rate_b,
                per_key,
                tasks,
            })
        })
}

async fn run_workload(w: &Workload) -> Result<(), TestCaseError> {
    let probe = Probe::default();
    let (count, per_ms, burst) = w.rate_b;
    let per = Duration::from_millis(per_ms);
    let mut b = builder(&probe, w.agents)
        .concurrency_limit(Selector::kind("a"), w.concurrency_a)
        .rate_limit(Selector::kind("b"), Rate::new(count, per).burst(burst));
    if let Some(n) = w.per_key {
        b = b.concurrency_limit(Selector::each_key(), n);
    }
    if w.polling {
        b = b.mode(SchedulerMode::Polling {
            interval: Duration::from_millis(5),
            batch: 10,
        });
    }
    let swarm = b.build().await.unwrap();
    let mut tasks = w.tasks.clone();
    tasks.sort_by_key(|t| t.4);
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for (kind, key, cost, runs, at) in tasks {
        tokio::time::sleep_until(t0 + Duration::from_millis(at)).await;
        let mut task = Task::builder(["a", "b", "c"][kind]).cost(cost);
        if key > 0 {
            task = task.key(format!("k{key}"));
        }
        let task = task.build().unwrap();
        probe.plan(&task, Duration::from_millis(runs));
        handles.push((task.id(), swarm.submit(task).await.unwrap()));
    }
    for (_, handle) in handles {
        match handle.await {
            TaskOutcome::Completed { attempt, .. } => prop_assert_eq!(attempt, 1),
            other => prop_assert!(false, "held task did not complete: {other:?}"),
        }
    }
    prop_assert!(probe.max_running("kind=a") <= w.concurrency_a);
    if let Some(n) = w.per_key {
        for key in ["k1", "k2"] {
            let group = format!("key={key}");
            prop_assert!(probe.max_running(&group) <= n, "{} over {}", group, n);
        }
    }
    let starts = probe.starts();
    let b_starts: Vec<&Start> = starts.iter().filter(|s| s.kind == "b").collect();
    let window = max_window(&b_starts, per);
    prop_assert!(
        window <= u64::from(count + burst),
        "{window} units of b started within {per:?} (rate {count}, burst {burst})"
    );
    let stats = swarm.stats();
    prop_assert_eq!(stats.failed_attempts, 0);
    prop_assert_eq!(stats.throttled, 0);
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn limits_hold_against_the_model(w in workload()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(run_workload(&w))?;
    }
}

/// Limits on a durable store, in both modes: the `task:throttled` and
/// `task:unthrottled` events are journaled (the file log's positional
/// encoding has them: without their tags every append with one failed and
/// the swarm refused new work), and the log replays to every task completed.
#[tokio::test]
async fn limits_on_a_file_store_journal_their_waits_and_replay() {
    for mode in [SchedulerMode::Event, SchedulerMode::polling()] {
        let dir = tempfile::tempdir().unwrap();
        let probe = Probe::default();
        let swarm = builder(&probe, 2)
            .mode(mode)
            .file_store(dir.path())
            .concurrency_limit(Selector::kind("llm"), 1)
            .rate_limit(Selector::kind("llm"), Rate::new(50, Duration::from_secs(1)))
            .build()
            .await
            .unwrap();
        let (throttled, _sub) = count_throttled(&swarm);
        let mut handles = Vec::new();
        for _ in 0..6 {
            let task = Task::builder("llm").build().unwrap();
            probe
                .plans
                .lock()
                .insert(task.id(), Duration::from_millis(5));
            handles.push(swarm.submit(task).await.unwrap());
        }
        for handle in handles {
            assert!(
                matches!(handle.await, TaskOutcome::Completed { .. }),
                "{mode:?}"
            );
        }
        assert!(
            *throttled.lock() > 0,
            "{mode:?}: no task waited on the limits"
        );
        swarm.shutdown(Duration::from_secs(5)).await.unwrap();

        let store = swarm::FileStore::open(dir.path()).unwrap();
        let mut kinds = Vec::new();
        let mut read = swarm::EventStore::read(&store, 1);
        while let Some(stored) = futures::StreamExt::next(&mut read).await {
            kinds.push(stored.unwrap().event.name());
        }
        assert!(kinds.contains(&"task:throttled"), "{mode:?}: {kinds:?}");
        assert!(kinds.contains(&"task:unthrottled"), "{mode:?}: {kinds:?}");
        let state = swarm::SystemState::replay(&store).await.unwrap();
        assert_eq!(state.count(swarm::TaskStatus::Completed), 6, "{mode:?}");
    }
}
