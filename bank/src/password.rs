//! Customers' passwords: Argon2id (memory-hard, DESIGN 14) with a random salt, stored as a
//! PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`), so its parameters travel with it.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Shortest password accepted.
pub const PASSWORD_CHARS_MIN: usize = 8;
/// Longest password accepted (hashing cost grows with it).
pub const PASSWORD_BYTES_MAX: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("a password has {PASSWORD_CHARS_MIN} to {PASSWORD_BYTES_MAX} characters")]
    BadLength,
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// Hash `password` with a fresh salt.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    if password.chars().count() < PASSWORD_CHARS_MIN || password.len() > PASSWORD_BYTES_MAX {
        return Err(PasswordError::BadLength);
    }
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| PasswordError::Hash("no randomness".into()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// True when `password` matches the stored `hash`; false for a wrong password or a hash that
/// cannot be read.
pub fn verify(password: &str, hash: &str) -> bool {
    if password.len() > PASSWORD_BYTES_MAX {
        return false;
    }
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_and_another_does_not() {
        let h = hash("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse", &h));
        assert!(!verify("correct horsE", &h));
        assert!(!verify("correct horse", "not a hash"));
        // Salted: the same password hashes differently each time.
        assert_ne!(hash("correct horse").expect("hash"), h);
        assert!(matches!(hash("short"), Err(PasswordError::BadLength)));
    }
}
