//! The snapshot codec of [`SystemState`]: a compact positional binary layout
//! with an explicit layout version, and the decoder of the first layout
//! (MessagePack with named fields) so that old snapshots still load.
//!
//! # Layout 2 (written)
//!
//! Integers are LEB128 varints, except task ids and timestamps (µs since the Unix
//! epoch), which are 8 bytes little-endian (a varint of either takes 8 to 10);
//! a string or byte string is a varint length and the bytes; `count` is a
//! varint.
//!
//! ```text
//! magic "SWRMSTAT" (8 bytes), layout version (varint, 2)
//! last_seq, retire_no, paused (1 byte: 0 or 1)
//! counters: count, then that many varints in the order of `Counters`'
//!           fields (a reader takes the ones it knows, missing ones are 0)
//! kinds:    count × (name, created, completed, dead_lettered, cancelled)
//! agents:   count × (id, health (1 byte), flags (1 byte: 1 busy, 2 reserve),
//!           [busy_with], completed, failed)
//! task kinds: count × name          (the table `kind` indexes below)
//! tasks:    count × record
//! finished: count × entry           (completed and cancelled, finishing order)
//! dead:     count × entry           (dead letters, dead-lettering order)
//!
//! record := task id (8 bytes LE), flags, status (1 byte), attempts,
//!           [agent], [last_error], errors: count × string, created_seq,
//!           [updated_at], retire_no,
//!           priority (1 byte, level), kind (index), payload (bytes),
//!           attempt, created_at, [affinity], [timeout µs], [max_attempts],
//!           [key], [cost], [not_before]
//!           — a [field] is there when its bit of `flags` is set
//! entry  := task id (8 bytes LE), number, has_time (1 byte), [time]
//! ```
//!
//! Decoding checks every length against the bytes left, every enum value and
//! flag bit, and the state's own invariants (each task once; queue entries in
//! numbering order and numbered no higher than the state's counter), so a
//! damaged snapshot gives [`StoreError::BadSnapshot`], never a panic and never
//! a state that panics later. How many queue entries are stale is not stored:
//! it is counted again from the records.
//!
//! A task is rebuilt with [`Task::from_parts`]; the tasks of one kind (and
//! of one key) share one `Arc<str>`, as they do when the scheduler makes them.
//!
//! # Layout 1 (read only)
//!
//! `{version: 1, state: SystemState}` as MessagePack with named fields
//! (rmp-serde's `to_vec_named`), written by earlier versions. Every field
//! name is written and compared, which made 100 000 live tasks take over half
//! a second to load; layout 2 reads them an order of magnitude faster.

mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use swarm_core::event::AgentHealth;
use swarm_core::{AgentId, Payload, Priority, Task, TaskId, TaskParts, Timestamp};

use self::wire::{DecodeError, Problem, Reader, Writer};
use super::{AgentRecord, Counters, KindCounts, Retired, SystemState, TaskRecord, TaskStatus};
use crate::error::{Result, StoreError};
use crate::store::Snapshot;

/// The first bytes of a layout-2 snapshot's data. A layout-1 snapshot starts
/// with a MessagePack map marker, never with these.
const MAGIC: [u8; 8] = *b"SWRMSTAT";
/// The layout [`SystemState::to_snapshot`] writes.
const LAYOUT: u64 = 2;
/// The layout of the MessagePack envelope.
const LEGACY_LAYOUT: u32 = 1;

// Flag bits of a task record.
const AGENT: u64 = 1 << 0;
const LAST_ERROR: u64 = 1 << 1;
const WILL_RETRY: u64 = 1 << 2;
const UPDATED_AT: u64 = 1 << 3;
const AFFINITY: u64 = 1 << 4;
const PINNED: u64 = 1 << 5;
const TIMEOUT: u64 = 1 << 6;
const MAX_ATTEMPTS: u64 = 1 << 7;
const KEY: u64 = 1 << 8;
const COST: u64 = 1 << 9;
const NOT_BEFORE: u64 = 1 << 10;
const KNOWN_FLAGS: u64 = (1 << 11) - 1;

// Flag bits of an agent record.
const BUSY: u8 = 1 << 0;
const RESERVE: u8 = 1 << 1;

/// The cost a task has when it does not set one (swarm-core's default).
const DEFAULT_COST: u32 = 1;

/// The smallest encoded sizes, to bound counts by the bytes left.
const MIN_RECORD_BYTES: usize = 8 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 8;
const MIN_ENTRY_BYTES: usize = 8 + 1 + 1;
const MIN_AGENT_BYTES: usize = 1 + 1 + 1 + 1 + 1;
const MIN_KIND_BYTES: usize = 1 + 4;

fn status_byte(status: TaskStatus) -> u8 {
    match status {
        TaskStatus::Pending => 0,
        TaskStatus::Queued => 1,
        TaskStatus::Running => 2,
        TaskStatus::Completed => 3,
        TaskStatus::Failed => 4,
        TaskStatus::DeadLettered => 5,
        TaskStatus::Cancelled => 6,
    }
}

fn status_of(byte: u8) -> Option<TaskStatus> {
    Some(match byte {
        0 => TaskStatus::Pending,
        1 => TaskStatus::Queued,
        2 => TaskStatus::Running,
        3 => TaskStatus::Completed,
        4 => TaskStatus::Failed,
        5 => TaskStatus::DeadLettered,
        6 => TaskStatus::Cancelled,
        _ => return None,
    })
}

fn health_byte(health: AgentHealth) -> u8 {
    match health {
        AgentHealth::Healthy => 0,
        AgentHealth::Degraded => 1,
        AgentHealth::Unhealthy => 2,
    }
}

fn health_of(byte: u8) -> Option<AgentHealth> {
    Some(match byte {
        0 => AgentHealth::Healthy,
        1 => AgentHealth::Degraded,
        2 => AgentHealth::Unhealthy,
        _ => return None,
    })
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Counters {
    /// The counters in layout order.
    fn as_array(&self) -> [u64; 13] {
        [
            self.events,
            self.tasks_created,
            self.tasks_completed,
            self.attempts_failed,
            self.retries,
            self.tasks_dead_lettered,
            self.tasks_cancelled,
            self.tasks_stolen,
            self.agent_errors,
            self.agents_created,
            self.agents_removed,
            self.tasks_retired,
            self.dead_letters_dropped,
        ]
    }

    fn from_array(v: [u64; 13]) -> Counters {
        let [
            events,
            tasks_created,
            tasks_completed,
            attempts_failed,
            retries,
            tasks_dead_lettered,
            tasks_cancelled,
            tasks_stolen,
            agent_errors,
            agents_created,
            agents_removed,
            tasks_retired,
            dead_letters_dropped,
        ] = v;
        Counters {
            events,
            tasks_created,
            tasks_completed,
            attempts_failed,
            retries,
            tasks_dead_lettered,
            tasks_cancelled,
            tasks_stolen,
            agent_errors,
            agents_created,
            agents_removed,
            tasks_retired,
            dead_letters_dropped,
        }
    }
}

/// Encodes `state` in layout 2.
fn encode(state: &SystemState) -> Vec<u8> {
    let mut w = Writer::with_capacity(64 + state.tasks.len() * 64);
    w.buf.extend_from_slice(&MAGIC);
    w.varint(LAYOUT);
    w.varint(state.last_seq);
    w.varint(state.retire_no);
    w.bool(state.paused);

    let counters = state.counters.as_array();
    w.len(counters.len());
    for c in counters {
        w.varint(c);
    }

    w.len(state.by_kind.len());
    for (name, k) in &state.by_kind {
        w.str(name);
        for v in [k.created, k.completed, k.dead_lettered, k.cancelled] {
            w.varint(v);
        }
    }

    w.len(state.agents.len());
    for a in state.agents.values() {
        w.varint(a.id.as_u64());
        w.u8(health_byte(a.health));
        let mut flags = 0;
        if a.busy_with.is_some() {
            flags |= BUSY;
        }
        if a.reserve {
            flags |= RESERVE;
        }
        w.u8(flags);
        if let Some(t) = a.busy_with {
            w.u64_le(t.as_u64());
        }
        w.varint(a.completed);
        w.varint(a.failed);
    }

    // Kinds are few: a table, indexed by each task.
    let mut kinds = KindTable::default();
    for t in state.tasks.values() {
        kinds.index(t.task.kind());
    }
    w.len(kinds.names.len());
    for name in &kinds.names {
        w.str(name);
    }

    w.len(state.tasks.len());
    for r in state.tasks.values() {
        let kind = kinds.index(r.task.kind());
        encode_record(&mut w, r, kind);
    }

    for queue in [&state.finished, &state.dead] {
        w.len(queue.entries.len());
        for e in &queue.entries {
            w.u64_le(e.id.as_u64());
            w.varint(e.no);
            w.bool(e.at.is_some());
            if let Some(at) = e.at {
                w.u64_le(at.as_micros());
            }
        }
    }
    w.buf
}

/// The distinct task kinds, numbered in order of appearance.
#[derive(Default)]
struct KindTable<'a> {
    names: Vec<&'a str>,
    index: HashMap<&'a str, u64>,
    /// The latest looked up: tasks of one kind tend to come together, and
    /// comparing a short name is cheaper than hashing it.
    last: Option<(&'a str, u64)>,
}

impl<'a> KindTable<'a> {
    fn index(&mut self, kind: &'a str) -> u64 {
        if let Some((last, i)) = self.last
            && last == kind
        {
            return i;
        }
        let next = self.names.len() as u64;
        let i = *self.index.entry(kind).or_insert(next);
        if i == next {
            self.names.push(kind);
        }
        self.last = Some((kind, i));
        i
    }
}

fn encode_record(w: &mut Writer, r: &TaskRecord, kind: u64) {
    let t = &r.task;
    let mut flags = 0;
    for (on, bit) in [
        (r.agent.is_some(), AGENT),
        (r.last_error.is_some(), LAST_ERROR),
        (r.will_retry, WILL_RETRY),
        (r.updated_at.is_some(), UPDATED_AT),
        (t.affinity().is_some(), AFFINITY),
        (t.pinned(), PINNED),
        (t.timeout().is_some(), TIMEOUT),
        (t.max_attempts().is_some(), MAX_ATTEMPTS),
        (t.key().is_some(), KEY),
        (t.cost() != DEFAULT_COST, COST),
        (t.not_before().is_some(), NOT_BEFORE),
    ] {
        if on {
            flags |= bit;
        }
    }
    w.u64_le(t.id().as_u64());
    w.varint(flags);
    w.u8(status_byte(r.status));
    w.varint(u64::from(r.attempts));
    if let Some(a) = r.agent {
        w.varint(a.as_u64());
    }
    if let Some(e) = &r.last_error {
        w.str(e);
    }
    w.len(r.errors.len());
    for e in &r.errors {
        w.str(e);
    }
    w.varint(r.created_seq);
    if let Some(at) = r.updated_at {
        w.u64_le(at.as_micros());
    }
    w.varint(r.retire_no);

    w.u8(t.priority().level() as u8);
    w.varint(kind);
    w.bytes(t.payload().as_bytes());
    w.varint(u64::from(t.attempt()));
    w.u64_le(t.created_at().as_micros());
    if let Some(a) = t.affinity() {
        w.varint(a.as_u64());
    }
    if let Some(d) = t.timeout() {
        w.varint(micros(d));
    }
    if let Some(m) = t.max_attempts() {
        w.varint(u64::from(m));
    }
    if let Some(k) = t.key() {
        w.str(k);
    }
    if t.cost() != DEFAULT_COST {
        w.varint(u64::from(t.cost()));
    }
    if let Some(at) = t.not_before() {
        w.u64_le(at.as_micros());
    }
}

/// Decodes a layout-2 snapshot's data (after the magic).
fn decode(r: &mut Reader<'_>) -> std::result::Result<SystemState, DecodeError> {
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
        retire_no,
    })
}

/// Checks what the state's methods rely on, and counts the stale queue
/// entries again (layout 1 stored the count; a wrong one would underflow).
fn check_and_count(state: &mut SystemState) -> std::result::Result<(), String> {
    let top = state.retire_no;
    if let Some(t) = state.tasks.values().find(|t| t.retire_no > top) {
        return Err(format!(
            "task {} is numbered {} in a retention queue numbered up to {top}",
            t.task.id(),
            t.retire_no
        ));
    }
    // Entries are numbered from one counter: a number is in one queue once.
    let mut numbers = HashSet::with_capacity(state.dead.entries.len());
    for (name, queue) in [("dead", &mut state.dead), ("finished", &mut state.finished)] {
        let mut prev = 0;
        let mut stale = 0;
        for e in &queue.entries {
            if e.no <= prev || e.no > top {
                return Err(format!(
                    "the {name} queue's entry {} for task {} is out of order (after {prev}, up to {top})",
                    e.no, e.id
                ));
            }
            prev = e.no;
            if name == "dead" {
                numbers.insert(e.no);
            } else if numbers.contains(&e.no) {
                return Err(format!("entry {} is in both retention queues", e.no));
            }
            let stands = state.tasks.get(&e.id).is_some_and(|t| t.retire_no == e.no);
            if !stands {
                stale += 1;
            }
        }
        queue.stale = stale;
    }
    Ok(())
}

impl SystemState {
    /// Encodes the state as a snapshot at [`last_seq`](Self::last_seq), in
    /// the compact layout (see the module docs of `state::snapshot`). Its size
    /// and time are O(live tasks + the retention window).
    pub fn to_snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot {
            seq: self.last_seq,
            data: encode(self),
        })
    }

    /// Decodes a snapshot made by [`to_snapshot`](Self::to_snapshot), or by
    /// an earlier version of swarm (the MessagePack layout). A damaged or
    /// unknown one is [`StoreError::BadSnapshot`], naming what is wrong and
    /// where.
    pub fn from_snapshot(snapshot: &Snapshot) -> Result<SystemState> {
        let bad = |message: String| StoreError::BadSnapshot {
            seq: snapshot.seq,
            message,
        };
        let data = &snapshot.data;
        let mut state = if data.starts_with(&MAGIC) {
            decode(&mut Reader::new(data, MAGIC.len())).map_err(|e| bad(e.to_string()))?
        } else if matches!(data.first(), Some(0x80..=0x8f | 0xde | 0xdf)) {
            decode_legacy(data).map_err(bad)?
        } else {
            return Err(bad(
                "the data is neither layout 2 (it does not start with \"SWRMSTAT\") nor layout 1 (a MessagePack map)".into(),
            ));
        };
        if state.last_seq != snapshot.seq {
            return Err(bad(format!(
                "the state inside is at sequence {}",
                state.last_seq
            )));
        }
        check_and_count(&mut state).map_err(bad)?;
        Ok(state)
    }
}

/// Decodes layout 1: `{version, state}` in MessagePack with named fields.
fn decode_legacy(data: &[u8]) -> std::result::Result<SystemState, String> {
    #[derive(Deserialize)]
    struct Envelope {
        version: u32,
        state: SystemState,
    }
    let envelope: Envelope = rmp_serde::from_slice(data).map_err(|e| e.to_string())?;
    if envelope.version != LEGACY_LAYOUT {
        return Err(format!(
            "snapshot version {} is not {LEGACY_LAYOUT}",
            envelope.version
        ));
    }
    Ok(envelope.state)
}

/// Encodes `state` in layout 1, for tests of the old layout's decoding.
#[cfg(test)]
pub(crate) fn encode_legacy(state: &SystemState) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Borrowed<'a> {
        version: u32,
        state: &'a SystemState,
    }
    match rmp_serde::to_vec_named(&Borrowed {
        version: LEGACY_LAYOUT,
        state,
    }) {
        Ok(data) => data,
        Err(e) => unreachable!("a state always encodes: {e}"),
    }
}

#[cfg(test)]
mod tests;
