//! `GET /api/v1/events`: the event log as Server-Sent Events.
//!
//! Each event's `id:` is its store sequence and its `data:` the event as
//! [`crate::json::event_json`] writes it. Without `Last-Event-ID` (or
//! `?from=`) the stream starts with the next event appended; with
//! `Last-Event-ID: N` it goes on from `N + 1`, read from the log, then live,
//! with no gap and no duplicate (the store's `subscribe` promises that). A
//! resume point the log no longer holds (retention) is answered with one
//! `event: gap` message, `{"requested": N, "earliest": E}`, and the stream
//! goes on from `E`.

use std::collections::HashSet;
use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use swarm::EventKind;

use crate::error::ApiError;
use crate::json::event_json;
use crate::state::AppState;

/// The query of `GET /api/v1/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    /// Start at this sequence (`Last-Event-ID` wins when both are given).
    #[serde(default)]
    from: Option<u64>,
    /// Only these events, comma-separated names such as `task:completed,task:failed`.
    #[serde(default)]
    event: Option<String>,
}

pub(crate) async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "Last-Event-ID must be the sequence number of the last event received",
                    )
                })?,
        ),
    };
    let kinds: Option<HashSet<EventKind>> = match &query.event {
        None => None,
        Some(list) => Some(
            list.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|name| {
                    name.parse::<EventKind>()
                        .map_err(|e| ApiError::bad_request(e.to_string()))
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    let permit = state
        .event_streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::unavailable(format!(
                "too many event streams are open (at most {}): close one, or raise the limit",
                state.config.max_event_streams
            ))
        })?;
    let store = std::sync::Arc::clone(state.swarm.store());
    let from = match (last_event_id, query.from) {
        (Some(last), _) => last.saturating_add(1),
        (None, Some(from)) => from.max(1),
        (None, None) => store
            .last_seq()
            .await
            .map_err(|e| ApiError::internal(format!("cannot read the event log: {e}")))?
            .saturating_add(1),
    };
    let earliest = store
        .first_seq()
        .await
        .map_err(|e| ApiError::internal(format!("cannot read the event log: {e}")))?;
    let (gap, from) = if from < earliest {
        let gap = SseEvent::default()
            .event("gap")
            .data(json!({ "requested": from, "earliest": earliest }).to_string());
        (Some(gap), earliest)
    } else {
        (None, from)
    };
    let live = store.subscribe(from);
    let body = stream::iter(gap.map(Ok::<_, Infallible>))
        .chain(sse_messages(live, kinds))
        // The permit is released when the client goes away.
        .map(move |m| {
            let _held = &permit;
            m
        });
    Ok(Sse::new(body).keep_alive(KeepAlive::new().interval(state.config.sse_keep_alive)))
}

/// Each stored event as an SSE message; a store error ends the stream with
/// one `event: error` message.
fn sse_messages(
    live: swarm::StoredEventStream,
    kinds: Option<HashSet<EventKind>>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send {
    stream::unfold(Some((live, kinds)), |state| async move {
        let (mut live, kinds) = state?;
        loop {
            match live.next().await {
                None => return None,
                Some(Ok(stored)) => {
                    if kinds
                        .as_ref()
                        .is_some_and(|k| !k.contains(&stored.event.kind()))
                    {
                        continue;
                    }
                    let message = SseEvent::default()
                        .id(stored.seq.to_string())
                        .data(event_json(&stored).to_string());
                    return Some((Ok(message), Some((live, kinds))));
                }
                Some(Err(e)) => {
                    let message = SseEvent::default()
                        .event("error")
                        .data(json!({ "error": e.to_string() }).to_string());
                    return Some((Ok(message), None));
                }
            }
        }
    })
}
