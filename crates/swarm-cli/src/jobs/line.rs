//! The lines of a jobs file: parsing and checking, with no I/O and nothing
//! of the runtime (the fuzz crate includes this file as it is).

use std::collections::HashMap;
use std::time::Duration;

use super::{Priority, TaskId};
use serde::Deserialize;

/// The longest timeout the log can hold: it stores microseconds in a u64.
pub(crate) const MAX_TIMEOUT_MS: u64 = u64::MAX / 1000;

/// One line of a jobs file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobLine {
    id: String,
    cmd: String,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    cost: Option<u32>,
    #[serde(default)]
    delay_ms: Option<u64>,
}

/// A checked job.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) line: usize,
    pub(crate) id: String,
    pub(crate) task_id: TaskId,
    pub(crate) cmd: String,
    pub(crate) priority: Priority,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) timeout: Option<Duration>,
    /// The fairness and limit group (such as a tenant).
    pub(crate) key: Option<String>,
    /// The units a rate limit charges (default 1).
    pub(crate) cost: Option<u32>,
    /// How long after its first submission the job may start.
    pub(crate) delay: Option<Duration>,
}

/// Parses and checks a whole jobs file; `name` is used in messages. The
/// error is one line naming the line of the file.
pub(crate) fn parse_jobs(name: &str, text: &str) -> Result<Vec<Job>, String> {
    let mut jobs: Vec<Job> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut by_task: HashMap<TaskId, (usize, String)> = HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let bad = |what: String| format!("{name} line {line}: {what}");
        if raw.trim().is_empty() {
            continue;
        }
        // serde would take a JSON array for the struct, field by field.
        if !raw.trim_start().starts_with('{') {
            return Err(bad(
                "malformed job: a job line must be a JSON object, such as {\"id\": \"build\", \"cmd\": \"make\"}".into(),
            ));
        }
        let parsed: JobLine = serde_json::from_str(raw).map_err(|e| {
            // serde quotes field names unescaped: a "\n" in one would break the line.
            let e: String = e
                .to_string()
                .chars()
                .flat_map(|c| {
                    let escaped: Vec<char> = if c.is_control() {
                        c.escape_default().collect()
                    } else {
                        vec![c]
                    };
                    escaped
                })
                .collect();
            bad(format!(
                "malformed job ({e}); expected {{\"id\": \"...\", \"cmd\": \"...\"}} with optional priority, max_attempts, timeout_ms, key, cost, delay_ms"
            ))
        })?;
        if parsed.id.trim().is_empty() {
            return Err(bad("the job id is empty".into()));
        }
        if parsed.cmd.trim().is_empty() {
            return Err(bad(format!("job {:?} has an empty cmd", parsed.id)));
        }
        let priority = match &parsed.priority {
            None => Priority::Normal,
            Some(p) => p.parse::<Priority>().map_err(|e| bad(e.to_string()))?,
        };
        if parsed.max_attempts == Some(0) {
            return Err(bad("max_attempts must be at least 1".into()));
        }
        if parsed.timeout_ms == Some(0) {
            return Err(bad("timeout_ms must be at least 1".into()));
        }
        if let Some(ms) = parsed.timeout_ms.filter(|ms| *ms > MAX_TIMEOUT_MS) {
            return Err(bad(format!(
                "timeout_ms {ms} is out of range: the log holds at most {MAX_TIMEOUT_MS} (in microseconds, a u64)"
            )));
        }
        if let Some(ms) = parsed.delay_ms.filter(|ms| *ms > MAX_TIMEOUT_MS) {
            return Err(bad(format!(
                "delay_ms {ms} is out of range: at most {MAX_TIMEOUT_MS}"
            )));
        }
        if parsed.key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Err(bad(format!(
                "job {:?} has an empty key: leave \"key\" out for no key",
                parsed.id
            )));
        }
        if let Some(first) = by_id.get(&parsed.id) {
            return Err(bad(format!(
                "duplicate job id {:?} (first on line {first})",
                parsed.id
            )));
        }
        let task_id = TaskId::from_name(&parsed.id);
        if let Some((first, other)) = by_task.get(&task_id) {
            return Err(bad(format!(
                "job id {:?} hashes to the same task id as {other:?} on line {first}: rename one",
                parsed.id
            )));
        }
        by_id.insert(parsed.id.clone(), line);
        by_task.insert(task_id, (line, parsed.id.clone()));
        jobs.push(Job {
            line,
            id: parsed.id,
            task_id,
            cmd: parsed.cmd,
            priority,
            max_attempts: parsed.max_attempts,
            timeout: parsed.timeout_ms.map(Duration::from_millis),
            key: parsed.key,
            cost: parsed.cost,
            delay: parsed.delay_ms.map(Duration::from_millis),
        });
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Found by the `jobs_lines` fuzz target: an unknown field whose name
    /// holds a newline made the message two lines (and the CLI, which folds
    /// whitespace, showed a field name that is not in the file).
    #[test]
    fn a_field_name_with_a_newline_is_quoted_escaped_in_one_line() {
        let e = parse_jobs("jobs", "{\"id\\n\": 1}").unwrap_err();
        assert!(!e.contains('\n'), "{e:?}");
        assert!(e.contains("id\\n"), "{e:?}");
        assert!(e.starts_with("jobs line 1: malformed job"), "{e:?}");
    }

    #[test]
    fn flow_fields_are_read_and_checked() {
        let jobs = parse_jobs(
            "jobs",
            r#"{"id": "a", "cmd": "true", "key": "tenant-a", "cost": 40, "delay_ms": 1500}"#,
        )
        .unwrap();
        assert_eq!(jobs[0].key.as_deref(), Some("tenant-a"));
        assert_eq!(jobs[0].cost, Some(40));
        assert_eq!(jobs[0].delay, Some(Duration::from_millis(1500)));
        let plain = parse_jobs("jobs", r#"{"id": "a", "cmd": "true"}"#).unwrap();
        assert_eq!(
            (plain[0].key.clone(), plain[0].cost, plain[0].delay),
            (None, None, None)
        );
        let e = parse_jobs("jobs", r#"{"id": "a", "cmd": "true", "key": " "}"#).unwrap_err();
        assert!(e.contains("empty key"), "{e}");
        let e = parse_jobs("jobs", r#"{"id": "a", "cmd": "true", "cost": -1}"#).unwrap_err();
        assert!(e.starts_with("jobs line 1: malformed job"), "{e}");
        let e = parse_jobs(
            "jobs",
            &format!(r#"{{"id": "a", "cmd": "true", "delay_ms": {}}}"#, u64::MAX),
        )
        .unwrap_err();
        assert!(e.contains("delay_ms"), "{e}");
    }
}
