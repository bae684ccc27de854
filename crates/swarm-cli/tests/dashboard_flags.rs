//! `--dashboard` and `--dashboard-token` on the commands: a generated token
//! is printed once, a non-loopback address without a token and a weak token
//! are refused (exit 2, one line).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{assert_fails, code, stderr, swarm, write_jobs};

#[test]
fn run_with_a_dashboard_prints_its_url_and_a_generated_token_once() {
    let tmp = tempfile::tempdir().unwrap();
    let jobs = tmp.path().join("jobs.jsonl");
    write_jobs(&jobs, &[r#"{"id": "a", "cmd": "true"}"#.to_owned()]);
    let out = swarm()
        .env_remove("SWARM_DASHBOARD_TOKEN")
        .arg("run")
        .arg(&jobs)
        .arg("--store")
        .arg(tmp.path().join("store"))
        .args(["--dashboard", "127.0.0.1:0", "--json"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    let tokens: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("dashboard token"))
        .collect();
    assert_eq!(tokens.len(), 1, "{err}");
    let token = tokens[0].rsplit(' ').next().unwrap();
    assert_eq!(token.len(), 64, "{err}");
    assert!(err.contains("dashboard: http://127.0.0.1:"), "{err}");
}

#[test]
fn a_non_loopback_dashboard_without_a_token_is_refused() {
    let out = swarm()
        .env_remove("SWARM_DASHBOARD_TOKEN")
        .args([
            "demo",
            "--memory",
            "--tasks",
            "1",
            "--dashboard",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert_fails(&out, 2, &["not a loopback address", "--dashboard-token"]);
}

#[test]
fn a_short_token_is_refused_from_the_flag_and_from_the_environment() {
    let out = swarm()
        .args([
            "demo",
            "--memory",
            "--tasks",
            "1",
            "--dashboard",
            "127.0.0.1:0",
        ])
        .args(["--dashboard-token", "short"])
        .output()
        .unwrap();
    assert_fails(&out, 2, &["token is not acceptable", "fewer than 16"]);
    let out = swarm()
        .env("SWARM_DASHBOARD_TOKEN", "short")
        .args([
            "demo",
            "--memory",
            "--tasks",
            "1",
            "--dashboard",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_fails(&out, 2, &["fewer than 16"]);
}

#[test]
fn serve_on_a_taken_port_is_refused() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = swarm()
        .args(["serve", "--store"])
        .arg(tmp.path().join("store"))
        .args(["--dashboard", &taken.local_addr().unwrap().to_string()])
        .args(["--dashboard-token", "serve-test-token-0123456789"])
        .output()
        .unwrap();
    assert_fails(&out, 2, &["cannot listen on"]);
}
