//! Cost of `StealPool::steal_half` and of `pop_local` under contention, each
//! beside a baseline measured in the same run.
//!
//! - `steal_half/*`: one steal from a victim holding `n` stealable items into an
//!   empty thief (setup excluded). Baselines: crossbeam-deque's
//!   `Stealer::steal_batch` (which moves at most 32 items per call, so it does
//!   less work for n = 256) and two `Mutex<VecDeque>` moving half by hand.
//! - `pop_local/*`: the owner pops one item and pushes it back (queue length
//!   stays near 64), alone (`uncontended`) or while another thread keeps
//!   stealing half of that queue and giving the items back one push at a time
//!   (`contended`). Baseline: a `Mutex<VecDeque>` with the same access patterns.

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use crossbeam_deque::Worker;
use parking_lot::Mutex;
use swarm_core::{AgentId, Priority};
use swarm_steal::StealPool;

const OWNER: AgentId = AgentId::new(0);
const THIEF: AgentId = AgentId::new(1);
const QUEUE_LEN: u64 = 64;

fn priority_of(i: u64) -> Priority {
    Priority::from_level((i % 4) as usize).unwrap_or(Priority::Low)
}

fn pool_with(items: u64) -> StealPool<u64> {
    let pool = StealPool::new(3);
    for agent in 0..4 {
        pool.register(AgentId::new(agent));
    }
    for i in 0..items {
        if pool.push_local(OWNER, i, priority_of(i), false).is_err() {
            unreachable!("the owner is registered");
        }
    }
    pool
}

fn steal_half(c: &mut Criterion) {
    let mut group = c.benchmark_group("steal_half");
    group.measurement_time(Duration::from_secs(3));
    for n in [16u64, 256] {
        group.bench_with_input(BenchmarkId::new("steal_pool", n), &n, |b, &n| {
            b.iter_batched(
                || pool_with(n),
                |pool| {
                    black_box(pool.steal_half(THIEF));
                    pool
                },
                BatchSize::SmallInput,
            )
        });
        group.bench_with_input(
            BenchmarkId::new("baseline_crossbeam_steal_batch", n),
            &n,
            |b, &n| {
                b.iter_batched(
                    || {
                        let victim = Worker::new_fifo();
                        (0..n).for_each(|i| victim.push(i));
                        let stealer = victim.stealer();
                        (victim, stealer, Worker::new_fifo())
                    },
                    |(victim, stealer, thief)| {
                        black_box(stealer.steal_batch(&thief).is_success());
                        (victim, stealer, thief)
                    },
                    BatchSize::SmallInput,
                )
            },
        );
        group.bench_with_input(
            BenchmarkId::new("baseline_mutex_vecdeque", n),
            &n,
            |b, &n| {
                b.iter_batched(
                    || {
                        let victim: Mutex<VecDeque<u64>> = Mutex::new((0..n).collect());
                        (victim, Mutex::new(VecDeque::new()))
                    },
                    |(victim, thief)| {
                        {
                            let mut from = victim.lock();
                            let mut to = thief.lock();
                            let half = from.len() / 2;
                            to.extend(from.drain(..half));
                        }
                        (victim, thief)
                    },
                    BatchSize::SmallInput,
                )
            },
        );
    }
    group.finish();
}

/// Runs `work` on another thread until the returned guard is dropped.
struct Background {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Background {
    fn start(mut work: impl FnMut() + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                work();
            }
        });
        Background {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn pop_local(c: &mut Criterion) {
    let mut group = c.benchmark_group("pop_local");
    group.measurement_time(Duration::from_secs(3));
    for contended in [false, true] {
        let label = if contended {
            "contended"
        } else {
            "uncontended"
        };

        let pool = Arc::new(pool_with(QUEUE_LEN));
        let background = contended.then(|| {
            let pool = Arc::clone(&pool);
            Background::start(move || {
                // Steal half of the owner's queue, then give it back.
                if pool.steal_half(THIEF).is_some() {
                    while let Some((item, p)) = pool.pop_local(THIEF) {
                        if pool.push_local(OWNER, item, p, false).is_err() {
                            unreachable!("the owner is registered");
                        }
                    }
                }
            })
        });
        group.bench_function(BenchmarkId::new("steal_pool", label), |b| {
            let mut next = QUEUE_LEN;
            b.iter(|| {
                if let Some(popped) = black_box(pool.pop_local(OWNER)) {
                    next = popped.0;
                }
                if pool
                    .push_local(OWNER, next, priority_of(next), false)
                    .is_err()
                {
                    unreachable!("the owner is registered");
                }
            })
        });
        drop(background);

        let queue: Arc<Mutex<VecDeque<(u64, Priority)>>> = Arc::new(Mutex::new(
            (0..QUEUE_LEN).map(|i| (i, priority_of(i))).collect(),
        ));
        let background = contended.then(|| {
            let queue = Arc::clone(&queue);
            Background::start(move || {
                // The same pattern: take half in one lock, give back one by one.
                let stolen: Vec<_> = {
                    let mut q = queue.lock();
                    let half = q.len() / 2;
                    q.drain(..half).collect()
                };
                for item in stolen {
                    queue.lock().push_back(item);
                }
            })
        });
        group.bench_function(BenchmarkId::new("baseline_mutex_vecdeque", label), |b| {
            let mut next = (QUEUE_LEN, Priority::Normal);
            b.iter(|| {
                if let Some(popped) = black_box(queue.lock().pop_front()) {
                    next = popped;
                }
                queue.lock().push_back(next);
            })
        });
        drop(background);
    }
    group.finish();
}

criterion_group!(benches, steal_half, pop_local);
criterion_main!(benches);
