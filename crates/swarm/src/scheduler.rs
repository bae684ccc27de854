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
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{AbortHandle, AbortRegistration, Abortable, Aborted};
use parking_lot::Mutex;
use swarm_agents::{AgentPool, BoxAgentFactory, ExecuteRefused, Executed, Next, RefusedReason};
use swarm_core::event::{
    FailureReason, QueueBacklog, QueueLocation, TaskAssigned, TaskCancelled, TaskCritical,
    TaskDeadLettered, TaskDequeued, TaskEnqueued, TaskFailed, TaskInterrupted, WorkStolen,
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

/// A task waiting in a queue, with the moment its wait began and its place
/// in the order of arrival (ties between queues go to the older task).
pub(crate) struct Queued {
    task: Task,
    since: Instant,
    order: u64,
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
    agent: AgentId,
    /// The attempt's number, as `task:assigned` said.
    attempt: u32,
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
    next_order: u64,
}

impl Sched {
    fn queued(&mut self, task: Task, since: Instant) -> Queued {
        let order = self.next_order;
        self.next_order += 1;
        Queued { task, since, order }
    }
}

/// An agent's inbox and the loop that sleeps on it.
struct Inbox {
    sender: mpsc::Sender<Assignment>,
    agent_loop: Option<tokio::task::AbortHandle>,
}

/// Which kinds an agent can run, looked up once per decision.
enum Fits {
    /// Every kind (no agent of the pool declares capabilities, or this one declares none).
    Any,
    /// Only these kinds.
    Kinds(Vec<String>),
}

impl Fits {
    fn allows(&self, kind: &str) -> bool {
        match self {
            Fits::Any => true,
            Fits::Kinds(kinds) => kinds.iter().any(|k| k == kind),
        }
    }
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
    inboxes: Mutex<IdMap<AgentId, Inbox>>,
    /// Tasks queued (global + local + fifo), readable without `sched`.
    queued: Arc<AtomicUsize>,
    accepting: AtomicBool,
    draining: AtomicBool,
    /// Set when the swarm is dropped: no agent loop starts after it.
    stopped: AtomicBool,
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
                next_order: 0,
            }),
            local: StealPool::new(steal_threshold),
            inboxes: Mutex::new(IdMap::default()),
            queued: Arc::new(AtomicUsize::new(0)),
            accepting: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
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

    /// What `agent` can run.
    fn fits(&self, agent: AgentId) -> Fits {
        if !self.pool.has_capabilities() {
            return Fits::Any;
        }
        match self.pool.capabilities(agent) {
            Some(kinds) if !kinds.is_empty() => Fits::Kinds(kinds),
            _ => Fits::Any,
        }
    }

    // ---------------------------------------------------------------- agents

    /// Starts the loop of a new agent (event mode). Safe to call from an event
    /// handler: takes only the inbox lock and spawns.
    pub(crate) fn start_agent(self: &Arc<Self>, agent: AgentId) {
        if !self.is_event_mode() || self.stopped.load(Ordering::Acquire) {
            return;
        }
        let (sender, inbox) = mpsc::channel(1);
        {
            let mut inboxes = self.inboxes.lock();
            if inboxes.contains_key(&agent) {
                return;
            }
            inboxes.insert(
                agent,
                Inbox {
                    sender,
                    agent_loop: None,
                },
            );
        }
        self.local.register(agent);
        let core = Arc::clone(self);
        let handle = self.runtime.spawn(agent_loop(core, agent, inbox));
        if let Some(entry) = self.inboxes.lock().get_mut(&agent) {
            entry.agent_loop = Some(handle.abort_handle());
        }
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

    /// An agent whose loop ended unexpectedly (its inbox closed, or a panic
    /// escaped its attempt): it leaves the pool, a replacement is made, and
    /// its local queue goes back to the global queue. Never re-offered work.
    fn lose_agent(&self, s: &mut Sched, agent: AgentId, why: &str) {
        tracing::error!(agent = %agent, why, "agent loop ended; replacing the agent");
        self.inboxes.lock().remove(&agent);
        if self.pool.remove_agent(agent, why) {
            if let Err(error) = self.pool.spawn_agents(1) {
                tracing::warn!(agent = %agent, %error, "could not replace a lost agent; the pool is one agent smaller");
            }
        }
        self.requeue_local_of(s, agent);
    }

    // ---------------------------------------------------------------- submit

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
            if !self.pool.any_can_run(task.kind()) {
                self.dead_letter_unrunnable(&mut s, task);
                continue;
            }
            let queued = s.queued(task, now);
            if self.is_event_mode() {
                self.place_event(&mut s, queued);
            } else {
                self.push_fifo(&mut s, queued);
            }
        }
    }

    /// Re-queues recovered tasks (they keep their attempt counts), in the
    /// order given (most urgent first, then oldest).
    pub(crate) fn recover(self: &Arc<Self>, tasks: Vec<Task>) {
        let now = Instant::now();
        let mut s = self.sched.lock();
        for task in tasks {
            s.live.insert(task.id(), None);
            Counters::bump(&self.counters.recovered);
            if !self.pool.any_can_run(task.kind()) {
                self.dead_letter_unrunnable(&mut s, task);
                continue;
            }
            let queued = s.queued(task, now);
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

    /// A task whose kind no agent of the pool can run: dead-lettered at once,
    /// with a reason that says so (it would otherwise wait for ever).
    fn dead_letter_unrunnable(&self, s: &mut Sched, task: Task) {
        let mut errors = self.pool.forget_history(task.id());
        errors.push(format!(
            "no agent of the pool can run tasks of kind {:?}: add an agent with that capability or fix the kind",
            task.kind()
        ));
        self.bus.emit(TaskDeadLettered {
            task_id: task.id(),
            attempts: task.attempt(),
            errors: errors.clone(),
        });
        Counters::bump(&self.counters.dead_lettered);
        resolve(s, task.id(), TaskOutcome::DeadLettered { errors });
    }

    fn place_event(self: &Arc<Self>, s: &mut Sched, queued: Queued) {
        let restricted = self.pool.has_capabilities();
        if let Some(agent) = queued.task.affinity() {
            // Affinity holds only for an active agent that can run the task;
            // a reserve agent's queue would wait for an agent nobody wakes.
            let usable = self.local.contains(agent)
                && self.pool.is_active(agent)
                && (!restricted || self.pool.can_run(agent, queued.task.kind()));
            if usable {
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
        if self.config.prefetch > 0 && !global_first {
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
    fn prefetch_target(&self, kind: &str) -> Option<AgentId> {
        self.pool
            .working_agents_for(kind)
            .into_iter()
            .filter(|id| self.local.contains(*id))
            .map(|id| (self.local.local_len(id), id))
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
    fn dispatch_idle_by_capability(&self, s: &mut Sched) {
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
    fn pick(&self, s: &mut Sched, agent: AgentId) -> Option<Assignment> {
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
            return Some(self.assign(s, agent, queued, Some((priority, location))));
        }
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
        let attempt = queued.task.attempt() + 1;
        self.bus.emit(TaskAssigned {
            task_id,
            agent_id: agent,
            attempt,
            priority: queued.task.priority(),
            queue_wait,
        });
        self.latency.record(queue_wait, &self.bus);
        let (abort, registration) = AbortHandle::new_pair();
        s.running.insert(
            task_id,
            Running {
                abort,
                stop: None,
                agent,
                attempt,
            },
        );
        Assignment {
            task: queued.task,
            registration,
        }
    }

    fn send(&self, s: &mut Sched, agent: AgentId, assignment: Assignment) {
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
        s.running.remove(&task.id());
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

    // ---------------------------------------------------------------- attempts

    async fn run(&self, agent: AgentId, assignment: Assignment) -> Attempt {
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

    /// Handles the end of an attempt; in event mode returns the agent's next task.
    fn finish(self: &Arc<Self>, agent: AgentId, attempt: Attempt) -> AfterAttempt {
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
        self.attempt_ended.notify_waiters();
        if agent_gone {
            return AfterAttempt::Exit;
        }
        if !self.is_event_mode() || self.draining.load(Ordering::Acquire) {
            return AfterAttempt::Wait;
        }
        self.take_work(&mut s, agent)
    }

    /// A panic escaped an attempt (outside the agent's own code, which the
    /// pool guards): the task is dead-lettered with the panic as its error
    /// (retrying would need the task, which unwound with the attempt), and
    /// the agent is replaced. The swarm goes on.
    fn attempt_panicked(&self, agent: AgentId, task_id: TaskId, message: String) {
        let mut s = self.sched.lock();
        let attempt = s.running.remove(&task_id).map_or(0, |r| r.attempt);
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
        self.attempt_ended.notify_waiters();
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
        // Whatever the reason, the agent is not running it: never leave it claimed.
        self.pool.release(agent);
        let task = refused.into_inner();
        if !self.pool.any_can_run(task.kind()) {
            self.dead_letter_unrunnable(s, task);
            return;
        }
        let queued = s.queued(task, Instant::now());
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
            let queued = s.queued(task, Instant::now());
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
        self.pool.forget_history(task_id);
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

    /// Drops the attempts still running (each records `task:interrupted` as
    /// it unwinds: pending again, uncharged), cancels retry timers and
    /// resolves every waiter as interrupted.
    pub(crate) fn interrupt_all(&self) {
        let mut s = self.sched.lock();
        for running in s.running.values_mut() {
            running.stop = Some(Stop::Shutdown);
            running.abort.abort();
        }
        for (task_id, timer) in s.retrying.drain() {
            timer.abort();
            self.pool.forget_history(task_id);
        }
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
        for (_, timer) in s.retrying.drain() {
            timer.abort();
        }
        for (_, waiter) in s.live.drain() {
            if let Some(w) = waiter {
                let _ = w.send(TaskOutcome::Interrupted);
            }
        }
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

    /// Puts a task the polling loop took back at the front of its queue (no
    /// agent could take it now).
    fn return_to_fifo(&self, queued: Queued) {
        let mut s = self.sched.lock();
        let (task_id, priority) = (queued.task.id(), queued.task.priority());
        s.fifo.push_front(queued);
        self.after_push(&mut s, task_id, priority, QueueLocation::Global);
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
    /// Whether `execute` was polled at all.
    started: bool,
}

enum AfterAttempt {
    Run(Assignment),
    Wait,
    Exit,
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
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
        let task_id = assignment.task.id();
        // The pool guards the agent's own code; this guards the rest, so a
        // bug cannot kill the loop and leave its inbox registered.
        let attempt = match AssertUnwindSafe(core.run(agent, assignment))
            .catch_unwind()
            .await
        {
            Ok(attempt) => attempt,
            Err(panic) => {
                core.attempt_panicked(agent, task_id, panic_message(&*panic));
                return;
            }
        };
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
        let mut taken = core.take_batch(batch).into_iter();
        while let Some((queued, _priority)) = taken.next() {
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
                core.assign(&mut s, agent, queued, None)
            };
            let task_id = assignment.task.id();
            let attempt = match AssertUnwindSafe(core.run(agent, assignment))
                .catch_unwind()
                .await
            {
                Ok(attempt) => attempt,
                Err(panic) => {
                    core.attempt_panicked(agent, task_id, panic_message(&*panic));
                    continue;
                }
            };
            let _ = core.finish(agent, attempt);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use swarm_agents::{Agent, ExecuteError, RetryPolicy, TaskOutput};
    use swarm_core::{AgentId, Task};

    use crate::{Swarm, TaskOutcome};

    /// Fails kind "fail" (retryable), completes the rest.
    #[derive(Clone)]
    struct Flaky;

    impl Agent for Flaky {
        async fn execute(&self, task: &Task) -> Result<TaskOutput, ExecuteError> {
            match task.kind() {
                "fail" => Err(ExecuteError::retryable("flaky")),
                _ => Ok(TaskOutput::from("ok")),
            }
        }
    }

    async fn flaky_swarm() -> Swarm {
        Swarm::builder()
            .agents(1)
            .autoscale(false)
            .agent_factory(|_| Flaky)
            .retry(RetryPolicy {
                max_attempts: 5,
                base: Duration::from_secs(60),
                cap: Duration::from_secs(60),
            })
            .build()
            .await
            .unwrap()
    }

    async fn waiting_retry(swarm: &Swarm) -> crate::TaskHandle {
        let handle = swarm
            .submit(Task::builder("fail").build().unwrap())
            .await
            .unwrap();
        while swarm.stats().waiting_retry == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(swarm.core().pool.history(handle.id()), ["flaky"]);
        handle
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_task_leaves_no_error_history() {
        let swarm = flaky_swarm().await;
        let handle = waiting_retry(&swarm).await;
        let id = handle.id();
        swarm.cancel(id).unwrap();
        assert_eq!(handle.await, TaskOutcome::Cancelled { was_running: false });
        assert!(swarm.core().pool.history(id).is_empty(), "history leaked");
        swarm.shutdown(Duration::from_secs(1)).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_interrupted_task_leaves_no_error_history() {
        let swarm = flaky_swarm().await;
        let handle = waiting_retry(&swarm).await;
        let id = handle.id();
        swarm.shutdown(Duration::from_secs(1)).await.unwrap();
        assert_eq!(handle.await, TaskOutcome::Interrupted);
        assert!(swarm.core().pool.history(id).is_empty(), "history leaked");
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_inbox_removes_the_agent_instead_of_re_offering_it() {
        let swarm = Swarm::builder()
            .agents(1)
            .max_agents(1)
            .autoscale(false)
            .agent_factory(|_| Flaky)
            .build()
            .await
            .unwrap();
        let core = swarm.core();
        let dead = AgentId::new(0);
        // Its loop ends (its inbox closes) while the agent stays registered.
        {
            let (sender, receiver) = tokio::sync::mpsc::channel(1);
            drop(receiver);
            let mut inboxes = core.inboxes.lock();
            let inbox = inboxes.get_mut(&dead).unwrap();
            inbox.sender = sender;
        }
        tokio::task::yield_now().await;
        let handle = swarm
            .submit(Task::builder("ok").build().unwrap())
            .await
            .unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .expect("the task was re-offered to the dead agent for ever");
        match outcome {
            TaskOutcome::Completed { agent_id, .. } => assert_ne!(agent_id, dead),
            other => panic!("{other:?}"),
        }
        assert!(
            core.pool.agent(dead).is_none(),
            "the dead agent stayed in the pool"
        );
        assert_eq!(core.pool.counts().active(), 1, "it was not replaced");
        swarm.shutdown(Duration::from_secs(1)).await.unwrap();
    }
}
