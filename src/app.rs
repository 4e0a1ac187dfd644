//! Wiring: opens the store and read models, bootstraps the admin key, runs projections.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::AnyPool;
use vigil_actors::CommandHandler;
use vigil_actors::apikey::{ApiKey, ApiKeyCommand, ApiKeyError};
use vigil_projections::cameras::CameraProjection;
use vigil_projections::{ProjectionRunner, ProjectionStatus};
use vigil_schemas::events::ApiKeyIssued;
use vigil_schemas::{EventMeta, EventStore};

use crate::config::Config;
use crate::store::{Backend, SqlEventStore, open_pool};

/// The id (and stream suffix) of the generated admin key.
pub const BOOTSTRAP_KEY_ID: &str = "bootstrap";

/// Errors while starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] vigil_schemas::StoreError),
    /// The admin key could not be bootstrapped.
    #[error("admin key bootstrap: {0}")]
    Bootstrap(String),
}

/// HTTP counters for `/metrics`.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    /// Responses by status class: 2xx, 3xx, 4xx, 5xx.
    pub responses: [AtomicU64; 4],
}

impl HttpMetrics {
    /// Counts one response.
    pub fn record(&self, status: u16) {
        if let Some(slot) = (status / 100)
            .checked_sub(2)
            .and_then(|i| self.responses.get(i as usize))
        {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }
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
    key_hashes: Vec<[u8; 32]>,
    metrics: HttpMetrics,
}

/// SHA-256 of a key.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl App {
    /// Opens the database, the store and the read models; makes sure an admin key exists.
    /// Returns the app and the generated admin key when one was generated now.
    pub async fn open(config: Config) -> Result<(Self, Option<String>), StartError> {
        let url = config.effective_database_url();
        let (pool, backend) = open_pool(&url, config.database_max_connections).await?;
        let store = SqlEventStore::new(
            pool.clone(),
            backend,
            Duration::from_millis(config.poll_interval_ms),
        )
        .await?;
        let store: Arc<dyn EventStore> = Arc::new(store);
        let handler = CommandHandler::new(store.clone());
        let runners = vec![ProjectionRunner::new(
            pool.clone(),
            store.clone(),
            Arc::new(CameraProjection),
        )];

        let mut key_hashes = Vec::new();
        if !config.admin_key.is_empty() {
            key_hashes.push(hash_key(&config.admin_key));
        }
        let (stored, generated) =
            bootstrap_admin_key(&handler, config.admin_key.is_empty()).await?;
        key_hashes.extend(stored);

        let app = Self {
            inner: Arc::new(Inner {
                config,
                backend,
                pool,
                store,
                handler,
                runners,
                key_hashes,
                metrics: HttpMetrics::default(),
            }),
        };
        Ok((app, generated))
    }

    /// Starts every projection runner as a background task.
    pub fn spawn_projections(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.inner
            .runners
            .iter()
            .map(|runner| tokio::spawn(runner.clone().run()))
            .collect()
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

    /// The runner of the projection called `name`.
    pub fn runner(&self, name: &str) -> Option<&ProjectionRunner> {
        self.inner.runners.iter().find(|r| r.name() == name)
    }

    /// Live status of the projection called `name`.
    pub fn projection_status(&self, name: &str) -> Option<Arc<ProjectionStatus>> {
        self.runner(name).map(ProjectionRunner::status)
    }

    /// HTTP counters.
    pub fn metrics(&self) -> &HttpMetrics {
        &self.inner.metrics
    }

    /// Whether `key` is a valid admin key (constant-time over each candidate).
    pub fn verify_key(&self, key: &str) -> bool {
        let presented = hash_key(key);
        self.inner.key_hashes.iter().fold(false, |ok, stored| {
            let diff = stored
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            ok | (diff == 0)
        })
    }
}

/// Loads the bootstrap admin key's hash from its stream; when there is none and `generate` is
/// set, generates a key, stores its hash as an `apikey.issued` event and returns the key.
async fn bootstrap_admin_key(
    handler: &CommandHandler,
    generate: bool,
) -> Result<(Vec<[u8; 32]>, Option<String>), StartError> {
    let load = || async {
        let (state, _) = handler
            .load::<ApiKey>(BOOTSTRAP_KEY_ID)
            .await
            .map_err(|e| StartError::Bootstrap(e.to_string()))?;
        let hash = state
            .issued
            .map(|issued| {
                let bytes = hex::decode(&issued.key_hash)
                    .map_err(|e| StartError::Bootstrap(e.to_string()))?;
                <[u8; 32]>::try_from(bytes.as_slice())
                    .map_err(|_| StartError::Bootstrap("stored hash is not 32 bytes".into()))
            })
            .transpose()?;
        Ok::<_, StartError>(hash)
    };
    if let Some(hash) = load().await? {
        return Ok((vec![hash], None));
    }
    if !generate {
        return Ok((vec![], None));
    }
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let key = format!("vgl_{}", hex::encode(secret));
    let issued = ApiKeyIssued {
        key_id: BOOTSTRAP_KEY_ID.into(),
        name: "bootstrap admin".into(),
        scopes: vec!["admin".into()],
        key_hash: hex::encode(hash_key(&key)),
    };
    match handler
        .execute::<ApiKey>(
            BOOTSTRAP_KEY_ID,
            ApiKeyCommand::Issue(issued),
            &EventMeta::system(),
            None,
        )
        .await
    {
        Ok(_) => Ok((vec![hash_key(&key)], Some(key))),
        // Another node generated it first: use theirs.
        Err(vigil_actors::CommandError::Domain(ApiKeyError::AlreadyIssued(_))) => {
            Ok((load().await?.into_iter().collect(), None))
        }
        Err(other) => Err(StartError::Bootstrap(other.to_string())),
    }
}
