//! `backup settle`: pay the running tabs the repository's agents keep for this wallet
//! (DESIGN 12, seed 001). A tab is a credit line (the agent the creditor); past its threshold
//! the agent asks to settle (`LCP-Amount-Due`). Settling pays what the line shows owed by an
//! LCP transfer to the agent with `transaction_id` = the line id, waits for the agent to show
//! the lower balance, and countersigns it, so both parties have signed it.

use std::time::{Duration, Instant};

use protocol::credit::{LineState, LineUpdate, LineView};
use serde::Serialize;

use crate::error::{remote, Error};
use crate::repo::Repo;

/// Longest wait for an agent to show a settled tab's lower balance.
pub const SETTLE_WAIT_MS_MAX: u64 = 30_000;
const SETTLE_POLL_MS: u64 = 200;

/// One tab settled (or not) at one agent.
#[derive(Debug, Clone, Serialize)]
pub struct SettledTab {
    pub agent: String,
    pub endpoint: String,
    pub line: String,
    pub paid: u64,
    /// The lower balance the agent signed and this wallet countersigned.
    pub owed_after: u64,
    pub countersigned: bool,
}

/// What `settle` did: a tab per agent that had one owed, and the agents it could not ask.
#[derive(Debug, Clone, Serialize)]
pub struct Settled {
    pub tabs: Vec<SettledTab>,
    pub unreachable: Vec<String>,
}

/// Settle every tab the repository's agents show this wallet owing in its currency.
pub async fn settle(repo: &Repo) -> Result<Settled, Error> {
    let me = repo.buyer.entity().to_string();
    let currency = repo.config.issuer.clone();
    let mut agents: Vec<(String, String)> = repo
        .config
        .slots
        .iter()
        .map(|s| (s.agent.clone(), s.endpoint.clone()))
        .collect();
    agents.sort();
    agents.dedup();
    let mut out = Settled {
        tabs: Vec::new(),
        unreachable: Vec::new(),
    };
    for (agent, endpoint) in agents {
        let lines = match clients::credit::lines(&repo.http, &endpoint, &me).await {
            Ok(l) => l,
            Err(_) => {
                out.unreachable.push(endpoint);
                continue;
            }
        };
        let owed = lines.into_iter().filter(|l| {
            l.settle_threshold.is_some()
                && l.creditor == agent
                && l.debtor == me
                && l.currency == currency
                && l.owed > 0
        });
        for line in owed {
            out.tabs
                .push(settle_one(repo, &agent, &endpoint, line).await?);
        }
    }
    Ok(out)
}

/// Settlements paid but not yet seen applied, beside the repository: (line id, seq paid at).
/// A run that finds the tab still at that seq waits for it instead of paying again.
const SETTLING_FILE: &str = "settling.json";

async fn settle_one(
    repo: &Repo,
    agent: &str,
    endpoint: &str,
    line: LineView,
) -> Result<SettledTab, Error> {
    let to = protocol::EntityId::parse(agent)
        .map_err(|_| Error::Incomplete(format!("{agent} is not an entity id")))?;
    let path = repo.dir.join(SETTLING_FILE);
    let mut settling: std::collections::HashMap<String, u64> =
        crate::repo::read_json(&path).unwrap_or_default();
    if settling.get(&line.id) != Some(&line.seq) {
        // Written (fsynced) before the transfer leaves: a crash after it never pays twice.
        settling.insert(line.id.clone(), line.seq);
        crate::repo::write_json(&path, &settling)?;
        repo.wallet
            .transfer(&to, line.owed, Some(&line.id))
            .await
            .map_err(remote(format!("paying the tab at {endpoint}")))?;
    }
    let me = repo.buyer.entity().to_string();
    let deadline = Instant::now() + Duration::from_millis(SETTLE_WAIT_MS_MAX);
    let lower = loop {
        let now = clients::credit::lines(&repo.http, endpoint, &me)
            .await
            .ok()
            .and_then(|ls| ls.into_iter().find(|l| l.id == line.id));
        match now {
            Some(l) if l.seq > line.seq && l.owed < line.owed => break l,
            _ if Instant::now() >= deadline => {
                return Err(Error::Incomplete(format!(
                    "paid {} to {endpoint} for tab {}, but it did not show the lower balance \
                     within {} s; run `backup settle` again later",
                    line.owed,
                    line.id,
                    SETTLE_WAIT_MS_MAX / 1000
                )))
            }
            _ => tokio::time::sleep(Duration::from_millis(SETTLE_POLL_MS)).await,
        }
    };
    let state = LineState {
        id: lower.id.clone(),
        creditor: lower.creditor.clone(),
        debtor: lower.debtor.clone(),
        currency: lower.currency.clone(),
        limit: lower.limit,
        owed: lower.owed,
        seq: lower.seq,
    };
    let update = LineUpdate {
        debtor_signature: Some(repo.buyer.sign_b64(state.signing_string().as_bytes())),
        creditor_signature: Some(lower.creditor_signature.clone()),
        state,
    };
    settling.remove(&lower.id);
    crate::repo::write_json(&path, &settling)?;
    // Only a state the agent signed is countersigned.
    let countersigned = update.verify() == Ok(true) && {
        let body = serde_json::to_vec(&serde_json::json!({ "update": update }))
            .map_err(|e| Error::Incomplete(e.to_string()))?;
        let client =
            node::client::SignedClient::new(repo.http.clone(), endpoint, repo.buyer.clone());
        client
            .command::<LineUpdate>(
                "POST",
                "/v1/credit/lines",
                body,
                node::client::ClockCounter::default().next(),
            )
            .await
            .is_ok()
    };
    Ok(SettledTab {
        agent: agent.to_owned(),
        endpoint: endpoint.to_owned(),
        line: lower.id,
        paid: line.owed,
        owed_after: lower.owed,
        countersigned,
    })
}
