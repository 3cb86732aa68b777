//! Changes made on a node outside quorumd: seen by the full sweep's scrub and live through
//! keyspace notifications, handled by `sync.direct_writes`, and never served by a read when an
//! intact copy answered. Real redis-server processes; the changes are made with plain commands
//! on one node.

use quorumd::config::{Config, DirectWritesPolicy, DirectWritesRule};
use quorumd::content::{Content, StreamChecksum};
use quorumd::quorum::Consistency;
use quorumd::sync::SweepMode;
use quorumd_testkit::cluster::{self as common, TestCluster, command, wait_until};
use std::sync::atomic::Ordering;
use std::time::Duration;

fn policy(p: DirectWritesPolicy) -> impl FnOnce(&mut Config) {
    move |c| c.sync.direct_writes = p
}

/// Writes through quorumd at `all`: a direct change made next must not race quorumd's own
/// write still on its way to the slowest node (a quorum write returns before it lands there).
async fn put(tc: &TestCluster, key: &str, value: &str) {
    let r = tc.put(key, value.to_owned(), "consistency=all").await;
    assert!(r.status().is_success(), "PUT {key}: {}", r.status());
}

/// Writes a key of each Redis type through quorumd's Redis-protocol listener at `all`, so that
/// every node holds it, versioned. (Not by adoption: under `report-only` a key created outside
/// quorumd stays unversioned.)
async fn seed_typed_keys(tc: &TestCluster) {
    let addr = tc.app().resp_addr().expect("resp enabled");
    let mut q = common::direct(&format!("redis://{addr}")).await;
    let _: () = command(&mut q, &["QUORUMD", "CONSISTENCY", "all"]).await;
    let _: () = command(&mut q, &["HSET", "t:hash", "f1", "a", "f2", "b"]).await;
    let _: () = command(&mut q, &["SADD", "t:set", "x", "y"]).await;
    let _: () = command(&mut q, &["RPUSH", "t:list", "1", "2"]).await;
    let _: () = command(&mut q, &["ZADD", "t:zset", "1", "m1", "2.5", "m2"]).await;
    for k in ["t:hash", "t:set", "t:list", "t:zset"] {
        for i in 0..3 {
            assert!(
                tc.raw_meta(i, k.as_bytes()).await.is_some(),
                "{k} on node {i}"
            );
        }
    }
}

/// The changes the tests make on node 1, one per kind.
async fn change_on_node_1(tc: &TestCluster) {
    let mut c = tc.direct(1).await;
    let _: () = command(&mut c, &["SET", "s:set", "tampered"]).await;
    let _: () = command(&mut c, &["DEL", "s:del"]).await;
    let _: () = command(&mut c, &["PEXPIRE", "s:ttl", "3600000"]).await;
    let _: () = command(&mut c, &["DEL", "s:type"]).await;
    let _: () = command(&mut c, &["HSET", "s:type", "f", "v"]).await;
    let _: () = command(&mut c, &["HSET", "t:hash", "f1", "changed"]).await;
    let _: () = command(&mut c, &["SADD", "t:set", "z"]).await;
    let _: () = command(&mut c, &["LPUSH", "t:list", "0"]).await;
    let _: () = command(&mut c, &["ZADD", "t:zset", "9", "m1"]).await;
    let _: () = command(&mut c, &["RENAME", "s:ren", "s:renamed"]).await;
}

const STRING_KEYS: [&str; 5] = ["s:set", "s:del", "s:ttl", "s:type", "s:ren"];
const CHANGED: [&str; 9] = [
    "s:set", "s:del", "s:ttl", "s:type", "t:hash", "t:set", "t:list", "t:zset", "s:ren",
];

async fn prepare(tc: &TestCluster) {
    for k in STRING_KEYS {
        put(tc, k, "original").await;
    }
    seed_typed_keys(tc).await;
}

/// The value of `key` on node `i` as its type and checksum (any type; independent of the
/// set's or hash's internal order, unlike a DUMP), and its absolute expiry.
async fn raw(tc: &TestCluster, i: usize, key: &str) -> (Content, Option<u64>) {
    raw_as(tc, i, key, StreamChecksum::Full).await
}

/// As `raw`, a stream checksummed by the function `stream` names.
async fn raw_as(
    tc: &TestCluster,
    i: usize,
    key: &str,
    stream: StreamChecksum,
) -> (Content, Option<u64>) {
    let store = tc.app().store();
    let loc = store.locate(key.as_bytes()).unwrap();
    let mut c = quorumd::calls::store::capture(store.pool().node(i), &[&loc], stream)
        .await
        .unwrap();
    let c = c.pop().unwrap();
    (c.content, c.expires_at_ms)
}

/// Whether every node holds what node `from` holds for `keys`, value and metadata.
async fn nodes_agree_with(tc: &TestCluster, from: usize, keys: &[&str]) -> bool {
    for k in keys {
        let (want, meta) = (
            raw(tc, from, k).await,
            tc.raw_meta(from, k.as_bytes()).await,
        );
        for i in 0..3 {
            if raw(tc, i, k).await != want || tc.raw_meta(i, k.as_bytes()).await != meta {
                return false;
            }
        }
    }
    true
}

/// Every node holds what node `from` holds for `keys`. Waits for it first: live adoption writes
/// every node at once and a test sees it done on one.
async fn all_nodes_agree_with(tc: &TestCluster, from: usize, keys: &[&str]) {
    // On a timeout the asserts below say which node differs; the wait only gives it time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !nodes_agree_with(tc, from, keys).await && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for k in keys {
        let want = raw(tc, from, k).await;
        let meta = tc.raw_meta(from, k.as_bytes()).await;
        for i in 0..3 {
            assert_eq!(raw(tc, i, k).await, want, "{k} on node {i} vs node {from}");
            assert_eq!(
                tc.raw_meta(i, k.as_bytes()).await,
                meta,
                "{k} metadata on {i}"
            );
        }
    }
}

#[tokio::test]
async fn the_scrub_adopts_every_kind_of_direct_change() {
    let tc = TestCluster::start_with(3, policy(DirectWritesPolicy::Adopt)).await;
    prepare(&tc).await;
    let before = tc.raw_meta(0, b"s:set").await.unwrap();
    change_on_node_1(&tc).await;
    let dry = tc.sweep(SweepMode::Full, true).await;
    assert_eq!(dry.direct_changes.values().sum::<u64>(), 9, "{dry:?}");
    assert!(
        dry.divergence_left() > 0,
        "a dry run reports content differences"
    );
    let r = tc.sweep(SweepMode::Full, false).await;
    assert_eq!(r.direct_changes.get("changed"), Some(&5), "{r:?}");
    assert_eq!(r.direct_changes.get("deleted"), Some(&2), "{r:?}");
    assert_eq!(r.direct_changes.get("ttl"), Some(&1), "{r:?}");
    assert_eq!(r.direct_changes.get("type"), Some(&1), "{r:?}");
    assert_eq!(r.direct_changes_handled.get("adopted"), Some(&9), "{r:?}");
    // Node 1's changes are now the newest versions, everywhere.
    all_nodes_agree_with(&tc, 1, &CHANGED).await;
    all_nodes_agree_with(&tc, 1, &["s:renamed"]).await;
    assert_eq!(
        tc.raw_value(0, b"s:set").await.as_deref(),
        Some(&b"tampered"[..])
    );
    let after = tc.raw_meta(0, b"s:set").await.unwrap();
    assert!(after.version > before.version);
    let del = tc.raw_meta(0, b"s:del").await.unwrap();
    assert_eq!(del.kind, quorumd::meta::EntryKind::Tombstone);
    assert!(
        tc.raw_meta(2, b"s:ttl")
            .await
            .unwrap()
            .expires_at_ms
            .is_some()
    );
    // A second scrub finds nothing left.
    let again = tc.sweep(SweepMode::Full, true).await;
    assert_eq!(again.direct_changes.values().sum::<u64>(), 0, "{again:?}");
    tc.shutdown().await;
}

/// A value deleted outside quorumd from a key older than the in-flight window: the full
/// sweep's keyspace scan, which runs before the scrub, used to take the node for one that lost
/// the value and copied it back, so the policy never saw the delete (a dry run reported it as
/// "deleted", the real run restored it). Under `adopt` it becomes a tombstone, under `restore`
/// the value comes back, counted as the scrub's.
#[tokio::test]
async fn a_direct_delete_of_an_older_key_is_handled_by_the_policy_not_restored() {
    for (p, tombstone) in [
        (DirectWritesPolicy::Adopt, true),
        (DirectWritesPolicy::Restore, false),
    ] {
        let tc = TestCluster::start_with(3, |c| {
            c.sync.direct_writes = p;
            // Every write is old enough for the keyspace scan to act on.
            c.sync.in_flight_window_ms = 0;
        })
        .await;
        put(&tc, "old:del", "original").await;
        put(&tc, "old:kept", "original").await;
        let _: () = command(&mut tc.direct(1).await, &["DEL", "old:del"]).await;
        let dry = tc.sweep(SweepMode::Full, true).await;
        assert_eq!(dry.direct_changes.get("deleted"), Some(&1), "{p:?} {dry:?}");
        let r = tc.sweep(SweepMode::Full, false).await;
        assert_eq!(r.direct_changes.get("deleted"), Some(&1), "{p:?} {r:?}");
        let handled = if tombstone { "adopted" } else { "restored" };
        assert_eq!(
            r.direct_changes_handled.get(handled),
            Some(&1),
            "{p:?} {r:?}"
        );
        for i in 0..3 {
            let meta = tc.raw_meta(i, b"old:del").await.unwrap();
            assert_eq!(
                meta.kind == quorumd::meta::EntryKind::Tombstone,
                tombstone,
                "{p:?}: node {i}: {meta:?}"
            );
            let value = tc.raw_value(i, b"old:del").await;
            assert_eq!(value.is_none(), tombstone, "{p:?}: node {i}: {value:?}");
            assert_eq!(
                tc.raw_value(i, b"old:kept").await.as_deref(),
                Some(&b"original"[..])
            );
        }
        tc.shutdown().await;
    }
}

#[tokio::test]
async fn the_scrub_restores_the_versioned_values_over_direct_changes() {
    let tc = TestCluster::start_with(3, policy(DirectWritesPolicy::Restore)).await;
    prepare(&tc).await;
    let mut before = Vec::new();
    for k in CHANGED {
        before.push((raw(&tc, 0, k).await, tc.raw_meta(0, k.as_bytes()).await));
    }
    change_on_node_1(&tc).await;
    let r = tc.sweep(SweepMode::Full, false).await;
    assert_eq!(r.direct_changes_handled.get("restored"), Some(&9), "{r:?}");
    for (k, want) in CHANGED.iter().zip(&before) {
        for i in 0..3 {
            let got = (raw(&tc, i, k).await, tc.raw_meta(i, k.as_bytes()).await);
            assert_eq!(
                &got, want,
                "{k} on node {i}: the versioned value, same version"
            );
        }
    }
    // The renamed copy is a key created outside quorumd: adopted (`adopt_policy`).
    all_nodes_agree_with(&tc, 1, &["s:renamed"]).await;
    tc.shutdown().await;
}

#[tokio::test]
async fn report_only_changes_nothing_and_a_scrub_without_content_comparison_misses_changes() {
    let tc = TestCluster::start_with(3, policy(DirectWritesPolicy::ReportOnly)).await;
    prepare(&tc).await;
    change_on_node_1(&tc).await;
    let tampered = raw(&tc, 1, "t:hash").await;
    let r = tc.sweep(SweepMode::Full, false).await;
    assert_eq!(r.direct_changes.values().sum::<u64>(), 9, "{r:?}");
    assert_eq!(r.direct_changes_handled.get("reported"), Some(&9), "{r:?}");
    assert!(
        r.divergence_left() > 0,
        "reported changes are divergence left"
    );
    assert_eq!(
        raw(&tc, 1, "t:hash").await,
        tampered,
        "report-only changed nothing"
    );
    assert_ne!(raw(&tc, 0, "t:hash").await, tampered);
    // The renamed copy, a key created outside quorumd, is only reported too: it stays on
    // node 1 alone, without metadata, whatever `adopt_policy` says.
    assert_eq!(r.keys_adopted, 0, "{r:?}");
    for i in [0, 2] {
        assert_eq!(tc.raw_value(i, b"s:renamed").await, None, "node {i}");
    }
    assert!(tc.raw_meta(1, b"s:renamed").await.is_none());
    // Negative control: a scrub that compares presence only sees the two deletes alone.
    tc.app()
        .sweeper()
        .unsafe_knobs
        .scrub_skips_content
        .store(true, Ordering::Relaxed);
    let blind = tc.sweep(SweepMode::Full, true).await;
    assert_eq!(blind.direct_changes.values().sum::<u64>(), 2, "{blind:?}");
    tc.shutdown().await;
}

/// Policies by key pattern: each changed key is handled by the first rule whose pattern
/// matches it, the others by `direct_writes`; a key created outside quorumd that a
/// `report-only` rule covers stays on its node alone, unversioned.
#[tokio::test]
async fn rules_by_key_pattern_choose_each_keys_policy() {
    let tc = TestCluster::start_with(3, |c| {
        c.sync.direct_writes = DirectWritesPolicy::Adopt;
        c.sync.direct_writes_rules = vec![
            DirectWritesRule {
                pattern: "keep:*".into(),
                policy: DirectWritesPolicy::Restore,
            },
            DirectWritesRule {
                pattern: "watch:*".into(),
                policy: DirectWritesPolicy::ReportOnly,
            },
        ];
    })
    .await;
    let versioned = ["keep:a", "watch:b", "plain:c"];
    for k in versioned {
        put(&tc, k, "original").await;
    }
    let kept = tc.raw_meta(0, b"keep:a").await;
    let mut c = tc.direct(1).await;
    for k in versioned {
        let _: () = command(&mut c, &["SET", k, "tampered"]).await;
    }
    for k in ["watch:new", "plain:new"] {
        let _: () = command(&mut c, &["SET", k, "created"]).await;
    }
    let r = tc.sweep(SweepMode::Full, false).await;
    for (action, n) in [("restored", 1), ("adopted", 1), ("reported", 1)] {
        assert_eq!(
            r.direct_changes_handled.get(action),
            Some(&n),
            "{action}: {r:?}"
        );
    }
    assert_eq!((r.keys_unversioned, r.keys_adopted), (2, 1), "{r:?}");
    let value = |v: &str| Some(v.as_bytes().to_vec());
    for i in 0..3 {
        assert_eq!(
            tc.raw_value(i, b"keep:a").await,
            value("original"),
            "node {i}"
        );
        assert_eq!(tc.raw_meta(i, b"keep:a").await, kept, "node {i}");
        assert_eq!(
            tc.raw_value(i, b"plain:c").await,
            value("tampered"),
            "node {i}"
        );
        assert_eq!(
            tc.raw_value(i, b"plain:new").await,
            value("created"),
            "node {i}"
        );
        let (watched, created) = if i == 1 {
            (value("tampered"), value("created"))
        } else {
            (value("original"), None)
        };
        assert_eq!(tc.raw_value(i, b"watch:b").await, watched, "node {i}");
        assert_eq!(tc.raw_value(i, b"watch:new").await, created, "node {i}");
        assert!(tc.raw_meta(i, b"watch:new").await.is_none(), "node {i}");
    }
    tc.shutdown().await;
}

fn live(p: DirectWritesPolicy) -> impl FnOnce(&mut Config) {
    move |c| {
        c.sync.direct_writes = p;
        c.sync.live_detection = true;
    }
}

/// Waits until every node's notifications are on, as `/v1/status` says.
async fn wait_live_on(tc: &TestCluster, nodes: usize) {
    wait_until(Duration::from_secs(10), "live detection on", || async {
        let (_, s) = tc.json("/v1/status").await;
        let states = &s["sweeps"]["live_detection"];
        (0..nodes).all(|i| states[i]["state"] == "on")
    })
    .await;
}

/// An operator turns a node's keyspace notifications off after quorumd subscribed: quorumd
/// notices within a few seconds, turns them on again, and direct changes made after that are
/// adopted live. (It used to go on saying `on` while no event came, for good.)
#[tokio::test]
async fn notifications_turned_off_behind_quorumds_back_are_turned_on_again() {
    let tc = TestCluster::start_with(3, live(DirectWritesPolicy::Adopt)).await;
    wait_live_on(&tc, 3).await;
    let mut c = tc.direct(1).await;
    let _: () = command(&mut c, &["CONFIG", "SET", "notify-keyspace-events", ""]).await;
    wait_until(Duration::from_secs(20), "classes on again", || async {
        let mut c = tc.direct(1).await;
        let reply: Vec<String> =
            command(&mut c, &["CONFIG", "GET", "notify-keyspace-events"]).await;
        reply.get(1).is_some_and(|flags| !flags.is_empty())
    })
    .await;
    wait_live_on(&tc, 3).await;
    let _: () = command(&mut c, &["SET", "reon:new", "direct"]).await;
    wait_until(Duration::from_secs(5), "adopted live", || async {
        tc.raw_value(0, b"reon:new").await.as_deref() == Some(&b"direct"[..])
    })
    .await;
    let recent = tc
        .app()
        .store()
        .pool()
        .live()
        .snapshot(quorumd::hlc::wall_clock_ms())
        .recent;
    assert!(
        format!("{recent:?}").contains("changed outside quorumd"),
        "an alert on the dashboard's list: {recent:?}"
    );
    tc.shutdown().await;
}

#[tokio::test]
async fn live_detection_adopts_direct_changes_within_seconds_and_a_deaf_path_does_not() {
    let tc = TestCluster::start_with(3, live(DirectWritesPolicy::Adopt)).await;
    wait_live_on(&tc, 3).await;
    for k in ["l:set", "l:del", "l:ttl", "l:retyped"] {
        put(&tc, k, "original").await;
    }
    let mut c = tc.direct(2).await;
    let _: () = command(&mut c, &["SET", "l:set", "direct"]).await;
    let _: () = command(&mut c, &["DEL", "l:del"]).await;
    let _: () = command(&mut c, &["PEXPIRE", "l:ttl", "3600000"]).await;
    let _: () = command(&mut c, &["SET", "l:new", "created"]).await;
    wait_until(
        Duration::from_secs(5),
        "direct changes adopted live",
        || async {
            tc.raw_value(0, b"l:set").await.as_deref() == Some(&b"direct"[..])
                && tc.raw_value(1, b"l:new").await.as_deref() == Some(&b"created"[..])
                && tc.raw_value(0, b"l:del").await.is_none()
                && raw(&tc, 1, "l:ttl").await.1.is_some()
        },
    )
    .await;
    all_nodes_agree_with(&tc, 2, &["l:set", "l:del", "l:ttl", "l:new"]).await;
    // Other types: created on node 2 (adopted live), then changed there, renamed, retyped.
    let _: () = command(&mut c, &["HSET", "l:hash", "f", "a"]).await;
    let _: () = command(&mut c, &["SADD", "l:sset", "x"]).await;
    let _: () = command(&mut c, &["RPUSH", "l:list", "1"]).await;
    let _: () = command(&mut c, &["ZADD", "l:zset", "1", "m"]).await;
    let _: () = command(&mut c, &["SET", "l:ren", "r"]).await;
    let typed = ["l:hash", "l:sset", "l:list", "l:zset", "l:ren"];
    wait_until(
        Duration::from_secs(5),
        "typed keys adopted live",
        || async {
            let mut all = true;
            for k in typed {
                all &= tc.raw_meta(0, k.as_bytes()).await.is_some();
            }
            all
        },
    )
    .await;
    let _: () = command(&mut c, &["HSET", "l:hash", "f", "b"]).await;
    let _: () = command(&mut c, &["SADD", "l:sset", "y"]).await;
    let _: () = command(&mut c, &["LPUSH", "l:list", "0"]).await;
    let _: () = command(&mut c, &["ZADD", "l:zset", "5", "m"]).await;
    let _: () = command(&mut c, &["RENAME", "l:ren", "l:renamed"]).await;
    let _: () = command(&mut c, &["DEL", "l:retyped"]).await;
    let _: () = command(&mut c, &["HSET", "l:retyped", "now", "a hash"]).await;
    let changed = [
        "l:hash",
        "l:sset",
        "l:list",
        "l:zset",
        "l:ren",
        "l:renamed",
        "l:set",
    ];
    wait_until(
        Duration::from_secs(5),
        "typed changes adopted live",
        || async {
            for k in changed {
                if raw(&tc, 0, k).await != raw(&tc, 2, k).await
                    || tc.raw_meta(0, k.as_bytes()).await != tc.raw_meta(2, k.as_bytes()).await
                {
                    return false;
                }
            }
            true
        },
    )
    .await;
    all_nodes_agree_with(&tc, 2, &changed).await;
    // Negative control: with the live path dropping events, a change stays on its node.
    tc.deafen_live_detection().await;
    let _: () = command(&mut c, &["SET", "l:set", "unseen"]).await;
    let _: () = command(&mut c, &["SET", "l:marker", "m"]).await;
    // The same wait as above would time out: give it the same 5 s and see nothing move.
    let mut moved = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        moved |= tc.raw_value(0, b"l:set").await.as_deref() == Some(&b"unseen"[..]);
    }
    assert!(!moved, "a live path that drops events must not heal");
    tc.shutdown().await;
}

#[tokio::test]
async fn live_detection_restores_the_versioned_value() {
    let tc = TestCluster::start_with(3, live(DirectWritesPolicy::Restore)).await;
    wait_live_on(&tc, 3).await;
    put(&tc, "r:k", "original").await;
    let meta = tc.raw_meta(0, b"r:k").await;
    let mut c = tc.direct(1).await;
    let _: () = command(&mut c, &["SET", "r:k", "direct"]).await;
    wait_until(Duration::from_secs(5), "restored live", || async {
        tc.raw_value(1, b"r:k").await.as_deref() == Some(&b"original"[..])
    })
    .await;
    assert_eq!(tc.raw_meta(1, b"r:k").await, meta, "same version");
    tc.shutdown().await;
}

/// The live path takes each key's own policy too: a rule restores `r:*` while other keys
/// adopt their direct changes.
#[tokio::test]
async fn live_detection_follows_the_rule_for_each_key() {
    let tc = TestCluster::start_with(3, |c| {
        live(DirectWritesPolicy::Adopt)(c);
        c.sync.direct_writes_rules = vec![DirectWritesRule {
            pattern: "r:*".into(),
            policy: DirectWritesPolicy::Restore,
        }];
    })
    .await;
    wait_live_on(&tc, 3).await;
    put(&tc, "r:k", "original").await;
    put(&tc, "a:k", "original").await;
    let meta = tc.raw_meta(0, b"r:k").await;
    let mut c = tc.direct(1).await;
    let _: () = command(&mut c, &["SET", "r:k", "direct"]).await;
    let _: () = command(&mut c, &["SET", "a:k", "direct"]).await;
    wait_until(
        Duration::from_secs(5),
        "r:k restored, a:k adopted",
        || async {
            let adopted = tc.raw_meta(1, b"a:k").await;
            let mut done = tc.raw_value(1, b"r:k").await.as_deref() == Some(&b"original"[..]);
            for i in [0, 2] {
                done &= tc.raw_value(i, b"a:k").await.as_deref() == Some(&b"direct"[..])
                    && tc.raw_meta(i, b"a:k").await == adopted;
            }
            done
        },
    )
    .await;
    assert_eq!(
        tc.raw_meta(1, b"r:k").await,
        meta,
        "restored at the same version"
    );
    all_nodes_agree_with(&tc, 1, &["a:k"]).await;
    tc.shutdown().await;
}

#[tokio::test]
async fn a_node_that_refuses_config_is_reported_and_its_changes_are_scrubbed() {
    // Node 1 is reached as a user the ACL denies CONFIG; its notifications stay off.
    let mut tc = TestCluster::start(3).await;
    let mut admin = tc.direct(1).await;
    let _: () = command(
        &mut admin,
        &[
            "ACL", "SETUSER", "noconfig", "on", ">pw", "~*", "&*", "+@all", "-config",
        ],
    )
    .await;
    let restricted = tc_url(&tc, 1).replace("redis://", "redis://noconfig:pw@");
    let mut cfg = common::test_config(vec![tc_url(&tc, 0), restricted, tc_url(&tc, 2)]);
    cfg.sync.live_detection = true;
    tc.relaunch(cfg).await;
    wait_until(Duration::from_secs(10), "node 1 reported off", || async {
        let (_, s) = tc.json("/v1/status").await;
        let n1 = &s["sweeps"]["live_detection"][1];
        n1["state"] == "off" && n1["reason"].as_str().unwrap_or("").contains("CONFIG")
    })
    .await;
    let metrics = tc.fetch("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("quorumd_node_notifications_enabled")
                && l.contains("noconfig")
                && l.ends_with(" 0")),
        "{metrics}"
    );
    put(&tc, "c:k", "original").await;
    let _: () = command(&mut admin, &["SET", "c:k", "direct"]).await;
    let r = tc.sweep(SweepMode::Full, false).await;
    assert_eq!(r.direct_changes_handled.get("adopted"), Some(&1), "{r:?}");
    assert_eq!(
        tc.raw_value(0, b"c:k").await.as_deref(),
        Some(&b"direct"[..])
    );
    // The node's operator allows quorumd's user CONFIG: quorumd turns the events on when it
    // probes again, and live detection covers node 1 without a restart.
    let _: () = command(&mut admin, &["ACL", "SETUSER", "noconfig", "+config"]).await;
    wait_until(Duration::from_secs(20), "node 1 on", || async {
        let (_, s) = tc.json("/v1/status").await;
        s["sweeps"]["live_detection"][1]["state"] == "on"
    })
    .await;
    let _: () = command(&mut admin, &["SET", "c:k", "live"]).await;
    wait_until(Duration::from_secs(5), "adopted live", || async {
        tc.raw_value(0, b"c:k").await.as_deref() == Some(&b"live"[..])
    })
    .await;
    tc.shutdown().await;
}

fn tc_url(tc: &TestCluster, i: usize) -> String {
    tc.cluster.nodes[i].url()
}

#[tokio::test]
async fn events_lost_with_a_killed_subscription_are_caught_by_the_next_scrub() {
    let tc = TestCluster::start_with(3, live(DirectWritesPolicy::Adopt)).await;
    wait_live_on(&tc, 3).await;
    let keys: Vec<String> = (0..200).map(|i| format!("b:{i}")).collect();
    for k in &keys {
        put(&tc, k, "original").await;
    }
    let mut c = tc.direct(1).await;
    let mut admin = tc.direct(1).await;
    for (i, k) in keys.iter().enumerate() {
        let _: () = command(&mut c, &["SET", k, &format!("direct {i}")]).await;
        if i == 100 {
            let _: i64 = command(&mut admin, &["CLIENT", "KILL", "TYPE", "pubsub"]).await;
        }
    }
    tc.sweep(SweepMode::Full, false).await;
    for (i, k) in keys.iter().enumerate() {
        let want = format!("direct {i}");
        for n in 0..3 {
            assert_eq!(
                tc.raw_value(n, k.as_bytes()).await.as_deref(),
                Some(want.as_bytes()),
                "{k} on node {n}"
            );
        }
    }
    tc.shutdown().await;
}

#[tokio::test]
async fn a_read_never_serves_a_damaged_copy_when_an_intact_one_answered() {
    let tc = TestCluster::start_with(3, policy(DirectWritesPolicy::ReportOnly)).await;
    put(&tc, "rd:k", "intact").await;
    let mut c = tc.direct(0).await;
    let _: () = command(&mut c, &["SET", "rd:k", "damaged"]).await;
    let store = tc.app().store().clone();
    for level in [
        Consistency::All,
        Consistency::Quorum,
        Consistency::Linearizable,
    ] {
        for _ in 0..10 {
            let v = store.get(b"rd:k", level).await.unwrap().unwrap().value;
            assert_eq!(v, b"intact", "{level}");
        }
    }
    wait_until(Duration::from_secs(5), "the read reported it", || async {
        let m = tc.fetch("/metrics").await.text().await.unwrap();
        m.lines().any(|l| {
            l.starts_with("quorumd_direct_changes_total")
                && l.contains("path=\"read\"")
                && l.contains("kind=\"changed\"")
        })
    })
    .await;
    tc.shutdown().await;
}

#[tokio::test]
async fn the_nodes_compute_the_checksums_the_core_defines() {
    let tc = TestCluster::start(3).await;
    let mut c = tc.direct(0).await;
    let _: () = command(&mut c, &["SET", "ck:s", "hello"]).await;
    let _: () = command(&mut c, &["HSET", "ck:h", "b", "2", "a", "1"]).await;
    let _: () = command(&mut c, &["SADD", "ck:e", "q", "p"]).await;
    let store = tc.app().store().clone();
    let node = store.pool().node(0).clone();
    let locs: Vec<_> = ["ck:s", "ck:h", "ck:e", "ck:none"]
        .iter()
        .map(|k| store.locate(k.as_bytes()).unwrap())
        .collect();
    let refs: Vec<_> = locs.iter().collect();
    let got: Vec<Content> = quorumd::calls::store::capture(&node, &refs, StreamChecksum::Full)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.content)
        .collect();
    assert_eq!(
        got,
        vec![
            Content::string(b"hello"),
            Content::hash([(&b"a"[..], &b"1"[..]), (b"b", b"2")]),
            Content::set([&b"p"[..], b"q"]),
            Content::Absent,
        ]
    );
    tc.shutdown().await;
}

/// Scores whose printed forms differ between %.17g and the shortest form, and the extremes.
const SCORES: [f64; 12] = [
    1.5,
    -0.1,
    1e20,
    0.30000000000000004,
    1.0 / 3.0,
    f64::INFINITY,
    f64::NEG_INFINITY,
    0.0,
    123_456_789_012_345_678.0,
    -1.2345678e-7,
    2.5e-300,
    7.0,
];

/// The DUMP payloads `quorumd_core::dump` builds are accepted by a real redis-server that
/// checks them deeply (`sanitize-dump-payload yes`) and read back as built; and the nodes'
/// `content.lua` checksums lists and sorted sets (scores reprinted with %.17g) as the core
/// does.
#[tokio::test]
async fn built_payloads_restore_on_redis_and_the_nodes_checksum_them_as_the_core_does() {
    use quorumd::dump::{Collection, payload};
    let tc = TestCluster::start(3).await;
    let mut c = tc.direct(0).await;
    let _: () = command(&mut c, &["CONFIG", "SET", "sanitize-dump-payload", "yes"]).await;
    // Enough items for two-byte lengths, a long one for four-byte lengths, binary bytes.
    let mut list: Vec<Vec<u8>> = vec![
        b"a".to_vec(),
        Vec::new(),
        b"-5".to_vec(),
        b"12".to_vec(),
        vec![b'x'; 20_000],
        b"\r\n\0\xff".to_vec(),
    ];
    list.extend((0..70).map(|i| format!("i{i}").into_bytes()));
    let set: Vec<Vec<u8>> = vec![b"q".to_vec(), b"p".to_vec(), Vec::new(), b"7".to_vec()];
    let hash: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"f1".to_vec(), b"a".to_vec()),
        (b"f2".to_vec(), Vec::new()),
        (b"3".to_vec(), b"4".to_vec()),
    ];
    let zset: Vec<(Vec<u8>, f64)> = SCORES
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("m{i}").into_bytes(), *s))
        .collect();
    let values = [
        ("ck:list", Collection::List(&list)),
        ("ck:set", Collection::Set(&set)),
        ("ck:hash", Collection::Hash(&hash)),
        ("ck:zset", Collection::SortedSet(&zset)),
    ];
    for (key, value) in &values {
        let p = payload(value).unwrap();
        let restored: redis::RedisResult<()> = redis::cmd("RESTORE")
            .arg(*key)
            .arg(0)
            .arg(p)
            .query_async(&mut c)
            .await;
        restored.unwrap_or_else(|e| panic!("RESTORE {key}: {e}"));
    }
    let got: Vec<Vec<u8>> = command(&mut c, &["LRANGE", "ck:list", "0", "-1"]).await;
    assert_eq!(got, list);
    let mut got: Vec<Vec<u8>> = command(&mut c, &["SMEMBERS", "ck:set"]).await;
    got.sort();
    let mut want = set.clone();
    want.sort();
    assert_eq!(got, want);
    let mut got: Vec<(Vec<u8>, Vec<u8>)> = command(&mut c, &["HGETALL", "ck:hash"]).await;
    got.sort();
    let mut want = hash.clone();
    want.sort();
    assert_eq!(got, want);
    let got: Vec<(Vec<u8>, String)> =
        command(&mut c, &["ZRANGE", "ck:zset", "0", "-1", "WITHSCORES"]).await;
    let mut got: Vec<(Vec<u8>, f64)> = got
        .into_iter()
        .map(|(m, s)| (m, s.parse().unwrap()))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want = zset.clone();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want);

    let mut contents = Vec::new();
    for (key, _) in &values {
        contents.push(raw(&tc, 0, key).await.0);
    }
    assert_eq!(
        contents,
        vec![
            Content::list(list.iter().map(Vec::as_slice)),
            Content::set(set.iter().map(Vec::as_slice)),
            Content::hash(hash.iter().map(|(f, v)| (&f[..], &v[..]))),
            Content::sorted_set(zset.iter().map(|(m, s)| (&m[..], *s))),
        ]
    );
    // The same checksum for a sorted set written by ZADD (scores parsed by the server).
    let _: () = command(
        &mut c,
        &["ZADD", "ck:zadd", "0.1", "a", "1e20", "b", "-inf", "c"],
    )
    .await;
    assert_eq!(
        raw(&tc, 0, "ck:zadd").await.0,
        Content::sorted_set([(&b"a"[..], 0.1), (b"b", 1e20), (b"c", f64::NEG_INFINITY)])
    );
    tc.shutdown().await;
}

/// The stream payloads `quorumd_core::stream` builds are exactly what redis-server 7.0 dumps
/// for the same stream built by XADD (uncompressed): byte for byte, so the node layout (which
/// `~` trims and XINFO's radix-tree figures follow) is Redis's. A deep check of the payload
/// (`sanitize-dump-payload yes`) accepts them, they read back as built, and the nodes'
/// `content.lua` checksums them as the core does.
#[tokio::test]
async fn built_stream_payloads_are_the_dumps_of_redis_server() {
    use quorumd::stream::{ParsedId, Stream, StreamId};
    let tc = TestCluster::start(3).await;
    let mut c = tc.direct(0).await;
    let _: () = command(&mut c, &["CONFIG", "SET", "sanitize-dump-payload", "yes"]).await;
    let _: () = command(&mut c, &["CONFIG", "SET", "rdbcompression", "no"]).await;
    let mut stream = Stream::default();
    let mut xadds: Vec<Vec<Vec<u8>>> = Vec::new();
    for i in 0..260u64 {
        // Same fields as the node's first entry or not; integers of every listpack width;
        // binary and long values (which split nodes by bytes); a sequence jump now and then.
        let fields: Vec<(Vec<u8>, Vec<u8>)> = match i % 7 {
            0 => vec![(b"f".to_vec(), format!("{}", i as i64 * -977).into_bytes())],
            1 => vec![
                (b"g".to_vec(), b"\r\n\0\xff".to_vec()),
                (b"12".to_vec(), Vec::new()),
            ],
            2 => vec![(b"f".to_vec(), vec![b'x'; 700 + i as usize])],
            3 => vec![(b"f".to_vec(), (1u64 << (i % 63)).to_string().into_bytes())],
            4 => vec![(b"f".to_vec(), b"007".to_vec())],
            _ => vec![(b"f".to_vec(), i.to_string().into_bytes())],
        };
        let id = StreamId::new(1_000 + i * 3, if i % 5 == 0 { 7 } else { 0 });
        let parsed = ParsedId {
            id,
            seq_given: true,
        };
        stream.add(Some(parsed), fields.clone(), 0).unwrap();
        let mut args = vec![
            b"XADD".to_vec(),
            b"built:x".to_vec(),
            id.to_string().into_bytes(),
        ];
        for (f, v) in fields {
            args.push(f);
            args.push(v);
        }
        xadds.push(args);
    }
    for args in &xadds {
        let _: String = redis::cmd(std::str::from_utf8(&args[0]).unwrap())
            .arg(&args[1..])
            .query_async(&mut c)
            .await
            .unwrap();
    }
    let dumped: Vec<u8> = command(&mut c, &["DUMP", "built:x"]).await;
    assert_eq!(
        stream.dump_payload(),
        dumped,
        "the payload is redis-server's DUMP"
    );

    // With holes, counters and an emptied stream: accepted by the deep check, read back.
    stream.delete(&[StreamId::new(1_003, 0), StreamId::new(1_300, 7)]);
    stream.last_id = StreamId::new(99_999, 3);
    stream.entries_added = 1_000;
    // Entries-added above 2^53: Lua sees it rounded, and the core prints it as Lua does.
    let empty = Stream {
        last_id: StreamId::new(5, 5),
        max_deleted: StreamId::new(4, 0),
        entries_added: (1 << 53) + 1,
        ..Stream::default()
    };
    for (key, s) in [("built:holes", &stream), ("built:empty", &empty)] {
        let restored: redis::RedisResult<()> = redis::cmd("RESTORE")
            .arg(key)
            .arg(0)
            .arg(s.dump_payload())
            .query_async(&mut c)
            .await;
        restored.unwrap_or_else(|e| panic!("RESTORE {key}: {e}"));
        let entries: Vec<(String, Vec<Vec<u8>>)> =
            command(&mut c, &["XRANGE", key, "-", "+"]).await;
        let want: Vec<(String, Vec<Vec<u8>>)> = s
            .entries
            .iter()
            .map(|e| {
                let flat = e.fields.iter().flat_map(|(f, v)| [f.clone(), v.clone()]);
                (e.id.to_string(), flat.collect())
            })
            .collect();
        assert_eq!(entries, want, "{key}");
        let info: Vec<redis::Value> = command(&mut c, &["XINFO", "STREAM", key]).await;
        let text = |v: &redis::Value| match v {
            redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            redis::Value::Int(n) => n.to_string(),
            other => format!("{other:?}"),
        };
        let info: Vec<String> = info.iter().map(text).collect();
        assert_eq!(
            info[..16],
            [
                "length".to_string(),
                s.entries.len().to_string(),
                "radix-tree-keys".into(),
                s.nodes().len().to_string(),
                "radix-tree-nodes".into(),
                s.radix_tree_nodes().to_string(),
                "last-generated-id".into(),
                s.last_id.to_string(),
                "max-deleted-entry-id".into(),
                s.max_deleted.to_string(),
                "entries-added".into(),
                s.entries_added.to_string(),
                "recorded-first-entry-id".into(),
                s.first_id().to_string(),
                "groups".into(),
                "0".into(),
            ],
            "{key}"
        );
    }

    let mut contents = Vec::new();
    for key in ["built:x", "built:holes"] {
        contents.push(raw(&tc, 0, key).await.0);
    }
    assert_eq!(contents[1], Content::stream(&stream));
    assert_ne!(contents[0], contents[1]);
    assert_eq!(raw(&tc, 0, "built:empty").await.0, Content::stream(&empty));
    // The function of entries written before `y` (entries only) is unchanged.
    for (key, s) in [("built:holes", &stream), ("built:empty", &empty)] {
        let x = raw_as(&tc, 0, key, StreamChecksum::Entries).await.0;
        assert_eq!(x, Content::stream_entries(s), "{key}");
    }
    tc.shutdown().await;
}

/// A stream with consumer groups, made with real commands on a node, reads back (the typed
/// read quorumd's writes start from) into a value whose built payload is that node's DUMP,
/// byte for byte: group and consumer names (integer-encoded when they read as integers),
/// last-delivered IDs, entries-read (unknown too), the PEL with delivery times and counts,
/// consumers with and without pending entries. A payload quorumd changed then RESTOREs under
/// the deep check, and the node reports the groups quorumd computed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_stream_payloads_carry_the_consumer_groups_of_redis_server() {
    use quorumd::calls::store::{TypedValue, TypedWanted, read_typed};
    use quorumd::stream::{Claim, StreamId};
    let tc = TestCluster::start(3).await;
    let mut c = tc.direct(0).await;
    let _: () = command(&mut c, &["CONFIG", "SET", "sanitize-dump-payload", "yes"]).await;
    let _: () = command(&mut c, &["CONFIG", "SET", "rdbcompression", "no"]).await;
    for i in 1..=150 {
        let id = format!("{i}-1");
        let _: String = command(&mut c, &["XADD", "built:g", &id, "f", &i.to_string()]).await;
    }
    let lines: &[&[&str]] = &[
        &["XGROUP", "CREATE", "built:g", "g1", "0"],
        &[
            "XGROUP",
            "CREATE",
            "built:g",
            "123",
            "$",
            "ENTRIESREAD",
            "150",
        ],
        &["XGROUP", "CREATE", "built:g", "-7", "20-1"],
        &[
            "XGROUP",
            "CREATE",
            "built:g",
            "a-much-longer-group-name-than-twenty",
            "0",
        ],
        &["XGROUP", "CREATECONSUMER", "built:g", "123", "idle"],
        &["XGROUP", "CREATECONSUMER", "built:g", "g1", "99999"],
        &[
            "XREADGROUP",
            "GROUP",
            "g1",
            "alice",
            "COUNT",
            "70",
            "STREAMS",
            "built:g",
            ">",
        ],
        &[
            "XREADGROUP",
            "GROUP",
            "g1",
            "bob",
            "COUNT",
            "30",
            "STREAMS",
            "built:g",
            ">",
        ],
        &[
            "XREADGROUP",
            "GROUP",
            "g1",
            "carol",
            "NOACK",
            "COUNT",
            "5",
            "STREAMS",
            "built:g",
            ">",
        ],
        &["XREADGROUP", "GROUP", "-7", "1", "STREAMS", "built:g", ">"],
        &["XACK", "built:g", "g1", "3-1", "4-1", "80-1"],
        &[
            "XCLAIM",
            "built:g",
            "g1",
            "bob",
            "0",
            "5-1",
            "6-1",
            "TIME",
            "1000",
            "RETRYCOUNT",
            "300",
        ],
        &[
            "XCLAIM",
            "built:g",
            "g1",
            "dave",
            "0",
            "7-1",
            "RETRYCOUNT",
            "70000",
            "JUSTID",
        ],
        &[
            "XGROUP",
            "SETID",
            "built:g",
            "a-much-longer-group-name-than-twenty",
            "9-1",
        ],
    ];
    for line in lines {
        let _: redis::Value = command(&mut c, line).await;
    }
    let dumped: Vec<u8> = command(&mut c, &["DUMP", "built:g"]).await;
    let store = tc.app().store();
    let loc = store.locate(b"built:g").unwrap();
    let node = &store.pool().nodes()[0];
    let read = read_typed(node, &[(&loc, TypedWanted::Full)])
        .await
        .unwrap();
    let Some(TypedValue::Stream(mut s)) = read[0].value.clone() else {
        panic!("not a stream: {:?}", read[0].value);
    };
    assert_eq!(s.groups.len(), 4);
    assert_eq!(s.groups[&b"g1"[..]].pending.len(), 97);
    assert_eq!(
        s.dump_payload(),
        dumped,
        "the payload is redis-server's DUMP, groups included"
    );
    // content.lua checksums the groups as the core does (the read is in `s` as the node has it).
    let node_groups = Content::stream(&s);
    assert_eq!(raw(&tc, 0, "built:g").await.0, node_groups);

    // Changed by quorumd's own code, then restored: the node holds what quorumd computed.
    // Pending entries deleted from the stream stay pending (XDEL leaves holes in Redis's
    // nodes that a built payload does not have, hence after the comparison above).
    assert_eq!(s.delete(&[StreamId::new(8, 1), StreamId::new(90, 1)]), 2);
    let now = 1_800_000_000_000;
    let long = b"a-much-longer-group-name-than-twenty";
    assert_eq!(s.read_new(long, b"eve", 3, false, now).len(), 3);
    let claim = Claim {
        force: true,
        ..Claim::default()
    };
    let got = s.claim(b"123", b"frank", &[StreamId::new(150, 1)], claim, now);
    assert_eq!(got.len(), 1);
    assert_eq!(s.ack(b"g1", &[StreamId::new(10, 1)]), 1);
    let restored: redis::RedisResult<()> = redis::cmd("RESTORE")
        .arg("built:g2")
        .arg(0)
        .arg(s.dump_payload())
        .query_async(&mut c)
        .await;
    restored.expect("RESTORE of the built payload");
    let loc = store.locate(b"built:g2").unwrap();
    let read = read_typed(node, &[(&loc, TypedWanted::Full)])
        .await
        .unwrap();
    assert_eq!(read[0].value, Some(TypedValue::Stream(s.clone())));
    assert_eq!(raw(&tc, 0, "built:g2").await.0, Content::stream(&s));
    assert_ne!(Content::stream(&s), node_groups, "the groups are covered");
    let pending: redis::Value = command(&mut c, &["XPENDING", "built:g2", "123"]).await;
    assert_eq!(
        pending,
        redis::Value::Array(vec![
            redis::Value::Int(1),
            redis::Value::BulkString(b"150-1".to_vec()),
            redis::Value::BulkString(b"150-1".to_vec()),
            redis::Value::Array(vec![redis::Value::Array(vec![
                redis::Value::BulkString(b"frank".to_vec()),
                redis::Value::BulkString(b"1".to_vec()),
            ])]),
        ])
    );
    let full: Vec<redis::Value> = command(
        &mut c,
        &["XINFO", "STREAM", "built:g2", "FULL", "COUNT", "0"],
    )
    .await;
    let groups = full
        .iter()
        .position(|v| *v == redis::Value::BulkString(b"groups".to_vec()))
        .map(|at| full[at + 1].clone());
    let Some(redis::Value::Array(groups)) = groups else {
        panic!("no groups in {full:?}");
    };
    assert_eq!(groups.len(), 4);
    tc.shutdown().await;
}

/// Waits until every node holds `key`'s metadata entry with `content` and an expiry: written
/// at `quorum`, the last node may apply the last write (the EXPIRE) after the answer. The
/// entry is written with the value, in one script.
async fn wait_expiring_entry_everywhere(tc: &TestCluster, key: &str, content: &Content) {
    wait_until(
        Duration::from_secs(5),
        &format!("{key} with its content and TTL on every node"),
        || async {
            for i in 0..3 {
                let meta = tc.raw_meta(i, key.as_bytes()).await;
                if !meta.is_some_and(|m| m.content == *content && m.expires_at_ms.is_some()) {
                    return false;
                }
            }
            true
        },
    )
    .await;
}

/// LRANGE of `key` straight on node `i`.
async fn raw_list(tc: &TestCluster, i: usize, key: &str) -> Vec<String> {
    command(&mut tc.direct(i).await, &["LRANGE", key, "0", "-1"]).await
}

/// A list written through quorumd's RESP front end is the same list on every node, with a
/// metadata entry whose checksum is the list's; the digest exchange heals a node that lost
/// it, and the full sweep's scrub heals one whose copy was deleted or changed underneath
/// its metadata.
#[tokio::test]
async fn a_list_is_the_same_on_every_node_and_the_sweeps_heal_it() {
    // A write is fresh for the exchange's in-flight window; this one is to be healed at once.
    let tc = TestCluster::start_with(3, |c| {
        c.sync.direct_writes = DirectWritesPolicy::Restore;
        c.sync.in_flight_window_ms = 0;
    })
    .await;
    let addr = tc.app().resp_addr().expect("resp enabled");
    let mut q = common::direct(&format!("redis://{addr}")).await;
    let _: i64 = command(&mut q, &["RPUSH", "lh:k", "a", "b", "c"]).await;
    let _: i64 = command(&mut q, &["LPUSH", "lh:k", "z"]).await;
    let _: i64 = command(&mut q, &["EXPIRE", "lh:k", "100000"]).await;
    let want = ["z", "a", "b", "c"].map(String::from).to_vec();
    let content = Content::list(want.iter().map(|s| s.as_bytes()));
    wait_expiring_entry_everywhere(&tc, "lh:k", &content).await;
    for i in 0..3 {
        assert_eq!(raw_list(&tc, i, "lh:k").await, want, "node {i}");
        let meta = tc.raw_meta(i, b"lh:k").await.expect("metadata");
        assert_eq!(meta.kind, quorumd::meta::EntryKind::Value);
        assert_eq!(meta.content, content, "node {i}");
        assert!(meta.expires_at_ms.is_some(), "the TTL is replicated");
    }
    all_nodes_agree_with(&tc, 0, &["lh:k"]).await;
    let clean = tc.sweep(SweepMode::Full, false).await;
    assert!(clean.direct_changes.is_empty(), "{clean:?}");

    // Node 2 loses everything: the exchange copies the list back, with its metadata.
    let _: () = command(&mut tc.direct(2).await, &["FLUSHALL"]).await;
    tc.sweep(SweepMode::Exchange, false).await;
    assert_eq!(raw_list(&tc, 2, "lh:k").await, want);
    all_nodes_agree_with(&tc, 0, &["lh:k"]).await;

    // Node 1 loses the list and its metadata entry: a read at `all` sees it behind and read
    // repair gives it the list back (a DUMP payload through APPLY). Not a FLUSHALL: a node
    // that lost everything is `recovering` once its probe finds the sentinel gone, and a read
    // at `all` then refuses to count it, a race this step once lost on a loaded machine.
    let meta_key = tc.app().store().locate(b"lh:k").unwrap().meta_key;
    let mut n1 = tc.direct(1).await;
    let _: i64 = command(&mut n1, &["DEL", "lh:k"]).await;
    let _: i64 = command(&mut n1, &["HDEL", &meta_key, "lh:k"]).await;
    let _: () = command(&mut q, &["QUORUMD", "CONSISTENCY", "all"]).await;
    let read: Vec<String> = command(&mut q, &["LRANGE", "lh:k", "0", "-1"]).await;
    assert_eq!(read, want);
    wait_until(Duration::from_secs(5), "read repair of node 1", || async {
        raw_list(&tc, 1, "lh:k").await == want
    })
    .await;
    all_nodes_agree_with(&tc, 0, &["lh:k"]).await;

    // Node 1's copy is deleted and node 2's changed, under unchanged metadata. (Node 0 stays
    // intact: the restore copies from a holder without checking its content.)
    let _: () = command(&mut tc.direct(1).await, &["DEL", "lh:k"]).await;
    let _: () = command(&mut tc.direct(2).await, &["LSET", "lh:k", "0", "tampered"]).await;
    // A read at `all` serves the intact copy, not the changed one.
    let read: Vec<String> = command(&mut q, &["LRANGE", "lh:k", "0", "-1"]).await;
    assert_eq!(read, want);
    let dry = tc.sweep(SweepMode::Full, true).await;
    assert_eq!(dry.direct_changes.get("deleted"), Some(&1), "{dry:?}");
    assert_eq!(dry.direct_changes.get("changed"), Some(&1), "{dry:?}");
    // Both are direct changes, restored by the scrub under this policy (the key-state phase
    // leaves a vanished value to it since 5c841d5).
    let r = tc.sweep(SweepMode::Full, false).await;
    assert_eq!(r.direct_changes.get("deleted"), Some(&1), "{r:?}");
    assert_eq!(r.direct_changes.get("changed"), Some(&1), "{r:?}");
    assert_eq!(r.direct_changes_handled.get("restored"), Some(&2), "{r:?}");
    for i in 0..3 {
        assert_eq!(raw_list(&tc, i, "lh:k").await, want, "node {i}");
    }
    all_nodes_agree_with(&tc, 0, &["lh:k"]).await;
    tc.shutdown().await;
}

/// ZRANGE WITHSCORES of `key` straight on node `i`.
async fn raw_zset(tc: &TestCluster, i: usize, key: &str) -> Vec<String> {
    command(
        &mut tc.direct(i).await,
        &["ZRANGE", key, "0", "-1", "WITHSCORES"],
    )
    .await
}

/// A sorted set written through quorumd's RESP front end is the same on every node, with a
/// metadata entry whose checksum is `Content::sorted_set` of it; the full sweep's scrub heals
/// a node whose copy was changed underneath its metadata (as for lists above).
#[tokio::test]
async fn a_sorted_set_is_the_same_on_every_node_and_the_sweep_heals_it() {
    let tc = TestCluster::start_with(3, |c| {
        c.sync.direct_writes = DirectWritesPolicy::Restore;
        c.sync.in_flight_window_ms = 0;
    })
    .await;
    let addr = tc.app().resp_addr().expect("resp enabled");
    let mut q = common::direct(&format!("redis://{addr}")).await;
    let _: i64 = command(&mut q, &["ZADD", "zh:k", "1", "a", "0.1", "b", "-inf", "c"]).await;
    let _: String = command(&mut q, &["ZINCRBY", "zh:k", "2.5", "a"]).await;
    let _: i64 = command(&mut q, &["ZREM", "zh:k", "c"]).await;
    let _: i64 = command(&mut q, &["EXPIRE", "zh:k", "100000"]).await;
    let want = ["b", "0.10000000000000001", "a", "3.5"]
        .map(String::from)
        .to_vec();
    let content = Content::sorted_set([(&b"b"[..], 0.1), (b"a", 3.5)]);
    wait_expiring_entry_everywhere(&tc, "zh:k", &content).await;
    for i in 0..3 {
        assert_eq!(raw_zset(&tc, i, "zh:k").await, want, "node {i}");
        let meta = tc.raw_meta(i, b"zh:k").await.expect("metadata");
        assert_eq!(meta.kind, quorumd::meta::EntryKind::Value);
        assert_eq!(meta.content, content, "node {i}");
        assert!(meta.expires_at_ms.is_some(), "the TTL is replicated");
    }
    all_nodes_agree_with(&tc, 0, &["zh:k"]).await;
    let clean = tc.sweep(SweepMode::Full, false).await;
    assert!(clean.direct_changes.is_empty(), "{clean:?}");

    // Node 2's copy is changed under unchanged metadata: a read at `all` serves an intact
    // copy, and the scrub restores node 2's.
    let _: i64 = command(&mut tc.direct(2).await, &["ZADD", "zh:k", "7", "a"]).await;
    let _: () = command(&mut q, &["QUORUMD", "CONSISTENCY", "all"]).await;
    let read: Vec<String> = command(&mut q, &["ZRANGE", "zh:k", "0", "-1", "WITHSCORES"]).await;
    assert_eq!(read, want);
    let dry = tc.sweep(SweepMode::Full, true).await;
    assert_eq!(dry.direct_changes.get("changed"), Some(&1), "{dry:?}");
    let r = tc.sweep(SweepMode::Full, false).await;
    assert_eq!(r.direct_changes_handled.get("restored"), Some(&1), "{r:?}");
    for i in 0..3 {
        assert_eq!(raw_zset(&tc, i, "zh:k").await, want, "node {i}");
    }
    all_nodes_agree_with(&tc, 0, &["zh:k"]).await;

    // Node 1 loses the sorted set and its metadata entry (not everything: see the list test):
    // a read at `all` sees it behind and read repair gives it back (a DUMP payload of RDB
    // type zset-2 through APPLY).
    let meta_key = tc.app().store().locate(b"zh:k").unwrap().meta_key;
    let mut n1 = tc.direct(1).await;
    let _: i64 = command(&mut n1, &["DEL", "zh:k"]).await;
    let _: i64 = command(&mut n1, &["HDEL", &meta_key, "zh:k"]).await;
    let read: Vec<String> = command(&mut q, &["ZRANGE", "zh:k", "0", "-1", "WITHSCORES"]).await;
    assert_eq!(read, want);
    wait_until(Duration::from_secs(5), "read repair of node 1", || async {
        raw_zset(&tc, 1, "zh:k").await == want
    })
    .await;
    all_nodes_agree_with(&tc, 0, &["zh:k"]).await;

    // Emptied by removal: deleted on every node, as Redis deletes it.
    let _: i64 = command(&mut q, &["ZREM", "zh:k", "a", "b"]).await;
    for i in 0..3 {
        assert!(raw_zset(&tc, i, "zh:k").await.is_empty(), "node {i}");
        let meta = tc.raw_meta(i, b"zh:k").await.expect("metadata");
        assert_eq!(meta.kind, quorumd::meta::EntryKind::Tombstone, "node {i}");
    }
    tc.shutdown().await;
}

#[tokio::test]
async fn a_scrub_stopped_in_its_bucket_phase_resumes_where_it_stopped() {
    let tc = TestCluster::start_with(3, policy(DirectWritesPolicy::ReportOnly)).await;
    let store = tc.app().store().clone();
    let half = store.settings().layout.buckets / 2;
    // One key below the saved position and one above it, both changed on node 1.
    let mut low = None;
    let mut high = None;
    for i in 0.. {
        let k = format!("cp:{i}");
        let b = store.locate(k.as_bytes()).unwrap().bucket;
        if b < half && low.is_none() {
            low = Some(k);
        } else if b >= half && high.is_none() {
            high = Some(k);
        }
        if low.is_some() && high.is_some() {
            break;
        }
    }
    let (low, high) = (low.unwrap(), high.unwrap());
    for k in [&low, &high] {
        put(&tc, k, "original").await;
        let _: () = command(&mut tc.direct(1).await, &["SET", k, "direct"]).await;
    }
    // As a full sweep that was stopped after checking half the buckets leaves it.
    let checkpoint = common::reserved_key("sweep:buckets");
    for i in 0..3 {
        let _: () = command(
            &mut tc.direct(i).await,
            &["SET", &checkpoint, &half.to_string()],
        )
        .await;
    }
    let r = tc.sweep(SweepMode::Full, false).await;
    assert_eq!(r.resumed_from_bucket, Some(half), "{r:?}");
    assert_eq!(r.keys_scanned(), 0, "the scans had finished: {r:?}");
    assert_eq!(
        r.direct_changes.get("changed"),
        Some(&1),
        "only {high} is past the checkpoint: {r:?}"
    );
    for i in 0..3 {
        let left: Option<String> = command(&mut tc.direct(i).await, &["GET", &checkpoint]).await;
        assert_eq!(left, None, "the finished phase removes its checkpoint");
    }
    // The next sweep starts over and finds both.
    let again = tc.sweep(SweepMode::Full, false).await;
    assert_eq!(again.resumed_from_bucket, None);
    assert_eq!(again.direct_changes.get("changed"), Some(&2), "{again:?}");
    tc.shutdown().await;
}

#[tokio::test]
async fn a_crdt_value_changed_on_a_node_is_rebuilt_from_its_state() {
    let tc = TestCluster::start_with(3, policy(DirectWritesPolicy::Adopt)).await;
    let r = tc
        .http
        .post(format!("{}/v1/sets/cart/add?consistency=all", tc.base))
        .json(&serde_json::json!({ "members": ["apple", "pear"] }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let before = members(&tc, 0).await;
    assert_eq!(before, ["apple", "pear"]);
    let _: () = command(&mut tc.direct(1).await, &["SADD", "cart", "intruder"]).await;
    let r = tc.sweep(SweepMode::Full, false).await;
    assert_eq!(r.direct_changes.get("changed"), Some(&1), "{r:?}");
    assert_eq!(r.direct_changes_handled.get("restored"), Some(&1), "{r:?}");
    for i in 0..3 {
        assert_eq!(members(&tc, i).await, before, "node {i}");
    }
    tc.shutdown().await;
}

async fn members(tc: &TestCluster, i: usize) -> Vec<String> {
    let mut c = tc.direct(i).await;
    let mut m: Vec<String> = command(&mut c, &["SMEMBERS", "cart"]).await;
    m.sort();
    m
}

async fn live_counts(tc: &TestCluster, origin: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for i in 0..3 {
        out.push(tc.live_key_events(i, origin).await);
    }
    out
}

/// A burst of writes through quorumd (`n` PUTs, a delete, a CRDT merge) with one direct write
/// on node 1 in its middle; returns once the direct write is adopted on the other nodes.
async fn burst_with_a_direct_write(tc: &TestCluster, tag: &str, n: usize) {
    let direct_key = format!("{tag}:direct");
    put(tc, &direct_key, "original").await;
    let mut c = tc.direct(1).await;
    for i in 0..n {
        put(tc, &format!("{tag}:{i}"), "v").await;
        if i == n / 2 {
            let _: () = command(&mut c, &["SET", &direct_key, "direct"]).await;
            let r = tc.delete(&format!("{tag}:0"), "").await;
            assert!(r.status().is_success(), "DELETE: {}", r.status());
            let r = tc
                .http
                .post(format!("{}/v1/sets/{tag}:set/add?consistency=all", tc.base))
                .json(&serde_json::json!({ "members": ["a"] }))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "set add: {}", r.status());
        }
    }
    wait_until(
        Duration::from_secs(10),
        "the direct write adopted",
        || async {
            let mut all = true;
            for i in [0, 2] {
                all &=
                    tc.raw_value(i, direct_key.as_bytes()).await.as_deref() == Some(&b"direct"[..]);
            }
            all
        },
    )
    .await;
}

#[tokio::test]
async fn quorumds_own_writes_are_not_verified_and_a_direct_write_among_them_still_is() {
    const PUTS: usize = 200;
    let tc = TestCluster::start_with(3, live(DirectWritesPolicy::Adopt)).await;
    wait_live_on(&tc, 3).await;
    let own0 = live_counts(&tc, "own").await;
    let unmarked0 = live_counts(&tc, "unmarked").await;
    burst_with_a_direct_write(&tc, "o", PUTS).await;
    // Every node heard every write of the burst as quorumd's own: the PUTs, the direct key's
    // first PUT and its adoption, the delete, the set's value.
    wait_until(Duration::from_secs(10), "own writes heard", || async {
        let own = live_counts(&tc, "own").await;
        (0..3).all(|i| own[i] - own0[i] >= PUTS as u64 + 4)
    })
    .await;
    // Give a stray event time to arrive before counting the unmarked ones.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let unmarked = live_counts(&tc, "unmarked").await;
    let verified: Vec<u64> = (0..3).map(|i| unmarked[i] - unmarked0[i]).collect();
    assert_eq!(
        verified,
        [0, 1, 0],
        "only the direct write (node 1) is verified"
    );
    // Negative control: with the marks ignored, the same burst is verified write by write
    // (the "only the direct write" assertion above would fail), and the direct write is still
    // adopted.
    tc.app()
        .sweeper()
        .unsafe_knobs
        .live_ignores_own_marks
        .store(true, Ordering::Relaxed);
    burst_with_a_direct_write(&tc, "u", PUTS).await;
    wait_until(Duration::from_secs(10), "every write verified", || async {
        let now = live_counts(&tc, "unmarked").await;
        (0..3).all(|i| now[i] - unmarked[i] >= PUTS as u64)
    })
    .await;
    tc.shutdown().await;
}

/// The streams of the stream tests: each written through quorumd's RESP front end with three
/// entries and a group that delivered one of them, then changed on node 1 by one command
/// (`st:calm` is not changed).
const STREAMS: [&str; 4] = ["st:grp", "st:setid", "st:pel", "st:calm"];
const STREAM_CHANGES: [&[&str]; 3] = [
    &["XGROUP", "CREATE", "st:grp", "g2", "$"],
    &["XSETID", "st:setid", "99-0"],
    &[
        "XREADGROUP",
        "GROUP",
        "g",
        "bob",
        "COUNT",
        "1",
        "STREAMS",
        "st:pel",
        ">",
    ],
];

/// A stream's every figure, group, PEL and consumer on node `i`, as `XINFO STREAM FULL` lists
/// them (times absolute, so two nodes holding the same stream answer the same).
async fn stream_full(tc: &TestCluster, i: usize, key: &str) -> redis::Value {
    command(
        &mut tc.direct(i).await,
        &["XINFO", "STREAM", key, "FULL", "COUNT", "0"],
    )
    .await
}

/// Writes `STREAMS` through quorumd and waits until every node holds the same version of each.
async fn write_streams(tc: &TestCluster) {
    let addr = tc.app().resp_addr().expect("resp enabled");
    let mut q = common::direct(&format!("redis://{addr}")).await;
    for k in STREAMS {
        for id in ["1-1", "2-1", "3-1"] {
            let _: String = command(&mut q, &["XADD", k, id, "f", id]).await;
        }
        let _: () = command(&mut q, &["XGROUP", "CREATE", k, "g", "0"]).await;
        let _: redis::Value = command(
            &mut q,
            &[
                "XREADGROUP",
                "GROUP",
                "g",
                "alice",
                "COUNT",
                "1",
                "STREAMS",
                k,
                ">",
            ],
        )
        .await;
    }
    wait_until(
        Duration::from_secs(10),
        "the streams on every node",
        || async {
            for k in STREAMS {
                let meta = tc.raw_meta(0, k.as_bytes()).await;
                for i in 1..3 {
                    if tc.raw_meta(i, k.as_bytes()).await != meta {
                        return false;
                    }
                }
            }
            true
        },
    )
    .await;
}

/// Streams with groups written through quorumd and left alone are not reported by a scrub;
/// then each stream change of `STREAM_CHANGES` is made on node 1 and the scrub (live detection
/// off) finds exactly those. Returns the report of the sweep that handled them, and every
/// stream's `XINFO STREAM FULL` on node 0 and node 1 just before it.
async fn scrub_stream_changes(
    tc: &TestCluster,
) -> (
    quorumd::sync::SweepReport,
    Vec<redis::Value>,
    Vec<redis::Value>,
) {
    write_streams(tc).await;
    for k in STREAMS {
        let meta = tc.raw_meta(0, k.as_bytes()).await.expect("metadata");
        assert!(meta.content.to_string().starts_with('y'), "{k}: {meta:?}");
        assert_eq!(raw(tc, 0, k).await.0, meta.content, "{k}");
    }
    let calm = tc.sweep(SweepMode::Full, true).await;
    assert_eq!(calm.direct_changes.values().sum::<u64>(), 0, "{calm:?}");
    let mut c = tc.direct(1).await;
    for line in STREAM_CHANGES {
        let _: redis::Value = command(&mut c, line).await;
    }
    let mut before = (Vec::new(), Vec::new());
    for k in STREAMS {
        before.0.push(stream_full(tc, 0, k).await);
        before.1.push(stream_full(tc, 1, k).await);
    }
    for (k, (a, b)) in STREAMS.iter().zip(before.0.iter().zip(&before.1)) {
        assert_eq!(*k == "st:calm", a == b, "{k}: node 1 changed");
    }
    let r = tc.sweep(SweepMode::Full, false).await;
    assert_eq!(r.direct_changes.get("changed"), Some(&3), "{r:?}");
    assert_eq!(r.direct_changes.values().sum::<u64>(), 3, "{r:?}");
    (r, before.0, before.1)
}

/// A direct XGROUP CREATE, XSETID and XREADGROUP on one node are found by the scrub and
/// adopted: the changed stream spreads to every node under a new version.
#[tokio::test]
async fn the_scrub_adopts_direct_changes_of_a_streams_groups_and_last_id() {
    let tc = TestCluster::start_with(3, policy(DirectWritesPolicy::Adopt)).await;
    let (r, _, changed) = scrub_stream_changes(&tc).await;
    assert_eq!(r.direct_changes_handled.get("adopted"), Some(&3), "{r:?}");
    for (k, want) in STREAMS.iter().zip(&changed) {
        for i in 0..3 {
            assert_eq!(&stream_full(&tc, i, k).await, want, "{k} on node {i}");
        }
    }
    all_nodes_agree_with(&tc, 1, &STREAMS).await;
    let again = tc.sweep(SweepMode::Full, true).await;
    assert_eq!(again.direct_changes.values().sum::<u64>(), 0, "{again:?}");
    tc.shutdown().await;
}

/// The same changes under `restore`: node 1 gets the versioned streams back.
#[tokio::test]
async fn the_scrub_restores_streams_whose_groups_or_last_id_were_changed_directly() {
    let tc = TestCluster::start_with(3, policy(DirectWritesPolicy::Restore)).await;
    let (r, intact, _) = scrub_stream_changes(&tc).await;
    assert_eq!(r.direct_changes_handled.get("restored"), Some(&3), "{r:?}");
    for (k, want) in STREAMS.iter().zip(&intact) {
        for i in 0..3 {
            assert_eq!(&stream_full(&tc, i, k).await, want, "{k} on node {i}");
        }
    }
    // Node 0 was not touched: every node holds its value and version.
    all_nodes_agree_with(&tc, 0, &STREAMS).await;
    tc.shutdown().await;
}

/// The same changes under `report-only`: reported, and node 1 keeps them.
#[tokio::test]
async fn report_only_reports_direct_changes_of_a_streams_groups_and_last_id() {
    let tc = TestCluster::start_with(3, policy(DirectWritesPolicy::ReportOnly)).await;
    let (r, intact, changed) = scrub_stream_changes(&tc).await;
    assert_eq!(r.direct_changes_handled.get("reported"), Some(&3), "{r:?}");
    for (i, want) in [(0, &intact), (1, &changed), (2, &intact)] {
        for (k, want) in STREAMS.iter().zip(want) {
            assert_eq!(&stream_full(&tc, i, k).await, want, "{k} on node {i}");
        }
    }
    tc.shutdown().await;
}

/// Entries written with the checksum of the entries only (letter `x`, the function before
/// `y`, and `sync.stream_checksum = "entries"`) are checked with that function: not reported
/// when left alone, a changed entry is found, and a changed group is not (the old blind spot).
#[tokio::test]
async fn stream_entries_of_the_entries_only_checksum_are_checked_with_it() {
    let tc = TestCluster::start_with(3, |c| {
        c.sync.direct_writes = DirectWritesPolicy::ReportOnly;
        c.sync.stream_checksum = StreamChecksum::Entries;
    })
    .await;
    write_streams(&tc).await;
    for k in STREAMS {
        let meta = tc.raw_meta(0, k.as_bytes()).await.expect("metadata");
        assert!(meta.content.to_string().starts_with('x'), "{k}: {meta:?}");
    }
    let calm = tc.sweep(SweepMode::Full, true).await;
    assert_eq!(calm.direct_changes.values().sum::<u64>(), 0, "{calm:?}");
    let mut c = tc.direct(1).await;
    for line in STREAM_CHANGES {
        let _: redis::Value = command(&mut c, line).await;
    }
    let _: String = command(&mut c, &["XADD", "st:calm", "4-1", "f", "new"]).await;
    let r = tc.sweep(SweepMode::Full, true).await;
    assert_eq!(r.direct_changes.get("changed"), Some(&1), "{r:?}");
    assert_eq!(r.direct_changes.values().sum::<u64>(), 1, "{r:?}");
    tc.shutdown().await;
}

/// The live path sees the stream changes Redis raises an event for (`xgroup-create`,
/// `xsetid`, and `xgroup-createconsumer` for the new consumer of the XREADGROUP) and restores
/// the versioned streams without a scrub.
#[tokio::test]
async fn live_detection_restores_streams_whose_groups_or_last_id_changed() {
    let tc = TestCluster::start_with(3, live(DirectWritesPolicy::Restore)).await;
    wait_live_on(&tc, 3).await;
    write_streams(&tc).await;
    let mut intact = Vec::new();
    for k in STREAMS {
        intact.push(stream_full(&tc, 0, k).await);
    }
    let mut c = tc.direct(1).await;
    for line in STREAM_CHANGES {
        let _: redis::Value = command(&mut c, line).await;
    }
    wait_until(Duration::from_secs(5), "streams restored live", || async {
        for (k, want) in STREAMS.iter().zip(&intact) {
            if &stream_full(&tc, 1, k).await != want {
                return false;
            }
        }
        true
    })
    .await;
    all_nodes_agree_with(&tc, 0, &STREAMS).await;
    tc.shutdown().await;
}

/// A CRDT set's state hash changed on node 1 (one add-tag deleted, one forged), its value
/// left as it was: the scrub finds it by the entry hash, which no longer sums the state.
/// Returns the state key and node 0's state before the change.
async fn change_a_crdt_state_on_node_1(tc: &TestCluster) -> (String, Vec<String>) {
    let r = tc
        .http
        .post(format!("{}/v1/sets/cart/add?consistency=all", tc.base))
        .json(&serde_json::json!({ "members": ["apple", "pear"] }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let skey = tc.app().store().settings().layout.state_key(b"cart");
    let skey = String::from_utf8(skey).unwrap();
    let state: Vec<String> = command(&mut tc.direct(0).await, &["HGETALL", &skey]).await;
    let apple = state
        .chunks(2)
        .find(|fv| fv[1] == "apple")
        .map(|fv| fv[0].clone())
        .expect("apple's add-tag");
    // Another valid tag: the same version with its last hex digit changed.
    let mut forged = apple.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == '0' { '1' } else { '0' });
    let mut c = tc.direct(1).await;
    let _: () = command(&mut c, &["HDEL", &skey, &apple]).await;
    let _: () = command(&mut c, &["HSET", &skey, &forged, "intruder"]).await;
    // Left alone, the value check sees nothing: the value is the one the entry records.
    let r = tc.sweep(SweepMode::Full, true).await;
    assert_eq!(r.direct_changes.get("changed"), None, "{r:?}");
    (skey, state)
}

async fn sorted_state(tc: &TestCluster, i: usize, skey: &str) -> Vec<(String, String)> {
    let flat: Vec<String> = command(&mut tc.direct(i).await, &["HGETALL", skey]).await;
    let mut pairs: Vec<(String, String)> = flat
        .chunks(2)
        .map(|fv| (fv[0].clone(), fv[1].clone()))
        .collect();
    pairs.sort();
    pairs
}

/// Under `adopt` (and `restore`, the same for CRDTs) the scrub recomputes the node's entry
/// hash from its state and rebuilds its value; the next exchange then merges the states, so
/// every node holds the join: the deleted add-tag is back and the forged one everywhere.
#[tokio::test]
async fn a_crdt_state_changed_on_a_node_is_found_and_joined_with_the_others() {
    let tc = TestCluster::start_with(3, |c| {
        c.sync.direct_writes = DirectWritesPolicy::Adopt;
        c.sync.in_flight_window_ms = 0;
    })
    .await;
    let (skey, _) = change_a_crdt_state_on_node_1(&tc).await;
    let r = tc.sweep(SweepMode::Full, false).await;
    assert_eq!(r.direct_changes.get("state"), Some(&1), "{r:?}");
    assert_eq!(r.direct_changes.values().sum::<u64>(), 1, "{r:?}");
    assert_eq!(r.direct_changes_handled.get("adopted"), Some(&1), "{r:?}");
    assert_eq!(members(&tc, 1).await, ["intruder", "pear"], "rebuilt");
    let x = tc.sweep(SweepMode::Exchange, false).await;
    assert!(x.divergence_left() == 0, "{x:?}");
    let want = sorted_state(&tc, 0, &skey).await;
    assert_eq!(want.len(), 3, "{want:?}");
    for i in 0..3 {
        assert_eq!(sorted_state(&tc, i, &skey).await, want, "node {i}");
        assert_eq!(members(&tc, i).await, ["apple", "intruder", "pear"]);
    }
    let again = tc.sweep(SweepMode::Full, true).await;
    assert_eq!(again.direct_changes.values().sum::<u64>(), 0, "{again:?}");
    tc.shutdown().await;
}

/// Under `report-only` the changed state is reported and left as it is.
#[tokio::test]
async fn report_only_reports_a_changed_crdt_state_and_leaves_it() {
    let tc = TestCluster::start_with(3, policy(DirectWritesPolicy::ReportOnly)).await;
    let (skey, intact) = change_a_crdt_state_on_node_1(&tc).await;
    let changed = sorted_state(&tc, 1, &skey).await;
    let r = tc.sweep(SweepMode::Full, false).await;
    assert_eq!(r.direct_changes.get("state"), Some(&1), "{r:?}");
    assert_eq!(r.direct_changes_handled.get("reported"), Some(&1), "{r:?}");
    assert_eq!(sorted_state(&tc, 1, &skey).await, changed);
    assert_eq!(sorted_state(&tc, 0, &skey).await.len(), intact.len() / 2);
    tc.shutdown().await;
}
