//! Response actions: which webhook targets an action goes to, requesting one (operators, and
//! the dispatcher for rules' automatic actions), and outside alerts that open incidents.

use vigil_actors::aggregates::action::{Action, ActionCommand, ActionError};
use vigil_actors::aggregates::incident::{Incident, IncidentCommand, IncidentError};
use vigil_actors::{CommandError, CommandHandler};
use vigil_schemas::EventMeta;
use vigil_schemas::events::{ActionKind, ActionRequested, IncidentEvidenceAdded, IncidentOpened};

use crate::webhooks::WebhookTarget;

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
) -> Result<u64, RequestFailure> {
    let id = request.action_id.clone();
    let incident = request.incident_id.clone();
    let action = request.action;
    let done = handler
        .execute::<Action>(&id, ActionCommand::Request(request), meta, None)
        .await
        .map_err(RequestFailure::Action)?;
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
            .map_err(RequestFailure::Incident)?;
        position = recorded.position.unwrap_or(position);
    }
    Ok(position)
}

/// A failed request, by aggregate.
#[derive(Debug, thiserror::Error)]
pub enum RequestFailure {
    /// The action aggregate refused or the store failed.
    #[error(transparent)]
    Action(CommandError<ActionError>),
    /// The incident aggregate refused or the store failed.
    #[error(transparent)]
    Incident(CommandError<IncidentError>),
}

/// Opens the incident of an outside alert (`POST /api/v1/webhooks/alerts`), or, when the
/// caller's id (derived from the alert's fingerprint and start) exists, adds the repeat to it.
/// Returns the id, whether it was opened now, and the position of the event appended (none
/// when the incident was closed and took nothing).
pub async fn open_or_extend(
    handler: &CommandHandler,
    opened: IncidentOpened,
    meta: &EventMeta,
) -> Result<(String, bool, Option<u64>), CommandError<IncidentError>> {
    let id = opened.incident_id.clone();
    match handler
        .execute::<Incident>(&id, IncidentCommand::Open(opened.clone()), meta, None)
        .await
    {
        Ok(done) => Ok((id, true, done.position)),
        Err(CommandError::Domain(IncidentError::AlreadyExists(_))) => {
            let added = IncidentCommand::AddEvidence(IncidentEvidenceAdded {
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
                Err(CommandError::Domain(_)) => Ok((id, false, None)),
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
