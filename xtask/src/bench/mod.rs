//! `cargo xtask bench`: builds `swarm-bench` in release, runs each scenario in
//! a fresh process, prints a table, and writes `report.json`, `report.md` and
//! SVG charts to `<target>/bench/`.

mod charts;
mod report;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value, json};

// `SCENARIOS`: every scenario, in run order. The list lives in the bench
// crate; including the file keeps one list without depending on that crate.
include!("../../../crates/swarm-bench/src/scenario_names.rs");

/// The help text of `cargo xtask bench`, with the scenario list.
pub(crate) fn help() -> String {
    format!(
        "\
usage: cargo xtask bench [--quick] [--scenario NAME]...

Builds crates/swarm-bench in release, runs each scenario in its own process,
prints a table and writes <target>/bench/report.json, report.md and SVG charts.

options:
  --quick            shorter runs (under 3 minutes in all; CI's smoke test)
  --scenario NAME    run only NAME (repeatable); default: all of them
  -h, --help         this text

scenarios: {}

`distributed` needs a nats-server with JetStream at $SWARM_NATS_URL (default
nats://127.0.0.1:4222); without one it is reported as skipped.
",
        SCENARIOS.join(", ")
    )
}

struct Args {
    quick: bool,
    scenarios: Vec<String>,
}

fn parse(args: &[String]) -> Result<Option<Args>, String> {
    let mut quick = false;
    let mut scenarios = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "-h" | "--help" => return Ok(None),
            "--scenario" => {
                let name = iter
                    .next()
                    .ok_or("--scenario needs a name (see the list below)")?;
                if !SCENARIOS.contains(&name.as_str()) {
                    return Err(format!(
                        "unknown scenario {name:?}; the scenarios are: {}",
                        SCENARIOS.join(", ")
                    ));
                }
                if !scenarios.contains(name) {
                    scenarios.push(name.clone());
                }
            }
            other => return Err(format!("unknown option {other:?} for `bench`")),
        }
    }
    if scenarios.is_empty() {
        scenarios = SCENARIOS.iter().map(|s| (*s).to_owned()).collect();
    }
    Ok(Some(Args { quick, scenarios }))
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let args = match parse(args) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{}", help());
            return Ok(());
        }
        Err(message) => return Err(format!("{message}\n\n{}", help())),
    };
    let root = workspace_root()?;
    let target = target_dir(&root);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());

    eprintln!("==> bench: cargo build --release -p swarm-bench");
    let status = Command::new(&cargo)
        .args(["build", "--release", "-p", "swarm-bench"])
        .current_dir(&root)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building swarm-bench failed ({status})"));
    }
    let binary = target.join("release").join("swarm-bench");
    let out = target.join("bench");
    let work = out.join("work");
    std::fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;

    let started = std::time::Instant::now();
    let mut scenarios = Map::new();
    let mut details = Map::new();
    let mut series = Map::new();
    for name in &args.scenarios {
        eprintln!("==> bench: {name}");
        let mut command = Command::new(&binary);
        if args.quick {
            command.arg("--quick");
        }
        let output = command
            .arg("--work-dir")
            .arg(&work)
            .arg(name)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        if !output.status.success() {
            return Err(format!("scenario {name} failed ({})", output.status));
        }
        let value: Value = serde_json::from_slice(&output.stdout)
            .map_err(|e| format!("scenario {name} printed no JSON report: {e}"))?;
        for (part, into) in [
            ("scenarios", &mut scenarios),
            ("details", &mut details),
            ("series", &mut series),
        ] {
            if let Some(v) = value.get(part).and_then(|p| p.get(name)) {
                into.insert(name.clone(), v.clone());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);

    let report = json!({
        "version": 1,
        "quick": args.quick,
        "elapsed_s": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        "machine": machine(),
        "scenarios": scenarios,
        "details": details,
        "series": series,
    });
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    write(&out.join("report.json"), &text)?;
    let table = report::table(&report);
    println!("{table}");
    write(&out.join("report.md"), &report::markdown(&report, &table))?;
    let charts = charts::draw(&report, &out)?;
    eprintln!(
        "==> bench: wrote {} (report.json, report.md{})",
        out.display(),
        charts.iter().map(|c| format!(", {c}")).collect::<String>()
    );
    Ok(())
}

fn workspace_root() -> Result<PathBuf, String> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(PathBuf::from)
        .ok_or_else(|| "xtask is not inside the workspace".to_owned())
}

fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(PathBuf::from(dir)),
        None => root.join("target"),
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown", str::trim)
        .to_owned();
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0);
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .ok();
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .ok();
    json!({
        "nproc": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu_model": cpu,
        "memory_gib": memory_gib,
        "rustc": rustc,
        "kernel": kernel,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "load_average_at_end": load,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn no_scenario_means_all_of_them() {
        let parsed = parse(&args(&["--quick"])).unwrap().unwrap();
        assert!(parsed.quick);
        assert_eq!(parsed.scenarios, SCENARIOS);
    }

    #[test]
    fn scenarios_are_kept_once_in_the_order_given() {
        let parsed = parse(&args(&[
            "--scenario",
            "store",
            "--scenario",
            "throughput",
            "--scenario",
            "store",
        ]))
        .unwrap()
        .unwrap();
        assert!(!parsed.quick);
        assert_eq!(parsed.scenarios, ["store", "throughput"]);
    }

    #[test]
    fn unknown_input_is_an_error() {
        assert!(parse(&args(&["--scenario", "nope"])).is_err());
        assert!(parse(&args(&["--scenario"])).is_err());
        assert!(parse(&args(&["--fast"])).is_err());
        assert!(parse(&args(&["throughput"])).is_err());
    }

    #[test]
    fn every_scenario_is_accepted_and_listed_in_the_help() {
        for name in SCENARIOS {
            let parsed = parse(&args(&["--scenario", name])).unwrap().unwrap();
            assert_eq!(parsed.scenarios, [*name]);
            assert!(help().contains(name), "{name} missing from the help text");
        }
    }

    #[test]
    fn an_unknown_scenario_is_named_and_the_valid_ones_listed() {
        let message = parse(&args(&["--scenario", "nope"])).err().unwrap();
        assert!(message.contains("unknown scenario \"nope\""), "{message}");
        assert!(message.contains(&SCENARIOS.join(", ")), "{message}");
    }

    #[test]
    fn help_asks_for_the_help_text() {
        assert!(parse(&args(&["--help"])).unwrap().is_none());
        assert!(parse(&args(&["--quick", "-h"])).unwrap().is_none());
    }
}
