//! The errors of the event store.

use std::error::Error;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Why an operation on an event store failed.
///
/// Messages are lowercase and say what to do next.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// Optimistic concurrency: another writer appended first.
    Conflict {
        /// The last sequence the caller expected.
        expected: u64,
        /// The log's real last sequence.
        actual: u64,
    },
    /// A record before the tail of the log is damaged.
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// The byte offset of the first bad record.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A segment or snapshot header names a format this build cannot read.
    UnsupportedVersion {
        /// The file.
        file: PathBuf,
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A whole, checksummed record holds an event kind this version does not
    /// know: the log was written by a newer version of swarm. Not damage:
    /// reading goes on after it (a stream yields this error in the record's
    /// place, then the records after it), replay skips it, and `repair`
    /// leaves it in place.
    UnknownEvent {
        /// The segment file.
        file: PathBuf,
        /// The byte offset of the record.
        offset: u64,
        /// The record's sequence.
        seq: u64,
        /// The event's name, as written.
        name: String,
    },
    /// An event or snapshot could not be encoded.
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's message.
        message: String,
    },
    /// A snapshot could not be decoded.
    BadSnapshot {
        /// The snapshot's sequence.
        seq: u64,
        /// The decoder's message.
        message: String,
    },
    /// Another [`FileStore`](crate::FileStore) holds the directory's lock: a
    /// directory has one writer at a time.
    Locked {
        /// The store's directory.
        dir: PathBuf,
    },
    /// The directory holds no event log (it is missing, not a directory, or
    /// has no segment file).
    NoLog {
        /// The directory.
        dir: PathBuf,
        /// What is missing.
        reason: &'static str,
    },
    /// A NATS log opened with
    /// [`existing_only`](crate::NatsStoreOptions::existing_only) does not
    /// exist: no swarm of that name has run on that server.
    NoStream {
        /// The server URL.
        url: String,
        /// The stream (or snapshot bucket stream) that is missing.
        stream: String,
    },
    /// A write was asked of a read-only [`FileLogReader`](crate::FileLogReader).
    ReadOnly {
        /// The log's directory.
        dir: PathBuf,
    },
    /// A read asked for events the log no longer holds: its retention policy
    /// removed them (a file store's deleted segments, a memory store's
    /// bounded tail, a stream's limits). Replay from a snapshot at or after
    /// `earliest - 1` instead.
    Compacted {
        /// The first sequence asked for.
        requested: u64,
        /// The earliest sequence the log still holds.
        earliest: u64,
    },
    /// The store was closed (or its writer stopped) and takes no more appends.
    Closed,
    /// A write failed (this append's or an earlier one); the store refuses
    /// every append from then on, whatever its durability policy, until it is
    /// opened again. [`EventStore::is_poisoned`](crate::EventStore::is_poisoned)
    /// says so without appending.
    Poisoned {
        /// The failure that stopped the store (usually an [`Io`](StoreError::Io)
        /// error), shared by every append it refuses.
        source: Arc<StoreError>,
    },
    /// An I/O error on a file of the store.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

// Display and Error by hand rather than derived: the store alone stays off
// the proc-macro `thiserror` (see xtask/src/deps.rs for its dependency budget).
impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Conflict { expected, actual } => write!(
                f,
                "append conflict: expected the log to end at sequence {expected} but it ends at {actual}: re-read the log and retry"
            ),
            StoreError::Corrupt {
                file,
                offset,
                reason,
            } => write!(
                f,
                "log segment {} is corrupt at byte {offset}: {reason}; open with `repair` to cut the log there (events after it are dropped)",
                file.display()
            ),
            StoreError::UnsupportedVersion {
                file,
                found,
                supported,
            } => write!(
                f,
                "{} has format version {found}, this build reads version {supported}: upgrade swarm to read it",
                file.display()
            ),
            StoreError::UnknownEvent {
                file,
                offset,
                seq,
                name,
            } => write!(
                f,
                "log record {seq} ({} byte {offset}) is a `{name}` event, which this version of swarm does not know: the log was written by a newer version; upgrade swarm to read it (replay ignores it)",
                file.display()
            ),
            StoreError::Encode { what, message } => {
                write!(f, "could not encode {what}: {message}")
            }
            StoreError::BadSnapshot { seq, message } => write!(
                f,
                "snapshot at sequence {seq} could not be decoded: {message}; delete it to replay from the log"
            ),
            StoreError::Locked { dir } => write!(
                f,
                "the event store {} is in use: another process (or another open store in this process) holds its lock; wait for it to finish or use another directory",
                dir.display()
            ),
            StoreError::NoLog { dir, reason } => {
                write!(f, "no event store at {}: {reason}", dir.display())
            }
            StoreError::NoStream { url, stream } => write!(
                f,
                "no event log at {url}: stream {stream} does not exist (is the swarm name right? its nodes create it when they start)"
            ),
            StoreError::ReadOnly { dir } => write!(
                f,
                "the event log at {} is open read-only: open it with `FileStore::open` to write",
                dir.display()
            ),
            StoreError::Compacted {
                requested,
                earliest,
            } => write!(
                f,
                "events from sequence {requested} are no longer in the log: its retention policy removed them, and the earliest it holds is {earliest}; replay from a snapshot or read from {earliest}"
            ),
            StoreError::Closed => f.write_str("the event store is closed: open it again to append"),
            StoreError::Poisoned { source } => write!(
                f,
                "the event store stopped after a failed write ({source}): fix the cause and open it again"
            ),
            StoreError::Io { path, source } => {
                write!(f, "i/o error on {}: {source}", path.display())
            }
        }
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            StoreError::Poisoned { source } => Some(&**source),
            StoreError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether the store refuses appends after a failed write
    /// ([`Poisoned`](StoreError::Poisoned)).
    pub fn is_poisoned(&self) -> bool {
        matches!(self, StoreError::Poisoned { .. })
    }

    /// A copy of this error for a second caller (`io::Error` is not `Clone`:
    /// an i/o error is copied by kind and message).
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn duplicate(&self) -> StoreError {
        match self {
            StoreError::Conflict { expected, actual } => StoreError::Conflict {
                expected: *expected,
                actual: *actual,
            },
            StoreError::Corrupt {
                file,
                offset,
                reason,
            } => StoreError::Corrupt {
                file: file.clone(),
                offset: *offset,
                reason: reason.clone(),
            },
            StoreError::UnsupportedVersion {
                file,
                found,
                supported,
            } => StoreError::UnsupportedVersion {
                file: file.clone(),
                found: *found,
                supported: *supported,
            },
            StoreError::UnknownEvent {
                file,
                offset,
                seq,
                name,
            } => StoreError::UnknownEvent {
                file: file.clone(),
                offset: *offset,
                seq: *seq,
                name: name.clone(),
            },
            StoreError::Encode { what, message } => StoreError::Encode {
                what,
                message: message.clone(),
            },
            StoreError::BadSnapshot { seq, message } => StoreError::BadSnapshot {
                seq: *seq,
                message: message.clone(),
            },
            StoreError::Locked { dir } => StoreError::Locked { dir: dir.clone() },
            StoreError::NoLog { dir, reason } => StoreError::NoLog {
                dir: dir.clone(),
                reason,
            },
            StoreError::NoStream { url, stream } => StoreError::NoStream {
                url: url.clone(),
                stream: stream.clone(),
            },
            StoreError::ReadOnly { dir } => StoreError::ReadOnly { dir: dir.clone() },
            StoreError::Compacted {
                requested,
                earliest,
            } => StoreError::Compacted {
                requested: *requested,
                earliest: *earliest,
            },
            StoreError::Closed => StoreError::Closed,
            StoreError::Poisoned { source } => StoreError::Poisoned {
                source: Arc::clone(source),
            },
            StoreError::Io { path, source } => StoreError::Io {
                path: path.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
        }
    }

    /// Whether this is a record of an event kind this version does not know
    /// ([`UnknownEvent`](StoreError::UnknownEvent)): not damage, and a read
    /// goes on after it.
    pub fn is_unknown_event(&self) -> bool {
        matches!(self, StoreError::UnknownEvent { .. })
    }

    /// Whether this is an append [`Conflict`](StoreError::Conflict).
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }

    /// Whether another store holds the directory ([`Locked`](StoreError::Locked)).
    pub fn is_locked(&self) -> bool {
        matches!(self, StoreError::Locked { .. })
    }

    /// Whether this reports damage to the log ([`Corrupt`](StoreError::Corrupt)).
    pub fn is_corrupt(&self) -> bool {
        matches!(self, StoreError::Corrupt { .. })
    }
}

/// A result with a [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
