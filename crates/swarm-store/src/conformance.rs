//! The conformance suite: behaviour every [`EventStore`] must show.
//!
//! Call [`run_all`] from a test with a factory that makes a fresh, empty store
//! for each check (a tokio runtime with the time driver is needed; `#[tokio::test]`
//! has one):
//!
//! ```
//! use swarm_store::MemoryStore;
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! swarm_store::conformance::run_all(|| async { MemoryStore::new() }).await;
//! # });
//! ```
//!
//! Each check is also a public function, to run one alone. Checks panic with a
//! message on failure, like `assert!`.

// A test harness: panicking on a failed check is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use swarm_core::event::*;
use swarm_core::{AgentId, Event, Priority, Task, TaskId};

use crate::error::StoreError;
use crate::store::{EventStore, Snapshot, StoredEvent};

/// How long a check waits for an event before it fails (a hang is a failure).
const PATIENCE: Duration = Duration::from_secs(60);

/// Runs every check, each on a fresh store from `factory`.
pub async fn run_all<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: EventStore + 'static,
{
    empty_store(factory().await).await;
    append_assigns_gap_free_sequences(factory().await).await;
    events_round_trip_exactly(factory().await).await;
    expected_sequence_detects_conflicts(factory().await).await;
    read_from_any_sequence(factory().await).await;
    first_seq_bounds_reads(factory().await).await;
    concurrent_appends_are_gap_free(Arc::new(factory().await)).await;
    subscribe_catches_up_then_goes_live(factory().await).await;
    subscribe_seam_under_concurrent_appends(Arc::new(factory().await)).await;
    snapshots_are_keyed_by_sequence(factory().await).await;
    flush_then_close(factory().await).await;
}

/// One event of every kind in the catalog, with non-default fields.
pub fn sample_events() -> Vec<Event> {
    let task = Task::builder("summarize")
        .id(TaskId::from_u64(7))
        .priority(Priority::High)
        .payload(vec![0u8, 159, 146, 150, 255])
        .affinity(AgentId::new(2))
        .pinned(true)
        .timeout(Duration::from_millis(1500))
        .max_attempts(4)
        .build()
        .expect("a valid task");
    let id = task.id();
    let a = AgentId::new(2);
    vec![
        TaskCreated { task }.into(),
        TaskEnqueued {
            task_id: id,
            priority: Priority::High,
            queue: QueueLocation::Local(a),
        }
        .into(),
        TaskDequeued {
            task_id: id,
            priority: Priority::High,
            queue: QueueLocation::Global,
        }
        .into(),
        TaskCritical { task_id: id }.into(),
        TaskAssigned {
            task_id: id,
            agent_id: a,
            attempt: 2,
            priority: Priority::High,
            queue_wait: Duration::from_micros(1234),
        }
        .into(),
        TaskCompleted {
            task_id: id,
            agent_id: a,
            attempt: 2,
            duration: Duration::from_micros(99),
            output: "done".into(),
        }
        .into(),
        TaskFailed {
            task_id: id,
            agent_id: Some(a),
            attempt: 1,
            reason: FailureReason::Timeout,
            error: "took too long".into(),
            will_retry: true,
            retry_in: Some(Duration::from_millis(20)),
        }
        .into(),
        TaskDeadLettered {
            task_id: id,
            attempts: 3,
            errors: vec!["a".into(), "b".into()],
        }
        .into(),
        TaskCancelled {
            task_id: id,
            was_running: true,
        }
        .into(),
        AgentCreated {
            agent_id: a,
            reserve: true,
        }
        .into(),
        AgentRemoved {
            agent_id: a,
            reason: "idle".into(),
        }
        .into(),
        AgentAvailable { agent_id: a }.into(),
        AgentBusy {
            agent_id: a,
            task_id: id,
        }
        .into(),
        AgentError {
            agent_id: a,
            reason: FailureReason::Panic,
            error: "boom".into(),
            health: AgentHealth::Degraded,
        }
        .into(),
        WorkStolen {
            from: a,
            to: AgentId::new(3),
            count: 2,
            task_ids: vec![id, TaskId::from_u64(8)],
        }
        .into(),
        QueueBacklog {
            queued: 51,
            threshold: 50,
        }
        .into(),
        CoordinatorOverload {
            busy: 9,
            total: 10,
            load: 0.9,
        }
        .into(),
        PerformanceDegraded {
            p99_queue_wait: Duration::from_millis(30),
            objective: Duration::from_millis(10),
        }
        .into(),
        SystemShutdown {
            deadline: Duration::from_secs(5),
            pending: 12,
        }
        .into(),
    ]
}

/// A small event tagging its writer and position, to check where it landed.
fn marker(writer: u64, n: u64) -> Event {
    QueueBacklog {
        queued: writer,
        threshold: n,
    }
    .into()
}

async fn collect(store: &impl EventStore, from: u64) -> Vec<StoredEvent> {
    let mut out = Vec::new();
    let mut stream = store.read(from);
    while let Some(e) = tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("read stalled")
    {
        out.push(e.expect("read failed"));
    }
    out
}

/// A new store is empty.
pub async fn empty_store(store: impl EventStore) {
    assert_eq!(
        store.last_seq().await.unwrap(),
        0,
        "a new store has last_seq 0"
    );
    assert!(
        collect(&store, 1).await.is_empty(),
        "a new store reads nothing"
    );
    assert!(store.latest_snapshot(u64::MAX).await.unwrap().is_none());
    store.close().await.unwrap();
}

/// Sequences start at 1 and follow each other across appends.
pub async fn append_assigns_gap_free_sequences(store: impl EventStore) {
    let r1 = store
        .append(vec![marker(0, 0), marker(0, 1), marker(0, 2)], None)
        .await
        .unwrap();
    assert_eq!(r1.as_range(), 1..4);
    let r2 = store
        .append(vec![marker(0, 3), marker(0, 4)], None)
        .await
        .unwrap();
    assert_eq!(r2.as_range(), 4..6);
    let empty = store.append(Vec::new(), None).await.unwrap();
    assert!(empty.is_empty(), "an empty append gets an empty range");
    assert_eq!(empty.start, 6);
    assert_eq!(store.last_seq().await.unwrap(), 5);
    let read = collect(&store, 1).await;
    let seqs: Vec<u64> = read.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    for (i, e) in read.iter().enumerate() {
        assert_eq!(e.event, marker(0, i as u64));
    }
    assert!(read.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    store.close().await.unwrap();
}

/// Every kind of event reads back exactly as appended.
pub async fn events_round_trip_exactly(store: impl EventStore) {
    let events = sample_events();
    store.append(events.clone(), Some(0)).await.unwrap();
    let read: Vec<Event> = collect(&store, 1)
        .await
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(read, events);
    store.close().await.unwrap();
}

/// `expected` fences concurrent writers: a stale expectation appends nothing.
pub async fn expected_sequence_detects_conflicts(store: impl EventStore) {
    store.append(vec![marker(0, 0)], Some(0)).await.unwrap();
    match store.append(vec![marker(0, 1)], Some(0)).await {
        Err(StoreError::Conflict {
            expected: 0,
            actual: 1,
        }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        store.last_seq().await.unwrap(),
        1,
        "a conflict appends nothing"
    );
    let r = store
        .append(vec![marker(0, 1), marker(0, 2)], Some(1))
        .await
        .unwrap();
    assert_eq!(r.as_range(), 2..4);
    assert!(
        store
            .append(vec![marker(0, 3)], Some(5))
            .await
            .unwrap_err()
            .is_conflict()
    );
    store.close().await.unwrap();
}

/// `read(from)` starts at `from`; past the end it is empty.
pub async fn read_from_any_sequence(store: impl EventStore) {
    let events: Vec<Event> = (0..50).map(|i| marker(0, i)).collect();
    for chunk in events.chunks(7) {
        store.append(chunk.to_vec(), None).await.unwrap();
    }
    for from in [0u64, 1, 2, 7, 8, 25, 49, 50] {
        let read = collect(&store, from).await;
        let first = from.max(1);
        assert_eq!(read.len() as u64, 51 - first, "read({from})");
        for e in &read {
            assert_eq!(e.event, marker(0, e.seq - 1));
        }
        assert_eq!(read.first().map(|e| e.seq), Some(first));
    }
    assert!(collect(&store, 51).await.is_empty());
    assert!(collect(&store, 1000).await.is_empty());
    store.close().await.unwrap();
}

/// [`first_seq`](EventStore::first_seq) says where reads may start: 1 for an
/// empty store, then between 1 and `last_seq + 1`; a read from it yields every
/// event from there on; a read or a subscription from before it (a store
/// whose retention removed events) yields [`StoreError::Compacted`] naming it,
/// then ends. Run it on a store bounded to fewer than 50 events to check the
/// second half too.
pub async fn first_seq_bounds_reads(store: impl EventStore) {
    assert_eq!(
        store.first_seq().await.unwrap(),
        1,
        "an empty store's first_seq is the next sequence, 1"
    );
    let events: Vec<Event> = (0..50).map(|i| marker(0, i)).collect();
    for chunk in events.chunks(7) {
        store.append(chunk.to_vec(), None).await.unwrap();
    }
    let first = store.first_seq().await.unwrap();
    assert!(
        (1..=51).contains(&first),
        "first_seq {first} of a 50-event log"
    );
    let read: Vec<u64> = collect(&store, first).await.iter().map(|e| e.seq).collect();
    assert_eq!(read, (first..=50).collect::<Vec<_>>(), "read(first_seq)");
    if first > 1 {
        let before = first - 1;
        for (what, mut stream) in [
            ("read", store.read(before)),
            ("subscribe", store.subscribe(before)),
        ] {
            let next = tokio::time::timeout(PATIENCE, stream.next())
                .await
                .unwrap_or_else(|_| panic!("{what}({before}) stalled"));
            match next {
                Some(Err(StoreError::Compacted {
                    requested,
                    earliest,
                })) => {
                    assert_eq!((requested, earliest), (before, first), "{what}({before})");
                }
                other => panic!("{what}({before}) before first_seq {first} gave {other:?}"),
            }
            let end = tokio::time::timeout(PATIENCE, stream.next())
                .await
                .unwrap_or_else(|_| panic!("{what}({before}) did not end"));
            assert!(end.is_none(), "{what}({before}) went on after Compacted");
        }
    }
    store.close().await.unwrap();
}

/// Appends from many tasks get disjoint ranges that tile the log, and each
/// event lands at a sequence of its own append's range.
pub async fn concurrent_appends_are_gap_free<S: EventStore + 'static>(store: Arc<S>) {
    const WRITERS: u64 = 8;
    const APPENDS: u64 = 40;
    let mut handles = Vec::new();
    for w in 0..WRITERS {
        let store = Arc::clone(&store);
        handles.push(tokio::spawn(async move {
            let mut ranges = Vec::new();
            let mut n = 0;
            for i in 0..APPENDS {
                let size = 1 + (i % 3);
                let batch: Vec<Event> = (n..n + size).map(|k| marker(w, k)).collect();
                let r = store.append(batch, None).await.unwrap();
                assert_eq!(r.len(), size);
                ranges.push((r, n));
                n += size;
            }
            ranges
        }));
    }
    let mut all = Vec::new();
    for (w, h) in handles.into_iter().enumerate() {
        for (r, n) in h.await.unwrap() {
            all.push((r, w as u64, n));
        }
    }
    all.sort_by_key(|(r, _, _)| r.start);
    let mut next = 1;
    for (r, _, _) in &all {
        assert_eq!(r.start, next, "ranges tile the log with no gap or overlap");
        next = r.end;
    }
    let total = next - 1;
    assert_eq!(store.last_seq().await.unwrap(), total);
    let read = collect(&*store, 1).await;
    assert_eq!(read.len() as u64, total);
    for (r, w, n) in &all {
        for (i, seq) in r.as_range().enumerate() {
            assert_eq!(read[(seq - 1) as usize].seq, seq);
            assert_eq!(read[(seq - 1) as usize].event, marker(*w, n + i as u64));
        }
    }
    store.close().await.unwrap();
}

async fn next_event(stream: &mut crate::store::EventStream) -> StoredEvent {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("subscription stalled")
        .expect("subscription ended early")
        .expect("subscription failed")
}

/// A subscription delivers the log from `from`, then new events as they come,
/// and ends when the store closes.
pub async fn subscribe_catches_up_then_goes_live(store: impl EventStore) {
    store
        .append((0..5).map(|i| marker(0, i)).collect(), None)
        .await
        .unwrap();
    let mut from_start = store.subscribe(1);
    let mut from_middle = store.subscribe(4);
    let mut from_future = store.subscribe(7);
    for seq in 1..=5 {
        assert_eq!(next_event(&mut from_start).await.seq, seq);
    }
    for seq in 4..=5 {
        assert_eq!(next_event(&mut from_middle).await.seq, seq);
    }
    store
        .append((5..8).map(|i| marker(0, i)).collect(), None)
        .await
        .unwrap();
    for seq in 6..=8 {
        let e = next_event(&mut from_start).await;
        assert_eq!((e.seq, &e.event), (seq, &marker(0, seq - 1)));
        assert_eq!(next_event(&mut from_middle).await.seq, seq);
    }
    for seq in 7..=8 {
        assert_eq!(next_event(&mut from_future).await.seq, seq);
    }
    store.close().await.unwrap();
    let end = tokio::time::timeout(PATIENCE, from_start.next())
        .await
        .expect("close ends streams");
    assert!(end.is_none(), "a subscription ends when the store closes");
    assert!(matches!(
        store.append(vec![marker(0, 9)], None).await,
        Err(StoreError::Closed)
    ));
}

/// Subscribers that join while appends are racing see every sequence once,
/// in order, across the catch-up/live seam.
pub async fn subscribe_seam_under_concurrent_appends<S: EventStore + 'static>(store: Arc<S>) {
    const WRITERS: u64 = 4;
    const APPENDS: u64 = 150;
    const SUBSCRIBERS: usize = 6;
    let total = WRITERS * APPENDS * 2;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = Arc::clone(&store);
        writers.push(tokio::spawn(async move {
            for i in 0..APPENDS {
                store
                    .append(vec![marker(w, 2 * i), marker(w, 2 * i + 1)], None)
                    .await
                    .unwrap();
                if i % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    let mut subscribers = Vec::new();
    for s in 0..SUBSCRIBERS {
        // Join at different moments: before, during, and (maybe) after the appends.
        for _ in 0..s * 7 {
            tokio::task::yield_now().await;
        }
        let from = if s % 2 == 0 {
            1
        } else {
            1 + store.last_seq().await.unwrap() / 2
        };
        let mut stream = store.subscribe(from);
        subscribers.push(tokio::spawn(async move {
            let mut seen = BTreeSet::new();
            let mut expected = from;
            while expected <= total {
                let e = next_event(&mut stream).await;
                assert_eq!(e.seq, expected, "no gap, no duplicate at the seam");
                assert!(seen.insert(e.seq));
                expected += 1;
            }
            seen.len() as u64
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    for s in subscribers {
        let n = s.await.unwrap();
        assert!(n >= total / 2);
    }
    store.close().await.unwrap();
}

/// Snapshots are found by sequence: the newest at or before the one asked for.
pub async fn snapshots_are_keyed_by_sequence(store: impl EventStore) {
    store
        .append((0..30).map(|i| marker(0, i)).collect(), None)
        .await
        .unwrap();
    for seq in [10u64, 20, 30] {
        store
            .save_snapshot(Snapshot {
                seq,
                data: vec![seq as u8; 100],
            })
            .await
            .unwrap();
    }
    let at = |s: Option<Snapshot>| s.map(|s| (s.seq, s.data));
    assert_eq!(at(store.latest_snapshot(9).await.unwrap()), None);
    assert_eq!(
        at(store.latest_snapshot(10).await.unwrap()),
        Some((10, vec![10; 100]))
    );
    assert_eq!(
        at(store.latest_snapshot(25).await.unwrap()),
        Some((20, vec![20; 100]))
    );
    assert_eq!(
        at(store.latest_snapshot(u64::MAX).await.unwrap()),
        Some((30, vec![30; 100]))
    );
    store.close().await.unwrap();
}

/// `flush` and `close` succeed, and `close` is idempotent.
pub async fn flush_then_close(store: impl EventStore) {
    store.append(vec![marker(0, 0)], None).await.unwrap();
    store.flush().await.unwrap();
    store.close().await.unwrap();
    store.close().await.unwrap();
    assert_eq!(
        collect(&store, 1).await.len(),
        1,
        "a closed store still reads"
    );
}
