//! Frames: decoded RGB pictures with their capture time, and the image formats cameras and
//! uploads speak (JPEG, PNG).

use std::io::Cursor;

use chrono::{DateTime, Utc};

/// Widest or tallest picture accepted, in pixels (8K is 7680).
pub const MAX_SIDE: u32 = 8192;
/// Most pixels accepted in one picture (about 33 megapixels: 8K UHD).
pub const MAX_PIXELS: u64 = 7680 * 4320;

/// An 8-bit RGB picture, rows top to bottom, channels interleaved.
#[derive(Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// `width * height * 3` bytes.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for RgbImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RgbImage({}×{})", self.width, self.height)
    }
}

/// One sampled frame of a camera.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Its pixels.
    pub image: std::sync::Arc<RgbImage>,
    /// When it was captured (the source's timestamp when it has one, else arrival time).
    pub captured_at: DateTime<Utc>,
}

/// Why bytes are not a usable picture.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImageError {
    /// Neither JPEG nor PNG.
    #[error("not a JPEG or PNG image")]
    UnknownFormat,
    /// The format is known but the data is broken.
    #[error("corrupt {format}: {reason}")]
    Corrupt {
        /// `JPEG` or `PNG`.
        format: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// Too large.
    #[error("{width}×{height} is larger than the {MAX_SIDE}-pixel side / {MAX_PIXELS}-pixel limit")]
    TooLarge {
        /// Columns.
        width: u32,
        /// Rows.
        height: u32,
    },
    /// Empty input.
    #[error("empty image")]
    Empty,
}

/// The format of `bytes`, by magic number.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("JPEG")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("PNG")
    } else {
        None
    }
}

/// Decodes a JPEG or PNG into RGB, refusing pictures over [`MAX_SIDE`] / [`MAX_PIXELS`]
/// before allocating them.
pub fn decode(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let (format, image_format) = match sniff(bytes) {
        Some("JPEG") => ("JPEG", image::ImageFormat::Jpeg),
        Some(_) => ("PNG", image::ImageFormat::Png),
        None => return Err(ImageError::UnknownFormat),
    };
    let corrupt = |e: image::ImageError| ImageError::Corrupt {
        format,
        reason: e.to_string(),
    };
    // Decoders fill a cut-off JPEG with grey and call it fine; a whole JPEG ends with EOI.
    if format == "JPEG" {
        let end = bytes
            .iter()
            .rposition(|&b| b != 0 && !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        if !bytes[..end].ends_with(&[0xFF, 0xD9]) {
            return Err(ImageError::Corrupt {
                format,
                reason: "truncated: no end-of-image marker".into(),
            });
        }
    }
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), image_format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_PIXELS * 4 + (64 << 20));
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(corrupt)?;
    let (width, height) = image::ImageDecoder::dimensions(&decoder);
    if width == 0 || height == 0 {
        return Err(ImageError::Empty);
    }
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(ImageError::TooLarge { width, height });
    }
    let decoded = image::DynamicImage::from_decoder(decoder).map_err(|e| match e {
        image::ImageError::Limits(_) => ImageError::TooLarge { width, height },
        other => corrupt(other),
    })?;
    let rgb = decoded.into_rgb8();
    Ok(RgbImage {
        width,
        height,
        data: rgb.into_raw(),
    })
}

/// Encodes RGB as a JPEG of `quality` (1–100).
pub fn encode_jpeg(image: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(image.data.len() / 8);
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
    image::ImageEncoder::write_image(
        encoder,
        &image.data,
        image.width,
        image.height,
        image::ExtendedColorType::Rgb8,
    )
    .expect("an in-memory RGB buffer of the right size always encodes");
    out
}

impl RgbImage {
    /// The part of the picture inside a normalised box grown by `margin` (a fraction of its
    /// size) on every side, clamped to the picture; at least 1×1.
    pub fn crop_normalised(&self, x1: f32, y1: f32, x2: f32, y2: f32, margin: f32) -> RgbImage {
        let (w, h) = (self.width as f32, self.height as f32);
        let (mw, mh) = ((x2 - x1) * margin, (y2 - y1) * margin);
        let left = (((x1 - mw) * w).floor().max(0.0) as u32).min(self.width - 1);
        let top = (((y1 - mh) * h).floor().max(0.0) as u32).min(self.height - 1);
        let right = (((x2 + mw) * w).ceil() as u32).clamp(left + 1, self.width);
        let bottom = (((y2 + mh) * h).ceil() as u32).clamp(top + 1, self.height);
        let (cw, ch) = (right - left, bottom - top);
        let mut data = Vec::with_capacity((cw * ch * 3) as usize);
        for row in top..bottom {
            let start = ((row * self.width + left) * 3) as usize;
            data.extend_from_slice(&self.data[start..start + (cw * 3) as usize]);
        }
        RgbImage {
            width: cw,
            height: ch,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(width: u32, height: u32) -> RgbImage {
        let mut data = Vec::new();
        for y in 0..height {
            for x in 0..width {
                data.extend_from_slice(&[(x * 4) as u8, (y * 4) as u8, 128]);
            }
        }
        RgbImage {
            width,
            height,
            data,
        }
    }

    #[test]
    fn jpeg_round_trips_within_quantisation_error() {
        let image = gradient(48, 32);
        let jpeg = encode_jpeg(&image, 95);
        assert_eq!(sniff(&jpeg), Some("JPEG"));
        let back = decode(&jpeg).unwrap();
        assert_eq!((back.width, back.height), (48, 32));
        let worst = image
            .data
            .iter()
            .zip(&back.data)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(worst < 24, "JPEG q95 differs by {worst}");
    }

    #[test]
    fn bad_bytes_are_refused_with_the_reason() {
        assert_eq!(decode(b""), Err(ImageError::Empty));
        assert_eq!(decode(b"hello world"), Err(ImageError::UnknownFormat));
        let mut jpeg = encode_jpeg(&gradient(16, 16), 90);
        jpeg.truncate(jpeg.len() - 10);
        assert!(matches!(
            decode(&jpeg),
            Err(ImageError::Corrupt { format: "JPEG", .. })
        ));
    }

    #[test]
    fn crops_clamp_to_the_picture() {
        let image = gradient(40, 20);
        let crop = image.crop_normalised(0.5, 0.5, 1.0, 1.0, 0.0);
        assert_eq!((crop.width, crop.height), (20, 10));
        assert_eq!(
            &crop.data[..3],
            &image.data[((10 * 40 + 20) * 3) as usize..][..3]
        );
        // A margin of the box's own size on every side, cut off by the picture's edges.
        let grown = image.crop_normalised(0.75, 0.75, 1.0, 1.0, 1.0);
        assert_eq!((grown.width, grown.height), (20, 10));
    }
}
