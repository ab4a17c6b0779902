//! Property tests: any change to a signed request, response or envelope is detected.

use proptest::prelude::*;
use protocol::{
    sign_request, sign_response, verify_request, verify_response, Envelope, KeyPair, RequestKind,
};
use std::sync::OnceLock;

const NOW: u64 = 1_750_000_000_000;

fn keys() -> &'static (KeyPair, KeyPair) {
    static KEYS: OnceLock<(KeyPair, KeyPair)> = OnceLock::new();
    KEYS.get_or_init(|| {
        (
            KeyPair::generate().expect("keygen"),
            KeyPair::generate().expect("keygen"),
        )
    })
}

/// Flip one bit of `bytes` at `index` (modulo length); an empty input grows a byte instead.
fn mutate(bytes: &[u8], index: usize, bit: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if out.is_empty() {
        out.push(1 << (bit % 8));
    } else {
        let i = index % out.len();
        out[i] ^= 1 << (bit % 8);
    }
    out
}

fn mutate_text(text: &str, index: usize, bit: u8) -> String {
    // Flip within ASCII so the result stays a string the HTTP layer could carry.
    let mut out: Vec<u8> = text.as_bytes().to_vec();
    if out.is_empty() {
        return "x".into();
    }
    let i = index % out.len();
    out[i] ^= 1 << (bit % 7);
    if out[i] == b'\n' || out[i] >= 0x80 {
        out[i] = if text.as_bytes()[i] == b'z' {
            b'y'
        } else {
            b'z'
        };
    }
    String::from_utf8(out).unwrap_or_else(|_| "x".into())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_change_to_a_signed_request_is_detected(
        method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE"]),
        path in "/[a-z0-9/?=&._-]{0,40}",
        body in prop::collection::vec(any::<u8>(), 0..200),
        counter in 1u64..u64::MAX,
        field in 0usize..7,
        index in any::<usize>(),
        bit in any::<u8>(),
    ) {
        let (k, other) = keys();
        let aud = other.entity().to_string();
        let auth = sign_request(k, &aud, method, &path, NOW, Some(counter), &body);
        prop_assert!(verify_request(&auth, &aud, method, &path, &body, NOW, RequestKind::Command).is_ok());

        let (mut a, mut aud2, mut m, mut p, mut b) = (auth.clone(), aud.clone(), method.to_string(), path.clone(), body.clone());
        match field {
            0 => b = mutate(&body, index, bit),
            1 => p = mutate_text(&path, index, bit),
            2 => m = if method == "GET" { "POST".into() } else { "GET".into() },
            3 => aud2 = k.entity().to_string(),
            4 => a.time_ms = (NOW + 1 + (index as u64 % 1000)).to_string(),
            5 => a.counter = counter.wrapping_add(1).max(1).to_string(),
            _ => a.entity = other.entity().to_string(),
        }
        prop_assume!(!(field == 1 && p == path));
        prop_assert!(verify_request(&a, &aud2, &m, &p, &b, NOW, RequestKind::Command).is_err());
    }

    #[test]
    fn any_change_to_a_signed_response_is_detected(
        body in prop::collection::vec(any::<u8>(), 0..200),
        counter in 1u64..u64::MAX,
        status in 100u16..600,
        field in 0usize..4,
        index in any::<usize>(),
        bit in any::<u8>(),
    ) {
        let (server, sender) = keys();
        let sender_id = sender.entity().to_string();
        let sig = sign_response(server, &sender_id, counter, status, &body);
        prop_assert!(verify_response(server.entity(), &sender_id, counter, status, &body, &sig));
        let (mut s, mut c, mut st, mut b) = (sender_id.clone(), counter, status, body.clone());
        match field {
            0 => b = mutate(&body, index, bit),
            1 => c = counter ^ (1 << (bit % 63)),
            2 => st = if status == 200 { 201 } else { 200 },
            _ => s = server.entity().to_string(),
        }
        prop_assert!(!verify_response(server.entity(), &s, c, st, &b, &sig));
        // And a receipt is bound to its server.
        prop_assert!(!verify_response(sender.entity(), &sender_id, counter, status, &body, &sig));
    }

    #[test]
    fn any_change_to_a_signed_envelope_is_detected(
        kind in "[a-z]{1,12}",
        payload in "[ -~]{0,200}",
        field in 0usize..4,
        index in any::<usize>(),
        bit in any::<u8>(),
    ) {
        let (k, other) = keys();
        let env = Envelope::sign(k, &kind, payload.clone());
        prop_assert!(env.verify().is_ok());
        let mut e = env.clone();
        match field {
            0 => e.payload = mutate_text(&payload, index, bit),
            1 => e.kind = format!("{kind}x"),
            2 => e.signer = other.entity().to_string(),
            _ => e.signature = protocol::b64_encode(&mutate(&protocol::b64_decode(&env.signature).unwrap_or_default(), index, bit)),
        }
        prop_assume!(e != env);
        prop_assert!(e.verify().is_err());
    }
}
