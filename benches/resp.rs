//! `make bench`: `redis-benchmark -t set,get,incr` against quorumd's RESP listener over three local
//! redis-server nodes, beside the same run against one redis-server directly, with and without
//! pipelining (`-P 16`), and GET from a single client (`-c 1`: the latency without queueing, whose
//! target is quorumd's p50 at most the direct p50 + 150 µs). INCR is quorumd's read-modify-write of a string integer under its
//! version (a quorum read, then a compare-and-set write), against Redis's INCR.
//!
//! Rounds interleave the targets (in a rotating order) so machine noise hits both alike. Per
//! workload the table shows the median over rounds of throughput, p50 and p99 as
//! redis-benchmark reports them (`--csv`), and the ratios quorumd / redis of those medians.
//! Each test runs as its own redis-benchmark process, so that the CPU time of every tier can be
//! divided by its requests: quorumd's (this process, which runs it), the three nodes' (`INFO
//! cpu`), redis-benchmark's (the ended child), and for the baseline the redis-server's. CPU per
//! operation moves far less with the machine's load than throughput does, and quorumd's
//! allocations per request (counted by this process's allocator) not at all.
//! The table goes to stdout and, as markdown, to `target/bench/resp.md`.
//!
//! quorumd runs with node and request timeouts of 5 s and 10 s (see `run`), so a saturated node
//! shows up as latency rather than as an error that would stop redis-benchmark.
//!
//! Environment: `BENCH_RESP_REQUESTS` per redis-benchmark run (default 100000),
//! `BENCH_RESP_CLIENTS` (default 50), `BENCH_ROUNDS` (default 5).
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it runs one tiny round instead and
//! writes no report. The exit status is non-zero when a redis-benchmark run fails, when
//! shutdown fails, or when a redis-server process outlives the run.

/// The allocator the shipped binary uses (`src/main.rs`), so the figures are the binary's; it
/// also counts quorumd's allocations per request.
#[global_allocator]
static ALLOCATOR: support::CountingAllocator = support::CountingAllocator;

use quorumd::config::Config;
use quorumd::devcluster::DevCluster;
use quorumd_testkit::bench as support;
use redis::aio::MultiplexedConnection;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use support::{
    Align, children_cpu_s, direct, env_number, markdown_table, median, process_cpu_s, redis_cpu_s,
    redis_version, setup, shut_down, start_app, still_running, write_report,
};

const NODES: usize = 3;
const VALUE_BYTES: usize = 100;
const KEYSPACE: usize = 100_000;
const PIPELINES: [usize; 2] = [1, 16];
/// The latency run: GET from one client, without pipelining (issue 16's target: quorumd's p50
/// at most the direct p50 + 150 µs).
const ONE_CLIENT: (&str, usize, usize) = ("get", 1, 1);
/// redis-benchmark's tests, each run on its own.
const TESTS: [&str; 3] = ["set", "get", "incr"];

#[derive(Clone, Copy)]
struct Settings {
    requests: usize,
    clients: usize,
    rounds: usize,
    full: bool,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let full = support::full_run();
        let requests = env_number("BENCH_RESP_REQUESTS", 100_000usize)?;
        let clients = env_number("BENCH_RESP_CLIENTS", 50usize)?;
        let rounds = env_number("BENCH_ROUNDS", 5usize)?;
        if requests == 0 || clients == 0 || rounds == 0 {
            return Err(
                "BENCH_RESP_REQUESTS, BENCH_RESP_CLIENTS and BENCH_ROUNDS must be at least 1"
                    .into(),
            );
        }
        Ok(if full {
            Settings {
                requests,
                clients,
                rounds,
                full,
            }
        } else {
            Settings {
                requests: 2_000,
                clients: 10,
                rounds: 1,
                full,
            }
        })
    }
}

/// One line of redis-benchmark's CSV output.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU µs per request of the server tier: quorumd, or the baseline redis-server.
    server_us: f64,
    /// CPU µs per request of quorumd's nodes together (0 for the baseline).
    nodes_us: f64,
    /// CPU µs per request of redis-benchmark.
    client_us: f64,
    /// Allocations per request in this process (quorumd's; 0 for the baseline).
    allocations: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Quorumd,
    Redis,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Quorumd => "quorumd (quorum, 3 nodes)",
            Target::Redis => "redis-server (baseline)",
        }
    }
}

/// Parses `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",
/// "p99_latency_ms","max_latency_ms"` rows.
fn parse_csv(out: &str) -> Result<BTreeMap<String, Sample>, String> {
    let mut rows = BTreeMap::new();
    for line in out.lines().filter(|l| !l.starts_with("\"test\"")) {
        let cells: Vec<&str> = line.split(',').map(|c| c.trim_matches('"')).collect();
        if cells.len() < 8 {
            continue;
        }
        let num = |i: usize| {
            cells[i]
                .parse::<f64>()
                .map_err(|_| format!("bad number {:?} in {line:?}", cells[i]))
        };
        rows.insert(
            cells[0].to_string(),
            Sample {
                rps: num(1)?,
                p50_ms: num(4)?,
                p99_ms: num(6)?,
                server_us: 0.0,
                nodes_us: 0.0,
                client_us: 0.0,
                allocations: 0.0,
            },
        );
    }
    if rows.is_empty() {
        return Err(format!("no CSV rows in redis-benchmark output: {out:?}"));
    }
    Ok(rows)
}

fn redis_benchmark(
    port: u16,
    (test, pipeline, clients): (&str, usize, usize),
    s: &Settings,
) -> Result<BTreeMap<String, Sample>, String> {
    let out = std::process::Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", test])
        .args(["-n", &s.requests.to_string(), "-c", &clients.to_string()])
        .args(["-d", &VALUE_BYTES.to_string(), "-r", &KEYSPACE.to_string()])
        .args(["-P", &pipeline.to_string(), "--csv"])
        .output()
        .map_err(|e| format!("cannot run redis-benchmark: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "redis-benchmark failed: {} {}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse_csv(&stdout)
}

/// Test name, pipeline depth, clients, target.
type Key = (String, usize, usize, Target);

/// The CPU seconds used so far by each tier a run can charge, and this process's allocations.
struct CpuMark {
    allocations: u64,
    process: f64,
    children: f64,
    nodes: f64,
    baseline: f64,
}

async fn cpu_mark(
    nodes: &[MultiplexedConnection],
    baseline: &MultiplexedConnection,
) -> Result<CpuMark, String> {
    let mut sum = 0.0;
    for n in nodes {
        sum += redis_cpu_s(n).await?;
    }
    Ok(CpuMark {
        allocations: support::allocations(),
        process: process_cpu_s(),
        children: children_cpu_s(),
        nodes: sum,
        baseline: redis_cpu_s(baseline).await?,
    })
}

/// Runs every round; samples per (test, pipeline, target).
async fn measure(
    quorumd: u16,
    redis: u16,
    nodes: &[MultiplexedConnection],
    baseline: &MultiplexedConnection,
    s: &Settings,
) -> Result<BTreeMap<Key, Vec<Sample>>, String> {
    let mut samples: BTreeMap<Key, Vec<Sample>> = BTreeMap::new();
    for round in 0..s.rounds {
        let mut order = [(Target::Quorumd, quorumd), (Target::Redis, redis)];
        if round % 2 == 1 {
            order.reverse();
        }
        let runs = PIPELINES
            .into_iter()
            .flat_map(|p| TESTS.map(|t| (t, p, s.clients)))
            .chain([ONE_CLIENT]);
        for run in runs {
            for (target, port) in order {
                let settings = *s;
                let before = cpu_mark(nodes, baseline).await?;
                let rows =
                    tokio::task::spawn_blocking(move || redis_benchmark(port, run, &settings))
                        .await
                        .map_err(|e| e.to_string())??;
                let after = cpu_mark(nodes, baseline).await?;
                let per_op = |used: f64| used * 1e6 / s.requests as f64;
                for (name, mut sample) in rows {
                    sample.client_us = per_op(after.children - before.children);
                    (sample.server_us, sample.nodes_us) = match target {
                        Target::Quorumd => (
                            per_op(after.process - before.process),
                            per_op(after.nodes - before.nodes),
                        ),
                        Target::Redis => (per_op(after.baseline - before.baseline), 0.0),
                    };
                    sample.allocations = match target {
                        Target::Quorumd => {
                            (after.allocations - before.allocations) as f64 / s.requests as f64
                        }
                        Target::Redis => 0.0,
                    };
                    samples
                        .entry((name, run.1, run.2, target))
                        .or_default()
                        .push(sample);
                }
            }
        }
        eprintln!("resp bench: round {} of {} done", round + 1, s.rounds);
    }
    Ok(samples)
}

struct Row {
    name: String,
    rps: f64,
    p50: f64,
    p99: f64,
    /// Median CPU µs per request: server tier, nodes, client.
    cpu: [f64; 3],
    /// Median allocations per request in quorumd.
    allocations: f64,
    ratios: Option<(f64, f64, f64)>,
}

fn rows(samples: &BTreeMap<Key, Vec<Sample>>) -> Vec<Row> {
    let med =
        |v: &[Sample], field: fn(&Sample) -> f64| median(&v.iter().map(field).collect::<Vec<_>>());
    let mut out = Vec::new();
    for ((test, pipeline, clients, target), v) in samples {
        let (rps, p50, p99) = (
            med(v, |x| x.rps),
            med(v, |x| x.p50_ms),
            med(v, |x| x.p99_ms),
        );
        let ratios = (*target == Target::Quorumd)
            .then(|| samples.get(&(test.clone(), *pipeline, *clients, Target::Redis)))
            .flatten()
            .map(|base| {
                (
                    rps / med(base, |x| x.rps),
                    p50 / med(base, |x| x.p50_ms),
                    p99 / med(base, |x| x.p99_ms),
                )
            });
        out.push(Row {
            name: format!("{test} -P {pipeline} -c {clients}: {}", target.name()),
            rps,
            p50,
            p99,
            cpu: [
                med(v, |x| x.server_us),
                med(v, |x| x.nodes_us),
                med(v, |x| x.client_us),
            ],
            allocations: med(v, |x| x.allocations),
            ratios,
        });
    }
    out
}

fn table(rows: &[Row]) -> String {
    let body: Vec<[String; 11]> = rows
        .iter()
        .map(|r| {
            let (a, b, c) = r
                .ratios
                .map_or(("".into(), "".into(), "".into()), |(a, b, c)| {
                    (format!("{a:.2}"), format!("{b:.2}"), format!("{c:.2}"))
                });
            [
                r.name.clone(),
                format!("{:.0}", r.rps),
                format!("{:.3}", r.p50),
                format!("{:.3}", r.p99),
                a,
                b,
                c,
                format!("{:.1}", r.cpu[0]),
                format!("{:.1}", r.cpu[1]),
                format!("{:.1}", r.cpu[2]),
                if r.allocations > 0.0 {
                    format!("{:.1}", r.allocations)
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    let header = [
        "workload",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "ops/s ratio",
        "p50 ratio",
        "p99 ratio",
        "server CPU µs/op",
        "nodes CPU µs/op",
        "client CPU µs/op",
        "quorumd allocs/op",
    ];
    let mut align = [Align::Right; 11];
    align[0] = Align::Left;
    markdown_table(&header, &align, &body)
}

async fn run(nodes: Vec<String>, redis_port: u16, s: &Settings) -> Result<String, String> {
    let node_urls = nodes.clone();
    let mut config = Config {
        nodes,
        ..Config::default()
    };
    config.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.resp.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    // redis-benchmark stops at the first error reply. With -P 16 and 50 clients, 800 commands
    // queue on nodes that share two cores with the client and quorumd: a node answering after
    // the default 500 ms would end the run instead of showing in p99.
    config.timeouts.node_ms = 5_000;
    config.timeouts.request_ms = 10_000;
    let app = start_app(config).await?;
    let port = app.resp_addr().ok_or("resp listener disabled")?.port();
    println!(
        "quorumd RESP on 127.0.0.1:{port} over {NODES} redis-server {} nodes; baseline redis-server on port {redis_port}",
        redis_version()
    );
    println!(
        "redis-benchmark -t {{{}}} -n {} -c {} -d {VALUE_BYTES} -r {KEYSPACE}, -P 1 and -P 16, and GET from one client, {} round(s){}",
        TESTS.join(","),
        s.requests,
        s.clients,
        s.rounds,
        if s.full {
            ""
        } else {
            " (smoke run: no --bench argument)"
        }
    );
    let connected = async {
        let mut conns = Vec::new();
        for url in &node_urls {
            conns.push(direct(url).await?);
        }
        let baseline = direct(&format!("redis://127.0.0.1:{redis_port}")).await?;
        Ok::<_, String>((conns, baseline))
    };
    let measured = match connected.await {
        Ok((conns, baseline)) => measure(port, redis_port, &conns, &baseline, s).await,
        Err(e) => Err(e),
    };
    let shutdown = shut_down(app).await;
    let samples = measured?;
    shutdown?;
    let mut report = format!(
        "\nMedians over {} round(s); ratios are quorumd ÷ redis of those medians. CPU µs/op: the \
         server tier (quorumd, or the baseline redis-server), quorumd's three nodes together, and \
         redis-benchmark; allocations per request in quorumd:\n\n",
        s.rounds
    );
    report.push_str(&table(&rows(&samples)));
    if s.full {
        let _ = write_report("resp.md", &report);
    }
    Ok(report)
}

fn main() -> ExitCode {
    let (settings, (cluster, baseline), runtime) = match setup(
        "resp bench",
        Settings::from_env,
        || -> Result<_, quorumd::devcluster::DevClusterError> {
            Ok((DevCluster::start(NODES)?, DevCluster::start(1)?))
        },
    ) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let pids: Vec<u32> = cluster
        .nodes
        .iter()
        .chain(&baseline.nodes)
        .filter_map(|n| n.pid())
        .collect();
    let outcome = runtime.block_on(run(cluster.urls(), baseline.nodes[0].port(), &settings));
    drop(runtime);
    drop(cluster);
    drop(baseline);
    let mut failed = false;
    match outcome {
        Ok(report) => print!("{report}"),
        Err(e) => {
            eprintln!("resp bench: FAILED: {e}");
            failed = true;
        }
    }
    let leftovers = still_running(pids);
    if !leftovers.is_empty() {
        eprintln!("resp bench: FAILED: redis-server processes still running: {leftovers:?}");
        failed = true;
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
