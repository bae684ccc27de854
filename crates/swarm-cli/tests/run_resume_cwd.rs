//! A job runs in the directory `swarm run` was started from, and a resume from
//! another directory runs it there again: the log records the directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/processes.rs"]
mod processes;
mod support;

use std::path::Path;
use std::process::Stdio;

use processes::wait_until;
use support::{code, json, stderr, swarm, write_jobs};

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_resume_from_another_directory_runs_jobs_where_they_were_submitted() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let (a, b) = (root.join("a"), root.join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    // `started` holds the pid of the first attempt of `hold`, which then
    // blocks until the test kills it; later attempts finish at once.
    let started = root.join("started");
    let jobs = root.join("jobs.jsonl");
    write_jobs(
        &jobs,
        &[
            support::job(
                "hold",
                &format!(
                    "pwd -P >> pwds; [ -e {s} ] && exit 0; echo $$ > {s}.tmp; mv {s}.tmp {s}; exec sleep 60",
                    s = started.display()
                ),
            ),
            support::job("after", "pwd -P > after"),
        ],
    );
    let store = root.join("store");
    let args = [
        "run",
        jobs.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--agents",
        "1",
        "--json",
    ];

    // Started in `a`: `hold` runs, `after` waits behind it; then a crash.
    let mut first = swarm()
        .args(args)
        .current_dir(&a)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the first attempt of `hold`", || {
        started.exists() || first.try_wait().unwrap().is_some()
    });
    assert!(
        first.try_wait().unwrap().is_none(),
        "exited before the kill"
    );
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let pid = std::fs::read_to_string(&started).unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap();
    assert!(killed.success(), "the orphaned attempt {pid} was killed");

    // Resumed from `b`: both jobs run, in `a`.
    let out = swarm().args(args).current_dir(&b).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let summary = json(&out);
    assert_eq!(summary["completed"].as_u64().unwrap(), 2, "{summary}");
    assert_eq!(summary["resumed"].as_u64().unwrap(), 2, "{summary}");
    let here = a.display().to_string();
    assert_eq!(
        std::fs::read_dir(&b).unwrap().count(),
        0,
        "a resumed job ran in the directory of the resume: {:?} / {:?}",
        lines(&b.join("pwds")),
        lines(&b.join("after"))
    );
    assert_eq!(lines(&a.join("pwds")), [here.clone(), here.clone()]);
    assert_eq!(lines(&a.join("after")), [here]);
}
