//! `vigil projections`: status and rebuild.

use std::sync::Arc;

use vigil_projections::ProjectionRunner;
use vigil_schemas::EventStore;

use crate::config::Config;

/// Projection subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show each projection's checkpoint and lag.
    Status,
    /// Empty a read model and replay it from position 0.
    Rebuild {
        /// The projection (`vigil projections status` lists them).
        name: String,
    },
}

/// Runs a projection subcommand.
pub async fn run(config: Config, command: Command) -> anyhow::Result<()> {
    let (pool, store) = super::open_store(&config).await?;
    let store: Arc<dyn EventStore> = store;
    let runners: Vec<ProjectionRunner> = vigil_projections::all(config.vector_store())
        .into_iter()
        .map(|p| ProjectionRunner::new(pool.clone(), store.clone(), p))
        .collect();
    let head = store.head_position().await?;
    match command {
        Command::Status => {
            let mut text = String::from("projection  checkpoint  head  lag\n");
            for runner in &runners {
                let checkpoint = runner.checkpoint().await?;
                text += &format!(
                    "{:<11} {:>10} {:>5} {:>4}\n",
                    runner.name(),
                    checkpoint,
                    head,
                    head - checkpoint.min(head)
                );
            }
            super::write_out(&text)
        }
        Command::Rebuild { name } => {
            let names: Vec<_> = runners.iter().map(|r| r.name()).collect();
            let runner = runners.iter().find(|r| r.name() == name).ok_or_else(|| {
                anyhow::anyhow!("no projection named `{name}`; known: {}", names.join(", "))
            })?;
            let started = std::time::Instant::now();
            eprintln!("rebuilding `{name}` from position 0 to {head}…");
            let reached = runner.rebuild().await?;
            eprintln!(
                "rebuilt `{name}`: applied up to position {reached} in {:.2?}",
                started.elapsed()
            );
            Ok(())
        }
    }
}
