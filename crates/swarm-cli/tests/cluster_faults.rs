//! Jepsen-style fault tests on a real 3-server NATS cluster (see
//! `swarm_testkit::cluster`): uniquely identified tasks are submitted to R3
//! streams while three `swarm worker` processes run them and a nemesis
//! (a) kills the stream leader and restarts it, (b) isolates one server and
//! heals it, (c) SIGKILLs a worker mid-attempt and restarts it, (d) restarts
//! every server; five rounds each. Then a checker reads the log, the
//! submitter's record and the workers' outputs and verifies:
//!
//! - every acknowledged submit completed or was dead-lettered (none lost);
//! - no task completed more often than the at-least-once bound allows: a
//!   second completion only after a redelivery (an assignment with an
//!   attempt of 2 or more) and never more completions than assignments; the
//!   duplicates are counted and printed;
//! - no completion of a task that was never submitted;
//! - the log is gap-free (sequences 1..=last, each once) and replays to the
//!   same `SystemState` through a connection to each of the three servers;
//! - every worker stops on SIGTERM with exit 0 and logged no panic.
//!
//! The two `disk_loss` tests show the checker failing: with R1 streams a
//! server that loses its disk loses the acknowledged tasks on it, and the
//! checker reports them lost; the same fault with R3 streams loses none.
//!
//! Root only (network namespaces): elsewhere the tests print that they are
//! skipped and pass, except under `SWARM_CI=1`, where they fail. They start
//! their own servers and need no `SWARM_NATS_URL`.
#![cfg(feature = "nats")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use swarm::distributed::{TaskQueue, TaskQueueConfig};
use swarm::event::TaskCreated;
use swarm::{Event, EventStore, SystemState, Task, TaskId};
use swarm_store::{NatsStore, NatsStoreOptions};
use swarm_testkit::cluster::{Cluster, start_or_skip};

use support::swarm;

const WORKERS: usize = 3;
const ROUNDS: usize = 5;
/// Short, so that the tasks of a killed worker come back quickly.
const ACK_WAIT: Duration = Duration::from_millis(1500);
/// Every task may be delivered this often (the queue's default).
const MAX_DELIVER: usize = 5;
/// How long a fault is held (the nemesis's schedule, not a synchronisation).
const HOLD: Duration = Duration::from_millis(1500);
/// How long the workers get to finish every acknowledged task after the faults.
const DRAIN: Duration = Duration::from_secs(90);

/// What the submitter knows of one task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Submit {
    /// The server acknowledged the publish: it must complete or be dead-lettered.
    Acknowledged,
    /// The publish failed or its acknowledgement was lost: it may or may not run.
    Indeterminate,
    /// `task:created` was not journaled, so it was never published.
    NotSubmitted,
}

/// The submitter's record and the follower's view, shared with their tasks.
#[derive(Default)]
struct Shared {
    submits: Mutex<Vec<(TaskId, Submit)>>,
    terminal: Mutex<HashSet<TaskId>>,
    completions: Mutex<u64>,
    stop: AtomicBool,
}

impl Shared {
    fn completions(&self) -> u64 {
        *self.completions.lock().unwrap()
    }
}

/// A `swarm worker` process and its log.
struct Worker {
    child: Option<Child>,
    log: PathBuf,
    url: String,
    replicas: usize,
}

impl Worker {
    fn start(url: &str, swarm_name: &str, log: &Path, replicas: usize) -> Worker {
        let before = joins(&std::fs::read_to_string(log).unwrap_or_default());
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = swarm()
            .args([
                "-v",
                "worker",
                "--nats",
                url,
                "--swarm",
                swarm_name,
                "--agents",
                "4",
                "--duration-ms",
                "5..30",
                "--prefetch",
                "4",
                "--ack-wait-ms",
                &ACK_WAIT.as_millis().to_string(),
                "--replicas",
                &replicas.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("the swarm binary starts");
        let mut worker = Worker {
            child: Some(child),
            log: log.to_path_buf(),
            url: url.to_owned(),
            replicas,
        };
        worker.wait_ready(before);
        worker
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until its log has more "joined" lines than `before`.
    fn wait_ready(&mut self, before: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = self.text();
            if joins(&text) > before {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("worker exited early ({status}): {text}");
            }
            assert!(Instant::now() < deadline, "worker not ready: {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, then start it again on the same server.
    fn kill_and_restart(&mut self, swarm_name: &str) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "{status}");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .unwrap();
        use std::io::Write;
        writeln!(file, "--- restarted ---").unwrap();
        drop(file);
        let url = self.url.clone();
        let log = self.log.clone();
        *self = Worker::start(&url, swarm_name, &log, self.replicas);
    }

    /// SIGTERM; the exit status within `limit`.
    fn stop(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// How often a worker log says the worker joined.
fn joins(text: &str) -> usize {
    text.matches("worker joined the swarm").count()
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One fault-test run: the cluster, the R3 streams, the workers, the
/// submitter and the follower.
struct Run {
    cluster: Cluster,
    rt: tokio::runtime::Runtime,
    swarm_name: String,
    replicas: usize,
    log: NatsStore,
    queue: TaskQueue,
    workers: Vec<Worker>,
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

fn queue_config(swarm_name: &str, replicas: usize) -> TaskQueueConfig {
    let mut config = TaskQueueConfig::new(swarm_name);
    config.ack_wait = ACK_WAIT;
    config.replicas = replicas;
    config
}

impl Run {
    /// A cluster and the swarm's streams with `replicas`, created here
    /// before any worker starts (the test holds the log and queue handles it
    /// checks with); the workers are started with the same `--replicas` and
    /// bind to them.
    fn start(test: &str, replicas: usize) -> Option<Run> {
        let cluster = start_or_skip(test)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let swarm_name = format!("{}_{}", test, std::process::id());
        let url = cluster.url(0);
        // Creating R3 streams on a fresh cluster can time out on a loaded
        // machine; creation is idempotent (create or bind), so try again.
        let (log, queue) = rt.block_on(async {
            let mut tries = 0;
            loop {
                tries += 1;
                let log = NatsStore::connect(
                    NatsStoreOptions::new(url.as_str(), &swarm_name)
                        .replicas(replicas)
                        .shared_writers(true),
                )
                .await;
                let log = match log {
                    Ok(log) => log,
                    Err(e) if tries < 3 => {
                        eprintln!("opening the log, try {tries}: {e}");
                        continue;
                    }
                    Err(e) => panic!("the event log on the cluster: {e}"),
                };
                match TaskQueue::open(log.client().clone(), queue_config(&swarm_name, replicas))
                    .await
                {
                    Ok(queue) => break (log, queue),
                    Err(e) if tries < 3 => eprintln!("opening the queue, try {tries}: {e}"),
                    Err(e) => panic!("the task queue on the cluster: {e}"),
                }
            }
        });
        let run = Run {
            cluster,
            rt,
            swarm_name,
            replicas,
            log,
            queue,
            workers: Vec::new(),
            shared: Arc::new(Shared::default()),
            tasks: Vec::new(),
            _dir: tempfile::tempdir().unwrap(),
        };
        Some(run)
    }

    fn streams(&self) -> Vec<String> {
        let config = queue_config(&self.swarm_name, self.replicas);
        let options = NatsStoreOptions::new("", &self.swarm_name);
        vec![
            config.stream_name(),
            config.dead_stream_name(),
            options.stream_name(),
            format!("KV_{}", options.bucket_name()),
        ]
    }

    /// Starts worker `j` on server `j % 3` (one URL each: `swarm worker`
    /// does not take a list; the client learns the other servers from the
    /// cluster and fails over to them).
    fn start_workers(&mut self) {
        for j in 0..WORKERS {
            let log = self._dir.path().join(format!("worker{j}.log"));
            let url = self.cluster.url(j % 3);
            self.workers
                .push(Worker::start(&url, &self.swarm_name, &log, self.replicas));
        }
        // The workers bound to the streams made here instead of recreating them.
        for stream in self.streams() {
            let replicas = self
                .cluster
                .stream_replicas(&stream)
                .unwrap_or_else(|| panic!("no stream info for {stream}"));
            assert_eq!(replicas.len(), self.replicas, "{stream}: {replicas:?}");
        }
    }

    /// Follows the log and counts completions and finished tasks. It reads
    /// in bounded passes (`read` to the current end, at most 10 s each)
    /// rather than with `subscribe`, whose live subscription stops
    /// delivering when the log's leader dies (see
    /// `cluster_subscription_survives_the_log_leader_dying`).
    fn start_follower(&mut self) {
        let shared = self.shared.clone();
        let options = NatsStoreOptions::new(self.cluster.url(1).as_str(), &self.swarm_name);
        self.tasks.push(self.rt.spawn(async move {
            let store = loop {
                match NatsStore::connect(options.clone()).await {
                    Ok(s) => break s,
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            };
            let mut next = 1;
            loop {
                let pass = async {
                    let mut read = store.read(next);
                    while let Some(item) = read.next().await {
                        let Ok(stored) = item else { break };
                        next = stored.seq + 1;
                        match &stored.event {
                            Event::TaskCompleted(c) => {
                                *shared.completions.lock().unwrap() += 1;
                                shared.terminal.lock().unwrap().insert(c.task_id);
                            }
                            Event::TaskDeadLettered(d) => {
                                shared.terminal.lock().unwrap().insert(d.task_id);
                            }
                            _ => {}
                        }
                    }
                };
                // A pass cut short (a server went away) resumes at `next`.
                let _ = tokio::time::timeout(Duration::from_secs(10), pass).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }

    /// Submits batches of 5 tasks every 50 ms until told to stop, recording
    /// what the server acknowledged.
    fn start_submitter(&mut self) {
        let shared = self.shared.clone();
        let log = self.log.clone();
        let queue = self.queue.clone();
        let prefix = self.swarm_name.clone();
        self.tasks.push(self.rt.spawn(async move {
            let mut n = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while !shared.stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let batch: Vec<Task> = (0..5)
                    .map(|_| {
                        n += 1;
                        let name = format!("{prefix}-op-{n}");
                        Task::builder("summarize")
                            .id(TaskId::from_name(&name))
                            .payload(name.into_bytes())
                            .build()
                            .expect("a task of a small payload")
                    })
                    .collect();
                let results = submit_batch(&log, &queue, &batch).await;
                shared
                    .submits
                    .lock()
                    .unwrap()
                    .extend(batch.iter().map(Task::id).zip(results));
            }
        }));
    }

    /// Waits until `more` tasks completed beyond now (the swarm makes
    /// progress), at most `limit`; whether it did.
    fn progress(&self, more: u64, limit: Duration) -> bool {
        let start = self.shared.completions();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.shared.completions() >= start + more {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits (at most a minute) until the swarm completed 20 more tasks;
    /// if it did not, a stall with what each part says.
    fn wait_progress(&mut self, what: &str) -> Result<(), String> {
        if self.progress(20, Duration::from_secs(60)) {
            return Ok(());
        }
        Err(format!(
            "no task completed in 60 s after {what} ({} completions so far)\n{}",
            self.shared.completions(),
            self.diagnose()
        ))
    }

    /// What each part says, for a failing test's message.
    fn diagnose(&mut self) -> String {
        let mut out = String::new();
        let submits = self.shared.submits.lock().unwrap().clone();
        let acked = submits
            .iter()
            .filter(|(_, s)| *s == Submit::Acknowledged)
            .count();
        out += &format!("submits recorded {}, acknowledged {acked}\n", submits.len());
        for i in 0..swarm_testkit::cluster::SERVERS {
            let url = self.cluster.url(i);
            let swarm_name = self.swarm_name.clone();
            let seq = self.rt.block_on(async {
                let connect = NatsStore::connect(NatsStoreOptions::new(url.as_str(), &swarm_name));
                match tokio::time::timeout(Duration::from_secs(5), connect).await {
                    Ok(Ok(store)) => {
                        let seq =
                            tokio::time::timeout(Duration::from_secs(5), store.last_seq()).await;
                        let _ = store.close().await;
                        format!("{seq:?}")
                    }
                    Ok(Err(e)) => format!("connect: {e}"),
                    Err(_) => "connect timed out".into(),
                }
            });
            out += &format!(
                "server {i}: running {} last_seq {seq}\n",
                self.cluster.is_running(i)
            );
        }
        for stream in self.streams() {
            let leader = self.cluster.stream_leader(&stream);
            out += &format!("{stream}: leader {leader:?}\n");
        }
        for stream in self.streams() {
            let info = self
                .cluster
                .jetstream_api(&format!("$JS.API.STREAM.INFO.{stream}"))
                .unwrap_or_default();
            let state = &info["state"];
            out += &format!(
                "stream {stream}: messages {} first_seq {} last_seq {}\n",
                state["messages"], state["first_seq"], state["last_seq"]
            );
        }
        let config = queue_config(&self.swarm_name, self.replicas);
        for priority in swarm::Priority::ALL {
            let consumer = config.consumer_name(priority);
            let subject = format!("$JS.API.CONSUMER.INFO.{}.{consumer}", config.stream_name());
            let info = self.cluster.jetstream_api(&subject).unwrap_or_default();
            out += &format!(
                "consumer {consumer}: leader {} delivered stream_seq {} ack_floor stream_seq {} \
                 pending {} ack_pending {} waiting pulls {} redelivered {}\n",
                info["cluster"]["leader"],
                info["delivered"]["stream_seq"],
                info["ack_floor"]["stream_seq"],
                info["num_pending"],
                info["num_ack_pending"],
                info["num_waiting"],
                info["num_redelivered"]
            );
        }
        for (j, w) in self.workers.iter().enumerate() {
            out += &format!("--- worker {j} ({}) ---\n{}\n", w.url, tail(&w.text()));
        }
        for i in 0..swarm_testkit::cluster::SERVERS {
            out += &format!(
                "--- server {i} ---\n{}\n",
                tail(&self.cluster.server_log(i))
            );
        }
        out
    }

    /// Stops the submitter, waits (bounded) until every acknowledged task
    /// finished, stops the workers and runs the checker.
    fn finish(mut self, nemesis: &str, stall: Option<String>) -> Report {
        for i in 0..swarm_testkit::cluster::SERVERS {
            self.cluster.heal(i).unwrap();
            if !self.cluster.is_running(i) {
                self.cluster.restart(i).unwrap();
            }
        }
        self.cluster.wait_healthy().unwrap();
        self.shared.stop.store(true, Ordering::Relaxed);
        let submitter = self.tasks.remove(1);
        self.rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(60), submitter)
                .await
                .expect("the submitter stops")
                .unwrap();
        });
        let acked: Vec<TaskId> = self
            .shared
            .submits
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| *s == Submit::Acknowledged)
            .map(|(id, _)| *id)
            .collect();
        // Until every acknowledged task finished, or the queue is empty
        // (a message stays until acked) and nothing completed for two ack
        // waits: then nothing more will finish and the rest is lost.
        let deadline = Instant::now() + DRAIN;
        let mut last = (self.shared.completions(), Instant::now());
        while Instant::now() < deadline {
            let terminal = self.shared.terminal.lock().unwrap();
            if acked.iter().all(|id| terminal.contains(id)) {
                break;
            }
            drop(terminal);
            let completions = self.shared.completions();
            if completions != last.0 {
                last = (completions, Instant::now());
            } else if last.1.elapsed() > 2 * ACK_WAIT {
                let pending = self.rt.block_on(async {
                    tokio::time::timeout(Duration::from_secs(5), self.queue.pending()).await
                });
                if matches!(pending, Ok(Ok(0))) {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut outputs = Vec::new();
        for (j, worker) in self.workers.iter_mut().enumerate() {
            let status = worker.stop(Duration::from_secs(45));
            outputs.push((j, status, worker.text()));
        }
        for task in &self.tasks {
            task.abort();
        }
        let mut report = self.check(&outputs);
        if let Some(stall) = stall {
            report.violations.insert(0, format!("STUCK: {stall}"));
        }
        eprintln!(
            "checker [{nemesis}] ({}): {report}",
            self.cluster.durability()
        );
        let _ = self.rt.block_on(self.log.close());
        report
    }

    /// The checker: the log read through each server, the submitter's record
    /// and the workers' outputs.
    fn check(&self, outputs: &[(usize, Option<std::process::ExitStatus>, String)]) -> Report {
        let submits = self.shared.submits.lock().unwrap().clone();
        let mut report = Report::default();
        for (_, s) in &submits {
            match s {
                Submit::Acknowledged => report.acknowledged += 1,
                Submit::Indeterminate => report.indeterminate += 1,
                Submit::NotSubmitted => report.not_submitted += 1,
            }
        }
        report.submitted = submits.len() - report.not_submitted;
        let ours: HashMap<TaskId, Submit> = submits.iter().copied().collect();
        let urls: Vec<String> = (0..swarm_testkit::cluster::SERVERS)
            .map(|i| self.cluster.url(i))
            .collect();
        let swarm_name = self.swarm_name.clone();
        // Through each server: the log read in full, the state folded from
        // it, the state `replay` gives (newest snapshot, then the tail), and
        // the snapshot it started from.
        let reads = self.rt.block_on(async {
            let mut reads = Vec::new();
            for url in &urls {
                let store = NatsStore::connect(NatsStoreOptions::new(url.as_str(), &swarm_name))
                    .await
                    .unwrap_or_else(|e| panic!("the log through {url}: {e}"));
                let last_seq = store.last_seq().await.unwrap();
                let all = read_whole_log(&store).await;
                let mut folded = SystemState::new();
                for e in &all {
                    folded.apply(e);
                }
                let snapshot_seq = store
                    .latest_snapshot(last_seq)
                    .await
                    .unwrap()
                    .map(|s| s.seq);
                let replayed = SystemState::replay(&store).await.unwrap();
                // Read once more: a replay that differs from the fold may
                // have read a log that changed under it.
                let reread = read_whole_log(&store).await;
                let _ = store.close().await;
                reads.push(ServerRead {
                    last_seq,
                    events: all,
                    reread,
                    folded,
                    replayed,
                    snapshot_seq,
                });
            }
            reads
        });
        let events = reads[0].events.clone();
        let last_seqs: Vec<u64> = reads.iter().map(|r| r.last_seq).collect();
        // Gap-free: 1..=last, each once.
        report.events = events.len();
        for (k, e) in events.iter().enumerate() {
            if e.seq != k as u64 + 1 {
                report
                    .violations
                    .push(format!("log gap: event {k} has seq {}", e.seq));
                break;
            }
        }
        if last_seqs.iter().any(|s| *s != events.len() as u64) {
            report.violations.push(format!(
                "last_seq per server {last_seqs:?} but {} events read",
                events.len()
            ));
        }
        report.violations.extend(compare_reads(&reads));
        // Per task: completions, dead letters, assignments, highest attempt.
        #[derive(Default)]
        struct Seen {
            completions: usize,
            dead: usize,
            assignments: usize,
            max_attempt: u32,
            attempts: Vec<u32>,
            history: Vec<String>,
        }
        let mut seen: HashMap<TaskId, Seen> = HashMap::new();
        for e in &events {
            match &e.event {
                Event::TaskAssigned(a) => {
                    let s = seen.entry(a.task_id).or_default();
                    s.assignments += 1;
                    s.max_attempt = s.max_attempt.max(a.attempt);
                    s.attempts.push(a.attempt);
                }
                Event::TaskCompleted(c) => seen.entry(c.task_id).or_default().completions += 1,
                Event::TaskDeadLettered(d) => seen.entry(d.task_id).or_default().dead += 1,
                _ => {}
            }
            // Each task's events, as evidence for a violation.
            if let Some(id) = task_of(&e.event) {
                let detail = match &e.event {
                    Event::TaskAssigned(a) => format!(" {} attempt {}", a.agent_id, a.attempt),
                    Event::TaskCompleted(c) => format!(" {} attempt {}", c.agent_id, c.attempt),
                    _ => String::new(),
                };
                seen.entry(id).or_default().history.push(format!(
                    "#{} {}{detail}",
                    e.seq,
                    e.event.name()
                ));
            }
        }
        for (id, s) in &seen {
            if (s.completions > 0 || s.dead > 0) && !ours.contains_key(id) {
                report
                    .violations
                    .push(format!("{id} finished but was never submitted"));
            }
            if s.completions > 0 {
                report.completed += 1;
                report.completions += s.completions;
            }
            if s.dead > 0 {
                report.dead_lettered += 1;
            }
            // Redelivered: assigned again (a later attempt, or the same
            // attempt number twice when the consumer's delivery count was
            // not kept).
            let redelivered = s.max_attempt >= 2 || s.assignments >= 2;
            if redelivered {
                report.redelivered += 1;
            }
            let mut attempts = s.attempts.clone();
            attempts.sort_unstable();
            if attempts.windows(2).any(|w| w[0] == w[1]) {
                report.attempt_reused += 1;
            }
            if s.completions > 1 {
                report.duplicated += 1;
                if !redelivered {
                    report.violations.push(format!(
                        "{id} completed {} times without a redelivery: {}",
                        s.completions,
                        s.history.join(", ")
                    ));
                }
            }
            if s.completions > s.assignments.max(1) || s.completions > MAX_DELIVER {
                report.violations.push(format!(
                    "{id} completed {} times on {} assignments (bound {MAX_DELIVER}): {}",
                    s.completions,
                    s.assignments,
                    s.history.join(", ")
                ));
            }
        }
        for (id, s) in &submits {
            let done = seen
                .get(id)
                .is_some_and(|x| x.completions > 0 || x.dead > 0);
            match s {
                Submit::Acknowledged if !done => report.lost.push(*id),
                Submit::Indeterminate if done => report.indeterminate_done += 1,
                Submit::NotSubmitted if done => report
                    .violations
                    .push(format!("{id} was never published but finished")),
                _ => {}
            }
        }
        if !report.lost.is_empty() {
            let sample: Vec<String> = report.lost.iter().take(5).map(|t| t.to_string()).collect();
            report.violations.push(format!(
                "{} acknowledged tasks lost (neither completed nor dead-lettered), e.g. {}",
                report.lost.len(),
                sample.join(", ")
            ));
        }
        for (j, status, text) in outputs {
            match status {
                Some(s) if s.code() == Some(0) => {}
                Some(s) => report.violations.push(format!(
                    "worker {j} exited with {s} on SIGTERM: {}",
                    tail(text)
                )),
                None => report.violations.push(format!(
                    "worker {j} did not stop within 45 s of SIGTERM (stuck): {}",
                    tail(text)
                )),
            }
            if text.contains("panicked") {
                report
                    .violations
                    .push(format!("worker {j} panicked: {}", tail(text)));
            }
        }
        report
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Every event of the log, from sequence 1.
async fn read_whole_log(store: &NatsStore) -> Vec<swarm::StoredEvent> {
    let mut all = Vec::new();
    let mut read = store.read(1);
    while let Some(item) = read.next().await {
        all.push(item.unwrap_or_else(|e| panic!("reading the log: {e}")));
    }
    all
}

/// What the checker read through one server.
struct ServerRead {
    last_seq: u64,
    events: Vec<swarm::StoredEvent>,
    /// The log read again through the same server, after the replay.
    reread: Vec<swarm::StoredEvent>,
    /// The state folded from `events`, from nothing.
    folded: SystemState,
    /// What `SystemState::replay` gives: newest snapshot, then the tail.
    replayed: SystemState,
    /// The sequence of the snapshot `replay` started from.
    snapshot_seq: Option<u64>,
}

/// Violations among the servers' reads, each saying where they part: the
/// log itself (the first sequence whose event differs from server 0's), a
/// replay that differs from the fold of the same log (a snapshot that does
/// not match the log), or replays that differ between servers.
fn compare_reads(reads: &[ServerRead]) -> Vec<String> {
    let mut violations = Vec::new();
    let base = &reads[0];
    for (i, r) in reads.iter().enumerate().skip(1) {
        if let Some(k) = first_difference(&base.events, &r.events) {
            violations.push(format!(
                "the log through server {i} differs from server 0's at event {k}: {:?} against {:?}",
                r.events.get(k).map(|e| (e.seq, e.event.name())),
                base.events.get(k).map(|e| (e.seq, e.event.name())),
            ));
        }
    }
    for (i, r) in reads.iter().enumerate() {
        if let Some(k) = first_difference(&r.events, &r.reread) {
            // Acknowledged history rewritten under a reader: a durability
            // violation of the stream, not of the snapshot path.
            violations.push(format!(
                "the log through server {i} changed between two reads at event {k}: {:?}, then {:?}",
                r.events.get(k).map(|e| (e.seq, e.event.name(), task_of(&e.event))),
                r.reread.get(k).map(|e| (e.seq, e.event.name(), task_of(&e.event))),
            ));
        } else if r.replayed != r.folded {
            violations.push(format!(
                "through server {i} the replay from the snapshot at {:?} differs from the log folded from the start: {}",
                r.snapshot_seq,
                state_difference(&r.replayed, &r.folded)
            ));
        }
    }
    if reads.windows(2).any(|w| w[0].replayed != w[1].replayed) {
        let detail: Vec<String> = reads
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, r)| r.replayed != base.replayed)
            .map(|(i, r)| {
                format!(
                    "server {i}: {}",
                    state_difference(&r.replayed, &base.replayed)
                )
            })
            .collect();
        violations.push(format!(
            "the state replayed through the three servers differs (snapshots at {:?}): {}",
            reads.iter().map(|r| r.snapshot_seq).collect::<Vec<_>>(),
            detail.join("; ")
        ));
    }
    violations
}

/// The index of the first event two reads of a log disagree on.
fn first_difference(a: &[swarm::StoredEvent], b: &[swarm::StoredEvent]) -> Option<usize> {
    (0..a.len().max(b.len()))
        .find(|&k| a.get(k).map(|e| (e.seq, &e.event)) != b.get(k).map(|e| (e.seq, &e.event)))
}

/// Where two states differ, briefly: the position, the counters, or the
/// first task whose record differs.
fn state_difference(a: &SystemState, b: &SystemState) -> String {
    if a.last_seq() != b.last_seq() {
        return format!("last_seq {} against {}", a.last_seq(), b.last_seq());
    }
    if a.counters() != b.counters() {
        return format!("counters {:?} against {:?}", a.counters(), b.counters());
    }
    if a.task_count() != b.task_count() {
        return format!("{} tasks against {}", a.task_count(), b.task_count());
    }
    for t in a.tasks() {
        match b.task(t.task.id()) {
            None => return format!("{} only in the first", t.task.id()),
            Some(u) if u != t => return format!("{}: {t:?} against {u:?}", t.task.id()),
            Some(_) => {}
        }
    }
    let (ka, kb): (Vec<_>, Vec<_>) = (a.kinds().collect(), b.kinds().collect());
    if ka != kb {
        return format!("per-kind counts {ka:?} against {kb:?}");
    }
    if a.agents().ne(b.agents()) {
        return "the agents differ".into();
    }
    "equal tasks, counters and agents: the retention bookkeeping differs".into()
}

/// The task a task event is about.
fn task_of(event: &Event) -> Option<TaskId> {
    Some(match event {
        Event::TaskCreated(e) => e.task.id(),
        Event::TaskEnqueued(e) => e.task_id,
        Event::TaskDequeued(e) => e.task_id,
        Event::TaskAssigned(e) => e.task_id,
        Event::TaskCompleted(e) => e.task_id,
        Event::TaskFailed(e) => e.task_id,
        Event::TaskDeadLettered(e) => e.task_id,
        Event::TaskCancelled(e) => e.task_id,
        Event::TaskInterrupted(e) => e.task_id,
        _ => return None,
    })
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Journals `task:created` for each task, then publishes them; what the
/// server acknowledged, per task. Every wait is bounded: an outage makes a
/// submit indeterminate, not a stuck submitter.
async fn submit_batch(log: &NatsStore, queue: &TaskQueue, batch: &[Task]) -> Vec<Submit> {
    let limit = Duration::from_secs(10);
    let created = futures::future::join_all(batch.iter().map(|t| {
        tokio::time::timeout(
            limit,
            log.append(vec![TaskCreated { task: t.clone() }.into()], None),
        )
    }))
    .await;
    let mut out = Vec::with_capacity(batch.len());
    for (task, created) in batch.iter().zip(created) {
        if !matches!(created, Ok(Ok(_))) {
            out.push(Submit::NotSubmitted);
            continue;
        }
        let acked = match tokio::time::timeout(limit, queue.submit(task)).await {
            Ok(Ok(())) => Submit::Acknowledged,
            _ => Submit::Indeterminate,
        };
        out.push(acked);
    }
    out
}

/// What the checker found.
#[derive(Debug, Default)]
struct Report {
    submitted: usize,
    acknowledged: usize,
    indeterminate: usize,
    indeterminate_done: usize,
    not_submitted: usize,
    completed: usize,
    completions: usize,
    duplicated: usize,
    redelivered: usize,
    attempt_reused: usize,
    dead_lettered: usize,
    lost: Vec<TaskId>,
    events: usize,
    violations: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "submitted {}, acknowledged {}, indeterminate {} ({} of them finished), \
             not submitted {}, completed {} ({} completions), duplicated {} \
             (redelivered tasks {}, attempt number reused {}), dead-lettered {}, lost {}, \
             log events {}; {}",
            self.submitted,
            self.acknowledged,
            self.indeterminate,
            self.indeterminate_done,
            self.not_submitted,
            self.completed,
            self.completions,
            self.duplicated,
            self.redelivered,
            self.attempt_reused,
            self.dead_lettered,
            self.lost.len(),
            self.events,
            if self.violations.is_empty() {
                "no violations".to_owned()
            } else {
                format!("VIOLATIONS: {}", self.violations.join("; "))
            }
        )
    }
}

impl Report {
    fn assert_ok(&self, cluster_logs: impl FnOnce() -> String) {
        assert!(
            self.violations.is_empty(),
            "{self}\n--- server logs ---\n{}",
            cluster_logs()
        );
        assert!(self.acknowledged > 0, "the workload ran: {self}");
        assert!(self.completed > 0, "the workload ran: {self}");
    }
}

/// Runs `nemesis` for `ROUNDS` rounds on a live workload, then the checker.
fn fault_test(
    name: &str,
    mut nemesis: impl FnMut(&mut Run, usize) -> Result<(), String>,
) -> Option<Report> {
    let mut run = Run::start(name, 3)?;
    run.start_workers();
    run.start_follower();
    run.start_submitter();
    // A stall ends the rounds; the checker then tells what became of the tasks.
    let mut stall = run.wait_progress("the start").err();
    for round in 0..ROUNDS {
        if stall.is_some() {
            break;
        }
        stall = nemesis(&mut run, round)
            .and_then(|()| run.wait_progress(&format!("round {round}")))
            .err();
    }
    let logs: Vec<String> = (0..3).map(|i| tail(&run.cluster.server_log(i))).collect();
    let report = run.finish(name, stall);
    report.assert_ok(|| logs.join("\n---\n"));
    Some(report)
}

#[test]
#[ignore = "2 min; run by hand (--run-ignored only): the double completion it found (a \
            completion whose task:assigned the log lost) is fixed in the journal, 3 of 3 runs \
            pass since (1 of 3 failed before)"]
fn cluster_faults_kill_the_stream_leader() {
    fault_test("leader", |run, round| {
        // Alternate between the task stream's leader and the log's.
        let streams = run.streams();
        let stream = if round % 2 == 0 {
            &streams[0]
        } else {
            &streams[2]
        };
        let leader = run.cluster.wait_stream_leader(stream).unwrap();
        run.cluster.kill(leader).unwrap();
        // A new leader among the other two, and work goes on without it.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match run.cluster.stream_leader(stream) {
                Some(l) if l != leader => break,
                _ => {}
            }
            assert!(Instant::now() < deadline, "no new leader for {stream}");
            std::thread::sleep(Duration::from_millis(50));
        }
        run.wait_progress(&format!("killing leader {leader} of {stream}"))?;
        run.cluster.restart(leader).unwrap();
        run.cluster.wait_healthy().unwrap();
        Ok(())
    });
}

#[test]
fn cluster_faults_isolate_a_server() {
    fault_test("isolate", |run, round| {
        let victim = round % 3;
        run.cluster.isolate(victim).unwrap();
        std::thread::sleep(HOLD);
        run.cluster.heal(victim).unwrap();
        run.cluster.wait_healthy().unwrap();
        Ok(())
    });
}

#[test]
fn cluster_faults_kill_a_worker_mid_attempt() {
    let report = fault_test("worker", |run, round| {
        let victim = round % WORKERS;
        let name = run.swarm_name.clone();
        // Under a steady load every worker has attempts running: wait until
        // the swarm completes work, then kill this one mid-way.
        run.wait_progress("before the kill")?;
        run.workers[victim].kill_and_restart(&name);
        Ok(())
    });
    if let Some(report) = report {
        assert_kills_interrupted_attempts(&report);
    }
}

/// Each kill of `cluster_faults_kill_a_worker_mid_attempt` lands on a
/// loaded worker, so some attempts die with it and come back.
fn assert_kills_interrupted_attempts(report: &Report) {
    assert!(
        report.redelivered > 0,
        "no task was redelivered: the kills hit no attempt: {report}"
    );
}

/// Was ignored for "the state replayed through the three servers differs"
/// (1 of 2 runs); 5 of 5 runs pass since the node stopped multiplying tasks
/// redelivered while they ran (`distributed/settle.rs`). Should it fail
/// again, the checker now says where the servers part: the log itself, a
/// snapshot against the log folded from the start, or the replays.
#[test]
fn cluster_faults_restart_every_server() {
    fault_test("restart_all", |run, _round| {
        for i in 0..3 {
            run.cluster.kill(i).unwrap();
        }
        for i in 0..3 {
            run.cluster.restart(i).unwrap();
        }
        run.cluster.wait_healthy().unwrap();
        Ok(())
    });
}

/// With `replicas`, tasks acknowledged and waiting on the queue survive the
/// task stream's server losing its disk: the checker's report.
fn disk_loss(name: &str, replicas: usize) -> Option<Report> {
    let mut run = Run::start(name, replicas)?;
    run.start_follower();
    // 200 tasks on the queue, no worker yet: all acknowledged.
    run.start_submitter();
    let deadline = Instant::now() + Duration::from_secs(60);
    while run.shared.submits.lock().unwrap().len() < 200 {
        assert!(Instant::now() < deadline, "the submitter is stuck");
        std::thread::sleep(Duration::from_millis(20));
    }
    run.shared.stop.store(true, Ordering::Relaxed);
    let submitter = run.tasks.remove(1);
    run.rt.block_on(submitter).unwrap();
    run.shared.stop.store(false, Ordering::Relaxed);
    let stream = run.streams()[0].clone();
    let victim = run.cluster.wait_stream_leader(&stream).unwrap();
    run.cluster.kill(victim).unwrap();
    run.cluster.wipe_store(victim).unwrap();
    run.cluster.restart(victim).unwrap();
    run.cluster.wait_healthy().unwrap();
    run.cluster.wait_stream_leader(&stream).unwrap();
    run.start_workers();
    // A submitter again, so that `finish` has one to stop.
    run.start_submitter();
    Some(run.finish(name, None))
}

/// The checker can fail: R1 streams lose acknowledged tasks with a disk.
#[test]
fn cluster_disk_loss_with_r1_streams_is_caught_by_the_checker() {
    let Some(report) = disk_loss("disk_r1", 1) else {
        return;
    };
    assert!(
        !report.lost.is_empty(),
        "expected the checker to report lost tasks: {report}"
    );
    assert!(
        report.violations.iter().any(|v| v.contains("lost")),
        "{report}"
    );
}

/// The same fault with R3 streams: nothing lost.
#[test]
fn cluster_disk_loss_with_r3_streams_loses_nothing() {
    let Some(report) = disk_loss("disk_r3", 3) else {
        return;
    };
    report.assert_ok(String::new);
}
