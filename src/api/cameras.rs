//! `/api/v1/cameras`: the camera registry.

use std::time::Duration;

use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;
use serde_json::json;
use vigil_actors::CommandError;
use vigil_actors::aggregates::camera::{
    Camera, CameraAggregate, CameraCommand, CameraError, CameraPatch, FeaturesPatch, RegisterCamera,
};
use vigil_actors::source::SourceError;
use vigil_projections::cameras::{CameraQuery, CameraRow, get_camera, list_cameras};
use vigil_projections::clips::camera_clips;
use vigil_schemas::events::{CameraFeatures, Point, Zone};

use super::ApiTags;
use super::auth::{Auth, request_meta, visible_to};
use super::body::{BodyLimits, JsonBody};
use super::dto::{BoxDto, ClipDto, PointDto, ZoneDto, box_dto, clip_dto, etag, parse_if_match};
use super::error::{ApiError, camera_not_found};
use super::listing::{OrderParam, order_or};
use crate::app::App;
use crate::app::Principal;
use crate::service::visibility::wait_visible;

/// How long a read with `min_position` waits for the read model.
const READ_WAIT: Duration = Duration::from_secs(5);

/// Feature flags; in a request, absent flags are left as they are (off for a new camera).
#[derive(Debug, Clone, Default, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct FeaturesInput {
    /// Crowd detection.
    pub crowd: Option<bool>,
    /// Only authorised people may be seen.
    pub authorised: Option<bool>,
    /// Critical area.
    pub critical: Option<bool>,
    /// Sleeping or collapsed people.
    pub sleep: Option<bool>,
    /// Theft-like behaviour.
    pub theft: Option<bool>,
    /// Intrusion into zones.
    pub intrusion: Option<bool>,
    /// Loitering in zones.
    pub loitering: Option<bool>,
    /// A clip of every person's appearance, not only of incidents (when the server records
    /// clips).
    pub clip_appearances: Option<bool>,
}

/// Feature flags of a camera.
#[derive(Debug, Clone, Object)]
pub struct FeaturesDto {
    /// Crowd detection.
    pub crowd: bool,
    /// Only authorised people may be seen.
    pub authorised: bool,
    /// Critical area.
    pub critical: bool,
    /// Sleeping or collapsed people.
    pub sleep: bool,
    /// Theft-like behaviour.
    pub theft: bool,
    /// Intrusion into zones.
    pub intrusion: bool,
    /// Loitering in zones.
    pub loitering: bool,
    /// A clip of every person's appearance, not only of incidents (when the server records
    /// clips).
    pub clip_appearances: bool,
}

fn default_true() -> bool {
    true
}

fn default_fps() -> f64 {
    1.0
}

/// A camera to register.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct CameraCreate {
    /// Optional client-chosen id (1–64 of `A–Z a–z 0–9 - _`); a UUID v7 when absent.
    #[oai(validator(pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    pub id: Option<String>,
    /// Human-readable name (1–200 characters, not blank).
    #[oai(validator(min_length = 1, max_length = 200, pattern = r"\S"))]
    pub name: String,
    /// `rtsp://…`, `rtsps://…`, `http(s)://…` (MJPEG stream or snapshot URL),
    /// `file:///path/clip.mp4` (a video file in a folder the node allows; query parameters
    /// `loop`, `realtime`, `start`), or `push`.
    #[oai(validator(
        max_length = 2048,
        pattern = r"^(push|(rtsp|rtsps|http|https)://([^\x00-\x20\x7f/?#@]*@)?[^\x00-\x20\x7f/?#@:][^\x00-\x20\x7f/?#@]*([/?#][^\x00-\x20\x7f]*)?|file://(localhost)?/[^\x00-\x20\x7f?#]*[^\x00-\x20\x7f?#/](\?[^\x00-\x20\x7f#]*)?)$"
    ))]
    pub source: String,
    /// Whether frames are ingested (default true).
    #[oai(default = "default_true")]
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Frames per second sampled for analysis, above 0 and at most 30 (default 1).
    #[oai(
        default = "default_fps",
        validator(minimum(value = "0", exclusive), maximum(value = "30"))
    )]
    #[serde(default = "default_fps")]
    pub sample_fps: f64,
    /// Feature flags (all off by default).
    pub features: Option<FeaturesInput>,
    /// Free text that rules and descriptions use (at most 4000 characters).
    #[oai(validator(max_length = 4000))]
    pub prompt: Option<String>,
    /// Named zones (at most 32, names unique).
    #[oai(validator(max_items = 32))]
    pub zones: Option<Vec<ZoneDto>>,
}

impl BodyLimits for CameraCreate {
    const MAX_BYTES: usize = 256 * 1024;
}

impl BodyLimits for CameraPatchBody {
    const MAX_BYTES: usize = 256 * 1024;
}

/// Changes to a camera; absent fields (or `null`) stay as they are.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct CameraPatchBody {
    /// New name.
    #[oai(validator(min_length = 1, max_length = 200, pattern = r"\S"))]
    pub name: Option<String>,
    /// New source (as in registration; an ended file camera starts again).
    #[oai(validator(
        max_length = 2048,
        pattern = r"^(push|(rtsp|rtsps|http|https)://([^\x00-\x20\x7f/?#@]*@)?[^\x00-\x20\x7f/?#@:][^\x00-\x20\x7f/?#@]*([/?#][^\x00-\x20\x7f]*)?|file://(localhost)?/[^\x00-\x20\x7f?#]*[^\x00-\x20\x7f?#/](\?[^\x00-\x20\x7f#]*)?)$"
    ))]
    pub source: Option<String>,
    /// New enabled flag.
    pub enabled: Option<bool>,
    /// New sampling rate.
    #[oai(validator(minimum(value = "0", exclusive), maximum(value = "30")))]
    pub sample_fps: Option<f64>,
    /// Flags to change; absent flags stay.
    pub features: Option<FeaturesInput>,
    /// New prompt.
    #[oai(validator(max_length = 4000))]
    pub prompt: Option<String>,
    /// New zone list, replacing the old one.
    #[oai(validator(max_items = 32))]
    pub zones: Option<Vec<ZoneDto>>,
}

/// A camera.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CameraDto {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Source URL or `push`.
    pub source: String,
    /// Whether frames are ingested.
    pub enabled: bool,
    /// Sampling rate.
    pub sample_fps: f64,
    /// Feature flags.
    pub features: FeaturesDto,
    /// Prompt.
    pub prompt: String,
    /// Zones.
    pub zones: Vec<ZoneDto>,
    /// `pending` (enabled, no report from its actor yet), `online`, `offline`, `error`,
    /// `stopped` (the server shut down), `ended` (its video file was read to the end) or
    /// `disabled`.
    pub status: String,
    /// Why, as the camera's actor last reported it (empty before its first report).
    pub status_reason: String,
    /// When the status last changed (absent before the first report).
    pub status_at: Option<chrono::DateTime<chrono::Utc>>,
    /// This node's ingest of the camera: counters since the process started (absent when the
    /// camera has not run on this node).
    pub ingest: Option<IngestDto>,
    /// Registration time (UTC).
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Last change (UTC).
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// Version for optimistic concurrency (also the `ETag`).
    pub version: u64,
}

/// This node's ingest counters of one camera.
#[derive(Debug, Clone, Object)]
pub struct IngestDto {
    /// Whether its actor runs now.
    pub running: bool,
    /// What is connected (`rtsp h264 768x576`, `mjpeg 640x480`, `snapshot …`,
    /// `file h264 768x576`, `push`).
    pub source: String,
    /// Frames decoded or uploaded, sampled or not.
    pub frames_in: u64,
    /// Frames kept by sampling.
    pub sampled: u64,
    /// Sampled frames dropped before analysis (replaced by a newer frame, or the inference
    /// queue was full).
    pub dropped: u64,
    /// Frames analysed.
    pub analysed: u64,
    /// Frames lost in transport or skipped until the next keyframe.
    pub damaged: u64,
    /// Sampled frames the models did not see because nothing moved and no track was alive
    /// (motion gating, see the calibration's `motion_*` settings).
    pub still: u64,
    /// Sampled frames in which the motion detector found movement.
    pub with_motion: u64,
    /// Analysed frames in which the person detector looked only at regions around what moved
    /// and the tracks moving with it (counted in `analysed` too; `person_regions`).
    pub in_regions: u64,
    /// Sampled frames the models did not see although tracks were alive: nothing moved near
    /// them, so they were held in place for the rules.
    pub held: u64,
    /// Face descriptors computed for its tracks: a track's face is described where it became
    /// clearer, at most every `face_descriptor_every_frames` analysed frames.
    pub faces_described: u64,
    /// Pictures not stored because the media folder was full (evidence frames, entry and exit
    /// frames, face crops): the camera kept analysing and recorded incidents without them.
    pub media_dropped: u64,
    /// Events not recorded because the event store could not be reached (the database was
    /// down): the camera kept analysing; tracks confirmed meanwhile are not recorded, findings
    /// and face matches are lost, track ends are recorded once it answers again.
    pub events_dropped: u64,
    /// Capture time of the newest sampled frame handled (analysed or still).
    pub last_frame_at: Option<chrono::DateTime<chrono::Utc>>,
    /// What the motion detector saw in that frame; absent before the first.
    pub motion: Option<MotionDto>,
}

/// What the motion detector saw in a camera's newest handled frame.
#[derive(Debug, Clone, Object)]
pub struct MotionDto {
    /// The frame's capture time.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Whether anything moved.
    pub moving: bool,
    /// Moving regions (normalised), largest first.
    pub boxes: Vec<BoxDto>,
    /// Share of the picture (outside the motion masks) that changed.
    pub changed: f32,
    /// The background was (re)started with this frame (the first frame, a new frame size or
    /// masks, or a lighting jump): no motion is reported then.
    pub reseeded: bool,
    /// Whether the frame went to the models.
    pub analysed: bool,
    /// Where the person detector looked (normalised); empty when it looked at the whole
    /// frame or not at all.
    pub regions: Vec<BoxDto>,
}

/// The ingest counters of camera `id` on this node.
pub fn ingest_of(app: &App, id: &str) -> Option<IngestDto> {
    let now = app.ingest().snapshot(id)?;
    let c = now.counts;
    Some(IngestDto {
        running: now.running,
        source: now.source,
        frames_in: c.frames_in,
        sampled: c.sampled,
        dropped: c.dropped,
        analysed: c.analysed,
        damaged: c.damaged,
        still: c.still,
        with_motion: c.with_motion,
        in_regions: c.in_regions,
        held: c.held,
        faces_described: c.faces_described,
        media_dropped: c.media_dropped,
        events_dropped: c.events_dropped,
        last_frame_at: now.last_frame_at,
        motion: now.motion.map(|seen| MotionDto {
            at: seen.at,
            moving: seen.motion.moving(),
            boxes: seen.motion.boxes.iter().map(box_dto).collect(),
            changed: seen.motion.changed,
            reseeded: seen.motion.reseeded,
            analysed: seen.analysed,
            regions: seen.regions.iter().map(box_dto).collect(),
        }),
    })
}

/// A camera's ingest status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "lowercase")]
pub enum CameraStatus {
    /// Enabled, not connected yet.
    Pending,
    /// Frames are flowing.
    Online,
    /// The source stopped answering.
    Offline,
    /// The source failed (bad URL, decode errors).
    Error,
    /// Ingest stopped with the server.
    Stopped,
    /// Its video file was read to the end (not restarted until its settings change).
    Ended,
    /// Not ingested.
    Disabled,
}

impl CameraStatus {
    /// The read model's text for this status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Online => "online",
            Self::Offline => "offline",
            Self::Error => "error",
            Self::Stopped => "stopped",
            Self::Ended => "ended",
            Self::Disabled => "disabled",
        }
    }
}

/// A page of cameras.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CameraPage {
    /// Cameras by id, in the order asked for (ascending by default).
    pub items: Vec<CameraDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn zones_from(dtos: Vec<ZoneDto>) -> Vec<Zone> {
    dtos.into_iter()
        .map(|z| Zone {
            name: z.name,
            polygon: z
                .polygon
                .into_iter()
                .map(|p| Point { x: p.x, y: p.y })
                .collect(),
        })
        .collect()
}

fn zones_to(zones: &[Zone]) -> Vec<ZoneDto> {
    zones
        .iter()
        .map(|z| ZoneDto {
            name: z.name.clone(),
            polygon: z
                .polygon
                .iter()
                .map(|p| PointDto { x: p.x, y: p.y })
                .collect(),
        })
        .collect()
}

fn features_patch(f: FeaturesInput) -> FeaturesPatch {
    FeaturesPatch {
        crowd: f.crowd,
        authorised: f.authorised,
        critical: f.critical,
        sleep: f.sleep,
        theft: f.theft,
        intrusion: f.intrusion,
        loitering: f.loitering,
        clip_appearances: f.clip_appearances,
    }
}

fn features_dto(f: CameraFeatures) -> FeaturesDto {
    FeaturesDto {
        crowd: f.crowd,
        authorised: f.authorised,
        critical: f.critical,
        sleep: f.sleep,
        theft: f.theft,
        intrusion: f.intrusion,
        loitering: f.loitering,
        clip_appearances: f.clip_appearances,
    }
}

fn dto_from_row(app: &App, c: CameraRow) -> CameraDto {
    CameraDto {
        ingest: ingest_of(app, &c.id),
        status_reason: c.status_reason,
        status_at: c.status_at,
        zones: zones_to(&c.zones),
        features: features_dto(c.features),
        id: c.id,
        name: c.name,
        source: c.source,
        enabled: c.enabled,
        sample_fps: c.sample_fps,
        prompt: c.prompt,
        status: c.status,
        created_at: c.created_at,
        updated_at: c.updated_at,
        version: c.version,
    }
}

fn dto_from_state(app: &App, c: &Camera, version: u64) -> CameraDto {
    CameraDto {
        ingest: ingest_of(app, &c.id),
        status_reason: String::new(),
        status_at: None,
        id: c.id.clone(),
        name: c.name.clone(),
        source: c.source.clone(),
        enabled: c.enabled,
        sample_fps: c.sample_fps,
        features: features_dto(c.features),
        prompt: c.prompt.clone(),
        zones: zones_to(&c.zones),
        status: if c.enabled { "pending" } else { "disabled" }.into(),
        created_at: c.created_at,
        updated_at: c.updated_at,
        version,
    }
}

fn command_error(err: CommandError<CameraError>, id: &str) -> ApiError {
    super::error::command_error(err, "camera", |e| match e {
        CameraError::NotFound => camera_not_found(id),
        CameraError::AlreadyExists(id) => ApiError::new(
            StatusCode::CONFLICT,
            "CAMERA_EXISTS",
            format!("camera `{id}` already exists (or existed)"),
            json!({"id": id}),
        ),
        CameraError::Invalid { field, reason } => ApiError::validation(field, reason),
    })
}

/// Refuses a source this node may not open — a video file outside the allowed folders — with
/// 422 on `source`, before anything is stored. A malformed source is left to the aggregate,
/// which says what is wrong with it.
fn check_source(app: &App, source: &str) -> Result<(), ApiError> {
    if vigil_actors::aggregates::camera::validate_source(source).is_err() {
        return Ok(());
    }
    app.ingest()
        .sources()
        .check_source(source)
        .map_err(|e| match e {
            SourceError::InvalidUrl(reason) => ApiError::validation("source", reason),
            other => ApiError::validation("source", other.to_string()),
        })
}

/// The camera as the read model shows it once it has caught up with `position` (waiting a
/// little), else as the write side knows it.
async fn visible_camera(
    app: &App,
    id: &str,
    position: Option<u64>,
    fallback: CameraDto,
) -> Result<CameraDto, ApiError> {
    if let Some(position) = position
        && wait_visible(app, Some(position)).await >= position
        && let Some(row) = get_camera(app.pool(), id).await.map_err(ApiError::from)?
        && row.version == fallback.version
    {
        return Ok(dto_from_row(app, row));
    }
    Ok(fallback)
}

/// Response of a registration.
#[derive(ApiResponse)]
pub enum CreatedCamera {
    /// Registered.
    #[oai(status = 201)]
    Created(
        Json<CameraDto>,
        /// The camera's version.
        #[oai(header = "ETag")]
        String,
        /// Where the camera lives.
        #[oai(header = "Location")]
        String,
        /// Global position of the event this write appended.
        #[oai(header = "X-Vigil-Position")]
        u64,
    ),
}

/// Response of a read or an update.
#[derive(ApiResponse)]
pub enum CameraResponse {
    /// The camera.
    #[oai(status = 200)]
    Ok(
        Json<CameraDto>,
        /// The camera's version.
        #[oai(header = "ETag")]
        String,
        /// Global position the answer reflects (read-model checkpoint or appended event).
        #[oai(header = "X-Vigil-Position")]
        u64,
    ),
}

/// Response of a listing.
#[derive(ApiResponse)]
pub enum CameraList {
    /// A page.
    #[oai(status = 200)]
    Ok(
        Json<CameraPage>,
        /// The read model's checkpoint: the page reflects every event up to it.
        #[oai(header = "X-Vigil-Position")]
        u64,
    ),
}

/// Response of a removal.
#[derive(ApiResponse)]
pub enum Removed {
    /// Removed.
    #[oai(status = 204)]
    NoContent(
        /// Global position of the removal event.
        #[oai(header = "X-Vigil-Position")]
        u64,
    ),
}

/// Waits for the cameras read model to reach `min_position` (when given); returns its checkpoint.
async fn read_position(app: &App, min_position: Option<u64>) -> Result<u64, ApiError> {
    let status = app
        .projection_status("cameras")
        .ok_or_else(|| ApiError::internal("cameras projection is not running"))?;
    if let Some(min) = min_position {
        let head = app.store().head_position().await?;
        if min > head {
            return Err(ApiError::validation(
                "min_position",
                format!("position {min} is beyond the newest stored event ({head})"),
            ));
        }
    }
    if let Some(min) = min_position
        && !status.wait_for(min, READ_WAIT).await
    {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "READ_MODEL_LAGGING",
            format!("the camera read model has not reached position {min} yet; retry"),
            json!({"position": status.position(), "min_position": min}),
        ));
    }
    Ok(status.position())
}

/// Camera endpoints.
pub struct CamerasApi;

#[OpenApi(prefix_path = "/api/v1/cameras", tag = "ApiTags::Cameras")]
impl CamerasApi {
    /// Register a camera.
    ///
    /// Appends `camera.registered` and answers once it is stored. 409 `CAMERA_EXISTS` when the
    /// id is taken; 422 `VALIDATION_FAILED` names the offending field (a `file://` source
    /// outside the folders this node allows included).
    #[oai(path = "/", method = "post", operation_id = "create_camera")]
    async fn create(
        &self,
        app: Data<&App>,
        auth: Auth,
        body: JsonBody<CameraCreate>,
    ) -> Result<CreatedCamera, ApiError> {
        let principal = auth.require("create_camera")?;
        if principal.is_camera_restricted() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "a key restricted to some cameras cannot register cameras",
                json!({}),
            ));
        }
        let body = body.0;
        check_source(&app, &body.source)?;
        let id = body.id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let command = CameraCommand::Register(RegisterCamera {
            id: id.clone(),
            name: body.name,
            source: body.source,
            enabled: body.enabled,
            sample_fps: body.sample_fps,
            features: features_patch(body.features.unwrap_or_default())
                .apply(CameraFeatures::default()),
            prompt: body.prompt.unwrap_or_default(),
            zones: zones_from(body.zones.unwrap_or_default()),
        });
        let meta = request_meta(principal);
        let done = app
            .handler()
            .execute::<CameraAggregate>(&id, command, &meta, None)
            .await
            .map_err(|e| command_error(e, &id))?;
        let camera = done
            .state
            .camera
            .as_ref()
            .ok_or_else(|| ApiError::internal("registered camera missing"))?;
        let dto = visible_camera(
            &app,
            &id,
            done.position,
            dto_from_state(&app, camera, done.version),
        )
        .await?;
        Ok(CreatedCamera::Created(
            Json(dto),
            etag(done.version),
            format!("/api/v1/cameras/{id}"),
            done.position.unwrap_or_default(),
        ))
    }

    /// List cameras.
    ///
    /// By id, ascending unless `order=desc`; `limit` per page (1–500, default 50); pass
    /// `next_cursor` back as `cursor` (with the same `order`). Filters: `status` (`pending`,
    /// `online`, `offline`, `error`, `stopped`, `ended`, `disabled`) and
    /// `enabled`.
    /// With `min_position` (from a write's `X-Vigil-Position`) the read waits until the read
    /// model has applied that event.
    #[oai(path = "/", method = "get", operation_id = "list_cameras")]
    #[allow(clippy::too_many_arguments)] // one argument per query parameter
    async fn list(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
        status: Query<Option<CameraStatus>>,
        enabled: Query<Option<bool>>,
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000000000000")))]
        min_position: Query<Option<u64>>,
        order: Query<Option<OrderParam>>,
    ) -> Result<CameraList, ApiError> {
        let principal = auth.require("list_cameras")?;
        let limit = limit.0.unwrap_or(50);
        if !(1..=500).contains(&limit) {
            return Err(ApiError::validation("limit", "must be between 1 and 500"));
        }
        let position = read_position(&app, min_position.0).await?;
        let only_ids = principal
            .is_camera_restricted()
            .then(|| principal.camera_ids.clone());
        let query = CameraQuery {
            status: status.0.map(|s| s.as_str().to_string()),
            enabled: enabled.0,
            cursor: cursor.0,
            limit,
            only_ids,
            order: Some(order_or(order.0, vigil_projections::Order::Asc)),
        };
        let (rows, next_cursor) = list_cameras(app.pool(), &query)
            .await
            .map_err(ApiError::from)?;
        let page = CameraPage {
            items: rows.into_iter().map(|r| dto_from_row(&app, r)).collect(),
            next_cursor,
        };
        Ok(CameraList::Ok(Json(page), position))
    }

    /// Get a camera.
    #[oai(path = "/:id", method = "get", operation_id = "get_camera")]
    async fn get(
        &self,
        app: Data<&App>,
        auth: Auth,
        id: Path<String>,
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000000000000")))]
        min_position: Query<Option<u64>>,
    ) -> Result<CameraResponse, ApiError> {
        let principal = auth.require("get_camera")?;
        visible_to(principal, &id.0)?;
        let position = read_position(&app, min_position.0).await?;
        let row = get_camera(app.pool(), &id.0)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| camera_not_found(&id.0))?;
        let version = row.version;
        Ok(CameraResponse::Ok(
            Json(dto_from_row(&app, row)),
            etag(version),
            position,
        ))
    }

    /// Change a camera.
    ///
    /// Only the fields present change; `features` changes only the flags present. With
    /// `If-Match: "N"` the change applies only at version N (412 `VERSION_MISMATCH` otherwise).
    /// 409 `CAMERA_DECLARED_IN_CONFIG` for a camera declared in the config file.
    #[oai(path = "/:id", method = "patch", operation_id = "update_camera")]
    async fn update(
        &self,
        app: Data<&App>,
        auth: Auth,
        id: Path<String>,
        #[oai(name = "If-Match", validator(pattern = r#"^(W/)?"?[0-9]{1,19}"?$"#))]
        if_match: Header<Option<String>>,
        body: JsonBody<CameraPatchBody>,
    ) -> Result<CameraResponse, ApiError> {
        let principal = auth.require("update_camera")?;
        visible_to(principal, &id.0)?;
        let expected = parse_if_match(if_match.0)?;
        let body = body.0;
        if let Some(source) = &body.source {
            check_source(&app, source)?;
        }
        let patch = CameraPatch {
            name: body.name,
            source: body.source,
            enabled: body.enabled,
            sample_fps: body.sample_fps,
            features: body.features.map(features_patch),
            prompt: body.prompt,
            zones: body.zones.map(zones_from),
        };
        apply_patch(&app, principal, &id.0, patch, expected).await
    }

    /// Remove a camera.
    ///
    /// Appends `camera.removed`; the stream stays for audit and the id cannot be reused.
    /// Honours `If-Match` like PATCH. 409 `CAMERA_DECLARED_IN_CONFIG` for a camera declared in
    /// the config file.
    #[oai(path = "/:id", method = "delete", operation_id = "delete_camera")]
    async fn delete(
        &self,
        app: Data<&App>,
        auth: Auth,
        id: Path<String>,
        #[oai(name = "If-Match", validator(pattern = r#"^(W/)?"?[0-9]{1,19}"?$"#))]
        if_match: Header<Option<String>>,
    ) -> Result<Removed, ApiError> {
        let principal = auth.require("delete_camera")?;
        visible_to(principal, &id.0)?;
        let expected = parse_if_match(if_match.0)?;
        refuse_declared(&app, &id.0)?;
        let done = app
            .handler()
            .execute::<CameraAggregate>(
                &id.0,
                CameraCommand::Remove,
                &request_meta(principal),
                expected,
            )
            .await
            .map_err(|e| command_error(e, &id.0))?;
        let seen = wait_visible(&app, done.position).await;
        Ok(Removed::NoContent(done.position.unwrap_or(seen)))
    }

    /// Start a camera.
    ///
    /// Enables it (`camera.updated`); its actor starts and reports `camera.status_changed`
    /// (`online` at its first frame, else `error` with the reason).
    #[oai(path = "/:id/start", method = "post", operation_id = "start_camera")]
    async fn start(
        &self,
        app: Data<&App>,
        auth: Auth,
        id: Path<String>,
    ) -> Result<CameraResponse, ApiError> {
        let principal = auth.require("start_camera")?;
        set_enabled(&app, principal, &id.0, true).await
    }

    /// Stop a camera.
    ///
    /// Disables it (`camera.updated`); its actor ends open tracks and stops, and
    /// `camera.status_changed` records `stopped`.
    #[oai(path = "/:id/stop", method = "post", operation_id = "stop_camera")]
    async fn stop(
        &self,
        app: Data<&App>,
        auth: Auth,
        id: Path<String>,
    ) -> Result<CameraResponse, ApiError> {
        let principal = auth.require("stop_camera")?;
        set_enabled(&app, principal, &id.0, false).await
    }

    /// A camera's recordings.
    ///
    /// Every clip of the camera that overlaps `from`–`to` (default: the last 24 hours up to
    /// now), oldest first: segments of continuous recording (`continuous: true`, with
    /// `clip_continuous` on) and clips cut around incidents and appearances. `limit` per page
    /// (1–500, default 100); pass `next_cursor` back as `cursor` with the same `from` and `to`.
    /// Each clip's `url` serves the MP4 with range requests. 404 `CAMERA_NOT_FOUND` for an
    /// unknown camera or one the key may not see; 422 `VALIDATION_FAILED` when `from` is
    /// after `to`.
    #[oai(
        path = "/:id/recordings",
        method = "get",
        operation_id = "list_recordings"
    )]
    #[allow(clippy::too_many_arguments)] // one argument per query parameter
    async fn recordings(
        &self,
        app: Data<&App>,
        auth: Auth,
        id: Path<String>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> Result<Json<RecordingPage>, ApiError> {
        let principal = auth.require("list_recordings")?;
        visible_to(principal, &id.0)?;
        let to = to.0.unwrap_or_else(Utc::now);
        let from = from.0.unwrap_or(to - chrono::Duration::hours(24));
        if from > to {
            return Err(ApiError::validation("from", "must not be after `to`"));
        }
        get_camera(app.pool(), &id.0)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| camera_not_found(&id.0))?;
        let (clips, next_cursor) = camera_clips(
            app.pool(),
            &id.0,
            from,
            to,
            cursor.0.as_deref(),
            limit.0.unwrap_or(100),
        )
        .await
        .map_err(ApiError::from)?;
        Ok(Json(RecordingPage {
            items: clips.into_iter().map(clip_dto).collect(),
            next_cursor,
        }))
    }
}

/// A page of a camera's recordings.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RecordingPage {
    /// Clips by start time, oldest first.
    pub items: Vec<ClipDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Applies `patch` to camera `id` (at version `expected` when given) and answers with the
/// camera as the read model shows it once it has caught up.
pub(crate) async fn apply_patch(
    app: &App,
    principal: &Principal,
    id: &str,
    patch: CameraPatch,
    expected: Option<u64>,
) -> Result<CameraResponse, ApiError> {
    refuse_declared(app, id)?;
    let done = app
        .handler()
        .execute::<CameraAggregate>(
            id,
            CameraCommand::Update(patch),
            &request_meta(principal),
            expected,
        )
        .await
        .map_err(|e| command_error(e, id))?;
    let camera = done
        .state
        .camera
        .as_ref()
        .ok_or_else(|| ApiError::internal("updated camera missing"))?;
    let mut fallback = dto_from_state(app, camera, done.version);
    if let Ok(Some(row)) = get_camera(app.pool(), id).await {
        // Ingest status lives in the read model; keep it unless the camera was disabled.
        if camera.enabled && row.status != "disabled" {
            fallback.status = row.status;
            fallback.status_reason = row.status_reason;
            fallback.status_at = row.status_at;
        }
    }
    let dto = visible_camera(app, id, done.position, fallback).await?;
    let position = match done.position {
        Some(p) => p,
        None => app.store().head_position().await?,
    };
    Ok(CameraResponse::Ok(Json(dto), etag(done.version), position))
}

/// 409 `CAMERA_DECLARED_IN_CONFIG` when camera `id` is declared in the config file, which owns
/// it: changes go to the file and apply at the next start.
pub(crate) fn refuse_declared(app: &App, id: &str) -> Result<(), ApiError> {
    if !app.config().cameras.iter().any(|c| c.id == id) {
        return Ok(());
    }
    let file = app.config().declared_actor();
    let file = file.trim_start_matches(crate::config::DECLARED_ACTOR_PREFIX);
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "CAMERA_DECLARED_IN_CONFIG",
        format!(
            "camera `{id}` is declared in {file}, which owns it: change it there and restart (the file wins at every start)"
        ),
        json!({"id": id, "file": file}),
    ))
}

async fn set_enabled(
    app: &App,
    principal: &Principal,
    id: &str,
    enabled: bool,
) -> Result<CameraResponse, ApiError> {
    visible_to(principal, id)?;
    let patch = CameraPatch {
        enabled: Some(enabled),
        ..CameraPatch::default()
    };
    apply_patch(app, principal, id, patch, None).await
}
