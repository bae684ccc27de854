//! Running one attempt safely: panics caught, time bounded, duration measured.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use swarm_core::Task;
use swarm_core::event::FailureReason;
use tokio::time::Instant;

use crate::agent::{Agent, TaskOutput};

/// Why one attempt failed, in the words of the events (`task:failed`, `agent:error`).
#[derive(Clone, PartialEq, Eq)]
pub struct AttemptFailure {
    /// Error, permanent error, panic or timeout.
    pub reason: FailureReason,
    /// What went wrong, for humans and for the dead-letter history.
    pub message: String,
}

impl AttemptFailure {
    /// A failure of `reason` with `message`.
    pub fn new(reason: FailureReason, message: impl Into<String>) -> Self {
        AttemptFailure {
            reason,
            message: message.into(),
        }
    }

    /// Whether the failure rules out any further attempt.
    pub fn is_permanent(&self) -> bool {
        self.reason == FailureReason::Permanent
    }
}

impl fmt::Debug for AttemptFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AttemptFailure({}: {:?})",
            self.reason.as_str(),
            self.message
        )
    }
}

impl fmt::Display for AttemptFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.message)
    }
}

/// The outcome of [`run_attempt`]: the result and how long the attempt ran.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptOutcome {
    /// The agent's output, or why there is none.
    pub result: Result<TaskOutput, AttemptFailure>,
    /// Time from the start of the attempt to its end (or to the timeout).
    pub duration: Duration,
}

/// Runs one attempt of `task` on `agent`, safely.
///
/// - A panic inside `execute` is caught and becomes [`FailureReason::Panic`].
/// - If `timeout` is `Some` and the attempt runs longer, its future is dropped
///   and the result is [`FailureReason::Timeout`]. The timer exists only while
///   the attempt runs; an attempt that finishes on its first poll never
///   registers it.
/// - An [`ExecuteError`](crate::ExecuteError) becomes [`FailureReason::Error`]
///   or [`FailureReason::Permanent`].
///
/// Durations use tokio's clock, so they are exact under a paused test clock.
/// Needs a tokio runtime with the time driver when `timeout` is `Some`.
pub async fn run_attempt<A: Agent>(
    agent: &A,
    task: &Task,
    timeout: Option<Duration>,
) -> AttemptOutcome {
    let start = Instant::now();
    let guarded = AssertUnwindSafe(agent.execute(task)).catch_unwind();
    // A limit too large to add to the clock (`Duration::MAX`) is no limit.
    let deadline = timeout.and_then(|limit| start.checked_add(limit).map(|d| (d, limit)));
    let caught = match deadline {
        // Deadline from `start`: one clock read fewer than `timeout(limit, ..)`.
        Some((deadline, limit)) => {
            // Pinned in an Option so that a timed-out attempt is dropped here,
            // under `catch_unwind`: a future that panics while being dropped
            // must not unwind through the caller.
            let mut slot = std::pin::pin!(Some(guarded));
            let polled = tokio::time::timeout_at(
                deadline,
                std::future::poll_fn(|cx| match slot.as_mut().as_pin_mut() {
                    Some(attempt) => attempt.poll(cx),
                    None => std::task::Poll::Pending,
                }),
            )
            .await;
            match polled {
                Ok(caught) => caught,
                Err(_elapsed) => {
                    let dropped = std::panic::catch_unwind(AssertUnwindSafe(|| slot.set(None)));
                    let mut message = format!("attempt timed out after {limit:?}");
                    if let Err(panic) = dropped {
                        message.push_str(&format!(
                            " and panicked while being stopped: {}",
                            panic_message(&*panic)
                        ));
                    }
                    return AttemptOutcome {
                        result: Err(AttemptFailure::new(FailureReason::Timeout, message)),
                        duration: start.elapsed(),
                    };
                }
            }
        }
        None => guarded.await,
    };
    let result = match caught {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(error)) => {
            let reason = if error.is_permanent() {
                FailureReason::Permanent
            } else {
                FailureReason::Error
            };
            Err(AttemptFailure::new(reason, error.message()))
        }
        Err(panic) => Err(AttemptFailure::new(
            FailureReason::Panic,
            format!("agent panicked: {}", panic_message(&*panic)),
        )),
    };
    AttemptOutcome {
        result,
        duration: start.elapsed(),
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "a non-string panic payload"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExecuteError;

    struct Scripted(fn() -> Result<TaskOutput, ExecuteError>, Duration);

    impl Agent for Scripted {
        async fn execute(&self, _task: &Task) -> Result<TaskOutput, ExecuteError> {
            tokio::time::sleep(self.1).await;
            (self.0)()
        }
    }

    fn task() -> Task {
        Task::builder("t").build().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn success_reports_output_and_exact_duration() {
        let agent = Scripted(|| Ok("done".into()), Duration::from_millis(250));
        let out = run_attempt(&agent, &task(), Some(Duration::from_secs(1))).await;
        assert_eq!(out.result, Ok("done".into()));
        assert_eq!(out.duration, Duration::from_millis(250));
    }

    #[tokio::test(start_paused = true)]
    async fn panic_becomes_a_failure() {
        let agent = Scripted(|| panic!("boom"), Duration::ZERO);
        let out = run_attempt(&agent, &task(), None).await;
        let failure = out.result.unwrap_err();
        assert_eq!(failure.reason, FailureReason::Panic);
        assert_eq!(failure.message, "agent panicked: boom");
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_drops_the_attempt_at_the_limit() {
        let agent = Scripted(|| Ok(TaskOutput::empty()), Duration::from_secs(3600));
        let out = run_attempt(&agent, &task(), Some(Duration::from_secs(2))).await;
        assert_eq!(out.result.unwrap_err().reason, FailureReason::Timeout);
        assert_eq!(out.duration, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn errors_keep_their_kind() {
        let retry = Scripted(|| Err(ExecuteError::retryable("503")), Duration::ZERO);
        let perm = Scripted(|| Err(ExecuteError::permanent("400")), Duration::ZERO);
        let a = run_attempt(&retry, &task(), None).await.result.unwrap_err();
        let b = run_attempt(&perm, &task(), None).await.result.unwrap_err();
        assert_eq!(
            (a.reason, a.message.as_str()),
            (FailureReason::Error, "503")
        );
        assert_eq!(
            (b.reason, b.message.as_str()),
            (FailureReason::Permanent, "400")
        );
        assert!(b.is_permanent() && !a.is_permanent());
    }
}
