//! Event mode: work stealing when affinity piles tasks on one agent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::RecordingAgent;
use swarm::event::WorkStolen;
use swarm::{AgentId, Priority, Swarm, Task};
use swarm_core::testing::EventRecorder;

#[tokio::test(start_paused = true)]
async fn idle_agents_steal_from_an_agent_with_skewed_affinity_and_all_tasks_complete() {
    let agent = RecordingAgent::new(Duration::from_millis(1));
    let swarm = Swarm::builder()
        .agents(8)
        .max_agents(8)
        .autoscale(false)
        .agent_factory(move |_| agent.clone())
        .build()
        .await
        .unwrap();
    let recorder = EventRecorder::attach(swarm.bus());

    let tasks: Vec<Task> = (0..400)
        .map(|i| {
            Task::builder("io")
                .priority(if i % 10 == 0 {
                    Priority::High
                } else {
                    Priority::Normal
                })
                .affinity(AgentId::new(0))
                .build()
                .unwrap()
        })
        .collect();
    let handles = swarm.submit_batch(tasks).await.unwrap();
    let mut ran_on = std::collections::HashMap::new();
    for h in handles {
        let id = h.id();
        match h.await {
            swarm::TaskOutcome::Completed { agent_id, .. } => {
                ran_on.insert(id, agent_id);
            }
            other => panic!("{other:?}"),
        }
    }
    let steals = recorder.of::<WorkStolen>();
    let skewed = AgentId::new(0);
    let from_skewed: Vec<_> = steals.iter().filter(|s| s.from == skewed).collect();
    assert!(
        !from_skewed.is_empty(),
        "nobody stole from the overloaded agent"
    );
    for s in &steals {
        assert!(
            s.count > 0 && s.from != s.to,
            "an empty or self steal: {s:?}"
        );
    }
    // What was stolen from the overloaded agent ran elsewhere.
    for s in &from_skewed {
        for id in &s.task_ids {
            assert_ne!(
                ran_on[id], skewed,
                "task {id} was stolen yet ran on agent 0"
            );
        }
    }
    let helpers: std::collections::HashSet<_> = ran_on.values().filter(|a| **a != skewed).collect();
    assert!(helpers.len() >= 2, "the work did not spread: {helpers:?}");
    let stats = swarm.stats();
    assert_eq!(stats.completed, 400);
    assert!(stats.stolen_tasks > 0);
    assert_eq!(
        stats.stolen_tasks,
        steals.iter().map(|s| u64::from(s.count)).sum::<u64>()
    );
    for s in &steals {
        assert_eq!(s.task_ids.len(), s.count as usize);
    }
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn pinned_tasks_are_never_stolen() {
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
            Task::builder("pinned")
                .affinity(AgentId::new(1))
                .pinned(true)
                .build()
                .unwrap()
        })
        .collect();
    for h in swarm.submit_batch(tasks).await.unwrap() {
        match h.await {
            swarm::TaskOutcome::Completed { agent_id, .. } => assert_eq!(agent_id, AgentId::new(1)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(recorder.count::<WorkStolen>(), 0);
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}
