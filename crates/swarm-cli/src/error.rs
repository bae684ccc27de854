//! The command's errors and the exit code each one maps to.

use std::process::ExitCode;

use swarm::{BuildError, ShutdownError, SubmitError};
use swarm_store::StoreError;

/// Why a command failed. Every variant maps to one exit code and prints as
/// one lowercase line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Bad input: a usage error, a malformed jobs file, an unknown name. Exit 2.
    #[error("{0}")]
    BadInput(String),
    /// The event store cannot be opened or read (corrupt, wrong version,
    /// missing). Exit 2.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Some jobs were dead-lettered. Exit 1.
    #[error("{0}")]
    JobsFailed(String),
    /// Something went wrong while running (i/o, the swarm refused work). Exit 1.
    #[error("{0}")]
    Runtime(String),
}

impl CliError {
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            CliError::BadInput(_) | CliError::Store(_) => ExitCode::from(2),
            CliError::JobsFailed(_) | CliError::Runtime(_) => ExitCode::from(1),
        }
    }
}

impl From<BuildError> for CliError {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::Store(e) => CliError::Store(e),
            // A bad configuration, a limit that cannot hold, or a --metrics
            // address that cannot be served.
            BuildError::Config(_) | BuildError::Limit(_) | BuildError::Metrics(_) => {
                CliError::BadInput(e.to_string())
            }
            other => CliError::Runtime(other.to_string()),
        }
    }
}

impl From<SubmitError> for CliError {
    fn from(e: SubmitError) -> Self {
        match e.reason() {
            // A job whose cost no --rate-limit bucket can hold: bad input,
            // and (a batch is all or nothing) nothing was submitted.
            SubmitError::ExceedsLimit { .. } => CliError::BadInput(e.to_string()),
            _ => CliError::Runtime(e.to_string()),
        }
    }
}

impl From<ShutdownError> for CliError {
    fn from(e: ShutdownError) -> Self {
        CliError::Runtime(e.to_string())
    }
}
