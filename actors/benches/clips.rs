//! Clip benchmark: what cutting clips costs a camera, on a real 720p25 H.264 stream.
//!
//! `cargo bench -p vigil-actors --bench clips` (needs ffmpeg with libx264, which scripts/setup
//! installs). `VIGIL_BENCH_SECS` sets the stream's length (default 60). Prints, for one camera:
//! the CPU of keeping its pre-roll and of writing a clip all along, as a share of one core, the
//! pre-roll's memory (and for 16 cameras), and the bytes a clip takes per minute.
#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::time::Instant;

use std::sync::Arc;

use vigil_actors::clips::{
    ClipCodec, ClipFormat, ClipSettings, Mp4Writer, Packet, PictureEncoder, PreRoll,
};
use vigil_actors::frame::{Frame, RgbImage};

/// `secs` seconds of 1280×720 H.264 at 25 fps from ffmpeg's test pattern with noise (so the
/// bitrate is a camera's, about 2–4 Mbit/s), a keyframe every 2 s, no B-frames.
fn stream(secs: u32) -> Vec<Packet> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cam.h264");
    let status = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-f", "lavfi"])
        .args([
            "-i",
            &format!("testsrc2=size=1280x720:rate=25:duration={secs}"),
        ])
        .args([
            "-vf",
            "noise=alls=12:allf=t",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
        ])
        .args(["-b:v", "3M", "-maxrate", "3M", "-bufsize", "6M", "-bf", "0"])
        .args(["-g", "50", "-keyint_min", "50", "-sc_threshold", "0"])
        .args(["-x264-params", "aud=1", "-f", "h264"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs (scripts/setup installs it)");
    assert!(status.success());
    let data = std::fs::read(&path).unwrap();
    vigil_actors::clips::access_units(&data)
        .into_iter()
        .enumerate()
        .map(|(i, (unit, keyframe))| Packet::at_seconds(unit, i as f64 / 25.0, keyframe))
        .collect()
}

fn main() {
    let secs: u32 = std::env::var("VIGIL_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let packets = stream(secs);
    let bytes: usize = packets.iter().map(|p| p.data.len()).sum();
    let settings = ClipSettings::default();
    println!(
        "stream: {secs} s of 1280x720 H.264 at 25 fps, {} packets, {:.2} Mbit/s",
        packets.len(),
        bytes as f64 * 8.0 / f64::from(secs) / 1e6
    );

    // Keeping the pre-roll: every packet of every camera, all the time.
    let started = Instant::now();
    let mut pre_roll = PreRoll::new(settings.pre_roll_seconds, settings.pre_roll_max_bytes);
    let mut most = 0;
    for packet in &packets {
        pre_roll.push(packet.clone());
        most = most.max(pre_roll.bytes());
    }
    let keep = started.elapsed().as_secs_f64();

    // Writing a clip for the whole stream (the worst case: an incident all along).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    let format = ClipFormat {
        codec: ClipCodec::H264,
        width: 1280,
        height: 720,
    };
    let started = Instant::now();
    let mut writer = Mp4Writer::create(&path, &format).unwrap();
    for packet in &packets {
        writer.write(packet).unwrap();
    }
    writer.finish().unwrap();
    let write = started.elapsed().as_secs_f64();
    let written = std::fs::metadata(&path).unwrap().len();

    // A camera without a stream of its own: its sampled frames (2 fps) encoded to H.264.
    let (w, h) = (1280u32, 720u32);
    let frames: Vec<Frame> = (0..secs * 2)
        .map(|i| Frame {
            image: Arc::new(RgbImage {
                width: w,
                height: h,
                data: (0..w * h)
                    .flat_map(|p| {
                        let (x, y) = (p % w, p / w);
                        [(x + i * 7) as u8, (y + i * 3) as u8, ((x ^ y) + i) as u8]
                    })
                    .collect(),
            }),
            captured_at: chrono::DateTime::UNIX_EPOCH
                + chrono::Duration::milliseconds(500 * i64::from(i)),
        })
        .collect();
    let started = Instant::now();
    let mut encoder = PictureEncoder::new(w, h, 4).unwrap();
    let mut encoded = 0;
    for frame in &frames {
        encoded += encoder
            .encode(frame)
            .unwrap()
            .iter()
            .map(|p| p.data.len())
            .sum::<usize>();
    }
    let encode = started.elapsed().as_secs_f64();

    let share = |cpu: f64| 100.0 * cpu / f64::from(secs);
    println!("| what (one camera) | CPU of one core |");
    println!("|---|---|");
    println!(
        "| keeping a {} s pre-roll | {:.3} % |",
        settings.pre_roll_seconds,
        share(keep)
    );
    println!(
        "| writing a clip all along (faststart MP4) | {:.3} % |",
        share(write)
    );
    println!(
        "| encoding its sampled frames (2 fps, 1280x720) to H.264 (cameras without a stream) | {:.2} % |",
        share(encode)
    );
    println!(
        "pre-roll memory: {:.1} MiB per camera at most, {:.1} MiB for 16 cameras (cap {} MiB each)",
        most as f64 / (1 << 20) as f64,
        16.0 * most as f64 / (1 << 20) as f64,
        settings.pre_roll_max_bytes >> 20
    );
    println!(
        "clip bytes: {:.1} MiB per minute ({} bytes for {secs} s)",
        written as f64 / (1 << 20) as f64 * 60.0 / f64::from(secs),
        written
    );
    println!(
        "encoded clip bytes (2 fps): {:.1} MiB per minute",
        encoded as f64 / (1 << 20) as f64 * 60.0 / f64::from(secs)
    );
}
