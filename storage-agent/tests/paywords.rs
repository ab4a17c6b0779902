//! Paywords at the storage agent (issue 15): writes, reads and audits paid by words with no
//! issuer involved, bad words refused with the credit unchanged, redemption once the issuer
//! is back, and a double spend across two agents caught and acted on.

mod util;

use std::path::Path;
use std::sync::Arc;

use clients::agent::AgentClient;
use clients::issuer::IssuerClient;
use clients::paywords::{PaywordPayer, PaywordPayment};
use clients::wallet::{self, Wallet};
use node::client::{http_client, ClientOptions, CounterStore};
use protocol::payword::{envelope_header_value, sign_block, Payword, Word};
use protocol::KeyPair;
use storage_agent::config::{AgentConfig, CurrencyConfig};
use util::{eventually, spawn_agent, PRICES};

struct Setup {
    dir: tempfile::TempDir,
    issuer: Option<lcp::server::RunningIssuer>,
    issuer_addr: std::net::SocketAddr,
    agents: Vec<storage_agent::serve::RunningAgent>,
    http: reqwest::Client,
    mint: IssuerClient,
}

fn start_agent(
    dir: &Path,
    issuer: &lcp::server::RunningIssuer,
) -> storage_agent::serve::RunningAgent {
    std::fs::create_dir_all(dir).expect("agent dir");
    node::keyfile::generate(&dir.join("identity.key")).expect("agent key");
    agent_config(dir, issuer, 1);
    storage_agent::serve::start(storage_agent::serve::ServeOptions {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".into(),
        database: None,
        market: None,
        heartbeat_s: 60,
        tls: None,
        endpoint: None,
    })
    .expect("agent")
}

impl Setup {
    fn start(agents: usize) -> Setup {
        let dir = tempfile::tempdir().expect("tmp");
        let issuer = lcp::testing::start_issuer(&dir.path().join("issuer"));
        let agents = (0..agents)
            .map(|i| start_agent(&dir.path().join(format!("agent{i}")), &issuer))
            .collect();
        let http = http_client(&ClientOptions::default()).expect("http");
        let mint = lcp::testing::mint(&issuer, &dir.path().join("issuer"), &http);
        Setup {
            issuer_addr: issuer.addr,
            issuer: Some(issuer),
            dir,
            agents,
            http,
            mint,
        }
    }

    /// A funded buyer with a wallet of chains beside its key.
    async fn buyer(&self, name: &str, funds: u64) -> (Arc<KeyPair>, IssuerClient, Wallet) {
        let path = self.dir.path().join(format!("{name}.key"));
        let key = Arc::new(node::keyfile::generate(&path).expect("key"));
        self.mint
            .transfer(key.entity(), funds, Some("funding"))
            .await
            .expect("fund");
        let issuer = self.issuer.as_ref().expect("issuer");
        let wallet = IssuerClient::new(
            self.http.clone(),
            &issuer.url,
            key.clone(),
            Some(CounterStore::beside_key(&path)),
        );
        (key, wallet, Wallet::beside_key(&path))
    }

    /// A payer with two chains of `length` one-unit words.
    async fn payer_with_two_chains(
        &self,
        length: u64,
    ) -> (Arc<KeyPair>, wallet::ChainFile, wallet::ChainFile) {
        let (key, wallet, chains) = self.buyer("payer", 1_000).await;
        let buy = || wallet::buy(&wallet, &chains, length, 1, None);
        let first = buy().await.expect("chain");
        let second = buy().await.expect("another chain");
        (key, first, second)
    }

    fn client(&self, agent: usize, key: &Arc<KeyPair>) -> AgentClient {
        AgentClient::new(self.http.clone(), &self.agents[agent].url, key.clone())
    }
}

/// An active contract with its price paid and no credit beyond it.
async fn contract(
    client: &AgentClient,
    wallet: &IssuerClient,
    key: &KeyPair,
    issuer: &protocol::EntityId,
) -> String {
    let (_, offer) = client.offer().await.expect("offer");
    let terms = AgentClient::terms_from_offer(&offer, key.entity(), issuer, 1 << 20, 3_600, vec![])
        .expect("terms");
    client.buy(wallet, &terms, 0).await.expect("bought");
    eventually(5_000, "the contract to turn active", || async {
        client
            .contract(&terms.id)
            .await
            .map(|v| v.status == "active")
            .unwrap_or(false)
    })
    .await;
    terms.id
}

/// Words `from..=to` of `file`'s block `from..=end` for `vendor`, signed by `payer`, with the
/// chain's touchstone.
fn payment(
    file: &clients::wallet::ChainFile,
    payer: &KeyPair,
    vendor: &protocol::EntityId,
    from: u64,
    end: u64,
    to: u64,
) -> PaywordPayment {
    PaywordPayment {
        payword: Payword {
            chain: file.chain.clone(),
            from,
            end,
            to,
            word: file.word(to).expect("word"),
            signature: sign_block(payer, &file.chain, vendor, from, end),
        },
        touchstone: envelope_header_value(&file.touchstone),
        value: 0,
    }
}

async fn refused(client: &AgentClient, id: &str, p: PaywordPayment, why: &str) {
    let err = client
        .put_paid(id, "x", vec![1; 1024], Some(&p))
        .await
        .expect_err(why);
    assert_eq!(err.code(), Some("invalid_payword"), "{why}: {err}");
}

async fn credit(client: &AgentClient, id: &str) -> i64 {
    client.contract(id).await.expect("contract").credit
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_reads_paid_by_paywords_while_the_issuer_is_away() {
    let mut s = Setup::start(1);
    let issuer_id = s.issuer.as_ref().expect("issuer").entity.clone();
    let (key, wallet, chains) = s.buyer("buyer", 1_000_000).await;
    let client = s.client(0, &key);
    let id = contract(&client, &wallet, &key, &issuer_id).await;
    assert_eq!(credit(&client, &id).await, 0);
    // Unpaid, a write is refused; the chain is bought while the issuer is up.
    let data = vec![7u8; 10 * 1024];
    let err = client
        .put(&id, "a", data.clone())
        .await
        .expect_err("no credit");
    assert_eq!(err.code(), Some("payment_required"));
    let payer = PaywordPayer::new(key.clone(), chains.clone(), wallet.clone());
    let agent_id = s.agents[0].agent.key.entity().clone();
    let first = payer
        .pay(&agent_id, 20)
        .await
        .expect("words")
        .expect("some");
    assert_eq!(first.value, 20);

    // The issuer goes away: words still pay for writes, reads and audits.
    drop(s.issuer.take());
    let write_charge = 10 * PRICES.write_per_kib;
    client
        .put_paid(&id, "a", data.clone(), Some(&first))
        .await
        .expect("a write paid by words");
    let mut paid = first.value;
    for name in ["b", "c"] {
        let p = payer
            .pay(&agent_id, write_charge)
            .await
            .expect("words")
            .expect("some");
        paid += p.value;
        client
            .put_paid(&id, name, data.clone(), Some(&p))
            .await
            .expect("write");
    }
    let read_charge = 10 * PRICES.read_per_kib;
    let p = payer
        .pay(&agent_id, read_charge)
        .await
        .expect("words")
        .expect("some");
    paid += p.value;
    let got = client
        .open_paid(&id, "b", None, Some(&p))
        .await
        .expect("read")
        .bytes()
        .await
        .expect("body");
    assert_eq!(got.as_ref(), data.as_slice());
    assert_eq!(
        credit(&client, &id).await,
        0,
        "every word paid for what it was sent with"
    );
    // Words already held change nothing.
    let again = client.open_paid(&id, "b", None, Some(&p)).await;
    assert_eq!(
        again.expect_err("held words pay nothing twice").code(),
        Some("payment_required")
    );

    // The issuer returns on its address: the agent redeems, its balance rises by the words.
    let issuer = lcp::server::start(lcp::server::ServeOptions {
        data_dir: s.dir.path().join("issuer"),
        listen: s.issuer_addr.to_string(),
        database: None,
        config: Default::default(),
        tls: None,
    })
    .expect("the issuer restarts");
    s.issuer = Some(issuer);
    let agent_key = s.agents[0].agent.key.clone();
    let agent_wallet = IssuerClient::new(
        s.http.clone(),
        &s.issuer.as_ref().expect("i").url,
        agent_key,
        None,
    );
    eventually(10_000, "the agent to redeem its words", || async {
        let chains = s.mint.chain(&first.payword.chain).await;
        chains
            .map(|c| c.redeemed.iter().map(|r| r.to + 1 - r.from).sum::<u64>() == paid)
            .unwrap_or(false)
    })
    .await;
    let deposits = agent_wallet.deposits(0, 0, None).await.expect("deposits");
    let from_chain: u64 = deposits
        .deposits
        .iter()
        .filter(|d| d.from.starts_with("escrow:"))
        .map(|d| d.amount)
        .sum();
    assert_eq!(
        from_chain, paid,
        "no fee on this issuer: exactly the words x unit"
    );
    // The agent notes the redemption once the issuer's answer is in, a moment after the
    // issuer shows it.
    eventually(10_000, "the agent to note its redemption", || async {
        let dash = s.agents[0]
            .agent
            .payword_holdings()
            .await
            .expect("holdings");
        (dash[0].accepted, dash[0].redeemed, dash[0].pending) == (paid, paid, 0)
    })
    .await;

    // The redemption is recorded with the issuer (DESIGN 11): the agent's chain holds a
    // `redemption` proposal (the command's counter, the words, the value credited) and the
    // issuer's agreement, which the issuer gave from its own command log.
    let issuer_url = s.issuer.as_ref().expect("issuer").url.clone();
    let agent_id = s.agents[0].agent.key.entity().to_string();
    let issuer_id = s.issuer.as_ref().expect("issuer").entity.to_string();
    let find = || {
        redemption_record(
            s.http.clone(),
            s.agents[0].url.clone(),
            agent_id.clone(),
            issuer_url.clone(),
            issuer_id.clone(),
        )
    };
    eventually(10_000, "the redemption's record to be agreed", || async {
        find().await.is_some()
    })
    .await;
    let recorded = find().await;
    let (proposal, agreement) = recorded.expect("recorded");
    protocol::record::check_agreement(&proposal, &agreement).expect("the issuer agreed");
    let tx = proposal.transaction_json();
    assert_eq!(tx["words"], paid, "{tx}");
    assert_eq!(tx["value"], paid, "{tx}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_paywords_are_refused_and_the_credit_stays() {
    let s = Setup::start(1);
    let issuer = s.issuer.as_ref().expect("issuer");
    let (key, wallet, chains) = s.buyer("buyer", 1_000_000).await;
    let (other_key, other_wallet, other_chains) = s.buyer("other", 1_000_000).await;
    let client = s.client(0, &key);
    let id = contract(&client, &wallet, &key, &issuer.entity).await;
    let agent = s.agents[0].agent.key.entity().clone();
    let file = wallet::buy(&wallet, &chains, 1_000, 1, Some(3))
        .await
        .expect("chain");
    let pay =
        |from, end, to, vendor: &protocol::EntityId| payment(&file, &key, vendor, from, end, to);
    // One good payment, so the chain is known.
    client
        .put_paid(&id, "a", vec![1; 1024], Some(&pay(1, 100, 2, &agent)))
        .await
        .expect("paid");
    let held = credit(&client, &id).await;
    let mut wrong = pay(1, 100, 5, &agent);
    wrong.payword.word = file.word(4).expect("w");
    refused(&client, &id, wrong, "a wrong word").await;
    let other_vendor = KeyPair::generate().expect("k");
    refused(
        &client,
        &id,
        pay(1, 100, 5, other_vendor.entity()),
        "a block signed for another vendor",
    )
    .await;
    refused(
        &client,
        &id,
        pay(101, 2_000, 101, &agent),
        "a block past the chain's length",
    )
    .await;
    let mut unknown = pay(1, 100, 5, &agent);
    unknown.payword.chain = "9b4e8a3c-7f2d-4c1e-9a5b-3d6f8e2a1c4b".into();
    unknown.touchstone = String::new();
    let err = client
        .put_paid(&id, "x", vec![1; 1024], Some(&unknown))
        .await
        .expect_err("unknown chain");
    assert_eq!(err.code(), Some("invalid_payword"));
    // A touchstone signed by someone else than the issuer it names (a chain the agent has
    // not seen, so the header's touchstone is the one checked).
    let file2 = wallet::buy(&wallet, &chains, 100, 1, None)
        .await
        .expect("chain");
    let mut forged = file2.touchstone.clone();
    forged.signature = other_key.sign_b64(b"not the issuer");
    let p = PaywordPayment {
        touchstone: envelope_header_value(&forged),
        ..payment(&file2, &key, &agent, 1, 10, 3)
    };
    refused(&client, &id, p, "a forged touchstone").await;
    // Another payer's chain, on a request the buyer signs.
    let theirs = wallet::buy(&other_wallet, &other_chains, 100, 1, None)
        .await
        .expect("chain");
    let p = payment(&theirs, &other_key, &agent, 1, 10, 3);
    refused(
        &client,
        &id,
        p,
        "words of a chain whose payer did not sign the request",
    )
    .await;
    // A chain of another issuer than the contract's currency.
    let elsewhere = lcp::testing::start_issuer(&s.dir.path().join("issuer2"));
    let mint2 = lcp::testing::mint(&elsewhere, &s.dir.path().join("issuer2"), &s.http);
    mint2
        .transfer(key.entity(), 1_000, None)
        .await
        .expect("fund");
    let wallet2 = IssuerClient::new(
        s.http.clone(),
        &elsewhere.url,
        key.clone(),
        Some(CounterStore::beside_key(&s.dir.path().join("buyer.key"))),
    );
    let foreign = wallet::buy(&wallet2, &chains, 100, 1, None)
        .await
        .expect("chain");
    let p = payment(&foreign, &key, &agent, 1, 10, 3);
    refused(&client, &id, p, "a touchstone of another issuer").await;
    // An expired chain.
    tokio::time::sleep(std::time::Duration::from_millis(3_100)).await;
    refused(&client, &id, pay(1, 100, 9, &agent), "an expired chain").await;
    assert_eq!(
        credit(&client, &id).await,
        held,
        "no refused word changed the credit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_spend_across_two_agents_is_caught_and_the_payer_refused() {
    let s = Setup::start(2);
    let issuer = s.issuer.as_ref().expect("issuer");
    // The payer keeps little beyond the chain, so the second redemption runs short.
    let (key, wallet, chains) = s.buyer("cheat", 2_000).await;
    let clients = [s.client(0, &key), s.client(1, &key)];
    let mut ids = Vec::new();
    for c in &clients {
        ids.push(contract(c, &wallet, &key, &issuer.entity).await);
    }
    let file = wallet::buy(&wallet, &chains, 100, 1, None)
        .await
        .expect("chain");
    // The same words 1..=80 signed over to both agents: each verifies on its own and serves.
    for (i, c) in clients.iter().enumerate() {
        let agent = s.agents[i].agent.key.entity().clone();
        let p = payment(&file, &key, &agent, 1, 80, 80);
        c.put_paid(&ids[i], "a", vec![3; 40 * 1024], Some(&p))
            .await
            .expect("each agent takes the words");
    }
    // Both redeem (threshold 1, every 100 ms); the second is paid from the payer's balance.
    eventually(10_000, "a fraud proof at the issuer", || async {
        s.mint
            .frauds(0)
            .await
            .map(|p| !p.frauds.is_empty())
            .unwrap_or(false)
    })
    .await;
    let proof = s.mint.frauds(0).await.expect("frauds").frauds.remove(0);
    assert_eq!(
        &proof.verify(&issuer.entity).expect("verifies alone"),
        key.entity()
    );
    eventually(
        10_000,
        "both agents to be paid what the escrow and the payer held",
        || async {
            let status = s.mint.chain(&file.chain).await.expect("chain");
            status.redeemed.len() == 2 && status.redeemed.iter().all(|r| r.to == 80)
        },
    )
    .await;
    // Both agents follow the proofs and refuse the payer's words and contracts from now on.
    for (i, c) in clients.iter().enumerate() {
        eventually(10_000, "the agent to refuse the payer", || async {
            let agent = s.agents[i].agent.key.entity().clone();
            let p = payment(
                &file,
                &key,
                &agent,
                81 + i as u64 * 10,
                90 + i as u64 * 10,
                81 + i as u64 * 10,
            );
            let got = c.put_paid(&ids[i], "b", vec![1; 1024], Some(&p)).await;
            matches!(got, Err(ref e) if e.code() == Some("payer_fraud"))
        })
        .await;
        let (_, offer) = c.offer().await.expect("offer");
        let terms = AgentClient::terms_from_offer(
            &offer,
            key.entity(),
            &issuer.entity,
            1 << 20,
            3_600,
            vec![],
        )
        .expect("terms");
        let err = c
            .propose(&terms)
            .await
            .expect_err("no contract for a proven cheat");
        assert_eq!(err.code(), Some("payer_fraud"));
    }
}

/// The agent's `redemption` proposal to the issuer and the issuer's agreement, if both are
/// served.
async fn redemption_record(
    http: reqwest::Client,
    agent_url: String,
    agent_id: String,
    issuer_url: String,
    issuer_id: String,
) -> Option<(protocol::record::HalfBlock, protocol::record::HalfBlock)> {
    let page = |url: String| {
        let http = http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .ok()?
                .json::<protocol::record::RecordsPage>()
                .await
                .ok()
        }
    };
    let mine = page(format!(
        "{agent_url}/v1/records?public_key={agent_id}&from=1"
    ))
    .await?;
    let p = mine
        .blocks
        .into_iter()
        .find(|b| b.kind == "redemption" && b.link_public_key == issuer_id)?;
    let theirs = page(format!(
        "{issuer_url}/v1/records?public_key={issuer_id}&from=1"
    ))
    .await?;
    let a = theirs
        .blocks
        .into_iter()
        .find(|a| a.link_public_key == agent_id && a.link_sequence_number == p.sequence_number)?;
    Some((p, a))
}

fn agent_config(data: &Path, issuer: &lcp::server::RunningIssuer, threshold: u64) {
    AgentConfig {
        capacity_bytes: 1 << 30,
        block_bytes_max: 1 << 30,
        payword_redeem_threshold: threshold,
        payword_redeem_interval_ms: 100,
        currencies: vec![CurrencyConfig {
            issuer_url: issuer.url.clone(),
            issuer: issuer.entity.to_string(),
            storage_per_gib_day: PRICES.storage_per_gib_day,
            write_per_kib: PRICES.write_per_kib,
            read_per_kib: PRICES.read_per_kib,
            contract_min: PRICES.contract_min,
            bank: None,
        }],
        ..AgentConfig::default()
    }
    .save(data)
    .expect("config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn words_accepted_survive_kill_9_and_are_redeemed_once() {
    for (backend, database) in util::backends("paywordcrash") {
        let s = Setup::start(0);
        let issuer = s.issuer.as_ref().expect("issuer");
        let data = s.dir.path().join("crashing");
        std::fs::create_dir_all(&data).expect("dir");
        let agent_key = Arc::new(node::keyfile::generate(&data.join("identity.key")).expect("key"));
        // First life: words are never due (threshold out of reach).
        agent_config(&data, issuer, u64::MAX / 2);
        let (mut child, url) = spawn_agent(&data, database.url().as_deref());
        let (key, wallet, chains) = s.buyer("buyer", 1_000_000).await;
        let client = AgentClient::new(s.http.clone(), &url, key.clone());
        let id = contract(&client, &wallet, &key, &issuer.entity).await;
        let payer = PaywordPayer::new(key.clone(), chains, wallet.clone());
        let mut paid = 0;
        let mut chain = String::new();
        for i in 0..5 {
            let p = payer
                .pay(agent_key.entity(), 20)
                .await
                .expect("pay")
                .expect("some");
            paid += p.value;
            chain = p.payword.chain.clone();
            client
                .put_paid(&id, &format!("o{i}"), vec![i as u8; 10 * 1024], Some(&p))
                .await
                .expect("write");
        }
        child.0.kill().expect("kill -9");
        child.0.wait().expect("reaped");
        // Second life: everything is due at once.
        agent_config(&data, issuer, 1);
        let (_child, _url) = spawn_agent(&data, database.url().as_deref());
        eventually(10_000, "the restarted agent to redeem", || async {
            s.mint
                .chain(&chain)
                .await
                .map(|c| c.redeemed.iter().map(|r| r.to + 1 - r.from).sum::<u64>() == paid)
                .unwrap_or(false)
        })
        .await;
        let agent_wallet = IssuerClient::new(s.http.clone(), &issuer.url, agent_key.clone(), None);
        let balance = agent_wallet.balance().await.expect("balance").balance;
        let contract_price: i64 = 100; // contract_min: the price paid by transfer
        assert_eq!(balance, contract_price + paid as i64, "{backend}");
        // The same words redeemed again (with a fresh counter) pay nothing.
        let status = s.mint.chain(&chain).await.expect("chain");
        let file = Wallet::beside_key(&s.dir.path().join("buyer.key"))
            .chain(&chain)
            .expect("file");
        let again: Vec<Payword> = status
            .redeemed
            .iter()
            .map(|r| Payword {
                chain: chain.clone(),
                from: r.from,
                end: r.end,
                to: r.to,
                word: file.word(r.to).expect("w"),
                signature: sign_block(&key, &chain, agent_key.entity(), r.from, r.end),
            })
            .collect();
        let answer = agent_wallet
            .redeem_with_counter(node::now_ms(), again)
            .await
            .expect("redeem")
            .value;
        assert!(
            answer
                .results
                .iter()
                .all(|r| r.result == "success" && r.amount == 0),
            "{answer:?}"
        );
        assert_eq!(
            agent_wallet.balance().await.expect("b").balance,
            contract_price + paid as i64
        );
    }
}

/// Benchmark (ignored; `scripts/bench-paywords.sh` runs it in release): payword payments one
/// agent accepts per second, each a signed charged read of a 1 KiB object carrying one word
/// (request signature checked, one hash, the word noted durably with the contract's credit),
/// from `PAYWORD_BENCH_BUYERS` buyers at once, against `lcp bench` transfers per second by the
/// issuer of the same run, on the same machine, one after the other. The buyers' words are
/// made before the clock starts (a real payer fsyncs each payment in its wallet).
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn payword_throughput() {
    let buyers: usize = std::env::var("PAYWORD_BENCH_BUYERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let per_buyer: u64 = std::env::var("PAYWORD_BENCH_PAYMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let s = Setup::start(1);
    let issuer = s.issuer.as_ref().expect("issuer");
    let agent = s.agents[0].agent.key.entity().clone();
    let mut lanes = Vec::new();
    for b in 0..buyers {
        let (key, wallet, chains) = s.buyer(&format!("b{b}"), 10_000_000).await;
        let client = s.client(0, &key);
        let id = contract(&client, &wallet, &key, &issuer.entity).await;
        let file = wallet::buy(&wallet, &chains, per_buyer + 10, 1, None)
            .await
            .expect("chain");
        let touchstone = envelope_header_value(&file.touchstone);
        let signature = sign_block(&key, &file.chain, &agent, 1, per_buyer + 10);
        let pay = |to: u64| PaywordPayment {
            payword: Payword {
                chain: file.chain.clone(),
                from: 1,
                end: per_buyer + 10,
                to,
                word: file.word(to).expect("w"),
                signature: signature.clone(),
            },
            touchstone: touchstone.clone(),
            value: 0,
        };
        client
            .put_paid(&id, "o", vec![7; 1024], Some(&pay(2)))
            .await
            .expect("write");
        let payments: Vec<PaywordPayment> = (3..3 + per_buyer).map(pay).collect();
        lanes.push((client, id, payments));
    }
    let started = std::time::Instant::now();
    let tasks = lanes.into_iter().map(|(client, id, payments)| async move {
        let mut latencies = Vec::with_capacity(payments.len());
        let mut errors = 0usize;
        for p in &payments {
            let t = std::time::Instant::now();
            let read = match client.open_paid(&id, "o", None, Some(p)).await {
                Ok(body) => body.bytes().await.is_ok(),
                Err(_) => false,
            };
            if read {
                latencies.push(t.elapsed());
            } else {
                errors += 1;
            }
        }
        (latencies, errors)
    });
    let results = futures_util::future::join_all(tasks).await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut all: Vec<std::time::Duration> = results.iter().flat_map(|r| r.0.clone()).collect();
    let errors: usize = results.iter().map(|r| r.1).sum();
    all.sort();
    let pct = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let per_s = all.len() as f64 / elapsed;
    assert_eq!(errors, 0, "every payment was accepted");
    let transfers = lcp::bench::run(
        lcp::bench::BenchOptions {
            issuer_url: issuer.url.clone(),
            clients: buyers,
            transfers: (buyers as u64 * per_buyer) as usize,
            client: ClientOptions::default(),
            verify_receipts: false,
            batch: 1,
        },
        Arc::new(node::keyfile::load(&s.dir.path().join("issuer/identity.key")).expect("key")),
        CounterStore::beside_key(&s.dir.path().join("issuer/identity.key")),
    )
    .await
    .expect("lcp bench");
    println!(
        "{{\"paywords\": {{\"payments\": {}, \"buyers\": {buyers}, \"per_s\": {per_s:.0}, \"p50_ms\": {:.2}, \"p99_ms\": {:.2}}}, \"transfers\": {{\"transfers\": {}, \"per_s\": {:.0}, \"p50_ms\": {:.2}, \"p99_ms\": {:.2}}}, \"ratio\": {:.2}}}",
        all.len(), pct(0.5), pct(0.99), transfers.transfers, transfers.transfers_per_s, transfers.p50_ms, transfers.p99_ms, per_s / transfers.transfers_per_s
    );
}

/// `p` accepted by `vendor` as an agent accepts it (`node::paywords::accept` inside the
/// caller's transaction), with no cap on what it holds.
fn vendor_accepts(
    conn: &mut db::AnyConnection,
    issuer: &protocol::EntityId,
    payer: &protocol::EntityId,
    vendor: &protocol::EntityId,
    p: &Payword,
    touchstone: &str,
) -> Result<Result<node::paywords::Accepted, node::paywords::Refusal>, db::DbError> {
    node::paywords::accept(
        conn,
        node::now_s(),
        issuer,
        payer,
        vendor,
        &p.header_value(),
        Some(touchstone),
        u64::MAX,
    )
}

/// A vendor's database and the chain a payer pays it from, for tests that call
/// [`vendor_accepts`] the way an agent does, inside a write transaction.
struct Vendor<'a> {
    db: &'a db::Database,
    issuer: &'a protocol::EntityId,
    payer: &'a Arc<KeyPair>,
    vendor: &'a protocol::EntityId,
    file: &'a clients::wallet::ChainFile,
}

impl Vendor<'_> {
    /// Pay `to` of block `from..=end` with `word`: the value accepted, or the refusal's text.
    fn pay(
        &self,
        from: u64,
        end: u64,
        to: u64,
        word: Word,
    ) -> impl std::future::Future<Output = Result<u64, String>> + Send + 'static {
        let touchstone = envelope_header_value(&self.file.touchstone);
        let (issuer, payer, vendor) = (
            self.issuer.clone(),
            self.payer.entity().clone(),
            self.vendor.clone(),
        );
        let p = Payword {
            chain: self.file.chain.clone(),
            from,
            end,
            to,
            word,
            signature: sign_block(self.payer, &self.file.chain, &vendor, from, end),
        };
        let db = self.db.clone();
        async move {
            db.run(move |conn| {
                db::write_transaction(conn, |conn| {
                    vendor_accepts(conn, &issuer, &payer, &vendor, &p, &touchstone)
                })
            })
            .await
            .map_err(|e| format!("database: {e}"))?
            .map(|a| a.value)
            .map_err(|r| format!("{r:?}"))
        }
    }
}

/// A vendor checks a new block's word against the deepest word it already holds of the chain
/// (not against the root, which may be a million hashes away): the right word of a later
/// block is accepted, a wrong one, a word one place off and another chain's word are refused,
/// and a block between two held ones is checked too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendors_next_block_is_checked_against_the_word_it_holds() {
    let s = Setup::start(0);
    let issuer = s.issuer.as_ref().expect("issuer");
    let (key, file, other) = s.payer_with_two_chains(30).await;
    let dir = s.dir.path().join("vendor");
    std::fs::create_dir_all(&dir).expect("dir");
    let db = db::Database::open(
        db::Location::sqlite_in(&dir, "v.sqlite"),
        storage_agent::migrations(),
    )
    .expect("db");
    let vendor = KeyPair::generate().expect("key").entity().clone();
    let at = Vendor {
        db: &db,
        issuer: &issuer.entity,
        payer: &key,
        vendor: &vendor,
        file: &file,
    };
    let pay = |from: u64, end: u64, to: u64, word: Word| at.pay(from, end, to, word);
    let w = |i: u64| file.word(i).expect("word");
    assert_eq!(
        pay(1, 10, 5, w(5)).await,
        Ok(5),
        "first block, from the root"
    );
    // A later block: its word must hash down to word 5, the deepest held.
    let refused = pay(21, 30, 25, w(24)).await;
    assert!(refused.is_err(), "a word one place off: {refused:?}");
    let refused = pay(21, 30, 25, other.word(25).expect("w")).await;
    assert!(refused.is_err(), "another chain's word: {refused:?}");
    assert_eq!(pay(21, 30, 25, w(25)).await, Ok(5), "words 21..=25");
    // A block between the two held ones is checked against word 5, the deepest below it.
    assert!(
        pay(11, 20, 12, w(13)).await.is_err(),
        "word 13 claimed as 12"
    );
    assert_eq!(pay(11, 20, 12, w(12)).await, Ok(2), "words 11..=12");
    // Words already held change nothing; the next ones of a held block count from it.
    assert_eq!(pay(21, 30, 25, w(25)).await, Ok(0));
    assert_eq!(pay(21, 30, 27, w(27)).await, Ok(2));
}

/// Run `n` payments made by `pay` at once: the value credited over all, or the first error
/// (an accept of words already seen, or of a block kept by another at the same moment, is no
/// error: it credits nothing).
async fn at_once<F>(n: usize, pay: impl Fn() -> F) -> Result<u64, String>
where
    F: std::future::Future<Output = Result<u64, String>> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(pay())).collect();
    let mut credited = 0;
    for task in tasks {
        credited += task.await.expect("task")?;
    }
    Ok(credited)
}

/// The same words sent on many requests at once are credited once, on SQLite and on
/// PostgreSQL (where each statement of a transaction reads the latest commit, so two accepts
/// reading the same held word would both credit the words after it unless one waits for the
/// other): a buyer firing one `LCP-Payword` header at a vendor in parallel gains nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_words_sent_at_once_are_credited_once() {
    const AT_ONCE: usize = 16;
    let s = Setup::start(0);
    let issuer = s.issuer.as_ref().expect("issuer");
    let (key, file, second) = s.payer_with_two_chains(40).await;
    let w = |i: u64| file.word(i).expect("word");
    for (backend, database) in util::backends("paywordrace") {
        let dir = s.dir.path().join(format!("vendor-{backend}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let location = match database.url() {
            Some(url) => db::Location::parse(&url),
            None => db::Location::sqlite_in(&dir, "v.sqlite"),
        };
        let db = db::Database::open(location, storage_agent::migrations()).expect("db");
        let vendor = KeyPair::generate().expect("key").entity().clone();
        let at = Vendor {
            db: &db,
            issuer: &issuer.entity,
            payer: &key,
            vendor: &vendor,
            file: &file,
        };
        assert_eq!(
            at.pay(1, 10, 3, w(3)).await,
            Ok(3),
            "{backend}: the block held"
        );
        let credited = at_once(AT_ONCE, || at.pay(1, 10, 8, w(8))).await;
        assert_eq!(credited, Ok(5), "{backend}: words 4..=8 credited once");
        assert_eq!(at.pay(1, 10, 8, w(8)).await, Ok(0), "{backend}: held now");
        assert_eq!(
            at.pay(1, 10, 9, w(9)).await,
            Ok(1),
            "{backend}: the next word counts"
        );
        // A chain's first block, sent at once: kept once, its words credited once.
        let fresh = Vendor {
            file: &second,
            ..at
        };
        let credited = at_once(AT_ONCE, || fresh.pay(1, 10, 4, second.word(4).expect("w"))).await;
        assert_eq!(
            credited,
            Ok(4),
            "{backend}: the new block's words 1..=4 credited once"
        );
    }
}

/// Benchmark (ignored; `scripts/bench-paywords.sh`): the issuer commands that settle
/// `PAYWORD_SETTLE_PAYMENTS` (1,000,000) one-unit payments spread over 6 vendors. The payer
/// buys one chain (one command); each vendor accepts its words with `node::paywords::accept`
/// on its own SQLite database (as an agent does, without HTTP: the count, not the speed, is
/// measured here), in blocks of `BLOCK_WORDS_DEFAULT` words; then each vendor redeems until
/// nothing is due. Prints the commands and checks every word was paid.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn issuer_commands_to_settle_a_million_payments() {
    let payments: u64 = std::env::var("PAYWORD_SETTLE_PAYMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let vendors = 6usize;
    let s = Setup::start(0);
    let issuer = s.issuer.as_ref().expect("issuer");
    let (key, wallet, chains) = s.buyer("payer", payments * 2).await;
    let file = wallet::buy(&wallet, &chains, payments, 1, None)
        .await
        .expect("chain");
    let mut commands = 1u64; // the purchase
    let block = clients::wallet::BLOCK_WORDS_DEFAULT;
    let mut dbs = Vec::new();
    for v in 0..vendors {
        let dir = s.dir.path().join(format!("vendor{v}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let db = db::Database::open(
            db::Location::sqlite_in(&dir, "v.sqlite"),
            storage_agent::migrations(),
        )
        .expect("db");
        dbs.push((Arc::new(KeyPair::generate().expect("key")), db));
    }
    let touchstone = envelope_header_value(&file.touchstone);
    // Payment i goes to vendor (i / block) % vendors: blocks of `block` words, round robin.
    let started = std::time::Instant::now();
    let mut from = 1;
    while from <= payments {
        let end = (from + block - 1).min(payments);
        let v = ((from - 1) / block) as usize % vendors;
        let (vendor, db) = &dbs[v];
        let signature = sign_block(&key, &file.chain, vendor.entity(), from, end);
        let (file, touchstone, issuer_id, payer, vendor) = (
            file.clone(),
            touchstone.clone(),
            issuer.entity.clone(),
            key.entity().clone(),
            vendor.entity().clone(),
        );
        db.run(move |conn| {
            // The block's words, from its last down (one hash each).
            let mut words = vec![file.word(end).expect("w")];
            for _ in from..end {
                let next = words.last().expect("one").hashed();
                words.push(next);
            }
            words.reverse();
            db::write_transaction(conn, |conn| {
                for to in from..=end {
                    let word = words[(to - from) as usize];
                    let p = Payword {
                        chain: file.chain.clone(),
                        from,
                        end,
                        to,
                        word,
                        signature: signature.clone(),
                    };
                    let got = vendor_accepts(conn, &issuer_id, &payer, &vendor, &p, &touchstone)?;
                    assert_eq!(got.expect("accepted").value, 1);
                }
                Ok::<_, db::DbError>(())
            })
        })
        .await
        .expect("accepted");
        from = end + 1;
    }
    let accept_s = started.elapsed().as_secs_f64();
    let counters = node::client::ClockCounter::default();
    for (vendor, db) in &dbs {
        let client = node::client::SignedClient::new(s.http.clone(), &issuer.url, vendor.clone());
        loop {
            let credited = node::paywords::redeem_due(
                db,
                &issuer.entity,
                &client,
                counters.next(),
                u64::MAX,
                true,
            )
            .await
            .expect("redeem")
            .credited;
            if credited == 0 {
                break;
            }
            commands += 1;
        }
    }
    let status = s.mint.chain(&file.chain).await.expect("chain");
    let redeemed: u64 = status.redeemed.iter().map(|r| r.to + 1 - r.from).sum();
    assert_eq!(redeemed, payments, "every word was paid");
    println!(
        "{{\"payments\": {payments}, \"vendors\": {vendors}, \"block_words\": {block}, \"issuer_commands\": {commands}, \"accept_s\": {accept_s:.1}}}"
    );
    assert!(commands < 100, "{commands} commands");
}
