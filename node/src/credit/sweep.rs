//! The sweep (DESIGN 12): what lapsed holds become when no answer settled them.
//!
//! - A lapsed `out` hold is settled only by its peer's word (`GET
//!   /v1/credit/payments/{payment}`): committed with the secret the peer shows, released when
//!   the peer released or never heard of it, asked again next round while the peer is
//!   undecided. A peer that does not answer rests (backing off up to
//!   [`SWEEP_BACKOFF_MS_MAX`]) so it cannot hold up the others, and after
//!   [`OUT_WORD_WAIT_MS_MAX`] without its word the hold is released anyway (logged: the two
//!   copies may then disagree).
//! - A lapsed `in` hold is this node's to settle: released.
//! - Settled holds are deleted [`SETTLED_HOLDS_KEPT_MS`] after they lapsed, once no peer's
//!   sweep can ask about them any more.
//!
//! Bounded: [`SWEEP_HOLDS_MAX`] holds per round in each direction, [`SWEEP_PEERS_IN_FLIGHT_MAX`]
//! peers asked at once, [`SWEEP_ASK_MS_MAX`] per question. One failure (a peer's wrong secret,
//! a line that no longer covers a hold) is logged and skips that hold, never the round.

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
/// Longest wait for a peer's word on one hold.
pub const SWEEP_ASK_MS_MAX: u64 = 2_000;
/// Longest rest of a peer that did not answer before it is asked again (the rest doubles
/// from [`super::neighbors::UPKEEP_MS`] with each failure).
pub const SWEEP_BACKOFF_MS_MAX: u64 = 60_000;
/// How long an `out` hold waits for its peer's word after lapsing before it is released
/// anyway (the peer gone for good).
pub const OUT_WORD_WAIT_MS_MAX: u64 = 24 * 3600 * 1000;
/// How long settled holds are kept after they lapsed: longer than any peer's sweep asks.
pub const SETTLED_HOLDS_KEPT_MS: u64 = 7 * 24 * 3600 * 1000;

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
    /// Undecided, or no word (yet).
    Wait,
}

impl CreditBook {
    /// One sweep round: `out` holds by their peers' word, then `in` holds (released).
    pub(crate) async fn sweep(self: &Arc<Self>) -> Result<(), CreditNodeError> {
        let now = crate::now_ms();
        let resting = self.resting.now_resting(now);
        let lapsed_out = self
            .db
            .run(move |conn| {
                holds::lapsed(
                    conn,
                    Direction::Out,
                    now.saturating_sub(ANSWER_SLACK_MS),
                    &resting,
                    SWEEP_HOLDS_MAX,
                )
            })
            .await?;
        let mut by_peer: BTreeMap<String, Vec<LapsedRow>> = BTreeMap::new();
        for row in lapsed_out {
            by_peer.entry(row.2.clone()).or_default().push(row);
        }
        futures_util::stream::iter(by_peer)
            .map(|(peer, rows)| self.sweep_peer(peer, rows, now))
            .buffer_unordered(SWEEP_PEERS_IN_FLIGHT_MAX)
            .collect::<Vec<()>>()
            .await;

        let lapsed_in = self
            .db
            .run(move |conn| holds::lapsed(conn, Direction::In, now, &[], SWEEP_HOLDS_MAX))
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
        Ok(())
    }

    /// Ask `peer` for its word on each of its lapsed holds, one at a time; the first question
    /// it does not answer ends its turn (and it rests).
    async fn sweep_peer(&self, peer: String, rows: Vec<LapsedRow>, now: u64) {
        let client = self.neighbor_client(&peer);
        let mut reachable = client.is_some();
        for (payment, route, _, created_ms, _) in rows {
            let word = match (&client, reachable) {
                (Some(c), true) => match ask(c, &payment, &route).await {
                    Ok(word) => word,
                    Err(e) => {
                        tracing::debug!(%payment, %peer, error = %e, "no word on a lapsed hold");
                        reachable = false;
                        Word::Wait
                    }
                },
                _ => Word::Wait,
            };
            let word = match word {
                Word::Wait if !reachable => {
                    let waited = now.saturating_sub(created_ms.unsigned_abs());
                    if waited <= OUT_WORD_WAIT_MS_MAX {
                        continue;
                    }
                    tracing::warn!(%payment, %peer,
                        "no word from the peer for a day: releasing the hold");
                    Word::Release
                }
                w => w,
            };
            let secret = match word {
                Word::Wait => continue,
                Word::Commit(secret) => Some(secret),
                Word::Release => None,
            };
            let settled = self
                .settle_hop(&payment, &route, Some(&peer), secret, true)
                .await;
            if let Err(e) = settled {
                // A wrong secret, say: this hold waits (at most a day), the others go on.
                tracing::warn!(%payment, %peer, error = %e, "settling a lapsed hold failed");
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

/// The peer's word on `route` of `payment`, within [`SWEEP_ASK_MS_MAX`].
async fn ask(
    client: &crate::client::SignedClient,
    payment: &str,
    route: &str,
) -> Result<Word, ClientError> {
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
    let status = match asked {
        Ok(status) => status,
        Err(e) if e.code() == Some("unknown_payment") => return Ok(Word::Release),
        Err(e) => return Err(e),
    };
    let ours: Vec<_> = status.holds.iter().filter(|h| h.route == route).collect();
    Ok(if ours.iter().any(|h| h.state == holds::COMMITTED) {
        // Committed without a secret shown is no word: asked again next round.
        status.secret.map_or(Word::Wait, Word::Commit)
    } else if ours.iter().any(|h| h.state == holds::HELD) {
        Word::Wait
    } else {
        Word::Release
    })
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
