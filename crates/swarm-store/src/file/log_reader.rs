//! [`FileLogReader`]: the read-only, tail-tolerant reader of a file log.
//!
//! Opening a [`FileStore`](super::FileStore) recovers the log (it cuts a torn
//! tail, drops snapshots past the end, creates what is missing) and takes the
//! directory's lock. Inspecting the log of a swarm that is still running must
//! do neither: this reader never writes, never repairs, takes no lock, and
//! reads beside a live writer. A record the writer is halfway through is not
//! yet visible; damage before the tail is a [`StoreError::Corrupt`] naming the
//! file and byte offset, by the same rules recovery applies.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::sync::Mutex;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use swarm_core::{Event, Timestamp};
use tokio::sync::mpsc;

use super::format::{self, DecodeError, FRAME_HEADER_LEN, Header, SEGMENT_HEADER_LEN};
use super::recovery::{SegmentMeta, list_segments};
use super::retention;
use super::snapshot;
use crate::error::{Result, StoreError};
use crate::store::{EventStore, EventStream, SeqRange, Snapshot, StoredEvent};

/// Events handed from the blocking reader to a stream at a time.
const CHUNK: usize = 1024;
/// How often [`subscribe`](EventStore::subscribe) looks for new records.
const POLL: Duration = Duration::from_millis(100);

/// A read-only reader of a [`FileStore`](super::FileStore) directory.
///
/// It never writes (no repair, no lock, no temp-file cleanup) and works beside
/// a live writer: a record being written at the tail is simply not visible
/// yet, and a later read sees it. Damage before the tail (including damage at
/// the tail that an intact record follows) is a [`StoreError::Corrupt`] naming
/// the file and byte offset; a record that is all there but does not decode
/// is one too.
///
/// Reading is synchronous ([`read`](FileLogReader::read) gives an iterator);
/// the reader also implements [`EventStore`] for its read side (`read`,
/// `subscribe`, `last_seq`, `latest_snapshot`), so
/// [`SystemState::replay`](crate::SystemState::replay) replays through it,
/// newest snapshot first. Its writes fail with [`StoreError::ReadOnly`].
///
/// ```
/// use swarm_core::event::AgentAvailable;
/// use swarm_core::AgentId;
/// use swarm_store::{EventStore, FileLogReader, FileStore};
///
/// # let dir = tempfile::tempdir().unwrap();
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = FileStore::open(dir.path())?;
/// store.append(vec![AgentAvailable { agent_id: AgentId::new(1) }.into()], None).await?;
///
/// // Beside the open store: no lock is taken, nothing is written.
/// let reader = FileLogReader::open(dir.path())?;
/// assert_eq!(reader.last_seq()?, 1);
/// let seqs: Vec<u64> = reader.read(1).map(|e| e.map(|e| e.seq)).collect::<Result<_, _>>()?;
/// assert_eq!(seqs, [1]);
/// # Ok::<(), swarm_store::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct FileLogReader {
    dir: PathBuf,
    /// Where the latest read that reached the end found the log ending inside a record.
    torn: Arc<Mutex<Option<TornTail>>>,
}

/// Where the visible log ends inside a record: a write in progress, or a torn
/// tail that the next [`FileStore::open`](super::FileStore::open) will cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub file: PathBuf,
    /// The byte offset where the incomplete record starts.
    pub offset: u64,
    /// Why the bytes there are not a whole record.
    pub reason: String,
}

impl FileLogReader {
    /// Opens the log in `dir` for reading. Fails with [`StoreError::NoLog`]
    /// when `dir` is missing, not a directory, or holds no segment.
    pub fn open(dir: impl AsRef<Path>) -> Result<FileLogReader> {
        let dir = dir.as_ref().to_path_buf();
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(StoreError::NoLog {
                    dir,
                    reason: "it is not a directory",
                });
            }
            Err(_) => {
                return Err(StoreError::NoLog {
                    dir,
                    reason: "the directory does not exist",
                });
            }
        }
        if list_segments(&dir)?.is_empty() {
            return Err(StoreError::NoLog {
                dir,
                reason: "it holds no log segment",
            });
        }
        Ok(FileLogReader {
            dir,
            torn: Arc::default(),
        })
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The records with sequence `>= from_seq`, in order, as far as the log
    /// is visible now. The iterator is not fused: after it returns `None`, a
    /// later `next()` returns the records appended since. After an error it
    /// returns `None` for good.
    pub fn read(&self, from_seq: u64) -> LogRecords {
        LogRecords {
            dir: self.dir.clone(),
            from: from_seq.max(1),
            segment: None,
            is_last: true,
            next_segment: None,
            header_done: false,
            decoder: format::EventDecoder::new(format::Encoding::CURRENT),
            offset: 0,
            buf: Vec::new(),
            at: 0,
            next_seq: 1,
            torn: None,
            failed: false,
            shared_torn: Arc::clone(&self.torn),
        }
    }

    /// The first sequence the log keeps: 1 unless a retention policy of the
    /// store deleted older segments. A read from before it fails with
    /// [`StoreError::Compacted`].
    pub fn first_seq(&self) -> Result<u64> {
        retention::read_start(&self.dir)
    }

    /// The last sequence visible now (0 for an empty log). Checks the records
    /// of the last segment (without decoding them).
    pub fn last_seq(&self) -> Result<u64> {
        let mut records = self.read(u64::MAX);
        for record in &mut records {
            record?;
        }
        Ok(records.next_seq - 1)
    }

    /// The newest valid snapshot at or before `at_or_before`; damaged ones are
    /// skipped (and logged). Reads only: a temp file of an interrupted save is
    /// left where it is.
    pub fn latest_snapshot(&self, at_or_before: u64) -> Result<Option<Snapshot>> {
        snapshot::latest_read_only(&self.dir, at_or_before)
    }

    /// Where the latest read that reached the end of the log found it ending
    /// inside a record, if it did.
    pub fn torn_tail(&self) -> Option<TornTail> {
        self.torn.lock().clone()
    }

    fn read_only<T>(&self) -> Result<T> {
        Err(StoreError::ReadOnly {
            dir: self.dir.clone(),
        })
    }
}

/// The records of a file log from a sequence on: see [`FileLogReader::read`].
#[derive(Debug)]
pub struct LogRecords {
    dir: PathBuf,
    from: u64,
    /// The first sequence (by its name) of the segment being read.
    segment: Option<u64>,
    /// Whether that segment was the last one when it was last read.
    is_last: bool,
    /// The segment after it, if there was one.
    next_segment: Option<u64>,
    header_done: bool,
    /// Decodes the events of the segment, in the encoding its header names
    /// (set when the header is read).
    decoder: format::EventDecoder,
    /// The offset in the segment where `buf` starts.
    offset: u64,
    buf: Vec<u8>,
    /// The position in `buf` of the next record.
    at: usize,
    /// The sequence the next record must carry.
    next_seq: u64,
    torn: Option<TornTail>,
    failed: bool,
    shared_torn: Arc<Mutex<Option<TornTail>>>,
}

impl LogRecords {
    /// Where the log ended inside a record when this iterator last returned
    /// `None`, if it did.
    pub fn torn_tail(&self) -> Option<&TornTail> {
        self.torn.as_ref()
    }

    /// The sequence of the next record this iterator will look for.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    fn path(&self) -> PathBuf {
        super::recovery::segment_path(&self.dir, self.segment.unwrap_or(0))
    }

    fn corrupt(&self, offset: u64, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            file: self.path(),
            offset,
            reason: reason.into(),
        }
    }

    /// Lists the segments, then reads the rest of the current one (or picks
    /// the first and reads it). Listing first: a segment that is not the last
    /// one now was complete when the writer moved past it.
    fn refill(&mut self) -> Result<()> {
        // Segments before the start marker are leftovers of an interrupted
        // retention run (the next open deletes them): not part of the log.
        let start = retention::read_start(&self.dir)?;
        let mut segments = list_segments(&self.dir)?;
        segments.retain(|s| s.first_seq >= start);
        let index = match self.segment {
            Some(first) => match segments.iter().position(|s| s.first_seq == first) {
                Some(i) => i,
                None if first < start => {
                    // Retention deleted it while it was read.
                    return Err(StoreError::Compacted {
                        requested: self.next_seq.max(self.from),
                        earliest: start,
                    });
                }
                None => {
                    return Err(StoreError::io(
                        self.path(),
                        std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "the segment disappeared while it was read",
                        ),
                    ));
                }
            },
            None => {
                if self.from < start {
                    return Err(StoreError::Compacted {
                        requested: self.from,
                        earliest: start,
                    });
                }
                let Some(index) = start_segment(&segments, self.from) else {
                    return Ok(()); // no segment at all: an empty log
                };
                let first = segments[index].first_seq;
                self.segment = Some(first);
                // The first segment starts the log where the start marker
                // says (1 without one); a later one starts where its name
                // says (both checked against the header).
                self.next_seq = if index == 0 { start } else { first };
                index
            }
        };
        self.is_last = index + 1 == segments.len();
        self.next_segment = segments.get(index + 1).map(|s| s.first_seq);
        self.offset += self.at as u64;
        self.at = 0;
        self.buf.clear();
        let path = self.path();
        let mut file = File::open(&path).map_err(|e| StoreError::io(&path, e))?;
        file.seek(SeekFrom::Start(self.offset))
            .and_then(|_| file.read_to_end(&mut self.buf))
            .map_err(|e| StoreError::io(&path, e))?;
        if !self.header_done {
            if self.buf.len() < SEGMENT_HEADER_LEN {
                if self.is_last {
                    // Being created right now: nothing visible in it yet.
                    self.buf.clear();
                    return Ok(());
                }
                return Err(self.corrupt(0, "segment header is incomplete"));
            }
            let named = self.segment.unwrap_or(0);
            match format::parse_header(&self.buf) {
                Header::Ok {
                    first_seq,
                    encoding,
                } if first_seq == named && first_seq == self.next_seq => {
                    self.decoder = format::EventDecoder::new(encoding);
                }
                Header::Ok { first_seq, .. } if first_seq != named => {
                    return Err(self.corrupt(
                        0,
                        format!(
                            "the segment's name says it starts at sequence {named} but its header says {first_seq}"
                        ),
                    ));
                }
                Header::Ok { first_seq, .. } => {
                    return Err(self.corrupt(
                        0,
                        format!(
                            "segment starts at sequence {first_seq} where {} was expected",
                            self.next_seq
                        ),
                    ));
                }
                Header::Version(found) => {
                    return Err(StoreError::UnsupportedVersion {
                        file: path,
                        found,
                        supported: format::FORMAT_VERSION,
                    });
                }
                Header::Bad(reason) => return Err(self.corrupt(0, reason)),
            }
            self.header_done = true;
            self.at = SEGMENT_HEADER_LEN;
        }
        Ok(())
    }

    /// The next whole record in the buffer; `Ok(None)` when the buffer holds
    /// none (its end, or the start of a record not yet complete).
    fn next_buffered(&mut self) -> Result<Option<StoredEvent>> {
        while self.at < self.buf.len() {
            let at = self.at;
            match format::parse_frame(&self.buf, at, self.next_seq) {
                Ok(frame) => {
                    self.at = frame.end;
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    if seq < self.from {
                        continue;
                    }
                    let body = &self.buf[at + FRAME_HEADER_LEN..frame.end];
                    let timestamp = Timestamp::from_micros(format::u64_at(body, 8));
                    let offset = self.offset + at as u64;
                    let event: Event = match self.decoder.decode(&body[format::BODY_PREFIX_LEN..]) {
                        Ok(event) => event,
                        Err(DecodeError::Unknown(name)) => {
                            return Err(StoreError::UnknownEvent {
                                file: self.path(),
                                offset,
                                seq,
                                name,
                            });
                        }
                        Err(DecodeError::Bad(reason)) => return Err(self.corrupt(offset, reason)),
                    };
                    return Ok(Some(StoredEvent {
                        seq,
                        timestamp,
                        event,
                    }));
                }
                Err(e) => {
                    let offset = self.offset + at as u64;
                    if !self.is_last {
                        return Err(self.corrupt(offset, e.reason()));
                    }
                    if format::intact_record_after(&self.buf, at, self.next_seq + 1) {
                        return Err(self.corrupt(offset, e.reason()));
                    }
                    self.torn = Some(TornTail {
                        file: self.path(),
                        offset,
                        reason: e.reason(),
                    });
                    return Ok(None);
                }
            }
        }
        Ok(None)
    }

    fn advance(&mut self) -> Result<Option<StoredEvent>> {
        let mut reread = false;
        loop {
            if let Some(stored) = self.next_buffered()? {
                self.torn = None;
                return Ok(Some(stored));
            }
            let consumed = self.header_done && self.at >= self.buf.len();
            if consumed
                && !self.is_last
                && let Some(next) = self.next_segment
            {
                // On to the next segment, which must start where this one ended.
                if next != self.next_seq {
                    return Err(StoreError::Corrupt {
                        file: super::recovery::segment_path(&self.dir, next),
                        offset: 0,
                        reason: format!(
                            "the segment's name says it starts at sequence {next} where {} was expected",
                            self.next_seq
                        ),
                    });
                }
                self.segment = Some(next);
                self.header_done = false;
                self.offset = 0;
                self.at = 0;
                self.buf.clear();
                self.refill()?;
                continue;
            }
            if reread {
                return Ok(None);
            }
            self.torn = None;
            self.refill()?;
            reread = true;
        }
    }
}

/// The segment to start a read from `from`: the last one starting at or
/// before it (the first one if none does).
fn start_segment(segments: &[SegmentMeta], from: u64) -> Option<usize> {
    if segments.is_empty() {
        return None;
    }
    Some(
        segments
            .partition_point(|s| s.first_seq <= from)
            .saturating_sub(1),
    )
}

impl Iterator for LogRecords {
    type Item = Result<StoredEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.advance() {
            Ok(Some(stored)) => Some(Ok(stored)),
            Ok(None) => {
                self.shared_torn.lock().clone_from(&self.torn);
                None
            }
            Err(e) => {
                // A record of an unknown kind is not damage: reading goes on.
                self.failed = !e.is_unknown_event();
                Some(Err(e))
            }
        }
    }
}

/// Takes up to a chunk of records off `records` (blocking); an error that
/// ends the read, if one comes, is the last item.
fn take_chunk(records: &mut LogRecords) -> Vec<Result<StoredEvent>> {
    let mut chunk = Vec::new();
    for record in records.by_ref() {
        let failed = record.as_ref().is_err_and(|e| !e.is_unknown_event());
        chunk.push(record);
        if failed || chunk.len() == CHUNK {
            break;
        }
    }
    chunk
}

impl EventStore for FileLogReader {
    /// Fails with [`StoreError::ReadOnly`].
    fn append(&self, _: Vec<Event>, _: Option<u64>) -> BoxFuture<'_, Result<SeqRange>> {
        let refused = self.read_only();
        Box::pin(async move { refused })
    }

    fn read(&self, from_seq: u64) -> EventStream {
        let mut records = FileLogReader::read(self, from_seq);
        async move {
            let (tx, rx) = mpsc::channel::<Vec<Result<StoredEvent>>>(4);
            tokio::task::spawn_blocking(move || {
                loop {
                    let chunk = take_chunk(&mut records);
                    let last = chunk.len() < CHUNK
                        || chunk
                            .last()
                            .is_some_and(|r| r.as_ref().is_err_and(|e| !e.is_unknown_event()));
                    if chunk.is_empty() || tx.blocking_send(chunk).is_err() || last {
                        return;
                    }
                }
            });
            futures::stream::unfold(rx, |mut rx| async move {
                let chunk = rx.recv().await?;
                Some((futures::stream::iter(chunk), rx))
            })
            .flatten()
        }
        .flatten_stream()
        .boxed()
    }

    /// Catch-up, then each record as it becomes visible (the reader looks
    /// every 100 ms); the stream ends after an error, never otherwise.
    fn subscribe(&self, from_seq: u64) -> EventStream {
        let records = FileLogReader::read(self, from_seq);
        futures::stream::unfold(Some(records), |records| async move {
            let mut records = records?;
            loop {
                let taken = tokio::task::spawn_blocking(move || {
                    let chunk = take_chunk(&mut records);
                    (records, chunk)
                })
                .await;
                let (back, chunk) = match taken {
                    Ok(taken) => taken,
                    Err(e) => {
                        let failed = StoreError::io(
                            PathBuf::new(),
                            std::io::Error::other(format!("log reader task failed: {e}")),
                        );
                        return Some((futures::stream::iter(vec![Err(failed)]), None));
                    }
                };
                records = back;
                if chunk.is_empty() {
                    if records.failed {
                        return None;
                    }
                    tokio::time::sleep(POLL).await;
                    continue;
                }
                return Some((futures::stream::iter(chunk), Some(records)));
            }
        })
        .flatten()
        .boxed()
    }

    fn last_seq(&self) -> BoxFuture<'_, Result<u64>> {
        let reader = self.clone();
        Box::pin(async move { blocking(move || FileLogReader::last_seq(&reader)).await })
    }

    fn first_seq(&self) -> BoxFuture<'_, Result<u64>> {
        let reader = self.clone();
        Box::pin(async move { blocking(move || FileLogReader::first_seq(&reader)).await })
    }

    /// Fails with [`StoreError::ReadOnly`].
    fn save_snapshot(&self, _: Snapshot) -> BoxFuture<'_, Result<()>> {
        let refused = self.read_only();
        Box::pin(async move { refused })
    }

    fn latest_snapshot(&self, at_or_before: u64) -> BoxFuture<'_, Result<Option<Snapshot>>> {
        let reader = self.clone();
        Box::pin(async move {
            blocking(move || FileLogReader::latest_snapshot(&reader, at_or_before)).await
        })
    }

    /// Nothing to flush: succeeds.
    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Nothing to close: succeeds.
    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(StoreError::io(
            PathBuf::new(),
            std::io::Error::other(format!("log reader task failed: {e}")),
        )),
    }
}
