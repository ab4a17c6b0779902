//! Paywords: NetPay's off-line micropayments over LCP (DESIGN section 10, seed 002).
//!
//! - A **chain** is made by the payer: a random 32-byte `W_n`, then `W_{i-1} = SHA-256(W_i)`
//!   down to the root `W_0`. Word `i` (1 <= i <= n) proves itself by `h^i(W_i) = W_0`.
//! - The issuer (the broker) holds `n x unit` in escrow and signs a **touchstone** naming the
//!   chain, its payer, root, length, unit and expiry.
//! - The payer gives each vendor a **block** `from..=end` of the chain, signed once; a payment
//!   is the highest word handed over so far in that block ([`Payword`]). The vendor verifies
//!   by hashing; no signature per payment.
//! - Two blocks of one chain, for two vendors, that overlap are a double spend: the
//!   [`FraudProof`] holds both and verifies on its own.

use serde::{Deserialize, Serialize};

use crate::envelope::{Envelope, EnvelopeError};
use crate::identity::{EntityId, KeyPair};

/// The longest chain an issuer sells (DESIGN 10).
pub const CHAIN_LENGTH_MAX: u64 = 1_000_000;
/// The longest a chain may run before it expires (90 days).
pub const CHAIN_EXPIRES_IN_S_MAX: u64 = 90 * 86_400;
/// A chain's life when the buyer does not say (30 days).
pub const CHAIN_EXPIRES_IN_S_DEFAULT: u64 = 30 * 86_400;
/// Redemptions in one `POST /lcp/v1/redemptions` at most.
pub const REDEMPTIONS_MAX: usize = 256;
/// After a chain's expiry, how long its vendors may still redeem before the escrow's rest goes
/// back to the payer (DESIGN 10's `REDEEM_GRACE_S`).
pub const REDEEM_GRACE_S: u64 = 86_400;
/// Fraud proofs in one `GET /lcp/v1/frauds` page at most.
pub const FRAUDS_PAGE_MAX: usize = 100;

/// The header a charged request carries its payment in.
pub const HEADER_PAYWORD: &str = "LCP-Payword";
/// The header that may carry the chain's touchstone (base64url of the envelope's JSON).
pub const HEADER_TOUCHSTONE: &str = "LCP-Touchstone";
/// The envelope type of a touchstone.
pub const TOUCHSTONE_TYPE: &str = "touchstone";
/// The signing string's first line of a block.
const BLOCK_TAG: &str = "LCP-PAYWORD-1";

/// One word of a chain: 32 bytes, lowercase hex on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Word(pub [u8; 32]);

impl Word {
    /// A fresh random word (a chain's seed `W_n`).
    pub fn random() -> Result<Word, PaywordError> {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| PaywordError::Random)?;
        Ok(Word(bytes))
    }

    pub fn parse(text: &str) -> Result<Word, PaywordError> {
        if text.len() != 64 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(PaywordError::Malformed(
                "a word is 64 lowercase hex digits".into(),
            ));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes)
            .map_err(|_| PaywordError::Malformed("a word is 64 lowercase hex digits".into()))?;
        Ok(Word(bytes))
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// `SHA-256(self)`: one step toward the root.
    pub fn hashed(&self) -> Word {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.0);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        Word(bytes)
    }

    /// `h^steps(self)`.
    pub fn hashed_times(&self, steps: u64) -> Word {
        let mut w = *self;
        for _ in 0..steps {
            w = w.hashed();
        }
        w
    }
}

impl Serialize for Word {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for Word {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Word::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaywordError {
    #[error("no randomness available")]
    Random,
    #[error("malformed payword: {0}")]
    Malformed(String),
    #[error("the touchstone does not verify: {0}")]
    Touchstone(String),
    #[error("the block signature does not verify for this vendor")]
    BlockSignature,
    #[error("the word does not hash to the one held")]
    WrongWord,
    #[error("{0}")]
    Range(String),
}

/// `POST /lcp/v1/chains` (a command): buy a chain of `length` words of `unit` each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainPurchase {
    pub root: Word,
    pub length: u64,
    pub unit: u64,
    #[serde(default)]
    pub expires_in_s: Option<u64>,
}

/// The touchstone's payload: what every vendor checks a payment against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Touchstone {
    /// A UUID v4 chosen by the issuer.
    pub chain: String,
    pub issuer: String,
    pub payer: String,
    pub root: Word,
    pub length: u64,
    pub unit: u64,
    /// RFC 3339, UTC.
    pub expires_at: String,
}

/// A touchstone with its envelope, checked: signed by the issuer it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTouchstone {
    pub touchstone: Touchstone,
    pub envelope: Envelope,
    pub issuer: EntityId,
    pub payer: EntityId,
    /// Unix seconds.
    pub expires_at_s: i64,
}

impl OpenTouchstone {
    /// Verify an envelope as a touchstone: the type, the signature, the signer being the
    /// issuer it names, and every field well formed.
    pub fn open(envelope: &Envelope) -> Result<OpenTouchstone, PaywordError> {
        let bad = |e: EnvelopeError| PaywordError::Touchstone(e.to_string());
        let (signer, touchstone): (EntityId, Touchstone) =
            envelope.open(TOUCHSTONE_TYPE).map_err(bad)?;
        if signer.as_str() != touchstone.issuer {
            return Err(PaywordError::Touchstone(
                "it is not signed by the issuer it names".into(),
            ));
        }
        let payer = EntityId::parse(&touchstone.payer)
            .map_err(|_| PaywordError::Touchstone("the payer is not an entity id".into()))?;
        if !crate::market::is_uuid_v4(&touchstone.chain) {
            return Err(PaywordError::Touchstone(
                "the chain id is not a UUID".into(),
            ));
        }
        if touchstone.length == 0 || touchstone.length > CHAIN_LENGTH_MAX || touchstone.unit == 0 {
            return Err(PaywordError::Touchstone(
                "length or unit out of range".into(),
            ));
        }
        let expires_at_s = crate::market::parse_rfc3339(&touchstone.expires_at)
            .ok_or_else(|| PaywordError::Touchstone("expires_at is not RFC 3339".into()))?;
        Ok(OpenTouchstone {
            touchstone,
            envelope: envelope.clone(),
            issuer: signer,
            payer,
            expires_at_s,
        })
    }

    /// The header form: base64url of the envelope's JSON.
    pub fn header_value(&self) -> String {
        envelope_header_value(&self.envelope)
    }

    /// Parse [`HEADER_TOUCHSTONE`]'s value.
    pub fn from_header(value: &str) -> Result<OpenTouchstone, PaywordError> {
        let bytes = crate::b64_decode(value.trim())
            .ok_or_else(|| PaywordError::Touchstone("the header is not base64url".into()))?;
        let envelope: Envelope = serde_json::from_slice(&bytes)
            .map_err(|e| PaywordError::Touchstone(format!("not an envelope: {e}")))?;
        OpenTouchstone::open(&envelope)
    }

    /// Words `from..=end` fit the chain.
    pub fn check_block_range(&self, from: u64, end: u64) -> Result<(), PaywordError> {
        if from == 0 || from > end || end > self.touchstone.length {
            return Err(PaywordError::Range(format!(
                "a block must satisfy 1 <= from <= end <= length ({}); got {from}..={end}",
                self.touchstone.length
            )));
        }
        Ok(())
    }
}

/// Base64url of an envelope's JSON, for a header.
pub fn envelope_header_value(envelope: &Envelope) -> String {
    // Invariant: an Envelope is four strings; serializing it cannot fail.
    crate::b64_encode(
        serde_json::to_string(envelope)
            .unwrap_or_default()
            .as_bytes(),
    )
}

/// `LCP-PAYWORD-1\n<chain>\n<vendor id>\n<from>\n<end>`: what the payer signs once per block.
pub fn block_signing_string(chain: &str, vendor: &str, from: u64, end: u64) -> String {
    format!("{BLOCK_TAG}\n{chain}\n{vendor}\n{from}\n{end}")
}

/// The payer's signature over a block.
pub fn sign_block(key: &KeyPair, chain: &str, vendor: &EntityId, from: u64, end: u64) -> String {
    key.sign_b64(block_signing_string(chain, vendor.as_str(), from, end).as_bytes())
}

/// Is `signature` the payer's over the block `from..=end` of `chain` for `vendor`?
pub fn verify_block(
    payer: &EntityId,
    chain: &str,
    vendor: &EntityId,
    from: u64,
    end: u64,
    signature: &str,
) -> bool {
    payer.verify_b64(
        block_signing_string(chain, vendor.as_str(), from, end).as_bytes(),
        signature,
    )
}

/// A payment (the `LCP-Payword` header) and a redemption item alike: within the block
/// `from..=end` of `chain`, the payer has handed the words `from..=to` over, `word` being
/// `W_to`; `signature` is the block's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payword {
    pub chain: String,
    pub from: u64,
    pub end: u64,
    pub to: u64,
    pub word: Word,
    pub signature: String,
}

impl Payword {
    /// `chain;from;end;to;word;signature` (DESIGN 10).
    pub fn header_value(&self) -> String {
        format!(
            "{};{};{};{};{};{}",
            self.chain,
            self.from,
            self.end,
            self.to,
            self.word.hex(),
            self.signature
        )
    }

    /// Parse the header's value; numbers in canonical decimal.
    pub fn parse_header(value: &str) -> Result<Payword, PaywordError> {
        let parts: Vec<&str> = value.trim().split(';').collect();
        let [chain, from, end, to, word, signature] = parts.as_slice() else {
            return Err(PaywordError::Malformed(
                "expected chain;from;end;to;word;signature".into(),
            ));
        };
        let number = |text: &str, what: &str| -> Result<u64, PaywordError> {
            let canonical = !text.is_empty()
                && text.bytes().all(|b| b.is_ascii_digit())
                && (text == "0" || !text.starts_with('0'));
            text.parse::<u64>()
                .ok()
                .filter(|_| canonical)
                .ok_or_else(|| PaywordError::Malformed(format!("{what} is not a decimal number")))
        };
        if !crate::market::is_uuid_v4(chain) {
            return Err(PaywordError::Malformed("the chain id is not a UUID".into()));
        }
        if signature.is_empty() || crate::b64_decode(signature).is_none() {
            return Err(PaywordError::Malformed(
                "the block signature is not base64url".into(),
            ));
        }
        let p = Payword {
            chain: (*chain).to_owned(),
            from: number(from, "from")?,
            end: number(end, "end")?,
            to: number(to, "to")?,
            word: Word::parse(word)?,
            signature: (*signature).to_owned(),
        };
        if p.from == 0 || p.from > p.to || p.to > p.end {
            return Err(PaywordError::Range(format!(
                "a payword must satisfy 1 <= from <= to <= end; got {}..={} of {}..={}",
                p.from, p.to, p.from, p.end
            )));
        }
        Ok(p)
    }

    /// Check the word against what is held: `held` is `(index, word)` of the highest word of
    /// this block already verified, or `None` for a new block (then the root at index 0).
    /// Answers the number of new words. Hashes `to - index` times; at most `length`.
    pub fn verify_word(&self, held: (u64, Word)) -> Result<u64, PaywordError> {
        let (index, word) = held;
        if self.to <= index {
            return Ok(0);
        }
        if self.word.hashed_times(self.to - index) != word {
            return Err(PaywordError::WrongWord);
        }
        Ok(self.to - index)
    }
}

/// `POST /lcp/v1/redemptions`'s body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedemptionsRequest {
    pub redemptions: Vec<Payword>,
}

/// The answer to one redemption item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedemptionResult {
    pub chain: String,
    pub to: u64,
    /// `success` or an error code (`invalid_payword`, `unknown_chain`, `chain_closed`, ...).
    pub result: String,
    /// Words newly paid by this item (0 when they were redeemed before: idempotent).
    #[serde(default)]
    pub words: u64,
    /// Credited to the vendor, fee deducted.
    #[serde(default)]
    pub amount: u64,
    #[serde(default)]
    pub fee: u64,
    /// What this item was owed and could not be paid (a double spend's victim).
    #[serde(default)]
    pub shortfall: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `POST /lcp/v1/redemptions`'s answer: one result per item, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedemptionsAnswer {
    pub results: Vec<RedemptionResult>,
    pub balance: i64,
}

/// `POST /lcp/v1/chains`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainReceipt {
    pub chain: String,
    pub touchstone: Envelope,
    /// `length x unit` held in escrow.
    pub escrow: u64,
    pub fee: u64,
    pub balance: i64,
}

/// A range of a chain one vendor redeemed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedeemedRange {
    pub vendor: String,
    pub from: u64,
    pub end: u64,
    /// Redeemed up to and including this word.
    pub to: u64,
}

/// `GET /lcp/v1/chains/{chain}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainStatus {
    pub touchstone: Envelope,
    pub redeemed: Vec<RedeemedRange>,
    /// What the escrow still holds.
    pub escrow: u64,
    /// The escrow's rest went back to the payer (after expiry and grace).
    pub closed: bool,
}

/// One block as a fraud proof quotes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedBlock {
    pub vendor: String,
    pub from: u64,
    pub end: u64,
    pub signature: String,
}

/// Two overlapping blocks of one chain, for two vendors, both signed by the payer: checkable
/// by anyone holding the issuer's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FraudProof {
    /// The issuer's cursor for `GET /lcp/v1/frauds?after=`.
    pub seq: u64,
    pub touchstone: Envelope,
    pub blocks: [SignedBlock; 2],
    /// What the issuer could not pay the vendors (escrow and the payer's balance both spent).
    pub shortfall: u64,
}

impl FraudProof {
    /// Check the proof on its own: the touchstone signed by `issuer`, both blocks signed by
    /// its payer, for two different vendors, overlapping within the chain. Answers the payer.
    pub fn verify(&self, issuer: &EntityId) -> Result<EntityId, PaywordError> {
        let t = OpenTouchstone::open(&self.touchstone)?;
        if &t.issuer != issuer {
            return Err(PaywordError::Touchstone(
                "the touchstone is another issuer's".into(),
            ));
        }
        let [a, b] = &self.blocks;
        if a.vendor == b.vendor {
            return Err(PaywordError::Range("both blocks are for one vendor".into()));
        }
        for block in [a, b] {
            t.check_block_range(block.from, block.end)?;
            let vendor = EntityId::parse(&block.vendor)
                .map_err(|_| PaywordError::Malformed("a vendor is not an entity id".into()))?;
            if !verify_block(
                &t.payer,
                &t.touchstone.chain,
                &vendor,
                block.from,
                block.end,
                &block.signature,
            ) {
                return Err(PaywordError::BlockSignature);
            }
        }
        if a.end < b.from || b.end < a.from {
            return Err(PaywordError::Range("the blocks do not overlap".into()));
        }
        Ok(t.payer)
    }
}

/// `GET /lcp/v1/frauds?after=S`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FraudsPage {
    pub frauds: Vec<FraudProof>,
    pub next: u64,
}

/// The payword limits an issuer's descriptor states (`paywords` object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaywordLimits {
    pub chain_length_max: u64,
    pub expires_in_s_max: u64,
    pub redemptions_max: usize,
    pub redeem_grace_s: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touchstone(issuer: &KeyPair, payer: &EntityId, root: Word, length: u64) -> OpenTouchstone {
        let t = Touchstone {
            chain: "0b4e8a3c-7f2d-4c1e-9a5b-3d6f8e2a1c4b".into(),
            issuer: issuer.entity().to_string(),
            payer: payer.to_string(),
            root,
            length,
            unit: 3,
            expires_at: "2027-01-01T00:00:00Z".into(),
        };
        let env = Envelope::sign_json(issuer, TOUCHSTONE_TYPE, &t).expect("sign");
        OpenTouchstone::open(&env).expect("opens")
    }

    #[test]
    fn words_hash_to_the_root_and_headers_round_trip() {
        let seed = Word::random().expect("random");
        let root = seed.hashed_times(10);
        let w4 = seed.hashed_times(6);
        let p = Payword {
            chain: "0b4e8a3c-7f2d-4c1e-9a5b-3d6f8e2a1c4b".into(),
            from: 1,
            end: 10,
            to: 4,
            word: w4,
            signature: "c2ln".into(),
        };
        assert_eq!(p.verify_word((0, root)), Ok(4));
        assert_eq!(p.verify_word((2, seed.hashed_times(8))), Ok(2));
        assert_eq!(p.verify_word((4, w4)), Ok(0));
        assert_eq!(p.verify_word((1, root)), Err(PaywordError::WrongWord));
        let parsed = Payword::parse_header(&p.header_value()).expect("parses");
        assert_eq!(parsed, p);
        for bad in [
            "x;1;10;4;00;c2ln",
            "0b4e8a3c-7f2d-4c1e-9a5b-3d6f8e2a1c4b;01;10;4;aa;c2ln",
            "0b4e8a3c-7f2d-4c1e-9a5b-3d6f8e2a1c4b;5;10;4;aa;c2ln",
            "0b4e8a3c-7f2d-4c1e-9a5b-3d6f8e2a1c4b;1;10;4",
        ] {
            assert!(Payword::parse_header(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn touchstones_and_fraud_proofs_verify_on_their_own() {
        let issuer = KeyPair::generate().expect("keygen");
        let payer = KeyPair::generate().expect("keygen");
        let (v1, v2) = (
            KeyPair::generate().expect("keygen"),
            KeyPair::generate().expect("keygen"),
        );
        let t = touchstone(&issuer, payer.entity(), Word([7; 32]), 10);
        let again = OpenTouchstone::from_header(&t.header_value()).expect("header");
        assert_eq!(again.payer, *payer.entity());
        // Signed by someone else than the issuer it names: refused.
        let mut forged = t.touchstone.clone();
        forged.issuer = payer.entity().to_string();
        let env = Envelope::sign_json(&issuer, TOUCHSTONE_TYPE, &forged).expect("sign");
        assert!(OpenTouchstone::open(&env).is_err());

        let chain = t.touchstone.chain.clone();
        let block = |v: &KeyPair, from, end| SignedBlock {
            vendor: v.entity().to_string(),
            from,
            end,
            signature: sign_block(&payer, &chain, v.entity(), from, end),
        };
        let proof = FraudProof {
            seq: 1,
            touchstone: t.envelope.clone(),
            blocks: [block(&v1, 1, 6), block(&v2, 5, 10)],
            shortfall: 6,
        };
        assert_eq!(proof.verify(issuer.entity()), Ok(payer.entity().clone()));
        assert!(proof.verify(payer.entity()).is_err(), "another issuer");
        let apart = FraudProof {
            blocks: [block(&v1, 1, 4), block(&v2, 5, 10)],
            ..proof.clone()
        };
        assert!(apart.verify(issuer.entity()).is_err(), "no overlap");
        let mut tampered = proof.clone();
        tampered.blocks[1].end = 9;
        assert_eq!(
            tampered.verify(issuer.entity()),
            Err(PaywordError::BlockSignature)
        );
    }
}
