//! Cursor decoding never panics, and every cursor it accepts round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_projections::cameras::{decode_cursor, encode_cursor};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(id) = decode_cursor(text) {
        assert!(!id.is_empty());
        assert_eq!(decode_cursor(&encode_cursor(&id)).expect("own cursors decode"), id);
    }
});
