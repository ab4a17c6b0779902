//! Bad offers are refused with a code and change nothing in the book: forged signatures, an
//! offer posted by someone else, expired offers, endpoints that do not answer or answer as
//! another entity, absurd values. And the book's web page, rendered by headless Chromium.

/// The body policy's tests: a module here, not a test binary of its own (one link less).
#[path = "offers/body.rs"]
mod body;
mod util;

use std::sync::Arc;

use node::client::SignedClient;
use protocol::market::{self as pm, Offer, OfferCurrency};
use protocol::{Envelope, KeyPair};
use util::{eventually, Net};

/// One way to make an offer absurd.
type Change = Box<dyn Fn(&mut Offer)>;

fn offer_for(net: &Net, key: &KeyPair, endpoint: &str) -> Offer {
    let now = i64::try_from(node::now_ms() / 1000).expect("time");
    Offer {
        agent: key.entity().clone(),
        endpoint: endpoint.to_owned(),
        issued_at: pm::format_rfc3339(now),
        expires_at: pm::format_rfc3339(now + 600),
        free_bytes: 1 << 30,
        block_bytes_max: 1 << 30,
        duration_s_max: 86_400 * 30,
        currencies: vec![OfferCurrency {
            issuer: net.issuer.entity.clone(),
            issuer_url: net.issuer.url.clone(),
            storage_per_gib_day: 100,
            write_per_kib: 1,
            read_per_kib: 1,
            contract_min: 10,
            pay_to: None,
        }],
    }
}

/// The market's book, as JSON.
async fn book(net: &Net) -> serde_json::Value {
    net.http
        .get(format!("{}/v1/offers", net.market.url))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

/// Post `envelope` signed (the request) by `sender`; answers the error code, if refused.
async fn post(net: &Net, sender: &Arc<KeyPair>, envelope: &Envelope) -> Option<String> {
    let client = SignedClient::new(net.http.clone(), &net.market.url, sender.clone());
    let body = serde_json::to_vec(envelope).expect("json");
    match client
        .command::<serde_json::Value>("POST", "/v1/offers", body, node::now_ms() * 1000)
        .await
    {
        Ok(_) => None,
        Err(e) => Some(e.code().unwrap_or("no code").to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_offers_are_refused_with_codes() {
    let net = Net::start(1, None);
    let agent = net.agent(0);
    let agent_key =
        Arc::new(node::keyfile::load(&net.dir.path().join("agent-0/identity.key")).expect("key"));
    let real = offer_for(&net, &agent_key, &agent.url);
    let sign = |key: &KeyPair, offer: &Offer| {
        Envelope::sign_json(key, pm::OFFER_TYPE, offer).expect("sign")
    };

    // The genuine offer is accepted.
    assert_eq!(post(&net, &agent_key, &sign(&agent_key, &real)).await, None);

    let mallory = Arc::new(KeyPair::generate().expect("key"));
    // Forged: signed by another key than the agent it names.
    assert_eq!(
        post(&net, &mallory, &sign(&mallory, &real))
            .await
            .as_deref(),
        Some("invalid_offer_signature")
    );
    // A genuine envelope replayed by someone else.
    assert_eq!(
        post(&net, &mallory, &sign(&agent_key, &real))
            .await
            .as_deref(),
        Some("invalid_offer_signature")
    );
    // A tampered payload.
    let mut tampered = sign(&agent_key, &real);
    tampered.payload = tampered
        .payload
        .replace("\"free_bytes\":1073741824", "\"free_bytes\":1073741825");
    assert_eq!(
        post(&net, &agent_key, &tampered).await.as_deref(),
        Some("invalid_offer_signature")
    );
    // Expired.
    let mut expired = real.clone();
    expired.issued_at = pm::format_rfc3339(1_000);
    expired.expires_at = pm::format_rfc3339(2_000);
    assert_eq!(
        post(&net, &agent_key, &sign(&agent_key, &expired))
            .await
            .as_deref(),
        Some("offer_expired")
    );
    // The endpoint does not answer, or answers as another entity (the issuer's).
    let silent = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        format!("http://127.0.0.1:{port}")
    };
    let stranger = Arc::new(KeyPair::generate().expect("key"));
    assert_eq!(
        post(
            &net,
            &stranger,
            &sign(&stranger, &offer_for(&net, &stranger, &silent))
        )
        .await
        .as_deref(),
        Some("endpoint_unreachable")
    );
    assert_eq!(
        post(
            &net,
            &stranger,
            &sign(&stranger, &offer_for(&net, &stranger, &net.issuer.url))
        )
        .await
        .as_deref(),
        Some("endpoint_mismatch")
    );
    // Absurd values.
    let absurd: Vec<Change> = vec![
        Box::new(|o| o.free_bytes = u64::MAX),
        Box::new(|o| o.currencies[0].storage_per_gib_day = u64::MAX),
        Box::new(|o| o.currencies.clear()),
        Box::new(|o| o.endpoint = "ftp://example".into()),
        Box::new(|o| o.duration_s_max = 0),
        Box::new(|o| {
            o.expires_at =
                pm::format_rfc3339(i64::try_from(node::now_ms() / 1000).expect("t") + 30 * 86_400)
        }),
        Box::new(|o| {
            o.currencies[0].storage_per_gib_day = 0;
            o.currencies[0].contract_min = 0;
        }),
    ];
    for (i, change) in absurd.iter().enumerate() {
        let mut o = real.clone();
        change(&mut o);
        assert_eq!(
            post(&net, &agent_key, &sign(&agent_key, &o))
                .await
                .as_deref(),
            Some("invalid_offer"),
            "absurd case {i}"
        );
    }
    // Nothing refused reached the book: only the genuine agent is listed, with its offer.
    let book = book(&net).await;
    let offers = book["offers"].as_array().expect("offers");
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0]["agent"], agent_key.entity().as_str());
    // The listed offer is a genuine one (the agent's own heartbeats keep replacing it), never
    // one of the refused ones.
    let payload = offers[0]["offer"]["payload"].as_str().expect("payload");
    assert!(payload.contains(&agent.url));
    assert!(!payload.contains(&u64::MAX.to_string()) && !payload.contains("ftp://"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_that_stop_heartbeating_drop_out_when_they_expire() {
    let net = Net::start(0, None);
    // An agent that does not heartbeat; its offer is posted by hand with a 2 s validity.
    let silent = net.start_agent_without_market(0);
    let key =
        Arc::new(node::keyfile::load(&net.dir.path().join("agent-0/identity.key")).expect("key"));
    let mut offer = offer_for(&net, &key, &silent.url);
    let now = i64::try_from(node::now_ms() / 1000).expect("time");
    offer.expires_at = pm::format_rfc3339(now + 2);
    let env = Envelope::sign_json(&key, pm::OFFER_TYPE, &offer).expect("sign");
    assert_eq!(post(&net, &key, &env).await, None);
    let count = || async { book(&net).await["offers"].as_array().map_or(0, Vec::len) };
    assert_eq!(count().await, 1, "listed while valid");
    eventually(5_000, "the offer to expire", || async {
        count().await == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_book_renders_in_a_browser() {
    let Some(binary) = node::testing::chromium() else {
        return;
    };
    let net = Net::start(3, None);
    let book_url = format!("{}/v1/offers", net.market.url);
    eventually(10_000, "3 offers", || async {
        let v: serde_json::Value = match net.http.get(&book_url).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => return false,
        };
        v["offers"].as_array().map(|o| o.len()) == Some(3)
    })
    .await;
    let profile = net.dir.path().join("chromium-profile");
    let url = format!("{}/", net.market.url);
    let dom = tokio::task::spawn_blocking(move || {
        node::testing::run_chromium(binary, &profile, &["--dump-dom", &url])
    })
    .await
    .expect("chromium task");
    assert!(dom.contains("<h1>Storage market</h1>"), "rendered: {dom}");
    assert!(
        dom.contains(r#"<span id="count">3</span>"#),
        "three offers counted"
    );
    assert_eq!(dom.matches("class=\"offer\"").count(), 3, "three rows");
    for a in net.agents.iter().flatten() {
        assert!(
            dom.contains(a.agent.key.entity().as_str()),
            "each agent listed"
        );
    }
    // Cheapest adjusted price first: agent 0 (the cheapest, all equally unproven) leads.
    let first = dom.find("class=\"offer\"").expect("a row");
    let agent0 = net.agent(0).agent.key.entity().to_string();
    assert!(
        dom[first..].find(&agent0) < dom[first..].find(net.agent(1).agent.key.entity().as_str())
    );
    assert!(dom.contains("new"), "unvetted agents are marked new");
    // Prices in the currency's units, with its code, as `market offers` shows them.
    let listing = net
        .http
        .get(format!("{}/v1/offers", net.market.url))
        .send()
        .await
        .expect("offers")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    let price = listing["offers"][0]["reference_price"]
        .as_u64()
        .expect("a price");
    let shown = format!("{}.{:02} LCU", price / 100, price % 100);
    assert!(
        dom.contains(&format!("<td class=\"num price\">{shown}</td>")),
        "the reference price as {shown}: {dom}"
    );
}
