//! The event store of swarm: every accepted task and every state change, kept in
//! order so that a crashed process resumes where it stopped.
//!
//! - [`EventStore`]: the async trait (append with a gap-free global sequence and
//!   optimistic concurrency, read, subscribe with catch-up then live, snapshots).
//! - [`MemoryStore`] for tests and benchmarks; [`FileStore`], the embedded
//!   default: a segmented, checksummed, append-only log in a directory, with
//!   group commit, crash recovery and atomic snapshots; [`FileLogReader`], its
//!   read-only reader (no lock, no repair, beside a live writer).
//! - [`SystemState`]: the state a log describes (tasks by status, agents,
//!   counters), with [`SystemState::replay`] / [`SystemState::replay_to`] from
//!   the newest snapshot, and a [`Snapshotter`] that snapshots it by events and
//!   by time ([`SnapshotPolicy`]), off the runtime's worker threads.
//! - [`Projection`]s: [`TaskCompletion`] and [`AgentPerformance`].
//!
//! Depend on this crate (with `swarm-core`) to read or write swarm logs without
//! the scheduler; the `swarm` facade wires a store into a running swarm.
//!
//! # Feature flags
//!
//! | feature | what it adds |
//! |---|---|
//! | `conformance` | `conformance::run_all`, the test suite every `EventStore` must pass |
//! | `nats` | `NatsStore`: the log in a NATS JetStream stream, snapshots in a KV bucket (docs/nats.md) |
//!
//! # Example
//!
//! ```
//! use swarm_core::event::TaskCreated;
//! use swarm_core::Task;
//! use swarm_store::{EventStore, FileStore, SystemState, TaskStatus};
//!
//! # let dir = tempfile::tempdir().unwrap();
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = FileStore::open(dir.path())?;
//! let task = Task::builder("summarize").build().expect("a valid task");
//! store.append(vec![TaskCreated { task: task.clone() }.into()], Some(0)).await?;
//! store.close().await?;
//!
//! // After a restart: replay the log.
//! let store = FileStore::open(dir.path())?;
//! let state = SystemState::replay(&store).await?;
//! assert_eq!(state.task(task.id()).map(|t| t.status), Some(TaskStatus::Pending));
//! # Ok::<(), swarm_store::StoreError>(())
//! # }).unwrap();
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![forbid(unsafe_code)]

// The futures pieces come from `futures-util` alone (not the `futures` facade,
// which adds executor, io, channel and sink crates); the alias keeps the
// `futures::` paths used across the modules.
extern crate futures_util as futures;

#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
mod error;
pub mod file;
mod live;
mod memory;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod nats;
mod projection;
mod snapshotter;
mod state;
mod store;
mod sync;

pub use error::{Result, StoreError};
#[doc(inline)]
pub use file::{
    CutPoint, Durability, FileLogReader, FileStore, FileStoreOptions, LogRecords, LogRetention,
    OpenReport, TornTail,
};
pub use memory::MemoryStore;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use nats::{NatsAuth, NatsStore, NatsStoreOptions, NatsTls};
pub use projection::{
    AgentPerformance, AgentStats, Projection, TaskCompletion, UNKNOWN_KIND, project,
};
pub use snapshotter::{
    DEFAULT_SNAPSHOT_EVERY, DEFAULT_SNAPSHOT_INTERVAL, InitialState, LagHook, SNAPSHOT_RETRY_MAX,
    SNAPSHOT_RETRY_MIN, SnapshotFailureHook, SnapshotPolicy, Snapshotter,
};
pub use state::{
    AgentRecord, Counters, KindCounts, Retention, SystemState, TaskRecord, TaskStatus,
};
pub use store::{EventStore, EventStream, SeqRange, Snapshot, StoredEvent};
