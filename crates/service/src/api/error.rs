//! API errors: every failure becomes `{"error": {"code", "message", ...details}}` with the
//! status that fits it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use quorumd_replication::fanout::QuorumError;
use quorumd_replication::store::StoreError;
use serde_json::{Map, Value, json};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Map::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.details.insert(key.to_string(), value);
        self
    }

    fn no_quorum(e: &QuorumError, code: &'static str) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, e.to_string())
            .with("operation", json!(e.operation))
            .with("required", json!(e.required))
            .with("succeeded", json!(e.succeeded))
            .with("nodes", json!(e.failures))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let message = e.to_string();
        match &e {
            StoreError::NoQuorum(q) => ApiError::no_quorum(q, "no_quorum"),
            StoreError::PreconditionFailed { current } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                message,
            )
            .with("current_version", json!(current.map(|v| v.encode()))),
            StoreError::Timeout { operation, ms } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", message)
                    .with("operation", json!(operation))
                    .with("timeout_ms", json!(ms))
            }
            StoreError::ReservedKey { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "reserved_key", message)
            }
            StoreError::KindConflict { holds } => {
                ApiError::new(StatusCode::CONFLICT, "kind_conflict", message)
                    .with("holds", json!(holds.name()))
            }
            // Only the RESP list writes build payloads; listed for completeness.
            StoreError::Encoding(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "encoding", message)
            }
            // Only RESP read-modify-writes take ballots and read strings by type; listed for
            // completeness.
            StoreError::Preempted { .. } => {
                ApiError::new(StatusCode::CONFLICT, "contended", message)
            }
            StoreError::WrongType => ApiError::new(StatusCode::CONFLICT, "wrong_type", message),
            StoreError::OutcomeUnknown => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "outcome_unknown", message)
            }
            // Only RESP transactions watch keys; listed for completeness.
            StoreError::WatchedKeyChanged { .. } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "watched_key_changed",
                message,
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            crate::events::RequestFailed {
                operation: self.code,
                error: &self.message,
            }
            .emit();
        }
        let mut body = self.details;
        body.insert("code".into(), json!(self.code));
        body.insert("message".into(), json!(self.message));
        (self.status, axum::Json(json!({ "error": body }))).into_response()
    }
}
