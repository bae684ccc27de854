//! Pool membership and dispatch details: mixed agent types, capabilities,
//! overload events, scaling decisions applied, SimAgent pools end to end.

mod support;

use std::time::Duration;

use support::drive;
use swarm_agents::{
    Agent, AgentPool, BoxAgent, BoxAgentFactory, ExecuteError, Next, PoolConfig, RefusedReason,
    ScalingDecision, SimAgent, SimAgentFactory, SimConfig, TaskOutput,
};
use swarm_core::event::{AgentAvailable, AgentCreated, AgentRemoved, CoordinatorOverload};
use swarm_core::testing::EventRecorder;
use swarm_core::{AgentId, EventBus, Task};

struct Summarizer;

impl Agent for Summarizer {
    async fn execute(&self, _task: &Task) -> Result<TaskOutput, ExecuteError> {
        Ok("summary".into())
    }

    fn capabilities(&self) -> &[&str] {
        &["summarize"]
    }
}

#[tokio::test(start_paused = true)]
async fn mixed_agents_share_a_pool_and_capabilities_route_tasks() {
    let factory = BoxAgentFactory::new(|id: AgentId| {
        if id.as_u64() == 0 {
            BoxAgent::new(Summarizer)
        } else {
            BoxAgent::new(SimAgent::new(SimConfig::instant(), id.as_u64()))
        }
    });
    let config = PoolConfig {
        initial_agents: 2,
        ..PoolConfig::default()
    };
    let pool = AgentPool::new(factory, EventBus::new(), config).unwrap();

    // Agent 0 only summarizes; agent 1 does anything.
    assert_eq!(pool.claim_idle_for("translate"), Some(AgentId::new(1)));
    pool.release(AgentId::new(1));
    let refused = pool
        .execute(AgentId::new(0), Task::builder("translate").build().unwrap())
        .await
        .unwrap_err();
    assert_eq!(refused.reason, RefusedReason::Incapable(AgentId::new(0)));
    let done = pool
        .execute(AgentId::new(0), Task::builder("summarize").build().unwrap())
        .await
        .unwrap();
    assert_eq!(done.next, Next::Completed("summary".into()));
}

#[test]
fn overload_is_reported_once_per_crossing() {
    let bus = EventBus::new();
    let recorder = EventRecorder::attach(&bus);
    let config = PoolConfig {
        initial_agents: 5,
        ..PoolConfig::default()
    };
    let pool = AgentPool::new(SimAgentFactory::new(SimConfig::instant()), bus, config).unwrap();
    let ids: Vec<_> = (0..5).map(|_| pool.claim_idle().unwrap()).collect();
    // 4/5 = 0.8 is not over the threshold; 5/5 is.
    let overloads = recorder.of::<CoordinatorOverload>();
    assert_eq!(overloads.len(), 1);
    assert_eq!((overloads[0].busy, overloads[0].total), (5, 5));
    pool.release(ids[0]);
    pool.release(ids[1]);
    pool.claim_idle().unwrap();
    assert_eq!(recorder.count::<CoordinatorOverload>(), 1);
    pool.claim_idle().unwrap();
    assert_eq!(recorder.count::<CoordinatorOverload>(), 2);
}

#[test]
fn scaling_decisions_become_membership_events() {
    let bus = EventBus::new();
    let recorder = EventRecorder::attach(&bus);
    let config = PoolConfig {
        initial_agents: 1,
        reserve_agents: 1,
        ..PoolConfig::default()
    };
    let pool = AgentPool::new(SimAgentFactory::new(SimConfig::instant()), bus, config).unwrap();
    let created = recorder.of::<AgentCreated>();
    assert_eq!(
        created.iter().map(|e| e.reserve).collect::<Vec<_>>(),
        vec![false, true]
    );
    recorder.clear();

    assert_eq!(
        pool.apply(ScalingDecision::Grow(2)).unwrap(),
        vec![AgentId::new(2), AgentId::new(3)]
    );
    assert_eq!(
        pool.apply(ScalingDecision::ActivateReserve(5)).unwrap(),
        vec![AgentId::new(1)]
    );
    assert_eq!(pool.counts().active(), 4);
    assert_eq!(pool.apply(ScalingDecision::Retire(3)).unwrap().len(), 3);
    assert_eq!(pool.counts().active(), 1);
    recorder.assert_names(&[
        "agent:created",
        "agent:available",
        "agent:created",
        "agent:available",
        "agent:available",
        "agent:removed",
        "agent:removed",
        "agent:removed",
    ]);
    assert_eq!(recorder.count::<AgentAvailable>(), 3);
    assert!(
        recorder
            .of::<AgentRemoved>()
            .iter()
            .all(|e| e.reason == "idle")
    );
}

#[tokio::test(start_paused = true)]
async fn flaky_sim_agents_finish_every_task_exactly_once() {
    let sim = SimConfig::fixed(Duration::from_millis(20))
        .with_error_rate(0.2)
        .with_panic_rate(0.05)
        .with_hang_rate(0.05)
        .with_seed(11);
    let config = PoolConfig {
        initial_agents: 4,
        default_timeout: Some(Duration::from_secs(1)),
        ..PoolConfig::default()
    };
    let bus = EventBus::new();
    let recorder = EventRecorder::attach(&bus);
    let pool = AgentPool::new(SimAgentFactory::new(sim), bus, config).unwrap();
    let tasks: Vec<Task> = (0..200)
        .map(|_| Task::builder("k").build().unwrap())
        .collect();
    let mut ids: Vec<_> = tasks.iter().map(Task::id).collect();

    let seen = drive(&pool, tasks).await;

    let mut finished: Vec<_> = seen
        .iter()
        .filter(|s| !matches!(s.executed.next, Next::Retry { .. }))
        .map(|s| s.executed.task.id())
        .collect();
    finished.sort();
    ids.sort();
    assert_eq!(finished, ids, "every task ends exactly once");
    let completed = recorder.count::<swarm_core::event::TaskCompleted>();
    let dead = recorder.count::<swarm_core::event::TaskDeadLettered>();
    assert_eq!(completed + dead, 200);
    assert!(dead > 0 && completed > dead);
    // Every agent that panicked or hung was replaced: the pool keeps its size.
    assert_eq!(pool.counts().active(), 4);
}
