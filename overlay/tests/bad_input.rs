//! Bad input to peers (issue 18), on SQLite and PostgreSQL: a solicitation without its fee,
//! reused and misdirected tokens, clamped hops, late solicitations, bad documents, refused
//! currencies, other people's bids; and the CLI's one-line errors.

mod common;

use std::sync::Arc;

use clients::peer::PeerClient;
use common::*;
use node::client::ClientError;
use protocol::overlay::{Solicit, SOLICIT_HOPS_MAX};

fn code(e: &ClientError) -> (u16, String) {
    match e {
        ClientError::Api { status, code, .. } => (*status, code.clone()),
        other => panic!("not an API error: {other}"),
    }
}

#[test]
fn peers_refuse_bad_input_clearly_and_keep_their_books() {
    for (backend, net) in Net::backends() {
        eprintln!("backend: {backend}");
        run(&net);
    }
}

fn run(net: &Net) {
    let share = net.tmp.path().join("share");
    let (doc, bytes) = document(&share, 5, 4_000);
    let share_s = share.display().to_string();
    // A - B - C (source).
    let peers = line(net, 3, |i| {
        let mut a: Vec<String> = ["--solicit-fee", "1", "--commission", "2", "--price", "10"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if i == 2 {
            a.extend(["--share".to_string(), share_s.clone()]);
        }
        a
    });
    let (a, b, c) = (&peers[0], &peers[1], &peers[2]);
    for p in &peers {
        net.fund(&p.entity, 1_000);
    }
    settled(net, &peers);
    let currency = net.currency();
    let counters = node::client::ClockCounter::default();
    let (stranger_path, stranger) = net.wallet("stranger", 1_000);
    let (_, other) = net.wallet("other", 1_000);
    let client = |p: &Peer, key: &Arc<protocol::KeyPair>| {
        PeerClient::new(net.http.clone(), &p.url, key.clone())
    };
    let solicit = |hops: u32, respond_by: u64| Solicit {
        document: doc.clone(),
        max_price: 100,
        currency: currency.clone(),
        hops_left: hops,
        respond_by,
        solicitation: None,
    };
    let later = || node::now_ms() + 10_000;

    // A solicitation without its fee: 402 with what is due, and nothing recorded.
    let e = net
        .rt
        .block_on(client(a, &stranger).solicit(&solicit(2, later()), counters.next()))
        .expect_err("no fee paid");
    assert_eq!(code(&e), (402, "payment_required".into()));
    assert_eq!(e.amount_due(), Some(1));
    assert_eq!(
        n(&net.status(a), "solicitations_seen"),
        0,
        "a refused solicitation is not counted"
    );

    // A stranger pays the source ahead, then asks it directly.
    let pay = clients::issuer::IssuerClient::new(
        net.http.clone(),
        &net.issuer.url,
        stranger.clone(),
        Some(node::client::CounterStore::beside_key(&stranger_path)),
    );
    let c_id = protocol::EntityId::parse(&c.entity).expect("id");
    net.rt
        .block_on(pay.transfer(&c_id, 100, None))
        .expect("pay C ahead");
    let c_client = client(c, &stranger);
    // hops_left above the maximum is clamped, not refused; the same signed request twice
    // pays once.
    let bids = eventually_paid(net, || {
        net.rt
            .block_on(c_client.solicit(&solicit(SOLICIT_HOPS_MAX * 100, later()), 4242))
    });
    assert_eq!(bids.len(), 1, "the source bids");
    let again = net
        .rt
        .block_on(c_client.solicit(&solicit(SOLICIT_HOPS_MAX * 100, later()), 4242));
    assert!(again.is_ok(), "a replay is answered: {again:?}");
    let sc = net.status(c);
    assert_eq!(n(&sc, "fees_earned"), 1, "the replay paid once: {sc:#}");

    // Tokens: used once, and only by the buyer they were made for.
    let instr = net
        .rt
        .block_on(c_client.accept(&bids[0].bid, stranger.entity().as_str(), counters.next()))
        .expect("accept")
        .value;
    let theirs = net
        .rt
        .block_on(clients::peer::retrieve(&net.http, other.clone(), &instr));
    assert_eq!(
        code(&theirs.expect_err("another buyer")),
        (403, "wrong_buyer".into())
    );
    let got = net
        .rt
        .block_on(clients::peer::retrieve(&net.http, stranger.clone(), &instr))
        .expect("retrieve");
    assert_eq!(got, bytes);
    let twice = net
        .rt
        .block_on(clients::peer::retrieve(&net.http, stranger.clone(), &instr));
    assert_eq!(
        code(&twice.expect_err("reused")),
        (410, "token_used".into())
    );
    // A stranger that got the document cannot take its price back by contesting.
    let e = net
        .rt
        .block_on(c_client.contest(&bids[0].bid, "lying", counters.next()))
        .expect_err("retrieved already");
    assert_eq!(code(&e), (409, "already_retrieved".into()));
    // Accepting again answers the same instructions and charges nothing.
    let credit_before = net.status(c)["paid_ahead"].clone();
    let same = net
        .rt
        .block_on(c_client.accept(&bids[0].bid, stranger.entity().as_str(), counters.next()))
        .expect("accept again")
        .value;
    assert_eq!(same, instr);
    assert_eq!(net.status(c)["paid_ahead"], credit_before);
    // Someone else's bid: refused, and so is contesting it.
    let e = net
        .rt
        .block_on(client(c, &other).accept(&bids[0].bid, other.entity().as_str(), counters.next()))
        .expect_err("not theirs");
    assert_eq!(code(&e).0, 409);
    let e = net
        .rt
        .block_on(client(c, &other).contest(&bids[0].bid, "", counters.next()))
        .expect_err("not theirs");
    assert_eq!(code(&e), (403, "not_accepted".into()));
    let e = net
        .rt
        .block_on(c_client.accept("no-such-bid", stranger.entity().as_str(), counters.next()))
        .expect_err("unknown");
    assert_eq!(code(&e), (404, "unknown_bid".into()));

    // A solicitation past its respond_by is not forwarded (A pays B's fee on its tab).
    let a_own = client(a, &a.key);
    let b_seen = n(&net.status(b), "solicitations_seen");
    let late = net
        .rt
        .block_on(a_own.solicit(
            &solicit(4, node::now_ms().saturating_sub(1)),
            counters.next(),
        ))
        .expect("answered")
        .value;
    assert!(late.bids.is_empty());
    assert_eq!(
        n(&net.status(b), "solicitations_seen"),
        b_seen,
        "not forwarded"
    );

    // Bad documents and refused currencies.
    let mut bad = solicit(1, later());
    bad.document = "not-a-hash".into();
    let e = net
        .rt
        .block_on(a_own.solicit(&bad, counters.next()))
        .expect_err("bad");
    assert_eq!(code(&e), (400, "invalid_request".into()));
    let mut foreign = solicit(1, later());
    foreign.currency = other.entity().to_string();
    let e = net
        .rt
        .block_on(a_own.solicit(&foreign, counters.next()))
        .expect_err("refused");
    assert_eq!(code(&e), (409, "currency_not_accepted".into()));
    let ClientError::Api {
        details: Some(d), ..
    } = &e
    else {
        panic!("details")
    };
    assert_eq!(
        d["currencies"][0]["issuer"],
        currency.as_str(),
        "the refusal names what it takes"
    );
    // The CLI retries in a currency the peer takes.
    let found = cli_json(&[
        "find",
        "--key",
        a.dir.join("identity.key").to_str().expect("path"),
        "--via",
        &a.url,
        "--document",
        &doc,
        "--max-price",
        "100",
        "--currency",
        other.entity().as_str(),
        "--json",
    ]);
    assert_eq!(found["currency"], currency.as_str(), "{found}");
    assert!(found["price"].as_u64().is_some());

    // `peer serve` refuses what would break it later, in one line.
    let data = net.tmp.path().join("refused");
    let data_s = data.display().to_string();
    for (args, says) in [
        (vec!["--listen", "0.0.0.0:0"], "--public-url"),
        (
            vec!["--listen", "127.0.0.1:0", "--tab-threshold", "0"],
            "--tab-threshold",
        ),
        (vec!["--listen", "127.0.0.1:0", "--policy", "4"], "--policy"),
    ] {
        let mut all = vec!["serve", "--data", &data_s, "--issuer", &net.issuer.url];
        all.extend(args);
        let out = cli(&all);
        assert!(!out.status.success(), "{all:?} must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(says) && err.trim().lines().count() == 1,
            "{all:?}: {err}"
        );
    }

    // `peer get` with an --out it cannot write fails before paying anything.
    let sold = n(&net.status(c), "documents_sold");
    let out = cli(&[
        "get",
        "--key",
        a.dir.join("identity.key").to_str().expect("path"),
        "--via",
        &a.url,
        "--document",
        &doc,
        "--max-price",
        "100",
        "--out",
        "/nonexistent-dir/x",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot write"), "{err}");
    assert_eq!(n(&net.status(c), "documents_sold"), sold, "nothing bought");

    // The CLI: one line, non-zero.
    let out = cli(&[
        "find",
        "--key",
        "/nonexistent.key",
        "--via",
        &a.url,
        "--document",
        "xyz",
        "--max-price",
        "1",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("64 lowercase hex"), "{err}");
}

/// The bids of a solicitation sent until the peer has seen the payment ahead.
fn eventually_paid(
    _net: &Net,
    mut call: impl FnMut() -> Result<clients::peer::Charged<protocol::overlay::Bids>, ClientError>,
) -> Vec<protocol::overlay::Bid> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match call() {
            Ok(a) => return a.value.bids,
            Err(e)
                if clients::pay::payment_required(&e) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("solicit: {e}"),
        }
    }
}
