//! The backup's stored formats: index objects, erasure-coded shard framing, and pack blobs
//! (sealed with the repository's key, so the fuzzer's bytes are sealed first and the opener's
//! decompression meets them as any key holder's blob would).
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static KEYS: OnceLock<backup::crypto::Keys> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let keys = KEYS.get_or_init(|| backup::crypto::Keys::generate().expect("keys"));
    if let Ok(sealed) = keys.seal(data) {
        if let Ok(mut opener) = backup::pack::ChunkOpener::new(1 << 16) {
            let _ = opener.open(keys, &sealed);
        }
        assert_eq!(keys.open(&sealed).ok().as_deref(), Some(data), "sealing round trips");
    }
    let _ = backup::repo::IndexObject::parse(data);
    let _ = backup::erasure::unframe_in_place(data.to_vec());
    if data.len() > 2 {
        let k = 1 + usize::from(data[0] % 4);
        let m = usize::from(data[1] % 3);
        let body = &data[2..];
        let shard = body.len().div_ceil(k + m).max(1);
        let shards: Vec<Option<Vec<u8>>> = body
            .chunks(shard)
            .map(|c| Some(c.to_vec()))
            .chain(std::iter::repeat(None))
            .take(k + m)
            .collect();
        let _ = backup::erasure::decode(shards, k, m);
    }
});
