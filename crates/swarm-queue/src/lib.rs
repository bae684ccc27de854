//! The priority task queue of swarm: four levels, FIFO within a level, O(1)
//! push and pop, bounded or not, with opt-in aging, opt-in fair share between
//! keys, and an async shared form.
//!
//! - [`PriorityQueue<T>`]: a single-owner queue. Pop order is strict (most
//!   urgent level first, oldest first within a level) unless
//!   [`with_aging`](PriorityQueue::with_aging) bounds how often a waiting task
//!   can be overtaken ([`AgingPolicy`] states the bound). A full queue hands
//!   the item back in [`QueueFull`], never drops it.
//! - [`FairQueue<T>`]: the same levels, bound and aging, but within a level
//!   items are grouped by a key (a tenant) read from the item, and keys are
//!   served by cost-aware, weighted deficit round robin instead of FIFO, so a
//!   key with a large backlog cannot hold back one that queued later.
//!   [`FairShare`] states the bound; a key's state lives only while it has
//!   items queued.
//! - [`SharedQueue<T>`]: a cloneable handle for many producers and consumers;
//!   `pop().await` sleeps until a push (no polling, no timers) and is
//!   cancellation safe; `close()` wakes everyone.
//!
//! This is the bottom layer of swarm: it defines [`Priority`] (which
//! `swarm-core` re-exports) and depends on no other swarm crate. With default
//! features off it depends on nothing at all; the `async` feature adds tokio's
//! `sync` module (no runtime). Depend on it alone to get just the queue; the
//! `swarm` facade builds its global and per-agent queues on it.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `async` | yes | [`SharedQueue`], the async shared form (tokio `sync`) |
//! | `serde` | no | `Serialize`/`Deserialize` for [`Priority`] (lowercase names) |
//! | `proptest` | no | [`model`]: the reference model, proptest strategies and an invariant checker, to property-test code built on the queue |
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
mod fair;
mod fair_queue;
#[cfg(feature = "proptest")]
#[cfg_attr(docsrs, doc(cfg(feature = "proptest")))]
pub mod model;
mod priority;
mod priority_queue;
#[cfg(feature = "async")]
mod shared;

pub use aging::AgingPolicy;
pub use error::{QueueClosed, QueueFull, TryPushError};
pub use fair::{FairShare, KeyOf};
pub use fair_queue::{FairDrain, FairIter, FairQueue};
pub use priority::{ParsePriorityError, Priority};
pub use priority_queue::{Drain, IntoIter, Iter, PriorityQueue, QueueStats};
#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub use shared::SharedQueue;
