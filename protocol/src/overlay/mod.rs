//! The bid-solicitation overlay's wire types (DESIGN section 13, seed 001): terms, bid
//! solicitations and their bids, acceptance and its retrieval instructions, contests. No IO.
//!
//! A document is a file named by the lowercase hex SHA-256 of its bytes; whoever retrieves it
//! checks the bytes against the name ([`document_matches`]).

use serde::{Deserialize, Serialize};

pub mod topology;

/// Most hops a solicitation may still travel; larger values are clamped to this.
pub const SOLICIT_HOPS_MAX: u32 = 8;
/// Furthest ahead a solicitation's `respond_by` may be; later values are clamped to this.
pub const RESPOND_BY_MS_MAX: u64 = 60_000;
/// Each hop asks its neighbours to answer this much before its own `respond_by`, so their
/// answers are back in time.
pub const HOP_SLACK_MS: u64 = 250;
/// Longest a bid stays open for acceptance.
pub const BID_TTL_MS: u64 = 120_000;
/// Longest retrieval instructions stay usable.
pub const TOKEN_TTL_MS: u64 = 600_000;
/// Bids one solicitation answers at most (the cheapest first).
pub const BIDS_MAX: usize = 16;

/// `GET /v1/terms`: what a peer charges and takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    /// The peer's entity id.
    #[serde(default)]
    pub peer: String,
    pub solicit_fee: u64,
    pub currencies: Vec<CurrencyOffer>,
    pub commission: u64,
    /// `referral` or `conceal`.
    #[serde(default)]
    pub strategy: String,
    /// 1, 2 or 3 (seed 001 section 4).
    #[serde(default)]
    pub policy: u8,
    /// What a primary neighbour may owe on its tab here (0: no tabs).
    #[serde(default)]
    pub tab_limit: u64,
    /// A neighbour settles its tab once it owes this much (DESIGN 12).
    #[serde(default)]
    pub tab_threshold: u64,
    /// Takes paywords (`LCP-Payword`, DESIGN 10) for fees and prices.
    #[serde(default)]
    pub paywords: bool,
}

/// A currency a peer takes: its issuer's entity id and URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CurrencyOffer {
    pub issuer: String,
    pub issuer_url: String,
}

/// `POST /v1/solicit` (a command; pays the peer's `solicit_fee`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Solicit {
    pub document: String,
    pub max_price: u64,
    /// The issuer's entity id the solicitation pays and the bids are priced in.
    pub currency: String,
    pub hops_left: u32,
    /// Unix milliseconds: no bid is wanted after this, and nothing is forwarded past it.
    pub respond_by: u64,
    /// The search this belongs to (a UUID the first solicitor picks, passed on unchanged): a
    /// peer that meets it again answers no bids instead of forwarding it around a loop, and
    /// the same solicitor repeating it pays once.
    #[serde(default)]
    pub solicitation: Option<String>,
}

/// One bid: usable by the solicitor until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    pub bid: String,
    pub price: u64,
    /// RFC 3339.
    pub expires_at: String,
    /// Only in a peer's answer to its own owner: the neighbour the bid came through (none:
    /// the peer holds the document). Other solicitors never learn where a bid came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// The answer to a solicitation, cheapest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bids {
    pub bids: Vec<Bid>,
}

/// `POST /v1/accept` (a command; pays the bid's price).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accept {
    pub bid: String,
    /// The end buyer's entity id, passed down unchanged: only it may use the instructions.
    pub buyer: String,
}

/// Retrieval instructions: `GET url`, signed by the buyer, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instructions {
    pub url: String,
    pub token: String,
    /// The entity id of the peer that serves it.
    pub peer: String,
}

impl Instructions {
    /// The serving peer's base URL (`scheme://host:port`), for node discovery.
    pub fn base_url(&self) -> Option<String> {
        let rest = self
            .url
            .strip_prefix("http://")
            .map(|r| ("http://", r))
            .or_else(|| self.url.strip_prefix("https://").map(|r| ("https://", r)))?;
        let host = rest.1.split('/').next().filter(|h| !h.is_empty())?;
        Some(format!("{}{host}", rest.0))
    }
}

/// `POST /v1/contest` (a command): the buyer of `bid` could not retrieve the document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contest {
    pub bid: String,
    #[serde(default)]
    pub reason: String,
}

/// The answer to a contest: what was refunded to the buyer's tab or credit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContestAnswer {
    pub bid: String,
    pub refunded: u64,
}

/// Is `text` a document name (64 lowercase hex digits)?
pub fn is_document(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Do `bytes` have the name `document`?
pub fn document_matches(document: &str, bytes: &[u8]) -> bool {
    crate::sha256_hex(bytes) == document
}

impl Solicit {
    /// The solicitation as a peer honours it at `now_ms`: hops clamped to
    /// [`SOLICIT_HOPS_MAX`], `respond_by` to [`RESPOND_BY_MS_MAX`] ahead. `Err` for what is
    /// refused outright.
    pub fn checked(mut self, now_ms: u64) -> Result<Solicit, String> {
        if !is_document(&self.document) {
            return Err("document must be 64 lowercase hex digits (its SHA-256)".into());
        }
        if crate::EntityId::parse(&self.currency).is_err() {
            return Err("currency must be an issuer's entity id".into());
        }
        if let Some(s) = &self.solicitation {
            if s.is_empty() || s.len() > 64 {
                return Err("solicitation must be 1 to 64 characters".into());
            }
        }
        self.hops_left = self.hops_left.min(SOLICIT_HOPS_MAX);
        // Prices are stored as BIGINT: a larger maximum means "any price".
        self.max_price = self.max_price.min(i64::MAX as u64);
        self.respond_by = self
            .respond_by
            .min(now_ms.saturating_add(RESPOND_BY_MS_MAX));
        Ok(self)
    }

    /// The solicitation a peer forwards for this one, or `None` when it may not: no hop
    /// left, the time to answer passed, or the maximum price no longer covers `commission`.
    pub fn forwarded(&self, commission: u64, now_ms: u64) -> Option<Solicit> {
        let respond_by = self.respond_by.saturating_sub(HOP_SLACK_MS);
        if self.hops_left == 0 || respond_by <= now_ms {
            return None;
        }
        let max_price = self.max_price.checked_sub(commission)?;
        Some(Solicit {
            max_price,
            hops_left: self.hops_left - 1,
            respond_by,
            ..self.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solicit() -> Solicit {
        Solicit {
            document: "ab".repeat(32),
            max_price: 100,
            currency: crate::KeyPair::generate()
                .expect("key")
                .entity()
                .to_string(),
            hops_left: 50,
            respond_by: u64::MAX,
            solicitation: Some("s".into()),
        }
    }

    #[test]
    fn hops_and_respond_by_are_clamped() {
        let s = solicit().checked(1_000).expect("valid");
        assert_eq!(s.hops_left, SOLICIT_HOPS_MAX);
        assert_eq!(s.respond_by, 1_000 + RESPOND_BY_MS_MAX);
    }

    #[test]
    fn forwarding_lowers_price_and_hops_and_stops() {
        let s = solicit().checked(0).expect("valid");
        let f = s.forwarded(30, 0).expect("forwarded");
        assert_eq!((f.max_price, f.hops_left), (70, SOLICIT_HOPS_MAX - 1));
        assert!(s.forwarded(101, 0).is_none(), "commission above the price");
        let last = Solicit {
            hops_left: 0,
            ..s.clone()
        };
        assert!(last.forwarded(1, 0).is_none(), "no hop left");
        assert!(s.forwarded(1, s.respond_by).is_none(), "past respond_by");
        assert_eq!(
            f.respond_by,
            s.respond_by - HOP_SLACK_MS,
            "each hop answers earlier"
        );
    }

    #[test]
    fn bad_documents_and_currencies_are_refused() {
        let mut s = solicit();
        s.document = "AB".repeat(32);
        assert!(s.checked(0).is_err());
        let mut s = solicit();
        s.currency = "money.com".into();
        assert!(s.checked(0).is_err());
    }

    #[test]
    fn instructions_know_their_base() {
        let i = Instructions {
            url: "http://127.0.0.1:4000/v1/retrievals/abc".into(),
            token: "abc".into(),
            peer: "p".into(),
        };
        assert_eq!(i.base_url().as_deref(), Some("http://127.0.0.1:4000"));
        assert!(document_matches(&crate::sha256_hex(b"x"), b"x"));
    }
}
