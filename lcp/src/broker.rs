//! The payword broker's request side (DESIGN section 10): checking a chain purchase and
//! signing its touchstone, checking redemptions (block signatures, words) off the async
//! workers before the ledger writer pays them, the public chain and fraud pages, and the
//! sweeper that returns expired escrows.
//!
//! The writer's side (escrow, payment order, fraud records) is `ledger::broker`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::prelude::*;
use protocol::payword::{
    verify_block, ChainPurchase, ChainStatus, FraudProof, FraudsPage, Payword, RedeemedRange,
    RedemptionsRequest, Touchstone, Word, CHAIN_EXPIRES_IN_S_DEFAULT, CHAIN_EXPIRES_IN_S_MAX,
    CHAIN_LENGTH_MAX, FRAUDS_PAGE_MAX, REDEMPTIONS_MAX, TOUCHSTONE_TYPE,
};
use protocol::{EntityId, Envelope, KeyPair, VerifiedRequest};

use crate::error::Error;
use crate::ledger::broker::{escrow_account, refused, ChainOrder, RedeemItem, RedeemOrder};
use crate::ledger::{Ledger, Order};
use crate::schema::{chain_blocks, chains, frauds};

/// Chains whose facts (and highest verified word) are kept in memory at most; past it the
/// cache starts over (a miss costs one query and, at worst, hashing a word down to the root).
const CHAIN_CACHE_MAX: usize = 100_000;
/// Expired chains closed per sweep at most (the next sweep takes the rest).
const SWEEP_CHAINS_MAX: i64 = 1_000;

/// What a redemption is checked against; immutable once the chain is sold, except `best`.
#[derive(Debug, Clone)]
struct ChainFacts {
    payer: EntityId,
    root: Word,
    length: u64,
    /// The highest word of this chain verified so far, as (index, word): later checks hash
    /// down to it instead of to the root.
    best: (u64, Word),
}

/// Shared by the handlers: the chain cache.
#[derive(Clone, Default)]
pub struct Broker {
    chains: Arc<Mutex<HashMap<String, ChainFacts>>>,
}

impl Broker {
    /// Check a purchase and sign its touchstone; the writer moves the money.
    pub fn chain_order(
        &self,
        key: &KeyPair,
        verified: &VerifiedRequest,
        body_sha256: String,
        body: &[u8],
    ) -> Result<ChainOrder, Error> {
        let p: ChainPurchase = node::service::parse_json::<_, Error>(body)?;
        if p.length == 0 || p.length > CHAIN_LENGTH_MAX {
            return Err(Error::InvalidChain(format!(
                "length must be 1 to {CHAIN_LENGTH_MAX} words"
            )));
        }
        if p.unit == 0 {
            return Err(Error::InvalidChain(
                "unit must be at least 1 minor unit".into(),
            ));
        }
        let expires_in_s = p.expires_in_s.unwrap_or(CHAIN_EXPIRES_IN_S_DEFAULT);
        if expires_in_s == 0 || expires_in_s > CHAIN_EXPIRES_IN_S_MAX {
            return Err(Error::InvalidChain(format!(
                "expires_in_s must be 1 to {CHAIN_EXPIRES_IN_S_MAX}"
            )));
        }
        let counter = verified
            .counter
            .ok_or(Error::Auth(protocol::AuthError::MissingCounter))?;
        let chain = uuid::Uuid::new_v4().to_string();
        // Bounded above by CHAIN_EXPIRES_IN_S_MAX: no overflow.
        let expires_at_s = node::now_s() + expires_in_s as i64;
        let touchstone = Touchstone {
            chain: chain.clone(),
            issuer: key.entity().to_string(),
            payer: verified.entity.to_string(),
            root: p.root,
            length: p.length,
            unit: p.unit,
            expires_at: protocol::market::format_rfc3339(expires_at_s),
        };
        let touchstone = Envelope::sign_json(key, TOUCHSTONE_TYPE, &touchstone)
            .map_err(|e| Error::Storage(e.to_string()))?;
        Ok(ChainOrder {
            payer: verified.entity.clone(),
            counter,
            body_sha256,
            chain,
            root: p.root,
            length: p.length,
            unit: p.unit,
            expires_at_s,
            touchstone,
        })
    }

    /// Check every redemption item (the chain is known, the block is signed by its payer for
    /// this vendor, the word hashes to the chain) off the async workers; the writer pays.
    pub async fn redeem_order(
        &self,
        ledger: &Ledger,
        verified: &VerifiedRequest,
        body_sha256: String,
        body: &[u8],
    ) -> Result<RedeemOrder, Error> {
        let request: RedemptionsRequest = node::service::parse_json::<_, Error>(body)?;
        if request.redemptions.is_empty() || request.redemptions.len() > REDEMPTIONS_MAX {
            return Err(Error::InvalidChain(format!(
                "redemptions must hold 1 to {REDEMPTIONS_MAX} items"
            )));
        }
        let counter = verified
            .counter
            .ok_or(Error::Auth(protocol::AuthError::MissingCounter))?;
        let mut facts = HashMap::new();
        for p in &request.redemptions {
            if !facts.contains_key(&p.chain) {
                if let Some(f) = self.facts(ledger, &p.chain).await? {
                    facts.insert(p.chain.clone(), f);
                }
            }
        }
        let vendor = verified.entity.clone();
        let cache = self.chains.clone();
        let items = tokio::task::spawn_blocking(move || {
            request
                .redemptions
                .into_iter()
                .map(|p| check_item(&cache, &vendor, facts.get(&p.chain), p))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| Error::Storage(e.to_string()))?;
        Ok(RedeemOrder {
            vendor: verified.entity.clone(),
            counter,
            body_sha256,
            items,
        })
    }

    /// A chain's facts, from the cache or the database.
    async fn facts(&self, ledger: &Ledger, chain: &str) -> Result<Option<ChainFacts>, Error> {
        if let Some(f) = lock(&self.chains).get(chain) {
            return Ok(Some(f.clone()));
        }
        let id = chain.to_owned();
        let row: Option<(String, String, i64)> = ledger
            .db()
            .run(move |conn| {
                chains::table
                    .find(&id)
                    .select((chains::payer, chains::root, chains::length))
                    .first(conn)
                    .optional()
                    .map_err(|e| Error::Db(e.into()))
            })
            .await?;
        let Some((payer, root, length)) = row else {
            return Ok(None);
        };
        let (Ok(payer), Ok(root)) = (EntityId::parse(&payer), Word::parse(&root)) else {
            return Err(Error::Storage(format!("chain {chain} is stored malformed")));
        };
        let facts = ChainFacts {
            payer,
            root,
            length: length.unsigned_abs(),
            best: (0, root),
        };
        let mut cache = lock(&self.chains);
        if cache.len() >= CHAIN_CACHE_MAX {
            cache.clear();
        }
        cache.insert(chain.to_owned(), facts.clone());
        Ok(Some(facts))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Check one redemption item (blocking: hashes up to the chain's length).
fn check_item(
    cache: &Mutex<HashMap<String, ChainFacts>>,
    vendor: &EntityId,
    facts: Option<&ChainFacts>,
    p: Payword,
) -> RedeemItem {
    let Some(facts) = facts else {
        return RedeemItem::Refused(refused(&p, "unknown_chain", "no such chain at this issuer"));
    };
    if p.from == 0 || p.from > p.to || p.to > p.end || p.end > facts.length {
        return RedeemItem::Refused(refused(
            &p,
            "invalid_payword",
            format!(
                "a redemption must satisfy 1 <= from <= to <= end <= length ({})",
                facts.length
            ),
        ));
    }
    if !verify_block(&facts.payer, &p.chain, vendor, p.from, p.end, &p.signature) {
        return RedeemItem::Refused(refused(
            &p,
            "invalid_payword",
            "the block is not signed by the chain's payer for you",
        ));
    }
    // The best word known now (another item may have raised it since `facts` was read).
    let best = lock(cache)
        .get(&p.chain)
        .map(|f| f.best)
        .unwrap_or(facts.best);
    let genuine = if p.to >= best.0 {
        p.word.hashed_times(p.to - best.0) == best.1
    } else if p.to <= best.0 - p.to {
        p.word.hashed_times(p.to) == facts.root
    } else {
        best.1.hashed_times(best.0 - p.to) == p.word
    };
    if !genuine {
        return RedeemItem::Refused(refused(
            &p,
            "invalid_payword",
            "the word is not the chain's word at that index",
        ));
    }
    if p.to > best.0 {
        if let Some(f) = lock(cache).get_mut(&p.chain) {
            if p.to > f.best.0 {
                f.best = (p.to, p.word);
            }
        }
    }
    RedeemItem::Checked(p)
}

/// `GET /lcp/v1/chains/{chain}`: the touchstone, what each vendor redeemed, the escrow left.
pub async fn chain_status(ledger: &Ledger, chain: String) -> Result<ChainStatus, Error> {
    ledger
        .db()
        .run(move |conn| {
            let row: Option<(String, i32)> = chains::table
                .find(&chain)
                .select((chains::touchstone, chains::closed))
                .first(conn)
                .optional()
                .map_err(db::DbError::from)?;
            let Some((touchstone, closed)) = row else {
                return Err(Error::NotFound);
            };
            let touchstone: Envelope =
                serde_json::from_str(&touchstone).map_err(|e| Error::Storage(e.to_string()))?;
            let blocks: Vec<(String, i64, i64, i64)> = chain_blocks::table
                .filter(chain_blocks::chain.eq(&chain))
                .select((
                    chain_blocks::vendor,
                    chain_blocks::block_from,
                    chain_blocks::block_end,
                    chain_blocks::redeemed_to,
                ))
                .order(chain_blocks::block_from.asc())
                .load(conn)
                .map_err(db::DbError::from)?;
            let escrow = crate::ledger::read_balance(conn, &escrow_account(&chain))?;
            Ok(ChainStatus {
                touchstone,
                redeemed: blocks
                    .into_iter()
                    .filter(|b| b.3 >= b.1)
                    .map(|(vendor, from, end, to)| RedeemedRange {
                        vendor,
                        from: from.unsigned_abs(),
                        end: end.unsigned_abs(),
                        to: to.unsigned_abs(),
                    })
                    .collect(),
                escrow: escrow.max(0).unsigned_abs(),
                closed: closed != 0,
            })
        })
        .await
}

/// `GET /lcp/v1/frauds?after=S`: proofs with `seq > after`, oldest first.
pub async fn frauds_page(ledger: &Ledger, after: u64) -> Result<FraudsPage, Error> {
    let after_i =
        i64::try_from(after).map_err(|_| Error::InvalidQuery("after is too large".into()))?;
    ledger
        .db()
        .run(move |conn| {
            let rows: Vec<String> = frauds::table
                .filter(frauds::seq.gt(after_i))
                .order(frauds::seq.asc())
                .limit(FRAUDS_PAGE_MAX as i64)
                .select(frauds::proof)
                .load(conn)
                .map_err(db::DbError::from)?;
            let frauds: Vec<FraudProof> = rows
                .iter()
                .map(|r| serde_json::from_str(r).map_err(|e| Error::Storage(e.to_string())))
                .collect::<Result<_, _>>()?;
            let next = frauds.last().map(|f| f.seq).unwrap_or(after);
            Ok(FraudsPage { frauds, next })
        })
        .await
}

/// Return the escrow of every chain past its expiry and grace, every `interval`, for as long
/// as the ledger runs. Spawned on the server's runtime.
pub async fn sweep_expired(ledger: Ledger, grace_s: u64, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let due_before = (node::now_s()).saturating_sub(grace_s.min(i64::MAX as u64) as i64);
        let due: Result<Vec<String>, Error> = ledger
            .db()
            .run(move |conn| {
                chains::table
                    .filter(chains::closed.eq(0))
                    .filter(chains::expires_at_s.lt(due_before))
                    .order(chains::expires_at_s.asc())
                    .limit(SWEEP_CHAINS_MAX)
                    .select(chains::chain)
                    .load(conn)
                    .map_err(|e| Error::Db(e.into()))
            })
            .await;
        match due {
            Ok(due) => {
                for chain in due {
                    match ledger.execute(Order::CloseChain(chain.clone())).await {
                        Ok(_) => tracing::info!(chain, "chain expired: escrow returned to payer"),
                        Err(e) => tracing::warn!(chain, error = %e, "escrow return failed"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list expired chains"),
        }
    }
}

/// The payword limits for the issuer's descriptor.
pub fn limits(grace_s: u64) -> protocol::payword::PaywordLimits {
    protocol::payword::PaywordLimits {
        chain_length_max: CHAIN_LENGTH_MAX,
        expires_in_s_max: CHAIN_EXPIRES_IN_S_MAX,
        redemptions_max: REDEMPTIONS_MAX,
        redeem_grace_s: grace_s,
    }
}
