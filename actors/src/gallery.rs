//! The enrolled faces a node matches against, and the matching decision.
//!
//! A face is a match only when its nearest enrolled subject is within the calibrated distance
//! AND nearer than the next-nearest *other* subject by the calibrated margin; otherwise it is
//! unknown — never silently the nearest subject. Exact search over every enrolled face: a
//! gallery holds what operators enrolled (hundreds to thousands of faces), which a linear scan
//! of 128-d vectors answers in microseconds.

use std::collections::HashMap;

use vigil_schemas::SubjectEvent;
use vigil_schemas::events::{Severity, SubjectCategory};

/// One enrolled subject.
#[derive(Debug, Clone, PartialEq)]
pub struct GallerySubject {
    /// Name.
    pub name: String,
    /// Category.
    pub category: SubjectCategory,
    /// Severity of a watch-list match.
    pub severity: Option<Severity>,
    /// (face id, descriptor).
    pub faces: Vec<(String, Vec<f32>)>,
}

/// Every enrolled subject, folded from subject events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gallery {
    subjects: HashMap<String, GallerySubject>,
}

/// What a face is.
#[derive(Debug, Clone, PartialEq)]
pub enum Identity {
    /// It is this subject.
    Match {
        /// The subject.
        subject_id: String,
        /// Distance to its nearest face.
        distance: f64,
        /// Distance to the nearest other subject.
        second: Option<f64>,
    },
    /// No subject is near enough, or two are too close to tell apart.
    Unknown {
        /// The nearest subject and its distance, when there is any.
        nearest: Option<(String, f64)>,
        /// The next-nearest other subject's distance.
        second: Option<f64>,
    },
}

fn distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

impl Gallery {
    /// Applies one subject event.
    pub fn apply(&mut self, event: &SubjectEvent) {
        match event {
            SubjectEvent::Enrolled(e) => {
                self.subjects.insert(
                    e.subject_id.clone(),
                    GallerySubject {
                        name: e.name.clone(),
                        category: e.category,
                        severity: e.severity,
                        faces: e
                            .faces
                            .iter()
                            .map(|f| (f.face_id.clone(), f.embedding.clone()))
                            .collect(),
                    },
                );
            }
            SubjectEvent::Updated(u) => {
                if let Some(s) = self.subjects.get_mut(&u.subject_id) {
                    if let Some(v) = &u.name {
                        s.name = v.clone();
                    }
                    if let Some(v) = u.category {
                        s.category = v;
                        if v == SubjectCategory::Authorised {
                            s.severity = None;
                        }
                    }
                    if let Some(v) = u.severity {
                        s.severity = Some(v);
                    }
                }
            }
            SubjectEvent::FacesAdded(a) => {
                if let Some(s) = self.subjects.get_mut(&a.subject_id) {
                    s.faces.extend(
                        a.faces
                            .iter()
                            .map(|f| (f.face_id.clone(), f.embedding.clone())),
                    );
                }
            }
            SubjectEvent::Erased(e) => {
                self.subjects.remove(&e.subject_id);
            }
            SubjectEvent::Matched(_) => {}
        }
    }

    /// A subject by id.
    pub fn subject(&self, id: &str) -> Option<&GallerySubject> {
        self.subjects.get(id)
    }

    /// Whether any subject of `category` is enrolled.
    pub fn has(&self, category: SubjectCategory) -> bool {
        self.subjects.values().any(|s| s.category == category)
    }

    /// Subjects enrolled.
    pub fn len(&self) -> usize {
        self.subjects.len()
    }

    /// Whether none is enrolled.
    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty()
    }

    /// Who `embedding` is among the subjects `admit` accepts: a match within `max_distance`
    /// and `margin` nearer than the next other subject, else unknown.
    pub fn identify(
        &self,
        embedding: &[f32],
        max_distance: f64,
        margin: f64,
        admit: impl Fn(&GallerySubject) -> bool,
    ) -> Identity {
        let mut nearest: Vec<(&String, f64)> = self
            .subjects
            .iter()
            .filter(|(_, subject)| admit(subject))
            .filter_map(|(id, subject)| {
                subject
                    .faces
                    .iter()
                    .map(|(_, e)| distance(embedding, e))
                    .min_by(f64::total_cmp)
                    .map(|d| (id, d))
            })
            .collect();
        nearest.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(b.0)));
        let second = nearest.get(1).map(|(_, d)| *d);
        match nearest.first() {
            Some((id, d)) if identified(&nearest, max_distance, margin) => Identity::Match {
                subject_id: (*id).clone(),
                distance: *d,
                second,
            },
            best => Identity::Unknown {
                nearest: best.map(|(id, d)| ((*id).clone(), *d)),
                second,
            },
        }
    }
}

/// The identity rule, shared by cameras ([`Gallery::identify`]) and search by face: `nearest`
/// holds each candidate subject's nearest distance, nearest first. The first is the person
/// when it lies within `max_distance` AND `margin` nearer than the next other subject.
pub fn identified<T>(nearest: &[(T, f64)], max_distance: f64, margin: f64) -> bool {
    match nearest {
        [(_, d), rest @ ..] => {
            *d <= max_distance && rest.first().is_none_or(|(_, s)| s - d >= margin)
        }
        [] => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_schemas::events::{NormBox, SubjectEnrolled, SubjectErased, SubjectFace};

    fn unit(axis: usize, scale: f32) -> Vec<f32> {
        let mut v = vec![0.0; 128];
        v[axis] = scale;
        v
    }

    fn enrol(id: &str, category: SubjectCategory, embedding: Vec<f32>) -> SubjectEvent {
        SubjectEvent::Enrolled(SubjectEnrolled {
            subject_id: id.into(),
            name: id.to_uppercase(),
            category,
            severity: None,
            notes: String::new(),
            faces: vec![SubjectFace {
                face_id: format!("{id}-f"),
                crop: String::new(),
                bbox: NormBox {
                    x1: 0.0,
                    y1: 0.0,
                    x2: 1.0,
                    y2: 1.0,
                },
                score: 1.0,
                embedding,
            }],
        })
    }

    fn gallery() -> Gallery {
        let mut g = Gallery::default();
        g.apply(&enrol("ann", SubjectCategory::Watchlist, unit(0, 1.0)));
        g.apply(&enrol("bob", SubjectCategory::Authorised, unit(1, 1.0)));
        g
    }

    #[test]
    fn a_near_face_with_a_clear_margin_is_a_match() {
        let mut probe = unit(0, 1.0);
        probe[2] = 0.3; // 0.3 from ann, ~1.45 from bob
        match gallery().identify(&probe, 0.5, 0.05, |_| true) {
            Identity::Match {
                subject_id,
                distance,
                second,
            } => {
                assert_eq!(subject_id, "ann");
                assert!((distance - 0.3).abs() < 1e-6);
                assert!(second.unwrap() > 1.4);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn beyond_the_distance_is_unknown_not_the_nearest() {
        let mut probe = unit(0, 1.0);
        probe[2] = 0.6;
        assert!(matches!(
            gallery().identify(&probe, 0.5, 0.05, |_| true),
            Identity::Unknown { nearest: Some((ref id, _)), .. } if id == "ann"
        ));
    }

    #[test]
    fn two_subjects_too_close_to_tell_apart_are_unknown() {
        let mut g = gallery();
        let mut twin = unit(0, 1.0);
        twin[3] = 0.1;
        g.apply(&enrol("twin", SubjectCategory::Watchlist, twin));
        let mut probe = unit(0, 1.0);
        probe[3] = 0.05; // 0.05 from both
        assert!(matches!(
            g.identify(&probe, 0.5, 0.05, |_| true),
            Identity::Unknown { .. }
        ));
        // With the margin off it picks one.
        assert!(matches!(
            g.identify(&probe, 0.5, 0.0, |_| true),
            Identity::Match { .. }
        ));
    }

    #[test]
    fn admit_restricts_the_candidates_and_erasure_removes_them() {
        let mut g = gallery();
        let probe = unit(0, 1.0);
        assert!(matches!(
            g.identify(&probe, 0.5, 0.05, |s| s.category
                == SubjectCategory::Authorised),
            Identity::Unknown { .. }
        ));
        g.apply(&SubjectEvent::Erased(SubjectErased {
            subject_id: "ann".into(),
            face_ids: vec![],
            reason: "request".into(),
        }));
        assert!(matches!(
            g.identify(&probe, 0.5, 0.05, |_| true),
            Identity::Unknown { .. }
        ));
        assert!(!g.has(SubjectCategory::Watchlist));
        assert_eq!(g.len(), 1);
    }
}
