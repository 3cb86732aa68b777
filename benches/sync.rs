//! `make bench` (second part): the anti-entropy sweep with three local redis-server nodes, each
//! figure set against a baseline measured in the same run.
//!
//! 1. Heal: one node is wiped (FLUSHALL) and one digest exchange brings back all K keys;
//!    baseline: Redis' own full-sync replication (diskless) copying the same data set into an
//!    empty redis-server.
//! 2. Idle cost: one digest exchange with every node in sync, at K_small and K keys: time and
//!    bytes of bucket digests read (baseline: the same at K_small; target under 50 ms, flat in K).
//! 3. Divergence cost: D keys (1,000) made stale on one node, repaired by one exchange, at
//!    K_small and at K (target: the cost follows D, not K).
//! 4. Client impact: quorum PUT throughput over HTTP with no sweep running, and while full
//!    sweeps run back to back (target: under 10% drop).
//!
//! Every figure is the median over rounds (per round, the median of its repetitions); the
//! table goes to stdout and, as markdown, to `target/bench/sync.md`.
//!
//! Environment: `SYNC_BENCH_ROUNDS` (default 3), `SYNC_BENCH_KEYS` = K (default 1,000,000),
//! `SYNC_BENCH_SMALL_KEYS` = K_small (default 100,000), `SYNC_BENCH_DIVERGENT` = D (default
//! 1,000), `SYNC_BENCH_SECONDS` per client-impact window (default 3), `SYNC_BENCH_CONCURRENCY`
//! (default 32), `SYNC_BENCH_LOAD` = `apply` (default: versioned entries written with the APPLY
//! script on every node) or `adopt` (plain SETs on every node, then one full sweep adopts them).
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it runs a small smoke pass (both
//! loaders, one round) and writes no report. The exit status is non-zero when a check fails
//! (a heal that does not repair every key, divergence left behind, sweep errors, more than 1%
//! failed PUTs), when shutdown fails, or when a redis-server process outlives the run.

/// The allocator the shipped binary uses (`src/main.rs`), so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bytes::Bytes;
use quorumd::app::App;
use quorumd::config::{AdoptPolicy, Config, SyncConfig};
use quorumd::devcluster::{DevCluster, RedisProcess};
use quorumd::store::VersionedStore;
use quorumd::sync::{SweepMode, SweepReport, SweepRequest, SweepTrigger, Sweeper};
use quorumd_testkit::bench as support;
use redis::aio::MultiplexedConnection;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};
use support::{
    Align, Sample, apply_versioned, closed_loop, command, commandstats, direct, env_number,
    grouped, http_put, info, info_field, markdown_table, median, process_cpu_s, redis_cpu_s,
    redis_version, setup, shut_down, start_app, still_running, tables_settled, text_table,
    write_report,
};

const NODES: usize = 3;
const VALUE_BYTES: usize = 100;
/// The node that is wiped by the heal test and left stale by the divergence test.
const STALE: usize = NODES - 1;
/// Short, so versions written by the bench are old enough to repair almost at once.
const IN_FLIGHT_WINDOW_MS: u64 = 100;
/// Keys per SET pipeline when writing straight to the nodes.
const RAW_BATCH: usize = 5000;
/// Largest acceptable share of failed PUTs per window.
const MAX_ERROR_RATE: f64 = 0.01;
/// The full sweep's SCAN checkpoint under the reserved prefix (private to `sync/full.rs`).
/// Dropped before a loading sweep, which must scan from the start: the client-impact test cuts
/// full sweeps off mid-way and leaves a checkpoint behind.
const FULL_SWEEP_CHECKPOINT: &str = "sweep:full";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoadMethod {
    /// Versioned entries written by the APPLY script (`calls::store::apply`) on every node.
    Apply,
    /// Plain SETs on every node, then one full sweep (throttles off) adopts them by majority.
    Adopt,
}

impl LoadMethod {
    fn describe(self) -> &'static str {
        match self {
            LoadMethod::Apply => "APPLY batches on every node",
            LoadMethod::Adopt => "SET pipelines + one unthrottled full sweep (adopt majority)",
        }
    }
}

struct Settings {
    /// False under `cargo test`: a smoke run, no report file.
    full: bool,
    rounds: usize,
    keys: usize,
    small_keys: usize,
    divergent: usize,
    /// Idle exchanges timed per round.
    idle_reps: usize,
    seconds: f64,
    concurrency: usize,
    /// Keys the PUT workload writes to (a subset of the loaded ones).
    put_keys: usize,
    /// Loader of the first K_small keys and of the rest.
    load: [LoadMethod; 2],
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let full = support::full_run();
        let load = match std::env::var("SYNC_BENCH_LOAD").as_deref() {
            Err(_) | Ok("apply") => LoadMethod::Apply,
            Ok("adopt") => LoadMethod::Adopt,
            Ok(other) => return Err(format!("SYNC_BENCH_LOAD={other:?}: use apply or adopt")),
        };
        if !full {
            return Ok(Settings {
                full,
                rounds: 1,
                keys: 2000,
                small_keys: 500,
                divergent: 50,
                idle_reps: 2,
                seconds: 0.3,
                concurrency: 8,
                put_keys: 500,
                load: [LoadMethod::Apply, LoadMethod::Adopt],
            });
        }
        let rounds = env_number("SYNC_BENCH_ROUNDS", 3usize)?;
        let keys = env_number("SYNC_BENCH_KEYS", 1_000_000usize)?;
        let small_keys = env_number("SYNC_BENCH_SMALL_KEYS", 100_000usize)?.min(keys);
        let divergent = env_number("SYNC_BENCH_DIVERGENT", 1000usize)?;
        let seconds = env_number("SYNC_BENCH_SECONDS", 3.0f64)?;
        let concurrency = env_number("SYNC_BENCH_CONCURRENCY", 32usize)?;
        if rounds == 0 || concurrency == 0 || !(seconds > 0.0 && seconds <= 3600.0) {
            return Err(
                "SYNC_BENCH_ROUNDS and SYNC_BENCH_CONCURRENCY must be at least 1, \
                 SYNC_BENCH_SECONDS in (0, 3600]"
                    .into(),
            );
        }
        if divergent == 0 || divergent * 2 > small_keys {
            return Err(format!(
                "SYNC_BENCH_DIVERGENT={divergent} must be between 1 and half of \
                 SYNC_BENCH_SMALL_KEYS ({small_keys})"
            ));
        }
        Ok(Settings {
            full,
            rounds,
            keys,
            small_keys,
            divergent,
            idle_reps: 7,
            seconds,
            concurrency,
            put_keys: small_keys.min(10_000),
            load: [load, load],
        })
    }
}

fn key(i: usize) -> String {
    format!("sync:{i:07}")
}

/// A 100-byte value; `generation` changes it for rewrites.
fn value(i: usize, generation: u32) -> Vec<u8> {
    let mut v = format!("{i:09}/{generation:04}/").into_bytes();
    v.resize(VALUE_BYTES, b'a' + (i % 26) as u8);
    v
}

// ---------------------------------------------------------------------------------------------
// What the service logs: sweep back-offs (debug events with `waited_ms`) and warnings, counted
// by a tracing layer that subscribes to nothing else (spans and other events stay disabled).

#[derive(Default)]
struct Tap {
    backoff_events: AtomicU64,
    backoff_ms: AtomicU64,
    warnings: AtomicU64,
    first_warning: Mutex<Option<String>>,
}

static TAP: LazyLock<Tap> = LazyLock::new(Tap::default);

impl Tap {
    fn backoff(&self) -> (u64, u64) {
        (
            self.backoff_events.load(Ordering::Relaxed),
            self.backoff_ms.load(Ordering::Relaxed),
        )
    }
}

struct TapLayer;

#[derive(Default)]
struct TapVisitor {
    waited_ms: Option<u64>,
    text: String,
}

impl tracing::field::Visit for TapVisitor {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        if field.name() == "waited_ms" {
            self.waited_ms = Some(value);
        } else {
            let _ = write!(self.text, " {}={value}", field.name());
        }
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
        let wanted = m.is_event()
            && (*m.level() <= tracing::Level::WARN || m.fields().field("waited_ms").is_some());
        if wanted {
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
        if let Some(ms) = v.waited_ms {
            TAP.backoff_events.fetch_add(1, Ordering::Relaxed);
            TAP.backoff_ms.fetch_add(ms, Ordering::Relaxed);
        } else {
            TAP.warnings.fetch_add(1, Ordering::Relaxed);
            let mut first = TAP.first_warning.lock().unwrap_or_else(|p| p.into_inner());
            if first.is_none() {
                *first = Some(format!("{}:{}", event.metadata().level(), v.text));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Loading and tampering.

/// Writes versioned entries for `indices` to `targets` with the APPLY script (what a client
/// write does on each node). Returns the entries applied.
async fn write_versions(
    store: &VersionedStore,
    indices: &[usize],
    targets: &[usize],
    generation: u32,
) -> Result<u64, String> {
    apply_versioned(store, targets, indices, key, |i| value(i, generation)).await
}

/// Plain SETs of `range` on every node, as if written without quorumd.
async fn write_raw(
    conns: &[MultiplexedConnection],
    range: std::ops::Range<usize>,
) -> Result<(), String> {
    let work = conns.iter().enumerate().map(|(n, c)| {
        let (mut c, range) = (c.clone(), range.clone());
        async move {
            let mut start = range.start;
            while start < range.end {
                let end = (start + RAW_BATCH).min(range.end);
                let mut pipe = redis::pipe();
                for i in start..end {
                    pipe.cmd("SET").arg(key(i)).arg(value(i, 0)).ignore();
                }
                pipe.query_async::<()>(&mut c)
                    .await
                    .map_err(|e| format!("SET pipeline on node {n}: {e}"))?;
                start = end;
            }
            Ok::<(), String>(())
        }
    });
    futures::future::join_all(work).await.into_iter().collect()
}

/// Loads keys `range` as versioned entries on every node; returns the seconds it took.
async fn load(
    app: &App,
    conns: &[MultiplexedConnection],
    range: std::ops::Range<usize>,
    method: LoadMethod,
) -> Result<f64, String> {
    let started = Instant::now();
    let count = range.len();
    match method {
        LoadMethod::Apply => {
            let indices: Vec<usize> = range.collect();
            let all: Vec<usize> = (0..NODES).collect();
            write_versions(app.store(), &indices, &all, 0).await?;
        }
        LoadMethod::Adopt => {
            write_raw(conns, range).await?;
            let prefix = &app.store().settings().layout.prefix;
            for c in conns {
                command::<()>(
                    c,
                    redis::cmd("DEL").arg(format!("{prefix}{FULL_SWEEP_CHECKPOINT}")),
                )
                .await?;
            }
            // Throttles off: this is setup, not the measured sweep.
            let cfg = SyncConfig {
                max_repairs_per_sec: 0,
                max_scan_keys_per_sec: 0,
                adopt_policy: AdoptPolicy::Majority,
                ..app.sweeper().config().clone()
            };
            let loader = Sweeper::new(app.store().clone(), cfg, "bench-loader".into());
            let r = loader
                .run(SweepRequest::new(SweepMode::Full, SweepTrigger::Test))
                .await
                .map_err(|e| format!("loading sweep: {e}"))?;
            if r.keys_adopted != count as u64 || r.error_count > 0 {
                return Err(format!(
                    "loading sweep adopted {} of {count} keys, {} errors: {:?}",
                    r.keys_adopted, r.error_count, r.errors
                ));
            }
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Runs one exchange on the service's sweeper and times it.
async fn exchange(app: &App, dry_run: bool) -> Result<(SweepReport, Duration), String> {
    let started = Instant::now();
    let r = app
        .sweeper()
        .run(SweepRequest {
            mode: SweepMode::Exchange,
            dry_run,
            trigger: SweepTrigger::Test,
        })
        .await
        .map_err(|e| format!("exchange: {e}"))?;
    Ok((r, started.elapsed()))
}

fn no_errors(r: &SweepReport, what: &str) -> Result<(), String> {
    if r.error_count > 0 {
        return Err(format!(
            "{what}: {} sweep errors: {:?}",
            r.error_count, r.errors
        ));
    }
    Ok(())
}

/// A dry-run exchange must find nothing left.
async fn assert_in_sync(app: &App, what: &str) -> Result<(), String> {
    let (r, _) = exchange(app, true).await?;
    no_errors(&r, what)?;
    if r.divergence_left() != 0 || r.buckets_mismatched != 0 {
        return Err(format!(
            "{what}: a dry-run exchange still finds {} divergent keys in {} buckets",
            r.divergence_left(),
            r.buckets_mismatched
        ));
    }
    Ok(())
}

/// Repairs whatever is left (client writes still landing) until a dry run finds nothing.
async fn settle(app: &App) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(IN_FLIGHT_WINDOW_MS + 50)).await;
        let (r, _) = exchange(app, false).await?;
        no_errors(&r, "settling exchange")?;
        match assert_in_sync(app, "settling").await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

// ---------------------------------------------------------------------------------------------
// 2. Idle cost.

struct Idle {
    keys: usize,
    ms: f64,
    /// The digest hashes as read (RESP2 reply size), summed over the nodes.
    wire_bytes: u64,
    /// Their fields and values alone.
    payload_bytes: u64,
    /// Exchanges per round, and what the last round's used.
    reps: usize,
    usage: Usage,
}

async fn digest_size(app: &App, conns: &[MultiplexedConnection]) -> Result<(u64, u64), String> {
    // The default layout keeps every bucket digest in one hash.
    let digest_key = app.store().settings().layout.digest_key(0);
    let (mut wire, mut payload) = (0u64, 0u64);
    let bulk = |len: usize| (1 + len.to_string().len() + 2 + len + 2) as u64;
    for c in conns {
        let entries: Vec<(Vec<u8>, Vec<u8>)> =
            command(c, redis::cmd("HGETALL").arg(&digest_key)).await?;
        wire += (1 + (entries.len() * 2).to_string().len() + 2) as u64;
        for (f, v) in &entries {
            payload += (f.len() + v.len()) as u64;
            wire += bulk(f.len()) + bulk(v.len());
        }
    }
    Ok((wire, payload))
}

async fn idle_cost(
    app: &App,
    conns: &[MultiplexedConnection],
    keys: usize,
    s: &Settings,
) -> Result<Idle, String> {
    let (wire_bytes, payload_bytes) = digest_size(app, conns).await?;
    let mut per_round = Vec::new();
    let mut usage = None;
    for round in 0..s.rounds {
        let mut ms = Vec::new();
        let start = usage_start(conns, true).await?;
        for _ in 0..s.idle_reps {
            let (r, took) = exchange(app, false).await?;
            no_errors(&r, "idle exchange")?;
            if r.buckets_mismatched != 0 {
                return Err(format!(
                    "idle exchange found {} mismatched buckets",
                    r.buckets_mismatched
                ));
            }
            ms.push(took.as_secs_f64() * 1000.0);
        }
        usage = Some(usage_end(start, conns).await?);
        let m = median(&ms);
        println!(
            "round {}/{}  idle exchange, {:>9} keys: median {m:.2} ms of {} (min {:.2}, max {:.2}); \
             digests read {:.1} KiB",
            round + 1,
            s.rounds,
            grouped(keys),
            ms.len(),
            ms.iter().copied().fold(f64::INFINITY, f64::min),
            ms.iter().copied().fold(0.0, f64::max),
            wire_bytes as f64 / 1024.0
        );
        per_round.push(m);
    }
    Ok(Idle {
        keys,
        ms: median(&per_round),
        wire_bytes,
        payload_bytes,
        reps: s.idle_reps,
        usage: usage.ok_or("no idle round ran")?,
    })
}

// ---------------------------------------------------------------------------------------------
// 3. Divergence cost.

struct Divergence {
    keys: usize,
    ms: f64,
    buckets: u64,
    /// Sub-buckets mismatched and metadata entries read (medians over rounds).
    sub_buckets: u64,
    entries_read: u64,
    /// What the last round's exchange used.
    usage: Usage,
}

async fn divergence_cost(
    app: &App,
    conns: &[MultiplexedConnection],
    keys: usize,
    s: &Settings,
    stage: u32,
) -> Result<Divergence, String> {
    let d = s.divergent;
    let spacing = keys / d;
    let mut ms = Vec::new();
    let mut buckets = Vec::new();
    let mut sub_buckets = Vec::new();
    let mut entries_read = Vec::new();
    let mut usage = None;
    for round in 0..s.rounds {
        let offset = (round * 7 + 3) % spacing;
        let indices: Vec<usize> = (0..d).map(|j| j * spacing + offset).collect();
        // Newer versions on every node but one, as if that node had missed the writes.
        let fresh: Vec<usize> = (0..NODES).filter(|&n| n != STALE).collect();
        write_versions(
            app.store(),
            &indices,
            &fresh,
            stage * 100 + round as u32 + 1,
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(IN_FLIGHT_WINDOW_MS + 50)).await;
        let start = usage_start(conns, true).await?;
        let (r, took) = exchange(app, false).await?;
        let used = usage_end(start, conns).await?;
        no_errors(&r, "divergence exchange")?;
        let mut expected = vec![0u64; NODES];
        expected[STALE] = d as u64;
        if r.keys_repaired_per_node != expected || r.keys_divergent != d as u64 {
            return Err(format!(
                "divergence exchange: {} keys divergent, repaired per node {:?}, expected {d} on \
                 node {STALE} ({} deferred)",
                r.keys_divergent, r.keys_repaired_per_node, r.keys_deferred
            ));
        }
        assert_in_sync(app, "after the divergence exchange").await?;
        let t = took.as_secs_f64() * 1000.0;
        println!(
            "round {}/{}  {} divergent keys among {:>9}: repaired in {t:.1} ms \
             ({} buckets and {} sub-buckets mismatched, ~{} metadata entries per bucket, \
             {} metadata entries read)",
            round + 1,
            s.rounds,
            grouped(d),
            grouped(keys),
            r.buckets_mismatched,
            r.sub_buckets_mismatched,
            keys / app.store().settings().layout.buckets as usize,
            grouped(r.metadata_entries_read as usize),
        );
        println!("             where the time went: {}", used.breakdown());
        ms.push(t);
        buckets.push(r.buckets_mismatched as f64);
        sub_buckets.push(r.sub_buckets_mismatched as f64);
        entries_read.push(r.metadata_entries_read as f64);
        usage = Some(used);
    }
    Ok(Divergence {
        keys,
        ms: median(&ms),
        buckets: median(&buckets) as u64,
        sub_buckets: median(&sub_buckets) as u64,
        entries_read: median(&entries_read) as u64,
        usage: usage.ok_or("no divergence round ran")?,
    })
}

// ---------------------------------------------------------------------------------------------
// 1. Heal, and Redis' full sync.

/// Resources used over a stretch of the run: wall time, CPU of this process (the in-process
/// service, plus the bench's HTTP client during client-impact windows; nothing else of the
/// bench runs while a sweep is timed) and of each node, the nodes' commands, the sweep's
/// throttle waits.
struct Usage {
    secs: f64,
    process_cpu: f64,
    node_cpu: Vec<f64>,
    /// Per node: (command, calls, µs), most µs first; empty unless stats were reset at start.
    commands: Vec<Vec<(String, u64, u64)>>,
    backoff_events: u64,
    backoff_ms: u64,
}

struct UsageStart {
    at: Instant,
    process_cpu: f64,
    node_cpu: Vec<f64>,
    backoff: (u64, u64),
    with_commands: bool,
}

/// Starts measuring; `with_commands` resets the nodes' command statistics.
async fn usage_start(
    conns: &[MultiplexedConnection],
    with_commands: bool,
) -> Result<UsageStart, String> {
    let mut node_cpu = Vec::new();
    for c in conns {
        if with_commands {
            command::<()>(c, redis::cmd("CONFIG").arg("RESETSTAT")).await?;
        }
        node_cpu.push(redis_cpu_s(c).await?);
    }
    Ok(UsageStart {
        at: Instant::now(),
        process_cpu: process_cpu_s(),
        node_cpu,
        backoff: TAP.backoff(),
        with_commands,
    })
}

async fn usage_end(start: UsageStart, conns: &[MultiplexedConnection]) -> Result<Usage, String> {
    let secs = start.at.elapsed().as_secs_f64();
    let process_cpu = process_cpu_s() - start.process_cpu;
    let (events, ms) = TAP.backoff();
    let mut node_cpu = Vec::new();
    let mut commands = Vec::new();
    for (c, before) in conns.iter().zip(start.node_cpu) {
        node_cpu.push(redis_cpu_s(c).await? - before);
        commands.push(if start.with_commands {
            commandstats(c).await?
        } else {
            Vec::new()
        });
    }
    Ok(Usage {
        secs,
        process_cpu,
        node_cpu,
        commands,
        backoff_events: events - start.backoff.0,
        backoff_ms: ms - start.backoff.1,
    })
}

impl Usage {
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
                let _ = write!(s, " [{}]", top.join(", "));
            }
        }
        let busy = self.process_cpu + self.node_cpu.iter().sum::<f64>();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let _ = write!(
            s,
            "; all together {:.0}% of {cores} cores; sweep throttle waits {} ({:.2} s)",
            100.0 * busy / (self.secs * cores as f64),
            self.backoff_events,
            self.backoff_ms as f64 / 1000.0
        );
        s
    }
}

struct HealSample {
    secs: f64,
    usage: Usage,
    buckets: u64,
}

async fn heal(
    app: &App,
    conns: &[MultiplexedConnection],
    keys: usize,
) -> Result<HealSample, String> {
    command::<()>(&conns[STALE], redis::cmd("FLUSHALL").arg("SYNC")).await?;
    // On stderr, for whoever profiles the heal alone (`perf record` from this line on).
    eprintln!("healing node {STALE}");
    let usage = usage_start(conns, true).await?;
    let (r, took) = exchange(app, false).await?;
    let usage = usage_end(usage, conns).await?;
    no_errors(&r, "heal exchange")?;
    let mut expected = vec![0u64; NODES];
    expected[STALE] = keys as u64;
    if r.keys_repaired_per_node != expected {
        return Err(format!(
            "heal exchange repaired {:?} keys per node, expected {keys} on node {STALE} \
             ({} divergent, {} deferred)",
            r.keys_repaired_per_node, r.keys_divergent, r.keys_deferred
        ));
    }
    assert_in_sync(app, "after the heal exchange").await?;
    Ok(HealSample {
        secs: took.as_secs_f64(),
        usage,
        buckets: r.buckets_mismatched,
    })
}

/// Starts an empty redis-server, makes it a replica of `master` and times until the link is up
/// and it holds as many keys as the master. Returns seconds and the key count.
async fn full_sync(
    dir: &Path,
    master: &MultiplexedConnection,
    master_port: u16,
    pids: &Mutex<Vec<u32>>,
) -> Result<(f64, u64), String> {
    let dir = dir.to_path_buf();
    let replica = tokio::task::spawn_blocking(move || {
        RedisProcess::start(
            &dir,
            &[
                "--repl-diskless-sync",
                "yes",
                "--repl-diskless-sync-delay",
                "0",
                "--repl-diskless-load",
                "on-empty-db",
            ],
        )
    })
    .await
    .map_err(|e| format!("replica start: {e}"))?
    .map_err(|e| format!("replica start: {e}"))?;
    if let Some(pid) = replica.pid() {
        pids.lock().unwrap_or_else(|p| p.into_inner()).push(pid);
    }
    let result = async {
        let conn = direct(&replica.url()).await?;
        let master_keys: u64 = command(master, &redis::cmd("DBSIZE")).await?;
        let started = Instant::now();
        command::<()>(
            &conn,
            redis::cmd("REPLICAOF").arg("127.0.0.1").arg(master_port),
        )
        .await?;
        let deadline = started + Duration::from_secs(300);
        loop {
            let text = info(&conn, "replication").await?;
            if info_field(&text, "master_link_status") == Some("up") {
                let n: u64 = command(&conn, &redis::cmd("DBSIZE")).await?;
                if n == master_keys {
                    break;
                }
            }
            if Instant::now() > deadline {
                return Err("full sync did not finish within 300 s".to_string());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        command::<()>(&conn, redis::cmd("REPLICAOF").arg("NO").arg("ONE")).await?;
        Ok((secs, master_keys))
    }
    .await;
    tokio::task::spawn_blocking(move || drop(replica))
        .await
        .map_err(|e| format!("replica stop: {e}"))?;
    result
}

struct Heal {
    keys: usize,
    heal_s: f64,
    sync_s: f64,
    samples: Vec<HealSample>,
    buckets: u64,
    replicated_keys: u64,
}

async fn heal_vs_full_sync(
    app: &App,
    conns: &[MultiplexedConnection],
    ports: &[u16],
    keys: usize,
    s: &Settings,
    pids: &Mutex<Vec<u32>>,
) -> Result<Heal, String> {
    let master = &conns[0];
    command::<()>(
        master,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("repl-diskless-sync")
            .arg("yes"),
    )
    .await?;
    command::<()>(
        master,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("repl-diskless-sync-delay")
            .arg("0"),
    )
    .await?;
    let dir = tempfile::Builder::new()
        .prefix("quorumd-bench-replica-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    let mut heals = Vec::new();
    let mut syncs = Vec::new();
    let mut replicated_keys = 0;
    for round in 0..s.rounds {
        // Alternate which goes first, so neither always runs on a warmer machine.
        for step in 0..2 {
            if (step + round) % 2 == 0 {
                let h = heal(app, conns, keys).await?;
                println!(
                    "round {}/{}  heal: {} keys back on wiped node {STALE} in {:.2} s \
                     ({:.0} keys/s, {} buckets)",
                    round + 1,
                    s.rounds,
                    grouped(keys),
                    h.secs,
                    keys as f64 / h.secs,
                    h.buckets
                );
                println!("             where the time went: {}", h.usage.breakdown());
                heals.push(h);
            } else {
                let (secs, n) = full_sync(dir.path(), master, ports[0], pids).await?;
                replicated_keys = n;
                println!(
                    "round {}/{}  redis full sync (diskless) of {} keys into an empty server: {secs:.2} s",
                    round + 1,
                    s.rounds,
                    grouped(n as usize)
                );
                syncs.push(secs);
            }
        }
    }
    let heal_s = median(&heals.iter().map(|h| h.secs).collect::<Vec<_>>());
    Ok(Heal {
        keys,
        heal_s,
        sync_s: median(&syncs),
        buckets: heals.first().map_or(0, |h| h.buckets),
        samples: heals,
        replicated_keys,
    })
}

// ---------------------------------------------------------------------------------------------
// 4. Client impact.

struct PutTarget {
    http: reqwest::Client,
    urls: Vec<reqwest::Url>,
    value: Bytes,
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

struct Impact {
    keys: usize,
    /// Errors the looping full sweeps reported (timeouts under load, ...).
    sweep_errors: u64,
    /// Cores busy (CPU s per s), no sweep and sweeping: [this process, the redis nodes].
    cpu: [[f64; 2]; 2],
    /// The last window of each kind: no sweep, sweeping.
    usage: [Usage; 2],
    idle: [f64; 3],
    sweeping: [f64; 3],
    sweeps_finished: u64,
    scanned_per_s: f64,
    errors: u64,
    ok: u64,
    first_error: Option<String>,
}

async fn client_impact(
    app: &App,
    conns: &[MultiplexedConnection],
    keys: usize,
    s: &Settings,
) -> Result<Impact, String> {
    let http = support::http_client(s.concurrency * 2)?;
    let base = format!("http://{}/v1/kv/", app.http_addr());
    let urls = (0..s.put_keys)
        .map(|i| reqwest::Url::parse(&format!("{base}{}?consistency=quorum", key(i))))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("url: {e}"))?;
    let t = Arc::new(PutTarget {
        http,
        urls,
        value: Bytes::from(value(0, 9999)),
    });
    let duration = Duration::from_secs_f64(s.seconds);
    if s.full {
        let _ = put_window(&t, s.concurrency, Duration::from_millis(500), 0xfeed).await;
    }
    let mut idle: Vec<Sample> = Vec::new();
    let mut sweeping: Vec<Sample> = Vec::new();
    let (mut cpu_idle, mut cpu_sweeping): (Vec<[f64; 2]>, Vec<[f64; 2]>) = (Vec::new(), Vec::new());
    let mut usage: [Option<Usage>; 2] = [None, None];
    let (mut sweeps_finished, mut scanned, mut sweep_secs, mut sweep_errors) =
        (0u64, 0u64, 0f64, 0u64);
    for round in 0..s.rounds {
        for step in 0..2 {
            let with_sweep = (step + round) % 2 == 1;
            // A fresh sweeper per window (same configuration as the service's), so that the
            // loop can be cut off at the end of the window without leaving a sweep marked as
            // running in the service's own sweeper. Cursors are checkpointed on the nodes, so
            // the next window's sweep carries on where this one stopped.
            let looping = with_sweep.then(|| {
                let sw = Sweeper::new(
                    app.store().clone(),
                    app.sweeper().config().clone(),
                    "bench-sweep-loop".into(),
                );
                let done = Arc::new(AtomicU64::new(0));
                let scanned_done = Arc::new(AtomicU64::new(0));
                let errors_done = Arc::new(AtomicU64::new(0));
                let task = tokio::spawn({
                    let (sw, done, scanned_done, errors_done) = (
                        sw.clone(),
                        done.clone(),
                        scanned_done.clone(),
                        errors_done.clone(),
                    );
                    async move {
                        loop {
                            match sw
                                .run(SweepRequest::new(SweepMode::Full, SweepTrigger::Test))
                                .await
                            {
                                Ok(r) => {
                                    done.fetch_add(1, Ordering::Relaxed);
                                    scanned_done.fetch_add(r.keys_scanned(), Ordering::Relaxed);
                                    errors_done.fetch_add(r.error_count, Ordering::Relaxed);
                                }
                                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                            }
                        }
                    }
                });
                (sw, done, scanned_done, errors_done, task)
            });
            let seed = ((round as u64) << 16) ^ (step as u64 + 1).wrapping_mul(0x5851_f42d);
            let started = Instant::now();
            let used = usage_start(conns, true).await?;
            let sample = put_window(&t, s.concurrency, duration, seed).await;
            let used = usage_end(used, conns).await?;
            let cpu = [
                used.process_cpu / used.secs,
                used.node_cpu.iter().sum::<f64>() / used.secs,
            ];
            let mut note = String::new();
            if let Some((sw, done, scanned_done, errors_done, task)) = looping {
                let (running, running_errors) = sw
                    .status()
                    .full
                    .map_or((0, 0), |r| (r.keys_scanned(), r.error_count));
                task.abort();
                let _ = task.await;
                let finished = done.load(Ordering::Relaxed);
                let n = scanned_done.load(Ordering::Relaxed) + running;
                let errs = errors_done.load(Ordering::Relaxed) + running_errors;
                sweep_errors += errs;
                let secs = started.elapsed().as_secs_f64();
                sweeps_finished += finished;
                scanned += n;
                sweep_secs += secs;
                note = format!(
                    "  (full sweep looping: {finished} finished, {:.0} keys scanned/s, {errs} \
                     sweep errors)",
                    n as f64 / secs
                );
            }
            println!(
                "round {}/{}  quorum PUT, {:<20} {:>7.0} ops/s  p50 {:>5.0} µs  p99 {:>6.0} µs  \
                 CPU cores busy: quorumd+client {:.2}, redis {:.2}{}{note}",
                round + 1,
                s.rounds,
                if with_sweep {
                    "full sweep looping:"
                } else {
                    "no sweep:"
                },
                sample.ops_per_s,
                sample.p50_us,
                sample.p99_us,
                cpu[0],
                cpu[1],
                if sample.errors > 0 {
                    format!("  ERRORS: {}", sample.errors)
                } else {
                    String::new()
                }
            );
            if with_sweep {
                sweeping.push(sample);
                cpu_sweeping.push(cpu);
                usage[1] = Some(used);
            } else {
                idle.push(sample);
                cpu_idle.push(cpu);
                usage[0] = Some(used);
            }
        }
    }
    let med = |v: &[Sample]| {
        [
            median(&v.iter().map(|x| x.ops_per_s).collect::<Vec<_>>()),
            median(&v.iter().map(|x| x.p50_us).collect::<Vec<_>>()),
            median(&v.iter().map(|x| x.p99_us).collect::<Vec<_>>()),
        ]
    };
    let all = idle.iter().chain(&sweeping);
    let cpu_med = |v: &[[f64; 2]]| {
        [
            median(&v.iter().map(|c| c[0]).collect::<Vec<_>>()),
            median(&v.iter().map(|c| c[1]).collect::<Vec<_>>()),
        ]
    };
    let [Some(usage_idle), Some(usage_sweeping)] = usage else {
        return Err("no client-impact window ran".into());
    };
    Ok(Impact {
        cpu: [cpu_med(&cpu_idle), cpu_med(&cpu_sweeping)],
        usage: [usage_idle, usage_sweeping],
        keys,
        idle: med(&idle),
        sweeping: med(&sweeping),
        sweeps_finished,
        sweep_errors,
        scanned_per_s: scanned as f64 / sweep_secs,
        errors: all.clone().map(|x| x.errors).sum(),
        ok: all.clone().map(|x| x.ok).sum(),
        first_error: all.filter_map(|x| x.first_error.clone()).next(),
    })
}

// ---------------------------------------------------------------------------------------------
// The run.

struct Results {
    buckets: usize,
    load: Vec<(usize, LoadMethod, f64)>,
    idle: Vec<Idle>,
    divergence: Vec<Divergence>,
    heal: Heal,
    impact: Impact,
}

fn main() -> ExitCode {
    if let Err(e) = tracing::subscriber::set_global_default(
        tracing_subscriber::layer::SubscriberExt::with(tracing_subscriber::registry(), TapLayer),
    ) {
        eprintln!("sync bench: cannot install the event counter: {e}");
    }
    // The cluster is started on the main thread, which outlives everything: the servers are
    // also killed by the kernel (PDEATHSIG) if this process dies.
    // DEBUG HTSTATS tells when the nodes' hash tables have settled (`tables_settled`).
    let (settings, cluster, runtime) = match setup("sync bench", Settings::from_env, || {
        DevCluster::start_with(NODES, &["--enable-debug-command", "local"])
    }) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let pids = Mutex::new(
        cluster
            .nodes
            .iter()
            .filter_map(|n| n.pid())
            .collect::<Vec<u32>>(),
    );
    let urls = cluster.urls();
    let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port()).collect();
    let started = Instant::now();
    let outcome = runtime.block_on(run(urls, &ports, &settings, &pids));
    drop(runtime);
    drop(cluster);
    let mut failed = false;
    let report = match outcome {
        Ok((report, fatal)) => {
            failed |= fatal;
            Some(report)
        }
        Err(e) => {
            eprintln!("sync bench: FAILED: {e}");
            failed = true;
            None
        }
    };
    let leftovers = still_running(pids.into_inner().unwrap_or_else(|p| p.into_inner()));
    if !leftovers.is_empty() {
        eprintln!("sync bench: FAILED: redis-server processes still running: {leftovers:?}");
        failed = true;
    }
    if let Some(report) = report {
        print!("{report}");
    }
    println!("total run time {:.0} s", started.elapsed().as_secs_f64());
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn run(
    nodes: Vec<String>,
    ports: &[u16],
    s: &Settings,
    pids: &Mutex<Vec<u32>>,
) -> Result<(String, bool), String> {
    let mut config = Config {
        nodes: nodes.clone(),
        ..Config::default()
    };
    config.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.resp.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    // Nothing in the background: every sweep is one the bench runs and times.
    config.sync.exchange_interval_ms = 0;
    config.sync.full_sweep_cron = String::new();
    config.sync.in_flight_window_ms = IN_FLIGHT_WINDOW_MS;
    // The adopt loader writes straight to the nodes for the timed sweep to adopt; live
    // detection would adopt them first (its cost is the direct bench's to measure).
    config.sync.live_detection = false;
    // The health probe would notice the wiped node (its sentinel key is gone) and start a
    // recovery exchange of its own, racing the one the bench times. Probes only, requests
    // still feed health and latency.
    config.timeouts.health_interval_ms = 3_600_000;
    // The heal runs at full speed, as Redis's full sync does: the default cap of 200,000
    // repairs per second per node alone would hold 1,000,000 keys to 5 s. The latency
    // back-off (which listens to client requests only) stays on.
    config.sync.max_repairs_per_sec = 0;
    // Loading batches of 1,000 entries can outlast the 500 ms default on 2 shared, busy cores.
    config.timeouts.node_ms = 5_000;
    config.timeouts.request_ms = 10_000;
    let app = start_app(config).await?;
    let measured = measure(&app, &nodes, ports, s, pids).await;
    let fatal = match shut_down(app).await {
        Ok(()) => false,
        Err(e) => {
            eprintln!("sync bench: FAILED: {e}");
            true
        }
    };
    let results = measured?;
    let (report, bad) = report(&results, s)?;
    Ok((report, fatal || bad))
}

async fn measure(
    app: &App,
    nodes: &[String],
    ports: &[u16],
    s: &Settings,
    pids: &Mutex<Vec<u32>>,
) -> Result<Results, String> {
    let mut conns = Vec::new();
    for url in nodes {
        conns.push(direct(url).await?);
    }
    let sync = app.sweeper().config();
    println!(
        "quorumd with {NODES} redis-server {} nodes, {} buckets × {} sub-buckets, key_batch {}, \
         bucket_batch {}, max_repairs_per_sec {}, max_scan_keys_per_sec {}, backoff_latency_ms {}",
        redis_version(),
        app.store().settings().layout.buckets,
        app.store().settings().layout.sub_buckets,
        sync.key_batch,
        sync.bucket_batch,
        sync.max_repairs_per_sec,
        sync.max_scan_keys_per_sec,
        sync.backoff_latency_ms
    );
    println!(
        "K = {} keys, K_small = {}, {} divergent keys, {} round(s), {VALUE_BYTES}-byte values{}",
        grouped(s.keys),
        grouped(s.small_keys),
        grouped(s.divergent),
        s.rounds,
        if s.full {
            ""
        } else {
            " (smoke run: no --bench argument)"
        }
    );
    let mut loads = Vec::new();
    let mut idle = Vec::new();
    let mut divergence = Vec::new();

    let secs = load(app, &conns, 0..s.small_keys, s.load[0]).await?;
    println!(
        "loaded {} versioned keys on every node with {} in {secs:.1} s",
        grouped(s.small_keys),
        s.load[0].describe()
    );
    loads.push((s.small_keys, s.load[0], secs));
    settle(app).await?;
    idle.push(idle_cost(app, &conns, s.small_keys, s).await?);
    divergence.push(divergence_cost(app, &conns, s.small_keys, s, 1).await?);
    let impact = client_impact(app, &conns, s.small_keys, s).await?;
    settle(app).await?;

    if s.keys > s.small_keys {
        let secs = load(app, &conns, s.small_keys..s.keys, s.load[1]).await?;
        println!(
            "loaded {} more versioned keys on every node with {} in {secs:.1} s",
            grouped(s.keys - s.small_keys),
            s.load[1].describe()
        );
        loads.push((s.keys - s.small_keys, s.load[1], secs));
        settle(app).await?;
        idle.push(idle_cost(app, &conns, s.keys, s).await?);
        divergence.push(divergence_cost(app, &conns, s.keys, s, 2).await?);
    }
    // 1,000,000 keys and their metadata hashes are 1,069,635 keys, just past 2^20: the nodes
    // would still be moving a million entries into a table twice the size when the heal
    // starts, and the heal would pay for the bench's own load.
    tables_settled(&conns).await?;
    let heal = heal_vs_full_sync(app, &conns, ports, s.keys, s, pids).await?;
    Ok(Results {
        buckets: app.store().settings().layout.buckets as usize,
        load: loads,
        idle,
        divergence,
        heal,
        impact,
    })
}

// ---------------------------------------------------------------------------------------------
// The report.

struct Row {
    measurement: String,
    keys: String,
    quorumd: String,
    baseline: String,
    ratio: String,
    target: String,
    verdict: &'static str,
}

const HEADER: [&str; 7] = [
    "measurement",
    "keys",
    "quorumd",
    "baseline",
    "ratio",
    "target",
    "met",
];

fn verdict(ok: bool) -> &'static str {
    if ok { "yes" } else { "NO" }
}

fn rows(r: &Results, s: &Settings) -> Vec<Row> {
    let mut out = Vec::new();
    let h = &r.heal;
    let heal_ratio = h.heal_s / h.sync_s;
    out.push(Row {
        measurement: format!("heal: 1 exchange after FLUSHALL of node {STALE}"),
        keys: grouped(h.keys),
        quorumd: format!("{:.2} s", h.heal_s),
        baseline: format!("redis full sync {:.2} s", h.sync_s),
        ratio: format!("{heal_ratio:.2}×"),
        target: "≤ 2×".into(),
        verdict: verdict(heal_ratio <= 2.0),
    });
    let base_idle = &r.idle[0];
    for i in &r.idle {
        let is_base = std::ptr::eq(i, base_idle);
        let ratio = i.ms / base_idle.ms;
        out.push(Row {
            measurement: "idle exchange, all in sync".into(),
            keys: grouped(i.keys),
            quorumd: format!(
                "{:.2} ms, {:.1} KiB read",
                i.ms,
                i.wire_bytes as f64 / 1024.0
            ),
            baseline: if is_base {
                "(baseline for flatness)".into()
            } else {
                format!("{:.2} ms at {}", base_idle.ms, grouped(base_idle.keys))
            },
            ratio: if is_base {
                "-".into()
            } else {
                format!("{ratio:.2}×")
            },
            target: if is_base {
                "< 50 ms".into()
            } else {
                "< 50 ms, flat (≈1×)".into()
            },
            verdict: verdict(i.ms < 50.0 && (is_base || ratio < 1.5)),
        });
    }
    let base_div = &r.divergence[0];
    for d in &r.divergence {
        let is_base = std::ptr::eq(d, base_div);
        let ratio = d.ms / base_div.ms;
        let k_ratio = d.keys as f64 / base_div.keys as f64;
        out.push(Row {
            measurement: format!(
                "repair {} divergent keys (1 exchange)",
                grouped(s.divergent)
            ),
            keys: grouped(d.keys),
            quorumd: format!("{:.1} ms ({} buckets)", d.ms, d.buckets),
            baseline: if is_base {
                "(baseline)".into()
            } else {
                format!("{:.1} ms at {}", base_div.ms, grouped(base_div.keys))
            },
            ratio: if is_base {
                "-".into()
            } else {
                format!("{ratio:.2}×")
            },
            target: if is_base {
                "∝ divergence".into()
            } else {
                format!("≈1×, not ∝ K ({k_ratio:.0}×)")
            },
            verdict: if is_base { "-" } else { verdict(ratio < 2.0) },
        });
    }
    let im = &r.impact;
    let drop = 100.0 * (1.0 - im.sweeping[0] / im.idle[0]);
    out.push(Row {
        measurement: format!(
            "quorum PUT over HTTP, {} clients, full sweep looping",
            s.concurrency
        ),
        keys: grouped(im.keys),
        quorumd: format!(
            "{:.0} ops/s (p50 {:.0} µs, p99 {:.0} µs)",
            im.sweeping[0], im.sweeping[1], im.sweeping[2]
        ),
        baseline: format!(
            "no sweep {:.0} ops/s (p50 {:.0} µs, p99 {:.0} µs)",
            im.idle[0], im.idle[1], im.idle[2]
        ),
        // A negative drop (faster while sweeping: noise) reads as a gain, not as "−-x%".
        ratio: if drop >= 0.0 {
            format!("−{drop:.1}%")
        } else {
            format!("+{:.1}%", -drop)
        },
        target: "< 10% drop".into(),
        verdict: verdict(drop < 10.0),
    });
    out
}

fn cells(r: &Row) -> [String; 7] {
    [
        r.measurement.clone(),
        r.keys.clone(),
        r.quorumd.clone(),
        r.baseline.clone(),
        r.ratio.clone(),
        r.target.clone(),
        r.verdict.to_string(),
    ]
}

/// The figures (keys and ratio) right; the rest left.
const ALIGN: [Align; 7] = [
    Align::Left,
    Align::Right,
    Align::Left,
    Align::Left,
    Align::Right,
    Align::Left,
    Align::Left,
];

fn body(rows: &[Row]) -> Vec<[String; 7]> {
    rows.iter().map(cells).collect()
}

fn notes(r: &Results) -> String {
    let mut n = String::from(
        "Where the time goes: CPU seconds over the timed stretch (\"this process\" is the \
         in-process service, plus the bench's HTTP client in client-impact windows), each node's \
         CPU and its busiest commands (time/calls, from INFO commandstats), and the share of \
         all cores the lot kept busy.\n\n",
    );
    for (count, method, secs) in &r.load {
        let _ = writeln!(
            n,
            "- loading {} keys: {} in {secs:.1} s ({:.0} keys/s)",
            grouped(*count),
            method.describe(),
            *count as f64 / secs
        );
    }
    let h = &r.heal;
    let _ = writeln!(
        n,
        "- heal: {} of {} buckets mismatched; redis full sync copied {} keys (values, \
         metadata hashes and digests: the same data set)",
        h.buckets,
        r.buckets,
        grouped(h.replicated_keys as usize)
    );
    for (i, sample) in h.samples.iter().enumerate() {
        let _ = writeln!(n, "- heal round {}: {}", i + 1, sample.usage.breakdown());
    }
    for i in &r.idle {
        let _ = writeln!(
            n,
            "- idle at {} keys: digest hashes read {} B over the wire ({} B of fields and values), \
             summed over {NODES} nodes; last round's {} exchanges: {}",
            grouped(i.keys),
            i.wire_bytes,
            i.payload_bytes,
            i.reps,
            i.usage.breakdown()
        );
    }
    for d in &r.divergence {
        let _ = writeln!(
            n,
            "- divergence at {} keys ({} buckets and {} sub-buckets mismatched, ~{} metadata \
             entries per bucket, {} metadata entries read), last round: {}",
            grouped(d.keys),
            d.buckets,
            d.sub_buckets,
            d.keys / r.buckets,
            grouped(d.entries_read as usize),
            d.usage.breakdown()
        );
    }
    let im = &r.impact;
    let _ = writeln!(
        n,
        "- client impact: {} full sweeps finished during the sweep windows ({} sweep errors), {:.0} keys scanned/s; \
         CPU cores busy (this process / redis nodes): no sweep {:.2} / {:.2}, sweeping {:.2} / {:.2}",
        im.sweeps_finished,
        im.sweep_errors,
        im.scanned_per_s,
        im.cpu[0][0],
        im.cpu[0][1],
        im.cpu[1][0],
        im.cpu[1][1]
    );
    for (what, u) in ["no sweep", "full sweep looping"].iter().zip(&im.usage) {
        let _ = writeln!(
            n,
            "- client impact, last window with {what}: {}",
            u.breakdown()
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
        let _ = writeln!(n, "- the service logged {warnings} warnings; first:{first}");
    }
    n
}

/// The printed report, and whether the run must fail.
fn report(r: &Results, s: &Settings) -> Result<(String, bool), String> {
    let rows = rows(r, s);
    let notes = notes(r);
    let mut fatal = false;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nMedians over {} round(s); each ratio is quorumd ÷ its baseline from the same run:\n",
        s.rounds
    );
    out.push_str(&text_table(&HEADER, &ALIGN, &body(&rows)));
    out.push('\n');
    out.push_str(&notes);
    let im = &r.impact;
    let rate = im.errors as f64 / (im.ok + im.errors).max(1) as f64;
    if im.errors > 0 || im.ok == 0 {
        let _ = writeln!(
            out,
            "\n!!! PUT errors: {} of {} ({:.2}%){}; first: {}",
            im.errors,
            im.ok + im.errors,
            100.0 * rate,
            if rate > MAX_ERROR_RATE {
                " — ABOVE THE 1% LIMIT, the run fails"
            } else {
                ""
            },
            im.first_error.as_deref().unwrap_or("-")
        );
        fatal |= rate > MAX_ERROR_RATE || im.ok == 0;
    }
    if s.full {
        let md = format!(
            "# sync benchmark\n\n\
             Anti-entropy of quorumd (3 local redis-server {} nodes, in-process service, sweeps \
             run on demand) against baselines measured in the same run.\n\n\
             - {} rounds; K = {} keys, K_small = {}, {} divergent keys, {VALUE_BYTES}-byte \
             values, {} CPU(s)\n\
             - figures are medians over rounds; ratios are quorumd ÷ baseline of those medians\n\n\
             {}\n{}",
            redis_version(),
            s.rounds,
            grouped(s.keys),
            grouped(s.small_keys),
            grouped(s.divergent),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            markdown_table(&HEADER, &ALIGN, &body(&rows)),
            notes
        );
        match write_report("sync.md", &md) {
            Ok(path) => {
                let _ = writeln!(out, "\nwritten to {}", path.display());
            }
            Err(e) => {
                eprintln!("sync bench: FAILED: {e}");
                fatal = true;
            }
        }
    }
    Ok((out, fatal))
}
