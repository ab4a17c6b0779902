//! Credit lines, tabs and multi-path payments (DESIGN section 12, seeds 001 and 003): the
//! wire types and the arithmetic every credit node shares. No IO.
//!
//! - [`LineState`]: a line from a creditor to a debtor, changed only by an update both sign
//!   ([`LineUpdate`]); the higher `seq` wins.
//! - [`Line`]: a line's balance with the amounts held for payments under way; every operation
//!   keeps `owed + held <= limit` and never overflows (see its invariants).
//! - [`condition_of`]: a payment's condition, the hex SHA-256 of its 32-byte secret.
//! - [`Prepare`], [`Fulfill`], [`Reject`]: the messages of one payment's hops, and
//!   [`check_hop_expiry`], the rule that each hop expires before the one before it.
//! - [`flow`]: the payer's split of an amount over paths (a greedy flow within the hop bound)
//!   and trust along paths.
//!
//! Signing string of a line update (both parties sign the same bytes, lines joined by `\n`):
//! `LCP-LINE-1\n<id>\n<creditor>\n<debtor>\n<currency>\n<limit>\n<owed>\n<seq>`.

use serde::{Deserialize, Serialize};

use crate::{EntityId, KeyPair};

pub mod flow;
pub mod seal;

/// Domain separation of line update signatures.
pub const LINE_DOMAIN: &str = "LCP-LINE-1";
/// Most hops a payment's path may have (DESIGN 12).
pub const PATH_HOPS_MAX: usize = 4;
/// Each hop's hold expires at least this long before the previous hop's.
pub const HOP_EXPIRY_MARGIN_MS: u64 = 2_000;
/// Time left for an answer to travel back: a target answers this long before its hold
/// lapses, and a hop waits this long past its next hop's expiry.
pub const ANSWER_SLACK_MS: u64 = 500;
/// Bytes of a payment's secret.
pub const SECRET_BYTES: usize = 32;

/// Why a credit message or update is refused; each has a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditError {
    #[error("invalid line: {0}")]
    Malformed(String),
    #[error("a signature on the line update does not verify")]
    Signature,
    #[error("update {got} is not newer than the line's {held}")]
    Stale { held: u64, got: u64 },
    #[error("the line's limit would be exceeded: {owed} owed and {held} held of {limit}")]
    OverLimit { limit: u64, owed: u64, held: u64 },
    #[error("amounts out of range: {0}")]
    Range(&'static str),
    #[error("expiry: {0}")]
    Expiry(String),
    #[error("the secret does not fulfil the condition")]
    WrongSecret,
    #[error("the payment is not under way here: {0}")]
    UnknownPayment(String),
    #[error("the payment was already settled here")]
    Settled,
}

impl CreditError {
    pub fn code(&self) -> &'static str {
        match self {
            CreditError::Malformed(_) => "invalid_line",
            CreditError::Signature => "invalid_line_signature",
            CreditError::Stale { .. } => "stale_update",
            CreditError::OverLimit { .. } => "over_limit",
            CreditError::Range(_) => "invalid_amount",
            CreditError::Expiry(_) => "invalid_expiry",
            CreditError::WrongSecret => "wrong_secret",
            CreditError::UnknownPayment(_) => "unknown_payment",
            CreditError::Settled => "payment_settled",
        }
    }
}

/// A creditor's half of a tab state, as `LCP-Line: <id>;<seq>;<owed>;<signature>` carries it
/// on the answers to charged requests (DESIGN 12): the storage agent's and a peer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineHalf {
    pub id: String,
    pub seq: u64,
    pub owed: u64,
    pub signature: String,
}

impl LineHalf {
    /// Parse `<id>;<seq>;<owed>;<signature>`.
    pub fn parse(text: &str) -> Option<LineHalf> {
        let mut parts = text.split(';');
        let half = LineHalf {
            id: parts.next()?.to_owned(),
            seq: parts.next()?.parse().ok()?,
            owed: parts.next()?.parse().ok()?,
            signature: parts.next()?.to_owned(),
        };
        parts.next().is_none().then_some(half)
    }

    /// The header value.
    pub fn header(&self) -> String {
        format!("{};{};{};{}", self.id, self.seq, self.owed, self.signature)
    }
}

/// A line's state: the debtor owes the creditor `owed` (at most `limit`) units of `currency`
/// (an issuer id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineState {
    /// A UUID.
    pub id: String,
    pub creditor: String,
    pub debtor: String,
    pub currency: String,
    pub limit: u64,
    pub owed: u64,
    pub seq: u64,
}

impl LineState {
    /// The bytes both parties sign.
    pub fn signing_string(&self) -> String {
        format!(
            "{LINE_DOMAIN}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.id, self.creditor, self.debtor, self.currency, self.limit, self.owed, self.seq
        )
    }

    /// Fields well formed: a UUID id, entity ids for both parties and the currency, two
    /// different parties, `owed <= limit`.
    pub fn validate(&self) -> Result<(EntityId, EntityId), CreditError> {
        let bad = |m: &str| CreditError::Malformed(m.to_owned());
        if uuid_like(&self.id).is_none() {
            return Err(bad("id must be a UUID"));
        }
        let creditor = EntityId::parse(&self.creditor).map_err(|_| bad("creditor"))?;
        let debtor = EntityId::parse(&self.debtor).map_err(|_| bad("debtor"))?;
        EntityId::parse(&self.currency).map_err(|_| bad("currency must be an issuer id"))?;
        if creditor == debtor {
            return Err(bad("a line joins two different entities"));
        }
        if self.owed > self.limit {
            return Err(CreditError::OverLimit {
                limit: self.limit,
                owed: self.owed,
                held: 0,
            });
        }
        Ok((creditor, debtor))
    }
}

/// A line state with both parties' signatures over [`LineState::signing_string`]
/// (base64url). A proposal carries one of them; an update in force carries both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineUpdate {
    pub state: LineState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creditor_signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debtor_signature: Option<String>,
}

impl LineUpdate {
    /// `key` signs `state` as whichever party it is.
    pub fn sign(state: LineState, key: &KeyPair) -> Result<LineUpdate, CreditError> {
        let mut update = LineUpdate {
            state,
            creditor_signature: None,
            debtor_signature: None,
        };
        update.countersign(key)?;
        Ok(update)
    }

    /// Add `key`'s signature; it must be the creditor or the debtor.
    pub fn countersign(&mut self, key: &KeyPair) -> Result<(), CreditError> {
        self.state.validate()?;
        let signature = key.sign_b64(self.state.signing_string().as_bytes());
        let me = key.entity().as_str();
        if me == self.state.creditor {
            self.creditor_signature = Some(signature);
        } else if me == self.state.debtor {
            self.debtor_signature = Some(signature);
        } else {
            return Err(CreditError::Malformed(
                "only the creditor or the debtor signs a line".into(),
            ));
        }
        Ok(())
    }

    /// Fields valid and every signature present verifies; answers whether both are there.
    pub fn verify(&self) -> Result<bool, CreditError> {
        let (creditor, debtor) = self.state.validate()?;
        let message = self.state.signing_string();
        for (who, signature) in [
            (&creditor, &self.creditor_signature),
            (&debtor, &self.debtor_signature),
        ] {
            if let Some(s) = signature {
                if !who.verify_b64(message.as_bytes(), s) {
                    return Err(CreditError::Signature);
                }
            }
        }
        Ok(self.creditor_signature.is_some() && self.debtor_signature.is_some())
    }

    /// Both signatures verify and `seq` is above `held_seq`: the update may replace the
    /// line's state.
    pub fn check_newer(&self, held_seq: u64) -> Result<(), CreditError> {
        if !self.verify()? {
            return Err(CreditError::Malformed(
                "an update in force carries both parties' signatures".into(),
            ));
        }
        if self.state.seq <= held_seq {
            return Err(CreditError::Stale {
                held: held_seq,
                got: self.state.seq,
            });
        }
        Ok(())
    }
}

/// `Some(())` when `text` is a UUID in its usual hyphenated form.
fn uuid_like(text: &str) -> Option<()> {
    let groups: Vec<&str> = text.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    (groups.len() == 5
        && groups
            .iter()
            .zip(lens)
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit())))
    .then_some(())
}

/// A line as a node shows it (`GET /v1/credit/lines`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineView {
    pub id: String,
    pub creditor: String,
    pub debtor: String,
    pub currency: String,
    pub limit: u64,
    pub owed: u64,
    /// What payments from the debtor hold against the limit.
    pub held: u64,
    /// What payments from the creditor hold against what is owed.
    #[serde(default)]
    pub repaying: u64,
    pub seq: u64,
    /// When this node last changed the line (Unix ms).
    #[serde(default)]
    pub updated_ms: u64,
    /// A tab's settlement threshold (seed 001): past it the debtor is asked to settle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_threshold: Option<u64>,
    /// When a settlement last lowered what is owed (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_ms: Option<u64>,
    /// The parties' signatures over the state shown; a tab's debtor signature is empty until
    /// the debtor countersigns a settled balance (its signed requests are its half).
    #[serde(default)]
    pub creditor_signature: String,
    #[serde(default)]
    pub debtor_signature: String,
}

/// The answer of `GET /v1/credit/lines`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinesPage {
    pub lines: Vec<LineView>,
}

/// A line's balance as a node keeps it: `owed` by the debtor, `held` for payments from the
/// debtor under way (prepared, not yet fulfilled or released), `repaying` for payments from
/// the creditor under way (they lower what is owed when fulfilled).
///
/// Invariants (every operation keeps them or changes nothing):
/// - `owed + held <= limit` and `repaying <= owed`, with no overflow anywhere;
/// - a hold is committed or released at most once, by its caller's bookkeeping; `commit`
///   and `release` never take more than is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Line {
    pub limit: u64,
    pub owed: u64,
    pub held: u64,
    #[serde(default)]
    pub repaying: u64,
}

impl Line {
    /// What the debtor may still draw: `limit - owed - held`.
    pub fn room(&self) -> u64 {
        self.limit
            .saturating_sub(self.owed)
            .saturating_sub(self.held)
    }

    fn over(&self) -> CreditError {
        CreditError::OverLimit {
            limit: self.limit,
            owed: self.owed,
            held: self.held,
        }
    }

    /// Hold `amount` for a payment under way.
    pub fn hold(&mut self, amount: u64) -> Result<(), CreditError> {
        if amount == 0 {
            return Err(CreditError::Range("a hold is of at least 1"));
        }
        if amount > self.room() {
            return Err(self.over());
        }
        self.held += amount; // room() bounds it: owed + held + amount <= limit.
        Ok(())
    }

    /// Release `amount` held (a rejected or expired payment).
    pub fn release(&mut self, amount: u64) -> Result<(), CreditError> {
        self.held = self
            .held
            .checked_sub(amount)
            .ok_or(CreditError::Range("more released than held"))?;
        Ok(())
    }

    /// Commit `amount` held: the debtor now owes it.
    pub fn commit(&mut self, amount: u64) -> Result<(), CreditError> {
        let held = self
            .held
            .checked_sub(amount)
            .ok_or(CreditError::Range("more committed than held"))?;
        // owed + held <= limit held before, so owed + amount <= limit: no overflow.
        self.owed += amount;
        self.held = held;
        Ok(())
    }

    /// What payments from the creditor may still take off the debt: `owed - repaying`.
    pub fn repayable(&self) -> u64 {
        self.owed.saturating_sub(self.repaying)
    }

    /// Hold `amount` of what is owed for a payment from the creditor to the debtor.
    pub fn hold_repay(&mut self, amount: u64) -> Result<(), CreditError> {
        if amount == 0 {
            return Err(CreditError::Range("a hold is of at least 1"));
        }
        if amount > self.repayable() {
            return Err(CreditError::Range(
                "more held against the debt than is owed",
            ));
        }
        self.repaying += amount; // repayable() bounds it: repaying + amount <= owed.
        Ok(())
    }

    /// Release `amount` held against the debt.
    pub fn release_repay(&mut self, amount: u64) -> Result<(), CreditError> {
        self.repaying = self
            .repaying
            .checked_sub(amount)
            .ok_or(CreditError::Range("more released than held"))?;
        Ok(())
    }

    /// Commit `amount` held against the debt: the debtor owes that much less.
    pub fn commit_repay(&mut self, amount: u64) -> Result<(), CreditError> {
        let repaying = self
            .repaying
            .checked_sub(amount)
            .ok_or(CreditError::Range("more committed than held"))?;
        // repaying <= owed held before, so amount <= owed.
        self.owed -= amount;
        self.repaying = repaying;
        Ok(())
    }

    /// The debtor paid `amount` back outside a payment (a settlement): only what no payment
    /// holds.
    pub fn repay(&mut self, amount: u64) -> Result<(), CreditError> {
        if amount > self.repayable() {
            return Err(CreditError::Range("more repaid than owed"));
        }
        self.owed -= amount;
        Ok(())
    }

    /// A new limit; refused when below what is owed and held.
    pub fn set_limit(&mut self, limit: u64) -> Result<(), CreditError> {
        let used = self
            .owed
            .checked_add(self.held)
            .ok_or(CreditError::Range("owed and held overflow"))?;
        if limit < used {
            return Err(CreditError::OverLimit {
                limit,
                owed: self.owed,
                held: self.held,
            });
        }
        self.limit = limit;
        Ok(())
    }
}

/// What `from` can pay `to` over their lines (DESIGN 12): what `to` lets `from` owe it,
/// less what `from` owes `to` and holds, plus what `to` owes `from` (less what is held
/// against that). `to_from` is the line `to` extends `from` (creditor `to`), `from_to` the
/// line `from` extends `to`.
pub fn capacity(to_from: Option<&Line>, from_to: Option<&Line>) -> u64 {
    let borrow = to_from.map_or(0, Line::room);
    let repay = from_to.map_or(0, Line::repayable);
    borrow.saturating_add(repay)
}

/// A payment's condition: the lowercase hex SHA-256 of its secret.
pub fn condition_of(secret: &[u8; SECRET_BYTES]) -> String {
    crate::sha256_hex(secret)
}

/// The secret (hex) opens `condition`.
pub fn check_secret(secret_hex: &str, condition: &str) -> Result<[u8; SECRET_BYTES], CreditError> {
    let raw = hex::decode(secret_hex).map_err(|_| CreditError::WrongSecret)?;
    let secret: [u8; SECRET_BYTES] = raw.try_into().map_err(|_| CreditError::WrongSecret)?;
    if condition_of(&secret) != condition.to_ascii_lowercase() {
        return Err(CreditError::WrongSecret);
    }
    Ok(secret)
}

/// One hop of a payment (`POST /v1/credit/prepare`): hold `amount` on the line toward the
/// next hop of `path` until `expires_at` (Unix ms) or until the secret of `condition` comes
/// back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prepare {
    /// The payment's id (a UUID, the same at every hop and on every path).
    pub payment: String,
    /// What this path carries.
    pub amount: u64,
    /// What the whole payment carries over all its paths.
    pub total: u64,
    pub currency: String,
    /// Entity ids from the payer to the target.
    pub path: Vec<String>,
    pub condition: String,
    /// The secret sealed to the target's credit key (opaque to the hops).
    pub sealed_secret: String,
    pub expires_at: u64,
    /// How the sender splits `amount` over its lines with the receiver (a hop may draw on
    /// the line the receiver extends it and on what the receiver owes it). Empty: the
    /// receiver splits the same way the sender would ([`hop_split`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<LinePart>,
    /// What the payment is for, at the target (a contract id at an agent, as an LCP
    /// transfer's `transaction_id`): at most 128 printable characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
}

/// Part of one hop's amount on one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinePart {
    pub line: String,
    pub amount: u64,
}

/// How a hop from `payer` to `payee` carries `amount` (DESIGN 12's capacity): first off
/// what the payee owes the payer (`repay`, the line the payer extends), then on the line the
/// payee extends the payer (`borrow`). Answers (repaid, borrowed), or `None` when the two
/// cannot carry it.
pub fn hop_split(repay: Option<&Line>, borrow: Option<&Line>, amount: u64) -> Option<(u64, u64)> {
    let repaid = repay.map_or(0, Line::repayable).min(amount);
    let borrowed = amount - repaid;
    if borrowed > 0 && borrow.map_or(0, Line::room) < borrowed {
        return None;
    }
    Some((repaid, borrowed))
}

impl Prepare {
    /// Fields well formed: a UUID payment, 1 <= amount <= total, a path of 2 to
    /// `PATH_HOPS_MAX + 1` distinct entities, a 64-hex condition.
    pub fn validate(&self) -> Result<(), CreditError> {
        let bad = |m: &str| Err(CreditError::Malformed(m.to_owned()));
        if uuid_like(&self.payment).is_none() {
            return bad("payment must be a UUID");
        }
        if self.amount == 0 || self.amount > self.total {
            return Err(CreditError::Range("1 <= amount <= total"));
        }
        if !(2..=PATH_HOPS_MAX + 1).contains(&self.path.len()) {
            return bad("a path names 2 to 5 entities (at most 4 hops)");
        }
        let mut seen = std::collections::HashSet::new();
        for e in &self.path {
            if EntityId::parse(e).is_err() || !seen.insert(e.as_str()) {
                return bad("a path names distinct entity ids");
            }
        }
        if EntityId::parse(&self.currency).is_err() {
            return bad("currency must be an issuer id");
        }
        if self.condition.len() != 64
            || !self
                .condition
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return bad("condition must be 64 lowercase hex digits");
        }
        if let Some(t) = &self.transaction_id {
            if t.is_empty() || t.len() > 128 || t.chars().any(char::is_control) {
                return bad("transaction_id is 1 to 128 printable characters");
            }
        }
        if self.lines.len() > 2 {
            return bad("a hop draws on at most two lines");
        }
        let mut sum = 0u64;
        for part in &self.lines {
            if uuid_like(&part.line).is_none() || part.amount == 0 {
                return bad("each line part names a line and at least 1");
            }
            sum = sum
                .checked_add(part.amount)
                .ok_or(CreditError::Range("line parts overflow"))?;
        }
        if !self.lines.is_empty() && sum != self.amount {
            return Err(CreditError::Range("line parts add up to the amount"));
        }
        Ok(())
    }
}

/// The hop after `me` holds until `next_expires_at`; `mine` is `me`'s own expiry. The next
/// hop must expire at least [`HOP_EXPIRY_MARGIN_MS`] before, and after `now_ms`, so that a
/// fulfil reaching `me` always arrives before `me`'s own hold lapses.
pub fn check_hop_expiry(mine: u64, next_expires_at: u64, now_ms: u64) -> Result<(), CreditError> {
    if next_expires_at <= now_ms {
        return Err(CreditError::Expiry(
            "the next hop's hold has expired".into(),
        ));
    }
    if next_expires_at.saturating_add(HOP_EXPIRY_MARGIN_MS) > mine {
        return Err(CreditError::Expiry(format!(
            "each hop expires at least {HOP_EXPIRY_MARGIN_MS} ms before the previous one"
        )));
    }
    Ok(())
}

/// `POST /v1/credit/fulfill`: the secret of a prepared payment, travelling back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fulfill {
    pub payment: String,
    /// Hex.
    pub secret: String,
}

/// `POST /v1/credit/reject`: release a prepared payment's holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reject {
    pub payment: String,
    #[serde(default)]
    pub reason: String,
}

/// The name of a payment's path: the first 32 hex digits of the SHA-256 of its entity ids
/// joined by newlines. One payment may cross one line on several paths; each is held apart.
pub fn route_of(path: &[String]) -> String {
    let mut s = crate::sha256_hex(path.join("\n").as_bytes());
    s.truncate(32);
    s
}

/// A prepare's answer when the payment was fulfilled: the secret (hex), which commits the
/// hop it reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fulfilled {
    pub payment: String,
    pub secret: String,
}

/// One hold as a node shows it (`GET /v1/credit/payments/{payment}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldView {
    /// The payment's path the hold is for ([`route_of`]).
    pub route: String,
    pub line: String,
    /// `in` (the peer pays this node) or `out` (this node pays the peer).
    pub direction: String,
    /// `borrow` or `repay`.
    pub kind: String,
    pub peer: String,
    pub amount: u64,
    pub expires_at: u64,
    /// `held`, `committed` or `released`.
    pub state: String,
}

/// What a node knows of one payment: its holds on lines with the asker, and the secret once
/// the payment is committed here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentStatus {
    pub payment: String,
    pub holds: Vec<HoldView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A node's trust in a neighbour (seed 003), in [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustEdge {
    pub from: String,
    pub to: String,
    pub trust: f64,
}

/// The answer of `GET /v1/credit/trust?to=X`: the node's trust in X (the best product along
/// paths of the edges it learned) and those edges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustAnswer {
    pub from: String,
    pub to: String,
    pub trust: f64,
    pub edges: Vec<TrustEdge>,
}

#[cfg(test)]
mod tests;
