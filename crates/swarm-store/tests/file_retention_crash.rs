//! Log retention under SIGKILL: this test binary re-runs itself as a child
//! that opens a long log with `LogRetention::covered_by_snapshot` (open starts
//! a retention run that deletes well over a thousand segments); the parent
//! watches the directory and kills the child while the segments go, at a
//! random point. Then the log must open, be gap-free from `first_seq()` to
//! its end, and replay to the same state, every round.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::Rng;
use swarm_core::Event;
use swarm_store::{
    EventStore, FileStore, FileStoreOptions, LogRetention, StoreError, SystemState, conformance,
};

mod support;

const CHILD_ENV: &str = "SWARM_STORE_RETENTION_CHILD_DIR";
const ROUNDS: usize = 20;
const SEGMENTS: u64 = 1500;
const PER_SEGMENT: u64 = 2;
const LAST: u64 = SEGMENTS * PER_SEGMENT;
const SNAPSHOT: u64 = LAST - 10;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn retaining() -> FileStoreOptions {
    FileStoreOptions::default()
        .snapshots_kept(1)
        .retention(LogRetention::covered_by_snapshot())
}

/// The child: open with retention, then wait to be killed.
#[test]
#[ignore = "run by a_kill_during_segment_deletion_leaves_a_gap_free_log as its child process"]
fn retention_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let _store = FileStore::open_with(&dir, retaining()).unwrap();
    println!("opened");
    std::thread::sleep(Duration::from_secs(60));
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
}

fn first_of(path: &Path) -> u64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// A log of `SEGMENTS` segments of `PER_SEGMENT` records, written as files
/// (fast), then a snapshot at `SNAPSHOT` saved through the store; returns
/// the state at the end.
fn make_template(dir: &Path) -> SystemState {
    let events: Vec<Event> = conformance::sample_events()
        .into_iter()
        .cycle()
        .take(LAST as usize)
        .collect();
    for s in 0..SEGMENTS {
        let first = s * PER_SEGMENT + 1;
        let mut log = support::segment_header(first).to_vec();
        for seq in first..first + PER_SEGMENT {
            let payload = rmp_serde::to_vec_named(&events[(seq - 1) as usize]).unwrap();
            support::push_record(&mut log, seq, 1_700_000_000_000_000 + seq, &payload);
        }
        fs::write(dir.join(format!("{first:020}.log")), log).unwrap();
    }
    runtime().block_on(async {
        let store = FileStore::open(dir).unwrap();
        assert_eq!(store.open_report().last_seq, LAST);
        let at = SystemState::replay_to(&store, SNAPSHOT).await.unwrap();
        store
            .save_snapshot(at.to_snapshot().unwrap())
            .await
            .unwrap();
        let full = SystemState::replay(&store).await.unwrap();
        store.close().await.unwrap();
        full
    })
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Runs the child on `dir` and SIGKILLs it once at most `target` segments
/// are left (or, with `target == None`, after `after`); returns how many
/// segments were there right after the kill.
fn run_child_and_kill(dir: &Path, target: Option<usize>, after: Duration) -> usize {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "retention_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let due = match target {
            Some(target) => segment_files(dir).len() <= target,
            None => started.elapsed() >= after,
        };
        // A child that does not get there in time is killed anyway.
        if due || started.elapsed() > Duration::from_secs(20) {
            break;
        }
        if target.is_none() {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    segment_files(dir).len()
}

/// Opens the killed child's log and checks it: gap-free from its start to
/// `LAST`, nothing below the start left, the same state on replay.
fn check(dir: &Path, full: &SystemState, options: FileStoreOptions) -> (u64, usize) {
    runtime().block_on(async {
        let store = FileStore::open_with(dir, options).unwrap();
        let report = store.open_report().clone();
        assert_eq!(report.last_seq, LAST);
        let first = store.first_seq().await.unwrap();
        assert_eq!(first, report.first_seq);
        let files = segment_files(dir);
        assert_eq!(first_of(&files[0]), first, "a leftover below the start");
        assert!(first <= SNAPSHOT + 1, "deleted what the snapshot needs: {first}");
        let seqs: Vec<u64> = store
            .read(first)
            .map(|r| r.map(|e| e.seq))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(seqs, (first..=LAST).collect::<Vec<_>>());
        if first > 1 {
            let before: Vec<_> = store.read(1).collect().await;
            assert!(
                matches!(&before[..], [Err(StoreError::Compacted { requested: 1, earliest })] if *earliest == first),
                "{before:?}"
            );
        }
        assert_eq!(&SystemState::replay(&store).await.unwrap(), full);
        store.close().await.unwrap();
        (first, report.leftovers_deleted)
    })
}

#[test]
fn a_kill_during_segment_deletion_leaves_a_gap_free_log() {
    let template = tempfile::tempdir().unwrap();
    let full = make_template(template.path());
    let initial = segment_files(template.path()).len();
    let last_run_leaves = ((LAST - SNAPSHOT) / PER_SEGMENT) as usize;
    let mut rng = rand::rng();
    let mut mid_deletion = 0;
    let mut finished_by_open = 0;
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template.path(), dir.path());
        // Most rounds by how far the deletion got, some at a random time
        // (before it starts, while the start marker is written, after it ends).
        let (target, after) = if round % 4 == 3 {
            (None, Duration::from_millis(rng.random_range(0..60)))
        } else {
            (Some(rng.random_range(1..initial)), Duration::ZERO)
        };
        let left = run_child_and_kill(dir.path(), target, after);
        if left > last_run_leaves && left < initial {
            mid_deletion += 1;
        }
        // Reopened without retention: the interrupted run is finished anyway
        // (the start marker moved), and nothing else is deleted.
        let (first, leftovers) = check(dir.path(), &full, FileStoreOptions::default());
        if leftovers > 0 {
            finished_by_open += 1;
        }
        // With retention again: the run completes and the log is the same.
        drop(FileStore::open_with(dir.path(), retaining()).unwrap());
        let (done, _) = check(dir.path(), &full, FileStoreOptions::default());
        assert!(done >= first);
        assert_eq!(done, SNAPSHOT + 1, "round {round}");
        let left = segment_files(dir.path()).len() as u64;
        assert_eq!(left, (LAST - SNAPSHOT) / PER_SEGMENT, "round {round}");
    }
    eprintln!(
        "{ROUNDS} rounds: {mid_deletion} killed mid-deletion, {finished_by_open} finished by the next open"
    );
    assert!(
        mid_deletion >= ROUNDS / 4,
        "only {mid_deletion} of {ROUNDS} kills landed while segments were deleted"
    );
}
