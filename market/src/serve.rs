//! `market serve`: open the database, start the HTTP server, the auditor and the prober.
//!
//! The auditor's two settings: `--audit-interval-s` is its tick (each tick audits the agents
//! due since the last) and `--audits-per-agent-day` how often each agent is due, spread evenly
//! over the day (see `auditor`). Without the latter every agent is due once a tick, so the
//! tick alone gives `86400 / tick` audits per agent per day (288 at the default 300 s).

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
    /// Seconds between the auditor's ticks; each audits the agents due since the last (all
    /// of them, once each, unless [`start_with_audits`] is given `audits_per_agent_day`).
    pub audit_interval_s: u64,
    /// Seconds between uptime probes of every agent with a live offer.
    pub probe_interval_s: u64,
    /// How long the auditor lease lasts past a renewal (several processes on one database:
    /// the time before another takes over from a holder that died).
    pub auditor_lease_ms: u64,
    /// Seconds between rounds of the records crawl (run by the lease holder).
    pub crawl_interval_s: u64,
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

/// Start a market whose auditor audits every agent once a tick (`audit_interval_s`).
pub fn start(options: ServeOptions) -> anyhow::Result<RunningMarket> {
    start_with_audits(options, None)
}

/// Start a market whose auditor audits each agent `audits_per_agent_day` times a day, spread
/// evenly, at most once a tick (`audit_interval_s`); `None`: once a tick (as [`start`]).
pub fn start_with_audits(
    options: ServeOptions,
    audits_per_agent_day: Option<u64>,
) -> anyhow::Result<RunningMarket> {
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
    let credit_policy = node::credit::load_policy(&options.data_dir).map_err(anyhow::Error::msg)?;
    let mut market = Market::new(key, database, http_client, options.allow_same_network);
    // Lines and neighbours from DIR/credit.toml (DESIGN 12).
    market.credit =
        node::credit::CreditBook::new(market.db.clone(), market.key.clone(), credit_policy);
    let market = Arc::new(market);
    market.auditor_lease.set_length_ms(options.auditor_lease_ms);
    let for_routes = market.clone();
    let for_tasks = market.clone();
    let probe_every = Duration::from_secs(options.probe_interval_s.max(1));
    let crawl_every_s = options.crawl_interval_s;
    let auditor = crate::auditor::AuditorOptions {
        tick_s: options.audit_interval_s,
        audits_per_agent_day,
    };
    let http = node::http::spawn(
        "market",
        &options.listen,
        options.tls.as_ref(),
        0,
        move |cfg| crate::server::routes(cfg, for_routes.clone()),
        move || {
            // The loops run in whichever process sharing the database holds the lease.
            let lease = for_tasks.auditor_lease.clone();
            for_tasks.credit.start();
            actix_web::rt::spawn(lease.clone().keep(for_tasks.clone()));
            actix_web::rt::spawn(crate::auditor::audit_loop(
                for_tasks.clone(),
                auditor,
                lease.clone(),
            ));
            actix_web::rt::spawn(fraud_loop(for_tasks.clone()));
            actix_web::rt::spawn(crawl_loop(
                for_tasks.clone(),
                Duration::from_secs(crawl_every_s.max(1)),
                lease.clone(),
            ));
            actix_web::rt::spawn(crate::auditor::probe_loop(for_tasks, probe_every, lease));
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

/// Crawl the agents' records every `every` while this process holds the auditor lease
/// (`book::crawl`); every process re-reads the forked set each interval, so proofs kept by
/// the holder count in every process's matches.
async fn crawl_loop(
    market: std::sync::Arc<crate::book::Market>,
    every: Duration,
    lease: crate::auditor::Lease,
) {
    loop {
        if lease.hold(&market).await {
            match market.crawl_round().await {
                Ok(r) if r.proofs_new > 0 => {
                    tracing::warn!(proofs = r.proofs_new, "the records crawl found forks")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "records crawl"),
            }
        } else if let Err(e) = market.reload_forked().await {
            tracing::warn!(error = %e, "reading the forked entities");
        }
        tokio::time::sleep(every).await;
    }
}

/// Read the issuers' fraud feeds every [`crate::book::FRAUD_FOLLOW_INTERVAL_MS`], forever, in
/// every process (what is kept is idempotent; a process racing another to keep the same
/// proof fails that round and finds it kept the next).
async fn fraud_loop(market: std::sync::Arc<crate::book::Market>) {
    let every = std::time::Duration::from_millis(crate::book::FRAUD_FOLLOW_INTERVAL_MS);
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = market.follow_frauds().await {
            tracing::warn!(error = %e, "reading the issuers' fraud proofs");
        }
    }
}
