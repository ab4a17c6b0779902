//! The `cdn` binary: `serve` (the publisher), `publish`, `gateway` (the viewer's side) and
//! `status`. Exit codes: 0 success, 1 any error (one line on stderr), 2 bad usage.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use cdn::publisher::{PublisherOptions, Status};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cdn",
    version,
    about = "Sell video views; agents serve the bytes; viewers stream through a local gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the publisher service; prints `listening on http://HOST:PORT`
    Serve {
        /// Data directory (key, configuration, database, objects)
        #[arg(long, env = "CDN_DATA")]
        data: PathBuf,
        /// Address to listen on, HOST:PORT (port 0 picks a free port)
        #[arg(long, env = "CDN_LISTEN", default_value = "127.0.0.1:7100")]
        listen: String,
        /// Market URL, e.g. http://127.0.0.1:7200
        #[arg(long, env = "MARKET_URL")]
        market: String,
        /// PostgreSQL URL; SQLite under --data when absent
        #[arg(long, env = "CDN_DATABASE")]
        database: Option<String>,
        /// The issuer views are priced in (default: the currency most agents accept)
        #[arg(long)]
        issuer_url: Option<String>,
        /// Agents to hold contracts with
        #[arg(long, default_value_t = PublisherOptions::default().agents)]
        agents: usize,
        /// Block bought on each agent, MiB
        #[arg(long, default_value_t = PublisherOptions::default().block_bytes >> 20)]
        block_mib: u64,
        /// Length of the contracts bought, in days
        #[arg(long, default_value_t = PublisherOptions::default().contract_days)]
        contract_days: u64,
        /// Whole-content reads per replica in one round that add a replica
        #[arg(long, default_value_t = PublisherOptions::default().hot_reads_per_replica)]
        hot_reads_per_replica: u64,
        /// Seconds without demand after which extra replicas lapse
        #[arg(long, default_value_t = PublisherOptions::default().cold_after_s)]
        cold_after_s: u64,
        /// Seconds between scaling rounds
        #[arg(long, default_value_t = PublisherOptions::default().scale_interval_s)]
        scale_interval_s: u64,
        /// Sell pieces as they are watched, at this price each in minor units (paid by
        /// payword with each window of instructions), instead of whole views at the content's
        /// price; 0 sells whole views
        #[arg(long, default_value_t = 0)]
        price_per_piece: u64,
        /// How often viewers' paywords due for redemption are looked at, in milliseconds
        #[arg(long, default_value_t = PublisherOptions::default().payword_redeem_interval_ms)]
        payword_redeem_interval_ms: u64,
        /// Free views (price 0) are not free for a viewer whose agreed records at the market
        /// show it consumed more than it contributed by more than this (minor units; seed
        /// 004): it pays the view's read cost ahead, or is answered 402 free_rider. 0: off
        #[arg(long, default_value_t = 0)]
        free_rider_threshold: u64,
        /// PEM certificate chain to serve HTTPS with (needs --tls-key)
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Pay agents from a bank account, and be paid for views into it: the bank's URL
        /// (the key still signs; the token's currency must be the one views are sold in)
        #[arg(long, env = "CDN_BANK", requires = "bank_token")]
        bank: Option<String>,
        /// The app token the bank granted this publisher (`bank token grant`)
        #[arg(
            long,
            env = "CDN_BANK_TOKEN",
            requires = "bank",
            hide_env_values = true
        )]
        bank_token: Option<String>,
    },
    /// Publish FILE: pieces stored on several agents, a signed manifest
    Publish {
        /// The video file to publish
        file: PathBuf,
        /// Publisher URL, e.g. http://127.0.0.1:7100
        #[arg(long, env = "CDN_PUBLISHER")]
        publisher: String,
        /// The publisher's key (its DIR/identity.key)
        #[arg(long, env = "CDN_KEY")]
        key: PathBuf,
        /// Agents each piece is stored on
        #[arg(long, default_value_t = 2)]
        replicas: u32,
        /// Price of one view, in minor units
        #[arg(long, default_value_t = 100)]
        price_per_view: u64,
        /// Piece size, in KiB
        #[arg(long, default_value_t = 1024)]
        piece_kib: u64,
        /// Title shown to viewers (default: the file name)
        #[arg(long)]
        title: Option<String>,
        /// MIME type (default from the file's extension)
        #[arg(long)]
        mime: Option<String>,
        /// Print one JSON object instead of text (amounts in minor units)
        #[arg(long)]
        json: bool,
    },
    /// Run the viewer's gateway: GET /v/{content} streams, /watch/{content} plays
    Gateway {
        /// Address to listen on, HOST:PORT (port 0 picks a free port)
        #[arg(long, env = "CDN_GATEWAY_LISTEN", default_value = "127.0.0.1:7400")]
        listen: String,
        /// Publisher URL, e.g. http://127.0.0.1:7100
        #[arg(long, env = "CDN_PUBLISHER")]
        publisher: String,
        /// The viewer's wallet key (pays for views)
        #[arg(long, env = "CDN_WALLET")]
        wallet: PathBuf,
        /// Pieces fetched ahead of the player
        #[arg(long, default_value_t = 6)]
        ahead_pieces: u64,
        /// Pieces kept in memory
        #[arg(long, default_value_t = 48)]
        cache_pieces: usize,
        /// Milliseconds before a slow replica is given up for another
        #[arg(long, default_value_t = 3000)]
        piece_timeout_ms: u64,
        /// Pay for views from a bank account instead of the wallet: the bank's URL (the
        /// wallet key still signs the gateway's requests)
        #[arg(long, env = "CDN_BANK", requires = "bank_token")]
        bank: Option<String>,
        /// The app token the bank granted this gateway (`bank token grant`)
        #[arg(
            long,
            env = "CDN_BANK_TOKEN",
            requires = "bank",
            hide_env_values = true
        )]
        bank_token: Option<String>,
    },
    /// The viewer's record chain (DESIGN 11): each view its gateways recorded with a
    /// publisher, and whether the publisher agreed (unanswered ones are sent again first when
    /// --publisher is given)
    Records {
        /// The viewer's wallet key (its chain is beside it, in <key>.records/)
        #[arg(long, env = "CDN_WALLET")]
        wallet: PathBuf,
        /// Publisher URL to send unanswered view records to, e.g. http://127.0.0.1:7100
        #[arg(long, env = "CDN_PUBLISHER")]
        publisher: Option<String>,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// The publisher's status: catalog, replicas, views, contracts, scaling events
    Status {
        /// Publisher URL, e.g. http://127.0.0.1:7100
        #[arg(long, env = "CDN_PUBLISHER")]
        publisher: String,
        /// Print one JSON object instead of text (amounts in minor units)
        #[arg(long)]
        json: bool,
    },
}

/// The publisher's `GET /v1/status`.
async fn publisher_status(publisher: &str) -> anyhow::Result<serde_json::Value> {
    node::client::check_url(publisher)?;
    let http = node::client::http_client(&node::client::ClientOptions::default())?;
    let url = format!("{}/v1/status", publisher.trim_end_matches('/'));
    let resp = http.get(&url).send().await?;
    anyhow::ensure!(
        resp.status().is_success(),
        "{url} answered HTTP {}: is {publisher} a publisher (cdn serve)?",
        resp.status()
    );
    Ok(resp.json().await?)
}

fn main() {
    let cli = Cli::parse();
    if matches!(cli.command, Cmd::Serve { .. } | Cmd::Gateway { .. }) {
        node::cli::tune_malloc_for_service();
    }
    let level = if matches!(cli.command, Cmd::Serve { .. } | Cmd::Gateway { .. }) {
        "info"
    } else {
        "warn"
    };
    node::cli::init_logging(level);
    node::cli::exit_on_error(run(cli));
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn listening(url: &str) -> anyhow::Result<()> {
    Ok(node::cli::announce_listening(url)?)
}

/// `--bank URL --bank-token T`, checked for form now: a typo is one line at start, not a
/// failed payment later.
fn bank_link(
    url: Option<String>,
    token: Option<String>,
) -> anyhow::Result<Option<clients::bank::BankLink>> {
    let (Some(url), Some(token)) = (url, token) else {
        return Ok(None);
    };
    let link = clients::bank::BankLink {
        url,
        token: token.trim().to_owned(),
    };
    link.access(reqwest::Client::new())?;
    Ok(Some(link))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Serve {
            data,
            listen,
            market,
            database,
            issuer_url,
            agents,
            block_mib,
            contract_days,
            hot_reads_per_replica,
            cold_after_s,
            scale_interval_s,
            price_per_piece,
            payword_redeem_interval_ms,
            free_rider_threshold,
            tls_cert,
            tls_key,
            bank,
            bank_token,
        } => {
            anyhow::ensure!((1..=64).contains(&agents), "--agents must be 1 to 64");
            let bank = bank_link(bank, bank_token)?;
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(node::http::TlsFiles { cert, key }),
                _ => None,
            };
            let running = cdn::serve::start(cdn::serve::ServeOptions {
                data_dir: data,
                listen,
                market,
                database,
                issuer_url,
                publisher: PublisherOptions {
                    agents,
                    block_bytes: block_mib
                        .checked_mul(1 << 20)
                        .context("--block-mib is too large")?,
                    contract_days,
                    hot_reads_per_replica,
                    cold_after_s,
                    scale_interval_s,
                    price_per_piece,
                    payword_redeem_interval_ms,
                    free_rider_threshold,
                    ..PublisherOptions::default()
                },
                tls,
                bank,
            })
            .context("the publisher could not start")?;
            listening(&running.url)?;
            running.wait()?;
            Ok(())
        }
        Cmd::Publish {
            file,
            publisher,
            key,
            replicas,
            price_per_view,
            piece_kib,
            title,
            mime,
            json,
        } => {
            let key = Arc::new(
                node::keyfile::load(&key)
                    .with_context(|| format!("cannot load the key {}", key.display()))?,
            );
            let options = cdn::publish::PublishOptions {
                publisher_url: publisher.trim_end_matches('/').to_owned(),
                title,
                mime,
                replicas,
                price_per_view,
                piece_bytes: piece_kib
                    .checked_mul(1024)
                    .context("--piece-kib is too large")?,
                progress: !json,
            };
            let rt = runtime()?;
            let summary = rt.block_on(cdn::publish::publish(&file, key, &options))?;
            if json {
                node::outln!("{}", serde_json::to_string(&summary)?);
            } else {
                // The price in the publisher's currency (minor units if it cannot say).
                let units = rt
                    .block_on(publisher_status(&options.publisher_url))
                    .ok()
                    .and_then(|v| serde_json::from_value::<Status>(v).ok())
                    .and_then(|s| s.currency_units);
                node::outln!(
                    "published {} ({} bytes, {} pieces x {} replicas, {} per view)",
                    summary.content,
                    summary.size,
                    summary.pieces,
                    summary.replicas,
                    cdn::page::show_amount(units.as_ref(), summary.price_per_view)
                );
                node::outln!("watch it through a gateway at /watch/{}", summary.content);
            }
            Ok(())
        }
        Cmd::Gateway {
            listen,
            publisher,
            wallet,
            ahead_pieces,
            cache_pieces,
            piece_timeout_ms,
            bank,
            bank_token,
        } => {
            let mut options = cdn::gateway::GatewayOptions::new(&publisher, wallet);
            options.bank = bank_link(bank, bank_token)?;
            options.listen = listen;
            options.ahead_pieces = ahead_pieces.clamp(0, 64);
            options.cache_pieces = cache_pieces.clamp(2, 4096);
            options.piece_timeout_ms = piece_timeout_ms.max(100);
            let running = cdn::gateway::start(options).context("the gateway could not start")?;
            listening(&running.url)?;
            running.wait()?;
            Ok(())
        }
        Cmd::Records {
            wallet,
            publisher,
            json,
        } => {
            let key = std::sync::Arc::new(
                node::keyfile::load(&wallet)
                    .with_context(|| format!("cannot load the wallet key {}", wallet.display()))?,
            );
            if let Some(url) = publisher {
                node::client::check_url(&url)?;
                let http = node::client::http_client(&node::client::ClientOptions::default())?;
                let server = node::client::SignedClient::new(http, &url, key.clone());
                runtime()?.block_on(clients::records::resend_unanswered(
                    &wallet,
                    key.clone(),
                    &[server],
                ))?;
            }
            let shown = clients::records::RecordChain::open(&wallet, key)?.shown();
            if json {
                node::outln!("{}", serde_json::to_string(&shown)?);
            } else {
                for line in clients::records::shown_lines(&shown) {
                    node::outln!("{line}");
                }
            }
            Ok(())
        }
        Cmd::Status { publisher, json } => {
            node::client::check_url(&publisher)?;
            let status = runtime()?.block_on(publisher_status(&publisher))?;
            if json {
                node::outln!("{status}");
                return Ok(());
            }
            let status: Status = serde_json::from_value(status)
                .context("the publisher's status is not the document this cdn reads")?;
            let units = status.currency_units.as_ref();
            node::outln!(
                "publisher {} balance {}",
                status.publisher,
                status
                    .balance
                    .map_or_else(|| "null".to_owned(), |b| cdn::page::show_amount(units, b))
            );
            for c in &status.contents {
                node::outln!(
                    "{} {:<30} {:>10} bytes  replicas {}-{} (base {})  views {}  income {}",
                    c.content,
                    c.title,
                    c.size,
                    c.replicas_min,
                    c.replicas_max,
                    c.replicas_base,
                    c.views,
                    cdn::page::show_amount(units, c.income)
                );
            }
            for e in &status.events {
                node::outln!("{} {}", e.time, e.what);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_flag_has_help() {
        node::cli::assert_every_flag_has_help(&<super::Cli as clap::CommandFactory>::command());
    }
}
