//! `cargo xtask fuzz [TARGET]... [--seconds N] [--seed]`: builds the fuzz
//! crate (`fuzz/`, cargo-fuzz, stable toolchain with `RUSTC_BOOTSTRAP=1`),
//! writes the seed corpora if they are missing, and runs each target for N
//! seconds (default 60), one after another. Fails on the first finding,
//! naming the input libFuzzer saved.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The fuzz targets, in the order they run.
pub(crate) const TARGETS: [&str; 7] = [
    "log_one_segment",
    "log_two_segments",
    "snapshot_load",
    "jobs_lines",
    "event_json",
    "event_msgpack",
    "event_positional",
];

const HELP: &str = "\
usage: cargo xtask fuzz [TARGET]... [--seconds N] [--seed]

  TARGET       one of: log_one_segment log_two_segments snapshot_load
               jobs_lines event_json event_msgpack event_positional
               (default: all, in turn)
  --seconds N  how long to fuzz each target (default 60)
  --seed       (re)write the seed corpora from a real log, then stop

Needs cargo-fuzz (`cargo install cargo-fuzz`). Corpora grow in fuzz/corpus/,
findings land in fuzz/artifacts/<target>/.";

struct Args {
    targets: Vec<String>,
    seconds: u64,
    seed_only: bool,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut out = Args {
        targets: Vec::new(),
        seconds: 60,
        seed_only: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => {
                let n = it.next().ok_or("--seconds needs a number")?;
                out.seconds = n
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("--seconds {n:?} is not a positive number"))?;
            }
            "--seed" => out.seed_only = true,
            "--help" | "-h" => return Err(String::new()),
            t if TARGETS.contains(&t) => out.targets.push(t.to_owned()),
            other => return Err(format!("unknown fuzz target or option {other:?}")),
        }
    }
    if out.targets.is_empty() {
        out.targets = TARGETS.iter().map(|t| (*t).to_owned()).collect();
    }
    Ok(out)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Where the fuzz build goes: `$CARGO_TARGET_DIR/fuzz`, or `target/fuzz`.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("fuzz"),
        _ => root.join("target/fuzz"),
    }
}

fn cargo_fuzz(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root)
        .arg("fuzz")
        .env("RUSTC_BOOTSTRAP", "1")
        // The fuzz crate is its own workspace: no incremental state to keep.
        .env("CARGO_INCREMENTAL", "0");
    cmd
}

fn status(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("could not run {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// Runs `cargo xtask fuzz`.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let args = match parse(args) {
        Ok(args) => args,
        Err(message) if message.is_empty() => {
            println!("{HELP}");
            return Ok(());
        }
        Err(message) => return Err(format!("{message}\n\n{HELP}")),
    };
    let root = root();
    let installed = cargo_fuzz(&root)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        return Err("cargo-fuzz is not installed: run `cargo install cargo-fuzz`".into());
    }
    let target = target_dir(&root);
    status(
        cargo_fuzz(&root)
            .args(["build", "--fuzz-dir", "fuzz", "--target-dir"])
            .arg(&target),
        "cargo fuzz build",
    )?;
    let corpus = root.join("fuzz/corpus");
    let missing = args
        .targets
        .iter()
        .any(|t| std::fs::read_dir(corpus.join(t)).map_or(true, |mut d| d.next().is_none()));
    if args.seed_only || missing {
        // The seed bin is built with the targets (same flags, same directory).
        let seed = target.join("x86_64-unknown-linux-gnu/release/seed");
        status(Command::new(&seed).arg(&corpus), "the seed bin")?;
        if args.seed_only {
            return Ok(());
        }
    }
    let mut summary = Vec::new();
    for t in &args.targets {
        let artifacts = root.join("fuzz/artifacts").join(t);
        std::fs::create_dir_all(&artifacts)
            .map_err(|e| format!("could not create {}: {e}", artifacts.display()))?;
        println!("==> fuzzing {t} for {} s", args.seconds);
        let started = Instant::now();
        let out = cargo_fuzz(&root)
            .args(["run", "--fuzz-dir", "fuzz", "--target-dir"])
            .arg(&target)
            .arg(t)
            .arg(corpus.join(t))
            .arg("--")
            .arg(format!("-max_total_time={}", args.seconds))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("could not run cargo fuzz run {t}: {e}"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        let done = log
            .lines()
            .rev()
            .find(|l| l.starts_with("Done "))
            .unwrap_or("no summary")
            .to_owned();
        if !out.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
            return Err(format!(
                "fuzz target {t} found a failure; the input is in {}",
                artifacts.display()
            ));
        }
        println!("    {t}: {done} ({:.0} s)", started.elapsed().as_secs_f64());
        summary.push(format!("{t}: {done}"));
    }
    println!("==> fuzzing found nothing");
    for line in summary {
        println!("    {line}");
    }
    Ok(())
}
