//! `bank serve`: open the database, learn each currency from its issuer, start the HTTP
//! server, the deposit watchers and the resender of pending payments.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use clients::issuer::IssuerClient;
use node::client::{ClientOptions, CounterStore};
use protocol::KeyPair;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub listen: String,
    pub database: Option<String>,
    /// The issuers of the currencies the bank takes.
    pub issuers: Vec<String>,
    /// The host customers' names carry (`bob@HOST`); the listening address when not given.
    pub name_host: Option<String>,
    /// How long a web session lasts.
    pub session_ttl_ms: u64,
    /// Mark session cookies `Secure` although this process serves plain HTTP (a reverse
    /// proxy terminates TLS); they always are with `tls`.
    pub secure_cookies: bool,
    pub tls: Option<node::http::TlsFiles>,
    /// Run the exchange (`--exchange`), settling trades this way.
    pub exchange: Option<crate::exchange::server::ExchangeConfig>,
}

/// One currency the bank takes.
pub struct Currency {
    /// The issuer's entity id.
    pub issuer: String,
    pub url: String,
    pub code: String,
    pub fee_flat: u64,
    pub fee_bps: u64,
    pub max_amount: u64,
    /// The bank's own wallet there: it holds every opaque customer's money.
    pub wallet: IssuerClient,
}

pub struct Bank {
    pub key: Arc<KeyPair>,
    /// The data directory: transparent customers' keys live under it (`crate::custody`).
    pub data_dir: std::path::PathBuf,
    /// One HTTP client for everything the bank asks (names resolved per payment included).
    pub http: reqwest::Client,
    pub db: db::Database,
    pub currencies: Vec<Currency>,
    pub counters: CounterStore,
    /// The host of customers' names, set once the server listens.
    pub name_host: OnceLock<String>,
    /// Bumped after deposits are credited: wakes the apps' long polls.
    pub credited: tokio::sync::watch::Sender<u64>,
    pub session_ttl_ms: u64,
    /// Session cookies are `Secure` when the bank serves HTTPS.
    pub secure_cookies: bool,
    /// The exchange, when the bank runs one.
    pub exchange: Option<crate::exchange::server::ExchangeConfig>,
    /// Records (DESIGN 11): the exchange's `trade` steps, agreed with the traders.
    pub records: Arc<node::records::RecordBook>,
}

impl Bank {
    pub fn currency(&self, issuer: &str) -> Option<&Currency> {
        self.currencies.iter().find(|c| c.issuer == issuer)
    }

    pub fn name_host(&self) -> &str {
        self.name_host.get().map(String::as_str).unwrap_or("")
    }
}

pub struct RunningBank {
    pub url: String,
    pub bank: Arc<Bank>,
    pub http: node::http::HttpHandle,
    _dir_lock: node::datadir::DirLock,
}

impl RunningBank {
    pub fn wait(self) -> std::io::Result<()> {
        self.http.wait()
    }
}

/// Open the bank's database (migrated) for the CLI's offline commands.
pub fn open_database(
    data_dir: &std::path::Path,
    database: Option<&str>,
) -> anyhow::Result<db::Database> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let location = match database {
        Some(url) => db::Location::parse(url),
        None => db::Location::sqlite_in(data_dir, "bank.sqlite"),
    };
    Ok(db::Database::open(location, crate::migrations())?)
}

pub fn start(options: ServeOptions) -> anyhow::Result<RunningBank> {
    if options.issuers.is_empty() {
        anyhow::bail!("a bank takes at least one currency: pass --issuer URL");
    }
    for url in &options.issuers {
        node::client::check_url(url)?;
    }
    let database = open_database(&options.data_dir, options.database.as_deref())?;
    let dir_lock = node::datadir::lock(&options.data_dir, "bank")?;
    let key_path = options.data_dir.join("identity.key");
    let key = Arc::new(node::keyfile::load_or_create(&key_path)?);
    tracing::info!(entity = %key.entity(), "starting bank");
    let http = node::client::http_client(&ClientOptions::default())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut currencies: Vec<Currency> = Vec::new();
    for url in &options.issuers {
        let wallet = IssuerClient::new(
            http.clone(),
            url,
            key.clone(),
            Some(CounterStore::beside_key(&key_path)),
        );
        let descriptor = rt
            .block_on(wallet.signed().descriptor())
            .with_context(|| format!("the issuer at {url} does not answer"))?;
        let currency = rt
            .block_on(wallet.currency())
            .with_context(|| format!("{url} is not a usable issuer"))?;
        let issuer = rt.block_on(wallet.signed().audience())?.to_string();
        if currencies.iter().any(|c| c.issuer == issuer) {
            continue;
        }
        let fee = |name: &str| descriptor["fees"][name].as_u64().unwrap_or(0);
        let mut conn = database.get()?;
        crate::store::upsert_currency(&mut conn, &issuer, url, &currency.code)?;
        currencies.push(Currency {
            issuer,
            url: url.clone(),
            code: currency.code,
            fee_flat: fee("transfer_flat"),
            fee_bps: fee("transfer_bps"),
            max_amount: descriptor["limits"]["max_amount"]
                .as_u64()
                .unwrap_or(u64::MAX),
            wallet,
        });
    }
    let (credited, _) = tokio::sync::watch::channel(0u64);
    let records = crate::exchange::records::book(database.clone(), key.clone());
    let bank = Arc::new(Bank {
        key,
        data_dir: options.data_dir.clone(),
        http,
        db: database,
        currencies,
        counters: CounterStore::beside_key(&key_path),
        name_host: OnceLock::new(),
        credited,
        session_ttl_ms: options.session_ttl_ms,
        secure_cookies: options.secure_cookies || options.tls.is_some(),
        exchange: options.exchange.clone(),
        records,
    });
    let for_routes = bank.clone();
    let for_tasks = bank.clone();
    let http = node::http::spawn(
        "bank",
        &options.listen,
        options.tls.as_ref(),
        0,
        move |cfg| crate::server::routes(cfg, for_routes.clone()),
        move || {
            for c in &for_tasks.currencies {
                actix_web::rt::spawn(crate::watch::follow_deposits(
                    for_tasks.clone(),
                    c.issuer.clone(),
                ));
            }
            actix_web::rt::spawn(crate::pay::resend_pending(for_tasks.clone()));
            if for_tasks.exchange.is_some() {
                actix_web::rt::spawn(crate::exchange::server::expire_forever(for_tasks.clone()));
            }
        },
    )?;
    let host = options.name_host.clone().unwrap_or_else(|| {
        http.url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_owned()
    });
    let _ = bank.name_host.set(host);
    Ok(RunningBank {
        url: http.url.clone(),
        bank,
        http,
        _dir_lock: dir_lock,
    })
}
