//! The repository's keys: a random master key wrapped by a password (PBKDF2-HMAC-SHA256),
//! AES-256-GCM for everything stored, and a keyed hash (HMAC-SHA256) naming chunks, so agents
//! learn neither contents nor which chunks two repositories share.

use std::num::NonZeroU32;

pub use ring::aead::NONCE_LEN;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{hmac, pbkdf2};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// PBKDF2 rounds for new key files: about 0.1 s on one core, per guess.
pub const KDF_ITERATIONS: u32 = 300_000;
const MASTER_BYTES: usize = 64;
/// AES-256-GCM's tag.
pub const TAG_LEN: usize = 16;
const SALT_BYTES: usize = 32;

fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| Error::Crypto("the OS random source failed".into()))?;
    Ok(out)
}

/// The master key's two halves in use.
pub struct Keys {
    raw: [u8; MASTER_BYTES],
    data: LessSafeKey,
    id: hmac::Key,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    pub fn generate() -> Result<Keys, Error> {
        Keys::from_raw(random::<MASTER_BYTES>()?)
    }

    fn from_raw(raw: [u8; MASTER_BYTES]) -> Result<Keys, Error> {
        let unbound = UnboundKey::new(&AES_256_GCM, &raw[..32])
            .map_err(|_| Error::Crypto("bad data key".into()))?;
        Ok(Keys {
            raw,
            data: LessSafeKey::new(unbound),
            id: hmac::Key::new(hmac::HMAC_SHA256, &raw[32..]),
        })
    }

    /// The keyed hash that names a chunk (hex).
    pub fn chunk_id(&self, data: &[u8]) -> String {
        hex::encode(hmac::sign(&self.id, data).as_ref())
    }

    /// Encrypt `body` in place with a fresh random nonce: answers the nonce and the tag, for
    /// the caller to lay out as `nonce || body || tag` (what [`Keys::seal`] answers) without
    /// copying the body.
    pub fn seal_parts(&self, body: &mut [u8]) -> Result<([u8; NONCE_LEN], [u8; TAG_LEN]), Error> {
        let nonce = random::<NONCE_LEN>()?;
        let tag = self
            .data
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), body)
            .map_err(|_| Error::Crypto("encryption failed".into()))?;
        let mut tag_bytes = [0u8; TAG_LEN];
        tag_bytes.copy_from_slice(tag.as_ref());
        Ok((nonce, tag_bytes))
    }

    /// `nonce || ciphertext || tag`, with a fresh random nonce.
    pub fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, Error> {
        let mut buf = Vec::with_capacity(NONCE_LEN + plain.len() + TAG_LEN);
        buf.resize(NONCE_LEN, 0);
        buf.extend_from_slice(plain);
        let (nonce, tag) = self.seal_parts(&mut buf[NONCE_LEN..])?;
        buf[..NONCE_LEN].copy_from_slice(&nonce);
        buf.extend_from_slice(&tag);
        Ok(buf)
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, Error> {
        if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(Error::Corrupt("sealed data too short".into()));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| Error::Corrupt("bad nonce".into()))?;
        let mut body = body.to_vec();
        let plain = self
            .data
            .open_in_place(nonce, Aad::empty(), &mut body)
            .map_err(|_| Error::Corrupt("authentication failed: data altered".into()))?;
        let n = plain.len();
        body.truncate(n);
        Ok(body)
    }
}

/// The password-wrapped master key: stored beside every shard set, and exportable.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub version: u32,
    pub repository: String,
    pub kdf: String,
    pub iterations: u32,
    /// Base64.
    pub salt: String,
    /// Base64 of the master key sealed with the password-derived key.
    pub sealed: String,
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(text: &str) -> Result<Vec<u8>, Error> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| Error::Corrupt("key file: bad base64".into()))
}

fn password_key(password: &str, salt: &[u8], iterations: u32) -> Result<Keys, Error> {
    let iterations = NonZeroU32::new(iterations)
        .ok_or_else(|| Error::Corrupt("key file: 0 iterations".into()))?;
    let mut raw = [0u8; MASTER_BYTES];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        password.as_bytes(),
        &mut raw,
    );
    Keys::from_raw(raw)
}

impl KeyFile {
    pub fn wrap(keys: &Keys, repository: &str, password: &str) -> Result<KeyFile, Error> {
        let salt = random::<SALT_BYTES>()?;
        let wrapping = password_key(password, &salt, KDF_ITERATIONS)?;
        Ok(KeyFile {
            version: 1,
            repository: repository.to_owned(),
            kdf: "pbkdf2-hmac-sha256".into(),
            iterations: KDF_ITERATIONS,
            salt: b64(&salt),
            sealed: b64(&wrapping.seal(&keys.raw)?),
        })
    }

    /// The master key, or `Error::WrongPassword`.
    pub fn unwrap(&self, password: &str) -> Result<Keys, Error> {
        if self.kdf != "pbkdf2-hmac-sha256" || self.version != 1 {
            return Err(Error::Corrupt(format!(
                "unknown key file format {}",
                self.kdf
            )));
        }
        let wrapping = password_key(password, &unb64(&self.salt)?, self.iterations)?;
        let raw = wrapping
            .open(&unb64(&self.sealed)?)
            .map_err(|_| Error::WrongPassword)?;
        let raw: [u8; MASTER_BYTES] = raw
            .try_into()
            .map_err(|_| Error::Corrupt("key file: wrong key length".into()))?;
        Keys::from_raw(raw)
    }
}

/// An exported key: the repository's master key in the clear (`backup key export`), which
/// opens the repository instead of the password. Whoever holds it can read every backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExportedKey {
    pub version: u32,
    pub repository: String,
    /// Base64 of the master key.
    pub master: String,
}

impl ExportedKey {
    pub fn new(keys: &Keys, repository: &str) -> ExportedKey {
        ExportedKey {
            version: 1,
            repository: repository.to_owned(),
            master: b64(&keys.raw),
        }
    }

    /// Read an exported key file.
    pub fn load(path: &std::path::Path) -> Result<ExportedKey, Error> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Usage(format!("key file {}: {e}", path.display())))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::Usage(format!(
                "{} is not an exported key file (`backup key export`): {e}",
                path.display()
            ))
        })
    }

    /// The master key, for `repository` only.
    pub fn keys(&self, repository: &str) -> Result<Keys, Error> {
        if self.repository != repository || self.version != 1 {
            return Err(Error::WrongKey(format!(
                "the key file is for repository {}, not {repository}",
                self.repository
            )));
        }
        let raw: [u8; MASTER_BYTES] = unb64(&self.master)
            .ok()
            .and_then(|raw| raw.try_into().ok())
            .ok_or_else(|| Error::WrongKey("the key in it is not a repository key".into()))?;
        Keys::from_raw(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_tamper() {
        let k = Keys::generate().expect("keys");
        let sealed = k.seal(b"hello").expect("seal");
        assert_eq!(k.open(&sealed).expect("open"), b"hello");
        let mut bad = sealed.clone();
        bad[15] ^= 1;
        assert!(k.open(&bad).is_err());
        assert_ne!(
            k.seal(b"hello").expect("seal"),
            sealed,
            "fresh nonce each time"
        );
    }

    #[test]
    fn key_file_needs_the_password() {
        let k = Keys::generate().expect("keys");
        let f = KeyFile::wrap(&k, "repo", "correct horse").expect("wrap");
        let back = f.unwrap("correct horse").expect("unwrap");
        assert_eq!(back.chunk_id(b"x"), k.chunk_id(b"x"));
        assert!(matches!(f.unwrap("wrong"), Err(Error::WrongPassword)));
    }

    #[test]
    fn an_exported_key_opens_its_repository_only() {
        let k = Keys::generate().expect("keys");
        let e = ExportedKey::new(&k, "repo");
        let text = serde_json::to_string(&e).expect("json");
        let back: ExportedKey = serde_json::from_str(&text).expect("parse");
        let opened = back.keys("repo").expect("keys");
        assert_eq!(opened.chunk_id(b"x"), k.chunk_id(b"x"));
        assert_eq!(
            opened.open(&k.seal(b"hi").expect("seal")).expect("open"),
            b"hi"
        );
        assert!(matches!(back.keys("other"), Err(Error::WrongKey(_))));
        // A password-wrapped key file is not an exported key.
        let wrapped =
            serde_json::to_string(&KeyFile::wrap(&k, "repo", "pw").expect("wrap")).expect("json");
        assert!(serde_json::from_str::<ExportedKey>(&wrapped).is_err());
    }
}
