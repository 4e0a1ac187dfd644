//! Checkpoints: how far a subscriber of `$all` got, one row of `projection_checkpoints` per
//! subscriber. Projections (the runner), the Kafka and MQTT relays and the action dispatcher
//! each keep one, and move it only by compare-and-set, so a second runner of the same name
//! (another node, a concurrent rebuild) fails instead of applying or sending events twice.

use sqlx::{AnyPool, Row};

use crate::format_time;

/// The checkpoint of one subscriber, by name.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pool: AnyPool,
    name: String,
}

impl Checkpoint {
    /// The checkpoint called `name` in `pool`'s database.
    pub fn new(pool: AnyPool, name: impl Into<String>) -> Self {
        Self {
            pool,
            name: name.into(),
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates the row at 0 unless it exists (each subscriber does it before it starts).
    pub async fn ensure(&self) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO projection_checkpoints (name, position, updated_at) VALUES ($1, 0, $2) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&self.name)
        .bind(format_time(chrono::Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The committed position (0 when the subscriber never ran).
    pub async fn read(&self) -> Result<u64, sqlx::Error> {
        let row = sqlx::query("SELECT position FROM projection_checkpoints WHERE name = $1")
            .bind(&self.name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => row.try_get::<i64, _>(0)? as u64,
            None => 0,
        })
    }

    /// Moves it from `from` to `to` by compare-and-set. `Ok(false)` when it was not at
    /// `from`: another runner moved it, and the caller must not go on as if it had.
    pub async fn advance(&self, from: u64, to: u64) -> Result<bool, sqlx::Error> {
        self.advance_in(&self.pool, from, to).await
    }

    /// [`advance`](Self::advance) inside a transaction (or on any executor), so that the
    /// checkpoint moves with the rows a batch writes.
    pub async fn advance_in<'e, E>(
        &self,
        executor: E,
        from: u64,
        to: u64,
    ) -> Result<bool, sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let moved = sqlx::query(
            "UPDATE projection_checkpoints SET position = $1, updated_at = $2 \
             WHERE name = $3 AND position = $4",
        )
        .bind(to as i64)
        .bind(format_time(chrono::Utc::now()))
        .bind(&self.name)
        .bind(from as i64)
        .execute(executor)
        .await?;
        Ok(moved.rows_affected() == 1)
    }

    /// Sets it back to 0 whatever it was (a rebuild, inside the transaction that empties the
    /// projection's tables).
    pub async fn reset_in<'e, E>(&self, executor: E) -> Result<(), sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        sqlx::query(
            "UPDATE projection_checkpoints SET position = 0, updated_at = $1 WHERE name = $2",
        )
        .bind(format_time(chrono::Utc::now()))
        .bind(&self.name)
        .execute(executor)
        .await?;
        Ok(())
    }
}
