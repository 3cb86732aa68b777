//! `make bench`: PN-counter increments per second at `quorum` through `CrdtStore` (the call the
//! HTTP and Redis-protocol surfaces make) with three local redis-server nodes, beside plain
//! `INCRBY` sent straight to one of those redis-servers, in the same run.
//!
//! Workloads, each at a fixed concurrency for a fixed time per round, rounds interleaved:
//! - `crdt spread`: increments of random keys among `BENCH_KEYS` counters;
//! - `crdt hot`: every worker increments one counter (this process serialises its own
//!   increments of a key, so this is one increment at a time);
//! - `redis INCRBY`: the spread workload on one node, no quorum.
//!
//! Table: median over rounds of increments/s and the ratio to the baseline. Environment:
//! `BENCH_CONCURRENCY` (default 32), `BENCH_SECONDS` (default 3), `BENCH_ROUNDS` (default 5),
//! `BENCH_KEYS` (default 1000). Under `cargo test --all-targets` (no `--bench`) a short smoke
//! round runs instead. Exit status non-zero if an increment fails or a model check fails.

/// The allocator the shipped binary uses (`src/main.rs`), so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use quorumd::config::Config;
use quorumd::crdt_store::CrdtStore;
use quorumd::devcluster::DevCluster;
use quorumd::quorum::Consistency;
use quorumd_testkit::bench as support;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::{env_number, full_run, median, next_random, setup, start_app, timed_settings};

const NODES: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    CrdtSpread,
    CrdtHot,
    RedisIncr,
}

impl Workload {
    const ALL: [Workload; 3] = [Workload::CrdtSpread, Workload::CrdtHot, Workload::RedisIncr];

    fn name(self) -> &'static str {
        match self {
            Workload::CrdtSpread => "crdt spread (quorum)",
            Workload::CrdtHot => "crdt hot key (quorum)",
            Workload::RedisIncr => "redis INCRBY (1 node)",
        }
    }
}

struct Settings {
    concurrency: usize,
    seconds: f64,
    rounds: usize,
    keys: u64,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let full = full_run();
        let (concurrency, seconds, rounds) = timed_settings()?;
        let keys = env_number("BENCH_KEYS", 1000u64)?;
        if keys == 0 {
            return Err("BENCH_KEYS must be at least 1".into());
        }
        Ok(if full {
            Settings {
                concurrency,
                seconds,
                rounds,
                keys,
            }
        } else {
            Settings {
                concurrency: concurrency.min(4),
                seconds: 0.2,
                rounds: 1,
                keys: 50,
            }
        })
    }
}

/// Runs `w` for the configured time; returns (increments/s, the sum of deltas added per key).
async fn measure(
    w: Workload,
    s: &Settings,
    crdts: &Arc<CrdtStore>,
    redis: &redis::aio::MultiplexedConnection,
    round: usize,
    added: &Arc<Vec<AtomicU64>>,
) -> Result<f64, String> {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(s.seconds);
    let workers = (0..s.concurrency).map(|wk| {
        let (crdts, mut redis, done, added) =
            (crdts.clone(), redis.clone(), done.clone(), added.clone());
        let keys = s.keys;
        tokio::spawn(async move {
            let mut rng = (round * 1000 + wk) as u64;
            while Instant::now() < deadline {
                let k = match w {
                    Workload::CrdtHot => 0,
                    _ => next_random(&mut rng) % keys,
                };
                match w {
                    Workload::RedisIncr => {
                        redis::cmd("INCRBY")
                            .arg(format!("plain:{k}"))
                            .arg(1)
                            .query_async::<i64>(&mut redis)
                            .await
                            .map_err(|e| format!("INCRBY: {e}"))?;
                    }
                    _ => {
                        crdts
                            .counter_add(
                                format!("ctr:{k}").as_bytes(),
                                1,
                                Consistency::Quorum,
                                None,
                            )
                            .await
                            .map_err(|e| format!("counter_add: {e}"))?;
                        added[k as usize].fetch_add(1, Ordering::Relaxed);
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        })
    });
    let started = Instant::now();
    for r in futures::future::join_all(workers).await {
        r.map_err(|e| e.to_string())??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

async fn run(urls: Vec<String>, s: &Settings) -> Result<String, String> {
    let mut cfg = Config {
        nodes: urls.clone(),
        ..Config::default()
    };
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.sync.exchange_interval_ms = 0;
    cfg.sync.full_sweep_cron = String::new();
    let app = start_app(cfg).await?;
    let crdts = Arc::new(CrdtStore::new(app.store().clone()));
    let redis = redis::Client::open(urls[0].as_str())
        .map_err(|e| e.to_string())?
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let added: Arc<Vec<AtomicU64>> = Arc::new((0..s.keys).map(|_| AtomicU64::new(0)).collect());
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); Workload::ALL.len()];
    for round in 0..s.rounds {
        for i in 0..Workload::ALL.len() {
            let w = (i + round) % Workload::ALL.len();
            rates[w].push(measure(Workload::ALL[w], s, &crdts, &redis, round, &added).await?);
        }
    }
    // Every acknowledged increment is in the merged value, and none twice.
    for k in [0, s.keys - 1] {
        let want = added[k as usize].load(Ordering::Relaxed) as i128;
        let got = crdts
            .counter_get(format!("ctr:{k}").as_bytes(), Consistency::All)
            .await
            .map_err(|e| e.to_string())?;
        if got != want {
            return Err(format!(
                "ctr:{k} is {got}, {want} increments were acknowledged"
            ));
        }
    }
    app.shutdown().await.map_err(|e| e.to_string())?;
    let base = median(&rates[2]);
    let mut out = format!(
        "crdt counter increments: {} nodes, concurrency {}, {} s × {} rounds, {} keys\n",
        NODES, s.concurrency, s.seconds, s.rounds, s.keys
    );
    for (w, r) in Workload::ALL.iter().zip(&rates) {
        let m = median(r);
        out += &format!(
            "{:<24} {:>10.0} incr/s   ×{:.3} of redis INCRBY\n",
            w.name(),
            m,
            m / base
        );
    }
    Ok(out)
}

fn main() -> ExitCode {
    let (settings, cluster, runtime) = match setup("crdt bench", Settings::from_env, || {
        DevCluster::start(NODES)
    }) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let outcome = runtime.block_on(run(cluster.urls(), &settings));
    drop(runtime);
    drop(cluster);
    match outcome {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crdt bench: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
