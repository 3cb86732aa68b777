//! The KV workload at `quorum` over three Redis Clusters of three masters each (the least Redis accepts), while a seeded
//! fault loop pauses masters and kills them, restarting each empty (no persistence, so its
//! shard has lost its data). One fault at a time, so for every key at most one replica is out.
//! After the heal, the same checkers as the standalone KV runs: no acknowledged write lost, no
//! stale read, every replica converged.

use crate::common::test_config;
use crate::run::{self, RunResult};
use crate::workload::Workload;
use quorumd::app::App;
use quorumd::devcluster::DevCluster;
use quorumd::layout::Scheme;
use quorumd_testkit::checker::durability::Entry;
use quorumd_testkit::nemesis::FaultReport;
use quorumd_testkit::nemesis::plan::FaultKind;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const MASTERS: usize = 3;

pub struct ClusterRun {
    pub seed: u64,
    pub duration: Duration,
    pub keys: usize,
}

impl ClusterRun {
    pub fn new(seed: u64) -> ClusterRun {
        ClusterRun {
            seed,
            duration: Duration::from_secs(6),
            keys: 6,
        }
    }

    pub async fn run(&self) -> RunResult {
        let (mut cluster, urls) =
            tokio::task::spawn_blocking(|| DevCluster::start_clusters(3, MASTERS, 0))
                .await
                .unwrap()
                .expect("start redis-server clusters");
        let mut cfg = test_config(urls.clone());
        cfg.placement = Scheme::Slot;
        // Background exchanges on, as in production, so a wiped shard is healed as it would be.
        cfg.sync.exchange_interval_ms = 500;
        cfg.sync.in_flight_window_ms = 300;
        let app = App::start(cfg.validate().expect("valid config"))
            .await
            .expect("start quorumd");
        let stop = Arc::new(AtomicBool::new(false));
        let workload = Workload {
            base: format!("http://{}", app.http_addr()),
            level: "quorum",
            clients: 4,
            keys: self.keys,
            seed: self.seed,
        };
        let (history, faults) = tokio::join!(workload.run(stop.clone()), async {
            let report = inject(&mut cluster, self.seed, self.duration).await;
            stop.store(true, Ordering::Relaxed);
            report
        });
        let mut violations: Vec<String> = faults
            .failures
            .iter()
            .map(|f| format!("faults: {f}"))
            .collect();
        for n in &mut cluster.nodes {
            n.resume();
        }
        let convergence = run::converge(&app).await;
        if convergence.is_none() {
            violations.push("replicas did not converge within 60 s of the heal".into());
        }
        let mut finals = BTreeMap::new();
        for w in &history.writes {
            if !finals.contains_key(&w.key) {
                finals.insert(w.key.clone(), entries(&app, &urls, &w.key).await);
            }
        }
        violations.extend(run::check("quorum", &history, &finals));
        app.shutdown().await.expect("clean shutdown");
        RunResult {
            convergence,
            ..RunResult::new(self.seed, history.operations(), faults, violations)
        }
    }
}

/// Pauses or kills one server at a time (a kill restarts it empty) until `duration` has
/// passed, at seeded random moments.
async fn inject(cluster: &mut DevCluster, seed: u64, duration: Duration) -> FaultReport {
    let mut report = FaultReport::default();
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move |below: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % below
    };
    let end = Instant::now() + duration;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(150 + next(350))).await;
        let i = next(cluster.nodes.len() as u64) as usize;
        let hold = Duration::from_millis(200 + next(800));
        let kind = if next(2) == 0 {
            FaultKind::Pause
        } else {
            FaultKind::RestartEmpty
        };
        *report.injected.entry(kind).or_default() += 1;
        let node = &mut cluster.nodes[i];
        match kind {
            FaultKind::Pause => {
                node.pause();
                tokio::time::sleep(hold).await;
                node.resume();
            }
            _ => {
                node.kill();
                tokio::time::sleep(hold).await;
                // The cluster configuration survives in the node's directory; its data does not.
                if let Err(e) = tokio::task::block_in_place(|| node.restart()) {
                    report.failures.push(format!("restart of server {i}: {e}"));
                }
            }
        }
    }
    report
}

/// `key`'s live entry (version, value) on each replica, read from the master of its slot.
pub async fn entries(app: &App, urls: &[String], key: &str) -> Vec<Entry> {
    let loc = app.store().locate(key.as_bytes()).expect("user key");
    let mut out = Vec::new();
    for url in urls {
        let seeds: Vec<String> = url
            .trim_start_matches("redis+cluster://")
            .split(',')
            .map(|a| format!("redis://{a}"))
            .collect();
        let mut c = redis::cluster::ClusterClient::new(seeds)
            .unwrap()
            .get_async_connection()
            .await
            .expect("cluster connection");
        out.push(run::read_entry(&mut c, &loc.meta_key, key).await);
    }
    out
}
