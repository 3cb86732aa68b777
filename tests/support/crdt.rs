//! Shared by the CRDT suites, over standalone nodes (`crdt`) and over Redis Cluster replicas
//! (`cluster_crdt`): what a node holds for a CRDT key, read straight from the server; the
//! comparison of the convergence check; exchanges and the merges they made; small HTTP
//! helpers; and the concurrent workload both suites run through two instances while a node is
//! cut off, in phases the tests call around their own faults.
//!
//! Nodes are `TestCluster` node indexes: every node of a standalone deployment, or the master
//! of a key's slot in each replica of a clustered one.

#![allow(dead_code)] // each test binary uses a different part

use quorumd::app::App;
use quorumd::sync::{SweepMode, SweepReport, SweepRequest, SweepTrigger};
use quorumd_testkit::cluster::{TestCluster, body_json, wait_until};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// What a plain Redis client sees under the user key of a CRDT on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Materialised {
    Absent,
    Str(String),
    Set(BTreeSet<String>),
    Hash(BTreeMap<String, String>),
}

/// Everything a node holds for a CRDT key: metadata entry, state hash, materialised value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub meta: Option<Vec<u8>>,
    pub state: BTreeMap<Vec<u8>, Vec<u8>>,
    pub value: Materialised,
}

/// The CRDT state key of `key` (in the key's slot under the `slot` layout).
pub fn state_key(tc: &TestCluster, key: &str) -> Vec<u8> {
    tc.app().store().settings().layout.state_key(key.as_bytes())
}

/// What node `node` holds for `key`, read on it directly; the error a node gives while it is
/// not serving (e.g. a cluster master's `CLUSTERDOWN` just after a restart).
pub async fn try_node_view(tc: &TestCluster, node: usize, key: &str) -> Result<NodeView, String> {
    let loc = tc.app().store().locate(key.as_bytes()).unwrap();
    let mut c = tc.direct(node).await;
    let on = |e: redis::RedisError| format!("{key} on node {node}: {e}");
    let meta: Option<Vec<u8>> = redis::cmd("HGET")
        .arg(&*loc.meta_key)
        .arg(key)
        .query_async(&mut c)
        .await
        .map_err(on)?;
    let state: BTreeMap<Vec<u8>, Vec<u8>> = redis::cmd("HGETALL")
        .arg(state_key(tc, key))
        .query_async(&mut c)
        .await
        .map_err(on)?;
    let kind: String = redis::cmd("TYPE")
        .arg(key)
        .query_async(&mut c)
        .await
        .map_err(on)?;
    let read = match kind.as_str() {
        "none" => {
            return Ok(NodeView {
                meta,
                state,
                value: Materialised::Absent,
            });
        }
        "string" => "GET",
        "set" => "SMEMBERS",
        "hash" => "HGETALL",
        other => panic!("unexpected type {other} under {key}"),
    };
    let raw: redis::Value = redis::cmd(read)
        .arg(key)
        .query_async(&mut c)
        .await
        .map_err(on)?;
    let value = match kind.as_str() {
        "string" => Materialised::Str(redis::from_redis_value(raw).unwrap()),
        "set" => Materialised::Set(redis::from_redis_value(raw).unwrap()),
        _ => Materialised::Hash(redis::from_redis_value(raw).unwrap()),
    };
    Ok(NodeView { meta, state, value })
}

/// [`try_node_view`] of a node that must answer.
pub async fn node_view(tc: &TestCluster, node: usize, key: &str) -> NodeView {
    try_node_view(tc, node, key).await.unwrap()
}

/// The comparison of the convergence check, on what `views` (node, what it holds) show for
/// `key`: every node holds the same metadata, state and materialised value, and the value is
/// the model's.
pub fn same_everywhere(
    key: &str,
    views: &[(usize, NodeView)],
    model: &Materialised,
) -> Result<(), String> {
    let (first, v0) = &views[0];
    for (node, v) in &views[1..] {
        if v != v0 {
            return Err(format!(
                "{key}: node {node} differs from node {first}: {v:?} vs {v0:?}"
            ));
        }
    }
    if v0.value != *model {
        return Err(format!(
            "{key}: nodes hold {:?}, the model says {model:?}",
            v0.value
        ));
    }
    Ok(())
}

/// The convergence check on `nodes`, read with [`try_node_view`] (a node that does not answer
/// fails the check).
pub async fn converged_on(
    tc: &TestCluster,
    nodes: impl IntoIterator<Item = usize>,
    key: &str,
    model: &Materialised,
) -> Result<(), String> {
    let mut views = Vec::new();
    for node in nodes {
        views.push((node, try_node_view(tc, node, key).await?));
    }
    same_everywhere(key, &views, model)
}

/// Runs a complete exchange over all buckets (waiting out one already running, for up to
/// `patience`).
pub async fn exchange_within(app: &App, patience: Duration) -> SweepReport {
    let deadline = std::time::Instant::now() + patience;
    loop {
        match app
            .sweeper()
            .run(SweepRequest::new(SweepMode::Exchange, SweepTrigger::Test))
            .await
        {
            Ok(r) => return r,
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "exchange never ran: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Merges made per node (replica) by the sweeps of `apps`, once none is running any more.
pub async fn repaired_by(apps: &[&App]) -> Vec<u64> {
    wait_until(Duration::from_secs(10), "sweeps finished", || async {
        apps.iter().all(|a| a.sweeper().status().exchange.is_none())
    })
    .await;
    let mut total = vec![0; apps[0].store().pool().len()];
    for a in apps {
        for (t, n) in total
            .iter_mut()
            .zip(a.sweeper().status().totals.keys_repaired_per_node)
        {
            *t += n;
        }
    }
    total
}

/// DUMPs of a CRDT key's value and state, and its metadata entry.
pub type Dump = (Vec<u8>, Vec<u8>, Vec<u8>);

/// The [`Dump`] of `key` on node `node`.
pub async fn dump_crdt(tc: &TestCluster, node: usize, key: &str) -> Dump {
    let loc = tc.app().store().locate(key.as_bytes()).unwrap();
    let mut c = tc.direct(node).await;
    let value: Vec<u8> = redis::cmd("DUMP")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap();
    let state: Vec<u8> = redis::cmd("DUMP")
        .arg(state_key(tc, key))
        .query_async(&mut c)
        .await
        .unwrap();
    let meta: Vec<u8> = redis::cmd("HGET")
        .arg(&*loc.meta_key)
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap();
    (value, state, meta)
}

/// Overwrites node `node`'s copy with a dump, as a last-writer-wins repair would, or a server
/// restored from an old backup.
pub async fn restore_crdt(tc: &TestCluster, node: usize, key: &str, d: &Dump) {
    let loc = tc.app().store().locate(key.as_bytes()).unwrap();
    let mut c = tc.direct(node).await;
    let _: () = redis::cmd("RESTORE")
        .arg(key)
        .arg(0)
        .arg(&d.0)
        .arg("REPLACE")
        .query_async(&mut c)
        .await
        .unwrap();
    let _: () = redis::cmd("RESTORE")
        .arg(state_key(tc, key))
        .arg(0)
        .arg(&d.1)
        .arg("REPLACE")
        .query_async(&mut c)
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(&*loc.meta_key)
        .arg(key)
        .arg(&d.2)
        .query_async(&mut c)
        .await
        .unwrap();
}

pub async fn post(tc: &TestCluster, url: String, body: Value) -> (StatusCode, Value) {
    let r = tc.http.post(url).json(&body).send().await.unwrap();
    let status = r.status();
    (status, body_json(r).await)
}

pub async fn json_get(tc: &TestCluster, url: &str) -> (StatusCode, Value) {
    let r = tc.http.get(url).send().await.unwrap();
    let s = r.status();
    (s, body_json(r).await)
}

pub async fn counter_add(
    tc: &TestCluster,
    base: &str,
    name: &str,
    delta: i64,
) -> (StatusCode, Value) {
    post(
        tc,
        format!("{base}/v1/counters/{name}"),
        json!({ "delta": delta }),
    )
    .await
}

pub fn set_of(members: impl IntoIterator<Item = String>) -> Materialised {
    Materialised::Set(members.into_iter().collect())
}

/// The keys of the concurrent workload: a counter, a set and a map.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    pub hits: &'a str,
    pub tags: &'a str,
    pub profile: &'a str,
}

/// The concurrent workload through the two instances at `bases`: 4 clients per instance
/// incrementing and decrementing the counter, each instance adding its own members to the set
/// and patching disjoint fields of the map plus one field both write; once all is
/// acknowledged, every third member removed through the other instance, and one field of the
/// map deleted. Every request must succeed. Returns the sum of the deltas.
pub async fn concurrent_updates(tc: &TestCluster, bases: &[String; 2], keys: Keys<'_>) -> i64 {
    // Counters: 4 clients per instance, each a run of increments and decrements.
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let (http, base, hits) = (tc.http.clone(), bases[t % 2].clone(), keys.hits.to_owned());
            tokio::spawn(async move {
                let mut sum = 0i64;
                for i in 0..25i64 {
                    let delta = if i % 3 == 0 {
                        -(i + t as i64)
                    } else {
                        i * 7 + 1
                    };
                    let r = http
                        .post(format!("{base}/v1/counters/{hits}"))
                        .json(&json!({ "delta": delta }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
                    sum += delta;
                }
                sum
            })
        })
        .collect();
    // Sets: each instance adds its own members concurrently.
    let adds: Vec<_> = (0..2)
        .map(|b| {
            let (http, base, tags) = (tc.http.clone(), bases[b].clone(), keys.tags.to_owned());
            tokio::spawn(async move {
                for i in 0..20 {
                    let r = http
                        .post(format!("{base}/v1/sets/{tags}/add"))
                        .json(&json!({ "members": [format!("m{b}-{i}")] }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::OK);
                }
            })
        })
        .collect();
    // Maps: disjoint fields per instance, and one field both write at once.
    let patches: Vec<_> = (0..2)
        .map(|b| {
            let (http, base) = (tc.http.clone(), bases[b].clone());
            let profile = keys.profile.to_owned();
            tokio::spawn(async move {
                for i in 0..10 {
                    let mut patch = serde_json::Map::new();
                    patch.insert(format!("f{b}-{i}"), json!(format!("v{i}")));
                    patch.insert("shared".into(), json!(format!("from-{b}")));
                    let r = http
                        .patch(format!("{base}/v1/maps/{profile}"))
                        .json(&patch)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::OK);
                }
            })
        })
        .collect();
    let mut sum = 0i64;
    for t in tasks {
        sum += t.await.unwrap();
    }
    for t in adds.into_iter().chain(patches) {
        t.await.unwrap();
    }
    // Removes after the adds were acknowledged, through the other instance each time.
    let tags = keys.tags;
    for i in (0..20).step_by(3) {
        for b in 0..2 {
            let (s, body) = post(
                tc,
                format!("{}/v1/sets/{tags}/remove", bases[1 - b]),
                json!({ "members": [format!("m{b}-{i}")] }),
            )
            .await;
            assert_eq!((s, body["removed"].clone()), (StatusCode::OK, json!(1)));
        }
    }
    let r = tc
        .http
        .delete(format!("{}/v1/maps/{}/fields/f0-3", bases[0], keys.profile))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    sum
}

/// After [`concurrent_updates`] and the heal: every node of `owners(key)` holds the model of
/// each key, the counter's being `expected`; the shared map field's winner is either
/// instance's (as the first of the map's nodes holds it). Returns the map's model.
pub async fn assert_workload_converged(
    tc: &TestCluster,
    owners: impl Fn(&str) -> Vec<usize>,
    keys: Keys<'_>,
    expected: i64,
) -> BTreeMap<String, String> {
    let Keys {
        hits,
        tags,
        profile,
    } = keys;
    let counter_model = Materialised::Str(expected.to_string());
    converged_on(tc, owners(hits), hits, &counter_model)
        .await
        .unwrap();
    let members = (0..2).flat_map(|b| {
        (0..20)
            .filter(|i| i % 3 != 0)
            .map(move |i| format!("m{b}-{i}"))
    });
    converged_on(tc, owners(tags), tags, &set_of(members))
        .await
        .unwrap();
    let shared = node_view(tc, owners(profile)[0], profile).await;
    let Materialised::Hash(fields) = &shared.value else {
        panic!("{profile} is a hash: {shared:?}");
    };
    let winner = fields["shared"].clone();
    assert!(winner == "from-0" || winner == "from-1", "{winner}");
    let mut map_model: BTreeMap<String, String> = (0..2)
        .flat_map(|b| (0..10).map(move |i| (format!("f{b}-{i}"), format!("v{i}"))))
        .collect();
    map_model.remove("f0-3");
    map_model.insert("shared".into(), winner);
    converged_on(
        tc,
        owners(profile),
        profile,
        &Materialised::Hash(map_model.clone()),
    )
    .await
    .unwrap();
    map_model
}

/// Both instances read the counter's `expected` value at every level, and the map with
/// `map_fields` fields (read with the query `map_query`, e.g. `?consistency=all`, or none).
pub async fn assert_workload_read(
    tc: &TestCluster,
    bases: &[String; 2],
    keys: Keys<'_>,
    expected: i64,
    map_fields: usize,
    map_query: &str,
) {
    let Keys { hits, profile, .. } = keys;
    for base in bases {
        for level in ["one", "quorum", "all", "linearizable"] {
            let url = format!("{base}/v1/counters/{hits}?consistency={level}");
            let (s, v) = json_get(tc, &url).await;
            assert_eq!((s, v["value"].as_i64()), (StatusCode::OK, Some(expected)));
        }
        let (_, m) = json_get(tc, &format!("{base}/v1/maps/{profile}{map_query}")).await;
        assert_eq!(m.as_object().unwrap().len(), map_fields, "{m}");
    }
}

/// The start of the tests where a removed member must not come back from a stale node: set
/// `cart` holds `apple` and `pear`; the dump of node `node`'s copy once it has both.
pub async fn cart_with_stale_copy(tc: &TestCluster, node: usize) -> Dump {
    let url = format!("{}/v1/sets/cart/add", tc.base);
    let (s, _) = post(tc, url, json!({ "members": ["apple", "pear"] })).await;
    assert_eq!(s, StatusCode::OK);
    let both = set_of(["apple".into(), "pear".into()]);
    wait_until(
        Duration::from_secs(5),
        &format!("the add on node {node}"),
        || async { node_view(tc, node, "cart").await.value == both },
    )
    .await;
    dump_crdt(tc, node, "cart").await
}

/// The end of those tests, once `cart` holds `pear` alone: `apple` added again after its
/// removal is a new tag, which wins.
pub async fn assert_cart_re_add_wins(tc: &TestCluster) {
    let url = format!("{}/v1/sets/cart/add", tc.base);
    let (s, _) = post(tc, url, json!({ "members": ["apple"] })).await;
    assert_eq!(s, StatusCode::OK);
    let (_, again) = json_get(tc, &format!("{}/v1/sets/cart", tc.base)).await;
    assert_eq!(again["members"], json!(["apple", "pear"]));
}

/// The writes before a node is restarted empty: counter `stock` to 43 (+5, -2, +40), `ann`
/// and `bob` added to each set of `sets`, and fields `mode` and `level` set in map `conf`.
pub async fn write_before_restart(tc: &TestCluster, sets: &[&str], conf: &str) {
    for d in [5, -2, 40] {
        assert_eq!(
            counter_add(tc, &tc.base, "stock", d).await.0,
            StatusCode::OK
        );
    }
    for set in sets {
        let (s, _) = post(
            tc,
            format!("{}/v1/sets/{set}/add", tc.base),
            json!({ "members": ["ann", "bob"] }),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
    }
    let r = tc
        .http
        .patch(format!("{}/v1/maps/{conf}", tc.base))
        .json(&json!({ "mode": "fast", "level": "3" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// The model of map `conf` after [`write_before_restart`].
pub fn conf_model() -> Materialised {
    let fields = [("mode", "fast"), ("level", "3")];
    Materialised::Hash(
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}
