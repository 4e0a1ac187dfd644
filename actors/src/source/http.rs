//! HTTP cameras: MJPEG (`multipart/x-mixed-replace`, one JPEG per part) and snapshot polling
//! (a URL that answers one JPEG or PNG per request). Which one is decided by what the URL
//! answers. Basic auth comes from the URL (`http://user:pass@host/…`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use chrono::Utc;
use futures::StreamExt;
use futures::stream::BoxStream;

use super::{CameraCounters, FrameSource, STALL_TIMEOUT, Sampler, SourceError, SourceFrame};
use crate::frame::{self, Frame};

/// Consecutive undecodable pictures after which the source gives up.
const MAX_BAD_FRAMES: u32 = 10;
/// Largest MJPEG part accepted.
const MAX_PART_BYTES: usize = 32 << 20;

enum Mode {
    Unopened,
    Mjpeg {
        body: BoxStream<'static, reqwest::Result<Bytes>>,
        buf: BytesMut,
        boundary: Vec<u8>,
    },
    Snapshot {
        next_due: Instant,
        first: Option<Bytes>,
    },
}

/// An MJPEG stream or snapshot URL.
pub struct HttpSource {
    url: url::Url,
    auth: Option<(String, String)>,
    client: reqwest::Client,
    interval: Duration,
    sampler: Sampler,
    counters: Arc<CameraCounters>,
    mode: Mode,
    bad_frames: u32,
    described: String,
}

impl HttpSource {
    /// A source for `url`, sampled at `sample_fps`. Nothing connects until the first frame is
    /// asked for.
    pub fn new(
        url: &str,
        sample_fps: f64,
        counters: Arc<CameraCounters>,
    ) -> Result<Self, SourceError> {
        let (url, auth) = super::split_credentials(url)?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| SourceError::Connect(e.to_string()))?;
        Ok(Self {
            url,
            auth,
            client,
            interval: Duration::from_secs_f64(1.0 / sample_fps.max(0.01)),
            sampler: Sampler::new(sample_fps),
            counters,
            mode: Mode::Unopened,
            bad_frames: 0,
            described: "http".into(),
        })
    }

    fn request(&self) -> reqwest::RequestBuilder {
        let request = self.client.get(self.url.clone());
        match &self.auth {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    async fn open(&mut self) -> Result<(), SourceError> {
        let response = get(self.request()).await?;
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if content_type.starts_with("multipart/x-mixed-replace") {
            let boundary = content_type
                .split(';')
                .filter_map(|p| p.trim().strip_prefix("boundary="))
                .next()
                .map(|b| b.trim_matches('"').trim_start_matches("--").to_string())
                .ok_or_else(|| {
                    SourceError::Protocol("multipart stream without a boundary".into())
                })?;
            self.described = "mjpeg".into();
            self.mode = Mode::Mjpeg {
                body: response.bytes_stream().boxed(),
                buf: BytesMut::new(),
                boundary: format!("--{boundary}").into_bytes(),
            };
        } else if content_type.starts_with("image/") {
            let body = read_body(response).await?;
            self.described = "snapshot".into();
            self.mode = Mode::Snapshot {
                next_due: Instant::now(),
                first: Some(body),
            };
        } else {
            return Err(SourceError::Protocol(format!(
                "expected an MJPEG stream or an image, got content type `{content_type}`"
            )));
        }
        Ok(())
    }

    /// Decodes a kept picture off the executor; undecodable pictures are counted and skipped
    /// until too many come in a row.
    async fn decode(&mut self, bytes: Bytes) -> Result<Option<Frame>, SourceError> {
        let captured_at = Utc::now();
        let decoded = tokio::task::spawn_blocking(move || frame::decode(&bytes))
            .await
            .map_err(|e| SourceError::Decode(e.to_string()))?;
        match decoded {
            Ok(image) => {
                self.bad_frames = 0;
                self.described = format!("{} {}x{}", self.kind(), image.width, image.height);
                Ok(Some(Frame {
                    image: Arc::new(image),
                    captured_at,
                }))
            }
            Err(e) => {
                self.bad_frames += 1;
                self.counters.damaged.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(url = %self.url, error = %e, "undecodable picture skipped");
                if self.bad_frames >= MAX_BAD_FRAMES {
                    Err(SourceError::Decode(format!(
                        "{MAX_BAD_FRAMES} pictures in a row: {e}"
                    )))
                } else {
                    Ok(None)
                }
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self.mode {
            Mode::Mjpeg { .. } => "mjpeg",
            _ => "snapshot",
        }
    }
}

/// Sends a GET and checks its status (a free function: the source holds a body stream that
/// is not `Sync`, so no borrow of it may live across an await).
async fn get(request: reqwest::RequestBuilder) -> Result<reqwest::Response, SourceError> {
    let response = tokio::time::timeout(STALL_TIMEOUT, request.send())
        .await
        .map_err(|_| SourceError::Timeout(STALL_TIMEOUT))?
        .map_err(|e| SourceError::Connect(error_chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(SourceError::Protocol(format!("HTTP {status}")));
    }
    Ok(response)
}

async fn read_body(response: reqwest::Response) -> Result<Bytes, SourceError> {
    tokio::time::timeout(STALL_TIMEOUT, response.bytes())
        .await
        .map_err(|_| SourceError::Timeout(STALL_TIMEOUT))?
        .map_err(|e| SourceError::Connect(error_chain(&e)))
}

/// An error with its causes (`error sending request: … : Connection refused`).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The next complete part of a multipart buffer: its body, or `None` when more bytes are
/// needed. Parts are `--boundary CRLF headers CRLF CRLF body`, with the body's length from
/// `Content-Length` when present, else up to the next boundary.
fn next_part(buf: &mut BytesMut, boundary: &[u8]) -> Result<Option<Bytes>, SourceError> {
    let Some(start) = find(buf, boundary) else {
        // Keep only what could be the start of a boundary.
        let keep = boundary.len().min(buf.len());
        let drop = buf.len() - keep;
        buf.advance(drop);
        return Ok(None);
    };
    let Some(header_end) = find(&buf[start..], b"\r\n\r\n").map(|i| start + i + 4) else {
        if buf.len() - start > 16 * 1024 {
            return Err(SourceError::Protocol(
                "multipart headers longer than 16 KiB".into(),
            ));
        }
        return Ok(None);
    };
    let headers =
        String::from_utf8_lossy(&buf[start + boundary.len()..header_end]).to_ascii_lowercase();
    let length = headers
        .lines()
        .filter_map(|l| l.strip_prefix("content-length:"))
        .next()
        .map(|v| v.trim().parse::<usize>())
        .transpose()
        .map_err(|_| SourceError::Protocol("bad Content-Length in a multipart part".into()))?;
    let body_end = match length {
        Some(n) if n > MAX_PART_BYTES => {
            return Err(SourceError::Protocol(format!(
                "a {n}-byte part is over the limit"
            )));
        }
        Some(n) if buf.len() >= header_end + n => header_end + n,
        Some(_) => return Ok(None),
        None => match find(&buf[header_end..], boundary) {
            Some(i) => header_end + i,
            None if buf.len() - header_end > MAX_PART_BYTES => {
                return Err(SourceError::Protocol("a part over the size limit".into()));
            }
            None => return Ok(None),
        },
    };
    buf.advance(header_end);
    let body = buf.split_to(body_end - header_end).freeze();
    Ok(Some(body))
}

#[async_trait::async_trait]
impl FrameSource for HttpSource {
    async fn next_frame(&mut self) -> Result<SourceFrame, SourceError> {
        if matches!(self.mode, Mode::Unopened) {
            self.open().await?;
        }
        loop {
            let picture = match &mut self.mode {
                Mode::Unopened => unreachable!("opened above"),
                Mode::Mjpeg {
                    body,
                    buf,
                    boundary,
                } => {
                    let part = loop {
                        if let Some(part) = next_part(buf, boundary)? {
                            break part;
                        }
                        let chunk = tokio::time::timeout(STALL_TIMEOUT, body.next())
                            .await
                            .map_err(|_| SourceError::Timeout(STALL_TIMEOUT))?
                            .ok_or(SourceError::Ended)?
                            .map_err(|e| SourceError::Connect(error_chain(&e)))?;
                        buf.extend_from_slice(&chunk);
                    };
                    self.counters.frames_in.fetch_add(1, Ordering::Relaxed);
                    let t = Utc::now().timestamp_micros() as f64 / 1e6;
                    if !self.sampler.keep(t) {
                        continue;
                    }
                    part
                }
                Mode::Snapshot { next_due, first } => {
                    let picture = match first.take() {
                        Some(body) => body,
                        None => {
                            tokio::time::sleep_until((*next_due).into()).await;
                            let response = get(self.request()).await?;
                            read_body(response).await?
                        }
                    };
                    if let Mode::Snapshot { next_due, .. } = &mut self.mode {
                        *next_due = Instant::now() + self.interval;
                    }
                    self.counters.frames_in.fetch_add(1, Ordering::Relaxed);
                    picture
                }
            };
            self.counters.sampled.fetch_add(1, Ordering::Relaxed);
            if let Some(frame) = self.decode(picture).await? {
                return Ok(SourceFrame::new(frame));
            }
        }
    }

    fn describe(&self) -> String {
        self.described.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_parts_come_out_whole_with_or_without_lengths() {
        let mut buf = BytesMut::from(
            &b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 4\r\n\r\nABCD\r\n--frame\r\nContent-Type: image/jpeg\r\n\r\nEFGH\r\n--fr"[..],
        );
        let b = b"--frame";
        assert_eq!(
            next_part(&mut buf, b).unwrap().unwrap(),
            Bytes::from_static(b"ABCD")
        );
        // The second part has no length: it ends at the next boundary, not yet complete.
        assert_eq!(next_part(&mut buf, b).unwrap(), None);
        buf.extend_from_slice(b"ame\r\n");
        assert_eq!(
            next_part(&mut buf, b).unwrap().unwrap(),
            Bytes::from_static(b"EFGH\r\n")
        );
    }

    #[test]
    fn a_part_split_across_reads_waits_for_the_rest() {
        let mut buf = BytesMut::from(&b"--x\r\nContent-Length: 6\r\n\r\nabc"[..]);
        assert_eq!(next_part(&mut buf, b"--x").unwrap(), None);
        buf.extend_from_slice(b"def");
        assert_eq!(
            next_part(&mut buf, b"--x").unwrap().unwrap(),
            Bytes::from_static(b"abcdef")
        );
    }

    #[test]
    fn credentials_leave_the_url_for_the_auth_header() {
        let source = HttpSource::new(
            "http://op%40site:s%3Acret@127.0.0.1:9/stream.mjpg",
            2.0,
            Arc::default(),
        )
        .unwrap();
        assert_eq!(source.url.as_str(), "http://127.0.0.1:9/stream.mjpg");
        assert_eq!(source.auth, Some(("op@site".into(), "s:cret".into())));
    }
}
