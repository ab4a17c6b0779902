//! The issuer as payword broker (DESIGN 10, issue 15): chains bought into escrow, redemptions
//! paid once, refusals, double spends caught and proven, escrows returned after expiry; over
//! real HTTP on SQLite and (when configured) PostgreSQL.

mod util;

use std::time::{Duration, Instant};

use clients::issuer::IssuerClient;
use clients::wallet::{self, ChainFile, Wallet};
use lcp::config::IssuerConfig;
use protocol::payword::{sign_block, OpenTouchstone, Payword};
use protocol::KeyPair;
use util::{backends, TestIssuer};

/// A payword for `vendor` over `from..=end` of `file`, words handed up to `to`, signed by `payer`.
fn payword(
    file: &ChainFile,
    payer: &KeyPair,
    vendor: &KeyPair,
    from: u64,
    end: u64,
    to: u64,
) -> Payword {
    Payword {
        chain: file.chain.clone(),
        from,
        end,
        to,
        word: file.word(to).expect("word"),
        signature: sign_block(payer, &file.chain, vendor.entity(), from, end),
    }
}

async fn balance(c: &IssuerClient) -> i64 {
    c.balance().await.expect("balance").balance
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_escrow_redeem_once_and_refuse_bad_words() {
    for (backend, database) in backends("paywords_redeem") {
        let config = IssuerConfig {
            fee_flat: 1,
            fee_bps: 100,
            ..IssuerConfig::default()
        };
        let issuer = TestIssuer::start(database.url(), config);
        let payer = issuer.funded_wallet("payer", 10_000).await;
        let wallet = Wallet::beside_key(&issuer.dir.path().join("payer.key"));
        let (vendor, _) = issuer.wallet("vendor");
        let (other, _) = issuer.wallet("other");

        // The descriptor states the limits.
        let d = issuer
            .mint()
            .signed()
            .descriptor()
            .await
            .expect("descriptor");
        assert_eq!(d["paywords"]["chain_length_max"], 1_000_000, "{backend}");

        // Buying moves length x unit into escrow, plus the fee (1 + 1% of 1,000 = 11).
        let file = wallet::buy(&payer, &wallet, 100, 10, Some(3_600))
            .await
            .expect("buy");
        assert_eq!(balance(&payer).await, 10_000 - 1_000 - 11, "{backend}");
        let t = OpenTouchstone::open(&file.touchstone).expect("touchstone verifies");
        assert_eq!(&t.issuer, issuer.key.entity());
        assert_eq!(&t.payer, payer.signed().key().entity());
        let status = issuer.mint().chain(&file.chain).await.expect("chain");
        assert_eq!((status.escrow, status.closed), (1_000, false));
        issuer.assert_sum_zero().await;

        // The vendor is paid 7 words from the wallet and redeems them: 70 less the fee (1 + 1).
        let payer_key = payer.signed().key();
        let vendor_key = vendor.signed().key();
        let p = wallet
            .pay(payer_key, &file.chain, vendor_key.entity(), 7, 20, 0)
            .expect("pay");
        assert_eq!((p.from, p.end, p.to), (1, 20, 7));
        let counter = vendor.next_counter().await.expect("counter");
        let answer = vendor
            .redeem_with_counter(counter, vec![p.clone()])
            .await
            .expect("redeem")
            .value;
        let r = &answer.results[0];
        assert_eq!(
            (r.result.as_str(), r.words, r.amount, r.fee),
            ("success", 7, 68, 2),
            "{backend}"
        );
        assert_eq!(balance(&vendor).await, 68);
        // The same command again replays; a new command for the same words pays nothing.
        let again = vendor
            .redeem_with_counter(counter, vec![p.clone()])
            .await
            .expect("replay");
        assert_eq!(again.value, answer);
        let twice = vendor.redeem(vec![p.clone()]).await.expect("again").value;
        assert_eq!((twice.results[0].words, twice.results[0].amount), (0, 0));
        assert_eq!(balance(&vendor).await, 68);

        // Refused, each on its own, and nothing credited: a wrong word, a block signed for
        // another vendor, an index past the block, an unknown chain.
        let mut wrong_word = payword(&file, payer_key, vendor_key, 1, 20, 9);
        wrong_word.word = file.word(8).expect("word");
        let for_other = payword(&file, payer_key, other.signed().key(), 1, 20, 9);
        let mut past_end = payword(&file, payer_key, vendor_key, 1, 20, 9);
        past_end.to = 21;
        let mut unknown = payword(&file, payer_key, vendor_key, 1, 20, 9);
        unknown.chain = "9b4e8a3c-7f2d-4c1e-9a5b-3d6f8e2a1c4b".into();
        let answer = vendor
            .redeem(vec![wrong_word, for_other, past_end, unknown])
            .await
            .expect("answered")
            .value;
        let codes: Vec<&str> = answer.results.iter().map(|r| r.result.as_str()).collect();
        assert_eq!(
            codes,
            [
                "invalid_payword",
                "invalid_payword",
                "invalid_payword",
                "unknown_chain"
            ],
            "{backend}"
        );
        assert_eq!(balance(&vendor).await, 68);
        // Too many items or none: the whole command is refused.
        let err = vendor.redeem(Vec::new()).await.expect_err("empty");
        assert_eq!(err.code(), Some("invalid_chain"));
        issuer.assert_sum_zero().await;

        // Buying beyond the funds or the limits is refused, and nothing moves.
        let before = balance(&payer).await;
        let err = wallet::buy(&payer, &wallet, 1_000, 1_000, None)
            .await
            .expect_err("too dear");
        assert!(err.to_string().contains("insufficient"), "{err}");
        assert_eq!(balance(&payer).await, before);
        assert_eq!(
            wallet.chains().expect("chains").len(),
            1,
            "a refused purchase leaves no chain"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_spend_is_paid_in_order_and_proven() {
    for (backend, database) in backends("paywords_fraud") {
        let issuer = TestIssuer::start(database.url(), IssuerConfig::default());
        let payer = issuer.funded_wallet("payer", 150).await;
        let wallet = Wallet::beside_key(&issuer.dir.path().join("payer.key"));
        let (a, _) = issuer.wallet("a");
        let (b, _) = issuer.wallet("b");
        let file = wallet::buy(&payer, &wallet, 10, 10, None)
            .await
            .expect("buy");
        assert_eq!(balance(&payer).await, 50);
        let pk = payer.signed().key();
        // Two blocks overlapping on words 5..=8, for two vendors.
        let to_a = payword(&file, pk, a.signed().key(), 1, 8, 8);
        let to_b = payword(&file, pk, b.signed().key(), 5, 10, 10);
        let ra = a.redeem(vec![to_a]).await.expect("a").value;
        assert_eq!(
            (ra.results[0].amount, ra.results[0].shortfall),
            (80, 0),
            "{backend}"
        );
        // b is owed 6 words (60): 20 left in escrow, then the payer's 50 cover 40 of it.
        let rb = b.redeem(vec![to_b]).await.expect("b").value;
        assert_eq!(
            (rb.results[0].amount, rb.results[0].shortfall),
            (60, 0),
            "{backend}"
        );
        assert_eq!(balance(&payer).await, 10);
        let page = issuer.mint().frauds(0).await.expect("frauds");
        assert_eq!(page.frauds.len(), 1, "{backend}");
        let proof = &page.frauds[0];
        assert_eq!(
            &proof
                .verify(issuer.key.entity())
                .expect("the proof verifies alone"),
            pk.entity()
        );
        // A third vendor with an overlapping block: the payer holds 10, the rest is short.
        let (c, _) = issuer.wallet("c");
        let to_c = payword(&file, pk, c.signed().key(), 2, 4, 4);
        let rc = c.redeem(vec![to_c]).await.expect("c").value;
        assert_eq!(
            (rc.results[0].amount, rc.results[0].shortfall),
            (10, 20),
            "{backend}"
        );
        assert_eq!(balance(&payer).await, 0);
        let page = issuer.mint().frauds(0).await.expect("frauds");
        assert_eq!(page.frauds.len(), 2);
        assert_eq!(page.frauds[1].shortfall, 20);
        assert_eq!(
            issuer
                .mint()
                .frauds(page.next)
                .await
                .expect("after")
                .frauds
                .len(),
            0
        );
        let status = issuer.mint().chain(&file.chain).await.expect("chain");
        assert_eq!((status.escrow, status.redeemed.len()), (0, 3));
        issuer.assert_sum_zero().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_escrow_comes_back_after_expiry_and_grace() {
    for (backend, database) in backends("paywords_expiry") {
        let config = IssuerConfig {
            redeem_grace_s: 0,
            escrow_sweep_interval_ms: 100,
            ..IssuerConfig::default()
        };
        let issuer = TestIssuer::start(database.url(), config);
        let payer = issuer.funded_wallet("payer", 500).await;
        let wallet = Wallet::beside_key(&issuer.dir.path().join("payer.key"));
        let (vendor, _) = issuer.wallet("vendor");
        let file = wallet::buy(&payer, &wallet, 30, 10, Some(1))
            .await
            .expect("buy");
        let p = payword(
            &file,
            payer.signed().key(),
            vendor.signed().key(),
            1,
            10,
            10,
        );
        // Redeemed before the sweep finds it (it expires within a second), or refused after.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let status = issuer.mint().chain(&file.chain).await.expect("chain");
            if status.closed {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{backend}: the escrow never came back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            balance(&payer).await,
            500,
            "{backend}: all of the escrow came back"
        );
        let r = vendor.redeem(vec![p]).await.expect("answered").value;
        assert_eq!(r.results[0].result, "chain_closed");
        assert_eq!(balance(&vendor).await, 0);
        let deposits = payer.deposits(0, 0, None).await.expect("deposits");
        assert!(
            deposits
                .deposits
                .iter()
                .any(|d| d.amount == 300 && d.from.starts_with("escrow:")),
            "{deposits:?}"
        );
        issuer.assert_sum_zero().await;
    }
}

#[test]
fn the_wallet_cli_buys_lists_and_pays() {
    let issuer_dir = tempfile::tempdir().expect("tmp");
    let (_guard, url) = util::spawn_issuer(issuer_dir.path(), None, &[]);
    let dir = tempfile::tempdir().expect("tmp");
    let key = dir.path().join("me.key");
    let key_s = key.to_str().expect("utf8");
    let me = util::lcp(&["keygen", "--out", key_s]);
    assert!(me.status.success());
    let me = String::from_utf8_lossy(&me.stdout).trim().to_owned();
    let issuer_key = issuer_dir.path().join("identity.key");
    let funded = util::lcp(&[
        "transfer",
        "--key",
        issuer_key.to_str().expect("utf8"),
        "--issuer",
        &url,
        "--to",
        &me,
        "--amount",
        "10000",
    ]);
    assert!(funded.status.success());

    let bought = util::lcp(&[
        "chain", "buy", "--key", key_s, "--issuer", &url, "--length", "1000", "--unit", "2",
        "--json",
    ]);
    assert!(bought.status.success());
    let bought: serde_json::Value = serde_json::from_slice(&bought.stdout).expect("json");
    let chain = bought["chain"].as_str().expect("chain").to_owned();
    assert_eq!(bought["touchstone"]["type"], "touchstone");

    let vendor = KeyPair::generate().expect("key");
    let vendor_id = vendor.entity().to_string();
    let paid = util::lcp(&[
        "chain",
        "pay",
        "--key",
        key_s,
        "--chain",
        &chain,
        "--to",
        &vendor_id,
        "--words",
        "5",
        "--block-words",
        "100",
    ]);
    assert!(paid.status.success());
    let header = String::from_utf8_lossy(&paid.stdout).trim().to_owned();
    let p = Payword::parse_header(&header).expect("a payword header");
    assert_eq!((p.from, p.end, p.to), (1, 100, 5));
    let root =
        OpenTouchstone::open(&serde_json::from_value(bought["touchstone"].clone()).expect("env"))
            .expect("touchstone")
            .touchstone
            .root;
    assert_eq!(
        p.verify_word((0, root)),
        Ok(5),
        "the word hashes to the root"
    );

    let listed = util::lcp(&["chain", "list", "--key", key_s, "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(listed[0]["chain"], chain.as_str());
    assert_eq!(listed[0]["words_spent"], 5);
    assert_eq!(listed[0]["words_left"], 995);
    assert_eq!(listed[0]["value_left"], 1990);

    // Bad input: one line and a non-zero exit; nothing spent.
    let bad = util::lcp(&[
        "chain", "pay", "--key", key_s, "--chain", &chain, "--to", "bob", "--words", "1",
    ]);
    assert!(!bad.status.success());
    let bad = util::lcp(&[
        "chain", "pay", "--key", key_s, "--chain", &chain, "--to", &vendor_id, "--words", "5000",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("left"));
    let listed = util::lcp(&["chain", "list", "--key", key_s, "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(listed[0]["words_spent"], 5);
}
