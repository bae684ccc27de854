//! Recovery after a crash: run with a directory, kill it (Ctrl-C or kill -9)
//! while it works, run it again: it resumes where the log stopped.
//!
//! cargo run -p swarm --example recovery -- ./recovery-data
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use swarm::{SimConfig, Swarm, SystemState, Task, TaskStatus};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./recovery-data".into());
    let swarm = Swarm::builder()
        .sim_agents(4, SimConfig::fixed(Duration::from_millis(50)))
        .file_store(&dir)
        .build()
        .await?;

    let recovered = swarm.stats().recovered;
    if recovered > 0 {
        println!("resumed {recovered} tasks from {dir}");
    } else {
        println!("fresh start in {dir}: submitting 400 tasks (kill me while I run)");
        let tasks: Vec<Task> = (0..400)
            .map(|_| Task::builder("work").build())
            .collect::<Result<_, _>>()?;
        swarm.submit_batch(tasks).await?;
    }
    loop {
        let stats = swarm.stats();
        println!(
            "completed {:>4}, queued {:>4}, running {}",
            stats.completed, stats.queued, stats.running
        );
        if stats.queued == 0 && stats.running == 0 && stats.waiting_retry == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    swarm.shutdown(Duration::from_secs(5)).await?;
    let state = SystemState::replay(&**swarm.store()).await?;
    println!(
        "log: {} tasks completed, {} pending",
        state.count(TaskStatus::Completed),
        state.count(TaskStatus::Pending) + state.count(TaskStatus::Queued)
    );
    Ok(())
}
