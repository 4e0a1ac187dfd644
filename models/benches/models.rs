//! Throughput of each model at batch 1, 8 and 32 on every backend this machine has:
//! `cargo bench -p vigil-models --bench models` (release build).
//!
//! Prints images per second, GFLOP per image (2 × multiply-accumulates of the convolutions and
//! linear layers) and the achieved GFLOP/s as a share of the device's peak: for wgpu the peak
//! f32 rate cubecl measures with its own probe kernel; for the CPU no peak is known, so the
//! share column is blank (`vigil_models::bench` measures; `vigil-gpu-check` runs the same on a
//! GPU with the golden checks). Set `VIGIL_BENCH_BATCHES=1,8`, `VIGIL_BENCH_SECONDS=2` or
//! `VIGIL_BENCH_BACKENDS=cpu` (default `cpu,wgpu`) to shorten.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use vigil_models::bench::{TABLE_HEADER, networks, peak_gflops};
use vigil_models::{Compute, Vision, default_assets_dir};

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
    for compute in backends {
        println!("\n{} — {}\n", compute.backend, compute.adapter);
        let peak = peak_gflops(&compute);
        let vision = Vision::load(&default_assets_dir(), compute).expect("models load");
        println!("{TABLE_HEADER}");
        networks(&vision, &batches, budget, |row| {
            println!("{}", row.markdown(peak));
        });
        if let Some(p) = peak {
            println!("| peak f32 (cubecl probe) | | | | | {p:.1} | 100 % | |");
        }
    }
}
