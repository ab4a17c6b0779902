//! The `lcp` binary: wallet commands, the issuer server, the load generator and the demo.
//! Exit codes: 0 success, 1 any error (one line on stderr), 2 bad usage.

/// mimalloc instead of glibc malloc: the issuer allocates per request on several threads, and
/// glibc's arena locks and frees showed as about 7% of its CPU per transfer (issue 21). The
/// price is resident memory: about 70 MiB under load against 36 (ARCHITECTURE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use clients::issuer::IssuerClient;
use lcp::config::IssuerConfig;
use node::client::{ClientOptions, CounterStore};
use protocol::EntityId;

mod credit_cmd;

#[derive(Parser)]
#[command(
    name = "lcp",
    version,
    about = "Lightweight Currency Protocol: wallet and issuer"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a new key (mode 0600) and print its entity id
    Keygen {
        /// Where to write the new key file (mode 0600; an existing file is not replaced)
        #[arg(long)]
        out: PathBuf,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Print the entity id of a key file
    Id {
        /// The key file
        #[arg(long, env = "LCP_KEY")]
        key: PathBuf,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Run the currency issuer
    Issuer {
        #[command(subcommand)]
        command: IssuerCmd,
    },
    /// Send funds
    Transfer {
        #[command(flatten)]
        wallet: WalletArgs,
        /// Recipient: an entity id, or a bank customer's name (bob@bank.example), resolved at
        /// the bank
        #[arg(long, required_unless_present = "batch")]
        to: Option<String>,
        /// Amount in whole minor units (with 2 decimals, 150 is 1.50)
        #[arg(long, value_parser = node::cli::parse_minor_units, required_unless_present = "batch")]
        amount: Option<u64>,
        /// A label for the payment (an order or contract id), shown in the recipient's deposits; not a uniqueness key
        #[arg(long)]
        transaction_id: Option<String>,
        /// Send many transfers as one batch command instead: FILE holds one JSON object per
        /// line, `{"recipient": ID, "amount": N, "transaction_id": T}` (at most 1,000; each
        /// answered on its own; exit 1 when any failed)
        #[arg(long, conflicts_with_all = ["to", "amount", "transaction_id"])]
        batch: Option<PathBuf>,
        /// Print one JSON object instead of text (amounts in minor units)
        #[arg(long)]
        json: bool,
    },
    /// Show this wallet's balance
    Balance {
        #[command(flatten)]
        wallet: WalletArgs,
        /// Print one JSON object instead of text (amounts in minor units)
        #[arg(long)]
        json: bool,
    },
    /// List deposits to this wallet after a cursor, optionally waiting for new ones
    Deposits {
        #[command(flatten)]
        wallet: WalletArgs,
        /// Cursor: list deposits after this sequence number (the `next` of the last answer)
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// With nothing new, wait up to this many milliseconds for a deposit (long poll)
        #[arg(long, default_value_t = 0)]
        wait_ms: u64,
        /// Only deposits with this transaction id ("was order X paid?")
        #[arg(long)]
        transaction_id: Option<String>,
        /// Print one JSON object instead of text (amounts in minor units)
        #[arg(long)]
        json: bool,
    },
    /// Payword chains: buy one, list them, pay a vendor with words (DESIGN 10)
    Chain {
        #[command(subcommand)]
        command: ChainCmd,
    },
    /// Credit lines and payments over credit paths: lines, open, pay, trust (DESIGN 12)
    Credit {
        #[command(subcommand)]
        command: credit_cmd::CreditCmd,
    },
    /// Load generator: fund N wallets from the issuer's key and run M transfers concurrently
    Bench {
        /// Issuer URL, e.g. http://127.0.0.1:7000
        #[arg(long, env = "LCP_ISSUER")]
        issuer: String,
        /// The issuer's own key (DIR/identity.key), used to fund the wallets
        #[arg(long)]
        key: PathBuf,
        /// Concurrent wallets making transfers
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Transfers to make in all
        #[arg(long, default_value_t = 20_000)]
        transfers: usize,
        /// Extra PEM root certificate to trust (self-signed servers)
        #[arg(long, env = "LCP_CA_CERT")]
        ca_cert: Option<PathBuf>,
        /// Check every receipt signature (costs client CPU on the machine being measured)
        #[arg(long)]
        verify_receipts: bool,
        /// Transfers per request: more than 1 sends batch commands of this many (at most
        /// 1,000)
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Print one JSON object instead of text (amounts in minor units)
        #[arg(long)]
        json: bool,
    },
    /// Start an issuer on SQLite, make two wallets and show a transfer end to end
    Demo {
        /// Directory for the demo's issuer and wallets
        #[arg(long, default_value = "lcp-demo")]
        dir: PathBuf,
        /// Address to listen on, HOST:PORT (port 0 picks a free port)
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// Keep the issuer running after the walk-through until Ctrl-C
        #[arg(long)]
        stay: bool,
    },
}

#[derive(Subcommand)]
enum ChainCmd {
    /// Buy a chain of words: LENGTH x UNIT (+ the fee) moves into escrow at the issuer
    Buy {
        #[command(flatten)]
        wallet: WalletArgs,
        /// Words in the chain (at most 1,000,000)
        #[arg(long)]
        length: u64,
        /// Value of one word, in minor units
        #[arg(long, value_parser = node::cli::parse_minor_units)]
        unit: u64,
        /// Seconds until the chain expires (default 30 days, at most 90 days)
        #[arg(long)]
        expires_in_s: Option<u64>,
        /// Print one JSON object (`{"chain", "touchstone"}`) instead of the chain id
        #[arg(long)]
        json: bool,
    },
    /// List this wallet's chains: words spent and left, value left, expiry
    List {
        /// Wallet key file (its chains are in <key>.chains/)
        #[arg(long, env = "LCP_KEY")]
        key: PathBuf,
        /// Print one JSON array instead of text
        #[arg(long)]
        json: bool,
    },
    /// Print the LCP-Payword header value paying VENDOR the next WORDS words of a chain
    Pay {
        /// Wallet key file (its chains are in <key>.chains/)
        #[arg(long, env = "LCP_KEY")]
        key: PathBuf,
        /// The chain id (from `lcp chain buy` or `lcp chain list`)
        #[arg(long)]
        chain: String,
        /// The vendor's entity id
        #[arg(long)]
        to: String,
        /// Words to hand over in this payment
        #[arg(long)]
        words: u64,
        /// Words in a new block, when the vendor has no block with room left
        #[arg(long, default_value_t = clients::wallet::BLOCK_WORDS_DEFAULT)]
        block_words: u64,
        /// Print one JSON object (the payword's fields, the header and the touchstone header)
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct WalletArgs {
    /// Wallet key file (made by `lcp keygen`)
    #[arg(long, env = "LCP_KEY")]
    key: PathBuf,
    /// Issuer URL, e.g. http://127.0.0.1:7000
    #[arg(long, env = "LCP_ISSUER")]
    issuer: String,
    /// Extra PEM root certificate to trust (self-signed issuers)
    #[arg(long, env = "LCP_CA_CERT")]
    ca_cert: Option<PathBuf>,
}

impl WalletArgs {
    fn client(&self) -> anyhow::Result<IssuerClient> {
        IssuerClient::from_key_file(&self.issuer, &self.key, &self.client_options())
    }

    fn client_options(&self) -> ClientOptions {
        ClientOptions {
            ca_cert: self.ca_cert.clone(),
            ..ClientOptions::default()
        }
    }
}

#[derive(Subcommand)]
enum IssuerCmd {
    /// Serve the issuer API; prints `listening on http://HOST:PORT` once it accepts connections
    Serve(ServeArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// State directory: identity.key, issuer.sqlite, issuer.toml
    #[arg(long, env = "LCP_DATA")]
    data: PathBuf,
    /// Address to listen on, HOST:PORT (port 0 picks a free port)
    #[arg(long, env = "LCP_LISTEN", default_value = "127.0.0.1:7000")]
    listen: String,
    /// PostgreSQL URL (postgres://...); SQLite under --data when absent
    #[arg(long, env = "LCP_DATABASE")]
    database: Option<String>,
    /// Configuration file (default DIR/issuer.toml)
    #[arg(long)]
    config: Option<PathBuf>,
    /// Currency code shown to users, e.g. EUR (first start only)
    #[arg(long, env = "LCP_CURRENCY")]
    currency: Option<String>,
    /// Flat fee per transfer, in minor units
    #[arg(long, env = "LCP_FEE_FLAT")]
    fee_flat: Option<u64>,
    /// Proportional fee per transfer, in basis points (1 = 0.01%), rounded up
    #[arg(long, env = "LCP_FEE_BPS")]
    fee_bps: Option<u64>,
    /// How far below zero the issuer's account may go, in minor units (the most money it may
    /// issue)
    #[arg(long, env = "LCP_SUPPLY_CAP")]
    supply_cap: Option<u64>,
    /// Transfers per group commit; 1 turns group commit off
    #[arg(long, env = "LCP_BATCH_MAX")]
    batch_max: Option<usize>,
    /// Seconds after a payword chain's expiry during which vendors may still redeem it; then
    /// the escrow's rest goes back to the payer (default one day)
    #[arg(long, env = "LCP_REDEEM_GRACE_S")]
    redeem_grace_s: Option<u64>,
    /// How often to look for expired chains whose escrow is due back, in milliseconds
    #[arg(long, env = "LCP_ESCROW_SWEEP_INTERVAL_MS")]
    escrow_sweep_interval_ms: Option<u64>,
    /// PEM certificate chain to serve HTTPS with (needs --tls-key)
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Cmd::Issuer { .. });
    if serving {
        node::cli::tune_malloc_for_service();
    }
    let default_level = if serving { "info" } else { "warn" };
    node::cli::init_logging(default_level);
    node::cli::exit_on_error(run(cli));
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// `lcp transfer --batch FILE`: the lines of FILE as one batch command.
fn transfer_batch(wallet: &WalletArgs, file: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut items = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let item: protocol::ledger::BatchItem = serde_json::from_str(line).with_context(|| {
            format!(
                "{} line {}: expected {{\"recipient\": ID, \"amount\": N}}",
                file.display(),
                i + 1
            )
        })?;
        items.push(item);
    }
    let max = protocol::ledger::BATCH_TRANSFERS_MAX;
    anyhow::ensure!(
        (1..=max).contains(&items.len()),
        "{} holds {} transfers: a batch holds 1 to {max}",
        file.display(),
        items.len()
    );
    let client = wallet.client()?;
    let rt = runtime()?;
    let currency = rt.block_on(client.currency())?;
    let answer = rt.block_on(client.transfer_batch(&items))?;
    let a = &answer.value;
    let failed = a.results.iter().filter(|r| !r.succeeded()).count();
    if json {
        print_json(&serde_json::json!({
            "results": a.results, "balance": a.balance,
            "counter": answer.counter, "receipt": answer.receipt,
        }))?;
    } else {
        node::outln!(
            "{} of {} transfers sent; balance {}",
            a.results.len() - failed,
            a.results.len(),
            currency.show(a.balance)
        );
        for (i, r) in a.results.iter().enumerate().filter(|(_, r)| !r.succeeded()) {
            node::outln!(
                "  item {}: {} ({})",
                i + 1,
                r.code.as_deref().unwrap_or("error"),
                r.message.as_deref().unwrap_or("")
            );
        }
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} transfers failed",
        a.results.len()
    );
    Ok(())
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    node::outln!("{}", serde_json::to_string(value)?);
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Keygen { out, json } => {
            let key = node::keyfile::generate(&out)?;
            if json {
                print_json(&serde_json::json!({"entity": key.entity(), "key": out}))
            } else {
                node::outln!("{}", key.entity());
                Ok(())
            }
        }
        Cmd::Id { key, json } => {
            let key = node::keyfile::load(&key)?;
            if json {
                print_json(&serde_json::json!({"entity": key.entity()}))
            } else {
                node::outln!("{}", key.entity());
                Ok(())
            }
        }
        Cmd::Issuer {
            command: IssuerCmd::Serve(args),
        } => serve(args),
        Cmd::Transfer {
            wallet,
            batch: Some(file),
            json,
            ..
        } => transfer_batch(&wallet, &file, json),
        Cmd::Transfer {
            wallet,
            to,
            amount,
            transaction_id,
            json,
            batch: None,
        } => {
            // clap requires both without --batch.
            let (Some(to), Some(amount)) = (to, amount) else {
                anyhow::bail!("--to and --amount are required (or --batch FILE)");
            };
            let client = wallet.client()?;
            let rt = runtime()?;
            if !protocol::name::Name::looks_like(&to) && EntityId::parse(&to).is_err() {
                anyhow::bail!(
                    "--to must be an entity id (ed25519:<64 hex>) or a name (user@host), got {to:?}"
                );
            }
            let to = rt
                .block_on(clients::names::resolve(&to, &wallet.client_options()))
                .map_err(|e| anyhow::anyhow!("--to: {e}"))?;
            let currency = rt.block_on(client.currency())?;
            let answer = rt.block_on(client.transfer_to(&to, amount, transaction_id.as_deref()))?;
            let r = &answer.value;
            if json {
                print_json(&serde_json::json!({
                    "result": r.result, "seq": r.seq, "fee": r.fee, "balance": r.balance,
                    "counter": answer.counter, "receipt": answer.receipt,
                }))
            } else {
                node::outln!(
                    "sent {} to {to}: seq {}, fee {}, balance {}",
                    currency.show(amount),
                    r.seq,
                    currency.show(r.fee),
                    currency.show(r.balance)
                );
                Ok(())
            }
        }
        Cmd::Balance { wallet, json } => {
            let client = wallet.client()?;
            let rt = runtime()?;
            let currency = rt.block_on(client.currency())?;
            let b = rt.block_on(client.balance())?;
            if json {
                print_json(&b)
            } else {
                node::outln!("{}", currency.show(b.balance));
                Ok(())
            }
        }
        Cmd::Deposits {
            wallet,
            after,
            wait_ms,
            transaction_id,
            json,
        } => {
            let client = wallet.client()?;
            let rt = runtime()?;
            let currency = rt.block_on(client.currency())?;
            let page = rt.block_on(client.deposits(after, wait_ms, transaction_id.as_deref()))?;
            if json {
                return print_json(&page);
            }
            if !page.deposits.is_empty() {
                node::outln!("seq\tamount\tfrom\ttransaction\tuserid\ttime (UTC)");
            }
            for d in &page.deposits {
                // A bank's payment names its customer: `alice@bank (ed25519:...)`.
                let from = match &d.from_name {
                    Some(name) => format!("{name} ({})", d.from),
                    None => d.from.clone(),
                };
                node::outln!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    d.seq,
                    currency.show(d.amount),
                    from,
                    d.transaction_id.as_deref().unwrap_or("-"),
                    d.userid.as_deref().unwrap_or("-"),
                    protocol::market::format_rfc3339(
                        i64::try_from(d.time / 1000).unwrap_or(i64::MAX)
                    )
                );
            }
            node::outln!(
                "next {}  balance {}",
                page.next,
                currency.show(page.balance)
            );
            Ok(())
        }
        Cmd::Bench {
            issuer,
            key,
            clients,
            transfers,
            ca_cert,
            verify_receipts,
            batch,
            json,
        } => {
            node::client::check_url(&issuer)?;
            let issuer_key = Arc::new(node::keyfile::load(&key)?);
            let options = lcp::bench::BenchOptions {
                issuer_url: issuer,
                clients,
                transfers,
                client: ClientOptions {
                    ca_cert,
                    ..ClientOptions::default()
                },
                verify_receipts,
                batch,
            };
            let report = runtime()?.block_on(lcp::bench::run(
                options,
                issuer_key,
                CounterStore::beside_key(&key),
            ))?;
            if json {
                print_json(&report)
            } else {
                node::outln!(
                    "{} transfers from {} clients in {:.2} s ({} requests of {}): {:.0} transfers/s, per request p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} errors",
                    report.transfers, report.clients, report.elapsed_s, report.requests, report.batch, report.transfers_per_s, report.p50_ms, report.p90_ms, report.p99_ms, report.max_ms, report.errors
                );
                let issuer_cpu = match (report.issuer_cpu_us_per_transfer, report.issuer_cores) {
                    (Some(us), Some(cores)) => {
                        format!("{us:.0} us per transfer ({cores:.2} cores)")
                    }
                    _ => "unknown (no /metrics)".to_owned(),
                };
                node::outln!(
                    "CPU: issuer {issuer_cpu}; this load generator {:.0} us per transfer ({:.2} cores)",
                    report.bench_cpu_us_per_transfer, report.bench_cores
                );
                Ok(())
            }
        }
        Cmd::Chain { command } => chain(command),
        Cmd::Credit { command } => credit_cmd::run(command),
        Cmd::Demo { dir, listen, stay } => runtime()?.block_on(lcp::demo::run(dir, listen, stay)),
    }
}

fn chain(command: ChainCmd) -> anyhow::Result<()> {
    use clients::wallet::{self, Wallet};
    match command {
        ChainCmd::Buy {
            wallet: args,
            length,
            unit,
            expires_in_s,
            json,
        } => {
            let client = args.client()?;
            let rt = runtime()?;
            let bought = rt.block_on(wallet::buy(
                &client,
                &Wallet::beside_key(&args.key),
                length,
                unit,
                expires_in_s,
            ))?;
            if json {
                print_json(&serde_json::json!({
                    "chain": bought.chain,
                    "touchstone": bought.touchstone,
                    "length": bought.length,
                    "unit": bought.unit,
                    "expires_at": protocol::market::format_rfc3339(bought.expires_at_s),
                }))
            } else {
                node::outln!("{}", bought.chain);
                Ok(())
            }
        }
        ChainCmd::List { key, json } => {
            let now = node::now_s();
            let chains: Vec<_> = Wallet::beside_key(&key)
                .chains()?
                .iter()
                .map(|c| c.summary(now))
                .collect();
            if json {
                return print_json(&chains);
            }
            if chains.is_empty() {
                node::outln!("no chains (buy one with `lcp chain buy`)");
                return Ok(());
            }
            node::outln!("chain\tunit\tspent\tleft\tvalue left\texpires (UTC)\tissuer");
            for c in &chains {
                node::outln!(
                    "{}\t{}\t{}\t{}\t{}\t{}{}\t{}",
                    c.chain,
                    c.unit,
                    c.words_spent,
                    c.words_left,
                    c.value_left,
                    c.expires_at,
                    if c.expired { " (expired)" } else { "" },
                    c.issuer
                );
            }
            Ok(())
        }
        ChainCmd::Pay {
            key,
            chain,
            to,
            words,
            block_words,
            json,
        } => {
            let vendor = EntityId::parse(&to).map_err(|_| {
                anyhow::anyhow!("--to must be an entity id (ed25519:<64 hex>), got {to:?}")
            })?;
            let keypair = node::keyfile::load(&key)?;
            let wallet = Wallet::beside_key(&key);
            let payword =
                wallet.pay(&keypair, &chain, &vendor, words, block_words, node::now_s())?;
            if json {
                let file = wallet.chain(&chain)?;
                print_json(&serde_json::json!({
                    "payword": payword,
                    "header": payword.header_value(),
                    "touchstone_header": protocol::payword::envelope_header_value(&file.touchstone),
                }))
            } else {
                node::outln!("{}", payword.header_value());
                Ok(())
            }
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config_path = args
        .config
        .clone()
        .unwrap_or_else(|| args.data.join("issuer.toml"));
    if args.config.is_some() && !config_path.exists() {
        anyhow::bail!(
            "configuration file {} does not exist",
            config_path.display()
        );
    }
    let mut config = IssuerConfig::load_file(&config_path)?;
    if let Some(c) = args.currency {
        config.currency_code = c;
    }
    if let Some(v) = args.fee_flat {
        config.fee_flat = v;
    }
    if let Some(v) = args.fee_bps {
        config.fee_bps = v;
    }
    if let Some(v) = args.supply_cap {
        config.supply_cap = v;
    }
    if let Some(v) = args.batch_max {
        config.batch_max = v;
    }
    if let Some(v) = args.redeem_grace_s {
        config.redeem_grace_s = v;
    }
    if let Some(v) = args.escrow_sweep_interval_ms {
        config.escrow_sweep_interval_ms = v;
    }
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(lcp::server::TlsFiles { cert, key }),
        _ => None,
    };
    let running = lcp::server::start(lcp::server::ServeOptions {
        data_dir: args.data,
        listen: args.listen,
        database: args.database,
        config,
        tls,
    })
    .context("the issuer could not start")?;
    node::cli::announce_listening(&running.url)?;
    running.wait()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_flag_has_help() {
        node::cli::assert_every_flag_has_help(&<super::Cli as clap::CommandFactory>::command());
    }
}
