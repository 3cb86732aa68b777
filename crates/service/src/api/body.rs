//! JSON request bodies: one place that turns a rejected body into a clear 400 (or 413).

use super::error::ApiError;
use axum::Json;
use axum::extract::Path;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::http::StatusCode;

/// The parsed body, or an error that names the expected shape.
pub fn parse<T>(body: Result<Json<T>, JsonRejection>, expected: &str) -> Result<T, ApiError> {
    body.map(|Json(v)| v).map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is too large: {}", e.body_text()),
            )
        } else {
            ApiError::bad_request(format!("expected {expected}: {}", e.body_text()))
        }
    })
}

/// A path parameter, or a JSON 400 saying why it could not be read.
pub fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(v)| v)
        .map_err(|e| ApiError::bad_request(format!("invalid path: {}", e.body_text())))
}
