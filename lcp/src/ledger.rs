//! The issuer's ledger: one writer thread applies transfers in batches (group commit); readers
//! query committed state through the pool.
//!
//! Invariants (each asserted at run time or tested):
//! - Only the writer thread changes `accounts`, `transfers` and `commands`; so its in-memory
//!   balance cache is exact for every account it holds, and `seq` is dense and increasing.
//! - The sum of all balances, the issuer's included, is zero after every committed batch: every
//!   transfer moves `amount + fee` out of one account and `amount` and `fee` into two others.
//!   The writer checks each batch before it commits (a batch that would change the sum is
//!   rolled back).
//! - No account but the issuer's goes below zero; the issuer's goes no lower than `-supply_cap`.
//! - A transfer is answered only after the batch holding it committed (durable), so an answered
//!   transfer survives kill -9.
//! - A command (sender, counter) executes at most once; its stored answer is replayed.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use db::{AnyConnection, Database};
use diesel::prelude::*;
pub use protocol::ledger::{Deposit, DepositsPage, TransferReceipt};
use protocol::{fee_for, Amount, EntityId};
use tokio::sync::{oneshot, watch, Semaphore};

use crate::config::IssuerConfig;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::schema::{accounts, transfers};
use store::NewTransfer;

mod batch;
pub mod broker;
mod store;
use node::commands::CommandRow;
pub use node::commands::StoredAnswer;

/// Deposits returned by one getDeposits call at most; `next` lets the caller page on.
pub const DEPOSITS_PAGE_MAX: i64 = 1_000;
/// Cached balances the writer keeps before it starts over (bounds its memory).
const BALANCE_CACHE_MAX: usize = 1_000_000;

/// A validated transfer command, ready for the writer.
#[derive(Debug, Clone)]
pub struct TransferOrder {
    pub sender: EntityId,
    pub counter: u64,
    /// `protocol::request_key` of the request: what the stored answer is matched against.
    pub body_sha256: String,
    pub recipient: EntityId,
    pub amount: u64,
    pub transaction_id: Option<String>,
    /// The recipient's customer (DESIGN 14), checked by `protocol::name::is_userid`.
    pub userid: Option<String>,
    /// The payer's name when a bank pays for its customer, checked by `protocol::name::Name`.
    pub from_name: Option<String>,
}

/// One checked transfer of a batch (the sender is the batch's).
#[derive(Debug, Clone)]
pub struct BatchTransfer {
    pub recipient: EntityId,
    pub amount: u64,
    pub transaction_id: Option<String>,
    pub userid: Option<String>,
    pub from_name: Option<String>,
}

/// A validated batch command: its items checked one by one (a bad item is answered with its
/// error, the others go on).
#[derive(Debug)]
pub struct BatchOrder {
    pub sender: EntityId,
    pub counter: u64,
    pub body_sha256: String,
    pub items: Vec<Result<BatchTransfer, Error>>,
}

/// What the writer executes: a signed command (a transfer, a batch of transfers, a chain
/// bought, redemptions) or the issuer's own upkeep (a chain's escrow returned).
#[derive(Debug)]
pub enum Order {
    Transfer(TransferOrder),
    Batch(BatchOrder),
    BuyChain(broker::ChainOrder),
    Redeem(broker::RedeemOrder),
    /// Internal: return an expired chain's escrow to its payer (no command, no counter).
    CloseChain(String),
}

impl Order {
    /// (sender, counter, request key) of a signed command; `None` for upkeep.
    fn command(&self) -> Option<(&EntityId, u64, &str)> {
        match self {
            Order::Transfer(o) => Some((&o.sender, o.counter, &o.body_sha256)),
            Order::Batch(o) => Some((&o.sender, o.counter, &o.body_sha256)),
            Order::BuyChain(o) => Some((&o.payer, o.counter, &o.body_sha256)),
            Order::Redeem(o) => Some((&o.vendor, o.counter, &o.body_sha256)),
            Order::CloseChain(_) => None,
        }
    }
}

struct Job {
    order: Order,
    reply: oneshot::Sender<Result<StoredAnswer, Error>>,
}

/// Handle to the ledger; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    jobs: SyncSender<Job>,
    db: Database,
    committed_seq: watch::Receiver<u64>,
    waiters: Arc<Semaphore>,
    config: Arc<IssuerConfig>,
    metrics: Arc<Metrics>,
}

impl Ledger {
    /// Start the writer thread on its own connection.
    pub fn start(
        db: Database,
        issuer: EntityId,
        config: IssuerConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Ledger, Error> {
        let conn = db.connect()?;
        let (jobs, queue) = mpsc::sync_channel(config.queue_max);
        let mut writer = Writer {
            conn,
            state: WriterState {
                issuer,
                config: config.clone(),
                cache: HashMap::new(),
                next_seq: 0,
                next_fraud_seq: 1,
            },
            committed: None,
            metrics: metrics.clone(),
        };
        writer.reload()?;
        let last = writer.state.next_seq - 1;
        let (tx, committed_seq) = watch::channel(u64::try_from(last).unwrap_or(0));
        writer.committed = Some(tx);
        std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(|e| Error::Storage(format!("cannot start the ledger writer: {e}")))?;
        Ok(Ledger {
            jobs,
            db,
            committed_seq,
            waiters: Arc::new(Semaphore::new(config.waiters_max)),
            config: Arc::new(config),
            metrics,
        })
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    pub fn config(&self) -> &IssuerConfig {
        &self.config
    }

    /// Queue a transfer and wait for its durable answer (or the stored one, for a repetition).
    pub async fn transfer(&self, order: TransferOrder) -> Result<StoredAnswer, Error> {
        self.execute(Order::Transfer(order)).await
    }

    /// Queue any order and wait for its durable answer (or the stored one, for a repetition).
    pub async fn execute(&self, order: Order) -> Result<StoredAnswer, Error> {
        let (reply, answer) = oneshot::channel();
        match self.jobs.try_send(Job { order, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.metrics.overloaded.fetch_add(1, Ordering::Relaxed);
                return Err(Error::Overloaded);
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(Error::Storage("ledger writer stopped".into()))
            }
        }
        self.metrics.queued.fetch_add(1, Ordering::Relaxed);
        answer
            .await
            .map_err(|_| Error::Storage("ledger writer dropped a transfer".into()))?
    }

    pub async fn balance(&self, entity: &EntityId) -> Result<i64, Error> {
        let entity = entity.to_string();
        self.db
            .run(move |conn| Ok(read_balance(conn, &entity)?))
            .await
    }

    /// getDeposits: deposits to `entity` with `seq > after`, oldest first; with `wait_ms` > 0 and
    /// nothing new, held until a deposit commits or the wait (capped at `wait_ms_max`) ends.
    pub async fn deposits(
        &self,
        entity: &EntityId,
        after: u64,
        wait_ms: u64,
        filter: DepositFilter,
    ) -> Result<DepositsPage, Error> {
        let wait = Duration::from_millis(wait_ms.min(self.config.wait_ms_max));
        let deadline = tokio::time::Instant::now() + wait;
        let mut committed = self.committed_seq.clone();
        // Holding a permit is what makes this caller a waiter; without one it answers at once.
        let permit = if wait.is_zero() {
            None
        } else {
            self.waiters.clone().try_acquire_owned().ok()
        };
        loop {
            // Mark the current commit as seen before querying, so a commit racing the query wakes us.
            committed.borrow_and_update();
            let entity_text = entity.to_string();
            let filter = filter.clone();
            let page = self
                .db
                .run(move |conn| read_deposits(conn, &entity_text, after, &filter))
                .await?;
            if !page.deposits.is_empty()
                || permit.is_none()
                || tokio::time::Instant::now() >= deadline
            {
                return Ok(page);
            }
            match tokio::time::timeout_at(deadline, committed.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => return Ok(page),
            }
        }
    }

    /// Sum of all balances, for invariant checks (must be zero). i128: cannot overflow.
    pub async fn sum_of_balances(&self) -> Result<i128, Error> {
        self.db
            .run(|conn| {
                let all: Vec<i64> = accounts::table
                    .select(accounts::balance)
                    .load(conn)
                    .map_err(db::DbError::from)?;
                Ok(all.into_iter().map(i128::from).sum())
            })
            .await
    }
}

pub(crate) fn read_balance(conn: &mut AnyConnection, entity: &str) -> Result<i64, db::DbError> {
    Ok(accounts::table
        .find(entity)
        .select(accounts::balance)
        .first::<i64>(conn)
        .optional()?
        .unwrap_or(0))
}

/// Which of an account's deposits a page holds: all, or those of one payment
/// (`transaction_id`) or of one customer (`userid`), or both.
#[derive(Debug, Clone, Default)]
pub struct DepositFilter {
    pub transaction_id: Option<String>,
    pub userid: Option<String>,
}

type DepositRow = (
    i64,
    String,
    i64,
    Option<String>,
    i64,
    Option<String>,
    Option<String>,
);

fn read_deposits(
    conn: &mut AnyConnection,
    entity: &str,
    after: u64,
    filter: &DepositFilter,
) -> Result<DepositsPage, Error> {
    let after_i =
        i64::try_from(after).map_err(|_| Error::InvalidQuery("after is too large".into()))?;
    let columns = (
        transfers::seq,
        transfers::sender,
        transfers::amount,
        transfers::transaction_id,
        transfers::time_ms,
        transfers::userid,
        transfers::from_name,
    );
    let mut query = transfers::table
        .filter(transfers::recipient.eq(entity))
        .filter(transfers::seq.gt(after_i))
        .select(columns)
        .order(transfers::seq.asc())
        .limit(DEPOSITS_PAGE_MAX)
        .into_boxed();
    if let Some(t) = &filter.transaction_id {
        query = query.filter(transfers::transaction_id.eq(t.clone()));
    }
    if let Some(u) = &filter.userid {
        query = query.filter(transfers::userid.eq(u.clone()));
    }
    let rows: Vec<DepositRow> = query.load(conn).map_err(db::DbError::from)?;
    let balance = read_balance(conn, entity)?;
    let deposits: Vec<Deposit> = rows
        .into_iter()
        .map(
            |(seq, from, amount, transaction_id, time_ms, userid, from_name)| Deposit {
                // Stored values were written from u64s by the writer; they are never negative.
                seq: seq.unsigned_abs(),
                from,
                amount: amount.unsigned_abs(),
                transaction_id,
                time: time_ms.unsigned_abs(),
                userid,
                from_name,
            },
        )
        .collect();
    let next = deposits.last().map(|d| d.seq).unwrap_or(after);
    Ok(DepositsPage {
        deposits,
        next,
        balance,
    })
}

/// What became of one job in a batch, decided before the batch commits.
enum Outcome {
    Executed(StoredAnswer),
    Replayed(StoredAnswer),
    Failed(Error),
}

struct Writer {
    conn: AnyConnection,
    state: WriterState,
    committed: Option<watch::Sender<u64>>,
    metrics: Arc<Metrics>,
}

/// Everything the writer knows besides its connection (split so a transaction closure can
/// borrow both).
struct WriterState {
    issuer: EntityId,
    config: IssuerConfig,
    /// Balances of accounts known to exist in the database, exactly as committed.
    cache: HashMap<String, i64>,
    next_seq: i64,
    /// The next fraud proof's seq (`frauds.seq`), dense from 1.
    next_fraud_seq: i64,
}

/// What one batch has decided so far, written when it ends: balances as of this point in the
/// batch (`overlay`), the transfer rows and the commands' answers.
#[derive(Default)]
struct BatchWork {
    overlay: HashMap<String, i64>,
    transfers: Vec<NewTransfer>,
    commands: Vec<CommandRow>,
}

/// One movement of money: `sender` pays `amount + fee`, `recipient` gets `amount`, the issuer
/// `fee`. The caller has checked the sender can pay.
struct Posting<'a> {
    sender: &'a str,
    recipient: &'a str,
    amount: i64,
    fee: i64,
    transaction_id: Option<String>,
    userid: Option<String>,
    from_name: Option<String>,
    now_ms: u64,
}

impl Writer {
    /// Forget cached state and read the next seq from the database (at start and after a failed batch).
    fn reload(&mut self) -> Result<(), Error> {
        self.state.cache.clear();
        let max: Option<i64> = transfers::table
            .select(diesel::dsl::max(transfers::seq))
            .first(&mut self.conn)
            .map_err(db::DbError::from)?;
        self.state.next_seq = max.unwrap_or(0) + 1;
        let max_fraud: Option<i64> = crate::schema::frauds::table
            .select(diesel::dsl::max(crate::schema::frauds::seq))
            .first(&mut self.conn)
            .map_err(db::DbError::from)?;
        self.state.next_fraud_seq = max_fraud.unwrap_or(0) + 1;
        Ok(())
    }

    fn run(mut self, queue: Receiver<Job>) {
        let batch_max = self.state.config.batch_max;
        let mut batch = Vec::with_capacity(batch_max);
        // Blocks for the first job; then takes whatever queued up meanwhile (group commit).
        while let Ok(first) = queue.recv() {
            batch.push(first);
            while batch.len() < batch_max {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.metrics
                .queued
                .fetch_sub(batch.len() as u64, Ordering::Relaxed);
            self.process(&mut batch);
            batch.clear();
        }
        tracing::info!("ledger writer stopped: all handles dropped");
    }

    fn process(&mut self, batch: &mut Vec<Job>) {
        let started = Instant::now();
        let now_ms = node::now_ms();
        let state = &mut self.state;
        let mut work = BatchWork::default();
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(batch.len());
        let result = db::write_transaction::<_, db::DbError>(&mut self.conn, |conn| {
            let mut seen: HashMap<(&str, u64), usize> = HashMap::new();
            for (index, job) in batch.iter().enumerate() {
                let command = job.order.command();
                let earlier = command.and_then(|(sender, counter, _)| {
                    seen.get(&(sender.as_str(), counter)).copied()
                });
                let outcome = match (earlier, command) {
                    (Some(earlier), Some((_, counter, key))) => {
                        let earlier_key = batch[earlier].order.command().map(|c| c.2);
                        replay_of_earlier(&outcomes[earlier], earlier_key, key, counter)
                    }
                    (_, Some((sender, counter, key))) => {
                        match stored_answer(conn, sender, counter, key)? {
                            Some(outcome) => outcome,
                            None => state.execute(conn, &job.order, now_ms, &mut work)?,
                        }
                    }
                    (_, None) => state.execute(conn, &job.order, now_ms, &mut work)?,
                };
                if let (Outcome::Executed(_), Some((sender, counter, _))) = (&outcome, command) {
                    seen.insert((sender.as_str(), counter), index);
                }
                outcomes.push(outcome);
            }
            store::insert_transfers(conn, &work.transfers)?;
            // The answers go in the same transaction (the same group commit) as the transfers.
            node::commands::record(conn, &work.commands)?;
            // Invariant: a batch moves money, it never makes or destroys it. The balances it
            // changes sum to the same before and after. Free: every account in the overlay
            // went through `balance_of` in this batch, which caches each stored balance it
            // reads (the cache is only cleared after a batch), so an account not in the cache
            // has no row yet and held 0. A batch that breaks it is rolled back, never committed.
            let delta: i128 = work
                .overlay
                .iter()
                .map(|(entity, balance)| {
                    let before = state.cache.get(entity).copied().unwrap_or(0);
                    i128::from(*balance) - i128::from(before)
                })
                .sum();
            if delta != 0 {
                // Not a panic: the writer thread must live on; the batch is refused whole.
                tracing::error!(delta, "a ledger batch does not sum to zero: rolled back");
                return Err(db::DbError::Task(format!(
                    "ledger batch changes the sum of balances by {delta}: rolled back"
                )));
            }
            store::write_balances(conn, &work.overlay, &state.cache)?;
            Ok(())
        });
        match result {
            Ok(()) => {
                let executed = work.transfers.len() as u64;
                if state.cache.len() + work.overlay.len() > BALANCE_CACHE_MAX {
                    state.cache.clear();
                } else {
                    state.cache.extend(work.overlay);
                }
                self.metrics.record_batch(executed, started.elapsed());
                if executed > 0 {
                    if let Some(tx) = &self.committed {
                        tx.send_replace(u64::try_from(state.next_seq - 1).unwrap_or(0));
                    }
                }
                for (job, outcome) in batch.drain(..).zip(outcomes) {
                    let answer = match outcome {
                        Outcome::Executed(a) => {
                            if matches!(job.order, Order::Batch(_)) {
                                self.metrics.batch_commands.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(a)
                        }
                        Outcome::Replayed(a) => {
                            self.metrics.replayed.fetch_add(1, Ordering::Relaxed);
                            Ok(a)
                        }
                        Outcome::Failed(e) => {
                            self.metrics.rejected.fetch_add(1, Ordering::Relaxed);
                            Err(e)
                        }
                    };
                    // The requester may have gone away; its transfer stands either way.
                    let _ = job.reply.send(answer);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batch = batch.len(), "ledger batch failed; nothing in it was applied");
                if let Err(e) = self.reload() {
                    tracing::error!(error = %e, "ledger reload failed");
                }
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(Error::Storage(e.to_string())));
                }
            }
        }
    }
}

impl WriterState {
    /// Execute one new order against the batch so far; rows are written at batch end.
    fn execute(
        &mut self,
        conn: &mut AnyConnection,
        order: &Order,
        now_ms: u64,
        work: &mut BatchWork,
    ) -> Result<Outcome, db::DbError> {
        match order {
            Order::Transfer(o) => self.transfer(conn, o, now_ms, work),
            Order::Batch(o) => self.batch(conn, o, now_ms, work),
            Order::BuyChain(o) => self.buy_chain(conn, o, now_ms, work),
            Order::Redeem(o) => self.redeem(conn, o, now_ms, work),
            Order::CloseChain(chain) => self.close_chain(conn, chain, now_ms, work),
        }
    }

    /// The fee on `amount` (none when the issuer pays), or `invalid_amount` when it overflows.
    fn fee_of(&self, sender: &str, amount: u64) -> Result<Amount, Error> {
        if sender == self.issuer.as_str() {
            return Ok(Amount::ZERO);
        }
        fee_for(Amount(amount), self.config.fee_flat, self.config.fee_bps).map_err(|_| {
            Error::InvalidAmount {
                max: self.config.max_amount,
            }
        })
    }

    /// Check and apply one new transfer.
    fn transfer(
        &mut self,
        conn: &mut AnyConnection,
        o: &TransferOrder,
        now_ms: u64,
        work: &mut BatchWork,
    ) -> Result<Outcome, db::DbError> {
        let t = BatchTransfer {
            recipient: o.recipient.clone(),
            amount: o.amount,
            transaction_id: o.transaction_id.clone(),
            userid: o.userid.clone(),
            from_name: o.from_name.clone(),
        };
        let (seq, fee) = match self.apply_transfer(conn, &o.sender, &t, now_ms, work)? {
            Ok(done) => done,
            Err(e) => return Ok(Outcome::Failed(e)),
        };
        let receipt = TransferReceipt {
            result: "success".into(),
            seq,
            fee,
            balance: self.balance_of(conn, o.sender.as_str(), &work.overlay)?,
        };
        self.answer(work, &o.sender, o.counter, &o.body_sha256, &receipt)
    }

    /// Check one transfer from `sender` against the batch so far and post it: its (seq, fee),
    /// or the refusal a single transfer would answer (nothing posted).
    fn apply_transfer(
        &mut self,
        conn: &mut AnyConnection,
        sender: &EntityId,
        t: &BatchTransfer,
        now_ms: u64,
        work: &mut BatchWork,
    ) -> Result<Result<(u64, u64), Error>, db::DbError> {
        let from_issuer = *sender == self.issuer;
        let fee = match self.fee_of(sender.as_str(), t.amount) {
            Ok(fee) => fee,
            Err(e) => return Ok(Err(e)),
        };
        let Ok(total) = Amount(t.amount).checked_add(fee) else {
            return Ok(Err(Error::InvalidAmount {
                max: self.config.max_amount,
            }));
        };
        // Config validation bounds max_amount and fees well inside i64 (see IssuerConfig::validate).
        let (amount_i, fee_i, total_i) = (to_i64(t.amount)?, to_i64(fee.0)?, to_i64(total.0)?);
        let sender_balance = self.balance_of(conn, sender.as_str(), &work.overlay)?;
        let floor = if from_issuer {
            -to_i64(self.config.supply_cap)?
        } else {
            0
        };
        let after = sender_balance.checked_sub(total_i).ok_or_else(overflow)?;
        if after < floor {
            return Ok(Err(if from_issuer {
                Error::SupplyCapReached {
                    cap: self.config.supply_cap,
                }
            } else {
                Error::InsufficientFunds {
                    balance: sender_balance,
                    needed: total.0,
                }
            }));
        }
        let seq = self.post(
            conn,
            work,
            Posting {
                sender: sender.as_str(),
                recipient: t.recipient.as_str(),
                amount: amount_i,
                fee: fee_i,
                transaction_id: t.transaction_id.clone(),
                userid: t.userid.clone(),
                from_name: t.from_name.clone(),
                now_ms,
            },
        )?;
        Ok(Ok((seq.unsigned_abs(), fee.0)))
    }

    /// Record a command's successful answer (in the batch's transaction).
    fn answer<T: serde::Serialize>(
        &self,
        work: &mut BatchWork,
        sender: &EntityId,
        counter: u64,
        body_sha256: &str,
        body: &T,
    ) -> Result<Outcome, db::DbError> {
        let body = serde_json::to_string(body).map_err(|e| db::DbError::Task(e.to_string()))?;
        let answer = StoredAnswer { status: 200, body };
        work.commands
            .push(CommandRow::new(sender, counter, body_sha256, &answer).map_err(|_| overflow())?);
        Ok(Outcome::Executed(answer))
    }

    /// Move money in the batch's overlay and queue its transfer row; answers its seq.
    fn post(
        &mut self,
        conn: &mut AnyConnection,
        work: &mut BatchWork,
        p: Posting<'_>,
    ) -> Result<i64, db::DbError> {
        let total = p.amount.checked_add(p.fee).ok_or_else(overflow)?;
        let sender = self.balance_of(conn, p.sender, &work.overlay)?;
        work.overlay.insert(
            p.sender.to_owned(),
            sender.checked_sub(total).ok_or_else(overflow)?,
        );
        let recipient = self.balance_of(conn, p.recipient, &work.overlay)?;
        work.overlay.insert(
            p.recipient.to_owned(),
            recipient.checked_add(p.amount).ok_or_else(overflow)?,
        );
        if p.fee > 0 {
            let issuer = self.issuer.to_string();
            let balance = self.balance_of(conn, &issuer, &work.overlay)?;
            work.overlay
                .insert(issuer, balance.checked_add(p.fee).ok_or_else(overflow)?);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        work.transfers.push(NewTransfer {
            seq,
            sender: p.sender.to_owned(),
            recipient: p.recipient.to_owned(),
            amount: p.amount,
            fee: p.fee,
            transaction_id: p.transaction_id,
            time_ms: to_i64(p.now_ms)?,
            userid: p.userid,
            from_name: p.from_name,
        });
        Ok(seq)
    }

    /// Balance as of this point in the batch: overlay, then cache, then the database.
    fn balance_of(
        &mut self,
        conn: &mut AnyConnection,
        entity: &str,
        overlay: &HashMap<String, i64>,
    ) -> Result<i64, db::DbError> {
        if let Some(b) = overlay.get(entity).or_else(|| self.cache.get(entity)) {
            return Ok(*b);
        }
        let stored: Option<i64> = accounts::table
            .find(entity)
            .select(accounts::balance)
            .first(conn)
            .optional()?;
        if let Some(b) = stored {
            self.cache.insert(entity.to_owned(), b);
        }
        Ok(stored.unwrap_or(0))
    }
}

fn overflow() -> db::DbError {
    db::DbError::Task("balance arithmetic overflowed".into())
}

fn to_i64(value: u64) -> Result<i64, db::DbError> {
    i64::try_from(value).map_err(|_| overflow())
}

/// The stored answer for (sender, counter), or `counter_reused` when the body differs.
fn stored_answer(
    conn: &mut AnyConnection,
    sender: &EntityId,
    counter: u64,
    body_sha256: &str,
) -> Result<Option<Outcome>, db::DbError> {
    use node::commands::Seen;
    let seen = node::commands::lookup(conn, sender.as_str(), counter, body_sha256)?;
    Ok(seen.map(|seen| match seen {
        Seen::Answered(answer) => Outcome::Replayed(answer),
        Seen::CounterReused => Outcome::Failed(Error::CounterReused { counter }),
    }))
}

/// A command repeated within one batch: the earlier one's answer, or `counter_reused`.
fn replay_of_earlier(
    earlier: &Outcome,
    earlier_key: Option<&str>,
    key: &str,
    counter: u64,
) -> Outcome {
    match earlier {
        Outcome::Executed(a) if earlier_key == Some(key) => Outcome::Replayed(a.clone()),
        _ => Outcome::Failed(Error::CounterReused { counter }),
    }
}
