//! The face pipeline: detect → 68 landmarks → descriptor crop → 128-d descriptor, batched over
//! images and faces, as face-api runs it (`models/ARCHITECTURE.md` §6).

use std::path::Path;

use crate::image::Image;
use crate::landmarks::LandmarkNet;
use crate::mosaic::{Mosaic, Region, cells_per_row};
use crate::recognition::FaceEmbedder;
use crate::ssd::{FaceBox, FaceDetector};
use crate::{Compute, ModelError, tfjs};

/// Manifest of the face detector, relative to the assets folder.
pub const DETECTOR: &str = "face-api/ssd_mobilenetv1_model-weights_manifest.json";
/// Manifest of the landmark net.
pub const LANDMARKS: &str = "face-api/face_landmark_68_model-weights_manifest.json";
/// Manifest of the descriptor net.
pub const EMBEDDER: &str = "face-api/face_recognition_model-weights_manifest.json";

/// Default minimum detection score.
pub const MIN_SCORE: f32 = 0.5;
/// Default most faces per image.
pub const MAX_FACES: usize = 100;
/// Two descriptors closer than this (Euclidean) are the same person, per dlib and face-api.
pub const MATCH_THRESHOLD: f32 = 0.6;

/// A face found in an image.
#[derive(Debug, Clone, PartialEq)]
pub struct Face {
    /// The detector's box, in image pixels.
    pub detection: FaceBox,
    /// 68 points (iBUG order) in image pixels.
    pub landmarks: Vec<[f32; 2]>,
}

/// The three face networks on one device.
#[derive(Debug)]
pub struct FaceModels {
    detector: FaceDetector,
    landmarks: LandmarkNet,
    embedder: FaceEmbedder,
    /// Where they run.
    pub compute: Compute,
}

/// `(x, y, w, h)` of a box clipped to a `width × height` image, each floored (face-api's
/// `clipAtImageBorders` followed by `floor`). `None` when nothing is left.
fn clip(x: f32, y: f32, w: f32, h: f32, width: usize, height: usize) -> Option<[usize; 4]> {
    let x0 = x.max(0.0);
    let y0 = y.max(0.0);
    let w0 = (x + w - x0).min(width as f32 - x0);
    let h0 = (y + h - y0).min(height as f32 - y0);
    let r = [x0.floor(), y0.floor(), w0.floor(), h0.floor()];
    (r[2] >= 1.0 && r[3] >= 1.0).then(|| r.map(|v| v as usize))
}

/// Boxes of one image strongest first, without the weaker of two that overlap by IoU > 0.5
/// (the same face seen through two overlapping regions).
fn merge_overlapping(mut boxes: Vec<FaceBox>) -> Vec<FaceBox> {
    boxes.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<FaceBox> = Vec::new();
    for b in boxes {
        if kept
            .iter()
            .all(|k| crate::ssd::iou(&k.corners(), &b.corners()) <= 0.5)
        {
            kept.push(b);
        }
    }
    kept
}

/// How squarely a face looks at the camera, from its landmarks: the nose tip's horizontal
/// distances to the two outer eye corners, the shorter over the longer (1 frontal, towards 0
/// in profile). 1 when the landmarks are not the 68 points.
pub fn frontalness(landmarks: &[[f32; 2]]) -> f32 {
    if landmarks.len() != 68 {
        return 1.0;
    }
    let nose = landmarks[30][0];
    let left = (nose - landmarks[36][0]).abs();
    let right = (landmarks[45][0] - nose).abs();
    let longer = left.max(right);
    if longer <= f32::EPSILON {
        return 0.0;
    }
    (left.min(right) / longer).clamp(0.0, 1.0)
}

impl FaceModels {
    /// Loads the three networks from `assets` (checksums verified) onto `compute`'s device.
    pub fn load(assets: &Path, compute: Compute) -> Result<Self, ModelError> {
        let device = &compute.device;
        let detector = FaceDetector::load(tfjs::load(assets, DETECTOR)?, device)?;
        let landmarks = LandmarkNet::load(tfjs::load(assets, LANDMARKS)?, device)?;
        let embedder = FaceEmbedder::load(tfjs::load(assets, EMBEDDER)?, device)?;
        Ok(Self {
            detector,
            landmarks,
            embedder,
            compute,
        })
    }

    /// The detector network.
    pub fn detector(&self) -> &FaceDetector {
        &self.detector
    }

    /// The landmark network.
    pub fn landmark_net(&self) -> &LandmarkNet {
        &self.landmarks
    }

    /// The descriptor network.
    pub fn embedder(&self) -> &FaceEmbedder {
        &self.embedder
    }

    /// Faces in each image (one batch through the detector, one through the landmark net).
    pub fn detect_faces(&self, images: &[Image], min_score: f32) -> Vec<Vec<Face>> {
        if images.is_empty() {
            return Vec::new();
        }
        let device = &self.compute.device;
        let x = crate::preprocess::preprocess_each(
            images,
            |i| FaceDetector::resize(i.width, i.height),
            device,
        );
        let raw = self.detector.raw_tensor(x);
        let boxes: Vec<Vec<FaceBox>> = raw
            .iter()
            .zip(images)
            .map(|(raw, img)| {
                self.detector
                    .decode(raw, img.width, img.height, min_score, MAX_FACES)
            })
            .collect();
        self.with_landmarks(images, boxes)
    }

    /// Faces inside `regions` of `images` (in image pixels; a person's head and shoulders, say):
    /// every region of every image on [`Mosaic`] canvases of 512², the detector once per
    /// canvas, the boxes mapped back to their images, merged where two regions of one image
    /// overlap (greedy NMS at IoU 0.5), then the landmark net once for all. One image's faces
    /// per entry, strongest first.
    pub fn detect_faces_in(
        &self,
        images: &[Image],
        regions: &[Region],
        min_score: f32,
    ) -> Vec<Vec<Face>> {
        let mut boxes: Vec<Vec<FaceBox>> = images.iter().map(|_| Vec::new()).collect();
        let mosaic = Mosaic::grid(
            images,
            regions,
            crate::ssd::INPUT,
            cells_per_row(regions.len()),
        );
        if !mosaic.canvases.is_empty() {
            let device = &self.compute.device;
            let side = crate::ssd::INPUT;
            let x = crate::preprocess::preprocess(
                &mosaic.canvases,
                &FaceDetector::resize(side, side),
                device,
            );
            for (canvas, raw) in self.detector.raw_tensor(x).iter().enumerate() {
                for b in self.detector.decode(raw, side, side, min_score, MAX_FACES) {
                    let on_canvas = [b.x, b.y, b.x + b.width, b.y + b.height];
                    if let Some((p, [x1, y1, x2, y2])) = mosaic.to_source(canvas, on_canvas)
                        && x2 > x1
                        && y2 > y1
                    {
                        boxes[p.image].push(FaceBox {
                            x: x1,
                            y: y1,
                            width: x2 - x1,
                            height: y2 - y1,
                            ..b
                        });
                    }
                }
            }
        }
        let boxes = boxes.into_iter().map(merge_overlapping).collect();
        self.with_landmarks(images, boxes)
    }

    /// The 68 landmarks of every box of every image, in one batch through the landmark net.
    fn with_landmarks(&self, images: &[Image], boxes: Vec<Vec<FaceBox>>) -> Vec<Vec<Face>> {
        let device = &self.compute.device;
        // Every face of every image through the landmark net at once.
        let mut crops = Vec::new();
        let mut owners = Vec::new();
        for (i, (image, faces)) in images.iter().zip(&boxes).enumerate() {
            for (j, face) in faces.iter().enumerate() {
                if let Some([x, y, w, h]) = clip(
                    face.x,
                    face.y,
                    face.width,
                    face.height,
                    image.width,
                    image.height,
                ) {
                    crops.push(LandmarkNet::prepare(&image.crop(x, y, w, h)));
                    owners.push((i, j, w, h));
                }
            }
        }
        let mut out: Vec<Vec<Face>> = images.iter().map(|_| Vec::new()).collect();
        if crops.is_empty() {
            return out;
        }
        let raw = self.landmarks.raw(&crops, device);
        for ((i, j, w, h), raw) in owners.into_iter().zip(raw) {
            let detection = boxes[i][j].clone();
            let landmarks = LandmarkNet::to_crop_pixels(&raw, w, h)
                .into_iter()
                .map(|[px, py]| [px + detection.x, py + detection.y])
                .collect();
            out[i].push(Face {
                detection,
                landmarks,
            });
        }
        out
    }

    /// The descriptor of each face (one batch through the descriptor net).
    pub fn embed_faces(&self, image: &Image, faces: &[Face]) -> Vec<Vec<f32>> {
        let chips: Vec<Image> = faces
            .iter()
            .map(|face| {
                let [x, y, w, h] = descriptor_crop(face, image.width, image.height);
                FaceEmbedder::prepare(&image.crop(x, y, w, h))
            })
            .collect();
        if chips.is_empty() {
            return Vec::new();
        }
        self.embedder.raw(&chips, &self.compute.device)
    }

    /// The descriptor of each face from a chip turned so the eyes lie level, cut on the
    /// device by `shaders/align.wgsl` (its CPU twin on the CPU backend). For upright faces it
    /// is within a few hundredths of [`FaceModels::embed_faces`]; for tilted heads it keeps
    /// the chip upright, as dlib's own alignment does.
    pub fn embed_faces_aligned(&self, image: &Image, faces: &[Face]) -> Vec<Vec<f32>> {
        if faces.is_empty() {
            return Vec::new();
        }
        let align = crate::preprocess::Align {
            in_w: image.width,
            in_h: image.height,
            side: crate::recognition::INPUT,
            mul: [1.0 / 255.0; 3],
            add: crate::landmarks::MEAN_RGB.map(|m| -m / 255.0),
            faces: faces.iter().map(chip_geometry).collect(),
        };
        let chips = crate::preprocess::align_faces(image, &align, &self.compute.device);
        crate::nn::rows(self.embedder.forward(chips))
    }
}

/// face-api's descriptor square for a face: from the eye and mouth centres, its side and its
/// floored top-left corner (dlib's alignment rectangle, not rotated), and the eye-line angle.
fn dlib_square(face: &Face) -> (f32, f32, f32, f32) {
    let mean = |range: std::ops::RangeInclusive<usize>| {
        let n = range.clone().count() as f32;
        let (sx, sy) = range.fold((0.0, 0.0), |(sx, sy), i| {
            (sx + face.landmarks[i][0], sy + face.landmarks[i][1])
        });
        [sx / n, sy / n]
    };
    let (le, re, mo) = (mean(36..=41), mean(42..=47), mean(48..=67));
    let dist = |a: [f32; 2], b: [f32; 2]| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
    let size = ((dist(mo, le) + dist(mo, re)) / 2.0 / 0.45).floor();
    let cx = (le[0] + re[0] + mo[0]) / 3.0;
    let cy = (le[1] + re[1] + mo[1]) / 3.0;
    let x = (cx - 0.5 * size).max(0.0).floor();
    let y = (cy - 0.43 * size).max(0.0).floor();
    (x, y, size, (re[1] - le[1]).atan2(re[0] - le[0]))
}

/// The geometry of a face's aligned chip: centre, size and eye-line angle (`shaders/align.wgsl`).
/// The chip spans the square face-api would crop, turned about its centre so the eyes lie level.
pub fn chip_geometry(face: &Face) -> [f32; 5] {
    let (x, y, size, angle) = dlib_square(face);
    [
        x + 0.5 * size,
        y + 0.43 * size,
        size,
        angle.cos(),
        angle.sin(),
    ]
}

/// The square face-api crops for a descriptor, clipped to the image.
pub fn descriptor_crop(face: &Face, width: usize, height: usize) -> [usize; 4] {
    let (x, y, size, _) = dlib_square(face);
    clip(x, y, size, size, width, height).unwrap_or([0, 0, width.min(1), height.min(1)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontalness_is_one_facing_the_camera_and_falls_in_profile() {
        let face = |nose: f32| {
            let mut points = vec![[0.0, 0.0]; 68];
            points[36] = [10.0, 0.0];
            points[45] = [50.0, 0.0];
            points[30] = [nose, 10.0];
            points
        };
        assert_eq!(frontalness(&face(30.0)), 1.0);
        assert_eq!(frontalness(&face(40.0)), 10.0 / 30.0);
        assert_eq!(frontalness(&face(20.0)), 10.0 / 30.0);
        assert_eq!(frontalness(&face(10.0)), 0.0);
        assert_eq!(frontalness(&[]), 1.0, "no landmarks: no penalty");
    }

    #[test]
    fn clipping_floors_and_keeps_inside() {
        assert_eq!(
            clip(181.1, 72.9, 83.3, 101.7, 512, 512),
            Some([181, 72, 83, 101])
        );
        assert_eq!(
            clip(-10.0, 500.0, 30.0, 30.0, 512, 512),
            Some([0, 500, 20, 12])
        );
        assert_eq!(clip(600.0, 0.0, 10.0, 10.0, 512, 512), None);
    }
}
