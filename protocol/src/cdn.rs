//! The cdn's wire types (DESIGN section 8): the signed manifest of a content (envelope type
//! `cdn-manifest`) with the piece arithmetic it rests on, and what the publisher's API takes and
//! answers (uploads, the catalog, views, retrieval instructions, bad-piece reports). The
//! publisher, `cdn publish` and the viewer's gateway all speak these.

use serde::{Deserialize, Serialize};

use crate::ledger::Currency;
use crate::{EntityId, Envelope, KeyPair};

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
    crate::sha256_hex(text.as_bytes())[..32].to_owned()
}

/// The Merkle root over the piece hashes (each hash's 32 bytes, concatenated).
pub fn pieces_root(pieces: &[String]) -> String {
    let mut bytes = Vec::with_capacity(pieces.len() * 32);
    for p in pieces {
        bytes.extend(hex::decode(p).unwrap_or_default());
    }
    crate::merkle::MerkleTree::from_bytes(&bytes).root_hex()
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
    pub fn sign(&self, key: &KeyPair) -> Result<Envelope, crate::EnvelopeError> {
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

/// `POST /v1/uploads`: start or resume an upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    pub title: String,
    #[serde(default = "default_mime")]
    pub mime: String,
    pub size: u64,
    pub piece_bytes: u64,
    pub pieces: Vec<String>,
    pub price_per_view: u64,
    pub replicas: u32,
}

fn default_mime() -> String {
    "video/mp4".into()
}

/// The answer to [`UploadRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadAnswer {
    pub content: String,
    /// Pieces that still need uploading.
    pub missing: Vec<u64>,
}

/// The answer to `PUT /v1/uploads/{id}/pieces/{i}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PieceStored {
    pub content: String,
    pub piece: u64,
    /// Replicas of the piece now stored.
    pub replicas: usize,
}

/// The answer to `POST /v1/uploads/{id}/publish`: the signed manifest, now listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Published {
    pub content: String,
    pub manifest: Envelope,
}

/// One published content, as the catalog lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub content: String,
    pub title: String,
    pub mime: String,
    pub size: u64,
    pub price_per_view: u64,
    pub currency: String,
    pub issuer_url: String,
    pub pieces: u64,
}

/// `GET /v1/contents`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Catalog {
    pub contents: Vec<CatalogEntry>,
    /// The currency's code and decimals, for showing prices; `None` when the issuer did not
    /// answer the publisher.
    pub currency_units: Option<Currency>,
}

/// `POST /v1/views`: buy a view of `content` paid with LCP transaction id `view`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuyView {
    pub content: String,
    pub view: String,
    /// The viewer's name at its bank (`alice@bank.example`) when a bank pays for it
    /// (DESIGN 14): the deposit then comes from the bank, naming this payer (`from_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
}

/// A bought view.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewAnswer {
    /// Per-piece sales: what each piece costs, paid with its instructions (0: the view's
    /// price covered everything).
    #[serde(default)]
    pub price_per_piece: u64,
    pub view: String,
    pub content: String,
    pub paid: u64,
    pub expires_at: String,
}

/// `POST /v1/views/{view}/pieces`: instructions for pieces `from .. from + count`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstructionsRequest {
    pub from: u64,
    pub count: u64,
}

/// Where a viewer can fetch one piece.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Source {
    pub agent: String,
    /// The agent's token URL (`GET`, one use).
    pub url: String,
}

/// How to fetch and check one piece.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PieceInstructions {
    pub index: u64,
    pub sha256: String,
    pub size: u64,
    pub sources: Vec<Source>,
}

/// The answer to [`InstructionsRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instructions {
    pub pieces: Vec<PieceInstructions>,
}

/// `POST /v1/views/{view}/reports`: `agent` served bytes for `piece` that do not match the
/// manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BadPiece {
    pub piece: u64,
    pub agent: String,
}

/// The answer to [`BadPiece`]: whether the publisher found the replica bad (and replaced it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BadPieceAnswer {
    pub piece: u64,
    pub confirmed: bool,
}
