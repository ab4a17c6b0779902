//! The writer's side of the payword broker (DESIGN section 10): chains bought into escrow,
//! redemptions paid from it, double spends recorded, escrows returned after expiry.
//!
//! Invariants, on top of the ledger's:
//! - A chain's escrow is the account `escrow:<chain>`; it never goes below zero, so the sum of
//!   all balances, escrows included, stays zero.
//! - A vendor is paid each word of a chain at most once: its blocks of one chain never
//!   overlap each other (an overlapping one is refused), and each block's `redeemed_to` only
//!   grows.
//! - Two blocks of one chain for two vendors that overlap are a double spend: the proof is
//!   recorded the first time the second block is redeemed from, and the shortfall of every
//!   later redemption of that chain is added to it.
//! - A closed chain (escrow returned) redeems nothing.

use db::AnyConnection;
use diesel::prelude::*;
use protocol::payword::{
    ChainReceipt, FraudProof, Payword, RedemptionResult, RedemptionsAnswer, SignedBlock, Word,
};
use protocol::{Amount, EntityId, Envelope};

use super::{overflow, to_i64, BatchWork, Outcome, Posting, WriterState};
use crate::error::Error;
use crate::schema::{chain_blocks, chains, frauds};

/// The account a chain's escrow is held in.
pub fn escrow_account(chain: &str) -> String {
    format!("escrow:{chain}")
}

/// The transaction id of every movement of a chain's money (buying, redeeming, returning).
pub fn chain_transaction_id(chain: &str) -> String {
    format!("chain:{chain}")
}

/// A chain bought: checked and its touchstone signed by the handler.
#[derive(Debug, Clone)]
pub struct ChainOrder {
    pub payer: EntityId,
    pub counter: u64,
    pub body_sha256: String,
    pub chain: String,
    pub root: Word,
    pub length: u64,
    pub unit: u64,
    pub expires_at_s: i64,
    pub touchstone: Envelope,
}

/// A vendor's redemptions, each checked by the handler (chain known, block signature, word).
#[derive(Debug, Clone)]
pub struct RedeemOrder {
    pub vendor: EntityId,
    pub counter: u64,
    pub body_sha256: String,
    pub items: Vec<RedeemItem>,
}

#[derive(Debug, Clone)]
pub enum RedeemItem {
    /// The word and the block signature verified against the chain's touchstone.
    Checked(Payword),
    /// Refused before the writer: answered as it is.
    Refused(RedemptionResult),
}

/// A refused item's answer.
pub fn refused(p: &Payword, code: &str, message: impl Into<String>) -> RedemptionResult {
    RedemptionResult {
        chain: p.chain.clone(),
        to: p.to,
        result: code.to_owned(),
        words: 0,
        amount: 0,
        fee: 0,
        shortfall: 0,
        message: Some(message.into()),
    }
}

#[derive(Queryable)]
struct BlockRow {
    vendor: String,
    block_from: i64,
    block_end: i64,
    signature: String,
    redeemed_to: i64,
}

impl WriterState {
    pub(super) fn buy_chain(
        &mut self,
        conn: &mut AnyConnection,
        o: &ChainOrder,
        now_ms: u64,
        work: &mut BatchWork,
    ) -> Result<Outcome, db::DbError> {
        let invalid = || Error::InvalidAmount {
            max: self.config.max_amount,
        };
        let escrow = match o.length.checked_mul(o.unit) {
            Some(e) if e <= self.config.max_amount => e,
            _ => return Ok(Outcome::Failed(invalid())),
        };
        let fee = match self.fee_of(o.payer.as_str(), escrow) {
            Ok(fee) => fee,
            Err(e) => return Ok(Outcome::Failed(e)),
        };
        let Ok(total) = Amount(escrow).checked_add(fee) else {
            return Ok(Outcome::Failed(invalid()));
        };
        let balance = self.balance_of(conn, o.payer.as_str(), &work.overlay)?;
        let floor = if o.payer == self.issuer {
            -to_i64(self.config.supply_cap)?
        } else {
            0
        };
        if balance.checked_sub(to_i64(total.0)?).ok_or_else(overflow)? < floor {
            return Ok(Outcome::Failed(Error::InsufficientFunds {
                balance,
                needed: total.0,
            }));
        }
        let account = escrow_account(&o.chain);
        self.post(
            conn,
            work,
            Posting {
                sender: o.payer.as_str(),
                recipient: &account,
                amount: to_i64(escrow)?,
                fee: to_i64(fee.0)?,
                transaction_id: Some(chain_transaction_id(&o.chain)),
                userid: None,
                from_name: None,
                now_ms,
            },
        )?;
        let touchstone =
            serde_json::to_string(&o.touchstone).map_err(|e| db::DbError::Task(e.to_string()))?;
        diesel::insert_into(chains::table)
            .values((
                chains::chain.eq(&o.chain),
                chains::payer.eq(o.payer.as_str()),
                chains::root.eq(o.root.hex()),
                chains::length.eq(to_i64(o.length)?),
                chains::unit.eq(to_i64(o.unit)?),
                chains::expires_at_s.eq(o.expires_at_s),
                chains::touchstone.eq(touchstone),
                chains::closed.eq(0),
            ))
            .execute(conn)?;
        let receipt = ChainReceipt {
            chain: o.chain.clone(),
            touchstone: o.touchstone.clone(),
            escrow,
            fee: fee.0,
            balance: work.overlay.get(o.payer.as_str()).copied().unwrap_or(0),
        };
        self.answer(work, &o.payer, o.counter, &o.body_sha256, &receipt)
    }

    pub(super) fn redeem(
        &mut self,
        conn: &mut AnyConnection,
        o: &RedeemOrder,
        now_ms: u64,
        work: &mut BatchWork,
    ) -> Result<Outcome, db::DbError> {
        let mut results = Vec::with_capacity(o.items.len());
        for item in &o.items {
            results.push(match item {
                RedeemItem::Refused(r) => r.clone(),
                RedeemItem::Checked(payword) => {
                    self.redeem_one(conn, &o.vendor, payword, now_ms, work)?
                }
            });
        }
        let balance = self.balance_of(conn, o.vendor.as_str(), &work.overlay)?;
        let answer = RedemptionsAnswer { results, balance };
        self.answer(work, &o.vendor, o.counter, &o.body_sha256, &answer)
    }

    fn redeem_one(
        &mut self,
        conn: &mut AnyConnection,
        vendor: &EntityId,
        p: &Payword,
        now_ms: u64,
        work: &mut BatchWork,
    ) -> Result<RedemptionResult, db::DbError> {
        let chain: Option<(String, i32, String, i64)> = chains::table
            .find(&p.chain)
            .select((
                chains::payer,
                chains::closed,
                chains::touchstone,
                chains::unit,
            ))
            .first(conn)
            .optional()?;
        let Some((payer, closed, touchstone, unit)) = chain else {
            return Ok(refused(p, "unknown_chain", "no such chain at this issuer"));
        };
        if closed != 0 {
            return Ok(refused(
                p,
                "chain_closed",
                "the chain expired and its escrow went back to the payer",
            ));
        }
        let blocks: Vec<BlockRow> = chain_blocks::table
            .filter(chain_blocks::chain.eq(&p.chain))
            .select((
                chain_blocks::vendor,
                chain_blocks::block_from,
                chain_blocks::block_end,
                chain_blocks::signature,
                chain_blocks::redeemed_to,
            ))
            .load(conn)?;
        let (from, end, to) = (to_i64(p.from)?, to_i64(p.end)?, to_i64(p.to)?);
        let mine = blocks
            .iter()
            .find(|b| b.vendor == vendor.as_str() && b.block_from == from);
        let redeemed_to = match mine {
            Some(b) if b.block_end != end => {
                return Ok(refused(
                    p,
                    "invalid_payword",
                    "you redeemed from another block starting at this word",
                ))
            }
            Some(b) => b.redeemed_to,
            None => {
                let overlaps = |b: &BlockRow| b.block_from <= end && from <= b.block_end;
                if blocks
                    .iter()
                    .any(|b| b.vendor == vendor.as_str() && overlaps(b))
                {
                    return Ok(refused(
                        p,
                        "invalid_payword",
                        "the block overlaps another block of yours",
                    ));
                }
                diesel::insert_into(chain_blocks::table)
                    .values((
                        chain_blocks::chain.eq(&p.chain),
                        chain_blocks::vendor.eq(vendor.as_str()),
                        chain_blocks::block_from.eq(from),
                        chain_blocks::block_end.eq(end),
                        chain_blocks::signature.eq(&p.signature),
                        chain_blocks::redeemed_to.eq(from - 1),
                    ))
                    .execute(conn)?;
                let mine = SignedBlock {
                    vendor: vendor.to_string(),
                    from: p.from,
                    end: p.end,
                    signature: p.signature.clone(),
                };
                for other in blocks.iter().filter(|b| overlaps(b)) {
                    let theirs = SignedBlock {
                        vendor: other.vendor.clone(),
                        from: other.block_from.unsigned_abs(),
                        end: other.block_end.unsigned_abs(),
                        signature: other.signature.clone(),
                    };
                    self.record_fraud(conn, &p.chain, &payer, &touchstone, [theirs, mine.clone()])?;
                }
                from - 1
            }
        };
        if to <= redeemed_to {
            // Redeemed before: idempotent.
            return Ok(RedemptionResult {
                chain: p.chain.clone(),
                to: p.to,
                result: "success".into(),
                words: 0,
                amount: 0,
                fee: 0,
                shortfall: 0,
                message: None,
            });
        }
        let words = (to - redeemed_to).unsigned_abs();
        diesel::update(chain_blocks::table.find((&p.chain, vendor.as_str(), from)))
            .set(chain_blocks::redeemed_to.eq(to))
            .execute(conn)?;
        let gross = words
            .checked_mul(unit.unsigned_abs())
            .ok_or_else(overflow)?;
        // Paid in order of arrival: from the escrow while it lasts, then from the payer's
        // balance up to what it holds; the rest is the shortfall.
        let escrow = escrow_account(&p.chain);
        let in_escrow = self
            .balance_of(conn, &escrow, &work.overlay)?
            .max(0)
            .unsigned_abs();
        let from_escrow = gross.min(in_escrow);
        let payer_holds = self
            .balance_of(conn, &payer, &work.overlay)?
            .max(0)
            .unsigned_abs();
        let from_payer = (gross - from_escrow).min(payer_holds);
        let shortfall = gross - from_escrow - from_payer;
        let paid = from_escrow + from_payer;
        let fee = if paid == 0 {
            0
        } else {
            // Fees as for transfers, paid by the vendor out of what it is credited.
            self.fee_of(vendor.as_str(), paid)
                .map(|f| f.0)
                .unwrap_or(paid)
                .min(paid)
        };
        let fee_from_escrow = fee.min(from_escrow);
        for (source, amount, fee) in [
            (escrow.as_str(), from_escrow, fee_from_escrow),
            (payer.as_str(), from_payer, fee - fee_from_escrow),
        ] {
            if amount == 0 {
                continue;
            }
            self.post(
                conn,
                work,
                Posting {
                    sender: source,
                    recipient: vendor.as_str(),
                    amount: to_i64(amount - fee)?,
                    fee: to_i64(fee)?,
                    transaction_id: Some(chain_transaction_id(&p.chain)),
                    userid: None,
                    from_name: None,
                    now_ms,
                },
            )?;
        }
        if shortfall > 0 {
            let latest: Option<i64> = frauds::table
                .filter(frauds::chain.eq(&p.chain))
                .select(diesel::dsl::max(frauds::seq))
                .first(conn)?;
            match latest {
                Some(seq) => self.add_shortfall(conn, seq, shortfall)?,
                // Cannot happen while the invariants hold: only overlapping blocks claim
                // more than the escrow holds.
                None => tracing::error!(chain = p.chain, shortfall, "a shortfall without a fraud"),
            }
        }
        Ok(RedemptionResult {
            chain: p.chain.clone(),
            to: p.to,
            result: "success".into(),
            words,
            amount: paid - fee,
            fee,
            shortfall,
            message: None,
        })
    }

    fn record_fraud(
        &mut self,
        conn: &mut AnyConnection,
        chain: &str,
        payer: &str,
        touchstone: &str,
        blocks: [SignedBlock; 2],
    ) -> Result<(), db::DbError> {
        let touchstone: Envelope =
            serde_json::from_str(touchstone).map_err(|e| db::DbError::Task(e.to_string()))?;
        let seq = self.next_fraud_seq;
        let proof = FraudProof {
            seq: seq.unsigned_abs(),
            touchstone,
            blocks,
            shortfall: 0,
        };
        let text = serde_json::to_string(&proof).map_err(|e| db::DbError::Task(e.to_string()))?;
        diesel::insert_into(frauds::table)
            .values((
                frauds::seq.eq(seq),
                frauds::chain.eq(chain),
                frauds::payer.eq(payer),
                frauds::shortfall.eq(0i64),
                frauds::proof.eq(text),
            ))
            .execute(conn)?;
        self.next_fraud_seq += 1;
        tracing::warn!(
            chain,
            payer,
            seq,
            "double spend: overlapping blocks for two vendors"
        );
        Ok(())
    }

    fn add_shortfall(
        &mut self,
        conn: &mut AnyConnection,
        seq: i64,
        shortfall: u64,
    ) -> Result<(), db::DbError> {
        let (before, text): (i64, String) = frauds::table
            .find(seq)
            .select((frauds::shortfall, frauds::proof))
            .first(conn)?;
        let mut proof: FraudProof =
            serde_json::from_str(&text).map_err(|e| db::DbError::Task(e.to_string()))?;
        let total = before
            .checked_add(to_i64(shortfall)?)
            .ok_or_else(overflow)?;
        proof.shortfall = total.unsigned_abs();
        let text = serde_json::to_string(&proof).map_err(|e| db::DbError::Task(e.to_string()))?;
        diesel::update(frauds::table.find(seq))
            .set((frauds::shortfall.eq(total), frauds::proof.eq(text)))
            .execute(conn)?;
        Ok(())
    }

    /// Return what an expired chain's escrow still holds to its payer, and close the chain.
    pub(super) fn close_chain(
        &mut self,
        conn: &mut AnyConnection,
        chain: &str,
        now_ms: u64,
        work: &mut BatchWork,
    ) -> Result<Outcome, db::DbError> {
        let row: Option<(String, i32)> = chains::table
            .find(chain)
            .select((chains::payer, chains::closed))
            .first(conn)
            .optional()?;
        let Some((payer, closed)) = row else {
            return Ok(Outcome::Failed(Error::NotFound));
        };
        if closed == 0 {
            let escrow = escrow_account(chain);
            let rest = self.balance_of(conn, &escrow, &work.overlay)?;
            if rest > 0 {
                self.post(
                    conn,
                    work,
                    Posting {
                        sender: &escrow,
                        recipient: &payer,
                        amount: rest,
                        fee: 0,
                        transaction_id: Some(chain_transaction_id(chain)),
                        userid: None,
                        from_name: None,
                        now_ms,
                    },
                )?;
            }
            diesel::update(chains::table.find(chain))
                .set(chains::closed.eq(1))
                .execute(conn)?;
        }
        Ok(Outcome::Executed(node::commands::StoredAnswer {
            status: 200,
            body: String::new(),
        }))
    }
}
