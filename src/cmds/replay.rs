//! `vigil replay`: stored events as JSON lines, for audit and piping.

use std::io::Write;

use vigil_schemas::{Direction, EventStore};

use crate::config::Config;

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
}

/// Prints the selected events, one JSON envelope per line.
pub async fn run(config: Config, args: Args) -> anyhow::Result<()> {
    let (_pool, store) = super::open_store(&config).await?;
    let mut out = std::io::stdout().lock();
    let mut left = args.limit.unwrap_or(u64::MAX);
    let mut cursor = args.after;
    while left > 0 {
        let page = match &args.stream {
            Some(stream) => {
                store
                    .read_stream(stream, cursor + 1, 1000, Direction::Forward)
                    .await?
            }
            None => store.read_all(cursor, 1000).await?,
        };
        if page.is_empty() {
            break;
        }
        for event in page {
            if left == 0 {
                break;
            }
            cursor = if args.stream.is_some() {
                event.stream_version
            } else {
                event.position
            };
            serde_json::to_writer(&mut out, &event)?;
            out.write_all(b"\n")?;
            left -= 1;
        }
    }
    out.flush()?;
    Ok(())
}
