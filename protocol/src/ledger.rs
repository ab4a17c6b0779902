//! The issuer's wire types (DESIGN section 4): receipts, deposit pages, balances and the
//! currency an issuer's descriptor states.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferReceipt {
    pub result: String,
    pub seq: u64,
    pub fee: u64,
    pub balance: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deposit {
    pub seq: u64,
    pub from: String,
    pub amount: u64,
    pub transaction_id: Option<String>,
    /// Unix milliseconds when the transfer was executed.
    pub time: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositsPage {
    pub deposits: Vec<Deposit>,
    pub next: u64,
    pub balance: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceAnswer {
    pub balance: i64,
    pub currency: String,
}

/// A currency as its issuer's descriptor states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Currency {
    pub code: String,
    #[serde(default)]
    pub name: String,
    pub decimals: u32,
}

impl Currency {
    /// `amount` minor units for people: `7.90 LCU`.
    pub fn show(&self, amount: impl Into<i128>) -> String {
        crate::format_amount(amount.into(), self.decimals, &self.code)
    }
}
