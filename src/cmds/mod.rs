//! One module per CLI subcommand.

pub mod bench;
pub mod bench_search;
pub mod doctor;
pub mod projections;
pub mod replay;
pub mod schemas;
pub mod serve;
pub mod verify;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

use crate::config::Config;
use crate::store::{SqlEventStore, open_pool_with};

/// Sets up logging on stderr from the config's filter and format.
pub fn init_tracing(config: &Config) {
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if config.log_format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Writes `text` (and a newline when missing) to stdout.
pub fn write_out(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Opens the configured database and event store, without starting anything.
pub async fn open_store(config: &Config) -> anyhow::Result<(sqlx::AnyPool, Arc<SqlEventStore>)> {
    let (pool, backend) = open_pool_with(
        &config.effective_database_url(),
        config.database_max_connections,
        Duration::from_secs(config.database_timeout_secs),
    )
    .await?;
    let store = SqlEventStore::new(
        pool.clone(),
        backend,
        Duration::from_millis(config.poll_interval_ms),
    )
    .await?;
    Ok((pool, Arc::new(store)))
}
