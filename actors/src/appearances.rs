//! The pure bookkeeping of a person's appearance on a camera, which the camera actor applies to
//! each confirmed track: the zone visits it opens and extends, which face belongs to which
//! person, and how long an incident stays open to new findings. No I/O: the actor stores
//! frames, appends events and calls the models.

use chrono::{DateTime, Utc};
use vigil_schemas::events::ZoneVisit;

use crate::pool::Scored;

/// The share of a person's box, from its top, that holds the head: a face whose centre lies
/// lower is someone else's.
pub const HEAD_SHARE: f32 = 0.6;

/// The visits a track opens in the zones it starts in.
pub fn first_visits(zones: &[String], at: DateTime<Utc>) -> Vec<ZoneVisit> {
    zones
        .iter()
        .map(|zone| ZoneVisit {
            zone: zone.clone(),
            entered_at: at,
            exited_at: at,
        })
        .collect()
}

/// Records that a track was `inside` these zones and is now in `zones` at `at`: a zone it stays
/// in extends its latest visit there; a zone it enters (or enters again) opens a new one. Zones
/// it left keep their visits as they were.
pub fn visit_zones(
    visits: &mut Vec<ZoneVisit>,
    inside: &[String],
    zones: &[String],
    at: DateTime<Utc>,
) {
    for zone in zones {
        let open = inside
            .contains(zone)
            .then(|| visits.iter().rposition(|v| &v.zone == zone))
            .flatten();
        match open {
            Some(i) => visits[i].exited_at = at,
            None => visits.push(ZoneVisit {
                zone: zone.clone(),
                entered_at: at,
                exited_at: at,
            }),
        }
    }
}

/// Whether a face (its box) is the head of `person`: its centre inside the person's box,
/// within the upper [`HEAD_SHARE`] of it.
pub fn in_head(person: &Scored, face: &Scored) -> bool {
    let (cx, cy) = ((face.x1 + face.x2) / 2.0, (face.y1 + face.y2) / 2.0);
    let head_bottom = person.y1 + HEAD_SHARE * (person.y2 - person.y1);
    (person.x1..=person.x2).contains(&cx) && (person.y1..=head_bottom).contains(&cy)
}

/// Whether an incident whose latest finding was at `last_finding` still takes new findings at
/// `at`, within the merge window of `merge_seconds`.
pub fn still_open(last_finding: DateTime<Utc>, at: DateTime<Utc>, merge_seconds: f64) -> bool {
    let merge = chrono::Duration::milliseconds((merge_seconds * 1e3) as i64);
    at - last_finding <= merge
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn zones(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn staying_extends_a_visit_and_coming_back_opens_another() {
        let mut visits = first_visits(&zones(&["door"]), at(0));
        assert_eq!(visits.len(), 1);
        visit_zones(
            &mut visits,
            &zones(&["door"]),
            &zones(&["door", "desk"]),
            at(2),
        );
        assert_eq!(visits.len(), 2);
        assert_eq!((visits[0].entered_at, visits[0].exited_at), (at(0), at(2)));
        assert_eq!(
            (visits[1].zone.as_str(), visits[1].entered_at),
            ("desk", at(2))
        );
        // Left the door, stayed at the desk.
        visit_zones(
            &mut visits,
            &zones(&["door", "desk"]),
            &zones(&["desk"]),
            at(4),
        );
        assert_eq!(visits[0].exited_at, at(2), "a zone left keeps its visit");
        assert_eq!(visits[1].exited_at, at(4));
        // Back at the door: a second visit, not the first one stretched.
        visit_zones(&mut visits, &zones(&["desk"]), &zones(&["door"]), at(9));
        assert_eq!(visits.len(), 3);
        assert_eq!(
            (visits[2].zone.as_str(), visits[2].entered_at),
            ("door", at(9))
        );
        assert_eq!(visits[0].exited_at, at(2));
    }

    #[test]
    fn a_face_belongs_to_the_person_whose_head_holds_it() {
        let b = |x1, y1, x2, y2| Scored {
            x1,
            y1,
            x2,
            y2,
            score: 0.9,
        };
        let person = b(0.4, 0.2, 0.6, 0.9);
        assert!(in_head(&person, &b(0.45, 0.22, 0.55, 0.32)), "at the top");
        assert!(!in_head(&person, &b(0.45, 0.7, 0.55, 0.8)), "at the knees");
        assert!(!in_head(&person, &b(0.7, 0.22, 0.8, 0.32)), "beside it");
    }

    #[test]
    fn an_incident_takes_findings_within_its_merge_window() {
        assert!(still_open(at(0), at(30), 30.0));
        assert!(!still_open(at(0), at(31), 30.0));
    }
}
