//! The keyspace commands on the Redis-protocol front end against real nodes: SCAN, KEYS and
//! RANDOMKEY over a read quorum (tombstones, expired values and quorumd's own keys never shown;
//! every key present for the whole scan returned, also with a node killed), RENAME, RENAMENX
//! and COPY as versioned writes checked on every node, FLUSHDB refused by default and, when
//! allowed, not undone by a node that missed it. Replies are compared with a real redis-server.

use quorumd_testkit::cluster as common;

use common::{TestCluster, wait_until};
use quorumd::devcluster::DevCluster;
use quorumd::meta::EntryKind;
use quorumd::sync::SweepMode;
use redis::Value;
use redis::aio::MultiplexedConnection;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

async fn resp(tc: &TestCluster) -> MultiplexedConnection {
    let addr = tc.app().resp_addr().expect("resp enabled");
    // The crate's default 500 ms response timeout would cut a whole-keyspace command short
    // on a loaded 2-core machine; quorumd's own request timeout bounds each step.
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
    redis::Client::open(format!("redis://{addr}"))
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("connect to quorumd")
}

async fn start_reference() -> DevCluster {
    tokio::task::spawn_blocking(|| DevCluster::start(1))
        .await
        .unwrap()
        .expect("reference redis-server")
}

/// One command, given as its words; the reply, or the error's text.
async fn call(c: &mut MultiplexedConnection, line: &str) -> Result<Value, String> {
    let words: Vec<&str> = line.split(' ').collect();
    let mut cmd = redis::cmd(words[0]);
    for w in &words[1..] {
        cmd.arg(*w);
    }
    cmd.query_async::<Value>(c)
        .await
        .map_err(|e| match (e.code(), e.detail()) {
            // The code and the detail, as the server sent them.
            (Some(code), Some(detail)) => format!("{code} {detail}"),
            (Some(code), None) => code.to_string(),
            _ => format!("not an error reply: {e}"),
        })
}

async fn ok(c: &mut MultiplexedConnection, line: &str) -> Value {
    call(c, line)
        .await
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        other => panic!("expected a string, got {other:?}"),
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().map(text).collect(),
        other => panic!("expected an array, got {other:?}"),
    }
}

/// A whole SCAN with these options: every key returned (with repeats) and the number of steps.
async fn scan_all(c: &mut MultiplexedConnection, options: &str) -> (Vec<String>, usize) {
    let (mut cursor, mut keys, mut steps) = ("0".to_string(), Vec::new(), 0);
    loop {
        let line = format!("SCAN {cursor} {options}");
        let reply = ok(c, line.trim()).await;
        let Value::Array(parts) = reply else {
            panic!("SCAN answers an array")
        };
        assert_eq!(parts.len(), 2, "SCAN answers [cursor, keys]");
        cursor = text(&parts[0]);
        keys.extend(strings(&parts[1]));
        steps += 1;
        if cursor == "0" {
            return (keys, steps);
        }
    }
}

fn set(keys: &[String]) -> BTreeSet<String> {
    keys.iter().cloned().collect()
}

/// Replies (errors included) that must be exactly redis-server 7's, on a fresh keyspace.
const SAME_AS_REDIS: &[&str] = &[
    "SCAN x",
    "SCAN 99999999999999999999",
    "SCAN 0 COUNT 0",
    "SCAN 0 COUNT -1",
    "SCAN 0 COUNT x",
    "SCAN 0 MATCH",
    "SCAN 0 FOO 1",
    "SCAN 0 TYPE",
    "SCAN",
    "KEYS",
    "KEYS a b",
    "KEYS *",
    "RANDOMKEY",
    "RANDOMKEY x",
    "SET a 1",
    "RANDOMKEY",
    "KEYS *",
    "KEYS b*",
    "SCAN 0 MATCH a TYPE string COUNT 5000",
    "SCAN 0 TYPE hash COUNT 5000",
    "RENAME a",
    "RENAME a b c",
    "RENAME a b",
    "GET a",
    "GET b",
    "EXISTS a",
    "RENAME nokey x",
    "RENAMENX nokey x",
    "RENAME nokey nokey",
    "RENAME b b",
    "RENAMENX b b",
    "RENAMENX b c",
    "GET c",
    "SET x 2",
    "RENAMENX c x",
    "GET c",
    "GET x",
    "RENAME c x",
    "GET x",
    "SET e 1 EX 100",
    "RENAME e f",
    "TTL f",
    "TTL e",
    "COPY f g",
    "TTL g",
    "GET g",
    "COPY x g",
    "GET g",
    "COPY x g REPLACE",
    "GET g",
    "TTL g",
    "COPY x g REPLACE REPLACE",
    "COPY nokey g",
    "COPY x x",
    "COPY nokey nokey",
    "COPY x h FOO",
    "COPY x h DB",
    "COPY x h DB x",
    "COPY x h DB 0",
    "GET h",
    "COPY x",
    "FLUSHDB a",
    "FLUSHDB ASYNC SYNC",
    "FLUSHALL a",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_are_redis_servers() {
    let tc = TestCluster::start_with(3, |cfg| cfg.resp.allow_flush = true).await;
    let reference = start_reference().await;
    let mut ours = resp(&tc).await;
    let mut theirs = common::direct(&reference.nodes[0].url()).await;
    let mut differences = Vec::new();
    for line in SAME_AS_REDIS {
        let (a, b) = (call(&mut ours, line).await, call(&mut theirs, line).await);
        if a != b {
            differences.push(format!("{line}\n  quorumd: {a:?}\n  redis:   {b:?}"));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    // Both empty after a flush, by either command.
    for flush in ["FLUSHDB", "FLUSHALL SYNC"] {
        ok(&mut ours, "SET y 1").await;
        assert_eq!(ok(&mut ours, flush).await, Value::Okay);
        assert_eq!(ok(&mut ours, "KEYS *").await, Value::Array(vec![]));
        assert_eq!(ok(&mut ours, "RANDOMKEY").await, Value::Nil);
    }
    // DB other than 0: refused, saying so.
    let e = call(&mut ours, "COPY x h DB 1").await.unwrap_err();
    assert!(e.contains("database 0 only"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_and_keys_show_every_live_user_key_and_nothing_else() {
    let tc = TestCluster::start(3).await;
    let mut c = resp(&tc).await;
    let mut live = BTreeSet::new();
    let mut pipe = redis::pipe();
    for i in 0..300 {
        pipe.cmd("SET").arg(format!("user:{i}")).arg(i).ignore();
        live.insert(format!("user:{i}"));
    }
    for i in 0..40 {
        pipe.cmd("SET").arg(format!("other:{i}")).arg(i).ignore();
        live.insert(format!("other:{i}"));
        pipe.cmd("SET").arg(format!("dead:{i}")).arg(i).ignore();
        pipe.cmd("DEL").arg(format!("dead:{i}")).ignore();
    }
    pipe.cmd("SET")
        .arg("short")
        .arg("x")
        .arg("PX")
        .arg(1)
        .ignore();
    pipe.cmd("HSET").arg("map").arg("f").arg("v").ignore();
    pipe.cmd("SADD").arg("members").arg("a").ignore();
    pipe.cmd("INCR").arg("counter").ignore();
    pipe.cmd("SADD").arg("emptied").arg("a").ignore();
    pipe.cmd("SREM").arg("emptied").arg("a").ignore();
    let () = pipe.query_async(&mut c).await.unwrap();
    live.extend(["map", "members", "counter"].map(String::from));
    // The tombstones and the nodes' own keys are there to be (wrongly) shown. A write is
    // acknowledged before the last node applies it: wait for dead:0's tombstone on node 0.
    wait_until(
        Duration::from_secs(5),
        "dead:0 tombstoned on node 0",
        || async {
            let meta = tc.raw_meta(0, b"dead:0").await;
            meta.is_some_and(|m| m.kind == EntryKind::Tombstone)
        },
    )
    .await;
    let mut node = tc.direct(0).await;
    let raw: Vec<String> = common::command(&mut node, &["KEYS", "*"]).await;
    assert!(raw.iter().any(|k| k.starts_with(common::key_prefix())));
    assert!(tc.raw_meta(0, b"dead:0").await.is_some());

    let (keys, steps) = scan_all(&mut c, "COUNT 7").await;
    assert_eq!(set(&keys), live, "SCAN: exactly the live user keys");
    assert!(steps > 1, "COUNT 7 takes several steps");
    // Redis may repeat a key; quorumd reads each bucket in exactly one step (docs/RESP.md).
    assert_eq!(keys.len(), live.len(), "no key twice");
    let (keys, _) = scan_all(&mut c, "").await;
    assert_eq!(set(&keys), live, "SCAN without options");
    let (keys, _) = scan_all(&mut c, "COUNT 100000").await;
    assert_eq!(set(&keys), live, "SCAN with a large COUNT");

    let users: BTreeSet<String> = live
        .iter()
        .filter(|k| k.starts_with("user:"))
        .cloned()
        .collect();
    let (keys, _) = scan_all(&mut c, "MATCH user:* COUNT 50").await;
    assert_eq!(set(&keys), users, "MATCH");
    let (keys, _) = scan_all(&mut c, "TYPE hash").await;
    assert_eq!(set(&keys), set(&["map".into()]), "TYPE hash");
    let (keys, _) = scan_all(&mut c, "type SET").await;
    assert_eq!(set(&keys), set(&["members".into()]), "TYPE set");
    let (keys, _) = scan_all(&mut c, "MATCH *r TYPE string").await;
    assert_eq!(set(&keys), set(&["counter".into()]), "MATCH and TYPE");
    let (keys, _) = scan_all(&mut c, "TYPE zset").await;
    assert!(keys.is_empty(), "TYPE zset: {keys:?}");

    let started = Instant::now();
    assert_eq!(set(&strings(&ok(&mut c, "KEYS *").await)), live, "KEYS *");
    eprintln!("KEYS * took {:?}", started.elapsed());
    let started = Instant::now();
    scan_all(&mut c, "").await;
    eprintln!("a whole SCAN with COUNT 10 took {:?}", started.elapsed());
    let ones: BTreeSet<String> = users
        .iter()
        .filter(|k| k.starts_with("user:1"))
        .cloned()
        .collect();
    assert_eq!(set(&strings(&ok(&mut c, "KEYS user:1*").await)), ones);
    for _ in 0..20 {
        let k = text(&ok(&mut c, "RANDOMKEY").await);
        assert!(live.contains(&k), "RANDOMKEY answered {k}");
    }
    // A deleted key disappears from the next scan.
    ok(&mut c, "DEL user:7").await;
    let (keys, _) = scan_all(&mut c, "MATCH user:7").await;
    assert!(keys.is_empty(), "{keys:?}");
}

/// SCAN's guarantee while other keys are written and deleted: every key present for the whole
/// scan is returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_returns_every_key_present_for_the_whole_scan_under_churn() {
    let tc = TestCluster::start(3).await;
    let mut c = resp(&tc).await;
    let mut stable = BTreeSet::new();
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.cmd("SET").arg(format!("stable:{i}")).arg(i).ignore();
        stable.insert(format!("stable:{i}"));
    }
    let () = pipe.query_async(&mut c).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (stop, mut w) = (stop.clone(), resp(&tc).await);
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let k = format!("churn:{}", i % 200);
                ok(&mut w, &format!("SET {k} {i}")).await;
                if i.is_multiple_of(3) {
                    ok(&mut w, &format!("DEL {k}")).await;
                }
                i += 1;
            }
            i
        })
    };
    for round in 0..3 {
        let (keys, _) = scan_all(&mut c, "COUNT 20").await;
        let seen = set(&keys);
        let missing: Vec<_> = stable.difference(&seen).collect();
        assert!(missing.is_empty(), "round {round}: missing {missing:?}");
    }
    stop.store(true, Ordering::Relaxed);
    assert!(churn.await.unwrap() > 0, "the churn ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_keys_and_randomkey_work_with_a_node_killed() {
    let mut tc = TestCluster::start(3).await;
    let mut c = resp(&tc).await;
    let mut live = BTreeSet::new();
    for i in 0..100 {
        ok(&mut c, &format!("SET k:{i} {i}")).await;
        live.insert(format!("k:{i}"));
    }
    tc.cluster.nodes[1].kill();
    // Written and deleted with the node gone: the survivors' metadata decides.
    ok(&mut c, "SET late 1").await;
    live.insert("late".into());
    ok(&mut c, "DEL k:0").await;
    live.remove("k:0");
    let (keys, _) = scan_all(&mut c, "COUNT 10").await;
    assert_eq!(set(&keys), live);
    assert_eq!(set(&strings(&ok(&mut c, "KEYS *").await)), live);
    let k = text(&ok(&mut c, "RANDOMKEY").await);
    assert!(live.contains(&k), "{k}");
    // Two nodes down: no read quorum, and the reply says so.
    tc.cluster.nodes[2].kill();
    let e = call(&mut c, "SCAN 0").await.unwrap_err();
    assert!(e.starts_with("QUORUM"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_copy_write_every_node() {
    let tc = TestCluster::start(3).await;
    let mut c = resp(&tc).await;
    let nodes = tc.cluster.nodes.len();
    // A write is acknowledged before the last node applies it: each check waits for `want` on
    // every node first.
    let every_node = |key: &'static str, want: Option<&'static str>| {
        let tc = &tc;
        async move {
            let what = format!("{key} = {want:?} on every node");
            wait_until(Duration::from_secs(5), &what, || async {
                for i in 0..nodes {
                    let got = tc.raw_value(i, key.as_bytes()).await;
                    if got.as_deref() != want.map(str::as_bytes) {
                        return false;
                    }
                }
                true
            })
            .await;
            for i in 0..nodes {
                let got = tc.raw_value(i, key.as_bytes()).await;
                assert_eq!(got.as_deref(), want.map(str::as_bytes), "{key} on node {i}");
            }
        }
    };

    ok(&mut c, "SET src hello EX 1000").await;
    assert_eq!(ok(&mut c, "RENAME src dst").await, Value::Okay);
    every_node("dst", Some("hello")).await;
    every_node("src", None).await;
    // No value may also be a node the first SET has not reached yet: wait for the tombstone.
    wait_until(
        Duration::from_secs(5),
        "src tombstoned on every node",
        || async {
            for i in 0..nodes {
                let meta = tc.raw_meta(i, b"src").await;
                if !meta.is_some_and(|m| m.kind == EntryKind::Tombstone) {
                    return false;
                }
            }
            true
        },
    )
    .await;
    for i in 0..nodes {
        let m = tc.raw_meta(i, b"src").await.expect("metadata");
        assert_eq!(
            m.kind,
            EntryKind::Tombstone,
            "node {i}: the source is tombstoned"
        );
        let d = tc.raw_meta(i, b"dst").await.expect("metadata");
        let at = d.expires_at_ms.expect("the TTL moved with the value");
        assert!(at > quorumd::hlc::wall_clock_ms() + 900_000, "node {i}");
    }
    assert_eq!(ok(&mut c, "GET src").await, Value::Nil);

    ok(&mut c, "SET taken mine").await;
    assert_eq!(ok(&mut c, "RENAMENX dst taken").await, Value::Int(0));
    every_node("taken", Some("mine")).await;
    every_node("dst", Some("hello")).await;
    assert_eq!(ok(&mut c, "RENAMENX dst free").await, Value::Int(1));
    every_node("free", Some("hello")).await;
    every_node("dst", None).await;

    assert_eq!(ok(&mut c, "COPY free copy").await, Value::Int(1));
    every_node("copy", Some("hello")).await;
    every_node("free", Some("hello")).await;
    ok(&mut c, "SET free changed").await;
    assert_eq!(ok(&mut c, "COPY free copy").await, Value::Int(0));
    every_node("copy", Some("hello")).await;
    assert_eq!(ok(&mut c, "COPY free copy REPLACE").await, Value::Int(1));
    every_node("copy", Some("changed")).await;
    assert_eq!(ok(&mut c, "RENAME free taken").await, Value::Okay);
    every_node("taken", Some("changed")).await;
    every_node("free", None).await;
}

/// CRDT keys (counters, maps, sets made by the HTTP API) are neither moved nor overwritten: a
/// clear error, and nothing changes. (`INCRBY` and `HSET` make a plain string and hash.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_copy_refuse_crdt_keys() {
    let tc = TestCluster::start(3).await;
    let mut c = resp(&tc).await;
    let made = tc
        .http
        .post(format!("{}/v1/counters/counter", tc.base))
        .json(&serde_json::json!({ "delta": 5 }))
        .send()
        .await
        .unwrap();
    assert!(made.status().is_success(), "{}", made.status());
    // INCRBY on that counter adds to it, with its merge semantics.
    assert_eq!(ok(&mut c, "INCRBY counter 2").await, Value::Int(7));
    let made = tc
        .http
        .patch(format!("{}/v1/maps/map", tc.base))
        .json(&serde_json::json!({ "g": "w" }))
        .send()
        .await
        .unwrap();
    assert!(made.status().is_success(), "{}", made.status());
    // HSET on that map merges into it.
    assert_eq!(ok(&mut c, "HSET map f v").await, Value::Int(1));
    ok(&mut c, "SET plain p").await;
    // On every node before the refused commands, which must leave it there (checked below):
    // a write is acknowledged before the last node applies it.
    wait_until(Duration::from_secs(5), "plain on every node", || async {
        for i in 0..3 {
            if tc.raw_value(i, b"plain").await.as_deref() != Some(&b"p"[..]) {
                return false;
            }
        }
        true
    })
    .await;
    for line in [
        "RENAME counter elsewhere",
        "RENAMENX counter elsewhere",
        "COPY counter elsewhere",
    ] {
        let e = call(&mut c, line).await.unwrap_err();
        assert!(
            e.contains("source key holds a counter") && e.contains("CRDT"),
            "{line}: {e}"
        );
    }
    for line in ["RENAME plain map", "COPY plain map REPLACE"] {
        let e = call(&mut c, line).await.unwrap_err();
        assert!(
            e.contains("destination key holds a map") && e.contains("CRDT"),
            "{line}: {e}"
        );
    }
    // NX forms find the destination taken, as for any existing key.
    assert_eq!(ok(&mut c, "RENAMENX plain map").await, Value::Int(0));
    assert_eq!(ok(&mut c, "COPY plain map").await, Value::Int(0));
    assert_eq!(
        ok(&mut c, "GET counter").await,
        Value::BulkString(b"7".to_vec())
    );
    assert_eq!(ok(&mut c, "EXISTS elsewhere").await, Value::Int(0));
    assert_eq!(
        ok(&mut c, "HGET map f").await,
        Value::BulkString(b"v".to_vec())
    );
    for i in 0..3 {
        assert_eq!(tc.raw_value(i, b"plain").await.as_deref(), Some(&b"p"[..]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_is_refused_unless_allowed() {
    let tc = TestCluster::start(3).await;
    let mut c = resp(&tc).await;
    ok(&mut c, "SET k v").await;
    for cmd in ["FLUSHDB", "FLUSHALL", "FLUSHDB ASYNC"] {
        let e = call(&mut c, cmd).await.unwrap_err();
        assert!(
            e.starts_with("ERR") && e.contains("resp.allow_flush = true"),
            "{cmd}: {e}"
        );
    }
    assert_eq!(ok(&mut c, "GET k").await, Value::BulkString(b"v".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_with_crdt_keys_deletes_the_rest_and_says_what_remains() {
    let tc = TestCluster::start_with(3, |cfg| cfg.resp.allow_flush = true).await;
    let mut c = resp(&tc).await;
    ok(&mut c, "SET a 1").await;
    ok(&mut c, "SADD plain-set m").await;
    let made = tc
        .http
        .post(format!("{}/v1/sets/s/add", tc.base))
        .json(&serde_json::json!({ "members": ["m"] }))
        .send()
        .await
        .unwrap();
    assert!(made.status().is_success(), "{}", made.status());
    let e = call(&mut c, "FLUSHDB").await.unwrap_err();
    assert!(e.contains("deleted 2 keys but left 1"), "{e}");
    assert_eq!(strings(&ok(&mut c, "KEYS *").await), vec!["s".to_string()]);
}

/// A node frozen (SIGSTOP) through the flush keeps its values; once it is back, a sweep must
/// not copy them back to the others: the flush's tombstones are newer versions, so they win.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_the_flush_does_not_bring_keys_back() {
    let tweak = |cfg: &mut quorumd::config::Config| {
        cfg.resp.allow_flush = true;
        // The sweep run below repairs the fresh tombstones instead of deferring them.
        cfg.sync.in_flight_window_ms = 0;
    };
    let mut tc = TestCluster::start_with(3, tweak).await;
    let mut c = resp(&tc).await;
    let keys: Vec<String> = (0..60).map(|i| format!("doomed:{i}")).collect();
    for k in &keys {
        ok(&mut c, &format!("SET {k} v")).await;
    }
    // A write is acknowledged before the last node applies it: node 2 holds every value before
    // it is frozen (they are the stale copies checked below).
    wait_until(Duration::from_secs(5), "every value on node 2", || async {
        for k in &keys {
            if tc.raw_value(2, k.as_bytes()).await.as_deref() != Some(&b"v"[..]) {
                return false;
            }
        }
        true
    })
    .await;
    tc.isolate(2).await;
    assert_eq!(ok(&mut c, "FLUSHDB").await, Value::Okay);
    assert_eq!(ok(&mut c, "KEYS *").await, Value::Array(vec![]));
    // Thawed with no quorumd attached, so nothing repairs it before it is looked at: the
    // stale node still holds every value.
    tc.stop_service().await;
    tc.cluster.nodes[2].resume();
    for k in &keys {
        let stale = tc.raw_value(2, k.as_bytes()).await;
        assert_eq!(stale.as_deref(), Some(&b"v"[..]), "{k} on the stale node");
    }
    let mut cfg = common::test_config(tc.cluster.urls());
    tweak(&mut cfg);
    tc.relaunch(cfg).await;
    tc.wait_health(2, "up").await;
    tc.sweep(SweepMode::Exchange, false).await;
    for i in 0..3 {
        for k in &keys {
            assert_eq!(tc.raw_value(i, k.as_bytes()).await, None, "{k} on node {i}");
            let m = tc.raw_meta(i, k.as_bytes()).await.expect("metadata");
            assert_eq!(m.kind, EntryKind::Tombstone, "{k} on node {i}");
        }
    }
    tc.sweep(SweepMode::Full, false).await;
    let mut by_node = BTreeMap::new();
    for i in 0..3 {
        let mut node = tc.direct(i).await;
        let raw: Vec<String> = common::command(&mut node, &["KEYS", "doomed:*"]).await;
        by_node.insert(i, raw);
    }
    assert!(by_node.values().all(Vec::is_empty), "{by_node:?}");
    let mut c = resp(&tc).await;
    assert_eq!(ok(&mut c, "KEYS *").await, Value::Array(vec![]));
    assert_eq!(ok(&mut c, "GET doomed:0").await, Value::Nil);
}

/// KEYS and SCAN MATCH read the glob as redis-server 7.0's `stringmatchlen` does, in its
/// bracket edge cases too: an unterminated class (`[a`, `[a-]`: a range up to `]`), a class
/// closed at once (`[]]` matches nothing, `[^]` any character), escapes, and range ends
/// compared as signed chars (`[a-\xff]`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_scan_read_brackets_as_redis() {
    let tc = TestCluster::start(3).await;
    let reference = start_reference().await;
    let mut ours = resp(&tc).await;
    let mut theirs = common::direct(&reference.nodes[0].url()).await;
    let names: &[&[u8]] = &[
        b"", b"a", b"-", b"]", b"[", b"^", b"_", b"`", b"b", b"\\", b"ab", b"[a", b"x", b"\xff",
    ];
    for c in [&mut ours, &mut theirs] {
        for name in names {
            let key = [&b"gl:"[..], name].concat();
            let _: () = redis::cmd("SET")
                .arg(key)
                .arg("1")
                .query_async(c)
                .await
                .unwrap();
        }
    }
    let patterns: &[&[u8]] = &[
        b"gl:[a",
        b"gl:[a-]",
        b"gl:[^]",
        b"gl:[]]",
        b"gl:[]",
        b"gl:[",
        b"gl:[^",
        b"gl:[\\]",
        b"gl:[\\",
        b"gl:\\",
        b"gl:[a-]x",
        b"gl:[^]]",
        b"gl:[z-a]",
        b"gl:[a-",
        b"gl:[-a]",
        b"gl:*[",
        b"gl:[a]*",
        b"gl:\\[a",
        b"gl:[a-\xff]",
        b"gl:[\x01-\xff]",
        b"gl:*",
    ];
    async fn listed(c: &mut MultiplexedConnection, cmd: redis::Cmd) -> BTreeSet<Vec<u8>> {
        let keys: Vec<Vec<u8>> = cmd.query_async(c).await.unwrap();
        keys.into_iter().collect()
    }
    let mut differences = Vec::new();
    for pattern in patterns {
        let shown = String::from_utf8_lossy(pattern);
        let keys = || redis::cmd("KEYS").arg(*pattern).clone();
        let want = listed(&mut theirs, keys()).await;
        let got = listed(&mut ours, keys()).await;
        if got != want {
            let show = |keys: &BTreeSet<Vec<u8>>| {
                let keys: Vec<_> = keys.iter().map(|k| String::from_utf8_lossy(k)).collect();
                format!("{keys:?}")
            };
            differences.push(format!(
                "KEYS {shown}: quorumd {}, redis {}",
                show(&got),
                show(&want)
            ));
        }
        // One SCAN step over this small keyspace is the whole of it on both.
        let scan = || {
            redis::cmd("SCAN")
                .arg(0)
                .arg("MATCH")
                .arg(*pattern)
                .arg("COUNT")
                .arg(100_000)
                .clone()
        };
        let (cursor, scanned): (String, Vec<Vec<u8>>) =
            scan().query_async(&mut ours).await.unwrap();
        assert_eq!(cursor, "0", "one step");
        if scanned.into_iter().collect::<BTreeSet<_>>() != want {
            differences.push(format!("SCAN MATCH {shown}: differs from KEYS"));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    tc.shutdown().await;
}
