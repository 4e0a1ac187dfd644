//! The node context: what every camera actor of a node shares (the command handler, the
//! inference pool, the media store, how sources open, restart delays, tracker settings, the
//! calibration and the gallery as the event store last said), and each camera's runtime
//! record (counters, newest frame, what moved, its rate) that the API and `/metrics` read.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ractor::ActorProcessingErr;
use serde::Serialize;
use vigil_schemas::events::{
    Calibration, CalibrationSettings, CameraFeatures, CameraStatus, NormBox, Zone,
};
use vigil_schemas::{EventMeta, SubjectEvent};

use crate::aggregates::camera_status::{CameraStatusAggregate, ReportStatus};
use crate::blob::BlobStore;
use crate::frame::Frame;
use crate::gallery::Gallery;
use crate::handler::CommandHandler;
use crate::motion::Motion;
use crate::pool::InferencePool;
use crate::source::{CameraCounters, SourceFactory};
use crate::tracker::TrackerConfig;

/// Restart delays: `initial`, doubled per consecutive failure, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay before restart number `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        self.initial
            .saturating_mul(2u32.saturating_pow(attempt.min(20)))
            .min(self.max)
    }
}

/// Which cameras this node runs where several ingest nodes share one database: each camera is
/// leased to one node at a time (`src/cluster.rs` keeps the leases in PostgreSQL). The
/// supervisor says which cameras it would run, and runs those the keeper says it holds; each
/// camera actor appends through a store fenced by its lease's token, so a node that lost a
/// camera (paused past its lease, cut off) writes nothing more for it.
pub trait CameraLeases: Send + Sync {
    /// This node's name; the events its cameras append are signed `…@{node}`.
    fn node(&self) -> &str;
    /// The cameras this node would run if they were its own: enabled, not ended, and pulled
    /// from a source (push cameras are analysed where their frames arrive, on any node).
    fn want(&self, cameras: std::collections::BTreeSet<String>);
    /// Whether this node holds `camera`'s lease with `token` now (as its last beat said).
    fn holds(&self, camera: &str, token: u64) -> bool;
    /// The leases this node holds, camera → fencing token; changes are announced.
    fn held(&self) -> tokio::sync::watch::Receiver<std::collections::BTreeMap<String, u64>>;
    /// A store whose appends commit only while this node holds `camera`'s lease with `token`
    /// ([`vigil_schemas::StoreError::Fenced`] otherwise).
    fn fenced(&self, camera: &str, token: u64) -> Arc<dyn vigil_schemas::EventStore>;
}

/// Whether a camera's source is one that nodes lease (every source but `push`).
pub fn leased_source(source: &str) -> bool {
    source != "push"
}

/// What every camera actor of a node shares.
pub struct Ingest {
    /// Appends status and track events.
    pub(crate) handler: CommandHandler,
    /// The models.
    pub(crate) pool: InferencePool,
    /// Frames and crops.
    pub(crate) blobs: BlobStore,
    /// Opens sources.
    pub(crate) sources: Arc<dyn SourceFactory>,
    /// Restart delays.
    pub(crate) backoff: Backoff,
    /// Tracker settings.
    pub(crate) tracker: TrackerConfig,
    runtimes: Mutex<HashMap<String, Arc<CameraRuntime>>>,
    /// The rule thresholds, as the event store last said (the supervisor follows them).
    calibration: std::sync::RwLock<Calibration>,
    /// The enrolled faces (the supervisor follows subject events).
    gallery: std::sync::RwLock<Arc<Gallery>>,
    /// How clips are cut; none when cameras record no clips.
    pub(crate) clips: Option<crate::clips::ClipSettings>,
    /// Tracks the supervisor's sweep ended (`interrupted`) since the node started.
    pub tracks_swept: std::sync::atomic::AtomicU64,
    /// The camera leases, where nodes share cameras; none: this node runs every camera.
    pub(crate) leases: Option<Arc<dyn CameraLeases>>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("backoff", &self.backoff)
            .finish()
    }
}

impl Ingest {
    /// Everything camera actors need.
    pub fn new(
        handler: CommandHandler,
        pool: InferencePool,
        blobs: BlobStore,
        sources: Arc<dyn SourceFactory>,
        backoff: Backoff,
        tracker: TrackerConfig,
    ) -> Self {
        Self {
            handler,
            pool,
            blobs,
            sources,
            backoff,
            tracker,
            runtimes: Mutex::default(),
            calibration: std::sync::RwLock::default(),
            gallery: std::sync::RwLock::default(),
            clips: Some(crate::clips::ClipSettings::default()),
            tracks_swept: std::sync::atomic::AtomicU64::new(0),
            leases: None,
        }
    }

    /// With cameras leased to nodes (several ingest nodes on one database).
    pub fn with_leases(mut self, leases: Arc<dyn CameraLeases>) -> Self {
        self.leases = Some(leases);
        self
    }

    /// The camera leases, when cameras are leased.
    pub fn leases(&self) -> Option<&Arc<dyn CameraLeases>> {
        self.leases.as_ref()
    }

    /// The command handler a camera's actor appends through: fenced by its lease's `token`
    /// when cameras are leased (and the camera holds one), else the node's.
    pub fn handler_for(&self, camera_id: &str, token: Option<u64>) -> CommandHandler {
        match (&self.leases, token) {
            (Some(leases), Some(token)) => CommandHandler::new(leases.fenced(camera_id, token)),
            _ => self.handler.clone(),
        }
    }

    /// Whether a camera's actor that started with lease `token` may go on analysing: this
    /// node still holds the lease (true where cameras are not leased).
    pub fn holds_lease(&self, camera_id: &str, token: u64) -> bool {
        self.leases
            .as_ref()
            .is_none_or(|leases| leases.holds(camera_id, token))
    }

    /// The actor name `who` (`camera:{id}`, `rule:{kind}`) as this node signs it: with
    /// `@{node}` when cameras are leased, so the log says which node wrote.
    pub fn signed(&self, who: String) -> String {
        match &self.leases {
            Some(leases) => format!("{who}@{}", leases.node()),
            None => who,
        }
    }

    /// With clips cut as `clips` says, or none. Removes what a crash left half-written.
    pub fn with_clips(mut self, clips: Option<crate::clips::ClipSettings>) -> Self {
        let partial = self.clips_dir();
        let left = crate::clips::clean_partials(&partial);
        if left > 0 {
            tracing::info!(files = left, dir = %partial.display(), "removed clips a stop left unfinished");
        }
        self.clips = clips;
        self
    }

    /// Where clips are written before they are finished and stored.
    pub fn clips_dir(&self) -> std::path::PathBuf {
        self.blobs.root().join(crate::clips::PARTIAL_DIR)
    }

    /// Appends status and track events.
    pub fn handler(&self) -> &CommandHandler {
        &self.handler
    }

    /// The models.
    pub fn pool(&self) -> &InferencePool {
        &self.pool
    }

    /// Frames and crops.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// How sources open (and which a node may open).
    pub fn sources(&self) -> &Arc<dyn SourceFactory> {
        &self.sources
    }

    /// The enrolled faces as this node last folded them (a snapshot: matching never holds a
    /// lock).
    pub fn gallery(&self) -> Arc<Gallery> {
        self.gallery.read().expect("gallery lock").clone()
    }

    /// Applies a subject event to the gallery.
    pub fn apply_subject(&self, event: &SubjectEvent) {
        if matches!(event, SubjectEvent::Matched(_)) {
            return;
        }
        let mut gallery = self.gallery.write().expect("gallery lock");
        Arc::make_mut(&mut gallery).apply(event);
    }

    /// The thresholds in effect for a camera.
    pub fn calibration_for(&self, camera_id: &str) -> CalibrationSettings {
        self.calibration
            .read()
            .expect("calibration lock")
            .effective(camera_id)
    }

    /// Replaces the calibration (from a `calibration.changed` event).
    pub fn set_calibration(&self, calibration: Calibration) {
        *self.calibration.write().expect("calibration lock") = calibration;
    }

    /// The runtime record of a camera, created on first use.
    pub fn runtime(&self, camera_id: &str) -> Arc<CameraRuntime> {
        self.runtimes
            .lock()
            .expect("runtimes lock")
            .entry(camera_id.to_string())
            .or_default()
            .clone()
    }

    /// The runtime record of a camera that has run on this node.
    pub fn runtime_of(&self, camera_id: &str) -> Option<Arc<CameraRuntime>> {
        self.runtimes
            .lock()
            .expect("runtimes lock")
            .get(camera_id)
            .cloned()
    }

    /// What camera `camera_id` is doing now, when it has run on this node.
    pub fn snapshot(&self, camera_id: &str) -> Option<CameraSnapshot> {
        let now = std::time::Instant::now();
        self.runtime_of(camera_id).map(|r| r.snapshot(now))
    }

    /// What every camera that has run on this node is doing now, sorted by id.
    pub fn snapshots(&self) -> Vec<(String, CameraSnapshot)> {
        let now = std::time::Instant::now();
        self.runtimes()
            .into_iter()
            .map(|(id, r)| (id, r.snapshot(now)))
            .collect()
    }

    /// The newest frame camera `camera_id` handled (for its snapshot), if any.
    pub fn latest_frame(&self, camera_id: &str) -> Option<Frame> {
        self.runtime_of(camera_id)
            .and_then(|r| r.latest.lock().ok().and_then(|l| l.clone()))
    }

    /// Every camera that has run on this node, sorted by id.
    pub fn runtimes(&self) -> Vec<(String, Arc<CameraRuntime>)> {
        let mut all: Vec<_> = self
            .runtimes
            .lock()
            .expect("runtimes lock")
            .iter()
            .map(|(id, r)| (id.clone(), r.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Records a camera's ingest status (only changes become events).
    pub async fn report_status(
        &self,
        camera_id: &str,
        status: CameraStatus,
        reason: String,
    ) -> Result<(), ActorProcessingErr> {
        self.report_status_via(&self.handler, camera_id, status, reason)
            .await
    }

    /// [`report_status`](Self::report_status) through `handler` (a camera's fenced one).
    pub async fn report_status_via(
        &self,
        handler: &CommandHandler,
        camera_id: &str,
        status: CameraStatus,
        reason: String,
    ) -> Result<(), ActorProcessingErr> {
        tracing::info!(camera = camera_id, status = status.as_str(), %reason, "camera status");
        let meta = EventMeta {
            correlation_id: uuid::Uuid::now_v7(),
            causation_id: None,
            actor: self.signed(format!("camera:{camera_id}")),
        };
        handler
            .execute::<CameraStatusAggregate>(
                camera_id,
                ReportStatus {
                    camera_id: camera_id.to_string(),
                    status,
                    reason,
                },
                &meta,
                None,
            )
            .await
            .map_err(|e| -> ActorProcessingErr {
                match e {
                    // The store's own error, so a caller can tell an unreachable store.
                    crate::CommandError::Store(e) => Box::new(e),
                    e => Box::new(e),
                }
            })?;
        Ok(())
    }
}

/// What a camera's actor shares with the rest of the node: counters, the newest frame, what
/// its source is.
#[derive(Debug, Default)]
pub struct CameraRuntime {
    /// Ingest counters.
    pub counters: Arc<CameraCounters>,
    /// The newest sampled frame it handled (analysed, or found still).
    pub latest: Mutex<Option<Frame>>,
    /// What the motion detector saw in that frame.
    pub motion: Mutex<Option<MotionSeen>>,
    /// What is connected (`rtsp h264 768x576`), set by the source task at each frame; empty
    /// before the first frame of the current actor (the supervisor clears it at each start).
    pub source: Mutex<String>,
    /// Whether an actor is running for it now.
    pub running: std::sync::atomic::AtomicBool,
    /// Set by the actor when its source (a video file) ended, with how far it got; the
    /// supervisor then records `ended` instead of restarting it, and clears it at each start.
    pub finished: Mutex<Option<String>>,
    /// How fast it handles sampled frames.
    rate: Mutex<RateMeter>,
}

/// A camera's counters at one moment (see [`CameraCounters`] for what each counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CameraCounts {
    /// Frames decoded (or uploaded), sampled or not.
    pub frames_in: u64,
    /// Frames sampling kept.
    pub sampled: u64,
    /// Sampled frames never analysed: replaced by a newer one, or refused by a full queue.
    pub dropped: u64,
    /// Sampled frames the models analysed.
    pub analysed: u64,
    /// Frames lost in transport, or skipped until the next keyframe.
    pub damaged: u64,
    /// Sampled frames the models did not see: nothing moved and no track was alive.
    pub still: u64,
    /// Sampled frames with motion.
    pub with_motion: u64,
    /// Analysed frames the person detector saw only in regions around what moved.
    pub in_regions: u64,
    /// Sampled frames whose live tracks were held where they were, without a model call.
    pub held: u64,
    /// Face descriptors computed.
    pub faces_described: u64,
    /// Pictures not stored because the media folder was full.
    pub media_dropped: u64,
    /// Events not recorded because the event store could not be reached.
    pub events_dropped: u64,
}

/// What a camera is doing at one moment, read from its runtime record: what the API's camera
/// answers and `/metrics` show.
#[derive(Debug, Clone, Serialize)]
pub struct CameraSnapshot {
    /// Whether an actor runs for it.
    pub running: bool,
    /// What is connected (`rtsp h264 768x576`); empty before the first frame.
    pub source: String,
    /// Its counters.
    pub counts: CameraCounts,
    /// Persons in view: confirmed tracks after its newest analysed frame.
    pub persons: u64,
    /// When its newest handled frame was taken.
    pub last_frame_at: Option<DateTime<Utc>>,
    /// What the motion detector saw in that frame.
    pub motion: Option<MotionSeen>,
    /// Sampled frames handled per second (0 when not running).
    pub fps: f64,
}

impl CameraSnapshot {
    /// Whether its newest handled frame had motion.
    pub fn moving(&self) -> bool {
        self.motion.as_ref().is_some_and(|m| m.motion.moving())
    }
}

/// Frames per second from the intervals between them: an exponential moving average of the
/// interval; past the average without a frame, the rate falls as if the next came now.
#[derive(Debug, Default, Clone, Copy)]
pub struct RateMeter {
    last: Option<std::time::Instant>,
    interval: Option<f64>,
}

impl RateMeter {
    /// Notes a frame at `now`.
    pub fn tick(&mut self, now: std::time::Instant) {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.interval = Some(self.interval.map_or(dt, |i| 0.8 * i + 0.2 * dt));
        }
        self.last = Some(now);
    }

    /// Frames per second at `now` (0 before two frames).
    pub fn per_second(&self, now: std::time::Instant) -> f64 {
        match (self.last, self.interval) {
            (Some(last), Some(interval)) => {
                let since = now.saturating_duration_since(last).as_secs_f64();
                let interval = interval.max(since);
                if interval > 0.0 { 1.0 / interval } else { 0.0 }
            }
            _ => 0.0,
        }
    }
}

impl CameraRuntime {
    /// Records `frame` as the newest handled (analysed or still): its time for
    /// `last_frame_at`, the frame itself for the snapshot.
    pub(crate) fn handled(&self, frame: Frame) {
        self.counters
            .last_frame_ms
            .store(frame.captured_at.timestamp_millis(), Ordering::Relaxed);
        *self.latest.lock().expect("lock") = Some(frame);
        self.rate
            .lock()
            .expect("rate lock")
            .tick(std::time::Instant::now());
    }

    /// Whether its newest handled frame had motion.
    pub fn moving(&self) -> bool {
        self.motion
            .lock()
            .ok()
            .and_then(|m| m.as_ref().map(|seen| seen.motion.moving()))
            .unwrap_or(false)
    }

    /// Its counters, status and what moved, read now.
    pub fn snapshot(&self, now: std::time::Instant) -> CameraSnapshot {
        let c = &self.counters;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        CameraSnapshot {
            running: self.running.load(Ordering::Relaxed),
            source: self.source.lock().map(|s| s.clone()).unwrap_or_default(),
            counts: CameraCounts {
                frames_in: get(&c.frames_in),
                sampled: get(&c.sampled),
                dropped: get(&c.dropped),
                analysed: get(&c.analysed),
                damaged: get(&c.damaged),
                still: get(&c.still),
                with_motion: get(&c.with_motion),
                in_regions: get(&c.in_regions),
                held: get(&c.held),
                faces_described: get(&c.faces_described),
                media_dropped: get(&c.media_dropped),
                events_dropped: get(&c.events_dropped),
            },
            persons: get(&c.persons),
            last_frame_at: c.last_frame_at(),
            motion: self.motion.lock().ok().and_then(|m| m.clone()),
            fps: self.fps(now),
        }
    }

    /// Sampled frames handled per second now (smoothed; 0 when it is not running).
    pub fn fps(&self, now: std::time::Instant) -> f64 {
        if !self.running.load(Ordering::Relaxed) {
            return 0.0;
        }
        self.rate.lock().expect("rate lock").per_second(now)
    }
}

/// What the motion detector saw in a camera's newest handled frame.
#[derive(Debug, Clone, Serialize)]
pub struct MotionSeen {
    /// The frame's capture time.
    pub at: DateTime<Utc>,
    /// What moved.
    pub motion: Motion,
    /// Whether the frame went to the models (motion, a due whole-frame analysis, gating off,
    /// or an upload) or was found still (or held: live tracks but nothing moving near them).
    pub analysed: bool,
    /// Where the person detector looked, normalised; empty when it looked at the whole frame
    /// (or at nothing).
    pub regions: Vec<NormBox>,
}

/// The settings an actor runs with (from the camera's events).
#[derive(Debug, Clone, PartialEq)]
pub struct CameraSpec {
    /// Id.
    pub id: String,
    /// Source URL or `push`.
    pub source: String,
    /// Sampling rate.
    pub sample_fps: f64,
    /// Which rules run.
    pub features: CameraFeatures,
    /// Zones.
    pub zones: Vec<Zone>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let delays: Vec<_> = (0..6).map(|a| b.delay(a).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn the_rate_follows_the_frames_and_falls_when_they_stop() {
        let start = std::time::Instant::now();
        let mut meter = RateMeter::default();
        assert_eq!(meter.per_second(start), 0.0);
        for i in 0..20 {
            meter.tick(start + std::time::Duration::from_millis(200 * i));
        }
        let last = start + std::time::Duration::from_millis(200 * 19);
        assert!((meter.per_second(last) - 5.0).abs() < 1e-6);
        let later = last + std::time::Duration::from_secs(10);
        assert!(
            (meter.per_second(later) - 0.1).abs() < 1e-6,
            "no frame for 10 s"
        );
    }

    #[test]
    fn a_snapshot_reads_the_counters_and_the_state_at_one_moment() {
        let runtime = CameraRuntime::default();
        let now = std::time::Instant::now();
        let idle = runtime.snapshot(now);
        assert!(!idle.running && idle.source.is_empty() && idle.last_frame_at.is_none());
        assert_eq!(idle.counts, CameraCounts::default());
        assert!(!idle.moving());
        runtime.counters.sampled.store(7, Ordering::Relaxed);
        runtime.counters.held.store(3, Ordering::Relaxed);
        runtime.counters.persons.store(2, Ordering::Relaxed);
        runtime.running.store(true, Ordering::Relaxed);
        *runtime.source.lock().unwrap() = "push".into();
        let busy = runtime.snapshot(now);
        assert!(busy.running);
        assert_eq!(busy.source, "push");
        assert_eq!(
            (busy.counts.sampled, busy.counts.held, busy.persons),
            (7, 3, 2)
        );
        // A snapshot is a copy: later changes do not reach it.
        runtime.counters.sampled.store(8, Ordering::Relaxed);
        assert_eq!(busy.counts.sampled, 7);
    }
}
