//! `backup init`: choose the currency, match k + m agents, buy a contract from each through
//! [`clients::procure`] (recorded in the purchase journal before paying), store the key file
//! and the sealed config on every slot, register the contracts with the market.

use super::*;
use clients::agent::AgentClient;
use clients::market::MarketClient;
use clients::procure::{self, Order, Seller};
use protocol::book::MatchRequest;

#[derive(Debug, Clone)]
pub struct InitOptions {
    pub market: String,
    pub data_shards: usize,
    pub parity_shards: usize,
    /// Space bought on each agent.
    pub slot_bytes: u64,
    pub duration_s: u64,
    pub max_failure_probability: f64,
    /// The issuer (entity id) whose currency pays the contracts; `None`: the currency most
    /// online agents in the book accept.
    pub currency: Option<String>,
}

/// The currency a new repository pays in: `wanted` (an issuer id) when given, else, of the
/// currencies online agents accept, the most accepted one the wallet holds money in (or the
/// most accepted one when it holds none). (Not the cheapest offer's: one cheap agent in a
/// currency nobody else takes would make every match fail.)
async fn choose_currency(
    offers: &[protocol::book::Listing],
    wanted: Option<&str>,
    payer: &repo::Wallet,
    http: &reqwest::Client,
) -> Result<protocol::market::OfferCurrency, Error> {
    let candidates = currencies_by_acceptance(offers, wanted)?;
    if candidates.len() > 1 {
        for c in &candidates {
            let held = payer.client(http, &c.issuer_url).balance().await;
            if held.is_ok_and(|b| b.balance > 0) {
                return Ok(c.clone());
            }
        }
    }
    candidates
        .into_iter()
        .next()
        .ok_or_else(|| Error::Io("the market has no online agents yet".into()))
}

/// The currencies online agents accept, the most accepted first (`wanted` alone when given).
fn currencies_by_acceptance(
    offers: &[protocol::book::Listing],
    wanted: Option<&str>,
) -> Result<Vec<protocol::market::OfferCurrency>, Error> {
    let mut counts: Vec<(protocol::market::OfferCurrency, usize)> = Vec::new();
    for listing in offers.iter().filter(|l| l.online) {
        let Ok((_, offer)) = listing
            .offer
            .open::<protocol::market::Offer>(protocol::market::OFFER_TYPE)
        else {
            continue;
        };
        for c in offer.currencies {
            match counts
                .iter_mut()
                .find(|(known, _)| known.issuer == c.issuer)
            {
                Some((_, n)) => *n += 1,
                None => counts.push((c, 1)),
            }
        }
    }
    if let Some(issuer) = wanted {
        return counts
            .into_iter()
            .find(|(c, _)| c.issuer.as_str() == issuer)
            .map(|(c, _)| vec![c])
            .ok_or_else(|| {
                Error::Usage(format!(
                    "no online agent in the market accepts currency {issuer}"
                ))
            });
    }
    // Stable: among equally common currencies, the one listed first (the cheapest offer's).
    counts.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    Ok(counts.into_iter().map(|(c, _)| c).collect())
}

/// Times `init` asks the market again after a matched agent did not answer or had no room.
const MATCH_TRIES_MAX: usize = 3;
/// Room a slot needs besides one pack's shard: the key file, the config, index and snapshot
/// objects, locks.
pub const SLOT_METADATA_BYTES: u64 = 1 << 20;

/// The smallest `--slot-bytes` that holds one pack of the largest size (a full pack plus
/// one more chunk) split k ways, and the repository's small objects: a smaller repository
/// could not store a single backup.
pub fn slot_bytes_min(data_shards: usize) -> u64 {
    let pack_max = (PACK_BYTES_TARGET as u64).saturating_add(u64::from(CHUNK_MAX));
    pack_max
        .div_ceil(data_shards.max(1) as u64)
        .saturating_add(SLOT_METADATA_BYTES)
}

/// One contract `init` bought (or adopted from an earlier, failed `init`).
#[derive(Debug, Clone, Serialize)]
pub struct InitSlot {
    pub endpoint: String,
    pub agent: String,
    pub contract: String,
    /// The contract's price and the write credit paid with it, in minor units.
    pub price: u64,
    pub credit: u64,
    /// Bought by an earlier `init` in this config directory that failed, and used now.
    pub adopted: bool,
}

/// What `init` did.
#[derive(Debug, Clone, Serialize)]
pub struct InitSummary {
    pub repository: String,
    pub slots: Vec<InitSlot>,
    /// Paid now (prices and credit of the contracts not adopted), in minor units.
    pub paid: u64,
    /// The currency's descriptor (code and decimals), for showing amounts.
    pub currency: protocol::ledger::Currency,
}

/// Contracts an earlier `init` in `dir` paid for and could not use, still fit for this one:
/// accepted by their agent and active, of this block size and currency, with at least nine
/// tenths of the term left, one per agent. At most `n`.
async fn adoptable(
    dir: &Path,
    options: &InitOptions,
    issuer: &protocol::EntityId,
    buyer: &std::sync::Arc<protocol::KeyPair>,
    http: &reqwest::Client,
    n: usize,
) -> Result<Vec<(Slot, clients::agent::SignedContract)>, Error> {
    let mut out: Vec<(Slot, clients::agent::SignedContract)> = Vec::new();
    let term_min = i64::try_from(options.duration_s / 10 * 9).unwrap_or(i64::MAX);
    for p in crate::purchases::load(dir)? {
        let Some(signed) = p.signed.clone() else {
            continue;
        };
        let end = protocol::market::parse_rfc3339(&p.terms.end).unwrap_or(0);
        let fits = p.purpose == "init"
            && p.terms.block_bytes == options.slot_bytes
            && &p.terms.issuer == issuer
            && end.saturating_sub(now_s()) >= term_min
            && !out.iter().any(|(s, _)| s.agent == p.agent);
        if out.len() >= n || !fits {
            continue;
        }
        let agent = AgentClient::new(http.clone(), &p.endpoint, buyer.clone());
        if !matches!(agent.contract(&p.terms.id).await, Ok(v) if v.status == "active") {
            continue;
        }
        out.push((
            Slot {
                agent: p.agent.clone(),
                endpoint: p.endpoint.clone(),
                contract: p.terms.id.clone(),
                write_per_kib: p.terms.write_per_kib,
                read_per_kib: p.terms.read_per_kib,
                block_bytes: p.terms.block_bytes,
                end_s: end,
                duration_s: options.duration_s,
            },
            signed,
        ));
    }
    Ok(out)
}

/// `backup init`: buy a contract on each of k + m agents the market matches, store the key
/// file and the sealed config on each, register them with the market. Every purchase is
/// recorded in the config directory before it is paid ([`crate::purchases`]); contracts an
/// earlier failed `init` there paid for are used first.
pub async fn init(
    dir: &Path,
    options: &InitOptions,
    password: &str,
    payer: &repo::Wallet,
    http: reqwest::Client,
) -> Result<InitSummary, Error> {
    let buyer = payer.key.clone();
    if dir.join("repo.json").exists() {
        return Err(Error::Usage(format!(
            "{} already holds a repository; use another --config-dir",
            dir.display()
        )));
    }
    let (k, m) = (options.data_shards, options.parity_shards);
    if k == 0 || m == 0 || k + m > 32 {
        return Err(Error::Usage(
            "--data-shards and --parity-shards must be at least 1, and at most 32 together".into(),
        ));
    }
    if options.duration_s == 0 {
        return Err(Error::Usage("--duration-s must be more than 0".into()));
    }
    // Checked before anything is bought: a block too small for one pack made every backup
    // fail after six contracts were paid.
    let slot_min = slot_bytes_min(k);
    if options.slot_bytes < slot_min {
        return Err(Error::Usage(format!(
            "--slot-bytes {} is too small: each slot must hold a shard of a pack and the \
             repository's small objects, at least {slot_min} bytes with {k} data shards",
            options.slot_bytes
        )));
    }
    if !(options.max_failure_probability > 0.0 && options.max_failure_probability < 1.0) {
        return Err(Error::Usage(
            "--max-failure-probability must be between 0 and 1".into(),
        ));
    }
    node::client::check_url(&options.market).map_err(|e| Error::Usage(format!("--market: {e}")))?;
    let market = MarketClient::new(http.clone(), &options.market, buyer.clone());
    let market_entity = procure::market_entity(&market)
        .await
        .map_err(remote("asking the market who it is"))?;
    let offers = market
        .offers(None)
        .await
        .map_err(remote("reading the market's book"))?;
    let currency = choose_currency(&offers, options.currency.as_deref(), payer, &http).await?;
    let wallet = payer.client(&http, &currency.issuer_url);
    let money = wallet
        .currency()
        .await
        .map_err(remote("reading the issuer's currency"))?;
    let adopted = adoptable(dir, options, &currency.issuer, &buyer, &http, k + m).await?;
    let wanted = k + m - adopted.len();
    // The market may match an agent that has just gone offline, or filled up since its
    // offer: it is left out and the market asked again, a few times. Nothing is paid until
    // every chosen agent answered with room for the block.
    let mut exclude: Vec<String> = adopted.iter().map(|(s, _)| s.agent.clone()).collect();
    let mut tries = 0;
    let chosen = loop {
        if wanted == 0 {
            break Vec::new();
        }
        let answer = market
            .match_agents(&MatchRequest {
                currency: currency.issuer.to_string(),
                shard_bytes: options.slot_bytes,
                // With contracts adopted, the rest: as many data shards as still fit
                // (the durability of the whole set is what the adopted agents leave).
                data_shards: wanted.saturating_sub(m).max(1) as u64,
                total_shards: Some(wanted as u64),
                duration_s: options.duration_s,
                expected_read_bytes: 0,
                max_failure_probability: options.max_failure_probability,
                exclude: exclude.clone(),
            })
            .await
            .map_err(|e| match e.code() {
                Some("cannot_meet_target") => Error::Io(format!(
                    "the market has no {wanted} agents that together meet the target for \
                     blocks of {} bytes (answering: {e}); try a smaller --slot-bytes, fewer \
                     shards, a higher --max-failure-probability, or wait for more agents",
                    options.slot_bytes
                )),
                _ => remote("matching agents")(e),
            })?;
        let mut answering = Vec::new();
        for chosen in answer.agents {
            match Seller::open(&http, buyer.clone(), &chosen.agent, &chosen.endpoint).await {
                Ok(seller)
                    if seller.has_room_for(options.slot_bytes) || tries >= MATCH_TRIES_MAX =>
                {
                    answering.push(seller)
                }
                Ok(_) => exclude.push(chosen.agent),
                Err(e) if repo::unreachable(&e) && tries < MATCH_TRIES_MAX => {
                    exclude.push(chosen.agent)
                }
                Err(e) => {
                    return Err(remote(format!("reading the offer of {}", chosen.endpoint))(
                        e,
                    ))
                }
            }
        }
        if answering.len() == wanted {
            break answering;
        }
        tries += 1;
    };
    let repository = uuid();
    let keys = Keys::generate()?;
    let key_file = KeyFile::wrap(&keys, &repository, password)?;
    let mut slots = Vec::new();
    let mut signed = Vec::new();
    let mut summary_slots = Vec::new();
    for (slot, s) in adopted {
        let terms = s
            .terms()
            .map_err(|e| clients::ClientError::Decode(e.to_string()))
            .map_err(remote("reading an adopted contract"))?;
        summary_slots.push(InitSlot {
            endpoint: slot.endpoint.clone(),
            agent: slot.agent.clone(),
            contract: slot.contract.clone(),
            price: terms.contract_price,
            credit: 0,
            adopted: true,
        });
        slots.push(slot);
        signed.push(s);
    }
    let mut paid = 0u64;
    let order = Order {
        issuer: currency.issuer.clone(),
        block_bytes: options.slot_bytes,
        duration_s: options.duration_s,
        auditors: vec![market_entity],
    };
    for seller in &chosen {
        let why = crate::purchases::Purpose {
            purpose: "init".into(),
            repository: None,
            slot: slots.len(),
            currency: Some(money.clone()),
        };
        let context = format!("a contract from {}", seller.endpoint);
        let bought = crate::purchases::buy(
            dir,
            why,
            seller,
            &order,
            crate::purchases::first_credit,
            &wallet,
            &context,
        )
        .await?;
        crate::purchases::record_active(&payer.path, payer.key.clone(), seller, &bought).await;
        paid = paid.saturating_add(bought.amount());
        summary_slots.push(InitSlot {
            endpoint: seller.endpoint.clone(),
            agent: seller.agent.clone(),
            contract: bought.terms.id.clone(),
            price: bought.terms.contract_price,
            credit: bought.credit,
            adopted: false,
        });
        slots.push(Slot {
            agent: seller.agent.clone(),
            endpoint: seller.endpoint.clone(),
            contract: bought.terms.id.clone(),
            write_per_kib: bought.terms.write_per_kib,
            read_per_kib: bought.terms.read_per_kib,
            block_bytes: options.slot_bytes,
            end_s: bought.end_s(),
            duration_s: options.duration_s,
        });
        signed.push(bought.signed);
    }
    let config = RepoConfig {
        repository: repository.clone(),
        market: options.market.clone(),
        issuer: currency.issuer.to_string(),
        issuer_url: currency.issuer_url.clone(),
        data_shards: k,
        parity_shards: m,
        slots,
        retired: Vec::new(),
    };
    let repo = Repo::new(dir, config, keys, payer, http);
    let key_bytes = serde_json::to_vec(&key_file).map_err(|e| Error::Io(e.to_string()))?;
    let key_size = key_bytes.len() as u64;
    let key_roots = repo
        .put_replicated(&repo::key_name(&repository), key_bytes)
        .await?;
    let sealed = repo
        .keys
        .seal(&serde_json::to_vec(&repo.config).map_err(|e| Error::Io(e.to_string()))?)?;
    repo.put_replicated(&repo::config_name(&repository), sealed)
        .await?;
    for (i, s) in signed.iter().enumerate() {
        // Only the key file, which never changes: the config is rewritten by every repair and
        // renewal, and an audit against its first root would then fail an honest agent.
        // Packs are audited by `backup check` (their roots are in the index, which the
        // market never sees).
        let key_object = procure::object(&repo::key_name(&repository), &key_roots[i], key_size);
        procure::register(&market, s, vec![key_object])
            .await
            .map_err(remote("registering a contract with the market"))?;
    }
    repo.save_config(&key_file)?;
    Ok(InitSummary {
        repository,
        slots: summary_slots,
        paid,
        currency: money,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listing of one agent accepting the currencies of `issuers`, in that order.
    fn listing(issuers: &[&protocol::KeyPair], online: bool) -> protocol::book::Listing {
        let agent = protocol::KeyPair::generate().expect("key");
        let offer = protocol::market::Offer {
            agent: agent.entity().clone(),
            endpoint: "http://127.0.0.1:1".into(),
            issued_at: protocol::market::format_rfc3339(now_s()),
            expires_at: protocol::market::format_rfc3339(now_s() + 600),
            free_bytes: 1 << 30,
            block_bytes_max: 1 << 30,
            duration_s_max: 86_400,
            currencies: issuers
                .iter()
                .map(|i| protocol::market::OfferCurrency {
                    issuer: i.entity().clone(),
                    issuer_url: format!("http://issuer-{}", &i.entity().as_str()[8..14]),
                    storage_per_gib_day: 1,
                    write_per_kib: 1,
                    read_per_kib: 1,
                    contract_min: 1,
                    pay_to: None,
                })
                .collect(),
        };
        protocol::book::Listing {
            agent: agent.entity().to_string(),
            endpoint: offer.endpoint.clone(),
            offer: protocol::Envelope::sign_json(&agent, protocol::market::OFFER_TYPE, &offer)
                .expect("sign"),
            currency: issuers[0].entity().to_string(),
            p_fail: 0.1,
            reference_price: 1,
            adjusted_price: 1.0,
            audits_passed: 0,
            audits_failed: 0,
            online,
            vetted: false,
            double_spender: false,
            forked: false,
            vouch: 0.0,
        }
    }

    #[test]
    fn a_new_repository_pays_in_the_currency_most_agents_take() {
        let (a, b) = (
            protocol::KeyPair::generate().expect("key"),
            protocol::KeyPair::generate().expect("key"),
        );
        // The cheapest offer (listed first) is the only one in currency b, and an offline
        // agent's does not count.
        let book = vec![
            listing(&[&b], true),
            listing(&[&a], true),
            listing(&[&a], true),
            listing(&[&b], false),
            listing(&[&b], false),
        ];
        let ranked = currencies_by_acceptance(&book, None).expect("currencies");
        assert_eq!(ranked[0].issuer, *a.entity(), "the most accepted first");
        assert_eq!(ranked[1].issuer, *b.entity());
        let asked = currencies_by_acceptance(&book, Some(b.entity().as_str())).expect("b");
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].issuer, *b.entity());
        let nobody = protocol::KeyPair::generate().expect("key");
        assert!(matches!(
            currencies_by_acceptance(&book, Some(nobody.entity().as_str())),
            Err(Error::Usage(_))
        ));
        assert!(currencies_by_acceptance(&[listing(&[&a], false)], None)
            .expect("none")
            .is_empty());
    }
}
