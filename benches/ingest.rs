//! Ingest benchmarks: frames per second through decode → sample → inference pool → tracker
//! for 1, 4 and 16 cameras, and the CPU share of receiving and decoding one 720p25 RTSP
//! camera.
//!
//! `cargo bench --bench ingest` (needs what scripts/setup installs: the clip, ffmpeg, the
//! GStreamer RTSP server for Python). `VIGIL_BENCH_BACKEND=cpu|wgpu|auto` (default `cpu`)
//! picks the models' device, `VIGIL_BENCH_SECS` the measuring window per row (default 30).
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
struct Totals {
    frames_in: u64,
    sampled: u64,
    dropped: u64,
    analysed: u64,
    batches: u64,
    batch_frames: u64,
}

fn totals(app: &App, ids: &[String]) -> Totals {
    let mut t = Totals::default();
    for id in ids {
        if let Some(r) = app.ingest().runtime_of(id) {
            t.frames_in += r.counters.frames_in.load(Relaxed);
            t.sampled += r.counters.sampled.load(Relaxed);
            t.dropped += r.counters.dropped.load(Relaxed);
            t.analysed += r.counters.analysed.load(Relaxed);
        }
    }
    let m = app.ingest().pool.metrics();
    t.batches = m.batches.load(Relaxed);
    t.batch_frames = m
        .batch_sizes
        .iter()
        .enumerate()
        .map(|(i, c)| (i as u64 + 1) * c.load(Relaxed))
        .sum();
    t
}

/// `n` MJPEG cameras (10 fps each, sampled at 5 fps) through the whole pipeline, with
/// `workers` inference threads.
async fn pipeline(n: usize, workers: usize, mjpeg: &str, window: Duration) -> String {
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
    let ids: Vec<String> = (0..n).map(|i| format!("cam{i}")).collect();
    for id in &ids {
        let register = vigil_actors::camera::RegisterCamera {
            id: id.clone(),
            name: id.clone(),
            source: format!("{mjpeg}/stream.mjpg"),
            enabled: true,
            sample_fps: 5.0,
            features: Default::default(),
            prompt: String::new(),
            zones: vec![],
        };
        handler
            .execute::<vigil_actors::camera::CameraAggregate>(
                id,
                vigil_actors::camera::CameraCommand::Register(register),
                &vigil_schemas::EventMeta::system(),
                None,
            )
            .await
            .unwrap();
    }
    // Warm up: every camera analysed a frame (the models are loaded).
    let deadline = Instant::now() + Duration::from_secs(120);
    while ids.iter().any(|id| {
        app.ingest()
            .runtime_of(id)
            .is_none_or(|r| r.counters.analysed.load(Relaxed) == 0)
    }) {
        assert!(Instant::now() < deadline, "cameras did not start in 120 s");
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
    let sampled = t1.sampled - t0.sampled;
    let dropped = t1.dropped - t0.dropped;
    let mean_batch =
        (t1.batch_frames - t0.batch_frames) as f64 / (t1.batches - t0.batches).max(1) as f64;
    format!(
        "| {n:>2} | {workers} | {:>8.1} | {:>8.1} | {:>8.2} | {:>5.1} % | {:>4.2} | {:>4.2} |",
        per_s(t0.frames_in, t1.frames_in),
        per_s(t0.sampled, t1.sampled),
        per_s(t0.analysed, t1.analysed),
        100.0 * dropped as f64 / sampled.max(1) as f64,
        mean_batch,
        (cpu1 - cpu0) / wall,
    )
}

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
    let mjpeg = serve(
        "python3",
        &[
            repo("tests/servers/mjpeg_server.py").display().to_string(),
            "--port".into(),
            "0".into(),
            "--frames".into(),
            frames.display().to_string(),
            "--fps".into(),
            "10".into(),
        ],
    )
    .await;
    let machine = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\nPipeline: MJPEG cameras (768x576, 10 fps each, sampled at 5 fps) → pool → tracker; \
         models on `{:?}`, {machine} CPU cores, {} s per row; `received` counts MJPEG parts \
         (a part is decoded only when sampled)\n",
        backend(),
        window.as_secs()
    );
    println!(
        "| cameras | workers | received/s | sampled/s | analysed/s | dropped | mean batch | CPU cores |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (n, workers) in [(1, 1), (4, 1), (16, 1), (16, 2)] {
        println!("{}", pipeline(n, workers, &mjpeg.url, window).await);
    }
    drop(mjpeg);

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
