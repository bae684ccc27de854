//! [`Swarm`]: the running scheduler.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use swarm_agents::{
    AgentPool, Autoscaler, BoxAgentFactory, PoolConfig, ScalingConfig, ScalingPolicy,
};
use swarm_core::event::{
    FailureReason, PerformanceDegraded, SystemShutdown, TaskCreated, TaskDeadLettered, TaskFailed,
};
use swarm_core::{EventBus, EventStream, Subscription, Task, TaskError, TaskId};
use swarm_store::{
    EventStore, FileStore, MemoryStore, SnapshotPolicy, Snapshotter, SystemState, TaskStatus,
};
use tokio::task::JoinHandle;

use crate::builder::{AgentsSpec, StoreSpec, SwarmBuilder, durability_of, sim_factory};
use crate::error::{BuildError, CancelError, ShutdownError, SubmitError};
use crate::handle::TaskHandle;
use crate::journal::{AppendMode, Journal};
use crate::latency::LatencyWatch;
use crate::metrics::MetricsWiring;
use crate::scheduler::{Core, SchedConfig, polling_loop};
use crate::stats::Counters;
use crate::{SchedulerMode, SwarmStats};

/// A running swarm: submit tasks, await their outcomes, watch its events.
///
/// Cheap to clone; clones share the swarm. Call [`shutdown`](Swarm::shutdown)
/// to stop it cleanly (queued tasks stay recorded and resume on the next start).
///
/// # Event handlers
///
/// Handlers registered with [`bus().on(..)`](EventBus::on) run inline while
/// the scheduler records a state change. They must be quick and must not call
/// back into the swarm synchronously (spawn a task for that); use
/// [`events`](Swarm::events) for anything slow.
///
/// # Delivery
///
/// At-least-once: a task that was running when the process died runs again
/// on the next start (its lost attempt counts against `max_attempts`; an
/// attempt stopped by [`shutdown`](Swarm::shutdown) does not count). A task
/// is never lost once `submit` returned `Ok` with a durable store.
///
/// # Task ids
///
/// [`SubmitError::Duplicate`] covers live tasks: queued, running or waiting
/// for a retry, including those recovered from the log at start. The id of a
/// finished (completed, dead-lettered or cancelled) task may be submitted
/// again; it names a new task, recorded after the old one in the log.
#[derive(Clone)]
pub struct Swarm {
    inner: Arc<Inner>,
}

/// Where a swarm's work comes from, chosen once at build.
enum WorkSource {
    /// The local queues: a global `PriorityQueue` (or `FairQueue`) and the agents' `StealPool`.
    Local(Arc<Core>),
    /// A JetStream work queue shared with other nodes (feature `nats`).
    #[cfg(feature = "nats")]
    JetStream(Arc<crate::distributed::JetStreamSource>),
}

struct Inner {
    source: WorkSource,
    counters: Arc<Counters>,
    bus: EventBus,
    store: Arc<dyn EventStore>,
    journal: Arc<Journal>,
    snapshotter: Mutex<Option<Snapshotter>>,
    polling: Mutex<Option<JoinHandle<()>>>,
    durable_submit: bool,
    /// The swarm opened a file store itself: it closes it at shutdown, which
    /// releases the directory's lock.
    owns_store: bool,
    max_payload: usize,
    metrics: MetricsWiring,
    /// The management API's live view and what its actions need.
    manage: crate::manage::Manage,
    _subscriptions: Vec<Subscription>,
    _autoscaler: Option<Subscription>,
}

impl fmt::Debug for Swarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Swarm")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// What [`Swarm::shutdown`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Whether every running attempt finished within the deadline.
    pub finished_in_time: bool,
    /// Attempts still running at the deadline: dropped, recorded as running,
    /// re-run on the next start.
    pub interrupted: usize,
    /// Tasks left queued (recorded as pending; they resume on the next start).
    pub pending: u64,
}

impl Swarm {
    /// Starts configuring a swarm.
    pub fn builder() -> SwarmBuilder {
        SwarmBuilder::default()
    }

    pub(crate) async fn start(mut b: SwarmBuilder) -> Result<Swarm, BuildError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let bus = b.bus.clone().unwrap_or_default();

        #[cfg(feature = "nats")]
        let distributed = b.nats.is_some();
        #[cfg(not(feature = "nats"))]
        let distributed = false;
        // A distributed node logs to the swarm's shared NATS stream (unless a
        // store was given) and opens the task queue.
        #[cfg(feature = "nats")]
        let mut nats_queue = None;
        #[cfg(feature = "nats")]
        let nats_log: Option<Arc<dyn EventStore>> = match &b.nats {
            Some(spec) => {
                let (log, queue) = crate::distributed::connect(spec, &b.store).await?;
                nats_queue = Some(queue);
                log
            }
            None => None,
        };
        #[cfg(not(feature = "nats"))]
        let nats_log: Option<Arc<dyn EventStore>> = None;
        let (store, durable_submit): (Arc<dyn EventStore>, bool) = if let Some(log) = nats_log {
            (log, true)
        } else {
            match b.store {
                StoreSpec::Memory => (
                    Arc::new(MemoryStore::bounded(crate::builder::DEFAULT_MEMORY_EVENTS)),
                    false,
                ),
                StoreSpec::File {
                    ref dir,
                    ref options,
                } => {
                    // Opening scans the log to recover it: blocking I/O.
                    let (open_dir, open_options) = (dir.clone(), options.clone());
                    let store = tokio::task::spawn_blocking(move || {
                        FileStore::open_with(open_dir, open_options)
                    })
                    .await
                    .map_err(|e| BuildError::Config(format!("opening the store failed: {e}")))??;
                    let report = store.open_report();
                    if report.bytes_cut > 0 {
                        tracing::warn!(dir = %dir.display(), bytes = report.bytes_cut, "cut a torn tail off the event log");
                    }
                    (Arc::new(store), durability_of(options))
                }
                StoreSpec::Custom { ref store, durable } => (Arc::clone(store), durable),
            }
        };

        // Replay before anything new is recorded. A distributed node does not:
        // the shared queue holds its work, and the shared log every node's.
        let recovered = if distributed {
            SystemState::with_retention(b.retention)
        } else {
            SystemState::replay_with(&*store, b.retention).await?
        };

        let counters = Arc::new(Counters::default());
        let metrics = MetricsWiring::attach(&bus, b.record_metrics, b.metrics_addr)?;
        let mode = if distributed {
            AppendMode::Shared
        } else if matches!(b.store, StoreSpec::Memory) {
            AppendMode::Inline
        } else {
            AppendMode::Batch
        };
        let journal = Arc::new(Journal::start(
            &bus,
            Arc::clone(&store),
            Arc::clone(&counters),
            metrics.append_observer(),
            mode,
        ));

        let agents_spec = std::mem::replace(
            &mut b.agents_spec,
            AgentsSpec::Sim(swarm_agents::SimConfig::instant()),
        );
        let factory = match agents_spec {
            AgentsSpec::Sim(config) => sim_factory(config, b.seed),
            AgentsSpec::Factory(factory) => factory,
        };
        let pool = AgentPool::new(
            factory,
            bus.clone(),
            PoolConfig {
                initial_agents: b.agents,
                reserve_agents: b.reserve_agents,
                default_timeout: b.default_timeout,
                retry: b.retry,
                health: b.health,
                replace_unhealthy: true,
                overload_threshold: Some(0.8),
                seed: b.seed,
            },
        )?;

        let mut subscriptions = Vec::new();
        #[cfg(feature = "nats")]
        if let Some(queue) = nats_queue {
            return Self::start_distributed(
                b,
                queue,
                pool,
                bus,
                store,
                journal,
                counters,
                metrics,
                subscriptions,
            )
            .await;
        }

        let global = crate::scheduler::GlobalQueue::new(
            b.aging,
            b.fair_share.then(|| b.fair_share_discipline()),
        );
        let core = Core::new(
            bus.clone(),
            pool.clone(),
            Arc::clone(&counters),
            SchedConfig {
                mode: b.mode,
                steal_threshold: b.steal_threshold,
                latency: LatencyWatch::new(b.latency_objective),
                // Fair share: queued tasks wait in the fair global queue, not in local queues.
                prefetch: if b.fair_share { 0 } else { b.prefetch },
                backlog_threshold: b.backlog_threshold,
                queue_bound: b.queue_bound,
                limits: b.limits.clone(),
            },
            global,
            runtime.clone(),
        );

        // Pool membership drives the agent loops, told by a direct call from
        // the pool (the bus is an output: a fake `agent:removed` emitted on it
        // stops nothing). Agents made before the observer was set are read
        // after setting it; a repeat is ignored.
        if pool
            .set_membership_observer(Arc::new(crate::scheduler::Membership::new(&core)))
            .is_err()
        {
            return Err(BuildError::Config(
                "the agent pool already has a membership observer".into(),
            ));
        }
        for agent in pool.agents() {
            core.start_agent(agent.id);
        }

        let autoscaler = attach_scaling(
            &b,
            &pool,
            &bus,
            &runtime,
            core.queued_counter(),
            &mut subscriptions,
        );

        // Recovery: re-queue every task that was pending, queued, running or
        // waiting for a retry (until its back-off ends), most urgent first
        // and in the order they were accepted. A running one lost its attempt (the process died while it
        // ran; a graceful stop records `task:interrupted` instead): record that.
        // Each keeps the errors of its earlier attempts for its dead letter.
        let lost = "the process stopped while this attempt ran";
        let mut requeue = Vec::new();
        for record in recovered.records_to_requeue() {
            let mut task = record.task.clone();
            task.set_attempt(record.attempts);
            // A back-off under way at the stop keeps its due time.
            let retry_at = match record.status {
                TaskStatus::Failed => record.retry_at,
                _ => None,
            };
            let mut errors = record.errors.clone();
            if record.status == TaskStatus::Running {
                let max = task.max_attempts().unwrap_or(b.retry.max_attempts);
                let will_retry = record.attempts < max;
                bus.emit(TaskFailed {
                    task_id: task.id(),
                    agent_id: record.agent,
                    attempt: record.attempts,
                    reason: FailureReason::Lost,
                    error: lost.into(),
                    will_retry,
                    retry_in: None,
                });
                errors.push(lost.to_owned());
                if !will_retry {
                    bus.emit(TaskDeadLettered {
                        task_id: task.id(),
                        attempts: record.attempts,
                        errors,
                    });
                    continue;
                }
            }
            if !errors.is_empty() {
                pool.restore_history(task.id(), errors);
            }
            requeue.push((task, retry_at));
        }
        if !requeue.is_empty() {
            tracing::info!(
                tasks = requeue.len(),
                "re-queueing tasks recovered from the event log"
            );
        }
        // The replayed state becomes the management view; a log that says
        // paused pauses the core before anything is re-queued.
        let manage = crate::manage::Manage::start(
            recovered,
            crate::manage::Source::Local(Arc::clone(&core)),
            Arc::clone(&journal),
            bus.clone(),
            Arc::clone(&store),
            pool.clone(),
            scale_bounds(&b),
            &runtime,
        );
        core.recover(requeue);

        let polling = match b.mode {
            SchedulerMode::Polling { interval, batch } => {
                Some(runtime.spawn(polling_loop(Arc::clone(&core), interval, batch)))
            }
            SchedulerMode::Event => None,
        };
        // A snapshot serializes the live state and the retention window:
        // worth it only for a store that outlives the process.
        let snapshotter = (!matches!(b.store, StoreSpec::Memory)).then(|| {
            let lag_gauge = metrics.snapshot_lag_gauge();
            let lag_counters = Arc::clone(&counters);
            let counters = Arc::clone(&counters);
            let metrics = metrics.snapshot_failure_counter();
            let on_failure: swarm_store::SnapshotFailureHook = Arc::new(move |_error| {
                // The snapshotter logs the error and retries with back-off.
                Counters::bump(&counters.snapshot_failures);
                if let Some(record) = &metrics {
                    record();
                }
            });
            let retention = b.retention;
            let policy = SnapshotPolicy::new()
                .every_events(b.snapshot_every)
                // The snapshotter's state keeps the swarm's window, so a
                // snapshot costs what is live plus the window.
                .initial_state(move |snapshot| {
                    let mut state = match snapshot {
                        Some(snapshot) => SystemState::from_snapshot(snapshot)?,
                        None => SystemState::new(),
                    };
                    state.set_retention(retention);
                    Ok(state)
                })
                .on_lag(move |lag| {
                    lag_counters
                        .snapshot_lag
                        .store(lag, std::sync::atomic::Ordering::Relaxed);
                    if let Some(set) = &lag_gauge {
                        set(lag);
                    }
                });
            Snapshotter::spawn_with_policy(Arc::new(Arc::clone(&store)), policy, Some(on_failure))
        });

        Ok(Swarm {
            inner: Arc::new(Inner {
                source: WorkSource::Local(core),
                counters,
                bus,
                store,
                journal,
                snapshotter: Mutex::new(snapshotter),
                polling: Mutex::new(polling),
                durable_submit,
                owns_store: matches!(b.store, StoreSpec::File { .. }),
                max_payload: b.max_payload,
                metrics,
                manage,
                _subscriptions: subscriptions,
                _autoscaler: autoscaler,
            }),
        })
    }

    /// The management API's part of the swarm.
    pub(crate) fn manage(&self) -> &crate::manage::Manage {
        &self.inner.manage
    }

    /// The rest of `start` for a node of a distributed swarm: the JetStream
    /// work source instead of the local queues.
    #[cfg(feature = "nats")]
    #[allow(clippy::too_many_arguments)]
    async fn start_distributed(
        b: SwarmBuilder,
        queue: crate::distributed::TaskQueue,
        pool: AgentPool<BoxAgentFactory>,
        bus: EventBus,
        store: Arc<dyn EventStore>,
        journal: Arc<Journal>,
        counters: Arc<Counters>,
        metrics: MetricsWiring,
        mut subscriptions: Vec<Subscription>,
    ) -> Result<Swarm, BuildError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        // The management view: the shared log's state (every node's tasks).
        // A log that says paused holds the puller from its start.
        let state = SystemState::replay_with(&*store, b.retention).await?;
        let source = crate::distributed::JetStreamSource::start(
            queue,
            pool.clone(),
            bus.clone(),
            Arc::clone(&journal),
            Arc::clone(&counters),
            Arc::clone(&store),
            state.is_paused(),
        )
        .await?;
        if pool
            .set_membership_observer(Arc::new(crate::distributed::SourceMembership::new(&source)))
            .is_err()
        {
            return Err(BuildError::Config(
                "the agent pool already has a membership observer".into(),
            ));
        }
        // The server holds the queue: scaling sees no local backlog.
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let autoscaler = attach_scaling(&b, &pool, &bus, &runtime, queued, &mut subscriptions);
        let manage = crate::manage::Manage::start(
            state,
            crate::manage::Source::JetStream(Arc::clone(&source)),
            Arc::clone(&journal),
            bus.clone(),
            Arc::clone(&store),
            pool.clone(),
            scale_bounds(&b),
            &runtime,
        );
        Ok(Swarm {
            inner: Arc::new(Inner {
                source: WorkSource::JetStream(source),
                counters,
                bus,
                store,
                journal,
                snapshotter: Mutex::new(None),
                polling: Mutex::new(None),
                durable_submit: true,
                owns_store: b.nats.is_some() && !matches!(b.store, StoreSpec::Custom { .. }),
                max_payload: b.max_payload,
                metrics,
                manage,
                _subscriptions: subscriptions,
                _autoscaler: autoscaler,
            }),
        })
    }

    /// Accepts a task: records `task:created` (durably, with a durable store,
    /// before returning), then hands it to an idle agent or queues it.
    ///
    /// A refused task is handed back in the error.
    pub async fn submit(&self, task: Task) -> Result<TaskHandle, SubmitError> {
        let mut handles = self.submit_batch(vec![task]).await?;
        match handles.pop() {
            Some(handle) => Ok(handle),
            None => unreachable!("submit_batch returns one handle per task"),
        }
    }

    /// Accepts tasks all together or not at all: one durable write for the batch.
    ///
    /// A refused batch of two or more tasks is refused as a whole with
    /// [`SubmitError::Batch`], which hands every task back in order
    /// ([`SubmitError::into_tasks`]) and says why ([`SubmitError::reason`]).
    /// A batch of one is refused like [`submit`](Swarm::submit).
    pub async fn submit_batch(&self, tasks: Vec<Task>) -> Result<Vec<TaskHandle>, SubmitError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let submitted = match &self.inner.source {
            WorkSource::Local(core) => self.try_submit(core, &tasks).await,
            #[cfg(feature = "nats")]
            WorkSource::JetStream(source) => self.try_submit_distributed(source, &tasks).await,
        };
        match submitted {
            Ok(receivers) => {
                let handles = tasks
                    .iter()
                    .zip(receivers)
                    .map(|(t, r)| TaskHandle::new(t.id(), r))
                    .collect();
                // (The only source without the `nats` feature.)
                #[allow(irrefutable_let_patterns)]
                if let WorkSource::Local(core) = &self.inner.source {
                    core.place(tasks);
                }
                Ok(handles)
            }
            Err(reason) if tasks.len() == 1 => Err(reason),
            Err(reason) => Err(SubmitError::Batch {
                reason: Box::new(reason),
                tasks,
            }),
        }
    }

    /// Checks, admits and records `tasks`; the caller places them once this
    /// returns `Ok`. A refusal names the first offending task (a copy).
    async fn try_submit(
        &self,
        core: &Core,
        tasks: &[Task],
    ) -> Result<Vec<tokio::sync::oneshot::Receiver<crate::TaskOutcome>>, SubmitError> {
        let inner = &self.inner;
        self.check_submittable(tasks)?;
        let receivers = core.admit(tasks)?;
        for task in tasks {
            inner.bus.emit(TaskCreated { task: task.clone() });
        }
        if inner.durable_submit {
            if let Err(error) = inner.journal.barrier().await {
                core.unadmit(tasks);
                return Err(SubmitError::Store {
                    task: Box::new(tasks[0].clone()),
                    error,
                });
            }
        }
        inner
            .counters
            .submitted
            .fetch_add(tasks.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(receivers)
    }

    /// Submits to the shared task queue: `task:created` in the shared log
    /// first, then the publish, acknowledged by the server. A task the queue
    /// did not take is recorded as dead-lettered (it is in the log but will
    /// never run) and refused.
    #[cfg(feature = "nats")]
    async fn try_submit_distributed(
        &self,
        source: &crate::distributed::JetStreamSource,
        tasks: &[Task],
    ) -> Result<Vec<tokio::sync::oneshot::Receiver<crate::TaskOutcome>>, SubmitError> {
        let inner = &self.inner;
        self.check_submittable(tasks)?;
        if let Some(task) = tasks.iter().find(|t| t.not_before().is_some()) {
            return Err(SubmitError::Unsupported {
                task: Box::new(task.clone()),
                what: "a delay",
                why: "a distributed swarm does not honour yet (its shared queue would start it when a node pulls it): submit it when it is due",
            });
        }
        let mut batch = std::collections::HashSet::with_capacity(tasks.len());
        for task in tasks {
            if !batch.insert(task.id()) || source.is_waiting(task.id()) {
                return Err(SubmitError::Duplicate(Box::new(task.clone())));
            }
        }
        let receivers = source.wait_for(tasks);
        for task in tasks {
            inner.bus.emit(TaskCreated { task: task.clone() });
        }
        for task in tasks {
            if let Err(error) = inner.journal.barrier_for(task.id()).await {
                source.unwait(tasks);
                return Err(SubmitError::Store {
                    task: Box::new(task.clone()),
                    error,
                });
            }
        }
        if let Err((failed, error)) = source.publish(tasks).await {
            let message = error.to_string();
            for task in &failed {
                inner.bus.emit(TaskDeadLettered {
                    task_id: task.id(),
                    attempts: 0,
                    errors: vec![format!("the task queue did not take it: {message}")],
                });
            }
            source.unwait(&failed);
            let first = failed.first().cloned().unwrap_or_else(|| tasks[0].clone());
            return Err(SubmitError::Queue {
                task: Box::new(first),
                error: Arc::new(error),
            });
        }
        inner
            .counters
            .submitted
            .fetch_add(tasks.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(receivers)
    }

    /// The checks every submit makes first: payload sizes, and a log that
    /// failed to record earlier events (it records nothing for sure: accept
    /// nothing more, durable store or not).
    fn check_submittable(&self, tasks: &[Task]) -> Result<(), SubmitError> {
        let inner = &self.inner;
        for task in tasks {
            if task.payload().len() > inner.max_payload {
                return Err(SubmitError::Invalid(TaskError::PayloadTooLarge {
                    size: task.payload().len(),
                    limit: inner.max_payload,
                }));
            }
        }
        // A log that failed to record earlier events records nothing for
        // sure: accept nothing more (durable store or not).
        let failed = inner
            .journal
            .failure()
            .or_else(|| inner.store.poisoned().map(Arc::new));
        if let Some(error) = failed {
            return Err(SubmitError::Store {
                task: Box::new(tasks[0].clone()),
                error,
            });
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn core(&self) -> &Arc<Core> {
        match &self.inner.source {
            WorkSource::Local(core) => core,
            #[cfg(feature = "nats")]
            WorkSource::JetStream(_) => panic!("a distributed swarm has no local core"),
        }
    }

    /// Cancels a task: a queued one is removed, a running one's attempt is
    /// dropped. Records `task:cancelled` either way. A distributed node
    /// cancels the tasks it runs (their messages are terminated); a task
    /// waiting in the shared queue, or running on another node, is not found.
    pub fn cancel(&self, task_id: TaskId) -> Result<(), CancelError> {
        match &self.inner.source {
            WorkSource::Local(core) => core.cancel(task_id),
            #[cfg(feature = "nats")]
            WorkSource::JetStream(source) => {
                if source.cancel(task_id) {
                    Ok(())
                } else {
                    Err(CancelError::NotFound(task_id))
                }
            }
        }
    }

    /// Every event from now on, as an async stream (a slow consumer is told
    /// how many events it missed).
    #[must_use]
    pub fn events(&self) -> EventStream {
        self.inner.bus.subscribe()
    }

    /// The swarm's event bus, for synchronous handlers (see the type docs).
    pub fn bus(&self) -> &EventBus {
        &self.inner.bus
    }

    /// The event store.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.inner.store
    }

    /// Counters and current load.
    #[must_use]
    pub fn stats(&self) -> SwarmStats {
        match &self.inner.source {
            WorkSource::Local(core) => core.stats(),
            #[cfg(feature = "nats")]
            WorkSource::JetStream(source) => source.stats(),
        }
    }

    /// The Prometheus exposition text, when metrics are recorded.
    #[must_use]
    pub fn render_metrics(&self) -> Option<String> {
        self.inner.metrics.render()
    }

    /// The address `/metrics` is served on, when an exporter address was set.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.metrics.local_addr()
    }

    /// Stops the swarm: records `system:shutdown`, accepts no new tasks, starts
    /// no queued ones, lets running attempts finish within `deadline` (then
    /// drops them, recording `task:interrupted`: they are pending again, the
    /// dropped attempt not charged, and run on the next start),
    /// flushes the store, writes a snapshot and closes a file store the swarm
    /// opened itself (releasing its directory; a store handed to
    /// [`SwarmBuilder::store`](crate::SwarmBuilder::store) stays open). Queued tasks stay recorded as pending and resume on the
    /// next start.
    pub async fn shutdown(&self, deadline: Duration) -> Result<ShutdownReport, ShutdownError> {
        let inner = &self.inner;
        let started = tokio::time::Instant::now();
        let deadline_at = saturating_deadline(started, deadline);
        let (finished_in_time, interrupted, pending) = match &inner.source {
            WorkSource::Local(core) => {
                let pending = core.stop_accepting();
                inner.bus.emit(SystemShutdown { deadline, pending });
                // The polling loop sees `draining` and stops after its current attempt.
                let finished_in_time = core.wait_idle(deadline_at).await;
                let interrupted = core.running_count();
                core.interrupt_all();
                // Let dropped attempts unwind their agents before the final flush.
                if interrupted > 0 {
                    core.wait_idle(tokio::time::Instant::now() + Duration::from_secs(1))
                        .await;
                }
                (finished_in_time, interrupted, pending)
            }
            #[cfg(feature = "nats")]
            WorkSource::JetStream(source) => {
                // The shared queue keeps what this node did not take.
                source.stop_pulling();
                inner.bus.emit(SystemShutdown {
                    deadline,
                    pending: 0,
                });
                let finished_in_time = source.wait_idle(deadline_at).await;
                let interrupted = source.attempts_running();
                source.interrupt_all();
                if interrupted > 0 {
                    source
                        .wait_idle(tokio::time::Instant::now() + Duration::from_secs(5))
                        .await;
                }
                (finished_in_time, interrupted, 0)
            }
        };
        if let Err(error) = inner.journal.barrier().await {
            tracing::error!(%error, "could not record the last events before shutdown");
        }
        inner.store.flush().await?;
        let snapshotter = inner.snapshotter.lock().take();
        if let Some(snapshotter) = snapshotter {
            // Saves a snapshot of everything up to the last event.
            if let Err(error) = snapshotter.stop().await {
                tracing::warn!(%error, "could not write the shutdown snapshot");
            }
        }
        #[cfg(feature = "nats")]
        if let WorkSource::JetStream(source) = &inner.source {
            source.abandon();
        }
        if inner.owns_store {
            inner.store.close().await?;
        }
        Ok(ShutdownReport {
            finished_in_time,
            interrupted,
            pending,
        })
    }
}

impl Drop for Inner {
    /// Dropping the last clone of a [`Swarm`] without
    /// [`shutdown`](Swarm::shutdown) stops it at once, like a crash that the
    /// log did not see coming: the agent loops and retry timers stop, running
    /// attempts are dropped mid-way (recorded as running, so the next start
    /// re-runs them and counts the lost attempt), queued tasks stay pending,
    /// and every handle resolves as [`Interrupted`](crate::TaskOutcome::Interrupted).
    /// Events already emitted still reach the store.
    fn drop(&mut self) {
        if let Some(polling) = self.polling.get_mut().take() {
            polling.abort();
        }
        self.manage.stop();
        match &self.source {
            WorkSource::Local(core) => core.abandon(),
            #[cfg(feature = "nats")]
            WorkSource::JetStream(source) => source.abandon(),
        }
    }
}

/// `start + d`, or a deadline too far away to matter when that overflows.
fn saturating_deadline(start: tokio::time::Instant, d: Duration) -> tokio::time::Instant {
    // Tokio's own "far future": about 30 years.
    const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);
    start
        .checked_add(d)
        .unwrap_or_else(|| start.checked_add(FAR).unwrap_or(start))
}

/// The agent counts [`Swarm::scale_to`] may set: the autoscaler's bounds
/// (`min_agents`, default the starting agents, to `max_agents`).
fn scale_bounds(b: &SwarmBuilder) -> (usize, usize) {
    (
        b.min_agents.unwrap_or(b.agents).min(b.max_agents),
        b.max_agents,
    )
}

/// Reactive scaling: overload grows the pool, backlog activates reserve
/// agents, a missed latency objective adds agents.
fn attach_scaling(
    b: &SwarmBuilder,
    pool: &AgentPool<BoxAgentFactory>,
    bus: &EventBus,
    runtime: &tokio::runtime::Handle,
    queued: Arc<std::sync::atomic::AtomicUsize>,
    subscriptions: &mut Vec<Subscription>,
) -> Option<Subscription> {
    if !b.autoscale {
        return None;
    }
    let min = b.min_agents.unwrap_or(b.agents).min(b.max_agents);
    let scaler = Autoscaler::new(
        pool.clone(),
        ScalingPolicy::new(ScalingConfig {
            min_agents: min,
            max_agents: b.max_agents,
            backlog_threshold: b.backlog_threshold,
            ..ScalingConfig::default()
        }),
        move || queued.load(std::sync::atomic::Ordering::Relaxed),
    );
    let grow_pool = pool.clone();
    // The handler may run on any thread that emits: spawn on our runtime.
    let runtime = runtime.clone();
    let max = b.max_agents;
    subscriptions.push(bus.on::<PerformanceDegraded>(move |_| {
        let pool = grow_pool.clone();
        runtime.spawn(async move {
            let active = pool.counts().active();
            if active < max {
                let grow = (active / 2).max(1).min(max - active);
                if let Err(error) = pool.spawn_agents(grow) {
                    tracing::warn!(%error, "could not add agents for the latency objective");
                }
            }
        });
    }));
    Some(scaler.attach())
}
