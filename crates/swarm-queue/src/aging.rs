//! Opt-in aging: a deterministic bound on how long a lower level can be overtaken.

use std::num::NonZeroU32;

use crate::Priority;

/// The starvation bound of a [`PriorityQueue`](crate::PriorityQueue) with aging.
///
/// Without aging a queue is strict: a `Low` task waits as long as more urgent
/// tasks keep arriving. With `AgingPolicy::new(k)` the queue counts, for each
/// level, how many pops served a *more urgent* level while that level's front
/// task waited. When that count reaches `k`, the next pop serves the level
/// (if several levels reach `k` at once, the least urgent goes first, which does
/// not overtake the others). Hence the bound, checked by property tests:
///
/// - **Front of a level**: once a task is at the front of its level, at most `k`
///   tasks of more urgent levels are popped before it.
/// - **Anywhere in a level**: a task with `a` tasks ahead of it in its level when
///   it was pushed is popped after at most `(a + 1) * k` pops of more urgent
///   levels.
///
/// Order within a level stays FIFO, and the rule uses counters only (no clock),
/// so the same pushes and pops always give the same order.
///
/// ```
/// use std::num::NonZeroU32;
/// use swarm_queue::{AgingPolicy, Priority, PriorityQueue};
///
/// let mut queue = PriorityQueue::new().with_aging(AgingPolicy::new(NonZeroU32::new(2).unwrap()));
/// queue.push("low", Priority::Low)?;
/// for name in ["h0", "h1", "h2", "h3"] {
///     queue.push(name, Priority::High)?;
/// }
/// let order: Vec<&str> = queue.drain().map(|(item, _)| item).collect();
/// assert_eq!(order, ["h0", "h1", "low", "h2", "h3"]);
/// # Ok::<(), swarm_queue::QueueFull<&str>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AgingPolicy {
    max_overtakes: NonZeroU32,
}

impl AgingPolicy {
    /// A policy that lets at most `max_overtakes` more urgent tasks be popped
    /// ahead of the task at the front of a level.
    pub const fn new(max_overtakes: NonZeroU32) -> Self {
        AgingPolicy { max_overtakes }
    }

    /// The bound `k`.
    pub const fn max_overtakes(self) -> u32 {
        self.max_overtakes.get()
    }
}

impl Default for AgingPolicy {
    /// `k = 32`: a waiting front task is served at least once every 33 pops.
    fn default() -> Self {
        AgingPolicy {
            max_overtakes: NonZeroU32::MIN.saturating_add(31),
        }
    }
}

/// Per-level overtake counters, in pop-order level index (0 = `Critical`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Aging {
    pub(crate) policy: AgingPolicy,
    pub(crate) overtaken: [u32; Priority::LEVELS],
}

impl Aging {
    pub(crate) fn new(policy: AgingPolicy) -> Self {
        Aging {
            policy,
            overtaken: [0; Priority::LEVELS],
        }
    }

    /// The level the next pop serves, given which levels hold items.
    pub(crate) fn select(&self, non_empty: [bool; Priority::LEVELS]) -> Option<usize> {
        let highest = non_empty.iter().position(|&n| n)?;
        let k = self.policy.max_overtakes();
        // The least urgent level at its bound goes first: serving it overtakes no one.
        let aged = (highest + 1..Priority::LEVELS)
            .rev()
            .find(|&l| non_empty[l] && self.overtaken[l] >= k);
        Some(aged.unwrap_or(highest))
    }

    /// Records a pop from `served`; `non_empty` is taken after the pop.
    pub(crate) fn record_pop(&mut self, served: usize, non_empty: [bool; Priority::LEVELS]) {
        self.overtaken[served] = 0;
        let lower = self.overtaken.iter_mut().zip(non_empty).skip(served + 1);
        for (overtaken, non_empty) in lower {
            if non_empty {
                *overtaken = overtaken.saturating_add(1);
            }
        }
    }
}

/// The strict order: the most urgent non-empty level.
pub(crate) fn select_strict(non_empty: [bool; Priority::LEVELS]) -> Option<usize> {
    non_empty.iter().position(|&n| n)
}
