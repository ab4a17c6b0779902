//! The `market` binary: `serve`, `offers` / `match` to look at a running market, and `bench`
//! to load one.
//! Exit codes: 0 success, 1 any error (one line on stderr), 2 bad usage.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use market::book::{Listing, MatchRequest};

#[derive(Parser)]
#[command(
    name = "market",
    version,
    about = "Match buyers with storage agents at reliability-adjusted prices"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the offer book, matching, registration and audits; prints `listening on http://HOST:PORT`
    Serve {
        /// Data directory: the market's key (identity.key) and its SQLite database
        #[arg(long, env = "MARKET_DATA")]
        data: PathBuf,
        /// Address to listen on, HOST:PORT (port 0 picks a free one)
        #[arg(long, env = "MARKET_LISTEN", default_value = "127.0.0.1:7200")]
        listen: String,
        /// PostgreSQL URL; SQLite under --data when absent
        #[arg(long, env = "MARKET_DATABASE")]
        database: Option<String>,
        /// Let a match choose several agents on one /24 network (a devnet or a LAN)
        #[arg(long)]
        allow_same_network: bool,
        /// Seconds between the auditor's ticks: each tick audits the agents due since the
        /// last, each at most once
        #[arg(long, default_value_t = market::serve::AUDIT_INTERVAL_S_DEFAULT)]
        audit_interval_s: u64,
        /// Audits of each agent with running registered contracts per day, spread evenly
        /// (at most one a tick; 0: no audits). Default: one a tick, 86400 / --audit-interval-s
        #[arg(long = "audits-per-agent-day", value_name = "N")]
        audits_per_agent_day: Option<u64>,
        /// Seconds between uptime probes
        #[arg(long, default_value_t = market::serve::PROBE_INTERVAL_S_DEFAULT)]
        probe_interval_s: u64,
        /// How long the auditor lease lasts, in ms: with several market processes on one
        /// database, one audits and probes, and another takes over this long after it died
        #[arg(long, default_value_t = market::auditor::AUDITOR_LEASE_MS)]
        auditor_lease_ms: u64,
        /// Seconds between rounds of the records crawl (agents' record chains, fork proofs)
        #[arg(long, default_value_t = market::book::CRAWL_INTERVAL_S_DEFAULT)]
        crawl_interval_s: u64,
        /// TLS certificate chain (PEM); serves HTTPS with --tls-key
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM) for --tls-cert
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// List the live offers, cheapest reliability-adjusted price first
    Offers {
        /// The market's URL, e.g. http://127.0.0.1:7200
        #[arg(long, env = "MARKET_URL")]
        market: String,
        /// Issuer entity id whose prices to show
        #[arg(long)]
        currency: Option<String>,
        /// Print JSON (amounts in minor units) instead of a table
        #[arg(long)]
        json: bool,
    },
    /// An entity's record chain as the market holds it, and its reputation from the records
    Records {
        /// The market's URL, e.g. http://127.0.0.1:7200
        #[arg(long, env = "MARKET_URL")]
        market: String,
        /// The entity id (ed25519:...) of an agent, a buyer or a gateway
        #[arg(long)]
        entity: String,
        /// Print JSON (`{"reputation", "blocks", "links"}`) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Ask for agents: k-of-n storage of SHARD_BYTES for DURATION_S at most at the target loss
    Match {
        /// The market's URL, e.g. http://127.0.0.1:7200
        #[arg(long, env = "MARKET_URL")]
        market: String,
        /// Issuer entity id of the currency to pay in
        #[arg(long)]
        currency: String,
        /// Size of one shard (each agent stores one), in bytes
        #[arg(long)]
        shard_bytes: u64,
        /// k: shards needed to recover
        #[arg(long)]
        data_shards: u64,
        /// n: shards stored (the market picks when absent)
        #[arg(long)]
        total_shards: Option<u64>,
        /// How long the contracts run, in seconds
        #[arg(long, default_value_t = 30 * 86_400)]
        duration_s: u64,
        /// Bytes expected to be read back from each agent over the contract
        #[arg(long, default_value_t = 0)]
        expected_read_bytes: u64,
        /// Target: probability (0 to 1) that fewer than k shards survive the duration
        #[arg(long, default_value_t = 1e-6)]
        max_failure_probability: f64,
        /// Print JSON (amounts in minor units); an unmet target prints the refusal with its
        /// details (the best achievable) and exits 1
        #[arg(long)]
        json: bool,
    },
    /// Load a running market with synthetic agents (real signed offers and heartbeats, their
    /// endpoints answered by one stand-in server on loopback) and matches; report throughput,
    /// latency percentiles and errors by code
    Bench {
        #[command(flatten)]
        options: market::bench::Options,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Bench books only: give every agent in a market's database a synthetic reputation
    /// (varied reliability, about 60% vetted), drawn from the seed and each agent's id
    SeedReputations {
        /// The market's data directory (its SQLite database unless --database)
        #[arg(long, env = "MARKET_DATA")]
        data: PathBuf,
        /// PostgreSQL URL of the market's database
        #[arg(long, env = "MARKET_DATABASE")]
        database: Option<String>,
        /// Seed of the synthetic reputations (the same seed, the same reputations)
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Measure what pre-selection costs: each bench shape matched on the pre-selected
    /// candidates (as `POST /v1/match` does) and by a long local search over the whole book
    CheckSelection {
        /// The market's data directory (its SQLite database unless --database)
        #[arg(long, env = "MARKET_DATA")]
        data: PathBuf,
        /// PostgreSQL URL of the market's database
        #[arg(long, env = "MARKET_DATABASE")]
        database: Option<String>,
        /// Let a choice put several agents on one /24 (as `serve --allow-same-network`)
        #[arg(long)]
        allow_same_network: bool,
        /// Largest k among the shapes
        #[arg(long, default_value_t = market::bench::K_MAX_DEFAULT)]
        k_max: u64,
        /// Random restarts of the long search, per n
        #[arg(long, default_value_t = 300)]
        restarts: usize,
        /// Seed of the long search's restarts
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
}

/// The market database under `data` (or at `database`), migrated, for the bench tools.
fn open_database(data: &std::path::Path, database: Option<&str>) -> anyhow::Result<db::Database> {
    let location = match database {
        Some(url) => db::Location::parse(url),
        None => db::Location::sqlite_in(data, "market.sqlite"),
    };
    db::Database::open(location, market::migrations())
        .with_context(|| format!("cannot open the market database in {}", data.display()))
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

fn client(url: &str) -> anyhow::Result<clients::market::MarketClient> {
    node::client::check_url(url)?;
    let http = node::client::http_client(&node::client::ClientOptions::default())?;
    // Reading the book and matching need no identity; a throwaway key serves.
    let key = std::sync::Arc::new(protocol::KeyPair::generate()?);
    Ok(clients::market::MarketClient::new(http, url, key))
}

/// `amount` minor units for people: `7.90 LCU`, or the bare minor units when the currency is
/// unknown (its issuer did not answer).
fn show(currency: Option<&protocol::ledger::Currency>, amount: u64) -> String {
    match currency {
        Some(c) => c.show(amount),
        None => amount.to_string(),
    }
}

/// Currencies by issuer URL, each issuer asked once.
#[derive(Default)]
struct Money {
    known: std::collections::HashMap<String, Option<protocol::ledger::Currency>>,
}

impl Money {
    async fn of_issuer(&mut self, issuer_url: &str) -> Option<protocol::ledger::Currency> {
        if let Some(c) = self.known.get(issuer_url) {
            return c.clone();
        }
        let asked = clients::issuer::currency_at(issuer_url).await;
        self.known.insert(issuer_url.to_owned(), asked.clone());
        asked
    }

    /// The currency a listing's prices are in.
    async fn of_listing(&mut self, listing: &Listing) -> Option<protocol::ledger::Currency> {
        let (_, offer) = listing
            .offer
            .open::<protocol::market::Offer>(protocol::market::OFFER_TYPE)
            .ok()?;
        let issuer = protocol::EntityId::parse(&listing.currency).ok()?;
        let url = offer.currency(&issuer)?.issuer_url.clone();
        self.of_issuer(&url).await
    }

    /// The currency of issuer `currency`, through the first offer in the book that takes it.
    async fn of_book(
        &mut self,
        client: &clients::market::MarketClient,
        currency: &str,
    ) -> Option<protocol::ledger::Currency> {
        let offers = client.offers(Some(currency)).await.ok()?;
        let first = offers.first()?;
        self.of_listing(first).await
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::SeedReputations {
            data,
            database,
            seed,
        } => {
            let database = open_database(&data, database.as_deref())?;
            let mut conn = database.get()?;
            let n = market::tools::seed_reputations(&mut conn, seed)?;
            node::outln!("seeded the reputations of {n} agents (seed {seed})");
            Ok(())
        }
        Cmd::CheckSelection {
            data,
            database,
            allow_same_network,
            k_max,
            restarts,
            seed,
            json,
        } => {
            let database = open_database(&data, database.as_deref())?;
            let report = market::tools::check_selection(
                &database,
                allow_same_network,
                k_max,
                restarts,
                seed,
            )?;
            if json {
                node::outln!("{}", serde_json::to_string(&report)?);
                return Ok(());
            }
            node::outln!(
                "{} agents, currency {}, long search with {} restarts per n",
                report.agents,
                report.currency,
                report.restarts
            );
            for s in &report.shapes {
                let price = |p: Option<u64>| p.map_or("not met".to_owned(), |p| p.to_string());
                node::outln!(
                    "{:<28} candidates {:>6} -> {:>4}  price {:>10} vs {:>10}  excess {}{}  ({} ms)",
                    s.shape,
                    s.candidates_whole,
                    s.candidates_preselected,
                    price(s.price_preselected),
                    price(s.price_long_search),
                    s.excess
                        .map_or("-".to_owned(), |e| format!("{:+.3}%", e * 100.0)),
                    if s.missed { "  MISSED" } else { "" },
                    s.long_search_ms
                );
            }
            node::outln!(
                "worst excess: {}",
                report
                    .worst_excess
                    .map_or("-".to_owned(), |e| format!("{:+.3}%", e * 100.0))
            );
            Ok(())
        }
        Cmd::Bench { options, json } => {
            // Several threads: heartbeats, matches and the bookkeeping run at once.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(market::bench::CLIENT_THREADS)
                .enable_all()
                .build()?;
            let report = rt.block_on(market::bench::run(options))?;
            if json {
                node::outln!("{}", serde_json::to_string(&report)?);
            } else {
                node::outln!("{}", report.show());
            }
            Ok(())
        }
        Cmd::Serve {
            data,
            listen,
            database,
            allow_same_network,
            audit_interval_s,
            audits_per_agent_day,
            probe_interval_s,
            auditor_lease_ms,
            crawl_interval_s,
            tls_cert,
            tls_key,
        } => {
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(node::http::TlsFiles { cert, key }),
                _ => None,
            };
            let options = market::serve::ServeOptions {
                data_dir: data,
                listen,
                database,
                allow_same_network,
                audit_interval_s,
                probe_interval_s,
                auditor_lease_ms,
                crawl_interval_s,
                tls,
            };
            let running = market::serve::start_with_audits(options, audits_per_agent_day)
                .context("the market could not start")?;
            node::cli::announce_listening(&running.url)?;
            running.wait()?;
            Ok(())
        }
        Cmd::Records {
            market,
            entity,
            json,
        } => {
            protocol::EntityId::parse(&entity).map_err(|_| {
                anyhow::anyhow!("--entity {entity:?} is not an entity id (ed25519:<64 hex>)")
            })?;
            let rt = runtime()?;
            let c = client(&market)?;
            let reputation = rt.block_on(c.reputation(&entity))?;
            let blocks = rt.block_on(c.records(&entity))?;
            // Whether the blocks held link (a run from the first held); each is checked.
            let links = protocol::record::check_chain(&blocks).map_err(|e| e.to_string());
            if json {
                node::outln!(
                    "{}",
                    serde_json::json!({
                        "reputation": reputation,
                        "blocks": blocks,
                        "links": links.is_ok(),
                        "link_error": links.err(),
                    })
                );
                return Ok(());
            }
            node::outln!(
                "{entity}: {} blocks held (head {}), {}; score {:.3e}, vouch {:.0}%{}",
                blocks.len(),
                reputation.head,
                match &links {
                    Ok(()) => "they link".to_owned(),
                    Err(e) => format!("they do not link: {e}"),
                },
                reputation.score,
                reputation.vouch * 100.0,
                if reputation.forked {
                    format!(
                        "; FORKED ({} proofs): never matched",
                        reputation.fraud_proofs
                    )
                } else {
                    String::new()
                }
            );
            for b in &blocks {
                let role = if b.is_proposal() {
                    "proposed to"
                } else {
                    "agreed with"
                };
                node::outln!(
                    "  #{:<5} {:<10} {role} {} {}",
                    b.sequence_number,
                    b.kind,
                    b.link_public_key,
                    b.transaction
                );
            }
            Ok(())
        }
        Cmd::Offers {
            market,
            currency,
            json,
        } => {
            let rt = runtime()?;
            let offers = rt.block_on(client(&market)?.offers(currency.as_deref()))?;
            if json {
                node::outln!("{}", serde_json::json!({ "offers": offers }));
                return Ok(());
            }
            let mut money = Money::default();
            node::outln!(
                "{:<14} {:<28} {:>16} {:>10} {:>16} {:>9} {:>7}",
                "agent",
                "endpoint",
                "price",
                "p_fail",
                "adjusted",
                "audits",
                "up"
            );
            for o in offers {
                let short: String = o.agent.chars().take(12).collect();
                let c = rt.block_on(money.of_listing(&o));
                // Adjusted prices are fractional minor units; shown rounded.
                let adjusted = if o.adjusted_price.is_finite() {
                    show(c.as_ref(), o.adjusted_price.round() as u64)
                } else {
                    "inf".to_owned()
                };
                node::outln!(
                    "{:<14} {:<28} {:>16} {:>10.2e} {:>16} {:>4}/{:<4} {:>7}",
                    short,
                    o.endpoint,
                    show(c.as_ref(), o.reference_price),
                    o.p_fail,
                    adjusted,
                    o.audits_passed,
                    o.audits_failed,
                    if o.online { "yes" } else { "no" }
                );
            }
            Ok(())
        }
        Cmd::Match {
            market,
            currency,
            shard_bytes,
            data_shards,
            total_shards,
            duration_s,
            expected_read_bytes,
            max_failure_probability,
            json,
        } => {
            let request = MatchRequest {
                currency,
                shard_bytes,
                data_shards,
                total_shards,
                duration_s,
                expected_read_bytes,
                max_failure_probability,
                exclude: Vec::new(),
            };
            let rt = runtime()?;
            let client = client(&market)?;
            let outcome = rt.block_on(client.match_or_best(&request))?;
            // Amounts for people: in the currency's units, from its issuer's descriptor.
            let c = if json {
                None
            } else {
                rt.block_on(Money::default().of_book(&client, &request.currency))
            };
            let answer = match outcome {
                clients::market::MatchOutcome::Met(answer) => answer,
                clients::market::MatchOutcome::CannotMeet(body) => {
                    if json {
                        // The whole refusal, the best achievable included, on stdout.
                        node::outln!("{}", serde_json::to_string(&body)?);
                    }
                    // The message names the target and the best achievable failure
                    // probability; the best choice's agents and price follow.
                    let best = body
                        .error
                        .details
                        .as_ref()
                        .and_then(|d| d.get("best"))
                        .filter(|b| !b.is_null());
                    let tail = match best {
                        Some(b) => format!(
                            " (with {} agents at total price {})",
                            b.get("agents")
                                .and_then(|a| a.as_array())
                                .map_or(0, |a| a.len()),
                            show(
                                c.as_ref(),
                                b.get("total_price").and_then(|p| p.as_u64()).unwrap_or(0)
                            )
                        ),
                        None => String::new(),
                    };
                    anyhow::bail!("{}{tail}", body.error.message);
                }
            };
            if json {
                node::outln!("{}", serde_json::to_string(&answer)?);
                return Ok(());
            }
            node::outln!(
                "{} agents, total price {}, failure probability {:.3e}",
                answer.agents.len(),
                show(c.as_ref(), answer.total_price),
                answer.failure_probability
            );
            for a in &answer.agents {
                node::outln!(
                    "  {} {} price {} p_fail {:.2e}",
                    a.agent,
                    a.endpoint,
                    show(c.as_ref(), a.price),
                    a.p_fail
                );
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
