//! Distributed mode (feature `nats`): several processes share one NATS
//! JetStream server or cluster.
//!
//! - [`TaskQueue`]: tasks travel through a JetStream work-queue stream
//!   `SWARM_<swarm>_TASKS` with one subject per priority
//!   (`swarm.<swarm>.tasks.critical|high|normal|low`) and one durable pull
//!   consumer per priority shared by every node; a task's message id is its
//!   task id, so a re-submission inside the duplicate window is queued once.
//! - A node is a [`Swarm`](crate::Swarm) built with
//!   [`SwarmBuilder::nats`](crate::SwarmBuilder::nats): its work source is
//!   the task queue instead of local queues (everything else, agents,
//!   retries, health, scaling, journal, metrics, shutdown, is the same). It
//!   pulls a task whenever one of its agents is idle, the most urgent
//!   subject first (a `biased` select over one held pull request per
//!   priority: an idle node waits on the server, it never polls), runs it on
//!   its agent pool, sends progress acks
//!   (`AckKind::Progress`) while a task runs, and when the attempt ends acks
//!   (completed), naks with the retry back-off (failed, will retry), or moves
//!   the task to the dead-letter stream `SWARM_<swarm>_DEAD` and terminates it
//!   (dead-lettered, or its last delivery failed).
//! - Every node journals its events to one [`NatsStore`](swarm_store::NatsStore)
//!   log through the swarm's one journal, in its shared-writer mode (one
//!   event per append; the events of one task or agent in emit order), and a
//!   task's events are in the log before its ack; a task whose events could
//!   not be appended is nak'd and runs again. `submit` on any node journals
//!   `task:created` and publishes the task; its handle resolves when the
//!   task's outcome appears in the log, whichever node ran it.
//!
//! Attempts and deliveries: a task's attempt count is what its payload
//! carries plus one per earlier delivery of its message (a failed attempt
//! nak'd for its retry, or an attempt lost with its node). A node that cannot
//! run a task (no agent of its kind) hands it back as a new message, after a
//! back-off that doubles with each hand-back, so that costs no attempt and
//! no delivery. The consumers deliver without limit and the nodes enforce
//! [`TaskQueueConfig::max_deliver`]: when the last delivery fails the task
//! is dead-lettered (`task:dead_lettered` in the log), and a delivery beyond
//! it, or one whose attempts are used up, is dead-lettered without running.
//! If the dead-letter stream does not take a dead task, its message is
//! nak'd and the copy retried on the next delivery.
//!
//! Delivery is at-least-once: a node that dies has its unacked tasks
//! redelivered to the others after `ack_wait`; a task that was running there
//! may run twice. Local prefetch is bounded by `prefetch` per priority, and
//! a node always starts the most urgent task it holds, so a critical task
//! never waits behind buffered lower ones.
//!
//! See docs/nats.md for the server settings durability depends on.

mod error;
mod queue;
mod settle;
mod source;

pub(crate) use source::{JetStreamSource, SourceMembership, connect};

/// The NATS client, whose types appear in this module's signatures
/// ([`TaskQueue::open`] takes an `async_nats::Client`).
pub use async_nats;
pub use error::DistributedError;
pub use queue::{TaskQueue, TaskQueueConfig};
