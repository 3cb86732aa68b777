//! The KV register workload: a few clients read and write a few keys at one consistency level
//! through the HTTP API, and every operation is recorded for the checkers.

use quorumd_testkit::checker::durability::{Read, Write};
use quorumd_testkit::checker::register::{Op, OpKind};
use reqwest::StatusCode;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Everything the clients did.
#[derive(Default)]
pub struct History {
    pub writes: Vec<Write>,
    pub reads: Vec<Read>,
    /// Per key, in the register checker's form (values are the written numbers).
    pub ops: BTreeMap<String, Vec<Op>>,
}

impl History {
    pub fn operations(&self) -> usize {
        self.writes.len() + self.reads.len()
    }
}

pub struct Workload {
    pub base: String,
    pub level: &'static str,
    pub clients: usize,
    pub keys: usize,
    pub seed: u64,
}

impl Workload {
    /// Runs until `stop` is set; each client has one request in flight at a time.
    pub async fn run(&self, stop: Arc<AtomicBool>) -> History {
        let http = crate::run::http_client();
        let start = Instant::now();
        let history = Arc::new(Mutex::new(History::default()));
        let mut tasks = Vec::new();
        for client in 0..self.clients {
            let (http, history, stop) = (http.clone(), history.clone(), stop.clone());
            let base = self.base.clone();
            let (level, keys) = (self.level, self.keys);
            // Cheap per-client LCG: the mix of operations only has to vary, not to be random.
            let mut state = self.seed.wrapping_mul(31).wrapping_add(client as u64 + 1);
            tasks.push(tokio::spawn(async move {
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let key = format!("k{}", (state >> 33) as usize % keys);
                    let url = format!("{base}/v1/kv/{key}?consistency={level}");
                    let now = || start.elapsed().as_nanos() as u64;
                    let invoked = now();
                    if (state >> 20).is_multiple_of(2) {
                        seq += 1;
                        let value = (client as u64) * 1_000_000_000 + seq;
                        let reply = http.put(&url).body(value.to_string()).send().await;
                        let acked = match reply {
                            Ok(r) if r.status() == StatusCode::OK => etag(&r),
                            _ => None,
                        };
                        let completed = acked.as_ref().map(|_| now());
                        let mut h = history.lock().unwrap();
                        h.writes.push(Write {
                            key: key.clone(),
                            value: value.to_string().into_bytes(),
                            acked,
                            invoked,
                            completed,
                        });
                        h.ops.entry(key).or_default().push(Op {
                            client,
                            kind: OpKind::Write(Some(value)),
                            invoked,
                            completed,
                        });
                    } else {
                        let Ok(r) = http.get(&url).send().await else {
                            continue;
                        };
                        let (version, value) = match r.status() {
                            StatusCode::OK => {
                                let v = etag(&r);
                                let body = r.text().await.unwrap_or_default();
                                (v, body.parse::<u64>().ok())
                            }
                            StatusCode::NOT_FOUND => (None, None),
                            _ => continue, // a failed read observed nothing
                        };
                        let completed = now();
                        let mut h = history.lock().unwrap();
                        h.reads.push(Read {
                            key: key.clone(),
                            version,
                            invoked,
                            completed,
                        });
                        h.ops.entry(key).or_default().push(Op {
                            client,
                            kind: OpKind::Read(value),
                            invoked,
                            completed: Some(completed),
                        });
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("client task");
        }
        crate::run::into_inner(history)
    }
}

/// The version in an `ETag` header, without its quotes.
fn etag(r: &reqwest::Response) -> Option<String> {
    let raw = r.headers().get(reqwest::header::ETAG)?.to_str().ok()?;
    Some(raw.trim_matches('"').to_string())
}
