//! Errors: [`DashboardError`] when the server cannot start, [`ApiError`] as
//! the one-line JSON answer of a request that failed.

use std::io;
use std::net::SocketAddr;

use axum::Json;
use axum::http::StatusCode;
use axum::http::header::{HeaderValue, WWW_AUTHENTICATE};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Why the dashboard server did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DashboardError {
    /// The address could not be bound.
    #[error(
        "cannot listen on {addr}: {source} (is another process on that port? pick another with --dashboard)"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A non-loopback address without an explicit token (CVE-2023-48022 is
    /// what an open management API on the network leads to).
    #[error(
        "refusing to serve the dashboard on {0}, which is not a loopback address, without an explicit token: set --dashboard-token or SWARM_DASHBOARD_TOKEN (or bind 127.0.0.1)"
    )]
    TokenRequired(SocketAddr),
    /// The explicit token is not acceptable.
    #[error("the dashboard token is not acceptable: {0}")]
    BadToken(String),
    /// No randomness for a generated token.
    #[error(
        "cannot generate a dashboard token: {0}; set one with --dashboard-token or SWARM_DASHBOARD_TOKEN"
    )]
    Random(String),
}

/// A failed request: its status and a one-line reason, answered as
/// `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with this status and message (whitespace folded to one line).
    pub fn new(status: StatusCode, message: impl AsRef<str>) -> ApiError {
        let message = message
            .as_ref()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        ApiError { status, message }
    }

    /// 400: malformed input.
    pub fn bad_request(message: impl AsRef<str>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: no such thing.
    pub fn not_found(message: impl AsRef<str>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 409: the thing is not in a state that allows the action.
    pub fn conflict(message: impl AsRef<str>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    /// 503: the swarm cannot do it now.
    pub fn unavailable(message: impl AsRef<str>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// 500: something failed on the server's side.
    pub fn internal(message: impl AsRef<str>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The one-line reason.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"swarm\""),
            );
        }
        response
    }
}
