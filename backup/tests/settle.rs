//! `backup settle` (issue 17, DESIGN 12): an agent of the repository keeps the wallet's
//! running tab as a credit line; `settle` pays what it shows owed by an LCP transfer to the
//! line id, waits for the lower balance and countersigns it.

mod util;

use std::sync::Arc;

use clients::agent::AgentClient;
use util::{network, slot_agent, PASSWORD};

#[test]
fn settle_pays_an_agents_tab_and_countersigns_the_lower_balance() {
    let (tmp, mut net, cli) = network(6);
    let home = tmp.path().join("config");
    cli.init(&home, &["--slot-bytes", "8388608"]);
    let (code, out, err) = cli.run(&home, PASSWORD, &["settle"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("no tab owed"), "{out}");

    // Tabs on at slot 0's agent: up to 100,000 owed, asked to settle past 10.
    let agent = slot_agent(&net, &home, 0);
    let config = net.agents[agent].data.join("config.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text
        .replace("tab_limit = 0", "tab_limit = 100000")
        .replace("tab_threshold = 0", "tab_threshold = 10");
    assert!(text.contains("tab_limit = 100000") && text.contains("tab_threshold = 10"));
    std::fs::write(&config, text).expect("write config");
    net.restart(devnet::Which::Agent(agent)).expect("restart");
    let url = net.agents[agent].url.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let key = Arc::new(node::keyfile::load(&cli.wallet).expect("key"));
    let http = reqwest::Client::new();
    // The wallet buys one more contract there, paid at its price only, and writes on the tab.
    let owed = rt.block_on(async {
        let client = AgentClient::new(http.clone(), &url, key.clone());
        let wallet = clients::issuer::IssuerClient::new(
            http.clone(),
            &net.issuer.url,
            key.clone(),
            Some(node::client::CounterStore::beside_key(&cli.wallet)),
        );
        node::testing::eventually(30_000, "the restarted agent", || async {
            client.offer().await.is_ok()
        })
        .await;
        let (_, offer) = client.offer().await.expect("offer");
        let issuer = offer.currencies[0].issuer.clone();
        let terms =
            AgentClient::terms_from_offer(&offer, key.entity(), &issuer, 64 * 1024, 3_600, vec![])
                .expect("terms");
        client.buy(&wallet, &terms, 0).await.expect("bought");
        node::testing::eventually(10_000, "the contract to turn active", || async {
            client
                .contract(&terms.id)
                .await
                .is_ok_and(|v| v.status == "active")
        })
        .await;
        client
            .put(&terms.id, "on-the-tab", vec![3; 20 * 1024])
            .await
            .expect("a write on the tab");
        let lines = clients::credit::lines(&http, &url, key.entity().as_str())
            .await
            .expect("lines");
        let tab = lines
            .iter()
            .find(|l| l.settle_threshold.is_some())
            .expect("the wallet's tab at the agent");
        assert!(tab.owed > 10, "past the threshold: {tab:?}");
        tab.owed
    });

    let settled = cli.ok(&home, &["settle", "--json"]);
    let tabs = settled["tabs"].as_array().expect("tabs");
    assert_eq!(tabs.len(), 1, "{settled}");
    assert_eq!(tabs[0]["paid"], owed, "{settled}");
    assert_eq!(tabs[0]["owed_after"], 0, "{settled}");
    assert_eq!(tabs[0]["countersigned"], true, "{settled}");
    let line = rt.block_on(async {
        clients::credit::lines(&http, &url, key.entity().as_str())
            .await
            .expect("lines")
            .into_iter()
            .find(|l| l.settle_threshold.is_some())
            .expect("the tab")
    });
    assert_eq!(line.owed, 0);
    assert!(line.settled_ms.is_some());
    assert!(
        !line.debtor_signature.is_empty(),
        "both signed the lower balance"
    );
    // Nothing left to settle.
    let again = cli.ok(&home, &["settle", "--json"]);
    assert_eq!(again["tabs"].as_array().map(Vec::len), Some(0), "{again}");
}
