//! Holds of payments under way, on the node's copy of each line (DESIGN 12). Every function
//! runs inside the caller's write transaction; each balance change is one conditional
//! `UPDATE` whose `WHERE` re-checks the line's bound, so two payments racing on one line
//! (two PostgreSQL connections, say) can never take it past its limit.
//!
//! Directions and kinds, seen from this node:
//! - `in`: the peer pays this node; `out`: this node pays the peer;
//! - `borrow`: on the line the payee extends the payer (the payer's debt grows: `held`, then
//!   `owed`); `repay`: on the line the payer extends the payee (the payee's debt shrinks:
//!   `repaying`, then off `owed`).

use db::AnyConnection;
use diesel::prelude::*;
use protocol::credit::{hop_split, CreditError, HoldView, Line, LinePart};

use super::{credit_lines, CreditNodeError};

diesel::table! {
    credit_holds (payment, route, line_id, direction) {
        payment -> Text,
        route -> Text,
        line_id -> Text,
        direction -> Text,
        kind -> Text,
        peer -> Text,
        payer -> Text,
        target -> Text,
        amount -> BigInt,
        total -> BigInt,
        condition -> Text,
        expires_ms -> BigInt,
        state -> Text,
        secret -> Nullable<Text>,
        created_ms -> BigInt,
        next_ask_ms -> BigInt,
    }
}

pub const HELD: &str = "held";

/// Times a credit transaction is run again after PostgreSQL chose it as a deadlock's victim.
/// Two payments crossing one node in opposite directions lock its two lines in opposite
/// orders; PostgreSQL aborts one, which is then simply run again (SQLite takes one writer at
/// a time and never deadlocks).
pub const DEADLOCK_RETRIES_MAX: u32 = 4;

/// `body` in one write transaction, run again (at most [`DEADLOCK_RETRIES_MAX`] times) when
/// the database aborted it to break a deadlock.
pub fn write_retrying<T>(
    conn: &mut AnyConnection,
    body: impl Fn(&mut AnyConnection) -> Result<T, CreditNodeError>,
) -> Result<T, CreditNodeError> {
    let mut retries = 0;
    loop {
        match db::write_transaction(conn, &body) {
            Err(e) if retries < DEADLOCK_RETRIES_MAX && is_deadlock(&e) => retries += 1,
            other => return other,
        }
    }
}

fn is_deadlock(e: &CreditNodeError) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        CreditNodeError::Db(db::DbError::Query(Error::DatabaseError(kind, info))) => {
            matches!(kind, DatabaseErrorKind::SerializationFailure)
                || info.message().contains("deadlock detected")
        }
        _ => false,
    }
}
pub const COMMITTED: &str = "committed";
pub const RELEASED: &str = "released";

/// Which side of a hop this node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// One hop's payment as this node holds it.
#[derive(Debug, Clone)]
pub struct HopHold {
    pub payment: String,
    pub route: String,
    pub direction: Direction,
    pub peer: String,
    pub payer: String,
    pub target: String,
    pub total: u64,
    pub condition: String,
    pub expires_ms: u64,
    pub created_ms: u64,
}

fn i64_of(n: u64) -> Result<i64, CreditNodeError> {
    i64::try_from(n).map_err(|_| CreditNodeError::Credit(CreditError::Range("above 2^63")))
}

/// A line between `payer` and `payee` in `currency` as (id, balance), in one of the two
/// roles: the line `creditor` extends `debtor`.
fn line_of(
    conn: &mut AnyConnection,
    creditor: &str,
    debtor: &str,
    currency: &str,
) -> Result<Option<(String, Line)>, CreditNodeError> {
    let row: Option<(String, i64, i64, i64, i64)> = credit_lines::table
        .filter(credit_lines::creditor.eq(creditor))
        .filter(credit_lines::debtor.eq(debtor))
        .filter(credit_lines::currency.eq(currency))
        // Tabs mirror a service's own books (the agent's contracts): never drawn on here.
        .filter(credit_lines::settle_threshold.is_null())
        .select((
            credit_lines::id,
            credit_lines::credit_limit,
            credit_lines::owed,
            credit_lines::held,
            credit_lines::repaying,
        ))
        .order(credit_lines::id)
        .first(conn)
        .optional()?;
    Ok(row.map(|(id, limit, owed, held, repaying)| {
        (
            id,
            Line {
                limit: limit.unsigned_abs(),
                owed: owed.unsigned_abs(),
                held: held.unsigned_abs(),
                repaying: repaying.unsigned_abs(),
            },
        )
    }))
}

/// The two lines a hop from `payer` to `payee` may draw on: (repay, borrow).
pub type HopLines = (Option<(String, Line)>, Option<(String, Line)>);

pub fn hop_lines(
    conn: &mut AnyConnection,
    payer: &str,
    payee: &str,
    currency: &str,
) -> Result<HopLines, CreditNodeError> {
    Ok((
        line_of(conn, payer, payee, currency)?,
        line_of(conn, payee, payer, currency)?,
    ))
}

/// What a hop from `payer` to `payee` can carry now, from this node's copies.
pub fn hop_capacity(lines: &HopLines) -> u64 {
    protocol::credit::capacity(
        lines.1.as_ref().map(|(_, l)| l),
        lines.0.as_ref().map(|(_, l)| l),
    )
}

/// Split `amount` over the hop's lines (repay first): the parts to hold, or `over_limit`.
pub fn split_hop(lines: &HopLines, amount: u64) -> Result<Vec<LinePart>, CreditNodeError> {
    let (repay, borrow) = (lines.0.as_ref(), lines.1.as_ref());
    let Some((repaid, borrowed)) = hop_split(repay.map(|(_, l)| l), borrow.map(|(_, l)| l), amount)
    else {
        let room = hop_capacity(lines);
        return Err(CreditError::OverLimit {
            limit: room,
            owed: 0,
            held: amount,
        }
        .into());
    };
    let mut parts = Vec::with_capacity(2);
    if let (Some((id, _)), true) = (repay, repaid > 0) {
        parts.push(LinePart {
            line: id.clone(),
            amount: repaid,
        });
    }
    if let (Some((id, _)), true) = (borrow, borrowed > 0) {
        parts.push(LinePart {
            line: id.clone(),
            amount: borrowed,
        });
    }
    Ok(parts)
}

/// Hold `parts` for a hop from `payer` to `payee` and record them. Each part's line must join
/// the two in the payment's currency; a part already recorded for this payment and line is a
/// replay (`duplicate_prepare`).
pub fn hold(
    conn: &mut AnyConnection,
    hop: &HopHold,
    payer_of_hop: &str,
    payee_of_hop: &str,
    currency: &str,
    parts: &[LinePart],
) -> Result<(), CreditNodeError> {
    // Every hold of one payment id here names the same condition, total and payer: a hop
    // cannot add a path of its own making to someone else's payment.
    let others: Vec<(String, i64, String)> = credit_holds::table
        .filter(credit_holds::payment.eq(&hop.payment))
        .select((
            credit_holds::condition,
            credit_holds::total,
            credit_holds::payer,
        ))
        .limit(1)
        .load(conn)?;
    if let Some((condition, total, payer)) = others.first() {
        if *condition != hop.condition || total.unsigned_abs() != hop.total || *payer != hop.payer {
            return Err(CreditNodeError::Refused(
                "another payment under this id is under way here".into(),
            ));
        }
    }
    for part in parts {
        let row: Option<(String, String, String)> = credit_lines::table
            .find(&part.line)
            // Tabs mirror a service's own books: never drawn on by payments.
            .filter(credit_lines::settle_threshold.is_null())
            .select((
                credit_lines::creditor,
                credit_lines::debtor,
                credit_lines::currency,
            ))
            .first(conn)
            .optional()?;
        let Some((creditor, debtor, line_currency)) = row else {
            return Err(CreditNodeError::Refused(format!(
                "no line {} here",
                part.line
            )));
        };
        if line_currency != currency {
            return Err(CreditNodeError::Refused(
                "the line is in another currency".into(),
            ));
        }
        let amount = i64_of(part.amount)?;
        let kind = if creditor == payer_of_hop && debtor == payee_of_hop {
            // The payee owes the payer: the payment takes it off the debt.
            let n = diesel::update(
                credit_lines::table
                    .find(&part.line)
                    .filter((credit_lines::owed - credit_lines::repaying).ge(amount)),
            )
            .set(credit_lines::repaying.eq(credit_lines::repaying + amount))
            .execute(conn)?;
            if n != 1 {
                return Err(CreditError::Range("more held against the debt than is owed").into());
            }
            "repay"
        } else if creditor == payee_of_hop && debtor == payer_of_hop {
            let n = diesel::update(credit_lines::table.find(&part.line).filter(
                (credit_lines::owed + credit_lines::held + amount).le(credit_lines::credit_limit),
            ))
            .set(credit_lines::held.eq(credit_lines::held + amount))
            .execute(conn)?;
            if n != 1 {
                let (_, line) = line_of(conn, &creditor, &debtor, currency)?
                    .ok_or_else(|| CreditNodeError::Refused("the line went away".into()))?;
                return Err(CreditError::OverLimit {
                    limit: line.limit,
                    owed: line.owed,
                    held: line.held,
                }
                .into());
            }
            "borrow"
        } else {
            return Err(CreditNodeError::Refused(
                "the line does not join this hop's two parties".into(),
            ));
        };
        // A second prepare of this payment on this path and line is a replay: its row is
        // there already (the primary key refuses it, racing or not).
        let inserted = diesel::insert_into(credit_holds::table)
            .values((
                credit_holds::payment.eq(&hop.payment),
                credit_holds::route.eq(&hop.route),
                credit_holds::line_id.eq(&part.line),
                credit_holds::direction.eq(hop.direction.as_str()),
                credit_holds::kind.eq(kind),
                credit_holds::peer.eq(&hop.peer),
                credit_holds::payer.eq(&hop.payer),
                credit_holds::target.eq(&hop.target),
                credit_holds::amount.eq(amount),
                credit_holds::total.eq(i64_of(hop.total)?),
                credit_holds::condition.eq(&hop.condition),
                credit_holds::expires_ms.eq(i64_of(hop.expires_ms)?),
                credit_holds::state.eq(HELD),
                credit_holds::created_ms.eq(i64_of(hop.created_ms)?),
            ))
            .execute(conn);
        match inserted {
            Ok(_) => {}
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => return Err(CreditNodeError::Duplicate),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Which holds of a payment an operation takes: a direction, and optionally one route and
/// one peer.
#[derive(Debug, Clone, Copy)]
pub struct Select<'a> {
    pub payment: &'a str,
    pub direction: Direction,
    pub route: Option<&'a str>,
    pub peer: Option<&'a str>,
}

/// A hold still held: (route, line, kind, amount, condition).
pub type HeldRow = (String, String, String, i64, String);
/// A lapsed hold: (payment, route, peer, expires_ms).
pub type LapsedRow = (String, String, String, i64);

/// Holds still held that `sel` takes.
pub fn held(conn: &mut AnyConnection, sel: Select<'_>) -> Result<Vec<HeldRow>, CreditNodeError> {
    let mut q = credit_holds::table
        .filter(credit_holds::payment.eq(sel.payment))
        .filter(credit_holds::direction.eq(sel.direction.as_str()))
        .filter(credit_holds::state.eq(HELD))
        .select((
            credit_holds::route,
            credit_holds::line_id,
            credit_holds::kind,
            credit_holds::amount,
            credit_holds::condition,
        ))
        .into_boxed();
    if let Some(r) = sel.route {
        q = q.filter(credit_holds::route.eq(r.to_owned()));
    }
    if let Some(p) = sel.peer {
        q = q.filter(credit_holds::peer.eq(p.to_owned()));
    }
    Ok(q.load(conn)?)
}

/// Commit (with `secret`) or release the holds still held that `sel` takes. Answers the
/// routes settled and how much moved.
pub fn settle(
    conn: &mut AnyConnection,
    sel: Select<'_>,
    secret: Option<&str>,
) -> Result<(Vec<String>, u64), CreditNodeError> {
    let now = i64_of(crate::now_ms())?;
    let mut moved = 0u64;
    let mut routes: Vec<String> = Vec::new();
    let payment = sel.payment;
    for (route, line, kind, amount, condition) in held(conn, sel)? {
        if let Some(secret) = secret {
            protocol::credit::check_secret(secret, &condition)?;
        }
        // The hold's state flips first, conditionally: of two transactions settling it at
        // once (an answer and a fulfil; PostgreSQL reads without locks), one moves the line.
        // An `in` hold commits only before it lapses (DESIGN 12): the hop before this node
        // may have released its side by then. A lapsed one stays held for the sweep.
        let unlapsed = if secret.is_some() && sel.direction == Direction::In {
            now
        } else {
            i64::MIN
        };
        let flipped = diesel::update(
            credit_holds::table
                .find((payment, &route, &line, sel.direction.as_str()))
                .filter(credit_holds::state.eq(HELD))
                .filter(credit_holds::expires_ms.ge(unlapsed)),
        )
        .set((
            credit_holds::state.eq(if secret.is_some() {
                COMMITTED
            } else {
                RELEASED
            }),
            credit_holds::secret.eq(secret),
        ))
        .execute(conn)?;
        if flipped != 1 {
            continue;
        }
        let target = credit_lines::table.find(&line);
        // Each UPDATE's WHERE keeps the hold's own bound: a hold is taken back at most once
        // (the state flips below in the same transaction).
        let n = match (kind.as_str(), secret.is_some()) {
            ("borrow", true) => diesel::update(target.filter(credit_lines::held.ge(amount)))
                .set((
                    credit_lines::held.eq(credit_lines::held - amount),
                    credit_lines::owed.eq(credit_lines::owed + amount),
                    credit_lines::updated_ms.eq(now),
                ))
                .execute(conn)?,
            ("borrow", false) => diesel::update(target.filter(credit_lines::held.ge(amount)))
                .set((
                    credit_lines::held.eq(credit_lines::held - amount),
                    credit_lines::updated_ms.eq(now),
                ))
                .execute(conn)?,
            (_, true) => diesel::update(target.filter(credit_lines::repaying.ge(amount)))
                .set((
                    credit_lines::repaying.eq(credit_lines::repaying - amount),
                    credit_lines::owed.eq(credit_lines::owed - amount),
                    credit_lines::updated_ms.eq(now),
                ))
                .execute(conn)?,
            (_, false) => diesel::update(target.filter(credit_lines::repaying.ge(amount)))
                .set((
                    credit_lines::repaying.eq(credit_lines::repaying - amount),
                    credit_lines::updated_ms.eq(now),
                ))
                .execute(conn)?,
        };
        if n != 1 {
            // The line's columns no longer cover the hold: the books were changed behind
            // the node's back. Refuse rather than drive a balance negative.
            return Err(CreditNodeError::Refused(format!(
                "line {line} no longer covers the hold of payment {payment}"
            )));
        }
        moved = moved.saturating_add(amount.unsigned_abs());
        if !routes.contains(&route) {
            routes.push(route);
        }
    }
    Ok((routes, moved))
}

/// The secret of a committed hold of `route` of `payment` in `direction`, if there is one.
pub fn committed_secret(
    conn: &mut AnyConnection,
    payment: &str,
    route: &str,
    direction: Direction,
) -> Result<Option<String>, CreditNodeError> {
    let secret: Option<Option<String>> = credit_holds::table
        .filter(credit_holds::payment.eq(payment))
        .filter(credit_holds::route.eq(route))
        .filter(credit_holds::direction.eq(direction.as_str()))
        .filter(credit_holds::state.eq(COMMITTED))
        .select(credit_holds::secret)
        .first(conn)
        .optional()?;
    Ok(secret.flatten())
}

/// What `payment` holds `in` at this node, held or committed (a target's running sum).
pub fn in_sum(conn: &mut AnyConnection, payment: &str) -> Result<u64, CreditNodeError> {
    let amounts: Vec<i64> = credit_holds::table
        .filter(credit_holds::payment.eq(payment))
        .filter(credit_holds::direction.eq("in"))
        .filter(credit_holds::state.ne(RELEASED))
        .select(credit_holds::amount)
        .load(conn)?;
    Ok(amounts
        .into_iter()
        .fold(0u64, |a, n| a.saturating_add(n.unsigned_abs())))
}

/// Every hold of `payment` here, on lines with `peer` when given, and the secret if known.
pub fn status(
    conn: &mut AnyConnection,
    payment: &str,
    peer: Option<&str>,
) -> Result<(Vec<HoldView>, Option<String>), CreditNodeError> {
    type R = (
        String,
        String,
        String,
        String,
        String,
        i64,
        i64,
        String,
        Option<String>,
    );
    let mut q = credit_holds::table
        .filter(credit_holds::payment.eq(payment))
        .select((
            credit_holds::route,
            credit_holds::line_id,
            credit_holds::direction,
            credit_holds::kind,
            credit_holds::peer,
            credit_holds::amount,
            credit_holds::expires_ms,
            credit_holds::state,
            credit_holds::secret,
        ))
        .order((
            credit_holds::route,
            credit_holds::line_id,
            credit_holds::direction,
        ))
        .into_boxed();
    if let Some(p) = peer {
        q = q.filter(credit_holds::peer.eq(p.to_owned()));
    }
    let rows: Vec<R> = q.load(conn)?;
    let secret = rows.iter().find_map(|r| r.8.clone());
    let holds = rows
        .into_iter()
        .map(
            |(route, line, direction, kind, peer, amount, expires, state, _)| HoldView {
                route,
                line,
                direction,
                kind,
                peer,
                amount: amount.unsigned_abs(),
                expires_at: expires.unsigned_abs(),
                state,
            },
        )
        .collect();
    Ok((holds, secret))
}

/// Holds still held in `direction` whose expiry is at or before `before_ms`, due to be asked
/// about at `now_ms` (`next_ask_ms`), with peers not in `skip`: the longest due first, at most
/// `limit`.
pub fn lapsed(
    conn: &mut AnyConnection,
    direction: Direction,
    before_ms: u64,
    now_ms: u64,
    skip: &[String],
    limit: i64,
) -> Result<Vec<LapsedRow>, CreditNodeError> {
    Ok(credit_holds::table
        .filter(credit_holds::state.eq(HELD))
        .filter(credit_holds::direction.eq(direction.as_str()))
        .filter(credit_holds::expires_ms.le(i64_of(before_ms)?))
        .filter(credit_holds::next_ask_ms.le(i64_of(now_ms)?))
        .filter(credit_holds::peer.ne_all(skip))
        .select((
            credit_holds::payment,
            credit_holds::route,
            credit_holds::peer,
            credit_holds::expires_ms,
        ))
        .distinct()
        .order((credit_holds::expires_ms, credit_holds::payment))
        .limit(limit)
        .load(conn)?)
}

/// Ask about `route` of `payment` (its `out` holds) again no earlier than `next_ms`.
pub fn ask_later(
    conn: &mut AnyConnection,
    payment: &str,
    route: &str,
    next_ms: u64,
) -> Result<(), CreditNodeError> {
    diesel::update(
        credit_holds::table
            .filter(credit_holds::payment.eq(payment))
            .filter(credit_holds::route.eq(route))
            .filter(credit_holds::direction.eq(Direction::Out.as_str())),
    )
    .set(credit_holds::next_ask_ms.eq(i64_of(next_ms)?))
    .execute(conn)?;
    Ok(())
}

/// Delete settled holds (committed or released) that lapsed before `before_ms`: answers how
/// many went.
pub fn forget_settled(conn: &mut AnyConnection, before_ms: u64) -> Result<usize, CreditNodeError> {
    Ok(diesel::delete(
        credit_holds::table
            .filter(credit_holds::state.eq_any([COMMITTED, RELEASED]))
            .filter(credit_holds::expires_ms.lt(i64_of(before_ms)?)),
    )
    .execute(conn)?)
}
