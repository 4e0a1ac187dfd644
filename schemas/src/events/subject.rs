//! Enrolled subjects' events (stream `subject-{id}`), matches on cameras among them.

use super::*;

/// The stream that holds one enrolled subject's events.
pub fn subject_stream(subject_id: &str) -> String {
    format!("subject-{subject_id}")
}

/// What an enrolled subject is to the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubjectCategory {
    /// May be seen: cameras with the `authorised` feature raise an incident for faces that match
    /// no authorised subject.
    Authorised,
    /// A person of interest: a match raises an incident.
    Watchlist,
}

impl SubjectCategory {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorised => "authorised",
            Self::Watchlist => "watchlist",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "authorised" => Some(Self::Authorised),
            "watchlist" => Some(Self::Watchlist),
            _ => None,
        }
    }
}

/// One enrolled face of a subject: its descriptor and the image it came from (by hash; the
/// image lives in the media store and is deleted with the subject).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubjectFace {
    /// The face's id (UUID v7).
    pub face_id: String,
    /// SHA-256 of the face crop (JPEG) in the media store.
    pub crop: String,
    /// The face's box in its image.
    pub bbox: NormBox,
    /// Face detector confidence.
    pub score: f32,
    /// 128-d face descriptor (dlib ResNet).
    pub embedding: Vec<f32>,
}

/// A person was enrolled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubjectEnrolled {
    /// The subject's id.
    pub subject_id: String,
    /// Name.
    pub name: String,
    /// Authorised or watch-listed.
    pub category: SubjectCategory,
    /// For watch-listed subjects: the severity of the incident a match raises.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Free text.
    pub notes: String,
    /// 1–5 faces.
    pub faces: Vec<SubjectFace>,
}

/// Some of a subject's details changed. Each present field holds its new value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubjectUpdated {
    /// The subject.
    pub subject_id: String,
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<SubjectCategory>,
    /// New severity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// New notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// Faces were added to a subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubjectFacesAdded {
    /// The subject.
    pub subject_id: String,
    /// The new faces.
    pub faces: Vec<SubjectFace>,
}

/// A subject was erased: its descriptors leave every table and its images the media store.
/// The stream keeps this record of the erasure; the enrolment events stay for audit, but their
/// images are gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubjectErased {
    /// The subject.
    pub subject_id: String,
    /// Faces erased.
    pub face_ids: Vec<String>,
    /// Why.
    pub reason: String,
}

/// A face seen on a camera matched an enrolled subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubjectMatched {
    /// The match's id (UUID v7); also the alert's id.
    pub match_id: String,
    /// The subject.
    pub subject_id: String,
    /// The subject's name when matched.
    pub subject_name: String,
    /// The subject's category when matched.
    pub category: SubjectCategory,
    /// The camera.
    pub camera_id: String,
    /// The track the face belongs to.
    pub track_id: String,
    /// Descriptor distance to the subject's nearest face.
    pub distance: f64,
    /// Distance to the next-nearest other subject, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_distance: Option<f64>,
    /// SHA-256 of the face crop seen (JPEG) in the media store.
    pub crop: String,
    /// The frame it was seen in.
    pub frame: FrameRef,
}

event_family! {
    /// Events of an enrolled subject (stream `subject-{id}`).
    SubjectEvent {
        Enrolled(SubjectEnrolled) = "subject.enrolled" v 1,
        Updated(SubjectUpdated) = "subject.updated" v 1,
        FacesAdded(SubjectFacesAdded) = "subject.faces_added" v 1,
        Erased(SubjectErased) = "subject.erased" v 1,
        Matched(SubjectMatched) = "subject.matched" v 1,
    }
}
