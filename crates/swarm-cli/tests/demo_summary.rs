//! `swarm demo --json` in both modes: one JSON object whose counts add up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{code, json, run, stderr};

fn check_summary(v: &serde_json::Value, tasks: u64) {
    let outcomes = &v["outcomes"];
    let completed = outcomes["completed"].as_u64().unwrap();
    let dead = outcomes["dead_lettered"].as_u64().unwrap();
    assert_eq!(v["tasks"].as_u64().unwrap(), tasks);
    assert_eq!(completed + dead, tasks, "{v}");
    assert_eq!(outcomes["cancelled"].as_u64().unwrap(), 0);
    assert_eq!(outcomes["interrupted"].as_u64().unwrap(), 0);
    // Every task started at least once: the queue waits count every start.
    let starts: u64 = ["critical", "high", "normal", "low"]
        .iter()
        .map(|p| v["queue_wait_ms"][p]["count"].as_u64().unwrap())
        .sum();
    assert!(starts >= tasks, "{starts} starts for {tasks} tasks: {v}");
    for p in ["critical", "high", "normal", "low"] {
        let w = &v["queue_wait_ms"][p];
        assert!(w["p50"].as_f64().unwrap() <= w["max"].as_f64().unwrap() + 0.001);
    }
    assert!(v["throughput_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["retries"].is_u64() && v["steals"].is_u64());
}

#[test]
fn demo_json_event_mode_in_memory() {
    let out = run(&[
        "demo",
        "--memory",
        "--json",
        "--agents",
        "4",
        "--tasks",
        "200",
        "--rate",
        "0",
        "--duration-ms",
        "0..1",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = json(&out);
    check_summary(&v, 200);
    assert_eq!(v["mode"], "event");
    assert_eq!(v["store"], "memory");
    assert_eq!(v["outcomes"]["completed"].as_u64().unwrap(), 200);
}

#[test]
fn demo_json_polling_mode_in_memory() {
    let out = run(&[
        "demo",
        "--memory",
        "--json",
        "--mode",
        "polling",
        "--poll-interval-ms",
        "5",
        "--poll-batch",
        "10",
        "--agents",
        "2",
        "--tasks",
        "40",
        "--rate",
        "0",
        "--duration-ms",
        "0",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = json(&out);
    check_summary(&v, 40);
    assert_eq!(v["mode"], "polling");
    // 40 tasks, 10 per wake-up: the last ten wait for at least the fourth
    // wake-up after they were submitted, three intervals after the first.
    let max_wait = ["critical", "high", "normal", "low"]
        .iter()
        .map(|p| v["queue_wait_ms"][p]["max"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(max_wait >= 15.0, "the polling waits were not measured: {v}");
}

#[test]
fn demo_json_with_failures_on_a_file_store_then_inspect_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("data");
    let store = store.to_str().unwrap();
    let out = run(&[
        "demo",
        "--store",
        store,
        "--json",
        "--agents",
        "4",
        "--tasks",
        "100",
        "--rate",
        "5000",
        "--duration-ms",
        "exp:0.5",
        "--fail-rate",
        "0.3",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = json(&out);
    check_summary(&v, 100);
    assert!(
        v["retries"].as_u64().unwrap() > 0,
        "30% failures yet no retry: {v}"
    );
    let completed = v["outcomes"]["completed"].as_u64().unwrap();
    let dead = v["outcomes"]["dead_lettered"].as_u64().unwrap();

    // The log agrees with the summary.
    let out = run(&["replay", "--store", store, "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let state = json(&out);
    assert_eq!(state["tasks"].as_u64().unwrap(), 100);
    assert_eq!(
        state["tasks_by_status"]["completed"].as_u64().unwrap(),
        completed
    );
    assert_eq!(
        state["tasks_by_status"]["dead_lettered"].as_u64().unwrap(),
        dead
    );

    let out = run(&["stats", "--store", store, "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let stats = json(&out);
    assert_eq!(stats["outcomes"]["completed"].as_u64().unwrap(), completed);
    assert_eq!(stats["outcomes"]["dead_lettered"].as_u64().unwrap(), dead);
    let by_agent: u64 = stats["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["completed"].as_u64().unwrap())
        .sum();
    assert_eq!(by_agent, completed);

    let out = run(&["events", "--store", store, "--event", "task:completed"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = support::stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, completed);
    let mut last = 0;
    for l in &lines {
        let seq = l["seq"].as_u64().unwrap();
        assert!(seq > last, "sequences ascend");
        last = seq;
    }
    // --from skips what comes before.
    let out = run(&["events", "--store", store, "--from", &last.to_string()]);
    let first: serde_json::Value =
        serde_json::from_str(support::stdout(&out).lines().next().unwrap()).unwrap();
    assert_eq!(first["seq"].as_u64().unwrap(), last);

    // replay --to gives an earlier state.
    let out = run(&["replay", "--store", store, "--json", "--to", "1"]);
    assert_eq!(json(&out)["last_seq"].as_u64().unwrap(), 1);
}

/// `swarm demo` in both modes on its default store (`./swarm-data` in the
/// working directory): polling mode on a durable store used to hang for ever.
#[test]
fn demo_json_both_modes_on_the_default_store_account_for_every_task() {
    for mode in ["polling", "event"] {
        let tmp = tempfile::tempdir().unwrap();
        let child = support::swarm()
            .current_dir(tmp.path())
            .args([
                "demo",
                "--json",
                "--mode",
                mode,
                "--poll-interval-ms",
                "5",
                "--agents",
                "4",
                "--tasks",
                "60",
                "--rate",
                "0",
                "--duration-ms",
                "0..1",
                "--fail-rate",
                "0.2",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = wait_or_kill(child, std::time::Duration::from_secs(120), mode);
        assert_eq!(code(&out), 0, "{mode}: {}", stderr(&out));
        let v = json(&out);
        check_summary(&v, 60);
        assert_eq!(v["mode"], mode);
        assert!(
            tmp.path().join("swarm-data").is_dir(),
            "{mode}: no default store"
        );
    }
}

/// Waits for `child`, killing it (and failing) after `limit`.
fn wait_or_kill(
    mut child: std::process::Child,
    limit: std::time::Duration,
    what: &str,
) -> std::process::Output {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{what}: the demo hung; stderr:\n{}", stderr(&out));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// `--enqueue-first`: every task is accepted while the swarm is paused, none
/// starts before the release, and the drain is timed from it.
#[test]
fn demo_enqueue_first_queues_everything_before_any_start() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let store = store.to_str().unwrap();
    for mode in ["event", "polling"] {
        let tasks = 300;
        let out = run(&[
            "demo",
            "--json",
            "--enqueue-first",
            "--mode",
            mode,
            "--poll-interval-ms",
            "5",
            "--poll-batch",
            "50",
            "--agents",
            "4",
            "--tasks",
            "300",
            "--duration-ms",
            "0",
            "--store",
            store,
        ]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let v = json(&out);
        check_summary(&v, tasks);
        assert_eq!(v["enqueue_first"], true);
        // The log: the release comes after all of this run's tasks were
        // queued, and no task of this run started before it.
        let out = run(&["events", "--store", store]);
        let events: Vec<serde_json::Value> = support::stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let resumed = events
            .iter()
            .rposition(|e| e["event"]["event"] == "swarm:resumed")
            .expect("a swarm:resumed");
        let paused = events[..resumed]
            .iter()
            .rposition(|e| e["event"]["event"] == "swarm:paused")
            .expect("a swarm:paused before it");
        assert_eq!(events[resumed]["event"]["data"]["queued"], tasks, "{mode}");
        let started_early = events[paused..resumed]
            .iter()
            .filter(|e| e["event"]["event"] == "task:assigned")
            .count();
        assert_eq!(started_early, 0, "{mode}: tasks started while paused");
    }
}
