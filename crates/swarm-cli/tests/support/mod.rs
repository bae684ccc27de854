//! Helpers for the black-box tests: run the built `swarm` binary.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A `swarm` command with a quiet log and no terminal.
pub fn swarm() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarm"));
    cmd.env_remove("RUST_LOG").stdin(Stdio::null());
    cmd
}

/// Runs `swarm args...` to the end.
pub fn run(args: &[&str]) -> Output {
    swarm().args(args).output().expect("the swarm binary runs")
}

pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The one JSON object a `--json` command printed.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(stdout(out).trim()).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}):\n{}\nstderr:\n{}",
            stdout(out),
            stderr(out)
        )
    })
}

/// Asserts a failure with `code`: one line on stderr, no panic or backtrace.
pub fn assert_fails(out: &Output, expected: i32, needles: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(code(out), expected, "stderr: {err}");
    assert!(!err.contains("panicked"), "a panic: {err}");
    assert!(!err.contains("backtrace"), "a backtrace: {err}");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err:?}");
    for n in needles {
        assert!(err.contains(n), "{n:?} not in {err:?}");
    }
    err
}

/// Writes a jobs file.
pub fn write_jobs(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// A job line as JSON.
pub fn job(id: &str, cmd: &str) -> String {
    serde_json::json!({ "id": id, "cmd": cmd }).to_string()
}
