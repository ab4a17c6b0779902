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
pub(super) fn mirror(conn: &mut AnyConnection, tab: &TabRef, settled: bool) -> Result<(), Error> {
    let rows: Vec<ContractRow> = contracts::table
        .filter(contracts::buyer.eq(&tab.buyer))
        .filter(contracts::issuer.eq(&tab.issuer))
        .load(conn)?;
    let debt = rows
        .iter()
        .map(ContractRow::debt)
        .fold(0u64, u64::saturating_add);
    let me = tab.key.entity().to_string();
    let held: Option<(String, i64, i64)> = credit_lines::table
        .filter(credit_lines::creditor.eq(&me))
        .filter(credit_lines::debtor.eq(&tab.buyer))
        .filter(credit_lines::currency.eq(&tab.issuer))
        .filter(credit_lines::settle_threshold.is_not_null())
        .select((credit_lines::id, credit_lines::owed, credit_lines::seq))
        .first(conn)
        .optional()?;
    // A limit lowered in the config below what is owed still leaves a valid state.
    let limit = tab.limit.max(debt);
    let (id, seq, before) = match held {
        None if debt == 0 => return Ok(()),
        None => (uuid::Uuid::new_v4().to_string(), 1u64, None),
        Some((_, owed, _)) if owed.unsigned_abs() == debt => return Ok(()),
        Some((id, owed, seq)) => (id, seq.unsigned_abs() + 1, Some(owed.unsigned_abs())),
    };
    let state = LineState {
        id: id.clone(),
        creditor: me,
        debtor: tab.buyer.clone(),
        currency: tab.issuer.clone(),
        limit,
        owed: debt,
        seq,
    };
    let signature = tab.key.sign_b64(state.signing_string().as_bytes());
    let now = to_i64(node::now_ms())?;
    let (limit, owed, seq, threshold) = (
        to_i64(limit)?,
        to_i64(debt)?,
        to_i64(seq)?,
        to_i64(tab.threshold)?,
    );
    match before {
        None => {
            diesel::insert_into(credit_lines::table)
                .values((
                    credit_lines::id.eq(&id),
                    credit_lines::creditor.eq(&state.creditor),
                    credit_lines::debtor.eq(&state.debtor),
                    credit_lines::currency.eq(&state.currency),
                    credit_lines::credit_limit.eq(limit),
                    credit_lines::owed.eq(owed),
                    credit_lines::held.eq(0i64),
                    credit_lines::seq.eq(seq),
                    credit_lines::creditor_signature.eq(&signature),
                    credit_lines::debtor_signature.eq(""),
                    credit_lines::updated_ms.eq(now),
                    credit_lines::settle_threshold.eq(Some(threshold)),
                ))
                .execute(conn)?;
        }
        Some(was) => {
            let settled_now = settled && debt < was;
            diesel::update(credit_lines::table.find(&id))
                .set((
                    credit_lines::credit_limit.eq(limit),
                    credit_lines::owed.eq(owed),
                    credit_lines::seq.eq(seq),
                    credit_lines::creditor_signature.eq(&signature),
                    // The buyer countersigns a settled balance; charges are signed requests.
                    credit_lines::debtor_signature.eq(""),
                    credit_lines::updated_ms.eq(now),
                    credit_lines::settle_threshold.eq(Some(threshold)),
                ))
                .execute(conn)?;
            if settled_now {
                diesel::update(credit_lines::table.find(&id))
                    .set(credit_lines::settled_ms.eq(Some(now)))
                    .execute(conn)?;
            }
        }
    }
    Ok(())
}

/// A deposit of `amount` in `issuer` with `transaction_id` = a tab line's id: pay the
/// debtor's indebted contracts in that currency, oldest first, the rest to its newest
/// contract, and mirror the lower balance. `false` when no such tab line is here.
pub(super) fn settle_deposit(
    conn: &mut AnyConnection,
    key: &Arc<KeyPair>,
    config: &AgentConfig,
    line_id: &str,
    issuer: &str,
    amount: i64,
) -> Result<bool, Error> {
    let line: Option<String> = credit_lines::table
        .find(line_id)
        .filter(credit_lines::creditor.eq(key.entity().as_str()))
        .filter(credit_lines::currency.eq(issuer))
        .filter(credit_lines::settle_threshold.is_not_null())
        .select(credit_lines::debtor)
        .first(conn)
        .optional()?;
    let Some(buyer) = line else {
        return Ok(false);
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
        diesel::update(contracts::table.find(&row.id))
            .set(contracts::paid.eq(contracts::paid + pay))
            .execute(conn)?;
        left -= pay;
    }
    if let (true, Some(newest)) = (left > 0, rows.last()) {
        diesel::update(contracts::table.find(&newest.id))
            .set(contracts::paid.eq(contracts::paid + left))
            .execute(conn)?;
    }
    let tab = TabRef {
        key: key.clone(),
        buyer,
        issuer: issuer.to_owned(),
        limit: config.tab_limit,
        threshold: config.tab_threshold,
    };
    mirror(conn, &tab, true)?;
    Ok(true)
}

impl Agent {
    /// Whose tab a charge on `row` moves, when tabs are on.
    pub(super) fn tab_of(&self, row: &ContractRow) -> Option<TabRef> {
        (self.config.tab_limit > 0).then(|| TabRef {
            key: self.key.clone(),
            buyer: row.buyer.clone(),
            issuer: row.issuer.clone(),
            limit: self.config.tab_limit,
            threshold: self.config.tab_threshold,
        })
    }

    /// `LCP-Line: <id>;<seq>;<owed>;<signature>`: the agent's half of the latest state of
    /// `buyer`'s tab (the most recently changed, with several currencies), when tabs are on.
    pub async fn tab_line_header(&self, buyer: &str) -> Option<String> {
        if self.config.tab_limit == 0 {
            return None;
        }
        let (me, buyer) = (self.key.entity().to_string(), buyer.to_owned());
        let row: Option<(String, i64, i64, String)> = self
            .db
            .run(move |conn| {
                credit_lines::table
                    .filter(credit_lines::creditor.eq(&me))
                    .filter(credit_lines::debtor.eq(&buyer))
                    .filter(credit_lines::settle_threshold.is_not_null())
                    .order(credit_lines::updated_ms.desc())
                    .select((
                        credit_lines::id,
                        credit_lines::seq,
                        credit_lines::owed,
                        credit_lines::creditor_signature,
                    ))
                    .first(conn)
                    .optional()
                    .map_err(Error::from)
            })
            .await
            .ok()
            .flatten();
        row.map(|(id, seq, owed, sig)| format!("{id};{seq};{owed};{sig}"))
    }
}
