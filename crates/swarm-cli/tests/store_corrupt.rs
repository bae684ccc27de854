//! A store damaged in the middle of its log exits 2 with a clear message
//! naming the segment and offset, from every command that reads it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};

use support::{assert_fails, code, run, stderr};

const SEGMENT_HEADER_LEN: usize = 28;
const FRAME_HEADER_LEN: usize = 8;

fn segment(store: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segs.sort();
    assert_eq!(segs.len(), 1, "{segs:?}");
    segs.pop().unwrap()
}

/// The start offsets of the records of a segment (see the store's format docs).
fn record_offsets(data: &[u8]) -> Vec<usize> {
    let mut at = SEGMENT_HEADER_LEN;
    let mut out = Vec::new();
    while at + FRAME_HEADER_LEN <= data.len() {
        out.push(at);
        let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        at += FRAME_HEADER_LEN + len;
    }
    out
}

#[test]
fn flipped_bytes_mid_log_exit_2_naming_the_file_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let s = store.to_str().unwrap();
    let out = run(&[
        "demo",
        "--store",
        s,
        "--json",
        "--agents",
        "2",
        "--tasks",
        "30",
        "--rate",
        "0",
        "--duration-ms",
        "0",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(code(&run(&["replay", "--store", s])), 0);

    // Flip bytes inside the body of a record in the middle of the segment.
    let seg = segment(&store);
    let mut data = std::fs::read(&seg).unwrap();
    let records = record_offsets(&data);
    assert!(records.len() > 20, "several records: {}", records.len());
    let victim = records[records.len() / 2];
    let len = u32::from_le_bytes(data[victim..victim + 4].try_into().unwrap()) as usize;
    let body = victim + FRAME_HEADER_LEN;
    for b in &mut data[body + len / 2..body + len / 2 + 2] {
        *b ^= 0xff;
    }
    std::fs::write(&seg, &data).unwrap();
    let name = seg.file_name().unwrap().to_str().unwrap().to_owned();
    let offset = victim.to_string();

    for args in [
        vec!["replay", "--store", s],
        vec!["stats", "--store", s, "--json"],
        vec!["events", "--store", s],
    ] {
        let out = run(&args);
        assert_fails(&out, 2, &["corrupt", &name, &offset]);
    }
    // Opening it to run or demo refuses it too, and leaves it as it was.
    let jobs = tmp.path().join("jobs.jsonl");
    support::write_jobs(&jobs, &[support::job("a", "true")]);
    let out = run(&["run", jobs.to_str().unwrap(), "--store", s]);
    assert_fails(&out, 2, &["corrupt", &name, &offset]);
    let out = run(&["demo", "--store", s, "--tasks", "1"]);
    assert_fails(&out, 2, &["corrupt", &name]);
    assert_eq!(
        std::fs::read(&seg).unwrap(),
        data,
        "the damaged log was changed"
    );
}

/// Issue 22, finding 1, through the CLI: a flipped bit in the first
/// record's length made `swarm events` exit 0 listing none of the events.
#[test]
fn a_flipped_length_bit_is_corruption_not_a_shorter_log() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let s = store.to_str().unwrap();
    let jobs = tmp.path().join("jobs.jsonl");
    support::write_jobs(
        &jobs,
        &[
            support::job("a", "true"),
            support::job("b", "true"),
            support::job("c", "true"),
        ],
    );
    let out = run(&["run", jobs.to_str().unwrap(), "--store", s]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let seg = segment(&store);
    let mut data = std::fs::read(&seg).unwrap();
    let first = record_offsets(&data)[0];
    data[first] ^= 0x01;
    std::fs::write(&seg, &data).unwrap();
    let name = seg.file_name().unwrap().to_str().unwrap().to_owned();
    for args in [
        vec!["events", "--store", s],
        vec!["replay", "--store", s],
        vec!["stats", "--store", s],
    ] {
        assert_fails(&run(&args), 2, &["corrupt", &name, &first.to_string()]);
    }
}
