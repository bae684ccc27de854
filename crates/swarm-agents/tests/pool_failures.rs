//! Failure handling of the pool on tokio's paused clock: timeouts, panics,
//! permanent errors, exhausted attempts, health streaks, cancellation.

mod support;

use std::time::Duration;

use support::{Act, drive, scripted};
use swarm_agents::{AgentPool, AgentState, Next, PoolConfig, RetryPolicy};
use swarm_core::event::{
    AgentCreated, AgentError, AgentHealth, AgentRemoved, FailureReason, TaskCompleted,
    TaskDeadLettered, TaskFailed,
};
use swarm_core::testing::EventRecorder;
use swarm_core::{AgentId, EventBus, Task};

fn config(agents: usize) -> PoolConfig {
    PoolConfig {
        initial_agents: agents,
        default_timeout: Some(Duration::from_secs(5)),
        ..PoolConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn hanging_agent_is_timed_out_replaced_and_the_task_retried_on_another_agent() {
    let bus = EventBus::new();
    let recorder = EventRecorder::attach(&bus);
    // Agent 0 hangs forever; every other agent succeeds at once.
    let factory = scripted(|id, _| {
        if id == AgentId::new(0) {
            Act::Hang
        } else {
            Act::Succeed
        }
    });
    let pool = AgentPool::new(factory, bus, config(1)).unwrap();
    let task = Task::builder("k").build().unwrap();

    let seen = drive(&pool, vec![task]).await;

    assert_eq!(seen.len(), 2);
    let first = &seen[0];
    assert_eq!(first.executed.agent_id, AgentId::new(0));
    assert_eq!(first.ended - first.started, Duration::from_secs(5));
    assert_eq!(first.executed.duration, Duration::from_secs(5));
    let Next::Retry { after, failure } = &first.executed.next else {
        panic!("expected a retry, got {:?}", first.executed.next)
    };
    assert_eq!(failure.reason, FailureReason::Timeout);
    assert_eq!(first.executed.health, AgentHealth::Unhealthy);
    assert_eq!(first.executed.replaced_by, Some(AgentId::new(1)));

    // The retry starts exactly when its back-off ends, on the replacement.
    let second = &seen[1];
    assert_eq!(second.started - first.ended, *after);
    assert_eq!(second.executed.agent_id, AgentId::new(1));
    assert_eq!(second.executed.attempt, 2);
    assert!(matches!(second.executed.next, Next::Completed(_)));

    let failed = recorder.of::<TaskFailed>();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].reason, FailureReason::Timeout);
    assert!(failed[0].will_retry);
    assert_eq!(failed[0].retry_in, Some(*after));
    let errors = recorder.of::<AgentError>();
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (errors[0].reason, errors[0].health),
        (FailureReason::Timeout, AgentHealth::Unhealthy)
    );
    assert_eq!(recorder.of::<AgentRemoved>()[0].agent_id, AgentId::new(0));
    assert_eq!(recorder.of::<AgentRemoved>()[0].reason, "unhealthy");
    recorder.assert_in_order(&[
        "agent:created",
        "agent:busy",
        "task:failed",
        "agent:error",
        "agent:removed",
        "agent:created",
        "agent:available",
        "agent:busy",
        "task:completed",
    ]);
    assert_eq!(
        pool.agents().iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![AgentId::new(1)]
    );
}

#[tokio::test(start_paused = true)]
async fn task_timeout_overrides_the_pool_default() {
    let factory = scripted(|_, _| Act::Hang);
    let pool = AgentPool::new(factory, EventBus::new(), config(1)).unwrap();
    let task = Task::builder("k")
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let done = pool.execute(AgentId::new(0), task).await.unwrap();
    assert_eq!(done.duration, Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn panicking_agent_is_replaced_and_its_task_retried() {
    let bus = EventBus::new();
    let recorder = EventRecorder::attach(&bus);
    let factory = scripted(|id, _| {
        if id.as_u64() < 2 {
            Act::Panic
        } else {
            Act::Succeed
        }
    });
    let pool = AgentPool::new(factory, bus, config(2)).unwrap();
    let tasks = vec![
        Task::builder("a").build().unwrap(),
        Task::builder("b").build().unwrap(),
    ];
    let ids: Vec<_> = tasks.iter().map(Task::id).collect();

    let seen = drive(&pool, tasks).await;

    // Two panics, then both tasks complete on the replacements 2 and 3.
    assert_eq!(seen.len(), 4);
    for s in &seen[..2] {
        let Next::Retry { failure, .. } = &s.executed.next else {
            panic!("{:?}", s.executed.next)
        };
        assert_eq!(failure.reason, FailureReason::Panic);
        assert!(
            failure.message.contains("scripted panic"),
            "{}",
            failure.message
        );
    }
    let completed = recorder.of::<TaskCompleted>();
    assert_eq!(completed.len(), 2);
    for c in &completed {
        assert!(ids.contains(&c.task_id));
        assert!(
            c.agent_id.as_u64() >= 2,
            "ran on a replacement, not {}",
            c.agent_id
        );
        assert_eq!(c.attempt, 2);
    }
    let removed: Vec<_> = recorder
        .of::<AgentRemoved>()
        .iter()
        .map(|e| e.agent_id.as_u64())
        .collect();
    let created: Vec<_> = recorder
        .of::<AgentCreated>()
        .iter()
        .map(|e| e.agent_id.as_u64())
        .collect();
    assert_eq!(removed.len(), 2);
    assert!(removed.contains(&0) && removed.contains(&1));
    assert_eq!(created, vec![0, 1, 2, 3]);
    assert_eq!(pool.counts().idle, 2);
}

#[tokio::test(start_paused = true)]
async fn permanent_error_dead_letters_at_once() {
    let bus = EventBus::new();
    let recorder = EventRecorder::attach(&bus);
    let factory = scripted(|_, _| Act::Permanent("bad input".into()));
    let pool = AgentPool::new(factory, bus, config(1)).unwrap();
    let task = Task::builder("k").max_attempts(10).build().unwrap();

    let seen = drive(&pool, vec![task]).await;

    assert_eq!(seen.len(), 1);
    let Next::DeadLettered { failure, errors } = &seen[0].executed.next else {
        panic!("{:?}", seen[0].executed.next)
    };
    assert_eq!(failure.reason, FailureReason::Permanent);
    assert_eq!(errors, &vec!["bad input".to_owned()]);
    let failed = recorder.of::<TaskFailed>();
    assert_eq!(failed.len(), 1);
    assert!(!failed[0].will_retry && failed[0].retry_in.is_none());
    let dead = recorder.of::<TaskDeadLettered>();
    assert_eq!(
        (dead[0].attempts, dead[0].errors.clone()),
        (1, vec!["bad input".to_owned()])
    );
    // A permanent error is the task's fault, not the agent's.
    recorder.assert_not_emitted::<AgentError>();
    assert_eq!(pool.agents()[0].health, AgentHealth::Healthy);
}

#[tokio::test(start_paused = true)]
async fn after_max_attempts_the_task_is_dead_lettered_with_every_error() {
    let bus = EventBus::new();
    let recorder = EventRecorder::attach(&bus);
    let factory = scripted(|_, t| {
        Act::Sleep(
            Duration::from_millis(10),
            Box::new(Act::Fail(format!("failure {}", t.attempt()))),
        )
    });
    // A long health streak so the one agent keeps every attempt.
    let mut cfg = config(1);
    cfg.health.unhealthy_after = 100;
    let pool = AgentPool::new(factory, bus, cfg).unwrap();
    let default_task = Task::builder("k").build().unwrap();
    let own_bound = Task::builder("k").max_attempts(5).build().unwrap();

    for (task, attempts) in [(default_task, 3u32), (own_bound, 5)] {
        recorder.clear();
        let id = task.id();
        let seen = drive(&pool, vec![task]).await;
        assert_eq!(seen.len(), attempts as usize);
        let expected: Vec<String> = (1..=attempts).map(|n| format!("failure {n}")).collect();
        let last = seen.last().unwrap();
        let Next::DeadLettered { errors, .. } = &last.executed.next else {
            panic!("{:?}", last.executed.next)
        };
        assert_eq!(errors, &expected);
        let dead = recorder.of::<TaskDeadLettered>();
        assert_eq!(dead.len(), 1);
        assert_eq!(
            (dead[0].task_id, dead[0].attempts, &dead[0].errors),
            (id, attempts, &expected)
        );
        let failed = recorder.of::<TaskFailed>();
        let retries: Vec<bool> = failed.iter().map(|f| f.will_retry).collect();
        let mut want = vec![true; attempts as usize - 1];
        want.push(false);
        assert_eq!(retries, want);
        // Each wait between attempts is exactly the back-off announced, within its bound.
        let policy = RetryPolicy::default();
        for (n, pair) in seen.windows(2).enumerate() {
            let Next::Retry { after, .. } = pair[0].executed.next else {
                panic!()
            };
            assert_eq!(pair[1].started - pair[0].ended, after);
            assert!(after <= policy.ceiling(n as u32 + 1));
        }
        assert!(pool.history(id).is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn error_streak_degrades_then_replaces_the_agent_and_success_resets_it() {
    let bus = EventBus::new();
    let recorder = EventRecorder::attach(&bus);
    // Agent 0 fails every task whose kind is "bad".
    let factory = scripted(|_, t| {
        if t.kind() == "bad" {
            Act::Fail("nope".into())
        } else {
            Act::Succeed
        }
    });
    let pool = AgentPool::new(factory, bus, config(1)).unwrap();
    let a0 = AgentId::new(0);
    let run = |kind: &str| {
        let pool = pool.clone();
        let task = Task::builder(kind).max_attempts(1).build().unwrap();
        async move { pool.execute(a0, task).await.unwrap().health }
    };
    assert_eq!(run("bad").await, AgentHealth::Degraded);
    assert_eq!(run("good").await, AgentHealth::Healthy);
    assert_eq!(run("bad").await, AgentHealth::Degraded);
    assert_eq!(run("bad").await, AgentHealth::Degraded);
    assert_eq!(run("bad").await, AgentHealth::Unhealthy);
    assert!(pool.agent(a0).is_none());
    assert_eq!(pool.agents()[0].id, AgentId::new(1));
    let healths: Vec<_> = recorder
        .of::<AgentError>()
        .iter()
        .map(|e| e.health)
        .collect();
    use AgentHealth::*;
    assert_eq!(healths, vec![Degraded, Degraded, Degraded, Unhealthy]);
}

#[tokio::test(start_paused = true)]
async fn refused_tasks_come_back_untouched() {
    let factory = scripted(|_, _| Act::Sleep(Duration::from_secs(1), Box::new(Act::Succeed)));
    let pool = AgentPool::new(
        factory,
        EventBus::new(),
        PoolConfig {
            reserve_agents: 1,
            ..config(1)
        },
    )
    .unwrap();
    let task = Task::builder("k").build().unwrap();
    let id = task.id();
    let refused = pool.execute(AgentId::new(1), task).await.unwrap_err();
    assert_eq!(
        refused.reason,
        swarm_agents::RefusedReason::Reserve(AgentId::new(1))
    );
    let task = refused.into_inner();
    assert_eq!((task.id(), task.attempt()), (id, 0));
    let refused = pool.execute(AgentId::new(9), task).await.unwrap_err();
    assert_eq!(
        refused.reason,
        swarm_agents::RefusedReason::UnknownAgent(AgentId::new(9))
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_a_running_attempt_frees_its_agent() {
    let factory = scripted(|_, _| Act::Hang);
    let pool = AgentPool::new(factory, EventBus::new(), config(1)).unwrap();
    let task = Task::builder("k").build().unwrap();
    let a0 = AgentId::new(0);
    let running = pool.execute(a0, task);
    tokio::select! {
        _ = running => panic!("a hanging agent cannot finish"),
        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
    }
    assert_eq!(pool.agent(a0).unwrap().state, AgentState::Idle);
    assert_eq!(pool.claim_idle(), Some(a0));
}
