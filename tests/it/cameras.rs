//! Camera ingest end to end: real RTSP (GStreamer), MJPEG and snapshot (a Python HTTP
//! server) cameras, video files and pushed frames of OpenCV's pedestrian clip go through the
//! camera actors, the inference pool (real models on the CPU) and the tracker into track events;
//! supervision restarts failed actors with backoff; bad uploads store nothing.
//!
//! The servers live in `tests/servers/`; `scripts/setup` installs what they need and fetches
//! the clip. These tests run one at a time (they share two CPU cores with the models).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use vigil::config::Config;
use vigil_schemas::RecordedEvent;

use crate::support::{
    TestDb, TestServer, Which, assert_error, assert_rebuild_equals_live, blob_count, call,
    free_port, repo_file, until,
};

/// One camera test at a time.
pub(crate) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn assets() -> PathBuf {
    vigil_models::default_assets_dir()
}

fn clip() -> PathBuf {
    let path = assets().join("images/vtest.avi");
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup (or scripts/fetch-assets)",
        path.display()
    );
    path
}

/// The first 30 s of the clip as JPEG files at 10 fps, made once per test run with ffmpeg.
fn clip_frames() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let status = std::process::Command::new("ffmpeg")
            .args(["-loglevel", "error", "-i"])
            .arg(clip())
            .args(["-t", "30", "-vf", "fps=10", "-q:v", "4"])
            .arg(dir.path().join("%04d.jpg"))
            .status()
            .expect("ffmpeg runs (scripts/setup installs it)");
        assert!(status.success(), "ffmpeg could not extract frames");
        dir
    })
    .path()
}

fn frame_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(clip_frames())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// A test server process that prints `READY <url>` when it listens; killed on drop.
struct Served {
    child: tokio::process::Child,
    url: String,
}

impl Served {
    async fn start(program: &str, args: &[String]) -> Self {
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{program} does not start: {e} (run scripts/setup)"));
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{program} {args:?} did not get ready in 30 s"))
            .unwrap()
            .unwrap_or_else(|| {
                panic!("{program} {args:?} exited before READY (run scripts/setup)")
            });
        let url = line
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("unexpected first line `{line}`"))
            .to_string();
        Self { child, url }
    }

    async fn rtsp(port: u16) -> Self {
        Self::rtsp_codec(port, "h264").await
    }

    async fn rtsp_codec(port: u16, codec: &str) -> Self {
        let args = vec![
            repo_file("tests/servers/rtsp_server.py")
                .display()
                .to_string(),
            "--codec".to_string(),
            codec.to_string(),
            "--port".into(),
            port.to_string(),
            "--file".into(),
            clip().display().to_string(),
        ];
        Self::start("/usr/bin/python3", &args).await
    }

    async fn mjpeg(user: &str, password: &str) -> Self {
        let args = vec![
            repo_file("tests/servers/mjpeg_server.py")
                .display()
                .to_string(),
            "--port".into(),
            "0".into(),
            "--frames".into(),
            clip_frames().display().to_string(),
            "--fps".into(),
            "10".into(),
            "--user".into(),
            user.into(),
            "--password".into(),
            password.into(),
        ];
        Self::start("python3", &args).await
    }

    async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

fn ingest_server_config(db: &TestDb) -> Config {
    Config {
        ingest: true,
        models_backend: vigil_models::BackendPreference::Cpu,
        camera_backoff_initial_ms: 200,
        camera_backoff_max_ms: 2000,
        ..db.config()
    }
}

async fn ingest_server(db: &TestDb) -> TestServer {
    TestServer::start(ingest_server_config(db)).await
}

async fn all_events(server: &TestServer) -> Vec<RecordedEvent> {
    events_in(&**server.app.store()).await
}

/// Every event of `store`, in order.
async fn events_in(store: &dyn vigil_schemas::EventStore) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.position;
        out.extend(page);
    }
    out
}

/// Events of `event_type` about `camera`.
async fn camera_events(server: &TestServer, camera: &str, event_type: &str) -> Vec<RecordedEvent> {
    all_events(server)
        .await
        .into_iter()
        .filter(|e| e.event_type == event_type && e.payload["camera_id"] == camera)
        .collect()
}

/// The statuses camera `id` reported, in order.
async fn statuses(server: &TestServer, id: &str) -> Vec<String> {
    camera_events(server, id, "camera.status_changed")
        .await
        .iter()
        .map(|e| e.payload["status"].as_str().unwrap().to_string())
        .collect()
}

async fn register(server: &TestServer, body: Value) {
    let res = server
        .req(Method::POST, "/api/v1/cameras")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
}

async fn camera(server: &TestServer, id: &str) -> Value {
    server
        .req(Method::GET, &format!("/api/v1/cameras/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Camera `id` as its read model shows it once it has applied the event at `position` (the
/// API's `min_position`): a status event is in the store before the projection applied it.
async fn camera_at(server: &TestServer, id: &str, position: u64) -> Value {
    let res = server
        .req(
            Method::GET,
            &format!("/api/v1/cameras/{id}?min_position={position}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// Waits for camera `id` to report `status` for the `nth` time (1-based); returns that
/// event's global position.
async fn wait_status(server: &TestServer, id: &str, status: &str, nth: usize, secs: u64) -> u64 {
    until(
        secs,
        &format!("camera `{id}` to report `{status}` (#{nth})"),
        || async {
            camera_events(server, id, "camera.status_changed")
                .await
                .iter()
                .filter(|e| e.payload["status"] == status)
                .nth(nth - 1)
                .map(|e| e.position)
        },
    )
    .await
}

/// Waits for `n` tracks of camera `id` to start.
async fn wait_tracks(server: &TestServer, id: &str, n: usize, secs: u64) -> Vec<RecordedEvent> {
    until(secs, &format!("{n} tracks on camera `{id}`"), || async {
        let started = camera_events(server, id, "appearance.started").await;
        (started.len() >= n).then_some(started)
    })
    .await
}

fn check_track_started(event: &RecordedEvent, camera: &str) {
    let p = &event.payload;
    let track = p["track_id"].as_str().unwrap();
    assert_eq!(event.stream, format!("track-{camera}-{track}"));
    assert_eq!(event.stream_version, 1);
    let b = &p["bbox"];
    let (x1, y1, x2, y2) = (
        b["x1"].as_f64().unwrap(),
        b["y1"].as_f64().unwrap(),
        b["x2"].as_f64().unwrap(),
        b["y2"].as_f64().unwrap(),
    );
    assert!(
        0.0 <= x1 && x1 < x2 && x2 <= 1.0 && 0.0 <= y1 && y1 < y2 && y2 <= 1.0,
        "{b}"
    );
    // Pedestrians are taller than wide.
    assert!(y2 - y1 > x2 - x1, "a person box is upright: {b}");
    assert!(p["score"].as_f64().unwrap() >= 0.35);
    assert_eq!(p["entry_frame"]["blob"].as_str().unwrap().len(), 64);
}

async fn media_is_jpeg(server: &TestServer, blob: &str) -> (u32, u32) {
    let res = server
        .req(Method::GET, &format!("/api/v1/media/{blob}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/jpeg");
    let image = vigil_actors::frame::decode(&res.bytes().await.unwrap()).expect("a JPEG");
    (image.width, image.height)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsp_camera_makes_tracks_goes_offline_when_the_server_dies_and_recovers() {
    let _serial = SERIAL.lock().await;
    let port = free_port();
    let rtsp = Served::rtsp(port).await;
    let db = TestDb::new(Which::Sqlite).await;
    let server = ingest_server(&db).await;

    // The probe sees the stream as it is.
    let res = server
        .req(Method::POST, "/api/v1/cameras/test")
        .json(&json!({"url": rtsp.url}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let probe: Value = res.json().await.unwrap();
    assert_eq!(probe["kind"], "rtsp");
    assert_eq!(probe["codec"], "h264");
    assert_eq!(
        (probe["width"].as_u64(), probe["height"].as_u64()),
        (Some(768), Some(576))
    );

    register(
        &server,
        json!({"id": "gate", "name": "Gate", "source": rtsp.url, "sample_fps": 2}),
    )
    .await;
    let online = wait_status(&server, "gate", "online", 1, 60).await;
    let started = wait_tracks(&server, "gate", 1, 120).await;
    check_track_started(&started[0], "gate");
    let blob = started[0].payload["entry_frame"]["blob"].as_str().unwrap();
    assert_eq!(media_is_jpeg(&server, blob).await, (768, 576));

    let dto = camera_at(&server, "gate", online).await;
    assert_eq!(dto["status"], "online", "{dto}");
    let ingest = &dto["ingest"];
    assert_eq!(ingest["running"], true);
    assert!(
        ingest["source"]
            .as_str()
            .unwrap()
            .starts_with("rtsp h264 768x576"),
        "{ingest}"
    );
    let (frames_in, sampled) = (
        ingest["frames_in"].as_u64().unwrap(),
        ingest["sampled"].as_u64().unwrap(),
    );
    // 10 fps decoded, 2 fps sampled.
    assert!(sampled >= 2 && frames_in >= 3 * sampled, "{ingest}");
    let snapshot = server
        .req(Method::GET, "/api/v1/cameras/gate/snapshot")
        .send()
        .await
        .unwrap();
    assert_eq!(snapshot.status(), 200);
    let image = vigil_actors::frame::decode(&snapshot.bytes().await.unwrap()).unwrap();
    assert_eq!((image.width, image.height), (768, 576));

    // The server dies: the camera goes offline and its open tracks end as lost.
    rtsp.kill().await;
    wait_status(&server, "gate", "offline", 1, 60).await;
    let ended = camera_events(&server, "gate", "appearance.ended").await;
    assert!(
        ended.iter().any(|e| e.payload["reason"] == "lost"),
        "open tracks end when the source is lost"
    );
    // Reconnect attempts fail while it is down: still offline, not error.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        statuses(&server, "gate").await.last().map(String::as_str),
        Some("offline")
    );

    // Back on the same port: online again, same process.
    let rtsp = Served::rtsp(port).await;
    wait_status(&server, "gate", "online", 2, 60).await;
    let seen = statuses(&server, "gate").await;
    assert_eq!(&seen[..3], ["online", "offline", "online"], "{seen:?}");
    let tracks_before = camera_events(&server, "gate", "appearance.started")
        .await
        .len();
    wait_tracks(&server, "gate", tracks_before + 1, 120).await;

    // Stopping the camera stops its actor and records it.
    let res = server
        .req(Method::POST, "/api/v1/cameras/gate/stop")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    wait_status(&server, "gate", "stopped", 1, 30).await;
    let supervision = server.app.supervision().expect("ingest runs");
    assert!(supervision.running().await.is_empty());
    rtsp.kill().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h265_rtsp_streams_decode() {
    let _serial = SERIAL.lock().await;
    let rtsp = Served::rtsp_codec(free_port(), "h265").await;
    let db = TestDb::new(Which::Sqlite).await;
    let server = ingest_server(&db).await;
    let res = server
        .req(Method::POST, "/api/v1/cameras/test")
        .json(&json!({"url": rtsp.url}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let probe: Value = res.json().await.unwrap();
    assert_eq!(probe["codec"], "h265", "{probe}");
    assert_eq!(
        (probe["width"].as_u64(), probe["height"].as_u64()),
        (Some(768), Some(576))
    );
    // A URL with nothing behind it: a clear error naming the failure.
    let res = server
        .req(Method::POST, "/api/v1/cameras/test")
        .json(&json!({"url": format!("rtsp://127.0.0.1:{}/none", free_port()), "timeout_ms": 2000}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "CAMERA_UNREACHABLE");
    assert_eq!(body["error"]["details"]["kind"], "connect", "{body}");
    rtsp.kill().await;
    server.stop().await;
}

/// The first clip `GET /api/v1/incidents/{id}` lists, waiting up to `secs` for one.
async fn first_clip(server: &TestServer, id: &str, secs: u64) -> Value {
    until(secs, &format!("a clip of incident {id}"), || async {
        let detail: Value = server
            .req(Method::GET, &format!("/api/v1/incidents/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        detail["clips"].as_array()?.first().cloned()
    })
    .await
}

/// `ffprobe`'s JSON of `path`.
fn ffprobe(path: &Path, what: &[&str]) -> Value {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json"])
        .args(what)
        .arg(path)
        .output()
        .expect("ffprobe runs (scripts/setup installs ffmpeg)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtsp_incident_gets_a_clip_of_the_cameras_own_stream() {
    let _serial = SERIAL.lock().await;
    let rtsp = Served::rtsp(free_port()).await;
    let db = TestDb::new(Which::Sqlite).await;
    let server = TestServer::start(Config {
        ingest: true,
        models_backend: vigil_models::BackendPreference::Cpu,
        clip_pre_roll_seconds: 2.0,
        clip_post_roll_seconds: 2.0,
        clip_max_seconds: 6.0,
        ..db.config()
    })
    .await;
    // Anyone on the walkway is an intruder.
    let res = server
        .req(Method::PATCH, "/api/v1/calibration")
        .json(&json!({"cameras": {"gate": {"intrusion_zones": ["walkway"]}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    register(
        &server,
        json!({"id": "gate", "name": "Gate", "source": rtsp.url, "sample_fps": 2,
               "features": {"intrusion": true},
               "zones": [{"name": "walkway", "polygon": [{"x": 0, "y": 0}, {"x": 1, "y": 0}, {"x": 1, "y": 1}, {"x": 0, "y": 1}]}]}),
    )
    .await;
    let incident = until(120, "an intrusion on `gate`", || async {
        incidents(&server, "gate", "intrusion")
            .await
            .into_iter()
            .next()
    })
    .await;
    let id = incident["id"].as_str().unwrap().to_string();
    // The clip is finished at most six seconds (its cap) after it started.
    let clip = first_clip(&server, &id, 60).await;
    assert_eq!(clip["camera_id"], "gate");
    assert_eq!(clip["codec"], "h264");
    assert_eq!(
        (clip["width"].as_u64(), clip["height"].as_u64()),
        (Some(768), Some(576))
    );
    let duration = clip["duration_seconds"].as_f64().unwrap();
    // Up to one group of pictures (1 s) of pre-roll beyond the two seconds, capped at six.
    assert!((1.0..=6.5).contains(&duration), "{clip}");
    let started: chrono::DateTime<chrono::Utc> =
        clip["started_at"].as_str().unwrap().parse().unwrap();
    let opened: chrono::DateTime<chrono::Utc> =
        incident["opened_at"].as_str().unwrap().parse().unwrap();
    assert!(
        started <= opened,
        "the clip starts before the incident: {clip} {incident}"
    );
    let recorded = camera_events(&server, "gate", "clip.recorded").await;
    assert_eq!(
        recorded[0].stream,
        format!("clip-{}", clip["id"].as_str().unwrap())
    );
    assert!(
        recorded[0].payload["incident_ids"]
            .as_array()
            .unwrap()
            .contains(&json!(id)),
        "{}",
        recorded[0].payload
    );

    // Served as video/mp4; ffprobe reads the camera's stream, all of it (10 fps, not the 2 fps
    // the models sample), from a keyframe, in order.
    let url = clip["url"].as_str().unwrap();
    let res = server.req(Method::GET, url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "video/mp4");
    let whole = res.bytes().await.unwrap();
    assert_eq!(whole.len() as u64, clip["bytes"].as_u64().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clip.mp4");
    std::fs::write(&file, &whole).unwrap();
    let probe = ffprobe(&file, &["-show_streams", "-show_format", "-show_packets"]);
    let stream = &probe["streams"][0];
    assert_eq!(stream["codec_name"], "h264");
    assert_eq!(
        (stream["width"].as_u64(), stream["height"].as_u64()),
        (Some(768), Some(576))
    );
    let probed: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (probed - duration).abs() < 0.25,
        "{probed} s against {duration} s"
    );
    let packets = probe["packets"].as_array().unwrap();
    assert_eq!(packets.len() as u64, clip["frames"].as_u64().unwrap());
    assert!(
        (packets.len() as f64 - duration * 10.0).abs() <= 2.0,
        "{} frames in {duration} s",
        packets.len()
    );
    assert!(packets[0]["flags"].as_str().unwrap().starts_with('K'));
    let pts: Vec<i64> = packets.iter().map(|p| p["pts"].as_i64().unwrap()).collect();
    assert!(pts.windows(2).all(|w| w[0] < w[1]), "{pts:?}");

    // A range, as a <video> element seeking into the middle asks for it.
    let middle = whole.len() / 2;
    let res = server
        .req(Method::GET, url)
        .header("Range", format!("bytes={middle}-{}", middle + 999))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.headers()["content-type"], "video/mp4");
    assert_eq!(
        res.headers()["content-range"],
        format!("bytes {middle}-{}/{}", middle + 999, whole.len()).as_str()
    );
    assert_eq!(
        &res.bytes().await.unwrap()[..],
        &whole[middle..middle + 1000]
    );
    // Nothing is left half-written once the camera stops.
    server
        .req(Method::POST, "/api/v1/cameras/gate/stop")
        .send()
        .await
        .unwrap();
    rtsp.kill().await;
    let partial = server.app.config().data_dir.join("blobs/.clips-partial");
    until(30, "no unfinished clip", || async {
        std::fs::read_dir(&partial)
            .map_or(true, |mut d| d.next().is_none())
            .then_some(())
    })
    .await;
    server.stop().await;
}

/// A camera's clips by time (`GET /cameras/{id}/recordings`).
async fn recordings(server: &TestServer, camera: &str) -> Vec<Value> {
    let res = server
        .req(Method::GET, &format!("/api/v1/cameras/{camera}/recordings"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let page: Value = res.json().await.unwrap();
    page["items"].as_array().unwrap().clone()
}

/// Fetches a clip and writes it to `dir`.
async fn fetch_clip(server: &TestServer, clip: &Value, dir: &Path) -> PathBuf {
    let res = server
        .req(Method::GET, clip["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let bytes = res.bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, clip["bytes"].as_u64().unwrap());
    let file = dir.join(format!("{}.mp4", clip["id"].as_str().unwrap()));
    std::fs::write(&file, &bytes).unwrap();
    file
}

/// Continuous recording and appearance clips on an RTSP camera, and a source that dies in the
/// middle of a clip: what was received is a finished, readable clip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtsp_camera_records_segments_and_appearances_and_a_dying_source_finishes_its_clip() {
    let _serial = SERIAL.lock().await;
    let rtsp = Served::rtsp(free_port()).await;
    let db = TestDb::new(Which::Sqlite).await;
    let server = TestServer::start(Config {
        ingest: true,
        models_backend: vigil_models::BackendPreference::Cpu,
        clip_pre_roll_seconds: 2.0,
        // Long enough that only the source's death ends the appearance's clip.
        clip_post_roll_seconds: 120.0,
        clip_max_seconds: 600.0,
        clip_continuous: true,
        clip_segment_seconds: 3.0,
        // A first connection refused by a slow test server (a loaded machine) is retried soon;
        // after the kill the retries find no server, so no new clip starts.
        camera_backoff_initial_ms: 1000,
        camera_backoff_max_ms: 2000,
        ..db.config()
    })
    .await;
    register(
        &server,
        json!({"id": "gate", "name": "Gate", "source": rtsp.url, "sample_fps": 2,
               "features": {"clip_appearances": true}}),
    )
    .await;
    let (_, camera) = call(&server, Method::GET, "/api/v1/cameras/gate", None).await;
    assert_eq!(camera["features"]["clip_appearances"], true, "{camera}");

    // Segments of about three seconds (cut at the next keyframe, one a second), each playable
    // from a keyframe.
    let segment = until(60, "a segment of continuous recording", || async {
        recordings(&server, "gate")
            .await
            .into_iter()
            .find(|c| c["continuous"] == true)
    })
    .await;
    let seconds = segment["duration_seconds"].as_f64().unwrap();
    assert!((2.9..=4.1).contains(&seconds), "{segment}");
    let dir = tempfile::tempdir().unwrap();
    let file = fetch_clip(&server, &segment, dir.path()).await;
    let probe = ffprobe(&file, &["-show_packets"]);
    let packets = probe["packets"].as_array().unwrap();
    assert_eq!(packets.len() as u64, segment["frames"].as_u64().unwrap());
    assert!(packets[0]["flags"].as_str().unwrap().starts_with('K'));

    // A person appears: the appearance's clip is open (its post-roll is two minutes) when the
    // camera's server dies.
    let started = wait_tracks(&server, "gate", 1, 120).await;
    let track = started[0].payload["track_id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(2)).await;
    rtsp.kill().await;
    let killed = chrono::Utc::now();
    let recorded = until(30, "the appearance's clip", || async {
        camera_events(&server, "gate", "clip.recorded")
            .await
            .into_iter()
            .find(|e| e.payload["continuous"] == false)
    })
    .await;
    let p = &recorded.payload;
    assert!(
        p["track_ids"].as_array().unwrap().contains(&json!(track)),
        "{p}"
    );
    assert!(p["incident_ids"].as_array().unwrap().is_empty(), "{p}");
    let ended: chrono::DateTime<chrono::Utc> = p["ended_at"].as_str().unwrap().parse().unwrap();
    // The server paces its stream in real time: the clip ends at the last packet received.
    assert!(
        ended <= killed + chrono::Duration::seconds(1),
        "ends at the last packet received: {p}"
    );
    let clip = until(30, "the clip in the camera's recordings", || async {
        recordings(&server, "gate")
            .await
            .into_iter()
            .find(|c| c["id"] == p["clip_id"])
    })
    .await;
    let file = fetch_clip(&server, &clip, dir.path()).await;
    let probe = ffprobe(&file, &["-show_format", "-show_packets"]);
    let packets = probe["packets"].as_array().unwrap();
    assert_eq!(packets.len() as u64, clip["frames"].as_u64().unwrap());
    assert!(packets[0]["flags"].as_str().unwrap().starts_with('K'));
    let probed: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        probed >= 2.0,
        "at least the pre-roll and two seconds: {probed} s"
    );
    // The open segment was finished too, and nothing is left half-written.
    let partial = server.app.config().data_dir.join("blobs/.clips-partial");
    until(30, "no unfinished clip", || async {
        std::fs::read_dir(&partial)
            .map_or(true, |mut d| d.next().is_none())
            .then_some(())
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mjpeg_and_snapshot_cameras_with_basic_auth_make_tracks() {
    let _serial = SERIAL.lock().await;
    let http = Served::mjpeg("op", "s3cret").await;
    let db = TestDb::new(Which::Sqlite).await;
    let server = ingest_server(&db).await;
    let authed = http.url.replace("http://", "http://op:s3cret@");

    // Probes: the stream, the snapshot, and a wrong password.
    for (path, kind) in [("/stream.mjpg", "mjpeg"), ("/snapshot.jpg", "snapshot")] {
        let res = server
            .req(Method::POST, "/api/v1/cameras/test")
            .json(&json!({"url": format!("{authed}{path}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let probe: Value = res.json().await.unwrap();
        assert_eq!(probe["kind"], kind, "{probe}");
        assert_eq!(probe["width"], 768);
    }
    let wrong = http.url.replace("http://", "http://op:wrong@");
    let res = server
        .req(Method::POST, "/api/v1/cameras/test")
        .json(&json!({"url": format!("{wrong}/stream.mjpg")}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "CAMERA_UNREACHABLE");
    assert_eq!(body["error"]["details"]["kind"], "protocol");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("401"),
        "{body}"
    );

    register(&server, json!({"id": "mjpeg", "name": "Hall", "source": format!("{authed}/stream.mjpg"), "sample_fps": 2})).await;
    register(&server, json!({"id": "still", "name": "Desk", "source": format!("{authed}/snapshot.jpg"), "sample_fps": 2})).await;
    for id in ["mjpeg", "still"] {
        wait_status(&server, id, "online", 1, 60).await;
        let started = wait_tracks(&server, id, 1, 120).await;
        check_track_started(&started[0], id);
    }
    let dto = camera(&server, "mjpeg").await;
    assert!(
        dto["ingest"]["source"]
            .as_str()
            .unwrap()
            .starts_with("mjpeg 768x576"),
        "{dto}"
    );
    let dto = camera(&server, "still").await;
    assert!(
        dto["ingest"]["source"]
            .as_str()
            .unwrap()
            .starts_with("snapshot 768x576"),
        "{dto}"
    );
    // Shutting down ends open tracks and records `stopped`.
    server.stop().await;
    let events = events_in(&*db.store().await).await;
    let stopped = events
        .iter()
        .filter(|e| e.event_type == "camera.status_changed" && e.payload["status"] == "stopped")
        .count();
    let ended_stopped = events
        .iter()
        .filter(|e| e.event_type == "appearance.ended" && e.payload["reason"] == "stopped")
        .count();
    assert_eq!(stopped, 2, "both cameras record `stopped` at shutdown");
    assert!(ended_stopped >= 1, "open tracks end at shutdown");
    http.kill().await;
}

/// Incidents of `kind` on `camera`, newest first (first page).
async fn incidents(server: &TestServer, camera: &str, kind: &str) -> Vec<Value> {
    let url = format!("/api/v1/incidents?camera_id={camera}&kind={kind}");
    let body: Value = server
        .req(Method::GET, &url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["items"].as_array().unwrap().clone()
}

/// Pushes the clip's first `n` frames (10 fps, their capture times from a minute ago) to push
/// camera `camera`, five a request; returns each request's `frames` answers.
async fn push_clip(server: &TestServer, camera: &str, n: usize) -> Vec<Vec<Value>> {
    let start = chrono::Utc::now() - chrono::Duration::seconds(60);
    let mut answers = vec![];
    for (batch, chunk) in frame_files()[..n].chunks(5).enumerate() {
        let parts: Vec<(String, Vec<u8>)> = chunk
            .iter()
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(p).unwrap(),
                )
            })
            .collect();
        let times: Vec<String> = (0..chunk.len())
            .map(|i| {
                (start + chrono::Duration::milliseconds(((batch * 5 + i) * 100) as i64))
                    .to_rfc3339()
            })
            .collect();
        let res = server
            .req(Method::POST, &format!("/api/v1/cameras/{camera}/frames"))
            .multipart(multipart(&parts, &times))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
        let body: Value = res.json().await.unwrap();
        answers.push(body["frames"].as_array().unwrap().clone());
    }
    answers
}

fn multipart(files: &[(String, Vec<u8>)], timestamps: &[String]) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new();
    for (name, bytes) in files {
        form = form.part(
            "files",
            reqwest::multipart::Part::bytes(bytes.clone())
                .file_name(name.clone())
                .mime_str("image/jpeg")
                .unwrap(),
        );
    }
    for t in timestamps {
        form = form.text("timestamps", t.clone());
    }
    form
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_frames_make_tracks_and_bad_uploads_store_nothing() {
    let _serial = SERIAL.lock().await;
    let db = TestDb::new(Which::Sqlite).await;
    let server = ingest_server(&db).await;
    register(
        &server,
        json!({"id": "edge", "name": "Edge", "source": "push", "sample_fps": 5,
               "zones": [{"name": "left", "polygon": [{"x": 0, "y": 0}, {"x": 0.5, "y": 0}, {"x": 0.5, "y": 1}, {"x": 0, "y": 1}]}]}),
    )
    .await;
    wait_until_running(&server, "edge").await;

    // 30 frames of the clip at 10 fps, pushed 5 at a time with their capture times: sampling
    // at 5 fps keeps every other one.
    let files = frame_files();
    let mut sampled = 0;
    let mut with_tracks = 0;
    for frames in push_clip(&server, "edge", 30).await {
        assert_eq!(frames.len(), 5);
        for f in &frames {
            if f["sampled"] == true {
                sampled += 1;
                let analysis = &f["analysis"];
                assert!(
                    !analysis["detections"].as_array().unwrap().is_empty(),
                    "people in every frame: {f}"
                );
                if analysis["detections"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|d| d.get("track_id").is_some())
                {
                    with_tracks += 1;
                }
            }
        }
    }
    assert_eq!(sampled, 15, "5 of every 10 frames per second are sampled");
    assert!(
        with_tracks >= 10,
        "tracks are confirmed from the second frame on ({with_tracks})"
    );
    let started = camera_events(&server, "edge", "appearance.started").await;
    assert!(started.len() >= 2, "several pedestrians: {}", started.len());
    for event in &started {
        check_track_started(event, "edge");
    }
    let dto = camera(&server, "edge").await;
    assert_eq!(dto["ingest"]["frames_in"], 30);
    assert_eq!(dto["ingest"]["sampled"], 15);
    assert_eq!(dto["ingest"]["analysed"], 15);
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("vigil_camera_analysed_total{camera=\"edge\"} 15"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigil_camera_frames_in_total{camera=\"edge\"} 30"),
        "{metrics}"
    );
    let analysed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("vigil_inference_frames_total "))
        .expect("pool metrics")
        .parse()
        .unwrap();
    assert!(analysed >= 15, "{metrics}");
    assert!(
        metrics.contains("vigil_inference_batch_size_bucket"),
        "{metrics}"
    );

    // Bad uploads: a clear 4xx, nothing stored.
    let head = server.head().await;
    let blobs = blob_count(&db);
    let good = std::fs::read(&files[0]).unwrap();
    let mut corrupt = good.clone();
    corrupt.truncate(good.len() / 3);
    let cases: Vec<(&str, reqwest::multipart::Form, u16, &str)> = vec![
        (
            "corrupt JPEG after a good one",
            multipart(
                &[("a.jpg".into(), good.clone()), ("b.jpg".into(), corrupt)],
                &[],
            ),
            422,
            "INVALID_IMAGE",
        ),
        (
            "empty multipart",
            reqwest::multipart::Form::new(),
            422,
            "VALIDATION_FAILED",
        ),
        (
            "text that is not a picture",
            multipart(&[("c.jpg".into(), b"hello".to_vec())], &[]),
            422,
            "INVALID_IMAGE",
        ),
        (
            "six files",
            multipart(&vec![("d.jpg".to_string(), good.clone()); 6], &[]),
            422,
            "VALIDATION_FAILED",
        ),
        (
            "50 MB upload",
            multipart(&[("big.jpg".into(), vec![0xFF; 50 << 20])], &[]),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
    ];
    for (what, form, status, code) in cases {
        let res = server
            .req(Method::POST, "/api/v1/cameras/edge/frames")
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{what}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
        assert!(body["request_id"].is_string());
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    for (what, image) in [
        ("base64 of text", b64.encode("not a picture at all")),
        ("not base64", "%%%".to_string()),
        (
            "base64 of a broken PNG",
            b64.encode(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
        ),
    ] {
        for body in [
            json!({"image": image}),
            json!({"image": image, "camera_id": "edge"}),
        ] {
            let res = server
                .req(Method::POST, "/api/v1/analyze")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 422, "{what}");
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["error"]["code"], "INVALID_IMAGE", "{what}: {body}");
        }
    }
    assert_eq!(
        server.head().await,
        head,
        "no event was stored by a bad upload"
    );
    assert_eq!(
        blob_count(&db),
        blobs,
        "no media was stored by a bad upload"
    );

    // Not a push camera, unknown camera.
    register(
        &server,
        json!({"id": "wired", "name": "Wired", "source": "rtsp://127.0.0.1:1/x", "enabled": false}),
    )
    .await;
    let res = server
        .req(Method::POST, "/api/v1/cameras/wired/frames")
        .multipart(multipart(&[("a.jpg".into(), good.clone())], &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let res = server
        .req(Method::POST, "/api/v1/cameras/nope/frames")
        .multipart(multipart(&[("a.jpg".into(), good.clone())], &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    // A face photo through /analyze: the person, the face and its descriptor.
    let astronaut = std::fs::read(assets().join("images/astronaut.png")).unwrap();
    let res = server
        .req(Method::POST, "/api/v1/analyze")
        .json(&json!({"image": b64.encode(&astronaut), "frame_number": 7, "metadata": {"site": "lab"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["frame_number"], 7);
    assert_eq!(body["metadata"]["site"], "lab");
    assert_eq!(
        (body["width"].as_u64(), body["height"].as_u64()),
        (Some(512), Some(512))
    );
    assert!(!body["detections"].as_array().unwrap().is_empty(), "{body}");
    let faces = body["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 1, "{body}");
    assert_eq!(faces[0]["embedding"].as_array().unwrap().len(), 128);
    assert!(body["processing_time_ms"].as_f64().unwrap() > 0.0);

    // Stopping the camera ends its tracks as stopped.
    let res = server
        .req(Method::POST, "/api/v1/cameras/edge/stop")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    wait_status(&server, "edge", "stopped", 1, 30).await;
    let ended = camera_events(&server, "edge", "appearance.ended").await;
    assert_eq!(ended.len(), started.len(), "every started track ended");
    for e in &ended {
        let p = &e.payload;
        assert_eq!(e.stream_version, 2);
        assert!(p["dwell_seconds"].as_f64().unwrap() >= 0.0);
        assert!(p["frames"].as_u64().unwrap() >= 1);
        media_is_jpeg(&server, p["exit_frame"]["blob"].as_str().unwrap()).await;
    }
    assert!(
        ended
            .iter()
            .any(|e| !e.payload["zones"].as_array().unwrap().is_empty()),
        "someone walked in the left half"
    );
    let res = server
        .req(Method::POST, "/api/v1/cameras/edge/frames")
        .multipart(multipart(&[("a.jpg".into(), good)], &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409, "a stopped camera takes no frames");
    server.stop().await;
}

async fn wait_until_running(server: &TestServer, id: &str) {
    until(30, &format!("camera `{id}`'s actor"), || async {
        let supervision = server.app.supervision()?;
        supervision
            .running()
            .await
            .contains(&id.to_string())
            .then_some(())
    })
    .await;
}

async fn push_one(server: &TestServer, id: &str, file: &Path) -> reqwest::StatusCode {
    let part = (
        file.file_name().unwrap().to_string_lossy().into_owned(),
        std::fs::read(file).unwrap(),
    );
    server
        .req(Method::POST, &format!("/api/v1/cameras/{id}/frames"))
        .multipart(multipart(&[part], &[]))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_camera_actors_restart_with_backoff_while_the_others_keep_running() {
    let _serial = SERIAL.lock().await;
    // A camera whose URL never answers: the port accepts connections and says nothing.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("rtsp://{}/never", silent.local_addr().unwrap());
    let accepts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepts.clone();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(socket);
        }
    });
    let db = TestDb::new(Which::Sqlite).await;
    let server = ingest_server(&db).await;
    for id in ["a", "b"] {
        register(
            &server,
            json!({"id": id, "name": id, "source": "push", "sample_fps": 30}),
        )
        .await;
    }
    register(
        &server,
        json!({"id": "mute", "name": "Mute", "source": silent_url}),
    )
    .await;
    for id in ["a", "b"] {
        wait_until_running(&server, id).await;
    }
    let files = frame_files();
    assert_eq!(push_one(&server, "a", &files[0]).await, 200);
    wait_status(&server, "a", "online", 1, 60).await;
    let supervision = server.app.supervision().unwrap().clone();
    let b_actor = supervision.actor_of("b").await.unwrap().get_id();

    // Camera a's actor panics three times in a row: each failure is recorded and each restart
    // waits longer (200 ms, 400 ms, 800 ms).
    let mut delays = Vec::new();
    for round in 0..3 {
        let actor = supervision.actor_of("a").await.expect("a runs");
        actor
            .cast(vigil_actors::camera_actor::CameraMsg::Panic(format!(
                "test panic {round}"
            )))
            .unwrap();
        let failed_at = Instant::now();
        loop {
            if let Some(new) = supervision.actor_of("a").await
                && new.get_id() != actor.get_id()
            {
                break;
            }
            assert!(
                failed_at.elapsed() < Duration::from_secs(10),
                "a was not restarted"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        delays.push(failed_at.elapsed());
        // Meanwhile b takes frames.
        assert_eq!(push_one(&server, "b", &files[round + 1]).await, 200);
    }
    // Each restart comes no sooner than its backoff (comparing the delays with one another
    // instead failed when a loaded machine slowed the first restart).
    for (delay, backoff) in delays.iter().zip([200, 400, 800]) {
        assert!(
            *delay >= Duration::from_millis(backoff),
            "backoff grows: {delays:?}"
        );
    }
    assert!(delays[2] < Duration::from_secs(5), "{delays:?}");
    let seen = statuses(&server, "a").await;
    assert_eq!(
        seen,
        ["online", "error"],
        "one change recorded while it keeps failing: {seen:?}"
    );
    let reason =
        camera_events(&server, "a", "camera.status_changed").await[1].payload["reason"].clone();
    assert!(
        reason.as_str().unwrap().contains("test panic 0"),
        "{reason}"
    );
    // Back to work: a frame makes it online again.
    assert_eq!(push_one(&server, "a", &files[5]).await, 200);
    wait_status(&server, "a", "online", 2, 30).await;
    assert_eq!(
        supervision.actor_of("b").await.unwrap().get_id(),
        b_actor,
        "b never restarted"
    );

    // The mute camera times out, reports error, and is retried with backoff.
    let error = wait_status(&server, "mute", "error", 1, 60).await;
    until(60, "a second connection attempt", || async {
        (accepts.load(std::sync::atomic::Ordering::SeqCst) >= 2).then_some(())
    })
    .await;
    let dto = camera_at(&server, "mute", error).await;
    assert_eq!(dto["status"], "error");
    assert!(
        dto["status_reason"].as_str().unwrap().contains("no frame"),
        "{dto}"
    );

    // Stopping a camera through the API stops its actor and records it.
    let res = server
        .req(Method::POST, "/api/v1/cameras/b/stop")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["enabled"], false);
    wait_status(&server, "b", "stopped", 1, 30).await;
    assert!(!supervision.running().await.contains(&"b".to_string()));
    assert_eq!(push_one(&server, "b", &files[9]).await, 409);
    // And starting it again runs it again.
    let res = server
        .req(Method::POST, "/api/v1/cameras/b/start")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    wait_until_running(&server, "b").await;
    assert_eq!(push_one(&server, "b", &files[10]).await, 200);
    holder.abort();
    server.stop().await;
}

/// The tracks of `camera` started and not ended in `events`, as (track id, its start).
fn open_tracks(events: &[RecordedEvent], camera: &str) -> Vec<(String, RecordedEvent)> {
    let ended: Vec<&str> = events
        .iter()
        .filter(|e| e.event_type == "appearance.ended" && e.payload["camera_id"] == camera)
        .map(|e| e.payload["track_id"].as_str().unwrap())
        .collect();
    events
        .iter()
        .filter(|e| e.event_type == "appearance.started" && e.payload["camera_id"] == camera)
        .filter(|e| !ended.contains(&e.payload["track_id"].as_str().unwrap()))
        .map(|e| {
            (
                e.payload["track_id"].as_str().unwrap().to_string(),
                e.clone(),
            )
        })
        .collect()
}

/// Checks that each of `open` (tracks open before a failure) was ended by the sweep, once,
/// where it started; answers how many.
fn assert_swept(events: &[RecordedEvent], open: &[(String, RecordedEvent)]) -> usize {
    for (track, started) in open {
        let ends: Vec<&RecordedEvent> = events
            .iter()
            .filter(|e| e.event_type == "appearance.ended" && e.payload["track_id"] == *track)
            .collect();
        assert_eq!(ends.len(), 1, "track {track} ended once");
        let end = ends[0];
        assert_eq!(end.stream, started.stream);
        assert_eq!(end.stream_version, 2);
        assert_eq!(end.actor, "system:track-sweep");
        let p = &end.payload;
        assert_eq!(p["reason"], "interrupted", "{p}");
        assert_eq!(p["started_at"], started.payload["started_at"]);
        assert_eq!(p["ended_at"], started.payload["started_at"], "{p}");
        assert_eq!(p["exit_frame"], started.payload["entry_frame"]);
        assert_eq!(p["last_bbox"], started.payload["bbox"]);
        assert!(p["best_face"].is_null(), "{p}");
    }
    open.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracks_a_failed_camera_actor_left_open_are_ended_before_it_restarts() {
    let _serial = SERIAL.lock().await;
    let db = TestDb::new(Which::Sqlite).await;
    let server = ingest_server(&db).await;
    register(
        &server,
        json!({"id": "door", "name": "Door", "source": "push", "sample_fps": 5}),
    )
    .await;
    wait_until_running(&server, "door").await;
    push_person(&server, "door", "astronaut.png", 4).await;
    wait_tracks(&server, "door", 1, 60).await;
    let open = open_tracks(&all_events(&server).await, "door");
    assert!(!open.is_empty(), "the persons are still in view");

    // The actor fails with its tracks open; the supervisor ends them before the restart.
    let supervision = server.app.supervision().unwrap().clone();
    let actor = supervision.actor_of("door").await.expect("door runs");
    actor
        .cast(vigil_actors::camera_actor::CameraMsg::Panic(
            "test panic".into(),
        ))
        .unwrap();
    until(30, "the open tracks ended", || async {
        open_tracks(&all_events(&server).await, "door")
            .is_empty()
            .then_some(())
    })
    .await;
    let events = all_events(&server).await;
    assert_eq!(assert_swept(&events, &open), open.len());
    until(30, "door running again", || async {
        supervision
            .actor_of("door")
            .await
            .filter(|a| a.get_id() != actor.get_id())
    })
    .await;
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(&format!("vigil_tracks_swept_total {}", open.len())),
        "{metrics}"
    );
    // The new actor's tracks are its own: it follows the person again and nothing ends them.
    push_person(&server, "door", "astronaut.png", 4).await;
    let started = wait_tracks(&server, "door", open.len() + 1, 60).await;
    let reopened = open_tracks(&all_events(&server).await, "door");
    assert!(
        !reopened.is_empty()
            && reopened
                .iter()
                .all(|(t, _)| !open.iter().any(|(o, _)| o == t)),
        "{} tracks started, the new ones open",
        started.len()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracks_open_when_the_process_was_killed_are_ended_at_its_next_start() {
    let _serial = SERIAL.lock().await;
    let db = TestDb::new(Which::Sqlite).await;
    let data = db.dir.path().join("data");
    let envs = [("VIGIL_MODELS_BACKEND", "cpu")];
    let (mut child, base) = crate::durability::spawn_server_with(&db.url, &data, &envs).await;
    let client = reqwest::Client::new();
    // Two cameras with persons in view: `door` runs again after the restart, `yard` is removed
    // while no process runs it.
    for id in ["door", "yard"] {
        let res = client
            .post(format!("{base}/api/v1/cameras"))
            .header("x-api-key", crate::support::KEY)
            .json(&json!({"id": id, "name": id, "source": "push", "sample_fps": 5}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    let frames = tempfile::tempdir().unwrap();
    let start = chrono::Utc::now() - chrono::Duration::seconds(30);
    for i in 0..4 {
        let file = person_over_scene(frames.path(), i, "astronaut.png");
        let time = (start + chrono::Duration::milliseconds(200 * i as i64)).to_rfc3339();
        for id in ["door", "yard"] {
            // The camera's actor may not run yet (409): the same frame again.
            until(30, "a frame taken", || async {
                let part = ("f.jpg".to_string(), std::fs::read(&file).unwrap());
                let res = client
                    .post(format!("{base}/api/v1/cameras/{id}/frames"))
                    .header("x-api-key", crate::support::KEY)
                    .multipart(multipart(&[part], std::slice::from_ref(&time)))
                    .send()
                    .await
                    .unwrap();
                (res.status() == 200).then_some(())
            })
            .await;
        }
    }
    let store = db.store().await;
    let open = until(60, "tracks started on both cameras", || async {
        let events = events_in(&*store).await;
        let (door, yard) = (open_tracks(&events, "door"), open_tracks(&events, "yard"));
        (!door.is_empty() && !yard.is_empty()).then_some((door, yard))
    })
    .await;
    child.start_kill().expect("SIGKILL");
    child.wait().await.unwrap();
    let events = events_in(&*store).await;
    assert_eq!(
        (
            open_tracks(&events, "door").len(),
            open_tracks(&events, "yard").len()
        ),
        (open.0.len(), open.1.len()),
        "a killed process ends nothing"
    );
    vigil_actors::handler::CommandHandler::new(store.clone())
        .execute::<vigil_actors::aggregates::camera::CameraAggregate>(
            "yard",
            vigil_actors::aggregates::camera::CameraCommand::Remove,
            &vigil_schemas::EventMeta {
                correlation_id: uuid::Uuid::now_v7(),
                causation_id: None,
                actor: "test".into(),
            },
            None,
        )
        .await
        .unwrap();

    let (_child, base) = crate::durability::spawn_server_with(&db.url, &data, &envs).await;
    until(30, "the open tracks ended", || async {
        let events = events_in(&*store).await;
        (open_tracks(&events, "door").is_empty() && open_tracks(&events, "yard").is_empty())
            .then_some(())
    })
    .await;
    let events = events_in(&*store).await;
    let swept = assert_swept(&events, &open.0) + assert_swept(&events, &open.1);
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!("vigil_tracks_swept_total {swept}")),
        "{metrics}"
    );
}

/// A tmpfs of `kib` KiB mounted at a folder for the value's life: a disk that fills up. Needs
/// root (`mount`), as the tests run in CI.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, kib: u32) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "this test mounts a size-limited tmpfs as the media folder, which needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(dir.to_path_buf())
    }

    /// Fills it to the last byte with one file, whose path it answers.
    fn fill(&self) -> PathBuf {
        let filler = self.0.join("filler");
        let written = std::fs::write(&filler, vec![0u8; 64 << 20]);
        assert_eq!(
            written.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::StorageFull),
            "the disk is full"
        );
        filler
    }

    /// Every file in it, by path relative to it.
    fn files(&self) -> Vec<String> {
        fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path(), root, out);
                } else {
                    out.push(e.path().strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        let mut out = vec![];
        walk(&self.0, &self.0, &mut out);
        out.sort();
        out
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_media_disk_refuses_uploads_with_507_while_cameras_keep_raising_incidents() {
    let _serial = SERIAL.lock().await;
    let db = TestDb::new(Which::Sqlite).await;
    let disk = SmallDisk::mount(&db.dir.path().join("data/blobs"), 2048);
    let server = ingest_server(&db).await;
    let res = server
        .req(Method::PATCH, "/api/v1/calibration")
        .json(&json!({"cameras": {"door": {"intrusion_zones": ["hall"]}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    register(
        &server,
        json!({"id": "door", "name": "Door", "source": "push", "sample_fps": 5,
               "features": {"intrusion": true},
               "zones": [{"name": "hall", "polygon": [{"x": 0, "y": 0}, {"x": 1, "y": 0}, {"x": 1, "y": 1}, {"x": 0, "y": 1}]}]}),
    )
    .await;
    wait_until_running(&server, "door").await;
    let filler = disk.fill();

    // An upload that must store pictures is refused, and nothing is enrolled.
    let body = crate::support::expect_error(
        send_astronaut(&server).await,
        reqwest::StatusCode::INSUFFICIENT_STORAGE,
        "STORAGE_FULL",
    )
    .await;
    assert!(
        body["error"]["message"].as_str().unwrap().contains("full"),
        "{body}"
    );
    let (status, subjects) = call(&server, Method::GET, "/api/v1/subjects", None).await;
    assert_eq!(status, 200);
    assert_eq!(subjects["items"], json!([]), "nothing enrolled");

    // The camera keeps analysing and its rule still records the intrusion, without pictures.
    push_person(&server, "door", "astronaut.png", 4).await;
    let incident = until(60, "an intrusion on `door`", || async {
        incidents(&server, "door", "intrusion")
            .await
            .into_iter()
            .next()
    })
    .await;
    let (status, incident) = call(
        &server,
        Method::GET,
        &format!("/api/v1/incidents/{}", incident["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let incident = &incident["incident"];
    assert_eq!(incident["evidence"], json!([]), "{incident}");
    assert_eq!(incident["evidence_count"], 0, "{incident}");
    assert!(
        incident["reasoning"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{incident}"
    );
    let ingest = camera(&server, "door").await["ingest"].clone();
    assert!(ingest["analysed"].as_u64().unwrap() >= 4, "{ingest}");
    assert!(ingest["media_dropped"].as_u64().unwrap() >= 1, "{ingest}");
    assert!(
        camera_events(&server, "door", "appearance.started")
            .await
            .is_empty(),
        "a track whose entry frame could not be stored is not recorded"
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("vigil_camera_media_dropped_total{camera=\"door\"}"),
        "{metrics}"
    );
    let (status, ready) = call(&server, Method::GET, "/health/ready", None).await;
    assert_eq!((status, &ready["media"]), (503, &json!("full")), "{ready}");
    assert_eq!(ready["status"], "degraded");
    // Nothing half-written was left behind.
    assert_eq!(disk.files(), ["filler"]);

    // Room is made: readiness sees it, uploads and the camera's pictures are stored again.
    std::fs::remove_file(&filler).unwrap();
    let (_, ready) = call(&server, Method::GET, "/health/ready", None).await;
    assert_eq!(ready["media"], "ok", "{ready}");
    enrol_astronaut(&server).await;
    for action in ["stop", "start"] {
        let (status, body) = call(
            &server,
            Method::POST,
            &format!("/api/v1/cameras/door/{action}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    wait_until_running(&server, "door").await;
    push_person(&server, "door", "astronaut.png", 4).await;
    let started = wait_tracks(&server, "door", 1, 60).await;
    let entry = started[0].payload["entry_frame"]["blob"].as_str().unwrap();
    media_is_jpeg(&server, entry).await;
    server.stop().await;
}

/// Frame `i` of a face walking over the pedestrian scene: the astronaut photo (a real face),
/// 256 px square, moved 40 px right per frame over a frame of the clip; made with ffmpeg.
fn face_over_scene(dir: &Path, i: usize) -> PathBuf {
    person_over_scene(dir, i, "astronaut.png")
}

/// Frame `i` of the photo `image` (from the assets' `images/`), 256 px wide, walking over the
/// pedestrian scene.
fn person_over_scene(dir: &Path, i: usize, image: &str) -> PathBuf {
    let out = dir.join(format!("{image}-{i:02}.jpg"));
    let status = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(&frame_files()[i])
        .arg("-i")
        .arg(assets().join("images").join(image))
        .args([
            "-filter_complex",
            &format!("[1]scale=256:-2[a];[0][a]overlay=x={}:y=150", 100 + 40 * i),
            "-q:v",
            "3",
        ])
        .arg(&out)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg could not compose frame {i}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_track_keeps_its_best_face_crop_and_descriptor() {
    let _serial = SERIAL.lock().await;
    let db = TestDb::new(Which::Sqlite).await;
    let server = ingest_server(&db).await;
    register(
        &server,
        json!({"id": "door", "name": "Door", "source": "push", "sample_fps": 5}),
    )
    .await;
    wait_until_running(&server, "door").await;
    let dir = tempfile::tempdir().unwrap();
    let start = chrono::Utc::now() - chrono::Duration::seconds(30);
    let mut face_track = None;
    for i in 0..6 {
        let file = face_over_scene(dir.path(), i);
        let time = (start + chrono::Duration::milliseconds(200 * i as i64)).to_rfc3339();
        let part = ("f.jpg".to_string(), std::fs::read(&file).unwrap());
        let res = server
            .req(Method::POST, "/api/v1/cameras/door/frames")
            .multipart(multipart(&[part], &[time]))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        let analysis = &body["frames"][0]["analysis"];
        let faces = analysis["faces"].as_array().unwrap();
        assert!(
            !faces.is_empty(),
            "the face is found in frame {i}: {analysis}"
        );
        // The track of the person around the face.
        let face = &faces[0]["bbox"];
        let cx = (face["x1"].as_f64().unwrap() + face["x2"].as_f64().unwrap()) / 2.0;
        let around = analysis["detections"].as_array().unwrap().iter().find(|d| {
            d["bbox"]["x1"].as_f64().unwrap() <= cx && cx <= d["bbox"]["x2"].as_f64().unwrap()
        });
        if let Some(track) = around.and_then(|d| d.get("track_id")) {
            face_track = Some(track.as_str().unwrap().to_string());
        }
    }
    let track = face_track.expect("the person with the face is tracked");
    let res = server
        .req(Method::POST, "/api/v1/cameras/door/stop")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    wait_status(&server, "door", "stopped", 1, 30).await;
    let ended = camera_events(&server, "door", "appearance.ended").await;
    let ended = ended
        .iter()
        .find(|e| e.payload["track_id"] == track.as_str())
        .expect("the face's track ended");
    let best = &ended.payload["best_face"];
    assert_eq!(best["embedding"].as_array().unwrap().len(), 128, "{best}");
    assert!(best["score"].as_f64().unwrap() >= 0.5);
    let (w, h) = media_is_jpeg(&server, best["crop"].as_str().unwrap()).await;
    assert!(w >= 40 && h >= 40 && w < 768, "a face-sized crop: {w}x{h}");
    // The descriptor is the astronaut's: close to the one /analyze gives for her photo.
    let photo = std::fs::read(assets().join("images/astronaut.png")).unwrap();
    let res = server
        .req(Method::POST, "/api/v1/analyze")
        .json(&json!({"image": base64::engine::general_purpose::STANDARD.encode(&photo)}))
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    let reference: Vec<f64> = body["faces"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let distance = best["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a.as_f64().unwrap() - b).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(distance < 0.6, "same person: distance {distance}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_raise_crowd_and_intrusion_incidents_on_the_pedestrian_clip() {
    let _serial = SERIAL.lock().await;
    let db = TestDb::new(Which::Sqlite).await;
    // A pushed camera's clip ends after its post-roll of wall time without a frame: 5 s, so a
    // frame that takes long to analyse on a loaded machine does not cut the clip in two.
    let server = TestServer::start(Config {
        clip_post_roll_seconds: 5.0,
        ..ingest_server_config(&db)
    })
    .await;
    // Crowd threshold 3 for this camera only; a zone over the walkway is restricted.
    let res = server
        .req(Method::PATCH, "/api/v1/calibration")
        .json(
            &json!({"cameras": {"plaza": {"crowd_threshold": 3, "crowd_min_seconds": 1.0,
                                             "intrusion_zones": ["walkway"]}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    register(
        &server,
        json!({"id": "plaza", "name": "Plaza", "source": "push", "sample_fps": 5,
               "features": {"crowd": true, "intrusion": true},
               "zones": [{"name": "walkway", "polygon": [{"x": 0, "y": 0.3}, {"x": 1, "y": 0.3}, {"x": 1, "y": 1}, {"x": 0, "y": 1}]}]}),
    )
    .await;
    wait_until_running(&server, "plaza").await;

    let mut most_persons = 0;
    let mut answered_incidents = vec![];
    for frames in push_clip(&server, "plaza", 30).await {
        for f in &frames {
            if let Some(d) = f["analysis"]["detections"].as_array() {
                let strong = d
                    .iter()
                    .filter(|p| p["score"].as_f64().unwrap() >= 0.5)
                    .count();
                most_persons = most_persons.max(strong);
            }
            if let Some(ids) = f["analysis"]["incidents"].as_array() {
                answered_incidents.extend(ids.iter().map(|i| i.as_str().unwrap().to_string()));
            }
        }
    }
    assert!(
        most_persons >= 3,
        "the clip has groups of people ({most_persons})"
    );
    assert!(
        !answered_incidents.is_empty(),
        "the frames' answers name incidents"
    );

    let crowd = incidents(&server, "plaza", "crowd").await;
    assert_eq!(
        crowd.len(),
        1,
        "one crowd, extended rather than reopened: {crowd:?}"
    );
    let reasoning = crowd[0]["reasoning"].as_str().unwrap();
    let count: usize = reasoning
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the reasoning starts with the count: {reasoning}"));
    assert!(count >= 3, "{reasoning}");
    assert!(reasoning.contains("threshold 3"), "{reasoning}");
    assert_eq!(
        crowd[0]["severity"],
        if count >= 6 { "high" } else { "medium" }
    );
    let evidence = crowd[0]["evidence"].as_array().unwrap();
    assert!(!evidence.is_empty());
    media_is_jpeg(&server, evidence[0]["blob"].as_str().unwrap()).await;

    let intrusions = incidents(&server, "plaza", "intrusion").await;
    assert!(
        !intrusions.is_empty(),
        "people walk into the restricted walkway"
    );
    for i in &intrusions {
        assert_eq!(i["zone"], "walkway");
        assert!(
            i["reasoning"].as_str().unwrap().contains("'walkway'"),
            "{i}"
        );
        assert_eq!(i["subjects"]["track_ids"].as_array().unwrap().len(), 1);
        assert_eq!(i["severity"], "high");
    }
    // One intrusion per track: no track's entry is reported twice.
    let mut tracks: Vec<&str> = intrusions
        .iter()
        .map(|i| i["subjects"]["track_ids"][0].as_str().unwrap())
        .collect();
    let n = tracks.len();
    tracks.sort();
    tracks.dedup();
    assert_eq!(tracks.len(), n);

    // A pushed camera has no stream of its own: its clip is its frames encoded to H.264, one
    // clip for the incidents that overlap, finished once the frames stop coming.
    let crowd_id = crowd[0]["id"].as_str().unwrap().to_string();
    let clip = first_clip(&server, &crowd_id, 30).await;
    assert_eq!(
        (clip["codec"].as_str(), clip["width"].as_u64()),
        (Some("h264"), Some(768))
    );
    let recorded = camera_events(&server, "plaza", "clip.recorded").await;
    assert_eq!(recorded.len(), 1, "one clip for every overlapping incident");
    let covered = recorded[0].payload["incident_ids"]
        .as_array()
        .unwrap()
        .clone();
    for i in intrusions.iter().chain(&crowd) {
        assert!(covered.contains(&i["id"]), "{i} in {covered:?}");
    }
    let res = server
        .req(Method::GET, clip["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "video/mp4");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clip.mp4");
    std::fs::write(&file, res.bytes().await.unwrap()).unwrap();
    let probe = ffprobe(&file, &["-count_frames", "-show_streams"]);
    let stream = &probe["streams"][0];
    assert_eq!(stream["codec_name"], "h264");
    assert_eq!(
        (stream["width"].as_u64(), stream["height"].as_u64()),
        (Some(768), Some(576))
    );
    let decoded: u64 = stream["nb_read_frames"].as_str().unwrap().parse().unwrap();
    assert_eq!(decoded, clip["frames"].as_u64().unwrap());
    // Every frame the camera sampled, from a keyframe before its first incident on.
    assert!(decoded >= 5, "{clip}");
    let time = |v: &Value| {
        v.as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    };
    let first_opened = intrusions
        .iter()
        .chain(&crowd)
        .map(|i| time(&i["opened_at"]))
        .min()
        .unwrap();
    assert!(time(&clip["started_at"]) <= first_opened, "{clip}");

    // The evidence can be analysed again: it is recorded as new evidence on the incident.
    let id = crowd[0]["id"].as_str().unwrap();
    let res = server
        .req(Method::POST, &format!("/api/v1/incidents/{id}/reanalyse"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let re: Value = res.json().await.unwrap();
    assert!(re["frames"][0]["persons"].as_u64().unwrap() >= 1, "{re}");
    let events = all_events(&server).await;
    let last = events
        .iter()
        .rfind(|e| e.stream == format!("incident-{id}"))
        .unwrap();
    assert_eq!(last.event_type, "incident.evidence_added");
    assert!(
        last.payload["reasoning"]
            .as_str()
            .unwrap()
            .starts_with("reanalysis")
    );
    server.stop().await;
}

/// Pushes `n` frames of `image` walking over the scene to push camera `camera`, 200 ms apart.
async fn push_person(server: &TestServer, camera: &str, image: &str, n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let start = chrono::Utc::now() - chrono::Duration::seconds(30);
    for i in 0..n {
        let file = person_over_scene(dir.path(), i, image);
        let time = (start + chrono::Duration::milliseconds(200 * i as i64)).to_rfc3339();
        let part = ("f.jpg".to_string(), std::fs::read(&file).unwrap());
        let res = server
            .req(Method::POST, &format!("/api/v1/cameras/{camera}/frames"))
            .multipart(multipart(&[part], &[time]))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
}

/// Enrols the astronaut's photo on the watch list (critical), through the API; her subject id.
async fn enrol_astronaut(server: &TestServer) -> String {
    let res = send_astronaut(server).await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let subject: Value = res.json().await.unwrap();
    subject["id"].as_str().unwrap().to_string()
}

/// The enrolment request of [`enrol_astronaut`], answered as it is.
async fn send_astronaut(server: &TestServer) -> reqwest::Response {
    let photo = std::fs::read(assets().join("images/astronaut.png")).unwrap();
    let form = reqwest::multipart::Form::new()
        .part(
            "files",
            reqwest::multipart::Part::bytes(photo)
                .file_name("astronaut.png")
                .mime_str("image/png")
                .unwrap(),
        )
        .text("name", "Eileen Collins")
        .text("category", "watchlist")
        .text("severity", "critical");
    server
        .req(Method::POST, "/api/v1/subjects")
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolled_faces_are_matched_and_other_faces_stay_unknown() {
    let _serial = SERIAL.lock().await;
    let db = TestDb::new(Which::Sqlite).await;
    let server = ingest_server(&db).await;
    let subject_id = enrol_astronaut(&server).await;
    for (id, image) in [("door", "astronaut.png"), ("hall", "230501201_1.png")] {
        register(
            &server,
            json!({"id": id, "name": id, "source": "push", "sample_fps": 5,
                   "features": {"authorised": true}}),
        )
        .await;
        wait_until_running(&server, id).await;
        push_person(&server, id, image, 6).await;
    }

    // The astronaut is matched once on her track, with a face crop and the distances.
    let events = all_events(&server).await;
    let matched: Vec<&RecordedEvent> = events
        .iter()
        .filter(|e| e.event_type == "subject.matched")
        .collect();
    assert_eq!(
        matched.len(),
        1,
        "one match per track and subject: {matched:?}"
    );
    let m = &matched[0].payload;
    assert_eq!(matched[0].stream, format!("subject-{subject_id}"));
    assert_eq!(m["camera_id"], "door");
    assert_eq!(m["subject_name"], "Eileen Collins");
    assert!(m["distance"].as_f64().unwrap() < 0.5, "{m}");
    media_is_jpeg(&server, m["crop"].as_str().unwrap()).await;
    media_is_jpeg(&server, m["frame"]["blob"].as_str().unwrap()).await;
    // The match is an alert.
    let alerts: Value = until(10, "the alert", || async {
        let body: Value = server
            .req(Method::GET, "/api/v1/alerts")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (!body["items"].as_array().unwrap().is_empty()).then_some(body)
    })
    .await;
    let items = alerts["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{alerts}");
    assert_eq!(items[0]["id"], m["match_id"]);
    assert_eq!(items[0]["subject_id"], subject_id.as_str());
    assert_eq!(items[0]["camera_id"], "door");
    assert_eq!(items[0]["acknowledged"], false);

    // A person-of-interest incident at the subject's severity, naming her and the distance.
    let poi = incidents(&server, "door", "person_of_interest").await;
    assert_eq!(poi.len(), 1, "{poi:?}");
    assert_eq!(poi[0]["severity"], "critical");
    let reasoning = poi[0]["reasoning"].as_str().unwrap();
    assert!(
        reasoning.contains("'Eileen Collins' at distance 0."),
        "{reasoning}"
    );
    assert_eq!(poi[0]["subjects"]["track_ids"][0], m["track_id"]);
    assert!(
        incidents(&server, "hall", "person_of_interest")
            .await
            .is_empty()
    );

    // The other person's face was compared and stays unknown: no match, and the authorised
    // rule (no authorised subject is enrolled) raises its incident once for the track.
    let hall = incidents(&server, "hall", "unauthorised").await;
    assert_eq!(hall.len(), 1, "{hall:?}");
    assert!(
        hall[0]["reasoning"]
            .as_str()
            .unwrap()
            .contains("no authorised subject is enrolled"),
        "{hall:?}"
    );

    // Stopping the cameras ends both tracks; each becomes a row of the Lance appearances
    // table with its clearest face.
    for id in ["door", "hall"] {
        let res = server
            .req(Method::POST, &format!("/api/v1/cameras/{id}/stop"))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.status());
    }
    let vectors = server.app.vectors().clone();
    let appearances = until(30, "two appearances in Lance", || async {
        let rows = vectors.all_appearances().await.unwrap();
        (rows.len() == 2).then_some(rows)
    })
    .await;
    let door = appearances.iter().find(|a| a.camera_id == "door").unwrap();
    assert_eq!(door.track_id, m["track_id"].as_str().unwrap());
    assert!(door.entry().is_some() && door.exit().is_some(), "{door:?}");

    // Search by the enrolled photo: stage 1 identifies her and returns her appearance on the
    // door camera, inside the time range; outside it, nothing.
    let now = chrono::Utc::now();
    let around = [
        ("start", (now - chrono::Duration::minutes(5)).to_rfc3339()),
        ("end", now.to_rfc3339()),
    ];
    let (status, found) = search_face(&server, "astronaut.png", &around).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["search_stats"]["stage"], "subject", "{found}");
    assert_eq!(found["subject"]["id"], subject_id.as_str());
    assert_eq!(found["subject"]["name"], "Eileen Collins");
    let hits = found["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "only her track: {found}");
    assert_eq!(hits[0]["camera_id"], "door");
    assert_eq!(hits[0]["track_id"], m["track_id"]);
    assert!(hits[0]["similarity"].as_f64().unwrap() > 0.75, "{found}");
    assert!(hits[0]["dwell_seconds"].as_f64().unwrap() >= 0.0);
    let entered: chrono::DateTime<chrono::Utc> =
        hits[0]["entered_at"].as_str().unwrap().parse().unwrap();
    assert!(entered > now - chrono::Duration::minutes(2) && entered < now);
    let thumbnail = hits[0]["thumbnail_url"].as_str().unwrap();
    media_is_jpeg(&server, thumbnail.trim_start_matches("/api/v1/media/")).await;
    media_is_jpeg(&server, hits[0]["entry_frame"]["blob"].as_str().unwrap()).await;
    assert_eq!(found["search_stats"]["unique_tracks"], 1);
    assert_eq!(found["search_stats"]["method"], "exact");
    assert!(found["search_stats"]["vectors_searched"].as_u64().unwrap() >= 3);
    // The person-of-interest incident's clip shows her track: the hit lists it (once the
    // camera's stop finished it).
    let shown = until(30, "the clip of her track in the hit", || async {
        let (_, found) = search_face(&server, "astronaut.png", &around).await;
        let clips = found["hits"][0]["clips"].as_array()?.clone();
        (!clips.is_empty()).then_some(clips)
    })
    .await;
    let poi_clip = shown[0].clone();
    assert_eq!(poi_clip["camera_id"], "door");
    assert_eq!(poi_clip["continuous"], false);
    let res = server
        .req(Method::GET, poi_clip["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "video/mp4");
    let earlier = [
        ("start", (now - chrono::Duration::hours(2)).to_rfc3339()),
        ("end", (now - chrono::Duration::hours(1)).to_rfc3339()),
    ];
    let (status, found) = search_face(&server, "astronaut.png", &earlier).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["search_stats"]["stage"], "subject");
    assert_eq!(found["hits"], json!([]), "outside the range: nothing");
    let (_, found) = search_face(&server, "astronaut.png", &[("camera_ids", "hall".into())]).await;
    assert_eq!(found["hits"], json!([]), "not on the other camera: {found}");

    // A face nobody enrolled goes to stage 2: the appearances themselves.
    let (status, found) = search_face(&server, "230501201_1.png", &around).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["search_stats"]["stage"], "appearances", "{found}");
    assert!(found.get("subject").is_none());
    let hits = found["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{found}");
    assert_eq!(hits[0]["camera_id"], "hall");

    // Erasing her removes the clips of her matches, though her incident is still open; the
    // other camera's clips stay.
    let clip_id = poi_clip["id"].as_str().unwrap();
    let res = server
        .req(Method::DELETE, &format!("/api/v1/subjects/{subject_id}"))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let deleted = crate::support::stream_events(&server, &format!("clip-{clip_id}")).await;
    assert_eq!(deleted.len(), 2, "{deleted:?}");
    assert_eq!(deleted[1]["event_type"], "clip.deleted");
    assert_eq!(deleted[1]["payload"]["reason"], "subject_erased");
    let res = server
        .req(Method::GET, poi_clip["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404, "its file is gone");
    let detail: Value = server
        .req(
            Method::GET,
            &format!("/api/v1/incidents/{}", poi[0]["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["clips"], json!([]), "{detail}");
    let hall_clips = camera_events(&server, "hall", "clip.recorded").await;
    assert!(!hall_clips.is_empty());
    assert!(
        camera_events(&server, "hall", "clip.deleted")
            .await
            .is_empty(),
        "the other person's clips stay"
    );
    server.stop().await;

    // The Lance tables rebuilt from the log equal the live ones.
    let digests = assert_rebuild_equals_live(&db, "vectors").await;
    assert!(digests.iter().any(|d| d.starts_with("2:")), "{digests:?}");
}

/// `POST /api/v1/search/face` with one asset picture and text fields.
async fn search_face(server: &TestServer, image: &str, fields: &[(&str, String)]) -> (u16, Value) {
    let photo = std::fs::read(assets().join("images").join(image)).unwrap();
    let mut form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(photo)
            .file_name(image.to_string())
            .mime_str("image/png")
            .unwrap(),
    );
    for (name, value) in fields {
        form = form.text(name.to_string(), value.clone());
    }
    let res = server
        .req(Method::POST, "/api/v1/search/face")
        .multipart(form)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// The `X-Vigil-Position` of an answer (it must carry one).
fn position_of(res: &reqwest::Response) -> u64 {
    res.headers()
        .get("x-vigil-position")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no X-Vigil-Position on {}", res.url()))
}

/// GETs `path` once (no retry, no sleep): it must answer 200.
async fn read_now(server: &TestServer, path: &str) -> Value {
    let res = server.req(Method::GET, path).send().await.unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "GET {path} right after the write: {body}");
    body
}

fn time_of(value: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap_or_else(|| panic!("{value}")))
        .unwrap()
        .with_timezone(&chrono::Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_write_answers_with_is_readable_at_once_on_sqlite() {
    what_a_write_answers_with_is_readable_at_once(Which::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_write_answers_with_is_readable_at_once_on_postgres() {
    what_a_write_answers_with_is_readable_at_once(Which::Postgres).await;
}

/// Every id a write answers with is readable at once, without retrying, and the answer carries
/// `X-Vigil-Position`: an upload and an analysis that open incidents (their events appended by
/// the camera actor), an enrolment, an action. The upload is stamped an hour ago: its
/// incident's times are the frame's, its recording time now.
async fn what_a_write_answers_with_is_readable_at_once(which: Which) {
    let _serial = SERIAL.lock().await;
    let db = TestDb::new(which).await;
    let server = TestServer::start(Config {
        ingest: true,
        models_backend: vigil_models::BackendPreference::Cpu,
        webhooks: vec![vigil::webhooks::WebhookTarget::new(
            "desk",
            "http://127.0.0.1:9/hook",
        )],
        ..db.config()
    })
    .await;
    // One person is a crowd at once on this camera.
    let res = server
        .req(Method::PATCH, "/api/v1/calibration")
        .json(&json!({"cameras": {"door": {"crowd_threshold": 1, "crowd_min_seconds": 0.0}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    register(
        &server,
        json!({"id": "door", "name": "Door", "source": "push", "sample_fps": 5,
               "features": {"crowd": true}}),
    )
    .await;
    wait_until_running(&server, "door").await;

    // An upload of two frames captured an hour ago.
    // Whole seconds: read models keep microseconds.
    let hour_ago =
        chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() - 3600, 0).unwrap();
    let files = &frame_files()[5..7];
    let parts: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(p).unwrap(),
            )
        })
        .collect();
    let times = [
        hour_ago.to_rfc3339(),
        (hour_ago + chrono::Duration::milliseconds(200)).to_rfc3339(),
    ];
    let res = server
        .req(Method::POST, "/api/v1/cameras/door/frames")
        .multipart(multipart(&parts, &times))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let position = position_of(&res);
    let body: Value = res.json().await.unwrap();
    let frames = body["frames"].as_array().unwrap();
    let opened: Vec<String> = frames[0]["analysis"]["incidents"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|i| i.as_str().unwrap().to_string())
        .collect();
    assert_eq!(opened.len(), 1, "the first frame opens the crowd: {body}");
    assert!(position > 0);
    let incident = read_now(&server, &format!("/api/v1/incidents/{}", opened[0])).await;
    let captured = time_of(&frames[0]["timestamp"]);
    let times = &incident["incident"];
    assert_eq!(time_of(&times["opened_at"]), captured, "{incident}");
    assert_eq!(time_of(&times["last_seen_at"]), captured, "{incident}");
    assert!(
        time_of(&times["recorded_at"]) > captured + chrono::Duration::minutes(59),
        "recorded now: {incident}"
    );
    for track in frames[1]["analysis"]["tracks_started"].as_array().unwrap() {
        let stream = format!("track-door-{}", track.as_str().unwrap());
        read_now(&server, &format!("/api/v1/audit/streams/{stream}")).await;
    }

    // An analysis as the camera, an hour later: past the merge window, a new incident.
    let image = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(&frame_files()[15]).unwrap());
    let res = server
        .req(Method::POST, "/api/v1/analyze")
        .json(
            &json!({"image": image, "camera_id": "door", "timestamp": null,
                      "frame_number": null, "metadata": null}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    position_of(&res);
    let body: Value = res.json().await.unwrap();
    let opened_now = body["incidents"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(opened_now.len(), 1, "{body}");
    let id = opened_now[0].as_str().unwrap();
    assert_ne!(id, opened[0]);
    let incident = read_now(&server, &format!("/api/v1/incidents/{id}")).await;
    let times = &incident["incident"];
    assert!(time_of(&times["opened_at"]) <= time_of(&times["last_seen_at"]));

    // An enrolment.
    let picture = std::fs::read(assets().join("images/astronaut.png")).unwrap();
    let form = reqwest::multipart::Form::new()
        .part(
            "files",
            reqwest::multipart::Part::bytes(picture)
                .file_name("astronaut.png")
                .mime_str("image/png")
                .unwrap(),
        )
        .text("name", "Eileen")
        .text("category", "watchlist");
    let res = server
        .req(Method::POST, "/api/v1/subjects")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    position_of(&res);
    let subject: Value = res.json().await.unwrap();
    let subject_id = subject["id"].as_str().unwrap();
    read_now(&server, &format!("/api/v1/subjects/{subject_id}")).await;
    let poi = read_now(&server, "/api/v1/poi").await;
    assert_eq!(poi["items"][0]["id"], subject_id, "{poi}");

    // An action on the first incident.
    let res = server
        .req(Method::POST, "/api/v1/actions/execute")
        .json(
            &json!({"action": "alert_security", "incident_id": opened[0],
                      "camera_id": null, "target": null, "notes": null}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    position_of(&res);
    let action: Value = res.json().await.unwrap();
    let action_id = action["action_id"].as_str().unwrap();
    read_now(&server, &format!("/api/v1/actions/{action_id}")).await;
    let incident = read_now(&server, &format!("/api/v1/incidents/{}", opened[0])).await;
    assert!(
        incident["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action_id"] == action_id),
        "{incident}"
    );

    server.stop().await;
    db.cleanup().await;
}

/// The first `frames` frames (10 fps) of the pedestrian clip, re-encoded to H.264 in MP4 as
/// `dir/{name}`.
fn cut_clip(dir: &Path, name: &str, frames: u32) -> PathBuf {
    let path = dir.join(name);
    let status = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(clip())
        .args(["-frames:v", &frames.to_string(), "-an", "-c:v", "libx264"])
        .args(["-preset", "ultrafast", "-pix_fmt", "yuv420p"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs (scripts/setup installs it)");
    assert!(status.success(), "ffmpeg could not cut the clip");
    path
}

/// A server whose file cameras may read `videos`.
async fn file_server(db: &TestDb, videos: &Path, ingest: bool) -> TestServer {
    TestServer::start(Config {
        ingest,
        models_backend: vigil_models::BackendPreference::Cpu,
        camera_backoff_initial_ms: 200,
        camera_backoff_max_ms: 2000,
        video_dirs: vec![videos.display().to_string()],
        ..db.config()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_camera_reads_its_clip_from_the_given_start_and_ends() {
    let _serial = SERIAL.lock().await;
    let db = TestDb::new(Which::Sqlite).await;
    let videos = tempfile::tempdir().unwrap();
    // 6 s of the clip at 10 fps; sampled at 5 fps: 30 frames, one each 200 ms.
    let path = cut_clip(videos.path(), "plaza.mp4", 60);
    let server = file_server(&db, videos.path(), true).await;
    let res = server
        .req(Method::PATCH, "/api/v1/calibration")
        .json(&json!({"cameras": {"clip": {"crowd_threshold": 3, "crowd_min_seconds": 1.0}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let start: chrono::DateTime<chrono::Utc> = "2026-01-02T03:04:05Z".parse().unwrap();
    let end = start + chrono::Duration::seconds(6);
    register(
        &server,
        json!({"id": "clip", "name": "Clip", "sample_fps": 5, "features": {"crowd": true},
               "source": format!("file://{}?realtime=false&start=2026-01-02T03:04:05Z",
                                 path.display())}),
    )
    .await;
    let end_position = wait_status(&server, "clip", "ended", 1, 300).await;

    let seen = statuses(&server, "clip").await;
    assert_eq!(seen, ["online", "ended"], "read once, then ended");
    let status = camera_events(&server, "clip", "camera.status_changed").await;
    let reason = status[1].payload["reason"].as_str().unwrap();
    assert!(reason.contains("file h264 768x576"), "{reason}");
    let body = camera_at(&server, "clip", end_position).await;
    assert_eq!(body["status"], "ended", "{body}");
    let ingest = &body["ingest"];
    assert_eq!(ingest["running"], false, "{body}");
    assert_eq!(ingest["sampled"], 30, "{body}");
    // Not real time: every sampled frame was handled (people walk all through the clip, so
    // motion gating lets nearly all through to the models), none replaced in the hand-off.
    let (analysed, still) = (
        ingest["analysed"].as_u64().unwrap(),
        ingest["still"].as_u64().unwrap(),
    );
    assert_eq!(analysed + still, 30, "{body}");
    assert!(analysed >= 25, "{body}");
    assert_eq!(ingest["dropped"], 0, "{body}");
    assert_eq!(
        time_of(&ingest["last_frame_at"]),
        start + chrono::Duration::milliseconds(5800),
        "the last sampled frame is 5.8 s into the file"
    );

    let within = |t: chrono::DateTime<chrono::Utc>, what: &str| {
        assert!(
            start <= t && t <= end,
            "{what} at {t}, not within {start}..{end}"
        );
    };
    let started = camera_events(&server, "clip", "appearance.started").await;
    assert!(!started.is_empty(), "people walk through the clip");
    for e in &started {
        check_track_started(e, "clip");
        within(time_of(&e.payload["started_at"]), "a track start");
    }
    let ended = camera_events(&server, "clip", "appearance.ended").await;
    let mut started_ids: Vec<&str> = started
        .iter()
        .map(|e| e.payload["track_id"].as_str().unwrap())
        .collect();
    let mut ended_ids: Vec<&str> = ended
        .iter()
        .map(|e| e.payload["track_id"].as_str().unwrap())
        .collect();
    started_ids.sort();
    ended_ids.sort();
    assert_eq!(started_ids, ended_ids, "every track started has ended");
    for e in &ended {
        within(time_of(&e.payload["ended_at"]), "a track end");
        let reason = e.payload["reason"].as_str().unwrap();
        assert!(reason == "lost" || reason == "ended", "{reason}");
    }
    assert!(
        ended.iter().any(|e| e.payload["reason"] == "ended"),
        "tracks still open at the end of the file end with it"
    );

    let crowd = incidents(&server, "clip", "crowd").await;
    assert!(!crowd.is_empty(), "the clip has groups of people");
    for i in &crowd {
        within(time_of(&i["opened_at"]), "a crowd incident");
        within(time_of(&i["last_seen_at"]), "a crowd's last sighting");
    }

    // It stays ended (no restart after the backoff)...
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(statuses(&server, "clip").await.len(), 2);
    // ...until its settings change: a new file is read, to its end again.
    let short = cut_clip(videos.path(), "short.mp4", 5);
    let res = server
        .req(Method::PATCH, "/api/v1/cameras/clip")
        .json(&json!({"source": format!("file://{}?realtime=false", short.display())}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    wait_status(&server, "clip", "ended", 2, 60).await;
    assert_eq!(
        statuses(&server, "clip").await,
        ["online", "ended", "online", "ended"]
    );
    server.stop().await;
}

/// `quiet` seconds of a still grey scene with sensor noise and a slow brightness drift, then
/// the first `people` frames of the pedestrian clip (10 fps, 768×576, H.264).
fn quiet_then_people(dir: &Path, name: &str, quiet: u32, people: u32) -> PathBuf {
    let path = dir.join(name);
    let graph = format!(
        "[0]noise=alls=10:allf=t,eq=brightness='0.002*t':eval=frame,setsar=1,format=yuv420p[q];\
         [1]trim=end_frame={people},setpts=PTS-STARTPTS,fps=10,setsar=1,format=yuv420p[p];\
         [q][p]concat=n=2:v=1[v]"
    );
    let status = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("color=c=0x707070:s=768x576:r=10:d={quiet}"))
        .arg("-i")
        .arg(clip())
        .args([
            "-filter_complex",
            &graph,
            "-map",
            "[v]",
            "-an",
            "-c:v",
            "libx264",
        ])
        .args(["-preset", "ultrafast"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs (scripts/setup installs it)");
    assert!(status.success(), "ffmpeg could not make the quiet clip");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_camera_makes_no_model_call_until_someone_moves() {
    let _serial = SERIAL.lock().await;
    let db = TestDb::new(Which::Sqlite).await;
    let videos = tempfile::tempdir().unwrap();
    // 30 s of nothing but sensor noise and a drifting exposure, then 8 s of pedestrians;
    // sampled at 5 fps: 150 quiet frames, then 40.
    let path = quiet_then_people(videos.path(), "yard.mp4", 30, 80);
    let server = file_server(&db, videos.path(), true).await;
    register(
        &server,
        json!({"id": "yard", "name": "Yard", "sample_fps": 5,
               "source": format!("file://{}?realtime=false&start=2026-01-02T03:04:05Z",
                                 path.display())}),
    )
    .await;
    let end_position = wait_status(&server, "yard", "ended", 1, 300).await;
    let body = camera_at(&server, "yard", end_position).await;
    assert_eq!(body["status"], "ended", "{body}");
    let ingest = &body["ingest"];
    let count = |field: &str| ingest[field].as_u64().unwrap();
    assert_eq!(count("sampled"), 190, "{body}");
    assert_eq!(
        count("analysed") + count("still") + count("held"),
        190,
        "{body}"
    );
    // The first frame is analysed (someone could be standing there); the other 149 quiet
    // frames never reach the models.
    assert!(count("still") >= 149, "{body}");
    assert!(count("with_motion") >= 20, "the pedestrians move: {body}");
    // Where they walk, the person detector looks at regions around them, not the whole frame.
    assert!(count("in_regions") >= 10, "{body}");
    assert!(count("in_regions") <= count("analysed"), "{body}");
    let motion = &ingest["motion"];
    assert_eq!(
        motion["analysed"], true,
        "the last frame has people: {body}"
    );

    // Then people appear, and their tracks start — all after the quiet part.
    let start: chrono::DateTime<chrono::Utc> = "2026-01-02T03:04:05Z".parse().unwrap();
    let started = camera_events(&server, "yard", "appearance.started").await;
    assert!(!started.is_empty(), "pedestrians are tracked");
    for e in &started {
        let at = time_of(&e.payload["started_at"]);
        assert!(
            at >= start + chrono::Duration::seconds(30),
            "a track at {at}"
        );
    }
    let metrics = server.metrics().await;
    let still = format!(
        "vigil_camera_still_total{{camera=\"yard\"}} {}",
        count("still")
    );
    assert!(metrics.contains(&still), "{metrics}");
    let regions = format!(
        "vigil_camera_region_frames_total{{camera=\"yard\"}} {}",
        count("in_regions")
    );
    assert!(metrics.contains(&regions), "{metrics}");
    let passes = metrics
        .lines()
        .find_map(|l| l.strip_prefix("vigil_inference_person_passes_total "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(
        passes >= 1.0 && passes <= 2.0 * count("analysed") as f64,
        "{passes} person-detector passes for {} analysed frames",
        count("analysed")
    );
    assert!(
        metrics.contains("vigil_camera_moving{camera=\"yard\"}"),
        "{metrics}"
    );

    // With gating off, the same clip sends every sampled frame to the models.
    let res = server
        .req(Method::PATCH, "/api/v1/calibration")
        .json(&json!({"cameras": {"yard": {"motion_gating": false}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let short = quiet_then_people(videos.path(), "short.mp4", 4, 10);
    let res = server
        .req(Method::PATCH, "/api/v1/cameras/yard")
        .json(&json!({"source": format!("file://{}?realtime=false", short.display())}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    wait_status(&server, "yard", "ended", 2, 120).await;
    // The counters run on across the camera's restarts: 25 more sampled, all analysed.
    let body = until(30, "the second run's counters", || async {
        let body = camera(&server, "yard").await;
        (body["ingest"]["sampled"] == 190 + 25).then_some(body)
    })
    .await;
    assert_eq!(body["ingest"]["analysed"], count("analysed") + 25, "{body}");
    assert_eq!(body["ingest"]["still"], count("still"), "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sources_are_probed_and_kept_inside_the_allowed_folders() {
    let _serial = SERIAL.lock().await;
    let db = TestDb::new(Which::Sqlite).await;
    let videos = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let good = cut_clip(videos.path(), "good.mp4", 10);
    let truncated = videos.path().join("truncated.mp4");
    std::fs::write(&truncated, &std::fs::read(&good).unwrap()[..4096]).unwrap();
    let text = videos.path().join("notes.txt");
    std::fs::write(&text, "not a video at all\n".repeat(50)).unwrap();
    let elsewhere = cut_clip(outside.path(), "elsewhere.mp4", 10);
    let server = file_server(&db, videos.path(), false).await;
    let probe = |url: String| {
        let server = &server;
        async move {
            crate::support::answer(
                server
                    .req(Method::POST, "/api/v1/cameras/test")
                    .json(&json!({"url": url}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let url = |p: &Path| format!("file://{}", p.display());

    let (status, body) = probe(url(&good)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            &body["kind"],
            &body["codec"],
            &body["width"],
            &body["height"]
        ),
        (&json!("file"), &json!("h264"), &json!(768), &json!(576)),
        "{body}"
    );
    // The assets' demo clip is allowed without configuration.
    let (status, body) = probe(url(&clip())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["width"], &body["height"]),
        (&json!(768), &json!(576))
    );

    for (file, why) in [(&truncated, "truncated"), (&text, "not a video")] {
        let (status, body) = probe(url(file)).await;
        assert_error(status, &body, 422, "CAMERA_UNREACHABLE");
        let reason = body["error"]["details"]["reason"].as_str().unwrap();
        assert!(reason.contains(why), "{file:?}: {reason}");
        assert!(reason.contains(&file.display().to_string()), "{reason}");
    }
    let (status, body) = probe(url(&elsewhere)).await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");
    assert_eq!(body["error"]["details"]["field"], "url");

    // Registering or changing a camera to read outside the folders stores nothing.
    let head = server.head().await;
    let res = server
        .req(Method::POST, "/api/v1/cameras")
        .json(&json!({"id": "out", "name": "Out", "source": url(&elsewhere)}))
        .send()
        .await
        .unwrap();
    let (status, body) = crate::support::answer(res).await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");
    assert_eq!(body["error"]["details"]["field"], "source");
    let reason = body["error"]["details"]["reason"].as_str().unwrap();
    assert!(reason.contains("outside the folders"), "{reason}");
    let allowed = videos.path().canonicalize().unwrap();
    assert!(reason.contains(&allowed.display().to_string()), "{reason}");
    // A `..` out of an allowed folder is no way around it.
    let escape = format!(
        "file://{}/../{}/elsewhere.mp4",
        videos.path().display(),
        outside.path().file_name().unwrap().to_string_lossy()
    );
    let res = server
        .req(Method::POST, "/api/v1/cameras")
        .json(&json!({"id": "out", "name": "Out", "source": escape}))
        .send()
        .await
        .unwrap();
    let (status, body) = crate::support::answer(res).await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");
    assert_eq!(server.head().await, head, "nothing stored");

    register(
        &server,
        json!({"id": "inside", "name": "Inside", "source": url(&good)}),
    )
    .await;
    let res = server
        .req(Method::PATCH, "/api/v1/cameras/inside")
        .json(&json!({"source": url(&elsewhere)}))
        .send()
        .await
        .unwrap();
    let (status, body) = crate::support::answer(res).await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");
    assert_eq!(body["error"]["details"]["field"], "source");
    assert_eq!(camera(&server, "inside").await["source"], url(&good));
    // A bad query parameter is refused by the camera's own check.
    let res = server
        .req(Method::PATCH, "/api/v1/cameras/inside")
        .json(&json!({"source": format!("{}?speed=2", url(&good))}))
        .send()
        .await
        .unwrap();
    let (status, body) = crate::support::answer(res).await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");
    assert!(
        body["error"]["details"]["reason"]
            .as_str()
            .unwrap()
            .contains("speed"),
        "{body}"
    );
    server.stop().await;
}

/// `secs` seconds at 10 fps of the astronaut (256 pixels wide) standing still in front of a
/// grey wall with sensor noise.
fn astronaut_standing(dir: &Path, name: &str, secs: u32) -> PathBuf {
    let path = dir.join(name);
    let status = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("color=c=0x707070:s=768x576:r=10:d={secs}"))
        .arg("-i")
        .arg(assets().join("images/astronaut.png"))
        .args([
            "-filter_complex",
            "[1]scale=256:-2[a];[0][a]overlay=x=250:y=150,noise=alls=6:allf=t,format=yuv420p[v]",
            "-map",
            "[v]",
            "-an",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ])
        .arg(&path)
        .status()
        .expect("ffmpeg runs (scripts/setup installs it)");
    assert!(status.success(), "ffmpeg could not make the clip");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_describes_a_standing_face_a_handful_of_times_and_matches_it() {
    let _serial = SERIAL.lock().await;
    let db = TestDb::new(Which::Sqlite).await;
    let videos = tempfile::tempdir().unwrap();
    let path = astronaut_standing(videos.path(), "lobby.mp4", 8);
    let server = file_server(&db, videos.path(), true).await;
    let subject_id = enrol_astronaut(&server).await;
    register(
        &server,
        json!({"id": "lobby", "name": "Lobby", "sample_fps": 5,
               "source": format!("file://{}?realtime=false", path.display())}),
    )
    .await;
    let end_position = wait_status(&server, "lobby", "ended", 1, 300).await;
    let body = camera_at(&server, "lobby", end_position).await;
    let ingest = &body["ingest"];
    let count = |field: &str| ingest[field].as_u64().unwrap();
    // She stands still: the frames that find and confirm her are analysed, and then nothing
    // moves near her track, which is held in place without a model call…
    assert_eq!(count("sampled"), 40, "{body}");
    assert!(count("analysed") <= 4, "{body}");
    assert!(count("held") >= 35, "{body}");
    assert_eq!(
        count("analysed") + count("held") + count("still"),
        40,
        "{body}"
    );
    // …so her face is described only a few times: twice at most, then only where it is
    // clearer than before.
    let described = count("faces_described");
    assert!(
        (1..=4).contains(&described),
        "{described} descriptors: {body}"
    );
    // And she is matched once, on this camera, as the enrolled subject.
    let matched: Vec<RecordedEvent> = all_events(&server)
        .await
        .into_iter()
        .filter(|e| e.event_type == "subject.matched")
        .collect();
    assert_eq!(matched.len(), 1, "{matched:?}");
    assert_eq!(matched[0].stream, format!("subject-{subject_id}"));
    assert_eq!(matched[0].payload["camera_id"], "lobby");
    assert!(matched[0].payload["distance"].as_f64().unwrap() < 0.5);
    let metrics = server.metrics().await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("vigil_inference_faces_described_total "))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert_eq!(
        line,
        format!("vigil_inference_faces_described_total {described}")
    );
    server.stop().await;
}

/// Reads `count` frames from `source` (a minute at most) and checks what every frame source
/// promises: frames of one size that are not empty; capture times that never go back, at
/// least half a sampling period apart for a live source (`live`); counters that count every
/// frame it gave as read and kept; and a description of what is connected once it gave one.
async fn keeps_the_source_contract(
    what: &str,
    mut source: Box<dyn vigil_actors::source::FrameSource>,
    counters: &vigil_actors::source::CameraCounters,
    sample_fps: f64,
    count: usize,
    live: bool,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut size = None;
    let mut last: Option<chrono::DateTime<chrono::Utc>> = None;
    for i in 0..count {
        let taken = tokio::time::timeout(Duration::from_secs(60), source.next_frame())
            .await
            .unwrap_or_else(|_| panic!("{what}: no frame {i} within a minute"))
            .unwrap_or_else(|e| panic!("{what}: frame {i}: {e}"));
        let image = &taken.frame.image;
        assert!(
            image.width > 0 && image.height > 0,
            "{what}: an empty frame"
        );
        let dims = (image.width, image.height);
        assert_eq!(*size.get_or_insert(dims), dims, "{what}: the size changed");
        let at = taken.frame.captured_at;
        if let Some(before) = last {
            assert!(
                at >= before,
                "{what}: capture time went back ({before} → {at})"
            );
            if live {
                let gap = (at - before).as_seconds_f64();
                assert!(
                    gap >= 0.5 / sample_fps,
                    "{what}: sampled {gap:.3} s apart at {sample_fps} fps"
                );
            }
        }
        last = Some(at);
        assert!(
            !source.describe().is_empty(),
            "{what}: says nothing of what is connected"
        );
    }
    let (read, kept) = (
        counters.frames_in.load(Relaxed),
        counters.sampled.load(Relaxed),
    );
    assert!(
        kept >= count as u64,
        "{what}: kept {kept} of the {count} frames it gave"
    );
    assert!(read >= kept, "{what}: kept {kept} frames of {read} read");
}

#[tokio::test]
async fn every_frame_source_keeps_the_source_contract() {
    use std::sync::Arc;
    use vigil_actors::frame::Frame;
    use vigil_actors::source::{CameraCounters, SourceFactory, Transports, push::PushRegistry};

    let _serial = SERIAL.lock().await;
    let rtsp = Served::rtsp(free_port()).await;
    let http = Served::mjpeg("op", "s3cret").await;
    let authed = http.url.replace("http://", "http://op:s3cret@");
    let clip = clip();
    let push = Arc::new(PushRegistry::default());
    let transports = Transports {
        push: push.clone(),
        video_dirs: vec![clip.parent().unwrap().to_path_buf()],
    };
    let sources = [
        ("rtsp", rtsp.url.clone(), 4.0, true),
        ("mjpeg", format!("{authed}/stream.mjpg"), 4.0, true),
        ("snapshot", format!("{authed}/snapshot.jpg"), 4.0, true),
        (
            "file",
            format!("file://{}?realtime=false", clip.display()),
            5.0,
            false,
        ),
    ];
    for (what, url, fps, live) in sources {
        let counters = Arc::new(CameraCounters::default());
        let source = transports
            .open(what, &url, fps, counters.clone())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        keeps_the_source_contract(what, source, &counters, fps, 6, live).await;
    }

    // Push: frames come from uploads, each answered when the actor is done with it.
    let counters = Arc::new(CameraCounters::default());
    let source = transports
        .open("door", "push", 5.0, counters.clone())
        .unwrap();
    let picture =
        vigil_actors::frame::decode(&std::fs::read(frame_files()[0].clone()).unwrap()).unwrap();
    let start = chrono::Utc::now();
    let uploads = tokio::spawn(async move {
        let mut waiting = vec![];
        for i in 0..6 {
            let frame = Frame {
                image: Arc::new(picture.clone()),
                captured_at: start + chrono::Duration::milliseconds(400 * i),
            };
            waiting.push(push.push("door", frame).expect("the push source is open"));
        }
        waiting
    });
    keeps_the_source_contract("push", source, &counters, 5.0, 6, false).await;
    assert_eq!(uploads.await.unwrap().len(), 6);
    rtsp.kill().await;
    http.kill().await;
}
