//! `FileLogReader`: reads a log beside a live writer, never writes, and
//! reports damage before the tail as the store does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use support::{FRAME_HEADER_LEN, record_bounds};
use swarm_core::event::AgentRemoved;
use swarm_core::{AgentId, Event};
use swarm_store::{
    EventStore, FileLogReader, FileStore, FileStoreOptions, StoreError, SystemState,
};

fn event(n: u64) -> Event {
    AgentRemoved {
        agent_id: AgentId::new(n),
        reason: format!("reason {n}"),
    }
    .into()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn write_log(dir: &Path, count: u64, segment_size: u64) {
    rt().block_on(async {
        let options = FileStoreOptions::default().segment_size(segment_size);
        let store = FileStore::open_with(dir, options).unwrap();
        for n in 1..=count {
            store.append(vec![event(n)], None).await.unwrap();
        }
        store.close().await.unwrap();
    });
}

fn agent_of(e: &Event) -> u64 {
    match e {
        Event::AgentRemoved(e) => e.agent_id.as_u64(),
        other => panic!("unexpected event {other:?}"),
    }
}

fn dir_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn reads_a_log_while_another_task_appends_to_it() {
    const TOTAL: u64 = 3_000;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let runtime = rt();
    // Small segments: the reader also crosses segments the writer is rolling.
    let options = FileStoreOptions::default().segment_size(4096);
    let store = FileStore::open_with(&dir, options).unwrap();
    let writer = {
        let store = store.clone();
        runtime.spawn(async move {
            for n in 0..TOTAL / 10 {
                let batch = (1..=10).map(|i| event(n * 10 + i)).collect();
                store.append(batch, None).await.unwrap();
            }
        })
    };
    let reader = FileLogReader::open(&dir).unwrap();
    let mut records = reader.read(1);
    let mut seen = 0u64;
    let mut rounds = 0u64;
    while seen < TOTAL {
        for stored in records.by_ref() {
            let stored = stored.unwrap_or_else(|e| panic!("read beside the writer failed: {e}"));
            seen += 1;
            assert_eq!(stored.seq, seen, "in order, with no gap");
            assert_eq!(agent_of(&stored.event), seen);
        }
        rounds += 1;
        assert!(
            rounds < 1_000_000,
            "the reader never caught up ({seen} of {TOTAL})"
        );
        std::thread::yield_now();
    }
    runtime.block_on(writer).unwrap();
    runtime.block_on(store.close()).unwrap();
    assert_eq!(records.next().map(|r| r.unwrap().seq), None);
    assert_eq!(reader.last_seq().unwrap(), TOTAL);
    assert!(
        store.segment_paths().len() > 3,
        "segments rolled while read"
    );
}

#[test]
fn subscribe_delivers_records_appended_later() {
    let tmp = tempfile::tempdir().unwrap();
    let runtime = rt();
    runtime.block_on(async {
        let store = FileStore::open(tmp.path()).unwrap();
        store.append(vec![event(1), event(2)], None).await.unwrap();
        let reader = FileLogReader::open(tmp.path()).unwrap();
        let mut live = EventStore::subscribe(&reader, 2);
        assert_eq!(live.next().await.unwrap().unwrap().seq, 2);
        store.append(vec![event(3)], None).await.unwrap();
        let third = tokio::time::timeout(Duration::from_secs(10), live.next())
            .await
            .expect("the appended record is seen")
            .unwrap()
            .unwrap();
        assert_eq!(third.seq, 3);
        store.close().await.unwrap();
    });
}

#[test]
fn a_torn_tail_is_not_visible_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    write_log(tmp.path(), 5, 1 << 20);
    let seg = tmp.path().join("00000000000000000001.log");
    let mut bytes = fs::read(&seg).unwrap();
    let bounds = record_bounds(&bytes);
    // Half of the fifth record, and a temp file of an interrupted snapshot.
    bytes.truncate(bounds[4] + FRAME_HEADER_LEN + 3);
    fs::write(&seg, &bytes).unwrap();
    fs::write(
        tmp.path().join("snapshot-00000000000000000009.snap.tmp"),
        b"x",
    )
    .unwrap();
    let before = dir_bytes(tmp.path());

    let reader = FileLogReader::open(tmp.path()).unwrap();
    let mut records = reader.read(1);
    let seqs: Vec<u64> = records.by_ref().map(|r| r.unwrap().seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    let torn = records.torn_tail().expect("the torn tail is reported");
    assert_eq!(torn.offset, bounds[4] as u64);
    assert_eq!(reader.last_seq().unwrap(), 4);
    let state = rt().block_on(SystemState::replay(&reader)).unwrap();
    assert_eq!(state.last_seq(), 4);
    assert!(reader.torn_tail().is_some());
    assert_eq!(
        dir_bytes(tmp.path()),
        before,
        "the reader changed the directory"
    );
}

#[test]
fn damage_before_the_tail_is_an_error_naming_file_and_offset_after_the_events_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    write_log(tmp.path(), 6, 1 << 20);
    let seg = tmp.path().join("00000000000000000001.log");
    let mut bytes = fs::read(&seg).unwrap();
    let bounds = record_bounds(&bytes);
    bytes[bounds[2] + FRAME_HEADER_LEN + 20] ^= 0x40;
    fs::write(&seg, &bytes).unwrap();

    let reader = FileLogReader::open(tmp.path()).unwrap();
    let got: Vec<_> = reader.read(1).collect();
    assert_eq!(got.len(), 3, "two events, then the error: {got:?}");
    assert_eq!(got[0].as_ref().unwrap().seq, 1);
    assert_eq!(got[1].as_ref().unwrap().seq, 2);
    match &got[2] {
        Err(StoreError::Corrupt { file, offset, .. }) => {
            assert_eq!(file, &seg);
            assert_eq!(*offset, bounds[2] as u64);
        }
        other => panic!("not a corrupt error: {other:?}"),
    }
    // The stream form delivers the same.
    let streamed: Vec<_> = rt().block_on(EventStore::read(&reader, 1).collect());
    assert_eq!(streamed.len(), 3);
    assert!(streamed[2].as_ref().is_err_and(|e| e.is_corrupt()));
}

#[test]
fn replay_through_the_reader_uses_the_snapshot_and_equals_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let runtime = rt();
    let from_store = runtime.block_on(async {
        let store =
            FileStore::open_with(tmp.path(), FileStoreOptions::default().segment_size(2048))
                .unwrap();
        for n in 1..=40 {
            store.append(vec![event(n)], None).await.unwrap();
            if n == 25 {
                let state = SystemState::replay(&store).await.unwrap();
                store
                    .save_snapshot(state.to_snapshot().unwrap())
                    .await
                    .unwrap();
            }
        }
        let state = SystemState::replay(&store).await.unwrap();
        store.close().await.unwrap();
        state
    });
    let reader = FileLogReader::open(tmp.path()).unwrap();
    assert_eq!(reader.latest_snapshot(u64::MAX).unwrap().unwrap().seq, 25);
    let from_reader = runtime.block_on(SystemState::replay(&reader)).unwrap();
    assert_eq!(from_reader, from_store);
    let at_30 = runtime
        .block_on(SystemState::replay_to(&reader, 30))
        .unwrap();
    assert_eq!(at_30.last_seq(), 30);
    // Reading from the middle starts in the right segment.
    let seqs: Vec<u64> = reader.read(33).map(|r| r.unwrap().seq).collect();
    assert_eq!(seqs, (33..=40).collect::<Vec<_>>());
}

#[test]
fn writes_are_refused_and_a_missing_log_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = FileLogReader::open(tmp.path().join("nope")).unwrap_err();
    assert!(matches!(missing, StoreError::NoLog { .. }), "{missing:?}");
    assert!(missing.to_string().contains("no event store"), "{missing}");
    let empty = FileLogReader::open(tmp.path()).unwrap_err();
    assert!(empty.to_string().contains("no log segment"), "{empty}");

    write_log(tmp.path(), 1, 1 << 20);
    let reader = FileLogReader::open(tmp.path()).unwrap();
    let refused = rt()
        .block_on(reader.append(vec![event(2)], None))
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::ReadOnly { .. }),
        "{refused:?}"
    );
    assert_eq!(reader.last_seq().unwrap(), 1);
}
