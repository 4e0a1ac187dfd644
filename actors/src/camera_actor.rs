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
    BestFace, ClipRecorded, FramePerson, FrameRef, NormBox, SubjectMatched, clip_stream,
    track_stream,
};
use vigil_schemas::{AppearanceEvent, ClipEvent, DomainEvent, EventMeta, ExpectedVersion};

use crate::aggregates::incident::{Incident, IncidentCommand, IncidentError};
use crate::aggregates::subject::{Subject, SubjectCommand, SubjectError};
use crate::appearances::{
    Appearances, FaceSeen, FindingFate, OpenIncidents, evidence_added, incident_key,
    incident_opened, norm,
};
use crate::clips::{Covered, FinishedClip, Recorder};
use crate::frame::{Frame, RgbImage, encode_jpeg};
use crate::geometry::in_polygon;
use crate::handler::CommandHandler;
use crate::motion::MotionDetector;
use crate::node::{CameraRuntime, CameraSpec, Ingest, MotionSeen};
use crate::pool::{Analysis, PoolError, Scored, Want};
use crate::rules::{Finding, Observation, PersonObs, RuleEngine};
use crate::source::{FrameOutcome, FrameSlot, SourceError, SourceFrame};
use crate::tracker::{EndedTrack, TrackBox, TrackId, Tracker};

/// JPEG quality of stored frames and crops.
const JPEG_QUALITY: u8 = 85;
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

/// State of a running camera actor.
pub struct CameraState {
    ingest: Arc<Ingest>,
    /// Appends its events: fenced by its lease where cameras are leased to nodes.
    handler: CommandHandler,
    /// The fencing token of its lease, where cameras are leased to nodes.
    token: Option<u64>,
    spec: CameraSpec,
    /// Told when the camera receives its first frame since the actor started (the
    /// supervisor then starts its backoff over).
    on_online: OnOnline,
    runtime: Arc<CameraRuntime>,
    slot: Arc<FrameSlot>,
    pump: tokio::task::JoinHandle<()>,
    tracker: Tracker,
    /// The confirmed tracks it follows.
    appearances: Appearances,
    t0: Option<DateTime<Utc>>,
    frame_number: u64,
    online: bool,
    rules: RuleEngine,
    /// The incidents its rules opened that still take findings.
    incidents: OpenIncidents,
    /// Global position of the last event appended while handling the current frame.
    appended: Option<u64>,
    /// Finds what moves, before any model runs.
    motion: MotionDetector,
    /// Capture time of the last frame the models analysed whole.
    last_whole: Option<DateTime<Utc>>,
    /// Cuts clips around its incidents.
    clips: Option<Recorder>,
    /// Whether the recorder encodes the frames this actor samples (its source has no
    /// compressed stream of its own).
    clips_from_frames: bool,
    /// Tracks confirmed while the media folder was full: followed (the rules see them) but
    /// not recorded, since their entry frame could not be stored; their end is not recorded
    /// either.
    unrecorded: std::collections::HashSet<String>,
    /// Set when an append found the event store unreachable: until then, events are dropped
    /// without trying.
    store_down_until: Option<Instant>,
    /// Track ends to append once the event store answers again: (stream, event).
    pending_ends: std::collections::VecDeque<(String, vigil_schemas::NewEvent)>,
}

/// A frame the actor tried to store once for the frame at hand: not yet tried, or its blob
/// (none when the media folder was full).
type Stored = Option<Option<String>>;

/// After an append finds the event store unreachable, a camera drops its events (counted) for
/// this long before it tries again, so a database outage does not stall its analysis for the
/// pool's connection timeout at every frame.
const STORE_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// Track ends waiting for the event store to answer again, at most (the oldest go first; the
/// sweep ends them at the camera's next start).
const PENDING_ENDS: usize = 256;

/// Whether `e` says the event store could not be reached (rather than refusing the append).
fn unreachable(e: &vigil_schemas::StoreError) -> bool {
    matches!(
        e,
        vigil_schemas::StoreError::Backend(_) | vigil_schemas::StoreError::Fenced { .. }
    )
}

impl Drop for CameraState {
    fn drop(&mut self) {
        self.pump.abort();
        self.runtime.running.store(false, Ordering::Relaxed);
        self.runtime.counters.persons.store(0, Ordering::Relaxed);
    }
}

/// Starts the clip recorder of a camera when the node records clips, with the task that
/// stores what it finishes.
fn start_recorder(
    ingest: &Arc<Ingest>,
    handler: &CommandHandler,
    spec: &CameraSpec,
) -> Option<Recorder> {
    let settings = ingest.clips.clone()?;
    let (finished_tx, mut finished) = tokio::sync::mpsc::unbounded_channel();
    let recorder = match Recorder::start(&spec.id, &ingest.clips_dir(), settings, finished_tx) {
        Ok(recorder) => recorder,
        Err(e) => {
            tracing::warn!(camera = %spec.id, error = %e, "cannot record clips");
            return None;
        }
    };
    let (ingest, handler, camera) = (ingest.clone(), handler.clone(), spec.id.clone());
    tokio::spawn(async move {
        while let Some(clip) = finished.recv().await {
            if let Err(e) = store_clip(&ingest, &handler, &camera, &clip).await {
                tracing::warn!(camera = %camera, error = %e, "a finished clip could not be stored");
                // Still in the partial folder when it could not be moved.
                let _ = tokio::fs::remove_file(&clip.path).await;
            }
        }
    });
    Some(recorder)
}

/// Moves a finished clip's file into the blob store and records `clip.recorded`.
async fn store_clip(
    ingest: &Ingest,
    handler: &CommandHandler,
    camera: &str,
    clip: &FinishedClip,
) -> Result<(), ActorProcessingErr> {
    let (media, bytes) = ingest.blobs.put_file(&clip.path).await?;
    let clip_id = Uuid::now_v7().to_string();
    let recorded = ClipEvent::Recorded(ClipRecorded {
        clip_id: clip_id.clone(),
        camera_id: camera.to_string(),
        incident_ids: clip.incidents.clone(),
        track_ids: clip.tracks.clone(),
        continuous: clip.continuous,
        started_at: clip.started_at,
        ended_at: clip.ended_at,
        duration_seconds: clip.duration_seconds,
        codec: clip.format.codec.as_str().to_string(),
        width: clip.format.width,
        height: clip.format.height,
        frames: clip.packets,
        bytes,
        media,
    });
    let meta = EventMeta {
        correlation_id: Uuid::now_v7(),
        causation_id: None,
        actor: ingest.signed(format!("camera:{camera}")),
    };
    handler
        .store()
        .append(
            &clip_stream(&clip_id),
            ExpectedVersion::NoStream,
            vec![recorded.to_new_event(clip.ended_at, &meta)],
        )
        .await?;
    tracing::info!(camera, clip = %clip_id, seconds = clip.duration_seconds, "clip recorded");
    Ok(())
}

impl Actor for CameraActor {
    type Msg = CameraMsg;
    type State = CameraState;
    /// The node context, the camera, whom to tell it is online, and its lease's fencing token
    /// where cameras are leased to nodes.
    type Arguments = (Arc<Ingest>, CameraSpec, OnOnline, Option<u64>);

    async fn pre_start(
        &self,
        myself: ActorRef<CameraMsg>,
        (ingest, spec, on_online, token): Self::Arguments,
    ) -> Result<CameraState, ActorProcessingErr> {
        let runtime = ingest.runtime(&spec.id);
        runtime.running.store(true, Ordering::Relaxed);
        let slot = Arc::new(FrameSlot::default());
        let handler = ingest.handler_for(&spec.id, token);
        let clips = start_recorder(&ingest, &handler, &spec);
        let clips_from_frames =
            clips.is_some() && !crate::clips::from_compressed_stream(&spec.source);
        let sink = clips.as_ref().map(Recorder::sink);
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
                if let Some(sink) = sink {
                    source.record_into(sink);
                }
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
            handler,
            token,
            spec,
            on_online,
            runtime,
            slot,
            pump,
            appearances: Appearances::default(),
            t0: None,
            frame_number: 0,
            online: false,
            rules: RuleEngine::new(),
            incidents: OpenIncidents::default(),
            appended: None,
            motion: MotionDetector::new(),
            last_whole: None,
            clips_from_frames,
            clips,
            unrecorded: Default::default(),
            store_down_until: None,
            pending_ends: Default::default(),
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
                state.finish_clip();
                // Every frame before the end was handed over (and, with `realtime=false`,
                // analysed) before this message: nothing is left behind.
                state.end_all("ended").await;
                *state.runtime.finished.lock().expect("lock") = Some(why);
                myself.stop(Some("the video file ended".into()));
                Ok(())
            }
            CameraMsg::SourceFailed(e) => {
                state.finish_clip();
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
        state.finish_clip();
        state.end_all("stopped").await;
        Ok(())
    }
}

impl CameraState {
    /// Whether the event store was found unreachable less than [`STORE_RETRY`] ago.
    fn store_down(&self) -> bool {
        self.store_down_until.is_some_and(|t| Instant::now() < t)
    }

    /// Notes that an append found the event store unreachable.
    fn store_failed(&mut self, e: &vigil_schemas::StoreError) {
        if self.store_down_until.is_none() {
            if matches!(e, vigil_schemas::StoreError::Fenced { .. }) {
                tracing::warn!(camera = %self.spec.id, error = %e, "this node lost the camera's lease: its events are dropped (counted) until its actor stops");
            } else {
                tracing::warn!(camera = %self.spec.id, error = %e, "the event store is unreachable: analysis goes on, its events are dropped (counted) until it answers");
            }
        }
        self.store_down_until = Some(Instant::now() + STORE_RETRY);
    }

    /// Notes that an append went through.
    fn store_answered(&mut self) {
        if self.store_down_until.take().is_some() {
            tracing::info!(camera = %self.spec.id, "the event store answers again");
        }
    }

    /// Notes that an append found the event store unreachable and its event was dropped.
    fn lost_event(&mut self, e: &vigil_schemas::StoreError) {
        self.store_failed(e);
        self.dropped_event();
    }

    /// Counts an event that was not recorded.
    fn dropped_event(&self) {
        self.runtime
            .counters
            .events_dropped
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Keeps a track's end for when the event store answers again.
    fn pend_end(&mut self, stream: String, event: vigil_schemas::NewEvent) {
        self.pending_ends.push_back((stream, event));
        if self.pending_ends.len() > PENDING_ENDS {
            self.pending_ends.pop_front();
            self.dropped_event();
        }
    }

    /// Appends the track ends kept while the event store was unreachable, oldest first.
    async fn flush_pending_ends(&mut self) -> Result<(), ActorProcessingErr> {
        while !self.store_down()
            && let Some((stream, event)) = self.pending_ends.front().cloned()
        {
            match self
                .handler
                .store()
                .append(&stream, ExpectedVersion::Exact(1), vec![event])
                .await
            {
                Ok(done) => {
                    self.store_answered();
                    self.appended_at(Some(done.last_position));
                }
                // Ended meanwhile (a sweep, or this very end whose answer was lost).
                Err(vigil_schemas::StoreError::WrongExpectedVersion { .. }) => {}
                Err(e) if unreachable(&e) => {
                    self.store_failed(&e);
                    break;
                }
                Err(e) => return Err(e.into()),
            }
            self.pending_ends.pop_front();
        }
        Ok(())
    }

    /// Notes that an event was appended at `position` for the frame being handled.
    fn appended_at(&mut self, position: Option<u64>) {
        self.appended = self.appended.max(position);
    }

    fn meta(&self) -> EventMeta {
        EventMeta {
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            actor: self.ingest.signed(format!("camera:{}", self.spec.id)),
        }
    }

    /// Handles one sampled frame: decides where to look ([`Self::look`]), has the pool analyse
    /// it there, follows its persons ([`Self::follow`]) and answers a pushed frame's caller.
    async fn process(&mut self, taken: SourceFrame) -> Result<(), ActorProcessingErr> {
        let started = Instant::now();
        self.appended = None;
        let SourceFrame {
            frame,
            reply,
            uploaded,
        } = taken;
        if let Some(token) = self.token
            && !self.ingest.holds_lease(&self.spec.id, token)
        {
            // The node gave the camera up or lost it: the supervisor stops this actor soon;
            // until then it analyses nothing (another node may already run the camera).
            if let Some(reply) = reply {
                let _ = reply.send(FrameOutcome::failed(
                    "this node no longer runs the camera".into(),
                ));
            }
            return Ok(());
        }
        self.come_online().await?;
        let settings = self.ingest.calibration_for(&self.spec.id);
        let look = self.look(&frame, uploaded, &settings).await?;
        if look == Look::Nowhere {
            self.runtime.counters.still.fetch_add(1, Ordering::Relaxed);
            self.record_picture(&frame);
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
        let mut outcome = self.follow(&frame, &look, &analysis, &settings).await?;

        let counters = &self.runtime.counters;
        match look {
            Look::Hold => counters.held.fetch_add(1, Ordering::Relaxed),
            Look::Regions(_) => {
                counters.in_regions.fetch_add(1, Ordering::Relaxed);
                counters.analysed.fetch_add(1, Ordering::Relaxed)
            }
            _ => counters.analysed.fetch_add(1, Ordering::Relaxed),
        };
        self.record_picture(&frame);
        self.runtime.handled(frame);
        if let Some(reply) = reply {
            outcome.analysis = Some(analysis);
            outcome.position = self.appended;
            outcome.processing_ms = started.elapsed().as_secs_f64() * 1e3;
            let _ = reply.send(outcome);
        }
        Ok(())
    }

    /// Reports the camera online with its first frame since the actor started, and tells the
    /// supervisor.
    /// While the event store is unreachable the report waits (the camera analyses
    /// meanwhile) and is tried again with a later frame.
    async fn come_online(&mut self) -> Result<(), ActorProcessingErr> {
        if self.online || self.store_down() {
            return Ok(());
        }
        let reason = format!(
            "receiving frames: {}",
            self.runtime.source.lock().expect("lock")
        );
        match self
            .ingest
            .report_status_via(
                &self.handler,
                &self.spec.id,
                vigil_schemas::events::CameraStatus::Online,
                reason,
            )
            .await
        {
            Ok(()) => self.store_answered(),
            Err(e) => match e.downcast_ref::<vigil_schemas::StoreError>() {
                Some(store) if unreachable(store) => {
                    self.store_failed(store);
                    return Ok(());
                }
                _ => return Err(e),
            },
        }
        self.online = true;
        (self.on_online)(&self.spec.id);
        Ok(())
    }

    /// Follows the persons of an analysed frame: moves the tracker on (tracks not looked for
    /// are held), records the tracks confirmed, the faces described and what the gallery and
    /// the rules make of them, and the tracks that ended. Returns what it recorded.
    async fn follow(
        &mut self,
        frame: &Frame,
        look: &Look,
        analysis: &Analysis,
        settings: &vigil_schemas::events::CalibrationSettings,
    ) -> Result<FrameOutcome, ActorProcessingErr> {
        let observed: Option<Vec<TrackBox>> = match look {
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
        self.flush_pending_ends().await?;
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
        for (id, person) in self.appearances.held(&std::mem::take(&mut update.held)) {
            persons.push(person);
            update.assigned.push(Some(id));
        }
        self.runtime
            .counters
            .persons
            .store(self.tracker.active() as u64, Ordering::Relaxed);
        let zones: Vec<Vec<String>> = persons.iter().map(|p| self.zones_at(p)).collect();

        // Tracks confirmed now.
        let (started, entry_blob) = self
            .start_tracks(&update.started, &persons, &zones, frame)
            .await?;
        let mut outcome = FrameOutcome {
            sampled: true,
            started,
            ..FrameOutcome::default()
        };

        // Every confirmed track seen in this frame, with the clearest face in its head.
        let seen = self.appearances.see(
            &update.assigned,
            &persons,
            &zones,
            analysis.persons.len(),
            &analysis.faces,
            frame,
            self.frame_number,
        );
        outcome.tracks = seen.tracks;
        if self.spec.features.clip_appearances {
            for track in outcome.tracks.iter().flatten() {
                self.cover(Covered::Track(track.clone()), frame.captured_at);
            }
        }
        let described = self.describe_faces(frame, seen.faces, settings).await;
        let observation = Observation {
            at: frame.captured_at,
            width: frame.image.width,
            height: frame.image.height,
            persons: persons
                .iter()
                .zip(&outcome.tracks)
                .zip(zones)
                .map(|((p, track), zones)| PersonObs {
                    track_id: track.clone(),
                    bbox: norm(p),
                    score: p.score,
                    zones,
                })
                .collect(),
            camera_zones: self.spec.zones.iter().map(|z| z.name.clone()).collect(),
        };
        let mut findings = self
            .rules
            .observe(&self.spec.features, settings, &observation);
        let mut matches = vec![];
        let gallery = self.ingest.gallery();
        for (id, bbox, embedding) in described {
            let (face_findings, face_matches) = self.appearances.identify(
                id,
                &embedding,
                &gallery,
                &self.spec.id,
                &self.spec.features,
                settings,
            );
            findings.extend(face_findings);
            matches.extend(face_matches.into_iter().map(|m| (m, bbox)));
        }
        let seen_persons = observation
            .persons
            .iter()
            .map(|p| FramePerson {
                bbox: p.bbox,
                track_id: p.track_id.clone(),
            })
            .collect();
        outcome.incidents = self
            .record_evidence(findings, matches, frame, seen_persons, entry_blob, settings)
            .await?;
        self.incidents
            .forget_stale(frame.captured_at, settings.incident_merge_seconds);

        for ended in update.ended {
            if let Some(track_id) = self.end_track(&ended, "lost").await? {
                self.rules.forget_track(&track_id);
                outcome.ended.push(track_id);
            }
        }
        Ok(outcome)
    }

    /// Records the start of the tracks confirmed in `frame` (`started`: tracker id and the
    /// index of its person), storing the frame once as their entry frame. Returns their ids
    /// and what became of the frame. While the media folder is full the tracks are followed
    /// but not recorded.
    async fn start_tracks(
        &mut self,
        started: &[(TrackId, usize)],
        persons: &[Scored],
        zones: &[Vec<String>],
        frame: &Frame,
    ) -> Result<(Vec<String>, Stored), ActorProcessingErr> {
        let mut ids = Vec::new();
        let mut entry_blob: Stored = None;
        for (id, det) in started {
            if entry_blob.is_none() {
                entry_blob = Some(self.store_frame(&frame.image).await?);
            }
            let track_id = Uuid::now_v7().to_string();
            let blob = entry_blob.clone().flatten();
            let recorded = blob.is_some();
            let started = self.appearances.start(
                &self.spec.id,
                *id,
                track_id.clone(),
                &persons[*det],
                zones[*det].clone(),
                frame,
                FrameRef {
                    persons: vec![],
                    blob: blob.unwrap_or_default(),
                    frame_number: self.frame_number,
                    at: frame.captured_at,
                },
            );
            if recorded && self.store_down() {
                self.dropped_event();
            }
            if !recorded || self.store_down() {
                self.unrecorded.insert(track_id.clone());
                ids.push(track_id);
                continue;
            }
            match self
                .handler
                .store()
                .append(
                    &track_stream(&self.spec.id, &track_id),
                    ExpectedVersion::NoStream,
                    vec![
                        AppearanceEvent::Started(started)
                            .to_new_event(frame.captured_at, &self.meta()),
                    ],
                )
                .await
            {
                Ok(done) => {
                    self.store_answered();
                    self.appended_at(Some(done.last_position));
                }
                Err(e) if unreachable(&e) => {
                    self.lost_event(&e);
                    self.unrecorded.insert(track_id.clone());
                }
                Err(e) => return Err(e.into()),
            }
            ids.push(track_id);
        }
        Ok((ids, entry_blob))
    }

    /// Records what the gallery and the rules found in `frame`: each subject matched (with the
    /// crop of its face) and each finding as an incident, with the frame (stored once, or
    /// the entry frame already stored) and the `persons` seen in it as their evidence. Returns the incidents recorded.
    async fn record_evidence(
        &mut self,
        findings: Vec<Finding>,
        matches: Vec<(SubjectMatched, Scored)>,
        frame: &Frame,
        persons: Vec<FramePerson>,
        entry_blob: Stored,
        settings: &vigil_schemas::events::CalibrationSettings,
    ) -> Result<Vec<String>, ActorProcessingErr> {
        let mut incidents = Vec::new();
        if findings.is_empty() && matches.is_empty() {
            return Ok(incidents);
        }
        let blob = match entry_blob {
            Some(stored) => stored,
            None => self.store_frame(&frame.image).await?,
        };
        // No frame while the media folder is full: incidents are recorded without it.
        let evidence: Vec<FrameRef> = blob
            .map(|blob| FrameRef {
                persons,
                blob,
                frame_number: self.frame_number,
                at: frame.captured_at,
            })
            .into_iter()
            .collect();
        for (mut matched, bbox) in matches {
            let crop = match evidence.first() {
                Some(_) => self.store_crop(&frame.image, &bbox).await?,
                None => None,
            };
            let (Some(crop), Some(frame)) = (crop, evidence.first()) else {
                // A match names its crop and frame: not recorded without them. The face's
                // findings (watch list, unauthorised) still raise their incidents below.
                tracing::warn!(camera = %self.spec.id, subject = %matched.subject_id, "a face match was not recorded: the media folder is full");
                continue;
            };
            matched.crop = crop;
            matched.frame = frame.clone();
            let subject = matched.subject_id.clone();
            if self.store_down() {
                self.dropped_event();
                continue;
            }
            match self
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
                    self.store_answered();
                    self.appended_at(done.position);
                    tracing::info!(camera = %self.spec.id, %subject, "face matched an enrolled subject")
                }
                // Erased since the gallery was read.
                Err(crate::CommandError::Domain(SubjectError::NotFound(_))) => {}
                Err(crate::CommandError::Store(e)) if unreachable(&e) => {
                    self.lost_event(&e);
                }
                Err(e) => return Err(Box::new(e)),
            }
        }
        for finding in findings {
            if let Some(id) = self
                .record_finding(
                    finding,
                    &evidence,
                    frame.captured_at,
                    settings.incident_merge_seconds,
                )
                .await?
            {
                incidents.push(id);
            }
        }
        Ok(incidents)
    }

    /// Descriptors for the tracks whose face is worth one now ([`Appearances::due`]): one
    /// call to the pool for all of them (faces of a pushed frame came described). Returns
    /// `(track, box, descriptor)` of every face described, for the gallery. A busy pool or a
    /// failure leaves them for a later frame.
    async fn describe_faces(
        &mut self,
        frame: &Frame,
        mut faces: HashMap<TrackId, FaceSeen>,
        settings: &vigil_schemas::events::CalibrationSettings,
    ) -> Vec<(TrackId, Scored, Vec<f32>)> {
        let due = self.appearances.due(
            &faces,
            self.frame_number,
            settings.face_descriptor_every_frames,
        );
        if !due.is_empty() {
            let wanted = due.iter().map(|id| faces[id].1.clone()).collect();
            match self.ingest.pool.describe(frame.image.clone(), wanted).await {
                Ok(descriptors) => {
                    self.runtime
                        .counters
                        .faces_described
                        .fetch_add(descriptors.len() as u64, Ordering::Relaxed);
                    for (id, descriptor) in due.iter().zip(descriptors) {
                        if let Some((_, face)) = faces.get_mut(id) {
                            face.embedding = Some(descriptor);
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(camera = %self.spec.id, error = %e, "no face descriptors this frame")
                }
            }
        }
        self.appearances.described(faces, frame, self.frame_number)
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

    /// Turns a finding into an incident as [`OpenIncidents::fate`] decides: adds evidence to
    /// the open incident with its key, or opens one (also when the open one was closed or
    /// deleted meanwhile). Returns the incident's id when an event was recorded.
    async fn record_finding(
        &mut self,
        finding: Finding,
        evidence: &[FrameRef],
        at: DateTime<Utc>,
        merge_seconds: f64,
    ) -> Result<Option<String>, ActorProcessingErr> {
        let key = incident_key(&self.spec.id, &finding);
        let tracks = finding.track_ids.clone();
        let covered = |id: &str| Covered::Incident {
            id: id.to_string(),
            tracks: tracks.clone(),
        };
        let meta = EventMeta {
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            actor: self
                .ingest
                .signed(format!("rule:{}", finding.kind.as_str())),
        };
        match self.incidents.fate(&key, at, merge_seconds) {
            FindingFate::KeepsOpen(id) => {
                self.cover(covered(&id), at);
                return Ok(None);
            }
            FindingFate::Extends(_) | FindingFate::Opens if self.store_down() => {
                // Tried again with the next finding once the store answers.
                self.dropped_event();
                return Ok(None);
            }
            FindingFate::Extends(id) => {
                let added =
                    IncidentCommand::AddEvidence(evidence_added(&id, &finding, evidence, at));
                match self
                    .handler
                    .execute_at::<Incident>(&id, added, &meta, None, Some(at))
                    .await
                {
                    Ok(done) => {
                        self.store_answered();
                        self.incidents.extended(&key, at);
                        self.appended_at(done.position);
                        self.cover(covered(&id), at);
                        return Ok(Some(id));
                    }
                    // An operator closed or deleted it: the finding opens a new incident.
                    Err(crate::CommandError::Domain(
                        IncidentError::Closed(_) | IncidentError::NotFound(_),
                    )) => {}
                    Err(crate::CommandError::Store(e)) if unreachable(&e) => {
                        self.lost_event(&e);
                        return Ok(None);
                    }
                    Err(e) => return Err(Box::new(e)),
                }
            }
            FindingFate::Opens => {}
        }
        let id = Uuid::now_v7().to_string();
        let opened = IncidentCommand::Open(incident_opened(
            &self.spec.id,
            &id,
            key.clone(),
            finding,
            evidence,
            at,
        ));
        // The incident happened when its frame was captured (a file camera's `start` plus the
        // frame's offset), not when it was analysed.
        let done = match self
            .handler
            .execute_at::<Incident>(&id, opened, &meta, None, Some(at))
            .await
        {
            Ok(done) => done,
            Err(crate::CommandError::Store(e)) if unreachable(&e) => {
                self.lost_event(&e);
                return Ok(None);
            }
            Err(e) => return Err(Box::new(e)),
        };
        self.store_answered();
        self.appended_at(done.position);
        tracing::info!(camera = %self.spec.id, incident = %id, key = %key, "incident opened");
        self.incidents.opened(key, id.clone(), at);
        self.cover(covered(&id), at);
        Ok(Some(id))
    }

    /// Has the clip recorder cover `what` (an incident, or an appearance), whose latest
    /// finding is at `at`.
    fn cover(&self, what: Covered, at: DateTime<Utc>) {
        if let Some(clips) = &self.clips {
            clips.cover(what, at);
        }
    }

    /// Hands a sampled frame to the clip recorder when it encodes this camera's frames.
    fn record_picture(&self, frame: &Frame) {
        if let Some(clips) = self.clips.as_ref().filter(|_| self.clips_from_frames) {
            clips.picture(frame.clone());
        }
    }

    /// Ends the open clip (the source stopped or failed).
    fn finish_clip(&self) {
        if let Some(clips) = &self.clips {
            clips.finish();
        }
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

    /// Stores `image` as a JPEG; returns its blob, or none when the media folder is full
    /// (counted in `media_dropped`). Any other failure to write is the actor's failure.
    async fn store_frame(
        &self,
        image: &Arc<RgbImage>,
    ) -> Result<Option<String>, ActorProcessingErr> {
        let image = image.clone();
        let jpeg = tokio::task::spawn_blocking(move || encode_jpeg(&image, JPEG_QUALITY)).await?;
        self.store(&jpeg).await
    }

    async fn store(&self, jpeg: &[u8]) -> Result<Option<String>, ActorProcessingErr> {
        match self.ingest.blobs.put(jpeg).await {
            Ok(blob) => Ok(Some(blob)),
            Err(e) if crate::blob::is_storage_full(&e) => {
                self.runtime
                    .counters
                    .media_dropped
                    .fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The JPEG crop of `bbox` (with a margin) of `image`, stored; returns its blob (none when
    /// the media folder is full).
    async fn store_crop(
        &self,
        image: &Arc<RgbImage>,
        bbox: &Scored,
    ) -> Result<Option<String>, ActorProcessingErr> {
        let (image, bbox) = (image.clone(), *bbox);
        let crop = tokio::task::spawn_blocking(move || {
            encode_jpeg(
                &image.crop_normalised(bbox.x1, bbox.y1, bbox.x2, bbox.y2, 0.25),
                JPEG_QUALITY,
            )
        })
        .await?;
        self.store(&crop).await
    }

    /// Records the end of a confirmed track, with its exit frame and the crop of its best
    /// face; returns its id.
    async fn end_track(
        &mut self,
        ended: &EndedTrack,
        reason: &str,
    ) -> Result<Option<String>, ActorProcessingErr> {
        let Some(track) = self.appearances.end(ended.id) else {
            return Ok(None);
        };
        if self.unrecorded.remove(&track.track_id) {
            return Ok(Some(track.track_id));
        }
        // While the media folder is full the exit frame is the entry frame, and the best face
        // goes without its crop and descriptor.
        let exit_blob = self.store_frame(&track.last_frame().0.image).await?;
        let best_face = match track.best_face() {
            Some(face) => self
                .store_crop(&face.image, &face.bbox)
                .await?
                .map(|crop| BestFace {
                    crop,
                    score: face.bbox.score,
                    bbox: norm(&face.bbox),
                    at: face.at,
                    embedding: face.embedding.clone(),
                }),
            None => None,
        };
        let track_id = track.track_id.clone();
        let event =
            AppearanceEvent::Ended(track.ended(&self.spec.id, exit_blob, best_face, reason))
                .to_new_event(Utc::now(), &self.meta());
        let stream = track_stream(&self.spec.id, &track_id);
        if self.store_down() || !self.pending_ends.is_empty() {
            // After the ends already waiting, in order.
            self.pend_end(stream, event);
            return Ok(Some(track_id));
        }
        match self
            .handler
            .store()
            .append(&stream, ExpectedVersion::Exact(1), vec![event.clone()])
            .await
        {
            Ok(done) => {
                self.store_answered();
                self.appended_at(Some(done.last_position));
            }
            // Another node's sweep ended it first (every ingest node runs every camera).
            Err(vigil_schemas::StoreError::WrongExpectedVersion { .. }) => {
                tracing::warn!(camera = %self.spec.id, track = %track_id, "the track was already ended (interrupted) by a sweep");
            }
            Err(e) if unreachable(&e) => {
                self.store_failed(&e);
                self.pend_end(stream, event);
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Some(track_id))
    }

    /// Ends every open track (the source was lost or ingest stopped).
    async fn end_all(&mut self, reason: &str) {
        for ended in self.tracker.finish() {
            if let Err(e) = self.end_track(&ended, reason).await {
                tracing::warn!(camera = %self.spec.id, error = %e, "could not record a track's end");
            }
        }
        // One more try for the ends kept while the store was unreachable; what it cannot
        // record the sweep ends at the camera's next start.
        self.store_down_until = None;
        if let Err(e) = self.flush_pending_ends().await {
            tracing::warn!(camera = %self.spec.id, error = %e, "could not record the tracks' ends kept for the store");
        }
        self.runtime.counters.persons.store(0, Ordering::Relaxed);
    }
}
