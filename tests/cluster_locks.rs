//! Locks over Redis Cluster replicas when a master loses its data: the replica is kept out of
//! the lock's majority until the longest lock TTL has passed and its fences of the lost slots
//! were caught up, so that a second holder can neither overlap the first nor get a lower
//! fence. The same scenario is run twice more as negative controls, each of which must show the
//! violation it allows, or the scenario would not test the gate: counting the master at once
//! (an overlap and a fence that does not grow), and counting it after the delay without the
//! fence catch-up (a fence that does not grow).

use quorumd::config::LocksConfig;
use quorumd::locks::{LockError, LockService, UnsafeKnobs};
use quorumd_testkit::checker::locks::{Held, Violation, check};
use quorumd_testkit::cluster::{TestCluster, wait_until};
use std::time::{Duration, Instant};

/// Three replicas of this many masters each; node `r * MASTERS + i` is master i of replica r.
const MASTERS: usize = 3;
const NAME: &str = "r";

/// The node index of the master of replica `r` that owns `NAME`'s slot (a lock's keys share
/// the slot of its name), per `/v1/status`.
async fn owner_of_the_lock(tc: &TestCluster, r: usize) -> usize {
    let slot = quorumd_core::layout::key_slot(NAME.as_bytes()) as u64;
    let (_, status) = tc.json("/v1/status").await;
    let shards = status["nodes"][r]["shards"].as_array().cloned();
    let shard = shards
        .into_iter()
        .flatten()
        .find(|s| {
            s["slots"].as_array().unwrap().iter().any(|range| {
                (range[0].as_u64().unwrap()..=range[1].as_u64().unwrap()).contains(&slot)
            })
        })
        .unwrap_or_else(|| panic!("no shard of replica {r} owns slot {slot}: {status}"));
    let master = shard["master"].as_str().unwrap();
    (r * MASTERS..(r + 1) * MASTERS)
        .find(|&i| master.ends_with(&format!(":{}", tc.cluster.nodes[i].port())))
        .unwrap_or_else(|| panic!("{master} is none of replica {r}'s nodes"))
}

/// Waits until replica `r`'s shard on node `node` is up (`true`) or down, per `/v1/status`.
async fn wait_shard(tc: &TestCluster, r: usize, node: usize, up: bool) {
    let port = format!(":{}", tc.cluster.nodes[node].port());
    wait_until(
        Duration::from_secs(15),
        &format!("replica {r}'s shard on node {node} up: {up}"),
        || async {
            let (_, status) = tc.json("/v1/status").await;
            status["nodes"][r]["shards"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["master"].as_str().unwrap().ends_with(&port) && s["up"] == up)
        },
    )
    .await;
}

/// What the scenario produced: both holders' intervals, and each one's fence.
struct Outcome {
    history: Vec<Held>,
    fence_a: u64,
    fence_b: u64,
}

/// A takes the lock while replica 2's owner of the lock's slot is paused, so only replicas 0
/// and 1 hold A's key and fence. Replica 0's owner then restarts empty. B, another lock
/// service (its fence hints never saw A's fence), asks while A is valid if `early` (the gate
/// must refuse it; the attempt itself raises fence counters where its script ran, so a test of
/// the catch-up leaves it out), and then, unless the gate is off, after the longest TTL with
/// replica 1's owner paused, so that B's majority is replicas 0 and 2: only the catch-up can
/// have carried A's fence there.
async fn restart_a_master_under_a_held_lock(knobs: UnsafeKnobs, early: bool) -> Outcome {
    let max_ttl = 4000;
    let mut tc = TestCluster::start_clusters(3, (MASTERS, 0), |c| {
        c.locks.max_ttl_ms = max_ttl;
    })
    .await;
    if knobs.skip_fence_catch_up {
        // The service's own lock gate would catch the master up in the background.
        tc.app().locks().pause_gate_worker();
    }
    let pool = tc.app().store().pool().clone();
    let layout = tc.app().store().settings().layout.clone();
    let cfg = LocksConfig {
        max_ttl_ms: max_ttl,
        ..LocksConfig::default()
    };
    let locks = LockService::with_unsafe_knobs(pool.clone(), cfg.clone(), &layout, knobs);
    let other = LockService::with_unsafe_knobs(pool.clone(), cfg, &layout, knobs);
    let t0 = Instant::now();
    let now_us = || t0.elapsed().as_micros() as u64;
    // A fence counter above 1 first, so that a lost one shows.
    for _ in 0..3 {
        let g = locks.acquire(NAME, 1000, 2000, "warm").await.unwrap();
        locks.release(NAME, &g.token).await.unwrap();
    }
    let owners: Vec<usize> = lock_owners(&tc).await;

    tc.cluster.nodes[owners[2]].pause();
    wait_shard(&tc, 2, owners[2], false).await;
    let sent_a = now_us();
    let a = locks
        .acquire(NAME, max_ttl, 0, "A")
        .await
        .expect("A on replicas 0 and 1");
    let got_a = now_us();
    tc.cluster.nodes[owners[2]].resume();
    wait_shard(&tc, 2, owners[2], true).await;
    tc.cluster.nodes[owners[0]]
        .restart()
        .expect("restart the master");
    wait_until(
        Duration::from_secs(15),
        "replica 0 seen losing data",
        || {
            let pool = pool.clone();
            async move { pool.node(0).last_recovering_since_ms().is_some() }
        },
    )
    .await;

    if !knobs.count_restarted_at_once {
        if early {
            // Replica 0 forgot A's lock but does not count for its slot: no majority for B.
            match other.acquire(NAME, 500, 300, "B").await {
                Err(LockError::Held { .. } | LockError::NoQuorum(_)) => {}
                result => panic!("B must not get the lock while A is valid: {result:?}"),
            }
        }
        // After the longest TTL and the catch-up of the lost slots' fences, it counts again.
        wait_until(
            Duration::from_millis(max_ttl) + Duration::from_secs(15),
            "replica 0 counts again",
            || async { other.counts_toward_majority(0, Some(NAME.as_bytes())) },
        )
        .await;
    }
    tc.cluster.nodes[owners[1]].pause();
    wait_shard(&tc, 1, owners[1], false).await;
    let sent_b = now_us();
    let b = other
        .acquire(NAME, 500, 2000, "B")
        .await
        .expect("B on replicas 0 and 2");
    let got_b = now_us();
    tc.cluster.nodes[owners[1]].resume();
    let held = |holder: &str, fence: u64, sent: u64, got: u64, validity_ms: u64| Held {
        resource: NAME.into(),
        holder: holder.into(),
        fence: Some(fence),
        start: got,
        end: sent + validity_ms * 1000,
    };
    let history = vec![
        held("A", a.fence, sent_a, got_a, a.validity_ms),
        held("B", b.fence, sent_b, got_b, b.validity_ms),
    ];
    tc.shutdown().await;
    Outcome {
        history,
        fence_a: a.fence,
        fence_b: b.fence,
    }
}

impl Outcome {
    /// Whether the checker finds (an overlap, a fence that did not increase) in the history.
    fn violations(&self) -> (bool, bool) {
        let found = check(&self.history);
        (
            found.iter().any(|v| matches!(v, Violation::Overlap { .. })),
            found
                .iter()
                .any(|v| matches!(v, Violation::FenceNotIncreasing { .. })),
        )
    }
}

/// The owners of the lock's slot in each replica.
async fn lock_owners(tc: &TestCluster) -> Vec<usize> {
    let mut owners = Vec::new();
    for r in 0..3 {
        owners.push(owner_of_the_lock(tc, r).await);
    }
    owners
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_that_lost_a_held_lock_keeps_a_second_holder_out_while_it_is_valid() {
    let outcome = restart_a_master_under_a_held_lock(UnsafeKnobs::default(), true).await;
    let violations = check(&outcome.history);
    assert!(violations.is_empty(), "{violations:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_that_lost_a_held_lock_counts_again_only_with_its_fences_caught_up() {
    let outcome = restart_a_master_under_a_held_lock(UnsafeKnobs::default(), false).await;
    assert!(
        outcome.fence_b > outcome.fence_a,
        "B's fence {} after A's {}",
        outcome.fence_b,
        outcome.fence_a
    );
    let violations = check(&outcome.history);
    assert!(violations.is_empty(), "{violations:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_counting_a_master_that_lost_its_data_at_once_is_caught() {
    let knobs = UnsafeKnobs {
        count_restarted_at_once: true,
        ..UnsafeKnobs::default()
    };
    let outcome = restart_a_master_under_a_held_lock(knobs, false).await;
    let (overlap, fence) = outcome.violations();
    assert!(overlap, "no overlap: {:?}", check(&outcome.history));
    assert!(
        fence,
        "B's fence {} read from replicas without A's fence {}",
        outcome.fence_b, outcome.fence_a
    );
}

/// The gate's delay alone is not enough: without the catch-up of the lost slots' fences, B
/// (after A expired, so no overlap) gets a fence no higher than A's from replicas 0 and 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_a_master_counted_again_without_the_fence_catch_up_is_caught() {
    let knobs = UnsafeKnobs {
        skip_fence_catch_up: true,
        ..UnsafeKnobs::default()
    };
    let outcome = restart_a_master_under_a_held_lock(knobs, false).await;
    let (overlap, fence) = outcome.violations();
    assert!(
        fence,
        "B's fence {} after A's {}",
        outcome.fence_b, outcome.fence_a
    );
    assert!(!overlap, "the delay still kept B out while A was valid");
}
