//! Direct writes racing quorumd: clients write and read through quorumd at `quorum` while
//! another client writes the same keys straight to one node at a time (past quorumd and the
//! proxy), full sweeps run, and a seeded plan injects faults (every kind but an empty
//! restart, which legitimately loses versions). Live detection adopts the direct writes.
//! After the heal and a full sweep: no acknowledged write is lost (a direct write counts as a
//! write whose outcome is unknown), every node holds the same entry, and no node's version of
//! a key ever went backwards while it ran.

use crate::common::test_config;
use crate::run::{self, RunResult};
use crate::workload::Workload;
use quorumd::app::App;
use quorumd::config::DirectWritesPolicy;
use quorumd::meta::Meta;
use quorumd::sync::{SweepMode, SweepRequest, SweepTrigger};
use quorumd_testkit::checker::durability::Write;
use quorumd_testkit::checker::monotonic::{self, Observation};
use quorumd_testkit::nemesis::Nemesis;
use quorumd_testkit::nemesis::plan::{FaultKind, Plan, PlanSettings};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEYS: usize = 4;

pub struct DirectRun {
    pub seed: u64,
    pub duration: Duration,
}

impl DirectRun {
    pub fn new(seed: u64) -> DirectRun {
        DirectRun {
            seed,
            duration: Duration::from_secs(6),
        }
    }

    pub async fn run(&self) -> RunResult {
        let mut nemesis = Nemesis::start(3).await.expect("start nodes and proxies");
        let mut cfg = test_config(nemesis.urls());
        cfg.sync.exchange_interval_ms = 500;
        cfg.sync.in_flight_window_ms = 300;
        cfg.sync.live_detection = true;
        cfg.sync.direct_writes = DirectWritesPolicy::Adopt;
        let app = App::start(cfg.validate().expect("valid config"))
            .await
            .expect("start quorumd");
        let kinds: Vec<FaultKind> = FaultKind::ALL
            .into_iter()
            .filter(|k| *k != FaultKind::RestartEmpty)
            .collect();
        let plan = Plan::generate(self.seed, &PlanSettings::new(3, self.duration, &kinds));
        let stop = Arc::new(AtomicBool::new(false));
        let workload = Workload {
            base: format!("http://{}", app.http_addr()),
            level: "quorum",
            clients: 3,
            keys: KEYS,
            seed: self.seed,
        };
        let node_urls: Vec<String> = nemesis.cluster.nodes.iter().map(|n| n.url()).collect();
        let direct_writes = Arc::new(Mutex::new(Vec::new()));
        let observations = Arc::new(Mutex::new(Vec::new()));
        let (history, faults, (), (), ()) = tokio::join!(
            workload.run(stop.clone()),
            async {
                let report = nemesis.play(&plan, std::future::pending()).await;
                stop.store(true, Ordering::Relaxed);
                report
            },
            write_directly(&node_urls, self.seed, &stop, &direct_writes),
            observe(&app, &node_urls, &stop, &observations),
            sweep_repeatedly(&app, &stop),
        );
        let mut violations = run::heal(&mut nemesis, &faults);
        // Events sent while a subscription was cut are lost: the scrub is the guarantee.
        if let Err(e) = app
            .sweeper()
            .run(SweepRequest::new(SweepMode::Full, SweepTrigger::Test))
            .await
        {
            violations.push(format!("full sweep after the heal: {e}"));
        }
        let convergence = run::converge(&app).await;
        if convergence.is_none() {
            violations.push("replicas did not converge within 60 s of the heal".into());
        }
        let mut all_writes = history.writes.clone();
        all_writes.extend(run::into_inner(direct_writes));
        let mut finals = std::collections::BTreeMap::new();
        for k in 0..KEYS {
            let key = format!("k{k}");
            finals.insert(key.clone(), run::node_entries(&nemesis, &app, &key).await);
        }
        violations.extend(
            quorumd_testkit::checker::durability::lost_writes(&all_writes, &finals)
                .iter()
                .map(ToString::to_string),
        );
        violations.extend(
            monotonic::backwards(&run::into_inner(observations))
                .iter()
                .map(ToString::to_string),
        );
        let direct = all_writes.len() - history.writes.len();
        app.shutdown().await.expect("clean shutdown");
        let mut result = RunResult::new(self.seed, history.operations(), faults, violations);
        result.convergence = convergence;
        result.counters.insert("direct writes", direct);
        result
    }
}

/// Every 30 ms, a direct `SET` of one of the keys on one node, recorded as a write whose
/// outcome is unknown (a paused node may apply it later).
async fn write_directly(urls: &[String], seed: u64, stop: &AtomicBool, writes: &Mutex<Vec<Write>>) {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let key = format!("k{}", state as usize % KEYS);
        let node = (state >> 32) as usize % urls.len();
        n += 1;
        let value = format!("direct-{n}");
        writes.lock().unwrap().push(Write {
            key: key.clone(),
            value: value.clone().into_bytes(),
            acked: None,
            invoked: 0,
            completed: None,
        });
        let set = async {
            let mut c = connect(&urls[node]).await?;
            redis::cmd("SET")
                .arg(&key)
                .arg(&value)
                .query_async::<()>(&mut c)
                .await
        };
        let _ = tokio::time::timeout(Duration::from_millis(300), set).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// Every 50 ms, each reachable node's metadata version of every key, in time order.
async fn observe(app: &App, urls: &[String], stop: &AtomicBool, out: &Mutex<Vec<Observation>>) {
    let locs: Vec<_> = (0..KEYS)
        .map(|k| app.store().locate(format!("k{k}").as_bytes()).unwrap())
        .collect();
    while !stop.load(Ordering::Relaxed) {
        for (node, url) in urls.iter().enumerate() {
            let read = async {
                let mut c = connect(url).await?;
                let mut pipe = redis::pipe();
                for l in &locs {
                    pipe.cmd("HGET").arg(&*l.meta_key).arg(&l.key[..]);
                }
                pipe.query_async::<Vec<Option<Vec<u8>>>>(&mut c).await
            };
            // A paused or killed node is simply not observed this round.
            let Ok(Ok(metas)) = tokio::time::timeout(Duration::from_millis(200), read).await else {
                continue;
            };
            let mut out = out.lock().unwrap();
            for (l, m) in locs.iter().zip(metas) {
                out.push(Observation {
                    node,
                    key: String::from_utf8_lossy(&l.key).into_owned(),
                    version: m.map(|m| match Meta::parse(&m) {
                        Ok(meta) => meta.version.encode(),
                        Err(e) => format!("<{e}>"),
                    }),
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Full sweeps, one after another, racing the clients and the direct writes.
async fn sweep_repeatedly(app: &App, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let _ = app
            .sweeper()
            .run(SweepRequest::new(SweepMode::Full, SweepTrigger::Test))
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A connection straight to a node, which may be down: killed nodes are part of the plan.
async fn connect(url: &str) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await
}
