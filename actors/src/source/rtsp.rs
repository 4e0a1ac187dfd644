//! RTSP cameras: `retina` over TCP (interleaved) receives H.264 or H.265 access units in
//! Annex B form with parameter sets before every keyframe; a decoder thread runs FFmpeg
//! (`ffmpeg-next` against the system's libavcodec) on every frame and converts only sampled
//! frames to RGB. After packet loss or a decoder error, frames are dropped until the next
//! keyframe, so damaged pictures never reach the models.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use retina::client::{SessionOptions, SetupOptions, TcpTransportOptions, Transport};
use retina::codec::{CodecItem, FrameFormat, ParametersRef};
use tokio::sync::mpsc;

use super::convert::RgbConverter;
use super::{CameraCounters, FrameSource, STALL_TIMEOUT, Sampler, SourceError, SourceFrame};
use crate::clips::{ClipCodec, ClipFormat, ClipSink, Packet};
use crate::frame::Frame;

/// Access units that may wait for the decoder before the newest are dropped.
const PACKET_QUEUE: usize = 120;

struct AccessUnit {
    data: Vec<u8>,
    /// Seconds since the stream's first timestamp.
    t: f64,
    keyframe: bool,
    /// Packets lost before this one.
    loss: u16,
}

/// What the receiving task learned from `DESCRIBE`.
struct Described {
    codec: ffmpeg_next::codec::Id,
    clip: ClipCodec,
    name: &'static str,
}

/// An RTSP camera.
pub struct RtspSource {
    url: url::Url,
    creds: Option<retina::client::Credentials>,
    sample_fps: f64,
    counters: Arc<CameraCounters>,
    frames: Option<mpsc::Receiver<Result<Frame, SourceError>>>,
    receiver: Option<tokio::task::JoinHandle<()>>,
    described: Arc<std::sync::Mutex<String>>,
    /// Where packets go for clips, when the camera records them.
    clips: Option<ClipSink>,
}

impl Drop for RtspSource {
    fn drop(&mut self) {
        if let Some(task) = self.receiver.take() {
            task.abort();
        }
    }
}

impl RtspSource {
    /// A source for `url` (credentials in the URL are used for RTSP auth), sampled at
    /// `sample_fps`. Nothing connects until the first frame is asked for.
    pub fn new(
        url: &str,
        sample_fps: f64,
        counters: Arc<CameraCounters>,
    ) -> Result<Self, SourceError> {
        let (url, creds) = super::split_credentials(url)?;
        let creds =
            creds.map(|(username, password)| retina::client::Credentials { username, password });
        Ok(Self {
            url,
            creds,
            sample_fps,
            counters,
            frames: None,
            receiver: None,
            described: Arc::new(std::sync::Mutex::new("rtsp".into())),
            clips: None,
        })
    }

    /// Connects: DESCRIBE, SETUP of the first video stream over TCP, PLAY; then starts the
    /// receiving task and the decoder thread.
    async fn open(&mut self) -> Result<(), SourceError> {
        let options = SessionOptions::default()
            .creds(self.creds.clone())
            .user_agent("vigil".into());
        let mut session = tokio::time::timeout(
            STALL_TIMEOUT,
            retina::client::Session::describe(self.url.clone(), options),
        )
        .await
        .map_err(|_| SourceError::Timeout(STALL_TIMEOUT))?
        .map_err(|e| SourceError::Connect(e.to_string()))?;
        let (index, described) = session
            .streams()
            .iter()
            .enumerate()
            .find_map(|(i, s)| {
                if s.media() != "video" {
                    return None;
                }
                match s.encoding_name() {
                    "h264" => Some((
                        i,
                        Ok(Described {
                            codec: ffmpeg_next::codec::Id::H264,
                            clip: ClipCodec::H264,
                            name: "h264",
                        }),
                    )),
                    "h265" => Some((
                        i,
                        Ok(Described {
                            codec: ffmpeg_next::codec::Id::HEVC,
                            clip: ClipCodec::H265,
                            name: "h265",
                        }),
                    )),
                    other => Some((i, Err(other.to_string()))),
                }
            })
            .ok_or_else(|| SourceError::Unsupported("the stream has no video".into()))?;
        let described = described.map_err(|codec| {
            SourceError::Unsupported(format!(
                "video codec `{codec}` (H.264 and H.265 are supported)"
            ))
        })?;
        session
            .setup(
                index,
                SetupOptions::default()
                    .transport(Transport::Tcp(TcpTransportOptions::default()))
                    .frame_format(FrameFormat::SIMPLE),
            )
            .await
            .map_err(|e| SourceError::Protocol(e.to_string()))?;
        let playing = session
            .play(retina::client::PlayOptions::default())
            .await
            .map_err(|e| SourceError::Protocol(e.to_string()))?;
        let mut demuxed = playing
            .demuxed()
            .map_err(|e| SourceError::Protocol(e.to_string()))?;
        let started_at = Utc::now();
        *self.described.lock().expect("describe lock") = format!("rtsp {}", described.name);

        let described_clip = described.clip;
        let (units_tx, units_rx) = crossbeam_channel::bounded::<AccessUnit>(PACKET_QUEUE);
        let (frames_tx, frames_rx) = mpsc::channel(2);
        let decoder_frames = frames_tx.clone();
        let counters = self.counters.clone();
        let label = self.described.clone();
        let fps = self.sample_fps;
        std::thread::Builder::new()
            .name("vigil-decode".into())
            .spawn(move || {
                decode_loop(
                    described,
                    units_rx,
                    decoder_frames,
                    counters,
                    fps,
                    started_at,
                    label,
                )
            })
            .map_err(|e| SourceError::Decode(format!("cannot start a decoder thread: {e}")))?;

        let counters = self.counters.clone();
        let (clips, clip_codec) = (self.clips.clone(), described_clip);
        self.receiver = Some(tokio::spawn(async move {
            let mut overflow = false;
            let mut format: Option<ClipFormat> = None;
            let error = loop {
                let item = match tokio::time::timeout(STALL_TIMEOUT, demuxed.next()).await {
                    Err(_) => break SourceError::Timeout(STALL_TIMEOUT),
                    Ok(None) => break SourceError::Ended,
                    Ok(Some(Err(e))) => break SourceError::Connect(e.to_string()),
                    Ok(Some(Ok(item))) => item,
                };
                let CodecItem::VideoFrame(frame) = item else {
                    continue;
                };
                if let Some(sink) = &clips {
                    if (frame.has_new_parameters() || format.is_none())
                        && let Some(ParametersRef::Video(v)) = demuxed.streams()[index].parameters()
                    {
                        let (width, height) = v.pixel_dimensions();
                        let now = ClipFormat {
                            codec: clip_codec,
                            width,
                            height,
                        };
                        sink.format(now);
                        format = Some(now);
                    }
                    if frame.loss() > 0 {
                        sink.interrupted();
                    }
                    let t = frame.timestamp().elapsed_secs();
                    sink.packet(Packet {
                        data: Arc::from(frame.data()),
                        t,
                        at: started_at + chrono::Duration::microseconds((t * 1e6) as i64),
                        keyframe: frame.is_random_access_point(),
                    });
                }
                let unit = AccessUnit {
                    t: frame.timestamp().elapsed_secs(),
                    keyframe: frame.is_random_access_point(),
                    loss: frame.loss() + u16::from(overflow),
                    data: frame.into_data(),
                };
                match units_tx.try_send(unit) {
                    Ok(()) => overflow = false,
                    Err(crossbeam_channel::TrySendError::Full(_)) => {
                        // The decoder is behind: this unit is lost, and the decoder must
                        // wait for a keyframe.
                        counters.damaged.fetch_add(1, Ordering::Relaxed);
                        overflow = true;
                    }
                    Err(crossbeam_channel::TrySendError::Disconnected(_)) => return,
                }
            };
            let _ = frames_tx.send(Err(error)).await;
        }));
        self.frames = Some(frames_rx);
        Ok(())
    }
}

/// The decoder thread: decodes every access unit, converts sampled frames to RGB.
fn decode_loop(
    described: Described,
    units: crossbeam_channel::Receiver<AccessUnit>,
    frames: mpsc::Sender<Result<Frame, SourceError>>,
    counters: Arc<CameraCounters>,
    sample_fps: f64,
    started_at: DateTime<Utc>,
    label: Arc<std::sync::Mutex<String>>,
) {
    let fail = |e: SourceError| {
        let _ = frames.blocking_send(Err(e));
    };
    if let Err(e) = ffmpeg_next::init() {
        return fail(SourceError::Decode(format!(
            "FFmpeg failed to initialise: {e}"
        )));
    }
    let Some(codec) = ffmpeg_next::decoder::find(described.codec) else {
        return fail(SourceError::Unsupported(format!(
            "this FFmpeg has no {} decoder",
            described.name
        )));
    };
    let mut decoder = match ffmpeg_next::codec::Context::new_with_codec(codec)
        .decoder()
        .video()
    {
        Ok(d) => d,
        Err(e) => {
            return fail(SourceError::Decode(format!(
                "opening the {} decoder: {e}",
                described.name
            )));
        }
    };
    let mut sampler = Sampler::new(sample_fps);
    let mut rgb = RgbConverter::default();
    let mut need_keyframe = true;
    let mut decoded = ffmpeg_next::frame::Video::empty();
    // Timestamps travel through the decoder as microseconds in pts.
    while let Ok(unit) = units.recv() {
        if unit.loss > 0 {
            counters
                .damaged
                .fetch_add(u64::from(unit.loss), Ordering::Relaxed);
            need_keyframe = true;
        }
        if need_keyframe {
            if !unit.keyframe {
                counters.damaged.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            need_keyframe = false;
        }
        let mut packet = ffmpeg_next::Packet::copy(&unit.data);
        packet.set_pts(Some((unit.t * 1e6) as i64));
        if let Err(e) = decoder.send_packet(&packet) {
            tracing::debug!(error = %e, "decoder refused a packet; waiting for a keyframe");
            counters.damaged.fetch_add(1, Ordering::Relaxed);
            need_keyframe = true;
            decoder.flush();
            continue;
        }
        while decoder.receive_frame(&mut decoded).is_ok() {
            counters.frames_in.fetch_add(1, Ordering::Relaxed);
            let t = decoded.pts().map_or(unit.t, |us| us as f64 / 1e6);
            if !sampler.keep(t) {
                continue;
            }
            counters.sampled.fetch_add(1, Ordering::Relaxed);
            if rgb.is_new_geometry(&decoded) {
                *label.lock().expect("describe lock") = format!(
                    "rtsp {} {}x{}",
                    described.name,
                    decoded.width(),
                    decoded.height()
                );
            }
            let image = match rgb.convert(&decoded) {
                Ok(image) => image,
                Err(e) => return fail(e),
            };
            let frame = Frame {
                image: Arc::new(image),
                captured_at: started_at + chrono::Duration::microseconds((t * 1e6) as i64),
            };
            if frames.blocking_send(Ok(frame)).is_err() {
                return;
            }
        }
    }
}

#[async_trait::async_trait]
impl FrameSource for RtspSource {
    async fn next_frame(&mut self) -> Result<SourceFrame, SourceError> {
        if self.frames.is_none() {
            self.open().await?;
        }
        let frames = self.frames.as_mut().expect("opened above");
        match frames.recv().await {
            Some(Ok(frame)) => Ok(SourceFrame::new(frame)),
            Some(Err(e)) => Err(e),
            None => Err(SourceError::Ended),
        }
    }

    fn describe(&self) -> String {
        self.described.lock().expect("describe lock").clone()
    }

    fn record_into(&mut self, sink: ClipSink) -> bool {
        self.clips = Some(sink);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` frames of H.264 split into access units, 10 per second.
    fn h264_units(n: usize, gop: usize) -> Vec<AccessUnit> {
        crate::clips::testing::h264(n, gop)
            .into_iter()
            .enumerate()
            .map(|(k, (data, keyframe))| AccessUnit {
                data,
                t: k as f64 / 10.0,
                keyframe,
                loss: 0,
            })
            .collect()
    }

    fn decode_all(units: Vec<AccessUnit>) -> (usize, Arc<CameraCounters>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (frames_tx, mut frames_rx) = mpsc::channel(64);
        let counters = Arc::new(CameraCounters::default());
        let described = Described {
            codec: ffmpeg_next::codec::Id::H264,
            clip: ClipCodec::H264,
            name: "h264",
        };
        let c = counters.clone();
        let worker = std::thread::spawn(move || {
            decode_loop(
                described,
                rx,
                frames_tx,
                c,
                1000.0,
                Utc::now(),
                Arc::new(std::sync::Mutex::new(String::new())),
            )
        });
        for unit in units {
            tx.send(unit).unwrap();
        }
        drop(tx);
        let mut frames = 0;
        while let Some(frame) = frames_rx.blocking_recv() {
            let frame = frame.expect("clean frames decode");
            assert_eq!((frame.image.width, frame.image.height), (160, 120));
            frames += 1;
        }
        worker.join().unwrap();
        (frames, counters)
    }

    #[test]
    fn every_frame_of_a_clean_stream_decodes() {
        let units = h264_units(10, 5);
        assert_eq!(units.len(), 10);
        assert_eq!(units.iter().filter(|u| u.keyframe).count(), 2);
        let (frames, counters) = decode_all(units);
        assert_eq!(frames, 10);
        assert_eq!(counters.damaged.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn after_packet_loss_frames_are_dropped_until_the_next_keyframe() {
        let mut units = h264_units(10, 5);
        // Packets were lost before frame 2: frames 2, 3 and 4 would show the damage; frame 5 is
        // the next IDR.
        units[2].loss = 1;
        let (frames, counters) = decode_all(units);
        assert_eq!(frames, 7, "frames 0, 1 and 5 to 9");
        // The lost packet and the two frames skipped after it.
        assert_eq!(counters.damaged.load(Ordering::Relaxed), 1 + 3);
    }
}
