//! A bounded tail of a byte stream: what `swarm run` keeps of a job's stdout
//! and stderr, in memory that does not grow with what the job prints.

use std::collections::VecDeque;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes read from the stream per call; memory is this plus the tail.
const CHUNK: usize = 16 * 1024;

/// The last `limit` bytes pushed into it, and how many there were in all.
#[derive(Debug)]
pub(crate) struct Tail {
    kept: VecDeque<u8>,
    limit: usize,
    total: u64,
}

impl Tail {
    /// An empty tail that keeps at most `limit` bytes.
    pub(crate) fn new(limit: usize) -> Self {
        Tail {
            kept: VecDeque::with_capacity(limit),
            limit,
            total: 0,
        }
    }

    /// Appends `bytes`, dropping the oldest so that at most `limit` stay.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.total = self.total.saturating_add(bytes.len() as u64);
        let bytes = &bytes[bytes.len().saturating_sub(self.limit)..];
        let overflow = (self.kept.len() + bytes.len()).saturating_sub(self.limit);
        self.kept.drain(..overflow);
        self.kept.extend(bytes);
    }

    /// How many bytes are kept (never more than the limit).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.kept.len()
    }

    /// The bytes the buffer can hold without growing: it is allocated once.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.kept.capacity()
    }

    /// How many bytes were pushed in all.
    #[cfg(test)]
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// The kept bytes, as lossy UTF-8 (a multi-byte character cut at the start
    /// of the tail shows as U+FFFD).
    pub(crate) fn to_string_lossy(&self) -> String {
        let (a, b) = self.kept.as_slices();
        let mut bytes = Vec::with_capacity(a.len() + b.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Reads `reader` to its end, keeping the last `limit` bytes.
pub(crate) async fn read_tail<R: AsyncRead + Unpin>(
    mut reader: R,
    limit: usize,
) -> io::Result<Tail> {
    let mut tail = Tail::new(limit);
    let mut chunk = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) => return Ok(tail),
            Ok(n) => tail.push(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keeps_the_last_bytes_whatever_the_chunk_sizes() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for limit in [1, 7, 100, 2048] {
            for step in [1, 3, 99, 2048, 5000, 10_000] {
                let mut tail = Tail::new(limit);
                for chunk in data.chunks(step) {
                    tail.push(chunk);
                    assert!(tail.len() <= limit, "limit {limit} step {step}");
                }
                let (a, b) = tail.kept.as_slices();
                assert_eq!([a, b].concat(), data[data.len() - limit..]);
                assert_eq!(tail.total(), data.len() as u64);
            }
        }
    }

    #[tokio::test]
    async fn a_200_mb_stream_keeps_only_its_last_bytes() {
        const LIMIT: usize = 2048;
        const BIG: u64 = 200_000_000;
        let stream = tokio::io::repeat(b'x')
            .take(BIG)
            .chain(&b"...the end\n"[..]);
        let tail = read_tail(stream, LIMIT).await.unwrap();
        assert_eq!(tail.total(), BIG + 11);
        assert_eq!(tail.len(), LIMIT);
        // Allocated once at the limit, never grown while 200 MB went through.
        assert!(tail.capacity() < 2 * LIMIT, "capacity {}", tail.capacity());
        let text = tail.to_string_lossy();
        assert!(text.ends_with("xxx...the end\n"), "{text:?}");
        assert_eq!(text.len(), LIMIT);
    }
}
