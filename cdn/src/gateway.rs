//! The viewer's gateway (`cdn gateway`): a local HTTP server any player can use. On the first
//! request for a content it buys a view (LCP transfer to the publisher, then `POST /v1/views`),
//! then serves the content with `Range` support from pieces fetched in parallel ahead of the
//! reader, each verified against the signed manifest, moving to another replica when one is
//! slow, wrong or gone.
//!
//! Invariants:
//! - No unverified byte reaches the player: a piece is served only once its SHA-256 matches
//!   the publisher-signed manifest.
//! - One view per content per gateway while the view lasts: concurrent first requests wait
//!   for one purchase.
//! - Memory is bounded: at most `cache_pieces` pieces are held, plus one response channel of
//!   [`STREAM_CHUNKS_MAX`] slices per open response.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clients::issuer::IssuerClient;
use node::client::{ClientError, ClientOptions, SignedClient};
use protocol::cdn::{
    BadPiece, BuyView, Catalog, Instructions, InstructionsRequest, PieceInstructions, Source,
    ViewAnswer,
};
use protocol::{EntityId, Envelope, KeyPair};
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::error::Error;
use crate::manifest::{self, Manifest};

mod buy;
mod http;
mod tokens;
pub use tokens::{TOKENS_PENDING_MAX, TOKENS_RECORD_INTERVAL_MS};

pub use http::{routes, start, RunningGateway, State};

/// Slices queued per open response (each at most a piece).
pub const STREAM_CHUNKS_MAX: usize = 2;
/// Times the gateway asks the publisher again for a piece whose every source failed.
pub const REINSTRUCT_MAX: u32 = 2;
/// Threads that fetch and verify pieces.
pub const FETCH_THREADS: usize = 2;
/// Upcoming pieces the stats list.
pub const UPCOMING_MAX: usize = 16;
/// Pieces fetched ahead while the reader's first piece is on its way (then `ahead_pieces`).
pub const FIRST_PIECE_AHEAD: u64 = 1;
/// Pieces asked for in the first instructions request (the first byte waits for it).
pub const FIRST_WINDOW_PIECES: u64 = 4;
/// Pieces asked for in later instructions requests (the publisher's `WINDOW_PIECES_MAX`).
pub const WINDOW_PIECES: u64 = 32;

#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub listen: String,
    pub publisher_url: String,
    pub wallet_key: PathBuf,
    /// Pieces fetched ahead of the reader.
    pub ahead_pieces: u64,
    /// Pieces kept in memory.
    pub cache_pieces: usize,
    /// A source slower than this for one piece is given up for the next replica.
    pub piece_timeout_ms: u64,
    /// Pay from a bank account instead of the wallet (DESIGN 14): views by transfer through
    /// the bank, naming the viewer's name there; no paywords. The key still signs.
    pub bank: Option<clients::bank::BankLink>,
}

impl GatewayOptions {
    pub fn new(publisher_url: &str, wallet_key: PathBuf) -> GatewayOptions {
        GatewayOptions {
            listen: "127.0.0.1:0".into(),
            publisher_url: publisher_url.trim_end_matches('/').to_owned(),
            wallet_key,
            ahead_pieces: 6,
            cache_pieces: 48,
            piece_timeout_ms: 3_000,
            bank: None,
        }
    }
}

/// What the player page shows, per content.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub content: String,
    pub title: String,
    pub view: String,
    pub size: u64,
    /// What the view cost, in minor units and for people.
    pub spend: u64,
    pub spend_shown: String,
    pub bytes_per_agent: BTreeMap<String, u64>,
    pub pieces_per_agent: BTreeMap<String, u64>,
    pub pieces_fetched: u64,
    pub bytes_fetched: u64,
    pub bytes_served: u64,
    /// Sources given up (error, slow, wrong bytes) for another replica.
    pub failovers: u64,
    /// Pieces an agent answered with bytes that did not match the manifest.
    pub corrupt: u64,
    /// Sources that took longer than the piece timeout.
    pub slow: u64,
    /// Fetched bytes per second of fetching.
    pub throughput_bytes_per_s: f64,
    /// The player's position, as the watch page reports it.
    pub current_time_s: f64,
    #[serde(skip)]
    fetch_time: Duration,
}

/// Pieces by index (each fetched once, shared by every reader) and their insertion order, for
/// eviction.
type PieceCache = (HashMap<u64, Arc<OnceCell<Bytes>>>, VecDeque<u64>);

/// Whether the gateway pays by payword: yes unless `CDN_PAYWORDS=0`.
fn paywords_on() -> bool {
    clients::paywords::enabled("CDN_PAYWORDS")
}

pub struct Session {
    pub manifest: Manifest,
    pub view: ViewAnswer,
    /// Untried sources per piece (a short-held lock: never across an await).
    sources: Mutex<HashMap<u64, VecDeque<Source>>>,
    /// Held while asking the publisher for instructions, so one window is asked once.
    instructing: tokio::sync::Mutex<()>,
    pieces: Mutex<PieceCache>,
    pub stats: Mutex<Stats>,
    expires_s: i64,
    /// Pays the publisher by payword (the view, or per piece); `None`: by transfer.
    payer: Option<clients::paywords::PaywordPayer>,
    /// Per-piece sales: the pieces paid for so far (at most the content's piece count).
    paid_pieces: Mutex<std::collections::BTreeSet<u64>>,
    /// Agents that were given up as too slow for a piece: tried after every other source of
    /// later pieces, so a thin uplink costs the player one piece timeout, not one per piece
    /// (at most the agents of the content's instructions).
    slow_agents: Mutex<std::collections::HashSet<String>>,
}

pub struct Gateway {
    options: GatewayOptions,
    key: Arc<KeyPair>,
    http: reqwest::Client,
    publisher: SignedClient,
    counters: node::client::ClockCounter,
    sessions: tokio::sync::Mutex<HashMap<String, Arc<Session>>>,
    /// One record written to the wallet's chain at a time (`<key>.records/`, DESIGN 11).
    records_turn: Arc<tokio::sync::Mutex<()>>,
    /// Tokens read and not recorded yet (`tokens` records, proposed in the background).
    tokens: tokens::Recorder,
    /// Bytes the gateway received from the publisher (manifests, views, instructions).
    pub publisher_bytes: AtomicU64,
    /// Where pieces are fetched and verified (see [`Gateway::piece`]).
    fetch: tokio::runtime::Handle,
    fetch_rt: Option<tokio::runtime::Runtime>,
    /// With a bank: the viewer's name there and the token's currency (issuer URL), asked once.
    bank_account: OnceCell<(String, String)>,
    /// The publisher's descriptor and when it was read (see [`Gateway::publisher_descriptor`]).
    descriptor: tokio::sync::Mutex<Option<(Instant, serde_json::Value)>>,
    /// Per issuer URL: the wallet's client, payword payer and currency (see
    /// [`Gateway::paying`]); one entry per currency the publisher sells in.
    paying: Mutex<HashMap<String, buy::Paying>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // Without blocking: the gateway may be dropped inside another runtime.
        if let Some(rt) = self.fetch_rt.take() {
            rt.shutdown_background();
        }
    }
}

fn from_publisher(e: ClientError) -> Error {
    match &e {
        ClientError::Api { code, message, .. } if code == "unknown_content" => {
            Error::UnknownContent(message.clone())
        }
        _ => Error::Upstream(format!("the publisher: {e}")),
    }
}

impl Gateway {
    pub fn new(options: GatewayOptions) -> anyhow::Result<Gateway> {
        let fetch_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(FETCH_THREADS)
            .thread_name("cdn-fetch")
            .enable_all()
            .build()?;
        node::client::check_url(&options.publisher_url)?;
        let key = Arc::new(node::keyfile::load(&options.wallet_key).map_err(|e| {
            anyhow::anyhow!(
                "cannot load the wallet key {}: {e}",
                options.wallet_key.display()
            )
        })?);
        let http = node::client::http_client(&ClientOptions::default())?;
        let records_turn = Arc::new(tokio::sync::Mutex::new(()));
        let tokens = tokens::Recorder {
            read: Default::default(),
            key_path: options.wallet_key.clone(),
            key: key.clone(),
            http: http.clone(),
            turn: records_turn.clone(),
        };
        fetch_rt.spawn(tokens.clone().run());
        Ok(Gateway {
            publisher: SignedClient::new(http.clone(), &options.publisher_url, key.clone()),
            key,
            http,
            options,
            counters: Default::default(),
            sessions: Default::default(),
            records_turn,
            tokens,
            publisher_bytes: AtomicU64::new(0),
            fetch: fetch_rt.handle().clone(),
            fetch_rt: Some(fetch_rt),
            bank_account: OnceCell::new(),
            descriptor: Default::default(),
            paying: Default::default(),
        })
    }

    pub fn entity(&self) -> &EntityId {
        self.key.entity()
    }

    /// Record the view just bought (DESIGN 11): a `view` proposal from the wallet's chain to
    /// the publisher, in the background (playback never waits for it). One not agreed now is
    /// sent again with the next view.
    fn record_view(&self, answer: &ViewAnswer) {
        let tx = serde_json::json!({
            "view": answer.view,
            "content": answer.content,
            "price": answer.paid,
        });
        let (key_path, key) = (self.options.wallet_key.clone(), self.key.clone());
        let (publisher, turn) = (self.publisher.clone(), self.records_turn.clone());
        // On a blocking thread: the record chain's file is read, appended and fsynced by
        // plain file calls, which must not hold up the worker that streams the view.
        let runtime = tokio::runtime::Handle::current();
        let record = async move {
            let _turn = turn.lock().await;
            let _ = clients::records::resend_unanswered(
                &key_path,
                key.clone(),
                std::slice::from_ref(&publisher),
            )
            .await;
            let agreed = clients::records::record_deal(
                &key_path,
                key,
                &publisher,
                protocol::record::kinds::VIEW,
                &tx,
            )
            .await;
            if let clients::records::Agreed::Later(why) = agreed {
                tracing::warn!("the view's record is not agreed yet (sent again later): {why}");
            }
        };
        tokio::task::spawn_blocking(move || runtime.block_on(record));
    }

    /// Propose the `tokens` records of what was read so far now, rather than at the next
    /// interval (tests, and a gateway about to stop). Answers how many were agreed.
    pub async fn record_tokens_now(&self) -> usize {
        self.tokens.flush().await
    }

    /// Tokens read and not proposed in a record yet.
    pub fn tokens_unrecorded(&self) -> usize {
        self.tokens.read.pending()
    }

    fn count_publisher<T: Serialize>(&self, v: &T) {
        let n = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(0) as u64;
        self.publisher_bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// The publisher's catalog.
    pub async fn catalog(&self) -> Result<Catalog, Error> {
        let v: Catalog = self
            .http
            .get(format!("{}/v1/contents", self.options.publisher_url))
            .send()
            .await
            .map_err(|e| Error::Upstream(format!("the publisher: {e}")))?
            .json()
            .await
            .map_err(|e| Error::Upstream(format!("the publisher: {e}")))?;
        self.count_publisher(&v);
        Ok(v)
    }

    /// The session for `content`: the view bought on first use (and again once it expires).
    pub async fn session(&self, content: &str) -> Result<Arc<Session>, Error> {
        if !manifest::valid_content_id(content) {
            return Err(Error::UnknownContent(content.to_owned()));
        }
        let mut sessions = self.sessions.lock().await;
        if let Some(s) = sessions.get(content) {
            if s.expires_s > node::now_s() + 60 {
                return Ok(s.clone());
            }
        }
        let s = Arc::new(self.buy(content).await?);
        sessions.insert(content.to_owned(), s.clone());
        Ok(s)
    }

    /// Piece `i` of the session's content, verified; fetched once, shared by every reader.
    pub async fn piece(self: &Arc<Self>, s: &Arc<Session>, i: u64) -> Result<Bytes, Error> {
        let cell = {
            let mut guard = s.pieces.lock().unwrap_or_else(|p| p.into_inner());
            let (map, order) = &mut *guard;
            let cell = match map.get(&i) {
                Some(c) => c.clone(),
                None => {
                    let c = Arc::new(OnceCell::new());
                    map.insert(i, c.clone());
                    order.push_back(i);
                    c
                }
            };
            while map.len() > self.options.cache_pieces.max(2) {
                match order.pop_front() {
                    Some(old) if old != i => {
                        map.remove(&old);
                    }
                    Some(old) => order.push_back(old),
                    None => break,
                }
            }
            cell
        };
        if let Some(b) = cell.get() {
            return Ok(b.clone());
        }
        // Fetching runs on the gateway's own multi-threaded runtime: an HTTP server thread
        // would otherwise carry every agent connection of a stream and the stream itself.
        let (g, s) = (self.clone(), s.clone());
        self.fetch
            .spawn(async move { cell.get_or_try_init(|| g.fetch_piece(&s, i)).await.cloned() })
            .await
            .map_err(|e| Error::Upstream(format!("a piece fetch stopped: {e}")))?
    }

    /// Start fetching pieces `from ..= to` in the background (ahead of the reader).
    fn prefetch(self: &Arc<Self>, s: &Arc<Session>, from: u64, to: u64) {
        for i in from..=to {
            let (g, s) = (self.clone(), s.clone());
            let known = s
                .pieces
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .0
                .contains_key(&i);
            if !known {
                self.fetch.spawn(async move {
                    let _ = g.piece(&s, i).await;
                });
            }
        }
    }

    /// The next source to try for piece `i`: the first not known to be slow, else the first.
    fn pop_source(s: &Session, i: u64) -> Option<Source> {
        let slow = s.slow_agents.lock().unwrap_or_else(|p| p.into_inner());
        let mut sources = s.sources.lock().unwrap_or_else(|p| p.into_inner());
        let queue = sources.get_mut(&i)?;
        let fast = queue.iter().position(|src| !slow.contains(&src.agent));
        queue.remove(fast.unwrap_or(0))
    }

    fn has_instructions(s: &Session, i: u64) -> bool {
        s.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&i)
    }

    fn add_instructions(s: &Session, fresh: Vec<PieceInstructions>) {
        let mut sources = s.sources.lock().unwrap_or_else(|p| p.into_inner());
        for p in fresh {
            sources.insert(p.index, p.sources.into());
        }
    }

    /// Ask the publisher for a window of instructions from piece `from`, unless another task
    /// already has: the first window is small (the first byte waits for it), later ones large.
    async fn instruct_window(&self, s: &Session, from: u64) -> Result<(), Error> {
        let _one = s.instructing.lock().await;
        if Self::has_instructions(s, from) {
            return Ok(());
        }
        let n = manifest::piece_count(s.manifest.size, s.manifest.piece_bytes);
        let first = s
            .sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        // Sold per piece, the windows stay small: a viewer pays for little it does not watch.
        let window = if first || s.view.price_per_piece > 0 {
            FIRST_WINDOW_PIECES
        } else {
            WINDOW_PIECES
        };
        let mut count = 0;
        while count < window && from + count < n && !Self::has_instructions(s, from + count) {
            count += 1;
        }
        let fresh = self.instructions(s, from, count.max(1)).await?;
        Self::add_instructions(s, fresh);
        Ok(())
    }

    /// Fetch the instructions for piece `from` and after in the background, so the fetches
    /// ahead of the reader never wait for the publisher.
    fn prefetch_instructions(self: &Arc<Self>, s: &Arc<Session>, from: u64) {
        let n = manifest::piece_count(s.manifest.size, s.manifest.piece_bytes);
        if from >= n || Self::has_instructions(s, from) {
            return;
        }
        let (g, s) = (self.clone(), s.clone());
        self.fetch.spawn(async move {
            if let Err(e) = g.instruct_window(&s, from).await {
                tracing::warn!(error = %e, "instructions ahead failed");
            }
        });
    }

    /// The next untried source of piece `i`, asking the publisher for instructions when none
    /// is left. `None` when the publisher has no more for this view.
    async fn next_source(
        &self,
        s: &Session,
        i: u64,
        asked: &mut u32,
    ) -> Result<Option<Source>, Error> {
        if let Some(src) = Self::pop_source(s, i) {
            return Ok(Some(src));
        }
        if !Self::has_instructions(s, i) {
            self.instruct_window(s, i).await?;
            return Ok(Self::pop_source(s, i));
        }
        // Every source of the piece was tried: ask again, a bounded number of times.
        let _one = s.instructing.lock().await;
        if let Some(src) = Self::pop_source(s, i) {
            return Ok(Some(src));
        }
        if *asked >= REINSTRUCT_MAX {
            return Ok(None);
        }
        *asked += 1;
        let fresh = self.instructions(s, i, 1).await?;
        Self::add_instructions(s, fresh);
        Ok(Self::pop_source(s, i))
    }

    async fn instructions(
        &self,
        s: &Session,
        from: u64,
        count: u64,
    ) -> Result<Vec<PieceInstructions>, Error> {
        let body = serde_json::to_vec(&InstructionsRequest { from, count })
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        // Per-piece sales: the words for this window's pieces not paid yet.
        let price = s.view.price_per_piece;
        let unpaid: Vec<u64> = if price > 0 {
            let paid = s.paid_pieces.lock().unwrap_or_else(|p| p.into_inner());
            (from..from + count).filter(|i| !paid.contains(i)).collect()
        } else {
            Vec::new()
        };
        let mut headers = Vec::new();
        if let (Some(payer), false) = (&s.payer, unpaid.is_empty()) {
            let publisher = self.publisher.audience().await.map_err(from_publisher)?;
            let due = (unpaid.len() as u64).saturating_mul(price);
            if let Some(p) = payer
                .pay(publisher, due)
                .await
                .map_err(|e| Error::Upstream(format!("paying for pieces: {e}")))?
            {
                headers = p.headers();
            }
        }
        let v: Instructions = self
            .publisher
            .command_with_headers(
                "POST",
                &format!("/v1/views/{}/pieces", s.view.view),
                body,
                "application/json",
                self.counters.next(),
                &headers,
            )
            .await
            .map_err(from_publisher)?
            .value;
        if !unpaid.is_empty() {
            let added = price.saturating_mul(unpaid.len() as u64);
            s.paid_pieces
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(unpaid);
            let mut stats = s.stats.lock().unwrap_or_else(|p| p.into_inner());
            stats.spend = stats.spend.saturating_add(added);
        }
        self.count_publisher(&v);
        Ok(v.pieces)
    }

    /// Tell the publisher, in the background, that `agent` served bad bytes for piece `i`
    /// (it checks, deletes the bad replica and places the piece again).
    fn report_bad(&self, s: &Session, i: u64, agent: &str) {
        let publisher = self.publisher.clone();
        let counter = self.counters.next();
        let path = format!("/v1/views/{}/reports", s.view.view);
        let body = serde_json::to_vec(&BadPiece {
            piece: i,
            agent: agent.to_owned(),
        })
        .unwrap_or_default();
        self.fetch.spawn(async move {
            let r = publisher
                .command::<protocol::cdn::BadPieceAnswer>("POST", &path, body, counter)
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, piece = i, "the publisher did not take the report");
            }
        });
    }

    async fn fetch_piece(&self, s: &Session, i: u64) -> Result<Bytes, Error> {
        let expected = s
            .manifest
            .pieces
            .get(usize::try_from(i).unwrap_or(usize::MAX))
            .cloned()
            .ok_or_else(|| Error::InvalidRequest(format!("piece {i} is out of range")))?;
        let timeout = Duration::from_millis(self.options.piece_timeout_ms);
        let mut asked = 0;
        while let Some(src) = self.next_source(s, i, &mut asked).await? {
            let started = Instant::now();
            let got = tokio::time::timeout(timeout, async {
                let resp = self.http.get(&src.url).send().await?.error_for_status()?;
                resp.bytes().await
            })
            .await;
            let fail = |s: &Session, slow: bool, corrupt: bool| {
                let mut st = s.stats.lock().unwrap_or_else(|p| p.into_inner());
                st.failovers += 1;
                st.slow += u64::from(slow);
                st.corrupt += u64::from(corrupt);
            };
            match got {
                Ok(Ok(bytes)) => {
                    let b = bytes.clone();
                    let digest = tokio::task::spawn_blocking(move || protocol::sha256_hex(&b))
                        .await
                        .unwrap_or_default();
                    if digest == expected {
                        let mut st = s.stats.lock().unwrap_or_else(|p| p.into_inner());
                        *st.bytes_per_agent.entry(src.agent.clone()).or_insert(0) +=
                            bytes.len() as u64;
                        *st.pieces_per_agent.entry(src.agent.clone()).or_insert(0) += 1;
                        st.pieces_fetched += 1;
                        st.bytes_fetched += bytes.len() as u64;
                        st.fetch_time += started.elapsed();
                        drop(st);
                        self.tokens.read.note(&src, bytes.len() as u64);
                        return Ok(bytes);
                    }
                    tracing::warn!(piece = i, agent = %src.agent, "a piece did not match its hash");
                    fail(s, false, true);
                    self.report_bad(s, i, &src.agent);
                }
                Ok(Err(e)) => {
                    tracing::warn!(piece = i, agent = %src.agent, error = %e, "a source failed");
                    fail(s, false, false);
                }
                Err(_) => {
                    tracing::warn!(piece = i, agent = %src.agent, "a source was too slow");
                    fail(s, true, false);
                    s.slow_agents
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(src.agent.clone());
                }
            }
        }
        Err(Error::Upstream(format!(
            "piece {i}: every replica failed and the publisher has no other"
        )))
    }

    /// The bytes `range` (inclusive) of the content as a stream of slices, fetched ahead.
    pub fn stream(
        self: &Arc<Self>,
        s: Arc<Session>,
        (start, end): (u64, u64),
    ) -> tokio::sync::mpsc::Receiver<Result<Bytes, Error>> {
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_CHUNKS_MAX);
        let g = self.clone();
        tokio::spawn(async move {
            let pb = s.manifest.piece_bytes;
            let last_piece = manifest::piece_count(s.manifest.size, pb).saturating_sub(1);
            let (first, last) = (start / pb, end / pb);
            // The reader's piece is instructed before any piece ahead: the fetches ahead
            // would otherwise take the publisher's windows in turn (the first one small) and
            // the reader's piece wait for all of them. A failure here is met, and reported,
            // by the piece's own fetch.
            if !Self::has_instructions(&s, first) {
                let _ = g.instruct_window(&s, first).await;
            }
            for p in first..=last {
                // While the reader's first piece comes, one piece ahead only: six fetched and
                // hashed at once would share the two cores and the link with it.
                let ahead = if p == first {
                    FIRST_PIECE_AHEAD.min(g.options.ahead_pieces)
                } else {
                    g.options.ahead_pieces
                };
                g.prefetch(&s, p + 1, (p + ahead).min(last_piece));
                g.prefetch_instructions(&s, p + g.options.ahead_pieces + 1);
                let piece = match g.piece(&s, p).await {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let base = p * pb;
                let a = usize::try_from(start.max(base) - base).unwrap_or(0);
                let b = usize::try_from(end.min(base + pb - 1) - base + 1).unwrap_or(0);
                let slice = piece.slice(a.min(piece.len())..b.min(piece.len()));
                s.stats
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .bytes_served += slice.len() as u64;
                if tx.send(Ok(slice)).await.is_err() {
                    return; // the player went away
                }
            }
        });
        rx
    }

    pub fn stats(&self, s: &Session) -> Stats {
        let mut st = s.stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let secs = st.fetch_time.as_secs_f64();
        st.throughput_bytes_per_s = if secs > 0.0 {
            st.bytes_fetched as f64 / secs
        } else {
            0.0
        };
        st
    }

    /// Where the next pieces will come from: for pieces with instructions whose fetch has not
    /// started, the agent that will be tried first (at most [`UPCOMING_MAX`]).
    pub fn upcoming(&self, s: &Session) -> BTreeMap<u64, String> {
        let started: std::collections::HashSet<u64> = s
            .pieces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .keys()
            .copied()
            .collect();
        let sources = s.sources.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: BTreeMap<u64, String> = sources
            .iter()
            .filter(|(i, _)| !started.contains(i))
            .filter_map(|(i, q)| q.front().map(|src| (*i, src.agent.clone())))
            .collect();
        while out.len() > UPCOMING_MAX {
            out.pop_last();
        }
        out
    }

    pub async fn existing(&self, content: &str) -> Option<Arc<Session>> {
        self.sessions.lock().await.get(content).cloned()
    }
}
