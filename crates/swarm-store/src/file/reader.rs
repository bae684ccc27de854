//! Reading the log: a blocking task walks the segments and sends events to the
//! stream in chunks.
//!
//! Segments older than the newest snapshot were not checked by open, so a
//! read checks every segment it enters the way recovery would: the header
//! against the name and the sequence reached, each record's checksum and
//! sequence, and that a sealed segment ends on a whole record. Damage is a
//! [`StoreError::Corrupt`] of this read; the store stays open.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::{FutureExt, StreamExt};
use swarm_core::Timestamp;
use tokio::sync::mpsc;

use super::format::{self, DecodeError, FRAME_HEADER_LEN, Header, SEGMENT_HEADER_LEN};
use super::writer::Shared;
use crate::error::{Result, StoreError};
use crate::store::{EventStream, StoredEvent};

const CHUNK: usize = 1024;
const READ_BUFFER: usize = 256 * 1024;

type Chunk = Result<Vec<StoredEvent>>;

/// The events `from..=to`, which must all be visible.
pub(crate) fn read_range(shared: Arc<Shared>, from: u64, to: u64) -> EventStream {
    let from = from.max(1);
    let earliest = shared.first_seq.load(Ordering::Acquire);
    if from < earliest {
        return compacted(from, earliest);
    }
    if from > to {
        return futures::stream::empty().boxed();
    }
    async move {
        let (tx, rx) = mpsc::channel::<Chunk>(4);
        tokio::task::spawn_blocking(move || {
            let mut chunk = Vec::with_capacity(CHUNK);
            let result = read_blocking(&shared, from, to, &tx, &mut chunk);
            // Every intact event read, then the error, if any.
            if !chunk.is_empty() && tx.blocking_send(Ok(chunk)).is_err() {
                return;
            }
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e));
            }
        });
        futures::stream::unfold(rx, |mut rx| async move {
            let chunk = rx.recv().await?;
            Some((chunk, rx))
        })
        .flat_map(|chunk| match chunk {
            // Each event moved once, out of the chunk (no second vector).
            Ok(events) => futures::stream::iter(events.into_iter().map(Ok)).left_stream(),
            Err(e) => futures::stream::iter([Err(e)]).right_stream(),
        })
    }
    .flatten_stream()
    .boxed()
}

/// A stream whose only item is [`StoreError::Compacted`].
pub(crate) fn compacted(requested: u64, earliest: u64) -> EventStream {
    futures::stream::iter([Err(StoreError::Compacted {
        requested,
        earliest,
    })])
    .boxed()
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        file: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` at a clean end of file.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => {
                if filled == 0 {
                    return Ok(false);
                }
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "torn record"));
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Reads `from..=to` into `chunk`, sending each full chunk; what is left in
/// `chunk` when it returns (with or without an error) is the caller's to send.
fn read_blocking(
    shared: &Shared,
    from: u64,
    to: u64,
    tx: &mpsc::Sender<Chunk>,
    chunk: &mut Vec<StoredEvent>,
) -> Result<()> {
    let segments = shared.segments.read().clone();
    let start = segments
        .partition_point(|s| s.first_seq <= from)
        .saturating_sub(1);
    let mut body = Vec::new();
    let mut expected = segments.get(start).map_or(1, |s| s.first_seq);
    let count = segments.len();
    for (index, seg) in segments.iter().enumerate().skip(start) {
        if expected > to {
            break;
        }
        let path = &seg.path;
        let sealed = index + 1 < count;
        // A sealed segment that ends inside a record is damage, not a tail.
        let torn = |e: io::Error| {
            if sealed && e.kind() == io::ErrorKind::UnexpectedEof {
                corrupt(path, 0, "the sealed segment ends inside a record")
            } else {
                StoreError::io(path, e)
            }
        };
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let earliest = shared.first_seq.load(Ordering::Acquire);
                if seg.first_seq < earliest {
                    // Retention deleted it after this read listed it.
                    return Err(StoreError::Compacted {
                        requested: expected.max(from),
                        earliest,
                    });
                }
                return Err(StoreError::io(path, e));
            }
            Err(e) => return Err(StoreError::io(path, e)),
        };
        let mut r = BufReader::with_capacity(READ_BUFFER, file);
        let mut header = [0u8; SEGMENT_HEADER_LEN];
        if !read_full(&mut r, &mut header).map_err(torn)? {
            return Err(corrupt(path, 0, "segment header is missing"));
        }
        let mut decoder = match format::parse_header(&header) {
            Header::Ok {
                first_seq,
                encoding,
            } if first_seq == seg.first_seq && first_seq == expected => {
                format::EventDecoder::new(encoding)
            }
            Header::Ok { first_seq, .. } if first_seq == seg.first_seq => {
                return Err(corrupt(
                    path,
                    0,
                    format!("segment starts at sequence {first_seq} where {expected} was expected"),
                ));
            }
            Header::Version(found) => {
                return Err(StoreError::UnsupportedVersion {
                    file: path.clone(),
                    found,
                    supported: format::FORMAT_VERSION,
                });
            }
            _ => return Err(corrupt(path, 0, "segment header is damaged")),
        };
        let mut offset = SEGMENT_HEADER_LEN as u64;
        let mut frame = [0u8; FRAME_HEADER_LEN];
        while expected <= to {
            let more = read_full(&mut r, &mut frame).map_err(|e| match torn(e) {
                StoreError::Corrupt { file, reason, .. } => StoreError::Corrupt {
                    file,
                    offset,
                    reason,
                },
                other => other,
            })?;
            if !more {
                break; // next segment
            }
            let len = format::u32_at(&frame, 0);
            if len > format::MAX_BODY_LEN || (len as usize) < format::BODY_PREFIX_LEN {
                return Err(corrupt(
                    path,
                    offset,
                    format!("record length {len} is invalid"),
                ));
            }
            if expected < from {
                r.seek_relative(i64::from(len))
                    .map_err(|e| StoreError::io(path, e))?;
            } else {
                body.resize(len as usize, 0);
                r.read_exact(&mut body).map_err(|e| match torn(e) {
                    StoreError::Corrupt { file, reason, .. } => StoreError::Corrupt {
                        file,
                        offset,
                        reason,
                    },
                    other => other,
                })?;
                if format::frame_crc(&frame[0..4], &body) != format::u32_at(&frame, 4) {
                    return Err(corrupt(path, offset, "record checksum mismatch"));
                }
                let seq = format::u64_at(&body, 0);
                if seq != expected {
                    return Err(corrupt(
                        path,
                        offset,
                        format!("record has sequence {seq} where {expected} was expected"),
                    ));
                }
                match decoder.decode(&body[format::BODY_PREFIX_LEN..]) {
                    Ok(event) => chunk.push(StoredEvent {
                        seq,
                        timestamp: Timestamp::from_micros(format::u64_at(&body, 8)),
                        event,
                    }),
                    Err(DecodeError::Unknown(name)) => {
                        // Not damage: the events before it, this error in its
                        // place, and the read goes on.
                        let before = std::mem::replace(chunk, Vec::with_capacity(CHUNK));
                        let unknown = StoreError::UnknownEvent {
                            file: path.clone(),
                            offset,
                            seq,
                            name,
                        };
                        if (!before.is_empty() && tx.blocking_send(Ok(before)).is_err())
                            || tx.blocking_send(Err(unknown)).is_err()
                        {
                            return Ok(()); // the reader went away
                        }
                    }
                    Err(DecodeError::Bad(reason)) => return Err(corrupt(path, offset, reason)),
                }
                if chunk.len() == CHUNK {
                    let full = std::mem::replace(chunk, Vec::with_capacity(CHUNK));
                    if tx.blocking_send(Ok(full)).is_err() {
                        return Ok(()); // the reader went away
                    }
                }
            }
            offset += (FRAME_HEADER_LEN as u64) + u64::from(len);
            expected += 1;
        }
    }
    if expected <= to {
        let path = segments.last().map(|s| s.path.clone()).unwrap_or_default();
        return Err(corrupt(
            &path,
            0,
            format!("the log ends at sequence {} before {to}", expected - 1),
        ));
    }
    Ok(())
}
