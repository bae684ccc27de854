//! The management API: look tasks up, list them, act on dead letters,
//! pause and resume, scale by hand, and an overview for a dashboard.
//!
//! Reads come from one live view of the log (a [`SystemState`] the swarm
//! keeps up to date from its event store, see `view`), so they cover live
//! tasks and finished ones still in the state, and in a distributed swarm
//! every node's tasks. The view follows the store asynchronously: a read
//! right after an action of this process may not show it yet;
//! [`Swarm::sync_view`] waits until it does. Every action (retry, discard,
//! pause, resume) is an event in the log, recorded before it takes effect,
//! so a replay after a crash knows it happened.
//!
//! Pause is part of the log: a swarm restarted on a log whose latest pause
//! event is `swarm:paused` starts paused (the log says why). In a distributed
//! swarm it holds for every node, since each follows the shared log.

mod error;
mod view;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use swarm_agents::{AgentPool, BoxAgentFactory};
use swarm_core::event::{
    AgentHealth, SwarmPaused, SwarmResumed, TaskDeadLetterRetried, TaskDiscarded,
};
use swarm_core::{
    AgentId, CatalogEvent, Event, EventBus, Priority, Subscription, TaskId, Timestamp,
};
use swarm_store::{EventStore, StoredEvent, SystemState, TaskRecord, TaskStatus};
use tokio::task::JoinHandle;

use crate::handle::TaskHandle;
use crate::journal::Journal;
use crate::scheduler::Core;
use crate::swarm::Swarm;

pub use error::ManageError;
pub(crate) use view::Shared;

/// The most errors a [`TaskInfo`] lists (the latest ones).
const MAX_ERRORS: usize = 20;

/// The default and the largest page of [`TaskFilter::limit`].
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// How long an action waits for the live view to reach what it recorded.
const VIEW_TIMEOUT: Duration = Duration::from_secs(30);

/// One task as the swarm knows it (live, or finished and still in the state).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TaskInfo {
    /// The task.
    pub id: TaskId,
    /// Its kind (`"summarize"`, ...).
    pub kind: String,
    /// Its priority.
    pub priority: Priority,
    /// Where it stands.
    pub status: TaskStatus,
    /// Attempts started so far (since its latest dead-letter retry).
    pub attempts: u32,
    /// The attempts it may use (its own limit, else the swarm's retry policy).
    pub max_attempts: u32,
    /// The agent running it, or that ran its latest attempt (agent ids are
    /// per node in a distributed swarm).
    pub agent: Option<AgentId>,
    /// The errors of its failed attempts, oldest first (the latest 20).
    pub errors: Vec<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// The stored timestamp of its latest event, when known.
    pub updated_at: Option<Timestamp>,
    /// The log sequence of its `task:created` (where [`Swarm::task_events`] starts).
    pub created_seq: u64,
}

/// Which tasks [`Swarm::tasks`] lists: a page of them in ascending id order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TaskFilter {
    /// Only tasks with this status.
    pub status: Option<TaskStatus>,
    /// Only tasks of this kind.
    pub kind: Option<String>,
    /// The most tasks in a page (default 100; 0 counts as 1, above 1000 as 1000).
    pub limit: usize,
    /// Only tasks with a greater id: the [`TaskPage::next`] of the previous page.
    pub after: Option<TaskId>,
}

impl Default for TaskFilter {
    fn default() -> Self {
        TaskFilter {
            status: None,
            kind: None,
            limit: DEFAULT_LIMIT,
            after: None,
        }
    }
}

impl TaskFilter {
    /// Every task, the default page size.
    pub fn new() -> Self {
        TaskFilter::default()
    }

    /// Only tasks with `status`.
    #[must_use]
    pub fn status(mut self, status: TaskStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Only tasks of `kind`.
    #[must_use]
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    /// At most `limit` tasks (1..=1000).
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// The page after `id` (a [`TaskPage::next`]).
    #[must_use]
    pub fn after(mut self, id: TaskId) -> Self {
        self.after = Some(id);
        self
    }
}

/// A page of tasks, in ascending id order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TaskPage {
    /// The tasks.
    pub tasks: Vec<TaskInfo>,
    /// The cursor of the next page ([`TaskFilter::after`]), if there is one.
    pub next: Option<TaskId>,
}

/// What an agent is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AgentState {
    /// Waiting for a task.
    Idle,
    /// Reserved for a task about to start.
    Claimed,
    /// Running a task.
    Busy,
    /// Created in reserve; gets tasks once activated.
    Reserve,
}

impl From<swarm_agents::AgentState> for AgentState {
    fn from(state: swarm_agents::AgentState) -> Self {
        match state {
            swarm_agents::AgentState::Idle => AgentState::Idle,
            swarm_agents::AgentState::Claimed => AgentState::Claimed,
            swarm_agents::AgentState::Busy => AgentState::Busy,
            swarm_agents::AgentState::Reserve => AgentState::Reserve,
        }
    }
}

/// One agent of this node's pool.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AgentView {
    /// The agent.
    pub id: AgentId,
    /// Its health.
    pub health: AgentHealth,
    /// What it is doing.
    pub state: AgentState,
    /// The task it runs, if busy.
    pub current_task: Option<TaskId>,
    /// Tasks it completed.
    pub completed: u64,
    /// Attempts of it that failed.
    pub failed: u64,
}

/// Queue-wait percentiles of one priority, over its recent starts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QueueWait {
    /// The median wait, in milliseconds.
    pub p50_ms: f64,
    /// The 99th percentile, in milliseconds.
    pub p99_ms: f64,
}

/// Tasks by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TaskCounts {
    /// Accepted, waiting to be queued or started (in a distributed swarm:
    /// waiting in the shared queue).
    pub pending: u64,
    /// Waiting in a local queue.
    pub queued: u64,
    /// An attempt is running.
    pub running: u64,
    /// The latest attempt failed and a retry is due.
    pub failed: u64,
    /// Completed, in the whole log (including tasks retired from the state).
    pub completed: u64,
    /// Dead-lettered, in the whole log (a task counts once however often it
    /// was retried and dead-lettered again).
    pub dead_lettered: u64,
    /// Cancelled, in the whole log.
    pub cancelled: u64,
    /// Dead letters waiting for an operator now (neither retried nor discarded).
    pub dead_letters: u64,
}

/// The swarm at a glance, for a dashboard.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Overview {
    /// Tasks by status.
    pub tasks: TaskCounts,
    /// Tasks waiting to start (pending or queued), by priority:
    /// `"critical"`, `"high"`, `"normal"`, `"low"`.
    pub queues: BTreeMap<String, u64>,
    /// This node's agents, by id.
    pub agents: Vec<AgentView>,
    /// Completions per second over the last 10 whole seconds (every node's,
    /// in a distributed swarm).
    pub throughput_per_sec: f64,
    /// Queue-wait p50 / p99 per priority over the latest 1024 starts of each.
    pub queue_wait_ms: BTreeMap<String, QueueWait>,
    /// Whether the swarm is paused.
    pub paused: bool,
}

/// The work source, as management acts on it.
#[derive(Clone)]
pub(crate) enum Source {
    Local(Arc<Core>),
    #[cfg(feature = "nats")]
    JetStream(Arc<crate::distributed::JetStreamSource>),
}

impl view::PauseGate for std::sync::Weak<Core> {
    fn set_paused(&self, paused: bool) {
        if let Some(core) = self.upgrade() {
            core.set_paused(paused);
        }
    }
}

#[cfg(feature = "nats")]
impl view::PauseGate for std::sync::Weak<crate::distributed::JetStreamSource> {
    fn set_paused(&self, paused: bool) {
        if let Some(source) = self.upgrade() {
            source.set_paused(paused);
        }
    }
}

/// What the management API needs of the swarm, kept in it.
pub(crate) struct Manage {
    shared: Arc<Shared>,
    follower: Mutex<Option<JoinHandle<()>>>,
    source: Source,
    journal: Arc<Journal>,
    bus: EventBus,
    store: Arc<dyn EventStore>,
    pool: AgentPool<BoxAgentFactory>,
    min_agents: usize,
    max_agents: usize,
    /// Per-agent counts of this node (distributed: the shared log mixes the
    /// agents of every node, whose ids overlap).
    tally: Option<Arc<AgentTally>>,
    _tally_subscriptions: Vec<Subscription>,
}

impl Manage {
    /// Keeps `state` (replayed from `store`) live and gates `source` from
    /// the log's pause events. The gate is set from `state` at once.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        state: SystemState,
        source: Source,
        journal: Arc<Journal>,
        bus: EventBus,
        store: Arc<dyn EventStore>,
        pool: AgentPool<BoxAgentFactory>,
        (min_agents, max_agents): (usize, usize),
        runtime: &tokio::runtime::Handle,
    ) -> Manage {
        let shared = Shared::new(state);
        let paused = shared.view.read().paused();
        let gate: Arc<dyn view::PauseGate> = match &source {
            Source::Local(core) => Arc::new(Arc::downgrade(core)),
            #[cfg(feature = "nats")]
            Source::JetStream(source) => Arc::new(Arc::downgrade(source)),
        };
        if paused {
            gate.set_paused(true);
            tracing::warn!(
                "the event log says the swarm was paused: it starts paused; resume it to start tasks"
            );
        }
        let follower = runtime.spawn(view::follow(
            Arc::downgrade(&shared),
            Arc::clone(&store),
            Some(gate),
        ));
        let (tally, subscriptions) = match &source {
            Source::Local(_) => (None, Vec::new()),
            #[cfg(feature = "nats")]
            Source::JetStream(_) => {
                let (tally, subscriptions) = AgentTally::attach(&bus);
                (Some(tally), subscriptions)
            }
        };
        Manage {
            shared,
            follower: Mutex::new(Some(follower)),
            source,
            journal,
            bus,
            store,
            pool,
            min_agents,
            max_agents,
            tally,
            _tally_subscriptions: subscriptions,
        }
    }

    /// Stops following the log (the swarm is dropped).
    pub(crate) fn stop(&self) {
        if let Some(follower) = self.follower.lock().take() {
            follower.abort();
        }
    }

    fn info(&self, record: &TaskRecord) -> TaskInfo {
        let skip = record.errors.len().saturating_sub(MAX_ERRORS);
        TaskInfo {
            id: record.task.id(),
            kind: record.task.kind().to_owned(),
            priority: record.task.priority(),
            status: record.status,
            attempts: record.attempts,
            max_attempts: self.pool.config().retry.max_attempts_for(&record.task),
            agent: record.agent,
            errors: record.errors[skip..].to_vec(),
            created_at: record.task.created_at(),
            updated_at: record.updated_at,
            created_seq: record.created_seq,
        }
    }

    /// Waits until the view has applied every event recorded so far.
    async fn sync(&self) -> Result<(), ManageError> {
        self.journal.barrier().await?;
        let wanted = self.store.last_seq().await?;
        self.shared
            .wait_applied(wanted, VIEW_TIMEOUT)
            .await
            .map_err(|applied| match self.shared.failure.lock().clone() {
                Some(error) => ManageError::from(error),
                None => ManageError::ViewBehind { applied, wanted },
            })
    }

    /// The dead letter `id`, ready to run again (attempts 0), the attempts
    /// it used, and when it was dead-lettered (µs since the epoch; 0 if unknown).
    fn dead_letter(&self, id: TaskId) -> Result<(swarm_core::Task, u32, u64), ManageError> {
        let view = self.shared.view.read();
        let record = view.state.task(id).ok_or(ManageError::UnknownTask(id))?;
        if record.status != TaskStatus::DeadLettered {
            return Err(ManageError::NotDeadLettered {
                id,
                status: record.status,
            });
        }
        let mut task = record.task.clone();
        task.set_attempt(0);
        let at = record.updated_at.map_or(0, Timestamp::as_micros);
        Ok((task, record.attempts, at))
    }

    /// Records `event` and waits until the log (and the view) has it.
    async fn record<E: CatalogEvent>(
        &self,
        event: E,
        task: Option<TaskId>,
    ) -> Result<(), ManageError> {
        self.bus.emit(event);
        match task {
            Some(task) => self.journal.barrier_for(task).await?,
            None => self.journal.barrier().await?,
        }
        self.sync().await
    }
}

/// Per-agent counts of this node, from its bus (distributed mode).
#[derive(Default)]
struct AgentTally {
    agents: Mutex<std::collections::HashMap<AgentId, Tally>>,
}

/// One agent's line of an [`AgentTally`].
#[derive(Default)]
struct Tally {
    current: Option<TaskId>,
    completed: u64,
    failed: u64,
}

#[cfg(feature = "nats")]
impl AgentTally {
    fn attach(bus: &EventBus) -> (Arc<AgentTally>, Vec<Subscription>) {
        use swarm_core::EventKind;
        let tally = Arc::new(AgentTally::default());
        let t = Arc::clone(&tally);
        let kinds = [
            EventKind::AgentBusy,
            EventKind::AgentAvailable,
            EventKind::TaskCompleted,
            EventKind::TaskFailed,
            EventKind::AgentRemoved,
        ];
        let subscription = bus.on_kinds(&kinds, move |event| {
            let mut agents = t.agents.lock();
            match event {
                Event::AgentBusy(e) => {
                    agents.entry(e.agent_id).or_default().current = Some(e.task_id);
                }
                Event::AgentAvailable(e) => agents.entry(e.agent_id).or_default().current = None,
                Event::TaskCompleted(e) => {
                    let a = agents.entry(e.agent_id).or_default();
                    a.current = None;
                    a.completed += 1;
                }
                Event::TaskFailed(e) => {
                    if let Some(agent) = e.agent_id {
                        let a = agents.entry(agent).or_default();
                        a.current = None;
                        a.failed += 1;
                    }
                }
                Event::AgentRemoved(e) => {
                    agents.remove(&e.agent_id);
                }
                _ => {}
            }
        });
        (tally, vec![subscription])
    }
}

impl Swarm {
    /// One task: live, or finished and still in the swarm's state.
    ///
    /// Management reads come from a live view of the event log, which
    /// follows the store: a read right after an action may not show it yet
    /// ([`sync_view`](Self::sync_view) waits until it does; the actions of
    /// this API wait for it themselves).
    #[must_use]
    pub fn task(&self, id: TaskId) -> Option<TaskInfo> {
        let m = self.manage();
        let view = m.shared.view.read();
        view.state.task(id).map(|r| m.info(r))
    }

    /// A page of tasks matching `filter`, in ascending id order.
    #[must_use]
    pub fn tasks(&self, filter: &TaskFilter) -> TaskPage {
        let m = self.manage();
        let limit = filter.limit.clamp(1, MAX_LIMIT);
        let mut records: Vec<&TaskRecord>;
        let view = m.shared.view.read();
        records = view
            .state
            .tasks()
            .filter(|r| filter.status.is_none_or(|s| r.status == s))
            .filter(|r| filter.kind.as_deref().is_none_or(|k| r.task.kind() == k))
            .filter(|r| filter.after.is_none_or(|after| r.task.id() > after))
            .collect();
        records.sort_unstable_by_key(|r| r.task.id());
        let more = records.len() > limit;
        records.truncate(limit);
        let tasks: Vec<TaskInfo> = records.iter().map(|r| m.info(r)).collect();
        drop(view);
        let next = if more {
            tasks.last().map(|t| t.id)
        } else {
            None
        };
        TaskPage { tasks, next }
    }

    /// A page of the dead letters (tasks dead-lettered and neither retried
    /// nor discarded): [`tasks`](Self::tasks) with the status forced to
    /// [`TaskStatus::DeadLettered`].
    #[must_use]
    pub fn dead_letters(&self, filter: &TaskFilter) -> TaskPage {
        let filter = TaskFilter {
            status: Some(TaskStatus::DeadLettered),
            ..filter.clone()
        };
        self.tasks(&filter)
    }

    /// The events of task `id` from the log, oldest first: from its
    /// `task:created` on, at most `limit` of them, up to its final event
    /// (completed, cancelled, discarded, or its latest dead letter).
    pub async fn task_events(
        &self,
        id: TaskId,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, ManageError> {
        use futures_util::StreamExt;
        let m = self.manage();
        let (from, status, updated_at) = {
            let view = m.shared.view.read();
            let record = view.state.task(id).ok_or(ManageError::UnknownTask(id))?;
            (record.created_seq.max(1), record.status, record.updated_at)
        };
        // At or past its latest event: a dead letter there is its last one.
        let latest = |at: Timestamp| updated_at.is_none_or(|u| at >= u);
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let end = m.store.last_seq().await?;
        let mut events = m.store.read(from);
        while let Some(stored) = events.next().await {
            let stored = stored?;
            // Past the log's end when asked, or past a finished task's last event.
            let past_last =
                status.is_terminal() && updated_at.is_some_and(|u| stored.timestamp > u);
            if stored.seq > end || past_last {
                break;
            }
            if !concerns(&stored.event, id) {
                continue;
            }
            // The id of a finished task may name a new task later in the log.
            if matches!(stored.event, Event::TaskCreated(_)) && !out.is_empty() {
                break;
            }
            let last = match &stored.event {
                Event::TaskCompleted(_) | Event::TaskCancelled(_) | Event::TaskDiscarded(_) => true,
                // An earlier dead letter may have been retried since.
                Event::TaskDeadLettered(_) => {
                    status == TaskStatus::DeadLettered && latest(stored.timestamp)
                }
                _ => false,
            };
            out.push(stored);
            if last || out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Sends dead letter `id` back to the queue with fresh attempts (same id):
    /// records `task:dead_letter_retried` (durably, with a durable store)
    /// before it queues the task, so a crash after it replays to a pending
    /// task that the restart queues. The handle resolves with the new
    /// outcome. In a distributed swarm the task is published on the work
    /// queue again (any node may run it).
    pub async fn retry_dead_letter(&self, id: TaskId) -> Result<TaskHandle, ManageError> {
        let m = self.manage();
        m.sync().await?;
        #[cfg_attr(not(feature = "nats"), allow(unused_variables))]
        let (task, attempts, dead_at) = m.dead_letter(id)?;
        let retried = TaskDeadLetterRetried {
            task_id: id,
            attempts,
        };
        match &m.source {
            Source::Local(core) => {
                let mut receivers = core
                    .admit(std::slice::from_ref(&task))
                    .map_err(ManageError::Submit)?;
                m.bus.emit(retried);
                if let Err(error) = m.journal.barrier().await {
                    core.unadmit(std::slice::from_ref(&task));
                    return Err(error.into());
                }
                core.place(vec![task]);
                let receiver = receivers.pop().ok_or(ManageError::ShuttingDown)?;
                // The view shows the retry before this returns.
                m.sync().await?;
                Ok(TaskHandle::new(id, receiver))
            }
            #[cfg(feature = "nats")]
            Source::JetStream(source) => {
                if source.is_waiting(id) {
                    return Err(ManageError::Submit(crate::SubmitError::Duplicate(
                        Box::new(task),
                    )));
                }
                let mut receivers = source.wait_for(std::slice::from_ref(&task));
                m.bus.emit(retried);
                if let Err(error) = m.journal.barrier_for(id).await {
                    source.unwait(std::slice::from_ref(&task));
                    return Err(error.into());
                }
                if let Err(error) = source.publish_retry(&task, dead_at).await {
                    // The log says retried; the queue does not have it.
                    m.bus.emit(swarm_core::event::TaskDeadLettered {
                        task_id: id,
                        attempts: 0,
                        errors: vec![format!("the task queue did not take the retry: {error}")],
                    });
                    source.unwait(std::slice::from_ref(&task));
                    let _ = m.journal.barrier_for(id).await;
                    return Err(ManageError::Queue(Arc::new(error)));
                }
                let receiver = receivers.pop().ok_or(ManageError::ShuttingDown)?;
                m.sync().await?;
                Ok(TaskHandle::new(id, receiver))
            }
        }
    }

    /// Drops dead letter `id` for good: records `task:discarded`; it is no
    /// longer listed in [`dead_letters`](Self::dead_letters) (also after a
    /// replay) and never runs again.
    pub async fn discard_dead_letter(&self, id: TaskId) -> Result<(), ManageError> {
        let m = self.manage();
        m.sync().await?;
        m.dead_letter(id)?;
        m.record(TaskDiscarded { task_id: id }, Some(id)).await
    }

    /// Pauses the swarm: records `swarm:paused`; once this returns no task
    /// starts (on every node of a distributed swarm, as each reads the log)
    /// until [`resume`](Self::resume). Running attempts finish; `submit`
    /// still accepts tasks, which wait in the queue; nothing polls while
    /// paused. A swarm restarted on this log starts paused. Pausing a paused
    /// swarm records nothing.
    pub async fn pause(&self) -> Result<(), ManageError> {
        let m = self.manage();
        m.sync().await?;
        if self.is_paused() {
            return Ok(());
        }
        let running = self.stats().running;
        m.record(SwarmPaused { running }, None).await?;
        // A shared log's failed append charges no task: check the outcome.
        if self.is_paused() {
            Ok(())
        } else {
            Err(ManageError::NotRecorded { action: "pause" })
        }
    }

    /// Resumes a paused swarm: records `swarm:resumed`; queued tasks start at
    /// once. Resuming a running swarm records nothing.
    pub async fn resume(&self) -> Result<(), ManageError> {
        let m = self.manage();
        m.sync().await?;
        if !self.is_paused() {
            return Ok(());
        }
        let queued = match &m.source {
            Source::Local(core) => core.queued_now(),
            #[cfg(feature = "nats")]
            Source::JetStream(_) => 0,
        };
        m.record(SwarmResumed { queued }, None).await?;
        if self.is_paused() {
            Err(ManageError::NotRecorded { action: "resume" })
        } else {
            Ok(())
        }
    }

    /// Whether the swarm is paused (as the live view of the log says).
    #[must_use]
    pub fn is_paused(&self) -> bool {
        self.manage().shared.view.read().paused()
    }

    /// Waits until the live view that [`task`](Self::task),
    /// [`tasks`](Self::tasks) and [`overview`](Self::overview) read has
    /// applied every event recorded so far.
    pub async fn sync_view(&self) -> Result<(), ManageError> {
        self.manage().sync().await
    }

    /// Sets this node's active agents to `agents`, within the swarm's bounds
    /// (`min_agents`, default the starting agents, to `max_agents`): grows by
    /// activating reserve agents first, then through the factory; shrinks by
    /// retiring idle agents, newest first (busy agents are not stopped, so the
    /// count may stay above `agents` while they run). Returns the active
    /// agents now. An autoscaler, if enabled, goes on deciding from load.
    pub async fn scale_to(&self, agents: usize) -> Result<usize, ManageError> {
        let m = self.manage();
        if agents < m.min_agents || agents > m.max_agents {
            return Err(ManageError::Scale {
                requested: agents,
                min: m.min_agents,
                max: m.max_agents,
            });
        }
        let active = m.pool.counts().active();
        if agents > active {
            let activated = m.pool.activate_reserve(agents - active).len();
            let missing = agents - active - activated;
            if missing > 0 {
                if let Err(source) = m.pool.spawn_agents(missing) {
                    return Err(ManageError::CreateAgents {
                        agents: m.pool.counts().active(),
                        source,
                    });
                }
            }
        } else if agents < active {
            m.pool.retire_idle(active - agents, "scaled");
        }
        Ok(m.pool.counts().active())
    }

    /// The swarm at a glance: task counts, queue depth and queue-wait
    /// percentiles per priority, this node's agents, throughput, paused.
    #[must_use]
    pub fn overview(&self) -> Overview {
        let m = self.manage();
        let pool_agents = m.pool.agents();
        let now = Timestamp::now();
        let view = m.shared.view.read();
        let mut tasks = TaskCounts::default();
        let mut waiting = [0u64; Priority::LEVELS];
        for record in view.state.tasks() {
            match record.status {
                TaskStatus::Pending => tasks.pending += 1,
                TaskStatus::Queued => tasks.queued += 1,
                TaskStatus::Running => tasks.running += 1,
                TaskStatus::Failed => tasks.failed += 1,
                TaskStatus::DeadLettered => tasks.dead_letters += 1,
                TaskStatus::Completed | TaskStatus::Cancelled => {}
            }
            if matches!(record.status, TaskStatus::Pending | TaskStatus::Queued) {
                waiting[record.task.priority().level()] += 1;
            }
        }
        let counters = view.state.counters();
        tasks.completed = counters.tasks_completed;
        tasks.dead_lettered = counters.tasks_dead_lettered;
        tasks.cancelled = counters.tasks_cancelled;
        let mut queues = BTreeMap::new();
        let mut queue_wait_ms = BTreeMap::new();
        for priority in Priority::ALL {
            queues.insert(priority.as_str().to_owned(), waiting[priority.level()]);
            let (p50_ms, p99_ms) = view.queue_wait_ms(priority);
            queue_wait_ms.insert(priority.as_str().to_owned(), QueueWait { p50_ms, p99_ms });
        }
        let throughput_per_sec = view.throughput_per_sec(now);
        let paused = view.paused();
        let mut agents: Vec<AgentView> = pool_agents
            .iter()
            .map(|a| {
                let (current_task, completed, failed) = match &m.tally {
                    Some(_) => (None, 0, 0),
                    None => view
                        .state
                        .agent(a.id)
                        .map_or((None, 0, 0), |r| (r.busy_with, r.completed, r.failed)),
                };
                AgentView {
                    id: a.id,
                    health: a.health,
                    state: a.state.into(),
                    current_task,
                    completed,
                    failed,
                }
            })
            .collect();
        drop(view);
        if let Some(tally) = &m.tally {
            let counts = tally.agents.lock();
            for agent in &mut agents {
                if let Some(tally) = counts.get(&agent.id) {
                    agent.current_task = tally.current;
                    agent.completed = tally.completed;
                    agent.failed = tally.failed;
                }
            }
        }
        agents.sort_by_key(|a| a.id);
        Overview {
            tasks,
            queues,
            agents,
            throughput_per_sec,
            queue_wait_ms,
            paused,
        }
    }
}

/// Whether `event` is about task `id`.
fn concerns(event: &Event, id: TaskId) -> bool {
    match event {
        Event::TaskCreated(e) => e.task.id() == id,
        Event::TaskEnqueued(e) => e.task_id == id,
        Event::TaskDequeued(e) => e.task_id == id,
        Event::TaskCritical(e) => e.task_id == id,
        Event::TaskAssigned(e) => e.task_id == id,
        Event::TaskCompleted(e) => e.task_id == id,
        Event::TaskFailed(e) => e.task_id == id,
        Event::TaskDeadLettered(e) => e.task_id == id,
        Event::TaskCancelled(e) => e.task_id == id,
        Event::TaskInterrupted(e) => e.task_id == id,
        Event::TaskDeadLetterRetried(e) => e.task_id == id,
        Event::TaskDiscarded(e) => e.task_id == id,
        Event::TaskThrottled(e) => e.task_id == id,
        Event::TaskUnthrottled(e) => e.task_id == id,
        Event::AgentBusy(e) => e.task_id == id,
        Event::WorkStolen(e) => e.task_ids.contains(&id),
        _ => false,
    }
}
