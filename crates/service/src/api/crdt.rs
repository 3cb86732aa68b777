//! `/v1/counters/{name}`, `/v1/sets/{name}`, `/v1/maps/{name}`: the CRDTs over HTTP. Names are
//! the Redis keys the values live under (so `/v1/kv/{name}` on the same name is refused with
//! 409), one path segment each.

use super::AppState;
use super::error::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use quorumd_core::quorum::Consistency;
use quorumd_replication::crdt_store::{CrdtError, CrdtReceipt};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelParams {
    consistency: Option<String>,
    /// The read token, for clients that cannot send headers (checked by the auth layer).
    access_token: Option<String>,
}

type Level = Result<Query<LevelParams>, QueryRejection>;
type Body = Result<Bytes, BytesRejection>;

impl From<CrdtError> for ApiError {
    fn from(e: CrdtError) -> Self {
        let message = e.to_string();
        match e {
            CrdtError::Store(s) => s.into(),
            CrdtError::KindConflict { wanted, holds } => {
                ApiError::new(StatusCode::CONFLICT, "kind_conflict", message)
                    .with("wanted", json!(wanted.name()))
                    .with("holds", json!(holds))
            }
            CrdtError::Overflow(_) => ApiError::new(StatusCode::CONFLICT, "overflow", message),
            CrdtError::IdempotencyConflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "idempotency_conflict", message)
            }
            CrdtError::NotAnInteger => {
                ApiError::new(StatusCode::CONFLICT, "not_an_integer", message)
            }
            CrdtError::Corrupt(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "corrupt_state", message)
            }
        }
    }
}

fn name_of(
    path: Result<Path<String>, PathRejection>,
    state: &AppState,
) -> Result<Vec<u8>, ApiError> {
    let Path(name) =
        path.map_err(|e| ApiError::bad_request(format!("invalid name: {}", e.body_text())))?;
    check_text("name", &name, state.http.max_key_bytes)?;
    Ok(name.into_bytes())
}

/// Names and fields: non-empty, within the key limit, no control characters.
fn check_text(what: &str, s: &str, max: usize) -> Result<(), ApiError> {
    if s.is_empty() {
        return Err(ApiError::bad_request(format!(
            "the {what} must not be empty"
        )));
    }
    if s.len() > max {
        return Err(ApiError::bad_request(format!(
            "the {what} is {} bytes; the limit is {max}",
            s.len()
        ))
        .with("limit_bytes", json!(max)));
    }
    if s.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "the {what} must not contain control characters"
        )));
    }
    Ok(())
}

/// The name and the consistency level of a request, both checked (the name first) before the
/// body is read.
pub struct Target(Vec<u8>, Consistency);

impl FromRequestParts<AppState> for Target {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let path = Path::<String>::from_request_parts(parts, state).await;
        let q = Query::<LevelParams>::from_request_parts(parts, state).await;
        Ok(Target(
            name_of(path, state)?,
            level_of(&parts.method, q, state)?,
        ))
    }
}

fn level_of(method: &Method, q: Level, state: &AppState) -> Result<Consistency, ApiError> {
    let Query(p) =
        q.map_err(|e| ApiError::bad_request(format!("invalid query string: {}", e.body_text())))?;
    super::auth::query_token_allowed(method, p.access_token.is_some())?;
    match p.consistency {
        None => Ok(state.default_consistency),
        Some(s) => s.parse().map_err(ApiError::bad_request),
    }
}

fn json_body<T: DeserializeOwned>(body: Body, state: &AppState) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| super::kv::body_error(e, state))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// `{"acknowledged_by": [...]}`, with a named count when given.
fn receipt(r: &CrdtReceipt, count: Option<(&str, usize)>) -> Json<Value> {
    let mut body = json!({ "acknowledged_by": r.acknowledged_by });
    if let Some((name, n)) = count {
        body[name] = json!(n);
    }
    Json(body)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A counter value as a JSON number; past i64 (possible only through concurrent increments
/// that each stayed in range) as a decimal string.
fn counter_value(v: i128) -> Value {
    i64::try_from(v).map_or_else(|_| json!(v.to_string()), |v| json!(v))
}

// ---- counters ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CounterAdd {
    delta: i64,
    /// Same as the `Idempotency-Key` header.
    request_id: Option<String>,
}

pub async fn counter_get(
    State(state): State<AppState>,
    Target(name, level): Target,
) -> Result<Json<Value>, ApiError> {
    let value = state.crdts.counter_get(&name, level).await?;
    Ok(Json(json!({ "value": counter_value(value) })))
}

pub async fn counter_add(
    State(state): State<AppState>,
    Target(name, level): Target,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let req: CounterAdd = json_body(body, &state)?;
    let header = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::bad_request("Idempotency-Key: not valid text"))?
                .to_string(),
        ),
        None => None,
    };
    let key = match (header, req.request_id) {
        (Some(h), Some(r)) if h != r => {
            return Err(ApiError::bad_request(
                "the Idempotency-Key header and request_id differ",
            ));
        }
        (h, r) => h.or(r),
    };
    if let Some(k) = &key {
        check_text("idempotency key", k, 256)?;
    }
    let r = state
        .crdts
        .counter_add(&name, req.delta, level, key.as_deref().map(str::as_bytes))
        .await?;
    Ok(Json(json!({
        "value": counter_value(r.value),
        "replayed": r.replayed,
        "acknowledged_by": r.acknowledged_by,
    })))
}

// ---- sets ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Members {
    members: Vec<String>,
}

/// The body of a set change: `{"members": [...]}`, at least one.
pub struct SetMembers(Vec<Vec<u8>>);

impl FromRequest<AppState> for SetMembers {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let body = Bytes::from_request(req, state).await;
        let m: Members = json_body(body, state)?;
        if m.members.is_empty() {
            return Err(ApiError::bad_request("members must not be empty"));
        }
        Ok(SetMembers(
            m.members.into_iter().map(String::into_bytes).collect(),
        ))
    }
}

pub async fn set_get(
    State(state): State<AppState>,
    Target(name, level): Target,
) -> Result<Json<Value>, ApiError> {
    let members = state.crdts.set_members(&name, level).await?;
    let members: Vec<String> = members.iter().map(|m| text(m)).collect();
    Ok(Json(json!({ "members": members })))
}

pub async fn set_add(
    State(state): State<AppState>,
    Target(name, level): Target,
    SetMembers(mut members): SetMembers,
) -> Result<Json<Value>, ApiError> {
    // A member named twice is added once, and counted once.
    members.sort_unstable();
    members.dedup();
    let r = state.crdts.set_add(&name, &members, level).await?;
    Ok(receipt(&r, Some(("added", members.len()))))
}

pub async fn set_remove(
    State(state): State<AppState>,
    Target(name, level): Target,
    SetMembers(members): SetMembers,
) -> Result<Json<Value>, ApiError> {
    let (removed, r) = state.crdts.set_remove(&name, &members, level).await?;
    Ok(receipt(&r, Some(("removed", removed))))
}

// ---- maps ----

pub async fn map_get(
    State(state): State<AppState>,
    Target(name, level): Target,
) -> Result<Json<Value>, ApiError> {
    let entries = state.crdts.map_get(&name, level).await?;
    let object: Map<String, Value> = entries
        .iter()
        .map(|(f, v)| (text(f), Value::String(text(v))))
        .collect();
    Ok(Json(Value::Object(object)))
}

/// `{"field": "value", "other": null}`: strings set fields, `null` deletes them.
pub async fn map_patch(
    State(state): State<AppState>,
    Target(name, level): Target,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let patch: Map<String, Value> = json_body(body, &state)?;
    if patch.is_empty() {
        return Err(ApiError::bad_request(
            "the patch must set or delete at least one field",
        ));
    }
    let mut fields = Vec::with_capacity(patch.len());
    for (f, v) in patch {
        check_text("field name", &f, state.http.max_key_bytes)?;
        let value = match v {
            Value::String(s) => Some(s.into_bytes()),
            Value::Null => None,
            other => {
                return Err(ApiError::bad_request(format!(
                    "field {f:?}: values are strings (or null to delete), not {other}"
                )));
            }
        };
        fields.push((f.into_bytes(), value));
    }
    let r = state.crdts.map_set(&name, fields, level).await?;
    Ok(receipt(&r, None))
}

pub async fn map_delete_field(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    q: Level,
) -> Result<Json<Value>, ApiError> {
    let Path((name, field)) =
        path.map_err(|e| ApiError::bad_request(format!("invalid path: {}", e.body_text())))?;
    check_text("name", &name, state.http.max_key_bytes)?;
    check_text("field name", &field, state.http.max_key_bytes)?;
    let level = level_of(&Method::DELETE, q, &state)?;
    let r = state
        .crdts
        .map_set(name.as_bytes(), vec![(field.into_bytes(), None)], level)
        .await?;
    Ok(receipt(&r, None))
}
