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
//! - A match refreshes the index after it arrives and before it reads it
//!   ([`Market::fresh_index`]): an offer whose post was answered before the match was asked
//!   is in the book the match sees, whichever process took it.
//! - Pre-selection is deterministic: every ordering ends on the entity id, so two processes
//!   with the same rows choose the same candidates in the same order, hence the same agents.

use std::cmp::Ordering;
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

#[derive(Debug, Default)]
struct Book {
    slots: Vec<Slot>,
    /// Entity -> position in `slots`.
    at: HashMap<String, usize>,
}

impl Book {
    fn upsert(&mut self, slot: Slot) {
        match self.at.get(&slot.agent.entity) {
            Some(&i) => self.slots[i] = slot,
            None => {
                self.at.insert(slot.agent.entity.clone(), self.slots.len());
                self.slots.push(slot);
            }
        }
    }

    fn remove(&mut self, entity: &str) {
        let Some(i) = self.at.remove(entity) else {
            return;
        };
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
        self.apply_parsed(Parsed::of(row));
    }

    /// Take a row parsed beforehand (outside the index's lock).
    fn apply_parsed(&mut self, Parsed { row, parsed }: Parsed) {
        if (row.changed, row.entity.as_str()) > (self.watermark.0, self.watermark.1.as_str()) {
            self.watermark = (row.changed, row.entity.clone());
        }
        let old_currencies = self
            .agents
            .get(&row.entity)
            .map(|a| a.currencies.clone())
            .unwrap_or_default();
        for c in &old_currencies {
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

    /// The candidates of a match: every live, online agent that can take `req`, narrowed to
    /// the best few hundred by reliability-adjusted price, by reliability and by price (each
    /// list keeping at most [`PRESELECT_PER_NETWORK_MAX`] per network unless
    /// `same_network_ok`). `None` when no live offer lists the currency.
    pub fn pool(&self, req: &MatchRequest, now_s: i64, same_network_ok: bool) -> Option<Pool> {
        self.pool_of(req, now_s, same_network_ok, Narrow::Heaps)
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
                if let Some(mut chosen) = heaps.pick(per_network) {
                    chosen.sort_by(|a, b| by_adjusted(book, a, b));
                    return Some(pool_from(book, &chosen, left_out));
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
            return Some(pool_from(book, &all, left_out));
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
        Some(pool_from(book, &chosen, left_out))
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
        if slot.offer_expires_s <= now_s {
            continue;
        }
        known = true;
        // An agent that missed its last probe cannot take a contract: never chosen, and
        // not a candidate, whatever the target (DESIGN section 6). A heartbeat brings it
        // back.
        if !slot.online {
            left_out.offline += 1;
            continue;
        }
        if !excluded.is_empty() && excluded.contains(slot.agent.entity.as_str()) {
            continue;
        }
        if slot.block_bytes_max < req.shard_bytes {
            left_out.small_blocks += 1;
            left_out.largest_block = left_out.largest_block.max(slot.block_bytes_max);
            continue;
        }
        if slot.duration_s_max < req.duration_s {
            left_out.short_durations += 1;
            left_out.longest_duration_s = left_out.longest_duration_s.max(slot.duration_s_max);
            continue;
        }
        let Some(price) = prices.of(slot) else {
            continue;
        };
        let (p_fail, nines) = if req.duration_s == market::REFERENCE_DURATION_S {
            (slot.p_fail_reference, slot.nines_reference)
        } else {
            let p = p_fail_of(slot.log_survival_30, true, req.duration_s);
            (p, select::nines(p))
        };
        sink(Scored {
            slot: i,
            tiebreak: slot.tiebreak,
            price,
            p_fail,
            adjusted: select::adjusted_by_nines(price, nines),
            network: slot.network,
            vetted: slot.vetted,
        });
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

/// Ties end on the tiebreak, then (if two ids share 64 bits) on the entity itself.
fn last(book: &Book, a: &Scored, b: &Scored) -> Ordering {
    a.tiebreak.cmp(&b.tiebreak).then_with(|| {
        let entity = |s: &Scored| book.slots[s.slot].agent.entity.as_str();
        entity(a).cmp(entity(b))
    })
}

fn by_adjusted(book: &Book, a: &Scored, b: &Scored) -> Ordering {
    a.adjusted
        .total_cmp(&b.adjusted)
        .then(a.price.cmp(&b.price))
        .then_with(|| last(book, a, b))
}

fn by_reliability(book: &Book, a: &Scored, b: &Scored) -> Ordering {
    a.p_fail
        .total_cmp(&b.p_fail)
        .then(a.price.cmp(&b.price))
        .then_with(|| last(book, a, b))
}

fn by_price(book: &Book, a: &Scored, b: &Scored) -> Ordering {
    a.price
        .cmp(&b.price)
        .then(a.p_fail.total_cmp(&b.p_fail))
        .then_with(|| last(book, a, b))
}

/// A scored slot under a key that orders it as one of the `by_*` orders does (the floats
/// are non-negative, so their bits order as they do; the entity never breaks a tie here, as
/// two ids sharing the 64-bit tiebreak are left to chance).
#[derive(Clone, Copy)]
struct Keyed {
    key: (u64, u64, u64),
    scored: Scored,
}

impl PartialEq for Keyed {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Keyed {}
impl PartialOrd for Keyed {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Keyed {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

/// The best `cap` under one key, as a max-heap: a slot that cannot enter costs one compare.
struct Bounded {
    want: usize,
    cap: usize,
    seen: usize,
    heap: std::collections::BinaryHeap<Keyed>,
}

impl Bounded {
    fn new(want: usize, depth: usize) -> Bounded {
        let cap = want.saturating_mul(depth).max(1);
        Bounded {
            want,
            cap,
            seen: 0,
            heap: std::collections::BinaryHeap::new(),
        }
    }

    fn offer(&mut self, key: (u64, u64, u64), scored: Scored) {
        self.seen += 1;
        if self.heap.len() < self.cap {
            self.heap.push(Keyed { key, scored });
        } else if self.heap.peek().is_some_and(|top| key < top.key) {
            self.heap.pop();
            self.heap.push(Keyed { key, scored });
        }
    }

    /// The first `want` in order, at most `per_network` per network; `None` when the cap
    /// left it short while more slots existed than the heap held.
    fn pick(self, per_network: Option<usize>) -> Option<Vec<Scored>> {
        let truncated = self.seen > self.heap.len();
        let mut per_net: HashMap<u32, usize> = HashMap::new();
        let mut out = Vec::with_capacity(self.want);
        for k in self.heap.into_sorted_vec() {
            if out.len() == self.want {
                break;
            }
            if let Some(max) = per_network {
                let n = per_net.entry(k.scored.network).or_insert(0);
                if *n >= max {
                    continue;
                }
                *n += 1;
            }
            out.push(k.scored);
        }
        (out.len() == self.want || !truncated).then_some(out)
    }
}

/// The four pre-selection lists, fed during one scan.
struct Heaps {
    adjusted_vetted: Bounded,
    adjusted_unvetted: Bounded,
    reliable: Bounded,
    cheapest: Bounded,
}

/// How deep the pre-selection heaps go, as multiples of what each list wants: the first
/// depth serves books whose networks are spread; a second, deeper scan serves books where a
/// few /24s hold many of the best agents (a network cap then skips most of a heap); past it,
/// the whole lists decide.
const HEAP_DEPTHS: [usize; 2] = [4, 64];

impl Heaps {
    fn new(depth: usize) -> Heaps {
        Heaps {
            adjusted_vetted: Bounded::new(PRESELECT_ADJUSTED_MAX, depth),
            adjusted_unvetted: Bounded::new(PRESELECT_UNVETTED_MAX, depth),
            reliable: Bounded::new(PRESELECT_RELIABLE_MAX, depth),
            cheapest: Bounded::new(PRESELECT_CHEAPEST_MAX, depth),
        }
    }

    fn offer(&mut self, s: Scored) {
        let (adjusted, p) = (s.adjusted.to_bits(), s.p_fail.to_bits());
        if s.vetted {
            self.adjusted_vetted
                .offer((adjusted, s.price, s.tiebreak), s);
        } else {
            self.adjusted_unvetted
                .offer((adjusted, s.price, s.tiebreak), s);
        }
        self.reliable.offer((p, s.price, s.tiebreak), s);
        self.cheapest.offer((s.price, p, s.tiebreak), s);
    }

    /// The union of the lists (each slot once), or `None` if one came up short.
    fn pick(self, per_network: Option<usize>) -> Option<Vec<Scored>> {
        let mut all = self.adjusted_vetted.pick(per_network)?;
        all.extend(self.adjusted_unvetted.pick(per_network)?);
        all.extend(self.reliable.pick(per_network)?);
        all.extend(self.cheapest.pick(per_network)?);
        all.sort_unstable_by_key(|s| s.slot);
        all.dedup_by_key(|s| s.slot);
        Some(all)
    }
}

/// The first `want` of `scored` in `order`, at most `per_network` per network.
fn top(
    scored: &[Scored],
    want: usize,
    per_network: Option<usize>,
    order: impl Fn(&Scored, &Scored) -> Ordering,
) -> Vec<Scored> {
    // Most lists fill from the first few `want` in order: sort only those, and look further
    // (four times as far each time) only when networks repeat so much that they were not
    // enough.
    let mut tried = want.saturating_mul(4).max(1);
    loop {
        let mut head: Vec<Scored> = scored.to_vec();
        let truncated = head.len() > tried;
        if truncated {
            head.select_nth_unstable_by(tried, &order);
            head.truncate(tried);
        }
        head.sort_unstable_by(&order);
        let mut per_net: HashMap<u32, usize> = HashMap::new();
        let mut out = Vec::with_capacity(want);
        for s in &head {
            if out.len() == want {
                break;
            }
            if let Some(max) = per_network {
                let n = per_net.entry(s.network).or_insert(0);
                if *n >= max {
                    continue;
                }
                *n += 1;
            }
            out.push(*s);
        }
        if out.len() == want || !truncated {
            return out;
        }
        tried = tried.saturating_mul(4);
    }
}

impl Market {
    /// Bring the index up to the database: rows written since it was last read, by this
    /// process or another. A refresh that started after `asked` (and so after the caller's
    /// moment) answers for every caller waiting on it; `stale_ms_max` lets callers that can
    /// live with an older view (heartbeats) skip it.
    pub async fn fresh_index(&self, stale_ms_max: u64) -> Result<(), Error> {
        let asked = Instant::now();
        let _turn = self.index_turn.lock().await;
        {
            let last = *self
                .index_read_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(last) = last {
                if last >= asked
                    || asked.duration_since(last).as_millis() < u128::from(stale_ms_max)
                {
                    return Ok(());
                }
            }
        }
        let started = Instant::now();
        let index = self.index.clone();
        self.db
            .run(move |conn| -> Result<(), Error> {
                // Refreshes take turns (`index_turn`), so the watermark read here is still
                // the index's when the rows are applied. Rows are read and parsed before the
                // lock is taken: matches scanning the index wait only for the map updates.
                loop {
                    let watermark = index
                        .read()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .watermark
                        .clone();
                    let (rows, more) = rows_since(conn, &watermark)?;
                    let parsed: Vec<Parsed> = rows.into_iter().map(Parsed::of).collect();
                    let mut ix = index
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    for p in parsed {
                        ix.apply_parsed(p);
                    }
                    if !more {
                        return Ok(());
                    }
                }
            })
            .await?;
        *self
            .index_read_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(started);
        Ok(())
    }

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

#[cfg(test)]
mod tests_support {
    use super::*;
    use protocol::market::{self, OfferCurrency};
    use protocol::KeyPair;

    pub fn issuer() -> protocol::EntityId {
        KeyPair::generate().expect("key").entity().clone()
    }

    /// A row for a fresh agent on `net` (10.0.net.1) pricing storage at `per_gib_day`.
    pub fn row(cur: &protocol::EntityId, net: u8, per_gib_day: u64, changed: i64) -> AgentRow {
        let key = KeyPair::generate().expect("key");
        let endpoint = format!("http://10.0.{net}.1:7300");
        let offer = Offer {
            agent: key.entity().clone(),
            endpoint: endpoint.clone(),
            issued_at: market::format_rfc3339(1_000),
            expires_at: market::format_rfc3339(2_000),
            free_bytes: 1 << 40,
            block_bytes_max: 1 << 30,
            duration_s_max: 90 * 86_400,
            currencies: vec![OfferCurrency {
                issuer: cur.clone(),
                issuer_url: "http://issuer".into(),
                storage_per_gib_day: per_gib_day,
                write_per_kib: 0,
                read_per_kib: 0,
                contract_min: 1,
            }],
        };
        let env = Envelope::sign_json(&key, market::OFFER_TYPE, &offer).expect("sign");
        let rep = Reputation::default();
        AgentRow {
            entity: key.entity().to_string(),
            endpoint,
            network: format!("10.0.{net}.0/24"),
            offer: serde_json::to_string(&env).expect("json"),
            offer_expires_s: 2_000,
            last_heartbeat_s: 1_000,
            endpoint_checked_s: 1_000,
            alpha: rep.alpha,
            beta: rep.beta,
            audits_passed: 0,
            audits_failed: 0,
            online: 1,
            first_seen_s: 1_000,
            changed,
        }
    }

    pub fn request(cur: &protocol::EntityId) -> MatchRequest {
        MatchRequest {
            currency: cur.to_string(),
            shard_bytes: 1 << 20,
            data_shards: 2,
            total_shards: None,
            duration_s: 86_400,
            expected_read_bytes: 0,
            max_failure_probability: 1e-3,
            exclude: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::*;
    use super::*;

    #[test]
    fn pre_selection_is_deterministic_and_bounded_per_network() {
        let cur = issuer();
        let rows: Vec<AgentRow> = (0..600u64)
            .map(|i| row(&cur, (i % 200) as u8, 20 + i % 97, i as i64))
            .collect();
        let mut forward = Index::new();
        let mut backward = Index::new();
        for r in rows.iter().cloned() {
            forward.apply(r);
        }
        for r in rows.iter().rev().cloned() {
            backward.apply(r);
        }
        let req = request(&cur);
        let a = forward.pool(&req, 1_500, false).expect("currency known");
        let b = backward.pool(&req, 1_500, false).expect("currency known");
        let names =
            |p: &Pool| -> Vec<String> { p.candidates.iter().map(|c| c.agent.clone()).collect() };
        assert_eq!(names(&a), names(&b), "insertion order must not matter");
        let cap = PRESELECT_UNVETTED_MAX + PRESELECT_RELIABLE_MAX + PRESELECT_CHEAPEST_MAX;
        assert!(!a.candidates.is_empty() && a.candidates.len() <= cap);
        // Every list keeps at most two per network, and there are three lists.
        let mut per_net: HashMap<&str, usize> = HashMap::new();
        for c in &a.candidates {
            *per_net.entry(c.network.as_str()).or_default() += 1;
        }
        assert!(per_net
            .values()
            .all(|&n| n <= 3 * PRESELECT_PER_NETWORK_MAX));
        // The cheapest agent is always a candidate.
        let cheapest = a.candidates.iter().map(|c| c.price).min();
        let whole = forward.whole_pool(&req, 1_500, false).expect("known");
        assert_eq!(whole.candidates.len(), 600);
        assert_eq!(cheapest, whole.candidates.iter().map(|c| c.price).min());
        // Expired offers and unknown currencies leave the pool.
        assert!(forward.pool(&req, 2_000, false).is_none());
        assert!(forward.pool(&request(&issuer()), 1_500, false).is_none());
    }

    #[test]
    fn heaps_pick_what_whole_lists_pick() {
        let cur = issuer();
        let mut index = Index::new();
        for i in 0..3_000u64 {
            let mut r = row(&cur, (i % 40) as u8, 20 + (i * 7919) % 480, i as i64);
            r.audits_passed = (i % 13) as i64;
            let p30 = 1e-4 * 2000f64.powf(((i * 104_729) % 1000) as f64 / 1000.0);
            r.alpha = 100.0 * (1.0 - p30);
            r.beta = 100.0 * p30;
            index.apply(r);
        }
        // A clustered book: the 1,500 cheapest agents on three /24s, the rest spread.
        let mut clustered = Index::new();
        for i in 0..6_000u64 {
            let (net, price) = if i < 1_500 {
                ((i % 3) as u8, 20 + i % 50)
            } else {
                (
                    (3 + ((i * 2_654_435_761) >> 7) % 200) as u8,
                    100 + (i * 7919) % 400,
                )
            };
            let mut r = row(&cur, net, price, i as i64);
            r.audits_passed = (i % 13) as i64;
            clustered.apply(r);
        }
        for (index, same_network_ok) in [
            (&index, false),
            (&index, true),
            (&clustered, false),
            (&clustered, true),
        ] {
            let req = request(&cur);
            let names = |n: Narrow| -> Vec<String> {
                index
                    .pool_of(&req, 1_500, same_network_ok, n)
                    .expect("known")
                    .candidates
                    .into_iter()
                    .map(|c| c.agent)
                    .collect()
            };
            let heaps = names(Narrow::Heaps);
            assert!(!heaps.is_empty());
            assert_eq!(heaps, names(Narrow::Lists));
        }
    }

    #[test]
    fn refreshes_in_small_chunks_read_every_row_once_even_inside_a_group() {
        let cur = issuer();
        for (name, test_db) in db::testing::backends("index_chunks") {
            let dir = tempfile::tempdir().expect("dir");
            let location = match test_db.url() {
                Some(url) => db::Location::parse(&url),
                None => db::Location::sqlite_in(dir.path(), "market.sqlite"),
            };
            let database = db::Database::open(location, crate::migrations()).expect("open");
            let mut conn = database.get().expect("connection");
            // Ten rows of one transaction (one `changed`), then three of the next.
            let rows: Vec<AgentRow> = (0..13u8)
                .map(|i| row(&cur, i, 100, if i < 10 { 5 } else { 6 }))
                .collect();
            for r in &rows {
                diesel::insert_into(agents::table)
                    .values(r)
                    .execute(&mut conn)
                    .expect("insert");
            }
            let mut index = Index::new();
            let mut reads = 0;
            loop {
                let (chunk, more) = rows_after(&mut conn, &index.watermark, 3).expect("read");
                reads += 1;
                for r in chunk {
                    assert!(index.get(&r.entity).is_none(), "{name}: a row read twice");
                    index.apply(r);
                }
                if !more {
                    break;
                }
            }
            assert_eq!(index.agent_count(), 13, "{name}");
            assert_eq!(reads, 5, "{name}: 13 rows in chunks of 3");
            assert_eq!(index.watermark(), 6);
        }
    }

    #[test]
    fn the_scan_prices_exactly_as_the_protocol_does() {
        let cur = issuer();
        let base = row(&cur, 1, 100, 1);
        let mut index = Index::new();
        index.apply(base);
        let mut slot = index.books[&cur.to_string()].slots[0].clone();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |max: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % max.max(1)
        };
        let sizes = [1, 1023, 1024, 1 << 20, 1 << 40, u64::MAX / 3, u64::MAX];
        for _ in 0..20_000 {
            let mut req = request(&cur);
            req.shard_bytes = sizes[next(7) as usize].saturating_sub(next(3));
            req.duration_s = [1, 86_400, 30 * 86_400, u64::MAX / 2][next(4) as usize];
            req.expected_read_bytes = sizes[next(7) as usize];
            slot.storage_per_gib_day = [0, 1, 500, i64::MAX as u64 / 1024][next(4) as usize];
            slot.write_per_kib = next(3);
            slot.read_per_kib = [0, 2, i64::MAX as u64 / 1024][next(3) as usize];
            slot.contract_min = next(100);
            let terms = protocol::market::OfferCurrency {
                issuer: cur.clone(),
                issuer_url: String::new(),
                storage_per_gib_day: slot.storage_per_gib_day,
                write_per_kib: slot.write_per_kib,
                read_per_kib: slot.read_per_kib,
                contract_min: slot.contract_min,
            };
            let want = market::request_price(
                &terms,
                req.shard_bytes,
                req.duration_s,
                req.expected_read_bytes,
            )
            .ok();
            assert_eq!(
                RequestPrices::new(&req).of(&slot),
                want,
                "{req:?} {terms:?}"
            );
        }
    }

    #[test]
    fn a_rewritten_row_replaces_its_slot_and_offline_agents_are_left_out() {
        let cur = issuer();
        let mut index = Index::new();
        let first = row(&cur, 1, 100, 1);
        let other = row(&cur, 2, 200, 2);
        index.apply(first.clone());
        index.apply(other.clone());
        let mut again = first.clone();
        again.online = 0;
        again.changed = 3;
        index.apply(again);
        assert_eq!(index.watermark(), 3);
        assert_eq!(index.agent_count(), 2);
        let pool = index.pool(&request(&cur), 1_500, false).expect("known");
        assert_eq!(pool.candidates.len(), 1);
        assert_eq!(pool.candidates[0].agent, other.entity);
        assert_eq!(pool.left_out.offline, 1);
        // An offer that no longer parses takes its agent out of the index.
        let mut broken = other.clone();
        broken.offer = "{".into();
        broken.changed = 4;
        index.apply(broken);
        assert_eq!(index.agent_count(), 1);
        let pool = index.pool(&request(&cur), 1_500, false).expect("known");
        assert!(pool.candidates.is_empty());
    }
}

#[cfg(test)]
mod timing {
    use super::tests_support::*;
    use super::*;

    /// Not a test: `cargo test --release -p market --lib index_pool_timing -- --ignored
    /// --nocapture` prints how long pre-selection takes over 100,000 agents.
    #[test]
    #[ignore]
    fn index_pool_timing() {
        let cur = issuer();
        let mut index = Index::new();
        let started = std::time::Instant::now();
        for i in 0..100_000u64 {
            // Networks independent of price and reliability, as in the bench's books.
            let net = ((i * 2_654_435_761) >> 7) % 250;
            let mut r = row(&cur, net as u8, 20 + (i * 7919) % 480, i as i64);
            r.audits_passed = (i % 13) as i64;
            let p30 = 1e-4 * (2000f64).powf(((i * 104_729) % 1000) as f64 / 1000.0);
            r.alpha = 100.0 * (1.0 - p30);
            r.beta = 100.0 * p30;
            index.apply(r);
        }
        eprintln!("built in {:?}", started.elapsed());
        let mut req = request(&cur);
        req.data_shards = 10;
        req.max_failure_probability = 1e-6;
        req.duration_s = 30 * 86_400;
        for _ in 0..60 {
            let t = std::time::Instant::now();
            let pool = index.pool(&req, 1_500, false).expect("known");
            let picked = t.elapsed();
            let request = crate::select::Request {
                data_shards: 10,
                total_shards: None,
                max_failure_probability: 1e-6,
                same_network_ok: false,
            };
            let t = std::time::Instant::now();
            let outcome = crate::select::select(&pool.candidates, &request);
            eprintln!(
                "pool {:?} ({} candidates), select {:?}, met {}",
                picked,
                pool.candidates.len(),
                t.elapsed(),
                matches!(outcome, crate::select::Outcome::Met(_))
            );
        }
    }
}
