//! The publisher's free-rider threshold (issue 16, DESIGN 11, seed 004): a free view is the
//! publisher's gift (it pays the agents for the reads), so a viewer whose agreed records at the
//! market show it consumed more than it contributed by more than the threshold is answered
//! `402 free_rider` with the view's read cost, and served once it paid that ahead (the gateway
//! does so by itself). A viewer with no records watches for free.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cdn::gateway::GatewayOptions;
use clients::issuer::IssuerClient;
use devnet::{Devnet, DevnetFile, Options};
use node::client::{ClientOptions, SignedClient};
use node::testing::eventually;
use protocol::book::MatchRequest;

const REQUEST_WAIT_MS_MAX: u64 = 60_000;
const THRESHOLD: u64 = 5;

async fn watch(publisher: &str, wallet: &Path, content: &str) -> (u16, Vec<u8>, u64) {
    let gw =
        cdn::gateway::start(GatewayOptions::new(publisher, wallet.to_path_buf())).expect("gateway");
    let resp = reqwest::Client::new()
        .get(format!("{}/v/{content}", gw.url))
        .timeout(Duration::from_millis(REQUEST_WAIT_MS_MAX))
        .send()
        .await
        .expect("watch");
    let code = resp.status().as_u16();
    let body = resp.bytes().await.expect("body").to_vec();
    let stats: serde_json::Value = reqwest::get(format!("{}/v1/stats/{content}", gw.url))
        .await
        .expect("stats")
        .json()
        .await
        .unwrap_or_default();
    (code, body, stats["spend"].as_u64().unwrap_or(0))
}

async fn balance(issuer: &str, key: &Path) -> i64 {
    IssuerClient::from_key_file(issuer, key, &ClientOptions::default())
        .expect("wallet")
        .balance()
        .await
        .expect("balance")
        .balance
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_rider_pays_ahead_for_a_free_view() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let mut opts = Options::new(&dir).expect("options");
    opts.heartbeat_s = 1;
    // The market crawls records as often as it audits.
    opts.audit_interval_s = 2;
    opts.cdn = true;
    opts.cdn_args = vec!["--free-rider-threshold".into(), THRESHOLD.to_string()];
    let net = tokio::task::spawn_blocking(move || Devnet::up(&opts))
        .await
        .expect("join")
        .expect("devnet");
    let cdn_info = net.cdn.as_ref().expect("the devnet started a publisher");
    let publisher = cdn_info.url.clone();
    let file = DevnetFile::load(&dir).expect("devnet.json");

    let original: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let path = tmp.path().join("free.bin");
    std::fs::write(&path, &original).expect("write");
    let content = common::publish(
        &publisher,
        &cdn_info.data.join("identity.key"),
        &path,
        &[
            "--piece-kib",
            "32",
            "--replicas",
            "2",
            "--price-per-view",
            "0",
        ],
    )["content"]
        .as_str()
        .expect("content")
        .to_owned();

    // A viewer with no records: the free view is free.
    let newcomer = tmp.path().join("newcomer.key");
    let key = node::keyfile::generate(&newcomer).expect("key");
    IssuerClient::from_key_file(
        &file.issuer.url,
        &file.wallet.key,
        &ClientOptions::default(),
    )
    .expect("wallet")
    .transfer(key.entity(), 10_000, None)
    .await
    .expect("fund");
    let (code, body, spend) = watch(&publisher, &newcomer, &content).await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert!(body == original, "the stream is the file");
    assert_eq!(spend, 0);
    assert_eq!(balance(&file.issuer.url, &newcomer).await, 10_000);

    // The devnet's wallet buys storage: its agreed records say it consumed three contracts'
    // worth and contributed nothing, which the market learns by crawling the agents.
    let request = MatchRequest {
        currency: String::new(),
        shard_bytes: 64 * 1024,
        data_shards: 2,
        total_shards: Some(3),
        duration_s: 3600,
        expected_read_bytes: 0,
        max_failure_probability: 1e-3,
        exclude: vec![],
    };
    let bought = devnet::buy(&dir, request).await.expect("buy");
    assert!(bought["contracts"]
        .as_array()
        .is_some_and(|c| c.iter().all(|c| c["recorded"] == true)));
    let wallet_key = Arc::new(node::keyfile::load(&file.wallet.key).expect("wallet key"));
    let http = node::client::http_client(&ClientOptions::default()).expect("http");
    let market =
        clients::market::MarketClient::new(http.clone(), &file.market.url, wallet_key.clone());
    eventually(40_000, "the market to see the wallet consume", || async {
        market
            .reputation(wallet_key.entity().as_str())
            .await
            .is_ok_and(|r| r.consumed - r.contributed > THRESHOLD as f64)
    })
    .await;

    // Asked directly: 402 free_rider, with what to pay ahead.
    let body = serde_json::to_vec(&protocol::cdn::BuyView {
        content: content.clone(),
        view: uuid::Uuid::new_v4().to_string(),
        payer: None,
    })
    .expect("json");
    let e = SignedClient::new(http, &publisher, wallet_key.clone())
        .command::<serde_json::Value>("POST", "/v1/views", body, node::now_ms())
        .await
        .expect_err("a free rider's free view");
    assert_eq!(e.code(), Some("free_rider"), "{e}");
    let due = e.amount_due().expect("amount_due");
    assert!(due > 0);

    // Through a gateway: paid ahead, then served.
    let before = balance(&file.issuer.url, &file.wallet.key).await;
    let (code, body, spend) = watch(&publisher, &file.wallet.key, &content).await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert!(body == original, "the stream is the file");
    assert_eq!(spend, due, "the gateway paid the read cost ahead");
    let after = balance(&file.issuer.url, &file.wallet.key).await;
    assert_eq!(before - after, due as i64, "paid once");
    tokio::task::spawn_blocking(move || drop(net))
        .await
        .expect("down");
}
