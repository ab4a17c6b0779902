//! Accepting a bid, retrieving by one-time token, and contests (seed 001 sections 2.2, 3
//! and 4; DESIGN 13).
//!
//! - Accept: the bid's solicitor pays its price (in the transaction that marks it accepted).
//!   A local bid answers this peer's own instructions. A bid on a neighbour's: a referring
//!   peer accepts downstream for the same buyer and passes the source's instructions through;
//!   a concealing peer accepts downstream for itself, retrieves and checks the document,
//!   keeps the copy and answers its own instructions. Either way the source met in the
//!   instructions is discovered. When the deal cannot be made, the price is refunded at once.
//!   Accepting again answers the same instructions and charges nothing.
//! - Retrieve: the token's buyer, once, before it expires.
//! - Contest: the bid's buyer could not retrieve; it is refunded once, and the neighbour the
//!   bid rested on is contested in turn (so the refund travels to the peer that failed);
//!   an untrusted peer involved is distrusted (`neighbors::distrust`).

use std::sync::Arc;

use diesel::prelude::*;
use node::client::ClientError;
use protocol::overlay::{Instructions, TOKEN_TTL_MS};

use super::money::{Charge, Paid, Words, PAID_OWN};
use super::neighbors::{PRIMARY, SECONDARY};
use super::{to_i64, Peer, Strategy};
use crate::error::Error;
use crate::schema::{peer_bids, peer_tokens};

/// How long after acceptance a buyer may contest (the instructions' lifetime).
pub const CONTEST_WINDOW_MS: u64 = TOKEN_TTL_MS;
/// How long a contest downstream left unanswered is asked again, and the longest pause.
pub const CONTEST_RETRY_WINDOW_MS: u64 = 3_600_000;
pub const CONTEST_RETRY_MS_MAX: u64 = 300_000;
/// Times a downstream accept left unanswered is asked again.
pub const ACCEPT_RETRIES_MAX: u32 = 2;

/// A failure downstream, for the answer: logged in full here, told to the buyer without the
/// neighbour's address (a concealing peer must not name its source).
fn upstream(url: &str, e: ClientError) -> Error {
    tracing::warn!(neighbor = %url, error = %e, "a neighbour failed");
    match e.code() {
        Some(code) => Error::Upstream(format!("the peer downstream refused: {code}")),
        None => Error::Upstream("the peer downstream did not answer".into()),
    }
}

/// A bid as stored.
#[derive(Debug, Clone, Queryable)]
pub struct BidRow {
    pub id: String,
    pub solicitor: String,
    pub document: String,
    pub currency: String,
    pub price: i64,
    pub expires_ms: i64,
    pub down_entity: Option<String>,
    pub down_url: Option<String>,
    pub down_bid: Option<String>,
    pub down_price: Option<i64>,
    pub accepted_ms: Option<i64>,
    pub buyer: Option<String>,
    pub paid_by: Option<String>,
    pub instructions: Option<String>,
    pub contested_ms: Option<i64>,
    pub refunded: i64,
    pub down_refunded: i64,
    pub made_ms: i64,
}

impl BidRow {
    fn charge(&self) -> Charge<'_> {
        Charge {
            buyer: &self.solicitor,
            currency: &self.currency,
            amount: self.price.unsigned_abs(),
        }
    }
}

/// A retrieval: the document's bytes, served once.
pub struct Retrieved {
    pub document: String,
    pub bytes: Vec<u8>,
}

impl Peer {
    async fn bid_row(&self, bid: &str) -> Result<BidRow, Error> {
        let id = bid.to_owned();
        self.db
            .run(move |conn| {
                peer_bids::table
                    .find(&id)
                    .first::<BidRow>(conn)
                    .optional()?
                    .ok_or(Error::UnknownBid(id))
            })
            .await
    }

    /// `from` accepts `bid` for `buyer` (see the module documentation).
    pub async fn accept(
        self: &Arc<Self>,
        from: &str,
        bid: &str,
        buyer: &str,
        words: &Words,
    ) -> Result<Instructions, Error> {
        protocol::EntityId::parse(buyer)
            .map_err(|_| Error::InvalidRequest("buyer must be an entity id".into()))?;
        let row = self.bid_row(bid).await?;
        if row.solicitor != from {
            return Err(Error::BidTaken);
        }
        if let (Some(i), Some(b)) = (&row.instructions, &row.buyer) {
            if b == buyer {
                return serde_json::from_str(i).map_err(|e| Error::InvalidRequest(e.to_string()));
            }
            return Err(Error::BidTaken);
        }
        if row.accepted_ms.is_some() {
            return Err(Error::BidTaken);
        }
        if row.expires_ms.unsigned_abs() <= node::now_ms() {
            return Err(Error::BidExpired);
        }
        // The deal runs to its end in a task of its own, its charge included: a buyer that
        // hangs up must not leave a bid charged with neither instructions nor a refund.
        let (peer, buyer, words) = (self.clone(), buyer.to_owned(), words.clone());
        tokio::spawn(async move {
            let paid_by = peer.mark_accepted(&row, &buyer, &words).await?;
            peer.finish_accept(row, paid_by, &buyer).await
        })
        .await
        .map_err(|e| Error::Upstream(format!("the deal's task failed: {e}")))?
    }

    /// Deliver an accepted bid and store its instructions, or refund it.
    async fn finish_accept(
        self: &Arc<Self>,
        row: BidRow,
        paid_by: &'static str,
        buyer: &str,
    ) -> Result<Instructions, Error> {
        match self.deliver(&row, buyer).await {
            Ok(instructions) => {
                let text = serde_json::to_string(&instructions)
                    .map_err(|e| Error::InvalidRequest(e.to_string()))?;
                let id = row.id.clone();
                self.db
                    .run(move |conn| {
                        diesel::update(
                            peer_bids::table
                                .find(&id)
                                .filter(peer_bids::contested_ms.is_null()),
                        )
                        .set(peer_bids::instructions.eq(Some(text)))
                        .execute(conn)?;
                        Ok::<_, Error>(())
                    })
                    .await?;
                Ok(instructions)
            }
            Err(e) => {
                // The deal failed before the buyer got anything: its money back at once.
                let row = BidRow {
                    paid_by: Some(paid_by.to_owned()),
                    ..row
                };
                let price = row.price.unsigned_abs();
                self.close_refunded(&row, price).await?;
                Err(e)
            }
        }
    }

    /// Mark the bid accepted by its solicitor for `buyer` and charge its price, together.
    async fn mark_accepted(
        self: &Arc<Self>,
        row: &BidRow,
        buyer: &str,
        words: &Words,
    ) -> Result<&'static str, Error> {
        let (peer, row, buyer) = (self.clone(), row.clone(), buyer.to_owned());
        let words = words.clone();
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    let now = to_i64(node::now_ms())?;
                    let marked = diesel::update(
                        peer_bids::table
                            .find(&row.id)
                            .filter(peer_bids::accepted_ms.is_null()),
                    )
                    .set((
                        peer_bids::accepted_ms.eq(Some(now)),
                        peer_bids::buyer.eq(Some(&buyer)),
                    ))
                    .execute(conn)?;
                    if marked == 0 {
                        return Err(Error::BidTaken);
                    }
                    let paid_by = peer.charge(conn, &row.charge(), &words)?;
                    diesel::update(peer_bids::table.find(&row.id))
                        .set(peer_bids::paid_by.eq(Some(paid_by)))
                        .execute(conn)?;
                    Ok(paid_by)
                })
            })
            .await
    }

    /// Refund an accepted bid that could not be delivered and close it.
    ///
    /// `amount`: what is given back (the price, or less when an untrusted buyer's refund is
    /// what the neighbour downstream refunded).
    async fn close_refunded(self: &Arc<Self>, row: &BidRow, amount: u64) -> Result<(), Error> {
        let (peer, row) = (self.clone(), row.clone());
        let amount = amount.min(row.price.unsigned_abs());
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    let now = to_i64(node::now_ms())?;
                    let closed = diesel::update(
                        peer_bids::table
                            .find(&row.id)
                            .filter(peer_bids::contested_ms.is_null()),
                    )
                    .set((
                        peer_bids::contested_ms.eq(Some(now)),
                        peer_bids::refunded.eq(to_i64(amount)?),
                    ))
                    .execute(conn)?;
                    if closed == 1 {
                        let charge = Charge {
                            amount,
                            ..row.charge()
                        };
                        peer.refund(conn, &charge, row.paid_by.as_deref().unwrap_or(PAID_OWN))?;
                    }
                    Ok::<_, Error>(())
                })
            })
            .await
    }

    /// The instructions for an accepted bid: this peer's own, or the source's.
    async fn deliver(self: &Arc<Self>, row: &BidRow, buyer: &str) -> Result<Instructions, Error> {
        let (Some(down_entity), Some(down_url), Some(down_bid), Some(down_price)) = (
            &row.down_entity,
            &row.down_url,
            &row.down_bid,
            row.down_price.map(i64::unsigned_abs),
        ) else {
            return self.own_instructions(row, buyer).await;
        };
        let own = row.solicitor == self.me();
        let conceal = self.options.strategy == Strategy::Conceal && !own;
        let for_whom = if conceal { self.me() } else { buyer.to_owned() };
        let client = self.client_of(down_url);
        let (mut pay, mut paid, mut words_tried, mut retries) = (Vec::new(), false, false, 0);
        let answer = loop {
            match client
                .accept_paying(down_bid, &for_whom, self.counters.next(), &pay)
                .await
            {
                Ok(a) => break a,
                Err(e) if clients::pay::payment_required(&e) && !paid => {
                    match self
                        .pay_neighbor(
                            &e,
                            (down_entity, down_url),
                            &row.currency,
                            down_price,
                            words_tried,
                        )
                        .await?
                    {
                        Paid::Words(headers) => {
                            pay = headers;
                            words_tried = true;
                        }
                        Paid::Transferred => {
                            pay.clear();
                            paid = true;
                            self.wait_paid_ahead().await;
                        }
                    }
                }
                Err(e) if clients::pay::payment_required(&e) && self.still_waiting(row) => {
                    self.wait_paid_ahead().await;
                }
                // The answer may have been lost after the neighbour charged: accepting again
                // is answered with the same instructions there, so ask again, a few times.
                Err(e @ ClientError::Unreachable { .. }) if retries < ACCEPT_RETRIES_MAX => {
                    tracing::warn!(neighbor = %down_url, error = %e, "accept unanswered; again");
                    retries += 1;
                    self.wait_paid_ahead().await;
                }
                Err(e) => return Err(upstream(down_url, e)),
            }
        };
        self.note_line(down_entity, &row.currency, answer.line, down_price)
            .await;
        let instructions = answer.value;
        if let Some(base) = instructions.base_url() {
            self.discover(&instructions.peer, &base).await?;
        }
        if !conceal {
            return Ok(instructions);
        }
        // Concealment: fetch the document, check it, keep it, and sell this peer's copy.
        let fetched = clients::peer::retrieve(&self.http, self.key.clone(), &instructions).await;
        let good = match fetched {
            Ok(bytes) if protocol::overlay::document_matches(&row.document, &bytes) => Some(bytes),
            _ => None,
        };
        let Some(bytes) = good else {
            if let Err(e) = self.contest_down(row, "the source did not deliver").await {
                tracing::warn!(bid = %row.id, error = %e, "contest downstream failed");
            }
            return Err(Error::Upstream(
                "the source did not deliver the document".into(),
            ));
        };
        let peer = self.clone();
        let document = row.document.clone();
        tokio::task::spawn_blocking(move || peer.documents.keep_copy(&document, &bytes))
            .await
            .map_err(|e| Error::Upstream(e.to_string()))?
            .map_err(|e| Error::Upstream(format!("cannot keep the copy: {e}")))?;
        self.own_instructions(row, buyer).await
    }

    /// Keep asking after a payment ahead until the bid expires.
    fn still_waiting(&self, row: &BidRow) -> bool {
        node::now_ms() < row.expires_ms.unsigned_abs()
    }

    async fn wait_paid_ahead(&self) {
        tokio::time::sleep(std::time::Duration::from_millis(
            super::solicit::PAID_AHEAD_POLL_MS,
        ))
        .await;
    }

    /// A one-time token for `buyer` to retrieve the document here.
    async fn own_instructions(&self, row: &BidRow, buyer: &str) -> Result<Instructions, Error> {
        let mut secret = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .map_err(|_| Error::Upstream("no randomness".into()))?;
        let token = hex::encode(secret);
        let (t, bid, doc, b) = (
            token.clone(),
            row.id.clone(),
            row.document.clone(),
            buyer.to_owned(),
        );
        self.db
            .run(move |conn| {
                diesel::insert_into(peer_tokens::table)
                    .values((
                        peer_tokens::token.eq(&t),
                        peer_tokens::bid.eq(&bid),
                        peer_tokens::document.eq(&doc),
                        peer_tokens::buyer.eq(&b),
                        peer_tokens::expires_ms.eq(to_i64(node::now_ms() + TOKEN_TTL_MS)?),
                    ))
                    .execute(conn)?;
                Ok::<_, Error>(())
            })
            .await?;
        Ok(Instructions {
            url: format!("{}/v1/retrievals/{token}", self.base_url()),
            token,
            peer: self.me(),
        })
    }

    /// Serve `token` to `buyer`, once.
    pub async fn retrieve(self: &Arc<Self>, buyer: &str, token: &str) -> Result<Retrieved, Error> {
        let (t, b) = (token.to_owned(), buyer.to_owned());
        let document = self
            .db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    let row: Option<(String, String, i64, Option<i64>)> = peer_tokens::table
                        .find(&t)
                        .select((
                            peer_tokens::document,
                            peer_tokens::buyer,
                            peer_tokens::expires_ms,
                            peer_tokens::used_ms,
                        ))
                        .first(conn)
                        .optional()?;
                    let Some((document, owner, expires_ms, used_ms)) = row else {
                        return Err(Error::UnknownToken);
                    };
                    if owner != b {
                        return Err(Error::WrongBuyer);
                    }
                    if used_ms.is_some() {
                        return Err(Error::TokenUsed);
                    }
                    let now = to_i64(node::now_ms())?;
                    if expires_ms <= now {
                        return Err(Error::TokenExpired);
                    }
                    let spent = diesel::update(
                        peer_tokens::table
                            .find(&t)
                            .filter(peer_tokens::used_ms.is_null()),
                    )
                    .set(peer_tokens::used_ms.eq(Some(now)))
                    .execute(conn)?;
                    if spent == 0 {
                        return Err(Error::TokenUsed);
                    }
                    Ok(document)
                })
            })
            .await?;
        let peer = self.clone();
        let doc = document.clone();
        let bytes = tokio::task::spawn_blocking(move || peer.documents.read_bytes(&doc))
            .await
            .map_err(|e| Error::Upstream(e.to_string()))?
            .ok_or(Error::DocumentGone)?;
        Ok(Retrieved { document, bytes })
    }

    /// `from` (the bid's solicitor) could not retrieve `bid`: refund once and contest
    /// downstream. Answers what was refunded.
    pub async fn contest(
        self: &Arc<Self>,
        from: &str,
        bid: &str,
        reason: &str,
    ) -> Result<u64, Error> {
        let row = self.bid_row(bid).await?;
        if row.solicitor != from || row.accepted_ms.is_none() {
            return Err(Error::NotAccepted);
        }
        let own = from == self.me();
        let refunded_to_buyer = |row: &BidRow| if own { 0 } else { row.refunded.unsigned_abs() };
        if row.contested_ms.is_some() {
            return Ok(refunded_to_buyer(&row));
        }
        // Only a delivered deal can have failed its buyer; one still under way cannot be
        // refunded and then delivered too.
        let Some(instructions) = &row.instructions else {
            return Err(Error::NotDelivered);
        };
        let accepted_ms = row.accepted_ms.unwrap_or(0).unsigned_abs();
        if node::now_ms() > accepted_ms.saturating_add(CONTEST_WINDOW_MS) {
            return Err(Error::ContestTooLate);
        }
        tracing::info!(bid, %from, reason, "deal contested");
        let price = row.price.unsigned_abs();
        let local = row.down_bid.is_none() || self.documents.has(&row.document);
        let trusted = own || self.kind_of(from).await?.as_deref() == Some(PRIMARY);
        if trusted {
            // Seed 001 section 4: a primary neighbour's contest is always refunded; the
            // refund is then claimed downstream, so it ends with the peer that failed.
            self.close_refunded(&row, price).await?;
            if !local {
                if let Err(e) = self.contest_down(&row, reason).await {
                    tracing::warn!(bid, error = %e, "contest downstream failed; asking again later");
                    self.contest_down_later(row.clone(), reason.to_owned());
                }
            }
        } else if local {
            // An untrusted buyer of this peer's own copy: refunded unless its token served
            // the document (then its word is all there is against this peer's).
            if self.token_used(&row.id).await? {
                return Err(Error::AlreadyRetrieved);
            }
            self.close_refunded(&row, price).await?;
        } else {
            // An untrusted buyer of a referred deal: refunded what the neighbour refunds
            // (all of the price when it refunds all of its own), so a lie costs nobody here.
            let down = self.contest_down(&row, reason).await;
            let amount = match (down, row.down_price) {
                (Ok(r), Some(d)) if r >= d.unsigned_abs() => price,
                (Ok(r), _) => r,
                (Err(e), _) => {
                    tracing::warn!(bid, error = %e, "contest downstream failed");
                    0
                }
            };
            self.close_refunded(&row, amount).await?;
        }
        let row = self.bid_row(bid).await?;
        // Seed 001 section 4: the untrusted peers in a contested deal are distrusted: the
        // buyer when it is one (it may be lying), and the source its instructions named.
        if !own && self.kind_of(from).await?.as_deref() == Some(SECONDARY) {
            self.distrust(from).await?;
        }
        if let Ok(i) = serde_json::from_str::<Instructions>(instructions) {
            if i.peer != self.me() && self.kind_of(&i.peer).await?.as_deref() == Some(SECONDARY) {
                self.distrust(&i.peer).await?;
            }
        }
        Ok(refunded_to_buyer(&row))
    }

    /// Contest `row`'s neighbour again in the background, less and less often, until it
    /// answers or [`CONTEST_RETRY_WINDOW_MS`] has passed: this peer refunded its buyer
    /// already, and the refund belongs to the peer that failed, not to this one. (Kept in
    /// memory: a restart ends the retries.)
    fn contest_down_later(self: &Arc<Self>, row: BidRow, reason: String) {
        let peer = self.clone();
        tokio::spawn(async move {
            let give_up = node::now_ms() + CONTEST_RETRY_WINDOW_MS;
            let mut wait_ms = 1_000;
            while node::now_ms() < give_up {
                tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
                match peer.contest_down(&row, &reason).await {
                    Ok(refunded) => {
                        tracing::info!(bid = %row.id, refunded, "contest downstream answered");
                        return;
                    }
                    // A refusal is an answer: asking again would change nothing.
                    Err(Error::Upstream(m)) if m.contains("refused") => return,
                    Err(e) => tracing::debug!(bid = %row.id, error = %e, "contest again later"),
                }
                wait_ms = (wait_ms * 2).min(CONTEST_RETRY_MS_MAX);
            }
            tracing::warn!(bid = %row.id, "the neighbour never answered the contest");
        });
    }

    /// Did a token of `bid` serve its document?
    async fn token_used(&self, bid: &str) -> Result<bool, Error> {
        let bid = bid.to_owned();
        self.db
            .run(move |conn| {
                Ok(peer_tokens::table
                    .filter(peer_tokens::bid.eq(&bid))
                    .filter(peer_tokens::used_ms.is_not_null())
                    .count()
                    .get_result::<i64>(conn)?
                    > 0)
            })
            .await
    }

    /// Contest the neighbour's bid `row` rested on, and distrust it when it is untrusted.
    /// Answers what the neighbour refunded.
    async fn contest_down(self: &Arc<Self>, row: &BidRow, reason: &str) -> Result<u64, Error> {
        let (Some(entity), Some(url), Some(down_bid)) =
            (&row.down_entity, &row.down_url, &row.down_bid)
        else {
            return Ok(0);
        };
        if self.kind_of(entity).await?.as_deref() == Some(SECONDARY) {
            self.distrust(entity).await?;
        }
        let answer = self
            .client_of(url)
            .contest(down_bid, reason, self.counters.next())
            .await
            .map_err(|e| upstream(url, e))?;
        self.note_line(entity, &row.currency, answer.line, 0).await;
        let refunded_u = answer.value.refunded;
        let (id, refunded) = (row.id.clone(), to_i64(refunded_u)?);
        self.db
            .run(move |conn| {
                diesel::update(peer_bids::table.find(&id))
                    .set(peer_bids::down_refunded.eq(refunded))
                    .execute(conn)?;
                Ok::<_, Error>(())
            })
            .await?;
        Ok(refunded_u)
    }
}
