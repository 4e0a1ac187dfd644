//! The Burn models against golden outputs of the original implementation (face-api and the
//! TF.js graphs, `models/reference/golden/`), on the CPU backend and on wgpu (CI has Mesa's
//! software Vulkan adapter; a machine with neither fails here rather than skipping). The checks
//! are also [`run_all`] for `vigil-gpu-check` on a machine with a real GPU.

use std::sync::OnceLock;

use serde_json::Value;

use crate::faces::{Face, FaceModels, MATCH_THRESHOLD, MIN_SCORE, descriptor_crop};
use crate::image::Image;
use crate::recognition::distance;
use crate::{Compute, default_assets_dir, tfjs};

/// The test images the checks read, under the assets folder.
pub const IMAGES: [&str; 4] = [
    "images/astronaut.png",
    "images/vtest-100.png",
    "images/230501201_1.png",
    "images/messi5.png",
];

/// Where the golden files are: `$VIGIL_GOLDEN_DIR`, else `models/reference/golden/` of the
/// source tree this was built from.
pub fn golden_dir() -> std::path::PathBuf {
    std::env::var_os("VIGIL_GOLDEN_DIR").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/golden"),
        std::path::PathBuf::from,
    )
}

/// A committed golden file of `models/reference/golden/`.
fn read_golden(name: &str) -> Value {
    let path = golden_dir().join(name);
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("golden file {}: {e} (set VIGIL_GOLDEN_DIR)", path.display()));
    serde_json::from_slice(&bytes).expect("golden JSON")
}

fn golden() -> &'static Value {
    static GOLDEN: OnceLock<Value> = OnceLock::new();
    GOLDEN.get_or_init(|| read_golden("astronaut.json"))
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

/// The reference's deterministic test pattern.
fn pattern(side: usize) -> Image {
    let mut data = Vec::with_capacity(side * side * 3);
    for y in 0..side {
        for x in 0..side {
            for c in 0..3 {
                data.push(((x * 7 + y * 13 + c * 29) % 256) as f32);
            }
        }
    }
    Image {
        width: side,
        height: side,
        data,
    }
}

/// A checksummed test image from the assets folder.
fn asset_image(name: &str) -> Image {
    let bytes = tfjs::read_verified(&default_assets_dir(), &format!("images/{name}"))
        .unwrap_or_else(|e| panic!("{name} (run scripts/fetch-assets): {e}"));
    Image::decode_png(&bytes).expect("PNG")
}

fn astronaut() -> Image {
    asset_image("astronaut.png")
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tolerance: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / (1.0 + w.abs()))
        .fold(0.0f32, f32::max);
    assert!(
        worst <= tolerance,
        "{what}: worst relative difference {worst:e} > {tolerance:e}\n got  {:?}\n want {:?}",
        &got[..got.len().min(6)],
        &want[..want.len().min(6)]
    );
}

fn raw_networks_match(models: &FaceModels) {
    let raw = &golden()["raw_networks"];
    let device = &models.compute.device;
    let backend = models.compute.backend;

    let ssd = &models.detector().raw(&[pattern(512)], device)[0];
    for entry in raw["ssd_mobilenetv1"]["first_20"]
        .as_array()
        .unwrap()
        .iter()
        .chain(raw["ssd_mobilenetv1"]["top_5"].as_array().unwrap())
    {
        let i = entry["index"].as_u64().unwrap() as usize;
        assert_close(
            &format!("{backend} SSD anchor {i} encoding"),
            &ssd.encodings[i],
            &floats(&entry["box_encoding_ty_tx_th_tw"]),
            2e-3,
        );
        assert_close(
            &format!("{backend} SSD anchor {i} logits"),
            &ssd.logits[i],
            &floats(&entry["class_logits"]),
            2e-3,
        );
        assert_close(
            &format!("{backend} SSD anchor {i}"),
            &models.detector().anchors()[i],
            &floats(&entry["anchor_ymin_xmin_ymax_xmax"]),
            1e-6,
        );
    }

    let landmarks = &models.landmark_net().raw(&[pattern(112)], device)[0];
    assert_close(
        &format!("{backend} landmark net"),
        landmarks,
        &floats(&raw["face_landmark_68"]["output_136"]),
        1e-3,
    );
    let descriptor = &models.embedder().raw(&[pattern(150)], device)[0];
    assert_close(
        &format!("{backend} descriptor net"),
        descriptor,
        &floats(&raw["face_recognition"]["output_128"]),
        1e-3,
    );
}

fn astronaut_matches(models: &FaceModels) {
    let backend = models.compute.backend;
    let want = &golden()["faces"][0];
    let image = astronaut();
    let faces = models.detect_faces(std::slice::from_ref(&image), MIN_SCORE);
    assert_eq!(faces[0].len(), 1, "{backend}: one face in astronaut.png");
    let face = &faces[0][0];
    let b = &want["box"];
    let got = [
        face.detection.x,
        face.detection.y,
        face.detection.width,
        face.detection.height,
    ];
    let expected = ["x", "y", "width", "height"].map(|k| b[k].as_f64().unwrap() as f32);
    for (g, w) in got.iter().zip(expected) {
        assert!(
            (g - w).abs() < 0.25,
            "{backend}: box {got:?} vs {expected:?}"
        );
    }
    assert!((face.detection.score - want["score"].as_f64().unwrap() as f32).abs() < 1e-3);
    let points = want["landmarks"].as_array().unwrap();
    assert_eq!(face.landmarks.len(), 68);
    for (p, w) in face.landmarks.iter().zip(points) {
        let w = floats(w);
        assert!(
            (p[0] - w[0]).abs() < 0.5 && (p[1] - w[1]).abs() < 0.5,
            "{backend}: landmark {p:?} vs {w:?}"
        );
    }
    let crop = descriptor_crop(face, image.width, image.height);
    let c = &want["descriptor_crop"];
    assert_eq!(
        crop,
        ["x", "y", "width", "height"].map(|k| c[k].as_u64().unwrap() as usize),
        "{backend}: descriptor crop"
    );
    let descriptor = &models.embed_faces(&image, &faces[0])[0];
    let golden_descriptor = floats(&want["descriptor"]);
    let d = distance(descriptor, &golden_descriptor);
    assert!(d < 0.01, "{backend}: descriptor {d} from face-api's");
}

/// The same face under a flip, half the size and +30 brightness stays within the match
/// threshold of the original; the reference's own distances are reproduced.
fn identity_is_stable(models: &FaceModels) {
    let backend = models.compute.backend;
    let image = astronaut();
    let half = {
        let (w, h) = (image.width / 2, image.height / 2);
        let mut data = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let sum = image.at(2 * x, 2 * y, c)
                        + image.at(2 * x + 1, 2 * y, c)
                        + image.at(2 * x, 2 * y + 1, c)
                        + image.at(2 * x + 1, 2 * y + 1, c);
                    data.push(((sum + 2.0) / 4.0).floor());
                }
            }
        }
        Image {
            width: w,
            height: h,
            data,
        }
    };
    let bright = Image {
        data: image.data.iter().map(|v| (v + 30.0).min(255.0)).collect(),
        ..image.clone()
    };
    let variants = [image.clone(), image.flip_horizontal(), half, bright];
    let found = models.detect_faces(&variants, MIN_SCORE);
    let descriptors: Vec<Vec<f32>> = variants
        .iter()
        .zip(&found)
        .map(|(img, faces)| {
            assert_eq!(faces.len(), 1, "{backend}: one face per variant");
            models.embed_faces(img, faces).remove(0)
        })
        .collect();
    let want = &golden()["descriptor_distances"];
    let names = [
        "original",
        "flip_horizontal",
        "scale_0_5",
        "brightness_plus_30",
    ];
    for i in 0..4 {
        for j in i + 1..4 {
            let d = distance(&descriptors[i], &descriptors[j]);
            let expected = want[format!("{}~{}", names[i], names[j])].as_f64().unwrap() as f32;
            assert!(
                d < MATCH_THRESHOLD,
                "{backend}: {} vs {}: {d}",
                names[i],
                names[j]
            );
            assert!(
                (d - expected).abs() < 0.01,
                "{backend}: {} vs {}: {d}, face-api {expected}",
                names[i],
                names[j]
            );
        }
    }
}

/// Other people's faces (two photos from `opencv-doc`) lie beyond the match threshold of the
/// astronaut's, as in face-api, and are found where face-api finds them.
fn different_people_are_apart(models: &FaceModels) {
    let backend = models.compute.backend;
    let astronaut_image = astronaut();
    let faces = models.detect_faces(std::slice::from_ref(&astronaut_image), MIN_SCORE);
    let astronaut_descriptor = models.embed_faces(&astronaut_image, &faces[0]).remove(0);
    let others = &golden()["others"]["images"];
    let mut descriptors = Vec::new();
    for name in ["230501201_1", "messi5"] {
        let want = &others[name];
        let image = asset_image(&format!("{name}.png"));
        let found = models.detect_faces(std::slice::from_ref(&image), MIN_SCORE);
        assert_eq!(found[0].len(), 1, "{backend}: one face in {name}");
        let face = &found[0][0];
        let b = &want["faces"][0]["box"];
        let expected = ["x", "y", "width", "height"].map(|k| b[k].as_f64().unwrap() as f32);
        let got = [
            face.detection.x,
            face.detection.y,
            face.detection.width,
            face.detection.height,
        ];
        for (g, w) in got.iter().zip(expected) {
            assert!(
                (g - w).abs() < 0.5,
                "{backend} {name}: box {got:?} vs {expected:?}"
            );
        }
        let descriptor = models.embed_faces(&image, &found[0]).remove(0);
        let golden_descriptor = floats(&want["faces"][0]["descriptor"]);
        let drift = distance(&descriptor, &golden_descriptor);
        assert!(
            drift < 0.02,
            "{backend} {name}: descriptor {drift} from face-api's"
        );
        let d = distance(&descriptor, &astronaut_descriptor);
        assert!(
            d > MATCH_THRESHOLD,
            "{backend}: {name} is {d} from the astronaut"
        );
        descriptors.push(descriptor);
    }
    let d = distance(&descriptors[0], &descriptors[1]);
    assert!(
        d > MATCH_THRESHOLD,
        "{backend}: the two other people are {d} apart"
    );
}

/// Descriptors from eye-levelled chips: close to face-api's for the upright astronaut, the
/// same person within the threshold under a flip, and other people beyond it — also when the
/// image is turned by 20°, where the unrotated crop loses the face's orientation.
fn aligned_descriptors_keep_identity(models: &FaceModels) {
    let backend = models.compute.backend;
    let image = astronaut();
    let faces = models.detect_faces(std::slice::from_ref(&image), MIN_SCORE);
    let aligned = models.embed_faces_aligned(&image, &faces[0]).remove(0);
    let golden_descriptor = floats(&golden()["faces"][0]["descriptor"]);
    let d = distance(&aligned, &golden_descriptor);
    assert!(
        d < 0.15,
        "{backend}: aligned descriptor {d} from face-api's unaligned one"
    );
    let flipped = image.flip_horizontal();
    let found = models.detect_faces(std::slice::from_ref(&flipped), MIN_SCORE);
    let flipped_descriptor = models.embed_faces_aligned(&flipped, &found[0]).remove(0);
    let d = distance(&aligned, &flipped_descriptor);
    assert!(d < MATCH_THRESHOLD, "{backend}: flipped astronaut {d} away");
    // The astronaut turned by 20° about the image centre.
    let (a, w, h) = (20f32.to_radians(), image.width, image.height);
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let mut data = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = (x as f32 - cx, y as f32 - cy);
            let sx = (cx + a.cos() * dx + a.sin() * dy).round();
            let sy = (cy - a.sin() * dx + a.cos() * dy).round();
            for c in 0..3 {
                let inside = sx >= 0.0 && sy >= 0.0 && sx < w as f32 && sy < h as f32;
                data.push(if inside {
                    image.at(sx as usize, sy as usize, c)
                } else {
                    0.0
                });
            }
        }
    }
    let turned = Image {
        width: w,
        height: h,
        data,
    };
    let found = models.detect_faces(std::slice::from_ref(&turned), MIN_SCORE);
    assert_eq!(
        found[0].len(),
        1,
        "{backend}: the turned astronaut's face is found"
    );
    let turned_aligned = models.embed_faces_aligned(&turned, &found[0]).remove(0);
    let turned_plain = models.embed_faces(&turned, &found[0]).remove(0);
    let (d_aligned, d_plain) = (
        distance(&aligned, &turned_aligned),
        distance(&golden_descriptor, &turned_plain),
    );
    eprintln!("{backend}: turned 20°: aligned {d_aligned}, unaligned {d_plain}");
    assert!(
        d_aligned < MATCH_THRESHOLD,
        "{backend}: turned astronaut {d_aligned} away"
    );
    assert!(
        d_aligned < d_plain,
        "{backend}: levelling the eyes should bring the turned face closer ({d_aligned} vs {d_plain})"
    );
    for name in ["230501201_1", "messi5"] {
        let other = asset_image(&format!("{name}.png"));
        let found = models.detect_faces(std::slice::from_ref(&other), MIN_SCORE);
        let descriptor = models.embed_faces_aligned(&other, &found[0]).remove(0);
        let d = distance(&aligned, &descriptor);
        assert!(
            d > MATCH_THRESHOLD,
            "{backend}: {name} only {d} from the astronaut"
        );
    }
}

/// Faces sought only inside regions (on mosaic canvases) are the faces the whole frames show:
/// the astronaut and Messi, each through a region three faces wide, the astronaut twice more
/// through shifted regions (merged into one face), and an empty corner (nothing) — five
/// regions, so a 3×3 grid of 170-pixel cells. Boxes overlap the whole-frame ones by IoU ≥ 0.7
/// and the astronaut's descriptor stays within 0.15.
fn faces_in_regions_match_whole_frames(models: &FaceModels) {
    use crate::mosaic::Region;
    let backend = models.compute.backend;
    let images = [astronaut(), asset_image("messi5.png")];
    let whole = models.detect_faces(&images, MIN_SCORE);
    let around = |image: usize, face: &Face, shift: f32| {
        let d = &face.detection;
        let side = 3.0 * d.width.max(d.height);
        Region {
            image,
            x: d.x + d.width / 2.0 - side / 2.0 + shift,
            y: d.y + d.height / 2.0 - side / 2.0 + shift,
            w: side,
            h: side,
        }
    };
    assert_eq!(whole[0].len(), 1, "{backend}: the astronaut's face");
    assert!(
        whole[0][0].detection.height >= 80.0,
        "{backend}: the astronaut's face is large enough for the descriptor check"
    );
    assert!(!whole[1].is_empty(), "{backend}: Messi's face");
    let messi = &whole[1][0];
    let regions = [
        around(0, &whole[0][0], 0.0),
        around(1, messi, 0.0),
        Region {
            image: 0,
            x: 400.0,
            y: 400.0,
            w: 100.0,
            h: 100.0,
        },
        around(0, &whole[0][0], -12.0),
        around(0, &whole[0][0], 9.0),
    ];
    let found = models.detect_faces_in(&images, &regions, MIN_SCORE);
    let iou = |a: &Face, b: &Face| {
        let (a, b) = (&a.detection, &b.detection);
        let w = ((a.x + a.width).min(b.x + b.width) - a.x.max(b.x)).max(0.0);
        let h = ((a.y + a.height).min(b.y + b.height) - a.y.max(b.y)).max(0.0);
        w * h / (a.width * a.height + b.width * b.height - w * h)
    };
    for (i, want) in [&whole[0][0], messi].into_iter().enumerate() {
        let near: Vec<&Face> = found[i].iter().filter(|f| iou(f, want) > 0.3).collect();
        assert_eq!(
            near.len(),
            1,
            "{backend}: image {i}: one face where the whole frame has it: {:?}",
            found[i].iter().map(|f| &f.detection).collect::<Vec<_>>()
        );
        let overlap = iou(near[0], want);
        assert!(
            overlap >= 0.7,
            "{backend}: image {i}: box {:?} vs whole-frame {:?} (IoU {overlap})",
            near[0].detection,
            want.detection
        );
        // Descriptors are compared where the face is large enough to describe well: Messi's
        // is 31 pixels wide, where a 3-pixel change of the box moves the landmarks, and so the
        // descriptor, as far as another person's.
        if want.detection.height >= 80.0 {
            let d = distance(
                &models.embed_faces_aligned(&images[i], &[near[0].clone()])[0],
                &models.embed_faces_aligned(&images[i], std::slice::from_ref(want))[0],
            );
            assert!(d < 0.15, "{backend}: image {i}: descriptor moved {d}");
        }
    }
    assert_eq!(
        found[0].len(),
        1,
        "{backend}: the three astronaut regions merge"
    );
}

// ---- person detection (NanoDet) and pose (MoveNet), against `golden/persons.json` ----

use crate::persons::{PERSON, PersonDetector};
use crate::pose::PoseEstimator;

fn persons_golden() -> &'static Value {
    static GOLDEN: OnceLock<Value> = OnceLock::new();
    GOLDEN.get_or_init(|| read_golden("persons.json"))
}

fn person_detector(compute: Compute) -> PersonDetector {
    PersonDetector::load(&default_assets_dir(), &compute.device)
        .expect("NanoDet loads (run scripts/fetch-assets)")
}

fn pose_estimator(compute: Compute) -> PoseEstimator {
    PoseEstimator::load(&default_assets_dir(), &compute.device)
        .expect("MoveNet loads (run scripts/fetch-assets)")
}

fn vtest_frame() -> Image {
    asset_image("vtest-100.png")
}

/// Stride of a golden NanoDet output, from its role text.
fn stride_of(output: &Value) -> usize {
    let role = output["role"].as_str().unwrap();
    [8, 16, 32]
        .into_iter()
        .find(|s| role.contains(&format!("stride {s}:")) || role.contains(&format!("stride {s},")))
        .expect("a stride in the role")
}

fn nanodet_heads_match(detector: &PersonDetector, backend: &str) {
    let synthetic = &persons_golden()["nanodet"]["synthetic"];
    let raw = &detector.raw(&[pattern(416)]).expect("runs")[0];
    let level_of = |stride: usize| [8, 16, 32].iter().position(|&s| s == stride).unwrap();
    let mut checked = 0;
    for output in synthetic["outputs"].as_array().unwrap() {
        let level = level_of(stride_of(output));
        let g = 416 / [8, 16, 32][level];
        if let Some(top) = output["top20_person"].as_array() {
            for cell in top {
                let i = cell["index"].as_u64().unwrap() as usize;
                let got = raw.score(level, i / g, i % g, PERSON);
                let want = cell["score"].as_f64().unwrap() as f32;
                assert!(
                    (got - want).abs() < 2e-3,
                    "{backend} NanoDet score at {i}: {got} vs {want}"
                );
                checked += 1;
            }
        }
        if let Some(top) = output["at_top10_person"].as_array() {
            for cell in top {
                let i = cell["index"].as_u64().unwrap() as usize;
                assert_close(
                    &format!("{backend} NanoDet box logits at {i}"),
                    raw.box_logits(level, i / g, i % g),
                    &floats(&cell["values"]),
                    2e-3,
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 3 * 20 + 3 * 10);
}

/// The largest IoU of any of `found` with the corner box `[x1, y1, x2, y2]`.
fn best_iou(found: &[crate::persons::ObjectBox], [x1, y1, x2, y2]: [f32; 4]) -> f32 {
    let iou = |g: &crate::persons::ObjectBox| {
        let w = (g.x2.min(x2) - g.x1.max(x1)).max(0.0);
        let h = (g.y2.min(y2) - g.y1.max(y1)).max(0.0);
        let inter = w * h;
        inter / ((g.x2 - g.x1) * (g.y2 - g.y1) + (x2 - x1) * (y2 - y1) - inter)
    };
    found.iter().map(iou).fold(0.0f32, f32::max)
}

/// The reference's confident persons in the vtest frame are found again when the detector
/// sees only regions around them (a square twice the box's longer side, at least 160 px), the
/// regions of two copies of the frame sharing canvases: every person of each copy, in that
/// copy's pixels, with fewer canvases than regions.
fn persons_in_regions_match_the_reference(detector: &PersonDetector, backend: &str) {
    let golden = &persons_golden()["nanodet"]["vtest"];
    let frame = vtest_frame();
    let expected: Vec<[f32; 4]> = golden["not_human_nms_on_corner_boxes"]["detections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["label"] == "person" && d["origin"]["raw_score"].as_f64().unwrap() >= 0.5)
        .map(|d| {
            let b = floats(&d["box"]);
            [b[0], b[1], b[0] + b[2], b[1] + b[3]]
        })
        .collect();
    let regions: Vec<crate::mosaic::Region> = (0..2)
        .flat_map(|image| {
            expected.iter().map(move |&[x1, y1, x2, y2]| {
                let side = ((x2 - x1).max(y2 - y1) * 2.0).max(160.0);
                crate::mosaic::Region {
                    image,
                    x: (x1 + x2) / 2.0 - side / 2.0,
                    y: (y1 + y2) / 2.0 - side / 2.0,
                    w: side,
                    h: side,
                }
            })
        })
        .collect();
    let (found, canvases) = detector
        .detect_persons_in(&[frame.clone(), frame], &regions, 0.5)
        .expect("runs");
    assert!(
        canvases < regions.len(),
        "{backend}: {canvases} canvases for {} regions",
        regions.len()
    );
    for (copy, boxes) in found.iter().enumerate() {
        for &[x1, y1, x2, y2] in &expected {
            let best = best_iou(boxes, [x1, y1, x2, y2]);
            assert!(
                best >= 0.5,
                "{backend}: copy {copy}: reference person {:?} not found in its region (best IoU {best}) in {boxes:?}",
                [x1, y1, x2, y2]
            );
        }
    }
}

/// NanoDet on frame 100 of OpenCV's pedestrian clip: the five people the reference scores at
/// 0.5 or more are found, each from the same grid cell with the same box as NanoDet's own
/// decoding gives (checked against the reference where it recorded it).
fn vtest_persons_are_found(detector: &PersonDetector, backend: &str) {
    let golden = &persons_golden()["nanodet"]["vtest"];
    let frame = vtest_frame();
    let found = detector
        .detect_persons(std::slice::from_ref(&frame), 0.5)
        .expect("runs");
    let found = &found[0];
    let expected: Vec<&Value> = golden["not_human_nms_on_corner_boxes"]["detections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["label"] == "person" && d["origin"]["raw_score"].as_f64().unwrap() >= 0.5)
        .collect();
    assert_eq!(
        expected.len(),
        5,
        "the reference has five confident persons"
    );
    assert_eq!(found.len(), 5, "{backend}: persons {found:?}");
    // Each confident reference person overlaps one of ours (IoU ≥ 0.5; the reference boxes
    // come from arg-max bins, ours from the full distribution, so cells can differ by one).
    for want in expected {
        let b = floats(&want["box"]);
        let (x1, y1, x2, y2) = (b[0], b[1], b[0] + b[2], b[1] + b[3]);
        let best = best_iou(found, [x1, y1, x2, y2]);
        assert!(
            best >= 0.5,
            "{backend}: reference person {b:?} not found (best IoU {best}) in {found:?}"
        );
        let o = &want["origin"];
        let cell = (
            o["stride"].as_u64().unwrap() as usize,
            o["row"].as_u64().unwrap() as usize,
            o["col"].as_u64().unwrap() as usize,
        );
        if let Some(same) = found.iter().find(|g| g.cell == cell) {
            let score = o["raw_score"].as_f64().unwrap() as f32;
            assert!(
                (same.score - score).abs() < 2e-3,
                "{backend}: {same:?} vs {score}"
            );
        }
    }
    for reference in golden["detections"].as_array().unwrap() {
        let Some(dfl) = reference.get("upstream_dfl_decode") else {
            continue;
        };
        if reference["label"] != "person"
            || reference["origin"]["raw_score"].as_f64().unwrap() < 0.5
        {
            continue;
        }
        let o = &reference["origin"];
        let cell = (
            o["stride"].as_u64().unwrap() as usize,
            o["row"].as_u64().unwrap() as usize,
            o["col"].as_u64().unwrap() as usize,
        );
        let got = found.iter().find(|b| b.cell == cell).expect("found above");
        let want = floats(&dfl["box_x1y1x2y2"]);
        let got = [got.x1, got.y1, got.x2, got.y2];
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() < 1.0,
                "{backend}: box {got:?} vs NanoDet's {want:?}"
            );
        }
    }
}

fn movenet_matches(estimator: &PoseEstimator, backend: &str) {
    let golden = &persons_golden()["movenet"];
    let heads = estimator.heads(&pattern(192)).expect("runs");
    let got: Vec<f32> = estimator
        .decode(&heads)
        .into_iter()
        .flat_map(|(y, x, s)| [y, x, s])
        .collect();
    let want: Vec<f32> = golden["synthetic"]["output_1x1x17x3_y_x_score"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(floats)
        .collect();
    assert_close(&format!("{backend} MoveNet synthetic"), &got, &want, 2e-3);
    for (name, image) in [("astronaut", astronaut()), ("vtest", vtest_frame())] {
        let keypoints = &estimator
            .estimate_pose(std::slice::from_ref(&image))
            .expect("runs")[0];
        let want = golden[name]["keypoints_frame_px"].as_array().unwrap();
        assert_eq!(keypoints.len(), want.len());
        for (k, w) in keypoints.iter().zip(want) {
            let (x, y, s) = (
                w["x"].as_f64().unwrap() as f32,
                w["y"].as_f64().unwrap() as f32,
                w["score"].as_f64().unwrap() as f32,
            );
            assert!(
                (k.x - x).abs() < 1.5 && (k.y - y).abs() < 1.5 && (k.score - s).abs() < 5e-3,
                "{backend} {name} {}: {k:?} vs ({x}, {y}, {s})",
                w["part"]
            );
        }
    }
}

/// The name of every check [`run_all`] reports, in its order.
pub const CHECKS: [&str; 10] = [
    "face networks' raw outputs (SSD, landmarks, descriptor)",
    "astronaut: face, landmarks, descriptor",
    "descriptors stable under flip, scale, brightness",
    "different people beyond the match threshold",
    "aligned descriptors keep identity",
    "faces in regions (mosaic) match whole frames",
    "NanoDet heads",
    "persons in a vtest frame",
    "persons in regions around them (shelves)",
    "MoveNet keypoints",
];

/// Every golden check on `compute`, each with its outcome (the first mismatch's description).
pub fn run_all(compute: &Compute) -> Vec<(&'static str, Result<(), String>)> {
    fn outcome(f: impl FnOnce()) -> Result<(), String> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "failed".into())
        })
    }
    let backend = compute.backend;
    let faces = match FaceModels::load(&default_assets_dir(), compute.clone()) {
        Ok(models) => models,
        Err(e) => return vec![("face models load", Err(e.to_string()))],
    };
    let mut out = vec![
        (CHECKS[0], outcome(|| raw_networks_match(&faces))),
        (CHECKS[1], outcome(|| astronaut_matches(&faces))),
        (CHECKS[2], outcome(|| identity_is_stable(&faces))),
        (CHECKS[3], outcome(|| different_people_are_apart(&faces))),
        (
            CHECKS[4],
            outcome(|| aligned_descriptors_keep_identity(&faces)),
        ),
        (
            CHECKS[5],
            outcome(|| faces_in_regions_match_whole_frames(&faces)),
        ),
    ];
    match std::panic::catch_unwind(|| person_detector(compute.clone())) {
        Ok(detector) => {
            out.push((
                CHECKS[6],
                outcome(|| nanodet_heads_match(&detector, backend)),
            ));
            out.push((
                CHECKS[7],
                outcome(|| vtest_persons_are_found(&detector, backend)),
            ));
            out.push((
                CHECKS[8],
                outcome(|| persons_in_regions_match_the_reference(&detector, backend)),
            ));
        }
        Err(_) => out.push(("NanoDet loads", Err("NanoDet did not load".into()))),
    }
    out.push((
        CHECKS[9],
        outcome(|| movenet_matches(&pose_estimator(compute.clone()), backend)),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu() -> &'static FaceModels {
        static MODELS: OnceLock<FaceModels> = OnceLock::new();
        MODELS.get_or_init(|| {
            FaceModels::load(&default_assets_dir(), Compute::cpu())
                .expect("models load (run scripts/fetch-assets)")
        })
    }

    fn wgpu() -> &'static FaceModels {
        static MODELS: OnceLock<FaceModels> = OnceLock::new();
        MODELS.get_or_init(|| {
            let compute = Compute::wgpu()
                .expect("a wgpu adapter (scripts/setup installs Mesa's software Vulkan driver)");
            FaceModels::load(&default_assets_dir(), compute).expect("models load")
        })
    }

    #[test]
    fn cpu_aligned_descriptors_keep_identity() {
        aligned_descriptors_keep_identity(cpu());
    }

    #[test]
    fn wgpu_aligned_descriptors_keep_identity() {
        aligned_descriptors_keep_identity(wgpu());
    }

    #[test]
    fn cpu_different_people_are_beyond_the_match_threshold() {
        different_people_are_apart(cpu());
    }

    #[test]
    fn wgpu_different_people_are_beyond_the_match_threshold() {
        different_people_are_apart(wgpu());
    }

    #[test]
    fn cpu_raw_networks_match_face_api() {
        raw_networks_match(cpu());
    }

    #[test]
    fn cpu_astronaut_face_landmarks_and_descriptor_match_face_api() {
        astronaut_matches(cpu());
    }

    #[test]
    fn cpu_faces_in_regions_match_whole_frames() {
        faces_in_regions_match_whole_frames(cpu());
    }

    #[test]
    fn cpu_descriptors_are_stable_under_flip_scale_and_brightness() {
        identity_is_stable(cpu());
    }

    #[test]
    fn wgpu_raw_networks_match_face_api() {
        raw_networks_match(wgpu());
    }

    #[test]
    fn wgpu_astronaut_face_landmarks_and_descriptor_match_face_api() {
        astronaut_matches(wgpu());
    }

    #[test]
    fn wgpu_descriptors_are_stable_under_flip_scale_and_brightness() {
        identity_is_stable(wgpu());
    }

    #[test]
    fn wgpu_reports_its_adapter() {
        let compute = &wgpu().compute;
        assert_eq!(compute.backend, "wgpu");
        assert!(!compute.adapter.is_empty());
        eprintln!(
            "wgpu adapter: {} (physical: {})",
            compute.adapter, compute.physical
        );
    }

    #[test]
    fn on_the_cpu_every_graph_convolution_runs_nhwc() {
        let persons = person_detector(Compute::cpu());
        let pose = pose_estimator(Compute::cpu());
        for (name, graph) in [("NanoDet", persons.graph()), ("MoveNet", pose.graph())] {
            let (nhwc, burn) = graph.convolution_paths();
            assert!(nhwc > 10, "{name}: {nhwc} NHWC convolutions");
            assert_eq!(burn, 0, "{name}: convolutions left to Burn");
        }
    }

    #[test]
    fn cpu_nanodet_heads_match_the_graph_in_tfjs() {
        nanodet_heads_match(&person_detector(Compute::cpu()), "cpu");
    }

    #[test]
    fn cpu_persons_are_found_in_a_vtest_frame() {
        vtest_persons_are_found(&person_detector(Compute::cpu()), "cpu");
    }

    #[test]
    fn cpu_persons_are_found_in_regions_around_them() {
        persons_in_regions_match_the_reference(&person_detector(Compute::cpu()), "cpu");
    }

    #[test]
    fn cpu_movenet_keypoints_match() {
        movenet_matches(&pose_estimator(Compute::cpu()), "cpu");
    }

    #[test]
    fn wgpu_nanodet_and_movenet_match() {
        let compute = wgpu().compute.clone();
        let detector = person_detector(compute.clone());
        nanodet_heads_match(&detector, "wgpu");
        vtest_persons_are_found(&detector, "wgpu");
        movenet_matches(&pose_estimator(compute), "wgpu");
    }
}
