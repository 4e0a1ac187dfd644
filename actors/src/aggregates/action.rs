//! The response-action aggregate (stream `action-{id}`): an action is requested (by an
//! operator or a rule's automatic-action setting) for a set of webhook targets; each target's
//! delivery then succeeds, or fails and sits in the dead-letter queue until it is requeued or
//! discarded.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use vigil_schemas::ActionEvent;
use vigil_schemas::events::{
    ActionDiscarded, ActionFailed, ActionRequested, ActionRequeued, ActionSucceeded, action_stream,
};

use crate::aggregates::Aggregate;

/// Where one target's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for (or in) delivery.
    Pending,
    /// The target accepted it.
    Delivered,
    /// Every attempt failed: in the dead-letter queue.
    Dead,
    /// Dropped from the dead-letter queue.
    Discarded,
}

/// What the write side knows of an action.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActionState {
    /// The request, once made.
    pub request: Option<ActionRequested>,
    /// Each target's delivery.
    pub deliveries: BTreeMap<String, DeliveryState>,
}

/// What may be asked of an action.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionCommand {
    /// Ask for it.
    Request(ActionRequested),
    /// A target accepted it (ignored unless that delivery is pending).
    Succeed(ActionSucceeded),
    /// A target's last attempt failed (ignored unless that delivery is pending).
    Fail(ActionFailed),
    /// Put a dead-lettered delivery back.
    Requeue {
        /// The action.
        action_id: String,
        /// The target.
        target: String,
    },
    /// Drop a dead-lettered delivery.
    Discard {
        /// The action.
        action_id: String,
        /// The target.
        target: String,
    },
}

/// Why an action command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActionError {
    /// The id is taken.
    #[error("action `{0}` already exists")]
    AlreadyExists(String),
    /// No such action, or no such target on it.
    #[error("no delivery of action `{0}` to `{1}`")]
    NotFound(String, String),
    /// Only dead-lettered deliveries can be requeued or discarded.
    #[error("the delivery of action `{0}` to `{1}` is not in the dead-letter queue")]
    NotDead(String, String),
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
}

/// Marker type implementing [`Aggregate`] for actions.
pub struct Action;

impl Action {
    fn delivery(
        state: &ActionState,
        action_id: &str,
        target: &str,
    ) -> Result<DeliveryState, ActionError> {
        state
            .deliveries
            .get(target)
            .copied()
            .ok_or_else(|| ActionError::NotFound(action_id.into(), target.into()))
    }
}

impl Aggregate for Action {
    type State = ActionState;
    type Command = ActionCommand;
    type Event = ActionEvent;
    type Error = ActionError;

    fn stream(id: &str) -> String {
        action_stream(id)
    }

    fn decide(
        state: &ActionState,
        command: ActionCommand,
    ) -> Result<Vec<ActionEvent>, ActionError> {
        match command {
            ActionCommand::Request(request) => {
                if state.request.is_some() {
                    return Err(ActionError::AlreadyExists(request.action_id));
                }
                if request.targets.is_empty() {
                    return Err(ActionError::Invalid(format!(
                        "no webhook target receives `{}`",
                        request.action.as_str()
                    )));
                }
                Ok(vec![ActionEvent::Requested(request)])
            }
            ActionCommand::Succeed(done) => {
                let now = Self::delivery(state, &done.action_id, &done.target)?;
                Ok(if now == DeliveryState::Pending {
                    vec![ActionEvent::Succeeded(done)]
                } else {
                    vec![]
                })
            }
            ActionCommand::Fail(failed) => {
                let now = Self::delivery(state, &failed.action_id, &failed.target)?;
                Ok(if now == DeliveryState::Pending {
                    vec![ActionEvent::Failed(failed)]
                } else {
                    vec![]
                })
            }
            ActionCommand::Requeue { action_id, target } => {
                if Self::delivery(state, &action_id, &target)? != DeliveryState::Dead {
                    return Err(ActionError::NotDead(action_id, target));
                }
                Ok(vec![ActionEvent::Requeued(ActionRequeued {
                    action_id,
                    target,
                })])
            }
            ActionCommand::Discard { action_id, target } => {
                if Self::delivery(state, &action_id, &target)? != DeliveryState::Dead {
                    return Err(ActionError::NotDead(action_id, target));
                }
                Ok(vec![ActionEvent::Discarded(ActionDiscarded {
                    action_id,
                    target,
                })])
            }
        }
    }

    fn evolve(mut state: ActionState, event: &ActionEvent, _at: DateTime<Utc>) -> ActionState {
        match event {
            ActionEvent::Requested(e) => {
                for target in &e.targets {
                    state
                        .deliveries
                        .insert(target.clone(), DeliveryState::Pending);
                }
                state.request = Some(e.clone());
            }
            ActionEvent::Succeeded(e) => {
                state
                    .deliveries
                    .insert(e.target.clone(), DeliveryState::Delivered);
            }
            ActionEvent::Failed(e) => {
                state
                    .deliveries
                    .insert(e.target.clone(), DeliveryState::Dead);
            }
            ActionEvent::Requeued(e) => {
                state
                    .deliveries
                    .insert(e.target.clone(), DeliveryState::Pending);
            }
            ActionEvent::Discarded(e) => {
                state
                    .deliveries
                    .insert(e.target.clone(), DeliveryState::Discarded);
            }
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregates::testing;
    use vigil_schemas::events::ActionKind;

    fn requested() -> ActionEvent {
        ActionEvent::Requested(ActionRequested {
            action_id: "a1".into(),
            action: ActionKind::AlertSecurity,
            incident_id: None,
            camera_id: None,
            notes: String::new(),
            targets: vec!["desk".into(), "pager".into()],
            automatic: false,
        })
    }

    fn given(events: &[ActionEvent]) -> ActionState {
        testing::given::<Action>(events)
    }

    fn failed(target: &str) -> ActionEvent {
        ActionEvent::Failed(ActionFailed {
            action_id: "a1".into(),
            target: target.into(),
            attempts: 5,
            error: "HTTP 503".into(),
        })
    }

    #[test]
    fn a_request_without_targets_is_refused() {
        let ActionEvent::Requested(mut r) = requested() else {
            unreachable!()
        };
        r.targets.clear();
        assert!(matches!(
            Action::decide(&ActionState::default(), ActionCommand::Request(r)),
            Err(ActionError::Invalid(_))
        ));
    }

    #[test]
    fn only_a_pending_delivery_takes_an_outcome() {
        let state = given(&[requested(), failed("desk")]);
        let ok = ActionSucceeded {
            action_id: "a1".into(),
            target: "desk".into(),
            attempts: 1,
            status: 200,
        };
        // A redelivery after a restart finding the delivery already dead changes nothing.
        assert_eq!(
            Action::decide(&state, ActionCommand::Succeed(ok.clone())),
            Ok(vec![])
        );
        let mut pager = ok;
        pager.target = "pager".into();
        assert_eq!(
            Action::decide(&state, ActionCommand::Succeed(pager.clone())),
            Ok(vec![ActionEvent::Succeeded(pager)])
        );
    }

    #[test]
    fn requeue_and_discard_need_a_dead_letter() {
        let requeue = |t: &str| ActionCommand::Requeue {
            action_id: "a1".into(),
            target: t.into(),
        };
        let state = given(&[requested(), failed("desk")]);
        assert!(Action::decide(&state, requeue("desk")).is_ok());
        assert_eq!(
            Action::decide(&state, requeue("pager")),
            Err(ActionError::NotDead("a1".into(), "pager".into()))
        );
        assert_eq!(
            Action::decide(&state, requeue("nobody")),
            Err(ActionError::NotFound("a1".into(), "nobody".into()))
        );
        let state = given(&[
            requested(),
            failed("desk"),
            ActionEvent::Discarded(ActionDiscarded {
                action_id: "a1".into(),
                target: "desk".into(),
            }),
        ]);
        assert_eq!(state.deliveries["desk"], DeliveryState::Discarded);
        assert!(Action::decide(&state, requeue("desk")).is_err());
    }
}
