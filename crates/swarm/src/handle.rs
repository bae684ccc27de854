//! Awaiting a task's outcome.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use swarm_core::{AgentId, Payload, TaskId};
use tokio::sync::oneshot;

/// How a task ended.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TaskOutcome {
    /// An agent completed it.
    Completed {
        /// The agent's output.
        output: Payload,
        /// The agent that completed it.
        agent_id: AgentId,
        /// The attempt that succeeded (1 for the first).
        attempt: u32,
        /// How long that attempt ran.
        duration: Duration,
    },
    /// Its attempts were exhausted or its error was permanent.
    DeadLettered {
        /// Each attempt's error, oldest first.
        errors: Vec<String>,
    },
    /// It was cancelled.
    Cancelled {
        /// Whether it was running when cancelled.
        was_running: bool,
    },
    /// The swarm shut down before the task finished. It is recorded as pending
    /// in the store and resumes on the next start.
    Interrupted,
}

impl TaskOutcome {
    /// Whether the task completed.
    pub fn is_completed(&self) -> bool {
        matches!(self, TaskOutcome::Completed { .. })
    }
}

/// Resolves to the outcome of a submitted task.
///
/// Dropping the handle does not cancel the task; use
/// [`Swarm::cancel`](crate::Swarm::cancel) for that.
#[derive(Debug)]
#[must_use = "a TaskHandle does nothing unless awaited; drop it to ignore the outcome"]
pub struct TaskHandle {
    id: TaskId,
    receiver: oneshot::Receiver<TaskOutcome>,
}

impl TaskHandle {
    pub(crate) fn new(id: TaskId, receiver: oneshot::Receiver<TaskOutcome>) -> Self {
        TaskHandle { id, receiver }
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }
}

impl Future for TaskHandle {
    type Output = TaskOutcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<TaskOutcome> {
        // The sender is dropped without a value only when the swarm goes away
        // before the task ends: the task stays pending in the store.
        Pin::new(&mut self.receiver)
            .poll(cx)
            .map(|r| r.unwrap_or(TaskOutcome::Interrupted))
    }
}
