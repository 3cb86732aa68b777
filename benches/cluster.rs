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
//!
//! Environment: `CLUSTER_BENCH_KEYS` = K (default 100,000), `BENCH_ROUNDS` (default 3),
//! `BENCH_SECONDS` (3), `BENCH_CONCURRENCY` (32), `BENCH_KEYS` (10,000). Under `cargo test
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
    Align, closed_loop, command, commandstats, direct, env_number, full_run, grouped, info,
    info_field, median, process_cpu_s, redis_cpu_s, setup, shut_down, start_app, timed_settings,
};

const MASTERS: usize = 3;
const VALUE: [u8; 100] = [b'v'; 100];

struct Settings {
    heal_keys: u64,
    rounds: usize,
    seconds: f64,
    clients: usize,
    keys: u64,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let (clients, seconds, rounds) = timed_settings()?;
        let heal_keys = env_number("CLUSTER_BENCH_KEYS", 100_000u64)?;
        let keys = env_number("BENCH_KEYS", 10_000u64)?;
        if heal_keys == 0 || keys == 0 {
            return Err("CLUSTER_BENCH_KEYS and BENCH_KEYS must be at least 1".into());
        }
        Ok(if full_run() {
            Settings {
                heal_keys,
                rounds,
                seconds,
                clients,
                keys,
            }
        } else {
            Settings {
                heal_keys: 600,
                rounds: 1,
                seconds: 0.3,
                clients: clients.min(4),
                keys: 200,
            }
        })
    }
}

fn config(nodes: Vec<String>) -> Config {
    let mut cfg = Config {
        nodes,
        ..Config::default()
    };
    cfg.placement = Scheme::Slot;
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
    let app = start_app(config(nodes)).await?;
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
    match runtime.block_on(run(&s, &clusters, urls, &single)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cluster bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    s: &Settings,
    clusters: &DevCluster,
    urls: Vec<String>,
    single: &DevCluster,
) -> Result<(), String> {
    // 1. Heal, on its own service (nothing else running).
    let app = start_app(config(urls.clone())).await?;
    let heal = heal(clusters, &app, s).await;
    shut_down(app).await?;
    let heal = heal?;
    // The throughput part starts from empty clusters, so that their keys compare with the
    // standalone servers'.
    for server in &clusters.nodes {
        let _: () = command(&direct(&server.url()).await?, &redis::cmd("FLUSHALL")).await?;
    }

    // 2. Throughput: both setups up, rounds interleaved.
    let one = start_setup("1 shard", single, single.urls(), s).await?;
    let three = start_setup("3 shards", clusters, urls, s).await?;
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

    let ratio = heal.heal_s / heal.replicaof_s;
    let mut rows = vec![vec![
        format!(
            "heal of a wiped shard ({} keys)",
            grouped(heal.keys_on_shard as usize)
        ),
        format!("{:.2} s ({} exchanges)", heal.heal_s, heal.exchanges),
        format!("REPLICAOF full sync: {:.2} s", heal.replicaof_s),
        format!("{ratio:.2}×"),
        "≤ 2×".into(),
    ]];
    for (i, name) in ["1 shard", "3 shards"].into_iter().enumerate() {
        for (p, op) in ["SET", "GET"].into_iter().enumerate() {
            let r = &results[i][p];
            let base = &results[0][p];
            rows.push(vec![
                format!("RESP {op}, {name} per replica"),
                format!(
                    "{:.0} ops/s; CPU/op {:.1} µs quorumd+clients, {:.1} µs nodes",
                    median(&r.ops_per_s),
                    median(&r.own_us),
                    median(&r.nodes_us)
                ),
                "1 shard".into(),
                format!("{:.2}×", median(&r.ops_per_s) / median(&base.ops_per_s)),
                String::new(),
            ]);
        }
    }
    for (i, name) in ["1 shard", "3 shards"].into_iter().enumerate() {
        let per: Vec<String> = spreads[i]
            .iter()
            .map(|(k, m)| format!("{k} keys / {:.1} MiB", *m as f64 / 1048576.0))
            .collect();
        rows.push(vec![
            format!("keys and memory per server, {name}"),
            per.join("; "),
            String::new(),
            String::new(),
            String::new(),
        ]);
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
            "# Cluster replicas\n\n{} rounds; K = {} keys for the heal; {} clients, {} s a phase, {} keys.\n\n{}",
            s.rounds,
            s.heal_keys,
            s.clients,
            s.seconds,
            s.keys,
            support::markdown_table(&header, &align, &rows)
        );
        let path = support::write_report("cluster", &md)?;
        println!("report: {}", path.display());
    }
    Ok(())
}
