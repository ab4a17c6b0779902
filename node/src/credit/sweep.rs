//! The sweep (DESIGN 12): what lapsed holds become when no answer settled them.
//!
//! - A lapsed `in` hold is this node's to settle: released (first in each round, so nothing
//!   below can hold it up).
//! - A lapsed `out` hold is settled only by its peer's word (`GET
//!   /v1/credit/payments/{payment}`, asked once per payment): committed with the secret the
//!   peer shows, released when the peer released or does not know the payment. Any other
//!   outcome (undecided, committed without a secret, a wrong secret, no answer) asks again
//!   later, less and less often (`next_ask_ms`, from [`ASK_AGAIN_MS_MIN`] up to
//!   [`ASK_AGAIN_MS_MAX`]), so such holds cannot fill every round; and
//!   [`OUT_WORD_WAIT_MS_MAX`] after the hold lapsed it is released anyway (logged: the two
//!   copies may then disagree). A peer that does not answer rests (backing off up to
//!   [`SWEEP_BACKOFF_MS_MAX`]).
//! - Settled holds are deleted [`SETTLED_HOLDS_KEPT_MS`] after they lapsed: far longer than a
//!   peer's sweep asks about a hold (it gives up after [`OUT_WORD_WAIT_MS_MAX`]).
//!
//! Bounded: [`SWEEP_HOLDS_MAX`] holds per round in each direction, [`SWEEP_PEERS_IN_FLIGHT_MAX`]
//! peers asked at once, [`SWEEP_ASK_MS_MAX`] per question, [`SWEEP_ROUND_MS_MAX`] for the
//! round's questions (what is left waits for the next round). One failure is logged and
//! skips that hold, never the round.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use protocol::credit::{PaymentStatus, ANSWER_SLACK_MS};

use super::holds::{self, Direction, LapsedRow, Select};
use super::{CreditBook, CreditNodeError};
use crate::client::ClientError;

/// Lapsed holds one sweep round settles at most, in each direction.
pub const SWEEP_HOLDS_MAX: i64 = 256;
/// Peers asked for their word at once.
pub const SWEEP_PEERS_IN_FLIGHT_MAX: usize = 8;
/// Longest wait for a peer's word on one payment.
pub const SWEEP_ASK_MS_MAX: u64 = 2_000;
/// Longest a round spends asking peers.
pub const SWEEP_ROUND_MS_MAX: u64 = 5_000;
/// Longest rest of a peer that did not answer before it is asked again (the rest doubles
/// from [`super::neighbors::UPKEEP_MS`] with each failure).
pub const SWEEP_BACKOFF_MS_MAX: u64 = 60_000;
/// Shortest and longest wait before a hold with no final word is asked about again: a
/// quarter of the time since it lapsed, within these.
pub const ASK_AGAIN_MS_MIN: u64 = 1_000;
pub const ASK_AGAIN_MS_MAX: u64 = 10 * 60_000;
/// How long an `out` hold waits for its peer's final word after lapsing before it is released
/// anyway (the peer gone for good, or never deciding).
pub const OUT_WORD_WAIT_MS_MAX: u64 = 24 * 3600 * 1000;
/// How long settled holds are kept after they lapsed.
pub const SETTLED_HOLDS_KEPT_MS: u64 = 30 * 24 * 3600 * 1000;

/// Peers that did not answer the sweep: when each may be asked again, and its failures in
/// a row. At most one entry per peer holding an `out` hold (only neighbours are paid).
#[derive(Default)]
pub(super) struct Resting(std::sync::Mutex<HashMap<String, (u64, u32)>>);

impl Resting {
    fn now_resting(&self, now_ms: u64) -> Vec<String> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .filter(|(_, (until, _))| *until > now_ms)
            .map(|(peer, _)| peer.clone())
            .collect()
    }

    fn failed(&self, peer: &str, now_ms: u64) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let failures = map.get(peer).map_or(0, |(_, f)| *f).saturating_add(1);
        let rest = super::neighbors::UPKEEP_MS
            .saturating_mul(1u64 << failures.min(16))
            .min(SWEEP_BACKOFF_MS_MAX);
        map.insert(peer.to_owned(), (now_ms.saturating_add(rest), failures));
    }

    fn answered(&self, peer: &str) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(peer);
    }
}

/// What the peer's word makes of one lapsed `out` hold.
enum Word {
    /// Committed, with the secret it showed.
    Commit(String),
    Release,
    /// No final word yet.
    Wait,
}

impl CreditBook {
    /// One sweep round: `in` holds (released), then `out` holds by their peers' word.
    pub(crate) async fn sweep(self: &Arc<Self>) -> Result<(), CreditNodeError> {
        let now = crate::now_ms();
        let lapsed_in = self
            .db
            .run(move |conn| holds::lapsed(conn, Direction::In, now, now, &[], SWEEP_HOLDS_MAX))
            .await?;
        for (payment, route, ..) in lapsed_in {
            // Lapsed without the secret: released (an `in` hold is this node's to settle).
            let (p, r) = (payment.clone(), route.clone());
            let released = self
                .db
                .run(move |conn| {
                    holds::write_retrying(conn, |conn| {
                        let sel = Select {
                            payment: &p,
                            direction: Direction::In,
                            route: Some(&r),
                            peer: None,
                        };
                        holds::settle(conn, sel, None)
                    })
                })
                .await;
            if let Err(e) = released {
                tracing::warn!(%payment, %route, error = %e, "releasing a lapsed hold failed");
                continue;
            }
            if self.is_waiting(&payment) {
                self.give_up(&payment).await?;
            }
        }

        let resting = self.resting.now_resting(now);
        let lapsed_out = self
            .db
            .run(move |conn| {
                holds::lapsed(
                    conn,
                    Direction::Out,
                    now.saturating_sub(ANSWER_SLACK_MS),
                    now,
                    &resting,
                    SWEEP_HOLDS_MAX,
                )
            })
            .await?;
        let mut by_peer: BTreeMap<String, BTreeMap<String, Vec<LapsedRow>>> = BTreeMap::new();
        for row in lapsed_out {
            by_peer
                .entry(row.2.clone())
                .or_default()
                .entry(row.0.clone())
                .or_default()
                .push(row);
        }
        let asking = futures_util::stream::iter(by_peer)
            .map(|(peer, payments)| self.sweep_peer(peer, payments, now))
            .buffer_unordered(SWEEP_PEERS_IN_FLIGHT_MAX)
            .collect::<Vec<()>>();
        // What the deadline cuts off is asked next round (its holds are still due).
        let _ = tokio::time::timeout(Duration::from_millis(SWEEP_ROUND_MS_MAX), asking).await;
        Ok(())
    }

    /// Ask `peer` for its word on each of its payments with lapsed holds, one payment at a
    /// time; the first question it does not answer ends its turn (and it rests).
    async fn sweep_peer(&self, peer: String, payments: BTreeMap<String, Vec<LapsedRow>>, now: u64) {
        let client = self.neighbor_client(&peer);
        let mut reachable = client.is_some();
        for (payment, rows) in payments {
            let status = match (&client, reachable) {
                (Some(c), true) => match ask(c, &payment).await {
                    Ok(status) => Some(status),
                    Err(e) => {
                        tracing::debug!(%payment, %peer, error = %e, "no word on a lapsed hold");
                        reachable = false;
                        None
                    }
                },
                _ => None,
            };
            for (_, route, _, expires_ms) in rows {
                let word = match &status {
                    Some(s) => word_of(s, &route),
                    None => Word::Wait,
                };
                let lapsed_ms = now.saturating_sub(expires_ms.unsigned_abs());
                let settle = match word {
                    Word::Commit(secret) => Some(Some(secret)),
                    Word::Release => Some(None),
                    Word::Wait if lapsed_ms > OUT_WORD_WAIT_MS_MAX => {
                        tracing::warn!(%payment, %peer,
                            "no final word from the peer for a day: releasing the hold");
                        Some(None)
                    }
                    Word::Wait => None,
                };
                let settled = match settle {
                    Some(secret) => self
                        .settle_hop(&payment, &route, Some(&peer), secret, true)
                        .await
                        .map(|_| true),
                    None => Ok(false),
                };
                let settled = settled.unwrap_or_else(|e| {
                    // A wrong secret, say: asked again later, released after a day.
                    tracing::warn!(%payment, %peer, error = %e, "settling a lapsed hold failed");
                    false
                });
                if !settled {
                    let again = (lapsed_ms / 4).clamp(ASK_AGAIN_MS_MIN, ASK_AGAIN_MS_MAX);
                    let (p, r) = (payment.clone(), route.clone());
                    let deferred = self
                        .db
                        .run(move |conn| holds::ask_later(conn, &p, &r, now + again))
                        .await;
                    if let Err(e) = deferred {
                        tracing::warn!(%payment, error = %e, "deferring a lapsed hold failed");
                    }
                }
            }
        }
        if reachable {
            self.resting.answered(&peer);
        } else {
            self.resting.failed(&peer, now);
        }
    }

    /// Delete settled holds that lapsed more than [`SETTLED_HOLDS_KEPT_MS`] ago.
    pub(crate) async fn forget_settled(&self) -> Result<usize, CreditNodeError> {
        let before = crate::now_ms().saturating_sub(SETTLED_HOLDS_KEPT_MS);
        self.db
            .run(move |conn| holds::forget_settled(conn, before))
            .await
    }
}

/// The peer's status of `payment` (its holds on lines with this node), within
/// [`SWEEP_ASK_MS_MAX`]; a payment the peer does not know is answered with no holds.
async fn ask(
    client: &crate::client::SignedClient,
    payment: &str,
) -> Result<PaymentStatus, ClientError> {
    let asked = tokio::time::timeout(
        Duration::from_millis(SWEEP_ASK_MS_MAX),
        client.query::<PaymentStatus>(&format!("/v1/credit/payments/{payment}"), 0),
    )
    .await
    .unwrap_or_else(|_| {
        Err(ClientError::Unreachable {
            url: client.base_url().to_owned(),
            message: format!("no answer within {SWEEP_ASK_MS_MAX} ms"),
        })
    });
    match asked {
        Err(e) if e.code() == Some("unknown_payment") => Ok(PaymentStatus {
            payment: payment.to_owned(),
            holds: Vec::new(),
            secret: None,
        }),
        other => other,
    }
}

/// What `status` says of `route`: committed (with the secret), released (or never held
/// there), or no final word.
fn word_of(status: &PaymentStatus, route: &str) -> Word {
    let ours: Vec<_> = status.holds.iter().filter(|h| h.route == route).collect();
    if ours.iter().any(|h| h.state == holds::COMMITTED) {
        // Committed without a secret shown is no final word.
        status.secret.clone().map_or(Word::Wait, Word::Commit)
    } else if ours.iter().any(|h| h.state == holds::HELD) {
        Word::Wait
    } else {
        Word::Release
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_peer_rests_longer_each_time_up_to_the_bound_and_wakes_on_an_answer() {
        let resting = Resting::default();
        let now = 1_000_000;
        resting.failed("p", now);
        assert_eq!(resting.now_resting(now), vec!["p".to_owned()]);
        assert!(resting
            .now_resting(now + 2 * super::super::neighbors::UPKEEP_MS)
            .is_empty());
        for _ in 0..40 {
            resting.failed("p", now);
        }
        assert_eq!(resting.now_resting(now + SWEEP_BACKOFF_MS_MAX - 1).len(), 1);
        assert!(resting.now_resting(now + SWEEP_BACKOFF_MS_MAX).is_empty());
        resting.answered("p");
        assert!(resting.now_resting(now).is_empty());
    }
}
