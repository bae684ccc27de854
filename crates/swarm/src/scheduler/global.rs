//! Event mode's global queue: the strict priority queue, or with
//! `SwarmBuilder::fair_share` the fair queue (deficit round robin over task
//! keys within each level). Two types rather than a mode inside one, so the
//! strict queue's hot path carries no check for a mode it is not in.

use swarm_queue::{AgingPolicy, FairIter, FairQueue, FairShare, Iter, PriorityQueue, QueueFull};

use super::*;

pub(crate) enum GlobalQueue {
    Strict(PriorityQueue<Queued>),
    /// Boxed: it holds a round-robin state per level.
    Fair(Box<FairQueue<Queued>>),
}

/// What fair share reads from a queued task: its key and its cost.
fn fair_key(queued: &Queued) -> (Option<&str>, u32) {
    (queued.task.key(), queued.task.cost())
}

impl GlobalQueue {
    /// Unbounded (`queue_bound` limits what `submit` accepts, see `push_global`).
    pub(crate) fn new(aging: Option<AgingPolicy>, fair: Option<FairShare>) -> Self {
        match fair {
            None => {
                let mut queue = PriorityQueue::new();
                queue.set_aging(aging);
                GlobalQueue::Strict(queue)
            }
            Some(share) => {
                let mut queue = FairQueue::new(share, fair_key);
                queue.set_aging(aging);
                GlobalQueue::Fair(Box::new(queue))
            }
        }
    }

    /// The refusal is boxed: it never happens on this unbounded queue.
    pub(crate) fn push(
        &mut self,
        queued: Queued,
        priority: Priority,
    ) -> Result<(), Box<QueueFull<Queued>>> {
        match self {
            GlobalQueue::Strict(q) => q.push(queued, priority),
            GlobalQueue::Fair(q) => q.push(queued, priority),
        }
        .map_err(Box::new)
    }

    pub(crate) fn pop(&mut self) -> Option<(Queued, Priority)> {
        match self {
            GlobalQueue::Strict(q) => q.pop(),
            GlobalQueue::Fair(q) => q.pop(),
        }
    }

    pub(crate) fn peek(&self) -> Option<(&Queued, Priority)> {
        match self {
            GlobalQueue::Strict(q) => q.peek(),
            GlobalQueue::Fair(q) => q.peek(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            GlobalQueue::Strict(q) => q.len(),
            GlobalQueue::Fair(q) => q.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        match self {
            GlobalQueue::Strict(q) => q.is_empty(),
            GlobalQueue::Fair(q) => q.is_empty(),
        }
    }

    /// In pop order.
    pub(crate) fn iter(&self) -> GlobalIter<'_> {
        match self {
            GlobalQueue::Strict(q) => GlobalIter::Strict(q.iter()),
            GlobalQueue::Fair(q) => GlobalIter::Fair(q.iter()),
        }
    }

    pub(crate) fn remove_first(
        &mut self,
        matches: impl FnMut(&Queued) -> bool,
    ) -> Option<(Queued, Priority)> {
        match self {
            GlobalQueue::Strict(q) => q.remove_first(matches),
            GlobalQueue::Fair(q) => q.remove_first(matches),
        }
    }
}

pub(crate) enum GlobalIter<'a> {
    Strict(Iter<'a, Queued>),
    Fair(FairIter<'a, Queued>),
}

impl<'a> Iterator for GlobalIter<'a> {
    type Item = (&'a Queued, Priority);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            GlobalIter::Strict(i) => i.next(),
            GlobalIter::Fair(i) => i.next(),
        }
    }
}
