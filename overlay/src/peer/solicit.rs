//! Answering a bid solicitation (seed 001 section 2.1, DESIGN 13).
//!
//! The fee is charged once per (solicitor, solicitation id), in the transaction that records
//! the solicitation. A peer holding the document bids its price. One without it asks its
//! neighbours (never the solicitor, never an undesirable peer; secondaries as the policy
//! allows) with the maximum price lowered by its commission and one hop fewer, and bids the
//! cheapest answer plus its commission; a solicitation met again (a loop) is not forwarded.
//!
//! The owner's own searches (signed by this peer's key) pay nothing here and add no
//! commission; they ask near first and widen a ring at a time until a bid comes
//! (`decide::rings`: no hop left, then 1, 3, 7 up to the hops asked for). Their answer names
//! the neighbour each bid came through (`via`).

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use futures_util::future::join_all;
use protocol::overlay::{Bid, Bids, Solicit, BID_TTL_MS};

use super::money::{Charge, Paid, Words};
use super::neighbors::{Neighbor, UNDESIRABLE};
use super::{to_i64, Peer};
use crate::decide;
use crate::error::Error;
use crate::schema::{peer_bids, peer_solicitations};

/// A bid as this peer makes it, before it is stored.
#[derive(Debug, Clone)]
pub struct NewBid {
    pub id: String,
    pub price: u64,
    pub expires_ms: u64,
    /// The neighbour's bid it rests on: (entity, url, bid id, price); `None`: local.
    pub down: Option<(String, String, String, u64)>,
}

impl NewBid {
    fn wire(&self, own: bool) -> Bid {
        Bid {
            bid: self.id.clone(),
            price: self.price,
            expires_at: protocol::market::format_rfc3339((self.expires_ms / 1000) as i64),
            via: if own {
                self.down.as_ref().map(|d| d.1.clone())
            } else {
                None
            },
        }
    }
}

/// What the solicitation's record says before any work.
enum Recorded {
    /// Answered before (the same solicitor repeating it): that answer again.
    Again(Bids),
    /// New here; `looped`: this peer met the same search from another solicitor already.
    New { looped: bool },
}

impl Peer {
    /// Answer `from`'s solicitation (see the module documentation).
    ///
    /// `counter`: the request's; a solicitation without an id is named by it, so a replay
    /// of the same signed request pays once. `words`: paywords it carried for the fee.
    pub async fn solicit(
        self: &Arc<Self>,
        from: &str,
        counter: u64,
        s: Solicit,
        words: Words,
    ) -> Result<Bids, Error> {
        let now = node::now_ms();
        let mut s = s.checked(now).map_err(Error::InvalidRequest)?;
        self.currency(&s.currency)?;
        let own = from == self.me();
        if !own && self.kind_of(from).await?.as_deref() == Some(UNDESIRABLE) {
            return Err(Error::Undesirable);
        }
        // Named by its sender and counter when it has no id: a replay is the same
        // solicitation, and two senders' never collide.
        let sid = s.solicitation.clone().unwrap_or_else(|| {
            protocol::sha256_hex(format!("{from}\n{counter}").as_bytes())[..32].to_owned()
        });
        // Room for the ring mark in an own search's rings (ids are at most 64 characters).
        let sid = if own && sid.len() > 56 {
            protocol::sha256_hex(sid.as_bytes())[..32].to_owned()
        } else {
            sid
        };
        s.solicitation = Some(sid);
        if self.documents.has(&s.document) {
            // Held here: the answer is known now, so recording, charging and bidding are
            // one transaction.
            let bids: Vec<NewBid> = decide::local_bid(own, self.options.price, s.max_price)
                .map(|price| NewBid {
                    id: uuid::Uuid::new_v4().to_string(),
                    price,
                    expires_ms: now + BID_TTL_MS,
                    down: None,
                })
                .into_iter()
                .collect();
            let answer = Bids {
                bids: bids.iter().map(|b| b.wire(own)).collect(),
            };
            return match self
                .record(from, &s, words, Some((bids, answer.clone())))
                .await?
            {
                Recorded::Again(bids) => Ok(bids),
                Recorded::New { .. } => Ok(answer),
            };
        }
        let looped = match self.record(from, &s, words, None).await? {
            Recorded::Again(bids) => return Ok(bids),
            Recorded::New { looped } => looped,
        };
        let (bids, forwarded) = if looped {
            (Vec::new(), 0)
        } else {
            self.forward(own, from, &s).await?
        };
        let answer = Bids {
            bids: bids.iter().map(|b| b.wire(own)).collect(),
        };
        self.store_bids(from, &s, &bids, forwarded, &answer).await?;
        Ok(answer)
    }

    /// Record the solicitation and charge its fee, once per (solicitor, id).
    ///
    /// `ready`: the bids and answer when they are known already (a document held here):
    /// stored in the same transaction.
    async fn record(
        self: &Arc<Self>,
        from: &str,
        s: &Solicit,
        words: Words,
        ready: Option<(Vec<NewBid>, Bids)>,
    ) -> Result<Recorded, Error> {
        let peer = self.clone();
        let (from, s) = (from.to_owned(), s.clone());
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    let sid = s.solicitation.clone().unwrap_or_default();
                    let before: Option<Option<String>> = peer_solicitations::table
                        .find((&from, &sid))
                        .select(peer_solicitations::answer)
                        .first(conn)
                        .optional()?;
                    if let Some(answer) = before {
                        let bids = answer
                            .and_then(|a| serde_json::from_str(&a).ok())
                            .unwrap_or_default();
                        return Ok(Recorded::Again(bids));
                    }
                    // A loop: this solicitation met here before from someone else, or one
                    // ring of this peer's own search come back to it.
                    let base = sid.rsplit_once(RING_MARK).map_or(sid.as_str(), |(b, _)| b);
                    let looped = peer_solicitations::table
                        .filter(
                            peer_solicitations::id.eq(&sid).or(peer_solicitations::id
                                .eq(base)
                                .and(peer_solicitations::solicitor.eq(peer.me()))),
                        )
                        .count()
                        .get_result::<i64>(conn)?
                        > 0;
                    let fee = if from == peer.me() {
                        0
                    } else {
                        peer.options.solicit_fee
                    };
                    let paid_by = peer.charge(
                        conn,
                        &Charge {
                            buyer: &from,
                            currency: &s.currency,
                            amount: fee,
                        },
                        &words,
                    )?;
                    diesel::insert_into(peer_solicitations::table)
                        .values((
                            peer_solicitations::solicitor.eq(&from),
                            peer_solicitations::id.eq(&sid),
                            peer_solicitations::document.eq(&s.document),
                            peer_solicitations::currency.eq(&s.currency),
                            peer_solicitations::fee.eq(to_i64(fee)?),
                            peer_solicitations::paid_by.eq(paid_by),
                            peer_solicitations::seen_ms.eq(to_i64(node::now_ms())?),
                        ))
                        .execute(conn)?;
                    if let Some((bids, answer)) = &ready {
                        store_bids_in(conn, &from, &s, bids, 0, answer)?;
                    }
                    Ok::<_, Error>(Recorded::New { looped })
                })
            })
            .await
    }

    async fn store_bids(
        &self,
        from: &str,
        s: &Solicit,
        bids: &[NewBid],
        forwarded: usize,
        answer: &Bids,
    ) -> Result<(), Error> {
        let (from, s, bids, answer) = (from.to_owned(), s.clone(), bids.to_vec(), answer.clone());
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    store_bids_in(conn, &from, &s, &bids, forwarded, &answer)
                })
            })
            .await
    }

    /// Ask the neighbours; answers this peer's bids and how many solicitations it sent.
    async fn forward(
        self: &Arc<Self>,
        own: bool,
        from: &str,
        s: &Solicit,
    ) -> Result<(Vec<NewBid>, usize), Error> {
        let commission = decide::commission(own, self.options.commission);
        let Some(next) = s.forwarded(commission, node::now_ms()) else {
            return Ok((Vec::new(), 0));
        };
        let targets: Vec<Neighbor> = self
            .askable(own)
            .await?
            .into_iter()
            .filter(|n| n.entity != from && n.entity != self.me())
            .collect();
        let rings = decide::rings(own, next.hops_left);
        let mut asked = 0;
        let several = rings.len() > 1;
        for (i, hops_left) in rings.iter().copied().enumerate() {
            // Each ring gets a share of the time left (the last one all of it), so one slow
            // neighbour in a near ring cannot use up the far ones' time.
            let now = node::now_ms();
            let left = next.respond_by.saturating_sub(now);
            let rings_left = (rings.len() - i) as u64;
            let ring = Solicit {
                hops_left,
                respond_by: now + left / rings_left,
                // Each ring is a solicitation of its own to the neighbours (asked twice,
                // they answer again rather than repeat the first answer).
                solicitation: match (&next.solicitation, several) {
                    (Some(id), true) => Some(format!("{id}{RING_MARK}{hops_left}")),
                    (id, _) => id.clone(),
                },
                ..next.clone()
            };
            asked += targets.len();
            let answers = join_all(targets.iter().map(|n| self.ask(n, &ring))).await;
            let found: Vec<((Neighbor, Bid), u64)> = targets
                .iter()
                .cloned()
                .zip(answers)
                .filter_map(|(n, b)| b.map(|b| ((n, b.clone()), b.price)))
                .collect();
            if found.is_empty() {
                continue;
            }
            let now = node::now_ms();
            let bids = decide::bids_on(found, own, self.options.commission)
                .into_iter()
                .map(|((n, b), theirs, ours)| {
                    let down_expiry = protocol::market::parse_rfc3339(&b.expires_at)
                        .map(|s| (s.max(0) as u64).saturating_mul(1000))
                        .unwrap_or(now);
                    NewBid {
                        id: uuid::Uuid::new_v4().to_string(),
                        price: ours,
                        expires_ms: (now + BID_TTL_MS).min(down_expiry),
                        down: Some((n.entity.clone(), n.url.clone(), b.bid.clone(), theirs)),
                    }
                })
                .collect();
            return Ok((bids, asked));
        }
        Ok((Vec::new(), asked))
    }

    /// One neighbour's cheapest bid within the price, if it answers in time; a `402` is
    /// paid ahead once and asked again.
    async fn ask(self: &Arc<Self>, n: &Neighbor, s: &Solicit) -> Option<Bid> {
        let wait_ms = s.respond_by.saturating_sub(node::now_ms());
        let client = self.client_of(&n.url);
        let fee = self
            .terms_at(&n.entity, &n.url)
            .await
            .map_or(0, |t| t.solicit_fee);
        if fee > self.options.neighbor_fee_max {
            // A neighbour sets its own fee: past this peer's bound it is not worth asking.
            tracing::debug!(neighbor = %n.url, fee, "fee above --neighbor-fee-max: not asked");
            return None;
        }
        let attempt = async {
            let (mut pay, mut paid, mut words_tried) = (Vec::new(), false, false);
            loop {
                match client.solicit_paying(s, self.counters.next(), &pay).await {
                    Ok(answer) => {
                        self.note_line(&n.entity, &s.currency, answer.line, fee)
                            .await;
                        return answer.value.bids.into_iter().min_by_key(|b| b.price);
                    }
                    Err(e) if clients::pay::payment_required(&e) && !paid => {
                        match self
                            .pay_neighbor(&e, (&n.entity, &n.url), &s.currency, fee, words_tried)
                            .await
                        {
                            Ok(Paid::Words(headers)) => {
                                pay = headers;
                                words_tried = true;
                            }
                            Ok(Paid::Transferred) => {
                                pay.clear();
                                paid = true;
                                // The neighbour sees the deposit within its long poll.
                                tokio::time::sleep(Duration::from_millis(PAID_AHEAD_POLL_MS)).await;
                            }
                            Err(e) => {
                                tracing::warn!(neighbor = %n.url, error = %e, "cannot pay");
                                return None;
                            }
                        }
                    }
                    Err(e) if clients::pay::payment_required(&e) => {
                        tokio::time::sleep(Duration::from_millis(PAID_AHEAD_POLL_MS)).await;
                    }
                    Err(e) => {
                        tracing::debug!(neighbor = %n.url, error = %e, "no bid");
                        return None;
                    }
                }
            }
        };
        let bid = tokio::time::timeout(Duration::from_millis(wait_ms), attempt)
            .await
            .ok()
            .flatten()?;
        (bid.price <= s.max_price).then_some(bid)
    }
}

/// Separates a search's id from its ring in the ids of an own search's rings.
pub const RING_MARK: char = '/';

/// Pause between asking again after paying a neighbour ahead.
pub const PAID_AHEAD_POLL_MS: u64 = 100;

/// Store `bids` made for `from`'s solicitation `s` and its answer, inside the caller's
/// transaction.
fn store_bids_in(
    conn: &mut db::AnyConnection,
    from: &str,
    s: &Solicit,
    bids: &[NewBid],
    forwarded: usize,
    answer: &Bids,
) -> Result<(), Error> {
    let answer = serde_json::to_string(answer).map_err(|e| Error::InvalidRequest(e.to_string()))?;
    let now = to_i64(node::now_ms())?;
    for b in bids {
        let down = b.down.clone();
        diesel::insert_into(peer_bids::table)
            .values((
                peer_bids::id.eq(&b.id),
                peer_bids::solicitor.eq(from),
                peer_bids::document.eq(&s.document),
                peer_bids::currency.eq(&s.currency),
                peer_bids::price.eq(to_i64(b.price)?),
                peer_bids::expires_ms.eq(to_i64(b.expires_ms)?),
                peer_bids::down_entity.eq(down.as_ref().map(|d| d.0.clone())),
                peer_bids::down_url.eq(down.as_ref().map(|d| d.1.clone())),
                peer_bids::down_bid.eq(down.as_ref().map(|d| d.2.clone())),
                peer_bids::down_price.eq(down.as_ref().map(|d| to_i64(d.3)).transpose()?),
                peer_bids::made_ms.eq(now),
            ))
            .execute(conn)?;
    }
    let sid = s.solicitation.clone().unwrap_or_default();
    diesel::update(peer_solicitations::table.find((from, &sid)))
        .set((
            peer_solicitations::answer.eq(Some(&answer)),
            peer_solicitations::forwarded.eq(forwarded as i64),
        ))
        .execute(conn)?;
    Ok(())
}
