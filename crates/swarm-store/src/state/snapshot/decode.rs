//! Reading layout 2 (see the parent module for the layout), checking every
//! length, value and flag as it goes.

use std::collections::HashMap;
use std::sync::Arc;

use swarm_core::{AgentId, Payload, Priority, Task, TaskId, TaskParts, Timestamp};

use super::wire::{DecodeError, Problem, Reader};
use super::*;
use crate::state::{AgentRecord, KindCounts, Retired, TaskRecord};

/// Decodes a layout-2 snapshot's data (after the magic).
pub(super) fn decode(r: &mut Reader<'_>) -> std::result::Result<SystemState, DecodeError> {
    let at = r.pos();
    let layout = r.varint("the layout version")?;
    if layout != LAYOUT {
        return Err(DecodeError {
            what: "the layout version",
            at,
            problem: Problem::Inconsistent(format!(
                "layout {layout} is not one this version reads ({LEGACY_LAYOUT} or {LAYOUT}): it was written by a newer swarm"
            )),
        });
    }
    let mut state = SystemState {
        last_seq: r.varint("last_seq")?,
        retire_no: r.varint("retire_no")?,
        paused: r.bool("paused")?,
        ..SystemState::default()
    };

    let n = r.count("the counters", 1)?;
    let mut counters = [0u64; 13];
    for i in 0..n {
        let v = r.varint("a counter")?;
        if let Some(c) = counters.get_mut(i) {
            *c = v;
        }
    }
    state.counters = Counters::from_array(counters);

    for _ in 0..r.count("the kind counts", MIN_KIND_BYTES)? {
        let name = r.str("a kind name")?;
        let k = KindCounts {
            created: r.varint("a kind count")?,
            completed: r.varint("a kind count")?,
            dead_lettered: r.varint("a kind count")?,
            cancelled: r.varint("a kind count")?,
        };
        state.by_kind.insert(name.to_owned(), k);
    }

    for _ in 0..r.count("the agents", MIN_AGENT_BYTES)? {
        let id = AgentId::new(r.varint("an agent id")?);
        let at = r.pos();
        let health = r.u8("an agent's health")?;
        let health = health_of(health).ok_or(DecodeError {
            what: "an agent's health",
            at,
            problem: Problem::Invalid(u64::from(health)),
        })?;
        let at = r.pos();
        let flags = r.u8("an agent's flags")?;
        if flags & !(BUSY | RESERVE) != 0 {
            return Err(DecodeError {
                what: "an agent's flags",
                at,
                problem: Problem::Invalid(u64::from(flags)),
            });
        }
        let busy_with = if flags & BUSY != 0 {
            Some(TaskId::from_u64(r.u64_le("an agent's task")?))
        } else {
            None
        };
        let agent = AgentRecord {
            id,
            health,
            busy_with,
            reserve: flags & RESERVE != 0,
            completed: r.varint("an agent's completed count")?,
            failed: r.varint("an agent's failed count")?,
        };
        state.agents.insert(id, agent);
    }

    let kinds_n = r.count("the task kinds", 1)?;
    // One `Arc` per kind (and per key), shared by its tasks.
    let mut kinds: Vec<Arc<str>> = Vec::with_capacity(kinds_n);
    for _ in 0..kinds_n {
        kinds.push(Arc::from(r.str("a task kind")?));
    }
    let mut keys = HashMap::new();

    let n = r.count("the tasks", MIN_RECORD_BYTES)?;
    state.tasks.reserve(n);
    for _ in 0..n {
        let at = r.pos();
        let record = decode_record(r, &kinds, &mut keys)?;
        let id = record.task.id();
        if state.tasks.insert(id, record).is_some() {
            return Err(DecodeError {
                what: "a task record",
                at,
                problem: Problem::Inconsistent(format!("task {id} appears twice")),
            });
        }
    }

    for queue in [&mut state.finished, &mut state.dead] {
        let n = r.count("a retention queue", MIN_ENTRY_BYTES)?;
        queue.entries.reserve(n);
        for _ in 0..n {
            let id = TaskId::from_u64(r.u64_le("a queue entry's task")?);
            let no = r.varint("a queue entry's number")?;
            let at = if r.bool("a queue entry's time flag")? {
                Some(Timestamp::from_micros(r.u64_le("a queue entry's time")?))
            } else {
                None
            };
            queue.entries.push_back(Retired { id, no, at });
        }
    }
    r.finish()?;
    Ok(state)
}

fn decode_record<'a>(
    r: &mut Reader<'a>,
    kinds: &[Arc<str>],
    keys: &mut HashMap<&'a str, Arc<str>>,
) -> std::result::Result<TaskRecord, DecodeError> {
    let id = r.u64_le("a task id")?;
    let at = r.pos();
    let flags = r.varint("a task's flags")?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(DecodeError {
            what: "a task's flags",
            at,
            problem: Problem::Invalid(flags),
        });
    }
    let has = |bit| flags & bit != 0;
    let at = r.pos();
    let status = r.u8("a task's status")?;
    let status = status_of(status).ok_or(DecodeError {
        what: "a task's status",
        at,
        problem: Problem::Invalid(u64::from(status)),
    })?;
    let attempts = r.varint_u32("a task's attempts")?;
    let agent = if has(AGENT) {
        Some(AgentId::new(r.varint("a task's agent")?))
    } else {
        None
    };
    let last_error = if has(LAST_ERROR) {
        Some(r.str("a task's last error")?.to_owned())
    } else {
        None
    };
    let n = r.count("a task's errors", 1)?;
    let mut errors = Vec::with_capacity(n);
    for _ in 0..n {
        errors.push(r.str("a task's error")?.to_owned());
    }
    let created_seq = r.varint("a task's created_seq")?;
    let updated_at = if has(UPDATED_AT) {
        Some(Timestamp::from_micros(r.u64_le("a task's updated_at")?))
    } else {
        None
    };
    let retire_no = r.varint("a task's retire_no")?;

    let at = r.pos();
    let level = r.u8("a task's priority")?;
    let priority = Priority::from_level(usize::from(level)).ok_or(DecodeError {
        what: "a task's priority",
        at,
        problem: Problem::Invalid(u64::from(level)),
    })?;
    let at = r.pos();
    let kind = r.varint("a task's kind")?;
    let kind = usize::try_from(kind)
        .ok()
        .and_then(|i| kinds.get(i))
        .ok_or(DecodeError {
            what: "a task's kind",
            at,
            problem: Problem::Invalid(kind),
        })?;
    let payload = Payload::from(r.bytes("a task's payload")?);
    let attempt = r.varint_u32("a task's attempt")?;
    let created_at = Timestamp::from_micros(r.u64_le("a task's created_at")?);
    let affinity = match has(AFFINITY) {
        true => Some(AgentId::new(r.varint("a task's affinity")?)),
        false => None,
    };
    let timeout = match has(TIMEOUT) {
        true => Some(Duration::from_micros(r.varint("a task's timeout")?)),
        false => None,
    };
    let max_attempts = match has(MAX_ATTEMPTS) {
        true => Some(r.varint_u32("a task's max_attempts")?),
        false => None,
    };
    let key = match has(KEY) {
        true => {
            let key = r.str("a task's key")?;
            Some(Arc::clone(
                keys.entry(key).or_insert_with(|| Arc::from(key)),
            ))
        }
        false => None,
    };
    let cost = match has(COST) {
        true => r.varint_u32("a task's cost")?,
        false => DEFAULT_COST,
    };
    let not_before = match has(NOT_BEFORE) {
        true => Some(Timestamp::from_micros(r.u64_le("a task's not_before")?)),
        false => None,
    };
    let retry_at = match has(RETRY_AT) {
        true => Some(Timestamp::from_micros(r.u64_le("a task's retry_at")?)),
        false => None,
    };
    let task = Task::from_parts(TaskParts {
        id: TaskId::from_u64(id),
        priority,
        kind: Arc::clone(kind),
        payload,
        attempt,
        created_at,
        affinity,
        pinned: has(PINNED),
        timeout,
        max_attempts,
        key,
        cost,
        not_before,
    });
    Ok(TaskRecord {
        task,
        status,
        attempts,
        agent,
        last_error,
        will_retry: has(WILL_RETRY),
        errors,
        created_seq,
        updated_at,
        retry_at,
        retire_no,
    })
}
