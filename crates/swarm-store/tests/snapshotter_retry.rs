//! The snapshotter outlives a failing store: each failure is logged, counted
//! and reported to the hook, and the save is retried with capped exponential
//! back-off until it succeeds (on tokio's paused clock: no real waiting).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use swarm_core::AgentId;
use swarm_core::event::AgentAvailable;
use swarm_store::{
    EventStore, EventStream, MemoryStore, SeqRange, Snapshot, Snapshotter, StoreError,
};
use tokio::time::Instant;

/// A memory store whose first `failures` snapshot saves fail with an i/o error.
#[derive(Debug)]
struct FlakySnapshots {
    inner: MemoryStore,
    failures: AtomicU64,
    /// When each save was tried (the paused clock's time).
    tries: Mutex<Vec<Instant>>,
}

impl FlakySnapshots {
    fn new(failures: u64) -> Self {
        FlakySnapshots {
            inner: MemoryStore::new(),
            failures: AtomicU64::new(failures),
            tries: Mutex::new(Vec::new()),
        }
    }
}

impl EventStore for FlakySnapshots {
    fn append(
        &self,
        events: Vec<swarm_core::Event>,
        expected: Option<u64>,
    ) -> BoxFuture<'_, swarm_store::Result<SeqRange>> {
        self.inner.append(events, expected)
    }
    fn read(&self, from_seq: u64) -> EventStream {
        self.inner.read(from_seq)
    }
    fn subscribe(&self, from_seq: u64) -> EventStream {
        self.inner.subscribe(from_seq)
    }
    fn last_seq(&self) -> BoxFuture<'_, swarm_store::Result<u64>> {
        self.inner.last_seq()
    }
    fn save_snapshot(&self, snapshot: Snapshot) -> BoxFuture<'_, swarm_store::Result<()>> {
        self.tries.lock().push(Instant::now());
        let fail = self
            .failures
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Box::pin(async {
                Err(StoreError::Io {
                    path: "snapshots".into(),
                    source: io::Error::new(io::ErrorKind::StorageFull, "disk full"),
                })
            });
        }
        self.inner.save_snapshot(snapshot)
    }
    fn latest_snapshot(
        &self,
        at_or_before: u64,
    ) -> BoxFuture<'_, swarm_store::Result<Option<Snapshot>>> {
        self.inner.latest_snapshot(at_or_before)
    }
    fn flush(&self) -> BoxFuture<'_, swarm_store::Result<()>> {
        self.inner.flush()
    }
    fn close(&self) -> BoxFuture<'_, swarm_store::Result<()>> {
        self.inner.close()
    }
}

fn events(from: u64, count: u64) -> Vec<swarm_core::Event> {
    (from..from + count)
        .map(|n| {
            AgentAvailable {
                agent_id: AgentId::new(n),
            }
            .into()
        })
        .collect()
}

/// Waits (on the paused clock) until a snapshot at `seq` or later is saved.
async fn wait_for_snapshot(store: &FlakySnapshots, seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(s) = store.inner.latest_snapshot(u64::MAX).await.unwrap()
            && s.seq >= seq
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot at {seq} saved after 10 minutes; {} saves were tried",
            store.tries.lock().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn failed_snapshots_are_retried_with_back_off_until_one_is_saved() {
    const FAILURES: u64 = 4;
    let store = Arc::new(FlakySnapshots::new(FAILURES));
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let hook_seen = Arc::clone(&seen);
    let snapshotter = Snapshotter::spawn_with(
        Arc::clone(&store),
        10,
        Arc::new(move |e: &StoreError| hook_seen.lock().push(e.to_string())),
    );
    store.append(events(1, 10), None).await.unwrap();
    wait_for_snapshot(&store, 10).await;
    assert_eq!(snapshotter.last_snapshot(), 10);
    assert_eq!(snapshotter.failures(), FAILURES);
    let seen = seen.lock().clone();
    assert_eq!(seen.len() as u64, FAILURES, "the hook saw {seen:?}");
    assert!(seen.iter().all(|m| m.contains("disk full")), "{seen:?}");

    // Back-off: each retry waits at least twice as long as the one before.
    let tries = store.tries.lock().clone();
    assert_eq!(
        tries.len() as u64,
        FAILURES + 1,
        "one try per failure, then the save"
    );
    let mut least = Duration::from_millis(100);
    for pair in tries.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= least, "a retry after {gap:?}, before {least:?}");
        least *= 2;
    }

    // It keeps following the log after recovering.
    store.append(events(11, 10), None).await.unwrap();
    wait_for_snapshot(&store, 20).await;
    assert_eq!(snapshotter.failures(), FAILURES);
    let state = snapshotter.stop().await.unwrap();
    assert_eq!(state.last_seq(), 20);
}
