//! Offers and contracts: parsed from any JSON, their windows and prices computed.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(offer) = serde_json::from_slice::<protocol::market::Offer>(data) {
        if let Some(c) = offer.currencies.first() {
            let _ = offer.currency(&c.issuer);
        }
    }
    if let Ok(contract) = serde_json::from_slice::<protocol::market::Contract>(data) {
        let _ = protocol::market::contract_window(&contract);
    }
    let text = String::from_utf8_lossy(data);
    let _ = protocol::market::parse_rfc3339(&text);
    let _ = protocol::market::is_uuid_v4(&text);
});
