//! The journal: every event of the bus, appended to the event store in emit order.
//!
//! A synchronous `on_any` handler (lossless, in emit order) forwards each event
//! into an unbounded channel; one writer task drains it in batches and appends
//! each batch with a single `append` call, so a durable store group-commits
//! everything that arrived while the previous write was in flight. A barrier
//! resolves once every event sent before it is in the store: `submit` waits on
//! one so that `task:created` is durable before it returns.
//!
//! The writer task sleeps on the channel: with no events it never wakes.
//!
//! A store whose appends complete without waiting (the in-memory store) is
//! appended to inline, from the handler, which keeps the hot path free of a
//! channel hop and of a writer wake-up per burst of events.
//!
//! The first failed append latches: [`Journal::failure`] returns it from then
//! on, and `submit` refuses new tasks with it, durable store or not, so a
//! swarm whose log has stopped recording does not go on accepting work that
//! it could not recover.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures::FutureExt;
use parking_lot::Mutex;
use swarm_core::{Event, EventBus, Subscription};
use swarm_store::{EventStore, StoreError};
use tokio::sync::{mpsc, oneshot};

use crate::stats::Counters;

/// A store error, shared by everything that waited on the failed write.
pub(crate) type SharedStoreError = Arc<StoreError>;

enum Message {
    Event(Event),
    Barrier(oneshot::Sender<Result<(), SharedStoreError>>),
}

/// The first append failure, once there is one.
#[derive(Default)]
struct Latch(Mutex<Option<SharedStoreError>>);

impl Latch {
    fn set(&self, error: &SharedStoreError) {
        let mut slot = self.0.lock();
        if slot.is_none() {
            *slot = Some(Arc::clone(error));
        }
    }

    fn get(&self) -> Option<SharedStoreError> {
        self.0.lock().clone()
    }
}

/// Records the duration of each store append (swarm_store_append_duration_seconds).
pub(crate) type AppendObserver = Arc<dyn Fn(std::time::Duration) + Send + Sync>;

pub(crate) struct Journal {
    sender: mpsc::UnboundedSender<Message>,
    failed: Arc<Latch>,
    _subscription: Subscription,
}

const BATCH: usize = 8192;

impl Journal {
    pub(crate) fn start(
        bus: &EventBus,
        store: Arc<dyn EventStore>,
        counters: Arc<Counters>,
        on_append: Option<AppendObserver>,
        inline: bool,
    ) -> Journal {
        let (sender, mut receiver) = mpsc::unbounded_channel::<Message>();
        let failed = Arc::new(Latch::default());
        let subscription = if inline {
            // A store whose append completes without waiting (MemoryStore):
            // append right here, in emit order, with no channel hop and no
            // writer wake-up on the hot path.
            let store = Arc::clone(&store);
            let counters = Arc::clone(&counters);
            let failed = Arc::clone(&failed);
            bus.on_any(move |event| {
                match store.append(vec![event.clone()], None).now_or_never() {
                    Some(Ok(_)) => {
                        counters.events_stored.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Err(error)) => {
                        counters.store_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(%error, event = event.name(), "event store append failed; this event is not in the log");
                        failed.set(&Arc::new(error));
                    }
                    None => {
                        counters.store_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(event = event.name(), "an inline event store did not append at once; this event is not in the log");
                        failed.set(&Arc::new(StoreError::Poisoned {
                            source: Arc::new(StoreError::Io {
                                path: std::path::PathBuf::new(),
                                source: std::io::Error::other(
                                    "an inline store did not complete an append at once",
                                ),
                            }),
                        }));
                    }
                }
            })
        } else {
            let forward = sender.clone();
            bus.on_any(move |event| {
                // Fails only after the writer stopped (shutdown finished); the
                // event then has nowhere durable to go and the swarm is closed.
                let _ = forward.send(Message::Event(event.clone()));
            })
        };
        // The writer task ends when the journal (its last sender) is dropped.
        let latch = Arc::clone(&failed);
        tokio::spawn(async move {
            let mut inbox = Vec::with_capacity(BATCH);
            let mut events = Vec::with_capacity(BATCH);
            let mut barriers = Vec::new();
            while receiver.recv_many(&mut inbox, BATCH).await > 0 {
                counters.wakeups.fetch_add(1, Ordering::Relaxed);
                for message in inbox.drain(..) {
                    match message {
                        Message::Event(event) => events.push(event),
                        Message::Barrier(ack) => barriers.push(ack),
                    }
                }
                let result = if events.is_empty() {
                    Ok(())
                } else {
                    let count = events.len() as u64;
                    let started = Instant::now();
                    let batch = std::mem::replace(&mut events, Vec::with_capacity(BATCH));
                    let result = store.append(batch, None).await;
                    if let Some(observe) = &on_append {
                        observe(started.elapsed());
                    }
                    match result {
                        Ok(_) => {
                            counters.events_stored.fetch_add(count, Ordering::Relaxed);
                            Ok(())
                        }
                        Err(error) => {
                            counters.store_errors.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(%error, events = count, "event store append failed; these events are not in the log");
                            let error = Arc::new(error);
                            latch.set(&error);
                            Err(error)
                        }
                    }
                };
                for ack in barriers.drain(..) {
                    let _ = ack.send(result.clone());
                }
            }
        });
        Journal {
            sender,
            failed,
            _subscription: subscription,
        }
    }

    /// Resolves once every event emitted before this call is in the store, or
    /// with the error of the write that failed to put them there.
    pub(crate) async fn barrier(&self) -> Result<(), SharedStoreError> {
        if let Some(error) = self.failed.get() {
            return Err(error);
        }
        let (ack, done) = oneshot::channel();
        let stopped = || Arc::new(StoreError::Closed);
        self.sender
            .send(Message::Barrier(ack))
            .map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }

    /// The first failed append, if one failed: nothing after it is recorded
    /// for sure, so the swarm accepts no new task.
    pub(crate) fn failure(&self) -> Option<SharedStoreError> {
        self.failed.get()
    }
}
