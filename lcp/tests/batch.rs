//! `POST /lcp/v1/transfers/batch` (issue 21) over real HTTP, on SQLite and (with
//! TEST_DATABASE_URL) PostgreSQL: each item answered on its own (bad items and those the
//! funds no longer cover refused, the rest paid), one receipt stored whatever the outcomes, so
//! a repeated batch pays nothing twice; balances still sum to zero; and `lcp transfer --batch`.

mod util;

use lcp::config::IssuerConfig;
use protocol::ledger::BatchItem;
use util::{backends, TestIssuer};

fn item(to: &str, amount: u64) -> BatchItem {
    BatchItem {
        recipient: to.to_owned(),
        amount,
        transaction_id: None,
        userid: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_each_transfer_and_a_repeat_pays_nothing_twice() {
    for (backend, database) in backends("batch") {
        let issuer = TestIssuer::start(
            database.url(),
            IssuerConfig {
                fee_flat: 1,
                ..IssuerConfig::default()
            },
        );
        let payer = issuer.funded_wallet("payer", 100).await;
        let (a, _) = issuer.wallet("a");
        let (b, _) = issuer.wallet("b");
        let (a_id, b_id) = (
            a.signed().key().entity().to_string(),
            b.signed().key().entity().to_string(),
        );
        let me = payer.signed().key().entity().to_string();
        let items = vec![
            item(&a_id, 40),          // 41 with the fee: 59 left
            item(&b_id, 0),           // invalid amount
            item("not-an-entity", 5), // invalid recipient
            item(&me, 5),             // paying oneself
            item(&b_id, 60),          // 61 > 59: insufficient funds
            item(&b_id, 50),          // 51 <= 59: paid, 8 left
            BatchItem {
                transaction_id: Some("order-7".into()),
                ..item(&a_id, 7)
            }, // 8: paid, 0 left
        ];
        let counter = payer.next_counter().await.expect("counter");
        let answer = payer
            .transfer_batch_with_counter(counter, &items)
            .await
            .unwrap_or_else(|e| panic!("{backend}: {e}"));
        let codes: Vec<Option<&str>> = answer
            .value
            .results
            .iter()
            .map(|r| {
                if r.succeeded() {
                    None
                } else {
                    r.code.as_deref()
                }
            })
            .collect();
        assert_eq!(
            codes,
            vec![
                None,
                Some("invalid_amount"),
                Some("invalid_recipient"),
                Some("invalid_recipient"),
                Some("insufficient_funds"),
                None,
                None
            ],
            "{backend}: {:?}",
            answer.value
        );
        assert_eq!(answer.value.balance, 0, "{backend}");
        assert!(
            answer.value.results[0].seq < answer.value.results[5].seq,
            "in order"
        );
        assert_eq!(answer.value.results[0].fee, Some(1));
        assert_eq!(a.balance().await.expect("a").balance, 47, "{backend}");
        assert_eq!(b.balance().await.expect("b").balance, 50, "{backend}");
        let deposits = a.deposits(0, 0, Some("order-7")).await.expect("deposits");
        assert_eq!(
            deposits.deposits.len(),
            1,
            "the item's transaction id is kept"
        );

        // The same batch again (a lost answer, say): the stored answer, nothing paid twice.
        let again = payer
            .transfer_batch_with_counter(counter, &items)
            .await
            .expect("replayed");
        assert_eq!(again.value, answer.value, "{backend}");
        assert_eq!(a.balance().await.expect("a").balance, 47);
        assert_eq!(b.balance().await.expect("b").balance, 50);
        // The same counter with another body is refused.
        let other = payer
            .transfer_batch_with_counter(counter, &items[..1])
            .await
            .expect_err("counter reused");
        assert_eq!(other.code(), Some("counter_reused"), "{backend}");
        // An empty batch, or one too large, is refused whole.
        for bad in [
            vec![],
            vec![item(&a_id, 1); protocol::ledger::BATCH_TRANSFERS_MAX + 1],
        ] {
            let e = payer.transfer_batch(&bad).await.expect_err("refused");
            assert_eq!(e.code(), Some("invalid_batch"), "{backend}");
        }
        issuer.assert_sum_zero().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lcp_transfer_batch_sends_a_file_of_transfers() {
    let issuer = TestIssuer::start(None, IssuerConfig::default());
    let payer = issuer.funded_wallet("payer", 1_000).await;
    let (a, _) = issuer.wallet("a");
    let a_id = a.signed().key().entity().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("batch.jsonl");
    std::fs::write(
        &file,
        format!(
            "{{\"recipient\": \"{a_id}\", \"amount\": 30}}\n\n{{\"to\": \"{a_id}\", \"amount\": 20, \"transaction_id\": \"x\"}}\n"
        ),
    )
    .expect("file");
    let key = issuer.dir.path().join("payer.key");
    let out = util::lcp(&[
        "transfer",
        "--key",
        key.to_str().expect("path"),
        "--issuer",
        issuer.url(),
        "--batch",
        file.to_str().expect("path"),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["results"].as_array().map(Vec::len), Some(2));
    assert_eq!(a.balance().await.expect("a").balance, 50);
    // A file the payer cannot cover in full: exit 1, the covered items paid.
    std::fs::write(&file, format!("{{\"recipient\": \"{a_id}\", \"amount\": 10}}\n{{\"recipient\": \"{a_id}\", \"amount\": 100000}}\n")).expect("file");
    let out = util::lcp(&[
        "transfer",
        "--key",
        key.to_str().expect("path"),
        "--issuer",
        issuer.url(),
        "--batch",
        file.to_str().expect("path"),
    ]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 of 2 transfers sent") && text.contains("insufficient_funds"),
        "{text}"
    );
    assert_eq!(a.balance().await.expect("a").balance, 60);
    payer.balance().await.expect("payer");
}
