//! `/v1/queues/{name}`: put items, claim them under a lease, ack / nack / extend, and depths.

use super::AppState;
use super::body::{Body, Expected, Params};
use super::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use quorumd_replication::queue::QueueError;
use serde::Deserialize;
use serde_json::{Value, json};

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        let message = e.to_string();
        match e {
            QueueError::Invalid(_) => ApiError::bad_request(message),
            QueueError::TooLarge { limit, .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
                    .with("limit_bytes", json!(limit))
            }
            QueueError::StaleLease { .. } => {
                ApiError::new(StatusCode::CONFLICT, "stale_lease", message)
            }
            QueueError::NoQuorum(q) => {
                ApiError::from(quorumd_replication::store::StoreError::NoQuorum(q))
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutRequest {
    payload: Value,
    #[serde(default)]
    priority: i64,
    #[serde(default)]
    delay_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    lease_ms: u64,
    #[serde(default)]
    wait_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    lease: String,
    /// nack: delay before the item is claimable again.
    #[serde(default)]
    delay_ms: u64,
    /// extend: the new lease length from now.
    lease_ms: Option<u64>,
}

impl Expected for PutRequest {
    const SHAPE: &'static str =
        r#"{"payload": any JSON, "priority": integer, "delay_ms": integer >= 0}"#;
}

impl Expected for ClaimRequest {
    const SHAPE: &'static str = r#"{"lease_ms": positive integer, "wait_ms": integer >= 0}"#;
}

impl Expected for LeaseRequest {
    const SHAPE: &'static str =
        r#"{"lease": string, "delay_ms": integer (nack), "lease_ms": integer (extend)}"#;
}

/// Longest claim wait accepted.
const MAX_WAIT_MS: u64 = 60_000;

pub async fn put(
    State(state): State<AppState>,
    Params(name): Params<String>,
    Body(req): Body<PutRequest>,
) -> Result<Response, ApiError> {
    let payload = req.payload.to_string();
    let id = state
        .queues
        .put(&name, &payload, req.priority, req.delay_ms)
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response())
}

pub async fn claim(
    State(state): State<AppState>,
    Params(name): Params<String>,
    Body(req): Body<ClaimRequest>,
) -> Result<Response, ApiError> {
    if req.wait_ms > MAX_WAIT_MS {
        return Err(ApiError::bad_request(format!(
            "wait_ms must be at most {MAX_WAIT_MS}"
        )));
    }
    match state.queues.claim(&name, req.lease_ms, req.wait_ms).await? {
        None => Ok(StatusCode::NO_CONTENT.into_response()),
        Some(c) => {
            let payload: Value =
                serde_json::from_str(&c.payload).unwrap_or(Value::String(c.payload));
            Ok(Json(json!({
                "id": c.id,
                "payload": payload,
                "lease": c.lease,
                "deliveries": c.deliveries,
                "validity_ms": c.validity_ms,
            }))
            .into_response())
        }
    }
}

pub async fn item_action(
    State(state): State<AppState>,
    Params((name, id, action)): Params<(String, String, String)>,
    Body(req): Body<LeaseRequest>,
) -> Result<Json<Value>, ApiError> {
    let q = &state.queues;
    match action.as_str() {
        "ack" => {
            q.ack(&name, &id, &req.lease).await?;
            Ok(Json(json!({"acked": true})))
        }
        "nack" => {
            q.nack(&name, &id, &req.lease, req.delay_ms).await?;
            Ok(Json(json!({"returned": true})))
        }
        "extend" => {
            let lease_ms = req
                .lease_ms
                .ok_or_else(|| ApiError::bad_request("extend needs lease_ms"))?;
            let validity_ms = q.extend(&name, &id, &req.lease, lease_ms).await?;
            Ok(Json(json!({"validity_ms": validity_ms})))
        }
        other => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no item action {other:?}: expected ack, nack or extend"),
        )),
    }
}

pub async fn depths(
    State(state): State<AppState>,
    Params(name): Params<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(state.queues.depths(&name).await?)))
}
