//! The HTTP surface. Handlers parse and validate input, call the store, and shape answers;
//! they never talk to Redis.

pub mod auth;
mod body;
mod conditional;
mod crdt;
mod dashboard;
pub mod demo;
pub mod error;
mod events_stream;
mod kv;
mod locks;
mod observe;
mod openapi;
mod queues;
mod status;
mod sweeps;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use error::ApiError;
use quorumd_core::config::HttpConfig;
use quorumd_core::quorum::Consistency;
use quorumd_replication::store::VersionedStore;
use std::sync::Arc;
use std::time::Instant;

pub use kv::percent_decode;

/// Who this instance is, for the status API.
#[derive(Debug, Clone)]
pub struct InstanceInfo {
    pub id: String,
    pub writer_id: u64,
    pub started: Instant,
}

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<VersionedStore>,
    pub http: HttpConfig,
    pub default_consistency: Consistency,
    pub instance: Arc<InstanceInfo>,
    pub sweeper: Arc<quorumd_replication::sync::Sweeper>,
    pub locks: Arc<quorumd_replication::locks::LockService>,
    pub queues: Arc<quorumd_replication::queue::QueueService>,
    pub crdts: Arc<quorumd_replication::crdt_store::CrdtStore>,
    /// Set only by `quorumd demo`: the demo endpoints exist only then.
    pub demo: Option<Arc<demo::DemoInfo>>,
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.http.max_body_bytes;
    let demo_routes = if state.demo.is_some() {
        Router::new()
            .route("/v1/demo/wipe", axum::routing::post(demo::wipe))
            .route("/v1/demo/diverge", axum::routing::post(demo::diverge))
    } else {
        Router::new()
    };
    // The routes that take no query parameter of their own. The others parse theirs with
    // `deny_unknown_fields`: a misspelt parameter is refused everywhere, never ignored.
    let without_params = Router::new()
        .route("/v1/locks/{name}", get(locks::inspect))
        .route("/v1/locks/{name}/acquire", post(locks::acquire))
        .route("/v1/locks/{name}/extend", post(locks::extend))
        .route("/v1/locks/{name}/release", post(locks::release))
        .route("/v1/queues/{name}", get(queues::depths))
        .route("/v1/queues/{name}/items", post(queues::put))
        .route("/v1/queues/{name}/claim", post(queues::claim))
        .route(
            "/v1/queues/{name}/items/{id}/{action}",
            post(queues::item_action),
        )
        .route("/v1/status", get(status::status))
        .route("/v1/sweeps", axum::routing::post(sweeps::start))
        .route("/v1/sweeps/current", get(sweeps::current))
        .route("/healthz", get(status::healthz))
        .route("/readyz", get(status::readyz))
        .route("/", get(dashboard::page))
        .route("/metrics", get(observe::metrics))
        .route("/v1/events", get(events_stream::events))
        .route("/v1/sweeps/buckets", get(observe::buckets))
        .route("/openapi.json", get(openapi::serve))
        .merge(demo_routes)
        .route_layer(axum::middleware::from_fn(no_query_params));
    Router::new()
        .route(
            "/v1/kv/{*key}",
            get(kv::get).put(kv::put).delete(kv::delete),
        )
        .route(
            "/v1/counters/{name}",
            get(crdt::counter_get).post(crdt::counter_add),
        )
        .route("/v1/sets/{name}", get(crdt::set_get))
        .route("/v1/sets/{name}/add", axum::routing::post(crdt::set_add))
        .route(
            "/v1/sets/{name}/remove",
            axum::routing::post(crdt::set_remove),
        )
        .route("/v1/maps/{name}", get(crdt::map_get).patch(crdt::map_patch))
        .route(
            "/v1/maps/{name}/fields/{field}",
            axum::routing::delete(crdt::map_delete_field),
        )
        .merge(without_params)
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this endpoint",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::track,
        ))
        .with_state(state)
}

/// For the routes without query parameters of their own: any parameter but `access_token` is
/// refused, and `access_token` on a write (it belongs in the `Authorization` header there).
async fn no_query_params(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let query = request.uri().query().unwrap_or_default();
    for (name, _) in url::form_urlencoded::parse(query.as_bytes()) {
        let refused = if name == "access_token" {
            auth::query_token_allowed(request.method(), true).err()
        } else {
            Some(ApiError::bad_request(format!(
                "invalid query string: unknown parameter `{name}`: this endpoint takes none \
                 (reads accept `access_token`)"
            )))
        };
        if let Some(e) = refused {
            return e.into_response();
        }
    }
    next.run(request).await
}
