//! Log retention of the NatsStore against a real nats-server with JetStream:
//! the options map onto the stream's limits, `covered_by_snapshot` purges up
//! to a saved snapshot, and reads from before the stream's first sequence
//! are `StoreError::Compacted`.
//!
//! Needs `SWARM_NATS_URL` (see tests/nats_conformance.rs). Every test uses
//! its own stream and bucket and deletes them.
#![cfg(feature = "nats")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use swarm_core::Event;
use swarm_store::{
    EventStore, LogRetention, NatsStore, NatsStoreOptions, StoreError, SystemState, conformance,
};
use swarm_testkit::nats::{server_url, unique_name};

type Swarms = Arc<parking_lot::Mutex<Vec<String>>>;

fn register(swarms: &Swarms, tag: &str) -> String {
    let name = unique_name("test", tag);
    swarms.lock().push(name.clone());
    name
}

/// Runs `body`, then deletes the streams and buckets of the swarms it
/// registered, whether it passed or panicked.
async fn with_cleanup<F, Fut>(url: &str, body: F)
where
    F: FnOnce(Swarms) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let swarms: Swarms = Arc::default();
    let result = tokio::spawn(body(Arc::clone(&swarms))).await;
    let names: Vec<String> = swarms.lock().drain(..).collect();
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    for name in names {
        let options = NatsStoreOptions::new(url, &name);
        let _ = js.delete_stream(options.stream_name()).await;
        let _ = js
            .delete_stream(format!("KV_{}", options.bucket_name()))
            .await;
    }
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn events(n: usize) -> Vec<Event> {
    conformance::sample_events()
        .into_iter()
        .cycle()
        .take(n)
        .collect()
}

async fn connect(url: &str, swarm: &str, retention: LogRetention) -> NatsStore {
    NatsStore::connect(NatsStoreOptions::new(url, swarm).retention(retention))
        .await
        .unwrap_or_else(|e| panic!("SWARM_NATS_URL={url} is set but unusable: {e}"))
}

async fn stream_config(url: &str, swarm: &str) -> async_nats::jetstream::stream::Config {
    let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
    let name = NatsStoreOptions::new(url, swarm).stream_name();
    js.get_stream(name)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .clone()
}

async fn seqs(store: &impl EventStore, from: u64) -> Vec<Result<u64, StoreError>> {
    store.read(from).map(|r| r.map(|e| e.seq)).collect().await
}

fn is_compacted(items: &[Result<u64, StoreError>], requested: u64, earliest: u64) -> bool {
    matches!(
        items,
        [Err(StoreError::Compacted { requested: r, earliest: e })] if (*r, *e) == (requested, earliest)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn covered_by_snapshot_purges_up_to_the_snapshot_and_older_reads_are_compacted() {
    let Some(url) = server_url() else { return };
    with_cleanup(&url.clone(), |swarms| async move {
        let swarm = register(&swarms, "covered");
        let store = connect(&url, &swarm, LogRetention::covered_by_snapshot()).await;
        assert!(!stream_config(&url, &swarm).await.deny_purge);
        assert_eq!(store.first_seq().await.unwrap(), 1, "an empty log");
        for chunk in events(100).chunks(10) {
            store.append(chunk.to_vec(), None).await.unwrap();
        }
        let full = SystemState::replay(&store).await.unwrap();
        assert_eq!(store.first_seq().await.unwrap(), 1);

        let at = SystemState::replay_to(&store, 60).await.unwrap();
        store
            .save_snapshot(at.to_snapshot().unwrap())
            .await
            .unwrap();
        assert_eq!(store.first_seq().await.unwrap(), 61);

        let before = seqs(&store, 1).await;
        assert!(is_compacted(&before, 1, 61), "{before:?}");
        let before = seqs(&store, 60).await;
        assert!(is_compacted(&before, 60, 61), "{before:?}");
        let sub: Vec<_> = store.subscribe(5).take(2).collect().await;
        assert!(
            matches!(
                &sub[..],
                [Err(StoreError::Compacted {
                    requested: 5,
                    earliest: 61
                })]
            ),
            "{sub:?}"
        );
        let kept: Vec<u64> = seqs(&store, 61)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(kept, (61..=100).collect::<Vec<_>>());
        assert_eq!(SystemState::replay(&store).await.unwrap(), full);
        let err = SystemState::replay_to(&store, 10).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Compacted {
                    requested: 1,
                    earliest: 61
                }
            ),
            "{err:?}"
        );

        // Appends go on after the purge, and a second store sees the same start.
        let range = store.append(events(5), None).await.unwrap();
        assert_eq!(range.start, 101);

        // A second snapshot purges up to it and drops the first (its tail is gone).
        let at = SystemState::replay_to(&store, 90).await.unwrap();
        store
            .save_snapshot(at.to_snapshot().unwrap())
            .await
            .unwrap();
        assert_eq!(store.first_seq().await.unwrap(), 91);
        assert_eq!(
            store.latest_snapshot(u64::MAX).await.unwrap().unwrap().seq,
            90
        );
        assert!(
            store.latest_snapshot(89).await.unwrap().is_none(),
            "the snapshot at 60 stayed"
        );
        let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
        let bucket = NatsStoreOptions::new(&url, &swarm).bucket_name();
        let mut kv_stream = js.get_stream(format!("KV_{bucket}")).await.unwrap();
        let chunks = store.snapshot_chunk_size();
        let len = at.to_snapshot().unwrap().data.len();
        let messages = kv_stream.info().await.unwrap().state.messages;
        assert_eq!(
            messages as usize,
            len.div_ceil(chunks) + 1,
            "one manifest and its chunks"
        );
        assert_eq!(SystemState::replay(&store).await.unwrap().last_seq(), 105);
        let again_from = SystemState::replay_to(&store, 95).await.unwrap();
        assert_eq!(again_from.last_seq(), 95);
        let err = SystemState::replay_to(&store, 70).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Compacted {
                    requested: 1,
                    earliest: 91
                }
            ),
            "{err:?}"
        );
        let range = store.append(events(5), None).await.unwrap();
        assert_eq!(range.start, 106);
        let again = connect(&url, &swarm, LogRetention::covered_by_snapshot()).await;
        assert_eq!(again.first_seq().await.unwrap(), 91);
        assert_eq!(again.last_seq().await.unwrap(), 110);
        store.close().await.unwrap();
        again.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_keeps_everything_and_denies_purges() {
    let Some(url) = server_url() else { return };
    with_cleanup(&url.clone(), |swarms| async move {
        let swarm = register(&swarms, "keepall");
        let store = connect(&url, &swarm, LogRetention::keep_all()).await;
        store.append(events(30), None).await.unwrap();
        let at = SystemState::replay_to(&store, 30).await.unwrap();
        store
            .save_snapshot(at.to_snapshot().unwrap())
            .await
            .unwrap();
        assert_eq!(store.first_seq().await.unwrap(), 1);
        assert_eq!(seqs(&store, 1).await.len(), 30);
        let config = stream_config(&url, &swarm).await;
        assert!(config.deny_purge && config.deny_delete);
        assert_eq!(config.max_age, Duration::ZERO);
        assert!(config.max_bytes <= 0, "{}", config.max_bytes);
        store.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_and_size_limits_become_the_streams_and_follow_the_options() {
    let Some(url) = server_url() else { return };
    with_cleanup(&url.clone(), |swarms| async move {
        let swarm = register(&swarms, "limits");
        let limits = LogRetention::keep_all()
            .max_age(Duration::from_secs(3600))
            .max_bytes(1 << 20);
        let store = connect(&url, &swarm, limits).await;
        let config = stream_config(&url, &swarm).await;
        assert_eq!(config.max_age, Duration::from_secs(3600));
        assert_eq!(config.max_bytes, 1 << 20);
        assert!(config.deny_purge, "no purge is needed for limits");
        store.close().await.unwrap();

        // Reconnecting with other options updates the existing stream.
        let tighter = LogRetention::keep_all().max_age(Duration::from_secs(600));
        let store = connect(&url, &swarm, tighter).await;
        let config = stream_config(&url, &swarm).await;
        assert_eq!(config.max_age, Duration::from_secs(600));
        assert!(config.max_bytes <= 0, "{}", config.max_bytes);
        store.close().await.unwrap();
        let store = connect(&url, &swarm, LogRetention::keep_all()).await;
        assert_eq!(stream_config(&url, &swarm).await.max_age, Duration::ZERO);
        store.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_size_limit_removes_the_oldest_events_and_first_seq_follows() {
    let Some(url) = server_url() else { return };
    with_cleanup(&url.clone(), |swarms| async move {
        let swarm = register(&swarms, "maxbytes");
        let store = connect(&url, &swarm, LogRetention::keep_all().max_bytes(8 * 1024)).await;
        for chunk in events(400).chunks(20) {
            store.append(chunk.to_vec(), None).await.unwrap();
        }
        let first = store.first_seq().await.unwrap();
        assert!(first > 1, "the server removed nothing");
        assert_eq!(store.last_seq().await.unwrap(), 400);
        let before = seqs(&store, 1).await;
        assert!(is_compacted(&before, 1, first), "{before:?}");
        let kept: Vec<u64> = seqs(&store, first)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            kept,
            (first..=400).collect::<Vec<_>>(),
            "gap-free from the start"
        );
        store.close().await.unwrap();
    })
    .await;
}

/// A stream created denying purges (every stream made before retention
/// existed, and every keep-all one) cannot be switched to
/// `covered_by_snapshot`: the server refuses to undo `deny_purge`. Connect
/// fails saying what to do instead, and leaves the stream as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_a_purge_denying_stream_to_covered_by_snapshot_fails_and_says_what_to_do() {
    let Some(url) = server_url() else { return };
    with_cleanup(&url.clone(), |swarms| async move {
        let swarm = register(&swarms, "switch");
        let store = connect(&url, &swarm, LogRetention::keep_all()).await;
        store.append(events(10), None).await.unwrap();
        store.close().await.unwrap();
        let retention = LogRetention::covered_by_snapshot().max_age(Duration::from_secs(60));
        let options = NatsStoreOptions::new(&url, &swarm).retention(retention);
        let err = NatsStore::connect(options).await.unwrap_err();
        let message = err.to_string();
        assert!(message.contains("created denying purges"), "{message}");
        assert!(message.contains("max_age"), "{message}");
        let config = stream_config(&url, &swarm).await;
        assert!(config.deny_purge);
        assert_eq!(config.max_age, Duration::ZERO, "half-changed");
        // The log is untouched and still opens as it was.
        let store = connect(&url, &swarm, LogRetention::keep_all()).await;
        assert_eq!(seqs(&store, 1).await.len(), 10);
        store.close().await.unwrap();
    })
    .await;
}
