//! `storage-agent serve`: open the database and store, sweep crash leftovers, start the HTTP
//! server and the background tasks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::agent::Agent;
use crate::config::AgentConfig;
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub listen: String,
    pub database: Option<String>,
    pub market: Option<String>,
    pub heartbeat_s: u64,
    pub tls: Option<node::http::TlsFiles>,
    /// The URL buyers reach this agent at (overrides `endpoint` in config.toml); the listen
    /// address when neither is set.
    pub endpoint: Option<String>,
}

pub struct RunningAgent {
    pub url: String,
    pub agent: Arc<Agent>,
    pub http: node::http::HttpHandle,
    _dir_lock: node::datadir::DirLock,
}

impl RunningAgent {
    /// Serve until SIGINT/SIGTERM, then redeem every payword still held (DESIGN 10: vendors
    /// redeem at shutdown), each issuer within [`crate::tasks::SHUTDOWN_REDEEM_WAIT_MS_MAX`].
    pub fn wait(self) -> std::io::Result<()> {
        let agent = self.agent.clone();
        let served = self.http.wait();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(crate::tasks::redeem_at_shutdown(agent));
        served
    }
}

/// What the owner is told when the configured capacity exceeds the disk's free space.
pub fn capacity_warning(capacity_bytes: u64, disk_available_bytes: u64) -> String {
    format!(
        "the capacity ({}) is more than the disk's free space ({}): contracts are accepted \
         only while they fit on the disk; lower --capacity or free disk space",
        crate::dashboard::human(capacity_bytes),
        crate::dashboard::human(disk_available_bytes)
    )
}

/// Whether `url`'s host is the unspecified address (`0.0.0.0`, `[::]`): where one listens on
/// every interface, not where anyone can be reached.
fn unspecified_host(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or(url);
    rest.starts_with("0.0.0.0") || rest.starts_with("[::]")
}

pub fn start(options: ServeOptions) -> anyhow::Result<RunningAgent> {
    let config = AgentConfig::load(&options.data_dir)?;
    if let Some(m) = &options.market {
        node::client::check_url(m).map_err(|e| anyhow::anyhow!("--market: {e}"))?;
    }
    let endpoint = options
        .endpoint
        .clone()
        .unwrap_or_else(|| config.endpoint.clone());
    if !endpoint.is_empty() {
        node::client::check_url(&endpoint).map_err(|e| anyhow::anyhow!("--endpoint: {e}"))?;
    }
    // Offers name the endpoint buyers and the market connect to; 0.0.0.0 reaches nobody.
    if endpoint.is_empty() && options.market.is_some() && unspecified_host(&options.listen) {
        anyhow::bail!(
            "listening on {} (every interface), the agent cannot tell buyers where to reach \
             it: add --endpoint http://THIS-MACHINE'S-ADDRESS:PORT (or endpoint in config.toml)",
            options.listen
        );
    }
    let dir_lock = node::datadir::lock(&options.data_dir, "storage-agent")?;
    let key = Arc::new(node::keyfile::load(&options.data_dir.join("identity.key"))?);
    let location = match &options.database {
        Some(url) => db::Location::parse(url),
        None => db::Location::sqlite_in(&options.data_dir, "agent.sqlite"),
    };
    let database = db::Database::open(location, crate::migrations())?;
    let store = Store::open(&config.store, &options.data_dir)?;
    let owner_token = crate::owner::load_or_create(&options.data_dir)?;
    let disk_available = store.available_bytes();
    let agent = Arc::new(Agent::new(key, config.clone(), database, store));
    agent.set_owner_token(owner_token);
    if let Some(market) = &options.market {
        agent.set_market(market);
    }
    // Capacity past the disk's free space is sold only while it fits (see `agent::free_to_sell`);
    // say so where the owner looks. (Bytes already stored count against the capacity but not
    // against the free space, so this may warn for a full agent; the offer is exact.)
    if let Some(disk) = disk_available {
        if config.capacity_bytes > disk {
            let message = capacity_warning(config.capacity_bytes, disk);
            tracing::warn!("{message}");
            agent.note_error(message);
        }
    }
    // Before serving: the sweep deletes bytes no row names, and a write committing meanwhile
    // would be such bytes for a moment. Its own thread and runtime, so a caller inside a tokio
    // runtime (tests) can call `start` too.
    let sweeper = agent.clone();
    let removed = std::thread::spawn(move || -> anyhow::Result<usize> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(rt.block_on(sweeper.sweep())?)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the start-up sweep panicked"))??;
    if removed > 0 {
        tracing::info!(removed, "removed unreferenced object bytes left by a crash");
    }
    let for_routes = agent.clone();
    let for_tasks = agent.clone();
    let market = options.market.clone();
    let every = Duration::from_secs(options.heartbeat_s.max(1));
    let http = node::http::spawn(
        "agent",
        &options.listen,
        options.tls.as_ref(),
        0,
        move |cfg| crate::server::routes(cfg, for_routes.clone()),
        move || {
            let a = for_tasks;
            for c in &a.config.currencies {
                actix_web::rt::spawn(crate::tasks::watch_payments(
                    a.clone(),
                    c.issuer.clone(),
                    c.issuer_url.clone(),
                    c.bank.clone(),
                ));
            }
            for c in &a.config.currencies {
                actix_web::rt::spawn(crate::tasks::paywords(
                    a.clone(),
                    c.issuer.clone(),
                    c.issuer_url.clone(),
                ));
            }
            actix_web::rt::spawn(crate::tasks::reap(a.clone()));
            actix_web::rt::spawn(crate::tasks::history(a.clone()));
            a.credit.start();
            if let Some(m) = market {
                actix_web::rt::spawn(crate::tasks::heartbeat(a.clone(), m, every));
            }
        },
    )?;
    let url = if endpoint.is_empty() {
        http.url.clone()
    } else {
        endpoint
    };
    agent.set_endpoint(&url);
    Ok(RunningAgent {
        url: http.url.clone(),
        agent,
        http,
        _dir_lock: dir_lock,
    })
}
