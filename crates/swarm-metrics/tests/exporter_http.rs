//! The exporter serves the swarm metric set over real HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "http-listener")]

mod support;

use std::time::Duration;

use support::{http_get, http_request, samples};
use swarm_core::event::{
    AgentAvailable, AgentBusy, AgentCreated, FailureReason, QueueLocation, TaskAssigned,
    TaskCompleted, TaskCreated, TaskDequeued, TaskEnqueued, TaskFailed, WorkStolen,
};
use swarm_core::{AgentId, EventBus, Priority, Task, TaskId};
use swarm_metrics::PrometheusExporter;

fn ephemeral() -> PrometheusExporter {
    PrometheusExporter::builder()
        .listen_addr(([127, 0, 0, 1], 0).into())
        .build()
        .unwrap()
}

#[test]
fn scrape_over_http_shows_the_emitted_events() {
    let exporter = ephemeral();
    let addr = exporter.local_addr().unwrap();
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0);

    let bus = EventBus::new();
    let _subscription = exporter.swarm_metrics().attach(&bus).unwrap();
    let agent = AgentId::new(7);
    bus.emit(AgentCreated {
        agent_id: agent,
        reserve: false,
    });
    for n in 0..3 {
        let task = Task::builder("summarize")
            .priority(Priority::High)
            .build()
            .unwrap();
        bus.emit(TaskCreated { task: task.clone() });
        bus.emit(TaskEnqueued {
            task_id: task.id(),
            priority: Priority::High,
            queue: QueueLocation::Global,
        });
        if n == 2 {
            break; // the third stays queued
        }
        bus.emit(TaskDequeued {
            task_id: task.id(),
            priority: Priority::High,
            queue: QueueLocation::Global,
        });
        bus.emit(TaskAssigned {
            task_id: task.id(),
            agent_id: agent,
            attempt: 1,
            priority: Priority::High,
            queue_wait: Duration::from_millis(3),
        });
        bus.emit(AgentBusy {
            agent_id: agent,
            task_id: task.id(),
        });
        bus.emit(TaskCompleted {
            task_id: task.id(),
            agent_id: agent,
            attempt: 1,
            duration: Duration::from_millis(40),
            output: "ok".into(),
        });
        bus.emit(AgentAvailable { agent_id: agent });
    }
    bus.emit(TaskFailed {
        task_id: TaskId::from_u64(99),
        agent_id: Some(agent),
        attempt: 1,
        reason: FailureReason::Error,
        error: "boom".into(),
        will_retry: true,
        retry_in: Some(Duration::from_millis(100)),
    });
    bus.emit(WorkStolen {
        from: AgentId::new(1),
        to: agent,
        count: 4,
        task_ids: Vec::new(),
    });

    let (status, headers, body) = http_get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("Content-Type: text/plain; version=0.0.4"),
        "{headers}"
    );
    let got = samples(&body);
    let expect = [
        (r#"swarm_events_total{event="task:created"}"#, 3.0),
        (r#"swarm_events_total{event="task:completed"}"#, 2.0),
        (r#"swarm_events_total{event="system:shutdown"}"#, 0.0),
        (r#"swarm_tasks_submitted_total{priority="high"}"#, 3.0),
        (r#"swarm_tasks_submitted_total{priority="low"}"#, 0.0),
        (r#"swarm_tasks_finished_total{outcome="completed"}"#, 2.0),
        (r#"swarm_tasks_finished_total{outcome="failed"}"#, 1.0),
        (
            r#"swarm_tasks_finished_total{outcome="dead_lettered"}"#,
            0.0,
        ),
        ("swarm_task_retries_total", 1.0),
        (r#"swarm_queue_depth{priority="high"}"#, 1.0),
        (r#"swarm_queue_depth{priority="critical"}"#, 0.0),
        (r#"swarm_agents{state="idle"}"#, 1.0),
        (r#"swarm_agents{state="busy"}"#, 0.0),
        ("swarm_work_stolen_tasks_total", 4.0),
        (
            r#"swarm_task_queue_wait_seconds_count{priority="high"}"#,
            2.0,
        ),
        (
            r#"swarm_task_queue_wait_seconds_bucket{priority="high",le="0.0025"}"#,
            0.0,
        ),
        (
            r#"swarm_task_queue_wait_seconds_bucket{priority="high",le="0.005"}"#,
            2.0,
        ),
        (
            r#"swarm_task_queue_wait_seconds_bucket{priority="high",le="+Inf"}"#,
            2.0,
        ),
        ("swarm_task_run_duration_seconds_count", 2.0),
        (
            r#"swarm_event_handler_duration_seconds_count{event="task:created"}"#,
            3.0,
        ),
        ("swarm_store_append_duration_seconds_count", 0.0),
    ];
    for (series, value) in expect {
        assert_eq!(got.get(series), Some(&value), "{series} in:\n{body}");
    }
    let wait_sum = got[r#"swarm_task_queue_wait_seconds_sum{priority="high"}"#];
    assert!((wait_sum - 0.006).abs() < 1e-9, "queue wait sum {wait_sum}");
    let run_sum = got["swarm_task_run_duration_seconds_sum"];
    assert!((run_sum - 0.08).abs() < 1e-9, "run duration sum {run_sum}");

    // A later scrape sees later events.
    exporter
        .swarm_metrics()
        .record_store_append(Duration::from_micros(250));
    let (_, _, body) = http_get(addr, "/metrics?x=1");
    assert_eq!(
        samples(&body)["swarm_store_append_duration_seconds_count"],
        1.0
    );
}

#[test]
fn other_paths_and_methods_are_refused_and_health_answers() {
    let exporter = ephemeral();
    let addr = exporter.local_addr().unwrap();
    assert_eq!(http_get(addr, "/").0, "HTTP/1.1 404 Not Found");
    let (status, headers, _) = http_request(addr, "POST", "/metrics");
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert!(headers.contains("Allow: GET, HEAD"));
    assert_eq!(
        http_get(addr, "/health"),
        (
            "HTTP/1.1 200 OK".into(),
            "Content-Type: text/plain\r\nContent-Length: 3\r\nConnection: close".into(),
            "OK\n".into()
        )
    );
    let (status, headers, body) = http_request(addr, "HEAD", "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers.contains("Content-Length: "));
    assert!(body.is_empty());
}

#[test]
fn a_taken_port_is_a_clear_error_and_drop_frees_the_port() {
    let first = ephemeral();
    let addr = first.local_addr().unwrap();
    let err = PrometheusExporter::builder()
        .listen_addr(addr)
        .build()
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("cannot listen for scrapes on {addr}")),
        "{message}"
    );
    drop(first);
    // The listener thread is gone and the port can be bound again.
    let again = PrometheusExporter::builder()
        .listen_addr(addr)
        .build()
        .unwrap();
    assert_eq!(again.local_addr(), Some(addr));
    assert_eq!(http_get(addr, "/health").2, "OK\n");
}

#[test]
fn the_default_address_is_loopback_9464() {
    assert_eq!(
        swarm_metrics::DEFAULT_LISTEN_ADDR.to_string(),
        "127.0.0.1:9464"
    );
}

#[test]
fn bad_buckets_are_refused() {
    for buckets in [
        &[][..],
        &[0.1, 0.1][..],
        &[1.0, f64::NAN][..],
        &[2.0, 1.0][..],
    ] {
        let err = PrometheusExporter::builder()
            .without_listener()
            .buckets(buckets)
            .build()
            .unwrap_err();
        assert!(
            err.to_string().starts_with("histogram buckets must be"),
            "{err}"
        );
    }
    let custom = PrometheusExporter::builder()
        .without_listener()
        .buckets(&[0.5, 1.0])
        .global_label("node", "n1")
        .build()
        .unwrap();
    custom
        .swarm_metrics()
        .record_store_append(Duration::from_millis(700));
    let text = custom.render();
    assert_eq!(
        support::value(
            &text,
            r#"swarm_store_append_duration_seconds_bucket{node="n1",le="1"}"#
        ),
        1.0
    );
    assert_eq!(
        support::value(
            &text,
            r#"swarm_store_append_duration_seconds_bucket{node="n1",le="0.5"}"#
        ),
        0.0
    );
}

/// A client that opens a connection and sends a request head one byte every
/// 200 ms, never finishing it: returns how many bytes it got out before the
/// server hung up (all of them if it never did).
fn trickle(addr: std::net::SocketAddr, connected: std::sync::mpsc::Sender<()>) -> (usize, bool) {
    use std::io::Write;
    let head = format!("GET /metrics HTTP/1.1\r\nX-Slow: {}", "a".repeat(80));
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    for (sent, byte) in head.bytes().enumerate() {
        if stream.write_all(&[byte]).is_err() {
            return (sent, true);
        }
        if sent == 0 {
            connected.send(()).unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    (head.len(), false)
}

/// A GET that waits as long as it takes (the helper's 10 s read timeout would
/// hide the order this test is about).
fn patient_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn a_trickling_client_neither_blocks_scrapes_nor_holds_its_connection() {
    let exporter = ephemeral();
    let addr = exporter.local_addr().unwrap();
    let (connected, is_connected) = std::sync::mpsc::channel();
    // Connected (and so accepted) before the scrape: a listener that serves
    // one connection at a time is busy with it when the scrape arrives.
    let trickler = std::thread::spawn(move || trickle(addr, connected));
    is_connected.recv().unwrap();

    let response = patient_get(addr, "/metrics");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        !trickler.is_finished(),
        "the scrape was answered only after the trickling client gave up"
    );
    // The server hangs up on the trickler at its request deadline, long
    // before the trickler would have finished (it needs over 20 s).
    let (sent, cut_off) = trickler.join().unwrap();
    assert!(
        cut_off,
        "the trickling client sent all {sent} bytes of its head"
    );
}

#[test]
fn drop_does_not_wait_for_a_trickling_client() {
    let exporter = ephemeral();
    let addr = exporter.local_addr().unwrap();
    let (connected, is_connected) = std::sync::mpsc::channel();
    let trickler = std::thread::spawn(move || trickle(addr, connected));
    is_connected.recv().unwrap();
    drop(exporter);
    assert!(
        !trickler.is_finished(),
        "dropping the exporter waited for the trickling client to finish"
    );
    // The port is free again (the listener is gone).
    let again = PrometheusExporter::builder()
        .listen_addr(addr)
        .build()
        .unwrap();
    assert_eq!(http_get(addr, "/health").2, "OK\n");
    drop(again);
    let _ = trickler.join().unwrap();
}
