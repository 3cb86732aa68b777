//! `/v1/locks/{name}`: acquire, extend and release a lock, and show who holds it.

use super::AppState;
use super::body::{Body, Expected, Params};
use super::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use quorumd_replication::locks::LockError;
use serde::Deserialize;
use serde_json::{Value, json};

impl From<LockError> for ApiError {
    fn from(e: LockError) -> Self {
        let message = e.to_string();
        match e {
            LockError::Invalid(_) => ApiError::bad_request(message),
            LockError::Held { .. } => ApiError::new(StatusCode::CONFLICT, "lock_held", message),
            LockError::NotHolder { .. } => {
                ApiError::new(StatusCode::CONFLICT, "not_holder", message)
            }
            LockError::NoQuorum(q) => {
                ApiError::from(quorumd_replication::store::StoreError::NoQuorum(q))
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcquireRequest {
    ttl_ms: u64,
    #[serde(default)]
    wait_ms: u64,
    #[serde(default)]
    owner: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    token: String,
    ttl_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    token: String,
}

impl Expected for AcquireRequest {
    const SHAPE: &'static str =
        r#"{"ttl_ms": positive integer, "wait_ms": integer >= 0, "owner": string}"#;
}

impl Expected for ExtendRequest {
    const SHAPE: &'static str = r#"{"token": string, "ttl_ms": positive integer}"#;
}

impl Expected for ReleaseRequest {
    const SHAPE: &'static str = r#"{"token": string}"#;
}

/// Longest wait accepted: waiting beyond a minute belongs in the client's own retry loop.
const MAX_WAIT_MS: u64 = 60_000;

pub async fn acquire(
    State(state): State<AppState>,
    Params(name): Params<String>,
    Body(req): Body<AcquireRequest>,
) -> Result<Json<Value>, ApiError> {
    if req.wait_ms > MAX_WAIT_MS {
        return Err(ApiError::bad_request(format!(
            "wait_ms must be at most {MAX_WAIT_MS}, got {}",
            req.wait_ms
        )));
    }
    let grant = state
        .locks
        .acquire(&name, req.ttl_ms, req.wait_ms, &req.owner)
        .await?;
    Ok(Json(json!(grant)))
}

pub async fn extend(
    State(state): State<AppState>,
    Params(name): Params<String>,
    Body(req): Body<ExtendRequest>,
) -> Result<Json<Value>, ApiError> {
    let grant = state.locks.extend(&name, &req.token, req.ttl_ms).await?;
    Ok(Json(
        json!({"fence": grant.fence, "validity_ms": grant.validity_ms}),
    ))
}

pub async fn release(
    State(state): State<AppState>,
    Params(name): Params<String>,
    Body(req): Body<ReleaseRequest>,
) -> Result<Json<Value>, ApiError> {
    state.locks.release(&name, &req.token).await?;
    Ok(Json(json!({"released": true})))
}

pub async fn inspect(
    State(state): State<AppState>,
    Params(name): Params<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(state.locks.inspect(&name).await?)))
}
