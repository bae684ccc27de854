//! A read-only reader of a [`FileStore`](swarm::FileStore) directory, for
//! `replay`, `events` and `stats`.
//!
//! Why not `FileStore::open`: opening a store recovers it (cuts a torn tail,
//! drops snapshots, creates the directory), which is a write, and a directory
//! belongs to one process at a time. Inspecting the log of a `swarm run` that
//! is still going must neither change its files nor stop at the first record
//! the writer is halfway through; so these commands read the segment files
//! themselves (the format is documented in `swarm_store::file::format`), never
//! write, treat an incomplete last record as "not yet written", and report
//! damage before the tail exactly like the store does: a corrupt error naming
//! the file and byte offset.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use swarm::Event;
use swarm::Timestamp;
use swarm_store::StoreError;
use swarm_store::StoredEvent;
use swarm_store::file::format::{
    BODY_PREFIX_LEN, ENCODING_MSGPACK_NAMED, FORMAT_VERSION, FRAME_HEADER_LEN, MAX_BODY_LEN,
    SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
};

use crate::error::CliError;

/// Reads a log directory from the start, and again from where it stopped.
#[derive(Debug)]
pub(crate) struct LogReader {
    dir: PathBuf,
    /// The segment being read (its first sequence) and the offset reached in it.
    segment: Option<(u64, u64)>,
    next_seq: u64,
    /// Where the readable log ended last time, if it ended inside a record.
    torn_at: Option<(PathBuf, u64)>,
}

enum Problem {
    /// The bytes end inside the record: a write in progress or a torn tail.
    Torn,
    /// The record is all there but wrong.
    Bad(String),
}

impl LogReader {
    /// Opens `dir` for reading; it must be an existing store directory.
    pub(crate) fn open(dir: &Path) -> Result<LogReader, CliError> {
        let missing = |what: &str| {
            CliError::BadInput(format!(
                "no event store at {}: {what} (pass the --store directory that `swarm run` or `swarm demo` wrote)",
                dir.display()
            ))
        };
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(missing("it is not a directory")),
            Err(_) => return Err(missing("the directory does not exist")),
        }
        if list_segments(dir)?.is_empty() {
            return Err(missing("it holds no log segment"));
        }
        Ok(LogReader {
            dir: dir.to_path_buf(),
            segment: None,
            next_seq: 1,
            torn_at: None,
        })
    }

    /// Where the log ended inside a record at the last read, if it did (a
    /// torn tail that the next start of a swarm on this store will cut, or a
    /// write in progress).
    pub(crate) fn torn_at(&self) -> Option<&(PathBuf, u64)> {
        self.torn_at.as_ref()
    }

    /// Calls `each` with every whole record written since the last call, in
    /// order. `each` returns `false` to stop early.
    pub(crate) fn read_available(
        &mut self,
        mut each: impl FnMut(StoredEvent) -> Result<bool, CliError>,
    ) -> Result<(), CliError> {
        self.torn_at = None;
        loop {
            // Listed before reading: a segment that is not the last one now
            // was complete when the writer moved past it.
            let segments = list_segments(&self.dir)?;
            let index = match self.segment {
                None => 0,
                Some((first, _)) => match segments.iter().position(|(f, _)| *f == first) {
                    Some(i) => i,
                    None => {
                        return Err(CliError::BadInput(format!(
                            "the log segment starting at sequence {first} in {} disappeared while it was read",
                            self.dir.display()
                        )));
                    }
                },
            };
            let Some((first_seq, path)) = segments.get(index) else {
                return Ok(());
            };
            let is_last = index + 1 == segments.len();
            let offset = match self.segment {
                Some((_, offset)) => offset,
                None => 0,
            };
            let data = read_from(path, offset)?;
            let mut at = 0usize;
            if offset == 0 {
                if data.len() < SEGMENT_HEADER_LEN {
                    if is_last {
                        // Being created right now.
                        self.segment = Some((*first_seq, 0));
                        return Ok(());
                    }
                    return Err(corrupt(path, 0, "segment header is incomplete"));
                }
                check_header(path, &data[..SEGMENT_HEADER_LEN], self.next_seq)?;
                at = SEGMENT_HEADER_LEN;
            }
            let mut stopped = None;
            while at < data.len() {
                match parse_record(&data, at, self.next_seq) {
                    Ok((end, stored)) => {
                        at = end;
                        self.next_seq += 1;
                        self.segment = Some((*first_seq, offset + at as u64));
                        if !each(stored)? {
                            return Ok(());
                        }
                    }
                    Err(problem) => {
                        stopped = Some(problem);
                        break;
                    }
                }
            }
            let here = offset + at as u64;
            self.segment = Some((*first_seq, here));
            match stopped {
                None if is_last => return Ok(()),
                None => {
                    // Move to the next segment.
                    let Some((next_first, _)) = segments.get(index + 1) else {
                        return Ok(());
                    };
                    self.segment = Some((*next_first, 0));
                }
                Some(Problem::Bad(reason))
                    if !is_last || record_follows(&data, at, self.next_seq + 1) =>
                {
                    return Err(corrupt(path, here, &reason));
                }
                Some(Problem::Bad(reason)) => {
                    tracing::debug!(file = %path.display(), offset = here, %reason, "the log ends with a damaged record");
                    self.torn_at = Some((path.clone(), here));
                    return Ok(());
                }
                Some(Problem::Torn) if !is_last => {
                    return Err(corrupt(path, here, "the segment ends inside a record"));
                }
                Some(Problem::Torn) => {
                    self.torn_at = Some((path.clone(), here));
                    return Ok(());
                }
            }
        }
    }
}

fn corrupt(path: &Path, offset: u64, reason: &str) -> CliError {
    CliError::Store(StoreError::Corrupt {
        file: path.to_path_buf(),
        offset,
        reason: reason.to_owned(),
    })
}

fn io_error(path: &Path, source: std::io::Error) -> CliError {
    CliError::Store(StoreError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The segment files of `dir`, oldest first: `(first sequence, path)`.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, CliError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else {
            continue;
        };
        if stem.len() == 20 {
            if let Ok(first) = stem.parse::<u64>() {
                out.push((first, entry.path()));
            }
        }
    }
    out.sort_by_key(|(first, _)| *first);
    Ok(out)
}

fn read_from(path: &Path, offset: u64) -> Result<Vec<u8>, CliError> {
    let mut file = File::open(path).map_err(|e| io_error(path, e))?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| io_error(path, e))?;
    let mut data = Vec::new();
    file.read_to_end(&mut data).map_err(|e| io_error(path, e))?;
    Ok(data)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn check_header(path: &Path, h: &[u8], expected_first: u64) -> Result<(), CliError> {
    if h[0..8] != SEGMENT_MAGIC {
        return Err(corrupt(path, 0, "segment header has the wrong magic bytes"));
    }
    if crc32c::crc32c(&h[0..24]) != u32_at(h, 24) {
        return Err(corrupt(path, 0, "segment header checksum mismatch"));
    }
    let version = u32_at(h, 8);
    if version != FORMAT_VERSION || u32_at(h, 12) != ENCODING_MSGPACK_NAMED {
        return Err(CliError::Store(StoreError::UnsupportedVersion {
            file: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        }));
    }
    let first = u64_at(h, 16);
    if first != expected_first {
        return Err(corrupt(
            path,
            0,
            &format!("segment starts at sequence {first} where {expected_first} was expected"),
        ));
    }
    Ok(())
}

/// The whole record at `at`, checked and decoded, and the offset past it.
fn parse_record(buf: &[u8], at: usize, expected_seq: u64) -> Result<(usize, StoredEvent), Problem> {
    let end = frame_end(buf, at, expected_seq)?;
    let body = &buf[at + FRAME_HEADER_LEN..end];
    let timestamp = Timestamp::from_micros(u64_at(body, 8));
    let event: Event = rmp_serde::from_slice(&body[BODY_PREFIX_LEN..])
        .map_err(|e| Problem::Bad(format!("event could not be decoded: {e}")))?;
    Ok((
        end,
        StoredEvent {
            seq: expected_seq,
            timestamp,
            event,
        },
    ))
}

/// Checks the frame at `at` (length, checksum, sequence) without decoding it.
fn frame_end(buf: &[u8], at: usize, expected_seq: u64) -> Result<usize, Problem> {
    if buf.len() - at < FRAME_HEADER_LEN {
        return Err(Problem::Torn);
    }
    let len = u32_at(buf, at);
    if len > MAX_BODY_LEN {
        return Err(Problem::Bad(format!(
            "record length {len} is over the {MAX_BODY_LEN}-byte limit"
        )));
    }
    if (len as usize) < BODY_PREFIX_LEN {
        return Err(Problem::Bad(format!("record length {len} is too short")));
    }
    let body = at + FRAME_HEADER_LEN;
    let end = body + len as usize;
    if end > buf.len() {
        return Err(Problem::Torn);
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&buf[at..at + 4]), &buf[body..end]);
    if crc != u32_at(buf, at + 4) {
        return Err(Problem::Bad("record checksum mismatch".to_owned()));
    }
    let seq = u64_at(buf, body);
    if seq != expected_seq {
        return Err(Problem::Bad(format!(
            "record has sequence {seq} where {expected_seq} was expected"
        )));
    }
    Ok(end)
}

/// Whether a whole, valid record follows the damaged one at `at`: then the
/// damage is in the middle of the log, not a torn tail (the store's rule).
fn record_follows(buf: &[u8], at: usize, next_seq: u64) -> bool {
    if buf.len() - at < FRAME_HEADER_LEN {
        return false;
    }
    let len = u32_at(buf, at) as usize;
    let Some(next) = at.checked_add(FRAME_HEADER_LEN + len) else {
        return false;
    };
    next < buf.len() && frame_end(buf, next, next_seq).is_ok()
}
