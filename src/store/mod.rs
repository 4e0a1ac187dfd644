//! Event store adapters and database plumbing.
//!
//! [`sql::SqlEventStore`] serves SQLite (embedded default) and PostgreSQL through sqlx's `Any`
//! driver: the schema and almost every statement are shared, and the few differences are
//! switched on [`Backend`]. KurrentDB joins as a second adapter behind a cargo feature.

#[cfg(feature = "kurrentdb")]
pub mod kurrent;
pub mod scratch;
pub mod sql;

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use sql::SqlEventStore;
use vigil_schemas::{EventStore, NewEvent, StoreError};

use crate::config::{Config, mask_url};

/// Refuses a batch no adapter may store: an empty or `$`-prefixed stream name (`$` streams
/// belong to the store, e.g. `$all`), no events, or an event id twice.
pub(crate) fn check_batch(stream: &str, events: &[NewEvent]) -> Result<(), StoreError> {
    if stream.is_empty() || stream.starts_with('$') {
        return Err(StoreError::InvalidAppend(format!(
            "`{stream}` is not a writable stream name"
        )));
    }
    if events.is_empty() {
        return Err(StoreError::InvalidAppend(
            "a batch needs at least one event".into(),
        ));
    }
    let mut seen = HashSet::new();
    for event in events {
        if !seen.insert(event.event_id) {
            return Err(StoreError::InvalidAppend(format!(
                "event id {} appears twice",
                event.event_id
            )));
        }
    }
    Ok(())
}

/// The event store the config names: KurrentDB when `kurrentdb_url` is set (and the build has
/// the `kurrentdb` feature), otherwise the SQL store on `pool`.
pub async fn open_event_store(
    config: &Config,
    pool: AnyPool,
    backend: Backend,
) -> Result<std::sync::Arc<dyn EventStore>, StoreError> {
    Ok(open_event_stores(config, pool, backend).await?.0)
}

/// [`open_event_store`], with the same store as [`SqlEventStore`] when it is the SQL one (its
/// fenced appends serve leased cameras).
pub async fn open_event_stores(
    config: &Config,
    pool: AnyPool,
    backend: Backend,
) -> Result<(std::sync::Arc<dyn EventStore>, Option<SqlEventStore>), StoreError> {
    if !config.kurrentdb_url.is_empty() {
        #[cfg(feature = "kurrentdb")]
        {
            let store = kurrent::KurrentEventStore::connect(&config.kurrentdb_url).await?;
            tracing::info!(url = %mask_url(&config.kurrentdb_url), "event store: KurrentDB");
            return Ok((std::sync::Arc::new(store), None));
        }
        #[cfg(not(feature = "kurrentdb"))]
        return Err(StoreError::Backend(
            "kurrentdb_url is set but this build has no KurrentDB adapter: \
             build with `--features kurrentdb`"
                .into(),
        ));
    }
    let store = SqlEventStore::new(
        pool,
        backend,
        Duration::from_millis(config.poll_interval_ms),
    )
    .await?;
    Ok((std::sync::Arc::new(store.clone()), Some(store)))
}

/// Which SQL database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite: one file, WAL, `synchronous = FULL`.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// The backend of a database URL.
    pub fn of_url(url: &str) -> Result<Self, sqlx::Error> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Self::Postgres)
        } else {
            Err(sqlx::Error::Configuration(
                format!(
                    "database URL must start with sqlite: or postgres:, got `{}`",
                    mask_url(url)
                )
                .into(),
            ))
        }
    }
}

/// How long a caller of [`open_pool`] waits for a connection before the pool gives up.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a pool on `url`, creating a SQLite file (and its folder) when missing, and applies
/// every migration.
pub async fn open_pool(url: &str, max_connections: u32) -> Result<(AnyPool, Backend), sqlx::Error> {
    open_pool_with(url, max_connections, DEFAULT_ACQUIRE_TIMEOUT).await
}

/// [`open_pool`] whose callers wait at most `acquire_timeout` for a connection: while the
/// database is down, a request is refused after that long instead of hanging.
pub async fn open_pool_with(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<(AnyPool, Backend), sqlx::Error> {
    sqlx::any::install_default_drivers();
    let backend = Backend::of_url(url)?;
    let mut url = url.to_string();
    if backend == Backend::Sqlite {
        let path = url
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:");
        let path = path.split('?').next().unwrap_or_default();
        if let Some(parent) = std::path::Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(sqlx::Error::Io)?;
        }
        if !url.contains('?') {
            url.push_str("?mode=rwc");
        }
    }
    let options = AnyConnectOptions::from_str(&url)?;
    let pool = AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // WAL + FULL: a commit that returned is on disk, through kill -9 and power loss.
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                         PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await?;
    migrate(&pool, backend).await?;
    Ok((pool, backend))
}

/// Applies the migrations of `vigil_schemas::MIGRATIONS` that have not run yet, each with
/// the sections of `backend`'s dialect (`vigil_schemas::migration_sql`).
pub async fn migrate(pool: &AnyPool, backend: Backend) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    if backend == Backend::Postgres {
        // One migrator at a time across every process sharing the database.
        conn.execute("SELECT pg_advisory_lock(74114)").await?;
    }
    let result = async {
        conn.execute(
            "CREATE TABLE IF NOT EXISTS vigil_migrations \
             (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
        )
        .await?;
        for (version, name, sql) in vigil_schemas::MIGRATIONS {
            let done = sqlx::query("SELECT 1 FROM vigil_migrations WHERE version = $1")
                .bind(*version)
                .fetch_optional(&mut *conn)
                .await?
                .is_some();
            if done {
                continue;
            }
            tracing::info!(version, name, "applying migration");
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            let dialect = match backend {
                Backend::Sqlite => vigil_schemas::SqlDialect::Sqlite,
                Backend::Postgres => vigil_schemas::SqlDialect::Postgres,
            };
            let sql = vigil_schemas::migration_sql(sql, dialect);
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO vigil_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(*version)
            .bind(*name)
            .bind(vigil_projections::format_time(chrono::Utc::now()))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        Ok::<_, sqlx::Error>(())
    }
    .await;
    if backend == Backend::Postgres {
        conn.execute("SELECT pg_advisory_unlock(74114)").await?;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords_only() {
        assert_eq!(
            mask_url("postgres://u:secret@h:5432/db"),
            "postgres://u:****@h:5432/db"
        );
        assert_eq!(mask_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(mask_url("sqlite://data/vigil.db"), "sqlite://data/vigil.db");
    }

    #[test]
    fn backend_from_url() {
        assert_eq!(Backend::of_url("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::of_url("postgresql://h/db").unwrap(),
            Backend::Postgres
        );
        assert!(Backend::of_url("mysql://h/db").is_err());
    }
}
