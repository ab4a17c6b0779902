//! What a buyer or an agent could do to the market's trust, end to end over loopback HTTP with a
//! real issuer and real agents (issue 12): reports that ruin an honest agent, Merkle roots a
//! buyer makes up, an agent dodging audits with `402` or `429`, offline agents chosen, and the
//! best achievable of an unmet target left out of `market match`. On SQLite, and on
//! PostgreSQL when TEST_DATABASE_URL is set.

mod util;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use clients::agent::AgentClient;
use clients::market::MarketClient;
use market::reliability::{CONTRADICTED_REPORT_SHARE, REPORT_WEIGHT};
use node::client::SignedClient;
use protocol::book::{Listing, MatchRequest, RegisteredObject, Registration, Report};
use protocol::market::{self as pm, REFERENCE_BYTES, REFERENCE_DURATION_S};
use protocol::{Envelope, KeyPair};
use util::{backends, eventually, storage_price, Net};

/// Longest wait for anything in these tests.
const WAIT_MS: u64 = 15_000;

fn request(currency: &str, k: u64, n: Option<u64>, target: f64) -> MatchRequest {
    MatchRequest {
        currency: currency.to_owned(),
        shard_bytes: 1 << 20,
        data_shards: k,
        total_shards: n,
        duration_s: REFERENCE_DURATION_S,
        expected_read_bytes: 0,
        max_failure_probability: target,
        exclude: vec![],
    }
}

async fn wait_for_offers(client: &MarketClient, currency: &str, n: usize) {
    eventually(WAIT_MS, "every offer in the book", || async {
        client
            .offers(Some(currency))
            .await
            .map(|o| o.len() == n)
            .unwrap_or(false)
    })
    .await;
}

async fn listing(client: &MarketClient, currency: &str, agent: &str) -> Listing {
    client
        .offers(Some(currency))
        .await
        .expect("offers")
        .into_iter()
        .find(|o| o.agent == agent)
        .expect("listed")
}

/// A contract of 1 MiB for an hour with agent `i` (priced at its contract_min, 10), listing
/// the market as auditor, holding one object of 40,000 bytes; its registration.
async fn small_contract(
    net: &Net,
    i: usize,
    wallet: &clients::issuer::IssuerClient,
    buyer: &Arc<KeyPair>,
) -> (String, Registration) {
    let agent = net.agent(i);
    let ac = AgentClient::new(net.http.clone(), &agent.url, buyer.clone());
    let (_, offer) = ac.offer().await.expect("offer");
    let terms = AgentClient::terms_from_offer(
        &offer,
        buyer.entity(),
        &net.issuer.entity,
        1 << 20,
        3600,
        vec![net.market.market.key.entity().clone()],
    )
    .expect("terms");
    assert_eq!(terms.contract_price, 10, "a contract priced 10");
    let signed = ac.buy(wallet, &terms, 100_000).await.expect("contract");
    let info = ac
        .put(&terms.id, "shard-0", vec![i as u8 + 1; 40_000])
        .await
        .expect("put");
    let registration = Registration {
        contract: signed.value.contract.clone(),
        agent_signature: signed.value.agent_signature.clone(),
        objects: vec![RegisteredObject {
            name: info.name.clone(),
            merkle_root: info.merkle_root.clone(),
            leaf_count: 3,
            size: info.size,
        }],
    };
    (terms.id, registration)
}

/// The reference price of agent `i` (1 GiB for 30 days, no reads), as the market computes it.
fn reference_price(net: &Net, i: usize) -> u64 {
    let cur = pm::OfferCurrency {
        issuer: net.issuer.entity.clone(),
        issuer_url: net.issuer.url.clone(),
        storage_per_gib_day: storage_price(i),
        write_per_kib: 1,
        read_per_kib: 1,
        contract_min: 10,
        pay_to: None,
    };
    pm::request_price(&cur, REFERENCE_BYTES, REFERENCE_DURATION_S, 0).expect("price")
}

fn stored_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(stored_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Finding 8: 40 `lost` reports with fresh counters on one contract priced 10 moved an agent
/// with 26 passed audits from p_fail 0.024 to 0.377. Now one bad (and one good) report per
/// contract counts, weighted by what the contract was worth, a tenth of that when the market's
/// own audits contradict it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_count_once_and_weigh_what_the_contract_was_worth() {
    for (backend, db) in backends("market_reports") {
        let net = Net::start(2, db.url());
        let (wallet, buyer) = net.buyer(10_000_000).await;
        let client = MarketClient::new(net.http.clone(), &net.market.url, buyer.clone());
        let currency = net.issuer.entity.to_string();
        wait_for_offers(&client, &currency, 2).await;
        let m = &net.market.market;

        // Agent 0 keeps its data and passes its audits.
        let (id0, reg0) = small_contract(&net, 0, &wallet, &buyer).await;
        client.register(&reg0).await.expect("registered");
        let (id1, reg1) = small_contract(&net, 1, &wallet, &buyer).await;
        client.register(&reg1).await.expect("registered");
        for _ in 0..5 {
            market::auditor::audit_round(m).await.expect("round");
        }
        let a0 = net.agent(0).agent.key.entity().to_string();
        let before = listing(&client, &currency, &a0).await;
        assert_eq!(before.audits_passed, 5, "[{backend}]");

        // The first `lost` report counts, at a tenth of what a contract priced 10 is worth
        // against the agent's reference price: the market's audit just passed.
        let lost = Report {
            contract: id0.clone(),
            outcome: "lost".into(),
            detail: String::new(),
        };
        let first = client.report(&lost).await.expect("report");
        assert_eq!(first.value["counted"], true, "[{backend}]");
        assert_eq!(first.value["contradicted_by_audits"], true, "[{backend}]");
        let expected =
            REPORT_WEIGHT * 10.0 / reference_price(&net, 0) as f64 * CONTRADICTED_REPORT_SHARE;
        let weight = first.value["weight"].as_f64().expect("weight");
        assert!(
            (weight - expected).abs() < 1e-12,
            "[{backend}] {weight} vs {expected}"
        );
        // 39 more, and the other bad outcomes, with fresh counters: refused, counted nowhere.
        for i in 0..39 {
            let outcome = ["lost", "corrupt", "unavailable"][i % 3];
            let again = Report {
                outcome: outcome.into(),
                detail: format!("attempt {i}"),
                ..lost.clone()
            };
            let e = client
                .report(&again)
                .await
                .expect_err("a second bad report");
            assert_eq!(e.code(), Some("already_reported"), "[{backend}] {e}");
        }
        let after = listing(&client, &currency, &a0).await;
        assert!(
            after.p_fail - before.p_fail < 1e-4,
            "[{backend}] p_fail {} -> {}",
            before.p_fail,
            after.p_fail
        );
        // One good report counts too, once.
        let ok = Report {
            outcome: "ok".into(),
            ..lost.clone()
        };
        assert_eq!(
            client.report(&ok).await.expect("ok report").value["counted"],
            true
        );
        assert_eq!(
            client
                .report(&ok)
                .await
                .expect_err("a second ok report")
                .code(),
            Some("already_reported")
        );

        // Agent 1 lost its data and its audit failed: a report on that contract is not
        // contradicted, and weighs what the contract was worth.
        let objects = net.dir.path().join("agent-1/objects");
        let file = stored_files(&objects).into_iter().next().expect("stored");
        std::fs::write(&file, vec![0u8; 40_000]).expect("alter");
        market::auditor::audit_round(m).await.expect("round");
        let a1 = net.agent(1).agent.key.entity().to_string();
        assert_eq!(listing(&client, &currency, &a1).await.audits_failed, 1);
        let report1 = client
            .report(&Report {
                contract: id1.clone(),
                outcome: "corrupt".into(),
                detail: String::new(),
            })
            .await
            .expect("report");
        assert_eq!(report1.value["contradicted_by_audits"], false);
        let expected = REPORT_WEIGHT * 10.0 / reference_price(&net, 1) as f64;
        let weight = report1.value["weight"].as_f64().expect("weight");
        assert!(
            (weight - expected).abs() < 1e-12,
            "[{backend}] {weight} vs {expected}"
        );
    }
}

/// Finding 9: re-registering a contract with `merkle_root: "00"*32` replaced the real root,
/// and the honest agent then failed audits. Now a root is kept only when the agent's proof
/// verifies against it, and a kept root is never replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_roots_are_verified_and_never_replaced() {
    for (backend, db) in backends("market_roots") {
        let net = Net::start(1, db.url());
        let (wallet, buyer) = net.buyer(10_000_000).await;
        let client = MarketClient::new(net.http.clone(), &net.market.url, buyer.clone());
        let currency = net.issuer.entity.to_string();
        wait_for_offers(&client, &currency, 1).await;
        let (id, real) = small_contract(&net, 0, &wallet, &buyer).await;
        let zeros = "00".repeat(32);
        let mut made_up = real.clone();
        made_up.objects[0].merkle_root = zeros.clone();

        // A root the agent's proof does not lead to is refused, and nothing is registered.
        let e = client.register(&made_up).await.expect_err("made-up root");
        assert_eq!(e.code(), Some("root_unverified"), "[{backend}] {e}");
        assert!(client.my_contracts().await.expect("mine").is_empty());
        // An object the agent does not hold, likewise.
        let mut missing = real.clone();
        missing.objects[0].name = "no-such-object".into();
        let e = client.register(&missing).await.expect_err("missing object");
        assert_eq!(e.code(), Some("root_unverified"), "[{backend}] {e}");

        // The real root is kept; registering it again changes nothing; another is refused.
        client.register(&real).await.expect("registered");
        client.register(&real).await.expect("the same again");
        let e = client
            .register(&made_up)
            .await
            .expect_err("replacing the root");
        assert_eq!(e.code(), Some("root_conflict"), "[{backend}] {e}");
        let mine = client.my_contracts().await.expect("mine");
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].id, id);
        assert_eq!(
            mine[0].objects, real.objects,
            "[{backend}] the real root stays"
        );

        // So the honest agent keeps passing its audits.
        for _ in 0..3 {
            market::auditor::audit_round(&net.market.market)
                .await
                .expect("round");
        }
        let a0 = net.agent(0).agent.key.entity().to_string();
        let l = listing(&client, &currency, &a0).await;
        assert_eq!((l.audits_passed, l.audits_failed), (3, 0), "[{backend}]");
    }
}

/// A registration is a signed command in the shared command log (`node::commands`, issue 13):
/// the same request again (same counter, same body) replays the first answer, and the counter
/// used again with another body is `409 counter_reused`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_registration_replays_its_answer() {
    for (backend, db) in backends("market_register_log") {
        let net = Net::start(1, db.url());
        let (wallet, buyer) = net.buyer(10_000_000).await;
        let client = MarketClient::new(net.http.clone(), &net.market.url, buyer.clone());
        wait_for_offers(&client, &net.issuer.entity.to_string(), 1).await;
        let (_, real) = small_contract(&net, 0, &wallet, &buyer).await;
        let first = client.register(&real).await.expect("registered");
        assert_eq!(first.value["objects"], 1, "[{backend}] {}", first.value);
        let body = serde_json::to_vec(&real).expect("json");
        let again = client
            .signed()
            .command::<serde_json::Value>("POST", "/v1/contracts", body, first.counter)
            .await
            .expect("the same request again");
        assert_eq!(
            again.value, first.value,
            "[{backend}] the first answer, replayed (a fresh registration would add 0 objects)"
        );
        let mut other = real.clone();
        other.objects.clear();
        let e = client
            .signed()
            .command::<serde_json::Value>(
                "POST",
                "/v1/contracts",
                serde_json::to_vec(&other).expect("json"),
                first.counter,
            )
            .await
            .expect_err("another body under the same counter");
        assert_eq!(e.code(), Some("counter_reused"), "[{backend}] {e}");
        // A fresh counter registers as before: nothing new.
        let fresh = client.register(&real).await.expect("the same again");
        assert_eq!(fresh.value["objects"], 0, "[{backend}] {}", fresh.value);
    }
}

/// How the scripted agent answers audits.
const HONEST: u8 = 0;
const PAYMENT_REQUIRED: u8 = 1;
const RATE_LIMITED: u8 = 2;
/// `429` with the wait (`retry_after_s`, 30) an honest agent's rate limit gives.
const RATE_LIMITED_FOR_30_S: u8 = 3;

/// Standard base64 with padding (what the agent's audit answer carries).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// An agent the test scripts: it answers `/.well-known/lcp` as `entity`, and audits of
/// `object` honestly from `bytes`, or `402` or `429`, as `mode` says.
fn scripted_agent(
    entity: String,
    bytes: Arc<Vec<u8>>,
    mode: Arc<AtomicU8>,
) -> node::http::HttpHandle {
    node::http::spawn(
        "scripted-agent",
        "127.0.0.1:0",
        None,
        1,
        move |cfg| {
            let (entity, bytes, mode) = (entity.clone(), bytes.clone(), mode.clone());
            cfg.route(
                "/.well-known/lcp",
                web::get().to(move || {
                    let entity = entity.clone();
                    async move {
                        HttpResponse::Ok().json(serde_json::json!({
                            "protocol": "lcp/1", "role": "storage-agent", "entity": entity,
                        }))
                    }
                }),
            )
            .route(
                "/v1/contracts/{id}/audit",
                web::post().to(move |body: web::Json<serde_json::Value>| {
                    let (bytes, mode) = (bytes.clone(), mode.clone());
                    async move {
                        match mode.load(Ordering::SeqCst) {
                            PAYMENT_REQUIRED => {
                                return HttpResponse::PaymentRequired().json(serde_json::json!({
                                    "error": {"code": "payment_required", "message": "pay"}
                                }))
                            }
                            RATE_LIMITED => {
                                return HttpResponse::TooManyRequests().json(serde_json::json!({
                                    "error": {"code": "rate_limited", "message": "later"}
                                }))
                            }
                            RATE_LIMITED_FOR_30_S => {
                                return HttpResponse::TooManyRequests().json(serde_json::json!({
                                    "error": {"code": "rate_limited", "message": "later",
                                              "details": {"retry_after_s": 30}}
                                }))
                            }
                            _ => {}
                        }
                        let leaf = body["leaf"].as_u64().unwrap_or(0);
                        let tree = protocol::merkle::MerkleTree::from_bytes(&bytes);
                        let proof = tree.proof(leaf).unwrap_or_default();
                        let start = (leaf as usize * protocol::merkle::LEAF_BYTES).min(bytes.len());
                        let end = (start + protocol::merkle::LEAF_BYTES).min(bytes.len());
                        HttpResponse::Ok().json(serde_json::json!({
                            "leaf_data": base64(&bytes[start..end]),
                            "proof": proof.iter().map(|h| hex(h)).collect::<Vec<_>>(),
                            "leaf_count": tree.leaf_count(),
                            "root": tree.root_hex(),
                        }))
                    }
                }),
            );
        },
        || {},
    )
    .expect("scripted agent")
}

/// Finding 9, second part: an agent answered the market's auditor `402` and nothing was
/// recorded, so it could dodge audits. Now a `402` (any refusal) is a failed audit, and `429`
/// puts an audit off for at most `AUDIT_DEFERRALS_MAX` rounds in a row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_refusing_the_auditor_fails_its_audit() {
    for (backend, db) in backends("market_dodge") {
        let net = Net::start(0, db.url());
        let (_, buyer) = net.buyer(10).await;
        let client = MarketClient::new(net.http.clone(), &net.market.url, buyer.clone());
        let currency = net.issuer.entity.to_string();
        let agent_key = Arc::new(KeyPair::generate().expect("key"));
        let agent = agent_key.entity().to_string();
        let bytes = Arc::new(vec![7u8; 40_000]);
        let mode = Arc::new(AtomicU8::new(HONEST));
        let server = scripted_agent(agent.clone(), bytes.clone(), mode.clone());

        // Its offer in the book, and a contract with it registered (the registration's audit
        // is answered honestly).
        let now = i64::try_from(node::now_ms() / 1000).expect("time");
        let offer = pm::Offer {
            agent: agent_key.entity().clone(),
            endpoint: server.url.clone(),
            issued_at: pm::format_rfc3339(now),
            expires_at: pm::format_rfc3339(now + 3600),
            free_bytes: 1 << 30,
            block_bytes_max: 1 << 30,
            duration_s_max: 86_400 * 30,
            currencies: vec![pm::OfferCurrency {
                issuer: net.issuer.entity.clone(),
                issuer_url: net.issuer.url.clone(),
                storage_per_gib_day: 100,
                write_per_kib: 1,
                read_per_kib: 1,
                contract_min: 10,
                pay_to: None,
            }],
        };
        let envelope = Envelope::sign_json(&agent_key, pm::OFFER_TYPE, &offer).expect("sign");
        SignedClient::new(net.http.clone(), &net.market.url, agent_key.clone())
            .command::<serde_json::Value>(
                "POST",
                "/v1/offers",
                serde_json::to_vec(&envelope).expect("json"),
                node::now_ms() * 1000,
            )
            .await
            .expect("offer posted");
        let contract = pm::Contract {
            id: uuid::Uuid::new_v4().to_string(),
            agent: agent_key.entity().clone(),
            buyer: buyer.entity().clone(),
            issuer: net.issuer.entity.clone(),
            block_bytes: 1 << 20,
            start: pm::format_rfc3339(now),
            end: pm::format_rfc3339(now + 3600),
            contract_price: 10,
            write_per_kib: 1,
            read_per_kib: 1,
            auditors: vec![net.market.market.key.entity().clone()],
        };
        let signed = Envelope::sign_json(&buyer, pm::CONTRACT_TYPE, &contract).expect("sign");
        let tree = protocol::merkle::MerkleTree::from_bytes(&bytes);
        client
            .register(&Registration {
                agent_signature: signed.countersign(&agent_key),
                contract: signed,
                objects: vec![RegisteredObject {
                    name: "shard-0".into(),
                    merkle_root: tree.root_hex(),
                    leaf_count: tree.leaf_count(),
                    size: bytes.len() as u64,
                }],
            })
            .await
            .expect("registered");
        let m = &net.market.market;
        let audits = || async {
            let l = listing(&client, &currency, &agent).await;
            (l.audits_passed, l.audits_failed)
        };
        market::auditor::audit_round(m).await.expect("round");
        assert_eq!(
            audits().await,
            (1, 0),
            "[{backend}] an honest answer passes"
        );

        // 402 to the market's auditor: a failed audit.
        mode.store(PAYMENT_REQUIRED, Ordering::SeqCst);
        market::auditor::audit_round(m).await.expect("round");
        assert_eq!(audits().await, (1, 1), "[{backend}] 402 is a failed audit");

        // 429: try later, up to AUDIT_DEFERRALS_MAX rounds in a row; then a failed audit.
        mode.store(RATE_LIMITED, Ordering::SeqCst);
        for _ in 0..market::auditor::AUDIT_DEFERRALS_MAX {
            market::auditor::audit_round(m).await.expect("round");
            assert_eq!(audits().await, (1, 1), "[{backend}] 429 is put off");
        }
        market::auditor::audit_round(m).await.expect("round");
        assert_eq!(audits().await, (1, 2), "[{backend}] always 429 fails");
        // An answer in between resets the count.
        mode.store(HONEST, Ordering::SeqCst);
        market::auditor::audit_round(m).await.expect("round");
        mode.store(RATE_LIMITED, Ordering::SeqCst);
        market::auditor::audit_round(m).await.expect("round");
        assert_eq!(audits().await, (2, 2), "[{backend}]");

        // The scheduled auditor honours the wait a 429 asks for: ticks every second (as on a
        // test devnet) against an agent's per-minute limit put nothing off four times in a
        // row, so the honest agent fails no audit.
        mode.store(HONEST, Ordering::SeqCst);
        market::auditor::audit_round(m).await.expect("round");
        mode.store(RATE_LIMITED_FOR_30_S, Ordering::SeqCst);
        let every_second = market::auditor::Schedule::every(Duration::from_secs(1));
        for tick in 0..(market::auditor::AUDIT_DEFERRALS_MAX + 3) {
            let done = market::auditor::audit_tick(m, &every_second, 0, node::now_ms())
                .await
                .expect("tick");
            let expected = if tick == 0 {
                vec![agent.clone()]
            } else {
                vec![]
            };
            assert_eq!(done.audited, expected, "[{backend}] tick {tick}");
            assert_eq!(audits().await, (3, 2), "[{backend}] tick {tick}");
        }
        drop(server);
    }
}

/// Finding 12: killing one agent of eight and matching 7 shards with a lenient target chose
/// the dead one. An agent offline at the last probe is never chosen, nor a candidate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_agents_are_never_chosen() {
    for (backend, db) in backends("market_offline") {
        let mut net = Net::start(4, db.url());
        let (_, buyer) = net.buyer(10).await;
        let client = MarketClient::new(net.http.clone(), &net.market.url, buyer.clone());
        let currency = net.issuer.entity.to_string();
        wait_for_offers(&client, &currency, 4).await;
        // The cheapest agent stops; the next probe finds it offline.
        let dead = net.agent(0).agent.key.entity().to_string();
        net.stop_agent(0).await;
        assert_eq!(
            market::auditor::probe_round(&net.market.market)
                .await
                .expect("probe"),
            3
        );
        assert!(!listing(&client, &currency, &dead).await.online);

        // A lenient target that the cheapest three, the dead one included, would meet.
        let answer = client
            .match_agents(&request(&currency, 3, Some(3), 0.99))
            .await
            .expect("match");
        assert_eq!(answer.agents.len(), 3);
        assert!(
            answer.agents.iter().all(|a| a.agent != dead),
            "[{backend}] the offline agent was chosen"
        );
        assert!(answer.candidates.iter().all(|c| c.agent != dead));
        // Four shards need four online agents: there are three.
        let e = client
            .match_agents(&request(&currency, 1, Some(4), 0.99))
            .await
            .expect_err("too few online agents");
        assert_eq!(e.code(), Some("cannot_meet_target"), "[{backend}]");
    }
}

/// Run the `market` binary; answers (exit code, stdout, stderr). Killed after `WAIT_MS`.
fn run_market(args: &[String]) -> (i32, String, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_market"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("market binary");
    let deadline = std::time::Instant::now() + Duration::from_millis(WAIT_MS);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("market {args:?} did not finish within {WAIT_MS} ms");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Finding 15: `market match` said "`details` has the best achievable" but not the value.
/// Now the text names it, and `--json` prints the refusal with its details. (And finding 19:
/// human output shows amounts in the currency's units; `--json` keeps minor units.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn market_match_shows_the_best_achievable() {
    let net = Net::start(2, None);
    let (_, buyer) = net.buyer(10).await;
    let client = MarketClient::new(net.http.clone(), &net.market.url, buyer);
    let currency = net.issuer.entity.to_string();
    wait_for_offers(&client, &currency, 2).await;
    // Two new agents at p = 0.1 each, both needed: the best loses with 1 - 0.9^2 = 0.19.
    let best: f64 = 1.0 - 0.9 * 0.9;
    let args = [
        "match",
        "--market",
        net.market.url.as_str(),
        "--currency",
        currency.as_str(),
        "--shard-bytes",
        "1048576",
        "--data-shards",
        "2",
        "--total-shards",
        "2",
        "--max-failure-probability",
        "1e-9",
    ]
    .map(str::to_owned);
    let for_text = args.to_vec();
    let (code, _, stderr) = tokio::task::spawn_blocking(move || run_market(&for_text))
        .await
        .expect("run");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "best achievable failure probability is {best:.3e}"
        )) && stderr.contains("with 2 agents at total price"),
        "{stderr}"
    );
    // Amounts for people are in the currency (the test issuer's LCU, 2 decimals).
    let two_agents = client
        .match_agents(&request(&currency, 2, Some(2), 0.5))
        .await
        .expect("match");
    let lcu = |minor: u64| format!("{}.{:02} LCU", minor / 100, minor % 100);
    let total = lcu(two_agents.total_price);
    assert!(
        stderr.contains(&format!("at total price {total})")),
        "{stderr} (want {total})"
    );
    let mut met = args.to_vec();
    *met.last_mut().expect("args") = "0.5".to_owned();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || run_market(&met))
        .await
        .expect("run");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("2 agents, total price {total},")),
        "{stdout}"
    );
    let book = vec![
        "offers".to_owned(),
        "--market".to_owned(),
        net.market.url.clone(),
    ];
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || run_market(&book))
        .await
        .expect("run");
    assert_eq!(code, 0, "{stderr}");
    let reference = client.offers(Some(&currency)).await.expect("offers")[0].reference_price;
    assert!(stdout.contains(&lcu(reference)), "{stdout}");
    let mut json_args = args.to_vec();
    json_args.push("--json".to_owned());
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || run_market(&json_args))
        .await
        .expect("run");
    assert_eq!(code, 1, "{stderr}");
    let body: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON on stdout");
    assert_eq!(body["error"]["code"], "cannot_meet_target");
    let value = body["error"]["details"]["best_failure_probability"]
        .as_f64()
        .expect("best_failure_probability");
    assert!((value - best).abs() < 1e-9, "{value}");
    assert_eq!(
        body["error"]["details"]["best"]["agents"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

/// Shards larger than any agent's blocks: the refusal names that cause (and the largest block
/// offered), not only the missed durability target (issue 12, finding 14).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_match_for_blocks_nobody_sells_says_so() {
    let net = Net::start(2, None);
    let (_, buyer) = net.buyer(10).await;
    let client = MarketClient::new(net.http.clone(), &net.market.url, buyer);
    let currency = net.issuer.entity.to_string();
    wait_for_offers(&client, &currency, 2).await;
    let largest = client
        .offers(Some(&currency))
        .await
        .expect("offers")
        .iter()
        .filter_map(|o| o.offer.open::<protocol::market::Offer>("offer").ok())
        .map(|(_, offer)| offer.block_bytes_max)
        .max()
        .expect("an offer");
    let mut too_big = request(&currency, 1, Some(2), 0.5);
    too_big.shard_bytes = largest + 1;
    let e = client
        .match_agents(&too_big)
        .await
        .expect_err("no agent sells such blocks");
    let text = e.to_string();
    assert!(
        text.contains("2 agent(s) sell no block as large as")
            && text.contains(&format!("the largest offered is {largest} bytes")),
        "{text}"
    );
}

/// An agent that died since the last probe round is not chosen either: the match asks the
/// agents it chose, and one that does not answer is marked offline and replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_dead_since_the_last_probe_is_not_chosen() {
    let mut net = Net::start(4, None);
    let (_, buyer) = net.buyer(10).await;
    let client = MarketClient::new(net.http.clone(), &net.market.url, buyer);
    let currency = net.issuer.entity.to_string();
    wait_for_offers(&client, &currency, 4).await;
    let dead = net.agent(0).agent.key.entity().to_string();
    net.stop_agent(0).await;
    // No probe round ran: the book still says online.
    assert!(listing(&client, &currency, &dead).await.online);
    let answer = client
        .match_agents(&request(&currency, 3, Some(3), 0.99))
        .await
        .expect("match");
    assert_eq!(answer.agents.len(), 3);
    assert!(
        answer.agents.iter().all(|a| a.agent != dead),
        "the dead agent was chosen"
    );
}

/// A market client pointed at the issuer (the two URLs swapped) says what the URL is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_market_client_pointed_at_an_issuer_says_so() {
    let net = Net::start(1, None);
    let (_, buyer) = net.buyer(10).await;
    let wrong = MarketClient::new(net.http.clone(), &net.issuer.url, buyer.clone());
    let e = wrong.offers(None).await.expect_err("not a market");
    assert!(e.to_string().contains("is an issuer, not a market"), "{e}");
    let bare = net.market.url.trim_start_matches("http://").to_owned();
    let e = MarketClient::new(net.http.clone(), &bare, buyer.clone())
        .offers(None)
        .await
        .expect_err("no scheme");
    assert!(e.to_string().contains("write it as http://"), "{e}");
    // A currency given as the issuer's URL instead of its entity id says what is expected.
    let client = MarketClient::new(net.http.clone(), &net.market.url, buyer.clone());
    let mut by_url = request(&net.issuer.entity.to_string(), 1, Some(1), 0.5);
    by_url.currency = net.issuer.url.clone();
    let e = client.match_agents(&by_url).await.expect_err("a URL");
    assert!(e.to_string().contains("issuer's entity id"), "{e}");
}

/// From a review of the trust fixes: a report needs a verified object (an unpaid contract
/// registered with no objects was a free report); a registration may not claim more leaves
/// than the object has (the agent would then fail audits of leaves that do not exist), nor
/// attach objects to another buyer's contract id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_and_registrations_need_what_the_agent_proved() {
    let net = Net::start(2, None);
    let (wallet, buyer) = net.buyer(10_000_000).await;
    let client = MarketClient::new(net.http.clone(), &net.market.url, buyer.clone());
    let currency = net.issuer.entity.to_string();
    wait_for_offers(&client, &currency, 2).await;
    let (id, real) = small_contract(&net, 0, &wallet, &buyer).await;

    // Claiming four leaves for a three-leaf object: refused whichever leaf is asked.
    let mut inflated = real.clone();
    inflated.objects[0].leaf_count = 4;
    inflated.objects[0].size = 4 * protocol::merkle::LEAF_BYTES as u64;
    let e = client.register(&inflated).await.expect_err("inflated");
    assert_eq!(e.code(), Some("root_unverified"), "{e}");

    // Registered with no objects, nothing shows the contract was used: no report counts.
    let mut bare = real.clone();
    bare.objects.clear();
    client.register(&bare).await.expect("registered bare");
    let report = Report {
        contract: id.clone(),
        outcome: "lost".into(),
        detail: String::new(),
    };
    let e = client.report(&report).await.expect_err("no evidence");
    assert_eq!(e.code(), Some("report_unverified"), "{e}");
    // With its object verified, the report is taken.
    client.register(&real).await.expect("registered");
    client
        .report(&report)
        .await
        .expect("a report with evidence");

    // Another buyer's contract, made with another agent under the same id (agents only
    // refuse ids they already hold), cannot join this registration.
    let (wallet2, buyer2) = net.buyer(10_000_000).await;
    let other = MarketClient::new(net.http.clone(), &net.market.url, buyer2.clone());
    let ac = AgentClient::new(net.http.clone(), &net.agent(1).url, buyer2.clone());
    let (_, offer) = ac.offer().await.expect("offer");
    let mut terms = AgentClient::terms_from_offer(
        &offer,
        buyer2.entity(),
        &net.issuer.entity,
        1 << 20,
        3600,
        vec![net.market.market.key.entity().clone()],
    )
    .expect("terms");
    terms.id = id.clone();
    let signed = ac.buy(&wallet2, &terms, 100_000).await.expect("contract");
    let info = ac.put(&id, "theirs", vec![9; 40_000]).await.expect("put");
    let theirs = Registration {
        contract: signed.value.contract.clone(),
        agent_signature: signed.value.agent_signature.clone(),
        objects: vec![RegisteredObject {
            name: info.name.clone(),
            merkle_root: info.merkle_root.clone(),
            leaf_count: 3,
            size: info.size,
        }],
    };
    let e = other
        .register(&theirs)
        .await
        .expect_err("someone else's id");
    assert_eq!(e.code(), Some("invalid_contract"), "{e}");
}

/// DESIGN 10: a buyer an issuer proved double spent paywords gets no registration and no
/// report accepted; the market reads the proof from the issuer's feed and checks it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proven_double_spender_is_refused_registrations_and_reports() {
    let net = Net::start(1, None);
    let (wallet, buyer) = net.buyer(10_000_000).await;
    let client = MarketClient::new(net.http.clone(), &net.market.url, buyer.clone());
    let currency = net.issuer.entity.to_string();
    wait_for_offers(&client, &currency, 1).await;
    let (id, reg) = small_contract(&net, 0, &wallet, &buyer).await;
    client
        .register(&reg)
        .await
        .expect("registered while honest");

    // The buyer, and the agent too, each sign two overlapping blocks of one chain to two
    // vendors, who both redeem.
    let agent_key = net.agent(0).agent.key.clone();
    net.mint
        .transfer(agent_key.entity(), 1_000, None)
        .await
        .expect("fund the agent");
    let agent_wallet = clients::issuer::IssuerClient::new(
        net.http.clone(),
        &net.issuer.url,
        agent_key.clone(),
        Some(node::client::CounterStore::beside_key(
            &net.dir.path().join("agent-cheat.key"),
        )),
    );
    for (payer, payer_wallet, name) in [
        (&buyer, &wallet, "cheat.key"),
        (&agent_key, &agent_wallet, "agent-cheat.key"),
    ] {
        let chains = clients::wallet::Wallet::beside_key(&net.dir.path().join(name));
        let file = clients::wallet::buy(payer_wallet, &chains, 10, 1, None)
            .await
            .expect("chain");
        for _ in 0..2 {
            let vendor = Arc::new(KeyPair::generate().expect("key"));
            let p = protocol::payword::Payword {
                chain: file.chain.clone(),
                from: 1,
                end: 10,
                to: 10,
                word: file.word(10).expect("word"),
                signature: protocol::payword::sign_block(
                    payer,
                    &file.chain,
                    vendor.entity(),
                    1,
                    10,
                ),
            };
            clients::issuer::IssuerClient::new(net.http.clone(), &net.issuer.url, vendor, None)
                .redeem_with_counter(node::now_ms(), vec![p])
                .await
                .expect("redeemed");
        }
    }
    let mut marked = net.market.market.follow_frauds().await.expect("feeds read");
    marked.sort();
    let mut expected = vec![buyer.entity().clone(), agent_key.entity().clone()];
    expected.sort();
    assert_eq!(marked, expected);
    // The book shows the agent as a double spender.
    let line = listing(&client, &currency, agent_key.entity().as_str()).await;
    assert!(line.double_spender, "{line:?}");
    let (_, again) = small_contract(&net, 0, &wallet, &buyer).await;
    let err = client.register(&again).await.expect_err("no registration");
    assert_eq!(err.code(), Some("payer_fraud"));
    let report = Report {
        contract: id,
        outcome: "lost".into(),
        detail: String::new(),
    };
    let err = client.report(&report).await.expect_err("no report");
    assert_eq!(err.code(), Some("payer_fraud"));
}
