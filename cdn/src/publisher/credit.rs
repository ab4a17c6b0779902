//! Paying agents: writes and the publisher's own reads paid on `402` (`clients::pay`), and read
//! credit kept ahead of the tokens handed to viewers.

use clients::pay::{pay_with_words, Failure};
use clients::paywords::PaywordPayment;

use super::*;

/// A charged request's failure: the agent's answer as `Upstream`, or the payment's own error.
fn paid_failure(e: Failure<Error>, doing: &str, name: &str) -> Error {
    match e {
        Failure::Agent(e) => Error::Upstream(format!("{doing} {name}: {e}")),
        Failure::Caller(e) => e,
    }
}

fn agent_id(c: &ContractRow) -> Result<EntityId, Error> {
    EntityId::parse(&c.agent).map_err(|_| Error::Upstream("agent id".into()))
}

/// The wallet could not make words (no chain and no funds for one).
fn words_failed(e: clients::wallet::WalletError) -> Error {
    Error::Upstream(format!("paying an agent by payword: {e}"))
}

impl Publisher {
    /// Write an object, topping up the contract's credit when the agent asks for payment
    /// (`clients::pay`: paid once, asked again within one bounded wait).
    pub(super) async fn put_paying(
        &self,
        c: &ContractRow,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(), Error> {
        let agent = self.agent(&c.endpoint);
        let vendor = agent_id(c)?;
        // By payword: this write's own charge. By transfer: a few dozen writes ahead.
        let exact =
            protocol::market::per_kib_charge(c.write_per_kib as u64, bytes.len() as u64).ok();
        let charge = protocol::market::per_kib_charge(
            c.write_per_kib as u64,
            (bytes.len() as u64).saturating_mul(64),
        )
        .unwrap_or(0)
        .max(1024);
        pay_with_words(
            self.words.as_ref(),
            &vendor,
            exact,
            |payment: Option<PaywordPayment>| {
                let (agent, bytes) = (agent.clone(), bytes.clone());
                async move {
                    agent
                        .put_paid(&c.id, name, bytes, payment.as_ref())
                        .await
                        .map_err(Failure::Agent)
                }
            },
            Some(|| self.top_up(c, charge)),
            words_failed,
        )
        .await
        .map(|_| ())
        .map_err(|e| paid_failure(e, "writing", name))
    }

    /// Read an object of the publisher's own contract, paying ahead on `402`.
    pub(super) async fn read_paying(
        &self,
        c: &ContractRow,
        name: &str,
    ) -> Result<bytes::Bytes, Error> {
        let agent = self.agent(&c.endpoint);
        // A top-up's worth of reads ahead.
        let charge =
            protocol::market::per_kib_charge(c.read_per_kib as u64, CREDIT_TOPUP_KIB * 1024)
                .unwrap_or(0)
                .max(1024);
        let vendor = agent_id(c)?;
        pay_with_words(
            self.words.as_ref(),
            &vendor,
            None,
            |payment: Option<PaywordPayment>| {
                let agent = agent.clone();
                async move {
                    let body = agent
                        .open_paid(&c.id, name, None, payment.as_ref())
                        .await
                        .map_err(Failure::Agent)?;
                    body.bytes()
                        .await
                        .map_err(|e| Failure::Agent(ClientError::Decode(e.to_string())))
                }
            },
            Some(|| self.top_up(c, charge)),
            words_failed,
        )
        .await
        .map_err(|e| paid_failure(e, "reading", name))
    }

    /// Pay `amount` to one contract's agent by transfer and count it in the credit estimate.
    pub(super) async fn top_up(&self, c: &ContractRow, amount: u64) -> Result<(), Error> {
        self.top_up_together(&[(c, amount, amount, false)]).await
    }

    /// Make sure each contract's read credit covers `need` more; pay the agents ahead.
    pub(super) async fn cover_reads(
        &self,
        need: &HashMap<String, (ContractRow, u64)>,
    ) -> Result<(), Error> {
        let _one = self.paying.lock().await;
        let mut by_transfer = Vec::new();
        for (id, (c, amount)) in need {
            let known = self
                .credit
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(id)
                .copied();
            let estimate = match known {
                Some(v) => v,
                None => {
                    // An agent that does not answer is neither paid nor waited for: its
                    // replicas get no tokens, and the viewer reads the others.
                    let view = match self.agent(&c.endpoint).contract(id).await {
                        Ok(view) => view,
                        Err(e) => {
                            tracing::warn!(error = %e, contract = %id, "a replica's agent does not answer; not paid");
                            continue;
                        }
                    };
                    self.credit
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(id.clone(), view.credit);
                    view.credit
                }
            };
            let low =
                protocol::market::per_kib_charge(c.read_per_kib as u64, CREDIT_LOW_KIB * 1024)
                    .unwrap_or(0);
            let after = estimate - i64::try_from(*amount).unwrap_or(i64::MAX);
            if after < i64::try_from(low).unwrap_or(i64::MAX) {
                let bulk = protocol::market::per_kib_charge(
                    c.read_per_kib as u64,
                    CREDIT_TOPUP_KIB * 1024,
                )
                .unwrap_or(0)
                .max(*amount);
                match &self.words {
                    // Words credit the contract as the agent answers: no wait.
                    Some(words) => {
                        let payment = words.pay(&agent_id(c)?, bulk).await.map_err(words_failed)?;
                        self.agent(&c.endpoint)
                            .contract_paid(id, payment.as_ref())
                            .await
                            .map_err(upstream("paying an agent ahead by payword"))?;
                        let mut credit = self.credit.lock().unwrap_or_else(|p| p.into_inner());
                        *credit.entry(c.id.clone()).or_insert(0) +=
                            i64::try_from(bulk).unwrap_or(0);
                    }
                    // By transfer: gathered, and paid together below.
                    None => by_transfer.push((c, bulk, *amount, after < 0)),
                }
            }
            let mut credit = self.credit.lock().unwrap_or_else(|p| p.into_inner());
            *credit.entry(id.clone()).or_insert(0) -= i64::try_from(*amount).unwrap_or(0);
        }
        self.top_up_together(&by_transfer).await
    }

    /// Pay every top-up a window needs by transfer in one batch command (issue 21), then
    /// wait, for those whose tokens would otherwise bounce, until the agent has seen it.
    async fn top_up_together(
        &self,
        top_ups: &[(&ContractRow, u64, u64, bool)],
    ) -> Result<(), Error> {
        if top_ups.is_empty() {
            return Ok(());
        }
        // The publisher buys and pays in its wallet's currency only.
        let issuer = self
            .wallet
            .signed()
            .audience()
            .await
            .map_err(upstream("the issuer's id"))?;
        let agents = top_ups
            .iter()
            .map(|(c, ..)| agent_id(c))
            .collect::<Result<Vec<EntityId>, Error>>()?;
        let batch: Vec<clients::pay::TopUp<'_>> = top_ups
            .iter()
            .zip(&agents)
            .map(|((c, bulk, ..), agent)| clients::pay::TopUp {
                agent: clients::pay::AgentRef {
                    entity: agent,
                    endpoint: &c.endpoint,
                    issuer,
                },
                contract: &c.id,
                amount: *bulk,
            })
            .collect();
        let outcomes = clients::pay::top_up_many(&self.wallet, &batch)
            .await
            .map_err(upstream("paying agents"))?;
        let mut refused = None;
        for ((c, bulk, ..), outcome) in top_ups.iter().zip(&outcomes) {
            match outcome {
                Ok(()) => {
                    let mut credit = self.credit.lock().unwrap_or_else(|p| p.into_inner());
                    *credit.entry(c.id.clone()).or_insert(0) += i64::try_from(*bulk).unwrap_or(0);
                }
                Err(e) => refused = Some(format!("paying an agent: {e}")),
            }
        }
        for ((c, _, amount, must_wait), outcome) in top_ups.iter().zip(&outcomes) {
            if *must_wait && outcome.is_ok() {
                self.wait_for_credit(c, *amount).await;
            }
        }
        match refused {
            Some(e) => Err(Error::Upstream(e)),
            None => Ok(()),
        }
    }

    pub(super) async fn wait_for_credit(&self, c: &ContractRow, amount: u64) {
        let deadline = Instant::now() + Duration::from_millis(CREDIT_WAIT_MS_MAX);
        let agent = self.agent(&c.endpoint);
        while Instant::now() < deadline {
            if let Ok(v) = agent.contract(&c.id).await {
                if v.credit >= i64::try_from(amount).unwrap_or(i64::MAX) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
