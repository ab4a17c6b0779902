//! The exchange's records: orders, trades, their steps and the traders' standing. Every
//! function is blocking, takes a connection, and changes what it changes in one transaction
//! under the bank's write lock (`crate::store::WRITES`), so matching sees one book.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::{match_order, slices, step_transaction_id, Order};
use crate::error::Error;
use crate::schema::{exchange_orders, exchange_steps, exchange_traders, exchange_trades};
use db::AnyConnection;

pub const OPEN: &str = "open";
pub const FILLED: &str = "filled";
pub const CANCELLED: &str = "cancelled";
pub const SETTLING: &str = "settling";
pub const DONE: &str = "done";
pub const DEFAULTED: &str = "defaulted";
pub const DISPUTED: &str = "disputed";

/// Most open orders of one pair a book lists.
pub const BOOK_ORDERS_MAX: i64 = 500;
/// Most trades of one trader listed.
pub const TRADES_MAX: i64 = 500;

fn lock() -> std::sync::MutexGuard<'static, ()> {
    // A panic while holding the lock leaves no half-written state (the transaction rolled
    // back), so a poisoned lock is safe to take.
    crate::store::WRITES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

fn i64_of(v: u64) -> Result<i64, Error> {
    i64::try_from(v).map_err(|_| Error::InvalidAmount {
        max: i64::MAX as u64,
    })
}

/// An order as asked (`POST /v1/exchange/orders`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// Chosen by the trader (a UUID): placing the same order again answers it as it stands.
    pub id: String,
    pub sell_issuer: String,
    pub sell_amount: u64,
    pub buy_issuer: String,
    pub buy_amount: u64,
}

/// An order as it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    pub id: String,
    pub trader: String,
    pub sell_issuer: String,
    pub buy_issuer: String,
    pub sell_amount: u64,
    pub buy_amount: u64,
    pub sell_left: u64,
    pub state: String,
}

/// The answer to placing an order: the order and the trades it made at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Placed {
    pub order: OrderView,
    pub trades: Vec<String>,
}

/// Whose turn it is in a trade that is settling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// The step (0-based) and its half: the taker pays in the first, the maker in the second.
    pub step: u32,
    pub half: u32,
    pub payer: String,
    pub receiver: String,
    /// The currency and amount of this slice, and the transfer's transaction id.
    pub issuer: String,
    pub amount: u64,
    pub transaction_id: String,
    /// The payer said it paid: the receiver is to confirm.
    pub claimed: bool,
    /// Unix ms by which this turn must be taken.
    pub deadline_ms: u64,
}

/// A trade as it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeView {
    pub id: String,
    pub taker: String,
    pub maker: String,
    pub taker_order: String,
    pub maker_order: String,
    /// What the taker pays the maker, in the taker's sold currency, and back.
    pub taker_issuer: String,
    pub taker_amount: u64,
    pub maker_issuer: String,
    pub maker_amount: u64,
    pub steps: u32,
    /// Halves confirmed so far (two per step).
    pub halves_done: u32,
    pub state: String,
    pub defaulter: Option<String>,
    pub turn: Option<Turn>,
}

impl TradeView {
    /// What the trader of `order` gives and gets in this trade (its side's amounts).
    pub fn amounts_for(&self, order: &str) -> (u64, u64) {
        if self.taker_order == order {
            (self.taker_amount, self.maker_amount)
        } else {
            (self.maker_amount, self.taker_amount)
        }
    }

    /// The currencies the trader of `order` gives and gets.
    pub fn currencies_for(&self, order: &str) -> (&str, &str) {
        if self.taker_order == order {
            (&self.taker_issuer, &self.maker_issuer)
        } else {
            (&self.maker_issuer, &self.taker_issuer)
        }
    }
}

#[derive(Queryable)]
struct TradeRow {
    id: String,
    taker: String,
    maker: String,
    taker_order: String,
    maker_order: String,
    taker_issuer: String,
    taker_amount: i64,
    maker_issuer: String,
    maker_amount: i64,
    steps: i32,
    half: i32,
    claimed: i32,
    turn_ms: i64,
    state: String,
    defaulter: Option<String>,
    #[allow(dead_code)]
    created_ms: i64,
}

impl TradeRow {
    /// Half `h`'s payer, receiver, currency and amount.
    fn half(&self, h: u32) -> (String, String, String, u64) {
        let step = (h / 2) as usize;
        if h.is_multiple_of(2) {
            let amount = slices(self.taker_amount.unsigned_abs(), self.steps.unsigned_abs())
                .get(step)
                .copied()
                .unwrap_or(0);
            (
                self.taker.clone(),
                self.maker.clone(),
                self.taker_issuer.clone(),
                amount,
            )
        } else {
            let amount = slices(self.maker_amount.unsigned_abs(), self.steps.unsigned_abs())
                .get(step)
                .copied()
                .unwrap_or(0);
            (
                self.maker.clone(),
                self.taker.clone(),
                self.maker_issuer.clone(),
                amount,
            )
        }
    }

    fn view(&self, timeout_ms: u64) -> TradeView {
        let half = self.half.unsigned_abs();
        let turn = (self.state == SETTLING).then(|| {
            let (payer, receiver, issuer, amount) = self.half(half);
            Turn {
                step: half / 2,
                half,
                payer,
                receiver,
                issuer,
                amount,
                transaction_id: step_transaction_id(&self.id, half / 2, half.is_multiple_of(2)),
                claimed: self.claimed != 0,
                deadline_ms: self.turn_ms.unsigned_abs().saturating_add(timeout_ms),
            }
        });
        TradeView {
            id: self.id.clone(),
            taker: self.taker.clone(),
            maker: self.maker.clone(),
            taker_order: self.taker_order.clone(),
            maker_order: self.maker_order.clone(),
            taker_issuer: self.taker_issuer.clone(),
            taker_amount: self.taker_amount.unsigned_abs(),
            maker_issuer: self.maker_issuer.clone(),
            maker_amount: self.maker_amount.unsigned_abs(),
            steps: self.steps.unsigned_abs(),
            halves_done: half,
            state: self.state.clone(),
            defaulter: self.defaulter.clone(),
            turn,
        }
    }
}

type OrderRow = (String, String, String, String, i64, i64, i64, String, i64);

fn order_of(r: OrderRow) -> (Order, String) {
    let (id, trader, sell_issuer, buy_issuer, sell_amount, buy_amount, sell_left, state, seq) = r;
    (
        Order {
            id,
            trader,
            sell_issuer,
            buy_issuer,
            sell_amount: sell_amount.unsigned_abs(),
            buy_amount: buy_amount.unsigned_abs(),
            sell_left: sell_left.unsigned_abs(),
            seq,
        },
        state,
    )
}

fn view_of(o: &Order, state: &str) -> OrderView {
    OrderView {
        id: o.id.clone(),
        trader: o.trader.clone(),
        sell_issuer: o.sell_issuer.clone(),
        buy_issuer: o.buy_issuer.clone(),
        sell_amount: o.sell_amount,
        buy_amount: o.buy_amount,
        sell_left: o.sell_left,
        state: state.to_owned(),
    }
}

macro_rules! order_columns {
    () => {
        (
            exchange_orders::id,
            exchange_orders::trader,
            exchange_orders::sell_issuer,
            exchange_orders::buy_issuer,
            exchange_orders::sell_amount,
            exchange_orders::buy_amount,
            exchange_orders::sell_left,
            exchange_orders::state,
            exchange_orders::seq,
        )
    };
}

/// A trader's record at the exchange.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    pub completed: u64,
    /// Trades it stopped by not paying its slice in time: it may place no more orders.
    pub defaults: u64,
    /// Trades that stopped on a slice its payer said it paid and its receiver did not
    /// confirm: the exchange cannot tell which of the two is right, so both count one.
    pub disputes: u64,
}

pub fn standing(conn: &mut AnyConnection, entity: &str) -> Result<Standing, Error> {
    let row: Option<(i64, i64, i64)> = exchange_traders::table
        .find(entity)
        .select((
            exchange_traders::completed,
            exchange_traders::defaults,
            exchange_traders::disputes,
        ))
        .first(conn)
        .optional()?;
    Ok(row.map_or(Standing::default(), |(c, d, x)| Standing {
        completed: c.unsigned_abs(),
        defaults: d.unsigned_abs(),
        disputes: x.unsigned_abs(),
    }))
}

/// Add to a trader's standing.
fn bump(conn: &mut AnyConnection, entity: &str, by: Standing) -> Result<(), Error> {
    let (c, d, x) = (
        i64_of(by.completed)?,
        i64_of(by.defaults)?,
        i64_of(by.disputes)?,
    );
    let n = diesel::update(exchange_traders::table.find(entity))
        .set((
            exchange_traders::completed.eq(exchange_traders::completed + c),
            exchange_traders::defaults.eq(exchange_traders::defaults + d),
            exchange_traders::disputes.eq(exchange_traders::disputes + x),
        ))
        .execute(conn)?;
    if n == 0 {
        diesel::insert_into(exchange_traders::table)
            .values((
                exchange_traders::entity.eq(entity),
                exchange_traders::completed.eq(c),
                exchange_traders::defaults.eq(d),
                exchange_traders::disputes.eq(x),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Place `new` for `trader`: matched against the opposite book at once (trades settle in
/// `steps` steps), the rest resting. A trader that defaulted is refused.
pub fn place(
    conn: &mut AnyConnection,
    trader: &str,
    new: &NewOrder,
    steps: u32,
    now_ms: u64,
) -> Result<Placed, Error> {
    let now = i64_of(now_ms)?;
    let _w = lock();
    conn.transaction(|conn| {
        let existing: Option<OrderRow> = exchange_orders::table
            .find(&new.id)
            .select(order_columns!())
            .first(conn)
            .optional()?;
        if let Some(row) = existing {
            let (o, state) = order_of(row);
            if o.trader != trader {
                return Err(Error::InvalidQuery("this order id is taken".into()));
            }
            let trades = exchange_trades::table
                .filter(exchange_trades::taker_order.eq(&o.id))
                .select(exchange_trades::id)
                .load(conn)?;
            return Ok(Placed {
                order: view_of(&o, &state),
                trades,
            });
        }
        if standing(conn, trader)?.defaults > 0 {
            return Err(Error::TraderDefaulted(trader.to_owned()));
        }
        let seq: Option<i64> = exchange_orders::table
            .select(diesel::dsl::max(exchange_orders::seq))
            .first(conn)?;
        let mut taker = Order {
            id: new.id.clone(),
            trader: trader.to_owned(),
            sell_issuer: new.sell_issuer.clone(),
            buy_issuer: new.buy_issuer.clone(),
            sell_amount: new.sell_amount,
            buy_amount: new.buy_amount,
            sell_left: new.sell_amount,
            seq: seq.unwrap_or(0) + 1,
        };
        let rows: Vec<OrderRow> = exchange_orders::table
            .filter(exchange_orders::sell_issuer.eq(&new.buy_issuer))
            .filter(exchange_orders::buy_issuer.eq(&new.sell_issuer))
            .filter(exchange_orders::state.eq(OPEN))
            .select(order_columns!())
            .load(conn)?;
        let mut makers: Vec<Order> = rows.into_iter().map(|r| order_of(r).0).collect();
        let fills = match_order(&mut taker, &mut makers);
        let state = if taker.sell_left == 0 { FILLED } else { OPEN };
        diesel::insert_into(exchange_orders::table)
            .values((
                exchange_orders::id.eq(&taker.id),
                exchange_orders::trader.eq(trader),
                exchange_orders::sell_issuer.eq(&taker.sell_issuer),
                exchange_orders::buy_issuer.eq(&taker.buy_issuer),
                exchange_orders::sell_amount.eq(i64_of(taker.sell_amount)?),
                exchange_orders::buy_amount.eq(i64_of(taker.buy_amount)?),
                exchange_orders::sell_left.eq(i64_of(taker.sell_left)?),
                exchange_orders::state.eq(state),
                exchange_orders::seq.eq(taker.seq),
                exchange_orders::created_ms.eq(now),
            ))
            .execute(conn)?;
        let mut trades = Vec::new();
        for (n, fill) in fills.iter().enumerate() {
            // No more slices than the smaller side has minor units: every slice of it is
            // at least one, and both sides' paid shares stay within a slice of each other.
            let steps = u64::from(steps)
                .min(fill.taker_gives)
                .min(fill.maker_gives)
                .max(1);
            let maker = makers
                .iter()
                .find(|m| m.id == fill.maker_order)
                .ok_or_else(|| Error::Internal("a fill names no maker".into()))?;
            diesel::update(exchange_orders::table.find(&maker.id))
                .set((
                    exchange_orders::sell_left.eq(i64_of(maker.sell_left)?),
                    exchange_orders::state.eq(if maker.sell_left == 0 { FILLED } else { OPEN }),
                ))
                .execute(conn)?;
            let id = format!("{}-{n}", taker.id);
            diesel::insert_into(exchange_trades::table)
                .values((
                    exchange_trades::id.eq(&id),
                    exchange_trades::taker.eq(trader),
                    exchange_trades::maker.eq(&fill.maker),
                    exchange_trades::taker_order.eq(&taker.id),
                    exchange_trades::maker_order.eq(&maker.id),
                    exchange_trades::taker_issuer.eq(&taker.sell_issuer),
                    exchange_trades::taker_amount.eq(i64_of(fill.taker_gives)?),
                    exchange_trades::maker_issuer.eq(&maker.sell_issuer),
                    exchange_trades::maker_amount.eq(i64_of(fill.maker_gives)?),
                    exchange_trades::steps.eq(i32::try_from(steps).unwrap_or(1)),
                    exchange_trades::half.eq(0),
                    exchange_trades::claimed.eq(0),
                    exchange_trades::turn_ms.eq(now),
                    exchange_trades::state.eq(SETTLING),
                    exchange_trades::created_ms.eq(now),
                ))
                .execute(conn)?;
            trades.push(id);
        }
        Ok(Placed {
            order: view_of(&taker, state),
            trades,
        })
    })
}

/// Cancel what is left of `trader`'s order `id`; answers it as it then stands.
pub fn cancel(conn: &mut AnyConnection, trader: &str, id: &str) -> Result<OrderView, Error> {
    let _w = lock();
    conn.transaction(|conn| {
        diesel::update(
            exchange_orders::table
                .find(id)
                .filter(exchange_orders::trader.eq(trader))
                .filter(exchange_orders::state.eq(OPEN)),
        )
        .set(exchange_orders::state.eq(CANCELLED))
        .execute(conn)?;
        let row: OrderRow = exchange_orders::table
            .find(id)
            .filter(exchange_orders::trader.eq(trader))
            .select(order_columns!())
            .first(conn)
            .optional()?
            .ok_or_else(|| Error::UnknownOrder(id.to_owned()))?;
        let (o, state) = order_of(row);
        Ok(view_of(&o, &state))
    })
}

/// The open orders of a pair, both directions, best price first in each.
pub fn book(conn: &mut AnyConnection, a: &str, b: &str) -> Result<Vec<OrderView>, Error> {
    let rows: Vec<OrderRow> = exchange_orders::table
        .filter(exchange_orders::state.eq(OPEN))
        .filter(
            exchange_orders::sell_issuer
                .eq(a)
                .and(exchange_orders::buy_issuer.eq(b))
                .or(exchange_orders::sell_issuer
                    .eq(b)
                    .and(exchange_orders::buy_issuer.eq(a))),
        )
        .order(exchange_orders::seq.asc())
        .limit(BOOK_ORDERS_MAX)
        .select(order_columns!())
        .load(conn)?;
    let mut orders: Vec<(Order, String)> = rows.into_iter().map(order_of).collect();
    orders.sort_by(|(x, _), (y, _)| x.sell_issuer.cmp(&y.sell_issuer).then_with(|| x.before(y)));
    Ok(orders.iter().map(|(o, s)| view_of(o, s)).collect())
}

fn trade_row(conn: &mut AnyConnection, id: &str) -> Result<TradeRow, Error> {
    exchange_trades::table
        .find(id)
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::UnknownTrade(id.to_owned()))
}

pub fn trade(conn: &mut AnyConnection, id: &str, timeout_ms: u64) -> Result<TradeView, Error> {
    Ok(trade_row(conn, id)?.view(timeout_ms))
}

/// `entity`'s trades, as taker or maker, newest first.
pub fn trades_of(
    conn: &mut AnyConnection,
    entity: &str,
    timeout_ms: u64,
) -> Result<Vec<TradeView>, Error> {
    let rows: Vec<TradeRow> = exchange_trades::table
        .filter(
            exchange_trades::taker
                .eq(entity)
                .or(exchange_trades::maker.eq(entity)),
        )
        .order(exchange_trades::created_ms.desc())
        .limit(TRADES_MAX)
        .load(conn)?;
    Ok(rows.iter().map(|r| r.view(timeout_ms)).collect())
}

/// The payer of half `half` says it paid. Again for the same half: nothing changes.
pub fn claim(
    conn: &mut AnyConnection,
    id: &str,
    half: u32,
    who: &str,
    now_ms: u64,
    timeout_ms: u64,
) -> Result<TradeView, Error> {
    let now = i64_of(now_ms)?;
    let _w = lock();
    conn.transaction(|conn| {
        let t = trade_row(conn, id)?;
        let current = t.half.unsigned_abs();
        if half < current || (half == current && t.claimed != 0) {
            return Ok(t.view(timeout_ms)); // already claimed
        }
        if t.state != SETTLING || half != current {
            return Err(Error::NotYourTurn(format!(
                "trade {id} is {} at half {current}, not at half {half}",
                t.state
            )));
        }
        let (payer, _, issuer, amount) = t.half(half);
        if payer != who {
            return Err(Error::NotYourTurn(format!(
                "half {half} is {payer}'s to pay"
            )));
        }
        diesel::insert_into(exchange_steps::table)
            .values((
                exchange_steps::trade.eq(id),
                exchange_steps::half.eq(i32::try_from(half).unwrap_or(0)),
                exchange_steps::payer.eq(&payer),
                exchange_steps::issuer.eq(&issuer),
                exchange_steps::amount.eq(i64_of(amount)?),
                exchange_steps::claimed_ms.eq(now),
            ))
            .execute(conn)?;
        diesel::update(exchange_trades::table.find(id))
            .set((
                exchange_trades::claimed.eq(1),
                exchange_trades::turn_ms.eq(now),
            ))
            .execute(conn)?;
        Ok(trade_row(conn, id)?.view(timeout_ms))
    })
}

/// The receiver of half `half` saw the slice in its deposits: the next half begins (the
/// trade is done after the last). Again for the same half: nothing changes.
pub fn confirm(
    conn: &mut AnyConnection,
    id: &str,
    half: u32,
    who: &str,
    now_ms: u64,
    timeout_ms: u64,
) -> Result<TradeView, Error> {
    let now = i64_of(now_ms)?;
    let _w = lock();
    conn.transaction(|conn| {
        let t = trade_row(conn, id)?;
        let current = t.half.unsigned_abs();
        if half < current {
            return Ok(t.view(timeout_ms)); // already confirmed
        }
        if t.state != SETTLING || half != current || t.claimed == 0 {
            return Err(Error::NotYourTurn(format!(
                "trade {id} is {} at half {current} ({}), not confirming half {half}",
                t.state,
                if t.claimed == 0 { "unpaid" } else { "paid" }
            )));
        }
        let (_, receiver, _, _) = t.half(half);
        if receiver != who {
            return Err(Error::NotYourTurn(format!(
                "half {half} is {receiver}'s to confirm"
            )));
        }
        diesel::update(exchange_steps::table.find((id, i32::try_from(half).unwrap_or(0))))
            .set(exchange_steps::confirmed_ms.eq(Some(now)))
            .execute(conn)?;
        let next = half + 1;
        let done = next >= 2 * t.steps.unsigned_abs();
        diesel::update(exchange_trades::table.find(id))
            .set((
                exchange_trades::half.eq(i32::try_from(next).unwrap_or(i32::MAX)),
                exchange_trades::claimed.eq(0),
                exchange_trades::turn_ms.eq(now),
                exchange_trades::state.eq(if done { DONE } else { SETTLING }),
            ))
            .execute(conn)?;
        if done {
            let one = Standing {
                completed: 1,
                ..Standing::default()
            };
            bump(conn, &t.taker, one)?;
            bump(conn, &t.maker, one)?;
        }
        Ok(trade_row(conn, id)?.view(timeout_ms))
    })
}

/// Trades whose turn has waited past `timeout_ms` stop. A payer that did not pay (no claim)
/// defaulted: it is marked, its open orders are cancelled and it may place no more. A
/// receiver that did not confirm a claimed slice leaves the trade disputed: the exchange
/// cannot see the receiver's deposits, so it cannot tell a payer that lies about paying from
/// a receiver that lies about receiving; both count a dispute and neither is barred (else a
/// trader could bar any honest counter-party by claiming a payment it never made). Answers
/// (trade, what happened) for each.
pub fn expire(
    conn: &mut AnyConnection,
    now_ms: u64,
    timeout_ms: u64,
) -> Result<Vec<(String, String)>, Error> {
    let cutoff = i64_of(now_ms.saturating_sub(timeout_ms))?;
    let _w = lock();
    conn.transaction(|conn| {
        let late: Vec<TradeRow> = exchange_trades::table
            .filter(exchange_trades::state.eq(SETTLING))
            .filter(exchange_trades::turn_ms.lt(cutoff))
            .load(conn)?;
        let mut out = Vec::new();
        for t in late {
            let (payer, receiver, _, _) = t.half(t.half.unsigned_abs());
            if t.claimed != 0 {
                diesel::update(exchange_trades::table.find(&t.id))
                    .set(exchange_trades::state.eq(DISPUTED))
                    .execute(conn)?;
                let one = Standing {
                    disputes: 1,
                    ..Standing::default()
                };
                bump(conn, &payer, one)?;
                bump(conn, &receiver, one)?;
                out.push((
                    t.id,
                    format!("disputed: {payer} says it paid, {receiver} did not confirm"),
                ));
                continue;
            }
            diesel::update(exchange_trades::table.find(&t.id))
                .set((
                    exchange_trades::state.eq(DEFAULTED),
                    exchange_trades::defaulter.eq(Some(&payer)),
                ))
                .execute(conn)?;
            let one = Standing {
                defaults: 1,
                ..Standing::default()
            };
            bump(conn, &payer, one)?;
            diesel::update(
                exchange_orders::table
                    .filter(exchange_orders::trader.eq(&payer))
                    .filter(exchange_orders::state.eq(OPEN)),
            )
            .set(exchange_orders::state.eq(CANCELLED))
            .execute(conn)?;
            out.push((t.id, format!("{payer} defaulted")));
        }
        Ok(out)
    })
}
