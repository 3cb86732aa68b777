use clap::{Parser, Subcommand};
use quorumd::app::App;
use quorumd::config::{Config, LogConfig};
use quorumd::devcluster::DevCluster;
use std::path::PathBuf;
use std::process::ExitCode;

/// quorumd keeps N independent Redis servers in sync without a leader.
#[derive(Parser)]
#[command(version, about)]
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
    /// Start three local redis-server processes and the service against them, for a first look.
    Demo {
        /// HTTP port for the demo service (0 picks a free one).
        #[arg(long, default_value_t = 8379)]
        port: u16,
    },
    /// Validate the configuration and print it, secrets masked.
    CheckConfig {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cmd: Cmd) -> Result<(), Box<dyn std::error::Error>> {
    match cmd {
        Cmd::Run { config } => {
            let validated = Config::load(config.as_deref())?.validate()?;
            quorumd::telemetry::init(&validated.config.log);
            App::start(validated).await?.run_until_signal().await?;
        }
        Cmd::CheckConfig { config } => {
            let validated = Config::load(config.as_deref())?.validate()?;
            print!("{}", validated.config.to_masked_toml());
            eprintln!(
                "configuration is valid: {} nodes, read quorum {}, write quorum {}",
                validated.quorum.nodes, validated.quorum.read, validated.quorum.write
            );
        }
        Cmd::Demo { port } => demo(port).await?,
    }
    Ok(())
}

async fn demo(port: u16) -> Result<(), Box<dyn std::error::Error>> {
    quorumd::telemetry::init(&LogConfig::default());
    let cluster = tokio::task::spawn_blocking(|| DevCluster::start(3)).await??;
    let mut cfg = Config {
        nodes: cluster.urls(),
        ..Config::default()
    };
    cfg.http.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let app = App::start(cfg.validate()?).await?;
    let base = format!("http://{}", app.http_addr());
    println!("quorumd demo is running. Nodes:");
    for n in &cluster.nodes {
        println!("  {}   (redis-cli -p {})", n.url(), n.port());
    }
    println!("\nTry:");
    println!("  curl -X PUT --data-binary 'hello' {base}/v1/kv/greeting");
    println!("  curl -i {base}/v1/kv/greeting");
    println!("  curl {base}/v1/status");
    println!("\nPress Ctrl-C to stop; the redis-server processes stop with it.");
    app.run_until_signal().await?;
    drop(cluster);
    println!("demo stopped");
    Ok(())
}
