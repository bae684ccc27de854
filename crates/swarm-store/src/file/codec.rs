//! Event encoding 2: positional binary, no field names.
//!
//! An event is its kind's tag (a varint, from the table in [`positional!`]
//! below) followed by its fields in declaration order:
//!
//! | type | bytes |
//! |---|---|
//! | `TaskId` | 8, little-endian (ids are random: a varint would be longer) |
//! | `u64`, `u32`, `AgentId`, `Timestamp`, counts | unsigned LEB128 varint |
//! | `Duration` | varint of whole microseconds (saturating, as with serde) |
//! | `bool` | 1 byte, 0 or 1 |
//! | `f64` | 8, the IEEE 754 bits little-endian |
//! | `Priority` | 1 byte, its level (0 = critical .. 3 = low) |
//! | `FailureReason`, `AgentHealth` | 1 byte, the variant's position |
//! | `QueueLocation` | 1 byte (0 global, 1 local + agent varint, 2 distributed) |
//! | `String`, `Payload` | varint length, then the bytes (strings UTF-8) |
//! | `Option<T>` | 1 byte, 0 (none) or 1 followed by `T` |
//! | `Vec<T>` | varint count, then the items |
//!
//! The record's frame gives the event's length, so the encoding needs no
//! length of its own.
//!
//! # Growth
//!
//! The segment header names the schema revision its records were written
//! with ([`SCHEMA_REVISION`] for new segments). A revision may only
//! - add an event kind, under a new tag, and
//! - add fields at the end of an event (after every field of earlier
//!   revisions), each read only when the segment's revision has it and
//!   defaulted otherwise (the `since` blocks below).
//!
//! So a record of an older revision reads with its later fields defaulted,
//! and a record of a newer one (a newer swarm wrote the segment) reads with
//! its unknown trailing fields skipped, or, for an unknown tag, as
//! [`DecodeError::Unknown`] (not damage: replay skips it). Within the
//! revisions this build knows, anything else (an unknown tag, a missing or
//! extra byte, an invalid value) is damage. A change that breaks these
//! rules (reordering, retyping or removing a field) is a new encoding, under
//! a new format version, not a revision.
//!
//! Adding an event kind: give it the next tag in [`positional!`] and write
//! its [`Positional`] impl below. The round-trip test over every kind of the
//! catalog fails until both exist.

use std::sync::Arc;
use std::time::Duration;

use swarm_core::event::{
    AgentAvailable, AgentBusy, AgentCreated, AgentError, AgentHealth, AgentRemoved,
    CoordinatorOverload, FailureReason, PerformanceDegraded, QueueBacklog, QueueLocation,
    SwarmPaused, SwarmResumed, SystemShutdown, TaskAssigned, TaskCancelled, TaskCompleted,
    TaskCreated, TaskCritical, TaskDeadLetterRetried, TaskDeadLettered, TaskDequeued,
    TaskDiscarded, TaskEnqueued, TaskFailed, TaskInterrupted, TaskThrottled, TaskUnthrottled,
    WorkStolen,
};
use swarm_core::{
    AgentId, Event, EventKind, Payload, Priority, Task, TaskId, TaskParts, Timestamp,
};

use super::format::DecodeError;

/// The schema revision this build writes, and the newest it knows.
pub(crate) const SCHEMA_REVISION: u16 = 1;

/// Why bytes are not a value: static, so that decoding allocates nothing
/// until it fails.
type Bad = &'static str;

/// A cursor over an event's bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    /// The schema revision the bytes were written with.
    revision: u16,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], revision: u16) -> Self {
        Reader {
            buf,
            at: 0,
            revision,
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.at
    }

    fn u8(&mut self) -> Result<u8, Bad> {
        let b = *self.buf.get(self.at).ok_or("the event ends early")?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        if n > self.remaining() {
            return Err("the event ends early");
        }
        let bytes = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(bytes)
    }

    fn fixed_u64(&mut self) -> Result<u64, Bad> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn varint(&mut self) -> Result<u64, Bad> {
        let mut value = 0u64;
        let mut shift = 0u32;
        loop {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err("a varint overflows 64 bits");
            }
            value |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
            if shift > 63 {
                return Err("a varint overflows 64 bits");
            }
        }
    }

    fn u32(&mut self) -> Result<u32, Bad> {
        u32::try_from(self.varint()?).map_err(|_| "a 32-bit field is out of range")
    }

    fn bool(&mut self) -> Result<bool, Bad> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err("a boolean is neither 0 nor 1"),
        }
    }

    fn len(&mut self) -> Result<usize, Bad> {
        let n = self.varint()?;
        // Every item is at least a byte: a longer count is damage (and must
        // not size an allocation).
        match usize::try_from(n) {
            Ok(n) if n <= self.remaining() => Ok(n),
            _ => Err("a length runs past the end of the event"),
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], Bad> {
        let n = self.len()?;
        self.take(n)
    }

    fn str(&mut self) -> Result<&'a str, Bad> {
        std::str::from_utf8(self.bytes()?).map_err(|_| "a string is not UTF-8")
    }

    fn option<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, Bad>) -> Result<Option<T>, Bad> {
        match self.u8()? {
            0 => Ok(None),
            1 => f(self).map(Some),
            _ => Err("an option's flag is neither 0 nor 1"),
        }
    }

    fn vec<T>(&mut self, mut f: impl FnMut(&mut Self) -> Result<T, Bad>) -> Result<Vec<T>, Bad> {
        let n = self.len()?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(f(self)?);
        }
        Ok(items)
    }

    /// A field added in `revision`: read when the bytes have it, the
    /// default otherwise.
    #[allow(dead_code)] // no field has been added since revision 1 yet
    fn since<T>(
        &mut self,
        revision: u16,
        default: impl FnOnce() -> T,
        f: impl FnOnce(&mut Self) -> Result<T, Bad>,
    ) -> Result<T, Bad> {
        if self.revision >= revision {
            f(self)
        } else {
            Ok(default())
        }
    }

    fn task_id(&mut self) -> Result<TaskId, Bad> {
        self.fixed_u64().map(TaskId::from_u64)
    }

    fn agent_id(&mut self) -> Result<AgentId, Bad> {
        self.varint().map(AgentId::new)
    }

    fn timestamp(&mut self) -> Result<Timestamp, Bad> {
        self.varint().map(Timestamp::from_micros)
    }

    fn duration(&mut self) -> Result<Duration, Bad> {
        self.varint().map(Duration::from_micros)
    }

    fn f64(&mut self) -> Result<f64, Bad> {
        self.fixed_u64().map(f64::from_bits)
    }

    fn string(&mut self) -> Result<String, Bad> {
        self.str().map(str::to_owned)
    }

    fn priority(&mut self) -> Result<Priority, Bad> {
        Priority::from_level(usize::from(self.u8()?)).ok_or("a priority level is out of range")
    }

    fn payload(&mut self) -> Result<Payload, Bad> {
        let bytes = self.bytes()?;
        Ok(if bytes.is_empty() {
            Payload::empty()
        } else {
            Payload::from(bytes)
        })
    }
}

/// Appends values to an event's bytes.
pub(crate) struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, b: u8) {
        self.0.push(b);
    }

    fn fixed_u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn u32(&mut self, v: u32) {
        self.varint(u64::from(v));
    }

    fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    fn bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn option<T>(&mut self, v: Option<T>, f: impl FnOnce(&mut Self, T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                f(self, v);
            }
        }
    }

    fn vec<T>(&mut self, items: &[T], mut f: impl FnMut(&mut Self, &T)) {
        self.varint(items.len() as u64);
        for item in items {
            f(self, item);
        }
    }

    fn task_id(&mut self, id: TaskId) {
        self.fixed_u64(id.as_u64());
    }

    fn agent_id(&mut self, id: AgentId) {
        self.varint(id.as_u64());
    }

    fn timestamp(&mut self, t: Timestamp) {
        self.varint(t.as_micros());
    }

    fn duration(&mut self, d: Duration) {
        self.varint(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    fn f64(&mut self, v: f64) {
        self.fixed_u64(v.to_bits());
    }

    fn priority(&mut self, p: Priority) {
        // `level` is below 4.
        self.u8(p.level() as u8);
    }
}

/// What a decoder keeps between the events of a read: the last task kind
/// and key, so that a log of tasks of one kind shares one string.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    kind: Option<Arc<str>>,
    key: Option<Arc<str>>,
}

fn intern(slot: &mut Option<Arc<str>>, s: &str) -> Arc<str> {
    match slot {
        Some(last) if **last == *s => Arc::clone(last),
        _ => {
            let fresh: Arc<str> = Arc::from(s);
            *slot = Some(Arc::clone(&fresh));
            fresh
        }
    }
}

/// The positional form of one event of the catalog.
trait Positional: Sized {
    fn put(&self, w: &mut Writer<'_>);
    fn get(r: &mut Reader<'_>, interner: &mut Interner) -> Result<Self, Bad>;
}

/// The tag table: each kind's tag, its encoding and decoding. A tag is
/// never reused or renumbered.
macro_rules! positional {
    ($($tag:literal => $variant:ident,)+) => {
        /// The tag of `kind`, if it has a positional encoding.
        #[cfg(test)]
        pub(crate) fn tag_of(kind: EventKind) -> Option<u64> {
            match kind {
                $(EventKind::$variant => Some($tag),)+
                #[allow(unreachable_patterns)]
                _ => None,
            }
        }

        fn put_event(event: &Event, w: &mut Writer<'_>) -> Result<(), EventKind> {
            match event {
                $(Event::$variant(e) => {
                    w.varint($tag);
                    e.put(w);
                })+
                #[allow(unreachable_patterns)]
                other => return Err(other.kind()),
            }
            Ok(())
        }

        /// `None` for a tag the table does not have.
        fn get_event(
            tag: u64,
            r: &mut Reader<'_>,
            interner: &mut Interner,
        ) -> Option<Result<Event, Bad>> {
            Some(match tag {
                $($tag => $variant::get(r, interner).map(Event::$variant),)+
                _ => return None,
            })
        }
    };
}

positional! {
    1 => TaskCreated,
    2 => TaskEnqueued,
    3 => TaskDequeued,
    4 => TaskCritical,
    5 => TaskAssigned,
    6 => TaskCompleted,
    7 => TaskFailed,
    8 => TaskDeadLettered,
    9 => TaskCancelled,
    10 => AgentCreated,
    11 => AgentRemoved,
    12 => AgentAvailable,
    13 => AgentBusy,
    14 => AgentError,
    15 => WorkStolen,
    16 => QueueBacklog,
    17 => CoordinatorOverload,
    18 => PerformanceDegraded,
    19 => SystemShutdown,
    20 => TaskInterrupted,
    21 => TaskDeadLetterRetried,
    22 => TaskDiscarded,
    23 => SwarmPaused,
    24 => SwarmResumed,
    25 => TaskThrottled,
    26 => TaskUnthrottled,
}

/// Appends the positional form of `event` to `buf`; fails (leaving `buf`
/// as it was) for a kind the tag table lacks.
pub(crate) fn encode(buf: &mut Vec<u8>, event: &Event) -> Result<(), String> {
    let at = buf.len();
    put_event(event, &mut Writer(buf)).map_err(|kind| {
        buf.truncate(at);
        format!("event kind `{kind}` has no positional encoding (add it to the tag table of file/codec.rs)")
    })
}

/// Decodes the positional form of an event written with schema `revision`.
pub(crate) fn decode(
    payload: &[u8],
    revision: u16,
    interner: &mut Interner,
) -> Result<Event, DecodeError> {
    let mut r = Reader::new(payload, revision);
    let tag = r
        .varint()
        .map_err(|e| DecodeError::Bad(format!("event could not be decoded: {e}")))?;
    let newer = revision > SCHEMA_REVISION;
    let event = match get_event(tag, &mut r, interner) {
        Some(Ok(event)) => event,
        Some(Err(e)) => {
            return Err(DecodeError::Bad(format!(
                "event (tag {tag}) could not be decoded: {e}"
            )));
        }
        None if newer => {
            return Err(DecodeError::Unknown(format!(
                "#{tag} (schema revision {revision})"
            )));
        }
        None => {
            return Err(DecodeError::Bad(format!(
                "event tag {tag} is not in schema revision {revision}"
            )));
        }
    };
    // Fields a newer revision added are skipped; within known revisions the
    // event is all of the record.
    if r.remaining() != 0 && !newer {
        return Err(DecodeError::Bad(format!(
            "{} bytes follow the `{}` event",
            r.remaining(),
            event.name()
        )));
    }
    Ok(event)
}

impl Positional for QueueLocation {
    fn put(&self, w: &mut Writer<'_>) {
        match self {
            QueueLocation::Global => w.u8(0),
            QueueLocation::Local(agent) => {
                w.u8(1);
                w.agent_id(*agent);
            }
            QueueLocation::Distributed => w.u8(2),
        }
    }

    fn get(r: &mut Reader<'_>, _: &mut Interner) -> Result<Self, Bad> {
        match r.u8()? {
            0 => Ok(QueueLocation::Global),
            1 => r.agent_id().map(QueueLocation::Local),
            2 => Ok(QueueLocation::Distributed),
            _ => Err("a queue location is out of range"),
        }
    }
}

impl Positional for FailureReason {
    fn put(&self, w: &mut Writer<'_>) {
        w.u8(match self {
            FailureReason::Error => 0,
            FailureReason::Permanent => 1,
            FailureReason::Panic => 2,
            FailureReason::Timeout => 3,
            FailureReason::Lost => 4,
        });
    }

    fn get(r: &mut Reader<'_>, _: &mut Interner) -> Result<Self, Bad> {
        match r.u8()? {
            0 => Ok(FailureReason::Error),
            1 => Ok(FailureReason::Permanent),
            2 => Ok(FailureReason::Panic),
            3 => Ok(FailureReason::Timeout),
            4 => Ok(FailureReason::Lost),
            _ => Err("a failure reason is out of range"),
        }
    }
}

impl Positional for AgentHealth {
    fn put(&self, w: &mut Writer<'_>) {
        w.u8(match self {
            AgentHealth::Healthy => 0,
            AgentHealth::Degraded => 1,
            AgentHealth::Unhealthy => 2,
        });
    }

    fn get(r: &mut Reader<'_>, _: &mut Interner) -> Result<Self, Bad> {
        match r.u8()? {
            0 => Ok(AgentHealth::Healthy),
            1 => Ok(AgentHealth::Degraded),
            2 => Ok(AgentHealth::Unhealthy),
            _ => Err("an agent health is out of range"),
        }
    }
}

impl Positional for Task {
    fn put(&self, w: &mut Writer<'_>) {
        // In the order of `TaskParts`, which `get` builds (a field added to
        // tasks stops `get` compiling until it is stored here too).
        w.task_id(self.id());
        w.priority(self.priority());
        w.bytes(self.kind().as_bytes());
        w.bytes(self.payload().as_bytes());
        w.u32(self.attempt());
        w.timestamp(self.created_at());
        w.option(self.affinity(), Writer::agent_id);
        w.bool(self.pinned());
        w.option(self.timeout(), Writer::duration);
        w.option(self.max_attempts(), Writer::u32);
        w.option(self.key(), |w, k| w.bytes(k.as_bytes()));
        w.u32(self.cost());
        w.option(self.not_before(), Writer::timestamp);
    }

    fn get(r: &mut Reader<'_>, interner: &mut Interner) -> Result<Self, Bad> {
        Ok(Task::from_parts(TaskParts {
            id: r.task_id()?,
            priority: r.priority()?,
            kind: {
                let kind = r.str()?;
                intern(&mut interner.kind, kind)
            },
            payload: r.payload()?,
            attempt: r.u32()?,
            created_at: r.timestamp()?,
            affinity: r.option(Reader::agent_id)?,
            pinned: r.bool()?,
            timeout: r.option(Reader::duration)?,
            max_attempts: r.option(Reader::u32)?,
            key: match r.option(Reader::str)? {
                Some(key) => Some(intern(&mut interner.key, key)),
                None => None,
            },
            cost: r.u32()?,
            not_before: r.option(Reader::timestamp)?,
        }))
    }
}

impl Positional for TaskCreated {
    fn put(&self, w: &mut Writer<'_>) {
        self.task.put(w);
    }

    fn get(r: &mut Reader<'_>, interner: &mut Interner) -> Result<Self, Bad> {
        Ok(TaskCreated {
            task: Task::get(r, interner)?,
        })
    }
}

impl Positional for TaskEnqueued {
    fn put(&self, w: &mut Writer<'_>) {
        w.task_id(self.task_id);
        w.priority(self.priority);
        self.queue.put(w);
    }

    fn get(r: &mut Reader<'_>, interner: &mut Interner) -> Result<Self, Bad> {
        Ok(TaskEnqueued {
            task_id: r.task_id()?,
            priority: r.priority()?,
            queue: QueueLocation::get(r, interner)?,
        })
    }
}

impl Positional for TaskDequeued {
    fn put(&self, w: &mut Writer<'_>) {
        w.task_id(self.task_id);
        w.priority(self.priority);
        self.queue.put(w);
    }

    fn get(r: &mut Reader<'_>, interner: &mut Interner) -> Result<Self, Bad> {
        Ok(TaskDequeued {
            task_id: r.task_id()?,
            priority: r.priority()?,
            queue: QueueLocation::get(r, interner)?,
        })
    }
}

impl Positional for TaskCritical {
    fn put(&self, w: &mut Writer<'_>) {
        w.task_id(self.task_id);
    }

    fn get(r: &mut Reader<'_>, _: &mut Interner) -> Result<Self, Bad> {
        Ok(TaskCritical {
            task_id: r.task_id()?,
        })
    }
}

impl Positional for TaskAssigned {
    fn put(&self, w: &mut Writer<'_>) {
        w.task_id(self.task_id);
        w.agent_id(self.agent_id);
        w.u32(self.attempt);
        w.priority(self.priority);
        w.duration(self.queue_wait);
    }

    fn get(r: &mut Reader<'_>, _: &mut Interner) -> Result<Self, Bad> {
        Ok(TaskAssigned {
            task_id: r.task_id()?,
            agent_id: r.agent_id()?,
            attempt: r.u32()?,
            priority: r.priority()?,
            queue_wait: r.duration()?,
        })
    }
}

impl Positional for TaskCompleted {
    fn put(&self, w: &mut Writer<'_>) {
        w.task_id(self.task_id);
        w.agent_id(self.agent_id);
        w.u32(self.attempt);
        w.duration(self.duration);
        w.bytes(self.output.as_bytes());
    }

    fn get(r: &mut Reader<'_>, _: &mut Interner) -> Result<Self, Bad> {
        Ok(TaskCompleted {
            task_id: r.task_id()?,
            agent_id: r.agent_id()?,
            attempt: r.u32()?,
            duration: r.duration()?,
            output: r.payload()?,
        })
    }
}

impl Positional for TaskFailed {
    fn put(&self, w: &mut Writer<'_>) {
        w.task_id(self.task_id);
        w.option(self.agent_id, Writer::agent_id);
        w.u32(self.attempt);
        self.reason.put(w);
        w.bytes(self.error.as_bytes());
        w.bool(self.will_retry);
        w.option(self.retry_in, Writer::duration);
    }

    fn get(r: &mut Reader<'_>, interner: &mut Interner) -> Result<Self, Bad> {
        Ok(TaskFailed {
            task_id: r.task_id()?,
            agent_id: r.option(Reader::agent_id)?,
            attempt: r.u32()?,
            reason: FailureReason::get(r, interner)?,
            error: r.string()?,
            will_retry: r.bool()?,
            retry_in: r.option(Reader::duration)?,
        })
    }
}

impl Positional for TaskDeadLettered {
    fn put(&self, w: &mut Writer<'_>) {
        w.task_id(self.task_id);
        w.u32(self.attempts);
        w.vec(&self.errors, |w, e| w.bytes(e.as_bytes()));
    }

    fn get(r: &mut Reader<'_>, _: &mut Interner) -> Result<Self, Bad> {
        Ok(TaskDeadLettered {
            task_id: r.task_id()?,
            attempts: r.u32()?,
            errors: r.vec(Reader::string)?,
        })
    }
}

impl Positional for TaskCancelled {
    fn put(&self, w: &mut Writer<'_>) {
        w.task_id(self.task_id);
        w.bool(self.was_running);
    }

    fn get(r: &mut Reader<'_>, _: &mut Interner) -> Result<Self, Bad> {
        Ok(TaskCancelled {
            task_id: r.task_id()?,
            was_running: r.bool()?,
        })
    }
}

impl Positional for AgentCreated {
    fn put(&self, w: &mut Writer<'_>) {
        w.agent_id(self.agent_id);
        w.bool(self.reserve);
    }

    fn get(r: &mut Reader<'_>, _: &mut Interner) -> Result<Self, Bad> {
        Ok(AgentCreated {
            agent_id: r.agent_id()?,
            reserve: r.bool()?,
        })
    }
}

impl Positional for AgentRemoved {
    fn put(&self, w: &mut Writer<'_>) {
        w.agent_id(self.agent_id);
        w.bytes(self.reason.as_bytes());
    }

    fn get(r: &mut Reader<'_>, _: &mut Interner) -> Result<Self, Bad> {
        Ok(AgentRemoved {
            agent_id: r.agent_id()?,
            reason: r.string()?,
        })
    }
}

impl Positional for AgentAvailable {
    fn put(&self, w: &mut Writer<'_>) {
        w.agent_id(self.agent_id);
    }

    fn get(r: &mut Reader<'_>, _: &mut Interner) -> Result<Self, Bad> {
        Ok(AgentAvailable {
            agent_id: r.agent_id()?,
        })
    }
}

impl Positional for AgentBusy {
    fn put(&self, w: &mut Writer<'_>) {
        w.agent_id(self.agent_id);
        w.task_id(self.task_id);
    }

    fn get(r: &mut Reader<'_>, _: &mut Interner) -> Result<Self, Bad> {
        Ok(AgentBusy {
            agent_id: r.agent_id()?,
            task_id: r.task_id()?,
        })
    }
}

impl Positional for AgentError {
    fn put(&self, w: &mut Writer<'_>) {
        w.agent_id(self.agent_id);
        self.reason.put(w);
        w.bytes(self.error.as_bytes());
        self.health.put(w);
    }

    fn get(r: &mut Reader<'_>, interner: &mut Interner) -> Result<Self, Bad> {
        Ok(AgentError {
            agent_id: r.agent_id()?,
            reason: FailureReason::get(r, interner)?,
            error: r.string()?,
            health: AgentHealth::get(r, interner)?,
        })
    }
}

impl Positional for WorkStolen {
    fn put(&self, w: &mut Writer<'_>) {
        w.agent_id(self.from);
        w.agent_id(self.to);
        w.u32(self.count);
        w.vec(&self.task_ids, |w, id| w.task_id(*id));
    }

    fn get(r: &mut Reader<'_>, _: &mut Interner) -> Result<Self, Bad> {
        Ok(WorkStolen {
            from: r.agent_id()?,
            to: r.agent_id()?,
            count: r.u32()?,
            task_ids: r.vec(Reader::task_id)?,
        })
    }
}

impl Positional for QueueBacklog {
    fn put(&self, w: &mut Writer<'_>) {
        w.varint(self.queued);
        w.varint(self.threshold);
    }

    fn get(r: &mut Reader<'_>, _: &mut Interner) -> Result<Self, Bad> {
        Ok(QueueBacklog {
            queued: r.varint()?,
            threshold: r.varint()?,
        })
    }
}

impl Positional for CoordinatorOverload {
    fn put(&self, w: &mut Writer<'_>) {
        w.u32(self.busy);
        w.u32(self.total);
        w.f64(self.load);
    }

    fn get(r: &mut Reader<'_>, _: &mut Interner) -> Result<Self, Bad> {
        Ok(CoordinatorOverload {
            busy: r.u32()?,
            total: r.u32()?,
            load: r.f64()?,
        })
    }
}

impl Positional for PerformanceDegraded {
    fn put(&self, w: &mut Writer<'_>) {
        w.duration(self.p99_queue_wait);
        w.duration(self.objective);
    }

    fn get(r: &mut Reader<'_>, _: &mut Interner) -> Result<Self, Bad> {
        Ok(PerformanceDegraded {
            p99_queue_wait: r.duration()?,
            objective: r.duration()?,
        })
    }
}

impl Positional for SystemShutdown {
    fn put(&self, w: &mut Writer<'_>) {
        w.duration(self.deadline);
        w.varint(self.pending);
    }

    fn get(r: &mut Reader<'_>, _: &mut Interner) -> Result<Self, Bad> {
        Ok(SystemShutdown {
            deadline: r.duration()?,
            pending: r.varint()?,
        })
    }
}

impl Positional for TaskInterrupted {
    fn put(&self, w: &mut Writer<'_>) {
        w.task_id(self.task_id);
        w.agent_id(self.agent_id);
        w.u32(self.attempt);
        w.bool(self.was_running);
    }

    fn get(r: &mut Reader<'_>, _: &mut Interner) -> Result<Self, Bad> {
        Ok(TaskInterrupted {
            task_id: r.task_id()?,
            agent_id: r.agent_id()?,
            attempt: r.u32()?,
            was_running: r.bool()?,
        })
    }
}

impl Positional for TaskDeadLetterRetried {
    fn put(&self, w: &mut Writer<'_>) {
        w.task_id(self.task_id);
        w.u32(self.attempts);
    }

    fn get(r: &mut Reader<'_>, _: &mut Interner) -> Result<Self, Bad> {
        Ok(TaskDeadLetterRetried {
            task_id: r.task_id()?,
            attempts: r.u32()?,
        })
    }
}

impl Positional for TaskDiscarded {
    fn put(&self, w: &mut Writer<'_>) {
        w.task_id(self.task_id);
    }

    fn get(r: &mut Reader<'_>, _: &mut Interner) -> Result<Self, Bad> {
        Ok(TaskDiscarded {
            task_id: r.task_id()?,
        })
    }
}

impl Positional for TaskThrottled {
    fn put(&self, w: &mut Writer<'_>) {
        w.task_id(self.task_id);
        w.bytes(self.limit.as_bytes());
    }

    fn get(r: &mut Reader<'_>, _: &mut Interner) -> Result<Self, Bad> {
        Ok(TaskThrottled {
            task_id: r.task_id()?,
            limit: r.string()?,
        })
    }
}

impl Positional for TaskUnthrottled {
    fn put(&self, w: &mut Writer<'_>) {
        w.task_id(self.task_id);
        w.bytes(self.limit.as_bytes());
        w.duration(self.waited);
    }

    fn get(r: &mut Reader<'_>, _: &mut Interner) -> Result<Self, Bad> {
        Ok(TaskUnthrottled {
            task_id: r.task_id()?,
            limit: r.string()?,
            waited: r.duration()?,
        })
    }
}

impl Positional for SwarmPaused {
    fn put(&self, w: &mut Writer<'_>) {
        w.varint(self.running);
    }

    fn get(r: &mut Reader<'_>, _: &mut Interner) -> Result<Self, Bad> {
        Ok(SwarmPaused {
            running: r.varint()?,
        })
    }
}

impl Positional for SwarmResumed {
    fn put(&self, w: &mut Writer<'_>) {
        w.varint(self.queued);
    }

    fn get(r: &mut Reader<'_>, _: &mut Interner) -> Result<Self, Bad> {
        Ok(SwarmResumed {
            queued: r.varint()?,
        })
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
