//! Eight real `peer` processes in a line, the document at the far end (issue 18): a buyer
//! through the first retrieves it byte-identical; each intermediate earns exactly its
//! commission; each solicitation pays its fee; the price is the source's plus the
//! commissions; tabs past their threshold are settled through LCP; a maximum price below the
//! chain of commissions finds nothing and stops before the source. Then referral: the buyer
//! and intermediates list the source as a secondary neighbour, and the next search for
//! another document there takes one hop.

mod common;

use common::*;

const PEERS: usize = 8;
const COMMISSION: u64 = 2;
const FEE: u64 = 1;
const PRICE: u64 = 10;
const THRESHOLD: u64 = 20;

#[test]
fn eight_peers_in_a_line_sell_the_far_document_with_commissions_fees_and_referral() {
    let net = Net::new();
    let share = net.tmp.path().join("share8");
    let (doc, bytes) = document(&share, 1, 40_000);
    let (doc2, bytes2) = document(&share, 2, 3_000);
    let peers = line(&net, PEERS, |i| {
        let mut a: Vec<String> = [
            "--commission",
            &COMMISSION.to_string(),
            "--solicit-fee",
            &FEE.to_string(),
            "--price",
            &PRICE.to_string(),
            "--tab-threshold",
            &THRESHOLD.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if i == PEERS - 1 {
            a.push("--share".into());
            a.push(share.display().to_string());
        }
        a
    });
    for p in &peers {
        net.fund(&p.entity, 5_000);
    }
    settled(&net, &peers);
    let (wallet, wallet_key) = net.wallet("buyer", 1_000);
    let wallet_s = wallet.display().to_string();
    let out = net.tmp.path().join("got");
    let max = |m: u64| m.to_string();

    // A maximum price below the chain of commissions: no bid, and the source never hears.
    let low = COMMISSION * (PEERS as u64 - 1) - 1;
    let none = cli(&[
        "find",
        "--key",
        &wallet_s,
        "--via",
        &peers[0].url,
        "--document",
        &doc,
        "--max-price",
        &max(low),
        "--json",
    ]);
    assert!(!none.status.success(), "nothing found is exit 1");
    let found: serde_json::Value = serde_json::from_slice(&none.stdout).expect("JSON");
    assert!(found["bid"].is_null(), "no bid expected: {found}");
    let source = net.status(&peers[PEERS - 1]);
    assert_eq!(
        n(&source, "solicitations_seen"),
        0,
        "the source was reached: {source:#}"
    );
    // Each hop took its commission off the maximum: the one before the source got less
    // than its commission and stopped there.
    let last = net.status(&peers[PEERS - 2]);
    assert_eq!(n(&last, "solicitations_seen"), 1, "{last:#}");
    assert_eq!(n(&last, "solicitations_forwarded"), 0, "{last:#}");
    let seen_before: Vec<u64> = peers
        .iter()
        .map(|p| n(&net.status(p), "solicitations_seen"))
        .collect();
    let fees_before: Vec<u64> = peers
        .iter()
        .map(|p| n(&net.status(p), "fees_earned"))
        .collect();

    // The real purchase, by a stranger paying the first peer ahead.
    let price = PRICE + COMMISSION * PEERS as u64 - COMMISSION; // 7 intermediates
    let before = net.balance(&wallet_key);
    let got = cli_json(&[
        "get",
        "--key",
        &wallet_s,
        "--via",
        &peers[0].url,
        "--document",
        &doc,
        "--max-price",
        &max(price),
        "--out",
        out.to_str().expect("path"),
        "--json",
    ]);
    assert_eq!(std::fs::read(&out).expect("out"), bytes, "byte-identical");
    assert_eq!(
        got["price"], price,
        "source price plus the commissions: {got}"
    );
    assert_eq!(
        got["served_by"],
        peers[PEERS - 1].entity.as_str(),
        "referral: the source serves"
    );
    let paid = before - net.balance(&wallet_key);
    assert_eq!(
        paid,
        (price + FEE) as i64,
        "the buyer paid the fee and the price, no more"
    );

    for (i, p) in peers.iter().enumerate() {
        let s = net.status(p);
        assert_eq!(
            n(&s, "solicitations_seen"),
            seen_before[i] + 1,
            "peer {i}: {s:#}"
        );
        assert_eq!(n(&s, "fees_earned"), fees_before[i] + FEE, "peer {i} fee");
        if i < PEERS - 1 {
            assert_eq!(
                n(&s, "commissions_earned"),
                COMMISSION,
                "peer {i} commission"
            );
            assert_eq!(n(&s, "documents_sold"), 0);
        } else {
            assert_eq!(n(&s, "commissions_earned"), 0);
            assert_eq!(n(&s, "documents_sold"), 1);
            assert_eq!(n(&s, "sales_income"), PRICE);
        }
    }
    // Tabs: peer i+1 holds what peer i owes for the solicitations and the price; those past
    // the threshold are settled through LCP (and show 0 once the deposit is seen).
    for i in 1..PEERS {
        let debtor = &peers[i - 1].entity;
        let bid = PRICE + COMMISSION * (PEERS - 1 - i) as u64;
        let total = fees_before[i] + FEE + bid;
        let s = net.status_until(&peers[i], 20_000, "tab settled", |s| {
            let owed = owed_to_me(s, debtor);
            if total >= THRESHOLD {
                owed == 0
            } else {
                owed == total
            }
        });
        assert!(owed_to_me(&s, debtor) < THRESHOLD);
    }
    // Referral: the intermediates discovered the source (its neighbour has it as primary).
    for p in &peers[..PEERS - 2] {
        let s = net.status(p);
        assert_eq!(
            kind(&s, &peers[PEERS - 1].entity).as_deref(),
            Some("secondary"),
            "{s:#}"
        );
    }

    // The first peer's own search for another document at the source: one hop.
    let own_key = peers[0].dir.join("identity.key");
    let seen_third = n(&net.status(&peers[2]), "solicitations_seen");
    let out2 = net.tmp.path().join("got2");
    let got2 = cli_json(&[
        "get",
        "--key",
        own_key.to_str().expect("path"),
        "--via",
        &peers[0].url,
        "--document",
        &doc2,
        "--max-price",
        &max(PRICE),
        "--out",
        out2.to_str().expect("path"),
        "--json",
    ]);
    assert_eq!(std::fs::read(&out2).expect("out"), bytes2);
    assert_eq!(got2["price"], PRICE, "straight from the source: {got2}");
    let path: Vec<String> = serde_json::from_value(got2["path"].clone()).expect("path");
    assert_eq!(
        path,
        vec![peers[0].url.clone(), peers[PEERS - 1].url.clone()]
    );
    assert_eq!(
        n(&net.status(&peers[2]), "solicitations_seen"),
        seen_third,
        "the search did not travel down the line"
    );
    // The source has no tab for the first peer (not its primary neighbour): the first peer
    // paid the fee and the price by payword, from a chain of its own.
    let source = net.status(&peers[PEERS - 1]);
    assert_eq!(source["paywords"][0]["accepted"], FEE + PRICE, "{source:#}");
}
