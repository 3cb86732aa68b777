//! One seeded run: nodes behind proxies, quorumd over them, a workload racing a fault plan,
//! then heal, converge, and check.

use crate::common::test_config;
use crate::workload::{History, Workload};
use quorumd::app::App;
use quorumd::meta::{EntryKind, Meta};
use quorumd::sync::{SweepMode, SweepRequest, SweepTrigger};
use quorumd_testkit::checker::durability::{self, Entry};
use quorumd_testkit::checker::register::{self, Verdict};
use quorumd_testkit::nemesis::plan::{FaultKind, Plan, PlanSettings};
use quorumd_testkit::nemesis::{FaultReport, Nemesis};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What one run saw.
pub struct RunResult {
    pub seed: u64,
    pub operations: usize,
    pub faults: FaultReport,
    pub violations: Vec<String>,
    /// From the heal to the first exchange that found nothing left to repair.
    pub convergence: Option<Duration>,
    /// Workload-specific counts for the report (e.g. redeliveries), by column name.
    pub counters: BTreeMap<&'static str, usize>,
}

impl RunResult {
    /// A run's result with no convergence time and no workload-specific counts.
    pub fn new(
        seed: u64,
        operations: usize,
        faults: FaultReport,
        violations: Vec<String>,
    ) -> RunResult {
        RunResult {
            seed,
            operations,
            faults,
            violations,
            convergence: None,
            counters: BTreeMap::new(),
        }
    }
}

/// Shuts every instance down cleanly.
pub async fn shut_down(apps: Vec<App>) {
    for app in apps {
        app.shutdown().await.expect("clean shutdown");
    }
}

pub struct KvRun {
    pub level: &'static str,
    pub seed: u64,
    pub duration: Duration,
    pub kinds: Vec<FaultKind>,
    pub keys: usize,
}

impl KvRun {
    pub fn new(level: &'static str, seed: u64) -> KvRun {
        KvRun {
            level,
            seed,
            duration: Duration::from_secs(6),
            kinds: FaultKind::ALL.to_vec(),
            keys: 4,
        }
    }

    pub async fn run(&self) -> RunResult {
        let mut nemesis = Nemesis::start(3).await.expect("start nodes and proxies");
        let mut cfg = test_config(nemesis.urls());
        // Background exchanges on, as in production, so a wiped node is healed as it would be.
        cfg.sync.exchange_interval_ms = 500;
        cfg.sync.in_flight_window_ms = 300;
        let app = App::start(cfg.validate().expect("valid config"))
            .await
            .expect("start quorumd");
        let plan = Plan::generate(self.seed, &PlanSettings::new(3, self.duration, &self.kinds));
        let stop = Arc::new(AtomicBool::new(false));
        let workload = Workload {
            base: format!("http://{}", app.http_addr()),
            level: self.level,
            clients: 4,
            keys: self.keys,
            seed: self.seed,
        };
        let (history, faults) = tokio::join!(workload.run(stop.clone()), async {
            let report = nemesis.play(&plan, std::future::pending()).await;
            stop.store(true, Ordering::Relaxed);
            report
        });
        let mut violations = heal(&mut nemesis, &faults);
        let convergence = converge(&app).await;
        if convergence.is_none() {
            violations.push("replicas did not converge within 60 s of the heal".into());
        }
        let finals = read_finals(&nemesis, &app, &history).await;
        violations.extend(check(self.level, &history, &finals));
        app.shutdown().await.expect("clean shutdown");
        RunResult {
            convergence,
            ..RunResult::new(self.seed, history.operations(), faults, violations)
        }
    }
}

/// Every check the level promises.
pub fn check(level: &str, history: &History, finals: &BTreeMap<String, Vec<Entry>>) -> Vec<String> {
    let mut found: Vec<String> = durability::lost_writes(&history.writes, finals)
        .iter()
        .map(ToString::to_string)
        .collect();
    if level == "quorum" || level == "linearizable" || level == "all" {
        found.extend(
            durability::stale_reads(&history.writes, &history.reads)
                .iter()
                .map(ToString::to_string),
        );
    }
    if level == "linearizable" {
        for (key, ops) in &history.ops {
            match register::check(None, ops) {
                Verdict::Linearizable => {}
                Verdict::Violation(why) => found.push(format!("key {key} not linearizable: {why}")),
                Verdict::Inconclusive(why) => found.push(format!(
                    "key {key}: linearizability check inconclusive: {why}"
                )),
            }
        }
    }
    found
}

/// Waits until every node is up (not recovering) and an exchange finds nothing to repair.
pub async fn converge(app: &App) -> Option<Duration> {
    let healed = Instant::now();
    let deadline = healed + Duration::from_secs(60);
    let pool = app.store().pool().clone();
    while Instant::now() < deadline {
        let all_up = pool
            .nodes()
            .iter()
            .all(|n| n.health() == quorumd::pool::Health::Up);
        if all_up
            && let Ok(report) = app
                .sweeper()
                .run(SweepRequest::new(SweepMode::Exchange, SweepTrigger::Test))
                .await
        {
            let clean = report.buckets_mismatched == 0
                && report.keys_deferred == 0
                && report.errors.is_empty();
            if clean {
                return Some(healed.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Each node's entry for every key the workload wrote, read straight from the node.
async fn read_finals(
    nemesis: &Nemesis,
    app: &App,
    history: &History,
) -> BTreeMap<String, Vec<Entry>> {
    let mut finals = BTreeMap::new();
    for w in &history.writes {
        if !finals.contains_key(&w.key) {
            let entries = node_entries(nemesis, app, &w.key).await;
            finals.insert(w.key.clone(), entries);
        }
    }
    finals
}

/// `key`'s live entry (version, value) on each node, read straight from the node.
pub async fn node_entries(nemesis: &Nemesis, app: &App, key: &str) -> Vec<Entry> {
    let loc = app.store().locate(key.as_bytes()).expect("user key");
    let mut entries = Vec::new();
    for node in &nemesis.cluster.nodes {
        let mut c = direct(&node.url()).await;
        entries.push(read_entry(&mut c, &loc.meta_key, key).await);
    }
    entries
}

/// `key`'s live entry (version, value) over `c`: its metadata field and its value, in one
/// pipeline (under the slot placement they share a slot, so a cluster takes it too).
pub async fn read_entry(
    c: &mut impl redis::aio::ConnectionLike,
    meta_key: &str,
    key: &str,
) -> Entry {
    let (meta, value): (Option<Vec<u8>>, Option<Vec<u8>>) = redis::pipe()
        .cmd("HGET")
        .arg(meta_key)
        .arg(key)
        .cmd("GET")
        .arg(key)
        .query_async(c)
        .await
        .expect("read a node");
    let meta = meta.map(|m| Meta::parse(&m).expect("well-formed metadata"));
    match meta {
        Some(m) if m.kind == EntryKind::Value => Some((
            m.version.encode(),
            value.unwrap_or_else(|| b"<value missing>".to_vec()),
        )),
        _ => None,
    }
}

/// Ends every fault; what the nemesis could not do (apply or heal) is a violation of the run.
pub fn heal(nemesis: &mut Nemesis, faults: &FaultReport) -> Vec<String> {
    let mut violations: Vec<String> = faults
        .failures
        .iter()
        .map(|f| format!("nemesis: {f}"))
        .collect();
    if let Err(e) = nemesis.heal_all() {
        violations.push(format!("nemesis: heal: {e}"));
    }
    violations
}

/// A plan of every fault kind on 3 nodes, from `seed`.
pub fn random_plan(seed: u64, duration: Duration) -> Plan {
    Plan::generate(seed, &PlanSettings::new(3, duration, &FaultKind::ALL))
}

/// `n` quorumd instances over the same nodes, with their HTTP base URLs.
pub async fn start_instances(cfg: &quorumd::config::Config, n: usize) -> (Vec<App>, Vec<String>) {
    let mut apps = Vec::new();
    for _ in 0..n {
        let validated = cfg.clone().validate().expect("valid config");
        apps.push(App::start(validated).await.expect("start quorumd"));
    }
    let bases = apps
        .iter()
        .map(|a| format!("http://{}", a.http_addr()))
        .collect();
    (apps, bases)
}

/// The history the clients shared, once they are all done.
pub fn into_inner<T>(shared: Arc<std::sync::Mutex<T>>) -> T {
    Arc::try_unwrap(shared)
        .ok()
        .expect("clients done")
        .into_inner()
        .unwrap()
}

/// The workload clients' HTTP client: 5 s a request, so a request held by a fault ends.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A connection straight to a node, past quorumd and the proxy.
pub async fn direct(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("direct connection")
}
