//! Cost of recording one event with swarm-metrics, against an `EventBus` emit
//! with a no-op handler measured in the same run.
//!
//! - `baseline_emit_noop_handler`: emit with one no-op `on_any` handler.
//! - `emit_with_swarm_metrics`: the same emit with `SwarmMetrics` attached
//!   (its `on_any` handler plus the observer recording handler time); the
//!   difference to the baseline is what metrics add to an emit.
//! - `record/<event>`: `SwarmMetrics::record` alone, per event shape (counter
//!   only, counter + histogram, counter + agent state gauges).
//! - `event_monitor_record`, `store_append`: the other hot-path entry points.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use swarm_core::event::{AgentBusy, QueueLocation, TaskAssigned, TaskCompleted, TaskEnqueued};
use swarm_core::{AgentId, Event, EventBus, EventKind, Priority, TaskId};
use swarm_metrics::{EventMonitor, PrometheusExporter};

fn completed() -> TaskCompleted {
    TaskCompleted {
        task_id: TaskId::from_u64(1),
        agent_id: AgentId::new(1),
        attempt: 1,
        duration: Duration::from_micros(250),
        output: "ok".into(),
    }
}

fn exporter() -> PrometheusExporter {
    match PrometheusExporter::builder()
        .without_listener()
        .upkeep_interval(Duration::from_millis(100))
        .build()
    {
        Ok(exporter) => exporter,
        Err(e) => panic!("cannot build the exporter: {e}"),
    }
}

fn metrics(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics");
    group.throughput(Throughput::Elements(1));

    let baseline = EventBus::new();
    let _noop = baseline.on_any(|e| {
        black_box(e);
    });
    group.bench_function("baseline_emit_noop_handler", |b| {
        b.iter(|| baseline.emit(black_box(completed())))
    });

    let exporter = exporter();
    let recorder = exporter.swarm_metrics();
    let instrumented = EventBus::new();
    let _attached = match recorder.attach(&instrumented) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    group.bench_function("emit_with_swarm_metrics", |b| {
        b.iter(|| instrumented.emit(black_box(completed())))
    });

    let events: [(&str, Event); 4] = [
        ("task_completed", completed().into()),
        (
            "task_assigned",
            TaskAssigned {
                task_id: TaskId::from_u64(1),
                agent_id: AgentId::new(1),
                attempt: 1,
                priority: Priority::High,
                queue_wait: Duration::from_micros(40),
            }
            .into(),
        ),
        (
            "task_enqueued",
            TaskEnqueued {
                task_id: TaskId::from_u64(1),
                priority: Priority::Normal,
                queue: QueueLocation::Global,
            }
            .into(),
        ),
        (
            "agent_busy",
            AgentBusy {
                agent_id: AgentId::new(3),
                task_id: TaskId::from_u64(1),
            }
            .into(),
        ),
    ];
    for (name, event) in &events {
        group.bench_function(format!("record/{name}"), |b| {
            b.iter(|| recorder.record(black_box(event)))
        });
    }

    group.bench_function("store_append", |b| {
        b.iter(|| recorder.record_store_append(black_box(Duration::from_micros(90))))
    });

    let monitor = EventMonitor::new();
    group.bench_function("event_monitor_record", |b| {
        b.iter(|| {
            monitor.record(
                black_box(EventKind::TaskCompleted),
                black_box(Duration::from_nanos(700)),
            )
        })
    });
    group.finish();
    drop(exporter);
}

criterion_group!(benches, metrics);
criterion_main!(benches);
