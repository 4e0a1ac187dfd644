//! A camera's recorded clips (stream `clip-{id}`): video cut from the camera's own stream
//! around incidents and appearances, or continuous recording's fixed-length segments, stored
//! as content-addressed MP4 files that events name, never carry.

use super::*;

/// The stream that holds one clip's events.
pub fn clip_stream(clip_id: &str) -> String {
    format!("clip-{clip_id}")
}

/// A clip was written and stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClipRecorded {
    /// The clip.
    pub clip_id: String,
    /// The camera it shows.
    pub camera_id: String,
    /// The incidents it covers (a clip open when another incident of its camera opens covers
    /// that one too).
    pub incident_ids: Vec<String>,
    /// The tracks (`track-{camera}-{n}`) it shows: those of the incidents it covers, and the
    /// appearances it was cut for on a camera that records appearance clips.
    #[serde(default)]
    pub track_ids: Vec<String>,
    /// A segment of continuous recording (cut every `clip_segment_seconds`, whatever
    /// happened) rather than a clip cut around incidents or appearances.
    #[serde(default)]
    pub continuous: bool,
    /// Capture time of its first frame (a keyframe, up to the pre-roll before the incident).
    pub started_at: DateTime<Utc>,
    /// Capture time of its last frame.
    pub ended_at: DateTime<Utc>,
    /// Seconds it plays.
    pub duration_seconds: f64,
    /// The video codec, as the camera sent it (`h264`, `h265`): never re-encoded.
    pub codec: String,
    /// Picture width in pixels.
    pub width: u32,
    /// Picture height in pixels.
    pub height: u32,
    /// Frames in it.
    pub frames: u64,
    /// Size of the MP4 file.
    pub bytes: u64,
    /// SHA-256 (hex) of the MP4 file in the blob store (`GET /api/v1/media/{sha256}`).
    pub media: String,
}

/// A clip was deleted and its file removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClipDeleted {
    /// The clip.
    pub clip_id: String,
    /// The camera it showed.
    pub camera_id: String,
    /// SHA-256 of the file that was removed.
    pub media: String,
    /// Why: `budget` (the clips' disk budget was full, and no open incident held it), `age`
    /// (older than `clip_max_age_days`, and no open incident held it), `incidents_deleted`
    /// (every incident it covered was deleted) or `subject_erased` (it showed a track that
    /// matched a subject who was erased).
    pub reason: String,
}

event_family! {
    /// Events of a clip (stream `clip-{id}`).
    ClipEvent {
        Recorded(ClipRecorded) = "clip.recorded" v 1,
        Deleted(ClipDeleted) = "clip.deleted" v 1,
    }
}
