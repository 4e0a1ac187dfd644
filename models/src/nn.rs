//! Building blocks shared by the models: convolutions with TensorFlow's padding rules, built
//! from TF.js weights (HWIO kernels) with batch norms folded in at load time.

use burn::module::{Module, Param};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};

use crate::cpu::{Act, Nhwc, NhwcConv};
use crate::tfjs::TfTensor;

/// TensorFlow's padding modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Output `ceil(n / stride)`, padding split with the odd pixel after (bottom/right).
    Same,
    /// No padding.
    Valid,
}

/// The (before, after) padding TensorFlow applies along one axis.
pub fn tf_padding(n: usize, kernel: usize, stride: usize, padding: Padding) -> (usize, usize) {
    match padding {
        Padding::Valid => (0, 0),
        Padding::Same => {
            let out = n.div_ceil(stride);
            let total = ((out - 1) * stride + kernel).saturating_sub(n);
            (total / 2, total - total / 2)
        }
    }
}

/// A 2-D convolution with bias, weights in Burn's OIHW layout.
#[derive(Module, Debug)]
pub struct Conv {
    /// `[out, in / groups, kh, kw]`.
    pub weight: Param<Tensor<4>>,
    /// `[out]`.
    pub bias: Param<Tensor<1>>,
    /// Stride on both axes.
    pub stride: usize,
    /// Channel groups (the channel count for a depthwise convolution).
    pub groups: usize,
    /// Whether TensorFlow's `same` padding applies (else `valid`).
    pub same: bool,
    /// On the CPU backend, the same convolution in NHWC (`crate::cpu`), which
    /// [`Conv::forward_nhwc`] runs.
    #[module(skip)]
    pub cpu: Option<NhwcConv>,
}

/// A TF.js kernel `[kh, kw, in, out]` as OIHW data, each output channel scaled by `scale`.
fn hwio_to_oihw(kernel: &TfTensor, scale: Option<&[f32]>) -> (Vec<f32>, [usize; 4]) {
    let [kh, kw, cin, cout] = [
        kernel.shape[0],
        kernel.shape[1],
        kernel.shape[2],
        kernel.shape[3],
    ];
    let mut out = vec![0.0; kernel.data.len()];
    for y in 0..kh {
        for x in 0..kw {
            for i in 0..cin {
                for o in 0..cout {
                    let s = scale.map_or(1.0, |s| s[o]);
                    out[((o * cin + i) * kh + y) * kw + x] =
                        kernel.data[((y * kw + x) * cin + i) * cout + o] * s;
                }
            }
        }
    }
    (out, [cout, cin, kh, kw])
}

/// A TF.js depthwise kernel `[kh, kw, C, 1]` as `[C, 1, kh, kw]`, channel `c` scaled by
/// `scale[c]`.
fn depthwise_to_oihw(kernel: &TfTensor, scale: Option<&[f32]>) -> (Vec<f32>, [usize; 4]) {
    let [kh, kw, c] = [kernel.shape[0], kernel.shape[1], kernel.shape[2]];
    let mut out = vec![0.0; kernel.data.len()];
    for y in 0..kh {
        for x in 0..kw {
            for ch in 0..c {
                let s = scale.map_or(1.0, |s| s[ch]);
                out[(ch * kh + y) * kw + x] = kernel.data[(y * kw + x) * c + ch] * s;
            }
        }
    }
    (out, [c, 1, kh, kw])
}

impl Conv {
    /// A regular convolution from a TF.js HWIO kernel. `scale` multiplies each output channel
    /// (a folded batch norm or scale layer); `bias` is added after.
    pub fn dense(
        kernel: &TfTensor,
        scale: Option<&[f32]>,
        bias: Vec<f32>,
        stride: usize,
        padding: Padding,
        device: &Device,
    ) -> Self {
        if *device == Device::flex() {
            let s = &kernel.shape;
            let cpu = NhwcConv::dense(&kernel.data, [s[0], s[1], s[2], s[3]], scale, bias, stride);
            return Self::for_cpu(cpu, stride, 1, padding, device);
        }
        let (data, shape) = hwio_to_oihw(kernel, scale);
        Self::build(data, shape, bias, stride, 1, padding, device)
    }

    /// A depthwise convolution from a TF.js `[kh, kw, C, 1]` kernel.
    pub fn depthwise(
        kernel: &TfTensor,
        scale: Option<&[f32]>,
        bias: Vec<f32>,
        stride: usize,
        padding: Padding,
        device: &Device,
    ) -> Self {
        if *device == Device::flex() {
            let s = &kernel.shape;
            let cpu = NhwcConv::depthwise(&kernel.data, [s[0], s[1], s[2]], scale, bias, stride);
            return Self::for_cpu(cpu, stride, s[2], padding, device);
        }
        let (data, shape) = depthwise_to_oihw(kernel, scale);
        let groups = shape[0];
        Self::build(data, shape, bias, stride, groups, padding, device)
    }

    fn build(
        data: Vec<f32>,
        shape: [usize; 4],
        bias: Vec<f32>,
        stride: usize,
        groups: usize,
        padding: Padding,
        device: &Device,
    ) -> Self {
        assert_eq!(bias.len(), shape[0], "one bias per output channel");
        let weight = Tensor::<4>::from_data(TensorData::new(data, shape), device);
        let n = bias.len();
        let bias = Tensor::<1>::from_data(TensorData::new(bias, [n]), device);
        Self {
            weight: Param::from_tensor(weight),
            bias: Param::from_tensor(bias),
            stride,
            groups,
            same: padding == Padding::Same,
            cpu: None,
        }
    }

    /// A convolution for the CPU backend: its NHWC twin holds the weights, and Burn's
    /// parameters are one-element placeholders (the weights are not kept twice).
    fn for_cpu(
        cpu: NhwcConv,
        stride: usize,
        groups: usize,
        padding: Padding,
        device: &Device,
    ) -> Self {
        Self {
            cpu: Some(cpu),
            ..Self::build(
                vec![0.0],
                [1, 1, 1, 1],
                vec![0.0],
                stride,
                groups,
                padding,
                device,
            )
        }
    }

    /// The (before, after) padding along height and width for an `h × w` input.
    fn padding(&self, h: usize, w: usize, [kh, kw]: [usize; 2]) -> [(usize, usize); 2] {
        let padding = if self.same {
            Padding::Same
        } else {
            Padding::Valid
        };
        [
            tf_padding(h, kh, self.stride, padding),
            tf_padding(w, kw, self.stride, padding),
        ]
    }

    /// Whether [`Conv::forward_nhwc`] can run (the convolution was built for the CPU).
    pub fn on_cpu(&self) -> bool {
        self.cpu.is_some()
    }

    /// On the CPU backend: the convolution of NHWC `x`, then its bias and `act`.
    pub fn forward_nhwc(&self, x: &Nhwc, act: Act) -> Nhwc {
        let conv = self.cpu.as_ref().expect("a convolution built for the CPU");
        let [_, h, w, _] = x.dims;
        conv.forward(&x.data, x.dims, self.padding(h, w, conv.kernel), act)
    }

    /// Multiply-accumulates for an `h × w` input, and the output size.
    pub fn macs(&self, h: usize, w: usize) -> (u64, usize, usize) {
        if let Some(conv) = &self.cpu {
            let pad = self.padding(h, w, conv.kernel);
            let [oh, ow] = conv.output_size(h, w, pad);
            return (conv.macs(h, w, pad), oh, ow);
        }
        let [cout, cin_per_group, kh, kw] = self.weight.dims();
        let out = |n: usize, k: usize| {
            if self.same {
                n.div_ceil(self.stride)
            } else {
                (n - k) / self.stride + 1
            }
        };
        let (oh, ow) = (out(h, kh), out(w, kw));
        ((oh * ow * cout * cin_per_group * kh * kw) as u64, oh, ow)
    }

    /// Applies the convolution to NCHW `x`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if self.cpu.is_some() {
            let device = x.device();
            let y = self.forward_nhwc(&to_nhwc(x), Act::Linear);
            return Tensor::<4>::from_data(TensorData::new(y.data, y.dims), &device)
                .permute([0, 3, 1, 2]);
        }
        let [_, _, h, w] = x.dims();
        let [_, _, kh, kw] = self.weight.dims();
        let options = ConvOptions::new_with_padding(
            [self.stride, self.stride],
            self.padding(h, w, [kh, kw]),
            [1, 1],
            self.groups,
        );
        conv2d(x, self.weight.val(), Some(self.bias.val()), options)
    }
}

/// A `[n, k]` output read back as `n` rows of `k` values.
pub fn rows(t: Tensor<2>) -> Vec<Vec<f32>> {
    let [_, k] = t.dims();
    let values = t.into_data().try_into_vec::<f32>().expect("f32 output");
    values.chunks_exact(k).map(<[f32]>::to_vec).collect()
}

/// Square images (0–255) as an NCHW batch on `device`, each value `(v - mean[c]) / 255`.
pub fn mean_scaled_batch(
    images: &[crate::image::Image],
    mean: [f32; 3],
    device: &Device,
) -> Tensor<4> {
    let (data, shape) = crate::image::nchw_batch(images, |c, v| (v - mean[c]) / 255.0);
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// An NCHW tensor's values in NHWC (the CPU path's layout).
pub fn to_nhwc(x: Tensor<4>) -> Nhwc {
    let [n, c, h, w] = x.dims();
    let data = x.into_data();
    let values = data.as_slice::<f32>().expect("f32 tensor");
    Nhwc {
        data: crate::cpu::nchw_to_nhwc(values, [n, c, h, w]),
        dims: [n, h, w, c],
    }
}

/// `min(max(x, 0), 6)`.
pub fn relu6(x: Tensor<4>) -> Tensor<4> {
    x.clamp(0.0, 6.0)
}

/// Element-wise `max(x, 0)`.
pub fn relu(x: Tensor<4>) -> Tensor<4> {
    burn::tensor::activation::relu(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_puts_the_odd_pixel_after() {
        assert_eq!(tf_padding(512, 3, 2, Padding::Same), (0, 1));
        assert_eq!(tf_padding(256, 3, 1, Padding::Same), (1, 1));
        assert_eq!(tf_padding(1, 3, 2, Padding::Same), (1, 1));
        assert_eq!(tf_padding(16, 1, 1, Padding::Same), (0, 0));
        assert_eq!(tf_padding(150, 7, 2, Padding::Valid), (0, 0));
    }

    #[test]
    fn kernels_are_reordered_to_oihw() {
        // kh = kw = 1, in = 2, out = 3: HWIO [i][o] = 10 i + o.
        let k = TfTensor {
            shape: vec![1, 1, 2, 3],
            data: vec![0.0, 1.0, 2.0, 10.0, 11.0, 12.0],
        };
        let (data, shape) = hwio_to_oihw(&k, Some(&[1.0, 2.0, 3.0]));
        assert_eq!(shape, [3, 2, 1, 1]);
        assert_eq!(data, vec![0.0, 10.0, 2.0, 22.0, 6.0, 36.0]);
    }
}
