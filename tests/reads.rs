//! Which nodes a read asks (`quorum.read_from`): with `quorum`, as many as the level needs, in
//! turn, and the rest only when one fails, does not count, or is slower than the hedge.

use quorumd_testkit::cluster as common;
#[allow(dead_code)] // the exposition checker has more than these tests use
#[path = "support/exposition.rs"]
mod exposition;

use common::TestCluster;
use exposition::Scrape;
use quorumd::config::ReadFrom;
use quorumd::quorum::Consistency;
use quorumd::store::Precondition;
use std::time::{Duration, Instant};

const READS: usize = 30;

async fn scrape(tc: &TestCluster) -> Scrape {
    let text = common::get_text(&tc.http, &format!("{}/metrics", tc.base)).await;
    Scrape::parse(&text).unwrap()
}

/// Entries each node's read lane has carried so far.
async fn read_entries(tc: &TestCluster) -> Vec<f64> {
    let scrape = scrape(tc).await;
    (0..tc.cluster.nodes.len())
        .map(|i| {
            let node = tc.app().store().pool().node(i).display.clone();
            let labels = [("node", node), ("kind", "read".to_string())];
            scrape
                .value("quorumd_node_batch_entries_total", &labels)
                .unwrap_or(0.0)
        })
        .collect()
}

async fn hedges(tc: &TestCluster) -> f64 {
    scrape(tc)
        .await
        .value("quorumd_read_hedges_total", &[])
        .unwrap_or(0.0)
}

/// Node reads per node made by `READS` sequential quorum reads of one key written everywhere.
async fn node_reads_of_quorum_reads(read_from: ReadFrom) -> Vec<f64> {
    let tc = TestCluster::start_with(3, |c| c.quorum.read_from = read_from).await;
    let store = tc.app().store();
    store
        .put(b"k", b"v", None, Consistency::All, Precondition::None)
        .await
        .unwrap();
    let before = read_entries(&tc).await;
    for _ in 0..READS {
        let found = store.get(b"k", Consistency::Quorum).await.unwrap();
        assert_eq!(found.unwrap().value, b"v".to_vec());
    }
    // A read returns at its quorum; the answers of nodes it also asked may still be on their way.
    let asked_per_read = if read_from == ReadFrom::All { 3 } else { 2 };
    let expected = (READS * asked_per_read) as f64 + before.iter().sum::<f64>();
    common::wait_until(
        Duration::from_secs(5),
        "every asked node answered",
        || async { read_entries(&tc).await.iter().sum::<f64>() >= expected },
    )
    .await;
    let after = read_entries(&tc).await;
    tc.shutdown().await;
    after.iter().zip(&before).map(|(a, b)| a - b).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_reads_ask_two_of_three_nodes_in_turn() {
    let per_node = node_reads_of_quorum_reads(ReadFrom::Quorum).await;
    assert_eq!(
        per_node.iter().sum::<f64>(),
        (2 * READS) as f64,
        "each read asks exactly its quorum: {per_node:?}"
    );
    assert!(
        per_node.iter().all(|n| *n > 0.0),
        "reads take the nodes in turn: {per_node:?}"
    );
}

/// The negative control of the counting above: the same reads with `read_from = "all"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_from_all_ask_every_node() {
    let per_node = node_reads_of_quorum_reads(ReadFrom::All).await;
    assert_eq!(per_node, vec![READS as f64; 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_costs_a_read_the_hedge_not_the_node_timeout() {
    let mut tc = TestCluster::start_with(3, |c| {
        // A read that waited for the paused node would take the whole node timeout.
        c.timeouts.node_ms = 2_000;
        c.timeouts.request_ms = 5_000;
        c.quorum.read_hedge_ms = 20;
    })
    .await;
    let store = tc.app().store().clone();
    store
        .put(b"k", b"v", None, Consistency::All, Precondition::None)
        .await
        .unwrap();
    let hedges_before = hedges(&tc).await;
    tc.cluster.nodes[2].pause();
    let started = Instant::now();
    for _ in 0..READS {
        let found = store.get(b"k", Consistency::Quorum).await.unwrap();
        assert_eq!(found.unwrap().value, b"v".to_vec());
    }
    let elapsed = started.elapsed();
    let hedged = hedges(&tc).await - hedges_before;
    tc.cluster.nodes[2].resume();
    tc.shutdown().await;
    // Reads that picked the paused node (two in three, until a probe marks it) asked the third
    // node after the hedge.
    assert!(hedged >= 1.0, "no read hedged");
    assert!(
        elapsed < Duration::from_millis(2_000),
        "{READS} reads took {elapsed:?}: at least one waited for the node timeout"
    );
}

/// A node restarted empty is recovering: its answers do not count, so reads rely on the others
/// and never answer from it (it would say the key is absent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_never_rely_on_a_recovering_node() {
    let mut tc = TestCluster::start(3).await;
    let store = tc.app().store().clone();
    store
        .put(b"k", b"v", None, Consistency::All, Precondition::None)
        .await
        .unwrap();
    tc.cluster.nodes[2].restart_empty().unwrap();
    common::wait_until(Duration::from_secs(10), "node 2 recovering", || async {
        tc.health(2).await == "recovering"
    })
    .await;
    for _ in 0..READS {
        let found = store.get(b"k", Consistency::Quorum).await.unwrap();
        assert_eq!(found.map(|f| f.value), Some(b"v".to_vec()));
    }
    tc.shutdown().await;
}

/// A node that fails its reads (killed, before any probe notices) is replaced by the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_node_is_replaced_by_the_next() {
    let mut tc = TestCluster::start(3).await;
    let store = tc.app().store().clone();
    store
        .put(b"k", b"v", None, Consistency::All, Precondition::None)
        .await
        .unwrap();
    tc.cluster.nodes[0].kill();
    for _ in 0..READS {
        let found = store.get(b"k", Consistency::Quorum).await.unwrap();
        assert_eq!(found.map(|f| f.value), Some(b"v".to_vec()));
    }
    tc.shutdown().await;
}
