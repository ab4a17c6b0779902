//! The market's domain over its database: the offer book, matching, registered contracts,
//! buyers' reports and agents' reputations. Handlers and the auditor call these; nothing here
//! knows HTTP (but for the [`State`] alias the handlers take).
//!
//! Along its seams: `offers` (the book), `heartbeats` (their group commit and the market
//! clock), `index` (the live offers in memory and pre-selection), `matching`, `registry`
//! (registered contracts and their roots, audit targets) and `reputation` (reports, audit and
//! probe outcomes);
//! this module holds the [`Market`] itself, its limits and the agent rows.
//!
//! Invariants:
//! - Every offer in the book verified: signed by its agent, who also signed the request that
//!   posted it, and its endpoint answered `/.well-known/lcp` as that agent within
//!   [`ENDPOINT_RECHECK_S`].
//! - Listings and matches only use offers that have not expired (`offer_expires_s > now`): an
//!   agent that stops heartbeating drops out when its last offer expires.
//! - Every transaction that writes `agents` takes the market clock first
//!   (`heartbeats::tick`): its lock, held until commit, serialises reputation
//!   read-modify-writes across tasks and across market processes on one PostgreSQL, so
//!   concurrent audits and reports never lose an update, and stamps rows so the offer index
//!   (`index`) can refresh from `changed` alone.
//! - A report counts once per (buyer, counter), and one good and one bad report per contract
//!   count at all, each weighted by what the contract was worth.
//! - A registered Merkle root was verified with the agent (one audit) before it was kept, and
//!   is never replaced.
//! - A registration's answer is stored in the shared command log (`node::commands`) in the
//!   transaction that registers it: the same (buyer, counter, body) again replays it, another
//!   body under that counter is `409 counter_reused`.
//! - Matches choose only agents that are online (answered their last probe or heartbeat).

use std::sync::Arc;

use db::Database;
use diesel::prelude::*;
use protocol::market::{self, Offer};
use protocol::{Envelope, KeyPair};

use crate::error::Error;
use crate::reliability::Reputation;
use crate::schema::agents;

mod crawl;
pub use crawl::{
    CrawlReport, CRAWL_AGENTS_PER_ROUND_MAX, CRAWL_COUNTERPARTIES_MAX, CRAWL_INTERVAL_S_DEFAULT,
};
mod frauds;
pub use frauds::FRAUD_FOLLOW_INTERVAL_MS;
mod heartbeats;
pub(crate) mod index;
mod lease;
mod matching;
mod offers;
mod registry;
mod reputation;
mod timings;
mod vouch;
pub use vouch::{RankReport, Ranking, RANKING_STALE_MS_MAX, RANK_RECORDS_MAX};

pub(crate) use heartbeats::tick;
pub use heartbeats::{HEARTBEATS_PER_COMMIT_MAX, HEARTBEATS_QUEUED_MAX};
pub use index::{load_index, BookCounts};
pub use index::{
    LiveAgent, PRESELECT_ADJUSTED_MAX, PRESELECT_CHEAPEST_MAX, PRESELECT_PER_NETWORK_MAX,
    PRESELECT_RELIABLE_MAX, PRESELECT_UNVETTED_MAX,
};
pub use lease::AUDITOR_LEASE;
pub use offers::{check_offer, network_of, OffersPage};

/// An issuer that did not say its currency is asked again after this long (see
/// `Market::currency_at`).
pub const CURRENCY_RETRY_S: i64 = 300;
/// Issuer URLs whose currency the market remembers; past it the memory starts over.
const CURRENCIES_KNOWN_MAX: usize = 1_024;
/// Longest a match waits for a chosen agent to say who it is before leaving it out.
pub const MATCH_PROBE_WAIT_MS_MAX: u64 = 2_000;
/// A chosen agent whose endpoint answered a match's re-check this recently is not asked
/// again: the re-check stays that fresh, and an agent gets at most one such request in that
/// time however many matches choose it.
pub const MATCH_ANSWER_FRESH_MS: u64 = 2_000;
/// Agents whose last answer a market remembers for [`MATCH_ANSWER_FRESH_MS`].
pub const MATCH_ANSWERS_KEPT_MAX: usize = 65_536;
/// Times a match is made again after chosen agents did not answer.
pub const MATCH_RECHECKS_MAX: usize = 3;
/// An endpoint that answered as its agent is not asked again for this long.
pub const ENDPOINT_RECHECK_S: i64 = 600;
/// Longest wait for an agent's `/.well-known/lcp` when checking an offer.
pub const ENDPOINT_WAIT_MS_MAX: u64 = 3_000;
/// Longest validity an offer may claim (agents re-issue theirs every heartbeat).
pub const OFFER_VALIDITY_S_MAX: i64 = 86_400;
/// How far in the future an offer's `issued_at` may be (clock skew).
pub const ISSUED_SKEW_S_MAX: i64 = 300;
/// Currencies one offer may list.
pub const OFFER_CURRENCIES_MAX: usize = 16;
/// Largest free space an offer may claim (1 EiB): beyond is an error or a lie.
pub const OFFER_BYTES_MAX: u64 = 1 << 60;
/// Listings `GET /v1/offers` answers when no `limit` is given.
pub const OFFERS_PAGE_DEFAULT: usize = 20_000;
/// Most listings one `GET /v1/offers` answers.
pub const OFFERS_PAGE_MAX: usize = 100_000;
/// Longest endpoint URL.
pub const ENDPOINT_CHARS_MAX: usize = 512;
/// Objects one registration may list.
pub const REGISTERED_OBJECTS_MAX: usize = 10_000;
/// New objects one registration may add: each is audited once through the agent before its
/// root is kept, and an agent answers a listed auditor 8 audits per contract a minute.
pub const REGISTRATION_AUDITS_MAX: usize = 8;
/// Longest a report's free-text detail may be.
pub const REPORT_DETAIL_CHARS_MAX: usize = 1_000;

pub use node::now_s;

/// The market as actix handlers (the server's and the page's) receive it.
pub type State = actix_web::web::Data<Arc<Market>>;

#[derive(Queryable, Insertable, Clone, Debug)]
#[diesel(table_name = agents)]
pub struct AgentRow {
    pub entity: String,
    pub endpoint: String,
    pub network: String,
    pub offer: String,
    pub offer_expires_s: i64,
    pub last_heartbeat_s: i64,
    pub endpoint_checked_s: i64,
    pub alpha: f64,
    pub beta: f64,
    pub audits_passed: i64,
    pub audits_failed: i64,
    pub online: i32,
    pub first_seen_s: i64,
    /// The `market_clock` value of the transaction that last wrote the row (see `clock`).
    pub changed: i64,
    /// How much the graph of agreed records vouches for the agent, 0 to 1 (`crawl`,
    /// `market::ranking`).
    pub vouch: f64,
}

impl AgentRow {
    pub fn reputation(&self) -> Reputation {
        Reputation {
            alpha: self.alpha,
            beta: self.beta,
            audits_passed: self.audits_passed.unsigned_abs(),
            audits_failed: self.audits_failed.unsigned_abs(),
            online: self.online != 0,
            vouch: self.vouch,
        }
    }

    /// The stored offer, already verified when it was posted.
    pub fn offer(&self) -> Option<(Envelope, Offer)> {
        let env: Envelope = serde_json::from_str(&self.offer).ok()?;
        let (_, offer) = env.open::<Offer>(market::OFFER_TYPE).ok()?;
        Some((env, offer))
    }
}

pub use protocol::book::{
    Chosen, Considered, Listing, MatchAnswer, MatchRequest, RegisteredContract, RegisteredObject,
    Registration, Report,
};

/// A registered contract the auditor may challenge.
#[derive(Debug, Clone)]
pub struct AuditTarget {
    pub agent: String,
    pub endpoint: String,
    pub contract: String,
    pub objects: Vec<RegisteredObject>,
}

pub struct Market {
    pub key: Arc<KeyPair>,
    /// Checks signed requests in batches (issue 21).
    pub verifier: node::verifier::Verifier,
    pub db: Database,
    pub http: reqwest::Client,
    /// Choices may put two agents on one network (devnet, a LAN).
    pub same_network_ok: bool,
    /// The live offers in memory (see `index`); the database stays the record.
    index: Arc<std::sync::RwLock<index::Index>>,
    /// One index refresh at a time; callers arriving meanwhile share the next one.
    index_turn: tokio::sync::Mutex<()>,
    /// When the last index refresh started.
    index_read_at: std::sync::Mutex<Option<std::time::Instant>>,
    heartbeats: heartbeats::HeartbeatQueue,
    /// This process's name as a lease holder (`lease`), random per start.
    instance: String,
    /// Whether this process holds the auditor lease (shown in `/metrics`).
    pub auditor_lease: crate::auditor::Lease,
    /// Records (DESIGN 11): the blocks crawled from agents and the fork proofs kept.
    pub records: Arc<node::records::RecordBook>,
    /// Credit lines with neighbours (DESIGN 12): lines given to the market are kept; it
    /// extends none when asked (the default policy).
    pub credit: Arc<node::credit::CreditBook>,
    /// Where the records crawl stands, and the forked entities (`crawl`).
    crawl: crawl::CrawlState,
    /// The last ranking of the records (`vouch`), and when it was made.
    ranking: std::sync::Mutex<Option<(std::time::Instant, Arc<vouch::Ranking>)>>,
    /// One ranking computed on demand at a time (`vouch`).
    ranking_turn: tokio::sync::Mutex<()>,
    /// Where matches spend their time (`/metrics`).
    pub timings: Arc<timings::MatchTimings>,
    endpoint: std::sync::OnceLock<String>,
    /// When each agent last answered at its endpoint (and at which), for matches' re-checks.
    answers: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, String)>>,
    /// Per agent, the audits it put off (`429`) in a row (see `auditor::AUDIT_DEFERRALS_MAX`)
    /// and until when (s since the epoch) the auditor leaves it alone, as it asked.
    audit_deferrals: std::sync::Mutex<std::collections::HashMap<String, (u32, i64)>>,
    /// Currencies (code, decimals) by issuer URL, for the page. An issuer that did not answer
    /// is remembered too (with when), and asked again only after [`CURRENCY_RETRY_S`]: the
    /// URLs come from agents' offers, and a page view must not fan out to them each time.
    currencies: std::sync::Mutex<
        std::collections::HashMap<String, (Option<protocol::ledger::Currency>, i64)>,
    >,
}

impl Market {
    /// The currency of the issuer at `issuer_url` (asked once, bounded), for showing amounts.
    pub async fn currency_at(&self, issuer_url: &str) -> Option<protocol::ledger::Currency> {
        let now = now_s();
        let known = self
            .currencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(issuer_url)
            .cloned();
        match known {
            Some((Some(c), _)) => return Some(c),
            Some((None, when)) if now - when < CURRENCY_RETRY_S => return None,
            _ => {}
        }
        let asked = clients::issuer::currency_at(issuer_url).await;
        let mut map = self.currencies.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CURRENCIES_KNOWN_MAX {
            map.clear();
        }
        map.insert(issuer_url.to_owned(), (asked.clone(), now));
        asked
    }

    pub fn new(
        key: Arc<KeyPair>,
        db: Database,
        http: reqwest::Client,
        same_network_ok: bool,
    ) -> Market {
        let records = Arc::new(node::records::RecordBook::new(
            db.clone(),
            key.clone(),
            Arc::new(
                |_: &mut db::AnyConnection, _: &protocol::record::HalfBlock| {
                    // The market records no deal of its own: it only crawls and serves.
                    Err(node::records::Refusal {
                        reason: "the market records no deals of its own".into(),
                        keep_block: false,
                    })
                },
            ),
        ));
        let credit = node::credit::CreditBook::new(
            db.clone(),
            key.clone(),
            node::credit::CreditPolicy::default(),
        );
        Market {
            verifier: node::verifier::Verifier::start("market-verifier"),
            credit,
            key,
            db,
            http,
            same_network_ok,
            index: Arc::new(std::sync::RwLock::new(index::Index::new())),
            index_turn: tokio::sync::Mutex::new(()),
            index_read_at: std::sync::Mutex::new(None),
            heartbeats: heartbeats::HeartbeatQueue::default(),
            timings: Arc::default(),
            auditor_lease: crate::auditor::Lease::default(),
            records,
            crawl: crawl::CrawlState::default(),
            ranking: std::sync::Mutex::new(None),
            ranking_turn: tokio::sync::Mutex::new(()),
            instance: {
                let mut raw = [0u8; 8];
                // A failed OS source leaves zeros: two such processes would share the lease
                // name, and the cost is audits done twice, never lost.
                let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw);
                raw.iter().map(|b| format!("{b:02x}")).collect()
            },
            endpoint: std::sync::OnceLock::new(),
            currencies: std::sync::Mutex::new(std::collections::HashMap::new()),
            audit_deferrals: std::sync::Mutex::new(std::collections::HashMap::new()),
            answers: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Count an audit `agent` put off (`deferred`, with the wait it asked for, s), or reset the
    /// count when it answered; answers the deferrals in a row so far. The auditor honours the
    /// wait, at most `auditor::RETRY_AFTER_HONOURED_S_MAX` (see [`Market::audit_put_off`]).
    pub fn count_deferral(&self, agent: &str, deferred: Option<u64>) -> u32 {
        let mut map = self
            .audit_deferrals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match deferred {
            Some(retry_after_s) => {
                let wait_s = retry_after_s.min(crate::auditor::RETRY_AFTER_HONOURED_S_MAX);
                let until_s = now_s().saturating_add(i64::try_from(wait_s).unwrap_or(0));
                let entry = map.entry(agent.to_owned()).or_insert((0, 0));
                *entry = (entry.0.saturating_add(1), until_s);
                entry.0
            }
            None => {
                map.remove(agent);
                0
            }
        }
    }

    /// Whether `agent` asked the auditor (`429` with a wait) to come back after `now_s`.
    pub fn audit_put_off(&self, agent: &str, now_s: i64) -> bool {
        let map = self
            .audit_deferrals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(agent).is_some_and(|(_, until_s)| now_s < *until_s)
    }

    pub fn set_endpoint(&self, url: &str) {
        let _ = self.endpoint.set(url.trim_end_matches('/').to_owned());
    }

    pub fn endpoint(&self) -> &str {
        self.endpoint.get().map(String::as_str).unwrap_or("")
    }

    /// Every agent row, live offers or not (for the auditor and the page).
    pub async fn agents(&self) -> Result<Vec<AgentRow>, Error> {
        self.db
            .run(|conn| Ok::<_, Error>(agents::table.order(agents::entity).load(conn)?))
            .await
    }
}
