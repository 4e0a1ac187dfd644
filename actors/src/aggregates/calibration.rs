//! The calibration aggregate (stream `calibration-global`): the rule thresholds, global and
//! per camera. Every change records the whole new calibration, so the latest event is the
//! calibration in effect.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use vigil_schemas::CalibrationEvent;
use vigil_schemas::events::{
    CALIBRATION_STREAM, Calibration, CalibrationChanged, CalibrationOverrides, CalibrationSettings,
};

use crate::aggregates::Aggregate;

/// Most cameras with overrides.
pub const MAX_OVERRIDDEN_CAMERAS: usize = 10_000;

/// What may be asked of the calibration.
#[derive(Debug, Clone, PartialEq)]
pub enum CalibrationCommand {
    /// Replace it.
    Put(Calibration),
    /// Merge into it: present global fields replace the global ones; each camera's overrides
    /// merge into that camera's (an empty object removes the camera's overrides).
    Patch {
        /// Global fields to change.
        global: CalibrationOverrides,
        /// Per camera, fields to change.
        cameras: BTreeMap<String, CalibrationOverrides>,
    },
    /// Back to the defaults: all of it, or one camera's overrides.
    Reset {
        /// Only this camera's overrides.
        camera_id: Option<String>,
    },
}

/// Why a calibration change was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CalibrationError {
    /// A value is out of range; the message names the field.
    #[error("{0}")]
    Invalid(String),
}

/// Marker type implementing [`Aggregate`] for the calibration.
pub struct CalibrationAggregate;

fn validate(calibration: &Calibration) -> Result<(), CalibrationError> {
    crate::rules::validate_settings(&calibration.global)
        .map_err(|e| CalibrationError::Invalid(format!("global.{e}")))?;
    if calibration.cameras.len() > MAX_OVERRIDDEN_CAMERAS {
        return Err(CalibrationError::Invalid(format!(
            "at most {MAX_OVERRIDDEN_CAMERAS} cameras may have overrides"
        )));
    }
    for (camera, overrides) in &calibration.cameras {
        crate::aggregates::camera::validate_id(camera)
            .map_err(|e| CalibrationError::Invalid(format!("cameras: {e}")))?;
        crate::rules::validate_settings(&overrides.apply_to(calibration.global.clone()))
            .map_err(|e| CalibrationError::Invalid(format!("cameras.{camera}.{e}")))?;
    }
    Ok(())
}

impl Aggregate for CalibrationAggregate {
    type State = Calibration;
    type Command = CalibrationCommand;
    type Event = CalibrationEvent;
    type Error = CalibrationError;

    fn stream(_id: &str) -> String {
        CALIBRATION_STREAM.to_string()
    }

    fn decide(
        state: &Calibration,
        command: CalibrationCommand,
    ) -> Result<Vec<CalibrationEvent>, CalibrationError> {
        let (next, change) = match command {
            CalibrationCommand::Put(mut next) => {
                next.cameras.retain(|_, o| !o.is_empty());
                (next, "put")
            }
            CalibrationCommand::Patch { global, cameras } => {
                let mut next = state.clone();
                next.global = global.apply_to(next.global);
                for (camera, overrides) in cameras {
                    if overrides.is_empty() {
                        next.cameras.remove(&camera);
                    } else {
                        let merged = next
                            .cameras
                            .remove(&camera)
                            .unwrap_or_default()
                            .merged(&overrides);
                        next.cameras.insert(camera, merged);
                    }
                }
                (next, "patch")
            }
            CalibrationCommand::Reset { camera_id: None } => (Calibration::default(), "reset"),
            CalibrationCommand::Reset {
                camera_id: Some(camera),
            } => {
                let mut next = state.clone();
                next.cameras.remove(&camera);
                (next, "reset")
            }
        };
        validate(&next)?;
        if next == *state {
            return Ok(vec![]);
        }
        Ok(vec![CalibrationEvent::Changed(CalibrationChanged {
            calibration: next,
            change: change.into(),
        })])
    }

    fn evolve(_state: Calibration, event: &CalibrationEvent, _at: DateTime<Utc>) -> Calibration {
        let CalibrationEvent::Changed(e) = event;
        e.calibration.clone()
    }
}

/// The defaults, for `GET /api/v1/calibration/defaults`.
pub fn defaults() -> CalibrationSettings {
    CalibrationSettings::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(
        global: CalibrationOverrides,
        camera: Option<(&str, CalibrationOverrides)>,
    ) -> CalibrationCommand {
        CalibrationCommand::Patch {
            global,
            cameras: camera
                .into_iter()
                .map(|(c, o)| (c.to_string(), o))
                .collect(),
        }
    }

    fn after(state: Calibration, command: CalibrationCommand) -> Calibration {
        let events = CalibrationAggregate::decide(&state, command).expect("accepted");
        events
            .iter()
            .fold(state, |s, e| CalibrationAggregate::evolve(s, e, Utc::now()))
    }

    #[test]
    fn a_camera_override_changes_only_that_camera() {
        let state = after(
            Calibration::default(),
            patch(
                CalibrationOverrides::default(),
                Some((
                    "lobby",
                    CalibrationOverrides {
                        crowd_threshold: Some(3),
                        ..Default::default()
                    },
                )),
            ),
        );
        assert_eq!(state.effective("lobby").crowd_threshold, 3);
        assert_eq!(state.effective("gate").crowd_threshold, 5);
        // A global change reaches every field the camera does not override.
        let state = after(
            state,
            patch(
                CalibrationOverrides {
                    crowd_threshold: Some(9),
                    loitering_seconds: Some(30.0),
                    ..Default::default()
                },
                None,
            ),
        );
        assert_eq!(state.effective("lobby").crowd_threshold, 3);
        assert_eq!(state.effective("lobby").loitering_seconds, 30.0);
        assert_eq!(state.effective("gate").crowd_threshold, 9);
        // An empty override object removes the camera's overrides.
        let state = after(
            state,
            patch(
                CalibrationOverrides::default(),
                Some(("lobby", CalibrationOverrides::default())),
            ),
        );
        assert_eq!(state.effective("lobby").crowd_threshold, 9);
    }

    #[test]
    fn an_invalid_value_is_refused_and_names_its_field() {
        let bad = patch(
            CalibrationOverrides {
                crowd_threshold: Some(0),
                ..Default::default()
            },
            None,
        );
        let err = CalibrationAggregate::decide(&Calibration::default(), bad).unwrap_err();
        assert!(err.to_string().contains("crowd_threshold"), "{err}");
    }

    #[test]
    fn no_change_records_nothing_and_reset_goes_back_to_defaults() {
        let unchanged = patch(
            CalibrationOverrides {
                crowd_threshold: Some(5),
                ..Default::default()
            },
            None,
        );
        assert_eq!(
            CalibrationAggregate::decide(&Calibration::default(), unchanged),
            Ok(vec![])
        );
        let changed = after(
            Calibration::default(),
            patch(
                CalibrationOverrides {
                    crowd_threshold: Some(7),
                    ..Default::default()
                },
                None,
            ),
        );
        let reset = after(changed, CalibrationCommand::Reset { camera_id: None });
        assert_eq!(reset, Calibration::default());
    }
}
