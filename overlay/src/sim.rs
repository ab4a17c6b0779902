//! A simulated network of many peers, in process, deciding with the live peer's own code
//! ([`crate::decide`] and [`protocol::overlay::Solicit::forwarded`]), against TTL flooding
//! at the same TTL (Gnutella's search: every neighbour but the sender, until the TTL runs
//! out, each peer answering a query once). `peer simulate` prints its report; the figures
//! are in docs/BENCHMARKS.md.
//!
//! Model: `peers` peers linked `random:degree` (all primary), `documents` documents each at
//! `replicas` random peers, `searches` searches by random peers for random documents, one
//! after another. A solicitation reaches peers in breadth-first order (the first to arrive
//! is the one a peer answers and forwards; the live peer's loop rule forwards a later copy
//! no further either, though it would still bid on it when it holds the document), and bids
//! travel back the tree it made. Messages are solicitations sent (each
//! pays a fee). A successful search buys the cheapest bid; under referral the searcher and
//! every peer on the way discover the source (policies 2 and 3), so later searches may ask
//! it directly. Time, failures and concealment are not modelled.

use std::collections::HashSet;

use protocol::overlay::topology::{SplitMix, Topology};
use protocol::overlay::Solicit;
use serde::Serialize;

use crate::decide;
use crate::peer::neighbors::{PRIMARY, SECONDARY};

/// Neighbours a simulated peer adds at most (the live peer keeps
/// [`crate::peer::neighbors::SECONDARY_MAX`]).
pub const SIM_SECONDARY_MAX: usize = crate::peer::neighbors::SECONDARY_MAX as usize;

#[derive(Debug, Clone, Serialize)]
pub struct SimOptions {
    pub peers: usize,
    pub degree: usize,
    pub documents: usize,
    pub replicas: usize,
    pub searches: usize,
    /// The searcher's `hops_left` (its neighbours get one fewer), and the flooding TTL.
    pub hops: u32,
    pub policy: u8,
    pub commission: u64,
    pub price: u64,
    /// The searcher's maximum price (default: enough for the source and every commission).
    pub max_price: u64,
    pub seed: u64,
    /// Searches per window of the report.
    pub window: usize,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            peers: 1_000,
            degree: 4,
            documents: 100,
            replicas: 1,
            searches: 1_000,
            hops: protocol::overlay::SOLICIT_HOPS_MAX,
            policy: 3,
            commission: 2,
            price: 10,
            max_price: 10 + 2 * u64::from(protocol::overlay::SOLICIT_HOPS_MAX),
            seed: 1,
            window: 100,
        }
    }
}

/// One mode's results.
#[derive(Debug, Clone, Serialize)]
pub struct ModeReport {
    pub mode: &'static str,
    pub searches: usize,
    pub successes: usize,
    pub success_rate: f64,
    pub messages: u64,
    pub messages_per_success: f64,
    /// Average hops from the searcher to the seller of the bid bought.
    pub hops_per_success: f64,
    /// The same, for each window of searches in order (discovery at work).
    pub windows: Vec<Window>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub first: usize,
    pub success_rate: f64,
    pub messages_per_success: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    pub options: SimOptions,
    pub overlay: ModeReport,
    pub ttl_flooding: ModeReport,
}

struct Net {
    /// Each peer's neighbours and their kind (primary or secondary).
    links: Vec<Vec<(usize, &'static str)>>,
    holds: Vec<HashSet<usize>>,
}

/// One peer the solicitation reached: who sent it, what it was asked.
struct Reached {
    peer: usize,
    parent: usize,
    solicit: Solicit,
}

/// What one search found: (price, path from the searcher's neighbour to the seller), and the
/// messages it sent.
struct Outcome {
    bought: Option<(u64, Vec<usize>)>,
    messages: u64,
}

const ROOT: usize = usize::MAX;

impl Net {
    fn new(o: &SimOptions, rng: &mut SplitMix) -> Net {
        let graph = Topology::Random { degree: o.degree }.neighbors(o.peers, o.seed);
        let links = graph
            .into_iter()
            .map(|ns| ns.into_iter().map(|n| (n, PRIMARY)).collect())
            .collect();
        let mut holds = vec![HashSet::new(); o.peers];
        for d in 0..o.documents {
            for _ in 0..o.replicas {
                holds[rng.below(o.peers)].insert(d);
            }
        }
        Net { links, holds }
    }

    /// One ring of a search by `root` for `doc`: its neighbours (as `may_ask` allows) asked
    /// with `first`, then breadth-first as each peer forwards.
    fn ring(
        &self,
        o: &SimOptions,
        flooding: bool,
        root: usize,
        doc: usize,
        first: &Solicit,
    ) -> Outcome {
        let ask = |peer: usize, own: bool, from: usize| -> Vec<usize> {
            self.links[peer]
                .iter()
                .filter(|(n, kind)| {
                    *n != from
                        && (if flooding {
                            *kind == PRIMARY
                        } else {
                            decide::may_ask(o.policy, own, kind)
                        })
                })
                .map(|(n, _)| *n)
                .collect()
        };
        let mut messages = 0u64;
        let mut seen = HashSet::from([root]);
        let mut reached: Vec<Reached> = Vec::new();
        for t in ask(root, true, ROOT) {
            messages += 1;
            if seen.insert(t) {
                reached.push(Reached {
                    peer: t,
                    parent: ROOT,
                    solicit: first.clone(),
                });
            }
        }
        let mut i = 0;
        while i < reached.len() {
            let (peer, parent) = (reached[i].peer, reached[i].parent);
            if !self.holds[peer].contains(&doc) {
                let commission = if flooding {
                    0
                } else {
                    decide::commission(false, o.commission)
                };
                if let Some(next) = reached[i].solicit.forwarded(commission, 0) {
                    let from = if parent == ROOT {
                        root
                    } else {
                        reached[parent].peer
                    };
                    for t in ask(peer, false, from) {
                        messages += 1;
                        if seen.insert(t) {
                            reached.push(Reached {
                                peer: t,
                                parent: i,
                                solicit: next.clone(),
                            });
                        }
                    }
                }
            }
            i += 1;
        }
        // Bids travel back, children before parents (reverse breadth-first order).
        let mut found: Vec<Vec<(usize, u64)>> = vec![Vec::new(); reached.len()];
        let mut root_found: Vec<(usize, u64)> = Vec::new();
        let mut best: Vec<Option<u64>> = vec![None; reached.len()];
        for i in (0..reached.len()).rev() {
            let r = &reached[i];
            let bid = if self.holds[r.peer].contains(&doc) {
                decide::local_bid(false, o.price, r.solicit.max_price)
            } else {
                let commission = if flooding { 0 } else { o.commission };
                decide::bids_on(std::mem::take(&mut found[i]), false, commission)
                    .first()
                    .map(|(_, _, ours)| *ours)
                    .filter(|p| flooding || *p <= r.solicit.max_price)
            };
            best[i] = bid;
            if let Some(price) = bid {
                if r.parent == ROOT {
                    root_found.push((i, price));
                } else {
                    found[r.parent].push((i, price));
                }
            }
        }
        let bought = decide::bids_on(root_found, true, 0)
            .first()
            .map(|(i, price, _)| {
                // The path: follow the cheapest child down to the seller.
                let mut path = vec![reached[*i].peer];
                let mut at = *i;
                while !self.holds[reached[at].peer].contains(&doc) {
                    let next = (0..reached.len())
                        .filter(|&c| reached[c].parent == at && best[c].is_some())
                        .min_by_key(|&c| best[c]);
                    match next {
                        Some(c) => {
                            path.push(reached[c].peer);
                            at = c;
                        }
                        None => break,
                    }
                }
                (*price, path)
            });
        Outcome { bought, messages }
    }

    /// One search by `root` for `doc`: the rings of an own search, or one flood.
    fn search(&self, o: &SimOptions, flooding: bool, root: usize, doc: usize) -> Outcome {
        let s = Solicit {
            document: String::new(),
            max_price: if flooding { u64::MAX } else { o.max_price },
            currency: String::new(),
            hops_left: o.hops,
            respond_by: u64::MAX,
            solicitation: None,
        };
        let Some(next) = s.forwarded(0, 0) else {
            return Outcome {
                bought: None,
                messages: 0,
            };
        };
        let rings = if flooding {
            vec![next.hops_left]
        } else {
            decide::rings(true, next.hops_left)
        };
        let mut messages = 0;
        for hops_left in rings {
            let first = Solicit {
                hops_left,
                ..next.clone()
            };
            let out = self.ring(o, flooding, root, doc, &first);
            messages += out.messages;
            if out.bought.is_some() {
                return Outcome {
                    bought: out.bought,
                    messages,
                };
            }
        }
        Outcome {
            bought: None,
            messages,
        }
    }

    /// Referral: the searcher and every peer on the way discover the seller.
    fn discover(&mut self, o: &SimOptions, root: usize, path: &[usize]) {
        let Some(&seller) = path.last() else { return };
        if !decide::adds_discovered(o.policy) {
            return;
        }
        for &p in std::iter::once(&root).chain(&path[..path.len() - 1]) {
            let links = &mut self.links[p];
            let secondaries = links.iter().filter(|(_, k)| *k == SECONDARY).count();
            if p != seller
                && !links.iter().any(|(n, _)| *n == seller)
                && secondaries < SIM_SECONDARY_MAX
            {
                links.push((seller, SECONDARY));
            }
        }
    }
}

fn mode(o: &SimOptions, flooding: bool) -> ModeReport {
    let mut rng = SplitMix(o.seed);
    let mut net = Net::new(o, &mut rng);
    let (mut successes, mut messages, mut hops) = (0usize, 0u64, 0usize);
    let mut windows = Vec::new();
    let (mut w_success, mut w_messages) = (0usize, 0u64);
    for i in 0..o.searches {
        let root = rng.below(o.peers);
        let mut doc = rng.below(o.documents.max(1));
        // A search is for a document the searcher does not hold (a few draws at most).
        for _ in 0..8 {
            if !net.holds[root].contains(&doc) {
                break;
            }
            doc = rng.below(o.documents.max(1));
        }
        let out = net.search(o, flooding, root, doc);
        messages += out.messages;
        w_messages += out.messages;
        if let Some((_, path)) = &out.bought {
            successes += 1;
            w_success += 1;
            hops += path.len();
            if !flooding {
                net.discover(o, root, path);
            }
        }
        if (i + 1) % o.window.max(1) == 0 || i + 1 == o.searches {
            let n = (i % o.window.max(1)) + 1;
            windows.push(Window {
                first: i + 1 - n,
                success_rate: w_success as f64 / n as f64,
                messages_per_success: ratio(w_messages, w_success),
            });
            (w_success, w_messages) = (0, 0);
        }
    }
    ModeReport {
        mode: if flooding { "ttl_flooding" } else { "overlay" },
        searches: o.searches,
        successes,
        success_rate: successes as f64 / o.searches.max(1) as f64,
        messages,
        messages_per_success: ratio(messages, successes),
        hops_per_success: if successes == 0 {
            0.0
        } else {
            hops as f64 / successes as f64
        },
        windows,
    }
}

fn ratio(messages: u64, successes: usize) -> f64 {
    if successes == 0 {
        f64::INFINITY
    } else {
        messages as f64 / successes as f64
    }
}

/// Run both modes on the same network and the same searches.
pub fn simulate(o: &SimOptions) -> SimReport {
    SimReport {
        options: o.clone(),
        overlay: mode(o, false),
        ttl_flooding: mode(o, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_shortens_searches_and_flooding_sends_more() {
        let o = SimOptions {
            peers: 300,
            searches: 600,
            documents: 20,
            window: 200,
            ..SimOptions::default()
        };
        let r = simulate(&o);
        assert!(r.ttl_flooding.success_rate > 0.9, "{:?}", r.ttl_flooding);
        assert!(r.overlay.success_rate > 0.9, "{:?}", r.overlay);
        let first = &r.overlay.windows[0];
        let last = r.overlay.windows.last().expect("windows");
        assert!(
            last.messages_per_success < first.messages_per_success,
            "discovery makes later searches cheaper: {first:?} -> {last:?}"
        );
        assert!(r.overlay.messages_per_success < r.ttl_flooding.messages_per_success);
        // Policy 1 never discovers: no cheaper later.
        let p1 = simulate(&SimOptions { policy: 1, ..o });
        assert!(p1.overlay.messages_per_success > r.overlay.messages_per_success);
    }

    #[test]
    fn hops_bound_the_search() {
        // Two peers, one document: with no hop a search asks nobody and finds nothing; with
        // hops, whoever does not hold it finds it at the other, the overlay as the flood.
        let two = SimOptions {
            peers: 2,
            degree: 1,
            documents: 1,
            searches: 10,
            ..SimOptions::default()
        };
        let none = simulate(&SimOptions {
            hops: 0,
            ..two.clone()
        });
        for m in [&none.overlay, &none.ttl_flooding] {
            assert_eq!((m.successes, m.messages), (0, 0), "{m:?}");
        }
        let r = simulate(&two);
        assert!(r.overlay.successes > 0, "{:?}", r.overlay);
        assert_eq!(r.overlay.successes, r.ttl_flooding.successes);
    }
}
