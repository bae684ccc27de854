//! A reference model, proptest strategies and an invariant checker, for
//! model-based tests of [`PriorityQueue`] and of queues built on it.
//!
//! [`ReferenceQueue`] is the naive specification: one list in push order;
//! `pop` scans it for the entry to serve. [`check_ops`] applies a sequence of
//! [`Op`]s to a queue under test and to the model, step by step, and fails on
//! the first difference: an item lost, duplicated or out of order, a
//! [`QueueFull`] that does not hand back exactly the rejected item, a `len` or
//! [`QueueStats`] that differs, or an exceeded aging bound. Items are `u64`
//! ids numbered in push order, so every item is distinct.
//!
//! To test your own wrapper, implement [`QueueUnderTest`] for it (the optional
//! methods default to "not supported", and the checker skips those operations):
//!
//! ```
//! use proptest::prelude::*;
//! use swarm_queue::model::{self, QueueUnderTest};
//! use swarm_queue::{Priority, PriorityQueue, QueueFull};
//!
//! /// A user's wrapper: a queue that counts the pops it served.
//! struct Counted {
//!     queue: PriorityQueue<u64>,
//!     pops: usize,
//! }
//!
//! impl QueueUnderTest for Counted {
//!     fn push(&mut self, item: u64, priority: Priority) -> Result<(), QueueFull<u64>> {
//!         self.queue.push(item, priority)
//!     }
//!     fn pop(&mut self) -> Option<(u64, Priority)> {
//!         self.pops += 1;
//!         self.queue.pop()
//!     }
//!     fn peek(&self) -> Option<(u64, Priority)> {
//!         self.queue.peek().map(|(item, p)| (*item, p))
//!     }
//!     fn len(&self) -> usize {
//!         self.queue.len()
//!     }
//!     fn retain(&mut self, keep: &mut dyn FnMut(&u64) -> bool) {
//!         self.queue.retain(keep)
//!     }
//!     fn drain(&mut self) -> Vec<(u64, Priority)> {
//!         self.queue.drain().collect()
//!     }
//! }
//!
//! proptest! {
//!     #![proptest_config(ProptestConfig::with_cases(32))]
//!     // In a test file, mark this `#[test]`; a doc test calls it by hand.
//!     fn wrapper_behaves_like_the_model(config in model::config(), ops in model::ops(64)) {
//!         let mut subject = Counted { queue: config.queue(), pops: 0 };
//!         let mut reference = config.model();
//!         model::check_ops(&mut subject, &mut reference, &ops)?;
//!     }
//! }
//! # wrapper_behaves_like_the_model();
//! ```

use std::fmt;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::{AgingPolicy, FairQueue, Priority, PriorityQueue, QueueFull, QueueStats};

const LEVELS: usize = Priority::LEVELS;

#[derive(Debug, Clone)]
struct Entry<T> {
    item: T,
    priority: Priority,
    /// Pops of more urgent levels while this entry was at the front of its level.
    overtaken_at_front: u32,
    /// Pops of more urgent levels while this entry was queued.
    overtaken_total: u64,
    /// Entries of the same level ahead of this one when it was pushed.
    ahead_at_push: u64,
}

/// The specification of [`PriorityQueue`], written for clarity, not speed.
///
/// Entries live in one `Vec` in push order. The front of a level is its first
/// entry in that list. Aging keeps one counter per level: pops of more urgent
/// levels since the level was last served (reset when the level is served or
/// gets its first item); a pop serves the least urgent non-empty level whose
/// counter reached `k`, else the most urgent non-empty level.
///
/// Each entry also records how often it was overtaken, so
/// [`check_aging_bound`](Self::check_aging_bound) can verify the documented
/// bound directly.
#[derive(Debug, Clone)]
pub struct ReferenceQueue<T> {
    entries: Vec<Entry<T>>,
    capacity: Option<usize>,
    aging: Option<AgingPolicy>,
    level_overtaken: [u32; LEVELS],
    rejected: u64,
    promoted: u64,
    worst_at_front: u32,
    violation: Option<String>,
}

impl<T> ReferenceQueue<T> {
    /// An empty model; `capacity: None` is unbounded.
    pub fn new(capacity: Option<usize>, aging: Option<AgingPolicy>) -> Self {
        ReferenceQueue {
            entries: Vec::new(),
            capacity,
            aging,
            level_overtaken: [0; LEVELS],
            rejected: 0,
            promoted: 0,
            worst_at_front: 0,
            violation: None,
        }
    }

    /// Items queued.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no item is queued.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What [`PriorityQueue::stats`] must report.
    pub fn stats(&self) -> QueueStats {
        let mut by_level = [0; LEVELS];
        for e in &self.entries {
            by_level[e.priority.level()] += 1;
        }
        QueueStats {
            len: self.entries.len(),
            by_level,
            rejected: self.rejected,
            promoted: self.promoted,
        }
    }

    /// Pushes at the back of the item's level, or hands it back when full.
    pub fn push(&mut self, item: T, priority: Priority) -> Result<(), QueueFull<T>> {
        if self.capacity.is_some_and(|c| self.entries.len() >= c) {
            self.rejected += 1;
            return Err(QueueFull::new(item, priority));
        }
        let ahead = self
            .entries
            .iter()
            .filter(|e| e.priority == priority)
            .count() as u64;
        if ahead == 0 {
            self.level_overtaken[priority.level()] = 0;
        }
        self.entries.push(Entry {
            item,
            priority,
            overtaken_at_front: 0,
            overtaken_total: 0,
            ahead_at_push: ahead,
        });
        Ok(())
    }

    fn front_of(&self, level: usize) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.priority.level() == level)
    }

    /// The index (in `entries`) of the entry the next pop serves.
    fn next_index(&self) -> Option<usize> {
        let most_urgent = (0..LEVELS).find(|&l| self.front_of(l).is_some())?;
        let mut level = most_urgent;
        if let Some(policy) = self.aging {
            for l in (0..LEVELS).rev() {
                if l > most_urgent
                    && self.front_of(l).is_some()
                    && self.level_overtaken[l] >= policy.max_overtakes()
                {
                    level = l;
                    break;
                }
            }
        }
        self.front_of(level)
    }

    /// The item the next pop returns.
    pub fn peek(&self) -> Option<(&T, Priority)> {
        self.next_index()
            .map(|i| (&self.entries[i].item, self.entries[i].priority))
    }

    /// Pops the next item.
    pub fn pop(&mut self) -> Option<(T, Priority)> {
        let index = self.next_index()?;
        let served = self.entries[index].priority.level();
        let most_urgent = (0..LEVELS).find(|&l| self.front_of(l).is_some());
        if most_urgent != Some(served) {
            self.promoted += 1;
        }
        let entry = self.entries.remove(index);
        let fronts: Vec<Option<usize>> = (0..LEVELS).map(|l| self.front_of(l)).collect();
        for e in self.entries.iter_mut() {
            if e.priority.level() > served {
                e.overtaken_total += 1;
            }
        }
        for (level, front) in fronts.iter().enumerate() {
            if let Some(i) = front {
                if level > served {
                    self.entries[*i].overtaken_at_front += 1;
                    self.worst_at_front =
                        self.worst_at_front.max(self.entries[*i].overtaken_at_front);
                    self.level_overtaken[level] += 1;
                }
            }
        }
        self.level_overtaken[served] = 0;
        if let Err(e) = self.check_entry(&entry) {
            self.violation.get_or_insert(e);
        }
        Some((entry.item, entry.priority))
    }

    fn check_entry(&self, e: &Entry<T>) -> Result<(), String> {
        let Some(policy) = self.aging else {
            return Ok(());
        };
        let k = policy.max_overtakes();
        if e.overtaken_at_front > k {
            return Err(format!(
                "an item at the front of {} was overtaken {} times (bound {k})",
                e.priority, e.overtaken_at_front
            ));
        }
        let total_bound = (e.ahead_at_push + 1) * u64::from(k);
        if e.overtaken_total > total_bound {
            return Err(format!(
                "an item of {} with {} ahead was overtaken {} times (bound {total_bound})",
                e.priority, e.ahead_at_push, e.overtaken_total
            ));
        }
        Ok(())
    }

    /// Verifies the [`AgingPolicy`] bound for every queued item: at most `k`
    /// overtakes while at the front of its level, at most `(a + 1) * k` in all.
    /// Returns the first violation. Always `Ok` without aging.
    pub fn check_aging_bound(&self) -> Result<(), String> {
        if let Some(e) = &self.violation {
            return Err(e.clone());
        }
        self.entries.iter().try_for_each(|e| self.check_entry(e))
    }

    /// The most overtakes any item suffered at the front of its level so far.
    pub fn worst_overtaken_at_front(&self) -> u32 {
        self.worst_at_front
    }

    /// The queued items in pop order (replaying the aging rule on a copy).
    pub fn pop_order(&self) -> Vec<(T, Priority)>
    where
        T: Clone,
    {
        let mut copy = self.clone();
        std::iter::from_fn(|| copy.pop()).collect()
    }

    /// Pops everything, in pop order.
    pub fn drain(&mut self) -> Vec<(T, Priority)> {
        std::iter::from_fn(|| self.pop()).collect()
    }

    /// Keeps the items for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.entries.retain(|e| keep(&e.item));
    }

    /// Removes up to `max` matching items in level order (most urgent level
    /// first, FIFO within a level).
    pub fn take_where(
        &mut self,
        max: usize,
        mut take: impl FnMut(&T) -> bool,
    ) -> Vec<(T, Priority)> {
        let mut order: Vec<usize> = (0..self.entries.len()).collect();
        // Stable sort: push order within a level.
        order.sort_by_key(|&i| self.entries[i].priority.level());
        let chosen: Vec<usize> = order
            .into_iter()
            .filter(|&i| take(&self.entries[i].item))
            .take(max)
            .collect();
        let mut slots: Vec<Option<Entry<T>>> = self.entries.drain(..).map(Some).collect();
        let out = chosen
            .iter()
            .filter_map(|&i| slots[i].take())
            .map(|e| (e.item, e.priority))
            .collect();
        self.entries = slots.into_iter().flatten().collect();
        out
    }
}

/// How to build the queue under test and its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// `None` for unbounded.
    pub capacity: Option<usize>,
    /// `None` for strict order.
    pub aging: Option<AgingPolicy>,
}

impl QueueConfig {
    /// A [`PriorityQueue`] with this configuration.
    pub fn queue<T>(&self) -> PriorityQueue<T> {
        let mut queue = match self.capacity {
            Some(c) => PriorityQueue::bounded(c),
            None => PriorityQueue::new(),
        };
        queue.set_aging(self.aging);
        queue
    }

    /// The matching [`ReferenceQueue`].
    pub fn model<T>(&self) -> ReferenceQueue<T> {
        ReferenceQueue::new(self.capacity, self.aging)
    }
}

/// One step of a model-based test. Predicates select ids by remainder, so the
/// same op means the same thing for the subject and the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Push the next id.
    Push(Priority),
    /// Pop one item.
    Pop,
    /// Peek.
    Peek,
    /// Keep ids with `id % modulus != 0`.
    Retain {
        /// Divisor (at least 1).
        modulus: u64,
    },
    /// Pop everything.
    Drain,
    /// Remove all ids with `id % modulus == 0` ([`QueueUnderTest::remove_where`]).
    RemoveWhere {
        /// Divisor (at least 1).
        modulus: u64,
    },
    /// Take up to `max` ids with `id % modulus == 0` ([`QueueUnderTest::take_where`]).
    TakeWhere {
        /// How many at most.
        max: usize,
        /// Divisor (at least 1).
        modulus: u64,
    },
    /// Compare the full pop order ([`QueueUnderTest::pop_order`]).
    Inspect,
}

/// Any priority.
pub fn priority() -> impl Strategy<Value = Priority> {
    prop_oneof![
        Just(Priority::Critical),
        Just(Priority::High),
        Just(Priority::Normal),
        Just(Priority::Low),
    ]
}

/// An aging policy with a small bound (1..=6), so tests hit it often.
pub fn aging_policy() -> impl Strategy<Value = AgingPolicy> {
    (1u32..=6).prop_map(|k| {
        AgingPolicy::new(std::num::NonZeroU32::new(k).unwrap_or(std::num::NonZeroU32::MIN))
    })
}

/// A capacity (none, tiny or small) and aging (off or a small bound).
pub fn config() -> impl Strategy<Value = QueueConfig> {
    (
        prop_oneof![Just(None), (0usize..12).prop_map(Some)],
        proptest::option::of(aging_policy()),
    )
        .prop_map(|(capacity, aging)| QueueConfig { capacity, aging })
}

/// One operation, pushes and pops most often.
pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => priority().prop_map(Op::Push),
        5 => Just(Op::Pop),
        1 => Just(Op::Peek),
        1 => (1u64..5).prop_map(|modulus| Op::Retain { modulus }),
        1 => (1u64..5).prop_map(|modulus| Op::RemoveWhere { modulus }),
        1 => (0usize..4, 1u64..4).prop_map(|(max, modulus)| Op::TakeWhere { max, modulus }),
        1 => Just(Op::Inspect),
        1 => Just(Op::Drain),
    ]
}

/// Up to `max_len` operations.
pub fn ops(max_len: usize) -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 0..=max_len)
}

/// A queue of `u64` ids that [`check_ops`] can drive. The first six methods are
/// the contract; the others are optional (return `None`: the op is skipped).
pub trait QueueUnderTest {
    /// Push; a full queue hands the same item back.
    fn push(&mut self, item: u64, priority: Priority) -> Result<(), QueueFull<u64>>;
    /// Pop the next item.
    fn pop(&mut self) -> Option<(u64, Priority)>;
    /// The next item.
    fn peek(&self) -> Option<(u64, Priority)>;
    /// Items queued.
    fn len(&self) -> usize;
    /// Whether no item is queued.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Keep the items for which `keep` is true.
    fn retain(&mut self, keep: &mut dyn FnMut(&u64) -> bool);
    /// Pop everything, in pop order.
    fn drain(&mut self) -> Vec<(u64, Priority)>;
    /// Counts, if the queue reports them.
    fn stats(&self) -> Option<QueueStats> {
        None
    }
    /// The queued items in pop order, without removing them.
    fn pop_order(&self) -> Option<Vec<(u64, Priority)>> {
        None
    }
    /// Remove all matching items, in level order.
    fn remove_where(
        &mut self,
        _remove: &mut dyn FnMut(&u64) -> bool,
    ) -> Option<Vec<(u64, Priority)>> {
        None
    }
    /// Remove up to `max` matching items, in level order.
    fn take_where(
        &mut self,
        _max: usize,
        _take: &mut dyn FnMut(&u64) -> bool,
    ) -> Option<Vec<(u64, Priority)>> {
        None
    }
}

/// `QueueUnderTest` for a queue type whose inherent methods have these names
/// and signatures (both `PriorityQueue` and `FairQueue` do).
macro_rules! queue_under_test {
    ($queue:ident) => {
        impl QueueUnderTest for $queue<u64> {
            fn push(&mut self, item: u64, priority: Priority) -> Result<(), QueueFull<u64>> {
                $queue::push(self, item, priority)
            }
            fn pop(&mut self) -> Option<(u64, Priority)> {
                $queue::pop(self)
            }
            fn peek(&self) -> Option<(u64, Priority)> {
                $queue::peek(self).map(|(item, p)| (*item, p))
            }
            fn len(&self) -> usize {
                $queue::len(self)
            }
            fn retain(&mut self, keep: &mut dyn FnMut(&u64) -> bool) {
                $queue::retain(self, keep)
            }
            fn drain(&mut self) -> Vec<(u64, Priority)> {
                $queue::drain(self).collect()
            }
            fn stats(&self) -> Option<QueueStats> {
                Some($queue::stats(self))
            }
            fn pop_order(&self) -> Option<Vec<(u64, Priority)>> {
                Some(self.iter().map(|(item, p)| (*item, p)).collect())
            }
            fn remove_where(
                &mut self,
                remove: &mut dyn FnMut(&u64) -> bool,
            ) -> Option<Vec<(u64, Priority)>> {
                Some($queue::remove_where(self, remove))
            }
            fn take_where(
                &mut self,
                max: usize,
                take: &mut dyn FnMut(&u64) -> bool,
            ) -> Option<Vec<(u64, Priority)>> {
                Some($queue::take_where(self, max, take))
            }
        }
    };
}

queue_under_test!(PriorityQueue);
// A fair queue is checked against the same model: with one key (or none) it
// must behave exactly like the FIFO-per-level queue.
queue_under_test!(FairQueue);

struct Step<'a>(usize, &'a Op);

impl fmt::Display for Step<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {} ({:?})", self.0, self.1)
    }
}

fn expect_eq<V: PartialEq + fmt::Debug>(
    step: &Step<'_>,
    what: &str,
    subject: V,
    model: V,
) -> Result<(), TestCaseError> {
    if subject == model {
        Ok(())
    } else {
        Err(TestCaseError::fail(format!(
            "{step}: {what} differs: queue gave {subject:?}, model expects {model:?}"
        )))
    }
}

/// Applies `ops` to `subject` and `model` (fresh, built from the same
/// [`QueueConfig`]), checking after every step that both agree and that the
/// aging bound holds, then that every accepted id came out exactly once.
pub fn check_ops<Q: QueueUnderTest + ?Sized>(
    subject: &mut Q,
    model: &mut ReferenceQueue<u64>,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let mut next_id = 0u64;
    let mut accepted = 0u64;
    let mut seen: Vec<u64> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let step = Step(i, op);
        match *op {
            Op::Push(priority) => {
                let id = next_id;
                next_id += 1;
                let got = subject.push(id, priority).map_err(QueueFull::into_parts);
                let want = model.push(id, priority).map_err(QueueFull::into_parts);
                expect_eq(&step, "push result", got, want)?;
                if got.is_ok() {
                    accepted += 1;
                }
            }
            Op::Pop => {
                let got = subject.pop();
                expect_eq(&step, "pop", got, model.pop())?;
                seen.extend(got.map(|(id, _)| id));
            }
            Op::Peek => expect_eq(
                &step,
                "peek",
                subject.peek(),
                model.peek().map(|(i, p)| (*i, p)),
            )?,
            Op::Retain { modulus } => {
                let mut kept_out = Vec::new();
                subject.retain(&mut |id| {
                    let keep = id % modulus != 0;
                    if !keep {
                        kept_out.push(*id);
                    }
                    keep
                });
                model.retain(|id| id % modulus != 0);
                seen.extend(kept_out);
            }
            Op::Drain => {
                let got = subject.drain();
                expect_eq(&step, "drain", &got, &model.drain())?;
                seen.extend(got.iter().map(|(id, _)| *id));
            }
            Op::RemoveWhere { modulus } => {
                if let Some(got) = subject.remove_where(&mut |id| id % modulus == 0) {
                    let want = model.take_where(usize::MAX, |id| id % modulus == 0);
                    expect_eq(&step, "remove_where", &got, &want)?;
                    seen.extend(got.iter().map(|(id, _)| *id));
                }
            }
            Op::TakeWhere { max, modulus } => {
                if let Some(got) = subject.take_where(max, &mut |id| id % modulus == 0) {
                    let want = model.take_where(max, |id| id % modulus == 0);
                    expect_eq(&step, "take_where", &got, &want)?;
                    seen.extend(got.iter().map(|(id, _)| *id));
                }
            }
            Op::Inspect => {
                if let Some(got) = subject.pop_order() {
                    expect_eq(&step, "pop order", got, model.pop_order())?;
                }
            }
        }
        expect_eq(&step, "len", subject.len(), model.len())?;
        if let Some(stats) = subject.stats() {
            expect_eq(&step, "stats", stats, model.stats())?;
        }
        model
            .check_aging_bound()
            .map_err(|e| TestCaseError::fail(format!("{step}: {e}")))?;
    }
    let rest = subject.drain();
    expect_eq(
        &Step(ops.len(), &Op::Drain),
        "final drain",
        &rest,
        &model.drain(),
    )?;
    seen.extend(rest.iter().map(|(id, _)| *id));
    // Retain drops items, so count them as leaving the queue: exactly once each.
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != seen.len() {
        return Err(TestCaseError::fail("an item came out twice"));
    }
    if seen.len() as u64 != accepted {
        return Err(TestCaseError::fail(format!(
            "{accepted} items accepted but {} came out",
            seen.len()
        )));
    }
    Ok(())
}
