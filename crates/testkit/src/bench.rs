//! Helpers the benchmarks share: settings from the environment, statistics, a PRNG, result
//! tables (plain text and markdown) and where the reports go.

#![allow(dead_code)] // each benchmark uses a different part

use bytes::Bytes;
use quorumd_core::config::Config;
use quorumd_service::app::App;
use redis::aio::MultiplexedConnection;
use std::alloc::{GlobalAlloc, Layout};
use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("{name}={s:?} is not a valid number")),
    }
}

/// A full run (`cargo bench` passes `--bench`), not a smoke run under `cargo test`.
pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The clients, seconds a round and rounds of a timed bench: `BENCH_CONCURRENCY` (default
/// 32), `BENCH_SECONDS` (3) and `BENCH_ROUNDS` (5); at least 1 client and round, seconds in
/// (0, 3600].
pub fn timed_settings() -> Result<(usize, f64, usize), String> {
    let concurrency = env_number("BENCH_CONCURRENCY", 32usize)?;
    let seconds = env_number("BENCH_SECONDS", 3.0f64)?;
    let rounds = env_number("BENCH_ROUNDS", 5usize)?;
    if concurrency == 0 || rounds == 0 || !(seconds > 0.0 && seconds <= 3600.0) {
        return Err(
            "BENCH_CONCURRENCY and BENCH_ROUNDS must be at least 1, BENCH_SECONDS in (0, 3600]"
                .into(),
        );
    }
    Ok((concurrency, seconds, rounds))
}

pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// Nearest-rank percentile of sorted values; NaN when empty.
pub fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64
}

/// splitmix64: a cheap, per-worker key picker.
pub fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub fn redis_version() -> String {
    std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.split_whitespace()
                .find_map(|w| w.strip_prefix("v=").map(String::from))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A results table as aligned plain text (for stdout): a header line, a rule, a line a row,
/// columns two spaces apart, each aligned as `align` says.
pub fn text_table<R: AsRef<[String]>>(header: &[&str], align: &[Align], rows: &[R]) -> String {
    assert_eq!(header.len(), align.len(), "an alignment per column");
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r.as_ref()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String]| -> String {
        let mut s = String::new();
        for (i, ((c, w), a)) in cols.iter().zip(&widths).zip(align).enumerate() {
            let pad = " ".repeat(w - c.chars().count());
            let gap = if i == 0 { "" } else { "  " };
            match a {
                Align::Left => s.push_str(&format!("{gap}{c}{pad}")),
                Align::Right => s.push_str(&format!("{gap}{pad}{c}")),
            }
        }
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = line(&header);
    let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
    out.push_str(&"-".repeat(total));
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.as_ref()));
    }
    out
}

/// A results table as markdown, right-aligned columns marked so.
pub fn markdown_table<R: AsRef<[String]>>(header: &[&str], align: &[Align], rows: &[R]) -> String {
    assert_eq!(header.len(), align.len(), "an alignment per column");
    let mut out = format!("| {} |\n|", header.join(" | "));
    for a in align {
        out.push_str(match a {
            Align::Left => "---|",
            Align::Right => "---:|",
        });
    }
    out.push('\n');
    for r in rows {
        out.push_str(&format!("| {} |\n", r.as_ref().join(" | ")));
    }
    out
}

/// Where the benches write their markdown reports: `target/bench` (or under
/// `CARGO_TARGET_DIR`).
pub fn report_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| crate::tools::repo_root().join("target"))
        .join("bench")
}

/// Writes the report `name` (e.g. `sync.md`) into [`report_dir`]: where it went, or why not.
pub fn write_report(name: &str, markdown: &str) -> Result<std::path::PathBuf, String> {
    let dir = report_dir();
    let path = dir.join(name);
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, markdown))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// What one client, or all of them, saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Latency of each successful operation, in nanoseconds.
    pub latencies: Vec<u64>,
}

impl Tally {
    pub fn fail(&mut self, what: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what);
        }
    }

    /// One operation, started at `started`: its latency counts when it succeeded.
    pub fn record(&mut self, started: Instant, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                self.ok += 1;
                self.latencies.push(started.elapsed().as_nanos() as u64);
            }
            Err(e) => self.fail(e),
        }
    }

    /// Adds what another client saw.
    pub fn absorb(&mut self, mut other: Tally) {
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error.take();
        }
        self.latencies.append(&mut other.latencies);
    }
}

/// A timed stretch of operations: throughput and latency percentiles.
#[derive(Debug)]
pub struct Sample {
    pub ops_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Sample {
    /// What `all` saw over `elapsed_s` seconds.
    pub fn of(mut all: Tally, elapsed_s: f64) -> Sample {
        all.latencies.sort_unstable();
        Sample {
            ops_per_s: all.ok as f64 / elapsed_s,
            p50_us: percentile(&all.latencies, 0.50) / 1000.0,
            p99_us: percentile(&all.latencies, 0.99) / 1000.0,
            ok: all.ok,
            errors: all.errors,
            first_error: all.first_error,
        }
    }
}

/// `clients` clients, each running `op(target, key)` on random keys below `keys`, one
/// operation after another, until `duration` has passed (client `w` draws its keys from
/// `seed` and `w`).
pub async fn closed_loop<T, F, Fut>(
    target: &Arc<T>,
    clients: usize,
    duration: Duration,
    seed: u64,
    keys: u64,
    op: F,
) -> Sample
where
    T: Send + Sync + 'static,
    F: Fn(Arc<T>, usize) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..clients)
        .map(|w| {
            let t = target.clone();
            let mut rng = seed ^ ((w as u64 + 1) << 32);
            tokio::spawn(async move {
                let mut tally = Tally {
                    latencies: Vec::with_capacity(4096),
                    ..Tally::default()
                };
                while Instant::now() < deadline {
                    let key = (next_random(&mut rng) % keys) as usize;
                    let began = Instant::now();
                    let outcome = op(t.clone(), key).await;
                    tally.record(began, outcome);
                }
                tally
            })
        })
        .collect();
    let mut all = Tally::default();
    for w in workers {
        match w.await {
            Ok(tally) => all.absorb(tally),
            Err(e) => all.fail(format!("worker failed: {e}")),
        }
    }
    Sample::of(all, started.elapsed().as_secs_f64())
}

/// A PUT of `body` to `url`, its answer read to the end: Ok when it succeeded.
pub async fn http_put(
    http: &reqwest::Client,
    url: reqwest::Url,
    body: Bytes,
) -> Result<(), String> {
    match http.put(url).body(body).send().await {
        Ok(resp) => {
            let status = resp.status();
            match resp.bytes().await {
                Ok(_) if status.is_success() => Ok(()),
                Ok(body) => Err(format!(
                    "PUT {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                )),
                Err(e) => Err(format!("PUT body: {e}")),
            }
        }
        Err(e) => Err(format!("PUT: {e}")),
    }
}

/// Validates `config` and starts quorumd in-process.
pub async fn start_app(config: Config) -> Result<App, String> {
    let validated = config
        .validate()
        .map_err(|e| format!("configuration: {e}"))?;
    App::start(validated)
        .await
        .map_err(|e| format!("cannot start quorumd: {e}"))
}

/// Shuts quorumd down, allowing it 30 s.
pub async fn shut_down(app: App) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(30), app.shutdown()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("shutdown: {e}")),
        Err(_) => Err("shutdown did not finish within 30 s".into()),
    }
}

/// What a bench needs before its async part: its settings (from `settings`), what `start`
/// starts (its nodes) and a multi-threaded runtime. On failure it says why, after `name`,
/// and gives the exit code: 2 for bad settings.
pub fn setup<S, C, E: std::fmt::Display>(
    name: &str,
    settings: impl FnOnce() -> Result<S, String>,
    start: impl FnOnce() -> Result<C, E>,
) -> Result<(S, C, tokio::runtime::Runtime), ExitCode> {
    let settings = settings().map_err(|e| usage_error(name, e))?;
    let fail = |what: String| {
        eprintln!("{name}: {what}");
        ExitCode::FAILURE
    };
    let nodes = start().map_err(|e| fail(format!("cannot start the redis-server nodes: {e}")))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start the runtime: {e}")))?;
    Ok((settings, nodes, runtime))
}

/// The HTTP client of a bench's clients: HTTP/1 only, no proxy, up to `pool` idle connections
/// per host, 10 s a request.
pub fn http_client(pool: usize) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .pool_max_idle_per_host(pool)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("http client: {e}"))
}

/// A bad setting: says so, after `name`, and gives the exit code for it.
pub fn usage_error(name: &str, e: String) -> ExitCode {
    eprintln!("{name}: {e}");
    ExitCode::from(2)
}

/// Of the processes `pids`, those still running (on Linux; elsewhere none is known to be).
pub fn still_running(pids: impl IntoIterator<Item = u32>) -> Vec<u32> {
    if !cfg!(target_os = "linux") {
        return Vec::new();
    }
    pids.into_iter()
        .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Direct access to the nodes, CPU accounting (shared by the benches).

pub async fn direct(url: &str) -> Result<MultiplexedConnection, String> {
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(120)));
    redis::Client::open(url)
        .map_err(|e| format!("redis client {url}: {e}"))?
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .map_err(|e| format!("redis connection {url}: {e}"))
}

pub async fn command<T: redis::FromRedisValue>(
    conn: &MultiplexedConnection,
    cmd: &redis::Cmd,
) -> Result<T, String> {
    let mut c = conn.clone();
    cmd.query_async(&mut c).await.map_err(|e| {
        let name = match cmd.args_iter().next() {
            Some(redis::Arg::Simple(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        format!("{name}: {e}")
    })
}

pub async fn info(conn: &MultiplexedConnection, section: &str) -> Result<String, String> {
    command(conn, redis::cmd("INFO").arg(section)).await
}

pub fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// CPU seconds (user + system) the server has used since it started.
pub async fn redis_cpu_s(conn: &MultiplexedConnection) -> Result<f64, String> {
    let text = info(conn, "cpu").await?;
    let field = |n| {
        info_field(&text, n)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    Ok(field("used_cpu_user") + field("used_cpu_sys"))
}

/// Per command since the last CONFIG RESETSTAT: (name, calls, µs), most µs first.
pub async fn commandstats(conn: &MultiplexedConnection) -> Result<Vec<(String, u64, u64)>, String> {
    let text = info(conn, "commandstats").await?;
    let mut out: Vec<(String, u64, u64)> = text
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let num = |k: &str| {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                    .and_then(|v| v.parse::<u64>().ok())
            };
            Some((name.to_string(), num("calls")?, num("usec")?))
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.2));
    Ok(out)
}

/// The shipped binary's allocator (mimalloc, `src/main.rs`), counting the allocations it
/// makes: a bench that installs it as its `#[global_allocator]` can divide them by its requests.
/// Unlike CPU time, that count does not move with the load of a shared machine, so a change of a
/// few allocations per request shows in one run. Counted: `alloc`, `alloc_zeroed` and
/// `realloc` (a growing buffer's copy).
pub struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// The allocations made so far through [`CountingAllocator`] in this process.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

// SAFETY: every call goes to mimalloc with the caller's arguments unchanged; the counter has no
// effect on the memory handed out.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as received.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as received.
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as received.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
}

/// CPU seconds (user + system) of this process: the service's sweep, the HTTP server and the
/// client side of the bench.
pub fn process_cpu_s() -> f64 {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes into the struct we pass.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return f64::NAN;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// CPU seconds (user + system) of this process's children that have ended and been waited for:
/// around one `Command::output()`, the CPU that child process used.
pub fn children_cpu_s() -> f64 {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes into the struct we pass.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) } != 0 {
        return f64::NAN;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// `1,000,000`.
pub fn grouped(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `used_memory` of the server, in bytes.
pub async fn used_memory(conn: &MultiplexedConnection) -> Result<u64, String> {
    let text = info(conn, "memory").await?;
    info_field(&text, "used_memory")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| "INFO memory has no used_memory".to_string())
}

/// Waits until no listed server's keyspace table is rehashing (`DEBUG HTSTATS`; the servers
/// run with `--enable-debug-command local`). A load that ends just past a power of two leaves a
/// table being moved into one twice its size: `used_memory` then counts it twice, and the
/// lookups of whatever runs next pay for the move. Server ticks are made more frequent
/// meanwhile.
pub async fn tables_settled<'a>(
    conns: impl IntoIterator<Item = &'a MultiplexedConnection> + Clone,
) -> Result<(), String> {
    let hz = |v: &str| redis::cmd("CONFIG").arg("SET").arg("hz").arg(v).clone();
    for c in conns.clone() {
        command::<()>(c, &hz("500")).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let outcome = async {
        for c in conns.clone() {
            loop {
                let stats: String = command(c, redis::cmd("DEBUG").arg("HTSTATS").arg(0)).await?;
                if !stats.contains("rehashing target") {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("a server was still rehashing after 120 s: {stats}"));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }
    .await;
    for c in conns {
        command::<()>(c, &hz("10")).await?;
    }
    outcome
}

/// Writes keys `key(i)` with values `value(i)`, for every `i` of `indices`, as versioned string
/// entries on the nodes `targets` of `store`, by the APPLY script (what a client write does on
/// each node; split per slot on a cluster): 1,000 keys per call, three calls in flight. Fails
/// if a node refuses an entry. Returns the entries applied, over all targets.
pub async fn apply_versioned<K, V>(
    store: &quorumd_replication::store::VersionedStore,
    targets: &[usize],
    indices: &[usize],
    key: K,
    value: V,
) -> Result<u64, String>
where
    K: Fn(usize) -> String,
    V: Fn(usize) -> Vec<u8>,
{
    use futures::StreamExt;
    use quorumd_core::meta::Meta;
    use quorumd_node::calls::store::{ApplyEntry, KeyLocation, NodeCondition, Payload, apply};
    const BATCH: usize = 1000;
    const IN_FLIGHT: usize = 3;
    let (key, value) = (&key, &value);
    let mut batches = futures::stream::iter(indices.chunks(BATCH))
        .map(|chunk| async move {
            let keys: Vec<String> = chunk.iter().map(|&i| key(i)).collect();
            let values: Vec<Vec<u8>> = chunk.iter().map(|&i| value(i)).collect();
            let locs: Vec<KeyLocation> = keys
                .iter()
                .map(|k| store.locate(k.as_bytes()).map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?;
            let metas: Vec<Meta> = keys
                .iter()
                .zip(&values)
                .map(|(k, v)| Meta::for_string(k.as_bytes(), store.clock().tick(), Some(v), None))
                .collect();
            let entries: Vec<ApplyEntry<'_>> = locs
                .iter()
                .zip(&metas)
                .zip(&values)
                .map(|((loc, meta), v)| ApplyEntry {
                    loc,
                    meta,
                    payload: Payload::String(v),
                    cond: NodeCondition::None,
                })
                .collect();
            let results = futures::future::join_all(
                targets
                    .iter()
                    .map(|&t| apply(store.pool().node(t), &entries)),
            )
            .await;
            let mut applied = 0u64;
            for (t, r) in targets.iter().zip(results) {
                let outcomes = r.map_err(|e| format!("APPLY on node {t}: {e}"))?;
                if let Some(o) = outcomes.iter().find(|o| !o.changed()) {
                    return Err(format!(
                        "APPLY on node {t}: an entry was not applied: {o:?}"
                    ));
                }
                applied += outcomes.len() as u64;
            }
            Ok::<u64, String>(applied)
        })
        .buffer_unordered(IN_FLIGHT);
    let mut total = 0;
    while let Some(r) = batches.next().await {
        total += r?;
    }
    Ok(total)
}
