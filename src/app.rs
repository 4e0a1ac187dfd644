//! Wiring: opens the store and read models, bootstraps the admin key, runs projections and
//! background work, and resolves API keys.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::RngCore;
use sqlx::AnyPool;
use vigil_actors::CommandHandler;
use vigil_actors::aggregates::apikey::{ApiKey, ApiKeyCommand, ApiKeyError, IssueApiKey};
use vigil_projections::{ProjectionRunner, ProjectionStatus};
use vigil_schemas::events::RateLimits;
use vigil_schemas::{EventMeta, EventStore};

use crate::access::{
    FailureGuard, KeyLimiters, UsageCounter, constant_time_eq, hash_secret, split_key,
};
use crate::config::Config;
use crate::store::{Backend, open_pool_with};
use vigil_actors::node::{Backoff, Ingest};
use vigil_actors::pool::{Analyzer, InferencePool, PoolConfig};
use vigil_actors::source::Transports;
use vigil_actors::source::push::PushRegistry;
use vigil_actors::supervisor::Supervision;

/// The id (and stream suffix) of the generated admin key.
pub const BOOTSTRAP_KEY_ID: &str = "bootstrap";
/// The key id recorded for requests made with the configured `admin_key`.
pub const CONFIG_KEY_ID: &str = "config-admin";
/// How often usage counts are written to the database.
const USAGE_FLUSH: Duration = Duration::from_secs(2);

/// Errors while starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] vigil_schemas::StoreError),
    /// The admin key or the key pepper could not be set up.
    #[error("key setup: {0}")]
    Keys(String),
    /// The media store could not be opened.
    #[error("media store: {0}")]
    Media(String),
}

/// Who a valid key belongs to and what it may do.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The key's id.
    pub key_id: String,
    /// The actor recorded on events this principal causes (`key:{id}`).
    pub actor: String,
    /// Scopes (`admin` implies all).
    pub scopes: Vec<String>,
    /// Cameras the key is restricted to; empty means all.
    pub camera_ids: Vec<String>,
    /// Per-minute limits.
    pub rate_limits: RateLimits,
}

impl Principal {
    /// Whether the principal holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        vigil_actors::aggregates::apikey::grants(&self.scopes, scope)
    }

    /// Whether the principal may see camera `id`.
    pub fn may_access_camera(&self, id: &str) -> bool {
        self.camera_ids.is_empty() || self.camera_ids.iter().any(|c| c == id)
    }

    /// Whether the key is restricted to some cameras.
    pub fn is_camera_restricted(&self) -> bool {
        !self.camera_ids.is_empty()
    }
}

/// Why a presented key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    /// Unknown key, wrong secret, or revoked.
    Invalid,
    /// The key is disabled.
    Disabled,
    /// The key has expired.
    Expired,
}

/// Everything a request handler needs. Cheap to clone.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    backend: Backend,
    pool: AnyPool,
    store: Arc<dyn EventStore>,
    handler: CommandHandler,
    runners: Vec<ProjectionRunner>,
    /// The Lance tables the `vectors` projection writes and face search reads.
    vectors: Arc<vigil_projections::vectors::VectorStore>,
    pepper: Vec<u8>,
    links: crate::links::MediaLinks,
    config_key_hash: Option<String>,
    limiters: KeyLimiters,
    failures: FailureGuard,
    usage: UsageCounter,
    telemetry: crate::telemetry::Telemetry,
    /// The models' device, chosen on first use (opening a wgpu adapter takes a moment).
    compute: Arc<std::sync::OnceLock<Result<vigil_models::Compute, String>>>,
    /// What camera actors share: the inference pool, the blob store, the sources.
    ingest: Arc<Ingest>,
    /// Where pushed frames go.
    push: Arc<PushRegistry>,
    /// This node's camera leases (ingest on PostgreSQL).
    cluster: Option<Arc<crate::cluster::LeaseKeeper>>,
    /// The supervision tree, once started (`ingest = true`).
    supervision: tokio::sync::OnceCell<Supervision>,
    /// Whether the models' weight files are present and match their checksums (checked once).
    weights: std::sync::OnceLock<Result<(), String>>,
}

/// The pepper from the config, else from `{data_dir}/key_pepper` (created on first start).
fn load_pepper(config: &Config) -> Result<Vec<u8>, StartError> {
    if !config.key_pepper.is_empty() {
        return Ok(config.key_pepper.as_bytes().to_vec());
    }
    let path = config.data_dir.join("key_pepper");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().as_bytes().to_vec()),
        _ => {
            std::fs::create_dir_all(&config.data_dir)
                .map_err(|e| StartError::Keys(format!("{}: {e}", config.data_dir.display())))?;
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            let pepper = hex::encode(bytes);
            write_private(&path, &pepper)
                .map_err(|e| StartError::Keys(format!("{}: {e}", path.display())))?;
            tracing::info!(path = %path.display(), "generated the API key pepper");
            Ok(pepper.into_bytes())
        }
    }
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

/// A new random key secret for `key_id`: the full key and its secret part.
pub fn new_key(key_id: &str) -> (String, String) {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let secret = hex::encode(secret);
    (format!("vgl_{key_id}_{secret}"), secret)
}

impl App {
    /// Opens the database, the store and the read models; makes sure an admin key exists.
    /// Returns the app and the generated admin key when one was generated now.
    pub async fn open(config: Config) -> Result<(Self, Option<String>), StartError> {
        let url = config.effective_database_url();
        let (pool, backend) = open_pool_with(
            &url,
            config.database_max_connections,
            Duration::from_secs(config.database_timeout_secs),
        )
        .await?;
        let (store, sql_store) =
            crate::store::open_event_stores(&config, pool.clone(), backend).await?;
        let handler = CommandHandler::new(store.clone());
        let vectors = config.vector_store();
        let runners = vigil_projections::all(vectors.clone())
            .into_iter()
            .map(|projection| ProjectionRunner::new(pool.clone(), store.clone(), projection))
            .collect();
        let pepper = load_pepper(&config)?;
        let config_key_hash =
            (!config.admin_key.is_empty()).then(|| hash_secret(&pepper, &config.admin_key));
        let generated = bootstrap_admin_key(&handler, &pepper, &config).await?;
        let compute = Arc::new(std::sync::OnceLock::new());
        let inference = InferencePool::start(
            PoolConfig {
                workers: config.inference_workers,
                max_batch: config.inference_max_batch,
                max_wait: Duration::from_millis(config.inference_max_wait_ms),
                queue_capacity: config.inference_queue,
            },
            {
                let compute = compute.clone();
                let preference = config.models_backend;
                let assets = config.effective_assets_dir();
                Arc::new(move || {
                    let device = select_compute(&compute, preference)
                        .map_err(|e| format!("no models device: {e}"))?
                        .clone();
                    vigil_models::Vision::load(&assets, device)
                        .map(|v| Box::new(v) as Box<dyn Analyzer>)
                        .map_err(|e| format!("{e} (assets in {})", assets.display()))
                })
            },
        );
        let telemetry = crate::telemetry::Telemetry::new();
        inference.metrics().attach(
            telemetry.histogram("vigil_inference_latency_seconds"),
            telemetry.histogram("vigil_inference_batch_size"),
        );
        let push = Arc::new(PushRegistry::default());
        // Ingest nodes on PostgreSQL share the cameras through leases; on SQLite (one node)
        // the node runs every camera.
        let cluster = (config.ingest && backend == Backend::Postgres).then(|| {
            Arc::new(crate::cluster::LeaseKeeper::new(
                crate::cluster::ClusterSettings::of(&config),
                pool.clone(),
                backend,
                store.clone(),
                sql_store,
            ))
        });
        let ingest = Ingest::new(
            handler.clone(),
            inference,
            config.blob_store().map_err(StartError::Media)?,
            Arc::new(Transports {
                push: push.clone(),
                video_dirs: config.video_dirs_allowed(),
            }),
            Backoff {
                initial: Duration::from_millis(config.camera_backoff_initial_ms),
                max: Duration::from_millis(config.camera_backoff_max_ms),
            },
            vigil_actors::tracker::TrackerConfig::default(),
        )
        .with_clips(config.clip_settings());
        let ingest = Arc::new(match &cluster {
            Some(keeper) => ingest.with_leases(keeper.clone()),
            None => ingest,
        });
        let links = crate::links::MediaLinks::new(
            &pepper,
            &config.public_base_url,
            config.media_link_ttl_secs,
        );
        let app = Self {
            inner: Arc::new(Inner {
                failures: FailureGuard::new(config.auth_failures_per_minute),
                config,
                backend,
                pool,
                store,
                handler,
                runners,
                vectors,
                links,
                pepper,
                config_key_hash,
                limiters: KeyLimiters::default(),
                usage: UsageCounter::default(),
                telemetry,
                compute,
                ingest,
                push,
                cluster,
                supervision: tokio::sync::OnceCell::new(),
                weights: std::sync::OnceLock::new(),
            }),
        };
        Ok((app, generated))
    }

    /// Starts every projection runner, the Kafka relay (when brokers are configured), the
    /// MQTT relay and live state (when a broker is configured), the action dispatcher, camera ingest (when on) and the usage flusher as background tasks. (`vigil serve` adds the clip retention, `service::clips::keep_within_budget`.)
    pub fn spawn_background(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks: Vec<_> = self
            .inner
            .runners
            .iter()
            .map(|runner| tokio::spawn(runner.clone().run()))
            .collect();
        if !self.inner.config.kafka_brokers.is_empty() {
            match crate::relay::KafkaRelay::new(
                &self.inner.config,
                self.inner.store.clone(),
                self.inner.pool.clone(),
            ) {
                Ok(relay) => tasks.push(tokio::spawn(
                    relay.with_links(self.inner.links.clone()).run(),
                )),
                Err(err) => tracing::error!(error = %err, "the Kafka relay cannot start"),
            }
        }
        if !self.inner.config.mqtt_url.is_empty() {
            match crate::mqtt::MqttRelay::new(
                &self.inner.config,
                self.inner.store.clone(),
                self.inner.pool.clone(),
                self.inner.links.clone(),
            ) {
                Ok(relay) => tasks.push(tokio::spawn(relay.run())),
                Err(err) => tracing::error!(error = %err, "the MQTT relay cannot start"),
            }
            if self.inner.config.ingest {
                match crate::mqtt::LiveState::new(&self.inner.config, self.inner.ingest.clone()) {
                    Ok(live) => tasks.push(tokio::spawn(live.run())),
                    Err(err) => tracing::error!(error = %err, "MQTT live state cannot start"),
                }
            }
        }
        tasks.push(tokio::spawn(
            crate::dispatch::Dispatcher::new(
                self.inner.store.clone(),
                self.inner.pool.clone(),
                self.inner.config.webhooks.clone(),
                self.inner.config.auto_actions.clone(),
                self.inner.links.clone(),
            )
            .run(),
        ));
        if let Some(keeper) = &self.inner.cluster {
            tasks.push(tokio::spawn(keeper.clone().run(self.inner.ingest.clone())));
        }
        if self.inner.config.ingest {
            let app = self.clone();
            tasks.push(tokio::spawn(async move {
                let started = app
                    .inner
                    .supervision
                    .get_or_try_init(|| Supervision::start(app.inner.ingest.clone()))
                    .await;
                if let Err(err) = started {
                    tracing::error!(error = %err, "camera ingest cannot start");
                }
            }));
        }
        let app = self.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(USAGE_FLUSH);
            loop {
                tick.tick().await;
                if let Err(err) = app.flush_usage().await {
                    tracing::warn!(error = %err, "could not write API key usage; keeping the counts");
                }
            }
        }));
        tasks
    }

    /// Writes this node's pending usage counts to the database.
    pub async fn flush_usage(&self) -> Result<(), sqlx::Error> {
        self.inner.usage.flush(&self.inner.pool).await
    }

    /// The effective config.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Which database backend serves this node.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// The read-model pool.
    pub fn pool(&self) -> &AnyPool {
        &self.inner.pool
    }

    /// The device the models run on, chosen by `models_backend` on the first call (blocking:
    /// call it from a blocking thread). An error says why the forced backend is unavailable.
    pub fn compute(&self) -> Result<&vigil_models::Compute, &str> {
        select_compute(&self.inner.compute, self.inner.config.models_backend)
    }

    /// Whether the models' weights are present and verified: checked on the first call (reads
    /// and hashes every weight file: call it from a blocking thread), remembered after.
    pub fn weights(&self) -> &Result<(), String> {
        self.inner.weights.get_or_init(|| {
            vigil_models::check_weights(&self.inner.config.effective_assets_dir())
                .map_err(|e| e.to_string())
        })
    }

    /// The weights check, when one was made (no I/O).
    pub fn weights_if_checked(&self) -> Option<&Result<(), String>> {
        self.inner.weights.get()
    }

    /// Records a weights check made before the app opened (so it is not repeated); false when
    /// one was already recorded.
    pub fn weights_checked(&self, result: Result<(), String>) -> bool {
        self.inner.weights.set(result).is_ok()
    }

    /// What camera actors share: the inference pool, blob store and sources.
    pub fn ingest(&self) -> &Arc<Ingest> {
        &self.inner.ingest
    }

    /// Where pushed frames go.
    pub fn push(&self) -> &Arc<PushRegistry> {
        &self.inner.push
    }

    /// The supervision tree, once started.
    pub fn supervision(&self) -> Option<&Supervision> {
        self.inner.supervision.get()
    }

    /// Stops every camera actor (each records `stopped`) and hands this node's camera leases
    /// back; call before shutting down.
    pub async fn stop_ingest(&self) {
        if let Some(supervision) = self.inner.supervision.get() {
            supervision.shutdown().await;
        }
        if let Some(keeper) = &self.inner.cluster {
            keeper.release_all().await;
        }
    }

    /// This node's camera leases, where ingest nodes share the cameras (PostgreSQL).
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::LeaseKeeper>> {
        self.inner.cluster.as_ref()
    }

    /// The event store.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.inner.store
    }

    /// The command handler.
    pub fn handler(&self) -> &CommandHandler {
        &self.inner.handler
    }

    /// The projection runners.
    pub fn runners(&self) -> &[ProjectionRunner] {
        &self.inner.runners
    }

    /// The Lance vector tables.
    pub fn vectors(&self) -> &Arc<vigil_projections::vectors::VectorStore> {
        &self.inner.vectors
    }

    /// The runner of the projection called `name`.
    pub fn runner(&self, name: &str) -> Option<&ProjectionRunner> {
        self.inner.runners.iter().find(|r| r.name() == name)
    }

    /// Live status of the projection called `name`.
    pub fn projection_status(&self, name: &str) -> Option<Arc<ProjectionStatus>> {
        self.runner(name).map(ProjectionRunner::status)
    }

    /// This node's metrics (`/metrics`).
    pub fn telemetry(&self) -> &crate::telemetry::Telemetry {
        &self.inner.telemetry
    }

    /// Per-key rate limiters.
    pub fn limiters(&self) -> &KeyLimiters {
        &self.inner.limiters
    }

    /// Failed-authentication throttling.
    pub fn failures(&self) -> &FailureGuard {
        &self.inner.failures
    }

    /// Usage counters not yet written.
    pub fn usage(&self) -> &UsageCounter {
        &self.inner.usage
    }

    /// Signs media URLs (the API's signed URLs and outbound messages' links).
    pub fn links(&self) -> &crate::links::MediaLinks {
        &self.inner.links
    }

    /// The keyed hash of a secret under this node's pepper.
    pub fn hash_secret(&self, secret: &str) -> String {
        hash_secret(&self.inner.pepper, secret)
    }

    /// Resolves a presented key against the configured admin key and the key streams in the
    /// event store (the source of truth: a revocation is seen by every node at once).
    pub async fn resolve_key(
        &self,
        presented: &str,
    ) -> Result<Result<Principal, KeyRefusal>, vigil_schemas::StoreError> {
        if let Some(config_hash) = &self.inner.config_key_hash
            && constant_time_eq(config_hash, &self.hash_secret(presented))
        {
            return Ok(Ok(Principal {
                key_id: CONFIG_KEY_ID.into(),
                actor: format!("key:{CONFIG_KEY_ID}"),
                scopes: vec!["admin".into()],
                camera_ids: vec![],
                rate_limits: self.inner.config.admin_rate_limits,
            }));
        }
        let Some((key_id, secret)) = split_key(presented) else {
            return Ok(Err(KeyRefusal::Invalid));
        };
        let state = match self.inner.handler.load::<ApiKey>(key_id).await {
            Ok((state, _)) => state,
            Err(vigil_actors::CommandError::Store(e)) => return Err(e),
            Err(other) => return Err(vigil_schemas::StoreError::Backend(other.to_string())),
        };
        let Some(key) = state.key else {
            return Ok(Err(KeyRefusal::Invalid));
        };
        if !constant_time_eq(&key.key_hash, &self.hash_secret(secret)) {
            return Ok(Err(KeyRefusal::Invalid));
        }
        if !key.enabled {
            return Ok(Err(KeyRefusal::Disabled));
        }
        if key.expires_at.is_some_and(|t| t <= Utc::now()) {
            return Ok(Err(KeyRefusal::Expired));
        }
        Ok(Ok(Principal {
            actor: format!("key:{}", key.key_id),
            key_id: key.key_id,
            scopes: key.scopes,
            camera_ids: key.camera_ids,
            rate_limits: key.rate_limits,
        }))
    }
}

/// The models' device, chosen by `preference` on the first call (blocking).
fn select_compute(
    cell: &std::sync::OnceLock<Result<vigil_models::Compute, String>>,
    preference: vigil_models::BackendPreference,
) -> Result<&vigil_models::Compute, &str> {
    cell.get_or_init(|| vigil_models::Compute::select(preference).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(String::as_str)
}

/// When no admin key is configured and none was generated before, generates one, stores it as
/// an `apikey.issued` event (hash only) and returns it. Nodes racing on first start: the loser
/// sees the winner's key and generates none.
async fn bootstrap_admin_key(
    handler: &CommandHandler,
    pepper: &[u8],
    config: &Config,
) -> Result<Option<String>, StartError> {
    if !config.admin_key.is_empty() {
        return Ok(None);
    }
    let (state, _) = handler
        .load::<ApiKey>(BOOTSTRAP_KEY_ID)
        .await
        .map_err(|e| StartError::Keys(e.to_string()))?;
    if state.key.is_some() || state.revoked {
        return Ok(None);
    }
    let (key, secret) = new_key(BOOTSTRAP_KEY_ID);
    let issue = IssueApiKey {
        key_id: BOOTSTRAP_KEY_ID.into(),
        name: "bootstrap admin".into(),
        scopes: vec!["admin".into()],
        key_hash: hash_secret(pepper, &secret),
        rate_limits: config.admin_rate_limits,
        expires_at: None,
        camera_ids: vec![],
        now: Utc::now(),
    };
    match handler
        .execute::<ApiKey>(
            BOOTSTRAP_KEY_ID,
            ApiKeyCommand::Issue(issue),
            &EventMeta::system(),
            None,
        )
        .await
    {
        Ok(_) => Ok(Some(key)),
        Err(vigil_actors::CommandError::Domain(ApiKeyError::AlreadyIssued(_))) => Ok(None),
        Err(other) => Err(StartError::Keys(other.to_string())),
    }
}
