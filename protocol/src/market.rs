//! Offers and storage contracts (DESIGN sections 5 and 6): the documents, their integer pricing,
//! and the checks an agent applies before countersigning a contract. Pure: the caller passes
//! the clock and its free space.

use serde::{Deserialize, Serialize};

use crate::amount::AmountError;
use crate::identity::EntityId;

pub const BYTES_PER_KIB: u64 = 1024;
pub const BYTES_PER_GIB: u64 = 1 << 30;
pub const SECONDS_PER_DAY: u64 = 86_400;
/// A contract's `start` must be within this of the agent's clock.
pub const START_SKEW_S_MAX: i64 = 300;
/// The market's reference request: 1 GiB for 30 days, no reads.
pub const REFERENCE_BYTES: u64 = BYTES_PER_GIB;
pub const REFERENCE_DURATION_S: u64 = 30 * SECONDS_PER_DAY;

pub const OFFER_TYPE: &str = "offer";
pub const CONTRACT_TYPE: &str = "contract";

/// One accepted currency and its prices, all in that currency's minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferCurrency {
    pub issuer: EntityId,
    pub issuer_url: String,
    pub storage_per_gib_day: u64,
    pub write_per_kib: u64,
    pub read_per_kib: u64,
    pub contract_min: u64,
    /// Where payments to this agent in this currency go when not to the agent's own entity
    /// (DESIGN 14): an entity id, or a bank customer's name (`bob@bank.example`) that buyers
    /// resolve. Absent: pay the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pay_to: Option<String>,
}

/// The payload of a signed `offer` envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    pub agent: EntityId,
    pub endpoint: String,
    /// RFC 3339 UTC.
    pub issued_at: String,
    pub expires_at: String,
    pub free_bytes: u64,
    pub block_bytes_max: u64,
    pub duration_s_max: u64,
    pub currencies: Vec<OfferCurrency>,
}

impl Offer {
    pub fn currency(&self, issuer: &EntityId) -> Option<&OfferCurrency> {
        self.currencies.iter().find(|c| &c.issuer == issuer)
    }
}

/// The payload of a signed `contract` envelope (signed by the buyer, countersigned by the agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    /// UUID v4, lowercase.
    pub id: String,
    pub agent: EntityId,
    pub buyer: EntityId,
    pub issuer: EntityId,
    pub block_bytes: u64,
    /// RFC 3339 UTC; the contract covers `[start, end)`.
    pub start: String,
    pub end: String,
    pub contract_price: u64,
    pub write_per_kib: u64,
    pub read_per_kib: u64,
    #[serde(default)]
    pub auditors: Vec<EntityId>,
}

/// Why an agent refuses a contract. Each has a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractRefusal {
    #[error("the contract id must be a lowercase UUID v4")]
    InvalidId,
    #[error("the contract is addressed to another agent")]
    WrongAgent,
    #[error("this agent does not accept that currency")]
    UnknownCurrency,
    #[error("start and end must be RFC 3339 times with end after start")]
    InvalidWindow,
    #[error("start must be within 300 s of the agent's clock")]
    StartOutOfRange,
    #[error("the duration exceeds the offer's duration_s_max of {max} s")]
    DurationTooLong { max: u64 },
    #[error("the block exceeds the offer's block_bytes_max of {max} bytes")]
    BlockTooLarge { max: u64 },
    #[error("the block needs {needed} bytes but only {free} are free")]
    InsufficientSpace { needed: u64, free: u64 },
    #[error("{what} is below the offer's price")]
    PriceBelowOffer { what: &'static str },
    #[error("contract_price must be at least {min}")]
    ContractPriceTooLow { min: u64 },
    #[error("the block must be at least 1 byte")]
    EmptyBlock,
}

impl ContractRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            ContractRefusal::InvalidId => "invalid_contract_id",
            ContractRefusal::WrongAgent => "wrong_agent",
            ContractRefusal::UnknownCurrency => "unknown_currency",
            ContractRefusal::InvalidWindow => "invalid_window",
            ContractRefusal::StartOutOfRange => "start_out_of_range",
            ContractRefusal::DurationTooLong { .. } => "duration_too_long",
            ContractRefusal::BlockTooLarge { .. } => "block_too_large",
            ContractRefusal::InsufficientSpace { .. } => "insufficient_space",
            ContractRefusal::PriceBelowOffer { .. } => "price_below_offer",
            ContractRefusal::ContractPriceTooLow { .. } => "contract_price_too_low",
            ContractRefusal::EmptyBlock => "invalid_block",
        }
    }
}

/// `ceil(block_bytes x duration_s x storage_per_gib_day / (2^30 x 86400))`, in integers.
pub fn storage_price(
    block_bytes: u64,
    duration_s: u64,
    storage_per_gib_day: u64,
) -> Result<u64, AmountError> {
    let numerator = u128::from(block_bytes)
        .checked_mul(u128::from(duration_s))
        .and_then(|v| v.checked_mul(u128::from(storage_per_gib_day)))
        .ok_or(AmountError::Overflow)?;
    let denominator = u128::from(BYTES_PER_GIB) * u128::from(SECONDS_PER_DAY);
    u64::try_from(numerator.div_ceil(denominator)).map_err(|_| AmountError::Overflow)
}

/// The least contract price an offer accepts: `max(contract_min, storage_price)`.
pub fn contract_price_min(
    currency: &OfferCurrency,
    block_bytes: u64,
    duration_s: u64,
) -> Result<u64, AmountError> {
    Ok(
        storage_price(block_bytes, duration_s, currency.storage_per_gib_day)?
            .max(currency.contract_min),
    )
}

/// `per_kib x ceil(bytes / 1024)`: the charge for writing or reading `bytes`.
pub fn per_kib_charge(per_kib: u64, bytes: u64) -> Result<u64, AmountError> {
    per_kib
        .checked_mul(bytes.div_ceil(BYTES_PER_KIB))
        .ok_or(AmountError::Overflow)
}

/// An agent's price for a request (DESIGN section 6): the contract for `shard_bytes` over
/// `duration_s`, plus writing the shard once, plus the expected reads.
pub fn request_price(
    currency: &OfferCurrency,
    shard_bytes: u64,
    duration_s: u64,
    expected_read_bytes: u64,
) -> Result<u64, AmountError> {
    contract_price_min(currency, shard_bytes, duration_s)?
        .checked_add(per_kib_charge(currency.write_per_kib, shard_bytes)?)
        .and_then(|v| {
            v.checked_add(per_kib_charge(currency.read_per_kib, expected_read_bytes).ok()?)
        })
        .ok_or(AmountError::Overflow)
}

/// The contract's window as Unix seconds `(start, end)`.
pub fn contract_window(contract: &Contract) -> Result<(i64, i64), ContractRefusal> {
    let start = parse_rfc3339(&contract.start).ok_or(ContractRefusal::InvalidWindow)?;
    let end = parse_rfc3339(&contract.end).ok_or(ContractRefusal::InvalidWindow)?;
    if end <= start {
        return Err(ContractRefusal::InvalidWindow);
    }
    Ok((start, end))
}

/// The checks of DESIGN section 5 an agent applies before countersigning `contract`.
pub fn check_contract(
    contract: &Contract,
    offer: &Offer,
    now_s: i64,
    free_bytes: u64,
) -> Result<(), ContractRefusal> {
    if !is_uuid_v4(&contract.id) {
        return Err(ContractRefusal::InvalidId);
    }
    if contract.agent != offer.agent {
        return Err(ContractRefusal::WrongAgent);
    }
    let currency = offer
        .currency(&contract.issuer)
        .ok_or(ContractRefusal::UnknownCurrency)?;
    let (start, end) = contract_window(contract)?;
    if (start - now_s).abs() > START_SKEW_S_MAX {
        return Err(ContractRefusal::StartOutOfRange);
    }
    let duration_s = (end - start).unsigned_abs();
    if duration_s > offer.duration_s_max {
        return Err(ContractRefusal::DurationTooLong {
            max: offer.duration_s_max,
        });
    }
    if contract.block_bytes == 0 {
        return Err(ContractRefusal::EmptyBlock);
    }
    if contract.block_bytes > offer.block_bytes_max {
        return Err(ContractRefusal::BlockTooLarge {
            max: offer.block_bytes_max,
        });
    }
    if contract.block_bytes > free_bytes {
        return Err(ContractRefusal::InsufficientSpace {
            needed: contract.block_bytes,
            free: free_bytes,
        });
    }
    if contract.write_per_kib < currency.write_per_kib {
        return Err(ContractRefusal::PriceBelowOffer {
            what: "write_per_kib",
        });
    }
    if contract.read_per_kib < currency.read_per_kib {
        return Err(ContractRefusal::PriceBelowOffer {
            what: "read_per_kib",
        });
    }
    // An overflowing minimum is a price no contract could meet.
    let min = contract_price_min(currency, contract.block_bytes, duration_s).unwrap_or(u64::MAX);
    if contract.contract_price < min {
        return Err(ContractRefusal::ContractPriceTooLow { min });
    }
    Ok(())
}

/// A lowercase UUID v4 (`xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx`).
pub fn is_uuid_v4(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
        && b[14] == b'4'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b')
}

/// Unix seconds of an RFC 3339 time; `None` if it is not one.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// RFC 3339 UTC (`2026-11-21T17:00:00Z`) of Unix seconds.
pub fn format_rfc3339(unix_s: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_s)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::KeyPair;

    const NOW: i64 = 1_790_000_000;

    fn id() -> EntityId {
        KeyPair::generate().expect("key").entity().clone()
    }

    fn offer(agent: &EntityId, issuer: &EntityId) -> Offer {
        Offer {
            agent: agent.clone(),
            endpoint: "http://127.0.0.1:1".into(),
            issued_at: format_rfc3339(NOW),
            expires_at: format_rfc3339(NOW + 600),
            free_bytes: 10 * BYTES_PER_GIB,
            block_bytes_max: 4 * BYTES_PER_GIB,
            duration_s_max: 365 * SECONDS_PER_DAY,
            currencies: vec![OfferCurrency {
                issuer: issuer.clone(),
                issuer_url: "http://127.0.0.1:2".into(),
                storage_per_gib_day: 100,
                write_per_kib: 1,
                read_per_kib: 2,
                contract_min: 50,
                pay_to: None,
            }],
        }
    }

    fn contract(offer: &Offer, buyer: &EntityId) -> Contract {
        Contract {
            id: "0b6f9c1e-3d2a-4f5b-9c8d-7e6f5a4b3c2d".into(),
            agent: offer.agent.clone(),
            buyer: buyer.clone(),
            issuer: offer.currencies[0].issuer.clone(),
            block_bytes: BYTES_PER_GIB,
            start: format_rfc3339(NOW),
            end: format_rfc3339(NOW + 30 * SECONDS_PER_DAY as i64),
            contract_price: 3_000,
            write_per_kib: 1,
            read_per_kib: 2,
            auditors: vec![],
        }
    }

    #[test]
    fn prices_are_integers_rounded_up() {
        assert_eq!(storage_price(BYTES_PER_GIB, SECONDS_PER_DAY, 100), Ok(100));
        assert_eq!(
            storage_price(BYTES_PER_GIB, 30 * SECONDS_PER_DAY, 100),
            Ok(3_000)
        );
        assert_eq!(
            storage_price(1, 1, 1),
            Ok(1),
            "any storage costs at least one unit"
        );
        assert_eq!(storage_price(0, 1, 1), Ok(0));
        assert_eq!(
            storage_price(u64::MAX, u64::MAX, u64::MAX),
            Err(AmountError::Overflow)
        );
        assert_eq!(per_kib_charge(3, 0), Ok(0));
        assert_eq!(per_kib_charge(3, 1), Ok(3));
        assert_eq!(per_kib_charge(3, 1024), Ok(3));
        assert_eq!(per_kib_charge(3, 1025), Ok(6));
        let o = offer(&id(), &id());
        let c = &o.currencies[0];
        assert_eq!(
            contract_price_min(c, 1024, 60),
            Ok(50),
            "contract_min applies"
        );
        // 1 GiB for 30 days: 3000 storage + 1 x 1048576 KiB written + no reads.
        assert_eq!(
            request_price(c, BYTES_PER_GIB, REFERENCE_DURATION_S, 0),
            Ok(3_000 + 1_048_576)
        );
        assert_eq!(request_price(c, 1024, 60, 2048), Ok(50 + 1 + 4));
    }

    type Change = Box<dyn Fn(&mut Contract)>;

    #[test]
    fn acceptable_contracts_pass_and_each_refusal_has_its_code() {
        let (agent, issuer, buyer) = (id(), id(), id());
        let o = offer(&agent, &issuer);
        let good = contract(&o, &buyer);
        assert_eq!(check_contract(&good, &o, NOW + 10, o.free_bytes), Ok(()));
        let cases: Vec<(&str, Change, u64)> = vec![
            (
                "invalid_contract_id",
                Box::new(|c| c.id = "not-a-uuid".into()),
                o.free_bytes,
            ),
            (
                "invalid_contract_id",
                Box::new(|c| c.id = c.id.replace("-4f5b", "-3f5b")),
                o.free_bytes,
            ),
            (
                "wrong_agent",
                Box::new(|c| c.agent = c.buyer.clone()),
                o.free_bytes,
            ),
            (
                "unknown_currency",
                Box::new(|c| c.issuer = c.buyer.clone()),
                o.free_bytes,
            ),
            (
                "invalid_window",
                Box::new(|c| c.end = c.start.clone()),
                o.free_bytes,
            ),
            (
                "invalid_window",
                Box::new(|c| c.start = "yesterday".into()),
                o.free_bytes,
            ),
            (
                "start_out_of_range",
                Box::new(|c| {
                    c.start = format_rfc3339(NOW + 400);
                    c.end = format_rfc3339(NOW + 4000);
                }),
                o.free_bytes,
            ),
            (
                "duration_too_long",
                Box::new(|c| c.end = format_rfc3339(NOW + 400 * SECONDS_PER_DAY as i64)),
                o.free_bytes,
            ),
            (
                "block_too_large",
                Box::new(|c| c.block_bytes = 5 * BYTES_PER_GIB),
                o.free_bytes,
            ),
            ("insufficient_space", Box::new(|_| {}), BYTES_PER_GIB - 1),
            (
                "price_below_offer",
                Box::new(|c| c.write_per_kib = 0),
                o.free_bytes,
            ),
            (
                "price_below_offer",
                Box::new(|c| c.read_per_kib = 1),
                o.free_bytes,
            ),
            (
                "contract_price_too_low",
                Box::new(|c| c.contract_price = 2_999),
                o.free_bytes,
            ),
            (
                "invalid_block",
                Box::new(|c| c.block_bytes = 0),
                o.free_bytes,
            ),
        ];
        for (code, change, free) in cases {
            let mut c = good.clone();
            change(&mut c);
            let refusal = check_contract(&c, &o, NOW, free).expect_err(code);
            assert_eq!(refusal.code(), code, "{refusal}");
        }
    }

    #[test]
    fn documents_round_trip_through_envelopes() {
        let agent = KeyPair::generate().expect("key");
        let o = offer(agent.entity(), &id());
        let env = crate::Envelope::sign_json(&agent, OFFER_TYPE, &o).expect("sign");
        let (signer, back): (_, Offer) = env.open(OFFER_TYPE).expect("open");
        assert_eq!((&signer, &back), (agent.entity(), &o));
        assert_eq!(parse_rfc3339(&format_rfc3339(NOW)), Some(NOW));
        assert_eq!(
            parse_rfc3339("2026-11-21T17:00:00+01:00"),
            Some(1_795_276_800)
        );
        assert!(is_uuid_v4("0b6f9c1e-3d2a-4f5b-9c8d-7e6f5a4b3c2d"));
        assert!(!is_uuid_v4("0B6F9C1E-3D2A-4F5B-9C8D-7E6F5A4B3C2D"));
    }
}
