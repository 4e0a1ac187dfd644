//! Clip retention: what the disk budget, the age limit, deleted incidents and erased subjects
//! take.
//!
//! A clip is deleted by `clip.deleted` on its stream (which stays for audit) and then its file.
//! The budget and the age limit delete the oldest clips first and never one an open incident
//! (active, investigating, escalated) holds. Several nodes may run this at once: the clip's
//! stream version decides which one records the deletion.

use std::time::Duration;

use chrono::Utc;
use vigil_projections::clips::{
    ClipRow, clip_bytes, clips_of_tracks, orphaned_clips, unpinned_clips,
};
use vigil_schemas::events::{ClipDeleted, clip_stream};
use vigil_schemas::{ClipEvent, DomainEvent, EventMeta, ExpectedVersion, StoreError};

use super::ServiceError;
use crate::app::App;

/// How often [`keep_within_budget`] runs.
const EVERY: Duration = Duration::from_secs(60);

/// Clips looked at per query.
const BATCH: u32 = 100;
/// How long to wait for the read model to drop what was deleted.
const WAIT: Duration = Duration::from_secs(30);

/// What retention keeps clips within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipLimits {
    /// Bytes all clips may take.
    pub budget_bytes: u64,
    /// How old a clip may get (by its end), if there is a limit.
    pub max_age: Option<chrono::Duration>,
}

impl ClipLimits {
    /// Only a budget.
    pub fn budget(bytes: u64) -> Self {
        Self {
            budget_bytes: bytes,
            max_age: None,
        }
    }

    /// The configured limits (`clip_budget_mib`, `clip_max_age_days`).
    pub fn configured(config: &crate::config::Config) -> Self {
        Self {
            budget_bytes: config.clip_budget_mib.saturating_mul(1 << 20),
            max_age: (config.clip_max_age_days > 0)
                .then(|| chrono::Duration::days(config.clip_max_age_days.min(100_000) as i64)),
        }
    }
}

/// What a retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClipRetention {
    /// Clips deleted.
    pub deleted: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Who deletes clips.
pub fn retention_meta() -> EventMeta {
    EventMeta {
        correlation_id: uuid::Uuid::now_v7(),
        causation_id: None,
        actor: "system:clip-retention".into(),
    }
}

/// Records that `clip` is deleted for `reason` and removes its file. `false` when another
/// node deleted it first.
async fn delete(
    app: &App,
    clip: &ClipRow,
    reason: &str,
    meta: &EventMeta,
) -> Result<Option<u64>, ServiceError> {
    let deleted = ClipEvent::Deleted(ClipDeleted {
        clip_id: clip.id.clone(),
        camera_id: clip.camera_id.clone(),
        media: clip.media.clone(),
        reason: reason.to_string(),
    });
    let position = match app
        .store()
        .append(
            &clip_stream(&clip.id),
            ExpectedVersion::Exact(1),
            vec![deleted.to_new_event(Utc::now(), meta)],
        )
        .await
    {
        Ok(done) => done.last_position,
        Err(StoreError::WrongExpectedVersion { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    app.ingest()
        .blobs()
        .delete(&clip.media)
        .await
        .map_err(ServiceError::internal)?;
    Ok(Some(position))
}

/// Deletes the clips of `batch` for `reason` (while `keep_going` says so), then waits for the
/// read model to drop them.
async fn delete_batch(
    app: &App,
    batch: &[ClipRow],
    reason: &str,
    meta: &EventMeta,
    mut keep_going: impl FnMut(&ClipRow) -> bool,
    done: &mut ClipRetention,
) -> Result<bool, ServiceError> {
    let mut last = None;
    for clip in batch {
        if !keep_going(clip) {
            break;
        }
        if let Some(position) = delete(app, clip, reason, meta).await? {
            done.deleted += 1;
            done.bytes += clip.bytes;
            last = Some(position);
        }
    }
    if let Some(position) = last {
        let status = app
            .projection_status("clips")
            .ok_or_else(|| ServiceError::internal("the clips projection is not running"))?;
        if !status.wait_for(position, WAIT).await {
            return Err(ServiceError::unavailable(
                "the clip read model is not catching up",
            ));
        }
    }
    Ok(last.is_some())
}

/// Deletes the clips whose incidents are all deleted, then the clips older than the age
/// limit, then the oldest clips while all clips take more than the budget; never a clip an
/// open incident holds.
pub async fn enforce(
    app: &App,
    limits: ClipLimits,
    meta: &EventMeta,
) -> Result<ClipRetention, ServiceError> {
    let mut done = ClipRetention::default();
    loop {
        let batch = orphaned_clips(app.pool(), BATCH).await?;
        if batch.is_empty()
            || !delete_batch(app, &batch, "incidents_deleted", meta, |_| true, &mut done).await?
        {
            break;
        }
    }
    if let Some(max_age) = limits.max_age {
        let cutoff = Utc::now() - max_age;
        loop {
            let batch = unpinned_clips(app.pool(), Some(cutoff), BATCH).await?;
            if batch.is_empty()
                || !delete_batch(app, &batch, "age", meta, |_| true, &mut done).await?
            {
                break;
            }
        }
    }
    let budget_bytes = limits.budget_bytes;
    let mut total = clip_bytes(app.pool()).await?;
    while total > budget_bytes {
        let batch = unpinned_clips(app.pool(), None, BATCH).await?;
        let mut left = total;
        let over = |clip: &ClipRow| {
            let go = left > budget_bytes;
            left = left.saturating_sub(clip.bytes);
            go
        };
        if batch.is_empty() || !delete_batch(app, &batch, "budget", meta, over, &mut done).await? {
            break;
        }
        total = clip_bytes(app.pool()).await?;
    }
    if done.deleted > 0 {
        tracing::info!(
            deleted = done.deleted,
            bytes = done.bytes,
            "clip retention ran"
        );
    }
    Ok(done)
}

/// Deletes every clip that shows one of `track_ids` (an erased subject's matches), whatever
/// holds it, with reason `subject_erased`.
pub async fn erase_tracks(
    app: &App,
    track_ids: &[String],
    meta: &EventMeta,
) -> Result<ClipRetention, ServiceError> {
    let mut done = ClipRetention::default();
    if track_ids.is_empty() {
        return Ok(done);
    }
    let mut clips: Vec<ClipRow> = clips_of_tracks(app.pool(), track_ids)
        .await?
        .into_iter()
        .map(|(_, clip)| clip)
        .collect();
    clips.sort_by(|a, b| a.id.cmp(&b.id));
    clips.dedup_by(|a, b| a.id == b.id);
    delete_batch(app, &clips, "subject_erased", meta, |_| true, &mut done).await?;
    Ok(done)
}

/// Runs [`enforce`] with the configured limits (`clip_budget_mib`, `clip_max_age_days`) now
/// and every minute, forever (a background task of `vigil serve`).
pub async fn keep_within_budget(app: App) {
    let limits = ClipLimits::configured(app.config());
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        if let Err(err) = enforce(&app, limits, &retention_meta()).await {
            tracing::warn!(error = %err, "clip retention did not finish; trying again later");
        }
    }
}
