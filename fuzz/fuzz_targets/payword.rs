//! Paywords: the LCP-Payword and LCP-Touchstone header values, words.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(p) = protocol::payword::Payword::parse_header(&text) {
        let _ = p.header_value();
    }
    let _ = protocol::payword::OpenTouchstone::from_header(&text);
    let _ = protocol::payword::Word::parse(&text);
});
