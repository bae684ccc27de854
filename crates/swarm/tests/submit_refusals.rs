//! Refused submissions hand the task back and leave the swarm unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{RecordingAgent, task};
use swarm::{Priority, SubmitError, Swarm, Task, TaskError};

#[tokio::test(start_paused = true)]
async fn a_full_queue_hands_the_task_back_and_a_duplicate_id_is_refused() {
    let agent = RecordingAgent::new(Duration::from_secs(1));
    let swarm = Swarm::builder()
        .agents(1)
        .max_agents(1)
        .autoscale(false)
        .agent_factory(move |_| agent.clone())
        .queue_bound(2)
        .build()
        .await
        .unwrap();
    // One runs, two wait: the queue is at its bound.
    let first = swarm.submit(task("a", Priority::Normal)).await.unwrap();
    let _b = swarm.submit(task("b", Priority::Normal)).await.unwrap();
    let _c = swarm.submit(task("c", Priority::Normal)).await.unwrap();
    let rejected = task("d", Priority::Critical);
    let id = rejected.id();
    match swarm.submit(rejected).await {
        Err(SubmitError::QueueFull(t)) => assert_eq!(t.id(), id),
        other => panic!("expected QueueFull, got {other:?}"),
    }
    assert_eq!(swarm.stats().queued, 2);

    // A batch over the bound is refused whole.
    let batch = vec![task("e", Priority::Low), task("f", Priority::Low)];
    assert!(matches!(
        swarm.submit_batch(batch).await,
        Err(SubmitError::QueueFull(_))
    ));
    assert_eq!(swarm.stats().submitted, 3);

    // The id of a live task cannot be reused.
    let dup = Task::builder("again").id(first.id()).build().unwrap();
    match swarm.submit(dup).await {
        Err(e @ SubmitError::Duplicate(_)) => {
            assert!(e.to_string().contains(&first.id().to_string()), "{e}");
            assert_eq!(e.into_task().unwrap().kind(), "again");
        }
        other => panic!("expected Duplicate, got {other:?}"),
    }
    swarm.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_payload_over_the_swarm_limit_is_refused_with_a_clear_error() {
    let swarm = Swarm::builder()
        .agents(1)
        .max_payload(16)
        .build()
        .await
        .unwrap();
    let big = Task::builder("upload")
        .payload(vec![0u8; 17])
        .build()
        .unwrap();
    let err = swarm.submit(big).await.unwrap_err();
    assert!(matches!(
        err,
        SubmitError::Invalid(TaskError::PayloadTooLarge {
            size: 17,
            limit: 16
        })
    ));
    assert!(err.to_string().contains("over the limit of 16 bytes"));
    assert_eq!(swarm.stats().submitted, 0);
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn bad_configuration_is_refused_before_anything_starts() {
    let err = Swarm::builder().agents(0).build().await.unwrap_err();
    assert!(err.to_string().contains("at least one agent"), "{err}");
    let err = Swarm::builder()
        .agents(10)
        .max_agents(4)
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("max_agents (4)"), "{err}");
}
