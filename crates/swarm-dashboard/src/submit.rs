//! `POST /api/v1/tasks`: the request body and how it becomes a [`Task`].

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use swarm::{Priority, Task, TaskId};

/// The longest timeout the log can hold: it stores microseconds in a `u64`.
pub const MAX_TIMEOUT_MS: u64 = u64::MAX / 1000;

/// A checked `POST /api/v1/tasks` request, before it is a [`Task`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NewTask {
    /// The task kind (not empty).
    pub kind: String,
    /// Its priority (`normal` unless the request says otherwise).
    pub priority: Priority,
    /// The payload as sent: any JSON value (`null` when absent).
    pub payload: serde_json::Value,
    /// The id the client asked for, as sent (see [`NewTask::task_id`]).
    pub id: Option<String>,
    /// The timeout of each attempt.
    pub timeout: Option<Duration>,
    /// The attempts before the task is dead-lettered.
    pub max_attempts: Option<u32>,
}

impl NewTask {
    /// The task id: an id in the form `task-0123456789abcdef` is taken as it
    /// is, any other name is hashed with [`TaskId::from_name`] (as the job
    /// ids of `swarm run` are), and without one a fresh id is generated.
    pub fn task_id(&self) -> TaskId {
        match &self.id {
            None => TaskId::generate(),
            Some(id) => id
                .strip_prefix("task-")
                .filter(|hex| hex.len() == 16)
                .and_then(|_| id.parse().ok())
                .unwrap_or_else(|| TaskId::from_name(id)),
        }
    }

    /// A [`swarm::TaskBuilder`] with this request's id, kind, priority,
    /// timeout and attempts, and no payload yet.
    pub fn builder(&self) -> swarm::TaskBuilder {
        let mut builder = Task::builder(self.kind.as_str())
            .id(self.task_id())
            .priority(self.priority);
        if let Some(timeout) = self.timeout {
            builder = builder.timeout(timeout);
        }
        if let Some(max) = self.max_attempts {
            builder = builder.max_attempts(max);
        }
        builder
    }
}

/// Turns a checked request into the task to submit; an `Err` is answered
/// with 400 and its message (one line, saying what to send instead).
pub type TaskFactory = Arc<dyn Fn(NewTask) -> Result<Task, String> + Send + Sync>;

/// The default [`TaskFactory`]: a JSON string payload becomes the task's
/// payload as text, any other JSON value its JSON bytes, `null` no payload.
pub fn default_task_factory() -> TaskFactory {
    Arc::new(|request: NewTask| {
        let builder = request.builder();
        let builder = match &request.payload {
            serde_json::Value::Null => builder,
            serde_json::Value::String(text) => builder.payload(text.as_str()),
            other => builder.json(other).map_err(|e| e.to_string())?,
        };
        builder.build().map_err(|e| e.to_string())
    })
}

/// The body of `POST /api/v1/tasks`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitBody {
    kind: String,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    payload: serde_json::Value,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    max_attempts: Option<u32>,
}

impl NewTask {
    /// Parses and checks a `POST /api/v1/tasks` body,
    /// `{"kind", "priority"?, "payload"?, "id"?, "timeout_ms"?, "max_attempts"?}`.
    ///
    /// # Errors
    ///
    /// One line saying what is wrong and what to send instead.
    pub fn parse(body: &[u8]) -> Result<NewTask, String> {
        parse_new_task(body)
    }
}

fn parse_new_task(body: &[u8]) -> Result<NewTask, String> {
    let body: SubmitBody = serde_json::from_slice(body).map_err(|e| {
        format!(
            "malformed task ({e}); expected {{\"kind\": \"...\"}} with optional priority, payload, id, timeout_ms, max_attempts"
        )
    })?;
    if body.kind.trim().is_empty() {
        return Err("the task kind is empty".into());
    }
    let priority = match &body.priority {
        None => Priority::Normal,
        Some(p) => p.parse::<Priority>().map_err(|e| e.to_string())?,
    };
    if let Some(id) = &body.id {
        if id.trim().is_empty() {
            return Err("the task id is empty: leave it out to get a fresh one".into());
        }
    }
    if body.max_attempts == Some(0) {
        return Err("max_attempts must be at least 1".into());
    }
    let timeout = match body.timeout_ms {
        Some(0) => return Err("timeout_ms must be at least 1".into()),
        Some(ms) if ms > MAX_TIMEOUT_MS => {
            return Err(format!(
                "timeout_ms {ms} is out of range: the log holds at most {MAX_TIMEOUT_MS} (in microseconds, a u64)"
            ));
        }
        other => other.map(Duration::from_millis),
    };
    Ok(NewTask {
        kind: body.kind,
        priority,
        payload: body.payload,
        id: body.id,
        timeout,
        max_attempts: body.max_attempts,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_minimal_body_is_a_normal_task_with_a_fresh_id() {
        let t = parse_new_task(br#"{"kind": "echo"}"#).unwrap();
        assert_eq!(t.kind, "echo");
        assert_eq!(t.priority, Priority::Normal);
        assert_eq!(t.payload, serde_json::Value::Null);
        assert_ne!(t.task_id(), t.task_id());
    }

    #[test]
    fn ids_in_task_form_are_kept_and_names_are_hashed_like_job_ids() {
        let mut t = parse_new_task(br#"{"kind": "k", "id": "task-00000000000000ff"}"#).unwrap();
        assert_eq!(t.task_id(), TaskId::from_u64(255));
        t.id = Some("build".into());
        assert_eq!(t.task_id(), TaskId::from_name("build"));
        // Hex that is not in task form is a name.
        t.id = Some("ff".into());
        assert_eq!(t.task_id(), TaskId::from_name("ff"));
    }

    #[test]
    fn bad_bodies_are_refused_with_a_reason() {
        for (body, want) in [
            (&br#"{"kind": ""}"#[..], "kind is empty"),
            (br#"{"kind": "k", "priority": "urgent"}"#, "urgent"),
            (br#"{"kind": "k", "max_attempts": 0}"#, "max_attempts"),
            (br#"{"kind": "k", "timeout_ms": 0}"#, "timeout_ms"),
            (br#"{"kind": "k", "colour": 1}"#, "colour"),
            (br#"{"kind": "k", "id": " "}"#, "id is empty"),
            (br#"{"kind": 1"#, "malformed task"),
            (br#"[]"#, "malformed task"),
        ] {
            let e = parse_new_task(body).unwrap_err();
            assert!(e.contains(want), "{e:?} should mention {want:?}");
        }
    }

    #[test]
    fn the_default_factory_keeps_text_as_text_and_json_as_json() {
        let f = default_task_factory();
        let t = f(parse_new_task(br#"{"kind": "k", "payload": "hello"}"#).unwrap()).unwrap();
        assert_eq!(t.payload().as_str(), Some("hello"));
        let t = f(parse_new_task(br#"{"kind": "k", "payload": {"a": 1}}"#).unwrap()).unwrap();
        assert_eq!(t.payload().as_str(), Some(r#"{"a":1}"#));
        let t = f(parse_new_task(
            br#"{"kind": "k", "priority": "critical", "max_attempts": 2, "timeout_ms": 5}"#,
        )
        .unwrap())
        .unwrap();
        assert_eq!(t.priority(), Priority::Critical);
        assert_eq!(t.max_attempts(), Some(2));
        assert_eq!(t.timeout(), Some(Duration::from_millis(5)));
    }
}
