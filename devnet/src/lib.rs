//! A whole network on one machine (DESIGN section 9): the real `lcp`, `market` and
//! `storage-agent` binaries as child processes, one issuer, one market and N agents with varied
//! prices on 127.0.0.1, SQLite and local disk under one directory. The README's first command
//! and the end-to-end test harness: tests stop, kill and restart any service through [`Devnet`].
//!
//! Invariants:
//! - A directory is one network: keys, data and ports are recorded (`devnet.json`) and reused,
//!   so `up` on the same directory brings the same entities back at the same URLs (contracts
//!   name agents' endpoints).
//! - `up` answers only when every service answers `/.well-known/lcp` as its entity and every
//!   agent's offer is in the market's book.
//! - Children die with the [`Devnet`]: dropping it stops them (SIGTERM, then SIGKILL after
//!   [`STOP_WAIT_MS_MAX`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clients::issuer::IssuerClient;
use node::client::ClientOptions;
use serde::{Deserialize, Serialize};

pub mod bank;
mod buy;
pub mod currencies;
pub mod delay;
pub mod netns;
mod peers;
mod service;

pub use buy::buy;
pub use netns::Shape;
pub use peers::{PEERS_MAX, PEER_FUNDS};
pub use protocol::overlay::topology::Topology;
pub use service::Service;
use service::{bin, entity_of_key, listen_for, path_arg, pin_port, port_of};

/// Longest a service may take to print its address.
pub const START_WAIT_MS_MAX: u64 = 30_000;
/// Longest `up` waits for every offer to reach the book.
pub const READY_WAIT_MS_MAX: u64 = 30_000;
/// Longest a stopped service may take to exit before it is killed.
pub const STOP_WAIT_MS_MAX: u64 = 5_000;
/// What the devnet's wallet is funded with on first start.
pub const WALLET_FUNDS: u64 = 1_000_000_000;
/// Agents a devnet may have.
pub const AGENTS_MAX: usize = 64;
/// What the publisher is funded with from the wallet on first start (`--cdn`).
pub const PUBLISHER_FUNDS: u64 = 200_000_000;
/// Each agent sells this much space: room for the README's walk-throughs together, and for
/// blocks of the backup's default 1 GiB slot (an offer caps blocks at half the capacity, the
/// share unpaid contracts may reserve). An agent never sells more than its disk holds.
pub const AGENT_CAPACITY_BYTES: u64 = 8 << 30;

#[derive(Debug, Clone)]
pub struct Options {
    pub dir: PathBuf,
    pub agents: usize,
    /// Where the `lcp`, `market` and `storage-agent` binaries are.
    pub bin_dir: PathBuf,
    pub heartbeat_s: u64,
    pub audit_interval_s: u64,
    pub probe_interval_s: u64,
    /// Also start a publisher (`cdn serve`), funded from the wallet.
    pub cdn: bool,
    /// Extra flags for `cdn serve` (tests shorten its scaling rounds).
    pub cdn_args: Vec<String>,
    /// Currencies: the first issuer and `issuers - 1` more (`issuer-<k>`), every agent
    /// accepting each at its own prices (loopback only).
    pub issuers: usize,
    /// Also start a bank (`bank serve`) and have every agent bank opaquely there, paid as
    /// `agent-<i>@<bank host>` (seed 000 section 5.2; loopback only).
    pub bank: bool,
    /// Peers of the bid-solicitation overlay (`peer serve`), linked as `topology` says.
    pub peers: usize,
    pub topology: Topology,
    /// Extra flags for every `peer serve`.
    pub peer_args: Vec<String>,
    /// Every service in its own network namespace (DESIGN 15; root and `ip` needed), the
    /// market's one-agent-per-/24 rule on.
    pub netns: bool,
    /// With `netns`: agents per /24 (1, each its own network; more, to see the rule at work).
    pub agents_per_network: usize,
}

impl Options {
    /// Defaults for `dir`: 6 agents, binaries beside the running executable.
    pub fn new(dir: &Path) -> anyhow::Result<Options> {
        Ok(Options {
            dir: dir.to_path_buf(),
            agents: 6,
            bin_dir: default_bin_dir()?,
            heartbeat_s: 5,
            audit_interval_s: 15,
            probe_interval_s: 10,
            cdn: false,
            cdn_args: Vec::new(),
            bank: false,
            issuers: 1,
            peers: 0,
            topology: Topology::Line,
            peer_args: Vec::new(),
            netns: false,
            agents_per_network: 1,
        })
    }
}

/// The directory of the running executable, or of the test binary's profile directory
/// (`target/<profile>/deps/x` -> `target/<profile>`). `DEVNET_BIN_DIR` overrides both.
pub fn default_bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("DEVNET_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("cannot find the running executable")?;
    let mut dir = exe
        .parent()
        .context("the executable has no directory")?
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir)
}

/// One service as `devnet.json` records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceInfo {
    pub url: String,
    pub entity: String,
    pub pid: u32,
    pub data: PathBuf,
    /// Its network namespace, on a devnet started with `--netns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// Its host's address in that namespace (the URL's host), with `--netns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WalletInfo {
    pub key: PathBuf,
    pub entity: String,
}

/// `DIR/devnet.json` (DESIGN section 9).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DevnetFile {
    pub issuer: ServiceInfo,
    pub market: ServiceInfo,
    pub agents: Vec<ServiceInfo>,
    pub wallet: WalletInfo,
    /// The publisher (`cdn serve`), when started with `--cdn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdn: Option<ServiceInfo>,
    /// The bank the agents are paid into, when started with `--bank`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank: Option<ServiceInfo>,
    /// The issuers after the first (`issuer-1`...), when started with `--issuers N`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_issuers: Vec<ServiceInfo>,
    /// The overlay's peers (`peer serve`), when started with `--peers N`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<ServiceInfo>,
    /// How the peers are linked (`line`, `ring`, `random:DEGREE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<String>,
    /// The namespaces' range and bridge, on a devnet started with `--netns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<netns::NetnsInfo>,
}

impl DevnetFile {
    /// The namespace of the service named `name` as `devnet up` lists them (`issuer`,
    /// `market`, `cdn`, `agent-<i>`, `peer-<i>`), or by an agent's index alone, or by a
    /// service's entity id or URL.
    pub fn netns_of(&self, name: &str) -> anyhow::Result<String> {
        let every = || {
            [&self.issuer, &self.market]
                .into_iter()
                .chain(self.cdn.iter())
                .chain(self.bank.iter())
                .chain(self.agents.iter())
                .chain(self.peers.iter())
        };
        let found = match name {
            "issuer" => Some(&self.issuer),
            "market" => Some(&self.market),
            "cdn" | "publisher" => self.cdn.as_ref(),
            _ => match name.split_once('-') {
                Some(("agent", i)) => i.parse::<usize>().ok().and_then(|i| self.agents.get(i)),
                Some(("peer", i)) => i.parse::<usize>().ok().and_then(|i| self.peers.get(i)),
                _ => name
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| self.agents.get(i))
                    .or_else(|| {
                        every().find(|s| s.entity == name || s.url.trim_end_matches('/') == name)
                    }),
            },
        };
        let s = found.with_context(|| {
            format!(
                "no service {name:?} on this devnet (issuer, market, cdn, agent-0..{}, peer-0..)",
                self.agents.len().saturating_sub(1)
            )
        })?;
        s.netns.clone().with_context(|| {
            format!("{name} has no namespace: this devnet was not started with --netns")
        })
    }

    pub fn load(dir: &Path) -> anyhow::Result<DevnetFile> {
        let path = dir.join("devnet.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {} (is a devnet up there?)", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a devnet file", path.display()))
    }
}

/// Which service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Issuer,
    Market,
    Agent(usize),
    Cdn,
    Peer(usize),
    Bank,
}

pub struct Devnet {
    pub dir: PathBuf,
    pub issuer: Service,
    pub market: Service,
    pub agents: Vec<Service>,
    pub wallet: WalletInfo,
    /// The publisher, with `--cdn`.
    pub cdn: Option<Service>,
    /// The bank the agents are paid into, with `--bank`.
    pub bank: Option<Service>,
    /// The issuers after the first, with `--issuers N`.
    pub other_issuers: Vec<Service>,
    /// The overlay's peers, with `--peers N`.
    pub peers: Vec<Service>,
    pub topology: Option<String>,
    /// The namespaces and bridge (`--netns`); dropped after the services stop.
    pub net: Option<netns::Net>,
    /// Where the binaries are (`devnet` itself runs the delay worker of `slow`).
    bin_dir: PathBuf,
    http: reqwest::Client,
    _dir_lock: node::datadir::DirLock,
}

impl Devnet {
    /// Start (or bring back) the network in `options.dir`. Blocking.
    pub fn up(options: &Options) -> anyhow::Result<Devnet> {
        anyhow::ensure!(
            (1..=AGENTS_MAX).contains(&options.agents),
            "--agents must be 1 to {AGENTS_MAX}"
        );
        let dir = &options.dir;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // One devnet per directory: a second one would find every service's directory taken
        // and fail obscurely.
        let dir_lock = node::datadir::lock(dir, "devnet").map_err(|e| {
            match node::datadir::holder_pid(dir, "devnet") {
                Some(pid) => anyhow::anyhow!(
                    "this directory's devnet is already running (pid {pid}): stop it (Ctrl-C, \
                     or kill {pid}) or use another --dir"
                ),
                None => e,
            }
        })?;
        let previous = DevnetFile::load(dir).ok();
        let (lcp_bin, market_bin, agent_bin) = (
            bin(&options.bin_dir, "lcp")?,
            bin(&options.bin_dir, "market")?,
            bin(&options.bin_dir, "storage-agent")?,
        );
        let logs = dir.join("logs");
        let http = node::client::http_client(&ClientOptions::default())?;
        // A directory whose devnet had namespaces has them again: its contracts name the
        // agents' namespaced addresses.
        let netns_on = options.netns || previous.as_ref().is_some_and(|p| p.netns.is_some());
        anyhow::ensure!(
            netns_on || options.agents_per_network == 1,
            "--agents-per-network needs --netns (on loopback every agent shares one network)"
        );
        let mut net = if netns_on {
            anyhow::ensure!(
                options.peers <= netns::NETNS_PEERS_MAX,
                "--peers must be at most {} with --netns",
                netns::NETNS_PEERS_MAX
            );
            Some(netns::Net::create(
                dir,
                previous.as_ref().and_then(|p| p.netns.as_ref()),
                // Addresses must come back the same: the recorded layout wins.
                previous
                    .as_ref()
                    .and_then(|p| p.netns.as_ref())
                    .map_or(options.agents_per_network, |n| n.agents_per_network),
            )?)
        } else {
            None
        };
        let mut host_for =
            |name: &str, address: fn(&netns::Net, usize) -> std::net::Ipv4Addr, i| {
                net.as_mut()
                    .map(|n| {
                        let a = address(n, i);
                        n.add_host(name, a)
                    })
                    .transpose()
            };
        let issuer_host = host_for("issuer", |n, _| n.issuer_address(), 0)?;
        let market_host = host_for("market", |n, _| n.market_address(), 0)?;
        let agent_hosts = (0..options.agents)
            .map(|i| host_for(&format!("agent-{i}"), netns::Net::agent_address, i))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let cdn_host = if options.cdn {
            host_for("cdn", |n, _| n.cdn_address(), 0)?
        } else {
            None
        };
        let peer_hosts = (0..options.peers)
            .map(|i| host_for(&format!("peer-{i}"), netns::Net::peer_address, i))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let ns_of = |h: &Option<netns::Host>| h.as_ref().map(|h| h.netns.clone());

        let issuer_data = dir.join("issuer");
        let mut issuer = Service {
            name: "issuer".into(),
            url: String::new(),
            entity: entity_of_key(&issuer_data.join("identity.key"))?,
            data: issuer_data.clone(),
            netns: ns_of(&issuer_host),
            program: lcp_bin.clone(),
            args: vec![
                "issuer".into(),
                "serve".into(),
                "--data".into(),
                path_arg(&issuer_data),
                "--listen".into(),
                listen_for(issuer_host.as_ref(), previous.as_ref().map(|p| &p.issuer)),
            ],
            child: None,
        };
        issuer.start(&logs)?;
        // The issuer's URL is now fixed; pin the port for restarts.
        pin_port(&mut issuer);
        anyhow::ensure!(
            (1..=currencies::ISSUERS_MAX).contains(&options.issuers),
            "--issuers must be 1 to {}",
            currencies::ISSUERS_MAX
        );
        anyhow::ensure!(
            options.issuers == 1 || !netns_on,
            "--issuers runs on loopback only (not with --netns)"
        );
        let mut other_issuers = Vec::new();
        for k in 1..options.issuers {
            let prev = previous.as_ref().and_then(|p| p.other_issuers.get(k - 1));
            let mut other = currencies::issuer_service(&lcp_bin, dir, k, listen_for(None, prev))?;
            other.start(&logs)?;
            pin_port(&mut other);
            other_issuers.push(other);
        }

        let market_data = dir.join("market");
        let mut market_args = vec![
            "serve".into(),
            "--data".into(),
            path_arg(&market_data),
            "--listen".into(),
            listen_for(market_host.as_ref(), previous.as_ref().map(|p| &p.market)),
        ];
        // On loopback every agent is on one network; in namespaces the rule runs for real.
        if !netns_on {
            market_args.push("--allow-same-network".into());
        }
        let mut market = Service {
            name: "market".into(),
            url: String::new(),
            entity: entity_of_key(&market_data.join("identity.key"))?,
            data: market_data.clone(),
            netns: ns_of(&market_host),
            program: market_bin,
            args: market_args,
            child: None,
        };
        market.args.extend([
            "--audit-interval-s".into(),
            options.audit_interval_s.to_string(),
            "--probe-interval-s".into(),
            options.probe_interval_s.to_string(),
            // The records crawl as often as the audits, so a walk-through sees them.
            "--crawl-interval-s".into(),
            options.audit_interval_s.to_string(),
        ]);
        market.start(&logs)?;
        pin_port(&mut market);

        let bank = if options.bank {
            anyhow::ensure!(!netns_on, "--bank runs on loopback only (not with --netns)");
            let listen = listen_for(None, previous.as_ref().and_then(|p| p.bank.as_ref()));
            let urls: Vec<String> = std::iter::once(&issuer)
                .chain(other_issuers.iter())
                .map(|i| i.url.clone())
                .collect();
            let mut bank = bank::service(&options.bin_dir, dir, &urls, listen)?;
            bank.start(&logs)?;
            pin_port(&mut bank);
            Some(bank)
        } else {
            None
        };
        let mut agents = Vec::with_capacity(options.agents);
        for (i, host) in agent_hosts.iter().enumerate() {
            let data = dir.join("agents").join(format!("agent-{i}"));
            if !data.join("config.toml").exists() {
                let account = match &bank {
                    Some(b) => Some((
                        b.url.clone(),
                        bank::open_account(
                            &options.bin_dir,
                            dir,
                            &bank::customer_of_agent(i),
                            &issuer.entity,
                        )?,
                    )),
                    None => None,
                };
                currencies::init_agent(&agent_bin, &data, &issuer.url, i, account)?;
                for (k, other) in other_issuers.iter().enumerate() {
                    currencies::add_currency(&agent_bin, &data, &other.url, i, k + 1)?;
                }
            }
            let prev = previous.as_ref().and_then(|p| p.agents.get(i));
            let mut agent = Service {
                name: format!("agent-{i}"),
                url: String::new(),
                entity: entity_of_key(&data.join("identity.key"))?,
                data: data.clone(),
                netns: ns_of(host),
                program: agent_bin.clone(),
                args: vec![
                    "serve".into(),
                    "--data".into(),
                    path_arg(&data),
                    "--listen".into(),
                    listen_for(host.as_ref(), prev),
                    "--market".into(),
                    market.url.clone(),
                    "--heartbeat-s".into(),
                    options.heartbeat_s.to_string(),
                ],
                child: None,
            };
            agent.start(&logs)?;
            pin_port(&mut agent);
            agents.push(agent);
        }

        let wallet_key = dir.join("wallet.key");
        let wallet = WalletInfo {
            entity: entity_of_key(&wallet_key)?,
            key: wallet_key,
        };
        let devnet = Devnet {
            dir: dir.clone(),
            issuer,
            market,
            agents,
            wallet,
            cdn: None,
            bank,
            other_issuers,
            peers: Vec::new(),
            topology: None,
            net,
            bin_dir: options.bin_dir.clone(),
            http,
            _dir_lock: dir_lock,
        };
        let mut devnet = devnet;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(devnet.fund_wallet())?;
        rt.block_on(devnet.wait_ready())?;
        if options.cdn {
            let cdn_data = dir.join("cdn");
            let entity = entity_of_key(&cdn_data.join("identity.key"))?;
            rt.block_on(devnet.fund_publisher(&entity))?;
            let mut args = vec![
                "serve".into(),
                "--data".into(),
                path_arg(&cdn_data),
                "--listen".into(),
                listen_for(
                    cdn_host.as_ref(),
                    previous.as_ref().and_then(|p| p.cdn.as_ref()),
                ),
                "--market".into(),
                devnet.market.url.clone(),
                "--agents".into(),
                options.agents.min(6).to_string(),
            ];
            args.extend(options.cdn_args.iter().cloned());
            let mut cdn = Service {
                name: "cdn".into(),
                url: String::new(),
                entity,
                data: cdn_data,
                netns: ns_of(&cdn_host),
                program: bin(&options.bin_dir, "cdn")?,
                args,
                child: None,
            };
            cdn.start(&logs)?;
            pin_port(&mut cdn);
            devnet.cdn = Some(cdn);
            rt.block_on(devnet.wait_ready())?;
        }
        devnet.start_peers(
            &options.bin_dir,
            options.peers,
            options.topology,
            &options.peer_args,
            previous.as_ref(),
            &peer_hosts,
        )?;
        rt.block_on(devnet.wait_ready())?;
        devnet.write_file()?;
        Ok(devnet)
    }

    /// Fund the publisher from the wallet once (first start: its balance is zero).
    async fn fund_publisher(&self, entity: &str) -> anyhow::Result<()> {
        let options = ClientOptions::default();
        let wallet = IssuerClient::from_key_file(&self.issuer.url, &self.wallet.key, &options)?;
        let to = protocol::EntityId::parse(entity)
            .map_err(|_| anyhow::anyhow!("publisher entity is malformed"))?;
        // The publisher's own key answers its balance; read it through the key file.
        let key = self.dir.join("cdn").join("identity.key");
        let publisher = IssuerClient::from_key_file(&self.issuer.url, &key, &options)?;
        if publisher.balance().await?.balance > 0 {
            return Ok(());
        }
        wallet
            .transfer(&to, PUBLISHER_FUNDS, Some("devnet-publisher-funding"))
            .await?;
        Ok(())
    }

    /// Every service answers as its entity and every agent's offer is in the book.
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_millis(READY_WAIT_MS_MAX);
        loop {
            match self.missing().await {
                None => return Ok(()),
                Some(what) if Instant::now() >= deadline => {
                    bail!("the devnet is not ready after {READY_WAIT_MS_MAX} ms: {what}")
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// What is not ready yet, if anything.
    async fn missing(&self) -> Option<String> {
        let running = std::iter::once(&self.issuer)
            .chain(self.other_issuers.iter())
            .chain(std::iter::once(&self.market))
            .chain(self.agents.iter())
            .chain(self.cdn.iter())
            .chain(self.bank.iter())
            .chain(self.peers.iter())
            .filter(|s| s.running());
        for s in running {
            let url = format!("{}/.well-known/lcp", s.url);
            let answered = async {
                let doc: serde_json::Value =
                    self.http.get(&url).send().await.ok()?.json().await.ok()?;
                Some(doc.get("entity")?.as_str()? == s.entity)
            }
            .await;
            if answered != Some(true) {
                return Some(format!("{} does not answer at {}", s.name, s.url));
            }
        }
        if !self.market.running() {
            return None;
        }
        let book: serde_json::Value = async {
            self.http
                .get(format!("{}/v1/offers", self.market.url))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()
        }
        .await
        .unwrap_or_default();
        let listed: Vec<&str> = book["offers"]
            .as_array()
            .map(|o| o.iter().filter_map(|x| x["agent"].as_str()).collect())
            .unwrap_or_default();
        self.agents
            .iter()
            .filter(|a| a.running())
            .find(|a| !listed.contains(&a.entity.as_str()))
            .map(|a| format!("{}'s offer is not in the market yet", a.name))
    }

    fn service(&mut self, which: Which) -> anyhow::Result<&mut Service> {
        Ok(match which {
            Which::Issuer => &mut self.issuer,
            Which::Market => &mut self.market,
            Which::Agent(i) => self
                .agents
                .get_mut(i)
                .with_context(|| format!("no agent {i}"))?,
            Which::Cdn => self.cdn.as_mut().context("this devnet has no publisher")?,
            Which::Bank => self.bank.as_mut().context("this devnet has no bank")?,
            Which::Peer(i) => self
                .peers
                .get_mut(i)
                .with_context(|| format!("no peer {i}"))?,
        })
    }

    /// Reap every service that died on its own and say which (a line for each, naming its
    /// log); `devnet.json` then shows it stopped (pid 0).
    pub fn reap_exited(&mut self) -> Vec<String> {
        let logs = self.dir.join("logs");
        let mut died = Vec::new();
        let services = std::iter::once(&mut self.issuer)
            .chain(self.other_issuers.iter_mut())
            .chain(std::iter::once(&mut self.market))
            .chain(self.agents.iter_mut())
            .chain(self.cdn.iter_mut())
            .chain(self.bank.iter_mut())
            .chain(self.peers.iter_mut());
        for s in services {
            if let Some(what) = s.reap_if_exited() {
                died.push(format!(
                    "{what}; see {}",
                    logs.join(format!("{}.log", s.name)).display()
                ));
            }
        }
        if !died.is_empty() {
            if let Err(e) = self.write_file() {
                died.push(format!("cannot update devnet.json: {e}"));
            }
        }
        died
    }

    /// Stop a service gracefully.
    pub fn stop(&mut self, which: Which) -> anyhow::Result<()> {
        self.service(which)?.stop();
        self.write_file()
    }

    /// Kill a service with SIGKILL, as a crash would.
    pub fn kill(&mut self, which: Which) -> anyhow::Result<()> {
        self.service(which)?.kill();
        self.write_file()
    }

    /// Start a stopped or killed service again, on its old port and data.
    pub fn restart(&mut self, which: Which) -> anyhow::Result<()> {
        let logs = self.dir.join("logs");
        let s = self.service(which)?;
        s.stop();
        s.start(&logs)?;
        self.write_file()
    }

    pub fn file(&self) -> DevnetFile {
        DevnetFile {
            issuer: self.issuer.info(),
            market: self.market.info(),
            agents: self.agents.iter().map(Service::info).collect(),
            wallet: self.wallet.clone(),
            cdn: self.cdn.as_ref().map(Service::info),
            bank: self.bank.as_ref().map(Service::info),
            other_issuers: self.other_issuers.iter().map(Service::info).collect(),
            peers: self.peers.iter().map(Service::info).collect(),
            topology: self.topology.clone(),
            netns: self.net.as_ref().map(|n| n.info.clone()),
        }
    }

    /// Write `DIR/devnet.json` (atomically: a reader never sees half a file).
    pub fn write_file(&self) -> anyhow::Result<()> {
        let path = self.dir.join("devnet.json");
        let tmp = self.dir.join("devnet.json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&self.file())?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// Cut a service's host off the network (`--netns` only; see [`netns::cut`]).
    pub fn cut(&mut self, which: Which) -> anyhow::Result<()> {
        netns::cut(&self.netns_of(which)?)
    }

    /// Undo [`Devnet::cut`] and [`Devnet::slow`].
    pub fn heal(&mut self, which: Which) -> anyhow::Result<()> {
        netns::heal(&self.netns_of(which)?)
    }

    /// Thin and delay what a service's host sends (see [`netns::slow`]).
    pub fn slow(&mut self, which: Which, shape: Shape) -> anyhow::Result<()> {
        let devnet = bin(&self.bin_dir, "devnet")?;
        netns::slow(&self.netns_of(which)?, shape, &devnet)
    }

    fn netns_of(&mut self, which: Which) -> anyhow::Result<String> {
        let s = self.service(which)?;
        s.netns
            .clone()
            .with_context(|| format!("{} has no namespace: start the devnet with --netns", s.name))
    }

    /// Stop every service, agents first.
    pub fn down(&mut self) {
        for p in &mut self.peers {
            p.stop();
        }
        if let Some(c) = &mut self.cdn {
            c.stop();
        }
        for a in &mut self.agents {
            a.stop();
        }
        if let Some(b) = &mut self.bank {
            b.stop();
        }
        self.market.stop();
        for i in &mut self.other_issuers {
            i.stop();
        }
        self.issuer.stop();
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        self.down();
    }
}
