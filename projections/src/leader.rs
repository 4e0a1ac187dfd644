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

/// Runs `follow` for as long as this node leads `name`, forever: waits while another node leads,
/// and after an error (or a leadership check failing) waits a capped exponential backoff
/// (200 ms doubling to 10 s) and starts `follow` again. `what` names the subscriber in logs.
pub async fn lead_forever<F, Fut, E>(pool: &AnyPool, name: &str, what: &str, mut follow: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    use std::time::Duration;
    let first = Duration::from_millis(200);
    let mut backoff = first;
    loop {
        let leadership = match try_lead(pool, name).await {
            Ok(Some(leadership)) => leadership,
            Ok(None) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(err) => {
                tracing::warn!(error = %err, "{what} cannot check leadership");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        match follow().await {
            Ok(()) => backoff = first,
            Err(err) => {
                tracing::warn!(error = %err, "{what} stopped; restarting from its checkpoint");
                drop(leadership);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
