//! The `storage-agent` binary: `init`, `serve`, `status`.
//! Exit codes: 0 success, 1 any error (one line on stderr), 2 bad usage.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use storage_agent::config::{AgentConfig, CurrencyConfig};

#[derive(Parser)]
#[command(
    name = "storage-agent",
    version,
    about = "Sell spare disk as signed, paid, audited storage contracts"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write DIR/config.toml and DIR/identity.key; repeat --issuer to accept several currencies
    Init {
        /// Data directory (key, configuration, database, objects)
        #[arg(long)]
        data: PathBuf,
        /// Issuer URL of an accepted currency (repeatable)
        #[arg(long, required = true)]
        issuer: Vec<String>,
        /// Space to sell: bytes, or with a unit (50GB, 500GiB)
        #[arg(long, default_value_t = storage_agent::config::CAPACITY_DEFAULT, value_parser = node::cli::parse_bytes)]
        capacity: u64,
        /// Contract price for holding 1 GiB for one day, in minor units (rounded up)
        #[arg(long, default_value_t = 100)]
        storage_per_gib_day: u64,
        /// Charge per KiB written, in minor units (rounded up)
        #[arg(long, default_value_t = 1)]
        write_per_kib: u64,
        /// Charge per KiB read, in minor units (rounded up)
        #[arg(long, default_value_t = 1)]
        read_per_kib: u64,
        /// Least any contract costs, in minor units
        #[arg(long, default_value_t = 10)]
        contract_min: u64,
        /// Seconds objects are kept after a contract ends
        #[arg(long, default_value_t = storage_agent::config::GRACE_S_DEFAULT)]
        grace_s: u64,
        /// `file` (default: DIR/objects), `s3://bucket/prefix` (credentials from AWS_* variables) or `memory://`
        #[arg(long, default_value = "file")]
        store: String,
        /// Redeem a currency's paywords once they are worth this much, in minor units (and
        /// always before a chain expires, and at shutdown)
        #[arg(long, default_value_t = node::paywords::REDEEM_THRESHOLD_DEFAULT)]
        payword_redeem_threshold: u64,
        /// How often paywords due for redemption are looked for, in milliseconds
        #[arg(long, default_value_t = storage_agent::config::PAYWORD_REDEEM_INTERVAL_MS_DEFAULT)]
        payword_redeem_interval_ms: u64,
        /// Be paid into a bank account (seed 000 section 5.2): the bank's URL. Buyers then pay
        /// your name at the bank (`you@bank`) in the token's currency, and the agent asks the
        /// bank whether a payment arrived
        #[arg(long, requires = "bank_token")]
        bank: Option<String>,
        /// The app token your bank granted this agent (`bank token grant`, or the bank's web
        /// page): it names the account and the currency
        #[arg(
            long,
            env = "AGENT_BANK_TOKEN",
            requires = "bank",
            hide_env_values = true
        )]
        bank_token: Option<String>,
        /// Replace an existing configuration
        #[arg(long)]
        force: bool,
    },
    /// Serve contracts; prints `listening on http://HOST:PORT`
    Serve {
        /// Data directory (key, configuration, database, objects)
        #[arg(long, env = "AGENT_DATA")]
        data: PathBuf,
        /// Address to listen on, HOST:PORT (port 0 picks a free port)
        #[arg(long, env = "AGENT_LISTEN", default_value = "127.0.0.1:7300")]
        listen: String,
        /// Market to post the signed offer to, at start and every --heartbeat-s
        #[arg(long, env = "AGENT_MARKET")]
        market: Option<String>,
        /// Seconds between offer heartbeats to the market
        #[arg(long, default_value_t = 60)]
        heartbeat_s: u64,
        /// PostgreSQL URL for the metadata; SQLite under --data when absent
        #[arg(long, env = "AGENT_DATABASE")]
        database: Option<String>,
        /// PEM certificate chain to serve HTTPS with (needs --tls-key)
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// The URL buyers reach this agent at, e.g. http://203.0.113.7:7300 (needed with
        /// --listen 0.0.0.0:PORT; default: the listen address, or endpoint in config.toml)
        #[arg(long, env = "AGENT_ENDPOINT")]
        endpoint: Option<String>,
    },
    /// Accept one more currency, at its own prices (restart the agent to offer it)
    Currency {
        #[command(subcommand)]
        command: CurrencyCmd,
    },
    /// Space, contracts and earnings, read from the data directory
    Status {
        /// Data directory (key, configuration, database, objects)
        #[arg(long, env = "AGENT_DATA")]
        data: PathBuf,
        /// PostgreSQL URL (postgres://...); SQLite under --data when absent
        #[arg(long)]
        database: Option<String>,
        /// Print one JSON object instead of text (amounts in minor units)
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum CurrencyCmd {
    /// Add a currency to DIR/config.toml: its issuer, prices in it, and optionally the bank
    /// account payments in it go to
    Add {
        /// Data directory (key, configuration, database, objects)
        #[arg(long, env = "AGENT_DATA")]
        data: PathBuf,
        /// Issuer URL of the currency
        #[arg(long)]
        issuer: String,
        /// Contract price for holding 1 GiB for one day, in minor units of this currency
        #[arg(long, default_value_t = 100)]
        storage_per_gib_day: u64,
        /// Charge per KiB written, in minor units of this currency
        #[arg(long, default_value_t = 1)]
        write_per_kib: u64,
        /// Charge per KiB read, in minor units of this currency
        #[arg(long, default_value_t = 1)]
        read_per_kib: u64,
        /// Least any contract costs, in minor units of this currency
        #[arg(long, default_value_t = 10)]
        contract_min: u64,
        /// Be paid in this currency into a bank account: the bank's URL
        #[arg(long, requires = "bank_token")]
        bank: Option<String>,
        /// The app token the bank granted this agent for this currency
        #[arg(
            long,
            env = "AGENT_BANK_TOKEN",
            requires = "bank",
            hide_env_values = true
        )]
        bank_token: Option<String>,
    },
}

/// The currency of the issuer at `url` (its entity from its descriptor), at these prices.
async fn probe_currency(
    http: &reqwest::Client,
    url: String,
    prices: [u64; 4],
) -> anyhow::Result<CurrencyConfig> {
    node::client::check_url(&url)?;
    let probe = node::client::SignedClient::new(
        http.clone(),
        &url,
        std::sync::Arc::new(protocol::KeyPair::generate()?),
    );
    let d = probe
        .descriptor()
        .await
        .with_context(|| format!("cannot read the issuer descriptor at {url}"))?;
    anyhow::ensure!(
        d["role"] == "issuer",
        "{url} is not an LCP issuer (role {})",
        d["role"]
    );
    let [storage_per_gib_day, write_per_kib, read_per_kib, contract_min] = prices;
    Ok(CurrencyConfig {
        issuer: d["entity"].as_str().unwrap_or_default().to_owned(),
        issuer_url: url,
        storage_per_gib_day,
        write_per_kib,
        read_per_kib,
        contract_min,
        bank: None,
    })
}

/// Days `status` shows.
const STATUS_DAYS: i64 = 7;

/// The last `days` UTC days of the history (today included), each with its rows by currency.
async fn last_days(
    database: &db::Database,
    days: i64,
) -> anyhow::Result<Vec<(String, Vec<protocol::agent::HistoryPeriod>)>> {
    use storage_agent::agent::history::{periods, DAY_S};
    let now = node::now_s();
    let first = now - now.rem_euclid(DAY_S) - (days - 1) * DAY_S;
    let rows = database
        .run(move |conn| {
            periods(conn, "day", first, now + 1).map_err(|e| anyhow::anyhow!("history: {e}"))
        })
        .await?;
    Ok((0..days)
        .map(|i| {
            let start = first + i * DAY_S;
            let day = protocol::market::format_rfc3339(start)
                .get(..10)
                .unwrap_or_default()
                .to_owned();
            let of_day = rows
                .iter()
                .filter(|p| p.start_s as i64 == start)
                .cloned()
                .collect();
            (day, of_day)
        })
        .collect())
}

fn main() {
    let cli = Cli::parse();
    if matches!(cli.command, Cmd::Serve { .. }) {
        node::cli::tune_malloc_for_service();
    }
    let level = if matches!(cli.command, Cmd::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    node::cli::init_logging(level);
    node::cli::exit_on_error(run(cli));
}

/// `amount` in the issuer's currency (`7.90 LCU`), or in minor units when the issuer does not
/// answer quickly: `status` works while everything is stopped.
async fn show_earning(issuer_url: &str, amount: u64) -> String {
    match clients::issuer::currency_at(issuer_url).await {
        Some(c) => c.show(amount),
        None => format!("{amount} (minor units)"),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Ask the bank whose `token` is and attach the account to the currency it is in (one of
/// the `--issuer`s): offers then name it as `pay_to`.
async fn bank_account(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    currencies: &mut [CurrencyConfig],
) -> anyhow::Result<()> {
    let access = clients::bank::BankAccess::new(http.clone(), url, token)?;
    let account = access
        .account()
        .await
        .with_context(|| format!("the bank at {url} does not accept this token"))?;
    let currency = currencies
        .iter_mut()
        .find(|c| c.issuer == account.issuer)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the token is for the currency of {} ({}), which is not one of --issuer: add                  --issuer {}",
                account.issuer_url,
                account.issuer,
                account.issuer_url
            )
        })?;
    eprintln!(
        "paid in the currency of {} into {} at {url}",
        currency.issuer_url, account.name
    );
    currency.bank = Some(storage_agent::config::BankAccount {
        url: access.base_url().to_owned(),
        token: token.trim().to_owned(),
        name: account.name,
    });
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Init {
            data,
            issuer,
            capacity,
            storage_per_gib_day,
            write_per_kib,
            read_per_kib,
            contract_min,
            grace_s,
            store,
            payword_redeem_threshold,
            payword_redeem_interval_ms,
            bank,
            bank_token,
            force,
        } => {
            let config_path = data.join(storage_agent::config::CONFIG_FILE);
            anyhow::ensure!(
                force || !config_path.exists(),
                "{} exists; pass --force to replace it",
                config_path.display()
            );
            let http = node::client::http_client(&node::client::ClientOptions::default())?;
            let rt = runtime()?;
            let mut currencies = Vec::new();
            let prices = [
                storage_per_gib_day,
                write_per_kib,
                read_per_kib,
                contract_min,
            ];
            for url in issuer {
                currencies.push(rt.block_on(probe_currency(&http, url, prices))?);
            }
            if let (Some(url), Some(token)) = (bank, bank_token) {
                rt.block_on(bank_account(&http, &url, &token, &mut currencies))?;
            }
            let config = AgentConfig {
                capacity_bytes: capacity,
                block_bytes_max: capacity,
                grace_s,
                store,
                currencies,
                payword_redeem_threshold,
                payword_redeem_interval_ms,
                ..AgentConfig::default()
            };
            config.validate()?;
            // Only now: a refused init leaves no empty directory behind.
            std::fs::create_dir_all(&data)
                .with_context(|| format!("cannot create {}", data.display()))?;
            let disk = storage_agent::store::Store::open(&config.store, &data)
                .ok()
                .and_then(|s| s.available_bytes());
            if let Some(disk) = disk.filter(|d| capacity > *d) {
                eprintln!(
                    "warning: {}",
                    storage_agent::serve::capacity_warning(capacity, disk)
                );
            }
            let key = node::keyfile::load_or_create(&data.join("identity.key"))?;
            config.save(&data)?;
            let token = storage_agent::owner::load_or_create(&data)?;
            node::outln!("{}", key.entity());
            eprintln!(
                "wrote {}, {} and {} (the dashboard's token for other machines: open \
                 http://HOST:PORT/?token={token}; from this machine no token is needed)",
                config_path.display(),
                data.join("identity.key").display(),
                storage_agent::owner::token_path(&data).display()
            );
            Ok(())
        }
        Cmd::Serve {
            data,
            listen,
            market,
            heartbeat_s,
            database,
            tls_cert,
            tls_key,
            endpoint,
        } => {
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(node::http::TlsFiles { cert, key }),
                _ => None,
            };
            let running = storage_agent::serve::start(storage_agent::serve::ServeOptions {
                data_dir: data,
                listen,
                database,
                market,
                heartbeat_s,
                tls,
                endpoint,
            })
            .context("the agent could not start")?;
            node::cli::announce_listening(&running.url)?;
            running.wait()?;
            Ok(())
        }
        Cmd::Currency {
            command:
                CurrencyCmd::Add {
                    data,
                    issuer,
                    storage_per_gib_day,
                    write_per_kib,
                    read_per_kib,
                    contract_min,
                    bank,
                    bank_token,
                },
        } => {
            let mut config = AgentConfig::load(&data)?;
            let http = node::client::http_client(&node::client::ClientOptions::default())?;
            let rt = runtime()?;
            let prices = [
                storage_per_gib_day,
                write_per_kib,
                read_per_kib,
                contract_min,
            ];
            let added = rt.block_on(probe_currency(&http, issuer, prices))?;
            anyhow::ensure!(
                !config.currencies.iter().any(|c| c.issuer == added.issuer),
                "the agent accepts the currency of {} already (edit its prices in {})",
                added.issuer_url,
                data.join(storage_agent::config::CONFIG_FILE).display()
            );
            let url = added.issuer_url.clone();
            config.currencies.push(added);
            if let (Some(bank_url), Some(token)) = (bank, bank_token) {
                // Only the currency added: an accepted currency moved to a bank would keep a
                // deposit cursor numbered by its issuer (see ARCHITECTURE).
                let added = config.currencies.len() - 1;
                rt.block_on(bank_account(
                    &http,
                    &bank_url,
                    &token,
                    &mut config.currencies[added..],
                ))?;
            }
            config.validate()?;
            config.save(&data)?;
            eprintln!("added the currency of {url}; restart the agent to offer it");
            Ok(())
        }
        Cmd::Status {
            data,
            database,
            json,
        } => {
            let config = AgentConfig::load(&data)?;
            let key = node::keyfile::load(&data.join("identity.key"))?;
            let location = match database {
                Some(url) => db::Location::parse(&url),
                None => db::Location::sqlite_in(&data, "agent.sqlite"),
            };
            let rt = runtime()?;
            let (summary, week) = rt.block_on(async {
                let database = db::Database::open(location, storage_agent::migrations())?;
                let summary =
                    storage_agent::agent::summarize(&database, &config, key.entity()).await?;
                let week = last_days(&database, STATUS_DAYS).await?;
                Ok::<_, anyhow::Error>((summary, week))
            })?;
            if json {
                let mut value = serde_json::to_value(&summary)?;
                if let Some(obj) = value.as_object_mut() {
                    obj.insert("history".into(), serde_json::to_value(&week)?);
                }
                node::outln!("{value}");
            } else {
                node::outln!("agent     {}", summary.entity);
                node::outln!(
                    "space     {} free, {} used, {} reserved of {} bytes",
                    summary.free_bytes,
                    summary.used_bytes,
                    summary.reserved_bytes,
                    summary.capacity_bytes
                );
                node::outln!(
                    "contracts {} active, {} pending payment, {} ended; {} objects",
                    summary.contracts_active,
                    summary.contracts_pending,
                    summary.contracts_ended,
                    summary.objects
                );
                for e in &summary.earnings {
                    node::outln!(
                        "earned    {} from {} ({})",
                        rt.block_on(show_earning(&e.issuer_url, e.income)),
                        e.issuer_url,
                        e.issuer
                    );
                }
                node::outln!("audits    {} answered", summary.audits_answered);
                // Each currency asked of its issuer once.
                let currencies: std::collections::HashMap<&str, Option<_>> = summary
                    .earnings
                    .iter()
                    .map(|e| {
                        let c = rt.block_on(clients::issuer::currency_at(&e.issuer_url));
                        (e.issuer.as_str(), c)
                    })
                    .collect();
                node::outln!();
                node::outln!("last {STATUS_DAYS} days (UTC)");
                node::outln!(
                    "{:<10}  {:>10}  {:>10}  {:>6}  earned",
                    "day",
                    "written",
                    "read",
                    "audits"
                );
                for (day, rows) in &week {
                    let bytes = |f: fn(&protocol::agent::HistoryPeriod) -> u64| {
                        rows.iter().map(f).fold(0u64, u64::saturating_add)
                    };
                    let mut earned = Vec::new();
                    for p in rows.iter().filter(|p| !p.currency.is_empty()) {
                        let shown = match currencies.get(p.currency.as_str()) {
                            Some(Some(c)) => c.show(p.earned.total),
                            _ => format!("{} (minor units)", p.earned.total),
                        };
                        earned.push(shown);
                    }
                    node::outln!(
                        "{:<10}  {:>10}  {:>10}  {:>6}  {}",
                        day,
                        node::cli::format_bytes(bytes(|p| p.bytes_written)),
                        node::cli::format_bytes(bytes(|p| p.bytes_read)),
                        bytes(|p| p.audits_answered),
                        if earned.is_empty() {
                            "-".to_owned()
                        } else {
                            earned.join(", ")
                        }
                    );
                }
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
