//! The [`EventStore`] trait and the records it stores.

use std::fmt;
use std::ops::Range;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use swarm_core::{Event, Timestamp};

use crate::error::{Result, StoreError};

/// One event as stored: its place in the log, when it was appended, and the event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The global sequence number: 1 for the first event, gap-free.
    pub seq: u64,
    /// When the append that wrote it was accepted (wall clock).
    pub timestamp: Timestamp,
    /// The event.
    pub event: Event,
}

/// The sequence numbers an append was given: `start..end`, half-open.
///
/// An empty append gets an empty range at the end of the log.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SeqRange {
    /// The first sequence of the append.
    pub start: u64,
    /// One past the last sequence of the append.
    pub end: u64,
}

impl SeqRange {
    /// The range `start..end`.
    pub const fn new(start: u64, end: u64) -> Self {
        SeqRange { start, end }
    }

    /// The number of events.
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether no event was appended.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// The first sequence, if any.
    pub const fn first(&self) -> Option<u64> {
        if self.is_empty() {
            None
        } else {
            Some(self.start)
        }
    }

    /// The last sequence, if any (this is the log's last sequence right after the append).
    pub const fn last(&self) -> Option<u64> {
        if self.is_empty() {
            None
        } else {
            Some(self.end - 1)
        }
    }

    /// The range as a `Range<u64>`, to iterate.
    pub const fn as_range(&self) -> Range<u64> {
        self.start..self.end
    }
}

impl fmt::Debug for SeqRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

/// A snapshot: opaque bytes describing state as of sequence `seq`.
///
/// Stores keep snapshots by sequence, never by timestamp. [`SystemState`](crate::SystemState)
/// (crate::SystemState) makes and reads them.
#[derive(Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The last sequence applied to the state in `data`.
    pub seq: u64,
    /// The encoded state.
    pub data: Vec<u8>,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("seq", &self.seq)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// A stream of stored events, in sequence order.
pub type EventStream = BoxStream<'static, Result<StoredEvent>>;

/// An append-only log of events with a gap-free global sequence, snapshots and
/// live subscriptions.
///
/// Sequences start at 1; `last_seq() == 0` means the log is empty. Methods return
/// boxed futures so the trait can be used as `Arc<dyn EventStore>`.
///
/// Implementations: [`MemoryStore`](crate::MemoryStore),
/// [`FileStore`](crate::FileStore); every implementation must pass
/// `swarm_store::conformance::run_all` (feature `conformance`).
pub trait EventStore: Send + Sync + fmt::Debug {
    /// Appends `events` as one unit and returns the sequences they were given.
    ///
    /// With `expected = Some(s)`, the append only happens if the log ends at
    /// sequence `s` (0 for an empty log); otherwise it fails with
    /// [`StoreError::Conflict`] and appends nothing. The future resolves once
    /// the events are durable under the store's policy.
    fn append(&self, events: Vec<Event>, expected: Option<u64>) -> BoxFuture<'_, Result<SeqRange>>;

    /// The events with sequence `>= from_seq` that the log holds now, in order;
    /// the stream ends at the log's end as of this call.
    fn read(&self, from_seq: u64) -> EventStream;

    /// The events from `from_seq` on: first those already in the log, then each
    /// new one as it is appended, with no gap and no duplicate between the two.
    /// The stream ends when the store is closed.
    fn subscribe(&self, from_seq: u64) -> EventStream;

    /// The log's last sequence (0 when empty), counting appends in flight.
    fn last_seq(&self) -> BoxFuture<'_, Result<u64>>;

    /// The earliest sequence the log still holds: 1 unless a retention policy
    /// removed older events (then a read from before it fails with
    /// [`StoreError::Compacted`]). For an empty log, the sequence the next
    /// event will get.
    ///
    /// The default, for stores that keep every event, is 1.
    fn first_seq(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async { Ok(1) })
    }

    /// Stores a snapshot, keyed by its sequence.
    fn save_snapshot(&self, snapshot: Snapshot) -> BoxFuture<'_, Result<()>>;

    /// The newest snapshot whose sequence is `<= at_or_before`, if any.
    fn latest_snapshot(&self, at_or_before: u64) -> BoxFuture<'_, Result<Option<Snapshot>>>;

    /// Makes every append so far durable, whatever the durability policy.
    fn flush(&self) -> BoxFuture<'_, Result<()>>;

    /// Flushes and stops taking appends; live subscriptions end.
    fn close(&self) -> BoxFuture<'_, Result<()>>;

    /// Whether the store has stopped taking appends after a failed write:
    /// every append now fails with [`StoreError::Poisoned`]. Cheap (an atomic
    /// load for [`FileStore`](crate::FileStore)), so a caller that does not
    /// wait for its appends (a non-durable submit) can check it each time.
    ///
    /// The default, for stores that never poison, is `false`.
    fn is_poisoned(&self) -> bool {
        self.poisoned().is_some()
    }

    /// The [`StoreError::Poisoned`] that appends get now, with the failure
    /// that stopped the store as its source; `None` while appends are taken.
    ///
    /// The default, for stores that never poison, is `None`.
    fn poisoned(&self) -> Option<StoreError> {
        None
    }
}

impl<S: EventStore + ?Sized> EventStore for std::sync::Arc<S> {
    fn append(&self, events: Vec<Event>, expected: Option<u64>) -> BoxFuture<'_, Result<SeqRange>> {
        (**self).append(events, expected)
    }
    fn read(&self, from_seq: u64) -> EventStream {
        (**self).read(from_seq)
    }
    fn subscribe(&self, from_seq: u64) -> EventStream {
        (**self).subscribe(from_seq)
    }
    fn last_seq(&self) -> BoxFuture<'_, Result<u64>> {
        (**self).last_seq()
    }
    fn first_seq(&self) -> BoxFuture<'_, Result<u64>> {
        (**self).first_seq()
    }
    fn save_snapshot(&self, snapshot: Snapshot) -> BoxFuture<'_, Result<()>> {
        (**self).save_snapshot(snapshot)
    }
    fn latest_snapshot(&self, at_or_before: u64) -> BoxFuture<'_, Result<Option<Snapshot>>> {
        (**self).latest_snapshot(at_or_before)
    }
    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        (**self).flush()
    }
    fn close(&self) -> BoxFuture<'_, Result<()>> {
        (**self).close()
    }
    fn is_poisoned(&self) -> bool {
        (**self).is_poisoned()
    }
    fn poisoned(&self) -> Option<StoreError> {
        (**self).poisoned()
    }
}

pub(crate) fn check_expected(expected: Option<u64>, actual: u64) -> Result<()> {
    match expected {
        Some(expected) if expected != actual => Err(StoreError::Conflict { expected, actual }),
        _ => Ok(()),
    }
}
