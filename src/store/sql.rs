//! The SQL event store (SQLite and PostgreSQL).
//!
//! Every append first locks the single row of `event_log_head`, so appends commit one at a
//! time and take consecutive positions: the log is gapless and a reader can never see position
//! N+1 before N. (A PostgreSQL sequence hands out numbers at insert time, and transactions
//! commit in any order, so a reader polling `position > checkpoint` would skip an event that
//! commits late.) Subscribers check that contiguity and fail loudly on a hole.
//!
//! Live subscriptions share one reader: a subscription catches up with its own reads, then
//! takes the batches of the store's tail task, which alone reads what is new (woken by this
//! process's appends, or every `poll_interval` for other processes'). A hundred WebSocket
//! clients and a dozen projections cost one query per append, not one each. A subscription
//! that falls behind the tail's buffer, or finds a hole between what it has and the tail's
//! batch, reads the difference itself.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use tokio::sync::{Mutex, broadcast, watch};
use uuid::Uuid;
use vigil_projections::format_time;
use vigil_schemas::{
    AppendOutcome, Direction, EventStore, EventSubscription, ExpectedVersion, NewEvent,
    RecordedEvent, StoreError,
};

use super::Backend;

/// Events per page a subscription reads.
const SUBSCRIPTION_BATCH: usize = 500;
/// Batches the tail keeps for subscriptions that have not taken them yet.
const TAIL_BUFFER: usize = 256;

/// What the tail task tells live subscriptions.
#[derive(Clone)]
enum Tail {
    /// The events after the previous batch.
    Events(Arc<Vec<RecordedEvent>>),
    /// Reading failed (the database is down): live subscriptions end with this error.
    Failed(String),
}
/// Events per INSERT statement (11 parameters each, well under both backends' limits).
const INSERT_CHUNK: usize = 200;

const COLUMNS: &str = "position, event_id, stream, stream_version, event_type, schema_version, \
                       occurred_at, recorded_at, correlation_id, causation_id, actor, payload";

fn backend_err(err: sqlx::Error) -> StoreError {
    StoreError::Backend(err.to_string())
}

struct Inner {
    pool: AnyPool,
    backend: Backend,
    /// Newest position appended by this process; wakes subscriptions at once.
    head: watch::Sender<u64>,
    /// SQLite has one writer; queueing here beats spinning on SQLITE_BUSY.
    sqlite_writer: Mutex<()>,
    /// How often a live subscription looks for events appended by other processes.
    poll_interval: Duration,
    /// The tail task's channel while it runs (it stops when no subscription listens).
    tail: std::sync::Mutex<Option<broadcast::Sender<Tail>>>,
    /// Pages of the log read (`read_all`).
    log_reads: std::sync::atomic::AtomicU64,
}

/// An [`EventStore`] in a SQL database. Cheap to clone.
#[derive(Clone)]
pub struct SqlEventStore {
    inner: Arc<Inner>,
}

impl SqlEventStore {
    /// A store over an open, migrated pool.
    pub async fn new(
        pool: AnyPool,
        backend: Backend,
        poll_interval: Duration,
    ) -> Result<Self, StoreError> {
        let store = Self {
            inner: Arc::new(Inner {
                pool,
                backend,
                head: watch::Sender::new(0),
                sqlite_writer: Mutex::new(()),
                poll_interval,
                tail: std::sync::Mutex::new(None),
                log_reads: std::sync::atomic::AtomicU64::new(0),
            }),
        };
        let head = store.head_position().await?;
        store.inner.head.send_replace(head);
        Ok(store)
    }

    /// The pool underneath (shared with the read models in the embedded default).
    pub fn pool(&self) -> &AnyPool {
        &self.inner.pool
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// Pages of the log this store read since it was opened (subscriptions' reads included).
    pub fn log_reads(&self) -> u64 {
        self.inner
            .log_reads
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A receiver of the tail's batches, starting the tail task when none runs.
    fn tail(&self) -> broadcast::Receiver<Tail> {
        let mut running = self.inner.tail.lock().expect("tail lock");
        if let Some(tx) = running.as_ref() {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(TAIL_BUFFER);
        *running = Some(tx.clone());
        let last = *self.inner.head.borrow();
        tokio::spawn(run_tail(Arc::downgrade(&self.inner), tx, last));
        rx
    }
}

/// Reads what is appended after `last` and hands it to every live subscription, until no
/// subscription listens or the store is dropped.
async fn run_tail(inner: std::sync::Weak<Inner>, tx: broadcast::Sender<Tail>, mut last: u64) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        {
            let mut running = strong.tail.lock().expect("tail lock");
            if tx.receiver_count() == 0 {
                *running = None;
                return;
            }
        }
        let store = SqlEventStore { inner: strong };
        let mut wake = store.inner.head.subscribe();
        wake.mark_unchanged();
        let poll = store.inner.poll_interval;
        match store.read_all(last, SUBSCRIPTION_BATCH).await {
            Ok(batch) if !batch.is_empty() => {
                let contiguous = batch
                    .iter()
                    .enumerate()
                    .all(|(i, e)| e.position == last + 1 + i as u64);
                if !contiguous {
                    // A hole: every live subscription reads for itself and reports it.
                    let _ = tx.send(Tail::Failed(format!(
                        "the tail found a hole after position {last}"
                    )));
                    *store.inner.tail.lock().expect("tail lock") = None;
                    return;
                }
                last = batch.last().expect("non-empty").position;
                let _ = tx.send(Tail::Events(Arc::new(batch)));
            }
            Ok(_) => {
                drop(store);
                // Wake on an append in this process, or poll for other processes' appends.
                let _ = tokio::time::timeout(poll, wake.changed()).await;
            }
            Err(err) => {
                let _ = tx.send(Tail::Failed(err.to_string()));
                drop(store);
                tokio::time::sleep(poll).await;
            }
        }
    }
}

fn decode_row(row: &AnyRow) -> Result<RecordedEvent, StoreError> {
    let position = row.try_get::<i64, _>("position").map_err(backend_err)? as u64;
    let corrupt = |reason: String| StoreError::Corrupt { position, reason };
    let text = |name: &str| {
        row.try_get::<String, _>(name)
            .map_err(|e| corrupt(format!("{name}: {e}")))
    };
    let uuid =
        |name: &str, v: String| Uuid::parse_str(&v).map_err(|e| corrupt(format!("{name}: {e}")));
    let time = |name: &str, v: String| {
        DateTime::parse_from_rfc3339(&v)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| corrupt(format!("{name}: {e}")))
    };
    let causation: Option<String> = row
        .try_get("causation_id")
        .map_err(|e| corrupt(format!("causation_id: {e}")))?;
    Ok(RecordedEvent {
        event_id: uuid("event_id", text("event_id")?)?,
        stream: text("stream")?,
        stream_version: row
            .try_get::<i64, _>("stream_version")
            .map_err(backend_err)? as u64,
        position,
        event_type: text("event_type")?,
        schema_version: row
            .try_get::<i64, _>("schema_version")
            .map_err(backend_err)? as u32,
        occurred_at: time("occurred_at", text("occurred_at")?)?,
        recorded_at: time("recorded_at", text("recorded_at")?)?,
        correlation_id: uuid("correlation_id", text("correlation_id")?)?,
        causation_id: causation.map(|c| uuid("causation_id", c)).transpose()?,
        actor: text("actor")?,
        payload: serde_json::from_str(&text("payload")?)
            .map_err(|e| corrupt(format!("payload: {e}")))?,
    })
}

/// A camera lease an append must hold at commit (`src/cluster.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseFence {
    /// The camera whose events are appended.
    pub camera: String,
    /// The node appending.
    pub node: String,
    /// The token of the lease the camera's actor started with.
    pub token: u64,
}

/// The database's clock in milliseconds since the epoch, as SQL: leases are compared with
/// one clock, whatever the nodes' clocks say.
pub fn now_ms_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
    }
}

impl SqlEventStore {
    /// Appends like [`EventStore::append`], only while `fence.node` holds the lease of
    /// `fence.camera` with `fence.token`, unexpired by the database's clock; else
    /// [`StoreError::Fenced`] and nothing is appended. The lease row is share-locked until
    /// commit, so no other node takes the camera between the check and the commit.
    pub async fn append_fenced(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        fence: &LeaseFence,
    ) -> Result<AppendOutcome, StoreError> {
        self.append_checked(stream, expected, events, Some(fence))
            .await
    }

    async fn append_checked(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        fence: Option<&LeaseFence>,
    ) -> Result<AppendOutcome, StoreError> {
        super::check_batch(stream, &events)?;
        let _writer = match self.inner.backend {
            Backend::Sqlite => Some(self.inner.sqlite_writer.lock().await),
            Backend::Postgres => None,
        };
        let mut tx = self.inner.pool.begin().await.map_err(backend_err)?;

        // 1. Take the log's write lock; it is held until commit.
        let head: i64 = sqlx::query(
            "UPDATE event_log_head SET position = position WHERE id = 1 RETURNING position",
        )
        .fetch_one(&mut *tx)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(backend_err)?;

        // 1b. The writer's camera lease, where it writes for a leased camera.
        if let Some(fence) = fence {
            let lock = match self.inner.backend {
                Backend::Postgres => " FOR SHARE",
                Backend::Sqlite => "",
            };
            let held = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT token FROM camera_leases WHERE camera_id = $1 AND owner = $2 \
                 AND token = $3 AND expires_ms > {}{lock}",
                now_ms_sql(self.inner.backend)
            )))
            .bind(fence.camera.as_str())
            .bind(fence.node.as_str())
            .bind(fence.token as i64)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend_err)?;
            if held.is_none() {
                return Err(StoreError::Fenced {
                    camera: fence.camera.clone(),
                    node: fence.node.clone(),
                    token: fence.token,
                });
            }
        }

        // 2. A retry of a stored batch gets its original positions back.
        let placeholders: Vec<String> = (1..=events.len()).map(|i| format!("${i}")).collect();
        let mut lookup = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT event_id, stream, stream_version, position FROM events WHERE event_id IN ({}) ORDER BY position",
            placeholders.join(", ")
        )));
        for event in &events {
            lookup = lookup.bind(event.event_id.to_string());
        }
        let stored = lookup.fetch_all(&mut *tx).await.map_err(backend_err)?;
        if !stored.is_empty() {
            let stored: Vec<(String, String, i64, i64)> = stored
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
                .collect::<Result<_, sqlx::Error>>()
                .map_err(backend_err)?;
            let is_retry = stored.len() == events.len()
                && stored
                    .iter()
                    .zip(&events)
                    .enumerate()
                    .all(|(i, (row, event))| {
                        row.0 == event.event_id.to_string()
                            && row.1 == stream
                            && row.3 == stored[0].3 + i as i64
                            && row.2 == stored[0].2 + i as i64
                    });
            if !is_retry {
                let clash = Uuid::parse_str(&stored[0].0).unwrap_or_default();
                return Err(StoreError::IdempotencyMismatch { event_id: clash });
            }
            let last = stored.last().expect("non-empty");
            return Ok(AppendOutcome {
                first_position: stored[0].3 as u64,
                last_position: last.3 as u64,
                stream_version: last.2 as u64,
            });
        }

        // 3. Optimistic concurrency on the stream.
        let actual: i64 = sqlx::query("SELECT version FROM event_streams WHERE stream = $1")
            .bind(stream)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend_err)?
            .map(|row| row.try_get(0))
            .transpose()
            .map_err(backend_err)?
            .unwrap_or(0);
        if !expected.admits(actual as u64) {
            return Err(StoreError::WrongExpectedVersion {
                stream: stream.to_string(),
                expected,
                actual: actual as u64,
            });
        }

        // 4. Write.
        let recorded_at = format_time(Utc::now());
        for (chunk_index, chunk) in events.chunks(INSERT_CHUNK).enumerate() {
            let offset = (chunk_index * INSERT_CHUNK) as i64;
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let p = i * 12;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                        p + 1,
                        p + 2,
                        p + 3,
                        p + 4,
                        p + 5,
                        p + 6,
                        p + 7,
                        p + 8,
                        p + 9,
                        p + 10,
                        p + 11,
                        p + 12
                    )
                })
                .collect();
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO events ({COLUMNS}) VALUES {}",
                values.join(", ")
            )));
            for (i, event) in chunk.iter().enumerate() {
                let n = offset + i as i64 + 1;
                insert = insert
                    .bind(head + n)
                    .bind(event.event_id.to_string())
                    .bind(stream)
                    .bind(actual + n)
                    .bind(event.event_type.clone())
                    .bind(i64::from(event.schema_version))
                    .bind(format_time(event.occurred_at))
                    .bind(recorded_at.clone())
                    .bind(event.meta.correlation_id.to_string())
                    .bind(event.meta.causation_id.map(|c| c.to_string()))
                    .bind(event.meta.actor.clone())
                    .bind(event.payload.to_string());
            }
            insert.execute(&mut *tx).await.map_err(backend_err)?;
        }
        let count = events.len() as i64;
        sqlx::query(
            "INSERT INTO event_streams (stream, version) VALUES ($1, $2) \
             ON CONFLICT (stream) DO UPDATE SET version = excluded.version",
        )
        .bind(stream)
        .bind(actual + count)
        .execute(&mut *tx)
        .await
        .map_err(backend_err)?;
        sqlx::query("UPDATE event_log_head SET position = $1 WHERE id = 1")
            .bind(head + count)
            .execute(&mut *tx)
            .await
            .map_err(backend_err)?;
        tx.commit().await.map_err(backend_err)?;

        let last = (head + count) as u64;
        self.inner.head.send_if_modified(|h| {
            let newer = last > *h;
            if newer {
                *h = last;
            }
            newer
        });
        Ok(AppendOutcome {
            first_position: head as u64 + 1,
            last_position: last,
            stream_version: (actual + count) as u64,
        })
    }
}

#[async_trait]
impl EventStore for SqlEventStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        self.append_checked(stream, expected, events, None).await
    }

    async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        limit: usize,
        direction: Direction,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let sql = match direction {
            Direction::Forward => format!(
                "SELECT {COLUMNS} FROM events WHERE stream = $1 AND stream_version >= $2 \
                 ORDER BY stream_version ASC LIMIT $3"
            ),
            Direction::Backward => format!(
                "SELECT {COLUMNS} FROM events WHERE stream = $1 AND stream_version <= $2 \
                 ORDER BY stream_version DESC LIMIT $3"
            ),
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(stream)
            .bind(from)
            .bind(limit as i64)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(backend_err)?;
        rows.iter().map(decode_row).collect()
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner
            .log_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM events WHERE position > $1 ORDER BY position ASC LIMIT $2"
        )))
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(limit as i64)
        .fetch_all(&self.inner.pool)
        .await
        .map_err(backend_err)?;
        rows.iter().map(decode_row).collect()
    }

    async fn read_all_recorded(
        &self,
        after: u64,
        limit: usize,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // Times are stored as fixed-width RFC 3339 text, so text comparison is time comparison.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM events WHERE position > $1 AND recorded_at >= $2 AND recorded_at < $3 \
             ORDER BY position ASC LIMIT $4"
        )))
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(from.map(format_time).unwrap_or_default())
        .bind(to.map(format_time).unwrap_or_else(|| "~".to_string()))
        .bind(limit as i64)
        .fetch_all(&self.inner.pool)
        .await
        .map_err(backend_err)?;
        rows.iter().map(decode_row).collect()
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        let head: i64 = sqlx::query("SELECT position FROM event_log_head WHERE id = 1")
            .fetch_one(&self.inner.pool)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(backend_err)?;
        Ok(head as u64)
    }

    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        let version: Option<i64> =
            sqlx::query("SELECT version FROM event_streams WHERE stream = $1")
                .bind(stream)
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(backend_err)?
                .map(|row| row.try_get(0))
                .transpose()
                .map_err(backend_err)?;
        Ok(version.unwrap_or(0) as u64)
    }

    fn subscribe_all(&self, after: u64) -> EventSubscription {
        struct State {
            store: SqlEventStore,
            last: u64,
            /// The tail's batches, taken once caught up.
            tail: broadcast::Receiver<Tail>,
            live: bool,
            failed: bool,
        }
        let state = State {
            // Listening before the first read: nothing appended meanwhile is missed.
            tail: self.tail(),
            store: self.clone(),
            last: after,
            live: false,
            failed: false,
        };
        futures::stream::unfold(state, |mut s| async move {
            if s.failed {
                return None;
            }
            loop {
                if !s.live {
                    let batch = match s.store.read_all(s.last, SUBSCRIPTION_BATCH).await {
                        Ok(batch) => batch,
                        Err(err) => {
                            s.failed = true;
                            return Some((Err(err), s));
                        }
                    };
                    if batch.is_empty() {
                        s.live = true;
                        continue;
                    }
                    for (i, event) in batch.iter().enumerate() {
                        let expected = s.last + 1 + i as u64;
                        if event.position != expected {
                            s.failed = true;
                            return Some((
                                Err(StoreError::Gap {
                                    expected,
                                    found: event.position,
                                }),
                                s,
                            ));
                        }
                    }
                    s.last = batch.last().expect("non-empty").position;
                    return Some((Ok(batch), s));
                }
                match s.tail.recv().await {
                    Ok(Tail::Events(batch)) => {
                        let fresh: Vec<RecordedEvent> = batch
                            .iter()
                            .filter(|e| e.position > s.last)
                            .cloned()
                            .collect();
                        match fresh.first() {
                            None => continue,
                            // Some came between what it read and this batch: read them.
                            Some(first) if first.position != s.last + 1 => s.live = false,
                            Some(_) => {
                                s.last = fresh.last().expect("non-empty").position;
                                return Some((Ok(fresh), s));
                            }
                        }
                    }
                    Ok(Tail::Failed(reason)) => {
                        s.failed = true;
                        return Some((Err(StoreError::Backend(reason)), s));
                    }
                    // Fell behind the tail's buffer: read what it missed.
                    Err(broadcast::error::RecvError::Lagged(_)) => s.live = false,
                    // The tail stopped (it found a hole): listen to a new one, read meanwhile.
                    Err(broadcast::error::RecvError::Closed) => {
                        s.tail = s.store.tail();
                        s.live = false;
                    }
                }
            }
        })
        .boxed()
    }
}
