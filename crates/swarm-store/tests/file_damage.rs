//! Regression tests for the findings of fuzzing the file log (issue 22): each
//! reproducer, minimised, is a fixture under `tests/fixtures/damage/`
//! (regenerate them with `SWARM_STORE_WRITE_FIXTURES=1`: the first test
//! checks that each fixture is what its recipe below makes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use support::{push_record, record_bounds, segment_header};
use swarm_core::event::{AgentCreated, AgentRemoved, WorkStolen};
use swarm_core::{AgentId, Event, TaskId, Timestamp};
use swarm_store::{
    AgentRecord, EventStore, FileLogReader, FileStore, FileStoreOptions, StoreError, StoredEvent,
    SystemState, TaskRecord,
};

fn event(n: u64) -> Event {
    AgentRemoved {
        agent_id: AgentId::new(n),
        reason: format!("reason {n}"),
    }
    .into()
}

fn encoded(event: &Event) -> Vec<u8> {
    rmp_serde::to_vec_named(event).unwrap()
}

/// A clean segment of `count` records from `first`, with fixed timestamps.
fn segment(first: u64, count: u64) -> Vec<u8> {
    let mut log = segment_header(first).to_vec();
    for seq in first..first + count {
        push_record(
            &mut log,
            seq,
            1_700_000_000_000_000 + seq,
            &encoded(&event(seq)),
        );
    }
    log
}

/// Finding 1: five records, bit 0 of the third record's length flipped.
fn flipped_length_bit() -> Vec<u8> {
    let mut log = segment(1, 5);
    let third = record_bounds(&log)[2];
    log[third] ^= 0x01;
    log
}

/// Finding 3: ten records, the eighth whole and checksummed but not an event
/// (0xc1 is never valid MessagePack).
fn undecodable_record() -> Vec<u8> {
    let mut log = segment_header(1).to_vec();
    for seq in 1..=10 {
        let payload = if seq == 8 {
            vec![0xc1]
        } else {
            encoded(&event(seq))
        };
        push_record(&mut log, seq, 1_700_000_000_000_000 + seq, &payload);
    }
    log
}

/// Finding 6: agent 1 created (the snapshot's sequence), then events that
/// count: another agent created, one removed, a stolen batch.
fn counters_log() -> Vec<u8> {
    let events: Vec<Event> = vec![
        AgentCreated {
            agent_id: AgentId::new(1),
            reserve: false,
        }
        .into(),
        AgentCreated {
            agent_id: AgentId::new(2),
            reserve: false,
        }
        .into(),
        event(2),
        WorkStolen {
            from: AgentId::new(1),
            to: AgentId::new(2),
            count: 7,
            task_ids: Vec::new(),
        }
        .into(),
    ];
    let mut log = segment_header(1).to_vec();
    for (i, e) in events.iter().enumerate() {
        let seq = i as u64 + 1;
        push_record(&mut log, seq, 1_700_000_000_000_000 + seq, &encoded(e));
    }
    log
}

/// The state after record 1 with every counter (and agent 1's) at u64::MAX,
/// as a snapshot file with a valid checksum.
fn counters_at_max_snapshot() -> Vec<u8> {
    let mut state = SystemState::new();
    state.apply(&StoredEvent {
        seq: 1,
        timestamp: Timestamp::from_micros(1),
        event: AgentCreated {
            agent_id: AgentId::new(1),
            reserve: false,
        }
        .into(),
    });
    // The first snapshot layout (MessagePack with named fields), written
    // here field by field (the fields of `SystemState` are private): the
    // fixture stays a snapshot of that layout, which must still be read.
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Envelope {
        version: u32,
        state: State,
    }
    #[derive(serde::Serialize, serde::Deserialize)]
    struct State {
        last_seq: u64,
        tasks: BTreeMap<TaskId, TaskRecord>,
        agents: BTreeMap<AgentId, AgentRecord>,
        // The counters of the first snapshot layout (a state written before
        // retention was counted): the fixture stays an old snapshot, which
        // must still be read.
        counters: CountersV1,
    }
    #[derive(serde::Serialize, serde::Deserialize)]
    struct CountersV1 {
        events: u64,
        tasks_created: u64,
        tasks_completed: u64,
        attempts_failed: u64,
        retries: u64,
        tasks_dead_lettered: u64,
        tasks_cancelled: u64,
        tasks_stolen: u64,
        agent_errors: u64,
        agents_created: u64,
        agents_removed: u64,
    }
    let max = u64::MAX;
    let mut value = Envelope {
        version: 1,
        state: State {
            last_seq: state.last_seq(),
            tasks: BTreeMap::new(),
            agents: state.agents().map(|a| (a.id, a.clone())).collect(),
            counters: CountersV1 {
                events: 0,
                tasks_created: 0,
                tasks_completed: 0,
                attempts_failed: 0,
                retries: 0,
                tasks_dead_lettered: 0,
                tasks_cancelled: 0,
                tasks_stolen: 0,
                agent_errors: 0,
                agents_created: 0,
                agents_removed: 0,
            },
        },
    };
    value.state.counters = CountersV1 {
        events: max,
        tasks_created: max,
        tasks_completed: max,
        attempts_failed: max,
        retries: max,
        tasks_dead_lettered: max,
        tasks_cancelled: max,
        tasks_stolen: max,
        agent_errors: max,
        agents_created: max,
        agents_removed: max,
    };
    for agent in value.state.agents.values_mut() {
        agent.completed = max;
        agent.failed = max;
    }
    let data = rmp_serde::to_vec_named(&value).unwrap();
    let mut file = b"SWRMSNAP".to_vec();
    file.extend_from_slice(&1u32.to_le_bytes());
    file.extend_from_slice(&1u64.to_le_bytes());
    file.extend_from_slice(&(data.len() as u64).to_le_bytes());
    file.extend_from_slice(&crc32c::crc32c(&data).to_le_bytes());
    file.extend_from_slice(&data);
    file
}

/// Finding 4: agent 1 created, a `task:paused` (a kind this version does not
/// know, as a later version would write it), agent 2 created.
fn future_event_kind() -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Paused {
        task_id: u64,
        reason: &'static str,
    }
    #[derive(serde::Serialize)]
    struct Future {
        event: &'static str,
        data: Paused,
    }
    let created = |n| -> Event {
        AgentCreated {
            agent_id: AgentId::new(n),
            reserve: false,
        }
        .into()
    };
    let paused = rmp_serde::to_vec_named(&Future {
        event: "task:paused",
        data: Paused {
            task_id: 7,
            reason: "operator",
        },
    })
    .unwrap();
    let mut log = segment_header(1).to_vec();
    push_record(&mut log, 1, 1_700_000_000_000_001, &encoded(&created(1)));
    push_record(&mut log, 2, 1_700_000_000_000_002, &paused);
    push_record(&mut log, 3, 1_700_000_000_000_003, &encoded(&created(2)));
    log
}

/// The fixtures: (directory, file name, bytes).
fn recipes() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    vec![
        (
            "flipped-length-bit",
            "00000000000000000001.log",
            flipped_length_bit(),
        ),
        // Finding 2: a segment named for sequence 2 whose header (and records) start at 1.
        (
            "misnamed-segment",
            "00000000000000000002.log",
            segment(1, 3),
        ),
        // Finding 6: a valid snapshot whose counters are all at u64::MAX.
        (
            "snapshot-counters-at-max",
            "00000000000000000001.log",
            counters_log(),
        ),
        (
            "snapshot-counters-at-max",
            "snapshot-00000000000000000001.snap",
            counters_at_max_snapshot(),
        ),
        // Finding 4: a record of an event kind a later version added.
        (
            "future-event-kind",
            "00000000000000000001.log",
            future_event_kind(),
        ),
        // Finding 3.
        (
            "undecodable-record",
            "00000000000000000001.log",
            undecodable_record(),
        ),
    ]
}

fn fixture_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/damage")
        .join(name)
}

/// A copy of a fixture's directory to damage or repair freely.
fn copy_fixture(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(fixture_dir(name)).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    tmp
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn read_all(store: &impl EventStore) -> Vec<Result<u64, StoreError>> {
    runtime().block_on(store.read(1).map(|r| r.map(|e| e.seq)).collect())
}

fn seg1(dir: &Path) -> PathBuf {
    dir.join("00000000000000000001.log")
}

#[test]
fn the_fixtures_are_what_their_recipes_make() {
    for (name, file, bytes) in recipes() {
        let path = fixture_dir(name).join(file);
        if std::env::var_os("SWARM_STORE_WRITE_FIXTURES").is_some() {
            fs::create_dir_all(fixture_dir(name)).unwrap();
            fs::write(&path, &bytes).unwrap();
        }
        assert_eq!(fs::read(&path).unwrap(), bytes, "{}", path.display());
    }
}

// --- finding 1: a flipped bit in a length field is damage, not a torn tail ---

#[test]
fn a_flipped_length_bit_with_intact_records_after_it_is_corruption_not_a_cut() {
    let tmp = copy_fixture("flipped-length-bit");
    let seg = seg1(tmp.path());
    let before = fs::read(&seg).unwrap();
    let third = record_bounds(&segment(1, 5))[2] as u64;

    let err = FileStore::open(tmp.path()).unwrap_err();
    match &err {
        StoreError::Corrupt { file, offset, .. } => {
            assert_eq!(file, &seg);
            assert_eq!(*offset, third);
        }
        other => panic!("records 4 and 5 are intact, so this is corruption: {other:?}"),
    }
    assert_eq!(
        fs::read(&seg).unwrap(),
        before,
        "a refused open changed the log"
    );

    // The reader refuses it the same way, after the two records before it.
    let reader = FileLogReader::open(tmp.path()).unwrap();
    let read: Vec<_> = reader.read(1).map(|r| r.map(|e| e.seq)).collect();
    assert_eq!(read.len(), 3, "{read:?}");
    assert!(matches!(&read[2], Err(StoreError::Corrupt { offset, .. }) if *offset == third));

    // Repair cuts there, and says it repaired.
    let store = FileStore::open_with(tmp.path(), FileStoreOptions::default().repair(true)).unwrap();
    let cut = store.open_report().cut.clone().unwrap();
    assert!(cut.repaired);
    assert_eq!(cut.offset, third);
    assert_eq!(
        read_all(&store)
            .into_iter()
            .map(Result::unwrap)
            .collect::<Vec<_>>(),
        [1, 2]
    );
}

/// Bit 0 and bit 7 of every byte of a clean five-record segment, flipped in
/// turn: opening either refuses the log or yields every record before the
/// damage; only damage to the last record may be cut as a torn tail.
#[test]
fn a_flipped_bit_anywhere_never_silently_drops_an_intact_record() {
    let clean = segment(1, 5);
    let bounds = record_bounds(&clean);
    for at in 0..clean.len() {
        for bit in [0x01u8, 0x80] {
            let tmp = tempfile::tempdir().unwrap();
            let mut bytes = clean.clone();
            bytes[at] ^= bit;
            fs::write(seg1(tmp.path()), &bytes).unwrap();
            let in_last = at >= bounds[4];
            let reader = FileLogReader::open(tmp.path()).unwrap();
            let read: Vec<_> = reader.read(1).collect();
            let ok: Vec<u64> = read
                .iter()
                .filter_map(|r| r.as_ref().ok().map(|e| e.seq))
                .collect();
            let failed = read.iter().any(Result::is_err);
            if !failed {
                assert!(
                    in_last && ok == [1, 2, 3, 4] || ok == [1, 2, 3, 4, 5],
                    "byte {at} bit {bit:#x}: the reader listed {ok:?} without an error"
                );
            }
            match FileStore::open(tmp.path()) {
                Ok(store) => {
                    let last = store.open_report().last_seq;
                    assert!(
                        last == 5 || in_last && last == 4,
                        "byte {at} bit {bit:#x}: opened with {last} records, {:?}",
                        store.open_report().cut
                    );
                }
                Err(e) => assert!(
                    e.is_corrupt() || matches!(e, StoreError::UnsupportedVersion { .. }),
                    "byte {at} bit {bit:#x}: {e}"
                ),
            }
        }
    }
}

// --- finding 2: a segment's name and header must agree ---

#[test]
fn a_segment_whose_name_disagrees_with_its_header_is_refused_and_repair_renames_it() {
    let tmp = copy_fixture("misnamed-segment");
    let misnamed = tmp.path().join("00000000000000000002.log");
    let before = fs::read(&misnamed).unwrap();

    let err = FileStore::open(tmp.path()).unwrap_err();
    match &err {
        StoreError::Corrupt {
            file,
            offset,
            reason,
        } => {
            assert_eq!(file, &misnamed);
            assert_eq!(*offset, 0);
            assert!(reason.contains("name"), "{reason}");
        }
        other => panic!("a misnamed segment opened: {other:?}"),
    }
    assert_eq!(fs::read(&misnamed).unwrap(), before);
    let reader = FileLogReader::open(tmp.path()).unwrap();
    let read: Vec<_> = reader.read(1).collect();
    assert!(
        matches!(&read[..], [Err(StoreError::Corrupt { .. })]),
        "{read:?}"
    );

    // Repair renames it after its header; then everything reads, and appends follow.
    let store = FileStore::open_with(tmp.path(), FileStoreOptions::default().repair(true)).unwrap();
    let report = store.open_report().clone();
    assert_eq!(report.last_seq, 3);
    assert_eq!(
        report.segments_renamed,
        [(misnamed.clone(), seg1(tmp.path()))]
    );
    runtime()
        .block_on(store.append(vec![event(4)], None))
        .unwrap();
    assert_eq!(
        read_all(&store)
            .into_iter()
            .map(Result::unwrap)
            .collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    runtime().block_on(store.close()).unwrap();
    drop(store);
    let reader = FileLogReader::open(tmp.path()).unwrap();
    assert_eq!(
        reader.read(1).map(|r| r.unwrap().seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
}

// --- finding 3: a read delivers every intact event before an error ---

#[test]
fn a_read_that_meets_an_undecodable_record_delivers_the_events_before_it_then_the_error() {
    let tmp = copy_fixture("undecodable-record");
    let eighth = record_bounds(&undecodable_record())[7] as u64;
    let check = |read: Vec<Result<u64, StoreError>>, what: &str| {
        let ok: Vec<u64> = read
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        assert_eq!(ok, (1..=7).collect::<Vec<_>>(), "{what}: {read:?}");
        assert_eq!(
            read.len(),
            8,
            "{what}: the error comes last, once: {read:?}"
        );
        match &read[7] {
            Err(StoreError::Corrupt { offset, reason, .. }) => {
                assert_eq!(*offset, eighth, "{what}");
                assert!(reason.contains("decoded"), "{what}: {reason}");
            }
            other => panic!("{what}: {other:?}"),
        }
    };
    // Recovery checks frames, not payloads: the store opens.
    let store = FileStore::open(tmp.path()).unwrap();
    assert_eq!(store.open_report().last_seq, 10);
    check(read_all(&store), "FileStore::read");
    runtime().block_on(store.close()).unwrap();
    drop(store);
    let reader = FileLogReader::open(tmp.path()).unwrap();
    check(read_all(&reader), "FileLogReader as EventStore");
    check(
        reader.read(1).map(|r| r.map(|e| e.seq)).collect(),
        "FileLogReader::read",
    );
}

// --- finding 6: counters at their limit saturate, never overflow ---

#[test]
fn a_snapshot_with_counters_at_u64_max_replays_saturated() {
    let tmp = copy_fixture("snapshot-counters-at-max");
    let reader = FileLogReader::open(tmp.path()).unwrap();
    assert_eq!(reader.latest_snapshot(u64::MAX).unwrap().unwrap().seq, 1);
    // Debug builds panicked here on overflow; release builds wrapped to small numbers.
    let state = runtime().block_on(SystemState::replay(&reader)).unwrap();
    assert_eq!(state.last_seq(), 4);
    let c = state.counters();
    assert_eq!(c.events, u64::MAX);
    assert_eq!(c.agents_created, u64::MAX);
    assert_eq!(c.agents_removed, u64::MAX);
    assert_eq!(c.tasks_stolen, u64::MAX);
    assert_eq!(state.agent(AgentId::new(1)).unwrap().completed, u64::MAX);
    assert!(
        state.agent(AgentId::new(2)).is_none(),
        "created, then removed"
    );
}

// --- finding 4: an event kind this version does not know is not damage ---

fn is_unknown_paused(r: &Result<u64, StoreError>) -> bool {
    matches!(r, Err(StoreError::UnknownEvent { seq: 2, name, .. }) if name == "task:paused")
}

#[test]
fn a_future_event_kind_is_delivered_as_unknown_replay_skips_it_and_repair_keeps_it() {
    let tmp = copy_fixture("future-event-kind");
    let seg = seg1(tmp.path());
    let before = fs::read(&seg).unwrap();

    // Reading: 1, the unknown record (a typed error that is not corruption,
    // and the read goes on), then 3.
    let reader = FileLogReader::open(tmp.path()).unwrap();
    for (what, read) in [
        (
            "FileLogReader::read",
            reader.read(1).map(|r| r.map(|e| e.seq)).collect::<Vec<_>>(),
        ),
        ("FileLogReader as EventStore", read_all(&reader)),
    ] {
        assert_eq!(read.len(), 3, "{what}: {read:?}");
        assert_eq!(read[0].as_ref().ok(), Some(&1), "{what}");
        assert!(is_unknown_paused(&read[1]), "{what}: {read:?}");
        assert!(!read[1].as_ref().unwrap_err().is_corrupt(), "{what}");
        assert_eq!(read[2].as_ref().ok(), Some(&3), "{what}");
    }
    let message = reader.read(2).next().unwrap().unwrap_err().to_string();
    assert!(message.contains("newer version"), "{message}");

    // Replay applies what it knows and skips the rest.
    let state = runtime().block_on(SystemState::replay(&reader)).unwrap();
    assert_eq!(state.last_seq(), 3);
    assert!(state.agent(AgentId::new(2)).is_some());

    // Repair finds nothing to cut; the store reads the same way.
    let store = FileStore::open_with(tmp.path(), FileStoreOptions::default().repair(true)).unwrap();
    assert_eq!(store.open_report().cut, None);
    assert_eq!(store.open_report().last_seq, 3);
    let read = read_all(&store);
    assert_eq!(read.len(), 3, "FileStore::read: {read:?}");
    assert!(is_unknown_paused(&read[1]), "{read:?}");
    assert_eq!(read[2].as_ref().ok(), Some(&3));
    runtime().block_on(store.close()).unwrap();
    assert_eq!(
        fs::read(&seg).unwrap(),
        before,
        "the unknown record was touched"
    );
}
