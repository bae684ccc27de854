//! Black-box, multi-process: three `swarm worker` processes and a
//! `swarm demo --store nats://... --no-local-worker` submitter share one
//! swarm; 10 000 tasks across priorities; one worker is SIGKILLed mid-run.
//! Every task completes (at-least-once), none is lost, the queue ends empty,
//! the surviving workers stop on SIGTERM with exit 0, and the state replayed
//! from the NATS log is the same through two separate connections.
//!
//! Needs `SWARM_NATS_URL`; without it the test prints that it is skipped and
//! passes, except under `SWARM_CI=1` (CI), where it fails; with it set but
//! unreachable it fails. The swarm's streams are named
//! after the process id and the clock and deleted at the end, passed or failed.
#![cfg(feature = "nats")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use swarm::distributed::{TaskQueue, TaskQueueConfig};
use swarm::{Event, EventStore, SystemState, TaskId, TaskStatus};
use swarm_store::{NatsStore, NatsStoreOptions};

use support::swarm;
use swarm_testkit::nats::{server_url, unique_name};
/// A swarm name no other test or test process uses.
fn unique_swarm() -> String {
    unique_name("cli", "w")
}

const TASKS: usize = 10_000;
const ACK_WAIT_MS: &str = "2000";

/// Child processes killed (SIGKILL) when dropped, so a failing test leaves none.
#[derive(Default)]
struct Children(Vec<Option<Child>>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in self.0.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start_worker(url: &str, swarm_name: &str, log: &Path) -> Child {
    let file = std::fs::File::create(log).unwrap();
    swarm()
        .args([
            "-v",
            "worker",
            "--nats",
            url,
            "--swarm",
            swarm_name,
            "--agents",
            "8",
            "--duration-ms",
            "0..2",
            "--prefetch",
            "8",
            "--ack-wait-ms",
            ACK_WAIT_MS,
        ])
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("the swarm binary starts")
}

/// Waits until the worker logged that it joined (its pull requests are held).
fn wait_ready(child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("worker joined the swarm") {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("worker exited early ({status}): {text}");
        }
        assert!(Instant::now() < deadline, "worker not ready: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child` to exit, at most `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "process did not exit in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_task_completes_when_a_worker_process_is_killed() {
    let Some(url) = server_url() else { return };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let swarm_name = unique_swarm();
    let options = NatsStoreOptions::new(&url, &swarm_name).shared_writers(true);
    let log = rt
        .block_on(NatsStore::connect(options.clone()))
        .expect("SWARM_NATS_URL is set but the server cannot be reached");
    let dir = tempfile::tempdir().unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(&rt, &url, &swarm_name, &options, &log, dir.path());
    }));
    rt.block_on(async {
        if let Ok(queue) =
            TaskQueue::open(log.client().clone(), TaskQueueConfig::new(&swarm_name)).await
        {
            let _ = queue.destroy().await;
        }
        let _ = log.destroy().await;
    });
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn run(
    rt: &tokio::runtime::Runtime,
    url: &str,
    swarm_name: &str,
    options: &NatsStoreOptions,
    log: &NatsStore,
    dir: &Path,
) {
    let mut children = Children::default();
    let logs: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("worker{i}.log"))).collect();
    for path in &logs {
        children.0.push(Some(start_worker(url, swarm_name, path)));
    }
    for (child, path) in children.0.iter_mut().zip(&logs) {
        wait_ready(child.as_mut().unwrap(), path);
    }

    let submitter = swarm()
        .args([
            "demo",
            "--store",
            url,
            "--swarm",
            swarm_name,
            "--no-local-worker",
            "--tasks",
            &TASKS.to_string(),
            "--rate",
            "0",
            "--json",
            "--ack-wait-ms",
            ACK_WAIT_MS,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the swarm binary starts");
    children.0.push(Some(submitter));

    // Follow the log: learn the tasks from task:created, kill worker 0 once a
    // quarter of them completed, go on until every one completed.
    let (created, completed, completions) = rt.block_on(async {
        let mut live = log.subscribe(1);
        let mut created: HashSet<TaskId> = HashSet::new();
        let mut completed: HashSet<TaskId> = HashSet::new();
        let mut completions = 0usize;
        let mut killed = false;
        while created.len() < TASKS || completed.len() < created.len() {
            let e = tokio::time::timeout(Duration::from_secs(30), live.next())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "tasks stopped completing: {} created, {} completed",
                        created.len(),
                        completed.len()
                    )
                })
                .expect("log subscription ended")
                .unwrap();
            match &e.event {
                Event::TaskCreated(c) => {
                    created.insert(c.task.id());
                }
                Event::TaskCompleted(c) => {
                    completions += 1;
                    completed.insert(c.task_id);
                    if !killed && completed.len() >= TASKS / 4 {
                        let mut victim = children.0[0].take().unwrap();
                        victim.kill().unwrap(); // SIGKILL
                        let status = victim.wait().unwrap();
                        assert!(!status.success(), "{status}");
                        killed = true;
                    }
                }
                _ => {}
            }
        }
        assert!(killed, "worker 0 was killed mid-run");
        (created, completed, completions)
    });
    assert_eq!(created.len(), TASKS);
    assert_eq!(completed, created, "every task completed");
    assert!(completions >= TASKS);

    // The submitter saw every task finish and summarizes them all.
    let mut submitter = children.0[3].take().unwrap();
    let status = wait_exit(&mut submitter, Duration::from_secs(30));
    let out = submitter.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(status.success(), "submitter failed ({status}): {stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout} {stderr}"));
    assert_eq!(v["mode"], "distributed");
    assert_eq!(v["swarm"], swarm_name);
    assert_eq!(v["tasks"].as_u64(), Some(TASKS as u64));
    assert_eq!(
        v["outcomes"]["completed"].as_u64(),
        Some(TASKS as u64),
        "{v}"
    );
    assert_eq!(v["outcomes"]["dead_lettered"].as_u64(), Some(0), "{v}");
    let starts: u64 = ["critical", "high", "normal", "low"]
        .iter()
        .map(|p| v["queue_wait_ms"][p]["count"].as_u64().unwrap())
        .sum();
    assert!(starts >= TASKS as u64, "{v}");
    // Every priority was in the workload.
    for p in ["critical", "high", "normal", "low"] {
        assert!(v["queue_wait_ms"][p]["count"].as_u64().unwrap() > 0, "{v}");
    }

    // The surviving workers stop gracefully on SIGTERM.
    for i in 1..3 {
        let child = children.0[i].as_ref().unwrap();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM failed");
    }
    for (i, path) in logs.iter().enumerate().skip(1) {
        let mut child = children.0[i].take().unwrap();
        let status = wait_exit(&mut child, Duration::from_secs(20));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(status.code(), Some(0), "worker {i}: {text}");
    }

    rt.block_on(async {
        // Nothing waits on the queue, nothing was dead-lettered.
        let queue = TaskQueue::open(log.client().clone(), TaskQueueConfig::new(swarm_name))
            .await
            .unwrap();
        assert_eq!(
            queue.pending().await.unwrap(),
            0,
            "no task left on the queue"
        );
        assert_eq!(queue.dead_lettered().await.unwrap(), 0);

        // The state replayed from the log is the same through two connections.
        let a = SystemState::replay(log).await.unwrap();
        let other = NatsStore::connect(options.clone()).await.unwrap();
        let b = SystemState::replay(&other).await.unwrap();
        for id in &created {
            assert_eq!(a.task(*id).map(|t| t.status), Some(TaskStatus::Completed));
            assert_eq!(a.task(*id).map(|t| t.status), b.task(*id).map(|t| t.status));
        }
        assert_eq!(a.counters(), b.counters());
        assert_eq!(
            log.last_seq().await.unwrap(),
            other.last_seq().await.unwrap()
        );
        let _ = other.close().await;
    });
}

/// `swarm worker` against a server that does not answer: exit 2, one line.
#[test]
fn worker_exits_2_when_the_server_is_unreachable() {
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = swarm()
        .args(["worker", "--nats", &format!("nats://127.0.0.1:{port}")])
        .output()
        .unwrap();
    support::assert_fails(&out, 2, &["nats"]);
}

/// `swarm demo --store nats://` against a server that does not answer: exit 2.
#[test]
fn demo_exits_2_when_the_server_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = swarm()
        .args([
            "demo",
            "--store",
            &format!("nats://127.0.0.1:{port}"),
            "--tasks",
            "10",
        ])
        .output()
        .unwrap();
    support::assert_fails(&out, 2, &["nats"]);
}

/// `swarm demo --store nats://` alone (its in-process node does the work).
#[test]
fn demo_with_a_nats_store_completes_alone() {
    let Some(url) = server_url() else { return };
    let swarm_name = unique_swarm() + "_alone";
    let out = swarm()
        .args([
            "demo",
            "--store",
            &url,
            "--swarm",
            &swarm_name,
            "--tasks",
            "300",
            "--rate",
            "0",
            "--agents",
            "4",
            "--duration-ms",
            "0..1",
            "--json",
        ])
        .output()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let log = NatsStore::connect(NatsStoreOptions::new(&url, &swarm_name))
            .await
            .expect("SWARM_NATS_URL is set but the server cannot be reached");
        if let Ok(queue) =
            TaskQueue::open(log.client().clone(), TaskQueueConfig::new(&swarm_name)).await
        {
            let _ = queue.destroy().await;
        }
        let _ = log.destroy().await;
    });
    assert_eq!(support::code(&out), 0, "{}", support::stderr(&out));
    let v = support::json(&out);
    assert_eq!(v["mode"], "distributed");
    assert_eq!(v["local_worker"], true);
    assert_eq!(v["outcomes"]["completed"].as_u64(), Some(300), "{v}");
    assert_eq!(v["outcomes"]["dead_lettered"].as_u64(), Some(0), "{v}");
}

/// Options that make no sense for the store given are refused before anything runs.
#[test]
fn demo_refuses_options_that_do_not_fit_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("log");
    let out = swarm()
        .args([
            "demo",
            "--store",
            store.to_str().unwrap(),
            "--no-local-worker",
        ])
        .output()
        .unwrap();
    support::assert_fails(&out, 2, &["--no-local-worker", "nats://"]);
    assert!(!store.exists(), "nothing ran");
    // Refused before connecting: no server needed.
    let out = swarm()
        .args(["demo", "--store", "nats://127.0.0.1:1", "--mode", "polling"])
        .output()
        .unwrap();
    support::assert_fails(&out, 2, &["--mode polling"]);
}

/// The address a worker started with `--metrics 127.0.0.1:0` logged.
fn metrics_addr(log: &Path) -> std::net::SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("serving Prometheus metrics"))
        {
            let addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .unwrap_or_else(|| panic!("no addr= in {line:?}"));
            return addr.parse().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no metrics address logged: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `GET /metrics` with a plain HTTP/1.0 request.
fn scrape(addr: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "{head}"
    );
    body.to_owned()
}

fn completed_total(exposition: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| {
            l.starts_with("swarm_tasks_finished_total{") && l.contains("outcome=\"completed\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn two_workers_with_metrics_count_every_task_once_between_them() {
    let Some(url) = server_url() else { return };
    const N: usize = 400;
    let swarm_name = unique_swarm();
    let tmp = tempfile::tempdir().unwrap();
    let mut children = Children::default();
    let mut logs = Vec::new();
    for i in 0..2 {
        let log = tmp.path().join(format!("worker{i}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = swarm()
            .args([
                "-v",
                "worker",
                "--nats",
                &url,
                "--swarm",
                &swarm_name,
                "--agents",
                "4",
                "--duration-ms",
                "0..2",
                "--metrics",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("the swarm binary starts");
        children.0.push(Some(child));
        logs.push(log);
    }
    for (child, path) in children.0.iter_mut().zip(&logs) {
        wait_ready(child.as_mut().unwrap(), path);
    }
    let addrs: Vec<_> = logs.iter().map(|l| metrics_addr(l)).collect();
    let out = swarm()
        .args([
            "demo",
            "--store",
            &url,
            "--swarm",
            &swarm_name,
            "--no-local-worker",
            "--tasks",
            &N.to_string(),
            "--rate",
            "0",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each worker counts what it ran; together, every task once.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (expositions, total) = loop {
        let expositions: Vec<String> = addrs.iter().map(|a| scrape(*a)).collect();
        let total: f64 = expositions.iter().map(|e| completed_total(e)).sum();
        if total >= N as f64 || Instant::now() > deadline {
            break (expositions, total);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        total, N as f64,
        "swarm_tasks_finished_total{{outcome=\"completed\"}} over both workers"
    );
    assert!(
        expositions.iter().all(|e| completed_total(e) > 0.0),
        "one worker did nothing"
    );
    if let Some(promtool) = swarm_testkit::promtool::find() {
        for exposition in &expositions {
            if let Err(finding) = swarm_testkit::promtool::check_metrics(&promtool, exposition) {
                panic!("{finding}");
            }
        }
    }
    // SIGTERM stops both cleanly.
    for child in children.0.iter_mut().flatten() {
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our
        // own child, not yet reaped.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0);
    }
    for child in children.0.iter_mut().flatten() {
        let status = wait_exit(child, Duration::from_secs(40));
        assert!(status.success(), "{status}");
    }
    children.0.clear();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if let Ok(log) = NatsStore::connect(NatsStoreOptions::new(url.as_str(), &swarm_name)).await
        {
            if let Ok(queue) =
                TaskQueue::open(log.client().clone(), TaskQueueConfig::new(&swarm_name)).await
            {
                let _ = queue.destroy().await;
            }
            let _ = log.destroy().await;
        }
    });
}
