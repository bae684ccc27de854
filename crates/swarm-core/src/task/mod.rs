//! Tasks and their payloads.
//!
//! - this module: [`Task`], its accessors, and [`TaskParts`] (every field by value);
//! - `builder`: [`TaskBuilder`], the checked way to make a new task;
//! - `payload`: [`Payload`], the task's opaque bytes;
//! - `wire`: the serde form (field by field, the same as before the rarely
//!   set options moved into a box);
//! - `error`: [`TaskError`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{AgentId, Priority, TaskId, Timestamp};

mod builder;
mod error;
mod payload;
#[cfg(test)]
mod tests;
mod wire;

pub use builder::TaskBuilder;
pub use error::TaskError;
pub use payload::Payload;

/// The default bound on a task's payload: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// The cost of a task that does not set one: one unit.
const DEFAULT_COST: u32 = 1;

/// A unit of work: what to do (`kind`, `payload`), how urgently, and where.
///
/// Built with [`Task::builder`], which enforces the payload bound. Fields are
/// read through accessors so that an accepted task cannot be made invalid.
///
/// ```
/// use std::time::Duration;
/// use swarm_core::{Priority, Task};
///
/// let task = Task::builder("summarize")
///     .priority(Priority::High)
///     .payload("https://example.com/report.pdf")
///     .timeout(Duration::from_secs(30))
///     .build()?;
/// assert_eq!(task.kind(), "summarize");
/// assert_eq!(task.attempt(), 0);
///
/// let too_big = Task::builder("upload").payload(vec![0u8; 16]).max_payload(8).build();
/// assert_eq!(
///     too_big.unwrap_err().to_string(),
///     "task payload is 16 bytes, over the limit of 8 bytes: send a reference to the data instead, or raise the payload limit"
/// );
/// # Ok::<(), swarm_core::TaskError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Task {
    id: TaskId,
    created_at: Timestamp,
    kind: Arc<str>,
    payload: Payload,
    /// The options most tasks leave at their defaults, boxed so that a queued
    /// task that sets none pays one pointer for them (the queues hold
    /// millions of tasks; see `Options`). `None` exactly when every option
    /// is at its default, so the derived equality compares options by value.
    options: Option<Box<Options>>,
    attempt: u32,
    priority: Priority,
}

/// A task's rarely set options: placement (`affinity`, `pinned`), attempt
/// bounds (`timeout`, `max_attempts`) and flow control (`key`, `cost`,
/// `not_before`).
///
/// Each is read on the hot path with one test of the box pointer, which is
/// null for a task that sets none of them. Together they take 80 bytes,
/// which inline made a plain task 136 bytes instead of 64.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Options {
    affinity: Option<AgentId>,
    pinned: bool,
    timeout: Option<Duration>,
    max_attempts: Option<u32>,
    key: Option<Arc<str>>,
    cost: u32,
    not_before: Option<Timestamp>,
}

/// The options of a task that sets none, for the accessors of a task without a box.
static DEFAULT_OPTIONS: Options = Options::DEFAULT;

impl Options {
    const DEFAULT: Options = Options {
        affinity: None,
        pinned: false,
        timeout: None,
        max_attempts: None,
        key: None,
        cost: DEFAULT_COST,
        not_before: None,
    };

    fn is_default(&self) -> bool {
        *self == Options::DEFAULT
    }

    /// Boxes `self` unless every option is at its default.
    fn boxed(self) -> Option<Box<Options>> {
        (!self.is_default()).then(|| Box::new(self))
    }
}

impl Default for Options {
    fn default() -> Self {
        Options::DEFAULT
    }
}

impl Task {
    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// How urgent it is.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// What kind of work it is.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The input.
    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// How many attempts have started: 0 before the first one.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// When the task was accepted.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    fn options(&self) -> &Options {
        self.options.as_deref().unwrap_or(&DEFAULT_OPTIONS)
    }

    /// The agent this task prefers, if any.
    pub fn affinity(&self) -> Option<AgentId> {
        self.options().affinity
    }

    /// Whether the task must stay on its affine agent (never stolen).
    pub fn pinned(&self) -> bool {
        self.options().pinned
    }

    /// The time limit of one attempt, if the task sets its own.
    pub fn timeout(&self) -> Option<Duration> {
        self.options().timeout
    }

    /// The task's own bound on attempts, overriding the pool's retry policy.
    pub fn max_attempts(&self) -> Option<u32> {
        self.options().max_attempts
    }

    /// The task's key (a fairness and limit group, such as a tenant), if any.
    pub fn key(&self) -> Option<&str> {
        self.options().key.as_deref()
    }

    /// The units a rate limit charges when the task starts (default 1).
    pub fn cost(&self) -> u32 {
        self.options().cost
    }

    /// The wall-clock time before which the task does not start, if any.
    ///
    /// Absolute, so a restarted swarm keeps a delayed task's due time.
    pub fn not_before(&self) -> Option<Timestamp> {
        self.options().not_before
    }

    /// Counts the start of a new attempt and returns its number (1 for the first).
    pub fn begin_attempt(&mut self) -> u32 {
        self.attempt = self.attempt.saturating_add(1);
        self.attempt
    }

    /// Sets the attempt counter (used when rebuilding a task from an event log).
    pub fn set_attempt(&mut self, attempt: u32) {
        self.attempt = attempt;
    }

    /// Changes the priority.
    pub fn set_priority(&mut self, priority: Priority) {
        self.priority = priority;
    }

    /// Sets or clears the preferred agent.
    pub fn set_affinity(&mut self, agent: Option<AgentId>) {
        if agent.is_none() && self.options.is_none() {
            return;
        }
        // Reuses the box the task has; drops it if every option is now at its default.
        let mut options = self.options.take().unwrap_or_default();
        options.affinity = agent;
        if !options.is_default() {
            self.options = Some(options);
        }
    }
}

/// The same form as when every field was stored inline (`derive(Debug)`),
/// so logs and test output read as before.
impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options = self.options();
        f.debug_struct("Task")
            .field("id", &self.id)
            .field("priority", &self.priority)
            .field("kind", &self.kind)
            .field("payload", &self.payload)
            .field("attempt", &self.attempt)
            .field("created_at", &self.created_at)
            .field("affinity", &options.affinity)
            .field("pinned", &options.pinned)
            .field("timeout", &options.timeout)
            .field("max_attempts", &options.max_attempts)
            .field("key", &options.key)
            .field("cost", &options.cost)
            .field("not_before", &options.not_before)
            .finish()
    }
}

/// Every field of a [`Task`], by value: the form a codec that stores tasks
/// field by field (the file log's positional encoding) rebuilds one from.
///
/// [`Task::from_parts`] checks no more than deserializing a task does: it is
/// for decoding stored tasks, not for making new ones ([`Task::builder`]).
/// Not `non_exhaustive` on purpose: a field added to [`Task`] is added here,
/// and every codec that builds one stops compiling until it stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskParts {
    /// See [`Task::id`].
    pub id: TaskId,
    /// See [`Task::priority`].
    pub priority: Priority,
    /// See [`Task::kind`].
    pub kind: Arc<str>,
    /// See [`Task::payload`].
    pub payload: Payload,
    /// See [`Task::attempt`].
    pub attempt: u32,
    /// See [`Task::created_at`].
    pub created_at: Timestamp,
    /// See [`Task::affinity`].
    pub affinity: Option<AgentId>,
    /// See [`Task::pinned`].
    pub pinned: bool,
    /// See [`Task::timeout`].
    pub timeout: Option<Duration>,
    /// See [`Task::max_attempts`].
    pub max_attempts: Option<u32>,
    /// See [`Task::key`].
    pub key: Option<Arc<str>>,
    /// See [`Task::cost`].
    pub cost: u32,
    /// See [`Task::not_before`].
    pub not_before: Option<Timestamp>,
}

impl Task {
    /// Rebuilds a stored task from its fields (see [`TaskParts`]).
    pub fn from_parts(parts: TaskParts) -> Task {
        let TaskParts {
            id,
            priority,
            kind,
            payload,
            attempt,
            created_at,
            affinity,
            pinned,
            timeout,
            max_attempts,
            key,
            cost,
            not_before,
        } = parts;
        Task {
            id,
            created_at,
            kind,
            payload,
            options: Options {
                affinity,
                pinned,
                timeout,
                max_attempts,
                key,
                cost,
                not_before,
            }
            .boxed(),
            attempt,
            priority,
        }
    }
}
