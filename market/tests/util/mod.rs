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
            auditor_lease_ms: market::auditor::AUDITOR_LEASE_MS,
            crawl_interval_s: market::book::CRAWL_INTERVAL_S_DEFAULT,
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
                    bank: None,
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

// ---------------------------------------------------------------------------------------------
// Synthetic books and `market serve` processes (issue 14: replicas and scale).

/// `TEST_DATABASE_URL` for a test that needs PostgreSQL, or `None` (with a note) to skip it.
/// Under `CI=true` an unset URL is a failure, as an unreachable one is (`db::testing`).
pub fn postgres_or_skip(what: &str) -> Option<String> {
    let set = std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty());
    if !set {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: {what} needs PostgreSQL, but TEST_DATABASE_URL is not set"
        );
        eprintln!("skipped: {what} needs PostgreSQL (set TEST_DATABASE_URL)");
        return None;
    }
    let url = db::testing::postgres_url();
    if url.is_none() {
        eprintln!("skipped: {what} needs PostgreSQL, and TEST_DATABASE_URL is unreachable");
    }
    url
}

/// Longest a `market serve` process may take to say it listens.
pub const MARKET_START_WAIT_MS_MAX: u64 = 60_000;

/// A `market serve` child process; killed (SIGKILL) when dropped.
pub struct MarketProcess {
    pub url: String,
    pub log: std::path::PathBuf,
    child: std::process::Child,
}

impl MarketProcess {
    /// `market serve --data DATA --listen 127.0.0.1:0 [--database URL]` with its audit loop
    /// idle and probes every `probe_interval_s`, one agent per /24 in a choice. Returns once it
    /// printed its URL.
    pub fn start(data: &std::path::Path, database: Option<&str>, probe_interval_s: u64) -> Self {
        Self::start_with(data, database, probe_interval_s, &[])
    }

    /// [`MarketProcess::start`] with `extra` arguments to `market serve`.
    pub fn start_with(
        data: &std::path::Path,
        database: Option<&str>,
        probe_interval_s: u64,
        extra: &[&str],
    ) -> Self {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        std::fs::create_dir_all(data).expect("market data dir");
        let log = data.join("market.log");
        let stderr = std::fs::File::create(&log).expect("market log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_market"));
        cmd.arg("serve")
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .args(["--audit-interval-s", "3600"])
            .arg("--probe-interval-s")
            .arg(probe_interval_s.to_string())
            .args(extra)
            .env_remove("MARKET_DATABASE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        if let Some(url) = database {
            cmd.arg("--database").arg(url);
        }
        let mut child = cmd.spawn().expect("start market serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads stdout to its end, so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(std::time::Duration::from_millis(MARKET_START_WAIT_MS_MAX))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "market serve did not start within {MARKET_START_WAIT_MS_MAX} ms: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        MarketProcess { url, log, child }
    }

    /// Kill the process at once (SIGKILL) and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for MarketProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The value of the unlabelled metric `name` in the market's `/metrics`, if it is there.
pub async fn metric(http: &reqwest::Client, market: &str, name: &str) -> Option<f64> {
    node::client::metric(http, market, name).await
}

/// The entity id a market answers as (its descriptor), the audience of signed requests.
pub async fn market_entity(http: &reqwest::Client, market: &str) -> String {
    let doc: serde_json::Value = http
        .get(format!("{market}/.well-known/lcp"))
        .send()
        .await
        .expect("market descriptor")
        .json()
        .await
        .expect("descriptor json");
    assert_eq!(doc["role"], "market", "{doc}");
    doc["entity"].as_str().expect("entity").to_owned()
}

/// Synthetic agents (`market::bench`'s: their own keys, signed offers) whose endpoints one
/// stand-in server in this process answers, on loopback /24 networks `127.A.B.1`.
pub struct Synth {
    pub agents: Vec<market::bench::Agent>,
    pub standin: market::bench::StandIn,
    pub currency: market::bench::Currency,
    pub http: reqwest::Client,
    counters: node::client::ClockCounter,
}

impl Synth {
    /// `count` agents with `market::bench`'s varied terms (from `seed`) on `networks`
    /// networks (agent `i` on `i % networks`); `adjust` may change any agent's terms and
    /// network (below `networks`) before the endpoints are given out.
    pub fn start(
        count: usize,
        networks: usize,
        seed: u64,
        mut adjust: impl FnMut(usize, &mut market::bench::Agent),
    ) -> Synth {
        let mut agents = market::bench::Agent::generate(count, networks, seed).expect("agents");
        for (i, a) in agents.iter_mut().enumerate() {
            adjust(i, a);
            assert!(a.network < networks, "agent {i} on network {}", a.network);
        }
        let entities = Arc::new(agents.iter().map(|a| a.key.entity().clone()).collect());
        let standin = market::bench::StandIn::start(networks, entities).expect("stand-in");
        for (i, a) in agents.iter_mut().enumerate() {
            a.endpoint = standin.endpoint(i, a.network).expect("endpoint");
        }
        let issuer = KeyPair::generate().expect("key").entity().clone();
        let currency = market::bench::Currency {
            issuer,
            issuer_url: format!("{}/issuer", standin.endpoint(0, 0).expect("endpoint")),
        };
        Synth {
            agents,
            standin,
            currency,
            http: http_client(&ClientOptions::default()).expect("http"),
            counters: node::client::ClockCounter::default(),
        }
    }

    pub fn entity(&self, i: usize) -> String {
        self.agents[i].key.entity().to_string()
    }

    /// Agent `i`'s offer issued now, as its terms say, changed by `change`, signed by it.
    pub fn offer(
        &self,
        i: usize,
        change: impl FnOnce(&mut protocol::market::Offer),
    ) -> protocol::Envelope {
        use protocol::market::{format_rfc3339, Offer, OfferCurrency, OFFER_TYPE};
        let a = &self.agents[i];
        let now = node::now_s();
        let mut offer = Offer {
            agent: a.key.entity().clone(),
            endpoint: a.endpoint.clone(),
            issued_at: format_rfc3339(now),
            expires_at: format_rfc3339(now + market::bench::OFFER_VALIDITY_S),
            free_bytes: a.free_bytes,
            block_bytes_max: a.block_bytes_max,
            duration_s_max: a.duration_s_max,
            currencies: vec![OfferCurrency {
                issuer: self.currency.issuer.clone(),
                issuer_url: self.currency.issuer_url.clone(),
                storage_per_gib_day: a.storage_per_gib_day,
                write_per_kib: a.write_per_kib,
                read_per_kib: a.read_per_kib,
                contract_min: a.contract_min,
                pay_to: None,
            }],
        };
        change(&mut offer);
        protocol::Envelope::sign_json(&a.key, OFFER_TYPE, &offer).expect("sign offer")
    }

    /// Agent `i` posts `envelope` to the market at `market` (entity `audience`), signed as a
    /// storage agent's heartbeat is. Answers the refusal's code (or the transport failure).
    pub async fn post(
        &self,
        market: &str,
        audience: &str,
        i: usize,
        envelope: &protocol::Envelope,
    ) -> Result<(), String> {
        let body = serde_json::to_vec(envelope).map_err(|e| e.to_string())?;
        let auth = protocol::sign_request(
            &self.agents[i].key,
            audience,
            "POST",
            "/v1/offers",
            node::now_ms(),
            Some(self.counters.next()),
            &body,
        );
        let mut req = self
            .http
            .post(format!("{market}/v1/offers"))
            .timeout(std::time::Duration::from_secs(30))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in auth.headers() {
            req = req.header(name, value);
        }
        let resp = req.send().await.map_err(|e| format!("transport: {e}"))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| format!("transport: {e}"))?;
        if status >= 400 {
            return Err(serde_json::from_slice::<protocol::ErrorBody>(&bytes)
                .map(|b| format!("{status} {}: {}", b.error.code, b.error.message))
                .unwrap_or_else(|_| format!("http_{status}")));
        }
        Ok(())
    }

    /// Post the offers of `agents` (as their terms say) to `market`, `concurrency` at a time.
    /// Answers the refusals, by agent.
    pub async fn post_all(
        self: &Arc<Self>,
        market: &str,
        audience: &str,
        agents: &[usize],
        concurrency: usize,
    ) -> Vec<(usize, String)> {
        let agents: Arc<Vec<usize>> = Arc::new(agents.to_vec());
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..concurrency.max(1) {
            let (me, agents, next) = (self.clone(), agents.clone(), next.clone());
            let (market, audience) = (market.to_owned(), audience.to_owned());
            workers.spawn(async move {
                let mut refused = Vec::new();
                loop {
                    let at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&i) = agents.get(at) else { break };
                    let envelope = me.offer(i, |_| {});
                    if let Err(e) = me.post(&market, &audience, i, &envelope).await {
                        refused.push((i, e));
                    }
                }
                refused
            });
        }
        let mut refused = Vec::new();
        while let Some(done) = workers.join_next().await {
            refused.extend(done.expect("poster"));
        }
        refused
    }
}

/// `GET /v1/offers?currency=...` of the market at `market`.
pub async fn listings(
    http: &reqwest::Client,
    market: &str,
    currency: &str,
) -> Vec<protocol::book::Listing> {
    #[derive(serde::Deserialize)]
    struct Book {
        offers: Vec<protocol::book::Listing>,
    }
    let resp = http
        .get(format!(
            "{market}/v1/offers?currency={}",
            node::client::encode_query_value(currency)
        ))
        .send()
        .await
        .expect("GET /v1/offers");
    assert!(
        resp.status().is_success(),
        "GET /v1/offers: {}",
        resp.status()
    );
    resp.json::<Book>().await.expect("listings").offers
}

/// `POST /v1/match`: the status and the body (an answer, or an error with its details).
pub async fn match_raw(
    http: &reqwest::Client,
    market: &str,
    request: &protocol::book::MatchRequest,
) -> (u16, serde_json::Value) {
    let resp = http
        .post(format!("{market}/v1/match"))
        .timeout(std::time::Duration::from_secs(120))
        .json(request)
        .send()
        .await
        .expect("POST /v1/match");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("match body"))
}
