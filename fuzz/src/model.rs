//! An independent model of the file log's on-disk format and of what
//! recovery and reading must do with any bytes, written from the format's
//! documentation (`crates/swarm-store/src/file/format.rs`) and the recovery
//! guarantees in docs/architecture.md, not from the store's code.

use swarm_core::Event;

/// The length of a segment header.
pub const SEGMENT_HEADER_LEN: usize = 28;
/// The length of a record's frame header (length + CRC).
pub const FRAME_HEADER_LEN: usize = 8;
/// The sequence and timestamp at the start of each record body.
pub const BODY_PREFIX_LEN: usize = 16;
/// Records longer than this are damage.
pub const MAX_BODY_LEN: usize = 256 * 1024 * 1024;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The encoding a segment header names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// 1: MessagePack with named fields.
    Named,
    /// 2: positional, of this schema revision.
    Positional(u16),
}

fn header_with(version: u32, encoding: [u8; 4], first_seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(b"SWRMLOG\0");
    h[8..12].copy_from_slice(&version.to_le_bytes());
    h[12..16].copy_from_slice(&encoding);
    h[16..24].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The header of a segment starting at `first_seq`, as the store writes new
/// ones: format 2, encoding 2, schema revision 1.
pub fn segment_header(first_seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    positional_header(first_seq, crate::positional::REVISION)
}

/// The header of a format 2, encoding 2 segment of schema `revision`.
pub fn positional_header(first_seq: u64, revision: u16) -> [u8; SEGMENT_HEADER_LEN] {
    let r = revision.to_le_bytes();
    header_with(2, [2, 0, r[0], r[1]], first_seq)
}

/// The header of a format 1 segment (encoding 1), as earlier builds wrote.
pub fn segment_header_v1(first_seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    header_with(1, [1, 0, 0, 0], first_seq)
}

/// Appends a record to a segment.
pub fn push_record(log: &mut Vec<u8>, seq: u64, timestamp: u64, payload: &[u8]) {
    let mut body = Vec::with_capacity(BODY_PREFIX_LEN + payload.len());
    body.extend_from_slice(&seq.to_le_bytes());
    body.extend_from_slice(&timestamp.to_le_bytes());
    body.extend_from_slice(payload);
    let len = (body.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), &body);
    log.extend_from_slice(&len);
    log.extend_from_slice(&crc.to_le_bytes());
    log.extend_from_slice(&body);
}

/// What a segment header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A valid header: the first sequence and the encoding.
    Ok(u64, Encoding),
    /// Magic and checksum right, another version or encoding.
    Unsupported,
    /// Short, wrong magic or wrong checksum.
    Bad,
}

/// Parses a segment header: format 1 holds encoding 1 only (its 4-byte
/// field is 1); format 2 a 2-byte encoding (1 with revision 0, or 2) and a
/// 2-byte schema revision.
pub fn header(b: &[u8]) -> Header {
    if b.len() < SEGMENT_HEADER_LEN || &b[0..8] != b"SWRMLOG\0" {
        return Header::Bad;
    }
    if crc32c::crc32c(&b[0..24]) != u32_at(b, 24) {
        return Header::Bad;
    }
    let encoding = match (u32_at(b, 8), [b[12], b[13]], [b[14], b[15]]) {
        (1, [1, 0], [0, 0]) => Encoding::Named,
        (2, [1, 0], [0, 0]) => Encoding::Named,
        (2, [2, 0], r) => Encoding::Positional(u16::from_le_bytes(r)),
        _ => return Header::Unsupported,
    };
    Header::Ok(u64_at(b, 16), encoding)
}

/// A whole record with a right checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its sequence.
    pub seq: u64,
    /// Its offset in the segment.
    pub offset: usize,
    /// One past its end.
    pub end: usize,
    /// Its timestamp.
    pub timestamp: u64,
    /// The encoded event.
    pub payload: Vec<u8>,
}

/// The whole, checksummed record at `at`, whatever its sequence.
pub fn frame_at(b: &[u8], at: usize) -> Option<Record> {
    if b.len() < at + FRAME_HEADER_LEN {
        return None;
    }
    let len = u32_at(b, at) as usize;
    if !(BODY_PREFIX_LEN..=MAX_BODY_LEN).contains(&len) {
        return None;
    }
    let body = at + FRAME_HEADER_LEN;
    let end = body.checked_add(len)?;
    if end > b.len() {
        return None;
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[at..at + 4]), &b[body..end]);
    if crc != u32_at(b, at + 4) {
        return None;
    }
    Some(Record {
        seq: u64_at(b, body),
        offset: at,
        end,
        timestamp: u64_at(b, body + 8),
        payload: b[body + BODY_PREFIX_LEN..end].to_vec(),
    })
}

/// The records of a segment from its header on, while each is whole, right
/// and carries the next sequence from `first`.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The records.
    pub records: Vec<Record>,
    /// Where the chain stopped (the segment's length when it reached the end).
    pub stop: usize,
}

/// The chain of records of segment bytes `b` from sequence `first`.
pub fn chain(b: &[u8], first: u64) -> Chain {
    let mut records = Vec::new();
    let mut at = SEGMENT_HEADER_LEN.min(b.len());
    let mut seq = first;
    while at < b.len() {
        match frame_at(b, at) {
            Some(r) if r.seq == seq => {
                at = r.end;
                seq += 1;
                records.push(r);
            }
            _ => break,
        }
    }
    Chain { records, stop: at }
}

/// Whether an intact record (whole, right, with a sequence from `next` up to
/// what the bytes left can hold) starts anywhere after `stop`: what makes
/// damage more than a torn tail.
pub fn intact_after(b: &[u8], stop: usize, next: u64) -> bool {
    let max = next.saturating_add(((b.len() - stop) / (FRAME_HEADER_LEN + BODY_PREFIX_LEN)) as u64);
    (stop + 1..b.len()).any(|o| frame_at(b, o).is_some_and(|r| (next..=max).contains(&r.seq)))
}

/// How a payload decodes.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// An event of the catalog.
    Event(Box<Event>),
    /// A tagged event of a kind this version does not know.
    Unknown,
    /// Not an event.
    Bad,
}

/// Decodes a payload of a segment in `encoding`.
pub fn decode(payload: &[u8], encoding: Encoding) -> Decoded {
    match encoding {
        Encoding::Named => decode_named(payload),
        Encoding::Positional(revision) => crate::positional::decode(payload, revision),
    }
}

/// Decodes a payload of encoding 1 (MessagePack, events tagged by name).
pub fn decode_named(payload: &[u8]) -> Decoded {
    if let Ok(event) = rmp_serde::from_slice::<Event>(payload) {
        return Decoded::Event(Box::new(event));
    }
    #[derive(serde::Deserialize)]
    struct Tagged {
        event: String,
    }
    match rmp_serde::from_slice::<Tagged>(payload) {
        Ok(t) if !crate::known_kind(&t.event) => Decoded::Unknown,
        _ => Decoded::Bad,
    }
}

/// One item of a read, comparable across implementations (an event by its
/// encoding: events with a NaN are not equal to themselves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An event.
    Event {
        /// Its sequence.
        seq: u64,
        /// Its timestamp.
        timestamp: u64,
        /// The event, re-encoded.
        event: Vec<u8>,
    },
    /// A record of an unknown kind.
    Unknown {
        /// Its sequence.
        seq: u64,
    },
    /// Damage.
    Corrupt {
        /// The segment's file name.
        file: String,
        /// Where.
        offset: u64,
    },
    /// A segment of another format version.
    Unsupported {
        /// The segment's file name.
        file: String,
    },
}

/// An event's encoding, to compare events.
pub fn event_bytes(event: &Event) -> Vec<u8> {
    rmp_serde::to_vec_named(event).unwrap_or_else(|e| panic!("encode: {e}"))
}

/// What opening must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Opens with this last sequence, having cut a torn tail here (file, offset).
    Ok {
        /// The last sequence.
        last: u64,
        /// Where a torn tail was cut (without repair).
        cut: Option<(String, u64)>,
    },
    /// Refused: damage here.
    Corrupt {
        /// The file.
        file: String,
        /// The offset.
        offset: u64,
    },
    /// Refused: a segment of another version.
    Unsupported {
        /// The file.
        file: String,
    },
}

fn name(first: u64) -> String {
    format!("{first:020}.log")
}

/// A record of the log, where it lives after recovery.
#[derive(Debug, Clone)]
struct Placed {
    file: String,
    encoding: Encoding,
    record: Record,
}

/// Walks the segments as recovery (`read == false`) or as the read-only
/// reader (`read == true`) must: the records that are the log, and how the
/// walk ends.
fn walk(segments: &[(u64, Vec<u8>)], repair: bool, read: bool) -> (Vec<Placed>, Expect) {
    let mut names: Vec<u64> = segments.iter().map(|(n, _)| *n).collect();
    let mut placed = Vec::new();
    let mut expected = 1u64;
    let mut cut = None;
    for (i, (seg_name, b)) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        let file = name(*seg_name);
        let corrupt = |offset: u64| Expect::Corrupt {
            file: file.clone(),
            offset,
        };
        let mut file_now = file.clone();
        let encoding;
        if read {
            if i > 0 && *seg_name != expected {
                return (placed, corrupt(0));
            }
            if b.len() < SEGMENT_HEADER_LEN {
                if is_last {
                    break; // being created: nothing visible
                }
                return (placed, corrupt(0));
            }
            match header(b) {
                Header::Bad => return (placed, corrupt(0)),
                Header::Unsupported => return (placed, Expect::Unsupported { file }),
                Header::Ok(first, _) if first != *seg_name || first != expected => {
                    return (placed, corrupt(0));
                }
                Header::Ok(_, e) => encoding = e,
            }
        } else {
            let h = header(b);
            let problem = match h {
                Header::Unsupported => return (placed, Expect::Unsupported { file }),
                Header::Ok(first, _) if first == expected && *seg_name == expected => false,
                Header::Ok(first, _) if first == expected => {
                    if !repair {
                        return (placed, corrupt(0));
                    }
                    if names.contains(&expected) {
                        true
                    } else {
                        names[i] = expected;
                        file_now = name(expected);
                        false
                    }
                }
                Header::Ok(..) | Header::Bad => true,
            };
            if problem {
                let torn = is_last && b.len() < SEGMENT_HEADER_LEN;
                if !torn && !repair {
                    return (placed, corrupt(0));
                }
                if torn {
                    cut = Some((file.clone(), 0));
                }
                break;
            }
            let Header::Ok(_, e) = h else {
                unreachable!("a header without a problem is valid")
            };
            encoding = e;
        }
        let c = chain(b, expected);
        expected += c.records.len() as u64;
        placed.extend(c.records.into_iter().map(|record| Placed {
            file: file_now.clone(),
            encoding,
            record,
        }));
        if c.stop < b.len() {
            let mid = !is_last || intact_after(b, c.stop, expected + 1);
            if mid && (read || !repair) {
                return (placed, corrupt(c.stop as u64));
            }
            if !mid && !read {
                cut = Some((file.clone(), c.stop as u64));
            }
            break;
        }
    }
    (
        placed,
        Expect::Ok {
            last: expected - 1,
            cut,
        },
    )
}

/// What `FileStore::open` (with or without `repair`) must do.
pub fn expect_open(segments: &[(u64, Vec<u8>)], repair: bool) -> Expect {
    walk(segments, repair, false).1
}

/// The items of reading records: each decoded; a record that is not an
/// event ends the read.
fn items(placed: &[Placed]) -> (Vec<Item>, bool) {
    let mut out = Vec::new();
    for p in placed {
        match decode(&p.record.payload, p.encoding) {
            Decoded::Event(event) => out.push(Item::Event {
                seq: p.record.seq,
                timestamp: p.record.timestamp,
                event: event_bytes(&event),
            }),
            Decoded::Unknown => out.push(Item::Unknown { seq: p.record.seq }),
            Decoded::Bad => {
                out.push(Item::Corrupt {
                    file: p.file.clone(),
                    offset: p.record.offset as u64,
                });
                return (out, true);
            }
        }
    }
    (out, false)
}

/// What `FileLogReader::read(1)` must give on the untouched segments.
pub fn expect_read(segments: &[(u64, Vec<u8>)]) -> Vec<Item> {
    let (placed, end) = walk(segments, false, true);
    let (mut out, stopped) = items(&placed);
    if !stopped {
        match end {
            Expect::Ok { .. } => {}
            Expect::Corrupt { file, offset } => out.push(Item::Corrupt { file, offset }),
            Expect::Unsupported { file } => out.push(Item::Unsupported { file }),
        }
    }
    out
}

/// What reading a store opened without repair must give.
pub fn expect_store_read(segments: &[(u64, Vec<u8>)], last: u64) -> Vec<Item> {
    let (placed, _) = walk(segments, false, false);
    let placed: Vec<Placed> = placed
        .into_iter()
        .filter(|p| p.record.seq <= last)
        .collect();
    items(&placed).0
}

/// What reading a store opened with repair must give.
pub fn expect_store_read_repaired(segments: &[(u64, Vec<u8>)], last: u64) -> Vec<Item> {
    let (placed, _) = walk(segments, true, false);
    let placed: Vec<Placed> = placed
        .into_iter()
        .filter(|p| p.record.seq <= last)
        .collect();
    items(&placed).0
}

/// A snapshot file for `seq` holding `data`, with the right checksum.
pub fn snapshot_file(seq: u64, data: &[u8]) -> Vec<u8> {
    let mut file = b"SWRMSNAP".to_vec();
    file.extend_from_slice(&1u32.to_le_bytes());
    file.extend_from_slice(&seq.to_le_bytes());
    file.extend_from_slice(&(data.len() as u64).to_le_bytes());
    file.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());
    file.extend_from_slice(data);
    file
}

/// The data of a valid snapshot file named for `seq`, if it is one.
pub fn snapshot_data(seq: u64, file: &[u8]) -> Option<&[u8]> {
    if file.len() < 32 || &file[0..8] != b"SWRMSNAP" || u32_at(file, 8) != 1 {
        return None;
    }
    if u64_at(file, 12) != seq || u64_at(file, 20) != (file.len() - 32) as u64 {
        return None;
    }
    let data = &file[32..];
    (crc32c::crc32c(data) == u32_at(file, 28)).then_some(data)
}
