//! Signed-request parsing and verification: any header values, method, path and body.
#![no_main]
use libfuzzer_sys::fuzz_target;
use protocol::{RequestAuth, RequestKind};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(8, '\n');
    let mut next = || parts.next().unwrap_or("").to_owned();
    let (entity, time, counter, signature, sha) = (next(), next(), next(), next(), next());
    let (method, path, body) = (next(), next(), next());
    let get = |name: &str| -> Option<&str> {
        match name {
            protocol::HEADER_ENTITY => Some(entity.as_str()),
            protocol::HEADER_TIME => Some(time.as_str()),
            protocol::HEADER_COUNTER => Some(counter.as_str()),
            protocol::HEADER_SIGNATURE => Some(signature.as_str()),
            protocol::HEADER_CONTENT_SHA256 => Some(sha.as_str()),
            _ => None,
        }
    };
    if let Ok(auth) = RequestAuth::from_headers(get) {
        let audience = "ed25519:0000000000000000000000000000000000000000000000000000000000000000";
        for kind in [RequestKind::Query, RequestKind::Command] {
            let _ = protocol::verify_request(&auth, audience, &method, &path, body.as_bytes(), 1_000, kind);
            let _ = auth.declared_body_sha256();
        }
    }
});
