//! Throughput of each model at batch 1, 8 and 32 on every backend this machine has:
//! `cargo bench -p vigil-models --bench models` (release build).
//!
//! Prints images per second, GFLOP per image (2 × multiply-accumulates of the convolutions and
//! linear layers) and the achieved GFLOP/s as a share of the device's peak: for wgpu the peak
//! f32 rate cubecl measures with its own probe kernel; for the CPU no peak is known, so the
//! share column is blank. Set `VIGIL_BENCH_BATCHES=1,8`, `VIGIL_BENCH_SECONDS=2` or
//! `VIGIL_BENCH_BACKENDS=cpu` (default `cpu,wgpu`) to shorten.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use burn::tensor::{Tensor, TensorData, ThroughputKey, ThroughputMode};
use vigil_models::image::Image;
use vigil_models::persons::PersonDetector;
use vigil_models::pose::PoseEstimator;
use vigil_models::{Compute, FaceModels, default_assets_dir};

/// A deterministic `w × h` frame.
fn frame(w: usize, h: usize) -> Image {
    let data = (0..w * h * 3).map(|i| ((i * 7) % 256) as f32).collect();
    Image {
        width: w,
        height: h,
        data,
    }
}

/// A deterministic test pattern of `side × side` pixels.
fn pattern(side: usize) -> Image {
    let data = (0..side * side * 3)
        .map(|i| ((i * 7 + i / (side * 3) * 13) % 256) as f32)
        .collect();
    Image {
        width: side,
        height: side,
        data,
    }
}

fn batch_input(n: usize, side: usize, device: &vigil_models::Device) -> Tensor<4> {
    let data: Vec<f32> = (0..n * 3 * side * side)
        .map(|i| ((i * 7919) % 256) as f32 / 255.0 - 0.5)
        .collect();
    Tensor::from_data(TensorData::new(data, [n, 3, side, side]), device)
}

/// Runs `f` until `budget` has passed (at least twice after one warm-up), returns seconds per run.
fn time(budget: Duration, device: &vigil_models::Device, mut f: impl FnMut()) -> f64 {
    f();
    device.sync().expect("device sync");
    let start = Instant::now();
    let mut runs = 0u32;
    while runs < 2 || start.elapsed() < budget {
        f();
        device.sync().expect("device sync");
        runs += 1;
    }
    start.elapsed().as_secs_f64() / f64::from(runs)
}

fn peak_gflops(compute: &Compute) -> Option<f64> {
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

fn main() {
    let batches: Vec<usize> = std::env::var("VIGIL_BENCH_BATCHES")
        .unwrap_or_else(|_| "1,8,32".into())
        .split(',')
        .filter_map(|b| b.trim().parse().ok())
        .collect();
    let budget = Duration::from_secs_f64(
        std::env::var("VIGIL_BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3.0),
    );
    let wanted = std::env::var("VIGIL_BENCH_BACKENDS").unwrap_or_else(|_| "cpu,wgpu".into());
    let mut backends = vec![];
    if wanted.split(',').any(|b| b.trim() == "cpu") {
        backends.push(Compute::cpu());
    }
    if wanted.split(',').any(|b| b.trim() == "wgpu") {
        match Compute::wgpu() {
            Ok(c) => backends.push(c),
            Err(e) => println!("wgpu: not available ({e})"),
        }
    }
    println!(
        "| backend | adapter | model | input | batch | images/s | GFLOP/image | GFLOP/s | share of peak |"
    );
    println!("|---|---|---|---|---:|---:|---:|---:|---:|");
    for compute in backends {
        let models = FaceModels::load(&default_assets_dir(), compute.clone()).expect("models load");
        let persons =
            PersonDetector::load(&default_assets_dir(), &compute.device).expect("NanoDet loads");
        let pose =
            PoseEstimator::load(&default_assets_dir(), &compute.device).expect("MoveNet loads");
        let device = &compute.device;
        let peak = peak_gflops(&compute);
        let detector = models.detector();
        let landmarks = models.landmark_net();
        let embedder = models.embedder();
        // NanoDet and MoveNet run through the graph runner, which counts what it computes.
        let nanodet_macs = {
            persons.graph().take_macs();
            let _ = persons.raw(&[pattern(416)]).expect("runs");
            persons.graph().take_macs()
        };
        let movenet_macs = {
            pose.graph().take_macs();
            let _ = pose.heads(&pattern(192)).expect("runs");
            pose.graph().take_macs()
        };
        type Run<'a> = Box<dyn Fn(usize) + 'a>;
        let tensor_input = |batch: usize, side: usize| batch_input(batch, side, device);
        let nets: [(&str, usize, u64, Run); 5] = [
            (
                "face detector (SSD MobileNetV1)",
                512,
                detector.macs(),
                Box::new(|b| {
                    let _ = detector.forward(tensor_input(b, 512)).1.into_data();
                }),
            ),
            (
                "face landmarks (68)",
                112,
                landmarks.macs(),
                Box::new(|b| {
                    let _ = landmarks.forward(tensor_input(b, 112)).into_data();
                }),
            ),
            (
                "face descriptor (ResNet)",
                150,
                embedder.macs(),
                Box::new(|b| {
                    let _ = embedder.forward(tensor_input(b, 150)).into_data();
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
            let gflop = 2.0 * *macs as f64 / 1e9;
            for &batch in &batches {
                // A batch too big for the device (wgpu caps one buffer, 256 MiB on Mesa's
                // software adapter) fails inside Burn; report it and go on.
                let timed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    time(budget, device, || run(batch))
                }));
                let Ok(secs) = timed else {
                    println!(
                        "| {} | {} | {name} | {side}² | {batch} | failed: the batch does not fit the device's buffers | {gflop:.3} | | |",
                        compute.backend, compute.adapter
                    );
                    continue;
                };
                let images_per_s = batch as f64 / secs;
                let achieved = images_per_s * gflop;
                let share =
                    peak.map_or(String::new(), |p| format!("{:.1} %", 100.0 * achieved / p));
                println!(
                    "| {} | {} | {name} | {side}² | {batch} | {images_per_s:.1} | {gflop:.3} | {achieved:.1} | {share} |",
                    compute.backend, compute.adapter
                );
            }
        }
        // Frame pre-processing for the face detector: a 1280×720 frame → 512² NCHW input
        // (the WGSL kernel on wgpu, its Rust twin on the CPU).
        for &batch in &batches {
            let frames: Vec<Image> = (0..batch).map(|_| frame(1280, 720)).collect();
            let resize = vigil_models::ssd::FaceDetector::resize(1280, 720);
            let secs = time(budget, device, || {
                let _ = vigil_models::preprocess::preprocess(&frames, &resize, device).into_data();
            });
            println!(
                "| {} | {} | pre-processing 1280×720 → 512² | 1280×720 | {batch} | {:.1} | | | |",
                compute.backend,
                compute.adapter,
                batch as f64 / secs
            );
        }
        if let Some(p) = peak {
            println!(
                "| {} | {} | peak f32 (cubecl probe) | | | | | {p:.1} | 100 % |",
                compute.backend, compute.adapter
            );
        }
    }
}
