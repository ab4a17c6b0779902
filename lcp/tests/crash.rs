//! kill -9 of the issuer process during a burst of transfers loses no answered transfer.
//! Spawns the real binary, on SQLite and (with TEST_DATABASE_URL) PostgreSQL.

mod util;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clients::issuer::IssuerClient;
use node::client::{http_client, ClientOptions, CounterStore};
use protocol::KeyPair;
use util::{backends, spawn_issuer};

const WALLETS: usize = 16;
/// How long the burst runs before the kill.
const BURST_MS: u64 = 700;
/// Bound on every wait for the restarted issuer.
const WAIT_MS_MAX: u64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_loses_no_answered_transfer() {
    for (backend, database) in backends("crash") {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("issuer");
        let (mut child, url) = spawn_issuer(&data, database.url().as_deref(), &[]);
        let http = http_client(&ClientOptions::default()).expect("http");
        let mint_key = data.join("identity.key");
        let mint = IssuerClient::new(
            http.clone(),
            &url,
            Arc::new(node::keyfile::load(&mint_key).expect("key")),
            Some(CounterStore::beside_key(&mint_key)),
        );
        let sink = Arc::new(KeyPair::generate().expect("key"));
        let mut wallets = Vec::new();
        let mut keys = Vec::new();
        for _ in 0..WALLETS {
            let key = Arc::new(KeyPair::generate().expect("key"));
            mint.transfer(key.entity(), 1_000_000, None)
                .await
                .expect("fund");
            wallets.push(IssuerClient::new(http.clone(), &url, key.clone(), None));
            keys.push(key);
        }

        // (wallet index, counter, seq, amount) of every transfer the issuer answered.
        let answered = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, w) in wallets.iter().cloned().enumerate() {
            let answered = answered.clone();
            let to = sink.entity().clone();
            tasks.push(tokio::spawn(async move {
                for counter in 1..=100_000u64 {
                    let amount = 1 + (counter % 7);
                    match w.transfer_with_counter(counter, &to, amount, None).await {
                        Ok(a) => answered.lock().expect("lock").push((
                            i,
                            counter,
                            a.value.seq,
                            amount,
                            a.value,
                        )),
                        Err(_) => break, // the issuer is gone
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(BURST_MS)).await;
        child.0.kill().expect("kill -9"); // std's kill sends SIGKILL
        child.0.wait().expect("reaped");
        for t in tasks {
            tokio::time::timeout(Duration::from_millis(WAIT_MS_MAX), t)
                .await
                .expect("burst ends")
                .expect("task");
        }
        let answered = answered.lock().expect("lock").clone();
        assert!(
            answered.len() > 20,
            "{backend}: the burst got going ({} answered)",
            answered.len()
        );

        // Restart on the same data and database.
        let (_child, url) = spawn_issuer(&data, database.url().as_deref(), &[]);
        let sink_client = IssuerClient::new(http.clone(), &url, sink.clone(), None);
        let mut seen = std::collections::HashMap::new();
        let mut after = 0;
        loop {
            let page = sink_client
                .deposits(after, 0, None)
                .await
                .expect("deposits");
            if page.deposits.is_empty() {
                break;
            }
            for d in &page.deposits {
                seen.insert(d.seq, (d.from.clone(), d.amount));
            }
            after = page.next;
        }
        for (i, _, seq, amount, _) in &answered {
            let (from, got) = seen
                .get(seq)
                .unwrap_or_else(|| panic!("{backend}: answered transfer seq {seq} lost"));
            assert_eq!(
                from,
                wallets[*i].signed().key().entity().as_str(),
                "{backend}: seq {seq}"
            );
            assert_eq!(got, amount, "{backend}: seq {seq}");
        }
        // Repeating answered commands after the restart replays the same answers, executing nothing.
        let balance_before = sink_client.balance().await.expect("balance").balance;
        for (i, counter, _, amount, receipt) in answered.iter().rev().take(5) {
            let w = IssuerClient::new(http.clone(), &url, keys[*i].clone(), None);
            let again = w
                .transfer_with_counter(*counter, sink.entity(), *amount, None)
                .await
                .expect("replay");
            assert_eq!(&again.value, receipt, "{backend}");
        }
        assert_eq!(
            sink_client.balance().await.expect("balance").balance,
            balance_before,
            "{backend}"
        );
        eprintln!(
            "{backend}: {} transfers answered before kill -9, all present after restart",
            answered.len()
        );
    }
}
