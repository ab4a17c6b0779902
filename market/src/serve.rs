//! `market serve`: open the database, start the HTTP server, the auditor and the prober.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::book::Market;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub listen: String,
    pub database: Option<String>,
    /// Let one choice hold several agents of one network (devnet, a LAN).
    pub allow_same_network: bool,
    /// Seconds between audit rounds (one challenge per agent with registered contracts).
    pub audit_interval_s: u64,
    /// Seconds between uptime probes of every agent with a live offer.
    pub probe_interval_s: u64,
    pub tls: Option<node::http::TlsFiles>,
}

pub const AUDIT_INTERVAL_S_DEFAULT: u64 = 300;
pub const PROBE_INTERVAL_S_DEFAULT: u64 = 60;

pub struct RunningMarket {
    pub url: String,
    pub market: Arc<Market>,
    pub http: node::http::HttpHandle,
    _dir_lock: node::datadir::DirLock,
}

impl RunningMarket {
    pub fn wait(self) -> std::io::Result<()> {
        self.http.wait()
    }
}

pub fn start(options: ServeOptions) -> anyhow::Result<RunningMarket> {
    use anyhow::Context;
    std::fs::create_dir_all(&options.data_dir).with_context(|| {
        format!(
            "cannot create data directory {}",
            options.data_dir.display()
        )
    })?;
    let dir_lock = node::datadir::lock(&options.data_dir, "market")?;
    let key = Arc::new(node::keyfile::load_or_create(
        &options.data_dir.join("identity.key"),
    )?);
    let location = match &options.database {
        Some(url) => db::Location::parse(url),
        None => db::Location::sqlite_in(&options.data_dir, "market.sqlite"),
    };
    tracing::info!(database = %location.redacted(), entity = %key.entity(), "starting market");
    let database = db::Database::open(location, crate::migrations())?;
    let http_client = node::client::http_client(&node::client::ClientOptions::default())?;
    let market = Arc::new(Market::new(
        key,
        database,
        http_client,
        options.allow_same_network,
    ));
    let for_routes = market.clone();
    let for_tasks = market.clone();
    let audit_every = Duration::from_secs(options.audit_interval_s.max(1));
    let probe_every = Duration::from_secs(options.probe_interval_s.max(1));
    let http = node::http::spawn(
        "market",
        &options.listen,
        options.tls.as_ref(),
        0,
        move |cfg| crate::server::routes(cfg, for_routes.clone()),
        move || {
            actix_web::rt::spawn(crate::auditor::audit_loop(for_tasks.clone(), audit_every));
            actix_web::rt::spawn(crate::auditor::probe_loop(for_tasks, probe_every));
        },
    )?;
    market.set_endpoint(&http.url);
    Ok(RunningMarket {
        url: http.url.clone(),
        market,
        http,
        _dir_lock: dir_lock,
    })
}
