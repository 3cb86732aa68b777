//! Key-value API over real redis-server processes: reads, writes, deletes, TTL, CAS, binary
//! data, and the behaviour with nodes killed, paused and stale.

use quorumd_testkit::cluster as common;

use common::{TestCluster, body_json, wait_until};
use quorumd::meta::EntryKind;
use quorumd::quorum::ReadFanout;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

const LEVELS: [&str; 4] = ["one", "quorum", "all", "linearizable"];

/// At `one`, waits until every node holds `value` under `key` (`None`: no value): `one`
/// promises no freshness (docs/GUARANTEES.md), and its read asks a single node, which may not
/// have the write yet. The other levels read their own writes at once.
async fn settled_at_one(tc: &TestCluster, level: &str, key: &str, value: Option<&str>) {
    if level != "one" {
        return;
    }
    let want = value.map(|v| v.as_bytes().to_vec());
    wait_until(
        Duration::from_secs(5),
        "the write at one on every node",
        || async {
            for i in 0..tc.cluster.nodes.len() {
                if tc.raw_value(i, key.as_bytes()).await != want {
                    return false;
                }
            }
            true
        },
    )
    .await;
}

async fn nodes_holding(tc: &TestCluster, key: &[u8], value: &[u8]) -> usize {
    let mut n = 0;
    for i in 0..tc.cluster.nodes.len() {
        if tc.raw_value(i, key).await.as_deref() == Some(value) {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_at_every_level_with_three_and_five_nodes() {
    for n in [3usize, 5] {
        let tc = TestCluster::start(n).await;
        let majority = n / 2 + 1;
        for level in LEVELS {
            let key = format!("k-{level}");
            let q = format!("consistency={level}");
            let r = tc.put(&key, format!("v1-{level}"), &q).await;
            assert_eq!(r.status(), StatusCode::OK, "{n} nodes, {level}");
            let etag = r.headers()["etag"].to_str().unwrap().to_string();
            let body = body_json(r).await;
            let acks = body["acknowledged_by"].as_array().unwrap().len();
            let want = match level {
                "one" => 1,
                "all" => n,
                _ => majority,
            };
            assert!(acks >= want, "{level}: {acks} acks");
            assert_eq!(format!("\"{}\"", body["version"].as_str().unwrap()), etag);

            settled_at_one(&tc, level, &key, Some(&format!("v1-{level}"))).await;
            let r = tc.get(&key, &q).await;
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
            assert_eq!(r.bytes().await.unwrap(), format!("v1-{level}").as_bytes());

            // Every node ends up with the value (background fan-out finishes after the ack).
            wait_until(
                Duration::from_secs(5),
                "all nodes hold the write",
                || async {
                    nodes_holding(&tc, key.as_bytes(), format!("v1-{level}").as_bytes()).await == n
                },
            )
            .await;

            assert_eq!(tc.put(&key, "v2", &q).await.status(), StatusCode::OK);
            settled_at_one(&tc, level, &key, Some("v2")).await;
            assert_eq!(
                tc.get(&key, &q).await.bytes().await.unwrap(),
                "v2".as_bytes()
            );
            assert_eq!(tc.delete(&key, &q).await.status(), StatusCode::OK);
            settled_at_one(&tc, level, &key, None).await;
            let r = tc.get(&key, &q).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND);
            assert_eq!(body_json(r).await["error"]["code"], "not_found");
        }
        // The digest of each node reflects its metadata: identical on all nodes after the same
        // writes. The last deletes (at `quorum`, `linearizable`) are acknowledged before every
        // node applies them: wait for each tombstone everywhere first.
        wait_until(
            Duration::from_secs(5),
            "every delete on every node",
            || async {
                for level in LEVELS {
                    for i in 0..n {
                        let meta = tc.raw_meta(i, format!("k-{level}").as_bytes()).await;
                        if !meta.is_some_and(|m| m.kind == EntryKind::Tombstone) {
                            return false;
                        }
                    }
                }
                true
            },
        )
        .await;
        let mut digests = Vec::new();
        for i in 0..n {
            digests.push(common::bucket_digests(&mut tc.direct(i).await).await);
        }
        assert!(!digests[0].is_empty());
        assert!(digests.iter().all(|d| d == &digests[0]), "{digests:?}");
        tc.shutdown().await;
    }
}

/// Every route refuses a query parameter it does not take, as the key-value routes always did:
/// `POST /v1/queues/q/items?consistency=bogus` used to answer 201, ignoring it. A token in the
/// URL of a write is refused whether auth is on or not.
#[tokio::test]
async fn routes_without_parameters_refuse_unknown_ones() {
    let tc = TestCluster::start(3).await;
    let http = reqwest::Client::new();
    let send = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{}{path}", tc.base))
            .header("content-type", "application/json")
            .body(r#"{"payload": "p"}"#)
            .send()
    };
    use reqwest::Method as M;
    for (method, path) in [
        (M::POST, "/v1/queues/q/items?consistency=bogus"),
        (M::GET, "/v1/queues/q?foo=1"),
        (M::GET, "/v1/locks/l?foo=1"),
        (M::POST, "/v1/locks/l/acquire?ttl_ms=5"),
        (M::GET, "/v1/status?verbose=1"),
        (M::GET, "/v1/sweeps/current?foo=1"),
        (M::GET, "/metrics?format=json"),
    ] {
        let r = send(method.clone(), path).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{method} {path}");
        let body = body_json(r).await;
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("unknown parameter")),
            "{method} {path}: {body}"
        );
    }
    let r = send(M::POST, "/v1/locks/l/acquire?access_token=secret")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(body_json(r).await.to_string().contains("Authorization"));
    let r = send(M::GET, "/v1/status?access_token=anything")
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "a read's token is the auth layer's"
    );
    let r = send(M::POST, "/v1/queues/q/items").await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "no parameter, as before");
    tc.shutdown().await;
}

/// A write at `all` with one node down fails, and its error counts the nodes that applied it:
/// the fan-out decides on the down node's immediate refusal, before the others answer, and the
/// error used to say "0 of 3 required nodes succeeded" for a value both live nodes then held.
/// A node that gives no answer (frozen past the node timeout) is said to maybe hold the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_counts_every_node_that_applied_it() {
    let mut tc = TestCluster::start(3).await;
    tc.cluster.nodes[0].kill();
    tc.wait_health(0, "down").await;
    let r = tc.put("counted", "1", "consistency=all").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let err = body_json(r).await;
    assert_eq!(err["error"]["required"], 3, "{err}");
    assert_eq!(err["error"]["succeeded"], 2, "{err}");
    assert_eq!(err["error"]["nodes"].as_array().unwrap().len(), 1, "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("write: 2 of 3"), "{message}");
    assert!(
        !message.contains("may have applied"),
        "a refusal is an answer: {message}"
    );
    for i in [1, 2] {
        assert_eq!(
            tc.raw_value(i, b"counted").await.as_deref(),
            Some(&b"1"[..])
        );
    }
    tc.cluster.nodes[1].pause();
    let r = tc.put("counted", "2", "consistency=all").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let err = body_json(r).await;
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("timed out after"), "{message}");
    assert!(
        message.ends_with("(the node that gave no answer may have applied it)"),
        "{message}"
    );
    assert!(!message.contains("after 0 ms"), "{message}");
    tc.cluster.nodes[1].resume();
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_down_succeeds_and_no_majority_fails_naming_the_nodes() {
    let mut tc = TestCluster::start(3).await;
    tc.cluster.nodes[0].kill();
    let r = tc.put("a", "1", "").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(tc.get("a", "").await.bytes().await.unwrap(), "1".as_bytes());

    tc.cluster.nodes[1].kill();
    let r = tc.put("a", "2", "").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let err = body_json(r).await;
    assert_eq!(err["error"]["code"], "no_quorum");
    assert_eq!(err["error"]["required"], 2);
    let named: Vec<String> = err["error"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap().to_string())
        .collect();
    for i in [0, 1] {
        assert!(
            named.contains(&tc.cluster.nodes[i].url()),
            "{named:?} should name node {i}"
        );
    }
    assert!(!named.contains(&tc.cluster.nodes[2].url()));
    let r = tc.get("a", "").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    // `one` still serves from the survivor. The failed write may have landed there: a write
    // without its quorum is indeterminate, never rolled back.
    let r = tc.get("a", "consistency=one").await;
    assert_eq!(r.status(), StatusCode::OK);
    let v = r.bytes().await.unwrap();
    assert!(v == "1".as_bytes() || v == "2".as_bytes(), "{v:?}");
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_nodes_time_out_without_blocking_a_majority() {
    let mut tc = TestCluster::start(3).await;
    tc.cluster.nodes[2].pause();
    let started = std::time::Instant::now();
    for i in 0..20 {
        assert_eq!(
            tc.put(&format!("p{i}"), "x", "").await.status(),
            StatusCode::OK
        );
    }
    // A quorum never waits for the paused node: 20 writes take far less than 20 node timeouts.
    assert!(
        started.elapsed() < Duration::from_millis(20 * 400 / 2),
        "{:?}",
        started.elapsed()
    );
    tc.cluster.nodes[1].pause();
    let r = tc.put("p", "x", "").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let err = body_json(r).await;
    let reasons = err["error"]["nodes"].to_string();
    assert!(
        reasons.contains("timed out") || reasons.contains("not connected"),
        "{reasons}"
    );
    tc.cluster.nodes[1].resume();
    tc.cluster.nodes[2].resume();
    tc.wait_health(1, "up").await;
    assert_eq!(tc.put("p", "y", "").await.status(), StatusCode::OK);
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_node_is_repaired_by_a_quorum_read() {
    let mut tc = TestCluster::start(3).await;
    assert_eq!(tc.put("s", "old", "").await.status(), StatusCode::OK);
    wait_until(Duration::from_secs(5), "old everywhere", || async {
        nodes_holding(&tc, b"s", b"old").await == 3
    })
    .await;
    tc.isolate(2).await;
    assert_eq!(tc.put("s", "new", "").await.status(), StatusCode::OK);
    tc.resume_without_hints(2).await;
    assert_eq!(
        tc.raw_value(2, b"s").await.as_deref(),
        Some(&b"old"[..]),
        "node 2 missed the write"
    );
    tc.wait_health(2, "up").await;
    wait_until(Duration::from_secs(10), "read repair of node 2", || async {
        assert_eq!(
            tc.get("s", "").await.bytes().await.unwrap(),
            "new".as_bytes()
        );
        tc.raw_value(2, b"s").await.as_deref() == Some(&b"new"[..])
    })
    .await;
    let (m0, m2) = (
        tc.raw_meta(0, b"s").await.unwrap(),
        tc.raw_meta(2, b"s").await.unwrap(),
    );
    assert_eq!(m0, m2, "repair copies the version, not just the value");
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_key_does_not_come_back_from_a_node_that_missed_the_delete() {
    let mut tc = TestCluster::start(3).await;
    assert_eq!(
        tc.put("d", "alive", "consistency=all").await.status(),
        StatusCode::OK
    );
    tc.isolate(2).await;
    assert_eq!(tc.delete("d", "").await.status(), StatusCode::OK);
    tc.resume_without_hints(2).await;
    tc.wait_health(2, "up").await;
    assert_eq!(tc.raw_value(2, b"d").await.as_deref(), Some(&b"alive"[..]));
    for level in ["quorum", "all", "linearizable"] {
        assert_eq!(
            tc.get("d", &format!("consistency={level}")).await.status(),
            StatusCode::NOT_FOUND,
            "{level}"
        );
    }
    wait_until(
        Duration::from_secs(10),
        "tombstone repaired onto node 2",
        || async {
            let _ = tc.get("d", "consistency=all").await;
            tc.raw_meta(2, b"d")
                .await
                .is_some_and(|m| m.kind == EntryKind::Tombstone)
        },
    )
    .await;
    assert_eq!(
        tc.raw_value(2, b"d").await,
        None,
        "the repaired tombstone removed the value"
    );
    assert_eq!(
        tc.get("d", "consistency=one").await.status(),
        StatusCode::NOT_FOUND
    );
    tc.shutdown().await;
}

async fn pexpiretime(tc: &TestCluster, i: usize, key: &str) -> i64 {
    let mut c = tc.direct(i).await;
    redis::cmd("PEXPIRETIME")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_is_replicated_as_an_absolute_expiry() {
    let mut tc = TestCluster::start(3).await;
    let r = tc.put("t", "v", "ttl_ms=60000&consistency=all").await;
    assert_eq!(r.status(), StatusCode::OK);
    let expires = body_json(r).await["expires_at_ms"].as_i64().unwrap();
    for i in 0..3 {
        assert_eq!(pexpiretime(&tc, i, "t").await, expires, "node {i}");
        assert_eq!(
            tc.raw_meta(i, b"t").await.unwrap().expires_at_ms,
            Some(expires as u64)
        );
    }
    let r = tc.get("t", "").await;
    assert_eq!(
        r.headers()["x-quorumd-expires-at-ms"].to_str().unwrap(),
        expires.to_string()
    );

    // A repaired replica gets the same absolute expiry, not a fresh relative TTL.
    tc.isolate(2).await;
    let r = tc.put("t", "v2", "ttl_ms=60000").await;
    let expires2 = body_json(r).await["expires_at_ms"].as_i64().unwrap();
    tc.resume_without_hints(2).await;
    tc.wait_health(2, "up").await;
    wait_until(Duration::from_secs(10), "ttl repaired", || async {
        let _ = tc.get("t", "consistency=all").await;
        tc.raw_value(2, b"t").await.as_deref() == Some(&b"v2"[..])
    })
    .await;
    assert_eq!(pexpiretime(&tc, 2, "t").await, expires2);

    // Short TTL: gone after it passes, on every level.
    assert_eq!(
        tc.put("short", "v", "ttl_ms=200").await.status(),
        StatusCode::OK
    );
    assert_eq!(tc.get("short", "").await.status(), StatusCode::OK);
    wait_until(Duration::from_secs(5), "short ttl expires", || async {
        tc.get("short", "").await.status() == StatusCode::NOT_FOUND
    })
    .await;
    assert_eq!(
        tc.get("short", "consistency=linearizable").await.status(),
        StatusCode::NOT_FOUND
    );
    tc.shutdown().await;
}

/// Issue 18, item 3: `If-Match` / `If-None-Match` with entity tags quorumd never issued, or
/// with lists, are conditions (RFC 9110 §13.1.1–13.1.2): 412 when none holds, a write when one
/// does; only malformed syntax is 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_headers_with_foreign_tags_and_lists() {
    let tc = TestCluster::start(3).await;
    let etag = |r: &reqwest::Response| r.headers()["etag"].to_str().unwrap().to_string();
    let old = etag(&tc.put("c", "1", "").await);
    let current = etag(&tc.put("c", "2", "").await);
    let conditional = |method: reqwest::Method, key: &str, headers: &[(&'static str, String)]| {
        let mut req = tc.http.request(method, tc.kv_url(key, "")).body("new");
        for (name, value) in headers {
            req = req.header(*name, value.clone());
        }
        async move { req.send().await.unwrap() }
    };
    let put = |headers: Vec<(&'static str, String)>| async move {
        conditional(reqwest::Method::PUT, "c", &headers).await
    };
    let weak = |tag: &str| format!("W/{tag}");
    // (headers, expected status)
    let cases: Vec<(Vec<(&'static str, String)>, StatusCode)> = vec![
        (
            vec![("if-match", "\"definitely-not-the-version\"".into())],
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            vec![("if-match", format!("\"nope\", {old}"))],
            StatusCode::PRECONDITION_FAILED,
        ),
        // Strong comparison: a weak tag never matches.
        (
            vec![("if-match", weak(&current))],
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            vec![("if-none-match", current.clone())],
            StatusCode::PRECONDITION_FAILED,
        ),
        // Weak comparison: W/"v" names v.
        (
            vec![("if-none-match", format!("\"x\", {}", weak(&current)))],
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            vec![("if-match", "*".into()), ("if-none-match", current.clone())],
            StatusCode::PRECONDITION_FAILED,
        ),
        // Malformed: 400, nothing written.
        (
            vec![("if-match", "\"unterminated".into())],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("if-match", format!("*, {current}"))],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("if-none-match", "nope".into())],
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (i, (headers, status)) in cases.into_iter().enumerate() {
        let r = put(headers.clone()).await;
        assert_eq!(r.status(), status, "case {i}: {headers:?}");
        let body = body_json(r).await;
        if status == StatusCode::PRECONDITION_FAILED {
            assert_eq!(body["error"]["code"], "precondition_failed", "{body}");
            assert_eq!(
                format!("\"{}\"", body["error"]["current_version"].as_str().unwrap()),
                current,
                "case {i}: {body}"
            );
        } else {
            assert_eq!(body["error"]["code"], "bad_request", "case {i}: {body}");
        }
        assert_eq!(tc.get("c", "").await.bytes().await.unwrap(), "2".as_bytes());
    }

    // A list holding the current version, in several field lines too: written.
    let r = put(vec![
        ("if-match", format!("\"nope\", {old}")),
        ("if-match", current.clone()),
    ])
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let current = etag(&r);
    // If-None-Match naming other versions only (and a foreign tag): written.
    let r = put(vec![("if-none-match", format!("{old}, \"x\""))]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_ne!(etag(&r), current);
    let current = etag(&r);
    // Both headers holding.
    let r = put(vec![
        ("if-match", format!("\"x\", {current}")),
        ("if-none-match", old.clone()),
    ])
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let current = etag(&r);

    // DELETE the same way; an absent key has no current version.
    let r = conditional(
        reqwest::Method::DELETE,
        "c",
        &[("if-match", format!("{old}, {current}"))],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(tc.get("c", "").await.status(), StatusCode::NOT_FOUND);
    let r = conditional(
        reqwest::Method::DELETE,
        "c",
        &[("if-match", "\"foreign\"".into())],
    )
    .await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(body_json(r).await["error"]["current_version"], Value::Null);
    // If-None-Match with tags holds for an absent key.
    let r = conditional(
        reqwest::Method::PUT,
        "c",
        &[("if-none-match", current.clone())],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    tc.shutdown().await;
}

/// A read with `If-None-Match` naming the key's version is 304 Not Modified, with the `ETag`
/// and no body, so a client revalidates its copy without the bytes; `If-Match` naming another
/// version is 412; a read of an absent key is 404 whatever the headers say (RFC 9110 §13.2.2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_reads_revalidate_without_the_value() {
    let tc = TestCluster::start(3).await;
    let r = tc.put("c", "a value", "").await;
    let current = r.headers()["etag"].to_str().unwrap().to_string();
    let get = |headers: &[(&'static str, &str)]| {
        let mut req = tc.http.get(tc.kv_url("c", ""));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        async move { req.send().await.unwrap() }
    };
    for tags in [current.as_str(), &format!("\"x\", W/{current}"), "*"] {
        let r = get(&[("if-none-match", tags)]).await;
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{tags}");
        assert_eq!(r.headers()["etag"], current.as_str());
        assert!(r.bytes().await.unwrap().is_empty(), "{tags}: no body");
    }
    let r = get(&[("if-none-match", "\"x\"")]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), "a value".as_bytes());
    let r = get(&[("if-match", "\"x\"")]).await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let body = body_json(r).await;
    assert_eq!(
        format!("\"{}\"", body["error"]["current_version"].as_str().unwrap()),
        current,
        "{body}"
    );
    let r = get(&[("if-match", current.as_str())]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = get(&[("if-none-match", "nope")]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "malformed");
    let r = tc
        .http
        .get(tc.kv_url("absent", ""))
        .header("if-none-match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_compare_and_set() {
    let tc = TestCluster::start(3).await;
    let r = tc.put("c", "1", "").await;
    let etag1 = r.headers()["etag"].to_str().unwrap().to_string();
    // A PUT of `value` to `key` with one precondition header.
    let put_when = |key: &str, header: &'static str, tag: String, value: &'static str| {
        let req = tc
            .http
            .put(tc.kv_url(key, ""))
            .header(header, tag)
            .body(value);
        async move { req.send().await.unwrap() }
    };
    let put_if = |tag: String, value: &'static str| put_when("c", "if-match", tag, value);
    let r = put_if(etag1.clone(), "2").await;
    assert_eq!(r.status(), StatusCode::OK);
    let etag2 = r.headers()["etag"].to_str().unwrap().to_string();
    let r = put_if(etag1.clone(), "3").await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let err = body_json(r).await;
    assert_eq!(err["error"]["code"], "precondition_failed");
    assert_eq!(
        format!("\"{}\"", err["error"]["current_version"].as_str().unwrap()),
        etag2
    );
    assert_eq!(tc.get("c", "").await.bytes().await.unwrap(), "2".as_bytes());

    // If-Match: * needs the key to exist; If-None-Match: * needs it absent.
    let r = put_when("fresh", "if-match", "*".into(), "x").await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let r = put_when("fresh", "if-none-match", "*".into(), "x").await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = put_when("fresh", "if-none-match", "*".into(), "y").await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let r = tc
        .http
        .delete(tc.kv_url("c", ""))
        .header("if-match", etag1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);

    // Racing CAS from one version, through two instances with their own clocks: at most one
    // wins, and what remains is one of the round's attempts (a refused attempt may have
    // reached a minority of nodes and, like any failed write, can still win by version).
    let second =
        quorumd::app::App::start(common::test_config(tc.cluster.urls()).validate().unwrap())
            .await
            .unwrap();
    let bases = [tc.base.clone(), format!("http://{}", second.http_addr())];
    for round in 0..40 {
        let current = tc.get("c", "").await.headers()["etag"]
            .to_str()
            .unwrap()
            .to_string();
        let attempts = (0..8).map(|i| {
            let url = format!("{}/v1/kv/c", bases[i % 2]);
            let req = tc
                .http
                .put(url)
                .header("if-match", current.clone())
                .body(format!("r{round}-{i}"));
            async move { (i, req.send().await.unwrap().status()) }
        });
        let results = futures::future::join_all(attempts).await;
        let winners: Vec<_> = results
            .iter()
            .filter(|(_, s)| *s == StatusCode::OK)
            .map(|(i, _)| *i)
            .collect();
        assert!(
            winners.len() <= 1,
            "round {round}: several CAS winners {winners:?}"
        );
        for (_, s) in &results {
            assert!(
                matches!(*s, StatusCode::OK | StatusCode::PRECONDITION_FAILED),
                "{s}"
            );
        }
        let now = tc
            .get("c", "consistency=linearizable")
            .await
            .bytes()
            .await
            .unwrap();
        assert!(
            (0..8).any(|i| now == format!("r{round}-{i}").as_bytes()),
            "{now:?}"
        );
    }
    second.shutdown().await.unwrap();
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_keys_and_values_round_trip_byte_exact() {
    let tc = TestCluster::start(3).await;
    let key: Vec<u8> = (0u8..=255).filter(|b| *b != b'q').collect();
    let encoded: String = key.iter().map(|b| format!("%{b:02X}")).collect();
    let value: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 256) as u8).collect();
    assert_eq!(
        tc.put(&encoded, value.clone(), "").await.status(),
        StatusCode::OK
    );
    let r = tc.get(&encoded, "").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().to_vec(), value);
    wait_until(Duration::from_secs(5), "raw key on node 0", || async {
        tc.raw_value(0, &key).await.as_deref() == Some(&value[..])
    })
    .await;
    // Empty value is a value, not a delete.
    assert_eq!(
        tc.put("empty", Vec::new(), "").await.status(),
        StatusCode::OK
    );
    let r = tc.get("empty", "").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().await.unwrap().is_empty());
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() {
    let tc = TestCluster::start_with(3, |c| {
        c.http.max_body_bytes = 1024;
        c.http.max_key_bytes = 16;
    })
    .await;
    // PUTs of "x" refused as bad requests: (key, query).
    let long_key = "k".repeat(17);
    let bad_puts = [
        ("bad%zzkey", ""),
        (long_key.as_str(), ""),
        ("k", "ttl_ms=0"),
        ("k", "ttl_ms=-5"),
        ("k", "ttl_ms=99999999999999999"),
        ("k", "colour=blue"),
        ("k", "consistency=strong"),
    ];
    let mut cases = Vec::new();
    for (key, query) in bad_puts {
        let r = tc.put(key, "x", query).await;
        cases.push((r, StatusCode::BAD_REQUEST, "bad_request"));
    }
    cases.extend([
        (
            tc.put("k", vec![0u8; 2048], "").await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            tc.put(&common::reserved_key("m:1"), "x", "").await,
            StatusCode::BAD_REQUEST,
            "reserved_key",
        ),
        (
            tc.get("k", "ttl_ms=5").await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            tc.http
                .put(format!("{}/v1/kv/", tc.base))
                .body("x")
                .send()
                .await
                .unwrap(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            tc.http
                .put(tc.kv_url("k", ""))
                .header("if-match", "\"unterminated")
                .body("x")
                .send()
                .await
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            tc.fetch("/v2/nothing").await,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            tc.http.post(tc.kv_url("k", "")).send().await.unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ]);
    for (i, (resp, status, code)) in cases.into_iter().enumerate() {
        assert_eq!(resp.status(), status, "case {i}");
        let body = body_json(resp).await;
        assert_eq!(body["error"]["code"], code, "case {i}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    // Nothing was written by any of them.
    assert_eq!(tc.get("k", "").await.status(), StatusCode::NOT_FOUND);
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_answering_errors_are_reported_and_do_not_break_the_quorum() {
    let tc = TestCluster::start(3).await;
    // WRONGTYPE: node 0 holds a hash under a key quorumd reads as a string.
    let mut c0 = tc.direct(0).await;
    let _: () = common::command(&mut c0, &["HSET", "h", "f", "v"]).await;
    let r = tc.get("h", "consistency=all").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let err = body_json(r).await.to_string();
    assert!(err.contains("WRONGTYPE"), "{err}");
    assert_eq!(
        tc.get("h", "").await.status(),
        StatusCode::NOT_FOUND,
        "quorum of the other two still answers"
    );

    // OOM on node 1 (maxmemory tiny, noeviction) and READONLY on node 2 (a replica).
    let mut c1 = tc.direct(1).await;
    let _: () = common::command(&mut c1, &["CONFIG", "SET", "maxmemory", "1"]).await;
    let r = tc.put("w", "v", "").await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "one refusing node leaves a majority"
    );
    let mut c2 = tc.direct(2).await;
    let port0 = tc.cluster.nodes[0].port();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(port0)
        .query_async(&mut c2)
        .await
        .unwrap();
    let r = tc.put("w2", "v", "").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let err = body_json(r).await;
    let text = err["error"]["nodes"].to_string().to_ascii_uppercase();
    assert!(text.contains("OOM"), "{text}");
    assert!(
        text.contains("READONLY") || text.contains("READ ONLY"),
        "{text}"
    );
    // Both answer probes and stay `up`; the status says what they refuse, and how long ago.
    let (_, status) = tc.json("/v1/status").await;
    for (n, code) in [(1, "OOM"), (2, "READONLY")] {
        let node = &status["nodes"][n];
        assert_eq!(node["health"], "up", "{node}");
        assert!(
            node["last_refusal"]
                .as_str()
                .is_some_and(|e| e.to_ascii_uppercase().contains(code)),
            "{node}"
        );
        assert!(node["last_refusal_age_s"].as_f64().is_some(), "{node}");
    }
    assert_eq!(
        status["nodes"][0]["last_refusal"],
        Value::Null,
        "WRONGTYPE is the data's"
    );
    // The healthy node kept what it had; recovering the others makes writes work again.
    let _: () = common::command(&mut c1, &["CONFIG", "SET", "maxmemory", "0"]).await;
    let _: () = common::command(&mut c2, &["REPLICAOF", "NO", "ONE"]).await;
    assert_eq!(tc.put("w3", "v", "").await.status(), StatusCode::OK);
    assert_eq!(tc.get("w", "").await.bytes().await.unwrap(), "v".as_bytes());
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_health_and_readiness_follow_the_nodes() {
    let mut tc = TestCluster::start(3).await;
    let (s, body) = tc.json("/healthz").await;
    assert_eq!((s, body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, _) = tc.json("/readyz").await;
    assert_eq!(s, StatusCode::OK);
    let (_, status) = tc.json("/v1/status").await;
    assert_eq!(status["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(status["quorum"]["read"], 2);
    for n in status["nodes"].as_array().unwrap() {
        assert_eq!(n["health"], "up");
        assert!(n["latency_ms"].as_f64().unwrap() >= 0.0);
        assert!(n["run_id"].as_str().is_some_and(|r| r.len() == 40));
    }
    tc.cluster.nodes[0].kill();
    tc.cluster.nodes[1].kill();
    tc.wait_health(0, "down").await;
    tc.wait_health(1, "down").await;
    let (s, body) = tc.json("/readyz").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "not_ready");
    let (_, status) = tc.json("/v1/status").await;
    assert!(
        status["nodes"][0]["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    );
    assert_eq!(
        status["nodes"][0]["has_sentinel"],
        Value::Null,
        "not known while down"
    );
    let (s, _) = tc.json("/healthz").await;
    assert_eq!(s, StatusCode::OK, "alive even without a quorum");
    // Back up, a node shows no error: the status says what is wrong now.
    tc.cluster.nodes[1].restart().unwrap();
    tc.wait_health(1, "up").await;
    let (_, status) = tc.json("/v1/status").await;
    assert_eq!(status["nodes"][1]["last_error"], Value::Null, "{status}");
    tc.shutdown().await;
}

/// The `GET`s the nodes together ran since `before` (one per node a read asked: the read
/// script's own).
async fn gets_since(tc: &TestCluster, before: &[u64]) -> Vec<u64> {
    let mut per_node = Vec::new();
    for (i, b) in before.iter().enumerate() {
        per_node.push(tc.command_calls(i, "get").await - b);
    }
    per_node
}

async fn gets_now(tc: &TestCluster) -> Vec<u64> {
    gets_since(tc, &vec![0; tc.cluster.nodes.len()]).await
}

/// `read_fanout = "needed"` (the default): a `quorum` read asks two of three healthy nodes,
/// in turn, so every node serves a third of the reads less; `all` asks all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_read_asks_only_the_nodes_it_needs_in_turn() {
    let mut tc = TestCluster::start(3).await;
    assert_eq!(
        tc.put("f", "v", "consistency=all").await.status(),
        StatusCode::OK
    );
    let reads = 30u64;
    for fanout in [ReadFanout::Needed, ReadFanout::All] {
        let before = gets_now(&tc).await;
        for _ in 0..reads {
            let r = tc.get("f", "").await;
            assert_eq!(r.status(), StatusCode::OK, "{fanout:?}");
            assert_eq!(r.bytes().await.unwrap(), "v".as_bytes());
        }
        let per_node = gets_since(&tc, &before).await;
        let asked: u64 = per_node.iter().sum();
        match fanout {
            ReadFanout::Needed => {
                assert_eq!(asked, 2 * reads, "{per_node:?}");
                assert!(per_node.iter().all(|&n| n == 2 * reads / 3), "{per_node:?}");
            }
            ReadFanout::All => assert_eq!(asked, 3 * reads, "{per_node:?}"),
        }
        let mut cfg = common::test_config(tc.cluster.urls());
        cfg.quorum.read_fanout = ReadFanout::All;
        tc.relaunch(cfg).await;
    }
    tc.shutdown().await;
}

/// A frozen node among the nodes a read asks first costs the read `read_hedge_ms`, not the
/// node timeout: the read asks the third node too. Negative control: with a hedge longer
/// than the node timeout, a read that asked the frozen node waits for that timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_among_the_first_costs_a_read_the_hedge_not_the_timeout() {
    const NODE_MS: u64 = 4_000;
    let config = |tc: &TestCluster, hedge_ms: u64| {
        let mut cfg = common::test_config(tc.cluster.urls());
        cfg.timeouts.node_ms = NODE_MS;
        cfg.timeouts.request_ms = 3 * NODE_MS;
        cfg.quorum.read_hedge_ms = hedge_ms;
        cfg
    };
    let mut tc = TestCluster::start(3).await;
    assert_eq!(
        tc.put("h", "v", "consistency=all").await.status(),
        StatusCode::OK
    );
    for hedge_ms in [10 * NODE_MS, 20] {
        tc.relaunch(config(&tc, hedge_ms)).await;
        tc.wait_health(0, "up").await;
        tc.cluster.nodes[0].pause();
        // Three reads start the first wave at each node once: two of them ask node 0 first.
        let mut slowest = Duration::ZERO;
        for _ in 0..3 {
            let started = std::time::Instant::now();
            let r = tc.get("h", "").await;
            assert_eq!(r.status(), StatusCode::OK, "hedge {hedge_ms} ms");
            assert_eq!(r.bytes().await.unwrap(), "v".as_bytes());
            slowest = slowest.max(started.elapsed());
        }
        let waited_for_the_timeout = slowest >= Duration::from_millis(NODE_MS);
        assert_eq!(
            waited_for_the_timeout,
            hedge_ms > NODE_MS,
            "hedge {hedge_ms} ms: the slowest read took {slowest:?}"
        );
        tc.cluster.nodes[0].resume();
    }
    tc.shutdown().await;
}
