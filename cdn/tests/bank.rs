//! Seed 000 section 5.2 end to end on a devnet (`devnet up --cdn --bank`: real binaries,
//! loopback): every agent ("Bob") banks opaquely at the devnet's bank as `agent-<i>@host`;
//! the publisher ("video.com") pays them there for its contracts; the agents learn of each
//! payment from the bank, not from the issuer; Alice plays the video through her gateway;
//! and every balance adds up: each agent's income is its account's balance, and the bank
//! holds at the issuer exactly what its customers' accounts add up to.
//!
//! Then the bank is stopped: a contract paid to `agent-0@bank` meanwhile stays unpaid at
//! the agent (it cannot hear of the payment), and becomes active once the bank is back.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cdn::gateway::GatewayOptions;
use clients::agent::AgentClient;
use clients::issuer::IssuerClient;
use common::{ffmpeg, publish, publish_clip};
use devnet::{Devnet, Options, Which};
use node::client::ClientOptions;
use node::testing::eventually;
use protocol::EntityId;

/// Longest any one wait here may take.
const WAIT_MS_MAX: u64 = 60_000;

/// The bank token in agent `i`'s configuration (its account's read-only token).
fn agent_token(net: &Devnet, i: usize) -> (String, String) {
    let config = storage_agent::config::AgentConfig::load(&net.agents[i].data).expect("config");
    let bank = config.currencies[0].bank.clone().expect("the agent banks");
    (bank.url, bank.token)
}

async fn account(net: &Devnet, i: usize) -> protocol::name::AccountAnswer {
    let (url, token) = agent_token(net, i);
    clients::bank::BankAccess::new(reqwest::Client::new(), &url, &token)
        .expect("token")
        .account()
        .await
        .expect("account")
}

/// What agent `i` says it was paid (`storage-agent status --json`, income per currency).
fn income(net: &Devnet, i: usize) -> u64 {
    let out = std::process::Command::new(
        devnet::default_bin_dir()
            .expect("bins")
            .join("storage-agent"),
    )
    .args(["status", "--json", "--data"])
    .arg(&net.agents[i].data)
    .output()
    .expect("status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    v["earnings"][0]["income"].as_u64().expect("income")
}

/// Watch `content` through a gateway made with `o`: it must stream the file byte for byte.
async fn watch(o: GatewayOptions, content: &str, original: &[u8], what: &str) {
    common::watch(o, content, original, what, WAIT_MS_MAX).await;
}

async fn key_balance(net: &Devnet, key: &Path) -> i64 {
    IssuerClient::from_key_file(&net.issuer.url, key, &ClientOptions::default())
        .expect("wallet")
        .balance()
        .await
        .expect("balance")
        .balance
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_pays_bob_at_his_bank_and_alice_watches() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    if ffmpeg().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut opts = Options::new(&tmp.path().join("net")).expect("options");
    opts.heartbeat_s = 1;
    opts.cdn = true;
    opts.bank = true;
    let mut net = tokio::task::spawn_blocking(move || Devnet::up(&opts))
        .await
        .expect("join")
        .expect("devnet");
    let bank = net.bank.as_ref().expect("the devnet started a bank");
    let bank_host = bank.url.trim_start_matches("http://").to_owned();
    let bank_key = bank.data.join("identity.key");
    let issuer = EntityId::parse(&net.issuer.entity).expect("issuer id");

    // Every agent's offer names its account as where to pay it.
    let http = reqwest::Client::new();
    let key = Arc::new(protocol::KeyPair::generate().expect("key"));
    for (i, a) in net.agents.iter().enumerate() {
        let (_, offer) = AgentClient::new(http.clone(), &a.url, key.clone())
            .offer()
            .await
            .expect("offer");
        assert_eq!(
            offer.currency(&issuer).and_then(|c| c.pay_to.clone()),
            Some(format!("agent-{i}@{bank_host}")),
            "agent {i}'s offer"
        );
    }

    // video.com publishes: it buys contracts from the agents, paying each at its bank.
    let cdn_info = net.cdn.as_ref().expect("publisher");
    let publisher = cdn_info.url.clone();
    let publisher_key = cdn_info.data.join("identity.key");
    let video = tmp.path().join("clip.mp4");
    let (published, original) = publish_clip(&publisher, &publisher_key, &video, 3);
    let content = published["content"].as_str().expect("content").to_owned();

    // Alice, with a wallet of her own, plays it through her gateway.
    let alice = tmp.path().join("alice.key");
    let alice_id = node::keyfile::generate(&alice)
        .expect("key")
        .entity()
        .clone();
    IssuerClient::from_key_file(&net.issuer.url, &net.wallet.key, &ClientOptions::default())
        .expect("wallet")
        .transfer(&alice_id, 10_000, None)
        .await
        .expect("fund alice");
    let mut o = GatewayOptions::new(&publisher, alice.clone());
    o.ahead_pieces = 3;
    watch(o, &content, &original, "the video differs").await;
    assert!(
        key_balance(&net, &alice).await < 10_000,
        "alice paid for the view"
    );

    // Dave has no funded key: his bank pays for his view (DESIGN 14), naming him, and the
    // publisher sells it on the deposit from the bank that names him.
    let net_dir = net.dir.clone();
    let run_bank = |args: &[&str], stdin: &str| -> String {
        devnet::bank::cli(&net_dir, args, stdin).unwrap_or_else(|e| panic!("bank {args:?}: {e}"))
    };
    run_bank(
        &["customer", "add", "--name", "dave", "--password-stdin"],
        "a long password\n",
    );
    let dave_payee =
        clients::names::resolve(&format!("dave@{bank_host}"), &ClientOptions::default())
            .await
            .expect("dave resolves");
    IssuerClient::from_key_file(&net.issuer.url, &net.wallet.key, &ClientOptions::default())
        .expect("wallet")
        .transfer_to(&dave_payee, 5_000, None)
        .await
        .expect("pay dave");
    let dave_token = run_bank(
        &[
            "token",
            "grant",
            "--customer",
            "dave",
            "--issuer",
            &net.issuer.entity,
            "--limit",
            "1000",
            "--label",
            "gateway",
        ],
        "",
    );
    let dave_link = clients::bank::BankLink {
        url: net.bank.as_ref().expect("bank").url.clone(),
        token: dave_token.clone(),
    };
    let dave_access = dave_link.access(http.clone()).expect("token");
    eventually(WAIT_MS_MAX, "dave's account to be credited", || async {
        dave_access
            .balance()
            .await
            .is_ok_and(|b| b.balance == 5_000)
    })
    .await;
    let dave = tmp.path().join("dave.key");
    node::keyfile::generate(&dave).expect("key");
    let mut o = GatewayOptions::new(&publisher, dave.clone());
    o.bank = Some(dave_link);
    watch(o, &content, &original, "dave's video differs").await;
    assert_eq!(key_balance(&net, &dave).await, 0, "dave's key paid nothing");
    let spent = 5_000 - dave_access.balance().await.expect("balance").balance;
    let descriptor: serde_json::Value = http
        .get(format!("{}/.well-known/lcp", net.issuer.url))
        .send()
        .await
        .expect("descriptor")
        .json()
        .await
        .expect("json");
    let fees = |name: &str| descriptor["fees"][name].as_u64().unwrap_or(0);
    let fee = protocol::fee_for(
        protocol::Amount(250),
        fees("transfer_flat"),
        fees("transfer_bps"),
    )
    .expect("fee")
    .0;
    assert_eq!(
        spent,
        250 + fee as i64,
        "the view's price and the issuer's fee"
    );

    // Every balance adds up. Each agent was paid into its account, and its own books say
    // what the account holds (the agent credited what its bank reported, nothing else).
    let status: serde_json::Value = http
        .get(format!("{publisher}/v1/status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    let contracts = status["contracts"].as_array().expect("contracts");
    assert!(!contracts.is_empty());
    let mut customers_total = 0i64;
    for i in 0..net.agents.len() {
        let acct = account(&net, i).await;
        assert_eq!(acct.name, format!("agent-{i}@{bank_host}"));
        assert_eq!(acct.allowance, 0, "an agent's token spends nothing");
        eventually(
            WAIT_MS_MAX,
            "the agent's income to match its account",
            || async { income(&net, i) == account(&net, i).await.balance as u64 },
        )
        .await;
        customers_total += account(&net, i).await.balance;
        // The publisher's payments for this agent's contracts went to the bank, not to the
        // agent's own key.
        let agent_key = net.agents[i].data.join("identity.key");
        let own =
            IssuerClient::from_key_file(&net.issuer.url, &agent_key, &ClientOptions::default())
                .expect("agent wallet")
                .deposits(0, 0, None)
                .await
                .expect("deposits");
        let theirs: Vec<&str> = contracts
            .iter()
            .filter(|c| c["agent"] == net.agents[i].entity)
            .filter_map(|c| c["id"].as_str())
            .collect();
        assert!(
            own.deposits.iter().all(|d| d
                .transaction_id
                .as_deref()
                .is_none_or(|t| !theirs.contains(&t))),
            "agent {i} was paid on its own key for a contract"
        );
    }
    assert!(customers_total > 0, "the agents were paid");
    // Dave is a customer too.
    customers_total += dave_access.balance().await.expect("balance").balance;
    assert_eq!(
        key_balance(&net, &bank_key).await,
        customers_total,
        "the bank holds at the issuer what its customers' accounts add up to"
    );

    // Bob's agent asks its bank whether a payment arrived: with the bank down, a contract
    // paid meanwhile stays unpaid at the agent; once the bank is back, it is active.
    let buyer_key = tmp.path().join("buyer.key");
    let buyer = Arc::new(node::keyfile::generate(&buyer_key).expect("key"));
    IssuerClient::from_key_file(&net.issuer.url, &net.wallet.key, &ClientOptions::default())
        .expect("wallet")
        .transfer(buyer.entity(), 50_000, None)
        .await
        .expect("fund buyer");
    let agent0 = AgentClient::new(http.clone(), &net.agents[0].url, buyer.clone());
    let (_, offer) = agent0.offer().await.expect("offer");
    let terms =
        AgentClient::terms_from_offer(&offer, buyer.entity(), &issuer, 1 << 20, 3_600, vec![])
            .expect("terms");
    // Where to pay is learned (and remembered) while the bank answers names.
    let payee = clients::names::agent_payee(&net.agents[0].url, &terms.agent, &issuer)
        .await
        .expect("payee");
    assert_eq!(payee.userid.as_deref(), Some("agent-0"));
    agent0.propose(&terms).await.expect("propose");
    net.stop(Which::Bank).expect("stop bank");
    let wallet =
        IssuerClient::from_key_file(&net.issuer.url, &buyer_key, &ClientOptions::default())
            .expect("buyer wallet");
    clients::agent::pay(&wallet, &net.agents[0].url, &terms, 1_000)
        .await
        .expect("pay agent-0@bank while the bank is down");
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    assert_eq!(
        agent0.contract(&terms.id).await.expect("contract").status,
        "pending_payment",
        "the agent cannot have heard of a payment its bank has not seen"
    );
    net.restart(Which::Bank).expect("restart bank");
    eventually(
        WAIT_MS_MAX,
        "the contract to be active once the bank is back",
        || async {
            agent0
                .contract(&terms.id)
                .await
                .is_ok_and(|c| c.status == "active")
        },
    )
    .await;
    let view = agent0.contract(&terms.id).await.expect("contract");
    assert_eq!(view.paid, terms.contract_price + 1_000);
    // Paid: the agent hands out retrieval instructions for what the buyer stores.
    agent0
        .put(&terms.id, "note", b"paid through the bank".to_vec())
        .await
        .expect("put");
    let r = agent0
        .retrieval(&terms.id, "note", 1, 600)
        .await
        .expect("retrieval instructions");
    assert!(!r.token.is_empty());

    // video.com banks there too (`cdn serve --bank`): it pays the agents from its account
    // (book entries: they bank at the same bank) and is paid for views into it, so dave's
    // view moves money inside the bank only.
    run_bank(
        &["customer", "add", "--name", "videocom", "--password-stdin"],
        "a long password\n",
    );
    let videocom =
        clients::names::resolve(&format!("videocom@{bank_host}"), &ClientOptions::default())
            .await
            .expect("videocom resolves");
    IssuerClient::from_key_file(&net.issuer.url, &net.wallet.key, &ClientOptions::default())
        .expect("wallet")
        .transfer_to(&videocom, 20_000_000, None)
        .await
        .expect("fund video.com");
    let videocom_link = clients::bank::BankLink {
        url: net.bank.as_ref().expect("bank").url.clone(),
        token: run_bank(
            &[
                "token",
                "grant",
                "--customer",
                "videocom",
                "--issuer",
                &net.issuer.entity,
                "--limit",
                "20000000",
                "--label",
                "publisher",
            ],
            "",
        ),
    };
    let videocom_access = videocom_link.access(http.clone()).expect("token");
    eventually(
        WAIT_MS_MAX,
        "video.com's account to be credited",
        || async {
            videocom_access
                .balance()
                .await
                .is_ok_and(|b| b.balance == 20_000_000)
        },
    )
    .await;
    let pub_dir = tmp.path().join("videocom");
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
        bank: Some(videocom_link),
    };
    let running = tokio::task::spawn_blocking(move || cdn::serve::start(options))
        .await
        .expect("join")
        .expect("a publisher paid through its bank");
    let banked_publisher = running.url.clone();
    let d: serde_json::Value = http
        .get(format!("{banked_publisher}/.well-known/lcp"))
        .send()
        .await
        .expect("descriptor")
        .json()
        .await
        .expect("json");
    assert_eq!(d["pay_to"], format!("videocom@{bank_host}"));
    let published = publish(
        &banked_publisher,
        &pub_dir.join("identity.key"),
        &video,
        &[
            "--piece-kib",
            "32",
            "--replicas",
            "2",
            "--price-per-view",
            "300",
        ],
    );
    let content = published["content"].as_str().expect("content").to_owned();
    let publisher_paid = 20_000_000 - videocom_access.balance().await.expect("b").balance;
    assert!(
        publisher_paid > 0,
        "video.com paid its agents from its account"
    );
    let dave_before = dave_access.balance().await.expect("balance").balance;
    let mut o = GatewayOptions::new(&banked_publisher, dave.clone());
    o.bank = Some(clients::bank::BankLink {
        url: net.bank.as_ref().expect("bank").url.clone(),
        token: dave_token.clone(),
    });
    watch(o, &content, &original, "the video differs").await;
    assert_eq!(
        dave_before - dave_access.balance().await.expect("balance").balance,
        300,
        "the view's price, and no fee: a book entry inside the bank"
    );
    let pub_key = pub_dir.join("identity.key");
    assert_eq!(
        key_balance(&net, &pub_key).await,
        0,
        "video.com's key holds nothing"
    );
    drop(running);

    // Still every balance adds up: the bank holds what its customers own.
    let mut total = dave_access.balance().await.expect("b").balance
        + videocom_access.balance().await.expect("b").balance;
    for i in 0..net.agents.len() {
        total += account(&net, i).await.balance;
    }
    assert_eq!(key_balance(&net, &bank_key).await, total);
    net.down();
}
