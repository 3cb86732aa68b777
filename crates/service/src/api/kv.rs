//! `GET|PUT|DELETE /v1/kv/{key}`: raw bytes in and out, version in `ETag`, compare-and-set
//! with `If-Match` / `If-None-Match` (`conditional`).

use super::AppState;
use super::conditional::{Conditions, ReadCondition};
use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use quorumd_core::hlc::Version;
use quorumd_core::quorum::Consistency;
use quorumd_replication::store::{StoreError, WriteReceipt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;

/// Longest TTL accepted: ten years, far beyond any sane use, well inside i64 milliseconds.
const MAX_TTL_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

pub const KV_PREFIX: &str = "/v1/kv/";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvParams {
    ttl_ms: Option<u64>,
    consistency: Option<String>,
    /// The read token, for clients that cannot send headers (checked by the auth layer).
    access_token: Option<String>,
}

/// Decodes `%XX` escapes into raw bytes. Keys are arbitrary bytes, so this must not assume
/// UTF-8 (which is why the key is not taken from axum's `Path`).
pub fn percent_decode(raw: &str) -> Result<Vec<u8>, String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or_else(|| {
                format!("invalid percent-encoding at byte {i} of the key: expected %XX with two hex digits")
            })?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn key_from(uri: &Uri, state: &AppState) -> Result<Vec<u8>, ApiError> {
    let raw = uri.path().strip_prefix(KV_PREFIX).unwrap_or_default();
    let key = percent_decode(raw).map_err(ApiError::bad_request)?;
    if key.is_empty() {
        return Err(ApiError::bad_request("the key must not be empty"));
    }
    let max = state.http.max_key_bytes;
    if key.len() > max {
        return Err(ApiError::bad_request(format!(
            "the key is {} bytes; the limit is {max}",
            key.len()
        ))
        .with("limit_bytes", json!(max)));
    }
    Ok(key)
}

fn params(
    method: &Method,
    q: Result<Query<KvParams>, QueryRejection>,
) -> Result<KvParams, ApiError> {
    let p = q
        .map(|Query(p)| p)
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {}", e.body_text())))?;
    super::auth::query_token_allowed(method, p.access_token.is_some())?;
    Ok(p)
}

fn consistency(p: &KvParams, state: &AppState) -> Result<Consistency, ApiError> {
    match &p.consistency {
        None => Ok(state.default_consistency),
        Some(s) => s.parse().map_err(ApiError::bad_request),
    }
}

/// GET and DELETE take a key and a level; a TTL makes no sense for them.
fn key_and_level_without_ttl(
    method: &Method,
    uri: &Uri,
    state: &AppState,
    q: Result<Query<KvParams>, QueryRejection>,
) -> Result<(Vec<u8>, Consistency), ApiError> {
    let key = key_from(uri, state)?;
    let p = params(method, q)?;
    if p.ttl_ms.is_some() {
        return Err(ApiError::bad_request("ttl_ms applies to PUT only"));
    }
    Ok((key, consistency(&p, state)?))
}

fn etag(v: Version) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{}\"", v.encode()))
        .unwrap_or(HeaderValue::from_static("\"invalid\""))
}

/// A write's answer body, serialised straight from the fields (no JSON tree per request).
#[derive(Serialize)]
struct ReceiptBody {
    version: String,
    expires_at_ms: Option<u64>,
    acknowledged_by: Vec<String>,
}

fn receipt_response(state: &AppState, r: WriteReceipt) -> Response {
    let pool = state.store.pool();
    let body = ReceiptBody {
        version: r.version.encode(),
        expires_at_ms: r.expires_at_ms,
        acknowledged_by: r
            .acknowledged_by
            .iter()
            .map(|&n| pool.node(n).display.clone())
            .collect(),
    };
    let mut resp = (StatusCode::OK, axum::Json(body)).into_response();
    resp.headers_mut().insert(header::ETAG, etag(r.version));
    resp
}

pub async fn get(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    q: Result<Query<KvParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (key, level) = key_and_level_without_ttl(&method, &uri, &state, q)?;
    let conditions = Conditions::from_headers(&headers)?;
    let Some(found) = state.store.get(&key, level).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such key",
        ));
    };
    let mut resp = match conditions.for_read(found.version) {
        ReadCondition::Serve => {
            let mut resp = (StatusCode::OK, found.value).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            resp
        }
        ReadCondition::NotModified => StatusCode::NOT_MODIFIED.into_response(),
        ReadCondition::PreconditionFailed => {
            return Err(StoreError::PreconditionFailed {
                current: Some(found.version),
            }
            .into());
        }
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag(found.version));
    if let Some(at) = found.expires_at_ms {
        h.insert("x-quorumd-expires-at-ms", HeaderValue::from(at));
    }
    Ok(resp)
}

pub async fn put(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    q: Result<Query<KvParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = key_from(&uri, &state)?;
    let p = params(&Method::PUT, q)?;
    let level = consistency(&p, &state)?;
    let ttl = match p.ttl_ms {
        None => None,
        Some(ms) if ms == 0 || ms > MAX_TTL_MS => {
            return Err(ApiError::bad_request(format!(
                "ttl_ms must be between 1 and {MAX_TTL_MS}"
            )));
        }
        Some(ms) => Some(Duration::from_millis(ms)),
    };
    let cond = Conditions::from_headers(&headers)?;
    let body = body.map_err(|e| body_error(e, &state))?;
    let receipt = cond
        .apply(
            || current_version(&state, &key, level),
            |pinned| state.store.put(&key, &body, ttl, level, pinned),
        )
        .await?;
    Ok(receipt_response(&state, receipt))
}

pub async fn delete(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    q: Result<Query<KvParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (key, level) = key_and_level_without_ttl(&Method::DELETE, &uri, &state, q)?;
    let cond = Conditions::from_headers(&headers)?;
    let receipt = cond
        .apply(
            || current_version(&state, &key, level),
            |pinned| state.store.delete(&key, level, pinned),
        )
        .await?;
    Ok(receipt_response(&state, receipt))
}

/// The key's live version at `level`, for a condition the store cannot check on its own.
async fn current_version(
    state: &AppState,
    key: &[u8],
    level: Consistency,
) -> Result<Option<Version>, StoreError> {
    Ok(state.store.get(key, level).await?.map(|f| f.version))
}

pub(super) fn body_error(e: BytesRejection, state: &AppState) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        let limit = state.http.max_body_bytes;
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body exceeds the limit of {limit} bytes"),
        )
        .with("limit_bytes", json!(limit))
    } else {
        ApiError::bad_request(format!("cannot read the body: {}", e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_is_byte_exact() {
        assert_eq!(percent_decode("a%2Fb%00%ff").unwrap(), b"a/b\x00\xff");
        assert_eq!(percent_decode("plain").unwrap(), b"plain");
        for bad in ["%", "%4", "%zz", "a%g1"] {
            assert!(percent_decode(bad).is_err(), "{bad}");
        }
    }
}
