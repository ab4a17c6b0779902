//! An app's view of its customer's account at a bank (DESIGN 14): the issuer's own
//! `/lcp/v1/*` calls, sent to the bank with `Authorization: Bearer <app token>` instead of a
//! signature. The answers have the issuer's shapes, restricted to the token's customer and
//! currency, so an [`crate::issuer::IssuerClient`] made with
//! [`crate::issuer::IssuerClient::through_bank`] pays and reads deposits here unchanged for
//! its callers.
//!
//! A token stands for money: it is sent only to the bank's URL it was granted at, never
//! logged, and shown in errors by its id (the part before the `.`) only.

use std::time::Duration;

use node::client::{
    body_capped, check_status, check_url, encode_query_value, ClientError, REQUEST_MS_MAX,
};
use protocol::ledger::{BalanceAnswer, DepositsPage, TransferReceipt};
use protocol::name::AccountAnswer;
use serde::de::DeserializeOwned;

use crate::names::Payee;

/// A bank account an app pays from, as its owner configured it: the bank's URL and the app
/// token (`<id>.<secret>`). Kept readable by its owner only: the token spends money.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankLink {
    pub url: String,
    pub token: String,
}

impl std::fmt::Debug for BankLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = self.token.split_once('.').map(|(id, _)| id).unwrap_or("");
        write!(f, "BankLink({}, token {id})", self.url)
    }
}

impl BankLink {
    /// Access to the account with `http`.
    pub fn access(&self, http: reqwest::Client) -> Result<BankAccess, ClientError> {
        BankAccess::new(http, &self.url, &self.token)
    }
}

/// Largest answer read from a bank (a page of deposits is the largest).
const ANSWER_BYTES_MAX: usize = 4 << 20;

/// `Authorization: Bearer` access to one customer's account at one bank.
#[derive(Clone)]
pub struct BankAccess {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl std::fmt::Debug for BankAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret: the token's id only.
        write!(f, "BankAccess({}, token {})", self.base, self.token_id())
    }
}

impl BankAccess {
    /// Access to the account `token` was granted for at `bank_url`. Checks the URL and the
    /// token's form (`<id>.<secret>`), not the token itself: [`BankAccess::account`] does.
    pub fn new(http: reqwest::Client, bank_url: &str, token: &str) -> Result<Self, ClientError> {
        check_url(bank_url)?;
        let token = token.trim();
        if token.split_once('.').is_none_or(|(id, secret)| {
            id.is_empty() || secret.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic())
        }) {
            return Err(ClientError::Config(
                "a bank token looks like <id>.<secret>, as `bank token grant` printed it".into(),
            ));
        }
        Ok(BankAccess {
            http,
            base: bank_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The token's id: safe to show.
    pub fn token_id(&self) -> &str {
        self.token.split_once('.').map(|(id, _)| id).unwrap_or("")
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path_and_query: &str,
        extra_wait_ms: u64,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path_and_query}", self.base);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .timeout(Duration::from_millis(
                REQUEST_MS_MAX.saturating_add(extra_wait_ms),
            ))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.decode(resp).await
    }

    fn unreachable(&self, e: reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            url: self.base.clone(),
            message: e.to_string(),
        }
    }

    async fn decode<T: DeserializeOwned>(&self, resp: reqwest::Response) -> Result<T, ClientError> {
        let resp = check_status(resp).await?;
        let bytes = body_capped(resp, ANSWER_BYTES_MAX).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Decode(format!("{}: not a bank answer: {e}", self.base)))
    }

    /// `GET /lcp/v1/account`: whose token this is, its currency and the allowance left.
    pub async fn account(&self) -> Result<AccountAnswer, ClientError> {
        self.get("/lcp/v1/account", 0).await
    }

    /// `GET /lcp/v1/balance`: the customer's balance in the token's currency.
    pub async fn balance(&self) -> Result<BalanceAnswer, ClientError> {
        self.get("/lcp/v1/balance", 0).await
    }

    /// `GET /lcp/v1/deposits`: the customer's deposits after `after` (the bank's sequence),
    /// held up to `wait_ms` until one arrives.
    pub async fn deposits(
        &self,
        after: u64,
        wait_ms: u64,
        transaction_id: Option<&str>,
    ) -> Result<DepositsPage, ClientError> {
        let mut pq = format!("/lcp/v1/deposits?after={after}&wait_ms={wait_ms}");
        if let Some(t) = transaction_id {
            pq.push_str("&transaction_id=");
            pq.push_str(&encode_query_value(t));
        }
        self.get(&pq, wait_ms).await
    }

    /// `POST /lcp/v1/transfers`: the bank pays `payee` from the customer's account, within the
    /// token's allowance; the answer is the issuer's receipt's shape (`seq` is the issuer's).
    /// The payment carries a fresh `request_id`, and a request the bank may have received
    /// without its answer reaching here is sent once more with the same id: the bank pays it
    /// once and answers it again.
    pub async fn transfer_to(
        &self,
        payee: &Payee,
        amount: u64,
        transaction_id: Option<&str>,
    ) -> Result<TransferReceipt, ClientError> {
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        match self
            .transfer_once(payee, amount, transaction_id, &request_id)
            .await
        {
            Err(ClientError::Unreachable { .. }) => {
                self.transfer_once(payee, amount, transaction_id, &request_id)
                    .await
            }
            other => other,
        }
    }

    async fn transfer_once(
        &self,
        payee: &Payee,
        amount: u64,
        transaction_id: Option<&str>,
        request_id: &str,
    ) -> Result<TransferReceipt, ClientError> {
        let mut body = serde_json::json!({
            "recipient": payee.entity.as_str(),
            "amount": amount,
            "request_id": request_id,
        });
        if let Some(t) = transaction_id {
            body["transaction_id"] = serde_json::Value::from(t);
        }
        if let Some(u) = &payee.userid {
            body["userid"] = serde_json::Value::from(u.as_str());
        }
        let resp = self
            .http
            .post(format!("{}/lcp/v1/transfers", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .timeout(Duration::from_millis(REQUEST_MS_MAX))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.decode(resp).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_for_form_and_never_printed() {
        let http = reqwest::Client::new();
        for bad in ["", "abc", ".secret", "id.", "id.sec ret"] {
            assert!(
                BankAccess::new(http.clone(), "http://127.0.0.1:1", bad).is_err(),
                "{bad:?} was accepted"
            );
        }
        assert!(BankAccess::new(http.clone(), "ftp://x", "a.b").is_err());
        let ok = BankAccess::new(http, "http://127.0.0.1:1/", " t1.s3cret\n").expect("token");
        assert_eq!(ok.token_id(), "t1");
        assert_eq!(ok.base_url(), "http://127.0.0.1:1");
        assert!(!format!("{ok:?}").contains("s3cret"));
    }
}
