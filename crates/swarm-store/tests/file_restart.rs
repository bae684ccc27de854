//! Restart reads the snapshot and the tail only: `FileStore::open` checks the
//! segments from the one holding the newest snapshot's sequence on; older
//! segments are checked when a read reaches them, and damage there is a
//! `StoreError::Corrupt` of that read, not of the open.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use swarm_core::Event;
use swarm_store::{
    Durability, EventStore, FileLogReader, FileStore, FileStoreOptions, StoreError, SystemState,
    conformance,
};

mod support;

const EVENTS: u64 = 300;
const SNAPSHOT: u64 = 280;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn options() -> FileStoreOptions {
    FileStoreOptions::default()
        .durability(Durability::Buffered)
        .segment_size(512)
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

/// A closed log of `EVENTS` events in many segments, with a snapshot at
/// `SNAPSHOT` (when `snapshot`); returns the state at the end.
fn write_log(dir: &Path, snapshot: bool) -> SystemState {
    runtime().block_on(async {
        let store = FileStore::open_with(dir, options()).unwrap();
        let events: Vec<Event> = conformance::sample_events()
            .into_iter()
            .cycle()
            .take(EVENTS as usize)
            .collect();
        for e in events {
            store.append(vec![e], None).await.unwrap();
        }
        if snapshot {
            let state = SystemState::replay_to(&store, SNAPSHOT).await.unwrap();
            store
                .save_snapshot(state.to_snapshot().unwrap())
                .await
                .unwrap();
        }
        let full = SystemState::replay(&store).await.unwrap();
        store.close().await.unwrap();
        full
    })
}

/// Flips a bit inside the body of the second record of `segment`; returns
/// that record's offset.
fn damage_second_record(segment: &Path) -> u64 {
    let mut bytes = fs::read(segment).unwrap();
    let bounds = support::record_bounds(&bytes);
    let at = bounds[1];
    bytes[at + support::FRAME_HEADER_LEN + support::BODY_PREFIX_LEN + 2] ^= 0x10;
    fs::write(segment, &bytes).unwrap();
    at as u64
}

async fn read_seqs(store: &impl EventStore, from: u64) -> Vec<Result<u64, StoreError>> {
    store.read(from).map(|r| r.map(|e| e.seq)).collect().await
}

/// The events of the first segment's first record, then the damage, then the end.
fn assert_damage_after_one(items: &[Result<u64, StoreError>], file: &Path, offset: u64) {
    match items {
        [
            Ok(1),
            Err(StoreError::Corrupt {
                file: f,
                offset: o,
                reason,
            }),
        ] => {
            assert_eq!((f.as_path(), *o), (file, offset), "{reason}");
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected event 1 then Corrupt at {offset}, got {other:?}"),
    }
}

#[test]
fn damage_before_the_newest_snapshot_is_found_by_the_read_that_reaches_it_not_by_open() {
    let dir = tempfile::tempdir().unwrap();
    let full = write_log(dir.path(), true);
    let segments = segment_files(dir.path());
    assert!(segments.len() > 10, "{}", segments.len());
    let offset = damage_second_record(&segments[0]);

    runtime().block_on(async {
        // Open checks only from the segment holding the snapshot's sequence.
        let store = FileStore::open_with(dir.path(), options()).unwrap();
        let report = store.open_report().clone();
        assert_eq!(report.last_seq, EVENTS);
        assert_eq!(report.segments, segments.len());
        let holding = segments
            .iter()
            .rposition(|s| first_of(s) <= SNAPSHOT)
            .unwrap();
        assert_eq!(report.segments_verified, segments.len() - holding);
        // A replay from the snapshot never reads the damaged segment.
        assert_eq!(SystemState::replay(&store).await.unwrap(), full);
        // A read that reaches it gets the typed error, and the store stays usable.
        assert_damage_after_one(&read_seqs(&store, 1).await, &segments[0], offset);
        store
            .append(conformance::sample_events(), None)
            .await
            .unwrap();
        store.close().await.unwrap();
        drop(store);

        let reader = FileLogReader::open(dir.path()).unwrap();
        assert_damage_after_one(&read_seqs(&reader, 1).await, &segments[0], offset);
    });

    // Asked to check everything, open refuses the damage as before.
    let err = FileStore::open_with(dir.path(), options().verify_all_on_open(true)).unwrap_err();
    match err {
        StoreError::Corrupt {
            file, offset: o, ..
        } => {
            assert_eq!((file, o), (segments[0].clone(), offset));
        }
        other => panic!("{other:?}"),
    }
    // And repair checks everything too: it cuts at the damage.
    let store = FileStore::open_with(dir.path(), options().repair(true)).unwrap();
    let report = store.open_report();
    assert_eq!(report.last_seq, 1);
    assert_eq!(report.segments_verified, 1);
    assert!(report.snapshots_dropped >= 1, "{report:?}");
}

#[test]
fn damage_in_the_segment_holding_the_newest_snapshot_fails_the_open() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), true);
    let segments = segment_files(dir.path());
    let holding = segments
        .iter()
        .rposition(|s| first_of(s) <= SNAPSHOT)
        .unwrap();
    assert!(
        holding + 1 < segments.len(),
        "the snapshot is not in a sealed segment"
    );
    let offset = damage_second_record(&segments[holding]);
    match FileStore::open_with(dir.path(), options()).unwrap_err() {
        StoreError::Corrupt {
            file, offset: o, ..
        } => {
            assert_eq!((file, o), (segments[holding].clone(), offset));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn without_a_snapshot_open_checks_every_segment() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), false);
    let segments = segment_files(dir.path());
    let store = FileStore::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.open_report().segments_verified, segments.len());
    drop(store);
    let offset = damage_second_record(&segments[0]);
    match FileStore::open_with(dir.path(), options()).unwrap_err() {
        StoreError::Corrupt {
            file, offset: o, ..
        } => {
            assert_eq!((file, o), (segments[0].clone(), offset));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_old_segment_cut_short_or_missing_is_corrupt_when_read() {
    for missing in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let full = write_log(dir.path(), true);
        let segments = segment_files(dir.path());
        let victim = &segments[2];
        if missing {
            fs::remove_file(victim).unwrap();
        } else {
            // Cut inside its last record: a sealed segment, so not a torn tail.
            let len = fs::metadata(victim).unwrap().len();
            fs::File::options()
                .write(true)
                .open(victim)
                .unwrap()
                .set_len(len - 3)
                .unwrap();
        }
        runtime().block_on(async {
            let store = FileStore::open_with(dir.path(), options()).unwrap();
            assert_eq!(SystemState::replay(&store).await.unwrap(), full);
            let items = read_seqs(&store, 1).await;
            let (ok, err) = items.split_at(items.len() - 1);
            assert!(ok.iter().all(Result::is_ok));
            // Every event before the damage, in order, and nothing after it.
            let last_whole = if missing {
                first_of(&segments[2]) - 1
            } else {
                first_of(&segments[3]) - 2
            };
            assert_eq!(ok.len() as u64, last_whole, "missing: {missing}");
            match &err[0] {
                Err(StoreError::Corrupt { file, reason, .. }) => {
                    let expected = if missing { &segments[3] } else { victim };
                    assert_eq!(file, expected, "{missing}: {reason}");
                }
                other => panic!("{missing}: {other:?}"),
            }
        });
    }
}
