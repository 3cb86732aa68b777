//! Locking queues over Redis Cluster replicas, where a failing node is the master that owns the
//! queue's slot in one replica (a queue's records, index, payloads and item leases all live in
//! the slot of its name): many producers and consumers while a consumer dies mid-lease and
//! that master is paused and another replica's is killed; an expired lease while a master of
//! the slot is paused; and a master that missed an ack, which the next claim repairs instead
//! of letting it bring the item back. What the replicas hold is read on each replica's master
//! of the queue's slot, straight from the server. And a replica that lost another slot's
//! master must keep counting for the queue, as it does for locks in the queue's slot. And the
//! operator's sequence of wipes, one replica's master of the queue's slot at a time, healed by
//! the exchange between them.
//!
//! The lease histories go through the exclusion checker of `crates/testkit/src/checker/locks.rs`,
//! as in tests/queue.rs, whose negative control (leases granted by one node of three are
//! caught overlapping) covers the checker; this file uses no other checker.

#[path = "support/queue.rs"]
mod queues;
#[path = "support/cluster_shards.rs"]
mod shards;

use queues::{PER_PRODUCER, PRODUCERS, Workload, act, claim, claim_with, drained, put, q};
use quorumd::calls::queue::QueueKeys;
use quorumd::config::Config;
use quorumd::hlc::wall_clock_ms;
use quorumd::queue::record::{ItemState, Record};
use quorumd_testkit::cluster::{TestCluster, command, direct, post_json as post, wait_until};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shards::{
    MASTERS, REPLICAS, SlotMap, assert_never_recovering, assert_only_shard_down,
    establish_sentinels, wait_shard,
};
use std::time::{Duration, Instant};

fn tweak(c: &mut Config) {
    c.queues.max_deliveries = 4;
}

/// Three clusters of three masters, holding their sentinels, with quorumd started on them.
async fn start() -> TestCluster {
    let tc = TestCluster::start_clusters(REPLICAS, (MASTERS, 0), tweak).await;
    establish_sentinels(&tc).await;
    tc
}

/// The queue's depths; `None` while no majority answers (a master that has just failed a
/// request on a loaded machine keeps its slots out of service until the next probe).
async fn try_depths(tc: &TestCluster, name: &str) -> Option<Value> {
    let (s, v) = tc.json(&format!("/v1/queues/{name}")).await;
    match s {
        StatusCode::OK => Some(v),
        StatusCode::SERVICE_UNAVAILABLE => None,
        other => panic!("depths: {other} {v}"),
    }
}

/// The queue's depths, once a majority answers: within a few probes of a master that failed a
/// request, not the locks' longest TTL, for which a replica taken for one that lost data is
/// kept out.
async fn depths(tc: &TestCluster, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, v) = tc.json(&format!("/v1/queues/{name}")).await;
        match s {
            StatusCode::OK => return v,
            StatusCode::SERVICE_UNAVAILABLE if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("depths: {other} {v}"),
        }
    }
}

/// The queue's keys on the servers.
fn queue_keys(tc: &TestCluster, name: &str) -> QueueKeys {
    let layout = &tc.app().store().settings().layout;
    QueueKeys::new(&layout.prefix, &layout.group_tag(name), name)
}

/// The lock key of an item's lease (`LockService::keys("q", "{queue}:{id}", queue)`).
fn lease_key(tc: &TestCluster, name: &str, id: &str) -> String {
    let layout = &tc.app().store().settings().layout;
    format!(
        "{}lock{}:q:{name}:{id}",
        layout.prefix,
        layout.group_tag(name)
    )
}

/// The record of item `id` on node `node` (a master that owns the queue's slot), read there.
async fn record_on(tc: &TestCluster, node: usize, name: &str, id: &str) -> Option<Record> {
    let mut c = tc.direct(node).await;
    let raw: Option<String> = redis::cmd("HGET")
        .arg(queue_keys(tc, name).rec)
        .arg(id)
        .query_async(&mut c)
        .await
        .expect("HGET of the records");
    raw.map(|r| Record::parse(&r).unwrap_or_else(|| panic!("malformed record {r}")))
}

/// Whether node `node` holds `key`.
async fn exists_on(tc: &TestCluster, node: usize, key: &str) -> bool {
    let n: u64 = command(&mut tc.direct(node).await, &["EXISTS", key]).await;
    n == 1
}

/// tests/queue.rs's run of 3 producers and 4 consumers, one consumer dying with leases held,
/// where the failing nodes are masters of the queue's slot: replica 1's is paused (SIGSTOP)
/// while items are put and claimed and then thawed, and after the puts replica 2's is killed
/// for good. Every acknowledged put must end acked or dead-lettered, no item may be leased to
/// two consumers at once, and the replicas keep serving their other slots meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_and_consumers_with_a_dead_consumer_and_a_failing_master_lose_nothing() {
    let mut tc = start().await;
    let slots = SlotMap::read(&tc).await;
    let owners = slots.owners("work");
    // A queue of replica 2's other masters: it must go on reaching replica 2.
    let side = slots.name_on(2, owners[2], false, "side");

    let mut work = Workload::start(&tc, "work");
    // Under way: some items put. Then replica 1's master of the queue's slot stops answering,
    // and stays stopped while more items are put, claimed and acked.
    wait_until(Duration::from_secs(20), "the first puts", || async {
        work.puts() >= 6
    })
    .await;
    tc.cluster.nodes[owners[1]].pause();
    wait_shard(&tc, &tc.base, 1, owners[1], false).await;
    assert_only_shard_down(&tc, &tc.base, 1, owners[1]).await;
    let (puts, acks) = (work.puts(), work.acks());
    // Generous: five cluster tests run at once on two cores (it once took over 20 s there).
    wait_until(
        Duration::from_secs(60),
        "items put and acked with the shard down",
        || async {
            work.puts() >= (puts + 5).min(PRODUCERS * PER_PRODUCER) && work.acks() >= acks + 10
        },
    )
    .await;
    tc.cluster.nodes[owners[1]].resume();
    wait_shard(&tc, &tc.base, 1, owners[1], true).await;
    work.producers_done().await;
    tc.cluster.nodes[owners[2]].kill();
    wait_shard(&tc, &tc.base, 2, owners[2], false).await;
    assert_only_shard_down(&tc, &tc.base, 2, owners[2]).await;
    work.finish(|| async { try_depths(&tc, "work").await.is_some_and(|d| drained(&d)) })
        .await;
    // A master paused and thawed lost nothing: neither replica 1 nor replica 0 may have been
    // taken for one that lost data (which would keep it out of the queue's majorities).
    assert_never_recovering(&tc, [0, 1]);
    work.check(&depths(&tc, "work").await);
    // Replica 2 lost the queue's master, not its other slots: a put to a queue elsewhere
    // still lands on its master there.
    let id = put(&tc, &side, json!({"payload": "elsewhere"})).await;
    let on_replica_2 = slots.owner(2, &side);
    wait_until(
        Duration::from_secs(10),
        "the other queue's item on replica 2",
        || async {
            record_on(&tc, on_replica_2, &side, &id)
                .await
                .is_some_and(|r| r.state == ItemState::Ready)
        },
    )
    .await;
    tc.shutdown().await;
}

/// tests/queue.rs's expired lease, with replica 1's master of the queue's slot paused once the
/// first lease is taken: the item is claimed again after the lease ran out on replicas 0 and 2
/// alone, the old lease is stale, and when the master answers again the ack of the new lease
/// reaches every replica, so the item is purged on every master of its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_makes_the_item_claimable_and_the_old_lease_stale() {
    let mut tc = start().await;
    let owners = SlotMap::read(&tc).await.owners("q");
    let id = put(&tc, "q", json!({"payload": 1})).await;
    let first = claim(&tc, "q", 1000).await.unwrap();
    assert_eq!(first["id"], id.as_str());
    assert!(
        claim(&tc, "q", 1000).await.is_none(),
        "leased: nothing else to claim"
    );
    assert_eq!(depths(&tc, "q").await["leased"], 1);
    let lease = lease_key(&tc, "q", &id);
    for node in owners {
        assert!(exists_on(&tc, node, &lease).await, "lease on node {node}");
    }

    tc.cluster.nodes[owners[1]].pause();
    wait_shard(&tc, &tc.base, 1, owners[1], false).await;
    assert_only_shard_down(&tc, &tc.base, 1, owners[1]).await;
    let again = claim_with(&tc, "q", json!({"lease_ms": 10_000, "wait_ms": 5000}))
        .await
        .expect("claimed again after the lease ran out");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["deliveries"], 2);
    let (s, e) = act(&tc, "q", &first, "ack").await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("stale_lease")),
        "{e}"
    );
    for node in [owners[0], owners[2]] {
        let r = record_on(&tc, node, "q", &id).await.unwrap();
        assert_eq!(
            (r.state, r.deliveries),
            (ItemState::Leased, 2),
            "node {node}"
        );
    }

    tc.cluster.nodes[owners[1]].resume();
    wait_shard(&tc, &tc.base, 1, owners[1], true).await;
    // Replica 1's master missed the second claim.
    let behind = record_on(&tc, owners[1], "q", &id).await.unwrap();
    assert_eq!(behind.deliveries, 1, "{behind:?}");
    let (s, v) = act(&tc, "q", &again, "ack").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        depths(&tc, "q").await,
        json!({"ready": 0, "leased": 0, "delayed": 0, "dead": 0})
    );
    assert_never_recovering(&tc, 0..REPLICAS);
    // Every replica confirmed the ack: the item is purged on each master of the slot, not
    // left as a tombstone.
    let keys = queue_keys(&tc, "q");
    for node in owners {
        for key in [&keys.rec, &keys.pay, &keys.ready, &keys.gone] {
            wait_until(
                Duration::from_secs(5),
                &format!("{key} purged on node {node}"),
                || async { !exists_on(&tc, node, key).await },
            )
            .await;
        }
    }
    tc.shutdown().await;
}

/// tests/queue.rs's missed ack, with replica 2's master of the queue's slot as the node cut off
/// during the ack: back in service it still holds the item leased; once the lease has run out
/// it proposes the item again, and the claim finds the majority's tombstone and repairs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_that_missed_an_ack_does_not_bring_the_item_back() {
    let mut tc = start().await;
    let owners = SlotMap::read(&tc).await.owners("q");
    let id = put(&tc, "q", json!({"payload": "x"})).await;
    let item = claim(&tc, "q", 2500).await.unwrap();
    let lease = lease_key(&tc, "q", &id);
    for node in owners {
        assert!(exists_on(&tc, node, &lease).await, "lease on node {node}");
    }
    tc.cluster.nodes[owners[2]].pause();
    wait_shard(&tc, &tc.base, 2, owners[2], false).await;
    assert_only_shard_down(&tc, &tc.base, 2, owners[2]).await;
    let (s, v) = act(&tc, "q", &item, "ack").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    tc.cluster.nodes[owners[2]].resume();
    wait_shard(&tc, &tc.base, 2, owners[2], true).await;
    let stale = record_on(&tc, owners[2], "q", &id).await.unwrap();
    assert_eq!(stale.state, ItemState::Leased, "node 2 missed the ack");
    for node in [owners[0], owners[1]] {
        let r = record_on(&tc, node, "q", &id).await.unwrap();
        assert_eq!(r.state, ItemState::Acked, "node {node} has the tombstone");
    }
    // Once the lease has run out (its lock gone from the majority, its time in the stale
    // record passed), replica 2's master proposes the item again; the tombstone wins.
    wait_until(Duration::from_secs(10), "the lease ran out", || async {
        wall_clock_ms() > stale.not_before_ms
            && !exists_on(&tc, owners[0], &lease).await
            && !exists_on(&tc, owners[1], &lease).await
    })
    .await;
    // A claim that hears replica 2's proposal (within the lock module's per-node limit)
    // repairs it; its write there may land after the claim answered.
    wait_until(
        Duration::from_secs(10),
        "a claim repaired node 2",
        || async {
            assert!(claim(&tc, "q", 5000).await.is_none(), "the item came back");
            record_on(&tc, owners[2], "q", &id)
                .await
                .is_some_and(|r| r.state == ItemState::Acked)
        },
    )
    .await;
    let mut c = direct(&tc.cluster.nodes[owners[2]].url()).await;
    let ready: u64 = command(&mut c, &["ZCARD", &queue_keys(&tc, "q").ready]).await;
    assert_eq!(ready, 0, "out of replica 2's ready index");
    assert_eq!(depths(&tc, "q").await["ready"], 0);
    assert_never_recovering(&tc, 0..REPLICAS);
    tc.shutdown().await;
}

/// A master of replica 2 that does not serve the queue's slot restarts empty: replica 2 lost
/// other slots, and the queue's keys (all in its name's slot) are intact there. With replica
/// 1's master of the queue's slot paused, replicas 0 and 2 are a majority for the queue, as
/// they are for a lock in the same slot: a claim must get the item, and the depths answer.
///
/// Before the queue's reads asked about the queue's own slot, they counted a replica by
/// `counts_toward_majority(n, None)` (the read of no one lock), so a replica that lost any
/// master was left out of every queue's majority until the locks' longest TTL had passed
/// (`locks.max_ttl_ms`, a minute by default): this test failed every time then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_restarted_elsewhere_in_a_replica_keeps_it_counted_for_the_queue() {
    let mut tc = start().await;
    let slots = SlotMap::read(&tc).await;
    let owners = slots.owners("work");
    let elsewhere = (2 * MASTERS..3 * MASTERS)
        .find(|&n| n != owners[2])
        .unwrap();
    let id = put(&tc, "work", json!({"payload": "kept"})).await;
    // A queue in use: claimed once and given back, so every replica has run its scripts and
    // the lock module's (a lock call has `locks.node_timeout_ms` to answer, too short on a
    // loaded machine for a master's first load of a script).
    let item = claim(&tc, "work", 5000).await.expect("the item");
    let (s, v) = act(&tc, "work", &item, "nack").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    tc.cluster.nodes[elsewhere]
        .restart()
        .expect("restart the master");
    let pool = tc.app().store().pool().clone();
    wait_until(
        Duration::from_secs(30),
        "replica 2 seen losing the restarted master's slots, and caught up",
        || async {
            pool.node(2).last_recovering_since_ms().is_some()
                && tc.health(2).await == "up"
                && shards::shard_of(&tc, &tc.base, 2, elsewhere).await.0["up"] == true
        },
    )
    .await;
    assert_eq!(
        record_on(&tc, owners[2], "work", &id)
            .await
            .map(|r| r.state),
        Some(ItemState::Ready),
        "replica 2 kept the queue"
    );
    tc.cluster.nodes[owners[1]].pause();
    wait_shard(&tc, &tc.base, 1, owners[1], false).await;
    // The lock module counts replica 2 for this slot: a lock named like the queue is granted.
    let (s, v) = post(
        &tc.http,
        format!("{}/v1/locks/work/acquire", tc.base),
        json!({"ttl_ms": 5000}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "a lock in the queue's slot: {v}");
    let (s, v) = post(
        &tc.http,
        q(&tc, "work", "/claim"),
        json!({"lease_ms": 5000}),
    )
    .await;
    assert_eq!(
        (s, v["id"].as_str()),
        (StatusCode::OK, Some(id.as_str())),
        "claim with replicas 0 and 2: {v}"
    );
    tc.cluster.nodes[owners[1]].resume();
    tc.shutdown().await;
}

/// The operator's sequence over Redis Cluster replicas: five items put, then each replica's
/// master of the queue's slot flushed in turn (replica 1, then 0, then 2), each healed (the
/// loss seen, the replica back `up`) before the next. The exchange that heals a replica
/// restores the queues in the slots it lost, so the flushed master holds all five again each
/// time, and the queue hands out all five once the flushed replicas count for its slot again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushing_each_replicas_master_of_the_queue_in_turn_loses_nothing() {
    let tc = TestCluster::start_clusters(REPLICAS, (MASTERS, 0), |c| {
        tweak(c);
        // A replica that lost the queue's slot counts for it again 1.5 s later, not a minute.
        c.locks.max_ttl_ms = 1500;
        // The heal's exchange reads 16,384 slot digests per replica: on a loaded machine that
        // takes longer than the tests' 400 ms node timeout (as in tests/cluster_replicas.rs).
        c.timeouts.node_ms = 3_000;
    })
    .await;
    establish_sentinels(&tc).await;
    let owners = SlotMap::read(&tc).await.owners("mail");
    let mut ids = std::collections::BTreeSet::new();
    for n in 0..5 {
        ids.insert(put(&tc, "mail", json!({"payload": {"n": n}})).await);
    }
    let keys = queue_keys(&tc, "mail");
    let pool = tc.app().store().pool().clone();
    for r in [1, 0, 2] {
        let losses = pool.node(r).losses_marked();
        let mut c = direct(&tc.cluster.nodes[owners[r]].url()).await;
        let _: () = command(&mut c, &["FLUSHALL"]).await;
        wait_until(
            Duration::from_secs(30),
            &format!("replica {r} seen losing the queue's master, then back in sync"),
            || async { pool.node(r).losses_marked() > losses && tc.health(r).await == "up" },
        )
        .await;
        for (replica, &node) in owners.iter().enumerate() {
            let mut c = direct(&tc.cluster.nodes[node].url()).await;
            let held: u64 = command(&mut c, &["HLEN", &keys.rec]).await;
            assert_eq!(held, 5, "replica {replica} after replica {r}'s heal");
            let payloads: u64 = command(&mut c, &["HLEN", &keys.pay]).await;
            assert_eq!(payloads, 5, "replica {replica} after replica {r}'s heal");
        }
    }
    let mut handed = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, v) = post(
            &tc.http,
            q(&tc, "mail", "/claim"),
            json!({"lease_ms": 1000}),
        )
        .await;
        match s {
            StatusCode::OK => {
                let (s, e) = act(&tc, "mail", &v, "ack").await;
                assert_eq!(s, StatusCode::OK, "{e}");
                handed.insert(v["id"].as_str().unwrap().to_string());
            }
            StatusCode::NO_CONTENT => break,
            // The flushed replicas count for the queue's slot again after the lock delay.
            StatusCode::SERVICE_UNAVAILABLE if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => panic!("claim: {other} {v}"),
        }
    }
    assert_eq!(handed, ids, "every acknowledged put handed out");
    tc.shutdown().await;
}
