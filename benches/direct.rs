//! `make bench` (sixth part): changes made on a node outside quorumd (issue 14), each figure
//! set against a baseline measured in the same run.
//!
//! 1. Live detection latency: three nodes, quorumd with `sync.live_detection = true` and
//!    `sync.direct_writes = "adopt"`, waited for until `/v1/status` shows every node's live
//!    detection `on`. Direct `SET`s on node 0 (past quorumd), at `DIRECT_BENCH_RATE` per second,
//!    on distinct keys written through quorumd first (so they are versioned); per write, the time
//!    from sending the `SET` until every other node holds the direct value (one `MGET` of the
//!    pending keys per node, every millisecond). Baseline: the same writer and poller against a
//!    redis-server and its replica (Redis's own replication). Target: p99 under 1 s.
//! 2. Cost of live detection on client traffic: quorum PUT throughput over HTTP with live
//!    detection off (and the nodes' `notify-keyspace-events` empty) and on, windows alternating
//!    round by round, each with a fresh quorumd; the nodes' CPU per PUT (`INFO cpu`), since with
//!    it on every node publishes key events, and quorumd's scripts their `begin`/`end` marks
//!    (only unmarked events are VERIFYed). Target: under 10% drop.
//! 3. Scrub of K keys on one node: K versioned keys (APPLY batches) on a node of its own, a
//!    one-node quorumd with every throttle off (`max_scan_keys_per_sec = 0`,
//!    `max_repairs_per_sec = 0`, `backoff_latency_ms = 0`). Timed: a full sweep's bucket phase
//!    (digest rebuild, metadata read, diff, scrub; `entries_scrubbed`/s), and the scrub alone
//!    (the same `HGETALL` pipelines of `bucket_batch` buckets, then
//!    `calls::store::verify_hashes` of whole buckets, about `key_batch` entries a call, as the
//!    sweep calls them). Baseline: a plain `SCAN 0 … COUNT 1000` loop over the same node.
//!    Target: at most 3× the SCAN's time.
//! 4. Memory per key: `used_memory` grown by K versioned keys (100-byte values, entry format 3)
//!    on the scrub node, minus that grown by the same K keys as plain `SET`s on a fresh node,
//!    divided by K: the metadata's bytes per key. Beside it, entry format 2 (the text entries
//!    before 2026-12-07) on a third node: the same values, the same entries in text, and the
//!    same digests; and on a fourth node the format-2 entries with `hash-max-listpack-value 128`
//!    (a node setting: the 70-byte entries then stay listpacks). Target: at most 50 bytes per
//!    key. Measured once per run (it does not move between rounds).
//!
//! Every figure is the median over rounds; the table goes to stdout and, as markdown, to
//! `target/bench/direct.md`. Where each measured stretch starts and ends goes to stderr with
//! the `CLOCK_MONOTONIC` time, to cut it out of a `perf record -k mono` (docs/BENCHMARKS.md,
//! "Profiling").
//!
//! Environment: `DIRECT_BENCH_ROUNDS` (default 3), `DIRECT_BENCH_KEYS` = K (default
//! 1,000,000), `DIRECT_BENCH_SECONDS` per PUT window and per direct-write run (default 3),
//! `DIRECT_BENCH_RATE` direct writes per second (default 1000), `DIRECT_BENCH_CONCURRENCY` HTTP
//! clients (default 32).
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it runs a small smoke pass (one
//! round, K = 10,000, short windows) and writes no report. The exit status is non-zero when a
//! check fails (a direct write not on every node within 10 s, adopted entries that differ
//! between nodes, a change reported during client traffic alone, a scrub that does not check
//! every entry or finds changes in intact data, sweep errors, more than 1% failed PUTs), when
//! shutdown fails, or when a redis-server process outlives the run. A missed target is printed
//! as `NO` in the table, not a failure.

use bytes::Bytes;
use futures::StreamExt;
use quorumd::app::App;
use quorumd::calls;
use quorumd::calls::store::{BucketDigestKeys, KeyLocation};
use quorumd::config::{Config, DirectWritesPolicy};
use quorumd::devcluster::DevCluster;
use quorumd::meta::Meta;
use quorumd::pool::Traffic;
use quorumd::store::VersionedStore;
use quorumd::sync::progress;
use quorumd::sync::{SweepMode, SweepReport, SweepRequest, SweepTrigger};
use quorumd_testkit::bench as support;
use quorumd_testkit::old_formats::text_entry;
use redis::aio::MultiplexedConnection;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};
use support::{
    Align, Sample, apply_versioned, closed_loop, command, commandstats, direct, env_number,
    grouped, http_put, info, info_field, markdown_table, median, percentile, process_cpu_s,
    redis_cpu_s, redis_version, setup, shut_down, start_app, still_running, tables_settled,
    text_table, used_memory, write_report,
};

const NODES: usize = 3;
const VALUE_BYTES: usize = 100;
/// Keys per pipeline when writing straight to a node.
const RAW_BATCH: usize = 5000;
/// The baseline's `SCAN` hint.
const SCAN_COUNT: usize = 1000;
/// Largest acceptable share of failed PUTs per window.
const MAX_ERROR_RATE: f64 = 0.01;
/// A direct write not on every node after this long counts as lost.
const ADOPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long quorumd may take to report live detection `on` for every node.
const LIVE_ON_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause between two polls of the watched nodes.
const POLL: Duration = Duration::from_millis(1);
/// PUTs in flight while writing keys before a measurement.
const PREWRITE_IN_FLIGHT: usize = 16;

struct Settings {
    /// False under `cargo test`: a smoke run, no report file.
    full: bool,
    rounds: usize,
    keys: usize,
    seconds: f64,
    rate: f64,
    concurrency: usize,
    /// Keys the PUT workload writes to.
    put_keys: usize,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let full = support::full_run();
        if !full {
            return Ok(Settings {
                full,
                rounds: 1,
                keys: 10_000,
                seconds: 0.3,
                rate: 1000.0,
                concurrency: 8,
                put_keys: 500,
            });
        }
        let rounds = env_number("DIRECT_BENCH_ROUNDS", 3usize)?;
        let keys = env_number("DIRECT_BENCH_KEYS", 1_000_000usize)?;
        let seconds = env_number("DIRECT_BENCH_SECONDS", 3.0f64)?;
        let rate = env_number("DIRECT_BENCH_RATE", 1000.0f64)?;
        let concurrency = env_number("DIRECT_BENCH_CONCURRENCY", 32usize)?;
        if rounds == 0 || concurrency == 0 || keys == 0 || !(seconds > 0.0 && seconds <= 3600.0) {
            return Err(
                "DIRECT_BENCH_ROUNDS, DIRECT_BENCH_KEYS and DIRECT_BENCH_CONCURRENCY must be at \
                 least 1, DIRECT_BENCH_SECONDS in (0, 3600]"
                    .into(),
            );
        }
        if !(1.0..=100_000.0).contains(&rate) || rate * seconds > 1_000_000.0 {
            return Err(
                "DIRECT_BENCH_RATE must be in [1, 100000], and at most 1,000,000 direct writes \
                 per run"
                    .into(),
            );
        }
        Ok(Settings {
            full,
            rounds,
            keys,
            seconds,
            rate,
            concurrency,
            put_keys: 10_000,
        })
    }

    /// Direct writes per latency run.
    fn writes(&self) -> usize {
        ((self.rate * self.seconds).round() as usize).max(1)
    }
}

fn key(i: usize) -> String {
    format!("scrub:{i:07}")
}

/// A 100-byte value; `tag` tells its writer apart.
fn value(tag: &str, i: usize, fill: u8) -> Vec<u8> {
    let mut v = format!("{tag}/{i:09}/").into_bytes();
    v.resize(VALUE_BYTES, fill);
    v
}

// ---------------------------------------------------------------------------------------------
// What the service logs: its per-batch warning about changes made outside quorumd (counted by
// path and action, with the number of keys), and any other warning. A tracing layer that
// subscribes to nothing else.

#[derive(Default)]
struct Tap {
    /// (path, action) → keys.
    changes: Mutex<BTreeMap<(String, String), u64>>,
    warnings: AtomicU64,
    first_warning: Mutex<Option<String>>,
}

static TAP: LazyLock<Tap> = LazyLock::new(Tap::default);

impl Tap {
    fn changes(&self) -> BTreeMap<(String, String), u64> {
        self.changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Keys found changed by `path` since `before`, by action.
    fn since(before: &BTreeMap<(String, String), u64>, path: &str) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for ((p, action), n) in TAP.changes() {
            let was = before
                .get(&(p.clone(), action.clone()))
                .copied()
                .unwrap_or(0);
            if p == path && n > was {
                out.insert(action, n - was);
            }
        }
        out
    }
}

fn total(m: &BTreeMap<String, u64>) -> u64 {
    m.values().sum()
}

fn describe(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(a, n)| format!("{n} {a}"))
        .collect::<Vec<_>>()
        .join(", ")
}

struct TapLayer;

#[derive(Default)]
struct TapVisitor {
    path: Option<String>,
    action: Option<String>,
    keys: Option<u64>,
    text: String,
}

impl tracing::field::Visit for TapVisitor {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        if field.name() == "keys" {
            self.keys = Some(value);
        }
        let _ = write!(self.text, " {}={value}", field.name());
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "path" => self.path = Some(value.to_string()),
            "action" => self.action = Some(value.to_string()),
            _ => {}
        }
        let _ = write!(self.text, " {}={value}", field.name());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.text, " {}={value:?}", field.name());
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for TapLayer {
    fn register_callsite(
        &self,
        m: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if m.is_event() && *m.level() <= tracing::Level::WARN {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut v = TapVisitor::default();
        event.record(&mut v);
        if event.metadata().fields().field("example_key").is_some()
            && let (Some(path), Some(action), Some(keys)) = (v.path, v.action, v.keys)
        {
            *TAP.changes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry((path, action))
                .or_default() += keys;
            return;
        }
        TAP.warnings.fetch_add(1, Ordering::Relaxed);
        let mut first = TAP.first_warning.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(format!("{}:{}", event.metadata().level(), v.text));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Direct access to the nodes, CPU accounting.

/// On stderr, with the time of `CLOCK_MONOTONIC` in seconds: where a measured stretch starts
/// or ends, for whoever profiles one of them (`perf record -k mono`, then `perf report --time
/// START,END` with two of these times).
fn mark(what: &str) {
    // SAFETY: an all-zero timespec is a valid value of this plain C struct.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: clock_gettime only writes into the struct we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    eprintln!("[{}.{:06}] {what}", t.tv_sec, t.tv_nsec / 1000);
}

/// Resources used over a stretch of the run: wall time, CPU of this process and of each node,
/// and the nodes' busiest commands.
struct Usage {
    secs: f64,
    process_cpu: f64,
    node_cpu: Vec<f64>,
    /// Per node: (command, calls, µs), most µs first.
    commands: Vec<Vec<(String, u64, u64)>>,
}

struct UsageStart {
    at: Instant,
    process_cpu: f64,
    node_cpu: Vec<f64>,
}

/// Starts measuring; resets the nodes' command statistics.
async fn usage_start(conns: &[MultiplexedConnection]) -> Result<UsageStart, String> {
    let mut node_cpu = Vec::new();
    for c in conns {
        command::<()>(c, redis::cmd("CONFIG").arg("RESETSTAT")).await?;
        node_cpu.push(redis_cpu_s(c).await?);
    }
    Ok(UsageStart {
        at: Instant::now(),
        process_cpu: process_cpu_s(),
        node_cpu,
    })
}

async fn usage_end(start: UsageStart, conns: &[MultiplexedConnection]) -> Result<Usage, String> {
    let secs = start.at.elapsed().as_secs_f64();
    let process_cpu = process_cpu_s() - start.process_cpu;
    let mut node_cpu = Vec::new();
    let mut commands = Vec::new();
    for (c, before) in conns.iter().zip(start.node_cpu) {
        node_cpu.push(redis_cpu_s(c).await? - before);
        commands.push(commandstats(c).await?);
    }
    Ok(Usage {
        secs,
        process_cpu,
        node_cpu,
        commands,
    })
}

impl Usage {
    fn nodes_cpu(&self) -> f64 {
        self.node_cpu.iter().sum()
    }

    /// Calls of `name` summed over the nodes.
    fn calls(&self, name: &str) -> u64 {
        self.commands
            .iter()
            .flatten()
            .filter(|(n, _, _)| n == name)
            .map(|(_, calls, _)| calls)
            .sum()
    }

    fn breakdown(&self) -> String {
        let mut s = format!(
            "wall {:.3} s; CPU: this process {:.3} s",
            self.secs, self.process_cpu
        );
        for (n, (cpu, cmds)) in self.node_cpu.iter().zip(&self.commands).enumerate() {
            let _ = write!(s, ", node {n} {cpu:.3} s");
            let top: Vec<String> = cmds
                .iter()
                .take(4)
                .filter(|(_, _, us)| *us * 50 >= (self.secs * 1e6) as u64)
                .map(|(name, calls, us)| format!("{name} {:.3} s/{calls}", *us as f64 / 1e6))
                .collect();
            if !top.is_empty() {
                let _ = write!(s, " ({})", top.join(", "));
            }
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Live detection latency (and Redis replication's, with the same writer and poller).

/// How long direct writes took to reach every watched node.
struct Propagation {
    /// Sorted, in nanoseconds, of the writes seen everywhere.
    latencies: Vec<u64>,
    /// Writes not seen everywhere within `ADOPT_TIMEOUT`.
    lost: usize,
    writes: usize,
    /// Direct writes per second actually sent.
    rate: f64,
    /// Polls of the watched nodes.
    polls: u64,
}

impl Propagation {
    fn p(&self, q: f64) -> f64 {
        percentile(&self.latencies, q) / 1e6
    }
}

/// Writes `values[i]` to `keys[i]` with `SET` on `origin`, `rate` writes per second (catching
/// up after a late tick), and per write measures the time from sending it until every node of
/// `watch` holds that value: one `MGET` of the pending keys per watched node, then a pause of
/// `POLL`. The time taken is when the answers arrived, so each latency is an upper bound by
/// about one poll.
async fn propagation(
    origin: &MultiplexedConnection,
    watch: &[MultiplexedConnection],
    keys: Arc<Vec<String>>,
    values: Arc<Vec<Vec<u8>>>,
    rate: f64,
) -> Result<Propagation, String> {
    let n = keys.len();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let writer = {
        let (origin, keys, values) = (origin.clone(), keys.clone(), values.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let started = Instant::now();
            for i in 0..keys.len() {
                tick.tick().await;
                let sent = Instant::now();
                command::<()>(&origin, redis::cmd("SET").arg(&keys[i]).arg(&values[i]))
                    .await
                    .map_err(|e| format!("direct write: {e}"))?;
                let _ = tx.send((i, sent));
            }
            Ok::<f64, String>(started.elapsed().as_secs_f64())
        })
    };
    let mut pending: Vec<(usize, Instant)> = Vec::new();
    let mut latencies = Vec::with_capacity(n);
    let (mut lost, mut polls, mut writer_done) = (0usize, 0u64, false);
    loop {
        loop {
            match rx.try_recv() {
                Ok(w) => pending.push(w),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    writer_done = true;
                    break;
                }
            }
        }
        if pending.is_empty() {
            if writer_done {
                break;
            }
            tokio::time::sleep(POLL).await;
            continue;
        }
        let mut mget = redis::cmd("MGET");
        for (i, _) in &pending {
            mget.arg(&keys[*i]);
        }
        let answers = futures::future::join_all(
            watch
                .iter()
                .map(|c| command::<Vec<Option<Vec<u8>>>>(c, &mget)),
        )
        .await;
        let now = Instant::now();
        polls += 1;
        let mut everywhere = vec![true; pending.len()];
        for a in answers {
            let got = a.map_err(|e| format!("polling the watched nodes: {e}"))?;
            for (j, v) in got.iter().enumerate() {
                if v.as_deref() != Some(&values[pending[j].0][..]) {
                    everywhere[j] = false;
                }
            }
        }
        let mut j = 0;
        pending.retain(|(_, sent)| {
            let seen = everywhere[j];
            j += 1;
            let age = now.duration_since(*sent);
            if seen {
                latencies.push(age.as_nanos() as u64);
                false
            } else if age > ADOPT_TIMEOUT {
                lost += 1;
                false
            } else {
                true
            }
        });
        tokio::time::sleep(POLL).await;
    }
    let secs = writer.await.map_err(|e| format!("direct writer: {e}"))??;
    latencies.sort_unstable();
    Ok(Propagation {
        latencies,
        lost,
        writes: n,
        rate: n as f64 / secs.max(1e-9),
        polls,
    })
}

/// PUTs every url once through quorumd (at most `PREWRITE_IN_FLIGHT` at a time); fails on the
/// first error.
async fn put_all(
    http: &reqwest::Client,
    urls: &[reqwest::Url],
    values: &[Bytes],
) -> Result<(), String> {
    let mut puts = futures::stream::iter(urls.iter().zip(values))
        .map(|(u, v)| http_put(http, u.clone(), v.clone()))
        .buffer_unordered(PREWRITE_IN_FLIGHT);
    while let Some(r) = puts.next().await {
        r.map_err(|e| format!("writing keys through quorumd: {e}"))?;
    }
    Ok(())
}

/// Waits until every node of `conns` holds `values[i]` under `keys[i]`.
async fn wait_everywhere(
    conns: &[MultiplexedConnection],
    keys: &[String],
    values: &[Vec<u8>],
    what: &str,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    for c in conns {
        for (ks, vs) in keys.chunks(RAW_BATCH).zip(values.chunks(RAW_BATCH)) {
            loop {
                let mut mget = redis::cmd("MGET");
                for k in ks {
                    mget.arg(k);
                }
                let got: Vec<Option<Vec<u8>>> = command(c, &mget).await?;
                if got
                    .iter()
                    .zip(vs)
                    .all(|(g, v)| g.as_deref() == Some(&v[..]))
                {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("{what}: not on every node after 10 s"));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    Ok(())
}

/// Waits until `/v1/status` shows every node's live detection `on`; returns how long it took.
async fn wait_live_on(http: &reqwest::Client, app: &App) -> Result<Duration, String> {
    let url = format!("http://{}/v1/status", app.http_addr());
    let started = Instant::now();
    loop {
        let status: serde_json::Value = http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("GET /v1/status: {e}"))?
            .json()
            .await
            .map_err(|e| format!("GET /v1/status: {e}"))?;
        let states = &status["sweeps"]["live_detection"];
        if (0..NODES).all(|i| states[i]["state"] == "on") {
            return Ok(started.elapsed());
        }
        if started.elapsed() > LIVE_ON_TIMEOUT {
            return Err(format!(
                "live detection not on for every node after {LIVE_ON_TIMEOUT:?}: {states}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the service's warning about changes found by the live path has counted
/// `expected` keys since `before` (the warning follows the writes it reports), then a little
/// longer for any further one.
async fn live_changes_since(
    before: &BTreeMap<(String, String), u64>,
    expected: u64,
) -> BTreeMap<String, u64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while total(&Tap::since(before, "live")) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    Tap::since(before, "live")
}

/// After the direct writes of a latency run: every node holds the same entry for each key,
/// and VERIFY finds each node's value to be the one its entry records (so the direct value
/// was adopted as a version everywhere, not only copied).
async fn check_adopted(app: &App, keys: &[String]) -> Result<(), String> {
    let store = app.store();
    let locs: Vec<KeyLocation> = keys
        .iter()
        .map(|k| store.locate(k.as_bytes()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut problem = None;
        let mut first: Option<Vec<Option<Meta>>> = None;
        for node in store.pool().nodes() {
            for chunk in locs.chunks(500) {
                let refs: Vec<&KeyLocation> = chunk.iter().collect();
                let verdicts = calls::store::verify(node, Traffic::Background, &refs)
                    .await
                    .map_err(|e| format!("verify on {}: {e}", node.display))?;
                if let Some((l, v)) = chunk
                    .iter()
                    .zip(&verdicts)
                    .find(|(_, v)| v.mismatch.is_some())
                {
                    problem.get_or_insert(format!(
                        "{:?} on {}: {:?}",
                        String::from_utf8_lossy(&l.key),
                        node.display,
                        v.mismatch
                    ));
                }
            }
            let metas = calls::sync::key_metas(node, &locs)
                .await
                .map_err(|e| format!("metadata on {}: {e}", node.display))?;
            match &first {
                None => first = Some(metas),
                Some(f) => {
                    if let Some(i) = (0..locs.len()).find(|&i| f[i] != metas[i]) {
                        problem.get_or_insert(format!(
                            "{:?}: entries differ between nodes ({:?} / {:?})",
                            keys[i], f[i], metas[i]
                        ));
                    }
                }
            }
        }
        match problem {
            None => return Ok(()),
            Some(p) if Instant::now() > deadline => {
                return Err(format!("direct writes not adopted everywhere: {p}"));
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Client traffic with live detection on and off.

struct PutTarget {
    http: reqwest::Client,
    urls: Vec<reqwest::Url>,
    value: Bytes,
}

fn put_key(i: usize) -> String {
    format!("put:{i:05}")
}

async fn put_window(
    t: &Arc<PutTarget>,
    concurrency: usize,
    duration: Duration,
    seed: u64,
) -> Sample {
    let keys = t.urls.len() as u64;
    closed_loop(
        t,
        concurrency,
        duration,
        seed,
        keys,
        |t: Arc<PutTarget>, key| async move {
            http_put(&t.http, t.urls[key].clone(), t.value.clone()).await
        },
    )
    .await
}

fn c3_config(nodes: &[String], live: bool) -> Config {
    let mut config = Config {
        nodes: nodes.to_vec(),
        ..Config::default()
    };
    config.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.resp.enabled = false;
    config.resp.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    // Nothing in the background but what is measured: no periodic exchange, no scheduled
    // full sweep.
    config.sync.exchange_interval_ms = 0;
    config.sync.full_sweep_cron = String::new();
    config.sync.live_detection = live;
    config.sync.direct_writes = DirectWritesPolicy::Adopt;
    config.timeouts.node_ms = 5_000;
    config.timeouts.request_ms = 10_000;
    config
}

/// One PUT window with live detection on, and what was measured in the same service.
struct OnRound {
    put: Sample,
    usage: Usage,
    live_on: Duration,
    /// A direct write made as the window ended, until every node held it: the verifier's
    /// backlog.
    backlog_ms: f64,
    /// Changes the live path reported between the window's start and the backlog probe's
    /// adoption (the probe alone is expected).
    window_changes: BTreeMap<String, u64>,
    latency: Propagation,
    /// Changes the live path reported for the latency run.
    latency_changes: BTreeMap<String, u64>,
}

struct OffRound {
    put: Sample,
    usage: Usage,
}

/// Empties the nodes' `notify-keyspace-events`: what a node without live detection publishes.
async fn notifications_off(conns: &[MultiplexedConnection]) -> Result<(), String> {
    for c in conns {
        command::<()>(
            c,
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("notify-keyspace-events")
                .arg(""),
        )
        .await?;
    }
    Ok(())
}

async fn timed_window(
    conns: &[MultiplexedConnection],
    t: &Arc<PutTarget>,
    s: &Settings,
    seed: u64,
    label: &str,
) -> Result<(Sample, Usage), String> {
    if s.full {
        let _ = put_window(t, s.concurrency, Duration::from_millis(500), seed ^ 0xfeed).await;
    }
    let used = usage_start(conns).await?;
    mark(&format!("PUT window, {label}: start"));
    let sample = put_window(t, s.concurrency, Duration::from_secs_f64(s.seconds), seed).await;
    mark(&format!("PUT window, {label}: end"));
    let used = usage_end(used, conns).await?;
    Ok((sample, used))
}

fn put_target(app: &App, s: &Settings) -> Result<Arc<PutTarget>, String> {
    let base = format!("http://{}/v1/kv/", app.http_addr());
    let urls = (0..s.put_keys)
        .map(|i| reqwest::Url::parse(&format!("{base}{}?consistency=quorum", put_key(i))))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("url: {e}"))?;
    Ok(Arc::new(PutTarget {
        http: support::http_client(s.concurrency * 2)?,
        urls,
        value: Bytes::from(value("put", 0, b'q')),
    }))
}

async fn off_round(
    nodes: &[String],
    conns: &[MultiplexedConnection],
    s: &Settings,
    seed: u64,
) -> Result<OffRound, String> {
    notifications_off(conns).await?;
    let app = start_app(c3_config(nodes, false)).await?;
    let measured = async {
        let t = put_target(&app, s)?;
        let (put, usage) = timed_window(conns, &t, s, seed, "live detection off").await?;
        Ok::<_, String>(OffRound { put, usage })
    }
    .await;
    shut_down(app).await?;
    measured
}

async fn on_round(
    nodes: &[String],
    conns: &[MultiplexedConnection],
    s: &Settings,
    round: usize,
    seed: u64,
) -> Result<OnRound, String> {
    let app = start_app(c3_config(nodes, true)).await?;
    let measured = on_measure(&app, conns, s, round, seed).await;
    shut_down(app).await?;
    measured
}

async fn on_measure(
    app: &App,
    conns: &[MultiplexedConnection],
    s: &Settings,
    round: usize,
    seed: u64,
) -> Result<OnRound, String> {
    let t = put_target(app, s)?;
    let live_on = wait_live_on(&t.http, app).await?;
    // Client traffic alone: no change may be reported for it.
    let before = TAP.changes();
    let (put, usage) = timed_window(conns, &t, s, seed, "live detection on").await?;
    // A direct write as the window ends: adopted only once the verifier has gone through the
    // window's backlog.
    let probe_key = Arc::new(vec![put_key(0)]);
    let probe_value = Arc::new(vec![value(&format!("backlog-{round}"), 0, b'b')]);
    let probe = propagation(&conns[0], &conns[1..], probe_key, probe_value, 1000.0).await?;
    if probe.lost > 0 {
        return Err("a direct write made after the PUT window was not adopted within 10 s".into());
    }
    let window_changes = live_changes_since(&before, 1).await;
    let backlog_ms = probe.p(1.0);

    // The latency run: keys written through quorumd first, on every node, then changed
    // directly on node 0.
    let n = s.writes();
    let keys: Vec<String> = (0..n).map(|i| format!("direct:{round}:{i:07}")).collect();
    let versioned: Vec<Vec<u8>> = (0..n).map(|i| value("versioned", i, b'v')).collect();
    let base = format!("http://{}/v1/kv/", app.http_addr());
    let urls = keys
        .iter()
        .map(|k| reqwest::Url::parse(&format!("{base}{k}?consistency=quorum")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("url: {e}"))?;
    let bodies: Vec<Bytes> = versioned.iter().map(|v| Bytes::from(v.clone())).collect();
    put_all(&t.http, &urls, &bodies).await?;
    wait_everywhere(conns, &keys, &versioned, "keys written through quorumd").await?;
    // Let the verifier go through the events of those writes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let directs: Vec<Vec<u8>> = (0..n)
        .map(|i| value(&format!("direct-{round}"), i, b'd'))
        .collect();
    let before = TAP.changes();
    let keys = Arc::new(keys);
    mark("direct writes, quorumd: start");
    let latency = propagation(
        &conns[0],
        &conns[1..],
        keys.clone(),
        Arc::new(directs),
        s.rate,
    )
    .await?;
    mark("direct writes, quorumd: end");
    if latency.lost == 0 {
        check_adopted(app, &keys).await?;
    }
    let latency_changes = live_changes_since(&before, n as u64).await;
    Ok(OnRound {
        put,
        usage,
        live_on,
        backlog_ms,
        window_changes,
        latency,
        latency_changes,
    })
}

/// The baseline of the latency run: the same writer and poller on a redis-server and its
/// replica.
async fn replication_round(
    master: &MultiplexedConnection,
    replica: &MultiplexedConnection,
    s: &Settings,
    round: usize,
) -> Result<Propagation, String> {
    let n = s.writes();
    let keys: Vec<String> = (0..n).map(|i| format!("repl:{round}:{i:07}")).collect();
    let first: Vec<Vec<u8>> = (0..n).map(|i| value("first", i, b'f')).collect();
    for (ks, vs) in keys.chunks(RAW_BATCH).zip(first.chunks(RAW_BATCH)) {
        let mut pipe = redis::pipe();
        for (k, v) in ks.iter().zip(vs) {
            pipe.cmd("SET").arg(k).arg(v).ignore();
        }
        let mut c = master.clone();
        pipe.query_async::<()>(&mut c)
            .await
            .map_err(|e| format!("SET pipeline on the master: {e}"))?;
    }
    wait_everywhere(
        std::slice::from_ref(replica),
        &keys,
        &first,
        "keys written on the master",
    )
    .await?;
    let second: Vec<Vec<u8>> = (0..n)
        .map(|i| value(&format!("second-{round}"), i, b's'))
        .collect();
    mark("direct writes, redis replication: start");
    let run = propagation(
        master,
        std::slice::from_ref(replica),
        Arc::new(keys),
        Arc::new(second),
        s.rate,
    )
    .await;
    mark("direct writes, redis replication: end");
    run
}

struct Live {
    on: Vec<OnRound>,
    off: Vec<OffRound>,
    replication: Vec<Propagation>,
}

async fn live_part(
    nodes: &[String],
    repl_urls: &[String],
    master_port: u16,
    s: &Settings,
) -> Result<Live, String> {
    let mut conns = Vec::new();
    for url in nodes {
        conns.push(direct(url).await?);
    }
    let master = direct(&repl_urls[0]).await?;
    let replica = direct(&repl_urls[1]).await?;
    command::<()>(
        &replica,
        redis::cmd("REPLICAOF").arg("127.0.0.1").arg(master_port),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while info_field(&info(&replica, "replication").await?, "master_link_status") != Some("up") {
        if Instant::now() > deadline {
            return Err("the baseline replica did not connect within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The PUT keys exist before any window, so every window updates keys.
    {
        notifications_off(&conns).await?;
        let app = start_app(c3_config(nodes, false)).await?;
        let written = async {
            let t = put_target(&app, s)?;
            let bodies = vec![t.value.clone(); t.urls.len()];
            put_all(&t.http, &t.urls, &bodies).await
        }
        .await;
        shut_down(app).await?;
        written?;
    }

    let mut live = Live {
        on: Vec::new(),
        off: Vec::new(),
        replication: Vec::new(),
    };
    for round in 0..s.rounds {
        // Alternate which goes first, so neither always runs on a warmer machine.
        for step in 0..2 {
            let seed = ((round as u64) << 16) ^ (step as u64 + 1).wrapping_mul(0x5851_f42d);
            if (step + round) % 2 == 0 {
                let r = on_round(nodes, &conns, s, round, seed).await?;
                println!(
                    "round {}/{}  live detection ON:  quorum PUT {:>7.0} ops/s  p50 {:>5.0} µs  \
                     p99 {:>6.0} µs  nodes {:.1} µs CPU/PUT{}",
                    round + 1,
                    s.rounds,
                    r.put.ops_per_s,
                    r.put.p50_us,
                    r.put.p99_us,
                    1e6 * r.usage.nodes_cpu() / r.put.ok.max(1) as f64,
                    errors_note(&r.put)
                );
                println!(
                    "             on after {:.1} ms; backlog probe adopted after {:.1} ms; \
                     changes reported during the window and probe: {}",
                    r.live_on.as_secs_f64() * 1e3,
                    r.backlog_ms,
                    describe(&r.window_changes)
                );
                println!(
                    "             {} direct SETs at {:.0}/s: every node holds them after p50 \
                     {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} lost, {} polls); live path \
                     reported {}",
                    r.latency.writes,
                    r.latency.rate,
                    r.latency.p(0.50),
                    r.latency.p(0.99),
                    r.latency.p(1.0),
                    r.latency.lost,
                    r.latency.polls,
                    describe(&r.latency_changes)
                );
                live.on.push(r);
            } else {
                let r = off_round(nodes, &conns, s, seed).await?;
                println!(
                    "round {}/{}  live detection OFF: quorum PUT {:>7.0} ops/s  p50 {:>5.0} µs  \
                     p99 {:>6.0} µs  nodes {:.1} µs CPU/PUT{}",
                    round + 1,
                    s.rounds,
                    r.put.ops_per_s,
                    r.put.p50_us,
                    r.put.p99_us,
                    1e6 * r.usage.nodes_cpu() / r.put.ok.max(1) as f64,
                    errors_note(&r.put)
                );
                live.off.push(r);
            }
        }
        let r = replication_round(&master, &replica, s, round).await?;
        println!(
            "round {}/{}  redis replication: {} SETs at {:.0}/s on the master: the replica holds \
             them after p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} lost, {} polls)",
            round + 1,
            s.rounds,
            r.writes,
            r.rate,
            r.p(0.50),
            r.p(0.99),
            r.p(1.0),
            r.lost,
            r.polls
        );
        live.replication.push(r);
    }
    command::<()>(&replica, redis::cmd("REPLICAOF").arg("NO").arg("ONE")).await?;
    Ok(live)
}

fn errors_note(s: &Sample) -> String {
    if s.errors > 0 {
        format!("  ERRORS: {}", s.errors)
    } else {
        String::new()
    }
}

// ---------------------------------------------------------------------------------------------
// 3 and 4. The scrub of K keys on one node, and memory per key.

/// Writes versioned entries for keys `0..count` to the store's node 0 with the APPLY script
/// (what a client write does on a node).
async fn load_versioned(store: &VersionedStore, count: usize) -> Result<(), String> {
    let indices: Vec<usize> = (0..count).collect();
    apply_versioned(store, &[0], &indices, key, |i| value("k", i, b'a')).await?;
    Ok(())
}

/// The same values as `load_versioned`, as plain `SET`s.
async fn load_plain(conn: &MultiplexedConnection, count: usize) -> Result<(), String> {
    let mut c = conn.clone();
    let mut start = 0;
    while start < count {
        let end = (start + RAW_BATCH).min(count);
        let mut pipe = redis::pipe();
        for i in start..end {
            pipe.cmd("SET")
                .arg(key(i))
                .arg(value("k", i, b'a'))
                .ignore();
        }
        pipe.query_async::<()>(&mut c)
            .await
            .map_err(|e| format!("SET pipeline: {e}"))?;
        start = end;
    }
    Ok(())
}

/// A binary entry (format 3) in format 2's text.
fn format_2(entry: &[u8]) -> Result<Vec<u8>, String> {
    let meta = Meta::parse(entry).map_err(|e| e.to_string())?;
    Ok(text_entry(&meta, 2).into_bytes())
}

/// Copies the scrub node's metadata and digests to `to`, the entries rewritten in format 2 (the
/// entry hash is defined over the same text fields in both, so the digests stay the same).
async fn copy_metadata(
    from: &MultiplexedConnection,
    to: &MultiplexedConnection,
    store: &VersionedStore,
) -> Result<u64, String> {
    let settings = store.settings();
    let prefix = &settings.layout.prefix;
    let buckets: Vec<u32> = (0..settings.layout.buckets).collect();
    let mut entries = 0u64;
    let mut to_c = to.clone();
    let mut from_c = from.clone();
    for chunk in buckets.chunks(64) {
        let mut hashes: Vec<String> = Vec::new();
        for &b in chunk {
            hashes.extend(settings.layout.bucket_meta_keys(b));
            hashes.push(settings.layout.sub_digest_key(b));
        }
        let mut read = redis::pipe();
        for h in &hashes {
            read.cmd("HGETALL").arg(h);
        }
        let contents: Vec<Vec<(Vec<u8>, Vec<u8>)>> = read
            .query_async(&mut from_c)
            .await
            .map_err(|e| format!("HGETALL pipeline: {e}"))?;
        let mut write = redis::pipe();
        for (h, fields) in hashes.iter().zip(contents) {
            if fields.is_empty() {
                continue;
            }
            let is_meta = !h.starts_with(&format!("{prefix}d:"));
            let mut cmd = redis::cmd("HSET");
            cmd.arg(h);
            for (f, v) in fields {
                cmd.arg(f);
                if is_meta {
                    cmd.arg(format_2(&v)?);
                    entries += 1;
                } else {
                    cmd.arg(v);
                }
            }
            write.add_command(cmd).ignore();
        }
        write
            .query_async::<()>(&mut to_c)
            .await
            .map_err(|e| format!("HSET pipeline: {e}"))?;
    }
    // The default layout keeps every bucket digest in one hash.
    let digest_key = settings.layout.digest_key(0);
    let digests: Vec<(Vec<u8>, Vec<u8>)> =
        command(from, redis::cmd("HGETALL").arg(&digest_key)).await?;
    if !digests.is_empty() {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&digest_key);
        for (f, v) in digests {
            cmd.arg(f).arg(v);
        }
        command::<()>(to, &cmd).await?;
    }
    Ok(entries)
}

/// `MEMORY USAGE` of the digest hashes (`{prefix}d` and every `{prefix}d:{bucket}`): the part
/// of the metadata that does not grow with the keys.
async fn digest_bytes(conn: &MultiplexedConnection, store: &VersionedStore) -> Result<u64, String> {
    let layout = &store.settings().layout;
    let mut names: Vec<String> = layout.digest_keys().keys();
    names.extend((0..layout.buckets).map(|b| layout.sub_digest_key(b)));
    let mut sum = 0u64;
    let mut c = conn.clone();
    for chunk in names.chunks(RAW_BATCH) {
        let mut pipe = redis::pipe();
        for n in chunk {
            pipe.cmd("MEMORY").arg("USAGE").arg(n);
        }
        let sizes: Vec<Option<u64>> = pipe
            .query_async(&mut c)
            .await
            .map_err(|e| format!("MEMORY USAGE: {e}"))?;
        sum += sizes.into_iter().flatten().sum::<u64>();
    }
    Ok(sum)
}

/// `hash-max-listpack-value` of the fourth memory node, which holds the format-2 entries: long
/// enough for them to stay listpacks (a node setting, not a format change).
const LONGER_LISTPACK_VALUE: &str = "128";

struct Memory {
    /// `used_memory` growth: versioned (format 3), plain, format 2, format 2 on a node with
    /// `hash-max-listpack-value` = `LONGER_LISTPACK_VALUE`.
    grown: [u64; 4],
    /// What the digest hashes take on the versioned node.
    digests: u64,
    /// Of the metadata hash holding key 0: (node, encoding, entries, MEMORY USAGE) on the
    /// versioned, the format-2 and the longer-listpack node.
    sample: Vec<(&'static str, String, u64, u64)>,
    /// Length of key 0's entry in format 3 and in format 2.
    entry_len: [usize; 2],
    /// The nodes' `hash-max-listpack-value`.
    listpack_value: String,
    load_s: f64,
}

impl Memory {
    fn per_key(&self, i: usize, keys: usize) -> f64 {
        (self.grown[i] as f64 - self.grown[1] as f64) / keys as f64
    }
}

async fn memory(
    app: &App,
    conns: &[MultiplexedConnection; 4],
    s: &Settings,
) -> Result<Memory, String> {
    let [versioned, plain, f2, longer] = conns;
    command::<()>(
        longer,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("hash-max-listpack-value")
            .arg(LONGER_LISTPACK_VALUE),
    )
    .await?;
    let mut before = Vec::new();
    for c in conns {
        before.push(used_memory(c).await?);
    }
    let started = Instant::now();
    load_versioned(app.store(), s.keys).await?;
    let load_s = started.elapsed().as_secs_f64();
    println!(
        "loaded {} versioned keys on the scrub node with APPLY batches in {load_s:.1} s",
        grouped(s.keys)
    );
    load_plain(plain, s.keys).await?;
    for to in [f2, longer] {
        load_plain(to, s.keys).await?;
        let copied = copy_metadata(versioned, to, app.store()).await?;
        if copied != s.keys as u64 {
            return Err(format!("copied {copied} entries, expected {}", s.keys));
        }
    }
    tables_settled([versioned, plain, f2, longer]).await?;
    let mut grown = [0u64; 4];
    for (i, c) in conns.iter().enumerate() {
        grown[i] = used_memory(c).await?.saturating_sub(before[i]);
    }
    let loc = app
        .store()
        .locate(key(0).as_bytes())
        .map_err(|e| e.to_string())?;
    let mut sample = Vec::new();
    let mut entry_len = [0usize; 2];
    for (name, c, i) in [
        ("format 3", versioned, 0),
        ("format 2", f2, 1),
        ("format 2, longer listpack values", longer, 1),
    ] {
        let encoding: String =
            command(c, redis::cmd("OBJECT").arg("ENCODING").arg(&*loc.meta_key)).await?;
        let len: u64 = command(c, redis::cmd("HLEN").arg(&*loc.meta_key)).await?;
        let usage: u64 = command(c, redis::cmd("MEMORY").arg("USAGE").arg(&*loc.meta_key)).await?;
        let entry: Vec<u8> =
            command(c, redis::cmd("HGET").arg(&*loc.meta_key).arg(&loc.key[..])).await?;
        entry_len[i] = entry.len();
        sample.push((name, encoding, len, usage));
    }
    let listpack: Vec<String> = command(
        versioned,
        redis::cmd("CONFIG")
            .arg("GET")
            .arg("hash-max-listpack-value"),
    )
    .await?;
    Ok(Memory {
        grown,
        digests: digest_bytes(versioned, app.store()).await?,
        sample,
        entry_len,
        listpack_value: listpack.get(1).cloned().unwrap_or_default(),
        load_s,
    })
}

/// One full sweep of the one-node service, its phases timed apart.
struct SweepSample {
    total_s: f64,
    bucket_s: f64,
    report: SweepReport,
    usage: Usage,
}

async fn full_sweep(app: &App, conns: &[MultiplexedConnection]) -> Result<SweepSample, String> {
    let sw = app.sweeper().clone();
    let used = usage_start(conns).await?;
    let handle = sw
        .begin(SweepRequest::new(SweepMode::Full, SweepTrigger::Test))
        .map_err(|e| format!("full sweep: {e}"))?;
    let started = Instant::now();
    mark("full sweep: start");
    let task = tokio::spawn({
        let (sw, handle) = (sw.clone(), handle.clone());
        async move { sw.execute(handle).await }
    });
    let mut bucket_at = None;
    while !task.is_finished() {
        if bucket_at.is_none() && progress::lock(&handle).phase == "checking buckets" {
            bucket_at = Some(started.elapsed());
            mark("full sweep: bucket phase");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let report = task.await.map_err(|e| format!("full sweep: {e}"))?;
    let total = started.elapsed();
    mark("full sweep: end");
    let usage = usage_end(used, conns).await?;
    let bucket_at = bucket_at.ok_or("the full sweep ended before its bucket phase was seen")?;
    Ok(SweepSample {
        total_s: total.as_secs_f64(),
        bucket_s: (total - bucket_at).as_secs_f64(),
        report,
        usage,
    })
}

/// The scrub alone, as the full sweep's bucket phase calls it: per `bucket_batch` buckets, one
/// pipeline of `HGETALL`s of their sub-bucket hashes, then `verify_hashes` of whole buckets,
/// about `key_batch` entries per call.
struct ScrubSample {
    total_s: f64,
    read_s: f64,
    verify_s: f64,
    /// A separate pass of the other script the bucket phase runs on every bucket,
    /// `REBUILD_DIGESTS` (nothing to fix here: it reads every entry and rewrites nothing).
    rebuild_s: f64,
    entries: u64,
    mismatches: u64,
    usage: Usage,
}

async fn scrub_alone(app: &App, conns: &[MultiplexedConnection]) -> Result<ScrubSample, String> {
    let store = app.store();
    let node = store.pool().node(0);
    let settings = store.settings();
    let cfg = app.sweeper().config();
    let buckets: Vec<u32> = (0..settings.layout.buckets).collect();
    let (mut read_s, mut verify_s, mut entries, mut mismatches) = (0f64, 0f64, 0u64, 0u64);
    let used = usage_start(conns).await?;
    let started = Instant::now();
    mark("scrub alone: start");
    for chunk in buckets.chunks(cfg.bucket_batch.max(1)) {
        let meta_keys: Vec<Vec<String>> = chunk
            .iter()
            .map(|b| settings.layout.bucket_meta_keys(*b))
            .collect();
        let t = Instant::now();
        let (metas, bad) = calls::sync::bucket_metas(node, &meta_keys)
            .await
            .map_err(|e| format!("bucket metadata: {e}"))?;
        read_s += t.elapsed().as_secs_f64();
        if let Some(b) = bad.first() {
            return Err(format!("bucket metadata: {b}"));
        }
        // Whole buckets per call, about `key_batch` entries each, as the sweep's scrub calls.
        let sizes: Vec<usize> = metas.iter().map(|m| m.len()).collect();
        for run in quorumd::sync::scrub_runs(&sizes, cfg.key_batch.max(1)) {
            let hashes: Vec<String> = meta_keys[run].iter().flatten().cloned().collect();
            let t = Instant::now();
            let (found, checked) = calls::store::verify_hashes(node, &hashes)
                .await
                .map_err(|e| format!("verify: {e}"))?;
            verify_s += t.elapsed().as_secs_f64();
            entries += checked;
            mismatches += found.len() as u64;
        }
    }
    let total_s = started.elapsed().as_secs_f64();
    mark("scrub alone: end");
    let usage = usage_end(used, conns).await?;
    let started = Instant::now();
    mark("REBUILD_DIGESTS pass: start");
    for chunk in buckets.chunks(cfg.bucket_batch.max(1)) {
        let keys: Vec<BucketDigestKeys> = chunk
            .iter()
            .map(|&bucket| BucketDigestKeys {
                bucket,
                digest_key: settings.layout.digest_key(bucket),
                digest_field: settings.layout.digest_field(bucket),
                sub_digest_key: settings.layout.sub_digest_key(bucket),
                meta_keys: settings.layout.bucket_meta_keys(bucket),
            })
            .collect();
        let fixed = calls::store::rebuild_digests(node, settings.layout.sub_buckets, &keys)
            .await
            .map_err(|e| format!("digest rebuild: {e}"))?;
        if !fixed.is_empty() {
            return Err(format!("digest rebuild fixed buckets {fixed:?}"));
        }
    }
    mark("REBUILD_DIGESTS pass: end");
    Ok(ScrubSample {
        total_s,
        read_s,
        verify_s,
        rebuild_s: started.elapsed().as_secs_f64(),
        entries,
        mismatches,
        usage,
    })
}

/// The baseline: `SCAN 0 … COUNT 1000` until the cursor is back to 0, keys collected.
async fn scan_all(conns: &[MultiplexedConnection]) -> Result<(f64, u64, Usage), String> {
    let used = usage_start(conns).await?;
    let started = Instant::now();
    mark("SCAN: start");
    let mut c = conns[0].clone();
    let (mut cursor, mut keys) = (0u64, 0u64);
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(&mut c)
            .await
            .map_err(|e| format!("SCAN: {e}"))?;
        keys += batch.len() as u64;
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    mark("SCAN: end");
    Ok((secs, keys, usage_end(used, conns).await?))
}

struct Scrub {
    memory: Memory,
    scans: Vec<(f64, u64, Usage)>,
    sweeps: Vec<SweepSample>,
    alone: Vec<ScrubSample>,
    key_batch: usize,
    bucket_batch: usize,
}

fn scrub_config(node: &str) -> Config {
    let mut config = Config {
        nodes: vec![node.to_string()],
        ..Config::default()
    };
    config.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.resp.enabled = false;
    config.resp.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.sync.exchange_interval_ms = 0;
    config.sync.full_sweep_cron = String::new();
    config.sync.live_detection = false;
    // Every throttle off: the scan and repair rates, and the latency back-off.
    config.sync.max_scan_keys_per_sec = 0;
    config.sync.max_repairs_per_sec = 0;
    config.sync.backoff_latency_ms = 0;
    config.timeouts.node_ms = 5_000;
    config.timeouts.request_ms = 10_000;
    config
}

async fn scrub_part(urls: &[String], s: &Settings) -> Result<Scrub, String> {
    let app = start_app(scrub_config(&urls[0])).await?;
    let measured = scrub_measure(&app, urls, s).await;
    shut_down(app).await?;
    measured
}

async fn scrub_measure(app: &App, urls: &[String], s: &Settings) -> Result<Scrub, String> {
    let conns = [
        direct(&urls[0]).await?,
        direct(&urls[1]).await?,
        direct(&urls[2]).await?,
        direct(&urls[3]).await?,
    ];
    let memory = memory(app, &conns, s).await?;
    let node = std::slice::from_ref(&conns[0]);
    let (mut scans, mut sweeps, mut alone) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..s.rounds {
        // A rotating order, so none of the three always runs first.
        for step in 0..3 {
            match (step + round) % 3 {
                0 => {
                    let (secs, keys, usage) = scan_all(node).await?;
                    println!(
                        "round {}/{}  SCAN COUNT {SCAN_COUNT} of the scrub node: {} keys in \
                         {secs:.3} s ({:.0} keys/s)",
                        round + 1,
                        s.rounds,
                        grouped(keys as usize),
                        keys as f64 / secs
                    );
                    println!("             where the time went: {}", usage.breakdown());
                    scans.push((secs, keys, usage));
                }
                1 => {
                    let sw = full_sweep(app, node).await?;
                    let r = &sw.report;
                    println!(
                        "round {}/{}  full sweep: {:.3} s, of which bucket phase {:.3} s; {} \
                         entries scrubbed ({:.0}/s of the bucket phase), {} keys scanned, {} \
                         metadata entries read, {} digests rebuilt, {} errors, direct changes {:?}",
                        round + 1,
                        s.rounds,
                        sw.total_s,
                        sw.bucket_s,
                        grouped(r.entries_scrubbed as usize),
                        r.entries_scrubbed as f64 / sw.bucket_s,
                        grouped(r.keys_scanned() as usize),
                        grouped(r.metadata_entries_read as usize),
                        r.digests_rebuilt,
                        r.error_count,
                        r.direct_changes
                    );
                    println!("             where the time went: {}", sw.usage.breakdown());
                    sweeps.push(sw);
                }
                _ => {
                    let a = scrub_alone(app, node).await?;
                    println!(
                        "round {}/{}  scrub alone: {:.3} s (HGETALL {:.3} s + VERIFY_HASHES {:.3} s), \
                         {} entries ({:.0}/s), {} mismatches; REBUILD_DIGESTS pass {:.3} s",
                        round + 1,
                        s.rounds,
                        a.total_s,
                        a.read_s,
                        a.verify_s,
                        grouped(a.entries as usize),
                        a.entries as f64 / a.total_s,
                        a.mismatches,
                        a.rebuild_s
                    );
                    println!("             where the time went: {}", a.usage.breakdown());
                    alone.push(a);
                }
            }
        }
    }
    Ok(Scrub {
        memory,
        scans,
        sweeps,
        alone,
        key_batch: app.sweeper().config().key_batch,
        bucket_batch: app.sweeper().config().bucket_batch,
    })
}

// ---------------------------------------------------------------------------------------------
// The report.

const HEADER: [&str; 6] = [
    "measurement",
    "quorumd",
    "baseline (same run)",
    "ratio",
    "target",
    "met",
];
const ALIGN: [Align; 6] = [
    Align::Left,
    Align::Left,
    Align::Left,
    Align::Right,
    Align::Left,
    Align::Left,
];

fn verdict(ok: bool) -> String {
    if ok { "yes" } else { "NO" }.into()
}

fn med(values: impl Iterator<Item = f64>) -> f64 {
    median(&values.collect::<Vec<_>>())
}

fn rows(live: &Live, scrub: &Scrub, s: &Settings) -> Vec<[String; 6]> {
    let mut out = Vec::new();
    let p50 = med(live.on.iter().map(|r| r.latency.p(0.50)));
    let p99 = med(live.on.iter().map(|r| r.latency.p(0.99)));
    let b50 = med(live.replication.iter().map(|r| r.p(0.50)));
    let b99 = med(live.replication.iter().map(|r| r.p(0.99)));
    out.push([
        format!(
            "1. live detection: direct SET on 1 of {NODES} nodes until all hold it, {:.0}/s",
            s.rate
        ),
        format!("p50 {p50:.1} ms, p99 {p99:.1} ms"),
        format!("redis replica: p50 {b50:.2} ms, p99 {b99:.2} ms"),
        format!("{:.0}× (p99)", p99 / b99),
        "p99 < 1 s".into(),
        verdict(p99 < 1000.0),
    ]);
    let on = med(live.on.iter().map(|r| r.put.ops_per_s));
    let off = med(live.off.iter().map(|r| r.put.ops_per_s));
    let drop = 100.0 * (1.0 - on / off);
    out.push([
        format!(
            "2. quorum PUT over HTTP, {} clients, live detection on",
            s.concurrency
        ),
        format!(
            "{on:.0} ops/s (p99 {:.0} µs)",
            med(live.on.iter().map(|r| r.put.p99_us))
        ),
        format!(
            "off: {off:.0} ops/s (p99 {:.0} µs)",
            med(live.off.iter().map(|r| r.put.p99_us))
        ),
        if drop >= 0.0 {
            format!("−{drop:.1}%")
        } else {
            format!("+{:.1}%", -drop)
        },
        "< 10% drop".into(),
        verdict(drop < 10.0),
    ]);
    let per_put = |u: &Usage, p: &Sample| 1e6 * u.nodes_cpu() / NODES as f64 / p.ok.max(1) as f64;
    let proc_put = |u: &Usage, p: &Sample| 1e6 * u.process_cpu / p.ok.max(1) as f64;
    let node_on = med(live.on.iter().map(|r| per_put(&r.usage, &r.put)));
    let node_off = med(live.off.iter().map(|r| per_put(&r.usage, &r.put)));
    let proc_on = med(live.on.iter().map(|r| proc_put(&r.usage, &r.put)));
    let proc_off = med(live.off.iter().map(|r| proc_put(&r.usage, &r.put)));
    out.push([
        "   CPU per PUT: each node / quorumd + HTTP client".into(),
        format!("{node_on:.1} / {proc_on:.1} µs"),
        format!("off: {node_off:.1} / {proc_off:.1} µs"),
        format!("{:.2}× / {:.2}×", node_on / node_off, proc_on / proc_off),
        "".into(),
        "".into(),
    ]);
    let scan = med(scrub.scans.iter().map(|x| x.0));
    let bucket = med(scrub.sweeps.iter().map(|x| x.bucket_s));
    let scrubbed = med(scrub
        .sweeps
        .iter()
        .map(|x| x.report.entries_scrubbed as f64));
    let scan_keys = med(scrub.scans.iter().map(|x| x.1 as f64));
    out.push([
        format!(
            "3. scrub of {} keys on 1 node: full sweep's bucket phase",
            grouped(s.keys)
        ),
        format!("{bucket:.2} s, {:.0} entries scrubbed/s", scrubbed / bucket),
        format!(
            "SCAN COUNT {SCAN_COUNT}: {scan:.2} s ({:.0} keys/s)",
            scan_keys / scan
        ),
        format!("{:.2}×", bucket / scan),
        "≤ 3×".into(),
        verdict(bucket / scan <= 3.0),
    ]);
    let alone = med(scrub.alone.iter().map(|x| x.total_s));
    let verify = med(scrub.alone.iter().map(|x| x.verify_s));
    let entries = med(scrub.alone.iter().map(|x| x.entries as f64));
    out.push([
        format!(
            "   scrub alone: HGETALL + VERIFY_HASHES ({} buckets / {} keys a call)",
            scrub.bucket_batch, scrub.key_batch
        ),
        format!(
            "{alone:.2} s ({:.0} entries/s), VERIFY_HASHES {verify:.2} s",
            entries / alone
        ),
        format!("SCAN {scan:.2} s"),
        format!("{:.2}×", alone / scan),
        "≤ 3×".into(),
        verdict(alone / scan <= 3.0),
    ]);
    let whole = med(scrub.sweeps.iter().map(|x| x.total_s));
    out.push([
        "   the whole full sweep (SCAN phase + bucket phase)".into(),
        format!("{whole:.2} s"),
        format!("SCAN {scan:.2} s"),
        format!("{:.2}×", whole / scan),
        "".into(),
        "".into(),
    ]);
    let m = &scrub.memory;
    let f3 = m.per_key(0, s.keys);
    let f2 = m.per_key(2, s.keys);
    let plain = m.grown[1] as f64 / s.keys as f64;
    out.push([
        format!(
            "4. metadata bytes per key, entry format 3 ({VALUE_BYTES}-byte values, {} keys)",
            grouped(s.keys)
        ),
        format!("{f3:.1} B/key"),
        format!("plain SET: {plain:.1} B/key in all"),
        format!("{:.2}× the key", (plain + f3) / plain),
        "≤ 50 B/key".into(),
        verdict(f3 <= 50.0),
    ]);
    out.push([
        "   the same entries in format 2 (text, before 2026-12-07)".into(),
        format!("{f2:.1} B/key"),
        format!("format 3: {f3:.1} B/key"),
        format!("{:.2}×", f2 / f3),
        "".into(),
        "".into(),
    ]);
    let longer = m.per_key(3, s.keys);
    out.push([
        format!(
            "   format 2 on a node with hash-max-listpack-value {LONGER_LISTPACK_VALUE} (not 64)"
        ),
        format!("{longer:.1} B/key"),
        format!("format 3: {f3:.1} B/key"),
        format!("{:.2}×", longer / f3),
        "".into(),
        "".into(),
    ]);
    out
}

fn notes(live: &Live, scrub: &Scrub, s: &Settings) -> String {
    let mut n = String::new();
    let m = &scrub.memory;
    let _ = writeln!(
        n,
        "- memory: used_memory grew by {} B with {} versioned keys (format 3), {} B as plain SETs, \
         {} B in format 2, {} B in format 2 with hash-max-listpack-value {LONGER_LISTPACK_VALUE}; \
         the digest hashes (fixed, whatever K) take {} B = {:.1} B/key of it; loading the \
         versioned keys took {:.1} s",
        m.grown[0],
        grouped(s.keys),
        m.grown[1],
        m.grown[2],
        m.grown[3],
        m.digests,
        m.digests as f64 / s.keys as f64,
        m.load_s
    );
    let _ = writeln!(
        n,
        "- an entry is {} bytes in format 3 and {} in format 2; the nodes' \
         hash-max-listpack-value is {} (but for the last node); the metadata hash holding key 0: \
         {}",
        m.entry_len[0],
        m.entry_len[1],
        m.listpack_value,
        m.sample
            .iter()
            .map(|(f, enc, len, usage)| format!("{f} {enc}, {len} entries, MEMORY USAGE {usage} B"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    for (i, sw) in scrub.sweeps.iter().enumerate() {
        let _ = writeln!(
            n,
            "- full sweep {}: {:.3} s ({:.3} s scanning, {:.3} s bucket phase); {}",
            i + 1,
            sw.total_s,
            sw.total_s - sw.bucket_s,
            sw.bucket_s,
            sw.usage.breakdown()
        );
    }
    for (i, a) in scrub.alone.iter().enumerate() {
        let _ = writeln!(
            n,
            "- scrub alone {}: {:.3} s (HGETALL {:.3} s, VERIFY_HASHES {:.3} s, {:.2} µs of its \
             calls per entry); the bucket phase's other pass, REBUILD_DIGESTS over every bucket, {:.3} s \
             alone; {}",
            i + 1,
            a.total_s,
            a.read_s,
            a.verify_s,
            1e6 * a.verify_s / a.entries.max(1) as f64,
            a.rebuild_s,
            a.usage.breakdown()
        );
    }
    for (i, (secs, keys, u)) in scrub.scans.iter().enumerate() {
        let _ = writeln!(
            n,
            "- SCAN {}: {secs:.3} s for {} keys; {}",
            i + 1,
            grouped(*keys as usize),
            u.breakdown()
        );
    }
    for (i, r) in live.on.iter().enumerate() {
        let _ = writeln!(
            n,
            "- live detection on, window {}: {:.0} PUT/s, {:.2} EVALSHA per PUT on the nodes; on \
             {:.1} ms after start; a direct write at the window's end held everywhere after \
             {:.1} ms; direct SETs p50/p99/max {:.1}/{:.1}/{:.1} ms at {:.0}/s; {}",
            i + 1,
            r.put.ops_per_s,
            r.usage.calls("evalsha") as f64 / r.put.ok.max(1) as f64,
            r.live_on.as_secs_f64() * 1e3,
            r.backlog_ms,
            r.latency.p(0.5),
            r.latency.p(0.99),
            r.latency.p(1.0),
            r.latency.rate,
            r.usage.breakdown()
        );
    }
    for (i, r) in live.off.iter().enumerate() {
        let _ = writeln!(
            n,
            "- live detection off, window {}: {:.0} PUT/s, {:.2} EVALSHA per PUT on the nodes; {}",
            i + 1,
            r.put.ops_per_s,
            r.usage.calls("evalsha") as f64 / r.put.ok.max(1) as f64,
            r.usage.breakdown()
        );
    }
    let warnings = TAP.warnings.load(Ordering::Relaxed);
    if warnings > 0 {
        let first = TAP
            .first_warning
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default();
        let _ = writeln!(
            n,
            "- the service logged {warnings} other warnings; first:{first}"
        );
    }
    n
}

/// Failed checks, one line each.
fn failures(live: &Live, scrub: &Scrub, s: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    for (i, r) in live.on.iter().enumerate() {
        if r.latency.lost > 0 {
            out.push(format!(
                "round {}: {} of {} direct writes not on every node within 10 s",
                i + 1,
                r.latency.lost,
                r.latency.writes
            ));
        }
        if total(&r.window_changes) != 1 || r.window_changes.get("adopted") != Some(&1) {
            out.push(format!(
                "round {}: client traffic and one direct write: the live path reported {} \
                 (expected 1 adopted)",
                i + 1,
                describe(&r.window_changes)
            ));
        }
        let adopted = r.latency_changes.get("adopted").copied().unwrap_or(0);
        if adopted != r.latency.writes as u64 || total(&r.latency_changes) != adopted {
            out.push(format!(
                "round {}: {} direct writes, the live path reported {}",
                i + 1,
                r.latency.writes,
                describe(&r.latency_changes)
            ));
        }
    }
    for r in &live.replication {
        if r.lost > 0 {
            out.push(format!(
                "redis replication: {} writes not on the replica within 10 s",
                r.lost
            ));
        }
    }
    let puts = live
        .on
        .iter()
        .map(|r| &r.put)
        .chain(live.off.iter().map(|r| &r.put));
    let (ok, errors) = puts
        .clone()
        .fold((0u64, 0u64), |(o, e), p| (o + p.ok, e + p.errors));
    let rate = errors as f64 / (ok + errors).max(1) as f64;
    if rate > MAX_ERROR_RATE || ok == 0 {
        out.push(format!(
            "PUT errors: {errors} of {} ({:.2}%); first: {}",
            ok + errors,
            100.0 * rate,
            puts.filter_map(|p| p.first_error.clone())
                .next()
                .unwrap_or_default()
        ));
    }
    for sw in &scrub.sweeps {
        let r = &sw.report;
        if r.error_count > 0
            || r.entries_scrubbed != s.keys as u64
            || r.metadata_entries_read != s.keys as u64
            || !r.direct_changes.is_empty()
            || r.keys_divergent != 0
            || r.keys_adopted != 0
        {
            out.push(format!(
                "full sweep: {} entries scrubbed and {} read of {} keys, {} divergent, {} adopted, \
                 direct changes {:?}, {} errors: {:?}",
                r.entries_scrubbed,
                r.metadata_entries_read,
                s.keys,
                r.keys_divergent,
                r.keys_adopted,
                r.direct_changes,
                r.error_count,
                r.errors
            ));
        }
    }
    for a in &scrub.alone {
        if a.entries != s.keys as u64 || a.mismatches != 0 {
            out.push(format!(
                "scrub alone: {} entries verified of {}, {} mismatches",
                a.entries, s.keys, a.mismatches
            ));
        }
    }
    for (_, keys, _) in &scrub.scans {
        if *keys < s.keys as u64 {
            out.push(format!("SCAN returned {keys} keys, fewer than {}", s.keys));
        }
    }
    out
}

/// The printed report, and whether the run must fail.
fn report(live: &Live, scrub: &Scrub, s: &Settings) -> (String, bool) {
    let rows = rows(live, scrub, s);
    let notes = notes(live, scrub, s);
    let failed = failures(live, scrub, s);
    let mut fatal = !failed.is_empty();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nMedians over {} round(s); each ratio is quorumd ÷ its baseline from the same run:\n",
        s.rounds
    );
    out.push_str(&text_table(&HEADER, &ALIGN, &rows));
    out.push('\n');
    out.push_str(&notes);
    for f in &failed {
        let _ = writeln!(out, "\n!!! FAILED CHECK: {f}");
    }
    if s.full {
        let md = format!(
            "# direct bench\n\n\
             Changes made outside quorumd (issue 14): live detection, its cost, the scrub and \
             the metadata's memory, against baselines measured in the same run (redis-server {}).\n\n\
             - {} rounds; K = {} keys, {VALUE_BYTES}-byte values; {:.0} direct writes/s for \
             {:.1} s; {} HTTP clients for {:.1} s a window; {} CPU(s)\n\
             - figures are medians over rounds; ratios are quorumd ÷ baseline of those medians\n\n\
             {}\n{}",
            redis_version(),
            s.rounds,
            grouped(s.keys),
            s.rate,
            s.seconds,
            s.concurrency,
            s.seconds,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            markdown_table(&HEADER, &ALIGN, &rows),
            notes
        );
        match write_report("direct.md", &md) {
            Ok(path) => {
                let _ = writeln!(out, "\nwritten to {}", path.display());
            }
            Err(e) => {
                eprintln!("direct bench: FAILED: {e}");
                fatal = true;
            }
        }
    }
    (out, fatal)
}

// ---------------------------------------------------------------------------------------------
// The run.

struct Clusters {
    /// The three nodes of figures 1 and 2.
    live: DevCluster,
    /// A redis-server and its replica: the latency baseline.
    replication: DevCluster,
    /// The scrub node (versioned keys), the plain node, the format-1 node and the format-2 node
    /// with longer listpack values.
    scrub: DevCluster,
}

fn main() -> ExitCode {
    if let Err(e) = tracing::subscriber::set_global_default(
        tracing_subscriber::layer::SubscriberExt::with(tracing_subscriber::registry(), TapLayer),
    ) {
        eprintln!("direct bench: cannot install the event counter: {e}");
    }
    // The servers are started on the main thread, which outlives everything: they are also
    // killed by the kernel (PDEATHSIG) if this process dies. DEBUG HTSTATS tells when the
    // memory nodes' tables have settled.
    let (settings, clusters, runtime) = match setup(
        "direct bench",
        Settings::from_env,
        || -> Result<Clusters, quorumd::devcluster::DevClusterError> {
            Ok(Clusters {
                live: DevCluster::start(NODES)?,
                replication: DevCluster::start(2)?,
                scrub: DevCluster::start_with(4, &["--enable-debug-command", "local"])?,
            })
        },
    ) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let pids: Vec<u32> = clusters
        .live
        .nodes
        .iter()
        .chain(&clusters.replication.nodes)
        .chain(&clusters.scrub.nodes)
        .filter_map(|n| n.pid())
        .collect();
    println!(
        "quorumd over {NODES} redis-server {} nodes (live detection, direct_writes = adopt); a \
         redis-server and its replica; a one-node quorumd for the scrub; K = {} keys, \
         {VALUE_BYTES}-byte values, {:.0} direct writes/s for {:.1} s, {} HTTP clients for \
         {:.1} s a window, {} round(s){}",
        redis_version(),
        grouped(settings.keys),
        settings.rate,
        settings.seconds,
        settings.concurrency,
        settings.seconds,
        settings.rounds,
        if settings.full {
            ""
        } else {
            " (smoke run: no --bench argument)"
        }
    );
    let started = Instant::now();
    let outcome = runtime.block_on(async {
        let live = live_part(
            &clusters.live.urls(),
            &clusters.replication.urls(),
            clusters.replication.nodes[0].port(),
            &settings,
        )
        .await?;
        let scrub = scrub_part(&clusters.scrub.urls(), &settings).await?;
        Ok::<_, String>(report(&live, &scrub, &settings))
    });
    drop(runtime);
    drop(clusters);
    let mut failed = false;
    match outcome {
        Ok((report, fatal)) => {
            print!("{report}");
            failed |= fatal;
        }
        Err(e) => {
            eprintln!("direct bench: FAILED: {e}");
            failed = true;
        }
    }
    let leftovers = still_running(pids);
    if !leftovers.is_empty() {
        eprintln!("direct bench: FAILED: redis-server processes still running: {leftovers:?}");
        failed = true;
    }
    println!("total run time {:.0} s", started.elapsed().as_secs_f64());
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
