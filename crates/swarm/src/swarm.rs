//! [`Swarm`]: the running scheduler.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use swarm_agents::{AgentPool, Autoscaler, PoolConfig, ScalingConfig, ScalingPolicy};
use swarm_core::event::{
    FailureReason, PerformanceDegraded, SystemShutdown, TaskCreated, TaskDeadLettered, TaskFailed,
};
use swarm_core::{EventBus, EventStream, Subscription, Task, TaskError, TaskId};
use swarm_queue::PriorityQueue;
use swarm_store::{EventStore, FileStore, MemoryStore, Snapshotter, SystemState, TaskStatus};
use tokio::task::JoinHandle;

use crate::builder::{AgentsSpec, StoreSpec, SwarmBuilder, durability_of, sim_factory};
use crate::error::{BuildError, CancelError, ShutdownError, SubmitError};
use crate::handle::TaskHandle;
use crate::journal::Journal;
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

struct Inner {
    core: Arc<Core>,
    bus: EventBus,
    store: Arc<dyn EventStore>,
    journal: Journal,
    snapshotter: Mutex<Option<Snapshotter>>,
    polling: Mutex<Option<JoinHandle<()>>>,
    durable_submit: bool,
    /// The swarm opened a file store itself: it closes it at shutdown, which
    /// releases the directory's lock.
    owns_store: bool,
    max_payload: usize,
    metrics: MetricsWiring,
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

    pub(crate) async fn start(b: SwarmBuilder) -> Result<Swarm, BuildError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let bus = b.bus.clone().unwrap_or_default();

        let (store, durable_submit): (Arc<dyn EventStore>, bool) = match b.store {
            StoreSpec::Memory => (Arc::new(MemoryStore::new()), false),
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
        };

        // Replay before anything new is recorded.
        let recovered = SystemState::replay(&*store).await?;

        let counters = Arc::new(Counters::default());
        let metrics = MetricsWiring::attach(&bus, b.record_metrics, b.metrics_addr)?;
        let journal = Journal::start(
            &bus,
            Arc::clone(&store),
            Arc::clone(&counters),
            metrics.append_observer(),
            matches!(b.store, StoreSpec::Memory),
        );

        let factory = match b.agents_spec {
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

        let mut global = PriorityQueue::new();
        if let Some(aging) = b.aging {
            global = global.with_aging(aging);
        }
        let core = Core::new(
            bus.clone(),
            pool.clone(),
            Arc::clone(&counters),
            SchedConfig {
                mode: b.mode,
                steal_threshold: b.steal_threshold,
                latency: LatencyWatch::new(b.latency_objective),
                prefetch: b.prefetch,
                backlog_threshold: b.backlog_threshold,
                queue_bound: b.queue_bound,
            },
            global,
            runtime.clone(),
        );

        // Pool membership drives the agent loops, told by a direct call from
        // the pool (the bus is an output: a fake `agent:removed` emitted on it
        // stops nothing). Agents made before the observer was set are read
        // after setting it; a repeat is ignored.
        let mut subscriptions = Vec::new();
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

        // Reactive scaling: overload grows the pool, backlog activates reserve
        // agents, a missed latency objective adds agents.
        let autoscaler = if b.autoscale {
            let min = b.min_agents.unwrap_or(b.agents).min(b.max_agents);
            let queued = core.queued_counter();
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
            let runtime_for_growth = runtime.clone();
            let max = b.max_agents;
            subscriptions.push(bus.on::<PerformanceDegraded>(move |_| {
                let pool = grow_pool.clone();
                runtime_for_growth.spawn(async move {
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
        } else {
            None
        };

        // Recovery: re-queue every task that was pending, queued, running or
        // waiting for a retry, most urgent first and in the order they were
        // accepted. A running one lost its attempt (the process died while it
        // ran; a graceful stop records `task:interrupted` instead): record that.
        // Each keeps the errors of its earlier attempts for its dead letter.
        let lost = "the process stopped while this attempt ran";
        let mut requeue = Vec::new();
        for record in recovered.records_to_requeue() {
            let mut task = record.task.clone();
            task.set_attempt(record.attempts);
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
            requeue.push(task);
        }
        if !requeue.is_empty() {
            tracing::info!(
                tasks = requeue.len(),
                "re-queueing tasks recovered from the event log"
            );
        }
        core.recover(requeue);

        let polling = match b.mode {
            SchedulerMode::Polling { interval, batch } => {
                Some(runtime.spawn(polling_loop(Arc::clone(&core), interval, batch)))
            }
            SchedulerMode::Event => None,
        };
        // A snapshot serializes the whole state: worth it only for a store that
        // outlives the process.
        let snapshotter = (!matches!(b.store, StoreSpec::Memory)).then(|| {
            let counters = Arc::clone(&counters);
            let metrics = metrics.snapshot_failure_counter();
            let on_failure: swarm_store::SnapshotFailureHook = Arc::new(move |_error| {
                // The snapshotter logs the error and retries with back-off.
                Counters::bump(&counters.snapshot_failures);
                if let Some(record) = &metrics {
                    record();
                }
            });
            Snapshotter::spawn_with(Arc::new(Arc::clone(&store)), b.snapshot_every, on_failure)
        });

        Ok(Swarm {
            inner: Arc::new(Inner {
                core,
                bus,
                store,
                journal,
                snapshotter: Mutex::new(snapshotter),
                polling: Mutex::new(polling),
                durable_submit,
                owns_store: matches!(b.store, StoreSpec::File { .. }),
                max_payload: b.max_payload,
                metrics,
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
        match self.try_submit(&tasks).await {
            Ok(receivers) => {
                let handles = tasks
                    .iter()
                    .zip(receivers)
                    .map(|(t, r)| TaskHandle::new(t.id(), r))
                    .collect();
                self.inner.core.place(tasks);
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
        tasks: &[Task],
    ) -> Result<Vec<tokio::sync::oneshot::Receiver<crate::TaskOutcome>>, SubmitError> {
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
        let receivers = inner.core.admit(tasks)?;
        for task in tasks {
            inner.bus.emit(TaskCreated { task: task.clone() });
        }
        if inner.durable_submit {
            if let Err(error) = inner.journal.barrier().await {
                inner.core.unadmit(tasks);
                return Err(SubmitError::Store {
                    task: Box::new(tasks[0].clone()),
                    error,
                });
            }
        }
        inner
            .core
            .counters
            .submitted
            .fetch_add(tasks.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(receivers)
    }

    #[cfg(test)]
    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.inner.core
    }

    /// Cancels a task: a queued one is removed, a running one's attempt is
    /// dropped. Records `task:cancelled` either way.
    pub fn cancel(&self, task_id: TaskId) -> Result<(), CancelError> {
        self.inner.core.cancel(task_id)
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
        self.inner.core.stats()
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
        let pending = inner.core.stop_accepting();
        inner.bus.emit(SystemShutdown { deadline, pending });
        // The polling loop sees `draining` and stops after its current attempt.
        let finished_in_time = inner
            .core
            .wait_idle(saturating_deadline(started, deadline))
            .await;
        let interrupted = inner.core.running_count();
        inner.core.interrupt_all();
        // Let dropped attempts unwind their agents before the final flush.
        if interrupted > 0 {
            inner
                .core
                .wait_idle(tokio::time::Instant::now() + Duration::from_secs(1))
                .await;
        }
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
        self.core.abandon();
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
