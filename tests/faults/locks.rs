//! The lock workload: HTTP clients through two quorumd instances acquire, extend and release a
//! few lock names while a seeded plan injects faults. Each holder writes to a fenced resource
//! (one per name, in the test) and its validity interval is recorded on the test's monotonic
//! clock; [`check`] is the same for the runs and the negative control.

use crate::common::test_config;
use crate::run::{RunResult, heal, into_inner, random_plan, shut_down, start_instances};
use quorumd::config::Config;
use quorumd_testkit::checker::locks::{self, Held};
use quorumd_testkit::nemesis::Nemesis;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest lock TTL in these runs: a restarted node counts again this long after it came back,
/// so keeping it short lets restarted nodes rejoin within a run.
pub const MAX_TTL_MS: u64 = 1500;

/// quorumd settings for the lock and queue workloads.
pub fn config(nemesis: &Nemesis) -> Config {
    let mut cfg = test_config(nemesis.urls());
    cfg.locks.max_ttl_ms = MAX_TTL_MS;
    cfg.queues.max_lease_ms = MAX_TTL_MS;
    cfg
}

/// A resource that accepts a write only with a fence at least the highest it accepted, and an
/// equal fence only from the holder that brought it (fences are unique per grant).
#[derive(Default)]
struct FencedResource {
    highest: u64,
    by: String,
}

/// What the clients saw.
#[derive(Default)]
pub struct LockHistory {
    pub held: Vec<Held>,
    /// Every fence granted (acquisitions), per name, with the holder: uniqueness is checked on
    /// all of them, including grants whose validity was gone when the answer arrived.
    pub fences: Vec<(String, String, u64)>,
    /// Writes the fenced resource refused although the writer was inside its validity: each
    /// means a newer fence had been issued while this holder was still valid.
    pub stale_refused_while_valid: Vec<String>,
    pub writes_accepted: usize,
    pub operations: usize,
    resources: BTreeMap<String, FencedResource>,
}

impl LockHistory {
    /// The fenced resource `name` takes a write from `holder` with `fence`.
    pub fn write(&mut self, name: &str, holder: &str, fence: u64, at_us: u64) {
        let r = self.resources.entry(name.to_string()).or_default();
        if fence > r.highest || (fence == r.highest && r.by == holder) {
            r.highest = fence;
            r.by = holder.to_string();
            self.writes_accepted += 1;
        } else {
            self.stale_refused_while_valid.push(format!(
                "{name:?}: {holder} inside its validity wrote fence {fence} at {at_us} µs; the resource had already accepted {} from {}",
                r.highest, r.by
            ));
        }
    }
}

/// Every lock check: no overlapping validity intervals and fences increasing in grant order
/// (`checker::locks`), fences unique per name, no write refused from a holder within validity.
pub fn check(h: &LockHistory) -> Vec<String> {
    let mut found: Vec<String> = locks::check(&h.held)
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut seen: BTreeMap<(&str, u64), &str> = BTreeMap::new();
    for (name, holder, fence) in &h.fences {
        if let Some(first) = seen.insert((name, *fence), holder) {
            found.push(format!(
                "{name:?}: fence {fence} granted to both {first} and {holder}"
            ));
        }
    }
    found.extend(
        h.stale_refused_while_valid
            .iter()
            .map(|s| format!("stale write: {s}")),
    );
    found
}

pub struct LockRun {
    pub seed: u64,
    pub duration: Duration,
    pub clients: usize,
    pub names: usize,
}

impl LockRun {
    pub fn new(seed: u64) -> LockRun {
        LockRun {
            seed,
            duration: Duration::from_secs(4),
            clients: 6,
            names: 2,
        }
    }

    pub async fn run(&self) -> RunResult {
        let mut nemesis = Nemesis::start(3).await.expect("start nodes and proxies");
        let (apps, bases) = start_instances(&config(&nemesis), 2).await;
        let plan = random_plan(self.seed, self.duration);
        let stop = Arc::new(AtomicBool::new(false));
        let (history, faults) = tokio::join!(self.clients(bases, stop.clone()), async {
            let report = nemesis.play(&plan, std::future::pending()).await;
            stop.store(true, Ordering::Relaxed);
            report
        });
        let mut violations = heal(&mut nemesis, &faults);
        violations.extend(check(&history));
        shut_down(apps).await;
        RunResult {
            counters: BTreeMap::from([
                ("grants", history.fences.len()),
                ("fenced writes", history.writes_accepted),
            ]),
            ..RunResult::new(self.seed, history.operations, faults, violations)
        }
    }

    /// Clients alternate between the instances until `stop`; each one: acquire, write to the
    /// fenced resource, sometimes extend and write again, release.
    async fn clients(&self, bases: Vec<String>, stop: Arc<AtomicBool>) -> LockHistory {
        let http = crate::run::http_client();
        let t0 = Instant::now();
        let history = Arc::new(Mutex::new(LockHistory::default()));
        let mut tasks = Vec::new();
        for c in 0..self.clients {
            let (http, history, stop) = (http.clone(), history.clone(), stop.clone());
            let base = bases[c % bases.len()].clone();
            let names = self.names;
            let mut state = self.seed.wrapping_mul(131).wrapping_add(c as u64 + 1);
            tasks.push(tokio::spawn(async move {
                let now = || t0.elapsed().as_micros() as u64;
                let mut grants = 0;
                while !stop.load(Ordering::Relaxed) {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let name = format!("lock{}", (state >> 33) as usize % names);
                    let url = |action: &str| format!("{base}/v1/locks/{name}/{action}");
                    let sent = now();
                    let (s, g) = post(
                        &http,
                        url("acquire"),
                        json!({"ttl_ms": 600, "wait_ms": 300, "owner": format!("c{c}")}),
                    )
                    .await;
                    history.lock().unwrap().operations += 1;
                    if s != StatusCode::OK {
                        continue;
                    }
                    let got = now();
                    let (Some(fence), Some(validity), Some(token)) = (
                        g["fence"].as_u64(),
                        g["validity_ms"].as_u64(),
                        g["token"].as_str().map(str::to_string),
                    ) else {
                        continue;
                    };
                    // One label per grant (`c3#7`: client 3's 7th), so two grants with one fence
                    // are two holders to every check.
                    grants += 1;
                    let holder = format!("c{c}#{grants}");
                    let mut valid_until = sent + validity * 1000;
                    {
                        let mut h = history.lock().unwrap();
                        h.fences.push((name.clone(), holder.clone(), fence));
                        let at = now();
                        if at < valid_until {
                            h.write(&name, &holder, fence, at);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis((state >> 40) % 30)).await;
                    if (state >> 24).is_multiple_of(3) && now() < valid_until {
                        let ext_sent = now();
                        let (s, e) =
                            post(&http, url("extend"), json!({"token": token, "ttl_ms": 600}))
                                .await;
                        let mut h = history.lock().unwrap();
                        h.operations += 1;
                        // The old validity still binds if the extension came back after it.
                        if s == StatusCode::OK
                            && let Some(v) = e["validity_ms"].as_u64()
                            && now() < valid_until
                        {
                            valid_until = valid_until.max(ext_sent + v * 1000);
                            let at = now();
                            if at < valid_until {
                                h.write(&name, &holder, fence, at);
                            }
                        }
                    }
                    let end = valid_until.min(now());
                    history.lock().unwrap().held.push(Held {
                        resource: name.clone(),
                        holder: holder.clone(),
                        fence: Some(fence),
                        start: got,
                        end,
                    });
                    post(&http, url("release"), json!({"token": token})).await;
                    history.lock().unwrap().operations += 1;
                }
            }));
        }
        for t in tasks {
            t.await.expect("client task");
        }
        into_inner(history)
    }
}

/// POST JSON; a transport error reads as 503 with no body.
pub async fn post(http: &reqwest::Client, url: String, body: Value) -> (StatusCode, Value) {
    match http.post(url).json(&body).send().await {
        Ok(r) => {
            let status = r.status();
            (status, r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Value::Null),
    }
}
