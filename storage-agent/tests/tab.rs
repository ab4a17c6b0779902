//! The running tab (seed 001): with `tab_limit`, a paid contract may run its credit below zero
//! down to the limit; past it, reads and writes get 402 with the amount due, and a payment
//! settles the debt.

mod util;

use storage_agent::client::{pay, AgentClient};
use util::{eventually, World, PRICES};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_extends_credit_up_to_its_limit() {
    let world = World::start_full(1 << 20, 60, None, "file", 50);
    let (client, wallet, buyer) = world.buyer(1_000_000).await;
    let (_, offer) = client.offer().await.expect("offer");
    let terms = AgentClient::terms_from_offer(
        &offer,
        buyer.entity(),
        &world.issuer.entity,
        256 * 1024,
        3600,
        vec![],
    )
    .expect("terms");
    client.propose(&terms).await.expect("contract");
    // Unpaid contracts get no tab.
    assert_eq!(
        client
            .put(&terms.id, "a", vec![1; 1024])
            .await
            .expect_err("unpaid")
            .code(),
        Some("payment_required")
    );
    pay(&wallet, &terms, 0)
        .await
        .expect("pay the price only: no credit");
    eventually(5_000, "active", || async {
        client
            .contract(&terms.id)
            .await
            .map(|v| v.status == "active")
            .unwrap_or(false)
    })
    .await;

    // 20 KiB at 2 per KiB = 40: on the tab (credit -40, limit 50).
    client
        .put(&terms.id, "a", vec![1; 20 * 1024])
        .await
        .expect("write on the tab");
    assert_eq!(client.contract(&terms.id).await.expect("view").credit, -40);
    // 10 more KiB would bring the debt to 60 > 50.
    let err = client
        .put(&terms.id, "b", vec![1; 10 * 1024])
        .await
        .expect_err("past the limit");
    assert_eq!(err.code(), Some("payment_required"));
    let err = client
        .get(&terms.id, "a", None)
        .await
        .expect_err("a 20 KiB read costs 20: past the limit");
    assert_eq!(err.code(), Some("payment_required"));
    assert_eq!(
        client
            .get(&terms.id, "a", Some((0, 1023)))
            .await
            .expect("1 KiB read fits")
            .len(),
        1024
    );
    assert_eq!(client.contract(&terms.id).await.expect("view").credit, -41);

    // Settling: a payment to the contract clears the debt and restores credit.
    wallet
        .transfer(&terms.agent, 141, Some(&terms.id))
        .await
        .expect("settle");
    eventually(5_000, "the settlement", || async {
        client
            .contract(&terms.id)
            .await
            .map(|v| v.credit == 100)
            .unwrap_or(false)
    })
    .await;
    client
        .put(&terms.id, "b", vec![1; 10 * 1024])
        .await
        .expect("write after settling");
    assert_eq!(
        client.contract(&terms.id).await.expect("view").credit,
        100 - 10 * PRICES.write_per_kib as i64
    );
}
