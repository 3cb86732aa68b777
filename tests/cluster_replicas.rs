//! Replicas that are whole Redis Clusters: three clusters of three masters each, made by
//! `redis-cli --cluster create`. Reads and writes at every level, the RESP front end, a wiped
//! master healed by the digest exchange, the full sweep scanning every master, and locks,
//! queues and CRDTs, whose keys share a slot per name. And replicas sharded differently (3
//! masters, 4 masters, a standalone server) serving and healing each other.

use futures::StreamExt;
use quorumd::config::DirectWritesPolicy;
use quorumd::layout::key_slot;
use quorumd::sync::SweepMode;
use quorumd_testkit::cluster::{
    TestCluster, body_json, command, post_json as post, test_config, wait_until,
};
use redis::AsyncCommands;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

const CLUSTERS: usize = 3;
const MASTERS: usize = 3;

/// A cluster-aware connection to replica `r`, as any client of that cluster would have.
async fn replica(tc: &TestCluster, r: usize) -> ClusterConnection {
    let seeds: Vec<String> = tc.cluster.nodes[r * MASTERS..(r + 1) * MASTERS]
        .iter()
        .map(|n| n.url())
        .collect();
    ClusterClient::new(seeds)
        .unwrap()
        .get_async_connection()
        .await
        .unwrap()
}

/// Keys spread over many slots, so every master of every cluster holds some.
fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user:{i}")).collect()
}

/// Replica `r`'s copy of `key`: its value and its metadata entry, read through the cluster.
async fn copy_on(tc: &TestCluster, r: usize, key: &str) -> (Option<String>, Option<Vec<u8>>) {
    let loc = tc.app().store().locate(key.as_bytes()).unwrap();
    let mut c = replica(tc, r).await;
    let value: Option<String> = c.get(key).await.unwrap();
    let meta: Option<Vec<u8>> = c.hget(&*loc.meta_key, key).await.unwrap();
    (value, meta)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_at_every_level_land_in_each_clusters_owning_master() {
    // DBSIZE on a cluster reads every slot's sub-digests (16,384 hashes): a debug build on a
    // busy machine can take longer than the tests' 400 ms node timeout.
    let tc =
        TestCluster::start_clusters(CLUSTERS, (MASTERS, 0), |c| c.timeouts.node_ms = 3_000).await;
    let all = keys(60);
    for (i, key) in all.iter().enumerate() {
        let level = ["one", "quorum", "all"][i % 3];
        let q = format!("consistency={level}");
        let r = tc.put(key, format!("v{i}"), &q).await;
        assert!(r.status().is_success(), "{key} at {level}: {}", r.status());
        let want = format!("v{i}");
        if level == "one" {
            // `one` promises no freshness (docs/GUARANTEES.md): its read asks one node, which
            // may not have the write yet; it must see it once the write has spread.
            quorumd_testkit::cluster::wait_until(
                std::time::Duration::from_secs(10),
                "a write at one readable at one",
                || async { tc.get(key, &q).await.text().await.unwrap() == want },
            )
            .await;
        } else {
            let r = tc.get(key, &q).await;
            assert_eq!(r.text().await.unwrap(), want, "{key} at {level}");
        }
    }
    // A write at `one` reaches the others in the background: wait for every copy.
    for r in 0..CLUSTERS {
        for (i, key) in all.iter().enumerate() {
            quorumd_testkit::cluster::wait_until(
                std::time::Duration::from_secs(10),
                "every replica holds every key",
                || async { copy_on(&tc, r, key).await.0 == Some(format!("v{i}")) },
            )
            .await;
            let (_, meta) = copy_on(&tc, r, key).await;
            assert!(meta.is_some(), "{key}: no metadata on replica {r}");
        }
    }
    // The keys divide across the masters: each holds some, none holds them all.
    for (m, node) in tc.cluster.nodes.iter().enumerate() {
        let mut c = quorumd_testkit::cluster::direct(&node.url()).await;
        let user_keys: Vec<String> = redis::cmd("KEYS")
            .arg("user:*")
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(
            !user_keys.is_empty() && user_keys.len() < all.len(),
            "master {m} holds {} of {} keys",
            user_keys.len(),
            all.len()
        );
        for k in &user_keys {
            let loc = tc.app().store().locate(k.as_bytes()).unwrap();
            // The key's metadata sits beside it on the same master, in its slot.
            assert_eq!(key_slot(loc.meta_key.as_bytes()), key_slot(k.as_bytes()));
            let held: bool = redis::cmd("HEXISTS")
                .arg(&*loc.meta_key)
                .arg(k)
                .query_async(&mut c)
                .await
                .unwrap();
            assert!(held, "master {m}: {k} without its metadata beside it");
        }
    }
    // Deletes and the RESP front end work across the clusters too.
    assert!(tc.delete(&all[0], "").await.status().is_success());
    // Acknowledged before the last replica applies it: wait for every replica (DBSIZE below
    // counts them too).
    wait_until(
        Duration::from_secs(10),
        "the delete on every replica",
        || async {
            for r in 0..CLUSTERS {
                if copy_on(&tc, r, &all[0]).await.0.is_some() {
                    return false;
                }
            }
            true
        },
    )
    .await;
    assert_eq!(copy_on(&tc, 1, &all[0]).await.0, None);
    let resp = tc.app().resp_addr().expect("RESP listens");
    // The client waits longer than its default for DBSIZE too.
    let cfg = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(std::time::Duration::from_secs(30)));
    let mut c = redis::Client::open(format!("redis://{resp}"))
        .unwrap()
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .unwrap();
    let _: () = c.set("resp:key", "through resp").await.unwrap();
    let got: String = c.get("resp:key").await.unwrap();
    assert_eq!(got, "through resp");
    // Likewise for a write through RESP.
    wait_until(
        Duration::from_secs(10),
        "resp:key on every replica",
        || async {
            for r in 0..CLUSTERS {
                if copy_on(&tc, r, "resp:key").await.0.as_deref() != Some("through resp") {
                    return false;
                }
            }
            true
        },
    )
    .await;
    assert_eq!(
        copy_on(&tc, 2, "resp:key").await.0.as_deref(),
        Some("through resp")
    );
    // DBSIZE counts user keys only, summed over the masters.
    let size: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(size, all.len() as i64 - 1 + 1, "DBSIZE");
    let n: i64 = c.incr("resp:counter", 5).await.unwrap();
    assert_eq!(n, 5);

    // Pub/sub through the clusters: each replica's bus carries a message to the master this
    // instance subscribes on; the three copies make one delivery.
    let hub = tc.app().pubsub().expect("pub/sub runs").clone();
    wait_until(
        Duration::from_secs(10),
        "a subscription per replica",
        || async { hub.subscriptions_up() == CLUSTERS },
    )
    .await;
    let mut sub = redis::Client::open(format!("redis://{resp}"))
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    sub.subscribe("news").await.unwrap();
    let before: Vec<u64> = (0..CLUSTERS).map(|r| hub.copies_from(r)).collect();
    for i in 0..5 {
        let _: i64 = redis::cmd("PUBLISH")
            .arg("news")
            .arg(format!("m{i}"))
            .query_async(&mut c)
            .await
            .unwrap();
    }
    // Each message once; not necessarily in order: the first copy of each is delivered, and
    // copies come over different clusters' buses (docs/RESP.md, "What is not").
    let mut stream = sub.on_message();
    let mut got = Vec::new();
    for _ in 0..5 {
        let msg = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("a message within 5 s")
            .expect("subscription open");
        got.push(msg.get_payload::<String>().unwrap());
    }
    got.sort();
    let sent: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
    assert_eq!(got, sent, "each message delivered once");
    // Every replica carried every message, and none was delivered twice.
    wait_until(Duration::from_secs(5), "every copy received", || async {
        (0..CLUSTERS).all(|r| hub.copies_from(r) >= before[r] + 5)
    })
    .await;
    let extra = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
    assert!(extra.is_err(), "a message delivered twice: {extra:?}");
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_master_is_healed_by_the_exchange() {
    let tc = TestCluster::start_clusters(CLUSTERS, (MASTERS, 0), |c| {
        c.sync.in_flight_window_ms = 0;
        // The exchange reads 16,384 slot digests per replica: on a loaded machine that took
        // longer than the tests' 400 ms node timeout, and the replica was left out.
        c.timeouts.node_ms = 3_000;
        // Only the exchange's own probe can see the wipe.
        c.timeouts.health_interval_ms = 600_000;
    })
    .await;
    let all = keys(150);
    for key in &all {
        let r = tc
            .put(key, format!("value of {key}"), "consistency=all")
            .await;
        assert!(r.status().is_success(), "{key}: {}", r.status());
    }
    // Every master gets its sentinel.
    tc.sweep(SweepMode::Exchange, false).await;
    // Compared as totals over every sweep: a background exchange may heal the master before
    // (or while) the test's own exchange runs, which then finds less or nothing to do.
    let before = tc.app().sweeper().status().totals;
    // Master 1 of replica 2 loses everything.
    let wiped = 2 * MASTERS + 1;
    let mut c = tc.direct(wiped).await;
    let held: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert!(held > 0);
    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
    let mut lost = 0;
    for key in &all {
        if copy_on(&tc, 2, key).await.0.is_none() {
            lost += 1;
        }
    }
    assert!(lost > 0 && lost < all.len(), "{lost} keys lost");

    let report = tc.sweep(SweepMode::Exchange, false).await;
    let after = tc.app().sweeper().status().totals;
    let healed = after.keys_repaired_per_node[2] - before.keys_repaired_per_node[2];
    assert!(
        healed > 0 || after.buckets_copied > before.buckets_copied,
        "{after:?} {report:?}"
    );
    for key in &all {
        let (value, meta) = copy_on(&tc, 2, key).await;
        assert_eq!(value, Some(format!("value of {key}")), "{key}");
        assert_eq!(meta, copy_on(&tc, 0, key).await.1, "{key}: metadata");
    }
    // The exchange probed the replica before reading its digests, so it saw the wipe, and
    // the pass that healed the master also gave it back its sentinel.
    let held: Vec<String> = redis::cmd("KEYS")
        .arg("qd:sentinel{*}")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(held.len(), 1, "the healed master's sentinel: {held:?}");
    assert_eq!(tc.health(2).await, "up");
    // The copy wrote each healed slot's digest as a string, as the master's own writes do.
    let digests: Vec<String> = redis::cmd("KEYS")
        .arg("qd:d{*}")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(!digests.is_empty());
    for key in &digests {
        let ty: String = command(&mut c, &["TYPE", key]).await;
        assert_eq!(ty, "string", "{key}");
    }
    // A second exchange finds nothing left to do.
    let again = tc.sweep(SweepMode::Exchange, false).await;
    assert_eq!(again.keys_divergent, 0, "{again:?}");
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_changes_on_every_master_are_adopted_live() {
    let tc = TestCluster::start_clusters(CLUSTERS, (MASTERS, 0), |c| {
        c.sync.live_detection = true;
        c.sync.direct_writes = DirectWritesPolicy::Adopt;
    })
    .await;
    // Each replica subscribes to each of its masters, and is `on` once every master's probe
    // event came back.
    wait_until(Duration::from_secs(20), "live detection on", || async {
        let (_, s) = tc.json("/v1/status").await;
        (0..CLUSTERS).all(|r| s["sweeps"]["live_detection"][r]["state"] == "on")
    })
    .await;
    let all = keys(30);
    for key in &all {
        let r = tc.put(key, "original", "consistency=all").await;
        assert!(r.status().is_success(), "{key}: {}", r.status());
    }
    // quorumd's own writes are announced per slot, and each master's subscriber hears its
    // own slots' announcements in order with its key events: none of them needs a VERIFY.
    wait_until(Duration::from_secs(10), "own writes heard", || async {
        let mut all_heard = true;
        for r in 0..CLUSTERS {
            all_heard &= tc.live_key_events(r, "own").await >= all.len() as u64;
        }
        all_heard
    })
    .await;
    for r in 0..CLUSTERS {
        assert_eq!(tc.live_key_events(r, "unmarked").await, 0, "replica {r}");
    }
    // Changed on replica 1 through its own cluster client: on all three of its masters.
    let mut c = replica(&tc, 1).await;
    for key in &all {
        let _: () = c.set(key, format!("direct {key}")).await.unwrap();
    }
    for m in 0..MASTERS {
        let mut master = tc.direct(MASTERS + m).await;
        let held: Vec<String> = redis::cmd("KEYS")
            .arg("user:*")
            .query_async(&mut master)
            .await
            .unwrap();
        assert!(
            !held.is_empty(),
            "master {m} of replica 1 holds none of the keys"
        );
    }
    wait_until(
        Duration::from_secs(10),
        "direct changes adopted",
        || async {
            for key in &all {
                for r in [0, 2] {
                    if copy_on(&tc, r, key).await.0 != Some(format!("direct {key}")) {
                        return false;
                    }
                }
            }
            true
        },
    )
    .await;
    for key in &all {
        let meta = copy_on(&tc, 1, key).await.1;
        assert_eq!(copy_on(&tc, 0, key).await.1, meta, "{key}: metadata");
        assert_eq!(copy_on(&tc, 2, key).await.1, meta, "{key}: metadata");
    }
    // Negative control: with the live path dropping events, a change stays on its replica.
    tc.deafen_live_detection().await;
    let _: () = c.set(&all[0], "unseen").await.unwrap();
    let mut moved = false;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        moved |= copy_on(&tc, 0, &all[0]).await.0.as_deref() == Some("unseen");
    }
    assert!(!moved, "a live path that drops events must not heal");
    tc.shutdown().await;
}

/// A master flushed while it keeps running (no new run id) is seen by the next probe, whichever
/// master it is: each holds a sentinel of its own. (With one sentinel key per replica, only a
/// flush of the master holding it was seen before an exchange.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_of_any_master_is_seen_by_the_probe() {
    let tc = TestCluster::start_clusters(CLUSTERS, (MASTERS, 0), |c| {
        c.sync.in_flight_window_ms = 0;
        // DBSIZE on a cluster reads every slot's sub-digests (see the first test).
        c.timeouts.node_ms = 3_000;
    })
    .await;
    let all = keys(60);
    for key in &all {
        let r = tc
            .put(key, format!("value of {key}"), "consistency=all")
            .await;
        assert!(r.status().is_success(), "{key}: {}", r.status());
    }
    // No background exchange runs (`test_config`): only the probe can see a flush, and the
    // recovery it asks for runs an exchange all the same. An exchange that finds the replicas
    // in sync gives every master its sentinel.
    tc.sweep(SweepMode::Exchange, false).await;
    let (_, status) = tc.json("/v1/status").await;
    assert_eq!(status["nodes"][2]["has_sentinel"], true, "{status}");
    for m in 0..MASTERS {
        let mut c = tc.direct(2 * MASTERS + m).await;
        let held: Vec<String> = redis::cmd("KEYS")
            .arg("qd:sentinel{*}")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(held.len(), 1, "master {m} holds its own sentinel: {held:?}");
        let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
        wait_until(
            Duration::from_secs(10),
            &format!("replica 2 recovering after master {m} flushed"),
            || async { tc.health(2).await == "recovering" },
        )
        .await;
        wait_until(
            Duration::from_secs(30),
            &format!("replica 2 healed after master {m} flushed"),
            || async { tc.health(2).await == "up" },
        )
        .await;
        for key in &all {
            assert_eq!(
                copy_on(&tc, 2, key).await.0,
                Some(format!("value of {key}")),
                "{key} after master {m} flushed"
            );
        }
    }
    // The sentinels are quorumd's own keys: not counted by DBSIZE.
    let resp = tc.app().resp_addr().expect("RESP listens");
    let cfg = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(std::time::Duration::from_secs(30)));
    let mut c = redis::Client::open(format!("redis://{resp}"))
        .unwrap()
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .unwrap();
    let size: u64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(size, all.len() as u64);
    tc.shutdown().await;
}

/// An exchange that gives the masters their first sentinels while probes of the replicas are
/// under way takes no master for wiped (the clusters' case of `tests/sync.rs`'s
/// `sentinels_given_under_probes_are_not_taken_for_lost`). Each round starts from masters that
/// hold no sentinel and records and an instance that has seen none, probing every replica back
/// to back, and runs exchanges until every master holds its sentinel. (Before, a probe checked
/// the masters' sentinels one by one with `EXISTS` and only then read the records and judged,
/// against what was known by then: a master checked just before the exchange wrote its sentinel
/// looked wiped, `sentinel key missing: data lost`, and its replica was kept out of lock
/// majorities for the longest lock TTL.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_given_to_masters_under_probes_are_not_taken_for_lost() {
    const ROUNDS: usize = 20;
    let tweak = |c: &mut quorumd::config::Config| {
        c.sync.in_flight_window_ms = 0;
        // The exchange reads 16,384 slot digests per replica (see the first test).
        c.timeouts.node_ms = 3_000;
        c.timeouts.health_interval_ms = 1;
    };
    let mut tc = TestCluster::start_clusters(CLUSTERS, (MASTERS, 0), tweak).await;
    let urls: Vec<String> = tc
        .cluster
        .nodes
        .chunks(MASTERS)
        .map(|c| {
            let seeds: Vec<String> = c.iter().map(|n| n.addr().to_string()).collect();
            format!("redis+cluster://{}", seeds.join(","))
        })
        .collect();
    let mut misled = Vec::new();
    for round in 0..ROUNDS {
        tc.stop_service().await;
        for i in 0..CLUSTERS * MASTERS {
            let _: () = command(&mut tc.direct(i).await, &["FLUSHALL"]).await;
        }
        let mut cfg = test_config(urls.clone());
        cfg.placement = quorumd::layout::Scheme::Slot;
        tweak(&mut cfg);
        tc.relaunch(cfg).await;
        let pool = tc.app().store().pool().clone();
        // On a loaded machine an exchange may time out on a master, whose replica then waits
        // for the next one.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Err(e) = tc.try_sweep(SweepMode::Exchange, false).await {
                eprintln!("round {round}: exchange: {e}");
            }
            // A probe that started after the exchange ended: every probe that overlapped it
            // has been judged.
            for n in pool.nodes() {
                n.probe_now().await;
            }
            if pool.status().iter().all(|n| n.has_sentinel == Some(true)) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: no exchange gave every master its sentinel"
            );
        }
        let marked: Vec<u64> = pool.nodes().iter().map(|n| n.losses_marked()).collect();
        if marked.iter().any(|&m| m > 0) {
            misled.push((round, marked));
        }
    }
    assert!(
        misled.is_empty(),
        "intact masters taken for wiped in {} of {ROUNDS} rounds (round, losses per replica): \
         {misled:?}",
        misled.len()
    );
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_sweep_scans_every_master_of_a_cluster() {
    let tc = TestCluster::start_clusters(CLUSTERS, (MASTERS, 0), |_| {}).await;
    // Written on replica 0 alone, through its own cluster client: unversioned keys on all of
    // its masters, which only a SCAN of each master finds.
    let direct = keys(40);
    let mut c = replica(&tc, 0).await;
    for key in &direct {
        let _: () = c.set(key, format!("direct {key}")).await.unwrap();
    }
    let report = tc.sweep(SweepMode::Full, false).await;
    assert!(
        report.keys_scanned_per_node[0] >= direct.len() as u64,
        "{report:?}"
    );
    for r in 1..CLUSTERS {
        for key in &direct {
            assert_eq!(
                copy_on(&tc, r, key).await.0,
                Some(format!("direct {key}")),
                "{key} on replica {r}"
            );
        }
    }
    // Every master's scrub checks its own entries: a versioned value changed on replica 1,
    // through its cluster client, is found.
    let changed = &direct[7];
    let _: () = replica(&tc, 1)
        .await
        .set(changed, "changed on replica 1")
        .await
        .unwrap();
    let report = tc.sweep(SweepMode::Full, false).await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert!(
        report.entries_scrubbed >= 3 * direct.len() as u64,
        "{report:?}"
    );
    assert_eq!(report.direct_changes.get("changed"), Some(&1), "{report:?}");
    // Adopted (the default policy): the change is everywhere now.
    for r in 0..CLUSTERS {
        assert_eq!(
            copy_on(&tc, r, changed).await.0,
            Some("changed on replica 1".to_owned()),
            "{changed} on replica {r}"
        );
    }
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_queues_and_crdts_work_over_clusters() {
    let tc = TestCluster::start_clusters(CLUSTERS, (MASTERS, 0), |_| {}).await;
    let base = &tc.base;
    // A lock: its key and its fence share a slot, so the scripts run on one master.
    let lock = |name: &str, action: &str| format!("{base}/v1/locks/{name}/{action}");
    let (s, g) = post(
        &tc.http,
        lock("job", "acquire"),
        json!({"ttl_ms": 5000, "owner": "w1"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{g}");
    let (s, e) = post(&tc.http, lock("job", "acquire"), json!({"ttl_ms": 1000})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    let (s, r) = post(
        &tc.http,
        lock("job", "release"),
        json!({"token": g["token"]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, g2) = post(&tc.http, lock("job", "acquire"), json!({"ttl_ms": 5000})).await;
    assert_eq!(s, StatusCode::OK, "{g2}");
    assert!(g2["fence"].as_u64() > g["fence"].as_u64(), "fences rise");

    // A queue: put, claim, ack.
    let (s, put) = post(
        &tc.http,
        format!("{base}/v1/queues/work/items"),
        json!({"payload": "job 1"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{put}");
    let (s, item) = post(
        &tc.http,
        format!("{base}/v1/queues/work/claim"),
        json!({"lease_ms": 5000}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{item}");
    assert_eq!(item["payload"], "job 1");
    let id = item["id"].as_str().unwrap();
    let (s, acked) = post(
        &tc.http,
        format!("{base}/v1/queues/work/items/{id}/ack"),
        json!({"lease": item["lease"]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{acked}");
    let (s, empty) = post(
        &tc.http,
        format!("{base}/v1/queues/work/claim"),
        json!({"lease_ms": 5000}),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{empty}");

    // A counter.
    for _ in 0..3 {
        let (s, v) = post(
            &tc.http,
            format!("{base}/v1/counters/hits"),
            json!({"delta": 2}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let r = tc.fetch("/v1/counters/hits").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body_json(r).await["value"], 6);
    tc.shutdown().await;
}

#[test]
fn a_cluster_replica_needs_the_slot_placement() {
    let cfg = test_config(vec![
        "redis+cluster://127.0.0.1:7000,127.0.0.1:7001".into(),
        "redis://127.0.0.1:7100".into(),
        "redis://127.0.0.1:7200".into(),
    ]);
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("placement"), "{err}");
}

/// Replica `r`'s copy of `key` (value and metadata entry) when the replicas are shaped as
/// `shape` (`TestCluster::start_shaped`): through a cluster connection, or straight from a
/// standalone server.
async fn shaped_copy(
    tc: &TestCluster,
    shape: &[usize],
    r: usize,
    key: &str,
) -> (Option<String>, Option<Vec<u8>>) {
    let meta_key = tc.app().store().locate(key.as_bytes()).unwrap().meta_key;
    let first: usize = shape[..r].iter().map(|&m| m.max(1)).sum();
    if shape[r] == 0 {
        let mut c = tc.direct(first).await;
        return (
            c.get(key).await.unwrap(),
            c.hget(&*meta_key, key).await.unwrap(),
        );
    }
    let seeds: Vec<String> = tc.cluster.nodes[first..first + shape[r]]
        .iter()
        .map(|n| n.url())
        .collect();
    let mut c = ClusterClient::new(seeds)
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    (
        c.get(key).await.unwrap(),
        c.hget(&*meta_key, key).await.unwrap(),
    )
}

/// Whether every replica holds every key's value, with replica 0's metadata entry.
async fn shaped_replicas_agree(tc: &TestCluster, shape: &[usize], keys: &[String]) -> bool {
    for key in keys {
        let (value, meta) = shaped_copy(tc, shape, 0, key).await;
        if value != Some(format!("value of {key}")) || meta.is_none() {
            return false;
        }
        for r in 1..shape.len() {
            if shaped_copy(tc, shape, r, key).await != (value.clone(), meta.clone()) {
                return false;
            }
        }
    }
    true
}

/// Replicas need not be sharded alike: a cluster of 3 masters, one of 4 and a standalone
/// server. A key's replica is a different master in each cluster, or the server; writes at
/// every level land on each, and the exchange, comparing slot digests across the differently
/// split replicas, heals a wiped master of the 4-master cluster and then the wiped server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharded_differently_serve_and_heal() {
    const SHAPE: [usize; 3] = [3, 4, 0];
    let tc = TestCluster::start_shaped(&SHAPE, |c| {
        c.sync.in_flight_window_ms = 0;
        // The exchange reads 16,384 slot digests per replica (see above).
        c.timeouts.node_ms = 3_000;
        // Only the exchange's own probe sees the wipes.
        c.timeouts.health_interval_ms = 600_000;
    })
    .await;
    let all = keys(200);
    let levels = ["one", "quorum", "all", "linearizable"];
    for (i, key) in all.iter().enumerate() {
        let query = format!("consistency={}", levels[i % levels.len()]);
        let r = tc.put(key, format!("value of {key}"), &query).await;
        assert!(r.status().is_success(), "{key} at {query}: {}", r.status());
    }
    wait_until(
        Duration::from_secs(10),
        "every replica holds every key",
        || shaped_replicas_agree(&tc, &SHAPE, &all),
    )
    .await;
    // Every master of both clusters serves some of the keys.
    for (i, node) in tc.cluster.nodes[..7].iter().enumerate() {
        let mut c = quorumd_testkit::cluster::direct(&node.url()).await;
        let n: i64 = command(&mut c, &["DBSIZE"]).await;
        assert!(n > 0, "master {i} holds nothing");
    }
    for (i, key) in all.iter().enumerate().step_by(7) {
        let query = format!("consistency={}", levels[i % levels.len()]);
        let r = tc.get(key, &query).await;
        assert_eq!(r.status(), StatusCode::OK, "{key} at {query}");
        assert_eq!(r.text().await.unwrap(), format!("value of {key}"));
    }
    // Every master and the server get their sentinel; the replicas are found in sync.
    let first = tc.sweep(SweepMode::Exchange, false).await;
    assert_eq!(first.keys_divergent, 0, "{first:?}");

    // Master 1 of the 4-master cluster loses everything, then the standalone server does.
    for (wiped, replica) in [(4, 1), (7, 2)] {
        let before = tc.app().sweeper().status().totals;
        let mut c = tc.direct(wiped).await;
        let _: () = command(&mut c, &["FLUSHALL"]).await;
        assert!(!shaped_replicas_agree(&tc, &SHAPE, &all).await);
        tc.sweep(SweepMode::Exchange, false).await;
        let after = tc.app().sweeper().status().totals;
        let repaired: Vec<u64> = (0..3)
            .map(|r| after.keys_repaired_per_node[r] - before.keys_repaired_per_node[r])
            .collect();
        let copied = after.buckets_copied - before.buckets_copied;
        let only_there = (0..3).all(|r| r == replica || repaired[r] == 0);
        assert!(
            (repaired[replica] > 0 || copied > 0) && only_there,
            "server {wiped}: repaired {repaired:?}, buckets copied {copied}"
        );
        assert!(
            shaped_replicas_agree(&tc, &SHAPE, &all).await,
            "server {wiped} healed"
        );
        let again = tc.sweep(SweepMode::Exchange, true).await;
        assert_eq!(again.keys_divergent, 0, "after healing {wiped}: {again:?}");
    }
    tc.shutdown().await;
}
