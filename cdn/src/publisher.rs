//! The publisher's domain (DESIGN section 8, seed 000 section 5.2): contracts bought through the
//! market, pieces placed on several agents, views sold for LCP, retrieval instructions handed to
//! paying viewers, and replicas scaled with demand. The HTTP layer is [`crate::server`].
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
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::manifest::{self, Manifest};
use crate::schema::{contents, contracts, replicas, views};

mod scaling;
mod selling;

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
        }
    }
}

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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadAnswer {
    pub content: String,
    /// Pieces that still need uploading.
    pub missing: Vec<u64>,
}

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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewAnswer {
    pub view: String,
    pub content: String,
    pub paid: u64,
    pub expires_at: String,
}

/// Where a viewer can fetch one piece.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Source {
    pub agent: String,
    /// The agent's token URL (`GET`, one use).
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PieceInstructions {
    pub index: u64,
    pub sha256: String,
    pub size: u64,
    pub sources: Vec<Source>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub time: String,
    pub content: String,
    pub what: String,
}

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

pub struct Publisher {
    pub key: Arc<KeyPair>,
    db: db::Database,
    http: reqwest::Client,
    market: MarketClient,
    wallet: IssuerClient,
    pub currency: EntityId,
    pub issuer_url: String,
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
        currency: EntityId,
        issuer_url: String,
        options: PublisherOptions,
    ) -> Publisher {
        Publisher {
            market: MarketClient::new(http.clone(), market_url, key.clone()),
            key,
            db,
            http,
            wallet,
            currency,
            issuer_url,
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

    async fn live_contracts(&self) -> Result<Vec<ContractRow>, Error> {
        let now = now_s();
        self.db
            .run(move |conn| {
                Ok::<_, Error>(
                    contracts::table
                        .filter(contracts::end_s.gt(now + 3600))
                        .order(contracts::id)
                        .load::<ContractRow>(conn)?,
                )
            })
            .await
    }

    /// Hold `options.agents` live contracts: buy the missing ones through the market's match,
    /// with the reads a CDN expects priced in, paid first with initial read credit.
    pub async fn ensure_contracts(&self) -> Result<usize, Error> {
        let _one = self.buying.lock().await;
        let have = self.live_contracts().await?;
        if have.len() >= self.options.agents {
            return Ok(have.len());
        }
        let want = self.options.agents - have.len();
        let duration_s = self.options.contract_days * 86_400;
        let request = MatchRequest {
            currency: self.currency.to_string(),
            shard_bytes: self.options.block_bytes,
            data_shards: 1,
            total_shards: Some(want as u64),
            duration_s,
            // A CDN reads each byte many times: weigh read prices heavily.
            expected_read_bytes: self.options.block_bytes.saturating_mul(20),
            max_failure_probability: 1e-3,
            exclude: have.iter().map(|c| c.agent.clone()).collect(),
        };
        let answer = match self.market.match_agents(&request).await {
            Ok(a) => a,
            Err(e) if e.code() == Some("cannot_meet_target") && !have.is_empty() => {
                return Ok(have.len());
            }
            Err(e) => return Err(Error::NoStorage(format!("the market's match failed: {e}"))),
        };
        let market_entity = self
            .market
            .signed()
            .audience()
            .await
            .map_err(upstream("the market"))?
            .clone();
        let buys = answer.agents.iter().map(|chosen| {
            let market_entity = market_entity.clone();
            async move {
                let agent = self.agent(&chosen.endpoint);
                let (_, offer) = agent.offer().await.map_err(upstream("an agent's offer"))?;
                let terms = AgentClient::terms_from_offer(
                    &offer,
                    self.key.entity(),
                    &self.currency,
                    self.options.block_bytes,
                    duration_s,
                    vec![market_entity],
                )
                .map_err(upstream("contract terms"))?;
                let credit =
                    protocol::market::per_kib_charge(terms.read_per_kib, CREDIT_TOPUP_KIB * 1024)
                        .unwrap_or(0);
                let signed = agent
                    .buy(&self.wallet, &terms, credit)
                    .await
                    .map_err(upstream("buying a contract"))?
                    .value;
                self.record_contract(&chosen.endpoint, &terms, &signed)
                    .await?;
                self.credit
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(terms.id.clone(), i64::try_from(credit).unwrap_or(0));
                Ok::<_, Error>(())
            }
        });
        let mut bought = 0;
        for r in join_all(buys).await {
            match r {
                Ok(()) => bought += 1,
                Err(e) => tracing::warn!(error = %e, "a contract purchase failed"),
            }
        }
        if bought > 0 {
            self.event("", format!("bought {bought} contracts through the market"));
        }
        let total = have.len() + bought;
        if total == 0 {
            return Err(Error::NoStorage("no contract could be bought".into()));
        }
        Ok(total)
    }

    async fn record_contract(
        &self,
        endpoint: &str,
        terms: &protocol::market::Contract,
        signed: &SignedContract,
    ) -> Result<(), Error> {
        let signed_json =
            serde_json::to_string(signed).map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let end_s = protocol::market::parse_rfc3339(&terms.end).unwrap_or(0);
        let row = (
            contracts::id.eq(terms.id.clone()),
            contracts::agent.eq(terms.agent.to_string()),
            contracts::endpoint.eq(endpoint.to_owned()),
            contracts::signed.eq(signed_json),
            contracts::read_per_kib.eq(i64_of(terms.read_per_kib)?),
            contracts::write_per_kib.eq(i64_of(terms.write_per_kib)?),
            contracts::block_bytes.eq(i64_of(terms.block_bytes)?),
            contracts::used_bytes.eq(0i64),
            contracts::end_s.eq(end_s),
        );
        self.db
            .run(move |conn| {
                diesel::insert_into(contracts::table)
                    .values(row)
                    .execute(conn)?;
                Ok::<_, Error>(())
            })
            .await
    }

    /// Start (or resume) an upload: the content row, the contracts, and which pieces are missing.
    pub async fn create_upload(&self, req: UploadRequest) -> Result<UploadAnswer, Error> {
        if !(manifest::PIECE_BYTES_MIN..=manifest::PIECE_BYTES_MAX).contains(&req.piece_bytes) {
            return Err(Error::InvalidRequest(format!(
                "piece_bytes must be {} to {}",
                manifest::PIECE_BYTES_MIN,
                manifest::PIECE_BYTES_MAX
            )));
        }
        if req.size == 0 || req.size > manifest::CONTENT_BYTES_MAX {
            return Err(Error::InvalidRequest(format!(
                "size must be 1 to {} bytes",
                manifest::CONTENT_BYTES_MAX
            )));
        }
        if manifest::piece_count(req.size, req.piece_bytes) != req.pieces.len() as u64 {
            return Err(Error::InvalidRequest(
                "the number of piece hashes does not match size / piece_bytes".into(),
            ));
        }
        if !req.pieces.iter().all(|p| manifest::valid_sha256_hex(p)) {
            return Err(Error::InvalidRequest(
                "piece hashes must be 64 lowercase hex digits".into(),
            ));
        }
        if req.replicas == 0 || req.replicas as usize > self.options.agents {
            return Err(Error::InvalidRequest(format!(
                "replicas must be 1 to {} (the publisher's --agents)",
                self.options.agents
            )));
        }
        if req.title.len() > 200 || req.mime.len() > 100 || !req.mime.contains('/') {
            return Err(Error::InvalidRequest(
                "title or mime type is not acceptable".into(),
            ));
        }
        let live = self.ensure_contracts().await?;
        if (req.replicas as usize) > live {
            return Err(Error::NoStorage(format!(
                "{} replicas asked, but only {live} agents are under contract",
                req.replicas
            )));
        }
        let id = manifest::content_id(req.size, req.piece_bytes, &req.pieces);
        let pieces_json =
            serde_json::to_string(&req.pieces).map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let row = (
            contents::id.eq(id.clone()),
            contents::title.eq(req.title.clone()),
            contents::mime.eq(req.mime.clone()),
            contents::size.eq(i64_of(req.size)?),
            contents::piece_bytes.eq(i64_of(req.piece_bytes)?),
            contents::pieces.eq(pieces_json),
            contents::price_per_view.eq(i64_of(req.price_per_view)?),
            contents::replicas_base.eq(i32::try_from(req.replicas).unwrap_or(1)),
            contents::manifest.eq(String::new()),
            contents::created_s.eq(now_s()),
        );
        let cid = id.clone();
        let counts = self
            .db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    let exists: Option<String> = contents::table
                        .find(&cid)
                        .select(contents::id)
                        .first(conn)
                        .optional()?;
                    if exists.is_none() {
                        diesel::insert_into(contents::table)
                            .values(row)
                            .execute(conn)?;
                    }
                    replica_counts(conn, &cid)
                })
            })
            .await?;
        let missing = (0..req.pieces.len() as u64)
            .filter(|i| counts.get(i).copied().unwrap_or(0) < req.replicas as usize)
            .collect();
        Ok(UploadAnswer {
            content: id,
            missing,
        })
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

    /// Store piece `i` of an upload on as many agents as the content's replicas ask for.
    pub async fn put_piece(
        &self,
        content: &str,
        i: u64,
        bytes: bytes::Bytes,
    ) -> Result<usize, Error> {
        let row = self.content(content).await?;
        let pieces = row.piece_hashes()?;
        let expected = pieces
            .get(usize::try_from(i).unwrap_or(usize::MAX))
            .ok_or_else(|| Error::InvalidRequest(format!("piece {i} is out of range")))?;
        let len = row.piece_len(i);
        let b = bytes.clone();
        let digest = tokio::task::spawn_blocking(move || protocol::sha256_hex(&b))
            .await
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        if bytes.len() as u64 != len || &digest != expected {
            return Err(Error::PieceMismatch { piece: i });
        }
        let want = row.replicas_base.max(1) as usize;
        self.add_replicas(content, i, bytes, want).await
    }

    /// Place piece `i` on more agents until it has `want` replicas. Answers the count.
    async fn add_replicas(
        &self,
        content: &str,
        i: u64,
        bytes: bytes::Bytes,
        want: usize,
    ) -> Result<usize, Error> {
        let holders = self.holders(content, i).await?;
        if holders.len() >= want {
            return Ok(holders.len());
        }
        let candidates: Vec<ContractRow> = self
            .live_contracts()
            .await?
            .into_iter()
            .filter(|c| !holders.iter().any(|h| h.id == c.id))
            .filter(|c| c.used_bytes + bytes.len() as i64 <= c.block_bytes)
            .collect();
        // Least used first; ties broken by a rotation on the piece index, to spread pieces.
        let n = candidates.len().max(1);
        let mut keyed: Vec<(i64, usize, ContractRow)> = candidates
            .into_iter()
            .enumerate()
            .map(|(k, c)| (c.used_bytes, (k + n - (i as usize % n)) % n, c))
            .collect();
        keyed.sort_by_key(|(used, r, _)| (*used / (1 << 20), *r));
        let chosen: Vec<ContractRow> = keyed
            .into_iter()
            .map(|(_, _, c)| c)
            .take(want - holders.len())
            .collect();
        if chosen.is_empty() {
            return Err(Error::NoStorage(format!(
                "no contract has room for piece {i} ({} bytes)",
                bytes.len()
            )));
        }
        let name = object_name(content, i);
        let puts = chosen.iter().map(|c| {
            let bytes = bytes.clone();
            let name = name.clone();
            async move {
                self.put_paying(c, &name, bytes.to_vec()).await?;
                Ok::<_, Error>(c.id.clone())
            }
        });
        let mut placed = Vec::new();
        let mut last_error = None;
        for r in join_all(puts).await {
            match r {
                Ok(id) => placed.push(id),
                Err(e) => last_error = Some(e),
            }
        }
        let (cid, size) = (content.to_owned(), bytes.len() as i64);
        let count = placed.len();
        let piece = i32::try_from(i).map_err(|_| Error::InvalidRequest("piece index".into()))?;
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    for contract in &placed {
                        diesel::insert_into(replicas::table)
                            .values((
                                replicas::content_id.eq(&cid),
                                replicas::piece.eq(piece),
                                replicas::contract_id.eq(contract),
                                replicas::added_s.eq(now_s()),
                            ))
                            .execute(conn)?;
                        diesel::update(contracts::table.find(contract))
                            .set(contracts::used_bytes.eq(contracts::used_bytes + size))
                            .execute(conn)?;
                    }
                    Ok::<_, Error>(())
                })
            })
            .await?;
        match last_error {
            Some(e) if count == 0 => Err(e),
            _ => Ok(holders.len() + count),
        }
    }

    /// The contracts holding piece `i`, oldest replica first.
    async fn holders(&self, content: &str, i: u64) -> Result<Vec<ContractRow>, Error> {
        let (cid, piece) = (content.to_owned(), i32::try_from(i).unwrap_or(i32::MAX));
        self.db
            .run(move |conn| {
                Ok::<_, Error>(
                    replicas::table
                        .inner_join(contracts::table.on(contracts::id.eq(replicas::contract_id)))
                        .filter(replicas::content_id.eq(&cid))
                        .filter(replicas::piece.eq(piece))
                        .order((replicas::added_s, replicas::contract_id))
                        .select(contracts::all_columns)
                        .load::<ContractRow>(conn)?,
                )
            })
            .await
    }

    /// Write an object, topping up the contract's credit when the agent asks for payment.
    async fn put_paying(&self, c: &ContractRow, name: &str, bytes: Vec<u8>) -> Result<(), Error> {
        let agent = self.agent(&c.endpoint);
        let deadline = Instant::now() + Duration::from_millis(CREDIT_WAIT_MS_MAX);
        let mut paid = false;
        loop {
            match agent.put(&c.id, name, bytes.clone()).await {
                Ok(_) => return Ok(()),
                Err(e) if e.code() == Some("payment_required") && Instant::now() < deadline => {
                    if !paid {
                        let charge = protocol::market::per_kib_charge(
                            c.write_per_kib as u64,
                            (bytes.len() as u64).saturating_mul(64),
                        )
                        .unwrap_or(0)
                        .max(1024);
                        self.top_up(c, charge).await?;
                        paid = true;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(Error::Upstream(format!("writing {name}: {e}"))),
            }
        }
    }

    /// Read an object of the publisher's own contract, paying ahead on `402`.
    async fn read_paying(&self, c: &ContractRow, name: &str) -> Result<bytes::Bytes, Error> {
        let agent = self.agent(&c.endpoint);
        match agent.get(&c.id, name, None).await {
            Ok(b) => Ok(b),
            Err(e) if e.code() == Some("payment_required") => {
                let charge = protocol::market::per_kib_charge(
                    c.read_per_kib as u64,
                    CREDIT_TOPUP_KIB * 1024,
                )
                .unwrap_or(0);
                self.top_up(c, charge.max(1024)).await?;
                self.wait_for_credit(c, charge.min(1024)).await;
                agent
                    .get(&c.id, name, None)
                    .await
                    .map_err(|e| Error::Upstream(format!("reading {name}: {e}")))
            }
            Err(e) => Err(Error::Upstream(format!("reading {name}: {e}"))),
        }
    }

    async fn top_up(&self, c: &ContractRow, amount: u64) -> Result<(), Error> {
        let agent = EntityId::parse(&c.agent).map_err(|_| Error::Upstream("agent id".into()))?;
        self.wallet
            .transfer(&agent, amount, Some(&c.id))
            .await
            .map_err(upstream("paying an agent"))?;
        let mut credit = self.credit.lock().unwrap_or_else(|p| p.into_inner());
        *credit.entry(c.id.clone()).or_insert(0) += i64::try_from(amount).unwrap_or(0);
        Ok(())
    }

    /// Make sure each contract's read credit covers `need` more; pay the agents ahead.
    async fn cover_reads(&self, need: &HashMap<String, (ContractRow, u64)>) -> Result<(), Error> {
        let _one = self.paying.lock().await;
        for (id, (c, amount)) in need {
            let known = self
                .credit
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(id)
                .copied();
            let estimate = match known {
                Some(v) => v,
                None => {
                    // An agent that does not answer is neither paid nor waited for: its
                    // replicas get no tokens, and the viewer reads the others.
                    let view = match self.agent(&c.endpoint).contract(id).await {
                        Ok(view) => view,
                        Err(e) => {
                            tracing::warn!(error = %e, contract = %id, "a replica's agent does not answer; not paid");
                            continue;
                        }
                    };
                    self.credit
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(id.clone(), view.credit);
                    view.credit
                }
            };
            let low =
                protocol::market::per_kib_charge(c.read_per_kib as u64, CREDIT_LOW_KIB * 1024)
                    .unwrap_or(0);
            let after = estimate - i64::try_from(*amount).unwrap_or(i64::MAX);
            if after < i64::try_from(low).unwrap_or(i64::MAX) {
                let bulk = protocol::market::per_kib_charge(
                    c.read_per_kib as u64,
                    CREDIT_TOPUP_KIB * 1024,
                )
                .unwrap_or(0)
                .max(*amount);
                self.top_up(c, bulk).await?;
                if after < 0 {
                    // The tokens would bounce: wait until the agent has seen the payment.
                    self.wait_for_credit(c, *amount).await;
                }
            }
            let mut credit = self.credit.lock().unwrap_or_else(|p| p.into_inner());
            *credit.entry(id.clone()).or_insert(0) -= i64::try_from(*amount).unwrap_or(0);
        }
        Ok(())
    }

    async fn wait_for_credit(&self, c: &ContractRow, amount: u64) {
        let deadline = Instant::now() + Duration::from_millis(CREDIT_WAIT_MS_MAX);
        let agent = self.agent(&c.endpoint);
        while Instant::now() < deadline {
            if let Ok(v) = agent.contract(&c.id).await {
                if v.credit >= i64::try_from(amount).unwrap_or(i64::MAX) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sign and list the manifest once every piece is stored.
    pub async fn publish(&self, content: &str) -> Result<serde_json::Value, Error> {
        let row = self.content(content).await?;
        let pieces = row.piece_hashes()?;
        let cid = content.to_owned();
        let counts = self.db.run(move |conn| replica_counts(conn, &cid)).await?;
        let missing = (0..pieces.len() as u64)
            .filter(|i| counts.get(i).copied().unwrap_or(0) == 0)
            .count();
        if missing > 0 {
            return Err(Error::Incomplete { missing });
        }
        let m = Manifest {
            content: row.id.clone(),
            publisher: self.key.entity().clone(),
            title: row.title.clone(),
            mime: row.mime.clone(),
            size: row.size as u64,
            piece_bytes: row.piece_bytes as u64,
            pieces_root: manifest::pieces_root(&pieces),
            pieces,
            price_per_view: row.price_per_view as u64,
            currency: self.currency.clone(),
            issuer_url: self.issuer_url.clone(),
        };
        let env = m
            .sign(&self.key)
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let text = serde_json::to_string(&env).map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let cid = content.to_owned();
        self.db
            .run(move |conn| {
                diesel::update(contents::table.find(&cid))
                    .set(contents::manifest.eq(text))
                    .execute(conn)?;
                Ok::<_, Error>(())
            })
            .await?;
        self.event(content, format!("published \"{}\"", row.title));
        Ok(serde_json::json!({"content": content, "manifest": env}))
    }

    /// The publisher's currency (code and decimals), for showing prices; `None` when the
    /// issuer does not answer.
    pub async fn currency_units(&self) -> Option<protocol::ledger::Currency> {
        // Bounded: a status page must not wait on an issuer that does not answer.
        clients::issuer::currency_at(&self.issuer_url).await
    }

    pub async fn catalog(&self) -> Result<Vec<CatalogEntry>, Error> {
        let rows = self
            .db
            .run(|conn| {
                Ok::<_, Error>(
                    contents::table
                        .filter(contents::manifest.ne(""))
                        .order(contents::created_s)
                        .load::<ContentRow>(conn)?,
                )
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| CatalogEntry {
                pieces: manifest::piece_count(r.size as u64, r.piece_bytes as u64),
                content: r.id,
                title: r.title,
                mime: r.mime,
                size: r.size as u64,
                price_per_view: r.price_per_view as u64,
                currency: self.currency.to_string(),
                issuer_url: self.issuer_url.clone(),
            })
            .collect())
    }

    /// The signed manifest of a published content.
    pub async fn manifest(&self, content: &str) -> Result<serde_json::Value, Error> {
        let row = self.content(content).await?;
        if row.manifest.is_empty() {
            return Err(Error::UnknownContent(content.to_owned()));
        }
        serde_json::from_str(&row.manifest).map_err(|e| Error::InvalidRequest(e.to_string()))
    }

    /// Everything the status page shows.
    pub async fn status(&self) -> Result<serde_json::Value, Error> {
        let rows = self
            .db
            .run(|conn| {
                Ok::<_, Error>(
                    contents::table
                        .order(contents::created_s)
                        .load::<ContentRow>(conn)?,
                )
            })
            .await?;
        let demand = self
            .demand
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut contents_out = Vec::new();
        for row in rows {
            let n = manifest::piece_count(row.size as u64, row.piece_bytes as u64);
            let cid = row.id.clone();
            let counts = self.db.run(move |conn| replica_counts(conn, &cid)).await?;
            let cid = row.id.clone();
            let (views_sold, income): (i64, i64) = self
                .db
                .run(move |conn| {
                    let rows: Vec<i64> = views::table
                        .filter(views::content_id.eq(&cid))
                        .select(views::paid)
                        .load(conn)?;
                    Ok::<_, Error>((rows.len() as i64, rows.iter().sum()))
                })
                .await?;
            let per_piece: Vec<usize> = (0..n)
                .map(|i| counts.get(&i).copied().unwrap_or(0))
                .collect();
            contents_out.push(serde_json::json!({
                "content": row.id,
                "title": row.title,
                "size": row.size,
                "pieces": n,
                "published": !row.manifest.is_empty(),
                "price_per_view": row.price_per_view,
                "replicas_base": row.replicas_base,
                "replicas_min": per_piece.iter().min().copied().unwrap_or(0),
                "replicas_max": per_piece.iter().max().copied().unwrap_or(0),
                "views": views_sold,
                "income": income,
                "pieces_asked_this_round": demand.get(&row.id).map(|d| d.pieces_asked).unwrap_or(0),
            }));
        }
        let contracts_rows = self.live_contracts().await?;
        let credit = self
            .credit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let contracts_out: Vec<serde_json::Value> = contracts_rows
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id,
                    "agent": c.agent,
                    "endpoint": c.endpoint,
                    "read_per_kib": c.read_per_kib,
                    "used_bytes": c.used_bytes,
                    "block_bytes": c.block_bytes,
                    "credit_estimate": credit.get(&c.id),
                    "ends": protocol::market::format_rfc3339(c.end_s),
                })
            })
            .collect();
        let events: Vec<Event> = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .cloned()
            .collect();
        let balance = self.wallet.balance().await.map(|b| b.balance).ok();
        // For people: the code and decimals amounts are shown with (absent if the issuer
        // does not answer).
        let units = self.currency_units().await;
        Ok(serde_json::json!({
            "publisher": self.key.entity(),
            "currency": self.currency,
            "currency_units": units,
            "issuer_url": self.issuer_url,
            "balance": balance,
            "contents": contents_out,
            "contracts": contracts_out,
            "events": events,
            "replication_bytes": self.replication_bytes.load(std::sync::atomic::Ordering::Relaxed),
            "scaling": {
                "hot_reads_per_replica": self.options.hot_reads_per_replica,
                "cold_after_s": self.options.cold_after_s,
                "interval_s": self.options.scale_interval_s,
            },
        }))
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
