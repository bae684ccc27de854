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

/// A `MemoryStore` with faults on demand: appends fail (`StoreError::Closed`)
/// once `fail_appends` is set; the next `snapshot_failures` snapshot saves fail.
#[derive(Debug, Default)]
pub struct FaultyStore {
    pub inner: swarm::MemoryStore,
    pub fail_appends: std::sync::atomic::AtomicBool,
    pub snapshot_failures: std::sync::atomic::AtomicU32,
}

type StoreFuture<'a, T> = futures::future::BoxFuture<'a, swarm::StoreResult<T>>;

impl swarm::EventStore for FaultyStore {
    fn append(
        &self,
        events: Vec<swarm::Event>,
        expected: Option<u64>,
    ) -> StoreFuture<'_, swarm::SeqRange> {
        use std::sync::atomic::Ordering;
        if self.fail_appends.load(Ordering::Relaxed) {
            return Box::pin(async { Err(swarm::StoreError::Closed) });
        }
        self.inner.append(events, expected)
    }
    fn read(&self, from_seq: u64) -> swarm::StoredEventStream {
        self.inner.read(from_seq)
    }
    fn subscribe(&self, from_seq: u64) -> swarm::StoredEventStream {
        self.inner.subscribe(from_seq)
    }
    fn last_seq(&self) -> StoreFuture<'_, u64> {
        self.inner.last_seq()
    }
    fn save_snapshot(&self, snapshot: swarm::Snapshot) -> StoreFuture<'_, ()> {
        use std::sync::atomic::Ordering;
        let left = self.snapshot_failures.load(Ordering::Relaxed);
        if left > 0 {
            self.snapshot_failures.store(left - 1, Ordering::Relaxed);
            return Box::pin(async { Err(swarm::StoreError::Closed) });
        }
        self.inner.save_snapshot(snapshot)
    }
    fn latest_snapshot(&self, at_or_before: u64) -> StoreFuture<'_, Option<swarm::Snapshot>> {
        self.inner.latest_snapshot(at_or_before)
    }
    fn flush(&self) -> StoreFuture<'_, ()> {
        self.inner.flush()
    }
    fn close(&self) -> StoreFuture<'_, ()> {
        self.inner.close()
    }
}
