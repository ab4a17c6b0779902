//! The auditor's schedule (issue 14): each agent with running registered contracts audited
//! `audits_per_agent_day` times a day at its own phase, at most once a tick, end to end with
//! a real issuer and real agents over loopback HTTP (SQLite, and PostgreSQL when
//! TEST_DATABASE_URL is set). And, ignored by default, the rate the auditor reaches against a
//! stand-in answering audits for many synthetic agents (docs/BENCHMARKS.md, "Auditor
//! schedule"):
//!
//! `cargo test --release -p market --test auditor -- --ignored --nocapture audit_throughput`
//! (`AUDITOR_BENCH_AGENTS`, default 10,000; `AUDITOR_BENCH_IN_FLIGHT`, default
//! `AUDITS_IN_FLIGHT_MAX`; `AUDITOR_BENCH_DELAY_MS`, each answer's delay, default 0;
//! `AUDITOR_BENCH_DATABASE`, a PostgreSQL URL, SQLite when absent).

mod util;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use clients::agent::AgentClient;
use clients::market::MarketClient;
use diesel::prelude::*;
use market::auditor::{AuditorOptions, Schedule, AUDITS_IN_FLIGHT_MAX};
use protocol::book::{RegisteredObject, Registration};
use protocol::KeyPair;
use util::{backends, eventually, Net};

/// Longest wait for anything in these tests.
const WAIT_MS: u64 = 25_000;

/// A contract of 1 MiB for an hour with agent `i`, listing the market as auditor, holding one
/// object of 40,000 bytes, registered with the market.
async fn registered_contract(
    net: &Net,
    i: usize,
    wallet: &clients::issuer::IssuerClient,
    buyer: &Arc<KeyPair>,
    client: &MarketClient,
) {
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
    let signed = ac.buy(wallet, &terms, 100_000).await.expect("contract");
    let info = ac
        .put(&terms.id, "shard-0", vec![i as u8 + 1; 40_000])
        .await
        .expect("put");
    client
        .register(&Registration {
            contract: signed.value.contract.clone(),
            agent_signature: signed.value.agent_signature.clone(),
            objects: vec![RegisteredObject {
                name: info.name.clone(),
                merkle_root: info.merkle_root.clone(),
                leaf_count: 3,
                size: info.size,
            }],
        })
        .await
        .expect("registered");
}

/// Passed and failed audits of each of `agents`, from the market's book.
async fn audits(client: &MarketClient, currency: &str, agents: &[String]) -> Vec<(u64, u64)> {
    let offers = client.offers(Some(currency)).await.expect("offers");
    agents
        .iter()
        .map(|a| {
            let l = offers.iter().find(|o| &o.agent == a).expect("listed");
            (l.audits_passed, l.audits_failed)
        })
        .collect()
}

/// Two agents with registered contracts. Ticks driven by hand over one period of 4 s in
/// windows of 1 s: each agent is audited exactly once, in the window its phase falls in; a
/// window longer than the period audits each once, never twice. Then the real loop, as
/// `market serve --audit-interval-s 1 --audits-per-agent-day 17280` runs it (one audit every
/// 5 s): both agents audited twice within a bounded wait, and no more often than their period
/// allows (a tick of 1 s would otherwise audit each once a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_are_audited_at_the_configured_spread() {
    for (backend, db) in backends("market_auditor") {
        let net = Net::start(2, db.url());
        let (wallet, buyer) = net.buyer(10_000_000).await;
        let client = MarketClient::new(net.http.clone(), &net.market.url, buyer.clone());
        let currency = net.issuer.entity.to_string();
        eventually(WAIT_MS, "both offers in the book", || async {
            client
                .offers(Some(&currency))
                .await
                .map(|o| o.len() == 2)
                .unwrap_or(false)
        })
        .await;
        for i in 0..2 {
            registered_contract(&net, i, &wallet, &buyer, &client).await;
        }
        let agents: Vec<String> = (0..2)
            .map(|i| net.agent(i).agent.key.entity().to_string())
            .collect();
        let m = &net.market.market;
        assert_eq!(
            audits(&client, &currency, &agents).await,
            vec![(0, 0); 2],
            "[{backend}] the registration's audit is not in the reputation"
        );

        // One period (4 s) in ticks of 1 s, driven by hand.
        let schedule = Schedule::every(Duration::from_secs(4));
        let t0 = node::now_ms();
        let mut ticks_of: HashMap<String, Vec<u64>> = HashMap::new();
        for t in 0..4 {
            let (from, to) = (t0 + t * 1_000, t0 + (t + 1) * 1_000);
            let done = market::auditor::audit_tick(m, &schedule, from, to)
                .await
                .expect("tick");
            assert!(done.error.is_none(), "[{backend}] {:?}", done.error);
            // Exactly the agents due in the window, each once.
            let mut expected: Vec<String> = agents
                .iter()
                .filter(|a| schedule.due(a, from, to))
                .cloned()
                .collect();
            expected.sort();
            let mut audited = done.audited.clone();
            audited.sort();
            assert_eq!(audited, expected, "[{backend}] tick {t}");
            assert_eq!(done.due, expected.len(), "[{backend}] tick {t}");
            for a in done.audited {
                ticks_of.entry(a).or_default().push(t);
            }
        }
        // Over the period: each agent once, in the tick its phase falls in.
        for a in &agents {
            assert_eq!(
                ticks_of.get(a).map(Vec::len),
                Some(1),
                "[{backend}] {a} once a period: {ticks_of:?}"
            );
            let instant = schedule.next_due_ms(a, t0);
            let tick = ticks_of[a][0];
            assert!(
                instant > t0 + tick * 1_000 && instant <= t0 + (tick + 1) * 1_000,
                "[{backend}] {a} audited in tick {tick}, due at +{} ms",
                instant - t0
            );
        }
        assert_eq!(audits(&client, &currency, &agents).await, vec![(1, 0); 2]);

        // A window of a minute (an auditor that fell behind): each agent once.
        let done = market::auditor::audit_tick(m, &schedule, t0, t0 + 60_000)
            .await
            .expect("tick");
        let mut audited = done.audited.clone();
        audited.sort();
        assert_eq!(audited, {
            let mut a = agents.clone();
            a.sort();
            a
        });
        assert_eq!(audits(&client, &currency, &agents).await, vec![(2, 0); 2]);

        // The loop itself: ticks of 1 s, 17,280 audits a day (every 5 s).
        let options = AuditorOptions {
            tick_s: 1,
            audits_per_agent_day: Some(17_280),
        };
        assert!((options.per_agent_day() - 17_280.0).abs() < 1e-9);
        let started = Instant::now();
        let auditor = tokio::spawn(market::auditor::audit_loop(
            m.clone(),
            options,
            market::auditor::Lease::default(),
        ));
        eventually(WAIT_MS, "both agents audited twice by the loop", || async {
            audits(&client, &currency, &agents)
                .await
                .iter()
                .all(|(passed, _)| *passed >= 4)
        })
        .await;
        let seen = audits(&client, &currency, &agents).await;
        let elapsed_s = started.elapsed().as_secs_f64();
        auditor.abort();
        // At most one audit per instant since the start: elapsed / 5 s, plus one at the edge.
        let most = (elapsed_s / 5.0).floor() as u64 + 1;
        for (a, (passed, failed)) in agents.iter().zip(&seen) {
            assert_eq!(*failed, 0, "[{backend}] {a}");
            assert!(
                passed - 2 <= most,
                "[{backend}] {a}: {} audits in {elapsed_s:.1} s with a period of 5 s",
                passed - 2
            );
        }
        // Twice each took at least one period and at most two and a bit.
        assert!(
            elapsed_s >= 4.0,
            "[{backend}] two audits of each agent in {elapsed_s:.1} s"
        );
    }
}

/// The loop's options: the tick alone gives one audit per agent per tick; a setting above
/// that is capped at one a tick; 0 turns audits off.
#[test]
fn the_default_is_one_audit_per_tick() {
    let default = AuditorOptions {
        tick_s: 300,
        audits_per_agent_day: None,
    };
    assert_eq!(default.per_agent_day(), 288.0);
    assert_eq!(default.schedule().map(|s| s.period_ms()), Some(300_000));
    let devnet = AuditorOptions {
        tick_s: 15,
        audits_per_agent_day: None,
    };
    assert_eq!(devnet.per_agent_day(), 5_760.0);
    let capped = AuditorOptions {
        tick_s: 60,
        audits_per_agent_day: Some(10_000),
    };
    assert_eq!(capped.per_agent_day(), 1_440.0);
    let spread = AuditorOptions {
        tick_s: 60,
        audits_per_agent_day: Some(24),
    };
    assert_eq!(spread.per_agent_day(), 24.0);
    let off = AuditorOptions {
        tick_s: 60,
        audits_per_agent_day: Some(0),
    };
    assert_eq!(off.schedule(), None);
    assert_eq!(off.per_agent_day(), 0.0);
}

/// Run `statements` on the market's database.
async fn sql(m: &market::book::Market, statements: Vec<String>) {
    m.db.run(move |conn| {
        for st in &statements {
            diesel::sql_query(st.as_str()).execute(conn)?;
        }
        Ok::<_, market::Error>(())
    })
    .await
    .expect("sql");
}

/// What the auditor challenges: for each agent, a running contract that has objects, chosen
/// at random, and a random object of it, whether the contract's objects are read with the
/// batch's (a few) or alone (more than `OBJECTS_READ_WHOLE_MAX`); agents with nothing to
/// audit, or unknown to the market, are left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_are_running_contracts_with_objects() {
    use market::auditor::targets::{targets_of, OBJECTS_READ_WHOLE_MAX};
    for (backend, db) in backends("market_audit_targets") {
        let dir = tempfile::tempdir().expect("tempdir");
        let running = market::serve::start(market::serve::ServeOptions {
            data_dir: dir.path().join("market"),
            listen: "127.0.0.1:0".into(),
            database: db.url(),
            allow_same_network: true,
            audit_interval_s: 86_400,
            probe_interval_s: 86_400,
            auditor_lease_ms: market::auditor::AUDITOR_LEASE_MS,
            crawl_interval_s: market::book::CRAWL_INTERVAL_S_DEFAULT,
            tls: None,
        })
        .expect("market");
        let m = &running.market;
        let now = i64::try_from(node::now_ms() / 1000).expect("time");
        let agent = |name: &str| {
            format!(
                "INSERT INTO agents (entity, endpoint, network, offer, offer_expires_s, \
                 last_heartbeat_s, endpoint_checked_s, alpha, beta, audits_passed, \
                 audits_failed, online, first_seen_s) VALUES ('{name}', 'http://{name}', \
                 '10.0.0.0/24', '{{}}', 0, 0, 0, 9.0, 1.0, 0, 0, 1, 0)"
            )
        };
        let contract = |id: &str, agent: &str, end: i64| {
            format!(
                "INSERT INTO registered (id, agent, buyer, envelope, agent_signature, end_s, \
                 registered_s, audit_passed_s, audit_failed_s) VALUES ('{id}', '{agent}', 'b', \
                 '{{}}', '', {end}, 0, 0, 0)"
            )
        };
        let object = |contract: &str, i: i64| {
            format!(
                "INSERT INTO registered_objects (contract_id, name, merkle_root, leaf_count, \
                 size) VALUES ('{contract}', 'o-{i:03}', 'root-{contract}-{i}', {}, 1)",
                i + 1
            )
        };
        let large = OBJECTS_READ_WHOLE_MAX + 36;
        let mut statements = vec![agent("a"), agent("b"), agent("c")];
        // a: one contract without objects, one expired, one running with 3 objects.
        statements.push(contract("a-empty", "a", now + 3_600));
        statements.push(contract("a-over", "a", now - 1));
        statements.push(object("a-over", 0));
        statements.push(contract("a-run", "a", now + 3_600));
        statements.extend((0..3).map(|i| object("a-run", i)));
        // b: one running contract with more objects than are read with the batch.
        statements.push(contract("b-run", "b", now + 3_600));
        statements.extend((0..large).map(|i| object("b-run", i)));
        // c: nothing to audit; d: a contract but unknown to the market.
        statements.push(contract("c-empty", "c", now + 3_600));
        statements.push(contract("d-run", "d", now + 3_600));
        statements.push(object("d-run", 0));
        sql(m, statements).await;

        let batch: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let mut seen: HashMap<String, std::collections::BTreeSet<String>> = HashMap::new();
        for _ in 0..400 {
            let targets = targets_of(m, batch.clone(), now).await.expect("targets");
            let agents: Vec<&str> = targets.iter().map(|t| t.agent.as_str()).collect();
            assert_eq!(agents, ["a", "b"], "[{backend}]");
            for t in targets {
                let expected = format!("{}-run", t.agent);
                assert_eq!(t.contract, expected, "[{backend}]");
                assert_eq!(t.endpoint, format!("http://{}", t.agent));
                // The object's own row: its root and leaf count go with its name.
                let i: i64 = t.object.name[2..].parse().expect("index");
                assert_eq!(t.object.merkle_root, format!("root-{}-{i}", t.contract));
                assert_eq!(t.object.leaf_count, (i + 1) as u64);
                seen.entry(t.contract).or_default().insert(t.object.name);
            }
        }
        assert_eq!(
            seen["a-run"].len(),
            3,
            "[{backend}] every object of a small contract"
        );
        // 400 draws of 100 objects: each is missed with probability (0.99)^400 = 1.8%, so
        // about 98 are seen; fewer than 90 would mean the draw is not uniform.
        assert!(
            seen["b-run"].len() >= 90,
            "[{backend}] objects of a large contract: {} of {large} seen",
            seen["b-run"].len()
        );
    }
}

// ---- the rate the auditor reaches (ignored: a benchmark) ----

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

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// The object every synthetic agent holds: 4 leaves of 16 KiB (an audit answer carries one
/// whole leaf, as a real agent's does).
fn bench_object() -> (Vec<u8>, protocol::merkle::MerkleTree) {
    let bytes: Vec<u8> = (0..4 * protocol::merkle::LEAF_BYTES)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let tree = protocol::merkle::MerkleTree::from_bytes(&bytes);
    (bytes, tree)
}

/// One server answering for every synthetic agent `i` under `/a/<i>`: its descriptor (as
/// `entities[i]`) and audits of the bench object, from answers computed once, each after
/// `delay` (a stand-in for the network's round trip and the agent's disk). One worker
/// thread, so it takes as little CPU as it can from the market on the same machine.
fn audit_standin(entities: Arc<Vec<String>>, delay: Duration) -> node::http::HttpHandle {
    let (bytes, tree) = bench_object();
    let answers: Arc<Vec<serde_json::Value>> = Arc::new(
        (0..tree.leaf_count())
            .map(|leaf| {
                let start = leaf as usize * protocol::merkle::LEAF_BYTES;
                let end = (start + protocol::merkle::LEAF_BYTES).min(bytes.len());
                serde_json::json!({
                    "leaf_data": base64(&bytes[start..end]),
                    "proof": tree.proof(leaf).unwrap_or_default().iter().map(|h| hex(h)).collect::<Vec<_>>(),
                    "leaf_count": tree.leaf_count(),
                    "root": tree.root_hex(),
                })
            })
            .collect(),
    );
    node::http::spawn(
        "audit-standin",
        "127.0.0.1:0",
        None,
        1,
        move |cfg| {
            let (entities, answers) = (entities.clone(), answers.clone());
            cfg.route(
                "/a/{i}/.well-known/lcp",
                web::get().to(move |i: web::Path<usize>| {
                    let entity = entities.get(i.into_inner()).cloned().unwrap_or_default();
                    async move {
                        tokio::time::sleep(delay).await;
                        HttpResponse::Ok().json(serde_json::json!({
                            "protocol": "lcp/1", "role": "storage-agent", "entity": entity,
                        }))
                    }
                }),
            )
            .route(
                "/a/{i}/v1/contracts/{id}/audit",
                web::post().to(move |body: web::Json<serde_json::Value>| {
                    let answers = answers.clone();
                    async move {
                        tokio::time::sleep(delay).await;
                        let leaf = body["leaf"].as_u64().unwrap_or(0) as usize;
                        match answers.get(leaf) {
                            Some(a) => HttpResponse::Ok().json(a),
                            None => HttpResponse::NotFound().finish(),
                        }
                    }
                }),
            );
        },
        || {},
    )
    .expect("audit stand-in")
}

/// A SQL string literal.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `agents` synthetic agents, each with one running registered contract holding the bench
/// object, written straight into the market's tables (the API would audit each registration
/// first), a thousand rows a statement; their offers live, their last heartbeat old (so the
/// prober asks each).
async fn fill(m: &market::book::Market, entities: Arc<Vec<String>>, base_url: String) {
    let (_, tree) = bench_object();
    let root = quoted(&tree.root_hex());
    let leaves = tree.leaf_count();
    let size = 4 * protocol::merkle::LEAF_BYTES;
    let now = i64::try_from(node::now_ms() / 1000).expect("time");
    let (live, heard, end) = (now + 3_600, now - 3_600, now + 86_400);
    m.db.run(move |conn| {
        for (chunk_no, chunk) in entities.chunks(1_000).enumerate() {
            let (mut agents, mut contracts, mut objects) = (vec![], vec![], vec![]);
            for (j, e) in chunk.iter().enumerate() {
                let i = chunk_no * 1_000 + j;
                let (e, id) = (quoted(e), quoted(&format!("bench-contract-{i}")));
                let endpoint = quoted(&format!("{base_url}/a/{i}"));
                let network = quoted(&format!("10.{}.{}.0/24", i / 256 % 256, i % 256));
                agents.push(format!(
                    "({e}, {endpoint}, {network}, '{{}}', {live}, {heard}, {now}, 9.0, 1.0, 0, 0, 1, {now})"
                ));
                contracts.push(format!("({id}, {e}, 'bench-buyer', '{{}}', '', {end}, {now}, 0, 0)"));
                objects.push(format!("({id}, 'shard-0', {root}, {leaves}, {size})"));
            }
            diesel::sql_query(format!(
                "INSERT INTO agents (entity, endpoint, network, offer, offer_expires_s, \
                 last_heartbeat_s, endpoint_checked_s, alpha, beta, audits_passed, \
                 audits_failed, online, first_seen_s) VALUES {}",
                agents.join(", ")
            ))
            .execute(conn)?;
            diesel::sql_query(format!(
                "INSERT INTO registered (id, agent, buyer, envelope, agent_signature, end_s, \
                 registered_s, audit_passed_s, audit_failed_s) VALUES {}",
                contracts.join(", ")
            ))
            .execute(conn)?;
            diesel::sql_query(format!(
                "INSERT INTO registered_objects (contract_id, name, merkle_root, leaf_count, \
                 size) VALUES {}",
                objects.join(", ")
            ))
            .execute(conn)?;
        }
        Ok::<_, market::Error>(())
    })
    .await
    .expect("fill");
}

/// `, N not recorded (first error)` when outcomes could not be recorded.
fn not_recorded(failed: usize, error: &Option<market::Error>) -> String {
    match error {
        Some(e) if failed > 0 => format!(", {failed} not recorded ({e})"),
        _ => String::new(),
    }
}

/// Passed and failed audits over every agent.
async fn audit_totals(m: &market::book::Market) -> (i64, i64) {
    use market::schema::agents;
    m.db.run(|conn| {
        let rows: Vec<(i64, i64)> = agents::table
            .select((agents::audits_passed, agents::audits_failed))
            .load(conn)?;
        Ok::<_, market::Error>(rows.iter().fold((0, 0), |(p, f), r| (p + r.0, f + r.1)))
    })
    .await
    .expect("totals")
}

/// The rate the auditor reaches: N synthetic agents (one contract, one object each) whose
/// audits one stand-in answers correctly over loopback; a full round (every agent once, at
/// most `AUDITS_IN_FLIGHT_MAX` at once), one scheduled tick, and a round of probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --release --ignored --nocapture"]
async fn audit_throughput() {
    let n = env_usize("AUDITOR_BENCH_AGENTS", 10_000);
    let in_flight = env_usize("AUDITOR_BENCH_IN_FLIGHT", AUDITS_IN_FLIGHT_MAX);
    let delay = Duration::from_millis(env_usize("AUDITOR_BENCH_DELAY_MS", 0) as u64);
    let pg = std::env::var("AUDITOR_BENCH_DATABASE")
        .ok()
        .filter(|u| !u.is_empty())
        .map(|base| db::testing::fresh_postgres(&base, "auditor_bench").expect("schema"));
    let dir = tempfile::tempdir().expect("tempdir");
    let running = market::serve::start(market::serve::ServeOptions {
        data_dir: dir.path().join("market"),
        listen: "127.0.0.1:0".into(),
        database: pg.as_ref().map(|s| s.url.clone()),
        allow_same_network: true,
        // Its own loops stay out of the way: the bench drives rounds itself.
        audit_interval_s: 86_400,
        probe_interval_s: 86_400,
        auditor_lease_ms: market::auditor::AUDITOR_LEASE_MS,
        crawl_interval_s: market::book::CRAWL_INTERVAL_S_DEFAULT,
        tls: None,
    })
    .expect("market");
    let m = &running.market;
    let made = Instant::now();
    let entities: Arc<Vec<String>> = Arc::new(
        (0..n)
            .map(|_| KeyPair::generate().expect("key").entity().to_string())
            .collect(),
    );
    let standin = audit_standin(entities.clone(), delay);
    fill(m, entities.clone(), standin.url.clone()).await;
    // Statistics, as a database that grew to this size has them (PostgreSQL's autovacuum):
    // without them PostgreSQL scans whole tables for a batch's targets.
    sql(m, vec!["ANALYZE".to_owned()]).await;
    let backend = if pg.is_some() { "postgres" } else { "sqlite" };
    println!(
        "{n} agents on {backend} ({:.1} s to make), {in_flight} audits (and probes) in flight, answers \
         delayed {} ms",
        made.elapsed().as_secs_f64(),
        delay.as_millis()
    );

    // Listing who has contracts: the fixed cost of every tick.
    let listed = Instant::now();
    let all = market::auditor::targets::agents_with_contracts(
        m,
        i64::try_from(node::now_ms() / 1000).expect("time"),
    )
    .await
    .expect("list");
    let list_ms = listed.elapsed().as_secs_f64() * 1e3;
    assert_eq!(all.len(), n);

    // Reading the targets alone (a random contract and object per agent), batch by batch.
    let read = Instant::now();
    let mut targets = 0;
    for batch in all.chunks(market::auditor::targets::TARGETS_BATCH_MAX) {
        let now = i64::try_from(node::now_ms() / 1000).expect("time");
        targets += market::auditor::targets::targets_of(m, batch.to_vec(), now)
            .await
            .expect("targets")
            .len();
    }
    assert_eq!(targets, n);
    let read_s = read.elapsed().as_secs_f64();
    println!(
        "targets: {n} read in {read_s:.2} s = {:.0}/s",
        n as f64 / read_s
    );

    // A full round: every agent once.
    let round = Instant::now();
    let done = market::auditor::audit_agents(m, all, in_flight).await;
    let round_s = round.elapsed().as_secs_f64();
    // An outcome the database did not take (busy past its timeout on a loaded machine), and
    // an answer later than CHALLENGE_WAIT_MS_MAX (the stand-in starved of CPU: recorded as
    // unanswered), are counted and shown, not hidden. No audit may fail.
    assert_eq!(done.audited.len() + done.failed, n);
    let (passed, failed) = audit_totals(m).await;
    assert_eq!(
        failed, 0,
        "no audit fails: the stand-in answers every one correctly"
    );
    let rate = n as f64 / round_s;
    println!(
        "round: {n} audits in {round_s:.2} s = {rate:.0} audits/s (listing the agents \
         {list_ms:.1} ms); {passed} passed, {} unanswered{}",
        done.audited.len() as i64 - passed,
        not_recorded(done.failed, &done.error)
    );

    // One tick of the schedule 288 a day (every 5 min) covering 30 s: a tenth of the agents.
    let schedule = Schedule::per_day(288).expect("schedule");
    let t0 = node::now_ms();
    let tick = Instant::now();
    let done = market::auditor::audit_tick(m, &schedule, t0, t0 + 30_000)
        .await
        .expect("tick");
    let tick_s = tick.elapsed().as_secs_f64();
    println!(
        "tick (AUDITS_IN_FLIGHT_MAX in flight): {} due of {n} ({:.1}%), audited in \
         {tick_s:.2} s = {:.0} audits/s{}",
        done.due,
        100.0 * done.due as f64 / n as f64,
        done.due as f64 / tick_s,
        not_recorded(done.failed, &done.error)
    );

    // Probes: every agent's heartbeat is an hour old, so each is asked.
    let probed = Instant::now();
    let p = market::auditor::probe_live(m, Some(60), in_flight)
        .await
        .expect("probes");
    let probe_s = probed.elapsed().as_secs_f64();
    assert_eq!((p.probed + p.failed, p.heard), (n, 0));
    println!(
        "probes: {n} in {probe_s:.2} s = {:.0} probes/s; {} answered{}",
        n as f64 / probe_s,
        p.answered,
        not_recorded(p.failed, &p.error)
    );
    // Every agent just heartbeated: none is asked, each heartbeat counts as the answer.
    let now = i64::try_from(node::now_ms() / 1000).expect("time");
    m.db.run(move |conn| {
        diesel::sql_query(format!("UPDATE agents SET last_heartbeat_s = {now}")).execute(conn)?;
        Ok::<_, market::Error>(())
    })
    .await
    .expect("heartbeats");
    let heard = Instant::now();
    let p = market::auditor::probe_live(m, Some(60), in_flight)
        .await
        .expect("probes");
    let heard_s = heard.elapsed().as_secs_f64();
    assert_eq!((p.probed, p.heard + p.failed), (0, n));
    println!(
        "heard: {n} heartbeats counted as answered probes in {heard_s:.2} s = {:.0}/s{}",
        n as f64 / heard_s,
        not_recorded(p.failed, &p.error)
    );
    println!(
        "=> at 100,000 agents this rate allows {:.0} audits per agent per day (the default, one \
         per 300 s tick, asks for 288: {:.0} audits/s)",
        rate * 86_400.0 / 100_000.0,
        100_000.0 * 288.0 / 86_400.0
    );
    drop(standin);
}
