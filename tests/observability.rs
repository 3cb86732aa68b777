//! `/metrics`, `/v1/events`, `/v1/status` masking and the demo endpoints, against real nodes.
//!
//! The metrics recorder is one per process and the tests of this binary run in parallel, so
//! assertions compare values before and after, on series whose labels only this test's nodes
//! carry wherever possible.

use quorumd_testkit::cluster as common;
#[allow(dead_code)] // the family accessors serve tests/metrics_at_start.rs
#[path = "support/exposition.rs"]
mod exposition;

use common::{TestCluster, test_config, wait_until};
use exposition::{Scrape, scrape};
use futures::StreamExt;
use quorumd::app::App;
use quorumd::devcluster::DevCluster;
use quorumd::live::LiveEvent;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_conventions_and_move_with_requests_and_sweeps() {
    let mut t = TestCluster::start_with(3, |c| c.sync.in_flight_window_ms = 0).await;
    let nodes: Vec<String> = t.cluster.urls();
    let before = scrape(&t).await;
    before.check_conventions().unwrap();

    for i in 0..20 {
        assert!(
            t.put(&format!("m:{i}"), "v", "")
                .await
                .status()
                .is_success()
        );
    }
    for i in 0..10 {
        assert_eq!(
            t.get(&format!("m:{i}"), "consistency=all").await.status(),
            200
        );
    }
    assert_eq!(t.get("m:0", "consistency=bogus").await.status(), 400);
    assert_eq!(t.get("never-written", "").await.status(), 404);

    // Node 2 loses everything; an exchange writes the 20 keys back to it. A write is
    // acknowledged before the last node applies it: node 2 holds all 20 first, or one landing
    // after the wipe would need no repair.
    wait_until(Duration::from_secs(5), "the 20 keys on node 2", || async {
        for i in 0..20 {
            if t.raw_value(2, format!("m:{i}").as_bytes()).await.is_none() {
                return false;
            }
        }
        true
    })
    .await;
    let mut direct = t.direct(2).await;
    let _: () = common::command(&mut direct, &["FLUSHALL"]).await;
    wait_until(
        Duration::from_secs(10),
        "exchange repaired node 2",
        || async {
            let _ = t.try_sweep(quorumd::sync::SweepMode::Exchange, false).await;
            t.raw_value(2, b"m:19").await.is_some() && t.raw_value(2, b"m:0").await.is_some()
        },
    )
    .await;

    let after = scrape(&t).await;
    after.check_conventions().unwrap();
    let kv = |method: &str, consistency: &str, result: &str| {
        vec![
            ("method", method.to_owned()),
            ("route", "/v1/kv/{*key}".to_owned()),
            ("consistency", consistency.to_owned()),
            ("result", result.to_owned()),
        ]
    };
    let delta = |name: &str, labels: &[(&str, String)]| {
        after.value(name, labels).unwrap_or(0.0) - before.value(name, labels).unwrap_or(0.0)
    };
    assert!(delta("quorumd_http_requests_total", &kv("PUT", "quorum", "ok")) >= 20.0);
    assert!(delta("quorumd_http_requests_total", &kv("GET", "all", "ok")) >= 10.0);
    assert!(
        delta(
            "quorumd_http_requests_total",
            &kv("GET", "invalid", "client_error")
        ) >= 1.0
    );
    assert!(
        delta(
            "quorumd_http_requests_total",
            &kv("GET", "quorum", "not_found")
        ) >= 1.0
    );
    assert!(
        delta(
            "quorumd_http_request_duration_seconds_count",
            &kv("PUT", "quorum", "ok")
        ) >= 20.0
    );
    assert!(after.sum("quorumd_sweeps_total") > before.sum("quorumd_sweeps_total"));
    // Only this test's nodes carry these labels: exact values.
    let node2 = vec![
        ("node", nodes[2].clone()),
        ("source", "exchange".to_owned()),
    ];
    assert_eq!(
        after.value("quorumd_keys_repaired_total", &node2),
        Some(20.0)
    );
    for n in &nodes {
        let node = [("node", n.clone())];
        assert_eq!(after.value("quorumd_node_up", &node), Some(1.0), "{n}");
        let up = [("node", n.clone()), ("state", "up".to_owned())];
        assert_eq!(after.value("quorumd_node_health", &up), Some(1.0), "{n}");
        assert!(after.value("quorumd_node_latency_seconds", &node).unwrap() > 0.0);
    }
    for n in &nodes {
        let came_up = [("node", n.clone()), ("to", "up".to_owned())];
        assert!(after.value("quorumd_node_health_changes_total", &came_up) >= Some(1.0));
    }

    // Node 2 misses writes while down: hints wait for it, and are gone once it is back.
    t.isolate(2).await;
    for i in 0..5 {
        assert!(
            t.put(&format!("h:{i}"), "v", "")
                .await
                .status()
                .is_success()
        );
    }
    let node2 = [("node", nodes[2].clone())];
    // Each of the two nodes that took the writes holds a hint per key. Hints are recorded in
    // the background once a write has answered, and the gauge is read at each exchange.
    wait_until(Duration::from_secs(10), "10 hints pending", || async {
        t.try_sweep(quorumd::sync::SweepMode::Exchange, false)
            .await
            .unwrap();
        scrape(&t).await.value("quorumd_hints_pending", &node2) == Some(10.0)
    })
    .await;
    t.cluster.nodes[2].resume();
    t.wait_health(2, "up").await;
    wait_until(Duration::from_secs(10), "hints replayed", || async {
        let _ = t.try_sweep(quorumd::sync::SweepMode::Exchange, false).await;
        scrape(&t).await.value("quorumd_hints_pending", &node2) == Some(0.0)
    })
    .await;
    assert!(t.raw_value(2, b"h:4").await.is_some());

    // Two nodes gone: a write fails its quorum and the node gauges say so.
    t.cluster.nodes[0].kill();
    t.cluster.nodes[1].kill();
    t.wait_health(0, "down").await;
    t.wait_health(1, "down").await;
    assert_eq!(t.put("m:lost", "v", "").await.status(), 503);
    let down = scrape(&t).await;
    assert!(down.sum("quorumd_quorum_failures_total") > after.sum("quorumd_quorum_failures_total"));
    assert_eq!(
        down.value("quorumd_node_up", &[("node", nodes[0].clone())]),
        Some(0.0)
    );
    let errors = |s: &Scrape| {
        s.series("quorumd_node_errors_total")
            .filter(|(labels, _)| labels.iter().any(|(k, v)| k == "node" && *v == nodes[0]))
            .map(|(_, v)| v)
            .sum::<f64>()
    };
    assert!(errors(&down) >= errors(&after));
    t.shutdown().await;
}

#[test]
fn the_exposition_checker_rejects_broken_text() {
    // A masked password in a node label is fine.
    let good = "# HELP quorumd_x_total X.\n# TYPE quorumd_x_total counter\n\
                quorumd_x_total{a=\"b\",node=\"redis://u:***@h:1\"} 1\n";
    Scrape::parse(good).unwrap().check_conventions().unwrap();
    let bad_syntax = [
        "quorumd_x_total{a=b} 1\n",
        "quorumd_x_total{a=\"b\" 1\n",
        "quorumd_x_total{a=\"b\"} one\n",
        "9quorumd 1\n",
        "# TYPE quorumd_x_total countr\n",
    ];
    for text in bad_syntax {
        assert!(Scrape::parse(text).is_err(), "accepted: {text}");
    }
    let bad_names = [
        "# TYPE quorumd_requests counter\nquorumd_requests 1\n",
        "# TYPE other_x_total counter\nother_x_total 1\n",
        "# TYPE quorumd_latency_ms gauge\nquorumd_latency_ms 1\n",
        "quorumd_untyped_total 1\n",
        "# TYPE quorumd_x gauge\nquorumd_x{node=\"redis://u:pw@h:1\"} 1\n",
    ];
    for text in bad_names {
        let parsed = Scrape::parse(text).unwrap();
        assert!(parsed.check_conventions().is_err(), "accepted: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_starts_with_a_snapshot_and_a_lagging_client_never_blocks_writes() {
    let t = TestCluster::start(3).await;
    // A client that reads the first message, then stops reading.
    let lagging = t.fetch("/v1/events").await;
    assert_eq!(lagging.status(), 200);
    assert!(
        lagging.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut lagging = SseReader::new(lagging.bytes_stream());
    let first = lagging.next_message().await;
    assert!(first.starts_with("event: snapshot\n"), "{first}");
    assert!(first.contains("\"lagged\":0"), "{first}");

    // Far more than the channel holds, and far more bytes than socket buffers take, while the
    // client reads nothing.
    let feed = t.app().store().pool().live();
    let padding = "x".repeat(8 * 1024);
    for i in 0..(quorumd::live::CHANNEL_CAPACITY * 4) {
        feed.publish(LiveEvent::Alert {
            message: format!("flood {i} {padding}"),
            at_ms: 0,
        });
    }
    // Writes and status still answer: nothing waits for the stalled client.
    for i in 0..20 {
        let r = tokio::time::timeout(Duration::from_secs(10), t.put(&format!("sse:{i}"), "v", ""))
            .await
            .expect("a write blocked behind a slow events client");
        assert!(r.status().is_success());
    }
    // When it reads again, it is told it lagged and gets a fresh snapshot.
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !seen.contains("event: snapshot\ndata: {\"lagged\":") {
        assert!(std::time::Instant::now() < deadline, "no resync snapshot");
        let chunk = lagging.next_message().await;
        // Keep only the message heads; the flood bodies are large.
        seen.push_str(&chunk[..chunk.len().min(64)]);
        if chunk.starts_with("event: snapshot") {
            let data = chunk.trim_start_matches("event: snapshot\ndata: ").trim();
            let v: serde_json::Value = serde_json::from_str(data).unwrap();
            assert!(v["lagged"].as_u64().unwrap() > 0, "{}", v["lagged"]);
            assert_eq!(v["live"]["buckets"].as_str().unwrap().len(), 4096);
            break;
        }
    }
    // An open stream does not hold up a graceful shutdown: it ends with the service. The
    // client goes on reading, as a live one does: one that stops reading with the server's
    // writes to it blocked holds its connection until `http.drain_timeout_ms` (20 s, this
    // test's limit too), which made this step fail now and then on a loaded machine.
    let reader =
        tokio::spawn(async move { while let Some(Ok(_)) = lagging.stream.next().await {} });
    tokio::time::timeout(Duration::from_secs(20), t.shutdown())
        .await
        .expect("shutdown waited for an open events stream");
    tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the stream ended with the service")
        .unwrap();
}

/// Reads an SSE body message by message.
struct SseReader<S> {
    stream: S,
    pending: String,
}

impl<S: futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin> SseReader<S> {
    fn new(stream: S) -> Self {
        SseReader {
            stream,
            pending: String::new(),
        }
    }

    /// The next message, blank-line terminator included.
    async fn next_message(&mut self) -> String {
        loop {
            if let Some(at) = self.pending.find("\n\n") {
                return self.pending.drain(..at + 2).collect();
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.stream.next())
                .await
                .expect("events stream stalled")
                .expect("events stream ended")
                .expect("events stream error");
            self.pending.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_show_in_status_metrics_or_events() {
    let cluster = tokio::task::spawn_blocking(|| DevCluster::start(3))
        .await
        .unwrap()
        .unwrap();
    let mut urls = cluster.urls();
    // A fourth node with credentials that never answers (nothing listens on port 1).
    urls.push("redis://admin:hunter2secret@127.0.0.1:1/0".into());
    let app = App::start(test_config(urls).validate().unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", app.http_addr());
    let http = reqwest::Client::new();
    for path in ["/v1/status", "/metrics", "/v1/sweeps/current"] {
        let text = common::get_text(&http, &format!("{base}{path}")).await;
        if path != "/v1/sweeps/current" {
            assert!(text.contains("127.0.0.1:1"), "{path} names the node");
        }
        assert!(
            !text.contains("hunter2secret"),
            "{path} shows the password: {text}"
        );
    }
    let mut events = SseReader::new(
        http.get(format!("{base}/v1/events"))
            .send()
            .await
            .unwrap()
            .bytes_stream(),
    );
    let snapshot = events.next_message().await;
    assert!(snapshot.contains("127.0.0.1:1"));
    assert!(!snapshot.contains("hunter2secret"), "{snapshot}");
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_endpoints_exist_only_in_demo_mode_and_their_damage_heals() {
    // Not in demo mode: no such endpoints.
    let plain = TestCluster::start(3).await;
    let r = plain
        .http
        .post(format!("{}/v1/demo/wipe", plain.base))
        .json(&json!({ "node": 0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    plain.shutdown().await;

    let cluster = tokio::task::spawn_blocking(|| DevCluster::start(3))
        .await
        .unwrap()
        .unwrap();
    let mut cfg = test_config(cluster.urls());
    cfg.sync.in_flight_window_ms = 0;
    let app = App::start_demo(cfg.validate().unwrap(), 200).await.unwrap();
    assert_eq!(quorumd::demo::seed(app.store(), 200).await, 200);
    let base = format!("http://{}", app.http_addr());
    let http = reqwest::Client::new();
    let post =
        |path: &str, body: serde_json::Value| http.post(format!("{base}{path}")).json(&body).send();
    let status = common::get_json(&http, &format!("{base}/v1/status")).await;
    assert_eq!(status["instance"]["demo"], true);

    let r = post("/v1/demo/diverge", json!({ "node": 0, "keys": 50 }))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["keys"], 50);
    let report = app
        .sweeper()
        .run(quorumd::sync::SweepRequest::new(
            quorumd::sync::SweepMode::Exchange,
            quorumd::sync::SweepTrigger::Api,
        ))
        .await
        .unwrap();
    assert_eq!(report.keys_divergent, 50);
    assert_eq!(report.keys_repaired_per_node, vec![0, 50, 50]);

    let r = post("/v1/demo/wipe", json!({ "node": 2 })).await.unwrap();
    assert_eq!(r.status(), 200);
    // The wipe is noticed (recovery exchange) or healed by ours, whichever runs first.
    wait_until(
        Duration::from_secs(20),
        "node 2 healed after the wipe",
        || async {
            let _ = app
                .sweeper()
                .run(quorumd::sync::SweepRequest::new(
                    quorumd::sync::SweepMode::Exchange,
                    quorumd::sync::SweepTrigger::Api,
                ))
                .await;
            let totals = app.sweeper().status().totals;
            totals.keys_repaired_per_node[2] >= 50 + 200
        },
    )
    .await;

    for bad in [
        json!({ "node": 3 }),
        json!({ "node": "x" }),
        json!({ "nod": 1 }),
    ] {
        let r = post("/v1/demo/wipe", bad.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_request");
    }
    app.shutdown().await.unwrap();
}

/// Sends one RESP command and returns its reply's first line (bulk replies: the payload line).
async fn resp_command(stream: &mut tokio::net::TcpStream, args: &[&str]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 512];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed during {args:?}");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        let lines: Vec<&str> = text.split_terminator("\r\n").collect();
        let complete = text.ends_with("\r\n")
            && (!text.starts_with('$') || text.starts_with("$-1") || lines.len() >= 2);
        if complete {
            return lines[if text.starts_with('$') && lines.len() >= 2 {
                1
            } else {
                0
            }]
            .to_owned();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_queue_crdt_and_resp_metrics_move_with_their_operations() {
    let mut t = TestCluster::start_with(3, |c| c.sync.in_flight_window_ms = 0).await;
    let before = scrape(&t).await;
    let (http, base) = (t.http.clone(), t.base.clone());
    let post = async |path: &str, body: serde_json::Value| {
        let r = http
            .post(format!("{base}{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (
            status,
            r.json::<serde_json::Value>().await.unwrap_or_default(),
        )
    };

    // Locks: a grant, a busy lock, an invalid request, an extension and a release, twice.
    let (s, grant) = post("/v1/locks/obs-lock/acquire", json!({"ttl_ms": 10_000})).await;
    assert_eq!(s, 200, "{grant}");
    let (s, _) = post("/v1/locks/obs-lock/acquire", json!({"ttl_ms": 10_000})).await;
    assert_eq!(s, 409);
    let (s, _) = post("/v1/locks/obs-lock/acquire", json!({"ttl_ms": 0})).await;
    assert_eq!(s, 400);
    let token = grant["token"].clone();
    let (s, _) = post(
        "/v1/locks/obs-lock/extend",
        json!({"token": token, "ttl_ms": 10_000}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = post("/v1/locks/obs-lock/release", json!({"token": token})).await;
    assert_eq!(s, 200);
    let (s, _) = post("/v1/locks/obs-lock/release", json!({"token": token})).await;
    assert_eq!(s, 409);

    // Queue: two puts, a claim, an ack, a depth read (one ready, nothing leased).
    for i in 0..2 {
        let (s, _) = post("/v1/queues/obs-q/items", json!({"payload": i})).await;
        assert_eq!(s, 201);
    }
    let (s, claimed) = post("/v1/queues/obs-q/claim", json!({"lease_ms": 10_000})).await;
    assert_eq!(s, 200, "{claimed}");
    let id = claimed["id"].as_str().unwrap();
    let (s, _) = post(
        &format!("/v1/queues/obs-q/items/{id}/ack"),
        json!({"lease": claimed["lease"]}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, depths) = t.json("/v1/queues/obs-q").await;
    assert_eq!((s.as_u16(), depths["ready"].clone()), (200, json!(1)));
    // The other item: claimed, returned, claimed again (a redelivery), and left leased.
    let claim = async || {
        let (s, c) = post("/v1/queues/obs-q/claim", json!({"lease_ms": 10_000})).await;
        assert_eq!(s, 200, "{c}");
        c
    };
    let first = claim().await;
    let nack = format!(
        "/v1/queues/obs-q/items/{}/nack",
        first["id"].as_str().unwrap()
    );
    let (s, _) = post(&nack, json!({"lease": first["lease"]})).await;
    assert_eq!(s, 200);
    assert_eq!(claim().await["deliveries"], json!(2));
    let (s, depths) = t.json("/v1/queues/obs-q").await;
    assert_eq!((s.as_u16(), depths["leased"].clone()), (200, json!(1)));

    // CRDT: a counter written while node 2 is away; the exchange merges it into node 2.
    t.isolate(2).await;
    let (s, _) = post("/v1/counters/obs-ctr", json!({"delta": 5})).await;
    assert_eq!(s, 200);
    // CRDT writes leave no hints: only the sweep can bring node 2 up to date.
    t.cluster.nodes[2].resume();
    t.wait_health(2, "up").await;
    let sweep_merges = [
        ("type", "counter".to_owned()),
        ("source", "sweep".to_owned()),
    ];
    let merged_by_sweeps = async || {
        let n = |s: &Scrape| {
            s.value("quorumd_crdt_merges_total", &sweep_merges)
                .unwrap_or(0.0)
        };
        n(&scrape(&t).await) - n(&before)
    };
    // The recovery exchange that follows node 2's return may be the one that merges it.
    wait_until(
        Duration::from_secs(10),
        "a sweep merged the counter",
        || async {
            let _ = t.try_sweep(quorumd::sync::SweepMode::Exchange, false).await;
            merged_by_sweeps().await >= 1.0
        },
    )
    .await;
    assert_eq!(merged_by_sweeps().await, 1.0, "merged once, then in sync");

    // RESP: commands by name and result, and the open connection.
    let addr = t.app().resp_addr().expect("resp enabled");
    let mut resp = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(resp_command(&mut resp, &["SET", "obs-k", "v"]).await, "+OK");
    assert_eq!(resp_command(&mut resp, &["GET", "obs-k"]).await, "v");
    assert!(
        resp_command(&mut resp, &["GET"])
            .await
            .starts_with("-ERR wrong number")
    );
    assert!(
        resp_command(&mut resp, &["NOSUCHCMD", "x"])
            .await
            .starts_with("-ERR unknown")
    );
    // INCR on a string that is not an integer is refused, as by Redis.
    assert!(
        resp_command(&mut resp, &["INCR", "obs-k"])
            .await
            .starts_with("-ERR value is not an integer")
    );

    let after = scrape(&t).await;
    after.check_conventions().unwrap();
    let delta = |name: &str, labels: &[(&str, &str)]| {
        let labels: Vec<(&str, String)> = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        after.value(name, &labels).unwrap_or(0.0) - before.value(name, &labels).unwrap_or(0.0)
    };
    // Only this test uses locks, queues, CRDTs and RESP in this binary: exact deltas.
    let acquisitions = "quorumd_lock_acquisitions_total";
    let queue_ops = "quorumd_queue_operations_total";
    let merges = "quorumd_crdt_merges_total";
    let commands = "quorumd_resp_commands_total";
    // (metric, labels, exact delta)
    type Expected<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);
    let exact: &[Expected] = &[
        (acquisitions, &[("result", "granted")], 1.0),
        (acquisitions, &[("result", "held")], 1.0),
        (acquisitions, &[("result", "invalid")], 1.0),
        (
            "quorumd_lock_acquire_duration_seconds_count",
            &[("result", "granted")],
            1.0,
        ),
        ("quorumd_lock_extensions_total", &[("result", "ok")], 1.0),
        ("quorumd_lock_releases_total", &[("result", "ok")], 1.0),
        (
            "quorumd_lock_releases_total",
            &[("result", "not_holder")],
            1.0,
        ),
        (queue_ops, &[("operation", "put"), ("result", "ok")], 2.0),
        (queue_ops, &[("operation", "claim"), ("result", "ok")], 3.0),
        (queue_ops, &[("operation", "nack"), ("result", "ok")], 1.0),
        (
            queue_ops,
            &[("operation", "redelivery"), ("result", "ok")],
            1.0,
        ),
        (queue_ops, &[("operation", "ack"), ("result", "ok")], 1.0),
        (merges, &[("type", "counter"), ("source", "sweep")], 1.0),
        (
            "quorumd_crdt_updates_total",
            &[("type", "counter"), ("result", "ok")],
            1.0,
        ),
        (commands, &[("command", "set"), ("result", "ok")], 1.0),
        (commands, &[("command", "get"), ("result", "ok")], 1.0),
        (commands, &[("command", "get"), ("result", "rejected")], 1.0),
        (commands, &[("command", "incr"), ("result", "error")], 1.0),
        (
            commands,
            &[("command", "other"), ("result", "rejected")],
            1.0,
        ),
    ];
    for (name, labels, want) in exact {
        assert_eq!(delta(name, labels), *want, "{name} {labels:?}");
    }
    assert!(delta(merges, &[("type", "counter"), ("source", "write")]) >= 2.0);
    // The gauges hold the last depth read: the item is leased, none is ready.
    let depth = |state: &str| {
        after.value(
            "quorumd_queue_items",
            &[("queue", "obs-q".into()), ("state", state.into())],
        )
    };
    assert_eq!(
        (depth("ready"), depth("leased"), depth("dead")),
        (Some(0.0), Some(1.0), Some(0.0))
    );
    assert_eq!(delta("quorumd_resp_connections", &[]), 1.0);
    drop(resp);
    wait_until(Duration::from_secs(5), "resp connection closed", || async {
        let now = scrape(&t).await.value("quorumd_resp_connections", &[]);
        now == before.value("quorumd_resp_connections", &[]).or(Some(0.0))
    })
    .await;
    t.shutdown().await;
}
