//! Distributed mode (feature `nats`): several processes share one NATS
//! JetStream server or cluster.
//!
//! - [`TaskQueue`]: tasks travel through a JetStream work-queue stream
//!   `SWARM_<swarm>_TASKS` with one subject per priority
//!   (`swarm.<swarm>.tasks.critical|high|normal|low`) and one durable pull
//!   consumer per priority shared by every node; a task's message id is its
//!   task id, so a re-submission inside the duplicate window is queued once.
//! - [`Node`]: pulls tasks whenever one of its agents is free, the most urgent
//!   subject first (a `biased` select over one held pull request per
//!   priority: an idle node waits on the server, it never polls), runs them on
//!   its [`AgentPool`](swarm_agents::AgentPool), sends progress acks
//!   (`AckKind::Progress`) while a task runs, and when the attempt ends acks
//!   (completed), naks with the retry back-off (failed, will retry), or moves
//!   the task to the dead-letter stream `SWARM_<swarm>_DEAD` and terminates it
//!   (dead-lettered, or `max_deliver` deliveries used up).
//! - Every node journals its pool's events to one [`NatsStore`](swarm_store::NatsStore)
//!   log, and a task's events are appended before its ack.
//!
//! Delivery is at-least-once: a node that dies has its unacked tasks
//! redelivered to the others after `ack_wait`; a task that was running there
//! may run twice. Local prefetch is bounded by `prefetch` per priority, and
//! a node always starts the most urgent task it holds, so a critical task
//! never waits behind buffered lower ones.
//!
//! See docs/nats.md for the server settings durability depends on.

mod error;
mod node;
mod queue;
mod source;

pub(crate) use source::{JetStreamSource, SourceMembership, connect};

pub use error::DistributedError;
pub use node::{Node, NodeHandle};
pub use queue::{TaskQueue, TaskQueueConfig};
