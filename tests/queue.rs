//! Locking queues against real redis-server processes: the HTTP API, priorities, delays,
//! leases, dead letters, bad input, a node that missed an ack, and many producers and consumers
//! while a consumer dies mid-lease and a node fails. Lease histories go through the same
//! exclusion checker as locks, with a negative control. And the heal of queue state by the
//! sweeps: each node wiped in turn loses nothing (with a negative control), a wiped node gets
//! an acked item's tombstone, the full sweep catches up a node that was away, and a restore
//! never brings back an item purged while it ran.

#[path = "support/queue.rs"]
mod queues;

use quorumd_testkit::cluster as common;

use common::{TestCluster, post_json as post, wait_until};
use queues::{Leases, Workload, act, act_with, claim, drained, put, q};
use quorumd::config::{Config, LocksConfig, QueueConfig};
use quorumd::locks::{LockService, UnsafeKnobs};
use quorumd::queue::QueueService;
use quorumd::sync::{SweepMode, SweepReport, SyncError};
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

/// A claim asks every node several times (candidates, lease, item, record); waiting for a
/// frozen node's timeout at each step once took 1.6 s, past a 1 s lease: the claim answered 204
/// with the item's delivery counted, and repeated, that dead-letters an item nobody received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_does_not_cost_a_claim_its_lease() {
    let mut tc = TestCluster::start(3).await;
    let id = put(&tc, "q", json!({"payload": "x"})).await;
    tc.cluster.nodes[2].pause();
    let claimed = claim(&tc, "q", 1000)
        .await
        .expect("a majority answers: the claim hands out the item within its lease");
    assert_eq!(claimed["id"], id.as_str());
    assert_eq!(claimed["deliveries"], 1);
    let (s, v) = act(&tc, "q", &claimed, "ack").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    tc.cluster.nodes[2].resume();
    assert!(
        claim(&tc, "q", 1000).await.is_none(),
        "acknowledged: nothing left to claim"
    );
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_an_ack_does_not_bring_the_item_back() {
    let mut tc = TestCluster::start(3).await;
    let id = put(&tc, "q", json!({"payload": "x"})).await;
    let claimed_at = Instant::now();
    let item = claim(&tc, "q", 2500).await.unwrap();
    on_every_node(&tc, "q", &id, 'l').await;
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
    // A claim that hears node 2's proposal (within the lock module's per-node limit) repairs
    // it; its write there may land after the claim answered.
    wait_until(
        Duration::from_secs(10),
        "a claim repaired node 2",
        || async {
            assert!(claim(&tc, "q", 5000).await.is_none(), "the item came back");
            record_on(&tc, 2, "q", &id)
                .await
                .is_some_and(|r| r.starts_with('a'))
        },
    )
    .await;
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

/// Heal tests: a node that lost its data counts for lock majorities, and so for the queue's
/// reads, 1.5 s after its loss instead of a minute, so claims can follow the wipes.
fn short_lock_delay(c: &mut Config) {
    c.locks.max_ttl_ms = 1500;
}

/// What node `node` holds of queue `name`: (records, payloads, ready index entries).
async fn held_on(tc: &TestCluster, node: usize, name: &str) -> (u64, u64, u64) {
    let mut c = tc.direct(node).await;
    let key = |part: &str| common::reserved_key(&format!("q:{name}:{part}"));
    let rec: u64 = common::command(&mut c, &["HLEN", &key("rec")]).await;
    let pay: u64 = common::command(&mut c, &["HLEN", &key("pay")]).await;
    let ready: u64 = common::command(&mut c, &["ZCARD", &key("ready")]).await;
    (rec, pay, ready)
}

/// Item `id`'s record on node `node`, straight from the node.
async fn record_on(tc: &TestCluster, node: usize, name: &str, id: &str) -> Option<String> {
    let key = common::reserved_key(&format!("q:{name}:rec"));
    common::command(&mut tc.direct(node).await, &["HGET", &key, id]).await
}

/// Waits until every node holds item `id` in the state whose record starts with `state` (`r`,
/// `l`, `a`): a queue operation answers once a majority stored it, and a test that cuts a node
/// off next must know that node got it first.
async fn on_every_node(tc: &TestCluster, name: &str, id: &str, state: char) {
    wait_until(
        Duration::from_secs(10),
        &format!("every node holds {id} in state {state}"),
        || async {
            for n in 0..tc.cluster.nodes.len() {
                let rec = record_on(tc, n, name, id).await;
                if !rec.is_some_and(|r| r.starts_with(state)) {
                    return false;
                }
            }
            true
        },
    )
    .await;
}

/// Kills node `i` (SIGKILL), starts it again empty on its port, and waits until quorumd has
/// marked the loss and then called the node back in sync (`up` in /v1/status): the heal the
/// operator waits for, by the recovery exchange the loss starts (the tests' exchange interval
/// is off).
async fn wipe_and_heal(tc: &mut TestCluster, i: usize) {
    let pool = tc.app().store().pool().clone();
    let losses = pool.node(i).losses_marked();
    tc.cluster.nodes[i].restart_empty().unwrap();
    wait_until(
        Duration::from_secs(30),
        &format!("node {i} seen wiped, then back in sync"),
        || async { pool.node(i).losses_marked() > losses && tc.health(i).await == "up" },
    )
    .await;
}

/// The operator's sequence: node B (1), then A (0), then C (2) is killed, restarted empty and
/// healed before the next. Returns the records each node holds after each heal.
async fn wipe_each_in_turn(tc: &mut TestCluster, name: &str) -> Vec<[u64; 3]> {
    let mut after = Vec::new();
    for i in [1, 0, 2] {
        wipe_and_heal(tc, i).await;
        let mut row = [0; 3];
        for (n, held) in row.iter_mut().enumerate() {
            *held = held_on(tc, n, name).await.0;
        }
        after.push(row);
    }
    after
}

/// A claim once a majority of the nodes counts for the queue (a node is left out for
/// `locks.max_ttl_ms` after a loss): `None` when nothing is claimable.
async fn claim_counted(tc: &TestCluster, name: &str) -> Option<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, v) = post(&tc.http, q(tc, name, "/claim"), json!({"lease_ms": 1000})).await;
        match s {
            StatusCode::OK => return Some(v),
            StatusCode::NO_CONTENT => return None,
            StatusCode::SERVICE_UNAVAILABLE if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => panic!("claim: {other} {v}"),
        }
    }
}

/// Five items put (all 201), each node wiped in turn with a heal between: the exchange that
/// heals a wiped node restores every queue onto it (docs/QUEUE.md, "Anti-entropy"), so no
/// acknowledged item is lost and the queue hands out all five, then nothing. Before, the
/// queue was never copied back and the wiped nodes held 5/0/5, 0/0/5, then 0/0/0 records (the
/// negative control below).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiping_each_node_in_turn_loses_no_acknowledged_item() {
    let mut tc = TestCluster::start_with(3, short_lock_delay).await;
    let mut ids = std::collections::BTreeMap::new();
    for n in 0..5 {
        ids.insert(put(&tc, "mail", json!({"payload": {"n": n}})).await, n);
    }
    let after = wipe_each_in_turn(&mut tc, "mail").await;
    assert_eq!(
        after,
        vec![[5, 5, 5]; 3],
        "records per node after each heal"
    );
    for n in 0..3 {
        assert_eq!(held_on(&tc, n, "mail").await, (5, 5, 5), "node {n}");
    }
    // Each heal merged the five items into the wiped node, once.
    let totals = tc.app().sweeper().status().totals;
    assert_eq!(totals.queue_items_restored, 15, "{totals:?}");

    let mut handed = std::collections::BTreeMap::new();
    while let Some(item) = claim_counted(&tc, "mail").await {
        let id = item["id"].as_str().unwrap().to_string();
        assert_eq!(item["deliveries"], 1, "{item}");
        let (s, v) = act(&tc, "mail", &item, "ack").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        handed.insert(id, item["payload"]["n"].as_i64().unwrap());
    }
    assert_eq!(handed, ids, "every acknowledged put handed out once");
    assert_eq!(
        depths(&tc, "mail").await,
        json!({"ready": 0, "leased": 0, "delayed": 0, "dead": 0})
    );
    tc.shutdown().await;
}

/// The negative control of the test above: with the sweeps' queue heal switched off, the same
/// sequence reaches the operator's report, each wiped node called back in sync without its
/// queue, and every item lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_without_the_queue_heal_the_wipes_lose_every_item() {
    let mut tc = TestCluster::start_with(3, short_lock_delay).await;
    tc.app()
        .sweeper()
        .unsafe_knobs
        .skip_queue_heal
        .store(true, Ordering::Relaxed);
    for n in 0..5 {
        put(&tc, "mail", json!({"payload": {"n": n}})).await;
    }
    let after = wipe_each_in_turn(&mut tc, "mail").await;
    assert_eq!(after, vec![[5, 0, 5], [0, 0, 5], [0, 0, 0]]);
    assert!(
        claim_counted(&tc, "mail").await.is_none(),
        "the items are lost"
    );
    tc.shutdown().await;
}

/// A restore writes the join of what the nodes hold, with the queue's merge: an item acked
/// while node 2 was cut off (node 2 still holds it leased) reaches a wiped node 0 as its
/// tombstone, never as node 2's live copy, and is not handed out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_gets_the_tombstone_of_an_acked_item_not_a_stale_copy() {
    // Nodes 1 and 2 keep counting for the queue while node 0 is left out after its wipe.
    let mut tc = TestCluster::start(3).await;
    let done = put(&tc, "q", json!({"payload": "done"})).await;
    let mut rest = std::collections::BTreeSet::new();
    for p in ["a", "b"] {
        rest.insert(put(&tc, "q", json!({"payload": p})).await);
    }
    let item = claim(&tc, "q", 30_000).await.unwrap();
    assert_eq!(item["id"], done.as_str());
    on_every_node(&tc, "q", &done, 'l').await;
    tc.isolate(2).await;
    let (s, v) = act(&tc, "q", &item, "ack").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    tc.cluster.nodes[2].resume();
    tc.wait_health(2, "up").await;
    let stale = record_on(&tc, 2, "q", &done).await.unwrap();
    assert!(stale.starts_with('l'), "node 2 missed the ack: {stale}");

    wipe_and_heal(&mut tc, 0).await;
    let restored = record_on(&tc, 0, "q", &done).await.unwrap();
    assert!(restored.starts_with('a'), "the tombstone: {restored}");
    assert_eq!(
        held_on(&tc, 0, "q").await,
        (3, 2, 2),
        "2 live items and a tombstone"
    );
    let mut handed = std::collections::BTreeSet::new();
    while let Some(item) = claim_counted(&tc, "q").await {
        let (s, v) = act(&tc, "q", &item, "ack").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        handed.insert(item["id"].as_str().unwrap().to_string());
    }
    assert_eq!(handed, rest, "the acked item is not handed out again");
    tc.shutdown().await;
}

/// Runs one sweep of `mode` once no sweep of that mode is running (node 2's return from down
/// starts a recovery exchange of its own).
async fn sweep_when_idle(tc: &TestCluster, mode: SweepMode, dry_run: bool) -> SweepReport {
    loop {
        match tc.try_sweep(mode, dry_run).await {
            Err(SyncError::AlreadyRunning(_)) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => return other.unwrap(),
        }
    }
}

/// A node that was away (not wiped) is not the exchange's business for queues: the full sweep
/// brings every node up to the join, here node 2, which missed three puts while frozen, and
/// node 1, whose copy of an item was deleted by hand. A dry run counts the items and writes
/// nothing; a second sweep finds nothing left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sweep_brings_every_node_up_to_date_with_the_queues() {
    let mut tc = TestCluster::start(3).await;
    let first = put(&tc, "q", json!({"payload": "first"})).await;
    on_every_node(&tc, "q", &first, 'r').await;
    tc.isolate(2).await;
    for p in ["a", "b", "c"] {
        put(&tc, "q", json!({"payload": p})).await;
    }
    tc.cluster.nodes[2].resume();
    tc.wait_health(2, "up").await;
    let mut c = tc.direct(1).await;
    let key = |part: &str| common::reserved_key(&format!("q:q:{part}"));
    let _: u64 = common::command(&mut c, &["HDEL", &key("rec"), &first]).await;
    let _: u64 = common::command(&mut c, &["HDEL", &key("pay"), &first]).await;
    let _: u64 = common::command(&mut c, &["ZREM", &key("ready"), &first]).await;

    let exchange = sweep_when_idle(&tc, SweepMode::Exchange, false).await;
    assert_eq!(
        (exchange.queues_checked, exchange.queue_items_restored()),
        (0, 0),
        "no node lost data: {exchange:?}"
    );
    let dry = sweep_when_idle(&tc, SweepMode::Full, true).await;
    assert_eq!(dry.queues_checked, 1, "{dry:?}");
    assert_eq!(dry.queue_items_restored_per_node, [0, 1, 3], "{dry:?}");
    assert_eq!(
        held_on(&tc, 2, "q").await,
        (1, 1, 1),
        "a dry run writes nothing"
    );

    let report = sweep_when_idle(&tc, SweepMode::Full, false).await;
    assert_eq!(
        report.queue_items_restored_per_node,
        [0, 1, 3],
        "{report:?}"
    );
    assert_eq!(report.error_count, 0, "{report:?}");
    for n in 0..3 {
        assert_eq!(held_on(&tc, n, "q").await, (4, 4, 4), "node {n}");
    }
    let again = sweep_when_idle(&tc, SweepMode::Full, false).await;
    assert_eq!(again.queue_items_restored(), 0, "{again:?}");
    tc.shutdown().await;
}

/// The purge race: a restore that read a live copy of an item before the item was acked and
/// purged everywhere must not bring it back. The target's purge log, kept for
/// `PURGE_LOG_WINDOW_MS`, names the item, and the restore (marked with the target's clock read
/// before the copy) leaves it out; a mark a window old is refused whole. Without the log the
/// same restore brings the acked item back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_does_not_bring_back_an_item_purged_since_its_mark() {
    use quorumd::calls::queue::{
        PURGE_LOG_WINDOW_MS, QueueKeys, RestoreItem, Restored, item_copies, payloads, restore,
        restore_mark,
    };
    let tc = TestCluster::start(3).await;
    let pool = tc.app().store().pool().clone();
    let keys = QueueKeys::new(common::key_prefix(), "", "q");
    let id = put(&tc, "q", json!({"payload": "x"})).await;
    let mark = restore_mark(pool.node(2), &keys).await.unwrap();
    let ids = [id.clone()];
    let copy = item_copies(pool.node(0), &keys, &ids).await.unwrap();
    let record = copy[0].record.clone().unwrap();
    assert!(record.starts_with('r'), "{record}");
    let payload = payloads(pool.node(0), &keys, &[id.as_str()]).await.unwrap()[0]
        .clone()
        .unwrap();
    // Acked with every node up: purged everywhere.
    let item = claim(&tc, "q", 1000).await.unwrap();
    let (s, v) = act(&tc, "q", &item, "ack").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for n in 0..3 {
        assert_eq!(
            record_on(&tc, n, "q", &id).await,
            None,
            "purged on node {n}"
        );
    }
    let stale = [RestoreItem {
        id: &id,
        record: &record,
        payload: &payload,
        acked_at_ms: 0,
    }];
    let old = mark - PURGE_LOG_WINDOW_MS;
    assert_eq!(
        restore(pool.node(2), &keys, old, &stale).await.unwrap(),
        None
    );
    assert_eq!(
        restore(pool.node(2), &keys, mark, &stale).await.unwrap(),
        Some(vec![Restored::Purged])
    );
    assert_eq!(record_on(&tc, 2, "q", &id).await, None, "not brought back");
    // Control: the log is what kept it out.
    let _: u64 = common::command(&mut tc.direct(2).await, &["DEL", &keys.purged]).await;
    assert_eq!(
        restore(pool.node(2), &keys, mark, &stale).await.unwrap(),
        Some(vec![Restored::Merged])
    );
    assert_eq!(record_on(&tc, 2, "q", &id).await, Some(record));
    tc.shutdown().await;
}
