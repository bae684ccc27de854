//! A swarm that runs for weeks: what it keeps per task is bounded by its
//! retention window, on every store. The snapshot a durable swarm writes
//! holds the live tasks and the window, not the history; a restart on it
//! rebuilds the same window with every aggregate counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use swarm::{EventStore, FileStore, Priority, Retention, Swarm, SystemState, Task, TaskStatus};

const TASKS: usize = 2_000;
const WINDOW: usize = 50;

async fn open_when_released(dir: &std::path::Path) -> FileStore {
    for _ in 0..500 {
        if let Ok(store) = FileStore::open(dir) {
            return store;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the store stayed locked after its swarm was shut down and dropped");
}

fn tasks(n: usize) -> Vec<Task> {
    (0..n)
        .map(|i| {
            Task::builder(if i % 2 == 0 { "even" } else { "odd" })
                .priority(Priority::Normal)
                .build()
                .unwrap()
        })
        .collect()
}

/// The swarm's own snapshots (the snapshotter, and the last one written at
/// shutdown) are made by a state with the builder's window: their size is
/// what is live plus the window, and a replay of them keeps the totals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_swarms_snapshots_hold_the_window_not_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention::default().finished(WINDOW);
    let swarm = Swarm::builder()
        .agents(4)
        .file_store(dir.path())
        .snapshot_every(500)
        .retention(retention)
        .build()
        .await
        .unwrap();
    for chunk in tasks(TASKS).chunks(100) {
        let handles = swarm.submit_batch(chunk.to_vec()).await.unwrap();
        for h in handles {
            assert!(h.await.is_completed());
        }
    }
    swarm.shutdown(Duration::from_secs(10)).await.unwrap();
    drop(swarm);

    let store = open_when_released(dir.path()).await;
    let last = store.last_seq().await.unwrap();
    let snapshot = store
        .latest_snapshot(last)
        .await
        .unwrap()
        .expect("a durable swarm leaves a snapshot");
    assert_eq!(snapshot.seq, last, "shutdown snapshots the end of the log");
    let state = SystemState::from_snapshot(&snapshot).unwrap();
    assert!(
        state.task_count() <= WINDOW,
        "the snapshot holds {} tasks, more than the window of {WINDOW}",
        state.task_count()
    );
    assert_eq!(state.counters().tasks_completed, TASKS as u64);
    let by_kind: u64 = state.kinds().map(|(_, c)| c.completed).sum();
    assert_eq!(by_kind, TASKS as u64);

    // A restart on it: the same window, the totals kept, nothing to re-run.
    let replayed = SystemState::replay_with(&store, retention).await.unwrap();
    assert_eq!(replayed.count(TaskStatus::Completed), WINDOW);
    assert_eq!(replayed.counters().tasks_completed, TASKS as u64);
    assert!(replayed.tasks_to_requeue().is_empty());
    store.close().await.unwrap();
}
