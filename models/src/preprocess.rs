//! Frame → network input on the device the model runs on: place the image on a zero canvas,
//! resize it with TensorFlow's legacy bilinear rule and normalise each channel, producing an
//! NCHW batch.
//!
//! It is a Burn backend extension: on wgpu (Burn's cubecl backend) it launches the hand-written
//! WGSL kernel `shaders/preprocess.wgsl` on the tensor's own device and queue, so only packed
//! 8-bit pixels cross the bus (4 bytes a pixel instead of 12 for f32 RGB); on the CPU backend it
//! computes the same thing in Rust ([`cpu_preprocess`]). A test holds the two equal.

use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Device, Tensor, TensorData};
use burn_cubecl::CubeBackend;
use cubecl::prelude::*;
use cubecl::server::KernelArguments;

use crate::image::Image;

/// The WGSL source.
pub const WGSL: &str = include_str!("../../shaders/preprocess.wgsl");

/// What to do with each image: where it sits on the canvas, the output size, and the
/// per-channel affine normalisation `v * mul + add`.
#[derive(Debug, Clone, PartialEq)]
pub struct Resize {
    /// Source image width.
    pub in_w: usize,
    /// Source image height.
    pub in_h: usize,
    /// Column of the image's left edge on the canvas.
    pub left: usize,
    /// Row of the image's top edge on the canvas.
    pub top: usize,
    /// Canvas width (≥ `left + in_w`).
    pub canvas_w: usize,
    /// Canvas height.
    pub canvas_h: usize,
    /// Output width.
    pub out_w: usize,
    /// Output height.
    pub out_h: usize,
    /// Per-channel scale.
    pub mul: [f32; 3],
    /// Per-channel offset.
    pub add: [f32; 3],
}

impl Resize {
    /// Pad to a square (all padding after when not `centered`, else `round(diff / 2)` after and
    /// the rest before, as [`Image::pad_to_square`]), resize to `side`, then normalise.
    pub fn square(
        w: usize,
        h: usize,
        centered: bool,
        side: usize,
        mul: [f32; 3],
        add: [f32; 3],
    ) -> Self {
        let (canvas, left, top) = crate::image::square_placement(w, h, centered);
        Self {
            in_w: w,
            in_h: h,
            left,
            top,
            canvas_w: canvas,
            canvas_h: canvas,
            out_w: side,
            out_h: side,
            mul,
            add,
        }
    }

    fn words(&self) -> Vec<u32> {
        let mut w: Vec<u32> = [
            self.in_w,
            self.in_h,
            self.left,
            self.top,
            self.canvas_w,
            self.canvas_h,
            self.out_w,
            self.out_h,
        ]
        .iter()
        .map(|&v| v as u32)
        .collect();
        w.extend(self.mul.iter().chain(&self.add).map(|f| f.to_bits()));
        w
    }
}

/// The CPU computation of the kernel, on packed pixels `[n, in_h, in_w]`.
pub fn cpu_preprocess(pixels: &[f32], n: usize, r: &Resize) -> Vec<f32> {
    let plane = r.out_w * r.out_h;
    let mut out = vec![0.0f32; n * 3 * plane];
    let sy = r.canvas_h as f32 / r.out_h as f32;
    let sx = r.canvas_w as f32 / r.out_w as f32;
    let sample = |base: usize, x: i64, y: i64, c: usize| -> f32 {
        let (px, py) = (x - r.left as i64, y - r.top as i64);
        if px < 0 || py < 0 || px >= r.in_w as i64 || py >= r.in_h as i64 {
            return 0.0;
        }
        let packed = pixels[base + py as usize * r.in_w + px as usize] as u32;
        ((packed >> (8 * c)) & 255) as f32
    };
    for img in 0..n {
        let base = img * r.in_w * r.in_h;
        for c in 0..3 {
            for row in 0..r.out_h {
                let src_y = row as f32 * sy;
                let y0 = src_y.floor() as i64;
                let y1 = (src_y.ceil() as i64).min(r.canvas_h as i64 - 1);
                let fy = src_y - y0 as f32;
                for col in 0..r.out_w {
                    let src_x = col as f32 * sx;
                    let x0 = src_x.floor() as i64;
                    let x1 = (src_x.ceil() as i64).min(r.canvas_w as i64 - 1);
                    let fx = src_x - x0 as f32;
                    let tl = sample(base, x0, y0, c);
                    let tr = sample(base, x1, y0, c);
                    let bl = sample(base, x0, y1, c);
                    let br = sample(base, x1, y1, c);
                    let top = tl + (tr - tl) * fx;
                    let bottom = bl + (br - bl) * fx;
                    let v = top + (bottom - top) * fy;
                    out[(img * 3 + c) * plane + row * r.out_w + col] = v * r.mul[c] + r.add[c];
                }
            }
        }
    }
    out
}

/// The WGSL source of the face-chip kernel.
pub const ALIGN_WGSL: &str = include_str!("../../shaders/align.wgsl");

/// Face chips to cut from one image: for each face its centre, side and eye-line angle
/// (see `shaders/align.wgsl`), and the normalisation of the chips.
#[derive(Debug, Clone, PartialEq)]
pub struct Align {
    /// Image width.
    pub in_w: usize,
    /// Image height.
    pub in_h: usize,
    /// Chip side in pixels.
    pub side: usize,
    /// Per-channel scale.
    pub mul: [f32; 3],
    /// Per-channel offset.
    pub add: [f32; 3],
    /// Per face: centre x, centre y, size (image pixels the chip spans), cos and sin of the
    /// eye-line angle.
    pub faces: Vec<[f32; 5]>,
}

impl Align {
    fn words(&self) -> Vec<u32> {
        let mut w = vec![self.in_w as u32, self.in_h as u32, self.side as u32, 0];
        w.extend(self.mul.iter().chain(&self.add).map(|f| f.to_bits()));
        w.extend([0, 0]);
        for face in &self.faces {
            w.extend(face.iter().map(|f| f.to_bits()));
            w.extend([0, 0, 0]);
        }
        w
    }
}

/// The CPU computation of the face-chip kernel on packed pixels `[in_h, in_w]`.
pub fn cpu_align(pixels: &[f32], a: &Align) -> Vec<f32> {
    let plane = a.side * a.side;
    let mut out = vec![0.0f32; a.faces.len() * 3 * plane];
    let pixel = |x: i64, y: i64, c: usize| -> f32 {
        if x < 0 || y < 0 || x >= a.in_w as i64 || y >= a.in_h as i64 {
            return 0.0;
        }
        let packed = pixels[y as usize * a.in_w + x as usize] as u32;
        ((packed >> (8 * c)) & 255) as f32
    };
    for (n, &[cx, cy, size, cs, sn]) in a.faces.iter().enumerate() {
        let step = size / a.side as f32;
        for c in 0..3 {
            for v in 0..a.side {
                for u in 0..a.side {
                    let dx = u as f32 * step - 0.5 * size;
                    let dy = v as f32 * step - 0.43 * size;
                    let x = cx + cs * dx - sn * dy;
                    let y = cy + sn * dx + cs * dy;
                    let (x0, y0) = (x.floor(), y.floor());
                    let (fx, fy) = (x - x0, y - y0);
                    let (xi, yi) = (x0 as i64, y0 as i64);
                    let top = pixel(xi, yi, c) + (pixel(xi + 1, yi, c) - pixel(xi, yi, c)) * fx;
                    let bottom = pixel(xi, yi + 1, c)
                        + (pixel(xi + 1, yi + 1, c) - pixel(xi, yi + 1, c)) * fx;
                    let value = top + (bottom - top) * fy;
                    out[(n * 3 + c) * plane + v * a.side + u] = value * a.mul[c] + a.add[c];
                }
            }
        }
    }
    out
}

/// Frame pre-processing as a backend operation.
#[backend_extension(Flex, Cube)]
pub trait PreprocessOps: Backend {
    /// Packed pixels `[n, in_h, in_w]` → normalised NCHW `[n, 3, out_h, out_w]`.
    fn preprocess(pixels: FloatTensor<Self>, resize: Resize) -> FloatTensor<Self>;

    /// Packed pixels `[1, in_h, in_w]` → one normalised chip per face, `[faces, 3, side, side]`.
    fn align_faces(pixels: FloatTensor<Self>, align: Align) -> FloatTensor<Self>;
}

impl PreprocessOps for Flex {
    fn preprocess(pixels: FloatTensor<Self>, resize: Resize) -> FloatTensor<Self> {
        let device = pixels.device();
        let data = burn::tensor::read_sync(Self::float_into_data(pixels)).expect("CPU data");
        let n = data.shape()[0];
        let values = data.try_to_vec::<f32>().expect("f32 pixels");
        let out = cpu_preprocess(&values, n, &resize);
        Self::float_from_data(
            TensorData::new(out, [n, 3, resize.out_h, resize.out_w]),
            &device,
        )
    }

    fn align_faces(pixels: FloatTensor<Self>, align: Align) -> FloatTensor<Self> {
        let device = pixels.device();
        let data = burn::tensor::read_sync(Self::float_into_data(pixels)).expect("CPU data");
        let values = data.try_to_vec::<f32>().expect("f32 pixels");
        let out = cpu_align(&values, &align);
        Self::float_from_data(
            TensorData::new(out, [align.faces.len(), 3, align.side, align.side]),
            &device,
        )
    }
}

/// A hand-written WGSL kernel, as cubecl launches precompiled sources.
struct WgslKernel {
    source: &'static str,
    entry: &'static str,
}

impl KernelMetadata for WgslKernel {
    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info(self.entry)
    }

    fn address_type(&self) -> ElemType {
        ElemType::UInt(cubecl::ir::UIntKind::U32)
    }
}

impl CubeKernel for WgslKernel {
    fn define(&self) -> cubecl::prelude::KernelDefinition {
        let settings = KernelSettings::new(
            cubecl::ir::settings::Dim3::new_single(),
            ExecutionMode::Checked,
            AddressType::U32,
        );
        cubecl::prelude::KernelDefinition {
            body: Scope::root(settings.clone()),
            settings,
            info: cubecl::ir::metadata::Info::default(),
        }
    }

    fn source(&self) -> Option<cubecl::PrecompiledSource> {
        Some(cubecl::PrecompiledSource {
            source: self.source.to_string(),
            entrypoint_name: self.entry.to_string(),
            lang: "wgsl",
        })
    }
}

impl PreprocessOps for CubeBackend {
    fn preprocess(pixels: FloatTensor<Self>, resize: Resize) -> FloatTensor<Self> {
        let n = pixels.meta.shape()[0];
        let shape = [n, 3, resize.out_h, resize.out_w];
        launch(pixels, WGSL, "preprocess", &resize.words(), shape)
    }

    fn align_faces(pixels: FloatTensor<Self>, align: Align) -> FloatTensor<Self> {
        let shape = [align.faces.len(), 3, align.side, align.side];
        launch(pixels, ALIGN_WGSL, "align", &align.words(), shape)
    }
}

/// Launches one of the WGSL kernels (bindings: pixels, parameter words, output) with one
/// invocation per value of an output plane set and one workgroup row per image or face.
fn launch(
    pixels: FloatTensor<CubeBackend>,
    source: &'static str,
    entry: &'static str,
    words: &[u32],
    shape: [usize; 4],
) -> FloatTensor<CubeBackend> {
    let client = pixels.client.clone();
    let output =
        CubeBackend::float_empty(shape.into(), &pixels.device, burn::tensor::FloatDType::F32);
    let params = client.create_from_slice(bytemuck_words(words));
    let per_item = (shape[1] * shape[2] * shape[3]) as u32;
    client.launch(
        Box::new(WgslKernel { source, entry }),
        CubeCount::Static(per_item.div_ceil(64), shape[0] as u32, 1),
        KernelArguments::new()
            .with_buffer(pixels.handle.clone().binding())
            .with_buffer(params.binding())
            .with_buffer(output.handle.clone().binding()),
    );
    output
}

/// The parameter words as the bytes the device buffer holds (native endianness, as WGSL reads
/// them).
fn bytemuck_words(words: &[u32]) -> &[u8] {
    bytemuck::cast_slice(words)
}

/// Packs images of one size into `[n, h, w]` 24-bit pixels.
pub fn pack(images: &[Image]) -> (Vec<f32>, [usize; 3]) {
    let (w, h) = (images[0].width, images[0].height);
    let mut out = Vec::with_capacity(images.len() * w * h);
    for image in images {
        assert_eq!((image.width, image.height), (w, h), "one size per batch");
        out.extend(image.data.chunks_exact(3).map(|p| {
            let [r, g, b] = [p[0], p[1], p[2]].map(|v| v.clamp(0.0, 255.0) as u32);
            (r | g << 8 | b << 16) as f32
        }));
    }
    (out, [images.len(), h, w])
}

/// Images of one size → the normalised NCHW input, computed on `device`.
pub fn preprocess(images: &[Image], resize: &Resize, device: &Device) -> Tensor<4> {
    let (data, shape) = pack(images);
    let pixels = Tensor::<3>::from_data(TensorData::new(data, shape), device);
    Tensor::from_dispatch(<Dispatch as PreprocessOps>::preprocess(
        pixels.into_dispatch(),
        resize.clone(),
    ))
}

/// One chip per face of `image`, computed on `device`.
pub fn align_faces(image: &Image, align: &Align, device: &Device) -> Tensor<4> {
    let (data, shape) = pack(std::slice::from_ref(image));
    let pixels = Tensor::<3>::from_data(TensorData::new(data, shape), device);
    Tensor::from_dispatch(<Dispatch as PreprocessOps>::align_faces(
        pixels.into_dispatch(),
        align.clone(),
    ))
}

/// Images of any sizes → one NCHW batch, each pre-processed on `device` with its own
/// [`Resize`] (all of one output size).
pub fn preprocess_each(
    images: &[Image],
    resize: impl Fn(&Image) -> Resize,
    device: &Device,
) -> Tensor<4> {
    let parts: Vec<Tensor<4>> = images
        .iter()
        .map(|image| preprocess(std::slice::from_ref(image), &resize(image), device))
        .collect();
    Tensor::cat(parts, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Compute;
    use crate::image::nchw_batch;

    fn image(w: usize, h: usize, seed: usize) -> Image {
        let data = (0..w * h * 3)
            .map(|i| ((i * 31 + seed * 17 + i / (w * 3) * 7) % 256) as f32)
            .collect();
        Image {
            width: w,
            height: h,
            data,
        }
    }

    /// The path the models took before: pad and resize on `Image`, then normalise.
    fn reference(
        images: &[Image],
        centered: bool,
        side: usize,
        mul: [f32; 3],
        add: [f32; 3],
    ) -> Vec<f32> {
        let prepared: Vec<Image> = images
            .iter()
            .map(|i| i.pad_to_square(centered).0.resize_bilinear(side, side))
            .collect();
        nchw_batch(&prepared, |c, v| v * mul[c] + add[c]).0
    }

    fn check(device: &Device, backend: &str) {
        let cases = [
            (image(53, 37, 1), false, 64), // wide, padded below, upscaled
            (image(29, 61, 2), true, 48),  // tall, centred padding, downscaled
            (image(40, 40, 3), true, 40),  // square, same size
        ];
        for (img, centered, side) in cases {
            let mul = [1.0 / 127.5, 1.0 / 255.0, 0.5];
            let add = [-1.0, -0.4, 3.0];
            let batch = vec![img.clone(), image(img.width, img.height, 9)];
            let resize = Resize::square(img.width, img.height, centered, side, mul, add);
            let got = preprocess(&batch, &resize, device)
                .into_data()
                .try_into_vec::<f32>()
                .unwrap();
            let want = reference(&batch, centered, side, mul, add);
            assert_eq!(got.len(), want.len());
            let worst = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (g - w).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst < 1e-4,
                "{backend} {}×{} → {side}: worst difference {worst}",
                img.width,
                img.height
            );
        }
    }

    fn align_case() -> (Image, Align) {
        let img = image(61, 47, 4);
        let angle: f32 = 0.3;
        let align = Align {
            in_w: 61,
            in_h: 47,
            side: 24,
            mul: [1.0 / 255.0; 3],
            add: [-0.5, -0.4, -0.3],
            faces: vec![
                [30.0, 20.0, 30.0, 1.0, 0.0],
                [25.5, 30.25, 41.0, angle.cos(), angle.sin()],
            ],
        };
        (img, align)
    }

    #[test]
    fn face_chips_at_angle_zero_are_the_unrotated_crop() {
        let (img, mut align) = align_case();
        align.faces.truncate(1);
        let (packed, _) = pack(std::slice::from_ref(&img));
        let chip = cpu_align(&packed, &align);
        // Centre (30, 20), size 30: the crop starts at (15, 7.1); chip pixel (2, 0) samples
        // image x = 15 + 2 * 30 / 24 = 17.5, y = 7.1 (between rows 7 and 8).
        let want_at = |x: f32, y: f32, c: usize| {
            let (x0, y0) = (x.floor() as usize, y.floor() as usize);
            let (fx, fy) = (x - x0 as f32, y - y0 as f32);
            let top = img.at(x0, y0, c) + (img.at(x0 + 1, y0, c) - img.at(x0, y0, c)) * fx;
            let bottom =
                img.at(x0, y0 + 1, c) + (img.at(x0 + 1, y0 + 1, c) - img.at(x0, y0 + 1, c)) * fx;
            top + (bottom - top) * fy
        };
        let got = chip[2] * 255.0 + 0.5 * 255.0;
        assert!((got - want_at(17.5, 7.1, 0)).abs() < 1e-2, "{got}");
    }

    #[test]
    fn wgsl_face_chips_match_the_cpu_twin() {
        let compute = Compute::wgpu().expect("a wgpu adapter (Mesa's software Vulkan in CI)");
        let (img, align) = align_case();
        let got = align_faces(&img, &align, &compute.device)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let (packed, _) = pack(std::slice::from_ref(&img));
        let want = cpu_align(&packed, &align);
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs())
            .fold(0.0f32, f32::max);
        assert_eq!(got.len(), want.len());
        assert!(worst < 1e-4, "worst difference {worst}");
    }

    #[test]
    fn cpu_preprocessing_matches_the_image_path() {
        check(&Compute::cpu().device, "cpu");
    }

    #[test]
    fn wgsl_kernel_matches_the_cpu_path() {
        let compute = Compute::wgpu().expect("a wgpu adapter (Mesa's software Vulkan in CI)");
        check(&compute.device, "wgpu");
    }
}
