//! The agent's records (DESIGN section 11): what it agrees to. Buyers propose, the agent
//! checks the proposal against its own books and answers its agreement (`node::records`).
//!
//! Record types the agent agrees to:
//! - `contract`, event `active`: `{"contract", "event": "active", "block_bytes",
//!   "contract_price"}`, proposed by the contract's buyer once the contract is paid. The agent
//!   agrees when the contract is its own, the buyer is the proposer, the block and price are
//!   those it signed, and the price is paid.
//!
//! Anything else is refused (`409 record_refused`) with the reason: the proposer keeps its
//! proposal and the deal goes on (the agent never agrees to what its books do not say).

use std::sync::Arc;

use db::AnyConnection;
use diesel::prelude::*;
use node::records::{BooksCheck, RecordBook, Refusal};
use protocol::record::{kinds, HalfBlock};
use protocol::KeyPair;

use crate::schema::contracts;

/// The `contract` record's transaction (event `active`); `deny_unknown_fields` so that a
/// proposal claiming figures the agent does not keep is refused, not half-checked.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ContractActive {
    contract: String,
    event: String,
    block_bytes: u64,
    contract_price: u64,
}

/// Check a proposal against the agent's books (in the agreeing transaction). A refused
/// proposal is kept when its proposer is a buyer here (see `node::records::Refusal`).
pub fn check(conn: &mut AnyConnection, proposal: &HalfBlock) -> Result<(), Refusal> {
    check_books(conn, proposal).map_err(|reason| Refusal {
        keep_block: is_buyer(conn, &proposal.public_key),
        reason,
    })
}

fn is_buyer(conn: &mut AnyConnection, entity: &str) -> bool {
    contracts::table
        .filter(contracts::buyer.eq(entity))
        .count()
        .get_result::<i64>(conn)
        .is_ok_and(|n| n > 0)
}

fn check_books(conn: &mut AnyConnection, proposal: &HalfBlock) -> Result<(), String> {
    if proposal.kind != kinds::CONTRACT {
        return Err(format!(
            "this agent records only `{}` deals, not `{}`",
            kinds::CONTRACT,
            proposal.kind
        ));
    }
    let tx: ContractActive = serde_json::from_str(&proposal.transaction)
        .map_err(|e| format!("the transaction is not a contract record this agent keeps: {e}"))?;
    if tx.event != "active" {
        return Err(format!(
            "this agent records the event `active` of a contract, not `{}`",
            tx.event
        ));
    }
    let row: Option<(String, i64, i64, i64)> = contracts::table
        .find(&tx.contract)
        .select((
            contracts::buyer,
            contracts::block_bytes,
            contracts::contract_price,
            contracts::paid,
        ))
        .first(conn)
        .optional()
        .map_err(|e| format!("cannot read the contract: {e}"))?;
    let Some((buyer, block_bytes, price, paid)) = row else {
        return Err(format!("no contract {} here", tx.contract));
    };
    if buyer != proposal.public_key {
        return Err("the contract is another buyer's".into());
    }
    if block_bytes.unsigned_abs() != tx.block_bytes || price.unsigned_abs() != tx.contract_price {
        return Err(format!(
            "the contract's block is {block_bytes} bytes for {price}, not {} for {}",
            tx.block_bytes, tx.contract_price
        ));
    }
    if paid < price {
        return Err("the contract is not paid yet: it is not active".into());
    }
    Ok(())
}

/// The agent's record book over its database.
pub fn book(db: db::Database, key: Arc<KeyPair>) -> Arc<RecordBook> {
    let check: BooksCheck = Arc::new(check);
    Arc::new(RecordBook::new(db, key, check))
}
