//! dlib's ResNet face descriptor as face-api ships it (`face_recognition_model`): 150×150 input,
//! a 7×7 stride-2 stem, residual stages of 32, 64, 128 and 256 channels, global mean, and a
//! linear map to 128 numbers; faces of one person lie within Euclidean distance 0.6
//! (`models/ARCHITECTURE.md` §5).

use burn::module::{Module, Param};
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};

use crate::ModelError;
use crate::cpu::{self, Act, Nhwc};
use crate::image::Image;
use crate::landmarks::MEAN_RGB;
use crate::nn::{Conv, Padding, mean_scaled_batch, relu, rows, to_nhwc};
use crate::tfjs::Weights;

/// Side of the square network input.
pub const INPUT: usize = 150;
/// Length of a face descriptor.
pub const DIMENSIONS: usize = 128;

/// A residual unit; `down` halves the resolution (stride-2 first conv, pooled shortcut padded
/// with zero channels).
#[derive(Module, Debug)]
struct Residual {
    conv1: Conv,
    conv2: Conv,
    down: bool,
}

impl Residual {
    /// [`Residual::forward`] on the CPU backend, NHWC.
    fn forward_cpu(&self, x: Nhwc) -> Nhwc {
        let out = self.conv1.forward_nhwc(&x, Act::Relu);
        let out = self.conv2.forward_nhwc(&out, Act::Linear);
        if self.down {
            cpu::add_relu(&out, &cpu::pool(&x, 2, 2, false))
        } else {
            cpu::add_relu(&out, &x)
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = self.conv2.forward(relu(self.conv1.forward(x.clone())));
        if !self.down {
            return relu(out + x);
        }
        let shortcut = avg_pool2d(x, AvgPoolOptions::new([2, 2]).with_stride([2, 2]));
        let [n, c_out, h_out, w_out] = out.dims();
        let [_, c_in, h, w] = shortcut.dims();
        // The valid stride-2 conv can come out one row/column short of the pool.
        let out = if (h_out, w_out) == (h, w) {
            out
        } else {
            out.pad([(0, 0), (0, 0), (0, h - h_out), (0, w - w_out)], 0.0)
        };
        let shortcut = if c_in == c_out {
            shortcut
        } else {
            let zeros = Tensor::<4>::zeros([n, c_out - c_in, h, w], &shortcut.device());
            Tensor::cat(vec![shortcut, zeros], 1)
        };
        relu(out + shortcut)
    }
}

/// The descriptor network.
#[derive(Module, Debug)]
pub struct FaceEmbedder {
    stem: Conv,
    units: Vec<Residual>,
    /// `[256, 128]`, no bias.
    fc: Param<Tensor<2>>,
}

/// A conv layer with its scale layer folded in: `W * s`, `b * s + t`.
fn conv_layer(
    w: &mut Weights,
    prefix: &str,
    [k, cin, cout]: [usize; 3],
    stride: usize,
    padding: Padding,
    device: &Device,
) -> Result<Conv, ModelError> {
    let kernel = w.take(&format!("{prefix}/conv/filters"), &[k, k, cin, cout])?;
    let bias = w.take(&format!("{prefix}/conv/bias"), &[cout])?.data;
    let scale = w.take(&format!("{prefix}/scale/weights"), &[cout])?.data;
    let shift = w.take(&format!("{prefix}/scale/biases"), &[cout])?.data;
    let bias = bias
        .iter()
        .zip(&scale)
        .zip(&shift)
        .map(|((b, s), t)| b * s + t)
        .collect();
    Ok(Conv::dense(
        &kernel,
        Some(&scale),
        bias,
        stride,
        padding,
        device,
    ))
}

impl FaceEmbedder {
    /// Builds the network from face-api's weights.
    pub fn load(mut w: Weights, device: &Device) -> Result<Self, ModelError> {
        let stem = conv_layer(&mut w, "conv32_down", [7, 3, 32], 2, Padding::Valid, device)?;
        let plan: [(&str, usize, usize, bool); 14] = [
            ("conv32_1", 32, 32, false),
            ("conv32_2", 32, 32, false),
            ("conv32_3", 32, 32, false),
            ("conv64_down", 32, 64, true),
            ("conv64_1", 64, 64, false),
            ("conv64_2", 64, 64, false),
            ("conv64_3", 64, 64, false),
            ("conv128_down", 64, 128, true),
            ("conv128_1", 128, 128, false),
            ("conv128_2", 128, 128, false),
            ("conv256_down", 128, 256, true),
            ("conv256_1", 256, 256, false),
            ("conv256_2", 256, 256, false),
            ("conv256_down_out", 256, 256, true),
        ];
        let mut units = Vec::new();
        for (name, cin, cout, down) in plan {
            let (stride, padding) = if down {
                (2, Padding::Valid)
            } else {
                (1, Padding::Same)
            };
            let conv1 = conv_layer(
                &mut w,
                &format!("{name}/conv1"),
                [3, cin, cout],
                stride,
                padding,
                device,
            )?;
            let conv2 = conv_layer(
                &mut w,
                &format!("{name}/conv2"),
                [3, cout, cout],
                1,
                Padding::Same,
                device,
            )?;
            units.push(Residual { conv1, conv2, down });
        }
        let fc = w.take("fc", &[256, DIMENSIONS])?;
        Ok(Self {
            stem,
            units,
            fc: Param::from_tensor(Tensor::from_data(
                TensorData::new(fc.data, [256, DIMENSIONS]),
                device,
            )),
        })
    }

    /// The network on a normalised NCHW batch: `[N, 128]` descriptors.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        if self.stem.on_cpu() {
            return self.forward_cpu(x);
        }
        let x = relu(self.stem.forward(x));
        let mut x = max_pool2d(x, MaxPoolOptions::new([3, 3]).with_stride([2, 2]));
        for unit in &self.units {
            x = unit.forward(x);
        }
        let [n, c, h, w] = x.dims();
        let mean = x.reshape([n, c, h * w]).mean_dim(2).reshape([n, c]);
        mean.matmul(self.fc.val())
    }

    /// [`FaceEmbedder::forward`] on the CPU backend: NHWC up to the mean over the last map.
    fn forward_cpu(&self, x: Tensor<4>) -> Tensor<2> {
        let device = x.device();
        let x = self.stem.forward_nhwc(&to_nhwc(x), Act::Relu);
        let mut x = cpu::pool(&x, 3, 2, true);
        for unit in &self.units {
            x = unit.forward_cpu(x);
        }
        let [n, h, w, c] = x.dims;
        let mut mean = vec![0.0f32; n * c];
        for (image, sums) in x.data.chunks_exact(h * w * c).zip(mean.chunks_exact_mut(c)) {
            for px in image.chunks_exact(c) {
                sums.iter_mut().zip(px).for_each(|(s, v)| *s += v);
            }
            sums.iter_mut().for_each(|s| *s /= (h * w) as f32);
        }
        Tensor::<2>::from_data(TensorData::new(mean, [n, c]), &device).matmul(self.fc.val())
    }

    /// Multiply-accumulates of one forward pass on one image.
    pub fn macs(&self) -> u64 {
        let (mut total, h, w) = self.stem.macs(INPUT, INPUT);
        // 3×3 stride-2 valid max pool.
        let (mut h, mut w) = ((h - 3) / 2 + 1, (w - 3) / 2 + 1);
        for unit in &self.units {
            let (m1, oh, ow) = unit.conv1.macs(h, w);
            let (m2, _, _) = unit.conv2.macs(oh, ow);
            total += m1 + m2;
            if unit.down {
                (h, w) = (h / 2, w / 2);
            }
        }
        total + (256 * DIMENSIONS) as u64
    }

    /// Descriptors of 150×150 face chips (0–255).
    pub fn raw(&self, chips: &[Image], device: &Device) -> Vec<Vec<f32>> {
        rows(self.forward(mean_scaled_batch(chips, MEAN_RGB, device)))
    }

    /// Pads a face crop to a centred square and resizes it to the network input.
    pub fn prepare(crop: &Image) -> Image {
        crop.pad_to_square(true).0.resize_bilinear(INPUT, INPUT)
    }
}

/// Euclidean distance between two descriptors.
pub fn distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}
