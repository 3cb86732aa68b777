//! The CRDT workload under the nemesis: two quorumd instances over three nodes behind fault
//! proxies, clients updating a plain counter, a keyed (idempotent) counter, an OR-set and an
//! LWW map through both while a seeded fault plan runs. After the heal, the keyed increments
//! still unacknowledged are retried with their keys until they are; then every node and both
//! instances must agree, and the state must be one the history allows (`model`).

pub mod controls;
pub mod model;
pub mod state;
pub mod workload;

use crate::common::test_config;
use crate::run::{RunResult, converge};
use model::Finals;
use quorumd::app::App;
use quorumd_testkit::nemesis::Nemesis;
use state::Kind;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use workload::{Client, CrdtHistory, CrdtWorkload};

/// Two instances over the nemesis' nodes, background exchanges on as in production.
pub async fn start_instances(nemesis: &Nemesis) -> Vec<App> {
    let mut cfg = test_config(nemesis.urls());
    cfg.sync.exchange_interval_ms = 500;
    cfg.sync.in_flight_window_ms = 300;
    crate::run::start_instances(&cfg, 2).await.0
}

pub fn client_for(apps: &[App]) -> Client {
    Client::new(
        apps.iter()
            .map(|a| format!("http://{}", a.http_addr()))
            .collect(),
    )
}

/// `FAULT_SEEDS` seeded runs (or `FAULT_SEED`); writes `target/torture/crdt.md`; no violation
/// may be found.
pub async fn suite() {
    let mut results = Vec::new();
    let mut outcomes = String::from(
        "### crdt: outcome mix\n\nOutcomes per run, acknowledged/unknown (keyed: unknown before the heal, all retried with their keys after it):\n\n| seed | plain counter | keyed counter | set | map |\n|---:|---:|---:|---:|---:|\n",
    );
    for seed in crate::seeds() {
        let (r, o) = CrdtRun::new(seed).run().await;
        let _ = writeln!(
            outcomes,
            "| {seed} | {} | {} | {} | {} |",
            o[0], o[1], o[2], o[3]
        );
        results.push(r);
    }
    // The outcome mix shows how much the unknown-outcome rules were exercised.
    let dir = crate::report::dir();
    std::fs::create_dir_all(&dir).expect("create target/torture");
    std::fs::write(dir.join("crdt.outcomes.md"), format!("{outcomes}\n"))
        .expect("write the report");
    crate::finish(
        "crdt",
        "Counter, keyed counter, OR-set and LWW map through two quorumd instances at `quorum`.",
        &results,
    );
}

pub struct CrdtRun {
    pub seed: u64,
    pub duration: Duration,
}

impl CrdtRun {
    pub fn new(seed: u64) -> CrdtRun {
        CrdtRun {
            seed,
            duration: Duration::from_secs(4),
        }
    }

    /// The run, and its outcomes per type (`acknowledged/unknown` as text).
    pub async fn run(&self) -> (RunResult, [String; 4]) {
        let mut nemesis = Nemesis::start(3).await.expect("start nodes and proxies");
        let apps = start_instances(&nemesis).await;
        let client = client_for(&apps);
        let plan = crate::run::random_plan(self.seed, self.duration);
        let stop = Arc::new(AtomicBool::new(false));
        let load = CrdtWorkload {
            client: client.clone(),
            clients: 4,
            seed: self.seed,
        };
        let ((mut history, pending), faults) = tokio::join!(load.run(stop.clone()), async {
            let report = nemesis.play(&plan, std::future::pending()).await;
            stop.store(true, Ordering::Relaxed);
            report
        });
        // A request a client gave up on may still run on the server until its deadline, and
        // land on a node after any check made before then.
        let quiet = Instant::now() + apps[0].store().settings().request_timeout;
        let mut violations = crate::run::heal(&mut nemesis, &faults);
        let healed = Instant::now();
        let mut convergence = None;
        if converge(&apps[0]).await.is_some() && converge(&apps[1]).await.is_some() {
            convergence = Some(healed.elapsed());
        } else {
            violations.push("replicas did not converge within 60 s of the heal".into());
        }
        let outcomes = history
            .outcomes()
            .map(|(acked, unknown)| format!("{acked}/{unknown}"));
        let never =
            workload::retry_pending(&client, &mut history, pending, Duration::from_secs(20)).await;
        violations.extend(
            never
                .iter()
                .map(|k| format!("keyed increment {k} never acknowledged after the heal")),
        );
        tokio::time::sleep_until(quiet.into()).await;
        // The retries may have reached only a quorum: one more clean exchange spreads them.
        for app in &apps {
            converge(app).await;
        }
        violations.extend(check_after_heal(&nemesis, &apps, &client, &history).await);
        crate::run::shut_down(apps).await;
        let result = RunResult {
            convergence,
            ..RunResult::new(self.seed, history.requests, faults, violations)
        };
        (result, outcomes)
    }
}

/// Convergence of every key on every node and instance, then the model.
pub async fn check_after_heal(
    nemesis: &Nemesis,
    apps: &[App],
    client: &Client,
    history: &CrdtHistory,
) -> Vec<String> {
    let read = async |kind, name| state::converged(nemesis, &apps[0], client, kind, name).await;
    let finals = (
        read(Kind::Counter, workload::PLAIN_COUNTER).await,
        read(Kind::Counter, workload::KEYED_COUNTER).await,
        read(Kind::Set, workload::SET).await,
        read(Kind::Map, workload::MAP).await,
    );
    match finals {
        (Ok(plain), Ok(keyed), Ok(set), Ok(map)) => model::check(
            history,
            &Finals {
                plain,
                keyed,
                set,
                map,
            },
        ),
        (a, b, c, d) => [a.err(), b.err(), c.err(), d.err()]
            .into_iter()
            .flatten()
            .map(|e| format!("not converged: {e}"))
            .collect(),
    }
}
