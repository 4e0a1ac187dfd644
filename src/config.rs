//! Configuration: defaults < `vigil.toml` < `VIGIL_*` environment variables.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use vigil_schemas::events::{ActionKind, IncidentKind, RateLimits, Severity};

/// Every setting of a Vigil node. Unknown keys in `vigil.toml` are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP API listens on (`VIGIL_LISTEN`).
    pub listen: SocketAddr,
    /// Folder for the embedded database, the media store and the Lance tables
    /// (`VIGIL_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Event store and read-model database: `sqlite://…` or `postgres://…`
    /// (`VIGIL_DATABASE_URL`). Empty means `sqlite://{data_dir}/vigil.db`.
    pub database_url: String,
    /// Event store on a KurrentDB server instead of the SQL database, e.g.
    /// `esdb://127.0.0.1:2113?tls=false` (`VIGIL_KURRENTDB_URL`). Needs a build with the
    /// `kurrentdb` cargo feature; read models stay in `database_url`. Empty: the SQL store.
    pub kurrentdb_url: String,
    /// Connections in the database pool (`VIGIL_DATABASE_MAX_CONNECTIONS`).
    pub database_max_connections: u32,
    /// How long a request or a writer waits for a database connection before it is refused
    /// (503 `DATABASE_UNAVAILABLE`) instead of hanging while the database is down, in seconds
    /// (`VIGIL_DATABASE_TIMEOUT_SECS`).
    pub database_timeout_secs: u64,
    /// The admin API key (`VIGIL_ADMIN_KEY`). When empty, a key is generated at first start,
    /// printed once, and only its hash is stored.
    pub admin_key: String,
    /// Largest accepted request body in bytes (`VIGIL_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// How often live subscriptions look for events appended by other processes, in
    /// milliseconds (`VIGIL_POLL_INTERVAL_MS`).
    pub poll_interval_ms: u64,
    /// `/health/ready` fails while a projection lags the log by more than this many events
    /// (`VIGIL_READY_MAX_LAG`).
    pub ready_max_lag: u64,
    /// Log filter in `tracing` syntax, e.g. `info,vigil=debug` (`VIGIL_LOG`).
    pub log: String,
    /// Log format: `text` or `json` (`VIGIL_LOG_FORMAT`).
    pub log_format: String,
    /// Secret mixed into every API key hash (`VIGIL_KEY_PEPPER`). When empty, a random pepper
    /// is generated into `{data_dir}/key_pepper` at first start; nodes sharing a database must
    /// share the pepper, so set it explicitly for more than one node.
    pub key_pepper: String,
    /// Failed authentications per minute a client address may make before it gets 429
    /// (`VIGIL_AUTH_FAILURES_PER_MINUTE`).
    pub auth_failures_per_minute: u32,
    /// Whole-request time limit in seconds, body upload included (`VIGIL_REQUEST_TIMEOUT_SECS`).
    pub request_timeout_secs: u64,
    /// Origins allowed to call the API from a browser (`VIGIL_CORS_ALLOWED_ORIGINS`, comma
    /// separated). Empty: no CORS headers at all (closed).
    pub cors_allowed_origins: Vec<String>,
    /// Messages a WebSocket client may fall behind by before it is closed with code 4008 and
    /// told where to resume (`VIGIL_WS_BUFFER`).
    pub ws_buffer: usize,
    /// Seconds between `system` status messages and pings on WebSockets
    /// (`VIGIL_WS_HEARTBEAT_SECS`).
    pub ws_heartbeat_secs: u64,
    /// Kafka bootstrap servers, comma separated (`VIGIL_KAFKA_BROKERS`). Empty: the relay is
    /// off.
    pub kafka_brokers: String,
    /// Topic prefix: events go to `{prefix}.{category}s`, e.g. `vigil.cameras`
    /// (`VIGIL_KAFKA_TOPIC_PREFIX`).
    pub kafka_topic_prefix: String,
    /// Partitions of topics the relay creates (`VIGIL_KAFKA_PARTITIONS`).
    pub kafka_partitions: i32,
    /// Replication factor of topics the relay creates (`VIGIL_KAFKA_REPLICATION`).
    pub kafka_replication: i32,
    /// How long the producer keeps trying one message before the relay restarts from its
    /// checkpoint, in milliseconds (`VIGIL_KAFKA_MESSAGE_TIMEOUT_MS`).
    pub kafka_message_timeout_ms: u64,
    /// The address clients reach this node at, e.g. `https://vigil.example.com`
    /// (`VIGIL_PUBLIC_BASE_URL`). Set, every outbound message that names media (webhook bodies,
    /// MQTT, Kafka) carries an absolute signed URL that opens without a key until it expires, and
    /// CloudEvents' `source` is this URL. Empty: media links stay relative paths.
    pub public_base_url: String,
    /// How long the signed media links of outbound messages work, in seconds (1 to 604800;
    /// `VIGIL_MEDIA_LINK_TTL_SECS`).
    pub media_link_ttl_secs: u64,
    /// MQTT broker, `mqtt://[user:password@]host[:port]` (`VIGIL_MQTT_URL`). Empty: the MQTT
    /// relay is off.
    pub mqtt_url: String,
    /// Topic prefix: everything goes under `{prefix}/` (`VIGIL_MQTT_TOPIC_PREFIX`).
    pub mqtt_topic_prefix: String,
    /// MQTT client id (`VIGIL_MQTT_CLIENT_ID`); empty: `vigil-{host name}`. The relay connects
    /// as `{id}-relay`, each ingest node's live state as `{id}-live`.
    pub mqtt_client_id: String,
    /// Publish Home Assistant MQTT discovery configs for every camera (`VIGIL_MQTT_DISCOVERY`).
    pub mqtt_discovery: bool,
    /// Home Assistant's discovery prefix (`VIGIL_MQTT_DISCOVERY_PREFIX`).
    pub mqtt_discovery_prefix: String,
    /// Publish the evidence JPEG of every new incident on `{prefix}/cameras/{id}/evidence`
    /// (retained; also the picture of Home Assistant's camera entity) (`VIGIL_MQTT_EVIDENCE_JPEG`).
    pub mqtt_evidence_jpeg: bool,
    /// Where the models run (`VIGIL_MODELS_BACKEND`): `auto` (a wgpu adapter when one exists,
    /// else the CPU), `wgpu` (fail without an adapter) or `cpu`.
    pub models_backend: vigil_models::BackendPreference,
    /// Folder with the pretrained weights that `scripts/fetch-assets` downloads
    /// (`VIGIL_ASSETS_DIR`). Empty: `$VIGIL_ASSETS`, else `~/.cache/vigil/assets`.
    pub assets_dir: String,
    /// Largest accepted body carrying pictures (frame uploads, base64 images), in bytes
    /// (`VIGIL_MAX_UPLOAD_BYTES`).
    pub max_upload_bytes: usize,
    /// Run camera ingest (the camera actors) on this node (`VIGIL_INGEST`).
    pub ingest: bool,
    /// This node's name among the nodes sharing a database (`VIGIL_NODE_ID`): it owns camera
    /// leases and signs its cameras' events. Empty: `{host name}-{listen port}`. Must be
    /// unique per node and stay the same across its restarts.
    pub node_id: String,
    /// How long a node's lease on a camera lasts without a heartbeat, in seconds
    /// (`VIGIL_CAMERA_LEASE_SECS`): a node that dies loses its cameras to the others after
    /// this long. Used on PostgreSQL, where ingest nodes share the cameras.
    pub camera_lease_secs: u64,
    /// How often a node renews its leases and takes or gives back cameras, in seconds
    /// (`VIGIL_CAMERA_HEARTBEAT_SECS`; at most half the lease).
    pub camera_heartbeat_secs: u64,
    /// The most cameras this node takes (`VIGIL_MAX_CAMERAS`); 0: no limit, an even share.
    pub max_cameras: u32,
    /// Inference worker threads, each with its own copy of the models
    /// (`VIGIL_INFERENCE_WORKERS`). Two by default: the convolutions use every core, but a
    /// frame's other steps (pre-processing, pooling, decoding the heads) run on one thread, and
    /// a second worker fills the gaps.
    pub inference_workers: usize,
    /// Most frames per inference batch (`VIGIL_INFERENCE_MAX_BATCH`). Size it to the device: a
    /// software adapter refuses the 256 MiB buffers a batch of 32 needs.
    pub inference_max_batch: usize,
    /// Longest a batch waits for more frames, in milliseconds (`VIGIL_INFERENCE_MAX_WAIT_MS`).
    pub inference_max_wait_ms: u64,
    /// Frames that may wait for the inference pool before new ones are dropped
    /// (`VIGIL_INFERENCE_QUEUE`).
    pub inference_queue: usize,
    /// First delay before a failed camera is restarted, in milliseconds; it doubles per
    /// consecutive failure (`VIGIL_CAMERA_BACKOFF_INITIAL_MS`).
    pub camera_backoff_initial_ms: u64,
    /// Longest restart delay, in milliseconds (`VIGIL_CAMERA_BACKOFF_MAX_MS`).
    pub camera_backoff_max_ms: u64,
    /// Record clips around incidents (and the appearances of cameras that ask for them): from
    /// RTSP cameras' own streams, from the sampled frames of other cameras (`VIGIL_CLIPS`).
    pub clips: bool,
    /// Seconds of stream a clip keeps before its incident (`VIGIL_CLIP_PRE_ROLL_SECONDS`).
    pub clip_pre_roll_seconds: f64,
    /// Seconds a clip runs on after its incident's latest finding
    /// (`VIGIL_CLIP_POST_ROLL_SECONDS`).
    pub clip_post_roll_seconds: f64,
    /// The longest clip in seconds; a longer incident continues in the next clip
    /// (`VIGIL_CLIP_MAX_SECONDS`).
    pub clip_max_seconds: f64,
    /// The most memory one camera's pre-roll may hold, in MiB (`VIGIL_CLIP_PRE_ROLL_MAX_MIB`).
    pub clip_pre_roll_max_mib: u64,
    /// The disk all clips may take, in MiB; the oldest clips no open incident holds go first
    /// (`VIGIL_CLIP_BUDGET_MIB`).
    pub clip_budget_mib: u64,
    /// Days a clip is kept at most, 0 for no limit; an open incident's clips stay
    /// (`VIGIL_CLIP_MAX_AGE_DAYS`).
    pub clip_max_age_days: u64,
    /// Continuous recording: every camera's stream is also written in segments of
    /// `clip_segment_seconds`, under the same budget (`VIGIL_CLIP_CONTINUOUS`; needs `clips`).
    pub clip_continuous: bool,
    /// Length of a continuous recording's segments in seconds, each cut at the first keyframe
    /// past it (`VIGIL_CLIP_SEGMENT_SECONDS`).
    pub clip_segment_seconds: f64,
    /// Default per-minute limits of new API keys (TOML table `[default_rate_limits]`).
    pub default_rate_limits: RateLimits,
    /// Per-minute limits of the admin keys (configured and bootstrap) (TOML table
    /// `[admin_rate_limits]`).
    pub admin_rate_limits: RateLimits,
    /// Outbound webhook targets that response actions are delivered to (TOML array of tables
    /// `[[webhooks]]`: `name`, `url`, `secret`, `actions`, `timeout_ms`, `max_attempts`,
    /// `backoff_initial_ms`, `backoff_max_ms`).
    pub webhooks: Vec<crate::webhooks::WebhookTarget>,
    /// Actions requested automatically when an incident opens (TOML array of tables
    /// `[[auto_actions]]`: `kinds` (empty: every kind), `min_severity`, `actions`).
    pub auto_actions: Vec<AutoAction>,
    /// Folder of the Lance vector tables (`subject_faces.lance`, `appearances.lance`)
    /// (`VIGIL_LANCE_DIR`). Empty: `{data_dir}/lance`. Nodes sharing a database must share it,
    /// or use `object_store_url`.
    pub lance_dir: String,
    /// Where media (frames, crops, clips) and the Lance tables live
    /// (`VIGIL_OBJECT_STORE_URL`): empty, local folders (`{data_dir}/blobs`, `lance_dir`); or
    /// `s3://bucket[/prefix]`, an S3-compatible bucket that every node shares (media under
    /// `{prefix}/media/`, tables under `{prefix}/lance/`).
    pub object_store_url: String,
    /// The S3-compatible server's endpoint (`VIGIL_S3_ENDPOINT`), e.g. `http://minio:9000`;
    /// empty: AWS (or `AWS_ENDPOINT`).
    pub s3_endpoint: String,
    /// The bucket's region (`VIGIL_S3_REGION`); empty: `AWS_REGION`, else `us-east-1`.
    pub s3_region: String,
    /// Access key id (`VIGIL_S3_ACCESS_KEY_ID`); empty: `AWS_ACCESS_KEY_ID`.
    pub s3_access_key_id: String,
    /// Secret access key (`VIGIL_S3_SECRET_ACCESS_KEY`); empty: `AWS_SECRET_ACCESS_KEY`.
    pub s3_secret_access_key: String,
    /// `POST /api/v1/media/{sha256}/sign` hands out the bucket's own presigned URLs
    /// (`VIGIL_S3_PRESIGN`), which clients fetch from the bucket directly; off, Vigil's signed
    /// URLs, served by Vigil from the bucket. Turn it on only where clients can reach
    /// `s3_endpoint`.
    pub s3_presign: bool,
    /// Rows from which a vector table gets an IVF-PQ index; below, face search is exact
    /// (`VIGIL_SEARCH_ANN_MIN_ROWS`).
    pub search_ann_min_rows: usize,
    /// IVF partitions probed per indexed query (`VIGIL_SEARCH_NPROBES`).
    pub search_nprobes: usize,
    /// Candidates re-ranked by exact distance per indexed query, as a multiple of k
    /// (`VIGIL_SEARCH_REFINE`).
    pub search_refine: u32,
    /// Folders whose video files `file://` cameras may read, besides `{data_dir}/videos` and
    /// the assets folder's `images/` (`VIGIL_VIDEO_DIRS`, comma separated).
    pub video_dirs: Vec<String>,
    /// Cameras declared in the file (TOML array of tables `[[cameras]]`, the API's fields:
    /// `id`, `name`, `source`, `enabled`, `sample_fps`, `features`, `prompt`, `zones`). At start
    /// they are reconciled into camera events with the file as actor (new: registered,
    /// changed: updated, removed from the file: disabled); the API refuses to change or remove
    /// a declared camera (409 `CAMERA_DECLARED_IN_CONFIG`).
    pub cameras: Vec<DeclaredCamera>,
    /// The file these settings were read from, if any (recorded as the actor of the events
    /// that declared cameras cause).
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// A camera declared in `vigil.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredCamera {
    /// Id (1–64 of `A–Z a–z 0–9 - _`).
    pub id: String,
    /// Name.
    pub name: String,
    /// `rtsp://…`, `rtsps://…`, `http(s)://…`, `file:///…` or `push`.
    pub source: String,
    /// Whether frames are ingested (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Frames per second analysed (default 1).
    #[serde(default = "one")]
    pub sample_fps: f64,
    /// Analyses (`features = { crowd = true, intrusion = true }`); absent flags are off.
    #[serde(default)]
    pub features: vigil_schemas::events::CameraFeatures,
    /// Free text for rules and descriptions.
    #[serde(default)]
    pub prompt: String,
    /// Zones (`[[cameras.zones]]` with `name` and `polygon = [{ x = 0.1, y = 0.2 }, …]`).
    #[serde(default)]
    pub zones: Vec<vigil_schemas::events::Zone>,
}

fn yes() -> bool {
    true
}

fn one() -> f64 {
    1.0
}

/// One automatic-action setting: incidents of these kinds at or above this severity get these
/// actions as soon as they open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoAction {
    /// Incident kinds (`crowd`, `intrusion`, …); empty means every kind.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Lowest severity that triggers it.
    #[serde(default = "default_min_severity")]
    pub min_severity: String,
    /// Actions to request (`alert_security`, …).
    pub actions: Vec<String>,
}

fn default_min_severity() -> String {
    "high".into()
}

impl AutoAction {
    /// Whether an incident of `kind` and `severity` triggers this setting.
    pub fn matches(&self, kind: IncidentKind, severity: Severity) -> bool {
        let min = Severity::parse(&self.min_severity).unwrap_or(Severity::Critical);
        severity >= min && (self.kinds.is_empty() || self.kinds.iter().any(|k| k == kind.as_str()))
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            database_url: String::new(),
            kurrentdb_url: String::new(),
            database_max_connections: 8,
            database_timeout_secs: 5,
            admin_key: String::new(),
            max_body_bytes: 1 << 20,
            poll_interval_ms: 250,
            ready_max_lag: 1000,
            log: "info".into(),
            log_format: "text".into(),
            key_pepper: String::new(),
            auth_failures_per_minute: 30,
            request_timeout_secs: 30,
            cors_allowed_origins: Vec::new(),
            ws_buffer: 1024,
            kafka_brokers: String::new(),
            kafka_topic_prefix: "vigil".into(),
            kafka_partitions: 3,
            kafka_replication: 1,
            kafka_message_timeout_ms: 30_000,
            public_base_url: String::new(),
            media_link_ttl_secs: 86_400,
            mqtt_url: String::new(),
            mqtt_topic_prefix: "vigil".into(),
            mqtt_client_id: String::new(),
            mqtt_discovery: false,
            mqtt_discovery_prefix: "homeassistant".into(),
            mqtt_evidence_jpeg: false,
            ws_heartbeat_secs: 5,
            models_backend: vigil_models::BackendPreference::Auto,
            assets_dir: String::new(),
            max_upload_bytes: 20 << 20,
            ingest: true,
            node_id: String::new(),
            camera_lease_secs: 15,
            camera_heartbeat_secs: 5,
            max_cameras: 0,
            inference_workers: 2,
            inference_max_batch: 4,
            inference_max_wait_ms: 20,
            inference_queue: 64,
            camera_backoff_initial_ms: 1000,
            camera_backoff_max_ms: 60_000,
            clips: true,
            clip_pre_roll_seconds: 10.0,
            clip_post_roll_seconds: 10.0,
            clip_max_seconds: 300.0,
            clip_pre_roll_max_mib: 32,
            clip_budget_mib: 10_240,
            clip_max_age_days: 0,
            clip_continuous: false,
            clip_segment_seconds: 60.0,
            default_rate_limits: RateLimits {
                standard: 600,
                media: 120,
                search: 60,
                ingest: 1200,
            },
            admin_rate_limits: RateLimits {
                standard: 6000,
                media: 1200,
                search: 600,
                ingest: 12000,
            },
            webhooks: Vec::new(),
            auto_actions: Vec::new(),
            lance_dir: String::new(),
            object_store_url: String::new(),
            s3_endpoint: String::new(),
            s3_region: String::new(),
            s3_access_key_id: String::new(),
            s3_secret_access_key: String::new(),
            s3_presign: false,
            search_ann_min_rows: vigil_projections::vectors::VectorConfig::default().ann_min_rows,
            search_nprobes: vigil_projections::vectors::VectorConfig::default().nprobes,
            search_refine: vigil_projections::vectors::VectorConfig::default().refine,
            video_dirs: Vec::new(),
            cameras: Vec::new(),
            file: None,
        }
    }
}

/// Keys that may come from the environment as `VIGIL_{KEY}`.
const ENV_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "database_url",
    "kurrentdb_url",
    "models_backend",
    "assets_dir",
    "database_max_connections",
    "database_timeout_secs",
    "admin_key",
    "max_body_bytes",
    "poll_interval_ms",
    "ready_max_lag",
    "log",
    "log_format",
    "key_pepper",
    "auth_failures_per_minute",
    "request_timeout_secs",
    "ws_buffer",
    "kafka_brokers",
    "kafka_topic_prefix",
    "kafka_partitions",
    "kafka_replication",
    "kafka_message_timeout_ms",
    "public_base_url",
    "media_link_ttl_secs",
    "mqtt_url",
    "mqtt_topic_prefix",
    "mqtt_client_id",
    "mqtt_discovery",
    "mqtt_discovery_prefix",
    "mqtt_evidence_jpeg",
    "ws_heartbeat_secs",
    "max_upload_bytes",
    "ingest",
    "node_id",
    "camera_lease_secs",
    "camera_heartbeat_secs",
    "max_cameras",
    "inference_workers",
    "inference_max_batch",
    "inference_max_wait_ms",
    "inference_queue",
    "camera_backoff_initial_ms",
    "camera_backoff_max_ms",
    "clips",
    "clip_pre_roll_seconds",
    "clip_post_roll_seconds",
    "clip_max_seconds",
    "clip_pre_roll_max_mib",
    "clip_budget_mib",
    "clip_max_age_days",
    "clip_continuous",
    "clip_segment_seconds",
    "webhooks",
    "auto_actions",
    "lance_dir",
    "object_store_url",
    "s3_endpoint",
    "s3_region",
    "s3_access_key_id",
    "s3_secret_access_key",
    "s3_presign",
    "search_ann_min_rows",
    "search_nprobes",
    "search_refine",
];

impl Config {
    /// How clips are cut; none when `clips` is off.
    pub fn clip_settings(&self) -> Option<vigil_actors::clips::ClipSettings> {
        self.clips.then_some(vigil_actors::clips::ClipSettings {
            pre_roll_seconds: self.clip_pre_roll_seconds,
            post_roll_seconds: self.clip_post_roll_seconds,
            max_seconds: self.clip_max_seconds,
            pre_roll_max_bytes: (self.clip_pre_roll_max_mib as usize) << 20,
            segment_seconds: self.clip_continuous.then_some(self.clip_segment_seconds),
        })
    }

    /// The Lance tables' folder.
    pub fn effective_lance_dir(&self) -> PathBuf {
        if self.lance_dir.is_empty() {
            self.data_dir.join("lance")
        } else {
            PathBuf::from(&self.lance_dir)
        }
    }

    /// The vector store these settings describe.
    pub fn vector_store(&self) -> std::sync::Arc<vigil_projections::vectors::VectorStore> {
        let config = vigil_projections::vectors::VectorConfig {
            ann_min_rows: self.search_ann_min_rows,
            nprobes: self.search_nprobes.max(1),
            refine: self.search_refine.max(1),
        };
        std::sync::Arc::new(match self.bucket() {
            Some(at) => vigil_projections::vectors::VectorStore::in_bucket(
                &format!("s3://{}/{}", at.bucket, join_key(&at.prefix, "lance")),
                lance_storage_options(&at),
                config,
            ),
            None => {
                vigil_projections::vectors::VectorStore::new(self.effective_lance_dir(), config)
            }
        })
    }

    /// The bucket `object_store_url` names (with the URL's own prefix), `None` for local
    /// folders. Call after [`Config::load`] checked the URL.
    pub fn bucket(&self) -> Option<vigil_actors::blob::S3Location> {
        let (bucket, prefix) = parse_s3_url(&self.object_store_url).ok()??;
        Some(vigil_actors::blob::S3Location {
            bucket,
            prefix,
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            access_key_id: self.s3_access_key_id.clone(),
            secret_access_key: self.s3_secret_access_key.clone(),
            presign: self.s3_presign,
        })
    }

    /// The media store these settings describe: `{data_dir}/blobs`, or the bucket's
    /// `{prefix}/media/` (with `{data_dir}/blobs` for the clips being written).
    pub fn blob_store(&self) -> Result<vigil_actors::blob::BlobStore, String> {
        let root = self.data_dir.join("blobs");
        match self.bucket() {
            None => Ok(vigil_actors::blob::BlobStore::new(root)),
            Some(mut at) => {
                at.prefix = join_key(&at.prefix, "media");
                vigil_actors::blob::BlobStore::s3(root, &at).map_err(|e| e.to_string())
            }
        }
    }

    /// The origin presigned media URLs point at (the console's pages may load media from it):
    /// `s3_endpoint`'s, or AWS's; `None` unless media are presigned by a bucket.
    pub fn presigned_media_origin(&self) -> Option<String> {
        if !self.s3_presign || !self.uses_bucket() {
            return None;
        }
        if self.s3_endpoint.is_empty() {
            return Some("https://*.amazonaws.com".into());
        }
        url::Url::parse(&self.s3_endpoint)
            .ok()
            .map(|u| u.origin().ascii_serialization())
    }

    /// Whether media and the Lance tables live in a bucket.
    pub fn uses_bucket(&self) -> bool {
        !self.object_store_url.is_empty()
    }

    /// Loads the effective config: defaults, then `file` (or `./vigil.toml` when it exists),
    /// then `VIGIL_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        let file = match file {
            Some(path) => Some(path.to_path_buf()),
            None if Path::new("vigil.toml").exists() => Some(PathBuf::from("vigil.toml")),
            None => None,
        };
        if let Some(path) = &file {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("VIGIL_").only(ENV_KEYS));
        for (var, key) in [
            ("VIGIL_CORS_ALLOWED_ORIGINS", "cors_allowed_origins"),
            ("VIGIL_VIDEO_DIRS", "video_dirs"),
        ] {
            if let Ok(text) = std::env::var(var) {
                let list: Vec<String> = text
                    .split(',')
                    .map(str::trim)
                    .filter(|o| !o.is_empty())
                    .map(String::from)
                    .collect();
                figment = figment.merge(Serialized::default(key, list));
            }
        }
        let mut config: Config = figment.extract().map_err(Box::new)?;
        config.file = file;
        config
            .check()
            .map_err(|e| Box::new(figment::Error::from(e)))?;
        Ok(config)
    }

    /// This node's name: `node_id`, else `{host name}-{listen port}`.
    pub fn effective_node_id(&self) -> String {
        if !self.node_id.is_empty() {
            return self.node_id.clone();
        }
        format!("{}-{}", host_name(), self.listen.port())
    }

    fn check(&self) -> Result<(), String> {
        parse_s3_url(&self.object_store_url)?;
        if !self.object_store_url.is_empty() && !self.lance_dir.is_empty() {
            return Err(
                "lance_dir and object_store_url exclude each other: with a bucket, the Lance \
                 tables live in it"
                    .into(),
            );
        }
        if !(self.s3_endpoint.is_empty()
            || self.s3_endpoint.starts_with("http://")
            || self.s3_endpoint.starts_with("https://"))
        {
            return Err(format!(
                "s3_endpoint must be an http:// or https:// URL, not `{}`",
                self.s3_endpoint
            ));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(format!(
                "log_format must be `text` or `json`, not `{}`",
                self.log_format
            ));
        }
        if self.database_max_connections == 0 {
            return Err("database_max_connections must be at least 1".into());
        }
        if self.database_timeout_secs == 0 {
            return Err("database_timeout_secs must be at least 1".into());
        }
        if self.max_body_bytes < 1024 {
            return Err("max_body_bytes must be at least 1024".into());
        }
        if self.kafka_partitions < 1 || self.kafka_replication < 1 {
            return Err("kafka_partitions and kafka_replication must be at least 1".into());
        }
        if self.ws_buffer == 0 || self.ws_heartbeat_secs == 0 {
            return Err("ws_buffer and ws_heartbeat_secs must be at least 1".into());
        }
        if self.max_upload_bytes < 1024 {
            return Err("max_upload_bytes must be at least 1024".into());
        }
        if self.inference_workers == 0 || self.inference_queue == 0 {
            return Err("inference_workers and inference_queue must be at least 1".into());
        }
        if !(1..=vigil_actors::pool::MAX_BATCH).contains(&self.inference_max_batch) {
            return Err(format!(
                "inference_max_batch must be between 1 and {}",
                vigil_actors::pool::MAX_BATCH
            ));
        }
        if !(0.0..=600.0).contains(&self.clip_pre_roll_seconds)
            || !(0.0..=600.0).contains(&self.clip_post_roll_seconds)
            || !(1.0..=3600.0).contains(&self.clip_max_seconds)
            || !(1.0..=3600.0).contains(&self.clip_segment_seconds)
            || self.clip_pre_roll_max_mib == 0
        {
            return Err(
                "clip_pre_roll_seconds and clip_post_roll_seconds must lie in 0..=600, \
                 clip_max_seconds and clip_segment_seconds in 1..=3600, and \
                 clip_pre_roll_max_mib be at least 1"
                    .into(),
            );
        }
        if self.camera_backoff_initial_ms == 0
            || self.camera_backoff_max_ms < self.camera_backoff_initial_ms
        {
            return Err(
                "camera_backoff_initial_ms must be at least 1 and at most camera_backoff_max_ms"
                    .into(),
            );
        }
        if self.camera_heartbeat_secs == 0
            || self.camera_lease_secs < 2 * self.camera_heartbeat_secs
        {
            return Err(
                "camera_heartbeat_secs must be at least 1 and camera_lease_secs at least twice it"
                    .into(),
            );
        }
        if !self.node_id.is_empty()
            && (self.node_id.len() > 64
                || !self
                    .node_id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
        {
            return Err("node_id must be 1-64 of A-Z a-z 0-9 - _ .".into());
        }
        if self.request_timeout_secs == 0 {
            return Err("request_timeout_secs must be at least 1".into());
        }
        crate::webhooks::validate_targets(&self.webhooks).map_err(|e| format!("webhooks: {e}"))?;
        crate::links::validate_base_url(&self.public_base_url)
            .map_err(|e| format!("public_base_url: {e}"))?;
        if !(1..=crate::links::MAX_TTL_SECS).contains(&self.media_link_ttl_secs) {
            return Err(format!(
                "media_link_ttl_secs must be between 1 and {}",
                crate::links::MAX_TTL_SECS
            ));
        }
        crate::mqtt::settings::validate(
            &self.mqtt_url,
            &self.mqtt_topic_prefix,
            &self.mqtt_discovery_prefix,
        )
        .map_err(|e| format!("mqtt: {e}"))?;
        for (i, auto) in self.auto_actions.iter().enumerate() {
            if Severity::parse(&auto.min_severity).is_none() {
                return Err(format!(
                    "auto_actions[{i}].min_severity must be low, medium, high or critical"
                ));
            }
            if let Some(k) = auto.kinds.iter().find(|k| IncidentKind::parse(k).is_none()) {
                return Err(format!(
                    "auto_actions[{i}].kinds: unknown incident kind `{k}`"
                ));
            }
            if auto.actions.is_empty() {
                return Err(format!(
                    "auto_actions[{i}].actions must name at least one action"
                ));
            }
            for a in &auto.actions {
                let Some(kind) = ActionKind::parse(a) else {
                    return Err(format!("auto_actions[{i}].actions: unknown action `{a}`"));
                };
                if kind == ActionKind::Webhook {
                    return Err(format!(
                        "auto_actions[{i}].actions: `webhook` needs a target; name the action the target receives instead"
                    ));
                }
                if !self.webhooks.iter().any(|t| t.receives(a)) {
                    return Err(format!(
                        "auto_actions[{i}].actions: no webhook target receives `{a}`"
                    ));
                }
            }
        }
        let mut ids = std::collections::HashSet::new();
        for (i, camera) in self.cameras.iter().enumerate() {
            if !ids.insert(camera.id.as_str()) {
                return Err(format!(
                    "cameras[{i}]: camera `{}` is declared twice",
                    camera.id
                ));
            }
        }
        for limits in [&self.default_rate_limits, &self.admin_rate_limits] {
            if [limits.standard, limits.media, limits.search, limits.ingest].contains(&0) {
                return Err("rate limits must be at least 1 per minute".into());
            }
        }
        Ok(())
    }

    /// The actor recorded on events caused by the declared cameras: `config:{file name}`.
    pub fn declared_actor(&self) -> String {
        let name = self
            .file
            .as_deref()
            .and_then(Path::file_name)
            .map_or_else(|| "vigil.toml".into(), |n| n.to_string_lossy().into_owned());
        format!("{}{name}", DECLARED_ACTOR_PREFIX)
    }

    /// The database URL in effect.
    pub fn effective_database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("vigil.db").display())
        } else {
            self.database_url.clone()
        }
    }

    /// The assets folder in effect.
    pub fn effective_assets_dir(&self) -> PathBuf {
        if self.assets_dir.is_empty() {
            vigil_models::default_assets_dir()
        } else {
            PathBuf::from(&self.assets_dir)
        }
    }

    /// The folders `file://` cameras may read: `{data_dir}/videos`, the assets folder's
    /// `images/` (the demo clip) and each of `video_dirs`, made absolute.
    pub fn video_dirs_allowed(&self) -> Vec<PathBuf> {
        let mut dirs = vec![
            self.data_dir.join("videos"),
            self.effective_assets_dir().join("images"),
        ];
        dirs.extend(self.video_dirs.iter().map(PathBuf::from));
        dirs.into_iter()
            .map(|d| std::path::absolute(&d).unwrap_or(d))
            .collect()
    }

    /// The config as TOML with secrets masked, for `vigil config`.
    pub fn to_masked_toml(&self) -> String {
        let mut shown = self.clone();
        if !shown.admin_key.is_empty() {
            shown.admin_key = "****".into();
        }
        if !shown.key_pepper.is_empty() {
            shown.key_pepper = "****".into();
        }
        if !shown.s3_secret_access_key.is_empty() {
            shown.s3_secret_access_key = "****".into();
        }
        for target in &mut shown.webhooks {
            if !target.secret.is_empty() {
                target.secret = "****".into();
            }
        }
        shown.database_url = mask_url(&self.effective_database_url());
        shown.kurrentdb_url = mask_url(&self.kurrentdb_url);
        shown.mqtt_url = mask_url(&self.mqtt_url);
        toml::to_string_pretty(&shown).expect("config serialises")
    }
}

/// A database URL with its password replaced by `****`.
pub fn mask_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:****{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Actors of events the configuration caused start with this.
pub const DECLARED_ACTOR_PREFIX: &str = "config:";

/// The machine's host name (`node` when it cannot be read).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into())
}

/// Lance's storage options for the bucket: only what the settings name, so Lance reads the
/// rest from the `AWS_*` environment as the media store does.
fn lance_storage_options(
    at: &vigil_actors::blob::S3Location,
) -> std::collections::HashMap<String, String> {
    let mut options = std::collections::HashMap::new();
    for (key, value) in [
        ("aws_endpoint", &at.endpoint),
        ("aws_region", &at.region),
        ("aws_access_key_id", &at.access_key_id),
        ("aws_secret_access_key", &at.secret_access_key),
    ] {
        if !value.is_empty() {
            options.insert(key.to_string(), value.clone());
        }
    }
    if at.endpoint.starts_with("http://") {
        options.insert("allow_http".into(), "true".into());
    }
    options
}

/// `s3://bucket[/prefix]` → `(bucket, prefix)`; empty → `None`; anything else an error.
fn parse_s3_url(url: &str) -> Result<Option<(String, String)>, String> {
    if url.is_empty() {
        return Ok(None);
    }
    let bad = || {
        format!(
            "object_store_url must be empty (local folders) or `s3://bucket[/prefix]`, not `{url}`"
        )
    };
    let rest = url.strip_prefix("s3://").ok_or_else(bad)?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let prefix = prefix.trim_matches('/');
    let prefix_ok = prefix.is_empty()
        || prefix.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
    if !bucket_ok || !prefix_ok {
        return Err(bad());
    }
    Ok(Some((bucket.to_string(), prefix.to_string())))
}

/// `prefix/name`, or `name` when the prefix is empty.
fn join_key(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;

    #[test]
    fn file_then_env_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "custom.toml",
                "listen = \"0.0.0.0:9000\"\nlog = \"debug\"\nadmin_key = \"from-file\"",
            )?;
            jail.set_env("VIGIL_LOG", "warn");
            jail.set_env("VIGIL_UNRELATED_THING", "ignored");
            let config = Config::load(Some(Path::new("custom.toml"))).expect("loads");
            assert_eq!(config.listen, "0.0.0.0:9000".parse().unwrap());
            assert_eq!(config.log, "warn");
            assert_eq!(config.max_body_bytes, 1 << 20);
            jail.set_env("VIGIL_VIDEO_DIRS", "/srv/clips, /mnt/cctv");
            let config = Config::load(Some(Path::new("custom.toml"))).expect("loads");
            assert_eq!(config.video_dirs, ["/srv/clips", "/mnt/cctv"]);
            assert!(
                config
                    .video_dirs_allowed()
                    .contains(&PathBuf::from("/mnt/cctv"))
            );
            let shown = config.to_masked_toml();
            assert!(shown.contains("admin_key = \"****\""), "{shown}");
            assert!(!shown.contains("from-file"));
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("a.toml", "listen = \"127.0.0.1:1\"\nlisten_port = 3")?;
            assert!(Config::load(Some(Path::new("a.toml"))).is_err());
            jail.create_file("b.toml", "log_format = \"xml\"")?;
            assert!(Config::load(Some(Path::new("b.toml"))).is_err());
            Ok(())
        });
    }

    /// The example file in the repository.
    fn example() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/vigil.example.toml"))
            .expect("vigil.example.toml is in the repository")
    }

    #[test]
    fn the_example_file_names_every_setting_at_its_default() {
        figment::Jail::expect_with(|jail| {
            let text = example();
            jail.create_file("example.toml", &text)?;
            let mut loaded =
                Config::load(Some(Path::new("example.toml"))).expect("the example loads");
            assert_eq!(loaded.file.as_deref(), Some(Path::new("example.toml")));
            loaded.file = None;
            assert_eq!(
                loaded,
                Config::default(),
                "the example's values are the defaults"
            );
            // Every key of the config (and of its tables) is in the file, set or in a comment.
            let defaults = toml::Value::try_from(Config::default()).unwrap();
            let mut keys: Vec<String> = Vec::new();
            for (key, value) in defaults.as_table().unwrap() {
                keys.push(key.clone());
                if let Some(table) = value.as_table() {
                    keys.extend(table.keys().cloned());
                }
            }
            let camera = toml::Value::try_from(DeclaredCamera {
                id: "a".into(),
                name: "a".into(),
                source: "push".into(),
                enabled: true,
                sample_fps: 1.0,
                features: Default::default(),
                prompt: String::new(),
                zones: vec![],
            })
            .unwrap();
            keys.extend(camera.as_table().unwrap().keys().cloned());
            keys.extend(["webhooks", "auto_actions", "cameras"].map(String::from));
            for key in keys {
                let named = text.lines().any(|line| {
                    let line = line.trim_start_matches('#').trim_start();
                    line.starts_with(&format!("{key} ="))
                        || (line.starts_with('[')
                            && line
                                .split_whitespace()
                                .next()
                                .unwrap_or_default()
                                .trim_matches(['[', ']'])
                                .split('.')
                                .any(|part| part == key))
                });
                assert!(named, "vigil.example.toml does not name `{key}`");
            }
            Ok(())
        });
    }

    #[test]
    fn declared_cameras_load_from_the_file() {
        figment::Jail::expect_with(|jail| {
            // The example's commented tables, switched on.
            let toml_like = |l: &str| {
                l.starts_with('[')
                    || (l.starts_with(|c: char| c.is_ascii_lowercase()) && l.contains(" = "))
            };
            let text: String = example()
                .lines()
                .filter_map(|line| match line.strip_prefix("# ") {
                    Some(inner) => toml_like(inner).then_some(inner),
                    None => (!line.starts_with('#')).then_some(line),
                })
                .collect::<Vec<_>>()
                .join("\n");
            jail.create_file("on.toml", &text)?;
            let config =
                Config::load(Some(Path::new("on.toml"))).expect("the example's tables load");
            assert_eq!(config.cameras.len(), 1);
            let lobby = &config.cameras[0];
            assert_eq!(lobby.id, "lobby");
            assert_eq!(lobby.sample_fps, 2.0);
            assert!(lobby.enabled && lobby.features.crowd && lobby.features.intrusion);
            assert!(!lobby.features.loitering);
            assert_eq!(lobby.zones[0].polygon.len(), 3);
            assert_eq!(config.webhooks.len(), 1);
            assert_eq!(config.auto_actions.len(), 1);
            assert_eq!(config.declared_actor(), "config:on.toml");

            jail.create_file(
                "twice.toml",
                "[[cameras]]\nid = \"a\"\nname = \"A\"\nsource = \"push\"\n[[cameras]]\nid = \"a\"\nname = \"B\"\nsource = \"push\"\n",
            )?;
            let err = Config::load(Some(Path::new("twice.toml")))
                .unwrap_err()
                .to_string();
            assert!(err.contains("declared twice"), "{err}");
            jail.create_file(
                "typo.toml",
                "[[cameras]]\nid = \"a\"\nname = \"A\"\nsource = \"push\"\nfps = 2\n",
            )?;
            assert!(Config::load(Some(Path::new("typo.toml"))).is_err());
            Ok(())
        });
    }
}
