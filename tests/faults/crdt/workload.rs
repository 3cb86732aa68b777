//! The CRDT workload: clients increment two counters (one plainly, one with idempotency keys
//! and retries), add and remove set members and write and delete map fields, each request
//! through one of two quorumd instances in turn. Every request is recorded with the times the
//! checkers need to decide what its outcome allows.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Counter incremented without idempotency keys: a failed increment may or may not count.
pub const PLAIN_COUNTER: &str = "hits";
/// Counter incremented only with idempotency keys, every failed one retried until acknowledged:
/// its value must be exact.
pub const KEYED_COUNTER: &str = "paid";
pub const SET: &str = "tags";
pub const MAP: &str = "profile";
pub const MEMBERS: usize = 6;
pub const FIELDS: usize = 4;

/// Attempts of a keyed increment while the faults run; the rest wait for the heal.
const ATTEMPTS_DURING_FAULTS: usize = 3;

/// Wall-clock microseconds: the clock quorumd's HLC versions are built on (same machine).
pub fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as u64
}

/// When a request took effect, if it did: its effect (a read, a version) happened after
/// `invoked` and, when `decided` is known, before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub invoked: u64,
    /// The acknowledgement, or an error reply (the server had finished by then). `None` when the
    /// client gave up without a reply: the server may still act, at any later time.
    pub decided: Option<u64>,
    pub acked: bool,
}

impl Timing {
    /// Ended before `t` for certain, with its effect applied.
    pub fn acked_before(&self, t: u64) -> bool {
        self.acked && self.decided.is_some_and(|d| d < t)
    }
}

#[derive(Debug, Clone)]
pub struct CounterOp {
    pub delta: i64,
    /// The idempotency key, for the keyed counter.
    pub key: Option<String>,
    pub timing: Timing,
}

#[derive(Debug, Clone)]
pub struct SetOp {
    pub member: String,
    pub add: bool,
    pub timing: Timing,
}

#[derive(Debug, Clone)]
pub struct MapOp {
    pub field: String,
    /// `None`: a delete.
    pub value: Option<String>,
    pub timing: Timing,
}

/// Everything the clients did.
#[derive(Debug, Default)]
pub struct CrdtHistory {
    pub plain: Vec<CounterOp>,
    pub keyed: Vec<CounterOp>,
    pub set: Vec<SetOp>,
    pub map: Vec<MapOp>,
    /// HTTP requests sent, retries included.
    pub requests: usize,
    /// Replies no outcome model allows (a 4xx to a valid request).
    pub unexpected: Vec<String>,
}

impl CrdtHistory {
    /// Operations by type as `acknowledged/unknown outcome`, for the report.
    pub fn outcomes(&self) -> [(usize, usize); 4] {
        fn split<'a>(t: impl Iterator<Item = &'a Timing>) -> (usize, usize) {
            t.fold(
                (0, 0),
                |(a, u), t| if t.acked { (a + 1, u) } else { (a, u + 1) },
            )
        }
        [
            split(self.plain.iter().map(|o| &o.timing)),
            split(self.keyed.iter().map(|o| &o.timing)),
            split(self.set.iter().map(|o| &o.timing)),
            split(self.map.iter().map(|o| &o.timing)),
        ]
    }
}

/// What one request got back.
pub enum Reply {
    Acked(u64),
    /// An error reply (5xx) at this time: outcome unknown, server done.
    Failed(u64),
    /// No reply: outcome unknown, server maybe still working.
    Lost,
    Unexpected(String),
}

impl Reply {
    fn timing(&self, invoked: u64) -> Timing {
        match *self {
            Reply::Acked(t) => Timing {
                invoked,
                decided: Some(t),
                acked: true,
            },
            Reply::Failed(t) => Timing {
                invoked,
                decided: Some(t),
                acked: false,
            },
            Reply::Lost | Reply::Unexpected(_) => Timing {
                invoked,
                decided: None,
                acked: false,
            },
        }
    }
}

#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    /// One base URL per quorumd instance.
    pub bases: Vec<String>,
    /// How long to wait for a reply before the outcome is unknown.
    pub patience: Duration,
}

impl Client {
    pub fn new(bases: Vec<String>) -> Client {
        Client {
            http: reqwest::Client::builder().build().unwrap(),
            bases,
            patience: Duration::from_secs(5),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let Ok(r) = req.timeout(self.patience).send().await else {
            return Reply::Lost;
        };
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        let now = wall_us();
        if status == StatusCode::OK {
            Reply::Acked(now)
        } else if status.is_server_error() {
            Reply::Failed(now)
        } else {
            Reply::Unexpected(format!("{status}: {body}"))
        }
    }

    /// `POST /v1/counters/{name}` through instance `via`.
    pub async fn increment(&self, via: usize, name: &str, delta: i64, key: Option<&str>) -> Reply {
        let mut req = self
            .http
            .post(format!("{}/v1/counters/{name}", self.bases[via]))
            .json(&json!({ "delta": delta }));
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        self.send(req).await
    }

    pub async fn set_op(&self, via: usize, member: &str, add: bool) -> Reply {
        let verb = if add { "add" } else { "remove" };
        let url = format!("{}/v1/sets/{SET}/{verb}", self.bases[via]);
        self.send(self.http.post(url).json(&json!({ "members": [member] })))
            .await
    }

    pub async fn map_op(
        &self,
        via: usize,
        field: &str,
        value: Option<&str>,
        by_delete: bool,
    ) -> Reply {
        let base = &self.bases[via];
        let req = if by_delete {
            self.http
                .delete(format!("{base}/v1/maps/{MAP}/fields/{field}"))
        } else {
            self.http
                .patch(format!("{base}/v1/maps/{MAP}"))
                .json(&json!({ field: value }))
        };
        self.send(req).await
    }

    /// `GET` of a CRDT through instance `via` at level `all`: the JSON body.
    pub async fn read(&self, via: usize, path: &str) -> Result<Value, String> {
        let url = format!("{}/v1/{path}?consistency=all", self.bases[via]);
        let r = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status() != StatusCode::OK {
            return Err(format!("{url}: {}", r.status()));
        }
        r.json().await.map_err(|e| e.to_string())
    }
}

/// A keyed increment that no attempt got acknowledged yet.
pub struct Pending {
    pub index: usize,
    pub attempts: usize,
}

pub struct CrdtWorkload {
    pub client: Client,
    pub clients: usize,
    pub seed: u64,
}

impl CrdtWorkload {
    /// Runs until `stop` is set; each client has one request in flight at a time.
    pub async fn run(&self, stop: Arc<AtomicBool>) -> (CrdtHistory, Vec<Pending>) {
        let history = Arc::new(Mutex::new(CrdtHistory::default()));
        let pending = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for id in 0..self.clients {
            let (history, pending, stop) = (history.clone(), pending.clone(), stop.clone());
            let mut client = self.client.clone();
            // Half the clients give up after a second: more requests whose outcome is unknown
            // while the server still works on them.
            if id % 2 == 1 {
                client.patience = Duration::from_secs(1);
            }
            let seed = self.seed;
            tasks.push(tokio::spawn(async move {
                let mut c = ClientRun {
                    id,
                    client,
                    history,
                    rng: seed.wrapping_mul(0x9e37_79b9).wrapping_add(id as u64 + 1),
                    seq: 0,
                };
                while !stop.load(Ordering::Relaxed) {
                    if let Some(p) = c.step(&stop).await {
                        pending.lock().unwrap().push(p);
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("client task");
        }
        let history = Arc::try_unwrap(history).ok().unwrap().into_inner().unwrap();
        let pending = Arc::try_unwrap(pending).ok().unwrap().into_inner().unwrap();
        (history, pending)
    }
}

struct ClientRun {
    id: usize,
    client: Client,
    history: Arc<Mutex<CrdtHistory>>,
    rng: u64,
    seq: u64,
}

impl ClientRun {
    fn next(&mut self, below: u64) -> u64 {
        self.rng = self
            .rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.rng >> 33) % below
    }

    /// The instance for the next request: the two take turns, in a client-specific order.
    fn via(&mut self) -> usize {
        self.seq += 1;
        (self.id + self.seq as usize) % self.client.bases.len()
    }

    fn record(&self, reply: &Reply, f: impl FnOnce(&mut CrdtHistory)) {
        let mut h = self.history.lock().unwrap();
        h.requests += 1;
        if let Reply::Unexpected(why) = reply {
            h.unexpected.push(format!("client {}: {why}", self.id));
        }
        f(&mut h);
    }

    /// One operation; a keyed increment still unacknowledged when the faults end is returned.
    async fn step(&mut self, stop: &AtomicBool) -> Option<Pending> {
        let via = self.via();
        match self.next(10) {
            0..=2 => {
                let delta = self.delta();
                let invoked = wall_us();
                let reply = self.client.increment(via, PLAIN_COUNTER, delta, None).await;
                self.record(&reply, |h| {
                    h.plain.push(CounterOp {
                        delta,
                        key: None,
                        timing: reply.timing(invoked),
                    })
                });
            }
            3..=4 => return self.keyed_increment(via, stop).await,
            5..=6 => {
                let member = format!("m{}", self.next(MEMBERS as u64));
                let add = self.next(5) < 3;
                let invoked = wall_us();
                let reply = self.client.set_op(via, &member, add).await;
                self.record(&reply, |h| {
                    h.set.push(SetOp {
                        member,
                        add,
                        timing: reply.timing(invoked),
                    })
                });
            }
            _ => {
                let field = format!("f{}", self.next(FIELDS as u64));
                let value = (self.next(10) >= 3).then(|| format!("c{}-{}", self.id, self.seq));
                let by_delete = value.is_none() && self.next(2) == 0;
                let invoked = wall_us();
                let reply = self
                    .client
                    .map_op(via, &field, value.as_deref(), by_delete)
                    .await;
                self.record(&reply, |h| {
                    h.map.push(MapOp {
                        field,
                        value,
                        timing: reply.timing(invoked),
                    })
                });
            }
        }
        None
    }

    /// A nonzero delta in -5..=9: both halves of the PN-counter get exercised.
    fn delta(&mut self) -> i64 {
        match self.next(14) as i64 - 5 {
            0 => 10,
            d => d,
        }
    }

    /// An increment under a fresh idempotency key, retried through the other instance after a
    /// failed attempt, as a careful client would.
    async fn keyed_increment(&mut self, mut via: usize, stop: &AtomicBool) -> Option<Pending> {
        let delta = self.delta();
        let key = format!("c{}-{}", self.id, self.seq);
        let invoked = wall_us();
        let mut attempts = 0;
        let mut timing = None;
        while attempts < ATTEMPTS_DURING_FAULTS && !stop.load(Ordering::Relaxed) {
            attempts += 1;
            let reply = self
                .client
                .increment(via, KEYED_COUNTER, delta, Some(&key))
                .await;
            self.record(&reply, |_| {});
            if let Reply::Acked(t) = reply {
                timing = Some(Timing {
                    invoked,
                    decided: Some(t),
                    acked: true,
                });
                // Sometimes sent again, as by a client that missed the acknowledgement: it
                // must not count twice.
                if self.next(4) == 0 {
                    let again = (via + 1) % self.client.bases.len();
                    let reply = self
                        .client
                        .increment(again, KEYED_COUNTER, delta, Some(&key))
                        .await;
                    self.record(&reply, |_| {});
                }
                break;
            }
            via = (via + 1) % self.client.bases.len();
        }
        let mut h = self.history.lock().unwrap();
        h.keyed.push(CounterOp {
            delta,
            key: Some(key),
            timing: timing.unwrap_or(Timing {
                invoked,
                decided: None,
                acked: false,
            }),
        });
        (!timing.is_some_and(|t| t.acked)).then(|| Pending {
            index: h.keyed.len() - 1,
            attempts,
        })
    }
}

/// Retries every pending keyed increment with its key until acknowledged (or `limit` passes);
/// returns the keys that never were.
pub async fn retry_pending(
    client: &Client,
    history: &mut CrdtHistory,
    pending: Vec<Pending>,
    limit: Duration,
) -> Vec<String> {
    let deadline = std::time::Instant::now() + limit;
    let mut failed = Vec::new();
    for p in pending {
        let op = &mut history.keyed[p.index];
        let key = op.key.clone().expect("keyed");
        let mut via = p.attempts;
        loop {
            let reply = client
                .increment(
                    via % client.bases.len(),
                    KEYED_COUNTER,
                    op.delta,
                    Some(&key),
                )
                .await;
            history.requests += 1;
            if let Reply::Acked(t) = reply {
                op.timing.acked = true;
                op.timing.decided = Some(t);
                break;
            }
            if let Reply::Unexpected(why) = reply {
                history.unexpected.push(format!("retry of {key}: {why}"));
            }
            if std::time::Instant::now() > deadline {
                failed.push(key);
                break;
            }
            via += 1;
            // A backoff between attempts at a cluster that is still recovering.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    failed
}
