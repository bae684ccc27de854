//! `swarm run`'s flow-control flags on real shell jobs: `--concurrency-limit`
//! keeps one key's jobs from overlapping (they overlap without it),
//! `--rate-limit` paces their starts, and malformed values or a job no bucket
//! can hold are refused (exit 2, one line) before anything runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use support::{assert_fails, code, run, stderr, write_jobs};

/// `n` jobs of key "t", each logging its start and end (ns) to `log`, working
/// `work` in between.
fn timed_jobs(dir: &Path, n: usize, work: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let log = dir.join("times");
    let lines: Vec<String> = (0..n)
        .map(|i| {
            serde_json::json!({
                "id": format!("j{i}"),
                "key": "t",
                "cmd": format!(
                    "echo \"s $(date +%s%N)\" >> {log}; sleep {work}; echo \"e $(date +%s%N)\" >> {log}",
                    log = log.display()
                ),
            })
            .to_string()
        })
        .collect();
    let jobs = dir.join("jobs.jsonl");
    write_jobs(&jobs, &lines);
    (jobs, log)
}

/// The logged starts and ends, in ns, each sorted.
fn times(log: &Path) -> (Vec<u64>, Vec<u64>) {
    let text = std::fs::read_to_string(log).unwrap();
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    for line in text.lines() {
        let (what, at) = line.split_once(' ').unwrap();
        let at: u64 = at.trim().parse().unwrap();
        if what == "s" {
            starts.push(at)
        } else {
            ends.push(at)
        }
    }
    starts.sort_unstable();
    ends.sort_unstable();
    (starts, ends)
}

fn run_jobs(dir: &Path, jobs: &Path, flags: &[&str]) -> std::process::Output {
    run_jobs_on(dir, jobs, 4, flags)
}

/// `swarm run` of `jobs` with `agents` agents, its store in `dir`.
fn run_jobs_on(dir: &Path, jobs: &Path, agents: u32, flags: &[&str]) -> std::process::Output {
    let store = dir.join("store");
    let agents = agents.to_string();
    let mut args = vec![
        "run",
        jobs.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--agents",
        &agents,
        "--json",
    ];
    args.extend_from_slice(flags);
    run(&args)
}

/// Whether some job started before another one ended (with 4 agents and 4
/// jobs, unlimited, all start at once).
fn overlapping(starts: &[u64], ends: &[u64]) -> bool {
    // Sorted, one job at a time means start[i+1] >= end[i] for all i.
    starts
        .iter()
        .skip(1)
        .zip(ends)
        .any(|(next, end)| next < end)
}

#[test]
fn a_concurrency_limit_keeps_a_keys_jobs_apart() {
    for limited in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let (jobs, log) = timed_jobs(tmp.path(), 4, "0.2");
        let flags: &[&str] = if limited {
            &["--concurrency-limit", "each_key@1"]
        } else {
            &[]
        };
        let out = run_jobs(tmp.path(), &jobs, flags);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let (starts, ends) = times(&log);
        assert_eq!((starts.len(), ends.len()), (4, 4));
        assert_eq!(
            overlapping(&starts, &ends),
            !limited,
            "limited {limited}: starts {starts:?}, ends {ends:?}"
        );
    }
}

#[test]
fn a_rate_limit_paces_a_keys_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let (jobs, log) = timed_jobs(tmp.path(), 3, "0");
    // 4 a second, a bucket of 1: a start every 250 ms.
    let out = run_jobs(tmp.path(), &jobs, &["--rate-limit", "key=t@4/s"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let (starts, _) = times(&log);
    assert_eq!(starts.len(), 3);
    for pair in starts.windows(2) {
        let gap_ms = (pair[1] - pair[0]) / 1_000_000;
        // The token is due 250 ms after the previous one; the shell's own
        // start time comes on top, never off.
        assert!(gap_ms >= 240, "starts {gap_ms} ms apart: {starts:?}");
    }
}

#[test]
fn malformed_flow_flags_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let (jobs, log) = timed_jobs(tmp.path(), 1, "0");
    for (flags, says) in [
        (vec!["--rate-limit", "tenant@2/s"], "unknown selector"),
        (vec!["--rate-limit", "each_key@2/week"], "unknown unit"),
        (vec!["--concurrency-limit", "each_key@lots"], "whole number"),
    ] {
        let out = run_jobs(tmp.path(), &jobs, &flags);
        assert_eq!(code(&out), 2, "{flags:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{flags:?}: {}", stderr(&out));
    }
    // A weight needs fair share on.
    let out = run_jobs(tmp.path(), &jobs, &["--key-weight", "t=2"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--fair-share"), "{}", stderr(&out));
    // A limit the swarm refuses (a rate of 0).
    let out = run_jobs(tmp.path(), &jobs, &["--rate-limit", "each_key@0/s"]);
    assert_fails(&out, 2, &["rate"]);
    assert!(!log.exists(), "a refused run ran a job");
}

#[test]
fn a_job_no_bucket_can_hold_is_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("ran");
    let line = |id: &str, cost: u32| {
        serde_json::json!({
            "id": id,
            "key": "t",
            "cost": cost,
            "cmd": format!("touch {}", marker.display()),
        })
        .to_string()
    };
    let jobs = tmp.path().join("jobs.jsonl");
    write_jobs(&jobs, &[line("small", 1), line("huge", 50)]);
    let out = run_jobs(
        tmp.path(),
        &jobs,
        &["--rate-limit", "each_key@10/s,burst=5"],
    );
    assert_fails(&out, 2, &["job \"huge\" costs 50 units", "nothing was run"]);
    assert!(!marker.exists(), "a job ran");
}

#[test]
fn fair_share_interleaves_two_keys_of_one_file() {
    let mut orders = Vec::new();
    for fair in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("order");
        // a's six jobs come first in the file, then b's six.
        let lines: Vec<String> = ["a", "b"]
            .iter()
            .flat_map(|key| {
                let log = log.clone();
                (0..6).map(move |i| {
                    serde_json::json!({
                        "id": format!("{key}{i}"),
                        "key": key,
                        "cmd": format!("echo {key} >> {}; sleep 0.02", log.display()),
                    })
                    .to_string()
                })
            })
            .collect();
        let jobs = tmp.path().join("jobs.jsonl");
        write_jobs(&jobs, &lines);
        let flags: &[&str] = if fair {
            &["--fair-share", "--key-weight", "b=2"]
        } else {
            &[]
        };
        let out = run_jobs_on(tmp.path(), &jobs, 1, flags);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let order: String = std::fs::read_to_string(&log)
            .unwrap()
            .split_whitespace()
            .collect();
        orders.push(order);
    }
    // One agent: first come, first served without fair share.
    assert_eq!(orders[0], "aaaaaabbbbbb");
    // With it b (weight 2) starts two for each of a's while both wait.
    let first_nine = &orders[1][..9];
    let b = first_nine.matches('b').count();
    assert!((5..=7).contains(&b), "fair order {}", orders[1]);
}
