//! The `slot` placement on standalone nodes: every key's metadata and digests live in the key's
//! Redis Cluster hash slot, and reads, writes, the exchange, the full sweep and CRDTs work over
//! it as over the `xxh3` placement. A node of the other placement is refused.

use quorumd::app::App;
use quorumd::layout::{Layout, Scheme, key_slot};
use quorumd::sync::SweepMode;
use quorumd_testkit::cluster::{self as common, TestCluster, command, wait_until};
use std::time::Duration;

fn slot_placement(c: &mut quorumd::config::Config) {
    c.placement = Scheme::Slot;
}

fn layout_of(tc: &TestCluster) -> Layout {
    tc.app().store().settings().layout.clone()
}

/// Every node's copy of `key`: its value and its metadata's version.
async fn copies(tc: &TestCluster, key: &str) -> Vec<(Option<Vec<u8>>, Option<String>)> {
    let mut out = Vec::new();
    for i in 0..tc.cluster.nodes.len() {
        let meta = tc.raw_meta(i, key.as_bytes()).await;
        out.push((
            tc.raw_value(i, key.as_bytes()).await,
            meta.map(|m| m.version.encode()),
        ));
    }
    out
}

#[tokio::test]
async fn keys_metadata_and_digests_live_in_the_keys_slot() {
    let tc = TestCluster::start_with(3, slot_placement).await;
    let layout = layout_of(&tc);
    assert_eq!(layout.buckets, 16384);
    let mut c = tc.direct(0).await;
    let marker: std::collections::HashMap<String, String> =
        command(&mut c, &["HGETALL", &common::reserved_key("layout")]).await;
    assert_eq!(marker["placement"], "slot");
    assert_eq!(marker["buckets"], "16384");

    for level in ["one", "quorum", "all"] {
        let key = format!("{{user:{level}}}:profile");
        let r = tc
            .put(&key, format!("v-{level}"), &format!("consistency={level}"))
            .await;
        assert!(r.status().is_success(), "{level}: {}", r.status());
        let r = tc.get(&key, &format!("consistency={level}")).await;
        assert_eq!(r.text().await.unwrap(), format!("v-{level}"));

        let slot = key_slot(key.as_bytes());
        let loc = tc.app().store().locate(key.as_bytes()).unwrap();
        assert_eq!(loc.bucket, slot);
        for reserved in [&loc.meta_key, &loc.digest_key, &loc.sub_digest_key] {
            assert_eq!(key_slot(reserved.as_bytes()), slot, "{reserved}");
        }
        // The entry is where the layout says, and the slot's digest is its entry hash.
        let raw: Vec<u8> = command(&mut c, &["HGET", &loc.meta_key, &key]).await;
        let meta = quorumd::meta::Meta::parse(&raw).unwrap();
        let digest: u64 = command(&mut c, &["HGET", &loc.digest_key, &slot.to_string()]).await;
        assert_eq!(digest, meta.entry_hash, "{level}");
        let sub: u64 = command(&mut c, &["HGET", &loc.sub_digest_key, &loc.sub.to_string()]).await;
        assert_eq!(sub, meta.entry_hash, "{level}");
    }
    assert!(
        tc.delete("{user:one}:profile", "")
            .await
            .status()
            .is_success()
    );
    assert_eq!(tc.get("{user:one}:profile", "").await.status(), 404);
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_heals_and_a_direct_change_is_scrubbed() {
    let mut tc = TestCluster::start_with(3, |c| {
        slot_placement(c);
        // These writes are settled: the exchange may repair them at once.
        c.sync.in_flight_window_ms = 0;
    })
    .await;
    let keys: Vec<String> = (0..300).map(|i| format!("k:{i}")).collect();
    for k in &keys {
        assert!(
            tc.put(k, format!("value of {k}"), "")
                .await
                .status()
                .is_success()
        );
    }
    tc.cluster.nodes[2].restart_empty().unwrap();
    // Marked recovering at the first probe; that starts an exchange, which heals it.
    tc.wait_health(2, "recovering").await;
    wait_until(Duration::from_secs(60), "node 2 back in sync", || async {
        tc.health(2).await == "up"
    })
    .await;
    let report = tc.app().sweeper().status().last_exchange.unwrap();
    assert_eq!(report.keys_repaired_per_node[2], 300, "{report:?}");
    assert!(report.buckets_copied > 0, "{report:?}");
    for k in &keys {
        let all = copies(&tc, k).await;
        assert!(all[0].0.is_some(), "{k} on node 0");
        assert!(all.iter().all(|c| c == &all[0]), "{k}: {all:?}");
    }
    // The digests agree everywhere again: a second exchange finds nothing.
    let again = tc.sweep(SweepMode::Exchange, true).await;
    assert_eq!(again.keys_divergent, 0, "{again:?}");

    // Changed on one node behind quorumd's back: the full sweep's scrub adopts it everywhere.
    let mut c1 = tc.direct(1).await;
    let _: () = command(&mut c1, &["SET", "k:7", "edited on node 1"]).await;
    let full = tc.sweep(SweepMode::Full, false).await;
    assert!(full.direct_changes.values().sum::<u64>() >= 1, "{full:?}");
    wait_until(Duration::from_secs(10), "the edit everywhere", || async {
        let all = copies(&tc, "k:7").await;
        all.iter()
            .all(|(v, _)| v.as_deref() == Some(&b"edited on node 1"[..]))
    })
    .await;
    tc.shutdown().await;
}

#[tokio::test]
async fn crdt_state_lives_in_the_keys_slot() {
    let tc = TestCluster::start_with(3, slot_placement).await;
    let url = format!("{}/v1/counters/%7Bhits%7D:home", tc.base);
    for _ in 0..3 {
        let r = tc
            .http
            .post(&url)
            .json(&serde_json::json!({ "delta": 2 }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
    let body = common::get_json(&tc.http, &url).await;
    assert_eq!(body["value"], 6, "{body}");
    let state = layout_of(&tc).state_key(b"{hits}:home");
    assert_eq!(key_slot(&state), key_slot(b"{hits}:home"));
    let mut c = tc.direct(0).await;
    let exists: u64 = redis::cmd("EXISTS")
        .arg(&state)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(exists, 1, "{}", String::from_utf8_lossy(&state));
    // The scrub's state check finds each node's state under this name: nothing reported.
    let r = tc.sweep(SweepMode::Full, true).await;
    assert_eq!(r.entries_scrubbed, 3, "{r:?}");
    assert_eq!(r.direct_changes.values().sum::<u64>(), 0, "{r:?}");
    tc.shutdown().await;
}

#[tokio::test]
async fn a_node_of_the_other_placement_is_refused() {
    let mut tc = TestCluster::start(3).await;
    assert!(tc.put("a", "1", "").await.status().is_success());
    tc.stop_service().await;
    let mut cfg = common::test_config(tc.cluster.urls());
    cfg.placement = Scheme::Slot;
    let e = match App::start(cfg.validate().unwrap()).await {
        Ok(app) => {
            app.shutdown().await.unwrap();
            panic!("quorumd started with the slot placement on nodes of the xxh3 one")
        }
        Err(e) => e.to_string(),
    };
    assert!(e.contains("placement is xxh3"), "{e}");
    assert!(e.contains("this configuration's is slot"), "{e}");
    assert!(e.contains("full sweep"), "{e}");
}
