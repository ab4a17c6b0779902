//! Unit tests of selection: the DP, the swap formula, the local search against exhaustive
//! search.

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

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `count` candidates: p_fail log-uniform in 1e-4..0.3, prices 50..1049, a quarter unvetted,
/// networks among `networks`.
fn random_book(rng: &mut Rng, count: usize, networks: usize) -> Vec<Candidate> {
    (0..count)
        .map(|i| Candidate {
            agent: format!("agent-{i}"),
            p_fail: 10f64.powf(-4.0 + rng.unit() * (4.0 + 0.3f64.log10())),
            price: 50 + rng.below(1000) as u64,
            network: format!("net-{}", rng.below(networks)),
            vetted: rng.below(4) != 0,
        })
        .collect()
}

fn search<'a>(pool: &'a Pool<'a>, k: usize, n: usize, target: f64, same: bool) -> Search<'a> {
    Search {
        pool,
        k,
        n,
        target,
        same_network_ok: same,
        unvetted_max: unvetted_max(n, pool.vetted),
    }
}

/// `a` and `b` equal but for rounding.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs()) + 1e-300
}

#[test]
fn swap_formulas_equal_the_dp() {
    let mut rng = Rng(0x0dd5_0f5e_7000_0001);
    for round in 0..300 {
        let cands = random_book(&mut rng, 30, 30);
        let pool = Pool::new(&cands);
        let k = rng.below(9); // 0..=8, k = 0 included
        let n = (k + rng.below(7)).max(2);
        let s = search(&pool, k, n, 1e-6, true);
        let mut order: Vec<usize> = (0..cands.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let members = &order[..n];
        let outsiders = &order[n..];
        let p = |set: &[usize]| -> Vec<f64> { set.iter().map(|&i| cands[i].p_fail).collect() };
        for (slot, odds) in s.slot_odds(members).into_iter().enumerate() {
            for _ in 0..3 {
                let c = outsiders[rng.below(outsiders.len())];
                let mut set = members.to_vec();
                set[slot] = c;
                let dp = loss_probability(&p(&set), k);
                let formula = odds.below + odds.at * cands[c].p_fail;
                assert!(
                    close(dp, formula),
                    "round {round} k {k} n {n} slot {slot}: DP {dp} vs formula {formula}"
                );
            }
        }
        let pairs = s.pair_odds(members);
        assert_eq!(pairs.len(), n * (n - 1) / 2);
        for (a, b, odds) in pairs {
            assert!(a < b);
            let c = outsiders[rng.below(outsiders.len())];
            let d = outsiders[rng.below(outsiders.len())];
            let mut set = members.to_vec();
            set[a] = c;
            set[b] = d;
            let dp = loss_probability(&p(&set), k);
            let (pc, pd) = (cands[c].p_fail, cands[d].p_fail);
            let formula = odds.below + odds.one * (pc + pd - pc * pd) + odds.two * pc * pd;
            assert!(
                close(dp, formula),
                "round {round} k {k} n {n} slots {a},{b}: DP {dp} vs formula {formula}"
            );
        }
    }
}

#[test]
fn min_tree_finds_the_first_value_at_most_the_bound() {
    let mut rng = Rng(0x7ee5_0000_0000_0003);
    for len in [0, 1, 2, 3, 7, 8, 9, 31, 100] {
        let values: Vec<f64> = (0..len).map(|_| rng.unit()).collect();
        let tree = MinTree::new(values.clone());
        for _ in 0..200 {
            let from = rng.below(len + 2);
            let bound = rng.unit() * rng.unit();
            let linear = (from..len).find(|&i| values[i] <= bound);
            assert_eq!(
                tree.first_at_most(from, bound),
                linear,
                "len {len} from {from} bound {bound}"
            );
        }
        assert_eq!(tree.first_at_most(0, f64::INFINITY), (len > 0).then_some(0));
    }
}

/// The rules and the exact loss of a choice, checked from scratch.
fn assert_legal(cands: &[Candidate], req: &Request, n: usize, choice: &Choice) {
    assert_eq!(choice.chosen.len(), n);
    let mut agents: Vec<usize> = choice.chosen.clone();
    agents.sort_unstable();
    agents.dedup();
    assert_eq!(agents.len(), n, "distinct agents");
    if !req.same_network_ok {
        let mut nets: Vec<&str> = choice
            .chosen
            .iter()
            .map(|&i| cands[i].network.as_str())
            .collect();
        nets.sort_unstable();
        nets.dedup();
        assert_eq!(nets.len(), n, "distinct networks");
    }
    let vetted = cands.iter().filter(|c| c.vetted).count();
    let unvetted = choice.chosen.iter().filter(|&&i| !cands[i].vetted).count();
    assert!(unvetted <= unvetted_max(n, vetted), "unvetted cap");
    let p: Vec<f64> = choice.chosen.iter().map(|&i| cands[i].p_fail).collect();
    assert!(close(
        choice.failure_probability,
        loss_probability(&p, req.data_shards)
    ));
    assert_eq!(
        choice.total_price,
        choice.chosen.iter().map(|&i| cands[i].price).sum::<u64>()
    );
}

#[test]
fn local_search_is_near_the_exhaustive_optimum() {
    let mut rng = Rng(0x1eaf_5ea2_c400_0002);
    let (mut feasible, mut within, mut optimal, mut infeasible) = (0, 0, 0, 0);
    let mut worst = 1.0f64;
    for round in 0..90 {
        // Just above EXHAUSTIVE_SUBSETS_MAX subsets, so select searches locally.
        let (count, n) = [(36, 4), (27, 5), (22, 6)][round % 3];
        assert!(subsets(count, n) > EXHAUSTIVE_SUBSETS_MAX);
        let cands = random_book(&mut rng, count, count * 3 / 4);
        let k = 1 + rng.below(n - 1);
        let req = Request {
            data_shards: k,
            total_shards: Some(n),
            max_failure_probability: [1e-2, 1e-3, 1e-4, 1e-6, 1e-8][rng.below(5)],
            same_network_ok: rng.below(3) == 0,
        };
        let pool = Pool::new(&cands);
        let s = search(
            &pool,
            k,
            n,
            req.max_failure_probability,
            req.same_network_ok,
        );
        let (optimum, _) = s.exhaustive();
        match (select(&cands, &req), optimum) {
            (Outcome::Met(choice), Some(opt)) => {
                assert_legal(&cands, &req, n, &choice);
                assert!(choice.failure_probability <= req.max_failure_probability);
                assert!(
                    choice.total_price >= opt.total_price,
                    "round {round}: below the optimum"
                );
                feasible += 1;
                let ratio = choice.total_price as f64 / opt.total_price as f64;
                worst = worst.max(ratio);
                if ratio <= 1.01 {
                    within += 1;
                }
                if choice.total_price == opt.total_price {
                    optimal += 1;
                }
            }
            (Outcome::CannotMeet(_), Some(_)) => feasible += 1,
            (Outcome::CannotMeet(durable), None) => {
                infeasible += 1;
                if let Some(d) = durable {
                    assert_legal(&cands, &req, n, &d);
                }
            }
            (Outcome::Met(_), None) => panic!("round {round}: met a target no set meets"),
        }
    }
    println!(
        "{feasible} feasible ({within} within 1% of the optimum, {optimal} optimal, worst \
         {worst:.4}), {infeasible} not"
    );
    assert!(
        feasible >= 20 && infeasible >= 1,
        "the instances exercise both outcomes"
    );
    assert!(
        within * 10 >= feasible * 9,
        "{within} of {feasible} within 1%"
    );
}

/// Single and pair swaps, by brute force: none gives a cheaper allowed set meeting the target.
fn assert_no_cheaper_swap(cands: &[Candidate], req: &Request, choice: &Choice) {
    let vetted = cands.iter().filter(|c| c.vetted).count();
    let n = choice.chosen.len();
    let legal_and_cheaper = |set: &[usize]| {
        let mut agents = set.to_vec();
        agents.sort_unstable();
        agents.dedup();
        let mut nets: Vec<&str> = set.iter().map(|&i| cands[i].network.as_str()).collect();
        nets.sort_unstable();
        nets.dedup();
        let unvetted = set.iter().filter(|&&i| !cands[i].vetted).count();
        let price: u64 = set.iter().map(|&i| cands[i].price).sum();
        let p: Vec<f64> = set.iter().map(|&i| cands[i].p_fail).collect();
        agents.len() == n
            && (req.same_network_ok || nets.len() == n)
            && unvetted <= unvetted_max(n, vetted)
            && price < choice.total_price
            && loss_probability(&p, req.data_shards) <= req.max_failure_probability
    };
    let outsiders: Vec<usize> = (0..cands.len())
        .filter(|i| !choice.chosen.contains(i))
        .collect();
    for s in 0..n {
        for &c in &outsiders {
            let mut set = choice.chosen.clone();
            set[s] = c;
            assert!(!legal_and_cheaper(&set), "a cheaper single swap exists");
            for t in s + 1..n {
                for &d in &outsiders {
                    if d == c {
                        continue;
                    }
                    let mut set = set.clone();
                    set[t] = d;
                    assert!(!legal_and_cheaper(&set), "a cheaper pair swap exists");
                }
            }
        }
    }
}

#[test]
fn no_single_or_pair_swap_improves_a_polished_choice() {
    let mut rng = Rng(0x9a12_5a5a_0000_0004);
    let mut checked = 0;
    for _ in 0..12 {
        let cands = random_book(&mut rng, 28, 24);
        let req = Request {
            data_shards: 3,
            total_shards: Some(6),
            max_failure_probability: 1e-5,
            same_network_ok: false,
        };
        // The only n, so the best: select polishes it with pair swaps.
        if let Outcome::Met(choice) = select(&cands, &req) {
            assert_legal(&cands, &req, 6, &choice);
            assert_no_cheaper_swap(&cands, &req, &choice);
            checked += 1;
        }
    }
    assert!(checked >= 8, "{checked} instances met");
}

#[test]
fn long_search_is_never_dearer_than_select_and_repeats_itself() {
    let mut rng = Rng(0x5106_5ea2_0000_0005);
    for round in 0..6 {
        let cands = random_book(&mut rng, 80, 60);
        let req = Request {
            data_shards: 4,
            total_shards: None,
            max_failure_probability: 1e-6,
            same_network_ok: false,
        };
        let quick = select(&cands, &req);
        let long = long_search(&cands, &req, 10, round);
        assert_eq!(long, long_search(&cands, &req, 10, round), "deterministic");
        match (&quick, &long) {
            (Outcome::Met(q), Outcome::Met(l)) => {
                assert_legal(&cands, &req, l.chosen.len(), l);
                assert!(l.total_price <= q.total_price, "round {round}");
            }
            (Outcome::CannotMeet(_), _) => {}
            (Outcome::Met(_), Outcome::CannotMeet(_)) => {
                panic!("round {round}: long search lost a choice")
            }
        }
    }
}
