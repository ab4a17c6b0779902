//! Selection (DESIGN section 6): choose agents minimising the total price subject to
//! P(fewer than k of the chosen n survive) <= target. Pure: no IO.
//!
//! Invariants:
//! - The failure probability of a set is computed exactly, by the Poisson-binomial dynamic
//!   programme of [`loss_probability`], never by an approximation. The local search ranks
//!   swaps with an exact identity instead of one DP per swap (with one member replaced by an
//!   agent failing with p, a set's loss is `below + at * p`, from the other members' survivor
//!   distribution: `SlotOdds`, and likewise for two members, `PairOdds`), but the loss of
//!   every set it keeps is the DP's, within `LOSS_RELATIVE_EPSILON` of the target only the
//!   DP decides, and the reported loss is the DP's for exactly the chosen agents (asserted).
//! - A choice holds distinct agents (the caller passes one candidate per agent) on distinct
//!   networks unless `same_network_ok`, and at most [`unvetted_max`] unvetted agents.
//! - Exhaustive (so optimal) whenever the number of subsets of size n is at most
//!   [`EXHAUSTIVE_SUBSETS_MAX`]; otherwise a local search, per n, from three starts: the most
//!   reliable allowed set, the best set by reliability-adjusted price, and the cheapest set
//!   found for n - 1 grown by one. Each is repaired toward the target (the cheapest single
//!   swap that meets it, else a member for a more reliable agent) and then improved by the
//!   single swap that lowers the price most, until none does. For the n whose cheapest set is
//!   within 1/`KICK_NEAR_DIVISOR` of the best, also swaps of two members for two agents,
//!   then `KICKS` kicks (a quarter of the set replaced, repaired and improved again).
//! - n grows from k and stops once the n lowest prices add up to at least the best total found
//!   (no larger n can be cheaper).
//! - Deterministic: the same candidates and request give the same choice.
//! - Cost, for N candidates: a single-swap pass is O(n k) plus, per slot, a scan of the
//!   outsiders by price that skips the unreliable ones through a tree of p_fail by price
//!   (`MinTree`); a pair pass is O(n^2 k) plus, per pair of slots, a scan of the cheaper
//!   newcomer. Over 500 candidates (release build, n chosen by the market): about 0.25 ms
//!   for k = 10 at 1e-6, 3 ms for k = 30 at 1e-9. [`long_search`] is the slow reference the
//!   benchmarks compare against.

/// One agent the market may choose.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub agent: String,
    /// Probability the agent loses or cannot serve the data over the duration asked.
    pub p_fail: f64,
    /// The agent's price for the request, in the currency's minor units.
    pub price: u64,
    /// The /24 (IPv4) or /48 (IPv6) the agent's endpoint is on, or its host name.
    pub network: String,
    pub vetted: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// k: shards needed to recover the data.
    pub data_shards: usize,
    /// n: shards stored; `None` lets the market choose.
    pub total_shards: Option<usize>,
    /// The target: P(fewer than k survive) at most this.
    pub max_failure_probability: f64,
    pub same_network_ok: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// Indices into the candidates, cheapest first.
    pub chosen: Vec<usize>,
    pub failure_probability: f64,
    pub total_price: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Met(Choice),
    /// The target cannot be met; the most durable choice found, if any n agents can be chosen.
    CannotMeet(Option<Choice>),
}

/// Largest n the market chooses.
pub const TOTAL_SHARDS_MAX: usize = 64;
/// Subsets examined one by one at most, per n, before the search prunes candidates.
pub const EXHAUSTIVE_SUBSETS_MAX: u128 = 50_000;
/// When the market picks n, it tries n = k .. k + this (and at most the candidates there are).
pub const EXTRA_SHARDS_MAX: usize = 16;

/// P(fewer than `k` of the agents survive), where agent i fails independently with `p[i]`:
/// the Poisson-binomial distribution of survivors, by dynamic programming over agents.
pub fn loss_probability(p_fail: &[f64], k: usize) -> f64 {
    if k == 0 {
        return 0.0;
    }
    if k > p_fail.len() {
        return 1.0;
    }
    // dist[j] = P(exactly j survivors so far); only j < k matters for the answer, so the
    // survivors beyond k - 1 are lumped into dist[k].
    let mut dist = vec![0.0f64; k + 1];
    dist[0] = 1.0;
    for &p in p_fail {
        let survive = 1.0 - p;
        for j in (0..=k).rev() {
            let stay = dist[j] * p;
            let from_below = if j > 0 { dist[j - 1] * survive } else { 0.0 };
            dist[j] = if j == k {
                dist[j] + from_below
            } else {
                stay + from_below
            };
        }
    }
    dist[..k].iter().sum::<f64>().clamp(0.0, 1.0)
}

/// Reliability-adjusted price (seed 000): `price / nines` with `nines = -log10(p_fail)`.
/// Agents at p_fail >= 1 get no nines and an infinite adjusted price.
pub fn adjusted_price(price: u64, p_fail: f64) -> f64 {
    adjusted_by_nines(price, nines(p_fail))
}

/// `-log10(p_fail)`, the nines of [`adjusted_price`] (0 for p_fail >= 1).
pub fn nines(p_fail: f64) -> f64 {
    -p_fail.clamp(f64::MIN_POSITIVE, 1.0).log10()
}

/// [`adjusted_price`] from the [`nines`] of p_fail, computed beforehand.
pub fn adjusted_by_nines(price: u64, nines: f64) -> f64 {
    if nines <= 0.0 {
        f64::INFINITY
    } else {
        price as f64 / nines
    }
}

/// Unvetted agents allowed in a choice of `n`: a quarter (at least one), or more when fewer
/// than `n` vetted candidates exist at all (a young market must still be able to answer).
pub fn unvetted_max(n: usize, vetted_available: usize) -> usize {
    n.div_ceil(4).max(n.saturating_sub(vetted_available))
}

/// Choose agents for `request` among `candidates`.
pub fn select(candidates: &[Candidate], request: &Request) -> Outcome {
    choose(candidates, request, None)
}

/// A slow, thorough reference search for benchmarks: for every n [`select`] would try, what
/// [`select`] does (its kicks for every n, not only those near the best), then `restarts` more
/// starts (alternately a random allowed set, and the cheapest set found so far for that n
/// with a quarter of its members replaced by random candidates), each repaired toward the
/// target and improved by swaps of one and two members; the cheapest that meets the target.
/// Never dearer than [`select`] on the same candidates, and as exact (the DP for the reported
/// choice, the same rules). Deterministic given `seed`. Costs about `restarts` times a
/// [`select`] per n tried; fine over a whole book of 100,000 (about a second for 300
/// restarts), not for answering matches.
pub fn long_search(
    candidates: &[Candidate],
    request: &Request,
    restarts: usize,
    seed: u64,
) -> Outcome {
    let mut more = Restarts {
        count: restarts,
        rng: XorShift::new(seed),
    };
    choose(candidates, request, Some(&mut more))
}

fn choose(candidates: &[Candidate], request: &Request, mut more: Option<&mut Restarts>) -> Outcome {
    let k = request.data_shards;
    let ns: Vec<usize> = match request.total_shards {
        Some(n) => vec![n],
        None => (k..=(k + EXTRA_SHARDS_MAX).min(TOTAL_SHARDS_MAX)).collect(),
    };
    let pool = Pool::new(candidates);
    let mut most_durable: Option<Choice> = None;
    // First every n from its starts, then kicks for the n whose sets came close to the best.
    let mut runs: Vec<Run> = Vec::new();
    let mut best_total: Option<u128> = None;
    for n in ns {
        if n < k || n > candidates.len() {
            continue;
        }
        // No n agents cost less than the n cheapest: once that is not below the best found,
        // neither this n nor any larger one can be cheaper (and a best exists, so the most
        // durable choice is not needed).
        if best_total.is_some_and(|b| pool.cheapest_total(n) >= b) {
            break;
        }
        let search = Search {
            pool: &pool,
            k,
            n,
            target: request.max_failure_probability,
            same_network_ok: request.same_network_ok,
            unvetted_max: unvetted_max(n, pool.vetted),
        };
        // The cheapest set found for the previous n, one member more, is a good start.
        let smaller = runs
            .last()
            .and_then(|r| r.cheapest.as_ref())
            .map(|w| w.members.as_slice());
        let (cheapest, durable, exact) = search.run(smaller);
        if let Some(d) = durable {
            if most_durable
                .as_ref()
                .is_none_or(|b| d.failure_probability < b.failure_probability)
            {
                most_durable = Some(d);
            }
        }
        if let Some(c) = &cheapest {
            best_total = Some(best_total.map_or(c.total, |b| b.min(c.total)));
        }
        runs.push(Run {
            search,
            cheapest,
            exact,
        });
    }
    let mut best: Option<Choice> = None;
    for run in &mut runs {
        if !run.exact {
            let near = match (&run.cheapest, best_total) {
                (Some(c), Some(b)) => c.total <= b + b / KICK_NEAR_DIVISOR,
                _ => false,
            };
            if near || more.is_some() {
                run.search.kick_around(&mut run.cheapest);
            }
            if let Some(more) = more.as_deref_mut() {
                run.search.restart(&mut run.cheapest, more);
            }
        }
        if let Some(c) = run.cheapest.as_ref().and_then(|w| run.search.choice(w)) {
            if best.as_ref().is_none_or(|b| c.total_price < b.total_price) {
                best = Some(c);
            }
        }
    }
    let outcome = match best {
        Some(c) => Outcome::Met(c),
        None => Outcome::CannotMeet(most_durable),
    };
    if let Outcome::Met(c) | Outcome::CannotMeet(Some(c)) = &outcome {
        assert_reported_loss(candidates, k, c);
    }
    outcome
}

/// The search for one n, and the cheapest set it found that meets the target.
struct Run<'a> {
    search: Search<'a>,
    cheapest: Option<Working>,
    /// Found by exhaustive search: optimal, nothing to add.
    exact: bool,
}

/// Kicks ([`Search::kick_around`]) for each n whose cheapest set is within
/// 1/[`KICK_NEAR_DIVISOR`] of the best price over every n. On synthetic books of 500-600
/// candidates (k = 10, 1e-6) the kicks and pair swaps bring the matches that cost more than 1%
/// over [`long_search`]'s best from about 7% to under 1%, for about 0.05 ms.
const KICKS: usize = 8;
/// 5%.
const KICK_NEAR_DIVISOR: u128 = 20;

/// Relative tolerance between a choice's reported loss and the DP run again (the DP sums the
/// same terms in another order when the set is listed in another order). Also the margin
/// around the target inside which the search trusts only the DP, not the swap formula.
const LOSS_RELATIVE_EPSILON: f64 = 1e-9;

/// Invariant (run time, TigerBeetle's habit): the failure probability a choice reports is the
/// Poisson-binomial DP's ([`loss_probability`]) for exactly the chosen agents, and its price
/// is their sum. Cheap (one O(n k) pass, n <= [`TOTAL_SHARDS_MAX`]) next to the search, so
/// always on.
fn assert_reported_loss(candidates: &[Candidate], k: usize, choice: &Choice) {
    let p: Vec<f64> = choice
        .chosen
        .iter()
        .map(|&i| candidates[i].p_fail)
        .collect();
    let dp = loss_probability(&p, k);
    let reported = choice.failure_probability;
    assert!(
        (reported - dp).abs() <= LOSS_RELATIVE_EPSILON * reported.abs().max(dp.abs())
            || (reported - dp).abs() <= f64::MIN_POSITIVE,
        "a choice reports failure probability {reported} but the DP computes {dp} for it"
    );
    let price: Option<u64> = choice
        .chosen
        .iter()
        .try_fold(0u64, |sum, &i| sum.checked_add(candidates[i].price));
    assert_eq!(
        price,
        Some(choice.total_price),
        "a choice's total price is its agents' prices"
    );
}

/// Each candidate's network as a small integer (equal networks, equal ids): the search
/// compares networks millions of times, and comparing strings was a fifth of a match's CPU
/// (docs/BENCHMARKS.md, market bench).
fn network_ids(candidates: &[Candidate]) -> Vec<u32> {
    let mut ids: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
    candidates
        .iter()
        .map(|c| {
            let next = u32::try_from(ids.len()).unwrap_or(u32::MAX);
            *ids.entry(c.network.as_str()).or_insert(next)
        })
        .collect()
}

/// What a match computes once about its candidates, for every n it tries.
struct Pool<'a> {
    candidates: &'a [Candidate],
    /// [`network_ids`] of `candidates`.
    networks: Vec<u32>,
    /// Distinct networks (ids are below this).
    network_count: usize,
    vetted: usize,
    /// Candidates by ascending price (then index).
    by_price: Vec<usize>,
    /// The p_fail of `by_price`, to find the next candidate by price reliable enough.
    p_by_price: MinTree,
    /// Candidates by ascending p_fail (then index): most reliable first.
    by_p: Vec<usize>,
    /// Candidates by ascending reliability-adjusted price (then index).
    by_adjusted: Vec<usize>,
    /// `cheapest_prefix[i]`: the sum of the `i` lowest prices.
    cheapest_prefix: Vec<u128>,
}

impl<'a> Pool<'a> {
    fn new(candidates: &'a [Candidate]) -> Pool<'a> {
        let networks = network_ids(candidates);
        let network_count = networks.iter().max().map_or(0, |&m| m as usize + 1);
        let all: Vec<usize> = (0..candidates.len()).collect();
        let mut by_price = all.clone();
        by_price.sort_by_key(|&i| (candidates[i].price, i));
        let p_by_price = MinTree::new(by_price.iter().map(|&i| candidates[i].p_fail).collect());
        let mut by_p = all.clone();
        by_p.sort_by(|&a, &b| {
            candidates[a]
                .p_fail
                .total_cmp(&candidates[b].p_fail)
                .then(a.cmp(&b))
        });
        let adjusted: Vec<f64> = candidates
            .iter()
            .map(|c| adjusted_price(c.price, c.p_fail))
            .collect();
        let mut by_adjusted = all;
        by_adjusted.sort_by(|&a, &b| adjusted[a].total_cmp(&adjusted[b]).then(a.cmp(&b)));
        let cheapest_prefix = std::iter::once(0u128)
            .chain(by_price.iter().scan(0u128, |sum, &i| {
                *sum += u128::from(candidates[i].price);
                Some(*sum)
            }))
            .collect();
        Pool {
            candidates,
            networks,
            network_count,
            vetted: candidates.iter().filter(|c| c.vetted).count(),
            by_price,
            p_by_price,
            by_p,
            by_adjusted,
            cheapest_prefix,
        }
    }

    /// The sum of the `n` lowest prices: no n agents cost less.
    fn cheapest_total(&self, n: usize) -> u128 {
        self.cheapest_prefix[n.min(self.candidates.len())]
    }

    fn price(&self, i: usize) -> u128 {
        u128::from(self.candidates[i].price)
    }

    fn p_fail(&self, i: usize) -> f64 {
        self.candidates[i].p_fail
    }
}

/// A minimum segment tree over a fixed sequence: the first position at or after some position
/// whose value is at most some bound, in O(log len).
struct MinTree {
    /// Leaves at `size..size + len` (the rest +inf), each inner node the minimum of its two.
    mins: Vec<f64>,
    size: usize,
    len: usize,
}

impl MinTree {
    fn new(values: Vec<f64>) -> MinTree {
        let len = values.len();
        let size = len.next_power_of_two();
        let mut mins = vec![f64::INFINITY; 2 * size];
        mins[size..size + len].copy_from_slice(&values);
        for node in (1..size).rev() {
            mins[node] = mins[2 * node].min(mins[2 * node + 1]);
        }
        MinTree { mins, size, len }
    }

    /// The first position `>= from` whose value is `<= bound` (NaN values never are).
    fn first_at_most(&self, from: usize, bound: f64) -> Option<usize> {
        // The next few leaves directly (the search's hits are often close together), then
        // the tree.
        let near = (from + 8).min(self.len);
        if let Some(hit) = (from..near).find(|&i| self.mins[self.size + i] <= bound) {
            return Some(hit);
        }
        if near >= self.len {
            return None;
        }
        self.descend(1, 0, self.size, near, bound)
    }

    fn descend(&self, node: usize, lo: usize, hi: usize, from: usize, bound: f64) -> Option<usize> {
        if hi <= from || self.mins[node] > bound || self.mins[node].is_nan() {
            return None;
        }
        if hi - lo == 1 {
            return Some(lo);
        }
        let mid = (lo + hi) / 2;
        self.descend(2 * node, lo, mid, from, bound)
            .or_else(|| self.descend(2 * node + 1, mid, hi, from, bound))
    }
}

/// The extra starts of [`long_search`].
struct Restarts {
    count: usize,
    rng: XorShift,
}

/// xorshift64*: a small deterministic generator (no crate), for [`long_search`].
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        // Zero is xorshift's one fixed point.
        XorShift((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One search for sets of exactly `n` agents.
struct Search<'a> {
    pool: &'a Pool<'a>,
    k: usize,
    n: usize,
    target: f64,
    same_network_ok: bool,
    unvetted_max: usize,
}

/// A set the local search holds, with what its rules and swaps need kept up to date.
#[derive(Clone)]
struct Working {
    /// Candidate indices, one per slot.
    members: Vec<usize>,
    in_set: Vec<bool>,
    /// Members on each network (by id).
    per_network: Vec<u32>,
    unvetted: usize,
    total: u128,
    /// The DP's loss for `members` (in [`Search::canonical`] order), once the set is full.
    loss: f64,
}

/// For one slot of a set: the others' odds. With the slot's member replaced by an agent
/// failing with p, the set loses the data with probability `below + at * p`, where `below` =
/// P(the others have fewer than k - 1 survivors) and `at` = P(exactly k - 1): with the new
/// agent, exactly the outcomes that leave fewer than k survivors.
#[derive(Clone, Copy, Debug)]
struct SlotOdds {
    below: f64,
    at: f64,
}

/// For two slots of a set: the others' odds. With agents failing with pc and pd in the two
/// slots, the set loses the data with probability `below + one * (pc + pd - pc pd) + two *
/// pc pd`, where `below` = P(the others have fewer than k - 2 survivors), `one` = P(exactly
/// k - 2) (then one failure of the two loses it) and `two` = P(exactly k - 1) (both must
/// fail).
#[derive(Clone, Copy, Debug, Default)]
struct PairOdds {
    below: f64,
    one: f64,
    two: f64,
}

/// One agent more in a survivor distribution truncated to j < k: `to[j]` = P(j survive) with
/// it, from `from` without it.
fn survive_step(from: &[f64], to: &mut [f64], p: f64) {
    let survive = 1.0 - p;
    to[0] = from[0] * p;
    for j in 1..to.len() {
        to[j] = from[j] * p + from[j - 1] * survive;
    }
}

impl Search<'_> {
    /// The cheapest set meeting the target (none if none was found), the most durable
    /// allowed set, and whether the search was exhaustive (so the cheapest is optimal).
    fn run(&self, smaller: Option<&[usize]>) -> (Option<Working>, Option<Choice>, bool) {
        if subsets(self.pool.candidates.len(), self.n) <= EXHAUSTIVE_SUBSETS_MAX {
            let (cheapest, durable) = self.exhaustive();
            let cheapest = cheapest.map(|c| self.working(&c.chosen));
            return (cheapest, durable, true);
        }
        // Too many subsets: local search from the most reliable allowed set (the most
        // durable), the best by reliability-adjusted price, and the cheapest set of the
        // previous n grown by one, each repaired toward the target if needed and then
        // cheapened by swaps.
        let durable_set = self.greedy(&self.pool.by_p);
        let durable = durable_set.as_ref().and_then(|w| self.choice(w));
        let mut cheapest: Option<Working> = None;
        let grown = smaller.and_then(|set| self.grow(set));
        for start in [durable_set, self.greedy(&self.pool.by_adjusted), grown] {
            self.descend(start, &mut cheapest, false);
        }
        (cheapest, durable, false)
    }

    /// Polish the cheapest set with swaps of two members as well as one, then iterated local
    /// search: [`KICKS`] times, replace about a quarter of the cheapest set's members by
    /// allowed outsiders among the 4n best by reliability-adjusted price, repair and improve.
    /// Deterministic (the generator is seeded with n).
    fn kick_around(&self, cheapest: &mut Option<Working>) {
        if let Some(c) = cheapest.take() {
            *cheapest = Some(self.improve(c, true));
        }
        let mut rng = XorShift::new(self.n as u64);
        let from = (4 * self.n).min(self.pool.candidates.len());
        for _ in 0..KICKS {
            let Some(c) = cheapest.as_ref() else {
                return;
            };
            let start = self.kick(c.clone(), from, &mut rng);
            self.descend(Some(start), cheapest, false);
        }
    }

    /// [`long_search`]'s extra starts: alternately a random allowed set and the cheapest set
    /// kicked with outsiders from every candidate.
    fn restart(&self, cheapest: &mut Option<Working>, more: &mut Restarts) {
        let count = self.pool.candidates.len();
        for round in 0..more.count {
            let start = match cheapest.as_ref() {
                Some(c) if round % 2 == 1 => Some(self.kick(c.clone(), count, &mut more.rng)),
                _ => self.random_start(&mut more.rng),
            };
            self.descend(start, cheapest, true);
        }
    }

    /// Repair `start` toward the target, improve it, and keep it in `cheapest` if cheaper.
    fn descend(&self, start: Option<Working>, cheapest: &mut Option<Working>, pairs: bool) {
        let Some(feasible) = start.and_then(|s| self.repair(s)) else {
            return;
        };
        let improved = self.improve(feasible, pairs);
        if improved.loss <= self.target
            && u64::try_from(improved.total).is_ok()
            && cheapest.as_ref().is_none_or(|c| improved.total < c.total)
        {
            *cheapest = Some(improved);
        }
    }

    fn empty(&self) -> Working {
        Working {
            members: Vec::with_capacity(self.n),
            in_set: vec![false; self.pool.candidates.len()],
            per_network: vec![0; self.pool.network_count],
            unvetted: 0,
            total: 0,
            loss: 1.0,
        }
    }

    fn unvetted_of(&self, i: usize) -> usize {
        usize::from(!self.pool.candidates[i].vetted)
    }

    /// Whether `c` may join `w` (as one more member).
    fn can_add(&self, w: &Working, c: usize) -> bool {
        !w.in_set[c]
            && w.unvetted + self.unvetted_of(c) <= self.unvetted_max
            && (self.same_network_ok || w.per_network[self.pool.networks[c] as usize] == 0)
    }

    /// Whether `c` may take the place of the member in `slot`.
    fn can_swap(&self, w: &Working, slot: usize, c: usize) -> bool {
        let out = w.members[slot];
        if w.in_set[c]
            || w.unvetted - self.unvetted_of(out) + self.unvetted_of(c) > self.unvetted_max
        {
            return false;
        }
        if self.same_network_ok {
            return true;
        }
        let net = self.pool.networks[c];
        let others_there = w.per_network[net as usize] - u32::from(self.pool.networks[out] == net);
        others_there == 0
    }

    fn add(&self, w: &mut Working, c: usize) {
        w.members.push(c);
        w.in_set[c] = true;
        w.per_network[self.pool.networks[c] as usize] += 1;
        w.unvetted += self.unvetted_of(c);
        w.total += self.pool.price(c);
    }

    /// Put `c` in `slot` (allowed: [`Search::can_swap`]) and compute the set's loss by the DP.
    fn swap(&self, w: &mut Working, slot: usize, c: usize) {
        let out = w.members[slot];
        w.in_set[out] = false;
        w.per_network[self.pool.networks[out] as usize] -= 1;
        w.unvetted -= self.unvetted_of(out);
        w.total -= self.pool.price(out);
        w.members[slot] = c;
        w.in_set[c] = true;
        w.per_network[self.pool.networks[c] as usize] += 1;
        w.unvetted += self.unvetted_of(c);
        w.total += self.pool.price(c);
        w.loss = self.loss_of(&w.members);
    }

    /// The members in the order a choice lists them (cheapest first, then by index), so the
    /// loss the search decides on is the very number the choice reports.
    fn canonical(&self, members: &[usize]) -> Vec<usize> {
        let mut chosen = members.to_vec();
        chosen.sort_unstable_by_key(|&i| (self.pool.candidates[i].price, i));
        chosen
    }

    /// The DP's loss for a set.
    fn loss_of(&self, members: &[usize]) -> f64 {
        let p: Vec<f64> = self
            .canonical(members)
            .iter()
            .map(|&i| self.pool.p_fail(i))
            .collect();
        loss_probability(&p, self.k)
    }

    /// The set as a choice, or `None` when its price overflows.
    fn choice(&self, w: &Working) -> Option<Choice> {
        let total_price = u64::try_from(w.total).ok()?;
        let chosen = self.canonical(&w.members);
        let p: Vec<f64> = chosen.iter().map(|&i| self.pool.p_fail(i)).collect();
        Some(Choice {
            chosen,
            failure_probability: loss_probability(&p, self.k),
            total_price,
        })
    }

    /// The first `n` candidates of `order` that keep the network and vetting rules, with
    /// their loss.
    fn greedy(&self, order: &[usize]) -> Option<Working> {
        let mut w = self.empty();
        for &c in order {
            if w.members.len() == self.n {
                break;
            }
            if self.can_add(&w, c) {
                self.add(&mut w, c);
            }
        }
        if w.members.len() < self.n {
            return None;
        }
        w.loss = self.loss_of(&w.members);
        Some(w)
    }

    /// `set` (allowed, smaller than n) grown to n members by reliability-adjusted price.
    fn grow(&self, set: &[usize]) -> Option<Working> {
        let mut w = self.working(set);
        for &c in &self.pool.by_adjusted {
            if w.members.len() >= self.n {
                break;
            }
            if self.can_add(&w, c) {
                self.add(&mut w, c);
            }
        }
        if w.members.len() != self.n {
            return None;
        }
        w.loss = self.loss_of(&w.members);
        Some(w)
    }

    /// A random allowed set, if one is found by adding candidates in a random order.
    fn random_start(&self, rng: &mut XorShift) -> Option<Working> {
        let mut order: Vec<usize> = (0..self.pool.candidates.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        self.greedy(&order)
    }

    /// `w` with about a quarter of its members replaced by random allowed outsiders among
    /// the first `from` by reliability-adjusted price.
    fn kick(&self, mut w: Working, from: usize, rng: &mut XorShift) -> Working {
        for _ in 0..self.n.div_ceil(4) {
            let slot = rng.below(self.n);
            // A few tries at an outsider that keeps the rules; none found leaves the slot.
            for _ in 0..32 {
                let c = self.pool.by_adjusted[rng.below(from)];
                if self.can_swap(&w, slot, c) {
                    self.swap(&mut w, slot, c);
                    break;
                }
            }
        }
        w
    }

    /// An allowed set as the search holds it.
    fn working(&self, set: &[usize]) -> Working {
        let mut w = self.empty();
        for &c in set {
            self.add(&mut w, c);
        }
        w.loss = self.loss_of(&w.members);
        w
    }

    /// Survivor distributions of the members before and after each slot: `before[i * k + j]`
    /// = P(exactly j of `members[..i]` survive), for j < k (more survivors never matter),
    /// and `after[i * k + j]` the same for `members[i..]`. O(n k).
    fn survivor_tables(&self, members: &[usize]) -> (Vec<f64>, Vec<f64>) {
        let (n, k) = (members.len(), self.k);
        let mut before = vec![0.0f64; (n + 1) * k];
        let mut after = vec![0.0f64; (n + 1) * k];
        if k == 0 {
            return (before, after);
        }
        before[0] = 1.0;
        for (i, &m) in members.iter().enumerate() {
            let (done, rest) = before.split_at_mut((i + 1) * k);
            survive_step(&done[i * k..], &mut rest[..k], self.pool.p_fail(m));
        }
        after[n * k] = 1.0;
        for (i, &m) in members.iter().enumerate().rev() {
            let (head, done) = after.split_at_mut((i + 1) * k);
            survive_step(&done[..k], &mut head[i * k..], self.pool.p_fail(m));
        }
        (before, after)
    }

    /// For each slot of `members`, the odds of the other members ([`SlotOdds`]): O(n k).
    fn slot_odds(&self, members: &[usize]) -> Vec<SlotOdds> {
        let (n, k) = (members.len(), self.k);
        if k == 0 {
            // Nothing is needed: no set loses the data.
            return vec![
                SlotOdds {
                    below: 0.0,
                    at: 0.0
                };
                n
            ];
        }
        let (before, after) = self.survivor_tables(members);
        (0..n)
            .map(|slot| {
                // The others' survivors are those before the slot plus those after it:
                // P(fewer than k - 1) = sum over x of P(x before) P(fewer than k - 1 - x
                // after), and P(exactly k - 1) likewise.
                let b = &before[slot * k..(slot + 1) * k];
                let a = &after[(slot + 1) * k..(slot + 2) * k];
                let mut below = 0.0;
                let mut at = 0.0;
                let mut after_fewer = 0.0; // P(fewer than k - 1 - x after), x from k - 1 down
                for x in (0..k).rev() {
                    at += b[x] * a[k - 1 - x];
                    below += b[x] * after_fewer;
                    after_fewer += a[k - 1 - x];
                }
                SlotOdds { below, at }
            })
            .collect()
    }

    /// For each pair of slots s < t of `members`, the odds of the other members
    /// ([`PairOdds`]): O(n^2 k).
    fn pair_odds(&self, members: &[usize]) -> Vec<(usize, usize, PairOdds)> {
        let (n, k) = (members.len(), self.k);
        let mut odds = Vec::with_capacity(n * n.saturating_sub(1) / 2);
        if k == 0 {
            for s in 0..n {
                for t in s + 1..n {
                    odds.push((s, t, PairOdds::default()));
                }
            }
            return odds;
        }
        let (before, after) = self.survivor_tables(members);
        let mut between = vec![0.0f64; k];
        let mut next = vec![0.0f64; k];
        for s in 0..n {
            // between: the survivors of members[..s] and members[s + 1..t].
            between.copy_from_slice(&before[s * k..(s + 1) * k]);
            for t in s + 1..n {
                let a = &after[(t + 1) * k..(t + 2) * k];
                let mut pair = PairOdds::default();
                let mut after_fewer = 0.0; // P(fewer than k - 2 - x after), x from k - 2 down
                for x in (0..k).rev() {
                    pair.two += between[x] * a[k - 1 - x];
                    if x + 2 <= k {
                        pair.one += between[x] * a[k - 2 - x];
                        pair.below += between[x] * after_fewer;
                        after_fewer += a[k - 2 - x];
                    }
                }
                odds.push((s, t, pair));
                survive_step(&between, &mut next, self.pool.p_fail(members[t]));
                std::mem::swap(&mut between, &mut next);
            }
        }
        odds
    }

    /// The single swap giving the cheapest set that meets the target and costs less than
    /// `below_total`: (slot, candidate). For each slot the outsiders are scanned by ascending
    /// price from the first that could be reliable enough, so the first that keeps the rules
    /// and meets the target is that slot's best; the loss is the swap formula's
    /// ([`SlotOdds`]) except within [`LOSS_RELATIVE_EPSILON`] of the target, where the DP
    /// decides.
    fn best_swap(&self, w: &Working, below_total: u128) -> Option<(usize, usize)> {
        let pool = self.pool;
        let odds = self.slot_odds(&w.members);
        let limit = self.target * (1.0 + LOSS_RELATIVE_EPSILON);
        let sure = self.target * (1.0 - LOSS_RELATIVE_EPSILON);
        let cheapest_price = pool.by_price.first().map_or(0, |&c| pool.price(c));
        // The dearest members first: their swaps save the most, which bounds the others'.
        let mut slots: Vec<usize> = (0..w.members.len()).collect();
        slots.sort_unstable_by_key(|&s| std::cmp::Reverse(pool.price(w.members[s])));
        let mut best: Option<(usize, usize)> = None;
        let mut best_total = below_total;
        for slot in slots {
            let SlotOdds { below, at } = odds[slot];
            let rest = w.total - pool.price(w.members[slot]);
            if below > limit || rest + cheapest_price >= best_total {
                continue;
            }
            let p_max = if at > 0.0 {
                (limit - below) / at
            } else {
                f64::INFINITY
            };
            let mut next = pool.p_by_price.first_at_most(0, p_max);
            while let Some(at_price) = next {
                next = pool.p_by_price.first_at_most(at_price + 1, p_max);
                let c = pool.by_price[at_price];
                let total = rest + pool.price(c);
                if total >= best_total {
                    break;
                }
                let estimate = below + at * pool.p_fail(c);
                let meets = estimate <= limit; // false for NaN
                if !meets || !self.can_swap(w, slot, c) {
                    continue;
                }
                if estimate >= sure {
                    let mut set = w.members.clone();
                    set[slot] = c;
                    if self.loss_of(&set) > self.target {
                        continue;
                    }
                }
                best = Some((slot, c));
                best_total = total;
                break;
            }
        }
        best
    }

    /// The swap of two members for two outsiders giving the cheapest set that meets the
    /// target and costs less than `below_total`: (slot, slot, candidate, candidate). Single
    /// swaps cannot take a member out for a dearer but more reliable agent in order to take
    /// another out for a much cheaper, less reliable one; this does. For each pair of slots,
    /// the cheaper newcomer c is scanned by price and the other is the cheapest reliable
    /// enough to go with c ([`PairOdds`]), found through the tree of p_fail by price.
    fn best_pair(&self, w: &Working, below_total: u128) -> Option<(usize, usize, usize, usize)> {
        let pool = self.pool;
        let limit = self.target * (1.0 + LOSS_RELATIVE_EPSILON);
        let sure = self.target * (1.0 - LOSS_RELATIVE_EPSILON);
        let mut best = None;
        let mut best_total = below_total;
        for (s, t, odds) in self.pair_odds(&w.members) {
            let (out_s, out_t) = (w.members[s], w.members[t]);
            let rest = w.total - pool.price(out_s) - pool.price(out_t);
            if odds.below > limit {
                continue;
            }
            let unvetted_rest = w.unvetted - self.unvetted_of(out_s) - self.unvetted_of(out_t);
            let others_on = |net: u32| {
                w.per_network[net as usize]
                    - u32::from(pool.networks[out_s] == net)
                    - u32::from(pool.networks[out_t] == net)
            };
            for (at_c, &c) in pool.by_price.iter().enumerate() {
                // The other newcomer costs at least as much as c.
                if rest + 2 * pool.price(c) >= best_total {
                    break;
                }
                let net_c = pool.networks[c];
                let unvetted = unvetted_rest + self.unvetted_of(c);
                if w.in_set[c]
                    || unvetted > self.unvetted_max
                    || (!self.same_network_ok && others_on(net_c) > 0)
                {
                    continue;
                }
                let pc = pool.p_fail(c);
                // The loss with d: base + slope * pd.
                let base = odds.below + odds.one * pc;
                let slope = odds.one * (1.0 - pc) + odds.two * pc;
                if base > limit {
                    continue;
                }
                let p_max = if slope > 0.0 {
                    (limit - base) / slope
                } else {
                    f64::INFINITY
                };
                let mut next = pool.p_by_price.first_at_most(at_c + 1, p_max);
                while let Some(at_d) = next {
                    next = pool.p_by_price.first_at_most(at_d + 1, p_max);
                    let d = pool.by_price[at_d];
                    let total = rest + pool.price(c) + pool.price(d);
                    if total >= best_total {
                        break;
                    }
                    let estimate = base + slope * pool.p_fail(d);
                    let net_d = pool.networks[d];
                    let meets = estimate <= limit; // false for NaN
                    if !meets
                        || w.in_set[d]
                        || unvetted + self.unvetted_of(d) > self.unvetted_max
                        || (!self.same_network_ok && (net_d == net_c || others_on(net_d) > 0))
                    {
                        continue;
                    }
                    if estimate >= sure {
                        let mut set = w.members.clone();
                        set[s] = c;
                        set[t] = d;
                        if self.loss_of(&set) > self.target {
                            continue;
                        }
                    }
                    best = Some((s, t, c, d));
                    best_total = total;
                    break;
                }
            }
        }
        best
    }

    /// Take swaps toward the target until it is met: the cheapest single swap that meets it
    /// when there is one, else a member (the least reliable first that can be) for the most
    /// reliable allowed outsider more reliable than it. `None` if the target cannot be met
    /// this way.
    fn repair(&self, mut w: Working) -> Option<Working> {
        // Every swap toward reliability strictly lowers one member's p_fail and a swap that
        // meets the target ends the loop, so n x candidates swaps bound it.
        for _ in 0..=self.pool.candidates.len() * self.n {
            if w.loss <= self.target {
                return Some(w);
            }
            if let Some((slot, c)) = self.best_swap(&w, u128::MAX) {
                self.swap(&mut w, slot, c);
                continue;
            }
            let mut slots: Vec<usize> = (0..w.members.len()).collect();
            slots.sort_by(|&a, &b| {
                self.pool
                    .p_fail(w.members[b])
                    .total_cmp(&self.pool.p_fail(w.members[a]))
            });
            let (slot, c) = slots.iter().find_map(|&slot| {
                let p = self.pool.p_fail(w.members[slot]);
                self.pool
                    .by_p
                    .iter()
                    .take_while(|&&c| self.pool.p_fail(c) < p)
                    .find(|&&c| self.can_swap(&w, slot, c))
                    .map(|&c| (slot, c))
            })?;
            self.swap(&mut w, slot, c);
        }
        None
    }

    /// Take the single swap that lowers the price most while meeting the target
    /// ([`Search::best_swap`]), until none does: a set no single swap makes cheaper. With
    /// `pairs`, then the best swap of two members ([`Search::best_pair`]) and single swaps
    /// again, until neither lowers the price.
    fn improve(&self, mut w: Working, pairs: bool) -> Working {
        // Each swap lowers the total price, so this ends; the bound is a guard.
        for _ in 0..self.pool.candidates.len() * self.n {
            if let Some((slot, c)) = self.best_swap(&w, w.total) {
                let out = w.members[slot];
                self.swap(&mut w, slot, c);
                let meets = w.loss <= self.target; // false for NaN
                if !meets {
                    // Never: best_swap asks the DP near the target. Undo, and stop here.
                    self.swap(&mut w, slot, out);
                    break;
                }
                continue;
            }
            if !pairs {
                break;
            }
            let Some((s, t, c, d)) = self.best_pair(&w, w.total) else {
                break;
            };
            let (out_s, out_t) = (w.members[s], w.members[t]);
            self.swap(&mut w, s, c);
            self.swap(&mut w, t, d);
            let meets = w.loss <= self.target;
            if !meets {
                // Never, as above.
                self.swap(&mut w, t, out_t);
                self.swap(&mut w, s, out_s);
                break;
            }
        }
        w
    }

    fn exhaustive(&self) -> (Option<Choice>, Option<Choice>) {
        let count = self.pool.candidates.len();
        let mut cheapest: Option<Choice> = None;
        let mut durable: Option<Choice> = None;
        if self.n > count {
            return (None, None);
        }
        let mut pick: Vec<usize> = (0..self.n).collect();
        loop {
            if let Some(choice) = self.evaluate(&pick) {
                if choice.failure_probability <= self.target
                    && cheapest
                        .as_ref()
                        .is_none_or(|c| choice.total_price < c.total_price)
                {
                    cheapest = Some(choice.clone());
                }
                if durable
                    .as_ref()
                    .is_none_or(|d| choice.failure_probability < d.failure_probability)
                {
                    durable = Some(choice);
                }
            }
            if !next_combination(&mut pick, count) {
                break;
            }
        }
        (cheapest, durable)
    }

    /// The set as a choice, or `None` when it breaks the network or vetting rules or its price
    /// overflows.
    fn evaluate(&self, set: &[usize]) -> Option<Choice> {
        let unvetted: usize = set.iter().map(|&i| self.unvetted_of(i)).sum();
        if unvetted > self.unvetted_max {
            return None;
        }
        if !self.same_network_ok {
            let mut nets: Vec<u32> = set.iter().map(|&i| self.pool.networks[i]).collect();
            nets.sort_unstable();
            if nets.windows(2).any(|w| w[0] == w[1]) {
                return None;
            }
        }
        let total_price = set.iter().try_fold(0u64, |sum, &i| {
            sum.checked_add(self.pool.candidates[i].price)
        })?;
        let chosen = self.canonical(set);
        let p: Vec<f64> = chosen.iter().map(|&i| self.pool.p_fail(i)).collect();
        Some(Choice {
            chosen,
            failure_probability: loss_probability(&p, self.k),
            total_price,
        })
    }
}

/// C(n, r), saturating.
fn subsets(n: usize, r: usize) -> u128 {
    if r > n {
        return 0;
    }
    let r = r.min(n - r);
    let mut acc: u128 = 1;
    for i in 0..r {
        acc = acc.saturating_mul((n - i) as u128) / (i as u128 + 1);
    }
    acc
}

pub use protocol::book::next_combination;

#[cfg(test)]
mod tests;
