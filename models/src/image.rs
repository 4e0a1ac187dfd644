//! Images on the CPU: RGB pixels as `f32` (0–255, row-major HWC), with the pre-processing steps
//! the models expect (pad to square, TensorFlow's bilinear resize, crops, NCHW batches).

use std::path::Path;

use crate::ModelError;

/// An RGB image, `f32` values 0–255, row-major, channels interleaved.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `height * width * 3` values.
    pub data: Vec<f32>,
}

impl Image {
    /// An image from 8-bit RGB bytes.
    pub fn from_rgb8(width: usize, height: usize, rgb: &[u8]) -> Result<Self, ModelError> {
        if rgb.len() != width * height * 3 || width == 0 || height == 0 {
            return Err(ModelError::Input(format!(
                "{width}×{height} RGB needs {} bytes, got {}",
                width * height * 3,
                rgb.len()
            )));
        }
        Ok(Self {
            width,
            height,
            data: rgb.iter().map(|&v| f32::from(v)).collect(),
        })
    }

    /// Decodes a PNG (8-bit gray, RGB or RGBA; alpha dropped).
    pub fn decode_png(bytes: &[u8]) -> Result<Self, ModelError> {
        let bad = |e: &dyn std::fmt::Display| ModelError::Input(format!("not a usable PNG: {e}"));
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().map_err(|e| bad(&e))?;
        let size = reader
            .output_buffer_size()
            .ok_or_else(|| bad(&"too large"))?;
        let mut buf = vec![0; size];
        let info = reader.next_frame(&mut buf).map_err(|e| bad(&e))?;
        let (w, h) = (info.width as usize, info.height as usize);
        let channels = info.color_type.samples();
        let pixels = &buf[..info.buffer_size()];
        let rgb: Vec<u8> = match channels {
            1 => pixels.iter().flat_map(|&g| [g, g, g]).collect(),
            2 => pixels
                .chunks_exact(2)
                .flat_map(|p| [p[0], p[0], p[0]])
                .collect(),
            3 => pixels.to_vec(),
            _ => pixels
                .chunks_exact(channels)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect(),
        };
        Self::from_rgb8(w, h, &rgb)
    }

    /// Reads and decodes a PNG file.
    pub fn open_png(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::Io {
            file: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::decode_png(&bytes)
    }

    /// The value at column `x`, row `y`, channel `c`.
    pub fn at(&self, x: usize, y: usize, c: usize) -> f32 {
        self.data[(y * self.width + x) * 3 + c]
    }

    /// The rectangle at (`x`, `y`) of `w × h` pixels (must lie inside the image).
    pub fn crop(&self, x: usize, y: usize, w: usize, h: usize) -> Self {
        assert!(
            x + w <= self.width && y + h <= self.height,
            "crop inside the image"
        );
        let mut data = Vec::with_capacity(w * h * 3);
        for row in y..y + h {
            let start = (row * self.width + x) * 3;
            data.extend_from_slice(&self.data[start..start + w * 3]);
        }
        Self {
            width: w,
            height: h,
            data,
        }
    }

    /// Pads the shorter side with zeros to a square. `centered`: the padding is split, with
    /// `round(diff / 2)` after (bottom/right) and the rest before; otherwise all of it after.
    /// Returns the square and the (left, top) offset of the original in it.
    pub fn pad_to_square(&self, centered: bool) -> (Self, (usize, usize)) {
        let (side, left, top) = square_placement(self.width, self.height, centered);
        if side == self.width && side == self.height {
            return (self.clone(), (0, 0));
        }
        let mut data = vec![0.0; side * side * 3];
        for row in 0..self.height {
            let src = row * self.width * 3;
            let dst = ((row + top) * side + left) * 3;
            data[dst..dst + self.width * 3].copy_from_slice(&self.data[src..src + self.width * 3]);
        }
        (
            Self {
                width: side,
                height: side,
                data,
            },
            (left, top),
        )
    }

    /// TensorFlow's bilinear resize without corner alignment or half-pixel centres (what
    /// TF.js's `resizeBilinear` does by default): `src = dst * in / out`.
    pub fn resize_bilinear(&self, out_w: usize, out_h: usize) -> Self {
        if out_w == self.width && out_h == self.height {
            return self.clone();
        }
        let sy = self.height as f32 / out_h as f32;
        let sx = self.width as f32 / out_w as f32;
        let cols: Vec<(usize, usize, f32)> = (0..out_w)
            .map(|c| {
                let src = c as f32 * sx;
                let c0 = src.floor() as usize;
                let c1 = (src.ceil() as usize).min(self.width - 1);
                (c0, c1, src - c0 as f32)
            })
            .collect();
        let mut data = Vec::with_capacity(out_w * out_h * 3);
        for r in 0..out_h {
            let src = r as f32 * sy;
            let r0 = src.floor() as usize;
            let r1 = (src.ceil() as usize).min(self.height - 1);
            let fr = src - r0 as f32;
            for &(c0, c1, fc) in &cols {
                for ch in 0..3 {
                    let tl = self.at(c0, r0, ch);
                    let tr = self.at(c1, r0, ch);
                    let bl = self.at(c0, r1, ch);
                    let br = self.at(c1, r1, ch);
                    let top = tl + (tr - tl) * fc;
                    let bottom = bl + (br - bl) * fc;
                    data.push(top + (bottom - top) * fr);
                }
            }
        }
        Self {
            width: out_w,
            height: out_h,
            data,
        }
    }

    /// Mirrors the image left to right.
    pub fn flip_horizontal(&self) -> Self {
        let mut data = Vec::with_capacity(self.data.len());
        for y in 0..self.height {
            for x in (0..self.width).rev() {
                let i = (y * self.width + x) * 3;
                data.extend_from_slice(&self.data[i..i + 3]);
            }
        }
        Self {
            width: self.width,
            height: self.height,
            data,
        }
    }
}

/// Where a `w × h` image sits on the square [`Image::pad_to_square`] pads it to: the side and
/// the (left, top) of the image on it.
pub fn square_placement(w: usize, h: usize, centered: bool) -> (usize, usize, usize) {
    let side = w.max(h);
    let diff = side - w.min(h);
    let before = if centered { diff - diff.div_ceil(2) } else { 0 };
    if w < h {
        (side, before, 0)
    } else {
        (side, 0, before)
    }
}

/// Square images of one size as an NCHW batch, each value mapped by `normalise(channel, v)`.
pub fn nchw_batch(
    images: &[Image],
    normalise: impl Fn(usize, f32) -> f32,
) -> (Vec<f32>, [usize; 4]) {
    let (w, h) = (images[0].width, images[0].height);
    let mut out = Vec::with_capacity(images.len() * 3 * w * h);
    for image in images {
        assert_eq!((image.width, image.height), (w, h), "one size per batch");
        for c in 0..3 {
            out.extend(image.data[c..].iter().step_by(3).map(|&v| normalise(c, v)));
        }
    }
    (out, [images.len(), 3, h, w])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: usize, h: usize) -> Image {
        let data = (0..w * h * 3).map(|i| i as f32).collect();
        Image {
            width: w,
            height: h,
            data,
        }
    }

    #[test]
    fn centered_padding_puts_the_odd_pixel_after() {
        let (sq, (left, top)) = ramp(2, 5).pad_to_square(true);
        assert_eq!((sq.width, sq.height, left, top), (5, 5, 1, 0));
        assert_eq!(sq.at(0, 0, 0), 0.0);
        assert_eq!(sq.at(1, 0, 0), 0.0 + 0.0); // first source pixel is 0
        assert_eq!(sq.at(2, 0, 0), 3.0);
        assert_eq!(sq.at(3, 0, 0), 0.0);
        let (sq, offset) = ramp(4, 2).pad_to_square(false);
        assert_eq!((sq.width, offset), (4, (0, 0)));
        assert_eq!(sq.at(3, 3, 2), 0.0);
    }

    #[test]
    fn legacy_bilinear_samples_without_half_pixel_offset() {
        let img = ramp(4, 4);
        let half = img.resize_bilinear(2, 2);
        // src = dst * 2: exact source pixels, no averaging.
        assert_eq!(half.at(1, 1, 0), img.at(2, 2, 0));
        let up = img.resize_bilinear(8, 8);
        // dst 1 → src 0.5: the mean of pixels 0 and 1 along x.
        assert_eq!(up.at(1, 0, 0), (img.at(0, 0, 0) + img.at(1, 0, 0)) / 2.0);
        // The last column clamps to the edge.
        assert_eq!(up.at(7, 0, 0), img.at(3, 0, 0));
    }

    #[test]
    fn batches_are_channel_planar() {
        let (data, shape) = nchw_batch(&[ramp(2, 1)], |c, v| v + c as f32 * 1000.0);
        assert_eq!(shape, [1, 3, 1, 2]);
        assert_eq!(data, vec![0.0, 3.0, 1001.0, 1004.0, 2002.0, 2005.0]);
    }
}
