//! What `SwarmMetrics` makes of each event.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "prometheus")]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use support::value;
use swarm_core::event::{
    AgentAvailable, AgentBusy, AgentCreated, AgentError, AgentHealth, AgentRemoved, FailureReason,
    QueueLocation, TaskDeadLettered, TaskDequeued, TaskEnqueued, TaskFailed,
};
use swarm_core::{AgentId, EventBus, EventKind, Priority, TaskId};
use swarm_metrics::{AgentState, AttachError, EventMonitor, PrometheusExporter, SwarmMetrics};

fn setup() -> (PrometheusExporter, SwarmMetrics, EventBus) {
    let exporter = PrometheusExporter::builder()
        .without_listener()
        .build()
        .unwrap();
    let metrics = exporter.swarm_metrics();
    (exporter, metrics, EventBus::new())
}

fn agents(text: &str, state: &str) -> f64 {
    value(text, &format!(r#"swarm_agents{{state="{state}"}}"#))
}

fn failed(will_retry: bool) -> TaskFailed {
    TaskFailed {
        task_id: TaskId::from_u64(1),
        agent_id: None,
        attempt: 1,
        reason: FailureReason::Timeout,
        error: "too slow".into(),
        will_retry,
        retry_in: None,
    }
}

#[test]
fn every_series_exists_at_zero_before_any_event() {
    let (exporter, _metrics, _bus) = setup();
    let text = exporter.render();
    for kind in EventKind::ALL {
        assert_eq!(
            value(&text, &format!(r#"swarm_events_total{{event="{kind}"}}"#)),
            0.0
        );
        assert_eq!(
            value(
                &text,
                &format!(r#"swarm_event_handler_duration_seconds_count{{event="{kind}"}}"#)
            ),
            0.0
        );
    }
    for p in Priority::ALL {
        assert_eq!(
            value(&text, &format!(r#"swarm_queue_depth{{priority="{p}"}}"#)),
            0.0
        );
        assert_eq!(
            value(
                &text,
                &format!(r#"swarm_tasks_submitted_total{{priority="{p}"}}"#)
            ),
            0.0
        );
    }
    for s in AgentState::ALL {
        assert_eq!(agents(&text, s.as_str()), 0.0);
    }
    assert!(
        text.contains("# HELP swarm_task_queue_wait_seconds "),
        "{text}"
    );
    assert!(
        text.contains("# TYPE swarm_task_queue_wait_seconds histogram"),
        "{text}"
    );
    assert!(text.contains("# TYPE swarm_events_total counter"), "{text}");
    assert!(text.contains("# TYPE swarm_agents gauge"), "{text}");
}

#[test]
fn failures_retries_and_dead_letters() {
    let (exporter, metrics, bus) = setup();
    let _s = metrics.attach(&bus).unwrap();
    bus.emit(failed(true));
    bus.emit(failed(true));
    bus.emit(failed(false));
    bus.emit(TaskDeadLettered {
        task_id: TaskId::from_u64(1),
        attempts: 3,
        errors: vec![],
    });
    let text = exporter.render();
    assert_eq!(
        value(&text, r#"swarm_tasks_finished_total{outcome="failed"}"#),
        3.0
    );
    assert_eq!(
        value(
            &text,
            r#"swarm_tasks_finished_total{outcome="dead_lettered"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&text, r#"swarm_tasks_finished_total{outcome="completed"}"#),
        0.0
    );
    assert_eq!(value(&text, "swarm_task_retries_total"), 2.0);
}

#[test]
fn queue_depth_follows_enqueue_and_dequeue_per_priority() {
    let (exporter, metrics, bus) = setup();
    let _s = metrics.attach(&bus).unwrap();
    let enqueue = |p, q| {
        bus.emit(TaskEnqueued {
            task_id: TaskId::from_u64(1),
            priority: p,
            queue: q,
        })
    };
    enqueue(Priority::Low, QueueLocation::Global);
    enqueue(Priority::Low, QueueLocation::Local(AgentId::new(1)));
    enqueue(Priority::Critical, QueueLocation::Distributed);
    bus.emit(TaskDequeued {
        task_id: TaskId::from_u64(1),
        priority: Priority::Low,
        queue: QueueLocation::Global,
    });
    let text = exporter.render();
    assert_eq!(value(&text, r#"swarm_queue_depth{priority="low"}"#), 1.0);
    assert_eq!(
        value(&text, r#"swarm_queue_depth{priority="critical"}"#),
        1.0
    );
    assert_eq!(value(&text, r#"swarm_queue_depth{priority="normal"}"#), 0.0);
}

#[test]
fn agent_lifecycle_moves_one_unit_between_states() {
    let (exporter, metrics, bus) = setup();
    let _s = metrics.attach(&bus).unwrap();
    let a = AgentId::new(1);
    let r = AgentId::new(2);
    bus.emit(AgentCreated {
        agent_id: a,
        reserve: false,
    });
    bus.emit(AgentCreated {
        agent_id: r,
        reserve: true,
    });
    let t = exporter.render();
    assert_eq!((agents(&t, "idle"), agents(&t, "reserve")), (1.0, 1.0));

    bus.emit(AgentAvailable { agent_id: r }); // reserve activated
    bus.emit(AgentBusy {
        agent_id: a,
        task_id: TaskId::from_u64(1),
    });
    let t = exporter.render();
    assert_eq!(
        (
            agents(&t, "idle"),
            agents(&t, "busy"),
            agents(&t, "reserve")
        ),
        (1.0, 1.0, 0.0)
    );

    let error = |health| AgentError {
        agent_id: a,
        reason: FailureReason::Error,
        error: "e".into(),
        health,
    };
    bus.emit(error(AgentHealth::Degraded)); // still busy
    assert_eq!(metrics.agent_state(a), Some(AgentState::Busy));
    bus.emit(error(AgentHealth::Unhealthy));
    bus.emit(AgentAvailable { agent_id: a }); // unhealthy agents take no tasks: stays unhealthy
    let t = exporter.render();
    assert_eq!((agents(&t, "busy"), agents(&t, "unhealthy")), (0.0, 1.0));

    bus.emit(AgentRemoved {
        agent_id: a,
        reason: "unhealthy".into(),
    });
    bus.emit(AgentRemoved {
        agent_id: AgentId::new(99),
        reason: "never seen".into(),
    });
    let t = exporter.render();
    assert_eq!(
        AgentState::ALL.map(|s| agents(&t, s.as_str())),
        [1.0, 0.0, 0.0, 0.0]
    );
    assert_eq!(metrics.agent_state(a), None);
}

#[test]
fn a_second_observer_is_refused_and_nothing_is_subscribed() {
    let (_exporter, metrics, bus) = setup();
    let _s = metrics.attach(&bus).unwrap();
    let before = bus.handler_count(EventKind::TaskCreated);
    assert_eq!(
        metrics.attach(&bus).unwrap_err(),
        AttachError::ObserverTaken
    );
    assert_eq!(
        EventMonitor::new().attach(&bus).unwrap_err(),
        AttachError::ObserverTaken
    );
    assert_eq!(bus.handler_count(EventKind::TaskCreated), before);
    assert!(
        AttachError::ObserverTaken
            .to_string()
            .contains("FanOutObserver")
    );
}

#[test]
fn dropping_the_subscription_stops_recording() {
    let (exporter, metrics, bus) = setup();
    let s = metrics.attach(&bus).unwrap();
    bus.emit(failed(true));
    drop(s);
    bus.emit(failed(true));
    assert_eq!(
        value(
            &exporter.render(),
            r#"swarm_events_total{event="task:failed"}"#
        ),
        1.0
    );
}

#[test]
fn attach_with_monitor_feeds_both() {
    let (exporter, metrics, bus) = setup();
    let monitor = EventMonitor::new();
    let _s = metrics.attach_with_monitor(&bus, &monitor).unwrap();
    for _ in 0..5 {
        bus.emit(failed(false));
    }
    let report = monitor.report();
    assert_eq!(report.get(EventKind::TaskFailed).map(|k| k.count), Some(5));
    assert_eq!(report.total_events(), 5);
    let t = exporter.render();
    assert_eq!(
        value(
            &t,
            r#"swarm_event_handler_duration_seconds_count{event="task:failed"}"#
        ),
        5.0
    );
}

#[test]
fn record_and_store_append_handle_without_a_bus() {
    let (exporter, metrics, _bus) = setup();
    metrics.record(&failed(true).into());
    metrics.store_append_histogram().record(0.5);
    metrics.record_store_append(Duration::from_secs(1));
    let t = exporter.render();
    assert_eq!(value(&t, "swarm_task_retries_total"), 1.0);
    assert_eq!(value(&t, "swarm_store_append_duration_seconds_count"), 2.0);
    assert_eq!(value(&t, "swarm_store_append_duration_seconds_sum"), 1.5);
}

#[test]
fn new_without_any_recorder_records_nothing_and_does_not_panic() {
    let metrics = SwarmMetrics::new();
    let bus = EventBus::new();
    let _s = metrics.attach(&bus).unwrap();
    bus.emit(failed(true));
    bus.emit(AgentCreated {
        agent_id: AgentId::new(1),
        reserve: false,
    });
    // The agent map is kept even when the gauges go nowhere.
    assert_eq!(metrics.agent_state(AgentId::new(1)), Some(AgentState::Idle));
}

#[derive(Clone, Debug)]
enum Op {
    Created(u64, bool),
    Available(u64),
    Busy(u64),
    Error(u64, bool),
    Removed(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0u64..6;
    prop_oneof![
        (id.clone(), any::<bool>()).prop_map(|(a, r)| Op::Created(a, r)),
        id.clone().prop_map(Op::Available),
        id.clone().prop_map(Op::Busy),
        (id.clone(), any::<bool>()).prop_map(|(a, u)| Op::Error(a, u)),
        id.prop_map(Op::Removed),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The gauges always equal the number of agents a simple model has in each
    /// state, and never go negative, whatever order the agent events come in.
    #[test]
    fn agents_gauge_matches_a_model(ops in proptest::collection::vec(op(), 0..60)) {
        let (exporter, metrics, bus) = setup();
        let _s = metrics.attach(&bus).unwrap();
        let mut model: HashMap<u64, &str> = HashMap::new();
        for op in ops {
            match op {
                Op::Created(a, reserve) => {
                    bus.emit(AgentCreated { agent_id: AgentId::new(a), reserve });
                    model.insert(a, if reserve { "reserve" } else { "idle" });
                }
                Op::Available(a) => {
                    bus.emit(AgentAvailable { agent_id: AgentId::new(a) });
                    if model.get(&a) != Some(&"unhealthy") {
                        model.insert(a, "idle");
                    }
                }
                Op::Busy(a) => {
                    bus.emit(AgentBusy { agent_id: AgentId::new(a), task_id: TaskId::from_u64(1) });
                    model.insert(a, "busy");
                }
                Op::Error(a, unhealthy) => {
                    let health = if unhealthy { AgentHealth::Unhealthy } else { AgentHealth::Degraded };
                    bus.emit(AgentError { agent_id: AgentId::new(a), reason: FailureReason::Error, error: String::new(), health });
                    if unhealthy {
                        model.insert(a, "unhealthy");
                    }
                }
                Op::Removed(a) => {
                    bus.emit(AgentRemoved { agent_id: AgentId::new(a), reason: String::new() });
                    model.remove(&a);
                }
            }
        }
        let text = exporter.render();
        for state in AgentState::ALL {
            let expected = model.values().filter(|s| **s == state.as_str()).count() as f64;
            prop_assert_eq!(agents(&text, state.as_str()), expected);
        }
        for (a, state) in &model {
            prop_assert_eq!(metrics.agent_state(AgentId::new(*a)).map(AgentState::as_str), Some(*state));
        }
    }
}

#[test]
fn snapshot_failures_are_counted_from_zero() {
    let (exporter, metrics, _bus) = setup();
    let text = exporter.render();
    assert!(
        support::samples(&text).contains_key("swarm_snapshot_failures_total"),
        "swarm_snapshot_failures_total is not exported at start:\n{text}"
    );
    assert_eq!(value(&text, "swarm_snapshot_failures_total"), 0.0);
    metrics.record_snapshot_failure();
    metrics.record_snapshot_failure();
    assert_eq!(
        value(&exporter.render(), "swarm_snapshot_failures_total"),
        2.0
    );
}
