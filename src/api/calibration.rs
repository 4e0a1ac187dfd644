//! `/api/v1/calibration`: the rule thresholds, global with per-camera overrides. Every change
//! is a `calibration.changed` event holding the whole new calibration.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde::{Deserialize, Serialize};
use vigil_actors::aggregates::calibration::{
    CalibrationAggregate, CalibrationCommand, CalibrationError,
};
use vigil_schemas::events::{Calibration, CalibrationOverrides, CalibrationSettings};

use super::ApiTags;
use super::auth::{Auth, request_meta};
use super::body::{BodyLimits, JsonBody};
use super::dto::ZoneDto;
use super::error::ApiError;
use crate::app::App;
use crate::service::visibility::wait_visible;

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize, Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum WeekdayDto {
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

/// A weekly window in UTC; `start` after `end` spans midnight.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct ScheduleWindowDto {
    /// Days it starts on; empty or absent: every day.
    #[oai(default, validator(max_items = 7))]
    #[serde(default)]
    pub days: Vec<WeekdayDto>,
    /// `HH:MM`, inclusive.
    #[oai(validator(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub start: String,
    /// `HH:MM` (or `24:00`), exclusive.
    #[oai(validator(pattern = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"))]
    pub end: String,
}

/// Rule thresholds in effect.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct SettingsDto {
    /// Crowd: persons at or above this count…
    pub crowd_threshold: u32,
    /// …for at least this many seconds.
    pub crowd_min_seconds: f64,
    /// Crowd: zones counted one by one; empty counts the whole frame.
    pub crowd_zones: Vec<String>,
    /// Intrusion: restricted zones; empty means every zone of the camera.
    pub intrusion_zones: Vec<String>,
    /// Intrusion: only inside these windows; empty means always.
    pub intrusion_schedule: Vec<ScheduleWindowDto>,
    /// Loitering: a stay in one zone longer than this many seconds.
    pub loitering_seconds: f64,
    /// Loitering: watched zones; empty means every zone.
    pub loitering_zones: Vec<String>,
    /// Sleep/fall: a box wider than tall by this ratio is a person lying.
    pub lying_aspect_ratio: f64,
    /// Sleep/fall: lying for at least this many seconds.
    pub lying_seconds: f64,
    /// Fall: upright at most this many seconds before lying.
    pub fall_window_seconds: f64,
    /// Face matching: largest descriptor distance that is a match.
    pub face_match_distance: f64,
    /// Face matching: margin over the second-best subject.
    pub face_match_margin: f64,
    /// Persons detected below this score count for no rule.
    pub min_person_score: f64,
    /// A finding extends an open incident of the same rule, camera, zone and track whose last
    /// finding is at most this many seconds old.
    pub incident_merge_seconds: f64,
    /// Motion gating: a sampled frame goes to the models only when something moved, a track
    /// is live, or a full analysis is due; `false` analyses every sampled frame (pushed
    /// frames always are).
    pub motion_gating: bool,
    /// Motion: grey-level difference from the background above which a spot moves.
    pub motion_threshold: f64,
    /// Motion: smallest moving region, as a share of the frame's area.
    pub motion_min_area: f64,
    /// Motion: seconds for a change to sink into the background.
    pub motion_background_seconds: f64,
    /// Motion: named polygons where movement is ignored (a tree, an on-screen clock).
    pub motion_masks: Vec<ZoneDto>,
    /// Motion gating: a whole-frame analysis at least this often even when nothing moves
    /// (every 10 s while a track is held still); 0 never.
    pub motion_refresh_seconds: f64,
    /// Motion gating: the person detector looks only at regions around what moved and the
    /// tracks that moved with it, and holds still tracks; `false`: the whole frame each time.
    pub person_regions: bool,
    /// Faces: persons narrower than this many frame pixels are not searched for a face.
    pub face_min_person_pixels: u32,
    /// Faces: a track's face is described at most once in this many analysed frames (after
    /// its first two, only when clearer than its best).
    pub face_descriptor_every_frames: u32,
}

/// Thresholds to change; absent fields are left alone (or, in a `PUT`, take the default).
#[derive(Debug, Clone, Default, Object, Serialize, Deserialize)]
#[oai(deny_unknown_fields, skip_serializing_if_is_none)]
#[serde(deny_unknown_fields)]
pub struct OverridesDto {
    /// At least 1.
    #[oai(validator(minimum(value = "1"), maximum(value = "10000")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crowd_threshold: Option<u32>,
    /// Seconds, at least 0.
    #[oai(validator(minimum(value = "0"), maximum(value = "86400")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crowd_min_seconds: Option<f64>,
    /// Zone names.
    #[oai(validator(max_items = 64))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crowd_zones: Option<Vec<String>>,
    /// Zone names.
    #[oai(validator(max_items = 64))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intrusion_zones: Option<Vec<String>>,
    /// Windows.
    #[oai(validator(max_items = 64))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intrusion_schedule: Option<Vec<ScheduleWindowDto>>,
    /// Seconds, at least 0.
    #[oai(validator(minimum(value = "0"), maximum(value = "86400")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loitering_seconds: Option<f64>,
    /// Zone names.
    #[oai(validator(max_items = 64))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loitering_zones: Option<Vec<String>>,
    /// Above 0.
    #[oai(validator(minimum(value = "0", exclusive), maximum(value = "100")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lying_aspect_ratio: Option<f64>,
    /// Seconds, at least 0.
    #[oai(validator(minimum(value = "0"), maximum(value = "86400")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lying_seconds: Option<f64>,
    /// Seconds, at least 0.
    #[oai(validator(minimum(value = "0"), maximum(value = "3600")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fall_window_seconds: Option<f64>,
    /// 0 to 2.
    #[oai(validator(minimum(value = "0"), maximum(value = "2")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face_match_distance: Option<f64>,
    /// 0 to 2.
    #[oai(validator(minimum(value = "0"), maximum(value = "2")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face_match_margin: Option<f64>,
    /// 0 to 1.
    #[oai(validator(minimum(value = "0"), maximum(value = "1")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_person_score: Option<f64>,
    /// Seconds, at least 0.
    #[oai(validator(minimum(value = "0"), maximum(value = "604800")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident_merge_seconds: Option<f64>,
    /// `true` (default): analyse a sampled frame only when something moved, a track is live
    /// or a full analysis is due; `false`: every sampled frame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub motion_gating: Option<bool>,
    /// 1 to 255 grey levels.
    #[oai(validator(minimum(value = "1"), maximum(value = "255")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub motion_threshold: Option<f64>,
    /// Above 0, at most 1 (the whole frame).
    #[oai(validator(minimum(value = "0", exclusive), maximum(value = "1")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub motion_min_area: Option<f64>,
    /// Seconds, 0 to 86400.
    #[oai(validator(minimum(value = "0"), maximum(value = "86400")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub motion_background_seconds: Option<f64>,
    /// Up to 32 named polygons (names unique) where movement is ignored.
    #[oai(validator(max_items = 32))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub motion_masks: Option<Vec<ZoneDto>>,
    /// Seconds, 0 (never) to 86400.
    #[oai(validator(minimum(value = "0"), maximum(value = "86400")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub motion_refresh_seconds: Option<f64>,
    /// `true` (default): persons are looked for in regions around what moved (and still
    /// tracks are held); `false`: in the whole frame every time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person_regions: Option<bool>,
    /// Frame pixels, 0 to 10000.
    #[oai(validator(minimum(value = "0"), maximum(value = "10000")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face_min_person_pixels: Option<u32>,
    /// Analysed frames, 1 to 10000.
    #[oai(validator(minimum(value = "1"), maximum(value = "10000")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face_descriptor_every_frames: Option<u32>,
}

/// The calibration.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CalibrationView {
    /// Thresholds every camera uses unless it overrides them.
    pub global: SettingsDto,
    /// Per camera, the thresholds it overrides.
    pub cameras: BTreeMap<String, OverridesDto>,
    /// With `camera_id`: the thresholds in effect for that camera.
    pub effective: Option<SettingsDto>,
    /// Version of the `calibration-global` stream (0: never changed, defaults).
    pub version: u64,
    /// Last change.
    pub updated_at: Option<DateTime<Utc>>,
}

/// A whole calibration (`PUT`): absent global fields take their defaults; cameras absent from
/// `cameras` lose their overrides.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct CalibrationPut {
    /// Global thresholds.
    pub global: Option<OverridesDto>,
    /// Per camera id, its overrides.
    #[oai(validator(max_properties = 1000))]
    pub cameras: Option<BTreeMap<String, OverridesDto>>,
}

impl BodyLimits for CalibrationPut {
    const MAX_BYTES: usize = 1 << 20;
    const CHECK_DECLARED: bool = true;
}

/// A change (`PATCH`): present global fields replace the global ones; each camera's object
/// merges into its overrides, and an empty object removes them.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct CalibrationPatch {
    /// Global thresholds to change.
    pub global: Option<OverridesDto>,
    /// Per camera id, overrides to merge.
    #[oai(validator(max_properties = 1000))]
    pub cameras: Option<BTreeMap<String, OverridesDto>>,
}

impl BodyLimits for CalibrationPatch {
    const MAX_BYTES: usize = 1 << 20;
    const CHECK_DECLARED: bool = true;
}

/// Response of a change.
#[derive(ApiResponse)]
pub enum CalibrationChangedResponse {
    /// The calibration now in effect.
    #[oai(status = 200)]
    Ok(
        Json<CalibrationView>,
        /// Global position of the change (absent values: nothing changed).
        #[oai(header = "X-Vigil-Position")]
        u64,
    ),
}

fn convert<A: Serialize, B: serde::de::DeserializeOwned>(a: &A) -> B {
    serde_json::from_value(serde_json::to_value(a).expect("plain data serialises"))
        .expect("the DTO and the domain type have the same fields")
}

fn settings_dto(s: &CalibrationSettings) -> SettingsDto {
    convert(s)
}

fn overrides(o: &OverridesDto) -> CalibrationOverrides {
    convert(o)
}

fn view(
    calibration: &Calibration,
    camera: Option<&str>,
    version: u64,
    updated_at: Option<DateTime<Utc>>,
) -> CalibrationView {
    CalibrationView {
        global: settings_dto(&calibration.global),
        cameras: calibration
            .cameras
            .iter()
            .map(|(c, o)| (c.clone(), convert(o)))
            .collect(),
        effective: camera.map(|c| settings_dto(&calibration.effective(c))),
        version,
        updated_at,
    }
}

fn cameras_of(
    map: Option<BTreeMap<String, OverridesDto>>,
) -> BTreeMap<String, CalibrationOverrides> {
    map.unwrap_or_default()
        .iter()
        .map(|(c, o)| (c.clone(), overrides(o)))
        .collect()
}

fn command_error(err: vigil_actors::CommandError<CalibrationError>) -> ApiError {
    super::error::command_error(err, "calibration", |e| match e {
        CalibrationError::Invalid(reason) => {
            let field = reason
                .split_whitespace()
                .next()
                .unwrap_or("body")
                .to_string();
            ApiError::validation(field, reason)
        }
    })
}

/// Calibration endpoints.
pub struct CalibrationApi;

impl CalibrationApi {
    async fn change(
        app: &App,
        principal: &crate::app::Principal,
        command: CalibrationCommand,
    ) -> Result<CalibrationChangedResponse, ApiError> {
        let done = app
            .handler()
            .execute::<CalibrationAggregate>("global", command, &request_meta(principal), None)
            .await
            .map_err(command_error)?;
        // This node's rules use it at once (other nodes follow the event).
        app.ingest().set_calibration(done.state.clone());
        let seen = wait_visible(app, done.position).await;
        Ok(CalibrationChangedResponse::Ok(
            Json(view(&done.state, None, done.version, Some(Utc::now()))),
            done.position.unwrap_or(seen),
        ))
    }
}

#[OpenApi(prefix_path = "/api/v1/calibration", tag = "ApiTags::Incidents")]
impl CalibrationApi {
    /// Get the calibration.
    ///
    /// Global thresholds and per-camera overrides; with `camera_id`, also the thresholds in
    /// effect for that camera.
    #[oai(path = "/", method = "get", operation_id = "get_calibration")]
    async fn get(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(pattern = r"^[A-Za-z0-9_-]{1,64}$"))] camera_id: Query<Option<String>>,
    ) -> Result<Json<CalibrationView>, ApiError> {
        auth.require("get_calibration")?;
        let (calibration, version, updated_at) =
            vigil_projections::calibration::get_calibration(app.pool())
                .await
                .map_err(ApiError::database_unavailable)?;
        Ok(Json(view(
            &calibration,
            camera_id.0.as_deref(),
            version,
            updated_at,
        )))
    }

    /// Replace the calibration.
    ///
    /// Global fields absent from the body take their defaults; cameras absent from `cameras`
    /// lose their overrides. 422 names a value out of range.
    #[oai(path = "/", method = "put", operation_id = "put_calibration")]
    async fn put(
        &self,
        app: Data<&App>,
        auth: Auth,
        body: JsonBody<CalibrationPut>,
    ) -> Result<CalibrationChangedResponse, ApiError> {
        let principal = auth.require("put_calibration")?;
        let body = body.0;
        let calibration = Calibration {
            global: overrides(&body.global.unwrap_or_default())
                .apply_to(CalibrationSettings::default()),
            cameras: cameras_of(body.cameras),
        };
        Self::change(&app, principal, CalibrationCommand::Put(calibration)).await
    }

    /// Change the calibration.
    ///
    /// Present global fields replace the global ones; each camera's object merges into that
    /// camera's overrides (an empty object removes them).
    #[oai(path = "/", method = "patch", operation_id = "patch_calibration")]
    async fn patch(
        &self,
        app: Data<&App>,
        auth: Auth,
        body: JsonBody<CalibrationPatch>,
    ) -> Result<CalibrationChangedResponse, ApiError> {
        let principal = auth.require("patch_calibration")?;
        let body = body.0;
        let command = CalibrationCommand::Patch {
            global: overrides(&body.global.unwrap_or_default()),
            cameras: cameras_of(body.cameras),
        };
        Self::change(&app, principal, command).await
    }

    /// Reset the calibration to its defaults.
    ///
    /// With `camera_id`, only that camera's overrides are removed.
    #[oai(path = "/reset", method = "post", operation_id = "reset_calibration")]
    async fn reset(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(pattern = r"^[A-Za-z0-9_-]{1,64}$"))] camera_id: Query<Option<String>>,
    ) -> Result<CalibrationChangedResponse, ApiError> {
        let principal = auth.require("reset_calibration")?;
        Self::change(
            &app,
            principal,
            CalibrationCommand::Reset {
                camera_id: camera_id.0,
            },
        )
        .await
    }

    /// The default thresholds.
    #[oai(
        path = "/defaults",
        method = "get",
        operation_id = "calibration_defaults"
    )]
    async fn defaults(&self, auth: Auth) -> Result<Json<SettingsDto>, ApiError> {
        auth.require("calibration_defaults")?;
        Ok(Json(settings_dto(&CalibrationSettings::default())))
    }
}
