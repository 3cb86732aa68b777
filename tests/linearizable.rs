//! The `linearizable` level, checked: concurrent clients read and write a few registers
//! while nodes are paused and resumed; every key's recorded history must be linearizable
//! (Wing–Gong–Lowe checker in `quorumd_testkit::checker::register`). A negative control records a
//! stale read at level `one` and proves the same checker reports it.

use quorumd_testkit::cluster as common;

use common::TestCluster;
use quorumd_testkit::checker::register::{Op, OpKind, RegValue, Verdict, check};
use reqwest::StatusCode;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Collects operations per key with times relative to one start instant.
#[derive(Clone)]
struct Recorder {
    start: Instant,
    ops: Arc<Mutex<BTreeMap<String, Vec<Op>>>>,
}

impl Recorder {
    fn new() -> Self {
        Recorder {
            start: Instant::now(),
            ops: Arc::default(),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn record(&self, key: &str, op: Op) {
        self.ops
            .lock()
            .unwrap()
            .entry(key.to_string())
            .or_default()
            .push(op);
    }

    /// Runs one read or write through the API and records it.
    async fn run(&self, tc: &Tcx, client: usize, key: &str, write: Option<u64>, level: &str) {
        let invoked = self.now();
        let url = format!("{}/v1/kv/{key}?consistency={level}", tc.base);
        match write {
            Some(v) => {
                let ok = tc
                    .http
                    .put(&url)
                    .body(v.to_string())
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == StatusCode::OK);
                let completed = ok.then(|| self.now());
                self.record(
                    key,
                    Op {
                        client,
                        kind: OpKind::Write(Some(v)),
                        invoked,
                        completed,
                    },
                );
            }
            None => {
                let Ok(r) = tc.http.get(&url).send().await else {
                    return;
                };
                let seen: RegValue = match r.status() {
                    StatusCode::OK => Some(r.text().await.unwrap().parse().unwrap()),
                    StatusCode::NOT_FOUND => None,
                    _ => return, // a failed read observed nothing
                };
                self.record(
                    key,
                    Op {
                        client,
                        kind: OpKind::Read(seen),
                        invoked,
                        completed: Some(self.now()),
                    },
                );
            }
        }
    }

    fn check_all(&self) -> Vec<(String, usize, Verdict)> {
        let ops = self.ops.lock().unwrap();
        ops.iter()
            .map(|(k, h)| (k.clone(), h.len(), check(None, h)))
            .collect()
    }
}

/// What the workload needs of the cluster, cloneable into tasks.
#[derive(Clone)]
struct Tcx {
    base: String,
    http: reqwest::Client,
}

/// Tiny deterministic PRNG so a failing run can be replayed from its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const FAULT_CYCLES: u32 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn linearizable_level_is_linearizable_under_pauses() {
    let seed = std::env::var("LINEARIZABLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_u64);
    eprintln!("seed {seed} (set LINEARIZABLE_SEED to replay)");
    let tc = Arc::new(tokio::sync::Mutex::new(TestCluster::start(3).await));
    let cx = {
        let t = tc.lock().await;
        Tcx {
            base: t.base.clone(),
            http: t.http.clone(),
        }
    };
    let rec = Recorder::new();
    let done = Arc::new(AtomicBool::new(false));
    let keys = ["x", "y", "z"];

    let clients: Vec<_> = (0..6)
        .map(|c| {
            let (cx, rec, done) = (cx.clone(), rec.clone(), done.clone());
            let mut rng = Rng(seed ^ (c as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            tokio::spawn(async move {
                // Until the nemesis is done, pacing so per-key histories stay checkable.
                for n in 0..400u64 {
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5 + rng.next() % 10)).await;
                    let key = keys[(rng.next() % keys.len() as u64) as usize];
                    // Half the clients mostly write, half only read, so reads keep flowing
                    // while writes are held back.
                    let write = (c < 3 && !rng.next().is_multiple_of(5))
                        .then_some(c as u64 * 1_000_000 + n + 1);
                    rec.run(&cx, c, key, write, "linearizable").await;
                }
            })
        })
        .collect();

    // Nemesis, alternating two faults: one node frozen (SIGSTOP) for a while; or two nodes
    // that keep answering reads but hold writes back (CLIENT PAUSE ... WRITE), so a write can
    // sit on one node only while reads run: the window a read without write-back falls into.
    let faults = Arc::new(AtomicU32::new(0));
    let mut direct = Vec::new();
    for i in 0..3 {
        direct.push(tc.lock().await.direct(i).await);
    }
    let nemesis = {
        let (tc, done, faults) = (tc.clone(), done.clone(), faults.clone());
        let mut rng = Rng(seed.rotate_left(17) | 1);
        tokio::spawn(async move {
            for cycle in 0..FAULT_CYCLES {
                let victim = (rng.next() % 3) as usize;
                let hold_ms = 150 + rng.next() % 300;
                if cycle % 2 == 0 {
                    tc.lock().await.cluster.nodes[victim].pause();
                    tokio::time::sleep(Duration::from_millis(hold_ms)).await;
                    tc.lock().await.cluster.nodes[victim].resume();
                } else {
                    for i in (0..3).filter(|i| *i != victim) {
                        let _: () = redis::cmd("CLIENT")
                            .arg("PAUSE")
                            .arg(hold_ms)
                            .arg("WRITE")
                            .query_async(&mut direct[i])
                            .await
                            .unwrap();
                    }
                    tokio::time::sleep(Duration::from_millis(hold_ms)).await;
                }
                faults.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50 + rng.next() % 200)).await;
            }
            done.store(true, Ordering::Relaxed);
        })
    };
    nemesis.await.unwrap();
    for c in clients {
        c.await.unwrap();
    }

    let results = rec.check_all();
    let total: usize = results.iter().map(|(_, n, _)| n).sum();
    let completed = rec
        .ops
        .lock()
        .unwrap()
        .values()
        .flatten()
        .filter(|o| o.completed.is_some())
        .count();
    eprintln!(
        "{total} ops recorded, {completed} completed, {} faults",
        faults.load(Ordering::Relaxed)
    );
    assert!(
        faults.load(Ordering::Relaxed) >= 2,
        "the nemesis must have injected faults"
    );
    assert!(
        completed >= 200,
        "too few completed operations for a meaningful check: {completed}"
    );
    for (key, n, verdict) in results {
        assert_eq!(verdict, Verdict::Linearizable, "key {key} ({n} ops)");
    }
}

/// Negative control: a read at `one` served by a node that missed an acknowledged write is a
/// stale read, and the checker must say so. The same history at `linearizable` is refused by
/// the service instead (no majority), which the checker accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checker_catches_a_stale_read_at_level_one() {
    let mut tc = TestCluster::start(3).await;
    let cx = Tcx {
        base: tc.base.clone(),
        http: tc.http.clone(),
    };
    let rec = Recorder::new();
    // At `all`, so that node 2 surely holds value 1 before it is cut off: a quorum write
    // answers after two nodes, and the third may still be applying it when the isolation
    // starts, leaving node 2 with nothing to serve stale.
    rec.run(&cx, 0, "r", Some(1), "all").await;
    tc.isolate(2).await;
    rec.run(&cx, 0, "r", Some(2), "quorum").await;
    tc.resume_without_hints(2).await;
    tc.wait_health(2, "up").await;
    tc.cluster.nodes[0].kill();
    tc.cluster.nodes[1].kill();
    rec.run(&cx, 1, "r", None, "linearizable").await; // refused: leaves no observation
    let verdicts = rec.check_all();
    assert_eq!(
        verdicts[0].2,
        Verdict::Linearizable,
        "a refused read is not a stale read"
    );
    rec.run(&cx, 1, "r", None, "one").await; // served by node 2, which holds value 1
    let history = rec.ops.lock().unwrap()["r"].clone();
    assert!(
        history.iter().any(|o| o.kind == OpKind::Read(Some(1))),
        "the stale node answered: {history:?}"
    );
    let verdict = check(None, &history);
    assert!(
        matches!(verdict, Verdict::Violation(_)),
        "the checker must flag the stale read: {verdict:?}"
    );
}
