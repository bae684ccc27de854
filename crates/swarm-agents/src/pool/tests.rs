//! Unit tests of the pool; the behaviour across modules is tested in `tests/pool_*.rs`.

use swarm_core::{AgentId, EventBus};

use super::{AgentPool, AgentState, PoolConfig, PoolCounts};
use crate::{RefusedReason, SimAgentFactory, SimConfig};

fn pool(config: PoolConfig) -> AgentPool<SimAgentFactory> {
    AgentPool::new(
        SimAgentFactory::new(SimConfig::instant()),
        EventBus::new(),
        config,
    )
    .unwrap()
}

#[test]
fn new_pool_numbers_agents_from_zero_and_keeps_reserve_apart() {
    let p = pool(PoolConfig {
        initial_agents: 2,
        reserve_agents: 2,
        ..PoolConfig::default()
    });
    let ids: Vec<_> = p
        .agents()
        .iter()
        .map(|a| (a.id.as_u64(), a.state))
        .collect();
    assert_eq!(
        ids,
        vec![
            (0, AgentState::Idle),
            (1, AgentState::Idle),
            (2, AgentState::Reserve),
            (3, AgentState::Reserve)
        ]
    );
    assert_eq!(
        p.activate_reserve(5),
        vec![AgentId::new(2), AgentId::new(3)]
    );
    assert_eq!(p.counts().idle, 4);
}

#[test]
fn claims_are_exclusive_and_released() {
    let p = pool(PoolConfig {
        initial_agents: 1,
        ..PoolConfig::default()
    });
    let a = p.claim_idle().unwrap();
    assert_eq!(p.claim_idle(), None);
    assert_eq!(p.claim(a), Err(RefusedReason::Busy(a)));
    p.release(a);
    assert_eq!(p.claim_idle(), Some(a));
}

#[test]
fn retire_takes_the_newest_idle_agents_only() {
    let p = pool(PoolConfig {
        initial_agents: 3,
        ..PoolConfig::default()
    });
    let claimed = p.claim_idle().unwrap();
    assert_eq!(claimed, AgentId::new(0));
    assert_eq!(
        p.retire_idle(5, "idle"),
        vec![AgentId::new(2), AgentId::new(1)]
    );
    assert_eq!(
        p.counts(),
        PoolCounts {
            idle: 0,
            claimed: 1,
            busy: 0,
            reserve: 0
        }
    );
}
