//! Pool membership reaches the scheduler by a direct call: the bus is an
//! output, so events emitted on it by anyone else control nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{RecordingAgent, task};
use swarm::event::{AgentCreated, AgentRemoved};
use swarm::{AgentId, Priority, Swarm, TaskOutcome};

#[tokio::test(start_paused = true)]
async fn a_fake_agent_removed_on_the_bus_does_not_stop_the_agent() {
    let agent = RecordingAgent::new(Duration::from_millis(5));
    let swarm = Swarm::builder()
        .agents(1)
        .max_agents(1)
        .autoscale(false)
        .agent_factory(move |_| agent.clone())
        .build()
        .await
        .unwrap();
    let only = AgentId::new(0);
    swarm.bus().emit(AgentRemoved {
        agent_id: only,
        reason: "forged".into(),
    });
    // A forged agent:created for an agent that does not exist starts nothing.
    swarm.bus().emit(AgentCreated {
        agent_id: AgentId::new(99),
        reserve: false,
    });
    tokio::task::yield_now().await;
    let handles = swarm
        .submit_batch((0..5).map(|_| task("work", Priority::Normal)).collect())
        .await
        .unwrap();
    for h in handles {
        let outcome = tokio::time::timeout(Duration::from_secs(10), h)
            .await
            .expect("the agent stopped after a forged agent:removed");
        match outcome {
            TaskOutcome::Completed { agent_id, .. } => assert_eq!(agent_id, only),
            other => panic!("{other:?}"),
        }
    }
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}
