//! Prometheus's own linter, `promtool check metrics` (Debian's `prometheus`
//! package, which `.ci/run` installs).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The `promtool` binary on the `PATH` (or `/usr/bin/promtool`). `None`
/// skips a test, except under `SWARM_CI=1`, where a missing promtool fails it.
///
/// # Panics
///
/// Under `SWARM_CI=1` when no promtool is found.
pub fn find() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("promtool"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin/promtool")])
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("SWARM_CI").as_deref() != Ok("1"),
            "promtool not found but SWARM_CI=1: install Debian's `prometheus` package"
        );
        println!("skipped: promtool not found");
    }
    found
}

/// Runs `promtool check metrics` on `exposition`: `Err` with what promtool
/// said when it is not clean (any output counts as a finding).
///
/// # Panics
///
/// If promtool cannot be run.
pub fn check_metrics(promtool: &PathBuf, exposition: &str) -> Result<(), String> {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(exposition.as_bytes())
        .expect("promtool reads the exposition");
    let output = child.wait_with_output().expect("promtool ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() && stdout.trim().is_empty() && stderr.trim().is_empty() {
        Ok(())
    } else {
        Err(format!(
            "promtool check metrics failed ({}):\n{stdout}{stderr}",
            output.status
        ))
    }
}
