//! FFmpeg's decoded pictures to [`RgbImage`]: one scaler per picture geometry, kept while the
//! width, height and pixel format stay the same (the RTSP and file sources convert only the
//! frames they keep).

use ffmpeg_next::format::Pixel;
use ffmpeg_next::software::scaling;

use super::SourceError;
use crate::frame::RgbImage;

/// Converts decoded pictures to packed RGB.
#[derive(Default)]
pub struct RgbConverter {
    scaler: Option<(scaling::Context, (u32, u32, Pixel))>,
}

impl RgbConverter {
    /// Whether the next [`convert`](Self::convert) of `picture` needs a new scaler: the first
    /// picture, or a new size or pixel format (sources relabel themselves then).
    pub fn is_new_geometry(&self, picture: &ffmpeg_next::frame::Video) -> bool {
        self.scaler.as_ref().map(|(_, key)| *key)
            != Some((picture.width(), picture.height(), picture.format()))
    }

    /// `picture` as packed RGB rows.
    pub fn convert(
        &mut self,
        picture: &ffmpeg_next::frame::Video,
    ) -> Result<RgbImage, SourceError> {
        let (w, h, format) = (picture.width(), picture.height(), picture.format());
        if self.is_new_geometry(picture) {
            let ctx = scaling::Context::get(
                format,
                w,
                h,
                Pixel::RGB24,
                w,
                h,
                scaling::Flags::BILINEAR,
            )
            .map_err(|e| SourceError::Decode(format!("no {format:?} → RGB conversion: {e}")))?;
            self.scaler = Some((ctx, (w, h, format)));
        }
        let (ctx, _) = self.scaler.as_mut().expect("set above");
        let mut rgb = ffmpeg_next::frame::Video::empty();
        ctx.run(picture, &mut rgb)
            .map_err(|e| SourceError::Decode(format!("RGB conversion: {e}")))?;
        let stride = rgb.stride(0);
        let plane = rgb.data(0);
        let row = w as usize * 3;
        let mut data = Vec::with_capacity(row * h as usize);
        for y in 0..h as usize {
            data.extend_from_slice(&plane[y * stride..y * stride + row]);
        }
        Ok(RgbImage {
            width: w,
            height: h,
            data,
        })
    }
}
