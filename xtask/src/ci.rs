//! `cargo xtask ci`: the checks of `.ci/run`, in the same order.

use std::path::PathBuf;
use std::process::Command;

/// The README's test command. `.ci/run` and this task both run it; keep them in step
/// with README.md.
pub(crate) const TEST_COMMAND: &[&str] = &["nextest", "run", "--workspace", "--all-features"];

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut skip_deny = false;
    for arg in args {
        match arg.as_str() {
            "--skip-deny" => skip_deny = true,
            other => return Err(format!("unknown option {other:?} for `ci`")),
        }
    }
    let root = workspace_root()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let step = |name: &str, args: &[&str], env: &[(&str, &str)]| -> Result<(), String> {
        eprintln!("==> {name}: cargo {}", args.join(" "));
        let status = Command::new(&cargo)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(&root)
            .status()
            .map_err(|e| format!("cannot run cargo for {name}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{name} failed ({status})"))
        }
    };
    step("fmt", &["fmt", "--all", "--check"], &[])?;
    step(
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    step("tests", TEST_COMMAND, &[])?;
    step(
        "doc tests",
        &["test", "--workspace", "--all-features", "--doc"],
        &[],
    )?;
    step(
        "docs",
        &["doc", "--workspace", "--no-deps", "--all-features"],
        &[("RUSTDOCFLAGS", "-Dwarnings")],
    )?;
    if !skip_deny {
        step(
            "cargo deny",
            &["deny", "check", "bans", "licenses", "sources"],
            &[],
        )?;
    }
    eprintln!("==> ci: all checks passed");
    Ok(())
}

fn workspace_root() -> Result<PathBuf, String> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(PathBuf::from)
        .ok_or_else(|| "xtask is not inside the workspace".to_owned())
}
