//! The full contract life over real HTTP with a real issuer: offer, signed contract, payment,
//! active, write, read, range read, audit verified independently, retrieval token used once then
//! refused, expiry deletes the data and frees the space.

mod util;

use clients::agent::{pay, verify_audit, AgentClient};
use protocol::merkle::MerkleTree;
use util::{eventually, stored_files, World, PRICES};

const CAPACITY: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_from_offer_to_expiry() {
    for (backend, database) in util::backends("life") {
        eprintln!("backend: {backend}");
        a_contract_from_offer_to_expiry_on(database.url()).await;
    }
}

async fn a_contract_from_offer_to_expiry_on(database: Option<String>) {
    let world = World::start(CAPACITY, 1, database);
    let (client, wallet, buyer) = world.buyer(1_000_000).await;

    // Offer: signed by the agent, with our prices and all space free.
    let (_, offer) = client.offer().await.expect("offer");
    assert_eq!(offer.free_bytes, CAPACITY);
    assert_eq!(offer.currencies[0].write_per_kib, PRICES.write_per_kib);
    assert_eq!(offer.endpoint, world.agent.url);

    // A contract for 256 KiB over 4 s at the offer's prices; the agent countersigns.
    let terms = AgentClient::terms_from_offer(
        &offer,
        buyer.entity(),
        &world.issuer.entity,
        256 * 1024,
        4,
        vec![],
    )
    .expect("terms");
    assert_eq!(
        terms.contract_price, PRICES.contract_min,
        "tiny contracts cost contract_min"
    );
    let signed = client.propose(&terms).await.expect("contract accepted");
    assert_eq!(signed.value.status, "pending_payment");
    assert_eq!(signed.value.terms().expect("terms"), terms);
    let (_, offer) = client.offer().await.expect("offer");
    assert_eq!(
        offer.free_bytes,
        CAPACITY - 256 * 1024,
        "the block is reserved"
    );

    // Unpaid: writes need payment.
    let err = client
        .put(&terms.id, "a.bin", vec![1; 10])
        .await
        .expect_err("unpaid");
    assert_eq!(err.code(), Some("payment_required"), "{err}");

    // Pay the price plus prepaid credit through the real issuer; the watcher activates it.
    pay(&wallet, client.signed().base_url(), &terms, 10_000)
        .await
        .expect("pay");
    eventually(5_000, "the contract to turn active", || async {
        client
            .contract(&terms.id)
            .await
            .map(|v| v.status == "active")
            .unwrap_or(false)
    })
    .await;
    assert_eq!(
        client.contract(&terms.id).await.expect("view").credit,
        10_000
    );

    // Write: answers size, SHA-256 and the Merkle root, all matching our own computation.
    let data: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let info = client
        .put(&terms.id, "a.bin", data.clone())
        .await
        .expect("put");
    let tree = MerkleTree::from_bytes(&data);
    assert_eq!(
        (info.size, info.sha256.as_str(), info.merkle_root.as_str()),
        (
            40_000,
            protocol::sha256_hex(&data).as_str(),
            tree.root_hex().as_str()
        )
    );
    let write_charge = PRICES.write_per_kib * 40_000u64.div_ceil(1024);

    // Reads: whole and ranged, each charged per KiB.
    assert_eq!(
        client
            .get(&terms.id, "a.bin", None)
            .await
            .expect("get")
            .as_ref(),
        &data[..]
    );
    assert_eq!(
        client
            .get(&terms.id, "a.bin", Some((100, 2147)))
            .await
            .expect("range")
            .as_ref(),
        &data[100..2148]
    );
    let read_charge = PRICES.read_per_kib * (40_000u64.div_ceil(1024) + 2);
    let view = client.contract(&terms.id).await.expect("view");
    assert_eq!(view.used_bytes, 40_000);
    assert_eq!(
        view.credit,
        10_000 - (write_charge + read_charge) as i64,
        "credit drawn per KiB"
    );
    assert_eq!(view.objects.len(), 1);

    // Audit: the agent's answer checks out against the root we computed ourselves.
    for leaf in [0, 1, 2] {
        let answer = client.audit(&terms.id, "a.bin", leaf).await.expect("audit");
        assert!(verify_audit(&answer, &tree.root_hex(), leaf), "leaf {leaf}");
        assert!(
            !verify_audit(&answer, &tree.root_hex(), (leaf + 1) % 3),
            "a proof is bound to its leaf"
        );
    }
    let err = client
        .audit(&terms.id, "a.bin", 3)
        .await
        .expect_err("no leaf 3");
    assert_eq!(err.code(), Some("invalid_json"));

    // Retrieval instructions: a third party reads once without any key, then is refused.
    let r = client
        .retrieval(&terms.id, "a.bin", 1, 60)
        .await
        .expect("retrieval");
    let third_party = reqwest::Client::new();
    let got = third_party
        .get(&r.url)
        .header("range", "bytes=0-99")
        .send()
        .await
        .expect("fetch");
    assert_eq!(got.status().as_u16(), 206);
    assert_eq!(got.headers()["content-range"], "bytes 0-99/40000");
    assert_eq!(got.bytes().await.expect("bytes").as_ref(), &data[..100]);
    let again = third_party.get(&r.url).send().await.expect("fetch");
    assert_eq!(
        again.status().as_u16(),
        404,
        "the token was good for one use"
    );

    // Several tokens in one command, in order; an unknown object refuses them all.
    let many = client
        .retrievals(&terms.id, &["a.bin".to_owned(), "a.bin".to_owned()], 1, 60)
        .await
        .expect("retrievals");
    assert_eq!(many.len(), 2);
    assert_ne!(many[0].token, many[1].token);
    for r in &many {
        let got = third_party.get(&r.url).send().await.expect("fetch");
        assert_eq!(got.status().as_u16(), 200);
        assert_eq!(got.bytes().await.expect("bytes").as_ref(), &data[..]);
    }
    let err = client
        .retrievals(&terms.id, &["a.bin".to_owned(), "nope".to_owned()], 1, 60)
        .await
        .expect_err("unknown object");
    assert_eq!(err.code(), Some("unknown_object"));
    let err = client
        .retrievals(&terms.id, &[], 1, 60)
        .await
        .expect_err("no objects");
    assert_eq!(err.code(), Some("invalid_name"));

    // The dashboard and status show the contract and the income.
    let summary = world.agent.agent.summary().await.expect("summary");
    assert_eq!(summary.contracts_active, 1);
    assert_eq!(summary.earnings[0].income, PRICES.contract_min + 10_000);
    assert_eq!(summary.audits_answered, 3);

    // Expiry: after end + grace the data is deleted and the space returns to the offer.
    assert_eq!(stored_files(&world.objects_dir()).len(), 1);
    eventually(10_000, "the contract to end and be reaped", || async {
        client
            .offer()
            .await
            .map(|(_, o)| o.free_bytes == CAPACITY)
            .unwrap_or(false)
    })
    .await;
    let view = client.contract(&terms.id).await.expect("view");
    assert_eq!(
        (view.status.as_str(), view.used_bytes, view.objects.len()),
        ("ended", 0, 0)
    );
    assert!(
        stored_files(&world.objects_dir()).is_empty(),
        "objects deleted from disk"
    );
    let err = client
        .get(&terms.id, "a.bin", None)
        .await
        .expect_err("gone");
    assert_eq!(err.code(), Some("contract_not_active"));
}
