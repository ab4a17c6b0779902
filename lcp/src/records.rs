//! The issuer's records (DESIGN 11): a vendor that redeemed paywords proposes a `redemption`
//! record (`{"counter", "words", "value"}`: the counter of its `POST /lcp/v1/redemptions`
//! command, the words newly paid and the value credited, fees deducted); the issuer agrees
//! when its command log holds that command's answer, from that vendor, with those sums.
//! A refused proposal of a vendor that redeemed here is kept (it is in the vendor's chain);
//! a stranger's is not.

use std::sync::Arc;

use db::AnyConnection;
use diesel::prelude::*;
use node::commands::commands;
use node::records::RecordBook;
use protocol::payword::RedemptionsAnswer;
use protocol::record::{kinds, HalfBlock};
use protocol::KeyPair;

use crate::schema::chain_blocks;

/// The `redemption` record's transaction.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedemptionRecord {
    pub counter: u64,
    pub words: u64,
    pub value: u64,
}

fn check_books(conn: &mut AnyConnection, proposal: &HalfBlock) -> Result<(), String> {
    if proposal.kind != kinds::REDEMPTION {
        return Err(format!(
            "this issuer records only `{}` deals, not `{}`",
            kinds::REDEMPTION,
            proposal.kind
        ));
    }
    let tx: RedemptionRecord = serde_json::from_str(&proposal.transaction)
        .map_err(|e| format!("the transaction is not a redemption record: {e}"))?;
    let counter = i64::try_from(tx.counter).map_err(|_| "counter out of range".to_owned())?;
    let row: Option<(i32, String)> = commands::table
        .find((counter, proposal.public_key.as_str()))
        .select((commands::status, commands::response))
        .first(conn)
        .optional()
        .map_err(|e| format!("cannot read the command log: {e}"))?;
    let Some((status, response)) = row else {
        return Err(format!(
            "no command {} from this vendor is recorded here",
            tx.counter
        ));
    };
    let answer: RedemptionsAnswer = serde_json::from_str(&response)
        .ok()
        .filter(|_| status == 200)
        .ok_or_else(|| format!("command {} was not a redemption answered here", tx.counter))?;
    let words: u64 = answer.results.iter().map(|r| r.words).sum();
    let value: u64 = answer.results.iter().map(|r| r.amount).sum();
    if (words, value) != (tx.words, tx.value) {
        return Err(format!(
            "redemption {} paid {words} words worth {value}, not {} worth {}",
            tx.counter, tx.words, tx.value
        ));
    }
    Ok(())
}

fn is_vendor(conn: &mut AnyConnection, entity: &str) -> bool {
    chain_blocks::table
        .filter(chain_blocks::vendor.eq(entity))
        .count()
        .get_result::<i64>(conn)
        .is_ok_and(|n| n > 0)
}

/// The issuer's record book over its database.
pub fn book(db: db::Database, key: Arc<KeyPair>) -> Arc<RecordBook> {
    node::records::book_checking(db, key, check_books, is_vendor)
}
