//! Retries: how many attempts, how long to wait between them (exponential
//! back-off with full jitter), and timers that exist only while a task waits.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::RngCore;
use swarm_core::Task;
use tokio::task::JoinHandle;

use crate::attempt::AttemptFailure;
use swarm_core::rng::unit_f64;

/// The default number of attempts of a task (the first one included).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// When and how often a failed task is tried again.
///
/// The wait before retry `n` (after the `n`-th attempt failed) is drawn
/// uniformly from `[0, min(cap, base × 2^(n-1))]` ("full jitter"), which
/// spreads retries of many tasks that failed together.
///
/// ```
/// use std::time::Duration;
/// use swarm_agents::{RetryPolicy, SplitMix64};
///
/// let policy = RetryPolicy::default();
/// let mut rng = SplitMix64::new(7);
/// let wait = policy.delay(2, &mut rng);
/// assert!(wait <= policy.ceiling(2));
/// assert_eq!(policy.ceiling(2), Duration::from_millis(200));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per task, the first included (default 3). A task's own
    /// [`Task::max_attempts`] overrides it. At least 1.
    pub max_attempts: u32,
    /// The back-off ceiling after the first failure (default 100 ms).
    pub base: Duration,
    /// The largest back-off (default 30 s).
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(30),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again once this back-off has passed.
    RetryAfter(Duration),
    /// Give up: the task goes to the dead letters.
    DeadLetter,
}

impl RetryPolicy {
    /// The upper bound of the back-off after the `attempt`-th failure:
    /// `min(cap, base × 2^(attempt-1))` (attempt 0 counts as 1).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(63);
        let factor = 1u64 << doublings;
        let nanos = u64::try_from(self.base.as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_mul(factor);
        Duration::from_nanos(nanos).min(self.cap)
    }

    /// The back-off after the `attempt`-th failure: uniform in
    /// `[0, ceiling(attempt)]`, drawn from `rng`, in whole milliseconds
    /// (tokio's timer resolution, so the wait is exactly the delay announced
    /// in `task:failed`).
    pub fn delay<R: RngCore + ?Sized>(&self, attempt: u32, rng: &mut R) -> Duration {
        let ceiling_ms = u64::try_from(self.ceiling(attempt).as_millis()).unwrap_or(u64::MAX);
        // Uniform over the ceiling_ms + 1 whole values 0..=ceiling_ms.
        let span = ceiling_ms.saturating_add(1) as f64;
        let ms = ((span * unit_f64(rng.next_u64())) as u64).min(ceiling_ms);
        Duration::from_millis(ms)
    }

    /// How many attempts `task` gets: its own bound, or this policy's.
    pub fn max_attempts_for(&self, task: &Task) -> u32 {
        task.max_attempts().unwrap_or(self.max_attempts).max(1)
    }

    /// What to do after `task`'s current attempt ([`Task::attempt`]) failed
    /// with `failure`: dead-letter it if the failure is permanent or no
    /// attempt is left, otherwise retry after a jittered back-off. Timeouts
    /// and panics take the same back-off as errors.
    pub fn decide<R: RngCore + ?Sized>(
        &self,
        task: &Task,
        failure: &AttemptFailure,
        rng: &mut R,
    ) -> RetryDecision {
        let attempt = task.attempt();
        if failure.is_permanent() || attempt >= self.max_attempts_for(task) {
            RetryDecision::DeadLetter
        } else {
            RetryDecision::RetryAfter(self.delay(attempt, rng))
        }
    }
}

/// Waits `delay`, then hands `task` back: a timer that exists only while the
/// task waits. Cancel the wait by dropping the future.
pub async fn retry_after(delay: Duration, task: Task) -> Task {
    tokio::time::sleep(delay).await;
    task
}

/// Calls `on_due(task)` once `delay` has passed, from a spawned tokio task
/// that does nothing but sleep (no polling). [`RetryHandle::cancel`] stops
/// the wait and hands the task back.
///
/// Must be called inside a tokio runtime with the time driver.
pub fn schedule_retry<F>(delay: Duration, task: Task, on_due: F) -> RetryHandle
where
    F: FnOnce(Task) + Send + 'static,
{
    let slot = Arc::new(Mutex::new(Some(task)));
    let waiting = Arc::clone(&slot);
    let join = tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        // Taken under the lock, so `cancel` and the timer never both get it.
        let task = waiting.lock().take();
        if let Some(task) = task {
            on_due(task);
        }
    });
    RetryHandle { slot, join }
}

/// A retry waiting for its back-off, from [`schedule_retry`].
///
/// Dropping the handle does not cancel the retry.
#[derive(Debug)]
pub struct RetryHandle {
    slot: Arc<Mutex<Option<Task>>>,
    join: JoinHandle<()>,
}

impl RetryHandle {
    /// Stops the wait. Returns the task if it was still waiting, `None` if it
    /// was already handed to `on_due`.
    pub fn cancel(self) -> Option<Task> {
        let task = self.slot.lock().take();
        self.join.abort();
        task
    }

    /// Whether the task is still waiting.
    pub fn is_waiting(&self) -> bool {
        self.slot.lock().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SplitMix64;
    use swarm_core::event::FailureReason;

    fn failed(reason: FailureReason) -> AttemptFailure {
        AttemptFailure::new(reason, "x")
    }

    fn task_at(attempt: u32, max: Option<u32>) -> Task {
        let mut b = Task::builder("k");
        if let Some(m) = max {
            b = b.max_attempts(m);
        }
        let mut t = b.build().unwrap();
        t.set_attempt(attempt);
        t
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let p = RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(500),
        };
        let got: Vec<_> = (1..=5).map(|a| p.ceiling(a).as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 500, 500]);
        assert_eq!(p.ceiling(u32::MAX), Duration::from_millis(500));
    }

    #[test]
    fn decisions_follow_attempts_and_permanence() {
        let p = RetryPolicy::default();
        let mut rng = SplitMix64::new(1);
        assert!(matches!(
            p.decide(&task_at(1, None), &failed(FailureReason::Timeout), &mut rng),
            RetryDecision::RetryAfter(_)
        ));
        assert_eq!(
            p.decide(&task_at(3, None), &failed(FailureReason::Error), &mut rng),
            RetryDecision::DeadLetter
        );
        assert_eq!(
            p.decide(
                &task_at(1, None),
                &failed(FailureReason::Permanent),
                &mut rng
            ),
            RetryDecision::DeadLetter
        );
        // The task's own bound wins over the policy's.
        assert_eq!(
            p.decide(
                &task_at(1, Some(1)),
                &failed(FailureReason::Error),
                &mut rng
            ),
            RetryDecision::DeadLetter
        );
        assert!(matches!(
            p.decide(
                &task_at(4, Some(5)),
                &failed(FailureReason::Panic),
                &mut rng
            ),
            RetryDecision::RetryAfter(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn scheduled_retry_fires_exactly_at_its_delay() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let start = tokio::time::Instant::now();
        let task = task_at(1, None);
        let id = task.id();
        let handle = schedule_retry(Duration::from_millis(700), task, move |t| {
            let _ = tx.send((t.id(), tokio::time::Instant::now()));
        });
        assert!(handle.is_waiting());
        let (got, at) = rx.recv().await.unwrap();
        assert_eq!(got, id);
        assert_eq!(at - start, Duration::from_millis(700));
        assert!(handle.cancel().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_retry_hands_the_task_back_and_never_fires() {
        let fired = Arc::new(Mutex::new(false));
        let flag = Arc::clone(&fired);
        let task = task_at(1, None);
        let id = task.id();
        let handle = schedule_retry(Duration::from_secs(1), task, move |_| *flag.lock() = true);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(handle.cancel().map(|t| t.id()), Some(id));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!*fired.lock());
    }
}
