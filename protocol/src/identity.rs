//! Ed25519 identities (ring). An entity id is `ed25519:` + 64 lowercase hex digits of the public key.

use std::fmt;

use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde::{Deserialize, Serialize};

pub const ENTITY_PREFIX: &str = "ed25519:";
const PUBLIC_KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("entity id must be `ed25519:` followed by 64 lowercase hex digits")]
    InvalidEntityId,
    #[error("not a valid Ed25519 PKCS#8 private key")]
    InvalidKey,
    #[error("the system random number generator failed")]
    Random,
}

/// A validated entity id. Construct with [`EntityId::parse`]; the inner string is canonical.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EntityId(String);

impl EntityId {
    pub fn parse(text: &str) -> Result<Self, IdentityError> {
        let hex_part = text
            .strip_prefix(ENTITY_PREFIX)
            .ok_or(IdentityError::InvalidEntityId)?;
        let well_formed = hex_part.len() == PUBLIC_KEY_BYTES * 2
            && hex_part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !well_formed {
            return Err(IdentityError::InvalidEntityId);
        }
        Ok(EntityId(text.to_owned()))
    }

    pub fn from_public_key(public_key: &[u8]) -> Self {
        EntityId(format!("{ENTITY_PREFIX}{}", hex::encode(public_key)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.public_key_bytes().to_vec()
    }

    /// True when `signature` is this entity's Ed25519 signature of `message`.
    /// Verified by [`crate::ed25519::verify`]: the same rule as a batch check.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        crate::ed25519::verify(&self.public_key_bytes(), message, &signature)
    }

    /// The public key's 32 bytes (the hex after the prefix, decoded).
    pub fn public_key_bytes(&self) -> [u8; 32] {
        let mut key = [0u8; 32];
        // Invariant: `parse`/`from_public_key` only admit 64 hex digits after the prefix.
        let _ = hex::decode_to_slice(&self.0[ENTITY_PREFIX.len()..], &mut key);
        key
    }

    /// Verify a base64url signature.
    pub fn verify_b64(&self, message: &[u8], signature_b64: &str) -> bool {
        match crate::b64_decode(signature_b64) {
            Some(sig) => self.verify(message, &sig),
            None => false,
        }
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntityId({})", self.0)
    }
}

impl TryFrom<String> for EntityId {
    type Error = IdentityError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        EntityId::parse(&value)
    }
}

impl From<EntityId> for String {
    fn from(value: EntityId) -> Self {
        value.0
    }
}

impl std::str::FromStr for EntityId {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EntityId::parse(s)
    }
}

/// An Ed25519 key pair with its PKCS#8 document (the key file's content).
///
/// ring parses, generates and checks the key; signatures are made with the same seed by
/// ed25519-zebra when the document holds it where ring's own documents do (about a quarter
/// less CPU per signature on this project's machines, issue 21). Ed25519 signatures are
/// deterministic, so both make the same bytes; the two public keys are compared when the key
/// is loaded, and ring signs when they could not be.
pub struct KeyPair {
    pair: Ed25519KeyPair,
    fast: Option<ed25519_zebra::SigningKey>,
    pkcs8: Vec<u8>,
    entity: EntityId,
}

/// The start of the PKCS#8 (RFC 8410) document of an Ed25519 key, up to its 32-byte seed:
/// a SEQUENCE, version, the Ed25519 algorithm id, an OCTET STRING holding an OCTET STRING.
/// ring's v2 documents (with the public key after the seed) begin with the v2 form, v1
/// documents with the v1 form.
const PKCS8_SEED_PREFIXES: [[u8; 16]; 2] = [
    [
        0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ],
    [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ],
];

/// The zebra signing key for a PKCS#8 document's seed, if it is where ring puts it and
/// derives the same public key as ring did.
fn fast_signer(pkcs8: &[u8], public_key: &[u8]) -> Option<ed25519_zebra::SigningKey> {
    let prefix = pkcs8.get(..16)?;
    if !PKCS8_SEED_PREFIXES.iter().any(|p| p == prefix) {
        return None;
    }
    let seed: [u8; 32] = pkcs8.get(16..48)?.try_into().ok()?;
    let signer = ed25519_zebra::SigningKey::from(seed);
    let derived: [u8; 32] = ed25519_zebra::VerificationKeyBytes::from(&signer).into();
    (derived.as_slice() == public_key).then_some(signer)
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print private key material.
        write!(f, "KeyPair({})", self.entity)
    }
}

impl KeyPair {
    pub fn generate() -> Result<Self, IdentityError> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| IdentityError::Random)?;
        Self::from_pkcs8(doc.as_ref())
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, IdentityError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| IdentityError::InvalidKey)?;
        let entity = EntityId::from_public_key(pair.public_key().as_ref());
        Ok(KeyPair {
            fast: fast_signer(pkcs8, pair.public_key().as_ref()),
            pair,
            pkcs8: pkcs8.to_vec(),
            entity,
        })
    }

    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    pub fn entity(&self) -> &EntityId {
        &self.entity
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.fast {
            Some(signer) => <[u8; 64]>::from(signer.sign(message)).to_vec(),
            None => self.pair.sign(message).as_ref().to_vec(),
        }
    }

    pub fn sign_b64(&self, message: &[u8]) -> String {
        crate::b64_encode(&self.sign(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_signers_make_the_same_signature() {
        for _ in 0..16 {
            let key = KeyPair::generate().expect("keygen");
            assert!(
                key.fast.is_some(),
                "ring's documents hold the seed where we look"
            );
            for message in [&b""[..], b"x", &[7u8; 300]] {
                assert_eq!(key.sign(message), key.pair.sign(message).as_ref());
            }
        }
        // A document whose seed is not where we look is signed by ring alone.
        let key = KeyPair::generate().expect("keygen");
        let mut other = key.pkcs8().to_vec();
        other[1] ^= 0x01;
        assert!(fast_signer(&other, key.entity().public_key().as_slice()).is_none());
        assert!(fast_signer(key.pkcs8(), &[0u8; 32]).is_none());
    }

    #[test]
    fn entity_ids_are_validated() {
        let key = KeyPair::generate().expect("keygen");
        let id = key.entity().as_str();
        assert!(id.starts_with("ed25519:") && id.len() == 8 + 64);
        assert_eq!(EntityId::parse(id).expect("valid"), *key.entity());
        assert!(EntityId::parse(&id.to_uppercase()).is_err());
        assert!(EntityId::parse(&id[..id.len() - 1]).is_err());
        assert!(EntityId::parse(&id.replace("ed25519:", "rsa:")).is_err());
        assert!(EntityId::parse("").is_err());
    }

    #[test]
    fn pkcs8_round_trip_keeps_identity() {
        let key = KeyPair::generate().expect("keygen");
        let again = KeyPair::from_pkcs8(key.pkcs8()).expect("reload");
        assert_eq!(key.entity(), again.entity());
        let sig = key.sign(b"hello");
        assert!(again.entity().verify(b"hello", &sig));
        assert!(!again.entity().verify(b"hellO", &sig));
        assert!(KeyPair::from_pkcs8(b"not a key").is_err());
    }
}
