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
//! exists except the one of `flow::Delays` (while a task waits for its due
//! time or a retry back-off), the one of `flow::Limits` (while a parked task
//! waits for tokens) and an attempt's timeout (while it runs).
//!
//! Polling mode (the baseline): one loop wakes every `interval`, takes up to
//! `batch` tasks in FIFO order and runs them one after another.
//!
//! Where a task's life is decided:
//! - `admission`: accepted or refused (duplicates, the queue bound), where an
//!   accepted or recovered task enters, dead-lettered if no agent can run it;
//! - `placement`: which agent gets it, from which queue (idle agent, affinity,
//!   prefetch, local vs global head, stealing, capabilities);
//! - `attempt`: running it, and what the attempt's end decides (completed,
//!   retry back-off, dead letter, cancelled, interrupted);
//! - `flow`: when an accepted task may start (delays and retry back-offs,
//!   rate and concurrency limits);
//! - `cancel`, `shutdown`: stopping it by request, or with the swarm;
//! - `membership`: agents' loops starting and ending with the pool;
//! - `polling`: the baseline's loop and queue;
//! - this module: the shared state, and the one place the mode is decided.

use std::collections::VecDeque;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{AbortHandle, AbortRegistration, Abortable, Aborted};
use parking_lot::Mutex;
use swarm_agents::{AgentPool, BoxAgentFactory, ExecuteRefused, Executed, Next, RefusedReason};
use swarm_core::event::{
    FailureReason, QueueBacklog, QueueLocation, TaskAssigned, TaskCancelled, TaskCritical,
    TaskDeadLettered, TaskDequeued, TaskEnqueued, TaskFailed, TaskInterrupted, WorkStolen,
};
use swarm_core::{AgentId, EventBus, Priority, Task, TaskId};
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
///
/// The queues hold one of these per waiting task, so it is kept small: 80
/// bytes on 64-bit targets (the task's 64, `since` and `order`). Rare state
/// lives elsewhere: a limit's promise of capacity in `flow::Limits`, the
/// task's rarely set options in its own box.
pub(crate) struct Queued {
    task: Task,
    since: Stamp,
    order: u64,
}

/// A moment as nanoseconds after the scheduler's epoch (`Sched::epoch`): 8
/// bytes where tokio's `Instant` takes 16, and good for 584 years.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp(u64);

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
    /// Concurrency slots it holds, given back when the attempt ends.
    held: flow::Held,
}

struct Sched {
    /// Event mode's shared queue.
    global: GlobalQueue,
    /// Polling mode's queue: FIFO, priorities ignored (the seed's "before").
    fifo: VecDeque<Queued>,
    /// Live tasks (queued, delayed, waiting for a retry, or running) and their waiters.
    live: IdMap<TaskId, Option<oneshot::Sender<TaskOutcome>>>,
    running: IdMap<TaskId, Running>,
    /// Tasks waiting for their due time or a retry back-off (`flow::Delays`),
    /// outside the queues.
    delays: flow::Delays,
    /// Rate and concurrency limits and the tasks they hold (`flow::Limits`).
    limits: flow::Limits,
    backlog_high: bool,
    next_order: u64,
    /// What `Stamp`s count from: the scheduler's creation, read from the
    /// runtime's clock (so paused time in tests stamps consistently).
    epoch: Instant,
}

impl Sched {
    fn queued(&mut self, task: Task, since: Instant) -> Queued {
        let order = self.next_order;
        self.next_order += 1;
        Queued {
            task,
            since: self.stamp(since),
            order,
        }
    }

    /// `at` as a `Stamp` (the epoch if `at` is earlier).
    fn stamp(&self, at: Instant) -> Stamp {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        Stamp(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The time from `since` to now.
    fn elapsed_since(&self, since: Stamp) -> Duration {
        self.epoch
            .elapsed()
            .saturating_sub(Duration::from_nanos(since.0))
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
    pub(crate) limits: Vec<flow::LimitSpec>,
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
    /// Paused by the operator (`Swarm::pause`): no task starts; running ones
    /// finish. Changed only with `sched` held (see `set_paused`).
    paused: AtomicBool,
    /// Notified each time an attempt ends (shutdown waits on it).
    attempt_ended: Notify,
    latency: LatencyWatch,
    runtime: tokio::runtime::Handle,
    /// This core, for timers that must not keep it alive (the delay timer).
    me: std::sync::Weak<Core>,
}

mod admission;
mod attempt;
mod cancel;
pub(crate) mod flow;
mod global;
mod membership;
mod placement;
mod polling;
mod probe;
mod shutdown;
#[cfg(test)]
mod tests;

pub(crate) use global::GlobalQueue;
pub(crate) use membership::Membership;
pub(crate) use polling::polling_loop;
pub use probe::GlobalQueueProbe;

impl Core {
    pub(crate) fn new(
        bus: EventBus,
        pool: AgentPool<BoxAgentFactory>,
        counters: Arc<Counters>,
        mut config: SchedConfig,
        global: GlobalQueue,
        runtime: tokio::runtime::Handle,
    ) -> Arc<Core> {
        let latency = std::mem::replace(&mut config.latency, LatencyWatch::new(None));
        let steal_threshold = config.steal_threshold;
        let limits = flow::Limits::new(&config.limits);
        let epoch = {
            let _clock = runtime.enter();
            Instant::now()
        };
        Arc::new_cyclic(|me| Core {
            me: me.clone(),
            bus,
            pool,
            counters,
            config,
            sched: Mutex::new(Sched {
                global,
                fifo: VecDeque::new(),
                live: IdMap::default(),
                running: IdMap::default(),
                delays: flow::Delays::default(),
                limits,
                backlog_high: false,
                next_order: 0,
                epoch,
            }),
            local: StealPool::new(steal_threshold),
            inboxes: Mutex::new(IdMap::default()),
            queued: Arc::new(AtomicUsize::new(0)),
            accepting: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            attempt_ended: Notify::new(),
            latency,
            runtime,
        })
    }

    pub(crate) fn queued_counter(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.queued)
    }

    // ------------------------------------------------ how work reaches agents
    //
    // The one place the scheduling mode is decided; every other path is
    // shared by both modes or belongs to one of them.

    /// Places a task just accepted: event mode hands it to an idle agent or
    /// queues it (`placement`); polling mode queues it FIFO for the next poll.
    fn enqueue_new(self: &Arc<Self>, s: &mut Sched, queued: Queued) {
        if let Some(queued) = self.hold_if_limited(s, queued) {
            self.place_admitted(s, queued);
        }
    }

    /// [`enqueue_new`](Self::enqueue_new) for a task every limit admitted.
    fn place_admitted(self: &Arc<Self>, s: &mut Sched, queued: Queued) {
        match self.config.mode {
            SchedulerMode::Event => self.place_event(s, queued),
            SchedulerMode::Polling { .. } => self.push_fifo(s, queued),
        }
    }

    /// Queues a task again (recovered, retry due, refused by its agent): event
    /// mode offers the global queue to idle agents at once.
    fn requeue(&self, s: &mut Sched, queued: Queued) {
        let Some(queued) = self.hold_if_limited(s, queued) else {
            return;
        };
        match self.config.mode {
            SchedulerMode::Event => {
                self.push_global(s, queued);
                self.dispatch_idle(s);
            }
            SchedulerMode::Polling { .. } => self.push_fifo(s, queued),
        }
    }

    /// Whether each agent runs a loop of its own (event mode); in polling mode
    /// the polling loop drives the agents.
    fn agents_have_loops(&self) -> bool {
        matches!(self.config.mode, SchedulerMode::Event)
    }

    /// What an agent does once its attempt ended: in event mode it takes its
    /// next task itself; in polling mode the polling loop decides.
    fn after_attempt(&self, s: &mut Sched, agent: AgentId) -> AfterAttempt {
        match self.config.mode {
            SchedulerMode::Event => self.take_work(s, agent),
            SchedulerMode::Polling { .. } => AfterAttempt::Wait,
        }
    }

    /// Whether the operator paused the swarm: no task starts.
    pub(crate) fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Whether a placement may start a task now: not paused, and no shutdown
    /// under way (it lets running attempts finish and leaves the rest pending,
    /// so a slot freed or a delay due while it drains starts nothing).
    fn may_start(&self) -> bool {
        !self.is_paused() && !self.draining.load(Ordering::Acquire)
    }

    /// Pauses or resumes starting tasks. Set under the scheduler lock, so no
    /// placement is half-way when it changes; resuming hands queued work to
    /// idle agents at once (nothing polls while paused).
    pub(crate) fn set_paused(&self, paused: bool) {
        let mut s = self.sched.lock();
        let was = self.paused.swap(paused, Ordering::AcqRel);
        if was && !paused {
            // Affinity may have queued tasks locally for agents that sat idle
            // while paused: those agents take them first.
            for agent in self.pool.idle_agents() {
                if self.local.local_len(agent) > 0 && self.pool.claim(agent).is_ok() {
                    match self.pick(&mut s, agent) {
                        Some(assignment) => self.send(&mut s, agent, assignment),
                        None => self.pool.release(agent),
                    }
                }
            }
            self.dispatch_idle(&mut s);
        }
    }

    /// Tasks waiting in a queue now (global, local and the polling FIFO).
    pub(crate) fn queued_now(&self) -> u64 {
        self.queued.load(Ordering::Relaxed) as u64
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

    pub(crate) fn stats(&self) -> SwarmStats {
        let (queued, waiting_retry, running, delayed, throttled) = {
            let s = self.sched.lock();
            (
                (s.global.len() + s.fifo.len() + self.local.total_len()) as u64,
                s.delays.retrying_len() as u64,
                s.running.len() as u64,
                s.delays.len() as u64,
                s.limits.len() as u64,
            )
        };
        let mut stats = SwarmStats::from_counters(
            &self.counters,
            self.pool.counts(),
            crate::stats::Load {
                queued,
                waiting_retry,
                running,
            },
        );
        stats.delayed = delayed;
        stats.throttled = throttled;
        stats
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
