//! Stress: OS threads own local queues and steal from each other while items
//! are pushed, popped, stolen, rebalanced, removed and handed back by
//! deregistering agents. Every item must come out exactly once.

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

fn worker(pool: &StealPool<u32>, me: u64, out: &AtomicUsize) -> Vec<u32> {
    let agent = AgentId::new(me);
    let mut mine = (0..ITEMS).filter(|i| producer_of(*i) == me).peekable();
    let mut seen = Vec::new();
    let mut rounds = 0u64;
    loop {
        rounds += 1;
        // Produce a batch now and then, so production and consumption overlap.
        if rounds % 4 == 0 {
            for item in mine.by_ref().take(BATCH as usize) {
                let pinned = item % 7 == 0;
                pool.push_local(agent, item, priority_of(item), pinned)
                    .unwrap();
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
                pool.rebalance();
            }
            2 if rounds % 2048 == 0 => {
                for (_, item, _) in pool.remove_where(|i| i % 1000 == 999) {
                    seen.push(item);
                    out.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {}
        }
        let popped = pool.pop_local(agent).or_else(|| {
            pool.steal_half(agent)?;
            pool.pop_local(agent)
        });
        match popped {
            Some((item, p)) => {
                assert_eq!(p, priority_of(item));
                seen.push(item);
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
    for handle in handles {
        for item in handle.join().unwrap() {
            count[item as usize] += 1;
        }
    }
    let wrong: Vec<_> = count
        .iter()
        .enumerate()
        .filter(|(_, n)| **n != 1)
        .take(10)
        .collect();
    assert!(wrong.is_empty(), "items not seen exactly once: {wrong:?}");
    assert_eq!(pool.total_len(), 0);
    let stats = pool.stats();
    assert!(stats.stolen >= stats.steals);
    assert!(stats.rebalanced >= stats.rebalance_moves);
}
