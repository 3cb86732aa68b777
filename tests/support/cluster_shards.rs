//! Shared by the suites that run quorumd over Redis Cluster replicas (`cluster_queue`,
//! `cluster_crdt`): which master of each replica owns a key's slot, asked of the servers
//! themselves (not of quorumd), and waits on quorumd's per-shard health as `/v1/status` shows
//! it.
//!
//! The clusters are those of `TestCluster::start_clusters(REPLICAS, (MASTERS, 0), ..)`: node
//! `r * MASTERS + m` is master m of replica r, and with no replicas nothing fails over, so the
//! slot map read at the start holds for the whole test.

#![allow(dead_code)] // each test binary uses a different part

use quorumd_testkit::cluster::{TestCluster, direct, get_json, wait_until};
use redis::Value;
use std::time::Duration;

/// Replicas (clusters) of every test, and masters per cluster.
pub const REPLICAS: usize = 3;
pub const MASTERS: usize = 3;

/// Each replica's slot ranges, with the node index of the master serving them.
pub struct SlotMap(Vec<Vec<(u32, u32, usize)>>);

impl SlotMap {
    /// Reads `CLUSTER SLOTS` from the first master of every replica (all must answer).
    pub async fn read(tc: &TestCluster) -> SlotMap {
        let mut replicas = Vec::new();
        for r in 0..REPLICAS {
            let mut c = direct(&tc.cluster.nodes[r * MASTERS].url()).await;
            let ranges: Vec<Vec<Value>> = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async(&mut c)
                .await
                .expect("CLUSTER SLOTS");
            let mut owned = Vec::new();
            for range in ranges {
                let (Value::Int(start), Value::Int(end), Value::Array(master)) =
                    (&range[0], &range[1], &range[2])
                else {
                    panic!("unexpected CLUSTER SLOTS entry: {range:?}");
                };
                let Value::Int(port) = master[1] else {
                    panic!("unexpected CLUSTER SLOTS master: {master:?}");
                };
                let node = (r * MASTERS..(r + 1) * MASTERS)
                    .find(|&i| i64::from(tc.cluster.nodes[i].port()) == port)
                    .unwrap_or_else(|| panic!("port {port} is none of replica {r}'s masters"));
                owned.push((*start as u32, *end as u32, node));
            }
            let covered: u32 = owned.iter().map(|(s, e, _)| e - s + 1).sum();
            assert_eq!(covered, 16384, "replica {r}'s slots: {owned:?}");
            replicas.push(owned);
        }
        SlotMap(replicas)
    }

    /// The node index of replica `r`'s master that owns `key`'s slot.
    pub fn owner(&self, r: usize, key: &str) -> usize {
        let slot = quorumd::layout::key_slot(key.as_bytes());
        self.0[r]
            .iter()
            .find(|(s, e, _)| (*s..=*e).contains(&slot))
            .map(|(_, _, node)| *node)
            .expect("every slot is served")
    }

    /// The owners of `key`'s slot, replica by replica.
    pub fn owners(&self, key: &str) -> [usize; REPLICAS] {
        std::array::from_fn(|r| self.owner(r, key))
    }

    /// The first of `stem`, `stem-1`, `stem-2`, ... whose slot replica `r` serves on `node`
    /// (`on: true`) or on another master (`on: false`).
    pub fn name_on(&self, r: usize, node: usize, on: bool, stem: &str) -> String {
        (0..)
            .map(|i| {
                if i == 0 {
                    stem.to_owned()
                } else {
                    format!("{stem}-{i}")
                }
            })
            .find(|name| (self.owner(r, name) == node) == on)
            .expect("some name lands anywhere")
    }
}

/// Replica `r`'s shard entry whose master is node `node`, per `/v1/status` of the instance at
/// `base` (null when there is none).
pub async fn shard_of(
    tc: &TestCluster,
    base: &str,
    r: usize,
    node: usize,
) -> (serde_json::Value, serde_json::Value) {
    let status = get_json(&tc.http, &format!("{base}/v1/status")).await;
    let port = format!(":{}", tc.cluster.nodes[node].port());
    let shard = status["nodes"][r]["shards"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["master"].as_str().is_some_and(|m| m.ends_with(&port)))
        .cloned()
        .unwrap_or_default();
    (shard, status)
}

/// Waits until the instance at `base` reports replica `r`'s shard on node `node` up (`true`) or
/// down.
pub async fn wait_shard(tc: &TestCluster, base: &str, r: usize, node: usize, up: bool) {
    wait_until(
        Duration::from_secs(30),
        &format!("replica {r}'s shard on node {node} up: {up}, at {base}"),
        || async { shard_of(tc, base, r, node).await.0["up"] == up },
    )
    .await;
}

/// Per `/v1/status` of the instance at `base`: replica `r` is `up` as a whole, and its only
/// shard that is down is the one on node `node`. That is per-shard health: one master down
/// takes out its own slots, not its replica.
pub async fn assert_only_shard_down(tc: &TestCluster, base: &str, r: usize, node: usize) {
    let (shard, status) = shard_of(tc, base, r, node).await;
    assert_eq!(shard["up"], false, "{status}");
    let down = status["nodes"][r]["shards"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["up"] == false)
        .count();
    assert_eq!(
        (down, status["nodes"][r]["health"].as_str()),
        (1, Some("up")),
        "replica {r}: {status}"
    );
}

/// The servers of each replica as `redis+cluster://` seed lists, as `start_clusters` configures
/// them (for a second quorumd instance on the same clusters).
pub fn cluster_urls(tc: &TestCluster) -> Vec<String> {
    tc.cluster
        .nodes
        .chunks(MASTERS)
        .map(|c| {
            let seeds: Vec<String> = c.iter().map(|n| n.addr().to_string()).collect();
            format!("redis+cluster://{}", seeds.join(","))
        })
        .collect()
}

/// Makes the replicas an established deployment's: exchanges until every master holds its
/// sentinel key (as tests/crdt.rs does before its faults; an exchange reads the 16,384 slot
/// digests of every replica, and on a loaded machine one may time out on a master, so that
/// replica waits for the next), and no replica was ever taken for one that lost data (a
/// probe overlapping the sentinels' writing once could; `tests/cluster_replicas.rs` tests it).
pub async fn establish_sentinels(tc: &TestCluster) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tc
            .try_sweep(quorumd::sync::SweepMode::Exchange, false)
            .await
        {
            Ok(report) if report.errors.is_empty() => {}
            Ok(report) => eprintln!("exchange: {:?}", report.errors),
            Err(e) => eprintln!("exchange: {e}"),
        }
        if every_sentinel_held(tc, &tc.base).await {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exchange gave every replica its sentinels"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_never_recovering(tc, 0..REPLICAS);
}

/// Whether the instance at `base` sees every replica hold every sentinel it was given.
pub async fn every_sentinel_held(tc: &TestCluster, base: &str) -> bool {
    get_json(&tc.http, &format!("{base}/v1/status")).await["nodes"]
        .as_array()
        .is_some_and(|n| n.iter().all(|n| n["has_sentinel"] == true))
}

/// Asserts that quorumd never marked the replicas `rs` recovering (as having lost data): none
/// of their masters restarted or was flushed.
pub fn assert_never_recovering(tc: &TestCluster, rs: impl IntoIterator<Item = usize>) {
    let pool = tc.app().store().pool();
    for r in rs {
        assert_eq!(
            pool.node(r).last_recovering_since_ms(),
            None,
            "replica {r} was marked as having lost data, though none of its masters did: {:?}",
            pool.node(r).status()
        );
    }
}
