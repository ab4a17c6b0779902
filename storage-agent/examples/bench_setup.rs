//! Benchmark set-up for scripts/bench-agent.sh (not a test): against a running issuer and agent,
//! buy and pay a contract, time PUTs of 1 MiB objects (write MiB/s), and hand out a retrieval
//! token for one of them good for many reads. Prints one JSON object.
//!
//! usage: bench_setup ISSUER_URL MINT_KEY AGENT_URL WRITES

use std::sync::Arc;
use std::time::Instant;

use clients::agent::AgentClient;
use clients::issuer::IssuerClient;
use node::client::{http_client, ClientOptions, CounterStore};

const OBJECT_BYTES: usize = 1 << 20;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() == 5,
        "usage: bench_setup ISSUER_URL MINT_KEY AGENT_URL WRITES"
    );
    let (issuer_url, mint_key, agent_url) = (&args[1], std::path::Path::new(&args[2]), &args[3]);
    let writes: usize = args[4].parse()?;
    let http = http_client(&ClientOptions::default())?;
    let mint = IssuerClient::new(
        http.clone(),
        issuer_url,
        Arc::new(node::keyfile::load(mint_key)?),
        Some(CounterStore::beside_key(mint_key)),
    );
    let buyer = Arc::new(protocol::KeyPair::generate()?);
    mint.transfer(buyer.entity(), 1_000_000_000_000, None)
        .await?;
    let wallet_dir = tempfile::tempdir()?;
    let wallet = IssuerClient::new(
        http.clone(),
        issuer_url,
        buyer.clone(),
        Some(CounterStore::beside_key(
            &wallet_dir.path().join("buyer.key"),
        )),
    );
    let client = AgentClient::new(http, agent_url, buyer.clone());
    let (_, offer) = client.offer().await?;
    let issuer = mint.signed().audience().await?.clone();
    let block = (writes as u64 + 1) * OBJECT_BYTES as u64;
    let terms =
        AgentClient::terms_from_offer(&offer, buyer.entity(), &issuer, block, 3600, vec![])?;
    client.buy(&wallet, &terms, 100_000_000_000).await?;
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while client.contract(&terms.id).await?.status != "active" {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the contract did not turn active"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let data: Vec<u8> = (0..OBJECT_BYTES).map(|i| (i * 31 % 251) as u8).collect();
    let started = Instant::now();
    for n in 0..writes {
        client
            .put(&terms.id, &format!("obj-{n}"), data.clone())
            .await?;
    }
    let write_s = started.elapsed().as_secs_f64();
    let token = client
        .retrieval(
            &terms.id,
            "obj-0",
            storage_agent::agent::RETRIEVAL_USES_MAX,
            3600,
        )
        .await?;
    println!(
        "{}",
        serde_json::json!({
            "contract": terms.id,
            "token_url": token.url,
            "writes": writes,
            "write_mib_per_s": writes as f64 / write_s,
            "read_per_kib": terms.read_per_kib,
        })
    );
    Ok(())
}
