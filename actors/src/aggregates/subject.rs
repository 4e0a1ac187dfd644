//! The subject aggregate (stream `subject-{id}`): a person enrolled with 1–5 face descriptors,
//! authorised or watch-listed, matched by cameras, and erased on request (descriptors and
//! images go; the erasure is recorded).

use chrono::{DateTime, Utc};
use vigil_schemas::SubjectEvent;
use vigil_schemas::events::{
    Severity, SubjectCategory, SubjectEnrolled, SubjectErased, SubjectFace, SubjectFacesAdded,
    SubjectMatched, SubjectUpdated, subject_stream,
};

use crate::aggregates::Aggregate;

/// Faces per enrolment request.
pub const MAX_FACES_PER_REQUEST: usize = 5;
/// Faces a subject may hold in all.
pub const MAX_FACES: usize = 20;
/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest notes, in characters.
pub const MAX_NOTES_CHARS: usize = 4000;

/// What the write side knows of a subject.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubjectState {
    /// Enrolled and not erased.
    pub exists: bool,
    /// Erased: the id is spent.
    pub erased: bool,
    /// Name.
    pub name: String,
    /// Category.
    pub category: Option<SubjectCategory>,
    /// Severity of a watch-list match.
    pub severity: Option<Severity>,
    /// Notes.
    pub notes: String,
    /// Faces (id, crop hash).
    pub faces: Vec<(String, String)>,
}

/// What may be asked of a subject.
#[derive(Debug, Clone, PartialEq)]
pub enum SubjectCommand {
    /// Enrol.
    Enroll(SubjectEnrolled),
    /// Change details.
    Update(SubjectUpdated),
    /// Add faces.
    AddFaces(SubjectFacesAdded),
    /// Erase.
    Erase {
        /// The subject.
        subject_id: String,
        /// Why.
        reason: String,
    },
    /// Record a camera's match.
    RecordMatch(SubjectMatched),
}

/// Why a subject command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubjectError {
    /// No such subject (or erased).
    #[error("subject `{0}` not found")]
    NotFound(String),
    /// The id is taken.
    #[error("subject `{0}` already exists")]
    AlreadyExists(String),
    /// A field is not acceptable.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> SubjectError {
    SubjectError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn check_name(name: &str) -> Result<(), SubjectError> {
    if name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(invalid(
            "name",
            format!("must be 1 to {MAX_NAME_CHARS} characters, not blank"),
        ));
    }
    Ok(())
}

fn check_notes(notes: &str) -> Result<(), SubjectError> {
    if notes.chars().count() > MAX_NOTES_CHARS {
        return Err(invalid(
            "notes",
            format!("must be at most {MAX_NOTES_CHARS} characters"),
        ));
    }
    Ok(())
}

fn check_faces(faces: &[SubjectFace]) -> Result<(), SubjectError> {
    if faces.is_empty() || faces.len() > MAX_FACES_PER_REQUEST {
        return Err(invalid(
            "files",
            format!(
                "1 to {MAX_FACES_PER_REQUEST} face images, not {}",
                faces.len()
            ),
        ));
    }
    if let Some(f) = faces
        .iter()
        .find(|f| f.embedding.len() != 128 || f.embedding.iter().any(|v| !v.is_finite()))
    {
        return Err(invalid(
            "files",
            format!("face {} has no valid 128-d descriptor", f.face_id),
        ));
    }
    Ok(())
}

/// Marker type implementing [`Aggregate`] for subjects.
pub struct Subject;

impl Aggregate for Subject {
    type State = SubjectState;
    type Command = SubjectCommand;
    type Event = SubjectEvent;
    type Error = SubjectError;

    fn stream(id: &str) -> String {
        subject_stream(id)
    }

    fn decide(
        state: &SubjectState,
        command: SubjectCommand,
    ) -> Result<Vec<SubjectEvent>, SubjectError> {
        let found = |id: &str| {
            if state.exists {
                Ok(())
            } else {
                Err(SubjectError::NotFound(id.to_string()))
            }
        };
        match command {
            SubjectCommand::Enroll(mut e) => {
                if state.exists || state.erased {
                    return Err(SubjectError::AlreadyExists(e.subject_id));
                }
                check_name(&e.name)?;
                check_notes(&e.notes)?;
                check_faces(&e.faces)?;
                e.name = e.name.trim().to_string();
                match e.category {
                    SubjectCategory::Watchlist => {
                        e.severity.get_or_insert(Severity::High);
                    }
                    SubjectCategory::Authorised if e.severity.is_some() => {
                        return Err(invalid(
                            "severity",
                            "only watch-listed subjects have a severity",
                        ));
                    }
                    SubjectCategory::Authorised => {}
                }
                Ok(vec![SubjectEvent::Enrolled(e)])
            }
            SubjectCommand::Update(mut u) => {
                found(&u.subject_id)?;
                if let Some(name) = &u.name {
                    check_name(name)?;
                    u.name = Some(name.trim().to_string());
                }
                if let Some(notes) = &u.notes {
                    check_notes(notes)?;
                }
                let category = u.category.or(state.category);
                if category == Some(SubjectCategory::Authorised) && u.severity.is_some() {
                    return Err(invalid(
                        "severity",
                        "only watch-listed subjects have a severity",
                    ));
                }
                // Moving to the watch list without a severity gets the default.
                if u.category == Some(SubjectCategory::Watchlist)
                    && state.category != Some(SubjectCategory::Watchlist)
                    && u.severity.is_none()
                {
                    u.severity = Some(state.severity.unwrap_or(Severity::High));
                }
                // Only what changes.
                if u.name.as_deref() == Some(state.name.as_str()) {
                    u.name = None;
                }
                if u.category == state.category {
                    u.category = None;
                }
                if u.severity.is_some() && u.severity == state.severity {
                    u.severity = None;
                }
                if u.notes.as_deref() == Some(state.notes.as_str()) {
                    u.notes = None;
                }
                let unchanged = SubjectUpdated {
                    subject_id: u.subject_id.clone(),
                    ..Default::default()
                };
                Ok(if u == unchanged {
                    vec![]
                } else {
                    vec![SubjectEvent::Updated(u)]
                })
            }
            SubjectCommand::AddFaces(a) => {
                found(&a.subject_id)?;
                check_faces(&a.faces)?;
                if state.faces.len() + a.faces.len() > MAX_FACES {
                    return Err(invalid(
                        "files",
                        format!(
                            "a subject holds at most {MAX_FACES} faces; it has {}",
                            state.faces.len()
                        ),
                    ));
                }
                Ok(vec![SubjectEvent::FacesAdded(a)])
            }
            SubjectCommand::Erase { subject_id, reason } => {
                found(&subject_id)?;
                Ok(vec![SubjectEvent::Erased(SubjectErased {
                    subject_id,
                    face_ids: state.faces.iter().map(|(id, _)| id.clone()).collect(),
                    reason,
                })])
            }
            SubjectCommand::RecordMatch(m) => {
                found(&m.subject_id)?;
                Ok(vec![SubjectEvent::Matched(m)])
            }
        }
    }

    fn evolve(mut state: SubjectState, event: &SubjectEvent, _at: DateTime<Utc>) -> SubjectState {
        match event {
            SubjectEvent::Enrolled(e) => {
                state.exists = true;
                state.name = e.name.clone();
                state.category = Some(e.category);
                state.severity = e.severity;
                state.notes = e.notes.clone();
                state.faces = e
                    .faces
                    .iter()
                    .map(|f| (f.face_id.clone(), f.crop.clone()))
                    .collect();
            }
            SubjectEvent::Updated(u) => {
                if let Some(v) = &u.name {
                    state.name = v.clone();
                }
                if let Some(v) = u.category {
                    state.category = Some(v);
                    if v == SubjectCategory::Authorised {
                        state.severity = None;
                    }
                }
                if let Some(v) = u.severity {
                    state.severity = Some(v);
                }
                if let Some(v) = &u.notes {
                    state.notes = v.clone();
                }
            }
            SubjectEvent::FacesAdded(a) => state
                .faces
                .extend(a.faces.iter().map(|f| (f.face_id.clone(), f.crop.clone()))),
            SubjectEvent::Erased(_) => {
                state.exists = false;
                state.erased = true;
                state.faces.clear();
            }
            SubjectEvent::Matched(_) => {}
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregates::testing;
    use vigil_schemas::events::NormBox;

    fn face(id: &str) -> SubjectFace {
        SubjectFace {
            face_id: id.into(),
            crop: "ab".repeat(32),
            bbox: NormBox {
                x1: 0.1,
                y1: 0.1,
                x2: 0.5,
                y2: 0.5,
            },
            score: 0.9,
            embedding: vec![0.01; 128],
        }
    }

    fn enrolled(category: SubjectCategory) -> SubjectEnrolled {
        SubjectEnrolled {
            subject_id: "s1".into(),
            name: " Eileen ".into(),
            category,
            severity: None,
            notes: String::new(),
            faces: vec![face("f1")],
        }
    }

    fn given(events: &[SubjectEvent]) -> SubjectState {
        testing::given::<Subject>(events)
    }

    #[test]
    fn a_watch_listed_enrolment_gets_a_severity_and_a_trimmed_name() {
        let events = Subject::decide(
            &SubjectState::default(),
            SubjectCommand::Enroll(enrolled(SubjectCategory::Watchlist)),
        )
        .unwrap();
        let SubjectEvent::Enrolled(e) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(e.name, "Eileen");
        assert_eq!(e.severity, Some(Severity::High));
    }

    #[test]
    fn enrolment_needs_one_to_five_valid_faces() {
        let mut none = enrolled(SubjectCategory::Authorised);
        none.faces.clear();
        let mut six = enrolled(SubjectCategory::Authorised);
        six.faces = (0..6).map(|i| face(&format!("f{i}"))).collect();
        let mut short = enrolled(SubjectCategory::Authorised);
        short.faces[0].embedding.truncate(10);
        for bad in [none, six, short] {
            assert!(matches!(
                Subject::decide(&SubjectState::default(), SubjectCommand::Enroll(bad)),
                Err(SubjectError::Invalid { field: "files", .. })
            ));
        }
    }

    #[test]
    fn an_update_records_only_changes_and_moving_lists_sets_severity() {
        let state = given(&[SubjectEvent::Enrolled(SubjectEnrolled {
            name: "Eileen".into(),
            ..enrolled(SubjectCategory::Authorised)
        })]);
        let same = SubjectUpdated {
            subject_id: "s1".into(),
            name: Some("Eileen".into()),
            ..Default::default()
        };
        assert_eq!(
            Subject::decide(&state, SubjectCommand::Update(same)),
            Ok(vec![])
        );
        let moved = SubjectUpdated {
            subject_id: "s1".into(),
            category: Some(SubjectCategory::Watchlist),
            ..Default::default()
        };
        let events = Subject::decide(&state, SubjectCommand::Update(moved)).unwrap();
        assert!(
            matches!(&events[0], SubjectEvent::Updated(u) if u.severity == Some(Severity::High))
        );
        let bad = SubjectUpdated {
            subject_id: "s1".into(),
            severity: Some(Severity::Low),
            ..Default::default()
        };
        assert!(Subject::decide(&state, SubjectCommand::Update(bad)).is_err());
    }

    #[test]
    fn erasure_lists_the_faces_and_spends_the_id() {
        let state = given(&[
            SubjectEvent::Enrolled(enrolled(SubjectCategory::Watchlist)),
            SubjectEvent::FacesAdded(SubjectFacesAdded {
                subject_id: "s1".into(),
                faces: vec![face("f2")],
            }),
        ]);
        let events = Subject::decide(
            &state,
            SubjectCommand::Erase {
                subject_id: "s1".into(),
                reason: "request".into(),
            },
        )
        .unwrap();
        let SubjectEvent::Erased(e) = &events[0] else {
            panic!()
        };
        assert_eq!(e.face_ids, ["f1", "f2"]);
        let state = given(&[
            SubjectEvent::Enrolled(enrolled(SubjectCategory::Watchlist)),
            events[0].clone(),
        ]);
        assert!(matches!(
            Subject::decide(
                &state,
                SubjectCommand::Enroll(enrolled(SubjectCategory::Watchlist))
            ),
            Err(SubjectError::AlreadyExists(_))
        ));
        assert!(matches!(
            Subject::decide(
                &state,
                SubjectCommand::Erase {
                    subject_id: "s1".into(),
                    reason: "again".into()
                }
            ),
            Err(SubjectError::NotFound(_))
        ));
    }
}
