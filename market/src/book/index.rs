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
//!   ([`crate::book::Market::fresh_index`]): an offer whose post was answered before the match was asked
//!   is in the book the match sees, whichever process took it.
//! - Pre-selection is deterministic: every ordering ends on the entity id, so two processes
//!   with the same rows choose the same candidates in the same order, hence the same agents.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use protocol::market::{self, Offer};
use protocol::Envelope;

use super::{AgentRow, MatchRequest};
use crate::reliability::{p_fail_of, Reputation};
use crate::select::{self, Candidate};

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
}

fn tiebreak_of(entity: &str) -> u64 {
    let digest = ring::digest::digest(&ring::digest::SHA256, entity.as_bytes());
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_be_bytes(raw)
}

mod heaps;
mod pools;
mod refresh;
mod scan;
pub use refresh::load_index;
use scan::{judge, RequestPrices, Verdict};
#[cfg(test)]
mod tests;
