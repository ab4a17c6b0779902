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
    /// The recipient's customer the transfer names (DESIGN 14): a bank credits that customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userid: Option<String>,
    /// Who paid, by name, when a bank paid for its customer (`alice@bank.example`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_name: Option<String>,
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

/// Transfers one `POST /lcp/v1/transfers/batch` carries at most.
pub const BATCH_TRANSFERS_MAX: usize = 1_000;

/// One transfer of a batch (the sender is the batch's signer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchItem {
    #[serde(alias = "to")]
    pub recipient: String,
    pub amount: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// The recipient's customer (DESIGN 14), as on a single transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userid: Option<String>,
}

/// `POST /lcp/v1/transfers/batch`: up to [`BATCH_TRANSFERS_MAX`] transfers, one counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRequest {
    pub transfers: Vec<BatchItem>,
}

/// What became of one transfer of a batch: `result` is `success` (with `seq` and `fee`) or
/// `error` (with the stable `code` and a `message` the single transfer would have answered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchItemResult {
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl BatchItemResult {
    pub fn succeeded(&self) -> bool {
        self.result == "success"
    }
}

/// The answer to a batch, item by item in order, and the sender's balance after it. Stored
/// whatever the items' outcomes: a repeated batch is answered this again and pays nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAnswer {
    pub results: Vec<BatchItemResult>,
    pub balance: i64,
}
