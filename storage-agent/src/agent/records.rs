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

/// How long a buyer's free-rider verdict is kept before the market is asked again.
pub const FREE_RIDER_CACHE_S: u64 = 300;
/// Buyers whose verdict is kept; past it the memory starts over.
const FREE_RIDERS_KEPT_MAX: usize = 65_536;
/// Longest wait for the market's answer; a market that does not answer in time gives no
/// verdict, and the buyer keeps its tab (the tab's own limit still bounds the risk).
pub const FREE_RIDER_WAIT_MS_MAX: u64 = 2_000;

impl crate::agent::Agent {
    /// Whether `buyer` consumed more than it contributed in the market's agreed records, by
    /// more than `free_rider_threshold` (DESIGN 11, seed 004). Off (false) when the threshold
    /// is 0 or the agent has no market; the market's answer is kept [`FREE_RIDER_CACHE_S`].
    pub async fn is_free_rider(&self, buyer: &str) -> bool {
        let threshold = self.config.free_rider_threshold;
        let Some(market) = self.market_url.get().filter(|_| threshold > 0) else {
            return false;
        };
        let cached = self
            .free_riders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(buyer)
            .copied();
        if let Some((at, verdict)) = cached {
            if at.elapsed() < std::time::Duration::from_secs(FREE_RIDER_CACHE_S) {
                return verdict;
            }
        }
        let url = format!(
            "{market}/v1/reputation?entity={}",
            node::client::encode_query_value(buyer)
        );
        let asked = async {
            let resp = self
                .http_client()
                .get(&url)
                .timeout(std::time::Duration::from_millis(FREE_RIDER_WAIT_MS_MAX))
                .send()
                .await
                .ok()?;
            resp.json::<protocol::book::EntityReputation>().await.ok()
        };
        let Some(rep) = asked.await else {
            return false;
        };
        let verdict = rep.consumed - rep.contributed > threshold as f64;
        let mut map = self
            .free_riders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= FREE_RIDERS_KEPT_MAX {
            map.clear();
        }
        map.insert(buyer.to_owned(), (std::time::Instant::now(), verdict));
        verdict
    }
}
