//! The market crawls records (issue 16, DESIGN 11): after a buyer and an agent record a
//! contract, one crawl round brings both halves to the market, which serves them; the ranking
//! after the round vouches for an unaudited agent whose buyer also deals with an audited one
//! (a better prior p_fail than an agent nobody recorded a deal with); an agent that rewrites
//! a block it signed is caught by the next round (a double-sign proof that verifies on its
//! own), shown as forked in the book, and left out of every later match. SQLite and
//! PostgreSQL.

mod util;

use clients::agent::AgentClient;
use clients::market::MarketClient;
use clients::records::{contract_active, record_deal, Agreed};
use diesel::connection::SimpleConnection;
use protocol::book::MatchRequest;
use protocol::record::{kinds, FraudKind, HalfBlock, RecordFraudsPage, RecordsPage, GENESIS_HASH};
use util::{eventually, Net};

const WAIT_MS: u64 = 15_000;

async fn get<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: &str) -> T {
    let resp = http.get(url).send().await.expect("GET");
    assert_eq!(resp.status(), 200, "{url}");
    resp.json().await.expect("json")
}

fn request(currency: &str, k: u64) -> MatchRequest {
    MatchRequest {
        currency: currency.to_owned(),
        shard_bytes: 1 << 20,
        data_shards: k,
        total_shards: Some(k),
        duration_s: 3_600,
        expected_read_bytes: 0,
        max_failure_probability: 0.99,
        exclude: Vec::new(),
    }
}

/// An active contract of 1 MiB for an hour from agent `i`, with `credit` paid ahead.
async fn active_contract(
    net: &Net,
    i: usize,
    wallet: &clients::issuer::IssuerClient,
    buyer: &std::sync::Arc<protocol::KeyPair>,
    credit: u64,
) -> (AgentClient, protocol::market::Contract) {
    let ac = AgentClient::new(net.http.clone(), &net.agent(i).url, buyer.clone());
    let (_, offer) = ac.offer().await.expect("offer");
    let terms = AgentClient::terms_from_offer(
        &offer,
        buyer.entity(),
        &net.issuer.entity,
        1 << 20,
        3_600,
        vec![],
    )
    .expect("terms");
    ac.buy(wallet, &terms, credit).await.expect("contract");
    eventually(WAIT_MS, "the contract to turn active", || async {
        ac.contract(&terms.id)
            .await
            .is_ok_and(|c| c.status == "active")
    })
    .await;
    (ac, terms)
}

/// Buy a contract from agent `i` and record it (`contract`, event `active`) from the chain
/// beside `key_path`; answers the proposal's agreement.
async fn recorded_contract(
    net: &Net,
    i: usize,
    wallet: &clients::issuer::IssuerClient,
    buyer: &std::sync::Arc<protocol::KeyPair>,
    key_path: &std::path::Path,
) -> HalfBlock {
    let (ac, terms) = active_contract(net, i, wallet, buyer, 0).await;
    let agreed = record_deal(
        key_path,
        buyer.clone(),
        ac.signed(),
        kinds::CONTRACT,
        &contract_active(&terms),
    )
    .await;
    match agreed {
        Agreed::Yes(agreement) => agreement,
        other => panic!("not agreed: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_crawled_vouch_for_new_agents_and_a_forked_agent_is_never_matched() {
    for (backend, database) in db::testing::backends("marketrecords") {
        eprintln!("backend: {backend}");
        forked_agent_on(database.url()).await;
    }
}

async fn forked_agent_on(database: Option<String>) {
    let mut net = Net::start(3, database);
    let (wallet, buyer) = net.buyer(1_000_000).await;
    let market = net.market.market.clone();
    let client = MarketClient::new(net.http.clone(), &net.market.url, buyer.clone());
    let currency = net.issuer.entity.to_string();
    eventually(WAIT_MS, "every offer in the book", || async {
        client
            .offers(Some(&currency))
            .await
            .is_ok_and(|o| o.len() == 3)
    })
    .await;

    // A contract with agent 0, recorded by both sides.
    let a0 = net.agent(0).agent.clone();
    let a0_entity = a0.key.entity().to_string();
    let key_path = net.dir.path().join("recording-buyer.key");
    let agreement = recorded_contract(&net, 0, &wallet, &buyer, &key_path).await;

    // One round brings both halves to the market, which serves them.
    let report = market.crawl_round().await.expect("crawl");
    assert_eq!(report.proofs_new, 0, "{report:?}");
    assert!(report.blocks_new >= 2, "{report:?}");
    let url = &net.market.url;
    let held: RecordsPage = get(
        &net.http,
        &format!("{url}/v1/records?public_key={a0_entity}&from=1"),
    )
    .await;
    assert_eq!(held.blocks, vec![agreement.clone()]);
    let theirs: RecordsPage = get(
        &net.http,
        &format!("{url}/v1/records?public_key={}&from=1", buyer.entity()),
    )
    .await;
    assert_eq!(theirs.blocks.len(), 1);
    assert_eq!(theirs.blocks[0].link_public_key, a0_entity);
    let line = client.listing_of(&a0_entity, Some(&currency)).await;
    assert!(!line.expect("listing").expect("listed").forked);

    // Reputation from the records: agent 1 is audited (its row says 10 audits passed, as the
    // auditor would write), and the buyer also records a contract with it. Agent 0, never
    // audited, is now vouched for by a buyer of an audited agent: a better prior than agent
    // 2's, which nobody recorded a deal with.
    let a1_entity = net.agent(1).agent.key.entity().to_string();
    let a2_entity = net.agent(2).agent.key.entity().to_string();
    let who = a1_entity.clone();
    market
        .db
        .run(move |conn| -> Result<(), node::records::RecordsError> {
            // Stamped with the next market clock value, as every write to `agents` is.
            conn.batch_execute(&format!(
                "UPDATE market_clock SET value = value + 1 WHERE id = 1; \
                 UPDATE agents SET audits_passed = 10, \
                 changed = (SELECT value FROM market_clock WHERE id = 1) WHERE entity = '{who}'"
            ))?;
            Ok(())
        })
        .await
        .expect("audited");
    recorded_contract(&net, 1, &wallet, &buyer, &key_path).await;
    let report = market.crawl_round().await.expect("crawl");
    assert!(report.ranked >= 1, "{report:?}");
    let line = |entity: String| {
        let client = &client;
        let currency = &currency;
        async move {
            client
                .listing_of(&entity, Some(currency))
                .await
                .expect("listing")
                .expect("listed")
        }
    };
    let (l0, l2) = (line(a0_entity.clone()).await, line(a2_entity.clone()).await);
    assert!(l0.vouch > 0.0, "{l0:?}");
    assert_eq!(l2.vouch, 0.0, "{l2:?}");
    assert_eq!((l0.audits_passed, l2.audits_passed), (0, 0));
    assert!(
        l0.p_fail < l2.p_fail,
        "the vouched agent's prior p_fail ({}) is below the unknown one's ({})",
        l0.p_fail,
        l2.p_fail
    );

    // Agent 0 rewrites the block it signed (another timestamp, signed again) and serves it.
    let proposal = theirs.blocks[0].clone();
    let rewritten = HalfBlock::agree(&a0.key, &proposal, 1, GENESIS_HASH, agreement.timestamp + 1);
    let (who, forged) = (a0_entity.clone(), rewritten.clone());
    a0.db
        .run(move |conn| -> Result<(), node::records::RecordsError> {
            conn.batch_execute(&format!(
                "DELETE FROM record_blocks WHERE public_key = '{who}' AND sequence_number = 1"
            ))?;
            node::records::keep(conn, &forged)?;
            Ok(())
        })
        .await
        .expect("rewrite");

    // Caught within one round: a proof that verifies on its own, the book says so, and no
    // match chooses the agent again.
    let report = market.crawl_round().await.expect("crawl");
    assert_eq!(report.proofs_new, 1, "{report:?}");
    let frauds: RecordFraudsPage = get(&net.http, &format!("{url}/v1/frauds?after=0")).await;
    assert_eq!(frauds.frauds.len(), 1);
    let proof = &frauds.frauds[0];
    assert_eq!(proof.kind, FraudKind::DoubleSign);
    assert_eq!(proof.verify().expect("verifies").as_str(), a0_entity);
    let mut blocks = vec![proof.blocks[0].clone(), proof.blocks[1].clone()];
    blocks.sort_by_key(|b| b.timestamp);
    assert_eq!(blocks, vec![agreement, rewritten]);
    let line = client
        .listing_of(&a0_entity, Some(&currency))
        .await
        .expect("listing")
        .expect("listed");
    assert!(line.forked, "{line:?}");
    for _ in 0..5 {
        let answer = client
            .match_agents(&request(&currency, 2))
            .await
            .expect("a match of the two others");
        assert!(
            answer.agents.iter().all(|a| a.agent != a0_entity),
            "the forked agent was chosen"
        );
        assert!(answer.candidates.iter().all(|c| c.agent != a0_entity));
    }
    let e = client
        .match_agents(&request(&currency, 3))
        .await
        .expect_err("only two agents may be chosen");
    assert_eq!(e.code(), Some("cannot_meet_target"), "{e}");
    // The page says it too.
    let page = net
        .http
        .get(format!("{url}/?currency={currency}"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("forked: never matched"));

    // The CLI: an entity's chain as the market holds it, and its reputation.
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_market"))
            .arg("records")
            .args(["--market", url.as_str()])
            .args(args)
            .output()
            .expect("market records")
    };
    let out = cli(&["--entity", &a0_entity, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(shown["reputation"]["forked"], true, "{shown}");
    assert_eq!(shown["reputation"]["fraud_proofs"], 1);
    assert_eq!(shown["links"], true);
    assert_eq!(shown["blocks"].as_array().map(Vec::len), Some(1), "{shown}");
    let out = cli(&["--entity", buyer.entity().as_str(), "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(shown["reputation"]["head"], 2, "{shown}");
    assert!(shown["reputation"]["score"].as_f64().expect("score") > 0.0);
    assert_eq!(shown["reputation"]["forked"], false);
    let out = cli(&["--entity", &a0_entity]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FORKED"), "{text}");
    let out = cli(&["--entity", "alice"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not an entity id") && err.lines().count() == 1,
        "{err}"
    );
    let resp = net
        .http
        .get(format!("{url}/v1/reputation?entity=alice"))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 400);

    // The free-rider threshold (seed 004): agent 2 now runs tabs, but not for a buyer whose
    // agreed records show it consumed more than it contributed by more than 5. The buyer
    // consumed two contracts (20) and contributed nothing: its writes on credit it has not
    // paid are refused (`402 free_rider`); paid ahead, they are served. A buyer with no
    // records gets the tab.
    let rep = client
        .reputation(buyer.entity().as_str())
        .await
        .expect("reputation");
    assert_eq!((rep.consumed, rep.contributed), (20.0, 0.0), "{rep:?}");
    net.stop_agent(2).await;
    let dir2 = net.dir.path().join("agent-2");
    let mut config = storage_agent::config::AgentConfig::load(&dir2).expect("config");
    config.tab_limit = 1_000_000;
    config.free_rider_threshold = 5;
    config.save(&dir2).expect("config");
    net.agents[2] = Some(net.start_agent(2));
    let (ac, terms) = active_contract(&net, 2, &wallet, &buyer, 0).await;
    let id = terms.id;
    let e = ac
        .put(&id, "on-the-tab", vec![7; 40_000])
        .await
        .expect_err("a free rider gets no tab");
    assert_eq!(e.code(), Some("free_rider"), "{e}");
    assert!(e.amount_due().is_some_and(|d| d > 0), "{e}");
    let (ac, terms) = active_contract(&net, 2, &wallet, &buyer, 100_000).await;
    let id = terms.id;
    ac.put(&id, "paid-ahead", vec![7; 40_000])
        .await
        .expect("paid ahead, a free rider is served");
    let (wallet2, newcomer) = net.buyer(1_000_000).await;
    let (ac, terms) = active_contract(&net, 2, &wallet2, &newcomer, 0).await;
    let id = terms.id;
    ac.put(&id, "on-the-tab", vec![7; 40_000])
        .await
        .expect("a buyer with no records gets the tab");
}

/// Not a test: crawling 100,000 blocks. Agent 0 of an in-process network holds
/// `CRAWL_BENCH_BLOCKS` blocks (default 100,000: 25 buyers' chains of proposals to it and its
/// own chain of agreements, half each), written straight into its database; the market crawls
/// round after round until nothing is new. Reports the time, blocks per second, and the
/// ranking of the records after the last round.
/// `cargo test --release -p market --test records -- --ignored --nocapture crawl_timing`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn crawl_timing() {
    let blocks: usize = std::env::var("CRAWL_BENCH_BLOCKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    const BUYERS: usize = 25;
    let net = Net::start(1, None);
    let agent = net.agent(0).agent.clone();
    let agent_id = agent.key.entity().to_string();
    let per_buyer = blocks / 2 / BUYERS;
    let started = std::time::Instant::now();
    let buyers: Vec<protocol::KeyPair> = (0..BUYERS)
        .map(|_| protocol::KeyPair::generate().expect("key"))
        .collect();
    // Proposals and agreements, interleaved by buyer so the agent's chain names them all.
    let mut made = Vec::with_capacity(blocks);
    let mut heads: Vec<String> = vec![GENESIS_HASH.to_owned(); BUYERS];
    let mut agent_head = GENESIS_HASH.to_owned();
    let mut agent_seq = 0;
    for n in 0..per_buyer {
        for (b, key) in buyers.iter().enumerate() {
            let p = HalfBlock::sign(
                key,
                protocol::record::BlockFields {
                    sequence_number: n as u64 + 1,
                    link_public_key: &agent_id,
                    link_sequence_number: 0,
                    previous_hash: &heads[b],
                    kind: kinds::CONTRACT,
                    transaction: &format!(
                        r#"{{"contract":"c-{b}-{n}","contract_price":{}}}"#,
                        1 + n % 50
                    ),
                    timestamp: 1,
                },
            );
            heads[b] = p.hash();
            agent_seq += 1;
            let a = HalfBlock::agree(&agent.key, &p, agent_seq, &agent_head, 2);
            agent_head = a.hash();
            made.push(p);
            made.push(a);
        }
    }
    let signed = started.elapsed();
    let total = made.len();
    for chunk in made.chunks(10_000) {
        let chunk = chunk.to_vec();
        agent
            .db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    for b in &chunk {
                        node::records::keep(conn, b)?;
                    }
                    Ok::<_, node::records::RecordsError>(())
                })
            })
            .await
            .expect("stored");
    }
    eprintln!(
        "{total} blocks signed in {signed:?}, stored in {:?}",
        started.elapsed() - signed
    );
    let market = net.market.market.clone();
    let started = std::time::Instant::now();
    let (mut rounds, mut kept) = (0, 0);
    loop {
        let r = market.crawl_round().await.expect("crawl");
        rounds += 1;
        kept += r.blocks_new;
        if r.blocks_new == 0 || rounds > 1_000 {
            break;
        }
    }
    let took = started.elapsed();
    assert_eq!(kept, total, "every block crawled");
    let started = std::time::Instant::now();
    market.rank_records().await.expect("rank");
    eprintln!(
        "crawled {kept} blocks in {rounds} rounds, {took:?} ({:.0} blocks/s, each round \
         also ranking what is held); ranking {} agreed records from the database: {:?}",
        kept as f64 / took.as_secs_f64(),
        total / 2,
        started.elapsed()
    );
}
