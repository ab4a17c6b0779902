//! The market end to end over loopback HTTP, with a real issuer and real agents heartbeating:
//! the book, a match checked against an independent computation, refused match requests, a
//! contract registered and audited (passing, then failing once its bytes are altered on the
//! agent's disk), buyers' reports, and an agent that stops answering. On SQLite, and on
//! PostgreSQL when TEST_DATABASE_URL is set.

mod util;

use clients::agent::AgentClient;
use clients::market::MarketClient;
use protocol::book::{MatchRequest, RegisteredObject, Registration, Report};
use protocol::market::{self as pm, REFERENCE_BYTES, REFERENCE_DURATION_S};
use util::{backends, eventually, storage_price, Net};

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

/// P(fewer than k survive), enumerating every outcome: independent of the market's DP.
fn enumerate_loss(p: &[f64], k: usize) -> f64 {
    (0u32..(1 << p.len()))
        .filter(|m| (m.count_ones() as usize) < k)
        .map(|m| {
            p.iter()
                .enumerate()
                .map(|(i, pi)| if m & (1 << i) != 0 { 1.0 - pi } else { *pi })
                .product::<f64>()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn book_match_audits_reports_and_outages() {
    for (backend, db) in backends("market_e2e") {
        let net = Net::start(4, db.url());
        let (wallet, buyer) = net.buyer(10_000_000).await;
        let client = MarketClient::new(net.http.clone(), &net.market.url, buyer.clone());
        let currency = net.issuer.entity.to_string();

        // The book fills from the heartbeats.
        eventually(10_000, "4 offers in the book", || async {
            client
                .offers(Some(&currency))
                .await
                .map(|o| o.len() == 4)
                .unwrap_or(false)
        })
        .await;
        let offers = client.offers(Some(&currency)).await.expect("offers");
        for o in &offers {
            let i = net
                .agents
                .iter()
                .position(|a| {
                    a.as_ref()
                        .is_some_and(|a| a.agent.key.entity().as_str() == o.agent)
                })
                .expect("a known agent");
            let cur = pm::OfferCurrency {
                issuer: net.issuer.entity.clone(),
                issuer_url: net.issuer.url.clone(),
                storage_per_gib_day: storage_price(i),
                write_per_kib: 1,
                read_per_kib: 1,
                contract_min: 10,
                pay_to: None,
            };
            let expected =
                pm::request_price(&cur, REFERENCE_BYTES, REFERENCE_DURATION_S, 0).expect("price");
            assert_eq!(o.reference_price, expected, "[{backend}] reference price");
            assert!(
                (o.p_fail - 0.1).abs() < 1e-9,
                "[{backend}] new agents start at p30 = 0.1"
            );
            let nines = -o.p_fail.log10();
            assert!((o.adjusted_price - o.reference_price as f64 / nines).abs() < 1e-6);
            assert!(o.online && !o.vetted && o.audits_passed == 0);
        }
        assert!(
            offers
                .windows(2)
                .all(|w| w[0].adjusted_price <= w[1].adjusted_price),
            "[{backend}] cheapest adjusted price first"
        );

        // A match: 2-of-3 at 5%. Three agents at p = 0.1 lose with 0.028; the cheapest three.
        let answer = client
            .match_agents(&request(&currency, 2, Some(3), 0.05))
            .await
            .expect("match");
        assert_eq!(answer.agents.len(), 3);
        let p: Vec<f64> = answer.agents.iter().map(|a| a.p_fail).collect();
        assert!((answer.failure_probability - enumerate_loss(&p, 2)).abs() < 1e-12);
        assert_eq!(
            answer.total_price,
            answer.agents.iter().map(|a| a.price).sum::<u64>()
        );
        assert_eq!(answer.candidates.len(), 4);
        let dearest = net.agent(3).agent.key.entity().to_string();
        assert!(
            answer.agents.iter().all(|a| a.agent != dearest),
            "[{backend}] the dearest agent is left out"
        );
        // The market picks n when it is left out.
        let picked = client
            .match_agents(&request(&currency, 1, None, 0.02))
            .await
            .expect("match with n chosen");
        assert_eq!(
            picked.agents.len(),
            2,
            "[{backend}] 1-of-2 at p = 0.1 loses 0.01 <= 0.02"
        );

        // Refusals: unreachable targets and bad requests.
        let err = client
            .match_agents(&request(&currency, 3, Some(4), 1e-9))
            .await
            .expect_err("target out of reach");
        assert_eq!(err.code(), Some("cannot_meet_target"));
        for (bad, code) in [
            (request(&currency, 0, Some(3), 0.05), "invalid_match"),
            (request(&currency, 4, Some(3), 0.05), "invalid_match"),
            (request(&currency, 2, Some(3), 0.0), "invalid_match"),
            (request(&currency, 2, Some(3), 1.0), "invalid_match"),
            // NaN travels as JSON null: not a number at all.
            (request(&currency, 2, Some(3), f64::NAN), "invalid_json"),
            (
                request(buyer.entity().as_str(), 2, Some(3), 0.05),
                "unknown_currency",
            ),
            (request("not-an-id", 2, Some(3), 0.05), "unknown_currency"),
        ] {
            let e = client.match_agents(&bad).await.expect_err("bad request");
            assert_eq!(e.code(), Some(code), "[{backend}] {bad:?}");
            assert!(
                matches!(e, node::client::ClientError::Api { status: 400, .. }),
                "{e}"
            );
        }

        // A contract with agent 0, listing the market as auditor, registered with its object.
        let agent0 = net.agent(0);
        let ac = AgentClient::new(net.http.clone(), &agent0.url, buyer.clone());
        let (_, offer) = ac.offer().await.expect("offer");
        let market_id = net.market.market.key.entity().clone();
        let terms = AgentClient::terms_from_offer(
            &offer,
            buyer.entity(),
            &net.issuer.entity,
            1 << 20,
            3600,
            vec![market_id],
        )
        .expect("terms");
        let signed = ac.buy(&wallet, &terms, 100_000).await.expect("contract");
        let info = ac
            .put(&terms.id, "shard-0", vec![9u8; 40_000])
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
        client.register(&registration).await.expect("registered");
        let mine = client.my_contracts().await.expect("my contracts");
        assert_eq!(
            mine.len(),
            1,
            "[{backend}] the buyer finds its registered contract"
        );
        assert_eq!(mine[0].id, terms.id);
        assert_eq!(mine[0].endpoint, agent0.url);
        assert_eq!(mine[0].objects, registration.objects);
        // Wrong leaf counts, a forged countersignature and another buyer are refused.
        let mut wrong = registration.clone();
        wrong.objects[0].leaf_count = 2;
        assert_eq!(
            client.register(&wrong).await.expect_err("leaves").code(),
            Some("invalid_contract")
        );
        let mut forged = registration.clone();
        forged.agent_signature = signed.value.contract.countersign(&buyer);
        assert_eq!(
            client.register(&forged).await.expect_err("forged").code(),
            Some("invalid_contract_signature")
        );
        let (_, stranger) = net.buyer(10).await;
        let other = MarketClient::new(net.http.clone(), &net.market.url, stranger);
        assert_eq!(
            other
                .register(&registration)
                .await
                .expect_err("stranger")
                .code(),
            Some("forbidden")
        );

        // Audits pass while the bytes are there.
        let m = &net.market.market;
        for _ in 0..3 {
            assert_eq!(market::auditor::audit_round(m).await.expect("round"), 1);
        }
        let a0 = agent0.agent.key.entity().to_string();
        let listing = |offers: Vec<protocol::book::Listing>, id: &str| {
            offers.into_iter().find(|o| o.agent == id).expect("listed")
        };
        let before = listing(client.offers(Some(&currency)).await.expect("offers"), &a0);
        assert_eq!(
            (before.audits_passed, before.audits_failed),
            (3, 0),
            "[{backend}]"
        );
        assert!(
            before.p_fail < 0.1,
            "[{backend}] passing audits lower p_fail"
        );

        // The agent reads its rating back after each heartbeat and shows it on its dashboard.
        let dashboard = format!("{}/", agent0.url);
        eventually(
            10_000,
            "the market's rating on the agent's dashboard",
            || async {
                let page = match net.http.get(&dashboard).send().await {
                    Ok(r) => r.text().await.unwrap_or_default(),
                    Err(_) => return false,
                };
                page.contains(r#"<b id="audits-passed">3 passed</b>"#)
            },
        )
        .await;

        // Alter the stored bytes on the agent's disk: the next audit fails, at once.
        let objects = net.dir.path().join("agent-0/objects");
        let file = walk(&objects).into_iter().next().expect("stored file");
        std::fs::write(&file, vec![8u8; 40_000]).expect("corrupt");
        market::auditor::audit_round(m).await.expect("round");
        let after = listing(client.offers(Some(&currency)).await.expect("offers"), &a0);
        assert_eq!(
            after.audits_failed, 1,
            "[{backend}] the altered object fails its audit"
        );
        assert!(
            after.p_fail > before.p_fail * 1.5,
            "[{backend}] {} -> {}",
            before.p_fail,
            after.p_fail
        );

        // Reports: counted once per counter; only the contract's buyer may report.
        let report = Report {
            contract: terms.id.clone(),
            outcome: "corrupt".into(),
            detail: "shard-0 does not match its hash".into(),
        };
        let first = client.report(&report).await.expect("report");
        assert_eq!(first.value["counted"], true);
        let again = client
            .signed()
            .command::<serde_json::Value>(
                "POST",
                "/v1/reports",
                serde_json::to_vec(&report).expect("json"),
                first.counter,
            )
            .await
            .expect("same report again");
        assert_eq!(
            again.value["counted"], false,
            "[{backend}] a repeated report counts once"
        );
        let (_, stranger) = net.buyer(10).await;
        let other = MarketClient::new(net.http.clone(), &net.market.url, stranger);
        assert_eq!(
            other.report(&report).await.expect_err("stranger").code(),
            Some("forbidden")
        );
        let bad = Report {
            outcome: "meh".into(),
            ..report.clone()
        };
        assert_eq!(
            client.report(&bad).await.expect_err("outcome").code(),
            Some("invalid_json")
        );

        // An agent that stops answering is offline at the next probe: p_fail at least 0.5.
        let a3 = net.agent(3).agent.key.entity().to_string();
        let mut net = net;
        net.stop_agent(3).await;
        assert_eq!(
            market::auditor::probe_round(&net.market.market)
                .await
                .expect("probe"),
            3
        );
        let gone = listing(client.offers(Some(&currency)).await.expect("offers"), &a3);
        assert!(!gone.online && gone.p_fail >= 0.5, "[{backend}] {gone:?}");
        let answer = client
            .match_agents(&request(&currency, 2, Some(3), 0.05))
            .await
            .expect("match without the offline agent");
        assert!(answer.agents.iter().all(|a| a.agent != a3));
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
