//! Credit lines at a node (issue 17, DESIGN 12, `node::credit`): a neighbour gives the agent
//! a line (signed by it as creditor, countersigned by the agent), asks for one (refused
//! unless the operator allows it), raises a limit with a newer update; replayed, forged and
//! foreign updates are refused with stable codes and change nothing. SQLite and PostgreSQL.

mod util;

use std::sync::Arc;

use node::client::SignedClient;
use node::credit::LinesPage;
use protocol::credit::{LineState, LineUpdate};
use protocol::KeyPair;
use util::World;

async fn post(client: &SignedClient, body: serde_json::Value) -> Result<LineUpdate, String> {
    client
        .command::<LineUpdate>(
            "POST",
            "/v1/credit/lines",
            serde_json::to_vec(&body).expect("json"),
            node::now_ms(),
        )
        .await
        .map(|a| a.value)
        .map_err(|e| e.code().unwrap_or("no code").to_owned())
}

async fn lines(http: &reqwest::Client, url: &str, party: &str) -> LinesPage {
    http.get(format!("{url}/v1/credit/lines?party={party}"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("lines")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_are_given_asked_for_and_changed_only_by_both_signatures() {
    for (backend, database) in util::backends("credit") {
        eprintln!("backend: {backend}");
        let world = World::start(1 << 20, 3_600, database.url());
        let http = world.http.clone();
        let url = world.agent.url.clone();
        let agent = world.agent.agent.key.entity().to_string();
        let neighbour = Arc::new(KeyPair::generate().expect("key"));
        let client = SignedClient::new(http.clone(), &url, neighbour.clone());
        let currency = world.issuer.entity.to_string();

        // Given: the neighbour extends the agent 500; the agent countersigns and keeps it.
        let state = LineState {
            id: "5d0b8f5e-2a47-4f7e-9a0c-6b1f2f3c4d5e".into(),
            creditor: neighbour.entity().to_string(),
            debtor: agent.clone(),
            currency: currency.clone(),
            limit: 500,
            owed: 0,
            seq: 1,
        };
        let given = LineUpdate::sign(state.clone(), &neighbour).expect("sign");
        let in_force = post(&client, serde_json::json!({ "update": given })).await;
        let in_force = in_force.unwrap_or_else(|e| panic!("{backend}: refused: {e}"));
        assert_eq!(in_force.verify(), Ok(true), "both signatures");
        let page = lines(&http, &url, neighbour.entity().as_str()).await;
        assert_eq!(page.lines.len(), 1);
        assert_eq!(
            (page.lines[0].limit, page.lines[0].owed, page.lines[0].seq),
            (500, 0, 1)
        );

        // A new line that already claims a debt: the agent would sign that it owes it.
        let claiming = LineUpdate::sign(
            LineState {
                id: "5d0b8f5e-2a47-4f7e-9a0c-6b1f2f3c4d5f".into(),
                owed: 400,
                ..state.clone()
            },
            &neighbour,
        )
        .expect("sign");
        assert_eq!(
            post(&client, serde_json::json!({ "update": claiming })).await,
            Err("line_refused".to_owned()),
            "{backend}: a new line starts with nothing owed"
        );
        // Replayed: stale. Forged after signing: refused. Signed by a stranger: refused.
        assert_eq!(
            post(&client, serde_json::json!({ "update": in_force })).await,
            Err("stale_update".to_owned())
        );
        let mut forged = LineUpdate::sign(
            LineState {
                seq: 2,
                ..state.clone()
            },
            &neighbour,
        )
        .expect("sign");
        forged.state.limit = 5_000;
        assert_eq!(
            post(&client, serde_json::json!({ "update": forged })).await,
            Err("invalid_line_signature".to_owned())
        );
        let stranger = Arc::new(KeyPair::generate().expect("key"));
        let by_stranger = SignedClient::new(http.clone(), &url, stranger);
        let raised = LineUpdate::sign(
            LineState {
                seq: 2,
                limit: 800,
                ..state.clone()
            },
            &neighbour,
        )
        .expect("sign");
        assert_eq!(
            post(&by_stranger, serde_json::json!({ "update": raised })).await,
            Err("line_refused".to_owned())
        );
        // Nor may an update move what is owed.
        let owing = LineUpdate::sign(
            LineState {
                seq: 2,
                owed: 100,
                ..state.clone()
            },
            &neighbour,
        )
        .expect("sign");
        assert_eq!(
            post(&client, serde_json::json!({ "update": owing })).await,
            Err("line_refused".to_owned())
        );
        // Another line under this line's id (another currency): refused, the line unchanged.
        let other_currency = KeyPair::generate().expect("key").entity().to_string();
        let hijack = LineUpdate::sign(
            LineState {
                seq: 9,
                currency: other_currency,
                ..state.clone()
            },
            &neighbour,
        )
        .expect("sign");
        assert_eq!(
            post(&client, serde_json::json!({ "update": hijack })).await,
            Err("line_refused".to_owned())
        );
        // A newer update by both raises the limit.
        let raised = post(&client, serde_json::json!({ "update": raised }))
            .await
            .unwrap_or_else(|e| panic!("{backend}: raise refused: {e}"));
        assert_eq!(raised.state.limit, 800);
        let page = lines(&http, &url, neighbour.entity().as_str()).await;
        assert_eq!((page.lines[0].limit, page.lines[0].seq), (800, 2));

        // Asked: this agent's operator extends nothing (give_max 0): refused.
        assert_eq!(
            post(
                &client,
                serde_json::json!({ "ask": {"currency": currency, "limit": 10} })
            )
            .await,
            Err("line_refused".to_owned())
        );
        // A line the agent would extend, proposed by the neighbour: refused too.
        let asked = LineUpdate::sign(
            LineState {
                id: "6e1c9f6f-3b58-4a8f-8b1d-7c2a3a4d5e6f".into(),
                creditor: agent.clone(),
                debtor: neighbour.entity().to_string(),
                ..state.clone()
            },
            &neighbour,
        )
        .expect("sign");
        assert_eq!(
            post(&client, serde_json::json!({ "update": asked })).await,
            Err("line_refused".to_owned())
        );
        assert_eq!(
            lines(&http, &url, neighbour.entity().as_str())
                .await
                .lines
                .len(),
            1
        );

        // An operator who extends up to 1,000: asked for 300, the node proposes, the
        // neighbour countersigns, the node keeps it. (The node's own book, in process, with
        // that policy over the agent's database.)
        let generous = node::credit::CreditBook::new(
            world.agent.agent.db.clone(),
            world.agent.agent.key.clone(),
            node::credit::CreditPolicy {
                give_max: 1_000,
                ..Default::default()
            },
        );
        assert!(generous.ask(neighbour.entity(), &currency, 1_001).is_err());
        let mut proposal = generous
            .ask(neighbour.entity(), &currency, 300)
            .expect("proposed");
        assert_eq!(proposal.verify(), Ok(false), "the node's signature alone");
        assert_eq!(proposal.state.creditor, agent);
        proposal.countersign(&neighbour).expect("countersign");
        let kept = generous
            .accept(neighbour.entity(), proposal)
            .await
            .expect("kept");
        assert_eq!(kept.verify(), Ok(true));
        let page = lines(&http, &url, neighbour.entity().as_str()).await;
        assert_eq!(page.lines.len(), 2);
        assert!(page
            .lines
            .iter()
            .any(|l| l.creditor == agent && l.limit == 300 && l.owed == 0));
        // The owner's dashboard lists both lines.
        let page = http
            .get(format!("{url}/"))
            .send()
            .await
            .expect("dashboard")
            .text()
            .await
            .expect("html");
        assert!(
            page.contains("id=\"credit-lines\"")
                && page.contains("extended to this node by")
                && page.contains("extended by this node to"),
            "{page}"
        );
        let resp = http
            .get(format!("{url}/v1/credit/lines?party=alice"))
            .send()
            .await
            .expect("GET");
        assert_eq!(resp.status(), 400);
    }
}

/// An agent takes a credit payment to a contract as it takes an LCP deposit (issue 17): a
/// buyer with a line at the agent pays a proposed contract over it (`transaction_id` = the
/// contract id) and the contract turns active; a payment naming no contract of the agent's
/// is refused before anything is held. SQLite and PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credit_payment_to_a_contract_pays_it_like_a_deposit() {
    use clients::credit::{self, Counters, Open};
    for (backend, database) in util::backends("credit_contract") {
        eprintln!("backend: {backend}");
        let world = World::start_configured(1 << 20, database.url(), &|c| {
            c.credit.give_max = 1_000_000;
        });
        let (client, _wallet, buyer) = world.buyer(1).await;
        let currency = world.issuer.entity.to_string();
        let via = SignedClient::new(world.http.clone(), &world.agent.url, buyer.clone());
        let counters = Counters::from(node::now_ms() << 16);
        credit::open(&via, &buyer, &currency, Open::Ask(500_000), &counters)
            .await
            .unwrap_or_else(|e| panic!("{backend}: a line asked: {e}"));
        let (_, offer) = client.offer().await.expect("offer");
        let terms = clients::agent::AgentClient::terms_from_offer(
            &offer,
            buyer.entity(),
            &world.issuer.entity,
            64 * 1024,
            3_600,
            vec![],
        )
        .expect("terms");
        client.propose(&terms).await.expect("proposed, unpaid");
        let agent = world.agent.agent.key.entity().to_string();

        // Naming no contract here: refused, nothing held.
        let refused = credit::pay(
            &world.http,
            &buyer,
            &via,
            &agent,
            &currency,
            10,
            Some("no-such-contract"),
            3_000,
            &counters,
        )
        .await
        .expect_err("no such contract");
        assert_eq!(refused.code(), "payment_refused", "{backend}: {refused}");

        let paid = credit::pay(
            &world.http,
            &buyer,
            &via,
            &agent,
            &currency,
            terms.contract_price,
            Some(&terms.id),
            3_000,
            &counters,
        )
        .await
        .unwrap_or_else(|e| panic!("{backend}: paid over the line: {e}"));
        assert_eq!(paid.amount, terms.contract_price);
        util::wait_active(&client, &terms.id).await;
        let page = lines(&world.http, &world.agent.url, buyer.entity().as_str()).await;
        assert_eq!(page.lines.len(), 1);
        assert_eq!(
            (page.lines[0].owed, page.lines[0].held),
            (terms.contract_price, 0),
            "{backend}: the buyer owes the agent the contract's price on the line"
        );
    }
}
