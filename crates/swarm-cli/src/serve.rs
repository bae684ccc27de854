//! `swarm serve`: a long-running `swarm run` whose jobs come through the
//! dashboard's `POST /api/v1/tasks` instead of a file.
//!
//! The jobs run on the same executor as `swarm run` (`sh -c CMD` by
//! [`ShellAgent`], in the directory `swarm serve` was started from), on the
//! same durable file store: a job is on disk before its 201 answer, and a
//! restart on the same `--store` runs again what was queued or running when
//! the last one stopped (at-least-once). SIGTERM or Ctrl-C stops it: no new
//! job starts, running ones get a grace period, and what is left resumes on
//! the next start.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use swarm::Swarm;
use swarm_dashboard::{NewTask, TaskFactory};

use crate::ServeArgs;
use crate::dashboard::{self, shutdown_signal};
use crate::error::CliError;
use crate::jobs::{JOB_KIND, JobPayload, ShellAgent};

/// How long running jobs may go on after SIGTERM before they are stopped
/// (and run again on the next start).
const STOP_GRACE: Duration = Duration::from_secs(10);

pub(crate) async fn run(args: ServeArgs) -> Result<(), CliError> {
    let cwd = std::env::current_dir().map_err(|e| {
        CliError::Runtime(format!(
            "cannot tell the current directory (submitted jobs run in it): {e}"
        ))
    })?;
    let agents = args.agents as usize;
    let mut builder = Swarm::builder()
        .agents(agents)
        .max_agents(agents)
        .autoscale(false)
        .agent_factory(|_| ShellAgent)
        // The job's own timeout_ms, or none, as in `swarm run`.
        .default_timeout(None)
        .file_store(&args.store);
    if let Some(addr) = args.metrics {
        builder = builder.metrics(addr);
    }
    let swarm = args.flow.apply(builder).build().await?;
    let recovered = swarm.stats().recovered;
    if recovered > 0 {
        tracing::info!(recovered, "resuming jobs left unfinished in the store");
        eprintln!(
            "resuming {recovered} jobs left unfinished in {}",
            args.store.display()
        );
    }
    let board = dashboard::start(&swarm, args.dashboard, &args.token, Some(job_factory(cwd))).await;
    let board = match board {
        Ok(board) => board,
        Err(e) => {
            let _ = swarm.shutdown(Duration::from_secs(2)).await;
            return Err(e);
        }
    };
    eprintln!(
        "serving shell jobs: POST {}api/v1/tasks with {{\"kind\": \"job\", \"payload\": {{\"cmd\": \"...\"}}}}; SIGTERM or Ctrl-C stops",
        board.url()
    );
    let signal = shutdown_signal().await;
    tracing::info!(
        signal,
        "stopping: no new job starts; running jobs get a grace period"
    );
    board.shutdown(Duration::from_secs(2)).await;
    let report = swarm.shutdown(STOP_GRACE).await?;
    if report.pending > 0 || report.interrupted > 0 {
        eprintln!(
            "stopped with {} jobs queued and {} interrupted: start again with --store {} to run them",
            report.pending,
            report.interrupted,
            args.store.display()
        );
    }
    Ok(())
}

/// The payload of a submitted job: the jobs file's `cmd` (and, if the
/// request has no `id`, the job's `id`), or the command as a plain string.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobBody {
    cmd: String,
    #[serde(default)]
    id: Option<String>,
}

/// Checks a `POST /api/v1/tasks` of `swarm serve` and builds its job: kind
/// `job`, payload `{"cmd": "..."}` (or `"..."`), run in `cwd`.
fn job_factory(cwd: PathBuf) -> TaskFactory {
    Arc::new(move |mut request: NewTask| {
        if request.kind != JOB_KIND {
            return Err(format!(
                "swarm serve runs shell jobs: the kind must be {JOB_KIND:?}, not {:?}",
                request.kind
            ));
        }
        let body: JobBody = match request.payload.take() {
            serde_json::Value::String(cmd) => JobBody { cmd, id: None },
            serde_json::Value::Null => {
                return Err(
                    "a job needs a payload: {\"cmd\": \"...\"}, the shell command to run".into(),
                );
            }
            other => serde_json::from_value(other).map_err(|e| {
                format!(
                    "malformed job payload ({e}); expected {{\"cmd\": \"...\"}} with an optional id"
                )
            })?,
        };
        if body.cmd.trim().is_empty() {
            return Err("the job's cmd is empty".into());
        }
        if let Some(id) = &body.id {
            if id.trim().is_empty() {
                return Err("the job id is empty".into());
            }
        }
        if request.id.is_none() {
            request.id = body.id;
        }
        let task_id = request.task_id();
        let job_id = request.id.clone().unwrap_or_else(|| task_id.to_string());
        let job = JobPayload {
            id: job_id,
            cmd: body.cmd,
            cwd: Some(cwd.clone()),
        };
        request
            .builder()
            .id(task_id)
            .json(&job)
            .map_err(|e| e.to_string())?
            .build()
            .map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use swarm::{Priority, TaskId};

    fn request(body: serde_json::Value) -> NewTask {
        let mut r = NewTask::parse(body.to_string().as_bytes()).unwrap();
        r.priority = Priority::High;
        r
    }

    #[test]
    fn a_job_request_becomes_the_payload_of_swarm_run() {
        let f = job_factory(PathBuf::from("/work"));
        let task = f(request(serde_json::json!({
            "kind": "job", "id": "build", "payload": {"cmd": "make"}
        })))
        .unwrap();
        assert_eq!(task.id(), TaskId::from_name("build"));
        assert_eq!(task.kind(), JOB_KIND);
        let job: JobPayload = task.payload().to_json().unwrap();
        assert_eq!(
            job,
            JobPayload {
                id: "build".into(),
                cmd: "make".into(),
                cwd: Some(PathBuf::from("/work")),
            }
        );
        // The id may sit in the payload, as in a jobs file.
        let task = f(request(serde_json::json!({
            "kind": "job", "payload": {"cmd": "make", "id": "b2"}
        })))
        .unwrap();
        assert_eq!(task.id(), TaskId::from_name("b2"));
        // A plain string is the command.
        let task = f(request(
            serde_json::json!({"kind": "job", "payload": "echo hi"}),
        ))
        .unwrap();
        let job: JobPayload = task.payload().to_json().unwrap();
        assert_eq!(job.cmd, "echo hi");
        assert_eq!(job.id, task.id().to_string());
    }

    #[test]
    fn other_kinds_and_payloads_are_refused_with_a_reason() {
        let f = job_factory(PathBuf::from("/"));
        for (body, want) in [
            (
                serde_json::json!({"kind": "echo", "payload": "x"}),
                "kind must be",
            ),
            (serde_json::json!({"kind": "job"}), "needs a payload"),
            (
                serde_json::json!({"kind": "job", "payload": {"cmd": " "}}),
                "cmd is empty",
            ),
            (
                serde_json::json!({"kind": "job", "payload": {"run": "x"}}),
                "malformed job payload",
            ),
            (
                serde_json::json!({"kind": "job", "payload": [1]}),
                "malformed job payload",
            ),
        ] {
            let e = f(request(body.clone())).unwrap_err();
            assert!(e.contains(want), "{body}: {e}");
        }
    }
}
