//! [`SwarmMetrics`]: the swarm metric set, fed by an [`EventBus`].

mod agents;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Recorder, Unit};
use swarm_core::bus::BusObserver;
use swarm_core::event::AgentHealth;
use swarm_core::{AgentId, Event, EventBus, EventKind, Priority, Subscription};

use crate::error::AttachError;
use crate::monitor::EventMonitor;
use crate::names;
use crate::observer::FanOutObserver;

pub use agents::AgentState;
use agents::AgentStates;

/// The `outcome` label values of `swarm_tasks_finished_total`.
const OUTCOMES: [&str; 3] = ["completed", "failed", "dead_lettered"];
const COMPLETED: usize = 0;
const FAILED: usize = 1;
const DEAD_LETTERED: usize = 2;

/// Records the swarm metric set (DESIGN.md, "Metrics") through the
/// [`metrics`] facade, from the events of an [`EventBus`].
///
/// Every series is registered once, when the `SwarmMetrics` is made, and its
/// handle kept in an array indexed by [`EventKind::index`], [`Priority::level`]
/// or [`AgentState::index`]: recording an event is a `match` and an atomic
/// update or two, never a registry lookup. Registering up front also means every
/// series exists (at zero) from the first scrape, so dashboards and `rate()` see
/// no gaps.
///
/// | metric | fed by |
/// |---|---|
/// | `swarm_events_total{event}` | every event |
/// | `swarm_event_handler_duration_seconds{event}` | the bus observer: handler time of each emit |
/// | `swarm_event_handler_panics_total{event}` | the bus observer: caught handler panics |
/// | `swarm_tasks_submitted_total{priority}` | `task:created` (the task's priority) |
/// | `swarm_tasks_finished_total{outcome}` | `task:completed` → `completed`; every `task:failed` attempt → `failed`; `task:dead_lettered` → `dead_lettered` |
/// | `swarm_task_retries_total` | `task:failed` with `will_retry` |
/// | `swarm_task_queue_wait_seconds{priority}` | `task:assigned` (`queue_wait`) |
/// | `swarm_task_run_duration_seconds` | `task:completed` (`duration`) |
/// | `swarm_queue_depth{priority}` | `task:enqueued` +1, `task:dequeued` −1 |
/// | `swarm_agents{state}` | the agent events, see [`AgentState`] and below |
/// | `swarm_work_stolen_tasks_total` | `work:stolen` (`count`) |
/// | `swarm_store_append_duration_seconds` | [`SwarmMetrics::record_store_append`] (no event carries it) |
/// | `swarm_snapshot_failures_total` | [`SwarmMetrics::record_snapshot_failure`] (no event carries it) |
/// | `swarm_snapshot_lag_events` | [`SwarmMetrics::record_snapshot_lag`] (no event carries it) |
/// | `swarm_limit_waits_total{limit}` | `task:throttled` (a series per limit name, made when that limit first holds a task) |
/// | `swarm_limit_wait_seconds{limit}` | `task:unthrottled` (`waited`) |
///
/// # Agent states
///
/// Each agent is counted in exactly one state of `swarm_agents{state}`:
///
/// - `agent:created` → `reserve` if it is a reserve agent, else `idle`;
/// - `agent:available` → `idle` (a reserve agent being activated, or an agent
///   that finished a task), except that an `unhealthy` agent stays `unhealthy`:
///   it gets no new tasks until it is replaced;
/// - `agent:busy` → `busy`;
/// - `agent:error` with health `unhealthy` → `unhealthy` (other healths leave the
///   state as it is: a degraded agent still takes tasks);
/// - `agent:removed` → no longer counted.
///
/// An agent first seen through any of these (the recorder was attached to a
/// running pool) is counted from then on.
///
/// # Queue depth
///
/// `swarm_queue_depth{priority}` is `task:enqueued` minus `task:dequeued` per
/// priority, over every queue (global, agents' local queues, distributed). A
/// steal moves tasks between local queues and leaves the depth as it is.
///
/// ```
/// use swarm_core::event::TaskCreated;
/// use swarm_core::{EventBus, Task};
/// use swarm_metrics::{PrometheusExporter, SwarmMetrics};
///
/// let exporter = PrometheusExporter::builder().without_listener().build()?;
/// let metrics = exporter.swarm_metrics();
/// let bus = EventBus::new();
/// let _subscription = metrics.attach(&bus)?;
///
/// bus.emit(TaskCreated { task: Task::builder("summarize").build()? });
/// assert!(exporter.render().contains(r#"swarm_tasks_submitted_total{priority="normal"} 1"#));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SwarmMetrics {
    inner: Arc<Handles>,
}

struct Handles {
    events: [Counter; EventKind::COUNT],
    handler_duration: [Histogram; EventKind::COUNT],
    handler_panics: [Counter; EventKind::COUNT],
    submitted: [Counter; Priority::LEVELS],
    finished: [Counter; 3],
    retries: Counter,
    queue_wait: [Histogram; Priority::LEVELS],
    run_duration: Histogram,
    queue_depth: [Gauge; Priority::LEVELS],
    agents: [Gauge; 4],
    stolen: Counter,
    store_append: Histogram,
    snapshot_failures: Counter,
    snapshot_lag: Gauge,
    agent_states: AgentStates,
    limits: LimitSeries,
}

/// The per-limit series. Limit names are known only when a limit first
/// holds a task, so these are registered then (once per name), on the
/// recorder the set was registered with when it is known (the exporter's),
/// else on the recorder current at that moment.
struct LimitSeries {
    recorder: Option<Arc<dyn Recorder + Send + Sync>>,
    by_limit: Mutex<HashMap<String, (Counter, Histogram)>>,
}

impl LimitSeries {
    fn with(&self, limit: &str, record: impl FnOnce(&Counter, &Histogram)) {
        let mut by_limit = self.by_limit.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((waits, wait)) = by_limit.get(limit) {
            record(waits, wait);
            return;
        }
        let register = || {
            let label = limit.to_owned();
            (
                metrics::counter!(names::LIMIT_WAITS_TOTAL, "limit" => label.clone()),
                metrics::histogram!(names::LIMIT_WAIT_SECONDS, "limit" => label),
            )
        };
        let series = match &self.recorder {
            Some(recorder) => metrics::with_local_recorder(&**recorder, register),
            None => register(),
        };
        record(&series.0, &series.1);
        by_limit.insert(limit.to_owned(), series);
    }
}

impl fmt::Debug for SwarmMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SwarmMetrics").finish_non_exhaustive()
    }
}

impl Default for SwarmMetrics {
    fn default() -> Self {
        SwarmMetrics::new()
    }
}

impl SwarmMetrics {
    /// Registers the metric set with the `metrics` recorder current on this
    /// thread: the local one inside [`metrics::with_local_recorder`], else the
    /// global one, else a no-op (nothing is recorded).
    ///
    /// With [`PrometheusExporter`](crate::PrometheusExporter), prefer
    /// [`PrometheusExporter::swarm_metrics`](crate::PrometheusExporter::swarm_metrics),
    /// which needs no global recorder.
    pub fn new() -> Self {
        metrics::with_recorder(SwarmMetrics::register)
    }

    /// Registers the metric set with `recorder`.
    pub fn register(recorder: &dyn Recorder) -> Self {
        metrics::with_local_recorder(recorder, || SwarmMetrics::register_current(None))
    }

    /// Registers the metric set with `recorder`, and keeps it to register the
    /// per-limit series (`swarm_limit_*{limit}`) on it later, when a limit
    /// first holds a task. ([`register`](Self::register) makes those on the
    /// recorder current at that moment.)
    pub fn register_shared(recorder: Arc<dyn Recorder + Send + Sync>) -> Self {
        let keep = Arc::clone(&recorder);
        metrics::with_local_recorder(&*recorder, || SwarmMetrics::register_current(Some(keep)))
    }

    fn register_current(recorder: Option<Arc<dyn Recorder + Send + Sync>>) -> Self {
        describe();
        let by_kind_counter = |name: &'static str| {
            EventKind::ALL.map(|kind| metrics::counter!(name, "event" => kind.name()))
        };
        let by_priority = |p: usize| Priority::ALL[p].as_str();
        SwarmMetrics {
            inner: Arc::new(Handles {
                events: by_kind_counter(names::EVENTS_TOTAL),
                handler_duration: EventKind::ALL.map(|kind| {
                    metrics::histogram!(names::EVENT_HANDLER_DURATION_SECONDS, "event" => kind.name())
                }),
                handler_panics: by_kind_counter(names::EVENT_HANDLER_PANICS_TOTAL),
                submitted: std::array::from_fn(|p| {
                    metrics::counter!(names::TASKS_SUBMITTED_TOTAL, "priority" => by_priority(p))
                }),
                finished: OUTCOMES
                    .map(|outcome| metrics::counter!(names::TASKS_FINISHED_TOTAL, "outcome" => outcome)),
                retries: metrics::counter!(names::TASK_RETRIES_TOTAL),
                queue_wait: std::array::from_fn(|p| {
                    metrics::histogram!(names::TASK_QUEUE_WAIT_SECONDS, "priority" => by_priority(p))
                }),
                run_duration: metrics::histogram!(names::TASK_RUN_DURATION_SECONDS),
                queue_depth: std::array::from_fn(|p| {
                    metrics::gauge!(names::QUEUE_DEPTH, "priority" => by_priority(p))
                }),
                agents: AgentState::ALL
                    .map(|state| metrics::gauge!(names::AGENTS, "state" => state.as_str())),
                stolen: metrics::counter!(names::WORK_STOLEN_TASKS_TOTAL),
                store_append: metrics::histogram!(names::STORE_APPEND_DURATION_SECONDS),
                snapshot_failures: metrics::counter!(names::SNAPSHOT_FAILURES_TOTAL),
                snapshot_lag: metrics::gauge!(names::SNAPSHOT_LAG_EVENTS),
                agent_states: AgentStates::new(),
                limits: LimitSeries {
                    recorder,
                    by_limit: Mutex::new(HashMap::new()),
                },
            }),
        }
    }

    /// Subscribes to every event of `bus` and sets itself as the bus's
    /// observer (for handler time and panics). Recording stops when the
    /// returned [`Subscription`] is dropped.
    ///
    /// # Errors
    ///
    /// [`AttachError::ObserverTaken`] if the bus already has an observer; then
    /// nothing is subscribed. Use [`SwarmMetrics::attach_with_monitor`], or a
    /// [`FanOutObserver`] and [`SwarmMetrics::subscribe`].
    pub fn attach(&self, bus: &EventBus) -> Result<Subscription, AttachError> {
        bus.set_observer(self.observer())
            .map_err(|_| AttachError::ObserverTaken)?;
        Ok(self.subscribe(bus))
    }

    /// Like [`SwarmMetrics::attach`], and also feeds `monitor` with the handler
    /// time of every emit (the bus has one observer slot; this fills it with both).
    ///
    /// # Errors
    ///
    /// [`AttachError::ObserverTaken`] if the bus already has an observer.
    pub fn attach_with_monitor(
        &self,
        bus: &EventBus,
        monitor: &EventMonitor,
    ) -> Result<Subscription, AttachError> {
        let both = FanOutObserver::new(vec![self.observer(), monitor.observer()]);
        bus.set_observer(Arc::new(both))
            .map_err(|_| AttachError::ObserverTaken)?;
        Ok(self.subscribe(bus))
    }

    /// Subscribes to every event of `bus` without touching its observer: the
    /// handler-time and panic metrics stay at zero unless [`SwarmMetrics::observer`]
    /// is set on the bus some other way.
    #[must_use = "dropping the subscription stops recording at once"]
    pub fn subscribe(&self, bus: &EventBus) -> Subscription {
        let handles = Arc::clone(&self.inner);
        bus.on_any(move |event| handles.record(event))
    }

    /// This recorder as a bus observer, to combine with others in a [`FanOutObserver`].
    pub fn observer(&self) -> Arc<dyn BusObserver> {
        Arc::clone(&self.inner) as Arc<dyn BusObserver>
    }

    /// Records one event, as the subscription does (for events that reach you
    /// some other way, such as a replayed log).
    #[inline]
    pub fn record(&self, event: &Event) {
        self.inner.record(event);
    }

    /// Records one event store append that took `elapsed`
    /// (`swarm_store_append_duration_seconds`). No event carries this: the code
    /// that calls the store times the append and reports it here.
    #[inline]
    pub fn record_store_append(&self, elapsed: Duration) {
        self.inner.store_append.record(elapsed.as_secs_f64());
    }

    /// Records one failed snapshot attempt (`swarm_snapshot_failures_total`),
    /// for example from the failure hook of `swarm_store::Snapshotter::spawn_with`.
    #[inline]
    pub fn record_snapshot_failure(&self) {
        self.inner.snapshot_failures.increment(1);
    }

    /// Records how many events the log holds after its newest snapshot
    /// (`swarm_snapshot_lag_events`): what a restart would replay. Set by the
    /// snapshotter's progress hook; a value that keeps growing means
    /// snapshots do not keep up.
    #[inline]
    pub fn record_snapshot_lag(&self, events: u64) {
        #[allow(clippy::cast_precision_loss)] // exact up to 2^53 events
        self.inner.snapshot_lag.set(events as f64);
    }

    /// The `swarm_store_append_duration_seconds` handle itself, for code that
    /// records appends without holding a `SwarmMetrics`.
    pub fn store_append_histogram(&self) -> Histogram {
        self.inner.store_append.clone()
    }

    /// The state `agent` is counted in, if it is counted.
    pub fn agent_state(&self, agent: AgentId) -> Option<AgentState> {
        self.inner.agent_states.get(agent)
    }
}

impl Handles {
    fn record(&self, event: &Event) {
        self.events[event.kind().index()].increment(1);
        match event {
            Event::TaskCreated(e) => self.submitted[e.task.priority().level()].increment(1),
            Event::TaskEnqueued(e) => self.queue_depth[e.priority.level()].increment(1.0),
            Event::TaskDequeued(e) => self.queue_depth[e.priority.level()].decrement(1.0),
            Event::TaskAssigned(e) => {
                self.queue_wait[e.priority.level()].record(e.queue_wait.as_secs_f64());
            }
            Event::TaskCompleted(e) => {
                self.finished[COMPLETED].increment(1);
                self.run_duration.record(e.duration.as_secs_f64());
            }
            Event::TaskFailed(e) => {
                self.finished[FAILED].increment(1);
                if e.will_retry {
                    self.retries.increment(1);
                }
            }
            Event::TaskDeadLettered(_) => self.finished[DEAD_LETTERED].increment(1),
            Event::AgentCreated(e) => {
                let state = if e.reserve {
                    AgentState::Reserve
                } else {
                    AgentState::Idle
                };
                self.agent(e.agent_id, |_| Some(state));
            }
            // An unhealthy agent takes no new tasks: it stays unhealthy until removed.
            Event::AgentAvailable(e) => self.agent(e.agent_id, |from| match from {
                Some(AgentState::Unhealthy) => from,
                _ => Some(AgentState::Idle),
            }),
            Event::AgentBusy(e) => self.agent(e.agent_id, |_| Some(AgentState::Busy)),
            Event::AgentError(e) if e.health == AgentHealth::Unhealthy => {
                self.agent(e.agent_id, |_| Some(AgentState::Unhealthy));
            }
            Event::AgentRemoved(e) => self.agent(e.agent_id, |_| None),
            Event::WorkStolen(e) => self.stolen.increment(u64::from(e.count)),
            Event::TaskThrottled(e) => self.limits.with(&e.limit, |waits, _| waits.increment(1)),
            Event::TaskUnthrottled(e) => self
                .limits
                .with(&e.limit, |_, wait| wait.record(e.waited.as_secs_f64())),
            _ => {}
        }
    }
}

impl Handles {
    fn agent(&self, agent: AgentId, next: impl FnOnce(Option<AgentState>) -> Option<AgentState>) {
        self.agent_states.transition(agent, &self.agents, next);
    }
}

impl BusObserver for Handles {
    fn handlers_ran(&self, kind: EventKind, elapsed: Duration) {
        self.handler_duration[kind.index()].record(elapsed.as_secs_f64());
    }

    fn handler_panicked(&self, kind: EventKind) {
        self.handler_panics[kind.index()].increment(1);
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        names::EVENTS_TOTAL,
        "Events emitted on the swarm event bus, by catalog name."
    );
    describe_histogram!(
        names::EVENT_HANDLER_DURATION_SECONDS,
        Unit::Seconds,
        "Time spent in the synchronous handlers of one emit, all handlers together."
    );
    describe_counter!(
        names::EVENT_HANDLER_PANICS_TOTAL,
        "Event handler calls that panicked (caught by the bus)."
    );
    describe_counter!(names::TASKS_SUBMITTED_TOTAL, "Tasks accepted, by priority.");
    describe_counter!(
        names::TASKS_FINISHED_TOTAL,
        "Finished attempts (completed, failed) and tasks given up (dead_lettered)."
    );
    describe_counter!(
        names::TASK_RETRIES_TOTAL,
        "Failed attempts that will be retried."
    );
    describe_histogram!(
        names::TASK_QUEUE_WAIT_SECONDS,
        Unit::Seconds,
        "Time from a task's acceptance (or its retry becoming due) to its start, by priority."
    );
    describe_histogram!(
        names::TASK_RUN_DURATION_SECONDS,
        Unit::Seconds,
        "Run time of successful attempts."
    );
    describe_gauge!(
        names::QUEUE_DEPTH,
        "Tasks waiting in any queue, by priority."
    );
    describe_gauge!(
        names::AGENTS,
        "Agents in the pool, by state (idle, busy, unhealthy, reserve)."
    );
    describe_counter!(
        names::WORK_STOLEN_TASKS_TOTAL,
        "Tasks moved from one agent's local queue to another's by work stealing."
    );
    describe_histogram!(
        names::STORE_APPEND_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of one event store append, as its caller saw it."
    );
    describe_counter!(
        names::SNAPSHOT_FAILURES_TOTAL,
        "Snapshot attempts that failed; each is retried with back-off."
    );
    describe_counter!(
        names::LIMIT_WAITS_TOTAL,
        "Tasks a rate or concurrency limit held (they waited outside the queues), by limit."
    );
    describe_histogram!(
        names::LIMIT_WAIT_SECONDS,
        Unit::Seconds,
        "How long a rate or concurrency limit held a task, by limit."
    );
    describe_gauge!(
        names::SNAPSHOT_LAG_EVENTS,
        "Events in the log after the newest snapshot: what a restart would replay."
    );
}
