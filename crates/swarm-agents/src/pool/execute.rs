//! One attempt and what follows it: running the task safely, recording the
//! agent's health, deciding retry or dead letter, keeping each task's error
//! history, and replacing an agent that became unhealthy.

use std::sync::Arc;
use std::time::Duration;

use swarm_core::event::{
    AgentAvailable, AgentBusy, AgentError, AgentHealth, TaskCompleted, TaskDeadLettered, TaskFailed,
};
use swarm_core::{AgentId, Task, TaskId};

use super::AgentPool;
use super::claim::can_run;
use super::state::{AgentState, State};
use crate::agent::{AgentFactory, TaskOutput};
use crate::attempt::{AttemptFailure, run_attempt};
use crate::error::{ExecuteRefused, RefusedReason};
use crate::health::HealthTracker;
use crate::retry::RetryDecision;

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

impl<F: AgentFactory> AgentPool<F> {
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
            self.announce_removed(agent_id, "unhealthy");
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
