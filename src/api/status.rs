//! `GET /v1/status`, `/healthz` (the process is alive) and `/readyz` (a quorum is reachable).

use super::AppState;
use super::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

pub async fn status(State(state): State<AppState>) -> Json<Value> {
    let q = state.store.settings().quorum;
    Json(json!({
        "instance": {
            "id": state.instance.id,
            "writer_id": format!("{:016x}", state.instance.writer_id),
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": state.instance.started.elapsed().as_secs_f64(),
        },
        "quorum": {
            "nodes": q.nodes,
            "read": q.read,
            "write": q.write,
            "default_consistency": state.default_consistency,
        },
        "nodes": state.store.pool().status(),
        "sweeps": state.sweeper.status(),
    }))
}

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when enough nodes are reachable for both a quorum read and a quorum write.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let q = state.store.settings().quorum;
    let required = q.read.max(q.write);
    let reachable = state.store.pool().reachable();
    if reachable >= required {
        Ok(Json(
            json!({ "ready": true, "reachable": reachable, "required": required }),
        ))
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!("{reachable} nodes reachable, {required} needed for a quorum"),
        )
        .with("reachable", json!(reachable))
        .with("required", json!(required))
        .with("nodes", json!(state.store.pool().status())))
    }
}
