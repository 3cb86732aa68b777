//! `make bench`: quorum PUT and GET over HTTP with three local redis-server nodes, beside the
//! same SET / GET sent straight to one of those redis-servers in the same run, and beside the same
//! SET / GET through quorumd's own Redis-protocol listener (issue 16's target: HTTP at ≥ 0.5× of
//! RESP for the same operations and concurrency, so the HTTP layer is not where the time goes).
//!
//! Every workload runs at a fixed concurrency for a fixed time per round; rounds interleave the
//! workloads (in a rotating order) so machine noise hits all of them alike. Per workload the
//! table shows the median over rounds of throughput, p50 and p99, and the ratios
//! quorumd / baseline computed from those medians. The table goes to stdout and, as markdown,
//! to `target/bench/http_kv.md`.
//!
//! Environment: `BENCH_CONCURRENCY` (default 32), `BENCH_SECONDS` per workload per round
//! (default 3), `BENCH_ROUNDS` (default 5).
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it runs a short smoke round instead
//! and writes no report. The exit status is non-zero when any workload's error rate exceeds 1%,
//! when shutdown fails, or when a redis-server process outlives the run.

/// The allocator the shipped binary uses (`src/main.rs`), so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bytes::Bytes;
use quorumd::config::Config;
use quorumd::devcluster::DevCluster;
use quorumd_testkit::bench as support;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{
    Align, Sample, Tally, closed_loop, full_run, http_put, markdown_table, median, redis_version,
    setup, shut_down, start_app, still_running, text_table, timed_settings, write_report,
};

const NODES: usize = 3;
const VALUE_BYTES: usize = 100;
/// Largest acceptable share of failed operations per workload.
const MAX_ERROR_RATE: f64 = 0.01;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Quorum,
    Linearizable,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Quorum => "quorum",
            Level::Linearizable => "linearizable",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    HttpPut(Level),
    HttpGet(Level),
    /// SET / GET through quorumd's RESP listener (its default level, `quorum`).
    RespSet,
    RespGet,
    RedisSet,
    RedisGet,
}

impl Workload {
    /// Table order.
    const ALL: [Workload; 8] = [
        Workload::HttpPut(Level::Quorum),
        Workload::HttpGet(Level::Quorum),
        Workload::HttpPut(Level::Linearizable),
        Workload::HttpGet(Level::Linearizable),
        Workload::RespSet,
        Workload::RespGet,
        Workload::RedisSet,
        Workload::RedisGet,
    ];

    fn name(self) -> String {
        match self {
            Workload::HttpPut(l) => format!("quorumd PUT {}", l.as_str()),
            Workload::HttpGet(l) => format!("quorumd GET {}", l.as_str()),
            Workload::RespSet => "quorumd RESP SET quorum".into(),
            Workload::RespGet => "quorumd RESP GET quorum".into(),
            Workload::RedisSet => "redis SET (baseline)".into(),
            Workload::RedisGet => "redis GET (baseline)".into(),
        }
    }

    /// The redis workload this one is compared with; `None` for the baselines themselves.
    fn baseline(self) -> Option<Workload> {
        match self {
            Workload::HttpPut(_) | Workload::RespSet => Some(Workload::RedisSet),
            Workload::HttpGet(_) | Workload::RespGet => Some(Workload::RedisGet),
            Workload::RedisSet | Workload::RedisGet => None,
        }
    }

    /// The RESP workload an HTTP one at the same level is compared with.
    fn resp_peer(self) -> Option<Workload> {
        match self {
            Workload::HttpPut(Level::Quorum) => Some(Workload::RespSet),
            Workload::HttpGet(Level::Quorum) => Some(Workload::RespGet),
            _ => None,
        }
    }
}

struct Settings {
    concurrency: usize,
    seconds: f64,
    rounds: usize,
    keys: usize,
    warmup: Duration,
    /// False under `cargo test`: a smoke run, no report file.
    full: bool,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let full = full_run();
        let (concurrency, seconds, rounds) = timed_settings()?;
        if full {
            Ok(Settings {
                concurrency,
                seconds,
                rounds,
                keys: 10_000,
                warmup: Duration::from_secs_f64((seconds / 4.0).min(1.0)),
                full,
            })
        } else {
            Ok(Settings {
                concurrency: concurrency.min(8),
                seconds: 0.2,
                rounds: 1,
                keys: 500,
                warmup: Duration::ZERO,
                full,
            })
        }
    }
}

/// Everything the workers share.
struct Target {
    http: reqwest::Client,
    /// Per key, the quorumd URL at each level: `[quorum, linearizable]`.
    urls: Vec<[reqwest::Url; 2]>,
    redis: redis::aio::MultiplexedConnection,
    /// One connection per client to quorumd's RESP listener, each used by one request at a
    /// time as the HTTP client's pooled connections are (no pipelining across clients).
    resp: std::sync::Mutex<Vec<redis::aio::MultiplexedConnection>>,
    /// Per key, its name as the HTTP workloads write it, for the RESP workloads.
    resp_keys: Vec<String>,
    redis_keys: Vec<String>,
    value: Bytes,
}

/// One operation of `wl` on `key`.
async fn one_op(t: &Target, wl: Workload, key: usize) -> Result<(), String> {
    match wl {
        Workload::HttpPut(level) => {
            let url = t.urls[key][level as usize].clone();
            http_put(&t.http, url, t.value.clone()).await
        }
        Workload::HttpGet(level) => {
            let url = t.urls[key][level as usize].clone();
            match t.http.get(url).send().await {
                Ok(resp) => {
                    let status = resp.status();
                    match resp.bytes().await {
                        Ok(body) if status.is_success() && body.len() == VALUE_BYTES => Ok(()),
                        Ok(body) if status.is_success() => {
                            Err(format!("GET returned {} bytes", body.len()))
                        }
                        Ok(body) => Err(format!(
                            "GET {status}: {}",
                            String::from_utf8_lossy(&body[..body.len().min(200)])
                        )),
                        Err(e) => Err(format!("GET body: {e}")),
                    }
                }
                Err(e) => Err(format!("GET: {e}")),
            }
        }
        Workload::RespSet => {
            let conn = t.take_resp()?;
            let outcome = set(&conn, &t.resp_keys[key], &t.value).await;
            t.give_back_resp(conn);
            outcome
        }
        Workload::RespGet => {
            let conn = t.take_resp()?;
            let outcome = get(&conn, &t.resp_keys[key]).await;
            t.give_back_resp(conn);
            outcome
        }
        Workload::RedisSet => set(&t.redis, &t.redis_keys[key], &t.value).await,
        Workload::RedisGet => get(&t.redis, &t.redis_keys[key]).await,
    }
}

impl Target {
    fn take_resp(&self) -> Result<redis::aio::MultiplexedConnection, String> {
        let mut pool = self.resp.lock().map_err(|_| "RESP pool poisoned")?;
        pool.pop().ok_or_else(|| "no free RESP connection".into())
    }

    fn give_back_resp(&self, conn: redis::aio::MultiplexedConnection) {
        if let Ok(mut pool) = self.resp.lock() {
            pool.push(conn);
        }
    }
}

async fn set(
    conn: &redis::aio::MultiplexedConnection,
    key: &str,
    value: &[u8],
) -> Result<(), String> {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async::<()>(&mut conn.clone())
        .await
        .map_err(|e| format!("SET: {e}"))
}

async fn get(conn: &redis::aio::MultiplexedConnection, key: &str) -> Result<(), String> {
    match redis::cmd("GET")
        .arg(key)
        .query_async::<Option<Vec<u8>>>(&mut conn.clone())
        .await
    {
        Ok(Some(v)) if v.len() == VALUE_BYTES => Ok(()),
        Ok(Some(v)) => Err(format!("GET returned {} bytes", v.len())),
        Ok(None) => Err("GET: key missing".into()),
        Err(e) => Err(format!("GET: {e}")),
    }
}

/// Runs `wl` with `concurrency` clients until `duration` has passed.
async fn run_workload(
    t: &Arc<Target>,
    wl: Workload,
    concurrency: usize,
    duration: Duration,
    seed: u64,
) -> Sample {
    let keys = t.redis_keys.len() as u64;
    closed_loop(
        t,
        concurrency,
        duration,
        seed,
        keys,
        move |t, key| async move { one_op(&t, wl, key).await },
    )
    .await
}

/// Writes every key once, `concurrency` at a time.
async fn preload(t: &Arc<Target>, concurrency: usize) -> Result<(), String> {
    let keys = t.redis_keys.len();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let t = t.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                loop {
                    let key = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if key >= keys {
                        break;
                    }
                    for wl in [Workload::HttpPut(Level::Quorum), Workload::RedisSet] {
                        let started = Instant::now();
                        tally.record(started, one_op(&t, wl, key).await);
                    }
                }
                tally
            })
        })
        .collect();
    for w in workers {
        let tally = w.await.map_err(|e| format!("preload worker failed: {e}"))?;
        if let Some(e) = tally.first_error {
            return Err(format!("preload: {} errors, first: {e}", tally.errors));
        }
    }
    Ok(())
}

/// Per workload: every round's sample.
struct Results {
    samples: Vec<(Workload, Vec<Sample>)>,
}

struct Row {
    name: String,
    ops_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    ok: u64,
    errors: u64,
    /// throughput, p50, p99 ratios quorumd / baseline.
    ratios: Option<[f64; 3]>,
    /// Throughput ratio HTTP / RESP through quorumd, for the HTTP quorum workloads.
    over_resp: Option<f64>,
}

impl Results {
    fn of(&self, wl: Workload) -> &[Sample] {
        self.samples
            .iter()
            .find(|(w, _)| *w == wl)
            .map(|(_, s)| s.as_slice())
            .unwrap_or_default()
    }

    fn medians(&self, wl: Workload) -> [f64; 3] {
        let s = self.of(wl);
        [
            median(&s.iter().map(|x| x.ops_per_s).collect::<Vec<_>>()),
            median(&s.iter().map(|x| x.p50_us).collect::<Vec<_>>()),
            median(&s.iter().map(|x| x.p99_us).collect::<Vec<_>>()),
        ]
    }

    fn rows(&self) -> Vec<Row> {
        Workload::ALL
            .iter()
            .map(|&wl| {
                let [ops, p50, p99] = self.medians(wl);
                let ratios = wl.baseline().map(|b| {
                    let [bops, bp50, bp99] = self.medians(b);
                    [ops / bops, p50 / bp50, p99 / bp99]
                });
                let over_resp = wl.resp_peer().map(|p| ops / self.medians(p)[0]);
                Row {
                    name: wl.name(),
                    ops_per_s: ops,
                    p50_us: p50,
                    p99_us: p99,
                    ok: self.of(wl).iter().map(|s| s.ok).sum(),
                    errors: self.of(wl).iter().map(|s| s.errors).sum(),
                    ratios,
                    over_resp,
                }
            })
            .collect()
    }
}

fn error_rate(ok: u64, errors: u64) -> f64 {
    if ok + errors == 0 {
        1.0
    } else {
        errors as f64 / (ok + errors) as f64
    }
}

const HEADER: [&str; 9] = [
    "workload",
    "ops/s",
    "p50 µs",
    "p99 µs",
    "errors",
    "ops/s ÷ redis",
    "p50 ÷ redis",
    "p99 ÷ redis",
    "ops/s ÷ RESP",
];

fn body(rows: &[Row]) -> Vec<[String; 9]> {
    rows.iter().map(cells).collect()
}

fn cells(r: &Row) -> [String; 9] {
    let ratio = |i: usize| match r.ratios {
        Some(x) => format!("{:.3}", x[i]),
        None => "baseline".into(),
    };
    [
        r.name.clone(),
        format!("{:.0}", r.ops_per_s),
        format!("{:.0}", r.p50_us),
        format!("{:.0}", r.p99_us),
        if r.errors == 0 {
            "0".into()
        } else {
            format!("{} ({:.2}%)", r.errors, 100.0 * error_rate(r.ok, r.errors))
        },
        ratio(0),
        ratio(1),
        ratio(2),
        r.over_resp.map_or_else(String::new, |x| format!("{x:.3}")),
    ]
}

/// The measurement's name, left; the figures, right.
const ALIGN: [Align; 9] = [
    Align::Left,
    Align::Right,
    Align::Right,
    Align::Right,
    Align::Right,
    Align::Right,
    Align::Right,
    Align::Right,
    Align::Right,
];

async fn start_target(
    http_addr: SocketAddr,
    resp_addr: SocketAddr,
    redis_url: &str,
    s: &Settings,
) -> Result<Target, String> {
    let http = support::http_client(s.concurrency * 2)?;
    let base = format!("http://{http_addr}/v1/kv/");
    let urls = (0..s.keys)
        .map(|i| {
            let url = |level: Level| {
                reqwest::Url::parse(&format!(
                    "{base}bench:{i:05}?consistency={}",
                    level.as_str()
                ))
            };
            Ok::<_, String>([
                url(Level::Quorum).map_err(|e| e.to_string())?,
                url(Level::Linearizable).map_err(|e| e.to_string())?,
            ])
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("url: {e}"))?;
    // Distinct names: quorumd's own keys on the node are left alone.
    let redis_keys = (0..s.keys).map(|i| format!("raw:{i:05}")).collect();
    let redis = connect(redis_url).await?;
    let resp_url = format!("redis://{resp_addr}");
    let mut resp = Vec::with_capacity(s.concurrency);
    for _ in 0..s.concurrency {
        resp.push(connect(&resp_url).await?);
    }
    let resp_keys = (0..s.keys).map(|i| format!("bench:{i:05}")).collect();
    let value: Vec<u8> = (0..VALUE_BYTES).map(|i| b'a' + (i % 26) as u8).collect();
    Ok(Target {
        http,
        urls,
        redis,
        resp: std::sync::Mutex::new(resp),
        resp_keys,
        redis_keys,
        value: Bytes::from(value),
    })
}

async fn connect(url: &str) -> Result<redis::aio::MultiplexedConnection, String> {
    redis::Client::open(url)
        .map_err(|e| format!("redis client {url}: {e}"))?
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("redis connection {url}: {e}"))
}

/// Runs the whole measurement against a started app. Returns the results; never leaves
/// anything running (the caller shuts the app down).
async fn measure(
    http_addr: SocketAddr,
    resp_addr: SocketAddr,
    redis_url: &str,
    s: &Settings,
) -> Result<Results, String> {
    let t = Arc::new(start_target(http_addr, resp_addr, redis_url, s).await?);
    let started = Instant::now();
    preload(&t, s.concurrency).await?;
    println!(
        "preloaded {} keys × {VALUE_BYTES} B through quorumd and into redis in {:.1} s",
        s.keys,
        started.elapsed().as_secs_f64()
    );
    if !s.warmup.is_zero() {
        for (i, &wl) in Workload::ALL.iter().enumerate() {
            let _ = run_workload(&t, wl, s.concurrency, s.warmup, 0xfeed + i as u64).await;
        }
        println!("warmed up ({:?} per workload, discarded)", s.warmup);
    }
    let mut results = Results {
        samples: Workload::ALL.iter().map(|&w| (w, Vec::new())).collect(),
    };
    let duration = Duration::from_secs_f64(s.seconds);
    for round in 0..s.rounds {
        // Rotate the order each round so no workload always runs first or last.
        let n = Workload::ALL.len();
        for k in 0..n {
            let wl = Workload::ALL[(k + round) % n];
            let seed = ((round as u64) << 16) ^ (k as u64 + 1).wrapping_mul(0x5851_f42d);
            let sample = run_workload(&t, wl, s.concurrency, duration, seed).await;
            println!(
                "round {}/{}  {:<30} {:>9.0} ops/s  p50 {:>7.0} µs  p99 {:>7.0} µs{}",
                round + 1,
                s.rounds,
                wl.name(),
                sample.ops_per_s,
                sample.p50_us,
                sample.p99_us,
                if sample.errors > 0 {
                    format!("  ERRORS: {}", sample.errors)
                } else {
                    String::new()
                }
            );
            if let Some(e) = &sample.first_error {
                eprintln!("  first error in {}: {e}", wl.name());
            }
            if let Some((_, v)) = results.samples.iter_mut().find(|(w, _)| *w == wl) {
                v.push(sample);
            }
        }
    }
    Ok(results)
}

fn main() -> ExitCode {
    // The cluster is started on the main thread, which outlives everything: the servers are
    // also killed by the kernel (PDEATHSIG) if this process dies.
    let (settings, cluster, runtime) =
        match setup("http_kv", Settings::from_env, || DevCluster::start(NODES)) {
            Ok(started) => started,
            Err(code) => return code,
        };
    let pids: Vec<u32> = cluster.nodes.iter().filter_map(|n| n.pid()).collect();
    let urls = cluster.urls();
    let outcome = runtime.block_on(run(urls, &settings));
    drop(runtime);
    drop(cluster);
    let mut failed = false;
    let (report, fatal) = match outcome {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("http_kv: FAILED: {e}");
            (None, true)
        }
    };
    failed |= fatal;
    let leftovers = still_running(pids);
    if !leftovers.is_empty() {
        eprintln!("http_kv: FAILED: redis-server processes still running: {leftovers:?}");
        failed = true;
    }
    if let Some(report) = report {
        print!("{report}");
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Starts the app, measures, shuts the app down. Returns the printed report and whether the
/// run must fail.
async fn run(nodes: Vec<String>, s: &Settings) -> Result<(Option<String>, bool), String> {
    let mut config = Config {
        nodes: nodes.clone(),
        ..Config::default()
    };
    config.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.resp.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let app = start_app(config).await?;
    let http_addr = app.http_addr();
    println!(
        "quorumd on http://{http_addr}, {NODES} redis-server {} nodes; baseline: {}",
        redis_version(),
        nodes[0]
    );
    println!(
        "{} concurrent clients, {} s per workload per round, {} round(s), {} keys, {VALUE_BYTES}-byte values{}",
        s.concurrency,
        s.seconds,
        s.rounds,
        s.keys,
        if s.full {
            ""
        } else {
            " (smoke run: no --bench argument)"
        }
    );
    let measured = match app.resp_addr() {
        Some(resp_addr) => measure(http_addr, resp_addr, &nodes[0], s).await,
        None => Err("the RESP listener did not start".into()),
    };
    let mut fatal = match shut_down(app).await {
        Ok(()) => false,
        Err(e) => {
            eprintln!("http_kv: FAILED: {e}");
            true
        }
    };
    let results = measured?;
    let rows = results.rows();

    let mut report = String::new();
    let _ = writeln!(
        report,
        "\nMedians over {} round(s); ratios are quorumd ÷ redis of those medians \
         (throughput < 1 and latency > 1 mean quorumd is slower), and HTTP ÷ RESP through \
         quorumd at the same level and concurrency (issue 16's target: ≥ 0.5):\n",
        s.rounds
    );
    report.push_str(&text_table(&HEADER, &ALIGN, &body(&rows)));

    let mut errors_note = String::new();
    for r in &rows {
        let rate = error_rate(r.ok, r.errors);
        if r.errors > 0 || r.ok == 0 {
            let _ = writeln!(
                errors_note,
                "!!! {}: {} errors out of {} operations ({:.2}%){}",
                r.name,
                r.errors,
                r.ok + r.errors,
                100.0 * rate,
                if rate > MAX_ERROR_RATE {
                    " — ABOVE THE 1% LIMIT, the run fails"
                } else {
                    ""
                }
            );
        }
        if rate > MAX_ERROR_RATE {
            fatal = true;
        }
    }
    if !errors_note.is_empty() {
        let banner = "!!! THIS RUN HAD ERRORS: its figures are suspect.\n";
        report.push('\n');
        report.push_str(banner);
        report.push_str(&errors_note);
        eprint!("\n{banner}{errors_note}");
    }

    if s.full {
        let md = format!(
            "# http_kv benchmark\n\n\
             quorumd over HTTP (3 local redis-server {} nodes, in-process service) against the same \
             operations sent straight to one of those redis-servers with a multiplexed connection, \
             in the same run.\n\n\
             - {} concurrent clients, {} s per workload per round, {} rounds (interleaved, \
             rotating order), {} keys, {VALUE_BYTES}-byte values, {} CPU(s)\n\
             - figures are medians over rounds; ratios are quorumd ÷ redis of those medians; \
             `ops/s ÷ RESP` is HTTP ÷ quorumd's own RESP listener, same level and concurrency \
             (one connection per client, one request at a time on each)\n\n\
             {}{}",
            redis_version(),
            s.concurrency,
            s.seconds,
            s.rounds,
            s.keys,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            markdown_table(&HEADER, &ALIGN, &body(&rows)),
            if errors_note.is_empty() {
                String::new()
            } else {
                format!("\n**THIS RUN HAD ERRORS.**\n\n```\n{errors_note}```\n")
            }
        );
        match write_report("http_kv.md", &md) {
            Ok(path) => {
                let _ = writeln!(report, "\nwritten to {}", path.display());
            }
            Err(e) => {
                eprintln!("http_kv: FAILED: {e}");
                fatal = true;
            }
        }
    }
    Ok((Some(report), fatal))
}
