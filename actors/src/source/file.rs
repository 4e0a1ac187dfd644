//! Video files as cameras: `file:///absolute/path/clip.mp4`, with optional query parameters
//! `loop=true|false` (default false: the file is read once), `realtime=true|false` (default
//! true: frames come at the file's own pace, like a camera; false: as fast as the analysis takes
//! them, none dropped) and `start=<RFC 3339 time>` (the capture time of the first frame; default
//! when the source opens). A frame's capture time is `start` plus its offset in the file (its
//! timestamp, relative to the first frame), plus the length of the earlier passes when looping,
//! so times keep increasing.
//!
//! Any container and codec the system's FFmpeg decodes is read, on a decoder thread that
//! converts only sampled frames to RGB. Files may be read only under the node's allowed folders
//! ([`resolve_allowed`]), after resolving symbolic links and `..`. A non-looping file ends with
//! [`SourceError::Finished`], which ends the camera instead of restarting it.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use super::convert::RgbConverter;
use super::{CameraCounters, FrameOutcome, FrameSource, Sampler, SourceError, SourceFrame};
use crate::frame::Frame;

/// Demuxers that are refused although FFmpeg opens them: playlists and lists that read other
/// files or URLs (which would escape the allowed folders), and text shown as ANSI art.
const REFUSED_FORMATS: &[&str] = &[
    "hls",
    "applehttp",
    "concat",
    "dash",
    "webm_dash_manifest",
    "ffmetadata",
    "tty",
];

/// A `file://` camera source, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct FileUrl {
    /// The file (absolute, percent-decoded, not yet resolved).
    pub path: PathBuf,
    /// Start again at the end (`loop=true`).
    pub looping: bool,
    /// Pace frames to the file's rate (`realtime=true`, the default).
    pub realtime: bool,
    /// The capture time of the first frame (`start=`); `None`: when the source opens.
    pub start: Option<DateTime<Utc>>,
}

fn boolean(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("`{key}` must be `true` or `false`, not `{value}`")),
    }
}

/// Parses `file:///absolute/path?loop=…&realtime=…&start=…` (host empty or `localhost`, path
/// and `start` percent-decoded). The error says what is wrong, for the API's `source` field.
pub fn parse_url(source: &str) -> Result<FileUrl, String> {
    let rest = source
        .strip_prefix("file://")
        .ok_or("a file source starts with `file://`")?;
    if source.chars().any(|c| c <= ' ' || c == '\u{7f}') {
        return Err("URL must not contain whitespace or control characters".into());
    }
    if source.contains('#') {
        return Err("a file URL takes no `#` fragment".into());
    }
    let slash = rest
        .find('/')
        .ok_or("a file URL needs an absolute path: file:///folder/clip.mp4")?;
    let (host, rest) = rest.split_at(slash);
    if !host.is_empty() && host != "localhost" {
        return Err(format!(
            "a file URL names a local file: no host (or `localhost`), not `{host}`"
        ));
    }
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let path = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| "the path is not UTF-8 once percent-decoded".to_string())?;
    if path.contains('\0') {
        return Err("the path must not contain NUL".into());
    }
    if path.ends_with('/') {
        return Err("the path names a folder, not a file".into());
    }
    let mut url = FileUrl {
        path: PathBuf::from(path.as_ref()),
        looping: false,
        realtime: true,
        start: None,
    };
    let mut seen: Vec<&str> = vec![];
    for pair in query.unwrap_or_default().split('&') {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("query parameter `{pair}` has no value (`{pair}=…`)"))?;
        if seen.contains(&key) {
            return Err(format!("query parameter `{key}` is given twice"));
        }
        seen.push(key);
        match key {
            "loop" => url.looping = boolean(key, value)?,
            "realtime" => url.realtime = boolean(key, value)?,
            "start" => {
                let text = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
                let start = DateTime::parse_from_rfc3339(&text).map_err(|e| {
                    format!("`start` must be an RFC 3339 time (2026-01-02T03:04:05Z): {e}")
                })?;
                url.start = Some(start.with_timezone(&Utc));
            }
            other => {
                return Err(format!(
                    "unknown query parameter `{other}` (a file source takes loop, realtime and start)"
                ));
            }
        }
    }
    Ok(url)
}

/// `path` with symbolic links and `..` resolved: the deepest existing ancestor is
/// canonicalised and the rest (plain names only) appended, so a file that does not exist yet
/// still resolves.
fn resolve(path: &Path) -> Result<PathBuf, String> {
    let mut existing = path.to_path_buf();
    let mut missing = vec![];
    let base = loop {
        match existing.canonicalize() {
            Ok(base) => break base,
            Err(_) => {
                let name = existing.file_name().map(|n| n.to_os_string());
                if !existing.pop() {
                    return Err(format!("`{}` cannot be resolved", path.display()));
                }
                match name {
                    Some(name) => missing.push(name),
                    None => return Err(format!("`{}` cannot be resolved", path.display())),
                }
            }
        }
    };
    let mut resolved = base;
    for name in missing.into_iter().rev() {
        match Path::new(&name).components().next() {
            Some(Component::Normal(_)) => resolved.push(name),
            _ => {
                return Err(format!(
                    "`{}` holds `..` or `.` past the part that exists",
                    path.display()
                ));
            }
        }
    }
    Ok(resolved)
}

/// `path` resolved (symbolic links and `..`), when it lies inside one of `dirs` (themselves
/// resolved); the error names the allowed folders.
pub fn resolve_allowed(path: &Path, dirs: &[PathBuf]) -> Result<PathBuf, String> {
    if !path.is_absolute() {
        return Err(format!("`{}` is not an absolute path", path.display()));
    }
    let resolved = resolve(path)?;
    let allowed: Vec<PathBuf> = dirs
        .iter()
        .map(|d| resolve(d).unwrap_or_else(|_| d.clone()))
        .collect();
    if allowed.iter().any(|d| resolved.starts_with(d)) {
        return Ok(resolved);
    }
    let names: Vec<String> = allowed.iter().map(|d| d.display().to_string()).collect();
    Err(format!(
        "`{}` is outside the folders file cameras may read ({}); put the file in one of them or add its folder to `video_dirs`",
        path.display(),
        if names.is_empty() {
            "none configured".to_string()
        } else {
            names.join(", ")
        }
    ))
}

/// Checks a `file://` source against the allowed folders, as opening it would.
pub fn check(source: &str, dirs: &[PathBuf]) -> Result<PathBuf, SourceError> {
    let url = parse_url(source).map_err(SourceError::InvalidUrl)?;
    resolve_allowed(&url.path, dirs).map_err(SourceError::InvalidUrl)
}

/// What the decoder thread needs.
struct Job {
    path: PathBuf,
    looping: bool,
    realtime: bool,
    start: DateTime<Utc>,
    sample_fps: f64,
    counters: Arc<CameraCounters>,
    label: Arc<std::sync::Mutex<String>>,
}

/// A video file read as a camera.
pub struct FileSource {
    url: FileUrl,
    path: PathBuf,
    sample_fps: f64,
    counters: Arc<CameraCounters>,
    frames: Option<mpsc::Receiver<Result<Frame, SourceError>>>,
    /// With `realtime=false`: the outcome of the frame yielded last, awaited before the next.
    pending: Option<oneshot::Receiver<FrameOutcome>>,
    described: Arc<std::sync::Mutex<String>>,
}

impl FileSource {
    /// A source for `source` (a `file://` URL) if it lies inside `dirs`, sampled at
    /// `sample_fps`. The file is opened by the decoder thread when the first frame is asked for.
    pub fn new(
        source: &str,
        sample_fps: f64,
        counters: Arc<CameraCounters>,
        dirs: &[PathBuf],
    ) -> Result<Self, SourceError> {
        let url = parse_url(source).map_err(SourceError::InvalidUrl)?;
        let path = resolve_allowed(&url.path, dirs).map_err(SourceError::InvalidUrl)?;
        Ok(Self {
            url,
            path,
            sample_fps,
            counters,
            frames: None,
            pending: None,
            described: Arc::new(std::sync::Mutex::new("file".into())),
        })
    }

    fn open(&mut self) -> Result<(), SourceError> {
        let (tx, rx) = mpsc::channel(2);
        let job = Job {
            path: self.path.clone(),
            looping: self.url.looping,
            realtime: self.url.realtime,
            start: self.url.start.unwrap_or_else(Utc::now),
            sample_fps: self.sample_fps,
            counters: self.counters.clone(),
            label: self.described.clone(),
        };
        std::thread::Builder::new()
            .name("vigil-file".into())
            .spawn(move || {
                let end = match play(&job, &tx) {
                    Ok(Some(end)) | Err(end) => end,
                    // Nobody reads any more.
                    Ok(None) => return,
                };
                let _ = tx.blocking_send(Err(end));
            })
            .map_err(|e| SourceError::Decode(format!("cannot start a decoder thread: {e}")))?;
        self.frames = Some(rx);
        Ok(())
    }
}

/// How one read of the file went.
struct Pass {
    /// Pictures decoded.
    decoded: u64,
    /// Seconds from its first frame to the end of its last.
    duration: f64,
    /// Why it stopped early, when the file is damaged past its first frames.
    damage: Option<String>,
}

/// Reads the file (again and again when looping). `Ok(None)`: the receiver went away;
/// `Ok(Some(end))`: the end to report.
fn play(
    job: &Job,
    frames: &mpsc::Sender<Result<Frame, SourceError>>,
) -> Result<Option<SourceError>, SourceError> {
    ffmpeg_next::init()
        .map_err(|e| SourceError::Decode(format!("FFmpeg failed to initialise: {e}")))?;
    let mut sampler = Sampler::new(job.sample_fps);
    let mut rgb = RgbConverter::default();
    let opened = Instant::now();
    let mut offset = 0.0;
    loop {
        let Some(pass) = play_once(job, frames, &mut sampler, &mut rgb, opened, offset)? else {
            return Ok(None);
        };
        if pass.decoded == 0 {
            return Err(SourceError::Decode(format!(
                "no picture could be decoded from `{}`: the file is truncated or damaged{}",
                job.path.display(),
                pass.damage.map(|d| format!(" ({d})")).unwrap_or_default()
            )));
        }
        offset += pass.duration;
        if !job.looping {
            let label = job.label.lock().expect("describe lock").clone();
            return Ok(Some(SourceError::Finished(match pass.damage {
                None => format!("end of the file ({label}, {offset:.1} s)"),
                Some(d) => format!("the file ends early after {offset:.1} s ({label}): {d}"),
            })));
        }
    }
}

/// Opens the file and decodes it once, starting its timeline at `offset` seconds. `None`: the
/// receiver went away.
fn play_once(
    job: &Job,
    frames: &mpsc::Sender<Result<Frame, SourceError>>,
    sampler: &mut Sampler,
    rgb: &mut RgbConverter,
    opened: Instant,
    offset: f64,
) -> Result<Option<Pass>, SourceError> {
    let shown = job.path.display();
    let mut options = ffmpeg_next::Dictionary::new();
    // Only the file itself: no URL or other protocol a container might point at.
    options.set("protocol_whitelist", "file");
    match std::fs::metadata(&job.path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Err(SourceError::Connect(format!("`{shown}` is not a file"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SourceError::Connect(format!("`{shown}` does not exist")));
        }
        Err(e) => {
            return Err(SourceError::Connect(format!(
                "`{shown}` cannot be read: {e}"
            )));
        }
    }
    let mut input =
        ffmpeg_next::format::input_with_dictionary(&job.path, options).map_err(|e| {
            SourceError::Decode(format!(
                "`{shown}` is not a readable video (truncated, or not a video file): {e}"
            ))
        })?;
    let format = input.format().name().to_string();
    if format
        .split(',')
        .any(|name| REFUSED_FORMATS.contains(&name))
    {
        return Err(SourceError::Unsupported(format!(
            "`{shown}` is a `{format}` file, not a video"
        )));
    }
    let stream = input
        .streams()
        .best(ffmpeg_next::media::Type::Video)
        .ok_or_else(|| SourceError::Unsupported(format!("`{shown}` has no video stream")))?;
    let index = stream.index();
    let time_base = f64::from(stream.time_base());
    let rate = stream.avg_frame_rate();
    let interval = if rate.numerator() > 0 && rate.denominator() > 0 {
        1.0 / f64::from(rate)
    } else {
        0.0
    };
    let context = ffmpeg_next::codec::Context::from_parameters(stream.parameters())
        .map_err(|e| SourceError::Decode(format!("`{shown}`: {e}")))?;
    let mut decoder = context.decoder().video().map_err(|e| {
        SourceError::Unsupported(format!("`{shown}`: no decoder for its video: {e}"))
    })?;
    let codec = decoder.id().name();

    let mut pass = Pass {
        decoded: 0,
        duration: 0.0,
        damage: None,
    };
    let mut first: Option<f64> = None;
    let mut last = 0.0f64;
    let mut picture = ffmpeg_next::frame::Video::empty();
    let mut at_end = false;
    while !at_end {
        let mut packet = ffmpeg_next::Packet::empty();
        match packet.read(&mut input) {
            Ok(()) => {
                if packet.stream() != index {
                    continue;
                }
                if let Err(e) = decoder.send_packet(&packet) {
                    tracing::debug!(file = %shown, error = %e, "decoder refused a packet");
                    job.counters.damaged.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
            Err(ffmpeg_next::Error::Eof) => {
                at_end = true;
                let _ = decoder.send_eof();
            }
            Err(e) => {
                pass.damage = Some(format!("reading `{shown}`: {e}"));
                at_end = true;
                let _ = decoder.send_eof();
            }
        }
        while decoder.receive_frame(&mut picture).is_ok() {
            job.counters.frames_in.fetch_add(1, Ordering::Relaxed);
            pass.decoded += 1;
            let stamp = picture.timestamp().or(picture.pts());
            let secs = match stamp {
                Some(ts) => ts as f64 * time_base,
                None => first.unwrap_or(0.0) + last + interval,
            };
            let origin = *first.get_or_insert(secs);
            // Offsets never go back, so capture times keep increasing.
            last = (secs - origin).max(last);
            let t = offset + last;
            if !sampler.keep(t) {
                continue;
            }
            job.counters.sampled.fetch_add(1, Ordering::Relaxed);
            if rgb.is_new_geometry(&picture) {
                *job.label.lock().expect("describe lock") =
                    format!("file {codec} {}x{}", picture.width(), picture.height());
            }
            let image = rgb.convert(&picture)?;
            if job.realtime && !wait_until(opened + Duration::from_secs_f64(t), frames) {
                return Ok(None);
            }
            let frame = Frame {
                image: Arc::new(image),
                captured_at: job.start + chrono::Duration::microseconds((t * 1e6).round() as i64),
            };
            if frames.blocking_send(Ok(frame)).is_err() {
                return Ok(None);
            }
        }
    }
    pass.duration = if pass.decoded == 0 {
        0.0
    } else {
        last + interval
    };
    Ok(Some(pass))
}

/// Sleeps until `due`, a little at a time so a closed receiver stops the thread soon; false
/// when the receiver went away.
fn wait_until(due: Instant, frames: &mpsc::Sender<Result<Frame, SourceError>>) -> bool {
    loop {
        if frames.is_closed() {
            return false;
        }
        let now = Instant::now();
        if now >= due {
            return true;
        }
        std::thread::sleep((due - now).min(Duration::from_millis(200)));
    }
}

#[async_trait::async_trait]
impl FrameSource for FileSource {
    async fn next_frame(&mut self) -> Result<SourceFrame, SourceError> {
        if self.frames.is_none() {
            self.open()?;
        }
        if let Some(previous) = self.pending.take() {
            // Analysed, failed or dropped: either way the slot is free for the next frame.
            let _ = previous.await;
        }
        let frames = self.frames.as_mut().expect("opened above");
        match frames.recv().await {
            Some(Ok(frame)) => {
                let reply = (!self.url.realtime).then(|| {
                    let (tx, rx) = oneshot::channel();
                    self.pending = Some(rx);
                    tx
                });
                Ok(SourceFrame {
                    reply,
                    ..SourceFrame::new(frame)
                })
            }
            Some(Err(e)) => Err(e),
            None => Err(SourceError::Ended),
        }
    }

    fn describe(&self) -> String {
        self.described.lock().expect("describe lock").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ffmpeg(args: &[&str], out: &Path) {
        let status = std::process::Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y"])
            .args(args)
            .arg(out)
            .status()
            .expect("ffmpeg runs (scripts/setup installs it)");
        assert!(status.success(), "ffmpeg {args:?}");
    }

    /// `seconds` of ffmpeg's test pattern at 10 fps, 160x120, H.264 in MP4.
    fn clip(dir: &Path, seconds: u32) -> PathBuf {
        let path = dir.join("clip.mp4");
        ffmpeg(
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=160x120:rate=10",
                "-t",
                &seconds.to_string(),
                "-c:v",
                "libx264",
                "-pix_fmt",
                "yuv420p",
            ],
            &path,
        );
        path
    }

    fn url(path: &Path, query: &str) -> String {
        format!("file://{}{query}", path.display())
    }

    fn start() -> DateTime<Utc> {
        "2026-01-02T03:04:05Z".parse().unwrap()
    }

    /// Reads frames until the source ends (or `max` frames); answers each frame's reply.
    async fn read(source: &mut FileSource, max: usize) -> (Vec<Frame>, Option<SourceError>) {
        let mut got = vec![];
        while got.len() < max {
            match source.next_frame().await {
                Ok(f) => {
                    if let Some(reply) = f.reply {
                        let _ = reply.send(FrameOutcome::not_sampled());
                    }
                    got.push(f.frame);
                }
                Err(e) => return (got, Some(e)),
            }
        }
        (got, None)
    }

    #[tokio::test]
    async fn a_clip_decodes_at_the_sampling_rate_with_times_from_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = clip(dir.path(), 3);
        let counters = Arc::new(CameraCounters::default());
        let mut source = FileSource::new(
            &url(&path, "?realtime=false&start=2026-01-02T03:04:05Z"),
            5.0,
            counters.clone(),
            &[dir.path().to_path_buf()],
        )
        .unwrap();
        let (frames, end) = read(&mut source, 1000).await;
        assert!(
            matches!(&end, Some(SourceError::Finished(why)) if why.contains("3.0 s")),
            "{end:?}"
        );
        // 30 frames at 10 fps, every second one kept at 5 fps.
        assert_eq!(frames.len(), 15);
        assert_eq!(counters.frames_in.load(Ordering::Relaxed), 30);
        assert_eq!(counters.sampled.load(Ordering::Relaxed), 15);
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(
                f.captured_at,
                start() + chrono::Duration::milliseconds(200 * i as i64)
            );
            assert_eq!((f.image.width, f.image.height), (160, 120));
        }
        assert_eq!(source.describe(), "file h264 160x120");
    }

    #[tokio::test]
    async fn realtime_paces_frames_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = clip(dir.path(), 1);
        let mut source = FileSource::new(
            &url(&path, ""),
            10.0,
            Arc::default(),
            &[dir.path().to_path_buf()],
        )
        .unwrap();
        let began = Instant::now();
        let before = Utc::now();
        let (frames, end) = read(&mut source, 1000).await;
        assert!(matches!(end, Some(SourceError::Finished(_))), "{end:?}");
        assert_eq!(frames.len(), 10);
        // The last frame is 0.9 s into the file.
        assert!(
            began.elapsed() >= Duration::from_millis(850),
            "{:?}",
            began.elapsed()
        );
        let span = frames[9].captured_at - frames[0].captured_at;
        assert_eq!(span, chrono::Duration::milliseconds(900));
        assert!(frames[0].captured_at >= before - chrono::Duration::seconds(1));
    }

    #[tokio::test]
    async fn a_looping_clip_keeps_going_with_increasing_times() {
        let dir = tempfile::tempdir().unwrap();
        let path = clip(dir.path(), 1);
        let mut source = FileSource::new(
            &url(
                &path,
                "?loop=true&realtime=false&start=2026-01-02T03:04:05Z",
            ),
            5.0,
            Arc::default(),
            &[dir.path().to_path_buf()],
        )
        .unwrap();
        let (frames, end) = read(&mut source, 16).await;
        assert!(end.is_none(), "a looping file never ends: {end:?}");
        // Three passes of 1 s and then some; one frame each 200 ms throughout.
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(
                f.captured_at,
                start() + chrono::Duration::milliseconds(200 * i as i64),
                "frame {i}"
            );
        }
    }

    #[tokio::test]
    async fn truncated_and_non_video_files_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = clip(dir.path(), 2);
        let truncated = dir.path().join("truncated.mp4");
        std::fs::write(&truncated, &std::fs::read(&path).unwrap()[..4096]).unwrap();
        let text = dir.path().join("notes.mp4");
        std::fs::write(&text, "these are notes, not a video\n".repeat(20)).unwrap();
        let missing = dir.path().join("missing.mp4");
        for (file, want) in [
            (&truncated, "truncated"),
            (&text, "not a video"),
            (&missing, "does not exist"),
        ] {
            let mut source =
                FileSource::new(&url(file, ""), 5.0, Arc::default(), &[dir.path().into()]).unwrap();
            let (frames, end) = read(&mut source, 10).await;
            assert!(frames.is_empty());
            let end = end.expect("refused");
            assert!(
                !matches!(end, SourceError::Finished(_)),
                "an error, not an end: {end}"
            );
            assert!(end.to_string().contains(want), "{file:?}: {end}");
        }
    }

    #[test]
    fn urls_parse_with_their_options() {
        let u = parse_url(
            "file:///v/a%20b.mp4?loop=true&realtime=false&start=2026-01-02T04:04:05%2B01:00",
        )
        .unwrap();
        assert_eq!(u.path, PathBuf::from("/v/a b.mp4"));
        assert!(u.looping && !u.realtime);
        assert_eq!(u.start, Some(start()));
        let u = parse_url("file://localhost/v/a.mkv?start=2026-01-02T03:04:05Z").unwrap();
        assert!(!u.looping && u.realtime);
        assert_eq!(u.start, Some(start()));
        for (bad, why) in [
            ("file://host/v/a.mp4", "no host"),
            ("file://v.mp4", "absolute path"),
            ("file:///v/", "folder"),
            ("file:///v/a.mp4?loop=yes", "`loop` must be"),
            ("file:///v/a.mp4?speed=2", "unknown query parameter `speed`"),
            ("file:///v/a.mp4?loop=true&loop=false", "twice"),
            ("file:///v/a.mp4?start=yesterday", "RFC 3339"),
            ("file:///v/a.mp4?loop", "no value"),
            ("file:///v/a.mp4#t=3", "fragment"),
            ("file:///v/%FF.mp4", "UTF-8"),
            ("file:///v/a%00.mp4", "NUL"),
        ] {
            let err = parse_url(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn only_files_inside_the_allowed_folders_resolve() {
        let root = tempfile::tempdir().unwrap();
        let videos = root.path().join("videos");
        let other = root.path().join("other");
        std::fs::create_dir_all(&videos).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("secret.mp4"), b"x").unwrap();
        std::os::unix::fs::symlink(other.join("secret.mp4"), videos.join("link.mp4")).unwrap();
        let dirs = [videos.clone()];
        let ok = resolve_allowed(&videos.join("clip.mp4"), &dirs).unwrap();
        assert_eq!(ok, videos.canonicalize().unwrap().join("clip.mp4"));
        for bad in [
            videos.join("../other/secret.mp4"),
            videos.join("link.mp4"),
            other.join("secret.mp4"),
            videos.join("new/../../other/x.mp4"),
        ] {
            let err = resolve_allowed(&bad, &dirs).unwrap_err();
            assert!(
                err.contains("outside the folders") || err.contains(".."),
                "{bad:?}: {err}"
            );
        }
        let err = resolve_allowed(&other.join("secret.mp4"), &dirs).unwrap_err();
        assert!(
            err.contains(&videos.canonicalize().unwrap().display().to_string()),
            "{err}"
        );
        assert!(resolve_allowed(&videos.join("a.mp4"), &[]).is_err());
    }
}
