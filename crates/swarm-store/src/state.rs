//! [`SystemState`]: what a log says about the swarm, rebuilt by replay.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use swarm_core::event::AgentHealth;
use swarm_core::{AgentId, Event, Task, TaskId, Timestamp};

use crate::error::{Result, StoreError};
use crate::store::{EventStore, Snapshot, StoredEvent};

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
        self.entries.len() - self.stale
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
    tasks: HashMap<TaskId, TaskRecord>,
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

/// Drops the entries at the front of `queue` that no longer stand for their
/// record; the first that does, if any (its task and when it finished).
fn skip_stale(
    queue: &mut RetireQueue,
    tasks: &HashMap<TaskId, TaskRecord>,
) -> Option<(TaskId, Option<Timestamp>)> {
    while let Some(front) = queue.entries.front() {
        if tasks
            .get(&front.id)
            .is_some_and(|t| t.retire_no == front.no)
        {
            return Some((front.id, front.at));
        }
        queue.entries.pop_front();
        queue.stale -= 1;
    }
    None
}

/// The task a task event is about.
fn task_of(event: &Event) -> Option<TaskId> {
    Some(match event {
        Event::TaskCreated(e) => e.task.id(),
        Event::TaskEnqueued(e) => e.task_id,
        Event::TaskDequeued(e) => e.task_id,
        Event::TaskAssigned(e) => e.task_id,
        Event::TaskCompleted(e) => e.task_id,
        Event::TaskFailed(e) => e.task_id,
        Event::TaskDeadLettered(e) => e.task_id,
        Event::TaskCancelled(e) => e.task_id,
        Event::TaskInterrupted(e) => e.task_id,
        Event::TaskDeadLetterRetried(e) => e.task_id,
        Event::TaskDiscarded(e) => e.task_id,
        _ => return None,
    })
}

/// The snapshot envelope, versioned so a later layout can still read this one.
#[derive(Serialize, Deserialize)]
struct SnapshotEnvelope {
    version: u32,
    state: SystemState,
}

const SNAPSHOT_VERSION: u32 = 1;

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

    /// Applies a stored event and records its sequence.
    pub fn apply(&mut self, stored: &StoredEvent) {
        self.apply_at(&stored.event, stored.seq, Some(stored.timestamp));
        self.last_seq = stored.seq;
    }

    /// Applies an event (without a sequence: [`last_seq`](Self::last_seq) is
    /// unchanged; without a timestamp: only the count limit of the
    /// [`Retention`] retires tasks).
    pub fn apply_event(&mut self, event: &Event) {
        self.apply_at(event, 0, None);
    }

    /// Marks the record of `id` as finished (completed or cancelled, or dead
    /// `dead`) for the retention queues.
    fn finish(&mut self, id: TaskId, dead: bool, at: Option<Timestamp>) {
        let Some(t) = self.tasks.get_mut(&id) else {
            return;
        };
        if t.retire_no != 0 {
            // Already queued (a second terminal event): the old entry goes stale.
            let queue = if t.status == TaskStatus::DeadLettered {
                &mut self.dead
            } else {
                &mut self.finished
            };
            queue.stale += 1;
        }
        self.retire_no += 1;
        t.retire_no = self.retire_no;
        let entry = Retired {
            id,
            no: self.retire_no,
            at,
        };
        if dead {
            self.dead.entries.push_back(entry);
        } else {
            self.finished.entries.push_back(entry);
        }
    }

    /// The record of `id` leaves its retention queue without being removed
    /// (it is live again, or replaced by a new task with the same id).
    fn unfinish(&mut self, id: TaskId) {
        if let Some(t) = self.tasks.get_mut(&id)
            && t.retire_no != 0
        {
            t.retire_no = 0;
            let queue = if t.status == TaskStatus::DeadLettered {
                &mut self.dead
            } else {
                &mut self.finished
            };
            queue.stale += 1;
        }
    }

    /// A finished task becomes live again: it leaves its retention queue.
    fn reopen(&mut self, id: TaskId) {
        if self.tasks.get(&id).is_some_and(|t| t.status.is_terminal()) {
            self.unfinish(id);
        }
    }

    /// Retires what the [`Retention`] no longer keeps, as of `now` (the
    /// newest stored timestamp, if known).
    fn retire(&mut self, now: Option<Timestamp>) {
        let cutoff = match (now, self.retention.finished_for) {
            (Some(now), Some(age)) => Some(
                now.as_micros()
                    .saturating_sub(u64::try_from(age.as_micros()).unwrap_or(u64::MAX)),
            ),
            _ => None,
        };
        let cap = self.retention.finished;
        while let Some((id, at)) = skip_stale(&mut self.finished, &self.tasks) {
            let too_many = self.finished.live() > cap;
            let too_old = matches!((cutoff, at), (Some(c), Some(at)) if at.as_micros() < c);
            if !(too_many || too_old) {
                break;
            }
            self.finished.entries.pop_front();
            self.tasks.remove(&id);
            self.counters.tasks_retired = self.counters.tasks_retired.saturating_add(1);
        }
        let cap = self.retention.dead_letters;
        while let Some((id, _)) = skip_stale(&mut self.dead, &self.tasks) {
            if self.dead.live() <= cap {
                break;
            }
            self.dead.entries.pop_front();
            self.tasks.remove(&id);
            self.counters.dead_letters_dropped =
                self.counters.dead_letters_dropped.saturating_add(1);
        }
    }

    fn kind_of(&mut self, id: TaskId) -> Option<&mut KindCounts> {
        let kind = self.tasks.get(&id)?.task.kind();
        // Kinds are few: look up by &str, allocate only for a new kind.
        if !self.by_kind.contains_key(kind) {
            self.by_kind.insert(kind.to_owned(), KindCounts::default());
        }
        self.by_kind.get_mut(kind)
    }

    // Counters saturate: a snapshot may carry any value (one at u64::MAX has a
    // valid checksum as well), and replay must neither panic nor wrap.
    fn apply_at(&mut self, event: &Event, seq: u64, at: Option<Timestamp>) {
        self.counters.events = self.counters.events.saturating_add(1);
        if let Some(id) = task_of(event)
            && let Some(t) = self.tasks.get_mut(&id)
            && at.is_some()
        {
            t.updated_at = at;
        }
        match event {
            Event::TaskCreated(e) => {
                self.counters.tasks_created = self.counters.tasks_created.saturating_add(1);
                // The same id submitted again after it finished: a new task.
                self.unfinish(e.task.id());
                self.tasks.insert(
                    e.task.id(),
                    TaskRecord {
                        attempts: e.task.attempt(),
                        task: e.task.clone(),
                        status: TaskStatus::Pending,
                        agent: None,
                        last_error: None,
                        will_retry: false,
                        errors: Vec::new(),
                        created_seq: seq,
                        updated_at: at,
                        retire_no: 0,
                    },
                );
                if let Some(k) = self.kind_of(e.task.id()) {
                    k.created = k.created.saturating_add(1);
                }
            }
            Event::TaskEnqueued(e) => {
                self.reopen(e.task_id);
                self.set_status(e.task_id, TaskStatus::Queued);
            }
            Event::TaskDequeued(e) => {
                if let Some(t) = self.tasks.get_mut(&e.task_id)
                    && t.status == TaskStatus::Queued
                {
                    t.status = TaskStatus::Pending;
                }
            }
            Event::TaskAssigned(e) => {
                // A redelivered copy may run again after the task finished
                // (at-least-once): it is live until its next outcome.
                self.reopen(e.task_id);
                if let Some(t) = self.tasks.get_mut(&e.task_id) {
                    t.status = TaskStatus::Running;
                    t.attempts = e.attempt;
                    t.task.set_attempt(e.attempt);
                    t.agent = Some(e.agent_id);
                }
            }
            Event::TaskCompleted(e) => {
                self.counters.tasks_completed = self.counters.tasks_completed.saturating_add(1);
                // A second outcome of a finished task (a redelivered copy
                // that was not seen starting) changes nothing but counters.
                let known = self
                    .tasks
                    .get(&e.task_id)
                    .is_some_and(|t| !t.status.is_terminal());
                if known {
                    if let Some(t) = self.tasks.get_mut(&e.task_id) {
                        t.status = TaskStatus::Completed;
                        t.agent = Some(e.agent_id);
                    }
                    self.finish(e.task_id, false, at);
                    if let Some(k) = self.kind_of(e.task_id) {
                        k.completed = k.completed.saturating_add(1);
                    }
                }
                if let Some(a) = self.agents.get_mut(&e.agent_id) {
                    a.completed = a.completed.saturating_add(1);
                    if a.busy_with == Some(e.task_id) {
                        a.busy_with = None;
                    }
                }
            }
            Event::TaskFailed(e) => {
                self.counters.attempts_failed = self.counters.attempts_failed.saturating_add(1);
                if e.will_retry {
                    self.counters.retries = self.counters.retries.saturating_add(1);
                }
                self.reopen(e.task_id);
                if let Some(t) = self.tasks.get_mut(&e.task_id) {
                    t.status = TaskStatus::Failed;
                    t.last_error = Some(e.error.clone());
                    t.errors.push(e.error.clone());
                    t.will_retry = e.will_retry;
                    if e.agent_id.is_some() {
                        t.agent = e.agent_id;
                    }
                }
                if let Some(a) = e.agent_id.and_then(|id| self.agents.get_mut(&id)) {
                    a.failed = a.failed.saturating_add(1);
                    if a.busy_with == Some(e.task_id) {
                        a.busy_with = None;
                    }
                }
            }
            Event::TaskDeadLettered(e) => {
                // Recorded twice when a distributed node retries a failed
                // dead-letter copy on another node: count the task once.
                let again = self
                    .tasks
                    .get(&e.task_id)
                    .is_some_and(|t| t.status == TaskStatus::DeadLettered);
                if !again {
                    self.counters.tasks_dead_lettered =
                        self.counters.tasks_dead_lettered.saturating_add(1);
                }
                let known = self.tasks.contains_key(&e.task_id);
                if known && !again {
                    // Leaves the finished queue if it was there (a dead
                    // letter recorded after another terminal event).
                    self.unfinish(e.task_id);
                }
                if let Some(t) = self.tasks.get_mut(&e.task_id) {
                    t.status = TaskStatus::DeadLettered;
                    t.will_retry = false;
                    if let Some(last) = e.errors.last() {
                        t.last_error = Some(last.clone());
                    }
                    t.errors.clone_from(&e.errors);
                }
                if known && !again {
                    self.finish(e.task_id, true, at);
                    if let Some(k) = self.kind_of(e.task_id) {
                        k.dead_lettered = k.dead_lettered.saturating_add(1);
                    }
                }
            }
            Event::TaskCancelled(e) => {
                self.counters.tasks_cancelled = self.counters.tasks_cancelled.saturating_add(1);
                let known = self
                    .tasks
                    .get(&e.task_id)
                    .is_some_and(|t| !t.status.is_terminal());
                if known {
                    self.set_status(e.task_id, TaskStatus::Cancelled);
                    self.finish(e.task_id, false, at);
                    if let Some(k) = self.kind_of(e.task_id) {
                        k.cancelled = k.cancelled.saturating_add(1);
                    }
                }
            }
            Event::TaskInterrupted(e) => {
                // Back to pending; the stopped attempt is not charged.
                if let Some(t) = self.tasks.get_mut(&e.task_id)
                    && t.status == TaskStatus::Running
                {
                    t.status = TaskStatus::Pending;
                    t.attempts = e.attempt.saturating_sub(1);
                    t.task.set_attempt(t.attempts);
                }
                if let Some(a) = self.agents.get_mut(&e.agent_id)
                    && a.busy_with == Some(e.task_id)
                {
                    a.busy_with = None;
                }
            }
            Event::AgentCreated(e) => {
                self.counters.agents_created = self.counters.agents_created.saturating_add(1);
                self.agents.insert(
                    e.agent_id,
                    AgentRecord {
                        id: e.agent_id,
                        health: AgentHealth::Healthy,
                        busy_with: None,
                        reserve: e.reserve,
                        completed: 0,
                        failed: 0,
                    },
                );
            }
            Event::AgentRemoved(e) => {
                self.counters.agents_removed = self.counters.agents_removed.saturating_add(1);
                self.agents.remove(&e.agent_id);
            }
            Event::AgentAvailable(e) => {
                if let Some(a) = self.agents.get_mut(&e.agent_id) {
                    a.busy_with = None;
                }
            }
            Event::AgentBusy(e) => {
                if let Some(a) = self.agents.get_mut(&e.agent_id) {
                    a.busy_with = Some(e.task_id);
                }
            }
            Event::AgentError(e) => {
                self.counters.agent_errors = self.counters.agent_errors.saturating_add(1);
                if let Some(a) = self.agents.get_mut(&e.agent_id) {
                    a.health = e.health;
                }
            }
            Event::WorkStolen(e) => {
                self.counters.tasks_stolen = self
                    .counters
                    .tasks_stolen
                    .saturating_add(u64::from(e.count));
            }
            // Back to pending with fresh attempts; it leaves the dead letters.
            Event::TaskDeadLetterRetried(e) if self.is_dead_letter(e.task_id) => {
                self.unfinish(e.task_id);
                if let Some(t) = self.tasks.get_mut(&e.task_id) {
                    t.status = TaskStatus::Pending;
                    t.attempts = 0;
                    t.task.set_attempt(0);
                    t.errors.clear();
                    t.last_error = None;
                    t.will_retry = false;
                }
            }
            // Acted on: no longer a dead letter (its aggregates stay).
            Event::TaskDiscarded(e) if self.is_dead_letter(e.task_id) => {
                self.unfinish(e.task_id);
                self.tasks.remove(&e.task_id);
            }
            Event::SwarmPaused(_) => self.paused = true,
            Event::SwarmResumed(_) => self.paused = false,
            // Signals that change no stored state.
            _ => {}
        }
        self.retire(at);
    }

    fn is_dead_letter(&self, id: TaskId) -> bool {
        self.tasks
            .get(&id)
            .is_some_and(|t| t.status == TaskStatus::DeadLettered)
    }

    fn set_status(&mut self, id: TaskId, status: TaskStatus) {
        if let Some(t) = self.tasks.get_mut(&id) {
            t.status = status;
        }
    }

    /// Encodes the state as a snapshot at [`last_seq`](Self::last_seq).
    pub fn to_snapshot(&self) -> Result<Snapshot> {
        #[derive(Serialize)]
        struct Borrowed<'a> {
            version: u32,
            state: &'a SystemState,
        }
        let data = rmp_serde::to_vec_named(&Borrowed {
            version: SNAPSHOT_VERSION,
            state: self,
        })
        .map_err(|e| StoreError::Encode {
            what: "snapshot",
            message: e.to_string(),
        })?;
        Ok(Snapshot {
            seq: self.last_seq,
            data,
        })
    }

    /// Decodes a snapshot made by [`to_snapshot`](Self::to_snapshot).
    pub fn from_snapshot(snapshot: &Snapshot) -> Result<SystemState> {
        let bad = |message: String| StoreError::BadSnapshot {
            seq: snapshot.seq,
            message,
        };
        let envelope: SnapshotEnvelope =
            rmp_serde::from_slice(&snapshot.data).map_err(|e| bad(e.to_string()))?;
        if envelope.version != SNAPSHOT_VERSION {
            return Err(bad(format!(
                "snapshot version {} is not {SNAPSHOT_VERSION}",
                envelope.version
            )));
        }
        if envelope.state.last_seq != snapshot.seq {
            return Err(bad(format!(
                "the state inside is at sequence {}",
                envelope.state.last_seq
            )));
        }
        Ok(envelope.state)
    }

    /// The state as of the log's last sequence.
    pub async fn replay<S: EventStore + ?Sized>(store: &S) -> Result<SystemState> {
        SystemState::replay_with(store, Retention::default()).await
    }

    /// [`replay`](Self::replay) into a state that keeps finished tasks as
    /// `retention` says.
    pub async fn replay_with<S: EventStore + ?Sized>(
        store: &S,
        retention: Retention,
    ) -> Result<SystemState> {
        let last = store.last_seq().await?;
        SystemState::replay_to_with(store, last, retention).await
    }

    /// The state as of sequence `seq` (or the log's end, if shorter): the newest
    /// valid snapshot at or before `seq`, then the events after it. A snapshot
    /// that cannot be decoded is skipped (logged) and the log read from the start.
    /// Records of event kinds this version does not know
    /// ([`StoreError::UnknownEvent`], written by a newer version) are skipped
    /// and named in a warning.
    ///
    /// When the events after the snapshot (or, with no snapshot, from the
    /// start) are no longer in the log, because a retention policy removed
    /// them, this fails with [`StoreError::Compacted`], which names the
    /// earliest sequence the log still holds.
    pub async fn replay_to<S: EventStore + ?Sized>(store: &S, seq: u64) -> Result<SystemState> {
        SystemState::replay_to_with(store, seq, Retention::default()).await
    }

    /// [`replay_to`](Self::replay_to) into a state that keeps finished tasks
    /// as `retention` says.
    pub async fn replay_to_with<S: EventStore + ?Sized>(
        store: &S,
        seq: u64,
        retention: Retention,
    ) -> Result<SystemState> {
        let mut state = match store.latest_snapshot(seq).await? {
            Some(snapshot) => match SystemState::from_snapshot(&snapshot) {
                Ok(mut state) => {
                    state.set_retention(retention);
                    state
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring snapshot; replaying from the start");
                    SystemState::with_retention(retention)
                }
            },
            None => SystemState::with_retention(retention),
        };
        if state.last_seq >= seq {
            return Ok(state);
        }
        let mut events = store.read(state.last_seq + 1);
        // Records of event kinds a newer version wrote: skipped, by name.
        let mut ignored: BTreeMap<String, u64> = BTreeMap::new();
        while let Some(stored) = events.next().await {
            let stored = match stored {
                Ok(stored) => stored,
                Err(StoreError::UnknownEvent { seq: at, name, .. }) if at <= seq => {
                    *ignored.entry(name).or_default() += 1;
                    state.last_seq = at;
                    if at == seq {
                        break;
                    }
                    continue;
                }
                Err(StoreError::UnknownEvent { .. }) => break,
                Err(e) => return Err(e),
            };
            if stored.seq > seq {
                break;
            }
            state.apply(&stored);
            if stored.seq == seq {
                break;
            }
        }
        if !ignored.is_empty() {
            let list: Vec<String> = ignored
                .iter()
                .map(|(name, n)| format!("{n} × {name}"))
                .collect();
            tracing::warn!(
                ignored = %list.join(", "),
                "the log was written by a newer version of swarm: replay ignored the events this version does not know"
            );
        }
        Ok(state)
    }
}
