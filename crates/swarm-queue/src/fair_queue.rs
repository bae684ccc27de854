//! [`FairQueue`]: the priority queue with fair share between keys.

use std::collections::VecDeque;
use std::fmt;
use std::iter::FusedIterator;

use crate::aging::{Aging, AgingPolicy, select_strict};
use crate::error::QueueFull;
use crate::fair::{FairLevel, FairShare, KeyOf, Turn, replay_pop};
use crate::priority_queue::{extract, level_priority};
use crate::{Priority, QueueStats};

const LEVELS: usize = Priority::LEVELS;

/// A [`PriorityQueue`](crate::PriorityQueue) whose levels are shared fairly
/// between keys (tenants): four levels, most urgent first, optional bound and
/// aging exactly as there, but within a level keys are served by weighted,
/// cost-aware deficit round robin instead of FIFO ([`FairShare`] states the
/// discipline and its bound). Within one key, items keep FIFO order; with one
/// key (or none) a level is FIFO.
///
/// Each item's key and cost are read from the item by `key_of`, so the queue
/// never disagrees with its items about them. A key's state (a deque and a
/// few words) exists only while the key has items queued.
///
/// A separate type rather than a mode of `PriorityQueue`, so the strict
/// queue's push and pop compile exactly as before: a mode check on their hot
/// path cost the strict queue 14% more instructions per push and pop
/// (callgrind, the `queue/push_pop` batch benchmark).
///
/// ```
/// use swarm_queue::{FairQueue, FairShare, Priority};
///
/// let mut queue = FairQueue::new(FairShare::default(), |item: &(&str, u32)| (Some(item.0), 1));
/// for i in 0..100 {
///     queue.push(("big", i), Priority::Normal)?;
/// }
/// queue.push(("small", 0), Priority::Normal)?;
/// queue.push(("big", 999), Priority::High)?;
///
/// // Priorities first; then the late small tenant is served second, not 101st.
/// let order: Vec<_> = queue.drain().take(3).map(|(item, _)| item).collect();
/// assert_eq!(order, [("big", 999), ("big", 0), ("small", 0)]);
/// # Ok::<(), swarm_queue::QueueFull<(&str, u32)>>(())
/// ```
#[derive(Clone)]
pub struct FairQueue<T> {
    share: FairShare,
    key_of: KeyOf<T>,
    levels: [FairLevel<T>; LEVELS],
    capacity: Option<usize>,
    aging: Option<Aging>,
    rejected: u64,
    promoted: u64,
}

impl<T> fmt::Debug for FairQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FairQueue")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .field("aging", &self.aging.map(|a| a.policy))
            .field("share", &self.share)
            .finish_non_exhaustive()
    }
}

impl<T> FairQueue<T> {
    /// An unbounded queue with fair share `share`; `key_of` reads an item's
    /// key and cost.
    pub fn new(share: FairShare, key_of: KeyOf<T>) -> Self {
        FairQueue {
            share,
            key_of,
            levels: Default::default(),
            capacity: None,
            aging: None,
            rejected: 0,
            promoted: 0,
        }
    }

    /// A queue that holds at most `capacity` items, all levels together.
    pub fn bounded(capacity: usize, share: FairShare, key_of: KeyOf<T>) -> Self {
        let mut queue = FairQueue::new(share, key_of);
        queue.capacity = Some(capacity);
        queue
    }

    /// Turns on aging across levels with `policy` (see [`AgingPolicy`]).
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

    /// The fair-share discipline.
    pub fn fair_share(&self) -> &FairShare {
        &self.share
    }

    /// Queues `item` in its key's flow at `priority`, or hands it back when
    /// the queue is full.
    pub fn push(&mut self, item: T, priority: Priority) -> Result<(), QueueFull<T>> {
        if self.is_full() {
            self.rejected += 1;
            return Err(QueueFull::new(item, priority));
        }
        let level = priority.level();
        if self.levels[level].is_empty() {
            if let Some(aging) = &mut self.aging {
                // A new front task starts with a fresh budget.
                aging.overtaken[level] = 0;
            }
        }
        self.levels[level].push(item, &self.share, self.key_of);
        Ok(())
    }

    /// Removes the next item: aging (if on) picks the level as in
    /// `PriorityQueue`, deficit round robin picks the key within it.
    pub fn pop(&mut self) -> Option<(T, Priority)> {
        let non_empty = self.non_empty();
        let level = match &self.aging {
            None => select_strict(non_empty)?,
            Some(aging) => {
                let level = aging.select(non_empty)?;
                if Some(level) != select_strict(non_empty) {
                    self.promoted += 1;
                }
                level
            }
        };
        let item = self.levels[level].pop(self.key_of)?;
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
        let non_empty = self.non_empty();
        let level = match &self.aging {
            None => select_strict(non_empty)?,
            Some(aging) => aging.select(non_empty)?,
        };
        self.levels[level]
            .front()
            .map(|item| (item, level_priority(level)))
    }

    /// Items queued, all levels.
    pub fn len(&self) -> usize {
        self.levels.iter().map(FairLevel::len).sum()
    }

    /// Items queued at `priority`.
    pub fn len_of(&self, priority: Priority) -> usize {
        self.levels[priority.level()].len()
    }

    /// Keys with items queued at `priority`.
    pub fn active_keys(&self, priority: Priority) -> usize {
        self.levels[priority.level()].active_keys()
    }

    /// Whether no item is queued.
    pub fn is_empty(&self) -> bool {
        self.levels.iter().all(FairLevel::is_empty)
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
        let by_level = Priority::ALL.map(|p| self.len_of(p));
        QueueStats {
            len: by_level.iter().sum(),
            by_level,
            rejected: self.rejected,
            promoted: self.promoted,
        }
    }

    /// Bytes allocated for items and per-key state (spare capacity included),
    /// not counting the queue value itself or the key index's hash table.
    pub fn heap_bytes(&self) -> usize {
        self.levels.iter().map(FairLevel::heap_bytes).sum()
    }

    /// Gives spare capacity back to the allocator (after a burst).
    pub fn shrink_to_fit(&mut self) {
        self.levels.iter_mut().for_each(FairLevel::shrink_to_fit);
    }

    /// Removes every item (not counted as pops).
    pub fn clear(&mut self) {
        self.levels.iter_mut().for_each(FairLevel::clear);
    }

    /// The items in pop order, by reference, without removing them: the
    /// order of successive pops if nothing is pushed in between (the round
    /// robin and aging are replayed on a copy of their state, O(keys) to start).
    pub fn iter(&self) -> FairIter<'_, T> {
        FairIter {
            levels: &self.levels,
            rounds: Box::new(self.levels.each_ref().map(|l| l.round.clone())),
            key_of: self.key_of,
            aging: self.aging,
            remaining: self.len(),
        }
    }

    /// Removes and yields every item in pop order (as successive pops would).
    /// Items not consumed when the iterator is dropped are removed too.
    pub fn drain(&mut self) -> FairDrain<'_, T> {
        FairDrain { queue: self }
    }

    /// Keeps only the items for which `keep` returns `true`; the others are
    /// dropped. Kept items keep their order within their key.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        for level in &mut self.levels {
            level.retain(&mut keep, self.key_of);
        }
    }

    /// Removes and returns every item for which `remove` returns `true`, in
    /// level order: most urgent level first, within a level the keys in round
    /// order (the one being served first), FIFO within a key. `remove` runs on
    /// every item before anything moves.
    pub fn remove_where(&mut self, remove: impl FnMut(&T) -> bool) -> Vec<(T, Priority)> {
        self.take_where(usize::MAX, remove)
    }

    /// Removes and returns the first `max` items, in level order (see
    /// [`remove_where`](Self::remove_where)), for which `take` returns `true`.
    /// `take` runs before anything moves, so a panic in it leaves the queue
    /// unchanged.
    pub fn take_where(
        &mut self,
        max: usize,
        mut take: impl FnMut(&T) -> bool,
    ) -> Vec<(T, Priority)> {
        let mut budget = max;
        let picked: Vec<_> = self
            .levels
            .iter()
            .map(|level| level.pick(&mut budget, &mut take))
            .collect();
        let mut out = Vec::with_capacity(max - budget);
        for (index, (level, picked)) in self.levels.iter_mut().zip(&picked).enumerate() {
            let priority = level_priority(index);
            level.extract(picked, self.key_of, |deque, indices| {
                extract(deque, indices, priority, &mut out)
            });
        }
        out
    }

    /// Removes and returns the first `n` items in level order.
    pub fn take_front(&mut self, n: usize) -> Vec<(T, Priority)> {
        self.take_where(n, |_| true)
    }

    /// Removes and returns the first item (level order) for which `matches`
    /// returns `true`, e.g. to cancel one task by id.
    pub fn remove_first(&mut self, matches: impl FnMut(&T) -> bool) -> Option<(T, Priority)> {
        self.take_where(1, matches).pop()
    }

    fn non_empty(&self) -> [bool; LEVELS] {
        [
            !self.levels[0].is_empty(),
            !self.levels[1].is_empty(),
            !self.levels[2].is_empty(),
            !self.levels[3].is_empty(),
        ]
    }
}

/// Borrowing iterator over a [`FairQueue`] in pop order; see [`FairQueue::iter`].
pub struct FairIter<'a, T> {
    levels: &'a [FairLevel<T>; LEVELS],
    /// A copy of each level's round, replayed as pops would advance it.
    rounds: Box<[VecDeque<Turn>; LEVELS]>,
    key_of: KeyOf<T>,
    aging: Option<Aging>,
    remaining: usize,
}

impl<T> fmt::Debug for FairIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FairIter")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl<T> Clone for FairIter<'_, T> {
    fn clone(&self) -> Self {
        FairIter {
            levels: self.levels,
            rounds: self.rounds.clone(),
            key_of: self.key_of,
            aging: self.aging,
            remaining: self.remaining,
        }
    }
}

impl<'a, T> Iterator for FairIter<'a, T> {
    type Item = (&'a T, Priority);

    fn next(&mut self) -> Option<Self::Item> {
        let non_empty =
            |rounds: &[VecDeque<Turn>; LEVELS]| rounds.each_ref().map(|r| !r.is_empty());
        let level = match &self.aging {
            None => select_strict(non_empty(&self.rounds))?,
            Some(aging) => aging.select(non_empty(&self.rounds))?,
        };
        let item = replay_pop(
            &mut self.rounds[level],
            &self.levels[level].flows,
            self.key_of,
        )?;
        self.remaining -= 1;
        let after = non_empty(&self.rounds);
        if let Some(aging) = &mut self.aging {
            aging.record_pop(level, after);
        }
        Some((item, level_priority(level)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<T> ExactSizeIterator for FairIter<'_, T> {}
impl<T> FusedIterator for FairIter<'_, T> {}

impl<'a, T> IntoIterator for &'a FairQueue<T> {
    type Item = (&'a T, Priority);
    type IntoIter = FairIter<'a, T>;

    fn into_iter(self) -> FairIter<'a, T> {
        self.iter()
    }
}

/// Draining iterator in pop order; see [`FairQueue::drain`].
#[derive(Debug)]
pub struct FairDrain<'a, T> {
    queue: &'a mut FairQueue<T>,
}

impl<T> Iterator for FairDrain<'_, T> {
    type Item = (T, Priority);

    fn next(&mut self) -> Option<Self::Item> {
        self.queue.pop()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = self.queue.len();
        (len, Some(len))
    }
}

impl<T> ExactSizeIterator for FairDrain<'_, T> {}
impl<T> FusedIterator for FairDrain<'_, T> {}

impl<T> Drop for FairDrain<'_, T> {
    fn drop(&mut self) {
        self.queue.clear();
    }
}
