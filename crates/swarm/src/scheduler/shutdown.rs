//! Shutdown: stop accepting, let attempts finish within the deadline, then
//! interrupt the rest (uncharged); and what a dropped swarm does.

use super::*;

impl Core {
    /// Stops accepting tasks and starting queued ones. Returns how many are queued.
    pub(crate) fn stop_accepting(&self) -> u64 {
        let s = self.sched.lock();
        self.accepting.store(false, Ordering::Release);
        self.draining.store(true, Ordering::Release);
        (s.global.len()
            + s.fifo.len()
            + self.local.total_len()
            + s.delays.retrying_len()
            + s.delays.len()
            + s.limits.len()) as u64
    }

    pub(crate) fn running_count(&self) -> usize {
        self.sched.lock().running.len()
    }

    /// Waits until no attempt runs, or `deadline` passes.
    pub(crate) async fn wait_idle(&self, deadline: Instant) -> bool {
        loop {
            let ended = self.attempt_ended.notified();
            if self.running_count() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                return self.running_count() == 0;
            }
        }
    }

    /// Drops the attempts still running (each records `task:interrupted` as
    /// it unwinds: pending again, uncharged), cancels retry timers and
    /// stops the delay timer and resolves every waiter as interrupted.
    pub(crate) fn interrupt_all(&self) {
        let mut s = self.sched.lock();
        for running in s.running.values_mut() {
            running.stop = Some(Stop::Shutdown);
            running.abort.abort();
        }
        for task_id in s.delays.retrying() {
            self.pool.forget_history(task_id);
        }
        // Delayed tasks stay pending in the log with their due time, and
        // tasks a limit holds stay pending too.
        s.delays.clear();
        s.limits.clear();
        let Sched { live, running, .. } = &mut *s;
        live.retain(|id, waiter| {
            if running.contains_key(id) {
                return true;
            }
            if let Some(w) = waiter.take() {
                let _ = w.send(TaskOutcome::Interrupted);
            }
            false
        });
        self.inboxes.lock().clear();
    }

    /// The swarm was dropped without a shutdown: stop every agent loop (their
    /// running attempts are dropped with them), every retry timer, and start
    /// nothing more. Waiters resolve as interrupted when the core goes away.
    pub(crate) fn abandon(&self) {
        self.stopped.store(true, Ordering::Release);
        self.accepting.store(false, Ordering::Release);
        self.draining.store(true, Ordering::Release);
        let loops: Vec<tokio::task::AbortHandle> = self
            .inboxes
            .lock()
            .drain()
            .filter_map(|(_, inbox)| inbox.agent_loop)
            .collect();
        for handle in loops {
            handle.abort();
        }
        let mut s = self.sched.lock();
        s.delays.clear();
        s.limits.clear();
        for (_, waiter) in s.live.drain() {
            if let Some(w) = waiter {
                let _ = w.send(TaskOutcome::Interrupted);
            }
        }
    }
}
