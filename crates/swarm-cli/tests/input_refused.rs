//! Bad input exits 2 with one line naming the problem, and starts nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{assert_fails, job, run, write_jobs};

/// Runs a jobs file whose line 3 is `bad`; checks exit 2 naming line 3 and
/// that nothing ran and no store was created.
fn refused(bad: &str, needle: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let marker = dir.join("ran");
    let jobs = dir.join("jobs.jsonl");
    let touch = format!("touch {}", marker.display());
    write_jobs(
        &jobs,
        &[
            job("a", &touch),
            job("b", &touch),
            bad.to_owned(),
            job("d", &touch),
        ],
    );
    let store = dir.join("store");
    let out = run(&[
        "run",
        jobs.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
    ]);
    assert_fails(&out, 2, &["line 3", needle]);
    assert!(!marker.exists(), "a job ran although the file was refused");
    assert!(
        !store.exists(),
        "the store was touched although the file was refused"
    );
}

#[test]
fn a_malformed_line_is_refused() {
    refused("{\"id\": \"c\", \"cmd\": ", "malformed");
    refused("not json", "malformed");
    refused("{\"id\": \"c\"}", "malformed");
    refused(
        "{\"id\": \"c\", \"cmd\": \"true\", \"retries\": 2}",
        "malformed",
    );
}

#[test]
fn an_unknown_priority_is_refused() {
    refused(
        "{\"id\": \"c\", \"cmd\": \"true\", \"priority\": \"urgent\"}",
        "unknown priority \"urgent\"",
    );
}

#[test]
fn a_duplicate_id_is_refused() {
    refused(
        "{\"id\": \"a\", \"cmd\": \"true\"}",
        "duplicate job id \"a\" (first on line 1)",
    );
}

#[test]
fn usage_errors_exit_2_in_one_line() {
    assert_fails(&run(&["demo", "--agents", "zero"]), 2, &["--agents"]);
    assert_fails(&run(&["demo", "--duration-ms", "5..1"]), 2, &["duration"]);
    assert_fails(&run(&["demo", "--fail-rate", "2"]), 2, &["probability"]);
    assert_fails(&run(&["demo", "--memory", "--store", "x"]), 2, &["--store"]);
    assert_fails(&run(&["bogus"]), 2, &["bogus"]);
    assert_fails(&run(&["replay"]), 2, &["--store"]);
}

#[test]
fn help_works_everywhere() {
    for args in [
        vec!["--help"],
        vec!["demo", "--help"],
        vec!["run", "--help"],
        vec!["replay", "--help"],
        vec!["events", "--help"],
        vec!["stats", "--help"],
    ] {
        let out = run(&args);
        assert_eq!(support::code(&out), 0, "{args:?}");
        assert!(support::stdout(&out).contains("Usage"), "{args:?}");
    }
    let demo = support::stdout(&run(&["demo", "--help"]));
    assert!(
        demo.contains("exp:20"),
        "the duration grammar is documented"
    );
}

#[test]
fn an_unknown_event_name_lists_the_valid_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(&[
        "events",
        "--store",
        tmp.path().to_str().unwrap(),
        "--event",
        "task:exploded",
    ]);
    assert_fails(&out, 2, &["task:exploded", "task:completed", "work:stolen"]);
}

#[test]
fn a_missing_store_is_bad_input_and_is_not_created() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("nope");
    for cmd in ["replay", "stats", "events"] {
        let out = run(&[cmd, "--store", store.to_str().unwrap()]);
        assert_fails(&out, 2, &["no event store"]);
        assert!(!store.exists());
    }
}

#[test]
fn a_line_that_is_a_json_array_is_refused() {
    // serde takes a sequence for a struct: this was a job "1Ia" running `priority`.
    refused("[\"1Ia\",\"priority\"]", "must be a JSON object");
    refused("\"just a string\"", "must be a JSON object");
}

#[test]
fn a_timeout_the_log_cannot_hold_is_refused() {
    // The log stores a timeout in microseconds (u64): one more millisecond
    // than fits would be stored saturated, a thousand times shorter.
    refused(
        "{\"id\": \"c\", \"cmd\": \"true\", \"timeout_ms\": 18446744073709552}",
        "timeout_ms 18446744073709552 is out of range",
    );
}

#[cfg(feature = "nats")]
#[test]
fn simulation_flags_without_a_local_worker_are_refused_not_ignored() {
    // Refused before any connection: the port is one nothing listens on.
    let out = run(&[
        "demo",
        "--store",
        "nats://127.0.0.1:1",
        "--no-local-worker",
        "--agents",
        "4",
        "--fail-rate",
        "0.1",
    ]);
    assert_fails(&out, 2, &["--agents, --fail-rate", "--no-local-worker"]);
    let out = run(&[
        "demo",
        "--store",
        "nats://127.0.0.1:1",
        "--no-local-worker",
        "--duration-ms",
        "5",
    ]);
    assert_fails(&out, 2, &["--duration-ms", "swarm worker"]);
}
