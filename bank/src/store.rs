//! The bank's records in the database: customers, currencies, balances, statements and app
//! tokens. Every function is blocking and takes a connection; every change of money is one
//! transaction, so a crash leaves either all of it or none.
//!
//! Statement seqs are `MAX(seq) + 1` inside the writing transaction; the bank's writes go
//! through one lock ([`WRITES`]) so two of them never draw the same seq.

use diesel::prelude::*;
use protocol::ledger::Deposit;

use crate::error::Error;
use crate::schema::{balances, currencies, customers, entries, tokens};
use db::AnyConnection;

/// Serialises the bank's writing transactions (statement seqs, balance checks).
pub static WRITES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Longest page of a customer's deposits.
pub const DEPOSITS_PAGE_MAX: i64 = 1_000;
/// Longest token label.
pub const LABEL_CHARS_MAX: usize = 64;

/// Kinds of customers (DESIGN 14).
pub const OPAQUE: &str = "opaque";
/// The bank keeps the customer's own key and acts for it at the issuers.
pub const TRANSPARENT: &str = "transparent";
/// Payment states.
pub const PENDING: &str = "pending";
pub const DONE: &str = "done";
pub const REFUSED: &str = "refused";

fn write_lock() -> std::sync::MutexGuard<'static, ()> {
    // A panic while holding the lock leaves no half-written state (the transaction rolled
    // back), so a poisoned lock is safe to take.
    WRITES.lock().unwrap_or_else(|p| p.into_inner())
}

fn to_i64(v: u64) -> Result<i64, Error> {
    i64::try_from(v).map_err(|_| Error::InvalidAmount {
        max: i64::MAX as u64,
    })
}

pub fn add_customer(
    conn: &mut AnyConnection,
    name: &str,
    kind: &str,
    password_hash: &str,
    now_ms: u64,
) -> Result<(), Error> {
    let _w = write_lock();
    conn.transaction(|conn| {
        let exists: i64 = customers::table
            .filter(customers::name.eq(name))
            .count()
            .get_result(conn)?;
        if exists > 0 {
            return Err(Error::NameTaken(name.to_owned()));
        }
        diesel::insert_into(customers::table)
            .values((
                customers::name.eq(name),
                customers::kind.eq(kind),
                customers::password_hash.eq(password_hash),
                customers::created_ms.eq(to_i64(now_ms)?),
            ))
            .execute(conn)?;
        Ok(())
    })
}

pub fn customer_exists(conn: &mut AnyConnection, name: &str) -> Result<bool, Error> {
    let n: i64 = customers::table
        .filter(customers::name.eq(name))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Every customer's name, in order.
pub fn customer_names(conn: &mut AnyConnection) -> Result<Vec<String>, Error> {
    Ok(customers::table
        .select(customers::name)
        .order(customers::name.asc())
        .load(conn)?)
}

/// Record a currency the bank takes; its deposit cursor starts at 0 the first time and is
/// kept after.
pub fn upsert_currency(
    conn: &mut AnyConnection,
    issuer: &str,
    url: &str,
    code: &str,
) -> Result<(), Error> {
    let _w = write_lock();
    conn.transaction(|conn| {
        let n = diesel::update(currencies::table.find(issuer))
            .set((currencies::url.eq(url), currencies::code.eq(code)))
            .execute(conn)?;
        if n == 0 {
            diesel::insert_into(currencies::table)
                .values((
                    currencies::issuer.eq(issuer),
                    currencies::url.eq(url),
                    currencies::code.eq(code),
                    currencies::deposits_after.eq(0i64),
                ))
                .execute(conn)?;
        }
        Ok(())
    })
}

/// The issuer id of a currency the bank takes, given its id or its URL; `None` for another.
pub fn currency_of(conn: &mut AnyConnection, id_or_url: &str) -> Result<Option<String>, Error> {
    let wanted = id_or_url.trim_end_matches('/');
    let all: Vec<(String, String)> = currencies::table
        .select((currencies::issuer, currencies::url))
        .load(conn)?;
    Ok(all
        .into_iter()
        .find(|(id, url)| id == wanted || url.trim_end_matches('/') == wanted)
        .map(|(id, _)| id))
}

pub fn deposits_cursor(conn: &mut AnyConnection, issuer: &str) -> Result<u64, Error> {
    let after: i64 = currencies::table
        .find(issuer)
        .select(currencies::deposits_after)
        .first(conn)?;
    Ok(after.unsigned_abs())
}

fn next_seq(conn: &mut AnyConnection) -> Result<i64, Error> {
    let max: Option<i64> = entries::table
        .select(diesel::dsl::max(entries::seq))
        .first(conn)?;
    Ok(max.unwrap_or(0) + 1)
}

fn add_to_balance(
    conn: &mut AnyConnection,
    customer: &str,
    issuer: &str,
    delta: i64,
) -> Result<i64, Error> {
    let now = balance(conn, customer, issuer)?;
    let after = now
        .checked_add(delta)
        .ok_or_else(|| Error::Internal("balance overflow".into()))?;
    // The callers check funds first; a negative balance here is a bug, not a refusal.
    assert!(after >= 0, "a customer's balance went negative");
    let n = diesel::update(balances::table.find((customer, issuer)))
        .set(balances::balance.eq(after))
        .execute(conn)?;
    if n == 0 {
        diesel::insert_into(balances::table)
            .values((
                balances::customer.eq(customer),
                balances::issuer.eq(issuer),
                balances::balance.eq(after),
            ))
            .execute(conn)?;
    }
    Ok(after)
}

pub fn balance(conn: &mut AnyConnection, customer: &str, issuer: &str) -> Result<i64, Error> {
    Ok(balances::table
        .find((customer, issuer))
        .select(balances::balance)
        .first::<i64>(conn)
        .optional()?
        .unwrap_or(0))
}

/// Credit the bank's deposits at `issuer` (a page after the stored cursor) to the customers
/// they name, and move the cursor to `next`, in one transaction: each deposit is credited
/// once. Deposits that name no customer of this bank stay the bank's own. Answers how many
/// were credited.
pub fn credit_deposits(
    conn: &mut AnyConnection,
    issuer: &str,
    deposits: &[Deposit],
    next: u64,
) -> Result<usize, Error> {
    let _w = write_lock();
    conn.transaction(|conn| {
        let after = deposits_cursor(conn, issuer)?;
        let mut credited = 0;
        let mut seq = next_seq(conn)?;
        for d in deposits.iter().filter(|d| d.seq > after) {
            let Some(userid) = &d.userid else { continue };
            // A transparent customer's money is its own key's: a deposit to the bank naming
            // it stays the bank's (and is logged), as one naming nobody does.
            if customer_kind(conn, userid)?.as_deref() != Some(OPAQUE) {
                tracing::warn!(
                    userid,
                    seq = d.seq,
                    "a deposit names no customer; kept by the bank"
                );
                continue;
            }
            let amount = to_i64(d.amount)?;
            add_to_balance(conn, userid, issuer, amount)?;
            diesel::insert_into(entries::table)
                .values((
                    entries::seq.eq(seq),
                    entries::customer.eq(userid),
                    entries::issuer.eq(issuer),
                    entries::amount.eq(amount),
                    entries::counterparty.eq(&d.from),
                    entries::counterparty_name.eq(&d.from_name),
                    entries::transaction_id.eq(&d.transaction_id),
                    entries::issuer_seq.eq(Some(to_i64(d.seq)?)),
                    entries::state.eq(DONE),
                    entries::time_ms.eq(to_i64(d.time)?),
                ))
                .execute(conn)?;
            seq += 1;
            credited += 1;
        }
        if next > after {
            diesel::update(currencies::table.find(issuer))
                .set(currencies::deposits_after.eq(to_i64(next)?))
                .execute(conn)?;
        }
        Ok(credited)
    })
}

type EntryRow = (i64, i64, String, Option<String>, Option<String>, i64);

/// A customer's deposits in one currency after the statement seq `after`, oldest first, in
/// the issuer's deposit shape (`seq` is the bank's statement seq: the cursor the app passes
/// back), optionally one payment's (`transaction_id`).
pub fn deposits_page(
    conn: &mut AnyConnection,
    customer: &str,
    issuer: &str,
    after: u64,
    transaction_id: Option<&str>,
) -> Result<protocol::ledger::DepositsPage, Error> {
    let after_i =
        i64::try_from(after).map_err(|_| Error::InvalidQuery("after is too large".into()))?;
    let mut query = entries::table
        .filter(entries::customer.eq(customer))
        .filter(entries::issuer.eq(issuer))
        .filter(entries::seq.gt(after_i))
        .filter(entries::amount.gt(0i64))
        .select((
            entries::seq,
            entries::amount,
            entries::counterparty,
            entries::counterparty_name,
            entries::transaction_id,
            entries::time_ms,
        ))
        .order(entries::seq.asc())
        .limit(DEPOSITS_PAGE_MAX)
        .into_boxed();
    if let Some(t) = transaction_id {
        query = query.filter(entries::transaction_id.eq(t.to_owned()));
    }
    let rows: Vec<EntryRow> = query.load(conn)?;
    let deposits: Vec<Deposit> = rows
        .into_iter()
        .map(
            |(seq, amount, from, from_name, transaction_id, time_ms)| Deposit {
                // Written from u64s and positive amounts only.
                seq: seq.unsigned_abs(),
                from,
                amount: amount.unsigned_abs(),
                transaction_id,
                time: time_ms.unsigned_abs(),
                userid: Some(customer.to_owned()),
                from_name,
            },
        )
        .collect();
    let next = deposits.last().map(|d| d.seq).unwrap_or(after);
    Ok(protocol::ledger::DepositsPage {
        deposits,
        next,
        balance: balance(conn, customer, issuer)?,
    })
}

/// An app token as stored.
#[derive(Debug, Clone, Queryable)]
pub struct Token {
    pub id: String,
    pub secret_sha256: String,
    pub customer: String,
    pub issuer: String,
    pub spend_limit: i64,
    pub spent: i64,
    pub label: String,
    pub revoked: i32,
    pub created_ms: i64,
}

/// Grant `customer` an app token for `issuer`'s currency, spending at most `limit`. Answers
/// (the token's id, the bearer token to hand to the app: `<id>.<secret>`). Only the secret's
/// hash is kept, so the bearer token is shown once.
pub fn grant_token(
    conn: &mut AnyConnection,
    customer: &str,
    issuer: &str,
    limit: u64,
    label: &str,
    now_ms: u64,
) -> Result<(String, String), Error> {
    if label.chars().count() > LABEL_CHARS_MAX {
        return Err(Error::InvalidQuery(format!(
            "a token label has at most {LABEL_CHARS_MAX} characters"
        )));
    }
    if !customer_exists(conn, customer)? {
        return Err(Error::UnknownName(customer.to_owned()));
    }
    let mut bytes = [0u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| Error::Internal("no randomness".into()))?;
    let id = hex::encode(&bytes[..6]);
    let secret = hex::encode(&bytes[6..]);
    let _w = write_lock();
    diesel::insert_into(tokens::table)
        .values((
            tokens::id.eq(&id),
            tokens::secret_sha256.eq(protocol::sha256_hex(secret.as_bytes())),
            tokens::customer.eq(customer),
            tokens::issuer.eq(issuer),
            tokens::spend_limit.eq(to_i64(limit)?),
            tokens::spent.eq(0i64),
            tokens::label.eq(label),
            tokens::revoked.eq(0),
            tokens::created_ms.eq(to_i64(now_ms)?),
        ))
        .execute(conn)?;
    Ok((id.clone(), format!("{id}.{secret}")))
}

/// The live token a bearer string names; `InvalidToken` for a malformed, unknown or revoked
/// one (the same answer for each, so a guesser learns nothing).
pub fn token_for_bearer(conn: &mut AnyConnection, bearer: &str) -> Result<Token, Error> {
    let (id, secret) = bearer.split_once('.').ok_or(Error::InvalidToken)?;
    let token: Token = tokens::table
        .find(id)
        .first(conn)
        .optional()?
        .ok_or(Error::InvalidToken)?;
    let given = protocol::sha256_hex(secret.as_bytes());
    // Both are hex SHA-256 digests of equal length: comparing them leaks nothing of the secret.
    if token.revoked != 0 || given != token.secret_sha256 {
        return Err(Error::InvalidToken);
    }
    Ok(token)
}

/// Revoke a token by its id: every later call with it is refused at once. Answers false for
/// an unknown id.
pub fn revoke_token(conn: &mut AnyConnection, id: &str) -> Result<bool, Error> {
    let _w = write_lock();
    let n = diesel::update(tokens::table.find(id))
        .set(tokens::revoked.eq(1))
        .execute(conn)?;
    Ok(n > 0)
}

pub fn tokens_of(conn: &mut AnyConnection, customer: &str) -> Result<Vec<Token>, Error> {
    Ok(tokens::table
        .filter(tokens::customer.eq(customer))
        .order(tokens::created_ms.asc())
        .load(conn)?)
}

/// A payment to send: what [`reserve_payment`] takes from the customer.
#[derive(Debug, Clone)]
pub struct Payment {
    pub customer: String,
    pub issuer: String,
    pub recipient: String,
    pub userid: Option<String>,
    pub amount: u64,
    pub fee: u64,
    pub transaction_id: Option<String>,
    pub counter: u64,
    /// The exact transfer body sent to the issuer (a resend must be byte for byte the same).
    pub request: String,
    /// The app's own id for this payment (unique per token).
    pub request_id: Option<String>,
}

/// A payment whose answer was never seen: sent again as it was.
#[derive(Debug, Clone)]
pub struct Pending {
    pub seq: i64,
    pub issuer: String,
    pub counter: u64,
    pub request: String,
    /// When it was taken from the customer (unix ms).
    pub time_ms: u64,
}

/// Take `amount + fee` from the token's customer for a payment, within the token's limit and
/// the balance, and record it pending with the command counter it will be sent with.
pub fn reserve_payment(
    conn: &mut AnyConnection,
    token_id: Option<&str>,
    p: &Payment,
    now_ms: u64,
) -> Result<i64, Error> {
    let total = p.amount.checked_add(p.fee).ok_or(Error::InvalidAmount {
        max: i64::MAX as u64,
    })?;
    let total_i = to_i64(total)?;
    let _w = write_lock();
    conn.transaction(|conn| {
        take(conn, token_id, &p.customer, &p.issuer, total)?;
        let seq = next_seq(conn)?;
        diesel::insert_into(entries::table)
            .values((
                entries::seq.eq(seq),
                entries::customer.eq(&p.customer),
                entries::issuer.eq(&p.issuer),
                entries::amount.eq(-total_i),
                entries::counterparty.eq(&p.recipient),
                entries::counterparty_name.eq(&p.userid),
                entries::transaction_id.eq(&p.transaction_id),
                entries::state.eq(PENDING),
                entries::token.eq(token_id),
                entries::counter.eq(Some(to_i64(p.counter)?)),
                entries::request.eq(Some(&p.request)),
                entries::time_ms.eq(to_i64(now_ms)?),
                entries::request_id.eq(&p.request_id),
            ))
            .execute(conn)?;
        Ok(seq)
    })
}

/// A payment an app made before with this `request_id` through this token, as recorded.
#[derive(Debug, Clone)]
pub struct Earlier {
    pub seq: i64,
    pub state: String,
    /// What left the customer: the amount and the issuer's fee (none for a book entry).
    pub total: u64,
    pub counterparty: String,
    pub transaction_id: Option<String>,
    /// The issuer's seq for a payment it executed; `None` for a book entry.
    pub issuer_seq: Option<i64>,
    /// The body sent to the issuer (`None` for a book entry): what the amount was.
    pub request: Option<String>,
}

pub fn earlier_payment(
    conn: &mut AnyConnection,
    token_id: &str,
    request_id: &str,
) -> Result<Option<Earlier>, Error> {
    type Row = (
        i64,
        String,
        i64,
        String,
        Option<String>,
        Option<i64>,
        Option<String>,
    );
    let row: Option<Row> = entries::table
        .filter(entries::token.eq(token_id))
        .filter(entries::request_id.eq(request_id))
        .select((
            entries::seq,
            entries::state,
            entries::amount,
            entries::counterparty,
            entries::transaction_id,
            entries::issuer_seq,
            entries::request,
        ))
        .first(conn)
        .optional()?;
    Ok(row.map(
        |(seq, state, amount, counterparty, transaction_id, issuer_seq, request)| Earlier {
            seq,
            state,
            total: amount.unsigned_abs(),
            counterparty,
            transaction_id,
            issuer_seq,
            request,
        },
    ))
}

/// Take `total` from `customer`'s balance in `issuer`'s currency, and from the allowance of
/// the token it pays through (`token_id`; `None`: the customer's own payment on the web
/// page). Refused, changing nothing, past the token's limit or the balance. Inside the
/// caller's writing transaction.
fn take(
    conn: &mut AnyConnection,
    token_id: Option<&str>,
    customer: &str,
    issuer: &str,
    total: u64,
) -> Result<(), Error> {
    let total_i = to_i64(total)?;
    let spend = check_allowance(conn, token_id, customer, total)?;
    let have = balance(conn, customer, issuer)?;
    if have < total_i {
        return Err(Error::InsufficientFunds {
            balance: have,
            needed: total,
        });
    }
    add_to_balance(conn, customer, issuer, -total_i)?;
    spend.commit(conn)
}

/// What a token is to be charged, once the payment is sure to go ahead.
struct Spend {
    token: Option<Token>,
    total: i64,
}

impl Spend {
    fn commit(self, conn: &mut AnyConnection) -> Result<(), Error> {
        if let Some(token) = self.token {
            diesel::update(tokens::table.find(&token.id))
                .set(tokens::spent.eq(token.spent + self.total))
                .execute(conn)?;
        }
        Ok(())
    }
}

/// Refuse `total` past the limit of the token (`None`: no token, nothing to check), or a
/// revoked token, or another customer's.
fn check_allowance(
    conn: &mut AnyConnection,
    token_id: Option<&str>,
    customer: &str,
    total: u64,
) -> Result<Spend, Error> {
    let total_i = to_i64(total)?;
    let token: Option<Token> = match token_id {
        Some(id) => Some(
            tokens::table
                .find(id)
                .first(conn)
                .optional()?
                .ok_or(Error::InvalidToken)?,
        ),
        None => None,
    };
    if let Some(token) = &token {
        if token.revoked != 0 || token.customer != customer {
            return Err(Error::InvalidToken);
        }
        let spent_after = token.spent.checked_add(total_i);
        if spent_after.is_none_or(|s| s > token.spend_limit) {
            return Err(Error::LimitReached {
                limit: token.spend_limit.unsigned_abs(),
                spent: token.spent.unsigned_abs(),
                needed: total,
            });
        }
    }
    Ok(Spend {
        token,
        total: total_i,
    })
}

/// A transparent customer's payment (made with its own key at the issuer): charge `total` to
/// the token's allowance before it is sent (`None`: the web page, no token).
pub fn reserve_allowance(
    conn: &mut AnyConnection,
    token_id: Option<&str>,
    customer: &str,
    total: u64,
) -> Result<(), Error> {
    let _w = write_lock();
    conn.transaction(|conn| check_allowance(conn, token_id, customer, total)?.commit(conn))
}

/// The issuer refused a transparent customer's payment: the token gets `total` back.
pub fn release_allowance(
    conn: &mut AnyConnection,
    token_id: &str,
    total: u64,
) -> Result<(), Error> {
    let _w = write_lock();
    diesel::update(tokens::table.find(token_id))
        .set(tokens::spent.eq(tokens::spent - to_i64(total)?))
        .execute(conn)?;
    Ok(())
}

/// A customer's kind ([`OPAQUE`] or [`TRANSPARENT`]), `None` for an unknown name.
pub fn customer_kind(conn: &mut AnyConnection, name: &str) -> Result<Option<String>, Error> {
    Ok(customers::table
        .find(name)
        .select(customers::kind)
        .first(conn)
        .optional()?)
}

/// A payment from one customer to another of this bank, in one currency: a book entry
/// here, no issuer command and no fee (the money stays in the bank's account at the
/// issuer). The payer's `total` comes out of its balance and token as for any payment; the
/// payee's entry is a deposit naming the payer (`from_name`) and `transaction_id`, as an
/// incoming transfer's would. Answers the payee's entry seq.
pub struct Inside<'a> {
    pub payer: &'a str,
    pub payer_name: &'a str,
    pub payee: &'a str,
    pub issuer: &'a str,
    /// The bank's own entity: the counterparty both entries name.
    pub bank: &'a str,
    pub amount: u64,
    pub transaction_id: Option<&'a str>,
    /// The app's own id for this payment (unique per token).
    pub request_id: Option<&'a str>,
}

pub fn transfer_inside(
    conn: &mut AnyConnection,
    token_id: Option<&str>,
    t: &Inside<'_>,
    now_ms: u64,
) -> Result<i64, Error> {
    let amount = to_i64(t.amount)?;
    let _w = write_lock();
    conn.transaction(|conn| {
        if !customer_exists(conn, t.payee)? {
            return Err(Error::UnknownName(t.payee.to_owned()));
        }
        take(conn, token_id, t.payer, t.issuer, t.amount)?;
        add_to_balance(conn, t.payee, t.issuer, amount)?;
        let seq = next_seq(conn)?;
        let now = to_i64(now_ms)?;
        diesel::insert_into(entries::table)
            .values((
                entries::seq.eq(seq),
                entries::customer.eq(t.payer),
                entries::issuer.eq(t.issuer),
                entries::amount.eq(-amount),
                entries::counterparty.eq(t.bank),
                entries::counterparty_name.eq(Some(t.payee)),
                entries::transaction_id.eq(t.transaction_id),
                entries::state.eq(DONE),
                entries::token.eq(token_id),
                entries::time_ms.eq(now),
                entries::request_id.eq(t.request_id),
            ))
            .execute(conn)?;
        diesel::insert_into(entries::table)
            .values((
                entries::seq.eq(seq + 1),
                entries::customer.eq(t.payee),
                entries::issuer.eq(t.issuer),
                entries::amount.eq(amount),
                entries::counterparty.eq(t.bank),
                entries::counterparty_name.eq(Some(t.payer_name)),
                entries::transaction_id.eq(t.transaction_id),
                entries::state.eq(DONE),
                entries::time_ms.eq(now),
            ))
            .execute(conn)?;
        Ok(seq + 1)
    })
}

/// The issuer executed the payment: it is done, with the issuer's seq.
pub fn complete_payment(conn: &mut AnyConnection, seq: i64, issuer_seq: u64) -> Result<(), Error> {
    let _w = write_lock();
    diesel::update(entries::table.find(seq).filter(entries::state.eq(PENDING)))
        .set((
            entries::state.eq(DONE),
            entries::issuer_seq.eq(Some(to_i64(issuer_seq)?)),
        ))
        .execute(conn)?;
    Ok(())
}

/// The issuer refused the payment: the customer and the token get the money back.
pub fn refund_payment(conn: &mut AnyConnection, seq: i64) -> Result<(), Error> {
    let _w = write_lock();
    conn.transaction(|conn| {
        let row: Option<(String, String, i64, Option<String>)> = entries::table
            .find(seq)
            .filter(entries::state.eq(PENDING))
            .select((
                entries::customer,
                entries::issuer,
                entries::amount,
                entries::token,
            ))
            .first(conn)
            .optional()?;
        let Some((customer, issuer, amount, token)) = row else {
            return Ok(());
        };
        let total = amount
            .checked_neg()
            .ok_or_else(|| Error::Internal("amount".into()))?;
        add_to_balance(conn, &customer, &issuer, total)?;
        if let Some(t) = token {
            diesel::update(tokens::table.find(&t))
                .set(tokens::spent.eq(tokens::spent - total))
                .execute(conn)?;
        }
        diesel::update(entries::table.find(seq))
            .set(entries::state.eq(REFUSED))
            .execute(conn)?;
        Ok(())
    })
}

/// Payments taken from customers whose answer from the issuer was never seen (a crash or an
/// unreachable issuer), oldest first: the resender sends each again with its counter.
pub fn pending_payments(conn: &mut AnyConnection) -> Result<Vec<Pending>, Error> {
    type Row = (i64, String, Option<i64>, Option<String>, i64);
    let rows: Vec<Row> = entries::table
        .filter(entries::state.eq(PENDING))
        .select((
            entries::seq,
            entries::issuer,
            entries::counter,
            entries::request,
            entries::time_ms,
        ))
        .order(entries::seq.asc())
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(seq, issuer, counter, request, time_ms)| {
            // reserve_payment writes both with every pending entry.
            Some(Pending {
                seq,
                issuer,
                counter: counter?.unsigned_abs(),
                request: request?,
                time_ms: time_ms.unsigned_abs(),
            })
        })
        .collect())
}

/// Every currency's balance of a customer (issuer, balance), by issuer.
pub fn balances_of(conn: &mut AnyConnection, customer: &str) -> Result<Vec<(String, i64)>, Error> {
    Ok(balances::table
        .filter(balances::customer.eq(customer))
        .select((balances::issuer, balances::balance))
        .order(balances::issuer.asc())
        .load(conn)?)
}

/// One line of a customer's statement.
#[derive(Debug, Clone, Queryable)]
pub struct Line {
    pub seq: i64,
    pub issuer: String,
    pub amount: i64,
    pub counterparty: String,
    pub counterparty_name: Option<String>,
    pub transaction_id: Option<String>,
    pub state: String,
    pub time_ms: i64,
}

/// A customer's latest statement lines, newest first.
pub fn statement(conn: &mut AnyConnection, customer: &str, limit: i64) -> Result<Vec<Line>, Error> {
    Ok(entries::table
        .filter(entries::customer.eq(customer))
        .select((
            entries::seq,
            entries::issuer,
            entries::amount,
            entries::counterparty,
            entries::counterparty_name,
            entries::transaction_id,
            entries::state,
            entries::time_ms,
        ))
        .order(entries::seq.desc())
        .limit(limit)
        .load(conn)?)
}

/// Revoke one of `customer`'s tokens (a customer cannot revoke another's): false when it
/// has no such token.
pub fn revoke_own_token(conn: &mut AnyConnection, customer: &str, id: &str) -> Result<bool, Error> {
    let _w = write_lock();
    let n = diesel::update(tokens::table.find(id).filter(tokens::customer.eq(customer)))
        .set(tokens::revoked.eq(1))
        .execute(conn)?;
    Ok(n > 0)
}
