//! How NATS failures become [`StoreError`]s.
//!
//! The store's error enum has no NATS-specific variant: a failure to reach or
//! use the server is reported as [`StoreError::Io`] whose path names the
//! server and the stream or bucket, with an [`io::ErrorKind`] that says what
//! happened (`TimedOut`, `ConnectionRefused`, `NotFound`, `InvalidData`, ...).

use std::fmt::Display;
use std::io;

use crate::error::StoreError;

/// A NATS error on `what` (a URL, stream or bucket).
pub(crate) fn nats_error(what: &str, kind: io::ErrorKind, message: impl Display) -> StoreError {
    StoreError::Io {
        path: format!("nats {what}").into(),
        source: io::Error::new(kind, message.to_string()),
    }
}

/// A NATS error whose kind is guessed from its message.
pub(crate) fn nats_other(what: &str, message: impl Display) -> StoreError {
    let message = message.to_string();
    let lower = message.to_ascii_lowercase();
    let kind = if lower.contains("timed out") || lower.contains("timeout") {
        io::ErrorKind::TimedOut
    } else if lower.contains("refused") || lower.contains("no servers") {
        io::ErrorKind::ConnectionRefused
    } else if lower.contains("not found") || lower.contains("no responders") {
        io::ErrorKind::NotFound
    } else if lower.contains("broken pipe") || lower.contains("disconnected") {
        io::ErrorKind::BrokenPipe
    } else if lower.contains("authorization") || lower.contains("permission") {
        io::ErrorKind::PermissionDenied
    } else {
        io::ErrorKind::Other
    };
    nats_error(what, kind, message)
}

pub(crate) fn invalid_input(what: &str, message: impl Display) -> StoreError {
    nats_error(what, io::ErrorKind::InvalidInput, message)
}

pub(crate) fn invalid_data(what: &str, message: impl Display) -> StoreError {
    nats_error(what, io::ErrorKind::InvalidData, message)
}

/// The stream's real last sequence from a "wrong last sequence: N" error.
pub(crate) fn actual_from_wrong_last_sequence(message: &str) -> Option<u64> {
    let at = message.find("wrong last sequence")?;
    let rest = &message[at..];
    let digits: String = rest
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_actual_sequence() {
        assert_eq!(
            actual_from_wrong_last_sequence("wrong last sequence: 17 (code 400)"),
            Some(17)
        );
        assert_eq!(actual_from_wrong_last_sequence("something else 5"), None);
    }

    #[test]
    fn timeouts_are_timed_out() {
        let StoreError::Io { source, path } = nats_other("nats://x stream S", "request timed out")
        else {
            panic!("not io");
        };
        assert_eq!(source.kind(), io::ErrorKind::TimedOut);
        assert!(path.display().to_string().contains("stream S"));
    }
}
