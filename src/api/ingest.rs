//! Camera ingest endpoints: start and stop a camera's actor, probe a URL, the latest frame,
//! pushed frames, synchronous analysis of one picture, and stored media (frames and crops
//! that events point at).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, Multipart, Object, OpenApi};
use serde::Deserialize;
use serde_json::json;
use vigil_actors::frame::{self, Frame, RgbImage};
use vigil_actors::pool::{Analysis, Scored, Want};
use vigil_actors::source::FrameOutcome;
use vigil_actors::source::{SourceError, probe};

use super::ApiTags;
use super::auth::{Auth, visible_row};
use super::body::{BodyLimits, JsonBody, Upload, UploadForm};
use super::dto::BoxDto;
use super::error::{ApiError, pool_error};
use crate::app::{App, Principal};
use crate::service::ingest;
use crate::service::visibility::wait_visible;

/// Most pictures in one upload.
pub const MAX_FILES: usize = 5;
/// Longest probe asked for.
const MAX_PROBE_MS: u32 = 30_000;

fn default_probe_ms() -> u32 {
    10_000
}

/// A URL to probe.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct CameraTestRequest {
    /// `rtsp://…`, `rtsps://…`, `http(s)://…` (MJPEG stream or snapshot URL) or
    /// `file:///path/clip.mp4` (a video file in a folder the node allows); credentials may be
    /// given in the URL.
    #[oai(validator(
        max_length = 2048,
        pattern = r"^((rtsp|rtsps|http|https)://([^\x00-\x20\x7f/?#@]*@)?[^\x00-\x20\x7f/?#@:][^\x00-\x20\x7f/?#@]*([/?#][^\x00-\x20\x7f]*)?|file://(localhost)?/[^\x00-\x20\x7f?#]*[^\x00-\x20\x7f?#/](\?[^\x00-\x20\x7f#]*)?)$"
    ))]
    pub url: String,
    /// How long to wait for the first frame, in milliseconds (100–30000, default 10000).
    #[oai(
        default = "default_probe_ms",
        validator(minimum(value = "100"), maximum(value = "30000"))
    )]
    #[serde(default = "default_probe_ms")]
    pub timeout_ms: u32,
}

impl BodyLimits for CameraTestRequest {
    const MAX_BYTES: usize = 16 * 1024;
}

/// What probing found.
#[derive(Debug, Clone, Object)]
pub struct CameraTestResult {
    /// `rtsp`, `mjpeg`, `snapshot` or `file`.
    pub kind: String,
    /// The video codec (`h264`, `h265`, or any FFmpeg name for a file), `jpeg` otherwise.
    pub codec: String,
    /// Columns of the first frame.
    pub width: u32,
    /// Rows of the first frame.
    pub height: u32,
    /// Milliseconds from starting to connect to the first decoded frame.
    pub latency_ms: f64,
}

fn box_of(s: &Scored) -> BoxDto {
    BoxDto {
        x1: s.x1,
        y1: s.y1,
        x2: s.x2,
        y2: s.y2,
    }
}

/// A detected person.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DetectionDto {
    /// `person`.
    pub class: String,
    /// Where.
    pub bbox: BoxDto,
    /// Confidence, 0–1.
    pub score: f32,
    /// The track this person belongs to on the camera (absent without a camera, or while the
    /// track is not yet confirmed).
    pub track_id: Option<String>,
}

/// A detected face.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct FaceDto {
    /// Where.
    pub bbox: BoxDto,
    /// Confidence, 0–1.
    pub score: f32,
    /// 128-d descriptor (same person: Euclidean distance below 0.6).
    pub embedding: Option<Vec<f32>>,
}

/// The analysis of one frame.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct FrameAnalysis {
    /// Persons, strongest first.
    pub detections: Vec<DetectionDto>,
    /// Faces, strongest first.
    pub faces: Vec<FaceDto>,
    /// Tracks this frame started (camera frames only).
    pub tracks_started: Vec<String>,
    /// Tracks this frame ended (camera frames only).
    pub tracks_ended: Vec<String>,
    /// Incidents this frame opened or added evidence to (camera frames only).
    pub incidents: Vec<String>,
    /// Frames that shared the model batch.
    pub batch_size: u32,
    /// Milliseconds from receiving the picture to this answer.
    pub processing_time_ms: f64,
}

fn analysis_dto(
    analysis: &Analysis,
    outcome: Option<&FrameOutcome>,
    started: Instant,
) -> FrameAnalysis {
    FrameAnalysis {
        detections: analysis
            .persons
            .iter()
            .enumerate()
            .map(|(i, p)| DetectionDto {
                class: "person".into(),
                bbox: box_of(p),
                score: p.score,
                track_id: outcome.and_then(|o| o.tracks.get(i).cloned().flatten()),
            })
            .collect(),
        faces: analysis
            .faces
            .iter()
            .map(|f| FaceDto {
                bbox: box_of(&f.bbox),
                score: f.bbox.score,
                embedding: f.embedding.clone(),
            })
            .collect(),
        tracks_started: outcome.map(|o| o.started.clone()).unwrap_or_default(),
        tracks_ended: outcome.map(|o| o.ended.clone()).unwrap_or_default(),
        incidents: outcome.map(|o| o.incidents.clone()).unwrap_or_default(),
        batch_size: analysis.batch_size as u32,
        processing_time_ms: started.elapsed().as_secs_f64() * 1e3,
    }
}

/// One picture to analyse.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeRequest {
    /// The picture, JPEG or PNG, base64 (standard alphabet; a `data:image/…;base64,` prefix
    /// is accepted).
    #[oai(validator(min_length = 1))]
    pub image: String,
    /// A push camera to analyse it as: the frame then goes through the camera's tracker and
    /// its tracks' events are stored.
    #[oai(validator(pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    pub camera_id: Option<String>,
    /// The client's frame number, echoed back.
    #[oai(validator(minimum(value = "0"), maximum(value = "1000000000000000")))]
    pub frame_number: Option<u64>,
    /// When the picture was captured (default: now).
    pub timestamp: Option<DateTime<Utc>>,
    /// Free-form client metadata (a JSON object), echoed back.
    pub metadata: Option<serde_json::Value>,
}

impl BodyLimits for AnalyzeRequest {
    const MAX_BYTES: usize = usize::MAX;
    const MEDIA: bool = true;
}

/// The analysis of one picture.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AnalyzeResult {
    /// The camera it was analysed as.
    pub camera_id: Option<String>,
    /// The client's frame number.
    pub frame_number: Option<u64>,
    /// Capture time used.
    pub timestamp: DateTime<Utc>,
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// What the models saw.
    #[oai(flatten)]
    pub analysis: FrameAnalysis,
    /// The client's metadata.
    pub metadata: Option<serde_json::Value>,
}

/// The outcome of one uploaded picture.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PushedFrame {
    /// The part's file name (or its index).
    pub file: String,
    /// Capture time used.
    pub timestamp: DateTime<Utc>,
    /// Whether sampling kept it for analysis.
    pub sampled: bool,
    /// What the models saw (sampled frames).
    pub analysis: Option<FrameAnalysis>,
    /// Why it was not analysed.
    pub error: Option<String>,
}

/// The outcome of an upload.
#[derive(Debug, Clone, Object)]
pub struct PushResult {
    /// The camera.
    pub camera_id: String,
    /// One entry per picture, in upload order.
    pub frames: Vec<PushedFrame>,
}

/// Frames uploaded by an edge device (documentation of the multipart body).
#[derive(Debug, Multipart)]
#[allow(dead_code)] // only its schema is used; the body is parsed by `Upload`
struct FramesForm {
    /// 1–5 pictures, JPEG or PNG, each under its own `files` part.
    files: Vec<poem_openapi::types::multipart::Upload>,
    /// Capture times (RFC 3339), one per file in order; absent ones default to arrival time.
    timestamps: Vec<String>,
}

impl UploadForm for FramesForm {
    const FIELDS: &'static [&'static str] = &[];
    const LISTS: &'static [&'static str] = &["timestamps"];
    const MAX_FILES: usize = MAX_FILES;
}

/// Response of an analysis.
#[derive(ApiResponse)]
pub enum AnalyzeResponse {
    /// What the models saw.
    #[oai(status = 200)]
    Ok(
        Json<AnalyzeResult>,
        /// Global position of the last event the frame caused (with `camera_id`), else the
        /// position the read models had applied; the ids in the answer are readable at once.
        #[oai(header = "X-Vigil-Position")]
        u64,
    ),
}

/// Response of an upload.
#[derive(ApiResponse)]
pub enum PushResponse {
    /// Each frame's outcome.
    #[oai(status = 200)]
    Ok(
        Json<PushResult>,
        /// Global position of the last event the frames caused, else the position the read
        /// models had applied; the ids in the answer are readable at once.
        #[oai(header = "X-Vigil-Position")]
        u64,
    ),
}

/// Response of the snapshot endpoint.
#[derive(ApiResponse)]
pub enum SnapshotResponse {
    /// The newest analysed frame.
    #[oai(status = 200, content_type = "image/jpeg")]
    Ok(
        Binary<Vec<u8>>,
        /// When it was captured.
        #[oai(header = "X-Vigil-Captured-At")]
        String,
    ),
}

/// Decodes a picture off the executor; a 422 `INVALID_IMAGE` names `field` on failure.
async fn decode_picture(bytes: bytes::Bytes, field: &str) -> Result<RgbImage, ApiError> {
    let decoded = tokio::task::spawn_blocking(move || frame::decode(&bytes))
        .await
        .map_err(ApiError::internal)?;
    decoded.map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_IMAGE",
            format!("`{field}` is not a usable picture: {e}"),
            json!({"field": field, "reason": e.to_string()}),
        )
    })
}

/// Checks that `id` is a camera the key may use and that it takes pushed frames.
async fn push_camera(app: &App, principal: &Principal, id: &str) -> Result<(), ApiError> {
    let row = visible_row(app, principal, id).await?;
    Ok(ingest::takes_pushes(&row)?)
}

fn parse_time(text: &str, index: usize) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            ApiError::validation(format!("timestamps[{index}]"), format!("not RFC 3339: {e}"))
        })
}

fn probe_error(e: SourceError) -> ApiError {
    let kind = match &e {
        SourceError::InvalidUrl(_) => {
            return ApiError::validation("url", e.to_string());
        }
        SourceError::Connect(_) => "connect",
        SourceError::Protocol(_) => "protocol",
        SourceError::Unsupported(_) => "unsupported",
        SourceError::Decode(_) => "decode",
        SourceError::Timeout(_) => "timeout",
        SourceError::Ended | SourceError::Finished(_) => "ended",
    };
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "CAMERA_UNREACHABLE",
        format!("the camera did not give a frame: {e}"),
        json!({"kind": kind, "reason": e.to_string()}),
    )
}

/// Ingest endpoints.
pub struct IngestApi;

#[OpenApi(tag = "ApiTags::Cameras")]
impl IngestApi {
    /// Probe a camera URL.
    ///
    /// Connects, decodes one frame and reports the codec, resolution and time to first frame.
    /// 422 `CAMERA_UNREACHABLE` (the URL does not lead to a working camera) says what failed in `details.kind` (`connect`, `protocol`,
    /// `unsupported`, `decode`, `timeout`, `ended`) and `details.reason`; a `file://` URL
    /// outside the folders this node allows is 422 `VALIDATION_FAILED` on `url`. Nothing is
    /// stored.
    #[oai(
        path = "/api/v1/cameras/test",
        method = "post",
        operation_id = "test_camera"
    )]
    async fn test(
        &self,
        app: Data<&App>,
        auth: Auth,
        body: JsonBody<CameraTestRequest>,
    ) -> Result<Json<CameraTestResult>, ApiError> {
        auth.require("test_camera")?;
        let body = body.0;
        let timeout = Duration::from_millis(u64::from(body.timeout_ms.clamp(100, MAX_PROBE_MS)));
        let (found, frame) = probe(app.ingest().sources().as_ref(), &body.url, timeout)
            .await
            .map_err(probe_error)?;
        drop(frame);
        let mut words = found.source.split_whitespace();
        let kind = words.next().unwrap_or_default().to_string();
        let codec = if kind == "rtsp" || kind == "file" {
            words.next().unwrap_or_default().to_string()
        } else {
            "jpeg".into()
        };
        Ok(Json(CameraTestResult {
            kind,
            codec,
            width: found.width,
            height: found.height,
            latency_ms: found.latency_ms,
        }))
    }

    /// The latest frame of a camera.
    ///
    /// The newest analysed frame as JPEG. 404 `CAMERA_NOT_FOUND`, or `NO_FRAME` while the
    /// camera has not delivered a frame on this node.
    #[oai(
        path = "/api/v1/cameras/:id/snapshot",
        method = "get",
        operation_id = "camera_snapshot"
    )]
    async fn snapshot(
        &self,
        app: Data<&App>,
        auth: Auth,
        id: Path<String>,
    ) -> Result<SnapshotResponse, ApiError> {
        let principal = auth.require("camera_snapshot")?;
        visible_row(&app, principal, &id.0).await?;
        let latest = app.ingest().latest_frame(&id.0).ok_or_else(|| {
            ApiError::not_found(
                "NO_FRAME",
                format!("camera `{}` has not delivered a frame yet", id.0),
            )
        })?;
        let image = latest.image.clone();
        let jpeg = tokio::task::spawn_blocking(move || frame::encode_jpeg(&image, 85))
            .await
            .map_err(ApiError::internal)?;
        Ok(SnapshotResponse::Ok(
            Binary(jpeg),
            latest.captured_at.to_rfc3339(),
        ))
    }

    /// Upload frames of a push camera.
    ///
    /// Multipart: 1–5 pictures (JPEG or PNG) as `files` parts, optional capture times as
    /// `timestamps` parts (one per file, in order). Every picture is decoded before any is
    /// used: one bad picture (422 `INVALID_IMAGE`) and nothing is stored. The frames then go
    /// through the camera's sampling, models and tracker in order; the answer has each one's
    /// analysis. 409 `CAMERA_NOT_PUSH` / `CAMERA_NOT_RUNNING` when the camera does not take
    /// uploads now; 413 beyond `max_upload_bytes`.
    #[oai(
        path = "/api/v1/cameras/:id/frames",
        method = "post",
        operation_id = "push_frames"
    )]
    async fn push_frames(
        &self,
        app: Data<&App>,
        auth: Auth,
        id: Path<String>,
        body: Upload<FramesForm>,
    ) -> Result<PushResponse, ApiError> {
        let principal = auth.require("push_frames")?;
        let Upload {
            files, mut lists, ..
        } = body;
        let timestamps = lists.remove("timestamps").unwrap_or_default();
        if files.is_empty() {
            return Err(ApiError::validation("files", "at least one picture"));
        }
        if timestamps.len() > files.len() {
            return Err(ApiError::validation(
                "timestamps",
                "more timestamps than files",
            ));
        }
        push_camera(&app, principal, &id.0).await?;
        let now = Utc::now();
        let mut frames = Vec::new();
        for (i, (name, bytes)) in files.into_iter().enumerate() {
            let at = match timestamps.get(i) {
                Some(text) => parse_time(text, i)?,
                None => now,
            };
            let image = decode_picture(bytes, &format!("files[{i}]")).await?;
            frames.push((
                name,
                Frame {
                    image: Arc::new(image),
                    captured_at: at,
                },
            ));
        }
        let mut out = Vec::new();
        let mut appended = None;
        for (name, frame) in frames {
            let started = Instant::now();
            let timestamp = frame.captured_at;
            let outcome = ingest::push(&app, &id.0, frame).await?;
            appended = appended.max(outcome.position);
            out.push(PushedFrame {
                file: name,
                timestamp,
                sampled: outcome.sampled,
                analysis: outcome
                    .analysis
                    .as_ref()
                    .map(|a| analysis_dto(a, Some(&outcome), started)),
                error: outcome.error.clone(),
            });
        }
        let seen = wait_visible(&app, appended).await;
        Ok(PushResponse::Ok(
            Json(PushResult {
                camera_id: id.0,
                frames: out,
            }),
            appended.unwrap_or(seen),
        ))
    }

    /// Analyse one picture.
    ///
    /// JSON with the picture in base64. Answers what the models saw: persons, faces (with
    /// descriptors), and — with `camera_id` of a running push camera — the tracks the frame
    /// belongs to, started or ended, recorded like an upload. 422 `INVALID_IMAGE` when the
    /// picture cannot be decoded (nothing is stored); 503 `MODELS_UNAVAILABLE` when the models
    /// cannot run.
    #[oai(
        path = "/api/v1/analyze",
        method = "post",
        operation_id = "analyze_frame"
    )]
    async fn analyze(
        &self,
        app: Data<&App>,
        auth: Auth,
        body: JsonBody<AnalyzeRequest>,
    ) -> Result<AnalyzeResponse, ApiError> {
        let principal = auth.require("analyze_frame")?;
        let started = Instant::now();
        let body = body.0;
        if body.metadata.as_ref().is_some_and(|m| !m.is_object()) {
            return Err(ApiError::validation("metadata", "must be a JSON object"));
        }
        let text = body.image.trim();
        let text = match text.strip_prefix("data:") {
            Some(rest) => rest.split_once(";base64,").map_or(rest, |(_, data)| data),
            None => text,
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "INVALID_IMAGE",
                    format!("`image` is not base64: {e}"),
                    json!({"field": "image", "reason": e.to_string()}),
                )
            })?;
        if let Some(id) = &body.camera_id {
            push_camera(&app, principal, id).await?;
        }
        let image = Arc::new(decode_picture(bytes.into(), "image").await?);
        let (width, height) = (image.width, image.height);
        let timestamp = body.timestamp.unwrap_or_else(Utc::now);
        let mut appended = None;
        let analysis = match &body.camera_id {
            Some(id) => {
                let frame = Frame {
                    image,
                    captured_at: timestamp,
                };
                let outcome = ingest::push(&app, id, frame).await?;
                appended = outcome.position;
                match (&outcome.analysis, &outcome.error) {
                    (Some(a), _) => analysis_dto(a, Some(&outcome), started),
                    (None, Some(error)) => {
                        return Err(ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "NOT_ANALYSED",
                            error.clone(),
                            json!({}),
                        ));
                    }
                    (None, None) => {
                        return Err(ApiError::new(
                            StatusCode::CONFLICT,
                            "NOT_SAMPLED",
                            "the frame is closer to the camera's previous one than its sample rate allows; send a later `timestamp`",
                            json!({}),
                        ));
                    }
                }
            }
            None => {
                let want = Want {
                    faces: true,
                    always_faces: true,
                    embeddings: true,
                    face_min_pixels: 0,
                    person_regions: None,
                };
                let a = app
                    .ingest()
                    .pool()
                    .analyze(image, want)
                    .await
                    .map_err(pool_error)?;
                analysis_dto(&a, None, started)
            }
        };
        let seen = wait_visible(&app, appended).await;
        Ok(AnalyzeResponse::Ok(
            Json(AnalyzeResult {
                camera_id: body.camera_id,
                frame_number: body.frame_number,
                timestamp,
                width,
                height,
                analysis,
                metadata: body.metadata,
            }),
            appended.unwrap_or(seen),
        ))
    }
}
