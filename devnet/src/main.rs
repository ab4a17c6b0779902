//! The `devnet` binary: `up` runs a whole network on this machine until SIGINT or SIGTERM;
//! `buy` walks through what a buyer does on it (a match, contracts formed, paid and used).
//! Exit codes: 0 success, 1 any error (one line on stderr), 2 bad usage.

use std::path::PathBuf;
use std::time::Duration;

/// How often `up` looks for children that died.
const CHILD_CHECK_MS: u64 = 500;

use clap::{Parser, Subcommand};
use devnet::{Devnet, Options};
use protocol::book::MatchRequest;

#[derive(Parser)]
#[command(
    name = "devnet",
    version,
    about = "A whole storage market on one machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start issuer, market and agents under DIR (or bring them back); stop on Ctrl-C
    Up {
        /// Directory holding the whole network (keys, databases, objects, logs, devnet.json)
        #[arg(long)]
        dir: PathBuf,
        /// Number of storage agents (1 to 64; default: as many as this directory's devnet had
        /// last time, or 6 for a new one)
        #[arg(long)]
        agents: Option<usize>,
        /// Seconds between each agent's offer heartbeats
        #[arg(long, default_value_t = 5)]
        heartbeat_s: u64,
        /// Seconds between the market's audit rounds
        #[arg(long, default_value_t = 15)]
        audit_interval_s: u64,
        /// Also start a publisher (`cdn serve`), funded from the wallet (a directory whose
        /// devnet had one brings it back without this flag)
        #[arg(long)]
        cdn: bool,
        /// Also start a bank (`bank serve`, DESIGN 14) and have every agent paid into its
        /// own account there (`agent-<i>@<bank host>`), as in seed 000 section 5.2 (a
        /// directory whose devnet had one brings it back without this flag; loopback only)
        #[arg(long)]
        bank: bool,
        /// Currencies: run this many issuers (issuer, issuer-1, ...), every agent accepting
        /// each at its own prices and the wallet funded in each (default: as many as this
        /// directory's devnet had, else 1; loopback only)
        #[arg(long)]
        issuers: Option<usize>,
        /// Also start this many peers of the bid-solicitation overlay (`peer serve`), each
        /// funded by the mint and sharing its peers/peer-<i>/share/ directory (default:
        /// as many as this directory's devnet had)
        #[arg(long)]
        peers: Option<usize>,
        /// How the peers are linked: line, ring or random:DEGREE
        #[arg(long, default_value = "line")]
        topology: devnet::Topology,
        /// Every service in a network namespace of its own (root and iproute2 needed): each
        /// agent on its own /24 of a private 10.X.0.0/16 the devnet picks, the market's
        /// one-agent-per-network rule on; `cut`, `heal` and `slow` then work (a directory
        /// whose devnet had namespaces brings them back without this flag)
        #[arg(long)]
        netns: bool,
        /// With --netns: agents per /24 network (1, each its own; more, to see the market
        /// spread shards over networks)
        #[arg(long, default_value_t = 1)]
        agents_per_network: usize,
    },
    /// Cut a service of a running --netns devnet off the network (its link goes down)
    Cut {
        /// The running devnet's directory
        #[arg(long)]
        dir: PathBuf,
        /// The service: issuer, market, cdn, agent-<i> (or just <i>), peer-<i>, or an entity id
        /// or URL from devnet.json
        service: String,
    },
    /// Inside a namespace: hold each packet of a netfilter queue for a delay (what `slow`
    /// runs where the kernel has no netem)
    #[command(hide = true, name = "delay-worker")]
    DelayWorker {
        /// The netfilter queue number
        #[arg(long)]
        queue: u16,
        /// Milliseconds each packet is held
        #[arg(long)]
        delay_ms: u64,
        /// Share of packets dropped, in percent
        #[arg(long, default_value_t = 0.0)]
        loss_pct: f64,
    },
    /// Undo `cut` and `slow`: the service's link is up and unshaped
    Heal {
        /// The running devnet's directory
        #[arg(long)]
        dir: PathBuf,
        /// The service: issuer, market, cdn, agent-<i> (or just <i>), peer-<i>, or an entity id
        /// or URL from devnet.json
        service: String,
    },
    /// Make what a service sends slow: a thin uplink (tbf), delay and loss (netem, where the
    /// kernel has it)
    Slow {
        /// The running devnet's directory
        #[arg(long)]
        dir: PathBuf,
        /// The service: issuer, market, cdn, agent-<i> (or just <i>), peer-<i>, or an entity id
        /// or URL from devnet.json
        service: String,
        /// Added to every packet the service sends, in milliseconds (needs netem)
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
        /// The service's uplink, in kilobits per second
        #[arg(long)]
        rate_kbit: Option<u64>,
        /// Share of the packets it sends that are lost, in percent (needs netem)
        #[arg(long, default_value_t = 0.0)]
        loss_pct: f64,
    },
    /// As a buyer on a running devnet: match k-of-n agents, buy and pay a contract with each,
    /// store a shard on each, and register the contracts with the market for auditing
    Buy {
        /// The running devnet's directory (as given to `devnet up`)
        #[arg(long)]
        dir: PathBuf,
        /// Bytes per shard (each agent stores one shard of this size)
        #[arg(long, default_value_t = 1 << 20)]
        shard_bytes: u64,
        /// Contract length, in seconds
        #[arg(long, default_value_t = 3600)]
        duration_s: u64,
        /// k: shards needed to recover
        #[arg(long, default_value_t = 2)]
        data_shards: u64,
        /// n: shards stored (the market picks when absent)
        #[arg(long)]
        total_shards: Option<u64>,
        /// Highest acceptable probability of losing the data over the contract (0 to 1)
        #[arg(long, default_value_t = 1e-3)]
        max_failure_probability: f64,
        /// Print one JSON object (amounts in minor units) instead of text
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    node::cli::init_logging("warn");
    node::cli::exit_on_error(run(cli));
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Up {
            dir,
            agents,
            heartbeat_s,
            audit_interval_s,
            cdn,
            bank,
            issuers,
            peers,
            topology,
            netns,
            agents_per_network,
        } => {
            let mut options = Options::new(&dir)?;
            // Coming back, the same network: as many agents, and the publisher if it had one.
            let previous = devnet::DevnetFile::load(&dir).ok();
            options.cdn = cdn || previous.as_ref().is_some_and(|p| p.cdn.is_some());
            options.bank = bank || previous.as_ref().is_some_and(|p| p.bank.is_some());
            options.issuers = issuers
                .or(previous.as_ref().map(|p| 1 + p.other_issuers.len()))
                .unwrap_or(1);
            options.agents = agents
                .or(previous.as_ref().map(|p| p.agents.len()))
                .unwrap_or(options.agents);
            options.peers = peers
                .or(previous.as_ref().map(|p| p.peers.len()))
                .unwrap_or(0);
            options.topology = match (&previous, peers) {
                // Brought back without --peers: linked as before.
                (Some(p), None) => p
                    .topology
                    .as_deref()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(topology),
                _ => topology,
            };
            // A directory whose devnet had namespaces gets them back, with its recorded
            // layout (Devnet::up reads that from devnet.json).
            options.netns = netns;
            options.agents_per_network = agents_per_network;
            options.heartbeat_s = heartbeat_s;
            options.audit_interval_s = audit_interval_s;
            // Handlers first, so a Ctrl-C or SIGTERM during the start is held until the
            // network is up, then stops it cleanly (namespaces included) instead of killing
            // this process with its children left running.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            use tokio::signal::unix::{signal, SignalKind};
            let (mut term, mut int) = {
                let _inside = rt.enter();
                (
                    signal(SignalKind::terminate())?,
                    signal(SignalKind::interrupt())?,
                )
            };
            let mut devnet = Devnet::up(&options)?;
            let f = devnet.file();
            eprintln!("issuer  {}  {}", f.issuer.url, f.issuer.entity);
            for (k, i) in f.other_issuers.iter().enumerate() {
                eprintln!("issuer-{} {}  {}", k + 1, i.url, i.entity);
            }
            eprintln!("market  {}  {}", f.market.url, f.market.entity);
            for (i, a) in f.agents.iter().enumerate() {
                eprintln!("agent-{i} {}  {}", a.url, a.entity);
            }
            eprintln!("wallet  {}  {}", f.wallet.key.display(), f.wallet.entity);
            if let Some(c) = &f.cdn {
                eprintln!(
                    "cdn     {}  {}  (key {}/identity.key)",
                    c.url,
                    c.entity,
                    c.data.display()
                );
            }
            if let Some(b) = &f.bank {
                eprintln!(
                    "bank    {}  {}  (agents paid as agent-<i>@{}; customers: bank customer add --data {})",
                    b.url,
                    b.entity,
                    b.url.trim_start_matches("http://"),
                    b.data.display()
                );
            }
            for (i, p) in f.peers.iter().enumerate() {
                eprintln!(
                    "peer-{i}  {}  {}  (key {}/identity.key)",
                    p.url,
                    p.entity,
                    p.data.display()
                );
            }
            if let Some(n) = &f.netns {
                eprintln!(
                    "netns   {} on bridge {} (this machine is {}); namespaces lcpdev-{}-*",
                    n.range, n.bridge, n.host_address, n.tag
                );
            }
            eprintln!("logs in {}/logs; Ctrl-C stops everything", dir.display());
            rt.block_on(async {
                node::outln!("devnet ready: {}", dir.join("devnet.json").display());
                use std::io::Write;
                std::io::stdout().flush()?;
                // A child that dies is reaped and named at once (not left a zombie).
                let mut check = tokio::time::interval(Duration::from_millis(CHILD_CHECK_MS));
                loop {
                    tokio::select! {
                        _ = term.recv() => break,
                        _ = int.recv() => break,
                        _ = check.tick() => {
                            for line in devnet.reap_exited() {
                                eprintln!("{line}");
                            }
                        }
                    }
                }
                Ok::<_, anyhow::Error>(())
            })?;
            eprintln!("stopping the devnet");
            drop(devnet);
            Ok(())
        }
        Cmd::DelayWorker {
            queue,
            delay_ms,
            loss_pct,
        } => devnet::delay::run(queue, delay_ms, loss_pct),
        Cmd::Cut { dir, service } => {
            devnet::netns::cut(&devnet::DevnetFile::load(&dir)?.netns_of(&service)?)?;
            node::outln!("{service} is cut off");
            Ok(())
        }
        Cmd::Heal { dir, service } => {
            devnet::netns::heal(&devnet::DevnetFile::load(&dir)?.netns_of(&service)?)?;
            node::outln!("{service} is back, unshaped");
            Ok(())
        }
        Cmd::Slow {
            dir,
            service,
            delay_ms,
            rate_kbit,
            loss_pct,
        } => {
            let ns = devnet::DevnetFile::load(&dir)?.netns_of(&service)?;
            let shape = devnet::Shape {
                delay_ms,
                rate_kbit,
                loss_pct,
            };
            devnet::netns::slow(&ns, shape, &std::env::current_exe()?)?;
            let mut how = Vec::new();
            if let Some(r) = rate_kbit {
                how.push(format!("at most {r} kbit/s"));
            }
            if delay_ms > 0 {
                how.push(format!("{delay_ms} ms later"));
            }
            if loss_pct > 0.0 {
                how.push(format!("{loss_pct}% lost"));
            }
            if how.is_empty() {
                how.push("unshaped".into());
            }
            node::outln!("{service} now sends {}", how.join(", "));
            Ok(())
        }
        Cmd::Buy {
            dir,
            shard_bytes,
            duration_s,
            data_shards,
            total_shards,
            max_failure_probability,
            json,
        } => {
            let request = MatchRequest {
                currency: String::new(),
                shard_bytes,
                data_shards,
                total_shards,
                duration_s,
                expected_read_bytes: 0,
                max_failure_probability,
                exclude: vec![],
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let out = rt.block_on(devnet::buy(&dir, request))?;
            if json {
                node::outln!("{}", serde_json::to_string(&out)?);
            } else {
                let currency: protocol::ledger::Currency =
                    serde_json::from_value(out["currency"].clone())?;
                let show = |v: &serde_json::Value| {
                    v.as_i64()
                        .map(|n| currency.show(n))
                        .unwrap_or_else(|| v.to_string())
                };
                node::outln!(
                    "matched {} agents: total price {} (the contracts and writing each shard once), \
                     failure probability {:.2e}",
                    out["agents"].as_array().map_or(0, Vec::len),
                    show(&out["total_price"]),
                    out["failure_probability"].as_f64().unwrap_or(f64::NAN)
                );
                for c in out["contracts"].as_array().into_iter().flatten() {
                    node::outln!(
                        "  contract {} with {} ({}): paid {} = contract {} + {} prepaid credit \
                         (for writing and reading the shard); {} stored, registered",
                        c["contract"].as_str().unwrap_or(""),
                        c["agent"].as_str().unwrap_or(""),
                        c["endpoint"].as_str().unwrap_or(""),
                        show(&c["paid"]),
                        show(&c["contract_price"]),
                        show(&c["prepaid_credit"]),
                        c["object"].as_str().unwrap_or("")
                    );
                }
                node::outln!("wallet balance now {}", show(&out["balance"]));
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
