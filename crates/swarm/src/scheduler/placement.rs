//! Placement (event mode): which agent gets which task, from which queue:
//! an idle agent at once, affinity and prefetch into local queues, the more
//! urgent (then older) of the local and global heads, stealing, capabilities.

use super::*;

impl Core {
    pub(super) fn place_event(self: &Arc<Self>, s: &mut Sched, queued: Queued) {
        let restricted = self.pool.has_capabilities();
        if let Some(agent) = queued.task.affinity() {
            // Affinity holds only for an active agent that can run the task;
            // a reserve agent's queue would wait for an agent nobody wakes.
            let usable = self.local.contains(agent)
                && self.pool.is_active(agent)
                && (!restricted || self.pool.can_run(agent, queued.task.kind()));
            if usable {
                if self.may_start()
                    && self.local.local_len(agent) == 0
                    && self.pool.claim(agent).is_ok()
                {
                    let assignment = self.assign(s, agent, queued, None);
                    self.send(s, agent, assignment);
                    return;
                }
                self.push_local(s, agent, queued);
                // An idle agent steals at once if the push made the queue long.
                self.dispatch_idle(s);
                return;
            }
        }
        // Paused or shutting down: nothing starts, the task waits in the
        // global queue.
        if s.global.is_empty() && self.may_start() {
            let claimed = if restricted {
                self.pool.claim_idle_for(queued.task.kind())
            } else {
                self.pool.claim_idle()
            };
            if let Some(agent) = claimed {
                let assignment = self.assign(s, agent, queued, None);
                self.send(s, agent, assignment);
                return;
            }
        }
        // Prefetch only when no global task of the same or higher priority is
        // waiting: an arrival must not overtake older work through a free slot.
        let global_first = s
            .global
            .peek()
            .is_some_and(|(_, p)| p >= queued.task.priority());
        if self.config.prefetch > 0 && !global_first && self.may_start() {
            if let Some(agent) = self.prefetch_target(queued.task.kind()) {
                self.push_local(s, agent, queued);
                return;
            }
        }
        self.push_global(s, queued);
        self.dispatch_idle(s);
    }

    /// The working (claimed or busy) active agent able to run `kind` with the
    /// shortest local queue, if it is under the prefetch depth. Never a reserve
    /// or idle agent: nobody would pop a reserve agent's queue, and an idle
    /// agent takes work directly.
    pub(super) fn prefetch_target(&self, kind: &str) -> Option<AgentId> {
        self.pool
            .working_agents_for(kind)
            .into_iter()
            .filter(|id| self.local.contains(*id))
            .map(|id| (self.local.local_len(id), id))
            .filter(|(len, _)| *len < self.config.prefetch)
            .min()
            .map(|(_, id)| id)
    }

    pub(super) fn push_global(&self, s: &mut Sched, queued: Queued) {
        let task_id = queued.task.id();
        let priority = queued.task.priority();
        // The global queue is unbounded: `queue_bound` limits what `submit`
        // accepts, while re-queues (retries, recovery, a removed agent's local
        // queue) must never be refused, so nothing accepted is ever dropped.
        if let Err(full) = s.global.push(queued, priority) {
            let task = full.into_inner().task;
            tracing::error!(task = %task.id(), "unbounded queue refused a task");
        }
        self.after_push(s, task_id, priority, QueueLocation::Global);
    }

    pub(super) fn push_local(&self, s: &mut Sched, agent: AgentId, queued: Queued) {
        let task_id = queued.task.id();
        let priority = queued.task.priority();
        let pinned = queued.task.pinned();
        if let Err(refused) = self.local.push_local(agent, queued, priority, pinned) {
            self.push_global(s, refused.into_inner());
            return;
        }
        self.after_push(s, task_id, priority, QueueLocation::Local(agent));
    }

    pub(super) fn after_push(
        &self,
        s: &mut Sched,
        task_id: TaskId,
        priority: Priority,
        queue: QueueLocation,
    ) {
        self.bus.emit(TaskEnqueued {
            task_id,
            priority,
            queue,
        });
        if priority == Priority::Critical {
            self.bus.emit(TaskCritical { task_id });
        }
        let queued = self.queued.fetch_add(1, Ordering::Relaxed) + 1;
        let threshold = self.config.backlog_threshold;
        if queued > threshold && !s.backlog_high {
            s.backlog_high = true;
            self.bus.emit(QueueBacklog {
                queued: queued as u64,
                threshold: threshold as u64,
            });
        }
    }

    pub(super) fn note_dequeue(
        &self,
        s: &mut Sched,
        task_id: TaskId,
        priority: Priority,
        queue: QueueLocation,
    ) {
        self.bus.emit(TaskDequeued {
            task_id,
            priority,
            queue,
        });
        let queued = self
            .queued
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        // Hysteresis: re-arm the backlog event once the queue is back to half.
        if s.backlog_high && queued <= self.config.backlog_threshold / 2 {
            s.backlog_high = false;
        }
    }

    /// Whether some local queue is long enough to steal from.
    pub(super) fn has_stealable(&self) -> bool {
        let threshold = self.local.threshold();
        self.local.busiest().is_some_and(|(_, len)| len > threshold)
            && self
                .local
                .agents()
                .into_iter()
                .any(|a| self.local.stealable_len(a) > threshold)
    }

    /// Gives queued work to idle agents soon, from a task of its own (safe to
    /// call from an event handler that may run under the scheduler lock).
    pub(crate) fn dispatch_soon(self: &Arc<Self>) {
        let core = Arc::clone(self);
        self.runtime.spawn(async move {
            let mut s = core.sched.lock();
            core.dispatch_idle(&mut s);
        });
    }

    /// Gives queued work to idle agents while both exist.
    pub(super) fn dispatch_idle(&self, s: &mut Sched) {
        if self.draining.load(Ordering::Acquire) || self.is_paused() {
            return;
        }
        if self.pool.has_capabilities() {
            self.dispatch_idle_by_capability(s);
            return;
        }
        loop {
            if s.global.is_empty() && !self.has_stealable() {
                return;
            }
            let Some(agent) = self.pool.claim_idle() else {
                return;
            };
            match self.pick(s, agent) {
                Some(assignment) => self.send(s, agent, assignment),
                None => {
                    self.pool.release(agent);
                    return;
                }
            }
        }
    }

    /// [`dispatch_idle`](Self::dispatch_idle) for a pool where some agents run
    /// only some kinds: each idle agent is offered the most urgent task it can
    /// run, and is claimed only if there is one (no claim/release churn).
    pub(super) fn dispatch_idle_by_capability(&self, s: &mut Sched) {
        for agent in self.pool.idle_agents() {
            if s.global.is_empty() && !self.has_stealable() {
                return;
            }
            let fits = self.fits(agent);
            let has_work = self.local.local_len(agent) > 0
                || s.global.iter().any(|(q, _)| fits.allows(q.task.kind()))
                || (matches!(fits, Fits::Any) && self.has_stealable());
            if !has_work || self.pool.claim(agent).is_err() {
                continue;
            }
            match self.pick(s, agent) {
                Some(assignment) => self.send(s, agent, assignment),
                None => self.pool.release(agent),
            }
        }
    }

    /// The next task for a claimed agent: the more urgent of its local head and
    /// the global head (the older one on a tie); if both are empty, half of the
    /// busiest local queue. With capabilities, only tasks the agent can run:
    /// a local task it cannot run goes to the global queue, and the global
    /// queue is searched past tasks of other kinds.
    pub(super) fn pick(&self, s: &mut Sched, agent: AgentId) -> Option<Assignment> {
        let fits = self.fits(agent);
        let mut stole = false;
        loop {
            // A local head this agent cannot run (stolen, or placed before a
            // replacement) goes where a capable agent will find it.
            while let Some(false) = self
                .local
                .peek_local_with(agent, |q, _| fits.allows(q.task.kind()))
            {
                if let Some((q, p)) = self.local.pop_local(agent) {
                    self.note_dequeue(s, q.task.id(), p, QueueLocation::Local(agent));
                    self.push_global(s, q);
                }
            }
            let local = self.local.peek_local_with(agent, |q, p| (p, q.order));
            let global = match fits {
                Fits::Any => s.global.peek().map(|(q, p)| (p, q.order, q.task.id())),
                Fits::Kinds(_) => s
                    .global
                    .iter()
                    .find(|(q, _)| fits.allows(q.task.kind()))
                    .map(|(q, p)| (p, q.order, q.task.id())),
            };
            let from_local = match (local, global) {
                (Some((lp, lo)), Some((gp, go, _))) => lp > gp || (lp == gp && lo < go),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => {
                    if stole {
                        return None;
                    }
                    let (stolen, task_ids) = self
                        .local
                        .steal_half_with(agent, |queued, _| queued.task.id())?;
                    stole = true;
                    Counters::bump(&self.counters.steals);
                    self.counters
                        .stolen_tasks
                        .fetch_add(stolen.count as u64, Ordering::Relaxed);
                    self.bus.emit(WorkStolen {
                        from: stolen.from,
                        to: stolen.to,
                        count: u32::try_from(stolen.count).unwrap_or(u32::MAX),
                        task_ids,
                    });
                    continue;
                }
            };
            let (queued, priority, location) = if from_local {
                let (q, p) = self.local.pop_local(agent)?;
                (q, p, QueueLocation::Local(agent))
            } else {
                let (q, p) = match (&fits, global) {
                    (Fits::Kinds(_), Some((_, _, id))) => {
                        s.global.remove_first(|q| q.task.id() == id)?
                    }
                    _ => s.global.pop()?,
                };
                (q, p, QueueLocation::Global)
            };
            // A limit that admitted it may be full now: it waits parked, and
            // the agent looks further.
            if let Some(rule) = self.limit_refusing_start(s, &queued) {
                self.note_dequeue(s, queued.task.id(), priority, location);
                self.park(s, rule, queued);
                continue;
            }
            return Some(self.assign(s, agent, queued, Some((priority, location))));
        }
    }

    pub(super) fn assign(
        &self,
        s: &mut Sched,
        agent: AgentId,
        queued: Queued,
        from: Option<(Priority, QueueLocation)>,
    ) -> Assignment {
        let task_id = queued.task.id();
        if let Some((priority, location)) = from {
            self.note_dequeue(s, task_id, priority, location);
        }
        let queue_wait = s.elapsed_since(queued.since);
        let attempt = queued.task.attempt() + 1;
        self.bus.emit(TaskAssigned {
            task_id,
            agent_id: agent,
            attempt,
            priority: queued.task.priority(),
            queue_wait,
        });
        self.latency.record(queue_wait, &self.bus);
        let held = self.take_limits(s, &queued);
        let (abort, registration) = AbortHandle::new_pair();
        s.running.insert(
            task_id,
            Running {
                abort,
                stop: None,
                agent,
                attempt,
                held,
            },
        );
        Assignment {
            task: queued.task,
            registration,
        }
    }

    pub(super) fn send(&self, s: &mut Sched, agent: AgentId, assignment: Assignment) {
        let sender = self.inboxes.lock().get(&agent).map(|i| i.sender.clone());
        let (assignment, lost) = match sender {
            // Capacity 1 suffices: an agent is claimed before it is sent a
            // task, and a claimed agent gets exactly one.
            Some(sender) => match sender.try_send(assignment) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(a)) => (a, false),
                Err(mpsc::error::TrySendError::Closed(a)) => (a, true),
            },
            // In the pool but without a loop.
            None => (assignment, true),
        };
        // Back to the queue; the attempt never started.
        let task = assignment.task;
        if let Some(running) = s.running.remove(&task.id()) {
            self.release_limits(s, running.held);
        }
        let queued = s.queued(task, Instant::now());
        self.push_global(s, queued);
        if lost {
            // Its loop is gone: re-offering it work would spin for ever. Losing
            // it dispatches the queue to the others.
            self.lose_agent(s, agent, "its task loop ended");
        } else {
            self.pool.release(agent);
        }
    }
}
