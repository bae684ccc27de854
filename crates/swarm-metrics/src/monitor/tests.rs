use std::sync::Arc;
use std::thread;
use std::time::Duration;

use swarm_core::event::TaskCritical;
use swarm_core::{EventBus, EventKind, TaskId};

use super::EventMonitor;

#[test]
fn report_summarizes_each_kind() {
    let monitor = EventMonitor::with_shards(1);
    for micros in 1..=100 {
        monitor.record(EventKind::TaskAssigned, Duration::from_micros(micros));
    }
    monitor.record(EventKind::AgentBusy, Duration::from_nanos(10));
    let report = monitor.report();
    let assigned = report.get(EventKind::TaskAssigned).unwrap();
    assert_eq!(assigned.count, 100);
    // 3 significant figures: within 0.1%.
    let near = |d: Duration, micros: f64| (d.as_nanos() as f64 - micros * 1e3).abs() <= micros;
    assert!(near(assigned.mean, 50.5), "{:?}", assigned.mean);
    assert!(near(assigned.p50, 50.0), "{:?}", assigned.p50);
    assert!(near(assigned.p99, 99.0), "{:?}", assigned.p99);
    assert!(near(assigned.max, 100.0), "{:?}", assigned.max);
    assert_eq!(report.get(EventKind::TaskCreated), None);
    assert_eq!(report.total_events(), 101);
    let kinds: Vec<_> = report.iter().map(|k| k.kind).collect();
    assert_eq!(
        kinds,
        [EventKind::TaskAssigned, EventKind::AgentBusy],
        "catalog order"
    );
}

#[test]
fn table_has_a_header_a_row_per_kind_and_a_total() {
    let monitor = EventMonitor::new();
    monitor.record(EventKind::TaskCompleted, Duration::from_micros(1500));
    monitor.record(EventKind::WorkStolen, Duration::from_nanos(800));
    let table = monitor.report().to_string();
    let lines: Vec<_> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[0].starts_with("event") && lines[0].contains("p99"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("task:completed") && lines[1].contains("1.50ms"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("work:stolen") && lines[2].contains("800ns"),
        "{table}"
    );
    assert!(
        lines[3].starts_with("total") && lines[3].ends_with(" 2"),
        "{table}"
    );
}

#[test]
fn many_threads_count_every_record_exactly_once() {
    let monitor = EventMonitor::with_shards(3);
    let threads = 8;
    let per_thread = 2_000u64;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let monitor = monitor.clone();
            thread::spawn(move || {
                for i in 0..per_thread {
                    let kind = EventKind::ALL[(t + i as usize) % EventKind::COUNT];
                    monitor.record(kind, Duration::from_nanos(i + 1));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let report = monitor.report();
    assert_eq!(report.total_events(), threads as u64 * per_thread);
    let max = report.iter().map(|k| k.max).max().unwrap();
    assert!(max >= Duration::from_nanos(per_thread) && max < Duration::from_nanos(per_thread + 5));
}

#[test]
fn attach_times_every_emit_and_reset_forgets() {
    let monitor = EventMonitor::new();
    let bus = EventBus::new();
    let subscription = monitor.attach(&bus).unwrap();
    for n in 0..4 {
        bus.emit(TaskCritical {
            task_id: TaskId::from_u64(n),
        });
    }
    assert_eq!(
        monitor.report().get(EventKind::TaskCritical).unwrap().count,
        4
    );
    drop(subscription);
    bus.emit(TaskCritical {
        task_id: TaskId::from_u64(9),
    }); // no handler left: not timed
    assert_eq!(monitor.report().total_events(), 4);
    monitor.reset();
    assert!(monitor.report().is_empty());
    let _ = Arc::new(monitor);
}
