//! `cargo xtask ci`: every check of CI, in order. `.ci/run` installs the
//! tools, starts the services (NATS) and then runs this task, so the list of
//! checks lives here only ([`STEPS`]).

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The README's test command. Keep it in step with README.md.
pub(crate) const TEST_COMMAND: &[&str] = &["nextest", "run", "--workspace", "--all-features"];

/// The NATS server the tests use when `SWARM_NATS_URL` is not set (the one
/// `.ci/run` starts).
pub(crate) const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// One check: a cargo command, its extra environment, and a file it must
/// leave behind (relative to the target directory), if any.
#[derive(Debug)]
pub(crate) struct Step {
    pub(crate) name: &'static str,
    pub(crate) cargo_args: &'static [&'static str],
    pub(crate) env: &'static [(&'static str, &'static str)],
    pub(crate) leaves: Option<&'static str>,
}

/// Every check, in the order CI runs them.
pub(crate) const STEPS: &[Step] = &[
    Step {
        name: "fmt",
        cargo_args: &["fmt", "--all", "--check"],
        env: &[],
        leaves: None,
    },
    Step {
        name: "clippy",
        cargo_args: &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ],
        env: &[],
        leaves: None,
    },
    Step {
        name: "tests",
        cargo_args: TEST_COMMAND,
        env: &[],
        leaves: None,
    },
    Step {
        name: "doc tests",
        cargo_args: &["test", "--workspace", "--all-features", "--doc"],
        env: &[],
        leaves: None,
    },
    Step {
        name: "docs",
        cargo_args: &["doc", "--workspace", "--no-deps", "--all-features"],
        env: &[("RUSTDOCFLAGS", "-Dwarnings")],
        leaves: None,
    },
    Step {
        name: "cargo deny",
        cargo_args: &["deny", "check", "bans", "licenses", "sources"],
        env: &[],
        leaves: None,
    },
    Step {
        name: "dependency budgets",
        cargo_args: &["xtask", "deps"],
        env: &[],
        leaves: None,
    },
    Step {
        name: "bench smoke run",
        cargo_args: &["xtask", "bench", "--quick"],
        env: &[],
        leaves: Some("bench/report.json"),
    },
    Step {
        name: "fuzz smoke",
        // Every target of fuzz/ for 15 s, seeded from a real log; fails on a finding.
        cargo_args: &["xtask", "fuzz", "--seconds", "15"],
        env: &[],
        leaves: None,
    },
];

/// The environment every step runs with: CI mode (a missing tool or server
/// fails a test instead of skipping it) and the NATS server.
fn ci_env() -> Vec<(&'static str, String)> {
    let nats = std::env::var("SWARM_NATS_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_NATS_URL.to_owned());
    vec![("SWARM_CI", "1".to_owned()), ("SWARM_NATS_URL", nats)]
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut skip = Vec::new();
    for arg in args {
        match arg.as_str() {
            "--skip-deny" => skip.push("cargo deny"),
            other => return Err(format!("unknown option {other:?} for `ci`")),
        }
    }
    let root = workspace_root()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let env = ci_env();
    for (name, value) in &env {
        eprintln!("==> {name}={value}");
    }
    if let Some((_, url)) = env.iter().find(|(name, _)| *name == "SWARM_NATS_URL") {
        check_nats(url)?;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    for step in STEPS {
        if skip.contains(&step.name) {
            eprintln!("==> {}: skipped", step.name);
            continue;
        }
        eprintln!("==> {}: cargo {}", step.name, step.cargo_args.join(" "));
        let status = Command::new(&cargo)
            .args(step.cargo_args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .envs(step.env.iter().copied())
            .current_dir(&root)
            .status()
            .map_err(|e| format!("cannot run cargo for {}: {e}", step.name))?;
        if !status.success() {
            return Err(format!("{} failed ({status})", step.name));
        }
        if let Some(file) = step.leaves {
            let path = target.join(file);
            if !non_empty(&path) {
                return Err(format!(
                    "{} left no {} (or an empty one)",
                    step.name,
                    path.display()
                ));
            }
        }
    }
    eprintln!("==> ci: all checks passed");
    Ok(())
}

/// Fails early, with what to do, when the NATS server does not answer
/// (the NATS suites would fail one by one otherwise).
fn check_nats(url: &str) -> Result<(), String> {
    let authority = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .rsplit('@')
        .next()
        .unwrap_or_default();
    let authority = authority.split(['/', ',']).next().unwrap_or_default();
    let answers = authority
        .to_socket_addrs()
        .map(|addrs| {
            addrs
                .into_iter()
                .any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
        })
        .unwrap_or(false);
    if answers {
        Ok(())
    } else {
        Err(format!(
            "no NATS server answers at {url}: start `nats-server -js -a 127.0.0.1 -p 4222` \
             (or set SWARM_NATS_URL), or run .ci/run, which starts one"
        ))
    }
}

fn non_empty(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
}

fn workspace_root() -> Result<PathBuf, String> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(PathBuf::from)
        .ok_or_else(|| "xtask is not inside the workspace".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checks the style guide lists for CI, in its order.
    #[test]
    fn steps_are_the_ci_checks_in_order() {
        let names: Vec<&str> = STEPS.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "fmt",
                "clippy",
                "tests",
                "doc tests",
                "docs",
                "cargo deny",
                "dependency budgets",
                "bench smoke run",
                "fuzz smoke"
            ]
        );
        let tests = STEPS
            .iter()
            .find(|s| s.name == "tests")
            .map(|s| s.cargo_args);
        assert_eq!(tests, Some(TEST_COMMAND));
    }

    /// The README's test command is the one CI runs.
    #[test]
    fn readme_shows_the_test_command() {
        let readme = std::fs::read_to_string(workspace_root().unwrap().join("README.md")).unwrap();
        let command = format!("cargo {}", TEST_COMMAND.join(" "));
        assert!(readme.contains(&command), "README.md lacks `{command}`");
    }

    /// `.ci/run` runs this task for its checks and runs none of its own, so
    /// the two cannot drift apart.
    #[test]
    fn ci_script_runs_this_task_and_no_check_of_its_own() {
        let script = std::fs::read_to_string(workspace_root().unwrap().join(".ci/run")).unwrap();
        let commands: Vec<&str> = script
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .collect();
        assert!(
            commands.iter().any(|l| l.contains("cargo xtask ci")),
            ".ci/run does not run `cargo xtask ci`"
        );
        for step in STEPS {
            let own = format!("cargo {}", step.cargo_args[..2].join(" "));
            let runs_it = commands.iter().any(|l| l.contains(&own));
            assert!(
                !runs_it,
                ".ci/run runs `{own}` itself: list it in xtask's STEPS"
            );
        }
    }

    #[test]
    fn a_nats_server_that_does_not_answer_stops_ci_early() {
        let error = check_nats("nats://user:pw@127.0.0.1:1").unwrap_err();
        assert!(error.contains("start `nats-server -js"), "{error}");
        assert!(check_nats("not a url").is_err());
    }

    #[test]
    fn ci_runs_in_ci_mode_with_a_nats_server() {
        let env = ci_env();
        assert!(env.contains(&("SWARM_CI", "1".to_owned())));
        assert!(
            env.iter()
                .any(|(k, v)| *k == "SWARM_NATS_URL" && !v.is_empty())
        );
    }
}
