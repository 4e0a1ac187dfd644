//! Request-body parsing never panics: bytes become a typed body or a 400/422, with the shape
//! caps (depth, string length, array length, null) applied first.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::api::api_keys::{ApiKeyCreate, ApiKeyPatchBody};
use vigil::api::body::parse_json;
use vigil::api::cameras::{CameraCreate, CameraPatchBody};
use vigil::api::ingest::{AnalyzeRequest, CameraTestRequest};

fuzz_target!(|data: &[u8]| {
    let _ = parse_json::<CameraCreate>(data);
    let _ = parse_json::<CameraPatchBody>(data);
    let _ = parse_json::<ApiKeyCreate>(data);
    let _ = parse_json::<ApiKeyPatchBody>(data);
    let _ = parse_json::<CameraTestRequest>(data);
    let _ = parse_json::<AnalyzeRequest>(data);
});
