//! Negative controls for the CRDT checks, with faults built by hand so they replay exactly.

use crate::common::wait_until;
use crate::crdt::workload::{self, CounterOp, CrdtHistory, Reply, Timing, wall_us};
use crate::crdt::{check_after_heal, client_for, start_instances};
use crate::run::converge;
use quorumd::app::App;
use quorumd::pool::Health;
use quorumd_testkit::nemesis::Nemesis;
use quorumd_testkit::nemesis::proxy::LinkFault;
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
    crate::run::shut_down(apps).await;
}

/// A key's value, state and metadata entry on one node, as DUMPs (`None`: no such key).
struct Copy {
    value: Option<Vec<u8>>,
    state: Option<Vec<u8>>,
    meta: Vec<u8>,
}

fn keys_of(app: &App, name: &str) -> (String, String) {
    let loc = app.store().locate(name.as_bytes()).unwrap();
    let prefix = &app.store().settings().layout.prefix;
    (loc.meta_key.to_string(), format!("{prefix}c:{name}"))
}

async fn direct(nemesis: &Nemesis, node: usize) -> redis::aio::MultiplexedConnection {
    redis::Client::open(nemesis.cluster.nodes[node].url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn copy_of(nemesis: &Nemesis, app: &App, node: usize, name: &str) -> Copy {
    let (meta_key, state_key) = keys_of(app, name);
    let (value, state, meta) = redis::pipe()
        .cmd("DUMP")
        .arg(name)
        .cmd("DUMP")
        .arg(&state_key)
        .cmd("HGET")
        .arg(&meta_key)
        .arg(name)
        .query_async(&mut direct(nemesis, node).await)
        .await
        .unwrap();
    Copy { value, state, meta }
}

/// Overwrites node `node`'s copy of `name`, as a last-writer-wins repair that picked `copy`
/// would.
async fn overwrite(nemesis: &Nemesis, app: &App, node: usize, name: &str, copy: &Copy) {
    let (meta_key, state_key) = keys_of(app, name);
    let mut pipe = redis::pipe();
    for (key, dump) in [(name, &copy.value), (state_key.as_str(), &copy.state)] {
        match dump {
            Some(d) => pipe.cmd("RESTORE").arg(key).arg(0).arg(d).arg("REPLACE"),
            None => pipe.cmd("DEL").arg(key),
        };
    }
    pipe.cmd("HSET").arg(&meta_key).arg(name).arg(&copy.meta);
    let _: () = pipe
        .query_async(&mut direct(nemesis, node).await)
        .await
        .unwrap();
}

/// A set and a map updated while node 2 was cut off, then converged correctly; then node 2's
/// stale copy is written over the others, as a last-writer-wins repair would. Over one node the
/// convergence check must report the difference; over all, the model check must report the
/// removed member that is back, the added member that is gone and the overwritten field.
pub async fn last_writer_wins_copy_is_reported() {
    let mut nemesis = Nemesis::start(3).await.unwrap();
    let apps = start_instances(&nemesis).await;
    let client = client_for(&apps);
    let mut history = CrdtHistory::default();
    let acked = |reply: Reply, invoked| {
        let Reply::Acked(t) = reply else {
            panic!("a majority is up: the update must be acknowledged");
        };
        Timing {
            invoked,
            decided: Some(t),
            acked: true,
        }
    };
    let set_op = async |via, member: &str, add| {
        let invoked = wall_us();
        let timing = acked(client.set_op(via, member, add).await, invoked);
        workload::SetOp {
            member: member.into(),
            add,
            timing,
        }
    };
    history.set.push(set_op(0, "m0", true).await);
    let invoked = wall_us();
    let timing = acked(client.map_op(1, "f0", Some("old"), false).await, invoked);
    history.map.push(workload::MapOp {
        field: "f0".into(),
        value: Some("old".into()),
        timing,
    });
    for app in &apps {
        assert!(converge(app).await.is_some(), "no convergence");
    }
    let stale = [
        copy_of(&nemesis, &apps[0], 2, workload::SET).await,
        copy_of(&nemesis, &apps[0], 2, workload::MAP).await,
    ];
    nemesis.proxies[2].set(LinkFault::Blackhole);
    wait_health(&apps, 2, Health::Down).await;
    history.set.push(set_op(1, "m0", false).await);
    history.set.push(set_op(0, "m1", true).await);
    // A later millisecond than the first write's acknowledgement, so certainly newer.
    tokio::time::sleep(Duration::from_millis(2)).await;
    let invoked = wall_us();
    let timing = acked(client.map_op(0, "f0", Some("new"), false).await, invoked);
    history.map.push(workload::MapOp {
        field: "f0".into(),
        value: Some("new".into()),
        timing,
    });
    nemesis.heal_all().unwrap();
    wait_health(&apps, 2, Health::Up).await;
    for app in &apps {
        assert!(converge(app).await.is_some(), "no convergence");
    }
    let clean = check_after_heal(&nemesis, &apps, &client, &history).await;
    assert!(clean.is_empty(), "the correct run was flagged: {clean:?}");

    let names = [workload::SET, workload::MAP];
    for (name, copy) in names.iter().zip(&stale) {
        overwrite(&nemesis, &apps[0], 0, name, copy).await;
    }
    let found = check_after_heal(&nemesis, &apps, &client, &history).await;
    assert!(
        found
            .iter()
            .any(|v| v.contains("not converged") && v.contains("differs")),
        "the overwritten node went unreported: {found:?}"
    );
    for node in [1, 2] {
        for (name, copy) in names.iter().zip(&stale) {
            overwrite(&nemesis, &apps[0], node, name, copy).await;
        }
    }
    let found = check_after_heal(&nemesis, &apps, &client, &history).await;
    for expected in [
        "set: m0 is present",
        "set: m1 is absent",
        "map: field f0 is \"old\"",
    ] {
        assert!(
            found.iter().any(|v| v.starts_with(expected)),
            "{expected:?} went unreported: {found:?}"
        );
    }
    crate::run::shut_down(apps).await;
}
