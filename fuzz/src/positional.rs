//! An independent model of event encoding 2 (positional), written from its
//! documentation (`crates/swarm-store/src/file/codec.rs`), not from its code:
//! what a payload must decode to, for a segment of a given schema revision.

use std::time::Duration;

use swarm_core::event::{
    AgentAvailable, AgentBusy, AgentCreated, AgentError, AgentHealth, AgentRemoved,
    CoordinatorOverload, FailureReason, PerformanceDegraded, QueueBacklog, QueueLocation,
    SwarmPaused, SwarmResumed, SystemShutdown, TaskAssigned, TaskCancelled, TaskCompleted,
    TaskCreated, TaskCritical, TaskDeadLetterRetried, TaskDeadLettered, TaskDequeued,
    TaskDiscarded, TaskEnqueued, TaskFailed, TaskInterrupted, TaskThrottled, TaskUnthrottled,
    WorkStolen,
};
use swarm_core::{AgentId, Event, Payload, Priority, Task, TaskId, TaskParts, Timestamp};

use crate::model::Decoded;

/// The newest schema revision the documentation describes.
pub const REVISION: u16 = 1;

struct In<'a> {
    b: &'a [u8],
}

/// `None`: the bytes are not a value (too short, out of range).
type R<T> = Option<T>;

impl<'a> In<'a> {
    fn byte(&mut self) -> R<u8> {
        let (&first, rest) = self.b.split_first()?;
        self.b = rest;
        Some(first)
    }
    fn n(&mut self, n: usize) -> R<&'a [u8]> {
        if n > self.b.len() {
            return None;
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Some(head)
    }
    fn le64(&mut self) -> R<u64> {
        Some(u64::from_le_bytes(self.n(8)?.try_into().ok()?))
    }
    /// Unsigned LEB128, at most 64 bits.
    fn var(&mut self) -> R<u64> {
        let mut v: u128 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            v |= u128::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return u64::try_from(v).ok();
            }
        }
        None
    }
    fn var32(&mut self) -> R<u32> {
        u32::try_from(self.var()?).ok()
    }
    fn flag(&mut self) -> R<bool> {
        match self.byte()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
    fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> R<T>) -> R<Option<T>> {
        if self.flag()? { f(self).map(Some) } else { Some(None) }
    }
    fn blob(&mut self) -> R<&'a [u8]> {
        let n = usize::try_from(self.var()?).ok()?;
        self.n(n)
    }
    fn text(&mut self) -> R<String> {
        String::from_utf8(self.blob()?.to_vec()).ok()
    }
    fn task(&mut self) -> R<TaskId> {
        self.le64().map(TaskId::from_u64)
    }
    fn agent(&mut self) -> R<AgentId> {
        self.var().map(AgentId::new)
    }
    fn micros(&mut self) -> R<Duration> {
        self.var().map(Duration::from_micros)
    }
    fn prio(&mut self) -> R<Priority> {
        Priority::from_level(usize::from(self.byte()?))
    }
    fn queue(&mut self) -> R<QueueLocation> {
        match self.byte()? {
            0 => Some(QueueLocation::Global),
            1 => self.agent().map(QueueLocation::Local),
            2 => Some(QueueLocation::Distributed),
            _ => None,
        }
    }
    fn reason(&mut self) -> R<FailureReason> {
        use FailureReason::*;
        [Error, Permanent, Panic, Timeout, Lost]
            .get(usize::from(self.byte()?))
            .copied()
    }
    fn health(&mut self) -> R<AgentHealth> {
        use AgentHealth::*;
        [Healthy, Degraded, Unhealthy]
            .get(usize::from(self.byte()?))
            .copied()
    }
    fn payload(&mut self) -> R<Payload> {
        Some(Payload::from(self.blob()?))
    }
    fn list<T>(&mut self, mut f: impl FnMut(&mut Self) -> R<T>) -> R<Vec<T>> {
        let n = self.var()?;
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(f(self)?);
        }
        Some(v)
    }
}

/// `Some(None)`: a tag the documentation does not list.
fn event(tag: u64, i: &mut In<'_>) -> R<Option<Event>> {
    let e: Event = match tag {
        1 => TaskCreated {
            task: Task::from_parts(TaskParts {
                id: i.task()?,
                priority: i.prio()?,
                kind: i.text()?.into(),
                payload: i.payload()?,
                attempt: i.var32()?,
                created_at: Timestamp::from_micros(i.var()?),
                affinity: i.opt(In::agent)?,
                pinned: i.flag()?,
                timeout: i.opt(In::micros)?,
                max_attempts: i.opt(In::var32)?,
                key: i.opt(In::text)?.map(Into::into),
                cost: i.var32()?,
                not_before: i.opt(In::var)?.map(Timestamp::from_micros),
            }),
        }
        .into(),
        2 => TaskEnqueued {
            task_id: i.task()?,
            priority: i.prio()?,
            queue: i.queue()?,
        }
        .into(),
        3 => TaskDequeued {
            task_id: i.task()?,
            priority: i.prio()?,
            queue: i.queue()?,
        }
        .into(),
        4 => TaskCritical { task_id: i.task()? }.into(),
        5 => TaskAssigned {
            task_id: i.task()?,
            agent_id: i.agent()?,
            attempt: i.var32()?,
            priority: i.prio()?,
            queue_wait: i.micros()?,
        }
        .into(),
        6 => TaskCompleted {
            task_id: i.task()?,
            agent_id: i.agent()?,
            attempt: i.var32()?,
            duration: i.micros()?,
            output: i.payload()?,
        }
        .into(),
        7 => TaskFailed {
            task_id: i.task()?,
            agent_id: i.opt(In::agent)?,
            attempt: i.var32()?,
            reason: i.reason()?,
            error: i.text()?,
            will_retry: i.flag()?,
            retry_in: i.opt(In::micros)?,
        }
        .into(),
        8 => TaskDeadLettered {
            task_id: i.task()?,
            attempts: i.var32()?,
            errors: i.list(In::text)?,
        }
        .into(),
        9 => TaskCancelled {
            task_id: i.task()?,
            was_running: i.flag()?,
        }
        .into(),
        10 => AgentCreated {
            agent_id: i.agent()?,
            reserve: i.flag()?,
        }
        .into(),
        11 => AgentRemoved {
            agent_id: i.agent()?,
            reason: i.text()?,
        }
        .into(),
        12 => AgentAvailable {
            agent_id: i.agent()?,
        }
        .into(),
        13 => AgentBusy {
            agent_id: i.agent()?,
            task_id: i.task()?,
        }
        .into(),
        14 => AgentError {
            agent_id: i.agent()?,
            reason: i.reason()?,
            error: i.text()?,
            health: i.health()?,
        }
        .into(),
        15 => WorkStolen {
            from: i.agent()?,
            to: i.agent()?,
            count: i.var32()?,
            task_ids: i.list(In::task)?,
        }
        .into(),
        16 => QueueBacklog {
            queued: i.var()?,
            threshold: i.var()?,
        }
        .into(),
        17 => CoordinatorOverload {
            busy: i.var32()?,
            total: i.var32()?,
            load: f64::from_bits(i.le64()?),
        }
        .into(),
        18 => PerformanceDegraded {
            p99_queue_wait: i.micros()?,
            objective: i.micros()?,
        }
        .into(),
        19 => SystemShutdown {
            deadline: i.micros()?,
            pending: i.var()?,
        }
        .into(),
        20 => TaskInterrupted {
            task_id: i.task()?,
            agent_id: i.agent()?,
            attempt: i.var32()?,
            was_running: i.flag()?,
        }
        .into(),
        21 => TaskDeadLetterRetried {
            task_id: i.task()?,
            attempts: i.var32()?,
        }
        .into(),
        22 => TaskDiscarded { task_id: i.task()? }.into(),
        23 => SwarmPaused { running: i.var()? }.into(),
        24 => SwarmResumed { queued: i.var()? }.into(),
        25 => TaskThrottled {
            task_id: i.task()?,
            limit: i.text()?,
        }
        .into(),
        26 => TaskUnthrottled {
            task_id: i.task()?,
            limit: i.text()?,
            waited: i.micros()?,
        }
        .into(),
        _ => return Some(None),
    };
    Some(Some(e))
}

/// How a payload of a segment of schema `revision` decodes: the event, an
/// unknown kind (a tag this revision lacks, in a segment of a newer one), or
/// damage. Trailing bytes are a newer revision's fields, or damage.
pub fn decode(payload: &[u8], revision: u16) -> Decoded {
    let newer = revision > REVISION;
    let mut i = In { b: payload };
    let Some(tag) = i.var() else {
        return Decoded::Bad;
    };
    match event(tag, &mut i) {
        None => Decoded::Bad,
        Some(None) if newer => Decoded::Unknown,
        Some(None) => Decoded::Bad,
        Some(Some(_)) if !i.b.is_empty() && !newer => Decoded::Bad,
        Some(Some(e)) => Decoded::Event(Box::new(e)),
    }
}
