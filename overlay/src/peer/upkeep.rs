//! Upkeep: what the peer no longer needs is dropped, so its tables grow with its deals, not
//! with every solicitation it ever answered.
//!
//! - Bids never accepted are deleted an hour after they expired.
//! - Retrieval tokens are deleted a day after they expired (used or not).
//! - A solicitation's stored answer (kept to answer a replay of the same request) is
//!   dropped after [`ANSWER_KEEP_MS`]; the row stays, with its fee, for the totals.

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;

use super::{to_i64, Peer};
use crate::error::Error;
use crate::schema::{peer_bids, peer_solicitations, peer_tokens};

/// How often the upkeep runs.
pub const UPKEEP_INTERVAL_MS: u64 = 60_000;
/// Unaccepted bids are kept this long past their expiry.
pub const BID_KEEP_MS: u64 = 3_600_000;
/// Tokens are kept this long past their expiry.
pub const TOKEN_KEEP_MS: u64 = 86_400_000;
/// A solicitation's answer is kept this long (longer than a signed request stays fresh).
pub const ANSWER_KEEP_MS: u64 = 600_000;

/// What one round dropped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub bids: usize,
    pub tokens: usize,
    pub answers: usize,
}

impl Peer {
    /// Drop what is no longer needed at `now_ms`.
    pub async fn prune(&self, now_ms: u64) -> Result<Pruned, Error> {
        self.db
            .run(move |conn| {
                let bids_before = to_i64(now_ms.saturating_sub(BID_KEEP_MS))?;
                let tokens_before = to_i64(now_ms.saturating_sub(TOKEN_KEEP_MS))?;
                let answers_before = to_i64(now_ms.saturating_sub(ANSWER_KEEP_MS))?;
                let bids = diesel::delete(
                    peer_bids::table
                        .filter(peer_bids::accepted_ms.is_null())
                        .filter(peer_bids::expires_ms.lt(bids_before)),
                )
                .execute(conn)?;
                let tokens = diesel::delete(
                    peer_tokens::table.filter(peer_tokens::expires_ms.lt(tokens_before)),
                )
                .execute(conn)?;
                let answers = diesel::update(
                    peer_solicitations::table
                        .filter(peer_solicitations::seen_ms.lt(answers_before))
                        .filter(peer_solicitations::answer.is_not_null()),
                )
                .set(peer_solicitations::answer.eq(None::<String>))
                .execute(conn)?;
                Ok(Pruned {
                    bids,
                    tokens,
                    answers,
                })
            })
            .await
    }
}

/// Run [`Peer::prune`] every [`UPKEEP_INTERVAL_MS`], forever.
pub async fn upkeep(peer: Arc<Peer>) {
    loop {
        tokio::time::sleep(Duration::from_millis(UPKEEP_INTERVAL_MS)).await;
        match peer.prune(node::now_ms()).await {
            Ok(p) if p != Pruned::default() => tracing::debug!(?p, "pruned"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "upkeep"),
        }
    }
}
