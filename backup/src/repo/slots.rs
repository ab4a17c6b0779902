//! Slots changing hands: moving silent agents' slots to spares, buying (renewing, growing,
//! replacing) a slot's contract with fallback to spare agents, adopting it and publishing
//! the new configuration.

use super::*;
use clients::procure::{self, Order, Seller};

impl Repo {
    /// Before a backup: when more slots than a write tolerates ([`Repo::unwritten_max`]) have
    /// agents that do not answer, move every such slot to a spare agent the market offers
    /// ([`Repo::replace_slot`], as `repair` does), so the backup can be made whenever
    /// storage can be had. The old contracts lapse; the moved slots hold no shards of
    /// earlier backups until `repair` rebuilds them. Answers the slots moved; fails when too
    /// many stay unanswering.
    pub async fn move_unanswering_slots(&mut self) -> Result<Vec<usize>, Error> {
        let listing = self.listing().await?;
        let down: Vec<usize> = (0..self.n())
            .filter(|&i| listing.slots[i].is_none())
            .collect();
        if down.len() <= self.unwritten_max() {
            return Ok(Vec::new());
        }
        self.refuse_losing_more_than_m(&down)?;
        let (mut moved, mut stuck) = (Vec::new(), Vec::new());
        for i in down {
            match self.replace_slot(i).await {
                Ok(()) => moved.push(i),
                Err(e) => stuck.push(format!("slot {i}: {e}")),
            }
        }
        if stuck.len() > self.unwritten_max() {
            return Err(Error::Io(format!(
                "{} of the repository's agents do not answer and no spare agent could take \
                 their place ({}); a backup needs all but {} of them",
                stuck.len(),
                stuck.join("; "),
                self.unwritten_max()
            )));
        }
        Ok(moved)
    }

    /// Refuse to give up the contracts of `down` (slots whose agents do not answer) when they
    /// are more than m: new, empty contracts in their place would leave every earlier object
    /// on fewer than k slots, so it would read as written half way and `prune` would delete
    /// it, though the silent agents may well come back with their shards.
    pub fn refuse_losing_more_than_m(&self, down: &[usize]) -> Result<(), Error> {
        let m = self.config.parity_shards;
        if down.len() <= m {
            return Ok(());
        }
        Err(Error::Io(format!(
            "{} of the repository's {} agents do not answer (slots {down:?}): more than the {m} \
             it can lose. Nothing was moved: new contracts in their place would leave the \
             earlier backups on fewer than {} agents. Their contracts still hold the data: \
             try again when they answer",
            down.len(),
            self.n(),
            self.k()
        )))
    }

    /// Replace slot `i` (its agent is gone) with a new agent the market matches, excluding the
    /// repository's other agents: buy a contract like the old one for what is left of its
    /// term, store the key file there, and store the updated config on every slot. Its shards
    /// are written by `repair` next.
    pub async fn replace_slot(&mut self, i: usize) -> Result<(), Error> {
        let old = &self.config.slots[i];
        let duration_s = u64::try_from(old.end_s - now_s()).unwrap_or(0).max(86_400);
        let bought = self.buy_slot(i, duration_s, false, None).await?;
        let signed = self.adopt(i, bought);
        self.publish(&[(i, signed)]).await
    }

    /// Buy a new contract for slot `i` lasting `duration_s`, with the same block size (or
    /// `block`, to grow the repository): from
    /// the slot's own agent when `same_agent` and the market still lists it, else (or when
    /// that agent refuses, e.g. short of space) from an agent the market matches that holds
    /// no other slot. Agents that do not answer or refuse are skipped, up to
    /// [`REPLACE_TRIES_MAX`]. Nothing is written yet: [`Repo::adopt`], then
    /// [`Repo::publish`].
    pub async fn buy_slot(
        &self,
        i: usize,
        duration_s: u64,
        same_agent: bool,
        block: Option<u64>,
    ) -> Result<BoughtSlot, Error> {
        let market = MarketClient::new(self.http.clone(), &self.config.market, self.buyer.clone());
        let market_entity = procure::market_entity(&market)
            .await
            .map_err(remote("asking the market who it is"))?;
        let old = self.config.slots[i].clone();
        let block = block.unwrap_or(old.block_bytes).max(1 << 20);
        if let Some(bought) = self.adoptable(i, block, duration_s, same_agent).await? {
            return Ok(bought);
        }
        let purpose = if same_agent { "renewal" } else { "replacement" };
        let buy = |agent_id: String, endpoint: String| {
            let market_entity = market_entity.clone();
            async move {
                let seller = Seller::open(&self.http, self.buyer.clone(), &agent_id, &endpoint)
                    .await
                    .map_err(remote(format!("reading the offer of {endpoint}")))?;
                // Checked before paying: a payment for a contract the agent then refuses
                // stays with it.
                if !seller.has_room_for(block) {
                    return Err(Error::Io(format!(
                        "{endpoint} has room for blocks of {} bytes, not {block}",
                        seller.offer.block_bytes_max
                    )));
                }
                self.buy_from(i, purpose, seller, block, duration_s, market_entity)
                    .await
            }
        };
        let mut refused = Vec::new();
        if same_agent {
            let listed = market
                .listing_of(&old.agent, Some(&self.config.issuer))
                .await
                .map_err(remote("reading the market's book"))?;
            if let Some(l) = listed {
                match buy(l.agent, l.endpoint).await {
                    Ok(bought) => return Ok(bought),
                    Err(e) => refused.push(format!("{}: {e}", old.endpoint)),
                }
            }
        }
        // The book may still list an agent that just died, or one short of space: skip those
        // that do not answer or refuse.
        let mut exclude: Vec<String> = self.config.slots.iter().map(|s| s.agent.clone()).collect();
        for _ in 0..REPLACE_TRIES_MAX {
            let answer = market
                .match_agents(&protocol::book::MatchRequest {
                    currency: self.config.issuer.clone(),
                    shard_bytes: block,
                    data_shards: 1,
                    total_shards: Some(1),
                    duration_s,
                    expected_read_bytes: 0,
                    max_failure_probability: 0.5,
                    exclude: exclude.clone(),
                })
                .await
                .map_err(|e| match e.code() {
                    Some("cannot_meet_target") => Error::Io(format!(
                        "no spare agent for slot {i}: the market offers none besides the \
                         repository's own (another agent must join the market first){}",
                        tried(&refused)
                    )),
                    _ => remote("finding a replacement agent")(e),
                })?;
            let chosen = answer.agents.into_iter().next().ok_or_else(|| {
                Error::Io(format!(
                    "no spare agent for slot {i}: the market offered none{}",
                    tried(&refused)
                ))
            })?;
            exclude.push(chosen.agent.clone());
            let endpoint = chosen.endpoint.clone();
            match buy(chosen.agent, chosen.endpoint).await {
                Ok(bought) => return Ok(bought),
                Err(e) => refused.push(format!("{endpoint}: {e}")),
            }
        }
        Err(Error::Io(format!(
            "no agent sold a contract for slot {i}{}",
            tried(&refused)
        )))
    }

    /// A contract an earlier repair paid for slot `i` and did not get to use (it failed
    /// between buying and publishing), still fit: accepted and active, with `block` bytes
    /// and at least half of `duration_s` left, on an agent no other slot uses (the slot's own
    /// one only for a renewal).
    async fn adoptable(
        &self,
        i: usize,
        block: u64,
        duration_s: u64,
        same_agent: bool,
    ) -> Result<Option<BoughtSlot>, Error> {
        let left_min = i64::try_from(duration_s / 2).unwrap_or(i64::MAX);
        for p in crate::purchases::load(&self.dir)? {
            let Some(signed) = p.signed.clone() else {
                continue;
            };
            let end = protocol::market::parse_rfc3339(&p.terms.end).unwrap_or(0);
            let taken = self
                .config
                .slots
                .iter()
                .enumerate()
                .any(|(j, s)| s.agent == p.agent && (j != i || !same_agent));
            let fits = p.repository.as_deref() == Some(self.config.repository.as_str())
                && p.slot == i
                && p.terms.block_bytes >= block
                && end.saturating_sub(now_s()) >= left_min
                && !taken;
            if !fits {
                continue;
            }
            let agent = AgentClient::new(self.http.clone(), &p.endpoint, self.buyer.clone());
            if !matches!(agent.contract(&p.terms.id).await, Ok(v) if v.status == "active") {
                continue;
            }
            return Ok(Some(BoughtSlot {
                slot: Slot {
                    agent: p.agent,
                    endpoint: p.endpoint,
                    contract: p.terms.id.clone(),
                    write_per_kib: p.terms.write_per_kib,
                    read_per_kib: p.terms.read_per_kib,
                    block_bytes: p.terms.block_bytes,
                    end_s: end,
                    duration_s,
                },
                agent,
                signed,
            }));
        }
        Ok(None)
    }

    /// Buy a contract for slot `i` from `seller`.
    async fn buy_from(
        &self,
        i: usize,
        purpose: &str,
        seller: Seller,
        block: u64,
        duration_s: u64,
        market_entity: EntityId,
    ) -> Result<BoughtSlot, Error> {
        let issuer =
            EntityId::parse(&self.config.issuer).map_err(|_| Error::Corrupt("issuer id".into()))?;
        let order = Order {
            issuer,
            block_bytes: block,
            duration_s,
            auditors: vec![market_entity],
        };
        // Recorded before it is paid: a failure from here on leaves it in the journal, and
        // the next repair adopts it (see `adoptable`).
        let why = crate::purchases::Purpose {
            purpose: purpose.into(),
            repository: Some(self.config.repository.clone()),
            slot: i,
            // For showing it to people only: a purchase is not stopped by not knowing it.
            currency: clients::issuer::currency_at(&self.config.issuer_url).await,
        };
        let context = format!("a contract for slot {i} from {}", seller.endpoint);
        let bought = crate::purchases::buy(
            &self.dir,
            why,
            &seller,
            &order,
            crate::purchases::first_credit,
            &self.wallet,
            &context,
        )
        .await?;
        crate::purchases::record_active(&self.key_path, self.buyer.clone(), &seller, &bought).await;
        Ok(BoughtSlot {
            slot: Slot {
                agent: seller.agent,
                endpoint: seller.endpoint,
                contract: bought.terms.id.clone(),
                write_per_kib: bought.terms.write_per_kib,
                read_per_kib: bought.terms.read_per_kib,
                block_bytes: block,
                end_s: now_s().saturating_add(i64::try_from(duration_s).unwrap_or(i64::MAX)),
                duration_s,
            },
            agent: seller.client,
            signed: bought.signed,
        })
    }

    /// Use a bought contract for slot `i` from now on (writes go there; the config is saved
    /// by [`Repo::publish`]).
    pub fn adopt(&mut self, i: usize, bought: BoughtSlot) -> SignedContract {
        let old = std::mem::replace(&mut self.config.slots[i], bought.slot);
        self.config.retired.push(old);
        let excess = self.config.retired.len().saturating_sub(RETIRED_MAX);
        self.config.retired.drain(..excess);
        self.agents[i] = Arc::new(bought.agent);
        self.silent[i].store(false, Ordering::Relaxed);
        bought.signed
    }

    /// After slots `new` were adopted: store the key file on each, the updated config on every
    /// slot that answers, register the new contracts with the market, and save the config.
    pub async fn publish(&mut self, new: &[(usize, SignedContract)]) -> Result<(), Error> {
        let market = MarketClient::new(self.http.clone(), &self.config.market, self.buyer.clone());
        let key: KeyFile = read_json(&self.dir.join("key.json"))?;
        let key_bytes = serde_json::to_vec(&key).map_err(|e| Error::Io(e.to_string()))?;
        let sealed = self
            .keys
            .seal(&serde_json::to_vec(&self.config).map_err(|e| Error::Io(e.to_string()))?)?;
        for j in 0..self.n() {
            let fresh = new.iter().any(|(i, _)| *i == j);
            if !fresh && self.silent[j].load(Ordering::Relaxed) {
                continue; // did not answer earlier in this command
            }
            if !fresh
                && self.agents[j]
                    .contract(&self.config.slots[j].contract)
                    .await
                    .is_err()
            {
                continue; // a dead slot: repaired in its turn
            }
            self.put_paying(
                j,
                &self.agents[j],
                &config_name(&self.config.repository),
                sealed.clone(),
            )
            .await?;
        }
        let mut key_roots = Vec::with_capacity(new.len());
        for (i, _) in new {
            key_roots.push(
                self.put_paying(
                    *i,
                    &self.agents[*i],
                    &key_name(&self.config.repository),
                    key_bytes.clone(),
                )
                .await?,
            );
        }
        // The agents hold the new config and key file: the local config follows now, before
        // the market is asked (its registration audits the agent and may fail for reasons of
        // the agent's), so the local and remote configs never disagree.
        self.save_config(&key)?;
        for ((i, signed), key_root) in new.iter().zip(key_roots) {
            // The key file only: it never changes (see `init`).
            let key_object = procure::object(
                &key_name(&self.config.repository),
                &key_root,
                key_bytes.len() as u64,
            );
            let registered = procure::register(&market, signed, vec![key_object]).await;
            // Best effort: the other slots' config names this contract, so a fresh machine
            // still finds it; only the market's audits of it wait for a registration.
            if let Err(e) = registered {
                eprintln!(
                    "warning: the market did not register slot {i}'s new contract ({e}); \
                     the market does not audit that agent until it is registered"
                );
            }
        }
        Ok(())
    }
}
