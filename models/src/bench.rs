//! Model throughput, shared by `cargo bench -p vigil-models --bench models` and
//! `vigil-gpu-check`: images per second of each network at given batch sizes, GFLOP per image
//! (2 × multiply-accumulates of the convolutions and linear layers), the achieved GFLOP/s and
//! its share of the device's peak (for wgpu, the f32 rate cubecl measures with its own probe
//! kernel; none is known for the CPU), and the whole pipeline (persons, then faces where a
//! person is, then descriptors) on real frames.

use std::time::{Duration, Instant};

use burn::tensor::{Tensor, TensorData, ThroughputKey, ThroughputMode};

use crate::image::Image;
use crate::{Compute, Device, Vision};

/// One measured row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// What ran.
    pub model: String,
    /// Its input.
    pub input: String,
    /// Images per call.
    pub batch: usize,
    /// Images per second, or why it could not run.
    pub images_per_s: Result<f64, String>,
    /// GFLOP per image, when known.
    pub gflop: Option<f64>,
    /// Seconds of the first call (shader compilation and uploads on a GPU).
    pub first_call_s: f64,
}

impl Row {
    /// The achieved GFLOP/s.
    pub fn gflops(&self) -> Option<f64> {
        Some(self.images_per_s.as_ref().ok()? * self.gflop?)
    }

    /// A markdown table row: model, input, batch, images/s, GFLOP/image, GFLOP/s, share of
    /// `peak`, first call.
    pub fn markdown(&self, peak: Option<f64>) -> String {
        let rate = match &self.images_per_s {
            Ok(r) => format!("{r:.1}"),
            Err(e) => format!("failed: {e}"),
        };
        let gflop = self.gflop.map_or(String::new(), |g| format!("{g:.3}"));
        let achieved = self.gflops().map_or(String::new(), |g| format!("{g:.1}"));
        let share = match (self.gflops(), peak) {
            (Some(g), Some(p)) if p > 0.0 => format!("{:.1} %", 100.0 * g / p),
            _ => String::new(),
        };
        format!(
            "| {} | {} | {} | {rate} | {gflop} | {achieved} | {share} | {:.2} s |",
            self.model, self.input, self.batch, self.first_call_s
        )
    }
}

/// The header of [`Row::markdown`]'s table.
pub const TABLE_HEADER: &str = "| model | input | batch | images/s | GFLOP/image | GFLOP/s | share of peak | first call |\n|---|---|---:|---:|---:|---:|---:|---:|";

/// The device's peak f32 rate in GFLOP/s as cubecl's probe measures it (wgpu only).
pub fn peak_gflops(compute: &Compute) -> Option<f64> {
    if compute.backend != "wgpu" {
        return None;
    }
    let key = ThroughputKey {
        mode: ThroughputMode::ComputeDirect {
            dtype: cubecl::ir::ElemType::Float(cubecl::ir::FloatKind::F32),
        },
    };
    let stats = compute.device.performance_stats(&[key]);
    stats
        .first()
        .and_then(|s| s.value.ok())
        .map(|v| v.ops_per_s() / 1e9)
}

/// A deterministic test pattern of `side × side` pixels.
pub fn pattern(side: usize) -> Image {
    let data = (0..side * side * 3)
        .map(|i| ((i * 7 + i / (side * 3) * 13) % 256) as f32)
        .collect();
    Image {
        width: side,
        height: side,
        data,
    }
}

fn batch_input(n: usize, side: usize, device: &Device) -> Tensor<4> {
    let data: Vec<f32> = (0..n * 3 * side * side)
        .map(|i| ((i * 7919) % 256) as f32 / 255.0 - 0.5)
        .collect();
    Tensor::from_data(TensorData::new(data, [n, 3, side, side]), device)
}

/// Runs `f` once (timed apart: the first call), then until `budget` has passed (at least
/// once more); returns (seconds of the first call, seconds per later call). A panic (a batch too
/// big for the device's buffers fails inside Burn) is the error.
pub fn time(budget: Duration, device: &Device, mut f: impl FnMut()) -> Result<(f64, f64), String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let first = Instant::now();
        f();
        device.sync().expect("device sync");
        let first = first.elapsed().as_secs_f64();
        let start = Instant::now();
        let mut runs = 0u32;
        while runs < 1 || start.elapsed() < budget {
            f();
            device.sync().expect("device sync");
            runs += 1;
        }
        (first, start.elapsed().as_secs_f64() / f64::from(runs))
    }))
    .map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_else(|| "the batch does not fit the device".into())
    })
}

/// Each network of `vision` at each batch size, and the pre-processing of 1280×720 frames;
/// `row` gets each row as it is measured.
pub fn networks(vision: &Vision, batches: &[usize], budget: Duration, mut row: impl FnMut(Row)) {
    let device = &vision.faces.compute.device;
    let detector = vision.faces.detector();
    let landmarks = vision.faces.landmark_net();
    let embedder = vision.faces.embedder();
    let persons = &vision.persons;
    let pose = &vision.pose;
    // NanoDet and MoveNet run through the graph runner, which counts what it computes.
    let nanodet_macs = {
        persons.graph().take_macs();
        let _ = persons.raw(&[pattern(416)]);
        persons.graph().take_macs()
    };
    let movenet_macs = {
        pose.graph().take_macs();
        let _ = pose.heads(&pattern(192));
        pose.graph().take_macs()
    };
    type Run<'a> = Box<dyn Fn(usize) + 'a>;
    let input = |batch: usize, side: usize| batch_input(batch, side, device);
    let nets: [(&str, usize, u64, Run); 5] = [
        (
            "face detector (SSD MobileNetV1)",
            512,
            detector.macs(),
            Box::new(|b| {
                let _ = detector.forward(input(b, 512)).1.into_data();
            }),
        ),
        (
            "face landmarks (68)",
            112,
            landmarks.macs(),
            Box::new(|b| {
                let _ = landmarks.forward(input(b, 112)).into_data();
            }),
        ),
        (
            "face descriptor (ResNet)",
            150,
            embedder.macs(),
            Box::new(|b| {
                let _ = embedder.forward(input(b, 150)).into_data();
            }),
        ),
        (
            "persons (NanoDet, graph)",
            416,
            nanodet_macs,
            Box::new(|b| {
                let images = vec![pattern(416); b];
                let _ = persons.raw(&images).expect("runs");
            }),
        ),
        (
            "pose (MoveNet Lightning, graph, per image)",
            192,
            movenet_macs,
            Box::new(|b| {
                let image = pattern(192);
                for _ in 0..b {
                    let _ = pose.heads(&image).expect("runs");
                }
            }),
        ),
    ];
    for (name, side, macs, run) in &nets {
        for &batch in batches {
            let timed = time(budget, device, || run(batch));
            row(Row {
                model: (*name).to_string(),
                input: format!("{side}²"),
                batch,
                first_call_s: timed.as_ref().map_or(0.0, |t| t.0),
                images_per_s: timed.map(|(_, secs)| batch as f64 / secs),
                gflop: Some(2.0 * *macs as f64 / 1e9),
            });
        }
    }
    // Frame pre-processing for the face detector: a 1280×720 frame → 512² NCHW input (the
    // WGSL kernel on wgpu, its Rust twin on the CPU).
    for &batch in batches {
        let frames: Vec<Image> = (0..batch).map(|_| frame(1280, 720)).collect();
        let resize = crate::ssd::FaceDetector::resize(1280, 720);
        let timed = time(budget, device, || {
            let _ = crate::preprocess::preprocess(&frames, &resize, device).into_data();
        });
        row(Row {
            model: "pre-processing 1280×720 → 512²".into(),
            input: "1280×720".into(),
            batch,
            first_call_s: timed.as_ref().map_or(0.0, |t| t.0),
            images_per_s: timed.map(|(_, secs)| batch as f64 / secs),
            gflop: None,
        });
    }
}

/// The analysis a camera frame gets in the inference pool, on `frames` in batches of each size:
/// persons in every frame, faces in frames with a person, a descriptor per face.
pub fn pipeline(
    vision: &Vision,
    frames: &[Image],
    batches: &[usize],
    budget: Duration,
    mut row: impl FnMut(Row),
) {
    let device = &vision.faces.compute.device;
    for &batch in batches {
        let chunk: Vec<Image> = frames.iter().cycle().take(batch).cloned().collect();
        let timed = time(budget, device, || {
            let persons = vision
                .detect_persons(&chunk, crate::persons::MIN_SCORE)
                .expect("persons");
            let with_person: Vec<Image> = chunk
                .iter()
                .zip(&persons)
                .filter(|(_, p)| !p.is_empty())
                .map(|(f, _)| f.clone())
                .collect();
            if with_person.is_empty() {
                return;
            }
            let faces = vision.detect_faces(&with_person, 0.5);
            for (frame, found) in with_person.iter().zip(&faces) {
                if !found.is_empty() {
                    let _ = vision.embed_faces(frame, found);
                }
            }
        });
        row(Row {
            model: "pipeline: persons → faces → descriptors".into(),
            input: format!("{}×{}", frames[0].width, frames[0].height),
            batch,
            first_call_s: timed.as_ref().map_or(0.0, |t| t.0),
            images_per_s: timed.map(|(_, secs)| batch as f64 / secs),
            gflop: None,
        });
    }
}

/// A deterministic `w × h` frame.
fn frame(w: usize, h: usize) -> Image {
    let data = (0..w * h * 3).map(|i| ((i * 7) % 256) as f32).collect();
    Image {
        width: w,
        height: h,
        data,
    }
}
