//! The calibration's events (stream `calibration-global`): rule thresholds, overrides, schedules.

use super::*;

/// The one stream that holds the calibration (rule thresholds) of the whole installation.
pub const CALIBRATION_STREAM: &str = "calibration-global";

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
