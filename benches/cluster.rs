//! `make bench`: replicas that are Redis Clusters (issue 15), each figure beside a baseline
//! measured in the same run.
//!
//! 1. **Heal of one wiped shard.** K keys are written through quorumd over three clusters of
//!    three masters. One master of replica 1 is flushed, and digest exchanges run (throttles
//!    off) until it holds all its keys again and an exchange finds nothing divergent.
//!    Baseline: that shard's own Redis replication, a fresh `redis-server` doing `REPLICAOF`
//!    (diskless, no delay) of the master that owns the same slots in replica 0, until its link
//!    is up with every key. Target: at most 2×. Printed per exchange: what it did and the
//!    victim's key count; per heal: the CPU of this process (quorumd) and of every server and
//!    the servers' time per command; per `REPLICAOF`: the CPU of source and replica.
//! 2. **Throughput with 1 and with 3 shards per replica.** `SET` then `GET` of 100-byte values
//!    on `BENCH_KEYS` keys through quorumd's Redis-protocol front end, `BENCH_CONCURRENCY`
//!    clients for `BENCH_SECONDS` each, over three standalone servers and over three clusters
//!    of three masters, both under the slot placement, rounds interleaved. On two cores the
//!    rates say little about sharding, so the table gives CPU per operation (this process:
//!    quorumd and the clients; and every redis-server), and after the run the keys and memory
//!    of each master: they divide across the shards.
//! 3. **Idle exchange and memory per key on standalone servers, `xxh3` beside `slot`.** Three
//!    standalone servers per placement, each with its own quorumd, loaded with the same
//!    100-byte values (APPLY batches on every node) to K_small and then K keys; at each count,
//!    rounds of 7 exchanges with every node in sync, the placements alternating round by
//!    round (target under 50 ms, flat in K). Printed per round: the median, quorumd's CPU per
//!    exchange and the servers' time per exchange by command (`INFO commandstats`). At each
//!    count, the metadata bytes per key on each placement's first server: its `used_memory`
//!    growth minus that of a fourth server given the same keys as plain `SET`s, divided by the
//!    keys (as `benches/direct.rs` measures it; target at most 50 B/key).
//! 4. **Memory per key on 3-master clusters**: the same, over the three masters of the first
//!    cluster replica (the clusters flushed first), against a plain 3-master cluster given the
//!    same keys as plain `SET`s, each to the master that owns its slot. With those keys loaded,
//!    a round of idle exchanges over the three clusters (median, and quorumd's CPU per
//!    exchange; target under 50 ms).
//!
//! Environment: `CLUSTER_BENCH_KEYS` = K (default 100,000), `BENCH_ROUNDS` (default 3),
//! `BENCH_SECONDS` (3), `BENCH_CONCURRENCY` (32), `BENCH_KEYS` (10,000),
//! `CLUSTER_BENCH_IDLE_SMALL_KEYS` and `CLUSTER_BENCH_IDLE_KEYS` (K_small and K of part 3,
//! default 100,000 and 1,000,000), `CLUSTER_BENCH_MEMORY_KEYS` (part 4, default 100,000),
//! `CLUSTER_BENCH_PARTS` (a comma-separated subset of `heal,throughput,idle,memory`, default
//! all), `CLUSTER_BENCH_SUB_BUCKETS` (`sub_buckets` of every quorumd; default 0, the
//! placement's own). Under `cargo test
//! --all-targets` (no `--bench`) a smoke pass runs (small K, one short round) and writes no
//! report. The exit status is non-zero when a heal leaves keys missing, a sweep reports
//! errors, or an operation fails.

/// The allocator the shipped binary uses (`src/main.rs`), so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use quorumd::app::App;
use quorumd::config::Config;
use quorumd::devcluster::{DevCluster, RedisProcess};
use quorumd::layout::Scheme;
use quorumd::sync::{SweepMode, SweepRequest, SweepTrigger};
use quorumd_testkit::bench as support;
use redis::aio::MultiplexedConnection;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{
    Align, apply_versioned, closed_loop, command, commandstats, direct, env_number, full_run,
    grouped, info, info_field, median, process_cpu_s, redis_cpu_s, setup, shut_down, start_app,
    tables_settled, timed_settings, used_memory,
};

const MASTERS: usize = 3;
const VALUE: [u8; 100] = [b'v'; 100];

struct Settings {
    /// Which parts run: `heal`, `throughput`, `idle` (idle exchange and memory on standalone
    /// servers), `memory` (memory on clusters).
    parts: Vec<String>,
    heal_keys: u64,
    idle_small: u64,
    idle_keys: u64,
    idle_reps: usize,
    memory_keys: u64,
    rounds: usize,
    seconds: f64,
    clients: usize,
    keys: u64,
    /// `sub_buckets` of every quorumd: the operator's memory lever, so that counts can be
    /// compared in one binary (0: the placement's own).
    sub_buckets: u32,
}

impl Settings {
    fn runs(&self, part: &str) -> bool {
        self.parts.iter().any(|p| p == part)
    }

    fn from_env() -> Result<Settings, String> {
        let (clients, seconds, rounds) = timed_settings()?;
        let heal_keys = env_number("CLUSTER_BENCH_KEYS", 100_000u64)?;
        let keys = env_number("BENCH_KEYS", 10_000u64)?;
        if heal_keys == 0 || keys == 0 {
            return Err("CLUSTER_BENCH_KEYS and BENCH_KEYS must be at least 1".into());
        }
        let parts: Vec<String> = std::env::var("CLUSTER_BENCH_PARTS")
            .unwrap_or_else(|_| "heal,throughput,idle,memory".into())
            .split(',')
            .map(|p| p.trim().to_string())
            .collect();
        if let Some(p) = parts
            .iter()
            .find(|p| !["heal", "throughput", "idle", "memory"].contains(&p.as_str()))
        {
            return Err(format!(
                "CLUSTER_BENCH_PARTS: unknown part {p:?} (heal, throughput, idle, memory)"
            ));
        }
        let idle_keys = env_number("CLUSTER_BENCH_IDLE_KEYS", 1_000_000u64)?;
        let idle_small = env_number("CLUSTER_BENCH_IDLE_SMALL_KEYS", 100_000u64)?.min(idle_keys);
        let memory_keys = env_number("CLUSTER_BENCH_MEMORY_KEYS", 100_000u64)?;
        let sub_buckets = env_number("CLUSTER_BENCH_SUB_BUCKETS", 0u32)?;
        if idle_small == 0 || memory_keys == 0 {
            return Err(
                "CLUSTER_BENCH_IDLE_KEYS, CLUSTER_BENCH_IDLE_SMALL_KEYS and \
                 CLUSTER_BENCH_MEMORY_KEYS must be at least 1"
                    .into(),
            );
        }
        Ok(if full_run() {
            Settings {
                parts,
                heal_keys,
                idle_small,
                idle_keys,
                idle_reps: 7,
                memory_keys,
                rounds,
                seconds,
                clients,
                keys,
                sub_buckets,
            }
        } else {
            Settings {
                parts,
                heal_keys: 600,
                idle_small: 300,
                idle_keys: 600,
                idle_reps: 2,
                memory_keys: 600,
                rounds: 1,
                seconds: 0.3,
                clients: clients.min(4),
                keys: 200,
                sub_buckets,
            }
        })
    }
}

fn config(nodes: Vec<String>, s: &Settings) -> Config {
    let mut cfg = Config {
        nodes,
        ..Config::default()
    };
    cfg.placement = Scheme::Slot;
    cfg.sub_buckets = s.sub_buckets;
    cfg.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.resp.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    // Nothing in the background: every sweep is one the bench runs and times.
    cfg.sync.exchange_interval_ms = 0;
    cfg.sync.full_sweep_cron = String::new();
    cfg.sync.max_repairs_per_sec = 0;
    cfg.sync.max_scan_keys_per_sec = 0;
    cfg.sync.in_flight_window_ms = 0;
    // Two shared cores: a node may answer late under load without being down.
    cfg.timeouts.node_ms = 5_000;
    cfg.timeouts.request_ms = 10_000;
    cfg
}

async fn dbsize(c: &MultiplexedConnection) -> Result<u64, String> {
    command(c, &redis::cmd("DBSIZE")).await
}

async fn exchange(app: &App) -> Result<quorumd::sync::SweepReport, String> {
    let r = app
        .sweeper()
        .run(SweepRequest::new(SweepMode::Exchange, SweepTrigger::Test))
        .await
        .map_err(|e| format!("exchange: {e}"))?;
    if r.error_count > 0 {
        return Err(format!("exchange errors: {:?}", r.errors));
    }
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// 1. Heal of one wiped shard.

struct Heal {
    keys_on_shard: u64,
    heal_s: f64,
    exchanges: usize,
    replicaof_s: f64,
}

/// Flushes `victim` (a master of replica 1) and times the exchanges until it holds all its
/// keys again; one more exchange, untimed, must then find nothing divergent. Prints what each
/// exchange did, and the CPU time of this process (quorumd) and of every server over the
/// heal. With `CLUSTER_BENCH_EXPLAIN=1`, also the first keys the victim still lacks after
/// each exchange (a `SCAN` inside the timed stretch, so the time is not comparable then).
async fn heal_once(
    app: &App,
    victim: &MultiplexedConnection,
    servers: &[MultiplexedConnection],
) -> Result<(f64, usize), String> {
    let before = dbsize(victim).await?;
    let explain = std::env::var("CLUSTER_BENCH_EXPLAIN").is_ok_and(|v| v == "1");
    let held = if explain {
        keys_of(victim).await?
    } else {
        Default::default()
    };
    for c in servers {
        let _: () = command(c, redis::cmd("CONFIG").arg("RESETSTAT")).await?;
    }
    let _: () = command(victim, &redis::cmd("FLUSHALL")).await?;
    let (own0, nodes0) = (process_cpu_s(), nodes_cpu(servers).await?);
    let started = Instant::now();
    for n in 1..=20 {
        let r = exchange(app).await?;
        let now = dbsize(victim).await?;
        println!(
            "  exchange {n}: {:.3} s, {} buckets differing, {} copied whole, {} keys divergent; victim holds {now} of {before} keys",
            r.elapsed_s, r.buckets_mismatched, r.buckets_copied, r.keys_divergent
        );
        if explain && now < before {
            let lacking: Vec<String> = held
                .difference(&keys_of(victim).await?)
                .take(5)
                .cloned()
                .collect();
            println!("    lacking, first 5: {lacking:?}");
        }
        if now >= before {
            let took = started.elapsed().as_secs_f64();
            println!(
                "  CPU over the heal: quorumd {:.2} s, all servers {:.2} s",
                process_cpu_s() - own0,
                nodes_cpu(servers).await? - nodes0
            );
            // What the servers spent it on: per command over every server, most time first.
            let mut per: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
            for c in servers {
                for (name, calls, us) in commandstats(c).await? {
                    let e = per.entry(name).or_default();
                    e.0 += calls;
                    e.1 += us;
                }
            }
            let mut per: Vec<_> = per.into_iter().collect();
            per.sort_by_key(|(_, (_, us))| std::cmp::Reverse(*us));
            let top: Vec<String> = per
                .iter()
                .take(6)
                .map(|(name, (calls, us))| {
                    format!("{name} {calls} calls {:.3} s", *us as f64 / 1e6)
                })
                .collect();
            println!("  server time by command: {}", top.join("; "));
            let check = exchange(app).await?;
            if check.keys_divergent > 0 {
                return Err(format!(
                    "{} keys still divergent after the heal",
                    check.keys_divergent
                ));
            }
            return Ok((took, n));
        }
    }
    Err(format!(
        "the wiped shard holds {} of {before} keys after 20 exchanges",
        dbsize(victim).await?
    ))
}

/// Every key name on one server (`SCAN`).
async fn keys_of(c: &MultiplexedConnection) -> Result<std::collections::BTreeSet<String>, String> {
    let mut out = std::collections::BTreeSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) =
            command(c, redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(1000)).await?;
        out.extend(keys);
        if next == 0 {
            return Ok(out);
        }
        cursor = next;
    }
}

/// A fresh server's full sync from `source` (diskless, no delay), until it holds every key.
async fn replicaof_once(dir: &std::path::Path, source: &RedisProcess) -> Result<f64, String> {
    let src = direct(&source.url()).await?;
    let _: () = command(
        &src,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("repl-diskless-sync-delay")
            .arg(0),
    )
    .await?;
    let want = dbsize(&src).await?;
    let fresh = RedisProcess::start(dir, &[]).map_err(|e| e.to_string())?;
    let c = direct(&fresh.url()).await?;
    let cpu0 = [server_cpu_s(&src).await?, server_cpu_s(&c).await?];
    let started = Instant::now();
    let _: () = command(
        &c,
        redis::cmd("REPLICAOF").arg("127.0.0.1").arg(source.port()),
    )
    .await?;
    loop {
        let text = info(&c, "replication").await?;
        if info_field(&text, "master_link_status") == Some("up") && dbsize(&c).await? >= want {
            let took = started.elapsed().as_secs_f64();
            println!(
                "  REPLICAOF CPU: source {:.2} s (with its fork), replica {:.2} s",
                server_cpu_s(&src).await? - cpu0[0],
                server_cpu_s(&c).await? - cpu0[1]
            );
            return Ok(took);
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err("REPLICAOF did not finish within 120 s".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// CPU seconds of a server and of the children it reaped (the fork of a full sync).
async fn server_cpu_s(c: &MultiplexedConnection) -> Result<f64, String> {
    let text = info(c, "cpu").await?;
    let field = |n| {
        info_field(&text, n)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    Ok(field("used_cpu_user")
        + field("used_cpu_sys")
        + field("used_cpu_user_children")
        + field("used_cpu_sys_children"))
}

async fn heal(cluster: &DevCluster, app: &App, s: &Settings) -> Result<Heal, String> {
    println!(
        "writing {} keys through quorumd...",
        grouped(s.heal_keys as usize)
    );
    let written = quorumd::demo::seed(app.store(), s.heal_keys).await;
    if written != s.heal_keys {
        return Err(format!("wrote {written} of {} keys", s.heal_keys));
    }
    // Master 0 of each cluster owns the first third of the slots (`redis-cli` assigns them
    // in address order): replica 0's is the baseline's source, replica 1's the victim.
    let (source, victim) = (&cluster.nodes[0], &cluster.nodes[MASTERS]);
    let victim_conn = direct(&victim.url()).await?;
    let keys_on_shard = dbsize(&victim_conn).await?;
    let mut servers = Vec::new();
    for n in &cluster.nodes {
        servers.push(direct(&n.url()).await?);
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (mut heals, mut syncs, mut exchanges) = (Vec::new(), Vec::new(), 0);
    for round in 0..s.rounds {
        let (took, n) = heal_once(app, &victim_conn, &servers).await?;
        let sync = replicaof_once(dir.path(), source).await?;
        println!(
            "round {}/{}  wiped shard of {} keys healed in {:.2} s ({n} exchanges); REPLICAOF {:.2} s",
            round + 1,
            s.rounds,
            grouped(keys_on_shard as usize),
            took,
            sync
        );
        heals.push(took);
        syncs.push(sync);
        exchanges = n;
    }
    Ok(Heal {
        keys_on_shard,
        heal_s: median(&heals),
        exchanges,
        replicaof_s: median(&syncs),
    })
}

// ---------------------------------------------------------------------------------------------
// 2. Throughput with 1 and 3 shards per replica.

struct Setup {
    name: &'static str,
    app: App,
    /// One connection to every redis-server of every replica.
    servers: Vec<MultiplexedConnection>,
    clients: Arc<Vec<MultiplexedConnection>>,
}

#[derive(Default)]
struct Phase {
    ops_per_s: Vec<f64>,
    own_us: Vec<f64>,
    nodes_us: Vec<f64>,
}

async fn start_setup(
    name: &'static str,
    cluster: &DevCluster,
    nodes: Vec<String>,
    s: &Settings,
) -> Result<Setup, String> {
    let app = start_app(config(nodes, s)).await?;
    let resp = app.resp_addr().ok_or("resp listener disabled")?;
    let mut clients = Vec::new();
    for _ in 0..s.clients {
        clients.push(direct(&format!("redis://{resp}")).await?);
    }
    let mut servers = Vec::new();
    for n in &cluster.nodes {
        servers.push(direct(&n.url()).await?);
    }
    Ok(Setup {
        name,
        app,
        servers,
        clients: Arc::new(clients),
    })
}

async fn nodes_cpu(servers: &[MultiplexedConnection]) -> Result<f64, String> {
    let mut sum = 0.0;
    for c in servers {
        sum += redis_cpu_s(c).await?;
    }
    Ok(sum)
}

/// One timed stretch of `SET`s or `GET`s; returns (ops/s, µs of this process per op, µs of
/// the nodes per op).
async fn phase(
    setup: &Setup,
    set: bool,
    s: &Settings,
    seed: u64,
) -> Result<(f64, f64, f64), String> {
    let (own0, nodes0) = (process_cpu_s(), nodes_cpu(&setup.servers).await?);
    let sample = closed_loop(
        &setup.clients,
        s.clients,
        Duration::from_secs_f64(s.seconds),
        seed,
        s.keys,
        move |clients, key| async move {
            let mut c = clients[key % clients.len()].clone();
            let name = format!("bench:{key}");
            let result = if set {
                redis::cmd("SET")
                    .arg(&name)
                    .arg(&VALUE[..])
                    .query_async::<()>(&mut c)
                    .await
            } else {
                redis::cmd("GET")
                    .arg(&name)
                    .query_async::<Option<Vec<u8>>>(&mut c)
                    .await
                    .map(drop)
            };
            result.map_err(|e| format!("{}: {e}", if set { "SET" } else { "GET" }))
        },
    )
    .await;
    if sample.errors > 0 {
        return Err(format!(
            "{}: {} failed operations, first: {:?}",
            setup.name, sample.errors, sample.first_error
        ));
    }
    let ops = sample.ok.max(1) as f64;
    let own = (process_cpu_s() - own0) / ops * 1e6;
    let nodes = (nodes_cpu(&setup.servers).await? - nodes0) / ops * 1e6;
    Ok((sample.ops_per_s, own, nodes))
}

/// Keys and used memory of each server, after the run.
async fn spread(setup: &Setup) -> Result<Vec<(u64, u64)>, String> {
    let mut out = Vec::new();
    for c in &setup.servers {
        let text = info(c, "memory").await?;
        let used = info_field(&text, "used_memory")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        out.push((dbsize(c).await?, used));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// 3. Idle exchange and memory per key: standalone servers under each placement, and clusters.

const IDLE_VALUE_BYTES: usize = 100;
/// Keys per plain `SET` pipeline.
const RAW_BATCH: usize = 5000;

fn idle_key(i: u64) -> String {
    format!("idle:{i:07}")
}

fn idle_value(i: u64) -> Vec<u8> {
    let mut v = format!("{i:09}/").into_bytes();
    v.resize(IDLE_VALUE_BYTES, b'a' + (i % 26) as u8);
    v
}

/// Versioned entries for keys `range` on every node of `app`, by the APPLY script (what a
/// client write does on each node; split per slot on a cluster).
async fn load_versioned(app: &App, range: std::ops::Range<u64>) -> Result<(), String> {
    let store = app.store();
    let targets: Vec<usize> = (0..store.pool().len()).collect();
    let indices: Vec<usize> = (range.start as usize..range.end as usize).collect();
    let key = |i: usize| idle_key(i as u64);
    let value = |i: usize| idle_value(i as u64);
    apply_versioned(store, &targets, &indices, key, value).await?;
    Ok(())
}

/// The slots a cluster master owns, from its own line of `CLUSTER NODES`.
async fn own_slots(
    c: &MultiplexedConnection,
) -> Result<Vec<std::ops::RangeInclusive<u32>>, String> {
    let text: String = command(c, redis::cmd("CLUSTER").arg("NODES")).await?;
    let line = text
        .lines()
        .find(|l| l.contains("myself"))
        .ok_or("CLUSTER NODES has no myself line")?;
    let mut out = Vec::new();
    for field in line.split_whitespace().skip(8) {
        if field.starts_with('[') {
            continue;
        }
        let (a, b) = field.split_once('-').unwrap_or((field, field));
        let (a, b) = (a.parse::<u32>(), b.parse::<u32>());
        if let (Ok(a), Ok(b)) = (a, b) {
            out.push(a..=b);
        }
    }
    Ok(out)
}

/// Plain `SET`s of keys `range` (the same keys and values as `load_versioned`), on one server,
/// or on a cluster given its masters: each key to the master owning its slot.
async fn load_plain(
    masters: &[MultiplexedConnection],
    range: std::ops::Range<u64>,
) -> Result<(), String> {
    let owners = if masters.len() == 1 {
        vec![vec![0..=quorumd::layout::SLOTS - 1]]
    } else {
        let mut v = Vec::new();
        for m in masters {
            v.push(own_slots(m).await?);
        }
        v
    };
    let owner = |key: &str| {
        let slot = quorumd::layout::key_slot(key.as_bytes());
        owners
            .iter()
            .position(|rs| rs.iter().any(|r| r.contains(&slot)))
    };
    let mut start = range.start;
    while start < range.end {
        let end = (start + RAW_BATCH as u64).min(range.end);
        let mut pipes: Vec<redis::Pipeline> = masters.iter().map(|_| redis::pipe()).collect();
        for i in start..end {
            let k = idle_key(i);
            let m = owner(&k).ok_or_else(|| format!("no master owns the slot of {k}"))?;
            pipes[m].cmd("SET").arg(k).arg(idle_value(i)).ignore();
        }
        for (m, p) in masters.iter().zip(pipes) {
            let mut c = m.clone();
            p.query_async::<()>(&mut c)
                .await
                .map_err(|e| format!("SET pipeline: {e}"))?;
        }
        start = end;
    }
    Ok(())
}

async fn sum_used_memory(conns: &[MultiplexedConnection]) -> Result<u64, String> {
    let mut sum = 0;
    for c in conns {
        sum += used_memory(c).await?;
    }
    Ok(sum)
}

/// One placement's idle exchanges at one key count.
#[derive(Default)]
struct IdleSample {
    /// Median ms of the round's exchanges, per round.
    ms: Vec<f64>,
    /// quorumd's CPU per exchange, ms, per round.
    cpu_ms: Vec<f64>,
    /// The servers' time per exchange (µs, from `INFO commandstats`), per command, last round.
    server_us: Vec<(String, f64)>,
}

struct IdleSetup {
    name: &'static str,
    app: App,
    servers: Vec<MultiplexedConnection>,
}

/// `reps` exchanges with every node in sync: (median ms, quorumd CPU ms per exchange, server
/// µs per exchange by command).
async fn idle_round(
    setup: &IdleSetup,
    reps: usize,
) -> Result<(f64, f64, Vec<(String, f64)>), String> {
    for c in &setup.servers {
        let _: () = command(c, redis::cmd("CONFIG").arg("RESETSTAT")).await?;
    }
    let cpu0 = process_cpu_s();
    let mut ms = Vec::new();
    for _ in 0..reps {
        let started = Instant::now();
        let r = exchange(&setup.app).await?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
        if r.buckets_mismatched != 0 {
            return Err(format!(
                "{}: an idle exchange found {} mismatched buckets",
                setup.name, r.buckets_mismatched
            ));
        }
    }
    let cpu_ms = (process_cpu_s() - cpu0) * 1000.0 / reps as f64;
    let mut per: std::collections::BTreeMap<String, u64> = Default::default();
    for c in &setup.servers {
        for (name, _, us) in commandstats(c).await? {
            *per.entry(name).or_default() += us;
        }
    }
    let mut per: Vec<(String, f64)> = per
        .into_iter()
        .filter(|(n, _)| !n.starts_with("config") && !n.starts_with("info"))
        .map(|(n, us)| (n, us as f64 / reps as f64))
        .collect();
    per.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok((median(&ms), cpu_ms, per))
}

struct IdleResults {
    /// Per key count: (keys, [xxh3, slot] samples, [xxh3, slot, plain] used_memory growth).
    stages: Vec<(u64, [IdleSample; 2], [u64; 3])>,
}

async fn idle_and_memory(
    standalone: &[DevCluster; 3],
    s: &Settings,
) -> Result<IdleResults, String> {
    let mut setups = Vec::new();
    for (name, scheme, dc) in [
        ("xxh3", Scheme::Xxh3, &standalone[0]),
        ("slot", Scheme::Slot, &standalone[1]),
    ] {
        let mut cfg = config(dc.urls(), s);
        cfg.placement = scheme;
        // The load's APPLY batches of 1,000 entries on a node holding a million keys can take
        // over the 5 s node timeout on the shared cores (one run failed so): the timeouts bound
        // no measured figure here.
        cfg.timeouts.node_ms = 30_000;
        cfg.timeouts.request_ms = 60_000;
        let app = start_app(cfg).await?;
        let mut servers = Vec::new();
        for n in &dc.nodes {
            servers.push(direct(&n.url()).await?);
        }
        setups.push(IdleSetup { name, app, servers });
    }
    let plain = vec![direct(&standalone[2].nodes[0].url()).await?];
    // Memory is measured on the first server of each setup.
    let measured = [
        setups[0].servers[0].clone(),
        setups[1].servers[0].clone(),
        plain[0].clone(),
    ];
    let mut before = [0u64; 3];
    for (b, c) in before.iter_mut().zip(&measured) {
        *b = used_memory(c).await?;
    }
    let mut stages = Vec::new();
    let mut loaded = 0u64;
    let mut result = Ok(());
    for keys in [s.idle_small, s.idle_keys] {
        if keys <= loaded && !stages.is_empty() {
            break;
        }
        let started = Instant::now();
        for setup in &setups {
            if let Err(e) = load_versioned(&setup.app, loaded..keys).await {
                result = Err(e);
            }
        }
        if result.is_err() {
            break;
        }
        load_plain(&plain, loaded..keys).await?;
        loaded = keys;
        println!(
            "loaded {} keys on both placements and the plain server in {:.1} s",
            grouped(keys as usize),
            started.elapsed().as_secs_f64()
        );
        let all: Vec<MultiplexedConnection> = setups
            .iter()
            .flat_map(|s| s.servers.iter().cloned())
            .chain(plain.iter().cloned())
            .collect();
        tables_settled(&all).await?;
        let mut grown = [0u64; 3];
        for i in 0..3 {
            grown[i] = used_memory(&measured[i]).await?.saturating_sub(before[i]);
        }
        let mut samples: [IdleSample; 2] = Default::default();
        for round in 0..s.rounds {
            for (i, setup) in setups.iter().enumerate() {
                let (ms, cpu_ms, per) = idle_round(setup, s.idle_reps).await?;
                let top: Vec<String> = per
                    .iter()
                    .take(4)
                    .map(|(n, us)| format!("{n} {:.2} ms", us / 1000.0))
                    .collect();
                println!(
                    "round {}/{}  idle exchange, {} keys, {:<4}: median {ms:.2} ms of {}; quorumd CPU {cpu_ms:.2} ms; servers per exchange: {}",
                    round + 1,
                    s.rounds,
                    grouped(keys as usize),
                    setup.name,
                    s.idle_reps,
                    top.join(", ")
                );
                samples[i].ms.push(ms);
                samples[i].cpu_ms.push(cpu_ms);
                samples[i].server_us = per;
            }
        }
        stages.push((keys, samples, grown));
    }
    for setup in setups {
        shut_down(setup.app).await?;
    }
    result?;
    Ok(IdleResults { stages })
}

/// What part 4 measured.
struct ClusterMemory {
    /// `used_memory` growth of replica 0's masters with the versioned keys.
    versioned: u64,
    /// That of the plain cluster's masters with the same keys as plain `SET`s.
    plain: u64,
    /// Idle exchanges over the three clusters with the keys loaded: (median ms, quorumd CPU ms
    /// per exchange).
    idle: (f64, f64),
}

/// Memory per key on a 3-master cluster under the slot placement: `used_memory` of replica 0's
/// masters grown by K versioned keys, minus that of a plain cluster's masters grown by the same
/// keys as plain `SET`s; and, with the keys loaded, idle exchanges over the clusters (each
/// bucket digest read with one `GET` per slot, pipelined per master).
async fn cluster_memory(
    clusters: &DevCluster,
    urls: Vec<String>,
    plain: &DevCluster,
    s: &Settings,
) -> Result<ClusterMemory, String> {
    let keys = s.memory_keys;
    for server in &clusters.nodes {
        let _: () = command(&direct(&server.url()).await?, &redis::cmd("FLUSHALL")).await?;
    }
    let app = start_app(config(urls, s)).await?;
    let mut versioned = Vec::new();
    for n in &clusters.nodes[..MASTERS] {
        versioned.push(direct(&n.url()).await?);
    }
    let mut plain_masters = Vec::new();
    for n in &plain.nodes {
        plain_masters.push(direct(&n.url()).await?);
    }
    let before = [
        sum_used_memory(&versioned).await?,
        sum_used_memory(&plain_masters).await?,
    ];
    let started = Instant::now();
    let loaded = load_versioned(&app, 0..keys).await;
    let mut servers = Vec::new();
    for n in &clusters.nodes {
        servers.push(direct(&n.url()).await?);
    }
    let setup = IdleSetup {
        name: "3 clusters",
        app,
        servers,
    };
    let idle = match loaded {
        Ok(()) => idle_round(&setup, s.idle_reps).await,
        Err(e) => Err(e),
    };
    shut_down(setup.app).await?;
    let (idle_ms, idle_cpu_ms, _) = idle?;
    load_plain(&plain_masters, 0..keys).await?;
    println!(
        "loaded {} keys on the clusters and the plain cluster in {:.1} s; idle exchange over the clusters {idle_ms:.1} ms (quorumd CPU {idle_cpu_ms:.1} ms)",
        grouped(keys as usize),
        started.elapsed().as_secs_f64()
    );
    Ok(ClusterMemory {
        versioned: sum_used_memory(&versioned).await?.saturating_sub(before[0]),
        plain: sum_used_memory(&plain_masters)
            .await?
            .saturating_sub(before[1]),
        idle: (idle_ms, idle_cpu_ms),
    })
}

// ---------------------------------------------------------------------------------------------

fn main() -> ExitCode {
    let start = || -> Result<(DevCluster, Vec<String>, DevCluster), String> {
        let (clusters, urls) =
            DevCluster::start_clusters(3, MASTERS, 0).map_err(|e| e.to_string())?;
        let single = DevCluster::start(3).map_err(|e| e.to_string())?;
        Ok((clusters, urls, single))
    };
    let (s, (clusters, urls, single), runtime) =
        match setup("cluster bench", Settings::from_env, start) {
            Ok(v) => v,
            Err(code) => return code,
        };
    // The idle and memory parts' servers: three standalone servers per placement and one for
    // plain SETs (with DEBUG, to wait for their tables to settle), and a plain 3-master cluster.
    let extra = || -> Result<Extra, String> {
        let debug = &["--enable-debug-command", "local"];
        let standalone = if s.runs("idle") {
            Some([
                DevCluster::start_with(3, debug).map_err(|e| e.to_string())?,
                DevCluster::start_with(3, debug).map_err(|e| e.to_string())?,
                DevCluster::start_with(1, debug).map_err(|e| e.to_string())?,
            ])
        } else {
            None
        };
        let plain_cluster = if s.runs("memory") {
            Some(
                DevCluster::start_clusters(1, MASTERS, 0)
                    .map_err(|e| e.to_string())?
                    .0,
            )
        } else {
            None
        };
        Ok(Extra {
            standalone,
            plain_cluster,
        })
    };
    let extra = match extra() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cluster bench: cannot start the redis-server nodes: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&s, &clusters, urls, &single, &extra)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cluster bench: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Extra {
    standalone: Option<[DevCluster; 3]>,
    plain_cluster: Option<DevCluster>,
}

async fn run(
    s: &Settings,
    clusters: &DevCluster,
    urls: Vec<String>,
    single: &DevCluster,
    extra: &Extra,
) -> Result<(), String> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let row = |a: String, b: String, c: String, d: String, e: &str| vec![a, b, c, d, e.to_string()];
    if s.runs("heal") {
        // 1. Heal, on its own service (nothing else running).
        let app = start_app(config(urls.clone(), s)).await?;
        let heal = heal(clusters, &app, s).await;
        shut_down(app).await?;
        let heal = heal?;
        let ratio = heal.heal_s / heal.replicaof_s;
        rows.push(row(
            format!(
                "heal of a wiped shard ({} keys)",
                grouped(heal.keys_on_shard as usize)
            ),
            format!("{:.2} s ({} exchanges)", heal.heal_s, heal.exchanges),
            format!("REPLICAOF full sync: {:.2} s", heal.replicaof_s),
            format!("{ratio:.2}×"),
            "≤ 2×",
        ));
    }
    // The throughput part starts from empty clusters, so that their keys compare with the
    // standalone servers'.
    for server in &clusters.nodes {
        let _: () = command(&direct(&server.url()).await?, &redis::cmd("FLUSHALL")).await?;
    }

    if s.runs("throughput") {
        // 2. Throughput: both setups up, rounds interleaved.
        let one = start_setup("1 shard", single, single.urls(), s).await?;
        let three = start_setup("3 shards", clusters, urls.clone(), s).await?;
        // The GETs read keys the first SETs wrote.
        let mut results: Vec<[Phase; 2]> = vec![Default::default(), Default::default()];
        for round in 0..s.rounds {
            for (i, setup) in [&one, &three].into_iter().enumerate() {
                for (p, set) in [true, false].into_iter().enumerate() {
                    let (rate, own, nodes) = phase(setup, set, s, round as u64).await?;
                    println!(
                        "round {}/{}  {:<8} {}: {rate:>9.0} ops/s, CPU/op quorumd+clients {own:.1} µs, nodes {nodes:.1} µs",
                        round + 1,
                        s.rounds,
                        setup.name,
                        if set { "SET" } else { "GET" }
                    );
                    let r = &mut results[i][p];
                    r.ops_per_s.push(rate);
                    r.own_us.push(own);
                    r.nodes_us.push(nodes);
                }
            }
        }
        let spreads = [spread(&one).await?, spread(&three).await?];
        shut_down(one.app).await?;
        shut_down(three.app).await?;
        for (i, name) in ["1 shard", "3 shards"].into_iter().enumerate() {
            for (p, op) in ["SET", "GET"].into_iter().enumerate() {
                let r = &results[i][p];
                let base = &results[0][p];
                rows.push(row(
                    format!("RESP {op}, {name} per replica"),
                    format!(
                        "{:.0} ops/s; CPU/op {:.1} µs quorumd+clients, {:.1} µs nodes",
                        median(&r.ops_per_s),
                        median(&r.own_us),
                        median(&r.nodes_us)
                    ),
                    "1 shard".into(),
                    format!("{:.2}×", median(&r.ops_per_s) / median(&base.ops_per_s)),
                    "",
                ));
            }
        }
        for (i, name) in ["1 shard", "3 shards"].into_iter().enumerate() {
            let per: Vec<String> = spreads[i]
                .iter()
                .map(|(k, m)| format!("{k} keys / {:.1} MiB", *m as f64 / 1048576.0))
                .collect();
            rows.push(row(
                format!("keys and memory per server, {name}"),
                per.join("; "),
                String::new(),
                String::new(),
                "",
            ));
        }
    }

    if let Some(standalone) = &extra.standalone {
        // 3. Idle exchange and memory per key, standalone servers, both placements.
        let idle = idle_and_memory(standalone, s).await?;
        let base_ms = [
            median(&idle.stages[0].1[0].ms),
            median(&idle.stages[0].1[1].ms),
        ];
        for (keys, samples, grown) in &idle.stages {
            for (i, name) in ["xxh3", "slot"].into_iter().enumerate() {
                let ms = median(&samples[i].ms);
                let top: Vec<String> = samples[i]
                    .server_us
                    .iter()
                    .take(3)
                    .map(|(n, us)| format!("{n} {:.1} ms", us / 1000.0))
                    .collect();
                rows.push(row(
                    format!(
                        "idle exchange, 3 standalone servers, placement {name}, {} keys",
                        grouped(*keys as usize)
                    ),
                    format!(
                        "{ms:.1} ms; quorumd CPU {:.1} ms; servers: {}",
                        median(&samples[i].cpu_ms),
                        top.join(", ")
                    ),
                    if i == 1 {
                        format!("xxh3: {:.1} ms", median(&samples[0].ms))
                    } else {
                        String::new()
                    },
                    if *keys == idle.stages[0].0 {
                        if i == 1 {
                            format!("{:.2}× xxh3", ms / median(&samples[0].ms))
                        } else {
                            String::new()
                        }
                    } else {
                        format!(
                            "{:.2}× of {} keys",
                            ms / base_ms[i],
                            grouped(idle.stages[0].0 as usize)
                        )
                    },
                    "< 50 ms, flat",
                ));
            }
            let per_key = |i: usize| (grown[i] as f64 - grown[2] as f64) / *keys as f64;
            for (i, name) in ["xxh3", "slot"].into_iter().enumerate() {
                rows.push(row(
                    format!(
                        "metadata bytes per key, standalone, placement {name}, {} keys",
                        grouped(*keys as usize)
                    ),
                    format!("{:.1} B/key", per_key(i)),
                    format!(
                        "plain SET: {:.1} B/key in all",
                        grown[2] as f64 / *keys as f64
                    ),
                    String::new(),
                    "≤ 50 B/key",
                ));
            }
        }
    }

    if let Some(plain) = &extra.plain_cluster {
        // 4. Memory per key on 3-master clusters.
        let measured = cluster_memory(clusters, urls, plain, s).await?;
        let (versioned, plain_grown) = (measured.versioned, measured.plain);
        let k = s.memory_keys as f64;
        rows.push(row(
            format!(
                "idle exchange, 3 clusters of 3 masters, placement slot, {} keys",
                grouped(s.memory_keys as usize)
            ),
            format!(
                "{:.1} ms (quorumd CPU {:.1} ms)",
                measured.idle.0, measured.idle.1
            ),
            String::new(),
            String::new(),
            "< 50 ms",
        ));
        rows.push(row(
            format!(
                "metadata bytes per key, 3-master cluster, placement slot, {} keys",
                grouped(s.memory_keys as usize)
            ),
            format!("{:.1} B/key", (versioned as f64 - plain_grown as f64) / k),
            format!(
                "plain SET on a 3-master cluster: {:.1} B/key in all",
                plain_grown as f64 / k
            ),
            String::new(),
            "≤ 50 B/key",
        ));
    }

    let header = [
        "measurement",
        "quorumd",
        "baseline (same run)",
        "ratio",
        "target",
    ];
    let align = [Align::Left; 5];
    println!("\n{}", support::text_table(&header, &align, &rows));
    if full_run() {
        let md = format!(
            "# Cluster replicas\n\n{} rounds; parts {}; K = {} keys for the heal; {} clients, {} s a phase, {} keys; idle exchange at {} and {} keys, {} exchanges a round; cluster memory at {} keys; sub_buckets {} (0: the placement's own).\n\n{}",
            s.rounds,
            s.parts.join(","),
            s.heal_keys,
            s.clients,
            s.seconds,
            s.keys,
            s.idle_small,
            s.idle_keys,
            s.idle_reps,
            s.memory_keys,
            s.sub_buckets,
            support::markdown_table(&header, &align, &rows)
        );
        let path = support::write_report("cluster", &md)?;
        println!("report: {}", path.display());
    }
    Ok(())
}
