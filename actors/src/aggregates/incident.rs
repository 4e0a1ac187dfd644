//! The incident aggregate (stream `incident-{id}`): raised by a rule (or an outside system),
//! extended by later findings of the same rule, then worked by operators through its status
//! workflow until resolved or dismissed, and finally deleted by retention.

use chrono::{DateTime, Utc};
use vigil_schemas::IncidentEvent;
use vigil_schemas::events::{
    IncidentAcknowledged, IncidentActionTaken, IncidentDeleted, IncidentEvidenceAdded,
    IncidentKind, IncidentNoteAdded, IncidentOpened, IncidentStatus, IncidentStatusChanged,
    incident_stream,
};

use crate::aggregates::Aggregate;

/// Longest note, in characters.
pub const MAX_NOTES_CHARS: usize = 4000;
/// Longest reasoning, in characters.
pub const MAX_REASONING_CHARS: usize = 4000;

/// What the write side knows of an incident.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentState {
    /// Opened (and not deleted).
    pub exists: bool,
    /// Deleted: the id is spent.
    pub deleted: bool,
    /// Its kind.
    pub kind: Option<IncidentKind>,
    /// Its camera.
    pub camera_id: Option<String>,
    /// Where it is in the workflow.
    pub status: Option<IncidentStatus>,
    /// Marked read.
    pub is_read: bool,
    /// Marked acted on.
    pub action_taken: bool,
    /// When the latest finding was seen.
    pub last_observed_at: Option<DateTime<Utc>>,
    /// Evidence frames (blob hashes), for retention to delete.
    pub evidence_blobs: Vec<String>,
}

/// What may be asked of an incident.
#[derive(Debug, Clone, PartialEq)]
pub enum IncidentCommand {
    /// Raise it.
    Open(IncidentOpened),
    /// A later finding of the same rule.
    AddEvidence(IncidentEvidenceAdded),
    /// An operator's change: any of status (with notes), notes alone, read flag, acted-on flag.
    /// All or nothing: one invalid part refuses the whole change.
    Update {
        /// The incident.
        id: String,
        /// New status.
        status: Option<IncidentStatus>,
        /// Notes (with a status change: why; alone: a note).
        notes: Option<String>,
        /// Read or unread.
        is_read: Option<bool>,
        /// Acted on or not.
        action_taken: Option<bool>,
    },
    /// A response action went out for it.
    RecordAction {
        /// The incident.
        id: String,
        /// The action's name.
        action: String,
        /// The action's id.
        action_id: String,
    },
    /// Delete it (retention or an operator).
    Delete {
        /// The incident.
        id: String,
        /// Why.
        reason: String,
    },
}

/// Why an incident command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IncidentError {
    /// No such incident (or it was deleted).
    #[error("incident `{0}` not found")]
    NotFound(String),
    /// The id is taken.
    #[error("incident `{0}` already exists")]
    AlreadyExists(String),
    /// The workflow does not allow this move.
    #[error("an incident that is `{from}` cannot become `{to}`")]
    InvalidTransition {
        /// Current status.
        from: &'static str,
        /// Asked-for status.
        to: &'static str,
    },
    /// It is resolved or dismissed: new findings open a new incident.
    #[error("incident is `{0}`; it takes no more evidence")]
    Closed(&'static str),
    /// The command is malformed.
    #[error("{0}")]
    Invalid(String),
}

fn check_text(field: &str, text: &str, max: usize) -> Result<(), IncidentError> {
    if text.chars().count() > max {
        return Err(IncidentError::Invalid(format!(
            "{field} is longer than {max} characters"
        )));
    }
    Ok(())
}

fn check_confidence(c: f64) -> Result<(), IncidentError> {
    if !(0.0..=1.0).contains(&c) {
        return Err(IncidentError::Invalid(format!(
            "confidence must be between 0 and 1, not {c}"
        )));
    }
    Ok(())
}

/// Marker type implementing [`Aggregate`] for incidents.
pub struct Incident;

impl Aggregate for Incident {
    type State = IncidentState;
    type Command = IncidentCommand;
    type Event = IncidentEvent;
    type Error = IncidentError;

    fn stream(id: &str) -> String {
        incident_stream(id)
    }

    fn decide(
        state: &IncidentState,
        command: IncidentCommand,
    ) -> Result<Vec<IncidentEvent>, IncidentError> {
        match command {
            IncidentCommand::Open(opened) => {
                if state.exists || state.deleted {
                    return Err(IncidentError::AlreadyExists(opened.incident_id));
                }
                check_confidence(opened.confidence)?;
                check_text("reasoning", &opened.reasoning, MAX_REASONING_CHARS)?;
                Ok(vec![IncidentEvent::Opened(opened)])
            }
            IncidentCommand::AddEvidence(added) => {
                if !state.exists {
                    return Err(IncidentError::NotFound(added.incident_id));
                }
                let status = state.status.unwrap_or(IncidentStatus::Active);
                if status.is_final() {
                    return Err(IncidentError::Closed(status.as_str()));
                }
                check_confidence(added.confidence)?;
                check_text("reasoning", &added.reasoning, MAX_REASONING_CHARS)?;
                Ok(vec![IncidentEvent::EvidenceAdded(added)])
            }
            IncidentCommand::Update {
                id,
                status,
                notes,
                is_read,
                action_taken,
            } => {
                if !state.exists {
                    return Err(IncidentError::NotFound(id));
                }
                if let Some(notes) = &notes {
                    check_text("notes", notes, MAX_NOTES_CHARS)?;
                }
                let mut events = vec![];
                let current = state.status.unwrap_or(IncidentStatus::Active);
                match status {
                    Some(to) if to != current || notes.is_none() || to.is_final() => {
                        if !current.may_become(to) {
                            return Err(IncidentError::InvalidTransition {
                                from: current.as_str(),
                                to: to.as_str(),
                            });
                        }
                        events.push(IncidentEvent::StatusChanged(IncidentStatusChanged {
                            incident_id: id.clone(),
                            from: current,
                            to,
                            notes: notes.clone().unwrap_or_default(),
                        }));
                    }
                    // The same status with notes: just the note.
                    Some(_) | None => {
                        if let Some(notes) = notes.filter(|n| !n.trim().is_empty()) {
                            events.push(IncidentEvent::NoteAdded(IncidentNoteAdded {
                                incident_id: id.clone(),
                                notes,
                            }));
                        }
                    }
                }
                if let Some(read) = is_read
                    && read != state.is_read
                {
                    events.push(IncidentEvent::Acknowledged(IncidentAcknowledged {
                        incident_id: id.clone(),
                        is_read: read,
                    }));
                }
                if let Some(taken) = action_taken
                    && taken != state.action_taken
                {
                    events.push(IncidentEvent::ActionTaken(IncidentActionTaken {
                        incident_id: id,
                        action: "manual".into(),
                        action_id: None,
                        action_taken: taken,
                    }));
                }
                Ok(events)
            }
            IncidentCommand::RecordAction {
                id,
                action,
                action_id,
            } => {
                if !state.exists {
                    return Err(IncidentError::NotFound(id));
                }
                Ok(vec![IncidentEvent::ActionTaken(IncidentActionTaken {
                    incident_id: id,
                    action,
                    action_id: Some(action_id),
                    action_taken: true,
                })])
            }
            IncidentCommand::Delete { id, reason } => {
                if !state.exists {
                    return Err(IncidentError::NotFound(id));
                }
                Ok(vec![IncidentEvent::Deleted(IncidentDeleted {
                    incident_id: id,
                    reason,
                })])
            }
        }
    }

    fn evolve(
        mut state: IncidentState,
        event: &IncidentEvent,
        _at: DateTime<Utc>,
    ) -> IncidentState {
        match event {
            IncidentEvent::Opened(e) => {
                state.exists = true;
                state.kind = Some(e.kind);
                state.camera_id = e.camera_id.clone();
                state.status = Some(IncidentStatus::Active);
                state.last_observed_at = Some(e.observed_at);
                state
                    .evidence_blobs
                    .extend(e.evidence.iter().map(|f| f.blob.clone()));
            }
            IncidentEvent::EvidenceAdded(e) => {
                state.last_observed_at = Some(e.observed_at);
                state
                    .evidence_blobs
                    .extend(e.evidence.iter().map(|f| f.blob.clone()));
            }
            IncidentEvent::StatusChanged(e) => state.status = Some(e.to),
            IncidentEvent::Acknowledged(e) => state.is_read = e.is_read,
            IncidentEvent::NoteAdded(_) => {}
            IncidentEvent::ActionTaken(e) => state.action_taken = e.action_taken,
            IncidentEvent::Deleted(_) => {
                state.exists = false;
                state.deleted = true;
            }
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregates::testing;
    use vigil_schemas::events::{IncidentSubjects, Severity};

    fn opened(id: &str) -> IncidentOpened {
        IncidentOpened {
            incident_id: id.into(),
            kind: IncidentKind::Crowd,
            severity: Severity::Medium,
            confidence: 0.8,
            camera_id: Some("lobby".into()),
            zone: None,
            reasoning: "6 persons in the frame".into(),
            subjects: IncidentSubjects::default(),
            recommended_actions: vec![],
            evidence: vec![],
            dedup_key: "lobby:crowd:frame".into(),
            source: "rule:crowd".into(),
            observed_at: Utc::now(),
        }
    }

    fn given(events: &[IncidentEvent]) -> IncidentState {
        testing::given::<Incident>(events)
    }

    fn cmd(command: IncidentCommand) -> IncidentCommand {
        command
    }

    fn set_status(to: IncidentStatus, notes: Option<&str>) -> IncidentCommand {
        cmd(IncidentCommand::Update {
            id: "i1".into(),
            status: Some(to),
            notes: notes.map(String::from),
            is_read: None,
            action_taken: None,
        })
    }

    fn status_changed(from: IncidentStatus, to: IncidentStatus) -> IncidentEvent {
        IncidentEvent::StatusChanged(IncidentStatusChanged {
            incident_id: "i1".into(),
            from,
            to,
            notes: String::new(),
        })
    }

    #[test]
    fn opening_twice_is_refused() {
        let state = given(&[IncidentEvent::Opened(opened("i1"))]);
        let again = Incident::decide(&state, cmd(IncidentCommand::Open(opened("i1"))));
        assert_eq!(again, Err(IncidentError::AlreadyExists("i1".into())));
    }

    #[test]
    fn the_workflow_allows_its_transitions_and_refuses_others() {
        use IncidentStatus::*;
        let open = IncidentEvent::Opened(opened("i1"));
        // active → investigating → resolved.
        let state = given(std::slice::from_ref(&open));
        let events = Incident::decide(&state, set_status(Investigating, Some("on it"))).unwrap();
        assert_eq!(
            events,
            vec![IncidentEvent::StatusChanged(IncidentStatusChanged {
                incident_id: "i1".into(),
                from: Active,
                to: Investigating,
                notes: "on it".into(),
            })]
        );
        let state = given(&[open.clone(), status_changed(Active, Investigating)]);
        assert!(Incident::decide(&state, set_status(Resolved, None)).is_ok());
        assert!(Incident::decide(&state, set_status(Escalated, None)).is_ok());
        // investigating → active is not a move.
        assert_eq!(
            Incident::decide(&state, set_status(Active, None)),
            Err(IncidentError::InvalidTransition {
                from: "investigating",
                to: "active"
            })
        );
        // Final statuses are final.
        let state = given(&[open, status_changed(Active, FalsePositive)]);
        for to in IncidentStatus::ALL {
            assert!(
                matches!(
                    Incident::decide(&state, set_status(to, None)),
                    Err(IncidentError::InvalidTransition { .. })
                ),
                "false_positive → {to:?}"
            );
        }
    }

    #[test]
    fn same_status_with_notes_is_a_note_and_without_is_refused() {
        let state = given(&[IncidentEvent::Opened(opened("i1"))]);
        let events =
            Incident::decide(&state, set_status(IncidentStatus::Active, Some("seen"))).unwrap();
        assert!(matches!(events.as_slice(), [IncidentEvent::NoteAdded(n)] if n.notes == "seen"));
        assert!(matches!(
            Incident::decide(&state, set_status(IncidentStatus::Active, None)),
            Err(IncidentError::InvalidTransition { .. })
        ));
    }

    #[test]
    fn an_update_is_all_or_nothing() {
        let state = given(&[
            IncidentEvent::Opened(opened("i1")),
            status_changed(IncidentStatus::Active, IncidentStatus::Resolved),
        ]);
        let update = cmd(IncidentCommand::Update {
            id: "i1".into(),
            status: Some(IncidentStatus::Investigating),
            notes: None,
            is_read: Some(true),
            action_taken: Some(true),
        });
        assert!(Incident::decide(&state, update).is_err());
    }

    #[test]
    fn read_and_acted_on_flags_record_only_changes() {
        let state = given(&[IncidentEvent::Opened(opened("i1"))]);
        let update = |r, a| {
            cmd(IncidentCommand::Update {
                id: "i1".into(),
                status: None,
                notes: None,
                is_read: r,
                action_taken: a,
            })
        };
        let events = Incident::decide(&state, update(Some(true), Some(true))).unwrap();
        assert_eq!(events.len(), 2);
        let state = events
            .iter()
            .fold(state, |s, e| Incident::evolve(s, e, Utc::now()));
        assert!(state.is_read && state.action_taken);
        assert!(
            Incident::decide(&state, update(Some(true), Some(true)))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn evidence_extends_an_open_incident_but_not_a_closed_one() {
        let added = IncidentEvidenceAdded {
            incident_id: "i1".into(),
            confidence: 0.9,
            reasoning: "7 persons".into(),
            track_ids: vec![],
            evidence: vec![],
            observed_at: Utc::now(),
        };
        let state = given(&[IncidentEvent::Opened(opened("i1"))]);
        assert!(Incident::decide(&state, cmd(IncidentCommand::AddEvidence(added.clone()))).is_ok());
        let state = given(&[
            IncidentEvent::Opened(opened("i1")),
            status_changed(IncidentStatus::Active, IncidentStatus::Resolved),
        ]);
        assert_eq!(
            Incident::decide(&state, cmd(IncidentCommand::AddEvidence(added))),
            Err(IncidentError::Closed("resolved"))
        );
    }

    #[test]
    fn a_deleted_incident_is_gone_and_its_id_spent() {
        let state = given(&[
            IncidentEvent::Opened(opened("i1")),
            IncidentEvent::Deleted(IncidentDeleted {
                incident_id: "i1".into(),
                reason: "retention".into(),
            }),
        ]);
        assert_eq!(
            Incident::decide(&state, set_status(IncidentStatus::Resolved, None)),
            Err(IncidentError::NotFound("i1".into()))
        );
        assert!(matches!(
            Incident::decide(&state, cmd(IncidentCommand::Open(opened("i1")))),
            Err(IncidentError::AlreadyExists(_))
        ));
        assert!(matches!(
            Incident::decide(
                &state,
                cmd(IncidentCommand::Delete {
                    id: "i1".into(),
                    reason: "again".into()
                })
            ),
            Err(IncidentError::NotFound(_))
        ));
    }

    #[test]
    fn bad_confidence_and_long_notes_are_refused() {
        let mut bad = opened("i1");
        bad.confidence = 1.5;
        assert!(matches!(
            Incident::decide(&IncidentState::default(), cmd(IncidentCommand::Open(bad))),
            Err(IncidentError::Invalid(_))
        ));
        let state = given(&[IncidentEvent::Opened(opened("i1"))]);
        let long = "x".repeat(MAX_NOTES_CHARS + 1);
        assert!(matches!(
            Incident::decide(
                &state,
                set_status(IncidentStatus::Investigating, Some(&long))
            ),
            Err(IncidentError::Invalid(_))
        ));
    }
}
