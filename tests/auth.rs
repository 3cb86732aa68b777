//! HTTP authentication against a running service: missing, unknown and wrongly scoped tokens,
//! open probe endpoints, and token rotation by SIGHUP (a broken file keeps the old tokens).

use quorumd_testkit::cluster as common;

use common::{TestCluster, wait_until};
use quorumd::auth::{Scope, TokenEntry};
use reqwest::StatusCode;
use std::path::Path;
use std::time::Duration;

const READER: &str = "reader-token-0123456789abcdef";
const WRITER: &str = "writer-token-0123456789abcdef";

fn tokens_file(path: &Path, tokens: &[(&str, &str)]) {
    let body: String = tokens
        .iter()
        .map(|(t, scope)| {
            format!("[[tokens]]\nname = \"file\"\ntoken = \"{t}\"\nscope = \"{scope}\"\n")
        })
        .collect();
    std::fs::write(path, body).unwrap();
}

async fn start(file: &Path, protect_metrics: bool) -> TestCluster {
    let file = file.to_string_lossy().to_string();
    TestCluster::start_with(1, move |cfg| {
        cfg.auth.enabled = true;
        cfg.auth.protect_metrics = protect_metrics;
        cfg.auth.tokens.push(TokenEntry {
            name: "inline-reader".into(),
            token: READER.into(),
            scope: Scope::Read,
        });
        cfg.auth.tokens_file = file;
    })
    .await
}

/// The service with a tokens file that names the writer (the directory holds the file).
async fn start_with_writer(protect_metrics: bool) -> (tempfile::TempDir, TestCluster) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.toml");
    tokens_file(&file, &[(WRITER, "write")]);
    let tc = start(&file, protect_metrics).await;
    (dir, tc)
}

async fn send(
    tc: &TestCluster,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let mut req = tc.http.request(method, format!("{}{path}", tc.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("http request")
}

async fn error_code(r: reqwest::Response) -> String {
    let v: serde_json::Value = r.json().await.expect("json error body");
    v["error"]["code"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn tokens_and_scopes_are_enforced() {
    let (_dir, tc) = start_with_writer(false).await;
    use reqwest::Method as M;

    // No token: 401 with a Bearer challenge, the JSON error shape, and nothing written.
    let r = send(&tc, M::PUT, "/v1/kv/a", None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert_eq!(error_code(r).await, "unauthorized");
    assert_eq!(tc.raw_value(0, b"a").await, None);

    // Unknown token, a token with a trailing byte, another scheme: 401.
    for header in [
        "Bearer not-a-valid-token-at-all".to_string(),
        format!("Bearer {WRITER}x"),
        format!("Basic {WRITER}"),
    ] {
        let r = tc
            .http
            .get(tc.kv_url("a", ""))
            .header("authorization", header.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{header}");
    }

    // A read token reads but cannot write or start a sweep: 403.
    let r = send(&tc, M::PUT, "/v1/kv/a", Some(READER)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    assert_eq!(body["error"]["required_scope"], "write");
    assert!(
        !body.to_string().contains(READER),
        "tokens are never echoed"
    );
    let r = send(&tc, M::POST, "/v1/sweeps", Some(READER)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = send(&tc, M::DELETE, "/v1/kv/a", Some(READER)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // A write token writes; both read.
    let r = tc
        .http
        .put(tc.kv_url("a", ""))
        .bearer_auth(WRITER)
        .body("v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for t in [READER, WRITER] {
        let r = send(&tc, M::GET, "/v1/kv/a", Some(t)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.bytes().await.unwrap().as_ref(), b"v1");
        let r = send(&tc, M::GET, "/v1/status", Some(t)).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = send(&tc, M::GET, "/v1/status", None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The scheme is case-insensitive.
    let r = tc
        .http
        .get(tc.kv_url("a", ""))
        .header("authorization", format!("bearer {READER}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Probes stay open; unknown paths are still protected (no probing for endpoints).
    assert_eq!(
        send(&tc, M::GET, "/healthz", None).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&tc, M::GET, "/readyz", None).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&tc, M::GET, "/no/such/thing", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // /metrics is open by default: whatever answers (404 until the metrics endpoint
    // exists), it is not the auth layer.
    assert_ne!(
        send(&tc, M::GET, "/metrics", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    tc.shutdown().await;
}

#[tokio::test]
async fn metrics_can_be_protected() {
    let (_dir, tc) = start_with_writer(true).await;
    let r = send(&tc, reqwest::Method::GET, "/metrics", None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = send(&tc, reqwest::Method::GET, "/metrics", Some(READER)).await;
    assert_ne!(r.status(), StatusCode::UNAUTHORIZED);
    assert_ne!(r.status(), StatusCode::FORBIDDEN);
    tc.shutdown().await;
}

/// The dashboard page is open (it holds no data); what it loads takes the token from the query,
/// for reads only, because a browser's EventSource cannot send headers.
#[tokio::test]
async fn the_dashboard_page_is_open_and_reads_accept_a_query_token() {
    let (_dir, tc) = start_with_writer(false).await;
    use reqwest::Method as M;
    let page = send(&tc, M::GET, "/", None).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("access_token"));
    let r = send(&tc, M::GET, "/v1/status", None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = send(
        &tc,
        M::GET,
        &format!("/v1/status?access_token={READER}"),
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = send(
        &tc,
        M::GET,
        "/v1/status?access_token=wrong-token-0123456789",
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The event stream answers with a token in the query (headers arrive before any event).
    let r = send(
        &tc,
        M::GET,
        &format!("/v1/events?access_token={READER}"),
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    drop(r);
    // Writes never take the token from the URL.
    let r = send(
        &tc,
        M::PUT,
        &format!("/v1/kv/q?access_token={WRITER}"),
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(tc.raw_value(0, b"q").await, None);

    // The key-value and CRDT reads take it too (issue 18: they answered 400).
    let r = tc
        .http
        .put(format!("{}/v1/kv/q", tc.base))
        .bearer_auth(WRITER)
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Acknowledged before the last node applies it: wait for it on node 0, where the refused
    // write below must leave it.
    wait_until(Duration::from_secs(5), "q on node 0", || async {
        tc.raw_value(0, b"q").await.as_deref() == Some(&b"v"[..])
    })
    .await;
    let r = send(
        &tc,
        M::GET,
        &format!("/v1/kv/q?access_token={READER}"),
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "v");
    for path in ["/v1/counters/c", "/v1/sets/s", "/v1/maps/m"] {
        let r = send(
            &tc,
            M::GET,
            &format!("{path}?consistency=quorum&access_token={READER}"),
            None,
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    // Writes do not accept it beside the header either: the handler says where it goes.
    let r = send(
        &tc,
        M::PUT,
        &format!("/v1/kv/q?access_token={WRITER}"),
        Some(WRITER),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("Authorization"));
    assert_eq!(tc.raw_value(0, b"q").await.as_deref(), Some(&b"v"[..]));
    tc.shutdown().await;
}

/// SIGHUP to this process: every service started by this test binary reloads its file.
fn sighup() {
    // SAFETY: kill(2) on our own pid with a signal the service handles.
    let rc = unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
    assert_eq!(rc, 0, "kill(SIGHUP)");
}

#[tokio::test]
async fn sighup_rotates_tokens_and_a_bad_file_keeps_the_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.toml");
    let old = "old-writer-token-0123456789";
    let new = "new-writer-token-0123456789";
    tokens_file(&file, &[(old, "write")]);
    let tc = start(&file, false).await;
    let status_with = |t: &'static str| {
        let tc = &tc;
        async move {
            send(tc, reqwest::Method::DELETE, "/v1/kv/rotated", Some(t))
                .await
                .status()
        }
    };
    assert_eq!(status_with(old).await, StatusCode::OK);
    assert_eq!(status_with(new).await, StatusCode::UNAUTHORIZED);

    tokens_file(&file, &[(new, "write")]);
    sighup();
    wait_until(Duration::from_secs(10), "new token accepted", || async {
        status_with(new).await == StatusCode::OK
    })
    .await;
    assert_eq!(
        status_with(old).await,
        StatusCode::UNAUTHORIZED,
        "old token revoked"
    );

    // A broken file: once its reload has run, the tokens in force still work.
    std::fs::write(&file, "[[tokens]]\ntoken = 17\n").unwrap();
    let before = tc.app().auth().reloads();
    sighup();
    wait_until(
        Duration::from_secs(10),
        "reload of the broken file",
        || async { tc.app().auth().reloads() > before },
    )
    .await;
    assert_eq!(status_with(new).await, StatusCode::OK, "old tokens kept");
    // The failed reload is the reloader worker's failure, shown in the status.
    let reloader = || async {
        let r = send(&tc, reqwest::Method::GET, "/v1/status", Some(READER)).await;
        assert_eq!(r.status(), StatusCode::OK);
        let body: serde_json::Value = r.json().await.unwrap();
        body["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == "auth:reload")
            .cloned()
            .expect("the auth:reload worker is listed")
    };
    wait_until(Duration::from_secs(10), "failed reload counted", || async {
        reloader().await["failures"] == 1
    })
    .await;
    let failed = reloader().await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(
        failed["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{failed}"
    );
    let newest = "newest-writer-token-0123456789";
    tokens_file(&file, &[(newest, "write")]);
    sighup();
    wait_until(Duration::from_secs(10), "newest token accepted", || async {
        status_with(newest).await == StatusCode::OK
    })
    .await;
    assert_eq!(status_with(new).await, StatusCode::UNAUTHORIZED);
    wait_until(Duration::from_secs(10), "reloader idle again", || async {
        let w = reloader().await;
        w["state"] == "idle" && w["runs"] == 3 && w["failures"] == 1
    })
    .await;
    // Inline tokens survive every reload.
    let r = send(&tc, reqwest::Method::GET, "/v1/kv/rotated", Some(READER)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    tc.shutdown().await;
}
