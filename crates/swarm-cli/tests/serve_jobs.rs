//! `swarm serve`: shell jobs submitted with `POST /api/v1/tasks` run, SIGTERM
//! stops it with exit 0, and a SIGKILLed server restarted on the same store
//! runs the job that was running again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const TOKEN: &str = "serve-test-token-0123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `swarm serve` in `dir` on `port`, with the store in `dir/store`.
fn serve(dir: &Path, port: u16) -> Child {
    support::swarm()
        .current_dir(dir)
        .args(["serve", "--agents", "2", "--store"])
        .arg(dir.join("store"))
        .args(["--dashboard", &format!("127.0.0.1:{port}")])
        .args(["--dashboard-token", TOKEN])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("swarm serve starts")
}

async fn wait_listening(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("swarm serve did not listen on port {port}");
}

async fn submit(client: &reqwest::Client, port: u16, body: Value) -> (u16, Value) {
    let response = client
        .post(format!("http://127.0.0.1:{port}/api/v1/tasks"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn wait_status(client: &reqwest::Client, port: u16, id: &str, want: &str) -> Value {
    for _ in 0..400 {
        let response = client
            .get(format!("http://127.0.0.1:{port}/api/v1/tasks/{id}"))
            .send()
            .await
            .unwrap();
        if response.status().as_u16() == 200 {
            let body: Value = response.json().await.unwrap();
            if body["task"]["status"] == want {
                return body;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("task {id} never became {want}");
}

/// Sends SIGTERM to our own child, by its pid.
fn terminate(child: &Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_jobs_run_and_sigterm_stops_with_exit_0() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = serve(tmp.path(), port);
    wait_listening(port).await;
    let client = reqwest::Client::new();
    let (status, body) = submit(
        &client,
        port,
        json!({"kind": "job", "id": "hello", "priority": "high", "payload": {"cmd": "echo \"$SWARM_JOB_ID\" > hello.txt"}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    wait_status(&client, port, &id, "completed").await;
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("hello.txt"))
            .unwrap()
            .trim(),
        "hello"
    );
    // A job that fails is retried, then dead-lettered, and shows as one.
    let (status, body) = submit(
        &client,
        port,
        json!({"kind": "job", "max_attempts": 1, "payload": "echo broken >&2; exit 3"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let dead = wait_status(&client, port, body["id"].as_str().unwrap(), "dead_lettered").await;
    assert!(
        dead["task"]["errors"][0]
            .as_str()
            .unwrap()
            .contains("broken"),
        "{dead}"
    );
    // Only jobs: another kind is refused with a reason.
    let (status, body) = submit(&client, port, json!({"kind": "echo", "payload": "x"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("\"job\""),
        "{body}"
    );
    // Without the token, nothing is submitted.
    let response = client
        .post(format!("http://127.0.0.1:{port}/api/v1/tasks"))
        .json(&json!({"kind": "job", "payload": "true"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);

    terminate(&child);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM stops swarm serve cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_runs_its_running_job_again_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = serve(tmp.path(), port);
    wait_listening(port).await;
    let client = reqwest::Client::new();
    // The first attempt marks that it started and hangs; the next one finishes.
    let cmd = "if [ -f started ]; then echo again > resumed.txt; else touch started; sleep 20; fi";
    let (status, body) = submit(
        &client,
        port,
        json!({"kind": "job", "id": "long", "payload": {"cmd": cmd}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    wait_status(&client, port, &id, "running").await;
    for _ in 0..200 {
        if tmp.path().join("started").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(tmp.path().join("started").exists());
    child.kill().unwrap();
    let _ = child.wait();

    let port = free_port();
    let mut child = serve(tmp.path(), port);
    wait_listening(port).await;
    let body = wait_status(&client, port, &id, "completed").await;
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("resumed.txt"))
            .unwrap()
            .trim(),
        "again"
    );
    let names: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"task:failed"),
        "the lost attempt is recorded: {names:?}"
    );
    terminate(&child);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    // The first attempt's shell, orphaned by the SIGKILL, ends by itself.
}
