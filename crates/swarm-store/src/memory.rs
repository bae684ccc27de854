//! [`MemoryStore`]: the event store in memory, for tests, benchmarks and
//! swarms whose log need not outlive the process; unbounded, or a bounded tail.

use std::collections::{BTreeMap, VecDeque};
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

/// How many snapshots a bounded [`MemoryStore`] keeps by default: 3, newest
/// first (as many as a [`FileStore`](crate::FileStore) keeps).
pub const DEFAULT_MEMORY_SNAPSHOTS_KEPT: usize = 3;

/// What a [`MemoryStore`] keeps: every event and snapshot
/// ([`unbounded`](Self::unbounded)), or the newest ones
/// ([`bounded`](Self::bounded)).
///
/// ```
/// use swarm_store::MemoryRetention;
///
/// let retention = MemoryRetention::bounded(100_000).snapshots_kept(2);
/// assert_eq!(retention.get_max_events(), Some(100_000));
/// assert_eq!(retention.get_snapshots_kept(), Some(2));
/// assert_eq!(MemoryRetention::unbounded().get_max_events(), None);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MemoryRetention {
    max_events: Option<usize>,
    snapshots_kept: Option<usize>,
}

impl MemoryRetention {
    /// Keeps every event and every snapshot for the life of the store.
    pub const fn unbounded() -> Self {
        MemoryRetention {
            max_events: None,
            snapshots_kept: None,
        }
    }

    /// Keeps the newest `max_events` events (at least 1) and the newest
    /// [`DEFAULT_MEMORY_SNAPSHOTS_KEPT`] snapshots.
    pub const fn bounded(max_events: usize) -> Self {
        MemoryRetention {
            max_events: Some(if max_events == 0 { 1 } else { max_events }),
            snapshots_kept: Some(DEFAULT_MEMORY_SNAPSHOTS_KEPT),
        }
    }

    /// Sets how many snapshots are kept, newest first (at least 1).
    #[must_use]
    pub const fn snapshots_kept(mut self, count: usize) -> Self {
        self.snapshots_kept = Some(if count == 0 { 1 } else { count });
        self
    }

    /// The most events kept (`None`: every event).
    pub const fn get_max_events(&self) -> Option<usize> {
        self.max_events
    }

    /// The most snapshots kept (`None`: every snapshot).
    pub const fn get_snapshots_kept(&self) -> Option<usize> {
        self.snapshots_kept
    }
}

/// An [`EventStore`] in memory: nothing survives the process.
///
/// Two forms, by [`MemoryRetention`]:
/// - [`MemoryStore::new`] keeps every event and every snapshot for the life
///   of the store: memory grows with history (for tests and benchmarks).
/// - [`MemoryStore::bounded`] keeps the newest `max_events` events (a ring)
///   and the newest [`DEFAULT_MEMORY_SNAPSHOTS_KEPT`] snapshots: memory is
///   bounded by `max_events` times the size of an event (a [`StoredEvent`]
///   inline, about 100 bytes, plus what the event holds on the heap: a task's
///   payload and strings). [`first_seq`](EventStore::first_seq) says where the
///   kept tail starts; a [`read`](EventStore::read) or
///   [`subscribe`](EventStore::subscribe) from before it yields
///   [`StoreError::Compacted`] and ends, and so does a subscriber that falls
///   so far behind that its next event was dropped (never a silent gap).
///
/// Live subscribers also share the last batches appended (up to 1024 of
/// them) until newer ones replace them.
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
///
/// // A bounded tail: the newest two events.
/// let store = MemoryStore::bounded(2);
/// for n in 1..=3 {
///     store.append(vec![AgentAvailable { agent_id: AgentId::new(n) }.into()], None).await?;
/// }
/// assert_eq!(store.first_seq().await?, 2);
/// # Ok::<(), swarm_store::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Log {
    /// The kept events: sequences `last - len + 1 ..= last`.
    events: VecDeque<StoredEvent>,
    /// The log's last sequence (0 when empty).
    last: u64,
    live: Option<broadcast::Sender<Arc<LiveBatch>>>,
    closed: bool,
}

impl Log {
    /// The sequence of the oldest kept event (`last + 1` when none is kept).
    fn first(&self) -> u64 {
        self.last + 1 - self.events.len() as u64
    }
}

#[derive(Default)]
struct Inner {
    retention: MemoryRetention,
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
            .field("first_seq", &log.first())
            .field("last_seq", &log.last)
            .field("retention", &self.inner.retention)
            .field("closed", &log.closed)
            .finish()
    }
}

impl MemoryStore {
    /// An empty store that keeps every event and snapshot (memory grows with
    /// history; see [`bounded`](Self::bounded) for a service).
    pub fn new() -> Self {
        MemoryStore::with_retention(MemoryRetention::unbounded())
    }

    /// An empty store that keeps the newest `max_events` events (at least 1)
    /// and the newest [`DEFAULT_MEMORY_SNAPSHOTS_KEPT`] snapshots.
    pub fn bounded(max_events: usize) -> Self {
        MemoryStore::with_retention(MemoryRetention::bounded(max_events))
    }

    /// An empty store that keeps what `retention` says.
    pub fn with_retention(retention: MemoryRetention) -> Self {
        let (tx, _) = broadcast::channel(LIVE_CAPACITY);
        let inner = Inner {
            retention,
            ..Inner::default()
        };
        inner.log.write().live = Some(tx);
        MemoryStore {
            inner: Arc::new(inner),
        }
    }

    /// What this store keeps.
    pub fn retention(&self) -> MemoryRetention {
        self.inner.retention
    }

    fn append_now(&self, events: Vec<Event>, expected: Option<u64>) -> Result<SeqRange> {
        let mut log = self.inner.log.write();
        if log.closed {
            return Err(StoreError::Closed);
        }
        let last = log.last;
        check_expected(expected, last)?;
        let range = SeqRange::new(last + 1, last + 1 + events.len() as u64);
        if range.is_empty() {
            return Ok(range);
        }
        let timestamp = Timestamp::now();
        let stored: Vec<StoredEvent> = events
            .into_iter()
            .enumerate()
            .map(|(i, event)| StoredEvent {
                seq: range.start + i as u64,
                timestamp,
                event,
            })
            .collect();
        let subscribed = log.live.as_ref().is_some_and(|tx| tx.receiver_count() > 0);
        let batch = subscribed.then(|| LiveBatch {
            range,
            events: stored.clone(),
        });
        log.events.extend(stored);
        log.last = range.end - 1;
        if let Some(max) = self.inner.retention.max_events {
            let excess = log.events.len().saturating_sub(max);
            log.events.drain(..excess);
        }
        if let (Some(batch), Some(tx)) = (batch, &log.live) {
            // Sent under the lock, so batches go out in sequence order. An
            // error only means every subscriber left meanwhile.
            let _ = tx.send(Arc::new(batch));
        }
        Ok(range)
    }
}

impl LogSource for Inner {
    fn visible(&self) -> u64 {
        self.log.read().last
    }

    fn read_range(self: &Arc<Self>, from: u64, to: u64) -> EventStream {
        // Hands out chunks, taking the read lock briefly for each. A chunk
        // whose start was dropped meanwhile (a bounded store) ends the stream
        // with `Compacted`: the reader learns of the gap.
        let inner = Arc::clone(self);
        let from = from.max(1);
        futures::stream::unfold(Some(from), move |next| {
            let inner = Arc::clone(&inner);
            async move {
                let next = next?;
                if next > to {
                    return None;
                }
                let log = inner.log.read();
                let first = log.first();
                if next < first {
                    let compacted = StoreError::Compacted {
                        requested: next,
                        earliest: first,
                    };
                    return Some((futures::stream::iter(vec![Err(compacted)]), None));
                }
                let start = usize::try_from(next - first).ok()?;
                let end = usize::try_from(to.min(log.last) - first + 1).ok()?;
                let end = end.min(start.saturating_add(READ_CHUNK));
                if start >= end {
                    return None;
                }
                let chunk: Vec<Result<StoredEvent>> =
                    log.events.range(start..end).cloned().map(Ok).collect();
                let after = first + end as u64;
                Some((futures::stream::iter(chunk), Some(after)))
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

    fn first_seq(&self) -> BoxFuture<'_, Result<u64>> {
        let first = self.inner.log.read().first();
        Box::pin(async move { Ok(first) })
    }

    fn save_snapshot(&self, snapshot: Snapshot) -> BoxFuture<'_, Result<()>> {
        let mut snapshots = self.inner.snapshots.lock();
        snapshots.insert(snapshot.seq, snapshot);
        if let Some(kept) = self.inner.retention.snapshots_kept {
            while snapshots.len() > kept {
                snapshots.pop_first();
            }
        }
        drop(snapshots);
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
