//! The fault-injection suite: KV workloads at each consistency level race seeded random fault
//! schedules (proxy faults, pauses, kills, one empty restart) against real nodes; after the heal
//! the checkers must find nothing. The negative controls replay the same checks on runs that
//! are broken on purpose and require a violation.
//!
//! `make test` runs `FAULT_SEEDS` seeds (default 3) per workload; `make torture SEEDS=200` runs
//! many and writes `target/torture/report.md`. `FAULT_SEED=n` replays exactly seed n.

#[path = "../common/mod.rs"]
mod common;
mod crdt;
mod report;
mod run;
mod workload;

use quorumd::nemesis::Nemesis;
use quorumd::nemesis::proxy::LinkFault;
use run::{KvRun, RunResult};
use std::collections::BTreeMap;
use std::time::Duration;

fn seeds() -> Vec<u64> {
    if let Ok(one) = std::env::var("FAULT_SEED") {
        return vec![one.parse().expect("FAULT_SEED is a number")];
    }
    let n: u64 = std::env::var("FAULT_SEEDS")
        .ok()
        .map(|s| s.parse().expect("FAULT_SEEDS is a number"))
        .unwrap_or(3);
    (1..=n).collect()
}

async fn suite(level: &'static str) {
    let mut results: Vec<RunResult> = Vec::new();
    for seed in seeds() {
        let r = KvRun::new(level, seed).run().await;
        eprintln!(
            "kv/{level} seed {seed}: {} ops, {} faults, {} violations, converged in {:?}",
            r.operations,
            r.faults.total(),
            r.violations.len(),
            r.convergence
        );
        results.push(r);
    }
    report::write(&format!("kv-{level}"), &results);
    let bad: Vec<String> = results
        .iter()
        .flat_map(|r| {
            r.violations
                .iter()
                .map(move |v| format!("seed {}: {v}", r.seed))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{} violation(s) (replay one with FAULT_SEED=<seed>):\n{}",
        bad.len(),
        bad.join("\n")
    );
    // The runs did something: operations completed and faults were injected.
    assert!(
        results
            .iter()
            .all(|r| r.operations > 50 && r.faults.total() > 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kv_quorum_under_random_faults() {
    suite("quorum").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kv_linearizable_under_random_faults() {
    suite("linearizable").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crdts_under_random_faults() {
    crdt::suite().await;
}

/// Negative control for the CRDT checks: an increment retried without its idempotency key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn negative_control_an_increment_retried_without_its_key_is_counted_twice() {
    crdt::controls::retry_without_key_is_counted_twice().await;
}

/// Negative control for the CRDT convergence and set/map checks: a last-writer-wins copy of a
/// stale node's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn negative_control_a_last_writer_wins_copy_of_crdt_state_is_reported() {
    crdt::controls::last_writer_wins_copy_is_reported().await;
}

/// Negative control for the lost-write check: a write acknowledged at level `one` by the only
/// node that could take it, whose data is then wiped. The same check that passes above must
/// report the loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn negative_control_a_wiped_sole_copy_is_reported_lost() {
    let mut nemesis = Nemesis::start(3).await.unwrap();
    let tc = Quorumd::start(&nemesis).await;
    for i in [1, 2] {
        nemesis.proxies[i].set(LinkFault::Blackhole);
    }
    for i in [1, 2] {
        tc.wait_health(i, "down").await;
    }
    let mut history = workload::History::default();
    let version = tc
        .put("k0", "1", "one")
        .await
        .expect("level one takes one node");
    history.writes.push(quorumd::checker::durability::Write {
        key: "k0".into(),
        value: b"1".to_vec(),
        acked: Some(version),
        invoked: 0,
        completed: Some(1),
    });
    tokio::task::block_in_place(|| nemesis.cluster.nodes[0].restart_empty()).unwrap();
    nemesis.heal_all().unwrap();
    for i in 0..3 {
        tc.wait_health(i, "up").await;
    }
    // Node 0 is "up" again once the recovery exchange has run: nothing is left to heal from.
    let finals = BTreeMap::from([("k0".to_string(), vec![None, None, None])]);
    let nodes_hold_nothing = run::node_entries(&nemesis, &tc.app, "k0")
        .await
        .iter()
        .all(Option::is_none);
    assert!(
        nodes_hold_nothing,
        "the write survived; the control proves nothing"
    );
    let found = run::check("one", &history, &finals);
    assert!(
        found.iter().any(|v| v.contains("lost")),
        "the lost write went unreported: {found:?}"
    );
    tc.app.shutdown().await.unwrap();
}

/// Negative control for the stale-read check: a node that missed a write (cut off, its hints
/// dropped) answers a read at level `one` first (the others are slowed down). The check must
/// report the stale read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn negative_control_a_stale_read_at_level_one_is_reported() {
    let nemesis = Nemesis::start(3).await.unwrap();
    let tc = Quorumd::start(&nemesis).await;
    nemesis.proxies[2].set(LinkFault::Blackhole);
    tc.wait_health(2, "down").await;
    let mut history = workload::History::default();
    let version = tc.put("k0", "1", "quorum").await.expect("a majority is up");
    history.writes.push(quorumd::checker::durability::Write {
        key: "k0".into(),
        value: b"1".to_vec(),
        acked: Some(version),
        invoked: 0,
        completed: Some(1),
    });
    tc.drop_hints_for(&nemesis, 2).await;
    for i in [0, 1] {
        nemesis.proxies[i].set(LinkFault::Latency(Duration::from_millis(300)));
    }
    nemesis.proxies[2].heal();
    tc.wait_health(2, "up").await;
    let r = tc
        .http
        .get(format!("{}/v1/kv/k0?consistency=one", tc.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        reqwest::StatusCode::NOT_FOUND,
        "the lagging node did not answer first"
    );
    history.reads.push(quorumd::checker::durability::Read {
        key: "k0".into(),
        version: None,
        invoked: 2,
        completed: 3,
    });
    let finals = BTreeMap::from([(
        "k0".to_string(),
        run::node_entries(&nemesis, &tc.app, "k0").await,
    )]);
    // `quorum` is the level whose promise is checked; the read was made at `one`.
    let found = run::check("quorum", &history, &finals);
    assert!(
        found
            .iter()
            .any(|v| v.contains("read sent at 2 returned nothing")),
        "the stale read went unreported: {found:?}"
    );
    tc.app.shutdown().await.unwrap();
}

/// quorumd over a nemesis, for the hand-built negative controls.
struct Quorumd {
    app: quorumd::app::App,
    base: String,
    http: reqwest::Client,
}

impl Quorumd {
    async fn start(nemesis: &Nemesis) -> Quorumd {
        let cfg = common::test_config(nemesis.urls());
        let app = quorumd::app::App::start(cfg.validate().unwrap())
            .await
            .unwrap();
        Quorumd {
            base: format!("http://{}", app.http_addr()),
            app,
            http: reqwest::Client::new(),
        }
    }

    async fn wait_health(&self, i: usize, want: &str) {
        let url = format!("{}/v1/status", self.base);
        common::wait_until(
            Duration::from_secs(10),
            &format!("node {i} {want}"),
            || async {
                let s: serde_json::Value = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                s["nodes"][i]["health"] == want
            },
        )
        .await;
    }

    /// PUT; the acknowledged version, or `None` when refused.
    async fn put(&self, key: &str, value: &str, level: &str) -> Option<String> {
        let r = self
            .http
            .put(format!("{}/v1/kv/{key}?consistency={level}", self.base))
            .body(value.to_string())
            .send()
            .await
            .unwrap();
        (r.status() == reqwest::StatusCode::OK).then(|| {
            r.headers()[reqwest::header::ETAG]
                .to_str()
                .unwrap()
                .trim_matches('"')
                .to_string()
        })
    }

    /// Deletes the hints the other nodes hold for node `i`, so it stays behind when it returns.
    async fn drop_hints_for(&self, nemesis: &Nemesis, i: usize) {
        let identity = format!("{}/0", nemesis.proxies[i].addr());
        let key = quorumd::store::hint_key("qd:", &identity);
        for (n, node) in nemesis.cluster.nodes.iter().enumerate() {
            if n != i {
                let mut c = redis::Client::open(node.url())
                    .unwrap()
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap();
                let _: () = redis::cmd("DEL")
                    .arg(&key)
                    .query_async(&mut c)
                    .await
                    .unwrap();
            }
        }
    }
}
