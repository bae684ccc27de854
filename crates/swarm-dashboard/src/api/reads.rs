//! The read routes: `/metrics` and the `GET /api/v1/...` JSON.

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use swarm::{TaskFilter, TaskStatus};

use super::{json_response, parse_task_id};
use crate::error::ApiError;
use crate::manage;
use crate::state::AppState;

/// The most tasks of one page, and of one task's events.
const MAX_LIMIT: usize = 1000;

/// `GET /metrics`: the swarm's Prometheus exposition text.
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state.swarm.render_metrics().ok_or_else(|| {
        ApiError::not_found(
            "this swarm records no metrics: build it with the `prometheus` feature and record_metrics(true)",
        )
    })?;
    let mut response = text.into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

/// The read routes of the management API.
pub(crate) fn manage_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/overview", get(overview))
        .route("/api/v1/tasks", get(tasks))
        .route("/api/v1/tasks/{id}", get(task))
        .route("/api/v1/dead-letters", get(dead_letters))
}

async fn overview(State(state): State<AppState>) -> Response {
    json_response(StatusCode::OK, &manage::overview(&state.swarm))
}

/// The query of `GET /api/v1/tasks` and `GET /api/v1/dead-letters`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    after: Option<String>,
}

impl ListQuery {
    fn filter(&self, allow_status: bool) -> Result<TaskFilter, ApiError> {
        let mut filter = TaskFilter::new();
        if let Some(status) = self.status.as_deref().filter(|s| !s.is_empty()) {
            if !allow_status {
                return Err(ApiError::bad_request(
                    "dead letters have one status: leave out `status`",
                ));
            }
            filter = filter.status(parse_status(status)?);
        }
        if let Some(kind) = self.kind.as_deref().filter(|k| !k.is_empty()) {
            filter = filter.kind(kind);
        }
        if let Some(limit) = self.limit {
            filter = filter.limit(check_limit(limit)?);
        }
        if let Some(after) = self.after.as_deref().filter(|a| !a.is_empty()) {
            filter = filter.after(parse_task_id(after)?);
        }
        Ok(filter)
    }
}

fn check_limit(limit: usize) -> Result<usize, ApiError> {
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_request(format!(
            "limit {limit} is out of range: ask for 1 to {MAX_LIMIT}, and page on with `after`"
        )))
    }
}

fn parse_status(raw: &str) -> Result<TaskStatus, ApiError> {
    serde_json::from_value(serde_json::Value::String(raw.to_owned())).map_err(|_| {
        ApiError::bad_request(format!(
            "unknown status {raw:?}: expected one of pending, queued, running, completed, failed, dead_lettered, cancelled"
        ))
    })
}

async fn tasks(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let filter = query.filter(true)?;
    Ok(json_response(
        StatusCode::OK,
        &manage::tasks(&state.swarm, &filter, false),
    ))
}

async fn dead_letters(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let filter = query.filter(false)?;
    Ok(json_response(
        StatusCode::OK,
        &manage::tasks(&state.swarm, &filter, true),
    ))
}

/// The query of `GET /api/v1/tasks/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskQuery {
    /// The most events to list (default 200).
    #[serde(default)]
    events: Option<usize>,
}

async fn task(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<TaskQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let id = parse_task_id(&id)?;
    let events = check_limit(query.events.unwrap_or(200))?;
    let body = manage::task(&state.swarm, id, events).await?;
    Ok(json_response(StatusCode::OK, &body))
}
