//! `swarm run`'s flow-control fields: `"delay_ms"` holds a job back (it starts
//! no sooner than its due time, which the log keeps), `"key"` and `"cost"`
//! are journaled, and `swarm replay` shows all three.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use support::{code, json, run, stderr, stdout, write_jobs};

#[test]
fn a_delayed_job_starts_when_due_and_replay_shows_its_flow_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let marker = dir.join("started_ns");
    // Fails for good once it ran, so replay lists it (dead-lettered).
    let line = serde_json::json!({
        "id": "later",
        "cmd": format!("date +%s%N > {}; exit 3", marker.display()),
        "max_attempts": 1,
        "key": "tenant-a",
        "cost": 40,
        "delay_ms": 400,
    })
    .to_string();
    let jobs = dir.join("jobs.jsonl");
    write_jobs(&jobs, &[line]);
    let store = dir.join("store");
    let before_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let out = run(&[
        "run",
        jobs.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code(&out), 1, "a dead letter exits 1: {}", stderr(&out));
    let started_ns: u64 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let out = run(&["replay", "--store", store.to_str().unwrap(), "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let state = json(&out);
    let task = &state["unfinished_or_dead_lettered"][0];
    assert_eq!(task["job"], "later");
    assert_eq!(task["key"], "tenant-a");
    assert_eq!(task["cost"], 40);
    let due_us = task["not_before_us"].as_u64().unwrap();
    assert!(
        due_us >= before_us + 400_000,
        "due {due_us}, submitted after {before_us}"
    );
    assert!(
        started_ns / 1000 >= due_us,
        "started at {started_ns} ns, before its due time {due_us} us"
    );

    let out = run(&["replay", "--store", store.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(
        text.contains("job \"later\" (job, normal, key \"tenant-a\", cost 40): dead_lettered"),
        "{text}"
    );
    assert!(text.contains(", not before "), "{text}");
}
