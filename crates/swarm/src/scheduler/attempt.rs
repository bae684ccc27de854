//! Attempts: running one on an agent, and what its end decides (completed,
//! retried after a back-off, dead-lettered, cancelled, interrupted).

use super::*;

impl Core {
    pub(super) async fn run(&self, agent: AgentId, assignment: Assignment) -> Attempt {
        let task_id = assignment.task.id();
        // `Abortable` checks for an abort before its first poll of the inner
        // future: a cancel that lands before then means `execute` never ran
        // (the agent is still only claimed, and the attempt never started).
        let started = AtomicBool::new(false);
        let result = Abortable::new(
            async {
                started.store(true, Ordering::Relaxed);
                self.pool.execute(agent, assignment.task).await
            },
            assignment.registration,
        )
        .await;
        Attempt {
            task_id,
            result,
            started: started.load(Ordering::Relaxed),
        }
    }

    /// [`run`](Self::run), with a panic that escapes it (outside the agent's
    /// own code, which the pool guards) turned into a dead letter and a
    /// replaced agent (`None`): a bug cannot kill an agent's loop.
    pub(super) async fn run_guarded(
        &self,
        agent: AgentId,
        assignment: Assignment,
    ) -> Option<Attempt> {
        let task_id = assignment.task.id();
        match AssertUnwindSafe(self.run(agent, assignment))
            .catch_unwind()
            .await
        {
            Ok(attempt) => Some(attempt),
            Err(panic) => {
                self.attempt_panicked(agent, task_id, panic_message(&*panic));
                None
            }
        }
    }

    /// Handles the end of an attempt; in event mode returns the agent's next task.
    pub(super) fn finish(self: &Arc<Self>, agent: AgentId, attempt: Attempt) -> AfterAttempt {
        let mut s = self.sched.lock();
        let running = s.running.remove(&attempt.task_id);
        let mut agent_gone = false;
        match attempt.result {
            Err(Aborted) => {
                if !attempt.started {
                    // Never polled: the agent is claimed, not busy. Free it.
                    self.pool.release(agent);
                }
                let stop = running.as_ref().and_then(|r| r.stop);
                if stop == Some(Stop::Cancel) {
                    self.bus.emit(TaskCancelled {
                        task_id: attempt.task_id,
                        was_running: attempt.started,
                    });
                    Counters::bump(&self.counters.cancelled);
                    self.pool.forget_history(attempt.task_id);
                    resolve(
                        &mut s,
                        attempt.task_id,
                        TaskOutcome::Cancelled {
                            was_running: attempt.started,
                        },
                    );
                } else {
                    // Shutdown: the task goes back to pending, the attempt
                    // uncharged, and the next start runs it again.
                    if let Some(r) = &running {
                        self.bus.emit(TaskInterrupted {
                            task_id: attempt.task_id,
                            agent_id: r.agent,
                            attempt: r.attempt,
                            was_running: attempt.started,
                        });
                    }
                    self.pool.forget_history(attempt.task_id);
                    resolve(&mut s, attempt.task_id, TaskOutcome::Interrupted);
                }
            }
            Ok(Err(refused)) => {
                agent_gone = matches!(
                    refused.reason,
                    RefusedReason::UnknownAgent(_) | RefusedReason::Unhealthy(_)
                );
                self.requeue_refused(&mut s, agent, refused);
            }
            Ok(Ok(executed)) => {
                agent_gone = self.handle_executed(&mut s, executed);
            }
        }
        // Every end of an attempt gives its concurrency slots back, once:
        // here the task left `running`.
        if let Some(r) = running {
            self.release_limits(&mut s, r.held);
        }
        self.attempt_ended.notify_waiters();
        if agent_gone {
            return AfterAttempt::Exit;
        }
        if self.draining.load(Ordering::Acquire) {
            return AfterAttempt::Wait;
        }
        self.after_attempt(&mut s, agent)
    }

    /// A panic escaped an attempt (outside the agent's own code, which the
    /// pool guards): the task is dead-lettered with the panic as its error
    /// (retrying would need the task, which unwound with the attempt), and
    /// the agent is replaced. The swarm goes on.
    pub(super) fn attempt_panicked(&self, agent: AgentId, task_id: TaskId, message: String) {
        let mut s = self.sched.lock();
        let (attempt, held) = s
            .running
            .remove(&task_id)
            .map_or((0, flow::Held::default()), |r| (r.attempt, r.held));
        let error = format!("the attempt panicked outside the agent: {message}");
        let mut errors = self.pool.forget_history(task_id);
        errors.push(error.clone());
        self.bus.emit(TaskFailed {
            task_id,
            agent_id: Some(agent),
            attempt,
            reason: FailureReason::Panic,
            error,
            will_retry: false,
            retry_in: None,
        });
        self.bus.emit(TaskDeadLettered {
            task_id,
            attempts: attempt,
            errors: errors.clone(),
        });
        Counters::bump(&self.counters.failed_attempts);
        Counters::bump(&self.counters.dead_lettered);
        resolve(&mut s, task_id, TaskOutcome::DeadLettered { errors });
        self.lose_agent(&mut s, agent, "a panic escaped its attempt");
        self.release_limits(&mut s, held);
        self.attempt_ended.notify_waiters();
    }

    pub(super) fn take_work(&self, s: &mut Sched, agent: AgentId) -> AfterAttempt {
        // Paused: the agent sleeps on its inbox; resuming dispatches to it.
        if self.is_paused() {
            return AfterAttempt::Wait;
        }
        let has_work =
            !s.global.is_empty() || self.local.local_len(agent) > 0 || self.has_stealable();
        if !has_work || self.pool.claim(agent).is_err() {
            return AfterAttempt::Wait;
        }
        match self.pick(s, agent) {
            Some(assignment) => AfterAttempt::Run(assignment),
            None => {
                self.pool.release(agent);
                AfterAttempt::Wait
            }
        }
    }

    pub(super) fn requeue_refused(&self, s: &mut Sched, agent: AgentId, refused: ExecuteRefused) {
        tracing::debug!(agent = %agent, reason = ?refused.reason, "agent refused a task; re-queueing it");
        // Whatever the reason, the agent is not running it: never leave it claimed.
        self.pool.release(agent);
        let task = refused.into_inner();
        if !self.pool.any_can_run(task.kind()) {
            self.dead_letter_unrunnable(s, task);
            return;
        }
        let queued = s.queued(task, Instant::now());
        self.requeue(s, queued);
    }

    /// Returns whether the agent left the pool.
    pub(super) fn handle_executed(self: &Arc<Self>, s: &mut Sched, executed: Executed) -> bool {
        let Executed {
            task,
            agent_id,
            attempt,
            duration,
            next,
            health,
            ..
        } = executed;
        let task_id = task.id();
        match next {
            Next::Completed(output) => {
                Counters::bump(&self.counters.completed);
                resolve(
                    s,
                    task_id,
                    TaskOutcome::Completed {
                        output,
                        agent_id,
                        attempt,
                        duration,
                    },
                );
            }
            Next::Retry { after, .. } => {
                Counters::bump(&self.counters.failed_attempts);
                Counters::bump(&self.counters.retries);
                self.schedule_retry(s, task, after);
            }
            Next::DeadLettered { errors, .. } => {
                Counters::bump(&self.counters.failed_attempts);
                Counters::bump(&self.counters.dead_lettered);
                resolve(s, task_id, TaskOutcome::DeadLettered { errors });
            }
        }
        // An unhealthy agent was removed from the pool, and its replacement
        // created, during the attempt: the agent:removed / agent:created
        // handlers already stopped its inbox, re-queued its local queue and
        // started the replacement's loop. This loop only has to end.
        health == swarm_core::event::AgentHealth::Unhealthy
    }

    pub(super) fn schedule_retry(self: &Arc<Self>, s: &mut Sched, task: Task, after: Duration) {
        // Waits with the delayed tasks: one timer for all, none when nothing waits.
        let queued = s.queued(task, Instant::now());
        self.hold_for_retry(s, queued, after);
    }
}
