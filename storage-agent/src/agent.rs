//! The agent's domain: offers, contracts, charging, objects, retrievals, audits, payments and
//! expiry. HTTP handlers call these; nothing here knows HTTP.
//!
//! Invariants:
//! - `contracts.used_bytes` is the sum of the sizes of that contract's `objects` rows: both are
//!   changed in the same transaction, and bytes are stored (durably) before the row names them.
//! - A contract's credit (plus the buyer's tab room) never goes below zero: every charge is one
//!   relative, conditional SQL update ([`charge_contract`]), so concurrent charges cannot both
//!   draw the last of it. With tabs on, charges also run under the buyer's lock, so a buyer's
//!   debt across its contracts never exceeds `tab_limit`.
//! - Reads of local files take no contract lock: they open the file inside the charging
//!   transaction, and an open file keeps its bytes when a PUT or reap unlinks it. Writes,
//!   deletes, audits and reads from other stores run under the contract's lock.
//! - Reserved space (blocks of live contracts) never exceeds capacity: contracts are admitted
//!   one at a time under `admit_lock`.
//! - A payment made before its contract (prepaid) is claimed once, by the contract: deposits are
//!   applied under `admit_lock` too, so a deposit and the contract it pays cannot miss each other.
//! - A deposit credits a contract once: the issuer cursor moves in the transaction that credits.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use db::{AnyConnection, Database};
use diesel::prelude::*;
use protocol::market::{self, Contract, Offer, OfferCurrency};
use protocol::{EntityId, Envelope, KeyPair};
use serde::{Deserialize, Serialize};

use crate::config::{
    AgentConfig, OBJECT_BYTES_MAX, OFFER_TTL_S, PENDING_SHARE_PCT_MAX, PENDING_TTL_S,
};
use crate::error::Error;
use crate::schema::{commands, contracts, objects, payment_cursors, prepaid, retrievals, stats};
use crate::store::Store;

/// Longest object name.
pub const NAME_CHARS_MAX: usize = 128;
/// Most uses one retrieval token may grant.
pub const RETRIEVAL_USES_MAX: u64 = 1_000_000;
/// Longest a retrieval token may live.
pub const RETRIEVAL_TTL_S_MAX: u64 = 30 * 86_400;
/// Most tokens one retrievals request may ask for.
pub const RETRIEVALS_PER_REQUEST_MAX: usize = 256;
/// PUT bodies buffered at once: bounds memory to PUTS_BUFFERED_MAX x OBJECT_BYTES_MAX.
pub const PUTS_BUFFERED_MAX: usize = 8;
/// Uploads one sender may have in progress at once on the signed-ahead path; more wait for
/// one of its own to finish. So one key cannot take every slot with slow bodies, while a
/// buyer uploading many objects at once only queues behind itself.
pub const PUTS_PER_SENDER_MAX: usize = 2;
/// Senders whose upload permits are remembered; past it, idle ones are dropped.
const PUT_SENDERS_TRACKED_MAX: usize = 10_000;
/// Of those, bodies of PUTs that did not declare `LCP-Content-SHA256`, so could not be
/// authenticated before their body arrived. Kept apart (and small), so forged or trickling
/// uploads of that kind never hold the slots verified uploads use.
pub const PUTS_UNVERIFIED_BUFFERED_MAX: usize = 2;
/// Audits a contract's listed auditors together may ask of it per [`AUDIT_FREE_INTERVAL_S`].
/// Auditors are never charged; past this they get `429 rate_limited`. Shared by all of a
/// contract's auditors, since the buyer writes that list: a thousand sock-puppet auditors
/// would otherwise read the contract for free.
pub const AUDITOR_AUDITS_PER_INTERVAL_MAX: u32 = 8;
/// Per-contract lock entries kept before unused ones are dropped.
const LOCKS_MAX: usize = 10_000;
/// Audits answered at once (each holds its object in memory while rehashing it).
const AUDITS_CONCURRENT_MAX: usize = 4;
/// One audit per contract per this many seconds is free; others are charged as reads of their
/// leaf. Auditors (the market) audit far less often, and nobody can download an object for free
/// through audits faster than one leaf a minute.
pub const AUDIT_FREE_INTERVAL_S: i64 = 60;
/// Contracts remembered for free audits; past it, entries older than the interval are dropped.
const FREE_AUDITS_TRACKED_MAX: usize = 100_000;
/// Recent errors kept for the dashboard.
const RECENT_ERRORS_MAX: usize = 20;

pub fn now_s() -> i64 {
    i64::try_from(lcp::now_ms() / 1000).unwrap_or(i64::MAX)
}

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

#[derive(Queryable, Insertable, Clone, Debug)]
#[diesel(table_name = contracts)]
struct ContractRow {
    id: String,
    buyer: String,
    issuer: String,
    block_bytes: i64,
    start_s: i64,
    end_s: i64,
    contract_price: i64,
    write_per_kib: i64,
    read_per_kib: i64,
    auditors: String,
    envelope: String,
    agent_signature: String,
    paid: i64,
    spent: i64,
    used_bytes: i64,
    reaped: i32,
    created_s: i64,
}

impl ContractRow {
    fn status(&self, now: i64) -> &'static str {
        if self.reaped != 0 || now >= self.end_s {
            "ended"
        } else if self.paid < self.contract_price {
            "pending_payment"
        } else {
            "active"
        }
    }

    fn credit(&self) -> i64 {
        self.paid - self.contract_price - self.spent
    }

    /// What the buyer owes on this contract (only active contracts run a tab).
    fn debt(&self) -> u64 {
        if self.paid < self.contract_price {
            0
        } else {
            (-self.credit()).max(0).unsigned_abs()
        }
    }

    fn auditors(&self) -> Vec<String> {
        serde_json::from_str(&self.auditors).unwrap_or_default()
    }

    /// Check that `charge` can be drawn now, with `tab_room` of the buyer's tab left; answers
    /// the new `spent`.
    fn draw(&self, charge: u64, tab_room: u64) -> Result<i64, Error> {
        let charge =
            i64::try_from(charge).map_err(|_| Error::PaymentRequired { amount_due: charge })?;
        if self.paid < self.contract_price {
            let due = (self.contract_price - self.paid).saturating_add(charge);
            return Err(Error::PaymentRequired {
                amount_due: due.unsigned_abs(),
            });
        }
        let available = self
            .credit()
            .saturating_add(i64::try_from(tab_room).unwrap_or(i64::MAX));
        if charge > available {
            return Err(Error::PaymentRequired {
                amount_due: (charge - available).unsigned_abs(),
            });
        }
        Ok(self.spent + charge)
    }
}

#[derive(Queryable, Insertable, Clone, Debug)]
#[diesel(table_name = objects)]
struct ObjectRow {
    contract_id: String,
    name: String,
    path: String,
    size: i64,
    sha256: String,
    merkle_root: String,
    leaf_count: i64,
}

impl From<&ObjectRow> for ObjectInfo {
    fn from(r: &ObjectRow) -> Self {
        ObjectInfo {
            name: r.name.clone(),
            size: r.size.unsigned_abs(),
            sha256: r.sha256.clone(),
            merkle_root: r.merkle_root.clone(),
        }
    }
}

/// Signed reads seen within the freshness window, by (buyer, counter): a read is charged, so a
/// captured one must not be served (and charged) again. The set lives in memory, so reads signed
/// before this process started are refused: they could be replays the set no longer knows.
struct SeenReads {
    started_ms: u64,
    seen: Mutex<HashMap<(String, u64), u64>>,
}

/// Signed reads remembered at once; past it, new reads wait for old ones to age out (503).
const SEEN_READS_MAX: usize = 200_000;

impl SeenReads {
    fn new() -> SeenReads {
        SeenReads {
            started_ms: lcp::now_ms(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn admit(&self, who: &EntityId, counter: u64, time_ms: u64) -> Result<(), Error> {
        if time_ms < self.started_ms {
            return Err(Error::Auth(protocol::AuthError::StaleTime));
        }
        let now = lcp::now_ms();
        // The map stays usable after a panic elsewhere: entries are independent.
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= SEEN_READS_MAX {
            // Older than the freshness window: verification refuses them before they get here.
            let horizon = now.saturating_sub(2 * protocol::request::FRESHNESS_MS_MAX);
            seen.retain(|_, t| *t >= horizon);
            if seen.len() >= SEEN_READS_MAX {
                return Err(Error::Overloaded);
            }
        }
        match seen.entry((who.as_str().to_owned(), counter)) {
            std::collections::hash_map::Entry::Occupied(_) => Err(Error::CounterReused { counter }),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(time_ms);
                Ok(())
            }
        }
    }
}

/// Recently read whole objects, by store key. A key names one immutable version of an object
/// (every PUT writes a new key), so an entry is never stale; it is only evicted, oldest
/// first, to stay within `bytes_max`. Audits never use it: they answer from the disk.
struct ReadCache {
    bytes_max: u64,
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    entries: HashMap<String, Bytes>,
    order: VecDeque<String>,
    bytes: u64,
}

/// Largest object the read cache keeps.
const READ_CACHE_OBJECT_BYTES_MAX: u64 = 4 << 20;

impl ReadCache {
    fn get(&self, key: &str) -> Option<Bytes> {
        if self.bytes_max == 0 {
            return None;
        }
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.entries.get(key).cloned()
    }

    fn insert(&self, key: &str, bytes: &Bytes) {
        let len = bytes.len() as u64;
        if len > READ_CACHE_OBJECT_BYTES_MAX || len > self.bytes_max {
            return;
        }
        // Entries are independent; a panic elsewhere leaves the map consistent enough.
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.entries.contains_key(key) {
            return;
        }
        while inner.bytes + len > self.bytes_max {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(b) = inner.entries.remove(&old) {
                inner.bytes -= b.len() as u64;
            }
        }
        inner.entries.insert(key.to_owned(), bytes.clone());
        inner.order.push_back(key.to_owned());
        inner.bytes += len;
    }
}

/// One async lock per contract: commands on a contract run one at a time.
#[derive(Default)]
struct ContractLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl ContractLocks {
    fn get(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        // A poisoned map only means another thread panicked mid-insert; the map is still usable.
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= LOCKS_MAX {
            // Requests for unknown ids add entries too; drop every lock nobody holds.
            map.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        map.entry(id.to_owned()).or_default().clone()
    }

    fn forget(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

pub struct Agent {
    pub key: Arc<KeyPair>,
    pub config: AgentConfig,
    pub db: Database,
    pub store: Store,
    endpoint: OnceLock<String>,
    /// The owner's token for the dashboard from other machines (see `owner`); unset: loopback only.
    owner_token: OnceLock<String>,
    locks: ContractLocks,
    seen_reads: SeenReads,
    read_cache: Arc<ReadCache>,
    /// When each contract last had a free audit (Unix seconds).
    free_audits: Mutex<HashMap<String, i64>>,
    /// Per contract: the interval's start (Unix seconds) and audits its auditors asked in it.
    auditor_audits: Mutex<HashMap<String, (i64, u32)>>,
    /// Each sender's upload permits on the signed-ahead path (see [`PUTS_PER_SENDER_MAX`]).
    puts_by_sender: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    admit_lock: tokio::sync::Mutex<()>,
    audit_slots: tokio::sync::Semaphore,
    /// Bounds the PUT bodies buffered at once (each up to OBJECT_BYTES_MAX): uploads
    /// authenticated before their body, and the others ([`PUTS_UNVERIFIED_BUFFERED_MAX`]).
    pub put_slots: Arc<tokio::sync::Semaphore>,
    pub unverified_put_slots: Arc<tokio::sync::Semaphore>,
    recent_errors: Mutex<VecDeque<String>>,
    /// How the market last rated this agent (read back after each heartbeat).
    standing: Mutex<Option<MarketStanding>>,
    /// Each accepted currency's code and decimals, by issuer id (from its descriptor).
    currencies: Mutex<HashMap<String, lcp::client::Currency>>,
}

/// Who sent a command and its idempotency key: the verified signer and counter, and a hash
/// identifying the request (see [`request_key`]); a repeated counter replays the stored answer
/// only when this hash matches too.
#[derive(Debug, Clone, Copy)]
pub struct Cmd<'a> {
    pub sender: &'a EntityId,
    pub counter: u64,
    pub body_sha256: &'a str,
}

pub use protocol::request_key;

/// A stored command answer (replayed on repetition).
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// The buyer's tab debt when it is past `tab_threshold`: a request to settle (sent as the
    /// `LCP-Amount-Due` header; not part of the stored answer).
    pub settle: Option<u64>,
}

impl Agent {
    pub fn new(key: Arc<KeyPair>, config: AgentConfig, db: Database, store: Store) -> Agent {
        let read_cache_bytes = config.read_cache_bytes;
        Agent {
            key,
            config,
            db,
            store,
            endpoint: OnceLock::new(),
            owner_token: OnceLock::new(),
            locks: ContractLocks::default(),
            admit_lock: tokio::sync::Mutex::new(()),
            audit_slots: tokio::sync::Semaphore::new(AUDITS_CONCURRENT_MAX),
            put_slots: Arc::new(tokio::sync::Semaphore::new(
                PUTS_BUFFERED_MAX - PUTS_UNVERIFIED_BUFFERED_MAX,
            )),
            unverified_put_slots: Arc::new(tokio::sync::Semaphore::new(
                PUTS_UNVERIFIED_BUFFERED_MAX,
            )),
            auditor_audits: Mutex::new(HashMap::new()),
            puts_by_sender: Mutex::new(HashMap::new()),
            recent_errors: Mutex::new(VecDeque::new()),
            standing: Mutex::new(None),
            currencies: Mutex::new(HashMap::new()),
            seen_reads: SeenReads::new(),
            free_audits: Mutex::new(HashMap::new()),
            read_cache: Arc::new(ReadCache {
                bytes_max: read_cache_bytes,
                inner: Mutex::new(CacheInner::default()),
            }),
        }
    }

    pub fn set_endpoint(&self, url: &str) {
        let _ = self.endpoint.set(url.trim_end_matches('/').to_owned());
    }

    pub fn set_owner_token(&self, token: String) {
        let _ = self.owner_token.set(token);
    }

    pub fn owner_token(&self) -> &str {
        self.owner_token.get().map(String::as_str).unwrap_or("")
    }

    pub fn endpoint(&self) -> &str {
        self.endpoint.get().map(String::as_str).unwrap_or("")
    }

    /// Record the market's rating of this agent.
    pub fn set_standing(&self, standing: MarketStanding) {
        *self.standing.lock().unwrap_or_else(|p| p.into_inner()) = Some(standing);
    }

    /// Remember an issuer's currency (code and decimals), to show amounts in it.
    pub fn set_currency(&self, issuer: &str, currency: lcp::client::Currency) {
        self.currencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(issuer.to_owned(), currency);
    }

    /// An issuer's currency, once its payment watcher has read it.
    pub fn currency_of(&self, issuer: &str) -> Option<lcp::client::Currency> {
        self.currencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(issuer)
            .cloned()
    }

    /// `amount` minor units of `issuer`'s currency for people: `7.90 LCU` once the currency is
    /// known, `790 (minor units)` before.
    pub fn show_amount(&self, issuer: &str, amount: impl Into<i128>) -> String {
        let amount = amount.into();
        match self.currency_of(issuer) {
            Some(c) => c.show(amount),
            None => format!("{amount} (minor units)"),
        }
    }

    /// The market's last rating of this agent, if a market rated it.
    pub fn standing(&self) -> Option<MarketStanding> {
        self.standing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn note_error(&self, message: String) {
        let mut q = self.recent_errors.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() == RECENT_ERRORS_MAX {
            q.pop_front();
        }
        q.push_back(format!("{} {message}", market::format_rfc3339(now_s())));
    }

    fn currencies(&self) -> Vec<OfferCurrency> {
        self.config
            .currencies
            .iter()
            .filter_map(|c| {
                Some(OfferCurrency {
                    issuer: EntityId::parse(&c.issuer).ok()?,
                    issuer_url: c.issuer_url.clone(),
                    storage_per_gib_day: c.storage_per_gib_day,
                    write_per_kib: c.write_per_kib,
                    read_per_kib: c.read_per_kib,
                    contract_min: c.contract_min,
                })
            })
            .collect()
    }

    /// The offer with `free_bytes` free; blocks are capped at the free space and at the room
    /// unpaid contracts have left (`pending_bytes` are reserved by them now).
    fn offer_doc(&self, free_bytes: u64, pending_bytes: u64, now: i64) -> Offer {
        let pending_room = self.pending_max().saturating_sub(pending_bytes);
        Offer {
            agent: self.key.entity().clone(),
            endpoint: self.endpoint().to_owned(),
            issued_at: market::format_rfc3339(now),
            expires_at: market::format_rfc3339(now + OFFER_TTL_S),
            free_bytes,
            block_bytes_max: self
                .config
                .block_bytes_max
                .min(free_bytes)
                .min(pending_room),
            duration_s_max: self.config.duration_s_max,
            currencies: self.currencies(),
        }
    }

    /// Most bytes unpaid contracts may reserve together.
    fn pending_max(&self) -> u64 {
        self.config.capacity_bytes / 100 * PENDING_SHARE_PCT_MAX
    }

    /// The current signed offer.
    pub async fn offer(&self) -> Result<Envelope, Error> {
        let now = now_s();
        let capacity = self.config.capacity_bytes;
        let store = self.store.clone();
        let (r, disk) = self
            .db
            .run(move |c| Ok::<_, Error>((reservations(c, now)?, store.available_bytes())))
            .await?;
        let doc = self.offer_doc(free_to_sell(capacity, r, disk), r.pending, now);
        Envelope::sign_json(&self.key, market::OFFER_TYPE, &doc)
            .map_err(|e| Error::InvalidJson(e.to_string()))
    }

    /// Check a buyer-signed contract against the offer and free space, countersign and record it.
    pub async fn create_contract(&self, cmd: Cmd<'_>, envelope: Envelope) -> Result<Answer, Error> {
        let Cmd {
            sender,
            counter,
            body_sha256,
        } = cmd;
        if let Some(a) = self.replay(sender, counter, body_sha256).await? {
            return Ok(a);
        }
        let (signer, contract): (EntityId, Contract) =
            envelope.open(market::CONTRACT_TYPE).map_err(|e| match e {
                protocol::EnvelopeError::InvalidPayload(m) => Error::InvalidJson(m),
                other => Error::BadContractSignature(other.to_string()),
            })?;
        if signer != contract.buyer {
            return Err(Error::BadContractSignature(
                "the envelope is not signed by the contract's buyer".into(),
            ));
        }
        if &contract.buyer != sender {
            return Err(Error::NotYourContract { auditors: false });
        }
        let _admit = self.admit_lock.lock().await;
        let now = now_s();
        let (prepaid_id, prepaid_issuer) = (contract.id.clone(), contract.issuer.to_string());
        let store = self.store.clone();
        let (r, disk, prepaid_amount) = self
            .db
            .run(move |c| {
                Ok::<_, Error>((
                    reservations(c, now)?,
                    store.available_bytes(),
                    prepaid_of(c, &prepaid_id, &prepaid_issuer)?,
                ))
            })
            .await?;
        let pending = r.pending;
        // A block that does not fit on the disk is refused even when the capacity (set by the
        // owner, perhaps larger than the disk) would allow it.
        let free = free_to_sell(self.config.capacity_bytes, r, disk);
        let mut offer = self.offer_doc(free, pending, now);
        // The published offer caps blocks at the free space; here the configured maximum
        // applies, so a block that fits the agent but not its free space says so.
        offer.block_bytes_max = self.config.block_bytes_max;
        market::check_contract(&contract, &offer, now, free)?;
        // A contract paid in advance is not pending: only unpaid ones count against the share.
        let paid_ahead = prepaid_amount >= contract.contract_price;
        if !paid_ahead && pending.saturating_add(contract.block_bytes) > self.pending_max() {
            return Err(Error::TooManyPending {
                retry_after_s: PENDING_TTL_S.unsigned_abs(),
            });
        }
        let (start_s, end_s) = market::contract_window(&contract)?;
        let agent_signature = envelope.countersign(&self.key);
        let envelope_json =
            serde_json::to_string(&envelope).map_err(|e| Error::InvalidJson(e.to_string()))?;
        let answer = serde_json::to_string(&serde_json::json!({
            "contract": envelope, "agent_signature": agent_signature,
            "status": if paid_ahead { "active" } else { "pending_payment" },
        }))
        .map_err(|e| Error::InvalidJson(e.to_string()))?;
        let row = ContractRow {
            id: contract.id.clone(),
            buyer: contract.buyer.to_string(),
            issuer: contract.issuer.to_string(),
            block_bytes: to_i64(contract.block_bytes)?,
            start_s,
            end_s,
            contract_price: to_i64(contract.contract_price)?,
            write_per_kib: to_i64(contract.write_per_kib)?,
            read_per_kib: to_i64(contract.read_per_kib)?,
            auditors: serde_json::to_string(&contract.auditors).unwrap_or_else(|_| "[]".into()),
            envelope: envelope_json,
            agent_signature,
            paid: 0,
            spent: 0,
            used_bytes: 0,
            reaped: 0,
            created_s: now,
        };
        let cmd = command_row(sender, counter, body_sha256, 201, &answer)?;
        let body = answer.clone();
        self.commit_command(cmd, move |conn| {
            let exists: i64 = contracts::table
                .filter(contracts::id.eq(&row.id))
                .count()
                .get_result(conn)?;
            if exists > 0 {
                return Err(Error::Refused(market::ContractRefusal::InvalidId));
            }
            // Claimed in the transaction that records the contract, so it is counted once.
            let claimed = prepaid_of(conn, &row.id, &row.issuer)?;
            diesel::delete(prepaid::table.find((&row.id, &row.issuer))).execute(conn)?;
            let row = ContractRow {
                paid: to_i64(claimed)?,
                ..row
            };
            diesel::insert_into(contracts::table)
                .values(&row)
                .execute(conn)?;
            Ok(())
        })
        .await?;
        Ok(Answer {
            status: 201,
            body,
            settle: None,
        })
    }

    /// Apply `work` and record the command's answer (for replays) in one durable transaction.
    async fn commit_command<F>(&self, cmd: CommandRow, work: F) -> Result<(), Error>
    where
        F: FnOnce(&mut AnyConnection) -> Result<(), Error> + Send + 'static,
    {
        self.commit_command_as(cmd, work, false).await
    }

    /// [`Agent::commit_command`], with relaxed durability when `relaxed` (for commands whose
    /// loss in a power cut costs nothing: the buyer asks again, e.g. retrieval tokens).
    async fn commit_command_as<F>(
        &self,
        cmd: CommandRow,
        work: F,
        relaxed: bool,
    ) -> Result<(), Error>
    where
        F: FnOnce(&mut AnyConnection) -> Result<(), Error> + Send + 'static,
    {
        self.db
            .run(move |conn| {
                let all = move |conn: &mut AnyConnection| -> Result<(), Error> {
                    work(conn)?;
                    diesel::insert_into(commands::table)
                        .values(&cmd)
                        .execute(conn)?;
                    Ok(())
                };
                if relaxed {
                    db::relaxed_write_transaction(conn, all)
                } else {
                    db::write_transaction(conn, all)
                }
            })
            .await
    }

    async fn replay(
        &self,
        sender: &EntityId,
        counter: u64,
        body_sha256: &str,
    ) -> Result<Option<Answer>, Error> {
        let (entity, hash) = (sender.to_string(), body_sha256.to_owned());
        let counter_i = to_i64(counter)?;
        let row: Option<(String, i32, String)> = self
            .db
            .run(move |conn| {
                Ok::<_, Error>(
                    commands::table
                        .find((counter_i, entity))
                        .select((commands::body_sha256, commands::status, commands::response))
                        .first(conn)
                        .optional()?,
                )
            })
            .await?;
        match row {
            None => Ok(None),
            Some((stored, status, body)) if stored == hash => Ok(Some(Answer {
                status: u16::try_from(status).unwrap_or(200),
                body,
                settle: None,
            })),
            Some(_) => Err(Error::CounterReused { counter }),
        }
    }

    async fn load(&self, id: &str) -> Result<(ContractRow, Vec<ObjectRow>), Error> {
        let id = id.to_owned();
        self.db
            .run(move |conn| {
                let row: ContractRow = contracts::table
                    .find(&id)
                    .first(conn)
                    .optional()?
                    .ok_or(Error::UnknownContract)?;
                let objs: Vec<ObjectRow> = objects::table
                    .filter(objects::contract_id.eq(&id))
                    .order(objects::name.asc())
                    .load(conn)?;
                Ok((row, objs))
            })
            .await
    }

    /// The contract's row alone (no objects): for checks that run on every request.
    async fn load_contract(&self, id: &str) -> Result<ContractRow, Error> {
        let id = id.to_owned();
        self.db
            .run(move |conn| {
                contracts::table
                    .find(&id)
                    .first::<ContractRow>(conn)
                    .optional()?
                    .ok_or(Error::UnknownContract)
            })
            .await
    }

    fn require_buyer(row: &ContractRow, who: &EntityId, auditors_too: bool) -> Result<(), Error> {
        let ok = row.buyer == who.as_str()
            || (auditors_too && row.auditors().iter().any(|a| a == who.as_str()));
        if ok {
            Ok(())
        } else {
            Err(Error::NotYourContract {
                auditors: auditors_too,
            })
        }
    }

    /// Debt on the buyer's other contracts with this agent, ended ones included (ending a
    /// contract does not forgive its debt): the tab is per buyer.
    async fn other_debt(&self, row: &ContractRow) -> Result<u64, Error> {
        if self.config.tab_limit == 0 {
            return Ok(0);
        }
        let (buyer, id) = (row.buyer.clone(), row.id.clone());
        let others: Vec<ContractRow> = self
            .db
            .run(move |conn| {
                Ok::<_, Error>(
                    contracts::table
                        .filter(contracts::buyer.eq(&buyer))
                        .filter(contracts::id.ne(&id))
                        .load(conn)?,
                )
            })
            .await?;
        Ok(others.iter().map(ContractRow::debt).sum())
    }

    /// Serialises charges of one buyer across contracts while tabs are on, so two contracts
    /// cannot both take the last of the tab. Taken after the contract's lock, never before.
    async fn tab_guard(&self, buyer: &str) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        if self.config.tab_limit == 0 {
            return None;
        }
        Some(self.locks.get(&format!("buyer:{buyer}")).lock_owned().await)
    }

    /// Check that `charge` can be drawn from `row` within the buyer's tab; answers the tab room
    /// to apply it with ([`charge_contract`]) and the settlement request to send, if the buyer's
    /// debt passes `tab_threshold` after it.
    async fn draw(&self, row: &ContractRow, charge: u64) -> Result<Drawn, Error> {
        let other = self.other_debt(row).await?;
        let tab_room = self.config.tab_limit.saturating_sub(other);
        let new_spent = row.draw(charge, tab_room)?;
        let after = ContractRow {
            spent: new_spent,
            ..row.clone()
        };
        let debt = other.saturating_add(after.debt());
        let settle =
            (self.config.tab_limit > 0 && debt > self.config.tab_threshold).then_some(debt);
        Ok(Drawn {
            charge,
            tab_room,
            settle,
        })
    }

    pub async fn contract(&self, id: &str, who: &EntityId) -> Result<ContractView, Error> {
        let (row, objs) = self.load(id).await?;
        Self::require_buyer(&row, who, true)?;
        Ok(view(&row, &objs, now_s()))
    }

    /// One of `sender`'s [`PUTS_PER_SENDER_MAX`] upload permits, held until the upload ends;
    /// waits at most `wait_ms_max` for one of its own uploads to finish, then
    /// `503 overloaded`.
    pub async fn upload_of(
        &self,
        sender: &EntityId,
        wait_ms_max: u64,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, Error> {
        let permits = {
            let mut map = self
                .puts_by_sender
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if map.len() >= PUT_SENDERS_TRACKED_MAX {
                map.retain(|_, s| s.available_permits() < PUTS_PER_SENDER_MAX);
            }
            map.entry(sender.as_str().to_owned())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(PUTS_PER_SENDER_MAX)))
                .clone()
        };
        tokio::time::timeout(
            std::time::Duration::from_millis(wait_ms_max),
            permits.acquire_owned(),
        )
        .await
        .map_err(|_| Error::Overloaded)?
        .map_err(|_| Error::Overloaded)
    }

    /// What a PUT must pass before its body is read, once its signature verified against the
    /// body hash it declared: a valid name, a contract whose buyer signed, inside its window,
    /// and a declared size that fits the object limit and the block. So a forged or hopeless
    /// upload is refused before it takes an upload slot. A repeated command passes (it replays).
    pub async fn precheck_put(
        &self,
        id: &str,
        name: &str,
        cmd: Cmd<'_>,
        declared_bytes: Option<u64>,
    ) -> Result<(), Error> {
        if !valid_name(name) {
            return Err(Error::InvalidName);
        }
        if self
            .replay(cmd.sender, cmd.counter, cmd.body_sha256)
            .await?
            .is_some()
        {
            return Ok(());
        }
        if declared_bytes.is_some_and(|n| n > OBJECT_BYTES_MAX) {
            return Err(Error::BodyTooLarge {
                limit: OBJECT_BYTES_MAX,
            });
        }
        let row = self.load_contract(id).await?;
        Self::require_buyer(&row, cmd.sender, false)?;
        let now = now_s();
        if row.reaped != 0 || now < row.start_s || now >= row.end_s {
            return Err(Error::ContractNotActive);
        }
        // An unpaid contract costs nothing to make: it must not hold an upload slot either.
        if row.paid < row.contract_price {
            return Err(Error::PaymentRequired {
                amount_due: (row.contract_price - row.paid).unsigned_abs(),
            });
        }
        if declared_bytes.is_some_and(|n| n > row.block_bytes.unsigned_abs()) {
            return Err(Error::BlockFull {
                block_bytes: row.block_bytes.unsigned_abs(),
            });
        }
        Ok(())
    }

    /// Store an object under a contract, charged `write_per_kib` per KiB.
    pub async fn put_object(
        &self,
        id: &str,
        name: &str,
        cmd: Cmd<'_>,
        bytes: Bytes,
    ) -> Result<Answer, Error> {
        let Cmd {
            sender,
            counter,
            body_sha256,
        } = cmd;
        if !valid_name(name) {
            return Err(Error::InvalidName);
        }
        if bytes.len() as u64 > OBJECT_BYTES_MAX {
            return Err(Error::BodyTooLarge {
                limit: OBJECT_BYTES_MAX,
            });
        }
        let lock = self.locks.get(id);
        let _guard = lock.lock().await;
        if let Some(a) = self.replay(sender, counter, body_sha256).await? {
            return Ok(a);
        }
        let (row, objs) = self.load(id).await?;
        Self::require_buyer(&row, sender, false)?;
        let now = now_s();
        if row.reaped != 0 || now < row.start_s || now >= row.end_s {
            return Err(Error::ContractNotActive);
        }
        let size = bytes.len() as u64;
        let old = objs.iter().find(|o| o.name == name).cloned();
        let new_used = row.used_bytes - old.as_ref().map(|o| o.size).unwrap_or(0) + to_i64(size)?;
        if new_used > row.block_bytes {
            return Err(Error::BlockFull {
                block_bytes: row.block_bytes.unsigned_abs(),
            });
        }
        let charge = market::per_kib_charge(row.write_per_kib.unsigned_abs(), size)
            .map_err(|_| Error::BlockFull { block_bytes: 0 })?;
        let _tab = self.tab_guard(&row.buyer).await;
        let drawn = self.draw(&row, charge).await?;
        let settle = drawn.settle;
        // Hash off the async workers: a 64 MiB object is tens of milliseconds of CPU.
        let hashed = bytes.clone();
        let (sha256, tree) = tokio::task::spawn_blocking(move || {
            (
                protocol::sha256_hex(&hashed),
                protocol::merkle::MerkleTree::from_bytes(&hashed),
            )
        })
        .await
        .map_err(|e| Error::Store(e.to_string()))?;
        let key = Store::new_key(id, name);
        self.store.put(&key, bytes).await?;
        let info = ObjectInfo {
            name: name.to_owned(),
            size,
            sha256,
            merkle_root: tree.root_hex(),
        };
        let answer = serde_json::to_string(&info).map_err(|e| Error::InvalidJson(e.to_string()))?;
        let obj = ObjectRow {
            contract_id: id.to_owned(),
            name: name.to_owned(),
            path: key.clone(),
            size: to_i64(size)?,
            sha256: info.sha256.clone(),
            merkle_root: info.merkle_root.clone(),
            leaf_count: to_i64(tree.leaf_count())?,
        };
        let cmd = command_row(sender, counter, body_sha256, 200, &answer)?;
        let contract_id = id.to_owned();
        let committed = self
            .commit_command(cmd, move |conn| {
                diesel::delete(objects::table.find((&obj.contract_id, &obj.name))).execute(conn)?;
                diesel::insert_into(objects::table)
                    .values(&obj)
                    .execute(conn)?;
                diesel::update(contracts::table.find(&contract_id))
                    .set(contracts::used_bytes.eq(new_used))
                    .execute(conn)?;
                charge_contract(conn, &contract_id, &drawn)
            })
            .await;
        if let Err(e) = committed {
            // The row still names the old bytes; the new ones are garbage.
            let _ = self.store.delete(&key).await;
            return Err(e);
        }
        if let Some(old) = old {
            if let Err(e) = self.store.delete(&old.path).await {
                tracing::warn!(error = %e, path = old.path, "old object version not deleted; the start-up sweep will");
            }
        }
        Ok(Answer {
            status: 200,
            body: answer,
            settle,
        })
    }

    pub async fn delete_object(&self, id: &str, name: &str, cmd: Cmd<'_>) -> Result<Answer, Error> {
        let Cmd {
            sender,
            counter,
            body_sha256,
        } = cmd;
        if !valid_name(name) {
            return Err(Error::InvalidName);
        }
        let lock = self.locks.get(id);
        let _guard = lock.lock().await;
        if let Some(a) = self.replay(sender, counter, body_sha256).await? {
            return Ok(a);
        }
        let (row, objs) = self.load(id).await?;
        Self::require_buyer(&row, sender, false)?;
        let obj = objs
            .into_iter()
            .find(|o| o.name == name)
            .ok_or(Error::UnknownObject)?;
        let answer =
            serde_json::to_string(&serde_json::json!({"deleted": name, "freed_bytes": obj.size}))
                .unwrap_or_default();
        let cmd = command_row(sender, counter, body_sha256, 200, &answer)?;
        let path = obj.path.clone();
        self.commit_command(cmd, move |conn| {
            diesel::delete(objects::table.find((&obj.contract_id, &obj.name))).execute(conn)?;
            diesel::update(contracts::table.find(&obj.contract_id))
                .set(contracts::used_bytes.eq(contracts::used_bytes - obj.size))
                .execute(conn)?;
            Ok(())
        })
        .await?;
        self.store.delete(&path).await?;
        Ok(Answer {
            status: 200,
            body: answer,
            settle: None,
        })
    }

    /// Where reads may take the fast path of [`Agent::local_read`]: objects on the local disk
    /// and no running tabs (a tab's room depends on the buyer's other contracts, which the
    /// general path checks under the buyer's lock).
    fn fast_read_root(&self) -> Option<std::path::PathBuf> {
        if self.config.tab_limit > 0 {
            return None;
        }
        self.store.local_root().map(std::path::Path::to_path_buf)
    }

    /// A read on the local disk in one blocking task and without the contract's lock: resolve,
    /// open the file and charge in one transaction, then read from the open file. An open file
    /// keeps its bytes when a concurrent PUT, DELETE or reap unlinks it, so the bytes served are
    /// always those of the object the read was charged for.
    async fn local_read(
        &self,
        root: std::path::PathBuf,
        of: ReadOf,
        range: Option<RangeSpec>,
    ) -> Result<Read, Error> {
        let now = now_s();
        let cache = self.read_cache.clone();
        self.db
            .run(move |conn| {
                // A retry happens only on PostgreSQL, when a PUT replaces the object between
                // the row being read and the file being opened; the next try sees the new row.
                for _ in 0..LOCAL_READ_TRIES_MAX {
                    // Relaxed durability: a power cut may forget the last few charges, in the
                    // buyer's favour; a kill -9 forgets none. Fsyncing every read's charge
                    // would bound reads by the disk's fsync rate.
                    let opened = db::relaxed_write_transaction(conn, |conn| {
                        resolve_and_charge(conn, &root, &cache, &of, range, now)
                    })?;
                    match opened {
                        Some((Source::Cached(whole), mut read)) => {
                            let r = &read.range;
                            // Both ends are within the object's size: `resolve` checked them.
                            read.bytes = whole.slice(r.start as usize..r.end as usize);
                            return Ok(read);
                        }
                        Some((Source::File(file, key), read)) => {
                            let whole = read.range.start == 0 && read.range.end == read.size;
                            let read = read_at(&file, read)?;
                            if whole {
                                cache.insert(&key, &read.bytes);
                            }
                            return Ok(read);
                        }
                        None => {}
                    }
                }
                Err(Error::Store("object kept changing during the read".into()))
            })
            .await
    }

    /// Charge a read of `range` (and use up one use of `token`, when reading through one) in one
    /// transaction, then read the bytes.
    async fn charged_read(
        &self,
        row: &ContractRow,
        obj: &ObjectRow,
        range: Option<RangeSpec>,
        token: Option<&str>,
    ) -> Result<Read, Error> {
        let size = obj.size.unsigned_abs();
        let range = match range {
            Some(r) => r.resolve(size)?,
            None => 0..size,
        };
        let charge =
            market::per_kib_charge(row.read_per_kib.unsigned_abs(), range.end - range.start)
                .unwrap_or(u64::MAX);
        let _tab = self.tab_guard(&row.buyer).await;
        let drawn = self.draw(row, charge).await?;
        let settle = drawn.settle;
        let id = row.id.clone();
        let token = token.map(str::to_owned);
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| -> Result<(), Error> {
                    if let Some(t) = &token {
                        use_token(conn, t)?;
                    }
                    // An error here rolls the token use back too: the read did not happen.
                    charge_contract(conn, &id, &drawn)
                })
            })
            .await?;
        let bytes = self.store.get_range(&obj.path, range.clone()).await?;
        Ok(Read {
            bytes,
            range,
            size,
            settle,
        })
    }

    /// A buyer's signed read of `name`, or of `range` of it. Reads carry a counter like
    /// commands (their answers are not stored): each is charged, so each is served once.
    pub async fn read_object(
        &self,
        id: &str,
        name: &str,
        cmd: Cmd<'_>,
        time_ms: u64,
        range: Option<RangeSpec>,
    ) -> Result<Read, Error> {
        if !valid_name(name) {
            return Err(Error::InvalidName);
        }
        let who = cmd.sender;
        self.seen_reads.admit(who, cmd.counter, time_ms)?;
        if let Some(root) = self.fast_read_root() {
            let of = ReadOf::Object {
                id: id.to_owned(),
                name: name.to_owned(),
                who: who.clone(),
            };
            return self.local_read(root, of, range).await;
        }
        let lock = self.locks.get(id);
        let _guard = lock.lock().await;
        let (row, objs) = self.load(id).await?;
        Self::require_buyer(&row, who, false)?;
        if row.reaped != 0 {
            return Err(Error::ContractNotActive);
        }
        let obj = objs
            .iter()
            .find(|o| o.name == name)
            .ok_or(Error::UnknownObject)?;
        self.charged_read(&row, obj, range, None).await
    }

    /// Retrieval tokens for `objects` (one each). `batch` answers `{"retrievals": [...]}`;
    /// otherwise the one retrieval. Tokens commit with relaxed durability: one lost in a power
    /// cut costs nothing but the buyer asking again.
    pub async fn create_retrievals(
        &self,
        id: &str,
        cmd: Cmd<'_>,
        objects: &[String],
        uses: u64,
        expires_in_s: u64,
        batch: bool,
    ) -> Result<Answer, Error> {
        let Cmd {
            sender,
            counter,
            body_sha256,
        } = cmd;
        if objects.is_empty()
            || objects.len() > RETRIEVALS_PER_REQUEST_MAX
            || !objects.iter().all(|o| valid_name(o))
        {
            return Err(Error::InvalidName);
        }
        if !(1..=RETRIEVAL_USES_MAX).contains(&uses)
            || !(1..=RETRIEVAL_TTL_S_MAX).contains(&expires_in_s)
        {
            return Err(Error::InvalidJson(format!(
                "uses must be 1..={RETRIEVAL_USES_MAX} and expires_in_s 1..={RETRIEVAL_TTL_S_MAX}"
            )));
        }
        let lock = self.locks.get(id);
        let _guard = lock.lock().await;
        if let Some(a) = self.replay(sender, counter, body_sha256).await? {
            return Ok(a);
        }
        let (row, objs) = self.load(id).await?;
        Self::require_buyer(&row, sender, false)?;
        if !objects.iter().all(|o| objs.iter().any(|x| &x.name == o)) {
            return Err(Error::UnknownObject);
        }
        let expires_s = now_s().saturating_add(to_i64(expires_in_s)?);
        let rng = ring::rand::SystemRandom::new();
        let mut made = Vec::with_capacity(objects.len());
        for object in objects {
            let mut raw = [0u8; 32];
            ring::rand::SecureRandom::fill(&rng, &mut raw)
                .map_err(|_| Error::Store("no randomness".into()))?;
            let token = protocol::b64_encode(&raw);
            made.push((
                object.clone(),
                Retrieval {
                    url: format!("{}/v1/r/{token}", self.endpoint()),
                    token,
                    expires_at: market::format_rfc3339(expires_s),
                },
            ));
        }
        let answer = if batch {
            let list: Vec<&Retrieval> = made.iter().map(|(_, r)| r).collect();
            serde_json::json!({ "retrievals": list }).to_string()
        } else {
            serde_json::to_string(&made[0].1).unwrap_or_default()
        };
        let cmd = command_row(sender, counter, body_sha256, 201, &answer)?;
        let (contract_id, uses_i) = (id.to_owned(), to_i64(uses)?);
        self.commit_command_as(
            cmd,
            move |conn| {
                for (object, r) in &made {
                    diesel::insert_into(retrievals::table)
                        .values((
                            retrievals::token.eq(&r.token),
                            retrievals::contract_id.eq(&contract_id),
                            retrievals::object.eq(object),
                            retrievals::uses_left.eq(uses_i),
                            retrievals::expires_s.eq(expires_s),
                        ))
                        .execute(conn)?;
                }
                Ok(())
            },
            true,
        )
        .await?;
        Ok(Answer {
            status: 201,
            body: answer,
            settle: None,
        })
    }

    /// Read through a retrieval token: one use, charged to the contract.
    pub async fn redeem(&self, token: &str, range: Option<RangeSpec>) -> Result<Read, Error> {
        if let Some(root) = self.fast_read_root() {
            return self
                .local_read(root, ReadOf::Token(token.to_owned()), range)
                .await;
        }
        let t = token.to_owned();
        let found: Option<(String, String, i64, i64)> = self
            .db
            .run(move |conn| {
                Ok::<_, Error>(
                    retrievals::table
                        .find(&t)
                        .select((
                            retrievals::contract_id,
                            retrievals::object,
                            retrievals::uses_left,
                            retrievals::expires_s,
                        ))
                        .first(conn)
                        .optional()?,
                )
            })
            .await?;
        let (id, object, _, _) = found
            .filter(|(_, _, uses, exp)| *uses > 0 && *exp > now_s())
            .ok_or(Error::UnknownToken)?;
        let lock = self.locks.get(&id);
        let _guard = lock.lock().await;
        let (row, objs) = self.load(&id).await?;
        if row.reaped != 0 {
            return Err(Error::UnknownToken);
        }
        let obj = objs
            .iter()
            .find(|o| o.name == object)
            .ok_or(Error::UnknownObject)?;
        self.charged_read(&row, obj, range, Some(token)).await
    }

    /// Whether this audit of contract `id` is its free one for the current interval.
    fn take_free_audit(&self, id: &str) -> bool {
        let now = now_s();
        // Entries are independent; a panic elsewhere leaves the map usable.
        let mut map = self.free_audits.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= FREE_AUDITS_TRACKED_MAX {
            map.retain(|_, t| now - *t < AUDIT_FREE_INTERVAL_S);
        }
        match map.get(id) {
            Some(t) if now - *t < AUDIT_FREE_INTERVAL_S => false,
            _ => {
                map.insert(id.to_owned(), now);
                true
            }
        }
    }

    /// Count one audit by a listed auditor; `429 rate_limited` past
    /// [`AUDITOR_AUDITS_PER_INTERVAL_MAX`] per contract per interval.
    fn admit_auditor_audit(&self, id: &str) -> Result<(), Error> {
        let now = now_s();
        // Entries are independent; a panic elsewhere leaves the map usable.
        let mut map = self
            .auditor_audits
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if map.len() >= FREE_AUDITS_TRACKED_MAX {
            map.retain(|_, (t, _)| now - *t < AUDIT_FREE_INTERVAL_S);
        }
        let entry = map.entry(id.to_owned()).or_insert((now, 0));
        if now - entry.0 >= AUDIT_FREE_INTERVAL_S {
            *entry = (now, 0);
        }
        if entry.1 >= AUDITOR_AUDITS_PER_INTERVAL_MAX {
            let retry_after_s = (entry.0 + AUDIT_FREE_INTERVAL_S - now)
                .max(1)
                .unsigned_abs();
            return Err(Error::RateLimited { retry_after_s });
        }
        entry.1 += 1;
        Ok(())
    }

    /// Answer an audit from the stored bytes: leaf `leaf` of `object` and its Merkle proof.
    ///
    /// A listed auditor (the market) is never charged; it is rate limited instead. The buyer's
    /// first audit of a contract in an interval is free; past it an audit is charged as a read
    /// of its leaf and must carry a counter (`auth` is `(counter, LCP-Time)`), served once like
    /// a read, so a captured audit cannot be replayed to drain the contract's credit.
    pub async fn audit(
        &self,
        id: &str,
        who: &EntityId,
        auth: Option<(u64, u64)>,
        object: &str,
        leaf: u64,
    ) -> Result<AuditAnswer, Error> {
        if let Some((counter, time_ms)) = auth {
            self.seen_reads.admit(who, counter, time_ms)?;
        }
        let _slot = self
            .audit_slots
            .acquire()
            .await
            .map_err(|e| Error::Store(e.to_string()))?;
        // Under the contract's lock, so a rewrite cannot remove the bytes mid-audit (which
        // would look like a failed audit of an honest agent).
        let lock = self.locks.get(id);
        let _guard = lock.lock().await;
        let (row, objs) = self.load(id).await?;
        Self::require_buyer(&row, who, true)?;
        let auditor = row.buyer != who.as_str();
        if auditor {
            self.admit_auditor_audit(id)?;
        }
        let obj = objs
            .iter()
            .find(|o| o.name == object)
            .ok_or(Error::UnknownObject)?;
        // Recomputed from the bytes on every audit: a precomputed answer would pass after the
        // data is gone.
        let bytes = self.store.get(&obj.path).await?;
        let answer = tokio::task::spawn_blocking(move || {
            let tree = protocol::merkle::MerkleTree::from_bytes(&bytes);
            let proof = tree.proof(leaf)?;
            let start = usize::try_from(leaf).ok()? * protocol::merkle::LEAF_BYTES;
            let end = (start + protocol::merkle::LEAF_BYTES).min(bytes.len());
            use base64::Engine;
            Some(AuditAnswer {
                leaf_data: base64::engine::general_purpose::STANDARD
                    .encode(&bytes[start.min(end)..end]),
                proof: proof.iter().map(hex::encode).collect(),
                leaf_count: tree.leaf_count(),
                root: tree.root_hex(),
            })
        })
        .await
        .map_err(|e| Error::Store(e.to_string()))?
        .ok_or(Error::InvalidJson(format!(
            "leaf must be below {}",
            obj.leaf_count
        )))?;
        // The leaf is data the buyer receives: past one free audit a minute, charged as a read
        // of it, or audits would be a free way to download an object leaf by leaf.
        if auditor || self.take_free_audit(id) {
            self.db
                .run(|conn| db::write_transaction(conn, |conn| bump_stat(conn, "audits_answered")))
                .await?;
            return Ok(answer);
        }
        let leaf_bytes = protocol::merkle::LEAF_BYTES as u64;
        let leaf_len = obj
            .size
            .unsigned_abs()
            .saturating_sub(leaf.saturating_mul(leaf_bytes))
            .min(leaf_bytes);
        let charge =
            market::per_kib_charge(row.read_per_kib.unsigned_abs(), leaf_len).unwrap_or(u64::MAX);
        // Charged, so it must be one that cannot be replayed.
        if auth.is_none() {
            return Err(Error::Auth(protocol::AuthError::MissingCounter));
        }
        let _tab = self.tab_guard(&row.buyer).await;
        let drawn = self.draw(&row, charge).await?;
        let id = row.id.clone();
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    charge_contract(conn, &id, &drawn)?;
                    bump_stat(conn, "audits_answered")
                })
            })
            .await?;
        Ok(answer)
    }

    /// Apply one page of deposits from `issuer`: credit contracts named by `transaction_id`,
    /// count income, and move the cursor, all in one transaction.
    pub async fn apply_deposits(
        &self,
        issuer: &str,
        page: lcp::ledger::DepositsPage,
    ) -> Result<u64, Error> {
        let issuer = issuer.to_owned();
        // Serialised with contract admission: on PostgreSQL, a deposit that finds no contract
        // (so is held as prepaid) and a contract committed meanwhile (which found nothing held)
        // would otherwise miss each other.
        let _admit = self.admit_lock.lock().await;
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| -> Result<u64, Error> {
                    let mut credited = 0;
                    let mut income: i64 = 0;
                    for d in &page.deposits {
                        let amount = to_i64(d.amount)?;
                        income = income.saturating_add(amount);
                        if let Some(t) = &d.transaction_id {
                            let n = diesel::update(
                                contracts::table
                                    .filter(contracts::id.eq(t))
                                    .filter(contracts::issuer.eq(&issuer)),
                            )
                            .set(contracts::paid.eq(contracts::paid + amount))
                            .execute(conn)?;
                            credited += n as u64;
                            if n == 0 && market::is_uuid_v4(t) {
                                // Paid before proposing: held for the contract with this id.
                                add_prepaid(conn, t, &issuer, amount)?;
                            }
                        }
                    }
                    let next = to_i64(page.next)?;
                    let updated = diesel::update(payment_cursors::table.find(&issuer))
                        .set((
                            payment_cursors::next.eq(next),
                            payment_cursors::income.eq(payment_cursors::income + income),
                        ))
                        .execute(conn)?;
                    if updated == 0 {
                        diesel::insert_into(payment_cursors::table)
                            .values((
                                payment_cursors::issuer.eq(&issuer),
                                payment_cursors::next.eq(next),
                                payment_cursors::income.eq(income),
                            ))
                            .execute(conn)?;
                    }
                    Ok(credited)
                })
            })
            .await
    }

    pub async fn cursor(&self, issuer: &str) -> Result<u64, Error> {
        let issuer = issuer.to_owned();
        let next: Option<i64> = self
            .db
            .run(move |conn| {
                Ok::<_, Error>(
                    payment_cursors::table
                        .find(&issuer)
                        .select(payment_cursors::next)
                        .first(conn)
                        .optional()?,
                )
            })
            .await?;
        Ok(next.unwrap_or(0).unsigned_abs())
    }

    /// Delete the objects of contracts past `end + grace` (and unpaid ones past their TTL) and
    /// release their space. Answers how many contracts were reaped.
    pub async fn reap(&self) -> Result<usize, Error> {
        let now = now_s();
        let grace = to_i64(self.config.grace_s)?;
        let due: Vec<ContractRow> = self
            .db
            .run(move |conn| {
                Ok::<_, Error>(
                    contracts::table
                        .filter(contracts::reaped.eq(0))
                        .load::<ContractRow>(conn)?,
                )
            })
            .await?
            .into_iter()
            .filter(|c| is_due(c, now, grace))
            .collect();
        let mut reaped = 0;
        for c in &due {
            let lock = self.locks.get(&c.id);
            let _guard = lock.lock().await;
            // Re-check under the lock: a payment may have landed since the snapshot.
            let (fresh, _) = self.load(&c.id).await?;
            if fresh.reaped != 0 || !is_due(&fresh, now, grace) {
                continue;
            }
            reaped += 1;
            let id = c.id.clone();
            let paths: Vec<String> = self
                .db
                .run(move |conn| {
                    Ok::<_, Error>(
                        objects::table
                            .filter(objects::contract_id.eq(&id))
                            .select(objects::path)
                            .load(conn)?,
                    )
                })
                .await?;
            for p in &paths {
                self.store.delete(p).await?;
            }
            let id = c.id.clone();
            self.db
                .run(move |conn| {
                    db::write_transaction(conn, |conn| -> Result<(), Error> {
                        diesel::delete(objects::table.filter(objects::contract_id.eq(&id)))
                            .execute(conn)?;
                        diesel::delete(retrievals::table.filter(retrievals::contract_id.eq(&id)))
                            .execute(conn)?;
                        diesel::update(contracts::table.find(&id))
                            .set((contracts::reaped.eq(1), contracts::used_bytes.eq(0)))
                            .execute(conn)?;
                        Ok(())
                    })
                })
                .await?;
            self.locks.forget(&c.id);
            tracing::info!(contract = %c.id, objects = paths.len(), "contract ended; objects deleted, space released");
        }
        Ok(reaped)
    }

    /// Remove stored bytes no object row names (leftovers of a crash mid-write).
    pub async fn sweep(&self) -> Result<usize, Error> {
        let keep: HashSet<String> = self
            .db
            .run(|conn| Ok::<_, Error>(objects::table.select(objects::path).load::<String>(conn)?))
            .await?
            .into_iter()
            .collect();
        self.store.sweep(&keep).await
    }

    pub async fn summary(&self) -> Result<Summary, Error> {
        let recent: Vec<String> = self
            .recent_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .cloned()
            .collect();
        let mut s = summarize(&self.db, &self.config, self.key.entity()).await?;
        s.recent_errors = recent;
        Ok(s)
    }
}

/// The summary the dashboard and `storage-agent status` show, straight from the database.
pub async fn summarize(
    db: &Database,
    config: &AgentConfig,
    entity: &EntityId,
) -> Result<Summary, Error> {
    let now = now_s();
    let (rows, objs, cursors, audits) = db
        .run(move |conn| {
            let rows: Vec<ContractRow> = contracts::table
                .order(contracts::created_s.desc())
                .load(conn)?;
            let objs: Vec<ObjectRow> = objects::table.load(conn)?;
            let cursors: Vec<(String, i64)> = payment_cursors::table
                .select((payment_cursors::issuer, payment_cursors::income))
                .load(conn)?;
            let audits: Option<i64> = stats::table
                .find("audits_answered")
                .select(stats::value)
                .first(conn)
                .optional()?;
            Ok::<_, Error>((rows, objs, cursors, audits))
        })
        .await?;
    let reserved = reserved_of(&rows, now);
    let mut by_contract: HashMap<&str, Vec<ObjectRow>> = HashMap::new();
    for o in &objs {
        by_contract
            .entry(o.contract_id.as_str())
            .or_default()
            .push(o.clone());
    }
    let count = |s: &str| rows.iter().filter(|r| r.status(now) == s).count() as u64;
    let earnings = config
        .currencies
        .iter()
        .map(|c| Earning {
            issuer: c.issuer.clone(),
            issuer_url: c.issuer_url.clone(),
            income: cursors
                .iter()
                .find(|(i, _)| i == &c.issuer)
                .map(|(_, v)| v.unsigned_abs())
                .unwrap_or(0),
        })
        .collect();
    Ok(Summary {
        entity: entity.to_string(),
        capacity_bytes: config.capacity_bytes,
        reserved_bytes: reserved,
        used_bytes: rows.iter().map(|r| r.used_bytes.unsigned_abs()).sum(),
        free_bytes: config.capacity_bytes.saturating_sub(reserved),
        contracts_pending: count("pending_payment"),
        contracts_active: count("active"),
        contracts_ended: count("ended"),
        objects: objs.len() as u64,
        earnings,
        audits_answered: audits.unwrap_or(0).unsigned_abs(),
        recent_errors: Vec::new(),
        contracts: rows
            .iter()
            .map(|r| {
                view(
                    r,
                    by_contract
                        .get(r.id.as_str())
                        .map(Vec::as_slice)
                        .unwrap_or(&[]),
                    now,
                )
            })
            .collect(),
    })
}

/// Use up one use of retrieval `token`, conditionally in SQL so concurrent holders cannot
/// overspend it; `unknown_token` when none is left.
fn use_token(conn: &mut AnyConnection, token: &str) -> Result<(), Error> {
    let used = diesel::update(
        retrievals::table
            .filter(retrievals::token.eq(token))
            .filter(retrievals::uses_left.gt(0)),
    )
    .set(retrievals::uses_left.eq(retrievals::uses_left - 1))
    .execute(conn)?;
    if used == 0 {
        return Err(Error::UnknownToken);
    }
    Ok(())
}

/// A charge checked by [`Agent::draw`], to apply with [`charge_contract`].
struct Drawn {
    charge: u64,
    tab_room: u64,
    settle: Option<u64>,
}

/// Add `drawn.charge` to the contract's `spent`, relative and conditional in SQL: reads on the
/// local disk do not take the contract's lock, so `spent` may have moved since the row was read,
/// and a PostgreSQL transaction does not see a concurrent one's uncommitted draw. Refused with
/// `payment_required` when the credit (plus the tab's room) no longer covers it.
fn charge_contract(conn: &mut AnyConnection, id: &str, drawn: &Drawn) -> Result<(), Error> {
    let charge = to_i64(drawn.charge)?;
    // credit + room >= charge, as credit >= charge - room: computed here, where it saturates,
    // rather than in SQL, where PostgreSQL would fail on a huge room.
    let need = charge.saturating_sub(i64::try_from(drawn.tab_room).unwrap_or(i64::MAX));
    let charged = diesel::update(
        contracts::table
            .filter(contracts::id.eq(id))
            .filter(contracts::paid.ge(contracts::contract_price))
            .filter((contracts::paid - contracts::contract_price - contracts::spent).ge(need)),
    )
    .set(contracts::spent.eq(contracts::spent + charge))
    .execute(conn)?;
    if charged == 0 {
        return Err(Error::PaymentRequired {
            amount_due: drawn.charge,
        });
    }
    Ok(())
}

/// What a read names.
enum ReadOf {
    Token(String),
    Object {
        id: String,
        name: String,
        who: EntityId,
    },
}

/// Tries of a local read whose object is replaced under it (PostgreSQL only).
const LOCAL_READ_TRIES_MAX: usize = 3;

/// In a write transaction: find what `of` names, check it may be read, open its file, use the
/// token and charge the contract. `None` when the file is gone because the object was just
/// replaced (nothing is charged then).
fn resolve_and_charge(
    conn: &mut AnyConnection,
    root: &std::path::Path,
    cache: &ReadCache,
    of: &ReadOf,
    range: Option<RangeSpec>,
    now: i64,
) -> Result<Option<(Source, Read)>, Error> {
    let (id, name) = match of {
        ReadOf::Token(token) => {
            let found: Option<(String, String, i64, i64)> = retrievals::table
                .find(token)
                .select((
                    retrievals::contract_id,
                    retrievals::object,
                    retrievals::uses_left,
                    retrievals::expires_s,
                ))
                .first(conn)
                .optional()?;
            let (id, name, _, _) = found
                .filter(|(_, _, uses, exp)| *uses > 0 && *exp > now)
                .ok_or(Error::UnknownToken)?;
            (id, name)
        }
        ReadOf::Object { id, name, .. } => (id.clone(), name.clone()),
    };
    let row: ContractRow = contracts::table
        .find(&id)
        .first(conn)
        .optional()?
        .ok_or(match of {
            ReadOf::Token(_) => Error::UnknownToken,
            ReadOf::Object { .. } => Error::UnknownContract,
        })?;
    match of {
        ReadOf::Token(_) if row.reaped != 0 => return Err(Error::UnknownToken),
        ReadOf::Object { who, .. } => {
            Agent::require_buyer(&row, who, false)?;
            if row.reaped != 0 {
                return Err(Error::ContractNotActive);
            }
        }
        ReadOf::Token(_) => {}
    }
    let obj: ObjectRow = objects::table
        .find((&id, &name))
        .first(conn)
        .optional()?
        .ok_or(Error::UnknownObject)?;
    let size = obj.size.unsigned_abs();
    let range = match range {
        Some(r) => r.resolve(size)?,
        None => 0..size,
    };
    let source = match cache.get(&obj.path) {
        Some(bytes) => Source::Cached(bytes),
        None => match std::fs::File::open(root.join(&obj.path)) {
            Ok(f) => Source::File(f, obj.path.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::Store(format!("open {}: {e}", obj.path))),
        },
    };
    let charge = market::per_kib_charge(row.read_per_kib.unsigned_abs(), range.end - range.start)
        .unwrap_or(u64::MAX);
    row.draw(charge, 0)?;
    if let ReadOf::Token(token) = of {
        use_token(conn, token)?;
    }
    // An error here rolls the token use back.
    charge_contract(
        conn,
        &id,
        &Drawn {
            charge,
            tab_room: 0,
            settle: None,
        },
    )?;
    let read = Read {
        bytes: Bytes::new(),
        range,
        size,
        settle: None,
    };
    Ok(Some((source, read)))
}

/// Where a local read's bytes come from: the whole object from the read cache, or an open file
/// (with its store key, to cache it).
enum Source {
    Cached(Bytes),
    File(std::fs::File, String),
}

/// Fill `read.bytes` with its range of `file`, in a recycled buffer.
fn read_at(file: &std::fs::File, mut read: Read) -> Result<Read, Error> {
    use std::io::{Read as _, Seek as _};
    let len = read.range.end - read.range.start;
    let mut buf = ReadBuf::take(usize::try_from(len).unwrap_or(usize::MAX));
    let mut reader = file;
    reader
        .seek(std::io::SeekFrom::Start(read.range.start))
        .map_err(|e| Error::Store(format!("seek: {e}")))?;
    // `read_to_end` reads into spare capacity without zeroing it first.
    let got = reader
        .take(len)
        .read_to_end(&mut buf.0)
        .map_err(|e| Error::Store(format!("read: {e}")))?;
    if got as u64 != len {
        return Err(Error::Store(format!(
            "object file is {got} bytes short of its recorded size"
        )));
    }
    read.bytes = Bytes::from_owner(buf);
    Ok(read)
}

/// A read buffer that goes back to [`READ_BUFS`] when the response that owns it is sent:
/// allocating, page-faulting and freeing a fresh megabyte per read costs more CPU than the
/// read itself.
struct ReadBuf(Vec<u8>);

/// Idle read buffers kept for reuse.
static READ_BUFS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
/// Idle buffers kept at most; beyond it they are freed.
const READ_BUFS_IDLE_MAX: usize = 64;
/// Buffers larger than this are freed rather than kept (bounds idle memory to 256 MiB).
const READ_BUF_KEPT_BYTES_MAX: usize = 4 << 20;

impl ReadBuf {
    fn take(len: usize) -> ReadBuf {
        let mut idle = READ_BUFS.lock().unwrap_or_else(|p| p.into_inner());
        let mut buf = match idle.iter().position(|b| b.capacity() >= len) {
            Some(i) => idle.swap_remove(i),
            None => Vec::new(),
        };
        drop(idle);
        buf.clear();
        buf.reserve_exact(len);
        ReadBuf(buf)
    }
}

impl AsRef<[u8]> for ReadBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for ReadBuf {
    fn drop(&mut self) {
        if self.0.capacity() > READ_BUF_KEPT_BYTES_MAX {
            return;
        }
        let mut idle = READ_BUFS.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < READ_BUFS_IDLE_MAX {
            idle.push(std::mem::take(&mut self.0));
        }
    }
}

fn view(row: &ContractRow, objs: &[ObjectRow], now: i64) -> ContractView {
    ContractView {
        id: row.id.clone(),
        status: row.status(now).to_owned(),
        used_bytes: row.used_bytes.unsigned_abs(),
        block_bytes: row.block_bytes.unsigned_abs(),
        credit: if row.paid < row.contract_price {
            0
        } else {
            row.credit()
        },
        paid: row.paid.unsigned_abs(),
        contract_price: row.contract_price.unsigned_abs(),
        start: market::format_rfc3339(row.start_s),
        end: market::format_rfc3339(row.end_s),
        objects: objs.iter().map(ObjectInfo::from).collect(),
        issuer: row.issuer.clone(),
    }
}

/// Whether a contract's data is due for deletion: past end + grace, or unpaid past its TTL.
fn is_due(c: &ContractRow, now: i64, grace: i64) -> bool {
    now >= c.end_s.saturating_add(grace)
        || (c.paid < c.contract_price && now >= c.created_s + PENDING_TTL_S)
}

/// Blocks held by contracts that still hold (or may still receive) data.
fn reserved_of(rows: &[ContractRow], now: i64) -> u64 {
    rows.iter()
        .filter(|r| {
            r.reaped == 0 && !(r.paid < r.contract_price && now >= r.created_s + PENDING_TTL_S)
        })
        .map(|r| r.block_bytes.unsigned_abs())
        .sum()
}

/// What was paid ahead for the contract `id` in the currency of `issuer`.
fn prepaid_of(conn: &mut AnyConnection, id: &str, issuer: &str) -> Result<u64, Error> {
    let amount: Option<i64> = prepaid::table
        .find((id, issuer))
        .select(prepaid::amount)
        .first(conn)
        .optional()?;
    Ok(amount.unwrap_or(0).unsigned_abs())
}

fn add_prepaid(conn: &mut AnyConnection, id: &str, issuer: &str, amount: i64) -> Result<(), Error> {
    let n = diesel::update(prepaid::table.find((id, issuer)))
        .set(prepaid::amount.eq(prepaid::amount + amount))
        .execute(conn)?;
    if n == 0 {
        diesel::insert_into(prepaid::table)
            .values((
                prepaid::transaction_id.eq(id),
                prepaid::issuer.eq(issuer),
                prepaid::amount.eq(amount),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// What live contracts hold of the agent's space.
#[derive(Debug, Clone, Copy)]
struct Reservations {
    /// Blocks of live contracts.
    reserved: u64,
    /// Of those, blocks of contracts still unpaid.
    pending: u64,
    /// Bytes written into live contracts (already on the disk).
    used: u64,
}

fn reservations(conn: &mut AnyConnection, now: i64) -> Result<Reservations, Error> {
    let rows: Vec<ContractRow> = contracts::table
        .filter(contracts::reaped.eq(0))
        .load(conn)?;
    let pending: Vec<ContractRow> = rows
        .iter()
        .filter(|r| r.paid < r.contract_price)
        .cloned()
        .collect();
    Ok(Reservations {
        reserved: reserved_of(&rows, now),
        pending: reserved_of(&pending, now),
        used: rows.iter().map(|r| r.used_bytes.unsigned_abs()).sum(),
    })
}

/// Bytes left on the disk for objects: the agent keeps this much free for its database, logs
/// and the filesystem's own needs.
pub const DISK_HEADROOM_BYTES: u64 = 16 << 20;

/// Free space to sell: the configured capacity less what live contracts reserve, and never more
/// than the disk can still take once the blocks already sold but not yet written are written
/// (`disk_available` is `None` when objects are not on a local disk).
fn free_to_sell(capacity: u64, r: Reservations, disk_available: Option<u64>) -> u64 {
    let by_capacity = capacity.saturating_sub(r.reserved);
    match disk_available {
        Some(disk) => {
            let promised_unwritten = r.reserved.saturating_sub(r.used);
            let by_disk = disk
                .saturating_sub(DISK_HEADROOM_BYTES)
                .saturating_sub(promised_unwritten);
            by_capacity.min(by_disk)
        }
        None => by_capacity,
    }
}

fn bump_stat(conn: &mut AnyConnection, name: &str) -> Result<(), Error> {
    let n = diesel::update(stats::table.find(name))
        .set(stats::value.eq(stats::value + 1))
        .execute(conn)?;
    if n == 0 {
        diesel::insert_into(stats::table)
            .values((stats::name.eq(name), stats::value.eq(1i64)))
            .execute(conn)?;
    }
    Ok(())
}

#[derive(Insertable)]
#[diesel(table_name = commands)]
struct CommandRow {
    counter: i64,
    entity: String,
    body_sha256: String,
    status: i32,
    response: String,
}

fn command_row(
    sender: &EntityId,
    counter: u64,
    body_sha256: &str,
    status: i32,
    response: &str,
) -> Result<CommandRow, Error> {
    Ok(CommandRow {
        counter: to_i64(counter)?,
        entity: sender.to_string(),
        body_sha256: body_sha256.to_owned(),
        status,
        response: response.to_owned(),
    })
}

fn to_i64(v: u64) -> Result<i64, Error> {
    i64::try_from(v).map_err(|_| Error::InvalidJson(format!("{v} is too large")))
}

/// Bytes served by a charged read.
pub struct Read {
    pub bytes: Bytes,
    pub range: Range<u64>,
    /// The whole object's size.
    pub size: u64,
    /// See [`Answer::settle`].
    pub settle: Option<u64>,
}

/// A single HTTP byte range as sent (`bytes=a-b`, `bytes=a-`, `bytes=-n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    From(u64, Option<u64>),
    Suffix(u64),
}

impl RangeSpec {
    pub fn parse(header: &str) -> Result<RangeSpec, Error> {
        let bad = || {
            Error::InvalidRange(format!(
                "unsupported Range {header:?}; use one bytes=a-b range"
            ))
        };
        let spec = header.trim().strip_prefix("bytes=").ok_or_else(bad)?;
        if spec.contains(',') {
            return Err(bad());
        }
        let (a, b) = spec.split_once('-').ok_or_else(bad)?;
        match (a.trim(), b.trim()) {
            ("", n) => Ok(RangeSpec::Suffix(n.parse().map_err(|_| bad())?)),
            (a, "") => Ok(RangeSpec::From(a.parse().map_err(|_| bad())?, None)),
            (a, b) => {
                let (a, b): (u64, u64) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if b < a {
                    return Err(bad());
                }
                Ok(RangeSpec::From(a, Some(b)))
            }
        }
    }

    /// The half-open byte range within an object of `size` bytes.
    pub fn resolve(self, size: u64) -> Result<Range<u64>, Error> {
        let r = match self {
            RangeSpec::From(a, _) if a >= size => return Err(Error::RangeNotSatisfiable { size }),
            RangeSpec::From(a, b) => a..b.map(|b| b.saturating_add(1)).unwrap_or(size).min(size),
            RangeSpec::Suffix(0) => return Err(Error::RangeNotSatisfiable { size }),
            RangeSpec::Suffix(n) => size.saturating_sub(n)..size,
        };
        Ok(r)
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

    #[test]
    fn ranges_parse_and_resolve() {
        assert_eq!(
            RangeSpec::parse("bytes=0-9")
                .and_then(|r| r.resolve(100))
                .ok(),
            Some(0..10)
        );
        assert_eq!(
            RangeSpec::parse("bytes=90-")
                .and_then(|r| r.resolve(100))
                .ok(),
            Some(90..100)
        );
        assert_eq!(
            RangeSpec::parse("bytes=-5")
                .and_then(|r| r.resolve(100))
                .ok(),
            Some(95..100)
        );
        assert_eq!(
            RangeSpec::parse("bytes=50-500")
                .and_then(|r| r.resolve(100))
                .ok(),
            Some(50..100)
        );
        assert!(matches!(
            RangeSpec::parse("bytes=100-").and_then(|r| r.resolve(100)),
            Err(Error::RangeNotSatisfiable { .. })
        ));
        assert!(RangeSpec::parse("bytes=5-1").is_err());
        assert_eq!(
            RangeSpec::parse("bytes=5-18446744073709551615")
                .and_then(|r| r.resolve(100))
                .ok(),
            Some(5..100)
        );
        assert!(RangeSpec::parse("bytes=0-1,5-6").is_err());
        assert!(RangeSpec::parse("items=0-1").is_err());
    }
}
