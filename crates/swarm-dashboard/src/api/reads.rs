//! The read routes: `/metrics` and the `GET /api/v1/...` JSON.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

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
}
