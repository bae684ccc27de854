//! Errors that hand the rejected item back.

use std::error::Error;
use std::fmt;

use crate::Priority;

/// A bounded queue was full: the item was not queued and is handed back.
///
/// `Debug` and `Display` do not print the item, so `T` needs neither.
///
/// ```
/// use swarm_queue::{PriorityQueue, Priority};
///
/// let mut queue = PriorityQueue::bounded(1);
/// queue.push("a", Priority::Low)?;
/// let err = queue.push("b", Priority::High).unwrap_err();
/// assert_eq!(err.to_string(), "queue is full");
/// assert_eq!(err.priority(), Priority::High);
/// assert_eq!(err.into_inner(), "b");
/// # Ok::<(), swarm_queue::QueueFull<&str>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct QueueFull<T> {
    item: T,
    priority: Priority,
}

impl<T> QueueFull<T> {
    pub(crate) fn new(item: T, priority: Priority) -> Self {
        QueueFull { item, priority }
    }

    /// The rejected item.
    pub fn into_inner(self) -> T {
        self.item
    }

    /// The rejected item and the priority it was pushed with.
    pub fn into_parts(self) -> (T, Priority) {
        (self.item, self.priority)
    }

    /// A reference to the rejected item.
    pub fn item(&self) -> &T {
        &self.item
    }

    /// The priority the item was pushed with.
    pub fn priority(&self) -> Priority {
        self.priority
    }
}

impl<T> fmt::Debug for QueueFull<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueFull")
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for QueueFull<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("queue is full")
    }
}

impl<T> Error for QueueFull<T> {}

/// Why [`SharedQueue::try_push`](crate::SharedQueue::try_push) did not queue an item.
/// The item is handed back either way.
#[derive(Clone, PartialEq, Eq)]
pub enum TryPushError<T> {
    /// The queue is at capacity; retry after a pop, or use the async `push`.
    Full(T),
    /// The queue was closed; nothing will be accepted again.
    Closed(T),
}

impl<T> TryPushError<T> {
    /// The rejected item.
    pub fn into_inner(self) -> T {
        match self {
            TryPushError::Full(item) | TryPushError::Closed(item) => item,
        }
    }

    /// Whether the queue was full (as opposed to closed).
    pub fn is_full(&self) -> bool {
        matches!(self, TryPushError::Full(_))
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, TryPushError::Closed(_))
    }
}

impl<T> fmt::Debug for TryPushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPushError::Full(_) => f.write_str("Full(..)"),
            TryPushError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TryPushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPushError::Full(_) => f.write_str("queue is full"),
            TryPushError::Closed(_) => f.write_str("queue is closed"),
        }
    }
}

impl<T> Error for TryPushError<T> {}

impl<T> From<QueueFull<T>> for TryPushError<T> {
    fn from(err: QueueFull<T>) -> Self {
        TryPushError::Full(err.into_inner())
    }
}

/// [`SharedQueue::push`](crate::SharedQueue::push) found the queue closed; the item is handed back.
#[derive(Clone, PartialEq, Eq)]
pub struct QueueClosed<T>(pub T);

impl<T> QueueClosed<T> {
    /// The rejected item.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for QueueClosed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("QueueClosed(..)")
    }
}

impl<T> fmt::Display for QueueClosed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("queue is closed")
    }
}

impl<T> Error for QueueClosed<T> {}
