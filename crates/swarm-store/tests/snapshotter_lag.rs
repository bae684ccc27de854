//! The snapshotter keeps up with a burst: while one snapshot is being saved it
//! goes on following the log, so the events since the newest snapshot stay
//! bounded by the policy plus what arrives during snapshots, however long the
//! burst.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use swarm_core::AgentId;
use swarm_core::event::AgentAvailable;
use swarm_store::{EventStore, EventStream, MemoryStore, SeqRange, Snapshot, Snapshotter};

/// A memory store whose snapshot saves are slow in events: a save of the
/// snapshot at `seq` returns only once the log reaches `seq + slowness` (or
/// the burst is over). It records the longest snapshot, in events appended
/// between the snapshot's sequence and the save's return.
#[derive(Debug)]
struct SlowSnapshots {
    inner: MemoryStore,
    slowness: u64,
    /// The last sequence of the burst: a save never waits past it.
    end: u64,
    saves: AtomicU64,
    longest: AtomicU64,
}

impl EventStore for SlowSnapshots {
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
    fn first_seq(&self) -> BoxFuture<'_, swarm_store::Result<u64>> {
        self.inner.first_seq()
    }
    fn save_snapshot(&self, snapshot: Snapshot) -> BoxFuture<'_, swarm_store::Result<()>> {
        self.saves.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            let seq = snapshot.seq;
            let until = (seq + self.slowness).min(self.end);
            while self.inner.last_seq().await? < until {
                tokio::task::yield_now().await;
            }
            self.inner.save_snapshot(snapshot).await?;
            let took = self.inner.last_seq().await? - seq;
            self.longest.fetch_max(took, Ordering::Relaxed);
            Ok(())
        })
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
                agent_id: AgentId::new(n % 64),
            }
            .into()
        })
        .collect()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_lag_stays_bounded_through_a_burst_with_slow_saves() {
    const TOTAL: u64 = 200_000;
    const BATCH: u64 = 50;
    const EVERY: u64 = 1_000;
    const SLOWNESS: u64 = 5_000;
    let store = Arc::new(SlowSnapshots {
        inner: MemoryStore::new(),
        slowness: SLOWNESS,
        end: TOTAL,
        saves: AtomicU64::new(0),
        longest: AtomicU64::new(0),
    });
    let snapshotter = Snapshotter::spawn(Arc::clone(&store), EVERY);
    let mut max_lag = 0;
    let mut max_reported = 0;
    let mut next = 1;
    while next <= TOTAL {
        store.append(events(next, BATCH), None).await.unwrap();
        next += BATCH;
        tokio::task::yield_now().await;
        let lag = store.inner.last_seq().await.unwrap() - snapshotter.last_snapshot();
        max_lag = max_lag.max(lag);
        max_reported = max_reported.max(snapshotter.lag_events());
    }
    // A snapshot starts once `EVERY` events arrived since the one before, or
    // as soon as the one in flight ends, covering all the follower took
    // meanwhile; each takes `longest` events (at least `SLOWNESS`, more if
    // encoding was slow) from its start to its save. Just before a save
    // ends, the lag counts the events since the previous snapshot started
    // (`EVERY`, or one snapshot's worth) and those of this one; plus the
    // appends before the follower sees the save end (a batch or two).
    let longest = store.longest.load(Ordering::Relaxed);
    assert!(longest >= SLOWNESS, "the saves were not slow: {longest}");
    let bound = EVERY.max(longest) + longest + 4 * BATCH;
    assert!(
        max_lag <= bound,
        "the lag reached {max_lag} events (bound {bound}, longest snapshot {longest}) after {} saves",
        store.saves.load(Ordering::Relaxed)
    );
    assert!(
        max_reported <= max_lag,
        "reported {max_reported} > {max_lag}"
    );
    assert!(
        max_reported > SLOWNESS,
        "the reported lag {max_reported} never showed a slow save"
    );
    assert!(store.saves.load(Ordering::Relaxed) >= TOTAL / (2 * SLOWNESS));
    let state = snapshotter.stop().await.unwrap();
    assert_eq!(state.last_seq(), TOTAL);
    assert_eq!(
        store
            .latest_snapshot(u64::MAX)
            .await
            .unwrap()
            .map(|s| s.seq),
        Some(TOTAL),
        "stop saves the last events"
    );
}
