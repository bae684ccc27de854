//! The smallest useful swarm: four simulated agents, a few tasks, their outcomes.
//!
//! cargo run -p swarm --example minimal
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use swarm::{Priority, SimConfig, Swarm, Task, TaskOutcome};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let swarm = Swarm::builder()
        .sim_agents(4, SimConfig::fixed(Duration::from_millis(20)))
        .build()
        .await?;

    let mut handles = Vec::new();
    for (i, priority) in [
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Critical,
    ]
    .into_iter()
    .enumerate()
    {
        let task = Task::builder("summarize")
            .priority(priority)
            .payload(format!("document-{i}.pdf"))
            .build()?;
        handles.push((priority, swarm.submit(task).await?));
    }
    for (priority, handle) in handles {
        let id = handle.id();
        match handle.await {
            TaskOutcome::Completed {
                agent_id, duration, ..
            } => {
                println!("{id} ({priority}) completed by {agent_id} in {duration:?}")
            }
            other => println!("{id} ({priority}) ended as {other:?}"),
        }
    }
    println!("{:?}", swarm.stats());
    swarm.shutdown(Duration::from_secs(5)).await?;
    Ok(())
}
