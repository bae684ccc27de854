//! The byte-level primitives of the snapshot layout: LEB128 varints,
//! little-endian fixed integers, length-prefixed bytes and strings.
//!
//! The reader never trusts a length: every read checks what is left, and a
//! count is refused when the bytes left could not hold that many items, so a
//! corrupt count cannot make it allocate more than the input's size.

use std::fmt;

/// Why the bytes of a snapshot could not be decoded: what was being read, at
/// which byte of the snapshot's data, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    pub(crate) what: &'static str,
    pub(crate) at: usize,
    pub(crate) problem: Problem,
}

/// What a read gives: the value, or why the bytes could not be decoded. The
/// error is boxed so that a read returns in registers: a snapshot of 100 000
/// tasks makes about two million of them, and none fails.
pub(crate) type Read<T> = Result<T, Box<DecodeError>>;

/// What was wrong with the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    /// The data ends before the value does.
    Truncated,
    /// A varint longer than 10 bytes, or over 64 bits.
    Overlong,
    /// A count larger than the bytes left could hold.
    Count(u64),
    /// A string that is not UTF-8.
    Utf8,
    /// A value out of its range (an unknown status, a flag bit not defined).
    Invalid(u64),
    /// Bytes left over after the last section.
    Trailing(usize),
    /// A value that contradicts another (named in the message).
    Inconsistent(String),
}

impl DecodeError {
    /// The error, boxed (see [`Read`]).
    #[cold]
    pub(crate) fn at(what: &'static str, at: usize, problem: Problem) -> Box<DecodeError> {
        Box::new(DecodeError { what, at, problem })
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, at) = (self.what, self.at);
        match &self.problem {
            Problem::Truncated => write!(f, "the data ends inside {what} (byte {at})"),
            Problem::Overlong => write!(f, "{what} at byte {at} is not a valid varint"),
            Problem::Count(n) => write!(
                f,
                "{what} at byte {at} counts {n} items, more than the bytes left can hold"
            ),
            Problem::Utf8 => write!(f, "{what} at byte {at} is not UTF-8"),
            Problem::Invalid(v) => write!(f, "{what} at byte {at} has the invalid value {v}"),
            Problem::Trailing(n) => write!(f, "{n} bytes follow the last section (byte {at})"),
            Problem::Inconsistent(why) => write!(f, "{what} at byte {at}: {why}"),
        }
    }
}

/// Appends values to a buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(bytes),
        }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }

    pub(crate) fn u64_le(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    pub(crate) fn len(&mut self, n: usize) {
        self.varint(n as u64);
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.buf.extend_from_slice(b);
    }

    pub(crate) fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
}

/// Reads values from a snapshot's data, front to back.
#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8], pos: usize) -> Self {
        Reader { data, pos }
    }

    #[inline]
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    #[inline]
    fn left(&self) -> usize {
        self.data.len() - self.pos
    }

    #[cold]
    pub(crate) fn error(&self, what: &'static str, problem: Problem) -> Box<DecodeError> {
        DecodeError::at(what, self.pos, problem)
    }

    #[inline]
    pub(crate) fn u8(&mut self, what: &'static str) -> Read<u8> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or_else(|| self.error(what, Problem::Truncated))?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub(crate) fn bool(&mut self, what: &'static str) -> Read<bool> {
        let at = self.pos;
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::at(what, at, Problem::Invalid(u64::from(v)))),
        }
    }

    #[inline]
    pub(crate) fn u64_le(&mut self, what: &'static str) -> Read<u64> {
        let bytes = self.take(8, what)?;
        let mut raw = [0u8; 8];
        raw.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(raw))
    }

    #[inline]
    pub(crate) fn varint(&mut self, what: &'static str) -> Read<u64> {
        // Most values (counts, flags, small numbers) take one byte.
        if let Some(&b) = self.data.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        self.varint_long(what)
    }

    /// A varint of more than one byte (or a truncated one).
    fn varint_long(&mut self, what: &'static str) -> Read<u64> {
        let start = self.pos;
        let mut value = 0u64;
        let mut shift = 0u32;
        loop {
            let Some(&b) = self.data.get(self.pos) else {
                return Err(self.error(what, Problem::Truncated));
            };
            self.pos += 1;
            // The tenth byte may carry only the top bit of a u64, and ends it.
            if shift == 63 && b > 1 {
                return Err(DecodeError::at(what, start, Problem::Overlong));
            }
            value |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(value);
            }
            shift += 7;
        }
    }

    /// A varint that must fit a u32.
    #[inline]
    pub(crate) fn varint_u32(&mut self, what: &'static str) -> Read<u32> {
        let at = self.pos;
        let v = self.varint(what)?;
        u32::try_from(v).map_err(|_| DecodeError::at(what, at, Problem::Invalid(v)))
    }

    /// A count of items that take at least `min_item_bytes` each.
    #[inline]
    pub(crate) fn count(&mut self, what: &'static str, min_item_bytes: usize) -> Read<usize> {
        let at = self.pos;
        let n = self.varint(what)?;
        match usize::try_from(n) {
            Ok(count) if count.saturating_mul(min_item_bytes.max(1)) <= self.left() => Ok(count),
            _ => Err(DecodeError::at(what, at, Problem::Count(n))),
        }
    }

    /// Moves past `n` bytes.
    #[inline]
    pub(crate) fn skip(&mut self, n: usize, what: &'static str) -> Read<()> {
        self.take(n, what).map(|_| ())
    }

    #[inline]
    fn take(&mut self, n: usize, what: &'static str) -> Read<&'a [u8]> {
        if n > self.left() {
            return Err(self.error(what, Problem::Truncated));
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    #[inline]
    pub(crate) fn bytes(&mut self, what: &'static str) -> Read<&'a [u8]> {
        let n = self.count(what, 1)?;
        self.take(n, what)
    }

    #[inline]
    pub(crate) fn str(&mut self, what: &'static str) -> Read<&'a str> {
        let at = self.pos;
        let bytes = self.bytes(what)?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::at(what, at, Problem::Utf8))
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(&self) -> Read<()> {
        match self.left() {
            0 => Ok(()),
            n => Err(self.error("the end", Problem::Trailing(n))),
        }
    }
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn varints_round_trip_at_every_width() {
        let values = [
            0,
            1,
            127,
            128,
            300,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ];
        let mut w = Writer::default();
        for v in values {
            w.varint(v);
        }
        let mut r = Reader::new(&w.buf, 0);
        for v in values {
            assert_eq!(r.varint("v").unwrap(), v);
        }
        r.finish().unwrap();
    }

    #[test]
    fn an_overlong_or_cut_varint_is_an_error() {
        let eleven = [0xffu8; 11];
        assert_eq!(
            Reader::new(&eleven, 0).varint("v").unwrap_err().problem,
            Problem::Overlong
        );
        // Ten bytes whose last carries more than the 64th bit.
        let mut over = [0xffu8; 10];
        over[9] = 0x02;
        assert_eq!(
            Reader::new(&over, 0).varint("v").unwrap_err().problem,
            Problem::Overlong
        );
        assert_eq!(
            Reader::new(&[0x80], 0).varint("v").unwrap_err().problem,
            Problem::Truncated
        );
    }

    #[test]
    fn a_count_the_bytes_left_cannot_hold_is_refused_before_allocating() {
        let mut w = Writer::default();
        w.varint(1 << 40);
        w.u8(0);
        let err = Reader::new(&w.buf, 0).count("tasks", 8).unwrap_err();
        assert_eq!(err.problem, Problem::Count(1 << 40));
        assert!(err.to_string().contains("tasks"), "{err}");
    }

    #[test]
    fn strings_must_be_utf8() {
        let mut w = Writer::default();
        w.bytes(&[0xff, 0xfe]);
        assert_eq!(
            Reader::new(&w.buf, 0).str("kind").unwrap_err().problem,
            Problem::Utf8
        );
    }
}
