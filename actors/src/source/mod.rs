//! Frame sources behind one trait: RTSP ([`rtsp`]), MJPEG and snapshot polling over HTTP
//! ([`http`]), video files ([`file`]) and push ([`push`]: frames uploaded through the API). A
//! source decodes, samples at the camera's rate by frame timestamp, and yields only sampled
//! frames as RGB.
//!
//! Between a source and its camera actor sits a [`FrameSlot`]: one frame, newest wins, older
//! ones dropped and counted, so a slow model never backs up a live stream.

pub mod convert;
pub mod file;
pub mod http;
pub mod push;
pub mod rtsp;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{Notify, oneshot};

use crate::frame::{Frame, ImageError};
use crate::pool::Analysis;

/// Why a source stopped yielding frames.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// The URL is not one this source can open.
    #[error("invalid source URL: {0}")]
    InvalidUrl(String),
    /// Could not connect, or the connection broke.
    #[error("connection: {0}")]
    Connect(String),
    /// The server answered with something unusable (HTTP status, RTSP error, wrong content).
    #[error("protocol: {0}")]
    Protocol(String),
    /// The stream's codec cannot be decoded.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A picture could not be decoded.
    #[error("decode: {0}")]
    Decode(String),
    /// Nothing arrived for too long.
    #[error("no frame for {0:?}")]
    Timeout(Duration),
    /// The stream ended.
    #[error("stream ended")]
    Ended,
    /// A video file was read to its end (and does not loop): the camera ends, it is not
    /// restarted. Says how far it got.
    #[error("{0}")]
    Finished(String),
}

impl From<ImageError> for SourceError {
    fn from(e: ImageError) -> Self {
        Self::Decode(e.to_string())
    }
}

/// A sampled frame as a source yields it.
#[derive(Debug)]
pub struct SourceFrame {
    /// The frame.
    pub frame: Frame,
    /// For pushed frames and files read as fast as analysis goes: where to send the outcome
    /// of processing it.
    pub reply: Option<oneshot::Sender<FrameOutcome>>,
    /// An uploaded picture (a face photo or crop may show no person): faces are looked for
    /// even where no person was found.
    pub uploaded: bool,
}

impl SourceFrame {
    /// A frame from a live source: nobody waits for its outcome, and faces are looked for only
    /// where persons are.
    pub fn new(frame: Frame) -> Self {
        Self {
            frame,
            reply: None,
            uploaded: false,
        }
    }
}

/// A camera's frame source. `next_frame` yields sampled frames until an error ends the
/// source; the camera actor then fails and its supervisor reopens it with backoff.
#[async_trait::async_trait]
pub trait FrameSource: Send + 'static {
    /// Connects (when not yet connected) and returns the next sampled frame.
    async fn next_frame(&mut self) -> Result<SourceFrame, SourceError>;
    /// What is connected, for status reasons (`rtsp h264 768x576`).
    fn describe(&self) -> String;
    /// Hands every compressed packet it receives to `sink` from now on, for clips. Returns
    /// whether it can: only a source that receives a compressed stream (RTSP) does.
    fn record_into(&mut self, _sink: crate::clips::ClipSink) -> bool {
        false
    }
}

/// Per-camera ingest counters, shared by the source, the actor and the API.
#[derive(Debug, Default)]
pub struct CameraCounters {
    /// Frames decoded (or uploaded), sampled or not.
    pub frames_in: AtomicU64,
    /// Frames kept by sampling.
    pub sampled: AtomicU64,
    /// Sampled frames never analysed: replaced in the hand-off by a newer one, or refused by a
    /// full inference queue.
    pub dropped: AtomicU64,
    /// Frames analysed.
    pub analysed: AtomicU64,
    /// Sampled frames the models did not see: nothing moved and no track was alive (motion
    /// gating).
    pub still: AtomicU64,
    /// Sampled frames in which the motion detector found movement.
    pub with_motion: AtomicU64,
    /// Analysed frames in which the person detector looked only at regions around what moved
    /// (counted in `analysed` too).
    pub in_regions: AtomicU64,
    /// Sampled frames the models did not see although tracks were alive: nothing moved near
    /// any of them, so they were held where they were and the rules saw them there.
    pub held: AtomicU64,
    /// Capture time of the newest sampled frame handled (analysed or still), milliseconds
    /// since the epoch (0: none).
    pub last_frame_ms: AtomicI64,
    /// Frames lost in transport (RTSP sequence gaps) or skipped until the next keyframe.
    pub damaged: AtomicU64,
    /// Persons in view now: the tracker's confirmed tracks after the newest analysed frame
    /// (0 while the actor is not running).
    pub persons: AtomicU64,
    /// Face descriptors computed for its tracks (each track's face is described only where it
    /// improved, at most every `face_descriptor_every_frames` frames).
    pub faces_described: AtomicU64,
    /// Pictures (evidence frames, entry and exit frames, face crops) not stored because the
    /// media folder was full: what they belonged to was recorded without them, or not at all.
    pub media_dropped: AtomicU64,
    /// Events not recorded because the event store could not be reached (track starts,
    /// findings, matches; track ends wait in a bounded buffer and count here when it
    /// overflows).
    pub events_dropped: AtomicU64,
}

impl CameraCounters {
    /// The newest handled frame's capture time.
    pub fn last_frame_at(&self) -> Option<DateTime<Utc>> {
        match self.last_frame_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => DateTime::from_timestamp_millis(ms),
        }
    }
}

/// Keeps frames at most `fps` per second by their timestamps: a frame is kept when at least
/// `1/fps` has passed since the last kept one (with a little slack for jittery clocks).
#[derive(Debug, Clone)]
pub struct Sampler {
    interval: f64,
    next_due: Option<f64>,
}

impl Sampler {
    /// A sampler for `fps` frames per second (0 or less keeps every frame).
    pub fn new(fps: f64) -> Self {
        Self {
            interval: if fps > 0.0 { 1.0 / fps } else { 0.0 },
            next_due: None,
        }
    }

    /// Whether the frame at `t` seconds (any origin, non-decreasing) is kept.
    pub fn keep(&mut self, t: f64) -> bool {
        match self.next_due {
            Some(due) if t + 0.1 * self.interval < due => false,
            Some(due) => {
                // Stay on the grid when frames come on time; restart it after a gap.
                let next = due + self.interval;
                self.next_due = Some(if next <= t { t + self.interval } else { next });
                true
            }
            None => {
                self.next_due = Some(t + self.interval);
                true
            }
        }
    }
}

/// The hand-off between a source and its actor: one frame, newest wins.
#[derive(Debug, Default)]
pub struct FrameSlot {
    frame: std::sync::Mutex<Option<SourceFrame>>,
    ready: Notify,
}

impl FrameSlot {
    /// Puts a frame, replacing (and returning, for counting) any frame not yet taken.
    pub fn put(&self, frame: SourceFrame) -> Option<SourceFrame> {
        let old = self
            .frame
            .lock()
            .expect("frame slot lock poisoned")
            .replace(frame);
        self.ready.notify_one();
        old
    }

    /// Takes the frame if there is one.
    pub fn try_take(&self) -> Option<SourceFrame> {
        self.frame.lock().expect("frame slot lock poisoned").take()
    }

    /// Waits for a frame and takes it.
    pub async fn take(&self) -> SourceFrame {
        loop {
            let notified = self.ready.notified();
            if let Some(frame) = self.frame.lock().expect("frame slot lock poisoned").take() {
                return frame;
            }
            notified.await;
        }
    }
}

/// Opens the source of a camera: the seam between the actors and the transports, which tests
/// replace.
pub trait SourceFactory: Send + Sync + 'static {
    /// A source for `source` (the camera's URL or `push`), sampling at `sample_fps`.
    fn open(
        &self,
        camera_id: &str,
        source: &str,
        sample_fps: f64,
        counters: Arc<CameraCounters>,
    ) -> Result<Box<dyn FrameSource>, SourceError>;

    /// Whether this node may open `source` at all, checked when a camera is registered or
    /// changed (a file outside the allowed folders is refused). Connecting is not tried.
    fn check_source(&self, _source: &str) -> Result<(), SourceError> {
        Ok(())
    }
}

/// How long a live source may stay silent before it counts as lost.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The real transports: `rtsp://`, `http(s)://` (MJPEG when the server streams
/// `multipart/x-mixed-replace`, else snapshot polling), `file://` (video files inside
/// `video_dirs`) and `push` (frames from the API, through `push`'s registry).
pub struct Transports {
    /// Where push cameras' senders are registered for the API.
    pub push: Arc<push::PushRegistry>,
    /// The folders `file://` cameras may read.
    pub video_dirs: Vec<PathBuf>,
}

impl SourceFactory for Transports {
    fn open(
        &self,
        camera_id: &str,
        source: &str,
        sample_fps: f64,
        counters: Arc<CameraCounters>,
    ) -> Result<Box<dyn FrameSource>, SourceError> {
        if source == "push" {
            return Ok(Box::new(self.push.open(camera_id, sample_fps, counters)));
        }
        let scheme = source
            .split("://")
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match scheme.as_str() {
            "rtsp" | "rtsps" => Ok(Box::new(rtsp::RtspSource::new(
                source, sample_fps, counters,
            )?)),
            "http" | "https" => Ok(Box::new(http::HttpSource::new(
                source, sample_fps, counters,
            )?)),
            "file" => Ok(Box::new(file::FileSource::new(
                source,
                sample_fps,
                counters,
                &self.video_dirs,
            )?)),
            _ => Err(SourceError::InvalidUrl(format!(
                "`{scheme}` is not a camera source scheme (rtsp, http, https, file or push)"
            ))),
        }
    }

    fn check_source(&self, source: &str) -> Result<(), SourceError> {
        if source.starts_with("file://") {
            file::check(source, &self.video_dirs)?;
        }
        Ok(())
    }
}

/// Parses a camera URL and takes its credentials out (percent-decoded), for the transport's
/// own authentication.
pub fn split_credentials(url: &str) -> Result<(url::Url, Option<(String, String)>), SourceError> {
    let mut url = url::Url::parse(url).map_err(|e| SourceError::InvalidUrl(e.to_string()))?;
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let credentials = (!url.username().is_empty()).then(|| {
        (
            decode(url.username()),
            decode(url.password().unwrap_or_default()),
        )
    });
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Ok((url, credentials))
}

/// What probing a camera URL found.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// What was connected (`rtsp h264 768x576`, `mjpeg 640x480`, `snapshot 1280x720`).
    pub source: String,
    /// Columns of the first frame.
    pub width: u32,
    /// Rows of the first frame.
    pub height: u32,
    /// Milliseconds from starting to connect to the first decoded frame.
    pub latency_ms: f64,
}

/// Connects to `url`, decodes one frame and reports what it found, within `timeout`.
pub async fn probe(
    factory: &dyn SourceFactory,
    url: &str,
    timeout: Duration,
) -> Result<(Probe, Frame), SourceError> {
    if url == "push" {
        return Err(SourceError::InvalidUrl(
            "a push camera receives uploads; there is nothing to connect to".into(),
        ));
    }
    let started = std::time::Instant::now();
    let mut source = factory.open("probe", url, 1000.0, Arc::default())?;
    let first = tokio::time::timeout(timeout, source.next_frame())
        .await
        .map_err(|_| SourceError::Timeout(timeout))??;
    let image = &first.frame.image;
    Ok((
        Probe {
            source: source.describe(),
            width: image.width,
            height: image.height,
            latency_ms: started.elapsed().as_secs_f64() * 1e3,
        },
        first.frame,
    ))
}

/// What became of one frame (answered to pushed frames).
#[derive(Debug, Clone, Default, Serialize)]
pub struct FrameOutcome {
    /// Whether sampling kept it (a frame closer than `1/sample_fps` to the last kept is not
    /// analysed).
    pub sampled: bool,
    /// What the models saw.
    pub analysis: Option<Analysis>,
    /// For each person in `analysis`, the track it belongs to (`None` while a track is not yet
    /// confirmed).
    pub tracks: Vec<Option<String>>,
    /// Tracks that started with this frame.
    pub started: Vec<String>,
    /// Tracks that ended with this frame.
    pub ended: Vec<String>,
    /// Incidents this frame opened or added evidence to.
    pub incidents: Vec<String>,
    /// Why it was not analysed, when it was not.
    pub error: Option<String>,
    /// Milliseconds from taking the frame to its outcome.
    pub processing_ms: f64,
    /// Global position of the last event this frame caused (tracks, matches, incidents);
    /// `None` when it caused none. Whoever answers with the ids above waits for the read
    /// models to reach it.
    pub position: Option<u64>,
}

impl FrameOutcome {
    /// The outcome of a frame sampling skipped.
    pub fn not_sampled() -> Self {
        Self::default()
    }

    /// The outcome of a sampled frame that could not be analysed.
    pub(crate) fn failed(error: String) -> Self {
        Self {
            sampled: true,
            error: Some(error),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_keeps_the_asked_rate_from_a_faster_stream() {
        let mut sampler = Sampler::new(2.0);
        let kept: Vec<usize> = (0..50).filter(|i| sampler.keep(*i as f64 / 25.0)).collect();
        // 2 s of 25 fps at 2 fps: one frame per 0.5 s grid step, taking a frame up to 10 % of
        // the interval early (12 at 0.48 s for 0.5 s, 49 at 1.96 s for 2 s).
        assert_eq!(kept, [0, 12, 24, 37, 49]);
    }

    #[test]
    fn sampling_restarts_after_a_gap_and_keeps_everything_slower_than_the_rate() {
        let mut sampler = Sampler::new(5.0);
        assert!(sampler.keep(0.0));
        assert!(sampler.keep(10.0), "first frame after a gap");
        assert!(!sampler.keep(10.05));
        assert!(sampler.keep(10.2));
        let mut slow = Sampler::new(5.0);
        assert!((0..10).all(|i| slow.keep(i as f64)));
    }

    #[tokio::test]
    async fn the_slot_keeps_the_newest_frame() {
        let slot = FrameSlot::default();
        let frame = |n: u8| {
            SourceFrame::new(Frame {
                image: Arc::new(crate::frame::RgbImage {
                    width: 1,
                    height: 1,
                    data: vec![n; 3],
                }),
                captured_at: Utc::now(),
            })
        };
        assert!(slot.put(frame(1)).is_none());
        let replaced = slot.put(frame(2)).expect("the first frame is replaced");
        assert_eq!(replaced.frame.image.data[0], 1);
        assert_eq!(slot.take().await.frame.image.data[0], 2);
        let slot = Arc::new(slot);
        let waiter = tokio::spawn({
            let slot = slot.clone();
            async move { slot.take().await.frame.image.data[0] }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        slot.put(frame(3));
        assert_eq!(waiter.await.unwrap(), 3);
    }
}
