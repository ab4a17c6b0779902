//! `devnet buy`: the walk-through of what a buyer does on a running devnet (a match,
//! contracts formed, paid, used, registered and recorded).

use std::sync::Arc;

use anyhow::Context;
use clients::market::MarketClient;
use clients::procure;
use protocol::book::MatchRequest;

use super::DevnetFile;

/// The walk-through: match, then per agent form, pay, use and register a contract.
pub async fn buy(
    dir: &std::path::Path,
    mut request: MatchRequest,
) -> anyhow::Result<serde_json::Value> {
    let f = DevnetFile::load(dir)?;
    request.currency = f.issuer.entity.clone();
    let http = node::client::http_client(&node::client::ClientOptions::default())?;
    let key = Arc::new(node::keyfile::load(&f.wallet.key)?);
    let wallet = clients::issuer::IssuerClient::from_key_file(
        &f.issuer.url,
        &f.wallet.key,
        &node::client::ClientOptions::default(),
    )?;
    let market = MarketClient::new(http.clone(), &f.market.url, key.clone());
    let answer = market
        .match_agents(&request)
        .await
        .context("the market found no agents")?;
    let market_entity = protocol::EntityId::parse(&f.market.entity)
        .map_err(|_| anyhow::anyhow!("devnet.json: bad market entity"))?;
    let issuer = protocol::EntityId::parse(&f.issuer.entity)
        .map_err(|_| anyhow::anyhow!("devnet.json: bad issuer entity"))?;
    let order = procure::Order {
        issuer,
        block_bytes: request.shard_bytes,
        duration_s: request.duration_s,
        auditors: vec![market_entity],
    };
    let mut contracts = Vec::new();
    for (i, chosen) in answer.agents.iter().enumerate() {
        let seller =
            procure::Seller::open(&http, key.clone(), &chosen.agent, &chosen.endpoint).await?;
        // Credit for writing the shard and reading it back once, on top of the contract price.
        let credit = |terms: &protocol::market::Contract| {
            let write = protocol::market::per_kib_charge(terms.write_per_kib, request.shard_bytes);
            let read = protocol::market::per_kib_charge(terms.read_per_kib, request.shard_bytes);
            match (write, read) {
                (Ok(w), Ok(r)) => w.saturating_add(r),
                // Too much to pay: the purchase stops at the overflow check.
                _ => u64::MAX,
            }
        };
        let bought = procure::buy(&seller, &order, credit, &wallet, &mut procure::NoJournal)
            .await
            .with_context(|| format!("buying from {}", chosen.endpoint))?;
        let terms = &bought.terms;
        let shard: Vec<u8> = (0..request.shard_bytes)
            .map(|b| (b as u8) ^ (i as u8))
            .collect();
        let name = format!("shard-{i}");
        let info = seller.client.put(&terms.id, &name, shard).await?;
        let object = procure::object(&name, &info.merkle_root, info.size);
        procure::register(&market, &bought.signed, vec![object]).await?;
        // Recorded by both sides (DESIGN 11): the wallet's chain beside its key, the agent's.
        let recorded = clients::records::record_deal(
            &f.wallet.key,
            key.clone(),
            seller.client.signed(),
            protocol::record::kinds::CONTRACT,
            &clients::records::contract_active(terms),
        )
        .await;
        contracts.push(serde_json::json!({
            "recorded": matches!(recorded, clients::records::Agreed::Yes(_)),
            "contract": terms.id,
            "agent": chosen.agent,
            "endpoint": chosen.endpoint,
            "paid": bought.amount(),
            "contract_price": terms.contract_price,
            "prepaid_credit": bought.credit,
            "object": name,
            "merkle_root": info.merkle_root,
        }));
    }
    let balance = wallet.balance().await?.balance;
    let currency = wallet.currency().await?;
    Ok(serde_json::json!({
        "currency": currency,
        "agents": answer.agents.iter().map(|a| &a.agent).collect::<Vec<_>>(),
        "total_price": answer.total_price,
        "failure_probability": answer.failure_probability,
        "contracts": contracts,
        "balance": balance,
    }))
}
