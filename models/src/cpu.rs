//! Convolutions for the CPU backend, in NHWC with the bias and activation fused.
//!
//! Burn's CPU backend works in NCHW: each convolution turns its input into NHWC (or an im2col
//! matrix) and back, and the bias, the activation and the graph runner's layout changes each
//! take another pass over memory. Profiled on the models bench, those passes cost more than the
//! matrix multiplications themselves. Here a tensor stays NHWC from layer to layer, so
//!
//! - a 1×1 convolution is one matrix multiply of the pixels `[n·h·w, cin]` by the weights
//!   `[cin, cout]` (TensorFlow's HWIO kernel as stored), with no copy at all;
//! - a k×k convolution gathers its patches (runs of `cin` contiguous values) a block of output
//!   pixels at a time, sized to stay in cache, and multiplies that block;
//! - a depthwise convolution accumulates whole pixels (all channels, contiguous) per kernel tap,
//!   which vectorises across channels;
//! - the bias and the activation are applied to each block while it is still in cache.
//!
//! The matrix multiplies are the `gemm` crate's (the same kernels Burn's backend uses, with its
//! AVX-512 kernels enabled where the processor has them); blocks run in parallel on rayon's pool.
//! Everything here is plain slices: the models move tensors in and out of Burn without copies
//! (`TensorData` from a `Vec`), and the golden tests hold these kernels to the same outputs.

// The one module of the workspace that allows `unsafe`: the gemm call below (pointers and
// strides of slices whose lengths are checked first) and the call of a loop compiled for AVX2
// after the processor was asked whether it has it.
#![allow(unsafe_code)]

use gemm::{Parallelism, gemm};
use rayon::prelude::*;

/// The activation applied after the bias.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Act {
    /// None.
    Linear,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `x` when positive, else `alpha · x`.
    Leaky(f32),
}

/// A convolution's weights laid out for NHWC inputs.
#[derive(Debug, Clone)]
pub struct NhwcConv {
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Input channels.
    pub cin: usize,
    /// Output channels (equal to `cin` for a depthwise convolution).
    pub cout: usize,
    /// Stride along height and width.
    pub stride: [usize; 2],
    /// One filter per channel (`weight` is `[kh, kw, c]`) instead of a dense kernel
    /// (`[kh, kw, cin, cout]`, TensorFlow's HWIO).
    pub depthwise: bool,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// An NHWC tensor: values and `[n, h, w, c]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Nhwc {
    /// Row-major values.
    pub data: Vec<f32>,
    /// `[n, h, w, c]`.
    pub dims: [usize; 4],
}

/// A kernel whose last axis (`channels` long) is the output channel, each channel scaled by
/// `scale` when there is one.
fn scaled(kernel: &[f32], channels: usize, scale: Option<&[f32]>) -> Vec<f32> {
    match scale {
        Some(s) => kernel
            .chunks_exact(channels)
            .flat_map(|run| run.iter().zip(s).map(|(w, s)| w * s))
            .collect(),
        None => kernel.to_vec(),
    }
}

/// `len` zeros, written rather than asked of the allocator as zeroed memory: jemalloc answers a
/// large zeroed request by handing the pages back to the kernel first, and every page then
/// faults in again on first touch (with a TLB shootdown across cores). On the camera pipeline
/// that cost the inference thread more kernel time than it spent in the convolutions.
fn zeros(len: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    v.resize(len, 0.0);
    v
}

/// Work (multiply-adds, or values touched) below which a step runs on the calling thread:
/// handing a step to rayon's pool and back costs microseconds, and the small layers of the small
/// networks were mostly that overhead (the landmarks net ran at 358 images/s with every step on
/// the pool, 610–800 with this threshold; at 2 million MoveNet lost a tenth).
const PARALLEL_MIN_WORK: usize = 150_000;

/// Calls `f(index, chunk, scratch)` on every `size`-long chunk of `data`: on rayon's pool when
/// `work` is worth it, else in order on this thread. `scratch` is a buffer the calls of one
/// thread share.
fn chunks<F>(data: &mut [f32], size: usize, work: usize, f: F)
where
    F: Fn(usize, &mut [f32], &mut Vec<f32>) + Sync + Send,
{
    if work >= PARALLEL_MIN_WORK {
        data.par_chunks_mut(size)
            .enumerate()
            .for_each_init(Vec::new, |scratch, (i, chunk)| f(i, chunk, scratch));
    } else {
        let mut scratch = Vec::new();
        for (i, chunk) in data.chunks_mut(size).enumerate() {
            f(i, chunk, &mut scratch);
        }
    }
}

/// Output pixels a dense convolution's task handles: enough to keep the gemm's right-hand
/// side (the weights) packed once per many rows, few enough that the patch block stays in L2.
fn rows_per_block(k: usize, m: usize) -> usize {
    let by_cache = (64 * 1024 / k.max(1)).clamp(16, 512);
    // At least four blocks per thread where the image allows it, so the pool stays balanced.
    let threads = rayon::current_num_threads().max(1);
    let by_balance = m.div_ceil(4 * threads).max(16);
    by_cache.min(by_balance).next_multiple_of(8)
}

impl NhwcConv {
    /// A dense convolution from a TensorFlow HWIO kernel (`[kh, kw, cin, cout]` row-major),
    /// each output channel scaled by `scale` (a folded batch norm), then `bias` added.
    pub fn dense(
        hwio: &[f32],
        shape: [usize; 4],
        scale: Option<&[f32]>,
        bias: Vec<f32>,
        stride: usize,
    ) -> Self {
        let [kh, kw, cin, cout] = shape;
        assert_eq!(hwio.len(), kh * kw * cin * cout, "kernel size");
        Self::new(
            [kh, kw],
            cin,
            cout,
            false,
            scaled(hwio, cout, scale),
            bias,
            stride,
        )
    }

    /// A depthwise convolution from a TensorFlow `[kh, kw, c, 1]` kernel, channel `i` scaled
    /// by `scale[i]`, then `bias` added.
    pub fn depthwise(
        kernel: &[f32],
        shape: [usize; 3],
        scale: Option<&[f32]>,
        bias: Vec<f32>,
        stride: usize,
    ) -> Self {
        let [kh, kw, c] = shape;
        assert_eq!(kernel.len(), kh * kw * c, "kernel size");
        Self::new([kh, kw], c, c, true, scaled(kernel, c, scale), bias, stride)
    }

    fn new(
        kernel: [usize; 2],
        cin: usize,
        cout: usize,
        depthwise: bool,
        weight: Vec<f32>,
        bias: Vec<f32>,
        stride: usize,
    ) -> Self {
        assert_eq!(bias.len(), cout, "one bias per output channel");
        Self {
            kernel,
            cin,
            cout,
            stride: [stride, stride],
            depthwise,
            weight,
            bias,
        }
    }

    /// Sets a different stride on each axis.
    pub fn with_strides(mut self, stride: [usize; 2]) -> Self {
        self.stride = stride;
        self
    }

    /// The output height and width for an `h × w` input padded by `pad`
    /// (`[(top, bottom), (left, right)]`).
    pub fn output_size(&self, h: usize, w: usize, pad: [(usize, usize); 2]) -> [usize; 2] {
        let [kh, kw] = self.kernel;
        let [sh, sw] = self.stride;
        [
            (h + pad[0].0 + pad[0].1 - kh) / sh + 1,
            (w + pad[1].0 + pad[1].1 - kw) / sw + 1,
        ]
    }

    /// Multiply-accumulates for one `h × w` image padded by `pad`.
    pub fn macs(&self, h: usize, w: usize, pad: [(usize, usize); 2]) -> u64 {
        let [oh, ow] = self.output_size(h, w, pad);
        let per_pixel = if self.depthwise {
            self.cout
        } else {
            self.cin * self.cout
        };
        (oh * ow * per_pixel * self.kernel[0] * self.kernel[1]) as u64
    }

    /// The convolution of NHWC `x` (`dims` = `[n, h, w, cin]`), zero-padded by `pad`, then
    /// the bias and `act`.
    pub fn forward(&self, x: &[f32], dims: [usize; 4], pad: [(usize, usize); 2], act: Act) -> Nhwc {
        let [n, h, w, c] = dims;
        assert_eq!(c, self.cin, "input channels");
        assert_eq!(x.len(), n * h * w * c, "input size");
        let [oh, ow] = self.output_size(h, w, pad);
        let mut out = zeros(n * oh * ow * self.cout);
        let geometry = Geometry {
            dims,
            out: [oh, ow],
            pad: [pad[0].0, pad[1].0],
        };
        if self.depthwise {
            self.depthwise_into(x, &geometry, &mut out, act);
        } else {
            self.dense_into(x, &geometry, &mut out, act);
        }
        Nhwc {
            data: out,
            dims: [n, oh, ow, self.cout],
        }
    }

    fn dense_into(&self, x: &[f32], g: &Geometry, out: &mut [f32], act: Act) {
        let [n, h, w, cin] = g.dims;
        let [oh, ow] = g.out;
        let [kh, kw] = self.kernel;
        let [sh, sw] = self.stride;
        let k = kh * kw * cin;
        let m = n * oh * ow;
        let cout = self.cout;
        let pointwise = kh == 1 && kw == 1 && sh == 1 && sw == 1 && g.pad == [0, 0];
        let rows = rows_per_block(k, m);
        let weight = &self.weight;
        chunks(
            out,
            rows * cout,
            m * k * cout,
            |block, dst, patches: &mut Vec<f32>| {
                let first = block * rows;
                let count = dst.len() / cout;
                let lhs: &[f32] = if pointwise {
                    &x[first * cin..(first + count) * cin]
                } else {
                    patches.clear();
                    patches.resize(count * k, 0.0);
                    for (r, patch) in patches.chunks_exact_mut(k).enumerate() {
                        let p = first + r;
                        let (b, oy, ox) = (p / (oh * ow), (p / ow) % oh, p % ow);
                        for ky in 0..kh {
                            let iy = (oy * sh + ky) as isize - g.pad[0] as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            let row = (b * h + iy as usize) * w;
                            for kx in 0..kw {
                                let ix = (ox * sw + kx) as isize - g.pad[1] as isize;
                                if ix < 0 || ix >= w as isize {
                                    continue;
                                }
                                let src = (row + ix as usize) * cin;
                                let at = (ky * kw + kx) * cin;
                                patch[at..at + cin].copy_from_slice(&x[src..src + cin]);
                            }
                        }
                    }
                    patches
                };
                assert!(lhs.len() == count * k && weight.len() == k * cout);
                // SAFETY: `dst` is `count × cout`, `lhs` is `count × k` and `weight` is
                // `k × cout`, all row-major and contiguous, as the strides passed say.
                unsafe {
                    gemm(
                        count,
                        cout,
                        k,
                        dst.as_mut_ptr(),
                        1,
                        cout as isize,
                        false,
                        lhs.as_ptr(),
                        1,
                        k as isize,
                        weight.as_ptr(),
                        1,
                        cout as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        Parallelism::None,
                    );
                }
                epilogue(dst, &self.bias, act);
            },
        );
    }

    fn depthwise_into(&self, x: &[f32], g: &Geometry, out: &mut [f32], act: Act) {
        let [oh, ow] = g.out;
        let work = out.len() * self.kernel[0] * self.kernel[1];
        chunks(out, ow * self.cout, work, |row, dst, _| {
            let (b, oy) = (row / oh, row % oh);
            depthwise_row(self, x, g, b, oy, dst);
            epilogue(dst, &self.bias, act);
        });
    }
}

/// Where a convolution reads and writes.
struct Geometry {
    /// Input `[n, h, w, c]`.
    dims: [usize; 4],
    /// Output height and width.
    out: [usize; 2],
    /// Padding before (top, left); what is after follows from the output size.
    pad: [usize; 2],
}

/// The output columns `ox` whose input column `ox · stride + tap − pad` lies in `[0, size)`.
fn valid_range(size: usize, out: usize, stride: usize, tap: usize, pad: usize) -> (usize, usize) {
    let first = pad.saturating_sub(tap).div_ceil(stride);
    // Last: largest ox with ox · stride + tap − pad ≤ size − 1.
    let limit = size + pad;
    let end = if limit > tap {
        ((limit - tap - 1) / stride + 1).min(out)
    } else {
        0
    };
    (first.min(end), end)
}

fn depthwise_row(conv: &NhwcConv, x: &[f32], g: &Geometry, b: usize, oy: usize, dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the processor has the features the function is compiled for.
        unsafe { depthwise_row_avx2(conv, x, g, b, oy, dst) };
        return;
    }
    depthwise_row_generic(conv, x, g, b, oy, dst);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn depthwise_row_avx2(
    conv: &NhwcConv,
    x: &[f32],
    g: &Geometry,
    b: usize,
    oy: usize,
    dst: &mut [f32],
) {
    depthwise_row_generic(conv, x, g, b, oy, dst);
}

/// One output row of a depthwise convolution: for each kernel tap, every output pixel of the
/// row adds its input pixel times the tap's weights (all channels at once).
#[inline(always)]
fn depthwise_row_generic(
    conv: &NhwcConv,
    x: &[f32],
    g: &Geometry,
    b: usize,
    oy: usize,
    dst: &mut [f32],
) {
    let [_, h, w, c] = g.dims;
    let [kh, kw] = conv.kernel;
    let [sh, sw] = conv.stride;
    let ow = g.out[1];
    for ky in 0..kh {
        let iy = (oy * sh + ky) as isize - g.pad[0] as isize;
        if iy < 0 || iy >= h as isize {
            continue;
        }
        let row = &x[(b * h + iy as usize) * w * c..][..w * c];
        for kx in 0..kw {
            let weights = &conv.weight[(ky * kw + kx) * c..][..c];
            let (first, end) = valid_range(w, ow, sw, kx, g.pad[1]);
            for ox in first..end {
                let ix = ox * sw + kx - g.pad[1];
                let src = &row[ix * c..][..c];
                let acc = &mut dst[ox * c..][..c];
                for ((a, s), wt) in acc.iter_mut().zip(src).zip(weights) {
                    *a = s.mul_add(*wt, *a);
                }
            }
        }
    }
}

/// Adds the bias to every pixel of `block` (whole pixels of `bias.len()` channels) and
/// applies `act`.
fn epilogue(block: &mut [f32], bias: &[f32], act: Act) {
    #[inline(always)]
    fn each(block: &mut [f32], bias: &[f32], f: impl Fn(f32) -> f32 + Copy) {
        for pixel in block.chunks_exact_mut(bias.len()) {
            for (v, b) in pixel.iter_mut().zip(bias) {
                *v = f(*v + b);
            }
        }
    }
    match act {
        Act::Linear => each(block, bias, |v| v),
        Act::Relu => each(block, bias, |v| v.max(0.0)),
        Act::Relu6 => each(block, bias, |v| v.clamp(0.0, 6.0)),
        Act::Leaky(alpha) => each(block, bias, move |v| if v < 0.0 { alpha * v } else { v }),
    }
}

/// A `k × k` pooling window with stride `s` and no padding over NHWC `x`, each output the
/// window's maximum (`max`) or mean.
pub fn pool(x: &Nhwc, k: usize, s: usize, max: bool) -> Nhwc {
    let [n, h, w, c] = x.dims;
    let (oh, ow) = ((h - k) / s + 1, (w - k) / s + 1);
    let mut out = zeros(n * oh * ow * c);
    let scale = 1.0 / (k * k) as f32;
    let work = out.len() * k * k;
    chunks(&mut out, ow * c, work, |row, dst, _| {
        let (b, oy) = (row / oh, row % oh);
        for (ox, px) in dst.chunks_exact_mut(c).enumerate() {
            px.fill(if max { f32::NEG_INFINITY } else { 0.0 });
            for ky in 0..k {
                for kx in 0..k {
                    let at = ((b * h + oy * s + ky) * w + ox * s + kx) * c;
                    for (o, v) in px.iter_mut().zip(&x.data[at..at + c]) {
                        *o = if max { o.max(*v) } else { *o + v };
                    }
                }
            }
            if !max {
                px.iter_mut().for_each(|o| *o *= scale);
            }
        }
    });
    Nhwc {
        data: out,
        dims: [n, oh, ow, c],
    }
}

/// `relu(x + shortcut)` where `shortcut` may have fewer channels (the rest count as zeros) and
/// `x` fewer rows and columns (the rest count as zeros, as if padded at the bottom and right);
/// the result has the shortcut's height and width and `x`'s channels.
pub fn add_relu(x: &Nhwc, shortcut: &Nhwc) -> Nhwc {
    let [n, h, w, c] = x.dims;
    let [sn, sh, sw, sc] = shortcut.dims;
    assert!(
        n == sn && h <= sh && w <= sw && sc <= c,
        "shapes {:?} and {:?}",
        x.dims,
        shortcut.dims
    );
    let mut out = zeros(n * sh * sw * c);
    let work = out.len();
    chunks(&mut out, sw * c, work, |row, dst, _| {
        let (b, y) = (row / sh, row % sh);
        for (ox, px) in dst.chunks_exact_mut(c).enumerate() {
            if y < h && ox < w {
                px.copy_from_slice(&x.data[((b * h + y) * w + ox) * c..][..c]);
            }
            let s = &shortcut.data[((b * sh + y) * sw + ox) * sc..][..sc];
            for (o, v) in px.iter_mut().zip(s) {
                *o += v;
            }
            px.iter_mut().for_each(|o| *o = o.max(0.0));
        }
    });
    Nhwc {
        data: out,
        dims: [n, sh, sw, c],
    }
}

/// `relu` of the element-wise sum of tensors of one shape.
pub fn sum_relu(parts: &[&Nhwc]) -> Nhwc {
    let (first, rest) = parts.split_first().expect("at least one tensor");
    let mut out = Nhwc::clone(first);
    for part in rest {
        assert_eq!(part.dims, out.dims, "shapes");
    }
    let work = out.data.len() * parts.len();
    chunks(&mut out.data, 4096, work, |i, o, _| {
        for part in rest {
            let p = &part.data[i * 4096..][..o.len()];
            o.iter_mut().zip(p).for_each(|(o, p)| *o += p);
        }
        o.iter_mut().for_each(|v| *v = v.max(0.0));
    });
    out
}

/// NCHW values as NHWC.
pub fn nchw_to_nhwc(x: &[f32], [_, c, h, w]: [usize; 4]) -> Vec<f32> {
    let mut out = zeros(x.len());
    let work = out.len();
    chunks(&mut out, h * w * c, work, |image, dst, _| {
        let src = &x[image * c * h * w..][..c * h * w];
        for ch in 0..c {
            for (p, v) in src[ch * h * w..(ch + 1) * h * w].iter().enumerate() {
                dst[p * c + ch] = *v;
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The convolution written out term by term, NHWC, as the reference.
    fn naive(
        x: &[f32],
        [n, h, w, cin]: [usize; 4],
        conv: &NhwcConv,
        pad: [(usize, usize); 2],
    ) -> Nhwc {
        let [oh, ow] = conv.output_size(h, w, pad);
        let [kh, kw] = conv.kernel;
        let cout = conv.cout;
        let mut out = vec![0.0; n * oh * ow * cout];
        for b in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    for o in 0..cout {
                        let mut acc = conv.bias[o];
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * conv.stride[0] + ky) as isize - pad[0].0 as isize;
                                let ix = (ox * conv.stride[1] + kx) as isize - pad[1].0 as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let at = ((b * h + iy as usize) * w + ix as usize) * cin;
                                if conv.depthwise {
                                    acc += x[at + o] * conv.weight[(ky * kw + kx) * cin + o];
                                } else {
                                    for i in 0..cin {
                                        acc += x[at + i]
                                            * conv.weight[((ky * kw + kx) * cin + i) * cout + o];
                                    }
                                }
                            }
                        }
                        out[((b * oh + oy) * ow + ox) * cout + o] = acc;
                    }
                }
            }
        }
        Nhwc {
            data: out,
            dims: [n, oh, ow, cout],
        }
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).max(1);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                "at {i}: {x} vs {y}"
            );
        }
    }

    /// `conv` on an input of `dims` made from `seed` gives what [`naive`] gives.
    fn matches_definition(conv: &NhwcConv, dims: [usize; 4], pad: [(usize, usize); 2], seed: u32) {
        let x = values(dims.iter().product(), seed);
        let got = conv.forward(&x, dims, pad, Act::Linear);
        let want = naive(&x, dims, conv, pad);
        assert_eq!(got.dims, want.dims, "input {dims:?}, padding {pad:?}");
        close(&got.data, &want.data);
    }

    #[test]
    fn dense_convolutions_match_the_definition() {
        // (kernel, stride, padding, size, channels in, out): a stem, a pointwise layer, a
        // strided valid one, an asymmetric padding and a batch of two.
        let cases = [
            (3, 2, [(0, 1), (0, 1)], [1, 17, 20, 3], 8),
            (1, 1, [(0, 0), (0, 0)], [2, 9, 7, 16], 24),
            (3, 1, [(1, 1), (1, 1)], [2, 12, 11, 5], 7),
            (7, 2, [(0, 0), (0, 0)], [1, 19, 19, 3], 4),
            (3, 2, [(1, 1), (0, 2)], [1, 8, 6, 4], 3),
        ];
        for (i, (k, s, pad, dims, cout)) in cases.into_iter().enumerate() {
            let cin = dims[3];
            let kernel = values(k * k * cin * cout, i as u32 + 1);
            let bias = values(cout, i as u32 + 50);
            let conv = NhwcConv::dense(&kernel, [k, k, cin, cout], None, bias, s);
            matches_definition(&conv, dims, pad, i as u32 + 100);
        }
    }

    #[test]
    fn depthwise_convolutions_match_the_definition() {
        let cases = [
            (3, 1, [(1, 1), (1, 1)], [1, 10, 13, 16]),
            (3, 2, [(0, 1), (0, 1)], [2, 16, 16, 9]),
            (5, 2, [(1, 2), (2, 1)], [1, 11, 9, 32]),
            (3, 1, [(0, 0), (0, 0)], [1, 5, 5, 3]),
        ];
        for (i, (k, s, pad, dims)) in cases.into_iter().enumerate() {
            let c = dims[3];
            let kernel = values(k * k * c, i as u32 + 7);
            let conv = NhwcConv::depthwise(&kernel, [k, k, c], None, values(c, 3), s);
            matches_definition(&conv, dims, pad, i as u32 + 200);
        }
    }

    #[test]
    fn scales_fold_into_the_kernel_and_activations_follow_the_bias() {
        let kernel = [1.0, 2.0, 3.0, 4.0]; // 1×1, cin 2, cout 2: [i][o].
        let conv = NhwcConv::dense(&kernel, [1, 1, 2, 2], Some(&[1.0, -1.0]), vec![0.5, 0.0], 1);
        // x = (1, 1): o0 = (1 + 3) · 1 + 0.5, o1 = −(2 + 4).
        let x = [1.0, 1.0];
        let dims = [1, 1, 1, 2];
        let none = [(0, 0), (0, 0)];
        assert_eq!(conv.forward(&x, dims, none, Act::Linear).data, [4.5, -6.0]);
        assert_eq!(conv.forward(&x, dims, none, Act::Relu).data, [4.5, 0.0]);
        assert_eq!(conv.forward(&x, dims, none, Act::Relu6).data, [4.5, 0.0]);
        assert_eq!(
            conv.forward(&x, dims, none, Act::Leaky(0.1)).data,
            [4.5, -0.6]
        );
        let big = [4.0, 4.0];
        assert_eq!(conv.forward(&big, dims, none, Act::Relu6).data, [6.0, 0.0]);
    }

    #[test]
    fn the_valid_range_skips_exactly_the_padding() {
        // size 5, stride 2, pad 1, tap 0: ox·2 − 1 ∈ [0, 5) → ox ∈ [1, 3).
        assert_eq!(valid_range(5, 3, 2, 0, 1), (1, 3));
        assert_eq!(valid_range(5, 3, 2, 2, 1), (0, 2));
        assert_eq!(valid_range(4, 4, 1, 1, 1), (0, 4));
        assert_eq!(valid_range(4, 4, 1, 0, 1), (1, 4));
        assert_eq!(valid_range(4, 4, 1, 2, 1), (0, 3));
    }

    #[test]
    fn pools_take_the_maximum_or_the_mean_of_valid_windows() {
        // 1 × 3 × 3 × 2: channel 0 counts 0..9, channel 1 is its negative.
        let data: Vec<f32> = (0..9).flat_map(|v| [v as f32, -(v as f32)]).collect();
        let x = Nhwc {
            data,
            dims: [1, 3, 3, 2],
        };
        let max = pool(&x, 2, 1, true);
        assert_eq!(max.dims, [1, 2, 2, 2]);
        assert_eq!(max.data, [4.0, 0.0, 5.0, -1.0, 7.0, -3.0, 8.0, -4.0]);
        let mean = pool(&x, 2, 2, false);
        assert_eq!(mean.dims, [1, 1, 1, 2]);
        assert_eq!(mean.data, [2.0, -2.0]);
    }

    #[test]
    fn a_shortcut_adds_into_the_first_channels_and_pads_what_is_missing() {
        // x: 1 × 1 × 1 × 3; shortcut: 1 × 2 × 1 × 2.
        let x = Nhwc {
            data: vec![1.0, -5.0, 2.0],
            dims: [1, 1, 1, 3],
        };
        let shortcut = Nhwc {
            data: vec![1.0, 1.0, -1.0, 3.0],
            dims: [1, 2, 1, 2],
        };
        let y = add_relu(&x, &shortcut);
        assert_eq!(y.dims, [1, 2, 1, 3]);
        assert_eq!(y.data, [2.0, 0.0, 2.0, 0.0, 3.0, 0.0]);
    }

    #[test]
    fn sums_are_rectified() {
        let a = Nhwc {
            data: vec![1.0, -2.0],
            dims: [1, 1, 1, 2],
        };
        let b = Nhwc {
            data: vec![0.5, 1.0],
            dims: [1, 1, 1, 2],
        };
        assert_eq!(sum_relu(&[&a, &b]).data, [1.5, 0.0]);
        assert_eq!(sum_relu(&[&a]).data, [1.0, 0.0]);
    }

    #[test]
    fn nchw_becomes_nhwc() {
        // n 1, c 2, h 1, w 3.
        let x = [1.0, 2.0, 3.0, 10.0, 20.0, 30.0];
        assert_eq!(
            nchw_to_nhwc(&x, [1, 2, 1, 3]),
            vec![1.0, 10.0, 2.0, 20.0, 3.0, 30.0]
        );
    }
}
