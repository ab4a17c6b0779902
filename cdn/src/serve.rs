//! `cdn serve`: open the database, find the currency, start the publisher's HTTP server and its
//! scaling loop.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clients::issuer::IssuerClient;
use node::client::{ClientOptions, CounterStore};

use crate::publisher::{Publisher, PublisherOptions};

/// Longest start-up waits for the market to list an agent (to learn the currency).
pub const MARKET_WAIT_MS_MAX: u64 = 30_000;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub listen: String,
    pub market: String,
    pub database: Option<String>,
    /// The issuer of the currency views are sold in; by default the one most agents in the
    /// market's book accept.
    pub issuer_url: Option<String>,
    pub publisher: PublisherOptions,
    pub tls: Option<node::http::TlsFiles>,
    /// Pay agents from a bank account and be paid for views into it (`--bank`, DESIGN 14);
    /// the key still signs. The token's currency must be the one views are sold in.
    pub bank: Option<clients::bank::BankLink>,
}

pub struct RunningPublisher {
    pub url: String,
    pub publisher: Arc<Publisher>,
    pub http: node::http::HttpHandle,
    _dir_lock: node::datadir::DirLock,
}

/// Longest the publisher waits at shutdown for its issuer to redeem the viewers' paywords.
pub const SHUTDOWN_REDEEM_WAIT_MS_MAX: u64 = 5_000;

impl RunningPublisher {
    /// Serve until SIGINT/SIGTERM, then redeem the paywords still held.
    pub fn wait(self) -> std::io::Result<()> {
        let publisher = self.publisher.clone();
        let served = self.http.wait();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let client = node::client::SignedClient::new(
                reqwest::Client::new(),
                &publisher.issuer_url,
                publisher.key.clone(),
            );
            let counter = node::client::ClockCounter::default().next();
            let redeemed = tokio::time::timeout(
                Duration::from_millis(SHUTDOWN_REDEEM_WAIT_MS_MAX),
                publisher.redeem_words(&client, counter, true),
            )
            .await;
            if !matches!(redeemed, Ok(Ok(_))) {
                tracing::warn!("paywords not redeemed at shutdown: kept for after the restart");
            }
        });
        served
    }
}

/// The issuer most live offers accept: (url, entity).
async fn market_currency(
    http: &reqwest::Client,
    market: &str,
) -> anyhow::Result<(String, protocol::EntityId)> {
    let deadline = Instant::now() + Duration::from_millis(MARKET_WAIT_MS_MAX);
    loop {
        let listed: anyhow::Result<Vec<protocol::book::Listing>> = async {
            let v: serde_json::Value = http
                .get(format!("{market}/v1/offers"))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            Ok(serde_json::from_value(v["offers"].clone())?)
        }
        .await;
        let mut votes: std::collections::BTreeMap<(String, String), usize> = Default::default();
        for l in listed.unwrap_or_default() {
            if let Ok((_, offer)) = l
                .offer
                .open::<protocol::market::Offer>(protocol::market::OFFER_TYPE)
            {
                for c in offer.currencies {
                    *votes
                        .entry((c.issuer_url.clone(), c.issuer.to_string()))
                        .or_insert(0) += 1;
                }
            }
        }
        if let Some(((url, entity), _)) = votes.into_iter().max_by_key(|(_, n)| *n) {
            let entity = protocol::EntityId::parse(&entity)
                .map_err(|_| anyhow::anyhow!("the market lists a malformed issuer id"))?;
            return Ok((url, entity));
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "the market at {market} lists no agent offer after {MARKET_WAIT_MS_MAX} ms, so \
                 the currency is unknown; pass --issuer-url"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn start(options: ServeOptions) -> anyhow::Result<RunningPublisher> {
    std::fs::create_dir_all(&options.data_dir).with_context(|| {
        format!(
            "cannot create data directory {}",
            options.data_dir.display()
        )
    })?;
    node::client::check_url(&options.market)?;
    let dir_lock = node::datadir::lock(&options.data_dir, "cdn")?;
    let key_path = options.data_dir.join("identity.key");
    let key = Arc::new(node::keyfile::load_or_create(&key_path)?);
    let location = match &options.database {
        Some(url) => db::Location::parse(url),
        None => db::Location::sqlite_in(&options.data_dir, "cdn.sqlite"),
    };
    tracing::info!(database = %location.redacted(), entity = %key.entity(), "starting publisher");
    let database = db::Database::open(location, crate::migrations())?;
    let http_client = node::client::http_client(&ClientOptions::default())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (issuer_url, currency) = match &options.issuer_url {
        Some(url) => {
            let signed = node::client::SignedClient::new(http_client.clone(), url, key.clone());
            let entity = rt
                .block_on(signed.audience())
                .with_context(|| format!("the issuer at {url} does not answer"))?
                .clone();
            (url.clone(), entity)
        }
        None => rt.block_on(market_currency(&http_client, &options.market))?,
    };
    let mut wallet = IssuerClient::new(
        http_client.clone(),
        &issuer_url,
        key.clone(),
        Some(CounterStore::beside_key(&key_path)),
    );
    let mut pay_to = None;
    if let Some(link) = &options.bank {
        let access = link.access(http_client.clone())?;
        let account = rt
            .block_on(access.account())
            .with_context(|| format!("the bank at {} refused the token", link.url))?;
        anyhow::ensure!(
            account.issuer == currency.as_str(),
            "the bank token is for the currency of {}, but views are sold in {issuer_url}'s: \
             pass --issuer-url {}",
            account.issuer_url,
            account.issuer_url
        );
        pay_to = Some(account.name);
        wallet = wallet.through_bank(access);
    }
    let every = Duration::from_secs(options.publisher.scale_interval_s.max(1));
    // Agents are paid by payword unless CDN_PAYWORDS=0 (then by transfer, as before), or
    // through a bank (which pays plain transfers only).
    let paywords = clients::paywords::enabled("CDN_PAYWORDS") && options.bank.is_none();
    let words = paywords.then(|| {
        clients::paywords::PaywordPayer::new(
            key.clone(),
            clients::wallet::Wallet::beside_key(&key_path),
            wallet.clone(),
        )
        .with_issuer(currency.clone())
    });
    let credit_policy = node::credit::load_policy(&options.data_dir).map_err(anyhow::Error::msg)?;
    let mut publisher = Publisher::new(
        key,
        database,
        http_client,
        &options.market,
        wallet,
        words,
        currency,
        issuer_url,
        options.publisher.clone(),
    );
    publisher.pay_to = pay_to;
    // Lines and neighbours from DIR/credit.toml (DESIGN 12).
    publisher.credit_lines =
        node::credit::CreditBook::new(publisher.db.clone(), publisher.key.clone(), credit_policy);
    let publisher = Arc::new(publisher);
    let for_routes = publisher.clone();
    let for_tasks = publisher.clone();
    let http = node::http::spawn(
        "cdn",
        &options.listen,
        options.tls.as_ref(),
        0,
        move |cfg| crate::server::routes(cfg, for_routes.clone()),
        move || {
            for_tasks.credit_lines.start();
            actix_web::rt::spawn(redeem_loop(for_tasks.clone()));
            actix_web::rt::spawn(scale_loop(for_tasks, every));
        },
    )?;
    Ok(RunningPublisher {
        url: http.url.clone(),
        publisher,
        http,
        _dir_lock: dir_lock,
    })
}

/// Redeem viewers' paywords when due and follow the issuer's fraud proofs, forever.
async fn redeem_loop(publisher: Arc<Publisher>) {
    let client = node::client::SignedClient::new(
        reqwest::Client::new(),
        &publisher.issuer_url,
        publisher.key.clone(),
    );
    let counters = node::client::ClockCounter::default();
    let every = Duration::from_millis(publisher.options().payword_redeem_interval_ms.max(1));
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = publisher
            .redeem_words(&client, counters.next(), false)
            .await
        {
            tracing::warn!(error = %e, "payword redemption");
        }
    }
}

async fn scale_loop(publisher: Arc<Publisher>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = publisher.scale_round().await {
            tracing::warn!(error = %e, "scaling round failed");
        }
    }
}
