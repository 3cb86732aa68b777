//! Redis Cluster replicas changing under load: a slot range resharded between masters, and a
//! master killed so that its replica takes over. Writes run all along; every acknowledged
//! write must survive, and every replica must end with every key and its metadata in the
//! key's slot.

use quorumd::sync::SweepMode;
use quorumd_testkit::cluster::{TestCluster, command, direct};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const KEYS: usize = 120;

/// What a writer had acknowledged: per key, the highest sequence number written.
type Acked = Arc<std::sync::Mutex<BTreeMap<String, u64>>>;

/// Writes `key-{i % KEYS}` = a rising sequence number at quorum until `stop`, recording each
/// acknowledged write. Returns the number of writes refused.
fn start_writer(
    tc: &TestCluster,
    stop: Arc<AtomicBool>,
    acked: Acked,
) -> tokio::task::JoinHandle<u64> {
    let http = tc.http.clone();
    let base = tc.base.clone();
    let seq = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        let mut refused = 0;
        while !stop.load(Ordering::Relaxed) {
            let n = seq.fetch_add(1, Ordering::Relaxed) + 1;
            let key = format!("key-{}", n as usize % KEYS);
            let url = format!("{base}/v1/kv/{key}?consistency=quorum");
            match http.put(url).body(n.to_string()).send().await {
                Ok(r) if r.status().is_success() => {
                    let mut acked = acked.lock().unwrap();
                    let e = acked.entry(key).or_default();
                    *e = (*e).max(n);
                }
                _ => refused += 1,
            }
        }
        refused
    })
}

/// Lets the writer go on until 50 more writes are acknowledged, then stops it.
async fn stop_after_more_writes(
    acked: &Acked,
    stop: Arc<AtomicBool>,
    writer: tokio::task::JoinHandle<u64>,
    what: &str,
) {
    let before = acked.lock().unwrap().values().sum::<u64>();
    quorumd_testkit::cluster::wait_until(Duration::from_secs(20), what, || async {
        acked.lock().unwrap().values().sum::<u64>() > before + 50
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
}

/// Every acknowledged write is there: a quorum read of each key answers at least the last
/// sequence number acknowledged for it (a later write that was refused may have landed too).
async fn check_acked(tc: &TestCluster, acked: &Acked) {
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= KEYS / 2,
        "too few writes acknowledged: {}",
        acked.len()
    );
    for (key, last) in &acked {
        // A read that finds no quorum (a node slow on a loaded machine, or a slot map still
        // settling) is asked again, for a while; a lost write is never an unavailable read.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let r = loop {
            let r = tc.get(key, "consistency=quorum").await;
            if r.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE
                || std::time::Instant::now() > deadline
            {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(r.status().is_success(), "{key}: {}", r.status());
        let got: u64 = r.text().await.unwrap().parse().unwrap();
        assert!(got >= *last, "{key}: read {got}, acknowledged {last}");
    }
}

/// An exchange's report, once no other exchange holds the sweep (the service starts one by
/// itself when a replica turns recovering, as after a failover).
async fn exchange(tc: &TestCluster) -> quorumd::sync::SweepReport {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tc.try_sweep(SweepMode::Exchange, false).await {
            Ok(report) => return report,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("exchange not started yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no exchange could start within 30 s: {e}"),
        }
    }
}

/// After an exchange, every replica holds the same value and metadata for every key.
async fn replicas_agree(tc: &TestCluster, urls: &[Vec<String>]) {
    // Just after a failover a replica may refuse for a moment (no slot is served between a
    // failed connection and the next probe): exchanges until one runs clean.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let report = exchange(tc).await;
        if report.errors.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{report:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for k in 0..KEYS {
        let key = format!("key-{k}");
        let loc = tc.app().store().locate(key.as_bytes()).unwrap();
        let mut copies = Vec::new();
        for seeds in urls {
            let mut c = redis::cluster::ClusterClient::new(seeds.clone())
                .unwrap()
                .get_async_connection()
                .await
                .unwrap();
            let value: Option<String> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut c)
                .await
                .unwrap();
            let meta: Option<Vec<u8>> = redis::cmd("HGET")
                .arg(&*loc.meta_key)
                .arg(&key)
                .query_async(&mut c)
                .await
                .unwrap();
            copies.push((value, meta));
        }
        assert!(copies[0].1.is_some(), "{key}: no metadata");
        assert!(copies.iter().all(|c| *c == copies[0]), "{key}: {copies:?}");
    }
}

/// The seeds of each replica cluster: `per` servers each, in order.
fn seeds(tc: &TestCluster, per: usize) -> Vec<Vec<String>> {
    tc.cluster
        .nodes
        .chunks(per)
        .map(|c| c.iter().map(|n| n.url()).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reshard_under_writes_loses_nothing_and_the_metadata_moves_with_its_slots() {
    let tc = TestCluster::start_clusters(3, (3, 0), |c| c.sync.in_flight_window_ms = 0).await;
    let (from, to) = (&tc.cluster.nodes[0], &tc.cluster.nodes[1]);
    let mut c = direct(&from.url()).await;
    let from_id: String = command(&mut c, &["CLUSTER", "MYID"]).await;
    let mut c = direct(&to.url()).await;
    let to_id: String = command(&mut c, &["CLUSTER", "MYID"]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Acked::default();
    let writer = start_writer(&tc, stop.clone(), acked.clone());
    // Let some writes land first, so that the moved slots hold data.
    quorumd_testkit::cluster::wait_until(Duration::from_secs(20), "writes land", || async {
        acked.lock().unwrap().len() >= KEYS / 2
    })
    .await;
    let mut c = direct(&from.url()).await;
    let on_from: Vec<String> = command(&mut c, &["KEYS", "key-*"]).await;
    let seed = from.addr().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("redis-cli")
            .args(["--cluster", "reshard", &seed, "--cluster-from", &from_id])
            .args([
                "--cluster-to",
                &to_id,
                "--cluster-slots",
                "2000",
                "--cluster-yes",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "reshard: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Writes go on a while against the new slot map.
    stop_after_more_writes(&acked, stop, writer, "writes after the move").await;

    check_acked(&tc, &acked).await;
    replicas_agree(&tc, &seeds(&tc, 3)).await;
    // The moved keys sit on their new master with their metadata beside them.
    let mut c = direct(&to.url()).await;
    let now_on_to: Vec<String> = command(&mut c, &["KEYS", "key-*"]).await;
    let mut moved = 0;
    for key in now_on_to.iter().filter(|k| on_from.contains(*k)) {
        let loc = tc.app().store().locate(key.as_bytes()).unwrap();
        let meta: i64 = command(&mut c, &["HEXISTS", &loc.meta_key, key]).await;
        assert_eq!(
            meta, 1,
            "{key}: value on the new master without its metadata"
        );
        moved += 1;
    }
    assert!(moved > 0, "no key lives on the master that took the slots");
    tc.shutdown().await;
}

/// Whether the server at `url` is a cluster master.
async fn is_master(url: &str) -> bool {
    let mut c = direct(url).await;
    let role: Vec<redis::Value> = command(&mut c, &["ROLE"]).await;
    matches!(&role[0], redis::Value::BulkString(r) if r == b"master")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_fails_over_under_writes_and_loses_nothing() {
    let mut tc = TestCluster::start_clusters(3, (3, 1), |c| {
        c.sync.in_flight_window_ms = 0;
        c.sync.live_detection = true;
    })
    .await;
    let per = 6;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Acked::default();
    let writer = start_writer(&tc, stop.clone(), acked.clone());
    quorumd_testkit::cluster::wait_until(Duration::from_secs(20), "writes land", || async {
        acked.lock().unwrap().len() >= KEYS / 2
    })
    .await;
    // Kill a master of replica 1: its replica takes over its slots.
    let mut victim = None;
    for i in per..2 * per {
        if is_master(&tc.cluster.nodes[i].url()).await {
            victim = Some(i);
            break;
        }
    }
    let victim = victim.expect("replica 1 has a master");
    let survivor = if victim == per { per + 1 } else { per };
    let victim_port = tc.cluster.nodes[victim].port();
    assert_eq!(
        shard_series(&tc, "quorumd_shard_up", 1, victim_port)
            .await
            .as_deref(),
        Some("1")
    );
    tc.cluster.nodes[victim].kill();
    let survivor_url = tc.cluster.nodes[survivor].url();
    quorumd_testkit::cluster::wait_until(
        Duration::from_secs(30),
        "the cluster fails over",
        || async {
            let mut c = direct(&survivor_url).await;
            let info: String = command(&mut c, &["CLUSTER", "INFO"]).await;
            let nodes: String = command(&mut c, &["CLUSTER", "NODES"]).await;
            // The dead master owns no slot any more: its line ends at its link state.
            let dead_owns_slots = nodes
                .lines()
                .any(|l| l.contains(&format!(":{victim_port}@")) && l.split(' ').count() > 8);
            info.contains("cluster_state:ok") && !dead_owns_slots
        },
    )
    .await;
    // quorumd follows the new slot map: replica 1 is in service again, and writes go on.
    quorumd_testkit::cluster::wait_until(
        Duration::from_secs(30),
        "replica 1 back in service",
        || async {
            let (_, status) = tc.json("/v1/status").await;
            status["nodes"][1]["health"] == "up"
        },
    )
    .await;
    stop_after_more_writes(&acked, stop, writer, "writes after the failover").await;
    // The dead master left the slot map: its per-shard series are gone from `/metrics`, and
    // stay gone, while the other masters' are there.
    quorumd_testkit::cluster::wait_until(
        Duration::from_secs(30),
        "the dead master out of replica 1's shard table",
        || async { shard_on(&tc, 1, victim_port).await.is_null() },
    )
    .await;
    let (_, status) = tc.json("/v1/status").await;
    let survivor: u16 = status["nodes"][1]["shards"][0]["master"]
        .as_str()
        .and_then(|m| m.rsplit(':').next()?.parse().ok())
        .expect("a master of replica 1");
    for _ in 0..2 {
        for name in ["quorumd_shard_up", "quorumd_shard_latency_seconds"] {
            assert_eq!(
                shard_series(&tc, name, 1, victim_port).await,
                None,
                "{name}"
            );
        }
        assert_eq!(
            shard_series(&tc, "quorumd_shard_up", 1, survivor)
                .await
                .as_deref(),
            Some("1")
        );
    }

    check_acked(&tc, &acked).await;
    let mut urls = seeds(&tc, per);
    urls[1].retain(|u| !u.ends_with(&format!(":{victim_port}")));
    replicas_agree(&tc, &urls).await;

    // Live detection follows the failover: replica 1 subscribes to the promoted master too,
    // so direct writes on each of its masters now are adopted by the other replicas.
    quorumd_testkit::cluster::wait_until(
        Duration::from_secs(30),
        "replica 1's live detection on its new masters",
        || async {
            let (_, status) = tc.json("/v1/status").await;
            let masters = status["nodes"][1]["shards"].as_array().map_or(0, Vec::len);
            status["sweeps"]["live_detection"][1]["state"] == "on" && masters == 3
        },
    )
    .await;
    let mut c = redis::cluster::ClusterClient::new(urls[1].clone())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    let direct_keys: Vec<String> = (0..30).map(|i| format!("direct-{i}")).collect();
    for key in &direct_keys {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("direct")
            .query_async(&mut c)
            .await
            .unwrap();
    }
    // Every master of replica 1 now, the promoted one included, took some of them.
    for url in &urls[1] {
        if is_master(url).await {
            let held: Vec<String> = command(&mut direct(url).await, &["KEYS", "direct-*"]).await;
            assert!(
                !held.is_empty(),
                "master {url} holds none of the direct keys"
            );
        }
    }
    let other = redis::cluster::ClusterClient::new(urls[0].clone())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    quorumd_testkit::cluster::wait_until(
        Duration::from_secs(10),
        "direct writes on every master adopted",
        || async {
            let mut other = other.clone();
            for key in &direct_keys {
                let v: Option<String> = redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut other)
                    .await
                    .unwrap();
                if v.as_deref() != Some("direct") {
                    return false;
                }
            }
            true
        },
    )
    .await;
    tc.shutdown().await;
}

/// The slots of replica `r`'s shard whose master is down, per `/v1/status`.
async fn down_shards(tc: &TestCluster, r: usize) -> Vec<serde_json::Value> {
    let (_, status) = tc.json("/v1/status").await;
    status["nodes"][r]["shards"]
        .as_array()
        .map(|s| s.iter().filter(|s| s["up"] == false).cloned().collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_down_takes_its_replica_out_for_its_slots_only() {
    let mut tc = TestCluster::start_clusters(3, (3, 0), |c| c.sync.in_flight_window_ms = 0).await;
    let keys: Vec<String> = (0..KEYS).map(|i| format!("key-{i}")).collect();
    for k in &keys {
        let r = tc.put(k, "before", "consistency=all").await;
        assert!(r.status().is_success(), "{k}: {}", r.status());
    }
    // Master 0 of replica 1 dies; that cluster has no replica to take over.
    let victim = 3;
    tc.cluster.nodes[victim].kill();
    let victim_port = tc.cluster.nodes[victim].port();
    quorumd_testkit::cluster::wait_until(
        Duration::from_secs(20),
        "replica 1 reports one shard down and stays up",
        || async {
            let down = down_shards(&tc, 1).await;
            let (_, status) = tc.json("/v1/status").await;
            down.len() == 1 && status["nodes"][1]["health"] == "up"
        },
    )
    .await;
    let down = down_shards(&tc, 1).await;
    assert!(
        down[0]["master"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{victim_port}")),
        "{down:?}"
    );
    let in_down_shard = |key: &str| {
        let slot = quorumd_core::layout::key_slot(key.as_bytes()) as u64;
        down[0]["slots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| (r[0].as_u64().unwrap()..=r[1].as_u64().unwrap()).contains(&slot))
    };
    let (on_dead, on_live): (Vec<&String>, Vec<&String>) =
        keys.iter().partition(|k| in_down_shard(k));
    assert!(!on_dead.is_empty() && !on_live.is_empty());
    // Writes that need every replica succeed for the live shards' keys only; a quorum
    // suffices for the rest.
    for k in &on_live {
        let r = tc.put(k, "during", "consistency=all").await;
        assert!(r.status().is_success(), "{k} (live shard): {}", r.status());
    }
    for k in &on_dead {
        let r = tc.put(k, "during", "consistency=all").await;
        assert!(!r.status().is_success(), "{k} (dead shard) written at all");
        let r = tc.put(k, "during", "consistency=quorum").await;
        assert!(
            r.status().is_success(),
            "{k} (dead shard) at quorum: {}",
            r.status()
        );
    }
    for k in &keys {
        let r = tc.get(k, "consistency=quorum").await;
        assert_eq!(r.text().await.unwrap(), "during", "{k}");
    }
    // One batch over both kinds of keys, as the per-node batching makes of concurrent
    // requests: it is one script call per slot, and only the dead shard's calls fail, so the
    // other keys still get replica 1's answer.
    let node = tc.app().store().pool().node(1).clone();
    let locs: Vec<_> = keys
        .iter()
        .map(|k| tc.app().store().locate(k.as_bytes()).unwrap())
        .collect();
    let reads: Vec<_> = locs
        .iter()
        .map(|l| (l, quorumd::calls::store::ReadWanted::MetaAndValue))
        .collect();
    let answers = quorumd::calls::store::read_each(&node, &reads)
        .await
        .expect("the live shards answer");
    for (k, answer) in keys.iter().zip(&answers) {
        assert_eq!(answer.is_ok(), !in_down_shard(k), "{k}: {answer:?}");
    }
    // The master comes back empty (no persistence): its shard is up again, and the
    // exchange writes its keys back.
    tc.cluster.nodes[victim]
        .restart()
        .expect("restart the master");
    quorumd_testkit::cluster::wait_until(
        Duration::from_secs(30),
        "the shard is up again",
        || async {
            let (_, status) = tc.json("/v1/status").await;
            down_shards(&tc, 1).await.is_empty() && status["nodes"][1]["health"] != "down"
        },
    )
    .await;
    quorumd_testkit::cluster::wait_until(
        Duration::from_secs(60),
        "the exchange heals the wiped shard",
        || async {
            let report = exchange(&tc).await;
            report.errors.is_empty() && report.keys_divergent == 0
        },
    )
    .await;
    replicas_agree(&tc, &seeds(&tc, 3)).await;
    tc.shutdown().await;
}

/// Pauses master 0 of replica 1 (node 3) until replica 1 reports its shard down; returns that
/// shard's entry in `/v1/status`.
async fn pause_master_0_of_replica_1(tc: &mut TestCluster) -> serde_json::Value {
    let port = tc.cluster.nodes[3].port();
    tc.cluster.nodes[3].pause();
    quorumd_testkit::cluster::wait_until(
        Duration::from_secs(30),
        "replica 1 reports the shard down",
        || async { shard_on(tc, 1, port).await["up"] == false },
    )
    .await;
    shard_on(tc, 1, port).await
}

/// Three clusters of three masters; master 0 of replica 1 paused until its shard is marked
/// down, then `KEYS` keys (`missed-{i}`) written at quorum, those of its slots missing it.
/// Returns the cluster, the paused node and the keys.
async fn writes_missed_by_a_paused_shard() -> (TestCluster, usize, Vec<String>) {
    let mut tc = TestCluster::start_clusters(3, (3, 0), |c| {
        c.sync.in_flight_window_ms = 0;
        // The exchanges that catch the shard up read 16,384 slot digests per replica.
        c.timeouts.node_ms = 3_000;
        c.timeouts.connect_ms = 3_000;
    })
    .await;
    let victim = 3;
    pause_master_0_of_replica_1(&mut tc).await;
    let keys: Vec<String> = (0..KEYS).map(|i| format!("missed-{i}")).collect();
    for k in &keys {
        let r = tc.put(k, "written meanwhile", "consistency=quorum").await;
        assert!(r.status().is_success(), "{k}: {}", r.status());
    }
    (tc, victim, keys)
}

/// True when every key of `keys` holds the value `writes_missed_by_a_paused_shard` wrote, read
/// over `c` (a cluster connection, or one straight to a master).
async fn hold_the_missed_writes(
    mut c: impl redis::aio::ConnectionLike,
    keys: &[impl AsRef<str>],
) -> bool {
    for k in keys {
        let v: Option<String> = redis::cmd("GET")
            .arg(k.as_ref())
            .query_async(&mut c)
            .await
            .unwrap_or(None);
        if v.as_deref() != Some("written meanwhile") {
            return false;
        }
    }
    true
}

/// A master paused (SIGSTOP) long enough for its shard to be marked down misses the writes of
/// its slots; when it answers again, its replica gets them back at once (hints replayed and an
/// exchange run on the shard's return), with no background interval and no sweep asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_back_in_service_gets_the_writes_it_missed() {
    let (mut tc, victim, keys) = writes_missed_by_a_paused_shard().await;
    tc.cluster.nodes[victim].resume();
    let replica = redis::cluster::ClusterClient::new(seeds(&tc, 3)[1].clone())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    quorumd_testkit::cluster::wait_until(
        Duration::from_secs(60),
        "replica 1 holds every write",
        || hold_the_missed_writes(replica.clone(), &keys),
    )
    .await;
    tc.shutdown().await;
}

/// A master that restarts empty makes its replica `recovering` for that master's slots only:
/// until the sweep has caught it up, the replica's answers still count toward read quorums
/// for every other slot. With a second replica paused, quorum reads of the other shards' keys
/// go on (replica 0 and the recovering replica 1 make two), and those of the wiped shard's keys
/// fail rather than count an answer that may have lost acknowledged writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_master_makes_its_replica_recovering_for_its_slots_only() {
    let mut tc = TestCluster::start_clusters(3, (3, 0), |c| c.sync.in_flight_window_ms = 0).await;
    let keys: Vec<String> = (0..KEYS).map(|i| format!("key-{i}")).collect();
    for k in &keys {
        let r = tc.put(k, "acknowledged", "consistency=all").await;
        assert!(r.status().is_success(), "{k}: {}", r.status());
    }
    // The exchange a restart asks for would catch the replica up before the test can look:
    // the test holds the exchange's slot, so that one finds a sweep running and waits.
    let held = tc
        .app()
        .sweeper()
        .begin(quorumd::sync::SweepRequest::new(
            SweepMode::Exchange,
            quorumd::sync::SweepTrigger::Test,
        ))
        .expect("no exchange running");
    let victim = 3; // master 0 of replica 1
    let victim_port = tc.cluster.nodes[victim].port();
    tc.cluster.nodes[victim]
        .restart()
        .expect("restart the master");
    quorumd_testkit::cluster::wait_until(
        Duration::from_secs(30),
        "replica 1 recovering for some slots",
        || async {
            let (_, status) = tc.json("/v1/status").await;
            status["nodes"][1]["health"] == "recovering"
                && status["nodes"][1]["recovering_slots"].is_array()
        },
    )
    .await;
    let (_, status) = tc.json("/v1/status").await;
    let node = &status["nodes"][1];
    let shard = node["shards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["master"]
                .as_str()
                .unwrap()
                .ends_with(&format!(":{victim_port}"))
        })
        .expect("the victim is a master of replica 1")
        .clone();
    assert_eq!(node["recovering_slots"], shard["slots"], "{node}");
    let wiped = |key: &str| {
        let slot = quorumd_core::layout::key_slot(key.as_bytes()) as u64;
        shard["slots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| (r[0].as_u64().unwrap()..=r[1].as_u64().unwrap()).contains(&slot))
    };
    let (lost, kept): (Vec<&String>, Vec<&String>) = keys.iter().partition(|k| wiped(k));
    assert!(!lost.is_empty() && !kept.is_empty());
    for i in 6..9 {
        tc.cluster.nodes[i].pause();
    }
    for k in &kept {
        let r = tc.get(k, "consistency=quorum").await;
        assert!(
            r.status().is_success(),
            "{k} (intact shard): {}",
            r.status()
        );
        assert_eq!(r.text().await.unwrap(), "acknowledged", "{k}");
    }
    for k in &lost {
        let r = tc.get(k, "consistency=quorum").await;
        assert!(
            !r.status().is_success(),
            "{k} (wiped shard) read at quorum from one replica that counts"
        );
    }
    // Locks likewise: a lock named like a key lives in the key's slot. Replica 1 lost the lock
    // keys and fences of the wiped shard only, so it counts toward the majority (2 of 3, with
    // replica 2 paused) of every other lock at once, not after the longest lock TTL.
    let acquire = |name: &str| {
        let url = format!("{}/v1/locks/{name}/acquire", tc.base);
        let http = tc.http.clone();
        async move {
            let r = http
                .post(url)
                .json(&serde_json::json!({"ttl_ms": 5000, "wait_ms": 0}))
                .send()
                .await
                .unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    for k in kept.iter().take(5) {
        let (status, body) = acquire(k).await;
        assert!(
            status.is_success(),
            "lock {k} (intact shard): {status} {body}"
        );
    }
    for k in lost.iter().take(5) {
        let (status, body) = acquire(k).await;
        assert!(
            !status.is_success() && body.contains("restarted"),
            "lock {k} (wiped shard) granted by one replica that counts: {status} {body}"
        );
    }
    for i in 6..9 {
        tc.cluster.nodes[i].resume();
    }
    // Released, the exchange runs (replica 2, just resumed, may fail it until its next
    // probe), and the exchanges after it catch replica 1 up: it counts for every slot again.
    tc.app().sweeper().execute(held).await;
    quorumd_testkit::cluster::wait_until(
        Duration::from_secs(60),
        "replica 1 back in sync",
        || async {
            let report = exchange(&tc).await;
            let (_, status) = tc.json("/v1/status").await;
            report.errors.is_empty() && status["nodes"][1]["health"] == "up"
        },
    )
    .await;
    replicas_agree(&tc, &seeds(&tc, 3)).await;
    tc.shutdown().await;
}

/// The heal sends each master's slots together, on that master's own connection, as the shard
/// table says they lie. Slots moved since the table was read must still be read and copied
/// where they are now: their requests, refused there (MOVED), go again one slot at a time
/// through the cluster client, which follows the move. The monitor does not probe again
/// during the test, so the table stays stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heal_follows_slots_moved_since_the_shard_table_was_read() {
    use quorumd::calls::bucket_copy::{self, BucketLayout};
    use quorumd::sync::bulk;
    let tc = TestCluster::start_clusters(3, (3, 0), |c| {
        c.sync.in_flight_window_ms = 0;
        // What is tested is where the calls go, not how fast. (A batch of copies timed out
        // twice, at 3 s and at 10 s: its slots had gone alone through the cluster client,
        // because the new owner answered NOSCRIPT. Asserted against below.)
        c.timeouts.node_ms = 10_000;
        c.timeouts.request_ms = 20_000;
        c.timeouts.health_interval_ms = 600_000;
    })
    .await;
    let keys: Vec<String> = (0..400).map(|i| format!("key-{i}")).collect();
    for key in &keys {
        let r = tc
            .put(key, format!("value of {key}"), "consistency=all")
            .await;
        assert!(r.status().is_success(), "{key}: {}", r.status());
    }
    // Replica 2 moves 2,000 slots from its master 0 (slots 0 to 5460) to its master 1.
    let (from, to) = (&tc.cluster.nodes[6], &tc.cluster.nodes[7]);
    let from_id: String = command(&mut direct(&from.url()).await, &["CLUSTER", "MYID"]).await;
    let to_id: String = command(&mut direct(&to.url()).await, &["CLUSTER", "MYID"]).await;
    let seed = from.addr().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("redis-cli")
            .args(["--cluster", "reshard", &seed, "--cluster-from", &from_id])
            .args(["--cluster-to", &to_id, "--cluster-slots", "2000"])
            .arg("--cluster-yes")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let store = tc.app().store();
    let (pool, layout) = (store.pool(), &store.settings().layout);
    let mut c = direct(&to.url()).await;
    let on_to: Vec<String> = command(&mut c, &["KEYS", "key-*"]).await;
    let mut moved: Vec<u32> = on_to
        .iter()
        .map(|k| store.locate(k.as_bytes()).unwrap().bucket)
        .filter(|&b| b <= 5460)
        .collect();
    moved.sort_unstable();
    moved.dedup();
    assert!(!moved.is_empty(), "no key in the moved slots");
    let table = pool.node(2).status().shards;
    assert!(
        table
            .iter()
            .any(|s| s.master == from.addr().to_string() && s.owns(moved[0] as u16)),
        "the shard table still places the moved slots on their old master: {table:?}"
    );

    // Reads: the metadata of the moved buckets, as replica 0 holds it.
    let layouts: Vec<BucketLayout> = moved
        .iter()
        .map(|&bucket| BucketLayout {
            bucket,
            digest_key: layout.digest_key(bucket),
            digest_field: layout.digest_field(bucket),
            meta_keys: layout.bucket_meta_keys(bucket),
            state_keys: vec![layout.sub_digest_key(bucket)],
        })
        .collect();
    let on_moved = bucket_copy::read_meta(pool.node(2), &layouts)
        .await
        .unwrap();
    let on_0 = bucket_copy::read_meta(pool.node(0), &layouts)
        .await
        .unwrap();
    for (a, b) in on_moved.iter().zip(&on_0) {
        assert_eq!((&a.digest, &a.meta), (&b.digest, &b.meta));
    }

    // Writes: the new owner wiped, the moved buckets copied back onto it. Its script cache
    // is emptied too: the copies must not answer NOSCRIPT there and fall back to one call
    // per slot through the cluster client.
    let _: () = command(&mut c, &["FLUSHALL"]).await;
    let _: () = command(&mut c, &["SCRIPT", "FLUSH"]).await;
    let _: () = command(&mut c, &["CONFIG", "RESETSTAT"]).await;
    let (copies, fallback) =
        bulk::read_copies(pool.node(0), store.settings(), &moved, 500, 0).await;
    assert!(fallback.is_empty(), "{fallback:?}");
    let copies: Vec<_> = copies.iter().collect();
    // In batches of `sync.bucket_batch`, as an exchange sends them: one call carrying all
    // 2,000 slots timed out under a loaded full-suite run.
    for batch in copies.chunks(quorumd::config::Config::default().sync.bucket_batch) {
        let done = bucket_copy::restore_buckets(pool.node(2), batch)
            .await
            .unwrap();
        assert!(done.iter().all(|&d| d), "{done:?}");
    }
    let errors: String = command(&mut c, &["INFO", "errorstats"]).await;
    assert!(!errors.contains("NOSCRIPT"), "{errors}");
    for key in &on_to {
        if moved.contains(&store.locate(key.as_bytes()).unwrap().bucket) {
            let value: Option<String> = command(&mut c, &["GET", key]).await;
            assert_eq!(value, Some(format!("value of {key}")), "{key}");
        }
    }
    // An exchange heals the rest of the wiped master.
    let report = exchange(&tc).await;
    assert!(report.buckets_copied > 0, "{report:?}");
    for key in &on_to {
        let value: Option<String> = command(&mut c, &["GET", key]).await;
        assert_eq!(value, Some(format!("value of {key}")), "{key}");
    }
    tc.shutdown().await;
}

/// The shard entry of replica `r` whose master listens on `port`, per `/v1/status`.
async fn shard_on(tc: &TestCluster, r: usize, port: u16) -> serde_json::Value {
    let (_, status) = tc.json("/v1/status").await;
    status["nodes"][r]["shards"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["master"].as_str().unwrap().ends_with(&format!(":{port}")))
        .cloned()
        .unwrap_or_default()
}

/// The value of the per-shard series `name` of replica `r`'s master on `port`, as `/metrics`
/// renders it.
async fn shard_series(tc: &TestCluster, name: &str, r: usize, port: u16) -> Option<String> {
    let metrics = tc.fetch("/metrics").await.text().await.unwrap();
    let node = format!("node=\"{}\"", tc.app().store().pool().node(r).display);
    let on_port = |l: &str| {
        let master = l.split("master=\"").nth(1)?.split('"').next()?;
        Some(master.ends_with(&format!(":{port}")))
    };
    metrics
        .lines()
        .find(|l| {
            l.starts_with(&format!("{name}{{")) && l.contains(&node) && on_port(l) == Some(true)
        })
        .and_then(|l| Some(l.rsplit(' ').next()?.to_owned()))
}

/// Whether `key`'s slot is in the shard entry `shard`'s slot ranges.
fn owns(shard: &serde_json::Value, key: &str) -> bool {
    let slot = quorumd_core::layout::key_slot(key.as_bytes()) as u64;
    shard["slots"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| (r[0].as_u64().unwrap()..=r[1].as_u64().unwrap()).contains(&slot))
}

/// A master stopped (SIGSTOP) while a request is on its way to it: when that request times
/// out, only its shard is held back until the probe (which the failure wakes) marks it down.
/// Writes of the other shards' keys at `all` keep succeeding all along, none of them waiting
/// for the node timeout, and the replica is never `suspect` as a whole. Before, the timeout
/// made the whole replica suspect and refused every slot until that probe, which itself waits
/// the node timeout on the stopped master: writes at `all` failed for every key. The stopped
/// master's keys are written at quorum meanwhile, so calls pile up on it: with batching lanes
/// per replica instead of per master, the other keys' writes queued behind them waited the
/// node timeout. Also checks the per-shard gauges and latencies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_stopped_under_requests_holds_back_its_shard_and_not_its_replica() {
    const NODE_MS: u64 = 2_000;
    let mut tc = TestCluster::start_clusters(3, (3, 0), |c| {
        c.sync.in_flight_window_ms = 0;
        c.timeouts.node_ms = NODE_MS;
        // The request, not the probe, must be the first to meet the stopped master.
        c.timeouts.health_interval_ms = 60_000;
    })
    .await;
    let victim = 3; // master 0 of replica 1
    let victim_port = tc.cluster.nodes[victim].port();
    let shard = shard_on(&tc, 1, victim_port).await;
    let keys: Vec<String> = (0..KEYS).map(|i| format!("key-{i}")).collect();
    let (on_victim, on_live): (Vec<String>, Vec<String>) =
        keys.iter().cloned().partition(|k| owns(&shard, k));
    assert!(!on_victim.is_empty() && !on_live.is_empty());
    for k in &keys {
        let r = tc.put(k, "before", "consistency=all").await;
        assert!(r.status().is_success(), "{k}: {}", r.status());
    }
    let stop = Arc::new(AtomicBool::new(false));
    // The other shards' keys, at `all`: (refused, slowest in ms, acknowledged).
    let live = {
        let (http, base, stop) = (tc.http.clone(), tc.base.clone(), stop.clone());
        let keys = on_live.clone();
        tokio::spawn(async move {
            let (mut refused, mut slowest, mut acked) = (Vec::new(), 0u128, 0u64);
            let mut took = Vec::new();
            for (n, key) in keys.iter().cycle().enumerate() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let started = std::time::Instant::now();
                let url = format!("{base}/v1/kv/{key}?consistency=all");
                let r = http
                    .put(url)
                    .body(format!("live-{n}"))
                    .send()
                    .await
                    .unwrap();
                slowest = slowest.max(started.elapsed().as_millis());
                took.push((started, started.elapsed()));
                if r.status().is_success() {
                    acked += 1;
                } else {
                    refused.push(format!("{key}: {} {}", r.status(), r.text().await.unwrap()));
                }
            }
            (refused, slowest, acked, took)
        })
    };
    // The stopped master's keys, one write at a time, on its way to it when it stops. At
    // quorum, so the writer does not wait for the stopped master and its calls pile up in
    // that master's write lane until the shard is held back. With one lane per replica, the
    // other keys' writes queued behind them (or batched with them) waited the node timeout.
    let doomed = {
        let (http, base, stop) = (tc.http.clone(), tc.base.clone(), stop.clone());
        let keys = on_victim.clone();
        tokio::spawn(async move {
            for (n, key) in keys.iter().cycle().enumerate() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let url = format!("{base}/v1/kv/{key}?consistency=quorum");
                let _ = http.put(url).body(format!("doomed-{n}")).send().await;
            }
        })
    };
    // Replica 1's health, as often as the status answers, and when the stopped master's
    // shard was first seen held back (suspect or down).
    let health_seen = {
        let (http, base, stop) = (tc.http.clone(), tc.base.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = std::collections::BTreeSet::new();
            let mut held_at = None;
            while !stop.load(Ordering::Relaxed) {
                let s =
                    quorumd_testkit::cluster::get_json(&http, &format!("{base}/v1/status")).await;
                seen.insert(s["nodes"][1]["health"].as_str().unwrap_or("?").to_owned());
                let held = s["nodes"][1]["shards"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|s| {
                        s["master"]
                            .as_str()
                            .unwrap()
                            .ends_with(&format!(":{victim_port}"))
                            && (s["up"] == false || s["suspect"] == true)
                    });
                if held && held_at.is_none() {
                    held_at = Some(std::time::Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (seen, held_at)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    tc.cluster.nodes[victim].pause();
    quorumd_testkit::cluster::wait_until(
        Duration::from_secs(20),
        "the stopped master's shard is marked down",
        || async { shard_on(&tc, 1, victim_port).await["up"] == false },
    )
    .await;
    // Writes go on for a while with the shard down.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (refused, slowest, acked, took) = live.await.unwrap();
    doomed.await.unwrap();
    let (health_seen, held_at) = health_seen.await.unwrap();
    let held_at = held_at.expect("the shard was seen held back");
    let slowest_after = took
        .iter()
        .filter(|(started, _)| *started > held_at)
        .map(|(_, d)| d.as_millis())
        .max()
        .unwrap_or_default();
    eprintln!(
        "other shards' writes at all: {acked} acknowledged, slowest {slowest} ms, slowest \
         once the shard was held back {slowest_after} ms; replica 1 seen {health_seen:?}"
    );
    assert!(refused.is_empty(), "{} refused: {refused:?}", refused.len());
    assert!(acked > 0);
    // None waits for the node timeout, before the shard is held back or after.
    assert!(
        slowest < u128::from(NODE_MS) / 2,
        "a write of another shard's key waited {slowest} ms (node timeout {NODE_MS} ms)"
    );
    assert_eq!(
        health_seen,
        std::collections::BTreeSet::from(["up".to_owned()]),
        "replica 1 left up as a whole"
    );
    let (_, status) = tc.json("/v1/status").await;
    let shards = status["nodes"][1]["shards"].as_array().unwrap();
    let not_up: Vec<_> = shards.iter().filter(|s| s["up"] == false).collect();
    assert_eq!(not_up.len(), 1, "{shards:?}");
    for s in shards.iter().filter(|s| s["up"] == true) {
        assert_eq!(s["suspect"], false, "{s}");
        assert!(s["latency_ms"].as_f64().is_some(), "no latency: {s}");
    }
    // The per-shard series: 0 for the stopped master, 1 and a latency for the others.
    let metrics = tc.fetch("/metrics").await.text().await.unwrap();
    let node = format!("node=\"{}\"", tc.app().store().pool().node(1).display);
    let series = |name: &str, master: &str| {
        let master = format!("master=\"{master}\"");
        metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!("{name}{{")) && l.contains(&node) && l.contains(&master)
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    for s in shards {
        let master = s["master"].as_str().unwrap();
        let want = if s["up"] == true { 1.0 } else { 0.0 };
        assert_eq!(series("quorumd_shard_up", master), Some(want), "{master}");
        if s["up"] == true {
            assert!(
                series("quorumd_shard_latency_seconds", master).is_some_and(|v| v > 0.0),
                "{master}"
            );
        }
    }
    tc.cluster.nodes[victim].resume();
    tc.shutdown().await;
}

/// Hints for a shard that is down are kept while it is down, however many exchanges run
/// meanwhile, and replayed when it answers again: the keys written meanwhile are on its
/// master, read there directly. Before, an exchange during the outage could not read the
/// replica's metadata for those keys, saw no node behind, and dropped their hints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_for_a_down_shard_wait_for_it_and_are_replayed_when_it_returns() {
    let (mut tc, victim, keys) = writes_missed_by_a_paused_shard().await;
    let shard = shard_on(&tc, 1, tc.cluster.nodes[victim].port()).await;
    let missed: Vec<&String> = keys.iter().filter(|k| owns(&shard, k)).collect();
    assert!(!missed.is_empty());
    // The hints, on replica 0 (a holder), for replica 1.
    let hint_key = quorumd::store::hint_key(
        quorumd_testkit::cluster::key_prefix(),
        &tc.app().store().pool().node(1).identity,
    );
    let holder = redis::cluster::ClusterClient::new(seeds(&tc, 3)[0].clone())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    let hinted = || {
        let (mut c, hint_key) = (holder.clone(), hint_key.clone());
        async move {
            redis::cmd("SMEMBERS")
                .arg(&hint_key)
                .query_async::<std::collections::BTreeSet<String>>(&mut c)
                .await
                .unwrap()
        }
    };
    quorumd_testkit::cluster::wait_until(
        Duration::from_secs(10),
        "every missed key hinted",
        || async {
            let h = hinted().await;
            missed.iter().all(|k| h.contains(*k))
        },
    )
    .await;
    // Exchanges while the shard is down replay nothing for it and keep its hints.
    for _ in 0..2 {
        let report = exchange(&tc).await;
        eprintln!("exchange during the outage: {report:?}");
    }
    let h = hinted().await;
    let lost: Vec<_> = missed.iter().filter(|k| !h.contains(**k)).collect();
    assert!(
        lost.is_empty(),
        "hints dropped while the shard was down: {lost:?}"
    );
    tc.cluster.nodes[victim].resume();
    let on_master = direct(&tc.cluster.nodes[victim].url()).await;
    quorumd_testkit::cluster::wait_until(
        Duration::from_secs(60),
        "the shard's master holds every write it missed",
        || hold_the_missed_writes(on_master.clone(), &missed),
    )
    .await;
    quorumd_testkit::cluster::wait_until(
        Duration::from_secs(30),
        "the replayed hints are dropped",
        || async { hinted().await.is_empty() },
    )
    .await;
    tc.shutdown().await;
}

/// A hint set holding many keys of a down shard and a few of the replica's other shards: one
/// replay reaches every key of the others. (When each round drew a random sample, a round that
/// drew only the down shard's keys ended the holder's turn, and the others waited for a later
/// pass.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replay_reaches_every_hint_past_a_down_shards_many() {
    let mut tc = TestCluster::start_clusters(3, (3, 0), |c| {
        c.sync.in_flight_window_ms = 0;
        c.sync.exchange_interval_ms = 0;
    })
    .await;
    let victim = 3;
    let shard = pause_master_0_of_replica_1(&mut tc).await;
    let names = (0..).map(|i| format!("hinted-{i}"));
    let down: Vec<String> = names
        .clone()
        .filter(|k| owns(&shard, k))
        .take(3000)
        .collect();
    let up: Vec<String> = names.filter(|k| !owns(&shard, k)).take(20).collect();
    let hint_key = quorumd::store::hint_key(
        quorumd_testkit::cluster::key_prefix(),
        &tc.app().store().pool().node(1).identity,
    );
    let mut holder = redis::cluster::ClusterClient::new(seeds(&tc, 3)[0].clone())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("SADD")
        .arg(&hint_key)
        .arg(&down)
        .arg(&up)
        .query_async(&mut holder)
        .await
        .unwrap();
    let report = exchange(&tc).await;
    let left: std::collections::BTreeSet<String> = redis::cmd("SMEMBERS")
        .arg(&hint_key)
        .query_async(&mut holder)
        .await
        .unwrap();
    let up_left: Vec<&String> = up.iter().filter(|k| left.contains(*k)).collect();
    assert!(up_left.is_empty(), "hints of up shards left: {up_left:?}");
    assert_eq!(report.hints_replayed, 20, "{report:?}");
    assert_eq!(
        left.len(),
        down.len(),
        "the down shard's hints must wait for it"
    );
    tc.cluster.nodes[victim].resume();
    tc.shutdown().await;
}
