//! Demo-only endpoints (routed only when the service was started by `quorumd demo`):
//! `POST /v1/demo/wipe {"node": i}` flushes one node, `POST /v1/demo/diverge {"node": i,
//! "keys": n}` writes new versions of some demo keys to one node only. The dashboard's buttons
//! call them, so the healing can be watched.

use super::AppState;
use super::body::{Body, Expected};
use super::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use quorumd_replication::demo as tamper;
use serde::Deserialize;
use serde_json::{Value, json};

/// What the demo set up.
#[derive(Debug, Clone)]
pub struct DemoInfo {
    /// Demo keys seeded at start (`demo:000000` ...).
    pub seeded: u64,
}

/// Default and largest number of keys one diverge request changes.
const DIVERGE_DEFAULT: u64 = 300;
const DIVERGE_MAX: u64 = 100_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tamper {
    node: usize,
    keys: Option<u64>,
}

impl Expected for Tamper {
    const SHAPE: &'static str = r#"{"node": index, "keys": count}"#;
}

fn parse(state: &AppState, Body(t): Body<Tamper>) -> Result<Tamper, ApiError> {
    let n = state.store.pool().len();
    if t.node >= n {
        return Err(ApiError::bad_request(format!(
            "node {} does not exist: nodes are numbered 0 to {}",
            t.node,
            n - 1
        )));
    }
    Ok(t)
}

fn node_failed(e: quorumd_node::pool::NodeError) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "node_error", e.to_string())
}

pub async fn wipe(
    State(state): State<AppState>,
    body: Body<Tamper>,
) -> Result<Json<Value>, ApiError> {
    let t = parse(&state, body)?;
    if t.keys.is_some() {
        return Err(ApiError::bad_request("wipe takes only \"node\""));
    }
    tamper::wipe(&state.store, t.node)
        .await
        .map_err(node_failed)?;
    let node = &state.store.pool().node(t.node).display;
    crate::events::DemoTampered {
        action: "wipe",
        node,
        keys: 0,
    }
    .emit();
    Ok(Json(
        json!({ "action": "wipe", "node": t.node, "address": node }),
    ))
}

pub async fn diverge(
    State(state): State<AppState>,
    body: Body<Tamper>,
) -> Result<Json<Value>, ApiError> {
    let t = parse(&state, body)?;
    let seeded = state.demo.as_ref().map_or(0, |d| d.seeded);
    let keys = t.keys.unwrap_or(DIVERGE_DEFAULT).clamp(1, DIVERGE_MAX);
    let written = tamper::diverge(&state.store, t.node, seeded.max(keys), keys)
        .await
        .map_err(node_failed)?;
    let node = &state.store.pool().node(t.node).display;
    crate::events::DemoTampered {
        action: "diverge",
        node,
        keys: written,
    }
    .emit();
    Ok(Json(
        json!({ "action": "diverge", "node": t.node, "address": node, "keys": written }),
    ))
}
