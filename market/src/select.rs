//! Selection (DESIGN section 6): choose agents minimising the total price subject to
//! P(fewer than k of the chosen n survive) <= target. Pure: no IO.
//!
//! Invariants:
//! - The failure probability of a set is computed exactly, by the Poisson-binomial dynamic
//!   programme of [`loss_probability`], never by an approximation.
//! - A choice holds distinct agents (the caller passes one candidate per agent) on distinct
//!   networks unless `same_network_ok`, and at most [`unvetted_max`] unvetted agents.
//! - Exhaustive (so optimal) whenever the number of subsets of size n is at most
//!   [`EXHAUSTIVE_SUBSETS_MAX`]; otherwise a local search: start from the most reliable set and
//!   from the best set by reliability-adjusted price, swap toward reliability until the target
//!   is met, then take single swaps that lower the price while keeping it, until none does.

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
    let nines = -p_fail.clamp(f64::MIN_POSITIVE, 1.0).log10();
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
    let k = request.data_shards;
    let ns: Vec<usize> = match request.total_shards {
        Some(n) => vec![n],
        None => (k..=(k + EXTRA_SHARDS_MAX).min(TOTAL_SHARDS_MAX)).collect(),
    };
    let vetted = candidates.iter().filter(|c| c.vetted).count();
    let networks = network_ids(candidates);
    let mut best: Option<Choice> = None;
    let mut most_durable: Option<Choice> = None;
    for n in ns {
        if n < k || n > candidates.len() {
            continue;
        }
        let search = Search {
            candidates,
            networks: &networks,
            k,
            n,
            target: request.max_failure_probability,
            same_network_ok: request.same_network_ok,
            unvetted_max: unvetted_max(n, vetted),
        };
        let (cheapest, durable) = search.run();
        if let Some(c) = cheapest {
            if best.as_ref().is_none_or(|b| c.total_price < b.total_price) {
                best = Some(c);
            }
        }
        if let Some(d) = durable {
            if most_durable
                .as_ref()
                .is_none_or(|b| d.failure_probability < b.failure_probability)
            {
                most_durable = Some(d);
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

/// Relative tolerance between a choice's reported loss and the DP run again (the DP sums the
/// same terms in another order when the set is listed in another order).
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

struct Search<'a> {
    candidates: &'a [Candidate],
    /// [`network_ids`] of `candidates`.
    networks: &'a [u32],
    k: usize,
    n: usize,
    target: f64,
    same_network_ok: bool,
    unvetted_max: usize,
}

impl Search<'_> {
    /// The cheapest set meeting the target, and the most durable set seen.
    fn run(&self) -> (Option<Choice>, Option<Choice>) {
        let all: Vec<usize> = (0..self.candidates.len()).collect();
        if subsets(all.len(), self.n) <= EXHAUSTIVE_SUBSETS_MAX {
            return self.exhaustive(&all);
        }
        // Too many subsets: local search from two starting sets, the most reliable allowed
        // set (the most durable) and the best by reliability-adjusted price, each repaired
        // toward the target if needed and then cheapened by swaps.
        let mut by_p = all.clone();
        by_p.sort_by(|&a, &b| {
            self.candidates[a]
                .p_fail
                .total_cmp(&self.candidates[b].p_fail)
        });
        let mut by_adjusted = all;
        by_adjusted.sort_by(|&a, &b| {
            let (ca, cb) = (&self.candidates[a], &self.candidates[b]);
            adjusted_price(ca.price, ca.p_fail).total_cmp(&adjusted_price(cb.price, cb.p_fail))
        });
        let durable = self.greedy(&by_p).and_then(|set| self.evaluate(&set));
        let mut cheapest: Option<Choice> = None;
        for order in [&by_p, &by_adjusted] {
            let Some(start) = self.greedy(order).and_then(|set| self.evaluate(&set)) else {
                continue;
            };
            let Some(feasible) = self.repair(start, &by_p) else {
                continue;
            };
            let c = self.improve(feasible);
            if cheapest
                .as_ref()
                .is_none_or(|b| c.total_price < b.total_price)
            {
                cheapest = Some(c);
            }
        }
        (cheapest, durable)
    }

    /// The first `n` candidates of `order` that keep the network and vetting rules.
    fn greedy(&self, order: &[usize]) -> Option<Vec<usize>> {
        let mut set: Vec<usize> = Vec::with_capacity(self.n);
        for &i in order {
            if set.len() == self.n {
                break;
            }
            set.push(i);
            if self.evaluate(&set).is_none() {
                set.pop();
            }
        }
        (set.len() == self.n).then_some(set)
    }

    /// Swap the least reliable member for the most reliable outsider that keeps the rules,
    /// until the target is met; `None` if it cannot be.
    fn repair(&self, mut choice: Choice, by_p: &[usize]) -> Option<Choice> {
        // Each swap strictly lowers one member's p_fail, so n x candidates swaps bound it.
        for _ in 0..self.candidates.len() * self.n {
            if choice.failure_probability <= self.target {
                return Some(choice);
            }
            let worst_slot = (0..choice.chosen.len()).max_by(|&a, &b| {
                let (pa, pb) = (
                    self.candidates[choice.chosen[a]].p_fail,
                    self.candidates[choice.chosen[b]].p_fail,
                );
                pa.total_cmp(&pb)
            })?;
            let worst_p = self.candidates[choice.chosen[worst_slot]].p_fail;
            let swapped = by_p.iter().find_map(|&cand| {
                if choice.chosen.contains(&cand) || self.candidates[cand].p_fail >= worst_p {
                    return None;
                }
                let mut set = choice.chosen.clone();
                set[worst_slot] = cand;
                self.evaluate(&set)
            })?;
            choice = swapped;
        }
        None
    }

    fn exhaustive(&self, pool: &[usize]) -> (Option<Choice>, Option<Choice>) {
        let mut cheapest: Option<Choice> = None;
        let mut durable: Option<Choice> = None;
        let mut pick: Vec<usize> = (0..self.n).collect();
        if self.n > pool.len() {
            return (None, None);
        }
        loop {
            let set: Vec<usize> = pick.iter().map(|&i| pool[i]).collect();
            if let Some(choice) = self.evaluate(&set) {
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
            if !next_combination(&mut pick, pool.len()) {
                break;
            }
        }
        (cheapest, durable)
    }

    /// Single swaps with any candidate that keep the target and lower the price, until none.
    fn improve(&self, mut choice: Choice) -> Choice {
        // Each accepted swap lowers the total price, so this ends; the bound is a guard.
        for _ in 0..self.candidates.len() * self.n {
            let mut better: Option<Choice> = None;
            for slot in 0..choice.chosen.len() {
                let best_price = better
                    .as_ref()
                    .map_or(choice.total_price, |b| b.total_price);
                // The total is the members' sum (asserted in `select`), so this cannot wrap.
                let others = choice
                    .total_price
                    .saturating_sub(self.candidates[choice.chosen[slot]].price);
                for cand in 0..self.candidates.len() {
                    // A swap that does not lower the price is never taken: skip its loss DP.
                    let price = others.checked_add(self.candidates[cand].price);
                    if price.is_none_or(|p| p >= best_price) || choice.chosen.contains(&cand) {
                        continue;
                    }
                    let mut set = choice.chosen.clone();
                    set[slot] = cand;
                    if let Some(c) = self.evaluate(&set) {
                        let best_price = better
                            .as_ref()
                            .map_or(choice.total_price, |b| b.total_price);
                        if c.failure_probability <= self.target && c.total_price < best_price {
                            better = Some(c);
                        }
                    }
                }
            }
            match better {
                Some(b) => choice = b,
                None => break,
            }
        }
        choice
    }

    /// The set as a choice, or `None` when it breaks the network or vetting rules or its price
    /// overflows.
    fn evaluate(&self, set: &[usize]) -> Option<Choice> {
        let unvetted = set.iter().filter(|&&i| !self.candidates[i].vetted).count();
        if unvetted > self.unvetted_max {
            return None;
        }
        if !self.same_network_ok {
            let mut nets: Vec<u32> = set.iter().map(|&i| self.networks[i]).collect();
            nets.sort_unstable();
            if nets.windows(2).any(|w| w[0] == w[1]) {
                return None;
            }
        }
        let total_price = set
            .iter()
            .try_fold(0u64, |sum, &i| sum.checked_add(self.candidates[i].price))?;
        let p: Vec<f64> = set.iter().map(|&i| self.candidates[i].p_fail).collect();
        let mut chosen = set.to_vec();
        chosen.sort_by_key(|&i| self.candidates[i].price);
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
mod tests {
    use super::*;

    /// Independent check: sum over all 2^n outcomes.
    fn brute_loss(p: &[f64], k: usize) -> f64 {
        let n = p.len();
        let mut total = 0.0;
        for mask in 0u32..(1 << n) {
            let survivors = mask.count_ones() as usize;
            if survivors >= k {
                continue;
            }
            let mut prob = 1.0;
            for (i, pi) in p.iter().enumerate() {
                prob *= if mask & (1 << i) != 0 { 1.0 - pi } else { *pi };
            }
            total += prob;
        }
        total
    }

    #[test]
    fn loss_probability_matches_enumeration() {
        let p = [0.1, 0.25, 0.03, 0.5, 0.07, 0.2, 0.01];
        for k in 0..=p.len() + 1 {
            let a = loss_probability(&p, k);
            let b = if k > p.len() { 1.0 } else { brute_loss(&p, k) };
            assert!((a - b).abs() < 1e-12, "k={k}: {a} vs {b}");
        }
    }

    #[test]
    fn combinations_are_all_visited() {
        let mut pick = vec![0, 1, 2];
        let mut count = 1;
        while next_combination(&mut pick, 6) {
            count += 1;
        }
        assert_eq!(count, 20);
        assert_eq!(subsets(6, 3), 20);
        assert_eq!(subsets(14, 7), 3432);
    }

    #[test]
    fn seed_fairness_example() {
        // Seed 000 section 2.4: A1A1 fails with p = 0.25, B2B2 and C3C3 with 0.5 each. The pair
        // protects exactly like A1A1 alone, so a fair market prices the pair like A1A1: at
        // equal reliability-adjusted prices, price(B2B2) + price(C3C3) = price(A1A1).
        let pair = loss_probability(&[0.5, 0.5], 1);
        assert!((pair - 0.25).abs() < 1e-12);
        let per_nine = 1000.0;
        let price_of = |p: f64| (per_nine * -p.log10()).round() as u64;
        let (a, b) = (price_of(0.25), price_of(0.5));
        assert_eq!(a, 2 * b);
        assert!((adjusted_price(a, 0.25) - adjusted_price(b, 0.5)).abs() < 1.0);
        let cand = |name: &str, p_fail: f64, price: u64| Candidate {
            agent: name.into(),
            p_fail,
            price,
            network: name.into(),
            vetted: true,
        };
        let request = Request {
            data_shards: 1,
            total_shards: None,
            max_failure_probability: 0.25 + 1e-9,
            same_network_ok: false,
        };
        // Equal totals either way; one cheaper unit on C3C3 tips the choice to the pair, one
        // more tips it back to A1A1.
        for (c_price, want) in [(b - 1, vec!["B2B2", "C3C3"]), (b + 1, vec!["A1A1"])] {
            let cands = [
                cand("A1A1", 0.25, a),
                cand("B2B2", 0.5, b),
                cand("C3C3", 0.5, c_price),
            ];
            let Outcome::Met(choice) = select(&cands, &request) else {
                panic!("target reachable");
            };
            let mut got: Vec<&str> = choice
                .chosen
                .iter()
                .map(|&i| cands[i].agent.as_str())
                .collect();
            got.sort_unstable();
            assert_eq!(got, want);
            assert!((choice.failure_probability - 0.25).abs() < 1e-9);
        }
    }
}
