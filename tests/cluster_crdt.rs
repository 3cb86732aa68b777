//! CRDTs over Redis Cluster replicas, where the failing node is the master that owns the keys'
//! slot in one replica (a CRDT's value, state and metadata all live in its key's slot):
//! concurrent updates through two quorumd instances while that master is paused, a removed
//! member that must not come back from that master's stale copy, and that master restarted
//! empty. Each replica's copy is read on its master of the key's slot, straight from the
//! server, and must be the same everywhere and the model's (the convergence check of
//! tests/crdt.rs, whose negative control shows it catches a last-writer-wins overwrite; the
//! check here is the same comparison, made on the owning masters). Keys of the same replica
//! on the masters that did not fail must not need the sweep: the exchange runs per shard.
//! And a master down must not hold back its replica's other masters when they first run a
//! script.

#[path = "support/crdt.rs"]
mod crdts;
#[path = "support/cluster_shards.rs"]
mod shards;

use crdts::{
    Keys, Materialised, assert_cart_re_add_wins, assert_workload_converged, assert_workload_read,
    cart_with_stale_copy, concurrent_updates, conf_model, converged_on, counter_add,
    exchange_within, json_get, node_view, post, repaired_by, restore_crdt, set_of,
    write_before_restart,
};
use quorumd::app::App;
use quorumd::sync::{SweepMode, SweepReport};
use quorumd_testkit::cluster::{TestCluster, test_config, wait_until};
use reqwest::StatusCode;
use serde_json::json;
use shards::{
    MASTERS, REPLICAS, SlotMap, assert_only_shard_down, cluster_urls, establish_sentinels,
    every_sentinel_held, wait_shard,
};
use std::collections::BTreeSet;
use std::time::Duration;

/// Three clusters of three masters, holding their sentinels, with quorumd started on them.
async fn start() -> TestCluster {
    let tc = TestCluster::start_clusters(REPLICAS, (MASTERS, 0), |_| {}).await;
    establish_sentinels(&tc).await;
    tc
}

/// The convergence check: every replica's master of the key's slot holds the same metadata,
/// state and materialised value, and the value is the model's.
async fn converged(
    tc: &TestCluster,
    slots: &SlotMap,
    key: &str,
    model: &Materialised,
) -> Result<(), String> {
    converged_on(tc, slots.owners(key), key, model).await
}

/// Runs a complete exchange over all buckets (waiting out one already running).
async fn exchange(app: &App) -> SweepReport {
    exchange_within(app, Duration::from_secs(30)).await
}

/// A second quorumd instance on the same clusters (with its own HTTP address), once it sees
/// every sentinel (one per master, given at the start) on every replica.
async fn second_instance(tc: &TestCluster) -> (App, String) {
    let mut cfg = test_config(cluster_urls(tc));
    cfg.placement = quorumd::layout::Scheme::Slot;
    let app = App::start(cfg.validate().unwrap()).await.unwrap();
    let base = format!("http://{}", app.http_addr());
    wait_until(
        Duration::from_secs(10),
        "the second instance sees the sentinels on every replica",
        || every_sentinel_held(tc, &base),
    )
    .await;
    (app, base)
}

/// tests/crdt.rs's partition, with replica 2's master of the set's and the map's slot as the
/// node cut off (SIGSTOP) while both instances update a counter, a set and a map. The counter
/// is on another master of replica 2, which keeps taking its writes: after the heal only the
/// paused master's keys needed merges, and every replica holds the model.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_through_two_instances_converge_after_a_partition() {
    let mut tc = start().await;
    let slots = SlotMap::read(&tc).await;
    let victim = slots.owner(2, "tags");
    let tags = "tags";
    let profile = slots.name_on(2, victim, true, "profile");
    let hits = slots.name_on(2, victim, false, "hits");
    let (profile, hits) = (profile.as_str(), hits.as_str());
    let (second, base_b) = second_instance(&tc).await;
    let bases = [tc.base.clone(), base_b.clone()];
    // A first increment before the partition, so the cut-off master holds an older state.
    assert_eq!(counter_add(&tc, &bases[0], hits, 1).await.0, StatusCode::OK);
    tc.cluster.nodes[victim].pause();
    for base in &bases {
        wait_shard(&tc, base, 2, victim, false).await;
        assert_only_shard_down(&tc, base, 2, victim).await;
    }

    let keys = Keys {
        hits,
        tags,
        profile,
    };
    let expected = 1 + concurrent_updates(&tc, &bases, keys).await;
    // The counter's master in replica 2 answered all along: it has every increment before
    // any sweep (the last write's copy may still be on its way).
    let counter_model = Materialised::Str(expected.to_string());
    wait_until(
        Duration::from_secs(10),
        "replica 2's counter up to date",
        || async { node_view(&tc, slots.owner(2, hits), hits).await.value == counter_model },
    )
    .await;

    tc.cluster.nodes[victim].resume();
    for base in &bases {
        wait_shard(&tc, base, 2, victim, true).await;
    }
    // Runs after (or instead of) the exchange the shard's return triggers by itself.
    exchange(tc.app()).await;
    let repaired = repaired_by(&[tc.app(), &second]).await;
    assert_eq!(
        repaired,
        [0, 0, 2],
        "only the paused master's keys needed merges, one per key"
    );

    let owners = |key: &str| slots.owners(key).to_vec();
    let map_model = assert_workload_converged(&tc, owners, keys, expected).await;

    // Both instances read the model, at every level.
    let fields = map_model.len();
    assert_workload_read(&tc, &bases, keys, expected, fields, "?consistency=all").await;
    // Converged digests: a second exchange finds nothing to do.
    let again = exchange(tc.app()).await;
    assert_eq!(again.buckets_mismatched, 0, "{again:?}");
    second.shutdown().await.unwrap();
    tc.shutdown().await;
}

/// tests/crdt.rs's stale node, with replica 2's master of the set's slot as the node that
/// misses a remove (paused), then has its stale copy put back twice: the exchange, a read at
/// `all` and the full sweep each merge the removal in rather than spread the stale add.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_does_not_come_back_from_a_stale_master() {
    let mut tc = start().await;
    let slots = SlotMap::read(&tc).await;
    let victim = slots.owner(2, "cart");
    let stale = cart_with_stale_copy(&tc, victim).await;
    tc.cluster.nodes[victim].pause();
    wait_shard(&tc, &tc.base, 2, victim, false).await;
    assert_only_shard_down(&tc, &tc.base, 2, victim).await;
    let url = format!("{}/v1/sets/cart/remove", tc.base);
    let (s, r) = post(&tc, url, json!({ "members": ["apple", "plum"] })).await;
    assert_eq!((s, r["removed"].clone()), (StatusCode::OK, json!(1)));
    tc.cluster.nodes[victim].resume();
    wait_shard(&tc, &tc.base, 2, victim, true).await;
    // The exchange merges the removal into the master instead of copying its stale add back.
    exchange(tc.app()).await;
    assert_eq!(repaired_by(&[tc.app()]).await, [0, 0, 1]);
    let pear = set_of(["pear".into()]);
    converged(&tc, &slots, "cart", &pear).await.unwrap();
    // The stale copy put back on the master (as a server restored from an old backup would
    // be) is merged away, not spread.
    restore_crdt(&tc, victim, "cart", &stale).await;
    assert_eq!(
        node_view(&tc, victim, "cart").await.value,
        set_of(["apple".into(), "pear".into()])
    );
    assert!(converged(&tc, &slots, "cart", &pear).await.is_err());
    // A read over all replicas merges the removal in, and repairs the master on the way.
    let (_, all) = json_get(&tc, &format!("{}/v1/sets/cart?consistency=all", tc.base)).await;
    assert_eq!(all["members"], json!(["pear"]));
    wait_until(
        Duration::from_secs(5),
        "read repair of the master",
        || async { converged(&tc, &slots, "cart", &pear).await.is_ok() },
    )
    .await;
    // Once more, healed by the full sweep this time (the digest does not show a restored copy).
    restore_crdt(&tc, victim, "cart", &stale).await;
    assert!(converged(&tc, &slots, "cart", &pear).await.is_err());
    tc.sweep(SweepMode::Full, false).await;
    converged(&tc, &slots, "cart", &pear).await.unwrap();
    // An add after the remove is a new tag: it wins.
    assert_cart_re_add_wins(&tc).await;
    tc.shutdown().await;
}

/// tests/crdt.rs's node restarted empty, with replica 1's master of the keys' slot as the
/// node: it comes back with no data (and its cluster membership), its replica is recovering for
/// its slots, takes updates, and the exchange merges every CRDT back into it before it counts
/// again. A set on another master of replica 1 keeps its copy and needs no merge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_restarted_empty_gets_every_crdt_back_by_merging() {
    let mut tc = start().await;
    let slots = SlotMap::read(&tc).await;
    let victim = slots.owner(1, "stock");
    let team = slots.name_on(1, victim, true, "team");
    let conf = slots.name_on(1, victim, true, "conf");
    let crew = slots.name_on(1, victim, false, "crew");
    let (team, conf, crew) = (team.as_str(), conf.as_str(), crew.as_str());
    write_before_restart(&tc, &[team, crew], conf).await;
    let ann_bob = set_of(["ann".into(), "bob".into()]);
    let models = [
        ("stock", Materialised::Str("44".into())),
        (team, ann_bob.clone()),
        (conf, conf_model()),
        (crew, ann_bob.clone()),
    ];
    // Every replica has them before the master is wiped.
    wait_until(Duration::from_secs(5), "writes on replica 1", || async {
        node_view(&tc, victim, conf).await.state.len() == 2
            && node_view(&tc, victim, "stock").await.value == Materialised::Str("43".into())
            && node_view(&tc, victim, team).await.value == ann_bob
            && node_view(&tc, slots.owner(1, crew), crew).await.value == ann_bob
    })
    .await;
    // The sentinels (given at the start) make the wipe visible even if the restart's new run_id
    // were missed.
    tc.cluster.nodes[victim]
        .restart()
        .expect("restart the master");
    // An update while it is gone or recovering (its answers do not count for reads).
    assert_eq!(
        counter_add(&tc, &tc.base, "stock", 1).await.0,
        StatusCode::OK
    );
    // The restart wiped the master's slots only: the other master's set is intact.
    assert_eq!(
        node_view(&tc, slots.owner(1, crew), crew).await.value,
        ann_bob
    );
    // The exchange its return triggers merges everything back (quickly enough that polling
    // may never see it `recovering`); then it counts again.
    wait_until(
        Duration::from_secs(30),
        "replica 1 merged back and up",
        || async {
            let mut ok = tc.health(1).await == "up";
            for (key, model) in &models {
                ok &= converged(&tc, &slots, key, model).await.is_ok();
            }
            ok
        },
    )
    .await;
    exchange(tc.app()).await;
    for (key, model) in &models {
        converged(&tc, &slots, key, model).await.unwrap();
    }
    // The set and the map on the wiped master were neither read nor written since: only the
    // sweep merged them (the counter may have been merged by its write). The other master's
    // set was in sync: nothing merged there.
    let repaired = repaired_by(&[tc.app()]).await;
    assert!((2..=3).contains(&repaired[1]), "{repaired:?}");
    assert_eq!((repaired[0], repaired[2]), (0, 0), "{repaired:?}");
    tc.shutdown().await;
}

/// A master of replica 2 is paused (and marked down); the first CRDT write of a key served by
/// another master of replica 2 is that master's first run of the CRDT scripts. Per-shard health
/// says the paused master holds back its own slots only: the write must land on the live
/// master without a sweep, and replica 2 must stay `up` as a whole.
///
/// Before the replica's connection sent `SCRIPT LOAD` itself (`pool/conn.rs`, `script_load`),
/// the cluster client sent it to every node, the paused master included: the call waited the
/// node timeout and, a command of no key, was blamed on the whole replica, which turned
/// `suspect`; the write never reached the live master (nothing hints a CRDT write: only the
/// exchange repairs it). This test failed every time then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_script_run_with_another_master_down_holds_back_only_that_masters_slots() {
    let mut tc = start().await;
    let slots = SlotMap::read(&tc).await;
    let victim = 2 * MASTERS;
    let key = slots.name_on(2, victim, false, "hits");
    let live = slots.owner(2, &key);
    tc.cluster.nodes[victim].pause();
    wait_shard(&tc, &tc.base, 2, victim, false).await;
    assert_only_shard_down(&tc, &tc.base, 2, victim).await;
    // Replica 2's health as a whole, as often as it can be read, until the end.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (pool, stop) = (tc.app().store().pool().clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = BTreeSet::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                seen.insert(format!("{:?}", pool.node(2).health()));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (seen, pool.node(2).status().last_error)
        })
    };
    let (s, v) = counter_add(&tc, &tc.base, &key, 5).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let landed = async {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if node_view(&tc, live, &key).await.value == Materialised::Str("5".into()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (seen, last_error) = watcher.await.unwrap();
    tc.cluster.nodes[victim].resume();
    assert!(
        landed,
        "the write never reached replica 2's live master of {key} (replica 2 seen {seen:?}, \
         last error {last_error:?})"
    );
    assert_eq!(
        seen,
        BTreeSet::from(["Up".to_owned()]),
        "replica 2 as a whole ({last_error:?})"
    );
    tc.shutdown().await;
}
