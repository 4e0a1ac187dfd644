//! Push: frames uploaded through the API (`POST /api/v1/cameras/{id}/frames`,
//! `POST /api/v1/analyze` with a camera id) for cameras whose source is `push`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::{CameraCounters, FrameOutcome, FrameSource, Sampler, SourceError, SourceFrame};
use crate::frame::Frame;

/// Frames that may wait for a push camera's actor before uploads are refused.
const QUEUE: usize = 8;

/// Why a pushed frame was not taken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PushError {
    /// The camera has no running push actor (not a push camera, stopped, or restarting).
    #[error(
        "camera `{0}` is not ingesting pushed frames (stopped, restarting, or not a push camera)"
    )]
    NotRunning(String),
    /// Its actor is behind by a full queue.
    #[error("camera `{0}` has {QUEUE} frames waiting; retry later")]
    Busy(String),
}

type Pushed = (Frame, oneshot::Sender<FrameOutcome>);

/// The push cameras running on this node and where their frames go.
#[derive(Debug, Default)]
pub struct PushRegistry {
    senders: Mutex<HashMap<String, mpsc::Sender<Pushed>>>,
}

impl PushRegistry {
    /// Opens the source of push camera `camera_id`, replacing any earlier one.
    pub fn open(
        &self,
        camera_id: &str,
        sample_fps: f64,
        counters: Arc<CameraCounters>,
    ) -> PushSource {
        let (tx, rx) = mpsc::channel(QUEUE);
        self.senders
            .lock()
            .expect("push registry lock poisoned")
            .insert(camera_id.to_string(), tx);
        PushSource {
            rx,
            sampler: Sampler::new(sample_fps),
            counters,
        }
    }

    /// Hands a frame to camera `camera_id`'s actor; the receiver answers once it is processed.
    pub fn push(
        &self,
        camera_id: &str,
        frame: Frame,
    ) -> Result<oneshot::Receiver<FrameOutcome>, PushError> {
        let sender = self
            .senders
            .lock()
            .expect("push registry lock poisoned")
            .get(camera_id)
            .cloned()
            .ok_or_else(|| PushError::NotRunning(camera_id.to_string()))?;
        let (reply, rx) = oneshot::channel();
        match sender.try_send((frame, reply)) {
            Ok(()) => Ok(rx),
            Err(mpsc::error::TrySendError::Full(_)) => Err(PushError::Busy(camera_id.to_string())),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(PushError::NotRunning(camera_id.to_string()))
            }
        }
    }
}

/// The frames pushed to one camera.
#[derive(Debug)]
pub struct PushSource {
    rx: mpsc::Receiver<Pushed>,
    sampler: Sampler,
    counters: Arc<CameraCounters>,
}

#[async_trait::async_trait]
impl FrameSource for PushSource {
    async fn next_frame(&mut self) -> Result<SourceFrame, SourceError> {
        loop {
            let (frame, reply) = self.rx.recv().await.ok_or(SourceError::Ended)?;
            self.counters.frames_in.fetch_add(1, Ordering::Relaxed);
            let t = frame.captured_at.timestamp_micros() as f64 / 1e6;
            if self.sampler.keep(t) {
                self.counters.sampled.fetch_add(1, Ordering::Relaxed);
                return Ok(SourceFrame {
                    frame,
                    reply: Some(reply),
                    uploaded: true,
                });
            }
            let _ = reply.send(FrameOutcome::not_sampled());
        }
    }

    fn describe(&self) -> String {
        "push".to_string()
    }
}
