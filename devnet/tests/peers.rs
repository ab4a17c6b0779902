//! `devnet up --peers N --topology T` (issue 18): the overlay's peers join the devnet, linked
//! as the topology says, funded, sharing their directories; the wallet buys a document from
//! the far side of the ring through the `peer` CLI; the same network comes back on `up`.

use std::process::Command;

use devnet::{Devnet, DevnetFile, Options, Topology};

#[test]
fn a_devnet_with_a_ring_of_peers_sells_a_shared_document() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    // A document in peer 3's share before it starts (shares are read at start).
    let share = dir.join("peers").join("peer-3").join("share");
    std::fs::create_dir_all(&share).expect("share");
    let bytes: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(share.join("film.bin"), &bytes).expect("document");
    let doc = protocol::sha256_hex(&bytes);

    let mut opts = Options::new(&dir).expect("options");
    opts.agents = 1;
    opts.peers = 6;
    opts.topology = "ring".parse::<Topology>().expect("topology");
    let net = Devnet::up(&opts).expect("devnet up");
    let file = DevnetFile::load(&dir).expect("devnet.json");
    assert_eq!(file.peers.len(), 6);
    assert_eq!(file.topology.as_deref(), Some("ring"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let status = |url: &str| -> serde_json::Value {
        rt.block_on(async {
            reqwest::get(format!("{url}/v1/status"))
                .await
                .expect("status")
                .json()
                .await
                .expect("status json")
        })
    };
    // Each peer of the ring learns its two neighbours.
    for p in &file.peers {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let s = status(&p.url);
            if s["neighbors"].as_array().map_or(0, Vec::len) == 2 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "neighbours of {}: {s:#}",
                p.url
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let out = tmp.path().join("got");
    let run = Command::new(node::testing::bin_dir().join("peer"))
        .args(["get", "--key"])
        .arg(&file.wallet.key)
        .args([
            "--via",
            &file.peers[0].url,
            "--document",
            &doc,
            "--max-price",
            "100",
            "--json",
            "--out",
        ])
        .arg(&out)
        .output()
        .expect("run peer get");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(std::fs::read(&out).expect("out"), bytes);
    let got: serde_json::Value = serde_json::from_slice(&run.stdout).expect("json");
    assert_eq!(got["served_by"], file.peers[3].entity.as_str());
    // Three hops either way round the ring: the default price (10) plus the commissions
    // (2 each) of peer 0 and the two peers after it.
    assert_eq!(got["price"], 16, "{got}");
    // The peers were funded by the mint: the wallet has no credit at them but what it paid.
    let s0 = status(&file.peers[0].url);
    let wallet_credit: u64 = s0["paid_ahead"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["buyer"] == file.wallet.entity.as_str())
        .map(|c| c["balance"].as_u64().unwrap_or(0))
        .sum();
    assert!(wallet_credit < 100, "the wallet's credit at peer 0: {s0:#}");

    // Brought back, the same peers at the same URLs.
    drop(net);
    let mut again = Options::new(&dir).expect("options");
    again.agents = 1;
    again.peers = 6;
    again.topology = "ring".parse::<Topology>().expect("topology");
    let _net = Devnet::up(&again).expect("devnet up again");
    let file2 = DevnetFile::load(&dir).expect("devnet.json");
    let urls = |f: &DevnetFile| {
        f.peers
            .iter()
            .map(|p| (p.url.clone(), p.entity.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(urls(&file2), urls(&file));
}
