use proptest::prelude::*;

use super::flow::{split, trust, Edge};
use super::*;

fn key() -> KeyPair {
    KeyPair::generate().expect("key")
}

fn state(
    creditor: &KeyPair,
    debtor: &KeyPair,
    currency: &KeyPair,
    owed: u64,
    seq: u64,
) -> LineState {
    LineState {
        id: "0b7c1c52-4b8e-4a57-9d55-1f6f0d7c9a11".into(),
        creditor: creditor.entity().to_string(),
        debtor: debtor.entity().to_string(),
        currency: currency.entity().to_string(),
        limit: 100,
        owed,
        seq,
    }
}

#[test]
fn a_line_update_is_signed_by_both_and_any_change_is_refused() {
    let (a, b, issuer, stranger) = (key(), key(), key(), key());
    let mut update = LineUpdate::sign(state(&a, &b, &issuer, 10, 1), &a).expect("creditor signs");
    assert_eq!(update.verify(), Ok(false), "one signature: a proposal");
    assert!(
        update.check_newer(0).is_err(),
        "not in force with one signature"
    );
    update.countersign(&b).expect("debtor countersigns");
    assert_eq!(update.verify(), Ok(true));
    update.check_newer(0).expect("newer than nothing");
    // Replayed: not newer than itself.
    let e = update.check_newer(1).expect_err("a replayed update");
    assert_eq!(e.code(), "stale_update");
    // Any field changed after signing: refused.
    let mut forged = update.clone();
    forged.state.owed = 0;
    assert_eq!(
        forged.verify().map_err(|e| e.code()),
        Err("invalid_line_signature")
    );
    let mut forged = update.clone();
    forged.state.seq = 9;
    assert_eq!(
        forged.check_newer(1).map_err(|e| e.code()),
        Err("invalid_line_signature")
    );
    // A third party cannot sign, and owed above the limit is malformed.
    assert!(update.clone().countersign(&stranger).is_err());
    let over = LineState {
        owed: 101,
        ..state(&a, &b, &issuer, 0, 2)
    };
    assert_eq!(
        LineUpdate::sign(over, &a).map_err(|e| e.code()),
        Err("over_limit")
    );
    let same = LineState {
        debtor: a.entity().to_string(),
        ..state(&a, &b, &issuer, 0, 2)
    };
    assert_eq!(same.validate().map_err(|e| e.code()), Err("invalid_line"));
}

#[test]
fn conditions_open_only_with_their_secret() {
    let secret = [7u8; SECRET_BYTES];
    let condition = condition_of(&secret);
    assert_eq!(check_secret(&hex::encode(secret), &condition), Ok(secret));
    assert_eq!(
        check_secret(&hex::encode([8u8; SECRET_BYTES]), &condition),
        Err(CreditError::WrongSecret)
    );
    assert!(check_secret("zz", &condition).is_err());
    assert!(check_secret(&hex::encode([7u8; 31]), &condition).is_err());
}

#[test]
fn each_hop_expires_before_the_one_before_it() {
    let now = 1_000_000;
    check_hop_expiry(now + 30_000, now + 28_000, now).expect("a margin of 2 s");
    assert!(check_hop_expiry(now + 30_000, now + 28_001, now).is_err());
    assert!(
        check_hop_expiry(now + 30_000, now, now).is_err(),
        "already expired"
    );
}

#[test]
fn prepares_are_checked() {
    let path: Vec<String> = (0..3).map(|_| key().entity().to_string()).collect();
    let good = Prepare {
        payment: "0b7c1c52-4b8e-4a57-9d55-1f6f0d7c9a11".into(),
        amount: 40,
        total: 100,
        currency: key().entity().to_string(),
        path: path.clone(),
        condition: condition_of(&[1; SECRET_BYTES]),
        sealed_secret: String::new(),
        expires_at: 1,
        lines: Vec::new(),
        transaction_id: None,
    };
    good.validate().expect("valid");
    let parts = |a: u64, b: u64| {
        vec![
            LinePart {
                line: "0b7c1c52-4b8e-4a57-9d55-1f6f0d7c9a12".into(),
                amount: a,
            },
            LinePart {
                line: "0b7c1c52-4b8e-4a57-9d55-1f6f0d7c9a13".into(),
                amount: b,
            },
        ]
    };
    Prepare {
        lines: parts(10, 30),
        ..good.clone()
    }
    .validate()
    .expect("parts adding up to the amount");
    let cases = [
        Prepare {
            lines: parts(10, 31),
            ..good.clone()
        },
        Prepare {
            condition: good.condition.to_uppercase(),
            ..good.clone()
        },
        Prepare {
            amount: 0,
            ..good.clone()
        },
        Prepare {
            amount: 101,
            ..good.clone()
        },
        Prepare {
            payment: "x".into(),
            ..good.clone()
        },
        Prepare {
            path: vec![path[0].clone()],
            ..good.clone()
        },
        Prepare {
            path: vec![path[0].clone(), path[0].clone()],
            ..good.clone()
        },
        Prepare {
            path: (0..6).map(|_| key().entity().to_string()).collect(),
            ..good.clone()
        },
        Prepare {
            condition: "ab".into(),
            ..good.clone()
        },
    ];
    for c in cases {
        assert!(c.validate().is_err(), "{c:?}");
    }
}

fn edge(from: &str, to: &str, capacity: u64) -> Edge {
    Edge {
        from: from.into(),
        to: to.into(),
        url: format!("http://{to}"),
        capacity,
    }
}

#[test]
fn a_payment_no_single_path_carries_is_split_over_three() {
    // Three disjoint paths of 40 from P to T; no single path carries 100.
    let mut edges = Vec::new();
    for mid in ["a", "b", "c"] {
        edges.push(edge("P", mid, 40));
        edges.push(edge(mid, "T", 40));
    }
    let shares = split(&edges, "P", "T", 100).expect("carried");
    assert_eq!(shares.iter().map(|s| s.amount).sum::<u64>(), 100);
    assert!(shares.len() >= 3);
    assert!(shares.iter().all(|s| s.amount <= 40 && s.path.len() == 3));
    assert_eq!(
        split(&edges, "P", "T", 121),
        None,
        "more than all paths carry"
    );
    // A path over five hops is never used.
    let long: Vec<Edge> = ["P", "1", "2", "3", "4"]
        .windows(2)
        .map(|w| edge(w[0], w[1], 10))
        .chain([edge("4", "T", 10)])
        .collect();
    assert_eq!(split(&long, "P", "T", 1), None);
}

/// Every hop's shares over all paths stay within its capacity.
fn within_capacity(edges: &[Edge], shares: &[super::flow::PathShare]) -> bool {
    let mut used: std::collections::HashMap<(&str, &str), i128> = Default::default();
    for s in shares {
        for w in s.path.windows(2) {
            *used.entry((w[0].as_str(), w[1].as_str())).or_default() += i128::from(s.amount);
        }
    }
    used.iter().all(|((a, b), &u)| {
        let cap = edges
            .iter()
            .filter(|e| e.from == *a && e.to == *b)
            .map(|e| i128::from(e.capacity))
            .max()
            .unwrap_or(0);
        u <= cap
    })
}

/// Brute force: the best product over all simple paths of at most `hops` hops.
fn brute_trust(
    trusts: &[(String, String, f64)],
    at: &str,
    to: &str,
    hops: usize,
    seen: &mut Vec<String>,
) -> f64 {
    if at == to {
        return 1.0;
    }
    if hops == 0 {
        return 0.0;
    }
    let mut best = 0.0f64;
    for (a, b, t) in trusts {
        if a == at && !seen.contains(b) {
            seen.push(b.clone());
            best = best.max(t * brute_trust(trusts, b, to, hops - 1, seen));
            seen.pop();
        }
    }
    best
}

proptest! {
    /// The line arithmetic never lets owed and held pass the limit, whatever the sequence.
    #[test]
    fn line_operations_keep_owed_and_held_within_the_limit(
        limit in 0u64..1_000,
        ops in proptest::collection::vec((0u8..8, 0u64..600), 0..60),
    ) {
        let mut line = Line { limit, ..Line::default() };
        for (op, amount) in ops {
            let before = line;
            let result = match op {
                0 => line.hold(amount),
                1 => line.release(amount),
                2 => line.commit(amount),
                3 => line.repay(amount),
                4 => line.hold_repay(amount),
                5 => line.release_repay(amount),
                6 => line.commit_repay(amount),
                _ => line.set_limit(amount),
            };
            if result.is_err() {
                prop_assert_eq!(line, before, "a refused operation changes nothing");
            }
            prop_assert!(line.owed + line.held <= line.limit);
            prop_assert!(line.repaying <= line.owed);
            prop_assert_eq!(line.room(), line.limit - line.owed - line.held);
        }
    }

    /// A split never asks an edge for more than it can carry, carries exactly the amount, and
    /// answers whenever one path alone could carry it.
    #[test]
    fn splits_respect_capacities(
        raw in proptest::collection::vec((0usize..6, 0usize..6, 0u64..50), 1..25),
        amount in 1u64..120,
    ) {
        let names = ["P", "a", "b", "c", "d", "T"];
        let edges: Vec<Edge> = raw.iter().map(|&(a, b, c)| edge(names[a], names[b], c)).collect();
        if let Some(shares) = split(&edges, "P", "T", amount) {
            prop_assert_eq!(shares.iter().map(|s| s.amount).sum::<u64>(), amount);
            prop_assert!(shares.iter().all(|s| s.path.len() <= PATH_HOPS_MAX + 1));
            prop_assert!(within_capacity(&edges, &shares));
        }
        let direct = edges.iter().filter(|e| e.from == "P" && e.to == "T").map(|e| e.capacity).max().unwrap_or(0);
        if direct >= amount {
            prop_assert!(split(&edges, "P", "T", amount).is_some());
        }
    }

    /// Trust along paths equals a brute-force maximum over all simple paths.
    #[test]
    fn trust_is_the_best_product_over_simple_paths(
        raw in proptest::collection::vec((0usize..7, 0usize..7, 0u32..=100), 0..30),
    ) {
        let names = ["A", "b", "c", "d", "e", "f", "Z"];
        let trusts: Vec<(String, String, f64)> = raw
            .iter()
            .filter(|(a, b, _)| a != b)
            .map(|&(a, b, t)| (names[a].to_owned(), names[b].to_owned(), f64::from(t) / 100.0))
            .collect();
        let fast = trust(&trusts, "A", "Z", PATH_HOPS_MAX);
        let slow = brute_trust(&trusts, "A", "Z", PATH_HOPS_MAX, &mut vec!["A".to_owned()]);
        prop_assert!((fast - slow).abs() < 1e-12, "{} vs {}", fast, slow);
    }
}

#[test]
fn a_hop_repays_first_then_borrows() {
    let owed_to_payer = Line {
        limit: 100,
        owed: 30,
        held: 0,
        repaying: 10,
    };
    let extended = Line {
        limit: 50,
        owed: 20,
        held: 5,
        repaying: 0,
    };
    assert_eq!(
        hop_split(Some(&owed_to_payer), Some(&extended), 15),
        Some((15, 0))
    );
    assert_eq!(
        hop_split(Some(&owed_to_payer), Some(&extended), 45),
        Some((20, 25))
    );
    assert_eq!(hop_split(Some(&owed_to_payer), Some(&extended), 46), None);
    assert_eq!(hop_split(None, Some(&extended), 25), Some((0, 25)));
    assert_eq!(hop_split(None, None, 1), None);
    assert_eq!(
        capacity(Some(&extended), Some(&owed_to_payer)),
        45,
        "capacity is what a hop can carry"
    );
}

/// The payer's path finding on a simulated graph of 10,000 nodes (docs/BENCHMARKS.md):
/// `cargo test --release -p protocol --lib credit_path_finding_timing -- --ignored --nocapture`
#[test]
#[ignore]
fn credit_path_finding_timing() {
    use std::collections::{HashMap, HashSet, VecDeque};
    const NODES: usize = 10_000;
    const DEGREE: usize = 8;
    const TRIALS: usize = 200;
    const AMOUNT: u64 = 50;
    // xorshift64: a fixed graph from run to run.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let names: Vec<String> = (0..NODES).map(|i| format!("n{i}")).collect();
    let mut out: Vec<Vec<(usize, u64)>> = vec![Vec::new(); NODES];
    for (a, list) in out.iter_mut().enumerate() {
        for _ in 0..DEGREE {
            let b = (next() % NODES as u64) as usize;
            if b != a {
                list.push((b, 1 + next() % 100));
            }
        }
    }
    let edges_of = |a: usize, b: usize, c: u64| Edge {
        from: names[a].clone(),
        to: names[b].clone(),
        url: String::new(),
        capacity: c,
    };
    // What a payer learns from `GET /v1/credit/paths`: the edges within PATH_HOPS_MAX hops.
    let learn = |payer: usize| -> (Vec<Edge>, Vec<usize>) {
        let mut depth: HashMap<usize, usize> = HashMap::from([(payer, 0)]);
        let mut queue = VecDeque::from([payer]);
        let mut edges = Vec::new();
        let mut far = Vec::new();
        while let Some(u) = queue.pop_front() {
            let d = depth[&u];
            if d == PATH_HOPS_MAX {
                far.push(u);
                continue;
            }
            for &(v, c) in &out[u] {
                edges.push(edges_of(u, v, c));
                if let std::collections::hash_map::Entry::Vacant(e) = depth.entry(v) {
                    e.insert(d + 1);
                    queue.push_back(v);
                }
            }
        }
        (edges, far)
    };
    let mut learn_us = Vec::new();
    let mut split_us = Vec::new();
    let mut learned = Vec::new();
    let mut split_ok = 0;
    for _ in 0..TRIALS {
        let payer = (next() % NODES as u64) as usize;
        let t0 = std::time::Instant::now();
        let (edges, far) = learn(payer);
        learn_us.push(t0.elapsed().as_micros());
        learned.push(edges.len());
        let Some(&target) = far.first() else { continue };
        let t1 = std::time::Instant::now();
        let shares = split(&edges, &names[payer], &names[target], AMOUNT);
        split_us.push(t1.elapsed().as_micros());
        if shares.is_some() {
            split_ok += 1;
        }
    }
    // The worst a payer may be given: EDGES_MAX edges of the whole graph.
    let mut all: Vec<Edge> = Vec::new();
    let mut seen = HashSet::new();
    'outer: for (a, list) in out.iter().enumerate() {
        for &(b, c) in list {
            if seen.insert((a, b)) {
                all.push(edges_of(a, b, c));
                if all.len() == flow::EDGES_MAX {
                    break 'outer;
                }
            }
        }
    }
    let t2 = std::time::Instant::now();
    let _ = split(&all, "n0", "n9999", 10_000);
    let worst_us = t2.elapsed().as_micros();
    let pct = |v: &mut Vec<u128>, p: usize| {
        v.sort_unstable();
        v[(v.len() * p / 100).min(v.len() - 1)]
    };
    learned.sort_unstable();
    println!(
        "credit path finding, {NODES} nodes x {DEGREE} lines: learned edges p50 {} max {}; \
         neighbourhood p50 {} us p99 {} us; split of {AMOUNT} to a node 4 hops away p50 {} us \
         p99 {} us ({split_ok}/{} carried); split over {} edges {} us",
        learned[learned.len() / 2],
        learned[learned.len() - 1],
        pct(&mut learn_us, 50),
        pct(&mut learn_us, 99),
        pct(&mut split_us, 50),
        pct(&mut split_us, 99),
        split_us.len(),
        all.len(),
        worst_us
    );
    assert!(split_ok > 0, "some payments found paths");
}

#[test]
fn line_headers_round_trip_and_refuse_junk() {
    let half = LineHalf {
        id: "l".into(),
        seq: 3,
        owed: 70,
        signature: "sig".into(),
    };
    assert_eq!(LineHalf::parse(&half.header()), Some(half));
    assert_eq!(LineHalf::parse("l;x;70;sig"), None);
    assert_eq!(LineHalf::parse("l;3;70;sig;more"), None);
}
