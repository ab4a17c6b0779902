//! Upkeep (in process): expired unaccepted bids, old tokens and stored answers are dropped,
//! and the totals the status shows stay as they were.

mod common;

use clients::peer::PeerClient;
use common::*;
use protocol::overlay::Solicit;

#[test]
fn upkeep_drops_what_is_no_longer_needed_and_keeps_the_totals() {
    let net = Net::new();
    let share = net.tmp.path().join("share");
    let (doc, _) = document(&share, 6, 2_000);
    let running = overlay::serve::start(overlay::serve::ServeOptions {
        data_dir: net.tmp.path().join("peer"),
        listen: "127.0.0.1:0".into(),
        database: None,
        neighbors: vec![],
        share: Some(share),
        issuers: vec![net.issuer.url.clone()],
        peer: overlay::peer::PeerOptions::default(),
        tls: None,
    })
    .expect("peer");
    let peer = running.peer.clone();
    let (path, key) = net.wallet("buyer", 1_000);
    let wallet = clients::issuer::IssuerClient::new(
        net.http.clone(),
        &net.issuer.url,
        key.clone(),
        Some(node::client::CounterStore::beside_key(&path)),
    );
    let me = protocol::EntityId::parse(&peer.me()).expect("id");
    net.rt
        .block_on(wallet.transfer(&me, 100, None))
        .expect("pay ahead");
    let client = PeerClient::new(net.http.clone(), &running.url, key);
    let counters = node::client::ClockCounter::default();
    let bids = net.rt.block_on(async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let s = Solicit {
                document: doc.clone(),
                max_price: 50,
                currency: net.currency(),
                hops_left: 0,
                respond_by: node::now_ms() + 5_000,
                solicitation: Some("upkeep-1".into()),
            };
            match client.solicit(&s, counters.next()).await {
                Ok(a) => break a.value.bids,
                Err(e)
                    if clients::pay::payment_required(&e)
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("solicit: {e}"),
            }
        }
    });
    assert_eq!(bids.len(), 1);
    let before = net.rt.block_on(peer.status()).expect("status");
    assert_eq!(before.fees_earned, 1);
    // Now: nothing is old enough.
    let now = net.rt.block_on(peer.prune(node::now_ms())).expect("prune");
    assert_eq!(now, overlay::peer::upkeep::Pruned::default());
    // Two days on: the unaccepted bid and the stored answer go; the totals stay.
    let later = node::now_ms() + 2 * 86_400_000;
    let pruned = net.rt.block_on(peer.prune(later)).expect("prune");
    assert_eq!((pruned.bids, pruned.answers), (1, 1), "{pruned:?}");
    let after = net.rt.block_on(peer.status()).expect("status");
    assert_eq!(after.fees_earned, before.fees_earned);
    assert_eq!(after.solicitations_seen, before.solicitations_seen);
    // The pruned bid can no longer be accepted.
    let e = net
        .rt
        .block_on(client.accept(&bids[0].bid, peer.key.entity().as_str(), counters.next()))
        .expect_err("gone");
    assert_eq!(e.code(), Some("unknown_bid"));
}
