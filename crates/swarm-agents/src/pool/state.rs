//! The pool's bookkeeping: one slot per agent, the counts by state, the idle
//! set, and when the load crosses the overload threshold.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use swarm_core::event::{AgentHealth, CoordinatorOverload};
use swarm_core::{AgentId, TaskId};

use crate::agent::Agent;
use crate::health::HealthTracker;
use swarm_core::rng::SplitMix64;

/// Where an agent is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentState {
    /// Waiting for a task.
    Idle,
    /// Reserved by [`AgentPool::claim_idle`](super::AgentPool::claim_idle) for a task about to start.
    Claimed,
    /// Running a task.
    Busy,
    /// Created in reserve; gets tasks once activated.
    Reserve,
}

/// One agent, as [`AgentPool::agents`](super::AgentPool::agents) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentInfo {
    /// Its id.
    pub id: AgentId,
    /// What it is doing.
    pub state: AgentState,
    /// Its health.
    pub health: AgentHealth,
}

/// Agents by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolCounts {
    /// Waiting for a task.
    pub idle: usize,
    /// Claimed for a task about to start.
    pub claimed: usize,
    /// Running a task.
    pub busy: usize,
    /// In reserve.
    pub reserve: usize,
}

impl PoolCounts {
    /// Agents that take tasks: idle, claimed and busy.
    pub fn active(&self) -> usize {
        self.idle + self.claimed + self.busy
    }
}

pub(super) struct Slot<A> {
    pub(super) agent: Arc<A>,
    pub(super) state: AgentState,
    pub(super) health: HealthTracker,
}

pub(super) struct State<A> {
    pub(super) agents: HashMap<AgentId, Slot<A>>,
    pub(super) idle: BTreeSet<AgentId>,
    pub(super) counts: PoolCounts,
    // Agents whose capabilities are restricted (a non-empty list).
    pub(super) restricted: usize,
    pub(super) next_id: u64,
    pub(super) rng: SplitMix64,
    // Errors of tasks that failed and may run again, for `task:dead_lettered`.
    pub(super) histories: HashMap<TaskId, Vec<String>>,
    pub(super) overloaded: bool,
}

impl<A: Agent> State<A> {
    pub(super) fn set_state(&mut self, id: AgentId, to: AgentState) {
        let Some(slot) = self.agents.get_mut(&id) else {
            return;
        };
        let from = std::mem::replace(&mut slot.state, to);
        *count_of(&mut self.counts, from) -= 1;
        *count_of(&mut self.counts, to) += 1;
        if from == AgentState::Idle {
            self.idle.remove(&id);
        }
        if to == AgentState::Idle {
            self.idle.insert(id);
        }
    }

    pub(super) fn remove(&mut self, id: AgentId) -> Option<Slot<A>> {
        let slot = self.agents.remove(&id)?;
        *count_of(&mut self.counts, slot.state) -= 1;
        self.idle.remove(&id);
        if !slot.agent.capabilities().is_empty() {
            self.restricted -= 1;
        }
        Some(slot)
    }

    pub(super) fn insert(&mut self, id: AgentId, agent: A, state: AgentState) {
        if !agent.capabilities().is_empty() {
            self.restricted += 1;
        }
        self.agents.insert(
            id,
            Slot {
                agent: Arc::new(agent),
                state,
                health: HealthTracker::new(),
            },
        );
        *count_of(&mut self.counts, state) += 1;
        if state == AgentState::Idle {
            self.idle.insert(id);
        }
    }

    // Edge-triggered: Some(event) only when the load crosses the threshold upwards.
    pub(super) fn check_overload(&mut self, threshold: Option<f64>) -> Option<CoordinatorOverload> {
        let threshold = threshold?;
        let total = self.counts.active();
        let busy = self.counts.busy + self.counts.claimed;
        let load = if total == 0 {
            0.0
        } else {
            busy as f64 / total as f64
        };
        let over = load > threshold;
        let crossed = over && !self.overloaded;
        self.overloaded = over;
        crossed.then(|| CoordinatorOverload {
            busy: u32::try_from(busy).unwrap_or(u32::MAX),
            total: u32::try_from(total).unwrap_or(u32::MAX),
            load,
        })
    }
}

fn count_of(counts: &mut PoolCounts, state: AgentState) -> &mut usize {
    match state {
        AgentState::Idle => &mut counts.idle,
        AgentState::Claimed => &mut counts.claimed,
        AgentState::Busy => &mut counts.busy,
        AgentState::Reserve => &mut counts.reserve,
    }
}
