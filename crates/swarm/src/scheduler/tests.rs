#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::time::Duration;

use swarm_agents::{Agent, ExecuteError, RetryPolicy, TaskOutput};
use swarm_core::{AgentId, Task};

use super::{GlobalQueueProbe, Queued};
use crate::{Swarm, TaskOutcome};

/// Fails kind "fail" (retryable), completes the rest.
#[derive(Clone)]
struct Flaky;

impl Agent for Flaky {
    async fn execute(&self, task: &Task) -> Result<TaskOutput, ExecuteError> {
        match task.kind() {
            "fail" => Err(ExecuteError::retryable("flaky")),
            _ => Ok(TaskOutput::from("ok")),
        }
    }
}

async fn flaky_swarm() -> Swarm {
    Swarm::builder()
        .agents(1)
        .autoscale(false)
        .agent_factory(|_| Flaky)
        .retry(RetryPolicy {
            max_attempts: 5,
            base: Duration::from_secs(60),
            cap: Duration::from_secs(60),
        })
        .build()
        .await
        .unwrap()
}

async fn waiting_retry(swarm: &Swarm) -> crate::TaskHandle {
    let handle = swarm
        .submit(Task::builder("fail").build().unwrap())
        .await
        .unwrap();
    while swarm.stats().waiting_retry == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(swarm.core().pool.history(handle.id()), ["flaky"]);
    handle
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_task_leaves_no_error_history() {
    let swarm = flaky_swarm().await;
    let handle = waiting_retry(&swarm).await;
    let id = handle.id();
    swarm.cancel(id).unwrap();
    assert_eq!(handle.await, TaskOutcome::Cancelled { was_running: false });
    assert!(swarm.core().pool.history(id).is_empty(), "history leaked");
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_task_leaves_no_error_history() {
    let swarm = flaky_swarm().await;
    let handle = waiting_retry(&swarm).await;
    let id = handle.id();
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
    assert_eq!(handle.await, TaskOutcome::Interrupted);
    assert!(swarm.core().pool.history(id).is_empty(), "history leaked");
}

#[tokio::test(start_paused = true)]
async fn a_closed_inbox_removes_the_agent_instead_of_re_offering_it() {
    let swarm = Swarm::builder()
        .agents(1)
        .max_agents(1)
        .autoscale(false)
        .agent_factory(|_| Flaky)
        .build()
        .await
        .unwrap();
    let core = swarm.core();
    let dead = AgentId::new(0);
    // Its loop ends (its inbox closes) while the agent stays registered.
    {
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        drop(receiver);
        let mut inboxes = core.inboxes.lock();
        let inbox = inboxes.get_mut(&dead).unwrap();
        inbox.sender = sender;
    }
    tokio::task::yield_now().await;
    let handle = swarm
        .submit(Task::builder("ok").build().unwrap())
        .await
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("the task was re-offered to the dead agent for ever");
    match outcome {
        TaskOutcome::Completed { agent_id, .. } => assert_ne!(agent_id, dead),
        other => panic!("{other:?}"),
    }
    assert!(
        core.pool.agent(dead).is_none(),
        "the dead agent stayed in the pool"
    );
    assert_eq!(core.pool.counts().active(), 1, "it was not replaced");
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[cfg(target_pointer_width = "64")]
#[test]
fn a_queue_entry_is_the_task_and_two_words() {
    // The queues hold one per waiting task (the memory scenario's budget is
    // per queued task): the task's 64 bytes, `since` and `order`.
    assert_eq!(std::mem::size_of::<Task>(), 64);
    assert_eq!(std::mem::size_of::<Queued>(), 80);
    assert_eq!(GlobalQueueProbe::entry_size(), 80);
}
