//! Tasks and their payloads.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{AgentId, Priority, TaskId, Timestamp};

/// The default bound on a task's payload: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// A task's opaque input (or an agent's output): immutable bytes, cheap to clone.
///
/// Serialized as bytes by binary formats; by human-readable formats (JSON) as a
/// string when the bytes are UTF-8 and as an array of numbers otherwise, so a
/// JSON payload stays readable in `swarm events` output and round-trips exactly.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Payload(Arc<[u8]>);

impl Payload {
    /// An empty payload.
    pub fn empty() -> Self {
        Payload::default()
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the payload has no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The payload as UTF-8 text, if it is.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Serializes `value` as JSON.
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::to_vec(value).map(Payload::from)
    }

    /// Deserializes the payload from JSON.
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn to_json<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.0)
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) if s.len() <= 64 => write!(f, "Payload({s:?})"),
            _ => write!(f, "Payload({} bytes)", self.len()),
        }
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Self {
        Payload(v.into())
    }
}

impl From<&[u8]> for Payload {
    fn from(v: &[u8]) -> Self {
        Payload(v.into())
    }
}

impl From<String> for Payload {
    fn from(s: String) -> Self {
        Payload(s.into_bytes().into())
    }
}

impl From<&str> for Payload {
    fn from(s: &str) -> Self {
        Payload(s.as_bytes().into())
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            match self.as_str() {
                Some(text) => s.serialize_str(text),
                None => s.collect_seq(self.0.iter()),
            }
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PayloadVisitor;

        impl<'de> Visitor<'de> for PayloadVisitor {
            type Value = Payload;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes, a string, or an array of bytes")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Payload, E> {
                Ok(Payload::from(v))
            }

            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Payload, E> {
                Ok(Payload::from(v))
            }

            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Payload, E> {
                Ok(Payload::from(v))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Payload, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(b) = seq.next_element::<u8>()? {
                    bytes.push(b);
                }
                Ok(Payload::from(bytes))
            }
        }

        if d.is_human_readable() {
            d.deserialize_any(PayloadVisitor)
        } else {
            d.deserialize_byte_buf(PayloadVisitor)
        }
    }
}

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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    id: TaskId,
    priority: Priority,
    kind: Arc<str>,
    #[serde(default)]
    payload: Payload,
    #[serde(default)]
    attempt: u32,
    created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    affinity: Option<AgentId>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pinned: bool,
    #[serde(
        default,
        with = "crate::time::micros_opt",
        skip_serializing_if = "Option::is_none"
    )]
    timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<Arc<str>>,
    #[serde(default = "default_cost", skip_serializing_if = "is_default_cost")]
    cost: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_before: Option<Timestamp>,
}

/// The cost of a task that does not set one: one unit.
const DEFAULT_COST: u32 = 1;

fn default_cost() -> u32 {
    DEFAULT_COST
}

fn is_default_cost(cost: &u32) -> bool {
    *cost == DEFAULT_COST
}

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

    /// The agent this task prefers, if any.
    pub fn affinity(&self) -> Option<AgentId> {
        self.affinity
    }

    /// Whether the task must stay on its affine agent (never stolen).
    pub fn pinned(&self) -> bool {
        self.pinned
    }

    /// The time limit of one attempt, if the task sets its own.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The task's own bound on attempts, overriding the pool's retry policy.
    pub fn max_attempts(&self) -> Option<u32> {
        self.max_attempts
    }

    /// The task's key (a fairness and limit group, such as a tenant), if any.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The units a rate limit charges when the task starts (default 1).
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// The wall-clock time before which the task does not start, if any.
    ///
    /// Absolute, so a restarted swarm keeps a delayed task's due time.
    pub fn not_before(&self) -> Option<Timestamp> {
        self.not_before
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
        self.affinity = agent;
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
        Ok(Task {
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
        })
    }
}

/// Why a task could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    /// The payload is over the configured bound.
    PayloadTooLarge {
        /// The payload's size in bytes.
        size: usize,
        /// The bound in bytes.
        limit: usize,
    },
    /// `max_attempts(0)` was asked for; a task needs at least one attempt.
    ZeroAttempts,
    /// The JSON payload could not be serialized.
    Json(String),
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskError::PayloadTooLarge { size, limit } => write!(
                f,
                "task payload is {size} bytes, over the limit of {limit} bytes: send a reference to the data instead, or raise the payload limit"
            ),
            TaskError::ZeroAttempts => {
                f.write_str("a task needs at least one attempt: max_attempts must be 1 or more")
            }
            TaskError::Json(message) => {
                write!(f, "task payload could not be serialized as JSON: {message}")
            }
        }
    }
}

impl std::error::Error for TaskError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_at_the_limit_is_accepted_and_over_it_refused() {
        let ok = Task::builder("k")
            .payload(vec![1u8; 10])
            .max_payload(10)
            .build();
        assert_eq!(ok.unwrap().payload().len(), 10);
        let err = Task::builder("k")
            .payload(vec![1u8; 11])
            .max_payload(10)
            .build();
        assert_eq!(
            err.unwrap_err(),
            TaskError::PayloadTooLarge {
                size: 11,
                limit: 10
            }
        );
    }

    #[test]
    fn default_limit_is_one_mebibyte() {
        assert!(
            Task::builder("k")
                .payload(vec![0u8; DEFAULT_MAX_PAYLOAD])
                .build()
                .is_ok()
        );
        assert!(
            Task::builder("k")
                .payload(vec![0u8; DEFAULT_MAX_PAYLOAD + 1])
                .build()
                .is_err()
        );
    }

    #[test]
    fn payload_serde_round_trips_text_and_binary() {
        for p in [
            Payload::from("{\"a\":1}"),
            Payload::from(vec![0xff, 0x00, 0x80]),
            Payload::empty(),
        ] {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<Payload>(&json).unwrap(), p);
        }
        assert_eq!(
            serde_json::to_string(&Payload::from("hi")).unwrap(),
            "\"hi\""
        );
    }

    #[test]
    fn old_task_records_without_optional_fields_still_read() {
        let json = r#"{"id":1,"priority":"high","kind":"k","created_at":5}"#;
        let task: Task = serde_json::from_str(json).unwrap();
        assert_eq!(task.priority(), Priority::High);
        assert_eq!(task.attempt(), 0);
        assert!(task.payload().is_empty());
        assert_eq!(task.timeout(), None);
        assert_eq!(task.key(), None);
        assert_eq!(task.cost(), DEFAULT_COST);
        assert_eq!(task.not_before(), None);
    }

    #[test]
    fn flow_fields_round_trip_and_defaults_are_not_written() {
        let plain = Task::builder("k").build().unwrap();
        let json = serde_json::to_string(&plain).unwrap();
        assert!(!json.contains("cost") && !json.contains("key") && !json.contains("not_before"));
        let at = UNIX_EPOCH + Duration::from_secs(4_000_000_000);
        let task = Task::builder("k")
            .key("tenant-a")
            .cost(250)
            .not_before(at)
            .build()
            .unwrap();
        assert_eq!(
            task.not_before(),
            Some(Timestamp::from_micros(4_000_000_000_000_000))
        );
        let json = serde_json::to_string(&task).unwrap();
        let back: Task = serde_json::from_str(&json).unwrap();
        assert_eq!(back, task);
        assert_eq!(back.key(), Some("tenant-a"));
        assert_eq!(back.cost(), 250);
    }

    #[test]
    fn a_delay_counts_from_build_and_the_last_start_setting_wins() {
        let before = Timestamp::now();
        let task = Task::builder("k")
            .not_before(UNIX_EPOCH)
            .delay(Duration::from_secs(60))
            .build()
            .unwrap();
        let due = task.not_before().unwrap();
        assert!(due.saturating_duration_since(before) >= Duration::from_secs(60));
        assert!(due.saturating_duration_since(task.created_at()) == Duration::from_secs(60));
        let past = Task::builder("k")
            .delay(Duration::from_secs(1))
            .not_before(UNIX_EPOCH)
            .build()
            .unwrap();
        assert_eq!(past.not_before(), Some(Timestamp::from_micros(0)));
    }

    #[test]
    fn attempts_count_up() {
        let mut t = Task::builder("k").build().unwrap();
        assert_eq!(t.begin_attempt(), 1);
        assert_eq!(t.begin_attempt(), 2);
        assert_eq!(t.attempt(), 2);
    }
}
