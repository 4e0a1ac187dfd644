//! The pure bookkeeping of what a camera follows, which the camera actor applies to each
//! analysed frame: the confirmed tracks ([`Appearances`]: their zone visits, which face is whose,
//! when a face is worth a descriptor, the clearest face so far, what the gallery says of it) and
//! the incidents its rules opened ([`OpenIncidents`]: the merge window, how often evidence is
//! added). Each step takes what the models and the tracker said and returns the events to
//! record. No I/O: the actor stores frames, appends events and calls the models.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;
use vigil_schemas::events::{
    AppearanceEnded, AppearanceStarted, BestFace, CalibrationSettings, CameraFeatures, FrameRef,
    IncidentEvidenceAdded, IncidentOpened, IncidentSubjects, NormBox, SubjectCategory,
    SubjectMatched, ZoneVisit,
};

use crate::frame::{Frame, RgbImage};
use crate::gallery::{Gallery, Identity};
use crate::pool::{FoundFace, Scored};
use crate::rules::Finding;
use crate::tracker::{TrackBox, TrackId};

/// The share of a person's box, from its top, that holds the head: a face whose centre lies
/// lower is someone else's.
pub const HEAD_SHARE: f32 = 0.6;

/// An open incident takes new evidence (an event with a frame) at most this often; findings
/// in between only keep it open.
pub const EVIDENCE_EVERY_SECONDS: f64 = 5.0;

/// A box as the events write it.
pub fn norm(b: &Scored) -> NormBox {
    NormBox {
        x1: b.x1,
        y1: b.y1,
        x2: b.x2,
        y2: b.y2,
    }
}

/// How good a face is to describe: detector score × size (full at 80 pixels tall) × how
/// squarely it faces the camera ([`vigil_models::faces::frontalness`]).
pub fn face_quality(face: &FoundFace, frame_height: u32) -> f32 {
    let height_px = (face.bbox.y2 - face.bbox.y1) * frame_height as f32;
    face.bbox.score
        * (height_px / 80.0).min(1.0)
        * vigil_models::faces::frontalness(&face.landmarks)
}

/// Whether a track's face seen in frame `frame` with `quality` is worth a descriptor: never
/// within `every` frames of the track's last one; otherwise for its first two (two looks
/// before the `authorised` rule decides) and then only when it is clearer than the track's
/// best so far. A person standing in view for a minute is described a handful of times.
pub fn describe_due(
    described: u32,
    last: Option<u64>,
    best: Option<f32>,
    quality: f32,
    frame: u64,
    every: u32,
) -> bool {
    if last.is_some_and(|last| frame.saturating_sub(last) < u64::from(every.max(1))) {
        return false;
    }
    described < 2 || best.is_none_or(|best| quality > best)
}

/// The end recorded for a track whose actor stopped without ending it (the process was killed,
/// or the camera's actor failed): all that is known is its start, so it ends where it started,
/// one frame long, without a best face, for `interrupted`.
pub fn interrupted(started: &AppearanceStarted) -> AppearanceEnded {
    AppearanceEnded {
        camera_id: started.camera_id.clone(),
        track_id: started.track_id.clone(),
        started_at: started.started_at,
        ended_at: started.started_at,
        dwell_seconds: 0.0,
        frames: 1,
        last_bbox: started.bbox,
        exit_frame: started.entry_frame.clone(),
        zones: first_visits(&started.zones, started.started_at),
        best_face: None,
        reason: INTERRUPTED.into(),
    }
}

/// The reason of an end recorded by the sweep ([`interrupted`]).
pub const INTERRUPTED: &str = "interrupted";

/// Tracks started and not ended, as the event log says: what the sweep ends before a camera's
/// actor starts (at a node's start, and again after the camera's actor failed). Pure: the
/// supervisor folds `appearance.*` events into it.
#[derive(Debug, Default)]
pub struct OpenTracks {
    by_camera: HashMap<String, HashMap<String, AppearanceStarted>>,
}

impl OpenTracks {
    /// Folds a track's start or end.
    pub fn apply(&mut self, event: &vigil_schemas::AppearanceEvent) {
        use vigil_schemas::AppearanceEvent;
        match event {
            AppearanceEvent::Started(s) => {
                self.by_camera
                    .entry(s.camera_id.clone())
                    .or_default()
                    .insert(s.track_id.clone(), s.clone());
            }
            AppearanceEvent::Ended(e) => {
                if let Some(tracks) = self.by_camera.get_mut(&e.camera_id) {
                    tracks.remove(&e.track_id);
                    if tracks.is_empty() {
                        self.by_camera.remove(&e.camera_id);
                    }
                }
            }
        }
    }

    /// Removes and returns `camera_id`'s open tracks, oldest first.
    pub fn take(&mut self, camera_id: &str) -> Vec<AppearanceStarted> {
        let mut tracks: Vec<_> = self
            .by_camera
            .remove(camera_id)
            .map(|t| t.into_values().collect())
            .unwrap_or_default();
        tracks.sort_by(|a, b| (a.started_at, &a.track_id).cmp(&(b.started_at, &b.track_id)));
        tracks
    }

    /// Puts back tracks [`Self::take`] returned that could not be ended (the store was down).
    pub fn restore(&mut self, tracks: Vec<AppearanceStarted>) {
        for s in tracks {
            self.by_camera
                .entry(s.camera_id.clone())
                .or_default()
                .insert(s.track_id.clone(), s);
        }
    }

    /// The cameras with open tracks.
    pub fn cameras(&self) -> impl Iterator<Item = &str> {
        self.by_camera.keys().map(String::as_str)
    }

    /// How many tracks are open, on every camera.
    pub fn len(&self) -> usize {
        self.by_camera.values().map(HashMap::len).sum()
    }

    /// Whether no track is open.
    pub fn is_empty(&self) -> bool {
        self.by_camera.is_empty()
    }
}

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

/// The clearest face of a track so far, with the frame it is in.
#[derive(Debug, Clone)]
pub struct FaceCandidate {
    /// Its [`face_quality`].
    pub quality: f32,
    /// The frame it is in (cropped when the track ends).
    pub image: Arc<RgbImage>,
    /// Its box and detector score.
    pub bbox: Scored,
    /// When it was seen.
    pub at: DateTime<Utc>,
    /// Its descriptor.
    pub embedding: Vec<f32>,
}

/// A confirmed track a camera follows, from its first frame to its last.
#[derive(Debug, Clone)]
pub struct Track {
    /// Its id (the `track-{camera}-{id}` stream).
    pub track_id: String,
    started_at: DateTime<Utc>,
    /// Its entry frame (the exit frame when the last one cannot be stored).
    entry: FrameRef,
    last_seen: DateTime<Utc>,
    last_frame: Frame,
    last_frame_number: u64,
    last_box: NormBox,
    last_score: f32,
    /// Frames it was detected in (held frames are not counted).
    frames: u32,
    zones: Vec<ZoneVisit>,
    inside: Vec<String>,
    best_face: Option<FaceCandidate>,
    /// Descriptors of its face compared with the gallery.
    face_checks: u32,
    /// Descriptors computed of its face.
    descriptors: u32,
    /// Frame number of its latest descriptor.
    last_described: Option<u64>,
    /// Subjects its face matched (each recorded once).
    matched: Vec<String>,
    /// Its face matched an authorised subject.
    authorised: bool,
    /// The authorised rule already raised its incident for it.
    unauthorised_raised: bool,
}

impl Track {
    /// The last frame it was seen in, with that frame's number (its exit frame).
    pub fn last_frame(&self) -> (&Frame, u64) {
        (&self.last_frame, self.last_frame_number)
    }

    /// Its clearest face so far.
    pub fn best_face(&self) -> Option<&FaceCandidate> {
        self.best_face.as_ref()
    }

    /// The event that ends it: `exit_frame` holds its last frame (stored as `exit_blob`; its
    /// entry frame when the last could not be stored), `best_face` the crop of its clearest
    /// face.
    pub fn ended(
        self,
        camera_id: &str,
        exit_blob: Option<String>,
        best_face: Option<BestFace>,
        reason: &str,
    ) -> AppearanceEnded {
        let exit_frame = match exit_blob {
            Some(blob) => FrameRef {
                persons: vec![],
                blob,
                frame_number: self.last_frame_number,
                at: self.last_seen,
            },
            None => self.entry,
        };
        AppearanceEnded {
            camera_id: camera_id.to_string(),
            track_id: self.track_id,
            started_at: self.started_at,
            ended_at: self.last_seen,
            dwell_seconds: (self.last_seen - self.started_at).num_milliseconds() as f64 / 1e3,
            frames: self.frames,
            last_bbox: self.last_box,
            exit_frame,
            zones: self.zones,
            best_face,
            reason: reason.to_string(),
        }
    }
}

/// A face seen in a track's head in the frame at hand, with its quality.
pub type FaceSeen = (f32, FoundFace);

/// What one frame's sightings say: for each person, the track it belongs to, and for each
/// track seen, the clearest face in its head.
#[derive(Debug, Default)]
pub struct Sightings {
    /// For each person of the frame (same order), the id of its confirmed track.
    pub tracks: Vec<Option<String>>,
    /// The clearest face of each track seen, when one was in its head.
    pub faces: HashMap<TrackId, FaceSeen>,
}

/// The confirmed tracks a camera follows, by tracker id.
#[derive(Debug, Default)]
pub struct Appearances {
    live: HashMap<TrackId, Track>,
}

impl Appearances {
    /// Starts following track `id`, confirmed on `person` in `frame` (stored as `entry`), in
    /// `zones`; returns its `appearance.started`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        camera_id: &str,
        id: TrackId,
        track_id: String,
        person: &Scored,
        zones: Vec<String>,
        frame: &Frame,
        entry: FrameRef,
    ) -> AppearanceStarted {
        let at = frame.captured_at;
        let started = AppearanceStarted {
            camera_id: camera_id.to_string(),
            track_id: track_id.clone(),
            started_at: at,
            bbox: norm(person),
            score: person.score,
            entry_frame: entry.clone(),
            zones: zones.clone(),
        };
        self.live.insert(
            id,
            Track {
                track_id,
                started_at: at,
                entry: entry.clone(),
                last_seen: at,
                last_frame: frame.clone(),
                last_frame_number: entry.frame_number,
                last_box: norm(person),
                last_score: person.score,
                frames: 0,
                zones: first_visits(&zones, at),
                inside: zones,
                best_face: None,
                face_checks: 0,
                descriptors: 0,
                last_described: None,
                matched: vec![],
                authorised: false,
                unauthorised_raised: false,
            },
        );
        started
    }

    /// The boxes of `held` tracks (not looked for in this frame, so still in view where they
    /// were) as persons, scored as when last detected; tracks not followed are left out.
    pub fn held(&self, held: &[(TrackId, TrackBox)]) -> Vec<(TrackId, Scored)> {
        held.iter()
            .filter_map(|(id, b)| {
                let track = self.live.get(id)?;
                Some((
                    *id,
                    Scored {
                        x1: b.x1,
                        y1: b.y1,
                        x2: b.x2,
                        y2: b.y2,
                        score: track.last_score,
                    },
                ))
            })
            .collect()
    }

    /// Records the persons of frame number `frame_number`: `assigned[i]` is the track of
    /// `persons[i]`, in `zones[i]`; the first `detected` persons were detected (the rest are
    /// held tracks). Each track seen moves on (last box, frame, zone visits) and takes the
    /// clearest of `faces` in its head.
    #[allow(clippy::too_many_arguments)]
    pub fn see(
        &mut self,
        assigned: &[Option<TrackId>],
        persons: &[Scored],
        zones: &[Vec<String>],
        detected: usize,
        faces: &[FoundFace],
        frame: &Frame,
        frame_number: u64,
    ) -> Sightings {
        let mut seen = Sightings {
            tracks: vec![None; persons.len()],
            faces: HashMap::new(),
        };
        for (det, assigned) in assigned.iter().enumerate() {
            let Some(id) = assigned else { continue };
            let Some(track) = self.live.get_mut(id) else {
                continue;
            };
            let person = persons[det];
            seen.tracks[det] = Some(track.track_id.clone());
            if det < detected {
                track.frames += 1;
            }
            track.last_seen = frame.captured_at;
            track.last_frame = frame.clone();
            track.last_frame_number = frame_number;
            track.last_box = norm(&person);
            track.last_score = person.score;
            visit_zones(
                &mut track.zones,
                &track.inside,
                &zones[det],
                frame.captured_at,
            );
            track.inside = zones[det].clone();
            for face in faces {
                if !in_head(&person, &face.bbox) {
                    continue;
                }
                let quality = face_quality(face, frame.image.height);
                if seen.faces.get(id).is_none_or(|(q, _)| quality > *q) {
                    seen.faces.insert(*id, (quality, face.clone()));
                }
            }
        }
        seen
    }

    /// The tracks among `faces` whose face wants a descriptor in frame `frame_number` (see
    /// [`describe_due`]); a face that came described is not asked again.
    pub fn due(
        &self,
        faces: &HashMap<TrackId, FaceSeen>,
        frame_number: u64,
        every: u32,
    ) -> Vec<TrackId> {
        faces
            .iter()
            .filter(|(id, (quality, face))| {
                face.embedding.is_none()
                    && self.live.get(id).is_some_and(|track| {
                        describe_due(
                            track.descriptors,
                            track.last_described,
                            track.best_face.as_ref().map(|b| b.quality),
                            *quality,
                            frame_number,
                            every,
                        )
                    })
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Records the faces of `faces` that have a descriptor now: each counts as its track's
    /// latest and becomes its best when it is clearer. Returns `(track, box, descriptor)` for
    /// the gallery.
    pub fn described(
        &mut self,
        faces: HashMap<TrackId, FaceSeen>,
        frame: &Frame,
        frame_number: u64,
    ) -> Vec<(TrackId, Scored, Vec<f32>)> {
        let mut described = Vec::new();
        for (id, (quality, face)) in faces {
            let (Some(embedding), Some(track)) = (face.embedding, self.live.get_mut(&id)) else {
                continue;
            };
            track.last_described = Some(frame_number);
            track.descriptors += 1;
            if track.best_face.as_ref().is_none_or(|b| quality > b.quality) {
                track.best_face = Some(FaceCandidate {
                    quality,
                    image: frame.image.clone(),
                    bbox: face.bbox,
                    at: frame.captured_at,
                    embedding: embedding.clone(),
                });
            }
            described.push((id, face.bbox, embedding));
        }
        described
    }

    /// Compares the face of track `id` with the gallery: a first match with a subject is
    /// returned as a `subject.matched` for the caller to complete with its crop and frame and
    /// record; a watch-listed match is a person-of-interest finding; with the `authorised`
    /// feature, a track whose face matched no authorised subject after two checks is an
    /// `unauthorised` finding (once per track).
    pub fn identify(
        &mut self,
        id: TrackId,
        embedding: &[f32],
        gallery: &Gallery,
        camera_id: &str,
        features: &CameraFeatures,
        settings: &CalibrationSettings,
    ) -> (Vec<Finding>, Vec<SubjectMatched>) {
        let Some(track) = self.live.get_mut(&id) else {
            return (vec![], vec![]);
        };
        if gallery.is_empty() && !features.authorised {
            return (vec![], vec![]);
        }
        track.face_checks += 1;
        let mut findings = vec![];
        let mut matches = vec![];
        let identity = gallery.identify(
            embedding,
            settings.face_match_distance,
            settings.face_match_margin,
            |_| true,
        );
        if let Identity::Match {
            subject_id,
            distance,
            second,
        } = identity
            && let Some(subject) = gallery.subject(&subject_id)
        {
            if subject.category == SubjectCategory::Authorised {
                track.authorised = true;
            }
            if !track.matched.contains(&subject_id) {
                track.matched.push(subject_id.clone());
                matches.push(SubjectMatched {
                    match_id: Uuid::now_v7().to_string(),
                    subject_id: subject_id.clone(),
                    subject_name: subject.name.clone(),
                    category: subject.category,
                    camera_id: camera_id.to_string(),
                    track_id: track.track_id.clone(),
                    distance,
                    second_distance: second,
                    crop: String::new(),
                    frame: FrameRef {
                        persons: vec![],
                        blob: String::new(),
                        frame_number: 0,
                        at: track.last_seen,
                    },
                });
                if subject.category == SubjectCategory::Watchlist {
                    findings.push(crate::rules::person_of_interest(
                        features,
                        settings,
                        &track.track_id,
                        &subject_id,
                        &subject.name,
                        subject.severity,
                        distance,
                        second,
                    ));
                }
            }
        }
        if features.authorised
            && !track.authorised
            && !track.unauthorised_raised
            && track.face_checks >= 2
        {
            track.unauthorised_raised = true;
            let nearest = match gallery.identify(
                embedding,
                settings.face_match_distance,
                settings.face_match_margin,
                |s| s.category == SubjectCategory::Authorised,
            ) {
                Identity::Match {
                    subject_id,
                    distance,
                    ..
                } => Some((subject_id, distance)),
                Identity::Unknown { nearest, .. } => nearest,
            };
            let nearest =
                nearest.and_then(|(id, d)| gallery.subject(&id).map(|s| (s.name.clone(), d)));
            findings.push(crate::rules::unauthorised(
                features,
                settings,
                &track.track_id,
                track.face_checks,
                nearest.as_ref().map(|(n, d)| (n.as_str(), *d)),
            ));
        }
        (findings, matches)
    }

    /// Stops following track `id` and hands it over to be ended ([`Track::ended`]).
    pub fn end(&mut self, id: TrackId) -> Option<Track> {
        self.live.remove(&id)
    }
}

/// An incident a camera's rules opened and may still extend.
#[derive(Debug, Clone)]
struct OpenIncident {
    id: String,
    /// The latest finding (keeps it open).
    last_finding: DateTime<Utc>,
    /// The latest evidence recorded.
    last_evidence: DateTime<Utc>,
}

/// What a finding does to the incidents a camera has open.
#[derive(Debug, Clone, PartialEq)]
pub enum FindingFate {
    /// It keeps this open incident open; too soon after its last evidence to add more.
    KeepsOpen(String),
    /// It adds evidence to this open incident ([`OpenIncidents::extended`] once recorded;
    /// when the incident was closed meanwhile, the finding opens a new one instead).
    Extends(String),
    /// It opens a new incident ([`OpenIncidents::opened`] once recorded).
    Opens,
}

/// The incidents a camera's rules opened that still take findings, by dedup key
/// (`{camera}:{rule key}`).
#[derive(Debug, Default)]
pub struct OpenIncidents {
    by_key: HashMap<String, OpenIncident>,
}

impl OpenIncidents {
    /// What a finding with `key` seen at `at` does: an incident with that key whose last
    /// finding is within the merge window takes it (and stays open); evidence is added at most
    /// every [`EVIDENCE_EVERY_SECONDS`]. Otherwise it opens one.
    pub fn fate(&mut self, key: &str, at: DateTime<Utc>, merge_seconds: f64) -> FindingFate {
        let Some(open) = self.by_key.get_mut(key) else {
            return FindingFate::Opens;
        };
        if !still_open(open.last_finding, at, merge_seconds) {
            return FindingFate::Opens;
        }
        open.last_finding = at;
        if ((at - open.last_evidence).num_milliseconds() as f64) < EVIDENCE_EVERY_SECONDS * 1e3 {
            FindingFate::KeepsOpen(open.id.clone())
        } else {
            FindingFate::Extends(open.id.clone())
        }
    }

    /// Records that evidence seen at `at` was added to the incident with `key`.
    pub fn extended(&mut self, key: &str, at: DateTime<Utc>) {
        if let Some(open) = self.by_key.get_mut(key) {
            open.last_evidence = at;
        }
    }

    /// Records that incident `id` was opened with `key` by a finding at `at`.
    pub fn opened(&mut self, key: String, id: String, at: DateTime<Utc>) {
        self.by_key.insert(
            key,
            OpenIncident {
                id,
                last_finding: at,
                last_evidence: at,
            },
        );
    }

    /// Forgets the incidents nothing extended within the merge window before `at`: they are
    /// closed to new findings.
    pub fn forget_stale(&mut self, at: DateTime<Utc>, merge_seconds: f64) {
        self.by_key
            .retain(|_, open| still_open(open.last_finding, at, merge_seconds));
    }
}

/// The dedup key of a camera's finding.
pub fn incident_key(camera_id: &str, finding: &Finding) -> String {
    format!("{camera_id}:{}", finding.dedup_key)
}

/// The `incident.opened` of incident `id`, which a finding of camera `camera_id` seen `at`
/// opens with `key` and `evidence` (its frame; none when the media folder was full).
pub fn incident_opened(
    camera_id: &str,
    id: &str,
    key: String,
    finding: Finding,
    evidence: &[FrameRef],
    at: DateTime<Utc>,
) -> IncidentOpened {
    IncidentOpened {
        incident_id: id.to_string(),
        kind: finding.kind,
        severity: finding.severity,
        confidence: finding.confidence.clamp(0.0, 1.0),
        camera_id: Some(camera_id.to_string()),
        zone: finding.zone,
        reasoning: finding.reasoning,
        subjects: IncidentSubjects {
            track_ids: finding.track_ids,
            subject_id: None,
        },
        recommended_actions: finding
            .recommended_actions
            .iter()
            .map(|a| a.as_str().to_string())
            .collect(),
        evidence: evidence.to_vec(),
        dedup_key: key,
        source: format!("rule:{}", finding.kind.as_str()),
        observed_at: at,
    }
}

/// The `incident.evidence_added` a finding seen `at` adds to incident `id` with `evidence`.
pub fn evidence_added(
    id: &str,
    finding: &Finding,
    evidence: &[FrameRef],
    at: DateTime<Utc>,
) -> IncidentEvidenceAdded {
    IncidentEvidenceAdded {
        incident_id: id.to_string(),
        confidence: finding.confidence.clamp(0.0, 1.0),
        reasoning: finding.reasoning.clone(),
        track_ids: finding.track_ids.clone(),
        evidence: evidence.to_vec(),
        observed_at: at,
    }
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

    fn started(camera: &str, track: &str, s: i64) -> AppearanceStarted {
        AppearanceStarted {
            camera_id: camera.into(),
            track_id: track.into(),
            started_at: at(s),
            bbox: NormBox {
                x1: 0.1,
                y1: 0.2,
                x2: 0.3,
                y2: 0.9,
            },
            score: 0.8,
            entry_frame: FrameRef {
                blob: "ab".repeat(32),
                frame_number: 7,
                at: at(s),
                persons: vec![],
            },
            zones: zones(&["door"]),
        }
    }

    #[test]
    fn open_tracks_are_those_started_and_not_ended_per_camera() {
        use vigil_schemas::AppearanceEvent;
        let mut open = OpenTracks::default();
        open.apply(&AppearanceEvent::Started(started("a", "t2", 5)));
        open.apply(&AppearanceEvent::Started(started("a", "t1", 1)));
        open.apply(&AppearanceEvent::Started(started("a", "t3", 9)));
        open.apply(&AppearanceEvent::Started(started("b", "t4", 2)));
        open.apply(&AppearanceEvent::Ended(interrupted(&started("a", "t3", 9))));
        // An end without its start (folded from the middle of the log) changes nothing.
        open.apply(&AppearanceEvent::Ended(interrupted(&started("c", "t9", 9))));
        assert_eq!(open.len(), 3);
        let a = open.take("a");
        assert_eq!(
            a.iter().map(|s| s.track_id.as_str()).collect::<Vec<_>>(),
            ["t1", "t2"],
            "oldest first, the ended one gone"
        );
        assert!(open.take("a").is_empty(), "taken once");
        assert_eq!(open.len(), 1);
        open.restore(a);
        assert_eq!(open.len(), 3);
        let mut cameras: Vec<&str> = open.cameras().collect();
        cameras.sort();
        assert_eq!(cameras, ["a", "b"]);
        assert_eq!(open.take("b").len(), 1);
        open.take("a");
        assert!(open.is_empty());
    }

    #[test]
    fn an_interrupted_track_ends_where_it_started() {
        let s = started("a", "t1", 4);
        let e = interrupted(&s);
        assert_eq!((e.started_at, e.ended_at), (at(4), at(4)));
        assert_eq!(e.exit_frame, s.entry_frame);
        assert_eq!(e.last_bbox, s.bbox);
        assert_eq!((e.frames, e.dwell_seconds), (1, 0.0));
        assert_eq!(e.zones.len(), 1);
        assert_eq!(
            (e.zones[0].zone.as_str(), e.zones[0].exited_at),
            ("door", at(4))
        );
        assert!(e.best_face.is_none());
        assert_eq!(e.reason, "interrupted");
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

    #[test]
    fn a_track_is_described_twice_then_only_when_its_face_is_clearer_and_never_too_often() {
        // The first look, at once.
        assert!(describe_due(0, None, None, 0.3, 7, 10));
        // The second look, not before `every` frames.
        assert!(!describe_due(1, Some(7), Some(0.3), 0.2, 16, 10));
        assert!(describe_due(1, Some(7), Some(0.3), 0.2, 17, 10));
        // Then only a clearer face.
        assert!(!describe_due(2, Some(17), Some(0.3), 0.3, 40, 10));
        assert!(describe_due(2, Some(17), Some(0.3), 0.35, 40, 10));
        assert!(!describe_due(2, Some(35), Some(0.3), 0.9, 40, 10));
        // A person standing in view for a minute at 5 fps whose face never gets clearer: two.
        let (mut described, mut last, mut best) = (0, None, None::<f32>);
        for frame in 0..300 {
            if describe_due(described, last, best, 0.5, frame, 10) {
                described += 1;
                last = Some(frame);
                best = Some(best.map_or(0.5, |b: f32| b.max(0.5)));
            }
        }
        assert_eq!(described, 2);
    }

    fn frame(s: i64) -> Frame {
        Frame {
            image: Arc::new(RgbImage {
                width: 100,
                height: 100,
                data: vec![0; 100 * 100 * 3],
            }),
            captured_at: at(s),
        }
    }

    fn scored(x1: f32, y1: f32, x2: f32, y2: f32, score: f32) -> Scored {
        Scored {
            x1,
            y1,
            x2,
            y2,
            score,
        }
    }

    /// A face at the top of `person`, `pixels` tall in a 100-pixel frame, described or not.
    fn face(person: &Scored, pixels: f32, embedding: Option<Vec<f32>>) -> FoundFace {
        let (cx, top) = ((person.x1 + person.x2) / 2.0, person.y1 + 0.02);
        let h = pixels / 100.0;
        FoundFace {
            bbox: scored(cx - h / 2.0, top, cx + h / 2.0, top + h, 0.9),
            embedding,
            landmarks: vec![],
        }
    }

    fn entry(frame_number: u64, s: i64) -> FrameRef {
        FrameRef {
            persons: vec![],
            blob: format!("entry-{frame_number}"),
            frame_number,
            at: at(s),
        }
    }

    #[test]
    fn a_track_is_followed_from_its_start_through_held_frames_to_its_end() {
        let mut tracks = Appearances::default();
        let person = scored(0.2, 0.1, 0.4, 0.9, 0.8);
        let started = tracks.start(
            "cam",
            7,
            "t-7".into(),
            &person,
            zones(&["door"]),
            &frame(0),
            entry(1, 0),
        );
        assert_eq!((started.track_id.as_str(), started.score), ("t-7", 0.8));
        assert_eq!(started.zones, zones(&["door"]));
        assert_eq!(started.entry_frame.blob, "entry-1");

        // Seen at 2 s, walking from the door to the desk, with its face in view; a second
        // person nobody tracks yet is left alone.
        let moved = scored(0.3, 0.1, 0.5, 0.9, 0.7);
        let small = face(&moved, 40.0, None);
        let seen = tracks.see(
            &[Some(7), None],
            &[moved, scored(0.7, 0.1, 0.9, 0.9, 0.9)],
            &[zones(&["door", "desk"]), vec![]],
            2,
            std::slice::from_ref(&small),
            &frame(2),
            2,
        );
        assert_eq!(seen.tracks, vec![Some("t-7".to_string()), None]);
        let (quality, _) = seen.faces[&7];
        assert!(
            (quality - 0.9 * 0.5).abs() < 1e-6,
            "score × size: {quality}"
        );
        assert_eq!(tracks.due(&seen.faces, 2, 10), vec![7]);

        // Its descriptor came: the face is the track's best and goes to the gallery.
        let mut faces = seen.faces;
        faces.get_mut(&7).unwrap().1.embedding = Some(vec![1.0; 4]);
        let described = tracks.described(faces, &frame(2), 2);
        assert_eq!(described.len(), 1);
        assert_eq!(described[0].2, vec![1.0; 4]);
        // Not again within ten frames, even clearer.
        let clear = face(&moved, 90.0, None);
        let seen = tracks.see(
            &[Some(7)],
            &[moved],
            &[zones(&["desk"])],
            1,
            &[clear],
            &frame(3),
            3,
        );
        assert!(tracks.due(&seen.faces, 3, 10).is_empty());

        // Held where it was at 4 s (not looked for): scored as last detected, not counted as
        // a detection.
        let held = tracks.held(&[
            (
                7,
                TrackBox {
                    x1: 0.3,
                    y1: 0.1,
                    x2: 0.5,
                    y2: 0.9,
                },
            ),
            (
                99,
                TrackBox {
                    x1: 0.0,
                    y1: 0.0,
                    x2: 0.1,
                    y2: 0.1,
                },
            ),
        ]);
        assert_eq!(held.len(), 1, "a track not followed is not held");
        assert_eq!(held[0].1.score, 0.7);
        tracks.see(
            &[Some(7)],
            &[held[0].1],
            &[zones(&["desk"])],
            0,
            &[],
            &frame(4),
            4,
        );

        let track = tracks.end(7).expect("followed");
        assert!(tracks.end(7).is_none(), "ended once");
        assert_eq!(track.last_frame().1, 4);
        assert_eq!(track.best_face().map(|f| f.quality), Some(quality));
        let ended = track.ended("cam", Some("exit".into()), None, "lost");
        assert_eq!((ended.frames, ended.dwell_seconds), (2, 4.0));
        assert_eq!(
            (
                ended.exit_frame.frame_number,
                ended.exit_frame.blob.as_str()
            ),
            (4, "exit")
        );
        let visits: Vec<_> = ended
            .zones
            .iter()
            .map(|v| (v.zone.as_str(), v.entered_at, v.exited_at))
            .collect();
        assert_eq!(visits, vec![("door", at(0), at(2)), ("desk", at(2), at(4))]);
    }

    fn enrolled(id: &str, category: SubjectCategory, embedding: Vec<f32>) -> Gallery {
        let mut gallery = Gallery::default();
        gallery.apply(&vigil_schemas::SubjectEvent::Enrolled(
            vigil_schemas::events::SubjectEnrolled {
                subject_id: id.into(),
                name: id.to_uppercase(),
                category,
                severity: None,
                notes: String::new(),
                faces: vec![vigil_schemas::events::SubjectFace {
                    face_id: format!("{id}-f"),
                    crop: String::new(),
                    bbox: norm(&scored(0.0, 0.0, 1.0, 1.0, 1.0)),
                    score: 1.0,
                    embedding,
                }],
            },
        ));
        gallery
    }

    fn unit(axis: usize) -> Vec<f32> {
        let mut v = vec![0.0; 128];
        v[axis] = 1.0;
        v
    }

    fn followed() -> Appearances {
        let mut tracks = Appearances::default();
        let person = scored(0.2, 0.1, 0.4, 0.9, 0.8);
        tracks.start(
            "cam",
            1,
            "t-1".into(),
            &person,
            vec![],
            &frame(0),
            entry(1, 0),
        );
        tracks
    }

    #[test]
    fn a_watch_listed_face_is_matched_once_per_track_and_raises_a_person_of_interest() {
        let gallery = enrolled("ann", SubjectCategory::Watchlist, unit(0));
        let mut tracks = followed();
        let features = CameraFeatures::default();
        let settings = CalibrationSettings::default();
        let (findings, matches) =
            tracks.identify(1, &unit(0), &gallery, "cam", &features, &settings);
        assert_eq!(matches.len(), 1);
        assert_eq!(
            (matches[0].subject_id.as_str(), matches[0].track_id.as_str()),
            ("ann", "t-1")
        );
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].track_ids, vec!["t-1".to_string()]);
        let (findings, matches) =
            tracks.identify(1, &unit(0), &gallery, "cam", &features, &settings);
        assert!(findings.is_empty() && matches.is_empty(), "once per track");
        // A stranger's face matches nobody.
        let (findings, matches) =
            tracks.identify(1, &unit(5), &gallery, "cam", &features, &settings);
        assert!(findings.is_empty() && matches.is_empty());
    }

    #[test]
    fn an_unknown_face_on_an_authorised_only_camera_is_raised_after_two_checks_once() {
        let gallery = enrolled("bob", SubjectCategory::Authorised, unit(1));
        let features = CameraFeatures {
            authorised: true,
            ..CameraFeatures::default()
        };
        let settings = CalibrationSettings::default();
        let mut stranger = followed();
        let raised = |tracks: &mut Appearances| {
            tracks
                .identify(1, &unit(5), &gallery, "cam", &features, &settings)
                .0
                .len()
        };
        assert_eq!(raised(&mut stranger), 0, "one look is not enough");
        assert_eq!(raised(&mut stranger), 1);
        assert_eq!(raised(&mut stranger), 0, "once per track");
        // Bob is let be, however often he is looked at.
        let mut bob = followed();
        for _ in 0..3 {
            let (findings, _) = bob.identify(1, &unit(1), &gallery, "cam", &features, &settings);
            assert!(findings.is_empty());
        }
    }

    #[test]
    fn findings_extend_an_open_incident_with_evidence_every_five_seconds_until_it_goes_quiet() {
        let mut open = OpenIncidents::default();
        assert_eq!(open.fate("cam:fall:1", at(0), 30.0), FindingFate::Opens);
        open.opened("cam:fall:1".into(), "inc".into(), at(0));
        assert_eq!(
            open.fate("cam:fall:1", at(3), 30.0),
            FindingFate::KeepsOpen("inc".into())
        );
        assert_eq!(
            open.fate("cam:fall:1", at(5), 30.0),
            FindingFate::Extends("inc".into())
        );
        // Not recorded yet (say it failed): the next finding tries again.
        assert_eq!(
            open.fate("cam:fall:1", at(6), 30.0),
            FindingFate::Extends("inc".into())
        );
        open.extended("cam:fall:1", at(6));
        assert_eq!(
            open.fate("cam:fall:1", at(8), 30.0),
            FindingFate::KeepsOpen("inc".into())
        );
        // Another key is another incident.
        assert_eq!(open.fate("cam:fall:2", at(8), 30.0), FindingFate::Opens);
        // Findings at 8 s kept it open until 38 s (and its evidence is old by then);
        // forgotten after.
        open.forget_stale(at(38), 30.0);
        assert_eq!(
            open.fate("cam:fall:1", at(38), 30.0),
            FindingFate::Extends("inc".into())
        );
        open.forget_stale(at(69), 30.0);
        assert_eq!(open.fate("cam:fall:1", at(69), 30.0), FindingFate::Opens);
    }
}
