//! `lcp credit ...`: the wallet's credit lines and payments over credit paths (DESIGN 12).

use std::path::PathBuf;
use std::sync::Arc;

use clap::{ArgGroup, Subcommand};
use clients::credit::{self, Counters, Open, PAY_COMMANDS_MAX};
use node::client::{ClientOptions, CounterStore, SignedClient};
use protocol::EntityId;

use super::{print_json, runtime};

#[derive(Subcommand)]
pub enum CreditCmd {
    /// A node's credit lines with this wallet: limit, owed, held
    Lines {
        /// Wallet key file
        #[arg(long, env = "LCP_KEY")]
        key: PathBuf,
        /// The node's URL (any service: issuer, agent, market, publisher)
        #[arg(long)]
        node: String,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Extend a node a line (--give N) or ask it for one (--ask N)
    #[command(group(ArgGroup::new("how").required(true).args(["give", "ask"])))]
    Open {
        /// Wallet key file (made by `lcp keygen`)
        #[arg(long, env = "LCP_KEY")]
        key: PathBuf,
        /// The node's URL (any service: issuer, agent, market, publisher)
        #[arg(long)]
        node: String,
        /// The line's currency: the issuer's entity id
        #[arg(long)]
        currency: String,
        /// Let the node owe this wallet up to N (minor units)
        #[arg(long, value_parser = node::cli::parse_minor_units)]
        give: Option<u64>,
        /// Ask the node to let this wallet owe it up to N (minor units)
        #[arg(long, value_parser = node::cli::parse_minor_units)]
        ask: Option<u64>,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Pay an entity over credit paths through a node this wallet has a line with
    Pay {
        /// Wallet key file (made by `lcp keygen`)
        #[arg(long, env = "LCP_KEY")]
        key: PathBuf,
        /// The node the payment leaves through
        #[arg(long)]
        via: String,
        /// The target's entity id
        #[arg(long)]
        to: String,
        /// The currency: the issuer's entity id
        #[arg(long)]
        currency: String,
        /// What to pay, in minor units
        #[arg(long, value_parser = node::cli::parse_minor_units)]
        amount: u64,
        /// What the payment is for at the target: a contract id pays that contract at an agent
        #[arg(long)]
        transaction_id: Option<String>,
        /// How long the paths may take to arrive whole (ms)
        #[arg(long, default_value_t = credit::PAY_WAIT_MS_DEFAULT)]
        wait_ms: u64,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// A node's trust in an entity: the best product of trusts along paths (seed 003)
    Trust {
        /// Wallet key file (made by `lcp keygen`)
        #[arg(long, env = "LCP_KEY")]
        key: PathBuf,
        /// The node the payment or question goes through (one this wallet has a line with)
        #[arg(long)]
        via: String,
        /// The target's entity id
        #[arg(long)]
        to: String,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
}

fn entity(flag: &str, text: &str) -> anyhow::Result<String> {
    EntityId::parse(text).map(|e| e.to_string()).map_err(|_| {
        anyhow::anyhow!("{flag} must be an entity id (ed25519:<64 hex>), got {text:?}")
    })
}

/// A signed client of `url` with `key`, and counters reserved beside the key.
fn signed(
    key_path: &std::path::Path,
    url: &str,
) -> anyhow::Result<(
    reqwest::Client,
    Arc<protocol::KeyPair>,
    SignedClient,
    Counters,
)> {
    node::client::check_url(url)?;
    let key = Arc::new(node::keyfile::load(key_path)?);
    let http = node::client::http_client(&ClientOptions::default())?;
    let client = SignedClient::new(http.clone(), url, key.clone());
    let first = CounterStore::beside_key(key_path).reserve(url, PAY_COMMANDS_MAX)?;
    Ok((http, key, client, Counters::from(first)))
}

pub fn run(command: CreditCmd) -> anyhow::Result<()> {
    let rt = runtime()?;
    match command {
        CreditCmd::Lines { key, node, json } => {
            node::client::check_url(&node)?;
            let key = node::keyfile::load(&key)?;
            let http = node::client::http_client(&ClientOptions::default())?;
            let lines = rt.block_on(credit::lines(&http, &node, key.entity().as_str()))?;
            if json {
                return print_json(&serde_json::json!({ "lines": lines }));
            }
            if lines.is_empty() {
                node::outln!("no lines with {node} (open one with `lcp credit open`)");
            }
            for l in &lines {
                let (role, other) = if l.creditor == key.entity().as_str() {
                    ("given to", &l.debtor)
                } else {
                    ("from", &l.creditor)
                };
                node::outln!(
                    "{}  {role} {other}: limit {}, owed {}, held {}, seq {}",
                    l.id,
                    l.limit,
                    l.owed,
                    l.held + l.repaying,
                    l.seq
                );
            }
            Ok(())
        }
        CreditCmd::Open {
            key,
            node,
            currency,
            give,
            ask,
            json,
        } => {
            let currency = entity("--currency", &currency)?;
            let how = match (give, ask) {
                (Some(n), None) => Open::Give(n),
                (None, Some(n)) => Open::Ask(n),
                _ => anyhow::bail!("give exactly one of --give N and --ask N"),
            };
            let (_, key, client, counters) = signed(&key, &node)?;
            let line = rt.block_on(credit::open(&client, &key, &currency, how, &counters))?;
            if json {
                return print_json(&line);
            }
            node::outln!(
                "line {}: {} lets {} owe it up to {} (signed by both)",
                line.state.id,
                line.state.creditor,
                line.state.debtor,
                line.state.limit
            );
            Ok(())
        }
        CreditCmd::Pay {
            key,
            via,
            to,
            currency,
            amount,
            transaction_id,
            wait_ms,
            json,
        } => {
            let to = entity("--to", &to)?;
            let currency = entity("--currency", &currency)?;
            anyhow::ensure!(amount > 0, "--amount must be at least 1");
            let (http, key, client, counters) = signed(&key, &via)?;
            let paid = rt.block_on(credit::pay(
                &http,
                &key,
                &client,
                &to,
                &currency,
                amount,
                transaction_id.as_deref(),
                wait_ms,
                &counters,
            ));
            let paid = match paid {
                Ok(p) => p,
                Err(e) if json => {
                    print_json(
                        &serde_json::json!({"error": {"code": e.code(), "message": e.to_string()}}),
                    )?;
                    anyhow::bail!("{e}");
                }
                Err(e) => anyhow::bail!("{e}"),
            };
            if json {
                return print_json(&paid);
            }
            node::outln!(
                "paid {} to {} over {} path(s):",
                paid.amount,
                paid.to,
                paid.paths.len()
            );
            for share in &paid.paths {
                node::outln!("  {}  {}", share.amount, share.path.join(" -> "));
            }
            Ok(())
        }
        CreditCmd::Trust { key, via, to, json } => {
            let to = entity("--to", &to)?;
            node::client::check_url(&via)?;
            let _ = node::keyfile::load(&key)?;
            let http = node::client::http_client(&ClientOptions::default())?;
            let answer = rt.block_on(credit::trust(&http, &via, &to))?;
            if json {
                return print_json(&answer);
            }
            node::outln!("{:.4}", answer.trust);
            Ok(())
        }
    }
}
