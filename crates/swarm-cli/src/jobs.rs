//! The jobs file of `swarm run` and the agent that runs a job's command.
//!
//! A jobs file has one JSON object per line:
//! `{"id": "build", "cmd": "make", "priority": "high", "max_attempts": 3, "timeout_ms": 60000}`;
//! `id` and `cmd` are required. Flow control: `"key"` (a fairness and limit
//! group such as a tenant), `"cost"` (units a rate limit charges, default 1)
//! and `"delay_ms"` (not started sooner than this after the job is first
//! submitted; the due time is kept in the log, so a resumed run keeps it). Blank lines are skipped. The whole file is
//! checked before anything runs: the first malformed line, unknown priority
//! or duplicate id refuses it, naming the line.
//!
//! A job runs with `sh -c` in the directory `swarm run` was started from when
//! the job was first submitted: that directory is in the job's payload, so a
//! resume from elsewhere runs the command in the same place. Payloads written
//! before the directory was recorded have none; such jobs run in the current
//! directory of the resuming `swarm run`.

mod line;
mod tail;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use swarm::{Agent, ExecuteError, Task, TaskOutput};
// The job-line parser (`line`) names these through `super::`, so that the
// fuzz crate can include it with swarm-core's types.
use swarm::{Priority, TaskId};

use crate::error::CliError;
pub(crate) use line::Job;
use tail::{Tail, read_tail};

/// The task kind of jobs in the event log.
pub(crate) const JOB_KIND: &str = "job";

/// Bytes of a job's stdout kept as its output, and of its stderr kept in a
/// failed attempt's error.
const TAIL_BYTES: usize = 2048;

/// The payload of a job's task: what the log needs to run it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JobPayload {
    /// The job's id from the file.
    pub(crate) id: String,
    /// The shell command.
    pub(crate) cmd: String,
    /// The directory the command runs in: where `swarm run` was started when
    /// the job was first submitted. Absent in logs written before it was
    /// recorded; such a job runs in the current directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cwd: Option<PathBuf>,
}

impl JobPayload {
    /// Whether two payloads describe the same job (id and command), wherever
    /// they were submitted from.
    pub(crate) fn same_job(&self, other: &JobPayload) -> bool {
        self.id == other.id && self.cmd == other.cmd
    }
}

impl Job {
    /// The task that runs this job in `cwd`.
    pub(crate) fn to_task(&self, cwd: &Path) -> Result<Task, CliError> {
        let mut builder = Task::builder(JOB_KIND)
            .id(self.task_id)
            .priority(self.priority)
            .json(&JobPayload {
                id: self.id.clone(),
                cmd: self.cmd.clone(),
                cwd: Some(cwd.to_path_buf()),
            })
            .map_err(|e| CliError::BadInput(format!("line {}: {e}", self.line)))?;
        if let Some(max) = self.max_attempts {
            builder = builder.max_attempts(max);
        }
        if let Some(timeout) = self.timeout {
            builder = builder.timeout(timeout);
        }
        if let Some(key) = &self.key {
            builder = builder.key(key.as_str());
        }
        if let Some(cost) = self.cost {
            builder = builder.cost(cost);
        }
        if let Some(delay) = self.delay {
            builder = builder.delay(delay);
        }
        builder
            .build()
            .map_err(|e| CliError::BadInput(format!("line {}: {e}", self.line)))
    }
}

/// Parses and checks a whole jobs file; `name` is used in messages.
pub(crate) fn parse_jobs(name: &str, text: &str) -> Result<Vec<Job>, CliError> {
    line::parse_jobs(name, text).map_err(CliError::BadInput)
}

/// Runs a job's `cmd` with `sh -c`: exit status 0 completes the attempt,
/// anything else fails it (retryable, with the status and the stderr tail).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ShellAgent;

impl Agent for ShellAgent {
    async fn execute(&self, task: &Task) -> Result<TaskOutput, ExecuteError> {
        let job: JobPayload = task.payload().to_json().map_err(|e| {
            ExecuteError::permanent(format!("task {} is not a swarm run job: {e}", task.id()))
        })?;
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(&job.cmd)
            .env("SWARM_JOB_ID", &job.id)
            .env("SWARM_JOB_ATTEMPT", task.attempt().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A timed-out or cancelled attempt is dropped: kill the shell then,
            // and (through its process group) whatever it started.
            .kill_on_drop(true)
            .process_group(0);
        if let Some(dir) = &job.cwd {
            command.current_dir(dir);
        }
        let mut child = command.spawn().map_err(|e| {
            ExecuteError::retryable(match &job.cwd {
                Some(dir) => format!(
                    "job {:?}: could not start `sh` in {}: {e}",
                    job.id,
                    dir.display()
                ),
                None => format!("job {:?}: could not start `sh`: {e}", job.id),
            })
        })?;
        let mut group = GroupKill(child.id());
        // Both pipes are drained while the shell runs (a job that fills one
        // must not block), each into a tail of bounded size.
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let (stdout, stderr, status) =
            tokio::join!(read_pipe(stdout), read_pipe(stderr), child.wait());
        let status = status.map_err(|e| {
            ExecuteError::retryable(format!("job {:?}: could not wait for `sh`: {e}", job.id))
        })?;
        // The shell was reaped: its group id may be reused from now on.
        group.0 = None;
        let read_failed = |e: std::io::Error| {
            ExecuteError::retryable(format!("job {:?}: could not read its output: {e}", job.id))
        };
        let (stdout, stderr) = (stdout.map_err(read_failed)?, stderr.map_err(read_failed)?);
        if status.success() {
            return Ok(TaskOutput::from(stdout.to_string_lossy()));
        }
        let status = match status.code() {
            Some(code) => format!("exit status {code}"),
            None => "killed by a signal".to_owned(),
        };
        let stderr = stderr.to_string_lossy();
        let stderr = stderr.trim();
        Err(ExecuteError::retryable(if stderr.is_empty() {
            format!("job {:?} failed: {status}", job.id)
        } else {
            format!("job {:?} failed: {status}: {stderr}", job.id)
        }))
    }
}

/// The last [`TAIL_BYTES`] of a child's pipe (nothing if it was not piped).
async fn read_pipe<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>) -> std::io::Result<Tail> {
    match pipe {
        Some(pipe) => read_tail(pipe, TAIL_BYTES).await,
        None => Ok(Tail::new(TAIL_BYTES)),
    }
}

/// Kills a job's process group when its attempt is dropped before the shell
/// exits (a timeout, a cancel, shutdown), so that `sleep 60; make` does not
/// keep running behind the dropped attempt. The shell itself is killed by
/// `kill_on_drop`; until it is reaped its pid, the group id, is not reused.
struct GroupKill(Option<u32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // `kill` as a command keeps this crate free of `unsafe`.
            let killed = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("kill -KILL -{pgid} 2>/dev/null"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            tracing::debug!(
                pgid,
                ?killed,
                "killed the process group of a dropped job attempt"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use swarm::{Priority, TaskId};

    use super::*;

    #[test]
    fn parses_full_and_minimal_lines() {
        let text = "{\"id\":\"a\",\"cmd\":\"true\"}\n\n{\"id\":\"b\",\"cmd\":\"false\",\"priority\":\"HIGH\",\"max_attempts\":2,\"timeout_ms\":5}\n";
        let jobs = parse_jobs("jobs", text).unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].priority, Priority::Normal);
        assert_eq!(jobs[1].line, 3);
        assert_eq!(jobs[1].priority, Priority::High);
        assert_eq!(jobs[1].max_attempts, Some(2));
        assert_eq!(jobs[1].timeout, Some(Duration::from_millis(5)));
        let task = jobs[1].to_task(Path::new("/somewhere")).unwrap();
        assert_eq!(task.id(), TaskId::from_name("b"));
        assert_eq!(task.max_attempts(), Some(2));
        let payload: JobPayload = task.payload().to_json().unwrap();
        assert_eq!(payload.cmd, "false");
        assert_eq!(payload.cwd.as_deref(), Some(Path::new("/somewhere")));
    }

    #[tokio::test]
    async fn a_payload_without_a_directory_runs_in_the_current_one() {
        // As written by `swarm run` before the directory was recorded.
        let task = Task::builder(JOB_KIND)
            .payload(br#"{"id":"old","cmd":"pwd -P"}"#.to_vec())
            .build()
            .unwrap();
        let payload: JobPayload = task.payload().to_json().unwrap();
        assert_eq!(payload.cwd, None);
        let output = ShellAgent.execute(&task).await.unwrap();
        let here = std::env::current_dir().unwrap().canonicalize().unwrap();
        assert_eq!(
            output.as_str(),
            Some(format!("{}\n", here.display()).as_str())
        );

        let tmp = tempfile::tempdir().unwrap();
        let there = tmp.path().canonicalize().unwrap();
        let job = &parse_jobs("jobs", "{\"id\":\"new\",\"cmd\":\"pwd -P\"}").unwrap()[0];
        let output = ShellAgent
            .execute(&job.to_task(&there).unwrap())
            .await
            .unwrap();
        assert_eq!(
            output.as_str(),
            Some(format!("{}\n", there.display()).as_str())
        );
    }

    #[test]
    fn the_longest_timeout_the_log_holds_is_kept_exactly() {
        let line = format!(
            "{{\"id\":\"a\",\"cmd\":\"true\",\"timeout_ms\":{}}}",
            line::MAX_TIMEOUT_MS
        );
        let job = &parse_jobs("jobs", &line).unwrap()[0];
        let task = job.to_task(Path::new("/")).unwrap();
        let event: swarm::Event = swarm::event::TaskCreated { task }.into();
        let back: swarm::Event = json_roundtrip(&event);
        let swarm::Event::TaskCreated(created) = back else {
            panic!("{back:?}")
        };
        assert_eq!(
            created.task.timeout(),
            Some(Duration::from_millis(line::MAX_TIMEOUT_MS))
        );
    }

    fn json_roundtrip(event: &swarm::Event) -> swarm::Event {
        serde_json::from_str(&serde_json::to_string(event).unwrap()).unwrap()
    }

    #[test]
    fn names_the_bad_line() {
        let ok = "{\"id\":\"a\",\"cmd\":\"true\"}\n";
        for (bad, needle) in [
            ("{\"id\":\"b\"", "line 2: malformed"),
            (
                "{\"id\":\"b\",\"cmd\":\"x\",\"priority\":\"urgent\"}",
                "line 2: unknown priority",
            ),
            (
                "{\"id\":\"a\",\"cmd\":\"x\"}",
                "line 2: duplicate job id \"a\" (first on line 1)",
            ),
            (
                "{\"id\":\"b\",\"cmd\":\"x\",\"oops\":1}",
                "line 2: malformed",
            ),
            (
                "{\"id\":\"b\",\"cmd\":\"x\",\"max_attempts\":0}",
                "line 2: max_attempts",
            ),
            ("{\"id\":\"\",\"cmd\":\"x\"}", "line 2: the job id is empty"),
        ] {
            let e = parse_jobs("jobs", &format!("{ok}{bad}\n")).unwrap_err();
            assert!(e.to_string().contains(needle), "{bad}: {e}");
            assert!(matches!(e, CliError::BadInput(_)));
        }
    }
}
