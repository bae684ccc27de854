//! The errors of the distributed task queue.

/// Why a distributed-queue operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DistributedError {
    /// The NATS server refused or did not answer a request.
    #[error("nats {what} failed: {message}: is nats-server running with JetStream (-js)?")]
    Nats {
        /// What was being done.
        what: String,
        /// The client's message.
        message: String,
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
        DistributedError::Nats {
            what: what.into(),
            message: e.to_string(),
        }
    }
}
