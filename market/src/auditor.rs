//! The market's background loops: the auditor challenges agents on registered contracts
//! (random object, random leaf, proof checked against the registered root) and the prober asks
//! every agent with a live offer who it is. Each outcome goes to the agent's reputation at once.

use std::sync::Arc;
use std::time::Duration;

use storage_agent::client::{verify_audit, AgentClient};

use crate::book::{now_s, AuditTarget, Market};
use crate::reliability::Outcome;

/// Longest wait for one audit answer or probe.
pub const CHALLENGE_WAIT_MS_MAX: u64 = 5_000;
/// Agents audited per round at most (one contract each).
pub const AUDITS_PER_ROUND_MAX: usize = 256;

/// A uniformly random number below `bound` (> 0), from the OS source.
fn random_below(bound: u64) -> u64 {
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
        let outcome = challenge(market, t, &object.name, &object.merkle_root, leaf).await;
        tracing::debug!(
            agent,
            contract = t.contract,
            object = object.name,
            leaf,
            ?outcome,
            "audit"
        );
        if let Some(o) = outcome {
            market.observe(&agent, o).await?;
        }
        sent += 1;
    }
    Ok(sent)
}

/// Ask for one leaf and its proof. `None` when the outcome says nothing about the agent (the
/// buyer's credit ran out, so the agent rightly refused).
async fn challenge(
    market: &Market,
    t: &AuditTarget,
    object: &str,
    root: &str,
    leaf: u64,
) -> Option<Outcome> {
    let client = AgentClient::new(market.http.clone(), &t.endpoint, market.key.clone());
    let answer = tokio::time::timeout(
        Duration::from_millis(CHALLENGE_WAIT_MS_MAX),
        client.audit(&t.contract, object, leaf),
    )
    .await;
    match answer {
        Err(_) => Some(Outcome::ProbeUnanswered),
        Ok(Ok(a)) if verify_audit(&a, root, leaf) => Some(Outcome::AuditPassed),
        Ok(Ok(_)) => Some(Outcome::AuditFailed),
        Ok(Err(e)) => match e.code() {
            Some("payment_required") => None,
            // Any other answer from the agent (unknown object or contract, storage failure):
            // it cannot serve what it contracted to keep.
            Some(_) => Some(Outcome::AuditFailed),
            // No answer at all: the agent is down.
            None => Some(Outcome::ProbeUnanswered),
        },
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
