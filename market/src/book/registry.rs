//! The contract registry: dual-signed contracts buyers register for auditing, their objects'
//! Merkle roots (each verified with the agent once, never replaced), and what the auditor
//! challenges. Moved unchanged from `book.rs` (issue 13).

use db::AnyConnection;
use diesel::prelude::*;
use node::commands::{CommandRow, Seen, StoredAnswer};
use protocol::market::{self, Contract};
use protocol::EntityId;

use super::reputation::to_i64;
use super::{
    now_s, AuditTarget, Market, RegisteredContract, RegisteredObject, Registration,
    REGISTERED_OBJECTS_MAX, REGISTRATION_AUDITS_MAX,
};
use crate::error::Error;
use crate::schema::{agents, registered, registered_objects};

impl Market {
    /// `POST /v1/contracts`: register a dual-signed contract (sent by its buyer) for auditing.
    ///
    /// A signed command, kept in the command log ([`node::commands`]): `counter` and
    /// `body_sha256` are the request's. Answers (status, body) as sent, and stored with them in
    /// the same transaction as the registration, so a repetition replays it
    /// ([`Market::replay_registration`]).
    pub async fn register(
        &self,
        sender: &EntityId,
        counter: u64,
        body_sha256: &str,
        reg: Registration,
    ) -> Result<(u16, String), Error> {
        // A counter the log cannot hold is refused before any work (reports do the same).
        to_i64(counter)?;
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
        self.refuse_fraudster(sender).await?;
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
        let answer = StoredAnswer {
            status: 200,
            body: serde_json::json!({ "contract": contract.id, "objects": count }).to_string(),
        };
        let command = CommandRow::new(sender, counter, body_sha256, &answer)
            .map_err(|e| Error::InvalidJson(format!("{} is out of range", e.0)))?;
        let (entity, hash) = (sender.to_string(), body_sha256.to_owned());
        let replayed = self
            .db
            .run(move |conn| {
                db::write_transaction(conn, |conn| -> Result<Option<StoredAnswer>, Error> {
                    // Looked up again inside the transaction: a concurrent repetition may have
                    // been answered since the handler's look.
                    match node::commands::lookup(conn, &entity, counter, &hash)? {
                        Some(Seen::Answered(stored)) => return Ok(Some(stored)),
                        Some(Seen::CounterReused) => return Err(Error::CounterReused { counter }),
                        None => {}
                    }
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
                    node::commands::record(conn, std::slice::from_ref(&command))?;
                    Ok(None)
                })
            })
            .await?;
        let sent = replayed.unwrap_or(answer);
        Ok((sent.status, sent.body))
    }

    /// The answer to a registration `sender` already sent with `counter`, replayed byte for
    /// byte when the body is the same (`body_sha256`); `409 counter_reused` when it is not;
    /// `None` for a new command.
    pub async fn replay_registration(
        &self,
        sender: &EntityId,
        counter: u64,
        body_sha256: &str,
    ) -> Result<Option<(u16, String)>, Error> {
        let stored = node::commands::replay(&self.db, sender, counter, body_sha256).await?;
        Ok(stored.map(|StoredAnswer { status, body }| (status, body)))
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
            Answer::Deferred { reason, .. } => Err(Error::AgentBusy(reason)),
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
        let leaves = protocol::merkle::leaf_count_for(o.size);
        if o.leaf_count != leaves {
            return Err(Error::InvalidContract(format!(
                "{}: {} bytes make {leaves} leaves, not {}",
                o.name, o.size, o.leaf_count
            )));
        }
    }
    Ok(())
}
