//! Waiting on observable conditions instead of sleeping: a condition polled
//! under a generous deadline, and the processes a test's `swarm` started
//! (found by a marker in their environment, which jobs inherit).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

/// The environment variable that marks a test's processes.
pub const MARK: &str = "SWARM_TEST_PROCESS_MARK";

/// Polls `done` until it holds; fails after a minute (a bound for a stuck
/// test, not a timing assertion).
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Marks `cmd` and everything it starts with `MARK=mark`.
pub fn mark(cmd: &mut Command, mark: &str) {
    cmd.env(MARK, mark);
}

/// The live processes (zombies excluded: their environment is gone) whose
/// environment has `MARK=mark`.
pub fn marked(mark: &str) -> Vec<u32> {
    let needle = format!("{MARK}={mark}");
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // Gone meanwhile, or not ours to read: not one of this test's.
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|&b| b == 0)
            .any(|var| var == needle.as_bytes())
        {
            found.push(pid);
        }
    }
    found
}

/// Waits until every process marked with `mark` has exited.
pub fn wait_until_gone(mark: &str) {
    wait_until(&format!("the processes marked {mark} to exit"), || {
        marked(mark).is_empty()
    });
}
