//! Every path a user can configure runs every task: store × mode × prefetch ×
//! reserve agents × capabilities, written once and run for each combination.
//!
//! A test that only uses the in-memory store proves nothing about the file
//! store (polling mode on a durable store never ran a task, and no test took
//! that path).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use swarm::{
    Agent, ExecuteError, Priority, SchedulerMode, Swarm, SwarmBuilder, Task, TaskOutcome,
    TaskOutput,
};

#[derive(Clone, Copy, Debug)]
enum Store {
    Memory,
    File,
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Event,
    Polling,
}

/// An agent that can run every kind, or only `"a"` tasks.
#[derive(Clone)]
struct KindAgent {
    only_a: bool,
}

impl Agent for KindAgent {
    async fn execute(&self, task: &Task) -> Result<TaskOutput, ExecuteError> {
        tokio::time::sleep(Duration::from_micros(200)).await;
        Ok(TaskOutput::from(task.kind()))
    }

    fn capabilities(&self) -> &[&str] {
        if self.only_a { &["a"] } else { &[] }
    }
}

#[derive(Clone, Copy, Debug)]
struct Path_ {
    store: Store,
    mode: Mode,
    prefetch: usize,
    reserve: usize,
    capabilities: bool,
}

fn builder(path: Path_, dir: &Path) -> SwarmBuilder {
    let b = Swarm::builder()
        .agents(3)
        .max_agents(6)
        .reserve_agents(path.reserve)
        .prefetch(path.prefetch)
        .default_timeout(Some(Duration::from_secs(30)))
        .agent_factory(move |id: swarm::AgentId| KindAgent {
            // With capabilities on, every other agent can only run kind "a".
            only_a: path.capabilities && id.as_u64() % 2 == 1,
        });
    let b = match path.store {
        Store::Memory => b,
        Store::File => b.file_store(dir),
    };
    match path.mode {
        Mode::Event => b,
        Mode::Polling => b.mode(SchedulerMode::Polling {
            interval: Duration::from_millis(5),
            batch: 10,
        }),
    }
}

async fn run_path(path: Path_) {
    let dir = tempfile::tempdir().unwrap();
    let swarm = builder(path, dir.path()).build().await.unwrap();
    let tasks: Vec<Task> = (0..60)
        .map(|i| {
            Task::builder(if i % 3 == 0 { "b" } else { "a" })
                .priority(Priority::ALL[i % 4])
                .build()
                .unwrap()
        })
        .collect();
    // Half in one batch, half one by one.
    let (batch, singles) = tasks.split_at(30);
    let mut handles = swarm.submit_batch(batch.to_vec()).await.unwrap();
    for t in singles {
        handles.push(swarm.submit(t.clone()).await.unwrap());
    }
    for h in handles {
        let outcome = tokio::time::timeout(Duration::from_secs(60), h)
            .await
            .unwrap_or_else(|_| panic!("{path:?}: a task never finished"));
        assert!(
            matches!(outcome, TaskOutcome::Completed { .. }),
            "{path:?}: {outcome:?}"
        );
    }
    let stats = swarm.stats();
    assert_eq!(stats.completed, 60, "{path:?}");
    assert_eq!((stats.queued, stats.running), (0, 0), "{path:?}");
    let report = swarm.shutdown(Duration::from_secs(5)).await.unwrap();
    assert!(report.finished_in_time, "{path:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_configured_path_runs_every_task() {
    for store in [Store::Memory, Store::File] {
        for mode in [Mode::Event, Mode::Polling] {
            for prefetch in [0, 2] {
                for reserve in [0, 2] {
                    for capabilities in [false, true] {
                        run_path(Path_ {
                            store,
                            mode,
                            prefetch,
                            reserve,
                            capabilities,
                        })
                        .await;
                    }
                }
            }
        }
    }
}

/// The path of the defect on its own, so a failure names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_mode_on_a_file_store_runs_tasks() {
    run_path(Path_ {
        store: Store::File,
        mode: Mode::Polling,
        prefetch: 0,
        reserve: 0,
        capabilities: false,
    })
    .await;
}
