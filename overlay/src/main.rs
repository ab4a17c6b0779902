//! The `peer` binary: `serve` (a peer of the bid-solicitation overlay), `find`, `get` and
//! `status`. Exit codes: 0 success, 1 any error (one line on stderr), 2 bad usage.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use node::outln;
use overlay::buyer::{Buyer, Search};
use overlay::peer::{PeerOptions, Strategy};
use overlay::sim::SimOptions;

#[derive(Parser)]
#[command(
    name = "peer",
    version,
    about = "Find and sell documents through paid, commissioned bid solicitations (seed 001)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// What to search for, shared by `find` and `get`.
#[derive(clap::Args)]
struct SearchArgs {
    /// The buyer's key: the via peer's own DIR/identity.key makes it that peer's own search;
    /// any other key buys as a stranger, paying the via peer by payword (or, with
    /// PEER_PAYWORDS=0 or no words to be had, ahead by LCP transfer)
    #[arg(long, env = "PEER_KEY")]
    key: PathBuf,
    /// The peer to search through, e.g. http://127.0.0.1:7500
    #[arg(long, env = "PEER_URL")]
    via: String,
    /// The document's SHA-256 (64 lowercase hex digits)
    #[arg(long)]
    document: String,
    /// The most to pay for it, in minor units
    #[arg(long)]
    max_price: u64,
    /// The issuer's entity id to pay in (default: the via peer's first currency)
    #[arg(long)]
    currency: Option<String>,
    /// Hops the solicitation may travel (at most 8)
    #[arg(long, default_value_t = protocol::overlay::SOLICIT_HOPS_MAX)]
    hops: u32,
    /// Milliseconds the peers have to answer
    #[arg(long, default_value_t = 10_000)]
    wait_ms: u64,
    /// Print one JSON object instead of text (amounts in minor units)
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a peer; prints `listening on http://HOST:PORT`
    Serve {
        /// Data directory (key, database, copies kept)
        #[arg(long, env = "PEER_DATA")]
        data: PathBuf,
        /// Address to listen on, HOST:PORT (port 0 picks a free port)
        #[arg(long, env = "PEER_LISTEN", default_value = "127.0.0.1:7500")]
        listen: String,
        /// PostgreSQL URL; SQLite under --data when absent
        #[arg(long, env = "PEER_DATABASE")]
        database: Option<String>,
        /// A primary (trusted) neighbour's URL; repeat for more
        #[arg(long = "neighbor")]
        neighbors: Vec<String>,
        /// A directory whose files this peer sells (each named by its SHA-256)
        #[arg(long)]
        share: Option<PathBuf>,
        /// Sell what a neighbour found by passing its instructions through (referral) or
        /// by copying it and selling the copy (conceal)
        #[arg(long, value_enum, default_value_t = Strategy::Referral)]
        strategy: Strategy,
        /// 1: never add discovered peers; 2: use them for own searches; 3: also for others'
        #[arg(long, default_value_t = PeerOptions::default().policy)]
        policy: u8,
        /// Added to a neighbour's bid, in minor units
        #[arg(long, default_value_t = PeerOptions::default().commission)]
        commission: u64,
        /// Charged per solicitation answered, in minor units
        #[arg(long, default_value_t = PeerOptions::default().solicit_fee)]
        solicit_fee: u64,
        /// The price of a document this peer holds, in minor units
        #[arg(long, default_value_t = PeerOptions::default().price)]
        price: u64,
        /// What a primary neighbour may owe on its tab here (0: no tabs)
        #[arg(long, default_value_t = PeerOptions::default().tab_limit)]
        tab_limit: u64,
        /// A neighbour settles its tab through LCP once it owes this much
        #[arg(long, default_value_t = PeerOptions::default().tab_threshold)]
        tab_threshold: u64,
        /// An issuer whose currency this peer takes; repeat for more (the first is used for
        /// its own searches)
        #[arg(long = "issuer", env = "ISSUER_URL")]
        issuers: Vec<String>,
        /// The base URL other peers reach this one at (default: the listening URL)
        #[arg(long)]
        public_url: Option<String>,
        /// Neighbours asking more than this per solicitation are not asked (minor units)
        #[arg(long, default_value_t = PeerOptions::default().neighbor_fee_max)]
        neighbor_fee_max: u64,
        /// Redeem the paywords taken once an issuer's are worth this much (minor units)
        #[arg(long, default_value_t = PeerOptions::default().payword_redeem_threshold)]
        payword_redeem_threshold: u64,
        /// PEM certificate chain to serve HTTPS with (needs --tls-key)
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Solicit bids for a document through a peer: the best bid and the path it came by
    Find {
        #[command(flatten)]
        search: SearchArgs,
    },
    /// Find, accept, retrieve and check a document; a failed retrieval is contested
    Get {
        #[command(flatten)]
        search: SearchArgs,
        /// Where to write the document
        #[arg(long)]
        out: PathBuf,
    },
    /// Simulate a network of many peers in process (the peer's own decision code) against
    /// TTL flooding at the same TTL: messages per successful search, success rate, and how
    /// discovery changes both over the searches
    Simulate {
        /// Peers in the network
        #[arg(long, default_value_t = SimOptions::default().peers)]
        peers: usize,
        /// Neighbours each peer links to at random
        #[arg(long, default_value_t = SimOptions::default().degree)]
        degree: usize,
        /// Documents, each placed at --replicas random peers
        #[arg(long, default_value_t = SimOptions::default().documents)]
        documents: usize,
        /// Copies of each document
        #[arg(long, default_value_t = SimOptions::default().replicas)]
        replicas: usize,
        /// Searches, one after another, by random peers for random documents
        #[arg(long, default_value_t = SimOptions::default().searches)]
        searches: usize,
        /// The searcher's hops (and the flooding TTL)
        #[arg(long, default_value_t = SimOptions::default().hops)]
        hops: u32,
        /// The trust policy of every peer (1, 2 or 3)
        #[arg(long, default_value_t = SimOptions::default().policy)]
        policy: u8,
        /// Searches per window of the report
        #[arg(long, default_value_t = SimOptions::default().window)]
        window: usize,
        /// Seed of the network, placement and searches
        #[arg(long, default_value_t = SimOptions::default().seed)]
        seed: u64,
        /// Print the JSON report instead of text
        #[arg(long)]
        json: bool,
    },
    /// A peer's status: neighbours, tabs, solicitations, commissions, sales
    Status {
        /// The peer's URL, e.g. http://127.0.0.1:7500
        #[arg(long, env = "PEER_URL")]
        via: String,
        /// Print the JSON status instead of text
        #[arg(long)]
        json: bool,
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

/// A number field of a JSON object, 0 when absent.
fn n_of(v: &serde_json::Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or(0)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

impl SearchArgs {
    fn search(&self) -> anyhow::Result<Search> {
        anyhow::ensure!(
            protocol::overlay::is_document(&self.document),
            "--document must be a SHA-256: 64 lowercase hex digits"
        );
        Ok(Search {
            document: self.document.clone(),
            max_price: self.max_price,
            currency: self.currency.clone(),
            hops: self.hops,
            wait_ms: self.wait_ms,
        })
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Serve {
            data,
            listen,
            database,
            neighbors,
            share,
            strategy,
            policy,
            commission,
            solicit_fee,
            price,
            tab_limit,
            tab_threshold,
            issuers,
            public_url,
            payword_redeem_threshold,
            neighbor_fee_max,
            tls_cert,
            tls_key,
        } => {
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(node::http::TlsFiles { cert, key }),
                _ => None,
            };
            let running = overlay::serve::start(overlay::serve::ServeOptions {
                data_dir: data,
                listen,
                database,
                neighbors,
                share,
                issuers,
                peer: PeerOptions {
                    strategy,
                    policy,
                    commission,
                    solicit_fee,
                    price,
                    tab_limit,
                    tab_threshold,
                    public_url,
                    payword_redeem_threshold,
                    neighbor_fee_max,
                },
                tls,
            })?;
            node::cli::announce_listening(&running.url)?;
            running.wait()?;
            Ok(())
        }
        Cmd::Find { search } => {
            let s = search.search()?;
            let buyer = Buyer::new(&search.key, &search.via)?;
            let found = runtime()?.block_on(buyer.find(&s))?;
            match (found, search.json) {
                (Some(f), true) => outln!("{}", serde_json::to_string(&f)?),
                (Some(f), false) => outln!(
                    "best bid {} at {} in {} (of {} bids), by {}",
                    f.bid,
                    f.price,
                    f.currency,
                    f.bids,
                    f.path.join(" -> ")
                ),
                (None, json) => {
                    if json {
                        // The JSON for scripts; the exit code says nothing was found.
                        outln!(
                            "{}",
                            serde_json::json!({"document": s.document, "bid": null})
                        );
                    }
                    return Err(s.no_bid());
                }
            }
            Ok(())
        }
        Cmd::Get { search, out } => {
            let s = search.search()?;
            let buyer = Buyer::new(&search.key, &search.via)?;
            let got = runtime()?.block_on(buyer.get(&s, &out))?;
            if search.json {
                outln!("{}", serde_json::to_string(&got)?);
            } else {
                outln!(
                    "{} bytes written to {} for {}, served by {} at {}",
                    got.bytes,
                    got.out,
                    got.found.price,
                    got.served_by,
                    got.served_from
                );
            }
            Ok(())
        }
        Cmd::Simulate {
            peers,
            degree,
            documents,
            replicas,
            searches,
            hops,
            policy,
            window,
            seed,
            json,
        } => {
            anyhow::ensure!(
                peers >= 2 && documents >= 1,
                "--peers must be 2 or more and --documents 1 or more"
            );
            anyhow::ensure!((1..=3).contains(&policy), "--policy must be 1, 2 or 3");
            anyhow::ensure!((1..=64).contains(&degree), "--degree must be 1 to 64");
            let o = SimOptions {
                peers,
                degree,
                documents,
                replicas,
                searches,
                hops,
                policy,
                window,
                seed,
                ..SimOptions::default()
            };
            let r = overlay::sim::simulate(&o);
            if json {
                outln!("{}", serde_json::to_string(&r)?);
            } else {
                outln!(
                    "{} peers linked random:{}, {} documents x {}, {} searches, hops {}, policy {}",
                    o.peers,
                    o.degree,
                    o.documents,
                    o.replicas,
                    o.searches,
                    o.hops,
                    o.policy
                );
                for m in [&r.overlay, &r.ttl_flooding] {
                    outln!(
                        "{:<13} success {:>5.1}%  messages/success {:>8.1}  hops/success {:.2}",
                        m.mode,
                        m.success_rate * 100.0,
                        m.messages_per_success,
                        m.hops_per_success
                    );
                    for w in &m.windows {
                        outln!(
                            "    searches {:>5}..: success {:>5.1}%  messages/success {:>8.1}",
                            w.first,
                            w.success_rate * 100.0,
                            w.messages_per_success
                        );
                    }
                }
            }
            Ok(())
        }
        Cmd::Status { via, json } => {
            node::client::check_url(&via)?;
            let url = format!("{}/v1/status", via.trim_end_matches('/'));
            let status: serde_json::Value = runtime()?.block_on(async {
                let resp = reqwest::get(&url)
                    .await
                    .with_context(|| format!("cannot reach {url}"))?;
                anyhow::ensure!(
                    resp.status().is_success(),
                    "{url} answered HTTP {}",
                    resp.status()
                );
                Ok::<_, anyhow::Error>(resp.json().await?)
            })?;
            if json {
                outln!("{status}");
            } else {
                let n = |k: &str| status[k].as_u64().unwrap_or(0);
                outln!("peer {}", status["peer"].as_str().unwrap_or(""));
                outln!(
                    "solicitations seen {}, forwarded {}; fees earned {}, commissions earned {}; documents sold {}",
                    n("solicitations_seen"),
                    n("solicitations_forwarded"),
                    n("fees_earned"),
                    n("commissions_earned"),
                    n("documents_sold")
                );
                for nb in status["neighbors"].as_array().into_iter().flatten() {
                    outln!(
                        "{:<12} {} {}",
                        nb["kind"].as_str().unwrap_or(""),
                        nb["entity"].as_str().unwrap_or(""),
                        nb["url"].as_str().unwrap_or("")
                    );
                }
                for t in status["tabs"].as_array().into_iter().flatten() {
                    let owes = if t["direction"] == "owes_me" {
                        "owes this peer"
                    } else {
                        "is owed by this peer"
                    };
                    outln!(
                        "tab: {} {owes} {} (limit {}, settled at {})",
                        t["neighbor"].as_str().unwrap_or(""),
                        n_of(t, "owed"),
                        n_of(t, "limit"),
                        n_of(t, "threshold")
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
