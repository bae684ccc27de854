//! [`AgentPool`]: owns the agents, runs attempts safely, tracks health,
//! decides retries and dead letters, replaces unhealthy agents, and emits the
//! agent and failure events. It owns no queue: the caller (the `swarm`
//! facade) picks tasks and acts on each [`Executed::next`].

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use swarm_core::event::{
    AgentAvailable, AgentBusy, AgentCreated, AgentError, AgentHealth, AgentRemoved,
    CoordinatorOverload, TaskCompleted, TaskDeadLettered, TaskFailed,
};
use swarm_core::{AgentId, EventBus, Task, TaskId};
use tokio::time::Instant;

use crate::agent::{Agent, AgentFactory, TaskOutput};
use crate::attempt::{AttemptFailure, run_attempt};
use crate::error::{CreateAgentError, ExecuteRefused, RefusedReason};
use crate::health::{HealthPolicy, HealthTracker};
use crate::retry::{RetryDecision, RetryPolicy};
use crate::rng::SplitMix64;
use crate::scaling::{LoadObservation, ScalingDecision};

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

/// Where an agent is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentState {
    /// Waiting for a task.
    Idle,
    /// Reserved by [`AgentPool::claim_idle`] for a task about to start.
    Claimed,
    /// Running a task.
    Busy,
    /// Created in reserve; gets tasks once activated.
    Reserve,
}

/// One agent, as [`AgentPool::agents`] reports it.
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

/// What the caller does with a task after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// The attempt succeeded (`task:completed` was emitted).
    Completed(TaskOutput),
    /// The attempt failed; queue the task again once `after` has passed
    /// (`task:failed` with `will_retry` was emitted). Use
    /// [`schedule_retry`](crate::schedule_retry) or
    /// [`retry_after`](crate::retry_after) for the wait.
    Retry {
        /// The back-off.
        after: Duration,
        /// Why this attempt failed.
        failure: AttemptFailure,
    },
    /// No more attempts (`task:failed` and `task:dead_lettered` were emitted).
    DeadLettered {
        /// Why the last attempt failed.
        failure: AttemptFailure,
        /// The error of every attempt, oldest first.
        errors: Vec<String>,
    },
}

/// The result of [`AgentPool::execute`].
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    /// The task, its attempt counter advanced by one.
    pub task: Task,
    /// The agent that ran the attempt.
    pub agent_id: AgentId,
    /// The attempt's number (1 for the first).
    pub attempt: u32,
    /// How long it ran.
    pub duration: Duration,
    /// What to do next.
    pub next: Next,
    /// The agent's health after the attempt.
    pub health: AgentHealth,
    /// The agent that replaced this one, if it became unhealthy and was replaced.
    pub replaced_by: Option<AgentId>,
}

struct Slot<A> {
    agent: Arc<A>,
    state: AgentState,
    health: HealthTracker,
}

struct State<A> {
    agents: HashMap<AgentId, Slot<A>>,
    idle: BTreeSet<AgentId>,
    counts: PoolCounts,
    // Agents whose capabilities are restricted (a non-empty list).
    restricted: usize,
    next_id: u64,
    rng: SplitMix64,
    // Errors of tasks that failed and may run again, for `task:dead_lettered`.
    histories: HashMap<TaskId, Vec<String>>,
    overloaded: bool,
}

impl<A: Agent> State<A> {
    fn set_state(&mut self, id: AgentId, to: AgentState) {
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

    fn remove(&mut self, id: AgentId) -> Option<Slot<A>> {
        let slot = self.agents.remove(&id)?;
        *count_of(&mut self.counts, slot.state) -= 1;
        self.idle.remove(&id);
        if !slot.agent.capabilities().is_empty() {
            self.restricted -= 1;
        }
        Some(slot)
    }

    fn insert(&mut self, id: AgentId, agent: A, state: AgentState) {
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
    fn check_overload(&mut self, threshold: Option<f64>) -> Option<CoordinatorOverload> {
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

struct Inner<F: AgentFactory> {
    factory: F,
    bus: EventBus,
    config: PoolConfig,
    state: Mutex<State<F::Agent>>,
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

    /// Runs the next attempt of `task` on agent `agent_id` (idle or claimed),
    /// safely: a panic, an error or a timeout (the task's own, else the
    /// pool's default) becomes a failure. Advances the task's attempt counter,
    /// tracks the agent's health, replaces it if it became unhealthy, emits the
    /// events (see the type's docs) and says what to do next.
    ///
    /// Refuses, handing the task back untouched, if the agent is unknown,
    /// busy, in reserve, or cannot run the task's kind.
    ///
    /// If this future is dropped mid-attempt (the task was cancelled), the
    /// attempt is dropped and the agent becomes idle again.
    pub async fn execute(
        &self,
        agent_id: AgentId,
        mut task: Task,
    ) -> Result<Executed, ExecuteRefused> {
        let (agent, overload) = {
            let mut state = self.inner.state.lock();
            let slot = match state.agents.get(&agent_id) {
                Some(slot) => slot,
                None => {
                    return Err(ExecuteRefused::new(
                        task,
                        RefusedReason::UnknownAgent(agent_id),
                    ));
                }
            };
            let refused = match slot.state {
                AgentState::Idle | AgentState::Claimed => None,
                AgentState::Busy => Some(RefusedReason::Busy(agent_id)),
                AgentState::Reserve => Some(RefusedReason::Reserve(agent_id)),
            };
            let refused = refused.or_else(|| {
                (slot.health.health() == AgentHealth::Unhealthy)
                    .then_some(RefusedReason::Unhealthy(agent_id))
            });
            let refused = refused.or_else(|| {
                (!can_run(&*slot.agent, task.kind())).then_some(RefusedReason::Incapable(agent_id))
            });
            if let Some(reason) = refused {
                return Err(ExecuteRefused::new(task, reason));
            }
            let agent = Arc::clone(&slot.agent);
            state.set_state(agent_id, AgentState::Busy);
            (
                agent,
                state.check_overload(self.inner.config.overload_threshold),
            )
        };
        let attempt = task.begin_attempt();
        let bus = &self.inner.bus;
        bus.emit(AgentBusy {
            agent_id,
            task_id: task.id(),
        });
        if let Some(event) = overload {
            bus.emit(event);
        }

        let timeout = task.timeout().or(self.inner.config.default_timeout);
        let guard = FreeOnDrop {
            pool: self,
            agent_id,
            armed: true,
        };
        let outcome = run_attempt(&*agent, &task, timeout).await;
        drop(agent);
        guard.disarm();

        match outcome.result {
            Ok(output) => {
                let health = {
                    let mut state = self.inner.state.lock();
                    if attempt > 1 {
                        state.histories.remove(&task.id());
                    }
                    let health = state
                        .agents
                        .get_mut(&agent_id)
                        .map(|s| s.health.record_success())
                        .unwrap_or_default();
                    state.set_state(agent_id, AgentState::Idle);
                    state.check_overload(self.inner.config.overload_threshold);
                    health
                };
                bus.emit(TaskCompleted {
                    task_id: task.id(),
                    agent_id,
                    attempt,
                    duration: outcome.duration,
                    output: output.clone(),
                });
                bus.emit(AgentAvailable { agent_id });
                Ok(Executed {
                    task,
                    agent_id,
                    attempt,
                    duration: outcome.duration,
                    next: Next::Completed(output),
                    health,
                    replaced_by: None,
                })
            }
            Err(failure) => {
                Ok(self.after_failure(task, agent_id, attempt, outcome.duration, failure))
            }
        }
    }

    fn after_failure(
        &self,
        task: Task,
        agent_id: AgentId,
        attempt: u32,
        duration: Duration,
        failure: AttemptFailure,
    ) -> Executed {
        let config = &self.inner.config;
        let (decision, errors, health, unhealthy) = {
            let mut state = self.inner.state.lock();
            let decision = {
                let State { rng, .. } = &mut *state;
                config.retry.decide(&task, &failure, rng)
            };
            let errors = match decision {
                RetryDecision::RetryAfter(_) => {
                    state
                        .histories
                        .entry(task.id())
                        .or_default()
                        .push(failure.message.clone());
                    Vec::new()
                }
                RetryDecision::DeadLetter => {
                    let mut errors = state.histories.remove(&task.id()).unwrap_or_default();
                    errors.push(failure.message.clone());
                    errors
                }
            };
            let health = state
                .agents
                .get_mut(&agent_id)
                .map(|s| s.health.record_failure(failure.reason, &config.health))
                .unwrap_or_default();
            let unhealthy = health == AgentHealth::Unhealthy;
            if unhealthy {
                state.remove(agent_id);
            } else {
                state.set_state(agent_id, AgentState::Idle);
            }
            state.check_overload(config.overload_threshold);
            (decision, errors, health, unhealthy)
        };

        let bus = &self.inner.bus;
        let retry_in = match decision {
            RetryDecision::RetryAfter(d) => Some(d),
            RetryDecision::DeadLetter => None,
        };
        bus.emit(TaskFailed {
            task_id: task.id(),
            agent_id: Some(agent_id),
            attempt,
            reason: failure.reason,
            error: failure.message.clone(),
            will_retry: retry_in.is_some(),
            retry_in,
        });
        if retry_in.is_none() {
            bus.emit(TaskDeadLettered {
                task_id: task.id(),
                attempts: attempt,
                errors: errors.clone(),
            });
        }
        if HealthTracker::counts_against_agent(failure.reason) {
            bus.emit(AgentError {
                agent_id,
                reason: failure.reason,
                error: failure.message.clone(),
                health,
            });
        }
        let mut replaced_by = None;
        if unhealthy {
            bus.emit(AgentRemoved {
                agent_id,
                reason: "unhealthy".into(),
            });
            if config.replace_unhealthy {
                match self.spawn_agents(1) {
                    Ok(ids) => replaced_by = ids.first().copied(),
                    Err(error) => tracing::warn!(
                        agent = %agent_id,
                        %error,
                        "could not replace an unhealthy agent; the pool is one agent smaller"
                    ),
                }
            }
        } else {
            bus.emit(AgentAvailable { agent_id });
        }
        let next = match retry_in {
            Some(after) => Next::Retry { after, failure },
            None => Next::DeadLettered { failure, errors },
        };
        Executed {
            task,
            agent_id,
            attempt,
            duration,
            next,
            health,
            replaced_by,
        }
    }

    /// Forgets the error history of a task that will not run again here
    /// (cancelled while waiting for its retry). Returns the errors so far.
    pub fn forget_history(&self, task_id: TaskId) -> Vec<String> {
        self.inner
            .state
            .lock()
            .histories
            .remove(&task_id)
            .unwrap_or_default()
    }

    /// The errors of a task's failed attempts so far (empty once it completed
    /// or was dead-lettered).
    pub fn history(&self, task_id: TaskId) -> Vec<String> {
        self.inner
            .state
            .lock()
            .histories
            .get(&task_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Restores a task's error history (after a restart, from its
    /// `task:failed` events), so its dead letter lists every error.
    pub fn restore_history(&self, task_id: TaskId, errors: Vec<String>) {
        self.inner.state.lock().histories.insert(task_id, errors);
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

    fn free_cancelled(&self, agent_id: AgentId) {
        let freed = {
            let mut state = self.inner.state.lock();
            let busy = state.agents.get(&agent_id).map(|s| s.state) == Some(AgentState::Busy);
            if busy {
                state.set_state(agent_id, AgentState::Idle);
                state.check_overload(self.inner.config.overload_threshold);
            }
            busy
        };
        if freed {
            self.inner.bus.emit(AgentAvailable { agent_id });
        }
    }
}

fn can_run<A: Agent>(agent: &A, kind: &str) -> bool {
    let caps = agent.capabilities();
    caps.is_empty() || caps.contains(&kind)
}

// Frees the agent if `execute` is dropped mid-attempt.
struct FreeOnDrop<'a, F: AgentFactory> {
    pool: &'a AgentPool<F>,
    agent_id: AgentId,
    armed: bool,
}

impl<F: AgentFactory> FreeOnDrop<'_, F> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl<F: AgentFactory> Drop for FreeOnDrop<'_, F> {
    fn drop(&mut self) {
        if self.armed {
            self.pool.free_cancelled(self.agent_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SimAgentFactory, SimConfig};

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
}
