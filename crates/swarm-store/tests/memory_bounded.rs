//! The bounded MemoryStore keeps the newest events and snapshots, says where
//! its tail starts, and turns every read from before it into `Compacted`:
//! at the start of a read, in the middle of one, and for a subscriber that
//! fell behind the ring.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::StreamExt;
use swarm_core::event::QueueBacklog;
use swarm_store::{
    EventStore, EventStream, MemoryRetention, MemoryStore, Snapshot, StoreError, StoredEvent,
    conformance,
};

fn marker(n: u64) -> swarm_core::Event {
    QueueBacklog {
        queued: n,
        threshold: 0,
    }
    .into()
}

async fn append(store: &MemoryStore, from: u64, count: u64) {
    store
        .append((from..from + count).map(marker).collect(), None)
        .await
        .unwrap();
}

/// Every item of a stream, until it ends.
async fn drain(mut stream: EventStream) -> Vec<swarm_store::Result<StoredEvent>> {
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        out.push(item);
    }
    out
}

fn is_compacted(item: &swarm_store::Result<StoredEvent>, requested: u64, earliest: u64) -> bool {
    matches!(
        item,
        Err(StoreError::Compacted { requested: r, earliest: e }) if (*r, *e) == (requested, earliest)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_memory_store_conforms() {
    conformance::run_all(|| async { MemoryStore::bounded(1 << 16) }).await;
}

#[tokio::test(flavor = "current_thread")]
async fn reads_before_a_small_tail_are_compacted() {
    conformance::first_seq_bounds_reads(MemoryStore::bounded(20)).await;
    conformance::first_seq_bounds_reads(MemoryStore::bounded(1)).await;
}

#[tokio::test]
async fn it_keeps_the_newest_events() {
    let store = MemoryStore::bounded(10);
    assert_eq!(store.first_seq().await.unwrap(), 1);
    for from in (1..=25).step_by(5) {
        append(&store, from, 5).await;
    }
    // One append larger than the bound keeps its own newest events.
    append(&store, 26, 14).await;
    assert_eq!(store.last_seq().await.unwrap(), 39);
    assert_eq!(store.first_seq().await.unwrap(), 30);
    let kept = drain(store.read(30)).await;
    let seqs: Vec<u64> = kept.iter().map(|e| e.as_ref().unwrap().seq).collect();
    assert_eq!(seqs, (30..=39).collect::<Vec<_>>());
    for e in kept {
        let e = e.unwrap();
        assert_eq!(e.event, marker(e.seq));
    }
    for from in [0, 1, 29] {
        let items = drain(store.read(from)).await;
        assert_eq!(items.len(), 1, "read({from}) ends after the error");
        assert!(
            is_compacted(&items[0], from.max(1), 30),
            "read({from}): {:?}",
            items[0]
        );
    }
    // An unbounded store keeps everything.
    let all = MemoryStore::new();
    append(&all, 1, 100).await;
    assert_eq!(all.first_seq().await.unwrap(), 1);
    assert_eq!(drain(all.read(1)).await.len(), 100);
    assert_eq!(all.retention(), MemoryRetention::unbounded());
}

#[tokio::test]
async fn a_read_whose_next_chunk_was_dropped_ends_with_compacted() {
    let store = MemoryStore::bounded(2_000);
    append(&store, 1, 2_000).await;
    let mut read = store.read(1);
    // The first item loads the first chunk (1024 events).
    assert_eq!(read.next().await.unwrap().unwrap().seq, 1);
    append(&store, 2_001, 3_000).await;
    let rest = drain(read).await;
    let (last, ok) = rest.split_last().unwrap();
    assert_eq!(ok.len(), 1_023, "the chunk already handed out");
    assert!(
        ok.iter()
            .enumerate()
            .all(|(i, e)| e.as_ref().unwrap().seq == i as u64 + 2)
    );
    assert!(is_compacted(last, 1_025, 3_001), "{last:?}");
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_the_ring_gets_compacted_not_a_gap() {
    let store = MemoryStore::bounded(100);
    append(&store, 1, 1).await;
    let mut sub = store.subscribe(1);
    assert_eq!(sub.next().await.unwrap().unwrap().seq, 1);
    // More batches than live subscribers may fall behind, and more events
    // than the ring holds.
    for from in (2..2 + 5 * 2_000).step_by(5) {
        append(&store, from, 5).await;
    }
    let last = store.last_seq().await.unwrap();
    let first = store.first_seq().await.unwrap();
    assert_eq!(first, last - 99);
    let items = drain(sub).await;
    // Whatever it got before the error follows 1 with no gap.
    let (end, ok) = items.split_last().unwrap();
    for (i, e) in ok.iter().enumerate() {
        assert_eq!(e.as_ref().unwrap().seq, i as u64 + 2, "a gap");
    }
    match end {
        Err(StoreError::Compacted {
            requested,
            earliest,
        }) => {
            assert_eq!(*requested, ok.len() as u64 + 2);
            assert_eq!(*earliest, first);
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
}

#[tokio::test]
async fn a_subscriber_that_keeps_up_sees_every_event() {
    let store = MemoryStore::bounded(10);
    let mut sub = store.subscribe(1);
    for from in (1..=1_000).step_by(5) {
        append(&store, from, 5).await;
        for seq in from..from + 5 {
            assert_eq!(sub.next().await.unwrap().unwrap().seq, seq);
        }
    }
    store.close().await.unwrap();
    assert!(sub.next().await.is_none());
}

#[tokio::test]
async fn it_keeps_the_newest_snapshots() {
    let store = MemoryStore::with_retention(MemoryRetention::bounded(1_000).snapshots_kept(2));
    append(&store, 1, 100).await;
    for seq in (10..=100).step_by(10) {
        store
            .save_snapshot(Snapshot {
                seq,
                data: vec![seq as u8],
            })
            .await
            .unwrap();
    }
    let at = |s: Option<Snapshot>| s.map(|s| s.seq);
    assert_eq!(
        at(store.latest_snapshot(u64::MAX).await.unwrap()),
        Some(100)
    );
    assert_eq!(at(store.latest_snapshot(99).await.unwrap()), Some(90));
    assert_eq!(
        at(store.latest_snapshot(89).await.unwrap()),
        None,
        "older ones dropped"
    );
    // The default bound keeps three.
    let store = MemoryStore::bounded(1_000);
    for seq in 1..=5 {
        store
            .save_snapshot(Snapshot { seq, data: vec![] })
            .await
            .unwrap();
    }
    assert_eq!(at(store.latest_snapshot(2).await.unwrap()), None);
    assert_eq!(at(store.latest_snapshot(3).await.unwrap()), Some(3));
}
