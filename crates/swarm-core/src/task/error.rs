//! Why a task could not be built.

/// Why a task could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    /// The payload is over the configured bound.
    PayloadTooLarge {
        /// The payload's size in bytes.
        size: usize,
        /// The bound in bytes.
        limit: usize,
    },
    /// `max_attempts(0)` was asked for; a task needs at least one attempt.
    ZeroAttempts,
    /// The JSON payload could not be serialized.
    Json(String),
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskError::PayloadTooLarge { size, limit } => write!(
                f,
                "task payload is {size} bytes, over the limit of {limit} bytes: send a reference to the data instead, or raise the payload limit"
            ),
            TaskError::ZeroAttempts => {
                f.write_str("a task needs at least one attempt: max_attempts must be 1 or more")
            }
            TaskError::Json(message) => {
                write!(f, "task payload could not be serialized as JSON: {message}")
            }
        }
    }
}

impl std::error::Error for TaskError {}
