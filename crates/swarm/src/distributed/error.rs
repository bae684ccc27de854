//! The errors of the distributed task queue.

/// Why a distributed-queue operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DistributedError {
    /// The NATS server refused or did not answer a request.
    #[error("nats {what} failed: {message}{hint}")]
    Nats {
        /// What was being done.
        what: String,
        /// The client's message.
        message: String,
        /// A hint at the likely cause, where the message names one (no
        /// server answered, no JetStream there); empty otherwise.
        hint: &'static str,
    },
    /// A task could not be encoded.
    #[error("task {task} could not be encoded: {message}")]
    Encode {
        /// The task id.
        task: String,
        /// The encoder's message.
        message: String,
    },
    /// The event log failed.
    #[error(transparent)]
    Store(#[from] swarm_store::StoreError),
}

impl DistributedError {
    pub(crate) fn nats(what: impl Into<String>, e: impl std::fmt::Display) -> Self {
        let message = e.to_string();
        DistributedError::Nats {
            what: what.into(),
            hint: hint_for(&message),
            message,
        }
    }
}

/// The hint for a client message: "is JetStream on?" only where the answer
/// says the server has none or none answered, never for a refusal of the
/// request itself (a subject overlap, a bad name), which it would mislead.
fn hint_for(message: &str) -> &'static str {
    let lower = message.to_ascii_lowercase();
    if lower.contains("jetstream not enabled")
        || lower.contains("jetstream unavailable")
        || lower.contains("no responders")
        || lower.contains("timed out")
    {
        ": is nats-server running with JetStream (-js)?"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jetstream_hint_is_given_only_where_it_fits() {
        let overlap = DistributedError::nats(
            "opening the task stream",
            "jetstream error: subjects overlap with an existing stream (code 400, error code 10065)",
        );
        assert!(!overlap.to_string().contains("-js"), "{overlap}");
        let absent = DistributedError::nats("opening the task stream", "no responders");
        assert!(
            absent
                .to_string()
                .ends_with("is nats-server running with JetStream (-js)?"),
            "{absent}"
        );
    }
}
