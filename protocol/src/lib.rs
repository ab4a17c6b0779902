//! The shared language of every service: identities, signed requests and responses, signed
//! envelopes, money amounts (DESIGN sections 3 and 4), offers, contracts and their pricing
//! (sections 5 and 6), and the Merkle tree of audits and CDN pieces (section 5).
//!
//! Invariant: this crate does no IO. It never touches files, sockets or databases; callers hand
//! it bytes and clocks (`now_ms`) and get verdicts back. Key files live in `node::keyfile`.

pub mod agent;
pub mod amount;
pub mod book;
pub mod cdn;
pub mod credit;
pub mod ed25519;
pub mod envelope;
pub mod error;
pub mod identity;
pub mod ledger;
pub mod market;
pub mod merkle;
pub mod name;
pub mod overlay;
pub mod payword;
pub mod range;
pub mod record;
pub mod request;

pub use amount::{fee_for, format_amount, format_units, Amount, AmountError};
pub use envelope::{Envelope, EnvelopeError};
pub use error::{ErrorBody, ErrorDetail};
pub use identity::{EntityId, IdentityError, KeyPair};
pub use request::{
    prepare_request, request_key, response_signing_string, sign_request, sign_response,
    signing_string, verify_request, verify_request_prehashed, verify_response, AuthError,
    PendingRequest, RequestAuth, RequestKind, VerifiedRequest, FRESHNESS_MS_MAX,
    HEADER_CONTENT_SHA256, HEADER_COUNTER, HEADER_ENTITY, HEADER_SIGNATURE, HEADER_TIME,
};

/// Lowercase hex SHA-256 of `bytes`: the body hash of DESIGN section 3.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// base64url without padding, the encoding of every signature on the wire.
pub fn b64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decode base64url without padding; `None` for anything else.
pub fn b64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
}
