//! The queue workload: producers put items with priorities and consumers claim, ack and nack
//! them over HTTP, through two quorumd instances, while a seeded plan injects faults; one
//! consumer abandons every lease it gets. After the heal the queue is drained, and [`check`]
//! (shared with the negative control) looks for lost items and items leased to two consumers
//! at once; redeliveries are counted.

use crate::locks::{config, post};
use crate::run::{RunResult, direct, heal, into_inner, random_plan, shut_down, start_instances};
use quorumd::calls::queue::QueueKeys;
use quorumd::queue::record::{ItemState, Record};
use quorumd_testkit::checker::locks::{self, Held};
use quorumd_testkit::nemesis::Nemesis;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const QUEUE: &str = "work";

/// What producers and consumers saw.
#[derive(Default)]
pub struct QueueHistory {
    /// Items whose put was acknowledged (201).
    pub produced: BTreeSet<String>,
    /// Lease intervals: from the claim's answer to its send time plus validity, or to when the
    /// consumer let go (sent its ack or nack), whichever is first.
    pub leases: Vec<Held>,
    /// Items whose ack was confirmed (200).
    pub acked: BTreeSet<String>,
    /// Items an ack was sent for without a confirmation (it may have landed).
    pub ack_unconfirmed: BTreeSet<String>,
    /// Claims per item.
    pub claims: BTreeMap<String, usize>,
    pub operations: usize,
}

impl QueueHistory {
    /// Claims beyond the first of each item: redeliveries (after an expired lease or a nack).
    pub fn redeliveries(&self) -> usize {
        self.claims.values().map(|n| n - 1).sum()
    }
}

/// Each item's record on each node, read straight from the nodes.
pub async fn node_records(nemesis: &Nemesis) -> Vec<BTreeMap<String, Record>> {
    let keys = QueueKeys::new(crate::common::key_prefix(), "", QUEUE);
    let mut out = Vec::new();
    for node in &nemesis.cluster.nodes {
        let mut c = direct(&node.url()).await;
        let raw: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(&keys.rec)
            .query_async(&mut c)
            .await
            .expect("read a node");
        out.push(
            raw.into_iter()
                .filter_map(|(id, r)| Record::parse(&r).map(|r| (id, r)))
                .collect(),
        );
    }
    out
}

/// Deliveries after which the runs dead-letter an item.
pub const MAX_DELIVERIES: u32 = 4;

/// Every queue check: each acknowledged put ended acked or dead-lettered (its records merged
/// over the nodes; an item purged from every node was acked, so it needs an ack sent), only
/// after `MAX_DELIVERIES` deliveries and never handed out more often; and no item was leased to
/// two consumers at overlapping intervals.
pub fn check(h: &QueueHistory, nodes: &[BTreeMap<String, Record>]) -> Vec<String> {
    let mut found: Vec<String> = locks::check(&h.leases)
        .iter()
        .map(|v| format!("double lease: {v}"))
        .collect();
    for (id, claims) in &h.claims {
        if *claims > MAX_DELIVERIES as usize {
            found.push(format!(
                "item {id}: delivered {claims} times, max_deliveries is {MAX_DELIVERIES}"
            ));
        }
    }
    for id in &h.produced {
        let merged = merged(nodes, id);
        let ack_sent = h.acked.contains(id) || h.ack_unconfirmed.contains(id);
        match merged.map(|r| (r.state, r.deliveries)) {
            Some((ItemState::Dead, n)) if n < MAX_DELIVERIES => found.push(format!(
                "item {id}: dead-lettered after {n} deliveries, max_deliveries is {MAX_DELIVERIES}"
            )),
            Some((ItemState::Acked | ItemState::Dead, _)) => {}
            None if ack_sent => {}
            None => found.push(format!(
                "item {id}: put acknowledged, never acked, gone from every node"
            )),
            Some((state, _)) => found.push(format!(
                "item {id}: put acknowledged, still {state:?} after the drain"
            )),
        }
    }
    found
}

/// Item `id`'s records on every node, merged as the queue merges them.
fn merged(nodes: &[BTreeMap<String, Record>], id: &str) -> Option<Record> {
    nodes
        .iter()
        .filter_map(|n| n.get(id))
        .fold(None, |m: Option<Record>, r| {
            Some(m.map_or_else(|| r.clone(), |m| m.merge(r)))
        })
}

pub struct QueueRun {
    pub seed: u64,
    pub duration: Duration,
    pub producers: usize,
    pub consumers: usize,
}

/// Lease asked for by consumers; short, so abandoned items come back within a run.
const LEASE_MS: u64 = 700;

impl QueueRun {
    pub fn new(seed: u64) -> QueueRun {
        QueueRun {
            seed,
            duration: Duration::from_secs(4),
            producers: 2,
            consumers: 3,
        }
    }

    pub async fn run(&self) -> RunResult {
        let mut nemesis = Nemesis::start(3).await.expect("start nodes and proxies");
        let mut cfg = config(&nemesis);
        cfg.queues.max_deliveries = MAX_DELIVERIES;
        let (apps, bases) = start_instances(&cfg, 2).await;
        let plan = random_plan(self.seed, self.duration);
        let history = Arc::new(Mutex::new(QueueHistory::default()));
        let t0 = Instant::now();
        let faulting = Arc::new(AtomicBool::new(true));
        let done = Arc::new(AtomicBool::new(false));
        let http = crate::run::http_client();
        let mut tasks = Vec::new();
        for p in 0..self.producers {
            let (http, history, faulting) = (http.clone(), history.clone(), faulting.clone());
            let url = format!("{}/v1/queues/{QUEUE}/items", bases[p % 2]);
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while faulting.load(Ordering::Relaxed) {
                    i += 1;
                    let body = json!({"payload": {"p": p, "i": i}, "priority": i % 3});
                    let (s, v) = post(&http, url.clone(), body).await;
                    {
                        let mut h = history.lock().unwrap();
                        h.operations += 1;
                        if s == StatusCode::CREATED
                            && let Some(id) = v["id"].as_str()
                        {
                            h.produced.insert(id.to_string());
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }));
        }
        for c in 0..self.consumers {
            let consumer = Consumer {
                http: http.clone(),
                base: bases[c % 2].clone(),
                name: format!("c{c}"),
                // Consumer 0 abandons its leases while the faults run (it is "dead"), then
                // helps drain.
                abandons: c == 0,
                nack_every: 5,
                t0,
            };
            let (history, faulting, done) = (history.clone(), faulting.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                consumer.run(&history, &faulting, &done).await
            }));
        }
        let faults = nemesis.play(&plan, std::future::pending()).await;
        faulting.store(false, Ordering::Relaxed);
        let mut violations = heal(&mut nemesis, &faults);
        let healed = Instant::now();
        let drained = drain(&http, &bases[0], &history).await;
        let convergence = drained.then(|| healed.elapsed());
        if !drained {
            violations.push("the queue did not drain within 60 s of the heal".into());
        }
        done.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.expect("client task");
        }
        let history = into_inner(history);
        let records = node_records(&nemesis).await;
        violations.extend(check(&history, &records));
        let dead = history
            .produced
            .iter()
            .filter(|id| merged(&records, id).is_some_and(|r| r.state == ItemState::Dead))
            .count();
        shut_down(apps).await;
        RunResult {
            convergence,
            counters: BTreeMap::from([
                ("items", history.produced.len()),
                ("redeliveries", history.redeliveries()),
                ("dead-lettered", dead),
            ]),
            ..RunResult::new(self.seed, history.operations, faults, violations)
        }
    }
}

/// Waits until every acknowledged put was acked by a consumer or the queue (as a majority
/// sees it) has nothing ready, leased or delayed left.
async fn drain(http: &reqwest::Client, base: &str, history: &Mutex<QueueHistory>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let all_acked = {
            let h = history.lock().unwrap();
            h.produced.is_subset(&h.acked)
        };
        if all_acked {
            return true;
        }
        if let Ok(r) = http.get(format!("{base}/v1/queues/{QUEUE}")).send().await
            && r.status() == StatusCode::OK
            && let Ok(d) = r.json::<serde_json::Value>().await
            && d["ready"] == 0
            && d["leased"] == 0
            && d["delayed"] == 0
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

struct Consumer {
    http: reqwest::Client,
    base: String,
    name: String,
    abandons: bool,
    nack_every: usize,
    t0: Instant,
}

impl Consumer {
    fn now(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    async fn run(&self, history: &Mutex<QueueHistory>, faulting: &AtomicBool, done: &AtomicBool) {
        let mut claims = 0usize;
        while !done.load(Ordering::Relaxed) {
            let sent = self.now();
            let (s, v) = post(
                &self.http,
                format!("{}/v1/queues/{QUEUE}/claim", self.base),
                json!({"lease_ms": LEASE_MS, "wait_ms": 200}),
            )
            .await;
            history.lock().unwrap().operations += 1;
            let (Some(id), Some(validity), Some(lease)) = (
                v["id"].as_str().map(str::to_string),
                v["validity_ms"].as_u64(),
                v["lease"].as_str().map(str::to_string),
            ) else {
                continue;
            };
            if s != StatusCode::OK {
                continue;
            }
            let got = self.now();
            claims += 1;
            *history
                .lock()
                .unwrap()
                .claims
                .entry(id.clone())
                .or_default() += 1;
            let valid_until = sent + validity * 1000;
            let abandon = self.abandons && faulting.load(Ordering::Relaxed);
            if abandon {
                // Holds the item for its whole lease and never answers.
                self.record(history, &id, got, valid_until);
                continue;
            }
            tokio::time::sleep(Duration::from_millis((claims as u64 * 7) % 25)).await;
            let nack = claims.is_multiple_of(self.nack_every);
            let action = if nack { "nack" } else { "ack" };
            self.record(history, &id, got, valid_until.min(self.now()));
            let (s, _) = post(
                &self.http,
                format!("{}/v1/queues/{QUEUE}/items/{id}/{action}", self.base),
                json!({"lease": lease}),
            )
            .await;
            let mut h = history.lock().unwrap();
            h.operations += 1;
            if !nack {
                if s == StatusCode::OK {
                    h.acked.insert(id);
                } else if s != StatusCode::CONFLICT {
                    h.ack_unconfirmed.insert(id);
                }
            }
        }
    }

    fn record(&self, history: &Mutex<QueueHistory>, id: &str, got: u64, end: u64) {
        history.lock().unwrap().leases.push(Held {
            resource: id.to_string(),
            holder: self.name.clone(),
            fence: None,
            start: got,
            end,
        });
    }
}
