//! Clips: the video around an incident, cut from a camera's own compressed stream without
//! decoding or encoding it again.
//!
//! A source that receives compressed packets (RTSP) hands each one to its camera's
//! [`Recorder`] through a [`ClipSink`]; any other camera's actor hands it the frames it
//! samples, which the recorder encodes to H.264 ([`PictureEncoder`]). The recorder's thread
//! keeps the last seconds in a [`PreRoll`]; when the camera actor says an incident or an
//! appearance needs covering ([`Recorder::cover`]), it starts a clip at the pre-roll's first
//! keyframe and writes every packet until the post-roll after the latest finding, capped at a
//! maximum length. With continuous recording on, it also writes every packet into
//! fixed-length segments, each starting at a keyframe. Finished clips come back as
//! [`FinishedClip`]s (an MP4 file under a temporary name) for the actor to store as a
//! content-addressed blob and name in a `clip.recorded` event.

pub mod encode;
pub mod mp4;
pub mod preroll;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

pub use encode::PictureEncoder;
pub use mp4::{ClipError, Mp4Writer};
pub use preroll::PreRoll;

/// Messages that may wait for the recorder's thread before packets are dropped.
const QUEUE: usize = 1024;

/// The folder under the blob store's root where clips are written before they are finished;
/// what is left there at start-up is a crash's leftover ([`clean_partials`]).
pub const PARTIAL_DIR: &str = ".clips-partial";

/// One compressed access unit of a stream.
#[derive(Debug, Clone)]
pub struct Packet {
    /// Its bytes (Annex B, with parameter sets before keyframes).
    pub data: Arc<[u8]>,
    /// Seconds since the stream's first packet.
    pub t: f64,
    /// When it was captured (the camera's clock as the frames see it).
    pub at: DateTime<Utc>,
    /// Whether a decoder can start at it.
    pub keyframe: bool,
}

impl Packet {
    /// A packet `t` seconds into a stream that started at the Unix epoch (tests).
    pub fn at_seconds(data: Vec<u8>, t: f64, keyframe: bool) -> Self {
        Self {
            data: data.into(),
            t,
            at: DateTime::UNIX_EPOCH + chrono::Duration::microseconds((t * 1e6) as i64),
            keyframe,
        }
    }
}

/// A video codec a clip keeps as it came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipCodec {
    /// H.264 / AVC.
    H264,
    /// H.265 / HEVC.
    H265,
}

impl ClipCodec {
    /// FFmpeg's id of it.
    pub fn id(self) -> ffmpeg_next::codec::Id {
        match self {
            ClipCodec::H264 => ffmpeg_next::codec::Id::H264,
            ClipCodec::H265 => ffmpeg_next::codec::Id::HEVC,
        }
    }

    /// Its name in events and the API (`h264`, `h265`).
    pub fn as_str(self) -> &'static str {
        match self {
            ClipCodec::H264 => "h264",
            ClipCodec::H265 => "h265",
        }
    }
}

impl fmt::Display for ClipCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a stream's packets are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipFormat {
    /// Their codec.
    pub codec: ClipCodec,
    /// Picture width in pixels.
    pub width: u32,
    /// Picture height in pixels.
    pub height: u32,
}

/// How clips are cut.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipSettings {
    /// Seconds of stream kept before the moment that starts a clip.
    pub pre_roll_seconds: f64,
    /// Seconds a clip runs on after the latest finding of what it covers.
    pub post_roll_seconds: f64,
    /// The longest clip, in seconds; what goes on longer continues in a new clip.
    pub max_seconds: f64,
    /// The most bytes one camera's pre-roll may hold.
    pub pre_roll_max_bytes: usize,
    /// Continuous recording: every packet goes into segments of about this many seconds
    /// (each cut at the first keyframe past it). `None`: only clips around what is covered.
    pub segment_seconds: Option<f64>,
}

impl Default for ClipSettings {
    fn default() -> Self {
        Self {
            pre_roll_seconds: 10.0,
            post_roll_seconds: 10.0,
            max_seconds: 300.0,
            pre_roll_max_bytes: 32 << 20,
            segment_seconds: None,
        }
    }
}

/// A clip whose file is written and closed.
#[derive(Debug, Clone)]
pub struct FinishedClip {
    /// The MP4 file (under [`PARTIAL_DIR`]); the receiver moves it into the blob store.
    pub path: PathBuf,
    /// What it holds.
    pub format: ClipFormat,
    /// Capture time of its first packet.
    pub started_at: DateTime<Utc>,
    /// Capture time of its last packet.
    pub ended_at: DateTime<Utc>,
    /// Seconds from its first packet to the end of its last.
    pub duration_seconds: f64,
    /// Packets in it.
    pub packets: u64,
    /// The incidents it covers.
    pub incidents: Vec<String>,
    /// The tracks it shows: those of its incidents and the appearances it covers.
    pub tracks: Vec<String>,
    /// A segment of continuous recording.
    pub continuous: bool,
}

/// What a clip is cut for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Covered {
    /// An incident, with the tracks it involves.
    Incident {
        /// Its id.
        id: String,
        /// The tracks of the finding.
        tracks: Vec<String>,
    },
    /// A person's appearance (a camera that records appearance clips).
    Track(String),
}

enum Input {
    Format(ClipFormat),
    Packet(Packet),
    Picture(crate::frame::Frame),
    Interrupted,
    Cover {
        what: Covered,
        latest: DateTime<Utc>,
    },
    Finish,
}

/// Where a source hands its packets to its camera's recorder. Never blocks: when the
/// recorder's thread is behind, packets are dropped and the open clip ends.
#[derive(Clone)]
pub struct ClipSink {
    tx: Sender<Input>,
}

impl ClipSink {
    /// The stream's format, sent when the source connects and whenever it changes.
    pub fn format(&self, format: ClipFormat) {
        let _ = self.tx.try_send(Input::Format(format));
    }

    /// The next packet.
    pub fn packet(&self, packet: Packet) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Input::Packet(packet)) {
            let _ = self.tx.try_send(Input::Interrupted);
        }
    }

    /// Packets were lost or the stream stopped: the open clip ends at the last packet received,
    /// the pre-roll starts again at the next keyframe.
    pub fn interrupted(&self) {
        let _ = self.tx.try_send(Input::Interrupted);
    }
}

/// A camera's clip recorder: a thread that keeps its pre-roll and writes its clips. Dropping
/// it (with every [`ClipSink`]) or [`Recorder::finish`] ends the open clip.
pub struct Recorder {
    tx: Sender<Input>,
}

impl Recorder {
    /// Starts a recorder writing under `dir` (created), reporting each finished clip to
    /// `finished`.
    pub fn start(
        camera_id: &str,
        dir: &Path,
        settings: ClipSettings,
        finished: tokio::sync::mpsc::UnboundedSender<FinishedClip>,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let (dir, camera) = (dir.to_path_buf(), camera_id.to_string());
        std::thread::Builder::new()
            .name("vigil-clips".into())
            .spawn(move || Cutter::new(dir, settings).run(&camera, rx, finished))?;
        Ok(Self { tx })
    }

    /// A sink for the camera's source.
    pub fn sink(&self) -> ClipSink {
        ClipSink {
            tx: self.tx.clone(),
        }
    }

    /// Covers `what` until its latest finding plus the post-roll: starts a clip when none is
    /// open, else extends the open one.
    pub fn cover(&self, what: Covered, latest_finding: DateTime<Utc>) {
        let _ = self.tx.try_send(Input::Cover {
            what,
            latest: latest_finding,
        });
    }

    /// A sampled frame of a camera without a compressed stream, to encode.
    pub fn picture(&self, frame: crate::frame::Frame) {
        let _ = self.tx.try_send(Input::Picture(frame));
    }

    /// Ends the open clip and segment now (the camera stops).
    pub fn finish(&self) {
        let _ = self.tx.try_send(Input::Finish);
    }
}

/// An open clip.
struct Open {
    writer: Mp4Writer,
    path: PathBuf,
    format: ClipFormat,
    started_at: DateTime<Utc>,
    last_at: DateTime<Utc>,
    until: DateTime<Utc>,
    incidents: BTreeSet<String>,
    tracks: BTreeSet<String>,
}

impl Open {
    /// Starts a file under `dir` holding `packets` (the first a keyframe), open until `until`.
    fn start<'a>(
        dir: &Path,
        camera: &str,
        format: ClipFormat,
        mut packets: impl Iterator<Item = &'a Packet>,
        until: DateTime<Utc>,
    ) -> Option<Self> {
        let first = packets.next()?;
        let path = dir.join(format!("{camera}-{}.mp4", uuid::Uuid::now_v7().simple()));
        let mut writer = match Mp4Writer::create(&path, &format) {
            Ok(writer) => writer,
            Err(e) => {
                tracing::warn!(camera, error = %e, "cannot start a clip");
                let _ = std::fs::remove_file(&path);
                return None;
            }
        };
        let mut last_at = first.at;
        for packet in std::iter::once(first).chain(packets) {
            if let Err(e) = writer.write(packet) {
                tracing::warn!(camera, error = %e, "cannot write a clip");
                drop(writer);
                let _ = std::fs::remove_file(&path);
                return None;
            }
            last_at = packet.at;
        }
        Some(Self {
            writer,
            path,
            format,
            started_at: first.at,
            last_at,
            until,
            incidents: BTreeSet::new(),
            tracks: BTreeSet::new(),
        })
    }

    fn add(&mut self, what: Covered) {
        match what {
            Covered::Incident { id, tracks } => {
                self.incidents.insert(id);
                self.tracks.extend(tracks);
            }
            Covered::Track(track) => {
                self.tracks.insert(track);
            }
        }
    }

    /// Writes `packet`; `false` when the file failed (the clip ends).
    fn write(&mut self, camera: &str, packet: &Packet) -> bool {
        match self.writer.write(packet) {
            Ok(()) => {
                self.last_at = packet.at;
                true
            }
            Err(e) => {
                tracing::warn!(camera, error = %e, "a clip ends early");
                false
            }
        }
    }

    /// Closes the file: the finished clip, or `None` when it could not be finished.
    fn finish(self, camera: &str, continuous: bool) -> Option<FinishedClip> {
        let (duration_seconds, packets) = (self.writer.duration(), self.writer.packets());
        if let Err(e) = self.writer.finish() {
            tracing::warn!(camera, error = %e, "a clip could not be finished");
            let _ = std::fs::remove_file(&self.path);
            return None;
        }
        Some(FinishedClip {
            path: self.path,
            format: self.format,
            started_at: self.started_at,
            ended_at: self.last_at,
            duration_seconds,
            packets,
            incidents: self.incidents.into_iter().collect(),
            tracks: self.tracks.into_iter().collect(),
            continuous,
        })
    }
}

/// The recorder thread's state.
struct Cutter {
    dir: PathBuf,
    settings: ClipSettings,
    format: Option<ClipFormat>,
    pre_roll: PreRoll,
    open: Option<Open>,
    /// The open segment of continuous recording.
    segment: Option<Open>,
    /// Encodes sampled frames, for cameras without a compressed stream.
    encoder: Option<PictureEncoder>,
}

impl Cutter {
    fn new(dir: PathBuf, settings: ClipSettings) -> Self {
        Self {
            pre_roll: PreRoll::new(settings.pre_roll_seconds, settings.pre_roll_max_bytes),
            dir,
            settings,
            format: None,
            open: None,
            segment: None,
            encoder: None,
        }
    }

    fn run(
        &mut self,
        camera: &str,
        rx: Receiver<Input>,
        finished: tokio::sync::mpsc::UnboundedSender<FinishedClip>,
    ) {
        let report = |clips: Vec<FinishedClip>| {
            for clip in clips {
                let _ = finished.send(clip);
            }
        };
        // A clip whose stream sends nothing for its post-roll (at least two seconds) of wall
        // time ends: a pushing client stopped, or a source stalls (and will fail).
        let quiet = Duration::from_secs_f64(self.settings.post_roll_seconds.max(2.0));
        let mut last_input = std::time::Instant::now();
        loop {
            let input = match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(input) => input,
                Err(RecvTimeoutError::Timeout) => {
                    if (self.open.is_some() || self.segment.is_some())
                        && last_input.elapsed() >= quiet
                    {
                        report(self.close(camera));
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    report(self.close(camera));
                    return;
                }
            };
            if matches!(input, Input::Packet(_) | Input::Picture(_)) {
                last_input = std::time::Instant::now();
            }
            match input {
                Input::Format(format) => {
                    if self.format != Some(format) {
                        report(self.start_over(camera));
                        self.format = Some(format);
                    }
                }
                Input::Packet(packet) => report(self.packet(camera, packet)),
                Input::Picture(frame) => report(self.picture(camera, &frame)),
                Input::Interrupted => report(self.start_over(camera)),
                Input::Cover { what, latest } => self.cover(camera, what, latest),
                Input::Finish => report(self.close(camera)),
            }
        }
    }

    /// The stream starts over (interrupted, or another format): the open clip and segment end
    /// at their last packet and the pre-roll waits for the next keyframe.
    fn start_over(&mut self, camera: &str) -> Vec<FinishedClip> {
        let done = self.close(camera);
        self.pre_roll.clear();
        done
    }

    fn cover(&mut self, camera: &str, what: Covered, latest: DateTime<Utc>) {
        let until = latest + seconds(self.settings.post_roll_seconds);
        if self.open.is_none() {
            let Some(format) = self.format else { return };
            self.open = Open::start(&self.dir, camera, format, self.pre_roll.packets(), until);
        }
        if let Some(open) = &mut self.open {
            open.until = open.until.max(until);
            open.add(what);
        }
    }

    fn packet(&mut self, camera: &str, packet: Packet) -> Vec<FinishedClip> {
        let mut done = Vec::new();
        if let Some(open) = &mut self.open {
            let cap = open.started_at + seconds(self.settings.max_seconds);
            if packet.at > open.until || packet.at > cap || !open.write(camera, &packet) {
                done.extend(self.open.take().and_then(|open| open.finish(camera, false)));
            }
        }
        if let (Some(length), Some(format)) = (self.settings.segment_seconds, self.format) {
            // A segment starts at a keyframe and is cut at the first keyframe past its length.
            let due = self.segment.as_ref().is_some_and(|segment| {
                packet.keyframe && packet.at >= segment.started_at + seconds(length)
            });
            if due {
                done.extend(self.segment.take().and_then(|s| s.finish(camera, true)));
            }
            let failed = match &mut self.segment {
                Some(segment) => !segment.write(camera, &packet),
                None if packet.keyframe => {
                    let far = packet.at + seconds(length.max(1.0) * 10.0);
                    self.segment =
                        Open::start(&self.dir, camera, format, std::iter::once(&packet), far);
                    false
                }
                None => false,
            };
            if failed {
                done.extend(self.segment.take().and_then(|s| s.finish(camera, true)));
            }
        }
        self.pre_roll.push(packet);
        done
    }

    /// Encodes a sampled frame and takes its packets; a frame of another size than the last
    /// starts a new stream (and ends the open clip).
    fn picture(&mut self, camera: &str, frame: &crate::frame::Frame) -> Vec<FinishedClip> {
        let mut done = Vec::new();
        let size = (frame.image.width, frame.image.height);
        if self.encoder.as_ref().map(PictureEncoder::source_size) != Some(size) {
            done.extend(self.start_over(camera));
            // A keyframe about every two seconds at the usual sample rates.
            match PictureEncoder::new(size.0, size.1, 4) {
                Ok(encoder) => {
                    self.format = Some(encoder.format());
                    self.encoder = Some(encoder);
                }
                Err(e) => {
                    tracing::warn!(camera, error = %e, "cannot encode frames for clips");
                    self.encoder = None;
                    self.format = None;
                    return done;
                }
            }
        }
        let encoder = self.encoder.as_mut().expect("set above");
        match encoder.encode(frame) {
            Ok(packets) => {
                for packet in packets {
                    done.extend(self.packet(camera, packet));
                }
            }
            Err(e) => {
                tracing::warn!(camera, error = %e, "a frame was not encoded for clips");
                done.extend(self.close(camera));
                self.encoder = None;
            }
        }
        done
    }

    /// Finishes the open clip and segment, if any.
    fn close(&mut self, camera: &str) -> Vec<FinishedClip> {
        let clip = self.open.take().and_then(|open| open.finish(camera, false));
        let segment = self.segment.take().and_then(|s| s.finish(camera, true));
        clip.into_iter().chain(segment).collect()
    }
}

fn seconds(s: f64) -> chrono::Duration {
    chrono::Duration::milliseconds((s * 1e3) as i64)
}

/// Whether a camera source URL gives a compressed stream that clips can be cut from.
pub fn from_compressed_stream(source: &str) -> bool {
    let scheme = source.split("://").next().unwrap_or_default();
    scheme.eq_ignore_ascii_case("rtsp") || scheme.eq_ignore_ascii_case("rtsps")
}

/// Splits an H.264 Annex B byte stream with an access unit delimiter before each picture
/// (as ffmpeg writes with `-x264-params aud=1`) into access units: `(bytes, keyframe)`.
pub fn access_units(data: &[u8]) -> Vec<(Vec<u8>, bool)> {
    // NAL start positions (with a fourth leading zero when there is one) and their types.
    let mut nals = Vec::new();
    let mut i = 0;
    while i + 3 < data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            let start = if i > 0 && data[i - 1] == 0 { i - 1 } else { i };
            nals.push((start, data[i + 3] & 0x1f));
            i += 3;
        } else {
            i += 1;
        }
    }
    let starts: Vec<usize> = nals
        .iter()
        .filter(|(_, t)| *t == 9)
        .map(|(s, _)| *s)
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(k, &start)| {
            let end = starts.get(k + 1).copied().unwrap_or(data.len());
            let keyframe = nals.iter().any(|(s, t)| *s >= start && *s < end && *t == 5);
            (data[start..end].to_vec(), keyframe)
        })
        .collect()
}

/// Removes what a crash left under `dir` (clips never finished). Returns how many files.
pub fn clean_partials(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// Test streams.
#[cfg(test)]
pub(crate) mod testing {
    /// `n` frames of 160×120 H.264 at 10 fps made by ffmpeg from its test pattern (Annex B,
    /// an access unit delimiter before each frame, no B-frames, an IDR every `gop` frames),
    /// split into access units: `(bytes, keyframe)`.
    pub fn h264(n: usize, gop: usize) -> Vec<(Vec<u8>, bool)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.h264");
        let status = std::process::Command::new("ffmpeg")
            .args(["-loglevel", "error", "-f", "lavfi"])
            .args(["-i", "testsrc=size=160x120:rate=10"])
            .args(["-frames:v", &n.to_string(), "-c:v", "libx264", "-bf", "0"])
            .args(["-g", &gop.to_string(), "-keyint_min", &gop.to_string()])
            .args(["-sc_threshold", "0", "-x264-params", "aud=1", "-f", "h264"])
            .arg(&path)
            .status()
            .expect("ffmpeg runs (scripts/setup installs it)");
        assert!(status.success());
        super::access_units(&std::fs::read(&path).unwrap())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ffprobe(path: &Path, what: &[&str]) -> serde_json::Value {
        let out = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-print_format", "json"])
            .args(what)
            .arg(path)
            .output()
            .expect("ffprobe runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The MD5 of every decoded picture of `path` (read as `format`, or guessed).
    fn pictures(path: &Path, format: Option<&str>) -> Vec<String> {
        let mut cmd = std::process::Command::new("ffmpeg");
        cmd.args(["-v", "error"]);
        if let Some(format) = format {
            cmd.args(["-f", format]);
        }
        let out = cmd
            .arg("-i")
            .arg(path)
            .args(["-fps_mode", "passthrough", "-f", "framemd5", "-"])
            .output()
            .expect("ffmpeg runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.rsplit(',').next().unwrap().trim().to_string())
            .collect()
    }

    fn packets() -> Vec<Packet> {
        testing::h264(60, 10)
            .into_iter()
            .enumerate()
            .map(|(i, (data, key))| Packet::at_seconds(data, i as f64 / 10.0, key))
            .collect()
    }

    fn incident(id: &str, tracks: &[&str]) -> Covered {
        Covered::Incident {
            id: id.into(),
            tracks: tracks.iter().map(|t| t.to_string()).collect(),
        }
    }

    const FORMAT: ClipFormat = ClipFormat {
        codec: ClipCodec::H264,
        width: 160,
        height: 120,
    };

    #[test]
    fn a_clip_runs_from_the_pre_roll_keyframe_to_the_post_roll_with_the_stream_as_it_came() {
        let dir = tempfile::tempdir().unwrap();
        let mut cutter = Cutter::new(
            dir.path().to_path_buf(),
            ClipSettings {
                pre_roll_seconds: 1.5,
                post_roll_seconds: 1.0,
                ..ClipSettings::default()
            },
        );
        cutter.format = Some(FORMAT);
        let packets = packets();
        let mut finished = vec![];
        for (i, packet) in packets.iter().enumerate() {
            if i == 30 {
                // An incident at the last packet seen (2.9 s): the pre-roll reaches back to the
                // keyframe at 1.0 s, the post-roll to 3.9 s.
                cutter.cover("cam", incident("inc-1", &["t1"]), packets[29].at);
                cutter.cover("cam", incident("inc-2", &["t2", "t1"]), packets[25].at);
                assert!(cutter.open.is_some());
            }
            finished.extend(cutter.packet("cam", packet.clone()));
        }
        assert_eq!(finished.len(), 1, "one clip, for both incidents");
        let clip = &finished[0];
        assert_eq!(
            clip.incidents,
            vec!["inc-1".to_string(), "inc-2".to_string()]
        );
        assert_eq!(
            clip.tracks,
            ["t1", "t2"],
            "the incidents' tracks, once each"
        );
        assert!(!clip.continuous);
        assert_eq!(clip.packets, 30, "packets 10 to 39");
        assert_eq!(
            (clip.started_at, clip.ended_at),
            (packets[10].at, packets[39].at)
        );
        assert!((clip.duration_seconds - 3.0).abs() < 1e-6);

        let probe = ffprobe(
            &clip.path,
            &["-show_streams", "-show_format", "-show_packets"],
        );
        let stream = &probe["streams"][0];
        assert_eq!(stream["codec_name"], "h264");
        assert_eq!(
            (stream["width"].as_u64(), stream["height"].as_u64()),
            (Some(160), Some(120))
        );
        let duration: f64 = probe["format"]["duration"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((duration - 3.0).abs() < 0.11, "{duration} s");
        let shown = probe["packets"].as_array().unwrap();
        assert_eq!(shown.len(), 30);
        assert!(
            shown[0]["flags"].as_str().unwrap().starts_with('K'),
            "starts at a keyframe"
        );
        let pts: Vec<i64> = shown.iter().map(|p| p["pts"].as_i64().unwrap()).collect();
        assert!(pts.windows(2).all(|w| w[0] < w[1]), "monotonic: {pts:?}");
        // The index is at the front: a browser can seek before the whole file arrived.
        let bytes = std::fs::read(&clip.path).unwrap();
        let moov = bytes.windows(4).position(|w| w == b"moov").unwrap();
        let mdat = bytes.windows(4).position(|w| w == b"mdat").unwrap();
        assert!(moov < mdat, "faststart");

        // Not re-encoded: every picture decodes exactly as the source's own packets do.
        let source = dir.path().join("source.h264");
        let raw: Vec<u8> = packets[10..40]
            .iter()
            .flat_map(|p| p.data.iter().copied())
            .collect();
        std::fs::write(&source, raw).unwrap();
        let clip_pictures = pictures(&clip.path, None);
        assert_eq!(clip_pictures.len(), 30);
        assert_eq!(clip_pictures, pictures(&source, Some("h264")));
    }

    #[test]
    fn a_clip_is_capped_and_an_interrupted_stream_finishes_the_open_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut cutter = Cutter::new(
            dir.path().to_path_buf(),
            ClipSettings {
                pre_roll_seconds: 0.0,
                post_roll_seconds: 100.0,
                max_seconds: 2.0,
                ..ClipSettings::default()
            },
        );
        let packets = packets();
        // Without a format nothing is cut.
        cutter.packet("cam", packets[0].clone());
        cutter.cover("cam", incident("inc", &[]), packets[0].at);
        assert!(cutter.open.is_none());
        cutter.format = Some(FORMAT);
        let mut finished = vec![];
        for packet in &packets[..35] {
            finished.extend(cutter.packet("cam", packet.clone()));
            if packet.t == 0.5 {
                cutter.cover("cam", incident("inc", &[]), packet.at);
            }
        }
        // Started at the keyframe at 0 s, capped at 2 s.
        assert_eq!(finished.len(), 1);
        assert_eq!(finished[0].packets, 21);
        // A later finding opens the next clip, which the interruption finishes.
        cutter.cover("cam", Covered::Track("t9".into()), packets[34].at);
        cutter.packet("cam", packets[35].clone());
        let last = cutter
            .close("cam")
            .pop()
            .expect("finished at the last packet received");
        assert_eq!(last.tracks, ["t9"], "an appearance clip");
        assert!(last.incidents.is_empty());
        assert_eq!(last.ended_at, packets[35].at);
        assert_eq!(
            ffprobe(&last.path, &["-show_streams"])["streams"][0]["codec_name"],
            "h264"
        );
        // Both files are whole; nothing is left half-written.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        assert_eq!(clean_partials(dir.path()), 2);
    }

    #[test]
    fn continuous_recording_cuts_keyframe_aligned_segments_beside_the_clips() {
        let dir = tempfile::tempdir().unwrap();
        let mut cutter = Cutter::new(
            dir.path().to_path_buf(),
            ClipSettings {
                pre_roll_seconds: 0.5,
                post_roll_seconds: 0.5,
                segment_seconds: Some(1.5),
                ..ClipSettings::default()
            },
        );
        cutter.format = Some(FORMAT);
        // The stream starts between keyframes: the first segment waits for one.
        let packets = packets();
        let mut finished = vec![];
        for packet in &packets[3..45] {
            finished.extend(cutter.packet("cam", packet.clone()));
            if packet.t == 2.5 {
                cutter.cover("cam", incident("inc", &["t1"]), packet.at);
            }
        }
        finished.extend(cutter.close("cam"));
        let (segments, clips): (Vec<_>, Vec<_>) = finished.iter().partition(|c| c.continuous);
        // Keyframes every second: segments of 2 s (1.5 s, cut at the next keyframe), from
        // 1.0 s; the last one ends where the stream stopped (4.4 s).
        let spans: Vec<_> = segments
            .iter()
            .map(|s| (s.started_at, s.ended_at))
            .collect();
        assert_eq!(
            spans,
            [
                (packets[10].at, packets[29].at),
                (packets[30].at, packets[44].at)
            ]
        );
        assert!(segments.iter().all(|s| s.incidents.is_empty()));
        // The incident's clip is its own file: from the keyframe at 2.0 s to 3.0 s.
        assert_eq!(clips.len(), 1);
        assert_eq!(
            (clips[0].started_at, clips[0].ended_at),
            (packets[20].at, packets[30].at)
        );
        // Every segment plays and starts at a keyframe; the two hold every packet once.
        let mut all = vec![];
        for segment in &segments {
            let probe = ffprobe(&segment.path, &["-show_packets"]);
            let shown = probe["packets"].as_array().unwrap();
            assert!(shown[0]["flags"].as_str().unwrap().starts_with('K'));
            all.extend(pictures(&segment.path, None));
        }
        let source = dir.path().join("source.h264");
        let raw: Vec<u8> = packets[10..45]
            .iter()
            .flat_map(|p| p.data.iter().copied())
            .collect();
        std::fs::write(&source, raw).unwrap();
        assert_eq!(all, pictures(&source, Some("h264")));
    }
}
