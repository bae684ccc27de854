//! A swarm with simulated agents behind a real dashboard server on an
//! ephemeral loopback port, and a real HTTP client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;
use swarm::{Agent, ExecuteError, Task, TaskOutput};
use swarm::{SimConfig, Swarm};
use swarm_dashboard::{Dashboard, DashboardConfig, Token};

/// The token of [`Harness::start`].
pub const TOKEN: &str = "test-token-0123456789abcdef";

pub struct Harness {
    pub swarm: Swarm,
    pub dashboard: Dashboard,
    pub client: reqwest::Client,
}

impl Harness {
    /// `agents` simulated agents running `sim`, a memory store, the dashboard with [`TOKEN`].
    pub async fn start(agents: usize, sim: SimConfig) -> Harness {
        Harness::with(agents, sim, |c| c.token(Token::new(TOKEN).unwrap())).await
    }

    /// As [`Harness::start`], with the config shaped by `configure`.
    pub async fn with(
        agents: usize,
        sim: SimConfig,
        configure: impl FnOnce(DashboardConfig) -> DashboardConfig,
    ) -> Harness {
        let builder = Swarm::builder()
            .sim_agents(agents, sim)
            .max_agents(agents.max(8))
            .autoscale(false)
            .memory_store();
        Harness::build(builder, configure).await
    }

    /// `agents` [`Flaky`] agents that fail while the flag is set, a memory
    /// store, the dashboard with [`TOKEN`].
    pub async fn flaky(agents: usize) -> (Harness, Arc<AtomicBool>) {
        let failing = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&failing);
        let builder = Swarm::builder()
            .agents(agents)
            .max_agents(8)
            .autoscale(false)
            .agent_factory(move |_| Flaky(Arc::clone(&flag)))
            .retry(swarm::RetryPolicy {
                max_attempts: 1,
                ..swarm::RetryPolicy::default()
            })
            .memory_store();
        let h = Harness::build(builder, |c| c.token(Token::new(TOKEN).unwrap())).await;
        (h, failing)
    }

    pub async fn build(
        builder: swarm::SwarmBuilder,
        configure: impl FnOnce(DashboardConfig) -> DashboardConfig,
    ) -> Harness {
        let swarm = builder.build().await.expect("the swarm starts");
        let config = configure(DashboardConfig::new("127.0.0.1:0".parse().unwrap()));
        let dashboard = Dashboard::serve(swarm.clone(), config)
            .await
            .expect("the dashboard starts");
        Harness {
            swarm,
            dashboard,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.dashboard.local_addr())
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        split(response).await
    }

    /// A POST with the right token and a JSON body (`Value::Null`: no body).
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.post_as(path, Some(TOKEN), body).await
    }

    pub async fn post_as(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut request = self.client.post(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if !body.is_null() {
            request = request.json(&body);
        }
        split(request.send().await.unwrap()).await
    }

    /// Waits (bounded) until `check` holds for `GET path`, and returns that answer.
    pub async fn wait_for(&self, path: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..600 {
            let (status, body) = self.get(path).await;
            if status == 200 && check(&body) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gave up waiting for {what} at {path}");
    }

    pub async fn stop(self) {
        self.dashboard.shutdown(Duration::from_secs(1)).await;
        let _ = self.swarm.shutdown(Duration::from_secs(2)).await;
    }
}

/// The status and the JSON body (which every answer of the API has).
pub async fn split(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    let body = if content_type.starts_with("application/json") {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    } else {
        Value::String(text)
    };
    (status, body)
}

/// The one-line error of a failed request.
pub fn error_of(body: &Value) -> &str {
    let e = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error field in {body}"));
    assert!(!e.contains('\n'), "error is not one line: {e:?}");
    assert!(!e.is_empty());
    e
}

/// An agent that fails every attempt while its flag is set, and completes once it is cleared.
#[derive(Debug, Clone)]
pub struct Flaky(pub Arc<AtomicBool>);

impl Agent for Flaky {
    async fn execute(&self, _task: &Task) -> Result<TaskOutput, ExecuteError> {
        if self.0.load(Ordering::SeqCst) {
            Err(ExecuteError::retryable("flaky: failing on purpose"))
        } else {
            Ok(TaskOutput::from("ok"))
        }
    }
}
