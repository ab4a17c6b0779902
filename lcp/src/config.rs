//! Issuer configuration: TOML file (`DIR/issuer.toml`), then environment, then flags, in that
//! order of precedence (flags win). Every field has a default, so a first run needs none.

use serde::{Deserialize, Serialize};

/// Largest amount one transfer may move, in minor units.
pub const MAX_AMOUNT_DEFAULT: u64 = 1_000_000_000_000;
/// How far below zero the issuer's own account (the mint) may go.
pub const SUPPLY_CAP_DEFAULT: u64 = 1_000_000_000_000_000;
/// Longest a deposits long poll is held.
pub const WAIT_MS_MAX_DEFAULT: u64 = 30_000;
/// Largest request body accepted.
pub const MAX_BODY_BYTES_DEFAULT: usize = 16 * 1024;
/// Transfers waiting for the ledger writer; beyond this, `503 overloaded`.
pub const QUEUE_MAX_DEFAULT: usize = 16_384;
/// Transfers committed in one database transaction (group commit). 1 turns group commit off.
pub const BATCH_MAX_DEFAULT: usize = 2_048;
/// Long polls held at once; beyond this a poll answers at once instead of waiting.
pub const WAITERS_MAX_DEFAULT: usize = 10_000;
/// Longest `transaction_id`.
pub const TRANSACTION_ID_CHARS_MAX: usize = 128;
/// Expired chains are looked for once a minute by default.
pub const ESCROW_SWEEP_INTERVAL_MS_DEFAULT: u64 = 60_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct IssuerConfig {
    pub currency_code: String,
    pub currency_name: String,
    /// Minor units per unit, as a power of ten (2: amounts are cents).
    pub decimals: u8,
    pub fee_flat: u64,
    pub fee_bps: u64,
    pub supply_cap: u64,
    pub max_amount: u64,
    pub wait_ms_max: u64,
    pub max_body_bytes: usize,
    pub queue_max: usize,
    pub batch_max: usize,
    pub waiters_max: usize,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// After a payword chain expires, how long its vendors may still redeem before the
    /// escrow's rest goes back to the payer (DESIGN 10; shortened in tests).
    pub redeem_grace_s: u64,
    /// How often the issuer looks for expired chains whose escrow is due back.
    pub escrow_sweep_interval_ms: u64,
    /// Credit lines (DESIGN 12): lines the issuer's identity gives and accepts, its
    /// neighbours and its trust in them (`[credit]`, as for agents).
    pub credit: node::credit::CreditPolicy,
}

impl Default for IssuerConfig {
    fn default() -> Self {
        IssuerConfig {
            currency_code: "LCU".into(),
            currency_name: "Lightweight Currency Unit".into(),
            decimals: 2,
            fee_flat: 0,
            fee_bps: 0,
            supply_cap: SUPPLY_CAP_DEFAULT,
            max_amount: MAX_AMOUNT_DEFAULT,
            wait_ms_max: WAIT_MS_MAX_DEFAULT,
            max_body_bytes: MAX_BODY_BYTES_DEFAULT,
            queue_max: QUEUE_MAX_DEFAULT,
            batch_max: BATCH_MAX_DEFAULT,
            waiters_max: WAITERS_MAX_DEFAULT,
            workers: 0,
            redeem_grace_s: protocol::payword::REDEEM_GRACE_S,
            escrow_sweep_interval_ms: ESCROW_SWEEP_INTERVAL_MS_DEFAULT,
            credit: node::credit::CreditPolicy::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid configuration in {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl IssuerConfig {
    /// Read `path` if it exists; defaults otherwise.
    pub fn load_file(path: &std::path::Path) -> Result<IssuerConfig, ConfigError> {
        if !path.exists() {
            return Ok(IssuerConfig::default());
        }
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: shown,
            message: e.to_string(),
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if let Err(e) = self.credit.check() {
            return Err(ConfigError::Invalid(format!("[credit]: {e}")));
        }
        if self.currency_code.is_empty()
            || self.currency_code.len() > 12
            || !self
                .currency_code
                .chars()
                .all(|c| c.is_ascii_alphanumeric())
        {
            return bad("currency_code must be 1 to 12 ASCII letters or digits");
        }
        if self.fee_bps > protocol::amount::BPS_PER_WHOLE {
            return bad("fee_bps must be at most 10000 (100%)");
        }
        // Balances are stored as signed 64-bit integers.
        if self.supply_cap > i64::MAX as u64 || self.max_amount > i64::MAX as u64 / 4 {
            return bad("supply_cap and max_amount must fit signed 64-bit balances");
        }
        if self.max_amount == 0 || self.batch_max == 0 || self.queue_max == 0 {
            return bad("max_amount, batch_max and queue_max must be at least 1");
        }
        if self.escrow_sweep_interval_ms == 0 {
            return bad("escrow_sweep_interval_ms must be at least 1");
        }
        if self.decimals > 18 {
            return bad("decimals must be at most 18");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// deploy/issuer.toml lists every setting at its default: it parses, and equals them.
    #[test]
    fn the_example_configuration_is_the_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/issuer.toml");
        let example = IssuerConfig::load_file(&path).expect("deploy/issuer.toml parses");
        assert_eq!(example, IssuerConfig::default());
    }
}
