//! `scripts/gpu-check --bundle` packs vigil-gpu-check with what it reads, and the bundle's run
//! script runs it — here on Mesa's software Vulkan adapter (scripts/setup installs it; no
//! machine of the test command has a GPU), slowly, at batch 1: the report names the adapter,
//! passes every golden check and measures every network and the per-frame pipeline.

use std::path::Path;
use std::process::Command;

#[test]
fn the_gpu_check_bundle_runs_and_reports_on_the_software_adapter() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let packed = Command::new(root.join("scripts/gpu-check"))
        .args(["--bundle", bundle.to_str().unwrap(), "--no-loader"])
        // The test build's binary: packing a release build would build it here.
        .env("VIGIL_GPU_CHECK_BIN", env!("CARGO_BIN_EXE_vigil-gpu-check"))
        // A test build is many times the size of the release build a device gets.
        .env("VIGIL_GPU_CHECK_MAX_MIB", "1000")
        .output()
        .expect("scripts/gpu-check runs");
    assert!(
        packed.status.success(),
        "bundle: {}",
        String::from_utf8_lossy(&packed.stderr)
    );
    for file in ["run", "bin/vigil-gpu-check.gz", "golden/astronaut.json"] {
        assert!(bundle.join(file).exists(), "{file} is in the bundle");
    }
    assert!(
        bundle
            .join("assets/face-api/ssd_mobilenetv1_model.bin")
            .exists()
    );

    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let ran = Command::new("bash")
        .arg(bundle.join("run"))
        .args(["--batches", "1", "--seconds", "0"])
        .env("OUT", &out)
        // Only the bundle's assets: nothing from this machine's caches.
        .env_remove("VIGIL_ASSETS")
        .env("HOME", dir.path())
        .output()
        .expect("the bundle runs");
    let report = std::fs::read_to_string(out.join("gpu-check.md")).unwrap_or_default();
    assert!(
        ran.status.success(),
        "run: {}\n{report}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(report.contains("- adapter: "), "{report}");
    assert!(report.contains("(wgpu, "), "{report}");
    assert!(report.contains("first analysed frame"), "{report}");
    let golden: Vec<&str> = report
        .lines()
        .skip_while(|l| !l.starts_with("## Golden checks"))
        .skip(4)
        .take_while(|l| l.starts_with('|'))
        .collect();
    let checks = vigil_models::golden::CHECKS;
    assert_eq!(golden.len(), checks.len(), "{report}");
    for (line, check) in golden.iter().zip(checks) {
        assert_eq!(*line, format!("| {check} | pass |"), "{report}");
    }
    for model in [
        "face detector (SSD MobileNetV1)",
        "face landmarks (68)",
        "face descriptor (ResNet)",
        "persons (NanoDet, graph)",
        "pose (MoveNet Lightning, graph, per image)",
        "pre-processing 1280×720 → 512²",
        "pipeline: persons → faces → descriptors",
    ] {
        let row = report
            .lines()
            .find(|l| l.starts_with(&format!("| {model} |")))
            .unwrap_or_else(|| panic!("no row for {model}: {report}"));
        let rate: f64 = row.split('|').nth(4).unwrap().trim().parse().unwrap_or(0.0);
        assert!(rate > 0.0, "{row}");
    }
}
