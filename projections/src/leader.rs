//! One leader per projection (and per relay) across the nodes sharing a database.
//!
//! On PostgreSQL a leader holds a session advisory lock, keyed by the projection's name, on a
//! connection it keeps for as long as it leads; if its process dies the lock goes with the
//! connection and another node takes over. SQLite is one machine's file: every runner leads,
//! and the checkpoint compare-and-set still keeps two processes from applying a batch twice.

use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, AnyPool, Row};

/// Held while leading; dropping it gives leadership up.
pub struct Leadership {
    _connection: Option<AnyConnection>,
}

/// The advisory-lock key of a name: the first 8 bytes of its SHA-256.
pub fn lock_key(name: &str) -> i64 {
    let digest = Sha256::digest(format!("vigil-leader:{name}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Tries to become the leader for `name`; `None` when another node leads.
pub async fn try_lead(pool: &AnyPool, name: &str) -> Result<Option<Leadership>, sqlx::Error> {
    let mut connection = pool.acquire().await?;
    if connection.backend_name() != "PostgreSQL" {
        return Ok(Some(Leadership { _connection: None }));
    }
    let locked: bool = sqlx::query("SELECT pg_try_advisory_lock($1)")
        .bind(lock_key(name))
        .fetch_one(&mut *connection)
        .await?
        .try_get(0)?;
    if locked {
        // Take the connection out of the pool while it holds the lock; closing it (or the
        // process dying) releases the lock.
        Ok(Some(Leadership {
            _connection: Some(connection.detach()),
        }))
    } else {
        Ok(None)
    }
}
