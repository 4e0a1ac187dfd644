//! Response actions: requesting them (operators, and rules' automatic-action settings) and
//! delivering them to the configured webhook targets.
//!
//! The dispatcher is one more checkpointed subscriber of `$all` (`projection_checkpoints` row
//! `action-dispatcher`, one leader per cluster). On `incident.opened` it requests the
//! automatic actions the config names for the incident's kind and severity; on
//! `action.requested` and `action.requeued` it delivers to each pending target concurrently,
//! and records `action.succeeded` or, after the target's last retry, `action.failed` (the
//! dead-letter queue). Its checkpoint never passes an event whose deliveries are still in
//! flight, so a crash re-delivers them; the action aggregate records one outcome per
//! delivery, and receivers de-duplicate by `X-Vigil-Delivery`.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use serde_json::json;
use sqlx::AnyPool;
use tokio::sync::Semaphore;
use vigil_actors::CommandHandler;
use vigil_actors::action::{Action, ActionCommand, DeliveryState};
use vigil_actors::incident::{Incident, IncidentCommand};
use vigil_schemas::events::{
    ActionFailed, ActionKind, ActionRequested, ActionSucceeded, IncidentOpened,
};
use vigil_schemas::{
    ActionEvent, DomainEvent, EventMeta, EventStore, IncidentEvent, RecordedEvent,
};

use crate::config::AutoAction;
use crate::webhooks::{Delivery, DeliveryOutcome, WebhookTarget, deliver};

/// The dispatcher's checkpoint name.
pub const CHECKPOINT: &str = "action-dispatcher";
/// Deliveries in flight at once.
const CONCURRENCY: usize = 32;

/// Why an action cannot be requested.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TargetError {
    /// No configured target receives this action.
    #[error("no webhook target receives `{0}`; configure one under [[webhooks]]")]
    NotConfigured(String),
    /// `webhook` needs the name of a target.
    #[error("the `webhook` action needs `target`, the name of a configured webhook")]
    TargetMissing,
    /// The named target is not configured.
    #[error("no webhook target is named `{0}`")]
    UnknownTarget(String),
    /// The named target does not receive this action.
    #[error("webhook target `{target}` does not receive `{action}` (see its `actions`)")]
    NotReceived {
        /// The target.
        target: String,
        /// The action.
        action: String,
    },
}

/// The targets an action goes to: every target that receives it, or, for `webhook`, the one
/// named (which must exist).
pub fn targets_for(
    targets: &[WebhookTarget],
    action: ActionKind,
    named: Option<&str>,
) -> Result<Vec<String>, TargetError> {
    if action == ActionKind::Webhook {
        let name = named.ok_or(TargetError::TargetMissing)?;
        return targets
            .iter()
            .find(|t| t.name == name)
            .map(|t| vec![t.name.clone()])
            .ok_or_else(|| TargetError::UnknownTarget(name.to_string()));
    }
    if let Some(name) = named {
        let target = targets
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| TargetError::UnknownTarget(name.to_string()))?;
        return if target.receives(action.as_str()) {
            Ok(vec![target.name.clone()])
        } else {
            Err(TargetError::NotReceived {
                target: name.to_string(),
                action: action.as_str().to_string(),
            })
        };
    }
    let names: Vec<String> = targets
        .iter()
        .filter(|t| t.receives(action.as_str()))
        .map(|t| t.name.clone())
        .collect();
    if names.is_empty() {
        return Err(TargetError::NotConfigured(action.as_str().to_string()));
    }
    Ok(names)
}

/// Records an action request and, when it is for an incident, `incident.action_taken` on the
/// incident. The caller has checked the incident exists and resolved the targets.
pub async fn request_action(
    handler: &CommandHandler,
    request: ActionRequested,
    meta: &EventMeta,
) -> Result<u64, ApiFailure> {
    let id = request.action_id.clone();
    let incident = request.incident_id.clone();
    let action = request.action;
    let done = handler
        .execute::<Action>(&id, ActionCommand::Request(request), meta, None)
        .await
        .map_err(ApiFailure::Action)?;
    let mut position = done.position.unwrap_or_default();
    if let Some(incident) = incident {
        let recorded = handler
            .execute::<Incident>(
                &incident,
                IncidentCommand::RecordAction {
                    id: incident.clone(),
                    action: action.as_str().to_string(),
                    action_id: id,
                },
                meta,
                None,
            )
            .await
            .map_err(ApiFailure::Incident)?;
        position = recorded.position.unwrap_or(position);
    }
    Ok(position)
}

/// A failed request, by aggregate.
#[derive(Debug, thiserror::Error)]
pub enum ApiFailure {
    /// The action aggregate refused or the store failed.
    #[error(transparent)]
    Action(vigil_actors::CommandError<vigil_actors::action::ActionError>),
    /// The incident aggregate refused or the store failed.
    #[error(transparent)]
    Incident(vigil_actors::CommandError<vigil_actors::incident::IncidentError>),
}

/// Delivers response actions; see the module documentation.
#[derive(Clone)]
pub struct Dispatcher {
    store: Arc<dyn EventStore>,
    handler: CommandHandler,
    pool: AnyPool,
    targets: Arc<Vec<WebhookTarget>>,
    auto: Arc<Vec<AutoAction>>,
    client: reqwest::Client,
    links: crate::links::MediaLinks,
}

fn system_meta(causation: Option<uuid::Uuid>) -> EventMeta {
    EventMeta {
        correlation_id: uuid::Uuid::now_v7(),
        causation_id: causation,
        actor: "system:dispatcher".into(),
    }
}

impl Dispatcher {
    /// A dispatcher over the store, delivering to `targets`.
    pub fn new(
        store: Arc<dyn EventStore>,
        pool: AnyPool,
        targets: Vec<WebhookTarget>,
        auto: Vec<AutoAction>,
        links: crate::links::MediaLinks,
    ) -> Self {
        Self {
            links,
            handler: CommandHandler::new(store.clone()),
            store,
            pool,
            targets: Arc::new(targets),
            auto: Arc::new(auto),
            client: crate::webhooks::client(),
        }
    }

    /// The committed checkpoint.
    pub async fn checkpoint(&self) -> Result<u64, sqlx::Error> {
        vigil_projections::runner::read_checkpoint(&self.pool, CHECKPOINT)
            .await
            .map_err(|e| match e {
                vigil_projections::ProjectionError::Database(e) => e,
                other => sqlx::Error::Protocol(other.to_string()),
            })
    }

    /// Requests the automatic actions of an opened incident. The action ids derive from the
    /// incident, so a replay after a crash finds them requested already.
    async fn auto_actions(&self, event: &RecordedEvent, opened: &IncidentOpened) {
        let mut wanted: Vec<ActionKind> = vec![];
        for setting in self.auto.iter() {
            if setting.matches(opened.kind, opened.severity) {
                for a in &setting.actions {
                    if let Some(kind) = ActionKind::parse(a)
                        && !wanted.contains(&kind)
                    {
                        wanted.push(kind);
                    }
                }
            }
        }
        for action in wanted {
            let Ok(targets) = targets_for(&self.targets, action, None) else {
                continue;
            };
            let action_id = format!("auto-{}-{}", opened.incident_id, action.as_str());
            let request = ActionRequested {
                action_id: action_id.clone(),
                action,
                incident_id: Some(opened.incident_id.clone()),
                camera_id: opened.camera_id.clone(),
                notes: format!("automatic: {}", opened.reasoning),
                targets,
                automatic: true,
            };
            let meta = EventMeta {
                correlation_id: event.correlation_id,
                causation_id: Some(event.event_id),
                actor: "system:auto-actions".into(),
            };
            match request_action(&self.handler, request, &meta).await {
                Ok(_) => {
                    tracing::info!(incident = %opened.incident_id, action = action.as_str(), "automatic action requested")
                }
                Err(ApiFailure::Action(vigil_actors::CommandError::Domain(
                    vigil_actors::action::ActionError::AlreadyExists(_),
                ))) => {}
                // The incident was deleted before its actions went out: nothing to do.
                Err(ApiFailure::Incident(vigil_actors::CommandError::Domain(_))) => {}
                Err(e) => {
                    tracing::warn!(incident = %opened.incident_id, error = %e, "could not request an automatic action")
                }
            }
        }
    }

    /// Delivers one action to one target, unless its delivery is no longer pending, and
    /// records the outcome.
    async fn deliver_one(&self, action_id: String, target_name: String) {
        let (state, _) = match self.handler.load::<Action>(&action_id).await {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::warn!(action = %action_id, error = %e, "cannot load an action to deliver");
                return;
            }
        };
        if state.deliveries.get(&target_name) != Some(&DeliveryState::Pending) {
            return;
        }
        let Some(request) = state.request else { return };
        let Some(target) = self.targets.iter().find(|t| t.name == target_name) else {
            // The target was removed from the config since: that is a failed delivery.
            self.record(
                &action_id,
                ActionCommand::Fail(ActionFailed {
                    action_id: action_id.clone(),
                    target: target_name.clone(),
                    attempts: 0,
                    error: format!("no webhook target is named `{target_name}` any more"),
                }),
            )
            .await;
            return;
        };
        let incident = match &request.incident_id {
            Some(id) => vigil_projections::incidents::get_incident(&self.pool, id)
                .await
                .ok()
                .flatten()
                .map(|row| {
                    json!({
                        "id": row.id,
                        "kind": row.kind.as_str(),
                        "severity": row.severity.as_str(),
                        "status": row.status.as_str(),
                        "confidence": row.confidence,
                        "camera_id": row.camera_id,
                        "zone": row.zone,
                        "reasoning": row.reasoning,
                        "opened_at": row.opened_at,
                        "evidence": row.evidence.iter().map(|f| format!("/api/v1/media/{}", f.blob)).collect::<Vec<_>>(),
                        "evidence_media": row.evidence.iter().map(|f| self.links.describe(&f.blob)).collect::<Vec<_>>(),
                    })
                }),
            None => None,
        };
        let delivery_id = format!("{action_id}:{target_name}");
        let body = json!({
            "delivery_id": delivery_id,
            "action_id": action_id,
            "action": request.action.as_str(),
            "incident_id": request.incident_id,
            "camera_id": request.camera_id,
            "notes": request.notes,
            "automatic": request.automatic,
            "incident": incident,
        });
        let outcome = deliver(
            &self.client,
            target,
            Delivery {
                delivery_id: &delivery_id,
                event: "action.requested",
                body: &body,
            },
        )
        .await;
        let command = match outcome {
            DeliveryOutcome::Delivered { attempts, status } => {
                ActionCommand::Succeed(ActionSucceeded {
                    action_id: action_id.clone(),
                    target: target_name.clone(),
                    attempts,
                    status,
                })
            }
            DeliveryOutcome::Failed { attempts, error } => {
                tracing::warn!(action = %action_id, target = %target_name, attempts, %error, "delivery failed; dead-lettered");
                ActionCommand::Fail(ActionFailed {
                    action_id: action_id.clone(),
                    target: target_name.clone(),
                    attempts,
                    error,
                })
            }
        };
        self.record(&action_id, command).await;
    }

    async fn record(&self, action_id: &str, command: ActionCommand) {
        if let Err(e) = self
            .handler
            .execute::<Action>(action_id, command, &system_meta(None), None)
            .await
        {
            tracing::error!(action = %action_id, error = %e, "could not record a delivery's outcome");
        }
    }

    /// What an event asks of the dispatcher: deliveries to start, as (action, target).
    async fn handle(&self, event: &RecordedEvent) -> Vec<(String, String)> {
        match event.event_type.as_str() {
            "incident.opened" if !self.auto.is_empty() => {
                if let Ok(IncidentEvent::Opened(opened)) =
                    IncidentEvent::decode(&event.event_type, event.schema_version, &event.payload)
                {
                    self.auto_actions(event, &opened).await;
                }
                vec![]
            }
            "action.requested" | "action.requeued" => {
                match ActionEvent::decode(&event.event_type, event.schema_version, &event.payload) {
                    Ok(ActionEvent::Requested(r)) => r
                        .targets
                        .into_iter()
                        .map(|t| (r.action_id.clone(), t))
                        .collect(),
                    Ok(ActionEvent::Requeued(r)) => vec![(r.action_id, r.target)],
                    _ => vec![],
                }
            }
            _ => vec![],
        }
    }

    async fn move_checkpoint(&self, from: u64, to: u64) -> Result<(), sqlx::Error> {
        if !vigil_projections::runner::move_checkpoint(&self.pool, CHECKPOINT, from, to).await? {
            return Err(sqlx::Error::Protocol(format!(
                "the dispatcher checkpoint moved away from {from}"
            )));
        }
        Ok(())
    }

    async fn follow(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        vigil_projections::runner::ensure_checkpoint(&self.pool, CHECKPOINT).await?;
        let mut checkpoint = self.checkpoint().await?;
        let mut seen = checkpoint;
        // Position → deliveries of that event still in flight.
        let mut in_flight: BTreeMap<u64, usize> = BTreeMap::new();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let permits = Arc::new(Semaphore::new(CONCURRENCY));
        let mut live = self.store.subscribe_all(checkpoint);
        loop {
            tokio::select! {
                batch = live.next() => {
                    let Some(batch) = batch else { return Ok(()) };
                    for event in batch? {
                        seen = event.position;
                        for (action_id, target) in self.handle(&event).await {
                            *in_flight.entry(event.position).or_default() += 1;
                            let (me, done, permits) = (self.clone(), done_tx.clone(), permits.clone());
                            let position = event.position;
                            tokio::spawn(async move {
                                let _permit = permits.acquire_owned().await;
                                me.deliver_one(action_id, target).await;
                                let _ = done.send(position);
                            });
                        }
                    }
                }
                Some(position) = done_rx.recv() => {
                    if let Some(n) = in_flight.get_mut(&position) {
                        *n -= 1;
                        if *n == 0 {
                            in_flight.remove(&position);
                        }
                    }
                }
            }
            let safe = in_flight.keys().next().map_or(seen, |first| first - 1);
            if safe > checkpoint {
                self.move_checkpoint(checkpoint, safe).await?;
                checkpoint = safe;
            }
        }
    }

    /// Dispatches forever while this node leads (one dispatcher per cluster on PostgreSQL);
    /// after an error it waits and starts again from its checkpoint.
    pub async fn run(self) {
        vigil_projections::leader::lead_forever(
            &self.pool,
            CHECKPOINT,
            "action dispatcher",
            || self.follow(),
        )
        .await;
    }
}

/// Opens the incident of an outside alert (`POST /api/v1/webhooks/alerts`), or, when the
/// caller's id (derived from the alert's fingerprint and start) exists, adds the repeat to it.
/// Returns the id, whether it was opened now, and the position of the event appended (none
/// when the incident was closed and took nothing).
pub async fn open_or_extend(
    handler: &CommandHandler,
    opened: IncidentOpened,
    meta: &EventMeta,
) -> Result<
    (String, bool, Option<u64>),
    vigil_actors::CommandError<vigil_actors::incident::IncidentError>,
> {
    let id = opened.incident_id.clone();
    match handler
        .execute::<Incident>(&id, IncidentCommand::Open(opened.clone()), meta, None)
        .await
    {
        Ok(done) => Ok((id, true, done.position)),
        Err(vigil_actors::CommandError::Domain(
            vigil_actors::incident::IncidentError::AlreadyExists(_),
        )) => {
            let added =
                IncidentCommand::AddEvidence(vigil_schemas::events::IncidentEvidenceAdded {
                    incident_id: id.clone(),
                    confidence: opened.confidence,
                    reasoning: opened.reasoning,
                    track_ids: vec![],
                    evidence: vec![],
                    observed_at: opened.observed_at,
                });
            match handler.execute::<Incident>(&id, added, meta, None).await {
                Ok(done) => Ok((id, false, done.position)),
                // Closed or deleted by an operator: a repeat of the alert changes nothing.
                Err(vigil_actors::CommandError::Domain(_)) => Ok((id, false, None)),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str, actions: &[&str]) -> WebhookTarget {
        let mut t = WebhookTarget::new(name, "http://127.0.0.1:9/hook");
        t.actions = actions.iter().map(|a| a.to_string()).collect();
        t
    }

    #[test]
    fn actions_go_to_the_targets_that_receive_them() {
        let targets = [
            target("desk", &["alert_security"]),
            target("all", &[]),
            target("doors", &["lock_doors"]),
        ];
        assert_eq!(
            targets_for(&targets, ActionKind::AlertSecurity, None),
            Ok(vec!["desk".to_string(), "all".to_string()])
        );
        assert_eq!(
            targets_for(&targets, ActionKind::LockDoors, Some("doors")),
            Ok(vec!["doors".to_string()])
        );
        assert!(matches!(
            targets_for(&targets, ActionKind::LockDoors, Some("desk")),
            Err(TargetError::NotReceived { .. })
        ));
        assert_eq!(
            targets_for(&targets, ActionKind::Webhook, None),
            Err(TargetError::TargetMissing)
        );
        assert_eq!(
            targets_for(&targets, ActionKind::Webhook, Some("nope")),
            Err(TargetError::UnknownTarget("nope".into()))
        );
        assert_eq!(
            targets_for(
                &[target("desk", &["alert_security"])],
                ActionKind::SoundAlarm,
                None
            ),
            Err(TargetError::NotConfigured("sound_alarm".into()))
        );
    }
}
