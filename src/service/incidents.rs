//! Incidents: retention (deleting old incidents and the media only they showed) and
//! reanalysis (the models look at an incident's evidence again).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use vigil_actors::CommandError;
use vigil_actors::aggregates::incident::{Incident, IncidentCommand, IncidentError};
use vigil_actors::pool::Want;
use vigil_projections::incidents::{IncidentRow, evidence_in_use, incidents_opened_before};
use vigil_schemas::EventMeta;
use vigil_schemas::events::IncidentEvidenceAdded;

use super::visibility::wait_visible;
use super::{Refusal, ServiceError, command_error};
use crate::app::App;

/// Evidence frames a reanalysis looks at (the newest).
const REANALYSE_FRAMES: usize = 5;
/// Incidents deleted between two waits for the read model.
const RETENTION_BATCH: u32 = 500;
/// How long retention waits for the read model to drop a batch.
const RETENTION_WAIT: Duration = Duration::from_secs(30);

/// Incident `id` does not exist (or may not be seen).
pub fn incident_not_found(id: &str) -> ServiceError {
    ServiceError::not_found(
        "INCIDENT_NOT_FOUND",
        format!("incident `{id}` does not exist"),
    )
}

/// Maps an incident command's failure.
pub fn incident_error(err: CommandError<IncidentError>, id: &str) -> ServiceError {
    command_error(err, "incident", |e| match e {
        IncidentError::NotFound(_) => incident_not_found(id),
        IncidentError::AlreadyExists(id) => ServiceError::refused(
            Refusal::Conflict,
            "INCIDENT_EXISTS",
            format!("incident `{id}` already exists"),
            json!({"id": id}),
        ),
        IncidentError::InvalidTransition { from, to } => ServiceError::refused(
            Refusal::Conflict,
            "INVALID_TRANSITION",
            format!("an incident that is `{from}` cannot become `{to}`"),
            json!({"from": from, "to": to}),
        ),
        IncidentError::Closed(status) => closed(status),
        IncidentError::Invalid(reason) => {
            let field = reason
                .split_whitespace()
                .next()
                .unwrap_or("body")
                .to_string();
            ServiceError::invalid(field, reason)
        }
    })
}

/// `INCIDENT_CLOSED`: a resolved or dismissed incident takes no more evidence.
fn closed(status: &str) -> ServiceError {
    ServiceError::refused(
        Refusal::Conflict,
        "INCIDENT_CLOSED",
        format!("the incident is `{status}`; it takes no more evidence"),
        json!({"status": status}),
    )
}

/// What retention did.
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    /// Incidents deleted.
    pub deleted: u64,
    /// Media files deleted (evidence no remaining incident shows).
    pub media_deleted: u64,
    /// Incidents opened before this were deleted.
    pub cutoff: DateTime<Utc>,
}

/// Deletes every incident opened more than `days` days ago: `incident.deleted` on its stream
/// (which stays for audit), then its evidence files unless a remaining incident shows them.
pub async fn delete_older_than(
    app: &App,
    meta: &EventMeta,
    days: u32,
) -> Result<Retention, ServiceError> {
    let cutoff = Utc::now() - chrono::Duration::days(i64::from(days));
    let reason = format!("retention: opened more than {days} days ago");
    let mut deleted = 0u64;
    let mut blobs: Vec<String> = vec![];
    let mut last_position = None;
    loop {
        let batch = incidents_opened_before(app.pool(), cutoff, RETENTION_BATCH).await?;
        if batch.is_empty() {
            break;
        }
        let mut progressed = false;
        for (id, evidence) in batch {
            let command = IncidentCommand::Delete {
                id: id.clone(),
                reason: reason.clone(),
            };
            match app
                .handler()
                .execute::<Incident>(&id, command, meta, None)
                .await
            {
                Ok(done) => {
                    deleted += 1;
                    progressed = true;
                    last_position = done.position.or(last_position);
                    blobs.extend(evidence);
                }
                // Deleted meanwhile by someone else.
                Err(CommandError::Domain(IncidentError::NotFound(_))) => {}
                Err(e) => return Err(incident_error(e, &id)),
            }
        }
        // Let the read model drop what was deleted before reading the next batch.
        let status = app
            .projection_status("incidents")
            .ok_or_else(|| ServiceError::internal("incidents projection is not running"))?;
        if let Some(p) = last_position
            && !status.wait_for(p, RETENTION_WAIT).await
        {
            return Err(ServiceError::unavailable(
                "the incident read model is not catching up",
            ));
        }
        if !progressed {
            break;
        }
    }
    blobs.sort();
    blobs.dedup();
    let mut media_deleted = 0;
    for blob in blobs {
        if !evidence_in_use(app.pool(), &blob).await?
            && app
                .ingest()
                .blobs()
                .delete(&blob)
                .await
                .map_err(ServiceError::internal)?
        {
            media_deleted += 1;
        }
    }
    // Clips of the deleted incidents go with them (and the budget is checked).
    let limits = super::clips::ClipLimits::configured(app.config());
    let clips = super::clips::enforce(app, limits, meta).await?;
    tracing::info!(deleted, media_deleted, clips = clips.deleted, %cutoff, "incident retention ran");
    Ok(Retention {
        deleted,
        media_deleted,
        cutoff,
    })
}

/// What the models saw on one evidence frame looked at again.
#[derive(Debug, Clone, PartialEq)]
pub struct ReanalysedFrame {
    /// The frame's media.
    pub blob: String,
    /// Persons at or above the camera's minimum person score.
    pub persons: u32,
    /// Faces.
    pub faces: u32,
    /// The best of those persons' scores (0 without any).
    pub max_person_score: f32,
}

/// What a reanalysis recorded as new evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Reanalysis {
    /// One per frame found in the media store, newest first.
    pub frames: Vec<ReanalysedFrame>,
    /// The evidence's reasoning.
    pub reasoning: String,
    /// The mean of the frames' best person scores.
    pub confidence: f64,
}

/// Runs the person and face models over the newest evidence frames (at most five) of
/// `incident` and records what they see as new evidence (`incident.evidence_added`), with the
/// frames' own time. Refused for a resolved or dismissed incident, and when none of its frames
/// is in the media store any more.
pub async fn reanalyse(
    app: &App,
    meta: &EventMeta,
    incident: &IncidentRow,
) -> Result<Reanalysis, ServiceError> {
    if incident.status.is_final() {
        return Err(closed(incident.status.as_str()));
    }
    let min_score = incident
        .camera_id
        .as_deref()
        .map_or(0.5, |c| app.ingest().calibration_for(c).min_person_score)
        as f32;
    let mut frames = vec![];
    let mut refs = vec![];
    for frame in incident.evidence.iter().rev().take(REANALYSE_FRAMES) {
        let Some(bytes) = app
            .ingest()
            .blobs()
            .get(&frame.blob)
            .await
            .map_err(ServiceError::internal)?
        else {
            continue;
        };
        let image = tokio::task::spawn_blocking(move || vigil_actors::frame::decode(&bytes))
            .await
            .map_err(ServiceError::internal)?
            .map_err(|e| ServiceError::internal(format!("stored evidence does not decode: {e}")))?;
        let want = Want {
            faces: true,
            always_faces: true,
            embeddings: false,
            face_min_pixels: 0,
            person_regions: None,
        };
        let analysis = app
            .ingest()
            .pool()
            .analyze(Arc::new(image), want)
            .await
            .map_err(|e| {
                ServiceError::refused(
                    Refusal::Unavailable,
                    "MODELS_UNAVAILABLE",
                    format!("the models cannot analyse now: {e}"),
                    json!({}),
                )
            })?;
        let persons: Vec<f32> = analysis
            .persons
            .iter()
            .map(|p| p.score)
            .filter(|s| *s >= min_score)
            .collect();
        frames.push(ReanalysedFrame {
            blob: frame.blob.clone(),
            persons: persons.len() as u32,
            faces: analysis.faces.len() as u32,
            max_person_score: persons.iter().copied().fold(0.0, f32::max),
        });
        refs.push(frame.clone());
    }
    if frames.is_empty() {
        return Err(ServiceError::invalid(
            "evidence",
            "none of the incident's evidence frames is in the media store any more",
        ));
    }
    let confidence = frames
        .iter()
        .map(|f| f64::from(f.max_person_score))
        .sum::<f64>()
        / frames.len() as f64;
    let counts: Vec<String> = frames
        .iter()
        .map(|f| format!("{} persons, {} faces", f.persons, f.faces))
        .collect();
    let reasoning = format!(
        "reanalysis of {} evidence frames: {}",
        frames.len(),
        counts.join("; ")
    );
    // The evidence is old frames looked at again: its time is theirs, not now.
    let observed_at = refs.iter().map(|f| f.at).max().unwrap_or_else(Utc::now);
    let command = IncidentCommand::AddEvidence(IncidentEvidenceAdded {
        incident_id: incident.id.clone(),
        confidence: confidence.clamp(0.0, 1.0),
        reasoning: reasoning.clone(),
        track_ids: vec![],
        evidence: refs,
        observed_at,
    });
    let done = app
        .handler()
        .execute::<Incident>(&incident.id, command, meta, None)
        .await
        .map_err(|e| incident_error(e, &incident.id))?;
    wait_visible(app, done.position).await;
    Ok(Reanalysis {
        frames,
        reasoning,
        confidence,
    })
}
