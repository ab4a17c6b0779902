//! Signed envelopes: parse any JSON, verify, open as any document type.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = serde_json::from_slice::<protocol::Envelope>(data) {
        let _ = env.verify();
        let _ = env.open::<serde_json::Value>("offer");
        if let Ok(id) = protocol::EntityId::parse(&env.signer) {
            let _ = env.verify_countersignature(&id, &env.signature);
        }
    }
});
