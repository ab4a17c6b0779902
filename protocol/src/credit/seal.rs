//! A payment's secret sealed to its target (DESIGN 12, seed 003's "encrypts it using the
//! public key of the target"): X25519 with a fresh key per seal, HKDF-SHA256, AES-256-GCM.
//! Only the target opens it, so no hop on the way can fulfil early.
//!
//! - A node's credit key is derived from its Ed25519 key ([`CreditKey::of`]): no second key
//!   file to keep, and the public half is shown as `credit_key` (64 hex) in the descriptor.
//! - The descriptor also shows `credit_key_signature`: the node's Ed25519 signature over
//!   [`KEY_SIGNING_TAG`] and the key's hex ([`CreditKey::signature`]), so a payer seals only
//!   to a key the target itself vouches for, whoever served the descriptor
//!   ([`verify_credit_key`]).
//! - Sealed form (base64url, no padding): the sender's ephemeral public key (32 bytes), the
//!   nonce (12), then the ciphertext of the 32-byte secret with its tag (48). The condition
//!   is the additional data, so a sealed secret cannot be moved to another payment.

use base64::Engine;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use x25519_dalek::{PublicKey, StaticSecret};

use super::{CreditError, SECRET_BYTES};
use crate::KeyPair;

/// Domain separation of the derived credit key and of the sealing key schedule.
const KEY_DOMAIN: &[u8] = b"LCP-CREDIT-KEY-1\n";
const SEAL_SALT: &[u8] = b"LCP-CREDIT-SEAL-1";
/// What a node signs to vouch for its credit key: this tag, then the key's 64 hex digits.
pub const KEY_SIGNING_TAG: &str = "lcp-credit-key:1\n";
const SEALED_BYTES: usize = 32 + 12 + SECRET_BYTES + 16;

/// A node's X25519 key for opening the secrets sealed to it.
pub struct CreditKey {
    secret: StaticSecret,
}

impl std::fmt::Debug for CreditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CreditKey({})", self.public_hex())
    }
}

impl CreditKey {
    /// The credit key of `key`: SHA-256 over a domain tag and the Ed25519 key's PKCS#8.
    pub fn of(key: &KeyPair) -> CreditKey {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(KEY_DOMAIN);
        ctx.update(key.pkcs8());
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(ctx.finish().as_ref());
        CreditKey {
            secret: StaticSecret::from(bytes),
        }
    }

    /// The public half, 64 lowercase hex digits.
    pub fn public_hex(&self) -> String {
        hex::encode(PublicKey::from(&self.secret).as_bytes())
    }

    /// `key`'s signature (base64) over this credit key, shown as `credit_key_signature`.
    pub fn signature(&self, key: &KeyPair) -> String {
        key.sign_b64(format!("{KEY_SIGNING_TAG}{}", self.public_hex()).as_bytes())
    }

    /// Open a secret sealed to this key for `condition`, and check that it fulfils it.
    pub fn open(&self, sealed: &str, condition: &str) -> Result<[u8; SECRET_BYTES], CreditError> {
        let bad = || CreditError::Malformed("the sealed secret does not open".into());
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| bad())?;
        if raw.len() != SEALED_BYTES {
            return Err(bad());
        }
        let mut eph = [0u8; 32];
        eph.copy_from_slice(&raw[..32]);
        let eph = PublicKey::from(eph);
        let shared = self.secret.diffie_hellman(&eph);
        let me = PublicKey::from(&self.secret);
        let key = aead_key(shared.as_bytes(), eph.as_bytes(), me.as_bytes()).ok_or_else(bad)?;
        let nonce = Nonce::try_assume_unique_for_key(&raw[32..44]).map_err(|_| bad())?;
        let mut body = raw[44..].to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(condition.as_bytes()), &mut body)
            .map_err(|_| bad())?;
        let secret: [u8; SECRET_BYTES] = plain.try_into().map_err(|_| bad())?;
        if super::condition_of(&secret) != condition {
            return Err(CreditError::WrongSecret);
        }
        Ok(secret)
    }
}

/// Whether `signature` (base64) is `entity`'s over the credit key `key_hex`.
pub fn verify_credit_key(entity: &crate::EntityId, key_hex: &str, signature: &str) -> bool {
    entity.verify_b64(format!("{KEY_SIGNING_TAG}{key_hex}").as_bytes(), signature)
}

/// Seal `secret` to the target whose credit key is `target_hex`, for `condition`.
pub fn seal(
    secret: &[u8; SECRET_BYTES],
    condition: &str,
    target_hex: &str,
) -> Result<String, CreditError> {
    let bad = |m: &str| CreditError::Malformed(m.to_owned());
    let target: [u8; 32] = hex::decode(target_hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("a credit key is 64 hex digits"))?;
    let target = PublicKey::from(target);
    let rng = SystemRandom::new();
    let mut eph_bytes = [0u8; 32];
    let mut nonce = [0u8; 12];
    rng.fill(&mut eph_bytes)
        .and_then(|()| rng.fill(&mut nonce))
        .map_err(|_| bad("no random source"))?;
    let eph = StaticSecret::from(eph_bytes);
    let eph_public = PublicKey::from(&eph);
    let shared = eph.diffie_hellman(&target);
    let key = aead_key(shared.as_bytes(), eph_public.as_bytes(), target.as_bytes())
        .ok_or_else(|| bad("key schedule"))?;
    let mut body = secret.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(condition.as_bytes()),
        &mut body,
    )
    .map_err(|_| bad("sealing failed"))?;
    let mut out = Vec::with_capacity(SEALED_BYTES);
    out.extend_from_slice(eph_public.as_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out))
}

/// AES-256-GCM key from the shared point, bound to both public keys.
fn aead_key(shared: &[u8; 32], eph: &[u8; 32], target: &[u8; 32]) -> Option<LessSafeKey> {
    // A low-order point gives an all-zero shared secret: refuse it.
    if shared.iter().all(|&b| b == 0) {
        return None;
    }
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, SEAL_SALT);
    let prk = salt.extract(shared);
    let info = [eph.as_slice(), target.as_slice()];
    let okm = prk.expand(&info, &aead::AES_256_GCM).ok()?;
    let mut key = [0u8; 32];
    okm.fill(&mut key).ok()?;
    UnboundKey::new(&aead::AES_256_GCM, &key)
        .ok()
        .map(LessSafeKey::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_target_opens_a_sealed_secret_for_its_condition() {
        let target = CreditKey::of(&KeyPair::generate().expect("key"));
        let other = CreditKey::of(&KeyPair::generate().expect("key"));
        let secret = [7u8; SECRET_BYTES];
        let condition = super::super::condition_of(&secret);
        let sealed = seal(&secret, &condition, &target.public_hex()).expect("seal");
        assert_eq!(target.open(&sealed, &condition).expect("open"), secret);
        assert!(other.open(&sealed, &condition).is_err(), "another key");
        let wrong = super::super::condition_of(&[8u8; SECRET_BYTES]);
        assert!(target.open(&sealed, &wrong).is_err(), "another payment");
        let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&sealed)
            .expect("b64");
        raw[50] ^= 1;
        let tampered = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        assert!(target.open(&tampered, &condition).is_err(), "tampered");
        assert!(target.open("not base64!", &condition).is_err());
        assert!(seal(&secret, &condition, "abcd").is_err(), "short key");
    }

    #[test]
    fn the_credit_key_is_fixed_by_the_signing_key() {
        let key = KeyPair::generate().expect("key");
        let again = KeyPair::from_pkcs8(key.pkcs8()).expect("reload");
        assert_eq!(
            CreditKey::of(&key).public_hex(),
            CreditKey::of(&again).public_hex()
        );
        assert_eq!(CreditKey::of(&key).public_hex().len(), 64);
    }

    #[test]
    fn a_credit_key_is_vouched_for_by_its_own_node_only() {
        let (key, other) = (
            KeyPair::generate().expect("key"),
            KeyPair::generate().expect("key"),
        );
        let ck = CreditKey::of(&key);
        let sig = ck.signature(&key);
        assert!(verify_credit_key(key.entity(), &ck.public_hex(), &sig));
        // Another node's key under this node's signature, or this key signed by another.
        let theirs = CreditKey::of(&other);
        assert!(!verify_credit_key(key.entity(), &theirs.public_hex(), &sig));
        assert!(!verify_credit_key(
            key.entity(),
            &ck.public_hex(),
            &ck.signature(&other)
        ));
        assert!(!verify_credit_key(
            key.entity(),
            &ck.public_hex(),
            "not base64"
        ));
    }
}
