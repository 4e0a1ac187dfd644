//! The SSD MobileNetV1 face detector (face-api's `ssd_mobilenetv1_model`, trained on WIDER FACE):
//! 512×512 input, six box predictors over 5118 stored anchors, sigmoid face scores, greedy NMS.
//! Layer by layer as `models/ARCHITECTURE.md` §3 describes it.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

use crate::cpu::{Act, Nhwc};
use crate::image::{Image, nchw_batch};
use crate::nn::{Conv, Padding, relu6, to_nhwc};
use crate::tfjs::Weights;
use crate::{BoundingBox, ModelError};

/// Side of the square network input.
pub const INPUT: usize = 512;
/// Anchors per image.
pub const ANCHORS: usize = 5118;
/// Batch norm epsilon of the depthwise layers.
const BN_EPSILON: f32 = 0.001;
/// Box-encoding scale factors (y, x, h, w).
const SCALES: [f32; 4] = [10.0, 10.0, 5.0, 5.0];

/// Output channels of backbone layers 1–13 and the depthwise strides.
const BACKBONE: [(usize, usize); 13] = [
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
];

/// One depthwise-separable backbone step: depthwise 3×3 + folded batch norm + relu6, then a
/// pointwise 1×1 with its folded offset + relu6.
#[derive(Module, Debug)]
struct Separable {
    depthwise: Conv,
    pointwise: Conv,
}

/// One box predictor: box encodings and class logits from a feature map.
#[derive(Module, Debug)]
struct Head {
    boxes: Conv,
    classes: Conv,
}

/// The detector network.
#[derive(Module, Debug)]
pub struct FaceDetector {
    conv0: Conv,
    backbone: Vec<Separable>,
    extra: Vec<Conv>,
    heads: Vec<Head>,
    /// `[ymin, xmin, ymax, xmax]` per anchor, normalised to the 512 square (CPU copy).
    #[module(skip)]
    anchors: Vec<[f32; 4]>,
}

/// Raw network outputs for one image: per anchor, the box encoding and three class logits.
#[derive(Debug, Clone)]
pub struct RawDetections {
    /// `[ty, tx, th, tw]` per anchor.
    pub encodings: Vec<[f32; 4]>,
    /// `[background, face, unused]` logits per anchor.
    pub logits: Vec<[f32; 3]>,
}

/// A face found by the detector, in the pixels of the image it was given.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceBox {
    /// Sigmoid face score.
    pub score: f32,
    /// Left, top, width, height in pixels (fractional).
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width.
    pub width: f32,
    /// Height.
    pub height: f32,
    /// The anchor that produced it.
    pub anchor: usize,
}

impl FaceDetector {
    /// Builds the network from face-api's weights.
    pub fn load(mut w: Weights, device: &Device) -> Result<Self, ModelError> {
        let bn_offset = |w: &mut Weights, prefix: &str, c: usize| {
            w.take(&format!("{prefix}/convolution_bn_offset"), &[c])
                .map(|t| t.data)
        };
        let k = w.take("MobilenetV1/Conv2d_0_pointwise/weights", &[3, 3, 3, 32])?;
        let b = bn_offset(&mut w, "MobilenetV1/Conv2d_0_pointwise", 32)?;
        let conv0 = Conv::dense(&k, None, b, 2, Padding::Same, device);
        let mut backbone = Vec::new();
        let mut cin = 32;
        for (i, &(cout, stride)) in BACKBONE.iter().enumerate() {
            let i = i + 1;
            let dw = format!("MobilenetV1/Conv2d_{i}_depthwise");
            let kernel = w.take(&format!("{dw}/depthwise_weights"), &[3, 3, cin, 1])?;
            let mut bn = |name: &str| w.take(&format!("{dw}/BatchNorm/{name}"), &[cin]);
            let gamma = bn("gamma")?.data;
            let beta = bn("beta")?.data;
            let mean = bn("moving_mean")?.data;
            let var = bn("moving_variance")?.data;
            let mul: Vec<f32> = gamma
                .iter()
                .zip(&var)
                .map(|(g, v)| g / (v + BN_EPSILON).sqrt())
                .collect();
            let add: Vec<f32> = beta
                .iter()
                .zip(&mean)
                .zip(&mul)
                .map(|((b, m), k)| b - m * k)
                .collect();
            let depthwise =
                Conv::depthwise(&kernel, Some(&mul), add, stride, Padding::Same, device);
            let pw = format!("MobilenetV1/Conv2d_{i}_pointwise");
            let kernel = w.take(&format!("{pw}/weights"), &[1, 1, cin, cout])?;
            let b = bn_offset(&mut w, &pw, cout)?;
            let pointwise = Conv::dense(&kernel, None, b, 1, Padding::Same, device);
            backbone.push(Separable {
                depthwise,
                pointwise,
            });
            cin = cout;
        }
        let extra_shapes = [
            (1, 1024, 256, 1),
            (3, 256, 512, 2),
            (1, 512, 128, 1),
            (3, 128, 256, 2),
            (1, 256, 128, 1),
            (3, 128, 256, 2),
            (1, 256, 64, 1),
            (3, 64, 128, 2),
        ];
        let mut extra = Vec::new();
        for (i, &(k, cin, cout, stride)) in extra_shapes.iter().enumerate() {
            let prefix = format!("Prediction/Conv2d_{i}_pointwise");
            let kernel = w.take(&format!("{prefix}/weights"), &[k, k, cin, cout])?;
            let b = bn_offset(&mut w, &prefix, cout)?;
            extra.push(Conv::dense(&kernel, None, b, stride, Padding::Same, device));
        }
        let head_shapes = [(512, 3), (1024, 6), (512, 6), (256, 6), (256, 6), (128, 6)];
        let mut heads = Vec::new();
        for (i, &(cin, per_cell)) in head_shapes.iter().enumerate() {
            let mut conv = |kind: &str, outputs: usize| -> Result<Conv, ModelError> {
                let prefix = format!("Prediction/BoxPredictor_{i}/{kind}");
                let kernel = w.take(&format!("{prefix}/weights"), &[1, 1, cin, outputs])?;
                let bias = w.take(&format!("{prefix}/biases"), &[outputs])?.data;
                Ok(Conv::dense(&kernel, None, bias, 1, Padding::Same, device))
            };
            heads.push(Head {
                boxes: conv("BoxEncodingPredictor", per_cell * 4)?,
                classes: conv("ClassPredictor", per_cell * 3)?,
            });
        }
        let anchors = w
            .take("Output/extra_dim", &[1, ANCHORS, 4])?
            .data
            .chunks_exact(4)
            .map(|a| [a[0], a[1], a[2], a[3]])
            .collect();
        Ok(Self {
            conv0,
            backbone,
            extra,
            heads,
            anchors,
        })
    }

    /// Runs the network on a batch of 512×512 images (values 0–255) and returns each
    /// image's raw anchor outputs.
    pub fn raw(&self, images: &[Image], device: &Device) -> Vec<RawDetections> {
        let (data, shape) = nchw_batch(images, |_, v| v / 127.5 - 1.0);
        self.raw_tensor(Tensor::<4>::from_data(TensorData::new(data, shape), device))
    }

    /// Raw anchor outputs for a normalised NCHW batch (see [`FaceDetector::resize`]).
    pub fn raw_tensor(&self, x: Tensor<4>) -> Vec<RawDetections> {
        let n = x.dims()[0];
        let (encodings, logits) = self.forward(x);
        let enc = encodings
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32 output");
        let cls = logits
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32 output");
        (0..n)
            .map(|i| RawDetections {
                encodings: enc[i * ANCHORS * 4..(i + 1) * ANCHORS * 4]
                    .chunks_exact(4)
                    .map(|v| [v[0], v[1], v[2], v[3]])
                    .collect(),
                logits: cls[i * ANCHORS * 3..(i + 1) * ANCHORS * 3]
                    .chunks_exact(3)
                    .map(|v| [v[0], v[1], v[2]])
                    .collect(),
            })
            .collect()
    }

    /// The network on a normalised NCHW batch: box encodings `[N, 5118, 4]` and class logits
    /// `[N, 5118, 3]`, anchors in head, row, column, anchor order.
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<3>, Tensor<3>) {
        if self.conv0.on_cpu() {
            return self.forward_cpu(x);
        }
        let mut x = relu6(self.conv0.forward(x));
        let mut maps = Vec::new();
        for (i, layer) in self.backbone.iter().enumerate() {
            x = relu6(layer.depthwise.forward(x));
            x = relu6(layer.pointwise.forward(x));
            if i + 1 == 11 || i + 1 == 13 {
                maps.push(x.clone());
            }
        }
        for (i, conv) in self.extra.iter().enumerate() {
            x = relu6(conv.forward(x));
            if i % 2 == 1 {
                maps.push(x.clone());
            }
        }
        let mut boxes = Vec::new();
        let mut classes = Vec::new();
        for (map, head) in maps.into_iter().zip(&self.heads) {
            boxes.push(anchor_major(head.boxes.forward(map.clone()), 4));
            classes.push(anchor_major(head.classes.forward(map), 3));
        }
        (Tensor::cat(boxes, 1), Tensor::cat(classes, 1))
    }

    /// [`FaceDetector::forward`] on the CPU backend: NHWC from the first layer to the heads,
    /// whose outputs are then already in anchor order.
    fn forward_cpu(&self, x: Tensor<4>) -> (Tensor<3>, Tensor<3>) {
        let device = x.device();
        let x = to_nhwc(x);
        let [n, h, w, c] = x.dims;
        let (mut boxes, mut classes) = (Vec::new(), Vec::new());
        // One image at a time: its activations stay in cache, a batch's do not.
        for image in x.data.chunks_exact(h * w * c) {
            let (b, k) = self.image_cpu(Nhwc {
                data: image.to_vec(),
                dims: [1, h, w, c],
            });
            boxes.extend(b);
            classes.extend(k);
        }
        let tensor = |values: Vec<f32>, k: usize| {
            let anchors = values.len() / n / k;
            Tensor::<3>::from_data(TensorData::new(values, [n, anchors, k]), &device)
        };
        (tensor(boxes, 4), tensor(classes, 3))
    }

    /// One NHWC image through the network: its box encodings and class logits, anchor-major.
    /// Each head runs as soon as its feature map is computed, in head order.
    fn image_cpu(&self, x: Nhwc) -> (Vec<f32>, Vec<f32>) {
        let mut boxes = Vec::with_capacity(ANCHORS * 4);
        let mut classes = Vec::with_capacity(ANCHORS * 3);
        let mut heads = self.heads.iter();
        let mut predict = |map: &Nhwc| {
            let head = heads.next().expect("one head per feature map");
            boxes.extend(head.boxes.forward_nhwc(map, Act::Linear).data);
            classes.extend(head.classes.forward_nhwc(map, Act::Linear).data);
        };
        let mut x = self.conv0.forward_nhwc(&x, Act::Relu6);
        for (i, layer) in self.backbone.iter().enumerate() {
            x = layer.depthwise.forward_nhwc(&x, Act::Relu6);
            x = layer.pointwise.forward_nhwc(&x, Act::Relu6);
            if i + 1 == 11 || i + 1 == 13 {
                predict(&x);
            }
        }
        for (i, conv) in self.extra.iter().enumerate() {
            x = conv.forward_nhwc(&x, Act::Relu6);
            if i % 2 == 1 {
                predict(&x);
            }
        }
        (boxes, classes)
    }

    /// Decodes one image's raw outputs into face boxes in the pixels of a `width × height`
    /// image that was padded (bottom/right) to a square and resized to 512: score above
    /// `min_score`, greedy NMS at IoU 0.5, at most `max_results`.
    pub fn decode(
        &self,
        raw: &RawDetections,
        width: usize,
        height: usize,
        min_score: f32,
        max_results: usize,
    ) -> Vec<FaceBox> {
        // face-api's mapping back to the image: the image filled round(dim * 512 / max) input
        // pixels along each axis.
        let side = width.max(height) as f32;
        let input = INPUT as f32;
        let fx = input / (width as f32 * input / side).round() * width as f32;
        let fy = input / (height as f32 * input / side).round() * height as f32;
        let mut candidates: Vec<(usize, f32, [f32; 4])> = raw
            .logits
            .iter()
            .enumerate()
            .filter_map(|(i, logits)| {
                let score = 1.0 / (1.0 + (-logits[1]).exp());
                (score > min_score)
                    .then(|| (i, score, decode_box(&self.anchors[i], &raw.encodings[i])))
            })
            .collect();
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut kept: Vec<(usize, f32, [f32; 4])> = Vec::new();
        for candidate in candidates {
            if kept.len() == max_results {
                break;
            }
            if kept.iter().all(|k| iou(&k.2, &candidate.2) <= 0.5) {
                kept.push(candidate);
            }
        }
        kept.into_iter()
            .map(|(anchor, score, [ymin, xmin, ymax, xmax])| {
                let (top, left) = (ymin.max(0.0), xmin.max(0.0));
                let (bottom, right) = (ymax.min(1.0), xmax.min(1.0));
                FaceBox {
                    score,
                    x: left * fx,
                    y: top * fy,
                    width: (right - left) * fx,
                    height: (bottom - top) * fy,
                    anchor,
                }
            })
            .collect()
    }

    /// Multiply-accumulates of one forward pass on one image.
    pub fn macs(&self) -> u64 {
        let (mut total, mut h, mut w) = self.conv0.macs(INPUT, INPUT);
        let mut maps = Vec::new();
        for (i, layer) in self.backbone.iter().enumerate() {
            for conv in [&layer.depthwise, &layer.pointwise] {
                let (m, oh, ow) = conv.macs(h, w);
                (total, h, w) = (total + m, oh, ow);
            }
            if i + 1 == 11 || i + 1 == 13 {
                maps.push((h, w));
            }
        }
        for (i, conv) in self.extra.iter().enumerate() {
            let (m, oh, ow) = conv.macs(h, w);
            (total, h, w) = (total + m, oh, ow);
            if i % 2 == 1 {
                maps.push((h, w));
            }
        }
        for ((h, w), head) in maps.into_iter().zip(&self.heads) {
            total += head.boxes.macs(h, w).0 + head.classes.macs(h, w).0;
        }
        total
    }

    /// The device-side pre-processing of a `w × h` frame: zeros bottom/right to a square,
    /// bilinear to 512, `v / 127.5 - 1`.
    pub fn resize(w: usize, h: usize) -> crate::preprocess::Resize {
        crate::preprocess::Resize::square(w, h, false, INPUT, [1.0 / 127.5; 3], [-1.0; 3])
    }
}

impl FaceBox {
    /// Its `[ymin, xmin, ymax, xmax]` in pixels, the order [`iou`] takes.
    pub(crate) fn corners(&self) -> [f32; 4] {
        [self.y, self.x, self.y + self.height, self.x + self.width]
    }

    /// The box normalised to its image (0–1).
    pub fn normalised(&self, width: usize, height: usize) -> BoundingBox {
        BoundingBox {
            x: self.x / width as f32,
            y: self.y / height as f32,
            width: self.width / width as f32,
            height: self.height / height as f32,
        }
    }
}

/// `[N, A*k, H, W]` → `[N, H*W*A, k]` (row, column, anchor order, as TF's NHWC reshape).
fn anchor_major(x: Tensor<4>, k: usize) -> Tensor<3> {
    let [n, c, h, w] = x.dims();
    x.permute([0, 2, 3, 1]).reshape([n, h * w * (c / k), k])
}

/// An anchor's box from its encoding: `[ymin, xmin, ymax, xmax]`, normalised.
fn decode_box(anchor: &[f32; 4], t: &[f32; 4]) -> [f32; 4] {
    let ah = anchor[2] - anchor[0];
    let aw = anchor[3] - anchor[1];
    let acy = anchor[0] + ah / 2.0;
    let acx = anchor[1] + aw / 2.0;
    let cy = t[0] / SCALES[0] * ah + acy;
    let cx = t[1] / SCALES[1] * aw + acx;
    let h = (t[2] / SCALES[2]).exp() * ah;
    let w = (t[3] / SCALES[3]).exp() * aw;
    [cy - h / 2.0, cx - w / 2.0, cy + h / 2.0, cx + w / 2.0]
}

/// Intersection over union of two `[ymin, xmin, ymax, xmax]` boxes (0 for empty boxes).
pub(crate) fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let norm = |b: &[f32; 4]| {
        [
            b[0].min(b[2]),
            b[1].min(b[3]),
            b[0].max(b[2]),
            b[1].max(b[3]),
        ]
    };
    let (a, b) = (norm(a), norm(b));
    let area = |b: &[f32; 4]| (b[2] - b[0]) * (b[3] - b[1]);
    if area(&a) <= 0.0 || area(&b) <= 0.0 {
        return 0.0;
    }
    let ih = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iw = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ih * iw;
    inter / (area(&a) + area(&b) - inter)
}

/// Decodes an anchor with its encoding; public for golden tests.
pub fn decode_anchor(anchor: &[f32; 4], encoding: &[f32; 4]) -> [f32; 4] {
    decode_box(anchor, encoding)
}

impl FaceDetector {
    /// The stored anchors.
    pub fn anchors(&self) -> &[[f32; 4]] {
        &self.anchors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_encoding_decodes_to_its_anchor() {
        let anchor = [0.1, 0.2, 0.5, 0.4];
        let b = decode_box(&anchor, &[0.0; 4]);
        for (x, y) in b.iter().zip(anchor) {
            assert!((x - y).abs() < 1e-6);
        }
    }

    #[test]
    fn iou_of_overlapping_boxes() {
        assert_eq!(iou(&[0.0, 0.0, 1.0, 1.0], &[0.0, 0.0, 1.0, 1.0]), 1.0);
        assert!((iou(&[0.0, 0.0, 1.0, 1.0], &[0.0, 0.5, 1.0, 1.5]) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&[0.0, 0.0, 0.0, 1.0], &[0.0, 0.0, 1.0, 1.0]), 0.0);
    }
}
