//! Shared by the queue suites, over standalone nodes (`queue`) and over Redis Cluster replicas
//! (`cluster_queue`): the HTTP calls on a queue, lease histories for the exclusion checker of
//! `crates/testkit/src/checker/locks.rs`, and the run of producers and consumers with a
//! consumer that dies mid-lease, in phases the tests call around their own faults.

#![allow(dead_code)] // each test binary uses a different part

use quorumd_testkit::checker::locks::{Held, check};
use quorumd_testkit::cluster::{TestCluster, post_json as post, wait_until};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

pub fn q(tc: &TestCluster, name: &str, rest: &str) -> String {
    format!("{}/v1/queues/{name}{rest}", tc.base)
}

pub async fn put(tc: &TestCluster, name: &str, body: Value) -> String {
    let (s, v) = post(&tc.http, q(tc, name, "/items"), body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_string()
}

pub async fn claim_with(tc: &TestCluster, name: &str, body: Value) -> Option<Value> {
    let (s, v) = post(&tc.http, q(tc, name, "/claim"), body).await;
    match s {
        StatusCode::OK => Some(v),
        StatusCode::NO_CONTENT => None,
        other => panic!("claim: {other} {v}"),
    }
}

pub async fn claim(tc: &TestCluster, name: &str, lease_ms: u64) -> Option<Value> {
    claim_with(tc, name, json!({"lease_ms": lease_ms})).await
}

/// `action` (`ack`, `nack`, `extend`) on a claimed `item`, with its lease and the fields of
/// `extra`.
pub async fn act_with(
    tc: &TestCluster,
    name: &str,
    item: &Value,
    action: &str,
    extra: Value,
) -> (StatusCode, Value) {
    let mut body = json!({"lease": item["lease"]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let id = item["id"].as_str().unwrap();
    post(
        &tc.http,
        q(tc, name, &format!("/items/{id}/{action}")),
        body,
    )
    .await
}

/// [`act_with`] and nothing but the lease.
pub async fn act(tc: &TestCluster, name: &str, item: &Value, action: &str) -> (StatusCode, Value) {
    act_with(tc, name, item, action, json!({})).await
}

/// Lease intervals of consumers, on one monotonic clock.
pub struct Leases {
    pub t0: Instant,
    pub history: Mutex<Vec<Held>>,
}

impl Leases {
    pub fn now(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }
    /// From when the claim was answered to the claim's send time plus its validity, or to when
    /// the consumer let go, whichever is first.
    pub fn record(&self, id: &str, consumer: &str, sent: u64, got: u64, validity_ms: u64) {
        let end = (sent + validity_ms * 1000).min(self.now());
        self.history.lock().unwrap().push(Held {
            resource: id.to_string(),
            holder: consumer.to_string(),
            fence: None,
            start: got,
            end,
        });
    }
}

/// Items each producer of a [`Workload`] puts.
pub const PER_PRODUCER: usize = 20;
/// Producers of a [`Workload`].
pub const PRODUCERS: usize = 3;

/// Whether depths show nothing ready, leased or delayed.
pub fn drained(d: &Value) -> bool {
    d["ready"] == 0 && d["leased"] == 0 && d["delayed"] == 0
}

/// A run of producers and consumers on one queue: 3 producers put 20 items each (priorities
/// 0 to 2; a put may be refused as unavailable), 4 consumers claim (600 ms leases) and ack;
/// consumer 0 dies after its third claim, never acking, so its leases run out. Every lease
/// is recorded for the exclusion checker.
pub struct Workload {
    produced: Arc<Mutex<BTreeSet<String>>>,
    producers: Vec<JoinHandle<()>>,
    leases: Arc<Leases>,
    acked: Arc<Mutex<BTreeMap<String, u32>>>,
    stop: Arc<AtomicBool>,
    consumers: Vec<JoinHandle<()>>,
}

impl Workload {
    /// Starts the producers and the consumers on queue `name`.
    pub fn start(tc: &TestCluster, name: &str) -> Workload {
        let produced = Arc::new(Mutex::new(BTreeSet::new()));
        let mut producers = Vec::new();
        for p in 0..PRODUCERS {
            let (http, url, produced) = (tc.http.clone(), q(tc, name, "/items"), produced.clone());
            producers.push(tokio::spawn(async move {
                for i in 0..PER_PRODUCER {
                    let (s, v) = post(
                        &http,
                        url.clone(),
                        json!({"payload": {"p": p, "i": i}, "priority": i % 3}),
                    )
                    .await;
                    if s == StatusCode::CREATED {
                        produced
                            .lock()
                            .unwrap()
                            .insert(v["id"].as_str().unwrap().to_string());
                    } else {
                        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
                    }
                }
            }));
        }
        let leases = Arc::new(Leases {
            t0: Instant::now(),
            history: Mutex::default(),
        });
        let acked = Arc::new(Mutex::new(BTreeMap::<String, u32>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut consumers = Vec::new();
        for c in 0..4 {
            let (http, base, name) = (tc.http.clone(), tc.base.clone(), name.to_owned());
            let (leases, acked, stop) = (leases.clone(), acked.clone(), stop.clone());
            consumers.push(tokio::spawn(async move {
                // Consumer 0 dies after its third claim: it never acks, its leases run out.
                let mut claims = 0;
                while !stop.load(Ordering::Relaxed) {
                    let sent = leases.now();
                    let (s, v) = post(
                        &http,
                        format!("{base}/v1/queues/{name}/claim"),
                        json!({"lease_ms": 600, "wait_ms": 200}),
                    )
                    .await;
                    if s != StatusCode::OK {
                        continue;
                    }
                    let got = leases.now();
                    claims += 1;
                    let id = v["id"].as_str().unwrap().to_string();
                    let validity = v["validity_ms"].as_u64().unwrap();
                    if c == 0 && claims <= 3 {
                        leases.record(&id, &format!("c{c}"), sent, got, validity);
                        continue;
                    }
                    if c == 0 {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(rand::random_range(0..20))).await;
                    leases.record(&id, &format!("c{c}"), sent, got, validity);
                    let (s, _) = post(
                        &http,
                        format!("{base}/v1/queues/{name}/items/{id}/ack"),
                        json!({"lease": v["lease"]}),
                    )
                    .await;
                    if s == StatusCode::OK {
                        *acked.lock().unwrap().entry(id).or_default() += 1;
                    }
                }
            }));
        }
        Workload {
            produced,
            producers,
            leases,
            acked,
            stop,
            consumers,
        }
    }

    /// Puts acknowledged so far.
    pub fn puts(&self) -> usize {
        self.produced.lock().unwrap().len()
    }

    /// Items acked so far.
    pub fn acks(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits until every producer is done.
    pub async fn producers_done(&mut self) {
        for p in self.producers.drain(..) {
            p.await.unwrap();
        }
    }

    /// After [`Workload::producers_done`]: at least 40 puts were acknowledged; waits until each
    /// is acked, or `is_drained` says the queue has nothing left to deliver, then stops the
    /// consumers.
    pub async fn finish<F: Future<Output = bool>>(&mut self, is_drained: impl Fn() -> F) {
        let produced = self.produced.lock().unwrap().clone();
        assert!(
            produced.len() >= 40,
            "only {} puts acknowledged",
            produced.len()
        );
        wait_until(
            Duration::from_secs(40),
            "every acknowledged item acked or dead",
            || async { produced.is_subset(&self.done()) || is_drained().await },
        )
        .await;
        self.stop.store(true, Ordering::Relaxed);
        for c in self.consumers.drain(..) {
            c.await.unwrap();
        }
    }

    /// The items acked.
    fn done(&self) -> BTreeSet<String> {
        self.acked.lock().unwrap().keys().cloned().collect()
    }

    /// After [`Workload::finish`], given the queue's depths `d`: every acknowledged put was
    /// acked or dead-lettered, nothing is left ready or leased, and no item was leased to two
    /// consumers at once.
    pub fn check(&self, d: &Value) {
        let produced = self.produced.lock().unwrap().clone();
        let done = self.done();
        let dead = d["dead"].as_u64().unwrap() as usize;
        let missing: Vec<&String> = produced.difference(&done).collect();
        assert!(
            missing.len() <= dead,
            "{} items neither acked nor dead-lettered ({d})",
            missing.len()
        );
        assert_eq!(
            d["ready"].as_u64().unwrap() + d["leased"].as_u64().unwrap(),
            0,
            "{d}"
        );
        let history = self.leases.history.lock().unwrap().clone();
        let violations = check(&history);
        assert!(violations.is_empty(), "{violations:?}");
        assert!(history.len() >= produced.len());
    }
}
