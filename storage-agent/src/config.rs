//! `DIR/config.toml`, written by `storage-agent init`. Serde defaults for everything but the
//! currencies, so a config stays valid as fields are added.

use serde::{Deserialize, Serialize};

pub const CONFIG_FILE: &str = "config.toml";
/// Default space sold: 10 GiB.
pub const CAPACITY_DEFAULT: u64 = 10 * (1 << 30);
/// After a contract's end, objects are kept this long before deletion.
pub const GRACE_S_DEFAULT: u64 = 24 * 3600;
/// Largest single object accepted in one PUT (buffered in memory while hashed).
pub const OBJECT_BYTES_MAX: u64 = 64 * (1 << 20);
/// An offer is valid this long after it is issued; heartbeats re-issue it.
pub const OFFER_TTL_S: i64 = 600;
/// Unpaid contracts release their reservation after this long: long enough for a buyer to pay
/// (one LCP transfer), short enough that unpaid contracts cannot hold the disk for long.
pub const PENDING_TTL_S: i64 = 900;
/// Unpaid contracts together reserve at most this share (percent) of capacity, so a flood of
/// contracts nobody pays for cannot lock every paying buyer out.
pub const PENDING_SHARE_PCT_MAX: u64 = 50;
/// Default memory for the hot-object read cache.
pub const READ_CACHE_BYTES_DEFAULT: u64 = 64 << 20;
/// Paywords due for redemption are looked for once a minute by default.
pub const PAYWORD_REDEEM_INTERVAL_MS_DEFAULT: u64 = 60_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CurrencyConfig {
    pub issuer_url: String,
    /// Filled in by `init` from the issuer's descriptor.
    pub issuer: String,
    pub storage_per_gib_day: u64,
    pub write_per_kib: u64,
    pub read_per_kib: u64,
    pub contract_min: u64,
    /// Paid into a bank account (DESIGN 14, seed 000 section 5.2): buyers pay the customer
    /// named here, and the agent learns of payments from the bank, not from the issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank: Option<BankAccount>,
}

/// A bank account the agent is paid into, in one currency: written by `init --bank URL
/// --bank-token T` from the bank's answer to the token (`GET /lcp/v1/account`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BankAccount {
    /// The bank's URL, where the agent asks for its deposits.
    pub url: String,
    /// The app token (`<id>.<secret>`) the customer granted this agent: it reads the
    /// account's deposits. A secret: config.toml is then written readable by its owner only.
    pub token: String,
    /// `user@host`: what offers name as `pay_to`.
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    pub capacity_bytes: u64,
    pub block_bytes_max: u64,
    pub duration_s_max: u64,
    pub grace_s: u64,
    /// `file` (objects under DATA/objects), `memory://` (tests), or `s3://bucket/prefix`
    /// (credentials, region and endpoint from the AWS_* environment variables).
    pub store: String,
    /// Public URL buyers reach this agent at; the listen address when empty.
    pub endpoint: String,
    /// How much a buyer may owe across all its contracts here before reads and writes get 402
    /// (a running tab, seed 001); 0 turns tabs off.
    pub tab_limit: u64,
    /// With a tab, once the buyer's debt passes this, answers carry `LCP-Amount-Due` asking
    /// the buyer to settle (seed 001's settlement threshold). Below `tab_limit` to be useful.
    pub tab_threshold: u64,
    /// The free-rider threshold (seed 004, DESIGN 11): a buyer whose consumption in the
    /// market's agreed records exceeds its contribution by more than this (in the records'
    /// minor units) gets no tab here: it pays ahead, or is answered `402 free_rider`. 0 (the
    /// default) turns the check off; it needs `--market`.
    pub free_rider_threshold: u64,
    /// Credit lines (DESIGN 12): the largest line this agent extends to a neighbour who asks
    /// (`[credit] give_max`, minor units; 0, the default, refuses every ask; lines given to
    /// the agent are always accepted), the longest hold (`hold_ms_max`), and the servers it
    /// deals with (`[[credit.neighbors]]`: `url`, `trust`, and the line it gives them,
    /// `give` in `currency`).
    #[serde(default)]
    pub credit: node::credit::CreditPolicy,
    /// Memory for recently read objects (whole objects up to 4 MiB), so popular content is
    /// served without touching the disk; 0 turns the cache off.
    pub read_cache_bytes: u64,
    /// Paywords (DESIGN 10): the value one buyer may owe here in words not yet redeemed
    /// before more are refused (what a double spend could cost this agent).
    pub payword_unredeemed_max: u64,
    /// Redeem a currency's paywords once they are worth this much (and always well before
    /// a chain expires, and at shutdown).
    pub payword_redeem_threshold: u64,
    /// How often paywords due for redemption and the issuers' fraud proofs are looked at.
    pub payword_redeem_interval_ms: u64,
    pub currencies: Vec<CurrencyConfig>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            capacity_bytes: CAPACITY_DEFAULT,
            block_bytes_max: CAPACITY_DEFAULT,
            duration_s_max: 365 * 86_400,
            grace_s: GRACE_S_DEFAULT,
            store: "file".into(),
            endpoint: String::new(),
            tab_limit: 0,
            tab_threshold: 0,
            free_rider_threshold: 0,
            credit: node::credit::CreditPolicy::default(),
            read_cache_bytes: READ_CACHE_BYTES_DEFAULT,
            payword_unredeemed_max: node::paywords::UNREDEEMED_PER_PAYER_MAX_DEFAULT,
            payword_redeem_threshold: node::paywords::REDEEM_THRESHOLD_DEFAULT,
            payword_redeem_interval_ms: PAYWORD_REDEEM_INTERVAL_MS_DEFAULT,
            currencies: Vec::new(),
        }
    }
}

impl AgentConfig {
    pub fn load(dir: &std::path::Path) -> anyhow::Result<AgentConfig> {
        use anyhow::Context;
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {} (run `storage-agent init --data {}` first)",
                path.display(),
                dir.display()
            )
        })?;
        let config: AgentConfig = toml::from_str(&text)
            .with_context(|| format!("invalid configuration in {}", path.display()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn save(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        let text = toml::to_string_pretty(self)?;
        let path = dir.join(CONFIG_FILE);
        if self.currencies.iter().any(|c| c.bank.is_some()) {
            // A bank token reads the owner's account: the file is the owner's alone.
            use std::io::Write;
            let mut file = node::keyfile::create_private(&path)?;
            file.write_all(text.as_bytes())?;
        } else {
            std::fs::write(path, text)?;
        }
        Ok(())
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.currencies.is_empty(),
            "the configuration accepts no currency: add one with --issuer"
        );
        anyhow::ensure!(self.capacity_bytes > 0, "capacity must be at least 1 byte");
        self.credit
            .check()
            .map_err(|e| anyhow::anyhow!("[credit]: {e}"))?;
        anyhow::ensure!(
            self.capacity_bytes <= i64::MAX as u64 && self.tab_limit <= i64::MAX as u64,
            "capacity and tab_limit must fit in 63 bits"
        );
        let mut seen = std::collections::HashSet::new();
        for c in &self.currencies {
            // Two entries for one issuer would run two payment watchers on one cursor.
            anyhow::ensure!(
                seen.insert(&c.issuer),
                "issuer {} is listed twice",
                c.issuer_url
            );
            protocol::EntityId::parse(&c.issuer).map_err(|_| {
                anyhow::anyhow!("currency {}: issuer is not an entity id", c.issuer_url)
            })?;
            if let Some(b) = &c.bank {
                node::client::check_url(&b.url)
                    .map_err(|e| anyhow::anyhow!("currency {}: bank url: {e}", c.issuer_url))?;
                protocol::name::Name::parse(&b.name)
                    .map_err(|e| anyhow::anyhow!("currency {}: bank name: {e}", c.issuer_url))?;
            }
            anyhow::ensure!(
                [
                    c.storage_per_gib_day,
                    c.write_per_kib,
                    c.read_per_kib,
                    c.contract_min
                ]
                .iter()
                .all(|v| *v <= i64::MAX as u64 / 1024),
                "currency {}: prices are absurdly large",
                c.issuer_url
            );
        }
        Ok(())
    }
}
