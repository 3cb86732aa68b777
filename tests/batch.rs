//! Natural batching per node (`store/batch.rs`): concurrent operations share script calls, and
//! each caller still gets exactly its own answer, its own error, and its own deadline.

use quorumd_testkit::cluster as common;
#[allow(dead_code)] // the exposition checker has more than these tests use
#[path = "support/exposition.rs"]
mod exposition;

use common::{TestCluster, wait_until};
use exposition::Scrape;
use quorumd::calls;
use quorumd::calls::store::{ApplyEntry, NodeCondition, Payload, ReadWanted};
use quorumd::hlc::Version;
use quorumd::meta::Meta;
use quorumd::pool::{NodeError, ServerErrorKind};
use quorumd::quorum::Consistency;
use quorumd::store::{Precondition, StoreError, TypedWanted};
use std::time::{Duration, Instant};

/// Calls and entries of node `i`'s lane of `kind` so far (this test's nodes only: the label
/// names the node's port).
async fn batch_counts(tc: &TestCluster, i: usize, kind: &str) -> (f64, f64) {
    let text = common::get_text(&tc.http, &format!("{}/metrics", tc.base)).await;
    let scrape = Scrape::parse(&text).unwrap();
    let node = tc.app().store().pool().node(i).display.clone();
    let labels = [("node", node), ("kind", kind.to_string())];
    let get = |name| scrape.value(name, &labels).unwrap_or(0.0);
    (
        get("quorumd_node_batches_total"),
        get("quorumd_node_batch_entries_total"),
    )
}

/// Writes `value` to `key` through the store, unconditionally and with no TTL.
async fn put(
    store: &quorumd::store::VersionedStore,
    key: &str,
    value: &[u8],
    level: Consistency,
) -> Result<quorumd::store::WriteReceipt, StoreError> {
    store
        .put(key.as_bytes(), value, None, level, Precondition::None)
        .await
}

/// Writes "v" to `key` at `all`, through the store.
async fn put_v_at_all(store: &quorumd::store::VersionedStore, key: &str) {
    put(store, key, b"v", Consistency::All).await.unwrap();
}

fn version(ms: u64) -> Version {
    Version {
        ms,
        counter: 0,
        writer: 7,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_operations_share_node_calls_and_each_caller_gets_its_own_answer() {
    let tc = TestCluster::start(3).await;
    let store = tc.app().store().clone();
    let tcr = &tc;
    let before: Vec<_> = futures::future::join_all((0..3).map(|i| async move {
        (
            batch_counts(tcr, i, "write").await,
            batch_counts(tcr, i, "read").await,
            batch_counts(tcr, i, "typed_read").await,
        )
    }))
    .await;

    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let key = format!("k{i}");
                let value = format!("value of {i}");
                let receipt = put(&store, &key, value.as_bytes(), Consistency::Quorum)
                    .await
                    .expect("write");
                let found = store
                    .get(key.as_bytes(), Consistency::Quorum)
                    .await
                    .expect("read")
                    .expect("present");
                assert_eq!(
                    found.value,
                    value.as_bytes(),
                    "{key}: another caller's value"
                );
                assert!(
                    found.version >= receipt.version,
                    "{key}: older than its own write"
                );
                // EXISTS, TTL and TYPE read this way.
                let typed = store
                    .get_typed(key.as_bytes(), Consistency::Quorum, TypedWanted::TypeOnly)
                    .await
                    .expect("typed read")
                    .expect("present");
                assert_eq!(typed.value.type_name(), "string", "{key}");
                assert!(typed.version >= receipt.version, "{key}: typed read older");
                let missing = format!("absent{i}");
                assert_eq!(
                    store
                        .get(missing.as_bytes(), Consistency::All)
                        .await
                        .unwrap(),
                    None
                );
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }

    for (i, &((wb, we), (rb, re), (tb, te))) in before.iter().enumerate() {
        let (w_calls, w_entries) = batch_counts(&tc, i, "write").await;
        let (r_calls, r_entries) = batch_counts(&tc, i, "read").await;
        let (t_calls, t_entries) = batch_counts(&tc, i, "typed_read").await;
        assert!(
            t_entries - te > t_calls - tb,
            "node {i}: {} typed reads in {} calls, never batched",
            t_entries - te,
            t_calls - tb
        );
        assert!(
            w_entries - we > w_calls - wb,
            "node {i}: {} writes in {} calls, never batched",
            w_entries - we,
            w_calls - wb
        );
        assert!(
            r_entries - re > r_calls - rb,
            "node {i}: {} reads in {} calls, never batched",
            r_entries - re,
            r_calls - rb
        );
    }
    // The writes the callers did not wait for landed too.
    for i in 0..3 {
        wait_until(
            Duration::from_secs(5),
            "every node holds every key",
            || async {
                tc.raw_value(i, b"k299").await.as_deref() == Some(&b"value of 299"[..])
                    && tc.raw_value(i, b"k0").await.as_deref() == Some(&b"value of 0"[..])
            },
        )
        .await;
    }
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_type_on_one_node_fails_only_its_own_entries() {
    let tc = TestCluster::start(3).await;
    let store = tc.app().store().clone();
    for key in ["good1", "wrong", "good2"] {
        put_v_at_all(&store, key).await;
    }
    // Node 0 now holds a list under "wrong", metadata unchanged.
    let mut c0 = tc.direct(0).await;
    let _: () = redis::pipe()
        .cmd("DEL")
        .arg("wrong")
        .cmd("RPUSH")
        .arg("wrong")
        .arg("x")
        .query_async(&mut c0)
        .await
        .unwrap();

    // One call carrying the three reads: only the list fails, with the error a lone read gets.
    let node0 = store.pool().node(0).clone();
    let locs: Vec<_> = ["good1", "wrong", "good2"]
        .iter()
        .map(|k| store.locate(k.as_bytes()).unwrap())
        .collect();
    let reads: Vec<_> = locs.iter().map(|l| (l, ReadWanted::MetaAndValue)).collect();
    let answers = calls::store::read_each(&node0, &reads)
        .await
        .expect("the call itself");
    assert_eq!(answers.len(), 3);
    assert_eq!(
        answers[0].as_ref().unwrap().value.as_deref(),
        Some(&b"v"[..])
    );
    assert!(
        matches!(&answers[1], Err(e) if e.server_kind() == Some(&ServerErrorKind::WrongType)),
        "{:?}",
        answers[1]
    );
    assert_eq!(
        answers[2].as_ref().unwrap().value.as_deref(),
        Some(&b"v"[..])
    );
    let meta_only: Vec<_> = locs.iter().map(|l| (l, ReadWanted::MetaOnly)).collect();
    let metas = calls::store::read_each(&node0, &meta_only).await.unwrap();
    assert!(metas.iter().all(|m| {
        m.as_ref()
            .is_ok_and(|r| r.meta.is_some() && r.value.is_none())
    }));

    // Through the store, concurrently, at `all` (node 0 must answer): batches form on node 0,
    // the good keys succeed in them, and only the list's readers fail, naming node 0.
    let (calls_before, entries_before) = batch_counts(&tc, 0, "read").await;
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let key = ["good1", "wrong", "good2"][i % 3];
                (key, store.get(key.as_bytes(), Consistency::All).await)
            })
        })
        .collect();
    for t in tasks {
        match t.await.unwrap() {
            ("wrong", Err(StoreError::NoQuorum(q))) => {
                assert_eq!(q.failures.len(), 1, "{q}");
                assert_eq!(
                    q.failures[0].cause.server_kind(),
                    Some(&ServerErrorKind::WrongType),
                    "{q}"
                );
                assert_eq!(q.failures[0].node, node0.display);
            }
            ("wrong", other) => panic!("the list's read should fail at node 0: {other:?}"),
            (key, r) => assert_eq!(r.unwrap().unwrap().value, b"v", "{key}"),
        }
    }
    let (calls, entries) = batch_counts(&tc, 0, "read").await;
    assert!(
        entries - entries_before > calls - calls_before,
        "node 0 never carried several reads in one call"
    );
    // At `quorum`, the other two nodes still answer the list's key.
    let found = store.get(b"wrong", Consistency::Quorum).await.unwrap();
    assert_eq!(found.unwrap().value, b"v");

    // Writes: a RESTORE of a corrupt payload fails its own entry; the others apply.
    let locs: Vec<_> = ["w1", "w2", "w3"]
        .iter()
        .map(|k| store.locate(k.as_bytes()).unwrap())
        .collect();
    let metas: Vec<_> = locs
        .iter()
        .map(|l| Meta::for_string(&l.key, version(100), Some(b"w"), None))
        .collect();
    let entries: Vec<_> = (0..3)
        .map(|i| ApplyEntry {
            loc: &locs[i],
            meta: &metas[i],
            payload: if i == 1 {
                Payload::Dump(b"not a dump")
            } else {
                Payload::String(b"w")
            },
            cond: NodeCondition::None,
        })
        .collect();
    let outcomes = calls::store::apply_each(&node0, quorumd::pool::Traffic::Client, &entries)
        .await
        .expect("the call itself");
    assert!(
        outcomes[0].as_ref().is_ok_and(|o| o.changed()),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[1], Err(NodeError::Server(_))),
        "{outcomes:?}"
    );
    assert!(
        outcomes[2].as_ref().is_ok_and(|o| o.changed()),
        "{outcomes:?}"
    );
    assert_eq!(
        tc.raw_meta(0, b"w2").await,
        None,
        "the failed entry wrote no metadata"
    );
    assert_eq!(tc.raw_value(0, b"w3").await.as_deref(), Some(&b"w"[..]));
    // The sweep's all-or-nothing view of the same batch.
    assert!(calls::store::apply(&node0, &entries).await.is_err());
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_of_one_key_in_one_call_keep_the_higher_version() {
    let tc = TestCluster::start(3).await;
    let store = tc.app().store().clone();
    let node0 = store.pool().node(0).clone();
    let loc = store.locate(b"twice").unwrap();
    let write = |ms: u64, value: &'static [u8]| {
        (
            Meta::for_string(&loc.key, version(ms), Some(value), None),
            value,
        )
    };
    for (first, second, want) in [
        (write(20, b"new"), write(10, b"old"), (20, &b"new"[..])),
        (
            write(30, b"older"),
            write(40, b"newest"),
            (40, &b"newest"[..]),
        ),
    ] {
        let entries: Vec<_> = [&first, &second]
            .iter()
            .map(|(meta, value)| ApplyEntry {
                loc: &loc,
                meta,
                payload: Payload::String(value),
                cond: NodeCondition::None,
            })
            .collect();
        calls::store::apply(&node0, &entries).await.unwrap();
        assert_eq!(
            tc.raw_meta(0, b"twice").await.unwrap().version,
            version(want.0)
        );
        assert_eq!(tc.raw_value(0, b"twice").await.as_deref(), Some(want.1));
    }

    // Through the store: concurrent writes and deletes of one key (deletes do not take the
    // per-key turn, so they meet writes in one call); every node ends on the newest.
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let receipt = if i % 4 == 0 {
                    store
                        .delete(b"race", Consistency::Quorum, Precondition::None)
                        .await
                } else {
                    let value = format!("w{i}");
                    store
                        .put(
                            b"race",
                            value.as_bytes(),
                            None,
                            Consistency::Quorum,
                            Precondition::None,
                        )
                        .await
                };
                receipt.expect("acknowledged").version
            })
        })
        .collect();
    let mut highest = Version::ZERO;
    for t in tasks {
        highest = highest.max(t.await.unwrap());
    }
    for i in 0..3 {
        wait_until(
            Duration::from_secs(5),
            "every node on the newest version",
            || async {
                tc.raw_meta(i, b"race")
                    .await
                    .is_some_and(|m| m.version == highest)
            },
        )
        .await;
    }
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_holds_back_no_caller_beyond_its_node_timeout() {
    let mut tc = TestCluster::start(3).await;
    let store = tc.app().store().clone();
    let node_ms = 400; // the test kit cluster's node timeout
    for i in 0..50 {
        put_v_at_all(&store, &format!("f{i}")).await;
    }
    // Load at `quorum` from many callers, before and while node 2 is frozen.
    let load: Vec<_> = (0..100)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let key = format!("f{}", i % 50);
                let mut slowest = Duration::ZERO;
                for n in 0..15 {
                    let started = Instant::now();
                    if n % 3 == 0 {
                        let value = format!("{i}-{n}");
                        put(&store, &key, value.as_bytes(), Consistency::Quorum)
                            .await
                            .expect("quorum write");
                    } else {
                        store
                            .get(key.as_bytes(), Consistency::Quorum)
                            .await
                            .expect("quorum read");
                    }
                    slowest = slowest.max(started.elapsed());
                }
                slowest
            })
        })
        .collect();
    tc.cluster.nodes[2].pause();
    // Reads that need node 2: calls to it are stuck, and those queued behind them fail after
    // their own node timeout, not after the stuck call's timeout plus their own.
    let all: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let key = format!("f{}", i % 50);
                let r = store.get(key.as_bytes(), Consistency::All).await;
                (r, started.elapsed())
            })
        })
        .collect();
    let frozen = store.pool().node(2).display.clone();
    for t in all {
        let (r, elapsed) = t.await.unwrap();
        match r {
            Err(StoreError::NoQuorum(q)) => {
                assert!(q.failures.iter().all(|f| f.node == frozen), "{q}")
            }
            other => panic!("a read at `all` with node 2 frozen: {other:?}"),
        }
        assert!(
            elapsed < Duration::from_millis(node_ms * 7 / 4),
            "waited {elapsed:?} for a node timeout of {node_ms} ms"
        );
    }
    for t in load {
        let slowest = t.await.unwrap();
        assert!(
            slowest < Duration::from_millis(3000),
            "a quorum operation took {slowest:?}"
        );
    }
    tc.cluster.nodes[2].resume();
    tc.wait_health(2, "up").await;
    // A write after the thaw reaches node 2 again.
    let r = store
        .put(
            b"after",
            b"thaw",
            None,
            Consistency::All,
            Precondition::None,
        )
        .await;
    assert!(r.is_ok(), "{r:?}");
    tc.shutdown().await;
}

/// A fan-out whose caller is dropped before its quorum is decided (a request past its
/// deadline, a client gone) still runs every node call to the end: a write still reaches the
/// nodes. The calls here wait before they send, as a call waiting for its connection would, so
/// a fan-out that dropped its calls with its caller would never write them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_dropped_by_its_caller_still_completes_its_calls() {
    let tc = TestCluster::start(3).await;
    let pool = tc.app().store().pool().clone();
    let write = |node: std::sync::Arc<quorumd::pool::Node>| async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        node.run(|mut c| async move {
            redis::cmd("SET")
                .arg("dropped:k")
                .arg("v")
                .query_async::<()>(&mut c)
                .await
        })
        .await
    };
    let fan_out = quorumd::fanout::fan_out(&pool, 0..3, 3, |_, _: &()| true, write);
    assert!(
        tokio::time::timeout(Duration::from_millis(20), fan_out)
            .await
            .is_err(),
        "the caller gives up before any call answered"
    );
    wait_until(Duration::from_secs(5), "every node written", || async {
        let mut all = true;
        for i in 0..3 {
            all &= tc.raw_value(i, b"dropped:k").await.as_deref() == Some(&b"v"[..]);
        }
        all
    })
    .await;
    tc.shutdown().await;
}
