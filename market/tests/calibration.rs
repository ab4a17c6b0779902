//! Calibration in a simulation: agents with known true failure rates are audited over time
//! through the market's reliability model. The estimated p_fail ranks them correctly and
//! converges toward the true rates, and selections made on the estimates meet the durability
//! target when outcomes are drawn from the true rates. The figures are printed
//! (`cargo test -p market --test calibration -- --nocapture`).

use market::reliability::{Outcome, Reputation};
use market::select::{loss_probability, select, Candidate, Outcome as Selected, Request};
use protocol::market::REFERENCE_DURATION_S;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// True failure probabilities over the reference 30 days (what an audit finds failed).
const TRUE_P: [f64; 8] = [0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.25, 0.4];

/// Audit every agent `rounds` times; answers the estimates, averaged over `runs` seeds.
fn estimates(rounds: usize, runs: u64) -> Vec<f64> {
    let mut sum = vec![0.0; TRUE_P.len()];
    for run in 0..runs {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (run + 1).wrapping_mul(0x1234_5678_9abc));
        for (i, &p) in TRUE_P.iter().enumerate() {
            let mut rep = Reputation::default();
            for _ in 0..rounds {
                rep.observe(if rng.unit() < p {
                    Outcome::AuditFailed
                } else {
                    Outcome::AuditPassed
                });
            }
            sum[i] += rep.p_fail(REFERENCE_DURATION_S);
        }
    }
    sum.iter().map(|s| s / runs as f64).collect()
}

fn mean_abs_error(est: &[f64]) -> f64 {
    est.iter()
        .zip(TRUE_P)
        .map(|(e, t)| (e - t).abs())
        .sum::<f64>()
        / est.len() as f64
}

#[test]
fn estimates_rank_agents_and_converge_to_true_rates() {
    let mut errors = Vec::new();
    for rounds in [10, 50, 200, 1000] {
        let est = estimates(rounds, 200);
        let err = mean_abs_error(&est);
        println!(
            "after {rounds:>4} audits: mean |p_est - p_true| = {err:.4}; estimates {:?}",
            est.iter().map(|e| format!("{e:.3}")).collect::<Vec<_>>()
        );
        errors.push(err);
        if rounds >= 200 {
            assert!(
                est.windows(2).all(|w| w[0] < w[1]),
                "after {rounds} audits the estimates rank the agents as their true rates do"
            );
        }
    }
    assert!(
        errors[3] < errors[0] / 3.0,
        "error shrinks with evidence: {errors:?}"
    );
    assert!(
        errors[3] < 0.01,
        "after 1000 audits within 0.01 on average: {errors:?}"
    );
    // One run (not averaged) is also ranked correctly once the evidence is in.
    let single = estimates(1000, 1);
    let mut order: Vec<usize> = (0..TRUE_P.len()).collect();
    order.sort_by(|&a, &b| single[a].total_cmp(&single[b]));
    let inversions = order.windows(2).filter(|w| w[0] > w[1]).count();
    println!("one run after 1000 audits: {inversions} adjacent inversions in the ranking");
    assert!(inversions <= 1);
}

#[test]
fn selections_meet_the_target_in_simulated_outcomes() {
    // 24 agents with true rates across TRUE_P, estimated from 1000 audits each.
    let mut rng = Rng(42);
    let mut candidates = Vec::new();
    let mut truth = Vec::new();
    for i in 0..24 {
        let p = TRUE_P[i % TRUE_P.len()];
        let mut rep = Reputation::default();
        for _ in 0..1000 {
            rep.observe(if rng.unit() < p {
                Outcome::AuditFailed
            } else {
                Outcome::AuditPassed
            });
        }
        candidates.push(Candidate {
            agent: format!("agent-{i}"),
            p_fail: rep.p_fail(REFERENCE_DURATION_S),
            price: 100 + (rng.next() % 100),
            network: format!("net-{i}"),
            vetted: true,
        });
        truth.push(p);
    }
    for (k, target) in [(2, 1e-2), (3, 1e-3), (4, 1e-3)] {
        let req = Request {
            data_shards: k,
            total_shards: None,
            max_failure_probability: target,
            same_network_ok: false,
        };
        let Selected::Met(choice) = select(&candidates, &req) else {
            panic!("the target {target} is reachable with 24 agents");
        };
        let true_p: Vec<f64> = choice.chosen.iter().map(|&i| truth[i]).collect();
        let true_loss = loss_probability(&true_p, k);
        // Monte Carlo of the outcome with the true rates.
        let trials = 200_000;
        let mut lost = 0;
        for _ in 0..trials {
            let survivors = true_p.iter().filter(|&&p| rng.unit() >= p).count();
            if survivors < k {
                lost += 1;
            }
        }
        let observed = lost as f64 / trials as f64;
        println!(
            "k={k} target={target:e}: n={} price={} estimated loss {:.2e}, true loss {:.2e}, \
             simulated loss {:.2e} ({lost}/{trials})",
            choice.chosen.len(),
            choice.total_price,
            choice.failure_probability,
            true_loss,
            observed
        );
        // Estimates carry noise: allow the true loss 20% over the target, and the simulated
        // frequency its sampling error on top.
        assert!(
            true_loss <= target * 1.2,
            "true loss {true_loss} vs target {target}"
        );
        let sigma = (target * 1.2 / trials as f64).sqrt();
        assert!(
            observed <= target * 1.2 + 4.0 * sigma,
            "simulated {observed} vs target {target}"
        );
    }
}
