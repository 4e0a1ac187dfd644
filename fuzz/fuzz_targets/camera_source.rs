//! Differential: the camera source check accepts exactly the strings the OpenAPI document's
//! pattern (and length cap) accepts, so clients validating against the schema agree with the
//! server. For `file://` URLs the pattern gives the shape only (the server also checks the
//! query parameters' names and values and the path's percent-encoding), so there the server
//! may refuse more, never accept more.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vigil_actors::aggregates::camera::validate_source;

const PATTERN: &str = r"^(push|(rtsp|rtsps|http|https)://([^\x00-\x20\x7f/?#@]*@)?[^\x00-\x20\x7f/?#@:][^\x00-\x20\x7f/?#@]*([/?#][^\x00-\x20\x7f]*)?|file://(localhost)?/[^\x00-\x20\x7f?#]*[^\x00-\x20\x7f?#/](\?[^\x00-\x20\x7f#]*)?)$";

fn documented() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(PATTERN).expect("pattern compiles"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    let schema_ok = source.chars().count() <= 2048 && documented().is_match(source);
    let server_ok = validate_source(source).is_ok();
    if source.starts_with("file://") {
        assert!(!server_ok || schema_ok, "the server accepts {source:?}, the schema does not");
    } else {
        assert_eq!(schema_ok, server_ok, "schema and server disagree on {source:?}");
    }
});
