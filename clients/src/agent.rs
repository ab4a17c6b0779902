//! The buyer's library (used by backup and cdn): read an agent's offer, form a contract, pay it,
//! put / get / delete objects, hand out retrieval tokens, and audit with an independent check.

use std::sync::Arc;

use bytes::Bytes;
use node::client::{check_status, ClientError, CommandAnswer, SignedClient};

use crate::issuer::IssuerClient;
use crate::paywords::PaywordPayment;
use protocol::market::{self, Contract, Offer};
use protocol::{EntityId, Envelope, KeyPair};
use serde::Deserialize;

pub use protocol::agent::SignedContract;
use protocol::agent::{AuditAnswer, ContractView, ObjectInfo, Retrieval};

pub struct AgentClient {
    signed: SignedClient,
    /// Counters from the clock in microseconds, so a restarted buyer never reuses one.
    counters: node::client::ClockCounter,
}

impl AgentClient {
    pub fn new(http: reqwest::Client, endpoint: &str, key: Arc<KeyPair>) -> AgentClient {
        AgentClient {
            signed: SignedClient::new(http, endpoint, key),
            counters: node::client::ClockCounter::default(),
        }
    }

    pub fn signed(&self) -> &SignedClient {
        &self.signed
    }

    fn next_counter(&self) -> u64 {
        self.counters.next()
    }

    /// The agent's offer, with its signature checked against the agent's own identity.
    pub async fn offer(&self) -> Result<(Envelope, Offer), ClientError> {
        let resp = self
            .signed
            .send("GET", "/v1/offer", Vec::new(), None, &[], 0)
            .await?;
        let env: Envelope = check_status(resp)
            .await?
            .json()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        let (signer, offer): (EntityId, Offer) = env
            .open(market::OFFER_TYPE)
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        let agent = self.signed.audience().await?;
        if &signer != agent || &offer.agent != agent {
            return Err(ClientError::Decode(
                "the offer is not signed by the agent that served it".into(),
            ));
        }
        Ok((env, offer))
    }

    /// Terms at the offer's prices for `block_bytes` over `duration_s` starting now.
    pub fn terms_from_offer(
        offer: &Offer,
        buyer: &EntityId,
        issuer: &EntityId,
        block_bytes: u64,
        duration_s: u64,
        auditors: Vec<EntityId>,
    ) -> Result<Contract, ClientError> {
        let c = offer
            .currency(issuer)
            .ok_or_else(|| ClientError::Config(format!("the agent does not accept {issuer}")))?;
        let start = node::now_s();
        Ok(Contract {
            id: uuid::Uuid::new_v4().to_string(),
            agent: offer.agent.clone(),
            buyer: buyer.clone(),
            issuer: issuer.clone(),
            block_bytes,
            start: market::format_rfc3339(start),
            end: market::format_rfc3339(start + i64::try_from(duration_s).unwrap_or(i64::MAX / 2)),
            contract_price: market::contract_price_min(c, block_bytes, duration_s)
                .map_err(|e| ClientError::Config(e.to_string()))?,
            write_per_kib: c.write_per_kib,
            read_per_kib: c.read_per_kib,
            auditors,
        })
    }

    /// Sign `terms` as the buyer and have the agent countersign them.
    pub async fn propose(
        &self,
        terms: &Contract,
    ) -> Result<CommandAnswer<SignedContract>, ClientError> {
        let env = Envelope::sign_json(self.signed.key(), market::CONTRACT_TYPE, terms)
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        let body = serde_json::to_vec(&env).map_err(|e| ClientError::Decode(e.to_string()))?;
        let answer: CommandAnswer<SignedContract> = self
            .signed
            .command("POST", "/v1/contracts", body, self.next_counter())
            .await?;
        let agent = self.signed.audience().await?;
        if !answer
            .value
            .contract
            .verify_countersignature(agent, &answer.value.agent_signature)
        {
            return Err(ClientError::Decode(
                "the agent's countersignature does not verify".into(),
            ));
        }
        Ok(answer)
    }

    /// Pay first, then propose: the contract is active from its first moment and never counts
    /// against the agent's share for unpaid contracts, so this is how to buy a block larger
    /// than half an agent's capacity. `extra` on top of the price is prepaid credit. The
    /// proposal is retried while the agent has not yet seen the payment, and the answer comes
    /// once the contract is active (or after `PREPAID_WAIT_MS_MAX`, still pending). Buyers
    /// that journal their purchases use [`crate::procure::buy`], which shares the two steps.
    pub async fn buy(
        &self,
        wallet: &IssuerClient,
        terms: &Contract,
        extra: u64,
    ) -> Result<CommandAnswer<SignedContract>, ClientError> {
        pay(wallet, self.signed().base_url(), terms, extra).await?;
        let deadline = prepaid_deadline();
        let mut answer = self.propose_paid(terms, deadline).await?;
        self.wait_active(terms, &mut answer.value, deadline).await;
        Ok(answer)
    }

    /// Propose a contract paid ahead, retried while the agent answers `too_many_pending` (it
    /// has not seen the payment yet) until `deadline`.
    pub async fn propose_paid(
        &self,
        terms: &Contract,
        deadline: std::time::Instant,
    ) -> Result<CommandAnswer<SignedContract>, ClientError> {
        loop {
            match self.propose(terms).await {
                Err(ClientError::Api { code, .. })
                    if code == "too_many_pending" && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(PREPAID_POLL_MS)).await;
                }
                other => return other,
            }
        }
    }

    /// A contract accepted before the agent saw its payment turns active as soon as it does:
    /// wait for that until `deadline` (then `signed.status` stays as it was).
    pub async fn wait_active(
        &self,
        terms: &Contract,
        signed: &mut SignedContract,
        deadline: std::time::Instant,
    ) {
        while signed.status != "active" && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(PREPAID_POLL_MS)).await;
            if self
                .contract(&terms.id)
                .await
                .is_ok_and(|v| v.status == "active")
            {
                signed.status = "active".into();
            }
        }
    }

    pub async fn contract(&self, id: &str) -> Result<ContractView, ClientError> {
        self.signed.query(&format!("/v1/contracts/{id}"), 0).await
    }

    /// [`AgentClient::contract`] carrying paywords, which the agent credits to the contract
    /// first: paying ahead by payword, with no transfer and no wait for a deposit.
    pub async fn contract_paid(
        &self,
        id: &str,
        payment: Option<&PaywordPayment>,
    ) -> Result<ContractView, ClientError> {
        let headers = payment.map(PaywordPayment::headers).unwrap_or_default();
        self.signed
            .query_with_headers(&format!("/v1/contracts/{id}"), &headers)
            .await
    }

    pub async fn put(
        &self,
        id: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<ObjectInfo, ClientError> {
        self.put_paid(id, name, bytes, None).await
    }

    /// [`AgentClient::put`] carrying paywords for its charge (`crate::paywords`).
    pub async fn put_paid(
        &self,
        id: &str,
        name: &str,
        bytes: Vec<u8>,
        payment: Option<&PaywordPayment>,
    ) -> Result<ObjectInfo, ClientError> {
        let path = format!(
            "/v1/contracts/{id}/objects/{}",
            node::client::encode_query_value(name)
        );
        let extra = payment.map(PaywordPayment::headers).unwrap_or_default();
        Ok(self
            .signed
            .command_with_headers(
                "PUT",
                &path,
                bytes,
                "application/octet-stream",
                self.next_counter(),
                &extra,
            )
            .await?
            .value)
    }

    /// Read an object, or the inclusive byte range `range`.
    pub async fn get(
        &self,
        id: &str,
        name: &str,
        range: Option<(u64, u64)>,
    ) -> Result<Bytes, ClientError> {
        self.open(id, name, range)
            .await?
            .bytes()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Start reading an object: the answer once its status is a success, with the body still
    /// to come, so a caller can stream it where it belongs (no whole-body buffer).
    pub async fn open(
        &self,
        id: &str,
        name: &str,
        range: Option<(u64, u64)>,
    ) -> Result<reqwest::Response, ClientError> {
        self.open_paid(id, name, range, None).await
    }

    /// [`AgentClient::open`] carrying paywords for its charge.
    pub async fn open_paid(
        &self,
        id: &str,
        name: &str,
        range: Option<(u64, u64)>,
        payment: Option<&PaywordPayment>,
    ) -> Result<reqwest::Response, ClientError> {
        let path = format!(
            "/v1/contracts/{id}/objects/{}",
            node::client::encode_query_value(name)
        );
        let mut headers: Vec<(&str, String)> = range
            .map(|(a, b)| ("range", format!("bytes={a}-{b}")))
            .into_iter()
            .collect();
        headers.extend(payment.map(PaywordPayment::headers).unwrap_or_default());
        check_status(
            self.signed
                .send(
                    "GET",
                    &path,
                    Vec::new(),
                    Some(self.next_counter()),
                    &headers,
                    0,
                )
                .await?,
        )
        .await
    }

    pub async fn delete(&self, id: &str, name: &str) -> Result<serde_json::Value, ClientError> {
        let path = format!(
            "/v1/contracts/{id}/objects/{}",
            node::client::encode_query_value(name)
        );
        Ok(self
            .signed
            .command_with(
                "DELETE",
                &path,
                Vec::new(),
                "application/json",
                self.next_counter(),
            )
            .await?
            .value)
    }

    pub async fn retrieval(
        &self,
        id: &str,
        object: &str,
        uses: u64,
        expires_in_s: u64,
    ) -> Result<Retrieval, ClientError> {
        let body = serde_json::to_vec(
            &serde_json::json!({"object": object, "uses": uses, "expires_in_s": expires_in_s}),
        )
        .map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok(self
            .signed
            .command(
                "POST",
                &format!("/v1/contracts/{id}/retrievals"),
                body,
                self.next_counter(),
            )
            .await?
            .value)
    }

    /// One token per object in `objects`, in one command (the CDN asks for a window of pieces
    /// at once). Answers them in the same order.
    pub async fn retrievals(
        &self,
        id: &str,
        objects: &[String],
        uses: u64,
        expires_in_s: u64,
    ) -> Result<Vec<Retrieval>, ClientError> {
        let body = serde_json::to_vec(
            &serde_json::json!({"objects": objects, "uses": uses, "expires_in_s": expires_in_s}),
        )
        .map_err(|e| ClientError::Decode(e.to_string()))?;
        #[derive(Deserialize)]
        struct Many {
            retrievals: Vec<Retrieval>,
        }
        let many: Many = self
            .signed
            .command(
                "POST",
                &format!("/v1/contracts/{id}/retrievals"),
                body,
                self.next_counter(),
            )
            .await?
            .value;
        if many.retrievals.len() != objects.len() {
            return Err(ClientError::Decode(
                "the agent answered another number of tokens".into(),
            ));
        }
        Ok(many.retrievals)
    }

    pub async fn audit(
        &self,
        id: &str,
        object: &str,
        leaf: u64,
    ) -> Result<AuditAnswer, ClientError> {
        self.audit_paid(id, object, leaf, None).await
    }

    /// [`AgentClient::audit`] carrying paywords for its charge (past the free audit).
    pub async fn audit_paid(
        &self,
        id: &str,
        object: &str,
        leaf: u64,
        payment: Option<&PaywordPayment>,
    ) -> Result<AuditAnswer, ClientError> {
        let body = serde_json::to_vec(&serde_json::json!({"object": object, "leaf": leaf}))
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        // With a counter: an audit past the free one is charged, and a counter makes it one a
        // captured copy cannot repeat (DESIGN section 3).
        let resp = self
            .signed
            .send(
                "POST",
                &format!("/v1/contracts/{id}/audit"),
                body,
                Some(self.next_counter()),
                &[("content-type", "application/json".to_owned())]
                    .into_iter()
                    .chain(payment.map(PaywordPayment::headers).unwrap_or_default())
                    .collect::<Vec<_>>(),
                0,
            )
            .await?;
        check_status(resp)
            .await?
            .json()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }
}

/// How long [`AgentClient::buy`] waits for the agent to see a payment made ahead.
pub const PREPAID_WAIT_MS_MAX: u64 = 15_000;
/// Pause between its proposals meanwhile.
pub const PREPAID_POLL_MS: u64 = 100;

/// When a purchase paid now stops waiting for the agent to see the payment.
pub fn prepaid_deadline() -> std::time::Instant {
    std::time::Instant::now() + std::time::Duration::from_millis(PREPAID_WAIT_MS_MAX)
}

/// Pay a contract's price (or `extra` on top, as prepaid credit) with `transaction_id` =
/// contract id, to the agent at `endpoint` or the account its descriptor names
/// ([`crate::names::agent_payee`]).
pub async fn pay(
    wallet: &IssuerClient,
    endpoint: &str,
    contract: &Contract,
    extra: u64,
) -> Result<(), ClientError> {
    let amount = contract
        .contract_price
        .checked_add(extra)
        .ok_or_else(|| ClientError::Config("amount overflows".into()))?;
    let payee = crate::names::agent_payee(endpoint, &contract.agent, &contract.issuer).await?;
    wallet
        .transfer_to(&payee, amount, Some(&contract.id))
        .await?;
    Ok(())
}

/// Check an audit answer independently against the root the buyer recorded at upload.
pub fn verify_audit(answer: &AuditAnswer, expected_root_hex: &str, leaf: u64) -> bool {
    use base64::Engine;
    let Some(root) = protocol::merkle::parse_hash(expected_root_hex) else {
        return false;
    };
    let Ok(data) = base64::engine::general_purpose::STANDARD.decode(&answer.leaf_data) else {
        return false;
    };
    let proof: Option<Vec<protocol::merkle::Hash>> = answer
        .proof
        .iter()
        .map(|h| protocol::merkle::parse_hash(h))
        .collect();
    let Some(proof) = proof else { return false };
    answer.root == expected_root_hex
        && protocol::merkle::verify_proof(&root, leaf, answer.leaf_count, &data, &proof)
}
