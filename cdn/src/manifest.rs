//! The signed manifest of a content (envelope type `cdn-manifest`), piece arithmetic and
//! `Range` parsing. Pure: no IO.

use protocol::{EntityId, Envelope, KeyPair};
use serde::{Deserialize, Serialize};

pub const MANIFEST_TYPE: &str = "cdn-manifest";
/// Default piece size (DESIGN section 8).
pub const PIECE_BYTES_DEFAULT: u64 = 1 << 20;
/// Bounds on the piece size: small enough to bound the gateway's memory, large enough to keep
/// the number of tokens per view sane.
pub const PIECE_BYTES_MIN: u64 = 16 << 10;
pub const PIECE_BYTES_MAX: u64 = 8 << 20;
/// Largest content: 64 GiB.
pub const CONTENT_BYTES_MAX: u64 = 64 << 30;

/// What a viewer needs to verify a content: the piece hashes, signed by the publisher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub content: String,
    pub publisher: EntityId,
    pub title: String,
    pub mime: String,
    pub size: u64,
    pub piece_bytes: u64,
    /// SHA-256 of each piece, hex.
    pub pieces: Vec<String>,
    /// Merkle root (DESIGN section 5 tree) over the concatenated piece hashes.
    pub pieces_root: String,
    pub price_per_view: u64,
    /// The issuer of the currency views are priced in.
    pub currency: EntityId,
    pub issuer_url: String,
}

/// The content id: the first 32 hex digits of SHA-256 over the size, the piece size and the
/// piece hashes, so the same file published twice is one content.
pub fn content_id(size: u64, piece_bytes: u64, pieces: &[String]) -> String {
    let mut text = format!("{size}\n{piece_bytes}\n");
    for p in pieces {
        text.push_str(p);
        text.push('\n');
    }
    protocol::sha256_hex(text.as_bytes())[..32].to_owned()
}

/// The Merkle root over the piece hashes (each hash's 32 bytes, concatenated).
pub fn pieces_root(pieces: &[String]) -> String {
    let mut bytes = Vec::with_capacity(pieces.len() * 32);
    for p in pieces {
        bytes.extend(hex::decode(p).unwrap_or_default());
    }
    protocol::merkle::MerkleTree::from_bytes(&bytes).root_hex()
}

/// Number of pieces of `size` bytes cut in `piece_bytes`.
pub fn piece_count(size: u64, piece_bytes: u64) -> u64 {
    size.div_ceil(piece_bytes.max(1))
}

/// Length of piece `i`.
pub fn piece_len(size: u64, piece_bytes: u64, i: u64) -> u64 {
    size.saturating_sub(i * piece_bytes).min(piece_bytes)
}

fn lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub fn valid_sha256_hex(s: &str) -> bool {
    s.len() == 64 && lower_hex(s)
}

/// A content id as [`content_id`] makes them: 32 lowercase hex digits.
pub fn valid_content_id(s: &str) -> bool {
    s.len() == 32 && lower_hex(s)
}

impl Manifest {
    pub fn sign(&self, key: &KeyPair) -> Result<Envelope, protocol::EnvelopeError> {
        Envelope::sign_json(key, MANIFEST_TYPE, self)
    }

    /// Verify a manifest envelope: signed by `publisher`, consistent piece list and id.
    pub fn open(env: &Envelope, publisher: &EntityId) -> Result<Manifest, String> {
        let (signer, m): (EntityId, Manifest) =
            env.open(MANIFEST_TYPE).map_err(|e| e.to_string())?;
        if &signer != publisher || &m.publisher != publisher {
            return Err("the manifest is not signed by the publisher".into());
        }
        if piece_count(m.size, m.piece_bytes) != m.pieces.len() as u64
            || !(PIECE_BYTES_MIN..=PIECE_BYTES_MAX).contains(&m.piece_bytes)
            || m.content != content_id(m.size, m.piece_bytes, &m.pieces)
            || m.pieces_root != pieces_root(&m.pieces)
        {
            return Err("the manifest's pieces do not match its id".into());
        }
        Ok(m)
    }

    pub fn piece_len(&self, i: u64) -> u64 {
        piece_len(self.size, self.piece_bytes, i)
    }
}

/// An inclusive byte range of a body of `size` bytes, from a `Range` header. `Ok(None)` when
/// there is no header (the whole body); `Err(())` when it cannot be satisfied.
#[allow(clippy::result_unit_err)]
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(h) = header else { return Ok(None) };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        // Unknown units are ignored (RFC 9110: the whole body).
        return Ok(None);
    };
    if spec.contains(',') {
        // Several ranges: serve the whole body, as many servers do.
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    if size == 0 {
        return Err(());
    }
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end: u64 = if b.is_empty() {
            size - 1
        } else {
            b.parse::<u64>().map_err(|_| ())?.min(size - 1)
        };
        if start > end || start >= size {
            return Err(());
        }
        (start, end)
    };
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-"), 10), Ok(Some((0, 9))));
        assert_eq!(parse_range(Some("bytes=2-4"), 10), Ok(Some((2, 4))));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Ok(Some((7, 9))));
        assert_eq!(parse_range(Some("bytes=-30"), 10), Ok(Some((0, 9))));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=4-2"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=x-2"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=-0"), 10), Err(()));
        assert_eq!(parse_range(Some("items=1-2"), 10), Ok(None));
    }

    #[test]
    fn pieces_and_ids() {
        assert_eq!(piece_count(0, 4), 0);
        assert_eq!(piece_count(9, 4), 3);
        assert_eq!(piece_len(9, 4, 2), 1);
        assert_eq!(piece_len(8, 4, 1), 4);
        let p = vec![protocol::sha256_hex(b"a"), protocol::sha256_hex(b"b")];
        let id = content_id(5, 4, &p);
        assert_eq!(id.len(), 32);
        assert_ne!(id, content_id(6, 4, &p));
        assert!(valid_sha256_hex(&p[0]));
        assert!(!valid_sha256_hex("AB"));
        assert!(valid_content_id(&id));
        assert!(!valid_content_id(&id.to_uppercase()));
        assert!(!valid_content_id(&id[..31]));
    }
}
