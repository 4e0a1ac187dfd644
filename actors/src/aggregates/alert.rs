//! An alert's handling (stream `alert-{id}`). The alert itself is the `subject.matched` event
//! whose match id it shares; operators acknowledge and dismiss it.

use chrono::{DateTime, Utc};
use vigil_schemas::AlertEvent;
use vigil_schemas::events::{AlertAcknowledged, AlertDismissed, alert_stream};

use crate::aggregates::Aggregate;

/// What the write side knows of an alert's handling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertState {
    /// Acknowledged.
    pub acknowledged: bool,
    /// Dismissed.
    pub dismissed: bool,
}

/// What may be asked of an alert (the caller has checked it exists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertCommand {
    /// Acknowledge (again: nothing).
    Acknowledge(String),
    /// Dismiss (again: nothing).
    Dismiss(String),
}

/// Never refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unreachable")]
pub enum Never {}

/// Marker type implementing [`Aggregate`] for alert handling.
pub struct Alert;

impl Aggregate for Alert {
    type State = AlertState;
    type Command = AlertCommand;
    type Event = AlertEvent;
    type Error = Never;

    fn stream(id: &str) -> String {
        alert_stream(id)
    }

    fn decide(state: &AlertState, command: AlertCommand) -> Result<Vec<AlertEvent>, Never> {
        Ok(match command {
            AlertCommand::Acknowledge(alert_id) if !state.acknowledged && !state.dismissed => {
                vec![AlertEvent::Acknowledged(AlertAcknowledged { alert_id })]
            }
            AlertCommand::Dismiss(alert_id) if !state.dismissed => {
                vec![AlertEvent::Dismissed(AlertDismissed { alert_id })]
            }
            _ => vec![],
        })
    }

    fn evolve(mut state: AlertState, event: &AlertEvent, _at: DateTime<Utc>) -> AlertState {
        match event {
            AlertEvent::Acknowledged(_) => state.acknowledged = true,
            AlertEvent::Dismissed(_) => state.dismissed = true,
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledging_or_dismissing_twice_records_once() {
        let ack = AlertCommand::Acknowledge("a".into());
        let events = Alert::decide(&AlertState::default(), ack.clone()).unwrap();
        assert_eq!(events.len(), 1);
        let state = Alert::evolve(AlertState::default(), &events[0], Utc::now());
        assert!(Alert::decide(&state, ack).unwrap().is_empty());
        let dismissed = AlertState {
            acknowledged: false,
            dismissed: true,
        };
        assert!(
            Alert::decide(&dismissed, AlertCommand::Dismiss("a".into()))
                .unwrap()
                .is_empty()
        );
        assert!(
            Alert::decide(&dismissed, AlertCommand::Acknowledge("a".into()))
                .unwrap()
                .is_empty()
        );
    }
}
