//! The priority task queue of swarm: four levels, FIFO within a level, O(1)
//! push and pop, bounded or not, with opt-in aging and an async shared form.
//!
//! - [`PriorityQueue<T>`]: a single-owner queue. Pop order is strict (most
//!   urgent level first, oldest first within a level) unless
//!   [`with_aging`](PriorityQueue::with_aging) bounds how often a waiting task
//!   can be overtaken ([`AgingPolicy`] states the bound). A full queue hands
//!   the item back in [`QueueFull`], never drops it.
//! - [`SharedQueue<T>`]: a cloneable handle for many producers and consumers;
//!   `pop().await` sleeps until a push (no polling, no timers) and is
//!   cancellation safe; `close()` wakes everyone.
//!
//! This crate depends only on `swarm-core` (for [`Priority`]) and tokio's `sync`
//! module; it needs no runtime. Depend on it alone to get just the queue; the
//! `swarm` facade builds its global and per-agent queues on it.
//!
//! # Feature flags
//!
//! | feature | what it adds |
//! |---|---|
//! | `proptest` | [`model`]: the reference model, proptest strategies and an invariant checker, to property-test code built on the queue |
//!
//! # Example
//!
//! ```
//! use swarm_queue::{Priority, PriorityQueue};
//!
//! let mut queue = PriorityQueue::new();
//! queue.push("write report", Priority::Normal)?;
//! queue.push("restart db", Priority::Critical)?;
//! queue.push("write tests", Priority::Normal)?;
//!
//! assert_eq!(queue.pop(), Some(("restart db", Priority::Critical)));
//! assert_eq!(queue.pop(), Some(("write report", Priority::Normal)));
//! assert_eq!(queue.stats().queued(Priority::Normal), 1);
//! # Ok::<(), swarm_queue::QueueFull<&str>>(())
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![forbid(unsafe_code)]

mod aging;
mod error;
#[cfg(feature = "proptest")]
#[cfg_attr(docsrs, doc(cfg(feature = "proptest")))]
pub mod model;
mod priority_queue;
mod shared;

pub use aging::AgingPolicy;
pub use error::{QueueClosed, QueueFull, TryPushError};
pub use priority_queue::{Drain, IntoIter, Iter, PriorityQueue, QueueStats};
pub use shared::SharedQueue;
#[doc(inline)]
pub use swarm_core::Priority;
