//! Health, projection status and metrics.

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
use vigil_projections::checkpoint::Checkpoint;

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

/// The key a request was made with, and what it may do.
#[derive(Debug, Clone, Object)]
pub struct WhoAmI {
    /// The key's id.
    pub key_id: String,
    /// The actor its changes are recorded under (`key:{id}`).
    pub actor: String,
    /// Its scopes (`admin` implies every other).
    pub scopes: Vec<String>,
    /// The cameras it is restricted to; empty: all.
    pub camera_ids: Vec<String>,
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
    /// The media folder (frames, crops, clips): `ok`, or `full` when its file system had no
    /// room at the latest write (cameras keep analysing and record incidents without their
    /// pictures, counted in each camera's `media_dropped`; enrolment answers 507).
    pub media: String,
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
    let (state, workers_loaded, error) = match app.ingest().pool().metrics().models_state() {
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
    /// Not ready: the store is down, a projection lags more than `ready_max_lag`, the media
    /// folder is full, or the models failed.
    #[oai(status = 503)]
    NotReady(Json<Ready>),
}

async fn projections(app: &App) -> Result<Vec<ProjectionDto>, ApiError> {
    let head = app.store().head_position().await?;
    let mut out = Vec::new();
    for runner in app.runners() {
        let checkpoint = runner
            .checkpoint()
            .await
            .map_err(ApiError::database_unavailable)?;
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

/// The relays this node runs: (sink, checkpoint name).
fn configured_relays(app: &App) -> Vec<(&'static str, &'static str)> {
    let mut relays = Vec::new();
    if !app.config().kafka_brokers.is_empty() {
        relays.push(("kafka", crate::relay::CHECKPOINT));
    }
    if !app.config().mqtt_url.is_empty() {
        relays.push(("mqtt", crate::mqtt::CHECKPOINT));
    }
    relays
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

/// One camera a node runs.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct NodeCameraDto {
    /// The camera.
    pub camera_id: String,
    /// The fencing token of the node's lease (grows at every change of hands); absent where
    /// cameras are not leased (SQLite).
    pub lease_token: Option<u64>,
    /// Seconds since the node took the lease.
    pub held_seconds: Option<f64>,
    /// Seconds until the lease expires unless renewed.
    pub lease_expires_in_seconds: Option<f64>,
}

/// A node sharing the database.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct NodeDto {
    /// Its name (`node_id`).
    pub node_id: String,
    /// Whether it is the node that answers.
    pub this_node: bool,
    /// Whether it beat within the lease time; a dead node's cameras go to the others.
    pub alive: bool,
    /// When its process started.
    pub started_at: Option<String>,
    /// Seconds since its last heartbeat (absent where cameras are not leased).
    pub heartbeat_age_seconds: Option<f64>,
    /// The most cameras it takes; 0: an even share.
    pub max_cameras: u32,
    /// Camera actors running on it, at its last heartbeat.
    pub cameras_running: u64,
    /// Sampled frames its cameras handle per second, at its last heartbeat.
    pub frames_per_second: f64,
    /// The cameras it holds, sorted by id.
    pub cameras: Vec<NodeCameraDto>,
}

/// Which node runs which camera.
#[derive(Debug, Clone, Object)]
pub struct NodesDto {
    /// `leases`: ingest nodes on PostgreSQL share the cameras, one node per camera at a time;
    /// `single`: one node (SQLite) runs every camera.
    pub mode: String,
    /// Seconds a lease lasts without renewal (`camera_lease_secs`).
    pub lease_seconds: u64,
    /// Seconds between heartbeats (`camera_heartbeat_secs`).
    pub heartbeat_seconds: u64,
    /// The nodes, sorted by name; nodes silent for a day are left out.
    pub nodes: Vec<NodeDto>,
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
    /// events, the media folder has room, the models' weights are verified and their load did
    /// not fail. No key needed.
    #[oai(path = "/health/ready", method = "get", operation_id = "health_ready")]
    async fn ready(&self, app: Data<&App>) -> ReadyResponse {
        let (models_ok, models) = models_health(&app).await;
        let media_full = app.ingest().blobs().probe().await;
        let media = if media_full { "full" } else { "ok" }.to_string();
        match projections(&app).await {
            Ok(projections) => {
                let max_lag = app.config().ready_max_lag;
                let ok = models_ok && !media_full && projections.iter().all(|p| p.lag <= max_lag);
                let body = Ready {
                    status: if ok { "ok" } else { "degraded" }.into(),
                    store: true,
                    media,
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
                media,
                projections: vec![],
                models,
            })),
        }
    }

    /// The calling key: its id, scopes and cameras.
    ///
    /// Any valid key may ask; a client (the console) shows only what the key allows.
    #[oai(path = "/api/v1/me", method = "get", operation_id = "whoami")]
    async fn whoami(&self, auth: Auth) -> Result<Json<WhoAmI>, ApiError> {
        let principal = auth.require("whoami")?;
        Ok(Json(WhoAmI {
            key_id: principal.key_id.clone(),
            actor: principal.actor.clone(),
            scopes: principal.scopes.clone(),
            camera_ids: principal.camera_ids.clone(),
        }))
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

    /// The nodes sharing this database and the cameras each runs.
    ///
    /// On PostgreSQL every ingest node holds leases on cameras (one node per camera at a time,
    /// an even share each, taken over when a node stops beating for the lease time). On SQLite
    /// the one node runs every camera.
    #[oai(
        path = "/api/v1/system/nodes",
        method = "get",
        operation_id = "list_nodes"
    )]
    async fn nodes(&self, app: Data<&App>, auth: Auth) -> Result<Json<NodesDto>, ApiError> {
        auth.require("list_nodes")?;
        let nodes = crate::service::nodes::list(&app).await?;
        let leased = nodes.leased;
        let seconds = |ms: i64| leased.then_some(ms as f64 / 1000.0);
        Ok(Json(NodesDto {
            mode: if leased { "leases" } else { "single" }.into(),
            lease_seconds: nodes.lease.as_secs(),
            heartbeat_seconds: nodes.heartbeat.as_secs(),
            nodes: nodes
                .nodes
                .into_iter()
                .map(|n| NodeDto {
                    this_node: n.node_id == nodes.this_node,
                    node_id: n.node_id,
                    alive: n.alive,
                    started_at: n.started_at,
                    heartbeat_age_seconds: seconds(n.heartbeat_age_ms),
                    max_cameras: n.max_cameras,
                    cameras_running: n.load.cameras_running as u64,
                    frames_per_second: n.load.frames_per_second,
                    cameras: n
                        .leases
                        .into_iter()
                        .map(|l| NodeCameraDto {
                            camera_id: l.camera_id,
                            lease_token: leased.then_some(l.token),
                            held_seconds: seconds(l.held_ms),
                            lease_expires_in_seconds: seconds(l.expires_in_ms),
                        })
                        .collect(),
                })
                .collect(),
        }))
    }

    /// Projection and relay progress and lag.
    ///
    /// Every projection, then each relay this node is configured with (`kafka-relay`,
    /// `mqtt-relay`: the checkpoint of the last event the broker acknowledged).
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
        let mut list = projections(&app).await?;
        let head = app.store().head_position().await?;
        for (_, name) in configured_relays(&app) {
            let checkpoint = Checkpoint::new(app.pool().clone(), name)
                .read()
                .await
                .map_err(ApiError::database_unavailable)?;
            list.push(ProjectionDto {
                name: name.to_string(),
                checkpoint,
                head,
                lag: head.saturating_sub(checkpoint),
                last_error: None,
            });
        }
        Ok(Json(list))
    }
}

/// Prometheus text metrics. No key needed.
#[handler]
pub async fn metrics(app: Data<&App>) -> poem::Response {
    use ::metrics::{counter, gauge};
    // What lives in the database or in other tasks is read first (async), then set.
    let head = app.store().head_position().await.ok();
    let mut checkpoints = Vec::new();
    for runner in app.runners() {
        if let Ok(checkpoint) = runner.checkpoint().await {
            checkpoints.push((runner.name().to_string(), checkpoint));
        }
    }
    let mut relays = Vec::new();
    for (sink, name) in configured_relays(&app) {
        if let Ok(relayed) = Checkpoint::new(app.pool().clone(), name).read().await {
            relays.push((sink, relayed));
        }
    }
    let deliveries = vigil_projections::actions::delivery_counts(app.pool())
        .await
        .unwrap_or_default();
    let cameras = app.ingest().snapshots();
    let pool = app.ingest().pool().metrics();
    let swept = app
        .ingest()
        .tracks_swept
        .load(std::sync::atomic::Ordering::Relaxed);
    app.telemetry().record(|| {
        if let Some(head) = head {
            gauge!("vigil_event_log_head").set(head as f64);
        }
        for (name, checkpoint) in &checkpoints {
            gauge!("vigil_projection_checkpoint", "projection" => name.clone())
                .set(*checkpoint as f64);
            if let Some(head) = head {
                gauge!("vigil_projection_lag", "projection" => name.clone())
                    .set(head.saturating_sub(*checkpoint) as f64);
            }
        }
        if let Some(head) = head {
            for (sink, relayed) in &relays {
                let lag = head.saturating_sub(*relayed) as f64;
                gauge!("vigil_relay_lag", "sink" => *sink).set(lag);
                match *sink {
                    "kafka" => gauge!("vigil_kafka_relay_lag").set(lag),
                    _ => gauge!("vigil_mqtt_relay_lag").set(lag),
                }
            }
        }
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        gauge!("vigil_inference_queue_depth").set(get(&pool.queue_depth) as f64);
        gauge!("vigil_inference_batch_cap").set(get(&pool.batch_cap) as f64);
        counter!("vigil_inference_frames_total").absolute(get(&pool.frames));
        counter!("vigil_inference_faces_described_total").absolute(get(&pool.faces_described));
        counter!("vigil_inference_person_passes_total").absolute(get(&pool.person_passes));
        counter!("vigil_inference_person_regions_total").absolute(get(&pool.person_regions));
        counter!("vigil_inference_dropped_total").absolute(get(&pool.dropped));
        counter!("vigil_inference_failed_total").absolute(get(&pool.failed));
        counter!("vigil_tracks_swept_total").absolute(swept);
        for (id, now) in &cameras {
            let c = now.counts;
            for (name, value) in [
                ("vigil_camera_frames_in_total", c.frames_in),
                ("vigil_camera_sampled_total", c.sampled),
                ("vigil_camera_dropped_total", c.dropped),
                ("vigil_camera_analysed_total", c.analysed),
                ("vigil_camera_damaged_total", c.damaged),
                ("vigil_camera_still_total", c.still),
                ("vigil_camera_motion_frames_total", c.with_motion),
                ("vigil_camera_region_frames_total", c.in_regions),
                ("vigil_camera_held_total", c.held),
                ("vigil_camera_media_dropped_total", c.media_dropped),
                ("vigil_camera_events_dropped_total", c.events_dropped),
            ] {
                counter!(name, "camera" => id.clone()).absolute(value);
            }
            gauge!("vigil_camera_moving", "camera" => id.clone())
                .set(f64::from(u8::from(now.moving())));
            gauge!("vigil_camera_persons", "camera" => id.clone()).set(now.persons as f64);
            gauge!("vigil_camera_fps", "camera" => id.clone()).set(now.fps);
            gauge!("vigil_camera_running", "camera" => id.clone())
                .set(f64::from(u8::from(now.running)));
        }
        // Every configured target shows every status, 0 included, so a drained queue reads 0.
        let mut targets: Vec<String> = app
            .config()
            .webhooks
            .iter()
            .map(|t| t.name.clone())
            .collect();
        targets.extend(deliveries.iter().map(|(t, _, _)| t.clone()));
        targets.sort();
        targets.dedup();
        for target in &targets {
            for status in ["pending", "delivered", "dead", "discarded"] {
                let n = deliveries
                    .iter()
                    .find(|(t, s, _)| t == target && s == status)
                    .map_or(0, |(_, _, n)| *n);
                gauge!("vigil_webhook_deliveries", "target" => target.clone(), "status" => status)
                    .set(n as f64);
            }
        }
        let dead: u64 = deliveries
            .iter()
            .filter(|(_, s, _)| s == "dead")
            .map(|(_, _, n)| n)
            .sum();
        gauge!("vigil_webhook_dlq_size").set(dead as f64);
    });
    poem::Response::builder()
        .content_type("text/plain; version=0.0.4")
        .body(app.telemetry().render())
}
