//! `GET /api/v1/events`: Server-Sent Events with store sequences as ids, and
//! a resume with `Last-Event-ID` that neither skips nor repeats.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use support::{Harness, TOKEN, error_of};
use swarm::SimConfig;
use swarm_dashboard::Token;

/// One SSE message: `id:`, `event:` (empty for the default) and `data:`.
#[derive(Debug, Clone)]
struct Message {
    id: Option<u64>,
    event: String,
    data: Value,
}

/// Reads SSE messages off a response.
struct Reader {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl Reader {
    fn new(response: reqwest::Response) -> Reader {
        Reader {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next message (comments skipped), or `None` when the stream ends
    /// or the connection is cut.
    async fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut message = Message {
                    id: None,
                    event: String::new(),
                    data: Value::Null,
                };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        message.id = Some(v.trim().parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        message.event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                message.data = serde_json::from_str(&data).unwrap();
                return Some(message);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.body.next())
                .await
                .expect("an event within 20 s")?;
            // A connection cut mid-stream (a server that stopped) ends it too.
            let chunk = chunk.ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

async fn open(h: &Harness, query: &str, last_event_id: Option<u64>) -> reqwest::Response {
    let mut request = h.client.get(h.url(&format!("/api/v1/events{query}")));
    if let Some(last) = last_event_id {
        request = request.header("Last-Event-ID", last.to_string());
    }
    request.send().await.unwrap()
}

async fn submit_many(h: &Harness, n: usize) {
    for _ in 0..n {
        let (status, _) = h.post("/api/v1/tasks", json!({"kind": "sse"})).await;
        assert_eq!(status, 201);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_with_last_event_id_neither_skips_nor_repeats() {
    let h = Harness::start(2, SimConfig::fixed(Duration::from_millis(1))).await;
    submit_many(&h, 5).await;
    let response = open(&h, "?from=1", None).await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut reader = Reader::new(response);
    let mut seqs = Vec::new();
    for _ in 0..12 {
        let m = reader.next().await.unwrap();
        assert!(m.data["event"].is_string(), "{m:?}");
        assert_eq!(m.data["seq"].as_u64(), m.id);
        seqs.push(m.id.unwrap());
    }
    // The client goes away mid-stream; events go on being appended meanwhile.
    drop(reader);
    submit_many(&h, 5).await;
    h.wait_for("/api/v1/overview", "10 completions", |o| {
        o["tasks"]["completed"] == 10
    })
    .await;
    let end = h.swarm.store().last_seq().await.unwrap();
    let last = *seqs.last().unwrap();
    let mut reader = Reader::new(open(&h, "?from=1", Some(last)).await);
    while *seqs.last().unwrap() < end {
        let m = reader.next().await.unwrap();
        seqs.push(m.id.unwrap());
    }
    let expected: Vec<u64> = (1..=end).collect();
    assert_eq!(
        seqs, expected,
        "every sequence once, in order, across the reconnect"
    );
    // Live events arrive on the resumed stream too.
    submit_many(&h, 1).await;
    let m = reader.next().await.unwrap();
    assert_eq!(m.id, Some(end + 1));
    assert_eq!(m.data["event"], "task:created");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_resume_point_the_stream_starts_at_the_next_event_and_filters_by_name() {
    let h = Harness::start(1, SimConfig::fixed(Duration::from_millis(1))).await;
    submit_many(&h, 2).await;
    h.wait_for("/api/v1/overview", "2 completions", |o| {
        o["tasks"]["completed"] == 2
    })
    .await;
    let before = h.swarm.store().last_seq().await.unwrap();
    let mut all = Reader::new(open(&h, "", None).await);
    let mut done = Reader::new(open(&h, "?event=task:completed", None).await);
    submit_many(&h, 1).await;
    let first = all.next().await.unwrap();
    assert_eq!(first.id, Some(before + 1), "{first:?}");
    let m = done.next().await.unwrap();
    assert_eq!(m.data["event"], "task:completed", "{m:?}");
    assert!(
        m.data["data"]["task_id"]
            .as_str()
            .unwrap()
            .starts_with("task-")
    );
    let response = open(&h, "?event=task:exploded", None).await;
    let (status, body) = support::split(response).await;
    assert_eq!(status, 400, "{body}");
    error_of(&body);
    let response = h
        .client
        .get(h.url("/api/v1/events"))
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_bounded_and_a_closed_one_frees_its_place() {
    let h = Harness::with(1, SimConfig::instant(), |c| {
        c.token(Token::new(TOKEN).unwrap()).max_event_streams(1)
    })
    .await;
    let first = open(&h, "", None).await;
    assert_eq!(first.status().as_u16(), 200);
    let (status, body) = support::split(open(&h, "", None).await).await;
    assert_eq!(status, 503, "{body}");
    error_of(&body);
    drop(first);
    let mut freed = false;
    for _ in 0..100 {
        let response = open(&h, "", None).await;
        if response.status().as_u16() == 200 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "the place of a closed stream is given back");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_event_streams_after_the_grace_period() {
    let h = Harness::start(1, SimConfig::instant()).await;
    let mut reader = Reader::new(open(&h, "?from=1", None).await);
    submit_many(&h, 1).await;
    assert!(reader.next().await.is_some());
    let support::Harness {
        swarm, dashboard, ..
    } = h;
    dashboard.shutdown(Duration::from_millis(200)).await;
    // Whatever the stream still had buffered, it ends.
    while reader.next().await.is_some() {}
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}
