//! How a [`SystemState`] folds events in, and how it retires finished tasks
//! as its [`Retention`](super::Retention) says.

use swarm_core::event::AgentHealth;
use swarm_core::{Event, TaskId, Timestamp};

use super::{
    AgentRecord, KindCounts, RetireQueue, Retired, SystemState, TaskMap, TaskRecord, TaskStatus,
};
use crate::store::StoredEvent;

/// Drops the entries at the front of `queue` that no longer stand for their
/// record; the first that does, if any (its task and when it finished).
fn skip_stale(queue: &mut RetireQueue, tasks: &TaskMap) -> Option<(TaskId, Option<Timestamp>)> {
    while let Some(front) = queue.entries.front() {
        if tasks
            .get(&front.id)
            .is_some_and(|t| t.retire_no == front.no)
        {
            return Some((front.id, front.at));
        }
        queue.entries.pop_front();
        // Saturating: a state decoded from a crafted snapshot must not panic.
        queue.stale = queue.stale.saturating_sub(1);
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

impl SystemState {
    /// Applies a stored event and records its sequence.
    pub fn apply(&mut self, stored: &StoredEvent) {
        self.apply_at(&stored.event, stored.seq, Some(stored.timestamp));
        self.last_seq = stored.seq;
    }

    /// Applies an event (without a sequence: [`last_seq`](Self::last_seq) is
    /// unchanged; without a timestamp: only the count limit of the
    /// [`Retention`](super::Retention) retires tasks).
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
            queue.stale = queue.stale.saturating_add(1);
        }
        self.retire_no = self.retire_no.saturating_add(1);
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
            queue.stale = queue.stale.saturating_add(1);
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
    pub(super) fn retire(&mut self, now: Option<Timestamp>) {
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
        {
            if at.is_some() {
                t.updated_at = at;
            }
            // Whatever happens to the task next ends a pending back-off
            // (a `task:failed` sets the next one below).
            t.retry_at = None;
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
                        retry_at: None,
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
                    t.retry_at = match (e.will_retry, e.retry_in, at) {
                        (true, Some(after), Some(at)) => {
                            Some(Timestamp::from_micros(at.as_micros().saturating_add(
                                u64::try_from(after.as_micros()).unwrap_or(u64::MAX),
                            )))
                        }
                        _ => None,
                    };
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
}
