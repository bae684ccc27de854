//! [`PriorityQueue`]: four FIFO levels, bounded, with opt-in aging.

use std::collections::VecDeque;
use std::fmt;
use std::iter::FusedIterator;

use crate::Priority;
use crate::aging::{Aging, AgingPolicy, select_strict};
use crate::error::QueueFull;

const LEVELS: usize = Priority::LEVELS;

/// A snapshot of a queue's contents and counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct QueueStats {
    /// Items queued, all levels.
    pub len: usize,
    /// Items queued per level, indexed by [`Priority::level`] (0 = `Critical`).
    pub by_level: [usize; LEVELS],
    /// Pushes refused with [`QueueFull`] since the queue was created.
    pub rejected: u64,
    /// Pops that aging sent to a less urgent level than the most urgent non-empty one.
    pub promoted: u64,
}

impl QueueStats {
    /// Items queued at `priority`.
    pub fn queued(&self, priority: Priority) -> usize {
        self.by_level[priority.level()]
    }
}

/// A priority queue with four levels (`Critical`, `High`, `Normal`, `Low`),
/// FIFO within a level, O(1) `push` and `pop`, optionally bounded.
///
/// Pop order is strict by default: the most urgent non-empty level first,
/// oldest first within it. [`with_aging`](Self::with_aging) bounds how long a
/// less urgent task can be overtaken (see [`AgingPolicy`]).
///
/// Each level is a `VecDeque<T>`, so an item costs `size_of::<T>()` plus the
/// deque's spare capacity (at most doubling): no per-item header, no sequence
/// number. [`heap_bytes`](Self::heap_bytes) reports the allocation.
///
/// ```
/// use swarm_queue::{Priority, PriorityQueue};
///
/// let mut queue = PriorityQueue::bounded(3);
/// queue.push("tidy up", Priority::Low)?;
/// queue.push("page on-call", Priority::Critical)?;
/// queue.push("answer mail", Priority::Normal)?;
///
/// // Full: the item comes back, nothing is dropped.
/// let refused = queue.push("later", Priority::High).unwrap_err();
/// assert_eq!(refused.into_inner(), "later");
///
/// assert_eq!(queue.peek(), Some((&"page on-call", Priority::Critical)));
/// let order: Vec<_> = queue.drain().collect();
/// assert_eq!(
///     order,
///     [("page on-call", Priority::Critical), ("answer mail", Priority::Normal), ("tidy up", Priority::Low)]
/// );
/// # Ok::<(), swarm_queue::QueueFull<&str>>(())
/// ```
#[derive(Clone)]
pub struct PriorityQueue<T> {
    levels: [VecDeque<T>; LEVELS],
    capacity: Option<usize>,
    aging: Option<Aging>,
    rejected: u64,
    promoted: u64,
}

impl<T> Default for PriorityQueue<T> {
    fn default() -> Self {
        PriorityQueue::new()
    }
}

impl<T> fmt::Debug for PriorityQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PriorityQueue")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .field("aging", &self.aging.map(|a| a.policy))
            .finish_non_exhaustive()
    }
}

impl<T> PriorityQueue<T> {
    /// An unbounded, strict queue. Allocates nothing until the first push.
    pub const fn new() -> Self {
        PriorityQueue {
            levels: [
                VecDeque::new(),
                VecDeque::new(),
                VecDeque::new(),
                VecDeque::new(),
            ],
            capacity: None,
            aging: None,
            rejected: 0,
            promoted: 0,
        }
    }

    /// A queue that holds at most `capacity` items, all levels together.
    ///
    /// Memory grows with use, not with `capacity`. A capacity of 0 refuses every push.
    pub const fn bounded(capacity: usize) -> Self {
        let mut queue = PriorityQueue::new();
        queue.capacity = Some(capacity);
        queue
    }

    /// Turns on aging with `policy` (see [`AgingPolicy`] for the bound).
    pub fn with_aging(mut self, policy: AgingPolicy) -> Self {
        self.set_aging(Some(policy));
        self
    }

    /// Turns aging on (`Some`) or off (`None`). Counters restart from zero.
    pub fn set_aging(&mut self, policy: Option<AgingPolicy>) {
        self.aging = policy.map(Aging::new);
    }

    /// The aging policy, if aging is on.
    pub fn aging(&self) -> Option<AgingPolicy> {
        self.aging.map(|a| a.policy)
    }

    /// Queues `item` at the back of its level, or hands it back when the queue is full.
    pub fn push(&mut self, item: T, priority: Priority) -> Result<(), QueueFull<T>> {
        if self.is_full() {
            self.rejected += 1;
            return Err(QueueFull::new(item, priority));
        }
        let level = priority.level();
        let deque = &mut self.levels[level];
        if deque.is_empty() {
            if let Some(aging) = &mut self.aging {
                // A new front task starts with a fresh budget.
                aging.overtaken[level] = 0;
            }
        }
        deque.push_back(item);
        Ok(())
    }

    /// Removes the next item: the most urgent level's oldest item, unless aging
    /// sends this pop to a waiting less urgent level.
    pub fn pop(&mut self) -> Option<(T, Priority)> {
        let level = match &self.aging {
            None => select_strict(self.non_empty())?,
            Some(aging) => {
                let non_empty = self.non_empty();
                let level = aging.select(non_empty)?;
                if Some(level) != select_strict(non_empty) {
                    self.promoted += 1;
                }
                level
            }
        };
        let item = self.levels[level].pop_front()?;
        if self.aging.is_some() {
            let non_empty = self.non_empty();
            if let Some(aging) = &mut self.aging {
                aging.record_pop(level, non_empty);
            }
        }
        Some((item, level_priority(level)))
    }

    /// The item the next [`pop`](Self::pop) returns.
    pub fn peek(&self) -> Option<(&T, Priority)> {
        let level = self.next_level()?;
        self.levels[level]
            .front()
            .map(|item| (item, level_priority(level)))
    }

    /// Items queued, all levels.
    pub fn len(&self) -> usize {
        self.levels.iter().map(VecDeque::len).sum()
    }

    /// Items queued at `priority`.
    pub fn len_of(&self, priority: Priority) -> usize {
        self.levels[priority.level()].len()
    }

    /// Whether no item is queued.
    pub fn is_empty(&self) -> bool {
        self.levels.iter().all(VecDeque::is_empty)
    }

    /// Whether a push would be refused.
    pub fn is_full(&self) -> bool {
        self.capacity.is_some_and(|cap| self.len() >= cap)
    }

    /// The bound on the number of items, `None` when unbounded.
    pub fn capacity(&self) -> Option<usize> {
        self.capacity
    }

    /// Counts per level and lifetime counters.
    pub fn stats(&self) -> QueueStats {
        let by_level = [
            self.levels[0].len(),
            self.levels[1].len(),
            self.levels[2].len(),
            self.levels[3].len(),
        ];
        QueueStats {
            len: by_level.iter().sum(),
            by_level,
            rejected: self.rejected,
            promoted: self.promoted,
        }
    }

    /// Bytes allocated for items (spare capacity included), not counting the
    /// queue value itself (`size_of::<PriorityQueue<T>>()`).
    pub fn heap_bytes(&self) -> usize {
        self.levels
            .iter()
            .map(|d| d.capacity().saturating_mul(size_of::<T>()))
            .sum()
    }

    /// Gives spare capacity back to the allocator (after a burst).
    pub fn shrink_to_fit(&mut self) {
        self.levels.iter_mut().for_each(VecDeque::shrink_to_fit);
    }

    /// Removes every item (not counted as pops).
    pub fn clear(&mut self) {
        self.levels.iter_mut().for_each(VecDeque::clear);
    }

    /// The items in pop order, by reference, without removing them.
    ///
    /// With aging this replays the aging rule, so the order is exactly the order
    /// of successive pops if nothing is pushed in between.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            levels: &self.levels,
            next: [0; LEVELS],
            aging: self.aging,
            remaining: self.len(),
        }
    }

    /// Removes and yields every item in pop order (as successive pops would).
    /// Items not consumed when the iterator is dropped are removed too.
    pub fn drain(&mut self) -> Drain<'_, T> {
        Drain { queue: self }
    }

    /// Keeps only the items for which `keep` returns `true`; the others are dropped.
    ///
    /// `keep` sees every item once, most urgent level first, oldest first within
    /// a level. Kept items keep their order. Use [`remove_where`](Self::remove_where)
    /// to get the removed items back.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        for deque in &mut self.levels {
            deque.retain(|item| keep(item));
        }
    }

    /// Removes and returns every item for which `remove` returns `true`, in
    /// level order (most urgent level first, FIFO within a level). The rest keep
    /// their order. For cancellation and for re-queueing a failed agent's tasks.
    ///
    /// `remove` is called on every item before anything moves, so if it panics
    /// the queue is unchanged.
    pub fn remove_where(&mut self, remove: impl FnMut(&T) -> bool) -> Vec<(T, Priority)> {
        self.take_where(usize::MAX, remove)
    }

    /// Removes and returns the first `max` items (in level order: most urgent
    /// level first, FIFO within a level) for which `take` returns `true`. The
    /// rest keep their order. For stealing: `queue.take_where(n, |t| !t.pinned())`.
    ///
    /// Level order equals pop order when aging is off. Costs O(position of the
    /// last item taken in its level) per level, O(n) when the items taken are at
    /// the front. `take` runs before anything moves, so a panic in it leaves the
    /// queue unchanged.
    pub fn take_where(
        &mut self,
        max: usize,
        mut take: impl FnMut(&T) -> bool,
    ) -> Vec<(T, Priority)> {
        let mut picked: [Vec<usize>; LEVELS] = Default::default();
        let mut budget = max;
        for (deque, picked) in self.levels.iter().zip(&mut picked) {
            if budget == 0 {
                break;
            }
            for (index, item) in deque.iter().enumerate() {
                if budget == 0 {
                    break;
                }
                if take(item) {
                    picked.push(index);
                    budget -= 1;
                }
            }
        }
        let mut out = Vec::with_capacity(max - budget);
        for (level, indices) in picked.iter().enumerate() {
            extract(
                &mut self.levels[level],
                indices,
                level_priority(level),
                &mut out,
            );
        }
        out
    }

    /// Removes and returns the first `n` items in level order (all of them if
    /// fewer are queued). Equal to pop order when aging is off.
    pub fn take_front(&mut self, n: usize) -> Vec<(T, Priority)> {
        let mut out = Vec::with_capacity(n.min(self.len()));
        let mut budget = n;
        for (level, deque) in self.levels.iter_mut().enumerate() {
            let count = budget.min(deque.len());
            out.extend(
                deque
                    .drain(..count)
                    .map(|item| (item, level_priority(level))),
            );
            budget -= count;
        }
        out
    }

    /// Removes and returns the first item (level order) for which `matches`
    /// returns `true`, e.g. to cancel one task by id. Stops at the first match.
    pub fn remove_first(&mut self, mut matches: impl FnMut(&T) -> bool) -> Option<(T, Priority)> {
        for (level, deque) in self.levels.iter_mut().enumerate() {
            if let Some(index) = deque.iter().position(&mut matches) {
                return deque
                    .remove(index)
                    .map(|item| (item, level_priority(level)));
            }
        }
        None
    }

    fn non_empty(&self) -> [bool; LEVELS] {
        [
            !self.levels[0].is_empty(),
            !self.levels[1].is_empty(),
            !self.levels[2].is_empty(),
            !self.levels[3].is_empty(),
        ]
    }

    fn next_level(&self) -> Option<usize> {
        match &self.aging {
            None => select_strict(self.non_empty()),
            Some(aging) => aging.select(self.non_empty()),
        }
    }
}

/// Moves the items at the sorted `indices` of `deque` into `out`, keeping the
/// order of both. Runs no user code, so it cannot be interrupted by a panic.
pub(crate) fn extract<T>(
    deque: &mut VecDeque<T>,
    indices: &[usize],
    priority: Priority,
    out: &mut Vec<(T, Priority)>,
) {
    let Some(&last) = indices.last() else {
        return;
    };
    if last + 1 == indices.len() {
        // A prefix: the common case when stealing or cancelling from the front.
        out.extend(deque.drain(..indices.len()).map(|item| (item, priority)));
        return;
    }
    let len = deque.len();
    let end = last + 1;
    let mut wanted = indices.iter().peekable();
    for index in 0..end {
        let Some(item) = deque.pop_front() else {
            break;
        };
        if wanted.next_if_eq(&&index).is_some() {
            out.push((item, priority));
        } else {
            deque.push_back(item);
        }
    }
    // The deque is now [untouched tail, kept head]; put the head back in front.
    deque.rotate_left(len - end);
}

pub(crate) fn level_priority(level: usize) -> Priority {
    Priority::from_level(level).unwrap_or(Priority::Low)
}

/// Borrowing iterator over a [`PriorityQueue`] in pop order; see [`PriorityQueue::iter`].
#[derive(Debug)]
pub struct Iter<'a, T> {
    levels: &'a [VecDeque<T>; LEVELS],
    next: [usize; LEVELS],
    aging: Option<Aging>,
    remaining: usize,
}

impl<T> Clone for Iter<'_, T> {
    fn clone(&self) -> Self {
        Iter { ..*self }
    }
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = (&'a T, Priority);

    fn next(&mut self) -> Option<Self::Item> {
        let non_empty = |next: &[usize; LEVELS]| {
            let mut n = [false; LEVELS];
            for (level, flag) in n.iter_mut().enumerate() {
                *flag = next[level] < self.levels[level].len();
            }
            n
        };
        let level = match &self.aging {
            None => select_strict(non_empty(&self.next))?,
            Some(aging) => aging.select(non_empty(&self.next))?,
        };
        let item = self.levels[level].get(self.next[level])?;
        self.next[level] += 1;
        self.remaining -= 1;
        let after = non_empty(&self.next);
        if let Some(aging) = &mut self.aging {
            aging.record_pop(level, after);
        }
        Some((item, level_priority(level)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<T> ExactSizeIterator for Iter<'_, T> {}
impl<T> FusedIterator for Iter<'_, T> {}

impl<'a, T> IntoIterator for &'a PriorityQueue<T> {
    type Item = (&'a T, Priority);
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

/// Draining iterator in pop order; see [`PriorityQueue::drain`].
#[derive(Debug)]
pub struct Drain<'a, T> {
    queue: &'a mut PriorityQueue<T>,
}

impl<T> Iterator for Drain<'_, T> {
    type Item = (T, Priority);

    fn next(&mut self) -> Option<Self::Item> {
        self.queue.pop()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = self.queue.len();
        (len, Some(len))
    }
}

impl<T> ExactSizeIterator for Drain<'_, T> {}
impl<T> FusedIterator for Drain<'_, T> {}

impl<T> Drop for Drain<'_, T> {
    fn drop(&mut self) {
        self.queue.clear();
    }
}

/// Owning iterator in pop order.
#[derive(Debug, Clone)]
pub struct IntoIter<T> {
    queue: PriorityQueue<T>,
}

impl<T> Iterator for IntoIter<T> {
    type Item = (T, Priority);

    fn next(&mut self) -> Option<Self::Item> {
        self.queue.pop()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = self.queue.len();
        (len, Some(len))
    }
}

impl<T> ExactSizeIterator for IntoIter<T> {}
impl<T> FusedIterator for IntoIter<T> {}

impl<T> IntoIterator for PriorityQueue<T> {
    type Item = (T, Priority);
    type IntoIter = IntoIter<T>;

    fn into_iter(self) -> IntoIter<T> {
        IntoIter { queue: self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_order_is_level_then_fifo() {
        let mut q = PriorityQueue::new();
        q.push(1, Priority::Low).unwrap();
        q.push(2, Priority::Normal).unwrap();
        q.push(3, Priority::Critical).unwrap();
        q.push(4, Priority::Normal).unwrap();
        q.push(5, Priority::High).unwrap();
        let ids: Vec<_> = q.iter().map(|(i, _)| *i).collect();
        assert_eq!(ids, [3, 5, 2, 4, 1]);
        let popped: Vec<_> = q.drain().map(|(i, _)| i).collect();
        assert_eq!(popped, ids);
        assert!(q.is_empty());
    }

    #[test]
    fn full_queue_hands_back_the_item_and_counts_it() {
        let mut q = PriorityQueue::bounded(1);
        q.push(String::from("a"), Priority::Low).unwrap();
        let err = q.push(String::from("b"), Priority::High).unwrap_err();
        assert_eq!(format!("{err:?}"), "QueueFull { priority: High, .. }");
        assert_eq!(err.into_parts(), (String::from("b"), Priority::High));
        assert_eq!(q.stats().rejected, 1);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn zero_capacity_refuses_everything() {
        let mut q = PriorityQueue::bounded(0);
        assert!(q.push(1, Priority::Critical).is_err());
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn take_where_keeps_the_rest_in_order() {
        let mut q = PriorityQueue::new();
        for i in 0..10 {
            q.push(
                i,
                if i % 2 == 0 {
                    Priority::High
                } else {
                    Priority::Low
                },
            )
            .unwrap();
        }
        let taken = q.take_where(3, |i| i % 4 != 0);
        assert_eq!(
            taken,
            [(2, Priority::High), (6, Priority::High), (1, Priority::Low)]
        );
        let rest: Vec<_> = q.drain().map(|(i, _)| i).collect();
        assert_eq!(rest, [0, 4, 8, 3, 5, 7, 9]);
    }

    #[test]
    fn take_where_panic_leaves_queue_unchanged() {
        let mut q = PriorityQueue::new();
        for i in 0..6 {
            q.push(i, Priority::Normal).unwrap();
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            q.take_where(10, |i| if *i == 4 { panic!("boom") } else { i % 2 == 0 })
        }));
        assert!(result.is_err());
        let rest: Vec<_> = q.drain().map(|(i, _)| i).collect();
        assert_eq!(rest, [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn remove_first_stops_at_the_first_match() {
        let mut q = PriorityQueue::new();
        q.push(7, Priority::Low).unwrap();
        q.push(7, Priority::High).unwrap();
        assert_eq!(q.remove_first(|i| *i == 7), Some((7, Priority::High)));
        assert_eq!(q.remove_first(|i| *i == 8), None);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn take_front_takes_in_level_order() {
        let mut q = PriorityQueue::new();
        for (i, p) in [(1, Priority::Low), (2, Priority::High), (3, Priority::High)] {
            q.push(i, p).unwrap();
        }
        assert_eq!(q.take_front(2), [(2, Priority::High), (3, Priority::High)]);
        assert_eq!(q.take_front(5), [(1, Priority::Low)]);
    }

    #[test]
    fn dropping_drain_empties_the_queue() {
        let mut q = PriorityQueue::new();
        for i in 0..5 {
            q.push(i, Priority::Normal).unwrap();
        }
        assert_eq!(q.drain().next(), Some((0, Priority::Normal)));
        assert!(q.is_empty());
    }
}
