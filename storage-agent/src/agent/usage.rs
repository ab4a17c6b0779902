//! What each contract delivered and earned by the agent's own books (`contract_usage`):
//! bytes written, bytes read and audits answered (a `completed` record, DESIGN 11, carries
//! these, and the agent agrees only to its own), what it earned by kind, and the paywords
//! credited to it and drawn on. Counted inside the transaction that writes an object,
//! charges a read or answers an audit, so a count commits with what it counts; each count
//! goes to the history too (`history::note`, issue 22).
//!
//! Means of payment (issue 22): every amount earned is split into what paywords paid, what
//! the buyer's credit paid (LCP deposits and credit payments) and what went on its tab:
//! words credited to the contract and not yet drawn on pay first, then the rest of its
//! credit, and what the credit does not cover is owed on the tab. Words that pay a debt off
//! count as drawn on (the debt was counted as tab when it was made).

use db::AnyConnection;
use diesel::prelude::*;

use super::history::{self, Delta};
use crate::schema::{contract_usage, contracts};

/// A contract's figures.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub bytes_written: u64,
    pub bytes_read: u64,
    pub audits_answered: u64,
    pub earned: protocol::agent::Earned,
}

/// What a charge was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Writes,
    Reads,
    Audits,
}

/// What one transaction served on a contract, and the charge it drew (0 when free).
#[derive(Debug, Default, Clone, Copy)]
pub struct Served {
    pub written: u64,
    pub read: u64,
    /// The read went through a retrieval token.
    pub by_token: bool,
    pub audits: u64,
    pub charge: Option<(Kind, u64)>,
}

fn to_i64(n: u64) -> i64 {
    // Bytes and amounts of one contract stay far below 2^63; saturate rather than wrap.
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Split `amount`, drawn when the contract's credit was `credit_before`, into (payword,
/// deposit, tab), with `words_left` of paywords credited and not drawn on yet.
fn split(amount: i64, credit_before: i64, words_left: i64) -> (i64, i64, i64) {
    let words = amount.min(words_left.max(0));
    let other_credit = (credit_before - words_left.max(0)).max(0);
    let deposit = (amount - words).min(other_credit);
    (words, deposit, amount - words - deposit)
}

/// What a contract's books say now: its currency, paid, price and spent, and the paywords
/// credited to it and drawn on.
struct Funds {
    issuer: String,
    paid: i64,
    price: i64,
    spent: i64,
    words_paid: i64,
    words_used: i64,
}

/// The contract's [`Funds`] in one query, its usage row made when it has none (inside the
/// caller's transaction).
fn funds(conn: &mut AnyConnection, id: &str) -> QueryResult<Funds> {
    type Row = (String, i64, i64, i64, Option<i64>, Option<i64>);
    let (issuer, paid, price, spent, words_paid, words_used): Row = contracts::table
        .left_join(contract_usage::table)
        .filter(contracts::id.eq(id))
        .select((
            contracts::issuer,
            contracts::paid,
            contracts::contract_price,
            contracts::spent,
            contract_usage::words_paid.nullable(),
            contract_usage::words_used.nullable(),
        ))
        .first(conn)?;
    if words_paid.is_none() {
        db::insert_unless_taken(conn, |conn| {
            diesel::insert_into(contract_usage::table)
                .values(contract_usage::contract_id.eq(id))
                .execute(conn)
        })?;
    }
    Ok(Funds {
        issuer,
        paid,
        price,
        spent,
        words_paid: words_paid.unwrap_or(0),
        words_used: words_used.unwrap_or(0),
    })
}

/// Count what `served` says on contract `id` (inside the caller's transaction, after its
/// charge is applied to `spent` and the buyer's tab is mirrored), in the books and the
/// history: the history's rows are the last the transaction changes (`history::note`).
pub fn count(conn: &mut AnyConnection, id: &str, served: Served) -> QueryResult<()> {
    let Funds {
        issuer,
        paid,
        price,
        spent,
        words_paid,
        words_used: words_used_before,
    } = funds(conn, id)?;
    let (w, r, a) = (
        to_i64(served.written),
        to_i64(served.read),
        to_i64(served.audits),
    );
    let mut delta = Delta {
        bytes_written: w,
        bytes_read: r,
        bytes_read_tokens: if served.by_token { r } else { 0 },
        audits_answered: a,
        ..Delta::default()
    };
    let (kind, charge) = served.charge.unwrap_or((Kind::Reads, 0));
    let charge = to_i64(charge);
    let (by_words, deposit, tab) = if charge > 0 {
        // `spent` already holds the charge: the credit before it was `charge` more.
        let credit_before = paid - price - spent + charge;
        split(charge, credit_before, words_paid - words_used_before)
    } else {
        (0, 0, 0)
    };
    let (ew, er, ea) = match kind {
        Kind::Writes => (charge, 0, 0),
        Kind::Reads => (0, charge, 0),
        Kind::Audits => (0, 0, charge),
    };
    (delta.earned_writes, delta.earned_reads, delta.earned_audits) = (ew, er, ea);
    (delta.by_payword, delta.by_deposit, delta.by_tab) = (by_words, deposit, tab);
    {
        use contract_usage::*;
        db::cached(diesel::update(contract_usage::table.find(id)).set((
            bytes_written.eq(bytes_written + w),
            bytes_read.eq(bytes_read + r),
            audits_answered.eq(audits_answered + a),
            earned_writes.eq(earned_writes + ew),
            earned_reads.eq(earned_reads + er),
            earned_audits.eq(earned_audits + ea),
            words_used.eq(words_used + by_words),
        )))
        .execute(conn)?;
    }
    history::note(conn, node::now_s(), &issuer, &delta)
}

/// What a payment to a contract adds to the history: (currency, events), to pass to
/// `history::note` as the transaction's last change.
pub type Noted = (String, Delta);

/// Credit `amount` to contract `id`'s `paid` (inside the caller's transaction): by paywords
/// (`by_words`) or by deposit. When it brings `paid` to the contract's price, the price is
/// earned: in the books here, and in the answer for the history, which the caller notes once
/// its other changes (the buyer's tab) are made.
#[must_use = "note what it answers in the history (note_paid), last in the transaction"]
pub fn credit_paid(
    conn: &mut AnyConnection,
    id: &str,
    amount: i64,
    by_words: bool,
) -> QueryResult<Option<Noted>> {
    if amount <= 0 {
        return Ok(None);
    }
    // The contract's row is locked first (PostgreSQL), so two payments to one contract take
    // turns and each sees the other's `paid`: the price is earned once, by the one that
    // reached it.
    db::cached(
        diesel::update(contracts::table.find(id)).set(contracts::paid.eq(contracts::paid + amount)),
    )
    .execute(conn)?;
    let Funds {
        issuer,
        paid: paid_after,
        price,
        spent,
        words_paid: words_paid_before,
        words_used: words_used_before,
    } = funds(conn, id)?;
    let paid_before = paid_after - amount;
    let mut drawn = 0;
    let credited = if by_words { amount } else { 0 };
    let active_before = paid_before >= price;
    if by_words && active_before {
        // Words paying a debt off: that debt was counted as tab when it was made.
        let debt = (spent - (paid_before - price)).max(0);
        drawn += amount.min(debt);
    }
    let mut delta = Delta::default();
    if !active_before && paid_after >= price {
        let words_left = words_paid_before + credited - words_used_before - drawn;
        let (words, deposit, tab) = split(price, paid_after, words_left);
        drawn += words;
        delta = Delta {
            earned_contract: price,
            by_payword: words,
            by_deposit: deposit,
            by_tab: tab,
            ..Delta::default()
        };
    }
    {
        use contract_usage::*;
        db::cached(diesel::update(contract_usage::table.find(id)).set((
            words_paid.eq(words_paid + credited),
            words_used.eq(words_used + drawn),
            earned_contract.eq(earned_contract + delta.earned_contract),
        )))
        .execute(conn)?;
    }
    Ok(Some((issuer, delta)))
}

/// Note what [`credit_paid`] answered (`history::note`), last in the transaction.
pub fn note_paid(conn: &mut AnyConnection, noted: Option<Noted>) -> QueryResult<()> {
    match noted {
        Some((currency, delta)) => history::note(conn, node::now_s(), &currency, &delta),
        None => Ok(()),
    }
}

/// The columns a contract's [`Usage`] is read from.
type UsageRow = (String, i64, i64, i64, i64, i64, i64, i64);

fn usage_of(row: UsageRow) -> (String, Usage) {
    let (id, w, r, a, ec, ew, er, ea) = row;
    let u = i64::unsigned_abs;
    let usage = Usage {
        bytes_written: u(w),
        bytes_read: u(r),
        audits_answered: u(a),
        earned: protocol::agent::Earned {
            contract: u(ec),
            writes: u(ew),
            reads: u(er),
            audits: u(ea),
            total: u(ec) + u(ew) + u(er) + u(ea),
        },
    };
    (id, usage)
}

const USAGE_COLUMNS: (
    contract_usage::contract_id,
    contract_usage::bytes_written,
    contract_usage::bytes_read,
    contract_usage::audits_answered,
    contract_usage::earned_contract,
    contract_usage::earned_writes,
    contract_usage::earned_reads,
    contract_usage::earned_audits,
) = (
    contract_usage::contract_id,
    contract_usage::bytes_written,
    contract_usage::bytes_read,
    contract_usage::audits_answered,
    contract_usage::earned_contract,
    contract_usage::earned_writes,
    contract_usage::earned_reads,
    contract_usage::earned_audits,
);

/// Contract `id`'s figures (zeros when nothing was counted).
pub fn of(conn: &mut AnyConnection, id: &str) -> QueryResult<Usage> {
    let row: Option<UsageRow> = contract_usage::table
        .find(id)
        .select(USAGE_COLUMNS)
        .first(conn)
        .optional()?;
    Ok(row.map(usage_of).map(|(_, u)| u).unwrap_or_default())
}

/// Every contract's figures, by contract id, in one query (the owner's summary).
pub fn all(conn: &mut AnyConnection) -> QueryResult<std::collections::HashMap<String, Usage>> {
    let rows: Vec<UsageRow> = contract_usage::table.select(USAGE_COLUMNS).load(conn)?;
    Ok(rows.into_iter().map(usage_of).collect())
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn an_amount_is_paid_by_words_first_then_credit_then_the_tab() {
        // 10 words left, credit 25 in all: a charge of 30 takes 10 words, 15 credit, 5 tab.
        assert_eq!(split(30, 25, 10), (10, 15, 5));
        assert_eq!(split(30, 100, 0), (0, 30, 0));
        assert_eq!(split(30, 0, 0), (0, 0, 30));
        // Already in debt: all of it on the tab.
        assert_eq!(split(7, -20, 0), (0, 0, 7));
        for (amount, credit, words) in [(5, 3, 1), (0, 9, 9), (100, 40, 60), (1, -5, 3)] {
            let (w, d, t) = split(amount, credit, words);
            assert_eq!(w + d + t, amount, "one total");
            assert!(w >= 0 && d >= 0 && t >= 0);
        }
    }
}
