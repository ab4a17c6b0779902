//! The running tab as a credit line (DESIGN 12, seed 001; issue 17): each buyer that owes
//! the agent on its contracts in one currency has a line there, the agent the creditor, with
//! `tab_limit` as its limit and `tab_threshold` as its settlement threshold.
//!
//! - The contracts stay the books: a charge draws on a contract as before, and in the same
//!   transaction the line's `owed` is brought to the buyer's debt over its contracts in that
//!   currency ([`mirror`]), a new `seq` signed by the agent. The buyer's signed charged
//!   request is its half of that update; the answer carries the agent's as
//!   `LCP-Line: <id>;<seq>;<owed>;<signature>` ([`Agent::tab_line_header`]).
//! - A settlement is an LCP transfer to the agent with `transaction_id` = the line id: the
//!   deposit pays the buyer's indebted contracts in that currency, oldest first (what is left
//!   goes to the newest), and the line shows the lower balance, signed by the agent, which the
//!   buyer countersigns (`POST /v1/credit/lines`). A deposit to a contract, as before, lowers
//!   the line too.
//! - Payments over credit paths never draw on a tab (`node::credit::holds`).

use super::*;
use node::credit::credit_lines;
use protocol::credit::LineState;

/// Whose tab a charge moves, and with what key the agent signs the new state.
pub(super) struct TabRef {
    pub key: Arc<KeyPair>,
    pub buyer: String,
    pub issuer: String,
    pub limit: u64,
    pub threshold: u64,
}

/// Bring `tab`'s line to the buyer's debt over its contracts in that currency: opened when
/// it first owes, a new `seq` signed by the agent whenever the debt moves. `settled`: the
/// move is a settlement (stamped `settled_ms` when it lowers the balance).
///
/// Call it after the transaction's own changes to the buyer's contracts. On PostgreSQL,
/// charges (each under its own contract's lock) and deposits of one buyer run in separate
/// transactions at once: the line's row is locked before the debt is read, so they take
/// turns, and each reads the debt with every earlier turn's changes committed. The last to
/// commit writes the debt as all of them left it. Two racing to open the line meet at the
/// unique index on tabs (`credit_lines_one_tab`): the loser takes the winner's row.
pub(super) fn mirror(conn: &mut AnyConnection, tab: &TabRef, settled: bool) -> Result<(), Error> {
    let me = tab.key.entity().to_string();
    let find = |conn: &mut AnyConnection| -> Result<Option<String>, Error> {
        Ok(credit_lines::table
            .filter(credit_lines::creditor.eq(&me))
            .filter(credit_lines::debtor.eq(&tab.buyer))
            .filter(credit_lines::currency.eq(&tab.issuer))
            .filter(credit_lines::settle_threshold.is_not_null())
            .select(credit_lines::id)
            .first(conn)
            .optional()?)
    };
    let Some(id) = find(conn)? else {
        let opened = open_line(conn, tab)?;
        if opened {
            return Ok(());
        }
        // Another transaction opened it meanwhile: bring its row to the debt as for any move.
        return match find(conn)? {
            Some(id) => move_line(conn, tab, &id, settled),
            None => Ok(()),
        };
    };
    move_line(conn, tab, &id, settled)
}

/// The buyer's debt over its contracts in the tab's currency, as this transaction sees them.
fn debt_of(conn: &mut AnyConnection, tab: &TabRef) -> Result<u64, Error> {
    let rows: Vec<ContractRow> = contracts::table
        .filter(contracts::buyer.eq(&tab.buyer))
        .filter(contracts::issuer.eq(&tab.issuer))
        .load(conn)?;
    Ok(rows
        .iter()
        .map(ContractRow::debt)
        .fold(0u64, u64::saturating_add))
}

/// Open the tab at the buyer's debt, when it owes; `false` when another transaction's line
/// is there already (the insert, in a savepoint, left nothing behind).
fn open_line(conn: &mut AnyConnection, tab: &TabRef) -> Result<bool, Error> {
    let debt = debt_of(conn, tab)?;
    if debt == 0 {
        return Ok(true);
    }
    let id = uuid::Uuid::new_v4().to_string();
    let values = signed_state(tab, &id, debt, 1)?;
    let opened = db::insert_unless_taken(conn, |conn| {
        diesel::insert_into(credit_lines::table)
            .values((
                credit_lines::id.eq(&id),
                credit_lines::creditor.eq(tab.key.entity().as_str()),
                credit_lines::debtor.eq(&tab.buyer),
                credit_lines::currency.eq(&tab.issuer),
                credit_lines::credit_limit.eq(values.limit),
                credit_lines::owed.eq(values.owed),
                credit_lines::held.eq(0i64),
                credit_lines::seq.eq(values.seq),
                credit_lines::creditor_signature.eq(&values.signature),
                credit_lines::debtor_signature.eq(""),
                credit_lines::updated_ms.eq(values.now),
                credit_lines::settle_threshold.eq(Some(values.threshold)),
            ))
            .execute(conn)
    })?;
    Ok(opened)
}

/// Bring the open tab `id` to the buyer's debt, its row locked first (see [`mirror`]).
fn move_line(conn: &mut AnyConnection, tab: &TabRef, id: &str, settled: bool) -> Result<(), Error> {
    // A write that changes nothing takes the row's lock (PostgreSQL); SQLite has one writer.
    diesel::update(credit_lines::table.find(id))
        .set(credit_lines::seq.eq(credit_lines::seq))
        .execute(conn)?;
    let (owed, seq): (i64, i64) = credit_lines::table
        .find(id)
        .select((credit_lines::owed, credit_lines::seq))
        .first(conn)?;
    let debt = debt_of(conn, tab)?;
    let was = owed.unsigned_abs();
    if was == debt {
        return Ok(());
    }
    let values = signed_state(tab, id, debt, seq.unsigned_abs() + 1)?;
    let settled_now = settled && debt < was;
    diesel::update(credit_lines::table.find(id))
        .set((
            credit_lines::credit_limit.eq(values.limit),
            credit_lines::owed.eq(values.owed),
            credit_lines::seq.eq(values.seq),
            credit_lines::creditor_signature.eq(&values.signature),
            // The buyer countersigns a settled balance; charges are signed requests.
            credit_lines::debtor_signature.eq(""),
            credit_lines::updated_ms.eq(values.now),
            credit_lines::settle_threshold.eq(Some(values.threshold)),
        ))
        .execute(conn)?;
    if settled_now {
        diesel::update(credit_lines::table.find(id))
            .set(credit_lines::settled_ms.eq(Some(values.now)))
            .execute(conn)?;
    }
    Ok(())
}

/// A tab state's columns, as stored.
struct StateValues {
    limit: i64,
    owed: i64,
    seq: i64,
    threshold: i64,
    now: i64,
    signature: String,
}

/// The tab `id` owing `debt` at `seq`, signed by the agent.
fn signed_state(tab: &TabRef, id: &str, debt: u64, seq: u64) -> Result<StateValues, Error> {
    // A limit lowered in the config below what is owed still leaves a valid state.
    let limit = tab.limit.max(debt);
    let state = LineState {
        id: id.to_owned(),
        creditor: tab.key.entity().to_string(),
        debtor: tab.buyer.clone(),
        currency: tab.issuer.clone(),
        limit,
        owed: debt,
        seq,
    };
    let values = StateValues {
        limit: to_i64(limit)?,
        owed: to_i64(debt)?,
        seq: to_i64(seq)?,
        threshold: to_i64(tab.threshold)?,
        now: to_i64(node::now_ms())?,
        signature: tab.key.sign_b64(state.signing_string().as_bytes()),
    };
    Ok(values)
}

/// A deposit of `amount` in `issuer` with `transaction_id` = a tab line's id: pay the
/// debtor's indebted contracts in that currency, oldest first, the rest to its newest
/// contract. Answers the tab to [`mirror`] (after the page's other contract changes), or
/// `None` when no such tab line is here; what the payments earned goes to `noted`, for the
/// history (noted last in the transaction).
pub(super) fn settle_deposit(
    conn: &mut AnyConnection,
    (key, config): (&Arc<KeyPair>, &AgentConfig),
    line_id: &str,
    issuer: &str,
    amount: i64,
    noted: &mut Vec<super::usage::Noted>,
) -> Result<Option<TabRef>, Error> {
    let line: Option<String> = credit_lines::table
        .find(line_id)
        .filter(credit_lines::creditor.eq(key.entity().as_str()))
        .filter(credit_lines::currency.eq(issuer))
        .filter(credit_lines::settle_threshold.is_not_null())
        .select(credit_lines::debtor)
        .first(conn)
        .optional()?;
    let Some(buyer) = line else {
        return Ok(None);
    };
    let rows: Vec<ContractRow> = contracts::table
        .filter(contracts::buyer.eq(&buyer))
        .filter(contracts::issuer.eq(issuer))
        .order((contracts::start_s, contracts::id))
        .load(conn)?;
    let mut left = amount.max(0);
    for row in rows.iter().filter(|r| r.debt() > 0) {
        let pay = left.min(to_i64(row.debt())?);
        if pay == 0 {
            break;
        }
        noted.extend(super::usage::credit_paid(conn, &row.id, pay, false)?);
        left -= pay;
    }
    if let (true, Some(newest)) = (left > 0, rows.last()) {
        noted.extend(super::usage::credit_paid(conn, &newest.id, left, false)?);
    }
    Ok(Some(TabRef::of(key, config, buyer, issuer)))
}

/// The tab of `buyer` in `issuer`, each once, as a deposit page collects them.
pub(super) fn note_tab(tabs: &mut Vec<TabRef>, tab: TabRef) {
    if !tabs
        .iter()
        .any(|t| t.buyer == tab.buyer && t.issuer == tab.issuer)
    {
        tabs.push(tab);
    }
}

impl TabRef {
    pub(super) fn of(
        key: &Arc<KeyPair>,
        config: &AgentConfig,
        buyer: String,
        issuer: &str,
    ) -> Self {
        TabRef {
            key: key.clone(),
            buyer,
            issuer: issuer.to_owned(),
            limit: config.tab_limit,
            threshold: config.tab_threshold,
        }
    }
}

impl Agent {
    /// Whose tab a charge on `row` moves, when tabs are on.
    pub(super) fn tab_of(&self, row: &ContractRow) -> Option<TabRef> {
        (self.config.tab_limit > 0)
            .then(|| TabRef::of(&self.key, &self.config, row.buyer.clone(), &row.issuer))
    }

    /// `LCP-Line: <id>;<seq>;<owed>;<signature>`: the agent's half of the latest state of
    /// `buyer`'s tab (the most recently changed, with several currencies), when tabs are on.
    pub async fn tab_line_header(&self, buyer: &str) -> Option<String> {
        if self.config.tab_limit == 0 {
            return None;
        }
        let (me, buyer) = (self.key.entity().to_string(), buyer.to_owned());
        self.db
            .run(move |conn| node::credit::tab_half(conn, &me, &buyer, None).map_err(Error::from))
            .await
            .ok()
            .flatten()
            .map(|half| half.header())
    }
}
