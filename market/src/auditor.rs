//! The market's background loops: the auditor challenges agents on registered contracts
//! (random object, random leaf, proof checked against the registered root) and the prober asks
//! every agent with a live offer who it is. Each outcome goes to the agent's reputation at once.
//!
//! A refusal to an audit (`402` included: an agent never charges a listed auditor) is a failed
//! audit; `429` puts it off, for at most [`AUDIT_DEFERRALS_MAX`] rounds in a row; no answer
//! marks the agent offline.

use std::sync::Arc;
use std::time::Duration;

use clients::agent::{verify_audit, AgentClient};
use node::client::ClientError;

use crate::book::{AuditTarget, Market};
use crate::reliability::Outcome;
use node::now_s;

/// Longest wait for one audit answer or probe.
pub const CHALLENGE_WAIT_MS_MAX: u64 = 5_000;
/// Agents audited per round at most (one contract each).
pub const AUDITS_PER_ROUND_MAX: usize = 256;

/// Rounds in a row an agent may put an audit off (`429`) before that counts as a failed
/// audit: an honest agent rate-limits a burst, an agent dodging audits does it every round.
pub const AUDIT_DEFERRALS_MAX: u32 = 3;

/// A uniformly random number below `bound` (> 0), from the OS source.
pub fn random_below(bound: u64) -> u64 {
    let mut raw = [0u8; 8];
    // SystemRandom reads the OS source; if it ever failed, auditing leaf 0 is still an audit.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw);
    u64::from_le_bytes(raw) % bound.max(1)
}

/// Audit one random registered contract of every agent that has one, every `every`.
pub async fn audit_loop(market: Arc<Market>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = audit_round(&market).await {
            tracing::warn!(error = %e, "audit round failed");
        }
    }
}

/// One round: for each agent with running registered contracts, one challenge. Answers how
/// many challenges were sent.
pub async fn audit_round(market: &Market) -> Result<usize, crate::Error> {
    let targets = market.audit_targets().await?;
    let mut by_agent: std::collections::BTreeMap<String, Vec<AuditTarget>> = Default::default();
    for t in targets {
        by_agent.entry(t.agent.clone()).or_default().push(t);
    }
    let mut sent = 0;
    for (agent, contracts) in by_agent.into_iter().take(AUDITS_PER_ROUND_MAX) {
        let t = &contracts[random_below(contracts.len() as u64) as usize];
        let object = &t.objects[random_below(t.objects.len() as u64) as usize];
        let leaf = random_below(object.leaf_count);
        let answer = ask(
            market,
            &t.endpoint,
            &t.contract,
            &object.name,
            (&object.merkle_root, object.leaf_count),
            leaf,
        )
        .await;
        let outcome = outcome_of(market, &agent, &answer);
        tracing::debug!(
            agent,
            contract = t.contract,
            object = object.name,
            leaf,
            ?answer,
            ?outcome,
            "audit"
        );
        if let Some(o) = outcome {
            market.record_audit(&agent, &t.contract, o).await?;
        }
        sent += 1;
    }
    Ok(sent)
}

/// What an agent answered one audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The proof leads to the registered root.
    Verified,
    /// An answer whose proof does not lead to the registered root.
    Mismatch,
    /// Any refusal but a rate limit: `402` included (an agent must not charge a listed
    /// auditor), unknown objects, errors, an answer that is not an audit answer.
    Refused { status: u16, code: String },
    /// `429`: the agent asks the auditor to come back later.
    Deferred(String),
    /// No answer: a network failure or no answer within [`CHALLENGE_WAIT_MS_MAX`].
    Unreachable(String),
}

/// Ask the agent at `endpoint` for `leaf` of `object` and its proof, and check the proof
/// against `root`.
pub async fn ask(
    market: &Market,
    endpoint: &str,
    contract: &str,
    object: &str,
    (root, leaf_count): (&str, u64),
    leaf: u64,
) -> Answer {
    let client = AgentClient::new(market.http.clone(), endpoint, market.key.clone());
    let answer = tokio::time::timeout(
        Duration::from_millis(CHALLENGE_WAIT_MS_MAX),
        client.audit(contract, object, leaf),
    )
    .await;
    match answer {
        Err(_) => Answer::Unreachable(format!(
            "{endpoint}: no answer within {CHALLENGE_WAIT_MS_MAX} ms"
        )),
        // The object's size too: a buyer claiming more leaves than the object has would
        // otherwise have the agent fail audits of leaves that do not exist.
        Ok(Ok(a)) if verify_audit(&a, root, leaf) && a.leaf_count == leaf_count => Answer::Verified,
        Ok(Ok(_)) => Answer::Mismatch,
        Ok(Err(ClientError::Api {
            status: 429,
            code,
            message,
        })) => Answer::Deferred(format!("{code}: {message}")),
        Ok(Err(ClientError::Api { status, code, .. })) => Answer::Refused { status, code },
        Ok(Err(ClientError::Unreachable { url, message })) => {
            Answer::Unreachable(format!("{url}: {message}"))
        }
        // It answered, but not with an audit answer (or a receipt that does not verify).
        Ok(Err(e)) => Answer::Refused {
            status: 200,
            code: format!("undecodable answer: {e}"),
        },
    }
}

/// What an audit answer says about the agent: a passed or failed audit, the agent down, or
/// (a deferral, up to [`AUDIT_DEFERRALS_MAX`] rounds in a row) nothing yet.
fn outcome_of(market: &Market, agent: &str, answer: &Answer) -> Option<Outcome> {
    let deferred = matches!(answer, Answer::Deferred(_));
    let deferrals = market.count_deferral(agent, deferred);
    match answer {
        Answer::Verified => Some(Outcome::AuditPassed),
        // A wrong proof, or a refusal: it cannot (or will not) show what it contracted to keep.
        Answer::Mismatch | Answer::Refused { .. } => Some(Outcome::AuditFailed),
        Answer::Deferred(_) if deferrals > AUDIT_DEFERRALS_MAX => Some(Outcome::AuditFailed),
        Answer::Deferred(_) => None,
        // No answer at all: the agent is down.
        Answer::Unreachable(_) => Some(Outcome::ProbeUnanswered),
    }
}

/// Probe every agent with a live offer every `every`.
pub async fn probe_loop(market: Arc<Market>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = probe_round(&market).await {
            tracing::warn!(error = %e, "probe round failed");
        }
    }
}

/// One probe of every agent whose offer is live. Answers how many answered.
pub async fn probe_round(market: &Market) -> Result<usize, crate::Error> {
    let now = now_s();
    let mut answered = 0;
    for row in market.agents().await? {
        if row.offer_expires_s <= now {
            continue;
        }
        let url = format!("{}/.well-known/lcp", row.endpoint.trim_end_matches('/'));
        let ok = async {
            let resp = market
                .http
                .get(&url)
                .timeout(Duration::from_millis(CHALLENGE_WAIT_MS_MAX))
                .send()
                .await
                .ok()?;
            let doc: serde_json::Value = resp.json().await.ok()?;
            (doc.get("entity")?.as_str()? == row.entity).then_some(())
        }
        .await
        .is_some();
        let outcome = if ok {
            answered += 1;
            Outcome::ProbeAnswered
        } else {
            Outcome::ProbeUnanswered
        };
        market.observe(&row.entity, outcome).await?;
    }
    Ok(answered)
}
