//! The handling of alerts (stream `alert-{id}`).

use super::*;

/// The stream that holds an alert's handling (the alert itself is a `subject.matched` event;
/// its id is the match id).
pub fn alert_stream(alert_id: &str) -> String {
    format!("alert-{alert_id}")
}

/// An operator acknowledged an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertAcknowledged {
    /// The alert (the match id).
    pub alert_id: String,
}

/// An alert was dismissed (cleared from the alert list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertDismissed {
    /// The alert (the match id).
    pub alert_id: String,
}

event_family! {
    /// Events of an alert's handling (stream `alert-{id}`).
    AlertEvent {
        Acknowledged(AlertAcknowledged) = "alert.acknowledged" v 1,
        Dismissed(AlertDismissed) = "alert.dismissed" v 1,
    }
}
