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

use crate::envelope::{EventMeta, NewEvent};

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
        .copied()
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
}

impl CameraStatus {
    /// The wire name (`online`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
            Self::Error => "error",
            Self::Stopped => "stopped",
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
    /// Why it ended: `lost` (not seen for a while) or `stopped` (ingest stopped).
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
