//! The event bus: typed synchronous handlers and lossless-or-told async streams.
//!
//! - [`EventBus::on`] registers a handler for one event type; it runs inline in
//!   [`EventBus::emit`]. The returned [`Subscription`] unsubscribes on drop.
//! - [`EventBus::subscribe`] gives an [`EventStream`]; a consumer that falls
//!   behind the bus's buffer gets [`Lagged`] with the exact number of events it
//!   missed, then continues with the oldest event still buffered.
//! - A handler that panics is caught, logged and counted; other handlers and later
//!   emits are unaffected.
//! - [`EventBus::stats`] gives per-kind emit counts, handler time and panics;
//!   a [`BusObserver`] sees each handler run as it happens (swarm-metrics uses it
//!   to export handler time as a histogram without swarm-core depending on an exporter).
//!
//! `emit` never blocks on a subscriber: slow async consumers lag, they do not
//! slow the emitter. Code that must see every event (an event store) registers a
//! synchronous handler with [`EventBus::on_any`], which runs in emit order.

mod stats;
mod stream;

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::event::{CatalogEvent, Event, EventKind};

pub use stats::{BusStats, KindStats};
pub use stream::{EventStream, Lagged};

/// The default number of events buffered for async subscribers.
pub const DEFAULT_STREAM_CAPACITY: usize = 4096;

type HandlerFn = dyn Fn(&Event) + Send + Sync;

struct Handler {
    id: u64,
    f: Arc<HandlerFn>,
}

impl Clone for Handler {
    fn clone(&self) -> Self {
        Handler {
            id: self.id,
            f: Arc::clone(&self.f),
        }
    }
}

// One per event kind, on its own cache line so that emitters of different
// kinds do not contend on the counters.
#[repr(align(128))]
struct Slot {
    handlers: RwLock<Arc<[Handler]>>,
    emitted: AtomicU64,
    handler_calls: AtomicU64,
    handler_nanos: AtomicU64,
    panics: AtomicU64,
}

impl Slot {
    fn new() -> Self {
        Slot {
            handlers: RwLock::new(Arc::from(Vec::new())),
            emitted: AtomicU64::new(0),
            handler_calls: AtomicU64::new(0),
            handler_nanos: AtomicU64::new(0),
            panics: AtomicU64::new(0),
        }
    }

    fn handlers(&self) -> Arc<[Handler]> {
        // Handlers never run under this lock, so it cannot be poisoned by one;
        // recover the data anyway rather than propagate a poison.
        Arc::clone(&self.handlers.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn update(&self, change: impl FnOnce(&mut Vec<Handler>)) {
        let mut guard = self.handlers.write().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<Handler> = guard.iter().cloned().collect();
        change(&mut list);
        *guard = Arc::from(list);
    }
}

struct Shared {
    slots: Box<[Slot]>,
    next_id: AtomicU64,
    sender: broadcast::Sender<Event>,
    // Counted by EventStream; lets emit skip the broadcast (and the clone)
    // when nobody listens.
    streams: Arc<AtomicUsize>,
    observer: OnceLock<Arc<dyn BusObserver>>,
}

/// Sees every handler run of a bus, as it happens.
///
/// Set once per bus with [`EventBus::set_observer`]. Called inline on the
/// emitting thread, so keep it cheap (a histogram record, a counter).
pub trait BusObserver: Send + Sync + 'static {
    /// The handlers of one emit of `kind` ran for `elapsed` in total.
    fn handlers_ran(&self, kind: EventKind, elapsed: Duration);

    /// A handler of `kind` panicked (it was caught).
    fn handler_panicked(&self, kind: EventKind) {
        let _ = kind;
    }
}

/// A cheap-to-clone handle to an event bus. Clones share handlers, subscribers
/// and statistics.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use swarm_core::event::{AgentAvailable, TaskCritical};
/// use swarm_core::{AgentId, EventBus, EventKind, TaskId};
///
/// let bus = EventBus::new();
/// let seen = Arc::new(AtomicU32::new(0));
/// let counter = Arc::clone(&seen);
/// let subscription = bus.on::<AgentAvailable>(move |e| {
///     assert_eq!(e.agent_id, AgentId::new(1));
///     counter.fetch_add(1, Ordering::Relaxed);
/// });
///
/// bus.emit(AgentAvailable { agent_id: AgentId::new(1) });
/// bus.emit(TaskCritical { task_id: TaskId::from_u64(9) }); // no handler: only counted
/// drop(subscription);
/// bus.emit(AgentAvailable { agent_id: AgentId::new(1) }); // unsubscribed
///
/// assert_eq!(seen.load(Ordering::Relaxed), 1);
/// assert_eq!(bus.stats().get(EventKind::AgentAvailable).emitted, 2);
/// ```
#[derive(Clone)]
pub struct EventBus {
    shared: Arc<Shared>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new()
    }
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus")
            .field("streams", &self.shared.streams.load(Ordering::Relaxed))
            .field("observer", &self.shared.observer.get().is_some())
            .finish_non_exhaustive()
    }
}

impl EventBus {
    /// A bus whose async subscribers buffer [`DEFAULT_STREAM_CAPACITY`] events.
    pub fn new() -> Self {
        EventBus::with_stream_capacity(DEFAULT_STREAM_CAPACITY)
    }

    /// A bus whose async subscribers buffer `capacity` events (at least 1)
    /// before they start to lag.
    pub fn with_stream_capacity(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        EventBus {
            shared: Arc::new(Shared {
                slots: (0..EventKind::COUNT).map(|_| Slot::new()).collect(),
                next_id: AtomicU64::new(0),
                sender,
                streams: Arc::new(AtomicUsize::new(0)),
                observer: OnceLock::new(),
            }),
        }
    }

    /// Emits an event: runs its handlers inline, in registration order, then
    /// hands it to async subscribers. Never blocks on a subscriber.
    #[inline]
    pub fn emit<E: CatalogEvent>(&self, event: E) {
        self.emit_event(event.into());
    }

    /// Emits an already type-erased event (from a log, or a transport).
    pub fn emit_event(&self, event: Event) {
        let kind = event.kind();
        let slot = &self.shared.slots[kind.index()];
        slot.emitted.fetch_add(1, Ordering::Relaxed);
        let handlers = slot.handlers();
        if !handlers.is_empty() {
            self.run_handlers(kind, slot, &handlers, &event);
        }
        if self.shared.streams.load(Ordering::Relaxed) > 0 {
            // Err only means every receiver is gone since the check.
            let _ = self.shared.sender.send(event);
        }
    }

    fn run_handlers(&self, kind: EventKind, slot: &Slot, handlers: &[Handler], event: &Event) {
        let start = Instant::now();
        for handler in handlers {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| (handler.f)(event))) {
                slot.panics.fetch_add(1, Ordering::Relaxed);
                #[cfg(feature = "tracing")]
                tracing::error!(
                    event = kind.name(),
                    panic = panic_message(&panic),
                    "event handler panicked; it stays subscribed and the bus goes on"
                );
                #[cfg(not(feature = "tracing"))]
                drop(panic);
                if let Some(observer) = self.shared.observer.get() {
                    observer.handler_panicked(kind);
                }
            }
        }
        let elapsed = start.elapsed();
        slot.handler_calls
            .fetch_add(handlers.len() as u64, Ordering::Relaxed);
        slot.handler_nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if let Some(observer) = self.shared.observer.get() {
            observer.handlers_ran(kind, elapsed);
        }
    }

    /// Registers `handler` for events of type `E`. It runs inline in `emit`,
    /// until the returned [`Subscription`] is dropped.
    #[must_use = "dropping the subscription unsubscribes the handler at once"]
    pub fn on<E: CatalogEvent>(
        &self,
        handler: impl Fn(&E) + Send + Sync + 'static,
    ) -> Subscription {
        let f: Arc<HandlerFn> = Arc::new(move |event: &Event| {
            if let Some(e) = E::from_event(event) {
                handler(e);
            }
        });
        self.register(&[E::KIND], f)
    }

    /// Registers `handler` for every event of the catalog, in emit order.
    #[must_use = "dropping the subscription unsubscribes the handler at once"]
    pub fn on_any<F>(&self, handler: F) -> Subscription
    where
        F: Fn(&Event) + Send + Sync + 'static,
    {
        self.register(&EventKind::ALL, Arc::new(handler))
    }

    /// Registers `handler` for the events of the given kinds.
    #[must_use = "dropping the subscription unsubscribes the handler at once"]
    pub fn on_kinds<F>(&self, kinds: &[EventKind], handler: F) -> Subscription
    where
        F: Fn(&Event) + Send + Sync + 'static,
    {
        self.register(kinds, Arc::new(handler))
    }

    fn register(&self, kinds: &[EventKind], f: Arc<HandlerFn>) -> Subscription {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        for kind in kinds {
            let handler = Handler {
                id,
                f: Arc::clone(&f),
            };
            self.shared.slots[kind.index()].update(|list| list.push(handler));
        }
        Subscription {
            bus: Arc::downgrade(&self.shared),
            kinds: kinds.to_vec(),
            id,
        }
    }

    /// An async stream of every event emitted from now on.
    ///
    /// If the consumer falls more than the stream capacity behind, the next item
    /// is `Err(Lagged)` with the exact number of events it missed.
    pub fn subscribe(&self) -> EventStream {
        EventStream::new(
            self.shared.sender.subscribe(),
            Arc::clone(&self.shared.streams),
        )
    }

    /// Sets the bus's observer. Only one can be set; a second call hands the
    /// observer back.
    pub fn set_observer(&self, observer: Arc<dyn BusObserver>) -> Result<(), Arc<dyn BusObserver>> {
        self.shared.observer.set(observer)
    }

    /// The number of handlers registered for `kind`.
    pub fn handler_count(&self, kind: EventKind) -> usize {
        self.shared.slots[kind.index()].handlers().len()
    }

    /// A snapshot of per-kind counts, handler time and panics.
    pub fn stats(&self) -> BusStats {
        BusStats::new(
            EventKind::ALL
                .into_iter()
                .map(|kind| {
                    let slot = &self.shared.slots[kind.index()];
                    KindStats {
                        kind,
                        emitted: slot.emitted.load(Ordering::Relaxed),
                        handler_calls: slot.handler_calls.load(Ordering::Relaxed),
                        handler_time: Duration::from_nanos(
                            slot.handler_nanos.load(Ordering::Relaxed),
                        ),
                        panics: slot.panics.load(Ordering::Relaxed),
                    }
                })
                .collect(),
        )
    }
}

#[cfg(feature = "tracing")]
fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> &str {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "a non-string panic payload"
    }
}

/// A handler registration. Dropping it unsubscribes the handler.
///
/// It holds the bus weakly: a subscription does not keep a bus alive.
#[must_use = "dropping the subscription unsubscribes the handler at once"]
pub struct Subscription {
    bus: Weak<Shared>,
    kinds: Vec<EventKind>,
    id: u64,
}

impl Subscription {
    /// Keeps the handler registered for the bus's whole life.
    pub fn forever(self) {
        std::mem::forget(self);
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("kinds", &self.kinds)
            .finish()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(shared) = self.bus.upgrade() {
            for kind in &self.kinds {
                shared.slots[kind.index()].update(|list| list.retain(|h| h.id != self.id));
            }
        }
    }
}

#[cfg(test)]
mod tests;
