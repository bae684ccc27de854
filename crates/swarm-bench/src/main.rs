//! `swarm-bench`: the whole-system scenarios of `cargo xtask bench`.
//!
//! Runs one or more scenarios in this process and prints one JSON object:
//! `{"quick": bool, "scenarios": {name: {key: value}}, "details": {..}, "series": {..}}`.
//! `cargo xtask bench` builds it in release, runs each scenario in a fresh
//! process (so CPU and memory figures start clean), and draws the report.
//! Given several scenarios, `swarm-bench` itself runs those that measure the
//! process's resident memory ([`OWN_PROCESS`]) in a child process each.
//!
//! ```text
//! swarm-bench [--quick] [--work-dir DIR] SCENARIO...
//! ```
//!
//! `unsafe` is used for two libc calls (`getrusage`, `sysconf`) in `sys.rs`.

mod scenario_names;
mod scenarios;
mod sys;

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use scenario_names::SCENARIOS;
use serde_json::{Map, Value, json};

/// Options shared by all scenarios.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) quick: bool,
    /// Where scenarios may write files (the file store).
    pub(crate) work_dir: PathBuf,
}

/// Scenarios that read this process's resident set: with other scenarios in
/// the same run, each runs in a child process of its own, so that no other
/// scenario's allocations enter its figures.
const OWN_PROCESS: &[&str] = &["memory", "soak"];

/// What one scenario measured.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// The contract keys of `scenarios.<name>`.
    pub(crate) values: Map<String, Value>,
    /// Settings and extra figures that explain the values.
    pub(crate) details: Map<String, Value>,
    /// Data for the charts.
    pub(crate) series: Map<String, Value>,
}

fn main() -> ExitCode {
    let mut quick = false;
    let mut work_dir = std::env::temp_dir();
    let mut names = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--work-dir" => match args.next() {
                Some(dir) => work_dir = PathBuf::from(dir),
                None => return usage("--work-dir needs a directory"),
            },
            name if SCENARIOS.contains(&name) => names.push(name.to_owned()),
            other => return usage(&format!("unknown scenario or option {other:?}")),
        }
    }
    if names.is_empty() {
        names = SCENARIOS.iter().map(|s| (*s).to_owned()).collect();
    }
    let options = Options { quick, work_dir };
    let mut scenarios = Map::new();
    let mut details = Map::new();
    let mut series = Map::new();
    for name in &names {
        eprintln!(
            "swarm-bench: running {name}{}",
            if quick { " (quick)" } else { "" }
        );
        let started = std::time::Instant::now();
        let outcome = if names.len() > 1 && OWN_PROCESS.contains(&name.as_str()) {
            run_in_child(name, &options)
        } else {
            scenarios::run(name, &options)
        };
        match outcome {
            Ok(mut outcome) => {
                outcome.details.insert(
                    "elapsed_s".into(),
                    json!(sys::r3(started.elapsed().as_secs_f64())),
                );
                // A skipped scenario (say, no NATS server) has no values:
                // its key is left out and `details.<name>.skipped` says why.
                let skipped = outcome.values.is_empty()
                    && outcome.details.get("skipped") == Some(&Value::Bool(true));
                if !skipped {
                    scenarios.insert(name.clone(), Value::Object(outcome.values));
                }
                details.insert(name.clone(), Value::Object(outcome.details));
                if !outcome.series.is_empty() {
                    series.insert(name.clone(), Value::Object(outcome.series));
                }
            }
            Err(message) => {
                eprintln!("swarm-bench: {name} failed: {message}");
                return ExitCode::FAILURE;
            }
        }
    }
    let report = json!({
        "quick": quick,
        "scenarios": scenarios,
        "details": details,
        "series": series,
    });
    println!("{report}");
    ExitCode::SUCCESS
}

/// Runs scenario `name` in a child process of this binary and reads its
/// report back.
fn run_in_child(name: &str, options: &Options) -> Result<Outcome, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find this binary to run {name} in a child process: {e}"))?;
    let mut command = Command::new(&exe);
    if options.quick {
        command.arg("--quick");
    }
    let output = command
        .arg("--work-dir")
        .arg(&options.work_dir)
        .arg(name)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {} for {name}: {e}", exe.display()))?;
    if !output.status.success() {
        return Err(format!("its child process failed ({})", output.status));
    }
    let report: Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("its child process printed no JSON report: {e}"))?;
    let part = |part: &str| {
        report
            .get(part)
            .and_then(|p| p.get(name))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    Ok(Outcome {
        values: part("scenarios"),
        details: part("details"),
        series: part("series"),
    })
}

fn usage(message: &str) -> ExitCode {
    eprintln!(
        "swarm-bench: {message}\nusage: swarm-bench [--quick] [--work-dir DIR] [SCENARIO]...\nscenarios: {}",
        SCENARIOS.join(", ")
    );
    ExitCode::FAILURE
}
