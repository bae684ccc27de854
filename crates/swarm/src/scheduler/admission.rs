//! Admission: which tasks are accepted (duplicates, the queue bound), and
//! where accepted and recovered tasks enter (a task no agent can run is
//! dead-lettered here).

use swarm_core::Timestamp;

use super::*;

impl Core {
    /// Checks that `tasks` can be accepted and registers them as live, so a
    /// duplicate id is refused. Returns the receivers of their outcomes. A
    /// refusal names the first offending task (a copy; the caller keeps the batch).
    pub(crate) fn admit(
        &self,
        tasks: &[Task],
    ) -> Result<Vec<oneshot::Receiver<TaskOutcome>>, SubmitError> {
        let mut s = self.sched.lock();
        if !self.is_accepting() {
            return Err(SubmitError::ShuttingDown(Box::new(tasks[0].clone())));
        }
        let mut batch = IdSet::with_capacity_and_hasher(tasks.len(), Default::default());
        for task in tasks {
            if !batch.insert(task.id()) || s.live.contains_key(&task.id()) {
                return Err(SubmitError::Duplicate(Box::new(task.clone())));
            }
            if let Some((limit, capacity)) = self.cost_over_limit(&s, task) {
                return Err(SubmitError::ExceedsLimit {
                    task: Box::new(task.clone()),
                    limit,
                    capacity,
                });
            }
        }
        if let Some(bound) = self.config.queue_bound {
            // Delayed and throttled tasks count: they are accepted and
            // waiting to start.
            let queued = self.queued.load(Ordering::Relaxed) + s.delays.len() + s.limits.len();
            if queued + tasks.len() > bound {
                let i = bound.saturating_sub(queued).min(tasks.len() - 1);
                return Err(SubmitError::QueueFull(Box::new(tasks[i].clone())));
            }
        }
        let mut receivers = Vec::with_capacity(tasks.len());
        for task in tasks {
            let (sender, receiver) = oneshot::channel();
            s.live.insert(task.id(), Some(sender));
            receivers.push(receiver);
        }
        Ok(receivers)
    }

    /// Forgets tasks admitted but then not recorded (the store failed).
    pub(crate) fn unadmit(&self, tasks: &[Task]) {
        let mut s = self.sched.lock();
        for task in tasks {
            s.live.remove(&task.id());
        }
    }

    /// Places accepted (recorded) tasks: straight to an idle agent, or into a queue.
    pub(crate) fn place(self: &Arc<Self>, tasks: Vec<Task>) {
        let now = Instant::now();
        let mut s = self.sched.lock();
        for task in tasks {
            if !self.pool.any_can_run(task.kind()) {
                self.dead_letter_unrunnable(&mut s, task);
                continue;
            }
            let queued = s.queued(task, now);
            if let Some(queued) = self.hold_if_delayed(&mut s, queued) {
                self.enqueue_new(&mut s, queued);
            }
        }
    }

    /// Re-queues recovered tasks (they keep their attempt counts), in the
    /// order given (most urgent first, then oldest). A task given a retry
    /// due time (its back-off was under way at the stop) waits for it.
    pub(crate) fn recover(self: &Arc<Self>, tasks: Vec<(Task, Option<Timestamp>)>) {
        let now = Instant::now();
        let mut s = self.sched.lock();
        for (task, retry_at) in tasks {
            s.live.insert(task.id(), None);
            Counters::bump(&self.counters.recovered);
            if !self.pool.any_can_run(task.kind()) {
                self.dead_letter_unrunnable(&mut s, task);
                continue;
            }
            // Limits may have changed since it was accepted: one its cost can
            // never fit would hold it for ever.
            if let Some((limit, capacity)) = self.cost_over_limit(&s, &task) {
                let reason = format!(
                    "its cost ({}) is over the size of {limit} ({capacity}), so it could never start: raise the burst of that rate",
                    task.cost()
                );
                self.dead_letter_with(&mut s, task, reason);
                continue;
            }
            let queued = s.queued(task, now);
            // A retry keeps its back-off, a delayed task its due time,
            // across the restart.
            let queued = match retry_at {
                Some(due) => self.hold_for_recovered_retry(&mut s, queued, due),
                None => Some(queued),
            };
            if let Some(queued) = queued.and_then(|q| self.hold_if_delayed(&mut s, q)) {
                self.requeue(&mut s, queued);
            }
        }
    }

    /// A task whose kind no agent of the pool can run: dead-lettered at once,
    /// with a reason that says so (it would otherwise wait for ever).
    pub(super) fn dead_letter_unrunnable(&self, s: &mut Sched, task: Task) {
        let reason = format!(
            "no agent of the pool can run tasks of kind {:?}: add an agent with that capability or fix the kind",
            task.kind()
        );
        self.dead_letter_with(s, task, reason);
    }

    /// Dead-letters a task that can never start, for `reason`.
    fn dead_letter_with(&self, s: &mut Sched, task: Task, reason: String) {
        let mut errors = self.pool.forget_history(task.id());
        errors.push(reason);
        self.bus.emit(TaskDeadLettered {
            task_id: task.id(),
            attempts: task.attempt(),
            errors: errors.clone(),
        });
        Counters::bump(&self.counters.dead_lettered);
        resolve(s, task.id(), TaskOutcome::DeadLettered { errors });
    }
}
