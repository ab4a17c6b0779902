//! The HTTP Range parser every server shares, resolved against any size.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let size = u64::from_le_bytes(data[..8].try_into().unwrap_or([0; 8]));
    let header = String::from_utf8_lossy(&data[8..]);
    if let Ok(Some(spec)) = protocol::range::RangeSpec::from_header(&header) {
        if let Ok(r) = spec.resolve(size) {
            assert!(r.start <= r.end && r.end <= size, "a resolved range lies in the object");
        }
    }
});
