//! The payer's side of a multi-path payment (DESIGN 12, seed 003): the edges it learned from
//! `GET /v1/credit/paths` ([`Edge`]), split over paths by a flow within the hop bound
//! ([`split`]), and trust along paths ([`trust`]). Pure and bounded: at most [`EDGES_MAX`]
//! edges, paths of at most [`super::PATH_HOPS_MAX`] hops.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::PATH_HOPS_MAX;

/// Edges a payer considers at most.
pub const EDGES_MAX: usize = 10_000;
/// Largest paths or trust answer a node or wallet reads (a full [`EDGES_MAX`] answer fits).
pub const ANSWER_BYTES_MAX: usize = 4 * 1024 * 1024;

/// What `from` can pay `to` directly (`capacity`), and where `to` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub url: String,
    pub capacity: u64,
}

/// The answer of `GET /v1/credit/paths`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsAnswer {
    pub edges: Vec<Edge>,
}

/// One path of a split payment and what it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathShare {
    /// Entity ids from the payer to the target.
    pub path: Vec<String>,
    pub amount: u64,
}

/// Split `amount` from `payer` to `target` over paths of at most [`PATH_HOPS_MAX`] hops
/// whose shares together never exceed any edge's capacity (an edge given twice counts once,
/// with its larger capacity). `None` when the edges cannot carry the whole amount.
///
/// Paths are found breadth first (shortest first, so the fewest hops carry most) over what
/// edges have left, each taking its bottleneck, until the amount is covered. Flow is never
/// pushed back along an edge (as a textbook max flow would, through residual reverse edges):
/// every path must be real lines to prepare hop by hop. So the answer is greedy: on some
/// graphs it falls short of the most that paths within the bound could carry; it never asks
/// an edge for more than its capacity.
pub fn split(edges: &[Edge], payer: &str, target: &str, amount: u64) -> Option<Vec<PathShare>> {
    if amount == 0 || payer == target {
        return None;
    }
    // Nodes numbered; capacities merged per directed pair.
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut names: Vec<&str> = Vec::new();
    let mut residual: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    for e in edges.iter().take(EDGES_MAX) {
        if e.capacity == 0 || e.from == e.to {
            continue;
        }
        let a = intern(&mut ids, &mut names, &e.from);
        let b = intern(&mut ids, &mut names, &e.to);
        let c = residual.entry((a, b)).or_insert(0);
        *c = (*c).max(e.capacity);
    }
    let (Some(&s), Some(&t)) = (ids.get(payer), ids.get(target)) else {
        return None;
    };
    let mut out_edges: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
    for &(a, b) in residual.keys() {
        out_edges[a].push(b);
    }
    let mut shares: Vec<(Vec<usize>, u64)> = Vec::new();
    let mut left = amount;
    while left > 0 {
        let Some(path) = shortest_path(&out_edges, &residual, s, t) else {
            break;
        };
        let bottleneck = path
            .windows(2)
            .map(|w| residual[&(w[0], w[1])])
            .min()
            .unwrap_or(0)
            .min(left);
        if bottleneck == 0 {
            break;
        }
        for w in path.windows(2) {
            // Present: the path was found on residual edges with capacity.
            if let Some(c) = residual.get_mut(&(w[0], w[1])) {
                *c -= bottleneck;
            }
        }
        left -= bottleneck;
        shares.push((path, bottleneck));
    }
    if left > 0 {
        return None;
    }
    Some(
        shares
            .into_iter()
            .map(|(path, amount)| PathShare {
                path: path.iter().map(|&i| names[i].to_owned()).collect(),
                amount,
            })
            .collect(),
    )
}

fn intern<'a>(ids: &mut HashMap<&'a str, usize>, names: &mut Vec<&'a str>, name: &'a str) -> usize {
    *ids.entry(name).or_insert_with(|| {
        names.push(name);
        names.len() - 1
    })
}

/// A shortest path from `s` to `t` over edges with residual capacity, of at most
/// [`PATH_HOPS_MAX`] hops.
fn shortest_path(
    out_edges: &[Vec<usize>],
    residual: &BTreeMap<(usize, usize), u64>,
    s: usize,
    t: usize,
) -> Option<Vec<usize>> {
    let mut before: Vec<Option<usize>> = vec![None; out_edges.len()];
    let mut depth = vec![usize::MAX; out_edges.len()];
    depth[s] = 0;
    let mut queue = VecDeque::from([s]);
    while let Some(u) = queue.pop_front() {
        if u == t {
            break;
        }
        if depth[u] >= PATH_HOPS_MAX {
            continue;
        }
        for &v in &out_edges[u] {
            if depth[v] == usize::MAX && residual.get(&(u, v)).is_some_and(|&c| c > 0) {
                depth[v] = depth[u] + 1;
                before[v] = Some(u);
                queue.push_back(v);
            }
        }
    }
    if depth[t] == usize::MAX {
        return None;
    }
    let mut path = vec![t];
    let mut at = t;
    while let Some(p) = before[at] {
        path.push(p);
        at = p;
    }
    path.reverse();
    Some(path)
}

/// Trust along paths (seed 003): the maximum over simple paths of at most `hops_max` hops
/// from `from` to `to` of the product of the trusts along it (each in [0, 1]); 1 for `from`
/// itself, 0 when no path exists. `trusts` are (truster, trusted, trust); values outside
/// [0, 1] are clamped.
pub fn trust(trusts: &[(String, String, f64)], from: &str, to: &str, hops_max: usize) -> f64 {
    if from == to {
        return 1.0;
    }
    let mut out: HashMap<&str, Vec<(&str, f64)>> = HashMap::new();
    for (a, b, t) in trusts.iter().take(EDGES_MAX) {
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        out.entry(a.as_str()).or_default().push((b.as_str(), t));
    }
    // Best product per node per number of hops (Bellman-Ford by rounds): products only
    // shrink along a path, so a best walk is a simple path.
    let mut best: HashMap<&str, f64> = HashMap::from([(from, 1.0)]);
    for _ in 0..hops_max {
        let mut next = best.clone();
        for (&u, &pu) in &best {
            for &(v, t) in out.get(u).map(Vec::as_slice).unwrap_or(&[]) {
                let p = pu * t;
                let slot = next.entry(v).or_insert(0.0);
                if p > *slot {
                    *slot = p;
                }
            }
        }
        best = next;
    }
    best.get(to).copied().unwrap_or(0.0)
}
