//! Money: u64 minor units, checked arithmetic, never floats (DESIGN section 4).

use serde::{Deserialize, Serialize};

/// Basis points in one whole (100%).
pub const BPS_PER_WHOLE: u64 = 10_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AmountError {
    #[error("amount arithmetic overflowed")]
    Overflow,
    #[error("amount arithmetic underflowed")]
    Underflow,
}

/// An amount of some currency in minor units.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Amount(pub u64);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub fn checked_add(self, other: Amount) -> Result<Amount, AmountError> {
        self.0
            .checked_add(other.0)
            .map(Amount)
            .ok_or(AmountError::Overflow)
    }

    pub fn checked_sub(self, other: Amount) -> Result<Amount, AmountError> {
        self.0
            .checked_sub(other.0)
            .map(Amount)
            .ok_or(AmountError::Underflow)
    }
}

/// The transfer fee of DESIGN section 4: `flat + ceil(amount x bps / 10000)`.
pub fn fee_for(amount: Amount, flat: u64, bps: u64) -> Result<Amount, AmountError> {
    // u128 so `amount x bps` cannot overflow for any u64 inputs.
    let proportional = (u128::from(amount.0) * u128::from(bps)).div_ceil(u128::from(BPS_PER_WHOLE));
    let proportional = u64::try_from(proportional).map_err(|_| AmountError::Overflow)?;
    flat.checked_add(proportional)
        .map(Amount)
        .ok_or(AmountError::Overflow)
}

/// Most decimals a currency may declare: 10^19 is past u64, so more could not be shown exactly.
pub const DECIMALS_MAX: u32 = 18;

/// An amount of minor units for people: `790` with 2 decimals is `7.90`. Exact (integer
/// arithmetic); signed, since an issuer's own balance is negative.
pub fn format_units(minor: i128, decimals: u32) -> String {
    let decimals = decimals.min(DECIMALS_MAX);
    if decimals == 0 {
        return minor.to_string();
    }
    let scale = 10i128.pow(decimals);
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let scale = scale.unsigned_abs();
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = decimals as usize
    )
}

/// [`format_units`] followed by the currency's code: `7.90 LCU`.
pub fn format_amount(minor: i128, decimals: u32, code: &str) -> String {
    if code.is_empty() {
        format_units(minor, decimals)
    } else {
        format!("{} {code}", format_units(minor, decimals))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_show_with_their_decimals() {
        assert_eq!(format_units(790, 2), "7.90");
        assert_eq!(format_units(5, 2), "0.05");
        assert_eq!(format_units(0, 2), "0.00");
        assert_eq!(format_units(-1_250, 2), "-12.50");
        assert_eq!(format_units(42, 0), "42");
        assert_eq!(
            format_units(i128::from(u64::MAX), 18),
            "18.446744073709551615"
        );
        assert_eq!(format_amount(790, 2, "LCU"), "7.90 LCU");
        assert_eq!(format_amount(790, 2, ""), "7.90");
    }

    #[test]
    fn fee_rounds_up() {
        assert_eq!(fee_for(Amount(1), 0, 1), Ok(Amount(1)));
        assert_eq!(fee_for(Amount(10_000), 0, 1), Ok(Amount(1)));
        assert_eq!(fee_for(Amount(10_001), 0, 1), Ok(Amount(2)));
        assert_eq!(fee_for(Amount(100), 5, 0), Ok(Amount(5)));
        assert_eq!(fee_for(Amount(100), 5, 250), Ok(Amount(8)));
        assert_eq!(fee_for(Amount(u64::MAX), 0, 10_000), Ok(Amount(u64::MAX)));
        assert_eq!(
            fee_for(Amount(u64::MAX), 1, 10_000),
            Err(AmountError::Overflow)
        );
    }

    #[test]
    fn checked_arithmetic() {
        assert_eq!(
            Amount(1).checked_sub(Amount(2)),
            Err(AmountError::Underflow)
        );
        assert_eq!(
            Amount(u64::MAX).checked_add(Amount(1)),
            Err(AmountError::Overflow)
        );
        assert_eq!(Amount(2).checked_add(Amount(3)), Ok(Amount(5)));
    }
}
