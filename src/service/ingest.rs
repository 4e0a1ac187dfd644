//! Frames pushed by edge devices: which cameras take them, and handing one to its camera's
//! actor.

use std::time::{Duration, Instant};

use serde_json::json;
use vigil_actors::frame::Frame;
use vigil_actors::source::FrameOutcome;
use vigil_actors::source::push::PushError;
use vigil_projections::cameras::CameraRow;

use super::{Refusal, ServiceError};
use crate::app::App;

/// How long a push waits for a camera's actor that is still starting.
const START_WAIT: Duration = Duration::from_secs(5);
/// How often it looks again meanwhile.
const START_POLL: Duration = Duration::from_millis(50);

/// `CAMERA_NOT_RUNNING`.
fn not_running(message: String) -> ServiceError {
    ServiceError::refused(Refusal::Conflict, "CAMERA_NOT_RUNNING", message, json!({}))
}

/// Refuses a camera that does not take pushed frames: one that reads another source
/// (`CAMERA_NOT_PUSH`), or a disabled one (`CAMERA_NOT_RUNNING`).
pub fn takes_pushes(camera: &CameraRow) -> Result<(), ServiceError> {
    let id = &camera.id;
    if camera.source != "push" {
        return Err(ServiceError::refused(
            Refusal::Conflict,
            "CAMERA_NOT_PUSH",
            format!(
                "camera `{id}` reads `{}`; only `push` cameras take uploads",
                camera.source
            ),
            json!({"source": camera.source}),
        ));
    }
    if !camera.enabled {
        return Err(not_running(format!(
            "camera `{id}` is disabled; start it first"
        )));
    }
    Ok(())
}

/// Hands one frame to push camera `id`'s actor and waits for its outcome. Right after a start
/// the actor may still be coming up: it is given [`START_WAIT`].
pub async fn push(app: &App, id: &str, frame: Frame) -> Result<FrameOutcome, ServiceError> {
    let deadline = Instant::now() + START_WAIT;
    let receiver = loop {
        match app.push().push(id, frame.clone()) {
            Ok(rx) => break rx,
            Err(e @ PushError::NotRunning(_)) if Instant::now() >= deadline => {
                return Err(not_running(e.to_string()));
            }
            Err(PushError::NotRunning(_)) => tokio::time::sleep(START_POLL).await,
            Err(e @ PushError::Busy(_)) => {
                return Err(ServiceError::refused(
                    Refusal::Unavailable,
                    "CAMERA_BUSY",
                    e.to_string(),
                    json!({}),
                ));
            }
        }
    };
    receiver.await.map_err(|_| {
        ServiceError::refused(
            Refusal::Unavailable,
            "CAMERA_RESTARTING",
            format!("camera `{id}` stopped before the frame was processed; retry"),
            json!({}),
        )
    })
}
