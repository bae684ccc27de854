//! The on-disk format of the file log, version 2 (version 1 still reads).
//!
//! A segment file is named after its first sequence (`00000000000000000001.log`)
//! and starts with a header:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `SWRMLOG\0` |
//! | 4 | format version, little-endian (2; 1 in segments of earlier builds) |
//! | 2 | event encoding, little-endian: 2 = positional ([`codec`](super::codec)), 1 = MessagePack with named fields |
//! | 2 | schema revision of the encoding, little-endian (0 for encoding 1) |
//! | 8 | first sequence of the segment |
//! | 4 | CRC32C of the 24 bytes above |
//!
//! then records, each framed as
//!
//! | bytes | field |
//! |---|---|
//! | 4 | body length `n`, little-endian |
//! | 4 | CRC32C of the 4 length bytes followed by the body |
//! | 8 | body: sequence |
//! | 8 | body: timestamp, microseconds since the epoch |
//! | n - 16 | body: the event, in the segment's encoding |
//!
//! New segments are written in encoding 2: the event's kind as a small tag,
//! then its fields in order, without names (see [`codec`](super::codec) for
//! the layout and how a schema revision may grow it). Encoding 1, the only
//! one of format version 1 (whose 4-byte encoding field reads the same as
//! encoding 1 with revision 0), is MessagePack with named fields: a field
//! added with `#[serde(default)]` is absent from old records and defaulted.
//! A store whose older segments are version 1 reads across into newer ones;
//! a version 1 segment is never appended to (opening the store starts a
//! version 2 segment after it). A format version or encoding this build does
//! not know is [`StoreError::UnsupportedVersion`]: a build that writes a new
//! encoding writes a new format version with it.

use swarm_core::{Event, EventKind, Timestamp};

use super::codec;

use crate::error::{Result, StoreError};

/// The magic bytes a segment starts with.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"SWRMLOG\0";
/// The format version this build writes, and the newest it reads.
pub(crate) const FORMAT_VERSION: u32 = 2;
/// The format version of earlier builds: encoding 1 only.
pub(crate) const FORMAT_VERSION_1: u32 = 1;
/// The event encoding id of MessagePack with named fields.
pub(crate) const ENCODING_MSGPACK_NAMED: u16 = 1;
/// The event encoding id of the positional encoding.
pub(crate) const ENCODING_POSITIONAL: u16 = 2;
/// The length of a segment header.
pub(crate) const SEGMENT_HEADER_LEN: usize = 28;
/// The length of a record's frame header (length + CRC).
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// The sequence and timestamp at the start of each record body.
pub(crate) const BODY_PREFIX_LEN: usize = 16;
/// Records longer than this are taken as damage, not data.
pub(crate) const MAX_BODY_LEN: u32 = 256 * 1024 * 1024;

/// How the events of a segment are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// Encoding 1: MessagePack with named fields (every version 1 segment).
    MsgpackNamed,
    /// Encoding 2, written with this schema revision.
    Positional { revision: u16 },
}

impl Encoding {
    /// The encoding new segments are written in.
    pub(crate) const CURRENT: Encoding = Encoding::Positional {
        revision: codec::SCHEMA_REVISION,
    };
}

/// The header of a new segment starting at `first_seq`.
pub(crate) fn segment_header(first_seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    // `Encoding::CURRENT`.
    let mut encoding = [0u8; 4];
    encoding[0..2].copy_from_slice(&ENCODING_POSITIONAL.to_le_bytes());
    encoding[2..4].copy_from_slice(&codec::SCHEMA_REVISION.to_le_bytes());
    header_of(FORMAT_VERSION, encoding, first_seq)
}

/// The header of a format version 1 segment, as earlier builds wrote it.
#[cfg(test)]
pub(crate) fn segment_header_v1(first_seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    header_of(
        FORMAT_VERSION_1,
        u32::from(ENCODING_MSGPACK_NAMED).to_le_bytes(),
        first_seq,
    )
}

fn header_of(version: u32, encoding: [u8; 4], first_seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&version.to_le_bytes());
    h[12..16].copy_from_slice(&encoding);
    h[16..24].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// What a segment header says, or why it is unreadable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header {
    Ok {
        first_seq: u64,
        encoding: Encoding,
    },
    /// A format version (or, within a known version, an event encoding)
    /// this build does not read: the version found.
    Version(u32),
    Bad(&'static str),
}

pub(crate) fn parse_header(h: &[u8]) -> Header {
    if h.len() < SEGMENT_HEADER_LEN {
        return Header::Bad("segment header is incomplete");
    }
    if h[0..8] != SEGMENT_MAGIC {
        return Header::Bad("segment header has the wrong magic bytes");
    }
    if crc32c::crc32c(&h[0..24]) != u32_at(h, 24) {
        return Header::Bad("segment header checksum mismatch");
    }
    let version = u32_at(h, 8);
    let encoding = match version {
        FORMAT_VERSION_1 if u32_at(h, 12) == u32::from(ENCODING_MSGPACK_NAMED) => {
            Encoding::MsgpackNamed
        }
        FORMAT_VERSION => {
            let id = u16::from_le_bytes([h[12], h[13]]);
            let revision = u16::from_le_bytes([h[14], h[15]]);
            match id {
                ENCODING_POSITIONAL => Encoding::Positional { revision },
                ENCODING_MSGPACK_NAMED if revision == 0 => Encoding::MsgpackNamed,
                _ => return Header::Version(version),
            }
        }
        _ => return Header::Version(version),
    };
    Header::Ok {
        first_seq: u64_at(h, 16),
        encoding,
    }
}

/// Whether the segment file at `path` is in [`Encoding::CURRENT`]: the
/// writer never appends to one that is not (written by another build), it
/// starts a new segment.
pub(crate) fn in_current_encoding(path: &std::path::Path) -> std::io::Result<bool> {
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    std::io::Read::read_exact(&mut std::fs::File::open(path)?, &mut header)?;
    Ok(matches!(
        parse_header(&header),
        Header::Ok { encoding, .. } if encoding == Encoding::CURRENT
    ))
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Appends the frame of `event` (in [`Encoding::CURRENT`]) to `buf` with its sequence and timestamp left
/// zero and no checksum yet ([`seal`] fills them), so that encoding can happen
/// before a sequence is assigned.
pub(crate) fn encode_unsealed(buf: &mut Vec<u8>, event: &Event) -> Result<()> {
    let at = buf.len();
    buf.extend_from_slice(&[0u8; FRAME_HEADER_LEN + BODY_PREFIX_LEN]);
    if let Err(message) = codec::encode(buf, event) {
        buf.truncate(at);
        return Err(StoreError::Encode {
            what: "event",
            message,
        });
    }
    let body_len = buf.len() - at - FRAME_HEADER_LEN;
    let Ok(body_len) = u32::try_from(body_len) else {
        buf.truncate(at);
        return Err(StoreError::Encode {
            what: "event",
            message: format!("the encoded event is {body_len} bytes, over the 4 GiB record limit"),
        });
    };
    if body_len > MAX_BODY_LEN {
        buf.truncate(at);
        return Err(StoreError::Encode {
            what: "event",
            message: format!(
                "the encoded event is {body_len} bytes, over the {MAX_BODY_LEN}-byte record limit"
            ),
        });
    }
    buf[at..at + 4].copy_from_slice(&body_len.to_le_bytes());
    Ok(())
}

/// Fills in sequences (from `first_seq`), the timestamp and the checksums of
/// the unsealed frames in `buf`; returns how many records it sealed.
pub(crate) fn seal(buf: &mut [u8], first_seq: u64, timestamp: Timestamp) -> u64 {
    let mut at = 0;
    let mut seq = first_seq;
    while at + FRAME_HEADER_LEN <= buf.len() {
        let len = u32_at(buf, at) as usize;
        let body = at + FRAME_HEADER_LEN;
        buf[body..body + 8].copy_from_slice(&seq.to_le_bytes());
        buf[body + 8..body + 16].copy_from_slice(&timestamp.as_micros().to_le_bytes());
        let crc = frame_crc(&buf[at..at + 4], &buf[body..body + len]);
        buf[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        at = body + len;
        seq += 1;
    }
    seq - first_seq
}

/// The CRC32C of a record's length bytes followed by its body.
pub(crate) fn frame_crc(len_bytes: &[u8], body: &[u8]) -> u32 {
    // The 4 length bytes by table: a call of the hardware routine costs
    // more than its work on so few bytes (half the checksum time of a
    // 50-byte record, by callgrind).
    crc32c::crc32c_append(crc32c_small(len_bytes), body)
}

/// CRC32C (Castagnoli, reflected 0x82F63B78), a byte at a time.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// `crc32c::crc32c(bytes)`, by table: for a few bytes.
fn crc32c_small(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc = CRC32C_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// A whole, checksummed record found in a byte buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame {
    /// Offset one past the record.
    pub(crate) end: usize,
}

/// Why the bytes at an offset are not a whole record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The buffer ends inside the record (a torn write).
    Torn(&'static str),
    /// The record is all there but wrong.
    Bad(String),
}

impl FrameError {
    pub(crate) fn reason(&self) -> String {
        match self {
            FrameError::Torn(r) => (*r).to_owned(),
            FrameError::Bad(r) => r.clone(),
        }
    }
}

/// Parses and checks the record at `at` in `buf`, which must carry `expected_seq`.
pub(crate) fn parse_frame(buf: &[u8], at: usize, expected_seq: u64) -> Result<Frame, FrameError> {
    if buf.len() - at < FRAME_HEADER_LEN {
        return Err(FrameError::Torn("the log ends inside a record header"));
    }
    let len = u32_at(buf, at);
    if len > MAX_BODY_LEN {
        return Err(FrameError::Bad(format!(
            "record length {len} is over the {MAX_BODY_LEN}-byte limit"
        )));
    }
    if (len as usize) < BODY_PREFIX_LEN {
        return Err(FrameError::Bad(format!("record length {len} is too short")));
    }
    let body = at + FRAME_HEADER_LEN;
    let end = body + len as usize;
    if end > buf.len() {
        return Err(FrameError::Torn("the log ends inside a record"));
    }
    let crc = u32_at(buf, at + 4);
    if frame_crc(&buf[at..at + 4], &buf[body..end]) != crc {
        return Err(FrameError::Bad("record checksum mismatch".to_owned()));
    }
    let seq = u64_at(buf, body);
    if seq != expected_seq {
        return Err(FrameError::Bad(format!(
            "record has sequence {seq} where {expected_seq} was expected"
        )));
    }
    Ok(Frame { end })
}

/// Whether an intact record (whole, its checksum right, a sequence from
/// `next_seq` on) starts anywhere after `at`, where the record before it is
/// damaged or cut short: then the damage is not a torn tail. A torn tail is
/// only the bytes after the last write, so nothing intact can follow it.
///
/// Every offset is tried, not only where the damaged record's length points:
/// the length itself may be what is damaged.
pub(crate) fn intact_record_after(buf: &[u8], at: usize, next_seq: u64) -> bool {
    let min_record = FRAME_HEADER_LEN + BODY_PREFIX_LEN;
    let Some(room) = buf.len().checked_sub(at) else {
        return false;
    };
    // No later record can carry a sequence beyond what fits in the bytes left.
    let max_seq = next_seq.saturating_add((room / min_record) as u64);
    let mut o = at + 1;
    while o + min_record <= buf.len() {
        let len = u32_at(buf, o);
        if len as usize >= BODY_PREFIX_LEN
            && len <= MAX_BODY_LEN
            && o + FRAME_HEADER_LEN + len as usize <= buf.len()
        {
            let seq = u64_at(buf, o + FRAME_HEADER_LEN);
            if (next_seq..=max_seq).contains(&seq) && parse_frame(buf, o, seq).is_ok() {
                return true;
            }
        }
        o += 1;
    }
    false
}

/// Why an event payload did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// A well-formed event of a kind this version does not know (written by
    /// a newer version): its name.
    Unknown(String),
    /// Not an event.
    Bad(String),
}

/// Decodes the event payloads of one segment, in its encoding.
#[derive(Debug)]
pub(crate) struct EventDecoder {
    encoding: Encoding,
    interner: codec::Interner,
}

impl EventDecoder {
    pub(crate) fn new(encoding: Encoding) -> Self {
        EventDecoder {
            encoding,
            interner: codec::Interner::default(),
        }
    }

    /// Decodes an event payload.
    pub(crate) fn decode(&mut self, payload: &[u8]) -> Result<Event, DecodeError> {
        match self.encoding {
            Encoding::Positional { revision } => {
                codec::decode(payload, revision, &mut self.interner)
            }
            Encoding::MsgpackNamed => decode_named(payload),
        }
    }
}

/// Decodes an event payload of encoding 1.
pub(crate) fn decode_named(payload: &[u8]) -> Result<Event, DecodeError> {
    rmp_serde::from_slice(payload).map_err(|e| {
        // Events are tagged by name: `{"event": name, "data": ..}`.
        #[derive(serde::Deserialize)]
        struct Tagged {
            event: String,
        }
        match rmp_serde::from_slice::<Tagged>(payload) {
            Ok(tagged) if tagged.event.parse::<EventKind>().is_err() => {
                DecodeError::Unknown(tagged.event)
            }
            _ => DecodeError::Bad(format!("event could not be decoded: {e}")),
        }
    })
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
