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
use vigil_actors::aggregates::action::{Action, ActionCommand, DeliveryState};
use vigil_schemas::events::{
    ActionFailed, ActionKind, ActionRequested, ActionSucceeded, IncidentOpened,
};
use vigil_schemas::{
    ActionEvent, DomainEvent, EventMeta, EventStore, IncidentEvent, RecordedEvent,
};

use vigil_projections::checkpoint::Checkpoint;

use crate::config::AutoAction;
use crate::service::actions::{RequestFailure, request_action, targets_for};
use crate::webhooks::{Delivery, DeliveryOutcome, WebhookTarget, deliver};

/// The dispatcher's checkpoint name.
pub const CHECKPOINT: &str = "action-dispatcher";
/// Deliveries in flight at once.
const CONCURRENCY: usize = 32;

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
        self.checkpoint_row().read().await
    }

    fn checkpoint_row(&self) -> Checkpoint {
        Checkpoint::new(self.pool.clone(), CHECKPOINT)
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
                Err(RequestFailure::Action(vigil_actors::CommandError::Domain(
                    vigil_actors::aggregates::action::ActionError::AlreadyExists(_),
                ))) => {}
                // The incident was deleted before its actions went out: nothing to do.
                Err(RequestFailure::Incident(vigil_actors::CommandError::Domain(_))) => {}
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
        if !self.checkpoint_row().advance(from, to).await? {
            return Err(sqlx::Error::Protocol(format!(
                "the dispatcher checkpoint moved away from {from}"
            )));
        }
        Ok(())
    }

    async fn follow(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.checkpoint_row().ensure().await?;
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
