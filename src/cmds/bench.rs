//! `vigil bench store`: event store throughput on SQLite and PostgreSQL, as a table;
//! `vigil bench search`: see [`super::bench_search`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use vigil_schemas::{EventMeta, EventStore, ExpectedVersion, NewEvent};

use crate::store::scratch::{ScratchDb, admin_url};
use crate::store::{SqlEventStore, open_pool};

/// Benchmark subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Appends/s (one event per append, batches of 100, 8 concurrent writers), read_all and
    /// subscription events/s, on a fresh SQLite file and a fresh PostgreSQL database.
    Store {
        /// Single-event appends to time.
        #[arg(long, default_value_t = 2000)]
        single: usize,
        /// Batches of 100 to time.
        #[arg(long, default_value_t = 200)]
        batches: usize,
        /// Skip PostgreSQL.
        #[arg(long)]
        sqlite_only: bool,
        /// PostgreSQL server to create the scratch database on.
        #[arg(long)]
        postgres_url: Option<String>,
    },
    /// Face-search vector index: synthetic clustered 128-d descriptors in Lance, exact search
    /// against IVF-PQ and IVF-HNSW-SQ (build time, p50/p99 query latency, recall@10), side by
    /// side with FAISS (`faiss-cpu`, installed by `scripts/setup`) on the same vectors.
    Search(super::bench_search::Args),
}

fn event(i: usize) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: "bench.happened".into(),
        schema_version: 1,
        occurred_at: Utc::now(),
        meta: EventMeta::system(),
        payload: serde_json::json!({"i": i, "camera_id": "bench", "score": 0.87, "label": "person"}),
    }
}

/// One backend's numbers, in events per second.
#[derive(Debug)]
struct Row {
    backend: &'static str,
    single: f64,
    batch: f64,
    concurrent: f64,
    read_all: f64,
    subscribe: f64,
}

fn per_sec(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

async fn measure(
    backend: &'static str,
    store: Arc<SqlEventStore>,
    single: usize,
    batches: usize,
) -> anyhow::Result<Row> {
    let started = Instant::now();
    for i in 0..single {
        store
            .append(
                &format!("bench-{}", i % 64),
                ExpectedVersion::Any,
                vec![event(i)],
            )
            .await?;
    }
    let single_rate = per_sec(single, started.elapsed());

    let started = Instant::now();
    for b in 0..batches {
        let batch = (0..100).map(|i| event(b * 100 + i)).collect();
        store
            .append(
                &format!("bench-batch-{}", b % 16),
                ExpectedVersion::Any,
                batch,
            )
            .await?;
    }
    let batch_rate = per_sec(batches * 100, started.elapsed());

    let started = Instant::now();
    let per_writer = single / 8;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    store
                        .append(&format!("bench-w{w}"), ExpectedVersion::Any, vec![event(i)])
                        .await?;
                }
                Ok::<_, vigil_schemas::StoreError>(())
            })
        })
        .collect();
    for writer in writers {
        writer.await??;
    }
    let concurrent_rate = per_sec(per_writer * 8, started.elapsed());

    let total = store.head_position().await? as usize;
    let started = Instant::now();
    let (mut after, mut read) = (0, 0);
    loop {
        let page = store.read_all(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        read += page.len();
    }
    let read_rate = per_sec(read, started.elapsed());

    let started = Instant::now();
    let mut sub = store.subscribe_all(0);
    let mut seen = 0;
    while seen < total {
        let batch = sub
            .next()
            .await
            .ok_or_else(|| anyhow::anyhow!("subscription ended"))??;
        seen += batch.len();
    }
    let subscribe_rate = per_sec(seen, started.elapsed());

    Ok(Row {
        backend,
        single: single_rate,
        batch: batch_rate,
        concurrent: concurrent_rate,
        read_all: read_rate,
        subscribe: subscribe_rate,
    })
}

/// Runs a benchmark subcommand and prints its table.
pub async fn run(command: Command) -> anyhow::Result<()> {
    let (single, batches, sqlite_only, postgres_url) = match command {
        Command::Store {
            single,
            batches,
            sqlite_only,
            postgres_url,
        } => (single, batches, sqlite_only, postgres_url),
        Command::Search(args) => return super::bench_search::run(args).await,
    };
    let mut rows = Vec::new();

    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let (pool, backend) = open_pool(&url, 8).await?;
    let store =
        Arc::new(SqlEventStore::new(pool.clone(), backend, Duration::from_millis(250)).await?);
    eprintln!("sqlite: measuring…");
    rows.push(measure("sqlite (WAL, synchronous=FULL)", store, single, batches).await?);
    pool.close().await;

    if !sqlite_only {
        let admin = postgres_url.unwrap_or_else(admin_url);
        let db = ScratchDb::create(&admin, "bench").await?;
        let (pool, backend) = open_pool(&db.url, 16).await?;
        let store =
            Arc::new(SqlEventStore::new(pool.clone(), backend, Duration::from_millis(250)).await?);
        eprintln!("postgres: measuring…");
        let row = measure("postgres", store, single, batches).await;
        pool.close().await;
        db.drop_db().await?;
        rows.push(row?);
    }

    let mut text = String::from(
        "| backend | append 1 event/tx | append 100 events/tx | 8 writers, 1 event/tx | read_all | subscribe_all |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        text += &format!(
            "| {} | {:.0} ev/s | {:.0} ev/s | {:.0} ev/s | {:.0} ev/s | {:.0} ev/s |\n",
            r.backend, r.single, r.batch, r.concurrent, r.read_all, r.subscribe
        );
    }
    super::write_out(&text)
}
