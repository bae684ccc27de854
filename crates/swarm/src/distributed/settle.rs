//! What a node knows of the messages it holds and has settled, so that a
//! redelivery of a message it still works on, or settled a moment ago, is
//! settled the same way rather than run again.
//!
//! The server redelivers a message whose ack or progress ack it did not get
//! in time: a node cut off from its server, a log slow to take the task's
//! events, a lost ack. JetStream names a message by its stream sequence,
//! which every redelivery keeps, so a node recognises one by (task id,
//! stream sequence):
//!
//! - the task runs here under that message: the redelivery starts no second
//!   attempt and stops nothing; it is held (with progress acks) until the
//!   attempt settles its message, then settled with the same ack kind on its
//!   own reply subject (which is the one the server now expects);
//! - this node acked or terminated that message lately: it is acked or
//!   terminated again, and the task does not run again.
//!
//! Everything here is bounded: held messages by the agents running them,
//! settled ones by [`SETTLED_KEPT`]. A redelivery older than that, or to
//! another node, runs the task again, which is the at-least-once bound.

use std::collections::VecDeque;
use std::time::SystemTime;

use async_nats::jetstream::{AckKind, Message};
use swarm_core::TaskId;
use tokio::sync::oneshot;

use crate::idmap::IdMap;

/// How many settled messages a node remembers.
pub(crate) const SETTLED_KEPT: usize = 4096;

/// Why a running attempt is being stopped from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    Cancel,
    Shutdown,
}

/// One delivery of a task's message, with what its reply subject says
/// (parsed once).
pub(crate) struct Delivery {
    pub(crate) message: Message,
    pub(crate) task: TaskId,
    /// The message's stream sequence (`None` if the reply subject did not parse).
    pub(crate) seq: Option<u64>,
    /// How often the server delivered it, this delivery included (at least 1).
    pub(crate) delivered: i64,
    /// When the server stored it.
    pub(crate) published: Option<SystemTime>,
}

impl Delivery {
    pub(crate) fn new(message: Message, task: TaskId) -> Self {
        let (seq, delivered, published) = match message.info() {
            Ok(info) => (
                Some(info.stream_sequence),
                info.delivered.max(1),
                Some(SystemTime::from(info.published)),
            ),
            Err(_) => (None, 1, None),
        };
        Delivery {
            message,
            task,
            seq,
            delivered,
            published,
        }
    }
}

/// A message this node holds for a task it runs (or is about to settle).
pub(crate) struct Held {
    /// The message's stream sequence.
    pub(crate) seq: Option<u64>,
    /// Stops the attempt: taken by a cancel or a shutdown; closed once the
    /// attempt has ended (its message is being settled).
    pub(crate) stop: Option<oneshot::Sender<Stop>>,
}

impl Held {
    /// Whether the attempt still runs (it has not ended, nobody stopped it).
    pub(crate) fn attempt_running(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| !s.is_closed())
    }
}

/// The ack kinds of the messages this node settled last, by task: at most
/// [`SETTLED_KEPT`], the oldest forgotten first.
#[derive(Default)]
pub(crate) struct Settled {
    by_task: IdMap<TaskId, Entry>,
    /// Insertion order, with each entry's stamp: a task settled again gets
    /// a new stamp, so its older place in the order removes nothing.
    order: VecDeque<(TaskId, u64)>,
    next_stamp: u64,
}

#[derive(Clone, Copy)]
struct Entry {
    seq: u64,
    kind: AckKind,
    stamp: u64,
}

impl Settled {
    /// Records that the message `seq` of `task` was settled with `kind`.
    pub(crate) fn record(&mut self, task: TaskId, seq: u64, kind: AckKind) {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.by_task.insert(task, Entry { seq, kind, stamp });
        self.order.push_back((task, stamp));
        while self.order.len() > SETTLED_KEPT {
            let Some((old, old_stamp)) = self.order.pop_front() else {
                break;
            };
            if self.by_task.get(&old).is_some_and(|e| e.stamp == old_stamp) {
                self.by_task.remove(&old);
            }
        }
    }

    /// How the message `seq` of `task` was settled, if it was lately.
    pub(crate) fn kind(&self, task: TaskId, seq: u64) -> Option<AckKind> {
        self.by_task
            .get(&task)
            .filter(|e| e.seq == seq)
            .map(|e| e.kind)
    }

    /// Like [`kind`](Self::kind), but only an ack or a termination: the
    /// message is done with, and a redelivery of it must not run the task.
    /// (A nak asked for the redelivery: that one runs.)
    pub(crate) fn done(&self, task: TaskId, seq: u64) -> Option<AckKind> {
        self.kind(task, seq)
            .filter(|k| matches!(k, AckKind::Ack | AckKind::Term))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_task.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settled_message_is_recognised_by_task_and_sequence() {
        let mut s = Settled::default();
        let t = TaskId::from_u64(1);
        s.record(t, 7, AckKind::Ack);
        assert!(matches!(s.done(t, 7), Some(AckKind::Ack)));
        // Another message of the same task (a copy, a resubmission).
        assert!(s.done(t, 8).is_none());
        s.record(t, 9, AckKind::Nak(None));
        // A nak'd message is redelivered to run: not done, but known.
        assert!(s.done(t, 9).is_none());
        assert!(matches!(s.kind(t, 9), Some(AckKind::Nak(None))));
        assert!(s.kind(t, 7).is_none());
    }

    #[test]
    fn the_record_is_bounded_and_forgets_the_oldest() {
        let mut s = Settled::default();
        let n = SETTLED_KEPT as u64 + 100;
        for i in 0..n {
            s.record(TaskId::from_u64(i), i, AckKind::Ack);
        }
        assert_eq!(s.len(), SETTLED_KEPT);
        assert!(s.done(TaskId::from_u64(99), 99).is_none());
        assert!(s.done(TaskId::from_u64(100), 100).is_some());
        // A task settled again keeps its newer entry when its older place
        // in the order runs out.
        let t = TaskId::from_u64(100);
        s.record(t, 500, AckKind::Term);
        for i in n..n + SETTLED_KEPT as u64 - 1 {
            s.record(TaskId::from_u64(i), i, AckKind::Ack);
        }
        assert!(matches!(s.done(t, 500), Some(AckKind::Term)));
        assert!(s.order.len() <= SETTLED_KEPT);
    }
}
