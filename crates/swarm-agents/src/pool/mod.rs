//! [`AgentPool`]: owns the agents, runs attempts safely, tracks health,
//! decides retries and dead letters, replaces unhealthy agents, and emits the
//! agent and failure events. It owns no queue: the caller (the `swarm`
//! facade) picks tasks and acts on each [`Executed::next`].
//!
//! Where each decision lives:
//!
//! - `state`: the slots, the counts by state, the idle set and when the load
//!   crosses the overload threshold.
//! - `membership`: which agents are in the pool (spawn, reserve, activate,
//!   retire, remove, replace).
//! - `claim`: which agent gets a task (claim, release, capability queries).
//! - `execute`: what one attempt does and what happens after it (retry, dead
//!   letter, health, error histories).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use swarm_core::{AgentId, EventBus};
use tokio::time::Instant;

use crate::agent::AgentFactory;
use crate::error::CreateAgentError;
use crate::health::HealthPolicy;
use crate::retry::RetryPolicy;
use crate::scaling::LoadObservation;
use swarm_core::rng::SplitMix64;

mod claim;
mod execute;
mod membership;
mod state;
#[cfg(test)]
mod tests;

pub use execute::{Executed, Next};
pub use membership::MembershipObserver;
use state::State;
pub use state::{AgentInfo, AgentState, PoolCounts};

/// How an [`AgentPool`] runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolConfig {
    /// Active agents created by [`AgentPool::new`] (default 4).
    pub initial_agents: usize,
    /// Reserve agents created by [`AgentPool::new`]; they get tasks only once
    /// activated (default 0).
    pub reserve_agents: usize,
    /// The time limit of an attempt when the task sets none (default 60 s;
    /// `None`: no limit).
    pub default_timeout: Option<Duration>,
    /// Retries and back-off.
    pub retry: RetryPolicy,
    /// When failures make an agent degraded or unhealthy.
    pub health: HealthPolicy,
    /// Replace an agent that became unhealthy through the factory (default true).
    pub replace_unhealthy: bool,
    /// Emit `coordinator:overload` when busy/active crosses this (default
    /// `Some(0.8)`; `None`: never).
    pub overload_threshold: Option<f64>,
    /// Seed of the back-off jitter (default 0), for reproducible runs.
    pub seed: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            initial_agents: 4,
            reserve_agents: 0,
            default_timeout: Some(Duration::from_secs(60)),
            retry: RetryPolicy::default(),
            health: HealthPolicy::default(),
            replace_unhealthy: true,
            overload_threshold: Some(0.8),
            seed: 0,
        }
    }
}

struct Inner<F: AgentFactory> {
    factory: F,
    bus: EventBus,
    config: PoolConfig,
    state: Mutex<State<F::Agent>>,
    // Set once by the scheduler; told of every membership change.
    observer: OnceLock<Arc<dyn MembershipObserver>>,
}

/// A pool of agents: runs attempts safely and says what to do after each.
///
/// Cheap to clone (clones share the pool). No lock is held across an
/// `.await`, and events are emitted outside the lock, so handlers may call
/// back into the pool.
///
/// A typical dispatch loop (the facade's job): take an agent with
/// [`claim_idle`](Self::claim_idle), pop a task, spawn
/// [`execute`](Self::execute), and on [`Next::Retry`] queue the task again
/// after the back-off.
///
/// ```
/// use swarm_agents::{AgentPool, Next, PoolConfig, SimAgentFactory, SimConfig};
/// use swarm_core::{EventBus, Task};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let pool = AgentPool::new(SimAgentFactory::new(SimConfig::instant()), EventBus::new(), PoolConfig::default())?;
/// let agent = pool.claim_idle().expect("an idle agent");
/// let task = Task::builder("work").build().unwrap();
/// let done = pool.execute(agent, task).await.expect("agent accepts the task");
/// assert!(matches!(done.next, Next::Completed(_)));
/// assert_eq!(done.attempt, 1);
/// # Ok::<(), swarm_agents::CreateAgentError>(())
/// # }).unwrap();
/// ```
///
/// Events, in order, for one attempt: `agent:busy` (and `coordinator:overload`
/// if the load just crossed the threshold); then on success `task:completed`,
/// `agent:available`; on failure `task:failed`, `task:dead_lettered` (if no
/// retry), `agent:error` (if the failure counts against the agent: not for
/// permanent errors), and either `agent:available` or, for an agent that
/// became unhealthy, `agent:removed` then `agent:created` + `agent:available`
/// for its replacement.
///
/// Membership changes also reach the [`MembershipObserver`] set with
/// [`set_membership_observer`](Self::set_membership_observer), by a direct
/// call right after `agent:created` / `agent:removed` (see the trait for the
/// order). A scheduler follows membership there, never on the bus.
pub struct AgentPool<F: AgentFactory> {
    inner: Arc<Inner<F>>,
}

impl<F: AgentFactory> Clone for AgentPool<F> {
    fn clone(&self) -> Self {
        AgentPool {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<F: AgentFactory> fmt::Debug for AgentPool<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentPool")
            .field("counts", &self.counts())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl<F: AgentFactory> AgentPool<F> {
    /// A pool that makes its agents with `factory` and emits on `bus`.
    /// Creates `config.initial_agents` active and `config.reserve_agents`
    /// reserve agents (ids from 0), emitting `agent:created` for each and
    /// `agent:available` for the active ones.
    pub fn new(factory: F, bus: EventBus, config: PoolConfig) -> Result<Self, CreateAgentError> {
        let pool = AgentPool {
            inner: Arc::new(Inner {
                factory,
                bus,
                config,
                state: Mutex::new(State {
                    agents: HashMap::new(),
                    idle: BTreeSet::new(),
                    counts: PoolCounts::default(),
                    restricted: 0,
                    next_id: 0,
                    rng: SplitMix64::new(config.seed),
                    histories: HashMap::new(),
                    overloaded: false,
                }),
                observer: OnceLock::new(),
            }),
        };
        pool.spawn_agents(config.initial_agents)?;
        pool.spawn_reserve(config.reserve_agents)?;
        Ok(pool)
    }

    /// The bus the pool emits on.
    pub fn bus(&self) -> &EventBus {
        &self.inner.bus
    }

    /// The pool's configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// The factory.
    pub fn factory(&self) -> &F {
        &self.inner.factory
    }

    /// Agents by state.
    pub fn counts(&self) -> PoolCounts {
        self.inner.state.lock().counts
    }

    /// Every agent, by id.
    pub fn agents(&self) -> Vec<AgentInfo> {
        let state = self.inner.state.lock();
        let mut all: Vec<_> = state
            .agents
            .iter()
            .map(|(id, slot)| AgentInfo {
                id: *id,
                state: slot.state,
                health: slot.health.health(),
            })
            .collect();
        all.sort_by_key(|a| a.id);
        all
    }

    /// One agent, if it is in the pool.
    pub fn agent(&self, id: AgentId) -> Option<AgentInfo> {
        let state = self.inner.state.lock();
        state.agents.get(&id).map(|slot| AgentInfo {
            id,
            state: slot.state,
            health: slot.health.health(),
        })
    }

    /// What a [`ScalingPolicy`](crate::ScalingPolicy) needs, with the queue
    /// depth the caller knows.
    pub fn observe(&self, queued: usize, now: Instant) -> LoadObservation {
        let c = self.counts();
        LoadObservation {
            busy: c.busy + c.claimed,
            total: c.active(),
            queued,
            reserve_available: c.reserve,
            now,
        }
    }
}
