//! Signed HTTP requests and signed responses (receipts), exactly as DESIGN section 3 says.

use crate::identity::{EntityId, KeyPair};

pub const HEADER_ENTITY: &str = "LCP-Entity";
pub const HEADER_TIME: &str = "LCP-Time";
pub const HEADER_COUNTER: &str = "LCP-Counter";
pub const HEADER_SIGNATURE: &str = "LCP-Signature";
/// Optional on requests with a body: the body's SHA-256 (lowercase hex), the signing string's
/// last line, so a server can verify the signature before it reads the body (DESIGN section 3).
pub const HEADER_CONTENT_SHA256: &str = "LCP-Content-SHA256";

/// A request's `LCP-Time` may differ from the server's clock by at most this much.
pub const FRESHNESS_MS_MAX: u64 = 300_000;

const REQUEST_TAG: &str = "LCP-REQUEST-1";
const RESPONSE_TAG: &str = "LCP-RESPONSE-1";

/// Commands change state and carry a counter (the idempotency key); queries do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Command,
    Query,
}

/// Why a request's authentication failed. Every variant maps to a stable code.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("malformed header {0}")]
    InvalidHeader(&'static str),
    #[error("this command needs an LCP-Counter of at least 1")]
    MissingCounter,
    #[error("the signature does not verify for this entity, audience, request and body")]
    InvalidSignature,
    #[error("LCP-Time is more than 300 s away from the server's clock")]
    StaleTime,
}

impl AuthError {
    /// The stable error code clients see (HTTP 401 for all but `invalid_header`, which is 400).
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingHeader(_) => "missing_header",
            AuthError::InvalidHeader(_) => "invalid_header",
            AuthError::MissingCounter => "missing_counter",
            AuthError::InvalidSignature => "invalid_signature",
            AuthError::StaleTime => "stale_time",
        }
    }
}

/// The four LCP headers of a signed request, as strings ready to send or just received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAuth {
    pub entity: String,
    pub time_ms: String,
    /// Empty for queries.
    pub counter: String,
    pub signature: String,
    /// `LCP-Content-SHA256`: the body's hash as the sender declares it; empty when absent (or,
    /// when signing, when there is no body).
    pub content_sha256: String,
}

impl RequestAuth {
    /// Read the headers through `get` (a case-insensitive header lookup of the caller's HTTP stack).
    /// Absent `LCP-Counter` reads as empty.
    pub fn from_headers<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, AuthError> {
        let required = |name: &'static str| get(name).ok_or(AuthError::MissingHeader(name));
        Ok(RequestAuth {
            entity: required(HEADER_ENTITY)?.to_owned(),
            time_ms: required(HEADER_TIME)?.to_owned(),
            counter: get(HEADER_COUNTER).unwrap_or("").to_owned(),
            signature: required(HEADER_SIGNATURE)?.to_owned(),
            content_sha256: get(HEADER_CONTENT_SHA256).unwrap_or("").to_owned(),
        })
    }

    /// The headers as (name, value) pairs; `LCP-Counter` and `LCP-Content-SHA256` are left
    /// out when empty.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            (HEADER_ENTITY, self.entity.clone()),
            (HEADER_TIME, self.time_ms.clone()),
            (HEADER_SIGNATURE, self.signature.clone()),
        ];
        if !self.counter.is_empty() {
            out.push((HEADER_COUNTER, self.counter.clone()));
        }
        if !self.content_sha256.is_empty() {
            out.push((HEADER_CONTENT_SHA256, self.content_sha256.clone()));
        }
        out
    }

    /// The declared body hash, when the sender sent a well-formed one (64 lowercase hex).
    pub fn declared_body_sha256(&self) -> Option<&str> {
        let h = self.content_sha256.as_str();
        (h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then_some(h)
    }
}

/// What a server knows once a request verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRequest {
    pub entity: EntityId,
    pub time_ms: u64,
    /// `Some` (>= 1) for commands.
    pub counter: Option<u64>,
    pub body_sha256: String,
}

/// The request signing string of DESIGN section 3.
pub fn signing_string(
    audience: &str,
    method: &str,
    path_and_query: &str,
    time_ms: &str,
    counter: &str,
    body: &[u8],
) -> String {
    signing_string_hashed(
        audience,
        method,
        path_and_query,
        time_ms,
        counter,
        &crate::sha256_hex(body),
    )
}

/// [`signing_string`] from the body's SHA-256 (hex), so a large body is hashed once.
fn signing_string_hashed(
    audience: &str,
    method: &str,
    path_and_query: &str,
    time_ms: &str,
    counter: &str,
    body_sha256: &str,
) -> String {
    format!(
        "{REQUEST_TAG}\n{audience}\n{}\n{path_and_query}\n{time_ms}\n{counter}\n{body_sha256}",
        method.to_ascii_uppercase(),
    )
}

/// Sign a request for `audience` (the server's entity id). `counter` is `Some` for commands.
pub fn sign_request(
    key: &KeyPair,
    audience: &str,
    method: &str,
    path_and_query: &str,
    time_ms: u64,
    counter: Option<u64>,
    body: &[u8],
) -> RequestAuth {
    let time_ms = time_ms.to_string();
    let counter = counter.map(|c| c.to_string()).unwrap_or_default();
    let body_sha256 = crate::sha256_hex(body);
    let text = signing_string_hashed(
        audience,
        method,
        path_and_query,
        &time_ms,
        &counter,
        &body_sha256,
    );
    RequestAuth {
        entity: key.entity().to_string(),
        time_ms,
        counter,
        signature: key.sign_b64(text.as_bytes()),
        // Sent with every body, so a server can refuse a forged upload before reading it.
        content_sha256: if body.is_empty() {
            String::new()
        } else {
            body_sha256
        },
    }
}

/// Verify a received request against this server's `audience` and clock.
///
/// Freshness is checked for commands too: a command whose first execution failed was not
/// recorded, so without a time bound it could be replayed later when it would succeed.
pub fn verify_request(
    auth: &RequestAuth,
    audience: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now_ms: u64,
    kind: RequestKind,
) -> Result<VerifiedRequest, AuthError> {
    verify_request_prehashed(
        auth,
        audience,
        method,
        path_and_query,
        &crate::sha256_hex(body),
        now_ms,
        kind,
    )
}

/// [`verify_request`] against a body hash the caller already has: the sender's
/// `LCP-Content-SHA256`, before the body is read. The caller must then check that the body it
/// reads hashes to `body_sha256`; until it has, only the headers are authenticated.
pub fn verify_request_prehashed(
    auth: &RequestAuth,
    audience: &str,
    method: &str,
    path_and_query: &str,
    body_sha256: &str,
    now_ms: u64,
    kind: RequestKind,
) -> Result<VerifiedRequest, AuthError> {
    let pending = prepare_request(
        auth,
        audience,
        method,
        path_and_query,
        body_sha256,
        now_ms,
        kind,
    )?;
    let signature_ok = pending.verify_signature();
    pending.finish(signature_ok)
}

/// A request whose headers are read and whose signing string is built, with only the
/// signature left to check: a server may check many together
/// ([`crate::ed25519::verify_batch`]) and then [`PendingRequest::finish`] each.
#[derive(Debug)]
pub struct PendingRequest {
    verified: VerifiedRequest,
    /// The signing string, the message the signature covers.
    pub message: Vec<u8>,
    /// `None` when the header is not 64 bytes of base64url: refused without any check.
    pub signature: Option<[u8; 64]>,
    stale: bool,
}

impl PendingRequest {
    /// The sender's public key.
    pub fn key(&self) -> [u8; 32] {
        self.verified.entity.public_key_bytes()
    }

    /// Check the signature now, alone.
    pub fn verify_signature(&self) -> bool {
        self.signature
            .is_some_and(|s| crate::ed25519::verify(&self.key(), &self.message, &s))
    }

    /// The verdict once the signature is checked: a bad signature is refused before a stale
    /// time (an unsigned request learns nothing about the server's clock).
    pub fn finish(self, signature_ok: bool) -> Result<VerifiedRequest, AuthError> {
        if !signature_ok {
            return Err(AuthError::InvalidSignature);
        }
        if self.stale {
            return Err(AuthError::StaleTime);
        }
        Ok(self.verified)
    }
}

/// Everything [`verify_request_prehashed`] does except the signature check.
pub fn prepare_request(
    auth: &RequestAuth,
    audience: &str,
    method: &str,
    path_and_query: &str,
    body_sha256: &str,
    now_ms: u64,
    kind: RequestKind,
) -> Result<PendingRequest, AuthError> {
    let entity =
        EntityId::parse(&auth.entity).map_err(|_| AuthError::InvalidHeader(HEADER_ENTITY))?;
    let time_ms: u64 = auth
        .time_ms
        .parse()
        .map_err(|_| AuthError::InvalidHeader(HEADER_TIME))?;
    let counter = match (kind, auth.counter.as_str()) {
        (RequestKind::Query, "") => None,
        (RequestKind::Query, _) => return Err(AuthError::InvalidHeader(HEADER_COUNTER)),
        (RequestKind::Command, "") => return Err(AuthError::MissingCounter),
        (RequestKind::Command, text) => {
            // Only canonical decimal: "007" would sign differently from "7" yet name the same key.
            let value: u64 = text
                .parse()
                .map_err(|_| AuthError::InvalidHeader(HEADER_COUNTER))?;
            if value == 0 || value.to_string() != text {
                return Err(AuthError::InvalidHeader(HEADER_COUNTER));
            }
            Some(value)
        }
    };
    let text = signing_string_hashed(
        audience,
        method,
        path_and_query,
        &auth.time_ms,
        &auth.counter,
        body_sha256,
    );
    let signature = crate::b64_decode(&auth.signature).and_then(|s| <[u8; 64]>::try_from(s).ok());
    Ok(PendingRequest {
        verified: VerifiedRequest {
            entity,
            time_ms,
            counter,
            body_sha256: body_sha256.to_owned(),
        },
        message: text.into_bytes(),
        signature,
        stale: now_ms.abs_diff(time_ms) > FRESHNESS_MS_MAX,
    })
}

/// What a server remembers a command by, beside (sender, counter): a hash of its method, path
/// and body. The body alone is not enough: two requests to different paths may carry the same
/// body (a DELETE has none), and a reused counter must not replay the other's answer.
pub fn request_key(method: &str, path_and_query: &str, body_sha256: &str) -> String {
    crate::sha256_hex(
        format!(
            "{}\n{path_and_query}\n{body_sha256}",
            method.to_ascii_uppercase()
        )
        .as_bytes(),
    )
}

/// The response signing string: `LCP-RESPONSE-1\n<sender>\n<counter>\n<status>\n<sha256 of body>`.
pub fn response_signing_string(sender: &str, counter: u64, status: u16, body: &[u8]) -> String {
    format!(
        "{RESPONSE_TAG}\n{sender}\n{counter}\n{status}\n{}",
        crate::sha256_hex(body)
    )
}

/// The server's receipt signature over a command's response.
pub fn sign_response(
    key: &KeyPair,
    sender: &str,
    counter: u64,
    status: u16,
    body: &[u8],
) -> String {
    key.sign_b64(response_signing_string(sender, counter, status, body).as_bytes())
}

/// True when `signature` is `server`'s receipt for this response.
pub fn verify_response(
    server: &EntityId,
    sender: &str,
    counter: u64,
    status: u16,
    body: &[u8],
    signature: &str,
) -> bool {
    server.verify_b64(
        response_signing_string(sender, counter, status, body).as_bytes(),
        signature,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn key() -> KeyPair {
        KeyPair::generate().expect("keygen")
    }

    #[test]
    fn signing_string_has_the_documented_shape() {
        let s = signing_string("ed25519:aa", "post", "/lcp/v1/transfers?x=1", "5", "7", b"");
        assert_eq!(
            s,
            "LCP-REQUEST-1\ned25519:aa\nPOST\n/lcp/v1/transfers?x=1\n5\n7\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_signed_command_verifies_and_reports_its_counter() {
        let k = key();
        let auth = sign_request(&k, "aud", "POST", "/p", NOW, Some(9), b"{}");
        let v = verify_request(
            &auth,
            "aud",
            "POST",
            "/p",
            b"{}",
            NOW + 1000,
            RequestKind::Command,
        )
        .expect("verifies");
        assert_eq!(v.counter, Some(9));
        assert_eq!(&v.entity, k.entity());
    }

    #[test]
    fn a_declared_body_hash_verifies_before_the_body_is_read() {
        let k = key();
        let body = vec![5u8; 100_000];
        let auth = sign_request(&k, "aud", "PUT", "/o", NOW, Some(3), &body);
        assert_eq!(auth.content_sha256, crate::sha256_hex(&body));
        let declared = auth.declared_body_sha256().expect("declared");
        let v = verify_request_prehashed(
            &auth,
            "aud",
            "PUT",
            "/o",
            declared,
            NOW,
            RequestKind::Command,
        )
        .expect("verifies on the declared hash");
        assert_eq!(v.body_sha256, crate::sha256_hex(&body));
        // Another declared hash is not what was signed.
        let other = crate::sha256_hex(b"other");
        assert_eq!(
            verify_request_prehashed(&auth, "aud", "PUT", "/o", &other, NOW, RequestKind::Command),
            Err(AuthError::InvalidSignature)
        );
        // The header travels with the others; a malformed one is not a declaration.
        assert!(auth
            .headers()
            .iter()
            .any(|(n, _)| *n == HEADER_CONTENT_SHA256));
        let mut bad = auth.clone();
        bad.content_sha256 = "XYZ".into();
        assert_eq!(bad.declared_body_sha256(), None);
        // No body, no header.
        let get = sign_request(&k, "aud", "GET", "/o", NOW, None, b"");
        assert!(get
            .headers()
            .iter()
            .all(|(n, _)| *n != HEADER_CONTENT_SHA256));
    }

    #[test]
    fn bad_requests_get_their_codes() {
        let k = key();
        let cmd = sign_request(&k, "aud", "POST", "/p", NOW, Some(1), b"{}");
        let check = |auth: &RequestAuth, aud: &str, now: u64, kind| {
            verify_request(auth, aud, "POST", "/p", b"{}", now, kind)
        };
        assert_eq!(
            check(&cmd, "other", NOW, RequestKind::Command),
            Err(AuthError::InvalidSignature)
        );
        assert_eq!(
            check(
                &cmd,
                "aud",
                NOW + FRESHNESS_MS_MAX + 1,
                RequestKind::Command
            ),
            Err(AuthError::StaleTime)
        );
        assert_eq!(
            check(&cmd, "aud", NOW, RequestKind::Query),
            Err(AuthError::InvalidHeader(HEADER_COUNTER))
        );
        let query = sign_request(&k, "aud", "POST", "/p", NOW, None, b"{}");
        assert_eq!(
            check(&query, "aud", NOW, RequestKind::Command),
            Err(AuthError::MissingCounter)
        );
        let mut padded = cmd.clone();
        padded.counter = "01".into();
        assert_eq!(
            check(&padded, "aud", NOW, RequestKind::Command),
            Err(AuthError::InvalidHeader(HEADER_COUNTER))
        );
        let mut zero = sign_request(&k, "aud", "POST", "/p", NOW, Some(0), b"{}");
        zero.counter = "0".into();
        assert_eq!(
            check(&zero, "aud", NOW, RequestKind::Command),
            Err(AuthError::InvalidHeader(HEADER_COUNTER))
        );
        let mut bad_entity = cmd.clone();
        bad_entity.entity = "bob".into();
        assert_eq!(
            check(&bad_entity, "aud", NOW, RequestKind::Command),
            Err(AuthError::InvalidHeader(HEADER_ENTITY))
        );
        let missing = RequestAuth::from_headers(|name| (name != HEADER_SIGNATURE).then_some("x"));
        assert_eq!(missing, Err(AuthError::MissingHeader(HEADER_SIGNATURE)));
    }

    #[test]
    fn receipts_verify_only_for_the_same_response() {
        let server = key();
        let sig = sign_response(&server, "ed25519:bb", 3, 200, b"{\"ok\":1}");
        assert!(verify_response(
            server.entity(),
            "ed25519:bb",
            3,
            200,
            b"{\"ok\":1}",
            &sig
        ));
        assert!(!verify_response(
            server.entity(),
            "ed25519:bb",
            4,
            200,
            b"{\"ok\":1}",
            &sig
        ));
        assert!(!verify_response(
            server.entity(),
            "ed25519:bb",
            3,
            409,
            b"{\"ok\":1}",
            &sig
        ));
    }
}
