//! The read models' test harness: a database per test on SQLite (in memory) and on PostgreSQL
//! (a scratch database on `VIGIL_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`), with every migration applied, and events made
//! by hand.

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use vigil_schemas::{RecordedEvent, SqlDialect};

use crate::runner::Projection;

/// A migrated database that drops itself (PostgreSQL) when the test calls `done`.
pub(crate) struct TestDb {
    pub(crate) pool: AnyPool,
    scratch: Option<(String, String)>,
}

impl TestDb {
    pub(crate) async fn open(dialect: SqlDialect) -> Self {
        sqlx::any::install_default_drivers();
        match dialect {
            SqlDialect::Sqlite => {
                // One connection: every connection to `:memory:` is a database of its own.
                let pool = AnyPoolOptions::new()
                    .max_connections(1)
                    .connect_with(AnyConnectOptions::from_str("sqlite::memory:").unwrap())
                    .await
                    .expect("in-memory SQLite");
                migrate(&pool, dialect).await;
                Self {
                    pool,
                    scratch: None,
                }
            }
            SqlDialect::Postgres => {
                static N: AtomicU32 = AtomicU32::new(0);
                let admin = std::env::var("VIGIL_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
                let name = format!(
                    "vigil_test_projections_{}_{}_{}",
                    std::process::id(),
                    Utc::now().timestamp_micros(),
                    N.fetch_add(1, Ordering::Relaxed)
                );
                let admin_pool = AnyPoolOptions::new()
                    .max_connections(1)
                    .connect(&admin)
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "cannot reach PostgreSQL at {admin}: {e}. Start it \
                             (scripts/setup) or set VIGIL_TEST_POSTGRES_URL"
                        )
                    });
                admin_pool
                    .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .expect("create scratch database");
                admin_pool.close().await;
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
                let pool = AnyPoolOptions::new()
                    .max_connections(2)
                    .connect(&format!("{base}/{name}"))
                    .await
                    .expect("scratch database");
                migrate(&pool, dialect).await;
                Self {
                    pool,
                    scratch: Some((admin, name)),
                }
            }
        }
    }

    /// Drops a PostgreSQL scratch database (a failed test leaves it to `scripts/setup`).
    pub(crate) async fn done(self) {
        self.pool.close().await;
        if let Some((admin, name)) = self.scratch {
            let admin_pool = AnyPoolOptions::new()
                .max_connections(1)
                .connect(&admin)
                .await
                .expect("admin connection");
            admin_pool
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await
                .expect("drop scratch database");
        }
    }
}

async fn migrate(pool: &AnyPool, dialect: SqlDialect) {
    for (version, _, sql) in vigil_schemas::MIGRATIONS {
        sqlx::raw_sql(sqlx::AssertSqlSafe(vigil_schemas::migration_sql(
            sql, dialect,
        )))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("migration {version} on {dialect:?}: {e}"));
    }
}

/// `2025-01-{day}T{hh}:{mm}:00Z` plus `secs` seconds.
pub(crate) fn t(day: u32, hh: u32, mm: u32, secs: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("2025-01-{day:02}T{hh:02}:{mm:02}:00Z"))
        .unwrap()
        .with_timezone(&Utc)
        + chrono::Duration::seconds(secs)
}

/// Builds recorded events with consecutive global positions.
#[derive(Default)]
pub(crate) struct Log {
    pub(crate) events: Vec<RecordedEvent>,
}

impl Log {
    pub(crate) fn push(
        &mut self,
        stream: &str,
        event_type: &str,
        at: DateTime<Utc>,
        actor: &str,
        payload: serde_json::Value,
    ) {
        let position = self.events.len() as u64 + 1;
        let version = self.events.iter().filter(|e| e.stream == stream).count() as u64 + 1;
        let event = serde_json::json!({
            "event_id": format!("00000000-0000-7000-8000-{position:012x}"),
            "stream": stream,
            "stream_version": version,
            "position": position,
            "event_type": event_type,
            "schema_version": 1,
            "occurred_at": at,
            "recorded_at": at,
            "correlation_id": format!("00000000-0000-7000-9000-{position:012x}"),
            "causation_id": null,
            "actor": actor,
            "payload": payload,
        });
        self.events
            .push(serde_json::from_value(event).expect("a recorded event"));
    }
}

/// Applies `events` through `projection` in one transaction.
pub(crate) async fn apply(pool: &AnyPool, projection: &dyn Projection, events: &[RecordedEvent]) {
    let mut tx = pool.begin().await.unwrap();
    for event in events {
        projection.apply(&mut tx, event).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// Runs a scenario on both backends.
macro_rules! on_both {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = $crate::testing::TestDb::open(
                        vigil_schemas::SqlDialect::Sqlite,
                    )
                    .await;
                    super::$name(&db.pool).await;
                    db.done().await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = $crate::testing::TestDb::open(
                        vigil_schemas::SqlDialect::Postgres,
                    )
                    .await;
                    super::$name(&db.pool).await;
                    db.done().await;
                }
            )+
        }
    };
}
pub(crate) use on_both;
