//! CRDTs over real nodes: concurrent updates through two quorumd instances while a node is
//! cut off, then healed by the digest exchange: every node ends with the same state, and the
//! value is the model's (the sum of the acknowledged deltas; the members added and not removed;
//! the last write of each field). Retried increments are not counted twice, a removed member
//! does not come back from a stale node, and the convergence check catches a last-writer-wins
//! overwrite of CRDT state (negative control).

#[path = "support/crdt.rs"]
mod crdts;

use quorumd_testkit::cluster as common;

use common::{TestCluster, body_json, test_config, wait_until};
use crdts::{
    Keys, Materialised, NodeView, assert_cart_re_add_wins, assert_workload_converged,
    assert_workload_read, cart_with_stale_copy, concurrent_updates, conf_model, counter_add,
    dump_crdt, exchange_within, json_get, node_view, post, repaired_by, restore_crdt,
    same_everywhere, set_of, write_before_restart,
};
use quorumd::app::App;
use quorumd::calls;
use quorumd::calls::crdt::MergeCode;
use quorumd::sync::SweepMode;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

/// The convergence check: every node holds the same metadata, state and materialised value,
/// and the value is the model's.
async fn converged(tc: &TestCluster, key: &str, model: &Materialised) -> Result<(), String> {
    let mut views = Vec::new();
    for i in 0..tc.cluster.nodes.len() {
        views.push((i, node_view(tc, i, key).await));
    }
    same_everywhere(key, &views, model)
}

/// Waits until every node holds `want` under `key`: a write answers at its quorum, and the
/// last node's copy may still be on its way.
async fn wait_everywhere(tc: &TestCluster, key: &str, want: &Materialised) {
    wait_until(
        Duration::from_secs(5),
        &format!("{key} = {want:?} on every node"),
        || async {
            for i in 0..tc.cluster.nodes.len() {
                if node_view(tc, i, key).await.value != *want {
                    return false;
                }
            }
            true
        },
    )
    .await;
}

/// Runs a complete exchange over all buckets (waiting out one already running).
async fn exchange(app: &App) -> quorumd::sync::SweepReport {
    exchange_within(app, Duration::from_secs(20)).await
}

/// A second quorumd instance on the same nodes (with its own HTTP address), once both
/// instances see the sentinel on every node.
///
/// An exchange that finds a node in sync writes it there, so the faults these tests inject
/// later start from nodes that all hold it, as an established cluster's do. These tests are
/// about the counters, not about detecting lost data.
async fn second_instance(tc: &TestCluster) -> (App, String) {
    let cfg = test_config(tc.cluster.urls());
    let app = App::start(cfg.validate().unwrap()).await.unwrap();
    let base = format!("http://{}", app.http_addr());
    exchange(tc.app()).await;
    for b in [&tc.base, &base] {
        wait_until(
            Duration::from_secs(10),
            "the sentinel on every node",
            || async {
                status_on(tc, b).await["nodes"]
                    .as_array()
                    .is_some_and(|n| n.iter().all(|n| n["has_sentinel"] == true))
            },
        )
        .await;
    }
    (app, base)
}

/// `GET /v1/status` of the instance at `base`.
async fn status_on(tc: &TestCluster, base: &str) -> Value {
    common::get_json(&tc.http, &format!("{base}/v1/status")).await
}

async fn health_on(tc: &TestCluster, base: &str, i: usize) -> String {
    common::health_at(&tc.http, base, i).await
}

/// Freezes node `i` and waits until both instances call it down.
async fn isolate_for_both(tc: &mut TestCluster, base_b: &str, i: usize) {
    tc.isolate(i).await;
    wait_until(
        Duration::from_secs(10),
        "second instance sees the node down",
        || async { health_on(tc, base_b, i).await == "down" },
    )
    .await;
}

/// An answer refused with `status` and error `code`, its message saying `says`.
fn assert_error(s: StatusCode, e: &Value, status: StatusCode, code: &str, says: &str) {
    assert_eq!(
        (s, e["error"]["code"].clone()),
        (status, json!(code)),
        "{e}"
    );
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.contains(says), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_through_two_instances_converge_after_a_partition() {
    let mut tc = TestCluster::start(3).await;
    let (second, base_b) = second_instance(&tc).await;
    let bases = [tc.base.clone(), base_b.clone()];
    // A first increment before the partition, so the cut-off node holds an older state.
    assert_eq!(
        counter_add(&tc, &bases[0], "hits", 1).await.0,
        StatusCode::OK
    );
    isolate_for_both(&mut tc, &base_b, 2).await;

    let keys = Keys {
        hits: "hits",
        tags: "tags",
        profile: "profile",
    };
    let expected = 1 + concurrent_updates(&tc, &bases, keys).await;

    tc.cluster.nodes[2].resume();
    tc.wait_health(2, "up").await;
    // Runs after (or instead of) the exchange the node's return triggers by itself.
    exchange(tc.app()).await;
    let repaired = repaired_by(&[tc.app(), &second]).await;
    assert_eq!(
        repaired,
        [0, 0, 3],
        "only the cut-off node needed merges, one per key"
    );

    let nodes = |_: &str| (0..tc.cluster.nodes.len()).collect();
    let map_model = assert_workload_converged(&tc, nodes, keys, expected).await;

    // Both instances read the model, at every level.
    assert_workload_read(&tc, &bases, keys, expected, map_model.len(), "").await;
    // Converged digests: a second exchange finds nothing to do.
    let again = exchange(tc.app()).await;
    assert_eq!(again.buckets_mismatched, 0, "{again:?}");
    second.shutdown().await.unwrap();
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_increment_is_counted_once_even_through_a_node_that_missed_it() {
    let mut tc = TestCluster::start(3).await;
    let (second, base_b) = second_instance(&tc).await;
    isolate_for_both(&mut tc, &base_b, 2).await;
    let http = tc.http.clone();
    let add = |base: String, key: &'static str, delta: i64| {
        let http = http.clone();
        async move {
            let r = http
                .post(format!("{base}/v1/counters/orders"))
                .header("Idempotency-Key", key)
                .json(&json!({ "delta": delta }))
                .send()
                .await
                .unwrap();
            let s = r.status();
            (s, body_json(r).await)
        }
    };
    let (s, first) = add(tc.base.clone(), "order-17", 5).await;
    assert_eq!(
        (s, first["value"].clone(), first["replayed"].clone()),
        (StatusCode::OK, json!(5), json!(false))
    );

    // The node that missed it comes back, another one goes: the retry's quorum is one node
    // that has the increment and one that does not. It goes through the other instance.
    tc.cluster.nodes[2].resume();
    tc.wait_health(2, "up").await;
    wait_until(
        Duration::from_secs(10),
        "second instance sees node 2",
        || async { health_on(&tc, &base_b, 2).await == "up" },
    )
    .await;
    isolate_for_both(&mut tc, &base_b, 0).await;
    let (s, retry) = add(base_b.clone(), "order-17", 5).await;
    assert_eq!(
        (s, retry["value"].clone(), retry["replayed"].clone()),
        (StatusCode::OK, json!(5), json!(true)),
        "{retry}"
    );
    // The same key for another amount is refused, a new key counts.
    let (s, e) = add(base_b.clone(), "order-17", 6).await;
    assert_eq!(
        (s, e["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("idempotency_conflict"))
    );
    let (s, next) = add(tc.base.clone(), "order-18", -2).await;
    assert_eq!(
        (s, next["value"].clone()),
        (StatusCode::OK, json!(3)),
        "{next}"
    );
    // Plain increments by both instances on top, one retried by hand (counted twice, as asked).
    for base in [&tc.base, &base_b, &base_b] {
        assert_eq!(counter_add(&tc, base, "orders", 10).await.0, StatusCode::OK);
    }

    tc.cluster.nodes[0].resume();
    tc.wait_health(0, "up").await;
    exchange(tc.app()).await;
    converged(&tc, "orders", &Materialised::Str("33".into()))
        .await
        .unwrap();
    second.shutdown().await.unwrap();
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_does_not_come_back_from_a_stale_node() {
    let mut tc = TestCluster::start(3).await;
    let stale = cart_with_stale_copy(&tc, 2).await;
    tc.isolate(2).await;
    let url = format!("{}/v1/sets/cart/remove", tc.base);
    let (s, r) = post(&tc, url, json!({ "members": ["apple", "plum"] })).await;
    assert_eq!((s, r["removed"].clone()), (StatusCode::OK, json!(1)));
    tc.cluster.nodes[2].resume();
    tc.wait_health(2, "up").await;
    // The exchange merges the removal into node 2 instead of copying its stale add back.
    exchange(tc.app()).await;
    assert_eq!(repaired_by(&[tc.app()]).await, [0, 0, 1]);
    converged(&tc, "cart", &set_of(["pear".into()]))
        .await
        .unwrap();
    // The stale copy put back on node 2 (as a node restored from an old backup would be) is
    // merged away by the full sweep, not spread.
    restore_crdt(&tc, 2, "cart", &stale).await;
    assert_eq!(
        node_view(&tc, 2, "cart").await.value,
        set_of(["apple".into(), "pear".into()])
    );
    // A read over all nodes merges the removal in, and repairs node 2 on the way.
    let (_, all) = json_get(&tc, &format!("{}/v1/sets/cart?consistency=all", tc.base)).await;
    assert_eq!(all["members"], json!(["pear"]));
    wait_until(Duration::from_secs(5), "read repair of node 2", || async {
        converged(&tc, "cart", &set_of(["pear".into()]))
            .await
            .is_ok()
    })
    .await;
    // Once more, healed by the full sweep this time (the digest does not show a restored copy).
    restore_crdt(&tc, 2, "cart", &stale).await;
    tc.sweep(SweepMode::Full, false).await;
    converged(&tc, "cart", &set_of(["pear".into()]))
        .await
        .unwrap();
    // An add after the remove is a new tag: it wins.
    assert_cart_re_add_wins(&tc).await;
    tc.shutdown().await;
}

/// Counter arithmetic on the node (digit by digit, past what a double holds) at the i64 edge,
/// and Redis's overflow rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_are_exact_at_the_i64_limits_and_refuse_to_overflow() {
    let tc = TestCluster::start(3).await;
    let (second, base_b) = second_instance(&tc).await;
    assert_eq!(
        counter_add(&tc, &tc.base, "big", i64::MAX).await.0,
        StatusCode::OK
    );
    let (s, v) = counter_add(&tc, &base_b, "big", -1).await;
    assert_eq!(
        (s, v["value"].clone()),
        (StatusCode::OK, json!(i64::MAX - 1))
    );
    assert_eq!(counter_add(&tc, &base_b, "big", 1).await.0, StatusCode::OK);
    let (s, e) = counter_add(&tc, &tc.base, "big", 1).await;
    assert_error(s, &e, StatusCode::CONFLICT, "overflow", "would overflow");
    wait_until(
        Duration::from_secs(5),
        "every node has every write",
        || async {
            for i in 0..3 {
                if node_view(&tc, i, "big").await.state.len() != 3 {
                    return false;
                }
            }
            true
        },
    )
    .await;
    converged(&tc, "big", &Materialised::Str(i64::MAX.to_string()))
        .await
        .unwrap();
    assert_eq!(
        counter_add(&tc, &tc.base, "big", i64::MIN).await.0,
        StatusCode::OK
    );
    assert_eq!(
        counter_add(&tc, &base_b, "big", -i64::MAX).await.0,
        StatusCode::OK
    );
    let (s, e) = counter_add(&tc, &tc.base, "big", -1).await;
    assert_eq!(
        (s, e["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("overflow"))
    );
    // i64::MIN only once both writes are in.
    wait_everywhere(&tc, "big", &Materialised::Str(i64::MIN.to_string())).await;
    converged(&tc, "big", &Materialised::Str(i64::MIN.to_string()))
        .await
        .unwrap();
    second.shutdown().await.unwrap();
    tc.shutdown().await;
}

/// Negative control: the same check fails when CRDT state is overwritten last-writer-wins
/// style by a stale replica (everywhere, or on one node), and the full sweep merges a single
/// overwritten node back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_convergence_check_catches_a_last_writer_wins_overwrite() {
    let mut tc = TestCluster::start(3).await;
    assert_eq!(
        counter_add(&tc, &tc.base, "visits", 3).await.0,
        StatusCode::OK
    );
    wait_until(Duration::from_secs(5), "first write everywhere", || async {
        node_view(&tc, 2, "visits").await.value == Materialised::Str("3".into())
    })
    .await;
    // What a last-writer-wins repair would copy if it picked the stale node.
    let stale = dump_crdt(&tc, 2, "visits").await;
    tc.isolate(2).await;
    for _ in 0..4 {
        assert_eq!(
            counter_add(&tc, &tc.base, "visits", 10).await.0,
            StatusCode::OK
        );
    }
    tc.cluster.nodes[2].resume();
    tc.wait_health(2, "up").await;
    exchange(tc.app()).await;
    let model = Materialised::Str("43".into());
    converged(&tc, "visits", &model).await.unwrap();

    restore_crdt(&tc, 0, "visits", &stale).await;
    let err = converged(&tc, "visits", &model).await.unwrap_err();
    assert!(err.contains("differs"), "{err}");
    for i in 1..3 {
        restore_crdt(&tc, i, "visits", &stale).await;
    }
    let err = converged(&tc, "visits", &model).await.unwrap_err();
    assert!(err.contains("the model says"), "{err}");

    // A single node overwritten with an older copy of its own state: its digest does not show
    // it (the overwrite bypassed the scripts), the full sweep rebuilds the digest and merges.
    let tc2 = TestCluster::start(3).await;
    assert_eq!(
        counter_add(&tc2, &tc2.base, "visits", 3).await.0,
        StatusCode::OK
    );
    // Node 0 is the one copied and overwritten: a write still on its way to it would land on
    // the stale copy and merge it back.
    wait_everywhere(&tc2, "visits", &Materialised::Str("3".into())).await;
    let stale = dump_crdt(&tc2, 0, "visits").await;
    assert_eq!(
        counter_add(&tc2, &tc2.base, "visits", 40).await.0,
        StatusCode::OK
    );
    wait_everywhere(&tc2, "visits", &Materialised::Str("43".into())).await;
    restore_crdt(&tc2, 0, "visits", &stale).await;
    assert!(converged(&tc2, "visits", &model).await.is_err());
    let report = tc2.sweep(SweepMode::Full, false).await;
    assert!(report.digests_rebuilt >= 1, "{report:?}");
    converged(&tc2, "visits", &model).await.unwrap();
    tc2.shutdown().await;
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_and_crdt_models_do_not_mix() {
    let tc = TestCluster::start(3).await;
    assert_eq!(counter_add(&tc, &tc.base, "c1", 2).await.0, StatusCode::OK);
    // The writes below are refused by the nodes holding the counter; the race with a counter
    // still on its way to a node is the next test's.
    wait_everywhere(&tc, "c1", &Materialised::Str("2".into())).await;
    for r in [
        tc.put("c1", "x", "").await,
        tc.delete("c1", "").await,
        tc.get("c1", "").await,
    ] {
        assert_eq!(r.status(), StatusCode::CONFLICT);
        let e = body_json(r).await;
        assert_eq!(
            (e["error"]["code"].clone(), e["error"]["holds"].clone()),
            (json!("kind_conflict"), json!("counter"))
        );
    }
    assert_eq!(tc.put("plain", "x", "").await.status(), StatusCode::OK);
    // Likewise: refused by the nodes holding the value, which node 0 must keep (below).
    wait_everywhere(&tc, "plain", &Materialised::Str("x".into())).await;
    let (s, e) = counter_add(&tc, &tc.base, "plain", 1).await;
    assert_error(
        s,
        &e,
        StatusCode::CONFLICT,
        "kind_conflict",
        "key-value entry",
    );
    let (s, e) = post(
        &tc,
        format!("{}/v1/sets/c1/add", tc.base),
        json!({ "members": ["a"] }),
    )
    .await;
    assert_eq!(
        (s, e["error"]["holds"].clone()),
        (StatusCode::CONFLICT, json!("a counter"))
    );
    let (s, _) = json_get(&tc, &format!("{}/v1/maps/c1", tc.base)).await;
    assert_eq!(s, StatusCode::CONFLICT);
    // Nothing was changed by the refused writes.
    assert_eq!(tc.raw_value(0, b"plain").await, Some(b"x".to_vec()));
    converged(&tc, "c1", &Materialised::Str("2".into()))
        .await
        .unwrap();
    tc.shutdown().await;
}

/// Delivers a counter's write (2 added by one writer) to node `n` alone, as a write still on
/// its way to the other nodes would land.
async fn counter_arrives(tc: &TestCluster, key: &str, n: usize) -> MergeCode {
    use quorumd::crdt::{Actor, Crdt, CrdtKind, PnCounter};
    let store = tc.app().store();
    let mut counter = PnCounter::default();
    counter.increment(Actor::request(b"writer"), 2).unwrap();
    calls::crdt::merge(
        store.pool().node(n),
        &store.locate(key.as_bytes()).unwrap(),
        &common::default_layout().state_key(key.as_bytes()),
        CrdtKind::Counter,
        &counter.to_fields(),
        false,
    )
    .await
    .unwrap()
    .code
}

/// A key-value write to a counter that has not reached one node yet is refused by the nodes
/// holding it; the node that took the write gives it back, so the counter still lands there
/// when its own write arrives. Without that, node 2 would keep an entry that refuses the
/// counter for good and that no sweep could resolve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_leaves_nothing_on_a_node_the_counter_had_not_reached() {
    let tc = TestCluster::start(3).await;
    for n in [0, 1] {
        assert_eq!(counter_arrives(&tc, "c1", n).await, MergeCode::Changed);
    }
    for what in ["delete", "put"] {
        let r = match what {
            "delete" => tc.delete("c1", "").await,
            _ => tc.put("c1", "x", "").await,
        };
        assert_eq!(r.status(), StatusCode::CONFLICT, "{what}");
        assert_eq!(
            node_view(&tc, 2, "c1").await,
            NodeView {
                meta: None,
                state: Default::default(),
                value: Materialised::Absent,
            },
            "the refused {what} is gone from node 2"
        );
    }
    assert_eq!(
        counter_arrives(&tc, "c1", 2).await,
        MergeCode::Changed,
        "the counter lands"
    );
    converged(&tc, "c1", &Materialised::Str("2".into()))
        .await
        .unwrap();
    let check = exchange(tc.app()).await;
    assert_eq!(check.buckets_mismatched, 0, "{check:?}");
    tc.shutdown().await;
}

/// A key left holding a counter on some nodes and a key-value entry on another (a refused
/// write that could not be taken back from a node out of reach) is reported by the sweep for
/// resolution by hand; neither model is copied over the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_holding_both_models_is_reported_and_left_alone() {
    use quorumd::calls::store::{NodeCondition, WriteOutcome};
    use quorumd::hlc::{Version, wall_clock_ms};
    use quorumd::meta::Meta;
    let tc = TestCluster::start(3).await;
    for n in [0, 1] {
        assert_eq!(counter_arrives(&tc, "c1", n).await, MergeCode::Changed);
    }
    let store = tc.app().store();
    // Older than the in-flight window, so that the exchange does not defer it.
    let version = Version {
        ms: wall_clock_ms() - 3_600_000,
        counter: 0,
        writer: 1,
    };
    let meta = Meta::for_string(b"c1", version, Some(b"x"), None);
    let loc = store.locate(b"c1").unwrap();
    let node2 = store.pool().node(2);
    let written = calls::store::write(node2, &loc, &meta, b"x", &NodeCondition::None).await;
    assert_eq!(written.unwrap(), WriteOutcome::Applied);
    let mut before = Vec::new();
    for i in 0..3 {
        before.push(node_view(&tc, i, "c1").await);
    }
    let report = exchange(tc.app()).await;
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("\"c1\"") && e.contains("resolve by hand")),
        "{report:?}"
    );
    for (i, view) in before.iter().enumerate() {
        assert_eq!(node_view(&tc, i, "c1").await, *view, "node {i} unchanged");
    }
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() {
    let tc = TestCluster::start_with(3, |c| c.http.max_body_bytes = 4096).await;
    let b = &tc.base;
    let raw = |method: reqwest::Method, url: String, body: &'static str| {
        let http = tc.http.clone();
        async move {
            let r = http
                .request(method, url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let s = r.status();
            (s, body_json(r).await)
        }
    };
    use reqwest::Method;
    let cases: Vec<(Method, String, &'static str, StatusCode, &str)> = vec![
        (
            Method::POST,
            format!("{b}/v1/counters/c"),
            "{",
            StatusCode::BAD_REQUEST,
            "invalid JSON",
        ),
        (
            Method::POST,
            format!("{b}/v1/counters/c"),
            "{}",
            StatusCode::BAD_REQUEST,
            "missing field `delta`",
        ),
        (
            Method::POST,
            format!("{b}/v1/counters/c"),
            r#"{"delta":1e30}"#,
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            Method::POST,
            format!("{b}/v1/counters/c"),
            r#"{"delta":9223372036854775808}"#,
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            Method::POST,
            format!("{b}/v1/counters/c"),
            r#"{"delta":1,"x":2}"#,
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            Method::POST,
            format!("{b}/v1/counters/c?consistency=most"),
            r#"{"delta":1}"#,
            StatusCode::BAD_REQUEST,
            "most",
        ),
        (
            Method::POST,
            format!("{b}/v1/counters/c?ttl_ms=5"),
            r#"{"delta":1}"#,
            StatusCode::BAD_REQUEST,
            "query",
        ),
        (
            Method::POST,
            format!("{b}/v1/counters/{}x", common::key_prefix()),
            r#"{"delta":1}"#,
            StatusCode::BAD_REQUEST,
            "reserved",
        ),
        (
            Method::POST,
            format!("{b}/v1/counters/a%01b"),
            r#"{"delta":1}"#,
            StatusCode::BAD_REQUEST,
            "control",
        ),
        (
            Method::POST,
            format!("{b}/v1/sets/s/add"),
            r#"{"members":[]}"#,
            StatusCode::BAD_REQUEST,
            "empty",
        ),
        (
            Method::POST,
            format!("{b}/v1/sets/s/add"),
            r#"{"members":[1]}"#,
            StatusCode::BAD_REQUEST,
            "invalid JSON",
        ),
        (
            Method::POST,
            format!("{b}/v1/sets/s/remove"),
            r#"["a"]"#,
            StatusCode::BAD_REQUEST,
            "invalid JSON",
        ),
        (
            Method::PATCH,
            format!("{b}/v1/maps/m"),
            r#"{"f":1}"#,
            StatusCode::BAD_REQUEST,
            "strings",
        ),
        (
            Method::PATCH,
            format!("{b}/v1/maps/m"),
            "{}",
            StatusCode::BAD_REQUEST,
            "at least one",
        ),
        (
            Method::PATCH,
            format!("{b}/v1/maps/m"),
            r#"{"":"v"}"#,
            StatusCode::BAD_REQUEST,
            "empty",
        ),
        (
            Method::PUT,
            format!("{b}/v1/counters/c"),
            r#"{"delta":1}"#,
            StatusCode::METHOD_NOT_ALLOWED,
            "not allowed",
        ),
    ];
    for (method, url, body, status, needle) in cases {
        let (s, e) = raw(method.clone(), url.clone(), body).await;
        let message = e["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(s, status, "{method} {url} {body}: {e}");
        assert!(message.contains(needle), "{method} {url} {body}: {message}");
    }
    let big = format!(r#"{{"members":["{}"]}}"#, "x".repeat(5000));
    let r = tc
        .http
        .post(format!("{b}/v1/sets/s/add"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let e = body_json(r).await;
    assert_eq!(
        (
            e["error"]["code"].clone(),
            e["error"]["limit_bytes"].clone()
        ),
        (json!("payload_too_large"), json!(4096))
    );
    let r = tc
        .http
        .post(format!("{b}/v1/counters/c"))
        .header("Idempotency-Key", "a")
        .json(&json!({ "delta": 1, "request_id": "b" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Nothing above created anything, and the service still answers.
    let (s, v) = json_get(&tc, &format!("{b}/v1/counters/c")).await;
    assert_eq!((s, v["value"].clone()), (StatusCode::OK, json!(0)));
    tc.shutdown().await;
}

/// A member named twice in one add is added and counted once (`added` said 4 for
/// `["a", "a", "b", ""]`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_named_twice_is_counted_once() {
    let tc = TestCluster::start(3).await;
    let (s, v) = post(
        &tc,
        format!("{}/v1/sets/s/add", tc.base),
        json!({"members": ["a", "a", "b", ""]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["added"], 3, "{v}");
    let (_, v) = json_get(&tc, &format!("{}/v1/sets/s", tc.base)).await;
    assert_eq!(v["members"], json!(["", "a", "b"]), "{v}");
    tc.shutdown().await;
}

/// HINCRBY on a field of a map made through the HTTP API reads the field as Redis reads a hash
/// field: `01`, `+1`, ` 1` and `-0` are not integers (they were taken for numbers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hincrby_on_a_map_field_refuses_what_redis_refuses() {
    use quorumd::resp::frame::Frame;
    let tc = TestCluster::start(3).await;
    let fields = json!({"lead": "01", "plus": "+1", "space": " 1", "minus_zero": "-0", "ok": "-7"});
    let r = tc
        .http
        .patch(format!("{}/v1/maps/m", tc.base))
        .json(&fields)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let addr = tc.app().resp_addr().expect("resp enabled");
    let mut c = quorumd_testkit::resp::RespClient::connect(addr).await;
    for field in ["lead", "plus", "space", "minus_zero"] {
        assert_eq!(
            c.call(&[b"HINCRBY", b"m", field.as_bytes(), b"1"]).await,
            Frame::error("ERR hash value is not an integer"),
            "{field}"
        );
    }
    assert_eq!(
        c.call(&[b"HINCRBY", b"m", b"ok", b"2"]).await,
        Frame::Integer(-5)
    );
    let (s, v) = json_get(&tc, &format!("{}/v1/maps/m", tc.base)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["lead"], "01",
        "the refused increments changed nothing: {v}"
    );
    tc.shutdown().await;
}

/// A node restarted empty is `recovering`: it takes updates but does not count for reads, and
/// the exchange merges every CRDT back into it before it counts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_empty_gets_every_crdt_back_by_merging() {
    let mut tc = TestCluster::start(3).await;
    write_before_restart(&tc, &["team"], "conf").await;
    // Every node has them before one is wiped.
    wait_until(Duration::from_secs(5), "writes on node 1", || async {
        node_view(&tc, 1, "conf").await.state.len() == 2
            && node_view(&tc, 1, "stock").await.value == Materialised::Str("43".into())
    })
    .await;
    // The sentinel makes the wipe visible even if the restart's new run_id were missed.
    exchange(tc.app()).await;
    tc.cluster.nodes[1].restart_empty().unwrap();
    // An update while it is gone or recovering (its answers do not count for reads).
    assert_eq!(
        counter_add(&tc, &tc.base, "stock", 1).await.0,
        StatusCode::OK
    );
    let models = [
        ("stock", Materialised::Str("44".into())),
        ("team", set_of(["ann".into(), "bob".into()])),
        ("conf", conf_model()),
    ];
    // The exchange its return triggers merges everything back (quickly enough that polling
    // may never see it `recovering`); then it counts again.
    wait_until(
        Duration::from_secs(15),
        "node 1 merged back and up",
        || async {
            let mut ok = tc.health(1).await == "up";
            for (key, model) in &models {
                ok &= converged(&tc, key, model).await.is_ok();
            }
            ok
        },
    )
    .await;
    exchange(tc.app()).await;
    for (key, model) in &models {
        converged(&tc, key, model).await.unwrap();
    }
    // The set and the map were neither read nor written since: only the sweep merged them.
    let repaired = repaired_by(&[tc.app()]).await;
    assert!(repaired[1] >= 2, "{repaired:?}");
    tc.shutdown().await;
}
