use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: a request allocates and frees many small buffers
/// across threads, where glibc's malloc took about a third of quorumd's CPU (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use quorumd::app::App;
use quorumd::config::{Config, LogConfig};
use quorumd::devcluster::DevCluster;
use quorumd::sync::{SweepMode, SweepRequest, SweepTrigger};
use std::path::PathBuf;
use std::process::ExitCode;

/// `quorumd --version`: the crate version and the commit it was built from (`build.rs`).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BUILD_GIT_COMMIT"),
    ")"
);

/// quorumd keeps N independent Redis servers in sync without a leader.
#[derive(Parser)]
#[command(version = VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the service until SIGINT or SIGTERM.
    Run {
        /// Configuration file (default: config/quorumd.toml when it exists).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Start three local redis-server processes and the service against them, seed demo keys,
    /// and serve the dashboard with buttons that wipe or diverge a node.
    Demo {
        /// HTTP port for the demo service (0 picks a free one).
        #[arg(long, default_value_t = 8379)]
        port: u16,
        /// Demo keys written at start, so the bucket grid has something to heal.
        #[arg(long, default_value_t = 20_000)]
        keys: u64,
        /// Make each of the three replicas a local Redis Cluster of three masters (made with
        /// `redis-cli --cluster create`), under the slot placement.
        #[arg(long)]
        cluster: bool,
    },
    /// Run one sweep now, print a divergence report, and exit non-zero if divergence remains
    /// (2) or the sweep hit errors (1). Usable from cron and CI.
    Sweep {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// SCAN every node (adopts unversioned keys, restores vanished values, rebuilds
        /// digests, purges old tombstones) instead of the digest exchange.
        #[arg(long)]
        full: bool,
        /// Report divergence only; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Convert the nodes' metadata from entry format 1 (before content checksums) or 2 (text
    /// entries) to this version's format, and merge their sub-buckets into the configuration's
    /// `sub_buckets` when it is lower, in place, and mark them. Values, versions and digests
    /// are kept. Run it once, with quorumd stopped, when a start refuses the nodes' layout.
    Convert {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate the configuration and print it, secrets masked.
    CheckConfig {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// Exit code of `quorumd sweep` when divergence remains after it.
const EXIT_DIVERGENCE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` sizes its runtime from its configuration (`worker_threads`), so it reads that
    // first; the other commands are short-lived and take the default.
    let (workers, command) = match cli.command {
        Cmd::Run { config } => match quorumd::settings::load_validated(config.as_deref()) {
            Ok(validated) => (
                validated.config.worker_threads,
                Command::Run(Box::new(validated)),
            ),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        other => (0, Command::Other(other)),
    };
    let runtime = match quorumd::app::runtime(workers) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match command {
            Command::Run(validated) => run(*validated).await.map(|()| 0),
            Command::Other(cmd) => dispatch(cmd).await,
        }
    });
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A command once `main` has read what it needs before the runtime starts.
enum Command {
    Run(Box<quorumd::config::Validated>),
    Other(Cmd),
}

/// Serves until SIGTERM or SIGINT, then drains.
async fn run(validated: quorumd::config::Validated) -> Result<(), Box<dyn std::error::Error>> {
    quorumd::telemetry::init(&validated.config.log);
    // Before anything can report readiness, so an early SIGTERM still drains.
    let mut signals = quorumd::app::StopSignals::install()?;
    let app = App::start(validated).await?;
    let notifier = quorumd::sdnotify::spawn(app.store().clone());
    signals.recv().await;
    if let Some(n) = notifier {
        n.abort();
    }
    quorumd::sdnotify::notify_logged("STOPPING=1");
    app.shutdown().await?;
    Ok(())
}

/// Runs every command but `run`.
async fn dispatch(cmd: Cmd) -> Result<u8, Box<dyn std::error::Error>> {
    match cmd {
        Cmd::Run { .. } => unreachable!("`main` runs `run` itself"),
        Cmd::CheckConfig { config } => {
            let validated = quorumd::settings::load_validated(config.as_deref())?;
            print!("{}", validated.config.to_masked_toml());
            eprintln!(
                "configuration is valid: {} nodes, read quorum {}, write quorum {}",
                validated.quorum.nodes, validated.quorum.read, validated.quorum.write
            );
        }
        Cmd::Demo {
            port,
            keys,
            cluster,
        } => demo(port, keys, cluster).await?,
        Cmd::Convert { config } => {
            let validated = quorumd::settings::load_validated(config.as_deref())?;
            quorumd::telemetry::init(&validated.config.log);
            let core = quorumd::app::Core::open(&validated).await?;
            let result = core.store.convert_layout().await;
            core.store.pool().shutdown().await;
            let report = result?;
            println!(
                "converted {} entries and {} slot digests, and moved {} entries into {} sub-buckets per bucket, on {} node(s){}; every reachable node is marked with this configuration's layout",
                report.entries_converted,
                report.slot_digests_converted,
                report.entries_moved,
                validated.config.sub_buckets,
                report.nodes_converted.len(),
                if report.nodes_converted.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", report.nodes_converted.join(", "))
                }
            );
        }
        Cmd::Sweep {
            config,
            full,
            dry_run,
            json,
        } => {
            let validated = quorumd::settings::load_validated(config.as_deref())?;
            quorumd::telemetry::init(&validated.config.log);
            return sweep(validated, full, dry_run, json).await;
        }
    }
    Ok(0)
}

async fn sweep(
    validated: quorumd::config::Validated,
    full: bool,
    dry_run: bool,
    json: bool,
) -> Result<u8, Box<dyn std::error::Error>> {
    let core = quorumd::app::Core::start(&validated).await?;
    let mode = if full {
        SweepMode::Full
    } else {
        SweepMode::Exchange
    };
    let report = core
        .sweeper
        .run(SweepRequest {
            mode,
            dry_run,
            trigger: SweepTrigger::Cli,
        })
        .await?;
    // After repairing, a dry-run exchange says what is still different.
    let left = if dry_run {
        report.divergence_left()
    } else {
        core.sweeper
            .run(SweepRequest::new(SweepMode::Exchange, SweepTrigger::Cli).dry_run())
            .await?
            .divergence_left()
            + report.outside_changes_left()
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "report": report, "divergence_left": left })
            )?
        );
    } else {
        print_report(&report, &core, left);
    }
    core.store.pool().shutdown().await;
    Ok(if report.error_count > 0 {
        1
    } else if left > 0 {
        EXIT_DIVERGENCE
    } else {
        0
    })
}

fn print_report(r: &quorumd::sync::SweepReport, core: &quorumd::app::Core, left: u64) {
    let what = if r.dry_run {
        "dry run, nothing changed"
    } else {
        "repairs applied"
    };
    println!(
        "{} sweep #{} ({what}) in {:.2} s",
        r.mode.as_str(),
        r.id,
        r.elapsed_s
    );
    println!(
        "  buckets: {} compared, {} differing, {} repaired ({} copied whole)",
        r.buckets_compared, r.buckets_mismatched, r.buckets_repaired, r.buckets_copied
    );
    println!(
        "  keys: {} divergent, {} deferred (writes landing), {} unversioned, {} adopted, {} left (report-only), {} values restored",
        r.keys_divergent,
        r.keys_deferred,
        r.keys_unversioned,
        r.keys_adopted,
        r.keys_unversioned_left,
        r.values_restored
    );
    println!(
        "  tombstones purged: {}, digests rebuilt: {}, hints replayed: {}",
        r.tombstones_purged, r.digests_rebuilt, r.hints_replayed
    );
    for node in core.store.pool().nodes() {
        println!(
            "  {:<40} {:>10} scanned {:>10} repaired   {}",
            node.display,
            r.keys_scanned_per_node[node.id],
            r.keys_repaired_per_node[node.id],
            node.health()
        );
    }
    for e in &r.errors {
        println!("  error: {e}");
    }
    println!("divergence left: {left}");
}

/// Masters per replica in `quorumd demo --cluster`.
const DEMO_MASTERS: usize = 3;

async fn demo(port: u16, keys: u64, clusters: bool) -> Result<(), Box<dyn std::error::Error>> {
    quorumd::telemetry::init(&LogConfig::default());
    // Installed first: Ctrl-C at any point from here on stops the demo and its nodes cleanly.
    let signals = quorumd::app::StopSignals::install()?;
    let (cluster, nodes) = tokio::task::spawn_blocking(move || {
        if clusters {
            DevCluster::start_clusters(3, DEMO_MASTERS, 0)
        } else {
            DevCluster::start(3).map(|c| {
                let urls = c.urls();
                (c, urls)
            })
        }
    })
    .await??;
    let mut cfg = Config {
        nodes: nodes.clone(),
        ..Config::default()
    };
    if clusters {
        cfg.placement = quorumd::layout::Scheme::Slot;
    }
    cfg.http.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    if port == 0 {
        cfg.resp.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    }
    let app = App::start_demo(quorumd::settings::validate(cfg)?, keys).await?;
    let base = format!("http://{}", app.http_addr());
    println!("seeding {keys} demo keys...");
    let seeded = quorumd::demo::seed(app.store(), keys).await;
    println!("quorumd demo is running: open the dashboard at {base}/ ({seeded} keys seeded).");
    println!("Nodes:");
    if clusters {
        for (url, masters) in nodes.iter().zip(cluster.nodes.chunks(DEMO_MASTERS)) {
            let ports: Vec<String> = masters.iter().map(|m| m.port().to_string()).collect();
            println!("  {url}   (redis-cli -c -p {})", ports.join(" | -p "));
        }
    } else {
        for n in &cluster.nodes {
            println!("  {}   (redis-cli -p {})", n.url(), n.port());
        }
    }
    println!("\nTry:");
    println!("  curl -X PUT --data-binary 'hello' {base}/v1/kv/greeting");
    println!("  curl -i {base}/v1/kv/greeting");
    println!("  curl {base}/v1/status");
    if let Some(resp) = app.resp_addr() {
        println!("  redis-cli -p {} SET greeting hello", resp.port());
    }
    println!(
        "  curl -X POST -H 'content-type: application/json' -d '{{\"node\":1}}' {base}/v1/demo/wipe"
    );
    println!("  curl {base}/metrics");
    println!("\nPress Ctrl-C to stop; the redis-server processes stop with it.");
    app.run_until(signals).await?;
    drop(cluster);
    println!("demo stopped");
    Ok(())
}
