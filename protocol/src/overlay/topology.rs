//! Who is whose neighbour in a network of peers built for tests, the devnet (`devnet up
//! --peers N --topology T`) and the overlay's simulation: `line`, `ring` or `random:DEGREE`.
//! Pure and deterministic: the same (kind, size, seed) always gives the same graph, so a
//! devnet brought back has the neighbours it had.

/// A topology's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Line,
    Ring,
    /// Each peer links to about `degree` others chosen at random, and the graph is made
    /// connected (one extra link between components).
    Random {
        degree: usize,
    },
}

impl std::str::FromStr for Topology {
    type Err = String;

    fn from_str(text: &str) -> Result<Topology, String> {
        match text {
            "line" => Ok(Topology::Line),
            "ring" => Ok(Topology::Ring),
            other => {
                let degree = other
                    .strip_prefix("random:")
                    .and_then(|d| d.parse::<usize>().ok())
                    .filter(|d| (1..=64).contains(d))
                    .ok_or_else(|| {
                        format!(
                            "topology {other:?}: expected line, ring or random:DEGREE (1 to 64)"
                        )
                    })?;
                Ok(Topology::Random { degree })
            }
        }
    }
}

impl std::fmt::Display for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Topology::Line => f.write_str("line"),
            Topology::Ring => f.write_str("ring"),
            Topology::Random { degree } => write!(f, "random:{degree}"),
        }
    }
}

/// splitmix64: a small, good, seedable generator (no dependency for a test graph).
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is negligible for graph sizes).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

impl Topology {
    /// Each peer's neighbours (undirected, sorted, never itself) in a network of `n`.
    pub fn neighbors(&self, n: usize, seed: u64) -> Vec<Vec<usize>> {
        let mut adj = vec![Vec::new(); n];
        let link = |adj: &mut Vec<Vec<usize>>, a: usize, b: usize| {
            if a != b && !adj[a].contains(&b) {
                adj[a].push(b);
                adj[b].push(a);
            }
        };
        match *self {
            Topology::Line => (1..n).for_each(|i| link(&mut adj, i - 1, i)),
            Topology::Ring => {
                (1..n).for_each(|i| link(&mut adj, i - 1, i));
                if n > 2 {
                    link(&mut adj, n - 1, 0);
                }
            }
            Topology::Random { degree } => {
                let mut rng = SplitMix(seed);
                let degree = degree.min(n.saturating_sub(1));
                for i in 0..n {
                    let mut tries = 0;
                    while adj[i].len() < degree && tries < 64 * degree {
                        tries += 1;
                        let j = rng.below(n);
                        if j != i && adj[j].len() < 2 * degree {
                            link(&mut adj, i, j);
                        }
                    }
                }
                // Connect the components: each one's first peer to the previous one's.
                let mut component = vec![usize::MAX; n];
                let mut firsts = Vec::new();
                for start in 0..n {
                    if component[start] != usize::MAX {
                        continue;
                    }
                    firsts.push(start);
                    let mut stack = vec![start];
                    component[start] = start;
                    while let Some(v) = stack.pop() {
                        for &w in &adj[v] {
                            if component[w] == usize::MAX {
                                component[w] = start;
                                stack.push(w);
                            }
                        }
                    }
                }
                for pair in firsts.windows(2) {
                    link(&mut adj, pair[0], pair[1]);
                }
            }
        }
        for a in &mut adj {
            a.sort_unstable();
        }
        adj
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connected(adj: &[Vec<usize>]) -> bool {
        let mut seen = vec![false; adj.len()];
        let mut stack = vec![0];
        seen[0] = true;
        while let Some(v) = stack.pop() {
            for &w in &adj[v] {
                if !seen[w] {
                    seen[w] = true;
                    stack.push(w);
                }
            }
        }
        seen.iter().all(|s| *s)
    }

    #[test]
    fn lines_rings_and_random_graphs() {
        let line = Topology::Line.neighbors(4, 0);
        assert_eq!(line, vec![vec![1], vec![0, 2], vec![1, 3], vec![2]]);
        let ring = Topology::Ring.neighbors(4, 0);
        assert_eq!(ring[0], vec![1, 3]);
        let t: Topology = "random:4".parse().expect("parse");
        let g = t.neighbors(1_000, 7);
        assert!(connected(&g), "random graphs are connected");
        assert!(g.iter().all(|a| !a.is_empty() && a.len() <= 8 + 1));
        assert_eq!(g, t.neighbors(1_000, 7), "deterministic");
        assert_ne!(g, t.neighbors(1_000, 8));
        assert!("random:0".parse::<Topology>().is_err());
        assert!("star".parse::<Topology>().is_err());
        assert_eq!(t.to_string(), "random:4");
    }
}
