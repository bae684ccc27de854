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

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures::FutureExt;
use swarm_core::{Event, EventBus, Subscription};
use swarm_store::EventStore;
use tokio::sync::{mpsc, oneshot};

use crate::stats::Counters;

enum Message {
    Event(Event),
    Barrier(oneshot::Sender<Result<(), String>>),
}

/// Records the duration of each store append (swarm_store_append_duration_seconds).
pub(crate) type AppendObserver = Arc<dyn Fn(std::time::Duration) + Send + Sync>;

pub(crate) struct Journal {
    sender: mpsc::UnboundedSender<Message>,
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
        let subscription = if inline {
            // A store whose append completes without waiting (MemoryStore):
            // append right here, in emit order, with no channel hop and no
            // writer wake-up on the hot path.
            let store = Arc::clone(&store);
            let counters = Arc::clone(&counters);
            bus.on_any(move |event| {
                match store.append(vec![event.clone()], None).now_or_never() {
                    Some(Ok(_)) => {
                        counters.events_stored.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Err(error)) => {
                        counters.store_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(%error, event = event.name(), "event store append failed; this event is not in the log");
                    }
                    None => {
                        counters.store_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(event = event.name(), "an inline event store did not append at once; this event is not in the log");
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
                            Err(error.to_string())
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
            _subscription: subscription,
        }
    }

    /// Resolves once every event emitted before this call is in the store.
    pub(crate) async fn barrier(&self) -> Result<(), String> {
        let (ack, done) = oneshot::channel();
        self.sender
            .send(Message::Barrier(ack))
            .map_err(|_| "the event store writer has stopped".to_owned())?;
        done.await
            .map_err(|_| "the event store writer has stopped".to_owned())?
    }
}
