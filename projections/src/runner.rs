//! The projection runner: checkpointed, transactional, gap-checked.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use sqlx::{AnyConnection, AnyPool};
use tokio::sync::watch;
use vigil_schemas::{EventStore, RecordedEvent, StoreError};

use crate::checkpoint::Checkpoint;

/// Events read per transaction when catching up.
const BATCH: usize = 500;
/// How often a follower (not the leader) reads the leader's checkpoint.
const FOLLOWER_POLL: Duration = Duration::from_millis(200);

/// Why a projection stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The read-model database failed.
    #[error("read-model database: {0}")]
    Database(#[from] sqlx::Error),
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A batch did not start where the checkpoint ends.
    #[error("projection `{name}`: batch starts at position {found}, checkpoint is at {checkpoint}")]
    Discontinuous {
        /// The projection.
        name: String,
        /// Its checkpoint.
        checkpoint: u64,
        /// The first position of the batch.
        found: u64,
    },
    /// Someone else moved the checkpoint while this runner worked (a concurrent rebuild, or a
    /// second replica).
    #[error("projection `{name}`: checkpoint moved away from {expected} under this runner")]
    CheckpointMoved {
        /// The projection.
        name: String,
        /// The checkpoint this runner expected.
        expected: u64,
    },
    /// An event could not be applied.
    #[error("projection `{name}` cannot apply event at position {position}: {reason}")]
    Apply {
        /// The projection.
        name: String,
        /// The event's position.
        position: u64,
        /// What went wrong.
        reason: String,
    },
    /// No such projection.
    #[error("no projection named `{0}`")]
    Unknown(String),
    /// A store outside the read-model database (a Lance vector table) failed.
    #[error("projection `{name}`: {reason}")]
    Outside {
        /// The projection.
        name: String,
        /// What went wrong.
        reason: String,
    },
}

/// One read model: the tables it owns and how an event changes them.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// Stable name, also the checkpoint's key.
    fn name(&self) -> &'static str;
    /// The tables it owns, emptied by a rebuild.
    fn tables(&self) -> &'static [&'static str];
    /// Applies one event inside the batch's transaction. Events the projection does not care
    /// about are ignored.
    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError>;

    /// Applies a whole batch to stores outside the read-model database (Lance tables), after
    /// every event of the batch went through [`Projection::apply`] and before the transaction
    /// (rows and checkpoint) commits. A failure rolls the transaction back, so the batch is
    /// applied again later: writes here must be idempotent (upserts keyed by id, deletes).
    async fn apply_outside(
        &self,
        _conn: &mut AnyConnection,
        _batch: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        Ok(())
    }

    /// Empties the stores outside the database, for a rebuild.
    async fn reset_outside(&self) -> Result<(), ProjectionError> {
        Ok(())
    }

    /// `(table, digest)` of each table outside the database, for rebuild and replay checks
    /// (see [`crate::digest`]).
    async fn outside_digests(&self) -> Result<Vec<(String, String)>, ProjectionError> {
        Ok(Vec::new())
    }
}

/// Live progress of one projection in this process, for lag reports and read-your-writes.
#[derive(Debug)]
pub struct ProjectionStatus {
    name: &'static str,
    position: watch::Sender<u64>,
    last_error: std::sync::Mutex<Option<String>>,
}

impl ProjectionStatus {
    /// The projection's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The last position this process committed (or read back from the checkpoint).
    pub fn position(&self) -> u64 {
        *self.position.borrow()
    }

    /// The last error, while the runner is backing off after it.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("status lock").clone()
    }

    /// Waits until the projection has applied `position`, or `timeout` passes.
    /// Returns whether it got there.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        let mut rx = self.position.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|p| *p >= position))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Runs one projection.
#[derive(Clone)]
pub struct ProjectionRunner {
    pool: AnyPool,
    store: Arc<dyn EventStore>,
    projection: Arc<dyn Projection>,
    status: Arc<ProjectionStatus>,
}

impl ProjectionRunner {
    /// A runner of `projection` from `store` into `pool`.
    pub fn new(pool: AnyPool, store: Arc<dyn EventStore>, projection: Arc<dyn Projection>) -> Self {
        let status = Arc::new(ProjectionStatus {
            name: projection.name(),
            position: watch::Sender::new(0),
            last_error: std::sync::Mutex::new(None),
        });
        Self {
            pool,
            store,
            projection,
            status,
        }
    }

    /// The projection's name.
    pub fn name(&self) -> &'static str {
        self.projection.name()
    }

    /// The projection it runs.
    pub fn projection(&self) -> &Arc<dyn Projection> {
        &self.projection
    }

    /// Live status, shared with the API.
    pub fn status(&self) -> Arc<ProjectionStatus> {
        self.status.clone()
    }

    /// The committed checkpoint (0 when the projection never ran).
    pub async fn checkpoint(&self) -> Result<u64, ProjectionError> {
        Ok(self.checkpoint_row().read().await?)
    }

    fn checkpoint_row(&self) -> Checkpoint {
        Checkpoint::new(self.pool.clone(), self.name())
    }

    async fn ensure_checkpoint_row(&self) -> Result<(), ProjectionError> {
        Ok(self.checkpoint_row().ensure().await?)
    }

    /// Applies one contiguous batch that must start right after `checkpoint`, committing rows
    /// and the new checkpoint together. Returns the new checkpoint.
    pub async fn apply_batch(
        &self,
        checkpoint: u64,
        batch: &[RecordedEvent],
    ) -> Result<u64, ProjectionError> {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return Ok(checkpoint);
        };
        if first.position != checkpoint + 1 {
            return Err(ProjectionError::Discontinuous {
                name: self.name().into(),
                checkpoint,
                found: first.position,
            });
        }
        let mut tx = self.pool.begin().await?;
        // The checkpoint moves first: it takes the write lock at once (SQLite) and refuses to
        // run if another runner moved the checkpoint since we read it.
        if !self
            .checkpoint_row()
            .advance_in(&mut *tx, checkpoint, last.position)
            .await?
        {
            return Err(ProjectionError::CheckpointMoved {
                name: self.name().into(),
                expected: checkpoint,
            });
        }
        for (expected, event) in (checkpoint + 1..).zip(batch) {
            if event.position != expected {
                return Err(ProjectionError::Discontinuous {
                    name: self.name().into(),
                    checkpoint: expected - 1,
                    found: event.position,
                });
            }
            self.projection.apply(&mut tx, event).await?;
        }
        self.projection.apply_outside(&mut tx, batch).await?;
        tx.commit().await?;
        self.status.position.send_replace(last.position);
        Ok(last.position)
    }

    /// Applies every stored event up to the store's head. Returns the checkpoint reached.
    pub async fn catch_up(&self) -> Result<u64, ProjectionError> {
        self.catch_up_until(u64::MAX).await
    }

    /// Applies stored events up to position `until` (or the head, if lower). Returns the
    /// checkpoint reached.
    pub async fn catch_up_until(&self, until: u64) -> Result<u64, ProjectionError> {
        self.ensure_checkpoint_row().await?;
        let mut checkpoint = self.checkpoint().await?;
        self.status.position.send_replace(checkpoint);
        while checkpoint < until {
            let mut batch = self.store.read_all(checkpoint, BATCH).await?;
            batch.retain(|e| e.position <= until);
            if batch.is_empty() {
                break;
            }
            checkpoint = self.apply_batch(checkpoint, &batch).await?;
        }
        Ok(checkpoint)
    }

    /// Empties the projection's tables, resets its checkpoint to 0 (in one transaction), and
    /// replays every event. Returns the checkpoint reached.
    pub async fn rebuild(&self) -> Result<u64, ProjectionError> {
        self.ensure_checkpoint_row().await?;
        let mut tx = self.pool.begin().await?;
        self.checkpoint_row().reset_in(&mut *tx).await?;
        for table in self.projection.tables() {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.projection.reset_outside().await?;
        self.status.position.send_replace(0);
        self.catch_up().await
    }

    /// Follows `$all` forever while this node leads the projection: catch up, then apply live
    /// batches. On an error it logs, waits (capped exponential backoff) and starts again from
    /// the committed checkpoint. While another node leads, it tracks that node's checkpoint.
    pub async fn run(self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            // Only the leader applies events; a follower tracks the leader's checkpoint so that
            // reads on this node still see how far the read model has got.
            let leadership = match crate::leader::try_lead(&self.pool, self.name()).await {
                Ok(Some(leadership)) => leadership,
                Ok(None) => {
                    if let Ok(checkpoint) = self.checkpoint().await {
                        self.status.position.send_replace(checkpoint);
                    }
                    tokio::time::sleep(FOLLOWER_POLL).await;
                    continue;
                }
                Err(err) => {
                    tracing::warn!(projection = self.name(), error = %err, "cannot check leadership");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            match self.follow().await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(err) => {
                    tracing::warn!(projection = self.name(), error = %err, "projection stopped; restarting");
                    *self.status.last_error.lock().expect("status lock") = Some(err.to_string());
                    drop(leadership);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn follow(&self) -> Result<(), ProjectionError> {
        let mut checkpoint = self.catch_up().await?;
        *self.status.last_error.lock().expect("status lock") = None;
        let mut live = self.store.subscribe_all(checkpoint);
        while let Some(batch) = live.next().await {
            checkpoint = self.apply_batch(checkpoint, &batch?).await?;
        }
        Ok(())
    }
}
