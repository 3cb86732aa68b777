//! `GET /v1/events`: server-sent events from the live feed.
//!
//! The first message is a `snapshot` (the status and the bucket grid), then every live event
//! as it happens (`node`, `sweep_progress`, `sweep_finished`, `buckets`, `repair`, `error`).
//! A client that reads too slowly falls behind the broadcast channel; it is never waited for:
//! when it catches up it gets a fresh `snapshot` (with `lagged`, the number of events it
//! missed) and continues from there.

use super::AppState;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use quorumd_node::live::LiveEvent;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How often an idle stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Subscribe before taking the snapshot: nothing between the two is lost.
    let rx = state.store.pool().live().subscribe();
    let closed = state.store.pool().live().closed();
    let first = snapshot(&state, 0);
    let stream = futures::stream::unfold(
        (rx, Some(first), state),
        |(mut rx, pending, state)| async move {
            if let Some(event) = pending {
                return Some((Ok(event), (rx, None, state)));
            }
            let event = match rx.recv().await {
                Ok(e) => live_event(&e),
                Err(RecvError::Lagged(missed)) => snapshot(&state, missed),
                Err(RecvError::Closed) => return None,
            };
            Some((Ok(event), (rx, None, state)))
        },
    );
    Sse::new(stream.take_until(closed)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// The payload of a `snapshot` message: what a client needs to draw everything from scratch.
pub fn snapshot_body(state: &AppState, lagged: u64) -> Value {
    json!({
        "type": "snapshot",
        "lagged": lagged,
        "status": super::status::status_body(state),
        "live": state.store.pool().live().snapshot(quorumd_core::hlc::wall_clock_ms()),
    })
}

fn snapshot(state: &AppState, lagged: u64) -> Event {
    sse_event("snapshot", &snapshot_body(state, lagged))
}

fn live_event(e: &LiveEvent) -> Event {
    let body = serde_json::to_value(e).unwrap_or_default();
    let kind = body["type"].as_str().unwrap_or("event").to_owned();
    sse_event(&kind, &body)
}

/// One SSE message named `kind`; passwords in any URL inside are masked.
fn sse_event(kind: &str, body: &Value) -> Event {
    let text = quorumd_core::redact::mask_urls_in_text(&body.to_string());
    Event::default().event(kind).data(text)
}
