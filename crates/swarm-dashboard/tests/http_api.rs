//! The HTTP API against a real server on an ephemeral port, with a real client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Harness, TOKEN, error_of};
use swarm::SimConfig;
use swarm_dashboard::{Dashboard, DashboardConfig, DashboardError, Token};

fn quick() -> SimConfig {
    SimConfig::fixed(Duration::from_millis(1))
}

fn slow() -> SimConfig {
    SimConfig::fixed(Duration::from_secs(60))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_answers_201_with_the_id_and_the_task_runs() {
    let h = Harness::start(2, quick()).await;
    let (status, body) = h
        .post(
            "/api/v1/tasks",
            json!({"kind": "echo", "priority": "high", "payload": {"n": 1}, "id": "job-1", "max_attempts": 2, "timeout_ms": 5000}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap();
    assert_eq!(id, swarm::TaskId::from_name("job-1").to_string());
    let (status, body) = h.post("/api/v1/tasks", json!({"kind": "echo"})).await;
    assert_eq!(status, 201, "{body}");
    assert!(body["id"].as_str().unwrap().starts_with("task-"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_submissions_get_400_with_one_line_reasons() {
    let h = Harness::start(1, quick()).await;
    for body in [
        json!({"priority": "high"}),
        json!({"kind": "k", "priority": "urgent"}),
        json!({"kind": "k", "max_attempts": 0}),
        json!({"kind": "k", "unknown": true}),
        json!([1, 2]),
    ] {
        let (status, answer) = h.post("/api/v1/tasks", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        error_of(&answer);
    }
    // Not JSON at all.
    let response = h
        .client
        .post(h.url("/api/v1/tasks"))
        .bearer_auth(TOKEN)
        .body("{kind: ")
        .send()
        .await
        .unwrap();
    let (status, answer) = support::split(response).await;
    assert_eq!(status, 400);
    assert!(error_of(&answer).contains("malformed task"), "{answer}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_gets_413() {
    let h = Harness::with(1, quick(), |c| {
        c.token(Token::new(TOKEN).unwrap()).body_limit(1024)
    })
    .await;
    let big = json!({"kind": "k", "payload": "x".repeat(4096)});
    let (status, answer) = h.post("/api/v1/tasks", big).await;
    assert_eq!(status, 413, "{answer}");
    error_of(&answer);
    // Without a Content-Length (chunked), the limit holds while reading.
    let chunks =
        futures_util::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(vec![b' '; 512])));
    let response = h
        .client
        .post(h.url("/api/v1/tasks"))
        .bearer_auth(TOKEN)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    let (status, answer) = support::split(response).await;
    assert_eq!(status, 413, "{answer}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_need_the_token_401_without_or_wrong_and_403_when_none_is_set() {
    let h = Harness::start(1, quick()).await;
    let (status, answer) = h.post_as("/api/v1/tasks", None, json!({"kind": "k"})).await;
    assert_eq!(status, 401, "{answer}");
    assert!(error_of(&answer).contains("Authorization: Bearer"));
    let (status, answer) = h
        .post_as(
            "/api/v1/tasks",
            Some("test-token-0123456789abcdeX"),
            json!({"kind": "k"}),
        )
        .await;
    assert_eq!(status, 401, "{answer}");
    assert!(error_of(&answer).contains("wrong"));
    // A prefix of the token is wrong too.
    let (status, _) = h
        .post_as("/api/v1/tasks", Some(&TOKEN[..10]), json!({"kind": "k"}))
        .await;
    assert_eq!(status, 401);
    // Basic auth is not a bearer token.
    let response = h
        .client
        .post(h.url("/api/v1/tasks"))
        .basic_auth("u", Some(TOKEN))
        .json(&json!({"kind": "k"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(
        response.headers().get("www-authenticate").unwrap(),
        "Bearer realm=\"swarm\""
    );
    let (status, _) = h.post("/api/v1/tasks", json!({"kind": "k"})).await;
    assert_eq!(status, 201);
    // Reads are open on loopback.
    let (status, _) = h.get("/metrics").await;
    assert_eq!(status, 200);
    h.stop().await;

    let h = Harness::with(1, quick(), |c| c).await;
    let (status, answer) = h.post("/api/v1/tasks", json!({"kind": "k"})).await;
    assert_eq!(status, 403, "{answer}");
    assert!(error_of(&answer).contains("--dashboard-token"), "{answer}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_address_needs_an_explicit_token_and_then_reads_need_it_too() {
    let swarm = swarm::Swarm::builder()
        .agents(1)
        .memory_store()
        .build()
        .await
        .unwrap();
    let any: std::net::SocketAddr = "0.0.0.0:0".parse().unwrap();
    let refused = Dashboard::serve(swarm.clone(), DashboardConfig::new(any)).await;
    assert!(
        matches!(refused, Err(DashboardError::TokenRequired(_))),
        "{refused:?}"
    );
    let generated = DashboardConfig::new(any).token(Token::generate().unwrap());
    let refused = Dashboard::serve(swarm.clone(), generated).await;
    assert!(matches!(refused, Err(DashboardError::TokenRequired(_))));
    let e = refused.unwrap_err().to_string();
    assert!(e.contains("SWARM_DASHBOARD_TOKEN"), "{e}");

    let config = DashboardConfig::new(any).token(Token::new(TOKEN).unwrap());
    let dashboard = Dashboard::serve(swarm.clone(), config).await.unwrap();
    let url = format!("http://127.0.0.1:{}", dashboard.local_addr().port());
    let client = reqwest::Client::new();
    let response = client.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let response = client
        .get(format!("{url}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // The page itself holds no data and asks for the token.
    let response = client.get(format!("{url}/")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    dashboard.shutdown(Duration::from_secs(1)).await;
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_or_odd_tokens_are_refused() {
    assert!(matches!(
        Token::new("short"),
        Err(DashboardError::BadToken(_))
    ));
    assert!(matches!(
        Token::new("has a space in it, so no"),
        Err(DashboardError::BadToken(_))
    ));
    let t = Token::generate().unwrap();
    assert_eq!(t.expose().len(), 64);
    assert!(!format!("{t:?}").contains(t.expose()));
    assert!(t.matches(t.expose().as_bytes()));
    assert!(!t.matches(b""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_that_promtool_accepts() {
    let h = Harness::start(2, quick()).await;
    for _ in 0..5 {
        let (status, _) = h.post("/api/v1/tasks", json!({"kind": "k"})).await;
        assert_eq!(status, 201);
    }
    let response = h.client.get(h.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    assert!(text.contains("# TYPE"), "{text}");
    if let Some(promtool) = swarm_testkit::promtool::find() {
        swarm_testkit::promtool::check_metrics(&promtool, &text).unwrap();
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_takes_a_queued_task_and_404s_an_unknown_one() {
    let h = Harness::start(1, slow()).await;
    let (_, first) = h.post("/api/v1/tasks", json!({"kind": "k"})).await;
    let (_, second) = h.post("/api/v1/tasks", json!({"kind": "k"})).await;
    let second = second["id"].as_str().unwrap().to_owned();
    let (status, body) = h
        .post(&format!("/api/v1/tasks/{second}/cancel"), Value::Null)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"id": second, "cancelled": true}));
    let first = first["id"].as_str().unwrap().to_owned();
    let (status, _) = h
        .post(&format!("/api/v1/tasks/{first}/cancel"), Value::Null)
        .await;
    assert_eq!(status, 200, "a running task is cancelled too");
    let (status, body) = h
        .post("/api/v1/tasks/task-00000000000000aa/cancel", Value::Null)
        .await;
    assert_eq!(status, 404, "{body}");
    error_of(&body);
    let (status, body) = h.post("/api/v1/tasks/not-an-id/cancel", Value::Null).await;
    assert_eq!(status, 400, "{body}");
    error_of(&body);
    // Without the token a cancel is refused before the id is even looked at.
    let (status, _) = h
        .post_as(&format!("/api/v1/tasks/{first}/cancel"), None, Value::Null)
        .await;
    assert_eq!(status, 401);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_wrong_methods_answer_json_errors() {
    let h = Harness::start(1, quick()).await;
    let (status, body) = h.get("/api/v1/nothing").await;
    assert_eq!(status, 404);
    error_of(&body);
    let response = h
        .client
        .delete(h.url("/api/v1/tasks"))
        .send()
        .await
        .unwrap();
    let (status, body) = support::split(response).await;
    assert_eq!(status, 405);
    error_of(&body);
    let (status, page) = h.get("/").await;
    assert_eq!(status, 200);
    assert!(page.as_str().unwrap().contains("<html"), "{page}");
    let response = h.client.get(h.url("/")).send().await.unwrap();
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let (status, _) = h.get("/assets/app.js").await;
    assert_eq!(status, 200);
    let (status, _) = h.get("/assets/../Cargo.toml").await;
    assert_eq!(status, 404);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::with(1, quick(), |c| {
        c.token(Token::new(TOKEN).unwrap())
            .header_timeout(Duration::from_millis(300))
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(h.dashboard.local_addr())
        .await
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // The server closes the connection (or answers 408) instead of waiting
    // for the rest; the bound here only keeps a broken server from hanging the test.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection was still open after 20 s");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    // The server still serves others.
    let (status, _) = h.get("/metrics").await;
    assert_eq!(status, 200);
    h.stop().await;
}
