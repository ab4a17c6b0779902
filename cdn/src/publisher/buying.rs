//! Contracts: bought through the market's match (reads weighed in) and `clients::procure`,
//! recorded, and listed while they last.

use clients::procure::{self, BuyError, NoJournal, Order, Seller};

use super::*;

impl Publisher {
    pub(super) async fn live_contracts(&self) -> Result<Vec<ContractRow>, Error> {
        let now = now_s();
        self.db
            .run(move |conn| {
                Ok::<_, Error>(
                    contracts::table
                        .filter(contracts::end_s.gt(now + 3600))
                        .order(contracts::id)
                        .load::<ContractRow>(conn)?,
                )
            })
            .await
    }

    /// Hold `options.agents` live contracts: buy the missing ones through the market's match,
    /// with the reads a CDN expects priced in, paid first with initial read credit.
    pub async fn ensure_contracts(&self) -> Result<usize, Error> {
        let _one = self.buying.lock().await;
        let have = self.live_contracts().await?;
        if have.len() >= self.options.agents {
            return Ok(have.len());
        }
        let want = self.options.agents - have.len();
        let duration_s = self.options.contract_days * 86_400;
        let request = MatchRequest {
            currency: self.currency.to_string(),
            shard_bytes: self.options.block_bytes,
            data_shards: 1,
            total_shards: Some(want as u64),
            duration_s,
            // A CDN reads each byte many times: weigh read prices heavily.
            expected_read_bytes: self.options.block_bytes.saturating_mul(20),
            max_failure_probability: 1e-3,
            exclude: have.iter().map(|c| c.agent.clone()).collect(),
        };
        let answer = match self.market.match_agents(&request).await {
            Ok(a) => a,
            Err(e) if e.code() == Some("cannot_meet_target") && !have.is_empty() => {
                return Ok(have.len());
            }
            Err(e) => return Err(Error::NoStorage(format!("the market's match failed: {e}"))),
        };
        let order = Order {
            issuer: self.currency.clone(),
            block_bytes: self.options.block_bytes,
            duration_s,
            auditors: vec![procure::market_entity(&self.market)
                .await
                .map_err(upstream("the market"))?],
        };
        // Initial read credit on top of the price.
        let credit = |terms: &protocol::market::Contract| {
            protocol::market::per_kib_charge(terms.read_per_kib, CREDIT_TOPUP_KIB * 1024)
                .unwrap_or(0)
        };
        let buys = answer.agents.iter().map(|chosen| {
            let order = &order;
            async move {
                let seller = Seller::open(
                    &self.http,
                    self.key.clone(),
                    &chosen.agent,
                    &chosen.endpoint,
                )
                .await
                .map_err(upstream("an agent's offer"))?;
                let bought = procure::buy(&seller, order, credit, &self.wallet, &mut NoJournal)
                    .await
                    .map_err(|e| match e {
                        BuyError::Terms(e) => upstream("contract terms")(e),
                        e => Error::Upstream(e.to_string()),
                    })?;
                self.record_contract(&chosen.endpoint, &bought.terms, &bought.signed)
                    .await?;
                self.credit
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(
                        bought.terms.id.clone(),
                        i64::try_from(bought.credit).unwrap_or(0),
                    );
                Ok::<_, Error>(())
            }
        });
        let mut bought = 0;
        for r in join_all(buys).await {
            match r {
                Ok(()) => bought += 1,
                Err(e) => tracing::warn!(error = %e, "a contract purchase failed"),
            }
        }
        if bought > 0 {
            self.event("", format!("bought {bought} contracts through the market"));
        }
        let total = have.len() + bought;
        if total == 0 {
            return Err(Error::NoStorage("no contract could be bought".into()));
        }
        Ok(total)
    }

    pub(super) async fn record_contract(
        &self,
        endpoint: &str,
        terms: &protocol::market::Contract,
        signed: &SignedContract,
    ) -> Result<(), Error> {
        let signed_json =
            serde_json::to_string(signed).map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let end_s = protocol::market::parse_rfc3339(&terms.end).unwrap_or(0);
        let row = (
            contracts::id.eq(terms.id.clone()),
            contracts::agent.eq(terms.agent.to_string()),
            contracts::endpoint.eq(endpoint.to_owned()),
            contracts::signed.eq(signed_json),
            contracts::read_per_kib.eq(i64_of(terms.read_per_kib)?),
            contracts::write_per_kib.eq(i64_of(terms.write_per_kib)?),
            contracts::block_bytes.eq(i64_of(terms.block_bytes)?),
            contracts::used_bytes.eq(0i64),
            contracts::end_s.eq(end_s),
        );
        self.db
            .run(move |conn| {
                diesel::insert_into(contracts::table)
                    .values(row)
                    .execute(conn)?;
                Ok::<_, Error>(())
            })
            .await
    }
}
