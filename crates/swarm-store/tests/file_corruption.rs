//! Damaged logs: truncation at every byte of the tail, random bit flips, and
//! the repair option. Never a panic, never a changed event.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use proptest::prelude::*;
use support::{FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use swarm_core::Event;

mod support;
use swarm_store::{Durability, EventStore, FileStore, FileStoreOptions, StoreError, conformance};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn events(n: usize) -> Vec<Event> {
    conformance::sample_events()
        .into_iter()
        .cycle()
        .take(n)
        .collect()
}

fn options(segment_size: u64) -> FileStoreOptions {
    FileStoreOptions::default()
        .durability(Durability::Buffered)
        .segment_size(segment_size)
}

/// Writes `events` one append each and closes; returns the segment paths.
fn write_log(dir: &Path, events: &[Event], segment_size: u64) -> Vec<PathBuf> {
    runtime().block_on(async {
        let store = FileStore::open_with(dir, options(segment_size)).unwrap();
        for e in events {
            store.append(vec![e.clone()], None).await.unwrap();
        }
        let paths = store.segment_paths();
        store.close().await.unwrap();
        paths
    })
}

/// Offsets where each record of a segment ends (the first is the header's end).
fn record_ends(bytes: &[u8]) -> Vec<usize> {
    let mut ends = vec![SEGMENT_HEADER_LEN];
    let mut at = SEGMENT_HEADER_LEN;
    while at + FRAME_HEADER_LEN <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += FRAME_HEADER_LEN + len;
        ends.push(at);
    }
    assert_eq!(at, bytes.len(), "a clean log ends at a record boundary");
    ends
}

fn read_all(store: &FileStore) -> Vec<Event> {
    runtime().block_on(async {
        let mut out = Vec::new();
        let mut s = store.read(1);
        while let Some(e) = s.next().await {
            let e = e.expect("a recovered log reads without error");
            assert_eq!(e.seq, out.len() as u64 + 1);
            out.push(e.event);
        }
        out
    })
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn truncating_the_tail_at_every_byte_cuts_back_to_the_last_whole_record() {
    let original = tempfile::tempdir().unwrap();
    let written = events(40);
    let paths = write_log(original.path(), &written, u64::MAX);
    assert_eq!(paths.len(), 1);
    let bytes = fs::read(&paths[0]).unwrap();
    let ends = record_ends(&bytes);
    let records = ends.len() - 1;
    assert_eq!(records, 40);
    // Every offset inside the last five records (and the clean end).
    let from = ends[records - 5];
    for cut_at in from..=bytes.len() {
        let dir = tempfile::tempdir().unwrap();
        let seg = dir.path().join(paths[0].file_name().unwrap());
        fs::write(&seg, &bytes[..cut_at]).unwrap();
        let store = FileStore::open_with(dir.path(), options(u64::MAX)).unwrap();
        let whole = ends.iter().rposition(|&e| e <= cut_at).unwrap();
        let report = store.open_report().clone();
        assert_eq!(report.last_seq, whole as u64, "cut at {cut_at}");
        assert_eq!(
            report.bytes_cut,
            (cut_at - ends[whole]) as u64,
            "cut at {cut_at}"
        );
        assert_eq!(report.cut.is_some(), cut_at != ends[whole]);
        if let Some(cut) = &report.cut {
            assert_eq!(cut.offset, ends[whole] as u64);
            assert!(!cut.repaired);
        }
        assert_eq!(read_all(&store), written[..whole]);
        assert_eq!(fs::metadata(&seg).unwrap().len(), ends[whole] as u64);
        // The recovered log takes new appends after the cut.
        runtime().block_on(async {
            let r = store.append(vec![written[0].clone()], None).await.unwrap();
            assert_eq!(r.start, whole as u64 + 1);
            store.close().await.unwrap();
        });
    }
}

#[test]
fn a_last_segment_torn_inside_its_header_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let written = events(30);
    let paths = write_log(dir.path(), &written, 512);
    assert!(paths.len() >= 3);
    let last = paths.last().unwrap();
    let first_seq: u64 = last.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    fs::write(last, &fs::read(last).unwrap()[..SEGMENT_HEADER_LEN - 3]).unwrap();
    let store = FileStore::open_with(dir.path(), options(512)).unwrap();
    assert_eq!(store.open_report().last_seq, first_seq - 1);
    assert_eq!(store.open_report().bytes_cut, SEGMENT_HEADER_LEN as u64 - 3);
    assert_eq!(read_all(&store), written[..(first_seq - 1) as usize]);
}

#[test]
fn damage_before_the_tail_is_a_typed_error_and_repair_cuts_there() {
    let dir = tempfile::tempdir().unwrap();
    let written = events(30);
    let paths = write_log(dir.path(), &written, 512);
    assert!(paths.len() >= 3);
    let first = &paths[0];
    let mut bytes = fs::read(first).unwrap();
    let ends = record_ends(&bytes);
    let damaged = ends[2]; // the third record
    bytes[damaged + FRAME_HEADER_LEN + 3] ^= 0x10;
    fs::write(first, &bytes).unwrap();

    match FileStore::open_with(dir.path(), options(512)) {
        Err(StoreError::Corrupt {
            file,
            offset,
            reason,
        }) => {
            assert_eq!(&file, first);
            assert_eq!(offset, damaged as u64);
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected a corrupt-log error, got {other:?}"),
    }
    let message = FileStore::open_with(dir.path(), options(512))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(&format!("corrupt at byte {damaged}")),
        "{message}"
    );
    assert!(message.contains("repair"), "{message}");

    let store = FileStore::open_with(dir.path(), options(512).repair(true)).unwrap();
    let report = store.open_report();
    assert_eq!(report.last_seq, 2);
    assert!(report.cut.as_ref().unwrap().repaired);
    assert!(report.bytes_cut > 0);
    assert_eq!(read_all(&store), written[..2]);
    assert_eq!(store.segment_paths().len(), 1);
}

#[test]
fn damage_in_the_middle_of_the_last_segment_is_not_taken_for_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let written = events(10);
    let paths = write_log(dir.path(), &written, u64::MAX);
    let mut bytes = fs::read(&paths[0]).unwrap();
    let ends = record_ends(&bytes);
    bytes[ends[4] + FRAME_HEADER_LEN + 1] ^= 0x01;
    fs::write(&paths[0], &bytes).unwrap();
    let err = FileStore::open_with(dir.path(), options(u64::MAX)).unwrap_err();
    assert!(err.is_corrupt(), "{err}");
}

#[test]
fn snapshots_past_a_cut_log_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let written = events(10);
    let paths = write_log(dir.path(), &written, u64::MAX);
    runtime().block_on(async {
        let store = FileStore::open_with(dir.path(), options(u64::MAX)).unwrap();
        for seq in [4, 10] {
            store
                .save_snapshot(swarm_store::Snapshot {
                    seq,
                    data: vec![1, 2, 3],
                })
                .await
                .unwrap();
        }
        store.close().await.unwrap();
    });
    let bytes = fs::read(&paths[0]).unwrap();
    let ends = record_ends(&bytes);
    fs::write(&paths[0], &bytes[..ends[6] + 3]).unwrap();
    let store = FileStore::open_with(dir.path(), options(u64::MAX)).unwrap();
    assert_eq!(store.open_report().last_seq, 6);
    assert_eq!(store.open_report().snapshots_dropped, 1);
    runtime().block_on(async {
        let s = store.latest_snapshot(u64::MAX).await.unwrap().unwrap();
        assert_eq!(s.seq, 4);
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_bit_flips_give_a_typed_error_or_a_cut_tail(
        file_pick in any::<prop::sample::Index>(),
        offset_pick in any::<prop::sample::Index>(),
        bit in 0u8..8,
        second_flip in any::<bool>(),
    ) {
        let original = tempfile::tempdir().unwrap();
        let written = events(24);
        let paths = write_log(original.path(), &written, 700);
        let dir = tempfile::tempdir().unwrap();
        copy_dir(original.path(), dir.path());
        let i = file_pick.index(paths.len());
        let path = dir.path().join(paths[i].file_name().unwrap());
        let mut bytes = fs::read(&path).unwrap();
        let at = offset_pick.index(bytes.len());
        bytes[at] ^= 1 << bit;
        if second_flip && at + 9 < bytes.len() {
            bytes[at + 9] ^= 0x80;
        }
        fs::write(&path, &bytes).unwrap();

        match FileStore::open_with(dir.path(), options(700)) {
            Ok(store) => {
                prop_assert_eq!(i, paths.len() - 1, "damage before the last segment must not open");
                let read = read_all(&store);
                prop_assert!(store.open_report().cut.is_some());
                prop_assert!(read.len() < written.len());
                prop_assert_eq!(&read[..], &written[..read.len()], "never a changed event");
            }
            Err(e) => {
                prop_assert!(
                    matches!(e, StoreError::Corrupt { .. } | StoreError::UnsupportedVersion { .. }),
                    "unexpected error {e}"
                );
            }
        }
    }
}
