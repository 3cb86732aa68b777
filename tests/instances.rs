//! Several quorumd instances against the same nodes split the sweep work through shard
//! leases; when one dies, the others take over its shards within a lease period.

use quorumd_testkit::cluster as common;

use common::{TestCluster, test_config, wait_until};
use quorumd::app::App;
use reqwest::StatusCode;
use std::collections::BTreeSet;
use std::time::Duration;

const SHARDS: u32 = 16;
const KEYS: usize = 2000;

fn shared_sweeps(c: &mut quorumd::config::Config) {
    c.sync.exchange_interval_ms = 200;
    c.sync.full_sweep_cron = String::new();
    c.sync.in_flight_window_ms = 200;
    c.sync.shards = SHARDS;
    c.sync.lease_ms = 1500;
}

async fn versioned_keys(tc: &TestCluster, node: usize) -> u64 {
    let mut c = tc.direct(node).await;
    redis::cmd("EVAL")
        .arg(common::count_meta_entries_script())
        .arg(0)
        .query_async(&mut c)
        .await
        .unwrap()
}

fn owned(app: &App) -> BTreeSet<u32> {
    app.sweeper().status().leases.owned.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_work_and_one_takes_over_when_the_other_dies() {
    let tc = TestCluster::start_with(3, shared_sweeps).await;
    let mut cfg = test_config(tc.cluster.urls());
    shared_sweeps(&mut cfg);
    let second = App::start(cfg.validate().unwrap()).await.unwrap();
    let first = tc.app();

    for i in 0..KEYS {
        assert_eq!(
            tc.put(&format!("k{i}"), format!("v{i}"), "consistency=all")
                .await
                .status(),
            StatusCode::OK
        );
    }
    wait_until(
        Duration::from_secs(15),
        "shards split between the two",
        || async {
            let (a, b) = (owned(first), owned(&second));
            a.len() == SHARDS as usize / 2 && b.len() == SHARDS as usize / 2 && a.is_disjoint(&b)
        },
    )
    .await;

    // A wiped node is healed by both, each in its own shards.
    let mut c2 = tc.direct(2).await;
    let _: () = common::command(&mut c2, &["FLUSHALL"]).await;
    wait_until(Duration::from_secs(30), "node 2 healed", || async {
        versioned_keys(&tc, 2).await == KEYS as u64
    })
    .await;
    // Totals count finished sweeps: wait for the passes still running.
    let repaired = || {
        let a = first.sweeper().status().totals.keys_repaired_per_node[2];
        (
            a,
            second.sweeper().status().totals.keys_repaired_per_node[2],
        )
    };
    // As long as the heal may take: on a loaded machine the last pass ends well after the data
    // is back.
    wait_until(
        Duration::from_secs(30),
        "repair passes finished",
        || async {
            let (a, b) = repaired();
            a + b >= KEYS as u64
        },
    )
    .await;
    let (a, b) = repaired();
    assert!(
        a > 0 && b > 0,
        "both instances repaired their shards: {a} + {b}"
    );
    assert_eq!(a + b, KEYS as u64, "no key repaired twice");
    wait_until(Duration::from_secs(10), "node 2 back in sync", || async {
        tc.health(2).await == "up"
    })
    .await;

    // The second instance dies without handing its shards back; the first takes them over
    // once the leases expire, and heals a newly wiped node on its own.
    second.kill().await;
    wait_until(Duration::from_secs(15), "all shards taken over", || async {
        owned(first).len() == SHARDS as usize
    })
    .await;
    let before = first.sweeper().status().totals.keys_repaired_per_node[1];
    let mut c1 = tc.direct(1).await;
    let _: () = common::command(&mut c1, &["FLUSHALL"]).await;
    wait_until(
        Duration::from_secs(30),
        "node 1 healed by the survivor",
        || async {
            let repaired = first.sweeper().status().totals.keys_repaired_per_node[1] - before;
            versioned_keys(&tc, 1).await == KEYS as u64 && repaired >= KEYS as u64
        },
    )
    .await;
    let repaired = first.sweeper().status().totals.keys_repaired_per_node[1] - before;
    assert_eq!(repaired, KEYS as u64);
    for i in (0..KEYS).step_by(97) {
        assert_eq!(
            tc.raw_value(1, format!("k{i}").as_bytes()).await,
            Some(format!("v{i}").into_bytes())
        );
    }
    tc.shutdown().await;
}

/// An exchange longer than the lease (a node far behind, its repairs throttled) keeps its
/// shards leased while it runs: otherwise another instance would take them over and do the
/// same work. (Leases used to be renewed only when an exchange started.) Every held shard's
/// lease must name this instance, on a node, all through a catch-up several leases long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_exchange_keeps_its_shards_leased() {
    const LEASE_MS: u64 = 600;
    const KEYS: usize = 1200;
    let mut tc = TestCluster::start_with(3, |c| {
        c.sync.exchange_interval_ms = 300;
        c.sync.lease_ms = LEASE_MS;
        c.sync.full_sweep_cron = String::new();
        c.sync.in_flight_window_ms = 0;
        c.sync.shards = 4;
        // 1,200 repairs take three seconds or more: five leases.
        c.sync.max_repairs_per_sec = 400;
    })
    .await;
    for i in 0..KEYS {
        let r = tc.put(&format!("k{i}"), "old", "consistency=all").await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    tc.isolate(2).await;
    for i in 0..KEYS {
        let r = tc.put(&format!("k{i}"), "new", "consistency=quorum").await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    tc.resume_without_hints(2).await;
    let app = tc.app();
    let me = app.sweeper().status().leases.instance;
    let mut node0 = tc.direct(0).await;
    let mut node2 = tc.direct(2).await;
    let names: Vec<String> = (0..KEYS).map(|i| format!("k{i}")).collect();
    let started = std::time::Instant::now();
    loop {
        for shard in owned(app) {
            let holder: Option<String> = redis::cmd("GET")
                .arg(common::reserved_key(&format!("lease:{shard}")))
                .query_async(&mut node0)
                .await
                .unwrap();
            assert_eq!(
                holder.as_deref(),
                Some(me.as_str()),
                "shard {shard}'s lease after {:?} of the catch-up",
                started.elapsed()
            );
        }
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&names)
            .query_async(&mut node2)
            .await
            .unwrap();
        if values.iter().all(|v| v.as_deref() == Some("new")) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "node 2 not caught up"
        );
        // Sampling the leases over the catch-up, not waiting for them.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        started.elapsed() > Duration::from_millis(3 * LEASE_MS),
        "the catch-up took only {:?}: too short to outlast a lease",
        started.elapsed()
    );
    tc.shutdown().await;
}
