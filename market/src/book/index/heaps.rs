//! Pre-selection's orderings and bounded heaps: the best few of each list, fed during one
//! scan of a currency's slots (see `Index::pool`).

use std::cmp::Ordering;
use std::collections::HashMap;

use super::{
    Book, Scored, PRESELECT_ADJUSTED_MAX, PRESELECT_CHEAPEST_MAX, PRESELECT_RELIABLE_MAX,
    PRESELECT_UNVETTED_MAX,
};

/// Ties end on the tiebreak, then (if two ids share 64 bits) on the entity itself.
pub(super) fn last(book: &Book, a: &Scored, b: &Scored) -> Ordering {
    a.tiebreak.cmp(&b.tiebreak).then_with(|| {
        let entity = |s: &Scored| book.slots[s.slot].agent.entity.as_str();
        entity(a).cmp(entity(b))
    })
}

pub(super) fn by_adjusted(book: &Book, a: &Scored, b: &Scored) -> Ordering {
    a.adjusted
        .total_cmp(&b.adjusted)
        .then(a.price.cmp(&b.price))
        .then_with(|| last(book, a, b))
}

pub(super) fn by_reliability(book: &Book, a: &Scored, b: &Scored) -> Ordering {
    a.p_fail
        .total_cmp(&b.p_fail)
        .then(a.price.cmp(&b.price))
        .then_with(|| last(book, a, b))
}

pub(super) fn by_price(book: &Book, a: &Scored, b: &Scored) -> Ordering {
    a.price
        .cmp(&b.price)
        .then(a.p_fail.total_cmp(&b.p_fail))
        .then_with(|| last(book, a, b))
}

/// A scored slot under a key that orders it as one of the `by_*` orders does (the floats
/// are non-negative, so their bits order as they do; the entity never breaks a tie here, as
/// two ids sharing the 64-bit tiebreak are left to chance).
#[derive(Clone, Copy)]
pub(super) struct Keyed {
    key: (u64, u64, u64),
    scored: Scored,
}

impl PartialEq for Keyed {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Keyed {}
impl PartialOrd for Keyed {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Keyed {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

/// The best `cap` under one key, as a max-heap: a slot that cannot enter costs one compare.
pub(super) struct Bounded {
    want: usize,
    cap: usize,
    seen: usize,
    heap: std::collections::BinaryHeap<Keyed>,
}

impl Bounded {
    pub(super) fn new(want: usize, depth: usize) -> Bounded {
        let cap = want.saturating_mul(depth).max(1);
        Bounded {
            want,
            cap,
            seen: 0,
            heap: std::collections::BinaryHeap::new(),
        }
    }

    pub(super) fn offer(&mut self, key: (u64, u64, u64), scored: Scored) {
        self.seen += 1;
        if self.heap.len() < self.cap {
            self.heap.push(Keyed { key, scored });
        } else if self.heap.peek().is_some_and(|top| key < top.key) {
            self.heap.pop();
            self.heap.push(Keyed { key, scored });
        }
    }

    /// The first `want` in order, at most `per_network` per network; `None` when the cap
    /// left it short while more slots existed than the heap held.
    pub(super) fn pick(self, per_network: Option<usize>) -> Option<Vec<Scored>> {
        let truncated = self.seen > self.heap.len();
        let mut per_net: HashMap<u32, usize> = HashMap::new();
        let mut out = Vec::with_capacity(self.want);
        for k in self.heap.into_sorted_vec() {
            if out.len() == self.want {
                break;
            }
            if let Some(max) = per_network {
                let n = per_net.entry(k.scored.network).or_insert(0);
                if *n >= max {
                    continue;
                }
                *n += 1;
            }
            out.push(k.scored);
        }
        (out.len() == self.want || !truncated).then_some(out)
    }
}

type Key = (u64, u64, u64);

fn adjusted_key(s: &Scored) -> Key {
    (s.adjusted.to_bits(), s.price, s.tiebreak)
}

fn reliable_key(s: &Scored) -> Key {
    (s.p_fail.to_bits(), s.price, s.tiebreak)
}

fn cheapest_key(s: &Scored) -> Key {
    (s.price, s.p_fail.to_bits(), s.tiebreak)
}

/// The key of the last slot each list picked (`None`: the list is not full, so any eligible
/// slot would enter it). A slot whose key is above every threshold of its lists cannot enter
/// the pool: each list is the first of its order, and all it picked are better.
#[derive(Debug, Clone, Copy)]
pub(super) struct Thresholds {
    vetted: Option<Key>,
    unvetted: Option<Key>,
    reliable: Option<Key>,
    cheapest: Option<Key>,
}

impl Thresholds {
    /// Whether `s` could enter one of the lists (ties count as entering).
    pub(super) fn admits(&self, s: &Scored) -> bool {
        let under = |t: Option<Key>, k: Key| t.is_none_or(|t| k <= t);
        let adjusted = if s.vetted { self.vetted } else { self.unvetted };
        under(adjusted, adjusted_key(s))
            || under(self.reliable, reliable_key(s))
            || under(self.cheapest, cheapest_key(s))
    }
}

/// The four pre-selection lists, fed during one scan.
pub(super) struct Heaps {
    adjusted_vetted: Bounded,
    adjusted_unvetted: Bounded,
    reliable: Bounded,
    cheapest: Bounded,
}

/// How deep the pre-selection heaps go, as multiples of what each list wants: the first
/// depth serves books whose networks are spread; a second, deeper scan serves books where a
/// few /24s hold many of the best agents (a network cap then skips most of a heap); past it,
/// the whole lists decide.
pub(super) const HEAP_DEPTHS: [usize; 2] = [4, 64];

impl Heaps {
    pub(super) fn new(depth: usize) -> Heaps {
        Heaps {
            adjusted_vetted: Bounded::new(PRESELECT_ADJUSTED_MAX, depth),
            adjusted_unvetted: Bounded::new(PRESELECT_UNVETTED_MAX, depth),
            reliable: Bounded::new(PRESELECT_RELIABLE_MAX, depth),
            cheapest: Bounded::new(PRESELECT_CHEAPEST_MAX, depth),
        }
    }

    pub(super) fn offer(&mut self, s: Scored) {
        if s.vetted {
            self.adjusted_vetted.offer(adjusted_key(&s), s);
        } else {
            self.adjusted_unvetted.offer(adjusted_key(&s), s);
        }
        self.reliable.offer(reliable_key(&s), s);
        self.cheapest.offer(cheapest_key(&s), s);
    }

    /// The union of the lists (each slot once) and the key of each list's last pick (none
    /// when the list is not full), or `None` if one came up short.
    pub(super) fn pick(self, per_network: Option<usize>) -> Option<(Vec<Scored>, Thresholds)> {
        let full = |list: &Vec<Scored>, want: usize| {
            (list.len() == want).then(|| list.last().copied()).flatten()
        };
        let vetted = self.adjusted_vetted.pick(per_network)?;
        let unvetted = self.adjusted_unvetted.pick(per_network)?;
        let reliable = self.reliable.pick(per_network)?;
        let cheapest = self.cheapest.pick(per_network)?;
        let thresholds = Thresholds {
            vetted: full(&vetted, PRESELECT_ADJUSTED_MAX).map(|s| adjusted_key(&s)),
            unvetted: full(&unvetted, PRESELECT_UNVETTED_MAX).map(|s| adjusted_key(&s)),
            reliable: full(&reliable, PRESELECT_RELIABLE_MAX).map(|s| reliable_key(&s)),
            cheapest: full(&cheapest, PRESELECT_CHEAPEST_MAX).map(|s| cheapest_key(&s)),
        };
        let mut all = vetted;
        all.extend(unvetted);
        all.extend(reliable);
        all.extend(cheapest);
        all.sort_unstable_by_key(|s| s.slot);
        all.dedup_by_key(|s| s.slot);
        Some((all, thresholds))
    }
}

/// The first `want` of `scored` in `order`, at most `per_network` per network.
pub(super) fn top(
    scored: &[Scored],
    want: usize,
    per_network: Option<usize>,
    order: impl Fn(&Scored, &Scored) -> Ordering,
) -> Vec<Scored> {
    // Most lists fill from the first few `want` in order: sort only those, and look further
    // (four times as far each time) only when networks repeat so much that they were not
    // enough.
    let mut tried = want.saturating_mul(4).max(1);
    loop {
        let mut head: Vec<Scored> = scored.to_vec();
        let truncated = head.len() > tried;
        if truncated {
            head.select_nth_unstable_by(tried, &order);
            head.truncate(tried);
        }
        head.sort_unstable_by(&order);
        let mut per_net: HashMap<u32, usize> = HashMap::new();
        let mut out = Vec::with_capacity(want);
        for s in &head {
            if out.len() == want {
                break;
            }
            if let Some(max) = per_network {
                let n = per_net.entry(s.network).or_insert(0);
                if *n >= max {
                    continue;
                }
                *n += 1;
            }
            out.push(*s);
        }
        if out.len() == want || !truncated {
            return out;
        }
        tried = tried.saturating_mul(4);
    }
}
