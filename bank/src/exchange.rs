//! The exchange (`bank serve --exchange`, DESIGN 14, seed 004): limit orders per currency
//! pair, matched as they arrive, and each matched trade settled incrementally.
//!
//! - **Orders.** An order sells `sell_amount` of one currency for at least `buy_amount` of
//!   another (its limit price is the ratio of the two). It rests in its pair's book until
//!   filled or cancelled; partial fills keep the price.
//! - **Matching** ([`match_order`]): an arriving order (the taker) meets the resting orders of
//!   the opposite direction (the makers) best price first, then oldest first, while the two
//!   prices cross, and trades at the maker's price. The book never crosses: no two resting
//!   orders of opposite directions could trade with each other (property-tested below).
//! - **Settlement** ([`settle`]): a trade is paid in `k` steps; in each, the taker pays its
//!   slice to the maker, then the maker pays its slice to the taker, each transfer made by
//!   the payer itself at its currency's issuer (the exchange holds no money) and confirmed by
//!   the receiver, who sees it in its own deposits. A payer that does not pay within the
//!   step's time is marked as having defaulted (and barred); a receiver that does not confirm
//!   a slice its payer claims leaves the trade disputed (both count a dispute: the exchange
//!   cannot tell which lies). Either way the trade stops there, and the other party has paid
//!   at most one slice it did not get back.
//!
//! The HTTP side is [`server`], the database [`store`], the traders' side (what `bank
//! orders` and `bank trade` run) [`trader`], and the `trade` records each receiver proposes
//! for each slice it got [`records`] (DESIGN 11).

pub mod records;
pub mod server;
pub mod store;
pub mod trader;

use serde::{Deserialize, Serialize};

/// Slices a trade is settled in, unless the exchange is told otherwise.
pub const STEPS_DEFAULT: u32 = 4;
/// Most slices a trade may be cut into.
pub const STEPS_MAX: u32 = 64;
/// Time a party has for its half of a step (pay, or confirm) before it is marked.
pub const STEP_TIMEOUT_MS_DEFAULT: u64 = 60_000;

/// A resting order as the matcher sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub trader: String,
    pub sell_issuer: String,
    pub buy_issuer: String,
    /// The order's price: `buy_amount` of the bought currency for `sell_amount` sold.
    pub sell_amount: u64,
    pub buy_amount: u64,
    /// What is left to sell.
    pub sell_left: u64,
    /// Arrival order: the older of two equal prices trades first.
    pub seq: i64,
}

impl Order {
    /// True when `self` and `other` (opposite directions) would trade: what `self` asks per
    /// unit sold, times what `other` asks per unit it sells, is at most 1:
    /// `self.buy / self.sell * other.buy / other.sell <= 1`.
    pub fn crosses(&self, other: &Order) -> bool {
        debug_assert!(self.sell_issuer == other.buy_issuer && self.buy_issuer == other.sell_issuer);
        u128::from(self.buy_amount) * u128::from(other.buy_amount)
            <= u128::from(self.sell_amount) * u128::from(other.sell_amount)
    }

    /// Better price for a maker on the same side: asks less per unit sold
    /// (`a.buy / a.sell < b.buy / b.sell`), then older.
    fn before(&self, other: &Order) -> std::cmp::Ordering {
        (u128::from(self.buy_amount) * u128::from(other.sell_amount))
            .cmp(&(u128::from(other.buy_amount) * u128::from(self.sell_amount)))
            .then(self.seq.cmp(&other.seq))
    }
}

/// One fill: the taker sells `taker_gives` of its currency to the maker, which sells
/// `maker_gives` of the other back, at the maker's price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fill {
    pub maker_order: String,
    pub maker: String,
    pub taker_gives: u64,
    pub maker_gives: u64,
}

/// Match `taker` against `makers` (resting orders selling what the taker buys), changing the
/// `sell_left` of both; answers the fills in the order they happened. Makers are tried best
/// price first, then oldest; matching stops at the first that does not cross, or when the
/// taker has nothing left, or when a fill would round to nothing (dust stays resting).
pub fn match_order(taker: &mut Order, makers: &mut [Order]) -> Vec<Fill> {
    makers.sort_by(Order::before);
    let mut fills = Vec::new();
    for maker in makers.iter_mut() {
        if taker.sell_left == 0 {
            break;
        }
        if maker.sell_left == 0 || maker.trader == taker.trader {
            continue;
        }
        if !taker.crosses(maker) {
            break;
        }
        // At the maker's price: `maker.sell_amount` of its currency for `maker.buy_amount`
        // of the taker's. What the maker gives first (rounded down: never more than the
        // taker's remainder pays for), then what that costs at the maker's price (rounded
        // up: the maker never gets less than its price).
        let (ms, mb) = (u128::from(maker.sell_amount), u128::from(maker.buy_amount));
        let maker_gives = u64::try_from(
            (u128::from(taker.sell_left) * ms / mb.max(1)).min(u128::from(maker.sell_left)),
        )
        .unwrap_or(0);
        if maker_gives == 0 {
            continue;
        }
        let taker_gives =
            u64::try_from(ceil_div(u128::from(maker_gives) * mb, ms)).unwrap_or(u64::MAX);
        // Rounding may not cost the taker its own price either: such a fill is dust.
        if taker_gives > taker.sell_left
            || u128::from(taker_gives) * u128::from(taker.buy_amount)
                > u128::from(maker_gives) * u128::from(taker.sell_amount)
        {
            continue;
        }
        taker.sell_left -= taker_gives;
        maker.sell_left -= maker_gives;
        fills.push(Fill {
            maker_order: maker.id.clone(),
            maker: maker.trader.clone(),
            taker_gives,
            maker_gives,
        });
    }
    fills
}

fn ceil_div(a: u128, b: u128) -> u128 {
    if b == 0 {
        return 0;
    }
    a.div_ceil(b)
}

/// The `k` slices `amount` is paid in: after `i` steps, `floor(amount x i / k)` is paid, for
/// both sides of a trade alike, so the two sides' paid shares never drift more than one
/// slice apart (a remainder given to the first slices of one side would let it run ahead).
pub fn slices(amount: u64, k: u32) -> Vec<u64> {
    let k = u128::from(k.max(1));
    let paid = |i: u128| u64::try_from(u128::from(amount) * i / k).unwrap_or(u64::MAX);
    (0..k).map(|i| paid(i + 1) - paid(i)).collect()
}

/// The transaction id of one half of a trade's step: `trade:step:t` (the taker's slice) or
/// `trade:step:m` (the maker's). The receiver looks for it in its deposits.
pub fn step_transaction_id(trade: &str, step: u32, taker_pays: bool) -> String {
    format!("{trade}:{step}:{}", if taker_pays { 't' } else { 'm' })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: &str, trader: &str, sell: (&str, u64), buy: (&str, u64), seq: i64) -> Order {
        Order {
            id: id.into(),
            trader: trader.into(),
            sell_issuer: sell.0.into(),
            buy_issuer: buy.0.into(),
            sell_amount: sell.1,
            buy_amount: buy.1,
            sell_left: sell.1,
            seq,
        }
    }

    #[test]
    fn a_crossing_order_trades_at_the_makers_price() {
        // The maker sells 2000 Y for 1000 X (0.5 X per Y); the taker sells 1000 X for at least
        // 1500 Y: it gets the maker's better price, 2000 Y.
        let mut makers = vec![order("m", "bob", ("Y", 2000), ("X", 1000), 1)];
        let mut taker = order("t", "alice", ("X", 1000), ("Y", 1500), 2);
        let fills = match_order(&mut taker, &mut makers);
        assert_eq!(fills.len(), 1);
        assert_eq!((fills[0].taker_gives, fills[0].maker_gives), (1000, 2000));
        assert_eq!((taker.sell_left, makers[0].sell_left), (0, 0));
    }

    #[test]
    fn orders_that_do_not_cross_rest() {
        let mut makers = vec![order("m", "bob", ("Y", 1000), ("X", 1000), 1)];
        let mut taker = order("t", "alice", ("X", 1000), ("Y", 2000), 2);
        assert!(match_order(&mut taker, &mut makers).is_empty());
        assert_eq!(taker.sell_left, 1000);
    }

    #[test]
    fn best_price_first_then_oldest_and_partial_fills() {
        let mut makers = vec![
            order("old", "b", ("Y", 100), ("X", 100), 1),
            order("cheap", "c", ("Y", 100), ("X", 50), 2),
            order("new", "d", ("Y", 100), ("X", 100), 3),
        ];
        let mut taker = order("t", "a", ("X", 120), ("Y", 100), 4);
        let fills = match_order(&mut taker, &mut makers);
        let who: Vec<&str> = fills.iter().map(|f| f.maker_order.as_str()).collect();
        assert_eq!(who, ["cheap", "old"]);
        assert_eq!((fills[0].taker_gives, fills[0].maker_gives), (50, 100));
        assert_eq!((fills[1].taker_gives, fills[1].maker_gives), (70, 70));
        assert_eq!(taker.sell_left, 0);
    }

    #[test]
    fn a_trader_never_trades_with_itself() {
        let mut makers = vec![order("m", "a", ("Y", 100), ("X", 100), 1)];
        let mut taker = order("t", "a", ("X", 100), ("Y", 100), 2);
        assert!(match_order(&mut taker, &mut makers).is_empty());
    }

    #[test]
    fn slices_add_up() {
        assert_eq!(slices(10, 4), vec![2, 3, 2, 3]);
        assert_eq!(slices(3, 4), vec![0, 1, 1, 1]);
        for (a, k) in [(1_000_003u64, 7u32), (0, 3), (u64::MAX, 64)] {
            let s = slices(a, k);
            assert_eq!(s.len(), k as usize);
            assert_eq!(
                s.iter().map(|x| u128::from(*x)).sum::<u128>(),
                u128::from(a)
            );
        }
    }

    /// Random orders in both directions: after each arrives and is matched, no resting
    /// order crosses a resting order of the other direction, no order gives more than it
    /// had, and every fill is at a price the maker accepted and the taker accepted.
    #[test]
    fn the_book_never_crosses() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = |m: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % m
        };
        for _round in 0..50 {
            let mut book: Vec<Order> = Vec::new();
            for seq in 0..60 {
                let x_to_y = next(2) == 0;
                let sell = 1 + next(1000);
                let buy = 1 + next(1000);
                let trader = format!("t{}", next(5));
                let mut taker = if x_to_y {
                    order(&format!("o{seq}"), &trader, ("X", sell), ("Y", buy), seq)
                } else {
                    order(&format!("o{seq}"), &trader, ("Y", sell), ("X", buy), seq)
                };
                let (mut makers, mut rest): (Vec<Order>, Vec<Order>) = book
                    .into_iter()
                    .partition(|o| o.sell_issuer == taker.buy_issuer);
                let before: Vec<u64> = makers.iter().map(|m| m.sell_left).collect();
                let fills = match_order(&mut taker, &mut makers);
                for f in &fills {
                    let m = makers
                        .iter()
                        .find(|m| m.id == f.maker_order)
                        .expect("maker");
                    // The maker got at least its price: gives * buy <= got * sell.
                    assert!(
                        u128::from(f.maker_gives) * u128::from(m.buy_amount)
                            <= u128::from(f.taker_gives) * u128::from(m.sell_amount)
                    );
                    // The taker got at least its price.
                    assert!(
                        u128::from(f.taker_gives) * u128::from(taker.buy_amount)
                            <= u128::from(f.maker_gives) * u128::from(taker.sell_amount),
                        "{f:?} {taker:?}"
                    );
                }
                let given: u64 = fills.iter().map(|f| f.taker_gives).sum();
                assert_eq!(given + taker.sell_left, taker.sell_amount);
                assert_eq!(
                    makers.iter().map(|m| m.sell_left).sum::<u64>()
                        + fills.iter().map(|f| f.maker_gives).sum::<u64>(),
                    before.iter().sum::<u64>()
                );
                rest.extend(makers.into_iter().filter(|m| m.sell_left > 0));
                if taker.sell_left > 0 {
                    rest.push(taker);
                }
                book = rest;
                // The invariant: resting orders of opposite directions never cross, unless
                // one of them is dust the other cannot trade with (a fill rounding to 0) or
                // both belong to one trader.
                for a in book.iter().filter(|o| o.sell_issuer == "X") {
                    for b in book.iter().filter(|o| o.sell_issuer == "Y") {
                        if a.trader == b.trader || !a.crosses(b) {
                            continue;
                        }
                        let (mut a2, mut b2) = (a.clone(), vec![b.clone()]);
                        assert!(
                            match_order(&mut a2, &mut b2).is_empty(),
                            "crossed: {a:?} {b:?}"
                        );
                    }
                }
            }
        }
    }
}
