//! The one place that calls the swarm's management API (issue 17, item 1:
//! `Swarm::task`, `tasks`, `dead_letters`, `task_events`, `retry_dead_letter`,
//! `discard_dead_letter`, `pause`, `resume`, `scale_to`, `overview`), so that
//! a change of that API changes only this module. It answers in the API's
//! JSON forms (ids as strings, see [`crate::json`]) and maps
//! [`ManageError`] to statuses.

use serde_json::{Value, json};
use swarm::{ManageError, Overview, Swarm, TaskFilter, TaskId, TaskInfo, TaskPage, TaskStatus};

use crate::error::ApiError;
use crate::json::event_json;

/// The answer to a cancel of a task that is not queued or running: 409 for
/// a known task that finished, 404 for an unknown one.
pub(crate) fn cancel_not_found(swarm: &Swarm, id: TaskId) -> ApiError {
    match swarm.task(id) {
        Some(info) if info.status.is_terminal() => ApiError::conflict(format!(
            "task {id} is {}: only a queued, running or retrying task can be cancelled",
            status_name(info.status)
        )),
        _ => ApiError::not_found(format!(
            "task {id} is not queued or running (unknown, or already finished)"
        )),
    }
}

/// `GET /api/v1/overview`.
pub(crate) fn overview(swarm: &Swarm) -> Value {
    overview_json(&swarm.overview())
}

/// `GET /api/v1/tasks` and `GET /api/v1/dead-letters`.
pub(crate) fn tasks(swarm: &Swarm, filter: &TaskFilter, dead_letters: bool) -> Value {
    let page = if dead_letters {
        swarm.dead_letters(filter)
    } else {
        swarm.tasks(filter)
    };
    page_json(&page)
}

/// `GET /api/v1/tasks/{id}`: the task and its events from the log.
pub(crate) async fn task(swarm: &Swarm, id: TaskId, events: usize) -> Result<Value, ApiError> {
    let info = swarm.task(id).ok_or_else(|| unknown(id))?;
    let events = swarm
        .task_events(id, events)
        .await
        .map_err(|e| manage_error(id, e))?;
    Ok(json!({
        "task": task_json(&info),
        "events": events.iter().map(event_json).collect::<Vec<_>>(),
    }))
}

/// `POST /api/v1/dead-letters/{id}/retry`.
pub(crate) async fn retry(swarm: &Swarm, id: TaskId) -> Result<Value, ApiError> {
    let handle = swarm
        .retry_dead_letter(id)
        .await
        .map_err(|e| manage_error(id, e))?;
    // The outcome is on the event stream; nobody waits here.
    drop(handle);
    Ok(json!({ "id": id.to_string(), "retried": true }))
}

/// `POST /api/v1/dead-letters/{id}/discard`.
pub(crate) async fn discard(swarm: &Swarm, id: TaskId) -> Result<Value, ApiError> {
    swarm
        .discard_dead_letter(id)
        .await
        .map_err(|e| manage_error(id, e))?;
    Ok(json!({ "id": id.to_string(), "discarded": true }))
}

/// `POST /api/v1/pause` (`pause = true`) and `POST /api/v1/resume`.
pub(crate) async fn set_paused(swarm: &Swarm, pause: bool) -> Result<Value, ApiError> {
    let result = if pause {
        swarm.pause().await
    } else {
        swarm.resume().await
    };
    result.map_err(|e| manage_error(TaskId::from_u64(0), e))?;
    Ok(json!({ "paused": swarm.is_paused() }))
}

/// `POST /api/v1/agents`.
pub(crate) async fn scale(swarm: &Swarm, count: usize) -> Result<Value, ApiError> {
    let agents = swarm
        .scale_to(count)
        .await
        .map_err(|e| manage_error(TaskId::from_u64(0), e))?;
    Ok(json!({ "agents": agents }))
}

fn unknown(id: TaskId) -> ApiError {
    ApiError::not_found(ManageError::UnknownTask(id).to_string())
}

/// The status of a management error; its message is the error's own.
fn manage_error(id: TaskId, e: ManageError) -> ApiError {
    let message = e.to_string();
    match e {
        ManageError::UnknownTask(_) => ApiError::not_found(message),
        ManageError::NotDeadLettered { status, .. } => ApiError::conflict(format!(
            "task {id} is {}, not dead-lettered: only a dead letter can be retried or discarded",
            status_name(status)
        )),
        ManageError::Submit(swarm::SubmitError::Duplicate(_)) => ApiError::conflict(message),
        ManageError::Submit(
            swarm::SubmitError::ShuttingDown(_) | swarm::SubmitError::QueueFull(_),
        )
        | ManageError::ShuttingDown
        | ManageError::ViewBehind { .. } => ApiError::unavailable(message),
        ManageError::Scale { .. } => ApiError::bad_request(message),
        _ => ApiError::internal(message),
    }
}

/// A status as the API writes it: `dead_lettered`, ...
pub(crate) fn status_name(status: TaskStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{status:?}"))
}

fn page_json(page: &TaskPage) -> Value {
    json!({
        "tasks": page.tasks.iter().map(task_json).collect::<Vec<_>>(),
        "next": page.next.map(|id| id.to_string()),
    })
}

/// A task: `{"id": "task-...", "kind", "priority", "status", "attempts",
/// "max_attempts", "agent", "errors", "created_at", "updated_at", "created_seq"}`.
fn task_json(info: &TaskInfo) -> Value {
    json!({
        "id": info.id.to_string(),
        "kind": info.kind,
        "priority": info.priority.as_str(),
        "status": status_name(info.status),
        "attempts": info.attempts,
        "max_attempts": info.max_attempts,
        "agent": info.agent.map(|a| a.as_u64()),
        "errors": info.errors,
        "created_at": info.created_at.as_micros(),
        "updated_at": info.updated_at.map(|t| t.as_micros()),
        "created_seq": info.created_seq,
    })
}

fn overview_json(overview: &Overview) -> Value {
    let t = &overview.tasks;
    json!({
        "tasks": {
            "pending": t.pending,
            "queued": t.queued,
            "running": t.running,
            "failed": t.failed,
            "completed": t.completed,
            "dead_lettered": t.dead_lettered,
            "cancelled": t.cancelled,
            "dead_letters": t.dead_letters,
        },
        "queues": overview.queues,
        "agents": overview.agents.iter().map(|a| json!({
            "id": a.id.as_u64(),
            "health": a.health,
            "state": a.state,
            "current_task": a.current_task.map(|id| id.to_string()),
            "completed": a.completed,
            "failed": a.failed,
        })).collect::<Vec<_>>(),
        "throughput_per_sec": overview.throughput_per_sec,
        "queue_wait_ms": overview.queue_wait_ms,
        "paused": overview.paused,
    })
}
