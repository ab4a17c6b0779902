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

mod search;

#[cfg(test)]
mod tests;
