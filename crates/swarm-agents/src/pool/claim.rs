//! Which agent gets a task: claiming and releasing idle agents, and the
//! capability queries that placement asks.

use swarm_core::AgentId;
use swarm_core::event::AgentAvailable;

use super::AgentPool;
use super::state::AgentState;
use crate::agent::{Agent, AgentFactory};
use crate::error::RefusedReason;

impl<F: AgentFactory> AgentPool<F> {
    /// Claims the idle agent with the lowest id: it gets no other task until
    /// [`execute`](Self::execute) or [`release`](Self::release). `None` if no
    /// agent is idle.
    pub fn claim_idle(&self) -> Option<AgentId> {
        self.claim_where(|_| true)
    }

    /// Like [`claim_idle`](Self::claim_idle), among agents that can run tasks of `kind`.
    pub fn claim_idle_for(&self, kind: &str) -> Option<AgentId> {
        self.claim_where(|agent| can_run(agent, kind))
    }

    /// Whether agent `id` is in the pool and can run tasks of `kind`.
    pub fn can_run(&self, id: AgentId, kind: &str) -> bool {
        let state = self.inner.state.lock();
        state
            .agents
            .get(&id)
            .is_some_and(|slot| can_run(&*slot.agent, kind))
    }

    /// Whether some agent of the pool (active or in reserve) can run tasks of
    /// `kind`. `true` for an empty pool: its next agents may.
    pub fn any_can_run(&self, kind: &str) -> bool {
        let state = self.inner.state.lock();
        state.restricted < state.agents.len()
            || state.agents.is_empty()
            || state
                .agents
                .values()
                .any(|slot| can_run(&*slot.agent, kind))
    }

    /// The kinds agent `id` declares it can run (empty: every kind), or
    /// `None` if it is not in the pool.
    pub fn capabilities(&self, id: AgentId) -> Option<Vec<String>> {
        let state = self.inner.state.lock();
        state.agents.get(&id).map(|slot| {
            slot.agent
                .capabilities()
                .iter()
                .map(|k| (*k).to_owned())
                .collect()
        })
    }

    /// Whether some agent declares capabilities (when none does, every agent
    /// runs every kind and callers can skip capability checks).
    pub fn has_capabilities(&self) -> bool {
        self.inner.state.lock().restricted > 0
    }

    /// The idle agents, lowest id first.
    pub fn idle_agents(&self) -> Vec<AgentId> {
        self.inner.state.lock().idle.iter().copied().collect()
    }

    /// Active agents that are working (claimed or busy) and can run `kind`,
    /// lowest id first.
    pub fn working_agents_for(&self, kind: &str) -> Vec<AgentId> {
        let state = self.inner.state.lock();
        let mut ids: Vec<AgentId> = state
            .agents
            .iter()
            .filter(|(_, slot)| {
                matches!(slot.state, AgentState::Claimed | AgentState::Busy)
                    && can_run(&*slot.agent, kind)
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Whether agent `id` is active (idle, claimed or busy; not in reserve).
    pub fn is_active(&self, id: AgentId) -> bool {
        let state = self.inner.state.lock();
        state
            .agents
            .get(&id)
            .is_some_and(|slot| slot.state != AgentState::Reserve)
    }

    fn claim_where(&self, fits: impl Fn(&F::Agent) -> bool) -> Option<AgentId> {
        let (id, overload) = {
            let mut state = self.inner.state.lock();
            let id = state
                .idle
                .iter()
                .copied()
                .find(|id| state.agents.get(id).is_some_and(|s| fits(&s.agent)))?;
            state.set_state(id, AgentState::Claimed);
            (
                id,
                state.check_overload(self.inner.config.overload_threshold),
            )
        };
        if let Some(event) = overload {
            self.inner.bus.emit(event);
        }
        Some(id)
    }

    /// Claims this agent if it is idle.
    pub fn claim(&self, id: AgentId) -> Result<(), RefusedReason> {
        let overload = {
            let mut state = self.inner.state.lock();
            match state.agents.get(&id).map(|s| s.state) {
                None => return Err(RefusedReason::UnknownAgent(id)),
                Some(AgentState::Idle) => {}
                Some(AgentState::Reserve) => return Err(RefusedReason::Reserve(id)),
                Some(_) => return Err(RefusedReason::Busy(id)),
            }
            state.set_state(id, AgentState::Claimed);
            state.check_overload(self.inner.config.overload_threshold)
        };
        if let Some(event) = overload {
            self.inner.bus.emit(event);
        }
        Ok(())
    }

    /// Gives back a claimed agent without running a task on it
    /// (`agent:available` is emitted). Does nothing to other agents.
    pub fn release(&self, id: AgentId) {
        let released = {
            let mut state = self.inner.state.lock();
            let claimed = state.agents.get(&id).map(|s| s.state) == Some(AgentState::Claimed);
            if claimed {
                state.set_state(id, AgentState::Idle);
                state.check_overload(self.inner.config.overload_threshold);
            }
            claimed
        };
        if released {
            self.inner.bus.emit(AgentAvailable { agent_id: id });
        }
    }
}

pub(super) fn can_run<A: Agent>(agent: &A, kind: &str) -> bool {
    let caps = agent.capabilities();
    caps.is_empty() || caps.contains(&kind)
}
