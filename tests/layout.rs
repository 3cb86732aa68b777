//! The layout marker: quorumd refuses nodes whose metadata has another layout, naming the
//! difference and the way out, and `convert` turns entry formats 1 and 2 into format 3 in place.

use quorumd::content::Content;
use quorumd::meta::Meta;
use quorumd::sync::SweepMode;
use quorumd_testkit::cluster::{self as common, TestCluster, command, wait_until};
use quorumd_testkit::old_formats::text_entry;
use std::time::Duration;

async fn start_error(tc: &TestCluster) -> String {
    common::start_refused(common::test_config(tc.cluster.urls())).await
}

/// Waits until every node holds the same metadata entry for each of `keys`: a write is
/// acknowledged before the last node applies it, and the tests read the nodes' entries.
async fn settled(tc: &TestCluster, keys: &[impl AsRef<str>]) {
    wait_until(
        Duration::from_secs(5),
        "every write on every node",
        || async {
            for k in keys {
                let first = tc.raw_meta(0, k.as_ref().as_bytes()).await;
                if first.is_none() {
                    return false;
                }
                for i in 1..tc.cluster.nodes.len() {
                    if tc.raw_meta(i, k.as_ref().as_bytes()).await != first {
                        return false;
                    }
                }
            }
            true
        },
    )
    .await;
}

#[tokio::test]
async fn a_node_of_another_bucket_count_is_refused_with_the_difference_named() {
    let mut tc = TestCluster::start(3).await;
    let layout = common::reserved_key("layout");
    let mut c = tc.direct(1).await;
    let marked: std::collections::HashMap<String, String> =
        command(&mut c, &["HGETALL", &layout]).await;
    assert_eq!(marked["format"], "3");
    assert_eq!(marked["buckets"], "4096");
    tc.stop_service().await;
    let _: () = command(&mut c, &["HSET", &layout, "buckets", "1024"]).await;
    let e = start_error(&tc).await;
    assert!(e.contains("buckets is 1024"), "{e}");
    assert!(e.contains("this configuration's is 4096"), "{e}");
    assert!(
        e.contains(&tc.cluster.nodes[1].url()) || e.contains("127.0.0.1"),
        "{e}"
    );
}

#[tokio::test]
async fn format_one_is_refused_and_converts_in_place() {
    an_old_format_is_refused_and_converts_in_place(1).await;
}

#[tokio::test]
async fn format_two_is_refused_and_converts_in_place() {
    an_old_format_is_refused_and_converts_in_place(2).await;
}

async fn an_old_format_is_refused_and_converts_in_place(format: u8) {
    let mut tc = TestCluster::start(3).await;
    for (k, v) in [("f:a", "alpha"), ("f:b", "beta")] {
        assert!(tc.put(k, v, "").await.status().is_success());
    }
    assert!(tc.delete("f:b", "").await.status().is_success());
    for i in 0..3 {
        let mut c = tc.direct(i).await;
        let _: () = command(&mut c, &["HSET", "f:h", "x", "1"]).await;
    }
    assert_eq!(tc.sweep(SweepMode::Full, false).await.keys_adopted, 1);
    // A value with a TTL, so the expiry's conversion is checked too.
    let r = tc.put("f:t", "timed", "ttl_ms=100000000").await;
    assert!(r.status().is_success());
    // A CRDT, whose entry's version is its state's hash.
    let r = tc.counter_add("f:c", 5).await;
    assert!(r.status().is_success(), "{:?}", r.text().await);
    let keys = ["f:a", "f:b", "f:h", "f:t", "f:c"];
    // Node 0's entries stand for every node's below.
    settled(&tc, &keys).await;
    let mut before: Vec<Meta> = Vec::new();
    for k in keys {
        before.push(tc_meta(&tc, 0, k).await);
    }
    assert!(before[3].expires_at_ms.is_some());
    assert!(before[4].kind.crdt().is_some());
    tc.stop_service().await;
    // Back to the old format: text entries, and format 1 has no marker.
    let store_keys: Vec<(String, String)> = keys
        .iter()
        .map(|k| (meta_key_of(k), k.to_string()))
        .collect();
    for i in 0..3 {
        let mut c = tc.direct(i).await;
        for (mkey, key) in &store_keys {
            let e: Vec<u8> = command(&mut c, &["HGET", mkey, key]).await;
            let old = text_entry(&Meta::parse(&e).unwrap(), format);
            let _: () = command(&mut c, &["HSET", mkey, key, &old]).await;
        }
        let layout = common::reserved_key("layout");
        if format == 1 {
            let _: () = command(&mut c, &["DEL", &layout]).await;
        } else {
            let _: () = command(&mut c, &["HSET", &layout, "format", "2"]).await;
        }
    }
    let e = start_error(&tc).await;
    assert!(e.contains(&format!("entry format {format}")), "{e}");
    assert!(e.contains("quorumd convert"), "{e}");

    let report = common::convert(common::test_config(tc.cluster.urls())).await;
    assert_eq!(report.nodes_converted.len(), 3);
    assert_eq!(report.entries_converted, 15);

    tc.relaunch(common::test_config(tc.cluster.urls())).await;
    for (k, want) in keys.iter().zip(&before) {
        for i in 0..3 {
            assert_eq!(&tc_meta(&tc, i, k).await, want, "{k} on node {i}");
        }
    }
    assert_eq!(before[0].content, Content::string(b"alpha"));
    assert_eq!(before[1].content, Content::Absent);
    let r = tc.sweep(SweepMode::Full, true).await;
    assert_eq!(r.direct_changes.values().sum::<u64>(), 0, "{r:?}");
    assert_eq!(r.divergence_left(), 0, "{r:?}");
    tc.shutdown().await;
}

fn meta_key_of(key: &str) -> String {
    let layout = common::default_layout();
    let p = layout.place(key.as_bytes());
    layout.meta_key(p.bucket, p.sub)
}

async fn tc_meta(tc: &TestCluster, i: usize, key: &str) -> Meta {
    let mut c = tc.direct(i).await;
    let raw: Vec<u8> = command(&mut c, &["HGET", &meta_key_of(key), key]).await;
    Meta::parse(&raw).unwrap()
}

/// Entry format 3 keeps a metadata hash in Redis's compact listpack encoding, whose values
/// may be at most 64 bytes by default: format 2's text entries (about 80 bytes) made every
/// hash a hash table, at about three times the memory per key.
#[tokio::test]
async fn metadata_hashes_stay_compact() {
    let tc = TestCluster::start(3).await;
    let keys: Vec<String> = (0..40).map(|i| format!("compact:{i:02}")).collect();
    for (i, k) in keys.iter().enumerate() {
        // Values with and without a TTL (the longest entries), and tombstones.
        let query = if i % 2 == 0 { "ttl_ms=100000000" } else { "" };
        assert!(
            tc.put(k, vec![b'v'; 200], query)
                .await
                .status()
                .is_success()
        );
        if i % 5 == 0 {
            assert!(tc.delete(k, "").await.status().is_success());
        }
    }
    // Every node's metadata hashes are inspected below.
    settled(&tc, &keys).await;
    for i in 0..3 {
        let mut c = tc.direct(i).await;
        for k in &keys {
            let enc: String = command(&mut c, &["OBJECT", "ENCODING", &meta_key_of(k)]).await;
            assert_eq!(enc, "listpack", "{k}'s metadata hash on node {i}");
        }
    }
    tc.shutdown().await;
}

/// Lowering `sub_buckets` is refused at start, naming `quorumd convert`, which merges every
/// node's sub-buckets in place: afterwards each entry sits in its new sub-bucket unchanged,
/// the bucket digests are the same, the merged sub-digests are exact and a full sweep finds
/// nothing to do. Raising it is refused, with no conversion offered.
#[tokio::test]
async fn fewer_sub_buckets_are_refused_then_merged_in_place() {
    let mut tc = TestCluster::start(3).await;
    let before_layout = common::default_layout();
    assert_eq!(before_layout.sub_buckets, 16);
    let keys: Vec<String> = (0..60).map(|i| format!("sb:{i:02}")).collect();
    for k in &keys {
        assert!(tc.put(k, format!("v-{k}"), "").await.status().is_success());
    }
    assert!(tc.delete(&keys[0], "").await.status().is_success());
    let r = tc.put(&keys[1], "timed", "ttl_ms=100000000").await;
    assert!(r.status().is_success());
    // Node 0's entries stand for every node's below.
    settled(&tc, &keys).await;
    let mut metas = Vec::new();
    for k in &keys {
        metas.push(tc_meta(&tc, 0, k).await);
    }
    let mut digests = Vec::new();
    for i in 0..3 {
        digests.push(common::bucket_digests(&mut tc.direct(i).await).await);
    }
    tc.stop_service().await;

    let mut cfg = common::test_config(tc.cluster.urls());
    cfg.sub_buckets = 4;
    let e = common::start_refused(cfg.clone()).await;
    assert!(e.contains("in 16 sub-buckets per bucket"), "{e}");
    assert!(e.contains("sub_buckets is 4"), "{e}");
    assert!(e.contains("quorumd convert"), "{e}");

    let report = common::convert(cfg.clone()).await;
    let merged = keys
        .iter()
        .filter(|k| before_layout.place(k.as_bytes()).sub >= 4)
        .count() as u64;
    assert!(merged > 0, "some key must have been in a merged sub-bucket");
    assert_eq!(report.nodes_converted.len(), 3, "{report:?}");
    assert_eq!(report.entries_converted, 0, "{report:?}");
    assert_eq!(report.entries_moved, 3 * merged, "{report:?}");
    let after_layout = quorumd::layout::Layout {
        sub_buckets: 4,
        ..before_layout.clone()
    };
    for (i, digests_before) in digests.iter().enumerate() {
        let mut c = tc.direct(i).await;
        for (k, want) in keys.iter().zip(&metas) {
            let old = before_layout.place(k.as_bytes());
            let new = after_layout.place(k.as_bytes());
            assert_eq!(new.sub, old.sub % 4);
            let raw: Vec<u8> = command(
                &mut c,
                &["HGET", &after_layout.meta_key(new.bucket, new.sub), k],
            )
            .await;
            assert_eq!(&Meta::parse(&raw).unwrap(), want, "{k} on node {i}");
            if old.sub >= 4 {
                let left: bool = command(
                    &mut c,
                    &["EXISTS", &before_layout.meta_key(old.bucket, old.sub)],
                )
                .await;
                assert!(!left, "{k}'s old metadata hash is still on node {i}");
            }
        }
        assert_eq!(
            &common::bucket_digests(&mut c).await,
            digests_before,
            "node {i}"
        );
    }
    let again = common::convert(cfg.clone()).await;
    assert!(again.nodes_converted.is_empty(), "{again:?}");
    assert_eq!(again.entries_moved, 0, "{again:?}");

    tc.relaunch(cfg.clone()).await;
    for k in &keys[2..] {
        let r = tc.get(k, "").await;
        assert_eq!(r.text().await.unwrap(), format!("v-{k}"));
    }
    let full = tc.sweep(SweepMode::Full, false).await;
    assert_eq!(
        full.digests_rebuilt, 0,
        "the merged sub-digests are exact: {full:?}"
    );
    assert_eq!(full.divergence_left(), 0, "{full:?}");
    assert_eq!(full.direct_changes.values().sum::<u64>(), 0, "{full:?}");

    // More sub-buckets would need every key's hash: refused, without a conversion offered.
    tc.stop_service().await;
    cfg.sub_buckets = 8;
    let e = common::start_refused(cfg).await;
    assert!(e.contains("sub_buckets is 4"), "{e}");
    assert!(e.contains("this configuration's is 8"), "{e}");
    assert!(!e.contains("quorumd convert"), "{e}");
    tc.shutdown().await;
}

/// Asserts that the node behind `c` carries this build's layout marker.
async fn assert_marked(c: &mut redis::aio::MultiplexedConnection, layout: &str) {
    let marked: std::collections::HashMap<String, String> = command(c, &["HGETALL", layout]).await;
    assert_eq!(
        marked.get("format").map(String::as_str),
        Some("3"),
        "{marked:?}"
    );
}

/// Writes `n` keys `{prefix}:{i}` at `all` and waits until every node holds their entries.
async fn written_everywhere(tc: &TestCluster, prefix: &str, n: usize) {
    let keys: Vec<String> = (0..n).map(|i| format!("{prefix}:{i}")).collect();
    for k in &keys {
        let r = tc.put(k, "v", "consistency=all").await;
        assert!(r.status().is_success(), "PUT {k}: {}", r.status());
    }
    settled(tc, &keys).await;
}

/// A node restarted empty loses its layout marker with its data; the heal writes its metadata
/// back, and with it the marker, so that the next start of quorumd accepts the node (it used
/// to refuse it as "entry format 1", metadata without a marker).
#[tokio::test]
async fn a_wiped_node_gets_its_marker_back_with_its_heal() {
    // Writes younger than the in-flight window are left to their own fan-out by the exchange.
    let mut tc = TestCluster::start_with(3, |c| c.sync.in_flight_window_ms = 100).await;
    let layout = common::reserved_key("layout");
    written_everywhere(&tc, "wiped", 50).await;
    // The loss is marked at the next probe; a fast heal can end `recovering` before a
    // status read sees it, so the loss counter is what tells it was seen.
    let losses = tc.app().store().pool().node(1).losses_marked();
    tc.cluster.nodes[1].restart_empty().unwrap();
    // The tests' configuration runs no periodic exchange; the one the recovery starts may
    // still be running (AlreadyRunning) when the next is asked for.
    wait_until(Duration::from_secs(30), "node 1 healed", || async {
        let _ = tc.try_sweep(SweepMode::Exchange, false).await;
        tc.app().store().pool().node(1).losses_marked() > losses && tc.health(1).await == "up"
    })
    .await;
    assert!(
        tc.raw_meta(1, b"wiped:7").await.is_some(),
        "healed metadata"
    );
    let mut c = tc.direct(1).await;
    assert_marked(&mut c, &layout).await;
    let cfg = common::test_config(tc.cluster.urls());
    tc.relaunch(cfg).await;
    assert_eq!(tc.get("wiped:7", "").await.status(), 200);
    tc.shutdown().await;
}

/// A node whose metadata is of this layout but whose marker is missing (healed by a build that
/// did not write it back) is marked at start, not refused; one whose unmarked metadata sits in
/// other hashes (another bucket count) is still refused.
#[tokio::test]
async fn unmarked_metadata_of_this_layout_is_marked_at_start_and_another_is_refused() {
    let mut tc = TestCluster::start(3).await;
    let layout = common::reserved_key("layout");
    written_everywhere(&tc, "unmarked", 200).await;
    tc.stop_service().await;
    for i in 0..3 {
        let _: () = command(&mut tc.direct(i).await, &["DEL", &layout]).await;
    }
    let mut c = tc.direct(2).await;
    // Another bucket count places the same keys in other hashes: not this layout's.
    let mut other = common::test_config(tc.cluster.urls());
    other.buckets = 1024;
    let e = common::start_refused(other).await;
    assert!(e.contains("entry format 1"), "{e}");
    let exists: i64 = command(&mut c, &["EXISTS", &layout]).await;
    assert_eq!(exists, 0, "a refused start writes no marker");
    // And the marker is what tells the layout: unmarked, this configuration's start must not
    // have taken the other's word for it.
    tc.relaunch(common::test_config(tc.cluster.urls())).await;
    assert_marked(&mut c, &layout).await;
    assert_eq!(tc.get("unmarked:3", "").await.status(), 200);
    tc.shutdown().await;
}
