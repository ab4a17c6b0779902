//! The exchange's records (DESIGN 11 and 14): once a half of a trade's step is confirmed,
//! its receiver proposes a `trade` record ([`protocol::record::TradeRecord`]); the exchange
//! agrees when its own books say the same: that half confirmed, paid by `from` to `to`, in
//! that currency, for that amount. A refused proposal of a trader the exchange deals with is
//! kept (it is in the trader's chain); a stranger's is not.

use std::sync::Arc;

use db::AnyConnection;
use diesel::prelude::*;
use node::records::RecordBook;
use protocol::record::{kinds, HalfBlock, TradeRecord};
use protocol::KeyPair;

use crate::schema::{exchange_steps, exchange_trades};

fn check_books(conn: &mut AnyConnection, proposal: &HalfBlock) -> Result<(), String> {
    if proposal.kind != kinds::TRADE {
        return Err(format!(
            "this exchange records only `{}` steps, not `{}`",
            kinds::TRADE,
            proposal.kind
        ));
    }
    let tx: TradeRecord = serde_json::from_str(&proposal.transaction)
        .map_err(|e| format!("the transaction is not a trade record: {e}"))?;
    if tx.to != proposal.public_key {
        return Err("a trade step is recorded by the one who received it".into());
    }
    let half = i32::try_from(tx.half).map_err(|_| "no such half".to_owned())?;
    let row: Option<(String, String, i64, Option<i64>, i32)> = exchange_steps::table
        .find((&tx.trade, half))
        .select((
            exchange_steps::payer,
            exchange_steps::issuer,
            exchange_steps::amount,
            exchange_steps::confirmed_ms,
            exchange_steps::recorded,
        ))
        .first(conn)
        .optional()
        .map_err(|e| format!("cannot read the step: {e}"))?;
    let Some((payer, issuer, amount, confirmed, recorded)) = row else {
        return Err(format!("no half {} of trade {} here", tx.half, tx.trade));
    };
    if confirmed.is_none() {
        return Err("that half is not confirmed yet".into());
    }
    if recorded != 0 {
        return Err("that half is recorded already".into());
    }
    // The receiver: the maker for the taker's halves (even), the taker for the maker's.
    let (taker, maker): (String, String) = exchange_trades::table
        .find(&tx.trade)
        .select((exchange_trades::taker, exchange_trades::maker))
        .first(conn)
        .map_err(|e| format!("cannot read the trade: {e}"))?;
    let receiver = if tx.half.is_multiple_of(2) {
        maker
    } else {
        taker
    };
    if receiver != proposal.public_key {
        return Err("only the slice's receiver records it".into());
    }
    if payer != tx.from || issuer != tx.issuer || amount.unsigned_abs() != tx.amount {
        return Err(format!(
            "the half was {amount} of {issuer} paid by {payer}, not {} of {} by {}",
            tx.amount, tx.issuer, tx.from
        ));
    }
    Ok(())
}

fn is_trader(conn: &mut AnyConnection, entity: &str) -> bool {
    exchange_trades::table
        .filter(
            exchange_trades::taker
                .eq(entity)
                .or(exchange_trades::maker.eq(entity)),
        )
        .count()
        .get_result::<i64>(conn)
        .is_ok_and(|n| n > 0)
}

/// Mark the half recorded in the agreeing transaction: one agreement per half.
fn note_recorded(conn: &mut AnyConnection, agreed: &HalfBlock) -> diesel::QueryResult<()> {
    let Ok(tx) = serde_json::from_str::<TradeRecord>(&agreed.transaction) else {
        // check_books parsed it before agreeing: an agreement always has this shape.
        return Ok(());
    };
    diesel::update(exchange_steps::table.find((tx.trade, i32::try_from(tx.half).unwrap_or(-1))))
        .set(exchange_steps::recorded.eq(1))
        .execute(conn)
        .map(|_| ())
}

/// The exchange's record book over the bank's database.
pub fn book(db: db::Database, key: Arc<KeyPair>) -> Arc<RecordBook> {
    Arc::new(RecordBook::checking(db, key, check_books, is_trader).on_agree(note_recorded))
}
