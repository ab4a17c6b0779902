//! Concealment, contests and the trust policies (issue 18), with real `peer` processes.

mod common;

use common::*;

fn args(extra: &[&str]) -> Vec<String> {
    ["--commission", "2", "--solicit-fee", "1", "--price", "10"]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
}

fn own_key(p: &Peer) -> String {
    p.dir.join("identity.key").display().to_string()
}

#[test]
fn a_concealing_peer_sells_its_own_copy_and_the_buyer_never_learns_the_source() {
    let net = Net::new();
    let share = net.tmp.path().join("share");
    let (doc, bytes) = document(&share, 7, 20_000);
    let share_s = share.display().to_string();
    // A (buyer, policy 3) - B (conceals) - C (source).
    let peers = line(&net, 3, |i| match i {
        0 => args(&["--policy", "3"]),
        1 => args(&["--strategy", "conceal"]),
        _ => args(&["--share", &share_s]),
    });
    for p in &peers {
        net.fund(&p.entity, 1_000);
    }
    settled(&net, &peers);
    let out = net.tmp.path().join("got");
    let got = cli_json(&[
        "get",
        "--key",
        &own_key(&peers[0]),
        "--via",
        &peers[0].url,
        "--document",
        &doc,
        "--max-price",
        "50",
        "--out",
        out.to_str().expect("path"),
        "--json",
    ]);
    assert_eq!(std::fs::read(&out).expect("out"), bytes);
    assert_eq!(
        got["served_by"],
        peers[1].entity.as_str(),
        "the concealer serves: {got}"
    );
    assert_eq!(
        got["price"], 12,
        "the source's price plus the concealer's commission"
    );
    let b = net.status(&peers[1]);
    let copies: Vec<String> = serde_json::from_value(b["copies"].clone()).expect("copies");
    assert_eq!(
        copies,
        vec![doc.clone()],
        "the concealer keeps a copy: {b:#}"
    );
    assert_eq!(
        std::fs::read(peers[1].dir.join("copies").join(&doc)).expect("copy"),
        bytes
    );
    let a = net.status(&peers[0]);
    assert_eq!(
        kind(&a, &peers[2].entity),
        None,
        "the buyer never learns the source: {a:#}"
    );
    let text = serde_json::to_string(&a).expect("json");
    assert!(
        !text.contains(&peers[2].url),
        "no trace of the source's URL at the buyer"
    );

    // The copy sells on its own: B answers from its copy without asking C again.
    let c_seen = n(&net.status(&peers[2]), "solicitations_seen");
    let (wallet, _) = net.wallet("stranger", 500);
    let found = cli_json(&[
        "find",
        "--key",
        wallet.to_str().expect("path"),
        "--via",
        &peers[1].url,
        "--document",
        &doc,
        "--max-price",
        "50",
        "--json",
    ]);
    assert_eq!(found["price"], 10, "B's own price for its copy: {found}");
    assert_eq!(n(&net.status(&peers[2]), "solicitations_seen"), c_seen);
}

#[test]
fn contests_refund_upstream_the_cheater_is_dropped_under_policy_3_and_policy_1_adds_nobody() {
    for (backend, net) in Net::backends() {
        eprintln!("backend: {backend}");
        contests(&net);
    }
}

fn contests(net: &Net) {
    let share = net.tmp.path().join("share");
    let (doc1, _) = document(&share, 1, 5_000);
    let (doc2, _) = document(&share, 2, 5_000);
    let (doc3, _) = document(&share, 3, 5_000);
    let share_s = share.display().to_string();
    // D (policy 1) - A (policy 3) - B - C (source).
    let peers = line(net, 4, |i| match i {
        0 => args(&["--policy", "1"]),
        1 => args(&["--policy", "3"]),
        2 => args(&[]),
        _ => args(&["--share", &share_s]),
    });
    let (d, a, b, c) = (&peers[0], &peers[1], &peers[2], &peers[3]);
    for p in &peers {
        net.fund(&p.entity, 1_000);
    }
    settled(net, &peers);

    // 1. The source serves bytes that are not the document: a stranger buying through A
    //    detects it and contests; A refunds it, B refunds A, C refunds B.
    std::fs::write(share.join("doc-3"), b"not what was promised").expect("corrupt");
    let (wallet, wallet_key) = net.wallet("buyer", 500);
    let before = net.balance(&wallet_key);
    let out = net.tmp.path().join("got3");
    let failed = cli(&[
        "get",
        "--key",
        wallet.to_str().expect("path"),
        "--via",
        &a.url,
        "--document",
        &doc3,
        "--max-price",
        "50",
        "--out",
        out.to_str().expect("path"),
    ]);
    assert!(!failed.status.success(), "a wrong hash must fail the get");
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(
        err.contains("do not match") && err.contains("contested, 14 refunded"),
        "{err}"
    );
    assert!(!out.exists(), "nothing written");
    let paid = before - net.balance(&wallet_key);
    let sa = net.status(a);
    let credit: u64 = sa["paid_ahead"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["buyer"] == wallet_key.entity().as_str())
        .map(|c| c["balance"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        credit, 14,
        "the price is back in the buyer's credit at A: {sa:#}"
    );
    assert_eq!(paid, 15, "the buyer paid the fee and the price");
    assert_eq!(
        n(&sa, "commissions_earned"),
        0,
        "A earned nothing on a failed deal"
    );
    assert_eq!(n(&sa, "contests"), 1);
    // The refund travelled to the source: B is even with A (only the fee stays on A's tab),
    // and C, which failed, bears it.
    let sb = net.status(b);
    assert_eq!(n(&sb, "contests"), 1, "{sb:#}");
    assert_eq!(
        owed_to_me(&sb, &a.entity),
        1,
        "A owes B the fee only: {sb:#}"
    );
    let sc = net.status(c);
    assert_eq!(n(&sc, "contests"), 1, "{sc:#}");
    assert_eq!(n(&sc, "documents_sold"), 0);
    assert_eq!(owed_to_me(&sc, &b.entity), 1, "B owes C the fee only");

    // 1b. The source takes the payment and never serves (its file is gone): the stranger's
    //     retrieval fails, it contests, and is refunded through the same chain.
    std::fs::remove_file(share.join("doc-2")).expect("remove");
    let out2 = net.tmp.path().join("got2");
    let failed = cli(&[
        "get",
        "--key",
        wallet.to_str().expect("path"),
        "--via",
        &a.url,
        "--document",
        &doc2,
        "--max-price",
        "50",
        "--out",
        out2.to_str().expect("path"),
    ]);
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(
        err.contains("retrieval failed") && err.contains("contested, 14 refunded"),
        "{err}"
    );
    assert_eq!(n(&net.status(c), "contests"), 2, "C bears both");
    assert_eq!(
        owed_to_me(&net.status(b), &a.entity),
        2,
        "A owes B two fees, nothing more"
    );

    // A (policy 3) met C through the instructions it passed on, an untrusted peer in a
    // contested deal: the cheater is dropped (marked undesirable).
    let sa = net.status(a);
    assert_eq!(
        kind(&sa, &c.entity).as_deref(),
        Some("undesirable"),
        "{sa:#}"
    );

    // 2. A buys doc1 (which C does serve) for itself through B: C is not taken back.
    let out1 = net.tmp.path().join("got1");
    let got = cli_json(&[
        "get",
        "--key",
        &own_key(a),
        "--via",
        &a.url,
        "--document",
        &doc1,
        "--max-price",
        "50",
        "--out",
        out1.to_str().expect("path"),
        "--json",
    ]);
    assert_eq!(got["served_by"], c.entity.as_str());
    assert_eq!(
        kind(&net.status(a), &c.entity).as_deref(),
        Some("undesirable")
    );
    // And it is never asked again: A's next own search goes through B only.
    let c_seen = n(&net.status(c), "solicitations_seen");
    let b_seen = n(&net.status(b), "solicitations_seen");
    cli_json(&[
        "find",
        "--key",
        &own_key(a),
        "--via",
        &a.url,
        "--document",
        &doc1,
        "--max-price",
        "50",
        "--json",
    ]);
    assert!(n(&net.status(b), "solicitations_seen") > b_seen);
    assert_eq!(
        n(&net.status(c), "solicitations_seen"),
        c_seen + 1,
        "C heard of it through B only, not from A directly"
    );

    // 3. Policy 1: D buys through A and B from C, and adds nobody.
    let out_d = net.tmp.path().join("got-d");
    let got = cli_json(&[
        "get",
        "--key",
        &own_key(d),
        "--via",
        &d.url,
        "--document",
        &doc1,
        "--max-price",
        "50",
        "--out",
        out_d.to_str().expect("path"),
        "--json",
    ]);
    assert_eq!(got["served_by"], c.entity.as_str());
    let sd = net.status(d);
    let kinds: Vec<String> = sd["neighbors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| n["kind"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        kinds,
        vec!["primary"],
        "policy 1 never adds a neighbour: {sd:#}"
    );
}

#[test]
fn a_stranger_pays_fees_and_prices_by_payword_and_the_peer_redeems_them() {
    let net = Net::new();
    let share = net.tmp.path().join("share");
    let (doc, bytes) = document(&share, 4, 9_000);
    let share_s = share.display().to_string();
    // A - B (source); A redeems every word at once.
    let peers = line(&net, 2, |i| {
        let mut a = args(&["--payword-redeem-threshold", "1"]);
        if i == 1 {
            a.extend(["--share".to_string(), share_s.clone()]);
        }
        a
    });
    let (a, b) = (&peers[0], &peers[1]);
    for p in &peers {
        net.fund(&p.entity, 1_000);
    }
    settled(&net, &peers);
    let (wallet, _) = net.wallet("payer", 2_000);
    let out = net.tmp.path().join("got");
    let got = cli_words(&[
        "get",
        "--key",
        wallet.to_str().expect("path"),
        "--via",
        &a.url,
        "--document",
        &doc,
        "--max-price",
        "50",
        "--out",
        out.to_str().expect("path"),
        "--json",
    ]);
    assert_eq!(std::fs::read(&out).expect("out"), bytes);
    assert_eq!(got["price"], 12);
    let chains = wallet.with_extension("key.chains");
    assert!(chains.is_dir(), "the wallet bought a chain beside the key");
    // A took words worth the fee and the price, no transfer came from the buyer, and it
    // redeems them with the issuer.
    let s = net.status_until(a, 20_000, "words redeemed", |s| {
        s["paywords"][0]["redeemed"].as_u64() == Some(13)
    });
    assert_eq!(s["paywords"][0]["accepted"], 13, "{s:#}");
    assert_eq!(n(&s, "fees_earned"), 1);
    assert_eq!(n(&s, "commissions_earned"), 2);
    let paid_ahead: u64 = s["paid_ahead"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["buyer"] != net.currency().as_str())
        .map(|c| c["balance"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(paid_ahead, 0, "the words were drawn exactly: {s:#}");
    // B was paid on A's tab as before.
    assert_eq!(owed_to_me(&net.status(b), &a.entity), 11);
}

#[test]
fn a_contest_reaches_a_source_that_was_down_when_it_was_made() {
    let net = Net::new();
    let share = net.tmp.path().join("share");
    let (doc, _) = document(&share, 8, 4_000);
    let share_s = share.display().to_string();
    // A - B - C (source).
    let mut peers = line(&net, 3, |i| {
        let mut a = args(&[]);
        if i == 2 {
            a.extend(["--share".to_string(), share_s.clone()]);
        }
        a
    });
    for p in &peers {
        net.fund(&p.entity, 1_000);
    }
    settled(&net, &peers);
    let (path, key) = net.wallet("buyer", 1_000);
    let wallet = clients::issuer::IssuerClient::new(
        net.http.clone(),
        &net.issuer.url,
        key.clone(),
        Some(node::client::CounterStore::beside_key(&path)),
    );
    let a_id = protocol::EntityId::parse(&peers[0].entity).expect("id");
    net.rt
        .block_on(wallet.transfer(&a_id, 100, None))
        .expect("pay A ahead");
    net.status_until(&peers[0], 20_000, "payment ahead seen", |s| {
        s["paid_ahead"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["buyer"] == key.entity().as_str()))
    });
    let client = clients::peer::PeerClient::new(net.http.clone(), &peers[0].url, key.clone());
    let counters = node::client::ClockCounter::default();
    let s = protocol::overlay::Solicit {
        document: doc.clone(),
        max_price: 50,
        currency: net.currency(),
        hops_left: 4,
        respond_by: node::now_ms() + 10_000,
        solicitation: None,
    };
    let bids = net
        .rt
        .block_on(client.solicit(&s, counters.next()))
        .expect("solicit")
        .value
        .bids;
    let bid = bids[0].bid.clone();
    let instructions = net
        .rt
        .block_on(client.accept(&bid, key.entity().as_str(), counters.next()))
        .expect("accept")
        .value;
    // The source goes down before the buyer retrieves.
    let c = peers.pop().expect("C");
    let c_port: u16 = c
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let c_entity = c.entity.clone();
    drop(c);
    let fetched = net.rt.block_on(clients::peer::retrieve(
        &net.http,
        key.clone(),
        &instructions,
    ));
    assert!(fetched.is_err(), "the source is down");
    let refunded = net
        .rt
        .block_on(client.contest(&bid, "the source does not answer", counters.next()))
        .expect("contest")
        .value
        .refunded;
    assert_eq!(
        refunded, 14,
        "A refunds the buyer what B refunded it: the whole price"
    );
    // B refunded A and could not reach C: it asks again, and C, back, refunds B.
    let c = net.peer(
        "p3",
        c_port,
        &[
            args(&["--share", &share_s]),
            vec!["--neighbor".into(), peers[1].url.clone()],
        ]
        .concat(),
    );
    assert_eq!(c.entity, c_entity, "the same peer");
    let sc = net.status_until(&c, 30_000, "C refunds B", |s| s["contests"] == 1);
    assert_eq!(
        owed_to_me(&sc, &peers[1].entity),
        1,
        "B owes C the fee only"
    );
}
