//! `vigil replay`: stored events as JSON lines for audit and piping, or re-published to Kafka.

use std::io::Write;

use vigil_schemas::{Direction, EventStore};

use crate::config::Config;
use crate::relay::KafkaRelay;

/// Arguments of `vigil replay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only events after this global position.
    #[arg(long, default_value_t = 0)]
    pub after: u64,
    /// Only this stream (then `--after` is a stream version).
    #[arg(long)]
    pub stream: Option<String>,
    /// Stop after this many events.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Re-publish the events to Kafka (`kafka_brokers`) instead of printing them, e.g. for a new
    /// downstream consumer. The relay's own checkpoint does not move.
    #[arg(long)]
    pub to_kafka: bool,
}

/// Prints the selected events, one JSON envelope per line, or re-publishes them.
pub async fn run(config: Config, args: Args) -> anyhow::Result<()> {
    let (pool, store) = super::open_store(&config).await?;
    let relay = if args.to_kafka {
        anyhow::ensure!(
            !config.kafka_brokers.is_empty(),
            "--to-kafka needs kafka_brokers (VIGIL_KAFKA_BROKERS)"
        );
        let relay = KafkaRelay::new(&config, store.clone(), pool)?;
        relay.ensure_topics(&[]).await?;
        Some(relay)
    } else {
        None
    };
    let mut out = std::io::stdout().lock();
    let mut left = args.limit.unwrap_or(u64::MAX);
    let mut cursor = args.after;
    let mut published = 0u64;
    while left > 0 {
        let page_size = left.min(1000) as usize;
        let page = match &args.stream {
            Some(stream) => {
                store
                    .read_stream(stream, cursor + 1, page_size, Direction::Forward)
                    .await?
            }
            None => store.read_all(cursor, page_size).await?,
        };
        let Some(last) = page.last() else { break };
        cursor = if args.stream.is_some() {
            last.stream_version
        } else {
            last.position
        };
        left -= page.len() as u64;
        match &relay {
            Some(relay) => {
                relay.send_batch(&page).await?;
                published += page.len() as u64;
            }
            None => {
                for event in &page {
                    serde_json::to_writer(&mut out, event)?;
                    out.write_all(b"\n")?;
                }
            }
        }
    }
    out.flush()?;
    if relay.is_some() {
        eprintln!("re-published {published} events to Kafka");
    }
    Ok(())
}
