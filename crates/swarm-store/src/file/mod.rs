//! [`FileStore`]: the embedded default event store, a directory on local disk.
//!
//! - A segmented append-only log, each record framed with its length and a
//!   CRC32C (the bytes are documented in `src/file/format.rs`).
//! - Group commit: one writer thread takes every append queued while it was
//!   busy and writes them with one `write` and one `fdatasync`.
//! - Recovery on open: a torn or damaged tail of the last segment is cut back
//!   to the last whole record and reported in the [`OpenReport`]; damage before
//!   it is a [`StoreError::Corrupt`] naming the file and byte offset, unless
//!   [`FileStoreOptions::repair`] is set.
//! - Restart reads the snapshot and the tail only: open checks the segments
//!   from the one holding the newest snapshot's sequence on (every segment
//!   without a snapshot, with `repair`, or with
//!   [`FileStoreOptions::verify_all_on_open`]). Older segments are checked by
//!   the read that reaches them, by the same rules; damage there is a
//!   [`StoreError::Corrupt`] of that read (after the events before it), not a
//!   failure of the open: a replay from the snapshot never needs them, and
//!   refusing to start over history nobody reads would make startup cost the
//!   whole log again.
//! - Snapshots written atomically, the newest K kept.
//! - Log retention ([`LogRetention`], off by default): whole segments covered
//!   by the oldest kept snapshot are deleted, crash-safely (a start marker
//!   moves first, an interrupted deletion is finished by the next open). A
//!   read from before the retained start ([`first_seq`](EventStore::first_seq))
//!   yields [`StoreError::Compacted`].
//! - [`FileLogReader`]: the read-only reader of a log directory, beside a live
//!   writer or without one (what `swarm replay`, `events` and `stats` use).

mod codec;
pub(crate) mod format;
mod lock;
mod log_reader;
mod options;
mod reader;
mod recovery;
mod retention;
mod snapshot;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use crate::sync::{Condvar, Mutex, RwLock};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use swarm_core::{Event, Timestamp};
use tokio::sync::{broadcast, oneshot, watch};

pub use log_reader::{FileLogReader, LogRecords, TornTail};
pub use options::{
    CutPoint, DEFAULT_SEGMENT_SIZE, DEFAULT_SNAPSHOTS_KEPT, Durability, FileStoreOptions,
    OpenReport,
};
pub use retention::LogRetention;

use crate::error::{Result, StoreError};
use crate::live::{self, LIVE_CAPACITY, LogSource};
use crate::store::{EventStore, EventStream, SeqRange, Snapshot, StoredEvent, check_expected};
use writer::{Pending, Shared};

/// The embedded event store: a directory holding a segmented, checksummed,
/// append-only log and snapshots.
///
/// Cheap to clone; clones share the log. The log is closed when
/// [`close`](EventStore::close) is called or the last clone is dropped (then
/// the appends already queued are written before the drop returns).
///
/// By default every event is kept. With a [`retention`](FileStoreOptions::retention)
/// policy, whole segments that the oldest kept snapshot covers are deleted
/// (never the active one, never without a snapshot); reads from before
/// [`first_seq`](EventStore::first_seq) then fail with
/// [`StoreError::Compacted`]. See [`LogRetention`] for the contract.
///
/// One store at a time may have a directory open: [`open`](FileStore::open)
/// takes an OS advisory lock on a file in it, held until the store is closed
/// or dropped (or its process dies), and a second open, from this process or
/// another, fails with [`StoreError::Locked`]. A [`FileLogReader`] reads the
/// files without opening the store and takes no lock.
///
/// ```
/// use swarm_core::event::AgentAvailable;
/// use swarm_core::AgentId;
/// use swarm_store::{EventStore, FileStore};
///
/// # let dir = tempfile::tempdir().unwrap();
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = FileStore::open(dir.path())?;
/// store.append(vec![AgentAvailable { agent_id: AgentId::new(1) }.into()], None).await?;
/// store.close().await?;
///
/// let store = FileStore::open(dir.path())?;
/// assert_eq!(store.open_report().last_seq, 1);
/// # Ok::<(), swarm_store::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct FileStore {
    shared: Arc<Shared>,
    handle: Arc<Handle>,
}

/// Closes the log when the last clone of the store goes.
struct Handle {
    shared: Arc<Shared>,
    report: OpenReport,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The retention run started by open, if it is still to be joined.
    retention: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Deletion ends before the directory's lock is released.
        if let Some(retention) = self.retention.lock().take()
            && retention.join().is_err()
        {
            tracing::error!(dir = %self.shared.dir.display(), "the event store's retention thread panicked");
        }
        self.shared.pending.lock().closing = true;
        self.shared.wake.notify_one();
        // Wait for the last write (one write and sync at most): once the store
        // is dropped its directory is free for the next open.
        if let Some(writer) = self.writer.lock().take()
            && writer.join().is_err()
        {
            tracing::error!(dir = %self.shared.dir.display(), "the event store's writer thread panicked");
        }
    }
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore")
            .field("dir", &self.shared.dir)
            .field("durability", &self.shared.options.durability)
            .field("visible", &*self.shared.visible.borrow())
            .finish()
    }
}

impl FileStore {
    /// Opens (or creates) the store in `dir` with the default options.
    ///
    /// Recovery reads the segments a replay from the newest snapshot needs
    /// (the one holding the snapshot's sequence and those after it), so its
    /// time does not grow with the history before that snapshot; without a
    /// snapshot it reads the whole log. It blocks: call it before the runtime
    /// starts or inside `spawn_blocking`.
    pub fn open(dir: impl AsRef<Path>) -> Result<FileStore> {
        FileStore::open_with(dir, FileStoreOptions::default())
    }

    /// Opens (or creates) the store in `dir` with `options`.
    ///
    /// Fails with [`StoreError::Locked`] if another open store (of this
    /// process or another) holds the directory. With a
    /// [`retention`](FileStoreOptions::retention) policy, a retention run
    /// starts on a background thread once the store is open.
    pub fn open_with(dir: impl AsRef<Path>, options: FileStoreOptions) -> Result<FileStore> {
        let dir = dir.as_ref().to_path_buf();
        recovery::create_dir(&dir)?;
        // Before recovery, which writes (it cuts a torn tail).
        let lock = lock::lock_dir(&dir)?;
        let recovered = recovery::recover(&dir, &options)?;
        let tail = recovered.segments.last().cloned().ok_or_else(|| {
            StoreError::io(&dir, std::io::Error::other("no segment after recovery"))
        })?;
        let file = writer::open_tail(&tail)?;
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        let (visible, _) = watch::channel(recovered.last_seq);
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            options,
            pending: Mutex::new(Pending {
                next_seq: recovered.last_seq + 1,
                batch_start: recovered.last_seq + 1,
                events_complete: true,
                live: Some(live),
                ..Pending::default()
            }),
            wake: Condvar::new(),
            visible,
            poisoned: AtomicBool::new(false),
            segments: RwLock::new(recovered.segments),
            first_seq: AtomicU64::new(recovered.report.first_seq),
            snapshot_lock: Mutex::new(()),
            #[cfg(test)]
            hooks: writer::TestHooks::default(),
        });
        let writer_shared = Arc::clone(&shared);
        let tail_len = recovered.tail_len;
        let writer = std::thread::Builder::new()
            .name("swarm-store-writer".into())
            .spawn(move || writer::run(writer_shared, file, tail_len, lock))
            .map_err(|e| StoreError::io(&dir, e))?;
        tracing::debug!(dir = %dir.display(), last_seq = recovered.report.last_seq, "event store opened");
        let retention = if shared.options.retention.is_keep_all() {
            None
        } else {
            let retention_shared = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name("swarm-store-retention".into())
                .spawn(move || {
                    if let Err(e) = enforce_retention(&retention_shared) {
                        tracing::error!(dir = %retention_shared.dir.display(), error = %e, "log retention on open failed; it is tried again after the next snapshot");
                    }
                });
            match spawned {
                Ok(handle) => Some(handle),
                Err(e) => {
                    // The store works without it; the next snapshot retries.
                    tracing::error!(dir = %dir.display(), error = %e, "could not start the log retention thread");
                    None
                }
            }
        };
        Ok(FileStore {
            handle: Arc::new(Handle {
                shared: Arc::clone(&shared),
                report: recovered.report,
                writer: Mutex::new(Some(writer)),
                retention: Mutex::new(retention),
            }),
            shared,
        })
    }

    /// Applies the [`retention`](FileStoreOptions::retention) policy now
    /// (on a blocking thread) and returns how many segments it deleted.
    ///
    /// The store does this itself after each saved snapshot and once after
    /// open; call it to see the result, or after changing snapshots by hand.
    /// Deletion is crash-safe: the log's new start is recorded (atomically)
    /// before any segment goes, and an interrupted run is finished by the
    /// next open.
    pub async fn enforce_retention(&self) -> Result<usize> {
        let shared = Arc::clone(&self.shared);
        blocking(move || enforce_retention(&shared)).await
    }

    /// What recovery found and did when this store was opened.
    pub fn open_report(&self) -> &OpenReport {
        &self.handle.report
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &FileStoreOptions {
        &self.shared.options
    }

    /// The segment files, oldest first.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.shared
            .segments
            .read()
            .iter()
            .map(|s| s.path.clone())
            .collect()
    }

    /// Queues the append; returns its range and, unless durability is `None`,
    /// the receiver that completes when the writer is done with it.
    #[allow(clippy::type_complexity)]
    fn enqueue(
        &self,
        events: Vec<Event>,
        expected: Option<u64>,
    ) -> Result<(
        SeqRange,
        Option<oneshot::Receiver<Result<(), Arc<StoreError>>>>,
    )> {
        // Encode before taking the lock: appenders encode in parallel.
        let mut buf = Vec::with_capacity(events.len() * 160);
        for event in &events {
            format::encode_unsealed(&mut buf, event)?;
        }
        let count = events.len() as u64;
        let mut p = self.shared.pending.lock();
        if let Some(cause) = &p.poisoned {
            return Err(StoreError::Poisoned {
                source: Arc::clone(cause),
            });
        }
        if p.closing || p.stopped {
            return Err(StoreError::Closed);
        }
        check_expected(expected, p.next_seq - 1)?;
        let range = SeqRange::new(p.next_seq, p.next_seq + count);
        if count == 0 {
            return Ok((range, None));
        }
        p.next_seq = range.end;
        let timestamp = Timestamp::now();
        format::seal(&mut buf, range.start, timestamp);
        if p.buf.is_empty() {
            p.batch_start = range.start;
            p.events_complete = true;
            p.events.clear();
        }
        p.buf.extend_from_slice(&buf);
        let subscribed = p.live.as_ref().is_some_and(|tx| tx.receiver_count() > 0);
        let mut leftover = None;
        if subscribed && p.events_complete {
            p.events.extend(
                events
                    .into_iter()
                    .enumerate()
                    .map(|(i, event)| StoredEvent {
                        seq: range.start + i as u64,
                        timestamp,
                        event,
                    }),
            );
        } else {
            p.events_complete = false;
            leftover = Some(events);
        }
        let rx = if self.shared.options.durability == Durability::None {
            None
        } else {
            let (tx, rx) = oneshot::channel();
            p.acks.push(tx);
            Some(rx)
        };
        drop(p);
        self.shared.wake.notify_one();
        // Dropped outside the lock.
        drop(leftover);
        drop(buf);
        Ok((range, rx))
    }

    async fn wait_writer(rx: oneshot::Receiver<Result<(), Arc<StoreError>>>) -> Result<()> {
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(cause)) => Err(StoreError::Poisoned { source: cause }),
            Err(_) => Err(StoreError::Closed),
        }
    }

    fn request(&self, close: bool) -> Option<oneshot::Receiver<Result<(), Arc<StoreError>>>> {
        let mut p = self.shared.pending.lock();
        if p.stopped {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        if close {
            p.closing = true;
            p.closes.push(tx);
        } else {
            p.flushes.push(tx);
        }
        drop(p);
        self.shared.wake.notify_one();
        Some(rx)
    }
}

impl LogSource for Shared {
    fn visible(&self) -> u64 {
        *self.visible.borrow()
    }

    fn read_range(self: &Arc<Self>, from: u64, to: u64) -> EventStream {
        reader::read_range(Arc::clone(self), from, to)
    }
}

impl EventStore for FileStore {
    fn append(&self, events: Vec<Event>, expected: Option<u64>) -> BoxFuture<'_, Result<SeqRange>> {
        let queued = self.enqueue(events, expected);
        Box::pin(async move {
            let (range, rx) = queued?;
            if let Some(rx) = rx {
                FileStore::wait_writer(rx).await?;
            }
            Ok(range)
        })
    }

    fn read(&self, from_seq: u64) -> EventStream {
        let shared = Arc::clone(&self.shared);
        // Everything assigned so far, once the writer has written it.
        let target = self.shared.pending.lock().next_seq - 1;
        async move {
            let mut rx = shared.visible.subscribe();
            let poisoned = &shared.poisoned;
            let _ = rx
                .wait_for(|v| *v >= target || poisoned.load(Ordering::Acquire))
                .await;
            let to = target.min(shared.visible());
            shared.read_range(from_seq, to)
        }
        .flatten_stream()
        .boxed()
    }

    fn subscribe(&self, from_seq: u64) -> EventStream {
        let rx = self
            .shared
            .pending
            .lock()
            .live
            .as_ref()
            .map(|tx| tx.subscribe());
        live::subscribe(Arc::clone(&self.shared), rx, from_seq)
    }

    fn last_seq(&self) -> BoxFuture<'_, Result<u64>> {
        let last = self.shared.pending.lock().next_seq - 1;
        Box::pin(async move { Ok(last) })
    }

    fn first_seq(&self) -> BoxFuture<'_, Result<u64>> {
        let first = self.shared.first_seq.load(Ordering::Acquire);
        Box::pin(async move { Ok(first) })
    }

    fn save_snapshot(&self, snapshot: Snapshot) -> BoxFuture<'_, Result<()>> {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            blocking(move || {
                {
                    let _guard = shared.snapshot_lock.lock();
                    snapshot::save(&shared.dir, &snapshot, shared.options.snapshots_kept)?;
                }
                // The snapshot is saved whatever retention does: a failure
                // here is logged (the next snapshot tries again), not returned.
                if let Err(e) = enforce_retention(&shared) {
                    tracing::error!(dir = %shared.dir.display(), error = %e, "log retention after a snapshot failed; it is tried again after the next one");
                }
                Ok(())
            })
            .await
        })
    }

    fn latest_snapshot(&self, at_or_before: u64) -> BoxFuture<'_, Result<Option<Snapshot>>> {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            blocking(move || {
                let _guard = shared.snapshot_lock.lock();
                snapshot::latest(&shared.dir, at_or_before)
            })
            .await
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        let rx = self.request(false);
        Box::pin(async move {
            match rx {
                Some(rx) => FileStore::wait_writer(rx).await,
                None => Ok(()),
            }
        })
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        let rx = self.request(true);
        Box::pin(async move {
            match rx {
                Some(rx) => FileStore::wait_writer(rx).await,
                None => Ok(()),
            }
        })
    }

    fn is_poisoned(&self) -> bool {
        self.shared.poisoned.load(Ordering::Acquire)
    }

    fn poisoned(&self) -> Option<StoreError> {
        if !self.is_poisoned() {
            return None;
        }
        let p = self.shared.pending.lock();
        p.poisoned.as_ref().map(|cause| StoreError::Poisoned {
            source: Arc::clone(cause),
        })
    }
}

/// One retention run: deletes the oldest segments the policy allows (see
/// [`LogRetention`]), after moving the log's start marker past them.
fn enforce_retention(shared: &Shared) -> Result<usize> {
    let policy = shared.options.retention;
    if policy.is_keep_all() {
        return Ok(0);
    }
    let _guard = shared.snapshot_lock.lock();
    if shared.pending.lock().stopped {
        // Closed: the directory's lock is released (or about to be), and the
        // next owner runs retention itself.
        return Ok(0);
    }
    // A snapshot past what is written (a caller's mistake) covers no more
    // than the written log.
    let visible = *shared.visible.borrow();
    let oldest = snapshot::list(&shared.dir)?
        .first()
        .map(|(seq, _)| (*seq).min(visible));
    let segments = shared.segments.read().clone();
    let count = retention::plan(&policy, &segments, oldest, SystemTime::now());
    let Some(first_kept) = segments.get(count).filter(|_| count > 0) else {
        return Ok(0);
    };
    let new_start = first_kept.first_seq;
    retention::write_start(&shared.dir, new_start)?;
    // Readers see the new start before the files go: one that listed a
    // segment before this and finds it gone reports `Compacted`.
    shared.first_seq.store(new_start, Ordering::Release);
    shared.segments.write().retain(|s| s.first_seq >= new_start);
    let deleted = retention::remove_segments(&shared.dir, &segments[..count])?;
    tracing::info!(dir = %shared.dir.display(), deleted, first_seq = new_start, "log retention deleted old segments");
    Ok(deleted)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(StoreError::io(
            PathBuf::new(),
            std::io::Error::other(format!("store task failed: {e}")),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::error::Error as _;

    use swarm_core::AgentId;
    use swarm_core::event::AgentRemoved;

    use super::*;

    fn event(n: u64) -> Event {
        AgentRemoved {
            agent_id: AgentId::new(n),
            reason: "r".repeat(100),
        }
        .into()
    }

    fn events(from: u64, count: u64) -> Vec<Event> {
        (from..from + count).map(event).collect()
    }

    /// Waits until the writer has written everything appended so far.
    async fn written(store: &FileStore) {
        let _ = store.read(u64::MAX).collect::<Vec<_>>().await;
    }

    #[tokio::test]
    async fn a_poisoned_store_refuses_every_append_with_its_cause_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        store.append(events(1, 3), None).await.unwrap();

        // ENOSPC after a short write: two whole records and a piece reach the file.
        *store.shared.hooks.fail_write_after.lock() = Some(300);
        let err = store.append(events(4, 5), None).await.unwrap_err();
        // The cause is in the error's source chain, and typed in the variant.
        let cause = err
            .source()
            .unwrap_or_else(|| panic!("a poisoned append's error has no source: {err:?}"));
        assert!(cause.to_string().contains("no space left"), "{cause}");
        let StoreError::Poisoned { source } = &err else {
            panic!("not poisoned: {err:?}")
        };
        let StoreError::Io { source: io, .. } = &**source else {
            panic!("the cause is not the i/o error: {err:?}")
        };
        assert_eq!(io.kind(), std::io::ErrorKind::StorageFull);
        assert!(matches!(err, StoreError::Poisoned { .. }), "{err:?}");
        assert!(store.is_poisoned());
        assert!(matches!(
            store.poisoned(),
            Some(StoreError::Poisoned { .. })
        ));

        // Every later append is refused the same way, whatever the policy.
        let again = store.append(events(9, 1), None).await.unwrap_err();
        assert!(matches!(again, StoreError::Poisoned { .. }), "{again:?}");
        assert!(again.to_string().contains("no space left"), "{again}");
        drop(store);

        // The refused batch is not in the log after reopening.
        let store = FileStore::open(dir.path()).unwrap();
        assert_eq!(store.open_report().last_seq, 3);
        assert!(!store.is_poisoned());
    }

    #[tokio::test]
    async fn a_poisoned_store_refuses_appends_that_would_not_wait_too() {
        for durability in [Durability::Buffered, Durability::None] {
            let dir = tempfile::tempdir().unwrap();
            let options = FileStoreOptions::default().durability(durability);
            let store = FileStore::open_with(dir.path(), options).unwrap();
            assert!(!store.is_poisoned());
            assert!(store.poisoned().is_none());
            *store.shared.hooks.fail_write_after.lock() = Some(0);
            // Under None the failing append itself returns at once; the next
            // flush reports the failure and every later append is refused.
            let first = store.append(events(1, 2), None).await;
            let flushed = store.flush().await;
            assert!(
                first.is_err() || flushed.is_err(),
                "{durability:?}: nothing reported the failed write"
            );
            assert!(store.is_poisoned(), "{durability:?}");
            let again = store.append(events(3, 1), None).await.unwrap_err();
            assert!(again.is_poisoned(), "{durability:?}: {again:?}");
        }
    }

    #[tokio::test]
    async fn durability_none_syncs_rolled_segments_on_flush_and_on_close() {
        for close in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let options = FileStoreOptions::default()
                .durability(Durability::None)
                .segment_size(256);
            let store = FileStore::open_with(dir.path(), options).unwrap();
            for i in 0..4 {
                store.append(events(i * 2 + 1, 2), None).await.unwrap();
                written(&store).await;
            }
            let segments = store.segment_paths();
            assert!(segments.len() >= 3, "no segment rolled: {segments:?}");
            let shared = Arc::clone(&store.shared);
            if close {
                store.close().await.unwrap();
            } else {
                store.flush().await.unwrap();
            }
            let synced = shared.hooks.synced.lock().clone();
            for segment in &segments {
                assert!(
                    synced.contains(segment),
                    "{} was never synced by {} (synced: {synced:?})",
                    segment.display(),
                    if close { "close" } else { "flush" }
                );
            }
        }
    }
}
