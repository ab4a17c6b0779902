//! Issue 21 on a devnet: a publisher paying its agents by transfer (`CDN_PAYWORDS=0`, as
//! before paywords) publishes and its video plays byte for byte; then the top-up it makes for
//! a window's reads at several agents (`clients::pay::top_up_many`, what
//! `Publisher::cover_reads` calls) pays all of them with one batch command, and each agent
//! credits exactly its amount to exactly its contract.

mod common;

use cdn::gateway::GatewayOptions;
use clients::agent::AgentClient;
use clients::issuer::IssuerClient;
use common::{ffmpeg, publish_clip, watch};
use devnet::{Devnet, Options};
use node::client::ClientOptions;
use node::testing::eventually;
use protocol::EntityId;

/// The publisher's key, to ask agents about its contracts as their buyer.
fn pub_signer(key: &std::path::Path) -> std::sync::Arc<protocol::KeyPair> {
    std::sync::Arc::new(node::keyfile::load(key).expect("publisher key"))
}

/// Longest any one wait here may take.
const WAIT_MS_MAX: u64 = 60_000;

async fn metric(issuer: &str, name: &str) -> u64 {
    node::client::metric(&reqwest::Client::new(), issuer, name)
        .await
        .unwrap_or_else(|| panic!("no {name} in the issuer's metrics")) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_paying_by_transfer_tops_up_its_agents_in_one_batch() {
    // This test binary pays by transfer only; set before the publisher and gateway start.
    std::env::set_var("CDN_PAYWORDS", "0");
    if ffmpeg().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut opts = Options::new(&tmp.path().join("net")).expect("options");
    opts.heartbeat_s = 1;
    let mut net = tokio::task::spawn_blocking(move || Devnet::up(&opts))
        .await
        .expect("join")
        .expect("devnet");
    let wallet =
        IssuerClient::from_key_file(&net.issuer.url, &net.wallet.key, &ClientOptions::default())
            .expect("wallet");

    let pub_dir = tmp.path().join("publisher");
    let options = cdn::serve::ServeOptions {
        data_dir: pub_dir.clone(),
        listen: "127.0.0.1:0".into(),
        market: net.market.url.clone(),
        database: None,
        issuer_url: Some(net.issuer.url.clone()),
        publisher: cdn::publisher::PublisherOptions {
            agents: 4,
            block_bytes: 16 << 20,
            contract_days: 1,
            ..cdn::publisher::PublisherOptions::default()
        },
        tls: None,
        bank: None,
    };
    let running = tokio::task::spawn_blocking(move || cdn::serve::start(options))
        .await
        .expect("join")
        .expect("publisher");
    let pub_key = pub_dir.join("identity.key");
    let pub_id = node::keyfile::load(&pub_key)
        .expect("publisher key")
        .entity()
        .clone();
    wallet
        .transfer(&pub_id, 20_000_000, None)
        .await
        .expect("fund the publisher");

    let video = tmp.path().join("clip.mp4");
    let (published, original) = publish_clip(&running.url, &pub_key, &video, 3);
    let content = published["content"].as_str().expect("content").to_owned();

    let viewer = tmp.path().join("viewer.key");
    let viewer_id = node::keyfile::generate(&viewer)
        .expect("key")
        .entity()
        .clone();
    wallet
        .transfer(&viewer_id, 10_000, None)
        .await
        .expect("fund the viewer");
    watch(
        GatewayOptions::new(&running.url, viewer),
        &content,
        &original,
        "the video differs",
        WAIT_MS_MAX,
    )
    .await;

    // The publisher's contracts, each topped up by a different amount in one batch.
    let status: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/status", running.url))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    let contracts: Vec<(EntityId, String, String)> = status["contracts"]
        .as_array()
        .expect("contracts")
        .iter()
        .map(|c| {
            (
                EntityId::parse(c["agent"].as_str().expect("agent")).expect("entity"),
                c["endpoint"].as_str().expect("endpoint").to_owned(),
                c["id"].as_str().expect("id").to_owned(),
            )
        })
        .collect();
    assert!(contracts.len() >= 2, "{status}");
    let issuer = EntityId::parse(&net.issuer.entity).expect("issuer id");
    let publisher_wallet =
        IssuerClient::from_key_file(&net.issuer.url, &pub_key, &ClientOptions::default())
            .expect("publisher wallet");
    let http = reqwest::Client::new();
    let mut before = Vec::new();
    for (_, endpoint, id) in &contracts {
        let agent = AgentClient::new(http.clone(), endpoint, pub_signer(&pub_key));
        before.push(agent.contract(id).await.expect("contract").credit);
    }
    let batches_before = metric(&net.issuer.url, "lcp_batch_commands_total").await;
    let top_ups: Vec<clients::pay::TopUp<'_>> = contracts
        .iter()
        .enumerate()
        .map(|(i, (agent, endpoint, id))| clients::pay::TopUp {
            agent: clients::pay::AgentRef {
                entity: agent,
                endpoint,
                issuer: &issuer,
            },
            contract: id,
            amount: 100 + i as u64,
        })
        .collect();
    let outcomes = clients::pay::top_up_many(&publisher_wallet, &top_ups)
        .await
        .expect("top-ups answered");
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(
        metric(&net.issuer.url, "lcp_batch_commands_total").await - batches_before,
        1,
        "one batch command paid every agent"
    );
    for (i, (_, endpoint, id)) in contracts.iter().enumerate() {
        let agent = AgentClient::new(http.clone(), endpoint, pub_signer(&pub_key));
        let expected = before[i] + 100 + i as i64;
        eventually(WAIT_MS_MAX, "the agent to credit its top-up", || async {
            agent.contract(id).await.is_ok_and(|v| v.credit == expected)
        })
        .await;
    }
    drop(running);
    net.down();
}
