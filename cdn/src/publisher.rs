//! The publisher's domain (DESIGN section 8, seed 000 section 5.2): contracts bought through the
//! market ([`buying`]), pieces placed on several agents ([`placement`]), the agents paid ahead
//! ([`credit`]), views sold for LCP and retrieval instructions handed to paying viewers
//! ([`selling`]), replicas scaled with demand ([`scaling`]), and what the status page shows
//! ([`status`]). The HTTP layer is [`crate::server`]; the wire types are [`protocol::cdn`].
//!
//! Invariants:
//! - One payment buys one view: a view's id is the LCP transaction id of the viewer's payment,
//!   and `views.id` is unique.
//! - The publisher never serves piece bytes to viewers: it answers manifests and tokens only.
//! - Agents are paid ahead: before tokens are handed out, the contracts' estimated read credit
//!   covers every token (all replicas, as if every one were used).
//! - A piece is recorded as placed only after the agent answered the write.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clients::agent::{AgentClient, SignedContract};
use clients::issuer::IssuerClient;
use clients::market::MarketClient;
use diesel::prelude::*;
use futures_util::future::join_all;
use node::client::ClientError;
use protocol::book::MatchRequest;
use protocol::{EntityId, KeyPair};

use crate::error::Error;
use crate::manifest::{self, Manifest};
use crate::schema::{contents, contracts, replicas, views};

mod buying;
mod credit;
mod placement;
pub mod records;
mod scaling;
mod selling;
mod status;
mod words;

/// Most pieces one instructions request may cover.
pub const WINDOW_PIECES_MAX: u64 = 32;
/// How often one view may ask for the same piece (first ask plus failovers).
pub const PIECE_REQUESTS_PER_VIEW_MAX: u32 = 4;
/// How long a bought view lasts.
pub const VIEW_TTL_S: i64 = 6 * 3600;
/// How long a retrieval token lives.
pub const TOKEN_TTL_S: u64 = 600;
/// How long buying a view waits for the viewer's payment to reach the issuer.
pub const VIEW_PAYMENT_WAIT_MS: u64 = 3_000;
/// Read credit bought per top-up, in KiB of reads at the contract's read price.
pub const CREDIT_TOPUP_KIB: u64 = 256 * 1024;
/// Top up when the estimated credit falls below this many KiB of reads.
pub const CREDIT_LOW_KIB: u64 = 64 * 1024;
/// How long a synchronous top-up waits for the agent to see it.
pub const CREDIT_WAIT_MS_MAX: u64 = 5_000;
/// Scaling events kept for the status page.
pub const EVENTS_MAX: usize = 100;
/// Views a viewer may hold instructions counters for, in memory.
pub const VIEW_COUNTERS_MAX: usize = 100_000;

#[derive(Debug, Clone)]
pub struct PublisherOptions {
    /// Contracts to hold (distinct agents).
    pub agents: usize,
    pub block_bytes: u64,
    pub contract_days: u64,
    /// A content whose instructions per replica in one scaling round exceed this gets a replica
    /// more of every piece.
    pub hot_reads_per_replica: u64,
    /// Extra replicas of content without demand for this long lapse.
    pub cold_after_s: u64,
    pub scale_interval_s: u64,
    /// Sell pieces as they are watched at this price each (minor units), instead of whole
    /// views at the content's price (`cdn serve --price-per-piece`); 0: per view.
    pub price_per_piece: u64,
    /// Paywords (DESIGN 10): what one viewer may owe in words not yet redeemed.
    pub payword_unredeemed_max: u64,
    /// Redeem viewers' paywords once they are worth this much (and at shutdown).
    pub payword_redeem_threshold: u64,
    pub payword_redeem_interval_ms: u64,
    /// Free views are sold at their read cost to a viewer whose agreed records at the market
    /// show it consumed more than it contributed by more than this (minor units, DESIGN 11);
    /// 0: off.
    pub free_rider_threshold: u64,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        PublisherOptions {
            agents: 6,
            block_bytes: 256 << 20,
            contract_days: 30,
            hot_reads_per_replica: 20,
            cold_after_s: 300,
            scale_interval_s: 30,
            price_per_piece: 0,
            payword_unredeemed_max: node::paywords::UNREDEEMED_PER_PAYER_MAX_DEFAULT,
            payword_redeem_threshold: node::paywords::REDEEM_THRESHOLD_DEFAULT,
            payword_redeem_interval_ms: 60_000,
            free_rider_threshold: 0,
        }
    }
}

pub use protocol::cdn::{
    CatalogEntry, PieceInstructions, Source, UploadAnswer, UploadRequest, ViewAnswer,
};
pub use status::{ContentStatus, ContractStatus, Event, ScalingStatus, Status};

/// What the HTTP handlers and pages hold.
pub type State = actix_web::web::Data<Arc<Publisher>>;

/// Demand since the last scaling round, per content.
#[derive(Debug, Default, Clone)]
struct Demand {
    pieces_asked: u64,
    last_demand: Option<Instant>,
}

#[derive(Debug, Clone, Queryable)]
struct ContractRow {
    id: String,
    agent: String,
    endpoint: String,
    #[allow(dead_code)]
    signed: String,
    read_per_kib: i64,
    write_per_kib: i64,
    block_bytes: i64,
    used_bytes: i64,
    end_s: i64,
}

#[derive(Debug, Clone, Queryable)]
struct ContentRow {
    id: String,
    title: String,
    mime: String,
    size: i64,
    piece_bytes: i64,
    pieces: String,
    price_per_view: i64,
    replicas_base: i32,
    manifest: String,
    #[allow(dead_code)]
    created_s: i64,
}

impl ContentRow {
    /// The pieces' SHA-256 (hex), as stored at upload.
    fn piece_hashes(&self) -> Result<Vec<String>, Error> {
        serde_json::from_str(&self.pieces)
            .map_err(|e| Error::InvalidRequest(format!("stored piece list: {e}")))
    }

    fn piece_len(&self, i: u64) -> u64 {
        manifest::piece_len(self.size as u64, self.piece_bytes as u64, i)
    }
}

/// A sold view, as stored.
#[derive(Debug, Clone, Queryable)]
struct ViewRow {
    #[allow(dead_code)]
    id: String,
    content_id: String,
    viewer: String,
    paid: i64,
    #[allow(dead_code)]
    created_s: i64,
    expires_s: i64,
    /// Per-piece sales: the pieces paid so far, a JSON list of `[start, end)` (read where it
    /// is charged, `words::charge_pieces`).
    #[allow(dead_code)]
    pieces_paid: String,
}

pub use node::now_s;

fn i64_of(v: u64) -> Result<i64, Error> {
    i64::try_from(v).map_err(|_| Error::InvalidRequest(format!("{v} is too large")))
}

fn upstream(what: &str) -> impl Fn(ClientError) -> Error + '_ {
    move |e| Error::Upstream(format!("{what}: {e}"))
}

/// The object name of piece `i` of `content` on an agent.
pub fn object_name(content: &str, i: u64) -> String {
    format!("c-{content}-{i}")
}

/// Who buys a view: the key that signed the request and, when a bank pays for it, the
/// viewer's name there (DESIGN 14).
#[derive(Debug, Clone, Copy)]
pub struct Viewer<'a> {
    pub entity: &'a EntityId,
    pub name: Option<&'a str>,
}

pub struct Publisher {
    pub key: Arc<KeyPair>,
    pub db: db::Database,
    /// Records (DESIGN 11): views sold, agreed with the viewers' gateways (`records`).
    pub records: Arc<node::records::RecordBook>,
    /// Credit lines with neighbours (DESIGN 12): lines given to the publisher are kept; what
    /// it extends and its neighbours come from `DIR/credit.toml` (none by default).
    pub credit_lines: Arc<node::credit::CreditBook>,
    http: reqwest::Client,
    market: MarketClient,
    market_url: String,
    /// Viewers found free riders or not (`free_rider_threshold`).
    free_riders: clients::free_riders::FreeRiders,
    wallet: IssuerClient,
    /// Pays agents by payword (the publisher's chains beside its key); `None`: transfers.
    words: Option<clients::paywords::PaywordPayer>,
    pub currency: EntityId,
    pub issuer_url: String,
    /// Paid into a bank account (`cdn serve --bank`, DESIGN 14): its name (`user@host`),
    /// where viewers pay for views; `None`: the publisher's own entity.
    pub pay_to: Option<String>,
    options: PublisherOptions,
    agents: Mutex<HashMap<String, Arc<AgentClient>>>,
    /// Estimated read/write credit per contract (the agent's figure when first needed, less
    /// what tokens and writes handed out since may have used).
    credit: Mutex<HashMap<String, i64>>,
    /// Serialises top-ups, so concurrent views do not all pay the same contract at once.
    paying: tokio::sync::Mutex<()>,
    /// Serialises contract purchases.
    buying: tokio::sync::Mutex<()>,
    demand: Mutex<HashMap<String, Demand>>,
    view_pieces: Mutex<HashMap<(String, u64), u32>>,
    events: Mutex<VecDeque<Event>>,
    /// Bytes of pieces the publisher itself read (replication on scale-up); never for viewers.
    pub replication_bytes: std::sync::atomic::AtomicU64,
}

impl Publisher {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key: Arc<KeyPair>,
        db: db::Database,
        http: reqwest::Client,
        market_url: &str,
        wallet: IssuerClient,
        words: Option<clients::paywords::PaywordPayer>,
        currency: EntityId,
        issuer_url: String,
        options: PublisherOptions,
    ) -> Publisher {
        Publisher {
            words,
            records: records::book(db.clone(), key.clone()),
            credit_lines: node::credit::CreditBook::new(
                db.clone(),
                key.clone(),
                node::credit::CreditPolicy::default(),
            ),
            market: MarketClient::new(http.clone(), market_url, key.clone()),
            market_url: market_url.to_owned(),
            free_riders: clients::free_riders::FreeRiders::new(options.free_rider_threshold),
            key,
            db,
            http,
            wallet,
            currency,
            issuer_url,
            pay_to: None,
            options,
            agents: Mutex::default(),
            credit: Mutex::default(),
            paying: tokio::sync::Mutex::new(()),
            buying: tokio::sync::Mutex::new(()),
            demand: Mutex::default(),
            view_pieces: Mutex::default(),
            events: Mutex::default(),
            replication_bytes: Default::default(),
        }
    }

    pub fn options(&self) -> &PublisherOptions {
        &self.options
    }

    fn agent(&self, endpoint: &str) -> Arc<AgentClient> {
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        agents
            .entry(endpoint.to_owned())
            .or_insert_with(|| {
                Arc::new(AgentClient::new(
                    self.http.clone(),
                    endpoint,
                    self.key.clone(),
                ))
            })
            .clone()
    }

    fn event(&self, content: &str, what: String) {
        tracing::info!(content, "{what}");
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() == EVENTS_MAX {
            events.pop_front();
        }
        events.push_back(Event {
            time: protocol::market::format_rfc3339(now_s()),
            content: content.to_owned(),
            what,
        });
    }

    async fn content(&self, id: &str) -> Result<ContentRow, Error> {
        let id = id.to_owned();
        self.db
            .run(move |conn| {
                contents::table
                    .find(&id)
                    .first::<ContentRow>(conn)
                    .optional()?
                    .ok_or(Error::UnknownContent(id))
            })
            .await
    }
}

/// Replicas per piece of a content.
fn replica_counts(
    conn: &mut db::AnyConnection,
    content: &str,
) -> Result<HashMap<u64, usize>, Error> {
    let rows: Vec<i32> = replicas::table
        .filter(replicas::content_id.eq(content))
        .select(replicas::piece)
        .load(conn)?;
    let mut out = HashMap::new();
    for p in rows {
        *out.entry(p as u64).or_insert(0) += 1;
    }
    Ok(out)
}
