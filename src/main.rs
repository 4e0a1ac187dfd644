//! The `vigil` command.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use vigil::cmds;
use vigil::config::Config;

/// Vigil: self-hosted backend for AI video surveillance.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Config file (default: ./vigil.toml when present). `VIGIL_*` variables override it.
    #[arg(long, global = true, env = "VIGIL_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: API, WebSockets, projections, camera ingest and the models (whose
    /// weights must be fetched first: scripts/fetch-assets --weights).
    Serve,
    /// Print stored events as JSON lines, in position order.
    Replay(cmds::replay::Args),
    /// Projection maintenance.
    Projections {
        #[command(subcommand)]
        command: cmds::projections::Command,
    },
    /// JSON Schemas of the published events.
    Schemas {
        #[command(subcommand)]
        command: cmds::schemas::Command,
    },
    /// Replay `$all` through every projection into a scratch database and compare with the
    /// live read models.
    Verify,
    /// Check what the configuration needs (weights, models device, database, Kafka, webhook
    /// targets, disk space, clock), one line each with a remedy; exit 1 when something is
    /// missing.
    Doctor,
    /// Print the effective config, secrets masked.
    Config,
    /// Print the OpenAPI document.
    Openapi,
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        command: cmds::bench::Command,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref()).map_err(|e| anyhow::anyhow!("config: {e}"))?;
    cmds::init_tracing(&config);
    match cli.command {
        Command::Serve => cmds::serve::run(config).await,
        Command::Replay(args) => cmds::replay::run(config, args).await,
        Command::Projections { command } => cmds::projections::run(config, command).await,
        Command::Schemas { command } => cmds::schemas::run(command),
        Command::Verify => cmds::verify::run(config).await,
        Command::Doctor => cmds::doctor::run(config).await,
        Command::Config => cmds::write_out(&config.to_masked_toml()),
        Command::Openapi => cmds::write_out(&vigil::api::openapi_json()),
        Command::Bench { command } => cmds::bench::run(command).await,
    }
}
