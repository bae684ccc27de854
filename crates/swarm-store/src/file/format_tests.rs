//! The segment header's versions and encodings, and stores that mix them:
//! version 1 segments (MessagePack, named fields) written as earlier builds
//! did, version 2 segments (positional) written by this one.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use swarm_core::event::{AgentAvailable, TaskAssigned, TaskCompleted, TaskCreated};
use swarm_core::{AgentId, Payload, Priority, Task, TaskId};

use super::*;
use crate::file::{FileLogReader, FileStore};
use crate::store::{EventStore, StoredEvent};
use crate::{StoreError, SystemState};

/// Three events per task: created, assigned, completed.
fn events(tasks: u64) -> Vec<Event> {
    let mut out = Vec::new();
    for i in 0..tasks {
        let task = Task::builder("job")
            .id(TaskId::from_u64(1000 + i))
            .payload(vec![i as u8; 3])
            .build()
            .unwrap();
        let agent_id = AgentId::new(i % 3);
        out.push(
            TaskAssigned {
                task_id: task.id(),
                agent_id,
                attempt: 1,
                priority: Priority::Normal,
                queue_wait: Duration::from_micros(7),
            }
            .into(),
        );
        out.push(
            TaskCompleted {
                task_id: task.id(),
                agent_id,
                attempt: 1,
                duration: Duration::from_micros(90),
                output: Payload::from("ok"),
            }
            .into(),
        );
        out.insert(out.len() - 2, TaskCreated { task }.into());
    }
    out
}

/// A version 1 segment from `first_seq` holding `events`, as earlier builds
/// wrote it.
fn v1_segment(first_seq: u64, events: &[Event]) -> Vec<u8> {
    let mut records = Vec::new();
    for event in events {
        let at = records.len();
        records.extend_from_slice(&[0u8; FRAME_HEADER_LEN + BODY_PREFIX_LEN]);
        rmp_serde::encode::write_named(&mut records, event).unwrap();
        let len = (records.len() - at - FRAME_HEADER_LEN) as u32;
        records[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
    seal(&mut records, first_seq, Timestamp::from_micros(5));
    let mut segment = segment_header_v1(first_seq).to_vec();
    segment.extend_from_slice(&records);
    segment
}

fn segment_file(dir: &Path, first_seq: u64) -> std::path::PathBuf {
    crate::file::recovery::segment_path(dir, first_seq)
}

fn header_of_file(dir: &Path, first_seq: u64) -> Header {
    parse_header(&fs::read(segment_file(dir, first_seq)).unwrap())
}

async fn read_all(store: &impl EventStore) -> Vec<Event> {
    store
        .read(1)
        .map(|r| r.unwrap().event)
        .collect::<Vec<_>>()
        .await
}

#[test]
fn headers_name_their_version_and_encoding() {
    assert_eq!(
        parse_header(&segment_header(7)),
        Header::Ok {
            first_seq: 7,
            encoding: Encoding::Positional {
                revision: codec::SCHEMA_REVISION
            }
        }
    );
    assert_eq!(Encoding::CURRENT, Encoding::Positional { revision: 1 });
    assert_eq!(
        parse_header(&segment_header_v1(7)),
        Header::Ok {
            first_seq: 7,
            encoding: Encoding::MsgpackNamed
        }
    );
    // A newer format version, and an encoding version 2 does not define.
    assert_eq!(
        parse_header(&header_of(3, [2, 0, 1, 0], 7)),
        Header::Version(3)
    );
    assert_eq!(
        parse_header(&header_of(2, [9, 0, 1, 0], 7)),
        Header::Version(2)
    );
    assert_eq!(
        parse_header(&header_of(1, [2, 0, 0, 0], 7)),
        Header::Version(1)
    );
    // A newer schema revision of encoding 2 reads (see codec.rs: Growth).
    assert_eq!(
        parse_header(&header_of(2, [2, 0, 9, 0], 7)),
        Header::Ok {
            first_seq: 7,
            encoding: Encoding::Positional { revision: 9 }
        }
    );
    let mut bad = segment_header(7);
    bad[14] ^= 1;
    assert_eq!(
        parse_header(&bad),
        Header::Bad("segment header checksum mismatch")
    );
}

#[test]
fn the_table_checksum_is_crc32c() {
    for bytes in [
        &b""[..],
        b"a",
        b"1234",
        &[0xff; 4],
        &[0, 1, 2, 3, 4, 5, 6, 7, 8],
    ] {
        assert_eq!(crc32c_small(bytes), crc32c::crc32c(bytes), "{bytes:?}");
    }
    let len = 1234u32.to_le_bytes();
    let body = b"a record body of some length";
    let mut whole = len.to_vec();
    whole.extend_from_slice(body);
    assert_eq!(frame_crc(&len, body), crc32c::crc32c(&whole));
}

#[tokio::test]
async fn a_store_of_version_1_segments_reads_across_into_version_2() {
    let dir = tempfile::tempdir().unwrap();
    let old = events(3); // sequences 1..=9
    fs::write(segment_file(dir.path(), 1), v1_segment(1, &old[..4])).unwrap();
    let tail = v1_segment(5, &old[4..]);
    fs::write(segment_file(dir.path(), 5), &tail).unwrap();

    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.open_report().last_seq, 9);
    // Opening changes nothing; the first append starts a new segment and
    // leaves the version 1 tail as it is.
    assert_eq!(store.segment_paths().len(), 2);
    let new = events(2);
    store.append(new.clone(), None).await.unwrap();
    store.close().await.unwrap();
    assert_eq!(fs::read(segment_file(dir.path(), 5)).unwrap(), tail);
    assert_eq!(
        header_of_file(dir.path(), 10),
        Header::Ok {
            first_seq: 10,
            encoding: Encoding::CURRENT
        }
    );

    let all: Vec<Event> = old.iter().chain(&new).cloned().collect();
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.open_report().segments, 3);
    assert_eq!(read_all(&store).await, all);
    let seqs: Vec<u64> = store
        .read(1)
        .map(|r| r.unwrap().seq)
        .collect::<Vec<_>>()
        .await;
    assert_eq!(seqs, (1..=15).collect::<Vec<_>>());
    // A read from the middle of a version 1 segment, across into version 2.
    let from_7: Vec<StoredEvent> = store.read(7).map(|r| r.unwrap()).collect().await;
    assert_eq!(from_7.len(), 9);
    assert_eq!(from_7[0].event, all[6]);
    let state = SystemState::replay(&store).await.unwrap();
    assert_eq!(state.last_seq(), 15);
    store.close().await.unwrap();

    let reader = FileLogReader::open(dir.path()).unwrap();
    let read: Vec<Event> = reader.read(1).map(|r| r.unwrap().event).collect();
    assert_eq!(read, all);
}

#[tokio::test]
async fn an_empty_version_1_tail_is_rewritten_in_the_current_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let old = events(1);
    fs::write(segment_file(dir.path(), 1), v1_segment(1, &old)).unwrap();
    fs::write(segment_file(dir.path(), 4), segment_header_v1(4)).unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let new = events(1);
    store.append(new.clone(), None).await.unwrap();
    assert_eq!(store.segment_paths().len(), 2);
    store.close().await.unwrap();
    assert_eq!(
        header_of_file(dir.path(), 4),
        Header::Ok {
            first_seq: 4,
            encoding: Encoding::CURRENT
        }
    );
    let store = FileStore::open(dir.path()).unwrap();
    let all: Vec<Event> = old.iter().chain(&new).cloned().collect();
    assert_eq!(read_all(&store).await, all);
}

/// Writes `events` with a store (so in the current encoding) and returns
/// the one segment's bytes.
async fn written(dir: &Path, events: &[Event]) -> Vec<u8> {
    let store = FileStore::open(dir).unwrap();
    store.append(events.to_vec(), None).await.unwrap();
    store.close().await.unwrap();
    fs::read(segment_file(dir, 1)).unwrap()
}

/// The start of each record of a segment, and the segment's end.
fn bounds(segment: &[u8]) -> Vec<usize> {
    let mut at = SEGMENT_HEADER_LEN;
    let mut out = vec![at];
    while at < segment.len() {
        at += FRAME_HEADER_LEN + u32_at(segment, at) as usize;
        out.push(at);
    }
    out
}

#[tokio::test]
async fn a_torn_version_2_tail_is_cut_and_damage_before_it_refused() {
    let all = events(2);
    let dir = tempfile::tempdir().unwrap();
    let segment = written(dir.path(), &all).await;
    assert_eq!(
        header_of_file(dir.path(), 1),
        parse_header(&segment_header(1))
    );
    let ends = bounds(&segment);
    assert_eq!(ends.len(), all.len() + 1);

    // Torn inside the last record: cut there, the rest reads.
    for cut in [ends[5] + 1, ends[5] + FRAME_HEADER_LEN + 3, ends[6] - 1] {
        let dir = tempfile::tempdir().unwrap();
        fs::write(segment_file(dir.path(), 1), &segment[..cut]).unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let report = store.open_report().clone();
        assert_eq!(report.last_seq, 5);
        assert_eq!(report.cut.unwrap().offset, ends[5] as u64);
        assert_eq!(read_all(&store).await, all[..5]);
    }

    // A flipped byte in the event of record 3: refused, naming the record.
    let mut damaged = segment.clone();
    damaged[ends[2] + FRAME_HEADER_LEN + BODY_PREFIX_LEN + 1] ^= 0x40;
    let dir = tempfile::tempdir().unwrap();
    fs::write(segment_file(dir.path(), 1), &damaged).unwrap();
    match FileStore::open(dir.path()) {
        Err(StoreError::Corrupt { offset, .. }) => assert_eq!(offset, ends[2] as u64),
        other => panic!("damage was not refused: {other:?}"),
    }
}

/// A segment of the current encoding whose second record holds `payload`
/// (checksummed: not damage to the framing).
fn with_payload(header: [u8; SEGMENT_HEADER_LEN], payload: &[u8]) -> Vec<u8> {
    let mut records = Vec::new();
    encode_unsealed(&mut records, &events(1)[0]).unwrap();
    let at = records.len();
    records.extend_from_slice(&[0u8; FRAME_HEADER_LEN + BODY_PREFIX_LEN]);
    records.extend_from_slice(payload);
    let len = (records.len() - at - FRAME_HEADER_LEN) as u32;
    records[at..at + 4].copy_from_slice(&len.to_le_bytes());
    encode_unsealed(&mut records, &events(1)[1]).unwrap();
    seal(&mut records, 1, Timestamp::from_micros(5));
    let mut segment = header.to_vec();
    segment.extend_from_slice(&records);
    segment
}

#[tokio::test]
async fn a_record_that_does_not_decode_is_damage_and_an_unknown_kind_of_a_newer_revision_is_not() {
    // Revision 1 has no tag 99: damage at the record, for both readers.
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        segment_file(dir.path(), 1),
        with_payload(segment_header(1), &[99, 0]),
    )
    .unwrap();
    let reader = FileLogReader::open(dir.path()).unwrap();
    let read: Vec<_> = reader.read(1).collect();
    assert_eq!(read.len(), 2);
    assert!(matches!(&read[1], Err(StoreError::Corrupt { offset, .. }) if *offset > 28));
    let store = FileStore::open(dir.path()).unwrap();
    let read: Vec<_> = store.read(1).collect().await;
    assert!(
        matches!(&read[1], Err(StoreError::Corrupt { .. })),
        "{read:?}"
    );
    store.close().await.unwrap();

    // Written by a newer revision: an unknown event, skipped by replay.
    let dir = tempfile::tempdir().unwrap();
    let newer = header_of(2, [2, 0, 2, 0], 1);
    fs::write(segment_file(dir.path(), 1), with_payload(newer, &[99, 0])).unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let read: Vec<_> = store.read(1).collect().await;
    assert_eq!(read.len(), 3);
    match &read[1] {
        Err(StoreError::UnknownEvent { seq, name, .. }) => {
            assert_eq!((*seq, name.as_str()), (2, "#99 (schema revision 2)"));
        }
        other => panic!("not an unknown event: {other:?}"),
    }
    let state = SystemState::replay(&store).await.unwrap();
    assert_eq!(state.last_seq(), 3);
    // Appends after it go on in a segment of this build's revision.
    store
        .append(
            vec![
                AgentAvailable {
                    agent_id: AgentId::new(1),
                }
                .into(),
            ],
            None,
        )
        .await
        .unwrap();
    store.close().await.unwrap();
    assert_eq!(
        header_of_file(dir.path(), 4),
        Header::Ok {
            first_seq: 4,
            encoding: Encoding::CURRENT
        }
    );
}

#[tokio::test]
async fn a_segment_of_an_unknown_version_or_encoding_is_refused_by_type() {
    for header in [header_of(3, [2, 0, 1, 0], 1), header_of(2, [3, 0, 0, 0], 1)] {
        let dir = tempfile::tempdir().unwrap();
        fs::write(segment_file(dir.path(), 1), with_payload(header, &[12, 1])).unwrap();
        match FileStore::open(dir.path()) {
            Err(StoreError::UnsupportedVersion {
                found, supported, ..
            }) => {
                assert_eq!(supported, FORMAT_VERSION);
                assert_eq!(found, u32_at(&header, 8));
            }
            other => panic!("not refused: {other:?}"),
        }
        let reader = FileLogReader::open(dir.path()).unwrap();
        let read: Vec<_> = reader.read(1).collect();
        assert!(
            matches!(
                read.as_slice(),
                [Err(StoreError::UnsupportedVersion { .. })]
            ),
            "{read:?}"
        );
    }
}
