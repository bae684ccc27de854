//! The one place that calls the swarm's management API (issue 17 item 1), so
//! that a change of that API changes only this module.

use swarm::{Swarm, TaskId};

use crate::error::ApiError;

/// The answer to a cancel of a task that is not queued or running.
pub(crate) fn cancel_not_found(_swarm: &Swarm, id: TaskId) -> ApiError {
    ApiError::not_found(format!(
        "task {id} is not queued or running (unknown, or already finished)"
    ))
}
