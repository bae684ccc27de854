//! A log with an event kind a newer version wrote (issue 22, finding 4):
//! `events`, `stats` and `replay` read past it, say so, and exit 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;

use support::{code, run, stderr, stdout};

fn fixture() -> tempfile::TempDir {
    let from = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../swarm-store/tests/fixtures/damage/future-event-kind");
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    tmp
}

#[test]
fn an_unknown_event_kind_is_read_past_with_a_warning() {
    let tmp = fixture();
    let s = tmp.path().to_str().unwrap();
    let out = run(&["events", "--store", s]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let seqs: Vec<u64> = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [1, 3]);
    assert!(stderr(&out).contains("newer version"), "{}", stderr(&out));
    assert!(stderr(&out).contains("task:paused"), "{}", stderr(&out));

    let out = run(&["stats", "--store", s, "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = run(&["replay", "--store", s, "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(support::json(&out)["last_seq"], 3);
}
