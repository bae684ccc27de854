//! Placement on the paths the first tests never took: agents with
//! capabilities, reserve agents with prefetch or affinity, and prefetch under
//! steady load (no task in the global queue is overtaken by a later one of the
//! same priority).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{RecordingAgent, task};
use swarm::event::TaskDeadLettered;
use swarm::{Agent, AgentId, ExecuteError, Priority, Swarm, Task, TaskOutcome, TaskOutput};
use swarm_core::testing::EventRecorder;

/// Runs only the kinds it is made for, slowly enough that agents overlap.
#[derive(Clone)]
struct Specialist {
    kinds: &'static [&'static str],
}

impl Agent for Specialist {
    async fn execute(&self, task: &Task) -> Result<TaskOutput, ExecuteError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(TaskOutput::from(task.kind()))
    }

    fn capabilities(&self) -> &[&str] {
        self.kinds
    }
}

fn specialists(id: AgentId) -> Specialist {
    Specialist {
        kinds: if id.as_u64() % 2 == 0 { &["a"] } else { &["b"] },
    }
}

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("{what} never finished"))
}

#[tokio::test(start_paused = true)]
async fn tasks_go_only_to_agents_that_can_run_them() {
    let swarm = Swarm::builder()
        .agents(2)
        .max_agents(2)
        .autoscale(false)
        .agent_factory(specialists)
        .build()
        .await
        .unwrap();
    let handles = swarm
        .submit_batch(
            (0..40)
                .map(|i| task(if i % 4 == 0 { "a" } else { "b" }, Priority::Normal))
                .collect(),
        )
        .await
        .unwrap();
    for h in handles {
        match within("a capable task", h).await {
            TaskOutcome::Completed {
                output, agent_id, ..
            } => {
                let kind = output.as_str().unwrap().to_owned();
                let expected = if kind == "a" { 0 } else { 1 };
                assert_eq!(agent_id.as_u64() % 2, expected, "{kind} ran on {agent_id}");
            }
            other => panic!("{other:?}"),
        }
    }
    let stats = swarm.stats();
    assert_eq!(
        (stats.idle_agents, stats.busy_agents),
        (2, 0),
        "an agent leaked"
    );
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_task_no_agent_can_run_is_dead_lettered_with_the_reason() {
    let swarm = Swarm::builder()
        .agents(2)
        .autoscale(false)
        .agent_factory(specialists)
        .build()
        .await
        .unwrap();
    let recorder = EventRecorder::attach(swarm.bus());
    let orphan = swarm.submit(task("c", Priority::High)).await.unwrap();
    match within("the orphan task", orphan).await {
        TaskOutcome::DeadLettered { errors } => {
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].contains("\"c\""), "{errors:?}");
        }
        other => panic!("expected a dead letter, got {other:?}"),
    }
    assert_eq!(recorder.of::<TaskDeadLettered>()[0].attempts, 0);
    // The agents are all still there and work.
    let a = swarm.submit(task("a", Priority::Normal)).await.unwrap();
    let b = swarm.submit(task("b", Priority::Normal)).await.unwrap();
    assert!(within("a", a).await.is_completed());
    assert!(within("b", b).await.is_completed());
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn prefetch_and_affinity_never_strand_tasks_on_reserve_agents() {
    let agent = RecordingAgent::new(Duration::from_millis(10));
    let swarm = Swarm::builder()
        .agents(1)
        .reserve_agents(2)
        .autoscale(false)
        .prefetch(2)
        .agent_factory(move |_| agent.clone())
        .build()
        .await
        .unwrap();
    // Agents 1 and 2 are in reserve (never activated: autoscale is off).
    let mut handles = swarm
        .submit_batch((0..12).map(|_| task("work", Priority::Normal)).collect())
        .await
        .unwrap();
    handles.push(
        swarm
            .submit(
                Task::builder("work")
                    .affinity(AgentId::new(2))
                    .build()
                    .unwrap(),
            )
            .await
            .unwrap(),
    );
    for h in handles {
        let outcome = within("a task placed beside reserve agents", h).await;
        match outcome {
            TaskOutcome::Completed { agent_id, .. } => assert_eq!(agent_id, AgentId::new(0)),
            other => panic!("{other:?}"),
        }
    }
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn prefetch_does_not_let_new_arrivals_overtake_older_global_tasks() {
    let agent = RecordingAgent::new(Duration::from_millis(10));
    let started = agent.started.clone();
    let swarm = Swarm::builder()
        .agents(1)
        .max_agents(1)
        .autoscale(false)
        .prefetch(1)
        .agent_factory(move |_| agent.clone())
        .build()
        .await
        .unwrap();
    // A runs, B is prefetched into the agent's local queue, C and D wait globally.
    let mut handles = Vec::new();
    for kind in ["A", "B", "C", "D"] {
        handles.push(swarm.submit(task(kind, Priority::Normal)).await.unwrap());
    }
    // While B runs (its local queue is empty again), E arrives: it must wait
    // behind C and D, not jump ahead through the free prefetch slot.
    tokio::time::sleep(Duration::from_millis(15)).await;
    handles.push(swarm.submit(task("E", Priority::Normal)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(2)).await;
    handles.push(swarm.submit(task("F", Priority::Normal)).await.unwrap());
    for h in handles {
        assert!(within("a task", h).await.is_completed());
    }
    assert_eq!(*started.lock(), ["A", "B", "C", "D", "E", "F"]);
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}
