//! The `bank` binary: `serve`, `customer add|list`, `token grant|list|revoke`. Exit codes: 0
//! success, 1 any error (one line on stderr), 2 bad usage.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use node::outln;

#[derive(Parser)]
#[command(
    name = "bank",
    version,
    about = "A bank for lightweight currencies: customers named user@host, app tokens with limits (seed 000 section 5.1)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// Where the bank keeps its state, shared by every command.
#[derive(clap::Args)]
struct DataArgs {
    /// Data directory (key, database)
    #[arg(long, env = "BANK_DATA")]
    data: PathBuf,
    /// Database URL (postgres://... or sqlite://...); default: DIR/bank.sqlite
    #[arg(long, env = "BANK_DATABASE")]
    database: Option<String>,
}

impl DataArgs {
    /// The bank's database, made there if there is none yet (`customer add` before the
    /// first `bank serve`; said on stderr, since a mistyped --data would make one too).
    fn open(&self) -> anyhow::Result<db::Database> {
        if !self.exists() {
            eprintln!(
                "note: no bank at {} yet: a new one is made there",
                self.data.display()
            );
        }
        bank::serve::open_database(&self.data, self.database.as_deref())
    }

    /// The bank's database, which must exist: a mistyped --data is an error, not a new bank.
    fn open_existing(&self) -> anyhow::Result<db::Database> {
        anyhow::ensure!(
            self.exists(),
            "no bank at {}: give the --data directory of a bank (`bank serve --data DIR` \
             makes one)",
            self.data.display()
        );
        bank::serve::open_database(&self.data, self.database.as_deref())
    }

    fn exists(&self) -> bool {
        self.database.is_some() || self.data.join("bank.sqlite").exists()
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the bank; prints `listening on http://HOST:PORT`
    Serve {
        #[command(flatten)]
        data: DataArgs,
        /// Address to listen on
        #[arg(long, default_value = "127.0.0.1:7800")]
        listen: String,
        /// Issuer URL of a currency the bank takes (repeat for several)
        #[arg(long = "issuer", required = true)]
        issuers: Vec<String>,
        /// The host customers' names carry (bob@HOST); default: the listening address
        #[arg(long)]
        name_host: Option<String>,
        /// How long a web session lasts, in seconds
        #[arg(long, default_value_t = bank::session::SESSION_TTL_MS_DEFAULT / 1000)]
        session_ttl_s: u64,
        /// Mark session cookies Secure although this process serves plain HTTP: for a bank
        /// behind a reverse proxy that terminates TLS (with --tls-cert they always are)
        #[arg(long)]
        behind_https: bool,
        /// PEM certificate chain to serve HTTPS with (needs --tls-key)
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Also run the exchange: limit orders per currency pair, trades settled in steps
        #[arg(long)]
        exchange: bool,
        /// Steps (slices) a trade is settled in
        #[arg(long, default_value_t = bank::exchange::STEPS_DEFAULT)]
        exchange_steps: u32,
        /// Milliseconds a trader has for its turn (pay, or confirm) before it is marked
        #[arg(long, default_value_t = bank::exchange::STEP_TIMEOUT_MS_DEFAULT)]
        exchange_step_timeout_ms: u64,
    },
    /// The exchange's book of a currency pair (open orders, best price first)
    Orders {
        /// The bank running the exchange
        #[arg(long)]
        exchange: String,
        /// One currency: its issuer's URL or entity id
        #[arg(long)]
        a: String,
        /// The other currency
        #[arg(long)]
        b: String,

        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Sell AMOUNT of one currency for at least AMOUNT of another, then settle every trade
    /// the order makes with this key's wallets (pay each slice, confirm each one received)
    Trade {
        /// The bank running the exchange
        #[arg(long)]
        exchange: String,
        /// The trader's key: it signs the order and pays at each issuer
        #[arg(long)]
        key: PathBuf,
        /// What to sell, in minor units
        #[arg(long)]
        sell: u64,
        /// The currency sold: its issuer's URL or entity id
        #[arg(long)]
        sell_currency: String,
        /// The least to get for it, in minor units
        #[arg(long)]
        buy: u64,
        /// The currency bought
        #[arg(long)]
        buy_currency: String,
        /// The order's id (default: a new one); the same id continues an order after a crash
        #[arg(long)]
        id: Option<String>,
        /// Seconds to keep settling before answering what stands
        #[arg(long, default_value_t = 600)]
        wait_s: u64,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Customers: add one, list them
    Customer {
        #[command(subcommand)]
        command: CustomerCmd,
    },
    /// App tokens: grant, list, revoke
    Token {
        #[command(subcommand)]
        command: TokenCmd,
    },
}

#[derive(Subcommand)]
enum CustomerCmd {
    /// Add a customer, NAME@bank-host: an opaque account (held under the bank's key) or, with
    /// --transparent, one with a key of its own that the bank keeps; the password is read
    /// from stdin
    Add {
        #[command(flatten)]
        data: DataArgs,
        /// The customer's name: 1 to 64 characters of a-z, 0-9, '.', '_' and '-'
        #[arg(long)]
        name: String,
        /// A transparent account: the bank makes and keeps the customer's own key
        /// (DATA/customers/NAME.key) and pays with it; payers pay that key, not the bank
        #[arg(long)]
        transparent: bool,
        /// Read the password from standard input (the first line)
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// List the customers
    List {
        #[command(flatten)]
        data: DataArgs,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Grant a customer's app a token to pay in one currency up to a limit; prints the token
    /// (shown once)
    Grant {
        #[command(flatten)]
        data: DataArgs,
        /// The customer
        #[arg(long)]
        customer: String,
        /// The currency: its issuer's URL or entity id (one the bank takes)
        #[arg(long)]
        issuer: String,
        /// Most the app may spend in all, in minor units (fees included)
        #[arg(long)]
        limit: u64,
        /// What the token is for (shown in lists)
        #[arg(long, default_value = "")]
        label: String,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// List a customer's tokens (ids, limits, spent; never the secrets)
    List {
        #[command(flatten)]
        data: DataArgs,
        /// The customer
        #[arg(long)]
        customer: String,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id: refused from the next call on
    Revoke {
        #[command(flatten)]
        data: DataArgs,
        /// The token's id (the part before the dot)
        id: String,
    },
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

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Serve {
            data,
            listen,
            issuers,
            name_host,
            session_ttl_s,
            behind_https,
            tls_cert,
            tls_key,
            exchange,
            exchange_steps,
            exchange_step_timeout_ms,
        } => {
            anyhow::ensure!(
                (1..=bank::exchange::STEPS_MAX).contains(&exchange_steps),
                "--exchange-steps must be 1 to {}",
                bank::exchange::STEPS_MAX
            );
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(node::http::TlsFiles { cert, key }),
                _ => None,
            };
            let running = bank::serve::start(bank::serve::ServeOptions {
                data_dir: data.data,
                listen,
                database: data.database,
                issuers,
                name_host,
                session_ttl_ms: session_ttl_s.saturating_mul(1000),
                secure_cookies: behind_https,
                tls,
                exchange: exchange.then_some(bank::exchange::server::ExchangeConfig {
                    steps: exchange_steps,
                    step_timeout_ms: exchange_step_timeout_ms.max(100),
                }),
            })?;
            node::cli::announce_listening(&running.url)?;
            running.wait()?;
            Ok(())
        }
        Cmd::Orders {
            exchange,
            a,
            b,
            json,
        } => runtime()?.block_on(async {
            let trader = bank::exchange::trader::Trader::reader(&exchange).await?;
            let (a, b) = (trader.issuer(&a)?, trader.issuer(&b)?);
            let book = trader.book(&a, &b).await?;
            if json {
                outln!("{book}");
            } else {
                let orders = book["orders"].as_array().cloned().unwrap_or_default();
                if orders.is_empty() {
                    outln!("no open orders in this pair");
                }
                for o in &orders {
                    outln!(
                        "{}  sells {} of {} for {} of {} ({} left)  by {}",
                        o["id"].as_str().unwrap_or(""),
                        o["sell_amount"],
                        o["sell_issuer"].as_str().unwrap_or(""),
                        o["buy_amount"],
                        o["buy_issuer"].as_str().unwrap_or(""),
                        o["sell_left"],
                        o["trader"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(())
        }),
        Cmd::Trade {
            exchange,
            key,
            sell,
            sell_currency,
            buy,
            buy_currency,
            id,
            wait_s,
            json,
        } => runtime()?.block_on(async {
            let trader = bank::exchange::trader::Trader::open(&exchange, &key).await?;
            let order = bank::exchange::store::NewOrder {
                id: id.unwrap_or_else(new_order_id),
                sell_issuer: trader.issuer(&sell_currency)?,
                sell_amount: sell,
                buy_issuer: trader.issuer(&buy_currency)?,
                buy_amount: buy,
            };
            use bank::exchange::trader::Event;
            let outcome = trader
                .trade(
                    &order,
                    std::time::Duration::from_secs(wait_s),
                    |e| match e {
                        Event::Placed(p) => eprintln!(
                            "order {} placed: {} trade(s) at once, {} left to sell",
                            p.order.id,
                            p.trades.len(),
                            p.order.sell_left
                        ),
                        Event::Step(t) if !json => eprintln!(
                            "trade {}: step {} of {}",
                            t.id,
                            t.halves_done / 2 + 1,
                            t.steps
                        ),
                        Event::Step(_) => {}
                        Event::Retry(why) => eprintln!("warning: {why}; trying again"),
                    },
                )
                .await?;
            if json {
                outln!("{}", serde_json::to_string(&outcome)?);
            } else {
                for t in &outcome.trades {
                    let (gave, got) = t.amounts_for(&order.id);
                    let (gave_in, got_in) = t.currencies_for(&order.id);
                    outln!(
                        "trade {}: {} (you give {gave} of {}, get {got} of {}){}",
                        t.id,
                        t.state,
                        trader.shown(gave_in),
                        trader.shown(got_in),
                        t.defaulter
                            .as_deref()
                            .map(|d| format!(", {d} defaulted"))
                            .unwrap_or_default()
                    );
                }
                if outcome.trades.is_empty() {
                    outln!("no trade: nothing crossed the order within --wait-s");
                }
                if outcome.cancelled_left > 0 {
                    outln!(
                        "the rest of the order ({} to sell) was cancelled",
                        outcome.cancelled_left
                    );
                }
            }
            let stopped = outcome
                .trades
                .iter()
                .any(|t| t.state != bank::exchange::store::DONE);
            anyhow::ensure!(
                !stopped,
                "not every trade settled (see above; a trade still settling goes on with \
                 `bank trade --id {}` and the same amounts)",
                order.id
            );
            Ok(())
        }),
        Cmd::Customer {
            command:
                CustomerCmd::Add {
                    data,
                    name,
                    transparent,
                    password_stdin: _,
                    json,
                },
        } => {
            anyhow::ensure!(
                protocol::name::is_userid(&name),
                "--name {name:?}: a name is 1 to 64 characters of a-z, 0-9, '.', '_' and '-'"
            );
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .context("cannot read the password from stdin")?;
            let password = input.lines().next().unwrap_or_default();
            let hash = bank::password::hash(password)?;
            let database = data.open()?;
            let mut conn = database.get()?;
            anyhow::ensure!(
                !bank::store::customer_exists(&mut conn, &name)?,
                "a customer named {name:?} exists already"
            );
            let (kind, entity) = if transparent {
                let entity = bank::custody::create_key(&data.data, &name)?;
                (bank::store::TRANSPARENT, Some(entity.to_string()))
            } else {
                (bank::store::OPAQUE, None)
            };
            bank::store::add_customer(&mut conn, &name, kind, &hash, node::now_ms())?;
            if json {
                outln!(
                    "{}",
                    serde_json::json!({"name": name, "kind": kind, "entity": entity})
                );
            } else {
                match entity {
                    Some(e) => outln!("customer {name} added (transparent: its key is {e})"),
                    None => outln!("customer {name} added"),
                }
            }
            Ok(())
        }
        Cmd::Customer {
            command: CustomerCmd::List { data, json },
        } => {
            let database = data.open_existing()?;
            let names = bank::store::customer_names(&mut database.connect()?)?;
            if json {
                outln!("{}", serde_json::json!({ "customers": names }));
            } else {
                for n in names {
                    outln!("{n}");
                }
            }
            Ok(())
        }
        Cmd::Token {
            command:
                TokenCmd::Grant {
                    data,
                    customer,
                    issuer,
                    limit,
                    label,
                    json,
                },
        } => {
            let database = data.open_existing()?;
            let mut conn = database.connect()?;
            let issuer = bank::store::currency_of(&mut conn, &issuer)?.ok_or_else(|| {
                anyhow::anyhow!(
                    "--issuer {issuer:?} is not a currency this bank takes: give the issuer's \
                     URL or entity id as `bank serve --issuer` has it"
                )
            })?;
            let (id, token) = bank::store::grant_token(
                &mut conn,
                &customer,
                &issuer,
                limit,
                &label,
                node::now_ms(),
            )?;
            if json {
                outln!("{}", serde_json::json!({"id": id, "token": token}));
            } else {
                outln!("{token}");
            }
            Ok(())
        }
        Cmd::Token {
            command:
                TokenCmd::List {
                    data,
                    customer,
                    json,
                },
        } => {
            let database = data.open_existing()?;
            let tokens = bank::store::tokens_of(&mut database.connect()?, &customer)?;
            let rows: Vec<_> = tokens
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "id": t.id, "issuer": t.issuer, "limit": t.spend_limit,
                        "spent": t.spent, "label": t.label, "revoked": t.revoked != 0,
                    })
                })
                .collect();
            if json {
                outln!("{}", serde_json::json!({ "tokens": rows }));
            } else {
                for t in &tokens {
                    outln!(
                        "{}\t{}\tspent {} of {}\t{}{}",
                        t.id,
                        t.issuer,
                        t.spent,
                        t.spend_limit,
                        t.label,
                        if t.revoked != 0 { "\trevoked" } else { "" }
                    );
                }
            }
            Ok(())
        }
        Cmd::Token {
            command: TokenCmd::Revoke { data, id },
        } => {
            let database = data.open_existing()?;
            if !bank::store::revoke_token(&mut database.connect()?, &id)? {
                anyhow::bail!("no token {id:?}");
            }
            outln!("token {id} revoked");
            Ok(())
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// A fresh order id: 32 hex digits.
fn new_order_id() -> String {
    let mut bytes = [0u8; 16];
    // The system's randomness; without it, the clock (ids need only be unique per trader).
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        bytes[..8].copy_from_slice(&node::now_ms().to_be_bytes());
    }
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_flag_has_help() {
        node::cli::assert_every_flag_has_help(&<super::Cli as clap::CommandFactory>::command());
    }
}
