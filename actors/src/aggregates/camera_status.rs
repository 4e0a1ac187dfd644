//! A camera's ingest status (stream `camerastatus-{id}`): what its actor last reported.
//!
//! Apart from the camera aggregate so that a camera going online does not move the version
//! an operator's `If-Match` names.

use chrono::{DateTime, Utc};
use vigil_schemas::CameraEvent;
use vigil_schemas::events::{CameraStatus, CameraStatusChanged, camera_status_stream};

use crate::aggregates::Aggregate;

/// Longest reason kept, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// The last reported status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestState {
    /// The status, `None` before the first report.
    pub status: Option<CameraStatus>,
}

/// Record a status.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportStatus {
    /// The camera.
    pub camera_id: String,
    /// New state.
    pub status: CameraStatus,
    /// Why.
    pub reason: String,
}

/// Never refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unreachable")]
pub enum Never {}

/// Marker type implementing [`Aggregate`] for camera ingest status.
pub struct CameraStatusAggregate;

impl Aggregate for CameraStatusAggregate {
    type State = IngestState;
    type Command = ReportStatus;
    type Event = CameraEvent;
    type Error = Never;

    fn stream(id: &str) -> String {
        camera_status_stream(id)
    }

    /// Only a change of state is an event: a second `error` while in `error` is not.
    fn decide(state: &IngestState, command: ReportStatus) -> Result<Vec<CameraEvent>, Never> {
        if state.status == Some(command.status) {
            return Ok(vec![]);
        }
        Ok(vec![CameraEvent::StatusChanged(CameraStatusChanged {
            camera_id: command.camera_id,
            status: command.status,
            reason: command.reason.chars().take(MAX_REASON_CHARS).collect(),
        })])
    }

    fn evolve(mut state: IngestState, event: &CameraEvent, _at: DateTime<Utc>) -> IngestState {
        if let CameraEvent::StatusChanged(e) = event {
            state.status = Some(e.status);
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(status: CameraStatus, reason: &str) -> ReportStatus {
        ReportStatus {
            camera_id: "lobby".into(),
            status,
            reason: reason.into(),
        }
    }

    #[test]
    fn only_changes_are_recorded() {
        let state = IngestState::default();
        let first =
            CameraStatusAggregate::decide(&state, report(CameraStatus::Error, "refused")).unwrap();
        assert_eq!(first.len(), 1);
        let state = CameraStatusAggregate::evolve(state, &first[0], Utc::now());
        assert_eq!(state.status, Some(CameraStatus::Error));
        let again = CameraStatusAggregate::decide(&state, report(CameraStatus::Error, "timed out"))
            .unwrap();
        assert!(again.is_empty(), "a repeated status is not an event");
        let online =
            CameraStatusAggregate::decide(&state, report(CameraStatus::Online, "ok")).unwrap();
        assert!(
            matches!(&online[0], CameraEvent::StatusChanged(e) if e.status == CameraStatus::Online)
        );
    }

    #[test]
    fn long_reasons_are_cut() {
        let long = "x".repeat(2 * MAX_REASON_CHARS);
        let events = CameraStatusAggregate::decide(
            &IngestState::default(),
            report(CameraStatus::Error, &long),
        )
        .unwrap();
        let CameraEvent::StatusChanged(e) = &events[0] else {
            panic!("not a status change")
        };
        assert_eq!(e.reason.chars().count(), MAX_REASON_CHARS);
    }
}
