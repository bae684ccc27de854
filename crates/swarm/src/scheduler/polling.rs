//! The polling baseline (`SchedulerMode::Polling`): the design the event
//! mode replaces, kept for `cargo xtask bench`. One loop wakes every
//! `interval`, takes up to `batch` tasks FIFO (no priority) and runs them
//! one after another. It shares admission, attempts, cancellation, shutdown,
//! the agents, the store and the metrics with the event mode; only how work
//! reaches agents differs, decided once in `Core::enqueue`.

use super::*;

impl Core {
    pub(super) fn push_fifo(&self, s: &mut Sched, queued: Queued) {
        let task_id = queued.task.id();
        let priority = queued.task.priority();
        s.fifo.push_back(queued);
        self.after_push(s, task_id, priority, QueueLocation::Global);
    }

    /// Takes up to `batch` tasks in FIFO order (polling mode).
    pub(super) fn take_batch(&self, batch: usize) -> Vec<(Queued, Priority)> {
        let mut s = self.sched.lock();
        let n = batch.min(s.fifo.len());
        let taken: Vec<Queued> = s.fifo.drain(..n).collect();
        taken
            .into_iter()
            .map(|q| {
                let p = q.task.priority();
                self.note_dequeue(&mut s, q.task.id(), p, QueueLocation::Global);
                (q, p)
            })
            .collect()
    }

    /// Puts a task the polling loop took back at the front of its queue (no
    /// agent could take it now).
    pub(super) fn return_to_fifo(&self, queued: Queued) {
        let mut s = self.sched.lock();
        let (task_id, priority) = (queued.task.id(), queued.task.priority());
        s.fifo.push_front(queued);
        self.after_push(&mut s, task_id, priority, QueueLocation::Global);
    }
}

/// The polling baseline: wake every `interval`, take up to `batch` tasks FIFO,
/// run them one after another.
pub(crate) async fn polling_loop(core: Arc<Core>, interval: Duration, batch: usize) {
    let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        Counters::bump(&core.counters.wakeups);
        if core.draining.load(Ordering::Acquire) {
            return;
        }
        if core.is_paused() {
            continue;
        }
        let mut taken = core.take_batch(batch).into_iter();
        while let Some((queued, _priority)) = taken.next() {
            if core.is_paused() {
                // Paused mid-batch: the rest goes back, in order, for the
                // first tick after the resume.
                let mut back = vec![queued];
                back.extend(taken.by_ref().map(|(q, _)| q));
                for q in back.into_iter().rev() {
                    core.return_to_fifo(q);
                }
                break;
            }
            if core.draining.load(Ordering::Acquire) {
                // Shutdown began mid-batch: the rest stays pending in the log
                // (dequeued, never started) and resumes on the next start.
                break;
            }
            let kind = queued.task.kind();
            let claimed = if core.pool.has_capabilities() {
                core.pool.claim_idle_for(kind)
            } else {
                core.pool.claim_idle()
            };
            let Some(agent) = claimed else {
                // No agent can take it now (all being replaced, or none of
                // this kind idle): it and the rest of the batch wait for the
                // next tick, in order.
                let mut back = vec![queued];
                back.extend(taken.by_ref().map(|(q, _)| q));
                for q in back.into_iter().rev() {
                    core.return_to_fifo(q);
                }
                break;
            };
            let assignment = {
                let mut s = core.sched.lock();
                // A limit that cannot admit it now holds it; the batch goes on.
                if let Some(rule) = core.limit_refusing_start(&s, &queued) {
                    core.park(&mut s, rule, queued);
                    core.pool.release(agent);
                    continue;
                }
                core.assign(&mut s, agent, queued, None)
            };
            let Some(attempt) = core.run_guarded(agent, assignment).await else {
                continue;
            };
            let _ = core.finish(agent, attempt);
        }
    }
}
