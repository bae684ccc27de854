//! The errors of this crate.

use std::borrow::Cow;
use std::fmt;

use swarm_core::{AgentId, Task};

/// Why an agent could not finish an attempt: returned by [`Agent::execute`](crate::Agent::execute).
///
/// Retryable errors go through the [`RetryPolicy`](crate::RetryPolicy);
/// permanent ones dead-letter the task at once.
#[derive(Clone, PartialEq, Eq)]
pub struct ExecuteError {
    message: Cow<'static, str>,
    permanent: bool,
}

impl ExecuteError {
    /// A failure that may pass on another attempt (a 503, a flaky network).
    pub fn retryable(message: impl Into<Cow<'static, str>>) -> Self {
        ExecuteError {
            message: message.into(),
            permanent: false,
        }
    }

    /// A failure that no retry will fix (bad input, a 400): the task is
    /// dead-lettered at once.
    pub fn permanent(message: impl Into<Cow<'static, str>>) -> Self {
        ExecuteError {
            message: message.into(),
            permanent: true,
        }
    }

    /// Whether no retry should be made.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for ExecuteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecuteError")
            .field("message", &self.message)
            .field("permanent", &self.permanent)
            .finish()
    }
}

impl fmt::Display for ExecuteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExecuteError {}

/// An [`AgentFactory`](crate::AgentFactory) could not make an agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not create agent: {message}")]
pub struct CreateAgentError {
    message: Cow<'static, str>,
}

impl CreateAgentError {
    /// An error with this message.
    pub fn new(message: impl Into<Cow<'static, str>>) -> Self {
        CreateAgentError {
            message: message.into(),
        }
    }
}

/// Why [`AgentPool::execute`](crate::AgentPool::execute) refused a task; the
/// task is handed back untouched (its attempt counter is not advanced).
#[derive(thiserror::Error)]
#[error("{reason}")]
pub struct ExecuteRefused {
    task: Task,
    /// Why it was refused.
    pub reason: RefusedReason,
}

impl ExecuteRefused {
    pub(crate) fn new(task: Task, reason: RefusedReason) -> Self {
        ExecuteRefused { task, reason }
    }

    /// The refused task, to queue again or give to another agent.
    pub fn into_inner(self) -> Task {
        self.task
    }

    /// The refused task.
    pub fn task(&self) -> &Task {
        &self.task
    }
}

impl fmt::Debug for ExecuteRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecuteRefused")
            .field("task_id", &self.task.id())
            .field("reason", &self.reason)
            .finish()
    }
}

/// Why a pool refused to run a task on an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefusedReason {
    /// No agent has this id (it was never created, or it was removed).
    #[error("{0} is not in the pool: pick an agent from `AgentPool::claim_idle`")]
    UnknownAgent(AgentId),
    /// The agent is running another task.
    #[error("{0} is busy with another task: wait for it to finish or pick another agent")]
    Busy(AgentId),
    /// The agent is a reserve agent that has not been activated.
    #[error("{0} is a reserve agent: activate it with `AgentPool::activate_reserve` first")]
    Reserve(AgentId),
    /// The agent is unhealthy and waits for replacement.
    #[error("{0} is unhealthy and gets no new tasks")]
    Unhealthy(AgentId),
    /// The agent's capabilities do not include the task's kind.
    #[error("{0} cannot run tasks of this kind: pick an agent whose capabilities include it")]
    Incapable(AgentId),
}

/// [`AgentPool::set_membership_observer`](crate::AgentPool::set_membership_observer)
/// was called on a pool that already has an observer: the new one is handed
/// back and the first stays.
pub struct ObserverAlreadySet(pub(crate) std::sync::Arc<dyn crate::MembershipObserver>);

impl ObserverAlreadySet {
    /// The observer that was not set.
    pub fn into_inner(self) -> std::sync::Arc<dyn crate::MembershipObserver> {
        self.0
    }
}

impl fmt::Debug for ObserverAlreadySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ObserverAlreadySet(..)")
    }
}

impl fmt::Display for ObserverAlreadySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the pool already has a membership observer; it can be set once")
    }
}

impl std::error::Error for ObserverAlreadySet {}
