//! [`SharedQueue`]: a cloneable, thread-safe, async-waiting [`PriorityQueue`].

use std::fmt;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::error::{QueueClosed, TryPushError};
use crate::{AgingPolicy, Priority, PriorityQueue, QueueStats};

/// A [`PriorityQueue`] shared by many producers and consumers.
///
/// Cloning gives another handle to the same queue. `pop` waits until an item is
/// pushed or the queue is closed: consumers are woken by the push itself (a
/// `tokio::sync::Notify`), never by polling, spinning or timers. The queue
/// works with any executor; it needs no tokio runtime.
///
/// The protocol is a mutex around the queue plus two `Notify`s ("not empty",
/// "not full"). A waiter registers with its `Notify` *before* it looks at the
/// queue, so a push that happens between the look and the wait still wakes it.
///
/// That is tokio's documented `Notify` pattern, and tokio model-checks `Notify`
/// itself with loom; this crate adds no atomics or unsafe code of its own, so it
/// has no loom model. Its tests check the parts it owns deterministically:
/// wake-up forwarding from a dropped `pop`, `close` with waiters, and N x M
/// producers/consumers counting every item once.
///
/// - `pop` is cancellation safe: an item is removed only inside a poll that
///   returns it, so a dropped `pop` future loses nothing (and a wake-up it had
///   received is passed on to another waiter).
/// - `push` on a bounded queue waits for room. Dropping a waiting `push`
///   drops the item with it, like `tokio::sync::mpsc::Sender::send`; use
///   [`try_push`](Self::try_push) to keep the item in hand.
/// - [`close`](Self::close) refuses further pushes and wakes every waiter:
///   consumers drain what is left and then get `None`, waiting producers get
///   their item back in [`QueueClosed`].
///
/// ```
/// use swarm_queue::{Priority, SharedQueue};
///
/// # futures::executor::block_on(async {
/// let queue = SharedQueue::bounded(16);
/// let consumer = {
///     let queue = queue.clone();
///     async move {
///         let mut got = Vec::new();
///         while let Some((item, _)) = queue.pop().await {
///             got.push(item);
///         }
///         got
///     }
/// };
/// queue.push("b", Priority::Low).await.unwrap();
/// queue.push("a", Priority::Critical).await.unwrap();
/// queue.close();
/// assert_eq!(consumer.await, ["a", "b"]);
/// # });
/// ```
pub struct SharedQueue<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    state: Mutex<State<T>>,
    not_empty: Notify,
    not_full: Notify,
}

struct State<T> {
    queue: PriorityQueue<T>,
    closed: bool,
}

impl<T> Clone for SharedQueue<T> {
    fn clone(&self) -> Self {
        SharedQueue {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> Default for SharedQueue<T> {
    fn default() -> Self {
        SharedQueue::new()
    }
}

impl<T> fmt::Debug for SharedQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("SharedQueue")
            .field("len", &state.queue.len())
            .field("capacity", &state.queue.capacity())
            .field("closed", &state.closed)
            .finish_non_exhaustive()
    }
}

impl<T> SharedQueue<T> {
    /// An unbounded shared queue.
    pub fn new() -> Self {
        SharedQueue::from_queue(PriorityQueue::new())
    }

    /// A shared queue holding at most `capacity` items; `push` waits for room.
    pub fn bounded(capacity: usize) -> Self {
        SharedQueue::from_queue(PriorityQueue::bounded(capacity))
    }

    /// Shares an existing queue (keeping its items, capacity and aging policy).
    pub fn from_queue(queue: PriorityQueue<T>) -> Self {
        SharedQueue {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    queue,
                    closed: false,
                }),
                not_empty: Notify::new(),
                not_full: Notify::new(),
            }),
        }
    }

    /// Turns aging on for the shared queue (see [`AgingPolicy`]).
    pub fn with_aging(self, policy: AgingPolicy) -> Self {
        self.lock().queue.set_aging(Some(policy));
        self
    }

    // Poisoning is ignored: every `PriorityQueue` method leaves the queue valid
    // (no item half-moved) if user code it runs panics, so the state is usable.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item` without waiting, or hands it back (`Full` or `Closed`).
    pub fn try_push(&self, item: T, priority: Priority) -> Result<(), TryPushError<T>> {
        {
            let mut state = self.lock();
            if state.closed {
                return Err(TryPushError::Closed(item));
            }
            state.queue.push(item, priority)?;
        }
        self.inner.not_empty.notify_one();
        Ok(())
    }

    /// Queues `item`, waiting for room if the queue is bounded and full.
    /// Hands the item back if the queue is (or gets) closed.
    pub async fn push(&self, item: T, priority: Priority) -> Result<(), QueueClosed<T>> {
        let mut item = item;
        loop {
            let mut room = pin!(self.inner.not_full.notified());
            room.as_mut().enable();
            match self.try_push(item, priority) {
                Ok(()) => return Ok(()),
                Err(TryPushError::Closed(back)) => return Err(QueueClosed(back)),
                Err(TryPushError::Full(back)) => item = back,
            }
            room.await;
        }
    }

    /// Removes the next item without waiting; `None` if the queue is empty.
    pub fn try_pop(&self) -> Option<(T, Priority)> {
        let (popped, bounded) = {
            let mut state = self.lock();
            (state.queue.pop(), state.queue.capacity().is_some())
        };
        if popped.is_some() && bounded {
            self.inner.not_full.notify_one();
        }
        popped
    }

    /// Removes the next item, waiting for a push if the queue is empty.
    /// Returns `None` once the queue is closed and empty. Cancellation safe.
    pub async fn pop(&self) -> Option<(T, Priority)> {
        loop {
            let mut pushed = pin!(self.inner.not_empty.notified());
            pushed.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(popped) = state.queue.pop() {
                    let bounded = state.queue.capacity().is_some();
                    drop(state);
                    if bounded {
                        self.inner.not_full.notify_one();
                    }
                    return Some(popped);
                }
                if state.closed {
                    return None;
                }
            }
            pushed.await;
        }
    }

    /// Refuses further pushes and wakes every waiting `push` and `pop`.
    /// Items already queued can still be popped. Idempotent.
    pub fn close(&self) {
        self.lock().closed = true;
        self.inner.not_empty.notify_waiters();
        self.inner.not_full.notify_waiters();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Items queued.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether no item is queued.
    pub fn is_empty(&self) -> bool {
        self.lock().queue.is_empty()
    }

    /// The bound on the number of items, `None` when unbounded.
    pub fn capacity(&self) -> Option<usize> {
        self.lock().queue.capacity()
    }

    /// Counts per level and lifetime counters.
    pub fn stats(&self) -> QueueStats {
        self.lock().queue.stats()
    }

    /// Removes and returns every item for which `remove` returns `true` (see
    /// [`PriorityQueue::remove_where`]). `remove` runs under the queue's lock:
    /// keep it short and do not touch the queue from it.
    pub fn remove_where(&self, remove: impl FnMut(&T) -> bool) -> Vec<(T, Priority)> {
        let removed = self.lock().queue.remove_where(remove);
        if !removed.is_empty() {
            self.inner.not_full.notify_waiters();
        }
        removed
    }

    /// Removes every queued item in pop order (the queue stays open).
    pub fn drain(&self) -> Vec<(T, Priority)> {
        let drained: Vec<_> = self.lock().queue.drain().collect();
        if !drained.is_empty() {
            self.inner.not_full.notify_waiters();
        }
        drained
    }

    /// Runs `f` with the queue locked, for compound operations (peek then pop,
    /// steal, inspect). Waiters are woken afterwards as if items were both pushed
    /// and popped. Keep `f` short and do not touch this `SharedQueue` from it.
    pub fn with_queue<R>(&self, f: impl FnOnce(&mut PriorityQueue<T>) -> R) -> R {
        let result = f(&mut self.lock().queue);
        self.inner.not_empty.notify_waiters();
        self.inner.not_full.notify_waiters();
        result
    }
}
