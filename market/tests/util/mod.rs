//! A small network in one process for the market's tests: a real issuer, the market and
//! storage agents heartbeating to it over loopback HTTP. Each test gets its own directory.
#![allow(dead_code)]

use std::sync::Arc;

use clients::issuer::IssuerClient;
use node::client::{http_client, ClientOptions, CounterStore};
use protocol::KeyPair;
use storage_agent::config::{AgentConfig, CurrencyConfig};

#[allow(unused_imports)]
pub use db::testing::backends;

/// Storage prices of agent `i`: agent 0 is the cheapest.
pub fn storage_price(i: usize) -> u64 {
    100 * (i as u64 + 1)
}

pub struct Net {
    pub dir: tempfile::TempDir,
    pub issuer: lcp::server::RunningIssuer,
    pub market: market::serve::RunningMarket,
    pub agents: Vec<Option<storage_agent::serve::RunningAgent>>,
    pub http: reqwest::Client,
    pub mint: IssuerClient,
}

impl Net {
    /// An issuer, a market (on `database`, or SQLite) and `agents` agents heartbeating to it
    /// every second. The market's loops run rarely: tests drive rounds themselves.
    pub fn start(agents: usize, database: Option<String>) -> Net {
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = lcp::testing::start_issuer(&dir.path().join("issuer"));
        let market = market::serve::start(market::serve::ServeOptions {
            data_dir: dir.path().join("market"),
            listen: "127.0.0.1:0".into(),
            database,
            allow_same_network: true,
            audit_interval_s: 3600,
            probe_interval_s: 3600,
            tls: None,
        })
        .expect("market");
        let http = http_client(&ClientOptions::default()).expect("http");
        let mint = lcp::testing::mint(&issuer, &dir.path().join("issuer"), &http);
        let mut net = Net {
            dir,
            issuer,
            market,
            agents: Vec::new(),
            http,
            mint,
        };
        for i in 0..agents {
            let a = net.start_agent(i);
            net.agents.push(Some(a));
        }
        net
    }

    /// Start (or restart) agent `i` from its data directory, heartbeating to the market.
    pub fn start_agent(&self, i: usize) -> storage_agent::serve::RunningAgent {
        self.start_agent_with(i, Some(self.market.url.clone()))
    }

    /// Agent `i`, not telling the market about itself.
    pub fn start_agent_without_market(&self, i: usize) -> storage_agent::serve::RunningAgent {
        self.start_agent_with(i, None)
    }

    fn start_agent_with(
        &self,
        i: usize,
        market: Option<String>,
    ) -> storage_agent::serve::RunningAgent {
        let agent_dir = self.dir.path().join(format!("agent-{i}"));
        if !agent_dir.join("config.toml").exists() {
            std::fs::create_dir_all(&agent_dir).expect("agent dir");
            node::keyfile::generate(&agent_dir.join("identity.key")).expect("agent key");
            let config = AgentConfig {
                capacity_bytes: 64 << 20,
                block_bytes_max: 64 << 20,
                grace_s: 60,
                currencies: vec![CurrencyConfig {
                    issuer_url: self.issuer.url.clone(),
                    issuer: self.issuer.entity.to_string(),
                    storage_per_gib_day: storage_price(i),
                    write_per_kib: 1,
                    read_per_kib: 1,
                    contract_min: 10,
                }],
                ..AgentConfig::default()
            };
            config.save(&agent_dir).expect("config");
        }
        storage_agent::serve::start(storage_agent::serve::ServeOptions {
            data_dir: agent_dir,
            listen: "127.0.0.1:0".into(),
            database: None,
            market,
            heartbeat_s: 1,
            tls: None,
            endpoint: None,
        })
        .expect("agent")
    }

    /// Stop agent `i` and wait (bounded) until its endpoint no longer answers: dropping a
    /// server only asks it to stop, so a probe right after could still find it up.
    pub async fn stop_agent(&mut self, i: usize) {
        let agent = self.agents[i].take().expect("agent running");
        let url = format!("{}/.well-known/lcp", agent.url);
        drop(agent);
        let http = self.http.clone();
        eventually(10_000, "the stopped agent no longer answers", || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                http.get(&url)
                    .timeout(std::time::Duration::from_millis(1_000))
                    .send()
                    .await
                    .is_err()
            }
        })
        .await;
    }

    pub fn agent(&self, i: usize) -> &storage_agent::serve::RunningAgent {
        self.agents[i].as_ref().expect("agent running")
    }

    /// A funded buyer's wallet and key.
    pub async fn buyer(&self, funds: u64) -> (IssuerClient, Arc<KeyPair>) {
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
        (wallet, key)
    }
}

pub use node::testing::eventually;
