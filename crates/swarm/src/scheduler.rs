//! The scheduler: queues, dispatch, the agent loops, retries, cancellation.
//!
//! One mutex (`Sched`) guards the queues and the bookkeeping of live tasks.
//! Scheduler events (`task:enqueued`, `task:dequeued`, `task:assigned`, ...)
//! are emitted while it is held, so the bus (and through the journal, the
//! store) sees every task's transitions in the order they happened. The agent
//! pool emits its own events (`agent:busy`, `task:completed`, `task:failed`, ...)
//! from the agent's task, always after the `task:assigned` that preceded them.
//!
//! Event mode: every agent has a loop task that sleeps on its inbox. `submit`
//! claims an idle agent and sends the task straight to it; an agent that
//! finishes takes its next task itself (its local queue or the global queue,
//! whichever head is more urgent; else it steals half of the busiest local
//! queue). Nothing runs while the system is idle: no loop polls and no timer
//! exists except a retry back-off (while a task waits on it) and an attempt's
//! timeout (while it runs).
//!
//! Polling mode (the baseline): one loop wakes every `interval`, takes up to
//! `batch` tasks in FIFO order and runs them one after another.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::{AbortHandle, AbortRegistration, Abortable, Aborted};
use parking_lot::Mutex;
use swarm_agents::{AgentPool, BoxAgentFactory, ExecuteRefused, Executed, Next, RefusedReason};
use swarm_core::event::{
    QueueBacklog, QueueLocation, TaskAssigned, TaskCancelled, TaskCritical, TaskDequeued,
    TaskEnqueued, WorkStolen,
};
use swarm_core::{AgentId, EventBus, Priority, Task, TaskId};
use swarm_queue::PriorityQueue;
use swarm_steal::StealPool;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{CancelError, SubmitError};
use crate::handle::TaskOutcome;
use crate::idmap::{IdMap, IdSet};
use crate::latency::LatencyWatch;
use crate::stats::Counters;
use crate::{SchedulerMode, SwarmStats};

/// A task waiting in a queue, with the moment its wait began.
pub(crate) struct Queued {
    task: Task,
    since: Instant,
}

pub(crate) struct Assignment {
    task: Task,
    registration: AbortRegistration,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    Cancel,
    Shutdown,
}

struct Running {
    abort: AbortHandle,
    stop: Option<Stop>,
}

struct Sched {
    /// Event mode's shared queue.
    global: PriorityQueue<Queued>,
    /// Polling mode's queue: FIFO, priorities ignored (the seed's "before").
    fifo: VecDeque<Queued>,
    /// Live tasks (queued, waiting for a retry, or running) and their waiters.
    live: IdMap<TaskId, Option<oneshot::Sender<TaskOutcome>>>,
    running: IdMap<TaskId, Running>,
    retrying: IdMap<TaskId, JoinHandle<()>>,
    backlog_high: bool,
}

pub(crate) struct SchedConfig {
    pub(crate) mode: SchedulerMode,
    pub(crate) steal_threshold: usize,
    pub(crate) latency: LatencyWatch,
    pub(crate) prefetch: usize,
    pub(crate) backlog_threshold: usize,
    pub(crate) queue_bound: Option<usize>,
}

pub(crate) struct Core {
    pub(crate) bus: EventBus,
    pub(crate) pool: AgentPool<BoxAgentFactory>,
    pub(crate) counters: Arc<Counters>,
    config: SchedConfig,
    sched: Mutex<Sched>,
    /// Local queues (affinity, prefetch) and stealing. Internally locked; only
    /// touched with `sched` held, so the two stay consistent.
    local: StealPool<Queued>,
    /// Agent inboxes. Its own lock, never held while emitting, so handlers of
    /// pool events (which may run under `sched`) can take it.
    inboxes: Mutex<IdMap<AgentId, mpsc::Sender<Assignment>>>,
    /// Tasks queued (global + local + fifo), readable without `sched`.
    queued: Arc<AtomicUsize>,
    accepting: AtomicBool,
    draining: AtomicBool,
    /// Notified each time an attempt ends (shutdown waits on it).
    attempt_ended: Notify,
    latency: LatencyWatch,
    runtime: tokio::runtime::Handle,
}

impl Core {
    pub(crate) fn new(
        bus: EventBus,
        pool: AgentPool<BoxAgentFactory>,
        counters: Arc<Counters>,
        mut config: SchedConfig,
        global: PriorityQueue<Queued>,
        runtime: tokio::runtime::Handle,
    ) -> Arc<Core> {
        let latency = std::mem::replace(&mut config.latency, LatencyWatch::new(None));
        let steal_threshold = config.steal_threshold;
        Arc::new(Core {
            bus,
            pool,
            counters,
            config,
            sched: Mutex::new(Sched {
                global,
                fifo: VecDeque::new(),
                live: IdMap::default(),
                running: IdMap::default(),
                retrying: IdMap::default(),
                backlog_high: false,
            }),
            local: StealPool::new(steal_threshold),
            inboxes: Mutex::new(IdMap::default()),
            queued: Arc::new(AtomicUsize::new(0)),
            accepting: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            attempt_ended: Notify::new(),
            latency,
            runtime,
        })
    }

    pub(crate) fn queued_counter(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.queued)
    }

    fn is_event_mode(&self) -> bool {
        matches!(self.config.mode, SchedulerMode::Event)
    }

    pub(crate) fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    // ---------------------------------------------------------------- agents

    /// Starts the loop of a new agent (event mode). Safe to call from an event
    /// handler: takes only the inbox lock and spawns.
    pub(crate) fn start_agent(self: &Arc<Self>, agent: AgentId) {
        if !self.is_event_mode() {
            return;
        }
        let (sender, inbox) = mpsc::channel(1);
        {
            let mut inboxes = self.inboxes.lock();
            if inboxes.contains_key(&agent) {
                return;
            }
            inboxes.insert(agent, sender);
        }
        self.local.register(agent);
        let core = Arc::clone(self);
        self.runtime.spawn(agent_loop(core, agent, inbox));
    }

    /// Forgets a removed agent: its loop ends, its local queue goes back to
    /// the global queue. Safe to call from an event handler (spawns the part
    /// that needs the scheduler lock).
    pub(crate) fn stop_agent(self: &Arc<Self>, agent: AgentId) {
        self.inboxes.lock().remove(&agent);
        let core = Arc::clone(self);
        self.runtime.spawn(async move {
            let mut s = core.sched.lock();
            core.requeue_local_of(&mut s, agent);
        });
    }

    fn requeue_local_of(&self, s: &mut Sched, agent: AgentId) {
        let items = self.local.deregister(agent);
        for (queued, priority) in items {
            self.bus.emit(TaskDequeued {
                task_id: queued.task.id(),
                priority,
                queue: QueueLocation::Local(agent),
            });
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.push_global(s, queued);
        }
        self.dispatch_idle(s);
    }

    // ---------------------------------------------------------------- submit

    /// Checks that `tasks` can be accepted and registers them as live, so a
    /// duplicate id is refused. Returns the receivers of their outcomes.
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
        }
        if let Some(bound) = self.config.queue_bound {
            let queued = self.queued.load(Ordering::Relaxed);
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
            let queued = Queued { task, since: now };
            if self.is_event_mode() {
                self.place_event(&mut s, queued);
            } else {
                self.push_fifo(&mut s, queued);
            }
        }
    }

    /// Re-queues recovered tasks (they keep their attempt counts).
    pub(crate) fn recover(self: &Arc<Self>, tasks: Vec<Task>) {
        let now = Instant::now();
        let mut s = self.sched.lock();
        for task in tasks {
            s.live.insert(task.id(), None);
            Counters::bump(&self.counters.recovered);
            let queued = Queued { task, since: now };
            if self.is_event_mode() {
                self.push_global(&mut s, queued);
            } else {
                self.push_fifo(&mut s, queued);
            }
        }
        if self.is_event_mode() {
            self.dispatch_idle(&mut s);
        }
    }

    fn place_event(self: &Arc<Self>, s: &mut Sched, queued: Queued) {
        if let Some(agent) = queued.task.affinity() {
            if self.local.contains(agent) {
                if self.local.local_len(agent) == 0 && self.pool.claim(agent).is_ok() {
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
        if s.global.is_empty() {
            if let Some(agent) = self.pool.claim_idle() {
                let assignment = self.assign(s, agent, queued, None);
                self.send(s, agent, assignment);
                return;
            }
        }
        if self.config.prefetch > 0 {
            if let Some(agent) = self.prefetch_target() {
                self.push_local(s, agent, queued);
                return;
            }
        }
        self.push_global(s, queued);
        self.dispatch_idle(s);
    }

    /// The busy agent with the shortest local queue, if it is under the prefetch depth.
    fn prefetch_target(&self) -> Option<AgentId> {
        let inboxes = self.inboxes.lock();
        inboxes
            .keys()
            .map(|id| (self.local.local_len(*id), *id))
            .filter(|(len, _)| *len < self.config.prefetch)
            .min()
            .map(|(_, id)| id)
    }

    fn push_global(&self, s: &mut Sched, queued: Queued) {
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

    fn push_local(&self, s: &mut Sched, agent: AgentId, queued: Queued) {
        let task_id = queued.task.id();
        let priority = queued.task.priority();
        let pinned = queued.task.pinned();
        if let Err(refused) = self.local.push_local(agent, queued, priority, pinned) {
            self.push_global(s, refused.into_inner());
            return;
        }
        self.after_push(s, task_id, priority, QueueLocation::Local(agent));
    }

    fn push_fifo(&self, s: &mut Sched, queued: Queued) {
        let task_id = queued.task.id();
        let priority = queued.task.priority();
        s.fifo.push_back(queued);
        self.after_push(s, task_id, priority, QueueLocation::Global);
    }

    fn after_push(&self, s: &mut Sched, task_id: TaskId, priority: Priority, queue: QueueLocation) {
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

    fn note_dequeue(
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
    fn has_stealable(&self) -> bool {
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
    fn dispatch_idle(&self, s: &mut Sched) {
        if !self.is_event_mode() || self.draining.load(Ordering::Acquire) {
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

    /// The next task for a claimed agent: the more urgent of its local head and
    /// the global head; if both are empty, half of the busiest local queue.
    fn pick(&self, s: &mut Sched, agent: AgentId) -> Option<Assignment> {
        let local = self.local.peek_local(agent);
        let global = s.global.peek().map(|(_, p)| p);
        let from_local = match (local, global) {
            (Some(l), Some(g)) => l >= g,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => {
                let (stolen, task_ids) = self
                    .local
                    .steal_half_with(agent, |queued, _| queued.task.id())?;
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
                true
            }
        };
        let (queued, priority, location) = if from_local {
            let (q, p) = self.local.pop_local(agent)?;
            (q, p, QueueLocation::Local(agent))
        } else {
            let (q, p) = s.global.pop()?;
            (q, p, QueueLocation::Global)
        };
        Some(self.assign(s, agent, queued, Some((priority, location))))
    }

    fn assign(
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
        let queue_wait = queued.since.elapsed();
        self.bus.emit(TaskAssigned {
            task_id,
            agent_id: agent,
            attempt: queued.task.attempt() + 1,
            priority: queued.task.priority(),
            queue_wait,
        });
        self.latency.record(queue_wait, &self.bus);
        let (abort, registration) = AbortHandle::new_pair();
        s.running.insert(task_id, Running { abort, stop: None });
        Assignment {
            task: queued.task,
            registration,
        }
    }

    fn send(&self, s: &mut Sched, agent: AgentId, assignment: Assignment) {
        let sender = self.inboxes.lock().get(&agent).cloned();
        let refused = match sender {
            // Capacity 1 suffices: an agent is claimed before it is sent a
            // task, and a claimed agent gets exactly one.
            Some(sender) => sender.try_send(assignment).err().map(|e| match e {
                mpsc::error::TrySendError::Full(a) | mpsc::error::TrySendError::Closed(a) => a,
            }),
            None => Some(assignment),
        };
        if let Some(assignment) = refused {
            // The agent went away between claim and send: back to the queue.
            let task = assignment.task;
            s.running.remove(&task.id());
            self.pool.release(agent);
            self.push_global(
                s,
                Queued {
                    task,
                    since: Instant::now(),
                },
            );
        }
    }

    // ---------------------------------------------------------------- attempts

    async fn run(&self, agent: AgentId, assignment: Assignment) -> Attempt {
        let task_id = assignment.task.id();
        let result = Abortable::new(
            self.pool.execute(agent, assignment.task),
            assignment.registration,
        )
        .await;
        Attempt { task_id, result }
    }

    /// Handles the end of an attempt; in event mode returns the agent's next task.
    fn finish(self: &Arc<Self>, agent: AgentId, attempt: Attempt) -> AfterAttempt {
        let mut s = self.sched.lock();
        let running = s.running.remove(&attempt.task_id);
        let mut agent_gone = false;
        match attempt.result {
            Err(Aborted) => {
                let stop = running.and_then(|r| r.stop);
                if stop == Some(Stop::Cancel) {
                    self.bus.emit(TaskCancelled {
                        task_id: attempt.task_id,
                        was_running: true,
                    });
                    Counters::bump(&self.counters.cancelled);
                    resolve(
                        &mut s,
                        attempt.task_id,
                        TaskOutcome::Cancelled { was_running: true },
                    );
                } else {
                    // Shutdown: the task stays "running" in the log and is
                    // re-queued by the next start.
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
        self.attempt_ended.notify_waiters();
        if agent_gone {
            return AfterAttempt::Exit;
        }
        if !self.is_event_mode() || self.draining.load(Ordering::Acquire) {
            return AfterAttempt::Wait;
        }
        self.take_work(&mut s, agent)
    }

    fn take_work(&self, s: &mut Sched, agent: AgentId) -> AfterAttempt {
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

    fn requeue_refused(&self, s: &mut Sched, agent: AgentId, refused: ExecuteRefused) {
        tracing::debug!(agent = %agent, reason = ?refused.reason, "agent refused a task; re-queueing it");
        let task = refused.into_inner();
        let queued = Queued {
            task,
            since: Instant::now(),
        };
        if self.is_event_mode() {
            self.push_global(s, queued);
        } else {
            self.push_fifo(s, queued);
        }
    }

    /// Returns whether the agent left the pool.
    fn handle_executed(self: &Arc<Self>, s: &mut Sched, executed: Executed) -> bool {
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

    fn schedule_retry(self: &Arc<Self>, s: &mut Sched, task: Task, after: Duration) {
        let task_id = task.id();
        let core = Arc::clone(self);
        // A timer that exists only while the task waits.
        let handle = self.runtime.spawn(async move {
            tokio::time::sleep(after).await;
            Counters::bump(&core.counters.wakeups);
            let mut s = core.sched.lock();
            if s.retrying.remove(&task_id).is_none() {
                return; // cancelled meanwhile
            }
            let queued = Queued {
                task,
                since: Instant::now(),
            };
            if core.is_event_mode() {
                core.push_global(&mut s, queued);
                core.dispatch_idle(&mut s);
            } else {
                core.push_fifo(&mut s, queued);
            }
        });
        s.retrying.insert(task_id, handle);
    }

    // ---------------------------------------------------------------- cancel

    pub(crate) fn cancel(&self, task_id: TaskId) -> Result<(), CancelError> {
        let mut s = self.sched.lock();
        if let Some(running) = s.running.get_mut(&task_id) {
            running.stop = Some(Stop::Cancel);
            running.abort.abort();
            return Ok(());
        }
        if let Some(timer) = s.retrying.remove(&task_id) {
            timer.abort();
            self.cancelled_queued(&mut s, task_id);
            return Ok(());
        }
        let removed = s
            .global
            .remove_first(|q| q.task.id() == task_id)
            .map(|(q, p)| (q, p, QueueLocation::Global))
            .or_else(|| {
                self.local
                    .remove_first(|q| q.task.id() == task_id)
                    .map(|(agent, q, p)| (q, p, QueueLocation::Local(agent)))
            })
            .or_else(|| {
                let i = s.fifo.iter().position(|q| q.task.id() == task_id)?;
                s.fifo.remove(i).map(|q| {
                    let p = q.task.priority();
                    (q, p, QueueLocation::Global)
                })
            });
        match removed {
            Some((_queued, priority, location)) => {
                self.note_dequeue(&mut s, task_id, priority, location);
                self.cancelled_queued(&mut s, task_id);
                Ok(())
            }
            None => Err(CancelError::NotFound(task_id)),
        }
    }

    fn cancelled_queued(&self, s: &mut Sched, task_id: TaskId) {
        self.bus.emit(TaskCancelled {
            task_id,
            was_running: false,
        });
        Counters::bump(&self.counters.cancelled);
        resolve(s, task_id, TaskOutcome::Cancelled { was_running: false });
    }

    // ---------------------------------------------------------------- shutdown

    /// Stops accepting tasks and starting queued ones. Returns how many are queued.
    pub(crate) fn stop_accepting(&self) -> u64 {
        let s = self.sched.lock();
        self.accepting.store(false, Ordering::Release);
        self.draining.store(true, Ordering::Release);
        (s.global.len() + s.fifo.len() + self.local.total_len() + s.retrying.len()) as u64
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

    /// Drops the attempts still running (they stay recorded as running, and
    /// resume on the next start), cancels retry timers and resolves every
    /// waiter as interrupted.
    pub(crate) fn interrupt_all(&self) {
        let mut s = self.sched.lock();
        for running in s.running.values_mut() {
            running.stop = Some(Stop::Shutdown);
            running.abort.abort();
        }
        for (_, timer) in s.retrying.drain() {
            timer.abort();
        }
        let running: Vec<TaskId> = s.running.keys().copied().collect();
        s.live.retain(|id, waiter| {
            if running.contains(id) {
                return true;
            }
            if let Some(w) = waiter.take() {
                let _ = w.send(TaskOutcome::Interrupted);
            }
            false
        });
        self.inboxes.lock().clear();
    }

    // ---------------------------------------------------------------- stats

    pub(crate) fn stats(&self) -> SwarmStats {
        use crate::stats::load;
        let (queued, waiting_retry, running) = {
            let s = self.sched.lock();
            (
                (s.global.len() + s.fifo.len() + self.local.total_len()) as u64,
                s.retrying.len() as u64,
                s.running.len() as u64,
            )
        };
        let agents = self.pool.counts();
        let c = &self.counters;
        SwarmStats {
            submitted: load(&c.submitted),
            recovered: load(&c.recovered),
            completed: load(&c.completed),
            failed_attempts: load(&c.failed_attempts),
            retries: load(&c.retries),
            dead_lettered: load(&c.dead_lettered),
            cancelled: load(&c.cancelled),
            queued,
            waiting_retry,
            running,
            steals: load(&c.steals),
            stolen_tasks: load(&c.stolen_tasks),
            idle_agents: agents.idle as u64,
            busy_agents: (agents.busy + agents.claimed) as u64,
            reserve_agents: agents.reserve as u64,
            wakeups: load(&c.wakeups),
            events_stored: load(&c.events_stored),
            store_errors: load(&c.store_errors),
        }
    }

    // ---------------------------------------------------------------- polling

    /// Takes up to `batch` tasks in FIFO order (polling mode).
    fn take_batch(&self, batch: usize) -> Vec<(Queued, Priority)> {
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
}

fn resolve(s: &mut Sched, task_id: TaskId, outcome: TaskOutcome) {
    if let Some(Some(waiter)) = s.live.remove(&task_id) {
        let _ = waiter.send(outcome);
    }
}

pub(crate) struct Attempt {
    task_id: TaskId,
    result: Result<Result<Executed, ExecuteRefused>, Aborted>,
}

enum AfterAttempt {
    Run(Assignment),
    Wait,
    Exit,
}

/// One agent's loop (event mode): sleeps on its inbox; after each attempt takes
/// its next task itself, without going back through the inbox.
async fn agent_loop(core: Arc<Core>, agent: AgentId, mut inbox: mpsc::Receiver<Assignment>) {
    // A new agent looks for queued work once, then sleeps.
    let mut next = {
        let mut s = core.sched.lock();
        match core.take_work(&mut s, agent) {
            AfterAttempt::Run(a) => Some(a),
            _ => None,
        }
    };
    loop {
        let assignment = match next.take() {
            Some(a) => a,
            None => match inbox.recv().await {
                Some(a) => {
                    Counters::bump(&core.counters.wakeups);
                    a
                }
                None => return,
            },
        };
        let attempt = core.run(agent, assignment).await;
        match core.finish(agent, attempt) {
            AfterAttempt::Run(a) => next = Some(a),
            AfterAttempt::Wait => {}
            AfterAttempt::Exit => return,
        }
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
        for (queued, _priority) in core.take_batch(batch) {
            if core.draining.load(Ordering::Acquire) {
                // Shutdown began mid-batch: the rest stays pending in the log
                // (dequeued, never started) and resumes on the next start.
                break;
            }
            let agent = loop {
                if let Some(agent) = core.pool.claim_idle() {
                    break agent;
                }
                // Every agent is being replaced: wait for the next tick.
                ticker.tick().await;
                Counters::bump(&core.counters.wakeups);
            };
            let assignment = {
                let mut s = core.sched.lock();
                core.assign(&mut s, agent, queued, None)
            };
            let attempt = core.run(agent, assignment).await;
            let _ = core.finish(agent, attempt);
        }
    }
}
