//! Shared helpers of the store's integration tests: the on-disk format as the
//! tests' own model (the store keeps its format module private; these mirror
//! its documented layout, so a change to the format breaks a test on purpose).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

/// The length of a segment header.
pub const SEGMENT_HEADER_LEN: usize = 28;
/// The length of a record's frame header (length + CRC).
pub const FRAME_HEADER_LEN: usize = 8;
/// The sequence and timestamp at the start of each record body.
pub const BODY_PREFIX_LEN: usize = 16;

/// The header of a segment starting at `first_seq`: magic, version 1,
/// encoding 1 (MessagePack, named fields), first sequence, CRC32C.
pub fn segment_header(first_seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(b"SWRMLOG\0");
    h[8..12].copy_from_slice(&1u32.to_le_bytes());
    h[12..16].copy_from_slice(&1u32.to_le_bytes());
    h[16..24].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Appends one framed record (`seq`, `timestamp`, `payload`) to `log`.
pub fn push_record(log: &mut Vec<u8>, seq: u64, timestamp: u64, payload: &[u8]) {
    let mut body = Vec::with_capacity(BODY_PREFIX_LEN + payload.len());
    body.extend_from_slice(&seq.to_le_bytes());
    body.extend_from_slice(&timestamp.to_le_bytes());
    body.extend_from_slice(payload);
    let len = u32::try_from(body.len()).unwrap().to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), &body);
    log.extend_from_slice(&len);
    log.extend_from_slice(&crc.to_le_bytes());
    log.extend_from_slice(&body);
}

/// The start offset of every record of a segment, and the end of the last.
pub fn record_bounds(bytes: &[u8]) -> Vec<usize> {
    let mut ends = vec![SEGMENT_HEADER_LEN];
    let mut at = SEGMENT_HEADER_LEN;
    while at + FRAME_HEADER_LEN <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += FRAME_HEADER_LEN + len;
        if at > bytes.len() {
            break;
        }
        ends.push(at);
    }
    ends
}
