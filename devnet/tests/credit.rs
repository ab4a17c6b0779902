//! Every server is a credit node (issue 17, DESIGN 12): on a devnet, the issuer, the market,
//! an agent and the publisher each keep a line the wallet gives them (countersigned, `201`)
//! and list it at `GET /v1/credit/lines`; none extends a line when asked (their default
//! policy).

use std::sync::Arc;

use devnet::{Devnet, DevnetFile, Options};
use node::client::SignedClient;
use protocol::credit::{LineState, LineUpdate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_keeps_a_line_given_to_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let mut opts = Options::new(&dir).expect("options");
    opts.agents = 1;
    opts.cdn = true;
    let net = tokio::task::spawn_blocking(move || Devnet::up(&opts))
        .await
        .expect("join")
        .expect("devnet up");
    let file = DevnetFile::load(&dir).expect("devnet.json");
    let wallet = Arc::new(node::keyfile::load(&file.wallet.key).expect("wallet key"));
    let http = node::client::http_client(&Default::default()).expect("http");
    let cdn = file.cdn.clone().expect("a publisher");
    let services = [
        ("issuer", &file.issuer),
        ("market", &file.market),
        ("agent", &file.agents[0]),
        ("publisher", &cdn),
    ];
    for (i, (name, service)) in services.iter().enumerate() {
        let client = SignedClient::new(http.clone(), &service.url, wallet.clone());
        let state = LineState {
            id: format!("7f3e2d1c-0b9a-4c8d-9e7f-00000000000{i}"),
            creditor: wallet.entity().to_string(),
            debtor: service.entity.clone(),
            currency: file.issuer.entity.clone(),
            limit: 1_000 + i as u64,
            owed: 0,
            seq: 1,
        };
        let given = LineUpdate::sign(state, &wallet).expect("sign");
        let body = serde_json::json!({ "update": given });
        let answer = client
            .command::<LineUpdate>(
                "POST",
                "/v1/credit/lines",
                serde_json::to_vec(&body).expect("json"),
                node::now_ms(),
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(answer.value.verify(), Ok(true), "{name} countersigned");
        let page: protocol::credit::LinesPage = http
            .get(format!(
                "{}/v1/credit/lines?party={}",
                service.url,
                wallet.entity()
            ))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("lines");
        assert_eq!(page.lines.len(), 1, "{name}");
        assert_eq!(page.lines[0].limit, 1_000 + i as u64, "{name}");
        // The owner pages of the market and the publisher list the line too.
        if matches!(*name, "market" | "publisher") {
            let html = http
                .get(format!("{}/", service.url))
                .send()
                .await
                .expect("page")
                .text()
                .await
                .expect("html");
            assert!(
                html.contains("id=\"credit-lines\"")
                    && html.contains("extended to this node by")
                    && html.contains(wallet.entity().as_str()),
                "{name}: {html}"
            );
        }
        // Asked for a line: refused by default.
        let ask = serde_json::json!({ "ask": {"currency": file.issuer.entity, "limit": 1} });
        let refused = client
            .command::<LineUpdate>(
                "POST",
                "/v1/credit/lines",
                serde_json::to_vec(&ask).expect("json"),
                node::now_ms(),
            )
            .await
            .expect_err("no line extended by default");
        assert_eq!(refused.code(), Some("line_refused"), "{name}");
    }
    tokio::task::spawn_blocking(move || drop(net))
        .await
        .expect("down");
}
