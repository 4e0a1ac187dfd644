//! One camera's actor: takes sampled frames from its source, has the inference pool analyse
//! them, tracks persons, and records each track's start and end (`track-{camera}-{track}`)
//! with its frames and best face in the blob store.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use chrono::{DateTime, Utc};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use uuid::Uuid;
use vigil_schemas::events::{
    AppearanceEnded, AppearanceStarted, BestFace, FrameRef, IncidentEvidenceAdded, IncidentOpened,
    IncidentSubjects, NormBox, SubjectCategory, SubjectMatched, ZoneVisit, track_stream,
};
use vigil_schemas::{AppearanceEvent, DomainEvent, EventMeta, ExpectedVersion};

use crate::aggregates::incident::{Incident, IncidentCommand, IncidentError};
use crate::aggregates::subject::{Subject, SubjectCommand, SubjectError};
use crate::appearances::{first_visits, in_head, still_open, visit_zones};
use crate::frame::{Frame, RgbImage, encode_jpeg};
use crate::gallery::Identity;
use crate::geometry::in_polygon;
use crate::motion::MotionDetector;
use crate::node::{CameraRuntime, CameraSpec, Ingest, MotionSeen};
use crate::pool::{Analysis, FoundFace, PoolError, Scored, Want};
use crate::rules::{Finding, Observation, PersonObs, RuleEngine};
use crate::source::{FrameOutcome, FrameSlot, SourceError, SourceFrame};
use crate::tracker::{EndedTrack, TrackBox, TrackId, Tracker};

/// JPEG quality of stored frames and crops.
const JPEG_QUALITY: u8 = 85;
/// An open incident takes new evidence (an event with a frame) at most this often; findings
/// in between only keep it open.
const EVIDENCE_EVERY_SECONDS: f64 = 5.0;

/// Where the person detector looks in a sampled frame ([`CameraState::look`]).
#[derive(Debug, Clone, PartialEq)]
enum Look {
    /// Nowhere: nothing moved and no track is alive.
    Nowhere,
    /// Nowhere, but live tracks are held where they are: nothing moved near any of them.
    Hold,
    /// The whole frame.
    Whole,
    /// These regions, in frame pixels `(x, y, w, h)`.
    Regions(Vec<[f32; 4]>),
}

impl Look {
    /// Its regions normalised to a `width × height` frame; none unless it is
    /// [`Look::Regions`].
    fn normalised(&self, width: u32, height: u32) -> Vec<NormBox> {
        let (fw, fh) = (width as f32, height as f32);
        match self {
            Look::Regions(regions) => regions
                .iter()
                .map(|&[x, y, w, h]| NormBox {
                    x1: x / fw,
                    y1: y / fh,
                    x2: (x + w) / fw,
                    y2: (y + h) / fh,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// While a track is held without a detection, the whole frame is analysed at least this often
/// (more often than `motion_refresh_seconds` when that is longer), so one who left unseen ends.
pub const HOLD_CONFIRM_SECONDS: f64 = 10.0;

/// What a camera actor calls when its camera receives its first frame since the actor
/// started, with the camera's id.
pub type OnOnline = Arc<dyn Fn(&str) + Send + Sync>;

/// Messages of a camera actor.
#[derive(Debug)]
pub enum CameraMsg {
    /// A frame waits in the slot.
    FrameReady,
    /// The source stopped with an error: the actor fails, its supervisor restarts it. A
    /// video file's end ([`SourceError::Finished`]) ends the actor instead.
    SourceFailed(SourceError),
    /// A test hook: panic while handling a message (the supervision tests' failure).
    #[doc(hidden)]
    Panic(String),
}

/// The camera actor.
pub struct CameraActor;

struct Live {
    id: TrackId,
    track_id: String,
    started_at: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    last_frame: Frame,
    last_frame_number: u64,
    last_box: NormBox,
    last_score: f32,
    frames: u32,
    zones: Vec<ZoneVisit>,
    inside: Vec<String>,
    best_face: Option<FaceCandidate>,
    /// Descriptors of this person's face compared with the gallery.
    face_checks: u32,
    /// Descriptors computed of its face.
    descriptors: u32,
    /// Frame number of its latest descriptor.
    last_described: Option<u64>,
    /// Subjects this track's face matched (each recorded once).
    matched: Vec<String>,
    /// Its face matched an authorised subject.
    authorised: bool,
    /// The authorised rule already raised its incident for this track.
    unauthorised_raised: bool,
}

/// An incident this camera's rules opened and may still extend.
struct OpenIncident {
    id: String,
    /// The latest finding (keeps it open).
    last_finding: DateTime<Utc>,
    /// The latest evidence recorded.
    last_evidence: DateTime<Utc>,
}

/// The clearest face of a track so far, with the frame it is in.
struct FaceCandidate {
    quality: f32,
    image: Arc<RgbImage>,
    bbox: Scored,
    at: DateTime<Utc>,
    embedding: Vec<f32>,
}

/// State of a running camera actor.
pub struct CameraState {
    ingest: Arc<Ingest>,
    spec: CameraSpec,
    /// Told when the camera receives its first frame since the actor started (the
    /// supervisor then starts its backoff over).
    on_online: OnOnline,
    runtime: Arc<CameraRuntime>,
    slot: Arc<FrameSlot>,
    pump: tokio::task::JoinHandle<()>,
    tracker: Tracker,
    live: HashMap<TrackId, Live>,
    t0: Option<DateTime<Utc>>,
    frame_number: u64,
    online: bool,
    rules: RuleEngine,
    /// By dedup key (`{camera}:{rule key}`).
    incidents: HashMap<String, OpenIncident>,
    /// Global position of the last event appended while handling the current frame.
    appended: Option<u64>,
    /// Finds what moves, before any model runs.
    motion: MotionDetector,
    /// Capture time of the last frame the models analysed whole.
    last_whole: Option<DateTime<Utc>>,
}

impl Drop for CameraState {
    fn drop(&mut self) {
        self.pump.abort();
        self.runtime.running.store(false, Ordering::Relaxed);
        self.runtime.counters.persons.store(0, Ordering::Relaxed);
    }
}

/// How good a face is to describe: detector score × size (full at 80 pixels tall) × how
/// squarely it faces the camera ([`vigil_models::faces::frontalness`]).
fn face_quality(face: &FoundFace, frame_height: u32) -> f32 {
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

fn norm(b: &Scored) -> NormBox {
    NormBox {
        x1: b.x1,
        y1: b.y1,
        x2: b.x2,
        y2: b.y2,
    }
}

impl Actor for CameraActor {
    type Msg = CameraMsg;
    type State = CameraState;
    type Arguments = (Arc<Ingest>, CameraSpec, OnOnline);

    async fn pre_start(
        &self,
        myself: ActorRef<CameraMsg>,
        (ingest, spec, on_online): Self::Arguments,
    ) -> Result<CameraState, ActorProcessingErr> {
        let runtime = ingest.runtime(&spec.id);
        runtime.running.store(true, Ordering::Relaxed);
        let slot = Arc::new(FrameSlot::default());
        let pump = {
            let (slot, runtime) = (slot.clone(), runtime.clone());
            let opened = ingest.sources.open(
                &spec.id,
                &spec.source,
                spec.sample_fps,
                runtime.counters.clone(),
            );
            let actor = myself.clone();
            tokio::spawn(async move {
                let mut source = match opened {
                    Ok(source) => source,
                    Err(e) => {
                        let _ = actor.cast(CameraMsg::SourceFailed(e));
                        return;
                    }
                };
                loop {
                    match source.next_frame().await {
                        Ok(frame) => {
                            *runtime.source.lock().expect("lock") = source.describe();
                            match slot.put(frame) {
                                None => {
                                    if actor.cast(CameraMsg::FrameReady).is_err() {
                                        return;
                                    }
                                }
                                Some(old) => {
                                    runtime.counters.dropped.fetch_add(1, Ordering::Relaxed);
                                    if let Some(reply) = old.reply {
                                        let _ = reply.send(FrameOutcome::failed(
                                            "replaced by a newer frame before analysis".into(),
                                        ));
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            let _ = actor.cast(CameraMsg::SourceFailed(e));
                            return;
                        }
                    }
                }
            })
        };
        Ok(CameraState {
            tracker: Tracker::new(ingest.tracker),
            ingest,
            spec,
            on_online,
            runtime,
            slot,
            pump,
            live: HashMap::new(),
            t0: None,
            frame_number: 0,
            online: false,
            rules: RuleEngine::new(),
            incidents: HashMap::new(),
            appended: None,
            motion: MotionDetector::new(),
            last_whole: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<CameraMsg>,
        message: CameraMsg,
        state: &mut CameraState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            CameraMsg::FrameReady => {
                let Some(frame) = state.slot.try_take() else {
                    return Ok(());
                };
                state.process(frame).await
            }
            CameraMsg::SourceFailed(SourceError::Finished(why)) => {
                // Every frame before the end was handed over (and, with `realtime=false`,
                // analysed) before this message: nothing is left behind.
                state.end_all("ended").await;
                *state.runtime.finished.lock().expect("lock") = Some(why);
                myself.stop(Some("the video file ended".into()));
                Ok(())
            }
            CameraMsg::SourceFailed(e) => {
                state.end_all("lost").await;
                Err(Box::new(e))
            }
            CameraMsg::Panic(why) => panic!("{why}"),
        }
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<CameraMsg>,
        state: &mut CameraState,
    ) -> Result<(), ActorProcessingErr> {
        state.pump.abort();
        state.end_all("stopped").await;
        Ok(())
    }
}

impl CameraState {
    /// Notes that an event was appended at `position` for the frame being handled.
    fn appended_at(&mut self, position: Option<u64>) {
        self.appended = self.appended.max(position);
    }

    fn meta(&self) -> EventMeta {
        EventMeta {
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            actor: format!("camera:{}", self.spec.id),
        }
    }

    async fn process(&mut self, taken: SourceFrame) -> Result<(), ActorProcessingErr> {
        let started = Instant::now();
        self.appended = None;
        let SourceFrame {
            frame,
            reply,
            uploaded,
        } = taken;
        if !self.online {
            self.online = true;
            let reason = format!(
                "receiving frames: {}",
                self.runtime.source.lock().expect("lock")
            );
            self.ingest
                .report_status(
                    &self.spec.id,
                    vigil_schemas::events::CameraStatus::Online,
                    reason,
                )
                .await?;
            (self.on_online)(&self.spec.id);
        }
        let settings = self.ingest.calibration_for(&self.spec.id);
        let look = self.look(&frame, uploaded, &settings).await?;
        if look == Look::Nowhere {
            self.runtime.counters.still.fetch_add(1, Ordering::Relaxed);
            self.runtime.handled(frame);
            if let Some(reply) = reply {
                let _ = reply.send(FrameOutcome {
                    sampled: true,
                    processing_ms: started.elapsed().as_secs_f64() * 1e3,
                    ..FrameOutcome::default()
                });
            }
            return Ok(());
        }
        // A pushed frame's caller gets every face with its descriptor; a camera's own frames
        // have faces sought in persons' heads and described per track below.
        let want = Want {
            faces: true,
            always_faces: uploaded,
            embeddings: uploaded,
            face_min_pixels: settings.face_min_person_pixels,
            person_regions: match &look {
                Look::Regions(regions) => Some(regions.clone()),
                _ => None,
            },
        };
        let observed: Option<Vec<TrackBox>> = match &look {
            Look::Hold => Some(Vec::new()),
            Look::Regions(_) => Some(
                look.normalised(frame.image.width, frame.image.height)
                    .into_iter()
                    .map(|b| TrackBox {
                        x1: b.x1,
                        y1: b.y1,
                        x2: b.x2,
                        y2: b.y2,
                    })
                    .collect(),
            ),
            _ => None,
        };
        let analysis = if look == Look::Hold {
            Analysis::default()
        } else {
            match self.ingest.pool.analyze(frame.image.clone(), want).await {
                Ok(a) => a,
                Err(PoolError::Busy(n)) => {
                    self.runtime
                        .counters
                        .dropped
                        .fetch_add(1, Ordering::Relaxed);
                    if let Some(reply) = reply {
                        let _ = reply.send(FrameOutcome::failed(format!(
                            "the inference queue is full ({n} frames waiting)"
                        )));
                    }
                    return Ok(());
                }
                Err(e) => {
                    if let Some(reply) = reply {
                        let _ = reply.send(FrameOutcome::failed(e.to_string()));
                    }
                    self.end_all("lost").await;
                    return Err(Box::new(e));
                }
            }
        };
        if look == Look::Whole {
            self.last_whole = Some(frame.captured_at);
        }
        self.frame_number += 1;
        let t0 = *self.t0.get_or_insert(frame.captured_at);
        let t = (frame.captured_at - t0).num_microseconds().unwrap_or(0) as f64 / 1e6;
        let boxes: Vec<TrackBox> = analysis
            .persons
            .iter()
            .map(|p| TrackBox {
                x1: p.x1,
                y1: p.y1,
                x2: p.x2,
                y2: p.y2,
            })
            .collect();
        let mut update = self.tracker.update_in(t, &boxes, observed.as_deref());
        // Held tracks are still in view: the rules see them where they were.
        let mut persons = analysis.persons.clone();
        for (id, b) in std::mem::take(&mut update.held) {
            let Some(live) = self.live.get(&id) else {
                continue;
            };
            persons.push(Scored {
                x1: b.x1,
                y1: b.y1,
                x2: b.x2,
                y2: b.y2,
                score: live.last_score,
            });
            update.assigned.push(Some(id));
        }
        self.runtime
            .counters
            .persons
            .store(self.tracker.active() as u64, Ordering::Relaxed);
        let mut outcome = FrameOutcome {
            sampled: true,
            tracks: vec![None; persons.len()],
            ..FrameOutcome::default()
        };

        // Tracks confirmed now.
        let mut entry_blob: Option<String> = None;
        for (id, det) in &update.started {
            let blob = match &entry_blob {
                Some(b) => b.clone(),
                None => {
                    let b = self.store_frame(&frame.image).await?;
                    entry_blob = Some(b.clone());
                    b
                }
            };
            let track_id = Uuid::now_v7().to_string();
            let person = &persons[*det];
            let zones = self.zones_at(person);
            let started_event = AppearanceEvent::Started(AppearanceStarted {
                camera_id: self.spec.id.clone(),
                track_id: track_id.clone(),
                started_at: frame.captured_at,
                bbox: norm(person),
                score: person.score,
                entry_frame: FrameRef {
                    blob,
                    frame_number: self.frame_number,
                    at: frame.captured_at,
                },
                zones: zones.clone(),
            });
            let done = self
                .ingest
                .handler
                .store()
                .append(
                    &track_stream(&self.spec.id, &track_id),
                    ExpectedVersion::NoStream,
                    vec![started_event.to_new_event(frame.captured_at, &self.meta())],
                )
                .await?;
            self.appended_at(Some(done.last_position));
            outcome.started.push(track_id.clone());
            self.live.insert(
                *id,
                Live {
                    id: *id,
                    track_id,
                    started_at: frame.captured_at,
                    last_seen: frame.captured_at,
                    last_frame: frame.clone(),
                    last_frame_number: self.frame_number,
                    last_box: norm(person),
                    last_score: person.score,
                    frames: 0,
                    zones: first_visits(&zones, frame.captured_at),
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
        }

        // Every confirmed track seen in this frame, with the clearest face in its box.
        let mut faces_seen: HashMap<TrackId, (f32, FoundFace)> = HashMap::new();
        for (det, assigned) in update.assigned.iter().enumerate() {
            let Some(id) = assigned else { continue };
            let person = persons[det];
            let zones = self.zones_at(&person);
            let Some(live) = self.live.get_mut(id) else {
                continue;
            };
            outcome.tracks[det] = Some(live.track_id.clone());
            // Held tracks (after the detections) were not detected in this frame.
            if det < analysis.persons.len() {
                live.frames += 1;
            }
            live.last_seen = frame.captured_at;
            live.last_frame = frame.clone();
            live.last_frame_number = self.frame_number;
            live.last_box = norm(&person);
            live.last_score = person.score;
            visit_zones(&mut live.zones, &live.inside, &zones, frame.captured_at);
            live.inside = zones;
            // The clearest face inside the upper part of this person's box.
            for face in &analysis.faces {
                if !in_head(&person, &face.bbox) {
                    continue;
                }
                let quality = face_quality(face, frame.image.height);
                if faces_seen.get(id).is_none_or(|(q, _)| quality > *q) {
                    faces_seen.insert(*id, (quality, face.clone()));
                }
            }
        }
        let described = self
            .describe_faces(&frame, &mut faces_seen, &settings)
            .await;
        let observation = Observation {
            at: frame.captured_at,
            width: frame.image.width,
            height: frame.image.height,
            persons: persons
                .iter()
                .zip(&outcome.tracks)
                .map(|(p, track)| PersonObs {
                    track_id: track.clone(),
                    bbox: norm(p),
                    score: p.score,
                    zones: self.zones_at(p),
                })
                .collect(),
            camera_zones: self.spec.zones.iter().map(|z| z.name.clone()).collect(),
        };
        let mut findings = self
            .rules
            .observe(&self.spec.features, &settings, &observation);
        let mut matches = vec![];
        for (id, bbox, embedding) in described {
            let (face_findings, face_matches) = self.identify_face(id, &embedding, &settings);
            findings.extend(face_findings);
            matches.extend(face_matches.into_iter().map(|m| (m, bbox)));
        }
        if !findings.is_empty() || !matches.is_empty() {
            let blob = match entry_blob {
                Some(b) => b,
                None => self.store_frame(&frame.image).await?,
            };
            let evidence = FrameRef {
                blob,
                frame_number: self.frame_number,
                at: frame.captured_at,
            };
            for (mut matched, bbox) in matches {
                let image = frame.image.clone();
                let crop = tokio::task::spawn_blocking(move || {
                    encode_jpeg(
                        &image.crop_normalised(bbox.x1, bbox.y1, bbox.x2, bbox.y2, 0.25),
                        JPEG_QUALITY,
                    )
                })
                .await?;
                matched.crop = self.ingest.blobs.put(&crop).await?;
                matched.frame = evidence.clone();
                let subject = matched.subject_id.clone();
                match self
                    .ingest
                    .handler
                    .execute::<Subject>(
                        &subject,
                        SubjectCommand::RecordMatch(matched),
                        &self.meta(),
                        None,
                    )
                    .await
                {
                    Ok(done) => {
                        self.appended_at(done.position);
                        tracing::info!(camera = %self.spec.id, %subject, "face matched an enrolled subject")
                    }
                    // Erased since the gallery was read.
                    Err(crate::CommandError::Domain(SubjectError::NotFound(_))) => {}
                    Err(e) => return Err(Box::new(e)),
                }
            }
            for finding in findings {
                if let Some(id) = self
                    .record_finding(finding, &evidence, settings.incident_merge_seconds)
                    .await?
                {
                    outcome.incidents.push(id);
                }
            }
        }
        // Incidents nothing has extended for longer than the merge window are closed to
        // new findings: forget them.
        let merge = settings.incident_merge_seconds;
        self.incidents
            .retain(|_, open| still_open(open.last_finding, frame.captured_at, merge));

        for ended in update.ended {
            if let Some(track_id) = self.end_track(&ended, "lost").await? {
                self.rules.forget_track(&track_id);
                outcome.ended.push(track_id);
            }
        }

        let counters = &self.runtime.counters;
        match look {
            Look::Hold => counters.held.fetch_add(1, Ordering::Relaxed),
            Look::Regions(_) => {
                counters.in_regions.fetch_add(1, Ordering::Relaxed);
                counters.analysed.fetch_add(1, Ordering::Relaxed)
            }
            _ => counters.analysed.fetch_add(1, Ordering::Relaxed),
        };
        self.runtime.handled(frame);
        if let Some(reply) = reply {
            outcome.analysis = Some(analysis);
            outcome.position = self.appended;
            outcome.processing_ms = started.elapsed().as_secs_f64() * 1e3;
            let _ = reply.send(outcome);
        }
        Ok(())
    }

    /// Descriptors for the tracks whose face is worth one now (see [`describe_due`]): one call
    /// to the pool for all of them (faces of a pushed frame came described). Each described
    /// face becomes its track's best when it is; returns `(track, box, descriptor)` for the
    /// gallery. A busy pool or a failure leaves them for a later frame.
    async fn describe_faces(
        &mut self,
        frame: &Frame,
        faces_seen: &mut HashMap<TrackId, (f32, FoundFace)>,
        settings: &vigil_schemas::events::CalibrationSettings,
    ) -> Vec<(TrackId, Scored, Vec<f32>)> {
        let due: Vec<TrackId> = faces_seen
            .iter()
            .filter(|(id, (quality, face))| {
                face.embedding.is_none()
                    && self.live.get(id).is_some_and(|live| {
                        describe_due(
                            live.descriptors,
                            live.last_described,
                            live.best_face.as_ref().map(|b| b.quality),
                            *quality,
                            self.frame_number,
                            settings.face_descriptor_every_frames,
                        )
                    })
            })
            .map(|(id, _)| *id)
            .collect();
        if !due.is_empty() {
            let faces = due.iter().map(|id| faces_seen[id].1.clone()).collect();
            match self.ingest.pool.describe(frame.image.clone(), faces).await {
                Ok(descriptors) => {
                    self.runtime
                        .counters
                        .faces_described
                        .fetch_add(descriptors.len() as u64, Ordering::Relaxed);
                    for (id, descriptor) in due.iter().zip(descriptors) {
                        if let Some((_, face)) = faces_seen.get_mut(id) {
                            face.embedding = Some(descriptor);
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(camera = %self.spec.id, error = %e, "no face descriptors this frame")
                }
            }
        }
        let mut described = Vec::new();
        for (id, (quality, face)) in faces_seen.drain() {
            let (Some(embedding), Some(live)) = (face.embedding, self.live.get_mut(&id)) else {
                continue;
            };
            live.last_described = Some(self.frame_number);
            live.descriptors += 1;
            if live.best_face.as_ref().is_none_or(|b| quality > b.quality) {
                live.best_face = Some(FaceCandidate {
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

    /// Runs the motion detector on `frame` and says where the person detector should look:
    /// the whole frame with gating off, for uploads, when the background was (re)started and
    /// when a whole-frame analysis is due (`motion_refresh_seconds`; every
    /// [`HOLD_CONFIRM_SECONDS`] while tracks live); nowhere when nothing moved and no track
    /// lives; otherwise around what moved, the tracks it overlaps and the tentative tracks
    /// ([`crate::regions::plan`]; the whole frame when that is as cheap, or with
    /// `person_regions` off), and nowhere but with the tracks held when nothing moved near
    /// any. Records what it saw for the API and the metrics.
    async fn look(
        &mut self,
        frame: &Frame,
        uploaded: bool,
        settings: &vigil_schemas::events::CalibrationSettings,
    ) -> Result<Look, ActorProcessingErr> {
        let mut detector = std::mem::take(&mut self.motion);
        let (image, motion_settings) =
            (frame.image.clone(), crate::rules::motion_settings(settings));
        let t = frame.captured_at.timestamp_micros() as f64 / 1e6;
        let (detector, motion) = tokio::task::spawn_blocking(move || {
            let motion = detector.observe(&image, t, &motion_settings);
            (detector, motion)
        })
        .await?;
        self.motion = detector;
        let refresh = if settings.motion_refresh_seconds > 0.0 {
            settings.motion_refresh_seconds
        } else {
            f64::INFINITY
        };
        let every = if self.tracker.is_empty() {
            refresh
        } else {
            refresh.min(HOLD_CONFIRM_SECONDS)
        };
        let whole_due = self
            .last_whole
            .is_none_or(|last| (frame.captured_at - last).as_seconds_f64() >= every);
        let look = if !settings.motion_gating || uploaded || motion.reseeded || whole_due {
            Look::Whole
        } else if !motion.moving() && self.tracker.is_empty() {
            Look::Nowhere
        } else if !settings.person_regions {
            Look::Whole
        } else {
            let since = self
                .t0
                .map_or(0.0, |t0| (frame.captured_at - t0).as_seconds_f64());
            let touches = |a: &NormBox, b: &TrackBox| {
                a.x1 < b.x2 && b.x1 < a.x2 && a.y1 < b.y2 && b.y1 < a.y2
            };
            // What moved, the tracks it touches, and every tentative track (a person who
            // appeared standing still is confirmed by the next frame, not the next whole one).
            let mut around: Vec<NormBox> = motion.boxes.clone();
            around.extend(
                self.tracker
                    .predicted(since)
                    .into_iter()
                    .filter(|(confirmed, p)| {
                        !confirmed || motion.boxes.iter().any(|m| touches(m, p))
                    })
                    .map(|(_, p)| NormBox {
                        x1: p.x1,
                        y1: p.y1,
                        x2: p.x2,
                        y2: p.y2,
                    }),
            );
            if around.is_empty() {
                Look::Hold
            } else {
                match crate::regions::plan(&around, frame.image.width, frame.image.height) {
                    Some(regions) => Look::Regions(regions),
                    None => Look::Whole,
                }
            }
        };
        if motion.moving() {
            self.runtime
                .counters
                .with_motion
                .fetch_add(1, Ordering::Relaxed);
        }
        *self.runtime.motion.lock().expect("lock") = Some(MotionSeen {
            at: frame.captured_at,
            motion,
            analysed: matches!(look, Look::Whole | Look::Regions(_)),
            regions: look.normalised(frame.image.width, frame.image.height),
        });
        Ok(look)
    }

    /// Compares the face of track `id` with the gallery: a first match with a subject is
    /// recorded (`subject.matched`, returned for the caller to store with its crop); a
    /// watch-listed match is a person-of-interest finding; with the `authorised` feature, a
    /// track whose face matched no authorised subject after two checks is an `unauthorised`
    /// finding (once per track).
    fn identify_face(
        &mut self,
        id: TrackId,
        embedding: &[f32],
        settings: &vigil_schemas::events::CalibrationSettings,
    ) -> (Vec<Finding>, Vec<SubjectMatched>) {
        let gallery = self.ingest.gallery();
        let features = self.spec.features;
        let Some(live) = self.live.get_mut(&id) else {
            return (vec![], vec![]);
        };
        if gallery.is_empty() && !features.authorised {
            return (vec![], vec![]);
        }
        live.face_checks += 1;
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
                live.authorised = true;
            }
            if !live.matched.contains(&subject_id) {
                live.matched.push(subject_id.clone());
                matches.push(SubjectMatched {
                    match_id: Uuid::now_v7().to_string(),
                    subject_id: subject_id.clone(),
                    subject_name: subject.name.clone(),
                    category: subject.category,
                    camera_id: self.spec.id.clone(),
                    track_id: live.track_id.clone(),
                    distance,
                    second_distance: second,
                    crop: String::new(),
                    frame: FrameRef {
                        blob: String::new(),
                        frame_number: 0,
                        at: live.last_seen,
                    },
                });
                if subject.category == SubjectCategory::Watchlist {
                    findings.push(crate::rules::person_of_interest(
                        &features,
                        settings,
                        &live.track_id,
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
            && !live.authorised
            && !live.unauthorised_raised
            && live.face_checks >= 2
        {
            live.unauthorised_raised = true;
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
                &features,
                settings,
                &live.track_id,
                live.face_checks,
                nearest.as_ref().map(|(n, d)| (n.as_str(), *d)),
            ));
        }
        (findings, matches)
    }

    /// Turns a finding into an incident: extends the open incident with the same key when its
    /// last finding is within the merge window, else opens one. Returns the incident's id when
    /// an event was recorded.
    async fn record_finding(
        &mut self,
        finding: Finding,
        evidence: &FrameRef,
        merge_seconds: f64,
    ) -> Result<Option<String>, ActorProcessingErr> {
        let key = format!("{}:{}", self.spec.id, finding.dedup_key);
        let at = evidence.at;
        let meta = EventMeta {
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            actor: format!("rule:{}", finding.kind.as_str()),
        };
        if let Some(open) = self.incidents.get_mut(&key)
            && still_open(open.last_finding, at, merge_seconds)
        {
            open.last_finding = at;
            if ((at - open.last_evidence).num_milliseconds() as f64) < EVIDENCE_EVERY_SECONDS * 1e3
            {
                return Ok(None);
            }
            let id = open.id.clone();
            let added = IncidentCommand::AddEvidence(IncidentEvidenceAdded {
                incident_id: id.clone(),
                confidence: finding.confidence.clamp(0.0, 1.0),
                reasoning: finding.reasoning.clone(),
                track_ids: finding.track_ids.clone(),
                evidence: vec![evidence.clone()],
                observed_at: at,
            });
            match self
                .ingest
                .handler
                .execute_at::<Incident>(&id, added, &meta, None, Some(at))
                .await
            {
                Ok(done) => {
                    open.last_evidence = at;
                    self.appended_at(done.position);
                    return Ok(Some(id));
                }
                // An operator closed or deleted it: the finding opens a new incident.
                Err(crate::CommandError::Domain(
                    IncidentError::Closed(_) | IncidentError::NotFound(_),
                )) => {}
                Err(e) => return Err(Box::new(e)),
            }
        }
        let id = Uuid::now_v7().to_string();
        let opened = IncidentCommand::Open(IncidentOpened {
            incident_id: id.clone(),
            kind: finding.kind,
            severity: finding.severity,
            confidence: finding.confidence.clamp(0.0, 1.0),
            camera_id: Some(self.spec.id.clone()),
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
            evidence: vec![evidence.clone()],
            dedup_key: key.clone(),
            source: format!("rule:{}", finding.kind.as_str()),
            observed_at: at,
        });
        // The incident happened when its frame was captured (a file camera's `start` plus the
        // frame's offset), not when it was analysed.
        let done = self
            .ingest
            .handler
            .execute_at::<Incident>(&id, opened, &meta, None, Some(at))
            .await?;
        self.appended_at(done.position);
        tracing::info!(camera = %self.spec.id, incident = %id, key = %key, "incident opened");
        self.incidents.insert(
            key,
            OpenIncident {
                id: id.clone(),
                last_finding: at,
                last_evidence: at,
            },
        );
        Ok(Some(id))
    }

    fn zones_at(&self, person: &Scored) -> Vec<String> {
        let (x, y) = (
            f64::from((person.x1 + person.x2) / 2.0),
            f64::from(person.y2),
        );
        self.spec
            .zones
            .iter()
            .filter(|z| in_polygon(x, y, &z.polygon))
            .map(|z| z.name.clone())
            .collect()
    }

    async fn store_frame(&self, image: &Arc<RgbImage>) -> Result<String, ActorProcessingErr> {
        let image = image.clone();
        let jpeg = tokio::task::spawn_blocking(move || encode_jpeg(&image, JPEG_QUALITY)).await?;
        Ok(self.ingest.blobs.put(&jpeg).await?)
    }

    /// Records the end of a confirmed track; returns its id.
    async fn end_track(
        &mut self,
        ended: &EndedTrack,
        reason: &str,
    ) -> Result<Option<String>, ActorProcessingErr> {
        let Some(live) = self.live.remove(&ended.id) else {
            return Ok(None);
        };
        debug_assert_eq!(live.id, ended.id);
        let exit_blob = self.store_frame(&live.last_frame.image).await?;
        let best_face = match live.best_face {
            Some(FaceCandidate {
                image,
                bbox,
                at,
                embedding,
                ..
            }) => {
                let crop = tokio::task::spawn_blocking(move || {
                    encode_jpeg(
                        &image.crop_normalised(bbox.x1, bbox.y1, bbox.x2, bbox.y2, 0.25),
                        JPEG_QUALITY,
                    )
                })
                .await?;
                Some(BestFace {
                    crop: self.ingest.blobs.put(&crop).await?,
                    score: bbox.score,
                    bbox: norm(&bbox),
                    at,
                    embedding,
                })
            }
            None => None,
        };
        let event = AppearanceEvent::Ended(AppearanceEnded {
            camera_id: self.spec.id.clone(),
            track_id: live.track_id.clone(),
            started_at: live.started_at,
            ended_at: live.last_seen,
            dwell_seconds: (live.last_seen - live.started_at).num_milliseconds() as f64 / 1e3,
            frames: live.frames,
            last_bbox: live.last_box,
            exit_frame: FrameRef {
                blob: exit_blob,
                frame_number: live.last_frame_number,
                at: live.last_seen,
            },
            zones: live.zones,
            best_face,
            reason: reason.to_string(),
        });
        let done = self
            .ingest
            .handler
            .store()
            .append(
                &track_stream(&self.spec.id, &live.track_id),
                ExpectedVersion::Exact(1),
                vec![event.to_new_event(Utc::now(), &self.meta())],
            )
            .await?;
        self.appended_at(Some(done.last_position));
        Ok(Some(live.track_id))
    }

    /// Ends every open track (the source was lost or ingest stopped).
    async fn end_all(&mut self, reason: &str) {
        for ended in self.tracker.finish() {
            if let Err(e) = self.end_track(&ended, reason).await {
                tracing::warn!(camera = %self.spec.id, error = %e, "could not record a track's end");
            }
        }
        self.runtime.counters.persons.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
