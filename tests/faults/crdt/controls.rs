//! Negative controls for the CRDT checks, with faults built by hand so they replay exactly.

use crate::common::wait_until;
use crate::crdt::workload::{self, CounterOp, CrdtHistory, Reply, Timing, wall_us};
use crate::crdt::{check_after_heal, client_for, start_instances};
use crate::run::converge;
use quorumd::app::App;
use quorumd::nemesis::Nemesis;
use quorumd::nemesis::proxy::LinkFault;
use quorumd::pool::Health;
use std::time::Duration;

async fn wait_health(apps: &[App], node: usize, want: Health) {
    wait_until(
        Duration::from_secs(10),
        &format!("node {node} {want:?} for every instance"),
        || async {
            apps.iter()
                .all(|a| a.store().pool().nodes()[node].health() == want)
        },
    )
    .await;
}

async fn set_maxmemory(nemesis: &Nemesis, node: usize, bytes: u64) {
    let mut c = redis::Client::open(nemesis.cluster.nodes[node].url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(bytes)
        .query_async(&mut c)
        .await
        .unwrap();
}

/// A client retries a failed increment WITHOUT an idempotency key: the first attempt landed on
/// one node although it failed, so the counter counts it twice. The check must report the
/// plain counter above the acknowledged sum, and must pass the same scenario for the keyed
/// counter, whose retry carries its key.
pub async fn retry_without_key_is_counted_twice() {
    let mut nemesis = Nemesis::start(3).await.unwrap();
    let apps = start_instances(&nemesis).await;
    let client = client_for(&apps);
    // Node 2 cut off, node 1 answering reads but refusing writes (out of memory): an increment
    // reads a quorum, lands on node 0 alone, and fails.
    nemesis.proxies[2].set(LinkFault::Blackhole);
    wait_health(&apps, 2, Health::Down).await;
    set_maxmemory(&nemesis, 1, 1).await;
    let mut history = CrdtHistory::default();
    let mut failed = Vec::new();
    for (name, delta, key) in [
        (workload::PLAIN_COUNTER, 5, None),
        (workload::KEYED_COUNTER, 7, Some("order-1")),
    ] {
        let invoked = wall_us();
        let first = client.increment(0, name, delta, key).await;
        assert!(
            matches!(first, Reply::Failed(_)),
            "the first attempt on {name} should fail with a 5xx"
        );
        failed.push((name, delta, key, invoked));
    }
    set_maxmemory(&nemesis, 1, 0).await;
    nemesis.heal_all().unwrap();
    wait_health(&apps, 2, Health::Up).await;
    for (name, delta, key, invoked) in failed {
        // The retry, through the other instance; with the key only for the keyed counter.
        let Reply::Acked(t) = client.increment(1, name, delta, key).await else {
            panic!("the retry on {name} failed after the heal");
        };
        // Recorded as the one acknowledged increment the client meant.
        let op = CounterOp {
            delta,
            key: key.map(str::to_string),
            timing: Timing {
                invoked,
                decided: Some(t),
                acked: true,
            },
        };
        history.requests += 2;
        if key.is_some() {
            history.keyed.push(op);
        } else {
            history.plain.push(op);
        }
    }
    for app in &apps {
        assert!(converge(app).await.is_some(), "no convergence");
    }
    let found = check_after_heal(&nemesis, &apps, &client, &history).await;
    assert!(
        found
            .iter()
            .any(|v| v.starts_with("plain counter: increments total 10, allowed [5, 5]")),
        "the double count went unreported: {found:?}"
    );
    assert_eq!(
        found.len(),
        1,
        "only the keyless retry is a violation: {found:?}"
    );
    for app in apps {
        app.shutdown().await.unwrap();
    }
}
