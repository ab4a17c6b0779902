//! Reputation: buyers' reports (counted once per (buyer, counter), one good and one bad per
//! contract, weighted by what the contract was worth), audit and probe outcomes, all applied
//! read-modify-write in a transaction that took the market clock first
//! (`heartbeats::tick`), which serialises them across tasks and market processes.

use db::AnyConnection;
use diesel::prelude::*;
use protocol::market::{self, Contract};
use protocol::{EntityId, Envelope};

use super::heartbeats::tick;
use super::{now_s, AgentRow, Market, Report, REPORT_DETAIL_CHARS_MAX};
use crate::error::Error;
use crate::reliability::{contract_worth, report_weight, Outcome, Reputation, AUDIT_CONTRADICTS_S};
use crate::schema::{agents, counted_reports, registered, reports};

impl Market {
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
        self.refuse_fraudster(sender).await?;
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
        let (entity, hash, counter_i) =
            (sender.to_string(), body_sha256.to_owned(), to_i64(counter)?);
        let (agent_c, contract) = (agent.clone(), report.contract.clone());
        let outcome_text = report.outcome.clone();
        let counted = self
            .db
            .run(move |conn| {
                db::write_transaction(conn, |conn| -> Result<bool, Error> {
                    let changed = tick(conn)?;
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
                    apply_report(conn, &agent_c, good, weight, changed)?;
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
        let agent = agent.to_owned();
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    let changed = tick(conn)?;
                    apply_outcome(conn, &agent, outcome, changed)
                })
            })
            .await
    }

    /// Record one `outcome` for each of `agents` in one transaction (the prober's heartbeats
    /// counted as answered probes: at 100,000 agents a minute, one transaction each would be
    /// 1,667 commits a second). Unknown agents are left alone.
    pub async fn observe_many(&self, agents: Vec<String>, outcome: Outcome) -> Result<(), Error> {
        if agents.is_empty() {
            return Ok(());
        }
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    let changed = tick(conn)?;
                    for agent in &agents {
                        apply_outcome(conn, agent, outcome, changed)?;
                    }
                    Ok(())
                })
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
        let (agent, contract) = (agent.to_owned(), contract.to_owned());
        let now = now_s();
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    let changed = tick(conn)?;
                    apply_outcome(conn, &agent, outcome, changed)?;
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
}

/// Apply a buyer's report to the agent's stored reputation (in the caller's transaction).
fn apply_report(
    conn: &mut AnyConnection,
    agent: &str,
    good: bool,
    weight: f64,
    changed: i64,
) -> Result<(), Error> {
    update_reputation(conn, agent, changed, |rep| rep.observe_report(good, weight))
}

/// Apply one outcome to the agent's stored reputation (in the caller's transaction).
fn apply_outcome(
    conn: &mut AnyConnection,
    agent: &str,
    outcome: Outcome,
    changed: i64,
) -> Result<(), Error> {
    update_reputation(conn, agent, changed, |rep| rep.observe(outcome))
}

/// Read the agent's reputation, change it with `change`, and store it stamped `changed` (an
/// unknown agent is left alone). The caller's transaction took the clock (`changed`), so no
/// other writer of the row runs between the read and the write.
fn update_reputation(
    conn: &mut AnyConnection,
    agent: &str,
    changed: i64,
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
            agents::changed.eq(changed),
        ))
        .execute(conn)?;
    Ok(())
}

pub(super) fn to_i64(v: u64) -> Result<i64, Error> {
    i64::try_from(v).map_err(|_| Error::InvalidJson(format!("{v} is out of range")))
}
