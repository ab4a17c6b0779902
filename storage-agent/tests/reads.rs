//! Reads under concurrency: local reads take no contract lock, so these check what the lock
//! used to guarantee. Concurrent reads never draw more than the credit; a read racing a PUT
//! that replaces the object gets the old or the new bytes, whole; every served read is charged
//! exactly once; audits past one free a minute are charged as reads of their leaf.

mod util;

use futures_util::future::join_all;
use util::{backends, World, PRICES};

const KIB: u64 = 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_charge_exactly_and_never_overdraw() {
    for (name, db) in backends("agent_reads") {
        let world = World::start(4 << 20, 60, db.url());
        let (client, wallet, buyer) = world.buyer(10_000_000).await;
        // Credit for two 8 KiB writes and 10 reads of 8 KiB.
        let credit = 2 * 8 * PRICES.write_per_kib + 10 * 8 * PRICES.read_per_kib;
        let c = world
            .active_contract(&client, &wallet, &buyer, 1 << 20, 3600, credit)
            .await;
        let old = vec![1u8; (8 * KIB) as usize];
        let new = vec![2u8; (8 * KIB) as usize];
        client.put(&c.id, "obj", old.clone()).await.expect("put");
        let token = client
            .retrieval(&c.id, "obj", 100, 600)
            .await
            .expect("token");

        // 24 reads and a replacing PUT at once. After the first PUT, 96 of credit is left:
        // the PUT (16) and 10 reads (8 each), or, when reads drain it first, 12 reads and a
        // refused PUT.
        let reads = (0..24).map(|_| {
            let (http, url) = (world.http.clone(), token.url.clone());
            async move {
                let resp = http.get(&url).send().await.expect("send");
                let status = resp.status().as_u16();
                (status, resp.bytes().await.expect("body").to_vec())
            }
        });
        let put = client.put(&c.id, "obj", new.clone());
        let (results, put_result) = tokio::join!(join_all(reads), put);
        let expected_reads = match put_result {
            Ok(_) => 10,
            Err(e) => {
                assert_eq!(e.code(), Some("payment_required"), "[{name}] {e}");
                12
            }
        };
        let served: Vec<&Vec<u8>> = results
            .iter()
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b)
            .collect();
        for (status, body) in &results {
            assert!(
                *status == 200 || *status == 402,
                "[{name}] read answered {status}: {}",
                String::from_utf8_lossy(body)
            );
        }
        for body in &served {
            assert!(
                **body == old || **body == new,
                "[{name}] a read got neither version whole"
            );
        }
        assert_eq!(served.len(), expected_reads, "[{name}] reads served");
        let view = client.contract(&c.id).await.expect("view");
        assert_eq!(
            view.credit, 0,
            "[{name}] every served read charged once, no overdraw"
        );
        // The token lost one use per served read only.
        let more = world.http.get(&token.url).send().await.expect("send");
        assert_eq!(more.status().as_u16(), 402, "[{name}] no credit left");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audits_past_the_free_one_are_charged_as_reads_of_their_leaf() {
    let world = World::start(4 << 20, 60, None);
    let (client, wallet, buyer) = world.buyer(10_000_000).await;
    let c = world
        .active_contract(&client, &wallet, &buyer, 1 << 20, 3600, 1_000)
        .await;
    // 20 KiB: one full 16 KiB leaf and one 4 KiB leaf.
    client
        .put(&c.id, "obj", vec![7u8; 20 * 1024])
        .await
        .expect("put");
    let before = client.contract(&c.id).await.expect("view").credit;
    // The first audit in a minute is free.
    client.audit(&c.id, "obj", 0).await.expect("free audit");
    assert_eq!(client.contract(&c.id).await.expect("view").credit, before);
    client.audit(&c.id, "obj", 0).await.expect("audit leaf 0");
    let after_full = client.contract(&c.id).await.expect("view").credit;
    assert_eq!(before - after_full, (16 * PRICES.read_per_kib) as i64);
    client.audit(&c.id, "obj", 1).await.expect("audit leaf 1");
    let after_tail = client.contract(&c.id).await.expect("view").credit;
    assert_eq!(after_full - after_tail, (4 * PRICES.read_per_kib) as i64);
}
