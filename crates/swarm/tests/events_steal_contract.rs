//! What a steal emits for the moved tasks, as docs/events.md says: only
//! `work:stolen`; each stolen task keeps the one `task:enqueued` of its
//! placement and gets one `task:dequeued`, from the last thief's queue.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::RecordingAgent;
use swarm::event::{QueueLocation, TaskDequeued, TaskEnqueued, WorkStolen};
use swarm::{AgentId, Swarm, Task};
use swarm_core::Event;
use swarm_core::testing::EventRecorder;

#[tokio::test(start_paused = true)]
async fn a_steal_emits_only_work_stolen_for_the_moved_tasks() {
    let agent = RecordingAgent::new(Duration::from_millis(1));
    let swarm = Swarm::builder()
        .agents(4)
        .max_agents(4)
        .autoscale(false)
        .agent_factory(move |_| agent.clone())
        .build()
        .await
        .unwrap();
    let recorder = EventRecorder::attach(swarm.bus());
    let tasks: Vec<Task> = (0..100)
        .map(|_| {
            Task::builder("io")
                .affinity(AgentId::new(0))
                .build()
                .unwrap()
        })
        .collect();
    for h in swarm.submit_batch(tasks).await.unwrap() {
        assert!(h.await.is_completed());
    }
    let steals = recorder.of::<WorkStolen>();
    assert!(!steals.is_empty());
    let events = recorder.events();
    for s in &steals {
        for id in &s.task_ids {
            let mine: Vec<&Event> = events
                .iter()
                .filter(|e| match e {
                    Event::TaskEnqueued(TaskEnqueued { task_id, .. })
                    | Event::TaskDequeued(TaskDequeued { task_id, .. }) => task_id == id,
                    _ => false,
                })
                .collect();
            let enq: Vec<_> = mine
                .iter()
                .filter_map(|e| match e {
                    Event::TaskEnqueued(x) => Some(x.queue),
                    _ => None,
                })
                .collect();
            let deq: Vec<_> = mine
                .iter()
                .filter_map(|e| match e {
                    Event::TaskDequeued(x) => Some(x.queue),
                    _ => None,
                })
                .collect();
            let last_thief = steals
                .iter()
                .rev()
                .find(|t| t.task_ids.contains(id))
                .unwrap()
                .to;
            assert_eq!(enq, vec![QueueLocation::Local(AgentId::new(0))], "{id}");
            assert_eq!(deq, vec![QueueLocation::Local(last_thief)], "{id}");
        }
    }
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}
