//! The routes: one [`Router`](axum::Router) for the page, `/metrics`, the
//! JSON API and the event stream.

mod actions;
mod assets;
mod reads;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::auth::{require_token, require_token_off_loopback};
use crate::error::ApiError;
use crate::sse;
use crate::state::AppState;

/// Every route, its limits and its auth layers.
pub(crate) fn router(state: AppState) -> Router {
    let actions = Router::new()
        .route("/api/v1/tasks", post(actions::submit))
        .route("/api/v1/tasks/{id}/cancel", post(actions::cancel))
        .merge(actions::manage_routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let reads = Router::new()
        .route("/metrics", get(reads::metrics))
        .merge(reads::manage_routes())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_token_off_loopback,
        ));
    let timed = Router::new()
        .merge(actions)
        .merge(reads)
        .route("/", get(assets::index))
        .route("/assets/{file}", get(assets::asset))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.config.request_timeout,
        ));
    // An event stream lasts as long as its client wants: no request timeout.
    let streams = Router::new()
        .route("/api/v1/events", get(sse::events))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_token_off_loopback,
        ));
    Router::new()
        .merge(timed)
        .merge(streams)
        .fallback(not_found)
        .layer(RequestBodyLimitLayer::new(state.config.body_limit))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(middleware::from_fn(json_errors))
        .with_state(state)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route for {} {}: see docs/operations.md for the API",
        request.method(),
        request.uri().path()
    ))
}

/// Errors that the layers answer themselves (413 from the body limit, 408
/// from the timeout, 405 from the router) get the API's JSON form too.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large for this server".to_owned(),
        StatusCode::REQUEST_TIMEOUT => "the request took too long and was stopped".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => {
            "this method is not allowed here: actions are POST, reads GET".to_owned()
        }
        other => other
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_lowercase(),
    };
    let mut replaced = ApiError::new(status, message).into_response();
    for (name, value) in response.headers() {
        if name != CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            replaced.headers_mut().insert(name.clone(), value.clone());
        }
    }
    replaced
}

/// A JSON body with status `status`.
pub(crate) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Reads a request body that `RequestBodyLimitLayer` bounds: over the limit
/// is 413, any other failure 400.
pub(crate) fn body_error(e: axum::extract::rejection::BytesRejection) -> ApiError {
    ApiError::new(e.status(), e.body_text())
}

/// Parses the `{id}` of a route.
pub(crate) fn parse_task_id(raw: &str) -> Result<swarm::TaskId, ApiError> {
    raw.parse::<swarm::TaskId>()
        .map_err(|e| ApiError::bad_request(e.to_string()))
}
