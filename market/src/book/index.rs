//! The live offer index: every agent row of the database, held in memory with its offer
//! parsed and its terms packed per currency, so that a match reads no row and opens no
//! envelope (issue 14). The database stays the record; the index is a cache of it.
//!
//! Invariants:
//! - The index holds exactly the rows up to its watermark in (`changed`, entity) order, as
//!   of their last write.
//!   Writers stamp rows with the `market_clock` value of their transaction, and those values
//!   commit in order (`heartbeats::tick`), so reading `changed > watermark` misses nothing, also
//!   rows written by another market process on the same PostgreSQL.
//! - An agent's entry only moves forward: a row older than (or as old as) the one held is
//!   not applied. Heartbeats apply their own rows once committed
//!   ([`Index::apply_written`]), ahead of the watermark, and a refresh reads only
//!   (`changed`, entity) pairs first and loads the rows the index does not hold as they are.
//! - A match refreshes the index after it arrives and before it reads it
//!   ([`Market::fresh_index`]): an offer whose post was answered before the match was asked
//!   is in the book the match sees, whichever process took it.
//! - Pre-selection is deterministic: every ordering ends on the entity id, so two processes
//!   with the same rows choose the same candidates in the same order, hence the same agents.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use db::AnyConnection;
use diesel::prelude::*;
use protocol::market::{self, Offer};
use protocol::Envelope;

use super::{AgentRow, Market, MatchRequest};
use crate::error::Error;
use crate::reliability::{p_fail_of, Reputation};
use crate::schema::agents;
use crate::select::{self, Candidate};
use heaps::{by_adjusted, by_price, by_reliability, top, Heaps, HEAP_DEPTHS};

/// Candidates kept by reliability-adjusted price among vetted agents, before the exact search.
pub const PRESELECT_ADJUSTED_MAX: usize = 256;
/// The same among unvetted agents (a choice takes at most a quarter of them).
pub const PRESELECT_UNVETTED_MAX: usize = 64;
/// Candidates kept as the most reliable (the search repairs toward the target with them).
pub const PRESELECT_RELIABLE_MAX: usize = 128;
/// Candidates kept as the cheapest outright.
pub const PRESELECT_CHEAPEST_MAX: usize = 128;
/// Agents of one network kept per list: one can be chosen, a second stands in when the first
/// is excluded or breaks the vetting rule.
pub const PRESELECT_PER_NETWORK_MAX: usize = 2;
/// Rows read per index refresh statement at most; a larger backlog (the first load of a big
/// book) is read in several.
pub const REFRESH_ROWS_MAX: i64 = 20_000;

/// One agent as the index holds it.
#[derive(Debug)]
pub struct LiveAgent {
    pub entity: String,
    pub endpoint: String,
    pub network: String,
    /// The signed offer, as posted (handed to buyers in match answers).
    pub envelope: Envelope,
    /// The currencies (issuer ids) the offer lists, in its order.
    pub currencies: Vec<String>,
    pub offer_expires_s: i64,
    pub endpoint_checked_s: i64,
    pub reputation: Reputation,
    pub changed: i64,
    /// The first 64 bits of the entity's SHA-256: a deterministic order among equals that
    /// costs one integer comparison (every process computes the same).
    pub tiebreak: u64,
}

impl LiveAgent {
    /// The offer inside the envelope, verified when it was posted (not verified again).
    pub fn offer(&self) -> Option<Offer> {
        serde_json::from_str(&self.envelope.payload).ok()
    }
}

/// A row with its offer parsed: the costly part of taking a row, done before the index is
/// locked.
struct Parsed {
    row: AgentRow,
    parsed: Option<(Envelope, Offer)>,
}

impl Parsed {
    fn of(row: AgentRow) -> Parsed {
        // Stored offers were verified when posted: parse, do not verify again (a refresh at
        // 1,700 heartbeats/s would spend a core on signatures).
        let parsed = serde_json::from_str::<Envelope>(&row.offer)
            .ok()
            .and_then(|env| {
                let offer: Offer = serde_json::from_str(&env.payload).ok()?;
                (env.kind == protocol::market::OFFER_TYPE && env.signer == offer.agent.as_str())
                    .then_some((env, offer))
            });
        Parsed { row, parsed }
    }
}

/// One agent's terms in one currency, packed for the match scan: everything the scan reads
/// is here, so a scan over 100,000 slots walks memory in order and never follows the `agent`
/// pointer (but for the chosen few and for `exclude`).
#[derive(Debug, Clone)]
struct Slot {
    agent: Arc<LiveAgent>,
    network: u32,
    online: bool,
    vetted: bool,
    offer_expires_s: i64,
    /// [`Reputation::log_survival_30`] of the agent.
    log_survival_30: f64,
    /// p_fail over the reference duration (30 days, the usual contract) and its nines,
    /// computed once here: they are the scan's costliest arithmetic.
    p_fail_reference: f64,
    nines_reference: f64,
    tiebreak: u64,
    storage_per_gib_day: u64,
    write_per_kib: u64,
    read_per_kib: u64,
    contract_min: u64,
    block_bytes_max: u64,
    duration_s_max: u64,
}

impl Slot {
    /// Whether replacing `self` by `next` leaves every match's pool as it was (`pools`): the
    /// same terms, network, standing and reliability, and an expiry not moved earlier nor an
    /// expired offer brought back (as of `now_s`).
    fn same_for_matches(&self, next: &Slot, now_s: i64) -> bool {
        self.network == next.network
            && self.online == next.online
            && self.vetted == next.vetted
            && self.log_survival_30.to_bits() == next.log_survival_30.to_bits()
            && self.storage_per_gib_day == next.storage_per_gib_day
            && self.write_per_kib == next.write_per_kib
            && self.read_per_kib == next.read_per_kib
            && self.contract_min == next.contract_min
            && self.block_bytes_max == next.block_bytes_max
            && self.duration_s_max == next.duration_s_max
            && next.offer_expires_s >= self.offer_expires_s
            && self.offer_expires_s > now_s
    }
}

#[derive(Debug, Default)]
struct Book {
    slots: Vec<Slot>,
    /// Entity -> position in `slots`.
    at: HashMap<String, usize>,
    /// Moves whenever a change could alter a match's pool (`pools`).
    version: u64,
    /// The entity each of the last versions changed, oldest first (at most
    /// [`pools::CHANGES_KEPT_MAX`]): a kept pool is checked against them.
    changes: std::collections::VecDeque<(u64, String)>,
    pools: pools::PoolCache,
}

impl Book {
    fn upsert(&mut self, slot: Slot) {
        match self.at.get(&slot.agent.entity) {
            Some(&i) => {
                if !self.slots[i].same_for_matches(&slot, super::now_s()) {
                    self.bump(&slot.agent.entity);
                }
                self.slots[i] = slot;
            }
            None => {
                self.bump(&slot.agent.entity);
                self.at.insert(slot.agent.entity.clone(), self.slots.len());
                self.slots.push(slot);
            }
        }
    }

    /// A change to `entity` that could alter a match's pool.
    fn bump(&mut self, entity: &str) {
        self.version += 1;
        if self.changes.len() >= pools::CHANGES_KEPT_MAX {
            self.changes.pop_front();
        }
        self.changes.push_back((self.version, entity.to_owned()));
    }

    /// Whether every change since `version` leaves `kept` as the scan would compute it for
    /// `req` now: no member changed, and no changed agent now scores into one of its lists.
    fn unchanged_for(
        &self,
        version: u64,
        kept: &pools::KeptPool,
        req: &MatchRequest,
        now_s: i64,
    ) -> bool {
        if version == self.version {
            return true;
        }
        // The log must still hold every version after `version`.
        if self.changes.front().is_none_or(|(v, _)| *v > version + 1) {
            return false;
        }
        let excluded: HashSet<&str> = req.exclude.iter().map(String::as_str).collect();
        let prices = RequestPrices::new(req);
        self.changes
            .iter()
            .rev()
            .take_while(|(v, _)| *v > version)
            .all(|(_, entity)| {
                if kept.members.contains(entity) {
                    return false;
                }
                let Some(&i) = self.at.get(entity) else {
                    return true;
                };
                match judge(i, &self.slots[i], req, &prices, &excluded, now_s) {
                    Verdict::Scored(s) => !kept.thresholds.admits(&s),
                    _ => true,
                }
            })
    }

    fn remove(&mut self, entity: &str) {
        let Some(i) = self.at.remove(entity) else {
            return;
        };
        self.bump(entity);
        self.slots.swap_remove(i);
        if let Some(moved) = self.slots.get(i) {
            self.at.insert(moved.agent.entity.clone(), i);
        }
    }
}

/// Agents offering the match's currency that it left out, and why: said in a refusal, so a
/// buyer asking for blocks no agent sells learns that, not only that the target was missed.
#[derive(Debug, Default, Clone)]
pub struct LeftOut {
    pub offline: u64,
    pub small_blocks: u64,
    pub largest_block: u64,
    pub short_durations: u64,
    pub longest_duration_s: u64,
}

/// The book in numbers (`/metrics`).
#[derive(Debug, Default, Clone, Copy)]
pub struct BookCounts {
    /// Agents ever seen.
    pub known: u64,
    /// With an offer that has not expired.
    pub live: u64,
    /// Live and online.
    pub online: u64,
    pub audits_passed: u64,
    pub audits_failed: u64,
}

/// A live offer in one currency with the listing's figures (see [`Index::ranked`]).
pub struct Ranked {
    pub agent: Arc<LiveAgent>,
    /// The currency (issuer id) the figures are in.
    pub currency: String,
    /// The price of the reference request (1 GiB for 30 days, no reads).
    pub reference_price: u64,
    /// p_fail over the reference duration.
    pub p_fail: f64,
    pub adjusted: f64,
}

/// What a match takes from the index: the pre-selected candidates and who was left out.
pub struct Pool {
    pub agents: Vec<Arc<LiveAgent>>,
    pub candidates: Vec<Candidate>,
    pub left_out: LeftOut,
}

#[derive(Debug, Default)]
pub struct Index {
    agents: HashMap<String, Arc<LiveAgent>>,
    books: HashMap<String, Book>,
    networks: HashMap<String, u32>,
    /// The last (`changed`, entity) applied, in the order refreshes read rows; `(-1, "")`
    /// before the first load.
    watermark: (i64, String),
}

/// A scored slot of one match.
#[derive(Clone, Copy)]
struct Scored {
    slot: usize,
    /// The slot's agent's [`LiveAgent::tiebreak`]: orders equals without reading strings.
    tiebreak: u64,
    price: u64,
    p_fail: f64,
    adjusted: f64,
    network: u32,
    vetted: bool,
}

impl Index {
    /// Every currency in the book as (issuer id, issuer URL), the URL from one offer that
    /// lists it.
    pub fn issuers(&self) -> Vec<(String, String)> {
        self.books
            .iter()
            .filter_map(|(issuer, book)| {
                let offer = book.slots.first()?.agent.offer()?;
                let c = offer
                    .currencies
                    .iter()
                    .find(|c| c.issuer.as_str() == issuer)?;
                Some((issuer.clone(), c.issuer_url.clone()))
            })
            .collect()
    }

    pub fn new() -> Index {
        Index {
            watermark: (-1, String::new()),
            ..Index::default()
        }
    }

    /// The highest `changed` applied; -1 before the first load.
    pub fn watermark(&self) -> i64 {
        self.watermark.0
    }

    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }

    /// The currency offered by the most agents.
    pub fn busiest_currency(&self) -> Option<String> {
        self.books
            .iter()
            .max_by(|a, b| a.1.slots.len().cmp(&b.1.slots.len()).then(b.0.cmp(a.0)))
            .map(|(c, _)| c.clone())
    }

    pub fn get(&self, entity: &str) -> Option<Arc<LiveAgent>> {
        self.agents.get(entity).cloned()
    }

    /// Every agent, in no order.
    pub fn all(&self) -> impl Iterator<Item = &Arc<LiveAgent>> {
        self.agents.values()
    }

    /// Take a row read from the database (rows come in `changed` order).
    pub fn apply(&mut self, row: AgentRow) {
        let at = (row.changed, row.entity.clone());
        self.apply_parsed(Parsed::of(row));
        self.advance(at);
    }

    /// Take a row this process just committed, with its offer as posted (verified then), ahead
    /// of the watermark: rows of other processes before it are still to be read.
    pub fn apply_written(&mut self, row: AgentRow, envelope: Envelope, offer: Offer) {
        self.apply_parsed(Parsed {
            row,
            parsed: Some((envelope, offer)),
        });
    }

    /// Every row up to `at`, in (`changed`, entity) order, has been read.
    fn advance(&mut self, at: (i64, String)) {
        if at > self.watermark {
            self.watermark = at;
        }
    }

    /// Whether the index holds `entity` as of `changed` or later.
    fn holds(&self, entity: &str, changed: i64) -> bool {
        self.agents
            .get(entity)
            .is_some_and(|a| a.changed >= changed)
    }

    /// Take a row parsed beforehand (outside the index's lock), unless the entry held is as
    /// new or newer.
    fn apply_parsed(&mut self, Parsed { row, parsed }: Parsed) {
        if self.holds(&row.entity, row.changed) {
            return;
        }
        let old_currencies = self
            .agents
            .get(&row.entity)
            .map(|a| a.currencies.clone())
            .unwrap_or_default();
        // Out of the books of currencies the new offer no longer lists (in the others its
        // slot is replaced in place, so an unchanged offer changes no pool).
        let offered: HashSet<String> = parsed.as_ref().map_or_else(HashSet::new, |(_, o)| {
            o.currencies.iter().map(|c| c.issuer.to_string()).collect()
        });
        for c in old_currencies.iter().filter(|c| !offered.contains(*c)) {
            if let Some(book) = self.books.get_mut(c) {
                book.remove(&row.entity);
            }
        }
        let Some((envelope, offer)) = parsed else {
            // Stored offers were verified when posted; one that no longer parses cannot be
            // matched, so the agent leaves the index rather than the match failing.
            tracing::warn!(
                agent = row.entity,
                "a stored offer does not parse: not indexed"
            );
            self.agents.remove(&row.entity);
            return;
        };
        let next = u32::try_from(self.networks.len()).unwrap_or(u32::MAX);
        let network = *self.networks.entry(row.network.clone()).or_insert(next);
        let agent = Arc::new(LiveAgent {
            reputation: row.reputation(),
            tiebreak: tiebreak_of(&row.entity),
            entity: row.entity,
            endpoint: row.endpoint,
            network: row.network,
            envelope,
            currencies: offer
                .currencies
                .iter()
                .map(|c| c.issuer.to_string())
                .collect(),
            offer_expires_s: row.offer_expires_s,
            endpoint_checked_s: row.endpoint_checked_s,
            changed: row.changed,
        });
        let log_survival_30 = agent.reputation.log_survival_30();
        let p_fail_reference = p_fail_of(log_survival_30, true, market::REFERENCE_DURATION_S);
        for terms in offer.currencies {
            self.books
                .entry(terms.issuer.to_string())
                .or_default()
                .upsert(Slot {
                    agent: agent.clone(),
                    network,
                    online: agent.reputation.online,
                    vetted: agent.reputation.vetted(),
                    offer_expires_s: agent.offer_expires_s,
                    log_survival_30,
                    p_fail_reference,
                    nines_reference: select::nines(p_fail_reference),
                    tiebreak: agent.tiebreak,
                    storage_per_gib_day: terms.storage_per_gib_day,
                    write_per_kib: terms.write_per_kib,
                    read_per_kib: terms.read_per_kib,
                    contract_min: terms.contract_min,
                    block_bytes_max: offer.block_bytes_max,
                    duration_s_max: offer.duration_s_max,
                });
        }
        self.agents.insert(agent.entity.clone(), agent);
    }

    /// Every live offer in `currency` (each offer's first currency when `None`) with its
    /// reference price and p_fail, unsorted: the listing's keys, computed from the packed
    /// slots without opening an offer, so a page of a 100,000-agent book costs one pass.
    /// With `agent`, that agent's alone (if live and in the currency).
    pub fn ranked(&self, currency: Option<&str>, agent: Option<&str>, now_s: i64) -> Vec<Ranked> {
        let reference = MatchRequest {
            currency: String::new(),
            shard_bytes: market::REFERENCE_BYTES,
            data_shards: 1,
            total_shards: None,
            duration_s: market::REFERENCE_DURATION_S,
            expected_read_bytes: 0,
            max_failure_probability: 0.5,
            exclude: Vec::new(),
        };
        let prices = RequestPrices::new(&reference);
        let rank = |currency: &str, slot: &Slot| -> Ranked {
            let p_fail = slot.agent.reputation.p_fail(market::REFERENCE_DURATION_S);
            let reference_price = prices.of(slot).unwrap_or(u64::MAX);
            Ranked {
                agent: slot.agent.clone(),
                currency: currency.to_owned(),
                reference_price,
                p_fail,
                adjusted: select::adjusted_price(reference_price, p_fail),
            }
        };
        let slot_of = |currency: &str, entity: &str| -> Option<&Slot> {
            let book = self.books.get(currency)?;
            book.slots.get(*book.at.get(entity)?)
        };
        if let Some(entity) = agent {
            let Some(a) = self.agents.get(entity) else {
                return Vec::new();
            };
            let Some(c) = currency.or(a.currencies.first().map(String::as_str)) else {
                return Vec::new();
            };
            return slot_of(c, entity)
                .filter(|slot| slot.offer_expires_s > now_s)
                .map(|slot| rank(c, slot))
                .into_iter()
                .collect();
        }
        match currency {
            Some(c) => self.books.get(c).map_or_else(Vec::new, |book| {
                book.slots
                    .iter()
                    .filter(|slot| slot.offer_expires_s > now_s)
                    .map(|slot| rank(c, slot))
                    .collect()
            }),
            None => self
                .agents
                .values()
                .filter(|a| a.offer_expires_s > now_s)
                .filter_map(|a| {
                    let first = a.currencies.first()?;
                    Some(rank(first, slot_of(first, &a.entity)?))
                })
                .collect(),
        }
    }

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

    fn pool_of(
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
enum Narrow {
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
enum Verdict {
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
fn judge(
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
struct RequestPrices<'a> {
    req: &'a MatchRequest,
    /// `shard_bytes x duration_s`, when it fits a u64 (the fast path).
    byte_seconds: Option<u64>,
    write_kib: u64,
    read_kib: u64,
}

impl<'a> RequestPrices<'a> {
    fn new(req: &'a MatchRequest) -> Self {
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
    fn of(&self, slot: &Slot) -> Option<u64> {
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

fn tiebreak_of(entity: &str) -> u64 {
    let digest = ring::digest::digest(&ring::digest::SHA256, entity.as_bytes());
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_be_bytes(raw)
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

/// Apply every row written since `index`'s watermark (all of them for a new index).
pub fn load_index(conn: &mut AnyConnection, index: &mut Index) -> Result<(), Error> {
    loop {
        let (rows, more) = rows_since(conn, &index.watermark)?;
        for row in rows {
            index.apply(row);
        }
        if !more {
            return Ok(());
        }
    }
}

/// Rows after `watermark` in (`changed`, entity) order, at most [`REFRESH_ROWS_MAX`]; `true`
/// when there may be more. Rows of one transaction share a `changed` and commit together, so
/// a refresh may stop inside such a group and read its rest next time.
fn rows_since(
    conn: &mut AnyConnection,
    watermark: &(i64, String),
) -> Result<(Vec<AgentRow>, bool), Error> {
    rows_after(conn, watermark, REFRESH_ROWS_MAX)
}

/// The (`changed`, entity) of rows after `watermark`, in that order, at most `limit`; `true`
/// when there may be more. Read from the (`changed`, entity) index alone.
fn changes_after(
    conn: &mut AnyConnection,
    (changed, entity): &(i64, String),
    limit: i64,
) -> Result<(Vec<(i64, String)>, bool), Error> {
    let pairs: Vec<(i64, String)> = agents::table
        .filter(agents::changed.ge(*changed))
        .filter(agents::changed.gt(*changed).or(agents::entity.gt(entity)))
        .order((agents::changed, agents::entity))
        .select((agents::changed, agents::entity))
        .limit(limit)
        .load(conn)?;
    let more = pairs.len() as i64 == limit;
    Ok((pairs, more))
}

/// Rows a refresh applies per hold of the index's write lock.
const APPLY_ROWS_PER_LOCK_MAX: usize = 512;

/// Entities whose rows one statement reads at most.
const ROWS_PER_STATEMENT_MAX: usize = 1_000;

/// The rows of `entities`, as they are now.
fn rows_of(conn: &mut AnyConnection, entities: &[&str]) -> Result<Vec<AgentRow>, Error> {
    let mut rows = Vec::with_capacity(entities.len());
    for chunk in entities.chunks(ROWS_PER_STATEMENT_MAX) {
        rows.extend(
            agents::table
                .filter(agents::entity.eq_any(chunk))
                .load::<AgentRow>(conn)?,
        );
    }
    Ok(rows)
}

fn rows_after(
    conn: &mut AnyConnection,
    (changed, entity): &(i64, String),
    limit: i64,
) -> Result<(Vec<AgentRow>, bool), Error> {
    let rows: Vec<AgentRow> = agents::table
        // `changed >= c` on its own, so PostgreSQL scans the (changed, entity) index from `c`
        // on (with only the OR it read the whole table: 100 ms a match at 100,000 agents).
        .filter(agents::changed.ge(*changed))
        .filter(agents::changed.gt(*changed).or(agents::entity.gt(entity)))
        .order((agents::changed, agents::entity))
        .limit(limit)
        .load(conn)?;
    let more = rows.len() as i64 == limit;
    Ok((rows, more))
}

impl Market {
    /// Bring the index up to the database: rows written since it was last read, by this
    /// process or another. A refresh that started after `asked` (and so after the caller's
    /// moment) answers for every caller waiting on it; `stale_ms_max` lets callers that can
    /// live with an older view (heartbeats) skip it.
    pub async fn fresh_index(&self, stale_ms_max: u64) -> Result<(), Error> {
        self.fresh_index_timed(stale_ms_max, None).await
    }

    /// [`Market::fresh_index`], counting its parts in `timings` (a match's refresh).
    pub(super) async fn fresh_index_timed(
        &self,
        stale_ms_max: u64,
        timings: Option<&super::timings::MatchTimings>,
    ) -> Result<(), Error> {
        let asked = Instant::now();
        let fresh_enough = || {
            let last = *self
                .index_read_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            last.is_some_and(|last| {
                last >= asked || asked.duration_since(last).as_millis() < u128::from(stale_ms_max)
            })
        };
        // Callers content with an older view (1,700 heartbeats/s) do not queue for the turn:
        // a match's refresh would wait behind every one of them. Nor do they wait for a
        // refresh under way (a long one reads a whole book whose reputations all changed).
        if stale_ms_max > 0 && fresh_enough() {
            return Ok(());
        }
        let _turn = if stale_ms_max > 0 {
            match self.index_turn.try_lock() {
                Ok(turn) => turn,
                Err(_) => return Ok(()),
            }
        } else {
            self.index_turn.lock().await
        };
        if let Some(t) = timings {
            t.add(super::timings::Phase::RefreshWait, asked.elapsed());
        }
        if fresh_enough() {
            return Ok(());
        }
        let started = Instant::now();
        let index = self.index.clone();
        let db_micros = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let db_took = db_micros.clone();
        self.db
            .run(move |conn| -> Result<(), Error> {
                let began = Instant::now();
                let read = refresh_from(conn, &index);
                let us = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
                db_took.store(us, std::sync::atomic::Ordering::Relaxed);
                read
            })
            .await?;
        if let Some(t) = timings {
            let us = db_micros.load(std::sync::atomic::Ordering::Relaxed);
            t.add(
                super::timings::Phase::RefreshDb,
                std::time::Duration::from_micros(us),
            );
        }
        *self
            .index_read_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(started);
        Ok(())
    }
}

/// Bring `index` up to the database (see [`Market::fresh_index`]). Blocking.
fn refresh_from(conn: &mut AnyConnection, index: &std::sync::RwLock<Index>) -> Result<(), Error> {
    // Refreshes take turns (`index_turn`), so the watermark read here is still the index's
    // when the rows are applied. Rows are read and parsed before the lock is taken: matches
    // scanning the index wait only for the map updates.
    loop {
        let watermark = index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .watermark
            .clone();
        let (pairs, more) = changes_after(conn, &watermark, REFRESH_ROWS_MAX)?;
        let Some(last) = pairs.last().cloned() else {
            return Ok(());
        };
        let need: Vec<&str> = {
            let ix = index
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            pairs
                .iter()
                .filter(|(changed, entity)| !ix.holds(entity, *changed))
                .map(|(_, entity)| entity.as_str())
                .collect()
        };
        // Most rows new (a first load, another process's heartbeats): read the range in
        // order; a few: those rows alone.
        let rows = if need.len() * 2 > pairs.len() {
            rows_after(conn, &watermark, pairs.len() as i64)?.0
        } else {
            rows_of(conn, &need)?
        };
        let parsed: Vec<Parsed> = rows.into_iter().map(Parsed::of).collect();
        // A few hundred rows per hold of the lock, so that matches scanning meanwhile wait
        // milliseconds, not the whole backlog (the watermark moves after the last).
        let mut parsed = parsed.into_iter().peekable();
        while parsed.peek().is_some() {
            let mut ix = index
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for p in parsed.by_ref().take(APPLY_ROWS_PER_LOCK_MAX) {
                ix.apply_parsed(p);
            }
        }
        index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .advance(last);
        if !more {
            return Ok(());
        }
    }
}

impl Market {
    /// Counts over the book for `/metrics`, from an index at most `stale_ms_max` old.
    pub async fn book_counts(&self, stale_ms_max: u64) -> Result<BookCounts, Error> {
        self.fresh_index(stale_ms_max).await?;
        let now = super::now_s();
        let ix = self
            .index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut counts = BookCounts {
            known: ix.agents.len() as u64,
            ..BookCounts::default()
        };
        for a in ix.agents.values() {
            let live = a.offer_expires_s > now;
            counts.live += u64::from(live);
            counts.online += u64::from(live && a.reputation.online);
            counts.audits_passed = counts
                .audits_passed
                .saturating_add(a.reputation.audits_passed);
            counts.audits_failed = counts
                .audits_failed
                .saturating_add(a.reputation.audits_failed);
        }
        Ok(counts)
    }

    /// The indexed agent, if any (as of the last refresh).
    pub fn indexed(&self, entity: &str) -> Option<Arc<LiveAgent>> {
        self.index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(entity)
    }
}

mod heaps;
mod pools;
#[cfg(test)]
mod tests;
