//! Which agents are in the pool: spawning (active or in reserve), activating
//! reserve agents, retiring idle ones, removing lost ones, applying a scaling
//! decision, and telling the [`MembershipObserver`] of each change.

use std::sync::Arc;

use swarm_core::AgentId;
use swarm_core::event::{AgentAvailable, AgentCreated, AgentRemoved};

use super::AgentPool;
use super::state::AgentState;
use crate::agent::AgentFactory;
use crate::error::{CreateAgentError, ObserverAlreadySet};
use crate::scaling::ScalingDecision;

/// Told directly, not through the bus, when the pool's membership changes.
///
/// The bus is the pool's output: anyone holding it can emit an `agent:removed`,
/// so a scheduler must not take membership from it. It registers an observer
/// with [`AgentPool::set_membership_observer`] instead, and only the pool
/// calls it.
///
/// # When it is called
///
/// Synchronously, on the task that made the change, once per change, after
/// the pool's state shows the change and with no pool lock held (the observer
/// may call back into the pool):
///
/// - a new agent ([`spawn_agents`](AgentPool::spawn_agents),
///   [`spawn_reserve`](AgentPool::spawn_reserve), a scaling `Grow`, the
///   replacement of an unhealthy agent): `agent:created` is emitted, then
///   [`agent_added`](Self::agent_added), then (for an active agent)
///   `agent:available`, so the observer knows an agent before it is offered work;
/// - reserve agents activated ([`activate_reserve`](AgentPool::activate_reserve)):
///   [`agents_activated`](Self::agents_activated) with all of them, then their
///   `agent:available` events;
/// - an agent gone ([`retire_idle`](AgentPool::retire_idle),
///   [`remove_agent`](AgentPool::remove_agent), an agent that became unhealthy):
///   `agent:removed` is emitted, then [`agent_removed`](Self::agent_removed);
///   for an unhealthy agent this comes before its replacement's `agent_added`.
///
/// An observer should return quickly and must not panic (a panic reaches the
/// caller of the pool method that made the change).
pub trait MembershipObserver: Send + Sync + 'static {
    /// An agent joined the pool: active (idle) or, with `reserve`, in reserve.
    fn agent_added(&self, id: AgentId, reserve: bool);

    /// An agent left the pool (retired, unhealthy, removed).
    fn agent_removed(&self, id: AgentId);

    /// Reserve agents became active (idle), lowest id first. Does nothing by
    /// default.
    fn agents_activated(&self, ids: &[AgentId]) {
        let _ = ids;
    }
}

impl<F: AgentFactory> AgentPool<F> {
    /// Registers the pool's [`MembershipObserver`]; it can be set once. A
    /// second observer is handed back in [`ObserverAlreadySet`] and the first
    /// stays.
    ///
    /// Agents that joined before (at least those [`AgentPool::new`] created)
    /// are not reported: set the observer first, then read
    /// [`agents`](Self::agents). A change that races with that read may be
    /// seen twice (in `agents()` and by the observer), and an agent added
    /// before the observer was set may be reported removed, so an observer
    /// treats a repeated add and an unknown removal as no-ops.
    pub fn set_membership_observer(
        &self,
        observer: Arc<dyn MembershipObserver>,
    ) -> Result<(), ObserverAlreadySet> {
        self.inner
            .observer
            .set(observer)
            .map_err(ObserverAlreadySet)
    }

    /// Emits `agent:created` for a new agent, tells the observer, then emits
    /// `agent:available` if it is active.
    fn announce_added(&self, id: AgentId, reserve: bool) {
        self.inner.bus.emit(AgentCreated {
            agent_id: id,
            reserve,
        });
        if let Some(observer) = self.inner.observer.get() {
            observer.agent_added(id, reserve);
        }
        if !reserve {
            self.inner.bus.emit(AgentAvailable { agent_id: id });
        }
    }

    /// Emits `agent:removed` for an agent already out of the pool's state,
    /// then tells the observer.
    pub(super) fn announce_removed(&self, id: AgentId, reason: &str) {
        self.inner.bus.emit(AgentRemoved {
            agent_id: id,
            reason: reason.to_owned(),
        });
        if let Some(observer) = self.inner.observer.get() {
            observer.agent_removed(id);
        }
    }

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
            self.announce_removed(id, reason);
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
            self.announce_added(id, reserve);
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
        match self.inner.observer.get() {
            Some(observer) if !ids.is_empty() => observer.agents_activated(&ids),
            _ => {}
        }
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
            self.announce_removed(*id, reason);
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
