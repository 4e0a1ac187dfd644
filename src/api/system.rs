//! Health, projection status and metrics.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use poem::handler;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use super::auth::Auth;
use super::error::ApiError;
use crate::app::App;
use vigil_actors::pool::ModelsState;

/// One projection's progress.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ProjectionDto {
    /// Name.
    pub name: String,
    /// Last applied global position (committed checkpoint).
    pub checkpoint: u64,
    /// Position of the newest stored event.
    pub head: u64,
    /// Events not yet applied (`head - checkpoint`).
    pub lag: u64,
    /// The error the runner is backing off from, if any.
    pub last_error: Option<String>,
}

/// Liveness.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Live {
    /// Always `ok` while the process serves.
    pub status: String,
}

/// The models' state.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ModelsHealth {
    /// `verified` when every weight file is present and matches its checksum; otherwise the
    /// first missing or wrong file and the command that fetches it.
    pub weights: String,
    /// `loaded` (the inference workers hold the models), `not_loaded` (they load at the first
    /// frame; `vigil serve` preloads them at start) or `failed`.
    pub state: String,
    /// Inference workers with loaded models.
    pub workers_loaded: u64,
    /// Why the latest load failed.
    pub error: Option<String>,
}

/// Readiness: the store answers, projections keep up and the models can run.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Ready {
    /// `ok` or `degraded`.
    pub status: String,
    /// Whether the event store answered.
    pub store: bool,
    /// Projection progress.
    pub projections: Vec<ProjectionDto>,
    /// The models.
    pub models: ModelsHealth,
}

/// The models' health: weights checked once (on a blocking thread, the first time only),
/// load state from the pool.
async fn models_health(app: &App) -> (bool, ModelsHealth) {
    let weights = match app.weights_if_checked() {
        Some(checked) => checked.clone(),
        None => {
            let app = app.clone();
            tokio::task::spawn_blocking(move || app.weights().clone())
                .await
                .unwrap_or_else(|e| Err(format!("weights check failed: {e}")))
        }
    };
    let (state, workers_loaded, error) = match app.ingest().pool.metrics().models_state() {
        ModelsState::NotLoaded => ("not_loaded", 0, None),
        ModelsState::Loaded(n) => ("loaded", n, None),
        ModelsState::Failed(e) => ("failed", 0, Some(e)),
    };
    let ok = weights.is_ok() && error.is_none();
    (
        ok,
        ModelsHealth {
            weights: weights.err().unwrap_or_else(|| "verified".into()),
            state: state.into(),
            workers_loaded,
            error,
        },
    )
}

/// Readiness answer.
#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// Ready.
    #[oai(status = 200)]
    Ready(Json<Ready>),
    /// Not ready: the store is down or a projection lags more than `ready_max_lag`.
    #[oai(status = 503)]
    NotReady(Json<Ready>),
}

async fn projections(app: &App) -> Result<Vec<ProjectionDto>, ApiError> {
    let head = app.store().head_position().await?;
    let mut out = Vec::new();
    for runner in app.runners() {
        let checkpoint = runner.checkpoint().await.map_err(ApiError::unavailable)?;
        out.push(ProjectionDto {
            name: runner.name().to_string(),
            checkpoint,
            head,
            lag: head.saturating_sub(checkpoint),
            last_error: runner.status().last_error(),
        });
    }
    Ok(out)
}

/// The device the models run on.
#[derive(Debug, Clone, Object)]
pub struct GpuDto {
    /// `wgpu` or `cpu`.
    pub backend: String,
    /// The adapter's name as the driver reports it (`NVIDIA H100 80GB HBM3`,
    /// `llvmpipe (LLVM 15.0.6, 256 bits)`), or the CPU backend's.
    pub adapter: String,
    /// Whether the adapter is a physical card (false for the CPU and software rasterisers).
    pub physical: bool,
    /// The configured preference: `auto`, `wgpu` or `cpu` (`models_backend`).
    pub preference: String,
}

/// System endpoints.
pub struct SystemApi;

#[OpenApi(tag = "ApiTags::System")]
impl SystemApi {
    /// Liveness: the process serves HTTP. No key needed.
    #[oai(path = "/health/live", method = "get", operation_id = "health_live")]
    async fn live(&self) -> Json<Live> {
        Json(Live {
            status: "ok".into(),
        })
    }

    /// Readiness: the event store answers, every projection lags by at most `ready_max_lag`
    /// events, the models' weights are verified and their load did not fail. No key needed.
    #[oai(path = "/health/ready", method = "get", operation_id = "health_ready")]
    async fn ready(&self, app: Data<&App>) -> ReadyResponse {
        let (models_ok, models) = models_health(&app).await;
        match projections(&app).await {
            Ok(projections) => {
                let max_lag = app.config().ready_max_lag;
                let ok = models_ok && projections.iter().all(|p| p.lag <= max_lag);
                let body = Ready {
                    status: if ok { "ok" } else { "degraded" }.into(),
                    store: true,
                    projections,
                    models,
                };
                if ok {
                    ReadyResponse::Ready(Json(body))
                } else {
                    ReadyResponse::NotReady(Json(body))
                }
            }
            Err(_) => ReadyResponse::NotReady(Json(Ready {
                status: "degraded".into(),
                store: false,
                projections: vec![],
                models,
            })),
        }
    }

    /// The compute device the models run on: a wgpu adapter (GPU, or a software Vulkan
    /// rasteriser) or the CPU, chosen by `models_backend`. 503 when `models_backend = wgpu` and
    /// no adapter can be opened.
    #[oai(path = "/api/v1/system/gpu", method = "get", operation_id = "get_gpu")]
    async fn gpu(&self, app: Data<&App>, auth: Auth) -> Result<Json<GpuDto>, ApiError> {
        auth.require("get_gpu")?;
        let app = app.clone();
        let preference = app.config().models_backend;
        let compute =
            tokio::task::spawn_blocking(move || app.compute().cloned().map_err(str::to_string))
                .await
                .map_err(|e| ApiError::unavailable(e.to_string()))?
                .map_err(ApiError::unavailable)?;
        Ok(Json(GpuDto {
            backend: compute.backend.to_string(),
            adapter: compute.adapter,
            physical: compute.physical,
            preference: serde_json::to_value(preference)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        }))
    }

    /// Projection progress and lag.
    #[oai(
        path = "/api/v1/system/projections",
        method = "get",
        operation_id = "list_projections"
    )]
    async fn projections(
        &self,
        app: Data<&App>,
        auth: Auth,
    ) -> Result<Json<Vec<ProjectionDto>>, ApiError> {
        auth.require("list_projections")?;
        Ok(Json(projections(&app).await?))
    }
}

/// Prometheus text metrics. No key needed.
#[handler]
pub async fn metrics(app: Data<&App>) -> poem::Response {
    let mut out = String::new();
    let head = app.store().head_position().await.ok();
    out += "# HELP vigil_event_log_head Position of the newest stored event.\n";
    out += "# TYPE vigil_event_log_head gauge\n";
    if let Some(head) = head {
        let _ = writeln!(out, "vigil_event_log_head {head}");
    }
    let mut checkpoints = Vec::new();
    for runner in app.runners() {
        if let Ok(checkpoint) = runner.checkpoint().await {
            checkpoints.push((runner.name(), checkpoint));
        }
    }
    out += "# HELP vigil_projection_checkpoint Last position a projection applied.\n";
    out += "# TYPE vigil_projection_checkpoint gauge\n";
    for (name, checkpoint) in &checkpoints {
        let _ = writeln!(
            out,
            "vigil_projection_checkpoint{{projection=\"{name}\"}} {checkpoint}"
        );
    }
    if let Some(head) = head {
        out += "# HELP vigil_projection_lag Events a projection has not applied yet.\n";
        out += "# TYPE vigil_projection_lag gauge\n";
        for (name, checkpoint) in &checkpoints {
            let _ = writeln!(
                out,
                "vigil_projection_lag{{projection=\"{name}\"}} {}",
                head.saturating_sub(*checkpoint)
            );
        }
    }
    if !app.config().kafka_brokers.is_empty()
        && let (Some(head), Ok(relayed)) = (
            head,
            vigil_projections::runner::read_checkpoint(app.pool(), crate::relay::CHECKPOINT).await,
        )
    {
        out += "# HELP vigil_kafka_relay_lag Stored events the broker has not acknowledged yet.\n";
        out += "# TYPE vigil_kafka_relay_lag gauge\n";
        let _ = writeln!(
            out,
            "vigil_kafka_relay_lag {}",
            head.saturating_sub(relayed)
        );
    }
    if !app.config().mqtt_url.is_empty()
        && let (Some(head), Ok(relayed)) = (
            head,
            vigil_projections::runner::read_checkpoint(app.pool(), crate::mqtt::CHECKPOINT).await,
        )
    {
        out +=
            "# HELP vigil_mqtt_relay_lag Stored events the MQTT broker has not acknowledged yet.\n";
        out += "# TYPE vigil_mqtt_relay_lag gauge\n";
        let _ = writeln!(out, "vigil_mqtt_relay_lag {}", head.saturating_sub(relayed));
    }
    app.ingest().pool.metrics().render(&mut out);
    let cameras = app.ingest().runtimes();
    for (name, help, kind) in [
        (
            "frames_in",
            "Frames decoded or uploaded per camera.",
            "counter",
        ),
        ("sampled", "Frames kept by sampling per camera.", "counter"),
        (
            "dropped",
            "Sampled frames dropped before analysis per camera.",
            "counter",
        ),
        ("analysed", "Frames analysed per camera.", "counter"),
        (
            "damaged",
            "Frames lost in transport or skipped until a keyframe per camera.",
            "counter",
        ),
        (
            "still",
            "Sampled frames not analysed because nothing moved and no track was alive, per camera.",
            "counter",
        ),
        (
            "motion_frames",
            "Sampled frames in which the motion detector found movement, per camera.",
            "counter",
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP vigil_camera_{name}_total {help}\n# TYPE vigil_camera_{name}_total {kind}"
        );
        for (id, runtime) in &cameras {
            let c = &runtime.counters;
            let value = match name {
                "frames_in" => &c.frames_in,
                "sampled" => &c.sampled,
                "dropped" => &c.dropped,
                "analysed" => &c.analysed,
                "still" => &c.still,
                "motion_frames" => &c.with_motion,
                _ => &c.damaged,
            };
            let _ = writeln!(
                out,
                "vigil_camera_{name}_total{{camera=\"{id}\"}} {}",
                value.load(Ordering::Relaxed)
            );
        }
    }
    out += "# HELP vigil_camera_moving Whether the camera's newest handled frame had motion (1) or not (0).\n";
    out += "# TYPE vigil_camera_moving gauge\n";
    for (id, runtime) in &cameras {
        let moving = runtime
            .motion
            .lock()
            .ok()
            .and_then(|m| m.as_ref().map(|seen| seen.motion.moving()))
            .unwrap_or(false);
        let _ = writeln!(
            out,
            "vigil_camera_moving{{camera=\"{id}\"}} {}",
            u8::from(moving)
        );
    }
    out += "# HELP vigil_camera_persons Persons in view per camera (confirmed tracks after the newest analysed frame).\n";
    out += "# TYPE vigil_camera_persons gauge\n";
    for (id, runtime) in &cameras {
        let _ = writeln!(
            out,
            "vigil_camera_persons{{camera=\"{id}\"}} {}",
            runtime.counters.persons.load(Ordering::Relaxed)
        );
    }
    out += "# HELP vigil_http_responses_total HTTP responses by status class.\n";
    out += "# TYPE vigil_http_responses_total counter\n";
    for (i, class) in ["2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
        let n = app.metrics().responses[i].load(Ordering::Relaxed);
        let _ = writeln!(out, "vigil_http_responses_total{{class=\"{class}\"}} {n}");
    }
    poem::Response::builder()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}
