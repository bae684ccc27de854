//! Helpers shared by the facade's integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use swarm::{Agent, ExecuteError, Task, TaskOutput};

/// Records the order in which tasks start (by kind), then sleeps `duration`.
#[derive(Clone)]
pub struct RecordingAgent {
    pub started: Arc<Mutex<Vec<String>>>,
    pub duration: Duration,
}

impl RecordingAgent {
    pub fn new(duration: Duration) -> Self {
        RecordingAgent {
            started: Arc::new(Mutex::new(Vec::new())),
            duration,
        }
    }
}

impl Agent for RecordingAgent {
    async fn execute(&self, task: &Task) -> Result<TaskOutput, ExecuteError> {
        self.started.lock().push(task.kind().to_owned());
        tokio::time::sleep(self.duration).await;
        Ok(TaskOutput::from("done"))
    }
}

/// Fails or misbehaves according to the task's kind:
/// `"ok"` succeeds, `"fail"` errors, `"permanent"` errors for good,
/// `"panic"` panics, `"hang"` never finishes.
#[derive(Clone, Default)]
pub struct ScriptedAgent;

impl Agent for ScriptedAgent {
    async fn execute(&self, task: &Task) -> Result<TaskOutput, ExecuteError> {
        match task.kind() {
            "ok" => Ok(TaskOutput::from("ok")),
            "fail" => Err(ExecuteError::retryable("scripted failure")),
            "permanent" => Err(ExecuteError::permanent("scripted permanent failure")),
            "panic" => panic!("scripted panic"),
            "hang" => {
                std::future::pending::<()>().await;
                Ok(TaskOutput::from("unreachable"))
            }
            other => Err(ExecuteError::permanent(format!("unknown script {other}"))),
        }
    }
}

pub fn task(kind: &str, priority: swarm::Priority) -> Task {
    Task::builder(kind).priority(priority).build().unwrap()
}
