//! Why a management action did nothing.

use std::sync::Arc;

use swarm_core::TaskId;
use swarm_store::{StoreError, TaskStatus};

use crate::error::SubmitError;

/// Why a management action ([`Swarm::retry_dead_letter`](crate::Swarm::retry_dead_letter),
/// [`pause`](crate::Swarm::pause), [`scale_to`](crate::Swarm::scale_to), ...) failed.
/// Nothing was changed unless the variant says otherwise.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManageError {
    /// No task with this id is known: never submitted, or finished and
    /// retired from the retention window (or discarded).
    #[error(
        "task {0} is unknown: it was never submitted here, or it finished and left the retention window"
    )]
    UnknownTask(TaskId),
    /// The action needs a dead-lettered task, and this one is not.
    #[error(
        "task {id} is {status:?}, not dead-lettered: only a dead letter can be retried or discarded"
    )]
    NotDeadLettered {
        /// The task.
        id: TaskId,
        /// Where it stands now.
        status: TaskStatus,
    },
    /// The swarm would not take the task back (shutting down, a live task
    /// with the same id, the store failing, ...).
    #[error("the dead letter could not be queued again: {0}")]
    Submit(#[source] SubmitError),
    /// The requested agent count is outside the swarm's bounds.
    #[error(
        "cannot scale to {requested} agents: the swarm is bounded to {min}..={max} (set `min_agents` / `max_agents` on the builder to change that)"
    )]
    Scale {
        /// The count asked for.
        requested: usize,
        /// The lowest count allowed (`SwarmBuilder::min_agents`, default the starting agents).
        min: usize,
        /// The highest count allowed (`SwarmBuilder::max_agents`).
        max: usize,
    },
    /// The agent factory failed while scaling up; the agents created before
    /// the failure stay in the pool.
    #[error("scaling up stopped at {agents} agents: the agent factory failed: {source}")]
    CreateAgents {
        /// The active agents now.
        agents: usize,
        /// The factory's error.
        #[source]
        source: swarm_agents::CreateAgentError,
    },
    /// The event store failed: the action could not be recorded (so it was
    /// not done), or the log could not be read.
    #[error("event store: {0}")]
    Store(#[source] Arc<StoreError>),
    /// The action was recorded, but the live view did not reach it in time
    /// (the store is slow or its subscription is failing); it takes effect
    /// once the view catches up.
    #[error(
        "the management view is behind the log (applied up to {applied}, waiting for {wanted}): the store is slow or failing; try again"
    )]
    ViewBehind {
        /// The last sequence the view applied.
        applied: u64,
        /// The sequence it waited for.
        wanted: u64,
    },
    /// The action's event did not reach the log (a shared log's append
    /// failed, which the journal logs and counts): nothing changed.
    #[error("the log did not record the {action}: the event store is failing; try again")]
    NotRecorded {
        /// What was not recorded: `"pause"`, `"resume"`.
        action: &'static str,
    },
    /// The swarm is shutting down (or its store is closed).
    #[error("the swarm is shutting down")]
    ShuttingDown,
    /// The distributed task queue did not take a retried task (feature
    /// `nats`): the log records it dead-lettered again.
    #[cfg(feature = "nats")]
    #[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
    #[error("the task queue did not take the retried task, so it is dead-lettered again: {0}")]
    Queue(#[source] Arc<crate::distributed::DistributedError>),
}

impl From<Arc<StoreError>> for ManageError {
    fn from(error: Arc<StoreError>) -> Self {
        match *error {
            StoreError::Closed => ManageError::ShuttingDown,
            _ => ManageError::Store(error),
        }
    }
}

impl From<StoreError> for ManageError {
    fn from(error: StoreError) -> Self {
        ManageError::from(Arc::new(error))
    }
}
