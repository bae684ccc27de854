//! Delayed tasks (`TaskBuilder::delay`, `TaskBuilder::not_before`), and
//! tasks waiting for a retry back-off (the same list and timer; told apart
//! only for the counts).
//!
//! A task whose due time lies ahead is accepted and journaled like any other,
//! then waits here, outside the runnable queues, ordered by due time (then
//! arrival). One tokio timer is armed for the earliest due time: re-armed when
//! an earlier task arrives or the earliest is cancelled, dropped when nothing
//! is delayed, so an idle swarm with nothing due never wakes. When it fires,
//! every task now due is placed as if it had just been submitted (event mode:
//! an idle agent, its affine agent's queue or the global queue; polling
//! mode: its FIFO).
//!
//! Due times are wall-clock (`Task::not_before`, a `Timestamp`) so that they
//! survive a restart; each is turned into a monotonic deadline once, when the
//! task arrives here, rounded up to the next whole millisecond (tokio's timer
//! resolution), so a task never starts before its wall-clock due time unless
//! the system clock is stepped back while it waits.

use std::collections::BTreeMap;

use swarm_core::Timestamp;

use super::super::*;

/// Tasks waiting for their due time, and the one timer that wakes for the earliest.
#[derive(Default)]
pub(crate) struct Delays {
    by_due: BTreeMap<(Instant, u64), Queued>,
    due_of: IdMap<TaskId, (Instant, u64)>,
    /// Which of them wait for a retry back-off rather than a due time.
    retries: IdSet<TaskId>,
    timer: Option<Timer>,
    /// Tells a superseded timer (aborted while it waited for the lock) apart.
    generation: u64,
}

struct Timer {
    at: Instant,
    generation: u64,
    handle: JoinHandle<()>,
}

impl Delays {
    /// Tasks waiting for their due time (not counting retries).
    pub(crate) fn len(&self) -> usize {
        self.by_due.len() - self.retries.len()
    }

    /// Tasks waiting for a retry back-off.
    pub(crate) fn retrying_len(&self) -> usize {
        self.retries.len()
    }

    /// The tasks waiting for a retry back-off.
    pub(crate) fn retrying(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.retries.iter().copied()
    }

    fn earliest(&self) -> Option<Instant> {
        self.by_due.keys().next().map(|(at, _)| *at)
    }

    /// Stops the timer and forgets every delayed task (shutdown; they stay
    /// pending in the log and keep their due time for the next start).
    pub(crate) fn clear(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.handle.abort();
        }
        self.by_due.clear();
        self.due_of.clear();
        self.retries.clear();
    }
}

/// The monotonic deadline for a wall-clock due time, if it lies ahead.
pub(in crate::scheduler) fn deadline(not_before: Timestamp) -> Option<Instant> {
    let ahead = not_before.saturating_duration_since(Timestamp::now());
    if ahead.is_zero() {
        return None;
    }
    // Round up to whole milliseconds: never early, and tokio's timer does
    // not resolve finer anyway.
    let millis = ahead.as_micros().div_ceil(1000);
    let ahead = Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX));
    Instant::now().checked_add(ahead)
}

impl Core {
    /// Holds `queued` until its due time if that lies ahead; otherwise hands
    /// it back to be queued now.
    pub(in crate::scheduler) fn hold_if_delayed(
        &self,
        s: &mut Sched,
        queued: Queued,
    ) -> Option<Queued> {
        let Some(at) = queued.task.not_before().and_then(deadline) else {
            return Some(queued);
        };
        let key = (at, queued.order);
        s.delays.due_of.insert(queued.task.id(), key);
        s.delays.by_due.insert(key, queued);
        self.arm_delay_timer(s);
        None
    }

    /// Holds a task whose attempt failed until its back-off has passed (one
    /// timer for every wait, as for delays); then it is placed as if just
    /// submitted.
    pub(in crate::scheduler) fn hold_for_retry(
        &self,
        s: &mut Sched,
        queued: Queued,
        after: Duration,
    ) {
        // A back-off too long to represent waits as good as for ever.
        let at = Instant::now()
            .checked_add(after)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365 * 30));
        self.hold_for_retry_until(s, queued, at);
    }

    /// Holds a recovered task until the retry due time the log kept
    /// (`TaskRecord::retry_at`: the failure's stored time plus its back-off)
    /// if that lies ahead, so a restart does not cut the back-off short;
    /// otherwise hands it back to be queued now. The wall-clock time becomes
    /// a deadline as a delay's does: rounded up, never early.
    pub(in crate::scheduler) fn hold_for_recovered_retry(
        &self,
        s: &mut Sched,
        queued: Queued,
        due: Timestamp,
    ) -> Option<Queued> {
        let Some(at) = deadline(due) else {
            return Some(queued);
        };
        self.hold_for_retry_until(s, queued, at);
        None
    }

    fn hold_for_retry_until(&self, s: &mut Sched, queued: Queued, at: Instant) {
        let key = (at, queued.order);
        s.delays.retries.insert(queued.task.id());
        s.delays.due_of.insert(queued.task.id(), key);
        s.delays.by_due.insert(key, queued);
        self.arm_delay_timer(s);
    }

    /// Removes a delayed task or one waiting for its retry (cancelled); true
    /// if it was either.
    pub(in crate::scheduler) fn remove_delayed(&self, s: &mut Sched, task_id: TaskId) -> bool {
        let Some(key) = s.delays.due_of.remove(&task_id) else {
            return false;
        };
        s.delays.by_due.remove(&key);
        s.delays.retries.remove(&task_id);
        self.arm_delay_timer(s);
        true
    }

    /// Makes the one timer match the earliest due time: none when nothing is
    /// delayed, untouched when it already fires then.
    fn arm_delay_timer(&self, s: &mut Sched) {
        let earliest = s.delays.earliest();
        if let (Some(at), Some(timer)) = (earliest, &s.delays.timer) {
            if timer.at == at {
                return;
            }
        }
        if let Some(timer) = s.delays.timer.take() {
            timer.handle.abort();
        }
        let Some(at) = earliest else {
            return;
        };
        s.delays.generation += 1;
        let generation = s.delays.generation;
        let core = self.me.clone();
        let handle = self.runtime.spawn(async move {
            tokio::time::sleep_until(at).await;
            if let Some(core) = core.upgrade() {
                core.delays_due(generation);
            }
        });
        s.delays.timer = Some(Timer {
            at,
            generation,
            handle,
        });
    }

    /// The timer fired: every task now due enters the queues, in due order
    /// (then arrival); the timer is re-armed for the next one.
    fn delays_due(self: &Arc<Self>, generation: u64) {
        Counters::bump(&self.counters.wakeups);
        Counters::bump(&self.counters.delay_wakeups);
        let mut s = self.sched.lock();
        if s.delays.timer.as_ref().map(|t| t.generation) != Some(generation) {
            return; // superseded while it waited for the lock
        }
        s.delays.timer = None;
        let now = Instant::now();
        while let Some(entry) = s.delays.by_due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let mut queued = entry.remove();
            s.delays.due_of.remove(&queued.task.id());
            s.delays.retries.remove(&queued.task.id());
            // Its queue wait starts now: the delay (or back-off) was asked for.
            queued.since = s.stamp(now);
            // As if submitted now: affinity and prefetch still apply.
            self.enqueue_new(&mut s, queued);
        }
        self.arm_delay_timer(&mut s);
    }
}
