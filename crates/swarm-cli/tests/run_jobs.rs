//! `swarm run`: every job runs, markers prove it; dead letters exit 1;
//! re-running skips what completed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/processes.rs"]
mod processes;
mod support;

use std::collections::BTreeSet;

use processes::{mark, wait_until, wait_until_gone};
use support::{assert_fails, code, job, json, run, stderr, write_jobs};

#[test]
fn every_job_writes_its_marker_and_a_rerun_skips_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let markers = dir.join("markers");
    std::fs::create_dir(&markers).unwrap();
    let ids: Vec<String> = (0..20).map(|i| format!("job-{i}")).collect();
    let lines: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let priority = ["critical", "high", "normal", "low"][i % 4];
            serde_json::json!({
                "id": id,
                "cmd": format!("echo \"$SWARM_JOB_ID\" >> {}/{id}", markers.display()),
                "priority": priority,
                "max_attempts": 2,
                "timeout_ms": 30000,
            })
            .to_string()
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
        "3",
        "--json",
    ];
    let out = run(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["completed"].as_u64().unwrap(), 20);
    assert_eq!(v["submitted"].as_u64().unwrap(), 20);
    for id in &ids {
        let text = std::fs::read_to_string(markers.join(id)).unwrap();
        assert_eq!(text, format!("{id}\n"), "job {id} ran once with its own id");
    }

    // Again on the same store: nothing runs, everything is reported completed.
    let out = run(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["completed"].as_u64().unwrap(), 20);
    assert_eq!(v["submitted"].as_u64().unwrap(), 0);
    assert_eq!(v["skipped"].as_u64().unwrap(), 20);
    for id in &ids {
        let text = std::fs::read_to_string(markers.join(id)).unwrap();
        assert_eq!(text, format!("{id}\n"), "job {id} ran again");
    }

    // The log knows the jobs by their ids.
    let out = run(&["replay", "--store", store.to_str().unwrap(), "--json"]);
    let state = json(&out);
    assert_eq!(state["tasks_by_status"]["completed"].as_u64().unwrap(), 20);
}

#[test]
fn a_failing_job_is_retried_then_dead_lettered_with_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let attempts = dir.join("attempts");
    let lines = vec![
        job("fine", "true"),
        serde_json::json!({
            "id": "broken",
            "cmd": format!("echo x >> {}; echo 'disk on fire' >&2; exit 3", attempts.display()),
            "max_attempts": 2,
        })
        .to_string(),
    ];
    let jobs = dir.join("jobs.jsonl");
    write_jobs(&jobs, &lines);
    let store = dir.join("store");
    let out = run(&[
        "run",
        jobs.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("\"broken\""), "{err}");
    assert!(
        err.contains("exit status 3") && err.contains("disk on fire"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
    // max_attempts from the file: exactly two attempts.
    assert_eq!(std::fs::read_to_string(&attempts).unwrap(), "x\nx\n");

    let out = run(&["replay", "--store", store.to_str().unwrap(), "--json"]);
    let state = json(&out);
    assert_eq!(
        state["tasks_by_status"]["dead_lettered"].as_u64().unwrap(),
        1
    );
    assert_eq!(state["tasks_by_status"]["completed"].as_u64().unwrap(), 1);
    let listed: BTreeSet<String> = state["unfinished_or_dead_lettered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["job"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, BTreeSet::from(["broken".to_owned()]));

    // Re-running does not retry a dead-lettered job; it still exits 1.
    let out = run(&[
        "run",
        jobs.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
    ]);
    assert_fails_or_lists(&out);
    assert_eq!(std::fs::read_to_string(&attempts).unwrap(), "x\nx\n");
}

fn assert_fails_or_lists(out: &std::process::Output) {
    assert_eq!(code(out), 1, "{}", stderr(out));
    assert!(stderr(out).contains("dead-lettered"));
}

#[test]
fn a_job_over_its_timeout_fails_and_its_processes_are_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let late = dir.join("late");
    let lines = vec![
        serde_json::json!({
            "id": "slow",
            // The inner shell outlives the outer one unless the group is killed.
            "cmd": format!("sh -c 'sleep 1; touch {}'; true", late.display()),
            "timeout_ms": 100,
            "max_attempts": 1,
        })
        .to_string(),
    ];
    let jobs = dir.join("jobs.jsonl");
    write_jobs(&jobs, &lines);
    // The run and every process of the job carry this mark.
    let this_run = dir.display().to_string();
    let mut swarm = support::swarm();
    mark(&mut swarm, &this_run);
    let out = swarm
        .args([
            "run",
            jobs.to_str().unwrap(),
            "--store",
            dir.join("store").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    // Exit 1: the attempt was cut off and the job dead-lettered.
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("dead-lettered"), "{}", stderr(&out));
    // Once no process of the job is left, nothing can touch the file: it was
    // either killed with the shell, or it ran to the end and touched it.
    wait_until_gone(&this_run);
    assert!(!late.exists(), "the timed-out job kept running");
}

#[test]
fn an_empty_jobs_file_is_fine() {
    let tmp = tempfile::tempdir().unwrap();
    let jobs = tmp.path().join("jobs.jsonl");
    std::fs::write(&jobs, "\n\n").unwrap();
    let out = run(&[
        "run",
        jobs.to_str().unwrap(),
        "--store",
        tmp.path().join("s").to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn a_missing_jobs_file_exits_2() {
    let out = run(&["run", "/nonexistent/jobs.jsonl"]);
    assert_fails(&out, 2, &["cannot read the jobs file"]);
}

#[test]
fn a_store_in_use_by_another_swarm_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let started = dir.join("started");
    // The first run's job holds the store until the test creates this.
    let release = dir.join("release");
    let jobs = dir.join("jobs.jsonl");
    write_jobs(
        &jobs,
        &[job(
            "wait",
            &format!(
                "touch {}; while [ ! -e {r} ]; do sleep 0.01; done",
                started.display(),
                r = release.display()
            ),
        )],
    );
    let store = dir.join("store");
    let args = [
        "run",
        jobs.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
    ];
    let mut first = support::swarm()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the first run's job to start", || started.exists());
    let out = run(&args);
    // The store's own lock refuses the second writer, naming the directory.
    assert_fails(
        &out,
        2,
        &["is in use", "another process", store.to_str().unwrap()],
    );
    std::fs::write(&release, "").unwrap();
    assert_eq!(first.wait().unwrap().code(), Some(0));
    // Once it is done, the store is free again.
    let out = run(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}
