//! swarm: event-driven task scheduling for pools of agents.
//!
//! Tasks arrive with a priority; an idle agent starts the most urgent one at
//! once (no polling); agents that fall behind have work stolen from them;
//! failed agents are replaced and their tasks retried with back-off, then
//! dead-lettered; every state change is an event on the [`EventBus`], counted
//! and timed in Prometheus metrics and appended to an event log that a restart
//! replays, re-queueing whatever was pending or running.
//!
//! This crate is the facade: it wires the layers together. Depend on a layer
//! alone when that is all you need: `swarm-core` (events), `swarm-queue`,
//! `swarm-steal`, `swarm-agents`, `swarm-store`, `swarm-metrics`.
//!
//! # Feature flags
//!
//! | feature | what it adds |
//! |---|---|
//! | `prometheus` (default) | the Prometheus exporter: [`SwarmBuilder::metrics`], [`Swarm::render_metrics`]; without it nothing is recorded and no exporter thread runs |
//! | `nats` | [`SwarmBuilder::nats`]: a swarm node whose work comes from a NATS JetStream work queue shared by many nodes, events in one shared `NatsStore` log; `swarm::distributed` holds the queue's types |
//! | `test-util` | `swarm_core::testing::EventRecorder`, to assert on a swarm's events in tests |
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use swarm::{Priority, Swarm, Task, TaskOutcome};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let swarm = Swarm::builder().agents(2).memory_store().build().await?;
//!
//! let task = Task::builder("summarize")
//!     .priority(Priority::High)
//!     .payload("report.pdf")
//!     .build()?;
//! let handle = swarm.submit(task).await?;
//! assert!(matches!(handle.await, TaskOutcome::Completed { .. }));
//!
//! let report = swarm.shutdown(Duration::from_secs(5)).await?;
//! assert!(report.finished_in_time);
//! # Ok(())
//! # }
//! ```
//!
//! # Delivery semantics
//!
//! At-least-once. With a durable store (a [`FileStore`] with `Fsync`, the
//! default of [`SwarmBuilder::file_store`]) a task is on disk before
//! [`Swarm::submit`] returns, and a restarted swarm re-queues every task that
//! was pending, queued, waiting for a retry, or running. A task that was
//! running at a crash runs again; its lost attempt is recorded as a
//! `task:failed` with reason `lost` and counts against its attempts. An
//! attempt stopped by [`Swarm::shutdown`] is recorded as `task:interrupted`
//! and does not count.
//!
//! # Operating a live swarm
//!
//! The management API reads one live view of the event log (live tasks and
//! finished ones within the retention window; in a distributed swarm, every
//! node's) and journals every action before it takes effect:
//! [`Swarm::task`], [`Swarm::tasks`], [`Swarm::dead_letters`],
//! [`Swarm::task_events`], [`Swarm::retry_dead_letter`],
//! [`Swarm::discard_dead_letter`], [`Swarm::pause`] / [`Swarm::resume`]
//! (a swarm restarted on a paused log starts paused), [`Swarm::scale_to`]
//! and [`Swarm::overview`].
//!
//! ```
//! use std::time::Duration;
//! use swarm::{Swarm, Task, TaskFilter, TaskStatus};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let swarm = Swarm::builder().agents(1).memory_store().build().await?;
//! swarm.pause().await?;
//! let handle = swarm.submit(Task::builder("report").build()?).await?;
//! swarm.sync_view().await?;
//! assert_eq!(swarm.task(handle.id()).map(|t| t.status), Some(TaskStatus::Queued));
//! assert_eq!(swarm.overview().tasks.queued, 1);
//! swarm.resume().await?;
//! assert!(handle.await.is_completed());
//! assert!(swarm.dead_letters(&TaskFilter::new()).tasks.is_empty());
//! swarm.shutdown(Duration::from_secs(5)).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # One runtime
//!
//! [`Swarm`] is the only thing that runs agents, locally or as a node of a
//! distributed swarm ([`SwarmBuilder::nats`]): the work source differs (local
//! queues, or the shared JetStream queue), everything else (agents, retries,
//! health, scaling, the journal, metrics, events, shutdown) is the same.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![forbid(unsafe_code)]

mod builder;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod distributed;
mod error;
mod handle;
mod idmap;
mod journal;
mod latency;
mod manage;
mod metrics;
mod scheduler;
mod stats;
mod swarm;

pub use builder::{DEFAULT_MEMORY_EVENTS, SchedulerMode, SwarmBuilder};
pub use error::{BuildError, CancelError, ShutdownError, SubmitError};
pub use handle::{TaskHandle, TaskOutcome};
#[doc(inline)]
pub use manage::{
    AgentState, AgentView, ManageError, Overview, QueueWait, TaskCounts, TaskFilter, TaskInfo,
    TaskPage,
};
#[doc(hidden)]
pub use scheduler::GlobalQueueProbe;
#[doc(inline)]
pub use scheduler::flow::{LimitError, Rate, Selector};
pub use stats::SwarmStats;
pub use swarm::{ShutdownReport, Swarm};

#[doc(inline)]
pub use swarm_agents::{
    Agent, AgentFactory, AgentPool, CreateAgentError, DurationDist, ExecuteError, HealthPolicy,
    PoolConfig, RetryPolicy, SimAgent, SimConfig, TaskOutput,
};
#[doc(inline)]
pub use swarm_core::{
    AgentId, CatalogEvent, Event, EventBus, EventKind, EventStream, Payload, Priority, Task,
    TaskBuilder, TaskError, TaskId, Timestamp, event, rng,
};
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
#[doc(inline)]
pub use swarm_metrics::{AttachError, EventMonitor, ExporterError, PrometheusExporter};
#[doc(inline)]
pub use swarm_queue::{AgingPolicy, FairQueue, FairShare, PriorityQueue};
#[doc(inline)]
pub use swarm_steal::StealPool;
#[doc(inline)]
pub use swarm_store::{
    Durability, EventStore, FileStore, FileStoreOptions, LogRetention, MemoryStore, Retention,
    SeqRange, Snapshot, StoreError, StoredEvent, SystemState, TaskStatus,
};
/// The result of an [`EventStore`] operation.
pub type StoreResult<T> = swarm_store::Result<T>;
/// A stream of stored events, as [`EventStore::read`] and [`EventStore::subscribe`] return.
pub type StoredEventStream = swarm_store::EventStream;
