//! `swarm events --follow` prints events another process appends, as JSON lines.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use support::{code, job, run, stderr, swarm, write_jobs};

#[test]
fn follow_prints_what_a_running_swarm_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = dir.join("store");
    let s = store.to_str().unwrap();
    let jobs = dir.join("jobs.jsonl");
    write_jobs(&jobs, &[job("a", "true"), job("b", "true")]);
    let out = run(&["run", jobs.to_str().unwrap(), "--store", s]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let mut follower = swarm()
        .args([
            "events",
            "--store",
            s,
            "--follow",
            "--event",
            "task:completed",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let next = || {
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("a line");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"]["event"], "task:completed", "{v}");
        v["seq"].as_u64().unwrap()
    };
    // What is in the log already.
    let first = [next(), next()];
    assert!(first[0] < first[1]);

    // Two more jobs, run by another process on the same store.
    write_jobs(
        &jobs,
        &[
            job("a", "true"),
            job("b", "true"),
            job("c", "true"),
            job("d", "true"),
        ],
    );
    let out = run(&["run", jobs.to_str().unwrap(), "--store", s, "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(support::json(&out)["submitted"].as_u64().unwrap(), 2);
    let later = [next(), next()];
    assert!(first[1] < later[0] && later[0] < later[1]);

    follower.kill().unwrap();
    follower.wait().unwrap();
    assert!(
        rx.try_recv().is_err(),
        "only the four completions were printed"
    );
}
