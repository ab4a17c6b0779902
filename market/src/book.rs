//! The market's domain over its database: the offer book, matching, registered contracts,
//! buyers' reports and agents' reputations. Handlers and the auditor call these; nothing here
//! knows HTTP.
//!
//! Invariants:
//! - Every offer in the book verified: signed by its agent, who also signed the request that
//!   posted it, and its endpoint answered `/.well-known/lcp` as that agent within
//!   [`ENDPOINT_RECHECK_S`].
//! - Listings and matches only use offers that have not expired (`offer_expires_s > now`): an
//!   agent that stops heartbeating drops out when its last offer expires.
//! - Reputation changes are read-modify-write under `reputation_lock`, one at a time, so
//!   concurrent audits and reports never lose an update.
//! - A report counts once per (buyer, counter), and one good and one bad report per contract
//!   count at all, each weighted by what the contract was worth.
//! - A registered Merkle root was verified with the agent (one audit) before it was kept, and
//!   is never replaced.
//! - Matches choose only agents that are online (answered their last probe or heartbeat).

use std::sync::Arc;

use db::{AnyConnection, Database};
use diesel::prelude::*;
use protocol::market::{self, Contract, Offer, OfferCurrency};
use protocol::{EntityId, Envelope, KeyPair};

use crate::error::Error;
use crate::reliability::{contract_worth, report_weight, Outcome, Reputation, AUDIT_CONTRADICTS_S};
use crate::schema::{agents, counted_reports, registered, registered_objects, reports};
use crate::select::{self, Candidate};

/// An issuer that did not say its currency is asked again after this long (see
/// `Market::currency_at`).
pub const CURRENCY_RETRY_S: i64 = 300;
/// Issuer URLs whose currency the market remembers; past it the memory starts over.
const CURRENCIES_KNOWN_MAX: usize = 1_024;
/// Longest a match waits for a chosen agent to say who it is before leaving it out.
pub const MATCH_PROBE_WAIT_MS_MAX: u64 = 2_000;
/// Times a match is made again after chosen agents did not answer.
pub const MATCH_RECHECKS_MAX: usize = 3;
/// An endpoint that answered as its agent is not asked again for this long.
pub const ENDPOINT_RECHECK_S: i64 = 600;
/// Longest wait for an agent's `/.well-known/lcp` when checking an offer.
pub const ENDPOINT_WAIT_MS_MAX: u64 = 3_000;
/// Longest validity an offer may claim (agents re-issue theirs every heartbeat).
pub const OFFER_VALIDITY_S_MAX: i64 = 86_400;
/// How far in the future an offer's `issued_at` may be (clock skew).
pub const ISSUED_SKEW_S_MAX: i64 = 300;
/// Currencies one offer may list.
pub const OFFER_CURRENCIES_MAX: usize = 16;
/// Largest free space an offer may claim (1 EiB): beyond is an error or a lie.
pub const OFFER_BYTES_MAX: u64 = 1 << 60;
/// Longest endpoint URL.
pub const ENDPOINT_CHARS_MAX: usize = 512;
/// Objects one registration may list.
pub const REGISTERED_OBJECTS_MAX: usize = 10_000;
/// New objects one registration may add: each is audited once through the agent before its
/// root is kept, and an agent answers a listed auditor 8 audits per contract a minute.
pub const REGISTRATION_AUDITS_MAX: usize = 8;
/// Longest a report's free-text detail may be.
pub const REPORT_DETAIL_CHARS_MAX: usize = 1_000;

pub use node::now_s;

#[derive(Queryable, Insertable, Clone, Debug)]
#[diesel(table_name = agents)]
pub struct AgentRow {
    pub entity: String,
    pub endpoint: String,
    pub network: String,
    pub offer: String,
    pub offer_expires_s: i64,
    pub last_heartbeat_s: i64,
    pub endpoint_checked_s: i64,
    pub alpha: f64,
    pub beta: f64,
    pub audits_passed: i64,
    pub audits_failed: i64,
    pub online: i32,
    pub first_seen_s: i64,
}

impl AgentRow {
    pub fn reputation(&self) -> Reputation {
        Reputation {
            alpha: self.alpha,
            beta: self.beta,
            audits_passed: self.audits_passed.unsigned_abs(),
            audits_failed: self.audits_failed.unsigned_abs(),
            online: self.online != 0,
        }
    }

    /// The stored offer, already verified when it was posted.
    pub fn offer(&self) -> Option<(Envelope, Offer)> {
        let env: Envelope = serde_json::from_str(&self.offer).ok()?;
        let (_, offer) = env.open::<Offer>(market::OFFER_TYPE).ok()?;
        Some((env, offer))
    }
}

pub use protocol::book::{
    Chosen, Considered, Listing, MatchAnswer, MatchRequest, RegisteredContract, RegisteredObject,
    Registration, Report,
};

/// A registered contract the auditor may challenge.
#[derive(Debug, Clone)]
pub struct AuditTarget {
    pub agent: String,
    pub endpoint: String,
    pub contract: String,
    pub objects: Vec<RegisteredObject>,
}

pub struct Market {
    pub key: Arc<KeyPair>,
    pub db: Database,
    pub http: reqwest::Client,
    /// Choices may put two agents on one network (devnet, a LAN).
    pub same_network_ok: bool,
    reputation_lock: tokio::sync::Mutex<()>,
    endpoint: std::sync::OnceLock<String>,
    /// Audits each agent put off (`429`) in a row (see `auditor::AUDIT_DEFERRALS_MAX`).
    audit_deferrals: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    /// Currencies (code, decimals) by issuer URL, for the page. An issuer that did not answer
    /// is remembered too (with when), and asked again only after [`CURRENCY_RETRY_S`]: the
    /// URLs come from agents' offers, and a page view must not fan out to them each time.
    currencies: std::sync::Mutex<
        std::collections::HashMap<String, (Option<protocol::ledger::Currency>, i64)>,
    >,
}

impl Market {
    /// The currency of the issuer at `issuer_url` (asked once, bounded), for showing amounts.
    pub async fn currency_at(&self, issuer_url: &str) -> Option<protocol::ledger::Currency> {
        let now = now_s();
        let known = self
            .currencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(issuer_url)
            .cloned();
        match known {
            Some((Some(c), _)) => return Some(c),
            Some((None, when)) if now - when < CURRENCY_RETRY_S => return None,
            _ => {}
        }
        let asked = clients::issuer::currency_at(issuer_url).await;
        let mut map = self.currencies.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CURRENCIES_KNOWN_MAX {
            map.clear();
        }
        map.insert(issuer_url.to_owned(), (asked.clone(), now));
        asked
    }

    pub fn new(
        key: Arc<KeyPair>,
        db: Database,
        http: reqwest::Client,
        same_network_ok: bool,
    ) -> Market {
        Market {
            key,
            db,
            http,
            same_network_ok,
            reputation_lock: tokio::sync::Mutex::new(()),
            endpoint: std::sync::OnceLock::new(),
            currencies: std::sync::Mutex::new(std::collections::HashMap::new()),
            audit_deferrals: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Count an audit `agent` put off (`deferred`), or reset the count when it answered;
    /// answers the deferrals in a row so far.
    pub fn count_deferral(&self, agent: &str, deferred: bool) -> u32 {
        let mut map = self
            .audit_deferrals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if deferred {
            let n = map.entry(agent.to_owned()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        } else {
            map.remove(agent);
            0
        }
    }

    pub fn set_endpoint(&self, url: &str) {
        let _ = self.endpoint.set(url.trim_end_matches('/').to_owned());
    }

    pub fn endpoint(&self) -> &str {
        self.endpoint.get().map(String::as_str).unwrap_or("")
    }

    /// Take an agent's signed offer (a heartbeat). `sender` signed the request.
    pub async fn post_offer(
        &self,
        sender: &EntityId,
        envelope: Envelope,
    ) -> Result<serde_json::Value, Error> {
        let (signer, offer): (EntityId, Offer) =
            envelope.open(market::OFFER_TYPE).map_err(|e| match e {
                protocol::EnvelopeError::InvalidPayload(m) => Error::InvalidOffer(m),
                other => Error::BadOfferSignature(other.to_string()),
            })?;
        if signer != offer.agent || &signer != sender {
            return Err(Error::BadOfferSignature(
                "the offer must be signed by its agent, who must also sign the request".into(),
            ));
        }
        let now = now_s();
        let expires_s = check_offer(&offer, now)?;
        let network = network_of(&offer.endpoint)?;
        let entity = offer.agent.to_string();
        let known = {
            let entity = entity.clone();
            self.db
                .run(move |conn| {
                    Ok::<_, Error>(
                        agents::table
                            .find(&entity)
                            .first::<AgentRow>(conn)
                            .optional()?,
                    )
                })
                .await?
        };
        let fresh_check = known.as_ref().is_some_and(|a| {
            a.endpoint == offer.endpoint && now - a.endpoint_checked_s < ENDPOINT_RECHECK_S
        });
        let checked_s = if fresh_check {
            known.as_ref().map_or(now, |a| a.endpoint_checked_s)
        } else {
            self.check_endpoint(&offer.endpoint, &offer.agent).await?;
            now
        };
        let offer_json =
            serde_json::to_string(&envelope).map_err(|e| Error::InvalidOffer(e.to_string()))?;
        let row = AgentRow {
            entity: entity.clone(),
            endpoint: offer.endpoint.clone(),
            network,
            offer: offer_json,
            offer_expires_s: expires_s,
            last_heartbeat_s: now,
            endpoint_checked_s: checked_s,
            alpha: Reputation::default().alpha,
            beta: Reputation::default().beta,
            audits_passed: 0,
            audits_failed: 0,
            online: 1,
            first_seen_s: now,
        };
        let _rep = self.reputation_lock.lock().await;
        let vetted = self
            .db
            .run(move |conn| {
                db::write_transaction(conn, |conn| -> Result<bool, Error> {
                    let existing: Option<AgentRow> =
                        agents::table.find(&row.entity).first(conn).optional()?;
                    match existing {
                        Some(a) => {
                            // A heartbeat proves the agent is up: it is online again.
                            diesel::update(agents::table.find(&row.entity))
                                .set((
                                    agents::endpoint.eq(&row.endpoint),
                                    agents::network.eq(&row.network),
                                    agents::offer.eq(&row.offer),
                                    agents::offer_expires_s.eq(row.offer_expires_s),
                                    agents::last_heartbeat_s.eq(row.last_heartbeat_s),
                                    agents::endpoint_checked_s.eq(row.endpoint_checked_s),
                                    agents::online.eq(1),
                                ))
                                .execute(conn)?;
                            Ok(a.reputation().vetted())
                        }
                        None => {
                            diesel::insert_into(agents::table)
                                .values(&row)
                                .execute(conn)?;
                            Ok(false)
                        }
                    }
                })
            })
            .await?;
        Ok(serde_json::json!({
            "agent": entity,
            "expires_at": market::format_rfc3339(expires_s),
            "vetted": vetted,
        }))
    }

    /// Ask `endpoint` who it is; it must be `agent`.
    async fn check_endpoint(&self, endpoint: &str, agent: &EntityId) -> Result<(), Error> {
        let url = format!("{}/.well-known/lcp", endpoint.trim_end_matches('/'));
        let resp = self
            .http
            .get(&url)
            .timeout(std::time::Duration::from_millis(ENDPOINT_WAIT_MS_MAX))
            .send()
            .await
            .map_err(|e| Error::EndpointUnreachable(format!("{url}: {e}")))?;
        if !resp.status().is_success() {
            return Err(Error::EndpointUnreachable(format!(
                "{url}: HTTP {}",
                resp.status()
            )));
        }
        let doc: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| Error::EndpointUnreachable(format!("{url}: not a descriptor: {e}")))?;
        let answered = doc.get("entity").and_then(|v| v.as_str()).unwrap_or("");
        if answered != agent.as_str() {
            return Err(Error::EndpointMismatch(if answered.is_empty() {
                "no entity".into()
            } else {
                answered.to_owned()
            }));
        }
        Ok(())
    }

    /// Every agent row, live offers or not (for the auditor and the page).
    pub async fn agents(&self) -> Result<Vec<AgentRow>, Error> {
        self.db
            .run(|conn| Ok::<_, Error>(agents::table.order(agents::entity).load(conn)?))
            .await
    }

    /// The book: live offers, in `currency` when given (else each offer's first currency),
    /// cheapest reliability-adjusted price first.
    pub async fn offers(&self, currency: Option<&str>) -> Result<Vec<Listing>, Error> {
        let now = now_s();
        let rows = self.agents().await?;
        let mut out = Vec::new();
        for row in rows.into_iter().filter(|r| r.offer_expires_s > now) {
            let Some((env, offer)) = row.offer() else {
                continue;
            };
            let cur = match currency {
                Some(c) => offer.currencies.iter().find(|x| x.issuer.as_str() == c),
                None => offer.currencies.first(),
            };
            let Some(cur) = cur else {
                continue;
            };
            let rep = row.reputation();
            let p_fail = rep.p_fail(market::REFERENCE_DURATION_S);
            let reference_price = market::request_price(
                cur,
                market::REFERENCE_BYTES,
                market::REFERENCE_DURATION_S,
                0,
            )
            .unwrap_or(u64::MAX);
            out.push(Listing {
                agent: row.entity.clone(),
                endpoint: row.endpoint.clone(),
                offer: env,
                currency: cur.issuer.to_string(),
                p_fail,
                reference_price,
                adjusted_price: select::adjusted_price(reference_price, p_fail),
                audits_passed: rep.audits_passed,
                audits_failed: rep.audits_failed,
                online: rep.online,
                vetted: rep.vetted(),
            });
        }
        out.sort_by(|a, b| a.adjusted_price.total_cmp(&b.adjusted_price));
        Ok(out)
    }

    /// `POST /v1/match` (DESIGN section 6).
    /// Choose agents for `req`, each of them answering now: the chosen are asked who they are
    /// (at once, [`MATCH_PROBE_WAIT_MS_MAX`] each), and one that does not answer is left out
    /// and the choice made again without it, at most [`MATCH_RECHECKS_MAX`] times. So an
    /// agent that died since the last probe round is not sold (DESIGN section 6).
    pub async fn match_agents(&self, req: &MatchRequest) -> Result<MatchAnswer, Error> {
        let mut req = req.clone();
        for _ in 0..MATCH_RECHECKS_MAX {
            let answer = self.match_once(&req).await?;
            let checks = answer.agents.iter().map(|a| async move {
                let entity = EntityId::parse(&a.agent).ok()?;
                let alive = tokio::time::timeout(
                    std::time::Duration::from_millis(MATCH_PROBE_WAIT_MS_MAX),
                    self.check_endpoint(&a.endpoint, &entity),
                )
                .await;
                match alive {
                    Ok(Ok(())) => None,
                    _ => Some(a.agent.clone()),
                }
            });
            let dead: Vec<String> = futures_util::future::join_all(checks)
                .await
                .into_iter()
                .flatten()
                .collect();
            if dead.is_empty() {
                return Ok(answer);
            }
            // Left out of this match only: anyone may ask for a match, so a silence seen here
            // does not count against the agent's reputation (the probe rounds judge that).
            for agent in dead {
                tracing::info!(
                    agent,
                    "a matched agent does not answer: matched again without it"
                );
                req.exclude.push(agent);
            }
        }
        // Agents kept dying under us; the last choice is as fresh as the probes allow.
        self.match_once(&req).await
    }

    async fn match_once(&self, req: &MatchRequest) -> Result<MatchAnswer, Error> {
        let k = check_match(req)?;
        let now = now_s();
        let rows = self.agents().await?;
        let mut known_currency = false;
        let mut left_out = LeftOut::default();
        let mut pool: Vec<(AgentRow, Envelope, Offer, u64)> = Vec::new();
        for row in rows.into_iter().filter(|r| r.offer_expires_s > now) {
            let Some((env, offer)) = row.offer() else {
                continue;
            };
            let Some(cur) = offer
                .currencies
                .iter()
                .find(|c| c.issuer.as_str() == req.currency)
            else {
                continue;
            };
            known_currency = true;
            // An agent that missed its last probe cannot take a contract: never chosen, and
            // not a candidate, whatever the target (DESIGN section 6). A heartbeat brings it
            // back.
            if row.online == 0 {
                left_out.offline += 1;
                continue;
            }
            if req.exclude.contains(&row.entity) {
                continue;
            }
            if offer.block_bytes_max < req.shard_bytes {
                left_out.small_blocks += 1;
                left_out.largest_block = left_out.largest_block.max(offer.block_bytes_max);
                continue;
            }
            if offer.duration_s_max < req.duration_s {
                left_out.short_durations += 1;
                left_out.longest_duration_s = left_out.longest_duration_s.max(offer.duration_s_max);
                continue;
            }
            let Some(price) = price_for(cur, req) else {
                continue;
            };
            pool.push((row, env, offer, price));
        }
        if !known_currency {
            return Err(Error::UnknownCurrency(req.currency.clone()));
        }
        let candidates: Vec<Candidate> = pool
            .iter()
            .map(|(row, _, _, price)| {
                let rep = row.reputation();
                Candidate {
                    agent: row.entity.clone(),
                    p_fail: rep.p_fail(req.duration_s),
                    price: *price,
                    network: row.network.clone(),
                    vetted: rep.vetted(),
                }
            })
            .collect();
        let request = select::Request {
            data_shards: k,
            total_shards: req.total_shards.map(|n| n as usize),
            max_failure_probability: req.max_failure_probability,
            same_network_ok: self.same_network_ok,
        };
        let considered: Vec<Considered> = candidates
            .iter()
            .map(|c| Considered {
                agent: c.agent.clone(),
                p_fail: c.p_fail,
                price: c.price,
                vetted: c.vetted,
            })
            .collect();
        let chosen_of = |choice: &select::Choice| -> Vec<Chosen> {
            choice
                .chosen
                .iter()
                .map(|&i| Chosen {
                    agent: pool[i].0.entity.clone(),
                    endpoint: pool[i].0.endpoint.clone(),
                    offer: pool[i].1.clone(),
                    p_fail: candidates[i].p_fail,
                    price: candidates[i].price,
                })
                .collect()
        };
        // Selection is CPU work (up to EXHAUSTIVE_SUBSETS_MAX subsets per n): off the workers.
        let outcome = {
            let (candidates, request) = (candidates.clone(), request.clone());
            tokio::task::spawn_blocking(move || select::select(&candidates, &request))
                .await
                .map_err(|e| Error::Db(db::DbError::Task(e.to_string())))?
        };
        match outcome {
            select::Outcome::Met(choice) => Ok(MatchAnswer {
                agents: chosen_of(&choice),
                failure_probability: choice.failure_probability,
                total_price: choice.total_price,
                candidates: considered,
            }),
            select::Outcome::CannotMeet(best) => Err(Error::CannotMeetTarget {
                target: req.max_failure_probability,
                best: best.as_ref().map(|b| b.failure_probability),
                left_out: left_out.explain(req),
                details: serde_json::json!({
                    "best_failure_probability": best.as_ref().map(|b| b.failure_probability),
                    "best": best.as_ref().map(|b| serde_json::json!({
                        "agents": chosen_of(b),
                        "total_price": b.total_price,
                    })),
                    "candidates": considered,
                    "left_out": {
                        "offline": left_out.offline,
                        "blocks_too_small": left_out.small_blocks,
                        "largest_block_bytes": left_out.largest_block,
                        "durations_too_short": left_out.short_durations,
                        "longest_duration_s": left_out.longest_duration_s,
                    },
                }),
            }),
        }
    }

    /// `POST /v1/contracts`: register a dual-signed contract (sent by its buyer) for auditing.
    pub async fn register(
        &self,
        sender: &EntityId,
        reg: Registration,
    ) -> Result<serde_json::Value, Error> {
        let (signer, contract): (EntityId, Contract) = reg
            .contract
            .open(market::CONTRACT_TYPE)
            .map_err(|e| match e {
                protocol::EnvelopeError::InvalidPayload(m) => Error::InvalidContract(m),
                other => Error::BadContractSignature(other.to_string()),
            })?;
        if signer != contract.buyer {
            return Err(Error::BadContractSignature(
                "not signed by the contract's buyer".into(),
            ));
        }
        if &contract.buyer != sender {
            return Err(Error::NotYourContract);
        }
        if !reg
            .contract
            .verify_countersignature(&contract.agent, &reg.agent_signature)
        {
            return Err(Error::BadContractSignature(
                "the agent's countersignature does not verify".into(),
            ));
        }
        if !contract.auditors.contains(self.key.entity()) {
            return Err(Error::MarketNotAuditor);
        }
        let (_, end_s) = market::contract_window(&contract)
            .map_err(|e| Error::InvalidContract(e.to_string()))?;
        check_objects(&reg.objects)?;
        let agent = contract.agent.to_string();
        let endpoint = {
            let agent = agent.clone();
            self.db
                .run(move |conn| {
                    Ok::<_, Error>(
                        agents::table
                            .find(&agent)
                            .select(agents::endpoint)
                            .first::<String>(conn)
                            .optional()?,
                    )
                })
                .await?
        }
        .ok_or_else(|| Error::UnknownAgent(agent.clone()))?;
        let envelope = serde_json::to_string(&reg.contract)
            .map_err(|e| Error::InvalidContract(e.to_string()))?;
        let id = contract.id.clone();
        // A registered root is never replaced: the same root again is nothing new, another
        // one is refused. Every new root is checked with the agent before it is kept.
        let known = {
            let id = id.clone();
            self.db.run(move |conn| objects_of(conn, &id)).await?
        };
        let mut fresh: Vec<RegisteredObject> = Vec::new();
        for o in reg.objects {
            match known.iter().find(|k| k.name == o.name) {
                Some(k) if k.merkle_root == o.merkle_root => {}
                Some(_) => return Err(Error::RootConflict { name: o.name }),
                None if fresh.iter().any(|f| f.name == o.name) => {
                    return Err(Error::InvalidContract(format!(
                        "object {} is listed twice",
                        o.name
                    )))
                }
                None => fresh.push(o),
            }
        }
        if fresh.len() > REGISTRATION_AUDITS_MAX {
            return Err(Error::InvalidContract(format!(
                "{} new objects: a registration may add at most {REGISTRATION_AUDITS_MAX} (each \
                 is audited once); register the rest a minute later",
                fresh.len()
            )));
        }
        for o in &fresh {
            self.verify_root(&endpoint, &id, o).await?;
        }
        let (buyer, sig) = (contract.buyer.to_string(), reg.agent_signature);
        let count = fresh.len();
        let now = now_s();
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| -> Result<(), Error> {
                    let exists = registered::table
                        .find(&id)
                        .count()
                        .get_result::<i64>(conn)?
                        > 0;
                    if exists {
                        // Whoever registered an id first owns it: a registration of another
                        // contract under that id must not attach objects to it.
                        let stored: String = registered::table
                            .find(&id)
                            .select(registered::envelope)
                            .first(conn)?;
                        if stored != envelope {
                            return Err(Error::InvalidContract(
                                "another contract is registered under this id".into(),
                            ));
                        }
                    }
                    if !exists {
                        diesel::insert_into(registered::table)
                            .values((
                                registered::id.eq(&id),
                                registered::agent.eq(&agent),
                                registered::buyer.eq(&buyer),
                                registered::envelope.eq(&envelope),
                                registered::agent_signature.eq(&sig),
                                registered::end_s.eq(end_s),
                                registered::registered_s.eq(now),
                                registered::audit_passed_s.eq(if fresh.is_empty() {
                                    0
                                } else {
                                    now
                                }),
                            ))
                            .execute(conn)?;
                    } else if !fresh.is_empty() {
                        diesel::update(registered::table.find(&id))
                            .set(registered::audit_passed_s.eq(now))
                            .execute(conn)?;
                    }
                    // Checked again inside the transaction: a concurrent registration may have
                    // kept a root for one of these names meanwhile.
                    let known = objects_of(conn, &id)?;
                    for o in &fresh {
                        match known.iter().find(|k| k.name == o.name) {
                            Some(k) if k.merkle_root == o.merkle_root => continue,
                            Some(_) => {
                                return Err(Error::RootConflict {
                                    name: o.name.clone(),
                                })
                            }
                            None => {}
                        }
                        diesel::insert_into(registered_objects::table)
                            .values((
                                registered_objects::contract_id.eq(&id),
                                registered_objects::name.eq(&o.name),
                                registered_objects::merkle_root.eq(&o.merkle_root),
                                registered_objects::leaf_count.eq(to_i64(o.leaf_count)?),
                                registered_objects::size.eq(to_i64(o.size)?),
                            ))
                            .execute(conn)?;
                    }
                    Ok(())
                })
            })
            .await?;
        Ok(serde_json::json!({ "contract": contract.id, "objects": count }))
    }

    /// Audit `object` once through the agent's audit endpoint, as the auditor does: the root
    /// the buyer claims is kept only if the agent's proof of a random leaf verifies against
    /// it. A false claim says nothing about the agent, so nothing goes to its reputation.
    async fn verify_root(
        &self,
        endpoint: &str,
        contract: &str,
        object: &RegisteredObject,
    ) -> Result<(), Error> {
        use crate::auditor::Answer;
        let leaf = crate::auditor::random_below(object.leaf_count);
        let unverified = |why: String| Error::RootUnverified {
            name: object.name.clone(),
            why,
        };
        match crate::auditor::ask(
            self,
            endpoint,
            contract,
            &object.name,
            (&object.merkle_root, object.leaf_count),
            leaf,
        )
        .await
        {
            Answer::Verified => Ok(()),
            Answer::Mismatch => Err(unverified(format!(
                "the proof of leaf {leaf} leads to another root, or the object has another \
                 number of leaves than {}",
                object.leaf_count
            ))),
            Answer::Refused { status, code } => Err(unverified(format!(
                "the agent answered HTTP {status} {code}"
            ))),
            Answer::Deferred(m) => Err(Error::AgentBusy(m)),
            Answer::Unreachable(m) => Err(Error::EndpointUnreachable(m)),
        }
    }

    /// `GET /v1/contracts`: the contracts `buyer` registered that are still running, with their
    /// agents and objects. How a buyer on a fresh machine finds where its data is.
    pub async fn contracts_of(&self, buyer: &EntityId) -> Result<Vec<RegisteredContract>, Error> {
        let buyer = buyer.to_string();
        let now = now_s();
        self.db
            .run(move |conn| {
                let rows: Vec<(String, String, String, String, String, i64)> = registered::table
                    .inner_join(agents::table.on(agents::entity.eq(registered::agent)))
                    .filter(registered::buyer.eq(&buyer))
                    .filter(registered::end_s.gt(now))
                    .order(registered::registered_s)
                    .select((
                        registered::id,
                        registered::agent,
                        agents::endpoint,
                        registered::envelope,
                        registered::agent_signature,
                        registered::end_s,
                    ))
                    .load(conn)?;
                let mut out = Vec::with_capacity(rows.len());
                for (id, agent, endpoint, envelope, agent_signature, end_s) in rows {
                    let objects = objects_of(conn, &id)?;
                    out.push(RegisteredContract {
                        id,
                        agent,
                        endpoint,
                        contract: serde_json::from_str(&envelope)
                            .map_err(|e| Error::InvalidContract(e.to_string()))?,
                        agent_signature,
                        end: market::format_rfc3339(end_s),
                        objects,
                    });
                }
                Ok::<_, Error>(out)
            })
            .await
    }

    /// `POST /v1/reports`: a buyer's outcome report on one of its registered contracts.
    ///
    /// One good and one bad report per contract count (a further one is `409
    /// already_reported`; the same request again answers `counted: false`). A report weighs
    /// what the contract was worth against the agent's reference request, and a tenth of that
    /// when the market's own audits of the contract contradict it
    /// ([`crate::reliability::report_weight`]).
    pub async fn report(
        &self,
        sender: &EntityId,
        counter: u64,
        body_sha256: &str,
        report: Report,
    ) -> Result<serde_json::Value, Error> {
        let good = match report.outcome.as_str() {
            "ok" => true,
            "lost" | "corrupt" | "unavailable" => false,
            other => {
                return Err(Error::InvalidJson(format!(
                    "outcome {other:?} is not one of ok, lost, corrupt, unavailable"
                )))
            }
        };
        let kind = if good { "good" } else { "bad" };
        if report.detail.chars().count() > REPORT_DETAIL_CHARS_MAX {
            return Err(Error::InvalidJson(format!(
                "detail is over {REPORT_DETAIL_CHARS_MAX} characters"
            )));
        }
        let id = report.contract.clone();
        type Found = (String, String, String, i64, i64);
        let found: Option<Found> = self
            .db
            .run(move |conn| {
                Ok::<_, Error>(
                    registered::table
                        .find(&id)
                        .select((
                            registered::agent,
                            registered::buyer,
                            registered::envelope,
                            registered::audit_passed_s,
                            registered::audit_failed_s,
                        ))
                        .first(conn)
                        .optional()?,
                )
            })
            .await?;
        let (agent, buyer, envelope, passed_s, failed_s) = found.ok_or(Error::UnknownContract)?;
        if buyer != sender.as_str() {
            return Err(Error::NotYourContract);
        }
        // Evidence the contract was paid and used: an object the agent proved it holds (the
        // registration's audit stamps `audit_passed_s`). Without it a report would be a free
        // signature on an unpaid contract, and 40 of them could ruin an agent.
        if passed_s == 0 {
            return Err(Error::ReportUnverified);
        }
        let worth = self.contract_worth(&agent, &envelope).await?;
        // The market's latest audit of this contract, if recent, against the report.
        let now = now_s();
        let recent = |t: i64| t > 0 && now.saturating_sub(t) <= AUDIT_CONTRADICTS_S;
        let contradicted = if good {
            recent(failed_s) && failed_s >= passed_s
        } else {
            recent(passed_s) && passed_s > failed_s
        };
        let weight = report_weight(worth, contradicted);
        let _rep = self.reputation_lock.lock().await;
        let (entity, hash, counter_i) =
            (sender.to_string(), body_sha256.to_owned(), to_i64(counter)?);
        let (agent_c, contract) = (agent.clone(), report.contract.clone());
        let outcome_text = report.outcome.clone();
        let counted = self
            .db
            .run(move |conn| {
                db::write_transaction(conn, |conn| -> Result<bool, Error> {
                    let prior: Option<String> = reports::table
                        .find((counter_i, &entity))
                        .select(reports::body_sha256)
                        .first(conn)
                        .optional()?;
                    if let Some(prior) = prior {
                        return if prior == hash {
                            Ok(false)
                        } else {
                            Err(Error::CounterReused { counter })
                        };
                    }
                    let already = counted_reports::table
                        .find((&contract, kind))
                        .count()
                        .get_result::<i64>(conn)?
                        > 0;
                    if already {
                        return Err(Error::AlreadyReported {
                            contract: contract.clone(),
                            kind,
                        });
                    }
                    diesel::insert_into(reports::table)
                        .values((
                            reports::entity.eq(&entity),
                            reports::counter.eq(counter_i),
                            reports::body_sha256.eq(&hash),
                            reports::contract_id.eq(&contract),
                            reports::agent.eq(&agent_c),
                            reports::outcome.eq(&outcome_text),
                            reports::created_s.eq(now),
                        ))
                        .execute(conn)?;
                    diesel::insert_into(counted_reports::table)
                        .values((
                            counted_reports::contract_id.eq(&contract),
                            counted_reports::kind.eq(kind),
                            counted_reports::entity.eq(&entity),
                            counted_reports::counter.eq(counter_i),
                            counted_reports::outcome.eq(&outcome_text),
                            counted_reports::weight.eq(weight),
                            counted_reports::created_s.eq(now),
                        ))
                        .execute(conn)?;
                    apply_report(conn, &agent_c, good, weight)?;
                    Ok(true)
                })
            })
            .await?;
        Ok(serde_json::json!({
            "agent": agent,
            "counted": counted,
            "weight": if counted { weight } else { 0.0 },
            "contradicted_by_audits": contradicted,
        }))
    }

    /// What the registered contract (its envelope) was worth, as a share of `agent`'s price
    /// for the reference request in the contract's currency
    /// ([`crate::reliability::contract_worth`]).
    async fn contract_worth(&self, agent: &str, envelope: &str) -> Result<f64, Error> {
        let env: Envelope =
            serde_json::from_str(envelope).map_err(|e| Error::InvalidContract(e.to_string()))?;
        let (_, contract): (EntityId, Contract) = env
            .open(market::CONTRACT_TYPE)
            .map_err(|e| Error::InvalidContract(e.to_string()))?;
        let agent = agent.to_owned();
        let row: Option<AgentRow> = self
            .db
            .run(move |conn| Ok::<_, Error>(agents::table.find(&agent).first(conn).optional()?))
            .await?;
        let reference = row
            .and_then(|r| r.offer())
            .and_then(|(_, offer)| offer.currency(&contract.issuer).cloned())
            .and_then(|cur| {
                market::request_price(
                    &cur,
                    market::REFERENCE_BYTES,
                    market::REFERENCE_DURATION_S,
                    0,
                )
                .ok()
            });
        let duration_s = market::contract_window(&contract)
            .map(|(start, end)| end.saturating_sub(start).unsigned_abs())
            .unwrap_or(0);
        Ok(contract_worth(
            contract.contract_price,
            reference,
            contract.block_bytes,
            duration_s,
        ))
    }

    /// Record what was observed about `agent`.
    pub async fn observe(&self, agent: &str, outcome: Outcome) -> Result<(), Error> {
        let _rep = self.reputation_lock.lock().await;
        let agent = agent.to_owned();
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| apply_outcome(conn, &agent, outcome))
            })
            .await
    }

    /// Record an audit of `contract` on `agent`: its reputation, and when the contract's
    /// audits last passed or failed (which weighs buyers' reports on it).
    pub async fn record_audit(
        &self,
        agent: &str,
        contract: &str,
        outcome: Outcome,
    ) -> Result<(), Error> {
        let _rep = self.reputation_lock.lock().await;
        let (agent, contract) = (agent.to_owned(), contract.to_owned());
        let now = now_s();
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    apply_outcome(conn, &agent, outcome)?;
                    let row = registered::table.find(&contract);
                    match outcome {
                        Outcome::AuditPassed => {
                            diesel::update(row)
                                .set(registered::audit_passed_s.eq(now))
                                .execute(conn)?;
                        }
                        Outcome::AuditFailed => {
                            diesel::update(row)
                                .set(registered::audit_failed_s.eq(now))
                                .execute(conn)?;
                        }
                        _ => {}
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Registered contracts still running, with their objects, for the auditor.
    pub async fn audit_targets(&self) -> Result<Vec<AuditTarget>, Error> {
        let now = now_s();
        self.db
            .run(move |conn| {
                let rows: Vec<(String, String, String)> = registered::table
                    .inner_join(agents::table.on(agents::entity.eq(registered::agent)))
                    .filter(registered::end_s.gt(now))
                    .select((registered::id, registered::agent, agents::endpoint))
                    .load(conn)?;
                let mut out = Vec::with_capacity(rows.len());
                for (contract, agent, endpoint) in rows {
                    let objects = objects_of(conn, &contract)?;
                    if objects.is_empty() {
                        continue;
                    }
                    out.push(AuditTarget {
                        agent,
                        endpoint,
                        contract,
                        objects,
                    });
                }
                Ok::<_, Error>(out)
            })
            .await
    }
}

/// The registered objects of contract `id`.
fn objects_of(conn: &mut AnyConnection, id: &str) -> Result<Vec<RegisteredObject>, Error> {
    let rows: Vec<(String, String, i64, i64)> = registered_objects::table
        .filter(registered_objects::contract_id.eq(id))
        .select((
            registered_objects::name,
            registered_objects::merkle_root,
            registered_objects::leaf_count,
            registered_objects::size,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(name, merkle_root, leaf_count, size)| RegisteredObject {
            name,
            merkle_root,
            leaf_count: leaf_count.unsigned_abs(),
            size: size.unsigned_abs(),
        })
        .collect())
}

/// Apply a buyer's report to the agent's stored reputation (in the caller's transaction).
fn apply_report(
    conn: &mut AnyConnection,
    agent: &str,
    good: bool,
    weight: f64,
) -> Result<(), Error> {
    update_reputation(conn, agent, |rep| rep.observe_report(good, weight))
}

/// Apply one outcome to the agent's stored reputation (in the caller's transaction).
fn apply_outcome(conn: &mut AnyConnection, agent: &str, outcome: Outcome) -> Result<(), Error> {
    update_reputation(conn, agent, |rep| rep.observe(outcome))
}

/// Read the agent's reputation, change it with `change`, and store it (an unknown agent is
/// left alone).
fn update_reputation(
    conn: &mut AnyConnection,
    agent: &str,
    change: impl FnOnce(&mut Reputation),
) -> Result<(), Error> {
    let Some(row) = agents::table
        .find(agent)
        .first::<AgentRow>(conn)
        .optional()?
    else {
        return Ok(());
    };
    let mut rep = row.reputation();
    change(&mut rep);
    diesel::update(agents::table.find(agent))
        .set((
            agents::alpha.eq(rep.alpha),
            agents::beta.eq(rep.beta),
            agents::audits_passed.eq(to_i64(rep.audits_passed)?),
            agents::audits_failed.eq(to_i64(rep.audits_failed)?),
            agents::online.eq(i32::from(rep.online)),
        ))
        .execute(conn)?;
    Ok(())
}

fn to_i64(v: u64) -> Result<i64, Error> {
    i64::try_from(v).map_err(|_| Error::InvalidJson(format!("{v} is out of range")))
}

/// An agent's price for the request, or `None` when it overflows.
fn price_for(cur: &OfferCurrency, req: &MatchRequest) -> Option<u64> {
    market::request_price(
        cur,
        req.shard_bytes,
        req.duration_s,
        req.expected_read_bytes,
    )
    .ok()
}

/// Check an offer's values; answers its expiry (Unix seconds).
pub fn check_offer(offer: &Offer, now: i64) -> Result<i64, Error> {
    let expires = market::parse_rfc3339(&offer.expires_at).ok_or_else(|| {
        Error::InvalidOffer(format!("expires_at {:?} is not RFC 3339", offer.expires_at))
    })?;
    let issued = market::parse_rfc3339(&offer.issued_at).ok_or_else(|| {
        Error::InvalidOffer(format!("issued_at {:?} is not RFC 3339", offer.issued_at))
    })?;
    if expires <= now {
        return Err(Error::OfferExpired(offer.expires_at.clone()));
    }
    if issued > now + ISSUED_SKEW_S_MAX {
        return Err(Error::InvalidOffer("issued_at is in the future".into()));
    }
    if expires - issued > OFFER_VALIDITY_S_MAX || expires <= issued {
        return Err(Error::InvalidOffer(format!(
            "an offer may be valid for at most {OFFER_VALIDITY_S_MAX} s after it is issued"
        )));
    }
    let url_ok = (offer.endpoint.starts_with("http://") || offer.endpoint.starts_with("https://"))
        && offer.endpoint.len() <= ENDPOINT_CHARS_MAX
        && host_of(&offer.endpoint).is_some_and(|h| !h.is_empty());
    if !url_ok {
        return Err(Error::InvalidOffer(format!(
            "endpoint {:?} is not an http(s) URL",
            offer.endpoint
        )));
    }
    if offer.currencies.is_empty() || offer.currencies.len() > OFFER_CURRENCIES_MAX {
        return Err(Error::InvalidOffer(format!(
            "an offer lists 1 to {OFFER_CURRENCIES_MAX} currencies"
        )));
    }
    if offer.free_bytes > OFFER_BYTES_MAX || offer.block_bytes_max > OFFER_BYTES_MAX {
        return Err(Error::InvalidOffer(
            "free_bytes or block_bytes_max is absurdly large".into(),
        ));
    }
    if offer.duration_s_max == 0 || offer.block_bytes_max == 0 {
        return Err(Error::InvalidOffer(
            "duration_s_max and block_bytes_max must be positive".into(),
        ));
    }
    let price_max = i64::MAX as u64 / 1024;
    for c in &offer.currencies {
        let prices = [
            c.storage_per_gib_day,
            c.write_per_kib,
            c.read_per_kib,
            c.contract_min,
        ];
        if prices.iter().any(|p| *p > price_max) {
            return Err(Error::InvalidOffer(format!(
                "prices in {} are absurdly large",
                c.issuer
            )));
        }
        if c.storage_per_gib_day == 0 && c.contract_min == 0 {
            return Err(Error::InvalidOffer(format!(
                "storage in {} would be free: storage_per_gib_day or contract_min must be positive",
                c.issuer
            )));
        }
    }
    Ok(expires)
}

fn check_match(req: &MatchRequest) -> Result<usize, Error> {
    let bad = |m: &str| Err(Error::InvalidMatch(m.to_owned()));
    if req.data_shards == 0 {
        return bad("data_shards (k) must be at least 1");
    }
    if let Some(n) = req.total_shards {
        if n < req.data_shards {
            return bad("total_shards (n) must be at least data_shards (k)");
        }
        if n > select::TOTAL_SHARDS_MAX as u64 {
            return Err(Error::InvalidMatch(format!(
                "total_shards (n) must be at most {}",
                select::TOTAL_SHARDS_MAX
            )));
        }
    }
    if req.data_shards > select::TOTAL_SHARDS_MAX as u64 {
        return Err(Error::InvalidMatch(format!(
            "data_shards (k) must be at most {}",
            select::TOTAL_SHARDS_MAX
        )));
    }
    let p = req.max_failure_probability;
    if !(p > 0.0 && p < 1.0) {
        return bad("max_failure_probability must be strictly between 0 and 1");
    }
    if req.shard_bytes == 0 || req.duration_s == 0 {
        return bad("shard_bytes and duration_s must be positive");
    }
    if EntityId::parse(&req.currency).is_err() {
        return Err(Error::UnknownCurrency(req.currency.clone()));
    }
    Ok(req.data_shards as usize)
}

fn check_objects(objects: &[RegisteredObject]) -> Result<(), Error> {
    if objects.len() > REGISTERED_OBJECTS_MAX {
        return Err(Error::InvalidContract(format!(
            "at most {REGISTERED_OBJECTS_MAX} objects per registration"
        )));
    }
    for o in objects {
        if !protocol::agent::valid_name(&o.name) {
            return Err(Error::InvalidContract(format!(
                "object name {:?} is not valid",
                o.name
            )));
        }
        if protocol::merkle::parse_hash(&o.merkle_root).is_none() {
            return Err(Error::InvalidContract(format!(
                "{}: merkle_root is not 64 hex digits",
                o.name
            )));
        }
        let leaves = o.size.div_ceil(protocol::merkle::LEAF_BYTES as u64).max(1);
        if o.leaf_count != leaves {
            return Err(Error::InvalidContract(format!(
                "{}: {} bytes make {leaves} leaves, not {}",
                o.name, o.size, o.leaf_count
            )));
        }
    }
    Ok(())
}

/// The host of an `http(s)://host[:port]/...` URL (brackets kept off IPv6 literals).
fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h);
    }
    Some(authority.split(':').next().unwrap_or(authority))
}

/// The network an endpoint is on, for the one-agent-per-network rule: the /24 of an IPv4
/// address, the /48 of an IPv6 one, else the host name.
pub fn network_of(endpoint: &str) -> Result<String, Error> {
    let host = host_of(endpoint)
        .ok_or_else(|| Error::InvalidOffer(format!("endpoint {endpoint:?} has no host")))?;
    if let Ok(v4) = host.parse::<std::net::Ipv4Addr>() {
        let o = v4.octets();
        return Ok(format!("{}.{}.{}.0/24", o[0], o[1], o[2]));
    }
    if let Ok(v6) = host.parse::<std::net::Ipv6Addr>() {
        let s = v6.segments();
        return Ok(format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2]));
    }
    Ok(host.to_ascii_lowercase())
}

/// Agents offering the match's currency that it left out, and why: said in a refusal, so a
/// buyer asking for blocks no agent sells learns that, not only that the target was missed.
#[derive(Debug, Default)]
struct LeftOut {
    offline: u64,
    small_blocks: u64,
    largest_block: u64,
    short_durations: u64,
    longest_duration_s: u64,
}

impl LeftOut {
    fn explain(&self, req: &MatchRequest) -> String {
        let mut out = String::new();
        if self.small_blocks > 0 {
            out.push_str(&format!(
                "; {} agent(s) sell no block as large as the {} bytes asked for per shard \
                 (the largest offered is {} bytes): ask for smaller shards",
                self.small_blocks, req.shard_bytes, self.largest_block
            ));
        }
        if self.short_durations > 0 {
            out.push_str(&format!(
                "; {} agent(s) sell no contract as long as {} s (the longest offered is {} s)",
                self.short_durations, req.duration_s, self.longest_duration_s
            ));
        }
        if self.offline > 0 {
            out.push_str(&format!(
                "; {} agent(s) were offline at the last probe",
                self.offline
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_group_by_prefix() {
        assert_eq!(
            network_of("http://10.1.2.3:80/x").ok(),
            Some("10.1.2.0/24".into())
        );
        assert_eq!(
            network_of("http://10.1.2.200").ok(),
            Some("10.1.2.0/24".into())
        );
        assert_eq!(
            network_of("https://[2001:db8:1:2::1]:443").ok(),
            Some("2001:db8:1::/48".into())
        );
        assert_eq!(
            network_of("https://Agent.Example:8080").ok(),
            Some("agent.example".into())
        );
    }
}
