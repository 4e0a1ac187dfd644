//! Response actions' events (stream `action-{id}`).

use super::*;

/// The stream that holds one response action's events.
pub fn action_stream(action_id: &str) -> String {
    format!("action-{action_id}")
}

/// A response action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Tell the security team.
    AlertSecurity,
    /// Tell the authorities.
    AlertAuthorities,
    /// Lock doors (through the door system's webhook).
    LockDoors,
    /// Sound an alarm (through the alarm system's webhook).
    SoundAlarm,
    /// Keep the evidence (through a recorder's or archive's webhook).
    RecordEvidence,
    /// Ask for closer monitoring (through a VMS's webhook).
    IncreaseMonitoring,
    /// Call one named webhook target.
    Webhook,
}

impl ActionKind {
    /// Every action.
    pub const ALL: [ActionKind; 7] = [
        Self::AlertSecurity,
        Self::AlertAuthorities,
        Self::LockDoors,
        Self::SoundAlarm,
        Self::RecordEvidence,
        Self::IncreaseMonitoring,
        Self::Webhook,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AlertSecurity => "alert_security",
            Self::AlertAuthorities => "alert_authorities",
            Self::LockDoors => "lock_doors",
            Self::SoundAlarm => "sound_alarm",
            Self::RecordEvidence => "record_evidence",
            Self::IncreaseMonitoring => "increase_monitoring",
            Self::Webhook => "webhook",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A response action was asked for: it is delivered to each of its targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActionRequested {
    /// The action's id.
    pub action_id: String,
    /// What to do.
    pub action: ActionKind,
    /// The incident it responds to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    /// The camera it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera_id: Option<String>,
    /// Free text for the receiver.
    pub notes: String,
    /// Configured webhook targets (by name) it is delivered to.
    pub targets: Vec<String>,
    /// Requested by a rule's automatic-action setting, not a person.
    pub automatic: bool,
}

/// A delivery of an action to one target was accepted (2xx).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActionSucceeded {
    /// The action.
    pub action_id: String,
    /// The target.
    pub target: String,
    /// Attempts it took.
    pub attempts: u32,
    /// The receiver's HTTP status.
    pub status: u16,
}

/// A delivery of an action to one target failed on its last retry and went to the
/// dead-letter queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActionFailed {
    /// The action.
    pub action_id: String,
    /// The target.
    pub target: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's error (`HTTP 503`, `timed out after 5 s`, …).
    pub error: String,
}

/// A dead-lettered delivery was put back for another round of attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActionRequeued {
    /// The action.
    pub action_id: String,
    /// The target.
    pub target: String,
}

/// A dead-lettered delivery was dropped from the queue without delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActionDiscarded {
    /// The action.
    pub action_id: String,
    /// The target.
    pub target: String,
}

event_family! {
    /// Events of a response action (stream `action-{id}`).
    ActionEvent {
        Requested(ActionRequested) = "action.requested" v 1,
        Succeeded(ActionSucceeded) = "action.succeeded" v 1,
        Failed(ActionFailed) = "action.failed" v 1,
        Requeued(ActionRequeued) = "action.requeued" v 1,
        Discarded(ActionDiscarded) = "action.discarded" v 1,
    }
}
