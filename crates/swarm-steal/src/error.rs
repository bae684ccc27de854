//! Errors of the steal pool.

use std::error::Error;
use std::fmt;

use swarm_core::{AgentId, Priority};

/// [`StealPool::push_local`](crate::StealPool::push_local) named an agent that
/// has no local queue (never registered, or deregistered).
///
/// The item is handed back, never dropped: queue it globally or on another agent.
/// `Debug` does not print the item.
///
/// ```
/// use swarm_core::{AgentId, Priority};
/// use swarm_steal::StealPool;
///
/// let pool = StealPool::default();
/// let err = pool.push_local(AgentId::new(9), "report", Priority::High, false).unwrap_err();
/// assert_eq!(err.agent(), AgentId::new(9));
/// assert_eq!(
///     err.to_string(),
///     "agent-9 has no local queue: register it first or queue the task globally"
/// );
/// assert_eq!(err.into_parts(), ("report", Priority::High));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct UnknownAgent<T> {
    agent: AgentId,
    item: T,
    priority: Priority,
    pinned: bool,
}

impl<T> UnknownAgent<T> {
    pub(crate) fn new(agent: AgentId, item: T, priority: Priority, pinned: bool) -> Self {
        UnknownAgent {
            agent,
            item,
            priority,
            pinned,
        }
    }

    /// The agent that was named.
    pub fn agent(&self) -> AgentId {
        self.agent
    }

    /// The refused item, by reference.
    pub fn item(&self) -> &T {
        &self.item
    }

    /// The priority it was pushed with.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// Whether it was pushed as pinned.
    pub fn pinned(&self) -> bool {
        self.pinned
    }

    /// The refused item.
    pub fn into_inner(self) -> T {
        self.item
    }

    /// The refused item and its priority.
    pub fn into_parts(self) -> (T, Priority) {
        (self.item, self.priority)
    }
}

impl<T> fmt::Debug for UnknownAgent<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnknownAgent")
            .field("agent", &self.agent)
            .field("priority", &self.priority)
            .field("pinned", &self.pinned)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for UnknownAgent<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} has no local queue: register it first or queue the task globally",
            self.agent
        )
    }
}

impl<T> Error for UnknownAgent<T> {}
