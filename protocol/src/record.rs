//! Records (DESIGN section 11, seed 004's TrustChain): every deal is a pair of half-blocks,
//! one in each party's personal hash chain, each signed by its own party.
//!
//! A half-block names its chain (`public_key`) and place in it (`sequence_number`, from 1), the
//! block before it (`previous_hash`, 64 zeros at sequence 1) and its counter-party
//! (`link_public_key`, and `link_sequence_number`: 0 in a proposal, the proposal's sequence
//! number in an agreement). Its hash and signature cover
//! `LCP-BLOCK-1\n<public_key>\n<sequence_number>\n<link_public_key>\n<link_sequence_number>\n
//! <previous_hash>\n<type>\n<transaction>\n<timestamp>`.
//!
//! Invariants this module checks, and nothing else needs to:
//! - [`HalfBlock::validate`]: well-formed fields and a signature by `public_key` over exactly
//!   the fields (so any change to any field is refused).
//! - [`check_agreement`]: an agreement answers one proposal, byte for byte.
//! - [`check_link`]: consecutive blocks of one chain hash-link.
//! - [`RecordFraud::verify`]: a proof convicts on its own (two validly signed blocks), with no
//!   trust in whoever kept it.

use serde::{Deserialize, Serialize};

use crate::{b64_decode, EntityId, KeyPair};

/// The first line of every half-block's signing string.
pub const BLOCK_DOMAIN: &str = "LCP-BLOCK-1";
/// `previous_hash` of a chain's first block.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Longest `transaction` text.
pub const TRANSACTION_BYTES_MAX: usize = 4_096;
/// Longest `type`.
pub const TYPE_CHARS_MAX: usize = 32;
/// Most blocks one `GET /v1/records` answers.
pub const RECORDS_PAGE_MAX: usize = 1_000;
/// Most proofs one `GET /v1/frauds` answers.
pub const RECORD_FRAUDS_PAGE_MAX: usize = 100;

/// Record types (`type`) written by this system.
pub mod kinds {
    /// A storage contract activated or completed (agent <-> buyer).
    pub const CONTRACT: &str = "contract";
    /// A view sold (publisher <-> viewer).
    pub const VIEW: &str = "view";
    /// Bytes served under tokens, cumulative (agent <-> gateway).
    pub const TOKENS: &str = "tokens";
    /// Paywords redeemed (vendor <-> issuer).
    pub const REDEMPTION: &str = "redemption";
    /// One half of an exchange trade's step: a slice received (trader <-> exchange).
    pub const TRADE: &str = "trade";
}

/// The `trade` record's transaction (DESIGN 14): the receiver of one half of a trade's
/// step says it got the slice; the exchange agrees when its own books show that half
/// confirmed, paid by `from` to `to` in `issuer`'s currency for `amount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TradeRecord {
    pub trade: String,
    /// The half: 2 x step (the taker paid) or 2 x step + 1 (the maker paid).
    pub half: u32,
    pub from: String,
    pub to: String,
    pub issuer: String,
    pub amount: u64,
}

/// The `tokens` record's transaction (DESIGN 11): bytes an agent served a gateway under
/// retrieval tokens, proposed by the gateway (it received them) and agreed by the agent when
/// its own books say each named token was read here and claimed by no one before.
/// `bytes_total` is cumulative: every `tokens` record this gateway and agent agreed, this one
/// included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensRecord {
    /// The tokens read, each as [`token_name`] (never the token: records are public).
    pub tokens: Vec<String>,
    /// Bytes the gateway received through these tokens.
    pub bytes: u64,
    pub bytes_total: u64,
}

/// Most tokens one `tokens` record names (keeps the transaction under
/// [`TRANSACTION_BYTES_MAX`]).
pub const TOKENS_PER_RECORD_MAX: usize = 64;

/// A retrieval token's name in records: the first 32 hex digits of the SHA-256 of its text.
pub fn token_name(token: &str) -> String {
    let mut hex = crate::sha256_hex(token.as_bytes());
    hex.truncate(32);
    hex
}

/// One party's half of a recorded deal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HalfBlock {
    pub public_key: String,
    pub sequence_number: u64,
    pub link_public_key: String,
    /// 0 in a proposal; the proposal's sequence number in an agreement.
    pub link_sequence_number: u64,
    /// Lowercase hex SHA-256 of the block before, [`GENESIS_HASH`] at sequence 1.
    pub previous_hash: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// A JSON text with no line feed, hashed as is.
    pub transaction: String,
    /// Unix ms.
    pub timestamp: u64,
    /// base64url Ed25519 signature by `public_key` over [`HalfBlock::signing_string`].
    pub signature: String,
}

/// Why a half-block, a pair or a proof is refused; [`RecordError::code`] is the stable
/// error code servers answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("malformed half-block: {0}")]
    Malformed(String),
    #[error("the half-block's signature does not verify for its public_key")]
    Signature,
    #[error("the half-block does not link: {0}")]
    Link(String),
    #[error("not an agreement to this proposal: {0}")]
    NotAgreement(String),
    #[error("not a fraud proof: {0}")]
    NotFraud(String),
}

impl RecordError {
    pub fn code(&self) -> &'static str {
        match self {
            RecordError::Malformed(_) => "invalid_block",
            RecordError::Signature => "invalid_block_signature",
            RecordError::Link(_) => "broken_link",
            RecordError::NotAgreement(_) => "invalid_agreement",
            RecordError::NotFraud(_) => "invalid_proof",
        }
    }
}

/// What a party needs to write one half-block.
pub struct BlockFields<'a> {
    pub sequence_number: u64,
    pub link_public_key: &'a str,
    pub link_sequence_number: u64,
    pub previous_hash: &'a str,
    pub kind: &'a str,
    pub transaction: &'a str,
    pub timestamp: u64,
}

impl HalfBlock {
    /// `key`'s half-block with `fields`, signed.
    pub fn sign(key: &KeyPair, fields: BlockFields<'_>) -> HalfBlock {
        let mut block = HalfBlock {
            public_key: key.entity().to_string(),
            sequence_number: fields.sequence_number,
            link_public_key: fields.link_public_key.to_owned(),
            link_sequence_number: fields.link_sequence_number,
            previous_hash: fields.previous_hash.to_owned(),
            kind: fields.kind.to_owned(),
            transaction: fields.transaction.to_owned(),
            timestamp: fields.timestamp,
            signature: String::new(),
        };
        block.signature = key.sign_b64(block.signing_string().as_bytes());
        block
    }

    /// `key`'s agreement to `proposal`, at `sequence_number` after `previous_hash` in its own
    /// chain: the same type and transaction, linking back to the proposal.
    pub fn agree(
        key: &KeyPair,
        proposal: &HalfBlock,
        sequence_number: u64,
        previous_hash: &str,
        timestamp: u64,
    ) -> HalfBlock {
        HalfBlock::sign(
            key,
            BlockFields {
                sequence_number,
                link_public_key: &proposal.public_key,
                link_sequence_number: proposal.sequence_number,
                previous_hash,
                kind: &proposal.kind,
                transaction: &proposal.transaction,
                timestamp,
            },
        )
    }

    /// The bytes hashed and signed.
    pub fn signing_string(&self) -> String {
        format!(
            "{BLOCK_DOMAIN}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.public_key,
            self.sequence_number,
            self.link_public_key,
            self.link_sequence_number,
            self.previous_hash,
            self.kind,
            self.transaction,
            self.timestamp
        )
    }

    /// Lowercase hex SHA-256 of the signing string: what the next block's `previous_hash`
    /// names.
    pub fn hash(&self) -> String {
        crate::sha256_hex(self.signing_string().as_bytes())
    }

    pub fn is_proposal(&self) -> bool {
        self.link_sequence_number == 0
    }

    /// Check the fields and the signature. Answers the signer.
    pub fn validate(&self) -> Result<EntityId, RecordError> {
        let bad = |m: &str| Err(RecordError::Malformed(m.to_owned()));
        let signer = EntityId::parse(&self.public_key)
            .map_err(|_| RecordError::Malformed("public_key is not an entity id".into()))?;
        if EntityId::parse(&self.link_public_key).is_err() {
            return bad("link_public_key is not an entity id");
        }
        if self.link_public_key == self.public_key {
            return bad("a half-block cannot link to its own chain");
        }
        if self.sequence_number == 0 {
            return bad("sequence_number starts at 1");
        }
        if !is_hash(&self.previous_hash) {
            return bad("previous_hash must be 64 lowercase hex digits");
        }
        if (self.sequence_number == 1) != (self.previous_hash == GENESIS_HASH) {
            return bad("previous_hash is 64 zeros exactly at sequence 1");
        }
        if self.kind.is_empty()
            || self.kind.len() > TYPE_CHARS_MAX
            || !self
                .kind
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return bad("type must be 1 to 32 of a-z, 0-9, _ and -");
        }
        if self.transaction.len() > TRANSACTION_BYTES_MAX {
            return bad("transaction is longer than 4096 bytes");
        }
        if self.transaction.contains('\n') {
            return bad("transaction must hold no line feed");
        }
        if serde_json::from_str::<serde_json::Value>(&self.transaction).is_err() {
            return bad("transaction must be a JSON text");
        }
        let Some(signature) = b64_decode(&self.signature) else {
            return bad("signature is not base64url");
        };
        if !signer.verify(self.signing_string().as_bytes(), &signature) {
            return Err(RecordError::Signature);
        }
        Ok(signer)
    }

    /// The transaction as JSON (valid blocks always parse).
    pub fn transaction_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.transaction).unwrap_or(serde_json::Value::Null)
    }
}

fn is_hash(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Check that `agreement` answers `proposal`: the proposal's counter-party agrees, linking
/// back to it, to the same type and transaction byte for byte. Both must be valid on their
/// own ([`HalfBlock::validate`]); this checks the pair.
pub fn check_agreement(proposal: &HalfBlock, agreement: &HalfBlock) -> Result<(), RecordError> {
    let bad = |m: &str| Err(RecordError::NotAgreement(m.to_owned()));
    if !proposal.is_proposal() {
        return bad("the first block is not a proposal");
    }
    if agreement.public_key != proposal.link_public_key {
        return bad("signed by another than the proposal's counter-party");
    }
    if agreement.link_public_key != proposal.public_key
        || agreement.link_sequence_number != proposal.sequence_number
    {
        return bad("it links to another block");
    }
    if agreement.kind != proposal.kind || agreement.transaction != proposal.transaction {
        return bad("its type or transaction differs from the proposal's");
    }
    Ok(())
}

/// Check that `next` follows `before` in one chain: the same `public_key`, the next sequence
/// number, and `previous_hash` naming `before`.
pub fn check_link(before: &HalfBlock, next: &HalfBlock) -> Result<(), RecordError> {
    if before.public_key != next.public_key {
        return Err(RecordError::Link("two chains".into()));
    }
    if before.sequence_number.checked_add(1) != Some(next.sequence_number) {
        return Err(RecordError::Link(format!(
            "sequence {} does not follow {}",
            next.sequence_number, before.sequence_number
        )));
    }
    if next.previous_hash != before.hash() {
        return Err(RecordError::Link(format!(
            "the previous_hash of sequence {} is not the hash of sequence {}",
            next.sequence_number, before.sequence_number
        )));
    }
    Ok(())
}

/// Check a run of one chain's blocks: each valid, each linking to the one before. A run from
/// sequence 1 is a whole chain so far.
pub fn check_chain(blocks: &[HalfBlock]) -> Result<(), RecordError> {
    for b in blocks {
        b.validate()?;
    }
    for pair in blocks.windows(2) {
        check_link(&pair[0], &pair[1])?;
    }
    Ok(())
}

/// The two kinds of proof against a chain's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FraudKind {
    /// Two different half-blocks at one sequence number.
    DoubleSign,
    /// A block whose `previous_hash` is not the hash of the block before it.
    BrokenChain,
}

/// A proof that `public_key` forked its chain: two blocks it signed that cannot both be in
/// one honest chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordFraud {
    pub kind: FraudKind,
    pub public_key: String,
    pub sequence_number: u64,
    pub blocks: [HalfBlock; 2],
}

impl RecordFraud {
    /// The proof that `a` and `b` convict their signer, if they do: both valid, one chain,
    /// and either two different blocks at one sequence or a link that does not hold.
    pub fn between(a: &HalfBlock, b: &HalfBlock) -> Option<RecordFraud> {
        if a.public_key != b.public_key || a.validate().is_err() || b.validate().is_err() {
            return None;
        }
        let (first, second) = if a.sequence_number <= b.sequence_number {
            (a, b)
        } else {
            (b, a)
        };
        let kind = if first.sequence_number == second.sequence_number {
            if first == second {
                return None;
            }
            FraudKind::DoubleSign
        } else if first.sequence_number + 1 == second.sequence_number
            && second.previous_hash != first.hash()
        {
            FraudKind::BrokenChain
        } else {
            return None;
        };
        Some(RecordFraud {
            kind,
            public_key: first.public_key.clone(),
            sequence_number: first.sequence_number,
            blocks: [first.clone(), second.clone()],
        })
    }

    /// Check the proof on its own; answers the convicted entity.
    pub fn verify(&self) -> Result<EntityId, RecordError> {
        let [a, b] = &self.blocks;
        let signer = a.validate()?;
        b.validate()?;
        let bad = |m: &str| Err(RecordError::NotFraud(m.to_owned()));
        if a.public_key != self.public_key || b.public_key != self.public_key {
            return bad("the blocks are not both of public_key's chain");
        }
        if a.sequence_number != self.sequence_number {
            return bad("the first block is not at sequence_number");
        }
        match self.kind {
            FraudKind::DoubleSign => {
                if b.sequence_number != a.sequence_number || a == b {
                    return bad("not two different blocks at one sequence number");
                }
            }
            FraudKind::BrokenChain => {
                if a.sequence_number.checked_add(1) != Some(b.sequence_number) {
                    return bad("the blocks are not consecutive");
                }
                if b.previous_hash == a.hash() {
                    return bad("the blocks link");
                }
            }
        }
        Ok(signer)
    }
}

/// `GET /v1/records?public_key=X&from=S`: the blocks of X held here from sequence S on, in
/// order (at most [`RECORDS_PAGE_MAX`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordsPage {
    pub blocks: Vec<HalfBlock>,
    /// The highest sequence number of X held here (0: none).
    pub head: u64,
}

/// `GET /v1/frauds?after=S`: record fraud proofs kept here, in the order they were found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordFraudsPage {
    pub frauds: Vec<RecordFraud>,
    /// The cursor for the next page.
    pub next: u64,
}

#[cfg(test)]
mod tests;
