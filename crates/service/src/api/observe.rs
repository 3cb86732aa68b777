//! Observability endpoints: `GET /metrics` (Prometheus text), `GET /v1/sweeps/buckets` (the
//! bucket grid now), and the middleware that measures every request.

use super::AppState;
use super::error::ApiError;
use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use quorumd_core::quorum::Consistency;
use quorumd_node::live::BucketState;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;
use tracing::Instrument;

/// Content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    quorumd_node::events::NodesObserved {
        nodes: &state.store.pool().status(),
    }
    .emit();
    let text = crate::exposition::render().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics_unavailable",
            "another metrics recorder was installed in this process first",
        )
    })?;
    Ok(([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text).into_response())
}

/// The state of every bucket, for a page that opens while a sweep runs.
pub async fn buckets(State(state): State<AppState>) -> Json<Value> {
    let states = state.store.pool().live().bucket_states();
    let count = |s: BucketState| states.iter().filter(|b| **b == s).count();
    let snapshot = state
        .store
        .pool()
        .live()
        .snapshot(quorumd_core::hlc::wall_clock_ms());
    Json(json!({
        "buckets": states.len(),
        "states": snapshot.buckets,
        "counts": {
            "in_sync": count(BucketState::InSync),
            "differing": count(BucketState::Differing),
            "repairing": count(BucketState::Repairing),
            "repaired": count(BucketState::Repaired),
        },
    }))
}

/// Counts and times every request by method, route pattern, consistency and result, inside a
/// tracing span named after the route.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // The route pattern, never the raw path: keys must not become label values.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| interned(m.as_str()));
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "PUT" => "PUT",
        "POST" => "POST",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        _ => "other",
    };
    let consistency = consistency_label(route, req.uri().query(), state.default_consistency);
    // At debug, as the Redis protocol's operation spans are (docs/BENCHMARKS.md, "Redis
    // protocol": an enabled span per operation was part of a measured 19% of a GET's CPU).
    let span = tracing::debug_span!("http", method, route = %route);
    let started = Instant::now();
    let response = next.run(req).instrument(span).await;
    crate::events::HttpRequestServed {
        method,
        route,
        consistency,
        status: response.status().as_u16(),
        elapsed: started.elapsed(),
    }
    .emit();
    response
}

/// `route` as a `&'static str`, so that metric labels need no copy per request. The router's
/// patterns are a fixed, small set, so each is leaked once.
fn interned(route: &str) -> &'static str {
    static ROUTES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut seen = ROUTES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(known) = seen.get(route) {
        return known;
    }
    let leaked: &'static str = Box::leak(route.to_owned().into_boxed_str());
    seen.insert(leaked);
    leaked
}

/// The consistency level a key-value request asked for (or got by default); `none` for
/// endpoints without one, `invalid` for a value that is not a level.
fn consistency_label(route: &str, query: Option<&str>, default: Consistency) -> &'static str {
    if !route.starts_with("/v1/kv/") {
        return "none";
    }
    let asked = query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("consistency="));
    match asked {
        None => default.as_str(),
        Some(raw) => raw
            .parse::<Consistency>()
            .map_or("invalid", Consistency::as_str),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_labels_stay_few() {
        let d = Consistency::Quorum;
        assert_eq!(consistency_label("/v1/status", None, d), "none");
        assert_eq!(consistency_label("/v1/kv/{*key}", None, d), "quorum");
        assert_eq!(
            consistency_label("/v1/kv/{*key}", Some("ttl_ms=5&consistency=all"), d),
            "all"
        );
        assert_eq!(
            consistency_label("/v1/kv/{*key}", Some("consistency=whatever"), d),
            "invalid"
        );
    }
}
