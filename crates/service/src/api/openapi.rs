//! `GET /openapi.json`: the OpenAPI 3.1 description of every route in [`super::router`],
//! kept as a JSON file next to the handlers (`openapi.json`) and compiled into the binary.
//! `info.version` is set to this crate's version when served, so it never goes stale.
//! tests/openapi.rs checks that the document and the router list the same operations and
//! validates the document against the OpenAPI 3.1 schema.

use axum::http::header;
use axum::response::IntoResponse;
use std::sync::LazyLock;

const SOURCE: &str = include_str!("openapi.json");

/// The document as served: the embedded file with `info.version` filled in.
pub fn document() -> &'static str {
    static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
        let mut doc: serde_json::Value = serde_json::from_str(SOURCE)
            .expect("crates/service/src/api/openapi.json is valid JSON");
        doc["info"]["version"] = env!("CARGO_PKG_VERSION").into();
        doc.to_string()
    });
    &DOCUMENT
}

pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_parses_and_carries_the_crate_version() {
        let doc: serde_json::Value = serde_json::from_str(super::document()).unwrap();
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    }
}
