//! The writer thread: takes every append queued since its last write, writes
//! them with one `write` and (under `Fsync`) one `fdatasync` — group commit —
//! then makes them visible, publishes them to subscribers and wakes the appenders.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::mem;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::sync::{Condvar, Mutex, RwLock};
use tokio::sync::{broadcast, oneshot, watch};

use super::options::{Durability, FileStoreOptions};
use super::recovery::{self, SegmentMeta};
use crate::error::{Result, StoreError};
use crate::live::LiveBatch;
use crate::store::{SeqRange, StoredEvent};

/// Completes an append (or flush/close) with `Ok` or the failure that stopped the writer.
pub(crate) type Ack = oneshot::Sender<Result<(), Arc<StoreError>>>;

/// Appends waiting for the writer, and the store's lifecycle flags.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// The next sequence to assign.
    pub(crate) next_seq: u64,
    /// Sealed records of the batch being formed.
    pub(crate) buf: Vec<u8>,
    /// The first sequence in `buf`.
    pub(crate) batch_start: u64,
    /// The batch's events, for live subscribers; only used while `events_complete`.
    pub(crate) events: Vec<StoredEvent>,
    /// Whether `events` holds every event of the batch.
    pub(crate) events_complete: bool,
    pub(crate) acks: Vec<Ack>,
    pub(crate) flushes: Vec<Ack>,
    pub(crate) closes: Vec<Ack>,
    pub(crate) live: Option<broadcast::Sender<Arc<LiveBatch>>>,
    pub(crate) closing: bool,
    pub(crate) stopped: bool,
    /// The failure that poisoned the store, shared by every append it refuses.
    pub(crate) poisoned: Option<Arc<StoreError>>,
}

/// State shared by the store handles, the writer thread and readers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) options: FileStoreOptions,
    pub(crate) pending: Mutex<Pending>,
    pub(crate) wake: Condvar,
    /// The last sequence readers may see.
    pub(crate) visible: watch::Sender<u64>,
    pub(crate) poisoned: AtomicBool,
    pub(crate) segments: RwLock<Vec<SegmentMeta>>,
    /// The first sequence the log keeps (moved by retention).
    pub(crate) first_seq: AtomicU64,
    /// Serializes snapshot writes, snapshot pruning and log retention.
    pub(crate) snapshot_lock: Mutex<()>,
    /// Faults to inject into, and syncs seen from, the writer.
    #[cfg(test)]
    pub(crate) hooks: TestHooks,
}

/// A seam for unit tests: fail a write part-way, see which files were synced.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct TestHooks {
    /// Every segment the writer `fdatasync`ed, in order.
    pub(crate) synced: Mutex<Vec<PathBuf>>,
    /// Makes the next batch write stop after this many bytes with `ENOSPC`.
    pub(crate) fail_write_after: Mutex<Option<usize>>,
}

/// Writes a batch (where tests may make it fail after a short write).
#[cfg_attr(not(test), allow(unused_variables))]
fn write_batch(shared: &Shared, file: &mut File, batch: &[u8]) -> std::io::Result<()> {
    #[cfg(test)]
    if let Some(after) = shared.hooks.fail_write_after.lock().take() {
        file.write_all(&batch[..after.min(batch.len())])?;
        return Err(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "no space left on device (injected by a test)",
        ));
    }
    file.write_all(batch)
}

/// `fdatasync`s a segment (and lets tests see that it did).
#[cfg_attr(not(test), allow(unused_variables))]
fn sync_segment(shared: &Shared, file: &File, path: &std::path::Path) -> std::io::Result<()> {
    file.sync_data()?;
    #[cfg(test)]
    shared.hooks.synced.lock().push(path.to_path_buf());
    Ok(())
}

fn ack_all(acks: Vec<Ack>, result: &Result<(), Arc<StoreError>>) {
    for ack in acks {
        // An appender that stopped waiting is fine: its append is done regardless.
        let _ = ack.send(result.clone());
    }
}

pub(crate) fn open_tail(segment: &SegmentMeta) -> Result<File> {
    OpenOptions::new()
        .append(true)
        .open(&segment.path)
        .map_err(|e| StoreError::io(&segment.path, e))
}

/// Cuts the segment back to `len`, where a failed batch started, and syncs
/// it: records that reached the file before a write failed (`ENOSPC` after a
/// short write) belong to appends that are told they failed, and must not
/// come back when the log is reopened.
fn cut_back(file: &File, path: &std::path::Path, len: u64) {
    match file.set_len(len).and_then(|()| file.sync_data()) {
        Ok(()) => {
            tracing::warn!(file = %path.display(), offset = len, "cut the failed batch off the event log");
        }
        Err(e) => {
            // Recovery on the next open may then find some of its records.
            tracing::error!(file = %path.display(), offset = len, error = %e, "could not cut the failed batch off the event log");
        }
    }
}

/// Runs the writer until the store closes; `lock` (the directory's lock) is
/// released before the close is acknowledged.
pub(crate) fn run(shared: Arc<Shared>, mut file: File, mut segment_len: u64, lock: File) {
    let durability = shared.options.durability;
    let segment_size = shared.options.segment_size;
    let mut batch: Vec<u8> = Vec::new();
    // Under `Durability::None`, segments rolled since the last flush: they are
    // synced by the next flush or close, not at the roll.
    let mut rolled: Vec<(PathBuf, File)> = Vec::new();
    // A tail segment in another encoding (another build wrote it) is not
    // appended to: the first batch starts a new segment. When its header
    // cannot be read, rolling is the safe choice.
    let mut foreign_tail = shared
        .segments
        .read()
        .last()
        .is_some_and(|s| !super::format::in_current_encoding(&s.path).unwrap_or(false));
    loop {
        let mut p = shared.pending.lock();
        while p.buf.is_empty() && p.flushes.is_empty() && !p.closing {
            p = crate::sync::wait(&shared.wake, p);
        }
        mem::swap(&mut p.buf, &mut batch);
        let range = SeqRange::new(p.batch_start, p.next_seq);
        let events = mem::take(&mut p.events);
        let events_complete = p.events_complete;
        let acks = mem::take(&mut p.acks);
        let flushes = mem::take(&mut p.flushes);
        let closing = p.closing;
        let live = p.live.clone();
        let poisoned = p.poisoned.clone();
        drop(p);

        let mut path = shared
            .segments
            .read()
            .last()
            .map(|s| s.path.clone())
            .unwrap_or_default();
        let result: Result<(), Arc<StoreError>> = match poisoned {
            Some(cause) => Err(cause),
            None => (|| -> Result<()> {
                if !batch.is_empty() && (segment_len >= segment_size || foreign_tail) {
                    // Roll: the old segment is complete; make it durable first.
                    if durability != Durability::None {
                        sync_segment(&shared, &file, &path)
                            .map_err(|e| StoreError::io(&path, e))?;
                    }
                    let (meta, new_file) = recovery::create_segment(&shared.dir, range.start)?;
                    recovery::sync_dir(&shared.dir)?;
                    let old_path = mem::replace(&mut path, meta.path.clone());
                    let mut segments = shared.segments.write();
                    if segments
                        .last()
                        .is_some_and(|s| s.first_seq == meta.first_seq)
                    {
                        // A foreign tail without records, rewritten in place.
                        segments.pop();
                    }
                    segments.push(meta);
                    drop(segments);
                    foreign_tail = false;
                    let old_file = mem::replace(&mut file, new_file);
                    if durability == Durability::None {
                        rolled.push((old_path, old_file));
                    }
                    segment_len = super::format::SEGMENT_HEADER_LEN as u64;
                }
                // Where this batch starts: a failed write or sync cuts back to it.
                let batch_at = segment_len;
                let written = (|| -> Result<()> {
                    if !batch.is_empty() {
                        write_batch(&shared, &mut file, &batch)
                            .map_err(|e| StoreError::io(&path, e))?;
                    }
                    if !flushes.is_empty() || closing {
                        // A flush or close makes every append durable, those
                        // in segments rolled since the last one included.
                        for (rolled_path, rolled_file) in &rolled {
                            sync_segment(&shared, rolled_file, rolled_path)
                                .map_err(|e| StoreError::io(rolled_path, e))?;
                        }
                    }
                    if durability == Durability::Fsync && !batch.is_empty()
                        || !flushes.is_empty()
                        || closing
                    {
                        sync_segment(&shared, &file, &path)
                            .map_err(|e| StoreError::io(&path, e))?;
                    }
                    Ok(())
                })();
                if let Err(e) = written {
                    if !batch.is_empty() {
                        cut_back(&file, &path, batch_at);
                    }
                    return Err(e);
                }
                if !flushes.is_empty() || closing {
                    rolled.clear();
                }
                segment_len += batch.len() as u64;
                Ok(())
            })()
            .map_err(Arc::new),
        };

        match &result {
            Ok(()) => {
                if !range.is_empty() && !batch.is_empty() {
                    // Visible before published: a subscriber that missed the
                    // publication finds the events by reading.
                    shared.visible.send_replace(range.end - 1);
                    if let Some(tx) = live.filter(|tx| tx.receiver_count() > 0) {
                        let events = if events_complete { events } else { Vec::new() };
                        let _ = tx.send(Arc::new(LiveBatch { range, events }));
                    }
                }
            }
            Err(cause) => {
                tracing::error!(error = %cause, "event log write failed; the store refuses further appends");
                let mut p = shared.pending.lock();
                if p.poisoned.is_none() {
                    p.poisoned = Some(Arc::clone(cause));
                }
                // Sequences handed to appends that failed are given back.
                p.next_seq = *shared.visible.borrow() + 1;
                shared.poisoned.store(true, Ordering::Release);
                drop(p);
                // Wake readers waiting for sequences that will never be written.
                shared.visible.send_modify(|_| {});
            }
        }
        ack_all(acks, &result);
        ack_all(flushes, &result);
        batch.clear();

        if closing {
            let mut p = shared.pending.lock();
            p.stopped = true;
            p.live = None;
            let closes = mem::take(&mut p.closes);
            drop(p);
            // Free the directory before anyone hears that the store is closed.
            drop(file);
            drop(rolled);
            // A retention run still deleting segments ends before the lock
            // goes (runs that start later see `stopped` and do nothing):
            // the next owner of the directory must not race it.
            let quiet = shared.snapshot_lock.lock();
            drop(lock);
            drop(quiet);
            ack_all(closes, &result);
            return;
        }
    }
}
