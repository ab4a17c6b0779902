//! The storage agent's wire types (DESIGN section 5): contract views, object listings,
//! retrieval tokens, audit answers, the countersigned contract, the status summary, and the
//! object-name rule every party checks.

use serde::{Deserialize, Serialize};

use crate::market::Contract;
use crate::Envelope;

/// Longest object name.
pub const NAME_CHARS_MAX: usize = 128;
/// `[A-Za-z0-9._-]{1,128}`, not starting with a dot: no path can leave the contract's prefix.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_CHARS_MAX
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectInfo {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub merkle_root: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContractView {
    pub id: String,
    pub status: String,
    pub used_bytes: u64,
    pub block_bytes: u64,
    /// Prepaid credit left (negative: a running tab).
    pub credit: i64,
    pub paid: u64,
    pub contract_price: u64,
    pub start: String,
    pub end: String,
    pub objects: Vec<ObjectInfo>,
    /// The issuer whose currency the contract is paid in.
    #[serde(default)]
    pub issuer: String,
    /// What the contract delivered by the agent's books (DESIGN 11: what a `completed`
    /// record says): bytes written, bytes read (charged reads), audits answered.
    #[serde(default)]
    pub bytes_written: u64,
    #[serde(default)]
    pub bytes_read: u64,
    #[serde(default)]
    pub audits_answered: u64,
    /// What the contract earned the agent so far, by kind (the agent's books).
    #[serde(default)]
    pub earned: Earned,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Retrieval {
    pub url: String,
    pub token: String,
    pub expires_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditAnswer {
    /// Standard base64 of the leaf's bytes.
    pub leaf_data: String,
    /// Sibling hashes from the leaf up, hex.
    pub proof: Vec<String>,
    pub leaf_count: u64,
    pub root: String,
}

/// How a market rates this agent: its line in the market's book (`GET /v1/offers`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MarketStanding {
    #[serde(default)]
    pub market: String,
    pub p_fail: f64,
    pub audits_passed: u64,
    pub audits_failed: u64,
    pub online: bool,
    #[serde(default)]
    pub vetted: bool,
    /// How much the market's graph of agreed records vouches for the agent, 0 to 1.
    #[serde(default)]
    pub vouch: f64,
}

impl MarketStanding {
    /// The agent's line in `market_url`'s book, as its dashboard shows it.
    pub fn from_listing(line: &crate::book::Listing, market_url: &str) -> MarketStanding {
        MarketStanding {
            market: market_url.to_owned(),
            p_fail: line.p_fail,
            audits_passed: line.audits_passed,
            audits_failed: line.audits_failed,
            online: line.online,
            vetted: line.vetted,
            vouch: line.vouch,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Earning {
    pub issuer: String,
    pub issuer_url: String,
    pub income: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Summary {
    pub entity: String,
    pub capacity_bytes: u64,
    pub reserved_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub contracts_pending: u64,
    pub contracts_active: u64,
    pub contracts_ended: u64,
    pub objects: u64,
    pub earnings: Vec<Earning>,
    pub audits_answered: u64,
    pub recent_errors: Vec<String>,
    pub contracts: Vec<ContractView>,
}

/// What an agent earned in one period and currency, by kind (`GET /v1/history`). `total` is
/// their sum, and [`PaidBy`] splits the same total by means of payment.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Earned {
    /// Contract prices, earned when a contract is paid for.
    pub contract: u64,
    pub writes: u64,
    pub reads: u64,
    pub audits: u64,
    pub total: u64,
}

/// The same total as [`Earned`], by how it was paid: paywords the buyer sent, credit it paid
/// ahead (LCP deposits and credit payments), or its running tab (owed at the time).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PaidBy {
    pub deposit: u64,
    pub payword: u64,
    pub tab: u64,
}

/// One period of an agent's history in one currency. The row with `currency` "" carries
/// the samples that are no currency's: space, probes and the market's rating (the last
/// sample of the period).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HistoryPeriod {
    /// `day`, `hour` or `total` (everything since the agent began keeping history).
    pub step: String,
    /// Start of the period, Unix seconds (UTC).
    pub start_s: u64,
    pub currency: String,
    pub bytes_written: u64,
    pub bytes_read: u64,
    /// Of `bytes_read`, what was read through retrieval tokens.
    pub bytes_read_tokens: u64,
    pub audits_answered: u64,
    pub earned: Earned,
    pub paid_by: PaidBy,
    /// What issuers paid for paywords redeemed (cash received; not part of `earned`).
    pub paywords_redeemed: u64,
    pub used_bytes: u64,
    pub reserved_bytes: u64,
    pub probes_answered: u64,
    pub audits_passed: u64,
    pub audits_failed: u64,
    pub p_fail: Option<f64>,
}

impl HistoryPeriod {
    /// Add `other`'s events (what periods sum: bytes, audits, earnings, payments, redemptions
    /// and probes) to these; the samples of levels (space, rating) are left as they are.
    pub fn add_events(&mut self, other: &HistoryPeriod) {
        let add = |a: &mut u64, b: u64| *a = a.saturating_add(b);
        add(&mut self.bytes_written, other.bytes_written);
        add(&mut self.bytes_read, other.bytes_read);
        add(&mut self.bytes_read_tokens, other.bytes_read_tokens);
        add(&mut self.audits_answered, other.audits_answered);
        add(&mut self.earned.contract, other.earned.contract);
        add(&mut self.earned.writes, other.earned.writes);
        add(&mut self.earned.reads, other.earned.reads);
        add(&mut self.earned.audits, other.earned.audits);
        add(&mut self.earned.total, other.earned.total);
        add(&mut self.paid_by.deposit, other.paid_by.deposit);
        add(&mut self.paid_by.payword, other.paid_by.payword);
        add(&mut self.paid_by.tab, other.paid_by.tab);
        add(&mut self.paywords_redeemed, other.paywords_redeemed);
        add(&mut self.probes_answered, other.probes_answered);
    }
}

/// `GET /v1/history?from=&to=&step=day|hour`: the periods starting in [from, to).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct History {
    pub step: String,
    pub from_s: u64,
    pub to_s: u64,
    pub periods: Vec<HistoryPeriod>,
}

/// A contract the agent accepted: the buyer's envelope and the agent's countersignature.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignedContract {
    pub contract: Envelope,
    pub agent_signature: String,
    pub status: String,
}

impl SignedContract {
    pub fn terms(&self) -> Result<Contract, serde_json::Error> {
        serde_json::from_str(&self.contract.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        for good in ["a", "pack-0001.bin", "A_b.c-d", &"x".repeat(128)] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".x",
            "a/b",
            "a\\b",
            "é",
            "a b",
            &"x".repeat(129),
            "../etc",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
