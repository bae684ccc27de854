//! `swarm`: the command-line face of the swarm scheduler.
//!
//! - `swarm demo`: simulated agents on a generated workload, with a summary.
//! - `swarm run JOBS.jsonl`: runs shell jobs durably; re-running resumes.
//! - `swarm serve`: runs shell jobs submitted over HTTP (`POST /api/v1/tasks`)
//!   durably until stopped; `--dashboard ADDR` on `demo`, `run`, `worker`
//!   serves the web dashboard, the JSON API and `/metrics` (swarm-dashboard).
//! - `swarm replay`, `swarm events`, `swarm stats`: read an event log.
//! - `swarm worker --nats URL` (feature `nats`, on by default): joins a
//!   distributed swarm as a node; `swarm demo --store nats://HOST:PORT`
//!   submits the demo workload to it.
//!
//! Exit codes: 0 success; 1 some jobs dead-lettered (or a runtime failure);
//! 2 bad input (usage, malformed jobs file, corrupt or missing store, a NATS
//! server that cannot be reached). Errors are one line on stderr.
#![forbid(unsafe_code)]

#[cfg(feature = "nats")]
mod admin;
mod dashboard;
mod demo;
#[cfg(feature = "nats")]
mod demo_nats;
mod dist;
mod error;
mod flow;
mod inspect;
mod jobs;
mod output;
mod run;
mod serve;
#[cfg(feature = "nats")]
mod worker;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use swarm::DurationDist;

/// Event-driven task scheduling for pools of agents: run the demo, run shell
/// jobs durably, and inspect the event log.
#[derive(Debug, Parser)]
#[command(name = "swarm", version, propagate_version = true)]
#[command(
    after_help = "Exit codes: 0 success; 1 some jobs dead-lettered or a runtime failure; \
2 bad input (usage, malformed jobs file, corrupt or missing store, unreachable NATS server).\n\
Logs go to stderr: set RUST_LOG (e.g. RUST_LOG=swarm=debug) or pass -v/-vv."
)]
struct Cli {
    /// More log output on stderr (-v: info, -vv: debug, -vvv: trace). RUST_LOG wins when set.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run simulated agents on a generated workload with mixed priorities, then print a summary.
    ///
    /// The workload is 5% critical, 20% high, 50% normal and 25% low priority
    /// tasks, submitted at --rate. The summary gives tasks by outcome, queue
    /// wait p50/p99/max per priority, throughput, retries and steals. The log
    /// goes to ./swarm-data unless --store or --memory says otherwise; tasks an
    /// interrupted demo left unfinished there are resumed first.
    Demo(DemoArgs),
    /// Run the shell jobs of a JSON-lines file; running again with the same store resumes.
    ///
    /// Each line is {"id": "...", "cmd": "...", "priority": "high", "max_attempts": 3,
    /// "timeout_ms": 60000}; only id and cmd are required. Each job runs `sh -c cmd`
    /// (with SWARM_JOB_ID and SWARM_JOB_ATTEMPT set): exit status 0 completes it,
    /// anything else is a failed attempt, retried with back-off up to max_attempts
    /// (default 3), then dead-lettered. A job over timeout_ms is killed with its
    /// process group. The whole file is checked first: a malformed line, an
    /// unknown priority or a duplicate id refuses it (exit 2, naming the line) and
    /// nothing runs.
    ///
    /// Resume: run again with the same --store. Jobs already completed (or
    /// dead-lettered) in the log are skipped; jobs that were queued or running
    /// when the last run stopped run (again: at-least-once); new ids are added.
    ///
    /// Exit status: 0 all jobs completed; 1 some job dead-lettered (or the run was
    /// interrupted); 2 bad input.
    Run(RunArgs),
    /// Run shell jobs submitted over HTTP until SIGTERM: a long-running `swarm run`.
    ///
    /// Jobs come through the dashboard's API: `POST /api/v1/tasks` with
    /// {"kind": "job", "payload": {"cmd": "make test"}, "id": "build-1",
    /// "priority": "high", "max_attempts": 3, "timeout_ms": 60000} (all but kind
    /// and payload.cmd optional; the payload may also be the command as a
    /// string) answers 201 with the task id once the job is on disk. Each job
    /// runs `sh -c cmd` in the directory `swarm serve` was started from, with
    /// the retries, timeouts and dead letters of `swarm run`. The web dashboard
    /// is at the same address; actions need the token (--dashboard-token or
    /// SWARM_DASHBOARD_TOKEN, else a generated one printed on stderr).
    ///
    /// Resume: start again with the same --store; jobs that were queued or
    /// running when it stopped run (again: at-least-once).
    ///
    /// Exit status: 0 stopped by a signal; 2 bad input (a taken port, a bad
    /// token, a corrupt store); 1 a runtime failure.
    Serve(ServeArgs),
    /// Print the state rebuilt from an event log: tasks by status, agents, counters.
    Replay(ReplayArgs),
    /// Print the events of a log as JSON lines.
    Events(EventsArgs),
    /// Print the projections of a log: completions by outcome and kind, agent performance.
    Stats(StatsArgs),
    /// Join a distributed swarm as a node: run its tasks on simulated agents until stopped.
    ///
    /// The worker pulls tasks from the swarm's NATS JetStream task queue (the
    /// most urgent first) whenever one of its agents is free, and journals its
    /// events to the swarm's shared NATS event log. Submit work with
    /// `swarm demo --store nats://HOST:PORT --swarm NAME`. SIGTERM or Ctrl-C
    /// stops it gracefully: it takes no new task, lets the running ones finish
    /// and ack, then exits 0; tasks it had buffered go to the other workers
    /// after --ack-wait-ms. A worker that dies has its unacked tasks redelivered
    /// to the others after --ack-wait-ms (at-least-once).
    ///
    /// Exit status: 0 stopped by a signal; 2 the server cannot be reached or
    /// bad input; 1 a runtime failure.
    #[cfg(feature = "nats")]
    Worker(WorkerArgs),
    /// List the distributed swarms on a NATS server, or delete one's streams and buckets.
    ///
    /// A swarm named S keeps four JetStream streams: SWARM_S_EVENTS (its event
    /// log), SWARM_S_TASKS (its task queue and consumers), SWARM_S_DEAD (dead
    /// letters) and KV_SWARM_S_SNAPSHOTS (its snapshot bucket). They outlive
    /// the processes; `delete` removes all four, after you type the swarm's
    /// name (or with --yes).
    ///
    /// Exit status: 0 done; 2 bad input (no such swarm, not confirmed, the
    /// server cannot be reached); 1 a runtime failure.
    #[cfg(feature = "nats")]
    Admin(AdminArgs),
}

#[cfg(feature = "nats")]
#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    #[command(subcommand)]
    pub(crate) command: AdminCommand,
}

#[cfg(feature = "nats")]
#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// List each swarm's streams with their messages and bytes.
    List {
        /// The NATS server(s): `nats://HOST:PORT` (comma-separate several).
        #[arg(long, value_name = "URL")]
        nats: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete a swarm's four streams (its log, queue, dead letters and snapshots) for good.
    Delete {
        /// The NATS server(s): `nats://HOST:PORT` (comma-separate several).
        #[arg(long, value_name = "URL")]
        nats: String,
        /// The swarm to delete.
        #[arg(long, value_name = "NAME")]
        swarm: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// The distributed queue's settings shared by `swarm worker` and `swarm demo --store nats://`.
#[derive(Debug, Args)]
pub(crate) struct QueueArgs {
    /// The swarm's name: workers and submitters with the same name share one
    /// task queue and one event log (ASCII letters, digits, `-`, `_`).
    #[arg(long = "swarm", value_name = "NAME", default_value = "default")]
    pub(crate) swarm: String,
    /// How long the server waits for a worker's ack before it redelivers a
    /// task to another worker. Set by whichever process creates the queue first.
    #[arg(long, default_value_t = 30_000, value_name = "MS", value_parser = clap::value_parser!(u64).range(100..))]
    pub(crate) ack_wait_ms: u64,
    /// How many servers of a NATS cluster keep each of the swarm's streams
    /// (its queue, dead letters, log and snapshots): 3 survives losing a
    /// server (docs/nats.md, Durability). Set by whichever process creates
    /// the streams first.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=5))]
    pub(crate) replicas: u64,
}

#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// The NATS server(s): `nats://HOST:PORT` (comma-separate several, `tls://` for TLS).
    #[arg(long, value_name = "URL")]
    pub(crate) nats: String,
    #[command(flatten)]
    pub(crate) queue: QueueArgs,
    /// Simulated agents: how many tasks this worker runs at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) agents: u32,
    /// How long each simulated attempt takes, in milliseconds: `20` (fixed),
    /// `10..50` (uniform between 10 and 50) or `exp:20` (exponential, mean 20).
    #[arg(long, default_value = "1..5", value_name = "DIST", value_parser = dist::parse_duration_dist)]
    pub(crate) duration_ms: DurationDist,
    /// Probability (0 to 1) that an attempt fails with a retryable error.
    #[arg(long, default_value_t = 0.0, value_name = "P", value_parser = parse_probability)]
    pub(crate) fail_rate: f64,
    /// Tasks this worker buffers per priority beyond those running (its pull batch).
    #[arg(long, default_value_t = 16, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub(crate) prefetch: u64,
    /// Seed of the simulated agents.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Serve this worker's Prometheus metrics on this address (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics: Option<SocketAddr>,
    #[command(flatten)]
    pub(crate) dashboard: dashboard::DashboardArgs,
}

/// How the demo's scheduler finds work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ModeArg {
    /// Event-driven: a task starts the moment an agent is free, the most urgent first.
    Event,
    /// The polling baseline: wake every --poll-interval-ms, take up to --poll-batch tasks FIFO.
    Polling,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Simulated agents.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) agents: u32,
    /// Tasks to submit.
    #[arg(long, default_value_t = 2000)]
    pub(crate) tasks: u64,
    /// Submission rate in tasks per second (0: all at once).
    #[arg(long, default_value_t = 2000.0, value_name = "PER_SEC")]
    pub(crate) rate: f64,
    /// How long each simulated attempt takes, in milliseconds: `20` (fixed),
    /// `10..50` (uniform between 10 and 50) or `exp:20` (exponential, mean 20).
    #[arg(long, default_value = "1..5", value_name = "DIST", value_parser = dist::parse_duration_dist)]
    pub(crate) duration_ms: DurationDist,
    /// Probability (0 to 1) that an attempt fails with a retryable error.
    #[arg(long, default_value_t = 0.0, value_name = "P", value_parser = parse_probability)]
    pub(crate) fail_rate: f64,
    /// Scheduler: event-driven or the polling baseline.
    #[arg(long, value_enum, default_value_t = ModeArg::Event)]
    pub(crate) mode: ModeArg,
    /// Polling mode: time between wake-ups.
    #[arg(long, default_value_t = 100, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) poll_interval_ms: u64,
    /// Polling mode: tasks taken per wake-up.
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) poll_batch: u64,
    /// Event mode, file or memory store: tasks a busy agent may hold in its
    /// own queue (0: all wait in the global queue); local queues are what idle
    /// agents steal from. With a nats:// store: the node's pull batch per
    /// priority, tasks it buffers beyond those running (0: 16).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub(crate) prefetch: usize,
    /// Event log directory (a file store; created if missing), or
    /// `nats://HOST:PORT` to submit the workload to a distributed swarm (see
    /// `swarm worker`): the demo runs one node in-process (unless
    /// --no-local-worker), waits until every task completed or was
    /// dead-lettered, and summarizes from the swarm's NATS event log.
    #[arg(
        long,
        value_name = "DIR|URL",
        default_value = "./swarm-data",
        conflicts_with = "memory"
    )]
    pub(crate) store: PathBuf,
    /// Keep the event log in memory instead of a directory.
    #[arg(long)]
    pub(crate) memory: bool,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics: Option<SocketAddr>,
    /// Seed of the workload and the simulated agents.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Print the summary as one JSON object on stdout (and no progress bar).
    #[arg(long)]
    pub(crate) json: bool,
    /// Submit every task before any starts (the swarm is paused meanwhile),
    /// then time the drain from the moment they are released: the bulk
    /// enqueue-then-drain measure other job systems publish. --rate is
    /// ignored (all at once). File or memory store.
    #[arg(long)]
    pub(crate) enqueue_first: bool,
    /// With a nats:// store: only submit and wait; run no node in this
    /// process (the `swarm worker` processes do the work, with their own
    /// --agents, --duration-ms, --fail-rate and --prefetch: given here they
    /// are refused).
    #[arg(long)]
    pub(crate) no_local_worker: bool,
    /// The simulation flags given on the command line (not defaults), for
    /// refusing those that --no-local-worker would ignore.
    #[arg(skip)]
    pub(crate) given: Vec<String>,
    #[command(flatten)]
    pub(crate) queue: QueueArgs,
    /// With --dashboard, the dashboard stays up after the workload until
    /// SIGTERM or Ctrl-C; the summary is printed then.
    #[command(flatten)]
    pub(crate) dashboard: dashboard::DashboardArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The jobs: one JSON object per line, `{"id": "a", "cmd": "echo hi", "priority": "high",
    /// "max_attempts": 3, "timeout_ms": 60000}` (all but id and cmd optional).
    #[arg(value_name = "JOBS.jsonl")]
    pub(crate) jobs: PathBuf,
    /// Agents running jobs at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) agents: u32,
    /// Event log directory; run again with the same one to resume.
    #[arg(long, value_name = "DIR", default_value = "./swarm-jobs")]
    pub(crate) store: PathBuf,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics: Option<SocketAddr>,
    /// Print the summary as one JSON object on stdout (and no progress bar).
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) dashboard: dashboard::DashboardArgs,
    #[command(flatten)]
    pub(crate) flow: flow::FlowArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Event log directory (created if missing); start again with the same one to resume.
    #[arg(long, value_name = "DIR", default_value = "./swarm-jobs")]
    pub(crate) store: PathBuf,
    /// Agents running jobs at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) agents: u32,
    /// Where the API, the web dashboard and /metrics listen. A non-loopback
    /// address needs an explicit --dashboard-token, and then reads need it too.
    #[arg(long, value_name = "ADDR", default_value = swarm_dashboard::DEFAULT_ADDR)]
    pub(crate) dashboard: SocketAddr,
    #[command(flatten)]
    pub(crate) token: dashboard::TokenArg,
    /// Also serve Prometheus metrics on this address, apart from the dashboard's /metrics.
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics: Option<SocketAddr>,
    #[command(flatten)]
    pub(crate) flow: flow::FlowArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// Event log: a directory, or `nats://HOST:PORT` for a distributed swarm's log (with --swarm).
    #[arg(long, value_name = "DIR|URL")]
    pub(crate) store: PathBuf,
    /// With a nats:// store: the swarm whose log to read.
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub(crate) swarm: String,
    /// Rebuild the state as of this sequence (default: the end of the log).
    #[arg(long, value_name = "SEQ")]
    pub(crate) to: Option<u64>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// Event log: a directory, or `nats://HOST:PORT` for a distributed swarm's log (with --swarm).
    #[arg(long, value_name = "DIR|URL")]
    pub(crate) store: PathBuf,
    /// With a nats:// store: the swarm whose log to read.
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub(crate) swarm: String,
    /// Start at this sequence (the first event is 1).
    #[arg(long, value_name = "SEQ", default_value_t = 1)]
    pub(crate) from: u64,
    /// Only events with this name, e.g. task:completed (repeatable).
    #[arg(long = "event", value_name = "NAME")]
    pub(crate) events: Vec<String>,
    /// Keep printing events as they are appended (until interrupted).
    #[arg(long)]
    pub(crate) follow: bool,
}

#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Event log: a directory, or `nats://HOST:PORT` for a distributed swarm's log (with --swarm).
    #[arg(long, value_name = "DIR|URL")]
    pub(crate) store: PathBuf,
    /// With a nats:// store: the swarm whose log to read.
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub(crate) swarm: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// The demo's flags that shape the in-process node's simulated agents.
const SIMULATION_FLAGS: &[&str] = &["agents", "duration_ms", "fail_rate", "prefetch"];

/// Which of `ids` the user typed (not defaults), as `--flag` names.
fn given_on_command_line(matches: &clap::ArgMatches, ids: &[&str]) -> Vec<String> {
    ids.iter()
        .filter(|id| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
        .map(|id| format!("--{}", id.replace('_', "-")))
        .collect()
}

/// The URL when `--store` names a NATS server (`nats://` or `tls://`)
/// rather than a directory.
pub(crate) fn nats_store_url(store: &std::path::Path) -> Option<&str> {
    let store = store.to_str()?;
    (store.starts_with("nats://") || store.starts_with("tls://")).then_some(store)
}

fn parse_probability(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("{s:?} is not a probability between 0 and 1")),
    }
}

fn main() -> ExitCode {
    let matches = match Cli::command().try_get_matches() {
        Ok(matches) => matches,
        Err(e) => return usage_error(&e),
    };
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    if let (Command::Demo(args), Some(("demo", demo))) = (&mut cli.command, matches.subcommand()) {
        args.given = given_on_command_line(demo, SIMULATION_FLAGS);
    }
    init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Demo(args) => demo::run(args).await,
            Command::Run(args) => run::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Replay(args) => inspect::replay(args).await,
            Command::Events(args) => inspect::events(args).await,
            Command::Stats(args) => inspect::stats(args).await,
            #[cfg(feature = "nats")]
            Command::Worker(args) => worker::run(args).await,
            #[cfg(feature = "nats")]
            Command::Admin(args) => admin::run(args).await,
        }
    });
    // Do not wait for stray blocking work (a store writer flushing is joined by shutdown).
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e.to_string()));
            e.exit_code()
        }
    }
}

/// Help and version go to stdout with exit 0; a usage error is one line with exit 2.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            // clap's message (and its tips) without the usage block, on one line.
            let text = e.render().to_string();
            let message = text.split("Usage:").next().unwrap_or_default();
            let message = one_line(message);
            let first = message.strip_prefix("error: ").unwrap_or(&message);
            eprintln!("error: {first} (see `swarm --help`)");
            ExitCode::from(2)
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::new(v),
        _ => EnvFilter::new(match verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(verbose >= 2)
        .try_init();
}
