//! A track's events (stream `track-{camera}-{track}`): one person's appearance, with boxes and frame references.

use super::*;

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
    /// The persons the rules saw in the frame, for drawing over it (incident evidence; empty
    /// elsewhere, and in events written before it existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub persons: Vec<FramePerson>,
}

/// A person in an evidence frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FramePerson {
    /// The person's box.
    pub bbox: NormBox,
    /// The person's track; absent until the tracker confirmed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_id: Option<String>,
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
    /// stopped), `ended` (the camera's video file ended) or `interrupted` (its actor stopped
    /// without ending it, killed with the process or failed: recorded by the sweep before the
    /// camera started again, with its start as all that is known).
    pub reason: String,
}

event_family! {
    /// Events of a track (stream `track-{camera}-{track}`): one person's appearance.
    AppearanceEvent {
        Started(AppearanceStarted) = "appearance.started" v 1,
        Ended(AppearanceEnded) = "appearance.ended" v 1,
    }
}
