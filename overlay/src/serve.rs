//! `peer serve`: open the database, learn the currencies, index the shared documents, start
//! the HTTP server, learn the neighbours and follow the deposits.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Context;
use clients::issuer::IssuerClient;
use node::client::{ClientOptions, ClockCounter, CounterStore, SignedClient};
use protocol::overlay::CurrencyOffer;

use crate::peer::{documents::Documents, Currency, Peer, PeerOptions};

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub listen: String,
    pub database: Option<String>,
    /// Primary neighbours' URLs.
    pub neighbors: Vec<String>,
    /// The directory whose files this peer sells.
    pub share: Option<PathBuf>,
    /// The issuers of the currencies taken (the first is the one this peer's searches use).
    pub issuers: Vec<String>,
    pub peer: PeerOptions,
    pub tls: Option<node::http::TlsFiles>,
}

pub struct RunningPeer {
    pub url: String,
    pub peer: Arc<Peer>,
    pub http: node::http::HttpHandle,
    _dir_lock: node::datadir::DirLock,
}

impl RunningPeer {
    pub fn wait(self) -> std::io::Result<()> {
        self.http.wait()
    }
}

pub fn start(options: ServeOptions) -> anyhow::Result<RunningPeer> {
    if options.issuers.is_empty() {
        anyhow::bail!("a peer takes at least one currency: pass --issuer URL");
    }
    if !(1..=3).contains(&options.peer.policy) {
        anyhow::bail!("--policy must be 1, 2 or 3");
    }
    let p = &options.peer;
    if p.tab_limit > 0 && (p.tab_threshold == 0 || p.tab_threshold > p.tab_limit) {
        anyhow::bail!(
            "--tab-threshold must be 1 to --tab-limit ({}), or tabs would never be settled",
            p.tab_limit
        );
    }
    if let Some(url) = &p.public_url {
        node::client::check_url(url)?;
    } else if options.listen.starts_with("0.0.0.0") || options.listen.starts_with("[::]") {
        anyhow::bail!(
            "listening on every interface ({}): pass --public-url with the address other \
             peers reach this one at (it goes into retrieval instructions)",
            options.listen
        );
    }
    for url in options.neighbors.iter().chain(&options.issuers) {
        node::client::check_url(url)?;
    }
    std::fs::create_dir_all(&options.data_dir).with_context(|| {
        format!(
            "cannot create data directory {}",
            options.data_dir.display()
        )
    })?;
    if let Some(share) = &options.share {
        if !share.is_dir() {
            anyhow::bail!("--share {} is not a directory", share.display());
        }
    }
    let dir_lock = node::datadir::lock(&options.data_dir, "peer")?;
    let key_path = options.data_dir.join("identity.key");
    let key = Arc::new(node::keyfile::load_or_create(&key_path)?);
    let location = match &options.database {
        Some(url) => db::Location::parse(url),
        None => db::Location::sqlite_in(&options.data_dir, "peer.sqlite"),
    };
    tracing::info!(database = %location.redacted(), entity = %key.entity(), "starting peer");
    let database = db::Database::open(location, crate::migrations())?;
    let http = node::client::http_client(&ClientOptions::default())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut currencies = Vec::new();
    for url in &options.issuers {
        let signed = SignedClient::new(http.clone(), url, key.clone());
        let issuer = rt
            .block_on(signed.audience())
            .with_context(|| format!("the issuer at {url} does not answer"))?
            .to_string();
        if currencies
            .iter()
            .any(|c: &Currency| c.offer.issuer == issuer)
        {
            // The same issuer twice (two URLs): one currency, one deposit watcher.
            continue;
        }
        currencies.push(Currency {
            offer: CurrencyOffer {
                issuer,
                issuer_url: url.clone(),
            },
            wallet: IssuerClient::new(
                http.clone(),
                url,
                key.clone(),
                Some(CounterStore::beside_key(&key_path)),
            ),
        });
    }
    let payers = currencies
        .iter()
        .filter_map(|c| {
            let issuer = protocol::EntityId::parse(&c.offer.issuer).ok()?;
            let mut payer = clients::paywords::PaywordPayer::new(
                key.clone(),
                clients::wallet::Wallet::beside_key(&key_path),
                c.wallet.clone(),
            )
            .with_issuer(issuer);
            payer.chain_words = crate::peer::money::PEER_CHAIN_WORDS;
            Some((c.offer.issuer.clone(), payer))
        })
        .collect();
    let documents = Documents::open(options.share.as_deref(), &options.data_dir)
        .context("cannot index the shared documents")?;
    let credit_policy = node::credit::load_policy(&options.data_dir).map_err(anyhow::Error::msg)?;
    let credit_lines = node::credit::CreditBook::new(database.clone(), key.clone(), credit_policy);
    let peer = Arc::new(Peer {
        verifier: node::verifier::Verifier::start("peer-verifier"),
        key,
        db: database,
        options: options.peer.clone(),
        http,
        currencies,
        payers,
        documents,
        credit_lines,
        url: OnceLock::new(),
        primary_urls: options.neighbors.clone(),
        terms_seen: Mutex::default(),
        settling: Mutex::default(),
        counters: ClockCounter::default(),
        data_dir: options.data_dir.clone(),
    });
    let for_routes = peer.clone();
    let for_tasks = peer.clone();
    let http = node::http::spawn(
        "peer",
        &options.listen,
        options.tls.as_ref(),
        0,
        move |cfg| crate::server::routes(cfg, for_routes.clone()),
        move || {
            for_tasks.credit_lines.start();
            actix_web::rt::spawn(crate::peer::neighbors::resolve_primaries(for_tasks.clone()));
            actix_web::rt::spawn(crate::peer::upkeep::upkeep(for_tasks.clone()));
            for c in &for_tasks.currencies {
                actix_web::rt::spawn(crate::peer::money::watch_deposits(
                    for_tasks.clone(),
                    c.offer.issuer.clone(),
                ));
                actix_web::rt::spawn(crate::peer::money::redeem_words(
                    for_tasks.clone(),
                    c.offer.issuer.clone(),
                ));
            }
        },
    )?;
    let public = options
        .peer
        .public_url
        .clone()
        .unwrap_or_else(|| http.url.clone());
    let _ = peer.url.set(public.trim_end_matches('/').to_owned());
    Ok(RunningPeer {
        url: http.url.clone(),
        peer,
        http,
        _dir_lock: dir_lock,
    })
}
