//! Shapes several endpoint groups share: boxes, evidence frames, zones, severities, response
//! actions, media links, and versions as ETags. Endpoint files import from here, never from
//! each other.

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};
use serde::{Deserialize, Serialize};
use vigil_projections::actions::ActionRow;
use vigil_projections::clips::ClipRow;
use vigil_schemas::events::{FrameRef, NormBox, Severity};

use super::error::ApiError;

/// A box in normalised coordinates (0–1, origin top-left).
#[derive(Debug, Clone, Object)]
pub struct BoxDto {
    /// Left.
    pub x1: f32,
    /// Top.
    pub y1: f32,
    /// Right.
    pub x2: f32,
    /// Bottom.
    pub y2: f32,
}

/// The API path of a stored media object.
pub fn media_url(sha: &str) -> String {
    format!("/api/v1/media/{sha}")
}

/// The DTO of a normalised box.
pub fn box_dto(b: &NormBox) -> BoxDto {
    BoxDto {
        x1: b.x1,
        y1: b.y1,
        x2: b.x2,
        y2: b.y2,
    }
}

/// `1 - distance / 2`, clamped to 0–1 (descriptors are unit-length: distances lie in 0–2).
pub fn similarity(distance: f64) -> f64 {
    (1.0 - distance / 2.0).clamp(0.0, 1.0)
}

/// How serious.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Deserialize)]
#[oai(rename = "Severity", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum SeverityParam {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl From<SeverityParam> for Severity {
    fn from(s: SeverityParam) -> Self {
        match s {
            SeverityParam::Low => Self::Low,
            SeverityParam::Medium => Self::Medium,
            SeverityParam::High => Self::High,
            SeverityParam::Critical => Self::Critical,
        }
    }
}

/// One frame of evidence.
#[derive(Debug, Clone, Object)]
pub struct EvidenceDto {
    /// SHA-256 of the JPEG in the media store.
    pub blob: String,
    /// Where to fetch it.
    pub url: String,
    /// The frame's number in its camera's sampled sequence.
    pub frame_number: u64,
    /// When it was captured.
    pub at: DateTime<Utc>,
    /// The persons the rules saw in it (incident evidence), to draw over it.
    pub persons: Vec<PersonBoxDto>,
}

/// A person in an evidence frame.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PersonBoxDto {
    /// Left edge, 0–1 of the frame's width.
    pub x1: f32,
    /// Top edge, 0–1 of the frame's height.
    pub y1: f32,
    /// Right edge.
    pub x2: f32,
    /// Bottom edge.
    pub y2: f32,
    /// The person's track, once confirmed.
    pub track_id: Option<String>,
}

/// The DTO of a frame events point at.
pub fn evidence_dto(f: FrameRef) -> EvidenceDto {
    EvidenceDto {
        url: media_url(&f.blob),
        blob: f.blob,
        frame_number: f.frame_number,
        at: f.at,
        persons: f
            .persons
            .into_iter()
            .map(|p| PersonBoxDto {
                x1: p.bbox.x1,
                y1: p.bbox.y1,
                x2: p.bbox.x2,
                y2: p.bbox.y2,
                track_id: p.track_id,
            })
            .collect(),
    }
}

/// One delivery of an action.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DeliveryDto {
    /// The webhook target.
    pub target: String,
    /// `pending`, `delivered`, `dead` (in the dead-letter queue), `discarded`.
    pub status: String,
    /// Attempts of the latest round.
    pub attempts: u32,
    /// The last failed attempt's error.
    pub last_error: Option<String>,
    /// The receiver's status when delivered.
    pub http_status: Option<u16>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A recorded clip: MP4 video cut from the camera's own stream, never re-encoded.
#[derive(Debug, Clone, Object)]
pub struct ClipDto {
    /// Its id (stream `clip-{id}`).
    pub id: String,
    /// The camera it shows.
    pub camera_id: String,
    /// Capture time of its first frame (a keyframe, up to the pre-roll before the incident).
    pub started_at: DateTime<Utc>,
    /// Capture time of its last frame.
    pub ended_at: DateTime<Utc>,
    /// Seconds it plays.
    pub duration_seconds: f64,
    /// `h264` or `h265`, as the camera sent it.
    pub codec: String,
    /// Picture width in pixels.
    pub width: u32,
    /// Picture height in pixels.
    pub height: u32,
    /// Frames in it.
    pub frames: u64,
    /// Size of the MP4 file.
    pub bytes: u64,
    /// SHA-256 of the MP4 file.
    pub media: String,
    /// Where to fetch it (`video/mp4`, with range requests, so a `<video>` element seeks).
    pub url: String,
    /// A segment of continuous recording (`clip_continuous`), not a clip cut around
    /// incidents or appearances.
    pub continuous: bool,
}

/// The DTO of a clip.
pub fn clip_dto(row: ClipRow) -> ClipDto {
    ClipDto {
        url: media_url(&row.media),
        id: row.id,
        camera_id: row.camera_id,
        started_at: row.started_at,
        ended_at: row.ended_at,
        duration_seconds: row.duration_seconds,
        codec: row.codec,
        width: row.width,
        height: row.height,
        frames: row.frames,
        bytes: row.bytes,
        media: row.media,
        continuous: row.continuous,
    }
}

/// A response action.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ActionDto {
    /// Id.
    pub action_id: String,
    /// What (`alert_security`, …).
    pub action: String,
    /// The incident.
    pub incident_id: Option<String>,
    /// The camera.
    pub camera_id: Option<String>,
    /// Free text for the receiver.
    pub notes: String,
    /// Requested by an automatic-action setting.
    pub automatic: bool,
    /// Who asked.
    pub requested_by: String,
    /// When.
    pub requested_at: DateTime<Utc>,
    /// One per target.
    pub deliveries: Vec<DeliveryDto>,
}

/// The DTO of an action row.
pub fn action_dto(row: ActionRow) -> ActionDto {
    ActionDto {
        action: row.action.as_str().into(),
        action_id: row.action_id,
        incident_id: row.incident_id,
        camera_id: row.camera_id,
        notes: row.notes,
        automatic: row.automatic,
        requested_by: row.requested_by,
        requested_at: row.requested_at,
        deliveries: row
            .deliveries
            .into_iter()
            .map(|d| DeliveryDto {
                target: d.target,
                status: d.status.as_str().into(),
                attempts: d.attempts,
                last_error: d.last_error,
                http_status: d.http_status,
                updated_at: d.updated_at,
            })
            .collect(),
    }
}

/// A point in normalised image coordinates (0–1).
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct PointDto {
    /// 0 (left) to 1 (right).
    #[oai(validator(minimum(value = "0"), maximum(value = "1")))]
    pub x: f64,
    /// 0 (top) to 1 (bottom).
    #[oai(validator(minimum(value = "0"), maximum(value = "1")))]
    pub y: f64,
}

/// A named polygon.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct ZoneDto {
    /// Unique within the camera.
    #[oai(validator(min_length = 1, max_length = 100, pattern = r"\S"))]
    pub name: String,
    /// 3 to 64 points.
    #[oai(validator(min_items = 3, max_items = 64))]
    pub polygon: Vec<PointDto>,
}

/// A version as an ETag: `"N"`.
pub fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// Parses `If-Match: "N"` (quotes optional, `W/` tolerated).
pub fn parse_if_match(value: Option<String>) -> Result<Option<u64>, ApiError> {
    let Some(raw) = value else { return Ok(None) };
    let trimmed = raw.trim().trim_start_matches("W/").trim_matches('"');
    trimmed.parse::<u64>().map(Some).map_err(|_| {
        ApiError::validation("If-Match", "must be an ETag this API returned, e.g. \"3\"")
    })
}
