//! Records: half-blocks parsed from any JSON, validated, chained, compared for fraud.
#![no_main]
use libfuzzer_sys::fuzz_target;
use protocol::record::{check_chain, HalfBlock, RecordFraud};

fuzz_target!(|data: &[u8]| {
    if let Ok(blocks) = serde_json::from_slice::<Vec<HalfBlock>>(data) {
        for b in &blocks {
            let _ = b.validate();
            let _ = b.hash();
        }
        let _ = check_chain(&blocks);
        if let [a, b, ..] = blocks.as_slice() {
            let _ = protocol::record::check_agreement(a, b);
            let _ = protocol::record::check_link(a, b);
            if let Some(f) = RecordFraud::between(a, b) {
                let _ = f.verify();
            }
        }
    }
});
