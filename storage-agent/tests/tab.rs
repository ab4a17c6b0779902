//! The running tab (seed 001): with `tab_limit`, a buyer may owe up to the limit across all its
//! contracts with the agent; past `tab_threshold` answers ask it to settle (`LCP-Amount-Due`);
//! past the limit reads and writes get 402; a payment settles.

mod util;

use clients::agent::AgentClient;
use util::{eventually, World, PRICES};

/// PUT through the raw client to see the settlement header.
async fn put_raw(client: &AgentClient, id: &str, name: &str, kib: usize) -> (u16, Option<String>) {
    let path = format!("/v1/contracts/{id}/objects/{name}");
    let resp = client
        .signed()
        .send(
            "PUT",
            &path,
            vec![1; kib * 1024],
            Some(node::now_ms() * 1000),
            &[],
            0,
        )
        .await
        .expect("send");
    let due = resp
        .headers()
        .get("lcp-amount-due")
        .map(|v| v.to_str().expect("ascii").to_owned());
    (resp.status().as_u16(), due)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_per_buyer_with_limit_and_threshold() {
    let world = World::start_full(1 << 20, 60, None, "file", (50, 30));
    let (client, wallet, buyer) = world.buyer(1_000_000).await;
    let (_, offer) = client.offer().await.expect("offer");
    let unpaid = AgentClient::terms_from_offer(
        &offer,
        buyer.entity(),
        &world.issuer.entity,
        1024,
        3600,
        vec![],
    )
    .expect("terms");
    client.propose(&unpaid).await.expect("contract");
    assert_eq!(
        client
            .put(&unpaid.id, "a", vec![1; 1024])
            .await
            .expect_err("unpaid")
            .code(),
        Some("payment_required"),
        "unpaid contracts run no tab"
    );

    // Paid at the price only: no prepaid credit, every charge goes on the tab.
    let one = world
        .active_contract(&client, &wallet, &buyer, 128 * 1024, 3600, 0)
        .await;
    let two = world
        .active_contract(&client, &wallet, &buyer, 128 * 1024, 3600, 0)
        .await;
    // 10 KiB at 2 per KiB = 20 owed: under the threshold, no settlement request.
    assert_eq!(put_raw(&client, &one.id, "a", 10).await, (200, None));
    // 10 more KiB on the other contract: the buyer owes 40 > 30, so the answer asks to settle.
    assert_eq!(
        put_raw(&client, &two.id, "b", 10).await,
        (200, Some("40".into()))
    );
    assert_eq!(client.contract(&two.id).await.expect("view").credit, -20);
    // 6 KiB more (12) would bring the buyer's debt to 52 > 50, whichever contract it is on.
    assert_eq!(
        client
            .put(&one.id, "c", vec![1; 6 * 1024])
            .await
            .expect_err("past the limit")
            .code(),
        Some("payment_required")
    );
    assert_eq!(
        client
            .put(&two.id, "c", vec![1; 6 * 1024])
            .await
            .expect_err("past the limit")
            .code(),
        Some("payment_required")
    );
    // A 10 KiB read (10) brings the debt exactly to the limit: allowed, with a settle request.
    let path = format!("/v1/contracts/{}/objects/a", one.id);
    let resp = client
        .signed()
        .send(
            "GET",
            &path,
            Vec::new(),
            Some(node::now_ms() * 1000),
            &[],
            0,
        )
        .await
        .expect("read");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("lcp-amount-due")
            .and_then(|v| v.to_str().ok()),
        Some("50")
    );
    // Now any charge is past the limit, writes and reads alike.
    assert_eq!(put_raw(&client, &two.id, "c", 1).await.0, 402);
    match client.get(&one.id, "a", Some((0, 1023))).await {
        Ok(b) => panic!("a read past the limit was served ({} bytes)", b.len()),
        Err(e) => assert_eq!(e.code(), Some("payment_required")),
    }
    // Settling: contract one owes 30 (20 written + 10 read); paying 30 + 100 to its id clears it.
    wallet
        .transfer(&one.agent, 30 + 100, Some(&one.id))
        .await
        .expect("settle");
    eventually(5_000, "the settlement", || async {
        client
            .contract(&one.id)
            .await
            .map(|v| v.credit == 100)
            .unwrap_or(false)
    })
    .await;
    // The other contract still owes 20: 5 KiB (10) on it keeps the tab at 30, not past the threshold.
    assert_eq!(put_raw(&client, &two.id, "d", 5).await, (200, None));
    client
        .put(&one.id, "e", vec![1; 10 * 1024])
        .await
        .expect("write from credit after settling");
    assert_eq!(
        client.contract(&one.id).await.expect("view").credit,
        100 - 10 * PRICES.write_per_kib as i64
    );
}
