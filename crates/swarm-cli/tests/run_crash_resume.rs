//! `swarm run` SIGKILLed mid-way, then run again on the same store: every job
//! completes; a job completed in the log at the kill ran exactly once; a job
//! that ran twice had started before the kill (it was running, or its
//! completion was not yet durable).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/processes.rs"]
mod processes;
mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Stdio;

use processes::{mark, wait_until, wait_until_gone};
use support::{code, json, run, stderr, swarm, write_jobs};

const JOBS: usize = 24;

/// Counts `start <id>` / `end <id>` lines.
fn marks(path: &Path, what: &str) -> HashMap<String, u32> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = HashMap::new();
    for line in text.lines() {
        if let Some(id) = line.strip_prefix(what).and_then(|r| r.strip_prefix(' ')) {
            *out.entry(id.to_owned()).or_insert(0) += 1;
        }
    }
    out
}

#[test]
fn a_killed_run_resumes_and_only_interrupted_jobs_run_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let markers = dir.join("markers");
    let ids: Vec<String> = (0..JOBS).map(|i| format!("j{i:02}")).collect();
    let lines: Vec<String> = ids
        .iter()
        .map(|id| {
            let m = markers.display();
            support::job(
                id,
                &format!("echo start {id} >> {m}; sleep 0.2; echo end {id} >> {m}"),
            )
        })
        .collect();
    let jobs = dir.join("jobs.jsonl");
    write_jobs(&jobs, &lines);
    let store = dir.join("store");
    let args = [
        "run",
        jobs.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--agents",
        "4",
        "--json",
    ];

    // The killed run and its jobs' shells carry this mark.
    let first_run = dir.display().to_string();
    let mut child = swarm();
    mark(&mut child, &first_run);
    let mut child = child
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("a quarter of the jobs to end", || {
        assert!(
            child.try_wait().unwrap().is_none(),
            "exited before the kill"
        );
        marks(&markers, "end").len() >= JOBS / 4
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Shells started before the kill finish on their own (their `start` line
    // may not be written yet): take stock once the last of them has exited.
    wait_until_gone(&first_run);
    let started_before: BTreeSet<String> = marks(&markers, "start").into_keys().collect();

    // What the log says at the kill (read-only: `replay` does not repair).
    let out = run(&["replay", "--store", store.to_str().unwrap(), "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let at_kill = json(&out);
    assert_eq!(
        at_kill["tasks"].as_u64().unwrap(),
        JOBS as u64,
        "all jobs in the log"
    );
    let unfinished: BTreeSet<String> = at_kill["unfinished_or_dead_lettered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["job"].as_str().unwrap().to_owned())
        .collect();
    let completed_at_kill: BTreeSet<String> = ids
        .iter()
        .filter(|id| !unfinished.contains(*id))
        .cloned()
        .collect();
    assert!(
        !completed_at_kill.is_empty(),
        "killed after some completions"
    );
    assert!(!unfinished.is_empty(), "killed before the end");

    // Resume.
    let out = run(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let summary = json(&out);
    assert_eq!(summary["completed"].as_u64().unwrap(), JOBS as u64);
    assert_eq!(
        summary["submitted"].as_u64().unwrap(),
        0,
        "no job submitted twice"
    );
    assert_eq!(
        summary["resumed"].as_u64().unwrap(),
        unfinished.len() as u64
    );

    let out = run(&["replay", "--store", store.to_str().unwrap(), "--json"]);
    let end = json(&out);
    assert_eq!(end["tasks"].as_u64().unwrap(), JOBS as u64);
    assert_eq!(
        end["tasks_by_status"]["completed"].as_u64().unwrap(),
        JOBS as u64
    );

    let starts = marks(&markers, "start");
    let ends = marks(&markers, "end");
    for id in &ids {
        let n = starts.get(id).copied().unwrap_or(0);
        assert!(n >= 1, "job {id} never ran");
        assert!(n <= 2, "job {id} ran {n} times");
        assert!(
            ends.get(id).copied().unwrap_or(0) >= 1,
            "job {id} never finished"
        );
        if completed_at_kill.contains(id) {
            assert_eq!(n, 1, "job {id} was completed in the log yet ran again");
        }
        if n == 2 {
            assert!(
                started_before.contains(id),
                "job {id} ran twice without having started before the kill"
            );
        }
    }
}
