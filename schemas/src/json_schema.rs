//! JSON Schemas for every published event, exported to `schemas/json/` by
//! `vigil schemas export` for Kafka consumers. A test fails when the committed files are stale.

use schemars::{JsonSchema, schema_for};
use serde_json::Value;

use crate::envelope::RecordedEvent;
use crate::events::*;

fn schema_of<T: JsonSchema>(id: &str) -> Value {
    let mut schema = serde_json::to_value(schema_for!(T)).expect("schemas serialise");
    if let Value::Object(map) = &mut schema {
        map.insert(
            "$id".into(),
            Value::String(format!("https://vigil.dev/schemas/{id}")),
        );
    }
    schema
}

/// Every published schema as `(file name, schema)`, sorted by file name: the envelope and one
/// file per event type and version (`camera.registered.v1.json`).
pub fn all() -> Vec<(String, Value)> {
    let mut out = vec![(
        "envelope.v1.json".to_string(),
        schema_of::<RecordedEvent>("envelope.v1.json"),
    )];
    for (event_type, version) in all_event_types() {
        let file = format!("{event_type}.v{version}.json");
        let schema = match event_type {
            "camera.registered" => schema_of::<CameraRegistered>(&file),
            "camera.updated" => schema_of::<CameraUpdated>(&file),
            "camera.removed" => schema_of::<CameraRemoved>(&file),
            "camera.status_changed" => schema_of::<CameraStatusChanged>(&file),
            "appearance.started" => schema_of::<AppearanceStarted>(&file),
            "appearance.ended" => schema_of::<AppearanceEnded>(&file),
            "clip.recorded" => schema_of::<ClipRecorded>(&file),
            "clip.deleted" => schema_of::<ClipDeleted>(&file),
            "apikey.issued" => schema_of::<ApiKeyIssued>(&file),
            "apikey.updated" => schema_of::<ApiKeyUpdated>(&file),
            "apikey.revoked" => schema_of::<ApiKeyRevoked>(&file),
            "incident.opened" => schema_of::<IncidentOpened>(&file),
            "incident.evidence_added" => schema_of::<IncidentEvidenceAdded>(&file),
            "incident.status_changed" => schema_of::<IncidentStatusChanged>(&file),
            "incident.acknowledged" => schema_of::<IncidentAcknowledged>(&file),
            "incident.note_added" => schema_of::<IncidentNoteAdded>(&file),
            "incident.action_taken" => schema_of::<IncidentActionTaken>(&file),
            "incident.deleted" => schema_of::<IncidentDeleted>(&file),
            "calibration.changed" => schema_of::<CalibrationChanged>(&file),
            "action.requested" => schema_of::<ActionRequested>(&file),
            "action.succeeded" => schema_of::<ActionSucceeded>(&file),
            "action.failed" => schema_of::<ActionFailed>(&file),
            "action.requeued" => schema_of::<ActionRequeued>(&file),
            "action.discarded" => schema_of::<ActionDiscarded>(&file),
            "subject.enrolled" => schema_of::<SubjectEnrolled>(&file),
            "subject.updated" => schema_of::<SubjectUpdated>(&file),
            "subject.faces_added" => schema_of::<SubjectFacesAdded>(&file),
            "subject.erased" => schema_of::<SubjectErased>(&file),
            "subject.matched" => schema_of::<SubjectMatched>(&file),
            "alert.acknowledged" => schema_of::<AlertAcknowledged>(&file),
            "alert.dismissed" => schema_of::<AlertDismissed>(&file),
            other => unreachable!("event type `{other}` has no schema: add it here"),
        };
        out.push((file, schema));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Renders a schema as the bytes committed under `schemas/json/`.
pub fn render(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("schemas serialise");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The crate's folder as cargo names it when running the tests (a test binary reused from
    /// another checkout still reads this checkout's files).
    fn manifest_dir() -> std::path::PathBuf {
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
            || env!("CARGO_MANIFEST_DIR").into(),
            std::path::PathBuf::from,
        )
    }

    fn schemas_dir() -> std::path::PathBuf {
        manifest_dir().join("json")
    }

    #[test]
    fn committed_schemas_are_current() {
        let dir = schemas_dir();
        let mut expected_files = Vec::new();
        for (file, schema) in all() {
            let committed = std::fs::read_to_string(dir.join(&file)).unwrap_or_else(|_| {
                panic!("schemas/json/{file} is missing: run `vigil schemas export`")
            });
            assert_eq!(
                committed,
                render(&schema),
                "schemas/json/{file} is stale: run `vigil schemas export`"
            );
            expected_files.push(file);
        }
        let mut present: Vec<String> = std::fs::read_dir(&dir)
            .expect("schemas/json exists")
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        present.sort();
        assert_eq!(
            present, expected_files,
            "schemas/json holds files no event owns"
        );
    }

    /// Golden fixtures: `schemas/fixtures/{type}/v{N}.json` must load forever.
    #[test]
    fn every_fixture_decodes_and_every_type_has_one() {
        let root = manifest_dir().join("fixtures");
        for (event_type, version) in all_event_types() {
            for v in 1..=version {
                let path = root.join(event_type).join(format!("v{v}.json"));
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|_| panic!("missing golden fixture {}", path.display()));
                let envelope: RecordedEvent = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: not an envelope: {e}", path.display()));
                assert_eq!(envelope.event_type, event_type);
                assert_eq!(envelope.schema_version, v);
                let decoded = crate::events::decode_payload(event_type, v, &envelope.payload);
                let decoded = decoded.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(
                    decoded.is_object(),
                    "{} decodes to an object",
                    path.display()
                );
            }
        }
    }
}
