//! The event catalog: one struct per event, the [`Event`] enum over all of them,
//! and [`EventKind`] to name them without a payload.
//!
//! Every state change of a swarm is one of these events. The set is closed: the
//! [`CatalogEvent`] trait is sealed, so an event that is not in the catalog
//! cannot be emitted on an [`EventBus`](crate::EventBus), and `bus.on::<E>(..)`
//! is checked at compile time.
//!
//! Serialized events are tagged by name: `{"event":"task:created","data":{..}}`.
//! Optional fields are added with `#[serde(default)]` and unknown fields are
//! ignored, so adding a field to an event keeps old logs readable.

mod catalog;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use catalog::*;

mod sealed {
    pub trait Sealed {}
}

/// An event type of the catalog.
///
/// Implemented for exactly the structs in this module; sealed so the catalog
/// stays closed.
pub trait CatalogEvent:
    sealed::Sealed + Clone + fmt::Debug + Send + Sync + 'static + Into<Event>
{
    /// The event's name in `entity:action` form, such as `"task:completed"`.
    const NAME: &'static str;
    /// The event's kind.
    const KIND: EventKind;

    /// Borrows the payload if `event` is of this type.
    fn from_event(event: &Event) -> Option<&Self>;
}

macro_rules! catalog {
    ($( $(#[$doc:meta])* $variant:ident($ty:ident) = $name:literal, )+) => {
        /// Any event of the catalog: the form used for storage and transport.
        ///
        /// Serialized tagged by name; see the [module docs](self).
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "event", content = "data")]
        #[non_exhaustive]
        pub enum Event {
            $(
                $(#[$doc])*
                #[serde(rename = $name)]
                $variant($ty),
            )+
        }

        /// The kind of an event, without its payload.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[non_exhaustive]
        pub enum EventKind {
            $(
                $(#[$doc])*
                #[serde(rename = $name)]
                $variant,
            )+
        }

        impl EventKind {
            /// Every kind of the catalog, in catalog order.
            pub const ALL: [EventKind; EventKind::COUNT] = [$(EventKind::$variant,)+];

            /// The number of kinds in the catalog.
            pub const COUNT: usize = [$($name,)+].len();

            /// The name in `entity:action` form.
            pub const fn name(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)+
                }
            }

            /// The position in [`EventKind::ALL`] (for per-kind arrays).
            pub const fn index(self) -> usize {
                self as usize
            }
        }

        impl Event {
            /// The event's kind.
            pub const fn kind(&self) -> EventKind {
                match self {
                    $(Event::$variant(_) => EventKind::$variant,)+
                }
            }

            /// The event's name in `entity:action` form.
            pub const fn name(&self) -> &'static str {
                self.kind().name()
            }
        }

        $(
            impl sealed::Sealed for $ty {}

            impl CatalogEvent for $ty {
                const NAME: &'static str = $name;
                const KIND: EventKind = EventKind::$variant;

                fn from_event(event: &Event) -> Option<&Self> {
                    match event {
                        Event::$variant(e) => Some(e),
                        #[allow(unreachable_patterns)]
                        _ => None,
                    }
                }
            }

            impl From<$ty> for Event {
                fn from(e: $ty) -> Event {
                    Event::$variant(e)
                }
            }
        )+
    };
}

catalog! {
    /// A task was accepted.
    TaskCreated(TaskCreated) = "task:created",
    /// A task entered a queue.
    TaskEnqueued(TaskEnqueued) = "task:enqueued",
    /// A task left a queue.
    TaskDequeued(TaskDequeued) = "task:dequeued",
    /// A critical task was enqueued.
    TaskCritical(TaskCritical) = "task:critical",
    /// A task was handed to an agent.
    TaskAssigned(TaskAssigned) = "task:assigned",
    /// An agent finished a task.
    TaskCompleted(TaskCompleted) = "task:completed",
    /// An attempt failed.
    TaskFailed(TaskFailed) = "task:failed",
    /// A task's attempts are exhausted, or it was refused for good.
    TaskDeadLettered(TaskDeadLettered) = "task:dead_lettered",
    /// A task was cancelled, queued or running.
    TaskCancelled(TaskCancelled) = "task:cancelled",
    /// An agent joined the pool.
    AgentCreated(AgentCreated) = "agent:created",
    /// An agent left the pool.
    AgentRemoved(AgentRemoved) = "agent:removed",
    /// An agent became idle.
    AgentAvailable(AgentAvailable) = "agent:available",
    /// An agent started a task.
    AgentBusy(AgentBusy) = "agent:busy",
    /// An agent failed (panic, timeout, error streak).
    AgentError(AgentError) = "agent:error",
    /// Tasks moved from one agent's local queue to another's.
    WorkStolen(WorkStolen) = "work:stolen",
    /// Queued tasks crossed the backlog threshold.
    QueueBacklog(QueueBacklog) = "queue:backlog",
    /// Busy/total agents crossed the overload threshold.
    CoordinatorOverload(CoordinatorOverload) = "coordinator:overload",
    /// A latency objective was missed.
    PerformanceDegraded(PerformanceDegraded) = "performance:degraded",
    /// Shutdown began.
    SystemShutdown(SystemShutdown) = "system:shutdown",
    /// A graceful shutdown stopped an attempt; the task is pending again, uncharged.
    TaskInterrupted(TaskInterrupted) = "task:interrupted",
    /// A dead-lettered task was sent back to the queue with fresh attempts.
    TaskDeadLetterRetried(TaskDeadLetterRetried) = "task:dead_letter_retried",
    /// A dead-lettered task was dropped for good.
    TaskDiscarded(TaskDiscarded) = "task:discarded",
    /// The swarm was paused: no task starts until it is resumed.
    SwarmPaused(SwarmPaused) = "swarm:paused",
    /// The swarm was resumed: queued tasks start again.
    SwarmResumed(SwarmResumed) = "swarm:resumed",
    /// A rate or concurrency limit holds a task: it waits outside the queues, uncharged.
    TaskThrottled(TaskThrottled) = "task:throttled",
    /// The limit that held a task admits it again.
    TaskUnthrottled(TaskUnthrottled) = "task:unthrottled",
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EventKind {
    type Err = ParseEventKindError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| ParseEventKindError {
                input: s.to_owned(),
            })
    }
}

/// The error returned when a string names no event of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseEventKindError {
    input: String,
}

impl std::fmt::Display for ParseEventKindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown event {:?}: expected an `entity:action` name of the catalog, such as task:completed (see docs/events.md)",
            self.input
        )
    }
}

impl std::error::Error for ParseEventKindError {}

#[cfg(test)]
mod tests;
