//! `vigil-gpu-check`: what Vigil's models do on this machine's GPU, in a few minutes, as one
//! markdown report: the adapter, the time to the first result (shader compilation), every
//! golden check against the original implementations' outputs, each network's images/s,
//! GFLOP/s and share of the card's peak at each batch size, and the whole per-frame analysis
//! (persons, faces where a person is, descriptors) on real frames.
//!
//! ```text
//! vigil-gpu-check [--backend wgpu|cpu] [--batches 1,8,32,64] [--seconds 2] [--out FILE]
//!                 [--no-golden]
//! vigil-gpu-check --list-assets     # the files under the assets folder it reads
//! ```
//!
//! Weights and test images come from `$VIGIL_ASSETS` (else `~/.cache/vigil/assets`,
//! `scripts/fetch-assets`), golden files from `$VIGIL_GOLDEN_DIR` (else the source tree's
//! `models/reference/golden`). `scripts/gpu-check` builds it, and with `--bundle` packs it
//! with everything it reads for a machine with no registry. Exit status: 0 when every golden
//! check passed, 1 when one failed, 2 when something it needs is missing.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use vigil_models::bench::{Row, TABLE_HEADER, networks, peak_gflops, pipeline};
use vigil_models::image::Image;
use vigil_models::{Compute, Vision, default_assets_dir};

struct Args {
    backend: String,
    batches: Vec<usize>,
    seconds: f64,
    out: Option<std::path::PathBuf>,
    golden: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        backend: "wgpu".into(),
        batches: vec![1, 8, 32, 64],
        seconds: 2.0,
        out: None,
        golden: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--backend" => args.backend = value()?,
            "--batches" => {
                args.batches = value()?
                    .split(',')
                    .map(|b| {
                        b.trim()
                            .parse::<usize>()
                            .map_err(|e| format!("--batches: {e}"))
                    })
                    .collect::<Result<_, _>>()?;
                if args.batches.is_empty() || args.batches.contains(&0) {
                    return Err("--batches needs sizes of at least 1".into());
                }
            }
            "--seconds" => {
                args.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?;
            }
            "--out" => args.out = Some(value()?.into()),
            "--no-golden" => args.golden = false,
            "-h" | "--help" => {
                return Err("usage: vigil-gpu-check [--backend wgpu|cpu] [--batches 1,8,32,64] [--seconds 2] [--out FILE] [--no-golden]".into());
            }
            other => return Err(format!("unknown argument `{other}` (see --help)")),
        }
    }
    if !matches!(args.backend.as_str(), "wgpu" | "cpu") {
        return Err(format!(
            "--backend must be wgpu or cpu, not `{}`",
            args.backend
        ));
    }
    Ok(args)
}

/// The frame the pipeline is measured on.
const FRAME: &str = "images/vtest-100.png";

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--list-assets") {
        for file in vigil_models::required_weights()
            .iter()
            .map(String::as_str)
            .chain(vigil_models::golden::IMAGES)
        {
            println!("{file}");
        }
        return ExitCode::SUCCESS;
    }
    let args = match parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("vigil-gpu-check: {e}");
            return ExitCode::from(2);
        }
    };
    let assets = default_assets_dir();
    if let Err(e) = vigil_models::check_weights(&assets) {
        eprintln!(
            "vigil-gpu-check: the weights in {} are missing or wrong: {e} (run {}, or set VIGIL_ASSETS)",
            assets.display(),
            vigil_models::FETCH_WEIGHTS
        );
        return ExitCode::from(2);
    }
    let frames = match vigil_models::tfjs::read_verified(&assets, FRAME)
        .and_then(|bytes| Image::decode_png(&bytes))
    {
        Ok(frame) => vec![frame],
        Err(e) => {
            eprintln!(
                "vigil-gpu-check: the test frame images/vtest-100.png in {}: {e} (run scripts/fetch-assets)",
                assets.display()
            );
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let compute = if args.backend == "cpu" {
        Compute::cpu()
    } else {
        match Compute::wgpu() {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "vigil-gpu-check: no wgpu adapter: {e} (a Vulkan loader and a driver are needed; see scripts/gpu-check)"
                );
                return ExitCode::from(2);
            }
        }
    };
    let mut report = String::from("# Vigil GPU check\n\n");
    let identity = compute.device.identity();
    report += &format!(
        "- adapter: {} ({}, {})\n",
        compute.adapter,
        compute.backend,
        if compute.physical {
            "physical"
        } else {
            "not a physical card"
        }
    );
    if let Some(identity) = &identity {
        report += &format!("- compiles for: {}\n", identity.fingerprint);
        if let Some(physical) = &identity.physical {
            report += &format!("- card: {physical:?}\n");
        }
    }
    let peak = peak_gflops(&compute);
    if let Some(p) = peak {
        report += &format!("- peak f32 (cubecl probe): {p:.1} GFLOP/s\n");
    }
    let vision = match Vision::load(&assets, compute.clone()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("vigil-gpu-check: the models did not load: {e}");
            return ExitCode::from(2);
        }
    };
    report += &format!(
        "- models loaded in {:.2} s after start\n",
        started.elapsed().as_secs_f64()
    );
    // The first analysed frame pays for compiling every kernel it needs.
    let first = Instant::now();
    pipeline(&vision, &frames, &[1], Duration::ZERO, |_| {});
    report += &format!(
        "- first analysed frame (persons, faces, descriptors) {:.2} s after the models loaded; {:.2} s from start\n",
        first.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    print!("{report}");

    let mut failed = 0;
    if args.golden {
        let mut golden = String::from("\n## Golden checks\n\n| check | result |\n|---|---|\n");
        for (name, outcome) in vigil_models::golden::run_all(&compute) {
            let result = match outcome {
                Ok(()) => "pass".to_string(),
                Err(e) => {
                    failed += 1;
                    format!("**fail**: {}", e.replace('\n', " ").replace('|', "/"))
                }
            };
            golden += &format!("| {name} | {result} |\n");
        }
        print!("{golden}");
        report += &golden;
    }

    let budget = Duration::from_secs_f64(args.seconds.max(0.0));
    let mut table = format!("\n## Throughput\n\n{TABLE_HEADER}\n");
    println!("{table}");
    let mut add = |row: Row| {
        let line = row.markdown(peak);
        println!("{line}");
        table += &line;
        table.push('\n');
    };
    networks(&vision, &args.batches, budget, &mut add);
    pipeline(&vision, &frames, &args.batches, budget, &mut add);
    report += &table;
    report += &format!(
        "\n`vigil-gpu-check --backend {} --batches {} --seconds {}`, {:.0} s in all.\n",
        args.backend,
        args.batches
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(","),
        args.seconds,
        started.elapsed().as_secs_f64()
    );
    if let Some(out) = &args.out
        && let Err(e) = std::fs::write(out, &report)
    {
        eprintln!("vigil-gpu-check: cannot write {}: {e}", out.display());
        return ExitCode::from(2);
    }
    if failed > 0 {
        eprintln!("vigil-gpu-check: {failed} golden check(s) failed");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
