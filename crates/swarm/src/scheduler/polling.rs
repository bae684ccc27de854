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
    /// A task a limit cannot admit now is parked instead and takes no place
    /// in the batch, so a throttled kind does not hold up the others.
    pub(super) fn take_batch(&self, batch: usize) -> Vec<(Queued, Priority)> {
        let mut s = self.sched.lock();
        let mut taken = Vec::with_capacity(batch.min(s.fifo.len()));
        while taken.len() < batch {
            let Some(q) = s.fifo.pop_front() else {
                break;
            };
            let p = q.task.priority();
            self.note_dequeue(&mut s, q.task.id(), p, QueueLocation::Global);
            match self.limit_refusing_start(&s, &q) {
                Some(rule) => self.park(&mut s, rule, q),
                None => taken.push((q, p)),
            }
        }
        taken
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
        let mut taken: VecDeque<(Queued, Priority)> = core.take_batch(batch).into();
        while let Some((queued, _priority)) = taken.pop_front() {
            if core.is_paused() {
                // Paused mid-batch: the rest goes back, in order, for the
                // first tick after the resume.
                let mut back = vec![queued];
                back.extend(taken.drain(..).map(|(q, _)| q));
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
                back.extend(taken.drain(..).map(|(q, _)| q));
                for q in back.into_iter().rev() {
                    core.return_to_fifo(q);
                }
                break;
            };
            let assignment = {
                let mut s = core.sched.lock();
                // A limit that cannot admit it now holds it; the next task
                // of the queue takes its place in the batch.
                if let Some(rule) = core.limit_refusing_start(&s, &queued) {
                    core.park(&mut s, rule, queued);
                    core.pool.release(agent);
                    drop(s);
                    taken.extend(core.take_batch(1));
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
