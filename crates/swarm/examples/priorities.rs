//! Priorities under load: a backlog of low-priority work, then urgent tasks
//! that overtake it. Prints each priority's queue wait.
//!
//! cargo run -p swarm --example priorities --release
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use swarm::event::TaskAssigned;
use swarm::{Priority, SimConfig, Swarm, Task};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let swarm = Swarm::builder()
        .sim_agents(4, SimConfig::fixed(Duration::from_millis(2)))
        .autoscale(false)
        .build()
        .await?;
    let waits: Arc<Mutex<BTreeMap<Priority, Vec<Duration>>>> = Arc::default();
    let sink = Arc::clone(&waits);
    let _subscription = swarm.bus().on::<TaskAssigned>(move |e| {
        sink.lock()
            .entry(e.priority)
            .or_default()
            .push(e.queue_wait);
    });

    let backlog: Vec<Task> = (0..2_000)
        .map(|_| Task::builder("batch").priority(Priority::Low).build())
        .collect::<Result<_, _>>()?;
    let mut handles = swarm.submit_batch(backlog).await?;
    for priority in [Priority::Normal, Priority::High, Priority::Critical] {
        for _ in 0..20 {
            let task = Task::builder("urgent").priority(priority).build()?;
            handles.push(swarm.submit(task).await?);
        }
    }
    for handle in handles {
        handle.await;
    }
    for (priority, mut w) in waits.lock().clone().into_iter().rev() {
        w.sort();
        let p50 = w[w.len() / 2];
        let max = w[w.len() - 1];
        println!(
            "{priority:>8}: {:>5} tasks, queue wait p50 {p50:?}, max {max:?}",
            w.len()
        );
    }
    swarm.shutdown(Duration::from_secs(5)).await?;
    Ok(())
}
