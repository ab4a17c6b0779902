//! The peer's domain (DESIGN 13, seed 001): one [`Peer`] per `peer serve`, over its database.
//!
//! Children, one role each:
//! - [`documents`]: what this peer can sell (the shared directory and the copies it bought
//!   while concealing), named by SHA-256.
//! - [`neighbors`]: primary (configured, trusted), secondary (discovered) and undesirable
//!   peers; which of them a search may ask under the policy; their terms.
//! - [`money`]: charging a buyer (paid ahead first, then its tab when it is a primary
//!   neighbour, else `402`), refunds, deposits from the issuers, and this peer's own tabs at
//!   its neighbours (settled through LCP at their threshold).
//! - [`solicit`]: answering a solicitation (a local bid, or the neighbours' best plus the
//!   commission) and asking the neighbours.
//! - [`deals`]: acceptance (referral passes the source's instructions through, concealment
//!   copies the document and sells its own), retrieval by one-time token, contests.
//! - [`status`]: what the status page and `/v1/status` show.
//! - [`upkeep`]: expired bids, tokens and stored answers dropped.
//!
//! Invariants: a bid is accepted at most once and its price charged in the same transaction
//! that marks it; a contest refunds at most once, in the transaction that marks it; a token
//! is spent by the conditional update that marks it used, before a byte is served; paid-ahead
//! credit never goes below zero; a tab never owes more than its limit.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use clients::issuer::IssuerClient;
use node::client::ClockCounter;
use protocol::overlay::CurrencyOffer;
use protocol::KeyPair;

use crate::error::Error;

pub mod deals;
pub mod documents;
pub mod money;
pub mod neighbors;
pub mod solicit;
pub mod status;
pub mod upkeep;

/// How a peer sells what it found through a neighbour (seed 001 section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Pass the source's retrieval instructions through: buyer and intermediates discover it.
    Referral,
    /// Buy and copy the document, then sell this peer's own copy: the source stays hidden.
    Conceal,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Referral => "referral",
            Strategy::Conceal => "conceal",
        }
    }
}

/// What the operator chose (flags of `peer serve`).
#[derive(Debug, Clone)]
pub struct PeerOptions {
    pub strategy: Strategy,
    /// 1: never extend the neighbour set; 2: discovered peers for own searches only; 3: also
    /// for searches made for others (seed 001 section 4).
    pub policy: u8,
    /// Added to a neighbour's bid when this peer bids on it.
    pub commission: u64,
    /// Charged for each solicitation answered.
    pub solicit_fee: u64,
    /// The price of a document this peer holds.
    pub price: u64,
    /// What a primary neighbour may owe on its tab here.
    pub tab_limit: u64,
    /// A neighbour settles its tab here once it owes this much.
    pub tab_threshold: u64,
    /// The base URL other peers reach this one at (default: the listening URL).
    pub public_url: Option<String>,
    /// Neighbours asking more than this per solicitation are not asked.
    pub neighbor_fee_max: u64,
    /// Paywords are redeemed once an issuer's are worth this much (and at the latest an hour
    /// before their chain expires).
    pub payword_redeem_threshold: u64,
}

impl Default for PeerOptions {
    fn default() -> Self {
        PeerOptions {
            strategy: Strategy::Referral,
            policy: 2,
            commission: 2,
            solicit_fee: 1,
            price: 10,
            tab_limit: 10_000,
            tab_threshold: 1_000,
            public_url: None,
            payword_redeem_threshold: node::paywords::REDEEM_THRESHOLD_DEFAULT,
            neighbor_fee_max: 10,
        }
    }
}

/// A currency this peer takes, with a wallet on its issuer (for settling its own tabs and
/// paying ahead) and the cursor of its deposits.
#[derive(Clone)]
pub struct Currency {
    pub offer: CurrencyOffer,
    pub wallet: IssuerClient,
}

pub struct Peer {
    pub key: Arc<KeyPair>,
    /// Checks signed requests in batches (issue 21).
    pub verifier: node::verifier::Verifier,
    pub db: db::Database,
    pub options: PeerOptions,
    pub http: reqwest::Client,
    pub currencies: Vec<Currency>,
    /// Paywords for neighbours without a tab for this peer, per currency (issuer entity).
    pub payers: HashMap<String, clients::paywords::PaywordPayer>,
    pub documents: documents::Documents,
    pub credit_lines: Arc<node::credit::CreditBook>,
    /// The base URL peers reach this one at; set once the server listens.
    pub url: OnceLock<String>,
    /// The primary neighbours' URLs as configured (their entities are learned from terms).
    pub primary_urls: Vec<String>,
    pub(crate) terms_seen: Mutex<HashMap<String, protocol::overlay::Terms>>,
    /// Tab settlements sent and not yet seen by the creditor: line id -> until (Unix ms).
    pub(crate) settling: Mutex<HashMap<String, u64>>,
    pub(crate) counters: ClockCounter,
    pub data_dir: PathBuf,
}

/// Lock a mutex whose data stays valid whatever a panicking holder did (plain maps).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Peer {
    pub fn me(&self) -> String {
        self.key.entity().to_string()
    }

    /// The base URL peers reach this one at.
    pub fn base_url(&self) -> String {
        self.url.get().cloned().unwrap_or_default()
    }

    /// The currency named by its issuer's entity, or the refusal listing those taken.
    pub fn currency(&self, issuer: &str) -> Result<&Currency, Error> {
        self.currencies
            .iter()
            .find(|c| c.offer.issuer == issuer)
            .ok_or_else(|| Error::CurrencyNotAccepted {
                currencies: self.currencies.iter().map(|c| c.offer.clone()).collect(),
            })
    }

    pub fn terms(&self) -> protocol::overlay::Terms {
        protocol::overlay::Terms {
            peer: self.me(),
            solicit_fee: self.options.solicit_fee,
            currencies: self.currencies.iter().map(|c| c.offer.clone()).collect(),
            commission: self.options.commission,
            strategy: self.options.strategy.as_str().to_owned(),
            policy: self.options.policy,
            tab_limit: self.options.tab_limit,
            tab_threshold: self.options.tab_threshold,
            paywords: true,
        }
    }

    /// A client of the peer at `url`, signing as this peer.
    pub(crate) fn client_of(&self, url: &str) -> clients::peer::PeerClient {
        clients::peer::PeerClient::new(self.http.clone(), url, self.key.clone())
    }
}

/// i64 for a database column, or the refusal of an amount too large to store.
pub(crate) fn to_i64(v: u64) -> Result<i64, Error> {
    i64::try_from(v).map_err(|_| Error::InvalidRequest(format!("{v} is too large")))
}
