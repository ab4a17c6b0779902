//! The running tab (seed 001): with `tab_limit`, a buyer may owe up to the limit across all its
//! contracts with the agent; past `tab_threshold` answers ask it to settle (`LCP-Amount-Due`);
//! past the limit reads and writes get 402; a payment settles.

mod util;

use clients::agent::AgentClient;
use util::{eventually, World, PRICES};

/// PUT through the raw client to see the settlement header.
async fn put_raw(client: &AgentClient, id: &str, name: &str, kib: usize) -> (u16, Option<String>) {
    let path = format!("/v1/contracts/{id}/objects/{name}");
    let resp = client
        .signed()
        .send(
            "PUT",
            &path,
            vec![1; kib * 1024],
            Some(node::now_ms() * 1000),
            &[],
            0,
        )
        .await
        .expect("send");
    let due = resp
        .headers()
        .get("lcp-amount-due")
        .map(|v| v.to_str().expect("ascii").to_owned());
    (resp.status().as_u16(), due)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_per_buyer_with_limit_and_threshold() {
    let world = World::start_full(1 << 20, 60, None, "file", (50, 30));
    let (client, wallet, buyer) = world.buyer(1_000_000).await;
    let (_, offer) = client.offer().await.expect("offer");
    let unpaid = AgentClient::terms_from_offer(
        &offer,
        buyer.entity(),
        &world.issuer.entity,
        1024,
        3600,
        vec![],
    )
    .expect("terms");
    client.propose(&unpaid).await.expect("contract");
    assert_eq!(
        client
            .put(&unpaid.id, "a", vec![1; 1024])
            .await
            .expect_err("unpaid")
            .code(),
        Some("payment_required"),
        "unpaid contracts run no tab"
    );

    // Paid at the price only: no prepaid credit, every charge goes on the tab.
    let one = world
        .active_contract(&client, &wallet, &buyer, 128 * 1024, 3600, 0)
        .await;
    let two = world
        .active_contract(&client, &wallet, &buyer, 128 * 1024, 3600, 0)
        .await;
    // 10 KiB at 2 per KiB = 20 owed: under the threshold, no settlement request.
    assert_eq!(put_raw(&client, &one.id, "a", 10).await, (200, None));
    // 10 more KiB on the other contract: the buyer owes 40 > 30, so the answer asks to settle.
    assert_eq!(
        put_raw(&client, &two.id, "b", 10).await,
        (200, Some("40".into()))
    );
    assert_eq!(client.contract(&two.id).await.expect("view").credit, -20);
    // 6 KiB more (12) would bring the buyer's debt to 52 > 50, whichever contract it is on.
    assert_eq!(
        client
            .put(&one.id, "c", vec![1; 6 * 1024])
            .await
            .expect_err("past the limit")
            .code(),
        Some("payment_required")
    );
    assert_eq!(
        client
            .put(&two.id, "c", vec![1; 6 * 1024])
            .await
            .expect_err("past the limit")
            .code(),
        Some("payment_required")
    );
    // A 10 KiB read (10) brings the debt exactly to the limit: allowed, with a settle request.
    let path = format!("/v1/contracts/{}/objects/a", one.id);
    let resp = client
        .signed()
        .send(
            "GET",
            &path,
            Vec::new(),
            Some(node::now_ms() * 1000),
            &[],
            0,
        )
        .await
        .expect("read");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("lcp-amount-due")
            .and_then(|v| v.to_str().ok()),
        Some("50")
    );
    // Now any charge is past the limit, writes and reads alike.
    assert_eq!(put_raw(&client, &two.id, "c", 1).await.0, 402);
    match client.get(&one.id, "a", Some((0, 1023))).await {
        Ok(b) => panic!("a read past the limit was served ({} bytes)", b.len()),
        Err(e) => assert_eq!(e.code(), Some("payment_required")),
    }
    // Settling: contract one owes 30 (20 written + 10 read); paying 30 + 100 to its id clears it.
    wallet
        .transfer(&one.agent, 30 + 100, Some(&one.id))
        .await
        .expect("settle");
    eventually(5_000, "the settlement", || async {
        client
            .contract(&one.id)
            .await
            .map(|v| v.credit == 100)
            .unwrap_or(false)
    })
    .await;
    // The other contract still owes 20: 5 KiB (10) on it keeps the tab at 30, not past the threshold.
    assert_eq!(put_raw(&client, &two.id, "d", 5).await, (200, None));
    client
        .put(&one.id, "e", vec![1; 10 * 1024])
        .await
        .expect("write from credit after settling");
    assert_eq!(
        client.contract(&one.id).await.expect("view").credit,
        100 - 10 * PRICES.write_per_kib as i64
    );
}

/// The buyer's tab line `id` as the agent lists it.
async fn tab_line(
    world: &World,
    buyer: &protocol::KeyPair,
    id: &str,
) -> protocol::credit::LineView {
    clients::credit::lines(&world.http, &world.agent.url, buyer.entity().as_str())
        .await
        .expect("lines")
        .into_iter()
        .find(|l| l.id == id)
        .expect("the tab line")
}

/// The tab is a credit line (DESIGN 12, issue 17): each charged answer carries the agent's
/// half of the new state (`LCP-Line: id;seq;owed;signature`, signed over the line state);
/// past the threshold the buyer settles by an LCP transfer to the line id, which the issuer
/// shows as a deposit with that transaction id; the line then shows the lower balance, which
/// the buyer countersigns; past the limit a charge is `402`. SQLite and PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_is_a_line_settled_through_lcp_at_its_threshold() {
    use protocol::credit::{LineState, LineUpdate};
    for (backend, database) in util::backends("tab_line") {
        eprintln!("backend: {backend}");
        let world = World::start_full(1 << 20, 60, database.url(), "file", (50, 30));
        let (client, wallet, buyer) = world.buyer(1_000_000).await;
        let contract = world
            .active_contract(&client, &wallet, &buyer, 256 * 1024, 3600, 0)
            .await;
        let agent = world.agent.agent.key.entity().clone();
        let line_of = |resp: &reqwest::Response| -> (String, u64, u64, String) {
            let v = resp
                .headers()
                .get("lcp-line")
                .expect("LCP-Line on a charged answer")
                .to_str()
                .expect("ascii");
            let parts: Vec<&str> = v.split(';').collect();
            assert_eq!(parts.len(), 4, "{v}");
            (
                parts[0].to_owned(),
                parts[1].parse().expect("seq"),
                parts[2].parse().expect("owed"),
                parts[3].to_owned(),
            )
        };
        let state = |id: &str, seq: u64, owed: u64| LineState {
            id: id.to_owned(),
            creditor: agent.to_string(),
            debtor: buyer.entity().to_string(),
            currency: world.issuer.entity.to_string(),
            limit: 50,
            owed,
            seq,
        };
        let put = |name: &'static str, kib: usize| {
            let (client, id) = (&client, contract.id.clone());
            async move {
                client
                    .signed()
                    .send(
                        "PUT",
                        &format!("/v1/contracts/{id}/objects/{name}"),
                        vec![7; kib * 1024],
                        Some(node::now_ms() * 1000),
                        &[],
                        0,
                    )
                    .await
                    .expect("send")
            }
        };
        // 10 KiB at 2 per KiB: 20 owed, the agent's half of seq 1.
        let resp = put("a", 10).await;
        assert_eq!(resp.status(), 200);
        let (id, seq, owed, sig) = line_of(&resp);
        assert_eq!((seq, owed), (1, 20));
        assert!(
            agent.verify_b64(state(&id, 1, 20).signing_string().as_bytes(), &sig),
            "{backend}: the agent signed the line state"
        );
        // 10 more: 40 > 30, asked to settle, seq 2.
        let resp = put("b", 10).await;
        assert_eq!(
            resp.headers()
                .get("lcp-amount-due")
                .map(|v| v.to_str().expect("ascii")),
            Some("40")
        );
        let (id2, seq, owed, _) = line_of(&resp);
        assert_eq!((id2.as_str(), seq, owed), (id.as_str(), 2, 40));
        // Past the limit: 402, the line unchanged.
        let resp = put("c", 15).await;
        assert_eq!(resp.status(), 402, "{backend}: past the tab's limit");

        // Settled through LCP: a transfer to the line id.
        wallet
            .transfer(&agent, 40, Some(&id))
            .await
            .expect("settlement transfer");
        util::eventually(10_000, "the tab to show the lower balance", || async {
            let lines =
                clients::credit::lines(&world.http, &world.agent.url, buyer.entity().as_str())
                    .await
                    .expect("lines");
            lines.iter().any(|l| l.id == id && l.owed == 0)
        })
        .await;
        let as_agent = clients::issuer::IssuerClient::new(
            world.http.clone(),
            &world.issuer.url,
            world.agent.agent.key.clone(),
            None,
        );
        let shown = as_agent.deposits(0, 0, Some(&id)).await.expect("deposits");
        assert_eq!(
            shown.deposits.len(),
            1,
            "{backend}: the issuer shows the settlement"
        );
        assert_eq!(shown.deposits[0].amount, 40);
        let line = tab_line(&world, &buyer, &id).await;
        assert_eq!(
            (line.owed, line.seq, line.settle_threshold),
            (0, 3, Some(30))
        );
        assert!(line.settled_ms.is_some(), "the settlement is stamped");
        assert_eq!(client.contract(&contract.id).await.expect("view").credit, 0);

        // The owner's page shows the tab and its last settlement.
        let page = world
            .http
            .get(format!("{}/", world.agent.url))
            .send()
            .await
            .expect("dashboard")
            .text()
            .await
            .expect("html");
        assert!(
            page.contains("tab of buyer") && page.contains("at 0.30 LCU, 20"),
            "{backend}: the tab row with its settlement: {page}"
        );
        // Both sign the lower balance: the buyer countersigns the agent's state.
        let lower = state(&id, 3, 0);
        let update = LineUpdate {
            state: lower.clone(),
            creditor_signature: Some(line.creditor_signature.clone()),
            debtor_signature: Some(buyer.sign_b64(lower.signing_string().as_bytes())),
        };
        assert_eq!(
            update.verify(),
            Ok(true),
            "both signatures over the lower balance"
        );
        let body = serde_json::json!({ "update": update });
        client
            .signed()
            .command::<LineUpdate>(
                "POST",
                "/v1/credit/lines",
                serde_json::to_vec(&body).expect("json"),
                node::now_ms() * 1000,
            )
            .await
            .unwrap_or_else(|e| panic!("{backend}: countersigned: {e}"));
        let line = tab_line(&world, &buyer, &id).await;
        assert_eq!(
            line.debtor_signature,
            update.debtor_signature.clone().expect("sig")
        );
        // A tab's limit is not the buyer's to change.
        let raised = LineUpdate::sign(
            LineState {
                limit: 500,
                seq: 4,
                ..lower.clone()
            },
            &buyer,
        )
        .expect("sign");
        let refused = client
            .signed()
            .command::<LineUpdate>(
                "POST",
                "/v1/credit/lines",
                serde_json::to_vec(&serde_json::json!({ "update": raised })).expect("json"),
                node::now_ms() * 1000 + 1,
            )
            .await
            .expect_err("not the buyer's to change");
        assert_eq!(refused.code(), Some("line_refused"));

        // A charged audit of the buyer's own (past the free one) moves the tab too, and its
        // answer carries the agent's half: seq 4, what the leaf's read costs.
        let audit = |leaf: u64, counter: u64| {
            let (client, id) = (&client, contract.id.clone());
            async move {
                client
                    .signed()
                    .send(
                        "POST",
                        &format!("/v1/contracts/{id}/audit"),
                        serde_json::to_vec(&serde_json::json!({"object": "a", "leaf": leaf}))
                            .expect("json"),
                        Some(counter),
                        &[("content-type", "application/json".to_owned())],
                        0,
                    )
                    .await
                    .expect("audit")
            }
        };
        let free = audit(0, node::now_ms() * 1000).await;
        assert_eq!(free.status(), 200);
        let (_, seq_free, owed_free, _) = line_of(&free);
        assert_eq!(
            (seq_free, owed_free),
            (3, 0),
            "{backend}: a free audit shows the tab unmoved"
        );
        let charged = audit(0, node::now_ms() * 1000 + 1).await;
        assert_eq!(charged.status(), 200);
        let (id_a, seq_a, owed_a, _) = line_of(&charged);
        assert_eq!(
            (id_a.as_str(), seq_a),
            (id.as_str(), 4),
            "{backend}: the charged audit's answer carries the new state"
        );
        assert!(owed_a > 0, "{backend}: the leaf's read is owed");
        assert_eq!(tab_line(&world, &buyer, &id).await.owed, owed_a);
    }
}

/// A buyer's charges on several contracts at once (each under its own contract's lock, so
/// in parallel on PostgreSQL) and settlements arriving meanwhile leave one tab line whose
/// balance is the buyer's debt over its contracts, to the unit: the line's row orders them
/// (`tab::mirror`), and two charges racing to open it open one. SQLite and PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_charges_and_settlements_leave_one_tab_owing_the_debt() {
    const CONTRACTS: usize = 4;
    const PUTS_PER_CONTRACT: usize = 8;
    const SETTLEMENTS: u64 = 3;
    const SETTLEMENT: u64 = 5;
    for (backend, database) in util::backends("tab_race") {
        eprintln!("backend: {backend}");
        let world = World::start_full(1 << 22, 60, database.url(), "file", (100_000, 50_000));
        let (client, wallet, buyer) = world.buyer(1_000_000).await;
        let mut contracts = Vec::new();
        for _ in 0..CONTRACTS {
            contracts.push(
                world
                    .active_contract(&client, &wallet, &buyer, 256 * 1024, 3600, 0)
                    .await,
            );
        }
        let agent = world.agent.agent.key.entity().clone();
        let client = &client;
        let puts = |wave: String, n: usize| {
            futures_util::future::join_all(contracts.iter().map(move |c| {
                let (id, wave) = (c.id.clone(), wave.clone());
                async move {
                    for i in 0..n {
                        client
                            .put(&id, &format!("{wave}{i}"), vec![3; 1024])
                            .await
                            .unwrap_or_else(|e| panic!("{backend}: put: {e}"));
                    }
                }
            }))
        };
        // The first charges race to open the tab.
        puts("open".into(), 1).await;
        let tabs: Vec<_> =
            clients::credit::lines(&world.http, &world.agent.url, buyer.entity().as_str())
                .await
                .expect("lines")
                .into_iter()
                .filter(|l| l.settle_threshold.is_some())
                .collect();
        assert_eq!(tabs.len(), 1, "{backend}: one tab per buyer: {tabs:?}");
        let id = tabs[0].id.clone();
        // Rounds of one charge on every contract at once, a settlement arriving meanwhile in
        // some: after each, once quiet, the tab owes what the contracts say.
        let mut expected = CONTRACTS as u64 * PRICES.write_per_kib;
        for round in 1..PUTS_PER_CONTRACT {
            let settle = async {
                if round as u64 <= SETTLEMENTS {
                    wallet
                        .transfer(&agent, SETTLEMENT, Some(&id))
                        .await
                        .expect("settlement");
                }
            };
            tokio::join!(puts(format!("w{round}-"), 1), settle);
            expected += CONTRACTS as u64 * PRICES.write_per_kib;
            if round as u64 <= SETTLEMENTS {
                expected -= SETTLEMENT;
            }
            let debt = || async {
                let mut debt = 0u64;
                for c in &contracts {
                    let credit = client.contract(&c.id).await.expect("view").credit;
                    debt += u64::try_from(-credit.min(0)).expect("debt");
                }
                debt
            };
            util::eventually(10_000, "the round's settlement applied", || async {
                debt().await == expected
            })
            .await;
            let line = tab_line(&world, &buyer, &id).await;
            assert_eq!(
                line.owed, expected,
                "{backend}: round {round}: the tab owes what the contracts say"
            );
        }
        let tabs = clients::credit::lines(&world.http, &world.agent.url, buyer.entity().as_str())
            .await
            .expect("lines")
            .into_iter()
            .filter(|l| l.settle_threshold.is_some())
            .count();
        assert_eq!(tabs, 1, "{backend}: still one tab");
    }
}
