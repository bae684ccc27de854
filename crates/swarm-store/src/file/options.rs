//! Options of [`FileStore`](super::FileStore) and the report of its recovery.

use std::path::PathBuf;

use super::retention::LogRetention;

/// When an append counts as done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// `append` returns after its records are written and `fdatasync`ed: they
    /// survive a power loss. Concurrent appends share one write and one sync
    /// (group commit). The default.
    #[default]
    Fsync,
    /// `append` returns after its records are written to the operating system:
    /// they survive a crash of the process, not of the machine. Synced when a
    /// segment is full, on [`flush`](crate::EventStore::flush) and on close.
    Buffered,
    /// `append` returns as soon as its records are queued for the writer: a
    /// crash of the process may lose the latest appends. Synced only on
    /// `flush` and on close, which sync every segment written since the last
    /// flush (those rolled in between too).
    None,
}

/// The default segment size: 64 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;
/// The default number of snapshots kept: 3.
pub const DEFAULT_SNAPSHOTS_KEPT: usize = 3;

/// How a [`FileStore`](super::FileStore) writes and recovers.
///
/// ```
/// use swarm_store::{Durability, FileStoreOptions, LogRetention};
///
/// let options = FileStoreOptions::default()
///     .durability(Durability::Buffered)
///     .segment_size(8 << 20)
///     .snapshots_kept(5)
///     .retention(LogRetention::covered_by_snapshot())
///     .repair(false);
/// assert_eq!(options.get_durability(), Durability::Buffered);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStoreOptions {
    pub(crate) durability: Durability,
    pub(crate) segment_size: u64,
    pub(crate) repair: bool,
    pub(crate) snapshots_kept: usize,
    pub(crate) retention: LogRetention,
    pub(crate) verify_all_on_open: bool,
}

impl Default for FileStoreOptions {
    fn default() -> Self {
        FileStoreOptions {
            durability: Durability::Fsync,
            segment_size: DEFAULT_SEGMENT_SIZE,
            repair: false,
            snapshots_kept: DEFAULT_SNAPSHOTS_KEPT,
            retention: LogRetention::keep_all(),
            verify_all_on_open: false,
        }
    }
}

impl FileStoreOptions {
    /// Sets the durability policy (default [`Durability::Fsync`]).
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets the size at which a new segment is started (default 64 MiB; a
    /// segment may exceed it by one batch).
    #[must_use]
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes.max(1);
        self
    }

    /// Cuts the log at a damaged record found before its tail instead of
    /// refusing to open (default off). Every event after the damage is dropped,
    /// and the bytes dropped are in the [`OpenReport`]. Repair checks every
    /// segment on open, as [`verify_all_on_open`](Self::verify_all_on_open) does.
    #[must_use]
    pub fn repair(mut self, repair: bool) -> Self {
        self.repair = repair;
        self
    }

    /// Sets how many snapshots are kept, newest first (default 3, at least 1).
    /// The oldest kept snapshot bounds what [`retention`](Self::retention) may
    /// delete.
    #[must_use]
    pub fn snapshots_kept(mut self, count: usize) -> Self {
        self.snapshots_kept = count.max(1);
        self
    }

    /// Sets what is kept of the log (default [`LogRetention::keep_all`]):
    /// whole segments covered by the oldest kept snapshot may be deleted.
    #[must_use]
    pub fn retention(mut self, retention: LogRetention) -> Self {
        self.retention = retention;
        self
    }

    /// Checks every segment on open (default off: only the segments from the
    /// one holding the newest snapshot's sequence on are checked; older ones
    /// are checked when they are read, and damage there is a
    /// [`StoreError::Corrupt`](crate::StoreError::Corrupt) of that read).
    /// Opening then takes time in proportion to the whole log.
    #[must_use]
    pub fn verify_all_on_open(mut self, all: bool) -> Self {
        self.verify_all_on_open = all;
        self
    }

    /// The durability policy.
    pub fn get_durability(&self) -> Durability {
        self.durability
    }

    /// The segment size in bytes.
    pub fn get_segment_size(&self) -> u64 {
        self.segment_size
    }

    /// Whether damage before the tail is cut rather than refused.
    pub fn get_repair(&self) -> bool {
        self.repair
    }

    /// How many snapshots are kept.
    pub fn get_snapshots_kept(&self) -> usize {
        self.snapshots_kept
    }

    /// What is kept of the log.
    pub fn get_retention(&self) -> LogRetention {
        self.retention
    }

    /// Whether every segment is checked on open.
    pub fn get_verify_all_on_open(&self) -> bool {
        self.verify_all_on_open
    }
}

/// What opening a [`FileStore`](super::FileStore) found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The last sequence in the log after recovery (0 when empty).
    pub last_seq: u64,
    /// The number of segment files.
    pub segments: usize,
    /// The segments whose records open checked: those from the one holding
    /// the newest snapshot's sequence on (all of them with `repair` or
    /// `verify_all_on_open`, or without a snapshot). Older ones are checked
    /// when read.
    pub segments_verified: usize,
    /// The first sequence the log keeps (1 unless retention deleted segments).
    pub first_seq: u64,
    /// Segments before the first kept sequence that an interrupted retention
    /// run left behind, deleted by this open.
    pub leftovers_deleted: usize,
    /// Bytes cut from the log: a torn tail, or damage cut by `repair`.
    pub bytes_cut: u64,
    /// Where the log was cut, if it was.
    pub cut: Option<CutPoint>,
    /// Snapshots deleted because they were past the end of the recovered log.
    pub snapshots_dropped: usize,
    /// Segments that `repair` renamed after their header, which disagreed with
    /// their file name: `(old path, new path)`.
    pub segments_renamed: Vec<(PathBuf, PathBuf)>,
}

/// Where recovery cut the log, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CutPoint {
    /// The segment file.
    pub file: PathBuf,
    /// The byte offset of the cut.
    pub offset: u64,
    /// What was wrong there.
    pub reason: String,
    /// Whether the cut was made by the `repair` option (damage before the tail).
    pub repaired: bool,
}
