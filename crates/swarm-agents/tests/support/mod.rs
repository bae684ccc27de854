//! Shared helpers: a scripted agent and a small dispatch loop that plays the
//! facade's part (a FIFO queue, idle agents, retries after their back-off).
// Test-only code: a failed unwrap is a failed test.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use swarm_agents::{
    Agent, AgentFactory, AgentPool, ExecuteError, Executed, Next, TaskOutput, schedule_retry,
};
use swarm_core::{AgentId, Task};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What a scripted agent does on one attempt.
#[derive(Debug, Clone)]
pub enum Act {
    Succeed,
    Fail(String),
    Permanent(String),
    Panic,
    Hang,
    Sleep(Duration, Box<Act>),
}

type Script = dyn Fn(AgentId, &Task) -> Act + Send + Sync;

/// An agent whose behaviour is a function of its id and the task.
pub struct Scripted {
    pub id: AgentId,
    script: Arc<Script>,
}

impl Agent for Scripted {
    async fn execute(&self, task: &Task) -> Result<TaskOutput, ExecuteError> {
        let mut act = (self.script)(self.id, task);
        loop {
            match act {
                Act::Succeed => return Ok(TaskOutput::from(format!("done by {}", self.id))),
                Act::Fail(m) => return Err(ExecuteError::retryable(m)),
                Act::Permanent(m) => return Err(ExecuteError::permanent(m)),
                Act::Panic => panic!("scripted panic in {}", self.id),
                Act::Hang => std::future::pending::<()>().await,
                Act::Sleep(d, then) => {
                    tokio::time::sleep(d).await;
                    act = *then;
                }
            }
        }
    }
}

/// A factory of scripted agents.
pub fn scripted(
    script: impl Fn(AgentId, &Task) -> Act + Send + Sync + 'static,
) -> impl AgentFactory<Agent = Scripted> {
    let script: Arc<Script> = Arc::new(script);
    move |id| Scripted {
        id,
        script: Arc::clone(&script),
    }
}

/// One attempt as the driver saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub executed: Executed,
    /// When the attempt started and ended (tokio's clock).
    pub started: Instant,
    pub ended: Instant,
}

enum Msg {
    Done(Seen),
    Due(Task),
}

/// Runs `tasks` to the end (completed or dead-lettered) the way the facade
/// would, and returns every attempt in the order they ended.
pub async fn drive<F: AgentFactory>(pool: &AgentPool<F>, tasks: Vec<Task>) -> Vec<Seen> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut queue: VecDeque<Task> = tasks.into();
    let mut unfinished = queue.len();
    let mut seen = Vec::new();
    while unfinished > 0 {
        while !queue.is_empty() {
            let Some(agent) = pool.claim_idle() else {
                break;
            };
            let task = queue.pop_front().unwrap();
            let pool = pool.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let executed = pool
                    .execute(agent, task)
                    .await
                    .expect("claimed agent accepts");
                let _ = tx.send(Msg::Done(Seen {
                    executed,
                    started,
                    ended: Instant::now(),
                }));
            });
        }
        match rx.recv().await.expect("driver holds a sender") {
            Msg::Done(s) => {
                match &s.executed.next {
                    Next::Retry { after, .. } => {
                        let tx = tx.clone();
                        schedule_retry(*after, s.executed.task.clone(), move |t| {
                            let _ = tx.send(Msg::Due(t));
                        });
                    }
                    _ => unfinished -= 1,
                }
                seen.push(s);
            }
            Msg::Due(task) => queue.push_back(task),
        }
    }
    seen
}
