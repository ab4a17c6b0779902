//! Background loops: the payment watcher and the payword redeemer (one each per accepted
//! currency), the reaper of ended contracts, and the market heartbeat. Each retries with a bounded backoff.

use std::sync::Arc;
use std::time::Duration;

use clients::issuer::IssuerClient;
use clients::market::MarketClient;
use node::client::{http_client, ClientOptions, SignedClient};

use crate::agent::{Agent, MarketStanding};

/// How long one deposits long poll waits for news.
pub const WATCH_WAIT_MS: u64 = 20_000;
/// Backoff bounds after a failed poll or post.
const BACKOFF_MS_MIN: u64 = 500;
const BACKOFF_MS_MAX: u64 = 30_000;
/// Steps of 10 ms the heartbeat waits for the endpoint to be known.
const ENDPOINT_WAIT_STEPS_MAX: u32 = 500;
/// How often ended contracts are looked for.
pub const REAP_INTERVAL_MS: u64 = 1_000;

/// Follow `issuer`'s deposits to this agent and credit contracts, forever. With a bank
/// account for the currency (`bank`), the deposits are the account's, asked of the bank
/// (seed 000 section 5.2 step 5): the bank learns of them from the issuer.
pub async fn watch_payments(
    agent: Arc<Agent>,
    issuer: String,
    issuer_url: String,
    bank: Option<crate::config::BankAccount>,
) {
    let started = http_client(&ClientOptions::default()).and_then(|http| {
        let client = IssuerClient::new(http.clone(), &issuer_url, agent.key.clone(), None);
        Ok(match &bank {
            Some(b) => client.through_bank(clients::bank::BankAccess::new(http, &b.url, &b.token)?),
            None => client,
        })
    });
    let client = match started {
        Ok(c) => c,
        Err(e) => {
            agent.note_error(format!(
                "payment watcher for {issuer_url} cannot start: {e}"
            ));
            return;
        }
    };
    let issuer_url = match &bank {
        Some(b) => format!("{issuer_url} (through the bank at {})", b.url),
        None => issuer_url,
    };
    let mut backoff = BACKOFF_MS_MIN;
    loop {
        let step = async {
            if agent.currency_of(&issuer).is_none() {
                // For the dashboard's amounts (decimals and code); learned once.
                if let Ok(c) = client.currency().await {
                    agent.set_currency(&issuer, c);
                }
            }
            let after = agent.cursor(&issuer).await.map_err(|e| e.to_string())?;
            let page = client
                .deposits(after, WATCH_WAIT_MS, None)
                .await
                .map_err(|e| e.to_string())?;
            if !page.deposits.is_empty() {
                let credited = agent
                    .apply_deposits(&issuer, page)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(issuer = %issuer_url, credited, "deposits applied");
            }
            Ok::<_, String>(())
        };
        match step.await {
            Ok(()) => backoff = BACKOFF_MS_MIN,
            Err(e) => {
                tracing::warn!(issuer = %issuer_url, error = %e, "payment watcher");
                agent.note_error(format!("payments from {issuer_url}: {e}"));
                tokio::time::sleep(Duration::from_millis(backoff)).await;
                backoff = (backoff * 2).min(BACKOFF_MS_MAX);
            }
        }
    }
}

/// Longest the agent waits at shutdown for one issuer to redeem its paywords.
pub const SHUTDOWN_REDEEM_WAIT_MS_MAX: u64 = 5_000;

/// Redeem the paywords held in `issuer`'s currency when due, and follow the issuer's fraud
/// proofs, every `payword_redeem_interval_ms`, forever. While the issuer is away the agent
/// keeps accepting words (they need no issuer) and retries with a bounded backoff.
pub async fn paywords(agent: Arc<Agent>, issuer: String, issuer_url: String) {
    let Ok(issuer_id) = protocol::EntityId::parse(&issuer) else {
        return;
    };
    let http = match http_client(&ClientOptions::default()) {
        Ok(h) => h,
        Err(e) => {
            agent.note_error(format!(
                "payword redeemer for {issuer_url} cannot start: {e}"
            ));
            return;
        }
    };
    let client = SignedClient::new(http, &issuer_url, agent.key.clone());
    let counters = node::client::ClockCounter::default();
    let every = agent.config.payword_redeem_interval_ms.max(1);
    let mut backoff = BACKOFF_MS_MIN;
    loop {
        tokio::time::sleep(Duration::from_millis(every)).await;
        match agent
            .redeem_paywords(&issuer_id, &client, counters.next(), false)
            .await
        {
            Ok(_) => backoff = BACKOFF_MS_MIN,
            Err(e) => {
                tracing::warn!(issuer = %issuer_url, error = %e, "payword redemption");
                tokio::time::sleep(Duration::from_millis(backoff)).await;
                backoff = (backoff * 2).min(BACKOFF_MS_MAX);
            }
        }
    }
}

/// Redeem everything held, in every currency, once (at shutdown).
pub async fn redeem_at_shutdown(agent: Arc<Agent>) {
    let Ok(http) = http_client(&ClientOptions::default()) else {
        return;
    };
    let counters = node::client::ClockCounter::default();
    for c in &agent.config.currencies {
        let Ok(issuer) = protocol::EntityId::parse(&c.issuer) else {
            continue;
        };
        let client = SignedClient::new(http.clone(), &c.issuer_url, agent.key.clone());
        let redeemed = tokio::time::timeout(
            Duration::from_millis(SHUTDOWN_REDEEM_WAIT_MS_MAX),
            agent.redeem_paywords(&issuer, &client, counters.next(), true),
        )
        .await;
        match redeemed {
            Ok(Ok(credited)) if credited > 0 => {
                tracing::info!(issuer = %c.issuer_url, credited, "paywords redeemed at shutdown")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(issuer = %c.issuer_url, error = %e, "paywords not redeemed at shutdown: they are kept and redeemed after the restart")
            }
            Err(_) => {
                tracing::warn!(issuer = %c.issuer_url, "the issuer did not answer at shutdown: paywords kept for after the restart")
            }
        }
    }
}

/// Time between two samples of the history (space, probes, the market's rating).
pub const HISTORY_SAMPLE_MS: u64 = 60_000;

/// Sample the history now and every [`HISTORY_SAMPLE_MS`], forever.
pub async fn history(agent: Arc<Agent>) {
    loop {
        if let Err(e) = agent.sample_history().await {
            tracing::warn!(error = %e, "history sample");
        }
        tokio::time::sleep(Duration::from_millis(HISTORY_SAMPLE_MS)).await;
    }
}

/// Delete the data of ended contracts, forever.
pub async fn reap(agent: Arc<Agent>) {
    loop {
        tokio::time::sleep(Duration::from_millis(REAP_INTERVAL_MS)).await;
        if let Err(e) = agent.reap().await {
            tracing::warn!(error = %e, "reaper");
            agent.note_error(format!("reaper: {e}"));
        }
    }
}

/// Post the signed offer to the market now and every `every`, forever.
pub async fn heartbeat(agent: Arc<Agent>, market_url: String, every: Duration) {
    let http = match http_client(&ClientOptions::default()) {
        Ok(h) => h,
        Err(e) => {
            agent.note_error(format!("heartbeat cannot start: {e}"));
            return;
        }
    };
    let market = SignedClient::new(http.clone(), &market_url, agent.key.clone());
    let book = MarketClient::new(http, &market_url, agent.key.clone());
    let counters = node::client::ClockCounter::default();
    // The endpoint is known once the server bound; the offer must carry it.
    for _ in 0..ENDPOINT_WAIT_STEPS_MAX {
        if !agent.endpoint().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    loop {
        let result = async {
            let offer = agent.offer().await.map_err(|e| e.to_string())?;
            let body = serde_json::to_vec(&offer).map_err(|e| e.to_string())?;
            market
                .command::<serde_json::Value>("POST", "/v1/offers", body, counters.next())
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match result {
            Ok(_) => {
                tracing::debug!(market = %market_url, "offer posted");
                // The market takes a heartbeat as an answered probe (`market::auditor`).
                agent
                    .probes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Some(standing) = read_standing(&book, &market_url, &agent).await {
                    agent.set_standing(standing);
                }
            }
            Err(e) => {
                tracing::warn!(market = %market_url, error = %e, "heartbeat");
                agent.note_error(format!("heartbeat to {market_url}: {e}"));
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// This agent's line in the market's book, if it is there.
async fn read_standing(
    book: &MarketClient,
    market_url: &str,
    agent: &Agent,
) -> Option<MarketStanding> {
    let me = agent.key.entity().as_str();
    let line = book.listing_of(me, None).await.ok()??;
    Some(MarketStanding::from_listing(&line, market_url))
}
