//! Domain events: past-tense facts, one payload struct per type, grouped by aggregate.
//!
//! A stored event names its type (`camera.registered`) and schema version (`1`). Both are
//! frozen: a new payload shape is a new version, and [`DomainEvent::decode`] upcasts an old
//! version's raw JSON before deserialising it. Golden fixtures under `schemas/fixtures/` keep
//! every version loadable.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::envelope::{EventMeta, NewEvent, RecordedEvent};

/// Why a stored event could not be turned back into a domain event.
#[derive(Debug, thiserror::Error)]
pub enum EventDecodeError {
    /// The type name is not one this enum owns.
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    /// The type is known but this schema version is not (newer than this build?).
    #[error("unknown schema version {version} for event type `{event_type}`")]
    UnknownVersion {
        /// The event type.
        event_type: String,
        /// The stored version.
        version: u32,
    },
    /// The payload does not match the schema.
    #[error("payload of `{event_type}` v{version} does not match its schema: {source}")]
    Payload {
        /// The event type.
        event_type: String,
        /// The stored version.
        version: u32,
        /// The deserialisation error.
        source: serde_json::Error,
    },
}

/// A family of domain events (one per aggregate) that can be stored and loaded.
pub trait DomainEvent: Sized {
    /// Every `(type, current schema version)` this family owns.
    const TYPES: &'static [(&'static str, u32)];

    /// The frozen type name of this event.
    fn event_type(&self) -> &'static str;
    /// The schema version this build writes for this event.
    fn schema_version(&self) -> u32;
    /// The payload as JSON.
    fn to_payload(&self) -> Value;
    /// Loads an event from its stored type, version and payload, upcasting old versions.
    fn decode(
        event_type: &str,
        schema_version: u32,
        payload: &Value,
    ) -> Result<Self, EventDecodeError>;

    /// Whether `event_type` belongs to this family: its family name (`camera` of
    /// `camera.registered`) is this family's. A type of the family this build does not know
    /// belongs to it too, and fails to decode rather than being skipped.
    fn owns(event_type: &str) -> bool {
        let family = |t: &str| t.split('.').next().unwrap_or_default().to_string();
        Self::TYPES
            .first()
            .is_some_and(|(t, _)| family(t) == family(event_type))
    }

    /// The typed decode of a stored event: this family's event, upcast to the current version,
    /// or `Ok(None)` when the event belongs to another family. Consumers of `$all` match on
    /// the result instead of routing by type name.
    fn from_recorded(event: &RecordedEvent) -> Result<Option<Self>, EventDecodeError> {
        if !Self::owns(&event.event_type) {
            return Ok(None);
        }
        Self::decode(&event.event_type, event.schema_version, &event.payload).map(Some)
    }

    /// Wraps this event for appending, with a fresh UUID v7 and the given time and metadata.
    fn to_new_event(&self, occurred_at: DateTime<Utc>, meta: &EventMeta) -> NewEvent {
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: self.event_type().to_string(),
            schema_version: self.schema_version(),
            occurred_at,
            meta: meta.clone(),
            payload: self.to_payload(),
        }
    }
}

/// Declares an event family: an enum whose variants wrap payload structs, with frozen names.
macro_rules! event_family {
    ($(#[$doc:meta])* $name:ident { $($variant:ident($payload:ty) = $type_name:literal v $version:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $(
                #[doc = concat!("`", $type_name, "`, schema version ", stringify!($version), ".")]
                $variant($payload),
            )+
        }

        impl DomainEvent for $name {
            const TYPES: &'static [(&'static str, u32)] = &[$(($type_name, $version)),+];

            fn event_type(&self) -> &'static str {
                match self { $(Self::$variant(_) => $type_name),+ }
            }

            fn schema_version(&self) -> u32 {
                match self { $(Self::$variant(_) => $version),+ }
            }

            fn to_payload(&self) -> Value {
                let value = match self { $(Self::$variant(p) => serde_json::to_value(p)),+ };
                value.expect("event payloads are plain data and always serialise")
            }

            fn decode(event_type: &str, schema_version: u32, payload: &Value)
                -> Result<Self, EventDecodeError> {
                let payload = upcast(event_type, schema_version, payload)?;
                match event_type {
                    $($type_name => serde_json::from_value::<$payload>(payload)
                        .map(Self::$variant)
                        .map_err(|source| EventDecodeError::Payload {
                            event_type: event_type.to_string(),
                            version: schema_version,
                            source,
                        }),)+
                    other => Err(EventDecodeError::UnknownType(other.to_string())),
                }
            }
        }
    };
}

/// Brings a stored payload of any known version up to the current version of its type.
///
/// Every type is at version 1 today, so only version 1 passes. When a type moves to v2, its
/// v1 → v2 rewrite of the raw JSON goes here and the v1 fixture keeps proving it.
fn upcast(event_type: &str, version: u32, payload: &Value) -> Result<Value, EventDecodeError> {
    let current = all_event_types()
        .find(|(name, _)| *name == event_type)
        .map(|(_, v)| v)
        .ok_or_else(|| EventDecodeError::UnknownType(event_type.to_string()))?;
    if version == current {
        Ok(payload.clone())
    } else {
        Err(EventDecodeError::UnknownVersion {
            event_type: event_type.to_string(),
            version,
        })
    }
}

/// Every event type Vigil stores, with its current schema version.
pub fn all_event_types() -> impl Iterator<Item = (&'static str, u32)> {
    CameraEvent::TYPES
        .iter()
        .chain(ApiKeyEvent::TYPES)
        .chain(AppearanceEvent::TYPES)
        .chain(IncidentEvent::TYPES)
        .chain(CalibrationEvent::TYPES)
        .chain(ActionEvent::TYPES)
        .chain(SubjectEvent::TYPES)
        .chain(AlertEvent::TYPES)
        .copied()
}

/// Any stored event, decoded into its family: for consumers of `$all` that take several
/// families (relays, the WebSocket hub, the supervisor) and match on them.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyEvent {
    /// `camera.*`.
    Camera(CameraEvent),
    /// `apikey.*`.
    ApiKey(ApiKeyEvent),
    /// `appearance.*`.
    Appearance(AppearanceEvent),
    /// `incident.*`.
    Incident(IncidentEvent),
    /// `calibration.*`.
    Calibration(CalibrationEvent),
    /// `action.*`.
    Action(ActionEvent),
    /// `subject.*`.
    Subject(SubjectEvent),
    /// `alert.*`.
    Alert(AlertEvent),
}

impl AnyEvent {
    /// Decodes a stored type, version and payload of any family, upcasting old versions.
    pub fn decode(
        event_type: &str,
        schema_version: u32,
        payload: &Value,
    ) -> Result<Self, EventDecodeError> {
        let v = schema_version;
        Ok(if CameraEvent::owns(event_type) {
            Self::Camera(CameraEvent::decode(event_type, v, payload)?)
        } else if ApiKeyEvent::owns(event_type) {
            Self::ApiKey(ApiKeyEvent::decode(event_type, v, payload)?)
        } else if AppearanceEvent::owns(event_type) {
            Self::Appearance(AppearanceEvent::decode(event_type, v, payload)?)
        } else if IncidentEvent::owns(event_type) {
            Self::Incident(IncidentEvent::decode(event_type, v, payload)?)
        } else if CalibrationEvent::owns(event_type) {
            Self::Calibration(CalibrationEvent::decode(event_type, v, payload)?)
        } else if ActionEvent::owns(event_type) {
            Self::Action(ActionEvent::decode(event_type, v, payload)?)
        } else if SubjectEvent::owns(event_type) {
            Self::Subject(SubjectEvent::decode(event_type, v, payload)?)
        } else if AlertEvent::owns(event_type) {
            Self::Alert(AlertEvent::decode(event_type, v, payload)?)
        } else {
            return Err(EventDecodeError::UnknownType(event_type.to_string()));
        })
    }

    /// The typed decode of a stored event of any family.
    pub fn from_recorded(event: &RecordedEvent) -> Result<Self, EventDecodeError> {
        Self::decode(&event.event_type, event.schema_version, &event.payload)
    }

    /// The payload as the current version's JSON.
    pub fn to_payload(&self) -> Value {
        match self {
            Self::Camera(e) => e.to_payload(),
            Self::ApiKey(e) => e.to_payload(),
            Self::Appearance(e) => e.to_payload(),
            Self::Incident(e) => e.to_payload(),
            Self::Calibration(e) => e.to_payload(),
            Self::Action(e) => e.to_payload(),
            Self::Subject(e) => e.to_payload(),
            Self::Alert(e) => e.to_payload(),
        }
    }
}

/// Decodes a stored payload of any family (upcasting old versions) and gives it back as the
/// current version's JSON.
pub fn decode_payload(
    event_type: &str,
    schema_version: u32,
    payload: &Value,
) -> Result<Value, EventDecodeError> {
    AnyEvent::decode(event_type, schema_version, payload).map(|e| e.to_payload())
}

/// The stream that holds one camera's ingest status changes. It is apart from `camera-{id}`
/// so that status changes do not move the camera's version (its HTTP ETag).
pub fn camera_status_stream(camera_id: &str) -> String {
    format!("camerastatus-{camera_id}")
}

/// The stream that holds one track's events: a person's appearance on one camera.
pub fn track_stream(camera_id: &str, track_id: &str) -> String {
    format!("track-{camera_id}-{track_id}")
}

/// The stream that holds one camera's events.
pub fn camera_stream(camera_id: &str) -> String {
    format!("camera-{camera_id}")
}

/// The stream that holds one API key's events.
pub fn apikey_stream(key_id: &str) -> String {
    format!("apikey-{key_id}")
}

/// Which analyses a camera runs. Every flag defaults to off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CameraFeatures {
    /// Count people and raise an incident when a zone gets crowded.
    pub crowd: bool,
    /// Only enrolled, authorised people may be seen.
    pub authorised: bool,
    /// A critical area: every incident is raised at high severity.
    pub critical: bool,
    /// Detect people lying still (sleeping or collapsed).
    pub sleep: bool,
    /// Detect theft-like behaviour.
    pub theft: bool,
    /// Raise an incident when a person enters a zone.
    pub intrusion: bool,
    /// Raise an incident when a person stays in a zone too long.
    pub loitering: bool,
}

/// A point in normalised image coordinates: (0, 0) is top-left, (1, 1) bottom-right.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Point {
    /// Horizontal, 0 ≤ x ≤ 1.
    pub x: f64,
    /// Vertical, 0 ≤ y ≤ 1.
    pub y: f64,
}

/// A named polygon over the camera's image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    /// Unique within the camera.
    pub name: String,
    /// At least three points, in order.
    pub polygon: Vec<Point>,
}

/// A camera was added to the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CameraRegistered {
    /// The camera's id.
    pub camera_id: String,
    /// Human-readable name.
    pub name: String,
    /// Where frames come from: `rtsp://…`, `http(s)://…` (MJPEG or snapshot), or `push`.
    pub source: String,
    /// Whether the camera is ingested.
    pub enabled: bool,
    /// Frames per second sampled for analysis.
    pub sample_fps: f64,
    /// Which analyses run.
    pub features: CameraFeatures,
    /// Free text that rules and descriptions use.
    pub prompt: String,
    /// Named zones.
    pub zones: Vec<Zone>,
}

/// Some of a camera's settings changed. Each present field holds its new value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CameraUpdated {
    /// The camera's id.
    pub camera_id: String,
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// New enabled flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// New sampling rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_fps: Option<f64>,
    /// The complete new feature set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<CameraFeatures>,
    /// New prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The complete new zone list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zones: Option<Vec<Zone>>,
}

/// A camera was removed from the registry. Its stream stays for audit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CameraRemoved {
    /// The camera's id.
    pub camera_id: String,
}

/// What a camera's ingest is doing, as its actor last reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CameraStatus {
    /// Frames are arriving.
    Online,
    /// The source was working and was lost; the actor keeps reconnecting with backoff.
    Offline,
    /// The source could not be opened or read, or the actor failed; it is retried with backoff.
    Error,
    /// Ingest was stopped (the camera was stopped, disabled or removed, or the server shut down).
    Stopped,
    /// The source, a video file that does not loop, was read to its end; the camera is not
    /// restarted until its settings change.
    Ended,
}

impl CameraStatus {
    /// The wire name (`online`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
            Self::Error => "error",
            Self::Stopped => "stopped",
            Self::Ended => "ended",
        }
    }
}

/// A camera's ingest changed state: its actor started, lost or regained its source, failed,
/// or stopped. Stored on `camerastatus-{id}`, not `camera-{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CameraStatusChanged {
    /// The camera's id.
    pub camera_id: String,
    /// The new state.
    pub status: CameraStatus,
    /// Why, in words (`connected: h264 768x576`, `connection refused`, …).
    pub reason: String,
}

event_family! {
    /// Events of the camera aggregate (stream `camera-{id}`).
    CameraEvent {
        Registered(CameraRegistered) = "camera.registered" v 1,
        Updated(CameraUpdated) = "camera.updated" v 1,
        Removed(CameraRemoved) = "camera.removed" v 1,
        StatusChanged(CameraStatusChanged) = "camera.status_changed" v 1,
    }
}

/// A box in normalised image coordinates: (0, 0) is top-left, (1, 1) bottom-right.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NormBox {
    /// Left edge.
    pub x1: f32,
    /// Top edge.
    pub y1: f32,
    /// Right edge.
    pub x2: f32,
    /// Bottom edge.
    pub y2: f32,
}

/// One sampled frame that an event points at: its JPEG in the blob store, never its bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FrameRef {
    /// SHA-256 (hex) of the JPEG in the blob store (`GET /api/v1/blobs/{sha256}`).
    pub blob: String,
    /// The frame's number in the camera's sampled sequence since its actor started.
    pub frame_number: u64,
    /// When the frame was captured.
    pub at: DateTime<Utc>,
}

/// A person's first frame in a track: the track was confirmed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AppearanceStarted {
    /// The camera.
    pub camera_id: String,
    /// The track (unique across the camera's life).
    pub track_id: String,
    /// When the person was first seen.
    pub started_at: DateTime<Utc>,
    /// The person's box in that frame.
    pub bbox: NormBox,
    /// Detector confidence for that box.
    pub score: f32,
    /// The entry frame.
    pub entry_frame: FrameRef,
    /// Zones the person stood in (by the bottom-centre of the box) on entry.
    pub zones: Vec<String>,
}

/// A stay in one zone during a track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ZoneVisit {
    /// The zone's name.
    pub zone: String,
    /// First frame inside.
    pub entered_at: DateTime<Utc>,
    /// Last frame inside.
    pub exited_at: DateTime<Utc>,
}

/// The clearest face seen during a track, with its descriptor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BestFace {
    /// SHA-256 (hex) of the face crop (JPEG) in the blob store.
    pub crop: String,
    /// Face detector confidence.
    pub score: f32,
    /// The face's box in its frame.
    pub bbox: NormBox,
    /// When that frame was captured.
    pub at: DateTime<Utc>,
    /// 128-d face descriptor (dlib ResNet; same person < 0.6 Euclidean distance).
    pub embedding: Vec<f32>,
}

/// A track ended: the person left, was lost for longer than the tracker waits, or ingest
/// stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AppearanceEnded {
    /// The camera.
    pub camera_id: String,
    /// The track.
    pub track_id: String,
    /// When the person was first seen.
    pub started_at: DateTime<Utc>,
    /// When the person was last seen.
    pub ended_at: DateTime<Utc>,
    /// Seconds between first and last sighting.
    pub dwell_seconds: f64,
    /// Sampled frames the person was detected in.
    pub frames: u32,
    /// The person's last box.
    pub last_bbox: NormBox,
    /// The last frame the person was seen in.
    pub exit_frame: FrameRef,
    /// Zones entered, with entry and exit times, in order of entry.
    pub zones: Vec<ZoneVisit>,
    /// The clearest face, when one was seen.
    pub best_face: Option<BestFace>,
    /// Why it ended: `lost` (not seen for a while, or the source was lost), `stopped` (ingest
    /// stopped) or `ended` (the camera's video file ended).
    pub reason: String,
}

event_family! {
    /// Events of a track (stream `track-{camera}-{track}`): one person's appearance.
    AppearanceEvent {
        Started(AppearanceStarted) = "appearance.started" v 1,
        Ended(AppearanceEnded) = "appearance.ended" v 1,
    }
}

/// Requests per minute an API key may make, per tier of endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// Ordinary API calls.
    pub standard: u32,
    /// Frames, snapshots and other media.
    pub media: u32,
    /// Searches (by face, by time range).
    pub search: u32,
    /// Frame ingest (push and analyse).
    pub ingest: u32,
}

/// An API key was issued. Events never carry the secret: only its keyed hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiKeyIssued {
    /// The key's id (also its stream's suffix).
    pub key_id: String,
    /// Human-readable name.
    pub name: String,
    /// What the key may do, e.g. `read:cameras`, `admin`.
    pub scopes: Vec<String>,
    /// Lower-case hex HMAC-SHA256 of the secret under the node's key pepper.
    pub key_hash: String,
    /// Requests per minute per tier.
    pub rate_limits: RateLimits,
    /// When the key stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// The cameras the key is restricted to; empty means every camera.
    pub camera_ids: Vec<String>,
}

/// Some of an API key's settings changed. Each present field holds its new value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiKeyUpdated {
    /// The key's id.
    pub key_id: String,
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// New rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimits>,
    /// New camera restriction (empty: every camera).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera_ids: Option<Vec<String>>,
    /// Enabled or disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// An API key was revoked for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiKeyRevoked {
    /// The key's id.
    pub key_id: String,
}

event_family! {
    /// Events of the API key aggregate (stream `apikey-{id}`).
    ApiKeyEvent {
        Issued(ApiKeyIssued) = "apikey.issued" v 1,
        Updated(ApiKeyUpdated) = "apikey.updated" v 1,
        Revoked(ApiKeyRevoked) = "apikey.revoked" v 1,
    }
}

/// The stream that holds one incident's events.
pub fn incident_stream(incident_id: &str) -> String {
    format!("incident-{incident_id}")
}

/// The stream that holds one response action's events.
pub fn action_stream(action_id: &str) -> String {
    format!("action-{action_id}")
}

/// The one stream that holds the calibration (rule thresholds) of the whole installation.
pub const CALIBRATION_STREAM: &str = "calibration-global";

/// How serious an incident is. Ordered: `low < medium < high < critical`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Needs attention.
    Medium,
    /// Needs attention now.
    High,
    /// Needs everyone now.
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 4] = [Self::Low, Self::Medium, Self::High, Self::Critical];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// What an incident is about: the rule (or outside system) that raised it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// Too many people in the frame or a zone for too long.
    Crowd,
    /// A person entered a restricted zone.
    Intrusion,
    /// A person stayed in a zone too long.
    Loitering,
    /// A face that matches no authorised person.
    Unauthorised,
    /// A face that matches a watch-listed subject.
    PersonOfInterest,
    /// A person lying still for a while.
    Sleep,
    /// A person who went from upright to lying quickly and stayed down.
    Fall,
    /// Theft-like behaviour.
    Theft,
    /// Raised by an outside monitoring system (Alertmanager).
    External,
}

impl IncidentKind {
    /// Every kind.
    pub const ALL: [IncidentKind; 9] = [
        Self::Crowd,
        Self::Intrusion,
        Self::Loitering,
        Self::Unauthorised,
        Self::PersonOfInterest,
        Self::Sleep,
        Self::Fall,
        Self::Theft,
        Self::External,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crowd => "crowd",
            Self::Intrusion => "intrusion",
            Self::Loitering => "loitering",
            Self::Unauthorised => "unauthorised",
            Self::PersonOfInterest => "person_of_interest",
            Self::Sleep => "sleep",
            Self::Fall => "fall",
            Self::Theft => "theft",
            Self::External => "external",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Where an incident is in its workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// Raised, nobody has taken it yet.
    Active,
    /// Someone is looking into it.
    Investigating,
    /// Handed up (to security, authorities).
    Escalated,
    /// Dealt with. Final.
    Resolved,
    /// Not a real incident. Final.
    FalsePositive,
}

impl IncidentStatus {
    /// Every status.
    pub const ALL: [IncidentStatus; 5] = [
        Self::Active,
        Self::Investigating,
        Self::Escalated,
        Self::Resolved,
        Self::FalsePositive,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Investigating => "investigating",
            Self::Escalated => "escalated",
            Self::Resolved => "resolved",
            Self::FalsePositive => "false_positive",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether the workflow is over (`resolved`, `false_positive`).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Resolved | Self::FalsePositive)
    }

    /// Whether an incident in this status may move to `to`.
    pub fn may_become(self, to: IncidentStatus) -> bool {
        use IncidentStatus::*;
        match self {
            Active => matches!(to, Investigating | Escalated | Resolved | FalsePositive),
            Investigating => matches!(to, Escalated | Resolved | FalsePositive),
            Escalated => matches!(to, Investigating | Resolved | FalsePositive),
            Resolved | FalsePositive => false,
        }
    }
}

/// Who or what an incident is about.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IncidentSubjects {
    /// Tracks (`track-{camera}-{track}`) of the people involved.
    pub track_ids: Vec<String>,
    /// The enrolled subject a face matched, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_id: Option<String>,
}

/// An incident was raised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IncidentOpened {
    /// The incident's id (UUID v7).
    pub incident_id: String,
    /// What it is about.
    pub kind: IncidentKind,
    /// How serious.
    pub severity: Severity,
    /// How sure the rule is, 0–1.
    pub confidence: f64,
    /// The camera, when a camera's rule raised it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera_id: Option<String>,
    /// The zone, when the rule is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Why, in words that name the evidence (counts, zone, dwell, similarity).
    pub reasoning: String,
    /// Who is involved.
    pub subjects: IncidentSubjects,
    /// Response actions the rule recommends (`alert_security`, …).
    pub recommended_actions: Vec<String>,
    /// Frames that show it.
    pub evidence: Vec<FrameRef>,
    /// What later findings of the same rule, camera, zone and track share: a finding with an
    /// open incident's key extends it instead of opening another.
    pub dedup_key: String,
    /// What raised it: `rule:{kind}` or `alertmanager`.
    pub source: String,
    /// When the evidence was seen.
    pub observed_at: DateTime<Utc>,
}

/// A rule found more of what an open incident is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IncidentEvidenceAdded {
    /// The incident.
    pub incident_id: String,
    /// Confidence of this finding, 0–1 (the incident keeps the highest).
    pub confidence: f64,
    /// The finding's reasoning.
    pub reasoning: String,
    /// Tracks of this finding.
    pub track_ids: Vec<String>,
    /// Frames of this finding.
    pub evidence: Vec<FrameRef>,
    /// When it was seen.
    pub observed_at: DateTime<Utc>,
}

/// An incident moved in its workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IncidentStatusChanged {
    /// The incident.
    pub incident_id: String,
    /// The status it had.
    pub from: IncidentStatus,
    /// The status it has now.
    pub to: IncidentStatus,
    /// Why, in the operator's words (may be empty).
    pub notes: String,
}

/// An incident was marked read (or unread).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IncidentAcknowledged {
    /// The incident.
    pub incident_id: String,
    /// Read or not.
    pub is_read: bool,
}

/// An operator wrote a note on an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IncidentNoteAdded {
    /// The incident.
    pub incident_id: String,
    /// The note.
    pub notes: String,
}

/// A response action was taken for an incident (or the incident was marked as handled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IncidentActionTaken {
    /// The incident.
    pub incident_id: String,
    /// The action (`alert_security`, …, or `manual` when an operator marked it handled).
    pub action: String,
    /// The action's id (`action-{id}`), when it went through the dispatcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_id: Option<String>,
    /// Whether the incident now counts as acted on (`false` when an operator unmarks it).
    pub action_taken: bool,
}

/// An incident was deleted (retention or an operator). Its stream stays for audit; its media
/// is deleted with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IncidentDeleted {
    /// The incident.
    pub incident_id: String,
    /// Why (`retention: older than 30 days`).
    pub reason: String,
}

event_family! {
    /// Events of the incident aggregate (stream `incident-{id}`).
    IncidentEvent {
        Opened(IncidentOpened) = "incident.opened" v 1,
        EvidenceAdded(IncidentEvidenceAdded) = "incident.evidence_added" v 1,
        StatusChanged(IncidentStatusChanged) = "incident.status_changed" v 1,
        Acknowledged(IncidentAcknowledged) = "incident.acknowledged" v 1,
        NoteAdded(IncidentNoteAdded) = "incident.note_added" v 1,
        ActionTaken(IncidentActionTaken) = "incident.action_taken" v 1,
        Deleted(IncidentDeleted) = "incident.deleted" v 1,
    }
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

/// A weekly time window in UTC. `start` after `end` spans midnight (`22:00`–`06:00`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleWindow {
    /// Days the window starts on; empty means every day.
    #[serde(default)]
    pub days: Vec<Weekday>,
    /// `HH:MM`, inclusive.
    pub start: String,
    /// `HH:MM`, exclusive.
    pub end: String,
}

/// Rule thresholds. Every field has a default (`GET /api/v1/calibration/defaults`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CalibrationSettings {
    /// Crowd: persons at or above this count…
    pub crowd_threshold: u32,
    /// …for at least this many seconds.
    pub crowd_min_seconds: f64,
    /// Crowd: zones counted one by one; empty counts the whole frame.
    pub crowd_zones: Vec<String>,
    /// Intrusion: zones that are restricted; empty means every zone of the camera.
    pub intrusion_zones: Vec<String>,
    /// Intrusion: only inside these windows; empty means always.
    pub intrusion_schedule: Vec<ScheduleWindow>,
    /// Loitering: a stay in one zone longer than this many seconds.
    pub loitering_seconds: f64,
    /// Loitering: zones watched; empty means every zone of the camera.
    pub loitering_zones: Vec<String>,
    /// Sleep/fall: a box wider than tall by this ratio (width / height) is a person lying.
    pub lying_aspect_ratio: f64,
    /// Sleep/fall: lying for at least this many seconds.
    pub lying_seconds: f64,
    /// Fall: upright at most this many seconds before lying down.
    pub fall_window_seconds: f64,
    /// Face matching: largest descriptor distance that is a match (dlib: same person < 0.6).
    pub face_match_distance: f64,
    /// Face matching: the best subject must be nearer than the second best by this much.
    pub face_match_margin: f64,
    /// Persons detected below this score are not counted by any rule.
    pub min_person_score: f64,
    /// A finding extends an open incident with the same rule, camera, zone and track when the
    /// incident's last evidence is at most this many seconds old; otherwise it opens a new one.
    pub incident_merge_seconds: f64,
    /// Motion gating: a sampled frame goes to the models only when something moved in it, a
    /// track is live, or a full analysis is due (`motion_refresh_seconds`); `false` analyses
    /// every sampled frame. Pushed frames are always analysed.
    pub motion_gating: bool,
    /// Motion: grey-level difference from the background (1–255) above which a spot moves.
    pub motion_threshold: f64,
    /// Motion: the smallest moving region, as a share of the frame's area (0–1).
    pub motion_min_area: f64,
    /// Motion: seconds for a change to sink into the background (what stops moving stops
    /// being motion after about this long).
    pub motion_background_seconds: f64,
    /// Motion: named polygons (normalised coordinates) where movement is ignored, such as a
    /// tree or an on-screen clock.
    pub motion_masks: Vec<Zone>,
    /// Motion gating: the whole frame is analysed at least this often even when nothing
    /// moves, so a person who entered unseen is still found (and every 10 s while a track is
    /// held without motion, so one who left unseen ends); 0 never.
    pub motion_refresh_seconds: f64,
    /// Motion gating: the person detector looks only at regions around what moved and the
    /// live tracks that moved with it (the whole frame when they would cover most of it, on a
    /// camera's first frame, after a lighting change and every `motion_refresh_seconds`);
    /// tracks where nothing moves are held without a detection. `false`: the whole frame every
    /// time a frame is analysed.
    pub person_regions: bool,
    /// Faces: persons narrower than this many frame pixels are too small to show a usable
    /// face and are not searched for one.
    pub face_min_person_pixels: u32,
    /// Faces: a track's face is described (a 128-d descriptor compared with the gallery) at
    /// most once in this many analysed frames, and after its first two only when it is
    /// clearer than its best so far.
    pub face_descriptor_every_frames: u32,
}

impl Default for CalibrationSettings {
    fn default() -> Self {
        Self {
            crowd_threshold: 5,
            crowd_min_seconds: 3.0,
            crowd_zones: vec![],
            intrusion_zones: vec![],
            intrusion_schedule: vec![],
            loitering_seconds: 60.0,
            loitering_zones: vec![],
            lying_aspect_ratio: 1.3,
            lying_seconds: 10.0,
            fall_window_seconds: 2.0,
            face_match_distance: 0.5,
            face_match_margin: 0.05,
            min_person_score: 0.5,
            incident_merge_seconds: 300.0,
            motion_gating: true,
            motion_threshold: 20.0,
            motion_min_area: 0.001,
            motion_background_seconds: 5.0,
            motion_masks: vec![],
            motion_refresh_seconds: 60.0,
            person_regions: true,
            face_min_person_pixels: 32,
            face_descriptor_every_frames: 10,
        }
    }
}

/// Per-camera changes to the global calibration: each present field replaces the global one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CalibrationOverrides {
    /// See [`CalibrationSettings::crowd_threshold`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crowd_threshold: Option<u32>,
    /// See [`CalibrationSettings::crowd_min_seconds`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crowd_min_seconds: Option<f64>,
    /// See [`CalibrationSettings::crowd_zones`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crowd_zones: Option<Vec<String>>,
    /// See [`CalibrationSettings::intrusion_zones`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intrusion_zones: Option<Vec<String>>,
    /// See [`CalibrationSettings::intrusion_schedule`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intrusion_schedule: Option<Vec<ScheduleWindow>>,
    /// See [`CalibrationSettings::loitering_seconds`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loitering_seconds: Option<f64>,
    /// See [`CalibrationSettings::loitering_zones`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loitering_zones: Option<Vec<String>>,
    /// See [`CalibrationSettings::lying_aspect_ratio`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lying_aspect_ratio: Option<f64>,
    /// See [`CalibrationSettings::lying_seconds`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lying_seconds: Option<f64>,
    /// See [`CalibrationSettings::fall_window_seconds`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fall_window_seconds: Option<f64>,
    /// See [`CalibrationSettings::face_match_distance`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face_match_distance: Option<f64>,
    /// See [`CalibrationSettings::face_match_margin`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face_match_margin: Option<f64>,
    /// See [`CalibrationSettings::min_person_score`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_person_score: Option<f64>,
    /// See [`CalibrationSettings::incident_merge_seconds`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident_merge_seconds: Option<f64>,
    /// See [`CalibrationSettings::motion_gating`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub motion_gating: Option<bool>,
    /// See [`CalibrationSettings::motion_threshold`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub motion_threshold: Option<f64>,
    /// See [`CalibrationSettings::motion_min_area`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub motion_min_area: Option<f64>,
    /// See [`CalibrationSettings::motion_background_seconds`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub motion_background_seconds: Option<f64>,
    /// See [`CalibrationSettings::motion_masks`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub motion_masks: Option<Vec<Zone>>,
    /// See [`CalibrationSettings::motion_refresh_seconds`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub motion_refresh_seconds: Option<f64>,
    /// See [`CalibrationSettings::person_regions`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person_regions: Option<bool>,
    /// See [`CalibrationSettings::face_min_person_pixels`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face_min_person_pixels: Option<u32>,
    /// See [`CalibrationSettings::face_descriptor_every_frames`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face_descriptor_every_frames: Option<u32>,
}

macro_rules! overlay {
    ($base:expr, $over:expr, $($field:ident),+) => {
        $(if let Some(v) = &$over.$field { $base.$field = v.clone(); })+
    };
}

impl CalibrationOverrides {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `base` with these overrides applied.
    pub fn apply_to(&self, mut base: CalibrationSettings) -> CalibrationSettings {
        overlay!(
            base,
            self,
            crowd_threshold,
            crowd_min_seconds,
            crowd_zones,
            intrusion_zones,
            intrusion_schedule,
            loitering_seconds,
            loitering_zones,
            lying_aspect_ratio,
            lying_seconds,
            fall_window_seconds,
            face_match_distance,
            face_match_margin,
            min_person_score,
            incident_merge_seconds,
            motion_gating,
            motion_threshold,
            motion_min_area,
            motion_background_seconds,
            motion_masks,
            motion_refresh_seconds,
            person_regions,
            face_min_person_pixels,
            face_descriptor_every_frames
        );
        base
    }

    /// These overrides with `later`'s present fields replacing them.
    pub fn merged(mut self, later: &CalibrationOverrides) -> CalibrationOverrides {
        macro_rules! take {
            ($($field:ident),+) => { $(if later.$field.is_some() { self.$field = later.$field.clone(); })+ };
        }
        take!(
            crowd_threshold,
            crowd_min_seconds,
            crowd_zones,
            intrusion_zones,
            intrusion_schedule,
            loitering_seconds,
            loitering_zones,
            lying_aspect_ratio,
            lying_seconds,
            fall_window_seconds,
            face_match_distance,
            face_match_margin,
            min_person_score,
            incident_merge_seconds,
            motion_gating,
            motion_threshold,
            motion_min_area,
            motion_background_seconds,
            motion_masks,
            motion_refresh_seconds,
            person_regions,
            face_min_person_pixels,
            face_descriptor_every_frames
        );
        self
    }
}

/// The whole calibration: global thresholds and per-camera overrides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Calibration {
    /// Thresholds every camera uses unless it overrides them.
    pub global: CalibrationSettings,
    /// Per camera id, the thresholds it overrides.
    pub cameras: std::collections::BTreeMap<String, CalibrationOverrides>,
}

impl Calibration {
    /// The thresholds in effect for a camera.
    pub fn effective(&self, camera_id: &str) -> CalibrationSettings {
        match self.cameras.get(camera_id) {
            Some(o) => o.apply_to(self.global.clone()),
            None => self.global.clone(),
        }
    }
}

/// The calibration changed; the payload is the whole new calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CalibrationChanged {
    /// The calibration now in effect.
    pub calibration: Calibration,
    /// How: `put` (replaced), `patch` (merged) or `reset` (back to defaults).
    pub change: String,
}

event_family! {
    /// Events of the calibration (stream `calibration-global`).
    CalibrationEvent {
        Changed(CalibrationChanged) = "calibration.changed" v 1,
    }
}

/// A response action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Tell the security team.
    AlertSecurity,
    /// Tell the authorities.
    AlertAuthorities,
    /// Lock doors (through the door system's webhook).
    LockDoors,
    /// Sound an alarm (through the alarm system's webhook).
    SoundAlarm,
    /// Keep the evidence (through a recorder's or archive's webhook).
    RecordEvidence,
    /// Ask for closer monitoring (through a VMS's webhook).
    IncreaseMonitoring,
    /// Call one named webhook target.
    Webhook,
}

impl ActionKind {
    /// Every action.
    pub const ALL: [ActionKind; 7] = [
        Self::AlertSecurity,
        Self::AlertAuthorities,
        Self::LockDoors,
        Self::SoundAlarm,
        Self::RecordEvidence,
        Self::IncreaseMonitoring,
        Self::Webhook,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AlertSecurity => "alert_security",
            Self::AlertAuthorities => "alert_authorities",
            Self::LockDoors => "lock_doors",
            Self::SoundAlarm => "sound_alarm",
            Self::RecordEvidence => "record_evidence",
            Self::IncreaseMonitoring => "increase_monitoring",
            Self::Webhook => "webhook",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A response action was asked for: it is delivered to each of its targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActionRequested {
    /// The action's id.
    pub action_id: String,
    /// What to do.
    pub action: ActionKind,
    /// The incident it responds to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    /// The camera it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera_id: Option<String>,
    /// Free text for the receiver.
    pub notes: String,
    /// Configured webhook targets (by name) it is delivered to.
    pub targets: Vec<String>,
    /// Requested by a rule's automatic-action setting, not a person.
    pub automatic: bool,
}

/// A delivery of an action to one target was accepted (2xx).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActionSucceeded {
    /// The action.
    pub action_id: String,
    /// The target.
    pub target: String,
    /// Attempts it took.
    pub attempts: u32,
    /// The receiver's HTTP status.
    pub status: u16,
}

/// A delivery of an action to one target failed on its last retry and went to the
/// dead-letter queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActionFailed {
    /// The action.
    pub action_id: String,
    /// The target.
    pub target: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's error (`HTTP 503`, `timed out after 5 s`, …).
    pub error: String,
}

/// A dead-lettered delivery was put back for another round of attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActionRequeued {
    /// The action.
    pub action_id: String,
    /// The target.
    pub target: String,
}

/// A dead-lettered delivery was dropped from the queue without delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActionDiscarded {
    /// The action.
    pub action_id: String,
    /// The target.
    pub target: String,
}

event_family! {
    /// Events of a response action (stream `action-{id}`).
    ActionEvent {
        Requested(ActionRequested) = "action.requested" v 1,
        Succeeded(ActionSucceeded) = "action.succeeded" v 1,
        Failed(ActionFailed) = "action.failed" v 1,
        Requeued(ActionRequeued) = "action.requeued" v 1,
        Discarded(ActionDiscarded) = "action.discarded" v 1,
    }
}

/// The stream that holds one enrolled subject's events.
pub fn subject_stream(subject_id: &str) -> String {
    format!("subject-{subject_id}")
}

/// What an enrolled subject is to the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubjectCategory {
    /// May be seen: cameras with the `authorised` feature raise an incident for faces that match
    /// no authorised subject.
    Authorised,
    /// A person of interest: a match raises an incident.
    Watchlist,
}

impl SubjectCategory {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorised => "authorised",
            Self::Watchlist => "watchlist",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "authorised" => Some(Self::Authorised),
            "watchlist" => Some(Self::Watchlist),
            _ => None,
        }
    }
}

/// One enrolled face of a subject: its descriptor and the image it came from (by hash; the
/// image lives in the media store and is deleted with the subject).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubjectFace {
    /// The face's id (UUID v7).
    pub face_id: String,
    /// SHA-256 of the face crop (JPEG) in the media store.
    pub crop: String,
    /// The face's box in its image.
    pub bbox: NormBox,
    /// Face detector confidence.
    pub score: f32,
    /// 128-d face descriptor (dlib ResNet).
    pub embedding: Vec<f32>,
}

/// A person was enrolled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubjectEnrolled {
    /// The subject's id.
    pub subject_id: String,
    /// Name.
    pub name: String,
    /// Authorised or watch-listed.
    pub category: SubjectCategory,
    /// For watch-listed subjects: the severity of the incident a match raises.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Free text.
    pub notes: String,
    /// 1–5 faces.
    pub faces: Vec<SubjectFace>,
}

/// Some of a subject's details changed. Each present field holds its new value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubjectUpdated {
    /// The subject.
    pub subject_id: String,
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<SubjectCategory>,
    /// New severity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// New notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// Faces were added to a subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubjectFacesAdded {
    /// The subject.
    pub subject_id: String,
    /// The new faces.
    pub faces: Vec<SubjectFace>,
}

/// A subject was erased: its descriptors leave every table and its images the media store.
/// The stream keeps this record of the erasure; the enrolment events stay for audit, but their
/// images are gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubjectErased {
    /// The subject.
    pub subject_id: String,
    /// Faces erased.
    pub face_ids: Vec<String>,
    /// Why.
    pub reason: String,
}

/// A face seen on a camera matched an enrolled subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubjectMatched {
    /// The match's id (UUID v7); also the alert's id.
    pub match_id: String,
    /// The subject.
    pub subject_id: String,
    /// The subject's name when matched.
    pub subject_name: String,
    /// The subject's category when matched.
    pub category: SubjectCategory,
    /// The camera.
    pub camera_id: String,
    /// The track the face belongs to.
    pub track_id: String,
    /// Descriptor distance to the subject's nearest face.
    pub distance: f64,
    /// Distance to the next-nearest other subject, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_distance: Option<f64>,
    /// SHA-256 of the face crop seen (JPEG) in the media store.
    pub crop: String,
    /// The frame it was seen in.
    pub frame: FrameRef,
}

event_family! {
    /// Events of an enrolled subject (stream `subject-{id}`).
    SubjectEvent {
        Enrolled(SubjectEnrolled) = "subject.enrolled" v 1,
        Updated(SubjectUpdated) = "subject.updated" v 1,
        FacesAdded(SubjectFacesAdded) = "subject.faces_added" v 1,
        Erased(SubjectErased) = "subject.erased" v 1,
        Matched(SubjectMatched) = "subject.matched" v 1,
    }
}

/// The stream that holds an alert's handling (the alert itself is a `subject.matched` event;
/// its id is the match id).
pub fn alert_stream(alert_id: &str) -> String {
    format!("alert-{alert_id}")
}

/// An operator acknowledged an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertAcknowledged {
    /// The alert (the match id).
    pub alert_id: String,
}

/// An alert was dismissed (cleared from the alert list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertDismissed {
    /// The alert (the match id).
    pub alert_id: String,
}

event_family! {
    /// Events of an alert's handling (stream `alert-{id}`).
    AlertEvent {
        Acknowledged(AlertAcknowledged) = "alert.acknowledged" v 1,
        Dismissed(AlertDismissed) = "alert.dismissed" v 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_through_decode() {
        let event = CameraEvent::Updated(CameraUpdated {
            camera_id: "c1".into(),
            enabled: Some(false),
            ..Default::default()
        });
        let payload = event.to_payload();
        assert_eq!(
            payload,
            serde_json::json!({"camera_id": "c1", "enabled": false})
        );
        let back = CameraEvent::decode(event.event_type(), event.schema_version(), &payload)
            .expect("decodes");
        assert_eq!(back, event);
    }

    #[test]
    fn unknown_type_and_version_are_errors() {
        let payload = serde_json::json!({"camera_id": "c1"});
        assert!(matches!(
            CameraEvent::decode("camera.exploded", 1, &payload),
            Err(EventDecodeError::UnknownType(_))
        ));
        assert!(matches!(
            CameraEvent::decode("camera.removed", 9, &payload),
            Err(EventDecodeError::UnknownVersion { version: 9, .. })
        ));
        // A type of another family is unknown to this one.
        assert!(matches!(
            CameraEvent::decode("apikey.issued", 1, &payload),
            Err(EventDecodeError::UnknownType(_))
        ));
    }

    #[test]
    fn type_names_are_unique() {
        let mut names: Vec<_> = all_event_types().map(|(n, _)| n).collect();
        let total = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), total);
    }
}
