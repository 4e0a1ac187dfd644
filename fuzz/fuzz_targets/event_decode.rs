//! Decoding (with upcasting) of stored events never panics, whatever the stored type, version
//! and payload; what decodes re-encodes to a payload that decodes to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_schemas::events::all_event_types;
use vigil_schemas::{ApiKeyEvent, CameraEvent, DomainEvent};

fn check<E: DomainEvent + PartialEq + std::fmt::Debug>(event_type: &str, version: u32, payload: &serde_json::Value) {
    if let Ok(event) = E::decode(event_type, version, payload) {
        let again = E::decode(event.event_type(), event.schema_version(), &event.to_payload())
            .expect("an event this build wrote decodes");
        assert_eq!(again, event);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(rest) else { return };
    let types: Vec<(&str, u32)> = all_event_types().collect();
    let (event_type, current) = types[selector as usize % types.len()];
    let version = match selector / 64 {
        0 => current,
        1 => current + 1,
        2 => 0,
        _ => current.saturating_sub(1),
    };
    check::<CameraEvent>(event_type, version, &payload);
    check::<ApiKeyEvent>(event_type, version, &payload);
    check::<CameraEvent>("camera.unknown", version, &payload);
});
