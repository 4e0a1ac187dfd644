//! The incident aggregate's events (stream `incident-{id}`), with severities, kinds and statuses.

use super::*;

/// The stream that holds one incident's events.
pub fn incident_stream(incident_id: &str) -> String {
    format!("incident-{incident_id}")
}

/// How serious an incident is. Ordered: `low < medium < high < critical`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Needs attention.
    Medium,
    /// Needs attention now.
    High,
    /// Needs everyone now.
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 4] = [Self::Low, Self::Medium, Self::High, Self::Critical];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// What an incident is about: the rule (or outside system) that raised it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// Too many people in the frame or a zone for too long.
    Crowd,
    /// A person entered a restricted zone.
    Intrusion,
    /// A person stayed in a zone too long.
    Loitering,
    /// A face that matches no authorised person.
    Unauthorised,
    /// A face that matches a watch-listed subject.
    PersonOfInterest,
    /// A person lying still for a while.
    Sleep,
    /// A person who went from upright to lying quickly and stayed down.
    Fall,
    /// Theft-like behaviour.
    Theft,
    /// Raised by an outside monitoring system (Alertmanager).
    External,
}

impl IncidentKind {
    /// Every kind.
    pub const ALL: [IncidentKind; 9] = [
        Self::Crowd,
        Self::Intrusion,
        Self::Loitering,
        Self::Unauthorised,
        Self::PersonOfInterest,
        Self::Sleep,
        Self::Fall,
        Self::Theft,
        Self::External,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crowd => "crowd",
            Self::Intrusion => "intrusion",
            Self::Loitering => "loitering",
            Self::Unauthorised => "unauthorised",
            Self::PersonOfInterest => "person_of_interest",
            Self::Sleep => "sleep",
            Self::Fall => "fall",
            Self::Theft => "theft",
            Self::External => "external",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Where an incident is in its workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// Raised, nobody has taken it yet.
    Active,
    /// Someone is looking into it.
    Investigating,
    /// Handed up (to security, authorities).
    Escalated,
    /// Dealt with. Final.
    Resolved,
    /// Not a real incident. Final.
    FalsePositive,
}

impl IncidentStatus {
    /// Every status.
    pub const ALL: [IncidentStatus; 5] = [
        Self::Active,
        Self::Investigating,
        Self::Escalated,
        Self::Resolved,
        Self::FalsePositive,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Investigating => "investigating",
            Self::Escalated => "escalated",
            Self::Resolved => "resolved",
            Self::FalsePositive => "false_positive",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether the workflow is over (`resolved`, `false_positive`).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Resolved | Self::FalsePositive)
    }

    /// Whether an incident in this status may move to `to`.
    pub fn may_become(self, to: IncidentStatus) -> bool {
        use IncidentStatus::*;
        match self {
            Active => matches!(to, Investigating | Escalated | Resolved | FalsePositive),
            Investigating => matches!(to, Escalated | Resolved | FalsePositive),
            Escalated => matches!(to, Investigating | Resolved | FalsePositive),
            Resolved | FalsePositive => false,
        }
    }
}

/// Who or what an incident is about.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IncidentSubjects {
    /// Tracks (`track-{camera}-{track}`) of the people involved.
    pub track_ids: Vec<String>,
    /// The enrolled subject a face matched, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_id: Option<String>,
}

/// An incident was raised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IncidentOpened {
    /// The incident's id (UUID v7).
    pub incident_id: String,
    /// What it is about.
    pub kind: IncidentKind,
    /// How serious.
    pub severity: Severity,
    /// How sure the rule is, 0–1.
    pub confidence: f64,
    /// The camera, when a camera's rule raised it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera_id: Option<String>,
    /// The zone, when the rule is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Why, in words that name the evidence (counts, zone, dwell, similarity).
    pub reasoning: String,
    /// Who is involved.
    pub subjects: IncidentSubjects,
    /// Response actions the rule recommends (`alert_security`, …).
    pub recommended_actions: Vec<String>,
    /// Frames that show it.
    pub evidence: Vec<FrameRef>,
    /// What later findings of the same rule, camera, zone and track share: a finding with an
    /// open incident's key extends it instead of opening another.
    pub dedup_key: String,
    /// What raised it: `rule:{kind}` or `alertmanager`.
    pub source: String,
    /// When the evidence was seen.
    pub observed_at: DateTime<Utc>,
}

/// A rule found more of what an open incident is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IncidentEvidenceAdded {
    /// The incident.
    pub incident_id: String,
    /// Confidence of this finding, 0–1 (the incident keeps the highest).
    pub confidence: f64,
    /// The finding's reasoning.
    pub reasoning: String,
    /// Tracks of this finding.
    pub track_ids: Vec<String>,
    /// Frames of this finding.
    pub evidence: Vec<FrameRef>,
    /// When it was seen.
    pub observed_at: DateTime<Utc>,
}

/// An incident moved in its workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IncidentStatusChanged {
    /// The incident.
    pub incident_id: String,
    /// The status it had.
    pub from: IncidentStatus,
    /// The status it has now.
    pub to: IncidentStatus,
    /// Why, in the operator's words (may be empty).
    pub notes: String,
}

/// An incident was marked read (or unread).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IncidentAcknowledged {
    /// The incident.
    pub incident_id: String,
    /// Read or not.
    pub is_read: bool,
}

/// An operator wrote a note on an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IncidentNoteAdded {
    /// The incident.
    pub incident_id: String,
    /// The note.
    pub notes: String,
}

/// A response action was taken for an incident (or the incident was marked as handled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IncidentActionTaken {
    /// The incident.
    pub incident_id: String,
    /// The action (`alert_security`, …, or `manual` when an operator marked it handled).
    pub action: String,
    /// The action's id (`action-{id}`), when it went through the dispatcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_id: Option<String>,
    /// Whether the incident now counts as acted on (`false` when an operator unmarks it).
    pub action_taken: bool,
}

/// An incident was deleted (retention or an operator). Its stream stays for audit; its media
/// is deleted with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IncidentDeleted {
    /// The incident.
    pub incident_id: String,
    /// Why (`retention: older than 30 days`).
    pub reason: String,
}

event_family! {
    /// Events of the incident aggregate (stream `incident-{id}`).
    IncidentEvent {
        Opened(IncidentOpened) = "incident.opened" v 1,
        EvidenceAdded(IncidentEvidenceAdded) = "incident.evidence_added" v 1,
        StatusChanged(IncidentStatusChanged) = "incident.status_changed" v 1,
        Acknowledged(IncidentAcknowledged) = "incident.acknowledged" v 1,
        NoteAdded(IncidentNoteAdded) = "incident.note_added" v 1,
        ActionTaken(IncidentActionTaken) = "incident.action_taken" v 1,
        Deleted(IncidentDeleted) = "incident.deleted" v 1,
    }
}
