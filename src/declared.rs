//! Cameras declared in `vigil.toml`: reconciled at start into commands against the camera
//! aggregates, so the event log stays the one source of truth and the audit trail names the
//! file as the actor (`config:vigil.toml`).
//!
//! - a declared camera that does not exist is registered;
//! - one that differs from the file is updated (only the fields that differ);
//! - a camera the file declared before (its latest settings event came from the file) that the
//!   file no longer declares is disabled, not removed: its history and its id stay;
//! - a start with nothing changed appends nothing.
//!
//! The file owns its cameras: the API refuses to change or remove them (409
//! `CAMERA_DECLARED_IN_CONFIG`); a camera the file dropped is the API's again.

use vigil_actors::aggregates::camera::{
    CameraAggregate, CameraCommand, CameraError, CameraPatch, RegisterCamera,
};
use vigil_actors::{CommandError, CommandHandler};
use vigil_schemas::{Direction, EventMeta, EventStore};

use crate::config::{Config, DECLARED_ACTOR_PREFIX, DeclaredCamera};

/// What a reconciliation did, camera ids in declaration order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// Registered now.
    pub registered: Vec<String>,
    /// Updated to match the file.
    pub updated: Vec<String>,
    /// Disabled because the file no longer declares them.
    pub disabled: Vec<String>,
    /// Declared and already as the file says.
    pub unchanged: Vec<String>,
}

/// Why a reconciliation stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A declared camera cannot be applied (invalid field, removed id, store failure).
    #[error("camera `{id}` declared in {file}: {reason}")]
    Camera {
        /// The camera.
        id: String,
        /// The config file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// The store failed while listing cameras.
    #[error("reading the cameras: {0}")]
    Store(#[from] vigil_schemas::StoreError),
}

/// The actor of the newest `camera.registered` or `camera.updated` event of a camera's stream.
async fn settings_actor(
    store: &dyn EventStore,
    id: &str,
) -> Result<Option<String>, vigil_schemas::StoreError> {
    let stream = vigil_schemas::events::camera_stream(id);
    let newest = store
        .read_stream(&stream, u64::MAX, 50, Direction::Backward)
        .await?;
    Ok(newest
        .into_iter()
        .find(|e| {
            matches!(
                e.event_type.as_str(),
                "camera.registered" | "camera.updated"
            )
        })
        .map(|e| e.actor))
}

/// Every camera id the log has registered, in order of registration.
async fn registered_ids(store: &dyn EventStore) -> Result<Vec<String>, vigil_schemas::StoreError> {
    let mut ids = Vec::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        ids.extend(
            page.iter()
                .filter(|e| e.event_type == "camera.registered")
                .filter_map(|e| e.payload["camera_id"].as_str().map(str::to_string)),
        );
    }
    Ok(ids)
}

/// Brings the camera aggregates in line with `config.cameras`.
pub async fn reconcile(
    config: &Config,
    handler: &CommandHandler,
) -> Result<Reconciled, ReconcileError> {
    let actor = config.declared_actor();
    let file = actor.trim_start_matches(DECLARED_ACTOR_PREFIX).to_string();
    let meta = || EventMeta {
        correlation_id: uuid::Uuid::now_v7(),
        causation_id: None,
        actor: actor.clone(),
    };
    let fail = |id: &str, reason: String| ReconcileError::Camera {
        id: id.to_string(),
        file: file.clone(),
        reason,
    };
    let mut done = Reconciled::default();
    for declared in &config.cameras {
        let DeclaredCamera {
            id,
            name,
            source,
            enabled,
            sample_fps,
            features,
            prompt,
            zones,
        } = declared.clone();
        let (state, _) = handler
            .load::<CameraAggregate>(&id)
            .await
            .map_err(|e| fail(&id, e.to_string()))?;
        let command = if state.camera.is_some() {
            CameraCommand::Update(CameraPatch {
                name: Some(name),
                source: Some(source),
                enabled: Some(enabled),
                sample_fps: Some(sample_fps),
                features: Some(features.into()),
                prompt: Some(prompt),
                zones: Some(zones),
            })
        } else if state.removed {
            return Err(fail(
                &id,
                "a camera with this id was removed, and ids are not reused: give it another id"
                    .into(),
            ));
        } else {
            CameraCommand::Register(RegisterCamera {
                id: id.clone(),
                name,
                source,
                enabled,
                sample_fps,
                features,
                prompt,
                zones,
            })
        };
        let registering = matches!(command, CameraCommand::Register(_));
        let executed = handler
            .execute::<CameraAggregate>(&id, command, &meta(), None)
            .await
            .map_err(|e| match e {
                CommandError::Domain(CameraError::Invalid { field, reason }) => {
                    fail(&id, format!("`{field}` {reason}"))
                }
                other => fail(&id, other.to_string()),
            })?;
        match (registering, executed.position) {
            (true, _) => done.registered.push(id),
            (false, Some(_)) => done.updated.push(id),
            (false, None) => done.unchanged.push(id),
        }
    }
    let store = handler.store();
    for id in registered_ids(&**store).await? {
        if config.cameras.iter().any(|c| c.id == id) {
            continue;
        }
        let owned = settings_actor(&**store, &id)
            .await?
            .is_some_and(|a| a.starts_with(DECLARED_ACTOR_PREFIX));
        if !owned {
            continue;
        }
        let disable = CameraCommand::Update(CameraPatch {
            enabled: Some(false),
            ..CameraPatch::default()
        });
        match handler
            .execute::<CameraAggregate>(&id, disable, &meta(), None)
            .await
        {
            Ok(executed) if executed.position.is_some() => done.disabled.push(id),
            Ok(_) | Err(CommandError::Domain(CameraError::NotFound)) => {}
            Err(e) => return Err(fail(&id, e.to_string())),
        }
    }
    Ok(done)
}
