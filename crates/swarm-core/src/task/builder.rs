//! [`TaskBuilder`]: how a new task is made, with its bounds checked.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[cfg(feature = "json")]
use serde::Serialize;

use super::{DEFAULT_COST, DEFAULT_MAX_PAYLOAD, Payload, Task, TaskError, TaskParts};
use crate::{AgentId, Priority, TaskId, Timestamp};

/// When to start a built task: not before a moment, or after a delay counted
/// from `build`.
#[derive(Debug, Clone, Copy)]
enum Start {
    At(Timestamp),
    After(Duration),
}

fn timestamp_of(time: SystemTime) -> Timestamp {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => Timestamp::from_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        Err(_) => Timestamp::from_micros(0),
    }
}

impl Task {
    /// Starts building a task of the given kind (a short name such as `"summarize"`).
    pub fn builder(kind: impl Into<Arc<str>>) -> TaskBuilder {
        TaskBuilder {
            id: None,
            priority: Priority::Normal,
            kind: kind.into(),
            payload: Payload::empty(),
            affinity: None,
            pinned: false,
            timeout: None,
            max_attempts: None,
            max_payload: DEFAULT_MAX_PAYLOAD,
            key: None,
            cost: DEFAULT_COST,
            start: None,
        }
    }
}

/// Builds a [`Task`], checking the payload bound.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct TaskBuilder {
    id: Option<TaskId>,
    priority: Priority,
    kind: Arc<str>,
    payload: Payload,
    affinity: Option<AgentId>,
    pinned: bool,
    timeout: Option<Duration>,
    max_attempts: Option<u32>,
    max_payload: usize,
    key: Option<Arc<str>>,
    cost: u32,
    start: Option<Start>,
}

impl TaskBuilder {
    /// Uses this id instead of a generated one.
    pub fn id(mut self, id: TaskId) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the priority (default `Normal`).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the payload.
    pub fn payload(mut self, payload: impl Into<Payload>) -> Self {
        self.payload = payload.into();
        self
    }

    /// Sets the payload to `value` serialized as JSON.
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self, TaskError> {
        self.payload = Payload::json(value).map_err(|e| TaskError::Json(e.to_string()))?;
        Ok(self)
    }

    /// Prefers this agent (the task goes to its local queue).
    pub fn affinity(mut self, agent: AgentId) -> Self {
        self.affinity = Some(agent);
        self
    }

    /// Keeps the task on its affine agent: it is never stolen.
    pub fn pinned(mut self, pinned: bool) -> Self {
        self.pinned = pinned;
        self
    }

    /// Limits each attempt to `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Bounds the attempts of this task, overriding the pool's retry policy.
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = Some(max_attempts);
        self
    }

    /// Puts the task in a key (a fairness and limit group such as a tenant):
    /// limits selected by key and fair share use it.
    pub fn key(mut self, key: impl Into<Arc<str>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the units a rate limit charges when the task starts (default 1;
    /// for example the tokens a model call is expected to use). A cost of 0
    /// is never charged.
    pub fn cost(mut self, cost: u32) -> Self {
        self.cost = cost;
        self
    }

    /// Starts the task no sooner than `delay` after [`build`](Self::build)
    /// (stored as an absolute wall-clock time). Replaces an earlier
    /// [`not_before`](Self::not_before).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.start = Some(Start::After(delay));
        self
    }

    /// Starts the task no sooner than `time` (wall clock; a time in the past
    /// means no delay). Replaces an earlier [`delay`](Self::delay).
    pub fn not_before(mut self, time: SystemTime) -> Self {
        self.start = Some(Start::At(timestamp_of(time)));
        self
    }

    /// Sets the payload bound in bytes (default [`DEFAULT_MAX_PAYLOAD`]).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Builds the task, refusing a payload over the bound (never truncating it).
    pub fn build(self) -> Result<Task, TaskError> {
        if self.payload.len() > self.max_payload {
            return Err(TaskError::PayloadTooLarge {
                size: self.payload.len(),
                limit: self.max_payload,
            });
        }
        if self.max_attempts == Some(0) {
            return Err(TaskError::ZeroAttempts);
        }
        let created_at = Timestamp::now();
        let not_before = match self.start {
            None => None,
            Some(Start::At(at)) => Some(at),
            Some(Start::After(delay)) => Some(Timestamp::from_micros(
                created_at
                    .as_micros()
                    .saturating_add(u64::try_from(delay.as_micros()).unwrap_or(u64::MAX)),
            )),
        };
        Ok(Task::from_parts(TaskParts {
            id: self.id.unwrap_or_else(TaskId::generate),
            priority: self.priority,
            kind: self.kind,
            payload: self.payload,
            attempt: 0,
            created_at,
            affinity: self.affinity,
            pinned: self.pinned,
            timeout: self.timeout,
            max_attempts: self.max_attempts,
            key: self.key,
            cost: self.cost,
            not_before,
        }))
    }
}
