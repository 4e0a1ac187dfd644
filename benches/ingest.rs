//! Ingest benchmarks: a camera fleet through decode → sample → motion gating → inference
//! pool → tracker — busy cameras playing the pedestrian clip and quiet ones (sensor noise and
//! a drifting exposure; every other one with people crossing for 5 s a minute) — and the CPU
//! share of receiving and decoding one 720p25 RTSP camera, and frame-in → incident on the
//! WebSocket for a push camera.
//!
//! `cargo bench --bench ingest` (needs what scripts/setup installs: the clip, ffmpeg, the
//! GStreamer RTSP server for Python). `VIGIL_BENCH_BACKEND=cpu|wgpu|auto` (default `cpu`)
//! picks the models' device, `VIGIL_BENCH_SECS` the measuring window per row (default 30),
//! `VIGIL_BENCH_PARTS` which parts run (`fleet,quality,latency,rtsp`, the default: all),
//! `VIGIL_BENCH_WORKERS` the inference workers of the fleet rows (default: the config's, 2),
//! `VIGIL_BENCH_FLEET` which fleet rows (`2+14,1+0`; the default: 1+0, 4+0, 2+2, 2+14, 2+30).
#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use vigil::app::App;
use vigil::config::Config;
use vigil_actors::source::push::PushRegistry;
use vigil_actors::source::{CameraCounters, SourceFactory, Transports};

fn secs() -> u64 {
    std::env::var("VIGIL_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

/// Whether `VIGIL_BENCH_PARTS` (comma-separated; absent: every part) names `part`.
fn runs(part: &str) -> bool {
    std::env::var("VIGIL_BENCH_PARTS")
        .ok()
        .is_none_or(|parts| parts.split(',').any(|p| p.trim() == part))
}

/// Inference workers of the fleet rows (`VIGIL_BENCH_WORKERS`; default: the config's).
fn workers() -> usize {
    std::env::var("VIGIL_BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(Config::default().inference_workers)
}

/// The fleet rows (busy, quiet) `VIGIL_BENCH_FLEET` names (`2+14,1+0`; absent: every row).
fn fleet_rows() -> Vec<(usize, usize)> {
    let all = vec![(1, 0), (4, 0), (2, 2), (2, 14), (2, 30)];
    match std::env::var("VIGIL_BENCH_FLEET") {
        Ok(rows) => rows
            .split(',')
            .filter_map(|row| {
                let (busy, quiet) = row.trim().split_once('+')?;
                Some((busy.parse().ok()?, quiet.parse().ok()?))
            })
            .collect(),
        Err(_) => all,
    }
}

fn backend() -> vigil_models::BackendPreference {
    match std::env::var("VIGIL_BENCH_BACKEND").as_deref() {
        Ok("wgpu") => vigil_models::BackendPreference::Wgpu,
        Ok("auto") => vigil_models::BackendPreference::Auto,
        _ => vigil_models::BackendPreference::Cpu,
    }
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn clip() -> PathBuf {
    vigil_models::default_assets_dir().join("images/vtest.avi")
}

/// Seconds of CPU this process has used (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // Linux reports clock ticks of 1/100 s on every supported architecture.
    ticks / 100.0
}

fn ffmpeg(args: &[&str]) {
    let status = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y"])
        .args(args)
        .status()
        .expect("ffmpeg (scripts/setup installs it)");
    assert!(status.success(), "ffmpeg {args:?} failed");
}

struct Served {
    child: tokio::process::Child,
    url: String,
}

async fn serve_owned(program: &'static str, args: Vec<String>) -> Served {
    serve(program, &args).await
}

async fn serve(program: &str, args: &[String]) -> Served {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("test server starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("server ready in 30 s")
        .unwrap()
        .expect("server printed READY");
    Served {
        child,
        url: line.trim_start_matches("READY ").to_string(),
    }
}

#[derive(Default, Clone, Copy)]
struct Counts {
    sampled: u64,
    dropped: u64,
    analysed: u64,
    with_motion: u64,
    described: u64,
    in_regions: u64,
    held: u64,
}

#[derive(Default, Clone, Copy)]
struct Totals {
    busy: Counts,
    quiet: Counts,
    batches: u64,
    batch_frames: u64,
    passes: u64,
}

fn totals(app: &App, ids: &[(String, bool)]) -> Totals {
    let mut t = Totals::default();
    for (id, busy) in ids {
        if let Some(r) = app.ingest().runtime_of(id) {
            let c = if *busy { &mut t.busy } else { &mut t.quiet };
            c.sampled += r.counters.sampled.load(Relaxed);
            c.dropped += r.counters.dropped.load(Relaxed);
            c.analysed += r.counters.analysed.load(Relaxed);
            c.with_motion += r.counters.with_motion.load(Relaxed);
            c.described += r.counters.faces_described.load(Relaxed);
            c.in_regions += r.counters.in_regions.load(Relaxed);
            c.held += r.counters.held.load(Relaxed);
        }
    }
    let m = app.ingest().pool().metrics();
    t.batches = m.batches.load(Relaxed);
    t.passes = m.person_passes.load(Relaxed);
    t.batch_frames = m
        .batch_sizes
        .iter()
        .enumerate()
        .map(|(i, c)| (i as u64 + 1) * c.load(Relaxed))
        .sum();
    t
}

/// `busy` cameras on the pedestrian clip and `quiet` ones (10 fps each, sampled at 5 fps)
/// through the whole pipeline, with `workers` inference threads.
async fn fleet(
    busy: usize,
    quiet: usize,
    workers: usize,
    urls: &FleetUrls,
    window: Duration,
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().join("data"),
        admin_key: "bench-admin-key".into(),
        models_backend: backend(),
        inference_max_batch: 8,
        inference_workers: workers,
        inference_queue: 256,
        log: "warn".into(),
        ..Config::default()
    };
    let (app, _) = App::open(config).await.unwrap();
    let _tasks = app.spawn_background();
    let handler = app.handler().clone();
    let ids: Vec<(String, bool)> = (0..busy)
        .map(|i| (format!("busy{i}"), true))
        .chain((0..quiet).map(|i| (format!("quiet{i}"), false)))
        .collect();
    for (i, (id, is_busy)) in ids.iter().enumerate() {
        let url = match (is_busy, i % 2) {
            (true, _) => &urls.busy,
            (false, 0) => &urls.quiet,
            (false, _) => &urls.crossing,
        };
        let register = vigil_actors::aggregates::camera::RegisterCamera {
            id: id.clone(),
            name: id.clone(),
            source: format!("{url}/stream.mjpg"),
            enabled: true,
            sample_fps: 5.0,
            features: Default::default(),
            prompt: String::new(),
            zones: vec![],
        };
        handler
            .execute::<vigil_actors::aggregates::camera::CameraAggregate>(
                id,
                vigil_actors::aggregates::camera::CameraCommand::Register(register),
                &vigil_schemas::EventMeta::system(),
                None,
            )
            .await
            .unwrap();
    }
    // Warm up: every camera handled a frame (the models are loaded).
    let deadline = Instant::now() + Duration::from_secs(180);
    while ids.iter().any(|(id, _)| {
        app.ingest()
            .runtime_of(id)
            .is_none_or(|r| r.counters.analysed.load(Relaxed) == 0)
    }) {
        assert!(Instant::now() < deadline, "cameras did not start in 180 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (t0, cpu0, at0) = (totals(&app, &ids), cpu_seconds(), Instant::now());
    tokio::time::sleep(window).await;
    let (t1, cpu1, wall) = (
        totals(&app, &ids),
        cpu_seconds(),
        at0.elapsed().as_secs_f64(),
    );
    app.stop_ingest().await;
    let per_s = |a: u64, b: u64| (b - a) as f64 / wall;
    let share = |part: u64, whole: u64| {
        if whole == 0 {
            "–".to_string()
        } else {
            format!("{:.0} %", 100.0 * part as f64 / whole as f64)
        }
    };
    let (b, q) = (
        |f: fn(&Counts) -> u64| f(&t1.busy) - f(&t0.busy),
        |f: fn(&Counts) -> u64| f(&t1.quiet) - f(&t0.quiet),
    );
    let sampled = b(|c| c.sampled) + q(|c| c.sampled);
    let dropped = b(|c| c.dropped) + q(|c| c.dropped);
    let mean_batch =
        (t1.batch_frames - t0.batch_frames) as f64 / (t1.batches - t0.batches).max(1) as f64;
    let analysed = b(|c| c.analysed) + q(|c| c.analysed);
    format!(
        "| {busy} + {quiet} | {workers} | {:.1} | {:.2} | {} | {:.2} | {:.2} | {} | {:.2} | {:.2} | {} | {} | {:.2} | {:.2} | {:.2} |",
        per_s(0, sampled),
        per_s(0, analysed),
        share(b(|c| c.in_regions) + q(|c| c.in_regions), analysed),
        (t1.passes - t0.passes) as f64 / analysed.max(1) as f64,
        per_s(0, b(|c| c.held) + q(|c| c.held)),
        share(b(|c| c.analysed), b(|c| c.sampled)),
        per_s(0, q(|c| c.with_motion)),
        per_s(0, q(|c| c.analysed)),
        share(
            q(|c| c.analysed).min(q(|c| c.with_motion)),
            q(|c| c.with_motion)
        ),
        share(dropped, sampled),
        per_s(0, b(|c| c.described) + q(|c| c.described)),
        mean_batch,
        (cpu1 - cpu0) / wall,
    )
}

/// The three MJPEG servers a fleet draws on.
struct FleetUrls {
    busy: String,
    quiet: String,
    crossing: String,
}

/// Frames of a quiet scene (grey wall, sensor noise, exposure drifting up and back) for
/// `quiet` seconds, then `people` seconds of the pedestrian clip, at 10 fps, into `dir`.
fn quiet_frames(dir: &Path, clip: &Path, quiet: u32, people: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let out = dir.join("%05d.jpg");
    let quiet_part = format!(
        "color=c=0x707070:s=768x576:r=10:d={quiet},noise=alls=10:allf=t,\
         eq=brightness='0.04*sin(t/10)':eval=frame,setsar=1,format=yuv420p"
    );
    if people == 0 {
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &quiet_part,
            "-q:v",
            "4",
            out.to_str().unwrap(),
        ]);
        return;
    }
    let graph = format!(
        "[0]setsar=1,format=yuv420p[q];\
         [1]trim=duration={people},setpts=PTS-STARTPTS,fps=10,setsar=1,format=yuv420p[p];\
         [q][p]concat=n=2:v=1[v]"
    );
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &quiet_part,
        "-i",
        clip.to_str().unwrap(),
        "-filter_complex",
        &graph,
        "-map",
        "[v]",
        "-q:v",
        "4",
        out.to_str().unwrap(),
    ]);
}

/// What one camera made of a clip read as fast as it is analysed.
struct QualityRun {
    /// Each confirmed track's first and last sighting, seconds from the clip's start.
    tracks: Vec<(f64, f64)>,
    analysed: u64,
    in_regions: u64,
    held: u64,
    passes: u64,
    regions: u64,
    described: u64,
    wall: f64,
}

/// `clip` on one file camera (sampled at 5 fps, every sampled frame handled), with motion
/// gating and person regions on (`gated`) or every frame whole.
async fn quality_run(clip: &Path, gated: bool) -> QualityRun {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().join("data"),
        admin_key: "bench-admin-key".into(),
        models_backend: backend(),
        video_dirs: vec![clip.parent().unwrap().display().to_string()],
        log: "warn".into(),
        ..Config::default()
    };
    let (app, _) = App::open(config).await.unwrap();
    let _tasks = app.spawn_background();
    app.ingest()
        .set_calibration(vigil_schemas::events::Calibration {
            global: vigil_schemas::events::CalibrationSettings {
                motion_gating: gated,
                person_regions: gated,
                ..Default::default()
            },
            cameras: Default::default(),
        });
    let start: chrono::DateTime<chrono::Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let register = vigil_actors::aggregates::camera::RegisterCamera {
        id: "clip".into(),
        name: "clip".into(),
        source: format!(
            "file://{}?realtime=false&start=2026-01-01T00:00:00Z",
            clip.display()
        ),
        enabled: true,
        sample_fps: 5.0,
        features: Default::default(),
        prompt: String::new(),
        zones: vec![],
    };
    let began = Instant::now();
    app.handler()
        .execute::<vigil_actors::aggregates::camera::CameraAggregate>(
            "clip",
            vigil_actors::aggregates::camera::CameraCommand::Register(register),
            &vigil_schemas::EventMeta::system(),
            None,
        )
        .await
        .unwrap();
    // Until the file has been read to its end and its tracks ended.
    let mut tracks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        assert!(
            Instant::now() < deadline,
            "the clip took more than 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ended = app
            .ingest()
            .runtime_of("clip")
            .is_some_and(|r| r.counters.sampled.load(Relaxed) > 0 && !r.running.load(Relaxed));
        if !ended {
            continue;
        }
        // The actor's last appends (its tracks' ends) land as it stops.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut after = 0;
        loop {
            let page = app.store().read_all(after, 1000).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.position;
            for e in page.iter().filter(|e| e.event_type == "appearance.ended") {
                let at = |field: &str| {
                    let t: chrono::DateTime<chrono::Utc> =
                        serde_json::from_value(e.payload[field].clone()).unwrap();
                    (t - start).as_seconds_f64()
                };
                tracks.push((at("started_at"), at("ended_at")));
            }
        }
        break;
    }
    let wall = began.elapsed().as_secs_f64();
    let r = app.ingest().runtime_of("clip").unwrap();
    let m = app.ingest().pool().metrics();
    let run = QualityRun {
        tracks,
        analysed: r.counters.analysed.load(Relaxed),
        in_regions: r.counters.in_regions.load(Relaxed),
        held: r.counters.held.load(Relaxed),
        passes: m.person_passes.load(Relaxed),
        regions: m.person_regions.load(Relaxed),
        described: r.counters.faces_described.load(Relaxed),
        wall,
    };
    app.stop_ingest().await;
    run
}

/// Persons tracked at `t` (seconds): tracks whose first and last sightings span it.
fn tracked_at(tracks: &[(f64, f64)], t: f64) -> usize {
    tracks.iter().filter(|(a, b)| *a <= t && t <= *b).count()
}

/// The quality row: the clip gated (motion, regions, held tracks) and ungated (every sampled
/// frame whole). Recall is the share of the ungated run's track-seconds the gated run also
/// covers (persons tracked at each 0.1 s, the smaller of the two counts).
async fn quality(clip: &Path) {
    let gated = quality_run(clip, true).await;
    let ungated = quality_run(clip, false).await;
    let end = ungated
        .tracks
        .iter()
        .chain(&gated.tracks)
        .map(|(_, b)| *b)
        .fold(0.0, f64::max);
    let (mut both, mut reference) = (0usize, 0usize);
    for step in 0..=(end * 10.0) as usize {
        let t = step as f64 / 10.0;
        let (g, u) = (tracked_at(&gated.tracks, t), tracked_at(&ungated.tracks, t));
        both += g.min(u);
        reference += u;
    }
    println!(
        "\nQuality: the pedestrian clip's first {QUALITY_SECS} s on one file camera (5 fps sampled, every sampled frame handled), gated (motion, person regions, held tracks) against ungated (every sampled frame, whole)\n"
    );
    println!(
        "| run | tracks | track-seconds | analysed frames | in regions | held | person-detector passes | regions | faces described per track | wall s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, run) in [("gated", &gated), ("ungated", &ungated)] {
        let seconds: f64 = run.tracks.iter().map(|(a, b)| b - a).sum();
        println!(
            "| {name} | {} | {seconds:.1} | {} | {} | {} | {} | {} | {:.2} | {:.0} |",
            run.tracks.len(),
            run.analysed,
            run.in_regions,
            run.held,
            run.passes,
            run.regions,
            run.described as f64 / run.tracks.len().max(1) as f64,
            run.wall,
        );
    }
    println!(
        "\nGated recall of the ungated run's track-seconds: {:.1} % (target ≥ 95 %)",
        100.0 * both as f64 / reference.max(1) as f64
    );
}

/// Seconds of the pedestrian clip the quality row reads.
const QUALITY_SECS: u32 = 40;

/// One 720p25 RTSP camera received and decoded (every frame), sampled at `fps` and converted
/// to RGB: CPU cores used by this process, and decoded frames per second.
async fn rtsp_share(url: &str, fps: f64, window: Duration) -> (f64, f64) {
    let sources = Transports {
        push: Arc::new(PushRegistry::default()),
        video_dirs: vec![],
    };
    let counters = Arc::new(CameraCounters::default());
    let mut source = sources.open("bench", url, fps, counters.clone()).unwrap();
    let first = source.next_frame().await.expect("first frame");
    assert_eq!(
        (first.frame.image.width, first.frame.image.height),
        (1280, 720)
    );
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_secs(3) {
        source.next_frame().await.unwrap();
    }
    let (f0, cpu0, at0) = (
        counters.frames_in.load(Relaxed),
        cpu_seconds(),
        Instant::now(),
    );
    while at0.elapsed() < window {
        source.next_frame().await.unwrap();
    }
    let wall = at0.elapsed().as_secs_f64();
    let decoded = (counters.frames_in.load(Relaxed) - f0) as f64 / wall;
    ((cpu_seconds() - cpu0) / wall, decoded)
}

/// A push camera posting the pedestrian clip's frames (`frames`, 10 fps; every other one is
/// sent, one request a frame at 5 fps, each stamped with the time it is sent) to a server with
/// an intrusion zone over the whole picture, and a WebSocket client on `incidents`: for each
/// `incident.opened`, the time from the start of the upload of the frame it was found in (its
/// `occurred_at` is that frame's stamp) to the event's arrival on the socket. Sorted, in ms.
async fn push_latencies(frames: &Path, window: Duration) -> Vec<f64> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

    const KEY: &str = "bench-admin-key";
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().join("data"),
        admin_key: KEY.into(),
        models_backend: backend(),
        log: "warn".into(),
        ..Config::default()
    };
    let (app, _) = App::open(config).await.unwrap();
    app.ingest().pool().preload();
    let _tasks = app.spawn_background();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(vigil::api::serve(app.clone(), listener, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let send = |method: reqwest::Method, path: &str, body: serde_json::Value| {
        let request = http
            .request(method, format!("{base}{path}"))
            .header("x-api-key", KEY)
            .json(&body);
        async move {
            let res = request.send().await.unwrap();
            assert!(res.status().is_success(), "{}", res.text().await.unwrap());
        }
    };
    send(
        reqwest::Method::PATCH,
        "/api/v1/calibration",
        serde_json::json!({"cameras": {"door": {"intrusion_zones": ["all"]}}}),
    )
    .await;
    send(
        reqwest::Method::POST,
        "/api/v1/cameras",
        serde_json::json!({"id": "door", "name": "Door", "source": "push", "sample_fps": 5,
            "features": {"intrusion": true},
            "zones": [{"name": "all", "polygon": [{"x": 0, "y": 0}, {"x": 1, "y": 0}, {"x": 1, "y": 1}, {"x": 0, "y": 1}]}]}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while app.ingest().runtime_of("door").is_none() {
        assert!(Instant::now() < deadline, "the push camera did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut request = format!("{}/ws", base.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-api-key", KEY.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    socket
        .send(Message::text(
            serde_json::json!({"type": "subscribe", "topics": ["incidents"]}).to_string(),
        ))
        .await
        .unwrap();
    // Upload start of each frame, by its stamp.
    let sent = Arc::new(std::sync::Mutex::new(Vec::<(
        chrono::DateTime<chrono::Utc>,
        Instant,
    )>::new()));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let (sent, out) = (sent.clone(), latencies.clone());
        tokio::spawn(async move {
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let arrived = Instant::now();
                let event: serde_json::Value = serde_json::from_str(&text).unwrap();
                if event["event_type"] != "incident.opened" {
                    continue;
                }
                let at: chrono::DateTime<chrono::Utc> =
                    event["occurred_at"].as_str().unwrap().parse().unwrap();
                let sent = sent.lock().unwrap();
                if let Some((_, started)) = sent.iter().find(|(stamp, _)| {
                    (*stamp - at).num_microseconds().unwrap_or(i64::MAX).abs() < 1000
                }) {
                    out.lock()
                        .unwrap()
                        .push(arrived.duration_since(*started).as_secs_f64() * 1000.0);
                }
            }
        })
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(frames)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let started = Instant::now();
    for (i, file) in files.iter().step_by(2).enumerate() {
        if started.elapsed() > window {
            break;
        }
        let slot = started + Duration::from_millis(200 * i as u64);
        tokio::time::sleep_until(slot.into()).await;
        let stamp = chrono::Utc::now();
        sent.lock().unwrap().push((stamp, Instant::now()));
        let form = reqwest::multipart::Form::new()
            .part(
                "files",
                reqwest::multipart::Part::bytes(std::fs::read(file).unwrap())
                    .file_name("f.jpg")
                    .mime_str("image/jpeg")
                    .unwrap(),
            )
            .text(
                "timestamps",
                stamp.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            );
        let res = http
            .post(format!("{base}/api/v1/cameras/door/frames"))
            .header("x-api-key", KEY)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    reader.abort();
    let _ = stop.send(());
    let _ = server.await;
    app.stop_ingest().await;
    let mut out = std::mem::take(&mut *latencies.lock().unwrap());
    out.sort_by(f64::total_cmp);
    out
}

#[tokio::main]
async fn main() {
    let window = Duration::from_secs(secs());
    let work = tempfile::tempdir().unwrap();
    let frames = work.path().join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    let clip = clip();
    ffmpeg(&[
        "-i",
        clip.to_str().unwrap(),
        "-t",
        "60",
        "-q:v",
        "4",
        frames.join("%04d.jpg").to_str().unwrap(),
    ]);
    let mjpeg = |frames: PathBuf| {
        serve_owned(
            "python3",
            vec![
                repo("tests/servers/mjpeg_server.py").display().to_string(),
                "--port".into(),
                "0".into(),
                "--frames".into(),
                frames.display().to_string(),
                "--fps".into(),
                "10".into(),
            ],
        )
    };
    let (quiet_dir, crossing_dir) = (work.path().join("quiet"), work.path().join("crossing"));
    quiet_frames(&quiet_dir, &clip, 60, 0);
    quiet_frames(&crossing_dir, &clip, 55, 5);
    let servers = [
        mjpeg(frames.clone()).await,
        mjpeg(quiet_dir).await,
        mjpeg(crossing_dir).await,
    ];
    let urls = FleetUrls {
        busy: servers[0].url.clone(),
        quiet: servers[1].url.clone(),
        crossing: servers[2].url.clone(),
    };
    let machine = std::thread::available_parallelism().map_or(0, |n| n.get());
    if runs("fleet") {
        println!(
            "\nFleet: MJPEG cameras (768x576, 10 fps each, sampled at 5 fps) → motion gating → pool → \
         tracker; busy cameras play the pedestrian clip, quiet ones a grey wall with sensor noise \
         and a drifting exposure (every other one with 5 s of pedestrians a minute); models on \
         `{:?}`, {machine} CPU cores, {} s per row\n",
            backend(),
            window.as_secs()
        );
        println!(
            "| busy + quiet | workers | sampled/s | analysed/s | in regions | detector passes per analysed frame | held/s | busy analysed | quiet motion frames/s | quiet analysed/s | quiet motion analysed | dropped | faces described/s | mean batch | CPU cores |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (busy, quiet) in fleet_rows() {
            println!("{}", fleet(busy, quiet, workers(), &urls, window).await);
        }
    }
    drop(servers);

    if runs("latency") {
        let latencies = push_latencies(&frames, window.max(Duration::from_secs(60))).await;
        let at = |q: f64| {
            latencies
                .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
                .map_or("–".to_string(), |ms| format!("{ms:.0}"))
        };
        println!(
            "\nA push camera (one upload a frame, 5 fps, the clip; intrusion zone over the whole \
         picture): frame-in → `incident.opened` on the WebSocket\n"
        );
        println!("| incidents | p50 ms | p99 ms | max ms |");
        println!("|---:|---:|---:|---:|");
        println!(
            "| {} | {} | {} | {} |",
            latencies.len(),
            at(0.5),
            at(0.99),
            latencies
                .last()
                .map_or("–".to_string(), |ms| format!("{ms:.0}"))
        );
    }

    if runs("quality") {
        let short = work.path().join("quality").join("clip.mp4");
        std::fs::create_dir_all(short.parent().unwrap()).unwrap();
        ffmpeg(&[
            "-i",
            clip.to_str().unwrap(),
            "-t",
            &QUALITY_SECS.to_string(),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            short.to_str().unwrap(),
        ]);
        quality(&short).await;
    }

    if !runs("rtsp") {
        return;
    }

    let hd = work.path().join("clip720.mp4");
    ffmpeg(&[
        "-i",
        clip.to_str().unwrap(),
        "-t",
        "60",
        "-vf",
        "scale=1280:720",
        "-r",
        "25",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        hd.to_str().unwrap(),
    ]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut rtsp = serve(
        "/usr/bin/python3",
        &[
            repo("tests/servers/rtsp_server.py").display().to_string(),
            "--port".into(),
            port.to_string(),
            "--file".into(),
            hd.display().to_string(),
            "--fps".into(),
            "25".into(),
        ],
    )
    .await;
    println!(
        "\nOne 720p25 H.264 RTSP camera (retina over TCP, FFmpeg decode of every frame, RGB of sampled frames), this process only:\n"
    );
    println!("| sampled fps | decoded frames/s | CPU cores |");
    println!("|---:|---:|---:|");
    for fps in [1.0, 5.0] {
        let (cores, decoded) = rtsp_share(&rtsp.url, fps, window).await;
        println!("| {fps} | {decoded:.1} | {cores:.3} |");
    }
    let _ = rtsp.child.kill().await;
}
