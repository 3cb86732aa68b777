//! Locking queues against real redis-server processes: the HTTP API, priorities, delays,
//! leases, dead letters, bad input, a node that missed an ack, and many producers and consumers
//! while a consumer dies mid-lease and a node fails. Lease histories go through the same
//! exclusion checker as locks, with a negative control.

#[path = "support/queue.rs"]
mod queues;

use quorumd_testkit::cluster as common;

use common::{TestCluster, post_json as post};
use queues::{Leases, Workload, act, act_with, claim, drained, put, q};
use quorumd::config::{LocksConfig, QueueConfig};
use quorumd::locks::{LockService, UnsafeKnobs};
use quorumd::queue::QueueService;
use quorumd_testkit::checker::locks::{Violation, check};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

async fn depths(tc: &TestCluster, name: &str) -> Value {
    let (s, v) = tc.json(&format!("/v1/queues/{name}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_delays_leases_and_dead_letters() {
    let tc = TestCluster::start_with(3, |c| c.queues.max_deliveries = 2).await;
    // Numeric priorities: 10 beats 9 (as text, "10" < "9"); FIFO within a priority.
    let low = put(&tc, "jobs", json!({"payload": "low", "priority": 1})).await;
    let ten_a = put(
        &tc,
        "jobs",
        json!({"payload": {"n": "ten-a"}, "priority": 10}),
    )
    .await;
    let nine = put(&tc, "jobs", json!({"payload": "nine", "priority": 9})).await;
    let ten_b = put(&tc, "jobs", json!({"payload": "ten-b", "priority": 10})).await;
    let neg = put(&tc, "jobs", json!({"payload": "neg", "priority": -5})).await;
    let later = put(
        &tc,
        "jobs",
        json!({"payload": "later", "priority": 99, "delay_ms": 1500}),
    )
    .await;
    assert_eq!(
        depths(&tc, "jobs").await,
        json!({"ready": 5, "leased": 0, "delayed": 1, "dead": 0})
    );
    let mut order = Vec::new();
    let mut held = Vec::new();
    while let Some(item) = claim(&tc, "jobs", 10_000).await {
        assert_eq!(item["deliveries"], 1);
        order.push(item["id"].as_str().unwrap().to_string());
        held.push(item);
    }
    assert_eq!(order, [ten_a.clone(), ten_b, nine, low, neg]);
    assert_eq!(held[0]["payload"], json!({"n": "ten-a"}));
    assert_eq!(
        depths(&tc, "jobs").await,
        json!({"ready": 0, "leased": 5, "delayed": 1, "dead": 0})
    );

    // Ack removes; acking again with the same lease is stale.
    let (s, _) = act(&tc, "jobs", &held[0], "ack").await;
    assert_eq!(s, StatusCode::OK);
    let (s, e) = act(&tc, "jobs", &held[0], "ack").await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("stale_lease"))
    );

    // Extend keeps it; nack returns it (delayed), and it comes back with deliveries 2.
    let (s, v) = act_with(&tc, "jobs", &held[1], "extend", json!({"lease_ms": 20_000})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["validity_ms"].as_u64().unwrap() > 19_000);
    let (s, _) = act_with(&tc, "jobs", &held[1], "nack", json!({"delay_ms": 300})).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = act(&tc, "jobs", &held[1], "ack").await;
    assert_eq!(s, StatusCode::CONFLICT, "a nacked lease is stale");
    assert_eq!(depths(&tc, "jobs").await["delayed"], 2);

    // The delayed item with priority 99 comes first once its delay is over.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let first = claim(&tc, "jobs", 10_000).await.unwrap();
    assert_eq!(first["id"], later.as_str());
    let again = claim(&tc, "jobs", 10_000).await.unwrap();
    assert_eq!(again["id"], held[1]["id"]);
    assert_eq!(again["deliveries"], 2);
    // max_deliveries = 2: the next return and claim dead-letters it instead of delivering it.
    act(&tc, "jobs", &again, "nack").await;
    assert!(claim(&tc, "jobs", 10_000).await.is_none());
    let d = depths(&tc, "jobs").await;
    assert_eq!(d["dead"], 1, "{d}");
    assert_eq!(d["ready"], 0, "{d}");
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_makes_the_item_claimable_and_the_old_lease_stale() {
    let tc = TestCluster::start(3).await;
    put(&tc, "q", json!({"payload": 1})).await;
    let first = claim(&tc, "q", 300).await.unwrap();
    assert!(
        claim(&tc, "q", 300).await.is_none(),
        "leased: nothing else to claim"
    );
    assert_eq!(depths(&tc, "q").await["leased"], 1);
    let (s, v) = post(
        &tc.http,
        q(&tc, "q", "/claim"),
        json!({"lease_ms": 5000, "wait_ms": 2000}),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "claimed again after the lease ran out: {v}"
    );
    assert_eq!(v["id"], first["id"]);
    assert_eq!(v["deliveries"], 2);
    let (s, _) = act(&tc, "q", &first, "ack").await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = act(&tc, "q", &v, "ack").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        depths(&tc, "q").await,
        json!({"ready": 0, "leased": 0, "delayed": 0, "dead": 0})
    );
    // Every node confirmed the ack: the item is purged, not left as a tombstone.
    for n in 0..3 {
        let mut c = tc.direct(n).await;
        let len: u64 = redis::cmd("HLEN")
            .arg(common::reserved_key("q:q:rec"))
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(len, 0, "node {n}");
    }
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_an_ack_does_not_bring_the_item_back() {
    let mut tc = TestCluster::start(3).await;
    let id = put(&tc, "q", json!({"payload": "x"})).await;
    let claimed_at = Instant::now();
    let item = claim(&tc, "q", 2500).await.unwrap();
    tc.isolate(2).await;
    let (s, _) = act(&tc, "q", &item, "ack").await;
    assert_eq!(s, StatusCode::OK);
    tc.cluster.nodes[2].resume();
    tc.wait_health(2, "up").await;
    let mut c = tc.direct(2).await;
    let records = common::reserved_key("q:q:rec");
    let stale: String = common::command(&mut c, &["HGET", &records, &id]).await;
    assert!(stale.starts_with('l'), "node 2 missed the ack: {stale}");
    // Once the lease has run out, node 2 proposes the item again; the majority's tombstone wins.
    tokio::time::sleep(Duration::from_millis(2600).saturating_sub(claimed_at.elapsed())).await;
    assert!(claim(&tc, "q", 5000).await.is_none());
    let healed: String = common::command(&mut c, &["HGET", &records, &id]).await;
    assert!(
        healed.starts_with('a'),
        "the claim repaired node 2: {healed}"
    );
    assert_eq!(depths(&tc, "q").await["ready"], 0);
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error() {
    let tc = TestCluster::start_with(3, |c| c.queues.max_payload_bytes = 1000).await;
    let bad = |rest: &'static str, body: Value| ("q", rest, body, StatusCode::BAD_REQUEST);
    let cases = [
        (
            "bad name",
            "/items",
            json!({"payload": 1}),
            StatusCode::BAD_REQUEST,
        ),
        bad("/items", json!({"priority": 1})),
        bad("/items", json!({"payload": 1, "priority": "high"})),
        bad("/items", json!({"payload": 1, "priority": 1.5})),
        bad("/items", json!({"payload": 1, "delay_ms": -1})),
        (
            "q",
            "/items",
            json!({"payload": "x".repeat(2000)}),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        bad("/claim", json!({"lease_ms": 0})),
        bad("/claim", json!({"lease_ms": 1_000_000_000})),
        bad("/claim", json!({"lease_ms": 100, "extra": 1})),
        bad("/items/nothex/ack", json!({"lease": "0".repeat(32)})),
        bad(
            "/items/01a2011a3cc40000002d068005294ea84e/ack",
            json!({"lease": "short"}),
        ),
        (
            "q",
            "/items/01a2011a3cc40000002d068005294ea84e/ack",
            json!({"lease": "0".repeat(32)}),
            StatusCode::CONFLICT,
        ),
        (
            "q",
            "/items/01a2011a3cc40000002d068005294ea84e/poke",
            json!({"lease": "0".repeat(32)}),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (name, rest, body, want) in cases {
        let url = format!("{}/v1/queues/{}{rest}", tc.base, name.replace(' ', "%20"));
        let (s, e) = post(&tc.http, url, body.clone()).await;
        assert_eq!(s, want, "{name}{rest} {body}: {e}");
        assert!(
            !e["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{e}"
        );
    }
    let r = common::post_raw_json(&tc.http, q(&tc, "q", "/items"), "{\"payload\": ").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_and_consumers_with_a_dead_consumer_and_a_failing_node_lose_nothing() {
    let mut tc = TestCluster::start_with(3, |c| c.queues.max_deliveries = 4).await;
    let mut work = Workload::start(&tc, "work");
    tokio::time::sleep(Duration::from_millis(800)).await;
    tc.cluster.nodes[1].pause();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    tc.cluster.nodes[1].resume();
    work.producers_done().await;
    tc.cluster.nodes[2].kill();
    work.finish(|| async { drained(&depths(&tc, "work").await) })
        .await;
    work.check(&depths(&tc, "work").await);
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_minority_leases_hand_an_item_to_two_consumers() {
    let tc = TestCluster::start(3).await;
    let store = tc.app().store().clone();
    let unsafe_locks = LockService::with_unsafe_knobs(
        store.pool().clone(),
        LocksConfig::default(),
        &common::default_layout(),
        UnsafeKnobs {
            required: Some(1),
            ..UnsafeKnobs::default()
        },
    );
    let queues = QueueService::new(
        store,
        unsafe_locks,
        QueueConfig {
            max_deliveries: 1000,
            ..QueueConfig::default()
        },
    );
    queues.put("one", "1", 0, 0).await.unwrap();
    let leases = Arc::new(Leases {
        t0: Instant::now(),
        history: Mutex::default(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..8 {
        let (queues, leases, stop) = (queues.clone(), leases.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let sent = leases.now();
                if let Ok(Some(item)) = queues.claim("one", 2000, 0).await {
                    let got = leases.now();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    leases.record(&item.id, &format!("c{c}"), sent, got, item.validity_ms);
                    let _ = queues.nack("one", &item.id, &item.lease, 0).await;
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && check(&leases.history.lock().unwrap()).is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let violations = check(&leases.history.lock().unwrap());
    assert!(
        violations
            .iter()
            .any(|v| matches!(v, Violation::Overlap { .. })),
        "leases granted by one node of three must overlap"
    );
    tc.shutdown().await;
}
