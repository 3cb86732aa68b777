//! `POST /v1/sweeps` starts a sweep now; `GET /v1/sweeps/current` reports progress.

use super::AppState;
use super::body::{Body, Expected};
use super::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use quorumd_replication::sync::{SweepMode, SweepRequest, SweepTrigger, SyncError};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartSweep {
    mode: SweepMode,
    #[serde(default)]
    dry_run: bool,
}

impl Expected for StartSweep {
    const SHAPE: &'static str = r#"{"mode": "exchange"|"full", "dry_run": bool}"#;
}

/// A body over `http.max_body_bytes` gets 413 like every other route's, not 400.
pub async fn start(
    State(state): State<AppState>,
    Body(req): Body<StartSweep>,
) -> Result<Response, ApiError> {
    let handle = state
        .sweeper
        .begin(SweepRequest {
            mode: req.mode,
            dry_run: req.dry_run,
            trigger: SweepTrigger::Api,
        })
        .map_err(|e| match e {
            SyncError::AlreadyRunning(ref current) => {
                ApiError::new(StatusCode::CONFLICT, "sweep_running", e.to_string())
                    .with("sweep", json!(current))
            }
            other => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                other.to_string(),
            ),
        })?;
    let report = quorumd_replication::sync::progress::lock(&handle).clone();
    let sweeper = state.sweeper.clone();
    // Tracked: shutdown lets it finish within the drain deadline instead of dropping it.
    state.sweeper.pool().workers().spawn_task(async move {
        sweeper.execute(handle).await;
    });
    Ok((StatusCode::ACCEPTED, Json(json!({ "sweep": report }))).into_response())
}

pub async fn current(
    State(state): State<AppState>,
) -> Json<quorumd_replication::sync::SweepStatus> {
    Json(state.sweeper.status())
}
