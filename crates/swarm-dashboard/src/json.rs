//! The JSON forms of the API.
//!
//! Ids are strings (`"task-0123456789abcdef"`): a task id is a 64-bit
//! number, which JavaScript's numbers cannot hold exactly. Timestamps are
//! microseconds since the Unix epoch.

use serde_json::{Map, Value, json};
use swarm::{StoredEvent, TaskId};

/// A stored event as the API shows it:
/// `{"seq": 7, "timestamp": 1700000000000000, "event": "task:completed", "data": {..}}`,
/// with every task id in `data` written as a string.
pub fn event_json(stored: &StoredEvent) -> Value {
    let mut value = serde_json::to_value(&stored.event).unwrap_or(Value::Null);
    if let Value::Object(fields) = &mut value {
        if let Some(data) = fields.get_mut("data") {
            stringify_task_ids(data);
        }
    }
    let (name, data) = match value {
        Value::Object(mut fields) => (
            fields
                .remove("event")
                .unwrap_or_else(|| json!(stored.event.name())),
            fields.remove("data").unwrap_or(Value::Null),
        ),
        other => (json!(stored.event.name()), other),
    };
    json!({
        "seq": stored.seq,
        "timestamp": stored.timestamp.as_micros(),
        "event": name,
        "data": data,
    })
}

/// Rewrites task ids (`task_id`, `task_ids`, and a task's own `id`) from
/// numbers to their `task-...` strings, at any depth.
fn stringify_task_ids(value: &mut Value) {
    match value {
        Value::Object(fields) => stringify_fields(fields),
        Value::Array(items) => items.iter_mut().for_each(stringify_task_ids),
        _ => {}
    }
}

fn stringify_fields(fields: &mut Map<String, Value>) {
    for (key, field) in fields.iter_mut() {
        match key.as_str() {
            "task_id" => stringify_id(field),
            "task_ids" => {
                if let Value::Array(ids) = field {
                    ids.iter_mut().for_each(stringify_id);
                }
            }
            "task" => {
                if let Value::Object(task) = field {
                    if let Some(id) = task.get_mut("id") {
                        stringify_id(id);
                    }
                    stringify_fields(task);
                }
            }
            _ => stringify_task_ids(field),
        }
    }
}

fn stringify_id(value: &mut Value) {
    if let Some(raw) = value.as_u64() {
        *value = Value::String(TaskId::from_u64(raw).to_string());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use swarm::event::{TaskCompleted, TaskCreated};
    use swarm::{AgentId, Event, Payload, Task, Timestamp};

    #[test]
    fn task_ids_become_strings_that_javascript_keeps_exact() {
        let id = TaskId::from_u64(u64::MAX - 1);
        let task = Task::builder("k").id(id).build().unwrap();
        let created = StoredEvent {
            seq: 3,
            timestamp: Timestamp::from_micros(42),
            event: Event::TaskCreated(TaskCreated { task }),
        };
        let v = event_json(&created);
        assert_eq!(v["seq"], 3);
        assert_eq!(v["timestamp"], 42);
        assert_eq!(v["event"], "task:created");
        assert_eq!(v["data"]["task"]["id"], id.to_string());

        let completed = StoredEvent {
            seq: 4,
            timestamp: Timestamp::from_micros(43),
            event: Event::TaskCompleted(TaskCompleted {
                task_id: id,
                agent_id: AgentId::new(2),
                attempt: 1,
                duration: std::time::Duration::from_millis(1),
                output: Payload::from("ok"),
            }),
        };
        let v = event_json(&completed);
        assert_eq!(v["event"], "task:completed");
        assert_eq!(v["data"]["task_id"], "task-fffffffffffffffe");
        assert_eq!(v["data"]["agent_id"], 2);
    }
}
