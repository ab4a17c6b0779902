//! The local search over one n: greedy starts, repair toward the target, improving single
//! and pair swaps with their losses in O(1), kicks. Split from `select.rs`; the invariants
//! are the module's (see `select`).

use super::*;

impl Search<'_> {
    /// The cheapest set meeting the target (none if none was found), the most durable
    /// allowed set, and whether the search was exhaustive (so the cheapest is optimal).
    pub(super) fn run(&self, smaller: Option<&[usize]>) -> (Option<Working>, Option<Choice>, bool) {
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
    pub(super) fn kick_around(&self, cheapest: &mut Option<Working>) {
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
    pub(super) fn restart(&self, cheapest: &mut Option<Working>, more: &mut Restarts) {
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
    pub(super) fn descend(
        &self,
        start: Option<Working>,
        cheapest: &mut Option<Working>,
        pairs: bool,
    ) {
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

    pub(super) fn empty(&self) -> Working {
        Working {
            members: Vec::with_capacity(self.n),
            in_set: vec![false; self.pool.candidates.len()],
            per_network: vec![0; self.pool.network_count],
            unvetted: 0,
            total: 0,
            loss: 1.0,
        }
    }

    pub(super) fn unvetted_of(&self, i: usize) -> usize {
        usize::from(!self.pool.candidates[i].vetted)
    }

    /// Whether `c` may join `w` (as one more member).
    pub(super) fn can_add(&self, w: &Working, c: usize) -> bool {
        !w.in_set[c]
            && w.unvetted + self.unvetted_of(c) <= self.unvetted_max
            && (self.same_network_ok || w.per_network[self.pool.networks[c] as usize] == 0)
    }

    /// Whether `c` may take the place of the member in `slot`.
    pub(super) fn can_swap(&self, w: &Working, slot: usize, c: usize) -> bool {
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

    pub(super) fn add(&self, w: &mut Working, c: usize) {
        w.members.push(c);
        w.in_set[c] = true;
        w.per_network[self.pool.networks[c] as usize] += 1;
        w.unvetted += self.unvetted_of(c);
        w.total += self.pool.price(c);
    }

    /// Put `c` in `slot` (allowed: [`Search::can_swap`]) and compute the set's loss by the DP.
    pub(super) fn swap(&self, w: &mut Working, slot: usize, c: usize) {
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
    pub(super) fn canonical(&self, members: &[usize]) -> Vec<usize> {
        let mut chosen = members.to_vec();
        chosen.sort_unstable_by_key(|&i| (self.pool.candidates[i].price, i));
        chosen
    }

    /// The DP's loss for a set.
    pub(super) fn loss_of(&self, members: &[usize]) -> f64 {
        let p: Vec<f64> = self
            .canonical(members)
            .iter()
            .map(|&i| self.pool.p_fail(i))
            .collect();
        loss_probability(&p, self.k)
    }

    /// The set as a choice, or `None` when its price overflows.
    pub(super) fn choice(&self, w: &Working) -> Option<Choice> {
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
    pub(super) fn greedy(&self, order: &[usize]) -> Option<Working> {
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
    pub(super) fn grow(&self, set: &[usize]) -> Option<Working> {
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
    pub(super) fn random_start(&self, rng: &mut XorShift) -> Option<Working> {
        let mut order: Vec<usize> = (0..self.pool.candidates.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        self.greedy(&order)
    }

    /// `w` with about a quarter of its members replaced by random allowed outsiders among
    /// the first `from` by reliability-adjusted price.
    pub(super) fn kick(&self, mut w: Working, from: usize, rng: &mut XorShift) -> Working {
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
    pub(super) fn working(&self, set: &[usize]) -> Working {
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
    pub(super) fn survivor_tables(&self, members: &[usize]) -> (Vec<f64>, Vec<f64>) {
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
    pub(super) fn slot_odds(&self, members: &[usize]) -> Vec<SlotOdds> {
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
    pub(super) fn pair_odds(&self, members: &[usize]) -> Vec<(usize, usize, PairOdds)> {
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
    pub(super) fn best_swap(&self, w: &Working, below_total: u128) -> Option<(usize, usize)> {
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
    pub(super) fn best_pair(
        &self,
        w: &Working,
        below_total: u128,
    ) -> Option<(usize, usize, usize, usize)> {
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
    pub(super) fn repair(&self, mut w: Working) -> Option<Working> {
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
    pub(super) fn improve(&self, mut w: Working, pairs: bool) -> Working {
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

    pub(super) fn exhaustive(&self) -> (Option<Choice>, Option<Choice>) {
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
    pub(super) fn evaluate(&self, set: &[usize]) -> Option<Choice> {
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
