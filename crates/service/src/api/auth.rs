//! The authentication layer of the HTTP API: `Authorization: Bearer <token>` checked against
//! the shared token store. GET and HEAD need a `read` token, every other method a `write`
//! token. `/healthz` and `/readyz` stay open for probes, `/metrics` unless configured, `/`
//! (the dashboard page itself holds no data; what it loads is checked) and `/openapi.json` (it
//! describes the API and holds no data; tools fetch it before they have a token). Reads may
//! carry the token as `?access_token=` instead, because a browser's EventSource cannot send
//! headers.

use super::error::ApiError;
use crate::auth::{Scope, Tokens};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

/// Wraps every route of `router` (added before this call) in the check, when auth is on.
pub fn protect(router: Router, tokens: Arc<Tokens>) -> Router {
    if !tokens.enabled() {
        return router;
    }
    router.layer(middleware::from_fn_with_state(tokens, check))
}

/// The scope a request needs, or `None` for the endpoints that stay open.
fn needed_scope(tokens: &Tokens, method: &Method, path: &str) -> Option<Scope> {
    match path {
        "/healthz" | "/readyz" | "/" | "/openapi.json" => None,
        "/metrics" if !tokens.protect_metrics() => None,
        _ if method == Method::GET || method == Method::HEAD => Some(Scope::Read),
        _ => Some(Scope::Write),
    }
}

/// The token of an `Authorization: Bearer` header. The scheme is case-insensitive (RFC 7235).
fn bearer(request: &Request) -> Option<&[u8]> {
    let value = request.headers().get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at(value.iter().position(|b| *b == b' ')?);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| rest.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// The `access_token` query parameter, for reads only (a token in a URL may end up in logs
/// and browser history; writes must use the header).
fn query_token(request: &Request) -> Option<Vec<u8>> {
    let query = request.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "access_token")
        .map(|(_, value)| value.into_owned().into_bytes())
        .filter(|t| !t.is_empty())
}

/// The handlers' side of `?access_token=`: a handler with its own query parameters lists it
/// beside them, and accepts it on reads (this layer has checked it), refuses it on other
/// methods with a 400 that says where the token goes, whether auth is on or not.
pub(super) fn query_token_allowed(method: &Method, present: bool) -> Result<(), ApiError> {
    if present && method != Method::GET && method != Method::HEAD {
        return Err(ApiError::bad_request(format!(
            "access_token is accepted on reads only; send the token of a {method} in an \
             `Authorization: Bearer <token>` header"
        )));
    }
    Ok(())
}

fn unauthorized(message: &str, challenge: &'static str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

async fn check(State(tokens): State<Arc<Tokens>>, request: Request, next: Next) -> Response {
    let Some(needed) = needed_scope(&tokens, request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let from_query = (needed == Scope::Read)
        .then(|| query_token(&request))
        .flatten();
    let Some(presented) = bearer(&request).map(<[u8]>::to_vec).or(from_query) else {
        return unauthorized(
            "this endpoint needs an `Authorization: Bearer <token>` header (reads also accept `?access_token=`)",
            "Bearer realm=\"quorumd\"",
        );
    };
    match tokens.lookup(&presented) {
        None => unauthorized(
            "the bearer token is not valid",
            "Bearer realm=\"quorumd\", error=\"invalid_token\"",
        ),
        Some((name, scope)) if !scope.allows(needed) => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "token {name:?} has scope {}; {} {} needs {}",
                scope.as_str(),
                request.method(),
                request.uri().path(),
                needed.as_str()
            ),
        )
        .with("required_scope", json!(needed.as_str()))
        .with("token_scope", json!(scope.as_str()))
        .into_response(),
        Some(_) => next.run(request).await,
    }
}
