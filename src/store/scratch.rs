//! Throwaway PostgreSQL databases for tests and benchmarks: one fresh database per use,
//! created on a server the caller names and dropped afterwards.

use sqlx::{Connection, Executor, PgConnection};

/// The server tests and benchmarks use unless `VIGIL_TEST_POSTGRES_URL` says otherwise.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The admin URL from `VIGIL_TEST_POSTGRES_URL`, else [`DEFAULT_ADMIN_URL`].
pub fn admin_url() -> String {
    std::env::var("VIGIL_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string())
}

/// A fresh database; dropped by [`ScratchDb::drop_db`].
#[derive(Debug)]
pub struct ScratchDb {
    admin_url: String,
    /// The database's name.
    pub name: String,
    /// URL of the new database.
    pub url: String,
}

impl ScratchDb {
    /// Creates `vigil_{prefix}_{random}` on the server of `admin_url`.
    pub async fn create(admin_url: &str, prefix: &str) -> Result<Self, sqlx::Error> {
        let mut conn = PgConnection::connect(admin_url).await.map_err(|e| {
            sqlx::Error::Configuration(
                format!(
                    "cannot reach PostgreSQL at {}: {e}. Start it (scripts/setup does) or set \
                     VIGIL_TEST_POSTGRES_URL",
                    super::mask_url(admin_url)
                )
                .into(),
            )
        })?;
        let name = format!("vigil_{prefix}_{}", uuid::Uuid::now_v7().simple());
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await?;
        conn.close().await?;
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url, |(base, _)| base);
        Ok(Self {
            admin_url: admin_url.to_string(),
            url: format!("{base}/{name}"),
            name,
        })
    }

    /// Drops the database, disconnecting whoever still uses it.
    pub async fn drop_db(self) -> Result<(), sqlx::Error> {
        let mut conn = PgConnection::connect(&self.admin_url).await?;
        conn.execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .await?;
        conn.close().await
    }
}
