//! Fair share (deficit round robin over keys within a level), checked against
//! simple models: per (level, key) FIFO lists of ids, and a ledger of the cost
//! units other keys take while a key waits.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::num::NonZeroU32;

use proptest::prelude::*;
use swarm_queue::model;
use swarm_queue::{AgingPolicy, FairQueue, FairShare, KeyOf, Priority, PriorityQueue};

/// (id, key, cost).
type Item = (u64, Option<&'static str>, u32);

const KEYS: [Option<&str>; 6] = [
    None,
    Some("k1"),
    Some("k2"),
    Some("k3"),
    Some("k4"),
    Some("k5"),
];

fn key_of(item: &Item) -> (Option<&str>, u32) {
    (item.1, item.2)
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Push {
        key: usize,
        priority: Priority,
        cost: u32,
    },
    Pop,
}

/// Mostly pushes at first so keys stay backlogged; costs in `1..=max_cost`.
fn steps(max_cost: u32, len: usize) -> impl Strategy<Value = Vec<Step>> {
    let push =
        (0..KEYS.len(), model::priority(), 1..=max_cost).prop_map(|(key, priority, cost)| {
            Step::Push {
                key,
                priority,
                cost,
            }
        });
    proptest::collection::vec(prop_oneof![3 => push, 2 => Just(Step::Pop)], 0..len)
}

fn share(quantum: u32, weights: &[u32]) -> FairShare {
    let mut share = FairShare::new(NonZeroU32::new(quantum).unwrap());
    for (key, &w) in KEYS.iter().zip(weights) {
        if let Some(key) = key {
            share = share.weight(*key, NonZeroU32::new(w).unwrap());
        }
    }
    share
}

/// The queues `run_checked` drives: the fair queue, and the strict one to
/// show that the checker catches unfairness.
trait Subject {
    fn push(&mut self, item: Item, priority: Priority) -> Result<(), swarm_queue::QueueFull<Item>>;
    fn pop(&mut self) -> Option<(Item, Priority)>;
    fn peek(&self) -> Option<(&Item, Priority)>;
    fn len(&self) -> usize;
    fn pop_order(&self) -> Vec<u64>;
}

impl Subject for FairQueue<Item> {
    fn push(&mut self, item: Item, priority: Priority) -> Result<(), swarm_queue::QueueFull<Item>> {
        FairQueue::push(self, item, priority)
    }
    fn pop(&mut self) -> Option<(Item, Priority)> {
        FairQueue::pop(self)
    }
    fn peek(&self) -> Option<(&Item, Priority)> {
        FairQueue::peek(self)
    }
    fn len(&self) -> usize {
        FairQueue::len(self)
    }
    fn pop_order(&self) -> Vec<u64> {
        self.iter().map(|(item, _)| item.0).collect()
    }
}

impl Subject for PriorityQueue<Item> {
    fn push(&mut self, item: Item, priority: Priority) -> Result<(), swarm_queue::QueueFull<Item>> {
        PriorityQueue::push(self, item, priority)
    }
    fn pop(&mut self) -> Option<(Item, Priority)> {
        PriorityQueue::pop(self)
    }
    fn peek(&self) -> Option<(&Item, Priority)> {
        PriorityQueue::peek(self)
    }
    fn len(&self) -> usize {
        PriorityQueue::len(self)
    }
    fn pop_order(&self) -> Vec<u64> {
        self.iter().map(|(item, _)| item.0).collect()
    }
}

/// What one waiting key has seen since it last popped (or joined its level).
#[derive(Default, Debug)]
struct Window {
    units: u64,
    others: BTreeSet<usize>,
}

/// Runs `steps` on `queue`, checking after each pop: nothing lost or
/// duplicated, FIFO within each key, and the DRR bound for every key that
/// waited while backlogged. The bound: the units of other keys popped in the
/// key's level between two of its pops (or since it joined) are at most
/// `r × m × (quantum × max_weight + max_cost − 1)`, with `m` the number of
/// other keys popped meanwhile (at most the active keys − 1) and
/// `r = ⌈max_cost / quantum⌉` the rounds a key may need to save up for its
/// next item (1 when every cost is at most the quantum).
fn run_checked<Q: Subject>(
    queue: &mut Q,
    steps: &[Step],
    quantum: u64,
    max_weight: u64,
    max_cost: u64,
) -> Result<(), String> {
    let mut lists: HashMap<(usize, usize), VecDeque<u64>> = HashMap::new();
    let mut windows: HashMap<(usize, usize), Window> = HashMap::new();
    let mut next = 0u64;
    let rounds = max_cost.div_ceil(quantum);
    let per_turn = rounds * (quantum * max_weight + max_cost - 1);
    let pop = |queue: &mut Q,
               lists: &mut HashMap<(usize, usize), VecDeque<u64>>,
               windows: &mut HashMap<(usize, usize), Window>|
     -> Result<bool, String> {
        let peeked = queue.peek().map(|(item, p)| (*item, p));
        let Some(((id, key, cost), priority)) = queue.pop() else {
            return if lists.values().all(VecDeque::is_empty) {
                Ok(false)
            } else {
                Err("pop returned nothing with items queued".into())
            };
        };
        if peeked != Some(((id, key, cost), priority)) {
            return Err(format!("peek said {peeked:?}, pop gave {id}"));
        }
        let level = priority.level();
        let k = KEYS.iter().position(|x| *x == key).ok_or("unknown key")?;
        let list = lists.get_mut(&(level, k)).ok_or("pop of an unknown key")?;
        if list.pop_front() != Some(id) {
            return Err(format!("id {id} out of FIFO order within its key"));
        }
        if let Some(window) = windows.remove(&(level, k)) {
            let m = window.others.len() as u64;
            if window.units > m * per_turn {
                return Err(format!(
                    "key {k} waited while {} units of {m} other keys popped (bound {})",
                    window.units,
                    m * per_turn
                ));
            }
        }
        for ((l, other), window) in windows.iter_mut() {
            if *l == level && *other != k {
                window.units += u64::from(cost.max(1));
                window.others.insert(k);
            }
        }
        if lists.get(&(level, k)).is_some_and(|v| !v.is_empty()) {
            windows.insert((level, k), Window::default());
        }
        Ok(true)
    };
    for step in steps {
        match *step {
            Step::Push {
                key,
                priority,
                cost,
            } => {
                let list = lists.entry((priority.level(), key)).or_default();
                let joined = list.is_empty();
                queue
                    .push((next, KEYS[key], cost), priority)
                    .map_err(|_| "unbounded queue refused a push")?;
                list.push_back(next);
                next += 1;
                if joined {
                    windows.insert((priority.level(), key), Window::default());
                }
            }
            Step::Pop => {
                pop(queue, &mut lists, &mut windows)?;
            }
        }
        let expected: usize = lists.values().map(VecDeque::len).sum();
        if queue.len() != expected {
            return Err(format!("len {} but {expected} queued", queue.len()));
        }
    }
    // The pop-order iterator predicts the drain exactly.
    let predicted: Vec<u64> = queue.pop_order();
    let mut drained = Vec::new();
    loop {
        let before = queue.peek().map(|(item, _)| item.0);
        if !pop(queue, &mut lists, &mut windows)? {
            break;
        }
        drained.extend(before);
    }
    if predicted != drained {
        return Err(format!(
            "iter predicted {predicted:?}, pops gave {drained:?}"
        ));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Unit costs, random quantum, weights and aging: the bound, FIFO per key,
    /// nothing lost or duplicated, iter = pop order.
    #[test]
    fn drr_bound_with_unit_costs(
        quantum in 1u32..4,
        weights in proptest::collection::vec(1u32..4, KEYS.len()),
        aging in proptest::option::of(model::aging_policy()),
        steps in steps(1, 400),
    ) {
        let max_weight = u64::from(*weights.iter().max().unwrap_or(&1));
        let mut queue = FairQueue::new(share(quantum, &weights), key_of);
        if let Some(aging) = aging {
            queue.set_aging(Some(aging));
        }
        run_checked(&mut queue, &steps, u64::from(quantum), max_weight, 1)
            .map_err(TestCaseError::fail)?;
    }

    /// Costs up to the quantum: the bound with the carried-over deficit.
    #[test]
    fn drr_bound_with_costs(
        quantum in 1u32..6,
        weights in proptest::collection::vec(1u32..3, KEYS.len()),
        seed_steps in steps(5, 400),
    ) {
        // Costs above the quantum are outside the bound: clamp them.
        let steps: Vec<Step> = seed_steps
            .into_iter()
            .map(|s| match s {
                Step::Push { key, priority, cost } => Step::Push { key, priority, cost: cost.min(quantum) },
                Step::Pop => Step::Pop,
            })
            .collect();
        let max_weight = u64::from(*weights.iter().max().unwrap_or(&1));
        let mut queue = FairQueue::new(share(quantum, &weights), key_of);
        run_checked(&mut queue, &steps, u64::from(quantum), max_weight, u64::from(quantum))
            .map_err(TestCaseError::fail)?;
    }

    /// Costs far above the quantum (the rounds in which nobody can pay are
    /// granted at once): the bound with `r` rounds of saving up, nothing lost,
    /// FIFO per key, iter = pop order.
    #[test]
    fn large_costs_keep_the_bound_in_rounds(
        quantum in 1u32..3,
        weights in proptest::collection::vec(1u32..3, KEYS.len()),
        steps in steps(1000, 300),
    ) {
        let max_weight = u64::from(*weights.iter().max().unwrap_or(&1));
        let mut queue = FairQueue::new(share(quantum, &weights), key_of);
        run_checked(&mut queue, &steps, u64::from(quantum), max_weight, 1000)
            .map_err(TestCaseError::fail)?;
    }

    /// With a single key (or only keyless items) a fair queue is exactly the
    /// FIFO-per-level queue: the reference model's full check, including
    /// capacity, aging, retain, remove/take and the pop-order iterator.
    #[test]
    fn one_key_is_the_fifo_queue(config in model::config(), ops in model::ops(200), keyed: bool) {
        let (share, key_of): (FairShare, KeyOf<u64>) = if keyed {
            (FairShare::default(), |_| (Some("only"), 3))
        } else {
            (FairShare::new(NonZeroU32::new(2).unwrap()), |_| (None, 1))
        };
        let mut queue = match config.capacity {
            Some(capacity) => FairQueue::bounded(capacity, share, key_of),
            None => FairQueue::new(share, key_of),
        };
        queue.set_aging(config.aging);
        let mut reference = config.model();
        model::check_ops(&mut queue, &mut reference, &ops)?;
    }

    /// Every key backlogged at one level: after every pop, each key's served
    /// units stay within `2·q_i + c_max·(1 + n·w_i/W)` of its weighted share.
    #[test]
    fn weights_give_proportional_shares(
        quantum in 1u32..5,
        weights in proptest::collection::vec(1u32..5, KEYS.len()),
        costs in proptest::collection::vec(1u32..5, 64),
        pops in 100usize..2000,
    ) {
        // The "no key" group (key 0) always has weight 1.
        let mut weights = weights;
        weights[0] = 1;
        let mut queue = FairQueue::new(share(quantum, &weights), key_of);
        let mut id = 0;
        for k in 0..KEYS.len() {
            for i in 0..2000 {
                queue.push((id, KEYS[k], costs[(i + k) % costs.len()]), Priority::Normal).unwrap();
                id += 1;
            }
        }
        let c_max = f64::from(*costs.iter().max().unwrap());
        let total_weight: f64 = weights.iter().map(|&w| f64::from(w)).sum();
        let n = KEYS.len() as f64;
        let mut served = [0f64; KEYS.len()];
        let mut total = 0f64;
        for _ in 0..pops {
            let ((_, key, cost), _) = queue.pop().unwrap();
            let k = KEYS.iter().position(|x| *x == key).unwrap();
            served[k] += f64::from(cost);
            total += f64::from(cost);
            for k in 0..KEYS.len() {
                let w = f64::from(weights[k]);
                let fair = total * w / total_weight;
                let bound = 2.0 * f64::from(quantum) * w + c_max * (1.0 + n * w / total_weight);
                prop_assert!(
                    (served[k] - fair).abs() <= bound,
                    "key {k} (weight {w}) served {} units, its share is {fair:.1}, bound {bound:.1}",
                    served[k]
                );
            }
        }
    }

    /// Removal paths (retain, remove_where, take_where, remove_first) on many
    /// keys: each id comes out exactly once, FIFO within its key.
    #[test]
    fn removals_lose_and_duplicate_nothing(
        steps in proptest::collection::vec((0..KEYS.len(), model::priority(), 1u32..4, 0u8..10), 0..300),
    ) {
        let mut queue = FairQueue::new(FairShare::default(), key_of)
            .with_aging(AgingPolicy::new(NonZeroU32::new(2).unwrap()));
        let mut out: Vec<Item> = Vec::new();
        let mut pushed = 0u64;
        for (key, priority, cost, action) in steps {
            match action {
                0..=4 => {
                    queue.push((pushed, KEYS[key], cost), priority).unwrap();
                    pushed += 1;
                }
                5 | 6 => out.extend(queue.pop().map(|(i, _)| i)),
                7 => queue.retain(|i| {
                    let keep = i.0 % 7 != 3;
                    if !keep { out.push(*i) }
                    keep
                }),
                8 => out.extend(queue.take_where(3, |i| i.0 % 3 == 0).into_iter().map(|(i, _)| i)),
                _ => out.extend(queue.remove_first(|i| i.1 == KEYS[key]).map(|(i, _)| i)),
            }
            prop_assert_eq!(queue.len() + out.len(), pushed as usize);
            let fresh = queue.iter().count();
            prop_assert_eq!(fresh, queue.len());
        }
        out.extend(queue.drain().map(|(i, _)| i));
        let mut ids: Vec<u64> = out.iter().map(|i| i.0).collect();
        ids.sort_unstable();
        prop_assert_eq!(ids, (0..pushed).collect::<Vec<_>>());
        prop_assert_eq!(queue.active_keys(Priority::Normal), 0);
    }
}

/// The checker must catch an unfair queue: the FIFO queue lets a big backlog
/// of one key run ahead of a key that arrives later.
#[test]
fn checker_catches_a_fifo_queue() {
    let mut steps = Vec::new();
    for _ in 0..20 {
        steps.push(Step::Push {
            key: 1,
            priority: Priority::Normal,
            cost: 1,
        });
    }
    for _ in 0..2 {
        steps.push(Step::Push {
            key: 2,
            priority: Priority::Normal,
            cost: 1,
        });
    }
    steps.extend([Step::Pop; 22]);
    let mut fifo = PriorityQueue::new();
    assert!(run_checked(&mut fifo, &steps, 1, 1, 1).is_err());
    let mut fair = FairQueue::new(FairShare::default(), key_of);
    assert_eq!(run_checked(&mut fair, &steps, 1, 1, 1), Ok(()));
}

#[test]
fn a_late_small_tenant_is_served_every_other_pop() {
    let mut queue = FairQueue::new(FairShare::default(), key_of);
    for id in 0..1000 {
        queue.push((id, Some("big"), 1), Priority::Normal).unwrap();
    }
    for id in 1000..1003 {
        queue
            .push((id, Some("small"), 1), Priority::Normal)
            .unwrap();
    }
    let order: Vec<u64> = queue.drain().take(8).map(|(i, _)| i.0).collect();
    assert_eq!(order, [0, 1000, 1, 1001, 2, 1002, 3, 4]);
}

#[test]
fn priorities_still_come_first() {
    let mut queue = FairQueue::new(FairShare::default(), key_of);
    queue.push((0, Some("a"), 1), Priority::Low).unwrap();
    queue.push((1, Some("b"), 1), Priority::Normal).unwrap();
    queue.push((2, Some("a"), 1), Priority::Critical).unwrap();
    let order: Vec<u64> = queue.drain().map(|(i, _)| i.0).collect();
    assert_eq!(order, [2, 1, 0]);
}

/// A key's state is dropped with its backlog: a stream of distinct keys,
/// each queued and served alone, leaves the queue as small as it started.
#[test]
fn memory_follows_live_keys_not_keys_ever_seen() {
    fn leaked(item: &(u64, Box<str>)) -> (Option<&str>, u32) {
        (Some(&item.1), 1)
    }
    let mut queue = FairQueue::new(FairShare::default(), leaked);
    let mut peak = 0;
    for id in 0..20_000u64 {
        queue
            .push((id, format!("tenant-{id}").into()), Priority::Normal)
            .unwrap();
        queue
            .push((id, format!("tenant-{}", id + 1).into()), Priority::Normal)
            .unwrap();
        assert_eq!(queue.active_keys(Priority::Normal), 2);
        queue.pop().unwrap();
        queue.pop().unwrap();
        assert_eq!(queue.active_keys(Priority::Normal), 0);
        if id == 100 {
            peak = queue.heap_bytes();
        }
    }
    assert!(
        queue.heap_bytes() <= peak,
        "{} > {peak}",
        queue.heap_bytes()
    );
}
