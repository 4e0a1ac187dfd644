//! Writing a clip: the camera's own H.264 or H.265 packets into an MP4 file with FFmpeg's
//! muxer (`ffmpeg-next`), bit for bit, never decoded or encoded again.
//!
//! A finished MP4 with its index at the front (`faststart`), not a fragmented one: any player,
//! and a browser's `<video>` through range requests, seeks in it at once. The file is written
//! under a temporary name and only becomes a clip once its index is written (a crash leaves a
//! partial file that start-up removes).

use std::path::Path;

use ffmpeg_next::{Dictionary, Packet as AvPacket, Rational, codec, format};

use super::{ClipFormat, Packet};

/// The clip's time base: the 90 kHz clock of RTP video.
const TIME_BASE: Rational = Rational(1, 90_000);

/// Why a clip could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing a clip: {0}")]
pub struct ClipError(pub String);

/// Maps an FFmpeg error to a [`ClipError`] saying what was being done.
pub(crate) fn av(what: &str) -> impl Fn(ffmpeg_next::Error) -> ClipError + '_ {
    move |e| ClipError(format!("{what}: {e}"))
}

/// An MP4 file being written from a stream's packets, starting at a keyframe.
pub struct Mp4Writer {
    output: format::context::Output,
    time_base: Rational,
    /// Stream time of the first packet (the clip's zero).
    first_t: Option<f64>,
    /// Stream time of the last packet written.
    last_t: f64,
    /// Time between the last two packets (the last packet's duration).
    step: f64,
    packets: u64,
}

impl Mp4Writer {
    /// Opens `path` for a clip of `format`.
    pub fn create(path: &Path, format: &ClipFormat) -> Result<Self, ClipError> {
        ffmpeg_next::init().map_err(av("initialising FFmpeg"))?;
        // FFmpeg's notes (the muxer's "second pass" for faststart) are not Vigil's log.
        ffmpeg_next::log::set_level(ffmpeg_next::log::Level::Warning);
        let mut output = format::output_as(path, "mp4").map_err(av("opening the file"))?;
        let decoder = ffmpeg_next::decoder::find(format.codec.id())
            .ok_or_else(|| ClipError(format!("this FFmpeg does not know {}", format.codec)))?;
        let mut params = codec::Context::new_with_codec(decoder)
            .encoder()
            .video()
            .map_err(av("describing the stream"))?;
        params.set_width(format.width);
        params.set_height(format.height);
        params.set_format(ffmpeg_next::format::Pixel::YUV420P);
        params.set_time_base(TIME_BASE);
        {
            let mut stream = output
                .add_stream_with(&params)
                .map_err(av("adding the video stream"))?;
            stream.set_time_base(TIME_BASE);
        }
        let mut options = Dictionary::new();
        options.set("movflags", "+faststart");
        output
            .write_header_with(options)
            .map_err(av("writing the header"))?;
        let time_base = output
            .stream(0)
            .map_or(TIME_BASE, |stream| stream.time_base());
        Ok(Self {
            output,
            time_base,
            first_t: None,
            last_t: 0.0,
            step: 0.0,
            packets: 0,
        })
    }

    fn ticks(&self, seconds: f64) -> i64 {
        (seconds * f64::from(self.time_base.denominator()) / f64::from(self.time_base.numerator()))
            .round() as i64
    }

    /// Writes the next packet. The first must be a keyframe; a packet not later than the last
    /// one is skipped (timestamps stay monotonic).
    pub fn write(&mut self, packet: &Packet) -> Result<(), ClipError> {
        let first = match self.first_t {
            Some(first) => first,
            None => {
                if !packet.keyframe {
                    return Err(ClipError("a clip must start with a keyframe".into()));
                }
                self.first_t = Some(packet.t);
                packet.t
            }
        };
        if self.packets > 0 && packet.t <= self.last_t {
            return Ok(());
        }
        if self.packets > 0 {
            self.step = packet.t - self.last_t;
        }
        let mut out = AvPacket::copy(&packet.data);
        let pts = self.ticks(packet.t - first);
        out.set_stream(0);
        out.set_pts(Some(pts));
        out.set_dts(Some(pts));
        // The muxer times each sample by the next one's timestamp, the last by its own
        // duration: the interval before it, as a camera's frames come evenly.
        out.set_duration(self.ticks(self.step));
        if packet.keyframe {
            out.set_flags(ffmpeg_next::packet::Flags::KEY);
        }
        out.write(&mut self.output)
            .map_err(av("writing a packet"))?;
        self.last_t = packet.t;
        self.packets += 1;
        Ok(())
    }

    /// Packets written.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Seconds from the first packet to the end of the last.
    pub fn duration(&self) -> f64 {
        self.first_t
            .map_or(0.0, |first| self.last_t - first + self.step)
    }

    /// Writes the index and closes the file.
    pub fn finish(mut self) -> Result<(), ClipError> {
        if self.packets == 0 {
            return Err(ClipError("a clip without packets".into()));
        }
        self.output.write_trailer().map_err(av("writing the index"))
    }
}
