//! When the snapshotter snapshots: by events, by time when events stop
//! coming, never while idle; on tokio's paused clock (no real waiting).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use swarm_core::AgentId;
use swarm_core::event::AgentAvailable;
use swarm_store::{
    EventStore, EventStream, MemoryStore, SeqRange, Snapshot, SnapshotPolicy, Snapshotter,
    StoreError, SystemState,
};

/// A memory store that counts snapshot saves and how often its subscriptions
/// are polled: each wake-up of a follower polls its subscription.
#[derive(Debug, Default)]
struct Watched {
    inner: MemoryStore,
    saves: AtomicU64,
    polls: Arc<AtomicU64>,
}

impl EventStore for Watched {
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
        let mut inner = self.inner.subscribe(from_seq);
        let polls = Arc::clone(&self.polls);
        futures::stream::poll_fn(move |cx| {
            polls.fetch_add(1, Ordering::Relaxed);
            inner.poll_next_unpin(cx)
        })
        .boxed()
    }
    fn last_seq(&self) -> BoxFuture<'_, swarm_store::Result<u64>> {
        self.inner.last_seq()
    }
    fn save_snapshot(&self, snapshot: Snapshot) -> BoxFuture<'_, swarm_store::Result<()>> {
        self.saves.fetch_add(1, Ordering::Relaxed);
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

async fn newest(store: &Watched) -> Option<u64> {
    store
        .inner
        .latest_snapshot(u64::MAX)
        .await
        .unwrap()
        .map(|s| s.seq)
}

/// Lets the snapshotter run: yields, then waits a little on the paused clock.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test(start_paused = true)]
async fn the_time_trigger_snapshots_events_that_stopped_coming() {
    let store = Arc::new(Watched::default());
    let policy = SnapshotPolicy::new()
        .every_events(1_000)
        .every(Duration::from_secs(5));
    let snapshotter = Snapshotter::spawn_with_policy(Arc::clone(&store), policy, None);
    store.append(events(1, 3), None).await.unwrap();
    settle().await;
    assert_eq!(snapshotter.lag_events(), 3);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(newest(&store).await, None, "too early for the time trigger");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(newest(&store).await, Some(3), "the time trigger fired");
    assert_eq!(snapshotter.last_snapshot(), 3);
    assert_eq!(snapshotter.lag_events(), 0);

    // Later events get their own deadline, counted from their arrival.
    tokio::time::sleep(Duration::from_secs(60)).await;
    store.append(events(4, 2), None).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(newest(&store).await, Some(3));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(newest(&store).await, Some(5));
    assert_eq!(store.saves.load(Ordering::Relaxed), 2);
    snapshotter.stop().await.unwrap();
    assert_eq!(
        store.saves.load(Ordering::Relaxed),
        2,
        "nothing new to save"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_snapshotter_is_never_woken() {
    let store = Arc::new(Watched::default());
    let snapshotter = Snapshotter::spawn_with_policy(
        Arc::clone(&store),
        SnapshotPolicy::new().every(Duration::from_secs(5)),
        None,
    );
    settle().await;
    let polls = store.polls.load(Ordering::Relaxed);
    assert!(polls > 0, "it subscribed");
    // Idle from the start: a day passes (the paused clock jumps to each timer).
    tokio::time::sleep(Duration::from_secs(86_400)).await;
    assert_eq!(
        store.polls.load(Ordering::Relaxed),
        polls,
        "woken while idle"
    );
    assert_eq!(store.saves.load(Ordering::Relaxed), 0);

    // Idle after a time-triggered snapshot: no timer is left behind.
    store.append(events(1, 1), None).await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(newest(&store).await, Some(1));
    settle().await;
    let polls = store.polls.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(86_400)).await;
    assert_eq!(
        store.polls.load(Ordering::Relaxed),
        polls,
        "woken while idle after a snapshot"
    );
    assert_eq!(store.saves.load(Ordering::Relaxed), 1);
    snapshotter.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn count_triggered_snapshots_fall_on_their_boundaries_while_it_keeps_up() {
    let store = Arc::new(MemoryStore::new());
    let snapshotter = Snapshotter::spawn_with_policy(
        Arc::clone(&store),
        SnapshotPolicy::new()
            .every_events(10)
            .without_time_trigger(),
        None,
    );
    for from in (1..=43).step_by(7) {
        store.append(events(from, 7), None).await.unwrap();
        // Each snapshot ends before the next append.
        settle().await;
    }
    // 49 events: snapshots at 10, 20, 30, 40; the 9 after wait for more (no time trigger).
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(snapshotter.last_snapshot(), 40);
    assert_eq!(snapshotter.lag_events(), 9);
    for at in [10u64, 20, 30, 40] {
        let found = store.latest_snapshot(at + 9).await.unwrap().unwrap();
        assert_eq!(found.seq, at);
        let state = SystemState::from_snapshot(&found).unwrap();
        assert_eq!(state.last_seq(), at);
    }
    let state = snapshotter.stop().await.unwrap();
    assert_eq!(state.last_seq(), 49);
    assert_eq!(
        store.latest_snapshot(u64::MAX).await.unwrap().unwrap().seq,
        49
    );
}

#[tokio::test(start_paused = true)]
async fn it_starts_from_the_state_the_policy_builds() {
    let store = Arc::new(MemoryStore::new());
    store.append(events(1, 8), None).await.unwrap();
    let mut at_5 = SystemState::new();
    let mut stream = store.read(1);
    while let Some(e) = stream.next().await {
        let e = e.unwrap();
        if e.seq <= 5 {
            at_5.apply(&e);
        }
    }
    store
        .save_snapshot(at_5.to_snapshot().unwrap())
        .await
        .unwrap();
    // A damaged snapshot after it: the policy's builder refuses it.
    store
        .save_snapshot(Snapshot {
            seq: 7,
            data: b"not a snapshot".to_vec(),
        })
        .await
        .unwrap();
    let seen: Arc<parking_lot::Mutex<Vec<Option<u64>>>> = Arc::default();
    let builder_seen = Arc::clone(&seen);
    let policy = SnapshotPolicy::new().initial_state(move |snapshot| {
        builder_seen.lock().push(snapshot.map(|s| s.seq));
        match snapshot {
            Some(snapshot) => SystemState::from_snapshot(snapshot),
            None => Ok(SystemState::new()),
        }
    });
    let errors: Arc<parking_lot::Mutex<Vec<String>>> = Arc::default();
    let hook_errors = Arc::clone(&errors);
    let snapshotter = Snapshotter::spawn_with_policy(
        Arc::clone(&store),
        policy,
        Some(Arc::new(move |e: &StoreError| {
            hook_errors.lock().push(e.to_string())
        })),
    );
    settle().await;
    assert_eq!(
        *seen.lock(),
        vec![Some(7), Some(5)],
        "the damaged one, then the one before"
    );
    assert_eq!(snapshotter.failures(), 1);
    assert_eq!(errors.lock().len(), 1, "{:?}", errors.lock());
    assert_eq!(snapshotter.lag_events(), 3, "followed from 6 to 8");
    let state = snapshotter.stop().await.unwrap();
    assert_eq!(state, SystemState::replay(&*store).await.unwrap());
    assert_eq!(state.last_seq(), 8);
}
