//! The camera aggregate's events (stream `camera-{id}`) and ingest status (`camerastatus-{id}`), with zones and features.

use super::*;

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
    /// Record a clip of every person's appearance, not only of incidents (when the node
    /// records clips). Off by default.
    #[serde(default)]
    pub clip_appearances: bool,
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
