//! Test harness: a real issuer and a real agent per test, in one temporary directory, over
//! loopback HTTP; both stopped when dropped.
#![allow(dead_code)]

use std::sync::Arc;

use clients::agent::AgentClient;
use clients::issuer::IssuerClient;
use node::client::{http_client, ClientOptions, CounterStore};
use protocol::KeyPair;
use storage_agent::config::{AgentConfig, CurrencyConfig};

#[allow(unused_imports)]
pub use db::testing::backends;

pub struct World {
    pub dir: tempfile::TempDir,
    pub issuer: lcp::server::RunningIssuer,
    pub agent: storage_agent::serve::RunningAgent,
    pub http: reqwest::Client,
    pub mint: IssuerClient,
}

pub struct Prices {
    pub storage_per_gib_day: u64,
    pub write_per_kib: u64,
    pub read_per_kib: u64,
    pub contract_min: u64,
}

pub const PRICES: Prices = Prices {
    storage_per_gib_day: 1_000_000,
    write_per_kib: 2,
    read_per_kib: 1,
    contract_min: 100,
};

impl World {
    pub fn start(capacity_bytes: u64, grace_s: u64, database: Option<String>) -> World {
        World::start_with_store(capacity_bytes, grace_s, database, "file")
    }

    pub fn start_with_store(
        capacity_bytes: u64,
        grace_s: u64,
        database: Option<String>,
        store: &str,
    ) -> World {
        World::start_full(capacity_bytes, grace_s, database, store, (0, 0))
    }

    pub fn start_full(
        capacity_bytes: u64,
        grace_s: u64,
        database: Option<String>,
        store: &str,
        tabs: (u64, u64),
    ) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        World::start_in_full(dir, capacity_bytes, grace_s, database, store, tabs, &|_| {})
    }

    /// [`World::start`] with the agent's configuration changed by `edit` first.
    pub fn start_configured(
        capacity_bytes: u64,
        database: Option<String>,
        edit: &dyn Fn(&mut AgentConfig),
    ) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        World::start_in_full(dir, capacity_bytes, 3_600, database, "file", (0, 0), edit)
    }

    /// [`World::start`] in a directory the test prepared (e.g. a small disk mounted at
    /// `dir/agent/objects`).
    pub fn start_in(
        dir: tempfile::TempDir,
        capacity_bytes: u64,
        grace_s: u64,
        database: Option<String>,
    ) -> World {
        World::start_in_full(
            dir,
            capacity_bytes,
            grace_s,
            database,
            "file",
            (0, 0),
            &|_| {},
        )
    }

    fn start_in_full(
        dir: tempfile::TempDir,
        capacity_bytes: u64,
        grace_s: u64,
        database: Option<String>,
        store: &str,
        (tab_limit, tab_threshold): (u64, u64),
        edit: &dyn Fn(&mut AgentConfig),
    ) -> World {
        let issuer = lcp::testing::start_issuer(&dir.path().join("issuer"));
        let agent_dir = dir.path().join("agent");
        std::fs::create_dir_all(&agent_dir).expect("agent dir");
        node::keyfile::generate(&agent_dir.join("identity.key")).expect("agent key");
        let mut config = AgentConfig {
            capacity_bytes,
            block_bytes_max: capacity_bytes,
            grace_s,
            store: store.to_owned(),
            tab_limit,
            tab_threshold,
            currencies: vec![CurrencyConfig {
                issuer_url: issuer.url.clone(),
                issuer: issuer.entity.to_string(),
                storage_per_gib_day: PRICES.storage_per_gib_day,
                write_per_kib: PRICES.write_per_kib,
                read_per_kib: PRICES.read_per_kib,
                contract_min: PRICES.contract_min,
                bank: None,
            }],
            ..AgentConfig::default()
        };
        edit(&mut config);
        config.save(&agent_dir).expect("config");
        let agent = storage_agent::serve::start(storage_agent::serve::ServeOptions {
            data_dir: agent_dir,
            listen: "127.0.0.1:0".into(),
            database,
            market: None,
            heartbeat_s: 60,
            tls: None,
            endpoint: None,
        })
        .expect("agent");
        let http = http_client(&ClientOptions::default()).expect("http");
        let mint = lcp::testing::mint(&issuer, &dir.path().join("issuer"), &http);
        World {
            dir,
            issuer,
            agent,
            http,
            mint,
        }
    }

    /// A funded buyer: its agent client and wallet.
    pub async fn buyer(&self, funds: u64) -> (AgentClient, IssuerClient, Arc<KeyPair>) {
        let path = self
            .dir
            .path()
            .join(format!("buyer-{}.key", node::now_ms()));
        let key = Arc::new(node::keyfile::generate(&path).expect("buyer key"));
        self.mint
            .transfer(key.entity(), funds, Some("funding"))
            .await
            .expect("fund buyer");
        let wallet = IssuerClient::new(
            self.http.clone(),
            &self.issuer.url,
            key.clone(),
            Some(CounterStore::beside_key(&path)),
        );
        (
            AgentClient::new(self.http.clone(), &self.agent.url, key.clone()),
            wallet,
            key,
        )
    }

    /// Buy a contract at the offer's prices, pay its price plus `credit`, and wait until the
    /// agent's payment watcher has turned it active.
    /// A funded buyer whose key file is `<dir>/<name>.key` (its record chain and counters live
    /// beside it): (key path, key, wallet).
    #[allow(dead_code)]
    pub async fn buyer_named(
        &self,
        name: &str,
        funds: u64,
    ) -> (std::path::PathBuf, Arc<KeyPair>, IssuerClient) {
        let key_path = self.dir.path().join(format!("{name}.key"));
        let key = Arc::new(node::keyfile::generate(&key_path).expect("buyer key"));
        self.mint
            .transfer(key.entity(), funds, Some("funding"))
            .await
            .expect("fund buyer");
        let wallet = IssuerClient::new(
            self.http.clone(),
            &self.issuer.url,
            key.clone(),
            Some(CounterStore::beside_key(&key_path)),
        );
        (key_path, key, wallet)
    }

    /// Another agent, as its own process (for kill -9), on `<dir>/<name>`, selling
    /// `capacity_bytes` in this world's currency: its guard, URL and data directory.
    #[allow(dead_code)]
    pub fn spawn_own_agent(
        &self,
        name: &str,
        capacity_bytes: u64,
        database: Option<&str>,
    ) -> (node::process::ChildGuard, String, std::path::PathBuf) {
        let data = self.dir.path().join(name);
        write_agent_config(&data, &self.issuer.url, capacity_bytes);
        // The config's issuer must be the world's, for contracts to be paid.
        let mut config = AgentConfig::load(&data).expect("config");
        config.currencies[0].issuer = self.issuer.entity.to_string();
        config.save(&data).expect("config");
        let (child, url) = spawn_agent(&data, database);
        (child, url, data)
    }

    pub async fn active_contract(
        &self,
        client: &AgentClient,
        wallet: &IssuerClient,
        buyer: &KeyPair,
        block_bytes: u64,
        duration_s: u64,
        credit: u64,
    ) -> protocol::market::Contract {
        let (_, offer) = client.offer().await.expect("offer");
        let terms = AgentClient::terms_from_offer(
            &offer,
            buyer.entity(),
            &self.issuer.entity,
            block_bytes,
            duration_s,
            vec![],
        )
        .expect("terms");
        client
            .buy(wallet, &terms, credit)
            .await
            .expect("contract paid ahead and accepted");
        wait_active(client, &terms.id).await;
        terms
    }

    pub fn objects_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("agent/objects")
    }
}

pub use node::testing::eventually;

/// Wait (at most 5 s) for contract `id` to turn active at `client`'s agent.
pub async fn wait_active(client: &AgentClient, id: &str) {
    eventually(5_000, "the contract to turn active", || async {
        client
            .contract(id)
            .await
            .map(|v| v.status == "active")
            .unwrap_or(false)
    })
    .await;
}

/// Longest a spawned agent may take to print its address.
pub const SPAWN_WAIT_MS_MAX: u64 = 30_000;

/// Start `storage-agent serve` on `data` as a process (for kill -9), on `database` when given;
/// answers it (killed when dropped) and its URL.
pub fn spawn_agent(
    data: &std::path::Path,
    database: Option<&str>,
) -> (node::process::ChildGuard, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_storage-agent"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data);
    if let Some(url) = database {
        cmd.args(["--database", url]);
    }
    cmd.stderr(std::process::Stdio::inherit())
        .env("RUST_LOG", "warn");
    node::process::spawn_server(cmd, SPAWN_WAIT_MS_MAX).expect("agent printed its address")
}

/// An agent's data directory as `init` leaves it: a key and a configuration accepting one
/// currency at the test prices (the issuer need not be running).
pub fn write_agent_config(data: &std::path::Path, issuer_url: &str, capacity_bytes: u64) {
    std::fs::create_dir_all(data).expect("agent dir");
    node::keyfile::generate(&data.join("identity.key")).expect("agent key");
    let issuer = KeyPair::generate().expect("issuer key");
    AgentConfig {
        capacity_bytes,
        block_bytes_max: capacity_bytes,
        currencies: vec![CurrencyConfig {
            issuer_url: issuer_url.to_owned(),
            issuer: issuer.entity().to_string(),
            storage_per_gib_day: PRICES.storage_per_gib_day,
            write_per_kib: PRICES.write_per_kib,
            read_per_kib: PRICES.read_per_kib,
            contract_min: PRICES.contract_min,
            bank: None,
        }],
        ..AgentConfig::default()
    }
    .save(data)
    .expect("config");
}

/// Bytes stored under the local object directory (every version of every object).
pub fn stored_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
    }
    out
}
