//! Bearer-token checks, as layers: one on the action routes (every `POST`),
//! one on the read routes that is a no-op on a loopback address.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Lets an action through only with `Authorization: Bearer <token>`.
///
/// No token configured: 403 (nothing can act). Missing or wrong token: 401.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match check(&state, &request) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// Lets a read through on a loopback address; elsewhere it needs the token as an action does.
pub(crate) async fn require_token_off_loopback(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if !state.config.reads_need_token() {
        return next.run(request).await;
    }
    match check(&state, &request) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

fn check(state: &AppState, request: &Request) -> Result<(), ApiError> {
    let Some(token) = &state.config.token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "no dashboard token is configured, so actions are refused: start the server with --dashboard-token TOKEN or SWARM_DASHBOARD_TOKEN",
        ));
    };
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .map(|value| value.as_bytes())
        .and_then(|value| {
            let (scheme, rest) = value.split_at_checked(7)?;
            scheme.eq_ignore_ascii_case(b"bearer ").then_some(rest)
        });
    match presented {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this needs the dashboard token: send the header `Authorization: Bearer TOKEN` (the token given with --dashboard-token or SWARM_DASHBOARD_TOKEN, or printed on stderr at start)",
        )),
        Some(candidate) if token.matches(trim_spaces(candidate)) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong dashboard token: send the one given with --dashboard-token or SWARM_DASHBOARD_TOKEN, or printed on stderr at start",
        )),
    }
}

fn trim_spaces(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != b' ').unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| *b != b' ')
        .map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::trim_spaces;

    #[test]
    fn spaces_around_a_token_are_not_part_of_it() {
        assert_eq!(trim_spaces(b"  abc "), b"abc");
        assert_eq!(trim_spaces(b"abc"), b"abc");
        assert_eq!(trim_spaces(b"   "), b"");
        assert_eq!(trim_spaces(b""), b"");
    }
}
