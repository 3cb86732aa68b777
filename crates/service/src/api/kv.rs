//! `GET|PUT|DELETE /v1/kv/{key}`: raw bytes in and out, version in `ETag`, compare-and-set
//! with `If-Match` / `If-None-Match`.

use super::AppState;
use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use quorumd_core::hlc::Version;
use quorumd_core::quorum::Consistency;
use quorumd_replication::store::{Precondition, WriteReceipt};
use serde::Deserialize;
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

fn params(q: Result<Query<KvParams>, QueryRejection>) -> Result<KvParams, ApiError> {
    q.map(|Query(p)| p)
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {}", e.body_text())))
}

fn consistency(p: &KvParams, state: &AppState) -> Result<Consistency, ApiError> {
    match &p.consistency {
        None => Ok(state.default_consistency),
        Some(s) => s.parse().map_err(ApiError::bad_request),
    }
}

/// GET and DELETE take a key and a level; a TTL makes no sense for them.
fn key_and_level_without_ttl(
    uri: &Uri,
    state: &AppState,
    q: Result<Query<KvParams>, QueryRejection>,
) -> Result<(Vec<u8>, Consistency), ApiError> {
    let key = key_from(uri, state)?;
    let p = params(q)?;
    if p.ttl_ms.is_some() {
        return Err(ApiError::bad_request("ttl_ms applies to PUT only"));
    }
    Ok((key, consistency(&p, state)?))
}

fn etag(v: Version) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{}\"", v.encode()))
        .unwrap_or(HeaderValue::from_static("\"invalid\""))
}

/// Reads `If-Match` / `If-None-Match`. Only a single entity tag or `*` is accepted.
fn precondition(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    let text = |name: &header::HeaderName| -> Result<Option<String>, ApiError> {
        let mut values = headers.get_all(name).iter();
        let Some(first) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(ApiError::bad_request(format!(
                "{name}: give a single entity tag"
            )));
        }
        let s = first
            .to_str()
            .map_err(|_| ApiError::bad_request(format!("{name}: not valid text")))?;
        Ok(Some(s.trim().to_string()))
    };
    match (text(&header::IF_MATCH)?, text(&header::IF_NONE_MATCH)?) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give either If-Match or If-None-Match, not both",
        )),
        (None, None) => Ok(Precondition::None),
        (Some(m), None) if m == "*" => Ok(Precondition::IfExists),
        (Some(m), None) => {
            let tag = m
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .unwrap_or(&m);
            tag.parse::<Version>()
                .map(Precondition::IfMatch)
                .map_err(|e| ApiError::bad_request(format!("If-Match: {e}")))
        }
        (None, Some(m)) if m == "*" => Ok(Precondition::IfAbsent),
        (None, Some(_)) => Err(ApiError::bad_request("If-None-Match: only * is supported")),
    }
}

fn receipt_response(r: WriteReceipt) -> Response {
    let body = json!({
        "version": r.version.encode(),
        "expires_at_ms": r.expires_at_ms,
        "acknowledged_by": r.acknowledged_by,
    });
    let mut resp = (StatusCode::OK, axum::Json(body)).into_response();
    resp.headers_mut().insert(header::ETAG, etag(r.version));
    resp
}

pub async fn get(
    State(state): State<AppState>,
    uri: Uri,
    q: Result<Query<KvParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (key, level) = key_and_level_without_ttl(&uri, &state, q)?;
    let Some(found) = state.store.get(&key, level).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such key",
        ));
    };
    let mut resp = (StatusCode::OK, found.value).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
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
    let p = params(q)?;
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
    let cond = precondition(&headers)?;
    let body = body.map_err(|e| body_error(e, &state))?;
    let receipt = state.store.put(&key, &body, ttl, level, cond).await?;
    Ok(receipt_response(receipt))
}

pub async fn delete(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    q: Result<Query<KvParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (key, level) = key_and_level_without_ttl(&uri, &state, q)?;
    let cond = precondition(&headers)?;
    let receipt = state.store.delete(&key, level, cond).await?;
    Ok(receipt_response(receipt))
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

    #[test]
    fn preconditions_parse() {
        let mut h = HeaderMap::new();
        assert_eq!(precondition(&h).unwrap(), Precondition::None);
        let v = Version {
            ms: 5,
            counter: 1,
            writer: 2,
        };
        h.insert(
            header::IF_MATCH,
            HeaderValue::from_str(&format!("\"{v}\"")).unwrap(),
        );
        assert_eq!(precondition(&h).unwrap(), Precondition::IfMatch(v));
        h.insert(header::IF_MATCH, HeaderValue::from_static("*"));
        assert_eq!(precondition(&h).unwrap(), Precondition::IfExists);
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(precondition(&h).is_err());
        h.remove(header::IF_MATCH);
        assert_eq!(precondition(&h).unwrap(), Precondition::IfAbsent);
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"x\""));
        assert!(precondition(&h).is_err());
        let mut h = HeaderMap::new();
        h.insert(header::IF_MATCH, HeaderValue::from_static("\"nope\""));
        assert!(precondition(&h).is_err());
    }
}
