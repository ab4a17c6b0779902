//! The peer's decisions, pure (seed 001 sections 2 to 4): whom a search asks, how far it
//! goes, what a peer bids on what it heard, and whether it adds the peers it meets. The live
//! peer ([`crate::peer`]) and the simulation ([`crate::sim`]) both decide with these, so the
//! simulation measures the code that runs.
//!
//! How far a solicitation travels is [`protocol::overlay::Solicit::forwarded`]: one hop
//! fewer, the maximum price lowered by the commission, an earlier `respond_by`.

use protocol::overlay::BIDS_MAX;

use crate::peer::neighbors::{PRIMARY, SECONDARY};

/// May a search ask a neighbour of this `kind`? Primaries always; secondaries for the
/// owner's own searches under policies 2 and 3, and for others' under policy 3 only;
/// undesirable peers never.
pub fn may_ask(policy: u8, own: bool, kind: &str) -> bool {
    kind == PRIMARY || (kind == SECONDARY && (policy == 3 || (own && policy == 2)))
}

/// Does a peer under `policy` add the peers it meets through instructions (node discovery)?
pub fn adds_discovered(policy: u8) -> bool {
    policy >= 2
}

/// The commission this peer adds to a bid it makes: none on the owner's own searches.
pub fn commission(own: bool, commission: u64) -> u64 {
    if own {
        0
    } else {
        commission
    }
}

/// The hop counts a search asks its neighbours with, in turn until one finds a bid. The
/// owner's own searches widen a ring at a time (0, 1, 3, 7, ...: no hop left first, so only
/// holders answer, then twice as far plus one, up to what was asked): a near document costs
/// a few solicitations instead of a flood, and sources discovered earlier (secondary
/// neighbours) answer in the first ring. Others' searches are forwarded once, as far as they
/// may go: their solicitor chose the reach and pays for it.
pub fn rings(own: bool, hops_left: u32) -> Vec<u32> {
    if !own {
        return vec![hops_left];
    }
    let mut rings = vec![0];
    let mut next = 1u32;
    while next < hops_left {
        rings.push(next);
        next = next.saturating_mul(2).saturating_add(1);
    }
    if hops_left > 0 {
        rings.push(hops_left);
    }
    rings
}

/// What a peer holding the document bids: its price (nothing on its owner's own search),
/// when the solicitation's maximum covers it.
pub fn local_bid(own: bool, price: u64, max_price: u64) -> Option<u64> {
    let price = if own { 0 } else { price };
    (price <= max_price).then_some(price)
}

/// The bids a peer makes on its neighbours' cheapest bids `found` (each `(who, price)`):
/// for its owner, every neighbour's (cheapest first, at most [`BIDS_MAX`]) at their price;
/// for others, the cheapest plus the commission. Each answered as `(who, their price, this
/// peer's price)`.
pub fn bids_on<T: Clone>(
    mut found: Vec<(T, u64)>,
    own: bool,
    commission: u64,
) -> Vec<(T, u64, u64)> {
    found.sort_by_key(|(_, price)| *price);
    let take = if own { BIDS_MAX } else { 1 };
    found
        .into_iter()
        .take(take)
        .map(|(who, price)| {
            (
                who,
                price,
                price.saturating_add(self::commission(own, commission)),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_decide_whom_to_ask_and_whether_to_add() {
        for own in [true, false] {
            for policy in 1..=3 {
                assert!(may_ask(policy, own, PRIMARY));
                assert!(!may_ask(policy, own, "undesirable"));
            }
            assert!(!may_ask(1, own, SECONDARY));
            assert!(may_ask(3, own, SECONDARY));
        }
        assert!(
            may_ask(2, true, SECONDARY),
            "policy 2: own searches use secondaries"
        );
        assert!(
            !may_ask(2, false, SECONDARY),
            "policy 2: others' searches do not"
        );
        assert!(!adds_discovered(1) && adds_discovered(2) && adds_discovered(3));
    }

    #[test]
    fn bids_and_rings() {
        let found = vec![("a", 14), ("b", 12), ("c", 20)];
        assert_eq!(bids_on(found.clone(), false, 2), vec![("b", 12, 14)]);
        let own = bids_on(found, true, 2);
        assert_eq!(own[0], ("b", 12, 12));
        assert_eq!(own.len(), 3);
        assert_eq!(rings(true, 7), vec![0, 1, 3, 7]);
        assert_eq!(rings(true, 1), vec![0, 1]);
        assert_eq!(rings(true, 4), vec![0, 1, 3, 4]);
        assert_eq!(rings(false, 7), vec![7]);
        assert_eq!(rings(true, 0), vec![0]);
        assert_eq!(local_bid(false, 10, 9), None);
        assert_eq!(local_bid(true, 10, 0), Some(0));
    }
}
