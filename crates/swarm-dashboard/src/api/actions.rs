//! The action routes (every `POST`), behind the token layer.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::{HeaderValue, LOCATION};
use axum::response::Response;
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;
use swarm::{CancelError, SubmitError};

use super::{body_error, json_response, parse_task_id};
use crate::error::ApiError;
use crate::manage;
use crate::state::AppState;
use crate::submit::NewTask;

/// `POST /api/v1/tasks`: submits a task; 201 with `{"id": "task-..."}`.
pub(crate) async fn submit(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    let request = NewTask::parse(&body).map_err(ApiError::bad_request)?;
    let task = (state.config.task_factory)(request).map_err(ApiError::bad_request)?;
    let handle = state.swarm.submit(task).await.map_err(submit_error)?;
    let id = handle.id().to_string();
    // The outcome is in the log and on the event stream; nobody waits here.
    drop(handle);
    let mut response = json_response(StatusCode::CREATED, &json!({ "id": id }));
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/tasks/{id}")) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

fn submit_error(e: SubmitError) -> ApiError {
    let message = e.to_string();
    match e {
        SubmitError::Duplicate(_) => ApiError::conflict(message),
        SubmitError::Invalid(_) | SubmitError::Unsupported { .. } => ApiError::bad_request(message),
        SubmitError::QueueFull(_) | SubmitError::ShuttingDown(_) => ApiError::unavailable(message),
        _ => ApiError::internal(message),
    }
}

/// `POST /api/v1/tasks/{id}/cancel`: cancels a queued or running task.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_task_id(&id)?;
    match state.swarm.cancel(id) {
        Ok(()) => Ok(json_response(
            StatusCode::OK,
            &json!({ "id": id.to_string(), "cancelled": true }),
        )),
        Err(CancelError::NotFound(_)) => Err(manage::cancel_not_found(&state.swarm, id)),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

/// The action routes of the management API.
pub(crate) fn manage_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/dead-letters/{id}/retry", post(retry))
        .route("/api/v1/dead-letters/{id}/discard", post(discard))
        .route("/api/v1/pause", post(pause))
        .route("/api/v1/resume", post(resume))
        .route("/api/v1/agents", post(scale))
}

async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_task_id(&id)?;
    let body = manage::retry(&state.swarm, id).await?;
    Ok(json_response(StatusCode::OK, &body))
}

async fn discard(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_task_id(&id)?;
    let body = manage::discard(&state.swarm, id).await?;
    Ok(json_response(StatusCode::OK, &body))
}

async fn pause(State(state): State<AppState>) -> Result<Response, ApiError> {
    let body = manage::set_paused(&state.swarm, true).await?;
    Ok(json_response(StatusCode::OK, &body))
}

async fn resume(State(state): State<AppState>) -> Result<Response, ApiError> {
    let body = manage::set_paused(&state.swarm, false).await?;
    Ok(json_response(StatusCode::OK, &body))
}

/// The body of `POST /api/v1/agents`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleBody {
    count: usize,
}

async fn scale(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    let ScaleBody { count } = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "malformed scale request ({e}); expected {{\"count\": N}}"
        ))
    })?;
    let body = manage::scale(&state.swarm, count).await?;
    Ok(json_response(StatusCode::OK, &body))
}
