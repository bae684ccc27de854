//! The fuzz targets of swarm, and what each one checks.
//!
//! Every target checks properties, not only "no panic":
//!
//! - [`log_one_segment`] / [`log_two_segments`]: the input is the bytes of
//!   one segment (or two, split by the input). An independent model of the
//!   on-disk format ([`model`]) says what recovery must do: which records are
//!   intact, in sequence order, where a torn tail may be cut, and which damage
//!   must be refused (an intact record after it, or a segment that is not the
//!   last). `FileStore::open` with `repair` off and on, the store's reads, and
//!   `FileLogReader` on the untouched files must all agree with it exactly:
//!   an opened log yields only records written intact, in order, every event
//!   equal to its encoded bytes, and no intact record is ever cut. A refused
//!   open changes no file; a repaired log reopens clean.
//! - [`snapshot_load`]: a snapshot file beside a clean log: loaded only when
//!   its header, sequence and checksum are right; replay through it never
//!   panics and ends at the log's end; a snapshot that is refused replays as
//!   if there were none.
//! - [`jobs_lines`]: a jobs file: refused naming a line that exists and is not
//!   blank, or accepted as exactly one job per non-blank line, each a JSON
//!   object, with unique ids, that round-trips.
//! - [`event_json`] / [`event_msgpack`]: an event that decodes re-encodes to
//!   bytes that decode to the same event; in MessagePack, the store's reader
//!   decodes a record holding the bytes exactly as the model says (the event,
//!   an unknown kind, or corruption).
//! - [`event_positional`]: the same for encoding 2 (positional), against an
//!   independent model of it ([`positional`]), in segments of this build's
//!   schema revision and of a newer one; and an event that decodes, appended
//!   to a store, is written as a payload the model decodes to that event.
//!
//! [`seed`] writes the seed corpora from real logs.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use futures::StreamExt;
use swarm_core::{Event, EventKind};
use swarm_store::{
    EventStore, FileLogReader, FileStore, FileStoreOptions, StoreError, SystemState,
};

pub mod model;
pub mod positional;
pub mod seed;

// The job-line parser names these through `super::` (in swarm-cli they come
// from the facade, which re-exports swarm-core's).
#[allow(unused_imports)]
use swarm_core::{Priority, TaskId};

#[path = "../../crates/swarm-cli/src/jobs/line.rs"]
#[allow(dead_code, unreachable_pub)]
mod jobs_line;

use model::{Decoded, Expect, Item};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("no runtime: {e}"))
    })
}

/// A fresh directory, in memory when `/dev/shm` exists (fsync is free there).
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let made = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("swarm-fuzz")
            .tempdir_in(shm)
    } else {
        tempfile::Builder::new().prefix("swarm-fuzz").tempdir()
    };
    made.unwrap_or_else(|e| panic!("no scratch directory: {e}"))
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.log")
}

fn dir_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != "swarm.lock")
        .filter(|e| e.path().is_file())
        .map(|e| {
            let bytes = fs::read(e.path()).unwrap_or_else(|err| panic!("{err}"));
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    out.sort();
    out
}

/// What a read gave, in the model's terms.
fn observe(read: Vec<Result<swarm_store::StoredEvent, StoreError>>, dir: &Path) -> Vec<Item> {
    read.into_iter()
        .map(|r| match r {
            Ok(stored) => Item::Event {
                seq: stored.seq,
                timestamp: stored.timestamp.as_micros(),
                event: model::event_bytes(&stored.event),
            },
            Err(StoreError::UnknownEvent { seq, .. }) => Item::Unknown { seq },
            Err(StoreError::Corrupt { file, offset, .. }) => Item::Corrupt {
                file: relative(&file, dir),
                offset,
            },
            Err(StoreError::UnsupportedVersion { file, .. }) => Item::Unsupported {
                file: relative(&file, dir),
            },
            Err(other) => panic!("an untyped read error: {other}"),
        })
        .collect()
}

fn relative(file: &Path, dir: &Path) -> String {
    file.strip_prefix(dir)
        .unwrap_or(file)
        .to_string_lossy()
        .into_owned()
}

fn store_read(store: &FileStore, dir: &Path) -> Vec<Item> {
    observe(runtime().block_on(store.read(1).collect::<Vec<_>>()), dir)
}

/// Checks recovery and reading of the segments `(name, bytes)` against the model.
fn check_log(segments: &[(u64, Vec<u8>)]) {
    let tmp = scratch();
    let dir = tmp.path();
    for (name, bytes) in segments {
        fs::write(dir.join(segment_name(*name)), bytes).unwrap_or_else(|e| panic!("{e}"));
    }
    let files = dir_files(dir);

    // The reader, on the untouched files: exactly the model's items.
    let reader = FileLogReader::open(dir).unwrap_or_else(|e| panic!("open for reading: {e}"));
    let expected_read = model::expect_read(segments);
    let read = observe(reader.read(1).collect(), dir);
    assert_eq!(read, expected_read, "FileLogReader::read");
    assert_eq!(dir_files(dir), files, "the reader changed a file");

    // Open without repair.
    let expect = model::expect_open(segments, false);
    let opened = FileStore::open(dir);
    match (&expect, opened) {
        (Expect::Ok { last, cut }, Ok(store)) => {
            let report = store.open_report().clone();
            assert_eq!(report.last_seq, *last, "last_seq after open ({report:?})");
            assert_eq!(
                report
                    .cut
                    .as_ref()
                    .map(|c| (relative(&c.file, dir), c.offset)),
                cut.clone(),
                "the cut of a torn tail"
            );
            assert!(report.cut.as_ref().is_none_or(|c| !c.repaired));
            assert_eq!(
                store_read(&store, dir),
                model::expect_store_read(segments, *last)
            );
            drop(store);
        }
        (
            Expect::Corrupt { file, offset },
            Err(StoreError::Corrupt {
                file: f, offset: o, ..
            }),
        ) => {
            assert_eq!(
                (relative(&f, dir), o),
                (file.clone(), *offset),
                "where the damage is"
            );
            assert_eq!(dir_files(dir), files, "a refused open changed a file");
        }
        (Expect::Unsupported { file }, Err(StoreError::UnsupportedVersion { file: f, .. })) => {
            assert_eq!(&relative(&f, dir), file);
            assert_eq!(dir_files(dir), files, "a refused open changed a file");
        }
        (expect, got) => panic!("open: expected {expect:?}, got {got:?}"),
    }

    // Open with repair, on the original files again.
    let tmp = scratch();
    let dir = tmp.path();
    for (name, bytes) in segments {
        fs::write(dir.join(segment_name(*name)), bytes).unwrap_or_else(|e| panic!("{e}"));
    }
    let expect = model::expect_open(segments, true);
    let repaired = FileStore::open_with(dir, FileStoreOptions::default().repair(true));
    match (&expect, repaired) {
        (Expect::Ok { last, .. }, Ok(store)) => {
            assert_eq!(store.open_report().last_seq, *last, "last_seq after repair");
            let read = store_read(&store, dir);
            assert_eq!(read, model::expect_store_read_repaired(segments, *last));
            drop(store);
            // A repaired log reopens clean.
            let again = FileStore::open(dir).unwrap_or_else(|e| panic!("reopen after repair: {e}"));
            assert_eq!(again.open_report().last_seq, *last);
            assert_eq!(
                again.open_report().cut,
                None,
                "a repaired log reopens clean"
            );
        }
        (Expect::Unsupported { .. }, Err(StoreError::UnsupportedVersion { .. })) => {}
        (expect, got) => panic!("repair: expected {expect:?}, got {got:?}"),
    }
}

/// Fuzz target: the input is one segment (named for sequence 1).
pub fn log_one_segment(data: &[u8]) {
    check_log(&[(1, data.to_vec())]);
}

/// Fuzz target: the input is two segments. Its first two bytes say where
/// to split the rest, its third how far the second segment's name is off
/// from where the first one's records end (0: the right name).
pub fn log_two_segments(data: &[u8]) {
    if data.len() < 3 {
        return;
    }
    let split = usize::from(u16::from_le_bytes([data[0], data[1]]));
    let off = u64::from(data[2] % 4);
    let rest = &data[3..];
    let split = split.min(rest.len());
    let (a, b) = rest.split_at(split);
    let records_in_a = model::chain(a, 1).records.len() as u64;
    let name_b = (records_in_a + 1 + off).max(2);
    check_log(&[(1, a.to_vec()), (name_b, b.to_vec())]);
}

/// Fuzz target: a snapshot file (sequence 5) beside a clean log of 10
/// events. Even first byte: the rest is the file as is; odd: the rest is
/// the snapshot's data, in a header with the right checksum.
pub fn snapshot_load(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let file = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        model::snapshot_file(5, rest)
    };
    let tmp = scratch();
    let dir = tmp.path();
    let (log, events) = seed::clean_log(10);
    fs::write(dir.join(segment_name(1)), &log).unwrap_or_else(|e| panic!("{e}"));
    fs::write(dir.join("snapshot-00000000000000000005.snap"), &file)
        .unwrap_or_else(|e| panic!("{e}"));
    let reader = FileLogReader::open(dir).unwrap_or_else(|e| panic!("{e}"));
    let loaded = reader
        .latest_snapshot(u64::MAX)
        .unwrap_or_else(|e| panic!("loading snapshots failed with an error, not a skip: {e}"));
    let valid = model::snapshot_data(5, &file);
    assert_eq!(
        loaded.as_ref().map(|s| s.data.as_slice()),
        valid,
        "which snapshot loads"
    );
    assert!(loaded.as_ref().is_none_or(|s| s.seq == 5));

    // Replay never panics (counters saturate) and ends at the log's end; a
    // snapshot that does not decode is ignored.
    let replayed = runtime()
        .block_on(SystemState::replay(&reader))
        .unwrap_or_else(|e| panic!("replay: {e}"));
    assert_eq!(replayed.last_seq(), 10);
    let decoded = loaded
        .as_ref()
        .and_then(|s| SystemState::from_snapshot(s).ok());
    if decoded.is_none() {
        let mut fresh = SystemState::new();
        for stored in &events {
            fresh.apply(stored);
        }
        assert_eq!(
            replayed, fresh,
            "a refused snapshot replays as if there were none"
        );
    }
}

/// Fuzz target: a jobs file.
pub fn jobs_lines(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    match jobs_line::parse_jobs("jobs", text) {
        Err(message) => {
            let rest = message
                .strip_prefix("jobs line ")
                .unwrap_or_else(|| panic!("the error names no line: {message}"));
            let n: usize = rest
                .split(':')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("the error names no line number: {message}"));
            assert!(n >= 1 && n <= lines.len(), "line {n} of {}", lines.len());
            assert!(
                !lines[n - 1].trim().is_empty(),
                "a blank line was refused: {message}"
            );
            assert!(!message.contains('\n'), "one line: {message:?}");
        }
        Ok(jobs) => {
            let non_blank: Vec<usize> = (1..=lines.len())
                .filter(|n| !lines[n - 1].trim().is_empty())
                .collect();
            assert_eq!(
                jobs.iter().map(|j| j.line).collect::<Vec<_>>(),
                non_blank,
                "one job per non-blank line"
            );
            let mut ids = std::collections::HashSet::new();
            for job in &jobs {
                assert!(
                    lines[job.line - 1].trim_start().starts_with('{'),
                    "not an object"
                );
                assert!(!job.id.trim().is_empty() && !job.cmd.trim().is_empty());
                assert!(ids.insert(job.id.clone()), "duplicate id {:?}", job.id);
                assert!(job.max_attempts.is_none_or(|m| m >= 1));
                assert!(job.timeout.is_none_or(|t| {
                    t.as_millis() >= 1 && t.as_micros() <= u128::from(u64::MAX)
                }));
                // Written back as a line, it parses to the same job.
                let line = serde_json::json!({
                    "id": job.id,
                    "cmd": job.cmd,
                    "priority": job.priority.as_str(),
                    "max_attempts": job.max_attempts,
                    "timeout_ms": job.timeout.map(|t| t.as_millis() as u64),
                });
                let again = jobs_line::parse_jobs("again", &line.to_string())
                    .unwrap_or_else(|e| panic!("a job does not round-trip: {e}"));
                assert_eq!(again.len(), 1);
                let j = &again[0];
                assert_eq!(
                    (
                        &j.id,
                        &j.cmd,
                        j.priority,
                        j.max_attempts,
                        j.timeout,
                        j.task_id
                    ),
                    (
                        &job.id,
                        &job.cmd,
                        job.priority,
                        job.max_attempts,
                        job.timeout,
                        job.task_id
                    )
                );
            }
        }
    }
}

/// Fuzz target: JSON event decoding (an event and a stored event).
pub fn event_json(data: &[u8]) {
    if let Ok(event) = serde_json::from_slice::<Event>(data) {
        let once = serde_json::to_vec(&event).unwrap_or_else(|e| panic!("re-encode: {e}"));
        let back: Event =
            serde_json::from_slice(&once).unwrap_or_else(|e| panic!("re-decode: {e}"));
        let twice = serde_json::to_vec(&back).unwrap_or_else(|e| panic!("re-encode: {e}"));
        assert_eq!(once, twice, "JSON round trip");
        let tag: serde_json::Value =
            serde_json::from_slice(&once).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tag["event"], event.name(), "tagged by name");
    }
    if let Ok(stored) = serde_json::from_slice::<swarm_store::StoredEvent>(data) {
        let once = serde_json::to_vec(&stored).unwrap_or_else(|e| panic!("re-encode: {e}"));
        let back: swarm_store::StoredEvent =
            serde_json::from_slice(&once).unwrap_or_else(|e| panic!("re-decode: {e}"));
        assert_eq!(serde_json::to_vec(&back).ok(), Some(once));
        assert_eq!(back.seq, stored.seq);
    }
}

/// Fuzz target: MessagePack event decoding, directly and through the store's
/// reader (a one-record segment holding the bytes).
pub fn event_msgpack(data: &[u8]) {
    let decoded = model::decode_named(data);
    if let Decoded::Event(event) = &decoded {
        let once = rmp_serde::to_vec_named(event).unwrap_or_else(|e| panic!("re-encode: {e}"));
        let back: Event = rmp_serde::from_slice(&once).unwrap_or_else(|e| panic!("re-decode: {e}"));
        let twice = rmp_serde::to_vec_named(&back).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(once, twice, "MessagePack round trip");
    }
    let mut segment = model::segment_header_v1(1).to_vec();
    model::push_record(&mut segment, 1, 42, data);
    let tmp = scratch();
    let dir = tmp.path();
    fs::write(dir.join(segment_name(1)), &segment).unwrap_or_else(|e| panic!("{e}"));
    let reader = FileLogReader::open(dir).unwrap_or_else(|e| panic!("{e}"));
    let read = observe(reader.read(1).collect(), dir);
    let expected = match decoded {
        Decoded::Event(event) => Item::Event {
            seq: 1,
            timestamp: 42,
            event: model::event_bytes(&event),
        },
        Decoded::Unknown => Item::Unknown { seq: 1 },
        Decoded::Bad => Item::Corrupt {
            file: segment_name(1),
            offset: model::SEGMENT_HEADER_LEN as u64,
        },
    };
    assert_eq!(read, [expected]);
}

/// Fuzz target: positional event decoding (encoding 2). The first byte
/// picks the segment's schema revision (0 to 2; 2 is newer than this
/// build's), the rest is a record's payload. The store's reader must decode
/// it as the model says (the event, an unknown kind, or corruption); an
/// event that decodes, appended to a store, is written as a payload the
/// model decodes to the same event, and reads back equal.
pub fn event_positional(data: &[u8]) {
    let Some((&mode, payload)) = data.split_first() else {
        return;
    };
    let revision = u16::from(mode % 3);
    let decoded = positional::decode(payload, revision);
    let mut segment = model::positional_header(1, revision).to_vec();
    model::push_record(&mut segment, 1, 42, payload);
    let tmp = scratch();
    let dir = tmp.path();
    fs::write(dir.join(segment_name(1)), &segment).unwrap_or_else(|e| panic!("{e}"));
    let reader = FileLogReader::open(dir).unwrap_or_else(|e| panic!("{e}"));
    let read = observe(reader.read(1).collect(), dir);
    let expected = match &decoded {
        Decoded::Event(event) => Item::Event {
            seq: 1,
            timestamp: 42,
            event: model::event_bytes(event),
        },
        Decoded::Unknown => Item::Unknown { seq: 1 },
        Decoded::Bad => Item::Corrupt {
            file: segment_name(1),
            offset: model::SEGMENT_HEADER_LEN as u64,
        },
    };
    assert_eq!(read, [expected]);

    // The round trip through the store's encoder.
    let Decoded::Event(event) = decoded else {
        return;
    };
    let tmp = scratch();
    let dir = tmp.path();
    let options = FileStoreOptions::default().durability(swarm_store::Durability::None);
    let store = FileStore::open_with(dir, options).unwrap_or_else(|e| panic!("{e}"));
    let back = runtime().block_on(async {
        store
            .append(vec![(*event).clone()], None)
            .await
            .unwrap_or_else(|e| panic!("append: {e}"));
        let read = store.read(1).collect::<Vec<_>>().await;
        store.close().await.unwrap_or_else(|e| panic!("close: {e}"));
        read
    });
    let timestamp = read_timestamp(dir).unwrap_or_else(|| panic!("the store wrote no record"));
    assert_eq!(
        observe(back, dir),
        [Item::Event {
            seq: 1,
            timestamp,
            event: model::event_bytes(&event),
        }],
        "the event reads back as it was appended"
    );
    let written = fs::read(dir.join(segment_name(1))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        model::header(&written),
        model::Header::Ok(1, model::Encoding::Positional(positional::REVISION)),
        "new segments are positional, of the current revision"
    );
    let record = model::frame_at(&written, model::SEGMENT_HEADER_LEN)
        .unwrap_or_else(|| panic!("the store wrote no whole record"));
    match positional::decode(&record.payload, positional::REVISION) {
        Decoded::Event(again) => assert_eq!(
            model::event_bytes(&again),
            model::event_bytes(&event),
            "the store's encoding decodes, by the model, to the event appended"
        ),
        other => panic!("the store wrote a payload the model decodes as {other:?}"),
    }
}

/// The timestamp of the first record of segment 1 in `dir`.
fn read_timestamp(dir: &Path) -> Option<u64> {
    let bytes = fs::read(dir.join(segment_name(1))).ok()?;
    model::frame_at(&bytes, model::SEGMENT_HEADER_LEN).map(|r| r.timestamp)
}

/// Whether `name` is an event kind of this version's catalog.
pub(crate) fn known_kind(name: &str) -> bool {
    name.parse::<EventKind>().is_ok()
}

/// A corpus directory of `target` under `root`.
pub fn corpus_dir(root: &Path, target: &str) -> PathBuf {
    root.join(target)
}
