//! face-api's 68-point landmark net (`face_landmark_68_model`): four densely connected blocks of
//! separable convolutions, average pooling and a linear layer giving 68 (x, y) points as
//! fractions of the 112×112 input (`models/ARCHITECTURE.md` §4).

use burn::module::{Module, Param};
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::{Device, Tensor, TensorData};

use crate::ModelError;
use crate::cpu::{self, Act, Nhwc};
use crate::image::Image;
use crate::nn::{Conv, Padding, mean_scaled_batch, relu, rows, to_nhwc};
use crate::tfjs::Weights;

/// Side of the square network input.
pub const INPUT: usize = 112;
/// Per-channel RGB means subtracted before scaling by 1/255.
pub const MEAN_RGB: [f32; 3] = [122.782, 117.001, 104.298];

/// A separable convolution: depthwise 3×3 then pointwise 1×1 with bias.
#[derive(Module, Debug)]
struct SeparableConv {
    depthwise: Conv,
    pointwise: Conv,
}

impl SeparableConv {
    /// [`SeparableConv::forward`] on the CPU backend, NHWC, then `act`.
    fn forward_cpu(&self, x: &Nhwc, act: Act) -> Nhwc {
        let y = self.depthwise.forward_nhwc(x, Act::Linear);
        self.pointwise.forward_nhwc(&y, act)
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.pointwise.forward(self.depthwise.forward(x))
    }
}

/// A densely connected block; its first convolution is dense in the first block and
/// separable after.
#[derive(Module, Debug)]
struct DenseBlock {
    dense0: Option<Conv>,
    separable0: Option<SeparableConv>,
    convs: Vec<SeparableConv>,
}

impl DenseBlock {
    /// [`DenseBlock::forward`] on the CPU backend, NHWC.
    fn forward_cpu(&self, x: &Nhwc) -> Nhwc {
        let out1 = match (&self.dense0, &self.separable0) {
            (Some(c), _) => c.forward_nhwc(x, Act::Relu),
            (None, Some(c)) => c.forward_cpu(x, Act::Relu),
            (None, None) => unreachable!("a block has a first convolution"),
        };
        let out2 = self.convs[0].forward_cpu(&out1, Act::Linear);
        let out3 = self.convs[1].forward_cpu(&cpu::sum_relu(&[&out1, &out2]), Act::Linear);
        let out4 = self.convs[2].forward_cpu(&cpu::sum_relu(&[&out1, &out2, &out3]), Act::Linear);
        cpu::sum_relu(&[&out1, &out2, &out3, &out4])
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out1 = relu(match (&self.dense0, &self.separable0) {
            (Some(c), _) => c.forward(x),
            (None, Some(c)) => c.forward(x),
            (None, None) => unreachable!("a block has a first convolution"),
        });
        let out2 = self.convs[0].forward(out1.clone());
        let out3 = self.convs[1].forward(relu(out1.clone() + out2.clone()));
        let out4 = self.convs[2].forward(relu(out1.clone() + (out2.clone() + out3.clone())));
        relu(out1 + (out2 + (out3 + out4)))
    }
}

/// The landmark network.
#[derive(Module, Debug)]
pub struct LandmarkNet {
    blocks: Vec<DenseBlock>,
    /// `[256, 136]`.
    fc_weight: Param<Tensor<2>>,
    /// `[136]`.
    fc_bias: Param<Tensor<1>>,
}

fn separable(
    w: &mut Weights,
    prefix: &str,
    cin: usize,
    cout: usize,
    stride: usize,
    device: &Device,
) -> Result<SeparableConv, ModelError> {
    let dw = w.take(&format!("{prefix}/depthwise_filter"), &[3, 3, cin, 1])?;
    let pw = w.take(&format!("{prefix}/pointwise_filter"), &[1, 1, cin, cout])?;
    let bias = w.take(&format!("{prefix}/bias"), &[cout])?.data;
    Ok(SeparableConv {
        depthwise: Conv::depthwise(&dw, None, vec![0.0; cin], stride, Padding::Same, device),
        pointwise: Conv::dense(&pw, None, bias, 1, Padding::Same, device),
    })
}

impl LandmarkNet {
    /// Builds the network from face-api's weights.
    pub fn load(mut w: Weights, device: &Device) -> Result<Self, ModelError> {
        let mut blocks = Vec::new();
        let mut cin = 3;
        for (i, cout) in [32, 64, 128, 256].into_iter().enumerate() {
            let (dense0, separable0) = if i == 0 {
                let k = w.take("dense0/conv0/filters", &[3, 3, 3, 32])?;
                let b = w.take("dense0/conv0/bias", &[32])?.data;
                (
                    Some(Conv::dense(&k, None, b, 2, Padding::Same, device)),
                    None,
                )
            } else {
                let prefix = format!("dense{i}/conv0");
                (
                    None,
                    Some(separable(&mut w, &prefix, cin, cout, 2, device)?),
                )
            };
            let convs = (1..=3)
                .map(|j| separable(&mut w, &format!("dense{i}/conv{j}"), cout, cout, 1, device))
                .collect::<Result<_, _>>()?;
            blocks.push(DenseBlock {
                dense0,
                separable0,
                convs,
            });
            cin = cout;
        }
        let fc_weight = w.take("fc/weights", &[256, 136])?;
        let fc_bias = w.take("fc/bias", &[136])?;
        Ok(Self {
            blocks,
            fc_weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(fc_weight.data, [256, 136]),
                device,
            )),
            fc_bias: Param::from_tensor(Tensor::from_data(
                TensorData::new(fc_bias.data, [136]),
                device,
            )),
        })
    }

    /// The network on a normalised NCHW batch: `[N, 136]` interleaved x, y fractions.
    pub fn forward(&self, mut x: Tensor<4>) -> Tensor<2> {
        if let Some(block) = self.blocks.first()
            && block.convs[0].pointwise.on_cpu()
        {
            let device = x.device();
            let mut y = to_nhwc(x);
            for block in &self.blocks {
                y = block.forward_cpu(&y);
            }
            let pooled = cpu::pool(&y, 7, 2, false);
            let [n, ph, pw, c] = pooled.dims;
            assert_eq!((ph, pw), (1, 1), "the pool leaves one pixel");
            return Tensor::<2>::from_data(TensorData::new(pooled.data, [n, c]), &device)
                .matmul(self.fc_weight.val())
                + self.fc_bias.val().unsqueeze();
        }
        for block in &self.blocks {
            x = block.forward(x);
        }
        let pooled = avg_pool2d(x, AvgPoolOptions::new([7, 7]).with_stride([2, 2]));
        let [n, c, _, _] = pooled.dims();
        pooled.reshape([n, c]).matmul(self.fc_weight.val()) + self.fc_bias.val().unsqueeze()
    }

    /// Multiply-accumulates of one forward pass on one image.
    pub fn macs(&self) -> u64 {
        let (mut total, mut h, mut w) = (0, INPUT, INPUT);
        let mut add = |conv: &Conv, h: &mut usize, w: &mut usize| {
            let (m, oh, ow) = conv.macs(*h, *w);
            total += m;
            (*h, *w) = (oh, ow);
        };
        for block in &self.blocks {
            if let Some(c) = &block.dense0 {
                add(c, &mut h, &mut w);
            }
            for sep in block.separable0.iter().chain(&block.convs) {
                add(&sep.depthwise, &mut h, &mut w);
                add(&sep.pointwise, &mut h, &mut w);
            }
        }
        total + 256 * 136
    }

    /// Runs on 112×112 images (0–255) and returns 136 raw outputs per image.
    pub fn raw(&self, images: &[Image], device: &Device) -> Vec<Vec<f32>> {
        rows(self.forward(mean_scaled_batch(images, MEAN_RGB, device)))
    }

    /// Pads a face crop to a centred square and resizes it to the network input.
    pub fn prepare(crop: &Image) -> Image {
        crop.pad_to_square(true).0.resize_bilinear(INPUT, INPUT)
    }

    /// Raw outputs for a `w × h` crop back to crop pixels, as face-api maps them.
    pub fn to_crop_pixels(raw: &[f32], w: usize, h: usize) -> Vec<[f32; 2]> {
        let (w, h) = (w as f32, h as f32);
        let s = INPUT as f32 / w.max(h);
        let (sw, sh) = (w * s, h * s);
        let pad_x = if sw < sh { (sh - sw) / 2.0 } else { 0.0 };
        let pad_y = if sh < sw { (sw - sh) / 2.0 } else { 0.0 };
        raw.chunks_exact(2)
            .map(|p| {
                let rx = (p[0] * INPUT as f32 - pad_x) / sw;
                let ry = (p[1] * INPUT as f32 - pad_y) / sh;
                [rx * w, ry * h]
            })
            .collect()
    }
}
