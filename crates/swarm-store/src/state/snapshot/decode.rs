//! Reading layout 2 (see the parent module for the layout), checking every
//! length, value and flag as it goes.

use std::collections::HashMap;
use std::sync::Arc;

use swarm_core::{AgentId, Payload, Priority, Task, TaskId, TaskParts, Timestamp};

use super::wire::{DecodeError, Problem, Read, Reader};
use super::*;
use crate::state::task_map::TaskMap;
use crate::state::{AgentRecord, KindCounts, Retired, TaskRecord};

/// Snapshots of this many task records or more are decoded in two threads
/// (when the machine has two cores): 100 000 live tasks took 45 ms in one.
pub(super) const PARALLEL_FROM: usize = 16_384;

/// Decodes a layout-2 snapshot's data (after the magic); the task records in
/// two threads when there are `parallel_from` or more.
pub(super) fn decode(r: &mut Reader<'_>, parallel_from: usize) -> Read<SystemState> {
    let at = r.pos();
    let layout = r.varint("the layout version")?;
    if layout != LAYOUT {
        return Err(DecodeError::at(
            "the layout version",
            at,
            Problem::Inconsistent(format!(
                "layout {layout} is not one this version reads ({LEGACY_LAYOUT} or {LAYOUT}): it was written by a newer swarm"
            )),
        ));
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
        let health = health_of(health).ok_or_else(|| {
            DecodeError::at("an agent's health", at, Problem::Invalid(u64::from(health)))
        })?;
        let at = r.pos();
        let flags = r.u8("an agent's flags")?;
        if flags & !(BUSY | RESERVE) != 0 {
            return Err(DecodeError::at(
                "an agent's flags",
                at,
                Problem::Invalid(u64::from(flags)),
            ));
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

    let n = r.count("the tasks", MIN_RECORD_BYTES)?;
    if n >= parallel_from.max(2) && two_cores() {
        let start = r.clone();
        match decode_tasks_in_two(r.clone(), n, &kinds, &mut state.tasks) {
            Some(end) => *r = end,
            None => {
                #[cfg(test)]
                FELL_BACK.with(|n| n.set(n.get() + 1));
                // Damaged somewhere: decode again in one thread, which
                // names the first fault as it meets it.
                state.tasks = TaskMap::default();
                state.tasks.reserve(n);
                *r = start;
                decode_tasks(r, n, &kinds, &mut state.tasks)?;
            }
        }
    } else {
        state.tasks.reserve(n);
        decode_tasks(r, n, &kinds, &mut state.tasks)?;
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

/// Decodes `n` task records into `tasks`, in this thread.
fn decode_tasks<'a>(
    r: &mut Reader<'a>,
    n: usize,
    kinds: &[Arc<str>],
    tasks: &mut TaskMap,
) -> Read<()> {
    let mut keys = HashMap::new();
    for _ in 0..n {
        let at = r.pos();
        let record = decode_record(r, kinds, &mut keys)?;
        let id = record.task.id();
        if tasks.insert(id, record).is_some() {
            return Err(DecodeError::at(
                "a task record",
                at,
                Problem::Inconsistent(format!("task {id} appears twice")),
            ));
        }
    }
    Ok(())
}

fn two_cores() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
}

/// Decodes `n` task records into `tasks` in two threads. A helper decodes
/// the first part into a vector. This thread walks over that part reading
/// only the ids and the lengths, indexes them, then decodes and indexes the
/// rest: building the index is the one step that touches memory at random,
/// and it runs beside the helper's decoding. The helper takes about three
/// quarters, which balances the two on this layout.
///
/// `None` when anything is wrong (a damaged record, a duplicate id, a helper
/// that could not start, or a first part whose records do not end where the
/// walk did or do not carry the ids it read); the caller then decodes in one
/// thread, so a damaged snapshot fails with the error it always did.
///
/// Each part interns the keys it meets, so one key has at most two `Arc`s.
fn decode_tasks_in_two<'a>(
    r: Reader<'a>,
    n: usize,
    kinds: &[Arc<str>],
    tasks: &mut TaskMap,
) -> Option<Reader<'a>> {
    let head_n = n / 4 * 3;
    std::thread::scope(|scope| {
        let mut head_r = r.clone();
        let head = std::thread::Builder::new()
            .name("swarm-snapshot-decode".into())
            .spawn_scoped(scope, move || {
                let mut keys = HashMap::new();
                let mut out = Vec::with_capacity(head_n);
                for _ in 0..head_n {
                    out.push(decode_record(&mut head_r, kinds, &mut keys).ok()?);
                }
                Some((out, head_r.pos()))
            })
            .ok()?;
        let mut r = r;
        let mut index = TaskMap::index_with_capacity(n);
        let mut head_ids = Vec::with_capacity(head_n);
        let walked = (|| -> Option<(usize, Vec<TaskRecord>)> {
            for slot in 0..head_n {
                let id = skip_record(&mut r).ok()?;
                index
                    .insert(id, u32::try_from(slot).ok()?)
                    .is_none()
                    .then_some(())?;
                head_ids.push(id);
            }
            let boundary = r.pos();
            let mut keys = HashMap::new();
            let mut tail = Vec::with_capacity(n - head_n);
            for slot in head_n..n {
                let record = decode_record(&mut r, kinds, &mut keys).ok()?;
                let slot = u32::try_from(slot).ok()?;
                index
                    .insert(record.task.id(), slot)
                    .is_none()
                    .then_some(())?;
                tail.push(record);
            }
            Some((boundary, tail))
        })();
        let (head, head_end) = head.join().ok().flatten()?;
        let (boundary, tail) = walked?;
        let agrees = boundary == head_end
            && head.len() == head_ids.len()
            && head.iter().zip(&head_ids).all(|(r, id)| r.task.id() == *id);
        if !agrees {
            return None;
        }
        *tasks = TaskMap::from_indexed(index, head, tail);
        Some(r)
    })
}

/// Moves past one task record without building it (the lengths and flags
/// of [`decode_record`], nothing checked beyond them); returns its id.
fn skip_record(r: &mut Reader<'_>) -> Read<TaskId> {
    let id = TaskId::from_u64(r.u64_le("a task id")?);
    let flags = r.varint("a task's flags")?;
    let has = |bit| flags & bit != 0;
    r.skip(1, "a task's status")?;
    r.varint("a task's attempts")?;
    if has(AGENT) {
        r.varint("a task's agent")?;
    }
    if has(LAST_ERROR) {
        r.bytes("a task's last error")?;
    }
    for _ in 0..r.count("a task's errors", 1)? {
        r.bytes("a task's error")?;
    }
    r.varint("a task's created_seq")?;
    if has(UPDATED_AT) {
        r.skip(8, "a task's updated_at")?;
    }
    r.varint("a task's retire_no")?;
    r.skip(1, "a task's priority")?;
    r.varint("a task's kind")?;
    r.bytes("a task's payload")?;
    r.varint("a task's attempt")?;
    r.skip(8, "a task's created_at")?;
    for (bit, what) in [
        (AFFINITY, "a task's affinity"),
        (TIMEOUT, "a task's timeout"),
        (MAX_ATTEMPTS, "a task's max_attempts"),
    ] {
        if has(bit) {
            r.varint(what)?;
        }
    }
    if has(KEY) {
        r.bytes("a task's key")?;
    }
    if has(COST) {
        r.varint("a task's cost")?;
    }
    for (bit, what) in [
        (NOT_BEFORE, "a task's not_before"),
        (RETRY_AT, "a task's retry_at"),
    ] {
        if has(bit) {
            r.skip(8, what)?;
        }
    }
    Ok(id)
}

fn decode_record<'a>(
    r: &mut Reader<'a>,
    kinds: &[Arc<str>],
    keys: &mut HashMap<&'a str, Arc<str>>,
) -> Read<TaskRecord> {
    let id = r.u64_le("a task id")?;
    let at = r.pos();
    let flags = r.varint("a task's flags")?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(DecodeError::at(
            "a task's flags",
            at,
            Problem::Invalid(flags),
        ));
    }
    let has = |bit| flags & bit != 0;
    let at = r.pos();
    let status = r.u8("a task's status")?;
    let status = status_of(status).ok_or_else(|| {
        DecodeError::at("a task's status", at, Problem::Invalid(u64::from(status)))
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
    // Most records have no errors: no allocation then.
    let mut errors = Vec::new();
    if n > 0 {
        errors.reserve_exact(n);
    }
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
    let priority = Priority::from_level(usize::from(level)).ok_or_else(|| {
        DecodeError::at("a task's priority", at, Problem::Invalid(u64::from(level)))
    })?;
    let at = r.pos();
    let kind = r.varint("a task's kind")?;
    let kind = usize::try_from(kind)
        .ok()
        .and_then(|i| kinds.get(i))
        .ok_or_else(|| DecodeError::at("a task's kind", at, Problem::Invalid(kind)))?;
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

#[cfg(test)]
thread_local! {
    /// How often this thread's decodes fell back from two threads to one.
    static FELL_BACK: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
mod tests;
