//! The payload of every event of the catalog.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{AgentId, Payload, Priority, Task, TaskId};

/// Which queue a task entered or left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueLocation {
    /// The shared priority queue that every agent takes from.
    Global,
    /// One agent's local queue (filled by affinity and prefetch, open to stealing).
    Local(AgentId),
    /// A distributed work queue shared by several processes.
    Distributed,
}

/// Why an attempt or an agent failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The agent returned an error that may succeed on retry.
    Error,
    /// The agent returned an error marked permanent: no retry.
    Permanent,
    /// The agent panicked.
    Panic,
    /// The attempt ran past its timeout and was dropped.
    Timeout,
    /// The agent was lost (removed, or its process died) while running the task.
    Lost,
}

impl FailureReason {
    /// The lowercase name, as serialized.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureReason::Error => "error",
            FailureReason::Permanent => "permanent",
            FailureReason::Panic => "panic",
            FailureReason::Timeout => "timeout",
            FailureReason::Lost => "lost",
        }
    }
}

/// An agent's health, as the pool judges it from its recent attempts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentHealth {
    /// No recent failures.
    #[default]
    Healthy,
    /// Some failures in a row; still gets tasks.
    Degraded,
    /// Gets no new tasks and is replaced.
    Unhealthy,
}

/// `task:created`: a task was accepted. Carries the whole task, so a replay can
/// re-queue it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskCreated {
    /// The accepted task.
    pub task: Task,
}

/// `task:enqueued`: a task entered a queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskEnqueued {
    /// The task.
    pub task_id: TaskId,
    /// Its priority (the level it waits in).
    pub priority: Priority,
    /// The queue it entered.
    pub queue: QueueLocation,
}

/// `task:dequeued`: a task left a queue (to run, to be stolen, or cancelled).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskDequeued {
    /// The task.
    pub task_id: TaskId,
    /// Its priority.
    pub priority: Priority,
    /// The queue it left.
    pub queue: QueueLocation,
}

/// `task:critical`: a critical task was enqueued.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskCritical {
    /// The task.
    pub task_id: TaskId,
}

/// `task:assigned`: a task was handed to an agent and its attempt starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskAssigned {
    /// The task.
    pub task_id: TaskId,
    /// The agent that runs it.
    pub agent_id: AgentId,
    /// The attempt that starts (1 for the first).
    pub attempt: u32,
    /// The task's priority.
    pub priority: Priority,
    /// Time from acceptance (or from the retry becoming due) to this start, in microseconds.
    #[serde(with = "crate::time::micros")]
    pub queue_wait: Duration,
}

/// `task:completed`: an agent finished a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskCompleted {
    /// The task.
    pub task_id: TaskId,
    /// The agent that ran it.
    pub agent_id: AgentId,
    /// The attempt that succeeded.
    pub attempt: u32,
    /// How long the attempt ran, in microseconds.
    #[serde(with = "crate::time::micros")]
    pub duration: Duration,
    /// The agent's output.
    #[serde(default)]
    pub output: Payload,
}

/// `task:failed`: an attempt failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskFailed {
    /// The task.
    pub task_id: TaskId,
    /// The agent that ran the attempt, if one did.
    #[serde(default)]
    pub agent_id: Option<AgentId>,
    /// The attempt that failed.
    pub attempt: u32,
    /// Why.
    pub reason: FailureReason,
    /// The error message.
    pub error: String,
    /// Whether another attempt will be made.
    pub will_retry: bool,
    /// The back-off before the retry, in microseconds, when one will be made.
    #[serde(default, with = "crate::time::micros_opt")]
    pub retry_in: Option<Duration>,
}

/// `task:dead_lettered`: no more attempts will be made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskDeadLettered {
    /// The task.
    pub task_id: TaskId,
    /// How many attempts were made.
    pub attempts: u32,
    /// The error of each attempt, oldest first.
    pub errors: Vec<String>,
}

/// `task:cancelled`: the user cancelled a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskCancelled {
    /// The task.
    pub task_id: TaskId,
    /// Whether it was running (its attempt was dropped) rather than queued.
    pub was_running: bool,
}

/// `task:interrupted`: a graceful shutdown stopped an attempt before it ended.
/// The task goes back to pending and the attempt is not charged: the next
/// start runs it again as the same attempt. (A crash, which records nothing,
/// costs the attempt: it is recovered as `task:failed` with reason `lost`.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskInterrupted {
    /// The task.
    pub task_id: TaskId,
    /// The agent whose attempt was stopped.
    pub agent_id: AgentId,
    /// The attempt that was stopped (it does not count).
    pub attempt: u32,
    /// Whether the attempt had started running on the agent (else it was
    /// stopped between assignment and start).
    pub was_running: bool,
}

/// `agent:created`: an agent joined the pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentCreated {
    /// The new agent.
    pub agent_id: AgentId,
    /// Whether it starts as a reserve agent (activated on backlog).
    #[serde(default)]
    pub reserve: bool,
}

/// `agent:removed`: an agent left the pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentRemoved {
    /// The agent.
    pub agent_id: AgentId,
    /// Why: `"unhealthy"`, `"idle"`, `"shutdown"`, ...
    pub reason: String,
}

/// `agent:available`: an agent is idle and can take a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentAvailable {
    /// The agent.
    pub agent_id: AgentId,
}

/// `agent:busy`: an agent started a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentBusy {
    /// The agent.
    pub agent_id: AgentId,
    /// The task it runs.
    pub task_id: TaskId,
}

/// `agent:error`: an agent failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentError {
    /// The agent.
    pub agent_id: AgentId,
    /// Why.
    pub reason: FailureReason,
    /// The error message.
    pub error: String,
    /// The agent's health after this failure.
    pub health: AgentHealth,
}

/// `work:stolen`: tasks moved from one agent's local queue to another's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkStolen {
    /// The victim.
    pub from: AgentId,
    /// The thief.
    pub to: AgentId,
    /// How many tasks moved.
    pub count: u32,
    /// The tasks that moved, in the victim's pop order.
    #[serde(default)]
    pub task_ids: Vec<TaskId>,
}

/// `queue:backlog`: queued tasks crossed the backlog threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueBacklog {
    /// Tasks queued now.
    pub queued: u64,
    /// The threshold crossed.
    pub threshold: u64,
}

/// `coordinator:overload`: busy/total agents crossed the overload threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoordinatorOverload {
    /// Busy agents.
    pub busy: u32,
    /// All active agents.
    pub total: u32,
    /// `busy / total`.
    pub load: f64,
}

/// `performance:degraded`: the rolling p99 queue wait missed its objective.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PerformanceDegraded {
    /// The observed p99 queue wait, in microseconds.
    #[serde(with = "crate::time::micros")]
    pub p99_queue_wait: Duration,
    /// The objective, in microseconds.
    #[serde(with = "crate::time::micros")]
    pub objective: Duration,
}

/// `system:shutdown`: shutdown began.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SystemShutdown {
    /// How long running tasks are given to finish, in microseconds.
    #[serde(with = "crate::time::micros")]
    pub deadline: Duration,
    /// Tasks still queued (they stay pending and resume on the next start).
    pub pending: u64,
}

/// `task:dead_letter_retried`: an operator sent a dead-lettered task back to
/// the queue with fresh attempts (same id). Recorded before the task is
/// queued again, so a restart after it re-queues the task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskDeadLetterRetried {
    /// The task.
    pub task_id: TaskId,
    /// The attempts the dead letter had used (its next attempt is the first again).
    pub attempts: u32,
}

/// `task:discarded`: an operator dropped a dead-lettered task for good: it is
/// no longer listed as a dead letter and never runs again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskDiscarded {
    /// The task.
    pub task_id: TaskId,
}

/// `swarm:paused`: an operator paused the swarm: no task starts until
/// `swarm:resumed` (running attempts finish; submitted tasks are queued). A
/// swarm that restarts on a log whose last word is `swarm:paused` starts paused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SwarmPaused {
    /// Attempts running on the node that paused, at the moment it paused (they finish).
    #[serde(default)]
    pub running: u64,
}

/// `swarm:resumed`: an operator resumed a paused swarm: queued tasks start again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SwarmResumed {
    /// Tasks waiting to start on the node that resumed, at that moment.
    #[serde(default)]
    pub queued: u64,
}

/// `task:throttled`: a rate or concurrency limit could not admit a task when
/// it was about to enter the runnable queues or to start. The task waits
/// outside the queues (other work keeps starting), is not failed and is
/// charged no attempt; `task:unthrottled` follows when the limit admits it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskThrottled {
    /// The task.
    pub task_id: TaskId,
    /// The limit that holds it, as the swarm names it (for example
    /// `rate(kind=llm, 60/60s)`; a limit over each key adds the key).
    pub limit: String,
}

/// `task:unthrottled`: the limit that held a task admits it again; it goes
/// back to the runnable queues (or straight to an idle agent) where it is
/// checked once more before it starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskUnthrottled {
    /// The task.
    pub task_id: TaskId,
    /// The limit that held it (as in `task:throttled`).
    pub limit: String,
    /// How long the limit held it.
    #[serde(with = "crate::time::micros")]
    pub waited: Duration,
}
