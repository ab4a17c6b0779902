//! kill -9 of the agent during a burst of writes: every answered write is readable after
//! restart, and the used bytes equal the sum of the stored objects (on disk too).

mod util;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clients::agent::AgentClient;
use storage_agent::config::{AgentConfig, CurrencyConfig};
use util::{eventually, spawn_agent, stored_files, World, PRICES};

const WRITERS: usize = 8;
const BURST_MS: u64 = 800;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_writes_loses_no_answered_write() {
    for (backend, database) in util::backends("agentcrash") {
        // The issuer and a funded buyer come from the in-process world; the agent under test is
        // a separate process on its own data directory.
        let world = World::start(1 << 20, 60, None);
        let (_, wallet, buyer) = world.buyer(100_000_000).await;
        let data = world.dir.path().join("crashing-agent");
        std::fs::create_dir_all(&data).expect("dir");
        node::keyfile::generate(&data.join("identity.key")).expect("key");
        AgentConfig {
            capacity_bytes: 64 << 20,
            block_bytes_max: 64 << 20,
            currencies: vec![CurrencyConfig {
                issuer_url: world.issuer.url.clone(),
                issuer: world.issuer.entity.to_string(),
                storage_per_gib_day: PRICES.storage_per_gib_day,
                write_per_kib: PRICES.write_per_kib,
                read_per_kib: PRICES.read_per_kib,
                contract_min: PRICES.contract_min,
                bank: None,
            }],
            ..AgentConfig::default()
        }
        .save(&data)
        .expect("config");
        let (mut child, url) = spawn_agent(&data, database.url().as_deref());
        let client = Arc::new(AgentClient::new(world.http.clone(), &url, buyer.clone()));
        let terms = world
            .active_contract(&client, &wallet, &buyer, 32 << 20, 3600, 10_000_000)
            .await;

        let answered: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        // The write each writer had in flight at the kill: it may or may not have committed.
        let in_flight: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let (client, answered, in_flight, id) = (
                client.clone(),
                answered.clone(),
                in_flight.clone(),
                terms.id.clone(),
            );
            tasks.push(tokio::spawn(async move {
                for n in 0..10_000u32 {
                    let name = format!("o-{w}-{}", n % 10); // rewrites too, not only new names
                    let bytes: Vec<u8> = (0..(1 + (n * 7919 + w as u32 * 104_729) % 20_000))
                        .map(|i| (i ^ n) as u8)
                        .collect();
                    let sha = protocol::sha256_hex(&bytes);
                    match client.put(&id, &name, bytes).await {
                        Ok(info) => answered.lock().expect("lock").push((name, info.sha256)),
                        Err(_) => {
                            in_flight.lock().expect("lock").push((name, sha));
                            break;
                        }
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(BURST_MS)).await;
        child.0.kill().expect("kill -9");
        child.0.wait().expect("reaped");
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("writers stop")
                .expect("task");
        }
        let answered = answered.lock().expect("lock").clone();
        assert!(
            answered.len() > 10,
            "{backend}: the burst got going ({} writes)",
            answered.len()
        );

        let (_child, url) = spawn_agent(&data, database.url().as_deref());
        let client = AgentClient::new(world.http.clone(), &url, buyer.clone());
        // The last answered write of each name is what must be there.
        let mut latest = std::collections::HashMap::new();
        for (name, sha) in &answered {
            latest.insert(name.clone(), sha.clone());
        }
        // An unanswered write may or may not have committed: a name may instead hold the bytes
        // its writer had in flight at the kill.
        let in_flight = in_flight.lock().expect("lock").clone();
        for (name, sha) in &latest {
            let bytes = client
                .get(&terms.id, name, None)
                .await
                .unwrap_or_else(|e| panic!("{backend}: answered write {name} unreadable: {e}"));
            let got = protocol::sha256_hex(&bytes);
            let unanswered_rewrite = in_flight.iter().any(|(n, s)| n == name && s == &got);
            assert!(
                &got == sha || unanswered_rewrite,
                "{backend}: {name} holds neither the last answered bytes nor the write in flight at the kill"
            );
        }
        let view = client.contract(&terms.id).await.expect("view");
        let sum: u64 = view.objects.iter().map(|o| o.size).sum();
        assert_eq!(
            view.used_bytes, sum,
            "{backend}: used bytes equal the sum of stored objects"
        );
        // The start-up sweep removed bytes that no row names, so disk matches the rows too.
        eventually(5_000, "the sweep", || async {
            stored_files(&data.join("objects")).len() == view.objects.len()
        })
        .await;
        let on_disk: u64 = stored_files(&data.join("objects"))
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        assert_eq!(
            on_disk, sum,
            "{backend}: bytes on disk equal the accounted bytes"
        );
        eprintln!(
            "{backend}: {} writes answered before kill -9 ({} names), all intact",
            answered.len(),
            latest.len()
        );
    }
}
