//! Reputation from the graph of agreed records (DESIGN 11, seed 004): a personalised PageRank
//! over deals, seeded at the agents the market audited itself. Pure: no IO.
//!
//! The graph: one node per entity, one undirected edge per pair of entities that agreed
//! records, weighted by the value the records say was delivered (a contract's price, say).
//! The walk restarts at the seeds with probability [`RESTART`] at each step; a seed's share
//! of the restarts is its weight (audits it passed). An entity's score is the walk's
//! stationary share of time at it.
//!
//! Why fake identities cannot inflate it: the walk enters a group of entities only along
//! edges from outside it, in proportion to those edges' weights. Identities that record deals
//! only with each other have no such edge: the walk never reaches them and they score 0
//! however many they are. A group with a few real deals ("attack edges") receives at most what
//! flows over those edges, and adding identities inside the group only divides that share
//! among more of them. So scores follow real value delivered to entities the market checked.

use std::collections::HashMap;

/// Probability that the walk restarts at a seed at each step.
pub const RESTART: f64 = 0.2;
/// Power iterations: the error after them is at most `(1 - RESTART)^ITERATIONS` (1e-5).
pub const ITERATIONS: usize = 52;

/// The undirected, weighted graph of agreed deals.
#[derive(Debug, Default, Clone)]
pub struct DealGraph {
    ids: HashMap<String, usize>,
    names: Vec<String>,
    /// Per node: (neighbour, summed weight).
    edges: Vec<HashMap<usize, f64>>,
}

impl DealGraph {
    fn node(&mut self, name: &str) -> usize {
        if let Some(&i) = self.ids.get(name) {
            return i;
        }
        let i = self.names.len();
        self.ids.insert(name.to_owned(), i);
        self.names.push(name.to_owned());
        self.edges.push(HashMap::new());
        i
    }

    /// Add a deal between `a` and `b` worth `value` (> 0; others are ignored, as are deals
    /// of an entity with itself).
    pub fn add_deal(&mut self, a: &str, b: &str, value: f64) {
        if a == b || !value.is_finite() || value <= 0.0 {
            return;
        }
        let (i, j) = (self.node(a), self.node(b));
        *self.edges[i].entry(j).or_insert(0.0) += value;
        *self.edges[j].entry(i).or_insert(0.0) += value;
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Each entity's score: the personalised PageRank of the walk restarting at `seeds`
    /// (entity, weight > 0). Scores sum to 1 when any seed has weight (else all are 0).
    /// Seeds outside the graph still take their share of the restarts (and keep it).
    pub fn rank(&self, seeds: &[(String, f64)]) -> HashMap<String, f64> {
        let mut graph = self.clone();
        let mut restart = vec![0.0; graph.len()];
        let mut total = 0.0;
        for (name, w) in seeds {
            if w.is_finite() && *w > 0.0 {
                let i = graph.node(name);
                restart.resize(graph.len(), 0.0);
                restart[i] += w;
                total += w;
            }
        }
        if total <= 0.0 {
            return graph.names.iter().map(|n| (n.clone(), 0.0)).collect();
        }
        for r in &mut restart {
            *r /= total;
        }
        let degree: Vec<f64> = graph.edges.iter().map(|e| e.values().sum()).collect();
        let mut score = restart.clone();
        for _ in 0..ITERATIONS {
            let mut next: Vec<f64> = restart.iter().map(|r| RESTART * r).collect();
            let mut dangling = 0.0;
            for (i, s) in score.iter().enumerate() {
                if degree[i] <= 0.0 {
                    dangling += s;
                    continue;
                }
                let out = (1.0 - RESTART) * s / degree[i];
                for (&j, &w) in &graph.edges[i] {
                    next[j] += out * w;
                }
            }
            // A walk at an entity with no deals restarts.
            for (n, r) in next.iter_mut().zip(&restart) {
                *n += (1.0 - RESTART) * dangling * r;
            }
            score = next;
        }
        debug_assert!((score.iter().sum::<f64>() - 1.0).abs() < 1e-6);
        graph.names.into_iter().zip(score).collect()
    }
}

/// How much an unaudited agent is vouched for, from 0 to 1: the score its deals brought it
/// against the mean score of the audited agents (`reference`), at most 1.
pub fn vouch(score: f64, reference: f64) -> f64 {
    if reference > 0.0 && score.is_finite() {
        (score / reference).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// The value a record says was delivered, for the graph's weights: a contract's
/// `contract_price`, or the transaction's `value` or `price`; 1 when it says none.
pub fn record_value(transaction: &serde_json::Value) -> f64 {
    ["contract_price", "value", "price"]
        .iter()
        .find_map(|k| transaction.get(*k).and_then(|v| v.as_f64()))
        .unwrap_or(1.0)
        .max(0.0)
}

#[cfg(test)]
mod tests;
