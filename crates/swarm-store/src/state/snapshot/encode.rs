//! Writing layout 2 (see the parent module for the layout).

use std::collections::HashMap;

use super::wire::Writer;
use super::*;
use crate::state::TaskRecord;

/// Encodes `state` in layout 2.
pub(super) fn encode(state: &SystemState) -> Vec<u8> {
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
        (r.retry_at.is_some(), RETRY_AT),
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
    if let Some(at) = r.retry_at {
        w.u64_le(at.as_micros());
    }
}
