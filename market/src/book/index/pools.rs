//! Pools kept between matches (issue 14): a match's pre-selection depends on the request's
//! size, duration, reads, exclusions and network rule, not on k or the target, and on the
//! book only through what the scan reads. At 1,700 heartbeats/s nearly every heartbeat
//! refreshes an offer whose terms did not change, so the pool computed for one match is the
//! pool of the next ones too: kept, it spares them the scan of the whole book.
//!
//! Probes and audits do change reputations all the time (every probe answered moves an
//! agent's p_fail a little), but a change matters to a kept pool only when it touches one of
//! its few hundred members, or scores a non-member into one of its lists.
//!
//! Invariants:
//! - Every change that could alter a match's pool moves its book's `version` and is logged
//!   with the entity it changed: an agent added or removed, or any field the scan reads
//!   changed (terms, network, online, vetted, reliability), or an offer's expiry moved
//!   earlier or brought an expired offer back (`Slot::same_for_matches`).
//! - A kept pool is used at a later version only when every logged change since its own
//!   leaves it as the scan would compute it: the changed agent is not a member, and its new
//!   score is worse than the last pick of each list it belongs to (`Thresholds::admits`).
//!   With the log no longer reaching back that far, the pool is computed again.
//! - A kept pool is used only while every agent in it is live (`expires_s_min > now`), and
//!   for at most [`POOL_KEPT_MS_MAX`]: offers that expire outside the pool change only the
//!   counts of who was left out.
//! - So a pool from here is the pool the scan would compute now (but for those counts), and
//!   two processes with the same rows still choose the same agents.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::heaps::Thresholds;
use super::{MatchRequest, Pool};

/// Longest a pool is kept.
pub const POOL_KEPT_MS_MAX: u64 = 1_000;
/// Request shapes kept per currency; past it the cache starts over.
pub const POOLS_KEPT_MAX: usize = 256;
/// Changes a book logs for checking kept pools (at 1,700 probes/s, about five seconds').
pub const CHANGES_KEPT_MAX: usize = 8_192;

/// What a pool depends on besides the book.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    shard_bytes: u64,
    duration_s: u64,
    expected_read_bytes: u64,
    same_network_ok: bool,
    /// Sorted, without repeats.
    exclude: Vec<String>,
}

impl PoolKey {
    pub fn of(req: &MatchRequest, same_network_ok: bool) -> PoolKey {
        let mut exclude = req.exclude.clone();
        exclude.sort_unstable();
        exclude.dedup();
        PoolKey {
            shard_bytes: req.shard_bytes,
            duration_s: req.duration_s,
            expected_read_bytes: req.expected_read_bytes,
            same_network_ok,
            exclude,
        }
    }
}

/// A pool with what checking it against later changes needs.
pub struct KeptPool {
    pub pool: Arc<Pool>,
    /// The entities in the pool.
    pub members: HashSet<String>,
    pub thresholds: Thresholds,
}

impl KeptPool {
    pub fn new(pool: Arc<Pool>, thresholds: Thresholds) -> KeptPool {
        KeptPool {
            members: pool.agents.iter().map(|a| a.entity.clone()).collect(),
            pool,
            thresholds,
        }
    }
}

struct Kept {
    /// The book's version the pool is known to hold at.
    version: u64,
    made: Instant,
    expires_s_min: i64,
    kept: Arc<KeptPool>,
}

/// One currency's kept pools.
#[derive(Default)]
pub struct PoolCache {
    kept: Mutex<HashMap<PoolKey, Kept>>,
}

impl std::fmt::Debug for PoolCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PoolCache")
    }
}

impl PoolCache {
    /// The pool kept for `key` and the book version it holds at, unless a member's offer
    /// expired by `now_s` or it is older than [`POOL_KEPT_MS_MAX`].
    pub fn get(&self, key: &PoolKey, now_s: i64) -> Option<(u64, Arc<KeptPool>)> {
        let kept = self
            .kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let k = kept.get(key)?;
        let fresh =
            k.expires_s_min > now_s && k.made.elapsed().as_millis() < u128::from(POOL_KEPT_MS_MAX);
        fresh.then(|| (k.version, k.kept.clone()))
    }

    /// The pool kept for `key` was checked to hold at `version`.
    pub fn restamp(&self, key: &PoolKey, version: u64) {
        let mut kept = self
            .kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(k) = kept.get_mut(key) {
            k.version = k.version.max(version);
        }
    }

    /// Keep `pool`, computed for `key` on a book at `version`.
    pub fn put(&self, key: PoolKey, version: u64, pool: KeptPool) {
        let expires_s_min = pool
            .pool
            .agents
            .iter()
            .map(|a| a.offer_expires_s)
            .min()
            .unwrap_or(i64::MAX);
        let mut kept = self
            .kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.len() >= POOLS_KEPT_MAX && !kept.contains_key(&key) {
            kept.clear();
        }
        kept.insert(
            key,
            Kept {
                version,
                made: Instant::now(),
                expires_s_min,
                kept: Arc::new(pool),
            },
        );
    }
}
