//! Solicitations per second one `peer` process answers (issue 18's benchmark; run by
//! scripts/bench-overlay.sh in release, ignored otherwise). Workload: BUYERS stranger buyers
//! at once, each paid ahead, each sending SOLICITATIONS signed solicitations (fee 1, drawn
//! from its paid-ahead credit) for a document the peer holds, so every one is recorded,
//! charged and answered with a local bid; SQLite; the load generator on the same machine.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clients::peer::PeerClient;
use common::*;
use protocol::overlay::Solicit;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "benchmark: scripts/bench-overlay.sh"]
fn solicitations_per_second() {
    let buyers = env("OVERLAY_BENCH_BUYERS", 16);
    let each = env("OVERLAY_BENCH_SOLICITATIONS", 500);
    let net = Net::new();
    let share = net.tmp.path().join("share");
    let (doc, _) = document(&share, 9, 10_000);
    let peer = net.peer(
        "bench",
        free_port(),
        &["--share".to_string(), share.display().to_string()],
    );
    let peer_id = protocol::EntityId::parse(&peer.entity).expect("id");
    let currency = net.currency();
    let mut clients = Vec::new();
    for b in 0..buyers {
        let (path, key) = net.wallet(&format!("buyer{b}"), 1_000_000);
        let wallet = clients::issuer::IssuerClient::new(
            net.http.clone(),
            &net.issuer.url,
            key.clone(),
            Some(node::client::CounterStore::beside_key(&path)),
        );
        net.rt
            .block_on(wallet.transfer(&peer_id, (each as u64) * 2, None))
            .expect("pay ahead");
        clients.push(PeerClient::new(net.http.clone(), &peer.url, key));
    }
    // Every buyer's payment seen before the clock starts.
    net.status_until(&peer, 30_000, "payments ahead seen", |s| {
        s["paid_ahead"].as_array().map_or(0, Vec::len) == buyers
    });
    let counters = Arc::new(node::client::ClockCounter::default());
    let started = Instant::now();
    let latencies: Vec<Vec<Duration>> = net.rt.block_on(async {
        let tasks = clients.into_iter().enumerate().map(|(b, c)| {
            let (doc, currency, counters) = (doc.clone(), currency.clone(), counters.clone());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(each);
                for i in 0..each {
                    let s = Solicit {
                        document: doc.clone(),
                        max_price: 100,
                        currency: currency.clone(),
                        hops_left: 0,
                        respond_by: node::now_ms() + 10_000,
                        solicitation: Some(format!("b{b}-{i}")),
                    };
                    let t = Instant::now();
                    let answer = c.solicit(&s, counters.next()).await.expect("solicit");
                    assert_eq!(answer.value.bids.len(), 1);
                    lat.push(t.elapsed());
                }
                lat
            })
        });
        futures_util::future::join_all(tasks)
            .await
            .into_iter()
            .map(|r| r.expect("task"))
            .collect()
    });
    let elapsed = started.elapsed();
    let mut all: Vec<Duration> = latencies.into_iter().flatten().collect();
    all.sort();
    let total = all.len();
    let pct = |p: f64| all[((total as f64 * p) as usize).min(total - 1)].as_secs_f64() * 1000.0;
    let s = net.status(&peer);
    assert_eq!(
        n(&s, "solicitations_seen"),
        total as u64,
        "every one recorded once"
    );
    assert_eq!(n(&s, "fees_earned"), total as u64, "and charged once");
    println!(
        "{}",
        serde_json::json!({
            "solicitations": total,
            "buyers": buyers,
            "seconds": elapsed.as_secs_f64(),
            "per_second": total as f64 / elapsed.as_secs_f64(),
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
        })
    );
}
