//! The `slot` placement on standalone nodes: every key's metadata and digests live in the key's
//! Redis Cluster hash slot, and reads, writes, the exchange, the full sweep and CRDTs work over
//! it as over the `xxh3` placement. A node of the other placement is refused.

use quorumd::calls;
use quorumd::layout::{DigestKeys, Layout, Scheme, key_slot};
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

/// Waits until every node holds the same copy (value and version) of each of `keys`: a write
/// is acknowledged before the last nodes apply it.
async fn settled(tc: &TestCluster, keys: &[String]) {
    wait_until(
        Duration::from_secs(10),
        "every write on every node",
        || async {
            for k in keys {
                let all = copies(tc, k).await;
                if all.iter().any(|c| c != &all[0]) {
                    return false;
                }
            }
            true
        },
    )
    .await;
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
        // Node 0, read below, and the one node a read at `one` asks may not have the write
        // yet (at `one` or `quorum`): wait for it on every node.
        settled(&tc, std::slice::from_ref(&key)).await;
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
        let ty: String = command(&mut c, &["TYPE", &loc.digest_key]).await;
        assert_eq!(ty, "string", "{level}");
        let digest: u64 = command(&mut c, &["GET", &loc.digest_key]).await;
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
    // A write is acknowledged before the last node applies it: one still on its way to node 2
    // would be lost with the restart and come back by a hint, not by the exchange counted
    // below. Node 2 holds every write before it restarts.
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    wait_until(Duration::from_secs(10), "every write on node 2", || async {
        let held: Vec<Option<String>> = command(&mut tc.direct(2).await, &mget).await;
        held.iter()
            .zip(&keys)
            .all(|(v, k)| v.as_deref() == Some(format!("value of {k}").as_str()))
    })
    .await;
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

/// What a slot's bucket digest must be on node `i`: the sum of its entry hashes, mod 2^48.
async fn slot_digest_from_entries(tc: &TestCluster, i: usize, slot: u32) -> u64 {
    let mut c = tc.direct(i).await;
    let mut sum = 0u64;
    for mkey in layout_of(tc).bucket_meta_keys(slot) {
        let entries: Vec<(Vec<u8>, Vec<u8>)> = command(&mut c, &["HGETALL", &mkey]).await;
        for (_, raw) in entries {
            let meta = quorumd::meta::Meta::parse(&raw).unwrap();
            sum = (sum + meta.entry_hash) % quorumd::digest::DIGEST_MODULUS;
        }
    }
    sum
}

/// Under `slot` a bucket digest is a string of its own (the exchange reads a server's 16,384 of
/// them with a few `MGET`s): after writes, tombstones and CRDT merges each touched slot's
/// digest is a string whose value mod 2^48 is the sum of its entry hashes, which is what the
/// exchange reads; and an exchange finds and repairs a slot that diverged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_digests_are_strings_that_the_exchange_reads_and_repairs() {
    let tc = TestCluster::start_with(3, |c| {
        slot_placement(c);
        c.sync.in_flight_window_ms = 0;
    })
    .await;
    let layout = layout_of(&tc);
    // Several keys per slot (a shared tag), and keys of slots of their own.
    let keys: Vec<String> = (0..20)
        .map(|i| format!("{{same}}:{i}"))
        .chain((0..20).map(|i| format!("own:{i}")))
        .collect();
    let counter = "{ctr}:hits";
    for k in &keys {
        assert!(tc.put(k, format!("v {k}"), "").await.status().is_success());
    }
    assert!(tc.delete("{same}:3", "").await.status().is_success());
    let r = tc.counter_add("%7Bctr%7D:hits", 2).await;
    assert!(r.status().is_success(), "{}", r.status());
    let mut slots: Vec<u32> = keys
        .iter()
        .map(|k| key_slot(k.as_bytes()))
        .chain([key_slot(counter.as_bytes())])
        .collect();
    slots.sort_unstable();
    slots.dedup();
    let store = tc.app().store().clone();
    // The writes are acknowledged before the last node applies them: wait until every node
    // holds them all, the same digest for every written slot.
    wait_until(
        Duration::from_secs(10),
        "every write on every node",
        || async {
            let (keys, mut read) = (layout.digest_keys(), Vec::new());
            for i in 0..3 {
                let node = store.pool().node(i);
                read.push(calls::sync::digests(node, &keys).await.unwrap());
            }
            read[0].len() == slots.len() && read.iter().all(|d| *d == read[0])
        },
    )
    .await;
    for i in 0..3 {
        let mut c = tc.direct(i).await;
        let read = calls::sync::digests(store.pool().node(i), &layout.digest_keys())
            .await
            .unwrap();
        assert_eq!(read.len(), slots.len(), "node {i}: {read:?}");
        for &slot in &slots {
            let key = layout.digest_key(slot);
            let ty: String = command(&mut c, &["TYPE", &key]).await;
            assert_eq!(ty, "string", "node {i}, {key}");
            let stored: i64 = command(&mut c, &["GET", &key]).await;
            let want = slot_digest_from_entries(&tc, i, slot).await;
            assert_ne!(want, 0, "node {i}, {key}");
            assert_eq!(
                stored.rem_euclid(quorumd::digest::DIGEST_MODULUS as i64) as u64,
                want,
                "node {i}, {key}"
            );
            assert_eq!(read[&slot], want, "node {i}, {key}");
        }
    }
    let idle = tc.sweep(SweepMode::Exchange, true).await;
    assert_eq!(idle.buckets_mismatched, 0, "{idle:?}");

    // One slot diverges: node 2 loses it whole (value, metadata and digests), so its digest is
    // missing there, and the exchange copies the slot back.
    let slot = key_slot(b"{same}:1");
    let want = slot_digest_from_entries(&tc, 0, slot).await;
    let mut c2 = tc.direct(2).await;
    let mut lost: Vec<String> = (0..20).map(|i| format!("{{same}}:{i}")).collect();
    lost.extend(layout.bucket_meta_keys(slot));
    lost.push(layout.digest_key(slot));
    lost.push(layout.sub_digest_key(slot));
    let mut del = redis::cmd("DEL");
    del.arg(&lost);
    let _: u64 = del.query_async(&mut c2).await.unwrap();
    let found = tc.sweep(SweepMode::Exchange, false).await;
    assert_eq!(found.buckets_mismatched, 1, "{found:?}");
    assert_eq!(found.buckets_repaired, 1, "{found:?}");
    assert_eq!(found.keys_repaired_per_node[2], 20, "{found:?}");
    assert_eq!(
        tc.raw_value(2, b"{same}:1").await.as_deref(),
        Some(&b"v {same}:1"[..])
    );
    let ty: String = command(&mut c2, &["TYPE", &layout.digest_key(slot)]).await;
    assert_eq!(ty, "string");
    let stored: u64 = command(&mut c2, &["GET", &layout.digest_key(slot)]).await;
    assert_eq!(stored, want);
    assert_eq!(slot_digest_from_entries(&tc, 2, slot).await, want);
    let again = tc.sweep(SweepMode::Exchange, true).await;
    assert_eq!(again.buckets_mismatched, 0, "{again:?}");
    // The full sweep's rebuild reads the strings: it finds them right, and fixes one that
    // drifted, as a string.
    let full = tc.sweep(SweepMode::Full, false).await;
    assert_eq!(full.digests_rebuilt, 0, "{full:?}");
    let drifted = layout.digest_key(key_slot(b"own:5"));
    let _: () = command(&mut c2, &["INCRBY", &drifted, "12345"]).await;
    let full = tc.sweep(SweepMode::Full, false).await;
    assert_eq!(full.digests_rebuilt, 1, "{full:?}");
    let ty: String = command(&mut c2, &["TYPE", &drifted]).await;
    assert_eq!(ty, "string");
    let fixed: u64 = command(&mut c2, &["GET", &drifted]).await;
    assert_eq!(
        fixed,
        slot_digest_from_entries(&tc, 2, key_slot(b"own:5")).await
    );
    tc.shutdown().await;
}

/// `convert_slot_digests` turns the one-field digest hashes written before digests were
/// strings into strings of the same value, in place: the exchange then reads the same digests
/// as before, and a second run converts nothing.
#[tokio::test]
async fn slot_digest_hashes_are_converted_to_strings_in_place() {
    let tc = TestCluster::start_with(3, slot_placement).await;
    let layout = layout_of(&tc);
    let keys: Vec<String> = (0..30).map(|i| format!("c:{i}")).collect();
    for k in &keys {
        assert!(tc.put(k, "v", "").await.status().is_success());
    }
    // Node 0's digests are read and rewritten below, and the exchange compares every node's:
    // no write may still be on its way to a node.
    settled(&tc, &keys).await;
    let store = tc.app().store().clone();
    let node = store.pool().node(0);
    let DigestKeys::Strings(all) = layout.digest_keys() else {
        panic!("slot digests are strings")
    };
    let before = calls::sync::digests(node, &layout.digest_keys())
        .await
        .unwrap();
    // Back to the old form: each written slot's digest as the one field of a hash, one of
    // them an int64 grown past 2^48 (a digest is the stored value mod 2^48).
    let mut c = tc.direct(0).await;
    let mut old = 0;
    for (slot, digest) in &before {
        let key = layout.digest_key(*slot);
        let stored = if old == 0 {
            digest + 5 * quorumd::digest::DIGEST_MODULUS
        } else {
            *digest
        };
        let _: () = command(&mut c, &["DEL", &key]).await;
        let _: () = command(
            &mut c,
            &["HSET", &key, &slot.to_string(), &stored.to_string()],
        )
        .await;
        old += 1;
    }
    assert!(old >= 20, "{old} slots written");
    let converted = calls::layout::convert_slot_digests(node, &all)
        .await
        .unwrap();
    assert_eq!(converted, old);
    for slot in before.keys() {
        let ty: String = command(&mut c, &["TYPE", &layout.digest_key(*slot)]).await;
        assert_eq!(ty, "string");
    }
    let after = calls::sync::digests(node, &layout.digest_keys())
        .await
        .unwrap();
    assert_eq!(after, before);
    assert_eq!(
        calls::layout::convert_slot_digests(node, &all)
            .await
            .unwrap(),
        0
    );
    // Writes after the conversion grow the strings.
    assert!(tc.put("c:0", "again", "").await.status().is_success());
    // On every node before the exchange compares them.
    settled(&tc, &keys[..1]).await;
    let idle = tc.sweep(SweepMode::Exchange, true).await;
    assert_eq!(idle.buckets_mismatched, 0, "{idle:?}");
    // A hash of more than one field is not a digest of this layout: refused.
    let odd = layout.digest_key(key_slot(b"odd"));
    let _: () = command(&mut c, &["HSET", &odd, "1", "2", "3", "4"]).await;
    assert!(
        calls::layout::convert_slot_digests(node, &[odd])
            .await
            .is_err()
    );
    tc.shutdown().await;
}

#[tokio::test]
async fn crdt_state_lives_in_the_keys_slot() {
    let tc = TestCluster::start_with(3, slot_placement).await;
    let url = format!("{}/v1/counters/%7Bhits%7D:home", tc.base);
    for _ in 0..3 {
        let r = tc.counter_add("%7Bhits%7D:home", 2).await;
        assert!(r.status().is_success(), "{}", r.status());
    }
    let body = common::get_json(&tc.http, &url).await;
    assert_eq!(body["value"], 6, "{body}");
    // The adds are acknowledged before the last node applies them; node 0 is read and every
    // node scrubbed below. Wait for the counter's value on every node.
    wait_until(
        Duration::from_secs(5),
        "the counter on every node",
        || async {
            for i in 0..3 {
                if tc.raw_value(i, b"{hits}:home").await.as_deref() != Some(&b"6"[..]) {
                    return false;
                }
            }
            true
        },
    )
    .await;
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
    let e = common::start_refused(cfg).await;
    assert!(e.contains("placement is xxh3"), "{e}");
    assert!(e.contains("this configuration's is slot"), "{e}");
    assert!(e.contains("full sweep"), "{e}");
}

/// A node written by a build of entry format 2 under the slot placement (text entries, each
/// slot's digest a one-field hash) is refused at start, and `quorumd convert` takes both to
/// format 3 in place: the same metadata, digests the exchange reads as before.
#[tokio::test]
async fn a_format_two_slot_node_is_refused_and_converts_in_place() {
    // Written as format 2 wrote it: 16 sub-buckets, the default then; the conversion also
    // merges them into this build's default of 4 under `slot`.
    let mut tc = TestCluster::start_with(3, |c| {
        slot_placement(c);
        c.sub_buckets = 16;
    })
    .await;
    let layout = layout_of(&tc);
    assert_eq!(layout.sub_buckets, 16);
    let keys: Vec<String> = (0..24).map(|i| format!("f2:{i}")).collect();
    for k in &keys {
        assert!(tc.put(k, "v", "").await.status().is_success());
    }
    assert!(tc.delete(&keys[0], "").await.status().is_success());
    // Node 0's entries are written to every node below: no write may still be on its way.
    settled(&tc, &keys).await;
    let mut metas = Vec::new();
    for k in &keys {
        metas.push(tc.raw_meta(0, k.as_bytes()).await.expect("metadata"));
    }
    let slots: std::collections::BTreeSet<u32> =
        keys.iter().map(|k| key_slot(k.as_bytes())).collect();
    let digests_before =
        calls::sync::digests(tc.app().store().pool().node(1), &layout.digest_keys())
            .await
            .unwrap();
    tc.stop_service().await;
    for i in 0..3 {
        let mut c = tc.direct(i).await;
        for (k, m) in keys.iter().zip(&metas) {
            let loc = layout.place(k.as_bytes());
            let text = quorumd_testkit::old_formats::text_entry(m, 2);
            let _: () = command(
                &mut c,
                &["HSET", &layout.meta_key(loc.bucket, loc.sub), k, &text],
            )
            .await;
        }
        for slot in &slots {
            let key = layout.digest_key(*slot);
            let d: String = command(&mut c, &["GET", &key]).await;
            let _: () = command(&mut c, &["DEL", &key]).await;
            let _: () = command(&mut c, &["HSET", &key, &slot.to_string(), &d]).await;
        }
        let _: () = command(
            &mut c,
            &["HSET", &common::reserved_key("layout"), "format", "2"],
        )
        .await;
    }
    let mut cfg = common::test_config(tc.cluster.urls());
    slot_placement(&mut cfg);
    let refused = common::start_refused(cfg.clone()).await;
    assert!(refused.contains("entry format 2"), "{refused}");
    assert!(refused.contains("quorumd convert"), "{refused}");

    let report = common::convert(cfg.clone()).await;
    assert_eq!(report.nodes_converted.len(), 3, "{report:?}");
    assert_eq!(
        report.entries_converted,
        3 * keys.len() as u64,
        "{report:?}"
    );
    assert_eq!(
        report.slot_digests_converted,
        3 * slots.len() as u64,
        "{report:?}"
    );
    let merged = keys
        .iter()
        .filter(|k| layout.place(k.as_bytes()).sub >= 4)
        .count() as u64;
    assert!(merged > 0, "some key must have been in a merged sub-bucket");
    assert_eq!(report.entries_moved, 3 * merged, "{report:?}");
    for i in 0..3 {
        let mut c = tc.direct(i).await;
        for slot in &slots {
            for sub in 4..16 {
                let left: bool = command(&mut c, &["EXISTS", &layout.meta_key(*slot, sub)]).await;
                assert!(!left, "slot {slot} sub-bucket {sub} left on node {i}");
            }
        }
    }

    tc.relaunch(cfg).await;
    for (k, m) in keys.iter().zip(&metas) {
        for i in 0..3 {
            assert_eq!(
                tc.raw_meta(i, k.as_bytes()).await.as_ref(),
                Some(m),
                "{k} on {i}"
            );
        }
    }
    let digests_after =
        calls::sync::digests(tc.app().store().pool().node(1), &layout.digest_keys())
            .await
            .unwrap();
    assert_eq!(digests_after, digests_before);
    let idle = tc.sweep(SweepMode::Exchange, true).await;
    assert_eq!(idle.buckets_mismatched, 0, "{idle:?}");
    let scrub = tc.sweep(SweepMode::Full, true).await;
    assert_eq!(scrub.direct_changes.values().sum::<u64>(), 0, "{scrub:?}");
    // The merged sub-digests are exact: a real full sweep rebuilds none.
    let full = tc.sweep(SweepMode::Full, false).await;
    assert_eq!(full.digests_rebuilt, 0, "{full:?}");
    assert_eq!(full.divergence_left(), 0, "{full:?}");
    tc.shutdown().await;
}
