//! [`StealPool`]: one local priority queue per agent, steal-half and rebalancing.
//!
//! # Locking
//!
//! - The registry is a `parking_lot::RwLock<BTreeMap<AgentId, Worker>>`. Every
//!   operation holds it for its whole (short) duration: shared by
//!   push/pop/steal/rebalance/remove, exclusive only by `register` and
//!   `deregister`. So no queue can disappear while items are in flight between
//!   two queues, and `deregister` sees every item.
//! - Each worker's queue is behind its own `parking_lot::Mutex`, held only for
//!   the queue operation itself; no lock is ever held when a method returns, so
//!   none can be held across an `.await` by a caller.
//! - Lock order: registry first, then worker mutexes in ascending [`AgentId`]
//!   order. A steal locks exactly two (thief and victim, lower id first);
//!   `rebalance` and `remove_where` lock all of them in ascending order. Because
//!   every path that holds more than one worker lock takes them in the same
//!   global order, no cycle, hence no deadlock, is possible.
//! - Each worker also publishes its length and stealable length in atomics after
//!   every change (under its lock). They are hints, read without locks to choose
//!   a victim; the choice is re-checked under the locks before anything moves.
//!   Correctness never depends on them.
//!
//! The registry is a `BTreeMap` rather than a `HashMap`: iteration in ascending
//! id order is the lock order, ties break by lowest id deterministically, and
//! for the tens of agents a pool has, a few comparisons cost less than hashing.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use parking_lot::{Mutex, MutexGuard, RwLock};
use swarm_core::{AgentId, Priority};

use crate::error::UnknownAgent;
use crate::local::LocalQueue;
use crate::stats::{Counters, StealStats};

/// The default steal threshold: a victim must have more than 3 stealable items.
pub const DEFAULT_STEAL_THRESHOLD: usize = 3;

// A thief re-checks its victim under the locks; if another thread got there
// first it picks again, a few times at most, then gives up (the caller retries
// on its next event, never in a loop).
const STEAL_ATTEMPTS: usize = 4;

/// One move of items between two local queues, by [`StealPool::steal_half`] or
/// [`StealPool::rebalance`]. The scheduler turns it into a `work:stolen` event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stolen {
    /// The agent the items were taken from (the victim, or the donor when rebalancing).
    pub from: AgentId,
    /// The agent they were given to (the thief, or the recipient).
    pub to: AgentId,
    /// How many items moved (at least 1).
    pub count: usize,
}

struct Worker<T> {
    queue: Mutex<LocalQueue<T>>,
    // Hints, written under `queue`'s lock after each change, read without it.
    len: AtomicUsize,
    stealable: AtomicUsize,
}

impl<T> Worker<T> {
    fn new() -> Self {
        Worker {
            queue: Mutex::new(LocalQueue::new()),
            len: AtomicUsize::new(0),
            stealable: AtomicUsize::new(0),
        }
    }

    fn publish(&self, queue: &LocalQueue<T>) {
        self.len.store(queue.len(), Ordering::Relaxed);
        self.stealable.store(queue.stealable(), Ordering::Relaxed);
    }

    fn hints(&self) -> (usize, usize) {
        (
            self.len.load(Ordering::Relaxed),
            self.stealable.load(Ordering::Relaxed),
        )
    }
}

type Registry<T> = BTreeMap<AgentId, CachePadded<Worker<T>>>;

/// Per-agent local priority queues with work stealing.
///
/// Each registered agent owns a local [`PriorityQueue`](swarm_queue::PriorityQueue)
/// (four levels, FIFO within a level). Items are pushed *pinned* (they never
/// leave that queue except by `pop_local`, `deregister` or a removal) or
/// *stealable*. An agent whose queue is empty calls [`steal_half`](Self::steal_half)
/// to take half of the stealable items of the busiest agent, most urgent first;
/// [`rebalance`](Self::rebalance) evens out queues on demand. Nothing here runs
/// on a timer: the caller calls these on events (an agent goes idle, a push
/// creates imbalance).
///
/// # Concurrency
///
/// All methods take `&self` and are safe to call from many threads or tasks at
/// once: share the pool in an `Arc`. Each local queue has its own
/// `parking_lot::Mutex`, the registry of queues a `parking_lot::RwLock`
/// (exclusive only in `register`/`deregister`). Locks are held only inside a
/// call, never when it returns, so never across an `.await`.
///
/// Lock order: the registry first, then queue locks in ascending [`AgentId`]
/// order. A steal locks the thief's and the victim's queues (lower id first)
/// and moves the items while holding both, so a steal is atomic: the "thief is
/// empty" check, the victim's threshold check and the move happen together.
/// `rebalance`, `remove_where` and `remove_first` lock every queue, in the same
/// order. Each queue also publishes its length and stealable length in atomics;
/// they only guide the choice of a victim, which is re-checked under the locks.
///
/// The closures given to `steal_half_with`, `rebalance_with`, `remove_where`,
/// `remove_first`, `pop_local_if` and `peek_local_with` run while queues are
/// locked: they must be quick and must not call into the same pool (that would
/// deadlock).
///
/// ```
/// use swarm_core::{AgentId, Priority};
/// use swarm_steal::{StealPool, Stolen};
///
/// let pool = StealPool::new(3);
/// let (busy, idle) = (AgentId::new(0), AgentId::new(1));
/// pool.register(busy);
/// pool.register(idle);
/// for i in 0..8 {
///     pool.push_local(busy, i, Priority::Normal, false)?;
/// }
/// pool.push_local(busy, 100, Priority::Critical, true)?; // pinned: never moves
///
/// let stolen = pool.steal_half(idle).unwrap();
/// assert_eq!(stolen, Stolen { from: busy, to: idle, count: 4 });
/// assert_eq!(pool.pop_local(idle), Some((0, Priority::Normal)));
/// assert_eq!(pool.pop_local(busy), Some((100, Priority::Critical)));
/// assert_eq!(pool.pop_local(busy), Some((4, Priority::Normal)));
/// assert_eq!(pool.stats().stolen, 4);
/// # Ok::<(), swarm_steal::UnknownAgent<i32>>(())
/// ```
pub struct StealPool<T> {
    threshold: usize,
    workers: RwLock<Registry<T>>,
    counters: CachePadded<Counters>,
}

impl<T> Default for StealPool<T> {
    /// A pool with the [default threshold](DEFAULT_STEAL_THRESHOLD) of 3.
    fn default() -> Self {
        StealPool::new(DEFAULT_STEAL_THRESHOLD)
    }
}

impl<T> fmt::Debug for StealPool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StealPool")
            .field("threshold", &self.threshold)
            .field("agents", &self.agent_count())
            .field("total_len", &self.total_len())
            .field("stats", &self.stats())
            .finish()
    }
}

impl<T> StealPool<T> {
    /// An empty pool. A victim must have more than `threshold` stealable items
    /// to be stolen from, and rebalancing moves items only between queues whose
    /// lengths differ by more than `threshold`.
    pub fn new(threshold: usize) -> Self {
        StealPool {
            threshold,
            workers: RwLock::new(BTreeMap::new()),
            counters: CachePadded::new(Counters::default()),
        }
    }

    /// The steal threshold.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// Gives `agent` an empty local queue. Returns `false` (and changes
    /// nothing) if it already has one.
    pub fn register(&self, agent: AgentId) -> bool {
        let mut workers = self.workers.write();
        if workers.contains_key(&agent) {
            return false;
        }
        workers.insert(agent, CachePadded::new(Worker::new()));
        true
    }

    /// Removes `agent`'s local queue and returns its items in pop order, pinned
    /// ones included, so the caller can re-queue them: nothing is lost. Empty if
    /// the agent had no queue.
    pub fn deregister(&self, agent: AgentId) -> Vec<(T, Priority)> {
        let removed = self.workers.write().remove(&agent);
        match removed {
            Some(worker) => CachePadded::into_inner(worker).queue.into_inner().drain(),
            None => Vec::new(),
        }
    }

    /// Whether `agent` has a local queue.
    pub fn contains(&self, agent: AgentId) -> bool {
        self.workers.read().contains_key(&agent)
    }

    /// The agents with a local queue, in ascending id order.
    pub fn agents(&self) -> Vec<AgentId> {
        self.workers.read().keys().copied().collect()
    }

    /// How many agents have a local queue.
    pub fn agent_count(&self) -> usize {
        self.workers.read().len()
    }

    /// Queues `item` on `agent`'s local queue, at the back of its priority
    /// level. A `pinned` item is never stolen nor moved by rebalancing.
    ///
    /// If `agent` has no local queue the item is handed back in
    /// [`UnknownAgent`] (never dropped); queue it globally instead.
    pub fn push_local(
        &self,
        agent: AgentId,
        item: T,
        priority: Priority,
        pinned: bool,
    ) -> Result<(), UnknownAgent<T>> {
        let workers = self.workers.read();
        let Some(worker) = workers.get(&agent) else {
            return Err(UnknownAgent::new(agent, item, priority, pinned));
        };
        let mut queue = worker.queue.lock();
        queue.push(item, priority, pinned);
        worker.publish(&queue);
        Ok(())
    }

    /// Takes the next item of `agent`'s local queue: the most urgent level's
    /// oldest item. `None` if the queue is empty or the agent has none.
    pub fn pop_local(&self, agent: AgentId) -> Option<(T, Priority)> {
        self.with_queue(agent, |queue| queue.pop())?
    }

    /// Takes the next item of `agent`'s local queue only if `take` accepts it
    /// (it sees the item and its priority), in one step: no thief can slip in
    /// between the look and the take.
    ///
    /// For "run the local head if it is at least as urgent as the global head":
    /// `pool.pop_local_if(me, |_, p| p >= global_head)`.
    pub fn pop_local_if(
        &self,
        agent: AgentId,
        take: impl FnOnce(&T, Priority) -> bool,
    ) -> Option<(T, Priority)> {
        self.with_queue(agent, |queue| queue.pop_if(take))?
    }

    /// The priority of the item `pop_local(agent)` would return now.
    pub fn peek_local(&self, agent: AgentId) -> Option<Priority> {
        self.with_queue(agent, |queue| queue.peek().map(|(_, p)| p))?
    }

    /// Calls `f` on the item `pop_local(agent)` would return now, if any.
    pub fn peek_local_with<R>(
        &self,
        agent: AgentId,
        f: impl FnOnce(&T, Priority) -> R,
    ) -> Option<R> {
        self.with_queue(agent, |queue| queue.peek().map(|(item, p)| f(item, p)))?
    }

    /// Items in `agent`'s local queue (0 if it has none).
    ///
    /// Like every length here, a snapshot: under concurrency it may be stale by
    /// the time it is used.
    pub fn local_len(&self, agent: AgentId) -> usize {
        self.workers
            .read()
            .get(&agent)
            .map_or(0, |worker| worker.hints().0)
    }

    /// Unpinned items in `agent`'s local queue (0 if it has none).
    pub fn stealable_len(&self, agent: AgentId) -> usize {
        self.workers
            .read()
            .get(&agent)
            .map_or(0, |worker| worker.hints().1)
    }

    /// Items in all local queues.
    pub fn total_len(&self) -> usize {
        self.workers
            .read()
            .values()
            .map(|worker| worker.hints().0)
            .sum()
    }

    /// The agent with the longest local queue and its length (lowest id on a
    /// tie); `None` if every local queue is empty.
    pub fn busiest(&self) -> Option<(AgentId, usize)> {
        let workers = self.workers.read();
        let mut best: Option<(AgentId, usize)> = None;
        for (&id, worker) in workers.iter() {
            let len = worker.hints().0;
            if len > 0 && best.is_none_or(|(_, b)| len > b) {
                best = Some((id, len));
            }
        }
        best
    }

    /// A copy of `agent`'s local queue in pop order: each item with its
    /// priority and whether it is pinned. Empty if the agent has no queue.
    pub fn local_items(&self, agent: AgentId) -> Vec<(T, Priority, bool)>
    where
        T: Clone,
    {
        self.with_queue(agent, |queue| queue.items())
            .unwrap_or_default()
    }

    /// The steal counters.
    pub fn stats(&self) -> StealStats {
        self.counters.snapshot()
    }

    /// Lets the idle agent `thief` take half of the busiest agent's stealable items.
    ///
    /// Only when `thief`'s local queue is empty. The victim is the other agent
    /// with the most stealable (unpinned) items, provided it has more than the
    /// threshold (ties: the longer queue, then the lowest id). Moves
    /// `floor(stealable / 2)` of its stealable items: the first ones in its pop
    /// order (most urgent first), which keep that order in the thief's queue.
    /// Pinned items never move; the victim's remaining items keep their order.
    ///
    /// `None` if nothing moved: `thief` is not registered, its queue is not
    /// empty, or no agent has enough stealable items (counted in
    /// [`StealStats::empty_steals`] unless the thief is unknown).
    pub fn steal_half(&self, thief: AgentId) -> Option<Stolen> {
        self.steal(thief, None::<fn(&T, Priority)>)
            .map(|(stolen, _)| stolen)
    }

    /// Like [`steal_half`](Self::steal_half), and also calls `f` on each item
    /// that moves, in the order they move (the victim's pop order), and returns
    /// what `f` returned: e.g. `|task, _| task.id()` to fill `work:stolen`'s
    /// task ids. `f` runs before anything moves, so if it panics nothing has
    /// moved. It runs under the two queues' locks: keep it short and do not
    /// call into the pool from it.
    pub fn steal_half_with<U>(
        &self,
        thief: AgentId,
        f: impl FnMut(&T, Priority) -> U,
    ) -> Option<(Stolen, Vec<U>)> {
        self.steal(thief, Some(f))
    }

    fn steal<U, F>(&self, thief: AgentId, mut f: Option<F>) -> Option<(Stolen, Vec<U>)>
    where
        F: FnMut(&T, Priority) -> U,
    {
        let workers = self.workers.read();
        let thief_worker = workers.get(&thief)?;
        for _ in 0..STEAL_ATTEMPTS {
            if thief_worker.hints().0 != 0 {
                break;
            }
            let Some((victim, victim_worker)) = self.pick_victim(&workers, thief) else {
                break;
            };
            let (mut to, mut from) = lock_pair(thief, thief_worker, victim, victim_worker);
            if !to.is_empty() {
                break;
            }
            let stealable = from.stealable();
            if !self.can_steal_from(stealable) {
                // The hint was stale; publish the truth and choose again.
                victim_worker.publish(&from);
                continue;
            }
            let n = stealable / 2;
            let mapped = f
                .as_mut()
                .map(|f| from.map_stealable(n, f))
                .unwrap_or_default();
            let count = from.move_stealable(n, &mut to);
            victim_worker.publish(&from);
            thief_worker.publish(&to);
            drop((to, from));
            self.counters.steal(count);
            let stolen = Stolen {
                from: victim,
                to: thief,
                count,
            };
            return Some((stolen, mapped));
        }
        self.counters.empty_steal();
        None
    }

    fn can_steal_from(&self, stealable: usize) -> bool {
        // With a threshold of 0 or 1 a single stealable item exceeds it, but
        // half of it is nothing: such a steal would move no item.
        stealable > self.threshold && stealable >= 2
    }

    fn pick_victim<'a>(
        &self,
        workers: &'a Registry<T>,
        thief: AgentId,
    ) -> Option<(AgentId, &'a Worker<T>)> {
        let mut best: Option<(AgentId, &'a Worker<T>, (usize, usize))> = None;
        for (&id, worker) in workers.iter() {
            let (len, stealable) = worker.hints();
            if id == thief || !self.can_steal_from(stealable) {
                continue;
            }
            let key = (stealable, len);
            if best.is_none_or(|(_, _, b)| key > b) {
                best = Some((id, worker, key));
            }
        }
        best.map(|(id, worker, _)| (id, worker))
    }

    /// Whether [`rebalance`](Self::rebalance) would move something now.
    ///
    /// Cheap (no queue locks): call it after a push to decide whether to
    /// rebalance. Under concurrency it reads the published lengths, which may be
    /// a moment old.
    pub fn is_imbalanced(&self) -> bool {
        let workers = self.workers.read();
        let hints: Vec<(usize, usize)> = workers.values().map(|w| w.hints()).collect();
        next_move(&hints, self.threshold).is_some()
    }

    /// Evens out the local queues and returns the moves made, in order.
    ///
    /// Repeats, while it can: take the shortest queue (lowest id on a tie) as
    /// the recipient and, as the donor, the longest other queue (lowest id on a
    /// tie) that is longer by more than the threshold and has a stealable item;
    /// move `min(donor's stealable, difference / 2)` of the donor's stealable
    /// items, most urgent first, to the back of their levels in the recipient.
    /// Each move makes the lengths strictly more even, so it ends; afterwards no
    /// queue with a stealable item is longer than the shortest by more than the
    /// threshold (or by less than 2, where halving moves nothing).
    ///
    /// Call it on events (an agent went idle, a push made the queues uneven),
    /// not on a timer. It locks every local queue for its duration.
    pub fn rebalance(&self) -> Vec<Stolen> {
        self.rebalance_inner(None::<fn(&T, Priority)>)
            .into_iter()
            .map(|(stolen, _)| stolen)
            .collect()
    }

    /// Like [`rebalance`](Self::rebalance), and also calls `f` on each item that
    /// moves, returning its results per move. `f` runs before each move's items
    /// move, under the queues' locks: keep it short and do not call into the pool.
    pub fn rebalance_with<U>(&self, f: impl FnMut(&T, Priority) -> U) -> Vec<(Stolen, Vec<U>)> {
        self.rebalance_inner(Some(f))
    }

    fn rebalance_inner<U, F>(&self, mut f: Option<F>) -> Vec<(Stolen, Vec<U>)>
    where
        F: FnMut(&T, Priority) -> U,
    {
        let workers = self.workers.read();
        let hints: Vec<(usize, usize)> = workers.values().map(|w| w.hints()).collect();
        if next_move(&hints, self.threshold).is_none() {
            return Vec::new();
        }
        // Ascending id order: the lock order.
        let ids: Vec<AgentId> = workers.keys().copied().collect();
        let mut locked: Vec<(&Worker<T>, MutexGuard<'_, LocalQueue<T>>)> = workers
            .values()
            .map(|worker| (&**worker, worker.queue.lock()))
            .collect();
        let mut moves = Vec::new();
        loop {
            let sizes: Vec<(usize, usize)> = locked
                .iter()
                .map(|(_, queue)| (queue.len(), queue.stealable()))
                .collect();
            let Some((donor, recipient, n)) = next_move(&sizes, self.threshold) else {
                break;
            };
            let (from, to) = pair_mut(&mut locked, donor, recipient);
            let mapped = f
                .as_mut()
                .map(|f| from.1.map_stealable(n, f))
                .unwrap_or_default();
            let count = from.1.move_stealable(n, &mut to.1);
            from.0.publish(&from.1);
            to.0.publish(&to.1);
            self.counters.rebalance_move(count);
            let stolen = Stolen {
                from: ids[donor],
                to: ids[recipient],
                count,
            };
            moves.push((stolen, mapped));
        }
        moves
    }

    /// Removes every item that `remove` selects from every local queue (to
    /// cancel tasks), returning each with its agent and priority: agents in
    /// ascending id order, each queue's items in pop order.
    ///
    /// Locks all local queues at once, so an item cannot escape by being stolen
    /// from a queue not yet searched to one already searched. `remove` sees each
    /// item once, under the locks: keep it short and do not call into the pool.
    pub fn remove_where(&self, mut remove: impl FnMut(&T) -> bool) -> Vec<(AgentId, T, Priority)> {
        let workers = self.workers.read();
        let mut locked: Vec<_> = workers
            .iter()
            .map(|(id, worker)| (*id, &**worker, worker.queue.lock()))
            .collect();
        let mut out = Vec::new();
        for (id, worker, queue) in &mut locked {
            let removed = queue.remove_where(&mut remove);
            if !removed.is_empty() {
                worker.publish(queue);
                out.extend(removed.into_iter().map(|(item, p)| (*id, item, p)));
            }
        }
        out
    }

    /// Removes the first item that `matches` selects (agents in ascending id
    /// order, each queue in pop order), e.g. to cancel one task by id. Locks all
    /// local queues at once, like [`remove_where`](Self::remove_where).
    pub fn remove_first(
        &self,
        mut matches: impl FnMut(&T) -> bool,
    ) -> Option<(AgentId, T, Priority)> {
        let workers = self.workers.read();
        let mut locked: Vec<_> = workers
            .iter()
            .map(|(id, worker)| (*id, &**worker, worker.queue.lock()))
            .collect();
        for (id, worker, queue) in &mut locked {
            if let Some((item, p)) = queue.remove_first(&mut matches) {
                worker.publish(queue);
                return Some((*id, item, p));
            }
        }
        None
    }

    fn with_queue<R>(&self, agent: AgentId, f: impl FnOnce(&mut LocalQueue<T>) -> R) -> Option<R> {
        let workers = self.workers.read();
        let worker = workers.get(&agent)?;
        let mut queue = worker.queue.lock();
        let result = f(&mut queue);
        worker.publish(&queue);
        Some(result)
    }
}

/// Locks the thief's and the victim's queues, lower id first (the lock order).
/// Returns (thief, victim).
fn lock_pair<'a, T>(
    thief: AgentId,
    thief_worker: &'a Worker<T>,
    victim: AgentId,
    victim_worker: &'a Worker<T>,
) -> (MutexGuard<'a, LocalQueue<T>>, MutexGuard<'a, LocalQueue<T>>) {
    if thief < victim {
        let to = thief_worker.queue.lock();
        let from = victim_worker.queue.lock();
        (to, from)
    } else {
        let from = victim_worker.queue.lock();
        let to = thief_worker.queue.lock();
        (to, from)
    }
}

/// Two distinct elements of a slice, mutably.
fn pair_mut<E>(items: &mut [E], a: usize, b: usize) -> (&mut E, &mut E) {
    debug_assert_ne!(a, b);
    if a < b {
        let (left, right) = items.split_at_mut(b);
        (&mut left[a], &mut right[0])
    } else {
        let (left, right) = items.split_at_mut(a);
        (&mut right[0], &mut left[b])
    }
}

/// The next rebalancing move for queues given as `(len, stealable)`:
/// `(donor, recipient, items)`, or `None` when balanced. See
/// [`StealPool::rebalance`] for the rule.
fn next_move(queues: &[(usize, usize)], threshold: usize) -> Option<(usize, usize, usize)> {
    let mut recipient: Option<(usize, usize)> = None;
    for (index, &(len, _)) in queues.iter().enumerate() {
        if recipient.is_none_or(|(_, shortest)| len < shortest) {
            recipient = Some((index, len));
        }
    }
    let (recipient, shortest) = recipient?;
    let mut donor: Option<(usize, usize, usize)> = None;
    for (index, &(len, stealable)) in queues.iter().enumerate() {
        let difference = len - shortest;
        let n = stealable.min(difference / 2);
        if index == recipient || difference <= threshold || n == 0 {
            continue;
        }
        if donor.is_none_or(|(_, longest, _)| len > longest) {
            donor = Some((index, len, n));
        }
    }
    donor.map(|(index, _, n)| (index, recipient, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(n: u64) -> AgentId {
        AgentId::new(n)
    }

    fn pool_with(threshold: usize, agents: u64) -> StealPool<u32> {
        let pool = StealPool::new(threshold);
        for a in 0..agents {
            assert!(pool.register(agent(a)));
        }
        pool
    }

    #[test]
    fn register_twice_keeps_the_queue() {
        let pool = pool_with(3, 1);
        pool.push_local(agent(0), 1, Priority::Low, false).unwrap();
        assert!(!pool.register(agent(0)));
        assert_eq!(pool.local_len(agent(0)), 1);
    }

    #[test]
    fn unknown_agent_gets_the_item_back() {
        let pool = pool_with(3, 1);
        let err = pool
            .push_local(agent(5), 7, Priority::Critical, true)
            .unwrap_err();
        assert_eq!(err.agent(), agent(5));
        assert!(err.pinned());
        assert_eq!(err.into_parts(), (7, Priority::Critical));
        assert_eq!(pool.pop_local(agent(5)), None);
        assert_eq!(pool.steal_half(agent(5)), None);
        assert_eq!(pool.stats().empty_steals, 0);
        assert!(pool.deregister(agent(5)).is_empty());
    }

    #[test]
    fn deregister_returns_everything_in_pop_order() {
        let pool = pool_with(3, 1);
        pool.push_local(agent(0), 1, Priority::Low, true).unwrap();
        pool.push_local(agent(0), 2, Priority::High, false).unwrap();
        pool.push_local(agent(0), 3, Priority::Low, false).unwrap();
        assert_eq!(
            pool.deregister(agent(0)),
            vec![(2, Priority::High), (1, Priority::Low), (3, Priority::Low)]
        );
        assert!(!pool.contains(agent(0)));
        assert!(pool.push_local(agent(0), 4, Priority::Low, false).is_err());
    }

    #[test]
    fn steal_takes_half_of_the_stealable_most_urgent_first() {
        let pool = pool_with(3, 3);
        // agent 1: 4 stealable (exactly threshold + 1) and 3 pinned.
        for (i, p) in [
            Priority::Low,
            Priority::High,
            Priority::Normal,
            Priority::High,
        ]
        .into_iter()
        .enumerate()
        {
            pool.push_local(agent(1), i as u32, p, false).unwrap();
        }
        for i in 10..13 {
            pool.push_local(agent(1), i, Priority::Critical, true)
                .unwrap();
        }
        let (stolen, moved) = pool.steal_half_with(agent(2), |i, p| (*i, p)).unwrap();
        assert_eq!(
            stolen,
            Stolen {
                from: agent(1),
                to: agent(2),
                count: 2
            }
        );
        assert_eq!(moved, vec![(1, Priority::High), (3, Priority::High)]);
        assert_eq!(
            pool.local_items(agent(2)),
            vec![(1, Priority::High, false), (3, Priority::High, false)]
        );
        assert_eq!(
            pool.local_items(agent(1)),
            vec![
                (10, Priority::Critical, true),
                (11, Priority::Critical, true),
                (12, Priority::Critical, true),
                (2, Priority::Normal, false),
                (0, Priority::Low, false),
            ]
        );
        // Now 2 stealable: not above the threshold.
        assert_eq!(pool.steal_half(agent(0)), None);
        let stats = pool.stats();
        assert_eq!((stats.steals, stats.stolen, stats.empty_steals), (1, 2, 1));
    }

    #[test]
    fn thief_with_work_does_not_steal() {
        let pool = pool_with(0, 2);
        for i in 0..10 {
            pool.push_local(agent(0), i, Priority::Normal, false)
                .unwrap();
        }
        pool.push_local(agent(1), 99, Priority::Low, true).unwrap();
        assert_eq!(pool.steal_half(agent(1)), None);
        assert_eq!(pool.local_len(agent(0)), 10);
    }

    #[test]
    fn victim_is_the_one_with_most_stealable_items() {
        let pool = pool_with(3, 3);
        // agent 0: longer, but mostly pinned.
        for i in 0..10 {
            pool.push_local(agent(0), i, Priority::Normal, i < 6)
                .unwrap();
        }
        for i in 0..6 {
            pool.push_local(agent(1), 100 + i, Priority::Normal, false)
                .unwrap();
        }
        let stolen = pool.steal_half(agent(2)).unwrap();
        assert_eq!((stolen.from, stolen.count), (agent(1), 3));
        assert_eq!(pool.busiest(), Some((agent(0), 10)));
        assert_eq!(pool.total_len(), 16);
    }

    #[test]
    fn threshold_zero_never_steals_a_lone_item() {
        let pool = pool_with(0, 2);
        pool.push_local(agent(0), 1, Priority::Normal, false)
            .unwrap();
        assert_eq!(pool.steal_half(agent(1)), None);
        pool.push_local(agent(0), 2, Priority::Normal, false)
            .unwrap();
        assert_eq!(pool.steal_half(agent(1)).map(|s| s.count), Some(1));
        assert_eq!(pool.pop_local(agent(1)), Some((1, Priority::Normal)));
    }

    #[test]
    fn rebalance_evens_out_and_respects_pins() {
        let pool = pool_with(2, 3);
        for i in 0..12 {
            pool.push_local(agent(0), i, Priority::Normal, i % 4 == 0)
                .unwrap();
        }
        pool.push_local(agent(1), 50, Priority::High, false)
            .unwrap();
        assert!(pool.is_imbalanced());
        let moves = pool.rebalance_with(|i, _| *i);
        assert!(!pool.is_imbalanced());
        assert!(!moves.is_empty());
        let lens: Vec<usize> = (0..3).map(|a| pool.local_len(agent(a))).collect();
        assert_eq!(lens.iter().sum::<usize>(), 13);
        let (min, max) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
        assert!(max - min <= 2, "{lens:?}");
        // Pinned items stayed on agent 0.
        for (item, _, pinned) in pool
            .local_items(agent(1))
            .into_iter()
            .chain(pool.local_items(agent(2)))
        {
            assert!(!pinned && item % 4 != 0);
        }
        let moved: usize = moves
            .iter()
            .map(|(s, ids)| {
                assert_eq!(s.count, ids.len());
                s.count
            })
            .sum();
        let stats = pool.stats();
        assert_eq!(stats.rebalanced, moved as u64);
        assert_eq!(stats.rebalance_moves, moves.len() as u64);
        assert!(pool.rebalance().is_empty());
    }

    #[test]
    fn pinned_only_queues_are_left_alone() {
        let pool = pool_with(1, 2);
        for i in 0..10 {
            pool.push_local(agent(0), i, Priority::Normal, true)
                .unwrap();
        }
        assert!(!pool.is_imbalanced());
        assert!(pool.rebalance().is_empty());
        assert_eq!(pool.steal_half(agent(1)), None);
    }

    #[test]
    fn pop_local_if_checks_the_head() {
        let pool = pool_with(3, 1);
        pool.push_local(agent(0), 1, Priority::Normal, false)
            .unwrap();
        assert_eq!(pool.peek_local(agent(0)), Some(Priority::Normal));
        assert_eq!(
            pool.pop_local_if(agent(0), |_, p| p >= Priority::High),
            None
        );
        assert_eq!(pool.peek_local_with(agent(0), |i, _| *i), Some(1));
        assert_eq!(
            pool.pop_local_if(agent(0), |_, p| p >= Priority::Normal),
            Some((1, Priority::Normal))
        );
        assert_eq!(pool.local_len(agent(0)), 0);
    }

    #[test]
    fn removal_searches_every_queue() {
        let pool = pool_with(3, 3);
        for a in 0..3 {
            for i in 0..4 {
                pool.push_local(agent(a), (a * 10 + i) as u32, Priority::Normal, i == 0)
                    .unwrap();
            }
        }
        let removed = pool.remove_where(|i| i % 2 == 0);
        assert_eq!(removed.len(), 6);
        assert_eq!(removed[0], (agent(0), 0, Priority::Normal));
        assert_eq!(pool.total_len(), 6);
        assert_eq!(pool.stealable_len(agent(1)), 2);
        assert_eq!(
            pool.remove_first(|i| *i == 21),
            Some((agent(2), 21, Priority::Normal))
        );
        assert_eq!(pool.remove_first(|i| *i == 21), None);
    }

    #[test]
    fn next_move_rule() {
        // Shortest is index 1; index 0 and 2 tie at 9, lowest index wins.
        assert_eq!(next_move(&[(9, 9), (1, 0), (9, 9)], 3), Some((0, 1, 4)));
        // Differences of 1 move nothing even with threshold 0.
        assert_eq!(next_move(&[(2, 2), (1, 1)], 0), None);
        assert_eq!(next_move(&[(5, 1), (0, 0)], 3), Some((0, 1, 1)));
        assert_eq!(next_move(&[(5, 0), (0, 0)], 3), None);
        assert_eq!(next_move(&[], 3), None);
    }
}
