//! [`SystemState`]: what a log says about the swarm, rebuilt by replay.

use std::collections::{BTreeMap, HashMap};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use swarm_core::event::AgentHealth;
use swarm_core::{AgentId, Event, Task, TaskId};

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
}

/// The state of a swarm as of a sequence of its log: tasks by status, agents
/// with health, counters.
///
/// Built by folding events with [`apply`](SystemState::apply), or by
/// [`replay`](SystemState::replay) from a store (newest snapshot, then the
/// events after it). Applying the same events always gives an equal state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemState {
    last_seq: u64,
    tasks: HashMap<TaskId, TaskRecord>,
    agents: BTreeMap<AgentId, AgentRecord>,
    counters: Counters,
}

/// The snapshot envelope, versioned so a later layout can still read this one.
#[derive(Serialize, Deserialize)]
struct SnapshotEnvelope {
    version: u32,
    state: SystemState,
}

const SNAPSHOT_VERSION: u32 = 1;

impl SystemState {
    /// An empty state (as of sequence 0).
    pub fn new() -> Self {
        SystemState::default()
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
        self.apply_at(&stored.event, stored.seq);
        self.last_seq = stored.seq;
    }

    /// Applies an event (without a sequence: [`last_seq`](Self::last_seq) is unchanged).
    pub fn apply_event(&mut self, event: &Event) {
        self.apply_at(event, 0);
    }

    // Counters saturate: a snapshot may carry any value (one at u64::MAX has a
    // valid checksum as well), and replay must neither panic nor wrap.
    fn apply_at(&mut self, event: &Event, seq: u64) {
        self.counters.events = self.counters.events.saturating_add(1);
        match event {
            Event::TaskCreated(e) => {
                self.counters.tasks_created = self.counters.tasks_created.saturating_add(1);
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
                    },
                );
            }
            Event::TaskEnqueued(e) => self.set_status(e.task_id, TaskStatus::Queued),
            Event::TaskDequeued(e) => {
                if let Some(t) = self.tasks.get_mut(&e.task_id)
                    && t.status == TaskStatus::Queued
                {
                    t.status = TaskStatus::Pending;
                }
            }
            Event::TaskAssigned(e) => {
                if let Some(t) = self.tasks.get_mut(&e.task_id) {
                    t.status = TaskStatus::Running;
                    t.attempts = e.attempt;
                    t.task.set_attempt(e.attempt);
                    t.agent = Some(e.agent_id);
                }
            }
            Event::TaskCompleted(e) => {
                self.counters.tasks_completed = self.counters.tasks_completed.saturating_add(1);
                if let Some(t) = self.tasks.get_mut(&e.task_id) {
                    t.status = TaskStatus::Completed;
                    t.agent = Some(e.agent_id);
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
                if let Some(t) = self.tasks.get_mut(&e.task_id) {
                    t.status = TaskStatus::DeadLettered;
                    t.will_retry = false;
                    if let Some(last) = e.errors.last() {
                        t.last_error = Some(last.clone());
                    }
                    t.errors.clone_from(&e.errors);
                }
            }
            Event::TaskCancelled(e) => {
                self.counters.tasks_cancelled = self.counters.tasks_cancelled.saturating_add(1);
                self.set_status(e.task_id, TaskStatus::Cancelled);
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
            // Signals that change no stored state.
            _ => {}
        }
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
        let last = store.last_seq().await?;
        SystemState::replay_to(store, last).await
    }

    /// The state as of sequence `seq` (or the log's end, if shorter): the newest
    /// valid snapshot at or before `seq`, then the events after it. A snapshot
    /// that cannot be decoded is skipped (logged) and the log read from the start.
    /// Records of event kinds this version does not know
    /// ([`StoreError::UnknownEvent`], written by a newer version) are skipped
    /// and named in a warning.
    pub async fn replay_to<S: EventStore + ?Sized>(store: &S, seq: u64) -> Result<SystemState> {
        let mut state = match store.latest_snapshot(seq).await? {
            Some(snapshot) => match SystemState::from_snapshot(&snapshot) {
                Ok(state) => state,
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring snapshot; replaying from the start");
                    SystemState::new()
                }
            },
            None => SystemState::new(),
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
