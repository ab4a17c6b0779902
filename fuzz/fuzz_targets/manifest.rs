//! The cdn's signed manifest: any envelope opened as a manifest, its piece arithmetic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = serde_json::from_slice::<protocol::Envelope>(data) {
        if let Ok(publisher) = protocol::EntityId::parse(&env.signer) {
            if let Ok(m) = protocol::cdn::Manifest::open(&env, &publisher) {
                for i in 0..m.pieces.len().min(4) as u64 {
                    let _ = m.piece_len(i);
                }
            }
        }
    }
    if let Ok(m) = serde_json::from_slice::<protocol::cdn::Manifest>(data) {
        let _ = protocol::cdn::piece_count(m.size, m.piece_bytes);
        let _ = protocol::cdn::content_id(m.size, m.piece_bytes, &m.pieces);
    }
});
