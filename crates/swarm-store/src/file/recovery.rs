//! Recovery on open: finish an interrupted retention run, check the segments
//! a replay from the newest snapshot reads (every segment with `repair` or
//! `verify_all_on_open`), cut a torn tail, refuse (or repair) damage before it.
//!
//! Segments before the one holding the newest snapshot's sequence are not
//! read: they are checked when a read reaches them (`reader.rs`), by the same
//! rules, and damage there is a [`StoreError::Corrupt`] of that read.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::format::{self, Header, SEGMENT_HEADER_LEN};
use super::options::{CutPoint, FileStoreOptions, OpenReport};
use super::retention;
use super::snapshot;
use crate::error::{Result, StoreError};

/// A segment file of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SegmentMeta {
    pub(crate) first_seq: u64,
    pub(crate) path: PathBuf,
}

pub(crate) fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.log"))
}

/// The log after recovery.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) segments: Vec<SegmentMeta>,
    pub(crate) last_seq: u64,
    /// The length of the last segment, where the writer continues.
    pub(crate) tail_len: u64,
    pub(crate) report: OpenReport,
}

/// The segment files of `dir` (named `<first sequence>.log`), oldest first.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<SegmentMeta>> {
    let mut segments = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".log")
            && stem.len() == 20
            && let Ok(first_seq) = stem.parse::<u64>()
        {
            segments.push(SegmentMeta {
                first_seq,
                path: entry.path(),
            });
        }
    }
    segments.sort_by_key(|s| s.first_seq);
    Ok(segments)
}

/// Creates the store's directory (and its missing parents) if it does not
/// exist: 0700 on unix, since the log holds every task's payload. An existing
/// directory keeps its mode.
pub(crate) fn create_dir(dir: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| StoreError::io(dir, e))
}

/// Options that create a store file readable and writable by its owner only
/// (0600 on unix; the process umask may only narrow it).
pub(crate) fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

pub(crate) fn create_segment(dir: &Path, first_seq: u64) -> Result<(SegmentMeta, File)> {
    let path = segment_path(dir, first_seq);
    let mut file = private_file()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    file.write_all(&format::segment_header(first_seq))
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::io(&path, e))?;
    Ok((SegmentMeta { first_seq, path }, file))
}

fn cut_file(path: &Path, at: u64) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| StoreError::io(path, e))?;
    file.set_len(at)
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::io(path, e))
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The first sequence the log keeps, from its start marker. A damaged marker
/// is refused, or with `repair` rewritten from the first segment's name.
fn log_start(dir: &Path, segments: &[SegmentMeta], options: &FileStoreOptions) -> Result<u64> {
    retention::clean_start_tmp(dir);
    match retention::read_start(dir) {
        Ok(start) => Ok(start),
        Err(e) if e.is_corrupt() && options.repair => {
            let start = segments.first().map_or(1, |s| s.first_seq);
            tracing::warn!(error = %e, first_seq = start, "rewriting the damaged start marker from the first segment");
            retention::write_start(dir, start)?;
            Ok(start)
        }
        Err(e) => Err(e),
    }
}

/// Opens the directory's log: checks the segments from the one holding the
/// newest snapshot's sequence on (all with `repair` or `verify_all_on_open`),
/// cuts a torn tail of the last one, and refuses damage before it unless
/// `options.repair` is set.
pub(crate) fn recover(dir: &Path, options: &FileStoreOptions) -> Result<Recovered> {
    let mut segments = list_segments(dir)?;
    let mut report = OpenReport::default();
    let start = log_start(dir, &segments, options)?;
    // Segments before the start: a retention run stopped (by a crash) after
    // it moved the start marker and before it deleted them all.
    let leftovers = segments.partition_point(|s| s.first_seq < start);
    if leftovers > 0 {
        report.leftovers_deleted = retention::remove_segments(dir, &segments[..leftovers])?;
        segments.drain(..leftovers);
        tracing::info!(dir = %dir.display(), deleted = report.leftovers_deleted, first_seq = start, "finished an interrupted log retention run");
    }
    if start > 1 {
        match segments.first() {
            Some(first) if first.first_seq == start => {}
            other => {
                return Err(StoreError::Corrupt {
                    file: other.map_or_else(|| dir.join(retention::START_FILE), |s| s.path.clone()),
                    offset: 0,
                    reason: format!(
                        "the log starts at sequence {start} (its `{}` file says so) but {}: a segment file is missing; restore it from a backup",
                        retention::START_FILE,
                        other.map_or_else(
                            || "it has no segment".to_owned(),
                            |s| format!("its first segment starts at {}", s.first_seq)
                        )
                    ),
                });
            }
        }
    }
    // Where checking starts: the segment holding the newest snapshot's
    // sequence, the first one a replay reads. Snapshots are taken by name
    // here; a damaged newest one makes a replay fall back to an older
    // snapshot, whose segments are then checked as they are read.
    let newest_snapshot = if options.repair || options.verify_all_on_open {
        None
    } else {
        snapshot::list(dir)?.last().map(|(seq, _)| *seq)
    };
    let first_checked = newest_snapshot.map_or(0, |seq| {
        segments
            .partition_point(|s| s.first_seq <= seq)
            .saturating_sub(1)
    });
    let mut expected = if first_checked == 0 {
        start
    } else {
        segments[first_checked].first_seq
    };
    let mut tail_len = 0u64;
    let mut keep = segments.len();

    for i in first_checked..segments.len() {
        let is_last = i + 1 == segments.len();
        let seg = segments[i].clone();
        let data = fs::read(&seg.path).map_err(|e| StoreError::io(&seg.path, e))?;

        // The header, which must agree with the sequence reached and with the
        // file's name (readers find a sequence's segment by name).
        let header_problem = match format::parse_header(&data) {
            Header::Ok { first_seq, .. } if first_seq == expected && seg.first_seq == expected => {
                None
            }
            Header::Ok { first_seq, .. } if first_seq == expected => {
                let reason = format!(
                    "the segment's name says it starts at sequence {} but its header says {first_seq}",
                    seg.first_seq
                );
                let target = segment_path(dir, first_seq);
                if !options.repair {
                    return Err(StoreError::Corrupt {
                        file: seg.path.clone(),
                        offset: 0,
                        reason,
                    });
                }
                if target.exists() {
                    // Cannot take the right name: cut here like other header damage.
                    Some(reason)
                } else {
                    // The header and records agree with the log: repair is a rename.
                    fs::rename(&seg.path, &target).map_err(|e| StoreError::io(&seg.path, e))?;
                    sync_dir(dir)?;
                    tracing::warn!(from = %seg.path.display(), to = %target.display(), "renamed a segment after its header");
                    report
                        .segments_renamed
                        .push((seg.path.clone(), target.clone()));
                    segments[i] = SegmentMeta {
                        first_seq,
                        path: target,
                    };
                    None
                }
            }
            Header::Ok { first_seq, .. } => Some(format!(
                "segment starts at sequence {first_seq} where {expected} was expected"
            )),
            Header::Version(found) => {
                return Err(StoreError::UnsupportedVersion {
                    file: seg.path.clone(),
                    found,
                    supported: format::FORMAT_VERSION,
                });
            }
            Header::Bad(reason) => Some(reason.to_owned()),
        };
        if let Some(reason) = header_problem {
            // A last segment shorter than its header was being created at a crash.
            let torn = is_last && data.len() < SEGMENT_HEADER_LEN;
            if !torn && !options.repair {
                return Err(StoreError::Corrupt {
                    file: seg.path.clone(),
                    offset: 0,
                    reason,
                });
            }
            report.cut = Some(CutPoint {
                file: seg.path.clone(),
                offset: 0,
                reason,
                repaired: !torn,
            });
            keep = i;
            break;
        }

        // The records (of the segment as it is named now).
        let seg = segments[i].clone();
        let mut at = SEGMENT_HEADER_LEN;
        let mut bad = None;
        while at < data.len() {
            match format::parse_frame(&data, at, expected) {
                Ok(frame) => {
                    expected += 1;
                    at = frame.end;
                }
                Err(e) => {
                    bad = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = bad {
            // Damage that an intact record follows is not a torn tail,
            // whatever the damage looks like (a bad length reads as "torn").
            let mid_log = !is_last || format::intact_record_after(&data, at, expected + 1);
            if mid_log && !options.repair {
                return Err(StoreError::Corrupt {
                    file: seg.path.clone(),
                    offset: at as u64,
                    reason: e.reason(),
                });
            }
            cut_file(&seg.path, at as u64)?;
            report.bytes_cut += (data.len() - at) as u64;
            report.cut = Some(CutPoint {
                file: seg.path.clone(),
                offset: at as u64,
                reason: e.reason(),
                repaired: mid_log,
            });
            tail_len = at as u64;
            keep = i + 1;
            break;
        }
        tail_len = data.len() as u64;
    }

    // Drop segments after a cut.
    for seg in segments.drain(keep..) {
        report.bytes_cut += file_len(&seg.path);
        fs::remove_file(&seg.path).map_err(|e| StoreError::io(&seg.path, e))?;
    }
    if report.cut.is_some() {
        sync_dir(dir)?;
    }
    if let Some(cut) = &report.cut {
        tracing::warn!(
            file = %cut.file.display(),
            offset = cut.offset,
            bytes_cut = report.bytes_cut,
            reason = %cut.reason,
            repaired = cut.repaired,
            "event log cut on open"
        );
    }
    if segments.is_empty() {
        let (meta, _file) = create_segment(dir, expected)?;
        sync_dir(dir)?;
        segments.push(meta);
        tail_len = SEGMENT_HEADER_LEN as u64;
    }
    let last_seq = expected - 1;
    report.snapshots_dropped = snapshot::drop_after(dir, last_seq)?;
    report.last_seq = last_seq;
    report.segments = segments.len();
    report.segments_verified = segments.len().saturating_sub(first_checked);
    report.first_seq = segments.first().map_or(start, |s| s.first_seq);
    Ok(Recovered {
        segments,
        last_seq,
        tail_len,
        report,
    })
}
