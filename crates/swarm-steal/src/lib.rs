//! Work stealing between agents' local queues for swarm.
//!
//! Tasks routed to one agent (by affinity or prefetch) wait in that agent's
//! local priority queue. [`StealPool<T>`] keeps one such queue per agent and
//! moves work between them the moment it helps, never on a timer:
//!
//! - [`StealPool::steal_half`]: an agent whose queue is empty takes
//!   `floor(stealable / 2)` items from the agent with the most stealable items,
//!   if that agent has more than the threshold (default 3). The most urgent items
//!   move first, so priorities survive stealing. Pinned items never move.
//! - [`StealPool::rebalance`]: called on an event (an agent went idle, a push made
//!   queues uneven), evens out queues whose lengths differ by more than the threshold.
//! - [`StealStats`] counts steal operations and stolen items separately.
//!
//! Every method takes `&self`; the pool is safe for concurrent owners and
//! thieves (share it in an `Arc`). Each local queue has its own short-held
//! mutex, the registry of queues an `RwLock`; no lock outlives a call, so none
//! is ever held across an `.await`. Multi-queue operations lock queues in
//! ascending [`AgentId`](swarm_core::AgentId) order, which rules out deadlock.
//!
//! This crate sits on `swarm-queue` (each local queue is a
//! [`PriorityQueue`](swarm_queue::PriorityQueue)) and `swarm-core` (ids,
//! [`Priority`](swarm_core::Priority)). Depend on it alone for agent-local
//! queues with stealing; the `swarm` facade wires it to the scheduler and turns
//! each [`Stolen`] into a `work:stolen` event.
//!
//! # Feature flags
//!
//! None.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use swarm_core::{AgentId, Priority};
//! use swarm_steal::StealPool;
//!
//! let pool = Arc::new(StealPool::default()); // threshold 3
//! let (a, b) = (AgentId::new(0), AgentId::new(1));
//! pool.register(a);
//! pool.register(b);
//! for job in ["index", "thumbnail", "email", "backup", "report", "compress"] {
//!     pool.push_local(a, job, Priority::Normal, false)?;
//! }
//! pool.push_local(a, "rotate keys", Priority::Critical, false)?;
//!
//! // b is idle: it takes half of a's 7 stealable items, most urgent first.
//! let (stolen, jobs) = pool.steal_half_with(b, |job, _| *job).unwrap();
//! assert_eq!((stolen.from, stolen.to, stolen.count), (a, b, 3));
//! assert_eq!(jobs, ["rotate keys", "index", "thumbnail"]);
//! assert_eq!(pool.pop_local(b), Some(("rotate keys", Priority::Critical)));
//! assert_eq!(pool.local_len(a), 4);
//!
//! // An agent that leaves hands its queue back, in pop order.
//! let leftovers = pool.deregister(a);
//! assert_eq!(leftovers.len(), 4);
//! # Ok::<(), swarm_steal::UnknownAgent<&str>>(())
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![forbid(unsafe_code)]

mod error;
mod local;
mod pool;
mod stats;

pub use error::UnknownAgent;
pub use pool::{DEFAULT_STEAL_THRESHOLD, StealPool, Stolen};
pub use stats::StealStats;
