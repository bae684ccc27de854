//! Which agents are in the pool: spawning (active or in reserve), activating
//! reserve agents, retiring idle ones, removing lost ones, and applying a
//! scaling decision.

use swarm_core::AgentId;
use swarm_core::event::{AgentAvailable, AgentCreated, AgentRemoved};

use super::AgentPool;
use super::state::AgentState;
use crate::agent::AgentFactory;
use crate::error::CreateAgentError;
use crate::scaling::ScalingDecision;

impl<F: AgentFactory> AgentPool<F> {
    /// Removes agent `id` whatever its state (`agent:removed` with `reason`),
    /// for a caller that lost it (its task loop ended). Returns whether it was
    /// in the pool.
    pub fn remove_agent(&self, id: AgentId, reason: &str) -> bool {
        let removed = {
            let mut state = self.inner.state.lock();
            let removed = state.remove(id).is_some();
            if removed {
                state.check_overload(self.inner.config.overload_threshold);
            }
            removed
        };
        if removed {
            self.inner.bus.emit(AgentRemoved {
                agent_id: id,
                reason: reason.to_owned(),
            });
        }
        removed
    }

    /// Creates `n` active agents through the factory (`agent:created`,
    /// `agent:available` for each). On a factory error, the agents created
    /// before it stay in the pool and the error is returned.
    pub fn spawn_agents(&self, n: usize) -> Result<Vec<AgentId>, CreateAgentError> {
        self.spawn(n, false)
    }

    /// Creates `n` reserve agents (`agent:created` with `reserve: true`).
    pub fn spawn_reserve(&self, n: usize) -> Result<Vec<AgentId>, CreateAgentError> {
        self.spawn(n, true)
    }

    fn spawn(&self, n: usize, reserve: bool) -> Result<Vec<AgentId>, CreateAgentError> {
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let id = {
                let mut state = self.inner.state.lock();
                let id = AgentId::new(state.next_id);
                state.next_id += 1;
                id
            };
            // The factory runs outside the lock: it may be slow.
            let agent = self.inner.factory.create(id)?;
            {
                let mut state = self.inner.state.lock();
                let to = if reserve {
                    AgentState::Reserve
                } else {
                    AgentState::Idle
                };
                state.insert(id, agent, to);
                state.check_overload(self.inner.config.overload_threshold);
            }
            self.inner.bus.emit(AgentCreated {
                agent_id: id,
                reserve,
            });
            if !reserve {
                self.inner.bus.emit(AgentAvailable { agent_id: id });
            }
            ids.push(id);
        }
        Ok(ids)
    }

    /// Activates up to `n` reserve agents, lowest ids first
    /// (`agent:available` for each). Returns those activated.
    pub fn activate_reserve(&self, n: usize) -> Vec<AgentId> {
        let ids: Vec<AgentId> = {
            let mut state = self.inner.state.lock();
            let mut ids: Vec<AgentId> = state
                .agents
                .iter()
                .filter(|(_, s)| s.state == AgentState::Reserve)
                .map(|(id, _)| *id)
                .collect();
            ids.sort();
            ids.truncate(n);
            for id in &ids {
                state.set_state(*id, AgentState::Idle);
            }
            state.check_overload(self.inner.config.overload_threshold);
            ids
        };
        for id in &ids {
            self.inner.bus.emit(AgentAvailable { agent_id: *id });
        }
        ids
    }

    /// Removes up to `n` idle agents, highest ids first (the newest go
    /// first), emitting `agent:removed` with `reason` for each.
    pub fn retire_idle(&self, n: usize, reason: &str) -> Vec<AgentId> {
        let ids: Vec<AgentId> = {
            let mut state = self.inner.state.lock();
            let ids: Vec<AgentId> = state.idle.iter().rev().take(n).copied().collect();
            for id in &ids {
                state.remove(*id);
            }
            state.check_overload(self.inner.config.overload_threshold);
            ids
        };
        for id in &ids {
            self.inner.bus.emit(AgentRemoved {
                agent_id: *id,
                reason: reason.to_owned(),
            });
        }
        ids
    }

    /// Applies a scaling decision: grow through the factory, activate reserve
    /// agents, or retire idle ones (reason `"idle"`). Returns the agents
    /// created, activated or removed.
    pub fn apply(&self, decision: ScalingDecision) -> Result<Vec<AgentId>, CreateAgentError> {
        match decision {
            ScalingDecision::Grow(n) => self.spawn_agents(n),
            ScalingDecision::ActivateReserve(n) => Ok(self.activate_reserve(n)),
            ScalingDecision::Retire(n) => Ok(self.retire_idle(n, "idle")),
            ScalingDecision::Hold => Ok(Vec::new()),
        }
    }
}
