//! The event mode's global queue holding its real entries, for measuring
//! what one queued task costs (`swarm-bench`'s memory scenario).
//!
//! The entry type (`Queued`) is the scheduler's own and stays private; a
//! bench that copied its layout would drift from it (one did: it measured a
//! task and an `Instant` after the entry had grown an order and a promise).

use super::*;

/// The strict global queue and the entries `submit` puts in it: for
/// measuring memory per queued task, not for scheduling.
#[doc(hidden)]
pub struct GlobalQueueProbe {
    queue: GlobalQueue,
    next_order: u64,
    epoch: Instant,
}

impl fmt::Debug for GlobalQueueProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlobalQueueProbe")
            .field("len", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl Default for GlobalQueueProbe {
    fn default() -> Self {
        GlobalQueueProbe::new()
    }
}

impl GlobalQueueProbe {
    /// An empty queue (no aging, no fair share: the default swarm's).
    pub fn new() -> Self {
        GlobalQueueProbe {
            queue: GlobalQueue::new(None, None),
            next_order: 0,
            epoch: Instant::now(),
        }
    }

    /// Queues `task` at its priority the way the scheduler does.
    pub fn push(&mut self, task: Task) {
        let priority = task.priority();
        let nanos = self.epoch.elapsed().as_nanos();
        let queued = Queued {
            task,
            since: Stamp(u64::try_from(nanos).unwrap_or(u64::MAX)),
            order: self.next_order,
        };
        self.next_order += 1;
        // Unbounded: the refusal cannot happen, and would only drop a probe's task.
        let _ = self.queue.push(queued, priority);
    }

    /// Tasks queued.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no task is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The size of one queue entry (`size_of` the scheduler's entry type).
    pub const fn entry_size() -> usize {
        std::mem::size_of::<Queued>()
    }
}
