//! One agent's local queue: a [`PriorityQueue`] of items tagged pinned or not,
//! with a count of the stealable (unpinned) ones.
//!
//! Every use of `swarm_queue` sits in this module. Local queues never use aging,
//! so the queue's level order (most urgent level first, FIFO within a level) is
//! its pop order.

use swarm_core::Priority;
use swarm_queue::PriorityQueue;

#[derive(Debug)]
struct Entry<T> {
    item: T,
    pinned: bool,
}

#[derive(Debug)]
pub(crate) struct LocalQueue<T> {
    queue: PriorityQueue<Entry<T>>,
    stealable: usize,
}

impl<T> LocalQueue<T> {
    pub(crate) const fn new() -> Self {
        LocalQueue {
            queue: PriorityQueue::new(),
            stealable: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Unpinned items: the ones a thief or the balancer may move.
    pub(crate) fn stealable(&self) -> usize {
        self.stealable
    }

    pub(crate) fn push(&mut self, item: T, priority: Priority, pinned: bool) {
        if self.queue.push(Entry { item, pinned }, priority).is_err() {
            // Local queues are created unbounded (`PriorityQueue::new`), so a push
            // cannot be refused; reaching this is a bug in this module.
            unreachable!("local queues are unbounded");
        }
        if !pinned {
            self.stealable += 1;
        }
    }

    pub(crate) fn pop(&mut self) -> Option<(T, Priority)> {
        let (entry, priority) = self.queue.pop()?;
        self.forget(&entry);
        Some((entry.item, priority))
    }

    /// Pops the head only if `take` accepts it.
    pub(crate) fn pop_if(
        &mut self,
        take: impl FnOnce(&T, Priority) -> bool,
    ) -> Option<(T, Priority)> {
        let (entry, priority) = self.queue.peek()?;
        if take(&entry.item, priority) {
            self.pop()
        } else {
            None
        }
    }

    pub(crate) fn peek(&self) -> Option<(&T, Priority)> {
        self.queue.peek().map(|(entry, p)| (&entry.item, p))
    }

    /// Calls `f` on the first `n` stealable items in pop order, moving nothing
    /// (so a panic in `f` leaves the queue as it was).
    pub(crate) fn map_stealable<U>(
        &self,
        n: usize,
        mut f: impl FnMut(&T, Priority) -> U,
    ) -> Vec<U> {
        self.queue
            .iter()
            .filter(|(entry, _)| !entry.pinned)
            .take(n)
            .map(|(entry, p)| f(&entry.item, p))
            .collect()
    }

    /// Moves the first `n` stealable items to the back of their levels in `to`,
    /// as stealable items. Returns how many moved.
    pub(crate) fn move_stealable(&mut self, n: usize, to: &mut LocalQueue<T>) -> usize {
        let taken = self.queue.take_where(n, |entry| !entry.pinned);
        let count = taken.len();
        self.stealable -= count;
        to.stealable += count;
        for (entry, priority) in taken {
            // Moved entries are unpinned already and keep their tag.
            if to.queue.push(entry, priority).is_err() {
                unreachable!("local queues are unbounded");
            }
        }
        count
    }

    /// Removes every item `remove` selects, in pop order. `remove` sees every
    /// item before anything moves.
    pub(crate) fn remove_where(
        &mut self,
        mut remove: impl FnMut(&T) -> bool,
    ) -> Vec<(T, Priority)> {
        let removed = self.queue.remove_where(|entry| remove(&entry.item));
        removed
            .into_iter()
            .map(|(entry, p)| {
                self.forget(&entry);
                (entry.item, p)
            })
            .collect()
    }

    /// Removes the first item (pop order) that `matches` selects.
    pub(crate) fn remove_first(
        &mut self,
        mut matches: impl FnMut(&T) -> bool,
    ) -> Option<(T, Priority)> {
        let (entry, priority) = self.queue.remove_first(|entry| matches(&entry.item))?;
        self.forget(&entry);
        Some((entry.item, priority))
    }

    /// Every item, in pop order.
    pub(crate) fn drain(&mut self) -> Vec<(T, Priority)> {
        self.stealable = 0;
        self.queue
            .drain()
            .map(|(entry, p)| (entry.item, p))
            .collect()
    }

    /// Every item with its priority and pinned flag, in pop order.
    pub(crate) fn items(&self) -> Vec<(T, Priority, bool)>
    where
        T: Clone,
    {
        self.queue
            .iter()
            .map(|(entry, p)| (entry.item.clone(), p, entry.pinned))
            .collect()
    }

    fn forget(&mut self, entry: &Entry<T>) {
        if !entry.pinned {
            self.stealable -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn move_stealable_skips_pinned_and_keeps_order() {
        let mut q = LocalQueue::new();
        q.push(1, Priority::Low, false);
        q.push(2, Priority::High, true);
        q.push(3, Priority::High, false);
        q.push(4, Priority::Critical, false);
        q.push(5, Priority::Normal, true);
        assert_eq!(q.stealable(), 3);
        assert_eq!(q.map_stealable(2, |i, _| *i), vec![4, 3]);
        let mut thief = LocalQueue::new();
        thief.push(9, Priority::Low, true);
        assert_eq!(q.move_stealable(2, &mut thief), 2);
        assert_eq!(
            thief.items(),
            vec![
                (4, Priority::Critical, false),
                (3, Priority::High, false),
                (9, Priority::Low, true)
            ]
        );
        assert_eq!((q.stealable(), thief.stealable()), (1, 2));
        assert_eq!(
            q.items(),
            vec![
                (2, Priority::High, true),
                (5, Priority::Normal, true),
                (1, Priority::Low, false)
            ]
        );
    }

    #[test]
    fn removals_keep_the_stealable_count() {
        let mut q = LocalQueue::new();
        for i in 0..6 {
            q.push(i, Priority::Normal, i % 2 == 0);
        }
        assert_eq!(q.stealable(), 3);
        assert_eq!(q.remove_where(|i| *i < 2).len(), 2);
        assert_eq!(q.stealable(), 2);
        assert_eq!(q.remove_first(|i| *i == 3), Some((3, Priority::Normal)));
        assert_eq!(q.stealable(), 1);
        assert_eq!(q.pop_if(|_, p| p > Priority::Normal), None);
        assert_eq!(q.pop(), Some((2, Priority::Normal)));
        assert_eq!(q.stealable(), 1);
        assert_eq!(q.drain().len(), 2);
        assert_eq!((q.len(), q.stealable()), (0, 0));
    }
}
