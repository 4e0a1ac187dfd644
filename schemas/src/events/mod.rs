//! Domain events: past-tense facts, one payload struct per type, grouped by aggregate.
//!
//! A stored event names its type (`camera.registered`) and schema version (`1`). Both are
//! frozen: a new payload shape is a new version, and [`DomainEvent::decode`] upcasts an old
//! version's raw JSON before deserialising it. Golden fixtures under `schemas/fixtures/` keep
//! every version loadable.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::envelope::{EventMeta, NewEvent, RecordedEvent};

/// Why a stored event could not be turned back into a domain event.
#[derive(Debug, thiserror::Error)]
pub enum EventDecodeError {
    /// The type name is not one this enum owns.
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    /// The type is known but this schema version is not (newer than this build?).
    #[error("unknown schema version {version} for event type `{event_type}`")]
    UnknownVersion {
        /// The event type.
        event_type: String,
        /// The stored version.
        version: u32,
    },
    /// The payload does not match the schema.
    #[error("payload of `{event_type}` v{version} does not match its schema: {source}")]
    Payload {
        /// The event type.
        event_type: String,
        /// The stored version.
        version: u32,
        /// The deserialisation error.
        source: serde_json::Error,
    },
}

/// A family of domain events (one per aggregate) that can be stored and loaded.
pub trait DomainEvent: Sized {
    /// Every `(type, current schema version)` this family owns.
    const TYPES: &'static [(&'static str, u32)];

    /// The frozen type name of this event.
    fn event_type(&self) -> &'static str;
    /// The schema version this build writes for this event.
    fn schema_version(&self) -> u32;
    /// The payload as JSON.
    fn to_payload(&self) -> Value;
    /// Loads an event from its stored type, version and payload, upcasting old versions.
    fn decode(
        event_type: &str,
        schema_version: u32,
        payload: &Value,
    ) -> Result<Self, EventDecodeError>;

    /// Whether `event_type` belongs to this family: its family name (`camera` of
    /// `camera.registered`) is this family's. A type of the family this build does not know
    /// belongs to it too, and fails to decode rather than being skipped.
    fn owns(event_type: &str) -> bool {
        let family = |t: &str| t.split('.').next().unwrap_or_default().to_string();
        Self::TYPES
            .first()
            .is_some_and(|(t, _)| family(t) == family(event_type))
    }

    /// The typed decode of a stored event: this family's event, upcast to the current version,
    /// or `Ok(None)` when the event belongs to another family. Consumers of `$all` match on
    /// the result instead of routing by type name.
    fn from_recorded(event: &RecordedEvent) -> Result<Option<Self>, EventDecodeError> {
        if !Self::owns(&event.event_type) {
            return Ok(None);
        }
        Self::decode(&event.event_type, event.schema_version, &event.payload).map(Some)
    }

    /// Wraps this event for appending, with a fresh UUID v7 and the given time and metadata.
    fn to_new_event(&self, occurred_at: DateTime<Utc>, meta: &EventMeta) -> NewEvent {
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: self.event_type().to_string(),
            schema_version: self.schema_version(),
            occurred_at,
            meta: meta.clone(),
            payload: self.to_payload(),
        }
    }
}

/// Declares an event family: an enum whose variants wrap payload structs, with frozen names.
macro_rules! event_family {
    ($(#[$doc:meta])* $name:ident { $($variant:ident($payload:ty) = $type_name:literal v $version:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $(
                #[doc = concat!("`", $type_name, "`, schema version ", stringify!($version), ".")]
                $variant($payload),
            )+
        }

        impl DomainEvent for $name {
            const TYPES: &'static [(&'static str, u32)] = &[$(($type_name, $version)),+];

            fn event_type(&self) -> &'static str {
                match self { $(Self::$variant(_) => $type_name),+ }
            }

            fn schema_version(&self) -> u32 {
                match self { $(Self::$variant(_) => $version),+ }
            }

            fn to_payload(&self) -> Value {
                let value = match self { $(Self::$variant(p) => serde_json::to_value(p)),+ };
                value.expect("event payloads are plain data and always serialise")
            }

            fn decode(event_type: &str, schema_version: u32, payload: &Value)
                -> Result<Self, EventDecodeError> {
                let payload = upcast(event_type, schema_version, payload)?;
                match event_type {
                    $($type_name => serde_json::from_value::<$payload>(payload)
                        .map(Self::$variant)
                        .map_err(|source| EventDecodeError::Payload {
                            event_type: event_type.to_string(),
                            version: schema_version,
                            source,
                        }),)+
                    other => Err(EventDecodeError::UnknownType(other.to_string())),
                }
            }
        }
    };
}

/// Brings a stored payload of any known version up to the current version of its type.
///
/// Every type is at version 1 today, so only version 1 passes. When a type moves to v2, its
/// v1 → v2 rewrite of the raw JSON goes here and the v1 fixture keeps proving it.
fn upcast(event_type: &str, version: u32, payload: &Value) -> Result<Value, EventDecodeError> {
    let current = all_event_types()
        .find(|(name, _)| *name == event_type)
        .map(|(_, v)| v)
        .ok_or_else(|| EventDecodeError::UnknownType(event_type.to_string()))?;
    if version == current {
        Ok(payload.clone())
    } else {
        Err(EventDecodeError::UnknownVersion {
            event_type: event_type.to_string(),
            version,
        })
    }
}

/// Every event type Vigil stores, with its current schema version.
pub fn all_event_types() -> impl Iterator<Item = (&'static str, u32)> {
    CameraEvent::TYPES
        .iter()
        .chain(ApiKeyEvent::TYPES)
        .chain(AppearanceEvent::TYPES)
        .chain(IncidentEvent::TYPES)
        .chain(CalibrationEvent::TYPES)
        .chain(ActionEvent::TYPES)
        .chain(SubjectEvent::TYPES)
        .chain(AlertEvent::TYPES)
        .chain(ClipEvent::TYPES)
        .copied()
}

/// Any stored event, decoded into its family: for consumers of `$all` that take several
/// families (relays, the WebSocket hub, the supervisor) and match on them.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyEvent {
    /// `camera.*`.
    Camera(CameraEvent),
    /// `apikey.*`.
    ApiKey(ApiKeyEvent),
    /// `appearance.*`.
    Appearance(AppearanceEvent),
    /// `incident.*`.
    Incident(IncidentEvent),
    /// `calibration.*`.
    Calibration(CalibrationEvent),
    /// `action.*`.
    Action(ActionEvent),
    /// `subject.*`.
    Subject(SubjectEvent),
    /// `alert.*`.
    Alert(AlertEvent),
    /// `clip.*`.
    Clip(ClipEvent),
}

impl AnyEvent {
    /// Decodes a stored type, version and payload of any family, upcasting old versions.
    pub fn decode(
        event_type: &str,
        schema_version: u32,
        payload: &Value,
    ) -> Result<Self, EventDecodeError> {
        let v = schema_version;
        Ok(if CameraEvent::owns(event_type) {
            Self::Camera(CameraEvent::decode(event_type, v, payload)?)
        } else if ApiKeyEvent::owns(event_type) {
            Self::ApiKey(ApiKeyEvent::decode(event_type, v, payload)?)
        } else if AppearanceEvent::owns(event_type) {
            Self::Appearance(AppearanceEvent::decode(event_type, v, payload)?)
        } else if IncidentEvent::owns(event_type) {
            Self::Incident(IncidentEvent::decode(event_type, v, payload)?)
        } else if CalibrationEvent::owns(event_type) {
            Self::Calibration(CalibrationEvent::decode(event_type, v, payload)?)
        } else if ActionEvent::owns(event_type) {
            Self::Action(ActionEvent::decode(event_type, v, payload)?)
        } else if SubjectEvent::owns(event_type) {
            Self::Subject(SubjectEvent::decode(event_type, v, payload)?)
        } else if AlertEvent::owns(event_type) {
            Self::Alert(AlertEvent::decode(event_type, v, payload)?)
        } else if ClipEvent::owns(event_type) {
            Self::Clip(ClipEvent::decode(event_type, v, payload)?)
        } else {
            return Err(EventDecodeError::UnknownType(event_type.to_string()));
        })
    }

    /// The typed decode of a stored event of any family.
    pub fn from_recorded(event: &RecordedEvent) -> Result<Self, EventDecodeError> {
        Self::decode(&event.event_type, event.schema_version, &event.payload)
    }

    /// The payload as the current version's JSON.
    pub fn to_payload(&self) -> Value {
        match self {
            Self::Camera(e) => e.to_payload(),
            Self::ApiKey(e) => e.to_payload(),
            Self::Appearance(e) => e.to_payload(),
            Self::Incident(e) => e.to_payload(),
            Self::Calibration(e) => e.to_payload(),
            Self::Action(e) => e.to_payload(),
            Self::Subject(e) => e.to_payload(),
            Self::Alert(e) => e.to_payload(),
            Self::Clip(e) => e.to_payload(),
        }
    }
}

/// Decodes a stored payload of any family (upcasting old versions) and gives it back as the
/// current version's JSON.
pub fn decode_payload(
    event_type: &str,
    schema_version: u32,
    payload: &Value,
) -> Result<Value, EventDecodeError> {
    AnyEvent::decode(event_type, schema_version, payload).map(|e| e.to_payload())
}

/// The stream that holds one camera's ingest status changes. It is apart from `camera-{id}`
/// so that status changes do not move the camera's version (its HTTP ETag).
pub fn camera_status_stream(camera_id: &str) -> String {
    format!("camerastatus-{camera_id}")
}

/// The stream that holds one track's events: a person's appearance on one camera.
pub fn track_stream(camera_id: &str, track_id: &str) -> String {
    format!("track-{camera_id}-{track_id}")
}

/// The stream that holds one camera's events.
pub fn camera_stream(camera_id: &str) -> String {
    format!("camera-{camera_id}")
}

/// The stream that holds one API key's events.
pub fn apikey_stream(key_id: &str) -> String {
    format!("apikey-{key_id}")
}

mod action;
mod alert;
mod apikey;
mod appearance;
mod calibration;
mod camera;
mod clip;
mod incident;
mod subject;

pub use action::*;
pub use alert::*;
pub use apikey::*;
pub use appearance::*;
pub use calibration::*;
pub use camera::*;
pub use clip::*;
pub use incident::*;
pub use subject::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_through_decode() {
        let event = CameraEvent::Updated(CameraUpdated {
            camera_id: "c1".into(),
            enabled: Some(false),
            ..Default::default()
        });
        let payload = event.to_payload();
        assert_eq!(
            payload,
            serde_json::json!({"camera_id": "c1", "enabled": false})
        );
        let back = CameraEvent::decode(event.event_type(), event.schema_version(), &payload)
            .expect("decodes");
        assert_eq!(back, event);
    }

    #[test]
    fn unknown_type_and_version_are_errors() {
        let payload = serde_json::json!({"camera_id": "c1"});
        assert!(matches!(
            CameraEvent::decode("camera.exploded", 1, &payload),
            Err(EventDecodeError::UnknownType(_))
        ));
        assert!(matches!(
            CameraEvent::decode("camera.removed", 9, &payload),
            Err(EventDecodeError::UnknownVersion { version: 9, .. })
        ));
        // A type of another family is unknown to this one.
        assert!(matches!(
            CameraEvent::decode("apikey.issued", 1, &payload),
            Err(EventDecodeError::UnknownType(_))
        ));
    }

    #[test]
    fn type_names_are_unique() {
        let mut names: Vec<_> = all_event_types().map(|(n, _)| n).collect();
        let total = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), total);
    }
}
