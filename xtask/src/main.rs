//! Project chores, run as `cargo xtask <task>` (the cargo-xtask pattern).
//!
//! - `cargo xtask ci`: every CI check, in order (`.ci/run` installs the tools,
//!   starts NATS and runs this): fmt check, clippy with `-D warnings`, the
//!   tests, the doc tests, the docs with `-Dwarnings`, cargo-deny, a bench
//!   smoke run; all with `SWARM_CI=1` and `SWARM_NATS_URL` (default
//!   `nats://127.0.0.1:4222`, which must answer).
//! - `cargo xtask bench [--quick] [--scenario NAME]...`: the whole-system
//!   benchmarks (polling vs event, against bare tokio), with a report and charts.
//! - `cargo xtask fuzz [TARGET]... [--seconds N] [--seed]`: the fuzz targets
//!   of `fuzz/` (cargo-fuzz), each for N seconds, seeded from a real log.

mod bench;
mod ci;
mod deps;
mod fuzz;

use std::process::ExitCode;

const HELP: &str = "\
usage: cargo xtask <task> [options]

tasks:
  ci [--skip-deny]    every CI check, as .ci/run runs it (which installs the tools and
                      starts NATS first): fmt check, clippy -D warnings, tests, doc
                      tests, docs -Dwarnings, cargo deny, bench smoke run; with
                      SWARM_CI=1 and SWARM_NATS_URL (default nats://127.0.0.1:4222)
  bench [--quick] [--scenario NAME]...
                      whole-system benchmarks; report and charts in target/bench/
                      (`cargo xtask bench --help` lists the scenarios)
  fuzz [TARGET]... [--seconds N] [--seed]
                      the fuzz targets (cargo-fuzz), N seconds each (default 60)
  deps                each layer's dependency count against its budget (xtask/src/deps.rs)
  help                this text
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    let result = match task.as_deref() {
        Some("ci") => ci::run(&rest),
        Some("deps") => deps::run(&rest),
        Some("bench") => match bench::run(&rest) {
            Ok(()) => Ok(()),
            Err(message) => {
                // bench's errors carry its own help text.
                eprintln!("xtask bench: {message}");
                return ExitCode::FAILURE;
            }
        },
        Some("fuzz") => fuzz::run(&rest),
        Some("help" | "--help" | "-h") => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown task {other:?}")),
        None => Err("no task given".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}\n\n{HELP}");
            ExitCode::FAILURE
        }
    }
}
