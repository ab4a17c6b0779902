//! Ledger behaviour over real HTTP, on SQLite and (with TEST_DATABASE_URL) PostgreSQL.

mod util;

use std::time::{Duration, Instant};

use lcp::config::IssuerConfig;
use util::{backends, TestIssuer};

/// Bound on every wait in these tests.
const WAIT_MS_MAX: u64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transfers_never_overdraw() {
    for (backend, database) in backends("overdraw") {
        let issuer = TestIssuer::start(
            database.url(),
            IssuerConfig {
                fee_flat: 1,
                ..IssuerConfig::default()
            },
        );
        // 60 concurrent transfers of 10 (+1 fee) from an account holding 300: exactly 27 fit.
        let payer = issuer.funded_wallet("payer", 300).await;
        let (payee, _) = issuer.wallet("payee");
        let to = payee.signed().key().entity().clone();
        let mut tasks = Vec::new();
        for i in 0..60u64 {
            let payer = payer.clone();
            let to = to.clone();
            tasks.push(tokio::spawn(async move {
                payer.transfer_with_counter(1_000 + i, &to, 10, None).await
            }));
        }
        let (mut ok, mut refused) = (0, 0);
        for t in tasks {
            match tokio::time::timeout(Duration::from_millis(WAIT_MS_MAX), t)
                .await
                .expect("in time")
                .expect("task")
            {
                Ok(_) => ok += 1,
                Err(e) => {
                    assert_eq!(e.code(), Some("insufficient_funds"), "{backend}: {e}");
                    refused += 1;
                }
            }
        }
        assert_eq!((ok, refused), (27, 33), "{backend}");
        assert_eq!(
            payer.balance().await.expect("balance").balance,
            300 - 27 * 11,
            "{backend}"
        );
        assert_eq!(
            payee.balance().await.expect("balance").balance,
            270,
            "{backend}"
        );
        issuer.assert_sum_zero().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_commands_execute_once() {
    for (backend, database) in backends("idempotent") {
        let issuer = TestIssuer::start(database.url(), IssuerConfig::default());
        let payer = issuer.funded_wallet("payer", 100).await;
        let (payee, _) = issuer.wallet("payee");
        let to = payee.signed().key().entity().clone();

        let first = payer
            .transfer_with_counter(77, &to, 10, Some("t1"))
            .await
            .expect("first");
        let again = payer
            .transfer_with_counter(77, &to, 10, Some("t1"))
            .await
            .expect("repeat");
        assert_eq!(
            first.value, again.value,
            "{backend}: the stored answer is replayed"
        );
        assert_eq!(
            first.receipt, again.receipt,
            "{backend}: byte-identical answer, identical receipt"
        );
        assert_eq!(
            payer.balance().await.expect("balance").balance,
            90,
            "{backend}: executed once"
        );

        let changed = payer
            .transfer_with_counter(77, &to, 11, Some("t1"))
            .await
            .expect_err("changed body");
        assert_eq!(changed.code(), Some("counter_reused"), "{backend}");
        assert!(matches!(
            changed,
            node::client::ClientError::Api { status: 409, .. }
        ));
        assert_eq!(
            payee.balance().await.expect("balance").balance,
            10,
            "{backend}"
        );

        // A failed command is not recorded: the same counter may succeed once funds exist.
        let poor = payer
            .transfer_with_counter(78, &to, 1_000, None)
            .await
            .expect_err("too much");
        assert_eq!(poor.code(), Some("insufficient_funds"));
        issuer.assert_sum_zero().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_wallet_never_reuses_a_counter() {
    let issuer = TestIssuer::start(None, IssuerConfig::default());
    let (payer, path) = issuer.wallet("payer");
    issuer
        .mint()
        .transfer(payer.signed().key().entity(), 100, None)
        .await
        .expect("fund");
    let (payee, _) = issuer.wallet("payee");
    let to = payee.signed().key().entity().clone();
    let options = node::client::ClientOptions::default();
    let mut counters = Vec::new();
    for _ in 0..3 {
        // A new client from the key file each time, as a restarted CLI would be.
        let wallet = clients::issuer::IssuerClient::from_key_file(issuer.url(), &path, &options)
            .expect("wallet");
        let answer = wallet.transfer(&to, 5, None).await.expect("transfer");
        counters.push(answer.counter);
    }
    assert!(
        counters.windows(2).all(|w| w[1] > w[0]),
        "counters increase across restarts: {counters:?}"
    );
    assert_eq!(
        payee.balance().await.expect("balance").balance,
        15,
        "all three executed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposits_long_poll_answers_promptly_and_never_loses_one() {
    for (backend, database) in backends("longpoll") {
        let issuer = TestIssuer::start(database.url(), IssuerConfig::default());
        let payer = issuer.funded_wallet("payer", 100).await;
        let (payee, _) = issuer.wallet("payee");
        let to = payee.signed().key().entity().clone();

        let waiting = {
            let payee = payee.clone();
            tokio::spawn(async move {
                let page = payee.deposits(0, 5_000, None).await;
                (page, Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let answered = payer.transfer(&to, 7, Some("order-1")).await.expect("pay");
        let sent_at = Instant::now();
        let (page, woke_at) = tokio::time::timeout(Duration::from_millis(WAIT_MS_MAX), waiting)
            .await
            .expect("in time")
            .expect("task");
        let page = page.expect("deposits");
        let delay = woke_at.saturating_duration_since(sent_at);
        assert!(
            delay < Duration::from_millis(100),
            "{backend}: long poll answered {delay:?} after the deposit"
        );
        assert_eq!(page.deposits.len(), 1);
        assert_eq!(page.deposits[0].seq, answered.value.seq);
        assert_eq!(page.deposits[0].amount, 7);
        assert_eq!(page.next, answered.value.seq);

        // A response lost on the way: the client asks again from the same cursor and gets it again.
        let again = payee.deposits(0, 0, None).await.expect("deposits");
        assert_eq!(again.deposits, page.deposits, "{backend}");
        // Paging on from `next` gives only newer deposits; the transaction filter narrows.
        payer.transfer(&to, 3, Some("order-2")).await.expect("pay");
        let newer = payee.deposits(page.next, 0, None).await.expect("deposits");
        assert_eq!(
            newer.deposits.iter().map(|d| d.amount).collect::<Vec<_>>(),
            vec![3]
        );
        let only = payee
            .deposits(0, 0, Some("order-1"))
            .await
            .expect("deposits");
        assert_eq!(only.deposits.len(), 1);
        assert_eq!(only.deposits[0].transaction_id.as_deref(), Some("order-1"));
        assert_eq!(only.balance, 10);
        // Nothing new: a bounded wait returns empty with the cursor unchanged.
        let t = Instant::now();
        let empty = payee
            .deposits(newer.next, 200, None)
            .await
            .expect("deposits");
        assert!(empty.deposits.is_empty() && empty.next == newer.next);
        assert!(
            t.elapsed() >= Duration::from_millis(190),
            "the poll was held"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fees_go_to_the_issuer_and_the_mint_is_capped() {
    for (backend, database) in backends("fees") {
        let config = IssuerConfig {
            fee_flat: 2,
            fee_bps: 100,
            supply_cap: 1_000,
            ..IssuerConfig::default()
        };
        let issuer = TestIssuer::start(database.url(), config);
        let payer = issuer.funded_wallet("payer", 600).await;
        let (payee, _) = issuer.wallet("payee");
        let to = payee.signed().key().entity().clone();
        let answer = payer.transfer(&to, 150, None).await.expect("pay");
        // fee = 2 + ceil(150 * 100 / 10000) = 2 + 2
        assert_eq!(answer.value.fee, 4, "{backend}");
        assert_eq!(answer.value.balance, 600 - 154);
        let mint_balance = issuer.mint().balance().await.expect("balance").balance;
        assert_eq!(
            mint_balance,
            -600 + 4,
            "{backend}: the fee shrinks the money supply"
        );
        // The mint may go down to -supply_cap and no further.
        let err = issuer
            .mint()
            .transfer(&to, 500, None)
            .await
            .expect_err("over the cap");
        assert_eq!(err.code(), Some("supply_cap_reached"));
        issuer
            .mint()
            .transfer(&to, 404, None)
            .await
            .expect("exactly to the cap");
        issuer.assert_sum_zero().await;
    }
}

/// DESIGN 14: a transfer may name the recipient's customer (`userid`) and, when a bank pays
/// for its customer, the payer (`from_name`); both show in the deposits, and `userid=`
/// narrows a page to one customer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_name_a_customer_and_deposits_show_and_filter_it() {
    for (backend, database) in backends("userid") {
        let issuer = TestIssuer::start(database.url(), IssuerConfig::default());
        let payer = issuer.funded_wallet("payer", 100).await;
        let (bank, _) = issuer.wallet("bank");
        let bank_id = bank.signed().key().entity().clone();
        let bob = clients::names::Payee {
            entity: bank_id.clone(),
            userid: Some("bob".into()),
            name: None,
        };
        let carol = clients::names::Payee {
            userid: Some("carol".into()),
            ..bob.clone()
        };
        payer
            .transfer_to(&bob, 7, Some("order-1"))
            .await
            .expect("pay bob");
        payer.transfer_to(&carol, 5, None).await.expect("pay carol");
        payer
            .transfer(&bank_id, 3, None)
            .await
            .expect("pay the bank itself");

        let all = bank.deposits(0, 0, None).await.expect("deposits");
        let userids: Vec<_> = all.deposits.iter().map(|d| d.userid.clone()).collect();
        assert_eq!(
            userids,
            vec![Some("bob".to_owned()), Some("carol".to_owned()), None],
            "{backend}"
        );
        assert_eq!(all.balance, 15, "{backend}");
        let only_bob: protocol::ledger::DepositsPage = bank
            .signed()
            .query("/lcp/v1/deposits?after=0&userid=bob", 0)
            .await
            .expect("bob's deposits");
        assert_eq!(only_bob.deposits.len(), 1, "{backend}");
        assert_eq!(only_bob.deposits[0].amount, 7);
        assert_eq!(
            only_bob.deposits[0].transaction_id.as_deref(),
            Some("order-1")
        );
        let nobody: protocol::ledger::DepositsPage = bank
            .signed()
            .query("/lcp/v1/deposits?after=0&userid=dave", 0)
            .await
            .expect("an empty page");
        assert!(nobody.deposits.is_empty(), "{backend}");

        // from_name, as a bank sends it for its customer (the issuer records the payer's claim).
        let body = serde_json::json!({
            "recipient": bank_id.as_str(), "amount": 2, "from_name": "alice@bank.example",
        });
        let counter = payer.next_counter().await.expect("counter");
        let _: node::client::CommandAnswer<protocol::ledger::TransferReceipt> = payer
            .signed()
            .command(
                "POST",
                "/lcp/v1/transfers",
                serde_json::to_vec(&body).expect("json"),
                counter,
            )
            .await
            .expect("pay with a name");
        let last = bank.deposits(all.next, 0, None).await.expect("deposits");
        assert_eq!(last.deposits.len(), 1, "{backend}");
        assert_eq!(
            last.deposits[0].from_name.as_deref(),
            Some("alice@bank.example")
        );
        assert_eq!(
            last.deposits[0].from,
            payer.signed().key().entity().as_str()
        );
        issuer.assert_sum_zero().await;
    }
}
