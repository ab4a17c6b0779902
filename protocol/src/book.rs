//! The market's wire types (DESIGN section 6): listings of the offer book, match requests and
//! answers, contract registrations and buyers' reports.

use serde::{Deserialize, Serialize};

use crate::Envelope;

/// One line of `GET /v1/offers` (DESIGN section 6).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Listing {
    pub agent: String,
    pub endpoint: String,
    pub offer: Envelope,
    /// The issuer whose prices the figures below use.
    pub currency: String,
    /// Failure probability over the reference 30 days.
    pub p_fail: f64,
    /// The price of the reference request: 1 GiB for 30 days, no reads.
    pub reference_price: u64,
    /// `reference_price / nines`.
    pub adjusted_price: f64,
    pub audits_passed: u64,
    pub audits_failed: u64,
    pub online: bool,
    pub vetted: bool,
    /// An issuer proved this agent double spent paywords (DESIGN 10): shown in the book.
    #[serde(default)]
    pub double_spender: bool,
    /// The market holds a proof that this agent forked its record chain (DESIGN 11): it is
    /// left out of every match.
    #[serde(default)]
    pub forked: bool,
    /// How much the graph of agreed records vouches for the agent, 0 to 1 (DESIGN 11): its
    /// prior while the market's audits of it are few.
    #[serde(default)]
    pub vouch: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MatchRequest {
    pub currency: String,
    pub shard_bytes: u64,
    pub data_shards: u64,
    #[serde(default)]
    pub total_shards: Option<u64>,
    pub duration_s: u64,
    #[serde(default)]
    pub expected_read_bytes: u64,
    pub max_failure_probability: f64,
    #[serde(default)]
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Chosen {
    pub agent: String,
    pub endpoint: String,
    pub offer: Envelope,
    pub p_fail: f64,
    pub price: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Considered {
    pub agent: String,
    pub p_fail: f64,
    pub price: u64,
    pub vetted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MatchAnswer {
    pub agents: Vec<Chosen>,
    pub failure_probability: f64,
    pub total_price: u64,
    pub candidates: Vec<Considered>,
}

/// An object of a registered contract, as the buyer recorded it at upload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegisteredObject {
    pub name: String,
    pub merkle_root: String,
    pub leaf_count: u64,
    pub size: u64,
}

/// `POST /v1/contracts`: a dual-signed contract and its objects' roots.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    pub contract: Envelope,
    pub agent_signature: String,
    pub objects: Vec<RegisteredObject>,
}

/// `POST /v1/reports`: a buyer's signed word on how an agent served a contract.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub contract: String,
    /// `ok`, `lost`, `corrupt` or `unavailable`.
    pub outcome: String,
    #[serde(default)]
    pub detail: String,
}

/// A running contract a buyer registered, as `GET /v1/contracts` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RegisteredContract {
    pub id: String,
    pub agent: String,
    /// The agent's endpoint as its latest offer gives it.
    pub endpoint: String,
    pub contract: Envelope,
    pub agent_signature: String,
    pub end: String,
    pub objects: Vec<RegisteredObject>,
}

/// Shared by the market's exact search and the backup's choice of which k of the n slots to
/// read.
/// Advance `pick` (strictly increasing indices below `n`) to the next combination in
/// lexicographic order; false after the last.
pub fn next_combination(pick: &mut [usize], n: usize) -> bool {
    let r = pick.len();
    let mut i = r;
    while i > 0 {
        i -= 1;
        if pick[i] < n - r + i {
            pick[i] += 1;
            for j in i + 1..r {
                pick[j] = pick[j - 1] + 1;
            }
            return true;
        }
    }
    false
}

/// `GET /v1/reputation?entity=X` at a market: what its records say of X (DESIGN 11).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EntityReputation {
    pub entity: String,
    /// X's share of the personalised PageRank over agreed records (all scores sum to 1).
    pub score: f64,
    /// `score` against the mean score of vetted agents, at most 1.
    pub vouch: f64,
    pub reference_score: f64,
    /// Agreed records (both halves held) the ranking used.
    pub records_ranked: usize,
    /// The highest sequence number of X's chain the market holds (0: none).
    pub head: u64,
    pub forked: bool,
    pub fraud_proofs: u64,
    /// Value X delivered in agreed records (as the party that agreed: the agent of a
    /// contract, the publisher of a view), in the records' minor units.
    #[serde(default)]
    pub contributed: f64,
    /// Value X received in agreed records (as the party that proposed: the buyer, the viewer).
    #[serde(default)]
    pub consumed: f64,
}
