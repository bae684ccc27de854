//! [`SystemState`]: what a log says about the swarm, rebuilt by replay.
//!
//! The parts: folding events in and retiring finished tasks (`apply`),
//! the snapshot codec (`snapshot`), and replay from a store (`replay`).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use swarm_core::event::AgentHealth;
use swarm_core::{AgentId, Task, TaskId, Timestamp};

mod apply;
mod id_hash;
mod replay;
mod snapshot;
mod task_map;

use task_map::TaskMap;

/// Where a task stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Accepted, not in a queue and not running (also between dequeue and start).
    Pending,
    /// Waiting in a queue.
    Queued,
    /// An attempt is running.
    Running,
    /// Finished successfully.
    Completed,
    /// The latest attempt failed; see [`TaskRecord::will_retry`].
    Failed,
    /// No more attempts will be made.
    DeadLettered,
    /// Cancelled by the user.
    Cancelled,
}

impl TaskStatus {
    /// Whether the task is done for good (completed, dead-lettered or cancelled).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::DeadLettered | TaskStatus::Cancelled
        )
    }
}

/// One task as the log describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The full task, with its attempt counter set to `attempts`, ready to re-queue.
    pub task: Task,
    /// Where it stands.
    pub status: TaskStatus,
    /// Attempts started so far.
    pub attempts: u32,
    /// The agent running it (or that ran its latest attempt).
    pub agent: Option<AgentId>,
    /// The error of the latest failed attempt.
    pub last_error: Option<String>,
    /// Whether the latest failure will be retried (only meaningful when `Failed`).
    pub will_retry: bool,
    /// The error of each failed attempt, oldest first (what a dead letter lists).
    #[serde(default)]
    pub errors: Vec<String>,
    /// The log sequence of its `task:created` (0 when applied without one):
    /// the order tasks were accepted in, which recovery keeps within a level.
    #[serde(default)]
    pub created_seq: u64,
    /// When the latest stored event about it was accepted (`None` for
    /// records built only from events without a stored timestamp). For a
    /// finished task, when it finished.
    #[serde(default)]
    pub updated_at: Option<Timestamp>,
    /// When the retry of the latest failed attempt is due: the stored time
    /// of its `task:failed` plus the back-off that event announced. `None`
    /// when no back-off is pending (the record is not `Failed` with a
    /// retry, or the event had no stored time). A restart holds the task
    /// until then, so a back-off is not cut short by the restart.
    #[serde(default)]
    pub retry_at: Option<Timestamp>,
    /// Which entry of the retention queues stands for this record (0: none).
    #[serde(default)]
    pub(crate) retire_no: u64,
}

impl TaskRecord {
    /// Whether a restarted swarm must run this task (again): it was pending,
    /// queued, running, or failed with a retry due. At-least-once: a task that
    /// was running at a crash runs again.
    pub fn needs_requeue(&self) -> bool {
        match self.status {
            TaskStatus::Pending | TaskStatus::Queued | TaskStatus::Running => true,
            TaskStatus::Failed => self.will_retry,
            TaskStatus::Completed | TaskStatus::DeadLettered | TaskStatus::Cancelled => false,
        }
    }
}

/// One agent of the pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// The agent.
    pub id: AgentId,
    /// Its health, from its latest `agent:error`.
    pub health: AgentHealth,
    /// The task it is running, if busy.
    pub busy_with: Option<TaskId>,
    /// Whether it was created as a reserve agent.
    pub reserve: bool,
    /// Tasks it completed.
    pub completed: u64,
    /// Attempts of it that failed.
    pub failed: u64,
}

/// How long a [`SystemState`] keeps finished tasks, so that its memory and
/// its snapshots grow with what is live, not with history.
///
/// Live tasks (pending, queued, running, failed with a retry due) are always
/// kept. Of the finished ones:
/// - completed and cancelled tasks stay queryable (by
///   [`SystemState::task`]) while they are among the newest
///   [`finished`](Retention::finished) to finish and finished less than
///   [`finished_for`](Retention::finished_for) before the newest stored event;
/// - dead letters are work for a person: they stay until acted on (or until
///   the state holds more than [`dead_letters`](Retention::dead_letters); the
///   oldest are then dropped and counted in
///   [`Counters::dead_letters_dropped`]).
///
/// A retired task leaves only aggregates: [`Counters`] and the per-kind
/// counts of [`SystemState::kinds`]. Age is measured on the log's own
/// timestamps (the stored event's), so replaying the same log gives the same
/// state whatever the wall clock says; a state that receives no events keeps
/// what it holds.
///
/// The default keeps the last 10 000 finished tasks for at most an hour, and
/// at most 10 000 dead letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    finished: usize,
    finished_for: Option<Duration>,
    dead_letters: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention::DEFAULT
    }
}

impl Retention {
    /// The default: 10 000 finished tasks, for an hour; 10 000 dead letters.
    pub const DEFAULT: Retention = Retention {
        finished: 10_000,
        finished_for: Some(Duration::from_secs(3600)),
        dead_letters: 10_000,
    };

    /// Keeps every task for ever: memory grows with history. For tests and
    /// short-lived tools, not for services.
    pub const fn unbounded() -> Self {
        Retention {
            finished: usize::MAX,
            finished_for: None,
            dead_letters: usize::MAX,
        }
    }

    /// Keeps at most `count` finished (completed or cancelled) tasks, the
    /// newest to finish (0: none).
    #[must_use]
    pub const fn finished(mut self, count: usize) -> Self {
        self.finished = count;
        self
    }

    /// Keeps finished tasks only while they finished less than `age` before
    /// the newest stored event (`None`: no age limit).
    #[must_use]
    pub const fn finished_for(mut self, age: Option<Duration>) -> Self {
        self.finished_for = age;
        self
    }

    /// Keeps at most `count` dead letters, dropping (and counting) the oldest
    /// beyond it.
    #[must_use]
    pub const fn dead_letters(mut self, count: usize) -> Self {
        self.dead_letters = count;
        self
    }

    /// The most finished tasks kept.
    pub const fn max_finished(&self) -> usize {
        self.finished
    }

    /// The longest a finished task is kept, if limited.
    pub const fn max_finished_age(&self) -> Option<Duration> {
        self.finished_for
    }

    /// The most dead letters kept.
    pub const fn max_dead_letters(&self) -> usize {
        self.dead_letters
    }
}

/// Outcome counts of the tasks of one kind, over the whole log (retired
/// tasks included).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCounts {
    /// Tasks accepted.
    pub created: u64,
    /// Tasks completed.
    pub completed: u64,
    /// Tasks dead-lettered.
    pub dead_lettered: u64,
    /// Tasks cancelled.
    pub cancelled: u64,
}

/// One entry of a retention queue: a task that finished, in finishing order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Retired {
    id: TaskId,
    /// Matches the record's `retire_no` while the record still stands for it.
    no: u64,
    /// When it finished (None: applied without a timestamp).
    at: Option<Timestamp>,
}

/// Finished tasks in finishing order, oldest first, for retirement.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct RetireQueue {
    entries: VecDeque<Retired>,
    /// Entries whose record no longer stands for them (the id was submitted
    /// again, or a dead letter was acted on): skipped when reached.
    stale: usize,
}

impl RetireQueue {
    /// How many entries still stand for their record.
    fn live(&self) -> usize {
        self.entries.len().saturating_sub(self.stale)
    }
}

/// Counts over the whole log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Events applied.
    pub events: u64,
    /// Tasks accepted.
    pub tasks_created: u64,
    /// Tasks completed.
    pub tasks_completed: u64,
    /// Attempts failed.
    pub attempts_failed: u64,
    /// Failed attempts that were retried.
    pub retries: u64,
    /// Tasks dead-lettered.
    pub tasks_dead_lettered: u64,
    /// Tasks cancelled.
    pub tasks_cancelled: u64,
    /// Tasks moved by work stealing.
    pub tasks_stolen: u64,
    /// `agent:error` events.
    pub agent_errors: u64,
    /// Agents created.
    pub agents_created: u64,
    /// Agents removed.
    pub agents_removed: u64,
    /// Finished tasks retired from the state by its [`Retention`] (their
    /// aggregates stay).
    #[serde(default)]
    pub tasks_retired: u64,
    /// Dead letters dropped because more than
    /// [`Retention::max_dead_letters`] were waiting.
    #[serde(default)]
    pub dead_letters_dropped: u64,
}

/// The state of a swarm as of a sequence of its log: tasks by status, agents
/// with health, counters.
///
/// Built by folding events with [`apply`](SystemState::apply), or by
/// [`replay`](SystemState::replay) from a store (newest snapshot, then the
/// events after it). Applying the same events always gives an equal state.
///
/// It holds the live tasks and a bounded window of finished ones (see
/// [`Retention`]), so its memory, and a snapshot of it, cost what is live
/// plus the window, not the whole history.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemState {
    last_seq: u64,
    tasks: TaskMap,
    agents: BTreeMap<AgentId, AgentRecord>,
    counters: Counters,
    /// Completed and cancelled tasks, in finishing order.
    #[serde(default)]
    finished: RetireQueue,
    /// Dead letters, in dead-lettering order.
    #[serde(default)]
    dead: RetireQueue,
    /// Numbers the retention queues' entries.
    #[serde(default)]
    retire_no: u64,
    #[serde(default)]
    by_kind: BTreeMap<String, KindCounts>,
    /// Whether the latest pause event is `swarm:paused`.
    #[serde(default)]
    paused: bool,
    /// Configuration, not state: not part of a snapshot.
    #[serde(skip)]
    retention: Retention,
}

impl SystemState {
    /// An empty state (as of sequence 0) with the default [`Retention`].
    pub fn new() -> Self {
        SystemState::default()
    }

    /// An empty state that keeps finished tasks as `retention` says.
    pub fn with_retention(retention: Retention) -> Self {
        SystemState {
            retention,
            ..SystemState::default()
        }
    }

    /// How this state keeps finished tasks.
    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Changes how this state keeps finished tasks; a tighter window retires
    /// the tasks beyond it now.
    pub fn set_retention(&mut self, retention: Retention) {
        self.retention = retention;
        let now = self.tasks.values().filter_map(|t| t.updated_at).max();
        self.retire(now);
    }

    /// Outcome counts by task kind, over the whole log (retired tasks
    /// included), by kind name.
    pub fn kinds(&self) -> impl Iterator<Item = (&str, &KindCounts)> {
        self.by_kind.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether the swarm is paused: the latest of `swarm:paused` /
    /// `swarm:resumed` in the log is `swarm:paused`.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// How many tasks the state holds (live, and finished within the window).
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// The sequence of the last stored event applied (0 if none).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Every task.
    pub fn tasks(&self) -> impl Iterator<Item = &TaskRecord> {
        self.tasks.values()
    }

    /// One task.
    pub fn task(&self, id: TaskId) -> Option<&TaskRecord> {
        self.tasks.get(&id)
    }

    /// The tasks with the given status.
    pub fn tasks_with_status(&self, status: TaskStatus) -> impl Iterator<Item = &TaskRecord> {
        self.tasks.values().filter(move |t| t.status == status)
    }

    /// How many tasks have the given status.
    pub fn count(&self, status: TaskStatus) -> usize {
        self.tasks.values().filter(|t| t.status == status).count()
    }

    /// The tasks a restarting swarm must queue again (see
    /// [`TaskRecord::needs_requeue`]), most urgent first, then oldest first.
    pub fn tasks_to_requeue(&self) -> Vec<Task> {
        self.records_to_requeue()
            .into_iter()
            .map(|t| t.task.clone())
            .collect()
    }

    /// The records of the tasks a restarting swarm must queue again, in the
    /// order of [`tasks_to_requeue`](Self::tasks_to_requeue): most urgent
    /// first, then in the order they were accepted (log order; creation time
    /// and id break ties for records applied without a sequence).
    pub fn records_to_requeue(&self) -> Vec<&TaskRecord> {
        let mut out: Vec<&TaskRecord> = self.tasks.values().filter(|t| t.needs_requeue()).collect();
        out.sort_by(|a, b| {
            b.task
                .priority()
                .cmp(&a.task.priority())
                .then(a.created_seq.cmp(&b.created_seq))
                .then(a.task.created_at().cmp(&b.task.created_at()))
                .then(a.task.id().cmp(&b.task.id()))
        });
        out
    }

    /// The agents in the pool, by id.
    pub fn agents(&self) -> impl Iterator<Item = &AgentRecord> {
        self.agents.values()
    }

    /// One agent.
    pub fn agent(&self, id: AgentId) -> Option<&AgentRecord> {
        self.agents.get(&id)
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
}
