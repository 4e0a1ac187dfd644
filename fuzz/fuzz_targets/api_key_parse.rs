//! Parsing presented keys, route labels and tiers never panics; a split key's parts are
//! non-empty and rebuild the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::access::{Tier, route_label, split_key};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some((id, secret)) = split_key(text) {
        assert!(!id.is_empty() && !secret.is_empty());
        assert_eq!(format!("vgl_{id}_{secret}"), text);
    }
    let label = route_label("GET", text);
    assert!(label.starts_with("GET /"));
    let _ = Tier::of("POST", text);
});
