//! The fault-injection suite: KV workloads at each consistency level race seeded random fault
//! schedules (proxy faults, pauses, kills, one empty restart) against real nodes; after the heal
//! the checkers must find nothing. The negative controls replay the same checks on runs that
//! are broken on purpose and require a violation.
//!
//! `make test` runs `FAULT_SEEDS` seeds (default 3) per workload; `make torture SEEDS=200` runs
//! many and writes `target/torture/report.md`. `FAULT_SEED=n` replays exactly seed n.

use quorumd_testkit::cluster as common;
mod cluster;
mod crdt;
mod direct;
mod locks;
mod queue;
mod report;
mod rmw;
mod run;
mod workload;

use quorumd::locks::{LockService, UnsafeKnobs};
use quorumd::pool::Health;
use quorumd::queue::QueueService;
use quorumd_testkit::checker::locks::Held;
use quorumd_testkit::nemesis::Nemesis;
use quorumd_testkit::nemesis::proxy::LinkFault;
use run::{KvRun, RunResult};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// One workload's run for every seed, in order.
async fn each_seed<Fut: std::future::Future<Output = RunResult>>(
    run: impl Fn(u64) -> Fut,
) -> Vec<RunResult> {
    let mut results = Vec::new();
    for seed in seeds() {
        results.push(run(seed).await);
    }
    results
}

async fn suite(level: &'static str) {
    let results = each_seed(|seed| async move { KvRun::new(level, seed).run().await }).await;
    finish(
        &format!("kv-{level}"),
        "Convergence: from the heal to a clean exchange.",
        &results,
    );
}

/// Prints each run, writes the report, and fails on any violation or on runs that did nothing.
fn finish(name: &str, note: &str, results: &[RunResult]) {
    for r in results {
        eprintln!(
            "{name} seed {}: {} ops, {} faults, {} violations, converged in {:?}, {:?}",
            r.seed,
            r.operations,
            r.faults.total(),
            r.violations.len(),
            r.convergence,
            r.counters
        );
    }
    report::write(name, note, results);
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
async fn direct_writes_racing_quorumd_under_random_faults() {
    let results = each_seed(|seed| async move { direct::DirectRun::new(seed).run().await }).await;
    finish(
        "direct",
        "KV clients at quorum through quorumd while another client writes the same keys straight to the nodes, full sweeps run and live detection adopts. Convergence: from the heal (and a full sweep) to a clean exchange.",
        &results,
    );
    assert!(results.iter().all(|r| r.counters["direct writes"] > 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locks_under_random_faults() {
    let results = each_seed(|seed| async move { locks::LockRun::new(seed).run().await }).await;
    finish(
        "locks",
        "HTTP clients through two quorumd instances. No convergence: locks keep no replicated state to converge.",
        &results,
    );
    assert!(results.iter().all(|r| r.counters["grants"] > 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queue_under_random_faults() {
    let results = each_seed(|seed| async move { queue::QueueRun::new(seed).run().await }).await;
    finish(
        "queue",
        "HTTP producers and consumers through two quorumd instances; one consumer abandons its leases while the faults run. Convergence: from the heal until the queue is drained.",
        &results,
    );
    assert!(results.iter().all(|r| r.counters["items"] > 10));
}

/// RESP read-modify-writes (INCR, APPEND, RPUSH/LPOP, ZINCRBY, MULTI/EXEC) while nodes are
/// paused and killed, through instances of one process and of two: exactly once must hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resp_read_modify_writes_under_random_faults() {
    let runs = each_seed(|seed| async move { rmw::RmwRun::new(seed).run().await }).await;
    finish(
        "rmw",
        "RESP clients run INCR/INCRBY, APPEND, RPUSH/LPOP, ZINCRBY, MULTI/EXEC, XADD and XREADGROUP of one consumer group while nodes are paused and killed (`checker::rmw`; no stream entry delivered twice or skipped). In-process keys go through two instances of one process (which also share per-key turns); cross-process keys through one of those and a `quorumd run` process, ordered by ballots alone (docs/ARCHITECTURE.md, \"Read-modify-writes across processes\"). No acknowledged change may be lost or applied twice in either group.",
        &runs,
    );
    assert!(
        runs.iter()
            .all(|r| r.counters["in-process ops"] > 50 && r.counters["cross-process ops"] > 50)
    );
}

/// Negative control for `checker::rmw` end to end: one client's commands go to other keys
/// than those it records them for, as from a service that acknowledges writes and drops them.
/// The same reader of the final state and checker must report the lost writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn negative_control_dropped_acknowledged_rmw_writes_are_reported() {
    let r = rmw::RmwRun {
        seed: 1,
        duration: Duration::from_secs(3),
        lie: true,
    }
    .run()
    .await;
    for expected in ["acknowledged increment lost", "acknowledged append"] {
        assert_reported(&r.violations, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kv_over_redis_clusters_under_random_faults() {
    let results = each_seed(|seed| async move { cluster::ClusterRun::new(seed).run().await }).await;
    finish(
        "kv-clusters",
        "KV clients at quorum over three Redis Clusters of three masters while masters are paused, or killed and restarted empty, one at a time. Convergence: from the heal to a clean exchange.",
        &results,
    );
}

/// Negative control for the cluster run's checks: an acknowledged write wiped from every
/// master of every replica behind quorumd's back must be reported lost by the same reader
/// of the replicas and the same checker.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn negative_control_a_write_wiped_from_every_cluster_is_reported_lost() {
    let tc = common::TestCluster::start_clusters(3, (3, 0), |_| {}).await;
    let r = tc.put("k0", "1", "consistency=quorum").await;
    assert!(r.status().is_success(), "{}", r.status());
    let version = r.headers()[reqwest::header::ETAG]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_string();
    let mut history = workload::History::default();
    history.writes.push(k0_acked(version));
    let urls = tc
        .app()
        .store()
        .pool()
        .nodes()
        .iter()
        .map(|n| n.display.clone())
        .collect::<Vec<_>>();
    // Acknowledged before the last replica applies it: on every replica first, or it could
    // land after the wipe.
    common::wait_until(Duration::from_secs(10), "k0 on every replica", || async {
        cluster::entries(tc.app(), &urls, "k0")
            .await
            .iter()
            .all(Option::is_some)
    })
    .await;
    for server in &tc.cluster.nodes {
        let mut c = common::direct(&server.url()).await;
        let _: () = common::command(&mut c, &["FLUSHALL"]).await;
    }
    let finals = BTreeMap::from([(
        "k0".to_string(),
        cluster::entries(tc.app(), &urls, "k0").await,
    )]);
    assert_eq!(
        finals["k0"],
        vec![None, None, None],
        "the reader sees the wipe"
    );
    let found = run::check("quorum", &history, &finals);
    assert_reported(&found, "lost");
    tc.shutdown().await;
}

/// The write of "1" to k0 that the controls make first, acknowledged with `version`.
fn k0_acked(version: String) -> quorumd_testkit::checker::durability::Write {
    quorumd_testkit::checker::durability::Write {
        key: "k0".into(),
        value: b"1".to_vec(),
        acked: Some(version),
        invoked: 0,
        completed: Some(1),
    }
}

/// A negative control's verdict: one of the violations `found` must mention `expected`.
fn assert_reported(found: &[String], expected: &str) {
    assert!(
        found.iter().any(|v| v.contains(expected)),
        "{expected:?} went unreported: {found:?}"
    );
}

/// Nodes behind proxies and one quorumd for the hand-built lock and queue controls; TTLs up to
/// 10 s, so a holder stays valid while the faults are set up by hand.
async fn control_cluster() -> (
    Nemesis,
    quorumd::config::Config,
    quorumd::app::App,
    Arc<quorumd::pool::NodePool>,
) {
    let nemesis = Nemesis::start(3).await.unwrap();
    let mut cfg = locks::config(&nemesis);
    cfg.locks.max_ttl_ms = 10_000;
    cfg.queues.max_lease_ms = 10_000;
    let (mut apps, _) = run::start_instances(&cfg, 1).await;
    let app = apps.remove(0);
    let pool = app.store().pool().clone();
    (nemesis, cfg, app, pool)
}

/// Refuses node `i`'s connections (open ones reset, new ones refused) and waits until quorumd
/// marks it down; nothing sent to it is held back to land later.
async fn cut(nemesis: &Nemesis, pool: &quorumd::pool::NodePool, i: usize) {
    nemesis.proxies[i].set(LinkFault::Refuse);
    nemesis.proxies[i].reset_connections();
    wait_for_health(pool, i, |h| h == Health::Down).await;
}

async fn reconnect(nemesis: &Nemesis, pool: &quorumd::pool::NodePool, i: usize) {
    nemesis.proxies[i].heal();
    wait_for_health(pool, i, |h| h != Health::Down).await;
}

async fn wait_for_health(pool: &quorumd::pool::NodePool, i: usize, want: impl Fn(Health) -> bool) {
    common::wait_until(Duration::from_secs(10), &format!("node {i} health"), || {
        let ok = want(pool.node(i).health());
        async move { ok }
    })
    .await;
}

/// Negative control for the lock checks: a lock granted by one node of three (`UnsafeKnobs`).
/// A gets it from node 0 while nodes 1 and 2 are cut off; then node 0 is cut off and B gets it
/// from nodes 1 and 2 (through another instance) while A is still valid. The checks the random runs use must report the
/// overlap, the repeated fence and the write the fenced resource refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn negative_control_a_minority_lock_is_reported() {
    let (nemesis, cfg, app, pool) = control_cluster().await;
    // A and B are two instances: one instance's fence hints would give B a fence above A's.
    let minority = || {
        LockService::with_unsafe_knobs(
            pool.clone(),
            cfg.locks.clone(),
            &common::default_layout(),
            UnsafeKnobs {
                required: Some(1),
                ..UnsafeKnobs::default()
            },
        )
    };
    let (instance_a, instance_b) = (minority(), minority());
    let t0 = Instant::now();
    let now = || t0.elapsed().as_micros() as u64;
    let mut history = locks::LockHistory::default();
    let take = async |locks: &LockService, holder: &str, history: &mut locks::LockHistory| {
        let sent = now();
        let g = locks
            .acquire("lock0", 8000, 0, holder)
            .await
            .expect("one node grants it");
        let got = now();
        history
            .fences
            .push(("lock0".into(), holder.into(), g.fence));
        history.write("lock0", holder, g.fence, got);
        history.held.push(Held {
            resource: "lock0".into(),
            holder: holder.into(),
            fence: Some(g.fence),
            start: got,
            end: sent + g.validity_ms * 1000,
        });
    };
    for i in [1, 2] {
        cut(&nemesis, &pool, i).await;
    }
    take(&instance_a, "A", &mut history).await;
    for i in [1, 2] {
        reconnect(&nemesis, &pool, i).await;
    }
    cut(&nemesis, &pool, 0).await;
    take(&instance_b, "B", &mut history).await;
    let found = locks::check(&history);
    for expected in ["at the same time", "granted to both", "stale write"] {
        assert_reported(&found, expected);
    }
    app.shutdown().await.unwrap();
}

/// Negative control for the queue checks: item leases on a lock that counts a restarted node at
/// once (`UnsafeKnobs`). A claims the item while node 2 is cut off (lease and record on nodes 0
/// and 1); node 2 returns, node 0 restarts empty, node 1 is cut off: B's claim sees only node 0
/// (empty) and node 2 (the item still ready) and gets the item while A holds it. The checks
/// the random runs use must report the double lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn negative_control_a_queue_counting_a_restarted_node_at_once_is_reported() {
    let (mut nemesis, cfg, app, pool) = control_cluster().await;
    let at_once = LockService::with_unsafe_knobs(
        pool.clone(),
        cfg.locks.clone(),
        &common::default_layout(),
        UnsafeKnobs {
            count_restarted_at_once: true,
            ..UnsafeKnobs::default()
        },
    );
    let queues = QueueService::new(app.store().clone(), at_once, cfg.queues.clone());
    let t0 = Instant::now();
    let now = || t0.elapsed().as_micros() as u64;
    let mut history = queue::QueueHistory::default();
    let id = queues.put(queue::QUEUE, "1", 0, 0).await.unwrap();
    history.produced.insert(id.clone());
    let claim = async |holder: &str, history: &mut queue::QueueHistory| {
        let sent = now();
        let item = queues
            .claim(queue::QUEUE, 8000, 0)
            .await
            .expect("a majority answers")
            .expect("the item is claimable");
        assert_eq!(item.id, id);
        history.leases.push(Held {
            resource: item.id,
            holder: holder.into(),
            fence: None,
            start: now(),
            end: sent + item.validity_ms * 1000,
        });
    };
    cut(&nemesis, &pool, 2).await;
    claim("A", &mut history).await;
    reconnect(&nemesis, &pool, 2).await;
    tokio::task::block_in_place(|| nemesis.cluster.nodes[0].restart_empty()).unwrap();
    common::wait_until(Duration::from_secs(10), "node 0 seen restarted", || {
        let seen = pool.node(0).last_recovering_since_ms().is_some()
            && pool.node(0).health() != Health::Down;
        async move { seen }
    })
    .await;
    cut(&nemesis, &pool, 1).await;
    claim("B", &mut history).await;
    nemesis.heal_all().unwrap();
    let found = queue::check(&history, &queue::node_records(&nemesis).await);
    assert_reported(&found, "double lease");
    app.shutdown().await.unwrap();
}

/// Negative control for the lost-item check: an item acknowledged by nodes 0 and 1 (node 2
/// cut off), then both restart empty, breaking the "a majority keeps its data" assumption. The
/// check the random runs use must report the item lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn negative_control_an_item_wiped_from_a_majority_is_reported_lost() {
    let (mut nemesis, _, app, pool) = control_cluster().await;
    cut(&nemesis, &pool, 2).await;
    let (status, body) = locks::post(
        &reqwest::Client::new(),
        format!(
            "http://{}/v1/queues/{}/items",
            app.http_addr(),
            queue::QUEUE
        ),
        serde_json::json!({"payload": 1}),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    let mut history = queue::QueueHistory::default();
    history
        .produced
        .insert(body["id"].as_str().unwrap().to_string());
    for i in [0, 1] {
        tokio::task::block_in_place(|| nemesis.cluster.nodes[i].restart_empty()).unwrap();
    }
    nemesis.heal_all().unwrap();
    let records = queue::node_records(&nemesis).await;
    assert!(
        records.iter().all(|r| r.is_empty()),
        "the item survived; the control proves nothing"
    );
    let found = queue::check(&history, &records);
    assert_reported(&found, "gone from every node");
    app.shutdown().await.unwrap();
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
    history.writes.push(k0_acked(version));
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
    history.writes.push(k0_acked(version));
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
    history
        .reads
        .push(quorumd_testkit::checker::durability::Read {
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
    assert_reported(&found, "read sent at 2 returned nothing");
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
        let app = quorumd::app::App::start(cfg.clone().validate().unwrap())
            .await
            .unwrap();
        Quorumd {
            base: format!("http://{}", app.http_addr()),
            app,
            http: reqwest::Client::new(),
        }
    }

    async fn wait_health(&self, i: usize, want: &str) {
        common::wait_until(
            Duration::from_secs(10),
            &format!("node {i} {want}"),
            || async { common::health_at(&self.http, &self.base, i).await == want },
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
        let others: Vec<String> = (0..nemesis.cluster.nodes.len())
            .filter(|n| *n != i)
            .map(|n| nemesis.cluster.nodes[n].url())
            .collect();
        common::drop_hints(&identity, &others).await;
    }
}
