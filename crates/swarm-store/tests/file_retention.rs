//! Log retention of the file store: which segments go, what stays readable,
//! and the typed error for a read (or a replay) from before the retained start.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use swarm_core::Event;
use swarm_store::{
    Durability, EventStore, FileLogReader, FileStore, FileStoreOptions, LogRetention, StoreError,
    SystemState, conformance,
};

const EVENTS: u64 = 300;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn events(n: u64) -> Vec<Event> {
    conformance::sample_events()
        .into_iter()
        .cycle()
        .take(n as usize)
        .collect()
}

fn options() -> FileStoreOptions {
    FileStoreOptions::default()
        .durability(Durability::Buffered)
        .segment_size(1024)
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
}

fn first_of(path: &Path) -> u64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// Appends `EVENTS` events one append each; returns the state at the end.
async fn fill(store: &FileStore) -> SystemState {
    for e in events(EVENTS) {
        store.append(vec![e], None).await.unwrap();
    }
    store.flush().await.unwrap();
    SystemState::replay(store).await.unwrap()
}

/// Saves the state as of `seq` as a snapshot.
async fn snapshot_at(store: &FileStore, seq: u64) {
    let state = SystemState::replay_to(store, seq).await.unwrap();
    assert_eq!(state.last_seq(), seq);
    store
        .save_snapshot(state.to_snapshot().unwrap())
        .await
        .unwrap();
}

async fn seqs(store: &impl EventStore, from: u64) -> Vec<Result<u64, StoreError>> {
    store.read(from).map(|r| r.map(|e| e.seq)).collect().await
}

fn assert_compacted(items: &[Result<u64, StoreError>], requested: u64, earliest: u64) {
    match items {
        [
            Err(StoreError::Compacted {
                requested: r,
                earliest: e,
            }),
        ] => {
            assert_eq!((*r, *e), (requested, earliest), "{items:?}");
        }
        other => panic!("expected one Compacted({requested}, {earliest}), got {other:?}"),
    }
}

#[test]
fn covered_segments_go_reads_before_the_start_are_compacted_and_replay_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let options = options()
            .snapshots_kept(1)
            .retention(LogRetention::covered_by_snapshot());
        let store = FileStore::open_with(dir.path(), options.clone()).unwrap();
        let full = fill(&store).await;
        let before = segment_files(dir.path());
        assert!(before.len() > 10, "too few segments: {}", before.len());
        assert_eq!(store.first_seq().await.unwrap(), 1);

        snapshot_at(&store, 200).await; // retention runs after the save
        let first = store.first_seq().await.unwrap();
        let after = segment_files(dir.path());
        assert!(after.len() < before.len(), "nothing was deleted");
        // Whole segments only, oldest first, and nothing the snapshot needs.
        assert_eq!(first_of(&after[0]), first);
        assert!(first > 1 && first <= 201, "first kept {first}");
        assert_eq!(&after[..], &before[before.len() - after.len()..]);
        assert_eq!(store.segment_paths(), after);
        assert_eq!(store.enforce_retention().await.unwrap(), 0, "idempotent");

        // From before the start: one typed error, then the end.
        assert_compacted(&seqs(&store, 1).await, 1, first);
        assert_compacted(&seqs(&store, first - 1).await, first - 1, first);
        let sub: Vec<_> = store.subscribe(1).take(2).collect().await;
        assert!(
            matches!(&sub[..], [Err(StoreError::Compacted { requested: 1, earliest })] if *earliest == first),
            "{sub:?}"
        );
        // From the start on: gap-free to the end.
        let kept: Vec<u64> = seqs(&store, first)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(kept, (first..=EVENTS).collect::<Vec<_>>());
        assert_eq!(SystemState::replay(&store).await.unwrap(), full);

        // Replay to a sequence no kept snapshot covers and the log no longer holds.
        let err = SystemState::replay_to(&store, 10).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Compacted { requested: 1, earliest } if earliest == first),
            "{err:?}"
        );
        assert!(err.to_string().contains(&format!("earliest it holds is {first}")), "{err}");
        store.close().await.unwrap();
        drop(store);

        // The start survives a reopen, and the read-only reader knows it too.
        let store = FileStore::open_with(dir.path(), options).unwrap();
        assert_eq!(store.open_report().first_seq, first);
        assert_eq!(store.first_seq().await.unwrap(), first);
        assert_compacted(&seqs(&store, 1).await, 1, first);
        assert_eq!(SystemState::replay(&store).await.unwrap(), full);
        let reader = FileLogReader::open(dir.path()).unwrap();
        assert_eq!(reader.first_seq().unwrap(), first);
        assert_eq!(EventStore::first_seq(&reader).await.unwrap(), first);
        assert_compacted(&seqs(&reader, 1).await, 1, first);
        let sync: Vec<_> = reader.read(2).map(|r| r.map(|e| e.seq)).collect();
        assert_compacted(&sync, 2, first);
        assert_eq!(reader.read(first).count() as u64, EVENTS - first + 1);
        assert_eq!(SystemState::replay(&reader).await.unwrap(), full);
    });
}

#[test]
fn the_default_keeps_every_segment() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let store = FileStore::open_with(dir.path(), options().snapshots_kept(1)).unwrap();
        fill(&store).await;
        let before = segment_files(dir.path());
        snapshot_at(&store, EVENTS).await;
        assert_eq!(store.enforce_retention().await.unwrap(), 0);
        assert_eq!(segment_files(dir.path()), before);
        assert_eq!(store.first_seq().await.unwrap(), 1);
        assert!(!dir.path().join("log-start").exists());
    });
}

#[test]
fn nothing_is_deleted_without_a_snapshot_and_never_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let options = options().retention(LogRetention::covered_by_snapshot());
        let store = FileStore::open_with(dir.path(), options).unwrap();
        fill(&store).await;
        let before = segment_files(dir.path());
        assert_eq!(store.enforce_retention().await.unwrap(), 0, "no snapshot");
        assert_eq!(segment_files(dir.path()), before);

        // A snapshot of everything covers every sealed segment, not the active one.
        snapshot_at(&store, EVENTS).await;
        let after = segment_files(dir.path());
        assert_eq!(after, before[before.len() - 1..]);
        let first = store.first_seq().await.unwrap();
        assert_eq!(first, first_of(&after[0]));
        // Appends go on in the active segment and the log stays gap-free.
        store.append(events(3), None).await.unwrap();
        let kept: Vec<u64> = seqs(&store, first)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(kept, (first..=EVENTS + 3).collect::<Vec<_>>());
    });
}

#[test]
fn the_oldest_kept_snapshot_bounds_deletion() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let options = options()
            .snapshots_kept(2)
            .retention(LogRetention::covered_by_snapshot());
        let store = FileStore::open_with(dir.path(), options).unwrap();
        let full = fill(&store).await;
        snapshot_at(&store, 100).await;
        snapshot_at(&store, 250).await;
        let first = store.first_seq().await.unwrap();
        assert!(
            first > 1 && first <= 101,
            "the oldest kept is at 100: {first}"
        );
        // A replay to between the two snapshots starts from the older one.
        let at_120 = SystemState::replay_to(&store, 120).await.unwrap();
        assert_eq!(at_120.last_seq(), 120);
        // A third snapshot drops the one at 100 and moves the bound to 250.
        snapshot_at(&store, 280).await;
        let moved = store.first_seq().await.unwrap();
        assert!(moved > first && moved <= 251, "{moved}");
        assert_eq!(SystemState::replay(&store).await.unwrap(), full);
    });
}

#[test]
fn max_bytes_deletes_covered_segments_until_the_log_fits() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let limit = 4 * 1024;
        let options = options()
            .snapshots_kept(1)
            .retention(LogRetention::keep_all().max_bytes(limit));
        let store = FileStore::open_with(dir.path(), options).unwrap();
        let full = fill(&store).await;
        let size = |files: &[PathBuf]| -> u64 {
            files.iter().map(|f| fs::metadata(f).unwrap().len()).sum()
        };
        assert!(size(&segment_files(dir.path())) > 2 * limit);

        // Covered only up to 100: the limit cannot be reached yet.
        snapshot_at(&store, 100).await;
        let first = store.first_seq().await.unwrap();
        assert!(first <= 101);
        assert!(size(&segment_files(dir.path())) > limit);

        let before = segment_files(dir.path());
        let sizes: Vec<u64> = before
            .iter()
            .map(|f| size(std::slice::from_ref(f)))
            .collect();
        snapshot_at(&store, EVENTS).await;
        let after = segment_files(dir.path());
        assert!(size(&after) <= limit, "{} > {limit}", size(&after));
        // Oldest first, and no more than needed: keeping the newest deleted
        // segment would have been over the limit.
        let deleted = before.len() - after.len();
        assert!(deleted > 0);
        assert_eq!(&after[..], &before[deleted..]);
        assert!(sizes[deleted - 1..].iter().sum::<u64>() > limit);
        assert_eq!(first_of(&after[0]), store.first_seq().await.unwrap());
        assert_eq!(SystemState::replay(&store).await.unwrap(), full);
    });
}

#[test]
fn max_age_deletes_covered_segments_last_written_before_it() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let options = options()
            .snapshots_kept(1)
            .retention(LogRetention::keep_all().max_age(Duration::from_secs(3600)));
        let store = FileStore::open_with(dir.path(), options).unwrap();
        let full = fill(&store).await;
        snapshot_at(&store, EVENTS).await;
        let before = segment_files(dir.path());
        assert_eq!(segment_files(dir.path()), before, "all are fresh");

        // The four oldest were last written two hours ago.
        let old = SystemTime::now() - Duration::from_secs(7200);
        for f in &before[..4] {
            fs::File::options()
                .write(true)
                .open(f)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        assert_eq!(store.enforce_retention().await.unwrap(), 4);
        assert_eq!(segment_files(dir.path()), before[4..]);
        assert_eq!(store.first_seq().await.unwrap(), first_of(&before[4]));
        assert_eq!(SystemState::replay(&store).await.unwrap(), full);
    });
}

#[test]
fn retention_runs_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let full = runtime().block_on(async {
        let store = FileStore::open_with(dir.path(), options().snapshots_kept(1)).unwrap();
        let full = fill(&store).await;
        snapshot_at(&store, 250).await;
        store.close().await.unwrap();
        full
    });
    let before = segment_files(dir.path());
    let options = options().retention(LogRetention::covered_by_snapshot());
    // Dropping the store waits for the retention run that open started.
    drop(FileStore::open_with(dir.path(), options.clone()).unwrap());
    let after = segment_files(dir.path());
    assert!(after.len() < before.len(), "open deleted nothing");
    runtime().block_on(async {
        let store = FileStore::open_with(dir.path(), options).unwrap();
        assert_eq!(store.first_seq().await.unwrap(), first_of(&after[0]));
        assert_eq!(SystemState::replay(&store).await.unwrap(), full);
    });
}

#[test]
fn a_missing_first_segment_after_retention_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let options = options()
            .snapshots_kept(1)
            .retention(LogRetention::covered_by_snapshot());
        let store = FileStore::open_with(dir.path(), options.clone()).unwrap();
        fill(&store).await;
        snapshot_at(&store, 200).await;
        store.close().await.unwrap();
        drop(store);
        // Someone deletes the first kept segment by hand: a gap, not a new start.
        let first = segment_files(dir.path()).remove(0);
        fs::remove_file(&first).unwrap();
        let err = FileStore::open_with(dir.path(), options).unwrap_err();
        let StoreError::Corrupt { reason, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(reason.contains("a segment file is missing"), "{reason}");
    });
}

#[test]
fn a_closed_store_deletes_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let options = options()
            .snapshots_kept(1)
            .retention(LogRetention::covered_by_snapshot());
        let store = FileStore::open_with(dir.path(), options.clone()).unwrap();
        fill(&store).await;
        store.close().await.unwrap();
        // The directory's lock is free: another store may own it now.
        let owner = FileStore::open_with(dir.path(), FileStoreOptions::default()).unwrap();
        let before = segment_files(dir.path());
        let state = SystemState::replay_to(&owner, EVENTS).await.unwrap();
        owner
            .save_snapshot(state.to_snapshot().unwrap())
            .await
            .unwrap();
        assert_eq!(store.enforce_retention().await.unwrap(), 0);
        assert_eq!(segment_files(dir.path()), before);
        assert_eq!(owner.first_seq().await.unwrap(), 1);
    });
}
