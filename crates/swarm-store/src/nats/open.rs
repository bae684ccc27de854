//! Opening a JetStream stream safely when several processes do it at once.
//!
//! `get_or_create_stream` of async-nats asks for the stream and creates it
//! when the server says it does not exist. Two processes starting at the same
//! moment on a new swarm both hear "not found", both create, and the second
//! create fails with "stream name already in use" (10058) or, depending on
//! which check the server makes first, "subjects overlap with an existing
//! stream" (10065), though the stream it wanted now exists. [`open_stream`]
//! takes those two answers for what they are, a lost race, and asks again.

use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{CreateStreamError, CreateStreamErrorKind};
use async_nats::jetstream::{self, stream};

/// How many times a create that lost the race is followed by another look.
const RACE_RETRIES: u32 = 5;

/// Whether `error` says another process created the stream first.
pub(crate) fn lost_race(error: &CreateStreamError) -> bool {
    match error.kind() {
        CreateStreamErrorKind::JetStream(e) => matches!(
            e.error_code(),
            ErrorCode::STREAM_NAME_EXIST | ErrorCode::STREAM_SUBJECT_OVERLAP
        ),
        _ => false,
    }
}

/// Opens the stream `config.name`, creating it with `config` if it does not
/// exist. Idempotent under concurrency: when another process creates the
/// stream between this one's lookup and its create, the create's refusal is
/// taken as the race it is and the lookup repeated (a few times, a few
/// milliseconds apart), so every process ends up bound to the one stream.
///
/// An existing stream is returned as it is: its configuration is not
/// compared with `config` (callers that need some setting check it).
///
/// # Errors
///
/// What the server answers otherwise (no JetStream, a stream of another name
/// owning these subjects after the retries, a timeout), unchanged.
pub async fn open_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, CreateStreamError> {
    let mut attempt = 0;
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(stream) => return Ok(stream),
            Err(error) if lost_race(&error) && attempt < RACE_RETRIES => {
                attempt += 1;
                tracing::debug!(stream = %config.name, attempt, "another process created the stream first: looking again");
                tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// The stream `name`, or `None` if it does not exist.
pub(crate) async fn existing_stream(
    js: &jetstream::Context,
    name: &str,
) -> Result<Option<stream::Stream>, jetstream::context::GetStreamError> {
    match js.get_stream(name).await {
        Ok(stream) => Ok(Some(stream)),
        Err(error) => match error.kind() {
            jetstream::context::GetStreamErrorKind::JetStream(e)
                if e.error_code() == ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(None)
            }
            _ => Err(error),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn refusal(code: u64, err_code: u64, description: &str) -> CreateStreamError {
        let error: async_nats::jetstream::Error = serde_json::from_value(serde_json::json!({
            "code": code,
            "err_code": err_code,
            "description": description,
        }))
        .unwrap();
        CreateStreamError::from(CreateStreamErrorKind::JetStream(error))
    }

    #[test]
    fn only_the_two_answers_of_a_lost_race_are_retried() {
        assert!(lost_race(&refusal(
            400,
            10065,
            "subjects overlap with an existing stream"
        )));
        assert!(lost_race(&refusal(
            400,
            10058,
            "stream name already in use"
        )));
        assert!(!lost_race(&refusal(503, 10076, "jetstream not enabled")));
        assert!(!lost_race(&CreateStreamError::from(
            CreateStreamErrorKind::TimedOut
        )));
    }
}
