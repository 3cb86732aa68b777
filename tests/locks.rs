//! Locks against real redis-server processes: the HTTP API, bad input, many concurrent
//! clients through two quorumd instances while nodes are paused and killed, and a restarted
//! node. Histories go through `quorumd_testkit::checker::locks`; negative controls run the same
//! checker on a lock with its safety rules switched off and show that it catches them.

use quorumd_testkit::cluster as common;

use common::{TestCluster, body_json, post_json as post, test_config, wait_until};
use quorumd::app::App;
use quorumd::config::LocksConfig;
use quorumd::locks::{LockError, LockService, UnsafeKnobs};
use quorumd_testkit::checker::locks::{Held, Violation, check};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn lock_url(base: &str, name: &str, action: &str) -> String {
    format!("{base}/v1/locks/{name}/{action}")
}

/// What the clients of one run saw: intervals, and a resource that refuses stale fences.
struct Recorder {
    t0: Instant,
    history: Mutex<Vec<Held>>,
    /// Highest fence the resource has accepted.
    resource: Mutex<u64>,
    /// Writes refused as stale although the writer was inside its validity: each one means a
    /// newer fence had been issued to someone else while this holder was still valid.
    refused_while_valid: AtomicU64,
    writes: AtomicU64,
}

impl Recorder {
    fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            t0: Instant::now(),
            history: Mutex::default(),
            resource: Mutex::new(0),
            refused_while_valid: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        })
    }

    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    /// The fenced resource: accepts a write carrying a fence at least the highest it saw.
    fn write(&self, fence: u64) {
        let mut highest = self.resource.lock().unwrap();
        if fence >= *highest {
            *highest = fence;
            self.writes.fetch_add(1, Ordering::Relaxed);
        } else {
            self.refused_while_valid.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One holder's turn: write while valid, hold a little, then record the interval. It
    /// starts when the holder learnt it holds the lock (the answer arrived: an acquisition may
    /// have waited behind another holder first) and ends at the validity, counted from before
    /// the request was sent, or when it let go, whichever is first.
    async fn hold(&self, holder: String, fence: u64, sent_us: u64, validity_ms: u64) {
        let start_us = self.now_us();
        let valid_until = sent_us + validity_ms * 1000;
        if self.now_us() < valid_until {
            self.write(fence);
        }
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..15))).await;
        let end = valid_until.min(self.now_us());
        self.history.lock().unwrap().push(Held {
            resource: "shared".into(),
            holder,
            fence: Some(fence),
            start: start_us,
            end,
        });
    }

    fn violations(&self) -> Vec<Violation> {
        check(&self.history.lock().unwrap())
    }

    fn grants(&self) -> usize {
        self.history.lock().unwrap().len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_extend_release_and_inspect() {
    let tc = TestCluster::start(3).await;
    let b = &tc.base;
    // POSTs `body` to the "job" lock's `action`.
    let job = |action: &str, body: Value| post(&tc.http, lock_url(b, "job", action), body);
    let (s, g) = job("acquire", json!({"ttl_ms": 5000, "owner": "worker-1"})).await;
    assert_eq!(s, StatusCode::OK, "{g}");
    let token = g["token"].as_str().unwrap().to_string();
    let fence = g["fence"].as_u64().unwrap();
    assert!(fence >= 1);
    let validity = g["validity_ms"].as_u64().unwrap();
    assert!(validity > 4800 && validity < 5000, "{validity}");

    let (s, state) = tc.json("/v1/locks/job").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(state["held"], true);
    assert_eq!(state["owner"], "worker-1");
    assert_eq!(state["fence"], fence);
    assert!(state["remaining_ms"].as_u64().unwrap() <= 5000);
    assert!(state.get("token").is_none() && !state.to_string().contains(&token));

    // Held: another acquisition waits, then gets 409.
    let started = Instant::now();
    let (s, e) = job("acquire", json!({"ttl_ms": 1000, "wait_ms": 200})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"]["code"], "lock_held");
    assert!(started.elapsed() >= Duration::from_millis(150));

    // Only the owner extends or releases.
    let other = "0".repeat(32);
    let (s, e) = job("extend", json!({"token": other, "ttl_ms": 1000})).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_holder"))
    );
    let (s, e) = job("release", json!({"token": other})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");

    // Extend re-locks a node that lost the key.
    let mut c = tc.direct(2).await;
    let _: () = redis::cmd("DEL")
        .arg(common::reserved_key("lock:l:job"))
        .query_async(&mut c)
        .await
        .unwrap();
    let (s, g) = job("extend", json!({"token": token, "ttl_ms": 8000})).await;
    assert_eq!(s, StatusCode::OK, "{g}");
    assert_eq!(g["fence"], fence);
    assert!(g["validity_ms"].as_u64().unwrap() > 7800);
    let pttl: i64 = redis::cmd("PTTL")
        .arg(common::reserved_key("lock:l:job"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(
        pttl > 7000,
        "node 2 re-locked with the new ttl, pttl {pttl}"
    );

    let (s, _) = job("release", json!({"token": token})).await;
    assert_eq!(s, StatusCode::OK);
    let (_, state) = tc.json("/v1/locks/job").await;
    assert_eq!(state["held"], false);
    assert_eq!(
        state["fence"], fence,
        "the highest fence issued is still shown"
    );
    // A released token is stale.
    let (s, _) = job("release", json!({"token": token})).await;
    assert_eq!(s, StatusCode::CONFLICT);

    let (s, g) = job("acquire", json!({"ttl_ms": 1000})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(g["fence"].as_u64().unwrap(), fence + 1);
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_400() {
    let tc = TestCluster::start(3).await;
    let b = &tc.base;
    let cases = [
        ("bad%20name", json!({"ttl_ms": 1000}), "name"),
        ("ok", json!({"ttl_ms": -5}), "ttl_ms"),
        ("ok", json!({"ttl_ms": 0}), "ttl_ms"),
        // Within the drift allowance (2 ms + 1%): no validity could ever be left.
        ("ok", json!({"ttl_ms": 2}), "drift"),
        ("ok", json!({"ttl_ms": 10_000_000_000u64}), "ttl_ms"),
        (
            "ok",
            json!({"ttl_ms": 1000, "wait_ms": 3_600_000}),
            "wait_ms",
        ),
        ("ok", json!({"ttl_ms": 1000, "colour": 1}), "colour"),
        ("ok", json!({"wait_ms": 10}), "ttl_ms"),
        (
            "ok",
            json!({"ttl_ms": 1000, "owner": "x".repeat(300)}),
            "owner",
        ),
    ];
    for (name, body, mentions) in cases {
        let (s, e) = post(&tc.http, lock_url(b, name, "acquire"), body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{name} {body}: {e}");
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.contains(mentions), "{body}: {msg}");
    }
    let long = "n".repeat(201);
    let (s, _) = post(
        &tc.http,
        lock_url(b, &long, "acquire"),
        json!({"ttl_ms": 10}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let r = common::post_raw_json(&tc.http, lock_url(b, "ok", "acquire"), "{not json").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body_json(r).await["error"]["code"], "bad_request");
    let (s, e) = post(
        &tc.http,
        lock_url(b, "ok", "release"),
        json!({"token": "nope"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(e["error"]["message"].as_str().unwrap().contains("token"));
    // An extend to a TTL within the drift allowance is refused before anything is written: it
    // set that TTL on every node, freed the lock and answered `not_holder`.
    let (s, held) = post(
        &tc.http,
        lock_url(b, "ex", "acquire"),
        json!({"ttl_ms": 5000}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{held}");
    let (s, e) = post(
        &tc.http,
        lock_url(b, "ex", "extend"),
        json!({"token": held["token"], "ttl_ms": 3}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("drift"),
        "{e}"
    );
    let state = common::get_json(&tc.http, &format!("{b}/v1/locks/ex")).await;
    assert_eq!(state["held"], true, "still held: {state}");
    let r = tc
        .http
        .post(lock_url(b, "ok", "acquire"))
        .header("content-type", "application/json")
        .body(vec![b' '; 17 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_through_two_instances_never_overlap_under_faults() {
    let mut tc = TestCluster::start(3).await;
    let second = App::start(test_config(tc.cluster.urls()).validate().unwrap())
        .await
        .unwrap();
    let bases = [tc.base.clone(), format!("http://{}", second.http_addr())];
    let rec = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..6 {
        let (rec, stop, http) = (rec.clone(), stop.clone(), tc.http.clone());
        let base = bases[w % 2].clone();
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let start = rec.now_us();
                let (s, g) = post(
                    &http,
                    lock_url(&base, "shared", "acquire"),
                    json!({"ttl_ms": 400, "wait_ms": 500, "owner": format!("w{w}")}),
                )
                .await;
                if s != StatusCode::OK {
                    assert!(
                        matches!(s, StatusCode::CONFLICT | StatusCode::SERVICE_UNAVAILABLE),
                        "{s}: {g}"
                    );
                    continue;
                }
                let fence = g["fence"].as_u64().unwrap();
                let validity = g["validity_ms"].as_u64().unwrap();
                rec.hold(format!("w{w}"), fence, start, validity).await;
                let token = g["token"].as_str().unwrap();
                post(
                    &http,
                    lock_url(&base, "shared", "release"),
                    json!({"token": token}),
                )
                .await;
            }
        }));
    }
    let before_faults = rec.grants();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tc.cluster.nodes[0].pause();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tc.cluster.nodes[0].resume();
    tc.wait_health(0, "up").await;
    let mid = rec.grants();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    tc.cluster.nodes[1].kill();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let violations = rec.violations();
    assert!(
        violations.is_empty(),
        "{}",
        violations
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(rec.refused_while_valid.load(Ordering::Relaxed), 0);
    let total = rec.grants();
    assert!(
        total >= 30,
        "only {total} grants (before faults {before_faults}, mid {mid})"
    );
    assert!(total > mid, "grants continued after a node was killed");
    second.shutdown().await.unwrap();
    tc.shutdown().await;
}

/// Runs `clients` library-level clients on one lock until the checker finds a violation or
/// `limit` passes; returns the violations.
async fn race(locks: Arc<LockService>, clients: usize, limit: Duration) -> Vec<Violation> {
    let rec = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (rec, stop, locks) = (rec.clone(), stop.clone(), locks.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let start = rec.now_us();
                match locks.acquire("race", 300, 200, "").await {
                    Ok(g) => {
                        rec.hold(format!("c{c}"), g.fence, start, g.validity_ms)
                            .await;
                        let _ = locks.release("race", &g.token).await;
                    }
                    Err(LockError::Held { .. } | LockError::NoQuorum(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && rec.violations().is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    rec.violations()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_a_minority_lock_is_caught_by_the_checker() {
    let tc = TestCluster::start(3).await;
    let pool = tc.app().store().pool().clone();
    let unsafe_locks = LockService::with_unsafe_knobs(
        pool.clone(),
        LocksConfig::default(),
        &common::default_layout(),
        UnsafeKnobs {
            required: Some(1),
            ..UnsafeKnobs::default()
        },
    );
    // The race stops at the first violation; the long limit only matters on a loaded machine,
    // where overlapping grants take longer to come (one run of the full suite took over 20 s).
    let violations = race(unsafe_locks, 8, Duration::from_secs(60)).await;
    assert!(
        violations
            .iter()
            .any(|v| matches!(v, Violation::Overlap { .. })),
        "a lock granted on one node of three must show overlapping holders"
    );
    // The same race with the real rule finds nothing.
    let safe = LockService::new(pool, LocksConfig::default(), &common::default_layout());
    assert!(race(safe, 8, Duration::from_secs(3)).await.is_empty());
    tc.shutdown().await;
}

/// Makes every node log every command (`SLOWLOG` with no threshold), so that tests can count
/// the scripts an acquisition ran.
async fn log_every_command(tc: &TestCluster) {
    for i in 0..tc.cluster.nodes.len() {
        let mut c = tc.direct(i).await;
        let _: () = redis::pipe()
            .cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-log-slower-than")
            .arg(0)
            .ignore()
            .cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-max-len")
            .arg(10_000)
            .ignore()
            .cmd("SLOWLOG")
            .arg("RESET")
            .ignore()
            .query_async(&mut c)
            .await
            .unwrap();
    }
}

/// Per node, the acquisition scripts run on user lock `name` (a script call with two keys, the
/// first being the lock) since the last call; then clears the logs.
async fn acquire_scripts_run(tc: &TestCluster, name: &str) -> Vec<usize> {
    let lock_key = common::reserved_key(&format!("lock:l:{name}"));
    let mut counts = Vec::new();
    for i in 0..tc.cluster.nodes.len() {
        let mut c = tc.direct(i).await;
        let (entries, ()): (Vec<redis::Value>, ()) = redis::pipe()
            .cmd("SLOWLOG")
            .arg("GET")
            .arg(-1)
            .cmd("SLOWLOG")
            .arg("RESET")
            .query_async(&mut c)
            .await
            .unwrap();
        let runs = entries
            .iter()
            .filter_map(|e| match e {
                redis::Value::Array(fields) => fields.get(3),
                _ => None,
            })
            .filter_map(|args| redis::from_redis_value::<Vec<String>>(args.clone()).ok())
            .filter(|args| {
                args.len() > 3
                    && ["EVAL", "EVALSHA"].contains(&args[0].to_uppercase().as_str())
                    && args[2] == "2"
                    && args[3] == lock_key
            })
            .count();
        counts.push(runs);
    }
    counts
}

/// Two instances (two lock services, each with its own fence hints) take turns on one name
/// with `wait_ms` 0. Each turn's hint is stale (the other instance issued the fence after it),
/// so its proposal is refused by every node: that must cost exactly one more round trip, not
/// the acquisition, and the fence must be one above the other's. The checker sees the history;
/// without the nodes' "proposal above the counter" check, the stale proposal would be granted
/// with the other's fence and it would report it. Then a warm hint acquires in one round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_taking_turns_keep_fences_increasing_and_a_stale_hint_costs_one_round_trip() {
    let tc = TestCluster::start(3).await;
    let pool = tc.app().store().pool().clone();
    let layout = common::default_layout();
    let instances = [
        LockService::new(pool.clone(), LocksConfig::default(), &layout),
        LockService::new(pool, LocksConfig::default(), &layout),
    ];
    // Loads the scripts on every node, so that each call below is one EVALSHA.
    let g = instances[0].acquire("warm", 1000, 0, "").await.unwrap();
    instances[0].release("warm", &g.token).await.unwrap();
    log_every_command(&tc).await;
    let rec = Recorder::new();
    let mut last = 0;
    for turn in 0..30 {
        let (who, locks) = (turn % 2, &instances[turn % 2]);
        let start = rec.now_us();
        let g = locks
            .acquire("turns", 1000, 0, &format!("i{who}"))
            .await
            .unwrap_or_else(|e| panic!("turn {turn}: a stale hint failed the acquisition: {e}"));
        assert_eq!(g.fence, last + 1, "turn {turn}");
        let scripts = acquire_scripts_run(&tc, "turns").await;
        // The first turn's hint (none) is right: the counter starts at 0.
        let expected = if turn == 0 { 1 } else { 2 };
        assert_eq!(
            scripts,
            vec![expected; 3],
            "turn {turn}: round trips per node"
        );
        rec.hold(format!("i{who}"), g.fence, start, g.validity_ms)
            .await;
        locks.release("turns", &g.token).await.unwrap();
        last = g.fence;
    }
    let violations = rec.violations();
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(rec.grants(), 30);
    // The same instance again: its hint is current, one round trip.
    let g = instances[1].acquire("turns", 1000, 0, "i1").await.unwrap();
    assert_eq!(g.fence, last + 1);
    assert_eq!(acquire_scripts_run(&tc, "turns").await, vec![1; 3]);
    tc.shutdown().await;
}

/// Node 2 isolated while A takes the lock on {0, 1}; then node 0 restarts empty. Returns A's
/// fence, when A's request was sent and answered (µs on `rec`'s clock), and its validity.
async fn lock_on_two_then_restart_one(
    tc: &mut TestCluster,
    locks: &LockService,
    rec: &Recorder,
    ttl_ms: u64,
) -> (u64, u64, u64, u64) {
    tc.isolate(2).await;
    let start = rec.now_us();
    let a = locks
        .acquire("r", ttl_ms, 0, "A")
        .await
        .expect("A on nodes 0 and 1");
    let got = rec.now_us();
    tc.cluster.nodes[2].resume();
    tc.wait_health(2, "up").await;
    tc.cluster.nodes[0].restart_empty().unwrap();
    let pool = tc.app().store().pool().clone();
    wait_until(Duration::from_secs(10), "node 0 seen restarted", || {
        let pool = pool.clone();
        async move { pool.node(0).last_recovering_since_ms().is_some() }
    })
    .await;
    (a.fence, start, got, a.validity_ms)
}

/// A holder's interval: from when it was told (`got`) to `sent` + validity.
fn held(holder: &str, fence: u64, sent: u64, got: u64, validity_ms: u64) -> Held {
    Held {
        resource: "r".into(),
        holder: holder.into(),
        fence: Some(fence),
        start: got,
        end: sent + validity_ms * 1000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_counts_only_after_the_longest_ttl_and_keeps_fences_growing() {
    let max_ttl = 4000;
    let mut tc = TestCluster::start_with(3, |c| c.locks.max_ttl_ms = max_ttl).await;
    let (locks, other) = two_lock_services(&tc, max_ttl, UnsafeKnobs::default());
    let rec = Recorder::new();
    // Make the fence counter non-trivial first.
    for _ in 0..3 {
        let g = locks.acquire("r", 1000, 2000, "warm").await.unwrap();
        locks.release("r", &g.token).await.unwrap();
    }
    let (fence_a, start_a, got_a, validity_a) =
        lock_on_two_then_restart_one(&mut tc, &locks, &rec, max_ttl).await;

    // Node 0 forgot A's key, but does not count: B cannot get a majority.
    match other.acquire("r", 500, 300, "B").await {
        Err(LockError::Held { .. } | LockError::NoQuorum(_)) => {}
        other => panic!("B must not get the lock while A is valid: {other:?}"),
    }
    // After the delay (and the fence catch-up), node 0 counts again. Pause node 1, the only
    // other holder of A's fence, so B's majority is {0, 2}: only the catch-up carries A's fence.
    let delay = Duration::from_millis(max_ttl) + Duration::from_secs(10);
    wait_until(delay, "node 0 counts again", || async {
        other.counts_toward_majority(0, None)
    })
    .await;
    tc.isolate(1).await;
    let start_b = rec.now_us();
    let b = other
        .acquire("r", 500, 2000, "B")
        .await
        .expect("B on nodes 0 and 2");
    assert!(b.fence > fence_a, "fence {} after {fence_a}", b.fence);
    let history = vec![
        held("A", fence_a, start_a, got_a, validity_a),
        held("B", b.fence, start_b, rec.now_us(), b.validity_ms),
    ];
    assert!(check(&history).is_empty());
    tc.shutdown().await;
}

/// The wait of a restarted node outlives a restart of quorumd: A holds the lock on {0, 1}, node
/// 0 restarts empty and is healed (`up`, its sentinel back), and only then a new instance
/// starts. It never saw the loss, yet with node 1 isolated it must not get the lock from
/// {0, 2} while A's is valid. (Found by exploring: the wait lived in the memory of the
/// instances that saw the loss, so an instance started after the heal granted a second holder
/// with a lower fence.) The new instance learns of the loss from the lock gate the heal wrote
/// on node 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_started_after_the_heal_still_waits_for_the_restarted_node() {
    let max_ttl = 20_000;
    let mut tc = TestCluster::start_with(3, |c| c.locks.max_ttl_ms = max_ttl).await;
    let (locks, _) = two_lock_services(&tc, max_ttl, UnsafeKnobs::default());
    let rec = Recorder::new();
    let (fence_a, start_a, got_a, validity_a) =
        lock_on_two_then_restart_one(&mut tc, &locks, &rec, max_ttl).await;
    tc.wait_health(0, "up").await;
    let mut cfg = test_config(tc.cluster.urls());
    cfg.locks.max_ttl_ms = max_ttl;
    let late = App::start(cfg.validate().unwrap()).await.unwrap();
    tc.isolate(1).await;
    let start_b = rec.now_us();
    let (s, b) = post(
        &tc.http,
        lock_url(&format!("http://{}", late.http_addr()), "r", "acquire"),
        json!({"ttl_ms": 1000, "wait_ms": 300, "owner": "B"}),
    )
    .await;
    if s == StatusCode::OK {
        let history = vec![
            held("A", fence_a, start_a, got_a, validity_a),
            held(
                "B",
                b["fence"].as_u64().unwrap(),
                start_b,
                rec.now_us(),
                b["validity_ms"].as_u64().unwrap(),
            ),
        ];
        panic!("B got the lock while A held it: {:?}", check(&history));
    }
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("restarted")),
        "node 0 is left out as restarted: {b}"
    );
    late.shutdown().await.unwrap();
    tc.shutdown().await;
}

/// Once a restarted node's wait is over, its fence catch-up runs without a lock request to
/// start it: the first acquisition that needs the node is granted at once. (Found by
/// exploring: the catch-up started only when a request asked whether the node counted, so
/// that request was refused with 503 and every node up.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_acquisition_after_a_restarted_nodes_wait_is_granted() {
    // Long enough that the heal (which writes the lock gate) is over before the wait is.
    let max_ttl = 3000;
    let mut tc = TestCluster::start_with(3, |c| c.locks.max_ttl_ms = max_ttl).await;
    let (locks, _) = two_lock_services(&tc, max_ttl, UnsafeKnobs::default());
    tc.cluster.nodes[0].restart_empty().unwrap();
    tc.wait_health(0, "up").await;
    let pool = tc.app().store().pool().clone();
    // Read-only: asks the pool, which no lock request or catch-up start goes through.
    wait_until(
        Duration::from_millis(max_ttl) + Duration::from_secs(20),
        "node 0's loss seen, then covered by a catch-up",
        || async {
            pool.node(0).last_recovering_since_ms().is_some()
                && pool.node(0).counts_for_locks(None, None)
        },
    )
    .await;
    // The catch-up that covered the loss took the lock gate the heal wrote off node 0.
    let gate = quorumd::pool::lock_gate_key(&common::reserved_key("sentinel"));
    let gated: u64 = common::command(&mut tc.direct(0).await, &["EXISTS", &gate]).await;
    assert_eq!(gated, 0, "{gate} left after the catch-up");
    tc.isolate(1).await;
    let g = locks
        .acquire("first", 1000, 0, "C")
        .await
        .expect("nodes 0 and 2 count: granted at the first attempt");
    assert!(g.fence >= 1);
    tc.shutdown().await;
}

/// A lock service whose gate (and catch-up) follow `knobs`, and another one, B (another
/// instance: its fence hints never saw A's fence), over `tc`'s nodes.
fn two_lock_services(
    tc: &TestCluster,
    max_ttl: u64,
    knobs: UnsafeKnobs,
) -> (Arc<LockService>, Arc<LockService>) {
    let pool = tc.app().store().pool().clone();
    let cfg = LocksConfig {
        max_ttl_ms: max_ttl,
        ..LocksConfig::default()
    };
    let layout = common::default_layout();
    (
        LockService::with_unsafe_knobs(pool.clone(), cfg.clone(), &layout, knobs),
        LockService::with_unsafe_knobs(pool, cfg, &layout, knobs),
    )
}

/// A holds the lock on {0, 1}, node 0 restarts empty, and B asks only once node 0 counts
/// again, with node 1 isolated: B's majority is {0, 2}, where nothing but the catch-up can
/// have put A's fence (an attempt of B's while A held the lock would raise the counters its
/// script ran on; the test above makes one, this one does not). Returns A's and B's fences.
async fn fences_after_a_restart(knobs: UnsafeKnobs) -> (u64, u64) {
    let max_ttl = 3000;
    let mut tc = TestCluster::start_with(3, |c| c.locks.max_ttl_ms = max_ttl).await;
    if knobs.skip_fence_catch_up {
        // The service's own lock gate would catch the node up in the background.
        tc.app().locks().pause_gate_worker();
    }
    let (locks, other) = two_lock_services(&tc, max_ttl, knobs);
    let rec = Recorder::new();
    for _ in 0..3 {
        let g = locks.acquire("r", 1000, 2000, "warm").await.unwrap();
        locks.release("r", &g.token).await.unwrap();
    }
    let (fence_a, ..) = lock_on_two_then_restart_one(&mut tc, &locks, &rec, max_ttl).await;
    let delay = Duration::from_millis(max_ttl) + Duration::from_secs(10);
    wait_until(delay, "node 0 counts again", || async {
        other.counts_toward_majority(0, None)
    })
    .await;
    tc.isolate(1).await;
    let b = other
        .acquire("r", 500, 2000, "B")
        .await
        .expect("B on nodes 0 and 2");
    tc.shutdown().await;
    (fence_a, b.fence)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fence_catch_up_carries_a_lost_fence_to_the_restarted_node() {
    let (fence_a, fence_b) = fences_after_a_restart(UnsafeKnobs::default()).await;
    assert!(fence_b > fence_a, "fence {fence_b} after {fence_a}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_counting_a_restarted_node_without_the_catch_up_loses_a_fence() {
    let knobs = UnsafeKnobs {
        skip_fence_catch_up: true,
        ..UnsafeKnobs::default()
    };
    let (fence_a, fence_b) = fences_after_a_restart(knobs).await;
    assert!(
        fence_b <= fence_a,
        "without the catch-up, {{0, 2}} cannot know A's fence {fence_a}, yet B got {fence_b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_counting_a_restarted_node_at_once_is_caught() {
    let max_ttl = 6000;
    let mut tc = TestCluster::start_with(3, |c| c.locks.max_ttl_ms = max_ttl).await;
    let knobs = UnsafeKnobs {
        count_restarted_at_once: true,
        ..UnsafeKnobs::default()
    };
    let (unsafe_locks, unsafe_other) = two_lock_services(&tc, max_ttl, knobs);
    let rec = Recorder::new();
    for _ in 0..3 {
        let g = unsafe_locks.acquire("r", 1000, 2000, "warm").await.unwrap();
        unsafe_locks.release("r", &g.token).await.unwrap();
    }
    let (fence_a, start_a, got_a, validity_a) =
        lock_on_two_then_restart_one(&mut tc, &unsafe_locks, &rec, max_ttl).await;
    // B hears only from {0, 2}: neither has A's fence.
    tc.isolate(1).await;
    let start_b = rec.now_us();
    let b = unsafe_other
        .acquire("r", 1000, 1000, "B")
        .await
        .expect("counting the empty node at once lets B in");
    let history = vec![
        held("A", fence_a, start_a, got_a, validity_a),
        held("B", b.fence, start_b, rec.now_us(), b.validity_ms),
    ];
    let violations = check(&history);
    assert!(
        violations
            .iter()
            .any(|v| matches!(v, Violation::Overlap { .. })),
        "{violations:?}"
    );
    assert!(
        violations
            .iter()
            .any(|v| matches!(v, Violation::FenceNotIncreasing { .. })),
        "B's fence {} read from nodes without A's fence {fence_a}: {violations:?}",
        b.fence
    );
    tc.shutdown().await;
}

/// Issue 18, item 1. Node 2 is frozen (SIGSTOP) while an exchange finds nodes 0 and 1 in sync
/// and gives them the sentinel; it stays frozen well past the time the sentinel was written,
/// then resumes with its data and run id unchanged. It was never given the sentinel, so it has
/// lost nothing and must not be taken for wiped: with node 0 then really restarted empty,
/// nodes 1 and 2 still make a lock majority. (Before, node 2 was `recovering`, out of lock
/// majorities for `locks.max_ttl_ms`, and every acquisition answered 503.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_frozen_while_the_sentinel_was_written_keeps_counting_for_locks() {
    let mut tc = TestCluster::start(3).await;
    for i in 0..20 {
        let r = tc.put(&format!("before:{i}"), "v", "consistency=all").await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    tc.isolate(2).await;
    for i in 0..20 {
        let r = tc.put(&format!("during:{i}"), "v", "").await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    tc.sweep(quorumd::sync::SweepMode::Exchange, false).await;
    let pool = tc.app().store().pool().clone();
    let holds = |i: usize| pool.node(i).status().has_sentinel;
    assert_eq!(
        (holds(0), holds(1)),
        (Some(true), Some(true)),
        "the exchange gave nodes 0 and 1 the sentinel"
    );
    // The fault itself: node 2 stays frozen for a while after the others got the sentinel (the
    // rule before the fix called it wiped once the others had held it for
    // 3 × node_ms + 2 × health_interval_ms = 1.4 s here).
    tokio::time::sleep(Duration::from_secs(3)).await;
    tc.cluster.nodes[2].resume();
    wait_until(
        Duration::from_secs(10),
        "node 2 answering again",
        || async { !matches!(tc.health(2).await.as_str(), "down" | "suspect") },
    )
    .await;

    // A real loss on node 0: it is out of lock majorities for max_ttl_ms.
    tc.cluster.nodes[0].restart_empty().unwrap();
    wait_until(Duration::from_secs(10), "node 0 seen restarted", || async {
        pool.node(0).last_recovering_since_ms().is_some()
    })
    .await;
    let (s, g) = post(
        &tc.http,
        lock_url(&tc.base, "job", "acquire"),
        json!({"ttl_ms": 1000}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "nodes 1 and 2 make a majority: {g}");
    assert_eq!(
        pool.node(2).last_recovering_since_ms(),
        None,
        "node 2 lost nothing: never recovering"
    );
    assert_eq!(tc.health(2).await, "up");

    // An exchange that finds node 2 in sync gives it the sentinel too (one may already be
    // running, started by node 0's restart).
    wait_until(
        Duration::from_secs(20),
        "node 2 given the sentinel",
        || async {
            let _ = tc
                .try_sweep(quorumd::sync::SweepMode::Exchange, false)
                .await;
            holds(2) == Some(true)
        },
    )
    .await;
    tc.shutdown().await;
}
