//! The management endpoints against a real server: overview, listing,
//! lookup with events, dead letters, pause/resume, scaling.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Harness, error_of};
use swarm::SimConfig;

fn quick() -> SimConfig {
    SimConfig::fixed(Duration::from_millis(1))
}

async fn submit(h: &Harness, body: Value) -> String {
    let (status, answer) = h.post("/api/v1/tasks", body).await;
    assert_eq!(status, 201, "{answer}");
    answer["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_has_every_field_and_counts_completions() {
    let h = Harness::start(2, quick()).await;
    for _ in 0..10 {
        submit(&h, json!({"kind": "k", "priority": "low"})).await;
    }
    let o = h
        .wait_for("/api/v1/overview", "10 completions", |o| {
            o["tasks"]["completed"] == 10
        })
        .await;
    for key in [
        "pending",
        "queued",
        "running",
        "completed",
        "failed",
        "dead_lettered",
        "cancelled",
    ] {
        assert!(o["tasks"][key].is_u64(), "tasks.{key} in {o}");
    }
    for p in ["critical", "high", "normal", "low"] {
        assert!(o["queues"][p].is_u64(), "queues.{p} in {o}");
    }
    assert!(o["queue_wait_ms"]["low"]["p50_ms"].is_number(), "{o}");
    assert!(o["queue_wait_ms"]["low"]["p99_ms"].is_number(), "{o}");
    assert!(o["throughput_per_sec"].is_number());
    assert_eq!(o["paused"], false);
    let agents = o["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 2, "{o}");
    for a in agents {
        for key in [
            "id",
            "health",
            "state",
            "current_task",
            "completed",
            "failed",
        ] {
            assert!(a.get(key).is_some(), "agent.{key} in {a}");
        }
    }
    let done: u64 = agents
        .iter()
        .map(|a| a["completed"].as_u64().unwrap())
        .sum();
    assert_eq!(done, 10);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_list_filters_and_pages_without_repeats() {
    let h = Harness::start(2, quick()).await;
    let mut ids = HashSet::new();
    for i in 0..7 {
        let kind = if i % 2 == 0 { "even" } else { "odd" };
        ids.insert(submit(&h, json!({"kind": kind})).await);
    }
    h.wait_for("/api/v1/overview", "7 completions", |o| {
        o["tasks"]["completed"] == 7
    })
    .await;
    let mut seen = Vec::new();
    let mut path = "/api/v1/tasks?status=completed&limit=3".to_owned();
    loop {
        let (status, page) = h.get(&path).await;
        assert_eq!(status, 200, "{page}");
        let tasks = page["tasks"].as_array().unwrap();
        assert!(tasks.len() <= 3);
        for t in tasks {
            assert_eq!(t["status"], "completed");
            assert!(t["id"].as_str().unwrap().starts_with("task-"));
            for key in [
                "kind",
                "priority",
                "attempts",
                "max_attempts",
                "agent",
                "errors",
                "created_at",
                "updated_at",
                "created_seq",
            ] {
                assert!(t.get(key).is_some(), "task.{key} in {t}");
            }
            seen.push(t["id"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => path = format!("/api/v1/tasks?status=completed&limit=3&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "{seen:?}");
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), ids);
    let (_, odd) = h.get("/api/v1/tasks?kind=odd").await;
    assert_eq!(odd["tasks"].as_array().unwrap().len(), 3);
    let (_, none) = h.get("/api/v1/tasks?status=running").await;
    assert_eq!(none["tasks"], json!([]));
    assert_eq!(none["next"], Value::Null);
    for bad in [
        "/api/v1/tasks?status=done",
        "/api/v1/tasks?limit=0",
        "/api/v1/tasks?limit=5000",
        "/api/v1/tasks?limit=many",
        "/api/v1/tasks?after=zz",
        "/api/v1/tasks?colour=red",
        "/api/v1/dead-letters?status=completed",
    ] {
        let (status, body) = h.get(bad).await;
        assert_eq!(status, 400, "{bad} -> {body}");
        error_of(&body);
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_looked_up_with_its_events_and_unknown_ids_are_404() {
    let h = Harness::start(1, quick()).await;
    let id = submit(&h, json!({"kind": "lookup", "priority": "critical"})).await;
    let path = format!("/api/v1/tasks/{id}");
    let body = h
        .wait_for(&path, "completion", |b| b["task"]["status"] == "completed")
        .await;
    assert_eq!(body["task"]["id"], id);
    assert_eq!(body["task"]["kind"], "lookup");
    assert_eq!(body["task"]["priority"], "critical");
    let events = body["events"].as_array().unwrap();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names.first(), Some(&"task:created"), "{names:?}");
    assert_eq!(names.last(), Some(&"task:completed"), "{names:?}");
    assert_eq!(events[0]["data"]["task"]["id"], id);
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let (status, body) = h.get("/api/v1/tasks/task-00000000000000aa").await;
    assert_eq!(status, 404, "{body}");
    error_of(&body);
    let (status, _) = h.get("/api/v1/tasks/nope").await;
    assert_eq!(status, 400);
    let (status, _) = h.get(&format!("{path}?events=0")).await;
    assert_eq!(status, 400);
    // A finished task cannot be cancelled: 409, not 404.
    let (status, body) = h.post(&format!("{path}/cancel"), Value::Null).await;
    assert_eq!(status, 409, "{body}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_listed_retried_to_completion_or_discarded() {
    let (h, failing) = Harness::flaky(1).await;
    let a = submit(&h, json!({"kind": "flaky"})).await;
    let b = submit(&h, json!({"kind": "flaky"})).await;
    let list = h
        .wait_for("/api/v1/dead-letters", "two dead letters", |l| {
            l["tasks"].as_array().is_some_and(|t| t.len() == 2)
        })
        .await;
    for t in list["tasks"].as_array().unwrap() {
        assert_eq!(t["status"], "dead_lettered");
        assert_eq!(t["errors"][0], "flaky: failing on purpose", "{t}");
    }
    // Retry and discard are actions: the token is needed.
    let (status, _) = h
        .post_as(
            &format!("/api/v1/dead-letters/{a}/retry"),
            None,
            Value::Null,
        )
        .await;
    assert_eq!(status, 401);
    failing.store(false, Ordering::SeqCst);
    let (status, body) = h
        .post(&format!("/api/v1/dead-letters/{a}/retry"), Value::Null)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"id": a, "retried": true}));
    h.wait_for(
        &format!("/api/v1/tasks/{a}"),
        "the retried task completes",
        |t| t["task"]["status"] == "completed",
    )
    .await;
    // It is no dead letter any more: a second retry is a conflict.
    let (status, body) = h
        .post(&format!("/api/v1/dead-letters/{a}/retry"), Value::Null)
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(error_of(&body).contains("not dead-lettered"), "{body}");
    let (status, body) = h
        .post(&format!("/api/v1/dead-letters/{b}/discard"), Value::Null)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"id": b, "discarded": true}));
    let (_, list) = h.get("/api/v1/dead-letters").await;
    assert_eq!(list["tasks"], json!([]), "{list}");
    for action in ["retry", "discard"] {
        let (status, body) = h
            .post(
                &format!("/api/v1/dead-letters/task-00000000000000aa/{action}"),
                Value::Null,
            )
            .await;
        assert_eq!(status, 404, "{action}: {body}");
        let (status, _) = h
            .post(
                &format!("/api/v1/dead-letters/bad-id/{action}"),
                Value::Null,
            )
            .await;
        assert_eq!(status, 400);
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_new_tasks_until_resume() {
    let h = Harness::start(1, quick()).await;
    let (status, body) = h.post("/api/v1/pause", Value::Null).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"paused": true}));
    let id = submit(&h, json!({"kind": "held"})).await;
    let (_, o) = h.get("/api/v1/overview").await;
    assert_eq!(o["paused"], true);
    // Paused is a state the log holds; what the task does meanwhile is
    // checked after resume: it was not completed before it.
    let (_, t) = h.get(&format!("/api/v1/tasks/{id}")).await;
    assert_ne!(t["task"]["status"], "completed", "{t}");
    let (status, body) = h.post("/api/v1/resume", Value::Null).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"paused": false}));
    h.wait_for(
        &format!("/api/v1/tasks/{id}"),
        "completion after resume",
        |t| t["task"]["status"] == "completed",
    )
    .await;
    let (status, _) = h.post_as("/api/v1/pause", None, Value::Null).await;
    assert_eq!(status, 401);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_scale_within_bounds_and_bad_counts_are_400() {
    let h = Harness::start(2, quick()).await;
    let (status, body) = h.post("/api/v1/agents", json!({"count": 4})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"agents": 4}));
    let o = h
        .wait_for("/api/v1/overview", "4 agents", |o| {
            o["agents"].as_array().is_some_and(|a| a.len() == 4)
        })
        .await;
    assert_eq!(o["agents"].as_array().unwrap().len(), 4);
    let (status, body) = h.post("/api/v1/agents", json!({"count": 1000})).await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("max_agents"), "{body}");
    for bad in [
        json!({}),
        json!({"count": -1}),
        json!({"count": "3"}),
        json!({"n": 3}),
    ] {
        let (status, body) = h.post("/api/v1/agents", bad.clone()).await;
        assert_eq!(status, 400, "{bad} -> {body}");
        error_of(&body);
    }
    h.stop().await;
}
