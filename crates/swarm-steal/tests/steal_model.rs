//! Model-based property test: random interleavings of register, deregister,
//! push, pop, steal, rebalance and removal over up to 16 agents, run against
//! a plain reference model of the documented rules.
//!
//! After every step: each agent's queue equals the model's (items, priorities,
//! pinned flags, order); every item pushed is in exactly one place (a queue,
//! popped, handed back by deregister, or removed); pinned items are only ever in
//! the queue they were pushed to; each queue is in priority order; a steal took
//! exactly floor(stealable / 2) from a victim above the threshold; after a
//! rebalance no queue with a stealable item exceeds the shortest by more than
//! the threshold; the counters match.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use swarm_core::{AgentId, Priority};
use swarm_steal::{StealPool, Stolen};

const AGENTS: u8 = 16;

#[derive(Clone, Debug)]
enum Op {
    Register(u8),
    Deregister(u8),
    Push {
        agent: u8,
        priority: Priority,
        pinned: bool,
        count: u8,
    },
    Pop(u8),
    PopIfAtLeast(u8, Priority),
    Steal(u8),
    Rebalance,
    Remove {
        modulus: u32,
        rest: u32,
    },
}

fn priority() -> impl Strategy<Value = Priority> {
    (0usize..4).prop_map(|l| Priority::from_level(l).unwrap())
}

fn agent() -> impl Strategy<Value = u8> {
    0..AGENTS
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => agent().prop_map(Op::Register),
        1 => agent().prop_map(Op::Deregister),
        8 => (agent(), priority(), prop::bool::weighted(0.3), 1u8..12).prop_map(
            |(agent, priority, pinned, count)| Op::Push { agent, priority, pinned, count }
        ),
        4 => agent().prop_map(Op::Pop),
        1 => (agent(), priority()).prop_map(|(a, p)| Op::PopIfAtLeast(a, p)),
        5 => agent().prop_map(Op::Steal),
        2 => Just(Op::Rebalance),
        1 => (2u32..7, 0u32..7).prop_map(|(modulus, rest)| Op::Remove { modulus, rest: rest % modulus }),
    ]
}

type Item = (u32, Priority, bool);

/// The reference: each queue a Vec in pop order.
#[derive(Default)]
struct Model {
    threshold: usize,
    queues: BTreeMap<u8, Vec<Item>>,
    steals: u64,
    stolen: u64,
    empty_steals: u64,
    rebalance_moves: u64,
    rebalanced: u64,
}

fn stealable(queue: &[Item]) -> usize {
    queue.iter().filter(|(_, _, pinned)| !pinned).count()
}

fn insert(queue: &mut Vec<Item>, item: Item) {
    // Back of its level: before the first strictly less urgent item.
    let at = queue
        .iter()
        .position(|(_, p, _)| *p < item.1)
        .unwrap_or(queue.len());
    queue.insert(at, item);
}

fn take_stealable(queue: &mut Vec<Item>, n: usize) -> Vec<Item> {
    let mut taken = Vec::new();
    let mut kept = Vec::new();
    for item in queue.drain(..) {
        if !item.2 && taken.len() < n {
            taken.push(item);
        } else {
            kept.push(item);
        }
    }
    *queue = kept;
    taken
}

impl Model {
    fn steal(&mut self, thief: u8) -> Option<(Stolen, Vec<u32>)> {
        let thief_queue = self.queues.get(&thief)?;
        let threshold = self.threshold;
        let eligible = |s: usize| s > threshold && s >= 2;
        let victim = if thief_queue.is_empty() {
            let mut best: Option<(u8, usize, usize)> = None;
            for (&id, q) in &self.queues {
                let s = stealable(q);
                if id == thief || !eligible(s) {
                    continue;
                }
                if best.is_none_or(|(_, bs, bl)| (s, q.len()) > (bs, bl)) {
                    best = Some((id, s, q.len()));
                }
            }
            best
        } else {
            None
        };
        let Some((victim, s, _)) = victim else {
            self.empty_steals += 1;
            return None;
        };
        let taken = take_stealable(self.queues.get_mut(&victim).unwrap(), s / 2);
        let ids = taken.iter().map(|(id, _, _)| *id).collect();
        let count = taken.len();
        let to = self.queues.get_mut(&thief).unwrap();
        for (id, p, _) in taken {
            insert(to, (id, p, false));
        }
        self.steals += 1;
        self.stolen += count as u64;
        let stolen = Stolen {
            from: AgentId::new(victim.into()),
            to: AgentId::new(thief.into()),
            count,
        };
        Some((stolen, ids))
    }

    fn rebalance(&mut self) -> Vec<Stolen> {
        let mut moves = Vec::new();
        while let Some((recipient, shortest)) = self
            .queues
            .iter()
            .min_by_key(|(id, q)| (q.len(), **id))
            .map(|(id, q)| (*id, q.len()))
        {
            let mut donor: Option<(u8, usize, usize)> = None;
            for (&id, q) in &self.queues {
                let difference = q.len() - shortest;
                let n = stealable(q).min(difference / 2);
                if id == recipient || difference <= self.threshold || n == 0 {
                    continue;
                }
                if donor.is_none_or(|(_, len, _)| q.len() > len) {
                    donor = Some((id, q.len(), n));
                }
            }
            let Some((donor, _, n)) = donor else { break };
            let taken = take_stealable(self.queues.get_mut(&donor).unwrap(), n);
            let count = taken.len();
            let to = self.queues.get_mut(&recipient).unwrap();
            for (id, p, _) in taken {
                insert(to, (id, p, false));
            }
            self.rebalance_moves += 1;
            self.rebalanced += count as u64;
            moves.push(Stolen {
                from: AgentId::new(donor.into()),
                to: AgentId::new(recipient.into()),
                count,
            });
        }
        moves
    }
}

fn id(a: u8) -> AgentId {
    AgentId::new(a.into())
}

#[derive(Default)]
struct Ledger {
    pushed: u32,
    /// Where each pinned item was pushed.
    home: HashMap<u32, u8>,
    /// Items that left the pool: popped, deregistered or removed.
    out: Vec<u32>,
}

fn check(pool: &StealPool<u32>, model: &Model, ledger: &Ledger) -> Result<(), TestCaseError> {
    let agents: Vec<AgentId> = model.queues.keys().map(|a| id(*a)).collect();
    prop_assert_eq!(pool.agents(), agents);
    let mut seen = vec![0u32; ledger.pushed as usize];
    for a in 0..AGENTS {
        let items = pool.local_items(id(a));
        let expected = model.queues.get(&a).cloned().unwrap_or_default();
        prop_assert_eq!(&items, &expected, "queue of agent {}", a);
        prop_assert_eq!(pool.local_len(id(a)), expected.len());
        prop_assert_eq!(pool.stealable_len(id(a)), stealable(&expected));
        prop_assert_eq!(pool.peek_local(id(a)), expected.first().map(|(_, p, _)| *p));
        // Priority order within the queue.
        prop_assert!(items.windows(2).all(|w| w[0].1 >= w[1].1));
        for (item, _, pinned) in items {
            seen[item as usize] += 1;
            if pinned {
                prop_assert_eq!(
                    ledger.home.get(&item),
                    Some(&a),
                    "pinned item {} moved",
                    item
                );
            }
        }
    }
    for item in &ledger.out {
        seen[*item as usize] += 1;
    }
    for (item, n) in seen.iter().enumerate() {
        prop_assert_eq!(*n, 1, "item {} seen {} times", item, n);
    }
    let total: usize = model.queues.values().map(Vec::len).sum();
    prop_assert_eq!(pool.total_len(), total);
    let busiest = model
        .queues
        .iter()
        .filter(|(_, q)| !q.is_empty())
        .max_by_key(|(a, q)| (q.len(), std::cmp::Reverse(**a)))
        .map(|(a, q)| (id(*a), q.len()));
    prop_assert_eq!(pool.busiest(), busiest);
    let stats = pool.stats();
    prop_assert_eq!(
        (stats.steals, stats.stolen, stats.empty_steals),
        (model.steals, model.stolen, model.empty_steals)
    );
    prop_assert_eq!(
        (stats.rebalance_moves, stats.rebalanced),
        (model.rebalance_moves, model.rebalanced)
    );
    Ok(())
}

fn run(threshold: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let pool = StealPool::new(threshold);
    let mut model = Model {
        threshold,
        ..Model::default()
    };
    let mut ledger = Ledger::default();
    for op in ops {
        match op {
            Op::Register(a) => {
                let fresh = !model.queues.contains_key(&a);
                model.queues.entry(a).or_default();
                prop_assert_eq!(pool.register(id(a)), fresh);
            }
            Op::Deregister(a) => {
                let expected: Vec<(u32, Priority)> = model
                    .queues
                    .remove(&a)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(i, p, _)| (i, p))
                    .collect();
                let got = pool.deregister(id(a));
                prop_assert_eq!(&got, &expected);
                ledger.out.extend(got.iter().map(|(i, _)| *i));
            }
            Op::Push {
                agent,
                priority,
                pinned,
                count,
            } => {
                for _ in 0..count {
                    let item = ledger.pushed;
                    ledger.pushed += 1;
                    match pool.push_local(id(agent), item, priority, pinned) {
                        Ok(()) => {
                            let q = model.queues.get_mut(&agent);
                            prop_assert!(q.is_some(), "push to unregistered agent accepted");
                            insert(q.unwrap(), (item, priority, pinned));
                            if pinned {
                                ledger.home.insert(item, agent);
                            }
                        }
                        Err(err) => {
                            prop_assert!(!model.queues.contains_key(&agent));
                            prop_assert_eq!(err.into_parts(), (item, priority));
                            ledger.out.push(item);
                        }
                    }
                }
            }
            Op::Pop(a) => {
                let expected = model
                    .queues
                    .get_mut(&a)
                    .filter(|q| !q.is_empty())
                    .map(|q| q.remove(0))
                    .map(|(i, p, _)| (i, p));
                let got = pool.pop_local(id(a));
                prop_assert_eq!(got, expected);
                ledger.out.extend(got.map(|(i, _)| i));
            }
            Op::PopIfAtLeast(a, min) => {
                let expected = model
                    .queues
                    .get_mut(&a)
                    .filter(|q| q.first().is_some_and(|(_, p, _)| *p >= min))
                    .map(|q| q.remove(0))
                    .map(|(i, p, _)| (i, p));
                let got = pool.pop_local_if(id(a), |_, p| p >= min);
                prop_assert_eq!(got, expected);
                ledger.out.extend(got.map(|(i, _)| i));
            }
            Op::Steal(a) => {
                let victim_before = |pool: &StealPool<u32>, s: &Stolen| pool.stealable_len(s.from);
                let expected = model.steal(a);
                let snapshot: BTreeMap<AgentId, usize> = pool
                    .agents()
                    .into_iter()
                    .map(|a| (a, pool.stealable_len(a)))
                    .collect();
                let got = pool.steal_half_with(id(a), |i, _| *i);
                prop_assert_eq!(&got, &expected);
                if let Some((stolen, ids)) = got {
                    // The rule, checked independently of the model.
                    let before = snapshot[&stolen.from];
                    prop_assert!(before > threshold);
                    prop_assert_eq!(stolen.count, before / 2);
                    prop_assert_eq!(ids.len(), stolen.count);
                    prop_assert_eq!(victim_before(&pool, &stolen), before - stolen.count);
                    prop_assert_eq!(pool.local_len(id(a)), stolen.count);
                }
            }
            Op::Rebalance => {
                let expected = model.rebalance();
                let got = pool.rebalance();
                prop_assert_eq!(&got, &expected);
                prop_assert!(!pool.is_imbalanced());
                // Post-condition, checked independently of the model.
                let lens: Vec<(usize, usize)> = pool
                    .agents()
                    .into_iter()
                    .map(|a| (pool.local_len(a), pool.stealable_len(a)))
                    .collect();
                if let Some(shortest) = lens.iter().map(|(l, _)| *l).min() {
                    for (len, s) in lens {
                        let difference = len - shortest;
                        prop_assert!(
                            s == 0 || difference <= threshold || difference < 2,
                            "unbalanced after rebalance: len {} stealable {} shortest {}",
                            len,
                            s,
                            shortest
                        );
                    }
                }
            }
            Op::Remove { modulus, rest } => {
                let mut expected = Vec::new();
                for (a, q) in model.queues.iter_mut() {
                    q.retain(|(i, p, _)| {
                        if i % modulus == rest {
                            expected.push((id(*a), *i, *p));
                            false
                        } else {
                            true
                        }
                    });
                }
                let got = pool.remove_where(|i| i % modulus == rest);
                prop_assert_eq!(&got, &expected);
                ledger.out.extend(got.iter().map(|(_, i, _)| *i));
            }
        }
        check(&pool, &model, &ledger)?;
    }
    // Deregister everyone: all items come back.
    for a in 0..AGENTS {
        ledger
            .out
            .extend(pool.deregister(id(a)).into_iter().map(|(i, _)| i));
    }
    model.queues.clear();
    check(&pool, &model, &ledger)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn pool_matches_model(threshold in 0usize..6, ops in prop::collection::vec(op(), 1..120)) {
        run(threshold, ops)?;
    }

    #[test]
    fn pool_matches_model_with_all_agents_registered(
        threshold in 0usize..6,
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let ops = (0..AGENTS).map(Op::Register).chain(ops).collect();
        run(threshold, ops)?;
    }
}
