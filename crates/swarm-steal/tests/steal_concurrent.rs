//! Stress: OS threads own local queues and steal from each other while items
//! are pushed, popped, stolen, rebalanced, removed and handed back by
//! deregistering agents. Every item must come out exactly once; steals must
//! really happen and move items between owners (never a pinned one); and the
//! pool's statistics must agree with the moves its callers were told of.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use swarm_core::{AgentId, Priority};
use swarm_steal::StealPool;

const THREADS: u64 = 4;
const ITEMS: u32 = 1_000_000;
const BATCH: u32 = 256;
// An agent that thread 0 keeps deregistering and registering again.
const SPARE: AgentId = AgentId::new(100);

fn priority_of(item: u32) -> Priority {
    Priority::from_level((item % 4) as usize).unwrap()
}

/// Thread 0 produces half of the items, the others a sixth each: imbalance to steal from.
fn producer_of(item: u32) -> u64 {
    if item % 2 == 0 {
        0
    } else {
        1 + u64::from(item / 2 % 3)
    }
}

/// What one thread saw.
#[derive(Default)]
struct Seen {
    /// Items it popped from its own queue.
    popped: Vec<u32>,
    /// Items it took out with `remove_where`.
    removed: Vec<u32>,
    /// Items it pushed pinned to its own queue.
    pinned: Vec<u32>,
    /// Its successful steals, and the items they moved.
    steals: u64,
    stolen: u64,
    /// Its rebalances' moves, and the items they moved.
    rebalance_moves: u64,
    rebalanced: u64,
}

fn worker(pool: &StealPool<u32>, me: u64, out: &AtomicUsize) -> Seen {
    let agent = AgentId::new(me);
    let mut mine = (0..ITEMS).filter(|i| producer_of(*i) == me).peekable();
    let mut seen = Seen::default();
    let mut rounds = 0u64;
    loop {
        rounds += 1;
        // Produce a batch now and then, so production and consumption overlap.
        if rounds % 4 == 0 {
            for item in mine.by_ref().take(BATCH as usize) {
                let pinned = item % 7 == 0;
                pool.push_local(agent, item, priority_of(item), pinned)
                    .unwrap();
                if pinned {
                    seen.pinned.push(item);
                }
            }
        }
        match me {
            0 if rounds % 512 == 0 => {
                // Churn an agent: whatever it held comes back and is re-queued here.
                for (item, p) in pool.deregister(SPARE) {
                    pool.push_local(agent, item, p, false).unwrap();
                }
                pool.register(SPARE);
                for item in mine.by_ref().take(8) {
                    pool.push_local(SPARE, item, priority_of(item), false)
                        .unwrap();
                }
            }
            1 if rounds % 1024 == 0 => {
                for moved in pool.rebalance() {
                    assert_ne!(moved.from, moved.to);
                    assert!(moved.count >= 1, "{moved:?}");
                    seen.rebalance_moves += 1;
                    seen.rebalanced += moved.count as u64;
                }
            }
            2 if rounds % 2048 == 0 => {
                for (_, item, _) in pool.remove_where(|i| i % 1000 == 999) {
                    seen.removed.push(item);
                    out.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {}
        }
        let popped = pool.pop_local(agent).or_else(|| {
            let stolen = pool.steal_half(agent)?;
            assert_eq!(stolen.to, agent);
            assert_ne!(stolen.from, agent, "stole from itself");
            assert!(stolen.count >= 1, "{stolen:?}");
            seen.steals += 1;
            seen.stolen += stolen.count as u64;
            pool.pop_local(agent)
        });
        match popped {
            Some((item, p)) => {
                assert_eq!(p, priority_of(item));
                seen.popped.push(item);
                out.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                if mine.peek().is_none() && out.load(Ordering::Relaxed) == ITEMS as usize {
                    return seen;
                }
                if me == 0 && mine.peek().is_none() {
                    // The spare agent has no thread of its own: drain it here.
                    for (item, p) in pool.deregister(SPARE) {
                        pool.push_local(agent, item, p, false).unwrap();
                    }
                }
                thread::yield_now();
            }
        }
    }
}

#[test]
fn every_item_comes_out_exactly_once() {
    let pool = Arc::new(StealPool::new(3));
    for t in 0..THREADS {
        pool.register(AgentId::new(t));
    }
    let out = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let pool = Arc::clone(&pool);
            let out = Arc::clone(&out);
            thread::spawn(move || worker(&pool, t, &out))
        })
        .collect();
    let mut count = vec![0u8; ITEMS as usize];
    let mut total = Seen::default();
    // Items popped by a thread other than the one that pushed them: each
    // got there by a steal or a rebalance (the spare agent's items are
    // pushed and re-queued by thread 0, so they count as its own).
    let mut moved_items = 0u64;
    let mut popped_by = vec![u8::MAX; ITEMS as usize];
    let mut pinned = Vec::new();
    for (t, handle) in handles.into_iter().enumerate() {
        let seen = handle.join().unwrap();
        for &item in &seen.popped {
            count[item as usize] += 1;
            popped_by[item as usize] = t as u8;
            if producer_of(item) != t as u64 {
                moved_items += 1;
            }
        }
        pinned.extend(seen.pinned.iter().map(|&item| (item, t as u8)));
        for &item in &seen.removed {
            count[item as usize] += 1;
        }
        total.steals += seen.steals;
        total.stolen += seen.stolen;
        total.rebalance_moves += seen.rebalance_moves;
        total.rebalanced += seen.rebalanced;
    }
    let wrong: Vec<_> = count
        .iter()
        .enumerate()
        .filter(|(_, n)| **n != 1)
        .take(10)
        .collect();
    assert!(wrong.is_empty(), "items not seen exactly once: {wrong:?}");
    assert_eq!(pool.total_len(), 0);

    // Steals really happened, and moved items between owners.
    assert!(total.steals > 0, "no steal succeeded");
    assert!(
        moved_items > 0,
        "no item was popped by another thread than its producer"
    );
    assert!(
        moved_items <= total.stolen + total.rebalanced,
        "{moved_items} items changed owner, but steals moved {} and rebalances {}",
        total.stolen,
        total.rebalanced
    );
    // Pinned items never move: each is popped by the thread that pushed it
    // (or taken out by remove_where).
    assert!(
        pinned.len() > ITEMS as usize / 8,
        "too few pinned items to say anything"
    );
    let pinned_moved: Vec<(u32, u8, u8)> = pinned
        .iter()
        .filter(|(item, t)| popped_by[*item as usize] != u8::MAX && popped_by[*item as usize] != *t)
        .map(|(item, t)| (*item, *t, popped_by[*item as usize]))
        .collect();
    assert!(
        pinned_moved.is_empty(),
        "pinned items popped by another thread (item, pushed by, popped by): {:?}",
        &pinned_moved[..pinned_moved.len().min(10)]
    );
    // The pool's statistics are the moves its callers were told of.
    let stats = pool.stats();
    assert_eq!(
        (stats.steals, stats.stolen),
        (total.steals, total.stolen),
        "steal statistics (steals, items) against what steal_half returned"
    );
    assert_eq!(
        (stats.rebalance_moves, stats.rebalanced),
        (total.rebalance_moves, total.rebalanced),
        "rebalance statistics (moves, items) against what rebalance returned"
    );
}
