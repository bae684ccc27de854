//! The serde form of a [`Task`]: one flat record, field by field, the same
//! as when every option was stored inline (the JSON in NATS messages, event
//! logs and `swarm events` output, and any other serde format, read and
//! write exactly as before).
//!
//! Serializing borrows the task's fields (no clone of its `Arc`s);
//! deserializing reads an owned record and rebuilds the task with
//! [`Task::from_parts`], which boxes the options only if one is set.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{DEFAULT_COST, Payload, Task, TaskParts};
use crate::{AgentId, Priority, TaskId, Timestamp};

fn default_cost() -> u32 {
    DEFAULT_COST
}

fn is_default_cost(cost: &u32) -> bool {
    *cost == DEFAULT_COST
}

/// What a task serializes as: its fields in their historical order.
#[derive(Serialize)]
#[serde(rename = "Task")]
struct TaskRef<'a> {
    id: TaskId,
    priority: Priority,
    kind: &'a str,
    payload: &'a Payload,
    attempt: u32,
    created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    affinity: Option<AgentId>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pinned: bool,
    #[serde(
        with = "crate::time::micros_opt",
        skip_serializing_if = "Option::is_none"
    )]
    timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "is_default_cost")]
    cost: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_before: Option<Timestamp>,
}

/// What a task deserializes from: the same record, owned, with the defaults
/// that let older records (without the later fields) still read.
#[derive(Deserialize)]
#[serde(rename = "Task")]
struct TaskRecord {
    id: TaskId,
    priority: Priority,
    kind: Arc<str>,
    #[serde(default)]
    payload: Payload,
    #[serde(default)]
    attempt: u32,
    created_at: Timestamp,
    #[serde(default)]
    affinity: Option<AgentId>,
    #[serde(default)]
    pinned: bool,
    #[serde(default, with = "crate::time::micros_opt")]
    timeout: Option<Duration>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    key: Option<Arc<str>>,
    #[serde(default = "default_cost")]
    cost: u32,
    #[serde(default)]
    not_before: Option<Timestamp>,
}

impl Serialize for Task {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let options = self.options();
        TaskRef {
            id: self.id,
            priority: self.priority,
            kind: &self.kind,
            payload: &self.payload,
            attempt: self.attempt,
            created_at: self.created_at,
            affinity: options.affinity,
            pinned: options.pinned,
            timeout: options.timeout,
            max_attempts: options.max_attempts,
            key: options.key.as_deref(),
            cost: options.cost,
            not_before: options.not_before,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Task {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = TaskRecord::deserialize(d)?;
        Ok(Task::from_parts(TaskParts {
            id: r.id,
            priority: r.priority,
            kind: r.kind,
            payload: r.payload,
            attempt: r.attempt,
            created_at: r.created_at,
            affinity: r.affinity,
            pinned: r.pinned,
            timeout: r.timeout,
            max_attempts: r.max_attempts,
            key: r.key,
            cost: r.cost,
            not_before: r.not_before,
        }))
    }
}
