//! Cost of `EventBus::emit` with 0, 1 and 8 synchronous handlers, with and
//! without an async subscriber draining a stream on another thread.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use swarm_core::event::AgentAvailable;
use swarm_core::{AgentId, EventBus, Subscription};

fn handlers(bus: &EventBus, n: usize, sink: &Arc<AtomicU64>) -> Vec<Subscription> {
    (0..n)
        .map(|_| {
            let sink = Arc::clone(sink);
            bus.on::<AgentAvailable>(move |e| {
                sink.fetch_add(e.agent_id.as_u64(), Ordering::Relaxed);
            })
        })
        .collect()
}

fn bus_emit(c: &mut Criterion) {
    let mut group = c.benchmark_group("bus_emit");
    group.throughput(Throughput::Elements(1));
    let event = AgentAvailable {
        agent_id: AgentId::new(1),
    };
    for subscriber in [false, true] {
        for n in [0usize, 1, 8] {
            let bus = EventBus::new();
            let sink = Arc::new(AtomicU64::new(0));
            let _subs = handlers(&bus, n, &sink);
            let runtime = subscriber.then(|| {
                let rt = benches::runtime(1);
                let mut stream = bus.subscribe();
                rt.spawn(async move { while stream.next().await.is_some() {} });
                rt
            });
            let label = if subscriber {
                "with_subscriber"
            } else {
                "no_subscriber"
            };
            group.bench_with_input(BenchmarkId::new(label, n), &n, |b, _| {
                b.iter(|| bus.emit(black_box(event.clone())))
            });
            drop(bus);
            drop(runtime);
        }
    }
    group.finish();
}

criterion_group!(benches, bus_emit);
criterion_main!(benches);
