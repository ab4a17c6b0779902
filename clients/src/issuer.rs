//! The issuer client: a wallet's view of one issuer (DESIGN section 4).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use node::client::{
    check_url, encode_query_value, http_client, ClientError, ClientOptions, CommandAnswer,
    CounterStore, SignedClient,
};
use protocol::ledger::{BalanceAnswer, Currency, DepositsPage, TransferReceipt};
use protocol::payword::{
    ChainPurchase, ChainReceipt, ChainStatus, FraudsPage, Payword, RedemptionsAnswer,
    RedemptionsRequest,
};
use protocol::{EntityId, KeyPair};

/// Longest a CLI waits for an issuer's descriptor just to show amounts in its currency.
pub const CURRENCY_WAIT_MS_MAX: u64 = 2_000;

/// The currency of the issuer at `issuer_url`, or `None` when it does not answer within
/// [`CURRENCY_WAIT_MS_MAX`] (callers then show minor units): for human output only.
pub async fn currency_at(issuer_url: &str) -> Option<Currency> {
    let http = http_client(&ClientOptions::default()).ok()?;
    let key = Arc::new(KeyPair::generate().ok()?);
    IssuerClient::new(http, issuer_url, key, None)
        .currency_for_people()
        .await
}

/// A wallet's view of one issuer.
#[derive(Clone)]
pub struct IssuerClient {
    signed: SignedClient,
    counters: Option<CounterStore>,
    /// Set: payments, the balance and deposits go through the customer's bank with an app
    /// token (DESIGN 14) instead of being signed by `signed`'s key, which still signs what is
    /// not payment.
    bank: Option<crate::bank::BankAccess>,
}

impl IssuerClient {
    /// `counters`: where to persist counters; `None` for callers that manage counters themselves
    /// (they must pass them to [`IssuerClient::transfer_with_counter`]).
    pub fn new(
        http: reqwest::Client,
        issuer_url: &str,
        key: Arc<KeyPair>,
        counters: Option<CounterStore>,
    ) -> Self {
        IssuerClient {
            signed: SignedClient::new(http, issuer_url, key),
            counters,
            bank: None,
        }
    }

    /// This wallet paying through a bank: transfers, the balance and deposits are the
    /// token's customer's at the bank (DESIGN 14); the key still signs everything else.
    pub fn through_bank(mut self, bank: crate::bank::BankAccess) -> Self {
        self.bank = Some(bank);
        self
    }

    /// The bank this wallet pays through, if any.
    pub fn bank(&self) -> Option<&crate::bank::BankAccess> {
        self.bank.as_ref()
    }

    /// Refuse `what` through a bank, which offers plain transfers only.
    fn key_needed(&self, what: &str) -> Result<(), ClientError> {
        match &self.bank {
            Some(b) => Err(ClientError::Config(format!(
                "{what} needs a wallet key: the bank at {} pays plain transfers only",
                b.base_url()
            ))),
            None => Ok(()),
        }
    }

    /// Who pays, for messages: the bank account's token, or the key's entity.
    pub fn payer(&self) -> String {
        match &self.bank {
            Some(b) => format!("the account of token {} at {}", b.token_id(), b.base_url()),
            None => self.signed.key().entity().to_string(),
        }
    }

    /// A wallet from a key file, with counters persisted beside it.
    pub fn from_key_file(
        issuer_url: &str,
        key_path: &Path,
        options: &ClientOptions,
    ) -> anyhow::Result<Self> {
        check_url(issuer_url)?;
        let key = node::keyfile::load(key_path)?;
        Ok(IssuerClient::new(
            http_client(options)?,
            issuer_url,
            Arc::new(key),
            Some(CounterStore::beside_key(key_path)),
        ))
    }

    pub fn signed(&self) -> &SignedClient {
        &self.signed
    }

    /// See [`SignedClient::without_receipt_checks`].
    pub fn without_receipt_checks(self) -> Self {
        IssuerClient {
            signed: self.signed.without_receipt_checks(),
            counters: self.counters,
            bank: self.bank,
        }
    }

    pub async fn transfer(
        &self,
        to: &EntityId,
        amount: u64,
        transaction_id: Option<&str>,
    ) -> Result<CommandAnswer<TransferReceipt>, ClientError> {
        self.transfer_to(
            &crate::names::Payee::entity(to.clone()),
            amount,
            transaction_id,
        )
        .await
    }

    /// The next counter for a command to this issuer, reserved durably beside the key.
    pub async fn next_counter(&self) -> Result<u64, ClientError> {
        let store = self
            .counters
            .clone()
            .ok_or_else(|| ClientError::Config("this client has no counter store".into()))?;
        let audience = self.signed.audience().await?.to_string();
        tokio::task::spawn_blocking(move || store.reserve(&audience, 1))
            .await
            .map_err(|e| ClientError::Config(e.to_string()))?
    }

    /// `POST /lcp/v1/chains`: buy a payword chain of `length` words of `unit` whose root is
    /// `root` (DESIGN 10). The wallet (`crate::wallet`) makes the chain and keeps its seed.
    pub async fn buy_chain(
        &self,
        purchase: &ChainPurchase,
    ) -> Result<CommandAnswer<ChainReceipt>, ClientError> {
        self.key_needed("buying payword chains")?;
        let counter = self.next_counter().await?;
        let bytes = serde_json::to_vec(purchase).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.signed
            .command("POST", "/lcp/v1/chains", bytes, counter)
            .await
    }

    /// `POST /lcp/v1/redemptions`: cash paywords this key received as a vendor.
    pub async fn redeem(
        &self,
        redemptions: Vec<Payword>,
    ) -> Result<CommandAnswer<RedemptionsAnswer>, ClientError> {
        let counter = self.next_counter().await?;
        self.redeem_with_counter(counter, redemptions).await
    }

    /// [`IssuerClient::redeem`] with a counter the caller reserved (and may send again).
    pub async fn redeem_with_counter(
        &self,
        counter: u64,
        redemptions: Vec<Payword>,
    ) -> Result<CommandAnswer<RedemptionsAnswer>, ClientError> {
        let bytes = serde_json::to_vec(&RedemptionsRequest { redemptions })
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        self.signed
            .command("POST", "/lcp/v1/redemptions", bytes, counter)
            .await
    }

    /// `GET /lcp/v1/chains/{chain}`: the touchstone and what was redeemed.
    pub async fn chain(&self, chain: &str) -> Result<ChainStatus, ClientError> {
        let path = format!("/lcp/v1/chains/{}", encode_query_value(chain));
        self.signed.query(&path, 0).await
    }

    /// `GET /lcp/v1/frauds?after=S`: double-spend proofs after a cursor.
    pub async fn frauds(&self, after: u64) -> Result<FraudsPage, ClientError> {
        self.signed
            .query(&format!("/lcp/v1/frauds?after={after}"), 0)
            .await
    }

    pub async fn transfer_with_counter(
        &self,
        counter: u64,
        to: &EntityId,
        amount: u64,
        transaction_id: Option<&str>,
    ) -> Result<CommandAnswer<TransferReceipt>, ClientError> {
        let payee = crate::names::Payee::entity(to.clone());
        self.transfer_to_with_counter(counter, &payee, amount, transaction_id)
            .await
    }

    /// Pay a [`crate::names::Payee`]: an entity, or a bank's customer (`userid`, DESIGN 14).
    pub async fn transfer_to(
        &self,
        payee: &crate::names::Payee,
        amount: u64,
        transaction_id: Option<&str>,
    ) -> Result<CommandAnswer<TransferReceipt>, ClientError> {
        if self.bank.is_some() {
            // The bank numbers its own command to the issuer.
            return self
                .transfer_to_with_counter(0, payee, amount, transaction_id)
                .await;
        }
        let counter = self.next_counter().await?;
        self.transfer_to_with_counter(counter, payee, amount, transaction_id)
            .await
    }

    /// [`IssuerClient::transfer_to`] with the counter given (a retry sends the same).
    /// Through a bank the counter is not used and the answer carries no receipt: the bank's
    /// answer is over TLS, not signed, and the issuer's receipt is the bank's.
    pub async fn transfer_to_with_counter(
        &self,
        counter: u64,
        payee: &crate::names::Payee,
        amount: u64,
        transaction_id: Option<&str>,
    ) -> Result<CommandAnswer<TransferReceipt>, ClientError> {
        if let Some(bank) = &self.bank {
            let value = bank.transfer_to(payee, amount, transaction_id).await?;
            return Ok(CommandAnswer {
                value,
                counter,
                receipt: String::new(),
            });
        }
        let mut body = serde_json::json!({"recipient": payee.entity.as_str(), "amount": amount});
        if let Some(t) = transaction_id {
            body["transaction_id"] = serde_json::Value::from(t);
        }
        if let Some(u) = &payee.userid {
            body["userid"] = serde_json::Value::from(u.as_str());
        }
        let bytes = serde_json::to_vec(&body).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.signed
            .command("POST", "/lcp/v1/transfers", bytes, counter)
            .await
    }

    /// `POST /lcp/v1/transfers/batch`: `items` from this wallet under one counter, each
    /// answered on its own (issue 21).
    pub async fn transfer_batch(
        &self,
        items: &[protocol::ledger::BatchItem],
    ) -> Result<CommandAnswer<protocol::ledger::BatchAnswer>, ClientError> {
        let counter = self.next_counter().await?;
        self.transfer_batch_with_counter(counter, items).await
    }

    /// [`IssuerClient::transfer_batch`] with the counter given (a retry sends the same).
    pub async fn transfer_batch_with_counter(
        &self,
        counter: u64,
        items: &[protocol::ledger::BatchItem],
    ) -> Result<CommandAnswer<protocol::ledger::BatchAnswer>, ClientError> {
        self.key_needed("batch transfers")?;
        let body = protocol::ledger::BatchRequest {
            transfers: items.to_vec(),
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.signed
            .command("POST", "/lcp/v1/transfers/batch", bytes, counter)
            .await
    }

    /// The issuer's currency from its descriptor; an error that says what the server is when
    /// it is not an issuer (a market, an agent), instead of a later "no such endpoint".
    /// [`IssuerClient::currency`], or `None` when the issuer does not answer within
    /// [`CURRENCY_WAIT_MS_MAX`] (callers then show minor units): for human output only.
    pub async fn currency_for_people(&self) -> Option<Currency> {
        tokio::time::timeout(Duration::from_millis(CURRENCY_WAIT_MS_MAX), self.currency())
            .await
            .ok()?
            .ok()
    }

    pub async fn currency(&self) -> Result<Currency, ClientError> {
        let d = self.signed.descriptor().await?;
        let role = d["role"].as_str().unwrap_or("unknown");
        if role != "issuer" {
            return Err(ClientError::Config(format!(
                "{} is a {role}, not an issuer: give the issuer's URL",
                self.signed.base_url()
            )));
        }
        serde_json::from_value(d["currency"].clone()).map_err(|e| {
            ClientError::Decode(format!(
                "the issuer's descriptor has no usable currency: {e}"
            ))
        })
    }

    pub async fn balance(&self) -> Result<BalanceAnswer, ClientError> {
        if let Some(bank) = &self.bank {
            return bank.balance().await;
        }
        self.signed.query("/lcp/v1/balance", 0).await
    }

    pub async fn deposits(
        &self,
        after: u64,
        wait_ms: u64,
        transaction_id: Option<&str>,
    ) -> Result<DepositsPage, ClientError> {
        if let Some(bank) = &self.bank {
            return bank.deposits(after, wait_ms, transaction_id).await;
        }
        let mut pq = format!("/lcp/v1/deposits?after={after}&wait_ms={wait_ms}");
        if let Some(t) = transaction_id {
            pq.push_str("&transaction_id=");
            pq.push_str(&encode_query_value(t));
        }
        self.signed.query(&pq, wait_ms).await
    }
}
