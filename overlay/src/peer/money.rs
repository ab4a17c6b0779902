//! Money between peers (seed 001 section 2.1, DESIGN 12 and 13).
//!
//! As the seller, a peer charges a buyer's fee or price:
//! 1. from what the buyer paid ahead here (an LCP transfer to this peer: `peer_credit`);
//! 2. else on the buyer's tab, when the buyer is a primary neighbour: a credit line with this
//!    peer the creditor, `tab_limit` its limit and `tab_threshold` its settlement threshold,
//!    a new `seq` signed by this peer with each charge (the buyer's signed request is its
//!    half; the answer carries `LCP-Line`);
//! 3. else `402 payment_required` with `amount_due`.
//!
//! A refund goes back the way the money came: down the tab (what the tab no longer owes goes
//! to paid-ahead credit), or to paid-ahead credit.
//!
//! As the buyer, a peer keeps each neighbour's signed tab state in its own `credit_lines`
//! (checked against the neighbour's signature) and, once it owes the neighbour's threshold,
//! pays what it owes through LCP with `transaction_id` = the line id. A neighbour without a
//! tab for it is paid ahead, by the `402`'s `amount_due`, like any buyer.

use std::sync::Arc;
use std::time::Duration;

use db::AnyConnection;
use diesel::prelude::*;
use node::client::ClientError;
use node::credit::credit_lines;
use protocol::credit::LineHalf;
use protocol::credit::LineState;
use protocol::ledger::DepositsPage;

use super::{lock, neighbors, to_i64, Peer};
use crate::error::Error;
use crate::schema::{peer_credit, peer_cursors, peer_neighbors};

/// Highest `seq` a neighbour's tab state may carry (room to grow for a very long time).
pub const SEQ_MAX: u64 = 1 << 53;

/// How a charge was paid, as stored with the solicitation or bid.
pub const PAID_OWN: &str = "own";
pub const PAID_TAB: &str = "tab";
pub const PAID_CREDIT: &str = "credit";

/// Longest a settlement is trusted to reach the creditor before the tab may be paid again
/// (what is paid twice is not lost: it becomes paid-ahead credit there).
pub const SETTLE_WAIT_MS: u64 = 30_000;
/// The least a peer pays ahead to a neighbour without a tab for it (fewer transfers).
pub const PAY_AHEAD_MIN: u64 = 20;
/// Deposits read in one long poll, at most this long.
pub const DEPOSITS_WAIT_MS: u64 = 3_000;
/// Pause after a failed deposit poll, doubling up to the maximum.
pub const DEPOSITS_BACKOFF_MS_MIN: u64 = 200;
pub const DEPOSITS_BACKOFF_MS_MAX: u64 = 10_000;

/// How a neighbour's `402` was answered.
pub(crate) enum Paid {
    /// Paywords: the headers to send with the next attempt.
    Words(Vec<(&'static str, String)>),
    /// An LCP transfer ahead: the next attempts wait for the neighbour to see it.
    Transferred,
}

/// Words in each chain a peer buys to pay neighbours without a tab for it (one minor unit
/// each).
pub const PEER_CHAIN_WORDS: u64 = 1_000;

/// Who is charged, and for what, in one currency.
pub struct Charge<'a> {
    pub buyer: &'a str,
    pub currency: &'a str,
    pub amount: u64,
}

/// The paywords a request carried (`LCP-Payword`, `LCP-Touchstone`), if any.
pub type Words = node::paywords::PaywordHeaders;

impl Peer {
    /// Charge `c` inside the caller's transaction; answers how it was paid (see the module
    /// documentation for the order).
    pub(crate) fn charge(
        &self,
        conn: &mut AnyConnection,
        c: &Charge<'_>,
        words: &Words,
    ) -> Result<&'static str, Error> {
        if c.buyer == self.me() {
            return Ok(PAID_OWN);
        }
        // Paywords first: verified here by hashing, their value paid-ahead credit at once
        // (in this transaction), then drawn like any other.
        if let Some(header) = &words.payword {
            let payer = protocol::EntityId::parse(c.buyer)
                .map_err(|_| Error::InvalidRequest("buyer".into()))?;
            let issuer = protocol::EntityId::parse(c.currency)
                .map_err(|_| Error::InvalidRequest("currency".into()))?;
            let accepted = node::paywords::accept(
                conn,
                node::now_s(),
                &issuer,
                &payer,
                self.key.entity(),
                header,
                words.touchstone.as_deref(),
                node::paywords::UNREDEEMED_PER_PAYER_MAX_DEFAULT,
            )??;
            self.add_credit(conn, c.buyer, c.currency, accepted.value)?;
        }
        if c.amount == 0 {
            return Ok(PAID_CREDIT);
        }
        let amount = to_i64(c.amount)?;
        let drawn = diesel::update(
            peer_credit::table
                .filter(peer_credit::buyer.eq(c.buyer))
                .filter(peer_credit::currency.eq(c.currency))
                .filter(peer_credit::balance.ge(amount)),
        )
        .set(peer_credit::balance.eq(peer_credit::balance - amount))
        .execute(conn)?;
        if drawn == 1 {
            return Ok(PAID_CREDIT);
        }
        let ahead: i64 = peer_credit::table
            .find((c.buyer, c.currency))
            .select(peer_credit::balance)
            .first(conn)
            .optional()?
            .unwrap_or(0);
        let primary = peer_neighbors::table
            .find(c.buyer)
            .filter(peer_neighbors::kind.eq(neighbors::PRIMARY))
            .count()
            .get_result::<i64>(conn)?
            == 1;
        if primary && self.options.tab_limit > 0 {
            let owed = self.tab_owed(conn, c.buyer, c.currency)?;
            let after = owed
                .checked_add(c.amount)
                .ok_or(Error::InvalidRequest("amount".into()))?;
            if after <= self.options.tab_limit {
                self.move_tab(conn, c.buyer, c.currency, after, false)?;
                return Ok(PAID_TAB);
            }
            // The tab is full: paying ahead (what is due) or settling the tab both work.
        }
        Err(self.payment_required(c, c.amount - ahead.max(0).unsigned_abs().min(c.amount)))
    }

    fn payment_required(&self, c: &Charge<'_>, amount_due: u64) -> Error {
        Error::PaymentRequired {
            amount_due: amount_due.max(1),
            pay_to: self.me(),
            issuer_url: self
                .currency(c.currency)
                .map(|cur| cur.offer.issuer_url.clone())
                .unwrap_or_default(),
        }
    }

    /// Give back `amount` charged to `buyer` by `paid_by`, inside the caller's transaction.
    pub(crate) fn refund(
        &self,
        conn: &mut AnyConnection,
        c: &Charge<'_>,
        paid_by: &str,
    ) -> Result<(), Error> {
        let mut to_credit = c.amount;
        if paid_by == PAID_OWN || c.amount == 0 {
            return Ok(());
        }
        if paid_by == PAID_TAB {
            let owed = self.tab_owed(conn, c.buyer, c.currency)?;
            let lower = owed.min(c.amount);
            if lower > 0 {
                self.move_tab(conn, c.buyer, c.currency, owed - lower, false)?;
            }
            to_credit -= lower;
        }
        self.add_credit(conn, c.buyer, c.currency, to_credit)
    }

    fn add_credit(
        &self,
        conn: &mut AnyConnection,
        buyer: &str,
        currency: &str,
        amount: u64,
    ) -> Result<(), Error> {
        if amount == 0 {
            return Ok(());
        }
        let amount = to_i64(amount)?;
        let added = diesel::update(peer_credit::table.find((buyer, currency)))
            .set(peer_credit::balance.eq(peer_credit::balance + amount))
            .execute(conn)?;
        if added == 0 {
            diesel::insert_into(peer_credit::table)
                .values((
                    peer_credit::buyer.eq(buyer),
                    peer_credit::currency.eq(currency),
                    peer_credit::balance.eq(amount),
                ))
                .execute(conn)?;
        }
        Ok(())
    }

    /// The id and row of `buyer`'s tab here in `currency`, locked for this transaction.
    fn tab_row(
        &self,
        conn: &mut AnyConnection,
        buyer: &str,
        currency: &str,
    ) -> Result<Option<(String, i64, i64)>, Error> {
        let me = self.me();
        let id: Option<String> = credit_lines::table
            .filter(credit_lines::creditor.eq(&me))
            .filter(credit_lines::debtor.eq(buyer))
            .filter(credit_lines::currency.eq(currency))
            .filter(credit_lines::settle_threshold.is_not_null())
            .select(credit_lines::id)
            .first(conn)
            .optional()?;
        let Some(id) = id else { return Ok(None) };
        // A write that changes nothing takes the row's lock (PostgreSQL); SQLite has one writer.
        diesel::update(credit_lines::table.find(&id))
            .set(credit_lines::seq.eq(credit_lines::seq))
            .execute(conn)?;
        let (owed, seq): (i64, i64) = credit_lines::table
            .find(&id)
            .select((credit_lines::owed, credit_lines::seq))
            .first(conn)?;
        Ok(Some((id, owed, seq)))
    }

    fn tab_owed(
        &self,
        conn: &mut AnyConnection,
        buyer: &str,
        currency: &str,
    ) -> Result<u64, Error> {
        Ok(self
            .tab_row(conn, buyer, currency)?
            .map(|(_, owed, _)| owed.unsigned_abs())
            .unwrap_or(0))
    }

    /// Bring `buyer`'s tab to `owed` (opened when missing), a new `seq` signed by this peer.
    fn move_tab(
        &self,
        conn: &mut AnyConnection,
        buyer: &str,
        currency: &str,
        owed: u64,
        settled: bool,
    ) -> Result<(), Error> {
        let now = to_i64(node::now_ms())?;
        let row = self.tab_row(conn, buyer, currency)?;
        let (id, seq) = match &row {
            Some((id, _, seq)) => (id.clone(), seq.unsigned_abs() + 1),
            None => (uuid::Uuid::new_v4().to_string(), 1),
        };
        let state = LineState {
            id: id.clone(),
            creditor: self.me(),
            debtor: buyer.to_owned(),
            currency: currency.to_owned(),
            limit: self.options.tab_limit.max(owed),
            owed,
            seq,
        };
        let signature = self.key.sign_b64(state.signing_string().as_bytes());
        let (limit, owed, seq) = (to_i64(state.limit)?, to_i64(owed)?, to_i64(seq)?);
        let threshold = to_i64(self.options.tab_threshold)?;
        if row.is_none() {
            diesel::insert_into(credit_lines::table)
                .values((
                    credit_lines::id.eq(&id),
                    credit_lines::creditor.eq(self.me()),
                    credit_lines::debtor.eq(buyer),
                    credit_lines::currency.eq(currency),
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
            return Ok(());
        }
        diesel::update(credit_lines::table.find(&id))
            .set((
                credit_lines::credit_limit.eq(limit),
                credit_lines::owed.eq(owed),
                credit_lines::seq.eq(seq),
                credit_lines::creditor_signature.eq(&signature),
                credit_lines::debtor_signature.eq(""),
                credit_lines::updated_ms.eq(now),
            ))
            .execute(conn)?;
        if settled {
            diesel::update(credit_lines::table.find(&id))
                .set(credit_lines::settled_ms.eq(Some(now)))
                .execute(conn)?;
        }
        Ok(())
    }

    /// `LCP-Line` for `buyer`'s tab here in `currency`, when it has one.
    pub async fn tab_header(&self, buyer: &str) -> Option<String> {
        let (me, buyer) = (self.me(), buyer.to_owned());
        self.db
            .run(move |conn| node::credit::tab_half(conn, &me, &buyer, None).map_err(Error::from))
            .await
            .ok()
            .flatten()
            .map(|half| half.header())
    }

    /// Apply one page of deposits from `issuer`: a settlement of a tab (transaction id = the
    /// line id, from its debtor) lowers what it owes, the rest is paid-ahead credit of the
    /// sender. One transaction with the cursor, so a page counts once.
    pub async fn apply_deposits(
        self: &Arc<Self>,
        issuer: &str,
        after: u64,
        page: DepositsPage,
    ) -> Result<(), Error> {
        let peer = self.clone();
        let issuer = issuer.to_owned();
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    for d in &page.deposits {
                        if protocol::EntityId::parse(&d.from).is_err() {
                            // Not a buyer: a payword redemption paid from a chain's escrow
                            // (`escrow:<chain>`), income already counted when taken.
                            continue;
                        }
                        let mut left = d.amount;
                        let line: Option<String> = match &d.transaction_id {
                            Some(t) => credit_lines::table
                                .find(t)
                                .filter(credit_lines::creditor.eq(peer.me()))
                                .filter(credit_lines::debtor.eq(&d.from))
                                .filter(credit_lines::currency.eq(&issuer))
                                .filter(credit_lines::settle_threshold.is_not_null())
                                .select(credit_lines::id)
                                .first(conn)
                                .optional()?,
                            None => None,
                        };
                        if line.is_some() {
                            let owed = peer.tab_owed(conn, &d.from, &issuer)?;
                            let lower = owed.min(left);
                            if lower > 0 {
                                peer.move_tab(conn, &d.from, &issuer, owed - lower, true)?;
                            }
                            left -= lower;
                        }
                        peer.add_credit(conn, &d.from, &issuer, left)?;
                    }
                    let next = to_i64(page.next)?;
                    let was = peer_cursors::table
                        .find(&issuer)
                        .select(peer_cursors::next)
                        .first::<i64>(conn)
                        .optional()?;
                    if was.is_some_and(|w| w.unsigned_abs() != after) {
                        // Another reader applied this page first: count it once.
                        return Err(Error::Upstream("deposit cursor moved meanwhile".into()));
                    }
                    if was.is_some() {
                        let moved = diesel::update(
                            peer_cursors::table
                                .find(&issuer)
                                .filter(peer_cursors::next.eq(to_i64(after)?)),
                        )
                        .set(peer_cursors::next.eq(next))
                        .execute(conn)?;
                        if moved != 1 {
                            return Err(Error::Upstream("deposit cursor moved meanwhile".into()));
                        }
                    } else {
                        diesel::insert_into(peer_cursors::table)
                            .values((
                                peer_cursors::issuer.eq(&issuer),
                                peer_cursors::next.eq(next),
                            ))
                            .execute(conn)?;
                    }
                    Ok::<_, Error>(())
                })
            })
            .await
    }

    async fn cursor(&self, issuer: &str) -> Result<u64, Error> {
        let issuer = issuer.to_owned();
        self.db
            .run(move |conn| {
                Ok(peer_cursors::table
                    .find(&issuer)
                    .select(peer_cursors::next)
                    .first::<i64>(conn)
                    .optional()?
                    .unwrap_or(0)
                    .unsigned_abs())
            })
            .await
    }

    /// As a buyer: keep `seller`'s signed state of this peer's tab there (checked), and
    /// settle it through LCP once it owes the seller's threshold. `charge` is what the call
    /// that brought it was to cost here (the fee, the price, 0 for a contest).
    ///
    /// A seller's word alone cannot make this peer pay: only a primary neighbour keeps a tab
    /// for it; one tab per seller and currency (a state naming another line is refused); a
    /// state may raise what is owed by at most `charge` over the state kept (a new tab starts
    /// at most at `charge`), never past this peer's own `tab_limit` nor the seller's stated
    /// one; an older `seq` changes nothing. What is settled is the state kept, not the one
    /// received.
    pub async fn note_line(
        self: &Arc<Self>,
        seller: &str,
        currency: &str,
        half: Option<LineHalf>,
        charge: u64,
    ) {
        let Some(half) = half else { return };
        let Some(terms) = self.terms_of(seller) else {
            return;
        };
        let cap = terms.tab_limit.min(self.options.tab_limit);
        if half.owed > cap || half.seq > SEQ_MAX {
            tracing::warn!(%seller, owed = half.owed, "a tab state past its limit: ignored");
            return;
        }
        let state = LineState {
            id: half.id.clone(),
            creditor: seller.to_owned(),
            debtor: self.me(),
            currency: currency.to_owned(),
            limit: terms.tab_limit.max(half.owed),
            owed: half.owed,
            seq: half.seq,
        };
        let Ok(seller_id) = protocol::EntityId::parse(seller) else {
            return;
        };
        if !seller_id.verify_b64(state.signing_string().as_bytes(), &half.signature) {
            tracing::warn!(%seller, "a tab state whose signature does not verify: ignored");
            return;
        }
        if self.kind_of(seller).await.ok().flatten().as_deref() != Some(neighbors::PRIMARY) {
            tracing::warn!(%seller, "a tab state from a peer that is not a primary neighbour: ignored");
            return;
        }
        let kept = match self
            .keep_line(state, half.signature, terms.tab_threshold, charge)
            .await
        {
            Ok(kept) => kept,
            Err(e) => {
                tracing::warn!(error = %e, "a neighbour's tab state refused");
                return;
            }
        };
        if terms.tab_threshold > 0 && kept.owed >= terms.tab_threshold {
            let now = node::now_ms();
            {
                let mut settling = lock(&self.settling);
                if settling.get(&kept.id).is_some_and(|until| *until > now) {
                    return;
                }
                settling.insert(kept.id.clone(), now + SETTLE_WAIT_MS);
            }
            let peer = self.clone();
            tokio::spawn(async move {
                if let Err(e) = peer.settle(&kept).await {
                    tracing::warn!(line = %kept.id, error = %e, "tab settlement failed");
                    lock(&peer.settling).remove(&kept.id);
                }
            });
        }
    }

    /// Keep `state` under the rules of [`Peer::note_line`]; answers the state kept after it.
    async fn keep_line(
        &self,
        state: LineState,
        signature: String,
        threshold: u64,
        charge: u64,
    ) -> Result<LineState, Error> {
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    let kept: Option<(String, i64, i64)> = credit_lines::table
                        .filter(credit_lines::creditor.eq(&state.creditor))
                        .filter(credit_lines::debtor.eq(&state.debtor))
                        .filter(credit_lines::currency.eq(&state.currency))
                        .filter(credit_lines::settle_threshold.is_not_null())
                        .select((credit_lines::id, credit_lines::owed, credit_lines::seq))
                        .first(conn)
                        .optional()?;
                    let taken = credit_lines::table
                        .find(&state.id)
                        .count()
                        .get_result::<i64>(conn)?
                        > 0;
                    let refuse =
                        |why: &str| Err(Error::Upstream(format!("line {}: {why}", state.id)));
                    let values = (
                        credit_lines::credit_limit.eq(to_i64(state.limit)?),
                        credit_lines::owed.eq(to_i64(state.owed)?),
                        credit_lines::seq.eq(to_i64(state.seq)?),
                        credit_lines::creditor_signature.eq(&signature),
                        credit_lines::updated_ms.eq(to_i64(node::now_ms())?),
                    );
                    match kept {
                        Some((id, _, _)) if id != state.id => refuse("another tab is kept there"),
                        Some((_, owed, seq)) => {
                            if seq.unsigned_abs() >= state.seq {
                                // Older or the same: the state kept stands.
                                return Ok(LineState {
                                    owed: owed.unsigned_abs(),
                                    seq: seq.unsigned_abs(),
                                    ..state
                                });
                            }
                            if state.owed > owed.unsigned_abs().saturating_add(charge) {
                                return refuse("owes more than was charged");
                            }
                            diesel::update(
                                credit_lines::table
                                    .find(&state.id)
                                    .filter(credit_lines::seq.lt(to_i64(state.seq)?)),
                            )
                            .set(values)
                            .execute(conn)?;
                            Ok(state)
                        }
                        None if taken => refuse("the id names another line"),
                        None if state.owed > charge => {
                            refuse("a new tab owing more than was charged")
                        }
                        None => {
                            diesel::insert_into(credit_lines::table)
                                .values((
                                    credit_lines::id.eq(&state.id),
                                    credit_lines::creditor.eq(&state.creditor),
                                    credit_lines::debtor.eq(&state.debtor),
                                    credit_lines::currency.eq(&state.currency),
                                    credit_lines::held.eq(0i64),
                                    credit_lines::debtor_signature.eq(""),
                                    credit_lines::settle_threshold.eq(Some(to_i64(threshold)?)),
                                    values,
                                ))
                                .execute(conn)?;
                            Ok(state)
                        }
                    }
                })
            })
            .await
    }

    /// Pay what the tab `state` owes, through LCP, transaction id = the line id.
    async fn settle(&self, state: &LineState) -> Result<(), Error> {
        let currency = self.currency(&state.currency)?;
        let creditor = protocol::EntityId::parse(&state.creditor)
            .map_err(|_| Error::InvalidRequest("creditor".into()))?;
        currency
            .wallet
            .transfer(&creditor, state.owed, Some(state.id.as_str()))
            .await
            .map_err(|e| Error::Upstream(format!("settling the tab at {}: {e}", state.creditor)))?;
        tracing::info!(line = %state.id, amount = state.owed, "tab settled through LCP");
        Ok(())
    }

    /// Pay a neighbour (entity, URL) after its `402` for a call costing `charge`: by
    /// paywords when it takes
    /// them and this peer's wallet can pay (sent with the next attempt, answered at once),
    /// else ahead by LCP transfer (the next attempts wait for the neighbour to see it).
    /// `words_tried`: words were sent already and still refused: transfer this time.
    pub(crate) async fn pay_neighbor(
        &self,
        e: &ClientError,
        (seller, url): (&str, &str),
        currency: &str,
        charge: u64,
        words_tried: bool,
    ) -> Result<Paid, Error> {
        let takes_words = self.terms_at(seller, url).await.is_some_and(|t| t.paywords);
        if let (false, true, Some(payer), Ok(vendor)) = (
            words_tried,
            takes_words,
            self.payers.get(currency),
            protocol::EntityId::parse(seller),
        ) {
            let due = e
                .amount_due()
                .unwrap_or(charge)
                .clamp(1, charge.saturating_add(PAY_AHEAD_MIN));
            match payer.pay(&vendor, due).await {
                Ok(Some(words)) => return Ok(Paid::Words(words.headers())),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "no paywords; paying ahead by transfer"),
            }
        }
        self.pay_ahead(e, seller, currency, charge).await?;
        Ok(Paid::Transferred)
    }

    /// Pay a neighbour ahead after its `402` (no tab for this peer there, or a full one):
    /// what it says is due, at least [`PAY_AHEAD_MIN`].
    ///
    /// `charge` is what this peer expects to owe there for the call (the fee or the bid's
    /// price): a `402` may not make it pay more than that plus [`PAY_AHEAD_MIN`].
    pub(crate) async fn pay_ahead(
        &self,
        e: &ClientError,
        seller: &str,
        currency: &str,
        charge: u64,
    ) -> Result<(), Error> {
        let cap = charge.saturating_add(PAY_AHEAD_MIN);
        let due = e.amount_due().unwrap_or(1).max(PAY_AHEAD_MIN).min(cap);
        let cur = self.currency(currency)?;
        let to = protocol::EntityId::parse(seller)
            .map_err(|_| Error::InvalidRequest("seller".into()))?;
        cur.wallet
            .transfer(&to, due, None)
            .await
            .map_err(|e| Error::Upstream(format!("paying {seller} ahead: {e}")))?;
        Ok(())
    }
}

/// Follow `issuer`'s deposits to this peer forever: settlements and payments ahead.
pub async fn watch_deposits(peer: Arc<Peer>, issuer: String) {
    let Ok(cur) = peer.currency(&issuer).cloned() else {
        return;
    };
    let mut backoff = DEPOSITS_BACKOFF_MS_MIN;
    loop {
        let step = async {
            let after = peer.cursor(&issuer).await?;
            let page = cur
                .wallet
                .deposits(after, DEPOSITS_WAIT_MS, None)
                .await
                .map_err(|e| Error::Upstream(e.to_string()))?;
            if !page.deposits.is_empty() {
                peer.apply_deposits(&issuer, after, page).await?;
            }
            Ok::<_, Error>(())
        };
        match step.await {
            Ok(()) => backoff = DEPOSITS_BACKOFF_MS_MIN,
            Err(e) => {
                tracing::warn!(issuer = %cur.offer.issuer_url, error = %e, "deposit watcher");
                tokio::time::sleep(Duration::from_millis(backoff)).await;
                backoff = (backoff * 2).min(DEPOSITS_BACKOFF_MS_MAX);
            }
        }
    }
}

/// How often the paywords held are looked at for redemption, and the issuer's fraud proofs
/// read.
pub const REDEEM_INTERVAL_MS: u64 = 2_000;

/// Redeem the paywords taken in `issuer`'s currency when due, and follow the issuer's fraud
/// proofs (a payer proven to double spend is refused from then on), forever.
pub async fn redeem_words(peer: Arc<Peer>, issuer: String) {
    let Ok(cur) = peer.currency(&issuer).cloned() else {
        return;
    };
    let Ok(issuer_id) = protocol::EntityId::parse(&issuer) else {
        return;
    };
    let client = cur.wallet.signed().clone();
    loop {
        tokio::time::sleep(Duration::from_millis(REDEEM_INTERVAL_MS)).await;
        match node::paywords::follow_frauds(&peer.db, &issuer_id, &client).await {
            Ok(payers) => {
                for p in payers {
                    tracing::warn!(payer = %p, "double spend proven: refused from now on");
                }
            }
            Err(e) => tracing::warn!(error = %e, "fraud proofs"),
        }
        let threshold = peer.options.payword_redeem_threshold;
        let redeemed = node::paywords::redeem_due(
            &peer.db,
            &issuer_id,
            &client,
            peer.counters.next(),
            threshold,
            false,
        )
        .await;
        if let Err(e) = redeemed {
            tracing::warn!(error = %e, "payword redemption");
        }
    }
}
