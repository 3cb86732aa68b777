//! JSON request bodies and path parameters for the lock, queue and sweep handlers: one place
//! that turns a rejected body into a clear 400 (or a 413 with the limit) and a bad path into a
//! JSON 400.

use super::AppState;
use super::error::ApiError;
use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::json;

/// A request body type that can say what it expects, for the 400 a bad body gets.
pub trait Expected {
    /// The expected shape, e.g. `{"token": string}`.
    const SHAPE: &'static str;
}

/// The parsed JSON body, or an error that names the expected shape.
pub struct Body<T>(pub T);

impl<T> FromRequest<AppState> for Body<T>
where
    T: DeserializeOwned + Expected,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| Body(v))
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    let limit = state.http.max_body_bytes;
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        format!("the body exceeds the limit of {limit} bytes"),
                    )
                    .with("limit_bytes", json!(limit))
                } else {
                    ApiError::bad_request(format!("expected {}: {}", T::SHAPE, e.body_text()))
                }
            })
    }
}

/// The path parameters, or a JSON 400 saying why they could not be read.
pub struct Params<T>(pub T);

impl<T, S> FromRequestParts<S> for Params<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Params(v))
            .map_err(|e| ApiError::bad_request(format!("invalid path: {}", e.body_text())))
    }
}
