//! Log retention: which whole segments may go, and deleting them so that a
//! crash at any point leaves a gap-free log.
//!
//! # The start marker
//!
//! `log-start` holds the first sequence the log keeps: magic `SWRMSTRT` (8),
//! version (4), sequence (8), CRC32C of the 20 bytes before it (4). It is
//! written atomically (temp file, fsync, rename, fsync the directory) *before*
//! any segment is deleted, and segments are deleted oldest first. So after a
//! crash anywhere in a deletion either the old marker stands and every
//! segment is still there, or the new one stands and the segments before it
//! are leftovers that [`open`](super::FileStore::open) deletes. A directory
//! without the marker starts at sequence 1 (nothing was ever deleted).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::format::{u32_at, u64_at};
use super::recovery::{SegmentMeta, private_file, sync_dir};
use crate::error::{Result, StoreError};

/// What a [`FileStore`](super::FileStore) (or a
/// [`NatsStore`](crate::NatsStore)) keeps of its log.
///
/// The default, [`LogRetention::keep_all`], deletes nothing: the log is an
/// audit trail of every event. The other policies delete **whole segments**,
/// oldest first, and only segments whose every event is at or before the
/// *oldest kept snapshot* (see
/// [`FileStoreOptions::snapshots_kept`](super::FileStoreOptions::snapshots_kept)),
/// so a replay from any kept snapshot still finds every event it needs. The
/// active segment is never deleted. Without a snapshot nothing is deleted.
///
/// Limits combine: a segment is deleted when it is covered by the oldest kept
/// snapshot and *any* limit set asks for it.
///
/// - [`covered_by_snapshot`](LogRetention::covered_by_snapshot): every covered
///   segment goes (the log on disk is then about one segment plus what came
///   after the oldest kept snapshot).
/// - [`max_age`](LogRetention::max_age): covered segments last written longer
///   ago than this go (a segment's age is its file's modification time, that
///   is, when its newest event was written).
/// - [`max_bytes`](LogRetention::max_bytes): covered segments go, oldest
///   first, while the segments together are larger than this. A target, not a
///   hard cap: what is not covered by a snapshot stays however large it is.
///
/// Retention runs when a snapshot is saved (inside
/// [`save_snapshot`](crate::EventStore::save_snapshot), off the append path)
/// and once after open (on a background thread), or when asked
/// ([`FileStore::enforce_retention`](super::FileStore::enforce_retention)).
/// A read from before the retained start fails with
/// [`StoreError::Compacted`].
///
/// ```
/// use std::time::Duration;
/// use swarm_store::{FileStoreOptions, LogRetention};
///
/// // Keep a week, but never more than 10 GiB of segments.
/// let retention = LogRetention::keep_all()
///     .max_age(Duration::from_secs(7 * 24 * 3600))
///     .max_bytes(10 << 30);
/// let options = FileStoreOptions::default().retention(retention);
/// assert_eq!(options.get_retention().get_max_bytes(), Some(10 << 30));
/// assert!(!retention.is_keep_all());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LogRetention {
    max_age: Option<Duration>,
    max_bytes: Option<u64>,
    covered_by_snapshot: bool,
}

impl LogRetention {
    /// Keeps every segment (the default).
    pub const fn keep_all() -> Self {
        LogRetention {
            max_age: None,
            max_bytes: None,
            covered_by_snapshot: false,
        }
    }

    /// Deletes every segment the oldest kept snapshot covers.
    pub const fn covered_by_snapshot() -> Self {
        LogRetention {
            max_age: None,
            max_bytes: None,
            covered_by_snapshot: true,
        }
    }

    /// Also deletes covered segments last written more than `age` ago.
    #[must_use]
    pub const fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Also deletes covered segments, oldest first, while all segments
    /// together hold more than `bytes`.
    #[must_use]
    pub const fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// Whether this policy deletes nothing.
    pub const fn is_keep_all(&self) -> bool {
        self.max_age.is_none() && self.max_bytes.is_none() && !self.covered_by_snapshot
    }

    /// The age limit, if set.
    pub const fn get_max_age(&self) -> Option<Duration> {
        self.max_age
    }

    /// The size limit in bytes, if set.
    pub const fn get_max_bytes(&self) -> Option<u64> {
        self.max_bytes
    }

    /// Whether every covered segment is deleted.
    pub const fn get_covered_by_snapshot(&self) -> bool {
        self.covered_by_snapshot
    }
}

/// The start marker's file name.
pub(crate) const START_FILE: &str = "log-start";
const START_MAGIC: [u8; 8] = *b"SWRMSTRT";
const START_VERSION: u32 = 1;
const START_LEN: usize = 24;

fn start_path(dir: &Path) -> PathBuf {
    dir.join(START_FILE)
}

/// The first sequence the log in `dir` keeps: the start marker's, or 1
/// without one. A damaged marker is [`StoreError::Corrupt`].
pub(crate) fn read_start(dir: &Path) -> Result<u64> {
    let path = start_path(dir);
    let data = match fs::read(&path) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(1),
        Err(e) => return Err(StoreError::io(&path, e)),
    };
    let bad = |reason: &str| StoreError::Corrupt {
        file: path.clone(),
        offset: 0,
        reason: format!("{reason} (it names the log's first sequence)"),
    };
    if data.len() != START_LEN || data[0..8] != START_MAGIC {
        return Err(bad("the start marker is not a start marker"));
    }
    if crc32c::crc32c(&data[0..20]) != u32_at(&data, 20) {
        return Err(bad("the start marker's checksum does not match"));
    }
    let version = u32_at(&data, 8);
    if version != START_VERSION {
        return Err(StoreError::UnsupportedVersion {
            file: path,
            found: version,
            supported: START_VERSION,
        });
    }
    Ok(u64_at(&data, 12).max(1))
}

/// Writes the start marker atomically (temp file, fsync, rename, fsync dir).
pub(crate) fn write_start(dir: &Path, first_seq: u64) -> Result<()> {
    let path = start_path(dir);
    let tmp = dir.join(format!("{START_FILE}.tmp"));
    let mut data = [0u8; START_LEN];
    data[0..8].copy_from_slice(&START_MAGIC);
    data[8..12].copy_from_slice(&START_VERSION.to_le_bytes());
    data[12..20].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32c::crc32c(&data[0..20]);
    data[20..24].copy_from_slice(&crc.to_le_bytes());
    let write = || -> std::io::Result<()> {
        let mut f = private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()
    };
    write().map_err(|e| StoreError::io(&tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| StoreError::io(&path, e))?;
    sync_dir(dir)
}

/// Deletes a start marker's temp file left by a crash (never valid).
pub(crate) fn clean_start_tmp(dir: &Path) {
    let _ = fs::remove_file(dir.join(format!("{START_FILE}.tmp")));
}

/// How many of the oldest `segments` `policy` deletes, given the sequence of
/// the oldest kept snapshot. The last (active) segment is never counted.
pub(crate) fn plan(
    policy: &LogRetention,
    segments: &[SegmentMeta],
    oldest_snapshot: Option<u64>,
    now: SystemTime,
) -> usize {
    let Some(bound) = oldest_snapshot else {
        return 0;
    };
    if policy.is_keep_all() || segments.len() < 2 {
        return 0;
    }
    // Segment i holds first_seq(i)..first_seq(i + 1): covered when every one
    // of those is at or before the snapshot.
    let covered = segments
        .windows(2)
        .take_while(|pair| pair[1].first_seq <= bound.saturating_add(1))
        .count();
    let mut delete = 0;
    if policy.covered_by_snapshot {
        delete = covered;
    }
    if let Some(age) = policy.max_age {
        let old = segments[..covered]
            .iter()
            .take_while(|s| {
                fs::metadata(&s.path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|written| now.duration_since(written).ok())
                    .is_some_and(|elapsed| elapsed > age)
            })
            .count();
        delete = delete.max(old);
    }
    if let Some(max) = policy.max_bytes {
        let sizes: Vec<u64> = segments
            .iter()
            .map(|s| fs::metadata(&s.path).map_or(0, |m| m.len()))
            .collect();
        let mut total: u64 = sizes.iter().sum();
        let mut over = 0;
        while over < covered && total > max {
            total -= sizes[over];
            over += 1;
        }
        delete = delete.max(over);
    }
    delete
}

/// Deletes `doomed` oldest first, then syncs the directory.
pub(crate) fn remove_segments(dir: &Path, doomed: &[SegmentMeta]) -> Result<usize> {
    let mut deleted = 0;
    for seg in doomed {
        match fs::remove_file(&seg.path) {
            Ok(()) => deleted += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&seg.path, e)),
        }
    }
    if deleted > 0 {
        sync_dir(dir)?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn segments(dir: &Path, starts: &[u64]) -> Vec<SegmentMeta> {
        starts
            .iter()
            .map(|&first_seq| {
                let path = dir.join(format!("{first_seq:020}.log"));
                fs::write(&path, vec![0u8; 100]).unwrap();
                SegmentMeta { first_seq, path }
            })
            .collect()
    }

    #[test]
    fn only_segments_the_oldest_snapshot_covers_are_planned_and_never_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let segs = segments(dir.path(), &[1, 11, 21, 31]);
        let now = SystemTime::now();
        let covered = LogRetention::covered_by_snapshot();
        assert_eq!(plan(&covered, &segs, None, now), 0, "no snapshot");
        assert_eq!(
            plan(&covered, &segs, Some(9), now),
            0,
            "1..=10 not covered by 9"
        );
        assert_eq!(plan(&covered, &segs, Some(10), now), 1);
        assert_eq!(plan(&covered, &segs, Some(25), now), 2);
        assert_eq!(
            plan(&covered, &segs, Some(1000), now),
            3,
            "never the active one"
        );
        assert_eq!(plan(&LogRetention::keep_all(), &segs, Some(1000), now), 0);
    }

    #[test]
    fn max_bytes_deletes_oldest_covered_until_under_and_max_age_by_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let segs = segments(dir.path(), &[1, 11, 21, 31]);
        let now = SystemTime::now();
        let bytes = LogRetention::keep_all().max_bytes(250);
        assert_eq!(plan(&bytes, &segs, Some(1000), now), 2);
        assert_eq!(
            plan(&bytes, &segs, Some(15), now),
            1,
            "capped by the snapshot"
        );
        let age = LogRetention::keep_all().max_age(Duration::from_secs(60));
        assert_eq!(plan(&age, &segs, Some(1000), now), 0, "all fresh");
        let later = now + Duration::from_secs(3600);
        assert_eq!(plan(&age, &segs, Some(1000), later), 3);
        let old = now - Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(&segs[0].path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(plan(&age, &segs, Some(1000), now), 1);
    }

    #[test]
    fn the_start_marker_round_trips_and_damage_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_start(dir.path()).unwrap(), 1);
        write_start(dir.path(), 4242).unwrap();
        assert_eq!(read_start(dir.path()).unwrap(), 4242);
        let path = dir.path().join(START_FILE);
        let mut data = fs::read(&path).unwrap();
        data[13] ^= 1;
        fs::write(&path, &data).unwrap();
        assert!(read_start(dir.path()).unwrap_err().is_corrupt());
    }
}
