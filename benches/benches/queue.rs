//! swarm-queue: PriorityQueue push+pop against a BinaryHeap keyed by
//! (priority, seq); SharedQueue P producers x C consumers against tokio mpsc.
//!
//! Run: `cargo bench -p benches --bench queue`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use swarm_queue::{Priority, PriorityQueue, SharedQueue};

/// A fixed priority mix: 10% critical, 20% high, 40% normal, 30% low.
fn priority_of(i: u64) -> Priority {
    match i % 10 {
        0 => Priority::Critical,
        1 | 2 => Priority::High,
        3..=6 => Priority::Normal,
        _ => Priority::Low,
    }
}

const BATCH: u64 = 1024;

fn push_pop(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue/push_pop");
    group.throughput(Throughput::Elements(BATCH));

    // Fill BATCH items, then pop them all: ns/element = one push + one pop.
    group.bench_function("priority_queue/batch", |b| {
        let mut q = PriorityQueue::new();
        b.iter(|| {
            for i in 0..BATCH {
                let _ = q.push(black_box(i), priority_of(i));
            }
            while let Some(x) = q.pop() {
                black_box(x);
            }
        })
    });
    group.bench_function("binary_heap/batch", |b| {
        let mut heap = BinaryHeap::new();
        let mut seq = 0u64;
        b.iter(|| {
            for i in 0..BATCH {
                heap.push((priority_of(i), Reverse(seq), black_box(i)));
                seq += 1;
            }
            while let Some(x) = heap.pop() {
                black_box(x);
            }
        })
    });

    // Steady state around 10 000 queued items: push one, pop one.
    group.bench_function("priority_queue/steady_10k", |b| {
        let mut q = PriorityQueue::new();
        for i in 0..10_000 {
            let _ = q.push(i, priority_of(i));
        }
        let mut i = 10_000u64;
        b.iter(|| {
            for _ in 0..BATCH {
                let _ = q.push(black_box(i), priority_of(i));
                i += 1;
                black_box(q.pop());
            }
        })
    });
    group.bench_function("binary_heap/steady_10k", |b| {
        let mut heap = BinaryHeap::new();
        for i in 0..10_000u64 {
            heap.push((priority_of(i), Reverse(i), i));
        }
        let mut i = 10_000u64;
        b.iter(|| {
            for _ in 0..BATCH {
                heap.push((priority_of(i), Reverse(i), black_box(i)));
                i += 1;
                black_box(heap.pop());
            }
        })
    });

    // Aging on (k = 32): the cost of the per-level counters.
    group.bench_function("priority_queue_aging/batch", |b| {
        let mut q = PriorityQueue::new().with_aging(swarm_queue::AgingPolicy::default());
        b.iter(|| {
            for i in 0..BATCH {
                let _ = q.push(black_box(i), priority_of(i));
            }
            while let Some(x) = q.pop() {
                black_box(x);
            }
        })
    });

    // Fair share on, 16 keys (unit cost): the cost of deficit round robin.
    group.bench_function("fair_queue/batch_16_keys", |b| {
        const KEYS: [&str; 16] = [
            "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9", "k10", "k11", "k12", "k13",
            "k14", "k15",
        ];
        let mut q = swarm_queue::FairQueue::new(swarm_queue::FairShare::default(), |i: &u64| {
            (Some(KEYS[(*i % 16) as usize]), 1)
        });
        b.iter(|| {
            for i in 0..BATCH {
                let _ = q.push(black_box(i), priority_of(i));
            }
            while let Some(x) = q.pop() {
                black_box(x);
            }
        })
    });
    group.finish();
}

const ITEMS: u64 = 100_000;

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("cannot build the tokio runtime: {e}"),
    }
}

async fn shared_run(producers: u64, consumers: u64) {
    let queue = SharedQueue::bounded(1024);
    let per = ITEMS / producers;
    let cons: Vec<_> = (0..consumers)
        .map(|_| {
            let q = queue.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while let Some(x) = q.pop().await {
                    black_box(x);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let prods: Vec<_> = (0..producers)
        .map(|p| {
            let q = queue.clone();
            tokio::spawn(async move {
                for i in 0..per {
                    let _ = q.push(p * per + i, priority_of(i)).await;
                }
            })
        })
        .collect();
    for h in prods {
        let _ = h.await;
    }
    queue.close();
    let mut total = 0;
    for h in cons {
        total += h.await.unwrap_or(0);
    }
    assert_eq!(total, per * producers);
}

/// Baseline: a bounded tokio mpsc channel (FIFO, no priorities). Several
/// consumers share the receiver behind a tokio Mutex (mpsc is single-consumer).
async fn mpsc_run(producers: u64, consumers: u64) {
    let (tx, rx) = tokio::sync::mpsc::channel::<(u64, Priority)>(1024);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let per = ITEMS / producers;
    let cons: Vec<_> = (0..consumers)
        .map(|_| {
            let rx = Arc::clone(&rx);
            tokio::spawn(async move {
                let mut n = 0u64;
                loop {
                    let next = rx.lock().await.recv().await;
                    match next {
                        Some(x) => {
                            black_box(x);
                            n += 1;
                        }
                        None => break n,
                    }
                }
            })
        })
        .collect();
    let prods: Vec<_> = (0..producers)
        .map(|p| {
            let tx = tx.clone();
            tokio::spawn(async move {
                for i in 0..per {
                    let _ = tx.send((p * per + i, priority_of(i))).await;
                }
            })
        })
        .collect();
    drop(tx);
    for h in prods {
        let _ = h.await;
    }
    let mut total = 0;
    for h in cons {
        total += h.await.unwrap_or(0);
    }
    assert_eq!(total, per * producers);
}

fn shared(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("queue/shared");
    group.throughput(Throughput::Elements(ITEMS));
    group.sample_size(10);
    for (p, m) in [(1, 1), (1, 4), (4, 1), (4, 4)] {
        let id = format!("{p}x{m}");
        group.bench_with_input(
            BenchmarkId::new("shared_queue", &id),
            &(p, m),
            |b, &(p, m)| b.iter(|| rt.block_on(shared_run(p, m))),
        );
        group.bench_with_input(
            BenchmarkId::new("tokio_mpsc", &id),
            &(p, m),
            |b, &(p, m)| b.iter(|| rt.block_on(mpsc_run(p, m))),
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = push_pop, shared
}
criterion_main!(benches);
