//! `make bench`: lock acquire+release pairs per second (p50, p99), uncontended and contended,
//! on 3 and 5 local redis-server nodes, beside a plain Redlock client against the same nodes in
//! the same run; and queue put+claim+ack per second.
//!
//! Baseline: neither the `redlock` nor the `rslock` crate is available offline with this
//! project's dependencies, so the baseline is a minimal direct Redlock loop on the `redis`
//! crate: `SET key token NX PX ttl` on every node at once, granted on a majority, released by a
//! compare-and-delete script, with the same retry pauses as quorumd. It issues no fences, so
//! the difference is the price of fencing (a script that also checks and sets the fence
//! counter, in the same round trip when the instance's fence hint is current) plus quorumd's
//! bookkeeping.
//! Both run in this process as library clients (no HTTP), so the comparison is like for like.
//!
//! Each row also has the CPU time per operation, medians over rounds: of this process (quorumd's
//! lock service, or the Redlock client, with the bench's own loop) from `getrusage`, and of the
//! nodes together from `INFO cpu`. The machine is shared and noisy; CPU per operation moves less
//! than throughput does.
//!
//! Workloads run `LOCK_BENCH_CLIENTS` (default 8) tasks for `LOCK_BENCH_SECONDS` (default 2)
//! per round, `LOCK_BENCH_ROUNDS` (default 5) rounds interleaved; the table shows medians over
//! rounds and goes to stdout and `target/bench/locks.md`. Without `--bench` (under
//! `cargo test --all-targets`) it runs one tiny round on 3 nodes and writes no report.

/// The allocator the shipped binary uses (`src/main.rs`), so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use quorumd_testkit::bench as support;

use quorumd::app::Core;
use quorumd::config::Config;
use quorumd::devcluster::DevCluster;
use quorumd::locks::LockService;
use quorumd::queue::QueueService;
use redis::aio::MultiplexedConnection;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{
    Align, env_number, markdown_table, median, percentile, process_cpu_s, redis_cpu_s,
    redis_version, write_report,
};

const TTL_MS: u64 = 2000;
const WAIT_MS: u64 = 10_000;

struct Settings {
    clients: usize,
    seconds: f64,
    rounds: usize,
    node_counts: Vec<usize>,
    full: bool,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let full = support::full_run();
        let clients = env_number("LOCK_BENCH_CLIENTS", 8usize)?;
        let seconds = env_number("LOCK_BENCH_SECONDS", 2.0f64)?;
        let rounds = env_number("LOCK_BENCH_ROUNDS", 5usize)?;
        if clients == 0 || rounds == 0 || !(seconds > 0.0 && seconds <= 600.0) {
            return Err("LOCK_BENCH_CLIENTS and _ROUNDS must be >= 1, _SECONDS in (0, 600]".into());
        }
        Ok(if full {
            Settings {
                clients,
                seconds,
                rounds,
                node_counts: vec![3, 5],
                full,
            }
        } else {
            Settings {
                clients: 2,
                seconds: 0.2,
                rounds: 1,
                node_counts: vec![3],
                full,
            }
        })
    }
}

/// The plain Redlock baseline: one connection per node.
struct Redlock {
    conns: Vec<MultiplexedConnection>,
}

const UNLOCK_LUA: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

impl Redlock {
    async fn connect(urls: &[String]) -> Redlock {
        let mut conns = Vec::new();
        for u in urls {
            let c = redis::Client::open(u.as_str()).expect("node url");
            conns.push(c.get_multiplexed_async_connection().await.expect("connect"));
        }
        Redlock { conns }
    }

    async fn acquire(&self, name: &str) -> Option<String> {
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
        let key = format!("bench:redlock:{name}");
        while Instant::now() < deadline {
            let token = format!("{:032x}", rand::random::<u128>());
            let started = Instant::now();
            let answers = futures::future::join_all(self.conns.iter().map(|c| {
                let mut c = c.clone();
                let (key, token) = (key.clone(), token.clone());
                async move {
                    redis::cmd("SET")
                        .arg(&key)
                        .arg(&token)
                        .arg("NX")
                        .arg("PX")
                        .arg(TTL_MS)
                        .query_async::<Option<String>>(&mut c)
                        .await
                }
            }))
            .await;
            let granted = answers.iter().filter(|a| matches!(a, Ok(Some(_)))).count();
            let drift = TTL_MS / 100 + 2;
            let elapsed = started.elapsed().as_millis() as u64;
            if granted > self.conns.len() / 2 && elapsed + drift < TTL_MS {
                return Some(token);
            }
            self.release(name, &token).await;
            tokio::time::sleep(Duration::from_millis(rand::random_range(5..=50))).await;
        }
        None
    }

    async fn release(&self, name: &str, token: &str) {
        let key = format!("bench:redlock:{name}");
        futures::future::join_all(self.conns.iter().map(|c| {
            let mut c = c.clone();
            let (key, token) = (key.clone(), token.to_string());
            async move {
                redis::Script::new(UNLOCK_LUA)
                    .key(&key)
                    .arg(&token)
                    .invoke_async::<i64>(&mut c)
                    .await
            }
        }))
        .await;
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    Quorumd { contended: bool },
    Redlock { contended: bool },
    Queue,
}

impl Workload {
    const ALL: [Workload; 5] = [
        Workload::Quorumd { contended: false },
        Workload::Redlock { contended: false },
        Workload::Quorumd { contended: true },
        Workload::Redlock { contended: true },
        Workload::Queue,
    ];

    fn name(self) -> String {
        let c = |contended| {
            if contended {
                "contended"
            } else {
                "uncontended"
            }
        };
        match self {
            Workload::Quorumd { contended } => format!("quorumd lock {}", c(contended)),
            Workload::Redlock { contended } => format!("plain Redlock {} (baseline)", c(contended)),
            Workload::Queue => "quorumd queue put+claim+ack".into(),
        }
    }

    fn baseline(self) -> Option<Workload> {
        match self {
            Workload::Quorumd { contended } => Some(Workload::Redlock { contended }),
            _ => None,
        }
    }
}

struct Bench {
    locks: Arc<LockService>,
    queues: Arc<QueueService>,
    redlock: Arc<Redlock>,
}

/// What one round of one workload measured.
struct RoundResult {
    ops: f64,
    /// Sorted latencies in µs.
    lat: Vec<u64>,
    errors: u64,
    /// CPU µs per completed operation: this process (quorumd or the Redlock client), and the
    /// nodes together.
    cpu_client_us: f64,
    cpu_nodes_us: f64,
}

/// CPU seconds the nodes have used, summed.
async fn nodes_cpu_s(b: &Bench) -> f64 {
    let mut total = 0.0;
    for c in &b.redlock.conns {
        total += redis_cpu_s(c).await.unwrap_or(f64::NAN);
    }
    total
}

/// One round of one workload.
async fn round(b: &Bench, w: Workload, s: &Settings, round: usize) -> RoundResult {
    let (client_before, nodes_before) = (process_cpu_s(), nodes_cpu_s(b).await);
    let until = Instant::now() + Duration::from_secs_f64(s.seconds);
    let tasks = (0..s.clients).map(|client| {
        let (locks, queues, redlock) = (b.locks.clone(), b.queues.clone(), b.redlock.clone());
        tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let name = match w {
                Workload::Quorumd { contended: true } | Workload::Redlock { contended: true } => {
                    format!("hot{round}")
                }
                _ => format!("c{client}r{round}"),
            };
            while Instant::now() < until {
                let t = Instant::now();
                let ok = match w {
                    Workload::Quorumd { .. } => {
                        match locks.acquire(&name, TTL_MS, WAIT_MS, "").await {
                            Ok(g) => locks.release(&name, &g.token).await.is_ok(),
                            Err(_) => false,
                        }
                    }
                    Workload::Redlock { .. } => match redlock.acquire(&name).await {
                        Some(token) => {
                            redlock.release(&name, &token).await;
                            true
                        }
                        None => false,
                    },
                    Workload::Queue => {
                        let put = queues.put(&name, "{\"n\":1}", 0, 0).await;
                        match (put, queues.claim(&name, TTL_MS, 0).await) {
                            (Ok(_), Ok(Some(item))) => {
                                queues.ack(&name, &item.id, &item.lease).await.is_ok()
                            }
                            _ => false,
                        }
                    }
                };
                if ok {
                    lat.push(t.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        })
    });
    let started = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in futures::future::join_all(tasks).await {
        let (lat, e) = t.expect("bench task");
        all.extend(lat);
        errors += e;
    }
    let ops = all.len() as f64 / started.elapsed().as_secs_f64();
    let per_op = |seconds: f64| seconds * 1e6 / all.len().max(1) as f64;
    let cpu_client_us = per_op(process_cpu_s() - client_before);
    let cpu_nodes_us = per_op(nodes_cpu_s(b).await - nodes_before);
    all.sort_unstable();
    RoundResult {
        ops,
        lat: all,
        errors,
        cpu_client_us,
        cpu_nodes_us,
    }
}

/// Per-round figures of one workload.
#[derive(Clone, Default)]
struct Samples {
    ops: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    cpu_client: Vec<f64>,
    cpu_nodes: Vec<f64>,
    errors: u64,
}

struct Row {
    nodes: usize,
    workload: Workload,
    ops: f64,
    p50: f64,
    p99: f64,
    cpu_client: f64,
    cpu_nodes: f64,
    errors: u64,
}

async fn run_cluster(n: usize, s: &Settings) -> Result<Vec<Row>, String> {
    let cluster = tokio::task::spawn_blocking(move || DevCluster::start(n))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let mut cfg = Config {
        nodes: cluster.urls(),
        ..Config::default()
    };
    cfg.sync.exchange_interval_ms = 0;
    cfg.sync.full_sweep_cron = String::new();
    let validated = cfg.clone().validate().map_err(|e| e.to_string())?;
    let core = Core::start(&validated).await.map_err(|e| e.to_string())?;
    let locks = LockService::new(
        core.store.pool().clone(),
        cfg.locks.clone(),
        &core.store.settings().layout,
    );
    let queues = QueueService::new(core.store.clone(), locks.clone(), cfg.queues.clone());
    let bench = Bench {
        locks,
        queues,
        redlock: Arc::new(Redlock::connect(&cluster.urls()).await),
    };
    let mut per: Vec<Samples> = vec![Samples::default(); Workload::ALL.len()];
    for r in 0..s.rounds {
        for k in 0..Workload::ALL.len() {
            let i = (k + r) % Workload::ALL.len();
            let got = round(&bench, Workload::ALL[i], s, r).await;
            per[i].ops.push(got.ops);
            per[i].p50.push(percentile(&got.lat, 0.50));
            per[i].p99.push(percentile(&got.lat, 0.99));
            per[i].cpu_client.push(got.cpu_client_us);
            per[i].cpu_nodes.push(got.cpu_nodes_us);
            per[i].errors += got.errors;
        }
    }
    core.store.pool().shutdown().await;
    drop(cluster);
    Ok(Workload::ALL
        .iter()
        .zip(per)
        .map(|(w, s)| Row {
            nodes: n,
            workload: *w,
            ops: median(&s.ops),
            p50: median(&s.p50),
            p99: median(&s.p99),
            cpu_client: median(&s.cpu_client),
            cpu_nodes: median(&s.cpu_nodes),
            errors: s.errors,
        })
        .collect())
}

fn table(rows: &[Row], s: &Settings) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} clients, {} s x {} rounds, ttl {TTL_MS} ms, redis {}\n",
        s.clients,
        s.seconds,
        s.rounds,
        redis_version()
    );
    let body: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            let base = r
                .workload
                .baseline()
                .and_then(|b| rows.iter().find(|x| x.nodes == r.nodes && x.workload == b));
            let (ratio_ops, ratio_p50) = match base {
                Some(b) => (
                    format!("{:.2}", r.ops / b.ops),
                    format!("{:.2}", r.p50 / b.p50),
                ),
                None => ("".into(), "".into()),
            };
            [
                r.nodes.to_string(),
                r.workload.name().to_string(),
                format!("{:.0}", r.ops),
                format!("{:.0}", r.p50),
                format!("{:.0}", r.p99),
                ratio_ops,
                ratio_p50,
                format!("{:.1}", r.cpu_client),
                format!("{:.1}", r.cpu_nodes),
                r.errors.to_string(),
            ]
        })
        .collect();
    let header = [
        "Nodes",
        "Workload",
        "ops/s",
        "p50 µs",
        "p99 µs",
        "ops/s ÷ baseline",
        "p50 ÷ baseline",
        "CPU µs/op, client",
        "CPU µs/op, nodes",
        "failed",
    ];
    let mut align = [Align::Right; 10];
    align[1] = Align::Left;
    out.push_str(&markdown_table(&header, &align, &body));
    out
}

fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if !quorumd::devcluster::redis_available() {
        eprintln!("redis-server not found: run scripts/ensure-deps.sh");
        return ExitCode::FAILURE;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut rows = Vec::new();
    for n in settings.node_counts.clone() {
        match rt.block_on(run_cluster(n, &settings)) {
            Ok(r) => rows.extend(r),
            Err(e) => {
                eprintln!("benchmark on {n} nodes failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let report = table(&rows, &settings);
    println!("{report}");
    if rows.iter().any(|r| r.ops == 0.0 || r.ops.is_nan()) {
        eprintln!("a workload completed no operation");
        return ExitCode::FAILURE;
    }
    if settings.full {
        let _ = write_report("locks.md", &report);
    }
    ExitCode::SUCCESS
}
