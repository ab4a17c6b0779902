//! The overlay's wire types: solicitations checked and forwarded, instructions, topologies.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = serde_json::from_slice::<protocol::overlay::Solicit>(data) {
        if let Ok(s) = s.checked(1_000) {
            assert!(s.hops_left <= protocol::overlay::SOLICIT_HOPS_MAX);
            if let Some(f) = s.forwarded(2, 1_000) {
                assert!(f.hops_left < s.hops_left && f.max_price <= s.max_price);
            }
        }
    }
    if let Ok(i) = serde_json::from_slice::<protocol::overlay::Instructions>(data) {
        let _ = i.base_url();
    }
    let text = String::from_utf8_lossy(data);
    let _ = protocol::overlay::is_document(&text);
    let _ = text.parse::<protocol::overlay::topology::Topology>();
});
