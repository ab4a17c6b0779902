//! The vendor's side of paywords (DESIGN section 10), for every service that charges: accept
//! words on a charged request, remember them durably, redeem them in batches, follow the
//! issuers' fraud proofs.
//!
//! Tables (each service's migrations make them): `payword_touchstones` (the touchstones seen),
//! `payword_blocks` (per block: how far the payer paid, `held_to`, and how far the issuer
//! paid, `redeemed_to`), `payword_frauds` (payers with a proof against them) and
//! `payword_cursors` (the fraud feed's cursor per issuer).
//!
//! Invariants:
//! - [`accept`] runs inside the caller's write transaction, so the credit it answers and the
//!   words it notes commit together; a word at or below what is held changes nothing.
//! - Per payment only hashes are computed; a block's signature is verified once, when the
//!   block is first seen.
//! - `redeemed_to <= held_to` in every block; what lies between is owed by the issuer.
//! - A vendor never accepts two overlapping blocks of one chain (the payer's wallet never
//!   makes them; a payer who does is refused, not paid twice).

use db::{AnyConnection, DbError};
use diesel::prelude::*;
use protocol::payword::{
    verify_block, FraudsPage, OpenTouchstone, Payword, RedemptionsAnswer, RedemptionsRequest, Word,
    HEADER_PAYWORD, HEADER_TOUCHSTONE, REDEMPTIONS_MAX,
};
use protocol::EntityId;

diesel::table! {
    payword_touchstones (chain) {
        chain -> Text,
        issuer -> Text,
        payer -> Text,
        root -> Text,
        length -> BigInt,
        unit -> BigInt,
        expires_at_s -> BigInt,
        envelope -> Text,
    }
}

diesel::table! {
    payword_blocks (chain, block_from) {
        chain -> Text,
        block_from -> BigInt,
        block_end -> BigInt,
        signature -> Text,
        payer -> Text,
        issuer -> Text,
        unit -> BigInt,
        expires_at_s -> BigInt,
        held_to -> BigInt,
        held_word -> Text,
        redeemed_to -> BigInt,
    }
}

diesel::table! {
    payword_frauds (issuer, payer) {
        issuer -> Text,
        payer -> Text,
        seq -> BigInt,
        proof -> Text,
    }
}

diesel::table! {
    payword_cursors (issuer) {
        issuer -> Text,
        after -> BigInt,
    }
}

/// The payword headers of a request, if it carries one.
#[derive(Debug, Clone, Default)]
pub struct PaywordHeaders {
    pub payword: Option<String>,
    pub touchstone: Option<String>,
}

impl PaywordHeaders {
    pub fn of(req: &actix_web::HttpRequest) -> PaywordHeaders {
        let text = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        PaywordHeaders {
            payword: text(HEADER_PAYWORD),
            touchstone: text(HEADER_TOUCHSTONE),
        }
    }
}

/// Unredeemed value one payer may owe through paywords before more are refused, by default
/// (minor units): what a vendor risks on a double spend.
pub const UNREDEEMED_PER_PAYER_MAX_DEFAULT: u64 = 1_000_000;
/// Redeem an issuer's words once they are worth this much, by default.
pub const REDEEM_THRESHOLD_DEFAULT: u64 = 10_000;
/// Redeem a chain's words at the latest this long before it expires.
pub const REDEEM_BEFORE_EXPIRY_S: i64 = 3_600;

/// A payment accepted: `words` new words worth `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub chain: String,
    pub words: u64,
    pub value: u64,
}

/// Why a payword was refused: the service answers `402 invalid_payword` (or the code named).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Invalid(String),
    #[error("send the chain's touchstone (LCP-Touchstone) with its first payment")]
    TouchstoneRequired,
    #[error("this payer already owes {held} in unredeemed paywords here (at most {max})")]
    CapReached { held: u64, max: u64 },
    #[error("the issuer published a double-spend proof against this payer")]
    Fraud,
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Invalid(_) | Refusal::TouchstoneRequired => "invalid_payword",
            Refusal::CapReached { .. } => "payword_cap_reached",
            Refusal::Fraud => "payer_fraud",
        }
    }
}

fn invalid(m: impl Into<String>) -> Refusal {
    Refusal::Invalid(m.into())
}

fn to_i64(v: u64) -> Result<i64, DbError> {
    i64::try_from(v).map_err(|_| DbError::Task(format!("{v} does not fit a BIGINT")))
}

/// Accept the payword in `header` (the `LCP-Payword` value) from `payer`, paid in the
/// currency of `issuer`, to `vendor`. `touchstone` is the `LCP-Touchstone` value, needed the
/// first time a chain is seen. Runs inside the caller's write transaction: the caller credits
/// what it answers in the same transaction. Blocking (a new block's first word is hashed down
/// to the deepest word already held of its chain, or to the root; then only the words new
/// since the last payment).
#[allow(clippy::too_many_arguments)]
pub fn accept(
    conn: &mut AnyConnection,
    now_s: i64,
    issuer: &EntityId,
    payer: &EntityId,
    vendor: &EntityId,
    header: &str,
    touchstone: Option<&str>,
    unredeemed_per_payer_max: u64,
) -> Result<Result<Accepted, Refusal>, DbError> {
    let p = match Payword::parse_header(header) {
        Ok(p) => p,
        Err(e) => return Ok(Err(invalid(e.to_string()))),
    };
    if is_fraudster(conn, payer)? {
        return Ok(Err(Refusal::Fraud));
    }
    take_payers_turn(conn, payer)?;
    let t = match known_touchstone(conn, &p.chain)? {
        Some(t) => t,
        None => match touchstone {
            None => return Ok(Err(Refusal::TouchstoneRequired)),
            Some(text) => match OpenTouchstone::from_header(text) {
                Err(e) => return Ok(Err(invalid(e.to_string()))),
                Ok(t) if t.touchstone.chain != p.chain => {
                    return Ok(Err(invalid("the touchstone is another chain's")))
                }
                Ok(t) => {
                    // Checked below before anything is kept; stored only with a block.
                    t
                }
            },
        },
    };
    if &t.issuer != issuer {
        return Ok(Err(invalid(
            "the chain is another issuer's currency than the one this request pays in",
        )));
    }
    if &t.payer != payer {
        return Ok(Err(invalid("the chain's payer did not sign this request")));
    }
    if now_s >= t.expires_at_s {
        return Ok(Err(invalid("the chain has expired")));
    }
    if p.end > t.touchstone.length {
        return Ok(Err(invalid(format!(
            "the block ends past the chain's {} words",
            t.touchstone.length
        ))));
    }
    let unit = t.touchstone.unit;
    let (from, end, to) = (to_i64(p.from)?, to_i64(p.end)?, to_i64(p.to)?);
    let blocks: Vec<(i64, i64, String, i64, String)> = payword_blocks::table
        .filter(payword_blocks::chain.eq(&p.chain))
        .select((
            payword_blocks::block_from,
            payword_blocks::block_end,
            payword_blocks::signature,
            payword_blocks::held_to,
            payword_blocks::held_word,
        ))
        .load(conn)?;
    let held = blocks.iter().find(|b| b.0 == from);
    // A word already checked, and its index: the new word must hash to it.
    let (anchor_to, anchor_word) = match held {
        Some(b) if b.1 != end || b.2 != p.signature => {
            return Ok(Err(invalid(
                "another block of this chain starts at this word",
            )))
        }
        Some(b) => {
            let word = Word::parse(&b.4).map_err(|e| DbError::Task(e.to_string()))?;
            (b.3, word)
        }
        None => {
            if blocks.iter().any(|b| b.0 <= end && from <= b.1) {
                return Ok(Err(invalid("the block overlaps a block already held")));
            }
            if !verify_block(payer, &p.chain, vendor, p.from, p.end, &p.signature) {
                return Ok(Err(invalid(
                    "the block is not signed by the chain's payer for this vendor",
                )));
            }
            // A new block is checked against the deepest word this vendor already holds
            // of the chain below it (each was checked against the root when it came), or
            // against the root: `to - k` hashes, not `to`. The payer's blocks to one vendor
            // come a few vendors' blocks apart, so this is a few thousand hashes where the
            // root could be a million away.
            blocks
                .iter()
                .filter(|b| b.3 < from)
                .max_by_key(|b| b.3)
                .map(|b| {
                    Word::parse(&b.4)
                        .map(|word| (b.3, word))
                        .map_err(|e| DbError::Task(e.to_string()))
                })
                .transpose()?
                .unwrap_or((0, t.touchstone.root))
        }
    };
    // The last word of this block already held (none for a new block).
    let held_to = if held.is_some() { anchor_to } else { 0 };
    if to <= held_to {
        return Ok(Ok(Accepted {
            chain: p.chain,
            words: 0,
            value: 0,
        }));
    }
    // Invariant: anchor_to < to (a held block's word: checked just above; an earlier block's
    // word: below this block's `from`, and `from <= to`).
    if p.word.hashed_times((to - anchor_to).unsigned_abs()) != anchor_word {
        return Ok(Err(invalid("the word does not hash to the chain")));
    }
    let words = if held.is_some() {
        (to - held_to).unsigned_abs()
    } else {
        (to - from + 1).unsigned_abs()
    };
    let value = words
        .checked_mul(unit)
        .ok_or_else(|| DbError::Task("payword value overflows".into()))?;
    let owed = unredeemed_of(conn, payer)?;
    if owed.saturating_add(value) > unredeemed_per_payer_max {
        return Ok(Err(Refusal::CapReached {
            held: owed,
            max: unredeemed_per_payer_max,
        }));
    }
    if held.is_some() {
        // Conditional on the word read above: accepts of one payer take turns
        // (`take_payers_turn`), so another accept never moved it in between.
        let moved = db::cached(
            diesel::update(
                payword_blocks::table
                    .find((&p.chain, from))
                    .filter(payword_blocks::held_to.eq(held_to)),
            )
            .set((
                payword_blocks::held_to.eq(to),
                payword_blocks::held_word.eq(p.word.hex()),
            )),
        )
        .execute(conn)?;
        if moved != 1 {
            return Err(DbError::Task(format!(
                "the held words of a block of chain {} moved during an accept",
                p.chain
            )));
        }
    } else {
        if blocks.is_empty() {
            store_touchstone(conn, &t)?;
        }
        diesel::insert_into(payword_blocks::table)
            .values((
                payword_blocks::chain.eq(&p.chain),
                payword_blocks::block_from.eq(from),
                payword_blocks::block_end.eq(end),
                payword_blocks::signature.eq(&p.signature),
                payword_blocks::payer.eq(payer.as_str()),
                payword_blocks::issuer.eq(issuer.as_str()),
                payword_blocks::unit.eq(to_i64(unit)?),
                payword_blocks::expires_at_s.eq(t.expires_at_s),
                payword_blocks::held_to.eq(to),
                payword_blocks::held_word.eq(p.word.hex()),
                payword_blocks::redeemed_to.eq(from - 1),
            ))
            .execute(conn)?;
    }
    Ok(Ok(Accepted {
        chain: p.chain,
        words,
        value,
    }))
}

/// A payer's accepts at this vendor take turns ([`db::take_turn`]): on PostgreSQL two accepts
/// of the same words would otherwise both read the same held word and both credit what
/// follows it (a buyer firing one `LCP-Payword` header at a vendor in parallel), both keep a
/// new block of a chain, or both pass the cap on what the payer owes in words. The blocks and
/// the payer's unredeemed value are read after the turn is taken.
fn take_payers_turn(conn: &mut AnyConnection, payer: &EntityId) -> Result<(), DbError> {
    db::take_turn(conn, &format!("payword payer {payer}"))
}

/// A touchstone verified when it was first kept: its facts are read back from their columns,
/// with no signature to check again (per payment the vendor only hashes).
fn known_touchstone(
    conn: &mut AnyConnection,
    chain: &str,
) -> Result<Option<OpenTouchstone>, DbError> {
    type Row = (String, String, String, i64, i64, i64, String);
    let row: Option<Row> = payword_touchstones::table
        .find(chain)
        .select((
            payword_touchstones::issuer,
            payword_touchstones::payer,
            payword_touchstones::root,
            payword_touchstones::length,
            payword_touchstones::unit,
            payword_touchstones::expires_at_s,
            payword_touchstones::envelope,
        ))
        .first(conn)
        .optional()?;
    let Some((issuer, payer, root, length, unit, expires_at_s, envelope)) = row else {
        return Ok(None);
    };
    let bad = |what: &str| DbError::Task(format!("a stored touchstone's {what} is malformed"));
    let envelope: protocol::Envelope =
        serde_json::from_str(&envelope).map_err(|_| bad("envelope"))?;
    let (issuer, payer) = (
        EntityId::parse(&issuer).map_err(|_| bad("issuer"))?,
        EntityId::parse(&payer).map_err(|_| bad("payer"))?,
    );
    Ok(Some(OpenTouchstone {
        touchstone: protocol::payword::Touchstone {
            chain: chain.to_owned(),
            issuer: issuer.to_string(),
            payer: payer.to_string(),
            root: Word::parse(&root).map_err(|_| bad("root"))?,
            length: length.unsigned_abs(),
            unit: unit.unsigned_abs(),
            expires_at: protocol::market::format_rfc3339(expires_at_s),
        },
        envelope,
        issuer,
        payer,
        expires_at_s,
    }))
}

fn store_touchstone(conn: &mut AnyConnection, t: &OpenTouchstone) -> Result<(), DbError> {
    let envelope = serde_json::to_string(&t.envelope).map_err(|e| DbError::Task(e.to_string()))?;
    let exists = payword_touchstones::table
        .find(&t.touchstone.chain)
        .count()
        .get_result::<i64>(conn)?
        > 0;
    if !exists {
        diesel::insert_into(payword_touchstones::table)
            .values((
                payword_touchstones::chain.eq(&t.touchstone.chain),
                payword_touchstones::issuer.eq(t.issuer.as_str()),
                payword_touchstones::payer.eq(t.payer.as_str()),
                payword_touchstones::root.eq(t.touchstone.root.hex()),
                payword_touchstones::length.eq(to_i64(t.touchstone.length)?),
                payword_touchstones::unit.eq(to_i64(t.touchstone.unit)?),
                payword_touchstones::expires_at_s.eq(t.expires_at_s),
                payword_touchstones::envelope.eq(envelope),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Value `payer` owes through words held and not yet redeemed.
fn unredeemed_of(conn: &mut AnyConnection, payer: &EntityId) -> Result<u64, DbError> {
    let rows: Vec<(i64, i64, i64)> = payword_blocks::table
        .filter(payword_blocks::payer.eq(payer.as_str()))
        .filter(payword_blocks::held_to.gt(payword_blocks::redeemed_to))
        .select((
            payword_blocks::held_to,
            payword_blocks::redeemed_to,
            payword_blocks::unit,
        ))
        .load(conn)?;
    Ok(rows
        .iter()
        .map(|(h, r, u)| (h - r).unsigned_abs().saturating_mul(u.unsigned_abs()))
        .fold(0u64, u64::saturating_add))
}

/// Has an issuer published a double-spend proof against `payer` (that this vendor checked)?
pub fn is_fraudster(conn: &mut AnyConnection, payer: &EntityId) -> Result<bool, DbError> {
    Ok(payword_frauds::table
        .filter(payword_frauds::payer.eq(payer.as_str()))
        .count()
        .get_result::<i64>(conn)?
        > 0)
}

/// Where this vendor's reading of `issuer`'s fraud feed stands.
pub fn fraud_cursor(conn: &mut AnyConnection, issuer: &EntityId) -> Result<u64, DbError> {
    Ok(payword_cursors::table
        .find(issuer.as_str())
        .select(payword_cursors::after)
        .first::<i64>(conn)
        .optional()?
        .unwrap_or(0)
        .unsigned_abs())
}

/// Keep the payers of every proof in `page` that verifies against `issuer`, and move the
/// cursor. A proof that does not verify is logged and skipped: an issuer cannot frame a payer
/// without its two signed blocks. Answers the payers newly marked.
pub fn note_frauds(
    conn: &mut AnyConnection,
    issuer: &EntityId,
    page: &FraudsPage,
) -> Result<Vec<EntityId>, DbError> {
    let mut marked = Vec::new();
    for proof in &page.frauds {
        let payer = match proof.verify(issuer) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(issuer = %issuer, seq = proof.seq, error = %e, "a fraud proof does not verify: ignored");
                continue;
            }
        };
        let known = payword_frauds::table
            .find((issuer.as_str(), payer.as_str()))
            .count()
            .get_result::<i64>(conn)?
            > 0;
        if !known {
            let text = serde_json::to_string(proof).map_err(|e| DbError::Task(e.to_string()))?;
            diesel::insert_into(payword_frauds::table)
                .values((
                    payword_frauds::issuer.eq(issuer.as_str()),
                    payword_frauds::payer.eq(payer.as_str()),
                    payword_frauds::seq.eq(to_i64(proof.seq)?),
                    payword_frauds::proof.eq(text),
                ))
                .execute(conn)?;
            marked.push(payer);
        }
    }
    let after = to_i64(page.next)?;
    let updated = diesel::update(payword_cursors::table.find(issuer.as_str()))
        .set(payword_cursors::after.eq(after))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(payword_cursors::table)
            .values((
                payword_cursors::issuer.eq(issuer.as_str()),
                payword_cursors::after.eq(after),
            ))
            .execute(conn)?;
    }
    Ok(marked)
}

/// Words due for redemption at `issuer`: every block with words beyond `redeemed_to` when
/// their value reaches `threshold`, when a chain expires within [`REDEEM_BEFORE_EXPIRY_S`],
/// or always with `all` (at shutdown). At most [`REDEMPTIONS_MAX`].
pub fn due(
    conn: &mut AnyConnection,
    issuer: &EntityId,
    now_s: i64,
    threshold: u64,
    all: bool,
) -> Result<Vec<Payword>, DbError> {
    type Row = (String, i64, i64, String, i64, String, i64, i64, i64);
    let rows: Vec<Row> = payword_blocks::table
        .filter(payword_blocks::issuer.eq(issuer.as_str()))
        .filter(payword_blocks::held_to.gt(payword_blocks::redeemed_to))
        .select((
            payword_blocks::chain,
            payword_blocks::block_from,
            payword_blocks::block_end,
            payword_blocks::signature,
            payword_blocks::held_to,
            payword_blocks::held_word,
            payword_blocks::redeemed_to,
            payword_blocks::unit,
            payword_blocks::expires_at_s,
        ))
        .order(payword_blocks::expires_at_s.asc())
        .limit(REDEMPTIONS_MAX as i64)
        .load(conn)?;
    let value: u64 = rows
        .iter()
        .map(|r| {
            (r.4 - r.6)
                .unsigned_abs()
                .saturating_mul(r.7.unsigned_abs())
        })
        .fold(0, u64::saturating_add);
    let soon = rows
        .iter()
        .any(|r| r.8 <= now_s.saturating_add(REDEEM_BEFORE_EXPIRY_S));
    if rows.is_empty() || !(all || soon || value >= threshold) {
        return Ok(Vec::new());
    }
    rows.into_iter()
        .map(|(chain, from, end, signature, to, word, _, _, _)| {
            Ok(Payword {
                chain,
                from: from.unsigned_abs(),
                end: end.unsigned_abs(),
                to: to.unsigned_abs(),
                word: Word::parse(&word).map_err(|e| DbError::Task(e.to_string()))?,
                signature,
            })
        })
        .collect()
}

/// Note the issuer's answer to a redemption of `sent`: each item answered `success` is
/// redeemed up to its `to`; one the issuer will never pay (`unknown_chain`, `chain_closed`,
/// `invalid_payword`) is written off, so it is not sent again. Answers the value credited.
pub fn settle(
    conn: &mut AnyConnection,
    sent: &[Payword],
    answer: &RedemptionsAnswer,
) -> Result<u64, DbError> {
    let mut credited = 0u64;
    for (p, r) in sent.iter().zip(&answer.results) {
        if r.chain != p.chain || r.to != p.to {
            return Err(DbError::Task(
                "the issuer answered other items than sent".into(),
            ));
        }
        let final_answer = matches!(
            r.result.as_str(),
            "success" | "unknown_chain" | "chain_closed" | "invalid_payword"
        );
        if !final_answer {
            continue;
        }
        if r.result != "success" {
            tracing::warn!(chain = p.chain, code = r.result, message = ?r.message, "paywords written off: the issuer will not pay them");
        }
        credited = credited.saturating_add(r.amount);
        diesel::update(
            payword_blocks::table
                .find((&p.chain, to_i64(p.from)?))
                .filter(payword_blocks::redeemed_to.lt(to_i64(p.to)?)),
        )
        .set(payword_blocks::redeemed_to.eq(to_i64(p.to)?))
        .execute(conn)?;
    }
    Ok(credited)
}

/// The redemption request for `items` (`POST /lcp/v1/redemptions`'s body).
pub fn request_body(items: &[Payword]) -> Result<Vec<u8>, DbError> {
    serde_json::to_vec(&RedemptionsRequest {
        redemptions: items.to_vec(),
    })
    .map_err(|e| DbError::Task(e.to_string()))
}

/// Per issuer: the value of every word accepted, and of those redeemed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holdings {
    pub issuer: String,
    pub accepted: u64,
    pub redeemed: u64,
    /// Accepted, not yet redeemed.
    pub pending: u64,
    pub chains: u64,
}

/// What the dashboard shows: paywords held, redeemed and pending per currency.
pub fn holdings(conn: &mut AnyConnection) -> Result<Vec<Holdings>, DbError> {
    let rows: Vec<(String, String, i64, i64, i64, i64)> = payword_blocks::table
        .select((
            payword_blocks::issuer,
            payword_blocks::chain,
            payword_blocks::block_from,
            payword_blocks::held_to,
            payword_blocks::redeemed_to,
            payword_blocks::unit,
        ))
        .order(payword_blocks::issuer.asc())
        .load(conn)?;
    let mut out: Vec<Holdings> = Vec::new();
    let mut chains = std::collections::HashSet::new();
    for (issuer, chain, from, held, redeemed, unit) in rows {
        if out.last().is_none_or(|h| h.issuer != issuer) {
            out.push(Holdings {
                issuer: issuer.clone(),
                ..Holdings::default()
            });
        }
        // Invariant: just pushed when absent.
        let Some(h) = out.last_mut() else { continue };
        let unit = unit.unsigned_abs();
        let accepted = (held - from + 1).unsigned_abs().saturating_mul(unit);
        let paid = (redeemed - from + 1)
            .max(0)
            .unsigned_abs()
            .saturating_mul(unit);
        h.accepted = h.accepted.saturating_add(accepted);
        h.redeemed = h.redeemed.saturating_add(paid);
        h.pending = h.accepted.saturating_sub(h.redeemed);
        if chains.insert((issuer, chain)) {
            h.chains += 1;
        }
    }
    Ok(out)
}

/// Read `issuer`'s fraud proofs after this vendor's cursor (through `client`, a client of
/// the issuer); keep the payers of those that verify. Answers the payers newly marked.
pub async fn follow_frauds(
    db: &db::Database,
    issuer: &EntityId,
    client: &crate::client::SignedClient,
) -> Result<Vec<EntityId>, String> {
    let after = {
        let issuer = issuer.clone();
        db.run(move |conn| fraud_cursor(conn, &issuer))
            .await
            .map_err(|e: DbError| e.to_string())?
    };
    let page: FraudsPage = client
        .query(&format!("/lcp/v1/frauds?after={after}"), 0)
        .await
        .map_err(|e| e.to_string())?;
    if page.frauds.is_empty() && page.next == after {
        return Ok(Vec::new());
    }
    let issuer = issuer.clone();
    db.run(move |conn| db::write_transaction(conn, |conn| note_frauds(conn, &issuer, &page)))
        .await
        .map_err(|e: DbError| e.to_string())
}

/// What one redemption command did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Redeemed {
    /// The command's counter (0: nothing was due, no command was sent).
    pub counter: u64,
    /// Value credited for the items settled here (fees deducted).
    pub credited: u64,
    /// Over every item of the issuer's answer: words newly paid, and value credited. What
    /// a `redemption` record says (DESIGN 11), checkable against the issuer's command log.
    pub words: u64,
    pub value: u64,
}

/// Redeem the words due at `issuer` (all of them with `all`, see [`due`]) with one command
/// (`counter`), and note the answer. The issuer is not contacted when nothing is due.
pub async fn redeem_due(
    db: &db::Database,
    issuer: &EntityId,
    client: &crate::client::SignedClient,
    counter: u64,
    threshold: u64,
    all: bool,
) -> Result<Redeemed, String> {
    let due = {
        let issuer = issuer.clone();
        db.run(move |conn| due(conn, &issuer, crate::now_s(), threshold, all))
            .await
            .map_err(|e: DbError| e.to_string())?
    };
    if due.is_empty() {
        return Ok(Redeemed::default());
    }
    let body = request_body(&due).map_err(|e| e.to_string())?;
    let answer: RedemptionsAnswer = client
        .command("POST", "/lcp/v1/redemptions", body, counter)
        .await
        .map_err(|e| e.to_string())?
        .value;
    let words = answer.results.iter().map(|r| r.words).sum();
    let value = answer.results.iter().map(|r| r.amount).sum();
    let credited = db
        .run(move |conn| db::write_transaction(conn, |conn| settle(conn, &due, &answer)))
        .await
        .map_err(|e: DbError| e.to_string())?;
    tracing::info!(issuer = %issuer, credited, "paywords redeemed");
    Ok(Redeemed {
        counter,
        credited,
        words,
        value,
    })
}
