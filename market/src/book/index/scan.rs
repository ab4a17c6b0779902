//! A match's pool: the scan of a currency's packed slots ([`judge`] per slot), pre-selection
//! by bounded heaps (or whole lists, their fallback), and pools kept between matches
//! (`pools`). Pure: no IO, no locks.

use std::collections::HashSet;
use std::sync::Arc;

use protocol::market;

use super::heaps::{self, by_adjusted, by_price, by_reliability, top, Heaps, HEAP_DEPTHS};
use super::{
    pools, Book, Index, LeftOut, LiveAgent, MatchRequest, Pool, Scored, Slot,
    PRESELECT_ADJUSTED_MAX, PRESELECT_CHEAPEST_MAX, PRESELECT_PER_NETWORK_MAX,
    PRESELECT_RELIABLE_MAX, PRESELECT_UNVETTED_MAX,
};
use crate::reliability::p_fail_of;
use crate::select::{self, Candidate};

impl Index {
    /// The candidates of a match: every live, online agent that can take `req`, narrowed to
    /// the best few hundred by reliability-adjusted price, by reliability and by price (each
    /// list keeping at most [`PRESELECT_PER_NETWORK_MAX`] per network unless
    /// `same_network_ok`). `None` when no live offer lists the currency.
    /// Kept between matches while the book does not change in a way that could alter it
    /// (`pools`).
    pub fn pool(&self, req: &MatchRequest, now_s: i64, same_network_ok: bool) -> Option<Arc<Pool>> {
        let book = self.books.get(&req.currency)?;
        let key = pools::PoolKey::of(req, same_network_ok);
        if let Some((version, kept)) = book.pools.get(&key, now_s) {
            if book.unchanged_for(version, &kept, req, now_s) {
                book.pools.restamp(&key, book.version);
                return Some(kept.pool.clone());
            }
        }
        let (pool, thresholds) = self.pool_with(req, now_s, same_network_ok, Narrow::Heaps)?;
        let pool = Arc::new(pool);
        if let Some(thresholds) = thresholds {
            book.pools.put(
                key,
                book.version,
                pools::KeptPool::new(pool.clone(), thresholds),
            );
        }
        Some(pool)
    }

    /// Every agent [`Index::pool`] would consider, not narrowed: for checking pre-selection
    /// against a search over the whole book (`market check-selection`).
    pub fn whole_pool(
        &self,
        req: &MatchRequest,
        now_s: i64,
        same_network_ok: bool,
    ) -> Option<Pool> {
        self.pool_of(req, now_s, same_network_ok, Narrow::Not)
    }

    pub(super) fn pool_of(
        &self,
        req: &MatchRequest,
        now_s: i64,
        same_network_ok: bool,
        narrow: Narrow,
    ) -> Option<Pool> {
        self.pool_with(req, now_s, same_network_ok, narrow)
            .map(|(pool, _)| pool)
    }

    /// The pool, and the thresholds of its lists when the heaps chose it (a pool that can
    /// be kept, `pools`).
    fn pool_with(
        &self,
        req: &MatchRequest,
        now_s: i64,
        same_network_ok: bool,
        narrow: Narrow,
    ) -> Option<(Pool, Option<heaps::Thresholds>)> {
        let book = self.books.get(&req.currency)?;
        let per_network = (!same_network_ok).then_some(PRESELECT_PER_NETWORK_MAX);
        if narrow == Narrow::Heaps {
            // The fast path: bounded heaps fed during the scan, nothing of the whole book
            // kept. It gives up (and the whole lists below decide) only when a list's network
            // cap leaves it short of what it wants at every depth.
            for depth in HEAP_DEPTHS {
                let mut heaps = Heaps::new(depth);
                let (known, left_out) = scan(book, req, now_s, |s| heaps.offer(s));
                if !known {
                    return None;
                }
                if let Some((mut chosen, thresholds)) = heaps.pick(per_network) {
                    chosen.sort_by(|a, b| by_adjusted(book, a, b));
                    return Some((pool_from(book, &chosen, left_out), Some(thresholds)));
                }
            }
        }
        let mut scored: Vec<Scored> = Vec::new();
        let (known, left_out) = scan(book, req, now_s, |s| scored.push(s));
        if !known {
            return None;
        }
        let per_network = (!same_network_ok).then_some(PRESELECT_PER_NETWORK_MAX);
        let by_adjusted = |a: &Scored, b: &Scored| by_adjusted(book, a, b);
        let by_reliability = |a: &Scored, b: &Scored| by_reliability(book, a, b);
        let by_price = |a: &Scored, b: &Scored| by_price(book, a, b);
        if narrow == Narrow::Not {
            let mut all = scored;
            all.sort_by(by_adjusted);
            return Some((pool_from(book, &all, left_out), None));
        }
        let vetted: Vec<Scored> = scored.iter().copied().filter(|s| s.vetted).collect();
        let unvetted: Vec<Scored> = scored.iter().copied().filter(|s| !s.vetted).collect();
        let mut chosen: Vec<Scored> = Vec::new();
        chosen.extend(top(
            &vetted,
            PRESELECT_ADJUSTED_MAX,
            per_network,
            by_adjusted,
        ));
        chosen.extend(top(
            &unvetted,
            PRESELECT_UNVETTED_MAX,
            per_network,
            by_adjusted,
        ));
        chosen.extend(top(
            &scored,
            PRESELECT_RELIABLE_MAX,
            per_network,
            by_reliability,
        ));
        chosen.extend(top(&scored, PRESELECT_CHEAPEST_MAX, per_network, by_price));
        chosen.sort_unstable_by_key(|s| s.slot);
        chosen.dedup_by_key(|s| s.slot);
        chosen.sort_by(by_adjusted);
        Some((pool_from(book, &chosen, left_out), None))
    }
}

/// How a pool is narrowed to candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Narrow {
    /// Bounded heaps during the scan (falls back to `Lists` when they are too shallow).
    Heaps,
    /// Every eligible slot kept, then each list picked from all of them (the fallback of
    /// `Heaps`, named for the test that compares them).
    #[cfg_attr(not(test), allow(dead_code))]
    Lists,
    /// Not narrowed: every eligible slot is a candidate.
    Not,
}

/// What one slot is to one match.
pub(super) enum Verdict {
    Expired,
    Offline,
    Excluded,
    SmallBlocks,
    ShortDurations,
    /// Its price overflows.
    Unpriced,
    Scored(Scored),
}

/// Judge slot `i` for `req` at `now_s` (the scan's per-slot step, also used to tell whether a
/// changed slot could enter a kept pool).
pub(super) fn judge(
    i: usize,
    slot: &Slot,
    req: &MatchRequest,
    prices: &RequestPrices,
    excluded: &HashSet<&str>,
    now_s: i64,
) -> Verdict {
    if slot.offer_expires_s <= now_s {
        return Verdict::Expired;
    }
    // An agent that missed its last probe cannot take a contract: never chosen, and not a
    // candidate, whatever the target (DESIGN section 6). A heartbeat brings it back.
    if !slot.online {
        return Verdict::Offline;
    }
    if !excluded.is_empty() && excluded.contains(slot.agent.entity.as_str()) {
        return Verdict::Excluded;
    }
    if slot.block_bytes_max < req.shard_bytes {
        return Verdict::SmallBlocks;
    }
    if slot.duration_s_max < req.duration_s {
        return Verdict::ShortDurations;
    }
    let Some(price) = prices.of(slot) else {
        return Verdict::Unpriced;
    };
    let (p_fail, nines) = if req.duration_s == market::REFERENCE_DURATION_S {
        (slot.p_fail_reference, slot.nines_reference)
    } else {
        let p = p_fail_of(slot.log_survival_30, true, req.duration_s);
        (p, select::nines(p))
    };
    Verdict::Scored(Scored {
        slot: i,
        tiebreak: slot.tiebreak,
        price,
        p_fail,
        adjusted: select::adjusted_by_nines(price, nines),
        network: slot.network,
        vetted: slot.vetted,
    })
}

/// Every live, online, unexcluded slot of `book` that can take `req`, scored, to `sink`;
/// answers whether any live offer lists the currency, and who was left out.
fn scan(
    book: &Book,
    req: &MatchRequest,
    now_s: i64,
    mut sink: impl FnMut(Scored),
) -> (bool, LeftOut) {
    let excluded: HashSet<&str> = req.exclude.iter().map(String::as_str).collect();
    let mut left_out = LeftOut::default();
    let mut known = false;
    let prices = RequestPrices::new(req);
    for (i, slot) in book.slots.iter().enumerate() {
        match judge(i, slot, req, &prices, &excluded, now_s) {
            Verdict::Expired => continue,
            Verdict::Offline => left_out.offline += 1,
            Verdict::SmallBlocks => {
                left_out.small_blocks += 1;
                left_out.largest_block = left_out.largest_block.max(slot.block_bytes_max);
            }
            Verdict::ShortDurations => {
                left_out.short_durations += 1;
                left_out.longest_duration_s = left_out.longest_duration_s.max(slot.duration_s_max);
            }
            Verdict::Excluded | Verdict::Unpriced => {}
            Verdict::Scored(s) => sink(s),
        }
        known = true;
    }
    (known, left_out)
}

/// A request's price terms, computed once per match, and each slot's price from them.
pub(super) struct RequestPrices<'a> {
    req: &'a MatchRequest,
    /// `shard_bytes x duration_s`, when it fits a u64 (the fast path).
    byte_seconds: Option<u64>,
    write_kib: u64,
    read_kib: u64,
}

impl<'a> RequestPrices<'a> {
    pub(super) fn new(req: &'a MatchRequest) -> Self {
        RequestPrices {
            req,
            byte_seconds: req.shard_bytes.checked_mul(req.duration_s),
            write_kib: req.shard_bytes.div_ceil(market::BYTES_PER_KIB),
            read_kib: req.expected_read_bytes.div_ceil(market::BYTES_PER_KIB),
        }
    }

    /// Exactly `protocol::market::request_price` for the slot's terms (`None` on overflow),
    /// in u64 arithmetic when it fits: the u128 division of the general form was the match
    /// scan's largest cost over a big book.
    pub(super) fn of(&self, slot: &Slot) -> Option<u64> {
        const DIVISOR: u64 = market::BYTES_PER_GIB * market::SECONDS_PER_DAY;
        let storage = match self
            .byte_seconds
            .and_then(|bs| bs.checked_mul(slot.storage_per_gib_day))
        {
            Some(numerator) => numerator.div_ceil(DIVISOR),
            None => market::storage_price(
                self.req.shard_bytes,
                self.req.duration_s,
                slot.storage_per_gib_day,
            )
            .ok()?,
        };
        storage
            .max(slot.contract_min)
            .checked_add(slot.write_per_kib.checked_mul(self.write_kib)?)?
            .checked_add(slot.read_per_kib.checked_mul(self.read_kib)?)
    }
}

/// The pool of the `chosen` slots of `book`, in that order.
fn pool_from(book: &Book, chosen: &[Scored], left_out: LeftOut) -> Pool {
    let agents: Vec<Arc<LiveAgent>> = chosen
        .iter()
        .map(|s| book.slots[s.slot].agent.clone())
        .collect();
    let candidates = chosen
        .iter()
        .zip(&agents)
        .map(|(s, a)| Candidate {
            agent: a.entity.clone(),
            p_fail: s.p_fail,
            price: s.price,
            network: a.network.clone(),
            vetted: s.vetted,
        })
        .collect();
    Pool {
        agents,
        candidates,
        left_out,
    }
}
