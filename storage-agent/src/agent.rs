//! The agent's domain: offers, contracts, charging, objects, retrievals, audits, payments and
//! expiry. HTTP handlers call these; nothing here knows HTTP.
//!
//! Invariants:
//! - `contracts.used_bytes` is the sum of the sizes of that contract's `objects` rows: both are
//!   changed in the same transaction, and bytes are stored (durably) before the row names them.
//!   Checked in each such transaction ([`debug_assert_used_bytes`]; debug builds).
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
use crate::schema::{contracts, objects, payment_cursors, prepaid, retrievals, stats};
use crate::store::Store;
use node::commands::{CommandRow, StoredAnswer};

mod admission;
mod audit;
mod guards;
pub mod history;
pub mod paywords;
mod reads;
pub mod records;
mod rows;
mod tab;
mod upkeep;
pub mod usage;
mod writes;

use admission::{add_prepaid, is_due, reserved_of};
use guards::{CacheInner, ContractLocks, ReadCache, SeenReads};
use rows::{ContractRow, ObjectRow};

pub use admission::DISK_HEADROOM_BYTES;
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

/// How the HTTP handlers (`server`, `dashboard`) hold the agent: here, so neither imports the
/// other for it.
pub type State = actix_web::web::Data<Arc<Agent>>;

pub struct Agent {
    pub key: Arc<KeyPair>,
    /// Checks requests' signatures in batches (issue 21): every signed read and command.
    pub verifier: node::verifier::Verifier,
    pub config: AgentConfig,
    pub db: Database,
    /// Records (DESIGN 11): the agent's chain, buyers' blocks, proofs (`agent::records`).
    pub records: Arc<node::records::RecordBook>,
    /// Credit lines with neighbours (DESIGN 12, `node::credit`).
    pub credit: Arc<node::credit::CreditBook>,
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
    /// The market this agent heartbeats to (`serve --market`), asked for buyers' records.
    market_url: OnceLock<String>,
    /// Buyers found free riders or not, and when (`records::is_free_rider`).
    free_riders: clients::free_riders::FreeRiders,
    /// The client for asking the market, made when first needed.
    http: OnceLock<reqwest::Client>,
    /// Each accepted currency's code and decimals, by issuer id (from its descriptor).
    currencies: Mutex<HashMap<String, protocol::ledger::Currency>>,
    /// Requests answered `402 payment_required` (for `/metrics`: a buyer paying by words
    /// should cause none).
    pub payments_asked: std::sync::atomic::AtomicU64,
    /// Requests whose paywords added credit.
    pub payword_payments: std::sync::atomic::AtomicU64,
    /// Probes answered since the history's last sample: descriptor requests (how the
    /// market probes) and heartbeats the market took (issue 22).
    pub probes: std::sync::atomic::AtomicU64,
    /// When the history was last sampled (Unix s).
    last_sample_s: std::sync::atomic::AtomicI64,
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
        let free_riders = clients::free_riders::FreeRiders::new(config.free_rider_threshold);
        Agent {
            verifier: node::verifier::Verifier::start("agent-verifier"),
            records: records::book(db.clone(), key.clone()),
            credit: node::credit::CreditBook::with_hook(
                db.clone(),
                key.clone(),
                config.credit.clone(),
                Some(upkeep::credit_payment_hook(key.clone(), config.clone())),
            ),
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
            market_url: OnceLock::new(),
            free_riders,
            http: OnceLock::new(),
            currencies: Mutex::new(HashMap::new()),
            payments_asked: std::sync::atomic::AtomicU64::new(0),
            payword_payments: std::sync::atomic::AtomicU64::new(0),
            probes: std::sync::atomic::AtomicU64::new(0),
            last_sample_s: std::sync::atomic::AtomicI64::new(0),
            seen_reads: SeenReads::new(),
            free_audits: Mutex::new(HashMap::new()),
            read_cache: Arc::new(ReadCache {
                bytes_max: read_cache_bytes,
                inner: Mutex::new(CacheInner::default()),
            }),
        }
    }

    /// The HTTP client for the agent's own requests (to the market).
    pub fn http_client(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            node::client::http_client(&node::client::ClientOptions::default()).unwrap_or_default()
        })
    }

    pub fn set_market(&self, url: &str) {
        let _ = self.market_url.set(url.trim_end_matches('/').to_owned());
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

    /// Count what a request was refused with (see [`Agent::payments_asked`]).
    pub fn note_refusal(&self, e: &Error) {
        if matches!(e, Error::PaymentRequired { .. }) {
            self.payments_asked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub fn note_error(&self, message: String) {
        let mut q = self.recent_errors.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() == RECENT_ERRORS_MAX {
            q.pop_front();
        }
        q.push_back(format!("{} {message}", market::format_rfc3339(now_s())));
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
                    node::commands::record(conn, std::slice::from_ref(&cmd))?;
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
        // A counter the log cannot hold is refused here, before any other check.
        let stored = node::commands::replay(&self.db, sender, counter, body_sha256).await?;
        Ok(stored.map(|StoredAnswer { status, body }| Answer {
            status,
            body,
            settle: None,
        }))
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
        let mut tab_room = self.config.tab_limit.saturating_sub(other);
        // A free rider gets no tab: what the credit does not cover is paid ahead.
        let free_rider = tab_room > 0 && self.is_free_rider(&row.buyer).await;
        if free_rider {
            tab_room = 0;
        }
        let new_spent = row.draw(charge, tab_room).map_err(|e| match e {
            Error::PaymentRequired { amount_due } if free_rider => Error::FreeRider { amount_due },
            other => other,
        })?;
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
            tab: self.tab_of(row),
        })
    }

    pub async fn contract(&self, id: &str, who: &EntityId) -> Result<ContractView, Error> {
        let (row, objs) = self.load(id).await?;
        Self::require_buyer(&row, who, true)?;
        let contract = id.to_owned();
        let used = self
            .db
            .run(move |conn| usage::of(conn, &contract).map_err(Error::from))
            .await?;
        Ok(ContractView {
            bytes_written: used.bytes_written,
            bytes_read: used.bytes_read,
            audits_answered: used.audits_answered,
            earned: used.earned,
            ..view(&row, &objs, now_s())
        })
    }
}

/// Use up one use of retrieval `token`, conditionally in SQL so concurrent holders cannot
/// overspend it; `unknown_token` when none is left. The token's bytes served (a `tokens` record, DESIGN 11, claims them) grow by `bytes`.
fn use_token(conn: &mut AnyConnection, token: &str, bytes: u64) -> Result<(), Error> {
    let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
    let used = diesel::update(
        retrievals::table
            .filter(retrievals::token.eq(token))
            .filter(retrievals::uses_left.gt(0)),
    )
    .set((
        retrievals::uses_left.eq(retrievals::uses_left - 1),
        retrievals::bytes_served.eq(retrievals::bytes_served + bytes),
    ))
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
    /// The buyer's tab line to bring to its new debt, when tabs are on.
    tab: Option<tab::TabRef>,
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
    let charged = db::cached(
        diesel::update(
            contracts::table
                .filter(contracts::id.eq(id))
                .filter(contracts::paid.ge(contracts::contract_price))
                .filter((contracts::paid - contracts::contract_price - contracts::spent).ge(need)),
        )
        .set(contracts::spent.eq(contracts::spent + charge)),
    )
    .execute(conn)?;
    if charged == 0 {
        return Err(Error::PaymentRequired {
            amount_due: drawn.charge,
        });
    }
    if let Some(tab) = &drawn.tab {
        tab::mirror(conn, tab, false)?;
    }
    Ok(())
}

/// Invariant: a contract's `used_bytes` equals the sum of its objects' sizes. Run inside each
/// transaction that changes a contract's objects (put, delete, reap), before it commits; the
/// contract's lock keeps other changes out. It reads every object row of the contract, so it
/// runs in debug builds only (the O(1) checks on already loaded rows are `assert!`s at the
/// call sites).
fn debug_assert_used_bytes(conn: &mut AnyConnection, id: &str) -> Result<(), Error> {
    if cfg!(debug_assertions) {
        let used: i64 = contracts::table
            .find(id)
            .select(contracts::used_bytes)
            .first(conn)?;
        let sizes: Vec<i64> = objects::table
            .filter(objects::contract_id.eq(id))
            .select(objects::size)
            .load(conn)?;
        let sum: i64 = sizes.iter().sum();
        debug_assert_eq!(
            used, sum,
            "contract {id}: used_bytes is not the sum of its objects' sizes"
        );
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
        bytes_written: 0,
        bytes_read: 0,
        audits_answered: 0,
        earned: Default::default(),
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

/// The command log's row for an answered command ([`node::commands`]).
fn command_row(
    sender: &EntityId,
    counter: u64,
    body_sha256: &str,
    status: u16,
    response: &str,
) -> Result<CommandRow, Error> {
    let answer = StoredAnswer {
        status,
        body: response.to_owned(),
    };
    CommandRow::new(sender, counter, body_sha256, &answer)
        .map_err(|e| Error::InvalidJson(format!("{} is too large", e.0)))
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
