//! The agent's records (DESIGN section 11): what it agrees to. Buyers propose, the agent
//! checks the proposal against its own books and answers its agreement (`node::records`).
//!
//! Record types the agent agrees to:
//! - `contract`, event `active`: `{"contract", "event": "active", "block_bytes",
//!   "contract_price"}`, proposed by the contract's buyer once the contract is paid. The agent
//!   agrees when the contract is its own, the buyer is the proposer, the block and price are
//!   those it signed, and the price is paid.
//! - `contract`, event `completed`: the same and `"bytes_written", "bytes_read",
//!   "audits_passed"`, once the contract has ended: the figures must be the agent's own
//!   (`agent::usage`; the buyer reads them from the contract's view). `audits_passed` is the
//!   audits the agent answered: each answer is recomputed from the stored bytes.
//!
//! - `tokens`: `{"tokens", "bytes", "bytes_total"}` ([`protocol::record::TokensRecord`]),
//!   proposed by a gateway that read through retrieval tokens. The agent agrees when every
//!   named token was read here and no record claimed it yet, `bytes` is at most what those
//!   reads served, and `bytes_total` is this gateway's recorded total so far plus `bytes`; the
//!   agreeing transaction then marks the tokens claimed and keeps the new total
//!   (`RecordBook::on_agree`).
//!
//! Anything else is refused (`409 record_refused`) with the reason: the proposer keeps its
//! proposal and the deal goes on (the agent never agrees to what its books do not say).

use std::sync::Arc;

use db::AnyConnection;
use diesel::prelude::*;
use node::records::RecordBook;
use protocol::record::{kinds, HalfBlock, TokensRecord, TOKENS_PER_RECORD_MAX};
use protocol::KeyPair;

use crate::schema::{contracts, retrievals, token_records};

/// The `contract` record's transaction (event `active`); `deny_unknown_fields` so that a
/// proposal claiming figures the agent does not keep is refused, not half-checked.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ContractActive {
    contract: String,
    /// Read to choose the struct (`active` or `completed`) before parsing.
    #[serde(rename = "event")]
    _event: String,
    block_bytes: u64,
    contract_price: u64,
}

fn unknown_event(event: &str) -> String {
    format!("this agent records a contract's events `active` and `completed`, not `{event}`")
}

/// The `contract` record's transaction at event `completed`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ContractCompleted {
    contract: String,
    #[serde(rename = "event")]
    _event: String,
    block_bytes: u64,
    contract_price: u64,
    bytes_written: u64,
    bytes_read: u64,
    audits_passed: u64,
}

/// Whether the agent deals with `entity`: a buyer of a contract here, or a gateway whose
/// `tokens` records it agreed to.
fn deals_with(conn: &mut AnyConnection, entity: &str) -> bool {
    let buyer = contracts::table
        .filter(contracts::buyer.eq(entity))
        .count()
        .get_result::<i64>(conn)
        .is_ok_and(|n| n > 0);
    buyer
        || token_records::table
            .find(entity)
            .count()
            .get_result::<i64>(conn)
            .is_ok_and(|n| n > 0)
}

fn check_books(conn: &mut AnyConnection, proposal: &HalfBlock) -> Result<(), String> {
    match proposal.kind.as_str() {
        kinds::CONTRACT => check_contract(conn, proposal),
        kinds::TOKENS => check_tokens(conn, proposal),
        other => Err(format!(
            "this agent records `{}` and `{}` deals, not `{other}`",
            kinds::CONTRACT,
            kinds::TOKENS,
        )),
    }
}

/// A `tokens` proposal against the retrievals served here (read-only; [`claim_tokens`] writes
/// when the agreement is appended).
fn check_tokens(conn: &mut AnyConnection, proposal: &HalfBlock) -> Result<(), String> {
    let tx: TokensRecord = serde_json::from_str(&proposal.transaction)
        .map_err(|e| format!("the transaction is not a tokens record: {e}"))?;
    let distinct: std::collections::BTreeSet<&String> = tx.tokens.iter().collect();
    if tx.tokens.is_empty()
        || tx.tokens.len() > TOKENS_PER_RECORD_MAX
        || distinct.len() != tx.tokens.len()
    {
        return Err(format!(
            "a tokens record names 1..={TOKENS_PER_RECORD_MAX} distinct tokens"
        ));
    }
    let cannot = |e: diesel::result::Error| format!("cannot read the retrievals: {e}");
    let found: Vec<(String, i64, Option<String>)> = retrievals::table
        .filter(retrievals::token_sha256.eq_any(&tx.tokens))
        .select((
            retrievals::token_sha256,
            retrievals::bytes_served,
            retrievals::recorded_by,
        ))
        .load(conn)
        .map_err(cannot)?;
    let mut served = 0u64;
    for name in &tx.tokens {
        let Some((_, bytes, by)) = found.iter().find(|(n, _, _)| n == name) else {
            return Err(format!("no token {name} was handed out here"));
        };
        if *bytes <= 0 {
            return Err(format!("token {name} was not read"));
        }
        if by.is_some() {
            return Err(format!("token {name} is recorded already"));
        }
        served = served.saturating_add(bytes.unsigned_abs());
    }
    if tx.bytes == 0 || tx.bytes > served {
        return Err(format!(
            "these tokens served {served} bytes here, not {}",
            tx.bytes
        ));
    }
    let so_far: i64 = token_records::table
        .find(&proposal.public_key)
        .select(token_records::bytes_total)
        .first(conn)
        .optional()
        .map_err(cannot)?
        .unwrap_or(0);
    let expected = so_far.unsigned_abs().checked_add(tx.bytes);
    if expected != Some(tx.bytes_total) || i64::try_from(tx.bytes_total).is_err() {
        return Err(format!(
            "this agent recorded {so_far} bytes with you before these {}: the total is not {}",
            tx.bytes, tx.bytes_total
        ));
    }
    Ok(())
}

/// On agreeing to a `tokens` record (checked by [`check_tokens`]): its tokens are claimed by
/// the proposer and the proposer's total kept.
fn claim_tokens(conn: &mut AnyConnection, agreed: &HalfBlock) -> QueryResult<()> {
    if agreed.kind != kinds::TOKENS {
        return Ok(());
    }
    let Ok(tx) = serde_json::from_str::<TokensRecord>(&agreed.transaction) else {
        // Checked before the agreement: unreachable, and nothing to claim.
        return Ok(());
    };
    let gateway = &agreed.public_key;
    // Checked to fit before the agreement (it is a sum of i64 columns).
    let total = i64::try_from(tx.bytes_total).unwrap_or(i64::MAX);
    diesel::update(retrievals::table.filter(retrievals::token_sha256.eq_any(&tx.tokens)))
        .set(retrievals::recorded_by.eq(gateway))
        .execute(conn)?;
    let updated = diesel::update(token_records::table.find(gateway))
        .set(token_records::bytes_total.eq(total))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(token_records::table)
            .values((
                token_records::gateway.eq(gateway),
                token_records::bytes_total.eq(total),
            ))
            .execute(conn)?;
    }
    Ok(())
}

fn check_contract(conn: &mut AnyConnection, proposal: &HalfBlock) -> Result<(), String> {
    let event = proposal.transaction_json()["event"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let not_kept = |e: serde_json::Error| {
        format!("the transaction is not a contract record this agent keeps: {e}")
    };
    let (tx, completed) = match event.as_str() {
        "active" => (
            serde_json::from_str::<ContractActive>(&proposal.transaction).map_err(not_kept)?,
            None,
        ),
        "completed" => {
            let c: ContractCompleted =
                serde_json::from_str(&proposal.transaction).map_err(not_kept)?;
            (
                ContractActive {
                    contract: c.contract.clone(),
                    _event: c._event.clone(),
                    block_bytes: c.block_bytes,
                    contract_price: c.contract_price,
                },
                Some(c),
            )
        }
        other => return Err(unknown_event(other)),
    };
    let row: Option<(String, i64, i64, i64, i64)> = contracts::table
        .find(&tx.contract)
        .select((
            contracts::buyer,
            contracts::block_bytes,
            contracts::contract_price,
            contracts::paid,
            contracts::end_s,
        ))
        .first(conn)
        .optional()
        .map_err(|e| format!("cannot read the contract: {e}"))?;
    let Some((buyer, block_bytes, price, paid, end_s)) = row else {
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
    if let Some(c) = completed {
        if node::now_s() < end_s {
            return Err("the contract has not ended yet".into());
        }
        let used = crate::agent::usage::of(conn, &tx.contract)
            .map_err(|e| format!("cannot read the contract's figures: {e}"))?;
        let books = (used.bytes_written, used.bytes_read, used.audits_answered);
        if books != (c.bytes_written, c.bytes_read, c.audits_passed) {
            return Err(format!(
                "this agent's books say {} bytes written, {} read, {} audits answered",
                books.0, books.1, books.2
            ));
        }
    }
    Ok(())
}

/// The agent's record book over its database: proposals checked against its books, a
/// refused one kept when its proposer is a buyer here.
pub fn book(db: db::Database, key: Arc<KeyPair>) -> Arc<RecordBook> {
    Arc::new(RecordBook::checking(db, key, check_books, deals_with).on_agree(claim_tokens))
}

impl crate::agent::Agent {
    /// Whether `buyer` consumed more than it contributed in the market's agreed records, by
    /// more than `free_rider_threshold` (DESIGN 11, seed 004; `clients::free_riders`).
    pub async fn is_free_rider(&self, buyer: &str) -> bool {
        let market = self.market_url.get().map(String::as_str);
        self.free_riders
            .is_free_rider(self.http_client(), market, buyer)
            .await
    }
}
