//! The exporter's histogram upkeep wakes only when there are samples to fold:
//! an idle swarm has no thread waking on a timer (DESIGN.md: no wake-ups while
//! idle). Watched from the outside, through the upkeep thread's voluntary
//! context switches in /proc (Linux only).
//!
//! One test in this file: it looks the upkeep thread up by name, so no other
//! exporter may live in the process.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "prometheus")]
#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};

use swarm_metrics::PrometheusExporter;

/// The id of this process's only thread whose name starts with `prefix`
/// (a new thread names itself once it runs: wait for that).
fn thread_named(prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc/self/task").unwrap() {
            let dir = entry.unwrap().path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if comm.trim_end().starts_with(prefix) {
                found.push(dir.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
        assert!(found.len() <= 1, "threads named {prefix}*: {found:?}");
        if let Some(tid) = found.pop() {
            return tid;
        }
        assert!(Instant::now() < deadline, "no thread named {prefix}*");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// How many times the thread has gone to sleep and been woken since it started.
fn voluntary_switches(tid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn upkeep_sleeps_while_idle_and_wakes_for_recorded_samples() {
    let exporter = PrometheusExporter::builder()
        .without_listener()
        .upkeep_interval(Duration::from_millis(5))
        .build()
        .unwrap();
    // Thread names are cut to 15 bytes: "swarm-metrics-upkeep" is "swarm-metrics-u".
    let tid = thread_named("swarm-metrics-u");
    let metrics = exporter.swarm_metrics();

    // Idle: nothing recorded. A timer-driven upkeep every 5 ms would wake
    // about 60 times in this window.
    let start = voluntary_switches(&tid);
    std::thread::sleep(Duration::from_millis(300));
    let woke = voluntary_switches(&tid) - start;
    assert!(
        woke <= 1,
        "the upkeep thread woke {woke} times in 300 ms with nothing recorded"
    );

    // A histogram sample wakes it (it folds the samples after its interval).
    let before = voluntary_switches(&tid);
    metrics.record_store_append(Duration::from_micros(250));
    let deadline = Instant::now() + Duration::from_secs(30);
    while voluntary_switches(&tid) == before {
        assert!(
            Instant::now() < deadline,
            "the upkeep thread never woke for a recorded sample"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Folded samples stay counted.
    assert!(
        exporter
            .render()
            .contains("swarm_store_append_duration_seconds_count 1"),
        "{}",
        exporter.render()
    );
}
