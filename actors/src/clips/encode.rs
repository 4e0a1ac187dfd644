//! Clips of cameras without a compressed stream (MJPEG, snapshots, video files, pushed
//! frames): their sampled frames encoded to H.264 with libx264 (through `ffmpeg-next`) as they
//! are handled, so the same pre-roll and MP4 writer serve them. The clip plays at the camera's
//! sample rate.

use chrono::{DateTime, Utc};
use ffmpeg_next::{Dictionary, Rational, codec, format::Pixel, frame, software::scaling};

use super::mp4::av;
use super::{ClipCodec, ClipError, ClipFormat, Packet};
use crate::frame::Frame;

/// Milliseconds: the encoder's clock.
const TIME_BASE: Rational = Rational(1, 1000);

/// Encodes one camera's frames, all of one size, to H.264 access units (Annex B, parameter
/// sets before every keyframe), one per frame with no delay.
pub struct PictureEncoder {
    encoder: ffmpeg_next::encoder::video::Encoder,
    scaler: scaling::Context,
    rgb: frame::Video,
    yuv: frame::Video,
    /// The frames' size.
    source: (u32, u32),
    format: ClipFormat,
    first: Option<DateTime<Utc>>,
    last_pts: Option<i64>,
}

impl PictureEncoder {
    /// An encoder for `width × height` frames with a keyframe every `gop` frames.
    pub fn new(width: u32, height: u32, gop: u32) -> Result<Self, ClipError> {
        ffmpeg_next::init().map_err(av("initialising FFmpeg"))?;
        // 4:2:0 needs even sizes: an odd last row or column is left out.
        let (w, h) = (width & !1, height & !1);
        if w == 0 || h == 0 {
            return Err(ClipError(format!(
                "a {width}x{height} frame cannot be encoded"
            )));
        }
        let x264 = ffmpeg_next::encoder::find_by_name("libx264")
            .ok_or_else(|| ClipError("this FFmpeg has no libx264 encoder".into()))?;
        let mut video = codec::Context::new_with_codec(x264)
            .encoder()
            .video()
            .map_err(av("preparing the encoder"))?;
        video.set_width(w);
        video.set_height(h);
        video.set_format(Pixel::YUV420P);
        video.set_time_base(TIME_BASE);
        video.set_gop(gop.max(1));
        video.set_max_b_frames(0);
        let mut options = Dictionary::new();
        // Every sampled frame of every such camera goes through here, clip or not (the
        // pre-roll), so the encoder is the cheapest x264 has: on 768×576 frames `ultrafast`
        // took about a quarter of `veryfast`'s time (1.1 against 4.2 ms a frame on one core) for
        // files about 1.4 times larger.
        options.set("preset", "ultrafast");
        options.set("tune", "zerolatency");
        let encoder = video.open_with(options).map_err(av("opening libx264"))?;
        let scaler = scaling::Context::get(
            Pixel::RGB24,
            w,
            h,
            Pixel::YUV420P,
            w,
            h,
            scaling::Flags::BILINEAR,
        )
        .map_err(av("preparing the colour conversion"))?;
        Ok(Self {
            encoder,
            scaler,
            rgb: frame::Video::new(Pixel::RGB24, w, h),
            yuv: frame::Video::new(Pixel::YUV420P, w, h),
            source: (width, height),
            format: ClipFormat {
                codec: ClipCodec::H264,
                width: w,
                height: h,
            },
            first: None,
            last_pts: None,
        })
    }

    /// What it writes.
    pub fn format(&self) -> ClipFormat {
        self.format
    }

    /// The size of frames it takes.
    pub fn source_size(&self) -> (u32, u32) {
        self.source
    }

    /// Encodes `frame` (of [`Self::source_size`]); returns its access units. A frame not
    /// later than the previous one is skipped.
    pub fn encode(&mut self, frame: &Frame) -> Result<Vec<Packet>, ClipError> {
        let first = *self.first.get_or_insert(frame.captured_at);
        let pts = (frame.captured_at - first).num_milliseconds();
        if self.last_pts.is_some_and(|last| pts <= last) {
            return Ok(Vec::new());
        }
        self.last_pts = Some(pts);
        let image = &frame.image;
        let (w, h) = (self.format.width as usize, self.format.height as usize);
        let stride = self.rgb.stride(0);
        let plane = self.rgb.data_mut(0);
        for y in 0..h {
            let row = &image.data[y * image.width as usize * 3..][..w * 3];
            plane[y * stride..][..w * 3].copy_from_slice(row);
        }
        self.scaler
            .run(&self.rgb, &mut self.yuv)
            .map_err(av("converting a frame"))?;
        self.yuv.set_pts(Some(pts));
        self.encoder
            .send_frame(&self.yuv)
            .map_err(av("encoding a frame"))?;
        let mut packets = Vec::new();
        let mut encoded = ffmpeg_next::Packet::empty();
        while self.encoder.receive_packet(&mut encoded).is_ok() {
            let Some(data) = encoded.data() else { continue };
            let ms = encoded.pts().unwrap_or(pts);
            packets.push(Packet {
                data: data.into(),
                t: ms as f64 / 1e3,
                at: first + chrono::Duration::milliseconds(ms),
                keyframe: encoded.is_key(),
            });
        }
        Ok(packets)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clips::Mp4Writer;
    use crate::frame::RgbImage;

    fn frame(i: i64) -> Frame {
        // An odd size, with a picture that moves.
        let (w, h) = (161u32, 121u32);
        let data = (0..w * h)
            .flat_map(|p| {
                let x = (p % w) as i64;
                [((x + i * 8) % 256) as u8, (p / w) as u8, 128]
            })
            .collect();
        Frame {
            image: Arc::new(RgbImage {
                width: w,
                height: h,
                data,
            }),
            captured_at: DateTime::UNIX_EPOCH + chrono::Duration::milliseconds(500 * i),
        }
    }

    #[test]
    fn sampled_frames_become_a_playable_h264_clip_one_packet_each() {
        let mut encoder = PictureEncoder::new(161, 121, 4).unwrap();
        assert_eq!(encoder.format().width, 160);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.mp4");
        let mut writer = Mp4Writer::create(&path, &encoder.format()).unwrap();
        let mut keyframes = 0;
        for i in 0..10 {
            let packets = encoder.encode(&frame(i)).unwrap();
            assert_eq!(packets.len(), 1, "no delay: frame {i}");
            keyframes += usize::from(packets[0].keyframe);
            assert_eq!(packets[0].at, frame(i).captured_at);
            writer.write(&packets[0]).unwrap();
        }
        // The same moment again is skipped.
        assert!(encoder.encode(&frame(9)).unwrap().is_empty());
        assert_eq!(keyframes, 3, "frames 0, 4 and 8");
        writer.finish().unwrap();
        let out = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
            .args([
                "-show_entries",
                "stream=codec_name,width,height,nb_read_frames",
            ])
            .args(["-of", "csv=p=0"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim(),
            "h264,160,120,10"
        );
    }
}
