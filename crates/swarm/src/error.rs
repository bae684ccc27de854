//! The facade's errors.

use std::fmt;
use std::sync::Arc;

use swarm_core::{Task, TaskError, TaskId};
use swarm_store::StoreError;

/// Why [`SwarmBuilder::build`](crate::SwarmBuilder::build) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The configuration is inconsistent.
    #[error("invalid swarm configuration: {0}")]
    Config(String),
    /// A rate or concurrency limit cannot work as configured.
    #[error("invalid limit: {0}")]
    Limit(#[from] crate::LimitError),
    /// The event store could not be opened or read.
    #[error("event store: {0}")]
    Store(#[from] swarm_store::StoreError),
    /// The agent factory failed.
    #[error("could not create agents: {0}")]
    Agents(#[from] swarm_agents::CreateAgentError),
    /// The metrics exporter could not start (its listener could not bind, ...).
    #[cfg(feature = "prometheus")]
    #[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
    #[error("metrics exporter: {0}")]
    Metrics(#[from] swarm_metrics::ExporterError),
    /// The metrics recorder could not be attached to the bus.
    #[cfg(feature = "prometheus")]
    #[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
    #[error("metrics recorder: {0}")]
    MetricsAttach(#[from] swarm_metrics::AttachError),
    /// The distributed task queue could not be opened (feature `nats`).
    #[cfg(feature = "nats")]
    #[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
    #[error("distributed task queue: {0}")]
    Distributed(#[from] crate::distributed::DistributedError),
    /// `build` was called outside a tokio runtime.
    #[error(
        "swarm needs a tokio runtime: call `build().await` from inside one (with the `time` driver enabled)"
    )]
    NoRuntime,
}

/// Why a task was not accepted. The task is handed back where there is one.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The queue is at its bound; try again later or raise `queue_bound`.
    #[error("the task queue is full: try again later or raise the queue bound")]
    QueueFull(Box<Task>),
    /// The swarm is shutting down and accepts no new tasks.
    #[error("the swarm is shutting down and accepts no new tasks")]
    ShuttingDown(Box<Task>),
    /// A live task (queued, running or waiting for a retry) has this id. The
    /// id of a finished task may be used again: it names a new task.
    #[error("task {} is already queued, running or waiting for a retry: use a new id", .0.id())]
    Duplicate(Box<Task>),
    /// The task is invalid (payload over the limit, ...).
    #[error(transparent)]
    Invalid(#[from] TaskError),
    /// The store could not record the task, or failed earlier and records
    /// nothing more; the task was not accepted.
    #[error("the event store could not record the task, so it was not accepted: {error}")]
    Store {
        /// The task.
        task: Box<Task>,
        /// The store's error (shared: every submit waiting on the failed
        /// write gets the same one).
        #[source]
        error: Arc<StoreError>,
    },
    /// The distributed task queue did not take the task (feature `nats`):
    /// it is recorded as dead-lettered in the log, and was not accepted.
    #[cfg(feature = "nats")]
    #[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
    #[error("the task queue did not take the task, so it was not accepted: {error}")]
    Queue {
        /// The task.
        task: Box<Task>,
        /// The queue's error.
        #[source]
        error: Arc<crate::distributed::DistributedError>,
    },
    /// The task asks for something this swarm cannot honour, such as a
    /// delay (`TaskBuilder::delay`/`not_before`) on a distributed swarm,
    /// whose shared queue starts a task when a node pulls it: it was not
    /// accepted rather than started early.
    #[error("task {} asks for {what}, which {why}", .task.id())]
    Unsupported {
        /// The task.
        task: Box<Task>,
        /// What it asks for.
        what: &'static str,
        /// Why this swarm cannot, and what to do instead.
        why: &'static str,
    },
    /// The task's cost is over the bucket of a rate limit that applies to
    /// it (`Rate::burst`), so it could never start.
    #[error("task {} costs {} units, over the size of {limit} ({capacity}): it could never start; raise that rate's burst or lower the cost", .task.id(), .task.cost())]
    ExceedsLimit {
        /// The task.
        task: Box<Task>,
        /// The limit, as events name it.
        limit: String,
        /// The most its bucket holds.
        capacity: u32,
    },
    /// A batch of two or more tasks was refused as a whole: none of its tasks
    /// was accepted. `reason` is what refused it (with the first offending
    /// task, where the reason carries one); `tasks` is every task of the batch,
    /// in order. [`into_tasks`](SubmitError::into_tasks) hands them back.
    #[error("{reason} (the whole batch of {} tasks was refused)", .tasks.len())]
    Batch {
        /// Why the batch was refused.
        reason: Box<SubmitError>,
        /// Every task of the batch, in submission order.
        tasks: Vec<Task>,
    },
}

impl SubmitError {
    /// The rejected task, if the error carries one (for a refused batch, the
    /// first offending task).
    #[must_use]
    pub fn into_task(self) -> Option<Task> {
        match self {
            SubmitError::QueueFull(t)
            | SubmitError::ShuttingDown(t)
            | SubmitError::Duplicate(t)
            | SubmitError::Store { task: t, .. }
            | SubmitError::Unsupported { task: t, .. }
            | SubmitError::ExceedsLimit { task: t, .. } => Some(*t),
            #[cfg(feature = "nats")]
            SubmitError::Queue { task: t, .. } => Some(*t),
            SubmitError::Invalid(_) => None,
            SubmitError::Batch { reason, .. } => reason.into_task(),
        }
    }

    /// Every task the error hands back: all the tasks of a refused batch, in
    /// order; else the one task, if the error carries it.
    #[must_use]
    pub fn into_tasks(self) -> Vec<Task> {
        match self {
            SubmitError::Batch { tasks, .. } => tasks,
            other => other.into_task().into_iter().collect(),
        }
    }

    /// Why the submission was refused: for a refused batch its reason, else
    /// the error itself. Match on this to handle single and batch refusals alike.
    #[must_use]
    pub fn reason(&self) -> &SubmitError {
        match self {
            SubmitError::Batch { reason, .. } => reason,
            other => other,
        }
    }
}

// Debug without the task's payload, like tokio's TrySendError.
impl fmt::Debug for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::QueueFull(t) => f.debug_tuple("QueueFull").field(&t.id()).finish(),
            SubmitError::ShuttingDown(t) => f.debug_tuple("ShuttingDown").field(&t.id()).finish(),
            SubmitError::Duplicate(t) => f.debug_tuple("Duplicate").field(&t.id()).finish(),
            SubmitError::Invalid(e) => f.debug_tuple("Invalid").field(e).finish(),
            SubmitError::Store { task, error } => f
                .debug_struct("Store")
                .field("task", &task.id())
                .field("error", error)
                .finish(),
            #[cfg(feature = "nats")]
            SubmitError::Queue { task, error } => f
                .debug_struct("Queue")
                .field("task", &task.id())
                .field("error", error)
                .finish(),
            SubmitError::Unsupported { task, what, .. } => f
                .debug_struct("Unsupported")
                .field("task", &task.id())
                .field("what", what)
                .finish(),
            SubmitError::ExceedsLimit {
                task,
                limit,
                capacity,
            } => f
                .debug_struct("ExceedsLimit")
                .field("task", &task.id())
                .field("limit", limit)
                .field("capacity", capacity)
                .finish(),
            SubmitError::Batch { reason, tasks } => f
                .debug_struct("Batch")
                .field("reason", reason)
                .field("tasks", &tasks.iter().map(Task::id).collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// Why [`Swarm::cancel`](crate::Swarm::cancel) did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CancelError {
    /// No queued, waiting or running task has this id (unknown, or already finished).
    #[error("task {0} is not queued or running (unknown, or already finished)")]
    NotFound(TaskId),
}

/// Why shutdown did not finish cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShutdownError {
    /// The store could not be flushed or snapshotted; events up to the last
    /// successful flush are safe.
    #[error("event store during shutdown: {0}")]
    Store(#[from] swarm_store::StoreError),
}
