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

use crate::config::{
    AgentConfig, OBJECT_BYTES_MAX, OFFER_TTL_S, PENDING_SHARE_PCT_MAX, PENDING_TTL_S,
};
use crate::error::Error;
use crate::schema::{commands, contracts, objects, payment_cursors, prepaid, retrievals, stats};
use crate::store::Store;

mod audit;
mod reads;
mod upkeep;
mod writes;

pub use protocol::agent::{
    valid_name, AuditAnswer, ContractView, Earning, MarketStanding, ObjectInfo, Retrieval, Summary,
    NAME_CHARS_MAX,
};
pub use protocol::range::RangeSpec;
pub use upkeep::summarize;

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

pub use node::now_s;

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
            started_ms: node::now_ms(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn admit(&self, who: &EntityId, counter: u64, time_ms: u64) -> Result<(), Error> {
        if time_ms < self.started_ms {
            return Err(Error::Auth(protocol::AuthError::StaleTime));
        }
        let now = node::now_ms();
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
    currencies: Mutex<HashMap<String, protocol::ledger::Currency>>,
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
    pub fn set_currency(&self, issuer: &str, currency: protocol::ledger::Currency) {
        self.currencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(issuer.to_owned(), currency);
    }

    /// An issuer's currency, once its payment watcher has read it.
    pub fn currency_of(&self, issuer: &str) -> Option<protocol::ledger::Currency> {
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
