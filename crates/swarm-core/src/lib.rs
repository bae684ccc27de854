//! The typed event core of swarm: ids, priorities, tasks, the event catalog and
//! the [`EventBus`].
//!
//! swarm schedules tasks onto pools of agents the event-driven way. This crate is
//! its event layer: small and light (no runtime, no exporter, no I/O), shared by
//! every other swarm crate. Below it sits only `swarm-queue`, which defines
//! [`Priority`] (re-exported here, the same type). Depend on it directly to write
//! handlers, agents or tools that speak swarm's events; depend on the `swarm`
//! facade for a working scheduler.
//!
//! # Feature flags
//!
//! | feature | what it adds |
//! |---|---|
//! | `tracing` (default) | logs an isolated handler panic with `tracing::error!` (panics are counted either way) |
//! | `json` | JSON helpers on payloads ([`Payload::json`], [`TaskBuilder::json`]) |
//! | `test-util` | [`testing::EventRecorder`], to assert on emitted events in tests |
//! | `proptest` | `testing::strategy`, proptest strategies for tasks and events |
//! | `rand` | `rand::RngCore` for [`rng::SplitMix64`] |
//!
//! # Example
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use swarm_core::event::{TaskCompleted, TaskCreated};
//! use swarm_core::{AgentId, EventBus, Priority, Task};
//!
//! let bus = EventBus::new();
//! let done = Arc::new(Mutex::new(Vec::new()));
//! let sink = Arc::clone(&done);
//! let _guard = bus.on::<TaskCompleted>(move |e| sink.lock().unwrap().push(e.task_id));
//!
//! let task = Task::builder("summarize").priority(Priority::High).build()?;
//! bus.emit(TaskCreated { task: task.clone() });
//! bus.emit(TaskCompleted {
//!     task_id: task.id(),
//!     agent_id: AgentId::new(0),
//!     attempt: 1,
//!     duration: std::time::Duration::from_millis(3),
//!     output: "ok".into(),
//! });
//! assert_eq!(*done.lock().unwrap(), vec![task.id()]);
//! # Ok::<(), swarm_core::TaskError>(())
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod bus;
pub mod event;
mod id;
pub mod rng;
mod task;
pub mod testing;
pub mod time;

#[doc(inline)]
pub use bus::{EventBus, EventStream, Lagged, Subscription};
#[doc(inline)]
pub use event::{CatalogEvent, Event, EventKind};
pub use id::{AgentId, ParseIdError, TaskId};
// `Priority` lives in the bottom crate, swarm-queue, so the queue needs no event core.
#[doc(inline)]
pub use swarm_queue::{ParsePriorityError, Priority};
pub use task::{DEFAULT_MAX_PAYLOAD, Payload, Task, TaskBuilder, TaskError, TaskParts};
pub use time::Timestamp;
