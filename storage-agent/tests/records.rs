//! Records between a buyer's CLI and an agent (issue 16, DESIGN 11): the buyer proposes a
//! `contract` record once its contract is active, the agent checks it against its books and
//! agrees; both chains link; the same proposal again answers the same agreement; a tampered
//! block, a record the books do not say and a fork are refused with stable codes, and the fork
//! becomes a proof that verifies on its own; a buyer on a fresh machine (no chain file)
//! continues its chain from the agent's copy instead of forking it. SQLite and PostgreSQL.

mod util;

use std::sync::Arc;

use clients::agent::AgentClient;
use clients::records::{contract_active, record_deal, Agreed, RecordChain};
use node::client::{ClientOptions, SignedClient};
use protocol::record::{
    check_agreement, check_chain, kinds, BlockFields, FraudKind, HalfBlock, RecordFraudsPage,
    RecordsPage, GENESIS_HASH,
};
use protocol::KeyPair;
use util::World;

const MIB: u64 = 1 << 20;
const DAY_S: u64 = 86_400;

async fn records_of(http: &reqwest::Client, url: &str, entity: &str) -> RecordsPage {
    let resp = http
        .get(format!("{url}/v1/records?public_key={entity}&from=1"))
        .send()
        .await
        .expect("GET /v1/records");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("a records page")
}

/// Post `block` as is (a signed command by `client`'s key): the error code, if refused.
async fn post_raw(client: &SignedClient, block: &HalfBlock) -> Result<HalfBlock, String> {
    let body = serde_json::to_vec(block).expect("json");
    client
        .command::<HalfBlock>("POST", "/v1/records", body, node::now_ms())
        .await
        .map(|a| a.value)
        .map_err(|e| e.code().unwrap_or("no code").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_records_are_agreed_checked_and_never_forked() {
    for (backend, database) in util::backends("records") {
        eprintln!("backend: {backend}");
        contract_records_on(database.url()).await;
    }
}

async fn contract_records_on(database: Option<String>) {
    let world = World::start(64 * MIB, 3_600, database);
    let http = node::client::http_client(&ClientOptions::default()).expect("http");
    let (key_path, key, wallet) = world.buyer_named("buyer", 10_000_000).await;
    let client = AgentClient::new(http.clone(), &world.agent.url, key.clone());
    let agent_entity = world.agent.agent.key.entity().to_string();
    let me = key.entity().to_string();
    let terms = world
        .active_contract(&client, &wallet, &key, MIB, 30 * DAY_S, 0)
        .await;

    // 1. Proposed, agreed, both halves held by both sides.
    let agreed = record_deal(
        &key_path,
        key.clone(),
        client.signed(),
        kinds::CONTRACT,
        &contract_active(&terms),
    )
    .await;
    let Agreed::Yes(agreement) = agreed else {
        panic!("the agent did not agree: {agreed:?}");
    };
    let chain = RecordChain::open(&key_path, key.clone()).expect("chain");
    let proposal = chain.own()[0].clone();
    assert_eq!(proposal.sequence_number, 1);
    assert_eq!(proposal.previous_hash, GENESIS_HASH);
    check_agreement(&proposal, &agreement).expect("an agreement to the proposal");
    assert_eq!(chain.agreement(1), Some(&agreement));
    drop(chain);
    let theirs = records_of(&http, &world.agent.url, &me).await;
    assert_eq!(theirs.blocks, vec![proposal.clone()], "the agent's copy");
    let agents = records_of(&http, &world.agent.url, &agent_entity).await;
    assert_eq!(agents.head, 1);
    assert_eq!(agents.blocks, vec![agreement.clone()]);
    check_chain(&agents.blocks).expect("the agent's chain links from 1");

    // 2. The same proposal again: the same agreement, nothing written twice.
    assert_eq!(
        post_raw(client.signed(), &proposal).await,
        Ok(agreement.clone())
    );
    assert_eq!(
        records_of(&http, &world.agent.url, &agent_entity)
            .await
            .head,
        1
    );

    // 3. Refusals, each with its code, and nothing stored: a block changed after signing, a
    // record the agent's books do not say, a request signed by another than the proposer.
    let mut tampered = proposal.clone();
    tampered.transaction = tampered.transaction.replace("active", "activ3");
    assert_eq!(
        post_raw(client.signed(), &tampered).await,
        Err("invalid_block_signature".into())
    );
    let mut dearer = contract_active(&terms);
    dearer["contract_price"] = (terms.contract_price + 1).into();
    let mut chain = RecordChain::open(&key_path, key.clone()).expect("chain");
    let wrong = chain
        .propose(&agent_entity, kinds::CONTRACT, &dearer)
        .expect("propose");
    assert_eq!(wrong.sequence_number, 2);
    let refused = chain.send(client.signed(), &wrong, node::now_ms()).await;
    assert!(
        matches!(&refused, Ok(Agreed::Later(why)) if why.contains("record_refused") || why.contains("not")),
        "{refused:?}"
    );
    assert_eq!(chain.unanswered(), vec![wrong.clone()]);
    drop(chain);
    let stranger = SignedClient::new(
        http.clone(),
        &world.agent.url,
        Arc::new(KeyPair::generate().expect("key")),
    );
    assert_eq!(
        post_raw(&stranger, &proposal).await,
        Err("record_refused".into())
    );
    assert_eq!(
        records_of(&http, &world.agent.url, &agent_entity)
            .await
            .head,
        1,
        "a refusal writes nothing to the agent's chain"
    );

    // 4. A fresh machine: the chain file is gone; the next record continues from the agent's
    // copy of the buyer's chain (head 2), so no fork.
    std::fs::remove_dir_all(RecordChain::dir_of(&key_path)).expect("forget the chain");
    let second = world
        .active_contract(&client, &wallet, &key, MIB, 30 * DAY_S, 0)
        .await;
    let agreed = record_deal(
        &key_path,
        key.clone(),
        client.signed(),
        kinds::CONTRACT,
        &contract_active(&second),
    )
    .await;
    assert!(matches!(agreed, Agreed::Yes(_)), "{agreed:?}");
    let chain = RecordChain::open(&key_path, key.clone()).expect("chain");
    let head = chain.head().expect("head").clone();
    assert_eq!(head.sequence_number, 3, "continued after the agent's copy");
    assert_eq!(head.previous_hash, wrong.hash());
    drop(chain);
    let theirs = records_of(&http, &world.agent.url, &me).await;
    check_chain(&theirs.blocks).expect("the buyer's chain, as the agent holds it, links");
    assert_eq!(theirs.head, 3);
    let frauds: RecordFraudsPage = http
        .get(format!("{}/v1/frauds", world.agent.url))
        .send()
        .await
        .expect("frauds")
        .json()
        .await
        .expect("page");
    assert!(frauds.frauds.is_empty(), "no fork so far: {frauds:?}");

    // 5. A fork: the buyer signs another block at sequence 3. Refused, and kept as a proof
    // that convicts the buyer on its own; the buyer's later proposals are refused.
    let fork = HalfBlock::sign(
        &key,
        BlockFields {
            sequence_number: 3,
            link_public_key: &agent_entity,
            link_sequence_number: 0,
            previous_hash: &wrong.hash(),
            kind: kinds::CONTRACT,
            transaction: &contract_active(&terms).to_string(),
            timestamp: node::now_ms(),
        },
    );
    assert_eq!(
        post_raw(client.signed(), &fork).await,
        Err("record_fork".into())
    );
    let frauds: RecordFraudsPage = http
        .get(format!("{}/v1/frauds?after=0", world.agent.url))
        .send()
        .await
        .expect("frauds")
        .json()
        .await
        .expect("page");
    assert_eq!(frauds.frauds.len(), 1, "{frauds:?}");
    let proof = &frauds.frauds[0];
    assert_eq!(proof.kind, FraudKind::DoubleSign);
    assert_eq!(
        proof.verify().expect("the proof verifies alone"),
        *key.entity()
    );
    let next = HalfBlock::sign(
        &key,
        BlockFields {
            sequence_number: 4,
            link_public_key: &agent_entity,
            link_sequence_number: 0,
            previous_hash: &head.hash(),
            kind: kinds::CONTRACT,
            transaction: &contract_active(&second).to_string(),
            timestamp: node::now_ms(),
        },
    );
    assert_eq!(
        post_raw(client.signed(), &next).await,
        Err("record_refused".into())
    );
    // Bad queries are refused with a code too.
    let resp = http
        .get(format!("{}/v1/records", world.agent.url))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "invalid_query");
    let resp = http
        .get(format!("{}/v1/records?public_key=alice", world.agent.url))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 400, "a public_key that is no entity id");
}

/// Buyers recording deals in a burst.
const RECORDING_BUYERS: usize = 4;
/// How long the burst runs before the agent is killed.
const RECORD_BURST_MS: u64 = 800;

/// kill -9 of the agent while buyers' proposals are in flight, and a buyer that "dies" after
/// writing a proposal but before sending it: after the agent restarts and the buyers send
/// their unanswered proposals again, every proposal has exactly one agreement, the agent's
/// chain links from 1 with no hole, and nobody forked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_between_proposal_and_agreement_loses_no_half_and_forks_nothing() {
    for (backend, database) in util::backends("recordcrash") {
        eprintln!("backend: {backend}");
        let world = World::start(1 << 20, 60, None);
        let (mut child, url, data) =
            world.spawn_own_agent("crashing-agent", 64 * MIB, database.url().as_deref());
        let http = world.http.clone();

        // Buyers, each with an active contract and its chain beside its key.
        let mut buyers = Vec::new();
        for b in 0..RECORDING_BUYERS {
            let (key_path, key, wallet) = world
                .buyer_named(&format!("recorder-{b}"), 10_000_000)
                .await;
            let client = AgentClient::new(http.clone(), &url, key.clone());
            let terms = world
                .active_contract(&client, &wallet, &key, MIB, 30 * DAY_S, 0)
                .await;
            buyers.push((key_path, key, terms));
        }
        let agent_entity = {
            let probe = SignedClient::new(http.clone(), &url, buyers[0].1.clone());
            probe.audience().await.expect("agent entity").to_string()
        };

        // A buyer that wrote a proposal and died before sending it.
        {
            let (key_path, key, terms) = &buyers[0];
            let mut chain = RecordChain::open(key_path, key.clone()).expect("chain");
            chain
                .continue_from(&[SignedClient::new(http.clone(), &url, key.clone())])
                .await
                .expect("head");
            chain
                .propose(&agent_entity, kinds::CONTRACT, &contract_active(terms))
                .expect("written, never sent");
        }

        // The burst: each buyer records again and again; the agent is killed meanwhile.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (key_path, key, terms) in buyers.clone() {
            let (http, url, stop) = (http.clone(), url.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let server = SignedClient::new(http, &url, key.clone());
                let tx = contract_active(&terms);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let agreed =
                        record_deal(&key_path, key.clone(), &server, kinds::CONTRACT, &tx).await;
                    if matches!(agreed, Agreed::Later(_)) {
                        break;
                    }
                }
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(RECORD_BURST_MS)).await;
        child.0.kill().expect("kill -9");
        child.0.wait().expect("reaped");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in tasks {
            tokio::time::timeout(std::time::Duration::from_secs(30), t)
                .await
                .expect("recorders stop")
                .expect("task");
        }

        // Restart; every buyer sends what is unanswered again.
        let (_child, url) = util::spawn_agent(&data, database.url().as_deref());
        let mut proposals = 0;
        for (key_path, key, _) in &buyers {
            let server = SignedClient::new(http.clone(), &url, key.clone());
            clients::records::resend_unanswered(key_path, key.clone(), &[server])
                .await
                .expect("resend");
            let chain = RecordChain::open(key_path, key.clone()).expect("chain");
            assert!(
                chain.unanswered().is_empty(),
                "{backend}: unanswered after the restart: {:?}",
                chain.unanswered().len()
            );
            check_chain(chain.own()).expect("the buyer's chain links");
            for p in chain.own() {
                check_agreement(p, chain.agreement(p.sequence_number).expect("agreed"))
                    .expect("an agreement to it");
            }
            proposals += chain.own().len();
        }
        let agents = records_of(&http, &url, &agent_entity).await;
        assert_eq!(agents.blocks.first().map(|b| b.sequence_number), Some(1));
        check_chain(&agents.blocks).expect("the agent's chain links from 1");
        assert_eq!(
            agents.blocks.len(),
            proposals,
            "{backend}: one agreement per proposal, none twice, none lost"
        );
        let mut answered: Vec<(String, u64)> = agents
            .blocks
            .iter()
            .map(|b| (b.link_public_key.clone(), b.link_sequence_number))
            .collect();
        answered.sort();
        answered.dedup();
        assert_eq!(
            answered.len(),
            proposals,
            "{backend}: no proposal agreed twice"
        );
        let frauds: RecordFraudsPage = http
            .get(format!("{url}/v1/frauds"))
            .send()
            .await
            .expect("frauds")
            .json()
            .await
            .expect("page");
        assert!(frauds.frauds.is_empty(), "{backend}: {frauds:?}");
        eprintln!("{backend}: {proposals} records, all agreed once after kill -9");
    }
}

/// Not a test: half-blocks agreed per second between buyers (this process) and an agent (its
/// own process) on loopback: `RECORD_BENCH_BUYERS` buyers (default 8), each recording one
/// deal after another from its own chain for `RECORD_BENCH_S` seconds (default 10); SQLite
/// unless `TEST_DATABASE_URL` is set.
/// `cargo test --release -p storage-agent --test records -- --ignored --nocapture records_agreed_per_second`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn records_agreed_per_second() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (buyers_n, seconds) = (env("RECORD_BENCH_BUYERS", 8), env("RECORD_BENCH_S", 10));
    let database = std::env::var("TEST_DATABASE_URL")
        .ok()
        .and_then(|base| db::testing::fresh_postgres(&base, "recordbench").ok());
    let world = World::start(1 << 20, 60, None);
    let (_child, url, _) = world.spawn_own_agent(
        "bench-agent",
        64 * MIB,
        database.as_ref().map(|d| d.url.as_str()),
    );
    let http = world.http.clone();
    let mut tasks = Vec::new();
    let started_at = std::sync::Arc::new(tokio::sync::Barrier::new(buyers_n as usize + 1));
    for b in 0..buyers_n {
        let (key_path, key, wallet) = world
            .buyer_named(&format!("bench-buyer-{b}"), 10_000_000)
            .await;
        let client = AgentClient::new(http.clone(), &url, key.clone());
        let terms = world
            .active_contract(&client, &wallet, &key, MIB, 30 * DAY_S, 0)
            .await;
        let (http, url, barrier) = (http.clone(), url.clone(), started_at.clone());
        tasks.push(tokio::spawn(async move {
            let server = SignedClient::new(http, &url, key.clone());
            let to = server.audience().await.expect("agent").to_string();
            let mut chain = RecordChain::open(&key_path, key.clone()).expect("chain");
            chain
                .continue_from(std::slice::from_ref(&server))
                .await
                .expect("head");
            let tx = contract_active(&terms);
            barrier.wait().await;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
            let mut agreed = 0u64;
            let mut latencies = Vec::new();
            while std::time::Instant::now() < deadline {
                let sent = std::time::Instant::now();
                let p = chain.propose(&to, kinds::CONTRACT, &tx).expect("propose");
                match chain.send(&server, &p, node::now_ms()).await.expect("send") {
                    Agreed::Yes(_) => agreed += 1,
                    Agreed::Later(why) => panic!("refused: {why}"),
                }
                latencies.push(sent.elapsed().as_secs_f64() * 1e3);
            }
            (agreed, latencies)
        }));
    }
    started_at.wait().await;
    let started = std::time::Instant::now();
    let mut agreed = 0;
    let mut latencies = Vec::new();
    for t in tasks {
        let (n, l) = t.await.expect("buyer");
        agreed += n;
        latencies.extend(l);
    }
    let took = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let pct = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    eprintln!(
        "records agreed: {agreed} in {took:.1} s = {:.0}/s ({buyers_n} buyers, {}); per record \
         (propose, fsync, send, agree) p50 {:.2} ms, p99 {:.2} ms",
        agreed as f64 / took,
        if database.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        pct(0.5),
        pct(0.99)
    );
}

/// A contract's `completed` record (DESIGN 11): after the contract ended, the buyer proposes
/// the figures the agent's view shows (bytes written, bytes read, audits answered) and the
/// agent agrees; other figures, or a record before the end, are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_contract_is_recorded_with_the_agents_own_figures() {
    for (backend, database) in util::backends("completed") {
        eprintln!("backend: {backend}");
        let world = World::start(64 * MIB, 3_600, database.url());
        let http = world.http.clone();
        let (key_path, key, wallet) = world.buyer_named("buyer", 10_000_000).await;
        let client = AgentClient::new(http.clone(), &world.agent.url, key.clone());
        // A contract of two seconds: written, read, audited, then over.
        let short = world
            .active_contract(&client, &wallet, &key, MIB, 2, 1_000_000)
            .await;
        let running = world
            .active_contract(&client, &wallet, &key, MIB, 30 * DAY_S, 0)
            .await;
        client
            .put(&short.id, "o", vec![5; 40_000])
            .await
            .expect("put");
        let got = client.get(&short.id, "o", None).await.expect("read");
        assert_eq!(got.len(), 40_000);
        client.audit(&short.id, "o", 1).await.expect("audit");

        // Not ended: refused.
        let view = client.contract(&running.id).await.expect("view");
        let early = record_deal(
            &key_path,
            key.clone(),
            client.signed(),
            kinds::CONTRACT,
            &clients::records::contract_completed(&view),
        )
        .await;
        assert!(
            matches!(&early, Agreed::Later(why) if why.contains("not ended")),
            "{early:?}"
        );

        util::eventually(10_000, "the short contract to end", || async {
            client
                .contract(&short.id)
                .await
                .is_ok_and(|v| v.status == "ended")
        })
        .await;
        let view = client.contract(&short.id).await.expect("view");
        assert_eq!(
            (view.bytes_written, view.bytes_read, view.audits_answered),
            (40_000, 40_000, 1),
            "{backend}: the agent's books"
        );
        let mut inflated = clients::records::contract_completed(&view);
        inflated["bytes_read"] = (view.bytes_read + 1).into();
        let refused = record_deal(
            &key_path,
            key.clone(),
            client.signed(),
            kinds::CONTRACT,
            &inflated,
        )
        .await;
        assert!(
            matches!(&refused, Agreed::Later(why) if why.contains("books say")),
            "{refused:?}"
        );
        let agreed = record_deal(
            &key_path,
            key.clone(),
            client.signed(),
            kinds::CONTRACT,
            &clients::records::contract_completed(&view),
        )
        .await;
        let Agreed::Yes(agreement) = agreed else {
            panic!("{backend}: not agreed: {agreed:?}");
        };
        assert_eq!(agreement.transaction_json()["event"], "completed");
        assert_eq!(agreement.transaction_json()["audits_passed"], 1);
    }
}

/// Propose a `tokens` record with this exact transaction from `key`'s chain (a gateway that
/// miscounts or lies): the agent's answer.
async fn propose_tokens(
    key_path: &std::path::Path,
    key: Arc<KeyPair>,
    agent: &SignedClient,
    tx: serde_json::Value,
) -> Agreed {
    let mut chain = RecordChain::open(key_path, key).expect("chain");
    let to = agent.audience().await.expect("agent").to_string();
    let proposal = chain.propose(&to, kinds::TOKENS, &tx).expect("propose");
    chain
        .send(agent, &proposal, node::now_ms())
        .await
        .expect("send")
}

/// Bytes served under retrieval tokens (DESIGN 11, `tokens`): the gateway that read through a
/// token records the bytes with the agent, which agrees to what its books say: each token read
/// here, claimed once, the bytes at most what it served, the total cumulative. Anything else
/// is refused and claims nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_read_through_tokens_are_recorded_once_with_the_gateway() {
    for (backend, database) in util::backends("tokens") {
        eprintln!("backend: {backend}");
        let world = World::start(64 * MIB, 3_600, database.url());
        let http = world.http.clone();
        let (_, key, wallet) = world.buyer_named("publisher", 10_000_000).await;
        let client = AgentClient::new(http.clone(), &world.agent.url, key.clone());
        let terms = world
            .active_contract(&client, &wallet, &key, MIB, 30 * DAY_S, 1_000_000)
            .await;
        client
            .put(&terms.id, "o", vec![7; 40_000])
            .await
            .expect("put");
        let objects = vec!["o".to_owned(); 4];
        let tokens = client
            .retrievals(&terms.id, &objects, 1, 600)
            .await
            .expect("tokens");
        // Three tokens read in full, one never read.
        for t in &tokens[..3] {
            let got = http.get(&t.url).send().await.expect("read").bytes().await;
            assert_eq!(got.expect("bytes").len(), 40_000);
        }
        let name = |i: usize| protocol::record::token_name(&tokens[i].token);

        let (gw_path, gw_key, _) = world.buyer_named("gateway", 1).await;
        let gw = SignedClient::new(http.clone(), &world.agent.url, gw_key.clone());
        let agreed =
            clients::records::record_tokens(&gw_path, gw_key.clone(), &gw, &[(name(0), 40_000)])
                .await;
        let Ok(Agreed::Yes(a)) = agreed else {
            panic!("{backend}: not agreed: {agreed:?}");
        };
        assert_eq!(a.transaction_json()["bytes_total"], 40_000);
        // The next record's total goes on from the first.
        let agreed =
            clients::records::record_tokens(&gw_path, gw_key.clone(), &gw, &[(name(1), 40_000)])
                .await;
        let Ok(Agreed::Yes(a)) = agreed else {
            panic!("{backend}: second not agreed: {agreed:?}");
        };
        assert_eq!(a.transaction_json()["bytes_total"], 80_000);
        let held = records_of(&http, &world.agent.url, gw_key.entity().as_str()).await;
        assert_eq!(held.blocks.len(), 2, "the agent holds the gateway's halves");

        // Another gateway: a token claimed already, one never read, more bytes than served,
        // a wrong total: each refused, and none claims anything.
        let (other_path, other_key, _) = world.buyer_named("other", 1).await;
        let other = SignedClient::new(http.clone(), &world.agent.url, other_key.clone());
        let cases = [
            (
                serde_json::json!({"tokens": [name(0)], "bytes": 40_000, "bytes_total": 40_000}),
                "recorded already",
            ),
            (
                serde_json::json!({"tokens": [name(3)], "bytes": 1, "bytes_total": 1}),
                "not read",
            ),
            (
                serde_json::json!({"tokens": [name(2)], "bytes": 40_001, "bytes_total": 40_001}),
                "served",
            ),
            (
                serde_json::json!({"tokens": [name(2)], "bytes": 40_000, "bytes_total": 90_000}),
                "total",
            ),
            (
                serde_json::json!({"tokens": ["00"], "bytes": 1, "bytes_total": 1}),
                "no token",
            ),
            (
                serde_json::json!({"tokens": [name(2), name(2)], "bytes": 2, "bytes_total": 2}),
                "distinct",
            ),
        ];
        for (tx, why) in cases {
            let answer = propose_tokens(&other_path, other_key.clone(), &other, tx.clone()).await;
            assert!(
                matches!(&answer, Agreed::Later(w) if w.contains(why)),
                "{backend}: {tx} answered {answer:?}, not refused for `{why}`"
            );
        }
        // Token 2 is still unclaimed: a right record of it is agreed.
        let answer = propose_tokens(
            &other_path,
            other_key.clone(),
            &other,
            serde_json::json!({"tokens": [name(2)], "bytes": 40_000, "bytes_total": 40_000}),
        )
        .await;
        assert!(matches!(answer, Agreed::Yes(_)), "{backend}: {answer:?}");
        // With refused proposals to this agent still unanswered, the client holds the next
        // record back rather than propose one the agent would refuse for its total.
        let held_back =
            clients::records::record_tokens(&other_path, other_key, &other, &[(name(3), 1)]).await;
        assert!(
            matches!(&held_back, Err(why) if why.contains("not agreed yet")),
            "{backend}: {held_back:?}"
        );
    }
}
