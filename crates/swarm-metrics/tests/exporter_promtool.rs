//! The exposition passes `promtool check metrics` (Prometheus's own linter).
//!
//! promtool comes with Debian's `prometheus` package, which `.ci/run` installs.
//! Without it the test prints "skipped: promtool not found" and passes, except
//! under `SWARM_CI=1`, where a missing promtool is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "prometheus")]

mod support;

use std::time::Duration;

use swarm_core::event::{
    AgentBusy, AgentCreated, AgentError, AgentHealth, FailureReason, QueueLocation, TaskAssigned,
    TaskCompleted, TaskCreated, TaskDeadLettered, TaskEnqueued, WorkStolen,
};
use swarm_core::{AgentId, EventBus, Priority, Task, TaskId};
use swarm_metrics::PrometheusExporter;

/// An exposition with every metric fed at least once.
fn exposition() -> String {
    let exporter = PrometheusExporter::builder()
        .without_listener()
        .build()
        .unwrap();
    let metrics = exporter.swarm_metrics();
    let bus = EventBus::new();
    let _subscription = metrics.attach(&bus).unwrap();
    let _panicky = bus.on::<TaskDeadLettered>(|_| panic!("handler bug"));
    let task = Task::builder("k")
        .priority(Priority::Critical)
        .build()
        .unwrap();
    bus.emit(TaskCreated { task: task.clone() });
    bus.emit(TaskEnqueued {
        task_id: task.id(),
        priority: Priority::Critical,
        queue: QueueLocation::Global,
    });
    bus.emit(AgentCreated {
        agent_id: AgentId::new(1),
        reserve: true,
    });
    bus.emit(AgentBusy {
        agent_id: AgentId::new(2),
        task_id: task.id(),
    });
    bus.emit(TaskAssigned {
        task_id: task.id(),
        agent_id: AgentId::new(2),
        attempt: 1,
        priority: Priority::Critical,
        queue_wait: Duration::from_micros(12),
    });
    bus.emit(TaskCompleted {
        task_id: task.id(),
        agent_id: AgentId::new(2),
        attempt: 1,
        duration: Duration::from_secs(2),
        output: Default::default(),
    });
    bus.emit(AgentError {
        agent_id: AgentId::new(3),
        reason: FailureReason::Panic,
        error: "x".into(),
        health: AgentHealth::Unhealthy,
    });
    bus.emit(TaskDeadLettered {
        task_id: TaskId::from_u64(5),
        attempts: 3,
        errors: vec![],
    });
    bus.emit(WorkStolen {
        from: AgentId::new(1),
        to: AgentId::new(2),
        count: 2,
        task_ids: vec![],
    });
    metrics.record_store_append(Duration::from_micros(80));
    let text = exporter.render();
    // The panicking handler was counted, so that series is fed too.
    assert_eq!(
        support::value(
            &text,
            r#"swarm_event_handler_panics_total{event="task:dead_lettered"}"#
        ),
        1.0
    );
    text
}

#[test]
fn exposition_passes_promtool_check_metrics() {
    let text = exposition();
    let Some(promtool) = swarm_testkit::promtool::find() else {
        return;
    };
    if let Err(finding) = swarm_testkit::promtool::check_metrics(&promtool, &text) {
        panic!("{finding}\nexposition:\n{text}");
    }
}
