//! Fair share end to end (`SwarmBuilder::fair_share`, `key_weight`), on
//! tokio's paused clock: tenant "a" queues a large backlog, tenant "b" then
//! submits a few tasks. With fair share on, b's tasks start within the DRR
//! bound (one task of a between two of b's, quantum 1, two keys), whatever
//! the prefetch setting; with it off they wait behind a's whole backlog.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use swarm::{Agent, BuildError, ExecuteError, SchedulerMode, Swarm, Task, TaskOutput};
use tokio::time::Instant;

/// Records the key of every task it starts, then works 10 ms.
#[derive(Clone, Default)]
struct KeyLog {
    starts: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl Agent for KeyLog {
    async fn execute(&self, task: &Task) -> Result<TaskOutput, ExecuteError> {
        let key = task.key().unwrap_or("-").to_owned();
        self.starts.lock().push((key, Instant::now()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok(TaskOutput::from("ok"))
    }
}

const AGENTS: usize = 2;
const BIG: usize = 200;
const SMALL: usize = 5;

async fn swarm(log: &KeyLog, fair: bool, prefetch: usize, weights: &[(&str, u32)]) -> Swarm {
    let agent = log.clone();
    let mut builder = Swarm::builder()
        .agents(AGENTS)
        .max_agents(AGENTS)
        .autoscale(false)
        .prefetch(prefetch)
        .fair_share(fair)
        .agent_factory(move |_| agent.clone());
    for (key, weight) in weights {
        builder = builder.key_weight(*key, *weight);
    }
    builder.build().await.unwrap()
}

fn keyed(key: &str) -> Task {
    Task::builder("work").key(key).build().unwrap()
}

/// Queues `BIG` tasks of "a", then `SMALL` of "b"; returns the keys in start
/// order and the index of the first start after b's submission.
async fn big_then_small(log: &KeyLog, swarm: &Swarm) -> (Vec<String>, usize) {
    let mut handles = Vec::new();
    for _ in 0..BIG {
        handles.push(swarm.submit(keyed("a")).await.unwrap());
    }
    let started_before_b = log.starts.lock().len();
    for _ in 0..SMALL {
        handles.push(swarm.submit(keyed("b")).await.unwrap());
    }
    for handle in handles {
        handle.await;
    }
    let keys = log.starts.lock().iter().map(|(k, _)| k.clone()).collect();
    (keys, started_before_b)
}

/// Starts of "a" logged after b's submission and before b's last start.
fn a_overtaking_b(keys: &[String], from: usize) -> usize {
    let last_b = keys.iter().rposition(|k| k == "b").unwrap();
    keys[from..last_b].iter().filter(|k| *k == "a").count()
}

#[tokio::test(start_paused = true)]
async fn a_small_tenant_starts_within_the_bound_with_fair_share_and_waits_without() {
    for prefetch in [0, 4] {
        let log = KeyLog::default();
        let swarm = swarm(&log, true, prefetch, &[]).await;
        let (keys, from) = big_then_small(&log, &swarm).await;
        assert_eq!(keys.len(), BIG + SMALL);
        let overtaking = a_overtaking_b(&keys, from);
        // DRR, quantum 1, two keys: at most one task of a popped before each
        // of b's, plus the tasks agents took before b arrived but had not
        // started yet (one per agent).
        assert!(
            overtaking <= SMALL + AGENTS,
            "fair share on, prefetch {prefetch}: {overtaking} tasks of a started before b's last"
        );
        swarm.shutdown(Duration::from_secs(1)).await.unwrap();
    }

    let log = KeyLog::default();
    let swarm = swarm(&log, false, 0, &[]).await;
    let (keys, from) = big_then_small(&log, &swarm).await;
    let overtaking = a_overtaking_b(&keys, from);
    // FIFO: b waits for a's whole backlog.
    assert!(
        overtaking >= BIG - AGENTS,
        "fair share off: only {overtaking} tasks of a started before b's last"
    );
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_small_tenant_waits_a_few_task_times_not_the_backlog() {
    let mut waits = Vec::new();
    for fair in [true, false] {
        let log = KeyLog::default();
        let swarm = swarm(&log, fair, 0, &[]).await;
        let t0 = Instant::now();
        let (_, _) = big_then_small(&log, &swarm).await;
        let last_b = log
            .starts
            .lock()
            .iter()
            .filter(|(k, _)| k == "b")
            .map(|(_, at)| *at - t0)
            .max()
            .unwrap();
        waits.push(last_b);
        swarm.shutdown(Duration::from_secs(1)).await.unwrap();
    }
    // On the paused clock the times are exact: with fair share b's last task
    // starts after at most 2·SMALL task times over two agents (plus the first
    // round); without, after the whole backlog.
    let task = Duration::from_millis(10);
    assert!(
        waits[0] <= task * (SMALL as u32 + 1),
        "fair: {:?}",
        waits[0]
    );
    assert!(
        waits[1] >= task * (BIG / AGENTS) as u32,
        "off: {:?}",
        waits[1]
    );
}

#[tokio::test(start_paused = true)]
async fn weights_give_a_key_a_proportional_share_of_the_starts() {
    let log = KeyLog::default();
    let swarm = swarm(&log, true, 0, &[("heavy", 3)]).await;
    let mut handles = Vec::new();
    for _ in 0..100 {
        handles.push(swarm.submit(keyed("light")).await.unwrap());
    }
    let from = log.starts.lock().len();
    for _ in 0..100 {
        handles.push(swarm.submit(keyed("heavy")).await.unwrap());
    }
    for handle in handles {
        handle.await;
    }
    let keys: Vec<String> = log.starts.lock().iter().map(|(k, _)| k.clone()).collect();
    // While both are backlogged, heavy gets 3 starts per light one.
    let window = &keys[from..from + 80];
    let heavy = window.iter().filter(|k| *k == "heavy").count();
    assert!((56..=64).contains(&heavy), "heavy started {heavy} of 80");
    swarm.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_quantum_sets_how_many_units_a_key_starts_per_turn() {
    for quantum in [1usize, 3] {
        let log = KeyLog::default();
        let agent = log.clone();
        // One agent: the start order is the fair queue's pop order.
        let swarm = Swarm::builder()
            .agents(1)
            .max_agents(1)
            .autoscale(false)
            .fair_share(true)
            .fair_share_quantum(quantum as u32)
            .agent_factory(move |_| agent.clone())
            .build()
            .await
            .unwrap();
        swarm.pause().await.unwrap();
        let mut handles = Vec::new();
        for key in ["a", "b"] {
            for _ in 0..12 {
                handles.push(swarm.submit(keyed(key)).await.unwrap());
            }
        }
        swarm.resume().await.unwrap();
        for handle in handles {
            handle.await;
        }
        let keys: Vec<String> = log.starts.lock().iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys.len(), 24);
        // Runs of one key, each `quantum` long while both are backlogged.
        let mut runs = Vec::new();
        for key in &keys {
            match runs.last_mut() {
                Some((k, n)) if k == key => *n += 1,
                _ => runs.push((key.clone(), 1usize)),
            }
        }
        assert!(
            runs.iter().all(|(_, n)| *n == quantum),
            "quantum {quantum}: runs {runs:?}"
        );
        swarm.shutdown(Duration::from_secs(1)).await.unwrap();
    }
    let err = Swarm::builder()
        .fair_share(true)
        .fair_share_quantum(0)
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BuildError::Config(m) if m.contains("fair_share_quantum(0)")),
        "{err}"
    );
}

#[tokio::test]
async fn a_zero_weight_and_fair_share_in_polling_mode_are_refused() {
    let err = Swarm::builder()
        .fair_share(true)
        .key_weight("t", 0)
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BuildError::Config(m) if m.contains("weight")),
        "{err}"
    );
    let err = Swarm::builder()
        .fair_share(true)
        .mode(SchedulerMode::Polling {
            interval: Duration::from_millis(10),
            batch: 1,
        })
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BuildError::Config(m) if m.contains("polling")),
        "{err}"
    );
}

/// Fair share and limits together: one tenant held to one running task by a
/// concurrency limit inside the fair queue's round robin; every task of both
/// tenants completes, and the limit is never exceeded.
#[tokio::test(start_paused = true)]
async fn fair_share_and_a_concurrency_limit_combine() {
    use swarm::Selector;
    #[derive(Clone, Default)]
    struct Running {
        now: Arc<Mutex<(usize, usize)>>,
    }
    impl Agent for Running {
        async fn execute(&self, task: &Task) -> Result<TaskOutput, ExecuteError> {
            let limited = task.key() == Some("a");
            if limited {
                let mut now = self.now.lock();
                now.0 += 1;
                now.1 = now.1.max(now.0);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            if limited {
                self.now.lock().0 -= 1;
            }
            Ok(TaskOutput::from("ok"))
        }
    }
    let agent = Running::default();
    let seen = agent.clone();
    let swarm = Swarm::builder()
        .agents(AGENTS)
        .max_agents(AGENTS)
        .autoscale(false)
        .fair_share(true)
        .concurrency_limit(Selector::key("a"), 1)
        .agent_factory(move |_| agent.clone())
        .build()
        .await
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..60 {
        let key = if i % 2 == 0 { "a" } else { "b" };
        handles.push(swarm.submit(keyed(key)).await.unwrap());
    }
    for handle in handles {
        assert!(matches!(handle.await, swarm::TaskOutcome::Completed { .. }));
    }
    assert_eq!(
        seen.now.lock().1,
        1,
        "tenant a ran more than one task at once"
    );
    swarm.shutdown(Duration::from_secs(5)).await.unwrap();
}
