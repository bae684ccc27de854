//! [`MemoryStore`]: the event store in memory, for tests and benchmarks.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::sync::{Mutex, RwLock};
use futures::StreamExt;
use futures::future::BoxFuture;
use swarm_core::{Event, Timestamp};
use tokio::sync::broadcast;

use crate::error::{Result, StoreError};
use crate::live::{self, LIVE_CAPACITY, LiveBatch, LogSource};
use crate::store::{EventStore, EventStream, SeqRange, Snapshot, StoredEvent, check_expected};

/// How many events a read hands out per lock acquisition.
const READ_CHUNK: usize = 1024;

/// An [`EventStore`] in memory: nothing survives the process.
///
/// Cheap to clone (clones share the log).
///
/// ```
/// use swarm_core::event::AgentAvailable;
/// use swarm_core::AgentId;
/// use swarm_store::{EventStore, MemoryStore};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// let range = store
///     .append(vec![AgentAvailable { agent_id: AgentId::new(1) }.into()], Some(0))
///     .await?;
/// assert_eq!(range.last(), Some(1));
/// assert_eq!(store.last_seq().await?, 1);
/// # Ok::<(), swarm_store::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Log {
    events: Vec<StoredEvent>,
    live: Option<broadcast::Sender<Arc<LiveBatch>>>,
    closed: bool,
}

#[derive(Default)]
struct Inner {
    log: RwLock<Log>,
    snapshots: Mutex<BTreeMap<u64, Snapshot>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let log = self.inner.log.read();
        f.debug_struct("MemoryStore")
            .field("last_seq", &log.events.len())
            .field("closed", &log.closed)
            .finish()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(LIVE_CAPACITY);
        let inner = Inner::default();
        inner.log.write().live = Some(tx);
        MemoryStore {
            inner: Arc::new(inner),
        }
    }

    fn append_now(&self, events: Vec<Event>, expected: Option<u64>) -> Result<SeqRange> {
        let mut log = self.inner.log.write();
        if log.closed {
            return Err(StoreError::Closed);
        }
        let last = log.events.len() as u64;
        check_expected(expected, last)?;
        let range = SeqRange::new(last + 1, last + 1 + events.len() as u64);
        if range.is_empty() {
            return Ok(range);
        }
        let timestamp = Timestamp::now();
        let subscribed = log.live.as_ref().is_some_and(|tx| tx.receiver_count() > 0);
        let start = log.events.len();
        log.events.extend(
            events
                .into_iter()
                .enumerate()
                .map(|(i, event)| StoredEvent {
                    seq: range.start + i as u64,
                    timestamp,
                    event,
                }),
        );
        if subscribed {
            let batch = LiveBatch {
                range,
                events: log.events[start..].to_vec(),
            };
            if let Some(tx) = &log.live {
                // Sent under the lock, so batches go out in sequence order. An
                // error only means every subscriber left meanwhile.
                let _ = tx.send(Arc::new(batch));
            }
        }
        Ok(range)
    }
}

impl LogSource for Inner {
    fn visible(&self) -> u64 {
        self.log.read().events.len() as u64
    }

    fn read_range(self: &Arc<Self>, from: u64, to: u64) -> EventStream {
        // Hands out chunks, taking the read lock briefly for each.
        let inner = Arc::clone(self);
        let from = from.max(1);
        futures::stream::unfold(from, move |next| {
            let inner = Arc::clone(&inner);
            async move {
                if next > to {
                    return None;
                }
                let log = inner.log.read();
                let start = usize::try_from(next - 1).ok()?;
                let end = usize::try_from(to).ok()?.min(log.events.len());
                let end = end.min(start.saturating_add(READ_CHUNK));
                if start >= end {
                    return None;
                }
                let chunk: Vec<Result<StoredEvent>> =
                    log.events[start..end].iter().cloned().map(Ok).collect();
                Some((futures::stream::iter(chunk), end as u64 + 1))
            }
        })
        .flatten()
        .boxed()
    }
}

impl EventStore for MemoryStore {
    fn append(&self, events: Vec<Event>, expected: Option<u64>) -> BoxFuture<'_, Result<SeqRange>> {
        let result = self.append_now(events, expected);
        Box::pin(async move { result })
    }

    fn read(&self, from_seq: u64) -> EventStream {
        let to = self.inner.visible();
        self.inner.read_range(from_seq, to)
    }

    fn subscribe(&self, from_seq: u64) -> EventStream {
        let rx = self.inner.log.read().live.as_ref().map(|tx| tx.subscribe());
        live::subscribe(Arc::clone(&self.inner), rx, from_seq)
    }

    fn last_seq(&self) -> BoxFuture<'_, Result<u64>> {
        let last = self.inner.visible();
        Box::pin(async move { Ok(last) })
    }

    fn save_snapshot(&self, snapshot: Snapshot) -> BoxFuture<'_, Result<()>> {
        self.inner.snapshots.lock().insert(snapshot.seq, snapshot);
        Box::pin(async { Ok(()) })
    }

    fn latest_snapshot(&self, at_or_before: u64) -> BoxFuture<'_, Result<Option<Snapshot>>> {
        let found = self
            .inner
            .snapshots
            .lock()
            .range(..=at_or_before)
            .next_back()
            .map(|(_, s)| s.clone());
        Box::pin(async move { Ok(found) })
    }

    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        let mut log = self.inner.log.write();
        log.closed = true;
        // Dropping the sender ends live subscriptions after they drain.
        log.live = None;
        drop(log);
        Box::pin(async { Ok(()) })
    }
}
