//! `GET /`: the dashboard, one page with its script and styles inline, compiled into the
//! binary (no CDN, works offline). It draws itself from `GET /v1/events`.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("dashboard.html");

pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}
