//! `GET /v1/status`, `/healthz` (the process is alive) and `/readyz` (a quorum is reachable).

use super::AppState;
use super::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

pub async fn status(State(state): State<AppState>) -> Json<Value> {
    Json(status_body(&state))
}

/// The status document (also the heart of the events stream's snapshot). Any password in a
/// URL anywhere in it (node errors, sweep errors, worker errors) is masked.
pub fn status_body(state: &AppState) -> Value {
    let q = state.store.settings().quorum;
    let uptime = state.instance.started.elapsed();
    let body = json!({
        "instance": {
            "id": state.instance.id,
            "writer_id": format!("{:016x}", state.instance.writer_id),
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": uptime.as_secs_f64(),
            "started_at_ms": quorumd_core::hlc::wall_clock_ms().saturating_sub(uptime.as_millis() as u64),
            "demo": state.demo.is_some(),
        },
        "buckets": state.store.settings().layout.buckets,
        "quorum": {
            "nodes": q.nodes,
            "read": q.read,
            "write": q.write,
            "default_consistency": state.default_consistency,
        },
        "nodes": state.store.pool().status(),
        "sweeps": state.sweeper.status(),
        "workers": state.store.pool().workers().status(),
    });
    mask_strings(body)
}

/// Masks URL passwords in every string of a JSON document.
fn mask_strings(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(quorumd_core::redact::mask_urls_in_text(&s)),
        Value::Array(a) => Value::Array(a.into_iter().map(mask_strings).collect()),
        Value::Object(o) => {
            Value::Object(o.into_iter().map(|(k, v)| (k, mask_strings(v))).collect())
        }
        other => other,
    }
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
